//! The late archive (`paths::LATE_ARCHIVE`): what the rescue needs only for some filesystems
//! (the XFS, btrfs and FAT checkers, their libraries, the XFS module), kept packed in the
//! initramfs and unpacked into the root the first time one of them is needed. A rescue of ext4
//! alone never unpacks it, and so boots in less guest memory.
//!
//! It comes inside the initramfs (Debian's kernel on the media), or, beside a core initramfs,
//! on a read-only disk the host attaches with the serial `paths::LATE_SERIAL` (`rescue --disk`,
//! libvirt kernel boots) or as the file `paths::LATE_MEDIUM_FILE` on the rescue medium the VM
//! booted from (the ISO as a cdrom or a disk, the disk image), found by its marker sector.
//! Either is taken only when its bytes match the checksum and length the core names
//! (`paths::LATE_SUM`): a guest disk cannot pass for it.
//!
//! [`read_newc`] reads the archive (pure over any reader): regular files and symlinks under
//! relative paths without `..`; anything else is refused. [`ensure`] unpacks it once (and
//! deletes an initramfs copy: its pages are the memory it frees).

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::medium;
use vmrescue_protocol::paths;

use crate::inspect::MountedTree;

/// One member of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// Largest member accepted (the archive is ours, but a bound keeps a corrupt one harmless).
const MAX_MEMBER: u64 = 64 << 20;

/// Why the late archive could not be read or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum LateError {
    #[error("the archive ends early{}: {source}", at.as_ref().map(|n| format!(" in {n}")).unwrap_or_default())]
    Truncated {
        at: Option<String>,
        source: std::io::Error,
    },
    #[error("not a newc archive (magic 070701)")]
    NotNewc,
    #[error("header field {0:?} is not hexadecimal")]
    BadField(String),
    #[error("a member's sizes are out of bounds (name {name}, data {data})")]
    OutOfBounds { name: u64, data: u64 },
    #[error("member path {0:?} leaves the root")]
    LeavesRoot(String),
    #[error("{0}: the link target is not UTF-8")]
    LinkTarget(String),
    #[error("{name}: member type {kind:o} is not a file or link")]
    NotAFile { name: String, kind: u32 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a late archive of {0} bytes is too large")]
    TooLarge(usize),
    #[error("reading {len} bytes: {source}")]
    Read { len: usize, source: std::io::Error },
    #[error("its checksum is {got}, not {want}")]
    Checksum { got: String, want: String },
    #[error("{} is not HEX LEN", paths::LATE_SUM)]
    BadSum,
    #[error(
        "no disk with the serial {} is attached (the host attaches the image's late.img) and no rescue medium is",
        paths::LATE_SERIAL
    )]
    NoDisk,
    #[error("the rescue medium has no late archive: {0}")]
    NotOnMedium(String),
    #[error("{dev}: {source}")]
    OnDisk { dev: String, source: Box<LateError> },
}

impl LateError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LateError + '_ {
        move |source| LateError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn truncated(at: Option<&str>) -> impl FnOnce(std::io::Error) -> LateError + '_ {
        move |source| LateError::Truncated {
            at: at.map(str::to_owned),
            source,
        }
    }
}

fn hex(field: &[u8]) -> Result<u64, LateError> {
    let s = String::from_utf8_lossy(field);
    u64::from_str_radix(&s, 16).map_err(|_| LateError::BadField(s.into_owned()))
}

fn skip_pad(r: &mut impl Read, len: u64) -> Result<(), LateError> {
    let pad = (4 - len % 4) % 4;
    let mut b = [0u8; 3];
    r.read_exact(&mut b[..pad as usize])
        .map_err(LateError::truncated(None))
}

fn safe(path: &str) -> Result<String, LateError> {
    let p = Path::new(path.trim_start_matches('/'));
    if path.is_empty()
        || !p
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(LateError::LeavesRoot(path.to_owned()));
    }
    Ok(p.to_string_lossy().into_owned())
}

/// Reads a newc ("070701") archive, calling `each` per member until the trailer.
pub fn read_newc(
    r: &mut impl Read,
    each: &mut dyn FnMut(Member) -> Result<(), LateError>,
) -> Result<usize, LateError> {
    let mut count = 0;
    loop {
        let mut h = [0u8; 110];
        r.read_exact(&mut h).map_err(LateError::truncated(None))?;
        if &h[..6] != b"070701" {
            return Err(LateError::NotNewc);
        }
        let field = |i: usize| hex(&h[6 + i * 8..6 + (i + 1) * 8]);
        let mode = field(1)? as u32;
        let filesize = field(6)?;
        let namesize = field(11)?;
        if namesize == 0 || namesize > 4096 || filesize > MAX_MEMBER {
            return Err(LateError::OutOfBounds {
                name: namesize,
                data: filesize,
            });
        }
        let mut name = vec![0u8; namesize as usize];
        r.read_exact(&mut name)
            .map_err(LateError::truncated(None))?;
        skip_pad(r, 110 + namesize)?;
        let name = String::from_utf8_lossy(&name[..name.len() - 1]).into_owned();
        let mut data = vec![0u8; filesize as usize];
        r.read_exact(&mut data)
            .map_err(LateError::truncated(Some(&name)))?;
        skip_pad(r, filesize)?;
        if name == "TRAILER!!!" {
            return Ok(count);
        }
        let path = safe(&name)?;
        let member = match mode & 0o170000 {
            0o100000 => Member::File {
                path,
                mode: mode & 0o7777,
                data,
            },
            0o120000 => Member::Symlink {
                path,
                target: String::from_utf8(data).map_err(|_| LateError::LinkTarget(name.clone()))?,
            },
            kind => return Err(LateError::NotAFile { name, kind }),
        };
        each(member)?;
        count += 1;
    }
}

/// Writes `m` under `root`, its directories made as needed; an existing file is replaced.
fn place(root: &Path, m: Member) -> Result<(), LateError> {
    use std::os::unix::fs::PermissionsExt;
    let rel = match &m {
        Member::File { path, .. } | Member::Symlink { path, .. } => path,
    };
    let dest: PathBuf = root.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(LateError::io(parent))?;
    }
    let _ = std::fs::remove_file(&dest);
    match m {
        Member::File { mode, data, .. } => std::fs::write(&dest, &data)
            .and_then(|_| std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))),
        Member::Symlink { target, .. } => std::os::unix::fs::symlink(&target, &dest),
    }
    .map_err(LateError::io(&dest))
}

/// Unpacks the gzip newc archive `archive` under `root`; returns the members written.
pub fn unpack(archive: &Path, root: &Path) -> Result<usize, LateError> {
    let f = std::fs::File::open(archive).map_err(LateError::io(archive))?;
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    read_newc(&mut gz, &mut |m| place(root, m))
}

/// `HEX LEN` of `paths::LATE_SUM` (pure).
pub fn parse_sum(text: &str) -> Option<(String, usize)> {
    let mut w = text.split_whitespace();
    let hex = w.next()?;
    let len = w.next()?.parse().ok()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && w.next().is_none())
        .then(|| (hex.to_ascii_lowercase(), len))
}

/// The first `len` bytes of `dev` when they hash to `sha256` (pure but for the read).
pub fn read_verified(dev: &mut impl Read, sha256: &str, len: usize) -> Result<Vec<u8>, LateError> {
    if len as u64 > MAX_MEMBER {
        return Err(LateError::TooLarge(len));
    }
    let mut data = vec![0u8; len];
    dev.read_exact(&mut data)
        .map_err(|source| LateError::Read { len, source })?;
    let got = vmrescue_protocol::digest::sha256_hex(&data);
    if got != sha256 {
        return Err(LateError::Checksum {
            got,
            want: sha256.to_owned(),
        });
    }
    Ok(data)
}

/// The block device with the serial `paths::LATE_SERIAL`, under a sysfs root.
pub fn late_device(sys: &Path) -> Option<String> {
    let dir = std::fs::read_dir(sys.join("block")).ok()?;
    let mut names: Vec<String> = dir
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("serial"))
                .is_ok_and(|s| s.trim() == paths::LATE_SERIAL)
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Where a core initramfs's late archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The host's disk with the serial `paths::LATE_SERIAL` (its bytes, padded).
    Disk(String),
    /// The devices carrying the rescue-medium marker (a guest disk may carry a copy of it): the
    /// file is on one's filesystem.
    Media(Vec<String>),
}

/// Whole block devices (cdroms included) whose marker sector says they are a rescue medium,
/// under a sysfs root; their nodes are read under `dev`.
pub fn media(sys: &Path, dev: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(sys.join("block")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric()))
        .filter(|n| {
            !["loop", "ram", "zram", "dm-", "md", "nbd"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .filter(|n| {
            let mut sector = [0u8; medium::SIZE];
            std::fs::File::open(dev.join(n))
                .and_then(|mut f| {
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(medium::OFFSET))?;
                    f.read_exact(&mut sector)
                })
                .is_ok_and(|()| medium::detect(&sector).is_some())
        })
        .collect();
    names.sort();
    names
}

/// The first source there, waiting for it at most [`DISK_WAIT`] (needed early, the disk may
/// still be probing).
fn find_source() -> Option<Source> {
    let until = std::time::Instant::now() + DISK_WAIT;
    loop {
        if let Some(n) = late_device(Path::new("/sys")) {
            return Some(Source::Disk(n));
        }
        let found = media(Path::new("/sys"), Path::new("/dev"));
        if !found.is_empty() {
            return Some(Source::Media(found));
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The late archive file on the medium `name`: its filesystem (ISO 9660 on the whole device)
/// or its first partition's (FAT, the disk image), mounted read-only.
fn from_medium(name: &str, len: usize) -> Result<Vec<u8>, LateError> {
    use vmrescue_discovery::osroot::Tree;
    let mut tried = Vec::new();
    let first_partition = std::fs::read_dir(Path::new("/sys/block").join(name))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("partition").exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .min_by_key(|p| (p.len(), p.clone()));
    let volumes = [(name.to_owned(), FsType::Iso9660, "iso9660")]
        .into_iter()
        .chain(first_partition.map(|p| (p, FsType::Vfat, "vfat")));
    for (volume, fstype, driver) in volumes {
        let dev = format!("/dev/{volume}");
        match MountedTree::mount_plain(&dev, fstype, driver, "rescue-medium") {
            Ok(tree) => {
                let data = tree.read(paths::LATE_MEDIUM_FILE, len.max(1));
                let _ = tree.unmount();
                match data {
                    Some(d) => return Ok(d),
                    None => tried.push(format!("{dev} ({driver}): no {}", paths::LATE_MEDIUM_FILE)),
                }
            }
            Err(e) => tried.push(format!("{dev}: {e}")),
        }
    }
    Err(LateError::NotOnMedium(tried.join("; ")))
}

/// The late archive from the host's disk or the rescue medium, checked against the core's
/// `paths::LATE_SUM`.
fn from_disk(root: &Path) -> Result<(usize, String), LateError> {
    let sum = std::fs::read_to_string(paths::LATE_SUM)
        .map_err(LateError::io(Path::new(paths::LATE_SUM)))?;
    let (sha, len) = parse_sum(&sum).ok_or(LateError::BadSum)?;
    let (dev, what, data) = match find_source().ok_or(LateError::NoDisk)? {
        Source::Disk(name) => {
            let dev = format!("/dev/{name}");
            let data = std::fs::File::open(&dev)
                .map_err(LateError::io(Path::new(&dev)))
                .and_then(|mut f| read_verified(&mut f, &sha, len));
            (dev, "the host's late disk", data)
        }
        Source::Media(names) => {
            // The first whose file verifies: a marked guest disk is passed over.
            let mut last = (String::new(), Err(LateError::NoDisk));
            for name in names {
                let data = from_medium(&name, len)
                    .and_then(|d| read_verified(&mut d.as_slice(), &sha, len));
                let ok = data.is_ok();
                last = (format!("/dev/{name}"), data);
                if ok {
                    break;
                }
            }
            (last.0, "the rescue medium", last.1)
        }
    };
    let on_disk = |source: LateError| LateError::OnDisk {
        dev: dev.clone(),
        source: Box::new(source),
    };
    let data = data.map_err(on_disk)?;
    let mut gz = flate2::read::GzDecoder::new(data.as_slice());
    let n = read_newc(&mut gz, &mut |m| place(root, m)).map_err(on_disk)?;
    Ok((n, format!("{what} {dev}")))
}

/// Whether it is unpacked (or there is nothing to unpack), and how many attempts failed.
static STATE: Mutex<(bool, u32)> = Mutex::new((false, 0));
/// Attempts before giving up (each may wait [`DISK_WAIT`]).
const TRIES: u32 = 2;
/// How long the late disk may take to show up.
const DISK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Unpacks the late archive into `/` the first time it is called (later calls do nothing; a
/// failed attempt is tried again at the next, [`TRIES`] times in all), then removes an
/// initramfs copy. Returns a warning when it could not.
pub fn ensure() -> Option<String> {
    let Ok(mut state) = STATE.lock() else {
        return None;
    };
    if state.0 || state.1 >= TRIES {
        return None;
    }
    state.0 = true;
    let archive = Path::new(paths::LATE_ARCHIVE);
    let (from, result) = if archive.exists() {
        let r = unpack(archive, Path::new("/"));
        if r.is_ok() {
            let _ = std::fs::remove_file(archive);
        }
        let r = r.map(|n| (n, paths::LATE_ARCHIVE.to_owned()));
        (paths::LATE_ARCHIVE, r)
    } else if Path::new(paths::LATE_SUM).exists() {
        (
            "the host's late disk or the rescue medium",
            from_disk(Path::new("/")),
        )
    } else {
        return None;
    };
    match result {
        Ok((n, from)) => {
            log::info!("late tools: {n} file(s) unpacked from {from}");
            None
        }
        Err(e) => Some({
            *state = (false, state.1 + 1);
            format!(
                "the late tools from {from} did not unpack ({e}): the XFS, btrfs and FAT checkers, cdrom and FAT drivers and the shell may be missing"
            )
        }),
    }
}

/// [`ensure`]s that `path` (a checker, a module) is there, unpacking the late archive if not.
pub fn need(path: &str) -> Option<String> {
    if Path::new(path).exists() {
        return None;
    }
    ensure()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newc member as the image builder writes it.
    fn member(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
        let namesize = name.len() + 1;
        out.extend_from_slice(
            format!(
                "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
                1, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, 0
            )
            .as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len() + (4 - (110 + namesize) % 4) % 4, 0);
        out.extend_from_slice(data);
        out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
    }

    fn archive(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, m, d) in members {
            member(&mut out, n, *m, d);
        }
        member(&mut out, "TRAILER!!!", 0, b"");
        out
    }

    #[test]
    fn unpacks_files_and_links_with_their_directories() {
        let dir = tempfile::tempdir().unwrap();
        let raw = archive(&[
            ("sbin/xfs_repair", 0o100755, b"\x7fELF..."),
            ("lib/x86_64-linux-gnu/libc.so.6", 0o100644, b"libc"),
            ("sbin/fsck.vfat", 0o120777, b"fsck.fat"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let packed = dir.path().join("late.cpio.gz");
        std::fs::write(&packed, gz.finish().unwrap()).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        assert_eq!(unpack(&packed, &root).unwrap(), 3);
        assert_eq!(
            std::fs::read(root.join("sbin/xfs_repair")).unwrap(),
            b"\x7fELF..."
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("sbin/xfs_repair"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_link(root.join("sbin/fsck.vfat")).unwrap(),
            Path::new("fsck.fat")
        );
        // Again over what is there: replaced, not refused.
        assert_eq!(unpack(&packed, &root).unwrap(), 3);
    }

    #[test]
    fn the_late_disk_is_taken_only_when_it_matches_the_cores_checksum() {
        let data = b"the archive bytes".to_vec();
        let sha = vmrescue_protocol::digest::sha256_hex(&data);
        let sum = format!("{sha} {}\n", data.len());
        assert_eq!(parse_sum(&sum), Some((sha.clone(), data.len())));
        assert_eq!(parse_sum("abc 12"), None);
        assert_eq!(parse_sum(&format!("{sha} x")), None);
        // The disk is padded to whole sectors.
        let mut disk = data.clone();
        disk.resize(512, 0);
        assert_eq!(
            read_verified(&mut disk.as_slice(), &sha, data.len()).unwrap(),
            data
        );
        // A guest disk labelled or laid out like it does not hash the same.
        let mut forged = disk.clone();
        forged[3] ^= 1;
        let e = read_verified(&mut forged.as_slice(), &sha, data.len()).unwrap_err();
        assert!(matches!(e, LateError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(read_verified(&mut &disk[..4], &sha, data.len()).is_err());

        let sys = tempfile::tempdir().unwrap();
        for (name, serial) in [("vda", "vol-1"), ("vdc", paths::LATE_SERIAL), ("vdb", "")] {
            std::fs::create_dir_all(sys.path().join("block").join(name)).unwrap();
            std::fs::write(
                sys.path().join("block").join(name).join("serial"),
                format!("{serial}\n"),
            )
            .unwrap();
        }
        assert_eq!(late_device(sys.path()).as_deref(), Some("vdc"));
    }

    #[test]
    fn the_rescue_medium_is_the_device_with_the_marker_sector() {
        let t = tempfile::tempdir().unwrap();
        let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        for (name, marked) in [
            ("vda", false),
            ("sr0", true),
            ("loop0", true),
            ("vdb", false),
        ] {
            std::fs::create_dir_all(sys.join("block").join(name)).unwrap();
            let mut bytes = vec![0u8; medium::OFFSET as usize + medium::SIZE];
            if marked {
                bytes[medium::OFFSET as usize..].copy_from_slice(&medium::encode("build-1"));
            }
            std::fs::write(dev.join(name), bytes).unwrap();
        }
        // A device too short for the marker, and one whose node is missing: not media.
        std::fs::create_dir_all(sys.join("block/vdc")).unwrap();
        std::fs::write(dev.join("vdc"), b"short").unwrap();
        std::fs::create_dir_all(sys.join("block/sr1")).unwrap();
        // Loop devices are never the VM's own media.
        assert_eq!(media(&sys, &dev), ["sr0"]);
    }

    #[test]
    fn refuses_what_leaves_the_root_or_is_not_a_file() {
        let mut none = |_m: Member| Ok(());
        for (name, mode) in [
            ("../etc/passwd", 0o100644),
            ("sbin/../../x", 0o100644),
            ("dev/sda", 0o060644),
        ] {
            let raw = archive(&[(name, mode, b"x")]);
            let e = read_newc(&mut raw.as_slice(), &mut none).unwrap_err();
            assert!(
                matches!(e, LateError::LeavesRoot(_) | LateError::NotAFile { .. }),
                "{name}: {e}"
            );
        }
        let raw = archive(&[("sbin/x", 0o100755, b"data")]);
        assert!(read_newc(&mut &raw[..raw.len() - 8], &mut none).is_err());
        assert!(read_newc(&mut &b"070702"[..], &mut none).is_err());
        let mut huge = raw.clone();
        huge[54..62].copy_from_slice(b"7fffffff");
        assert!(read_newc(&mut huge.as_slice(), &mut none).is_err());
    }
}
