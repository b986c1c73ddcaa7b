//! `vmrescue fix-owners`: after moving instances between compute hosts whose nova or
//! libvirt-qemu ids differ, change `--from-uid`/`--from-gid` to `--to-uid`/`--to-gid` across a
//! tree. Never follows symlinks (they are changed themselves) and never crosses into another
//! file system.

pub mod render;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Gid, Mode, OFlags, Stat, Uid};
use serde::Serialize;

/// What to change where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixOwnersOptions {
    /// Root of the tree (`--path`); followed if it is itself a symlink.
    pub path: PathBuf,
    pub from_uid: Option<u32>,
    pub to_uid: Option<u32>,
    pub from_gid: Option<u32>,
    pub to_gid: Option<u32>,
    pub dry_run: bool,
}

/// Why fix-owners did not walk the tree at all.
#[derive(Debug, thiserror::Error)]
pub enum FixOwnersError {
    #[error("nothing to do: give --from-uid N --to-uid M and/or --from-gid N --to-gid M")]
    NothingToDo,
    #[error("--from-uid and --to-uid go together")]
    UidPair,
    #[error("--from-gid and --to-gid go together")]
    GidPair,
    #[error("4294967295 (-1) is not a valid id")]
    InvalidId,
    #[error("--from-uid and --to-uid are the same")]
    SameUid,
    #[error("--from-gid and --to-gid are the same")]
    SameGid,
    #[error("cannot open the directory {}: {source}; check the path given with --path", path.display())]
    Root { path: PathBuf, source: io::Error },
}

/// Why one entry was not examined, changed or entered: reported with its path, and the walk
/// goes on.
#[derive(Debug, thiserror::Error)]
enum EntryError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("owner changed but set-id bits lost: {0}")]
    SetIdLost(io::Error),
    #[error("owner changed but set-id bits lost: the file was replaced meanwhile")]
    ReplacedBeforeChmod,
    #[error("replaced while the tree was walked; not entered")]
    DirReplaced,
}

/// One path that could not be examined or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathError {
    pub path: PathBuf,
    pub error: String,
}

/// Counts, and a few examples of what matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixOwnersReport {
    pub path: PathBuf,
    pub dry_run: bool,
    pub from_uid: Option<u32>,
    pub to_uid: Option<u32>,
    pub from_gid: Option<u32>,
    pub to_gid: Option<u32>,
    /// Entries looked at, the root included.
    pub examined: u64,
    /// Entries owned by a `from` id (to change, or changed).
    pub matched: u64,
    /// Entries changed (0 in a dry run).
    pub changed: u64,
    /// Entries that did not match.
    pub skipped: u64,
    /// Mount points met and not entered.
    pub other_filesystems: Vec<PathBuf>,
    /// The first matched paths.
    pub examples: Vec<PathBuf>,
    pub errors: Vec<PathError>,
    /// All errors, also those beyond the list's cap.
    pub error_count: u64,
}

const MAX_EXAMPLES: usize = 20;
const MAX_ERRORS: usize = 100;

impl FixOwnersReport {
    pub fn ok(&self) -> bool {
        self.error_count == 0
    }

    /// The report for a terminal.
    pub fn render(&self) -> String {
        crate::fix_owners::render::report(self)
    }
}

fn check(opts: &FixOwnersOptions) -> Result<(), FixOwnersError> {
    match (opts.from_uid, opts.to_uid, opts.from_gid, opts.to_gid) {
        (None, None, None, None) => return Err(FixOwnersError::NothingToDo),
        (Some(_), None, ..) | (None, Some(_), ..) => return Err(FixOwnersError::UidPair),
        (.., Some(_), None) | (.., None, Some(_)) => return Err(FixOwnersError::GidPair),
        _ => {}
    }
    let ids = [opts.from_uid, opts.to_uid, opts.from_gid, opts.to_gid];
    if ids.iter().flatten().any(|&id| id == u32::MAX) {
        return Err(FixOwnersError::InvalidId);
    }
    if opts.from_uid.is_some() && opts.from_uid == opts.to_uid {
        return Err(FixOwnersError::SameUid);
    }
    if opts.from_gid.is_some() && opts.from_gid == opts.to_gid {
        return Err(FixOwnersError::SameGid);
    }
    Ok(())
}

/// The new (uid, gid) for an entry owned by `uid`:`gid`, or `None` when it does not match.
pub fn new_ids(opts: &FixOwnersOptions, uid: u32, gid: u32) -> Option<(Option<u32>, Option<u32>)> {
    let u = opts.to_uid.filter(|_| opts.from_uid == Some(uid));
    let g = opts.to_gid.filter(|_| opts.from_gid == Some(gid));
    (u.is_some() || g.is_some()).then_some((u, g))
}

struct Walk<'a> {
    opts: &'a FixOwnersOptions,
    report: FixOwnersReport,
}

impl Walk<'_> {
    fn error(&mut self, path: &Path, e: impl Into<EntryError>) {
        self.report.error_count += 1;
        if self.report.errors.len() < MAX_ERRORS {
            self.report.errors.push(PathError {
                path: path.to_path_buf(),
                error: e.into().to_string(),
            });
        }
    }

    /// Counts and (unless dry-running) changes one entry, named `name` in `dir`, or the
    /// directory `dir` itself when `name` is `None`.
    fn visit(&mut self, dir: BorrowedFd<'_>, name: Option<&CString>, st: &Stat, path: &Path) {
        self.report.examined += 1;
        let Some((uid, gid)) = new_ids(self.opts, st.st_uid, st.st_gid) else {
            self.report.skipped += 1;
            return;
        };
        self.report.matched += 1;
        if self.report.examples.len() < MAX_EXAMPLES {
            self.report.examples.push(path.to_path_buf());
        }
        if self.opts.dry_run {
            return;
        }
        let (uid, gid) = (uid.map(Uid::from_raw), gid.map(Gid::from_raw));
        let res = match name {
            Some(n) => rfs::chownat(dir, n.as_c_str(), uid, gid, AtFlags::SYMLINK_NOFOLLOW),
            None => rfs::fchown(dir, uid, gid),
        };
        if let Err(e) = res {
            self.error(path, io::Error::from(e));
            return;
        }
        self.report.changed += 1;
        // chown clears set-user-id and set-group-id bits: put them back.
        let mode = st.st_mode & 0o7777;
        if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && mode & 0o6000 != 0 {
            if let Some(n) = name {
                if let Err(e) = restore_mode(dir, n, st, mode) {
                    self.error(path, e);
                }
            }
        }
    }
}

impl Walk<'_> {
    /// Visits the entries of `dir`, queueing its subdirectories on `stack`.
    fn read_dir(
        &mut self,
        dir: &Rc<OwnedFd>,
        dir_path: &Path,
        root_dev: u64,
        stack: &mut Vec<(Rc<OwnedFd>, CString, PathBuf, Stat)>,
    ) {
        let names = match list(dir.as_fd()) {
            Ok(n) => n,
            Err(e) => {
                self.error(dir_path, e);
                return;
            }
        };
        for name in names {
            let path = dir_path.join(OsStr::from_bytes(name.to_bytes()));
            let st = match rfs::statat(dir.as_fd(), name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue, // removed meanwhile
                Err(e) => {
                    self.error(&path, io::Error::from(e));
                    continue;
                }
            };
            if st.st_dev != root_dev {
                self.report.other_filesystems.push(path);
                continue;
            }
            self.visit(dir.as_fd(), Some(&name), &st, &path);
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                stack.push((Rc::clone(dir), name, path, st));
            }
        }
    }
}

/// Puts back the set-id bits chown cleared, on the file `st` describes.
fn restore_mode(
    dir: BorrowedFd<'_>,
    name: &CString,
    st: &Stat,
    mode: u32,
) -> Result<(), EntryError> {
    let lost = |e: rustix::io::Errno| EntryError::SetIdLost(e.into());
    let fd = rfs::openat(
        dir,
        name.as_c_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(lost)?;
    let now = rfs::fstat(&fd).map_err(lost)?;
    if now.st_ino != st.st_ino || now.st_dev != st.st_dev {
        return Err(EntryError::ReplacedBeforeChmod);
    }
    rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(lost)?;
    Ok(())
}

/// Opens the directory `name` in `parent`, refusing it when it is no longer the one `seen`.
fn enter(parent: BorrowedFd<'_>, name: &CString, seen: &Stat) -> Result<OwnedFd, EntryError> {
    let fd = rfs::openat(
        parent,
        name.as_c_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let st = rfs::fstat(&fd).map_err(io::Error::from)?;
    if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) {
        return Err(EntryError::DirReplaced);
    }
    Ok(fd)
}

fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    let mut d = Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Walks `opts.path` and changes (or, dry-running, counts) the matching owners.
pub fn run(opts: &FixOwnersOptions) -> Result<FixOwnersReport, FixOwnersError> {
    check(opts)?;
    let root_err = |source: io::Error| FixOwnersError::Root {
        path: opts.path.clone(),
        source,
    };
    let root: OwnedFd = rfs::open(
        &opts.path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| root_err(e.into()))?;
    let root_st = rfs::fstat(&root).map_err(|e| root_err(e.into()))?;
    let mut w = Walk {
        opts,
        report: FixOwnersReport {
            path: opts.path.clone(),
            dry_run: opts.dry_run,
            from_uid: opts.from_uid,
            to_uid: opts.to_uid,
            from_gid: opts.from_gid,
            to_gid: opts.to_gid,
            examined: 0,
            matched: 0,
            changed: 0,
            skipped: 0,
            other_filesystems: Vec::new(),
            examples: Vec::new(),
            errors: Vec::new(),
            error_count: 0,
        },
    };
    w.visit(root.as_fd(), None, &root_st, &opts.path);

    // Directories still to read, each opened only when its turn comes (so a wide tree does not
    // hold one descriptor per pending directory): (parent, name, path, stat when seen).
    let root = Rc::new(root);
    let mut stack: Vec<(Rc<OwnedFd>, CString, PathBuf, Stat)> = Vec::new();
    w.read_dir(&root, &opts.path, root_st.st_dev, &mut stack);
    while let Some((parent, name, path, seen)) = stack.pop() {
        let dir = match enter(parent.as_fd(), &name, &seen) {
            Ok(fd) => fd,
            Err(e) => {
                w.error(&path, e);
                continue;
            }
        };
        drop(parent);
        w.read_dir(&Rc::new(dir), &path, root_st.st_dev, &mut stack);
    }
    Ok(w.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(from_uid: Option<u32>, to_uid: Option<u32>) -> FixOwnersOptions {
        FixOwnersOptions {
            path: PathBuf::from("/nonexistent"),
            from_uid,
            to_uid,
            from_gid: None,
            to_gid: None,
            dry_run: true,
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(check(&opts(None, None)).is_err());
        assert!(check(&opts(Some(1), None)).is_err());
        assert!(check(&opts(Some(1), Some(1))).is_err());
        assert!(check(&opts(Some(1), Some(u32::MAX))).is_err());
        assert!(check(&opts(Some(1), Some(2))).is_ok());
        let mut o = opts(None, None);
        o.from_gid = Some(3);
        assert!(check(&o).is_err());
        o.to_gid = Some(4);
        assert!(check(&o).is_ok());
    }

    #[test]
    fn ids_change_independently() {
        let mut o = opts(Some(107), Some(64055));
        o.from_gid = Some(110);
        o.to_gid = Some(108);
        assert_eq!(new_ids(&o, 107, 0), Some((Some(64055), None)));
        assert_eq!(new_ids(&o, 0, 110), Some((None, Some(108))));
        assert_eq!(new_ids(&o, 107, 110), Some((Some(64055), Some(108))));
        assert_eq!(new_ids(&o, 0, 0), None);
        assert_eq!(new_ids(&opts(Some(5), Some(6)), 0, 5), None);
    }

    use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};

    const FROM: u32 = 12_345;
    const TO: u32 = 23_456;

    fn owner(p: &Path) -> (u32, u32) {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    }

    /// root/{a, d/b, d/e/c (uid 0), d/link -> outside/t, setuid}, all but c owned by FROM:FROM.
    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("a"), "a").unwrap();
        std::fs::write(root.join("d/b"), "b").unwrap();
        std::fs::write(root.join("d/e/c"), "c").unwrap();
        std::fs::write(root.join("setuid"), "s").unwrap();
        std::fs::write(outside.join("t"), "t").unwrap();
        std::os::unix::fs::symlink(outside.join("t"), root.join("d/link")).unwrap();
        for p in ["", "a", "d", "d/b", "d/e", "d/link", "setuid"] {
            lchown(root.join(p), Some(FROM), Some(FROM)).unwrap();
        }
        lchown(&outside, Some(FROM), Some(FROM)).unwrap();
        lchown(outside.join("t"), Some(FROM), Some(FROM)).unwrap();
        std::fs::set_permissions(root.join("setuid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        (t, root, outside)
    }

    fn on(root: &Path, dry_run: bool) -> FixOwnersOptions {
        FixOwnersOptions {
            path: root.to_path_buf(),
            from_uid: Some(FROM),
            to_uid: Some(TO),
            from_gid: None,
            to_gid: None,
            dry_run,
        }
    }

    #[test]
    fn dry_run_changes_nothing() {
        let (_t, root, _) = tree();
        let r = run(&on(&root, true)).unwrap();
        assert_eq!((r.examined, r.matched, r.changed, r.skipped), (8, 7, 0, 1));
        assert!(r.ok());
        assert_eq!(owner(&root.join("a")), (FROM, FROM));
        assert_eq!(owner(&root), (FROM, FROM));
        assert!(r.render().contains("DRY RUN"), "{}", r.render());
        assert!(r.render().contains("would change 7"), "{}", r.render());
    }

    #[test]
    fn owners_change_without_following_symlinks() {
        let (_t, root, outside) = tree();
        let mut o = on(&root, false);
        o.from_gid = Some(FROM);
        o.to_gid = Some(TO + 1);
        let r = run(&o).unwrap();
        assert!(r.ok(), "{:?}", r.errors);
        assert_eq!((r.examined, r.matched, r.changed, r.skipped), (8, 7, 7, 1));
        for p in ["", "a", "d", "d/b", "d/e", "d/link", "setuid"] {
            assert_eq!(owner(&root.join(p)), (TO, TO + 1), "{p}");
        }
        assert_eq!(owner(&root.join("d/e/c")), (0, 0));
        // The symlink changed itself, not its target outside the tree.
        assert_eq!(owner(&outside.join("t")), (FROM, FROM));
        assert_eq!(owner(&outside), (FROM, FROM));
        let mode = std::fs::metadata(root.join("setuid")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o4755, "set-uid bit kept");
        // Nothing left to match.
        let again = run(&o).unwrap();
        assert_eq!((again.matched, again.changed), (0, 0));
    }

    #[test]
    fn other_file_systems_are_not_entered() {
        let (_t, root, _) = tree();
        let mnt = root.join("d/mnt");
        std::fs::create_dir(&mnt).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "vmrescue-test"])
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
            }
        }
        let _u = Unmount(mnt.clone());
        std::fs::write(mnt.join("inner"), "x").unwrap();
        lchown(mnt.join("inner"), Some(FROM), Some(FROM)).unwrap();
        lchown(&mnt, Some(FROM), Some(FROM)).unwrap();
        let r = run(&on(&root, false)).unwrap();
        assert_eq!(r.other_filesystems, vec![mnt.clone()]);
        assert_eq!(owner(&mnt.join("inner")), (FROM, FROM));
        assert_eq!(owner(&mnt), (FROM, FROM));
        assert_eq!(owner(&root.join("a")), (TO, FROM));
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let e = run(&opts(Some(1), Some(2))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent"), "{e}");
    }
}
