//! Writes inside a guest filesystem that never leave a torn file and never leave the tree.
//!
//! Every path is resolved below a root directory with openat2(RESOLVE_IN_ROOT | NO_XDEV): a
//! guest symlink cannot redirect a write to the rescue system or another filesystem. A file is
//! replaced by writing a temporary file beside it, fsyncing it, renaming it over the old one and
//! fsyncing the directory; the old content is first saved as `NAME.vmrescue-STAMP` the same way.
//! A crash at any point leaves the old file or the new one, whole.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{
    self as rfs, openat, openat2, renameat_with, statat, unlinkat, AtFlags, FileType, Gid, Mode,
    OFlags, RenameFlags, ResolveFlags, Uid,
};
use rustix::io::Errno;

mod file;

pub use file::is_temp_name;
use file::{existing, existing_labels, read_at, replace, replace_labelled, temp_name};

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
    /// No symlink is followed anywhere on a path (see [`Root::no_symlinks`]).
    strict: bool,
}

/// Why a write below a [`Root`] was not made. Every variant names the path (from the root);
/// what the guest's file was is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    /// A system call on `path` failed; `op` says which step (`open`, `rename`, `fsync`...).
    #[error("{path}: {op}: {source}")]
    Sys {
        path: String,
        op: &'static str,
        source: Errno,
    },
    /// Reading or writing the file's content failed.
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    /// Carrying a security attribute (SELinux label, ACL) over to the new file failed.
    #[error("{path}: set {attribute}: {source}")]
    Label {
        path: String,
        attribute: String,
        source: Errno,
    },
    /// The path names no file or directory (`/`, or ending in `.` or `..`).
    #[error("{path}: not a {what} name")]
    BadName { path: String, what: &'static str },
    #[error("{path} exists but is a {kind:?}, not a directory; left alone")]
    NotADirectory { path: String, kind: FileType },
    /// Something other than the wanted link is already at the path.
    #[error("{path} already exists; left alone")]
    Exists { path: String },
    #[error("{path} is a symbolic link; left alone (fix it by hand)")]
    Symlink { path: String },
    #[error("{path} is not a regular file; left alone")]
    NotRegular { path: String },
    #[error("{path} is larger than {} MiB; left alone", MAX_FILE >> 20)]
    TooLarge { path: String },
    /// Saving the old content as `backup` failed.
    #[error("backing up {backup}: {source}")]
    Backup {
        backup: String,
        source: Box<AtomicError>,
    },
    #[error("{path}: 100 backups for this stamp already exist")]
    NoBackupName { path: String },
}

/// `map_err` for a failed system call on `path`.
fn sys(path: &str, op: &'static str) -> impl FnOnce(Errno) -> AtomicError {
    let path = path.to_owned();
    move |source| AtomicError::Sys { path, op, source }
}

/// `map_err` for failed I/O on `path`'s content.
fn io(path: &str, op: &'static str) -> impl FnOnce(std::io::Error) -> AtomicError {
    let path = path.to_owned();
    move |source| AtomicError::Io { path, op, source }
}

fn bad_name(path: &str, what: &'static str) -> AtomicError {
    AtomicError::BadName {
        path: path.to_owned(),
        what,
    }
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
    pub fn open(path: &Path) -> Result<Root, AtomicError> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys(&path.display().to_string(), "open"))?;
        Ok(Root { fd, strict: false })
    }

    /// The same root, where no symlink is followed on any path, even one inside the root: for
    /// writes into a directory a guest user owns (their `~/.ssh`), which a link there must not
    /// steer to another user's files.
    pub fn no_symlinks(&self) -> Result<Root, AtomicError> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| io("/", "duplicate the root's descriptor")(e))?;
        Ok(Root { fd, strict: true })
    }

    fn resolve(&self, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT
                | ResolveFlags::NO_MAGICLINKS
                | ResolveFlags::NO_XDEV
                | if self.strict {
                    ResolveFlags::NO_SYMLINKS
                } else {
                    ResolveFlags::empty()
                },
        )
    }

    fn dir(&self, path: &str) -> Result<OwnedFd, AtomicError> {
        self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(sys(path, "open directory"))
    }

    /// Creates directory `path` (its parent must exist) with exactly `mode` (umask ignored),
    /// owned by root. An existing directory is left as it is: returns `Ok(false)`.
    pub fn mkdir(&self, path: &str, mode: u32) -> Result<bool, AtomicError> {
        self.mkdir_owned(path, mode, 0, 0)
    }

    /// [`Root::mkdir`] owned by `uid`:`gid`.
    pub fn mkdir_owned(
        &self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<bool, AtomicError> {
        let (parent, name) = split(path).ok_or_else(|| bad_name(path, "directory"))?;
        let dir = self.dir(parent)?;
        match rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st =
                    statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(sys(path, "stat"))?;
                return match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => Ok(false),
                    kind => Err(AtomicError::NotADirectory {
                        path: path.to_owned(),
                        kind,
                    }),
                };
            }
            Err(e) => return Err(sys(path, "mkdir")(e)),
        }
        let fd = openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys(path, "open new directory"))?;
        if rustix::process::geteuid().is_root() {
            rfs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(sys(path, "chown"))?;
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(sys(path, "chmod"))?;
        rfs::fsync(&fd).map_err(sys(path, "fsync"))?;
        rfs::fsync(&dir).map_err(sys(parent, "fsync"))?;
        Ok(true)
    }

    /// `mkdir -p`: every missing component gets `mode`. Returns the directories created.
    pub fn mkdir_all(&self, path: &str, mode: u32) -> Result<Vec<String>, AtomicError> {
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
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, AtomicError> {
        let (parent, name) = split(path).ok_or_else(|| bad_name(path, "file"))?;
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
    ) -> Result<Written, AtomicError> {
        let (parent, name) = split(path).ok_or_else(|| bad_name(path, "file"))?;
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

    /// Creates the symbolic link `path` -> `target` where nothing is: made under a temporary
    /// name and renamed into place without replacing (a crash leaves no link or the whole one).
    /// A link already there with the same target is left: `Ok(false)`; anything else there is
    /// an error and stays as it was.
    pub fn symlink(&self, path: &str, target: &str) -> Result<bool, AtomicError> {
        let (parent, name) = split(path).ok_or_else(|| bad_name(path, "link"))?;
        let dir = self.dir(parent)?;
        match rfs::readlinkat(&dir, name, Vec::new()) {
            Ok(old) if old.as_bytes() == target.as_bytes() => return Ok(false),
            Ok(_) => {
                return Err(AtomicError::Exists {
                    path: path.to_owned(),
                })
            }
            Err(Errno::NOENT) => {}
            Err(Errno::INVAL) => {
                return Err(AtomicError::Exists {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(sys(path, "read link")(e)),
        }
        let tmp = temp_name(name);
        rfs::symlinkat(target, &dir, &tmp).map_err(sys(path, "create temporary link"))?;
        let result = (|| {
            if rustix::process::geteuid().is_root() {
                rfs::chownat(
                    &dir,
                    &tmp,
                    Some(Uid::ROOT),
                    Some(Gid::ROOT),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(sys(path, "chown"))?;
            }
            renameat_with(&dir, &tmp, &dir, name, RenameFlags::NOREPLACE).map_err(|e| {
                if e == Errno::EXIST {
                    AtomicError::Exists {
                        path: path.to_owned(),
                    }
                } else {
                    sys(path, "rename")(e)
                }
            })
        })();
        if let Err(e) = result {
            let _ = unlinkat(&dir, &tmp, AtFlags::empty());
            return Err(e);
        }
        rfs::fsync(&dir).map_err(sys(path, "fsync directory"))?;
        Ok(true)
    }

    /// Removes a temporary file of ours (a name [`temp_name`] makes) that a stopped earlier
    /// run left: a regular file or a link, never anything else. `Ok(false)` if it is gone.
    pub fn remove_temp(&self, path: &str) -> Result<bool, AtomicError> {
        let (parent, name) = split(path).ok_or_else(|| bad_name(path, "file"))?;
        if !is_temp_name(name) {
            return Err(bad_name(path, "temporary file"));
        }
        let dir = self.dir(parent)?;
        let st = match statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(sys(path, "stat")(e)),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile | FileType::Symlink => {}
            _ => {
                return Err(AtomicError::NotRegular {
                    path: path.to_owned(),
                })
            }
        }
        unlinkat(&dir, name, AtFlags::empty()).map_err(sys(path, "remove"))?;
        rfs::fsync(&dir).map_err(sys(path, "fsync directory"))?;
        Ok(true)
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
    ) -> Result<String, AtomicError> {
        for n in 0..100 {
            let bname = if n == 0 {
                format!("{name}.vmrescue-{stamp}")
            } else {
                format!("{name}.vmrescue-{stamp}-{n}")
            };
            let bpath = format!("{}/{bname}", parent.trim_end_matches('/'));
            match replace(dir, &bname, &bpath, old, perm, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(bpath),
                // The name is taken (NOREPLACE): try the next one.
                Err(AtomicError::Sys {
                    source: Errno::EXIST,
                    ..
                }) => continue,
                Err(e) => {
                    return Err(AtomicError::Backup {
                        backup: bpath,
                        source: Box::new(e),
                    })
                }
            }
        }
        Err(AtomicError::NoBackupName {
            path: format!("{parent}/{name}"),
        })
    }
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
        assert!(matches!(&e, AtomicError::Symlink { path } if path == "/etc/fstab"));
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(r.write("/../../x", b"x", perm(0o644), "S").is_ok());
        assert!(d.path().join("x").exists(), "`..` stops at the root");
    }

    #[test]
    fn links_are_made_once_never_over_anything() {
        let (d, r) = root();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        assert!(r
            .symlink("/etc/os-release", "../usr/lib/os-release")
            .unwrap());
        assert_eq!(
            std::fs::read_link(d.path().join("etc/os-release")).unwrap(),
            Path::new("../usr/lib/os-release")
        );
        assert!(!r
            .symlink("/etc/os-release", "../usr/lib/os-release")
            .unwrap());
        let e = r.symlink("/etc/os-release", "/elsewhere").unwrap_err();
        assert!(matches!(&e, AtomicError::Exists { path } if path == "/etc/os-release"));
        std::fs::write(d.path().join("etc/hosts"), b"keep\n").unwrap();
        assert!(r.symlink("/etc/hosts", "/x").is_err());
        assert_eq!(
            std::fs::read(d.path().join("etc/hosts")).unwrap(),
            b"keep\n"
        );
        assert!(r.symlink("/nodir/x", "/y").is_err(), "parents are not made");
        let names: Vec<_> = std::fs::read_dir(d.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains("vmrescue-tmp")),
            "no temporary link left: {names:?}"
        );
    }

    #[test]
    fn only_our_temporary_names_are_removed() {
        let (d, r) = root();
        let name = temp_name("fstab");
        assert!(is_temp_name(&name), "{name}");
        std::fs::write(d.path().join(&name), b"partial").unwrap();
        assert!(r.remove_temp(&format!("/{name}")).unwrap());
        assert!(!d.path().join(&name).exists());
        assert!(!r.remove_temp(&format!("/{name}")).unwrap(), "already gone");
        std::fs::write(d.path().join("fstab"), b"keep").unwrap();
        assert!(r.remove_temp("/fstab").is_err());
        assert!(d.path().join("fstab").exists());
        let dir_name = temp_name("dir");
        std::fs::create_dir(d.path().join(&dir_name)).unwrap();
        assert!(r.remove_temp(&format!("/{dir_name}")).is_err());
        assert!(d.path().join(&dir_name).is_dir(), "directories are left");
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
        let e = r.mkdir("/proc", 0o555).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert_eq!(
            e.to_string(),
            "/proc exists but is a RegularFile, not a directory; left alone"
        );
        let e = r.mkdir("/", 0o755).unwrap_err();
        assert_eq!(e.to_string(), "/: not a directory name");
        assert_eq!(
            r.mkdir_all("/a/b/c", 0o755).unwrap(),
            ["/a", "/a/b", "/a/b/c"]
        );
        assert!(split("/").is_none());
        assert_eq!(split("/etc"), Some(("/", "etc")));
    }
}
