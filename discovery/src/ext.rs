//! ext2/ext3/ext4 superblock: type, UUID, label, and the state a rescue cares about.

use crate::format_uuid;
use crate::fstype::FsType;

/// The superblock lives 1024 bytes into the filesystem and is 1024 bytes long.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const SUPERBLOCK_SIZE: usize = 1024;
const MAGIC: u16 = 0xEF53;

// s_state bits
const STATE_VALID: u16 = 0x0001;
const STATE_ERROR: u16 = 0x0002;

// feature bits
const COMPAT_HAS_JOURNAL: u32 = 0x0004;
const INCOMPAT_FILETYPE: u32 = 0x0002;
const INCOMPAT_RECOVER: u32 = 0x0004;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const INCOMPAT_META_BG: u32 = 0x0010;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
const FLAG_TEST_FILESYS: u32 = 0x0004;

/// Features an ext2/ext3 driver understands; anything beyond makes it ext4 (as blkid decides).
const EXT3_RO_COMPAT_SUPP: u32 =
    RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;
const EXT2_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_META_BG;
const EXT3_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;

/// Where a backup superblock is: the first block of block group 1, for one block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    /// Block number (in units of `block_size`), as `e2fsck -b` takes it.
    pub block: u64,
    pub block_size: u64,
}

impl Backup {
    pub fn offset(self) -> u64 {
        self.block * self.block_size
    }
}

/// The first backup superblock for every block size mkfs can choose (group 1 starts after
/// `8 * block_size` blocks, plus the boot block for 1 KiB blocks).
pub fn backup_candidates() -> impl Iterator<Item = Backup> {
    (10..=16).map(|log| {
        let block_size = 1u64 << log;
        let first_data_block = u64::from(block_size == 1024);
        Backup {
            block: 8 * block_size + first_data_block,
            block_size,
        }
    })
}

/// Whether `sb` (read at `at`) is the backup superblock it should be there: the magic, group 1,
/// and the block size `at` assumes.
pub fn is_backup(sb: &[u8], at: Backup) -> Option<Superblock> {
    let parsed = Superblock::parse(sb).ok()?;
    (le16(sb, 0x5A) == 1 && parsed.block_size == at.block_size && parsed.fstype != FsType::Jbd)
        .then_some(parsed)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtError {
    #[error("too short for an ext superblock ({0} bytes)")]
    Short(usize),
    #[error("no ext2/3/4 magic")]
    NoMagic,
}

/// Superblock state as a rescue sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Clean,
    /// ERROR_FS set: the kernel hit an error (journal abort, corruption) on this filesystem.
    Errors,
    /// Not cleanly unmounted, or the journal needs recovery.
    NotClean,
}

/// The fields of an ext superblock that discovery and repair use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// `ext2`, `ext3`, `ext4`, `ext4dev` or `jbd` (an external journal).
    pub fstype: FsType,
    pub uuid: String,
    /// The volume name as blkid reports it: up to the first NUL, trailing whitespace
    /// trimmed, `None` when empty (non-UTF-8 bytes become U+FFFD).
    pub label: Option<String>,
    pub state: State,
    pub error_count: u32,
    pub block_size: u64,
    pub blocks: u64,
    pub mount_count: u16,
    pub last_mount: u32,
    pub last_check: u32,
    /// Where it was last mounted (`s_last_mounted`: ext4 records the path on the first write
    /// after a mount), when that is an absolute path without `..`; guest data, never trusted
    /// beyond a hint.
    pub last_mounted: Option<String>,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// `s_last_mounted`: up to its first NUL, kept only as a plain absolute path.
fn last_mounted(raw: &[u8]) -> Option<String> {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let path = std::str::from_utf8(&raw[..len]).ok()?;
    let plain = path.starts_with('/')
        && path.len() > 1
        && !path.split('/').any(|c| c == ".." || c == ".")
        && path.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b'+' | b'@')
        });
    let path = path.trim_end_matches('/');
    (plain && !path.is_empty()).then(|| path.to_owned())
}

impl Superblock {
    /// Parses the 1024 bytes found at [`SUPERBLOCK_OFFSET`].
    pub fn parse(sb: &[u8]) -> Result<Superblock, ExtError> {
        if sb.len() < SUPERBLOCK_SIZE {
            return Err(ExtError::Short(sb.len()));
        }
        if le16(sb, 0x38) != MAGIC {
            return Err(ExtError::NoMagic);
        }
        let compat = le32(sb, 0x5C);
        let incompat = le32(sb, 0x60);
        let ro_compat = le32(sb, 0x64);
        let flags = le32(sb, 0x160);
        let fstype = if incompat & INCOMPAT_JOURNAL_DEV != 0 {
            FsType::Jbd
        } else if compat & COMPAT_HAS_JOURNAL == 0
            && ro_compat & !EXT3_RO_COMPAT_SUPP == 0
            && incompat & !EXT2_INCOMPAT_SUPP == 0
        {
            FsType::Ext2
        } else if compat & COMPAT_HAS_JOURNAL != 0
            && ro_compat & !EXT3_RO_COMPAT_SUPP == 0
            && incompat & !EXT3_INCOMPAT_SUPP == 0
        {
            FsType::Ext3
        } else if flags & FLAG_TEST_FILESYS != 0 {
            FsType::Ext4dev
        } else {
            FsType::Ext4
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[0x68..0x78]);
        // As blkid reads it: up to the first NUL, trailing whitespace trimmed, empty = none.
        let label_raw = &sb[0x78..0x88];
        let label_len = label_raw.iter().position(|&b| b == 0).unwrap_or(16);
        let label_len = label_raw[..label_len]
            .iter()
            .rposition(|&b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
            .map_or(0, |i| i + 1);
        let label =
            (label_len > 0).then(|| String::from_utf8_lossy(&label_raw[..label_len]).into_owned());
        let s_state = le16(sb, 0x3A);
        let state = if s_state & STATE_ERROR != 0 {
            State::Errors
        } else if s_state & STATE_VALID == 0 || incompat & INCOMPAT_RECOVER != 0 {
            State::NotClean
        } else {
            State::Clean
        };
        let log_block = le32(sb, 0x18).min(16);
        let blocks_hi = if incompat & 0x80 != 0 {
            le32(sb, 0x150) as u64
        } else {
            0
        };
        Ok(Superblock {
            fstype,
            uuid: format_uuid(&uuid),
            label,
            state,
            error_count: le32(sb, 0x194),
            block_size: 1024u64 << log_block,
            blocks: (blocks_hi << 32) | le32(sb, 0x04) as u64,
            mount_count: le16(sb, 0x34),
            last_mount: le32(sb, 0x2C),
            last_check: le32(sb, 0x40),
            last_mounted: last_mounted(&sb[0x88..0xC8]),
            feature_compat: compat,
            feature_incompat: incompat,
            feature_ro_compat: ro_compat,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Vec<u8> {
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        sb[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        sb[0x3A..0x3C].copy_from_slice(&STATE_VALID.to_le_bytes());
        sb[0x68..0x78].copy_from_slice(&[0xab; 16]);
        sb
    }

    fn set32(sb: &mut [u8], off: usize, v: u32) {
        sb[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn types_by_features() {
        let mut sb = blank();
        assert_eq!(Superblock::parse(&sb).unwrap().fstype, FsType::Ext2);
        set32(&mut sb, 0x5C, COMPAT_HAS_JOURNAL);
        assert_eq!(Superblock::parse(&sb).unwrap().fstype, FsType::Ext3);
        set32(&mut sb, 0x60, INCOMPAT_FILETYPE | 0x40 /* extents */);
        assert_eq!(Superblock::parse(&sb).unwrap().fstype, FsType::Ext4);
        set32(&mut sb, 0x60, INCOMPAT_JOURNAL_DEV);
        assert_eq!(Superblock::parse(&sb).unwrap().fstype, FsType::Jbd);
    }

    #[test]
    fn state_label_uuid() {
        let mut sb = blank();
        sb[0x78..0x7D].copy_from_slice(b"root\0");
        let p = Superblock::parse(&sb).unwrap();
        assert_eq!(p.state, State::Clean);
        assert_eq!(p.label.as_deref(), Some("root"));
        assert_eq!(p.uuid, "abababab-abab-abab-abab-abababababab");
        sb[0x3A] = 0x3; // valid + errors
        set32(&mut sb, 0x194, 4);
        let p = Superblock::parse(&sb).unwrap();
        assert_eq!((p.state, p.error_count), (State::Errors, 4));
        sb[0x3A] = 0;
        assert_eq!(Superblock::parse(&sb).unwrap().state, State::NotClean);
    }

    #[test]
    fn last_mounted_is_a_plain_absolute_path_or_nothing() {
        let mut sb = blank();
        assert_eq!(Superblock::parse(&sb).unwrap().last_mounted, None);
        for (raw, want) in [
            (&b"/home\0junk"[..], Some("/home")),
            (b"/srv/data/", Some("/srv/data")),
            (b"/", None),
            (b"home", None),
            (b"/../etc", None),
            (b"/a\nb", None),
            (&[b'/'; 64][..], None),
        ] {
            sb[0x88..0xC8].fill(0);
            sb[0x88..0x88 + raw.len()].copy_from_slice(raw);
            let got = Superblock::parse(&sb).unwrap().last_mounted;
            assert_eq!(got.as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn label_trimmed_like_blkid() {
        let mut sb = blank();
        sb[0x78..0x88].copy_from_slice(b"data \t  \0junk   ");
        assert_eq!(
            Superblock::parse(&sb).unwrap().label.as_deref(),
            Some("data")
        );
        sb[0x78..0x88].copy_from_slice(b"                ");
        assert_eq!(Superblock::parse(&sb).unwrap().label, None);
        sb[0x78..0x88].copy_from_slice(b" lead           ");
        assert_eq!(
            Superblock::parse(&sb).unwrap().label.as_deref(),
            Some(" lead")
        );
    }

    #[test]
    fn rejects_short_and_foreign() {
        assert_eq!(Superblock::parse(&[0u8; 10]), Err(ExtError::Short(10)));
        assert_eq!(Superblock::parse(&[0u8; 1024]), Err(ExtError::NoMagic));
        // Hostile values must not overflow the block size shift.
        let mut sb = blank();
        set32(&mut sb, 0x18, u32::MAX);
        assert!(Superblock::parse(&sb).is_ok());
    }
}
