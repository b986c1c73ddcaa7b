//! ext2, ext3, ext4, ext4dev and external ext3/4 journals (jbd): one superblock, read with
//! [`crate::ext::Superblock`], told apart by its feature flags exactly as blkid's five
//! probers do (`libblkid/src/superblocks/ext.c`).
//!
//! The five run one after the other, so a superblock that two of them accept (a test-flagged
//! ext2 or ext3, which is both ext4dev and ext2/ext3) is ambivalent, as it is in blkid.

use std::io;

use super::{csum, le16, le32, slice, uuid16, Dev, Hit, Probe, Usage};
use crate::ext::{Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::fstype::FsType;

const MAGIC: &[u8] = &[0x53, 0xEF];
const MAGIC_OFF: u64 = 0x38;
const FLAGS_OFF: usize = 0x160;
const CHECKSUM_OFF: usize = 0x3FC;

const FLAG_TEST_FILESYS: u32 = 0x0004;
const COMPAT_HAS_JOURNAL: u32 = 0x0004;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;

const EXT2_RO_COMPAT_SUPP: u32 = 0x0001 | 0x0002 | 0x0004;
const EXT2_INCOMPAT_SUPP: u32 = 0x0002 | 0x0010;
const EXT3_RO_COMPAT_SUPP: u32 = EXT2_RO_COMPAT_SUPP;
const EXT3_INCOMPAT_SUPP: u32 = 0x0002 | 0x0004 | 0x0010;

/// One of blkid's five ext probers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variant {
    Ext4dev,
    Ext4,
    Ext3,
    Ext2,
    Jbd,
}

impl Variant {
    fn fstype(self) -> FsType {
        match self {
            Variant::Ext4dev => FsType::Ext4dev,
            Variant::Ext4 => FsType::Ext4,
            Variant::Ext3 => FsType::Ext3,
            Variant::Ext2 => FsType::Ext2,
            Variant::Jbd => FsType::Jbd,
        }
    }

    /// Whether this prober accepts a superblock with these flags and feature words.
    fn accepts(self, flags: u32, fc: u32, fi: u32, frc: u32) -> bool {
        let test_fs = flags & FLAG_TEST_FILESYS != 0;
        let journal_dev = fi & INCOMPAT_JOURNAL_DEV != 0;
        let has_journal = fc & COMPAT_HAS_JOURNAL != 0;
        let beyond_ext3 = frc & !EXT3_RO_COMPAT_SUPP != 0 || fi & !EXT3_INCOMPAT_SUPP != 0;
        let beyond_ext2 = frc & !EXT2_RO_COMPAT_SUPP != 0 || fi & !EXT2_INCOMPAT_SUPP != 0;
        match self {
            Variant::Ext4dev => !journal_dev && test_fs,
            Variant::Ext4 => !journal_dev && beyond_ext3 && !test_fs,
            Variant::Ext3 => has_journal && !beyond_ext3,
            Variant::Ext2 => !has_journal && !beyond_ext2,
            Variant::Jbd => journal_dev,
        }
    }
}

/// blkid's `ext_get_super`: the superblock, if its checksum (when it has one) is right.
/// `sb` is the [`SUPERBLOCK_SIZE`] bytes at [`SUPERBLOCK_OFFSET`].
fn checked_super(sb: &[u8]) -> Option<Superblock> {
    let parsed = Superblock::parse(sb).ok()?;
    if parsed.feature_ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
        let covered = slice(sb, 0, CHECKSUM_OFF)?;
        if csum::crc32c(!0, covered) != le32(sb, CHECKSUM_OFF)? {
            return None;
        }
    }
    Some(parsed)
}

/// What the `variant` prober reports for the superblock `sb`, if it accepts it.
pub(super) fn parse(sb: &[u8], variant: Variant) -> Option<Probe> {
    let parsed = checked_super(sb)?;
    let flags = le32(sb, FLAGS_OFF)?;
    if !variant.accepts(
        flags,
        parsed.feature_compat,
        parsed.feature_incompat,
        parsed.feature_ro_compat,
    ) {
        return None;
    }
    let rev_level = le32(sb, 0x4C)?;
    let minor_rev_level = le16(sb, 0x3E)?;
    Some(Probe {
        fstype: variant.fstype(),
        uuid: uuid16(slice(sb, 0x68, 16)?),
        label: parsed.label,
        usage: if variant == Variant::Jbd {
            Usage::Other
        } else {
            Usage::Filesystem
        },
        version: Some(format!("{rev_level}.{minor_rev_level}")),
        uuid_sub: None,
    })
}

fn run(dev: &mut Dev<'_>, variant: Variant) -> io::Result<Option<Hit>> {
    if !dev.has_magic(0, SUPERBLOCK_OFFSET >> 10, MAGIC_OFF, MAGIC)? {
        return Ok(None);
    }
    let Some(sb) = dev.get(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE)? else {
        return Ok(None);
    };
    Ok(parse(&sb, variant).map(Hit::Known))
}

/// blkid's `ext4dev` prober.
pub(super) fn probe_ext4dev(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    run(dev, Variant::Ext4dev)
}

/// blkid's `ext4` prober.
pub(super) fn probe_ext4(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    run(dev, Variant::Ext4)
}

/// blkid's `ext3` prober.
pub(super) fn probe_ext3(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    run(dev, Variant::Ext3)
}

/// blkid's `ext2` prober.
pub(super) fn probe_ext2(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    run(dev, Variant::Ext2)
}

/// blkid's `jbd` prober (external journal device).
pub(super) fn probe_jbd(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    run(dev, Variant::Jbd)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::probe;
    use std::io::Cursor;

    const ALL: [Variant; 5] = [
        Variant::Ext4dev,
        Variant::Ext4,
        Variant::Ext3,
        Variant::Ext2,
        Variant::Jbd,
    ];

    /// A minimal superblock: magic, revision 1.0, a UUID and a label.
    pub(crate) fn superblock() -> Vec<u8> {
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        sb[0x38..0x3A].copy_from_slice(MAGIC);
        sb[0x3A] = 1; // clean
        sb[0x4C] = 1; // rev_level
        sb[0x68..0x78].copy_from_slice(&[0x11; 16]);
        sb[0x78..0x7D].copy_from_slice(b"root ");
        sb
    }

    fn set32(sb: &mut [u8], off: usize, v: u32) {
        sb[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn accepted(sb: &[u8]) -> Vec<&'static str> {
        ALL.iter()
            .filter_map(|&v| parse(sb, v))
            .map(|p| p.fstype.as_str())
            .collect()
    }

    fn seal(sb: &mut [u8]) {
        let c = csum::crc32c(!0, &sb[..CHECKSUM_OFF]);
        set32(sb, CHECKSUM_OFF, c);
    }

    #[test]
    fn one_prober_per_feature_set() {
        let mut sb = superblock();
        assert_eq!(accepted(&sb), ["ext2"]);
        set32(&mut sb, 0x5C, COMPAT_HAS_JOURNAL);
        assert_eq!(accepted(&sb), ["ext3"]);
        set32(&mut sb, 0x60, 0x0002 | 0x0040); // filetype, extents
        assert_eq!(accepted(&sb), ["ext4"]);
        set32(&mut sb, FLAGS_OFF, FLAG_TEST_FILESYS);
        assert_eq!(accepted(&sb), ["ext4dev"]);
        set32(&mut sb, 0x60, INCOMPAT_JOURNAL_DEV);
        assert_eq!(accepted(&sb), ["jbd"]);
        // A test-flagged ext3 is both ext4dev and ext3: blkid calls that ambivalent.
        set32(&mut sb, 0x60, 0);
        assert_eq!(accepted(&sb), ["ext4dev", "ext3"]);
    }

    #[test]
    fn identity_fields() {
        let p = parse(&superblock(), Variant::Ext2).unwrap();
        assert_eq!(p.label.as_deref(), Some("root"));
        assert_eq!(
            p.uuid.as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(p.version.as_deref(), Some("1.0"));
        assert_eq!(p.usage, Usage::Filesystem);
        let mut sb = superblock();
        sb[0x68..0x78].fill(0);
        sb[0x78..0x88].fill(b' ');
        let p = parse(&sb, Variant::Ext2).unwrap();
        assert_eq!((p.uuid, p.label), (None, None));
        set32(&mut sb, 0x60, INCOMPAT_JOURNAL_DEV);
        assert_eq!(parse(&sb, Variant::Jbd).unwrap().usage, Usage::Other);
    }

    #[test]
    fn metadata_checksum_is_verified() {
        let mut sb = superblock();
        set32(&mut sb, 0x64, RO_COMPAT_METADATA_CSUM);
        assert_eq!(accepted(&sb), Vec::<&str>::new());
        seal(&mut sb);
        assert_eq!(accepted(&sb), ["ext4"]);
        sb[0x78] ^= 1;
        assert_eq!(accepted(&sb), Vec::<&str>::new());
    }

    #[test]
    fn short_or_foreign_buffers() {
        let sb = superblock();
        for v in ALL {
            assert_eq!(parse(&sb[..0x200], v), None);
            assert_eq!(parse(&[], v), None);
            assert_eq!(parse(&[0u8; 1024], v), None);
        }
    }

    #[test]
    fn whole_device() {
        let mut img = vec![0u8; 64 * 1024];
        img[1024..2048].copy_from_slice(&superblock());
        let p = probe(&mut Cursor::new(&img), img.len() as u64).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::Ext2));
        // The magic's KiB must be entirely on the device.
        assert_eq!(probe(&mut Cursor::new(&img), 2047).unwrap(), None);
        // Ambivalent: ext4dev and ext3 at once.
        set32(&mut img[1024..], 0x5C, COMPAT_HAS_JOURNAL);
        set32(&mut img[1024..], FLAGS_OFF, FLAG_TEST_FILESYS);
        assert_eq!(probe(&mut Cursor::new(&img), 2 << 20).unwrap(), None);
        // ... but on a tiny device the first prober wins.
        let p = probe(&mut Cursor::new(&img), img.len() as u64).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::Ext4dev));
    }
}
