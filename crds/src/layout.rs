//! What a HardwareProfile's partitions mean on a disk, for images that are a tree of files
//! (`format: tar`): which layouts can be made, and where each partition goes. Pure; the
//! operator checks a layout when it plans, the agent places it on the disk it finds.

use crate::hardware_profile::{Filesystem, Partition, PartitionTable};

/// Partitions start on this boundary (bytes), the first one after the table.
pub const ALIGN: u64 = 1 << 20;
/// The largest disk an MBR addresses (32-bit sectors of 512 bytes).
pub const MBR_LIMIT: u64 = (u32::MAX as u64) * 512;

/// Why a layout cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// No partition is mounted at `/`.
    #[error("the partitions have no root file system (mountPoint: /)")]
    NoRoot,
    /// The root is not a file system the tree can go on.
    #[error("the root file system must be ext4")]
    RootNotExt4,
    /// A file system the agent cannot make yet.
    #[error("{0} file systems are not made by machinist yet (ext4, vfat and swap are)")]
    Unsupported(&'static str),
    /// Two partitions at one mount point.
    #[error("two partitions are mounted at {0}")]
    SameMountPoint(String),
    /// A mount point on swap, or none on a file system that needs one.
    #[error("partition {0}: swap has no mount point, and ext4 needs one")]
    MountPoint(usize),
    /// More partitions than an MBR holds (extended partitions are not made).
    #[error("an msdos partition table holds 4 partitions; this layout has {0}")]
    TooManyForMbr(usize),
    /// A size that does not parse.
    #[error("partition {index}: size {size:?} is not NMiB, NGiB, NTiB, N% or rest")]
    BadSize {
        /// The partition (from 1).
        index: usize,
        /// Its size.
        size: String,
    },
    /// The partitions do not fit.
    #[error("the partitions need {needed} bytes; the disk has {available} usable")]
    DoesNotFit {
        /// What they take.
        needed: u64,
        /// What the disk offers.
        available: u64,
    },
}

/// The partitions a tree is unpacked onto: the profile's, or one ext4 root over the whole disk.
pub fn tree_partitions(partitions: &[Partition]) -> Vec<Partition> {
    if partitions.is_empty() {
        vec![Partition {
            size: "rest".into(),
            filesystem: Filesystem::Ext4,
            mount_point: Some("/".into()),
            label: None,
        }]
    } else {
        partitions.to_vec()
    }
}

/// Whether a tree can be unpacked onto `partitions` (after [`tree_partitions`]): an ext4 root,
/// file systems the agent makes (ext4, vfat, swap), one partition per mount point, swap
/// without a mount point and ext4 with one, at most four partitions on an MBR.
pub fn check(table: PartitionTable, partitions: &[Partition]) -> Result<(), LayoutError> {
    if table == PartitionTable::Msdos && partitions.len() > 4 {
        return Err(LayoutError::TooManyForMbr(partitions.len()));
    }
    let mut mounts = std::collections::BTreeSet::new();
    for (index, partition) in partitions.iter().enumerate() {
        size_of(index + 1, &partition.size)?;
        match (partition.filesystem, &partition.mount_point) {
            (Filesystem::Xfs, _) => return Err(LayoutError::Unsupported("xfs")),
            (Filesystem::Swap, Some(_)) | (Filesystem::Ext4, None) => return Err(LayoutError::MountPoint(index + 1)),
            _ => {}
        }
        if let Some(mount) = &partition.mount_point
            && !mounts.insert(mount.trim_end_matches('/').to_owned())
        {
            return Err(LayoutError::SameMountPoint(mount.clone()));
        }
    }
    let root = partitions.iter().find(|p| p.mount_point.as_deref() == Some("/")).ok_or(LayoutError::NoRoot)?;
    if root.filesystem != Filesystem::Ext4 {
        return Err(LayoutError::RootNotExt4);
    }
    Ok(())
}

/// A size as written: bytes, a percentage of the disk, or the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Size {
    Bytes(u64),
    Percent(u64),
    Rest,
}

fn size_of(index: usize, size: &str) -> Result<Size, LayoutError> {
    let bad = || LayoutError::BadSize { index, size: size.to_owned() };
    if size == "rest" {
        return Ok(Size::Rest);
    }
    if let Some(percent) = size.strip_suffix('%') {
        return percent.parse().ok().filter(|p| (1..=100).contains(p)).map(Size::Percent).ok_or_else(bad);
    }
    let units = [("MiB", 1u64 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40)];
    let (number, unit) =
        units.iter().find_map(|(suffix, unit)| size.strip_suffix(suffix).map(|n| (n, *unit))).ok_or_else(bad)?;
    number.parse::<u64>().ok().filter(|n| *n > 0).and_then(|n| n.checked_mul(unit)).map(Size::Bytes).ok_or_else(bad)
}

/// Where each partition goes on a disk of `disk_bytes` (byte offset and length), in order:
/// from [`ALIGN`], each on a [`ALIGN`] boundary, sizes rounded up to it; a percentage is of
/// the usable space (from [`ALIGN`] to the end below), so `100%` is the whole disk; `rest`
/// takes what the others leave, up to the last usable byte (GPT keeps the
/// disk's last [`ALIGN`] for its backup; an MBR addresses at most [`MBR_LIMIT`]).
pub fn place(table: PartitionTable, partitions: &[Partition], disk_bytes: u64) -> Result<Vec<(u64, u64)>, LayoutError> {
    check(table, partitions)?;
    let end = match table {
        PartitionTable::Gpt => disk_bytes.saturating_sub(ALIGN),
        PartitionTable::Msdos => disk_bytes.min(MBR_LIMIT),
    } / ALIGN
        * ALIGN;
    let round = |bytes: u64| bytes.div_ceil(ALIGN).saturating_mul(ALIGN);
    let available = end.saturating_sub(ALIGN);
    let percent_of = |percent: u64| (available / ALIGN * percent / 100).saturating_mul(ALIGN);
    let sizes: Vec<Size> =
        partitions.iter().enumerate().map(|(i, p)| size_of(i + 1, &p.size)).collect::<Result<_, _>>()?;
    let fixed: u64 = sizes
        .iter()
        .map(|size| match size {
            Size::Bytes(bytes) => round(*bytes),
            Size::Percent(percent) => percent_of(*percent),
            Size::Rest => 0,
        })
        .fold(0u64, u64::saturating_add);
    if fixed >= available && sizes.contains(&Size::Rest) || fixed > available {
        return Err(LayoutError::DoesNotFit { needed: fixed.saturating_add(ALIGN), available });
    }
    let mut at = ALIGN;
    let mut placed = Vec::with_capacity(partitions.len());
    for size in sizes {
        let len = match size {
            Size::Bytes(bytes) => round(bytes),
            Size::Percent(percent) => percent_of(percent),
            Size::Rest => available - fixed,
        };
        placed.push((at, len));
        at += len;
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(size: &str, filesystem: Filesystem, mount: Option<&str>) -> Partition {
        Partition { size: size.into(), filesystem, mount_point: mount.map(str::to_owned), label: None }
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn edeploy_layouts_are_placed_on_mib_boundaries() {
        let layout = [
            partition("512MiB", Filesystem::Vfat, Some("/boot/efi")),
            partition("1GiB", Filesystem::Swap, None),
            partition("rest", Filesystem::Ext4, Some("/")),
        ];
        let placed = place(PartitionTable::Gpt, &layout, 10 * GIB).unwrap();
        assert_eq!(
            placed,
            [(ALIGN, 512 * ALIGN), (513 * ALIGN, GIB), (513 * ALIGN + GIB, 10 * GIB - 2 * ALIGN - 512 * ALIGN - GIB)]
        );
        let (last_start, last_len) = placed[2];
        assert_eq!(last_start + last_len, 10 * GIB - ALIGN, "GPT keeps the last MiB for its backup");
        // eDeploy's `hp` profile: 100% is the whole disk.
        let whole = place(PartitionTable::Msdos, &[partition("100%", Filesystem::Ext4, Some("/"))], 4 * GIB);
        assert_eq!(whole, Ok(vec![(ALIGN, 4 * GIB - ALIGN)]));
        let half =
            place(PartitionTable::Msdos, &[partition("50%", Filesystem::Ext4, Some("/"))], 4 * GIB + ALIGN).unwrap();
        assert_eq!(half, [(ALIGN, 2 * GIB)]);
        let default = tree_partitions(&[]);
        assert_eq!(place(PartitionTable::Msdos, &default, 4 * GIB).unwrap(), [(ALIGN, 4 * GIB - ALIGN)]);
    }

    #[test]
    fn layouts_a_tree_cannot_go_on_say_why() {
        let root = partition("rest", Filesystem::Ext4, Some("/"));
        let check_one = |extra: Partition| check(PartitionTable::Gpt, &[extra, root.clone()]);
        assert_eq!(check_one(partition("1GiB", Filesystem::Xfs, Some("/var"))), Err(LayoutError::Unsupported("xfs")));
        assert_eq!(check_one(partition("1GiB", Filesystem::Swap, Some("/swap"))), Err(LayoutError::MountPoint(1)));
        assert_eq!(check_one(partition("1GiB", Filesystem::Ext4, None)), Err(LayoutError::MountPoint(1)));
        assert_eq!(
            check_one(partition("1GiB", Filesystem::Ext4, Some("/"))),
            Err(LayoutError::SameMountPoint("/".into()))
        );
        assert_eq!(
            check_one(partition("1KiB", Filesystem::Vfat, None)),
            Err(LayoutError::BadSize { index: 1, size: "1KiB".into() })
        );
        assert_eq!(
            check(PartitionTable::Gpt, &[partition("1GiB", Filesystem::Vfat, Some("/boot"))]),
            Err(LayoutError::NoRoot)
        );
        assert_eq!(
            check(PartitionTable::Gpt, &[partition("1GiB", Filesystem::Vfat, Some("/"))]),
            Err(LayoutError::RootNotExt4)
        );
        let five = vec![
            root.clone(),
            partition("1MiB", Filesystem::Vfat, None),
            partition("1MiB", Filesystem::Vfat, None),
            partition("1MiB", Filesystem::Vfat, None),
            partition("1MiB", Filesystem::Vfat, None),
        ];
        assert_eq!(check(PartitionTable::Msdos, &five), Err(LayoutError::TooManyForMbr(5)));
        assert!(check(PartitionTable::Gpt, &five).is_ok());
        let too_big = place(PartitionTable::Gpt, &[partition("2TiB", Filesystem::Ext4, Some("/"))], GIB);
        assert!(matches!(too_big, Err(LayoutError::DoesNotFit { .. })), "{too_big:?}");
    }
}
