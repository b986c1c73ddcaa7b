//! Linux swap: the signature at the end of the first page (of any page size from 4 KiB to
//! 64 KiB), and for v1 ("SWAPSPACE2") the header at 1 KiB with the label and UUID
//! (`libblkid/src/superblocks/swap.c`). Swap v0 has neither.

use std::io;

use super::{arr, label, le32, slice, uuid16, Dev, Hit, Probe, Usage};
use crate::fstype::FsType;

/// Page-end offsets blkid looks at, for 4, 8, 16, 32 and 64 KiB pages.
pub(super) const SIGNATURE_OFFSETS: [u64; 5] = [0xff6, 0x1ff6, 0x3ff6, 0x7ff6, 0xfff6];
/// The swap header (`struct swap_header_v1_2`) after the 1 KiB of boot bits.
pub(super) const HEADER_OFFSET: u64 = 1024;
/// `sizeof(struct swap_header_v1_2)`.
pub(super) const HEADER_LEN: usize = 516;
/// TuxOnIce keeps a valid swap signature at the end of the first page; its own magic at
/// offset 0 means "not swap".
pub(super) const TOI_MAGIC: &[u8] = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c";

/// Which signature was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// "SWAP-SPACE": swap v0.
    V0,
    /// "SWAPSPACE2": swap v1.
    V1,
}

/// What blkid reports for swap v1, given the header at 1 KiB.
pub(super) fn parse_v1(hdr: &[u8]) -> Option<Probe> {
    let version = le32(hdr, 0)?;
    if version != 1 && version.swap_bytes() != 1 {
        return None;
    }
    if le32(hdr, 4)? == 0 {
        return None; // no last page
    }
    // blkid only trusts label and UUID when this padding is clean.
    let (uuid, label) = if arr::<8>(hdr, 44 + 32 * 4)? == [0; 8] {
        (uuid16(slice(hdr, 12, 16)?), label(slice(hdr, 28, 16)?))
    } else {
        (None, None)
    };
    Some(Probe {
        fstype: FsType::Swap,
        uuid,
        label,
        usage: Usage::Other,
        version: Some("1".into()),
        uuid_sub: None,
    })
}

/// The first swap signature blkid's magic table matches.
fn signature(dev: &mut Dev<'_>) -> io::Result<Option<Kind>> {
    for off in SIGNATURE_OFFSETS {
        if dev.has_magic(0, 0, off, b"SWAP-SPACE")? {
            return Ok(Some(Kind::V0));
        }
        if dev.has_magic(0, 0, off, b"SWAPSPACE2")? {
            return Ok(Some(Kind::V1));
        }
    }
    Ok(None)
}

/// blkid's `swap` prober.
pub(super) fn probe(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    let Some(kind) = signature(dev)? else {
        return Ok(None);
    };
    match dev.get(0, TOI_MAGIC.len())? {
        Some(head) if head != TOI_MAGIC => {}
        _ => return Ok(None),
    }
    let found = match kind {
        Kind::V0 => Some(Probe {
            fstype: FsType::Swap,
            uuid: None,
            label: None,
            usage: Usage::Other,
            version: Some("0".into()),
            uuid_sub: None,
        }),
        Kind::V1 => dev
            .get(HEADER_OFFSET, HEADER_LEN)?
            .and_then(|hdr| parse_v1(&hdr)),
    };
    Ok(found.map(Hit::Known))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::probe as probe_device;
    use std::io::Cursor;

    /// A swap v1 area of 40 pages with a 4 KiB signature.
    pub(crate) fn image() -> Vec<u8> {
        let mut img = vec![0u8; 40 * 4096];
        img[0xff6..0x1000].copy_from_slice(b"SWAPSPACE2");
        let h = HEADER_OFFSET as usize;
        img[h..h + 4].copy_from_slice(&1u32.to_le_bytes());
        img[h + 4..h + 8].copy_from_slice(&39u32.to_le_bytes());
        img[h + 12..h + 28].copy_from_slice(&[0x55; 16]);
        img[h + 28..h + 32].copy_from_slice(b"swp\0");
        img
    }

    #[test]
    fn v1_label_and_uuid() {
        let img = image();
        let p = probe_device(&mut Cursor::new(&img), img.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!(p.fstype, FsType::Swap);
        assert_eq!(p.label.as_deref(), Some("swp"));
        assert_eq!(
            p.uuid.as_deref(),
            Some("55555555-5555-5555-5555-555555555555")
        );
        assert_eq!(p.version.as_deref(), Some("1"));
        assert_eq!(p.usage, Usage::Other);
    }

    #[test]
    fn v1_header_checks() {
        let img = image();
        let hdr = &img[1024..1024 + HEADER_LEN];
        let mut h = hdr.to_vec();
        h[0..4].copy_from_slice(&1u32.to_be_bytes());
        assert!(parse_v1(&h).is_some(), "either byte order");
        h[0..4].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(parse_v1(&h), None);
        let mut h = hdr.to_vec();
        h[4..8].fill(0);
        assert_eq!(parse_v1(&h), None, "no last page");
        let mut h = hdr.to_vec();
        h[44 + 33 * 4] = 1;
        let p = parse_v1(&h).unwrap();
        assert_eq!((p.uuid, p.label), (None, None), "dirty padding");
        assert_eq!(parse_v1(&hdr[..100]), None);
    }

    #[test]
    fn v0_other_pages_and_impostors() {
        let mut img = image();
        img[0xff6..0x1000].copy_from_slice(b"SWAP-SPACE");
        let p = probe_device(&mut Cursor::new(&img), img.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.version.as_deref(), p.uuid, p.label),
            (Some("0"), None, None)
        );
        // 64 KiB pages.
        let mut img = vec![0u8; 0x20000];
        img[0xfff6..0x10000].copy_from_slice(b"SWAP-SPACE");
        let p = probe_device(&mut Cursor::new(&img), img.len() as u64).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::Swap));
        // TuxOnIce.
        img[..8].copy_from_slice(TOI_MAGIC);
        assert_eq!(probe_device(&mut Cursor::new(&img), 0x20000).unwrap(), None);
        // Too small: fewer than 10 pages.
        let img = image();
        assert_eq!(probe_device(&mut Cursor::new(&img), 40959).unwrap(), None);
    }
}
