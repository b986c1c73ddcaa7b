//! The directories copies are written into: the destination root as the operator named it,
//! and every directory below it opened (or created, with nova's directory owner) without
//! following symlinks, so a link planted in the tree cannot redirect a copy.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;

use super::owners::{apply_owner, Resolved};

/// Why a destination directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DestError {
    #[error(
        "cannot create or open the directory {}: {source}; check that it is writable, or choose \
         another --dest",
        path.display()
    )]
    Dir { path: PathBuf, source: io::Error },
    #[error(
        "{} is a symlink or not a directory; refusing to write through it: move it away and retry",
        path.display()
    )]
    Unsafe { path: PathBuf },
}

fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens `root/rel_dir`: `root` as named (the operator chose it, symlinks allowed; created
/// when missing, and given `dir_owner` then if `own_root`), every directory below it without
/// following symlinks, created with `dir_owner` when missing. Created paths are appended to
/// `created`.
pub fn open_dest_dir(
    root: &Path,
    rel_dir: &Path,
    own_root: bool,
    dir_owner: &Resolved,
    created: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<OwnedFd, DestError> {
    let dir_err = |path: &Path, e: io::Error| DestError::Dir {
        path: path.to_path_buf(),
        source: e,
    };
    let mut root_created = false;
    if std::fs::symlink_metadata(root).is_err() {
        std::fs::create_dir_all(root).map_err(|e| dir_err(root, e))?;
        root_created = true;
    }
    let mut dir: OwnedFd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| dir_err(root, e.into()))?;
    if root_created {
        created.push(root.to_path_buf());
        if own_root {
            warnings.extend(apply_owner(dir.as_fd(), dir_owner, root));
        }
    }
    let mut path = root.to_path_buf();
    for comp in rel_dir.components() {
        let Component::Normal(name) = comp else {
            return Err(DestError::Unsafe {
                path: path.join(comp),
            });
        };
        path.push(name);
        let next = match open_dir_nofollow(dir.as_fd(), name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rfs::mkdirat(dir.as_fd(), name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(dir_err(&path, e.into())),
                }
                let fd = open_dir_nofollow(dir.as_fd(), name).map_err(|e| match e {
                    Errno::LOOP | Errno::NOTDIR => DestError::Unsafe { path: path.clone() },
                    e => dir_err(&path, e.into()),
                })?;
                warnings.extend(apply_owner(fd.as_fd(), dir_owner, &path));
                rfs::fsync(&dir).map_err(|e| dir_err(&path, e.into()))?;
                created.push(path.clone());
                fd
            }
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(DestError::Unsafe { path: path.clone() })
            }
            Err(e) => return Err(dir_err(&path, e.into())),
        };
        dir = next;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn dest_dirs_do_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let mut created = Vec::new();
        let mut warnings = Vec::new();
        let dirs = Resolved {
            uid: None,
            gid: None,
            mode: 0o751,
        };
        open_dest_dir(
            &root,
            Path::new("u/sub"),
            false,
            &dirs,
            &mut created,
            &mut warnings,
        )
        .unwrap();
        assert_eq!(
            created,
            vec![root.clone(), root.join("u"), root.join("u/sub")]
        );
        assert_eq!(
            std::fs::metadata(root.join("u")).unwrap().mode() & 0o7777,
            0o751
        );
        std::os::unix::fs::symlink(&elsewhere, root.join("evil")).unwrap();
        let e = open_dest_dir(
            &root,
            Path::new("evil/x"),
            false,
            &dirs,
            &mut created,
            &mut warnings,
        )
        .unwrap_err();
        assert!(matches!(e, DestError::Unsafe { .. }), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(warnings.is_empty());
    }
}
