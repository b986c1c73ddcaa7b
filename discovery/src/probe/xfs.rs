//! XFS: the superblock at offset 0, with blkid's sanity checks and, on v5 filesystems, its
//! CRC-32C check (`libblkid/src/superblocks/xfs.c`).

use std::io;

use super::{be16, be32, be64, byte, csum, label, le32, slice, uuid16, Dev, Hit, Probe, Usage};
use crate::fstype::FsType;

const MAGIC: &[u8] = b"XFSB";
/// `sizeof(struct xfs_super_block)` as blkid reads it.
const SB_LEN: usize = 272;
const CRC_OFF: usize = 224;

/// Whether the superblock passes blkid's `xfs_verify_sb` sanity checks. Returns the sector
/// size to checksum when the superblock is v5 (and needs one), `Some(None)` when it needs
/// none, `None` when it is not a valid XFS superblock.
fn verify(sb: &[u8]) -> Option<Option<usize>> {
    let blocksize = be32(sb, 4)?;
    let dblocks = be64(sb, 8)?;
    let rextsize = be32(sb, 80)?;
    let agblocks = be32(sb, 84)?;
    let agcount = be32(sb, 88)?;
    let versionnum = be16(sb, 100)?;
    let sectsize = be16(sb, 102)?;
    let inodesize = be16(sb, 104)?;
    let blocklog = byte(sb, 120)?;
    let sectlog = byte(sb, 121)?;
    let inodelog = byte(sb, 122)?;
    let inopblog = byte(sb, 123)?;
    let imax_pct = byte(sb, 127)?;
    let features2 = be32(sb, 200)?;

    // The C code multiplies these as 32-bit unsigned values.
    let rtext_bytes = rextsize.wrapping_mul(blocksize);
    let max_dblocks = u64::from(agcount) * u64::from(agblocks);
    let min_dblocks = u64::from(agcount.wrapping_sub(1)) * u64::from(agblocks) + 64;
    let valid = agcount != 0
        && (512..=32768).contains(&sectsize)
        && (9..=15).contains(&sectlog)
        && u32::from(sectsize) == 1u32 << sectlog
        && (512..=65536).contains(&blocksize)
        && (9..=16).contains(&blocklog)
        && u64::from(blocksize) == 1u64 << blocklog
        && (256..=2048).contains(&inodesize)
        && (8..=11).contains(&inodelog)
        && u32::from(inodesize) == 1u32 << inodelog
        && i32::from(blocklog) - i32::from(inodelog) == i32::from(inopblog)
        && (4 * 1024..=1024 * 1024 * 1024).contains(&rtext_bytes)
        && imax_pct <= 100
        && dblocks != 0
        && dblocks <= max_dblocks
        && dblocks >= min_dblocks;
    if !valid {
        return None;
    }
    if versionnum & 0x0f == 5 {
        if versionnum & 0x8000 == 0 || features2 & 0x0100 == 0 {
            return None;
        }
        return Some(Some(usize::from(sectsize)));
    }
    Some(None)
}

/// Whether the first sector of a v5 filesystem carries its own CRC-32C.
fn crc_ok(sector: &[u8]) -> bool {
    let (Some(head), Some(tail), Some(stored)) = (
        slice(sector, 0, CRC_OFF),
        sector.get(CRC_OFF + 4..),
        le32(sector, CRC_OFF),
    ) else {
        return false;
    };
    let crc = csum::crc32c(!0, head);
    let crc = csum::crc32c(crc, &[0; 4]);
    !csum::crc32c(crc, tail) == stored
}

/// The identity blkid reports for a verified superblock.
fn identity(sb: &[u8]) -> Option<Probe> {
    let fname = slice(sb, 108, 12)?;
    Some(Probe {
        fstype: FsType::Xfs,
        uuid: uuid16(slice(sb, 32, 16)?),
        label: label(fname),
        usage: Usage::Filesystem,
        version: None,
        uuid_sub: None,
    })
}

/// blkid's `xfs` prober.
pub(super) fn probe(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    if !dev.has_magic(0, 0, 0, MAGIC)? {
        return Ok(None);
    }
    let Some(sb) = dev.get(0, SB_LEN)? else {
        return Ok(None);
    };
    match verify(&sb) {
        None => return Ok(None),
        Some(None) => {}
        Some(Some(sectsize)) => match dev.get(0, sectsize)? {
            Some(sector) if crc_ok(&sector) => {}
            _ => return Ok(None),
        },
    }
    Ok(identity(&sb).map(Hit::Known))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::probe as probe_device;
    use std::io::Cursor;

    fn put16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// A valid v4 superblock sector (512 bytes) for 4 AGs of 1024 4 KiB blocks.
    pub(crate) fn sector() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..4].copy_from_slice(MAGIC);
        put32(&mut b, 4, 4096);
        b[8..16].copy_from_slice(&4096u64.to_be_bytes());
        b[32..48].copy_from_slice(&[0x22; 16]);
        put32(&mut b, 80, 1); // rextsize
        put32(&mut b, 84, 1024);
        put32(&mut b, 88, 4);
        put16(&mut b, 100, 4);
        put16(&mut b, 102, 512);
        put16(&mut b, 104, 512);
        b[108..112].copy_from_slice(b"home");
        b[120] = 12;
        b[121] = 9;
        b[122] = 9;
        b[123] = 3;
        b[127] = 25;
        b
    }

    fn make_v5(b: &mut [u8]) {
        put16(b, 100, 0x8005);
        put32(b, 200, 0x0100);
        b[CRC_OFF..CRC_OFF + 4].fill(0);
        let crc = !csum::crc32c(!0, b);
        b[CRC_OFF..CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn v4_identity() {
        let b = sector();
        assert_eq!(verify(&b), Some(None));
        let p = identity(&b).unwrap();
        assert_eq!(p.label.as_deref(), Some("home"));
        assert_eq!(
            p.uuid.as_deref(),
            Some("22222222-2222-2222-2222-222222222222")
        );
    }

    #[test]
    fn v5_needs_its_crc() {
        let mut b = sector();
        make_v5(&mut b);
        assert_eq!(verify(&b), Some(Some(512)));
        assert!(crc_ok(&b));
        b[300] ^= 1;
        assert!(!crc_ok(&b));
        assert!(!crc_ok(&b[..100]));
        put32(&mut b, 200, 0);
        assert_eq!(verify(&b), None);
    }

    #[test]
    fn sanity_checks_reject_garbage() {
        let base = sector();
        for (off, v) in [(88, 0u32), (4, 4097), (84, 0), (80, 0), (80, 0x4000_0000)] {
            let mut b = base.clone();
            put32(&mut b, off, v);
            assert_eq!(verify(&b), None, "field at {off} = {v}");
        }
        let mut b = base.clone();
        b[127] = 101;
        assert_eq!(verify(&b), None);
        assert_eq!(verify(&base[..100]), None);
        assert_eq!(identity(&base[..100]), None);
    }

    #[test]
    fn whole_device() {
        let mut img = vec![0u8; 8192];
        img[..512].copy_from_slice(&sector());
        let p = probe_device(&mut Cursor::new(&img), img.len() as u64).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::Xfs));
        make_v5(&mut img[..512]);
        let p = probe_device(&mut Cursor::new(&img), img.len() as u64).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::Xfs));
        img[0] = b'Y';
        assert_eq!(probe_device(&mut Cursor::new(&img), 8192).unwrap(), None);
    }
}
