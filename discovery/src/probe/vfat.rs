//! FAT12/16/32 ("vfat"), following blkid's `libblkid/src/superblocks/vfat.c`:
//!
//! - the boot sector must pass blkid's geometry checks (and not be a BitLocker volume);
//! - UUID is the volume serial number, printed `XXXX-XXXX` in upper case;
//! - LABEL is the volume-label entry (ATTR_VOLUME_ID) of the root directory only. The label
//!   in the boot sector is *not* a fallback (blkid reports it separately as LABEL_FATBOOT,
//!   which is not part of [`Probe`]), and a root-directory label reading "NO NAME" is a
//!   label like any other — this is what blkid's own test suite expects;
//! - VERSION is FAT12, FAT16 or FAT32.

use std::io;

use super::{arr, byte, label, le16, le32, slice, Dev, Hit, Probe, Usage};
use crate::fstype::FsType;

/// blkid's magic table: (offset, magic), in order. Only the length of the first one that
/// matches matters (short magics need extra checks).
const MAGICS: [(usize, &[u8]); 9] = [
    (0x52, b"MSWIN"),
    (0x52, b"FAT32   "),
    (0x36, b"MSDOS"),
    (0x36, b"FAT16   "),
    (0x36, b"FAT12   "),
    (0x36, b"FAT     "),
    (0, b"\xeb"),
    (0, b"\xe9"),
    (0x1fe, b"\x55\xaa"),
];

const FAT12_MAX: u32 = 0xFF4;
const FAT16_MAX: u32 = 0xFFF4;
const FAT32_MAX: u32 = 0x0FFF_FFF6;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
const ATTR_MASK: u8 = 0x3f;
const ENTRY_FREE: u8 = 0xe5;
const DIR_ENTRY_LEN: u64 = 32;
/// Directory entries read at a time.
const DIR_CHUNK: u64 = 64;

/// The boot sector values blkid derives in `fat_valid_superblock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    sector_size: u32,
    cluster_size: u32,
    reserved: u32,
    fat_size: u32,
    cluster_count: u32,
    fat16_length: u16,
    fat32_length: u32,
    dir_entries: u16,
}

/// Length of the first magic of blkid's table found in the first KiB.
pub(super) fn magic_len(block: &[u8]) -> Option<usize> {
    MAGICS
        .iter()
        .find(|(off, m)| slice(block, *off, m.len()) == Some(*m))
        .map(|(_, m)| m.len())
}

/// blkid's `fat_valid_superblock` (all but its BitLocker check) on the 512-byte boot sector.
/// The arithmetic is 32-bit and wraps, as in C.
pub(super) fn geometry(bs: &[u8], magic_len: usize) -> Option<Geometry> {
    if bs.len() < 512 {
        return None;
    }
    if magic_len <= 2 {
        // Old floppies have a valid MBR signature; OS/2 puts FAT-like headers on JFS/HPFS.
        if slice(bs, 0x1fe, 2)? != b"\x55\xaa" {
            return None;
        }
        let fs_magic = slice(bs, 0x36, 8)?;
        if fs_magic == b"JFS     " || fs_magic == b"HPFS    " {
            return None;
        }
    }
    let fats = u32::from(byte(bs, 0x10)?);
    let reserved = u32::from(le16(bs, 0x0e)?);
    let media = byte(bs, 0x15)?;
    let cluster_size = u32::from(byte(bs, 0x0d)?);
    let sector_size = u32::from(le16(bs, 0x0b)?);
    if fats == 0
        || reserved == 0
        || !(media >= 0xf8 || media == 0xf0)
        || !cluster_size.is_power_of_two()
        || !sector_size.is_power_of_two()
        || !(512..=4096).contains(&sector_size)
    {
        return None;
    }
    let dir_entries = le16(bs, 0x11)?;
    let mut sect_count = u32::from(le16(bs, 0x13)?);
    if sect_count == 0 {
        sect_count = le32(bs, 0x20)?;
    }
    let fat16_length = le16(bs, 0x16)?;
    let fat32_length = le32(bs, 0x24)?;
    let fat_length = if fat16_length == 0 {
        fat32_length
    } else {
        u32::from(fat16_length)
    };
    let fat_size = fat_length.wrapping_mul(fats);
    let dir_size = (u32::from(dir_entries) * 32).div_ceil(sector_size);
    let cluster_count = sect_count
        .wrapping_sub(reserved.wrapping_add(fat_size).wrapping_add(dir_size))
        / cluster_size;
    let max_count = if fat16_length == 0 && fat32_length != 0 {
        FAT32_MAX
    } else if cluster_count > FAT12_MAX {
        FAT16_MAX
    } else {
        FAT12_MAX
    };
    if cluster_count > max_count {
        return None;
    }
    Some(Geometry {
        sector_size,
        cluster_size,
        reserved,
        fat_size,
        cluster_count,
        fat16_length,
        fat32_length,
        dir_entries,
    })
}

/// What one directory entry says, for the label search.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    /// The end of the directory.
    End,
    /// The volume label (blkid's 0x05 escape for a leading 0xE5 undone).
    Label([u8; 11]),
    /// Anything else.
    Other,
}

fn entry(e: &[u8]) -> Option<Entry> {
    let mut name: [u8; 11] = arr(e, 0)?;
    let attr = byte(e, 11)?;
    if name[0] == 0 {
        return Some(Entry::End);
    }
    if name[0] == ENTRY_FREE
        || le16(e, 20)? != 0
        || le16(e, 26)? != 0
        || attr & ATTR_MASK == ATTR_LONG_NAME
    {
        return Some(Entry::Other);
    }
    if attr & (ATTR_VOLUME_ID | ATTR_DIR) == ATTR_VOLUME_ID {
        if name[0] == 0x05 {
            name[0] = ENTRY_FREE;
        }
        return Some(Entry::Label(name));
    }
    Some(Entry::Other)
}

/// blkid's `search_fat_label`: the volume label among `entries` directory entries at
/// `offset`. On devices larger than a floppy the whole directory must be on the device.
fn search_label(dev: &mut Dev<'_>, offset: u64, entries: u32) -> io::Result<Option<[u8; 11]>> {
    let entries = u64::from(entries);
    let readable = if dev.is_tiny() {
        entries.min(dev.size().saturating_sub(offset) / DIR_ENTRY_LEN)
    } else if dev.fits(offset, entries * DIR_ENTRY_LEN) {
        entries
    } else {
        return Ok(None);
    };
    let mut first = 0;
    while first < readable {
        let n = (readable - first).min(DIR_CHUNK);
        let at = offset + first * DIR_ENTRY_LEN;
        let Some(chunk) = dev.get(at, (n * DIR_ENTRY_LEN) as usize)? else {
            return Ok(None);
        };
        for e in chunk.chunks_exact(DIR_ENTRY_LEN as usize) {
            match entry(e) {
                Some(Entry::Label(name)) => return Ok(Some(name)),
                Some(Entry::End) | None => return Ok(None),
                Some(Entry::Other) => {}
            }
        }
        first += n;
    }
    Ok(None)
}

/// The FAT32 root directory label: blkid follows the root cluster chain for at most 99
/// clusters, with its 32-bit offset arithmetic.
fn fat32_label(dev: &mut Dev<'_>, bs: &[u8], g: &Geometry) -> io::Result<Option<[u8; 11]>> {
    let Some(root_cluster) = le32(bs, 0x2c) else {
        return Ok(None);
    };
    let buf_size = g.cluster_size * g.sector_size;
    let start_data_sect = g.reserved.wrapping_add(g.fat_size);
    let entries = (u64::from(g.fat32_length) * u64::from(g.sector_size) / 4) as u32;
    let mut next = root_cluster;
    let mut maxloop = 100;
    while next != 0 && next < entries {
        maxloop -= 1;
        if maxloop == 0 {
            break;
        }
        let next_sect_off = next.wrapping_sub(2).wrapping_mul(g.cluster_size);
        let next_off =
            u64::from(start_data_sect.wrapping_add(next_sect_off)) * u64::from(g.sector_size);
        if let Some(name) = search_label(dev, next_off, buf_size / DIR_ENTRY_LEN as u32)? {
            return Ok(Some(name));
        }
        let fat_entry_off = u64::from(g.reserved) * u64::from(g.sector_size) + u64::from(next) * 4;
        // blkid reads a whole cluster's worth here, and stops if that is not on the device.
        if !dev.fits(fat_entry_off, u64::from(buf_size)) {
            break;
        }
        let Some(fat_entry) = dev.get(fat_entry_off, 4)?.and_then(|b| le32(&b, 0)) else {
            break;
        };
        next = fat_entry & 0x0fff_ffff;
    }
    Ok(None)
}

/// Whether the FAT32 FSInfo sector is acceptable to blkid (valid or all zero signatures).
fn fsinfo_ok(fsinfo: &[u8]) -> bool {
    let sig1 = slice(fsinfo, 0, 4);
    let sig2 = slice(fsinfo, 484, 4);
    matches!(sig1, Some(b"RRaA" | b"RRdA" | [0, 0, 0, 0]))
        && matches!(sig2, Some(b"rrAa" | [0, 0, 0, 0]))
}

/// `XXXX-XXXX` from the four serial number bytes; none when they are all zero.
fn serial_uuid(serno: [u8; 4]) -> Option<String> {
    let [a, b, c, d] = serno;
    (serno != [0; 4]).then(|| format!("{d:02X}{c:02X}-{b:02X}{a:02X}"))
}

/// blkid's `vfat` prober.
pub(super) fn probe(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    let Some(mag_len) = dev.get(0, 1024)?.and_then(|b| magic_len(&b)) else {
        return Ok(None);
    };
    let Some(bs) = dev.get(0, 512)? else {
        return Ok(None);
    };
    let Some(g) = geometry(&bs, mag_len) else {
        return Ok(None);
    };
    if super::foreign::is_bitlocker(dev)? {
        return Ok(None);
    }
    let (vol_label, serno, version) = if g.fat16_length != 0 {
        let root_start = g
            .reserved
            .wrapping_add(g.fat_size)
            .wrapping_mul(g.sector_size);
        let vol_label = search_label(dev, u64::from(root_start), u32::from(g.dir_entries))?;
        let serno = match byte(&bs, 0x26) {
            Some(0x28 | 0x29) => arr::<4>(&bs, 0x27),
            _ => None,
        };
        let version = if g.cluster_count < FAT12_MAX {
            Some("FAT12")
        } else if g.cluster_count < FAT16_MAX {
            Some("FAT16")
        } else {
            None
        };
        (vol_label, serno, version)
    } else if g.fat32_length != 0 {
        let vol_label = fat32_label(dev, &bs, &g)?;
        let fsinfo_sect = le16(&bs, 0x30).unwrap_or(0);
        if fsinfo_sect != 0 {
            let at = u64::from(fsinfo_sect) * u64::from(g.sector_size);
            match dev.get(at, 512)? {
                Some(fsinfo) if fsinfo_ok(&fsinfo) => {}
                _ => return Ok(None),
            }
        }
        (vol_label, arr::<4>(&bs, 0x43), Some("FAT32"))
    } else {
        (None, None, None)
    };
    Ok(Some(Hit::Known(Probe {
        fstype: FsType::Vfat,
        uuid: serno.and_then(serial_uuid),
        label: vol_label.and_then(|name| label(&name)),
        usage: Usage::Filesystem,
        version: version.map(String::from),
        uuid_sub: None,
    })))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::probe as probe_device;
    use std::io::Cursor;

    fn put16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn dir_entry(name: &[u8; 11], attr: u8) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        e
    }

    /// A 4 MiB FAT16 image: 1 reserved sector, 2 FATs of 32 sectors, 512 root entries,
    /// 8095 clusters of one sector. Root directory at sector 65.
    pub(crate) fn fat16() -> Vec<u8> {
        let mut img = vec![0u8; 4 << 20];
        img[..3].copy_from_slice(b"\xeb\x3c\x90");
        img[3..11].copy_from_slice(b"mkfs.fat");
        put16(&mut img, 0x0b, 512);
        img[0x0d] = 1;
        put16(&mut img, 0x0e, 1);
        img[0x10] = 2;
        put16(&mut img, 0x11, 512);
        put16(&mut img, 0x13, 8192);
        img[0x15] = 0xf8;
        put16(&mut img, 0x16, 32);
        img[0x26] = 0x29;
        img[0x27..0x2b].copy_from_slice(&[0x14, 0x10, 0x04, 0x20]);
        img[0x2b..0x36].copy_from_slice(b"BOOTLABEL  ");
        img[0x36..0x3e].copy_from_slice(b"FAT16   ");
        img[0x1fe..0x200].copy_from_slice(b"\x55\xaa");
        let root = 65 * 512;
        img[root..root + 32].copy_from_slice(&dir_entry(b"README  TXT", 0x20));
        img[root + 32..root + 64].copy_from_slice(&dir_entry(b"VTech 1070 ", ATTR_VOLUME_ID));
        img
    }

    /// A 34 MiB FAT32 image (sparse in memory only as zeros): 32 reserved sectors, 2 FATs of
    /// 520 sectors, 1 sector per cluster, root cluster 2 at sector 1072.
    pub(crate) fn fat32() -> Vec<u8> {
        let mut img = vec![0u8; 34 << 20];
        img[..3].copy_from_slice(b"\xeb\x58\x90");
        img[3..11].copy_from_slice(b"MSWIN4.1");
        put16(&mut img, 0x0b, 512);
        img[0x0d] = 1;
        put16(&mut img, 0x0e, 32);
        img[0x10] = 2;
        img[0x15] = 0xf8;
        put32(&mut img, 0x20, 34 << 11);
        put32(&mut img, 0x24, 520);
        put32(&mut img, 0x2c, 2);
        put16(&mut img, 0x30, 1);
        img[0x42] = 0x29;
        img[0x43..0x47].copy_from_slice(&[0x66, 0xba, 0xb4, 0x92]);
        img[0x47..0x52].copy_from_slice(b"NO NAME    ");
        img[0x52..0x5a].copy_from_slice(b"FAT32   ");
        img[0x1fe..0x200].copy_from_slice(b"\x55\xaa");
        img[512..516].copy_from_slice(b"RRaA");
        img[512 + 484..512 + 488].copy_from_slice(b"rrAa");
        // FAT: cluster 2 continues in cluster 3, which ends the chain.
        put32(&mut img, 32 * 512 + 8, 3);
        put32(&mut img, 32 * 512 + 12, 0x0fff_ffff);
        let c3 = 1073 * 512;
        img[c3..c3 + 32].copy_from_slice(&dir_entry(b"LABEL2     ", ATTR_VOLUME_ID));
        let c2 = 1072 * 512;
        for i in 0..16 {
            let e = dir_entry(b"FILE    BIN", 0x20);
            img[c2 + i * 32..c2 + i * 32 + 32].copy_from_slice(&e);
        }
        img
    }

    fn probed(img: &[u8]) -> Option<Probe> {
        probe_device(&mut Cursor::new(img), img.len() as u64).unwrap()
    }

    #[test]
    fn fat16_root_dir_label() {
        let p = probed(&fat16()).unwrap();
        assert_eq!(p.fstype, FsType::Vfat);
        assert_eq!(p.uuid.as_deref(), Some("2004-1014"));
        assert_eq!(p.label.as_deref(), Some("VTech 1070"));
        assert_eq!(p.version.as_deref(), Some("FAT16"));
    }

    #[test]
    fn boot_sector_label_is_not_a_fallback() {
        let mut img = fat16();
        let root = 65 * 512;
        img[root + 32..root + 64].fill(0);
        let p = probed(&img).unwrap();
        assert_eq!(p.label, None);
        // Deleted and long-name entries are skipped; 0x05 stands for 0xE5.
        img[root + 32..root + 64].copy_from_slice(&dir_entry(b"\xe5OLD       ", 8));
        img[root + 64..root + 96].copy_from_slice(&dir_entry(b"LONGNAME   ", 0x0f));
        img[root + 96..root + 128].copy_from_slice(&dir_entry(b"\x05\xe5\xe5        ", 8));
        assert_eq!(
            probed(&img).unwrap().label.as_deref(),
            Some("\u{fffd}\u{fffd}\u{fffd}")
        );
    }

    #[test]
    fn fat32_follows_the_root_cluster_chain() {
        let p = probed(&fat32()).unwrap();
        assert_eq!(p.uuid.as_deref(), Some("92B4-BA66"));
        assert_eq!(p.label.as_deref(), Some("LABEL2"));
        assert_eq!(p.version.as_deref(), Some("FAT32"));
        // A root-directory label "NO NAME" is a label.
        let mut img = fat32();
        img[1073 * 512..1073 * 512 + 11].copy_from_slice(b"NO NAME    ");
        assert_eq!(probed(&img).unwrap().label.as_deref(), Some("NO NAME"));
    }

    #[test]
    fn fat32_chain_loops_are_bounded() {
        let mut img = fat32();
        img[1073 * 512..1073 * 512 + 32].fill(0);
        put32(&mut img, 32 * 512 + 12, 2); // 3 -> 2 -> 3 -> ...
        assert_eq!(probed(&img).unwrap().label, None);
    }

    #[test]
    fn fat32_fsinfo_signature() {
        let mut img = fat32();
        img[512] = b'X';
        assert_eq!(probed(&img), None);
        img[512..516].fill(0);
        img[512 + 484..512 + 488].fill(0);
        assert!(probed(&img).is_some(), "all-zero signatures are accepted");
    }

    #[test]
    fn geometry_checks() {
        let bs = fat16();
        let bs = &bs[..512];
        assert!(geometry(bs, 8).is_some());
        for (off, v) in [(0x10, 0u8), (0x0d, 3), (0x15, 0xf1), (0x0e, 0)] {
            let mut b = bs.to_vec();
            b[off] = v;
            assert_eq!(geometry(&b, 8), None, "byte {off:#x} = {v:#x}");
        }
        let mut b = bs.to_vec();
        put16(&mut b, 0x0b, 8192);
        assert_eq!(geometry(&b, 8), None);
        // Short magics need the MBR signature and must not be JFS/HPFS.
        let mut b = bs.to_vec();
        b[0x36..0x3e].copy_from_slice(b"HPFS    ");
        assert_eq!(geometry(&b, 1), None);
        assert!(geometry(&b, 8).is_some());
        b[0x1fe] = 0;
        assert_eq!(geometry(&b, 2), None);
        // Too many clusters for FAT16.
        let mut b = bs.to_vec();
        put16(&mut b, 0x13, 0);
        put32(&mut b, 0x20, u32::MAX);
        b[0x0d] = 1;
        assert_eq!(geometry(&b, 8), None);
        assert_eq!(geometry(&bs[..100], 8), None);
        assert_eq!(magic_len(&[]), None);
    }

    #[test]
    fn hostile_directory_sizes() {
        let mut img = fat16();
        put16(&mut img, 0x11, u16::MAX);
        put16(&mut img, 0x16, 1);
        assert!(probed(&img).is_some());
        // A FAT32 cluster of 128 sectors of 4 KiB, far beyond the device.
        let mut img = fat32();
        put16(&mut img, 0x0b, 4096);
        img[0x0d] = 128;
        put32(&mut img, 0x20, 34 << 8);
        put32(&mut img, 0x24, 1);
        put32(&mut img, 0x2c, 0x0fff_fff0);
        let _ = probed(&img);
    }

    #[test]
    fn serial_formatting() {
        assert_eq!(
            serial_uuid([0xb3, 0xf9, 0x26, 0x28]).as_deref(),
            Some("2826-F9B3")
        );
        assert_eq!(serial_uuid([0; 4]), None);
    }
}
