//! One file in a directory: read it back (regular files only), its security attributes, and
//! replace it (temporary file beside it, fsync, rename, fsync the directory).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{
    self as rfs, openat, renameat_with, unlinkat, AtFlags, FileType, Gid, Mode, OFlags,
    RenameFlags, Uid,
};
use rustix::io::Errno;

use super::{io, sys, AtomicError, Perm, MAX_FILE};

static TMP_SEQ: AtomicU32 = AtomicU32::new(0);

pub(super) fn read_at(
    dir: &OwnedFd,
    name: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, AtomicError> {
    Ok(existing(dir, name, path)?.map(|(data, _)| data))
}

/// The content and status of an existing regular file; `None` if absent. Refuses symlinks and
/// other file types: replacing them could break what the guest means by them.
pub(super) fn existing(
    dir: &OwnedFd,
    name: &str,
    path: &str,
) -> Result<Option<(Vec<u8>, rfs::Stat)>, AtomicError> {
    let fd = match openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => {
            return Err(AtomicError::Symlink {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(sys(path, "open")(e)),
    };
    let st = rfs::fstat(&fd).map_err(sys(path, "stat"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(AtomicError::NotRegular {
            path: path.to_owned(),
        });
    }
    if st.st_size as u64 > MAX_FILE {
        return Err(AtomicError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut data = Vec::new();
    File::from(fd)
        .take(MAX_FILE)
        .read_to_end(&mut data)
        .map_err(io(path, "read"))?;
    Ok(Some((data, st)))
}

/// Extended attributes that carry security meaning (SELinux labels, ACLs): a replacement file
/// must keep them, or an enforcing guest denies its services access to it.
fn keeps(name: &str) -> bool {
    name.starts_with("security.") || name.starts_with("system.posix_acl_")
}

/// The security attributes of an existing file (empty where there are none or none readable).
pub(super) fn existing_labels(dir: &OwnedFd, name: &str) -> Vec<(String, Vec<u8>)> {
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

/// `.NAME.vmrescue-tmp.PID.NANOS.SEQ`: PID 1 is always pid 1, so the clock and a counter keep
/// names apart across rescues.
pub(super) fn temp_name(name: &str) -> String {
    format!(
        ".{name}.vmrescue-tmp.{}.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether `name` is one of [`temp_name`]'s (what a stopped run may leave behind).
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((base, numbers)) = rest.rsplit_once(".vmrescue-tmp.") else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    !base.is_empty()
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 40 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// [`replace_labelled`] without attributes to carry over.
pub(super) fn replace(
    dir: &OwnedFd,
    name: &str,
    path: &str,
    content: &[u8],
    perm: Perm,
    flags: RenameFlags,
) -> Result<(), AtomicError> {
    replace_labelled(dir, name, path, content, perm, flags, &[])
}

/// Temp file, write, owner, mode and security attributes, fsync, rename over `name`, fsync the
/// directory. The temp file is removed on any failure before the rename.
pub(super) fn replace_labelled(
    dir: &OwnedFd,
    name: &str,
    path: &str,
    content: &[u8],
    perm: Perm,
    flags: RenameFlags,
    labels: &[(String, Vec<u8>)],
) -> Result<(), AtomicError> {
    // A name left by a killed earlier run is skipped.
    let mut attempt = 0;
    let (tmp, fd) = loop {
        let tmp = temp_name(name);
        match openat(
            dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => break (tmp, fd),
            Err(Errno::EXIST) if attempt < 10 => attempt += 1,
            Err(e) => return Err(sys(path, "create temporary file")(e)),
        }
    };
    let result = (|| {
        let mut f = File::from(fd);
        f.write_all(content).map_err(io(path, "write"))?;
        rfs::fchown(
            f.as_fd(),
            Some(Uid::from_raw(perm.uid)),
            Some(Gid::from_raw(perm.gid)),
        )
        .map_err(sys(path, "chown"))?;
        rfs::fchmod(f.as_fd(), Mode::from_raw_mode(perm.mode)).map_err(sys(path, "chmod"))?;
        for (k, v) in labels {
            rfs::fsetxattr(f.as_fd(), k.as_str(), v, rfs::XattrFlags::empty()).map_err(
                |source| AtomicError::Label {
                    path: path.to_owned(),
                    attribute: k.clone(),
                    source,
                },
            )?;
        }
        f.sync_all().map_err(io(path, "fsync"))?;
        renameat_with(dir, &tmp, dir, name, flags).map_err(sys(path, "rename"))
    })();
    if let Err(e) = result {
        let _ = unlinkat(dir, &tmp, AtFlags::empty());
        return Err(e);
    }
    rfs::fsync(dir).map_err(sys(path, "fsync directory"))
}
