//! What a disk image file is, read from its first bytes, and which format the rescue opens it
//! as.
//!
//! A disk's bytes are the guest's to write: a guest with a raw disk can write a qcow2 header
//! into its first sector that names any host file as its backing file (or external data file).
//! Opened as qcow2, that file's bytes would reach the rescue VM. So a detected qcow2 that names
//! another file is refused; it is followed only when the operator names the format.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::render;

/// Image formats the rescue attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// qcow2 header extension: the external data file's name.
const EXT_DATA_FILE: u32 = 0x4441_5441;
/// qcow2 incompatible feature bit: the guest data lives in an external file.
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// QEMU's limits: clusters of 512 B to 2 MiB, backing names of at most 1023 bytes.
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
const MAX_BACKING_NAME: u32 = 1023;
/// Bytes read at most: the first cluster holds the header, its extensions and the backing name.
pub const MAX_HEADER_READ: usize = 1 << MAX_CLUSTER_BITS;

/// What a qcow2 header says about other files and the disk's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Header {
    pub version: u32,
    pub virtual_size: u64,
    /// The backing file named in the header (raw bytes, guest-controlled).
    pub backing_file: Option<Vec<u8>>,
    /// The external data file, when the header says there is one (its name, when given).
    pub data_file: Option<Vec<u8>>,
}

/// What the first bytes of an image file are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    Raw,
    Qcow2(Qcow2Header),
}

/// Why a qcow2 header cannot be read (the image is refused, never guessed at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the qcow2 header is cut short ({0} bytes)")]
    Short(usize),
    #[error("qcow2 version {0} is not 2 or 3")]
    Version(u32),
    #[error("qcow2 cluster_bits {0} is outside 9..=21")]
    ClusterBits(u32),
    #[error("qcow2 header length {0} is invalid")]
    HeaderLength(u32),
    #[error("qcow2 backing file name ({size} bytes at offset {offset}) lies outside the first cluster or is too long")]
    BackingName { offset: u64, size: u32 },
    #[error("qcow2 header extension at offset {0} runs past the first cluster")]
    Extension(usize),
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads what an image's first bytes are (pure). `head` is the start of the file, at most the
/// first cluster; a header that points outside it is an error, never followed.
pub fn detect(head: &[u8]) -> Result<Detected, HeaderError> {
    if head.get(..4) != Some(QCOW2_MAGIC.as_slice()) {
        return Ok(Detected::Raw);
    }
    let short = || HeaderError::Short(head.len());
    let version = be32(head, 4).ok_or_else(short)?;
    if version != 2 && version != 3 {
        return Err(HeaderError::Version(version));
    }
    let backing_offset = be64(head, 8).ok_or_else(short)?;
    let backing_size = be32(head, 16).ok_or_else(short)?;
    let cluster_bits = be32(head, 20).ok_or_else(short)?;
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        return Err(HeaderError::ClusterBits(cluster_bits));
    }
    let cluster = 1usize << cluster_bits;
    let virtual_size = be64(head, 24).ok_or_else(short)?;
    let (incompatible, header_length) = if version == 3 {
        let incompat = be64(head, 72).ok_or_else(short)?;
        let len = be32(head, 100).ok_or_else(short)?;
        if !(104..=cluster as u32).contains(&len) {
            return Err(HeaderError::HeaderLength(len));
        }
        (incompat, len as usize)
    } else {
        (0, 72)
    };
    // Everything below must lie in the first cluster, which must be in `head`.
    let first = &head[..head.len().min(cluster)];
    let backing_file = if backing_offset == 0 || backing_size == 0 {
        None
    } else {
        let bad = HeaderError::BackingName {
            offset: backing_offset,
            size: backing_size,
        };
        if backing_size > MAX_BACKING_NAME {
            return Err(bad);
        }
        let start = usize::try_from(backing_offset).map_err(|_| bad.clone())?;
        let end = start
            .checked_add(backing_size as usize)
            .ok_or(bad.clone())?;
        Some(first.get(start..end).ok_or(bad)?.to_vec())
    };
    let mut data_file = (incompatible & INCOMPAT_DATA_FILE != 0).then(Vec::new);
    let mut at = header_length;
    loop {
        let (Some(kind), Some(len)) = (be32(first, at), be32(first, at + 4)) else {
            return Err(HeaderError::Extension(at));
        };
        if kind == 0 {
            break;
        }
        let body = at + 8;
        let end = body
            .checked_add(len as usize)
            .filter(|&e| e <= first.len())
            .ok_or(HeaderError::Extension(at))?;
        if kind == EXT_DATA_FILE {
            data_file = Some(first[body..end].to_vec());
        }
        // Extension bodies are padded to 8 bytes.
        at = body + (len as usize).div_ceil(8) * 8;
    }
    Ok(Detected::Qcow2(Qcow2Header {
        version,
        virtual_size,
        backing_file,
        data_file,
    }))
}

/// Why a disk image is not attached.
#[derive(Debug, thiserror::Error)]
pub enum DiskImageError {
    #[error("disk {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("disk {}: --format qcow2 was given but the file has no qcow2 header", path.display())]
    NotQcow2 { path: PathBuf },
    #[error("disk {}: {why}; pass --format raw to attach its bytes as they are", path.display())]
    Header { path: PathBuf, why: HeaderError },
    #[error(
        "disk {} looks like a qcow2 image whose header names the backing file \"{backing}\": not opened, \
         because a guest that writes a raw disk can forge such a header to read any host file; \
         if it really is a qcow2 overlay, pass --format qcow2 to follow its backing chain \
         (or --format raw to attach its bytes as they are)",
        path.display()
    )]
    BackingFile { path: PathBuf, backing: String },
    #[error(
        "disk {} looks like a qcow2 image with an external data file \"{data_file}\": not opened, \
         because a guest that writes a raw disk can forge such a header to read any host file; \
         if it really is such an image, pass --format qcow2 (or --format raw to attach its bytes \
         as they are)",
        path.display()
    )]
    DataFile { path: PathBuf, data_file: String },
}

/// A disk image the rescue may open, with the format to open it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub format: Format,
    /// The operator named the format: a qcow2's backing chain may be followed.
    pub format_named: bool,
    /// The size the guest sees.
    pub virtual_size: u64,
}

fn display_name(name: &[u8]) -> String {
    render::clean(&String::from_utf8_lossy(name))
}

/// Decides how to open `path`: `requested` is `--format` (`None` for auto). Auto never opens a
/// file other than `path`: a detected qcow2 that names a backing or data file is refused.
pub fn check(path: &Path, requested: Option<Format>) -> Result<Checked, DiskImageError> {
    let io = |source| DiskImageError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut head = Vec::new();
    (&mut f)
        .take(MAX_HEADER_READ as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let len = f.seek(SeekFrom::End(0)).map_err(io)?;
    let detected = detect(&head);
    let header_err = |why| DiskImageError::Header {
        path: path.to_owned(),
        why,
    };
    match (requested, detected) {
        (Some(Format::Raw), _) | (None, Ok(Detected::Raw)) => Ok(Checked {
            format: Format::Raw,
            format_named: requested.is_some(),
            virtual_size: len,
        }),
        (Some(Format::Qcow2), Ok(Detected::Qcow2(h))) => Ok(Checked {
            format: Format::Qcow2,
            format_named: true,
            virtual_size: h.virtual_size,
        }),
        (Some(Format::Qcow2), Ok(Detected::Raw)) => Err(DiskImageError::NotQcow2 {
            path: path.to_owned(),
        }),
        (_, Err(why)) => Err(header_err(why)),
        (None, Ok(Detected::Qcow2(h))) => {
            if let Some(b) = &h.backing_file {
                return Err(DiskImageError::BackingFile {
                    path: path.to_owned(),
                    backing: display_name(b),
                });
            }
            if let Some(d) = &h.data_file {
                return Err(DiskImageError::DataFile {
                    path: path.to_owned(),
                    data_file: display_name(d),
                });
            }
            Ok(Checked {
                format: Format::Qcow2,
                format_named: false,
                virtual_size: h.virtual_size,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A qcow2 header as QEMU writes it (version 3, 64 KiB clusters), optionally naming a
    /// backing file right after the header and an external data file extension.
    pub(crate) fn header(backing: Option<&str>, data_file: Option<&str>) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[..4].copy_from_slice(QCOW2_MAGIC);
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        h[96..100].copy_from_slice(&4u32.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        let mut at = 112;
        if let Some(d) = data_file {
            h[72..80].copy_from_slice(&INCOMPAT_DATA_FILE.to_be_bytes());
            h[at..at + 4].copy_from_slice(&EXT_DATA_FILE.to_be_bytes());
            h[at + 4..at + 8].copy_from_slice(&(d.len() as u32).to_be_bytes());
            h[at + 8..at + 8 + d.len()].copy_from_slice(d.as_bytes());
            at += 8 + d.len().div_ceil(8) * 8;
        }
        at += 8; // end-of-extensions marker (zeros)
        if let Some(b) = backing {
            h[8..16].copy_from_slice(&(at as u64).to_be_bytes());
            h[16..20].copy_from_slice(&(b.len() as u32).to_be_bytes());
            h[at..at + b.len()].copy_from_slice(b.as_bytes());
        }
        h
    }

    #[test]
    fn raw_bytes_are_raw() {
        assert_eq!(detect(b""), Ok(Detected::Raw));
        assert_eq!(detect(b"QF"), Ok(Detected::Raw));
        assert_eq!(detect(&[0u8; 512]), Ok(Detected::Raw));
    }

    #[test]
    fn reads_backing_and_data_file_names() {
        let Ok(Detected::Qcow2(h)) = detect(&header(Some("/etc/shadow"), None)) else {
            panic!("not qcow2");
        };
        assert_eq!(h.backing_file.as_deref(), Some(b"/etc/shadow".as_slice()));
        assert_eq!(h.data_file, None);
        assert_eq!(h.virtual_size, 1 << 30);
        let Ok(Detected::Qcow2(h)) = detect(&header(None, Some("/root/.ssh/id_rsa"))) else {
            panic!("not qcow2");
        };
        assert_eq!(h.backing_file, None);
        assert_eq!(
            h.data_file.as_deref(),
            Some(b"/root/.ssh/id_rsa".as_slice())
        );
        let Ok(Detected::Qcow2(h)) = detect(&header(None, None)) else {
            panic!("not qcow2");
        };
        assert_eq!((h.backing_file, h.data_file), (None, None));
    }

    #[test]
    fn data_file_bit_without_a_name_still_counts() {
        let mut h = header(None, None);
        h[72..80].copy_from_slice(&INCOMPAT_DATA_FILE.to_be_bytes());
        let Ok(Detected::Qcow2(q)) = detect(&h) else {
            panic!("not qcow2");
        };
        assert_eq!(q.data_file, Some(Vec::new()));
    }

    #[test]
    fn hostile_headers_are_errors_not_guesses() {
        let good = header(Some("x"), None);
        assert_eq!(detect(&good[..50]), Err(HeaderError::Short(50)));
        let mut v = good.clone();
        v[4..8].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(detect(&v), Err(HeaderError::Version(9)));
        let mut c = good.clone();
        c[20..24].copy_from_slice(&40u32.to_be_bytes());
        assert_eq!(detect(&c), Err(HeaderError::ClusterBits(40)));
        // A backing name beyond what was read, past the first cluster, or absurdly long.
        let mut b = good.clone();
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(detect(&b), Err(HeaderError::BackingName { .. })));
        let mut b = good.clone();
        b[16..20].copy_from_slice(&4000u32.to_be_bytes());
        assert!(matches!(detect(&b), Err(HeaderError::BackingName { .. })));
        // An extension whose length runs off the end.
        let mut e = header(None, None);
        e[112..116].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        e[116..120].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(detect(&e), Err(HeaderError::Extension(112)));
        // Extensions that never end inside the buffer.
        let mut e = header(None, None);
        for at in (112..e.len()).step_by(8) {
            e[at..at + 4].copy_from_slice(&1u32.to_be_bytes());
        }
        assert!(matches!(detect(&e), Err(HeaderError::Extension(_))));
        let mut l = header(None, None);
        l[100..104].copy_from_slice(&8u32.to_be_bytes());
        assert_eq!(detect(&l), Err(HeaderError::HeaderLength(8)));
    }

    #[test]
    fn auto_refuses_a_qcow2_that_names_another_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("guest.img");
        std::fs::write(&p, header(Some("/etc/shadow\x1b[2J"), None)).unwrap();
        let e = check(&p, None).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DiskImageError::BackingFile { .. }), "{msg}");
        assert!(
            msg.contains("/etc/shadow") && msg.contains("--format qcow2"),
            "{msg}"
        );
        assert!(!msg.contains('\x1b'), "guest bytes are escaped: {msg}");
        // Named formats are the operator's decision.
        assert_eq!(
            check(&p, Some(Format::Qcow2)).unwrap().format,
            Format::Qcow2
        );
        let raw = check(&p, Some(Format::Raw)).unwrap();
        assert_eq!((raw.format, raw.virtual_size), (Format::Raw, 4096));
        std::fs::write(&p, header(None, Some("/etc/shadow"))).unwrap();
        let e = check(&p, None).unwrap_err();
        assert!(matches!(e, DiskImageError::DataFile { .. }), "{e}");
    }

    #[test]
    fn auto_opens_plain_qcow2_and_raw() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q");
        std::fs::write(&p, header(None, None)).unwrap();
        let c = check(&p, None).unwrap();
        assert_eq!(
            c,
            Checked {
                format: Format::Qcow2,
                format_named: false,
                virtual_size: 1 << 30
            }
        );
        let r = d.path().join("r");
        std::fs::write(&r, [0u8; 1000]).unwrap();
        assert_eq!(check(&r, None).unwrap().format, Format::Raw);
        let e = check(&r, Some(Format::Qcow2)).unwrap_err().to_string();
        assert!(e.contains("no qcow2 header"), "{e}");
        let e = check(&d.path().join("missing"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
