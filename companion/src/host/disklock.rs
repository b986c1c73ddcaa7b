//! One rescue per disk: every disk a rescue attaches is locked (`flock`, exclusive, on the disk
//! file or device node itself) for the whole run, so a second rescue naming the same disk is
//! refused before it boots anything, and a killed run's lock goes with its process. The
//! holder is named from `/proc/locks` where it can be found.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

/// Why a disk could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DiskLockError {
    #[error("disk {}: cannot open it to lock it: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "disk {} is in use by another rescue{}; wait for it to finish or stop it, then try again",
        path.display(),
        holder.as_ref().map_or_else(String::new, |h| format!(" ({h})"))
    )]
    Busy {
        path: PathBuf,
        holder: Option<String>,
    },
    #[error("disk {}: lock: {source}", path.display())]
    Lock { path: PathBuf, source: Errno },
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DiskLock {
    _file: File,
}

/// Locks `path` for this run.
pub fn lock(path: &Path) -> Result<DiskLock, DiskLockError> {
    let file = File::open(path).map_err(|source| DiskLockError::Open {
        path: path.to_owned(),
        source,
    })?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DiskLock { _file: file }),
        Err(Errno::WOULDBLOCK) => Err(DiskLockError::Busy {
            path: path.to_owned(),
            holder: file.metadata().ok().and_then(|m| holder(&m)),
        }),
        Err(source) => Err(DiskLockError::Lock {
            path: path.to_owned(),
            source,
        }),
    }
}

/// `pid N, COMMAND` of the process holding a FLOCK on the file, from `/proc/locks`.
fn holder(meta: &std::fs::Metadata) -> Option<String> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = flock_holder(&locks, meta.dev(), meta.ino())?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd: String = String::from_utf8_lossy(&cmd)
        .replace('\0', " ")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    Some(if cmd.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid}: {cmd}")
    })
}

/// The pid of a `FLOCK` line of `/proc/locks` for device `dev`, inode `ino` (pure).
/// Lines read `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`, the device in hex.
pub fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let major = rustix::fs::major(dev);
    let minor = rustix::fs::minor(dev);
    locks.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        // Blocked waiters are shown as `1: -> FLOCK ...`.
        if w.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = w.get(5)?.split(':');
        let ma = u32::from_str_radix(id.next()?, 16).ok()?;
        let mi = u32::from_str_radix(id.next()?, 16).ok()?;
        let inode: u64 = id.next()?.parse().ok()?;
        (ma == major && mi == minor && inode == ino).then(|| w[4].parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("disk.img");
        std::fs::write(&img, b"x").unwrap();
        let held = lock(&img).unwrap();
        let e = lock(&img).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DiskLockError::Busy { .. }), "{e:?}");
        assert!(
            text.contains("disk.img") && text.contains("in use"),
            "{text}"
        );
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "the holder is named: {text}"
        );
        drop(held);
        // Free once released. (A process another test spawns at this moment holds a copy of
        // every descriptor until its exec closes them: the lock may outlive the drop briefly.)
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while lock(&img).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "still locked once released"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let e = lock(&d.path().join("gone.img")).unwrap_err().to_string();
        assert!(e.contains("gone.img"), "{e}");
    }

    #[test]
    fn proc_locks_lines_are_read_strictly() {
        let dev = rustix::fs::makedev(0xfd, 0x01);
        let locks = "1: POSIX  ADVISORY  WRITE 77 fd:01:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 fd:01:99 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 555 fd:01:99 0 EOF\n";
        assert_eq!(flock_holder(locks, dev, 99), Some(1234));
        assert_eq!(flock_holder(locks, dev, 98), None);
        assert_eq!(flock_holder("garbage\n: FLOCK\n", dev, 99), None);
    }
}
