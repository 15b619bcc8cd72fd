//! Writing an image to the target disk as it downloads: the bytes are hashed as they arrive
//! (sha256 of the file as downloaded, what the Role gives), decompressed (gzip, zstd, xz) and
//! written in large blocks, never past the end of the disk. A disk left with an image whose
//! checksum did not match has its first MiB wiped, so it never boots half an image.
//!
//! Formats: `raw`, compressed or not, written here; `tar` trees go onto partitions the agent
//! makes ([`crate::rootfs`]); `qcow2` is refused with a clear reason before anything is written
//! (not built). Once a raw image is written, the NoCloud seed goes into the
//! image's `CIDATA` partition, added at the end of the disk when the image has none, and the
//! last partition is grown when the Role asks ([`crate::seed`]).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use machinist_agent_protocol::install::{
    Compression, ImageFormat, ImageSource, InstallPhase, InstallReport, PlanResponse,
};
use sha2::{Digest, Sha256};

use crate::sidecar::{SendError, Sidecar};

/// Bytes written per disk write.
const BLOCK: usize = 4 * 1024 * 1024;
/// Bytes wiped at the start of a disk whose image turned out wrong.
const WIPE: usize = 1024 * 1024;

/// Why an install could not be done.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The plan could not be fetched.
    #[error("failed to fetch the install plan: {0}")]
    Plan(#[source] SendError),
    /// The image could not be downloaded.
    #[error("failed to download the image: {0}")]
    Download(#[source] SendError),
    /// The success could not be reported.
    #[error("failed to report the install's success: {0}")]
    Report(#[source] SendError),
    /// The plan names a disk path that is not a device under `/dev`.
    #[error("target disk {0:?} is not a /dev path")]
    NotADevice(String),
    /// The target disk is not there.
    #[error("target disk {disk} does not exist ({source})")]
    NoDisk {
        /// The disk.
        disk: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An image format the agent does not write yet.
    #[error(
        "image format {0} is not supported: use a raw image or a tar tree (optionally gzip, zstd or xz compressed)"
    )]
    Format(&'static str),
    /// The image is larger than the disk.
    #[error("the image does not fit target disk {disk}: it is {image} bytes or more, the disk {disk_size}")]
    TooSmall {
        /// The disk.
        disk: String,
        /// Bytes of the image known so far.
        image: u64,
        /// Bytes of the disk.
        disk_size: u64,
    },
    /// The image's checksum is not the Role's.
    #[error("sha256 mismatch: the Role says {expected}, the downloaded image is {actual}")]
    Checksum {
        /// What the Role says.
        expected: String,
        /// What was downloaded.
        actual: String,
    },
    /// The image could not be decompressed.
    #[error("failed to decompress the {compression} image: {source}")]
    Decompress {
        /// The compression.
        compression: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing or reading failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The whole install: fetches the plan, checks the disk, streams the image (its download
/// started up to `download_attempts` times), reporting each phase; reports `Failed` with the
/// reason when anything goes wrong after the plan came.
pub fn install(
    sidecar: &Sidecar,
    dev_root: &Path,
    download_attempts: u32,
) -> Result<(PlanResponse, Written), InstallError> {
    let plan = sidecar.plan().map_err(InstallError::Plan)?;
    tracing::info!(attempt = plan.attempt, disk = %plan.plan.target_disk, image = %plan.plan.image.url, "install plan");
    let report = |phase, bytes, total, message: &str| {
        if let Err(error) = sidecar.install_report(&InstallReport::new(plan.attempt, phase, bytes, total, message)) {
            tracing::warn!(%error, ?phase, "failed to report install progress");
        }
    };
    let outcome = write_plan(sidecar, dev_root, download_attempts, &plan, &report).and_then(|written| {
        let message = format!("{} bytes written to {}", written.bytes, plan.plan.target_disk);
        let succeeded =
            InstallReport::new(plan.attempt, InstallPhase::Succeeded, written.bytes, Some(written.bytes), &message);
        sidecar.install_report(&succeeded).map_err(InstallError::Report)?;
        Ok(written)
    });
    match outcome {
        Ok(written) => Ok((plan, written)),
        Err(error) => {
            if !matches!(error, InstallError::Report(_)) {
                report(InstallPhase::Failed, 0, None, &error.to_string());
            }
            Err(error)
        }
    }
}

/// Reports a phase: (phase, bytes written, total, message).
type Reporter<'a> = dyn Fn(InstallPhase, u64, Option<u64>, &str) + 'a;

fn write_plan(
    sidecar: &Sidecar,
    dev_root: &Path,
    download_attempts: u32,
    response: &PlanResponse,
    report: &Reporter<'_>,
) -> Result<Written, InstallError> {
    let plan = &response.plan;
    let disk_name = plan.target_disk.as_str();
    check_format(&plan.image)?;
    let path = device_path(dev_root, disk_name)?;
    let mut disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| InstallError::NoDisk { disk: disk_name.to_owned(), source })?;
    let disk_size = size_of(&disk)
        .map_err(|source| InstallError::Io { what: format!("failed to read the size of {disk_name}"), source })?;
    report(InstallPhase::Planned, 0, None, &format!("{disk_name}: {disk_size} bytes"));
    let (body, length) = sidecar.download(&plan.image.url, download_attempts).map_err(InstallError::Download)?;
    if plan.image.format == ImageFormat::Tar {
        let layout =
            plan.layout.as_ref().ok_or(InstallError::Format("tar without the profile's partitions in the plan"))?;
        report(InstallPhase::Writing, 0, None, "");
        let tools = crate::rootfs::Tools::default();
        let outcome = crate::rootfs::install(
            body,
            &plan.image,
            layout,
            plan.hostname.as_deref(),
            &response.seed,
            &path,
            &mut disk,
            &tools,
            |bytes| report(InstallPhase::Writing, bytes, None, ""),
        );
        return match outcome {
            Ok((written, message)) => {
                tracing::info!(%message, "tree installed");
                report(
                    InstallPhase::Written,
                    written.bytes,
                    Some(written.bytes),
                    &format!("sha256 matches; {message}"),
                );
                Ok(written)
            }
            Err(error) => {
                // Part of a system is worse than none: it might boot.
                wipe(&mut disk);
                Err(error)
            }
        };
    }
    // The decompressed size is known up front only for an uncompressed image.
    let total = length.filter(|_| plan.image.compression == Compression::None);
    if let Some(total) = total
        && total > disk_size
    {
        return Err(InstallError::TooSmall { disk: disk_name.to_owned(), image: total, disk_size });
    }
    report(InstallPhase::Writing, 0, total, "");
    let written = write_image(body, &plan.image, &mut disk, disk_name, |bytes| {
        report(InstallPhase::Writing, bytes, total, "");
    })?;
    let seeded = crate::seed::write(&mut disk, &response.seed, plan.image.grow_last_partition).map_err(|source| {
        InstallError::Io { what: format!("failed to write the NoCloud seed on {disk_name}"), source }
    })?;
    let message = format!("sha256 matches; {seeded}");
    tracing::info!(?seeded, "NoCloud seed");
    report(InstallPhase::Written, written.bytes, Some(written.bytes), &message);
    Ok(written)
}

/// The path of `disk` (`/dev/vda`) under `dev_root` (`/dev` on a machine, a directory of files
/// in tests).
pub fn device_path(dev_root: &Path, disk: &str) -> Result<PathBuf, InstallError> {
    let name = disk.strip_prefix("/dev/").filter(|n| !n.is_empty() && !n.split('/').any(|p| p.is_empty() || p == ".."));
    name.map(|n| dev_root.join(n)).ok_or_else(|| InstallError::NotADevice(disk.to_owned()))
}

/// Refuses what cannot be installed, before anything is written: raw images and trees
/// (`tar`, [`crate::rootfs`]) can be.
pub fn check_format(image: &ImageSource) -> Result<(), InstallError> {
    match image.format {
        ImageFormat::Raw | ImageFormat::Tar => Ok(()),
        ImageFormat::Qcow2 => Err(InstallError::Format("qcow2")),
    }
}

/// Size of a block device or a regular file: where its end is (Linux reports a block
/// device's size as its end, as `BLKGETSIZE64` does).
pub fn size_of(mut file: &File) -> io::Result<u64> {
    let size = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(size)
}

/// Counts and hashes what is read through it (the image as downloaded: raw here, trees in
/// [`crate::rootfs`]).
pub(crate) struct Hashing<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) read: u64,
}

impl<R> Hashing<R> {
    /// Hashes what `inner` gives.
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), read: 0 }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Writes to the disk, never past its end, telling `on_progress` how far it got.
struct Disk<'a, F: FnMut(u64)> {
    file: &'a mut File,
    size: u64,
    written: u64,
    refused: bool,
    /// A write to the disk failed (not the download or the decoder).
    failed: bool,
    on_progress: F,
    last_report: Instant,
}

impl<F: FnMut(u64)> Write for Disk<'_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.size {
            self.refused = true;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "the image is larger than the disk"));
        }
        if let Err(error) = self.file.write_all(buf) {
            self.failed = true;
            return Err(error);
        }
        self.written += buf.len() as u64;
        if self.last_report.elapsed() >= Duration::from_secs(1) {
            self.last_report = Instant::now();
            (self.on_progress)(self.written);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes on the disk.
    pub bytes: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
}

/// Streams `source` (the image as downloaded) to `disk` (`disk_name` in messages): hashes,
/// decompresses, writes, flushes, checks the sha256. `on_progress(bytes)` hears from it about
/// once a second.
pub fn write_image(
    source: impl Read,
    image: &ImageSource,
    disk: &mut File,
    disk_name: &str,
    on_progress: impl FnMut(u64),
) -> Result<Written, InstallError> {
    match image.format {
        ImageFormat::Raw => {}
        ImageFormat::Qcow2 => return Err(InstallError::Format("qcow2")),
        ImageFormat::Tar => return Err(InstallError::Format("tar (a tree goes on partitions, not block by block)")),
    }
    let io_error = |what: &str| {
        let what = what.to_owned();
        move |source| InstallError::Io { what: what.clone(), source }
    };
    let disk_size = size_of(disk).map_err(io_error(&format!("failed to read the size of {disk_name}")))?;
    disk.seek(SeekFrom::Start(0)).map_err(io_error(&format!("failed to seek {disk_name}")))?;
    let mut hashing = Hashing::new(source);
    let target = Disk {
        file: disk,
        size: disk_size,
        written: 0,
        refused: false,
        failed: false,
        on_progress,
        last_report: Instant::now(),
    };
    let mut out = BufWriter::with_capacity(BLOCK, target);
    let copied = match image.compression {
        Compression::None => io::copy(&mut hashing, &mut out).map(drop),
        Compression::Gzip => io::copy(&mut flate2::read::MultiGzDecoder::new(&mut hashing), &mut out).map(drop),
        Compression::Zstd => ruzstd::decoding::StreamingDecoder::new(&mut hashing)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
            .and_then(|mut decoder| io::copy(&mut decoder, &mut out).map(drop)),
        Compression::Xz => lzma_rs::xz_decompress(&mut BufReader::new(&mut hashing), &mut out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
    .and_then(|()| out.flush());
    let refused = out.get_ref().refused;
    let failed = out.get_ref().failed;
    let written = out.get_ref().written;
    if let Err(error) = copied {
        drop(out);
        // Part of an image is worse than none: it might boot.
        wipe(disk);
        return Err(if refused {
            InstallError::TooSmall { disk: disk_name.to_owned(), image: written + 1, disk_size }
        } else if failed {
            InstallError::Io { what: format!("failed to write the image to {disk_name}"), source: error }
        } else if image.compression == Compression::None {
            InstallError::Io { what: "failed to download the image".into(), source: error }
        } else {
            InstallError::Decompress { compression: compression_name(image.compression), source: error }
        });
    }
    // The hash covers the whole file, past what a decoder needed (trailing bytes included).
    io::copy(&mut hashing, &mut io::sink()).map_err(io_error("failed to read the rest of the image"))?;
    let target = out.into_inner().map_err(|e| InstallError::Io {
        what: format!("failed to write the image to {disk_name}"),
        source: io::Error::other(e.to_string()),
    })?;
    let disk = target.file;
    disk.sync_all().map_err(io_error(&format!("failed to flush {disk_name}")))?;
    let actual = hex(&hashing.hasher.finalize());
    if !actual.eq_ignore_ascii_case(&image.sha256) {
        wipe(disk);
        return Err(InstallError::Checksum { expected: image.sha256.clone(), actual });
    }
    Ok(Written { bytes: written, downloaded: hashing.read })
}

/// Zeroes the start of the disk so that a wrong image does not boot; best effort.
pub fn wipe(disk: &mut File) {
    let zeros = vec![0u8; WIPE];
    let wiped = disk.seek(SeekFrom::Start(0)).and_then(|_| disk.write_all(&zeros)).and_then(|()| disk.sync_all());
    if let Err(error) = wiped {
        tracing::warn!(%error, "failed to wipe the start of the disk");
    }
}

fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::Xz => "xz",
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Read as _;

    use super::*;

    fn source(sha256: String, format: ImageFormat, compression: Compression) -> ImageSource {
        ImageSource { url: "http://x/image".into(), sha256, format, compression, grow_last_partition: false }
    }

    fn image_bytes() -> Vec<u8> {
        (0..3 * 1024 * 1024 + 17).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    fn disk(size: u64) -> (tempfile::NamedTempFile, File) {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(size).unwrap();
        let handle = file.reopen().unwrap();
        (file, handle)
    }

    fn contents(file: &tempfile::NamedTempFile, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        file.reopen().unwrap().read_exact(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn raw_and_gzip_images_land_on_the_disk() {
        let raw = image_bytes();
        let (file, mut handle) = disk(8 << 20);
        let image = source(sha(&raw), ImageFormat::Raw, Compression::None);
        let written = write_image(raw.as_slice(), &image, &mut handle, "/dev/vda", |_| {}).unwrap();
        assert_eq!(written, Written { bytes: raw.len() as u64, downloaded: raw.len() as u64 });
        assert_eq!(contents(&file, raw.len()), raw);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let (file, mut handle) = disk(8 << 20);
        let image = source(sha(&gz), ImageFormat::Raw, Compression::Gzip);
        let written = write_image(gz.as_slice(), &image, &mut handle, "/dev/vda", |_| {}).unwrap();
        assert_eq!((written.bytes, written.downloaded), (raw.len() as u64, gz.len() as u64));
        assert_eq!(contents(&file, raw.len()), raw);
    }

    #[test]
    fn a_wrong_checksum_fails_and_wipes_the_start() {
        let raw = image_bytes();
        let (file, mut handle) = disk(8 << 20);
        let image = source("0".repeat(64), ImageFormat::Raw, Compression::None);
        let error = write_image(raw.as_slice(), &image, &mut handle, "/dev/vda", |_| {}).unwrap_err();
        assert!(matches!(&error, InstallError::Checksum { actual, .. } if *actual == sha(&raw)), "{error}");
        assert_eq!(contents(&file, WIPE), vec![0; WIPE], "no half image left to boot");
    }

    #[test]
    fn an_image_larger_than_the_disk_is_stopped_at_its_end() {
        let raw = image_bytes();
        let (file, mut handle) = disk(1 << 20);
        let image = source(sha(&raw), ImageFormat::Raw, Compression::None);
        let error = write_image(raw.as_slice(), &image, &mut handle, "/dev/vda", |_| {}).unwrap_err();
        assert!(matches!(error, InstallError::TooSmall { disk_size: 1_048_576, .. }), "{error}");
        assert_eq!(file.as_file().metadata().unwrap().len(), 1 << 20, "nothing written past the end");
    }

    #[test]
    fn corrupt_compressed_data_and_unsupported_formats_say_so() {
        let (_file, mut handle) = disk(1 << 20);
        let junk = b"not gzip at all".to_vec();
        let image = source(sha(&junk), ImageFormat::Raw, Compression::Gzip);
        let error = write_image(junk.as_slice(), &image, &mut handle, "/dev/vda", |_| {}).unwrap_err();
        assert!(matches!(error, InstallError::Decompress { compression: "gzip", .. }), "{error}");
        let qcow2 = check_format(&source(sha(&junk), ImageFormat::Qcow2, Compression::None)).unwrap_err();
        assert!(qcow2.to_string().contains("qcow2"), "{qcow2}");
        assert!(check_format(&source(sha(&junk), ImageFormat::Tar, Compression::None)).is_ok());
        // A tree goes on partitions (crate::rootfs), never block by block.
        let tar = source(sha(&junk), ImageFormat::Tar, Compression::None);
        let error = write_image(junk.as_slice(), &tar, &mut handle, "/dev/vda", |_| {}).unwrap_err();
        assert!(error.to_string().contains("tar (a tree goes on partitions"), "{error}");
    }

    #[test]
    fn disk_paths_stay_under_the_device_root() {
        let root = Path::new("/tmp/devs");
        assert_eq!(device_path(root, "/dev/vda").unwrap(), root.join("vda"));
        assert_eq!(device_path(root, "/dev/disk/by-id/x").unwrap(), root.join("disk/by-id/x"));
        for bad in ["/dev/../etc/passwd", "/etc/passwd", "/dev/", "/dev//x", "vda"] {
            assert!(device_path(root, bad).is_err(), "{bad}");
        }
    }
}
