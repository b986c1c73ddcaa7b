//! Filesystem and volume signatures, identified the way util-linux `blkid -p` (low-level
//! probing) does: the same TYPE, UUID, LABEL, USAGE, VERSION and UUID_SUB strings.
//!
//! [`probe`] knows ext2/ext3/ext4/ext4dev/jbd, xfs, btrfs, vfat, swap, LVM2_member,
//! crypto_LUKS and iso9660. For everything else it answers `None`, never a guess: a few
//! signatures that blkid ranks *before* these families (Linux MD RAID, BitLocker, UDF, swap
//! suspend images, LVM1, device-mapper verity/integrity/snapshot headers) are recognised only
//! so that they veto a filesystem found underneath them, as they do in blkid.
//!
//! The probers run in blkid's order and follow its `safeprobe` rules: a RAID or crypto
//! signature wins at once; two non-tolerant filesystem signatures on one device make the
//! answer ambivalent (`None`); on devices of 1440 KiB or less the first hit wins; devices of
//! 1024 bytes or less are never probed.
//!
//! Known differences from blkid (all of them answer `None` or stay silent, never wrong):
//! - Signatures of families this module does not probe (ntfs, zfs, jfs, exfat, firmware RAIDs
//!   and so on) are not seen, so a device carrying one of them *and* a supported filesystem
//!   is reported as the supported filesystem where blkid would call it ambivalent.
//! - Labels that are not valid UTF-8 are returned with U+FFFD replacement characters.
//! - The MD RAID check does not look for a partition table covering the superblock.
//! - Zoned block devices (zoned btrfs) are not handled.

use std::io::{self, Read, Seek};

use crate::fstype::FsType;

mod btrfs;
pub(crate) mod csum;
mod ext;
mod foreign;
mod iso9660;
mod luks;
pub mod lvm;
mod md;
mod swap;
mod vfat;
mod xfs;

/// What a signature is used for: blkid's USAGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A mountable filesystem (`filesystem`).
    Filesystem,
    /// An encrypted container (`crypto`).
    Crypto,
    /// A member of a RAID or volume manager (`raid`).
    Raid,
    /// Anything else blkid knows, such as swap or an external journal (`other`).
    Other,
}

impl Usage {
    /// The string blkid prints as USAGE.
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Filesystem => "filesystem",
            Usage::Crypto => "crypto",
            Usage::Raid => "raid",
            Usage::Other => "other",
        }
    }
}

/// One identified signature, with the values blkid reports for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// blkid's TYPE, e.g. `ext4`, `vfat`, `crypto_LUKS`.
    pub fstype: FsType,
    /// blkid's UUID, formatted as blkid prints it (not always an RFC 4122 UUID).
    pub uuid: Option<String>,
    /// blkid's LABEL (non-UTF-8 bytes are replaced by U+FFFD).
    pub label: Option<String>,
    /// blkid's USAGE.
    pub usage: Usage,
    /// blkid's VERSION, e.g. `FAT32`, `1.0`, `LVM2 001`.
    pub version: Option<String>,
    /// blkid's UUID_SUB (the btrfs device UUID).
    pub uuid_sub: Option<String>,
}

/// Identifies what starts at offset 0 of `dev`, a device or image of `size` bytes.
///
/// Returns `Ok(None)` when nothing known is there (or when blkid would find the answer
/// ambivalent); errors are the reader's I/O errors only.
pub fn probe<R: Read + Seek>(dev: &mut R, size: u64) -> io::Result<Option<Probe>> {
    probe_with_session_offset(dev, size, 0)
}

/// Like [`probe`], with blkid's `session_offset` hint: where the last session of a
/// multi-session optical image starts, in bytes. Only iso9660 (and the UDF check that can
/// overrule it) read from there, exactly as with `blkid -p --hint session_offset=N`.
pub fn probe_with_session_offset<R: Read + Seek>(
    dev: &mut R,
    size: u64,
    session_offset: u64,
) -> io::Result<Option<Probe>> {
    let mut dev = Dev {
        r: dev,
        size,
        session: session_offset,
    };
    safeprobe(&mut dev)
}

/// What one prober found.
pub(crate) enum Hit {
    /// A signature this module reports.
    Known(Probe),
    /// A signature blkid reports but this module does not (see [`foreign`]): it only vetoes.
    Foreign,
}

/// A prober: blkid's `struct blkid_idinfo`, reduced to what `safeprobe` uses.
struct IdInfo {
    /// blkid's USAGE for the signature: RAID and crypto end the search, RAID is not looked
    /// for on floppy-sized devices.
    usage: Usage,
    /// blkid's `BLKID_IDINFO_TOLERANT`: may share the device with another filesystem.
    tolerant: bool,
    /// Smallest device the prober is tried on.
    min_size: u64,
    /// The prober.
    run: fn(&mut Dev<'_>) -> io::Result<Option<Hit>>,
}

/// A non-tolerant prober without a minimum size.
const fn id(usage: Usage, run: fn(&mut Dev<'_>) -> io::Result<Option<Hit>>) -> IdInfo {
    IdInfo {
        usage,
        tolerant: false,
        min_size: 0,
        run,
    }
}

/// The probers, in blkid's order (`libblkid/src/superblocks/superblocks.c`), restricted to
/// the ones implemented here.
const IDINFOS: &[IdInfo] = &[
    id(Usage::Raid, md::probe),
    id(Usage::Raid, lvm::probe),
    id(Usage::Raid, foreign::lvm1),
    id(Usage::Other, foreign::snapcow),
    id(Usage::Crypto, foreign::verity),
    id(Usage::Crypto, foreign::integrity),
    id(Usage::Crypto, luks::probe),
    id(Usage::Crypto, foreign::bitlocker),
    id(Usage::Filesystem, vfat::probe),
    IdInfo {
        min_size: 10 * 4096,
        ..id(Usage::Other, foreign::swsuspend)
    },
    IdInfo {
        min_size: 10 * 4096,
        ..id(Usage::Other, swap::probe)
    },
    id(Usage::Filesystem, xfs::probe),
    id(Usage::Filesystem, ext::probe_ext4dev),
    id(Usage::Filesystem, ext::probe_ext4),
    id(Usage::Filesystem, ext::probe_ext3),
    id(Usage::Filesystem, ext::probe_ext2),
    id(Usage::Other, ext::probe_jbd),
    IdInfo {
        tolerant: true,
        ..id(Usage::Filesystem, foreign::udf)
    },
    IdInfo {
        tolerant: true,
        ..id(Usage::Filesystem, iso9660::probe)
    },
    IdInfo {
        min_size: 1024 * 1024,
        ..id(Usage::Filesystem, btrfs::probe)
    },
];

/// blkid's `superblocks_safeprobe` over [`IDINFOS`].
fn safeprobe(dev: &mut Dev<'_>) -> io::Result<Option<Probe>> {
    if dev.size <= 1024 {
        return Ok(None);
    }
    let tiny = dev.is_tiny();
    let mut first: Option<Hit> = None;
    let mut count = 0usize;
    let mut intolerant = 0usize;
    for info in IDINFOS {
        if info.min_size > dev.size || (info.usage == Usage::Raid && tiny) {
            continue;
        }
        let Some(hit) = (info.run)(dev)? else {
            continue;
        };
        if tiny && count == 0 {
            first = Some(hit);
            break;
        }
        count += 1;
        if matches!(info.usage, Usage::Raid | Usage::Crypto) {
            if count == 1 {
                first = Some(hit);
            }
            break;
        }
        if !info.tolerant {
            intolerant += 1;
        }
        if count == 1 {
            first = Some(hit);
        }
    }
    if count > 1 && intolerant > 0 {
        return Ok(None);
    }
    Ok(match first {
        Some(Hit::Known(p)) => Some(p),
        Some(Hit::Foreign) | None => None,
    })
}

/// Object-safe `Read + Seek`.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// Largest single read any prober makes; bigger areas are read in pieces.
pub(crate) const MAX_READ: usize = 64 * 1024;

/// The device being probed: bounded reads, with blkid's rule that an area not entirely
/// inside the device reads as nothing.
pub(crate) struct Dev<'a> {
    r: &'a mut dyn ReadSeek,
    size: u64,
    /// blkid's `session_offset` hint.
    session: u64,
}

impl Dev<'_> {
    /// Size of the device in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// blkid's "session_offset" hint (0 without one).
    pub(crate) fn session_offset(&self) -> u64 {
        self.session
    }

    /// blkid's `BLKID_FL_TINY_DEV`: floppy-sized devices.
    pub(crate) fn is_tiny(&self) -> bool {
        self.size <= 1440 * 1024
    }

    /// Whether `len` bytes at `off` lie entirely within the device.
    pub(crate) fn fits(&self, off: u64, len: u64) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.size)
    }

    /// blkid's `blkid_probe_get_buffer`: `len` bytes at `off`, or `None` when the area is
    /// empty, not entirely on the device, larger than [`MAX_READ`], or the reader ends early.
    pub(crate) fn get(&mut self, off: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        if len == 0 || len > MAX_READ || !self.fits(off, len as u64) {
            return Ok(None);
        }
        let buf = crate::read_at(&mut self.r, off, len)?;
        Ok((buf.len() == len).then_some(buf))
    }

    /// One entry of blkid's `blkid_probe_get_idmag`: whether `magic` is at `sboff` bytes into
    /// the superblock that starts `kboff` KiB after `hint`. As in blkid, the whole KiB holding
    /// the magic must be on the device.
    pub(crate) fn has_magic(
        &mut self,
        hint: u64,
        kboff: u64,
        sboff: u64,
        magic: &[u8],
    ) -> io::Result<bool> {
        let Some(off) = kboff
            .checked_add(sboff >> 10)
            .and_then(|kb| kb.checked_mul(1024))
            .and_then(|o| o.checked_add(hint))
        else {
            return Ok(false);
        };
        let Some(block) = self.get(off, 1024)? else {
            return Ok(false);
        };
        let at = (sboff & 0x3ff) as usize;
        Ok(slice(&block, at, magic.len()) == Some(magic))
    }
}

/// `len` bytes of `b` at `off`, if they are all there.
pub(crate) fn slice(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// `N` bytes of `b` at `off` as an array.
pub(crate) fn arr<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    slice(b, off, N)?.try_into().ok()
}

/// The byte at `off`.
pub(crate) fn byte(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

/// Little-endian u16 at `off`.
pub(crate) fn le16(b: &[u8], off: usize) -> Option<u16> {
    arr(b, off).map(u16::from_le_bytes)
}

/// Little-endian u32 at `off`.
pub(crate) fn le32(b: &[u8], off: usize) -> Option<u32> {
    arr(b, off).map(u32::from_le_bytes)
}

/// Little-endian u64 at `off`.
pub(crate) fn le64(b: &[u8], off: usize) -> Option<u64> {
    arr(b, off).map(u64::from_le_bytes)
}

/// Big-endian u16 at `off`.
pub(crate) fn be16(b: &[u8], off: usize) -> Option<u16> {
    arr(b, off).map(u16::from_be_bytes)
}

/// Big-endian u32 at `off`.
pub(crate) fn be32(b: &[u8], off: usize) -> Option<u32> {
    arr(b, off).map(u32::from_be_bytes)
}

/// Big-endian u64 at `off`.
pub(crate) fn be64(b: &[u8], off: usize) -> Option<u64> {
    arr(b, off).map(u64::from_be_bytes)
}

/// C `isspace` in the C locale.
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The C string at the start of `raw`: everything before the first NUL.
pub(crate) fn c_str(raw: &[u8]) -> &[u8] {
    raw.split(|&b| b == 0).next().unwrap_or_default()
}

/// `s` without trailing C whitespace (blkid's `blkid_rtrim_whitespace`).
pub(crate) fn rtrim(s: &[u8]) -> &[u8] {
    let keep = s.iter().rposition(|&b| !is_c_space(b)).map_or(0, |i| i + 1);
    s.get(..keep).unwrap_or_default()
}

/// blkid's `blkid_probe_set_label` (and `blkid_probe_strncpy_uuid`): the C string in `raw`,
/// trailing whitespace trimmed; empty means none.
pub(crate) fn label(raw: &[u8]) -> Option<String> {
    let s = rtrim(c_str(raw));
    (!s.is_empty()).then(|| String::from_utf8_lossy(s).into_owned())
}

/// blkid's `blkid_probe_set_uuid`: a 16-byte binary UUID, unless it is all zeros.
pub(crate) fn uuid16(raw: &[u8]) -> Option<String> {
    let b: [u8; 16] = raw.try_into().ok()?;
    (b != [0; 16]).then(|| crate::format_uuid(&b))
}

/// util-linux's `ul_encode_to_utf8(UL_ENCODE_UTF16BE, ...)`: UTF-16BE to UTF-8 bytes, stopping
/// at U+0000. Unpaired surrogates are encoded as is, like util-linux does.
pub(crate) fn utf16be_to_utf8(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len().saturating_mul(3) / 2);
    let unit = |i: usize| be16(src, i).map(u32::from);
    let mut i = 0;
    while let Some(mut c) = unit(i) {
        i += 2;
        if (0xD800..=0xDBFF).contains(&c) {
            if let Some(c2) = unit(i).filter(|c2| (0xDC00..=0xDFFF).contains(c2)) {
                c = 0x10000 + ((c - 0xD800) << 10) + (c2 - 0xDC00);
                i += 2;
            }
        }
        if c == 0 {
            break;
        }
        // The casts keep the low bits on purpose: this is UTF-8 encoding by hand.
        if c < 0x80 {
            out.push(c as u8);
        } else if c < 0x800 {
            out.extend([0xc0 | (c >> 6) as u8, 0x80 | (c & 0x3f) as u8]);
        } else if c < 0x10000 {
            out.extend([
                0xe0 | (c >> 12) as u8,
                0x80 | ((c >> 6) & 0x3f) as u8,
                0x80 | (c & 0x3f) as u8,
            ]);
        } else {
            out.extend([
                0xf0 | (c >> 18) as u8,
                0x80 | ((c >> 12) & 0x3f) as u8,
                0x80 | ((c >> 6) & 0x3f) as u8,
                0x80 | (c & 0x3f) as u8,
            ]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn tiny_and_empty_devices_are_unknown() {
        for len in [0usize, 1, 512, 1024] {
            let mut c = Cursor::new(vec![0xffu8; len]);
            assert_eq!(probe(&mut c, len as u64).unwrap(), None, "len {len}");
        }
        let mut c = Cursor::new(vec![0u8; 1 << 20]);
        assert_eq!(probe(&mut c, 1 << 20).unwrap(), None);
    }

    #[test]
    fn claimed_size_larger_than_reader_is_harmless() {
        let mut c = Cursor::new(vec![0u8; 4096]);
        assert_eq!(probe(&mut c, u64::MAX).unwrap(), None);
        assert_eq!(
            probe_with_session_offset(&mut c, u64::MAX, u64::MAX).unwrap(),
            None
        );
    }

    #[test]
    fn filesystems_sharing_a_device() {
        let mut img = crate::probe::iso9660::tests::image("DISC", None);
        img.resize(4 << 20, 0);
        img[1024..2048].copy_from_slice(&crate::probe::ext::tests::superblock());
        // iso9660 is tolerant, ext2 is not: still two filesystems, so ambivalent ...
        assert_eq!(probe(&mut Cursor::new(&img), 4 << 20).unwrap(), None);
        // ... except on a floppy-sized device, where the first one found wins.
        let p = probe(&mut Cursor::new(&img), 1 << 20).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::Ext2));
        // A crypto signature ends the search before any filesystem is looked at.
        img[..512].copy_from_slice(&crate::probe::luks::tests::header(1, 0)[..512]);
        let p = probe(&mut Cursor::new(&img), 4 << 20).unwrap();
        assert_eq!(p.map(|p| p.fstype), Some(FsType::CryptoLuks));
    }

    #[test]
    fn dev_reads_are_bounded() {
        let mut data = Cursor::new(vec![7u8; 4096]);
        let mut dev = Dev {
            r: &mut data,
            size: 4096,
            session: 0,
        };
        assert_eq!(dev.get(4000, 96).unwrap(), Some(vec![7u8; 96]));
        assert_eq!(dev.get(4000, 97).unwrap(), None);
        assert_eq!(dev.get(u64::MAX, 2).unwrap(), None);
        assert_eq!(dev.get(0, 0).unwrap(), None);
        assert_eq!(dev.get(0, MAX_READ + 1).unwrap(), None);
        assert!(!dev.has_magic(u64::MAX, 1, 0, b"x").unwrap());
        assert!(dev.has_magic(0, 3, 0x3ff, &[7]).unwrap());
        assert!(!dev.has_magic(0, 4, 0, &[7]).unwrap());
        // The device claims more than the reader has.
        dev.size = 10_000;
        assert_eq!(dev.get(4000, 200).unwrap(), None);
    }

    #[test]
    fn label_rules() {
        assert_eq!(label(b"abc  \t\0zz").as_deref(), Some("abc"));
        assert_eq!(label(b"  a b ").as_deref(), Some("  a b"));
        assert_eq!(label(b"   "), None);
        assert_eq!(label(b"\0abc"), None);
        assert_eq!(label(b""), None);
        assert_eq!(label(&[0xe5, 0xe5]).as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(uuid16(&[0; 16]), None);
        assert_eq!(uuid16(&[1; 15]), None);
        assert_eq!(
            uuid16(&[0xab; 16]).as_deref(),
            Some("abababab-abab-abab-abab-abababababab")
        );
    }

    #[test]
    fn utf16_decoding() {
        let enc = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_be_bytes).collect() };
        for s in ["", "abc", "Naïve", "Новый том", "😀x"] {
            assert_eq!(utf16be_to_utf8(&enc(s)), s.as_bytes());
        }
        let mut nul = enc("ab");
        nul.extend([0, 0, 0, b'c']);
        assert_eq!(utf16be_to_utf8(&nul), b"ab");
        // A lone high surrogate, an odd trailing byte.
        assert_eq!(utf16be_to_utf8(&[0xd8, 0x00, 0x00]), vec![0xed, 0xa0, 0x80]);
    }

    #[test]
    fn integer_helpers_never_panic() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 1), Some(0x0302));
        assert_eq!(be16(&b, 1), Some(0x0203));
        assert_eq!(le32(&b, 0), None);
        assert_eq!(le64(&b, usize::MAX), None);
        assert_eq!(be32(&b, usize::MAX - 1), None);
        assert_eq!(be64(&b, 0), None);
        assert_eq!(byte(&b, 3), None);
        assert_eq!(rtrim(b" \n"), b"");
        assert_eq!(c_str(b"\0"), b"");
    }
}
