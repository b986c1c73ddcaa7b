//! LUKS1 and LUKS2 headers: the binary header at offset 0 (or, when that is damaged, a LUKS2
//! secondary header at one of its fixed offsets), with the UUID string and the LUKS2 label
//! (`libblkid/src/superblocks/luks.c`).
//!
//! Like blkid, this never reads the LUKS2 JSON area: its size field is not trusted for any
//! allocation.

use std::io;

use super::{be16, be64, label, slice, Dev, Hit, Probe, Usage};
use crate::fstype::FsType;

const MAGIC_PRIMARY: &[u8] = b"LUKS\xba\xbe";
const MAGIC_SECONDARY: &[u8] = b"SKUL\xba\xbe";
/// `sizeof(struct luks2_phdr)`: the binary header (the LUKS1 header fits in it).
const HEADER_LEN: usize = 512;
/// Where a LUKS2 secondary header may be, for every JSON area size.
const SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];
const UUID_OFF: usize = 168;
const UUID_LEN: usize = 40;
const LABEL_OFF: usize = 24;
const LABEL_LEN: usize = 48;
const HDR_OFFSET_OFF: usize = 256;

/// blkid's `luks_valid`: the magic, and for LUKS2 the header's own record of where it is.
fn valid(hdr: &[u8], magic: &[u8], offset: u64) -> bool {
    slice(hdr, 0, magic.len()) == Some(magic)
        && (be16(hdr, 6) != Some(2) || be64(hdr, HDR_OFFSET_OFF) == Some(offset))
}

/// What blkid reports for a header already found valid.
fn attributes(hdr: &[u8]) -> Option<Probe> {
    let version = be16(hdr, 6)?;
    let (uuid, label) = match version {
        // Both versions keep the UUID string at the same place.
        1 | 2 => {
            // blkid_probe_strncpy_uuid trims like a label.
            let uuid = label(slice(hdr, UUID_OFF, UUID_LEN)?);
            let lbl = if version == 2 {
                label(slice(hdr, LABEL_OFF, LABEL_LEN)?)
            } else {
                None
            };
            (uuid, lbl)
        }
        _ => (None, None),
    };
    Some(Probe {
        fstype: FsType::CryptoLuks,
        uuid,
        label,
        usage: Usage::Crypto,
        version: Some(version.to_string()),
        uuid_sub: None,
    })
}

/// What blkid reports for the header read at `offset` (0 for the primary header).
pub(super) fn parse(hdr: &[u8], offset: u64) -> Option<Probe> {
    let magic = if offset == 0 {
        MAGIC_PRIMARY
    } else {
        MAGIC_SECONDARY
    };
    if valid(hdr, magic, offset) {
        attributes(hdr)
    } else {
        None
    }
}

/// blkid's `crypto_LUKS` prober.
pub(super) fn probe(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    let Some(primary) = dev.get(0, HEADER_LEN)? else {
        return Ok(None);
    };
    if let Some(p) = parse(&primary, 0) {
        return Ok(Some(Hit::Known(p)));
    }
    for off in SECONDARY_OFFSETS {
        // Like blkid, the scan stops at the first offset past the end of the device.
        let Some(hdr) = dev.get(off, HEADER_LEN)? else {
            return Ok(None);
        };
        if let Some(p) = parse(&hdr, off) {
            return Ok(Some(Hit::Known(p)));
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::probe as probe_device;
    use std::io::Cursor;

    const UUID: &[u8] = b"202265fe-9842-4c2d-ac9b-aba1b05deb63";

    /// A LUKS header of `version` at `offset`.
    pub(crate) fn header(version: u16, offset: u64) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        let magic = if offset == 0 {
            MAGIC_PRIMARY
        } else {
            MAGIC_SECONDARY
        };
        h[..6].copy_from_slice(magic);
        h[6..8].copy_from_slice(&version.to_be_bytes());
        h[8..16].copy_from_slice(&0x4000u64.to_be_bytes()); // hdr_size
        h[LABEL_OFF..LABEL_OFF + 9].copy_from_slice(b"tst_label");
        h[UUID_OFF..UUID_OFF + UUID.len()].copy_from_slice(UUID);
        h[HDR_OFFSET_OFF..HDR_OFFSET_OFF + 8].copy_from_slice(&offset.to_be_bytes());
        h
    }

    #[test]
    fn luks1_and_luks2() {
        let p = parse(&header(2, 0), 0).unwrap();
        assert_eq!(p.uuid.as_deref(), Some(std::str::from_utf8(UUID).unwrap()));
        assert_eq!(p.label.as_deref(), Some("tst_label"));
        assert_eq!(p.version.as_deref(), Some("2"));
        assert_eq!(p.usage, Usage::Crypto);
        let p = parse(&header(1, 0), 0).unwrap();
        assert_eq!((p.label, p.version.as_deref()), (None, Some("1")));
        // An unknown version is still LUKS, without UUID.
        let p = parse(&header(7, 0), 0).unwrap();
        assert_eq!((p.uuid, p.version.as_deref()), (None, Some("7")));
    }

    #[test]
    fn luks2_header_must_be_where_it_says() {
        let mut h = header(2, 0);
        h[HDR_OFFSET_OFF + 7] = 1;
        assert_eq!(parse(&h, 0), None);
        assert_eq!(parse(&header(2, 0x8000), 0x4000), None);
        assert!(parse(&header(2, 0x8000), 0x8000).is_some());
        assert_eq!(parse(&header(2, 0)[..100], 0), None);
    }

    #[test]
    fn hostile_json_size_is_ignored() {
        let mut img = header(2, 0);
        img[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        let p = probe_device(&mut Cursor::new(&img), img.len() as u64).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::CryptoLuks));
    }

    #[test]
    fn secondary_header_when_primary_is_gone() {
        let mut img = vec![0u8; 0x20000];
        img[0x8000..0x9000].copy_from_slice(&header(2, 0x8000));
        let p = probe_device(&mut Cursor::new(&img), img.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!(p.label.as_deref(), Some("tst_label"));
        // The scan stops at the first offset beyond the device.
        img.truncate(0x8000 + 256);
        assert_eq!(probe_device(&mut Cursor::new(&img), 0x8100).unwrap(), None);
    }
}
