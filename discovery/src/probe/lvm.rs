//! LVM2 physical volumes: the "LABELONE" label in one of the first four sectors, its CRC,
//! and the PV UUID grouped 6-4-4-4-4-4-6 (`libblkid/src/superblocks/lvm.c`).

use std::io;

use super::{le32, le64, slice, Dev, Hit, Probe, Usage};
use crate::fstype::FsType;

const TYPE_MAGIC: &[u8] = b"LVM2 001";
/// blkid's magic table: (KiB offset, byte offset) of the "LVM2 001" type string.
const MAGICS: [(u64, u64); 4] = [(0, 0x218), (0, 0x018), (1, 0x018), (1, 0x218)];
const LABEL_SIZE: usize = 512;

/// LVM's own CRC over the label (`lvm2_calc_crc`).
pub fn lvm_crc(data: &[u8]) -> u32 {
    const TAB: [u32; 16] = [
        0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158,
        0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4,
        0xa00ae278, 0xbdbdf21c,
    ];
    data.iter().fold(0xf597a6cf, |mut crc, &b| {
        crc ^= u32::from(b);
        crc = (crc >> 4) ^ TAB[(crc & 0xf) as usize];
        (crc >> 4) ^ TAB[(crc & 0xf) as usize]
    })
}

/// The PV UUID with blkid's hyphens (before characters 6, 10, 14, 18, 22 and 26).
fn format_pv_uuid(id: &[u8]) -> String {
    let mut out = Vec::with_capacity(id.len() + 6);
    for (i, &c) in id.iter().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            out.push(b'-');
        }
        out.push(c);
    }
    // blkid prints it with "%s": it ends at a NUL.
    String::from_utf8_lossy(super::c_str(&out)).into_owned()
}

/// What blkid reports for the KiB `block` that starts at sector `first_sector`, where the
/// magic table pointed.
pub(super) fn parse(block: &[u8], first_sector: u64) -> Option<Probe> {
    let (label, sector) = if slice(block, 0, 8)? == b"LABELONE" {
        (slice(block, 0, LABEL_SIZE)?, first_sector)
    } else if slice(block, 512, 8)? == b"LABELONE" {
        (slice(block, 512, LABEL_SIZE)?, first_sector + 1)
    } else {
        return None;
    };
    if le64(label, 8)? != sector || lvm_crc(label.get(20..)?) != le32(label, 16)? {
        return None;
    }
    let pv_uuid = slice(label, 32, 32)?;
    Some(Probe {
        fstype: FsType::Lvm2Member,
        uuid: pv_uuid
            .iter()
            .any(|&b| b != 0)
            .then(|| format_pv_uuid(pv_uuid)),
        label: None,
        usage: Usage::Raid,
        version: Some("LVM2 001".into()),
        uuid_sub: None,
    })
}

/// blkid's `LVM2_member` prober.
pub(super) fn probe(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    for (kboff, sboff) in MAGICS {
        if dev.has_magic(0, kboff, sboff, TYPE_MAGIC)? {
            // Only the first matching magic counts, as in blkid.
            let found = dev
                .get(kboff * 1024, 1024)?
                .and_then(|block| parse(&block, kboff * 2));
            return Ok(found.map(Hit::Known));
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::probe as probe_device;
    use std::io::Cursor;

    /// A PV label for `sector`.
    pub(crate) fn label_sector(sector: u64) -> Vec<u8> {
        let mut l = vec![0u8; LABEL_SIZE];
        l[..8].copy_from_slice(b"LABELONE");
        l[8..16].copy_from_slice(&sector.to_le_bytes());
        l[20..24].copy_from_slice(&32u32.to_le_bytes());
        l[24..32].copy_from_slice(TYPE_MAGIC);
        l[32..64].copy_from_slice(b"Vynv4kAPH8xQERHSBb8VJ3SvFFPB5O1U");
        let crc = lvm_crc(&l[20..]);
        l[16..20].copy_from_slice(&crc.to_le_bytes());
        l
    }

    #[test]
    fn label_in_each_of_the_first_four_sectors() {
        for sector in 0..4u64 {
            let mut img = vec![0u8; 2 << 20];
            let at = sector as usize * 512;
            img[at..at + 512].copy_from_slice(&label_sector(sector));
            let p = probe_device(&mut Cursor::new(&img), img.len() as u64)
                .unwrap()
                .unwrap();
            assert_eq!(p.fstype, FsType::Lvm2Member);
            assert_eq!(
                p.uuid.as_deref(),
                Some("Vynv4k-APH8-xQER-HSBb-8VJ3-SvFF-PB5O1U")
            );
            assert_eq!(p.version.as_deref(), Some("LVM2 001"));
            assert_eq!(p.usage, Usage::Raid);
            // Not probed on floppy-sized devices, like every RAID signature.
            assert_eq!(probe_device(&mut Cursor::new(&img), 1 << 20).unwrap(), None);
        }
    }

    #[test]
    fn wrong_sector_or_crc() {
        let mut block = vec![0u8; 1024];
        block[512..].copy_from_slice(&label_sector(0));
        assert_eq!(parse(&block, 0), None, "label says sector 0, found in 1");
        block[512..].copy_from_slice(&label_sector(1));
        assert!(parse(&block, 0).is_some());
        block[600] ^= 1;
        assert_eq!(parse(&block, 0), None, "crc");
        assert_eq!(parse(&block[..520], 0), None);
        assert_eq!(parse(&[], 0), None);
    }

    #[test]
    fn uuid_formatting() {
        assert_eq!(format_pv_uuid(b"abcdefghij"), "abcdef-ghij");
        assert_eq!(format_pv_uuid(b"abc\0defghij"), "abc");
    }
}
