//! btrfs: the primary superblock at 64 KiB, accepted only when its checksum (CRC-32C,
//! xxHash64 or SHA-256; other kinds are not checked, as in blkid) is right
//! (`libblkid/src/superblocks/btrfs.c`).

use std::io;

use super::{csum, label, le16, le32, le64, slice, uuid16, Dev, Hit, Probe, Usage};
use crate::fstype::FsType;

const MAGIC: &[u8] = b"_BHRfS_M";
const SB_OFFSET: u64 = 64 * 1024;
/// `BTRFS_SUPER_INFO_SIZE`: the checksummed superblock.
const SB_LEN: usize = 4096;
const CSUM_LEN: usize = 32;

/// Whether the superblock's own checksum is right (or of a kind blkid does not check).
fn csum_ok(sb: &[u8]) -> bool {
    let (Some(data), Some(kind)) = (sb.get(CSUM_LEN..SB_LEN), le16(sb, 196)) else {
        return false;
    };
    match kind {
        0 => le32(sb, 0) == Some(!csum::crc32c(!0, data)),
        1 => le64(sb, 0) == Some(csum::xxh64(data, 0)),
        2 => slice(sb, 0, 32) == Some(&csum::sha256(data)[..]),
        _ => true,
    }
}

/// What blkid reports for the 4 KiB superblock `sb`.
pub(super) fn parse(sb: &[u8]) -> Option<Probe> {
    if slice(sb, 0x40, MAGIC.len())? != MAGIC || !csum_ok(sb) || le32(sb, 144)? == 0 {
        return None;
    }
    Some(Probe {
        fstype: FsType::Btrfs,
        uuid: uuid16(slice(sb, 32, 16)?),
        label: label(slice(sb, 299, 256)?),
        usage: Usage::Filesystem,
        version: None,
        uuid_sub: uuid16(slice(sb, 267, 16)?),
    })
}

/// blkid's `btrfs` prober.
pub(super) fn probe(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    if !dev.has_magic(0, SB_OFFSET >> 10, 0x40, MAGIC)? {
        return Ok(None);
    }
    Ok(dev
        .get(SB_OFFSET, SB_LEN)?
        .and_then(|sb| parse(&sb))
        .map(Hit::Known))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::probe as probe_device;
    use std::io::Cursor;

    /// A superblock checksummed with `kind`.
    pub(crate) fn superblock(kind: u16) -> Vec<u8> {
        let mut sb = vec![0u8; SB_LEN];
        sb[32..48].copy_from_slice(&[0x33; 16]);
        sb[0x40..0x48].copy_from_slice(MAGIC);
        sb[144..148].copy_from_slice(&4096u32.to_le_bytes());
        sb[196..198].copy_from_slice(&kind.to_le_bytes());
        sb[267..283].copy_from_slice(&[0x44; 16]);
        sb[299..305].copy_from_slice(b"pool  ");
        seal(&mut sb);
        sb
    }

    pub(crate) fn seal(sb: &mut [u8]) {
        let kind = u16::from_le_bytes([sb[196], sb[197]]);
        let (head, data) = sb.split_at_mut(CSUM_LEN);
        let data = &data[..SB_LEN - CSUM_LEN];
        head.fill(0);
        match kind {
            0 => head[..4].copy_from_slice(&(!csum::crc32c(!0, data)).to_le_bytes()),
            1 => head[..8].copy_from_slice(&csum::xxh64(data, 0).to_le_bytes()),
            2 => head.copy_from_slice(&csum::sha256(data)),
            _ => {}
        }
    }

    #[test]
    fn every_checksum_kind() {
        for kind in [0u16, 1, 2, 3] {
            let mut sb = superblock(kind);
            let p = parse(&sb).unwrap();
            assert_eq!(p.label.as_deref(), Some("pool"));
            assert_eq!(
                p.uuid.as_deref(),
                Some("33333333-3333-3333-3333-333333333333")
            );
            assert_eq!(
                p.uuid_sub.as_deref(),
                Some("44444444-4444-4444-4444-444444444444")
            );
            sb[1000] ^= 0xff;
            // Unknown kinds (3 is blake2b) are not verified by blkid.
            assert_eq!(parse(&sb).is_some(), kind == 3, "kind {kind}");
        }
    }

    #[test]
    fn rejects_bad_superblocks() {
        let mut sb = superblock(0);
        sb[144..148].fill(0);
        seal(&mut sb);
        assert_eq!(parse(&sb), None, "zero sector size");
        let mut sb = superblock(0);
        sb[0x40] = b'x';
        seal(&mut sb);
        assert_eq!(parse(&sb), None);
        assert_eq!(parse(&superblock(0)[..4095]), None);
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn whole_device_needs_a_mebibyte() {
        let mut img = vec![0u8; 1 << 20];
        img[65536..65536 + SB_LEN].copy_from_slice(&superblock(0));
        let p = probe_device(&mut Cursor::new(&img), 1 << 20).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::Btrfs));
        img.truncate((1 << 20) - 1);
        assert_eq!(
            probe_device(&mut Cursor::new(&img), (1 << 20) - 1).unwrap(),
            None
        );
    }
}
