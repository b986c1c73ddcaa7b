//! Signatures blkid reports that this module does not: recognised only because blkid ranks
//! them before (or beside) the supported families, so that finding one turns the answer
//! into `None` instead of a wrong filesystem.
//!
//! Each check follows the corresponding blkid prober far enough to know whether blkid would
//! accept the signature; where a check stops short, it errs towards "foreign" (`None`).

use std::io;

use super::swap::{HEADER_LEN, HEADER_OFFSET, SIGNATURE_OFFSETS, TOI_MAGIC};
use super::{byte, le16, le32, le64, slice, Dev, Hit};

/// blkid's `LVM1_member`: "HM" and a version of 1 or 2.
pub(super) fn lvm1(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    if !dev.has_magic(0, 0, 0, b"HM")? {
        return Ok(None);
    }
    let found = dev
        .get(0, 172)?
        .and_then(|h| le16(&h, 2))
        .is_some_and(|v| v == 1 || v == 2);
    Ok(found.then_some(Hit::Foreign))
}

/// blkid's `DM_snapshot_cow`: the magic alone.
pub(super) fn snapcow(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    Ok(dev.has_magic(0, 0, 0, b"SnAp")?.then_some(Hit::Foreign))
}

/// blkid's `DM_verity_hash`: the magic and version 1.
pub(super) fn verity(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    if !dev.has_magic(0, 0, 0, b"verity\0\0")? {
        return Ok(None);
    }
    let found = dev.get(0, 512)?.and_then(|h| le32(&h, 8)) == Some(1);
    Ok(found.then_some(Hit::Foreign))
}

/// blkid's `DM_integrity`: the magic and a non-zero version.
pub(super) fn integrity(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    if !dev.has_magic(0, 0, 0, b"integrt\0")? {
        return Ok(None);
    }
    let found = dev.get(0, 29)?.and_then(|h| byte(&h, 8)).unwrap_or(0) != 0;
    Ok(found.then_some(Hit::Foreign))
}

const BDE_VISTA: &[u8] = b"\xeb\x52\x90-FVE-FS-";
const BDE_WIN7: &[u8] = b"\xeb\x58\x90-FVE-FS-";
const BDE_TOGO: &[u8] = b"\xeb\x58\x90MSWIN4.1";

/// blkid's `blkid_probe_is_bitlocker`: a BitLocker boot sector whose FVE metadata block
/// (Windows 7 and To Go) is where it says. A plain Windows FAT32 boot sector starts like
/// BitLocker To Go, so the metadata check matters.
pub(super) fn is_bitlocker(dev: &mut Dev<'_>) -> io::Result<bool> {
    let Some(hdr) = dev.get(0, 512)? else {
        return Ok(false);
    };
    let head = slice(&hdr, 0, 11);
    let fve_at = if head == Some(BDE_VISTA) {
        return Ok(true);
    } else if head == Some(BDE_WIN7) {
        le64(&hdr, 176)
    } else if head == Some(BDE_TOGO) {
        le64(&hdr, 440)
    } else {
        None
    };
    let Some(off) = fve_at.filter(|&o| o != 0) else {
        return Ok(false);
    };
    Ok(dev
        .get(off, 12)?
        .is_some_and(|fve| slice(&fve, 0, 8) == Some(b"-FVE-FS-")))
}

/// blkid's `BitLocker` prober.
pub(super) fn bitlocker(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    Ok(is_bitlocker(dev)?.then_some(Hit::Foreign))
}

/// blkid's `swsuspend`: hibernation images that took over a swap area.
pub(super) fn swsuspend(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    let mut found = dev.has_magic(0, 0, 0, TOI_MAGIC)?;
    'outer: for off in SIGNATURE_OFFSETS {
        if found {
            break;
        }
        for magic in [&b"S1SUSPEND"[..], b"S2SUSPEND", b"ULSUSPEND", b"LINHIB0001"] {
            if dev.has_magic(0, 0, off, magic)? {
                found = true;
                break 'outer;
            }
        }
    }
    // blkid then only needs the swap header to be readable.
    let found = found && dev.get(HEADER_OFFSET, HEADER_LEN)?.is_some();
    Ok(found.then_some(Hit::Foreign))
}

const UDF_VSD_OFFSET: u64 = 0x8000;
const UDF_MAGICS: [&[u8]; 7] = [
    b"BEA01", b"BOOT2", b"CD001", b"CDW02", b"NSR02", b"NSR03", b"TEA01",
];
/// `sizeof(struct volume_descriptor)` in blkid's udf.c.
const UDF_VD_LEN: usize = 440;
const UDF_TAG_AVDP: u16 = 2;

/// Whether the UDF volume recognition sequence at the session offset holds an NSR
/// descriptor, for VSDs of `vsd_len` bytes. `None` when blkid would give up on the device.
fn udf_has_nsr(dev: &mut Dev<'_>, s_off: u64, vsd_len: u64) -> io::Result<Option<bool>> {
    for b in 0..64u64 {
        let Some(vsd) = dev.get(s_off.saturating_add(UDF_VSD_OFFSET + b * vsd_len), 7)? else {
            return Ok(None);
        };
        let id = slice(&vsd, 1, 5);
        if byte(&vsd, 1) == Some(0) {
            break;
        }
        if matches!(id, Some(b"NSR02" | b"NSR03")) {
            return Ok(Some(true));
        }
        if !matches!(
            id,
            Some(b"BEA01" | b"BOOT2" | b"CD001" | b"CDW02" | b"TEA01")
        ) {
            break;
        }
    }
    Ok(Some(false))
}

/// Whether an anchor volume descriptor pointer is at block `block` for block size `bs`.
fn udf_anchor(dev: &mut Dev<'_>, s_off: u64, bs: u64, block: u64) -> io::Result<Option<bool>> {
    let Some(vd) = dev.get(s_off.saturating_add(block * bs), UDF_VD_LEN)? else {
        return Ok(None);
    };
    let location = le32(&vd, 12).map(u64::from);
    Ok(Some(
        location == Some(s_off / bs + block) && le16(&vd, 0) == Some(UDF_TAG_AVDP),
    ))
}

/// blkid's `udf` prober, as far as finding the anchor (what follows cannot fail on a
/// readable device). It reads from the session offset hint, like the iso9660 prober.
pub(super) fn udf(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    let s_off = dev.session_offset();
    let mut magic = false;
    for m in UDF_MAGICS {
        if dev.has_magic(s_off, 32, 1, m)? {
            magic = true;
            break;
        }
    }
    if !magic {
        return Ok(None);
    }
    // blkid tries the device's sector size first; an image file has 512-byte sectors.
    let mut vsd_2048_valid: Option<bool> = None;
    for bs in [512u64, 1024, 2048, 4096] {
        // bs is a power of two: "not a multiple of bs".
        if s_off & (bs - 1) != 0 {
            continue;
        }
        let vsd_len = bs.max(2048);
        let first_session_2048 = s_off == 0 && vsd_len == 2048;
        let nsr = match (first_session_2048, vsd_2048_valid) {
            (true, Some(known)) => known,
            _ => match udf_has_nsr(dev, s_off, vsd_len)? {
                Some(nsr) => nsr,
                None => return Ok(None),
            },
        };
        if first_session_2048 {
            vsd_2048_valid = Some(nsr);
        }
        if !nsr {
            continue;
        }
        for block in [256, 512] {
            match udf_anchor(dev, s_off, bs, block)? {
                Some(true) => return Ok(Some(Hit::Foreign)),
                Some(false) => {}
                None => return Ok(None),
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ext::tests::superblock as ext_superblock;
    use crate::probe::probe;
    use std::io::Cursor;

    /// A 4 MiB device holding an ext2 filesystem, plus whatever `add` writes.
    fn ext2_plus(add: impl FnOnce(&mut Vec<u8>)) -> Option<&'static str> {
        let mut img = vec![0u8; 4 << 20];
        img[1024..2048].copy_from_slice(&ext_superblock());
        add(&mut img);
        probe(&mut Cursor::new(&img), img.len() as u64)
            .unwrap()
            .map(|p| p.fstype.as_str())
    }

    #[test]
    fn ext2_alone_is_found() {
        assert_eq!(ext2_plus(|_| {}), Some("ext2"));
    }

    #[test]
    fn small_headers_win() {
        assert_eq!(ext2_plus(|img| img[..4].copy_from_slice(b"SnAp")), None);
        assert_eq!(ext2_plus(|img| img[..4].copy_from_slice(b"HM\x02\0")), None);
        assert_eq!(
            ext2_plus(|img| img[..4].copy_from_slice(b"HM\x03\0")),
            Some("ext2")
        );
        let verity = |v: u8| {
            move |img: &mut Vec<u8>| {
                img[..8].copy_from_slice(b"verity\0\0");
                img[8] = v;
            }
        };
        assert_eq!(ext2_plus(verity(1)), None);
        assert_eq!(ext2_plus(verity(2)), Some("ext2"));
        let integrity = |v: u8| {
            move |img: &mut Vec<u8>| {
                img[..8].copy_from_slice(b"integrt\0");
                img[8] = v;
            }
        };
        assert_eq!(ext2_plus(integrity(1)), None);
        assert_eq!(ext2_plus(integrity(0)), Some("ext2"));
    }

    #[test]
    fn bitlocker_headers() {
        assert_eq!(ext2_plus(|img| img[..11].copy_from_slice(BDE_VISTA)), None);
        for (magic, ptr) in [(BDE_WIN7, 176), (BDE_TOGO, 440)] {
            let with_fve = |fve: bool| {
                move |img: &mut Vec<u8>| {
                    img[..11].copy_from_slice(magic);
                    img[ptr..ptr + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
                    if fve {
                        img[0x10_0000..0x10_0008].copy_from_slice(b"-FVE-FS-");
                    }
                }
            };
            assert_eq!(ext2_plus(with_fve(true)), None);
            assert_eq!(ext2_plus(with_fve(false)), Some("ext2"));
        }
    }

    #[test]
    fn swsuspend_signatures() {
        let mut img = crate::probe::swap::tests::image();
        img[0xff6..0xfff].copy_from_slice(b"S1SUSPEND");
        img[0xfff] = 0;
        assert_eq!(
            probe(&mut Cursor::new(&img), img.len() as u64).unwrap(),
            None
        );
        let mut img = crate::probe::swap::tests::image();
        img[..8].copy_from_slice(TOI_MAGIC);
        assert_eq!(
            probe(&mut Cursor::new(&img), img.len() as u64).unwrap(),
            None
        );
    }

    /// An ISO 9660 image that is also UDF: NSR02 in the recognition sequence and an anchor
    /// at block 256 (of 2048 bytes).
    fn udf_bridge(anchor: bool) -> Vec<u8> {
        let mut img = crate::probe::iso9660::tests::image("BRIDGE", None);
        img.resize(600 * 2048, 0);
        let vrs = 0x8000 + 2 * 2048;
        for (i, id) in [&b"BEA01"[..], b"NSR02", b"TEA01"].iter().enumerate() {
            img[vrs + i * 2048 + 1..vrs + i * 2048 + 6].copy_from_slice(id);
        }
        if anchor {
            let a = 256 * 2048;
            img[a..a + 2].copy_from_slice(&UDF_TAG_AVDP.to_le_bytes());
            img[a + 12..a + 16].copy_from_slice(&256u32.to_le_bytes());
        }
        img
    }

    #[test]
    fn udf_overrules_iso9660() {
        let img = udf_bridge(true);
        assert_eq!(
            probe(&mut Cursor::new(&img), img.len() as u64).unwrap(),
            None
        );
        let img = udf_bridge(false);
        let p = probe(&mut Cursor::new(&img), img.len() as u64).unwrap();
        assert_eq!(p.map(|p| p.fstype.as_str()), Some("iso9660"));
    }
}
