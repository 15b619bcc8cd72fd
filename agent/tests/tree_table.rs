//! The partition tables the agent makes for `tar` trees, read by the real partitioning tools:
//! eDeploy's layouts placed on a sparse disk file (`machinist_crds::layout::place` through the
//! contract's re-export), the tables written as [`machinist_agent::fresh_table::create`] says,
//! then `sgdisk -v`/`-i` (GPT: checksums, backup at the disk's end, types, the legacy BIOS
//! bootable attribute, names) and `sfdisk --json` (MBR: types, the active partition, the disk
//! signature Linux's `PARTUUID` is made of).
//!
//! Prerequisites follow `machinist_e2e::prereq` (gdisk, fdisk from `scripts/deps`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::FileExt;
use std::process::Command;

use machinist_agent::fresh_table::{Fresh, create, guid, guid_text, partuuid};
use machinist_agent_protocol::install::layout::place;
use machinist_agent_protocol::install::{Filesystem, Partition, PartitionTable};
use serde_json::Value;

const GIB: u64 = 1 << 30;

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn partition(size: &str, filesystem: Filesystem, mount: Option<&str>, label: Option<&str>) -> Partition {
    Partition { size: size.into(), filesystem, mount_point: mount.map(str::to_owned), label: label.map(str::to_owned) }
}

/// The tables of `layout` on a fresh sparse disk file of `size` bytes, and what was placed.
fn disk_with(
    table: PartitionTable,
    layout: &[Partition],
    size: u64,
) -> (tempfile::NamedTempFile, Vec<Fresh>, [u8; 16]) {
    let placed = place(table, layout, size).unwrap();
    let fresh: Vec<Fresh> = layout
        .iter()
        .zip(&placed)
        .enumerate()
        .map(|(i, (p, (start, len)))| Fresh {
            start: *start,
            len: *len,
            filesystem: p.filesystem,
            esp: p.mount_point.as_deref() == Some("/boot/efi"),
            boot: p.mount_point.as_deref() == Some("/"),
            guid: guid(&format!("12345678-9abc-4def-8123-00000000000{i}")),
            name: p.label.clone().unwrap_or_else(|| format!("part{}", i + 1)),
        })
        .collect();
    let disk_guid = guid("a1b2c3d4-0000-4000-8000-000000000001");
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(size).unwrap();
    for write in create(table, &fresh, size, disk_guid, &[0xeb; 440]).unwrap() {
        file.as_file().write_all_at(&write.bytes, write.offset).unwrap();
    }
    (file, fresh, disk_guid)
}

#[test]
fn a_gpt_for_edeploys_vm_layout_is_what_sgdisk_expects() {
    if !machinist_e2e::prereq::need_programs("a_gpt_for_edeploys_vm_layout_is_what_sgdisk_expects", &["sgdisk"])
        .unwrap()
    {
        return;
    }
    let layout = [
        partition("512MiB", Filesystem::Vfat, Some("/boot/efi"), None),
        partition("1GiB", Filesystem::Swap, None, None),
        partition("rest", Filesystem::Ext4, Some("/"), Some("root")),
    ];
    let (disk, fresh, disk_guid) = disk_with(PartitionTable::Gpt, &layout, 10 * GIB);
    let path = disk.path().to_str().unwrap();
    let verify = run("sgdisk", &["-v", path]);
    assert!(verify.contains("No problems found"), "{verify}");
    let types = ["EFI system partition", "Linux swap", "Linux filesystem"];
    for (i, kind) in types.iter().enumerate() {
        let info = run("sgdisk", &["-i", &(i + 1).to_string(), path]);
        assert!(info.contains(kind), "{info}");
        assert!(info.to_lowercase().contains(&guid_text(&fresh[i].guid)), "{info}");
        assert!(info.contains(&format!("First sector: {}", fresh[i].start / 512)), "{info}");
    }
    let root = run("sgdisk", &["-A", "3:show", path]);
    assert!(root.contains("legacy BIOS bootable"), "the root carries the attribute gptmbr.bin boots: {root}");
    assert!(run("sgdisk", &["-i", "3", path]).contains("'root'"));
    assert_eq!(partuuid(PartitionTable::Gpt, &fresh, 2, &disk_guid), guid_text(&fresh[2].guid));
}

#[test]
fn an_mbr_for_edeploys_hp_layout_is_what_sfdisk_reads() {
    if !machinist_e2e::prereq::need_programs("an_mbr_for_edeploys_hp_layout_is_what_sfdisk_reads", &["sfdisk"]).unwrap()
    {
        return;
    }
    let layout = [
        partition("8MiB", Filesystem::Vfat, None, Some("CIDATA")),
        partition("100%", Filesystem::Ext4, Some("/"), None),
    ];
    let error = place(PartitionTable::Msdos, &layout, 4 * GIB).unwrap_err();
    assert!(error.to_string().contains("need"), "8 MiB and 100% do not fit: {error}");
    let layout = [
        partition("8MiB", Filesystem::Vfat, None, Some("CIDATA")),
        partition("rest", Filesystem::Ext4, Some("/"), None),
    ];
    let (disk, fresh, disk_guid) = disk_with(PartitionTable::Msdos, &layout, 4 * GIB);
    let path = disk.path().to_str().unwrap();
    run("sfdisk", &["--verify", path]);
    let json: Value = serde_json::from_str(&run("sfdisk", &["--json", path])).unwrap();
    let table = &json["partitiontable"];
    assert_eq!(table["label"], "dos");
    assert_eq!(
        table["id"].as_str().unwrap(),
        format!("0x{}", &partuuid(PartitionTable::Msdos, &fresh, 0, &disk_guid)[..8])
    );
    let partitions = table["partitions"].as_array().unwrap();
    assert_eq!((partitions[0]["type"].as_str(), partitions[1]["type"].as_str()), (Some("c"), Some("83")));
    assert_eq!(partitions[0]["start"], 2048);
    assert_eq!(partitions[1]["bootable"], true, "{partitions:?}");
    assert!(partitions[0].get("bootable").is_none());
    assert_eq!(partitions[1]["start"].as_u64().unwrap() + partitions[1]["size"].as_u64().unwrap(), 4 * GIB / 512);
}
