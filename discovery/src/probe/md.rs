//! Linux MD RAID members (`linux_raid_member`): metadata 0.90 or 1.0 at the end of the device,
//! 1.1 at its start or 1.2 at 4 KiB, with the array's UUID, name (1.x) and the member's own
//! UUID (1.x), as `libblkid/src/superblocks/linux_raid.c` reports them. (blkid also ignores an
//! end-of-device superblock that a partition table covers; this check does not.)

use std::io;

use super::{be32, le32, le64, slice, Dev, Hit, Probe, Usage};
use crate::fstype::FsType;

pub(super) const MD_RESERVED_BYTES: u64 = 0x10000;
pub(super) const MD_SB_MAGIC: u32 = 0xa92b_4efc;

/// A 0.90 superblock at `off`, in either byte order (`probe_raid0`).
fn md0(sb: &[u8], off: u64, dev_size: u64) -> Option<Probe> {
    let little = le32(sb, 0)? == MD_SB_MAGIC;
    if !little && be32(sb, 0)? != MD_SB_MAGIC {
        return None;
    }
    let word = |at: usize| if little { le32(sb, at) } else { be32(sb, at) };
    let (major, minor, patch) = (word(4)?, word(8)?, word(12)?);
    let size = u64::from(word(32)?) << 10;
    if dev_size < size + MD_RESERVED_BYTES || off < size {
        return None;
    }
    // The four UUID words (set_uuid0 at 20, set_uuid1..3 at 52): blkid byte-swaps each word
    // of a little-endian superblock; words 1-3 only from minor version 90 on.
    let mut uuid = [0u8; 16];
    for (i, at) in [20usize, 52, 56, 60].into_iter().enumerate() {
        if i > 0 && minor < 90 {
            break;
        }
        let mut w: [u8; 4] = slice(sb, at, 4)?.try_into().ok()?;
        if little {
            w.reverse();
        }
        uuid[i * 4..i * 4 + 4].copy_from_slice(&w);
    }
    Some(Probe {
        fstype: FsType::LinuxRaidMember,
        uuid: super::uuid16(&uuid),
        label: None,
        usage: Usage::Raid,
        version: Some(format!("{major}.{minor}.{patch}")),
        uuid_sub: None,
    })
}

/// A 1.x superblock at `off`, version 1.`minor` (`probe_raid1`).
fn md1(sb: &[u8], off: u64, minor: u32) -> Option<Probe> {
    if le32(sb, 0)? != MD_SB_MAGIC || le32(sb, 4)? != 1 || le64(sb, 144)? != off >> 9 {
        return None;
    }
    Some(Probe {
        fstype: FsType::LinuxRaidMember,
        uuid: super::uuid16(slice(sb, 16, 16)?),
        label: super::label(slice(sb, 32, 32)?),
        usage: Usage::Raid,
        version: Some(format!("1.{minor}")),
        uuid_sub: super::uuid16(slice(sb, 168, 16)?),
    })
}

/// blkid's `linux_raid_member` prober: 0.90 and 1.0 at the end, then 1.1 and 1.2.
pub(super) fn probe(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    let size = dev.size();
    if size > MD_RESERVED_BYTES {
        let off = (size & !(MD_RESERVED_BYTES - 1)) - MD_RESERVED_BYTES;
        if let Some(p) = dev.get(off, 64)?.and_then(|sb| md0(&sb, off, size)) {
            return Ok(Some(Hit::Known(p)));
        }
        let off = (size & !0xfff) - 0x2000;
        if let Some(p) = dev.get(off, 256)?.and_then(|sb| md1(&sb, off, 0)) {
            return Ok(Some(Hit::Known(p)));
        }
    }
    for (off, minor) in [(0u64, 1u32), (0x1000, 2)] {
        if let Some(p) = dev.get(off, 256)?.and_then(|sb| md1(&sb, off, minor)) {
            return Ok(Some(Hit::Known(p)));
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
    fn ext2_plus(add: impl FnOnce(&mut Vec<u8>)) -> Option<Probe> {
        let mut img = vec![0u8; 4 << 20];
        img[1024..2048].copy_from_slice(&ext_superblock());
        add(&mut img);
        probe(&mut Cursor::new(&img), img.len() as u64).unwrap()
    }

    #[test]
    fn md_metadata_wins_over_the_filesystem_it_holds() {
        // 0.90 at the end, either byte order.
        for be in [false, true] {
            let p = ext2_plus(|img| {
                let off = img.len() - 0x10000;
                let word = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
                img[off..off + 4].copy_from_slice(&word(MD_SB_MAGIC));
                img[off + 8..off + 12].copy_from_slice(&word(90));
                img[off + 20..off + 24].copy_from_slice(&[1, 2, 3, 4]);
                img[off + 32..off + 36].copy_from_slice(&word(1024));
            })
            .unwrap();
            assert_eq!(p.fstype, FsType::LinuxRaidMember);
            assert_eq!(p.usage, Usage::Raid);
            assert_eq!(p.version.as_deref(), Some("0.90.0"));
            let first = if be { "01020304" } else { "04030201" };
            assert_eq!(
                p.uuid.unwrap(),
                format!("{first}-0000-0000-0000-000000000000")
            );
        }
        // 1.0 at the end (8 KiB before it) and 1.2 at 4 KiB, with a name and a member UUID.
        for (at_end, version) in [(true, "1.0"), (false, "1.2")] {
            let p = ext2_plus(|img| {
                let off = if at_end { img.len() - 0x2000 } else { 0x1000 };
                img[off..off + 4].copy_from_slice(&MD_SB_MAGIC.to_le_bytes());
                img[off + 4..off + 8].copy_from_slice(&1u32.to_le_bytes());
                img[off + 16..off + 32].copy_from_slice(&[0xab; 16]);
                img[off + 32..off + 40].copy_from_slice(b"guest:0\0");
                img[off + 144..off + 152].copy_from_slice(&(off as u64 >> 9).to_le_bytes());
                img[off + 168..off + 184].copy_from_slice(&[0xcd; 16]);
            })
            .unwrap();
            assert_eq!(p.fstype, FsType::LinuxRaidMember);
            assert_eq!(p.version.as_deref(), Some(version));
            assert_eq!(p.label.as_deref(), Some("guest:0"));
            assert_eq!(
                p.uuid.as_deref(),
                Some("abababab-abab-abab-abab-abababababab")
            );
            assert_eq!(
                p.uuid_sub.as_deref(),
                Some("cdcdcdcd-cdcd-cdcd-cdcd-cdcdcdcdcdcd")
            );
        }
        // A 1.x superblock that is not where it says is ignored.
        let p = ext2_plus(|img| {
            img[0x1000..0x1004].copy_from_slice(&MD_SB_MAGIC.to_le_bytes());
            img[0x1004] = 1;
        });
        assert_eq!(p.map(|p| p.fstype), Some(FsType::Ext2));
    }
}
