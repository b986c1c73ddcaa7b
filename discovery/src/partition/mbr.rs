//! MBR ("dos") partition tables: four primary slots and chains of extended boot records (EBRs)
//! holding logical partitions, numbered from 5 the way the Linux kernel numbers them.

use std::collections::HashSet;
use std::io::{self, Read, Seek};

use super::{PartType, Partition, Table, TableKind};
use crate::read_at;

/// MBR partition type of a protective MBR: the disk carries a GPT.
pub const PROTECTIVE: u8 = 0xEE;
/// MBR partition type of a DOS extended partition (CHS addressed).
pub const DOS_EXTENDED: u8 = 0x05;
/// MBR partition type of a Windows 95 extended partition (LBA addressed).
pub const W95_EXTENDED: u8 = 0x0F;
/// MBR partition type of a Linux extended partition.
pub const LINUX_EXTENDED: u8 = 0x85;
/// MBR partition type of a Linux filesystem partition.
pub const LINUX: u8 = 0x83;
/// MBR partition type of a Linux swap partition.
pub const LINUX_SWAP: u8 = 0x82;
/// MBR partition type of a Linux LVM physical volume.
pub const LINUX_LVM: u8 = 0x8E;
/// MBR partition type of a Linux software RAID member (autodetect).
pub const LINUX_RAID: u8 = 0xFD;
/// MBR partition type of an EFI System Partition.
pub const EFI_SYSTEM: u8 = 0xEF;

/// MBR sectors are always addressed in 512-byte units here (the logical sector size of
/// virtually every virtual disk that carries an MBR).
pub const SECTOR: u64 = 512;
/// Highest partition number handed out (the kernel's limit is 256 partitions per disk).
pub const MAX_PARTITION_NUMBER: u32 = 255;
/// Most EBRs followed in one table, whatever they contain.
pub const MAX_EBRS: usize = 1024;
/// Most EBRs in a row without a data partition before the chain is given up (as the kernel).
pub const MAX_EMPTY_EBRS: usize = 100;

const TABLE_OFFSET: usize = 446;
const DISK_ID_OFFSET: usize = 440;

/// Whether `t` is one of the extended-partition types (0x05, 0x0F, 0x85).
pub fn is_extended(t: u8) -> bool {
    matches!(t, DOS_EXTENDED | W95_EXTENDED | LINUX_EXTENDED)
}

/// One 16-byte slot of an MBR or EBR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    boot: u8,
    ptype: u8,
    start: u32,
    sectors: u32,
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn slots(sector: &[u8]) -> [Slot; 4] {
    let mut out = [Slot {
        boot: 0,
        ptype: 0,
        start: 0,
        sectors: 0,
    }; 4];
    for (i, s) in out.iter_mut().enumerate() {
        let o = TABLE_OFFSET + 16 * i;
        s.boot = sector.get(o).copied().unwrap_or(0);
        s.ptype = sector.get(o + 4).copied().unwrap_or(0);
        s.start = le_u32(sector, o + 8);
        s.sectors = le_u32(sector, o + 12);
    }
    out
}

fn has_signature(sector: &[u8]) -> bool {
    sector.get(510..512) == Some(&[0x55, 0xAA][..])
}

/// What sector 0 holds, as far as partition tables go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sector0 {
    /// A protective (or hybrid) MBR: look for a GPT.
    Protective,
    /// A DOS partition table.
    Dos,
    /// No MBR (no signature, bad boot flags, or a filesystem boot sector).
    Other,
}

/// Classifies sector 0 the way libblkid does: 0x55AA signature, boot flags 0x00/0x80 only, an
/// 0xEE slot means GPT, and FAT/NTFS boot sectors, AIX disks and LVM physical volumes with an
/// empty MBR are not partition tables. `sector1` is the next 512 bytes (for the LVM label).
pub(crate) fn classify(sector0: &[u8], sector1: &[u8]) -> Sector0 {
    if sector0.len() < 512 || !has_signature(sector0) {
        return Sector0::Other;
    }
    if sector0.get(0..4) == Some(&[0xC9, 0xC2, 0xD4, 0xC1][..]) {
        return Sector0::Other; // AIX physical volume
    }
    let s = slots(sector0);
    if s.iter().any(|e| e.boot != 0 && e.boot != 0x80) {
        return Sector0::Other;
    }
    if s.iter().any(|e| e.ptype == PROTECTIVE) {
        return Sector0::Protective;
    }
    if is_fat_or_ntfs(sector0) {
        return Sector0::Other;
    }
    if sector1.get(0..8) == Some(&b"LABELONE"[..]) && s.iter().all(|e| e.sectors == 0) {
        return Sector0::Other; // LVM PV on the whole disk, with a boot sector in front
    }
    Sector0::Dos
}

/// A FAT or NTFS boot sector (a whole-disk filesystem, not a partition table).
fn is_fat_or_ntfs(s: &[u8]) -> bool {
    if s.get(3..11) == Some(&b"NTFS    "[..]) {
        return true;
    }
    let at = |off: usize, magic: &[u8]| s.get(off..off + magic.len()) == Some(magic);
    let magic = at(0x36, b"FAT12   ")
        || at(0x36, b"FAT16   ")
        || at(0x36, b"FAT     ")
        || at(0x36, b"MSDOS")
        || at(0x52, b"FAT32   ")
        || at(0x52, b"MSWIN");
    if !magic {
        return false;
    }
    let bytes_per_sector = u16::from_le_bytes([
        s.get(0x0b).copied().unwrap_or(0),
        s.get(0x0c).copied().unwrap_or(0),
    ]);
    let per_cluster = s.get(0x0d).copied().unwrap_or(0);
    let reserved = u16::from_le_bytes([
        s.get(0x0e).copied().unwrap_or(0),
        s.get(0x0f).copied().unwrap_or(0),
    ]);
    let fats = s.get(0x10).copied().unwrap_or(0);
    matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && per_cluster.is_power_of_two()
        && reserved > 0
        && (1..=2).contains(&fats)
}

/// Builds tables while enforcing the caps.
struct Reader {
    id: Option<String>,
    partitions: Vec<Partition>,
    warnings: Vec<String>,
    next_logical: u32,
    ebrs_read: usize,
    visited: HashSet<u64>,
    size: u64,
}

impl Reader {
    fn add(&mut self, number: u32, start_sector: u64, sectors: u64, slot: &Slot) {
        let uuid = self.id.as_ref().map(|id| format!("{id}-{number:02x}"));
        self.partitions.push(Partition {
            number,
            start: start_sector * SECTOR,
            size: sectors * SECTOR,
            part_type: PartType::Mbr(slot.ptype),
            uuid,
            name: None,
            bootable: slot.boot == 0x80,
            attributes: u64::from(slot.boot),
        });
    }

    /// Follows one extended partition's chain of EBRs.
    fn extended<R: Read + Seek>(
        &mut self,
        dev: &mut R,
        primary: u32,
        ex_start: u64,
        ex_size: u64,
    ) -> io::Result<()> {
        if ex_start == 0 {
            self.warnings.push(format!(
                "extended partition {primary} starts at sector 0; its logical partitions are ignored"
            ));
            return Ok(());
        }
        let mut cur_start = ex_start;
        let mut cur_size = ex_size;
        let mut empty_run = 0usize;
        loop {
            if !self.visited.insert(cur_start) {
                self.warnings.push(format!(
                    "the chain of extended boot records loops back to sector {cur_start}; \
                     stopped following it"
                ));
                return Ok(());
            }
            self.ebrs_read += 1;
            if self.ebrs_read > MAX_EBRS {
                self.warnings.push(format!(
                    "more than {MAX_EBRS} extended boot records; stopped following the chain"
                ));
                return Ok(());
            }
            empty_run += 1;
            if empty_run > MAX_EMPTY_EBRS {
                self.warnings.push(format!(
                    "{MAX_EMPTY_EBRS} extended boot records in a row hold no partition; \
                     stopped following the chain"
                ));
                return Ok(());
            }
            let offset = cur_start * SECTOR;
            if offset.saturating_add(SECTOR) > self.size {
                self.warnings.push(format!(
                    "extended boot record at sector {cur_start} lies beyond the end of the device; \
                     the logical partitions after it are lost"
                ));
                return Ok(());
            }
            let ebr = read_at(dev, offset, SECTOR as usize)?;
            if ebr.len() < SECTOR as usize || !has_signature(&ebr) {
                if ebr.iter().any(|&b| b != 0) {
                    self.warnings.push(format!(
                        "extended boot record at sector {cur_start} has no 0x55AA signature; \
                         the logical partitions from there on are ignored"
                    ));
                }
                return Ok(());
            }
            let s = slots(&ebr);
            for (i, e) in s.iter().enumerate() {
                if e.sectors == 0 || is_extended(e.ptype) {
                    continue;
                }
                let rel = u64::from(e.start);
                let sz = u64::from(e.sectors);
                let abs = cur_start + rel;
                // The 3rd and 4th slots sometimes hold garbage: only accept what fits.
                if i >= 2
                    && (rel + sz > cur_size || abs < ex_start || abs + sz > ex_start + ex_size)
                {
                    continue;
                }
                if self.partitions.iter().any(|p| p.start == abs * SECTOR) {
                    self.warnings.push(format!(
                        "extended boot record at sector {cur_start} repeats the partition at \
                         sector {abs}; ignored"
                    ));
                    continue;
                }
                if self.next_logical > MAX_PARTITION_NUMBER {
                    self.warnings.push(format!(
                        "more than {} logical partitions; the rest are ignored",
                        MAX_PARTITION_NUMBER - 4
                    ));
                    return Ok(());
                }
                let number = self.next_logical;
                self.next_logical += 1;
                self.add(number, abs, sz, e);
                empty_run = 0;
            }
            // The first extended slot links to the next EBR, relative to the extended
            // partition's own start.
            match s.iter().find(|e| e.sectors != 0 && is_extended(e.ptype)) {
                Some(link) if link.start != 0 => {
                    cur_start = ex_start + u64::from(link.start);
                    cur_size = u64::from(link.sectors);
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Reads a DOS partition table whose sector 0 is `sector0` (already classified as
/// [`Sector0::Dos`]). The extended partitions themselves are listed too, with their full size,
/// as sfdisk and libblkid list them.
pub(crate) fn read<R: Read + Seek>(dev: &mut R, size: u64, sector0: &[u8]) -> io::Result<Table> {
    let disk_id = le_u32(sector0, DISK_ID_OFFSET);
    let mut r = Reader {
        id: (disk_id != 0).then(|| format!("{disk_id:08x}")),
        partitions: Vec::new(),
        warnings: Vec::new(),
        next_logical: 5,
        ebrs_read: 0,
        visited: HashSet::new(),
        size,
    };
    let s = slots(sector0);
    for (i, e) in s.iter().enumerate() {
        // Empty slots keep their number: partition 3 stays 3 when slot 2 is empty.
        if e.sectors != 0 {
            r.add(i as u32 + 1, u64::from(e.start), u64::from(e.sectors), e);
        }
    }
    for (i, e) in s.iter().enumerate() {
        if e.sectors != 0 && is_extended(e.ptype) {
            r.extended(dev, i as u32 + 1, u64::from(e.start), u64::from(e.sectors))?;
        }
    }
    Ok(Table {
        kind: TableKind::Dos,
        id: r.id,
        sector_size: SECTOR as u32,
        partitions: r.partitions,
        warnings: r.warnings,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// Writes a slot (boot, type, start, sectors) into a sector's table.
    pub(crate) fn put_slot(sector: &mut [u8], i: usize, boot: u8, ptype: u8, start: u32, n: u32) {
        let o = TABLE_OFFSET + 16 * i;
        sector[o] = boot;
        sector[o + 4] = ptype;
        sector[o + 8..o + 12].copy_from_slice(&start.to_le_bytes());
        sector[o + 12..o + 16].copy_from_slice(&n.to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xAA;
    }

    fn at(img: &mut [u8], sector: u64) -> &mut [u8] {
        let o = (sector * SECTOR) as usize;
        &mut img[o..o + 512]
    }

    /// 2 primaries, an extended partition at 3000..=9999 with three logicals.
    pub(crate) fn sample() -> Vec<u8> {
        let mut img = vec![0u8; 10_000 * 512];
        img[440..444].copy_from_slice(&0x8f83_78c0u32.to_le_bytes());
        put_slot(at(&mut img, 0), 0, 0x80, LINUX, 2048, 500);
        put_slot(at(&mut img, 0), 1, 0, LINUX_SWAP, 2548, 452);
        put_slot(at(&mut img, 0), 3, 0, W95_EXTENDED, 3000, 7000);
        // EBR 1 at 3000: data at +2 (3002..), link to 4000 (ex-relative 1000)
        put_slot(at(&mut img, 3000), 0, 0, LINUX, 2, 998);
        put_slot(at(&mut img, 3000), 1, 0, DOS_EXTENDED, 1000, 2000);
        // EBR 2 at 4000
        put_slot(at(&mut img, 4000), 0, 0, LINUX_LVM, 2, 1998);
        put_slot(at(&mut img, 4000), 1, 0, DOS_EXTENDED, 3000, 4000);
        // EBR 3 at 6000, last
        put_slot(at(&mut img, 6000), 0, 0, LINUX, 2, 3998);
        img
    }

    fn read_vec(img: &[u8]) -> Table {
        let size = img.len() as u64;
        read(&mut Cursor::new(img.to_vec()), size, &img[..512]).unwrap()
    }

    #[test]
    fn primaries_and_logicals() {
        let img = sample();
        assert_eq!(classify(&img[..512], &img[512..1024]), Sector0::Dos);
        let t = read_vec(&img);
        assert_eq!(t.kind, TableKind::Dos);
        assert_eq!(t.id.as_deref(), Some("8f8378c0"));
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        let got: Vec<(u32, u64, u64, u8)> = t
            .partitions
            .iter()
            .map(|p| {
                let PartType::Mbr(ty) = p.part_type else {
                    panic!()
                };
                (p.number, p.start / 512, p.size / 512, ty)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 2048, 500, LINUX),
                (2, 2548, 452, LINUX_SWAP),
                (4, 3000, 7000, W95_EXTENDED),
                (5, 3002, 998, LINUX),
                (6, 4002, 1998, LINUX_LVM),
                (7, 6002, 3998, LINUX),
            ]
        );
        assert!(t.partitions[0].bootable);
        assert_eq!(t.partitions[0].attributes, 0x80);
        assert!(!t.partitions[1].bootable);
        assert_eq!(t.partitions[0].uuid.as_deref(), Some("8f8378c0-01"));
        assert_eq!(t.partitions[3].uuid.as_deref(), Some("8f8378c0-05"));
        assert_eq!(t.partitions[5].uuid.as_deref(), Some("8f8378c0-07"));
    }

    #[test]
    fn zero_disk_id_means_no_uuids() {
        let mut img = sample();
        img[440..444].fill(0);
        let t = read_vec(&img);
        assert_eq!(t.id, None);
        assert!(t.partitions.iter().all(|p| p.uuid.is_none()));
    }

    #[test]
    fn ebr_loop_is_detected() {
        let mut img = sample();
        // EBR 3 links back to EBR 1 (ex-relative 0 is "end"; use EBR 2 at +1000)
        put_slot(at(&mut img, 6000), 1, 0, DOS_EXTENDED, 1000, 2000);
        let t = read_vec(&img);
        assert_eq!(t.partitions.len(), 6);
        assert!(t.warnings.iter().any(|w| w.contains("loops back")));
    }

    #[test]
    fn self_loop_is_detected() {
        let mut img = vec![0u8; 4000 * 512];
        img[440] = 1;
        put_slot(at(&mut img, 0), 0, 0, DOS_EXTENDED, 100, 3000);
        put_slot(at(&mut img, 100), 1, 0, DOS_EXTENDED, 5, 10);
        put_slot(at(&mut img, 105), 1, 0, DOS_EXTENDED, 5, 10);
        let t = read_vec(&img);
        assert_eq!(t.partitions.len(), 1);
        assert!(t.warnings.iter().any(|w| w.contains("loops back")));
    }

    #[test]
    fn long_empty_chain_is_capped() {
        let mut img = vec![0u8; 1000 * 512];
        img[440] = 1;
        put_slot(at(&mut img, 0), 0, 0, DOS_EXTENDED, 1, 998);
        for s in 1..900u32 {
            put_slot(at(&mut img, u64::from(s)), 1, 0, DOS_EXTENDED, s, 1);
        }
        let t = read_vec(&img);
        assert!(t.warnings.iter().any(|w| w.contains("hold no partition")));
    }

    #[test]
    fn long_chain_of_logicals_is_capped() {
        let mut img = vec![0u8; 2000 * 512];
        img[440] = 1;
        put_slot(at(&mut img, 0), 0, 0, DOS_EXTENDED, 2, 1990);
        for k in 0..600u32 {
            let s = 2 + 3 * k;
            if u64::from(s) + 3 >= 2000 {
                break;
            }
            put_slot(at(&mut img, u64::from(s)), 0, 0, LINUX, 1, 1);
            put_slot(
                at(&mut img, u64::from(s)),
                1,
                0,
                DOS_EXTENDED,
                3 * (k + 1),
                3,
            );
        }
        let t = read_vec(&img);
        let max = t.partitions.iter().map(|p| p.number).max().unwrap();
        assert_eq!(max, MAX_PARTITION_NUMBER);
        assert!(t.warnings.iter().any(|w| w.contains("logical partitions")));
    }

    #[test]
    fn ebr_beyond_end_is_reported() {
        let mut img = vec![0u8; 100 * 512];
        img[440] = 1;
        put_slot(at(&mut img, 0), 0, 0, DOS_EXTENDED, 5000, 100);
        let t = read_vec(&img);
        assert_eq!(t.partitions.len(), 1);
        assert!(t.warnings.iter().any(|w| w.contains("beyond the end")));
    }

    #[test]
    fn empty_extended_is_quiet() {
        let mut img = vec![0u8; 100 * 512];
        img[440] = 1;
        put_slot(at(&mut img, 0), 0, 0, DOS_EXTENDED, 10, 50);
        let t = read_vec(&img);
        assert_eq!(t.partitions.len(), 1);
        assert!(t.warnings.is_empty());
    }

    #[test]
    fn classify_rejects_non_tables() {
        let mut s0 = vec![0u8; 512];
        let s1 = vec![0u8; 512];
        assert_eq!(classify(&s0, &s1), Sector0::Other); // no signature
        put_slot(&mut s0, 0, 0, LINUX, 2048, 100);
        assert_eq!(classify(&s0, &s1), Sector0::Dos);
        s0[446] = 0x12; // bad boot flag
        assert_eq!(classify(&s0, &s1), Sector0::Other);
        s0[446] = 0;
        put_slot(&mut s0, 1, 0, PROTECTIVE, 1, 100);
        assert_eq!(classify(&s0, &s1), Sector0::Protective);

        // A FAT32 boot sector.
        let mut fat = vec![0u8; 512];
        fat[0] = 0xEB;
        fat[0x0b..0x0d].copy_from_slice(&512u16.to_le_bytes());
        fat[0x0d] = 8;
        fat[0x0e..0x10].copy_from_slice(&32u16.to_le_bytes());
        fat[0x10] = 2;
        fat[0x52..0x5a].copy_from_slice(b"FAT32   ");
        fat[510] = 0x55;
        fat[511] = 0xAA;
        assert_eq!(classify(&fat, &s1), Sector0::Other);
        let mut ntfs = vec![0u8; 512];
        ntfs[3..11].copy_from_slice(b"NTFS    ");
        ntfs[510] = 0x55;
        ntfs[511] = 0xAA;
        assert_eq!(classify(&ntfs, &s1), Sector0::Other);

        // Empty MBR in front of an LVM label.
        let mut empty = vec![0u8; 512];
        empty[510] = 0x55;
        empty[511] = 0xAA;
        assert_eq!(classify(&empty, &s1), Sector0::Dos);
        let mut lvm = vec![0u8; 512];
        lvm[..8].copy_from_slice(b"LABELONE");
        assert_eq!(classify(&empty, &lvm), Sector0::Other);
    }
}
