//! One disk, scanned from its bytes: partition table, each volume's signature, and whether it is
//! vmrescue's own rescue medium. The same code runs on `/dev/vda` in the guest and on an image
//! file on the host.

use std::io::{self, Read, Seek, SeekFrom};

use crate::fstype::FsType;
use crate::partition::{self, PartType, Partition, Table};
use crate::probe::{self, Probe};
use crate::{ext, medium, read_at};

/// A region of a disk that may hold a filesystem: a partition, or the whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Kernel-style name: `vda1`, `nvme0n1p2`, or the disk's own name for a whole-disk volume.
    pub name: String,
    pub offset: u64,
    pub size: u64,
    pub partition: Option<Partition>,
    /// `None`: no known signature (reported as `unknown`).
    pub probe: Option<Probe>,
    /// The primary ext superblock is unreadable and this backup was used instead.
    pub ext_backup: Option<ext::Backup>,
}

/// Everything found on one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskScan {
    pub name: String,
    pub size: u64,
    pub table: Option<Table>,
    /// Build id when this disk is a vmrescue rescue medium.
    pub medium: Option<String>,
    pub volumes: Vec<Volume>,
    pub warnings: Vec<String>,
}

/// The kernel's name for partition `number` of `disk` (`vda`+1 = `vda1`, `nvme0n1`+1 = `nvme0n1p1`).
pub fn partition_name(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// A window onto part of a device, itself a device.
pub struct Window<'a, R> {
    inner: &'a mut R,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a, R: Read + Seek> Window<'a, R> {
    pub fn new(inner: &'a mut R, start: u64, len: u64) -> Self {
        Window {
            inner,
            start,
            len,
            pos: 0,
        }
    }
}

impl<R: Read + Seek> Read for Window<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Window<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

/// Extended-partition containers hold other partitions, not a filesystem.
fn is_container(p: &Partition) -> bool {
    matches!(p.part_type, PartType::Mbr(0x05 | 0x0f | 0x85))
}

/// An ext filesystem whose primary superblock is gone (zeroed, overwritten), recognised by its
/// first backup superblock.
///
/// A backup outlives a reformat, so a stale one must not pass for the filesystem there now
/// (e2fsck from it would overwrite that filesystem): the filesystem it describes must fill the
/// region (between half of it and all of it), and the region must not start like another
/// filesystem blkid knows by a boot-sector signature (NTFS, exFAT).
fn backup_ext<R: Read + Seek>(dev: &mut R, len: u64) -> Option<(Probe, ext::Backup)> {
    let boot = read_at(dev, 0, 512).ok()?;
    if matches!(boot.get(3..11), Some(b"NTFS    " | b"EXFAT   ")) {
        return None;
    }
    ext::backup_candidates()
        .filter(|at| at.offset() + ext::SUPERBLOCK_SIZE as u64 <= len)
        .find_map(|at| {
            let sb = read_at(dev, at.offset(), ext::SUPERBLOCK_SIZE).ok()?;
            let sb = ext::is_backup(&sb, at)?;
            let fs_bytes = sb.blocks.checked_mul(sb.block_size)?;
            if fs_bytes > len || fs_bytes < len / 2 {
                return None;
            }
            Some((ext_probe(sb), at))
        })
}

/// What a leniently read ext superblock says, as a probe result.
fn ext_probe(sb: ext::Superblock) -> Probe {
    Probe {
        fstype: sb.fstype,
        uuid: Some(sb.uuid),
        label: sb.label,
        usage: probe::Usage::Filesystem,
        version: None,
        uuid_sub: None,
    }
}

/// An ext superblock that the strict probe refused (bad checksum), read leniently.
fn damaged_ext<R: Read + Seek>(dev: &mut R) -> Option<Probe> {
    let sb = read_at(dev, ext::SUPERBLOCK_OFFSET, ext::SUPERBLOCK_SIZE).ok()?;
    let sb = ext::Superblock::parse(&sb).ok()?;
    (sb.fstype != FsType::Jbd).then(|| ext_probe(sb))
}

/// Scans a disk of `size` bytes named `name`.
pub fn scan_disk<R: Read + Seek>(name: &str, dev: &mut R, size: u64) -> DiskScan {
    let mut scan = DiskScan {
        name: name.to_owned(),
        size,
        table: None,
        medium: None,
        volumes: Vec::new(),
        warnings: Vec::new(),
    };
    if let Ok(sector) = read_at(dev, medium::OFFSET, medium::SIZE) {
        scan.medium = medium::detect(&sector);
    }
    match partition::read_table(dev, size) {
        Ok(t) => scan.table = t,
        Err(e) => scan
            .warnings
            .push(format!("{name}: partition table unreadable: {e}")),
    }
    let regions: Vec<(String, u64, u64, Option<Partition>)> = match &scan.table {
        Some(t) => t
            .partitions
            .iter()
            .filter(|p| !is_container(p))
            .map(|p| {
                (
                    partition_name(name, p.number),
                    p.start,
                    p.size,
                    Some(p.clone()),
                )
            })
            .collect(),
        None => vec![(name.to_owned(), 0, size, None)],
    };
    for (vname, offset, len, part) in regions {
        let len = len.min(size.saturating_sub(offset));
        let mut window = Window::new(dev, offset, len);
        let mut ext_backup = None;
        let probe = match probe::probe(&mut window, len) {
            Ok(Some(p)) => Some(p),
            // blkid ignores an ext superblock whose checksum is bad; a rescue must not: that is
            // exactly the damaged filesystem it is here for.
            Ok(None) => match damaged_ext(&mut window) {
                Some(p) => {
                    scan.warnings.push(format!("{vname}: {} superblock fails its checksum or other checks; treated as {} anyway", p.fstype, p.fstype));
                    Some(p)
                }
                None => backup_ext(&mut window, len).map(|(p, at)| {
                    scan.warnings.push(format!(
                        "{vname}: primary superblock unreadable; {} backup superblock found at block {} (block size {}), fsck will start from it",
                        p.fstype, at.block, at.block_size
                    ));
                    ext_backup = Some(at);
                    p
                }),
            },
            Err(e) => {
                scan.warnings.push(format!("{vname}: cannot read: {e}"));
                None
            }
        };
        scan.volumes.push(Volume {
            name: vname,
            offset,
            size: len,
            partition: part,
            probe,
            ext_backup,
        });
    }
    if let Some(t) = &scan.table {
        scan.warnings
            .extend(t.warnings.iter().map(|w| format!("{name}: {w}")));
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn names() {
        assert_eq!(partition_name("vda", 1), "vda1");
        assert_eq!(partition_name("sdb", 12), "sdb12");
        assert_eq!(partition_name("nvme0n1", 2), "nvme0n1p2");
        assert_eq!(partition_name("mmcblk0", 1), "mmcblk0p1");
    }

    #[test]
    fn window_reads_only_its_region() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut c = Cursor::new(data);
        let mut w = Window::new(&mut c, 10, 20);
        let mut buf = Vec::new();
        w.read_to_end(&mut buf).unwrap();
        assert_eq!(buf, (10..30u8).collect::<Vec<_>>());
        assert_eq!(w.seek(SeekFrom::End(-5)).unwrap(), 15);
        assert!(w.seek(SeekFrom::Current(-100)).is_err());
    }

    #[test]
    fn garbage_and_empty_disks_scan_without_panic() {
        let mut garbage = Cursor::new(vec![0xa5u8; 1 << 20]);
        let s = scan_disk("vda", &mut garbage, 1 << 20);
        assert_eq!(s.volumes.len(), 1);
        assert!(s.volumes[0].probe.is_none());
        assert!(s.medium.is_none());
        let mut empty = Cursor::new(Vec::new());
        let s = scan_disk("vdb", &mut empty, 0);
        assert!(s.volumes.iter().all(|v| v.probe.is_none()));
    }

    #[test]
    fn medium_marker_is_seen() {
        let mut disk = vec![0u8; 64 * 1024];
        disk[medium::OFFSET as usize..medium::OFFSET as usize + medium::SIZE]
            .copy_from_slice(&medium::encode("b1"));
        let s = scan_disk("vda", &mut Cursor::new(disk), 64 * 1024);
        assert_eq!(s.medium.as_deref(), Some("b1"));
    }
}

#[cfg(test)]
mod backup_tests {
    use super::*;

    /// A real mkfs.ext4 image whose primary superblock was zeroed is still found, by its backup.
    #[test]
    fn zeroed_primary_superblock_is_found_by_its_backup() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("x.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "1024", "-L", "zeroed"])
            .arg(&img)
            .status()
            .expect("mkfs.ext4 (scripts/setup.sh installs e2fsprogs)");
        assert!(st.success());
        let mut data = std::fs::read(&img).unwrap();
        let intact = scan_disk("vda", &mut io::Cursor::new(data.clone()), data.len() as u64);
        assert_eq!(intact.volumes[0].ext_backup, None);
        data[1024..2048].fill(0);
        let len = data.len() as u64;
        let s = scan_disk("vda", &mut io::Cursor::new(data), len);
        let v = &s.volumes[0];
        let p = v.probe.as_ref().expect("found by its backup");
        assert_eq!(
            (p.fstype, p.label.as_deref()),
            (FsType::Ext4, Some("zeroed"))
        );
        assert_eq!(p.uuid, intact.volumes[0].probe.as_ref().unwrap().uuid);
        assert_eq!(
            v.ext_backup,
            Some(ext::Backup {
                block: 8193,
                block_size: 1024
            })
        );
        assert!(s.warnings[0].contains("backup superblock found at block 8193"));
        // The same bytes in a region twice as large (a stale backup after a grow or reformat)
        // or under an NTFS boot sector are not taken for the filesystem there.
        let mut data = std::fs::read(&img).unwrap();
        data[1024..2048].fill(0);
        let mut bigger = data.clone();
        bigger.resize(data.len() * 3, 0);
        let len = bigger.len() as u64;
        assert!(
            scan_disk("vda", &mut io::Cursor::new(bigger), len).volumes[0]
                .probe
                .is_none()
        );
        data[3..11].copy_from_slice(b"NTFS    ");
        let len = data.len() as u64;
        assert!(scan_disk("vda", &mut io::Cursor::new(data), len).volumes[0]
            .probe
            .is_none());
    }
}
