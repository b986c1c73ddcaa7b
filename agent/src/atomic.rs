//! Writes inside a guest filesystem that never leave a torn file and never leave the tree.
//!
//! Every path is resolved below a root directory with openat2(RESOLVE_IN_ROOT | NO_XDEV): a
//! guest symlink cannot redirect a write to the rescue system or another filesystem. A file is
//! replaced by writing a temporary file beside it, fsyncing it, renaming it over the old one and
//! fsyncing the directory; the old content is first saved as `NAME.vmrescue-STAMP` the same way.
//! A crash at any point leaves the old file or the new one, whole.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{
    self as rfs, openat, openat2, renameat_with, statat, unlinkat, AtFlags, FileType, Gid, Mode,
    OFlags, RenameFlags, ResolveFlags, Uid,
};
use rustix::io::Errno;

/// Largest file read back for a backup or a checksum.
pub const MAX_FILE: u64 = 64 << 20;

/// What one write did, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Written {
    /// The saved original, if the file existed (path from the root).
    pub backup: Option<String>,
    pub sha256_before: Option<String>,
    pub sha256_after: String,
}

/// Ownership and permissions for a new file; a replaced file keeps its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub use vmrescue_protocol::digest::sha256_hex;

/// A directory that writes stay below.
pub struct Root {
    fd: OwnedFd,
}

static TMP_SEQ: AtomicU32 = AtomicU32::new(0);

fn err(path: &str, what: &str, e: impl std::fmt::Display) -> String {
    format!("{path}: {what}: {e}")
}

/// Splits `/a/b/c` into (`/a/b`, `c`); `None` for `/` or a path ending in `..` or `.`.
fn split(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    let (dir, name) = trimmed.rsplit_once('/')?;
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some((if dir.is_empty() { "/" } else { dir }, name))
}

impl Root {
    pub fn open(path: &Path) -> Result<Root, String> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(&path.display().to_string(), "open", e))?;
        Ok(Root { fd })
    }

    fn resolve(&self, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        )
    }

    fn dir(&self, path: &str) -> Result<OwnedFd, String> {
        self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| err(path, "open directory", e))
    }

    /// Creates directory `path` (its parent must exist) with exactly `mode` (umask ignored),
    /// owned by root. An existing directory is left as it is: returns `Ok(false)`.
    pub fn mkdir(&self, path: &str, mode: u32) -> Result<bool, String> {
        let (parent, name) = split(path).ok_or_else(|| format!("{path}: not a directory name"))?;
        let dir = self.dir(parent)?;
        match rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| err(path, "stat", e))?;
                return match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => Ok(false),
                    other => Err(format!(
                        "{path} exists but is a {other:?}, not a directory; left alone"
                    )),
                };
            }
            Err(e) => return Err(err(path, "mkdir", e)),
        }
        let fd = openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(path, "open new directory", e))?;
        if rustix::process::geteuid().is_root() {
            rfs::fchown(&fd, Some(Uid::ROOT), Some(Gid::ROOT))
                .map_err(|e| err(path, "chown", e))?;
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| err(path, "chmod", e))?;
        rfs::fsync(&fd).map_err(|e| err(path, "fsync", e))?;
        rfs::fsync(&dir).map_err(|e| err(parent, "fsync", e))?;
        Ok(true)
    }

    /// `mkdir -p`: every missing component gets `mode`. Returns the directories created.
    pub fn mkdir_all(&self, path: &str, mode: u32) -> Result<Vec<String>, String> {
        let mut made = Vec::new();
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            if self.mkdir(&cur, mode)? {
                made.push(cur.clone());
            }
        }
        Ok(made)
    }

    /// Whether a regular file exists at `path` (no symlink followed at the end).
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let (parent, name) = split(path).ok_or_else(|| format!("{path}: not a file name"))?;
        let dir = self.dir(parent)?;
        read_at(&dir, name, path)
    }

    /// Replaces (or creates) `path` with `content`, atomically, saving an existing file first as
    /// `path.vmrescue-STAMP`. A new file gets `perm`; a replaced one keeps its mode and owner.
    pub fn write(
        &self,
        path: &str,
        content: &[u8],
        perm: Perm,
        stamp: &str,
    ) -> Result<Written, String> {
        let (parent, name) = split(path).ok_or_else(|| format!("{path}: not a file name"))?;
        let dir = self.dir(parent)?;
        let mut out = Written {
            sha256_after: sha256_hex(content),
            ..Default::default()
        };
        let mut perm = perm;
        if let Some((old, st)) = existing(&dir, name, path)? {
            perm = Perm {
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
            };
            out.sha256_before = Some(sha256_hex(&old));
            let backup = self.backup(&dir, parent, name, &old, perm, stamp)?;
            out.backup = Some(backup);
        }
        let labels = existing_labels(&dir, name);
        replace_labelled(
            &dir,
            name,
            path,
            content,
            perm,
            RenameFlags::empty(),
            &labels,
        )?;
        Ok(out)
    }

    /// Saves `old` as `NAME.vmrescue-STAMP` (or `-STAMP-N` when taken) next to the original.
    fn backup(
        &self,
        dir: &OwnedFd,
        parent: &str,
        name: &str,
        old: &[u8],
        perm: Perm,
        stamp: &str,
    ) -> Result<String, String> {
        for n in 0..100 {
            let bname = if n == 0 {
                format!("{name}.vmrescue-{stamp}")
            } else {
                format!("{name}.vmrescue-{stamp}-{n}")
            };
            let bpath = format!("{}/{bname}", parent.trim_end_matches('/'));
            match replace(dir, &bname, &bpath, old, perm, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(bpath),
                Err(e) if e.contains("File exists") => continue,
                Err(e) => return Err(format!("backing up {path}: {e}", path = bpath)),
            }
        }
        Err(format!(
            "{parent}/{name}: 100 backups for this stamp already exist"
        ))
    }
}

fn read_at(dir: &OwnedFd, name: &str, path: &str) -> Result<Option<Vec<u8>>, String> {
    Ok(existing(dir, name, path)?.map(|(data, _)| data))
}

/// The content and status of an existing regular file; `None` if absent. Refuses symlinks and
/// other file types: replacing them could break what the guest means by them.
fn existing(dir: &OwnedFd, name: &str, path: &str) -> Result<Option<(Vec<u8>, rfs::Stat)>, String> {
    let fd = match openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => {
            return Err(format!(
                "{path} is a symbolic link; left alone (fix it by hand)"
            ))
        }
        Err(e) => return Err(err(path, "open", e)),
    };
    let st = rfs::fstat(&fd).map_err(|e| err(path, "stat", e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(format!("{path} is not a regular file; left alone"));
    }
    if st.st_size as u64 > MAX_FILE {
        return Err(format!(
            "{path} is larger than {} MiB; left alone",
            MAX_FILE >> 20
        ));
    }
    let mut data = Vec::new();
    File::from(fd)
        .take(MAX_FILE)
        .read_to_end(&mut data)
        .map_err(|e| err(path, "read", e))?;
    Ok(Some((data, st)))
}

/// Extended attributes that carry security meaning (SELinux labels, ACLs): a replacement file
/// must keep them, or an enforcing guest denies its services access to it.
fn keeps(name: &str) -> bool {
    name.starts_with("security.") || name.starts_with("system.posix_acl_")
}

/// The security attributes of an existing file (empty where there are none or none readable).
fn existing_labels(dir: &OwnedFd, name: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(fd) = openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 64 * 1024];
    let Ok(n) = rfs::flistxattr(&fd, &mut names[..]) else {
        return Vec::new();
    };
    names[..n]
        .split(|&b| b == 0)
        .filter_map(|raw| std::str::from_utf8(raw).ok())
        .filter(|n| keeps(n))
        .filter_map(|n| {
            let mut value = vec![0u8; 64 * 1024];
            let len = rfs::fgetxattr(&fd, n, &mut value[..]).ok()?;
            value.truncate(len);
            Some((n.to_owned(), value))
        })
        .collect()
}

/// [`replace_labelled`] without attributes to carry over.
fn replace(
    dir: &OwnedFd,
    name: &str,
    path: &str,
    content: &[u8],
    perm: Perm,
    flags: RenameFlags,
) -> Result<(), String> {
    replace_labelled(dir, name, path, content, perm, flags, &[])
}

/// Temp file, write, owner, mode and security attributes, fsync, rename over `name`, fsync the
/// directory. The temp file is removed on any failure before the rename.
fn replace_labelled(
    dir: &OwnedFd,
    name: &str,
    path: &str,
    content: &[u8],
    perm: Perm,
    flags: RenameFlags,
    labels: &[(String, Vec<u8>)],
) -> Result<(), String> {
    // PID 1 is always pid 1: the clock and a counter keep names apart across rescues, and a
    // name left by a killed earlier run is skipped.
    let mut attempt = 0;
    let (tmp, fd) = loop {
        let tmp = format!(
            ".{name}.vmrescue-tmp.{}.{}.{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        match openat(
            dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => break (tmp, fd),
            Err(Errno::EXIST) if attempt < 10 => attempt += 1,
            Err(e) => return Err(err(path, "create temporary file", e)),
        }
    };
    let result = (|| {
        let mut f = File::from(fd);
        f.write_all(content).map_err(|e| err(path, "write", e))?;
        rfs::fchown(
            f.as_fd(),
            Some(Uid::from_raw(perm.uid)),
            Some(Gid::from_raw(perm.gid)),
        )
        .map_err(|e| err(path, "chown", e))?;
        rfs::fchmod(f.as_fd(), Mode::from_raw_mode(perm.mode))
            .map_err(|e| err(path, "chmod", e))?;
        for (k, v) in labels {
            rfs::fsetxattr(f.as_fd(), k.as_str(), v, rfs::XattrFlags::empty())
                .map_err(|e| err(path, &format!("set {k}"), e))?;
        }
        f.sync_all().map_err(|e| err(path, "fsync", e))?;
        renameat_with(dir, &tmp, dir, name, flags).map_err(|e| err(path, "rename", e))
    })();
    if let Err(e) = result {
        let _ = unlinkat(dir, &tmp, AtFlags::empty());
        return Err(e);
    }
    rfs::fsync(dir).map_err(|e| err(path, "fsync directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn root() -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        let r = Root::open(d.path()).unwrap();
        (d, r)
    }

    const ME: fn() -> (u32, u32) = || {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    };

    fn perm(mode: u32) -> Perm {
        let (uid, gid) = ME();
        Perm { mode, uid, gid }
    }

    #[test]
    fn new_file_then_replace_with_backup() {
        let (d, r) = root();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        let w = r
            .write("/etc/hostname", b"one\n", perm(0o640), "S")
            .unwrap();
        assert_eq!(w.backup, None);
        assert_eq!(w.sha256_after, sha256_hex(b"one\n"));
        let p = d.path().join("etc/hostname");
        assert_eq!(std::fs::read(&p).unwrap(), b"one\n");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);

        let w = r
            .write("/etc/hostname", b"two\n", perm(0o600), "S")
            .unwrap();
        assert_eq!(w.backup.as_deref(), Some("/etc/hostname.vmrescue-S"));
        assert_eq!(w.sha256_before, Some(sha256_hex(b"one\n")));
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        // A replaced file keeps its own mode; the backup too.
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        let b = d.path().join("etc/hostname.vmrescue-S");
        assert_eq!(std::fs::read(&b).unwrap(), b"one\n");
        assert_eq!(std::fs::metadata(&b).unwrap().mode() & 0o7777, 0o640);

        // Same stamp again: the first backup is never overwritten.
        let w = r
            .write("/etc/hostname", b"three\n", perm(0o600), "S")
            .unwrap();
        assert_eq!(w.backup.as_deref(), Some("/etc/hostname.vmrescue-S-1"));
        assert_eq!(std::fs::read(&b).unwrap(), b"one\n");
        let mut names: Vec<_> = std::fs::read_dir(d.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["hostname", "hostname.vmrescue-S", "hostname.vmrescue-S-1"],
            "no temporary file left"
        );
    }

    #[test]
    fn symlinks_are_refused_and_stay_inside() {
        let (d, r) = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), b"host\n").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("etc")).unwrap();
        // /etc -> an absolute path outside: resolved inside the root, where it does not exist.
        assert!(r.write("/etc/passwd", b"x", perm(0o644), "S").is_err());
        assert_eq!(
            std::fs::read(outside.path().join("passwd")).unwrap(),
            b"host\n"
        );
        std::fs::remove_file(d.path().join("etc")).unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/nowhere", d.path().join("etc/fstab")).unwrap();
        let e = r.write("/etc/fstab", b"x", perm(0o644), "S").unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(r.write("/../../x", b"x", perm(0o644), "S").is_ok());
        assert!(d.path().join("x").exists(), "`..` stops at the root");
    }

    #[test]
    fn replacing_keeps_security_attributes() {
        let (d, r) = root();
        let p = d.path().join("f");
        std::fs::write(&p, b"old").unwrap();
        let fd = rustix::fs::open(&p, OFlags::RDONLY, Mode::empty()).unwrap();
        let acl_or_label = rfs::fsetxattr(
            &fd,
            "security.vmrescue-test",
            b"label_t",
            rfs::XattrFlags::empty(),
        );
        drop(fd);
        if acl_or_label.is_err() {
            eprintln!("SKIP: this filesystem takes no security.* attributes here");
            return;
        }
        r.write("/f", b"new", perm(0o644), "S").unwrap();
        let fd = rustix::fs::open(&p, OFlags::RDONLY, Mode::empty()).unwrap();
        let mut v = [0u8; 32];
        let n = rfs::fgetxattr(&fd, "security.vmrescue-test", &mut v).unwrap();
        assert_eq!(&v[..n], b"label_t");
    }

    #[test]
    fn mkdir_modes_and_existing() {
        let (d, r) = root();
        assert!(r.mkdir("/tmp", 0o1777).unwrap());
        assert_eq!(
            std::fs::metadata(d.path().join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert!(!r.mkdir("/tmp", 0o755).unwrap(), "existing is left alone");
        std::fs::write(d.path().join("proc"), b"").unwrap();
        assert!(r
            .mkdir("/proc", 0o555)
            .unwrap_err()
            .contains("not a directory"));
        assert_eq!(
            r.mkdir_all("/a/b/c", 0o755).unwrap(),
            ["/a", "/a/b", "/a/b/c"]
        );
        assert!(split("/").is_none());
        assert_eq!(split("/etc"), Some(("/", "etc")));
    }
}
