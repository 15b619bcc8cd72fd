//! The `CIDATA` partition the agent adds, and the last partition it grows, checked by the real
//! partitioning and FAT tools: images made by `sgdisk` (a GPT laid out like Debian's cloud
//! images: BIOS boot partition 14, EFI partition 15, root partition 1 last) and `sfdisk` (MBR),
//! copied to the start of a larger sparse "disk" file as the agent streams them, then
//! [`machinist_agent::seed::write`]; `sgdisk -v`, `sfdisk --verify` and `--json`, `fsck.fat -n`,
//! `blkid` (what cloud-init looks the seed up with) and `mtype`/`mdir` read the result. Tables
//! that cannot take a partition (no room, four MBR primaries, a GPT with a bad CRC) leave the
//! disk as it was, byte for byte (`cmp`), unless a growth was asked for and could be done (four
//! MBR primaries: the fourth grows, the other three stay).
//!
//! Prerequisites follow `machinist_e2e::prereq` (gdisk, fdisk, dosfstools, mtools from
//! `scripts/deps`): skipped under `MACHINIST_E2E=auto` when a tool is missing, a failure under
//! `require`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use machinist_agent::seed::{self, Seeded, Written};
use machinist_agent::table::TableError;
use machinist_agent_protocol::seed::NoCloud;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const PROGRAMS: &[&str] = &["sgdisk", "sfdisk", "fsck.fat", "mtype", "mdir", "blkid", "cmp"];
const BASIC_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";

fn need(test: &str) -> Result<bool, String> {
    machinist_e2e::prereq::need_programs(test, PROGRAMS)
}

/// Runs a program, failing the test with its output when it fails; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).env("MTOOLS_SKIP_CHECK", "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn seed() -> NoCloud {
    NoCloud {
        meta_data: "instance-id: vm-1-1\nlocal-hostname: vm-1\n".into(),
        user_data: "#cloud-config\nruncmd: [[touch, /seeded]]\n".into(),
        vendor_data: "#cloud-config\nphone_home: {url: 'http://x/phone-home'}\n".into(),
        network_config: Some("version: 2\n".into()),
    }
}

/// A marker written into a partition's first and last sectors, to see it is not moved.
fn marker(n: u8) -> Vec<u8> {
    (0..512u32).map(|i| (i as u8) ^ n).collect()
}

fn put(file: &Path, offset: u64, bytes: &[u8]) {
    let mut f = File::options().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn get(file: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut bytes = vec![0; len];
    f.read_exact(&mut bytes).unwrap();
    bytes
}

/// A sparse file of `size` bytes.
fn sparse(path: &Path, size: u64) {
    File::create(path).unwrap().set_len(size).unwrap();
}

/// A GPT image of `size` bytes laid out like Debian's cloud images: partition 14 (BIOS boot,
/// 1 MiB), 15 (EFI system, 8 MiB), then 1 (Linux root) to the end; markers at the root's ends.
fn gpt_image(dir: &Path, size: u64) -> PathBuf {
    let image = dir.join("gpt.raw");
    sparse(&image, size);
    let path = image.to_str().unwrap();
    run(
        "sgdisk",
        &["-n", "14:2048:+1M", "-t", "14:EF02", "-n", "15:0:+8M", "-t", "15:EF00", "-n", "1:0:0", "-t", "1:8300", path],
    );
    image
}

/// An MBR image of `size` bytes from an `sfdisk` script.
fn mbr_image(dir: &Path, size: u64, script: &str) -> PathBuf {
    let image = dir.join("mbr.raw");
    sparse(&image, size);
    let mut child = Command::new("sfdisk")
        .args(["--quiet", image.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk {script}");
    image
}

/// The image at the start of a sparse disk of `size` bytes, as the agent writes it.
fn disk_from(dir: &Path, image: &Path, size: u64) -> PathBuf {
    let disk = dir.join("disk.raw");
    sparse(&disk, size);
    let mut from = File::open(image).unwrap();
    let mut to = File::options().write(true).open(&disk).unwrap();
    std::io::copy(&mut from, &mut to).unwrap();
    disk
}

/// `sfdisk --json`'s partitions of `disk`, and its table.
fn sfdisk_json(disk: &Path) -> (Value, Vec<Value>) {
    let json: Value = serde_json::from_str(&run("sfdisk", &["--json", disk.to_str().unwrap()])).unwrap();
    let table = json["partitiontable"].clone();
    let parts = table["partitions"].as_array().unwrap().clone();
    (table, parts)
}

/// The partition of `disk` named by its number (`disk.raw1`…).
fn part<'a>(parts: &'a [Value], disk: &Path, number: u32) -> &'a Value {
    let node = format!("{}{number}", disk.display());
    parts.iter().find(|p| p["node"] == node.as_str()).unwrap_or_else(|| panic!("no {node} in {parts:?}"))
}

fn sectors(value: &Value) -> u64 {
    value.as_u64().unwrap()
}

/// The seed as the FAT tools read it at `offset` of `disk`, and the file system checked.
fn check_seed(dir: &Path, disk: &Path, offset: u64) {
    let image = format!("{}@@{offset}", disk.display());
    assert_eq!(run("mtype", &["-i", &image, "::user-data"]), seed().user_data);
    assert_eq!(run("mtype", &["-i", &image, "::network-config"]), "version: 2\n");
    let listing = run("mdir", &["-i", &image, "::"]);
    assert!(listing.contains("Volume in drive : is CIDATA"), "{listing}");
    for name in ["meta-data", "vendor-data"] {
        assert!(listing.contains(name), "{name} in {listing}");
    }
    let probe = run("blkid", &["--probe", "--offset", &offset.to_string(), disk.to_str().unwrap()]);
    assert!(probe.contains("LABEL=\"CIDATA\"") && probe.contains("TYPE=\"vfat\""), "{probe}");
    // fsck.fat reads a whole device or file: the partition's bytes, copied out.
    let copy = dir.join("cidata.fat");
    std::fs::write(&copy, get(disk, offset, seed::ADDED_SIZE as usize)).unwrap();
    run("fsck.fat", &["-n", copy.to_str().unwrap()]);
}

/// `sgdisk -v` finds nothing wrong.
fn sgdisk_verifies(disk: &Path) {
    let verify = run("sgdisk", &["-v", disk.to_str().unwrap()]);
    assert!(verify.contains("No problems found"), "{verify}");
}

#[test]
fn a_debian_like_gpt_image_gets_cidata_at_the_disk_end_and_its_root_grown() -> Result<(), String> {
    if !need("a_debian_like_gpt_image_gets_cidata_at_the_disk_end_and_its_root_grown")? {
        return Ok(());
    }
    let dir = tempfile::tempdir().unwrap();
    let image = gpt_image(dir.path(), 64 * MIB);
    let (before, parts) = sfdisk_json(&image);
    let root = part(&parts, &image, 1).clone();
    let (root_start, root_size) = (sectors(&root["start"]), sectors(&root["size"]));
    put(&image, root_start * 512, &marker(1));
    put(&image, (root_start + root_size - 1) * 512, &marker(2));
    let disk = disk_from(dir.path(), &image, 256 * MIB);

    let mut handle = File::options().read(true).write(true).open(&disk).unwrap();
    let written = seed::write(&mut handle, &seed(), true).unwrap();
    drop(handle);
    // The backup GPT takes the last 33 sectors: the partition ends at the MiB boundary before.
    let cidata = 255 * MIB - seed::ADDED_SIZE;
    assert_eq!(written.seed, Seeded::Added(cidata), "{written}");
    let message = written.to_string();
    assert!(message.starts_with(&format!("CIDATA partition added at byte {cidata}")), "{message}");
    assert!(message.contains("partition 1 grown from"), "{message}");

    sgdisk_verifies(&disk);
    let (table, parts) = sfdisk_json(&disk);
    assert_eq!(sectors(&table["lastlba"]), 256 * 2048 - 34, "last usable sector at the disk's end");
    assert_eq!(table["id"], before["id"], "disk GUID kept");
    let new = parts.iter().find(|p| p["name"] == "CIDATA").unwrap_or_else(|| panic!("{parts:?}"));
    assert_eq!(new["type"], BASIC_DATA);
    assert_eq!((sectors(&new["start"]) * 512, sectors(&new["size"]) * 512), (cidata, seed::ADDED_SIZE));
    assert_eq!(new["node"], format!("{}2", disk.display()), "the first free entry");
    let uuid = new["uuid"].as_str().unwrap();
    assert!(parts.iter().filter(|p| p["uuid"] == uuid).count() == 1 && uuid.as_bytes()[14] == b'4', "{uuid}");
    let grown = part(&parts, &disk, 1);
    assert_eq!(sectors(&grown["start"]), root_start);
    assert_eq!(sectors(&grown["size"]), cidata / 512 - root_start, "root grown up to CIDATA");
    let (_, image_parts) = sfdisk_json(&image);
    for number in [14, 15] {
        let (a, b) = (part(&parts, &disk, number), part(&image_parts, &image, number));
        assert_eq!(
            (&a["start"], &a["size"], &a["type"], &a["uuid"]),
            (&b["start"], &b["size"], &b["type"], &b["uuid"])
        );
    }
    assert_eq!(get(&disk, root_start * 512, 512), marker(1), "root data not moved");
    assert_eq!(get(&disk, (root_start + root_size - 1) * 512, 512), marker(2), "root data not moved");
    check_seed(dir.path(), &disk, cidata);
    let old_backup = get(&disk, 64 * MIB - 512, 512);
    assert!(old_backup.iter().all(|b| *b == 0), "no stale backup header at the image's end");
    Ok(())
}

#[test]
fn a_gpt_image_gets_cidata_without_growth_when_not_asked() -> Result<(), String> {
    if !need("a_gpt_image_gets_cidata_without_growth_when_not_asked")? {
        return Ok(());
    }
    let dir = tempfile::tempdir().unwrap();
    let image = gpt_image(dir.path(), 64 * MIB);
    let disk = disk_from(dir.path(), &image, 128 * MIB);
    let mut handle = File::options().read(true).write(true).open(&disk).unwrap();
    let written = seed::write(&mut handle, &seed(), false).unwrap();
    drop(handle);
    let cidata = 127 * MIB - seed::ADDED_SIZE;
    assert_eq!(written, Written { seed: Seeded::Added(cidata), grown: None });
    sgdisk_verifies(&disk);
    let (_, parts) = sfdisk_json(&disk);
    let (_, image_parts) = sfdisk_json(&image);
    assert_eq!(part(&parts, &disk, 1)["size"], part(&image_parts, &image, 1)["size"], "root as it was");
    check_seed(dir.path(), &disk, cidata);
    Ok(())
}

#[test]
fn an_mbr_image_gets_cidata_in_a_free_slot_and_its_last_partition_grown() -> Result<(), String> {
    if !need("an_mbr_image_gets_cidata_in_a_free_slot_and_its_last_partition_grown")? {
        return Ok(());
    }
    let dir = tempfile::tempdir().unwrap();
    let image =
        mbr_image(dir.path(), 64 * MIB, "label: dos\nstart=2048, size=16MiB, type=c, bootable\nstart=34816, type=83\n");
    let disk = disk_from(dir.path(), &image, 256 * MIB);
    let mut handle = File::options().read(true).write(true).open(&disk).unwrap();
    let written = seed::write(&mut handle, &seed(), true).unwrap();
    drop(handle);
    let cidata = 256 * MIB - seed::ADDED_SIZE;
    assert_eq!(written.seed, Seeded::Added(cidata), "{written}");

    run("sfdisk", &["--verify", disk.to_str().unwrap()]);
    let (table, parts) = sfdisk_json(&disk);
    assert_eq!(table["label"], "dos");
    let new = part(&parts, &disk, 3);
    assert_eq!(new["type"], "e", "FAT16 (LBA)");
    assert_eq!((sectors(&new["start"]) * 512, sectors(&new["size"]) * 512), (cidata, seed::ADDED_SIZE));
    let grown = part(&parts, &disk, 2);
    assert_eq!((sectors(&grown["start"]), sectors(&grown["size"])), (34816, cidata / 512 - 34816));
    let (_, image_parts) = sfdisk_json(&image);
    assert_eq!(part(&parts, &disk, 1)["size"], part(&image_parts, &image, 1)["size"]);
    assert_eq!(part(&parts, &disk, 1)["bootable"], true);
    check_seed(dir.path(), &disk, cidata);
    Ok(())
}

/// Writes the seed to `disk`, expecting no partition added (the reason is returned) and, when
/// no growth is asked for, the disk unchanged.
fn refused(dir: &Path, disk: &Path, grow: bool) -> (TableError, Written) {
    let before = dir.join("before.raw");
    std::fs::copy(disk, &before).unwrap();
    let mut handle = File::options().read(true).write(true).open(disk).unwrap();
    let written = seed::write(&mut handle, &seed(), grow).unwrap();
    drop(handle);
    let Seeded::NotAdded(why) = written.seed.clone() else { panic!("{written}") };
    let message = written.to_string();
    assert!(message.contains(&why.to_string()) && message.contains("no seed"), "{message}");
    if !grow {
        run("cmp", &[before.to_str().unwrap(), disk.to_str().unwrap()]);
    }
    (why, written)
}

#[test]
fn tables_without_room_a_free_slot_or_a_valid_crc_are_left_as_they_were() -> Result<(), String> {
    if !need("tables_without_room_a_free_slot_or_a_valid_crc_are_left_as_they_were")? {
        return Ok(());
    }
    let dir = tempfile::tempdir().unwrap();

    // No room: the disk is the image's size and its root fills it.
    let image = gpt_image(dir.path(), 64 * MIB);
    let disk = disk_from(dir.path(), &image, 64 * MIB);
    let (why, _) = refused(dir.path(), &disk, false);
    assert!(matches!(why, TableError::NoRoom { need, .. } if need == seed::ADDED_SIZE), "{why}");
    sgdisk_verifies(&disk);

    // A corrupt primary GPT header: nothing is written, not even the growth asked for.
    let disk = disk_from(dir.path(), &image, 128 * MIB);
    let mut header = get(&disk, 512, 512);
    header[56] ^= 0xff; // the disk GUID, under the header's CRC
    put(&disk, 512, &header);
    let before = dir.path().join("corrupt.raw");
    std::fs::copy(&disk, &before).unwrap();
    let (why, written) = refused(dir.path(), &disk, true);
    assert!(matches!(&why, TableError::CorruptGpt(what) if what.contains("header CRC32")), "{why}");
    assert_eq!(written.grown, Some(Err(why.clone())));
    assert!(written.to_string().contains("the last partition was not grown: the GPT is corrupt"), "{written}");
    run("cmp", &[before.to_str().unwrap(), disk.to_str().unwrap()]);

    // Four MBR primaries: no slot for CIDATA.
    let script =
        "label: dos\nstart=2048, size=4MiB, type=83\nsize=4MiB, type=83\nsize=4MiB, type=83\nsize=4MiB, type=83\n";
    let image = mbr_image(dir.path(), 32 * MIB, script);
    let disk = disk_from(dir.path(), &image, 128 * MIB);
    let (_, before_parts) = sfdisk_json(&disk);
    let (why, _) = refused(dir.path(), &disk, false);
    assert_eq!(why, TableError::MbrFull);
    assert!(why.to_string().contains("all four MBR primary partition slots are used"));

    // … with growth asked for: partition 4 grows to the disk's end, the others stay.
    let (_, written) = refused(dir.path(), &disk, true);
    let grown = written.grown.clone().unwrap().unwrap();
    assert_eq!((grown.number, grown.to), (4, 128 * MIB - grown.start));
    run("sfdisk", &["--verify", disk.to_str().unwrap()]);
    let (_, parts) = sfdisk_json(&disk);
    assert_eq!(parts[..3], before_parts[..3], "partitions 1 to 3 untouched");
    assert_eq!(sectors(&parts[3]["size"]) * 512, grown.to);
    Ok(())
}
