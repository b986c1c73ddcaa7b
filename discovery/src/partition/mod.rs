//! Partition tables: MBR (with extended/logical partitions) and GPT.
//!
//! [`read_table`] decides like the kernel and libblkid: a protective MBR (type 0xEE) means GPT,
//! another valid MBR means a DOS table. Unlike them it also reads a GPT whose protective MBR
//! is gone (when LBA 1 still holds a GPT header), and a GPT whose primary copy is damaged (from
//! the backup copy at the end of the device), saying so in [`Table::warnings`]. A disk whose
//! first sectors were wiped entirely is not guessed from a lone backup header: ask
//! [`gpt::read_backup`] for that explicitly.
//!
//! Nothing read from disk sizes an allocation without a cap: the GPT entry array is limited to
//! [`gpt::MAX_ENTRY_ARRAY`] bytes and extended-partition chains to [`mbr::MAX_EBRS`] records.

pub mod gpt;
pub mod mbr;

use std::io::{Read, Seek};

use crate::read_at;

/// Which kind of partition table a disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// MBR / "DOS" partition table (primary, extended and logical partitions).
    Dos,
    /// GUID Partition Table.
    Gpt,
}

impl TableKind {
    /// The name blkid gives the table type (`PTTYPE`): `"dos"` or `"gpt"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Dos => "dos",
            TableKind::Gpt => "gpt",
        }
    }
}

/// A partition's type as recorded in its table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PartType {
    /// MBR system indicator byte (0x83 Linux, 0x82 swap, 0x05 extended...).
    Mbr(u8),
    /// GPT partition type GUID, lowercase (see the constants in [`gpt`]).
    Gpt(String),
}

impl PartType {
    /// Whether this is an MBR extended partition (a container of logical partitions).
    pub fn is_extended(&self) -> bool {
        matches!(self, PartType::Mbr(t) if mbr::is_extended(*t))
    }
}

/// One partition of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Partition number as the kernel numbers it: MBR primaries 1-4 by slot, logical
    /// partitions from 5 in chain order; GPT entries by their index in the array, from 1.
    pub number: u32,
    /// Offset from the start of the device, in bytes.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type recorded in the table.
    pub part_type: PartType,
    /// blkid's `PARTUUID`: `"<disk id>-<nn>"` (hex partition number) for MBR, the partition's
    /// unique GUID for GPT. `None` for an MBR whose disk identifier is 0.
    pub uuid: Option<String>,
    /// blkid's `PARTLABEL` (GPT partition name); `None` for MBR and for unnamed entries.
    pub name: Option<String>,
    /// MBR boot flag (0x80), or the GPT "legacy BIOS bootable" attribute (bit 2).
    pub bootable: bool,
    /// GPT attribute bits; for MBR the raw boot indicator byte (as libblkid's flags).
    pub attributes: u64,
}

impl Partition {
    /// One past the last byte of the partition (saturating).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

/// A partition table read from a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Table type.
    pub kind: TableKind,
    /// blkid's `PTUUID`: the MBR disk identifier as 8 hex digits (`None` when 0), or the GPT
    /// disk GUID.
    pub id: Option<String>,
    /// Logical sector size the table was read with (512, or 4096 for a 4K-native GPT).
    pub sector_size: u32,
    /// Partitions in table order (MBR extended containers included, as sfdisk lists them).
    pub partitions: Vec<Partition>,
    /// Problems found that did not prevent reading: damaged primary GPT, partitions past
    /// the end of the device, overlaps, broken extended chains...
    pub warnings: Vec<String>,
}

/// Why a partition table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// Reading the device failed.
    #[error("cannot read the partition table: {0}")]
    Io(#[from] std::io::Error),
    /// The protective MBR announces a GPT, but neither GPT copy is usable.
    #[error("the disk has a protective MBR but no usable GPT: {0}")]
    BrokenGpt(String),
}

/// Reads the partition table of a device of `size` bytes (the size of the whole device: the
/// backup GPT is looked for at its end and partitions are checked against it).
///
/// Returns `Ok(None)` when there is no partition table (no MBR signature and no GPT, or sector
/// 0 is a FAT/NTFS boot sector of a whole-device filesystem).
pub fn read_table<R: Read + Seek>(dev: &mut R, size: u64) -> Result<Option<Table>, PartitionError> {
    let head = read_at(dev, 0, 1024)?;
    let (sector0, sector1) = head.split_at(head.len().min(512));
    let mut table = match mbr::classify(sector0, sector1) {
        mbr::Sector0::Protective => match gpt::probe(dev, size, false)? {
            gpt::Probe::Found(t) => t,
            gpt::Probe::Absent => {
                return Err(PartitionError::BrokenGpt(
                    "no GPT header at LBA 1 nor at the end of the device".into(),
                ))
            }
            gpt::Probe::Broken(why) => return Err(PartitionError::BrokenGpt(why)),
        },
        mbr::Sector0::Dos => {
            let mut t = mbr::read(dev, size, sector0)?;
            if gpt::primary_present(dev, size)? {
                t.warnings.push(
                    "a valid GPT header is also present at LBA 1, but the MBR has no protective \
                     (0xEE) entry: the MBR is used, as the kernel and blkid do"
                        .into(),
                );
            }
            t
        }
        // Without a protective MBR, only a GPT with a header at LBA 1 counts (a backup header
        // alone may be a leftover behind a whole-disk filesystem: see gpt::read_backup).
        mbr::Sector0::Other => match gpt::probe(dev, size, true)? {
            gpt::Probe::Found(mut t) => {
                t.warnings.insert(
                    0,
                    "the protective MBR is missing or damaged (the kernel and blkid will not see \
                     this GPT until it is rewritten)"
                        .into(),
                );
                t
            }
            gpt::Probe::Absent | gpt::Probe::Broken(_) => return Ok(None),
        },
    };
    check_layout(&mut table, size);
    Ok(Some(table))
}

/// Flags partitions that go past the end of the device or overlap one another.
pub(crate) fn check_layout(t: &mut Table, size: u64) {
    for p in &t.partitions {
        if p.start
            .checked_add(p.size)
            .filter(|&end| end <= size)
            .is_none()
        {
            t.warnings.push(format!(
                "partition {} (bytes {}..{}) extends beyond the end of the device ({size} bytes)",
                p.number,
                p.start,
                p.end()
            ));
        }
    }
    // Extended containers hold their logical partitions by design; leave them out.
    let mut spans: Vec<&Partition> = t
        .partitions
        .iter()
        .filter(|p| !p.part_type.is_extended())
        .collect();
    spans.sort_by_key(|p| (p.start, p.number));
    for w in spans.windows(2) {
        if let [a, b] = w {
            if b.start < a.end() {
                t.warnings
                    .push(format!("partitions {} and {} overlap", a.number, b.number));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gpt::tests::{build_image, sample_parts};
    use super::*;
    use std::io::Cursor;

    fn read_vec(img: Vec<u8>) -> Result<Option<Table>, PartitionError> {
        let size = img.len() as u64;
        read_table(&mut Cursor::new(img), size)
    }

    #[test]
    fn names() {
        assert_eq!(TableKind::Dos.as_str(), "dos");
        assert_eq!(TableKind::Gpt.as_str(), "gpt");
    }

    #[test]
    fn empty_and_tiny_devices_have_no_table() {
        assert!(read_vec(vec![]).unwrap().is_none());
        assert!(read_vec(vec![0; 100]).unwrap().is_none());
        assert!(read_vec(vec![0; 1 << 20]).unwrap().is_none());
    }

    #[test]
    fn dos_table() {
        let t = read_vec(mbr::tests::sample()).unwrap().unwrap();
        assert_eq!(t.kind, TableKind::Dos);
        assert_eq!(t.partitions.len(), 6);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn gpt_table() {
        let t = read_vec(build_image(
            300,
            512,
            "01234567-89ab-cdef-0123-456789abcdef",
            &sample_parts(),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        assert_eq!(t.partitions.len(), 2);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn gpt_without_protective_mbr() {
        let mut img = build_image(
            300,
            512,
            "01234567-89ab-cdef-0123-456789abcdef",
            &sample_parts(),
        );
        img[..512].fill(0);
        let t = read_vec(img).unwrap().unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        assert!(t.warnings[0].contains("protective MBR"));
    }

    #[test]
    fn wiped_start_is_not_guessed_from_the_backup() {
        let mut img = build_image(
            300,
            512,
            "01234567-89ab-cdef-0123-456789abcdef",
            &sample_parts(),
        );
        img[..1024].fill(0);
        assert!(read_vec(img).unwrap().is_none());
    }

    #[test]
    fn protective_mbr_without_gpt_is_an_error() {
        let mut img = build_image(
            300,
            512,
            "01234567-89ab-cdef-0123-456789abcdef",
            &sample_parts(),
        );
        img[512..1024].fill(0);
        img[299 * 512..].fill(0);
        assert!(matches!(read_vec(img), Err(PartitionError::BrokenGpt(_))));
    }

    #[test]
    fn partition_beyond_end_is_kept_and_flagged() {
        let mut img = vec![0u8; 100 * 512];
        img[440] = 7;
        mbr::tests::put_slot(&mut img[..512], 0, 0, mbr::LINUX, 10, 80);
        mbr::tests::put_slot(&mut img[..512], 1, 0, mbr::LINUX, 50, 1000);
        let t = read_vec(img).unwrap().unwrap();
        assert_eq!(t.partitions.len(), 2);
        assert!(t
            .warnings
            .iter()
            .any(|w| w.contains("partition 2") && w.contains("beyond the end")));
        assert!(t.warnings.iter().any(|w| w.contains("overlap")));
        assert_eq!(t.id.as_deref(), Some("00000007"));
    }

    #[test]
    fn stale_gpt_behind_dos_mbr_is_reported() {
        let mut img = build_image(
            300,
            512,
            "01234567-89ab-cdef-0123-456789abcdef",
            &sample_parts(),
        );
        img[446..510].fill(0);
        mbr::tests::put_slot(&mut img[..512], 0, 0, mbr::LINUX, 34, 100);
        let t = read_vec(img).unwrap().unwrap();
        assert_eq!(t.kind, TableKind::Dos);
        assert!(t
            .warnings
            .iter()
            .any(|w| w.contains("GPT header is also present")));
    }

    #[test]
    fn io_errors_are_reported() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("boom"))
            }
        }
        impl Seek for Failing {
            fn seek(&mut self, _: std::io::SeekFrom) -> std::io::Result<u64> {
                Ok(0)
            }
        }
        assert!(matches!(
            read_table(&mut Failing, 1 << 20),
            Err(PartitionError::Io(_))
        ));
    }
}
