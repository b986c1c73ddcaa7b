//! Read-only views of the guest's filesystems, for OS evidence. Each filesystem is mounted
//! read-only by its device path (never by UUID or label: duplicates are real) without journal
//! replay, and every path is resolved inside the mount with openat2(RESOLVE_IN_ROOT): a guest
//! symlink such as `/etc -> /proc` cannot lead outside its filesystem.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use vmrescue_discovery::osroot::Tree;

/// Where inspection mounts go.
const BASE: &str = "/run/vmrescue/inspect";
/// Names listed from one directory at most.
const MAX_LIST: usize = 10_000;

/// Filesystem driver and options that mount `fstype` read-only without replaying a journal.
pub fn mount_options(fstype: &str) -> Option<(&'static str, &'static str)> {
    match fstype {
        // The ext4 driver serves ext2 and ext3 too; noload skips the journal.
        "ext2" | "ext3" | "ext4" => Some(("ext4", "noload")),
        "xfs" => Some(("xfs", "norecovery")),
        "btrfs" => Some(("btrfs", "rescue=nologreplay")),
        "vfat" => Some(("vfat", "")),
        _ => None,
    }
}

/// A filesystem mounted read-only; unmounted on drop.
pub struct MountedTree {
    root: OwnedFd,
    mountpoint: PathBuf,
}

impl MountedTree {
    pub fn mount(device: &str, fstype: &str, name: &str) -> Result<MountedTree, String> {
        let (driver, options) =
            mount_options(fstype).ok_or_else(|| format!("{device}: cannot mount {fstype}"))?;
        let mountpoint = Path::new(BASE).join(name);
        fs::create_dir_all(&mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let data = CString::new(options).map_err(|e| e.to_string())?;
        let flags =
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        mount(device, &mountpoint, driver, flags, data.as_c_str())
            .map_err(|e| format!("mounting {device} ({fstype}) read-only: {e}"))?;
        let root = match rustix::fs::open(
            &mountpoint,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = unmount(&mountpoint, UnmountFlags::DETACH);
                return Err(format!("{}: {e}", mountpoint.display()));
            }
        };
        Ok(MountedTree { root, mountpoint })
    }

    fn open(&self, path: &str, flags: OFlags) -> Option<OwnedFd> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        openat2(
            &self.root,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        )
        .ok()
    }
}

impl Drop for MountedTree {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.mountpoint, UnmountFlags::empty()) {
            log::warn!("unmounting {}: {e}; detaching", self.mountpoint.display());
            let _ = unmount(&self.mountpoint, UnmountFlags::DETACH);
        }
        let _ = fs::remove_dir(&self.mountpoint);
    }
}

impl Tree for MountedTree {
    fn exists(&self, path: &str) -> bool {
        self.open(path, OFlags::PATH | OFlags::NOFOLLOW).is_some()
    }

    fn is_dir(&self, path: &str) -> bool {
        self.open(path, OFlags::PATH | OFlags::DIRECTORY).is_some()
    }

    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let fd = self.open(path, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return None;
        }
        let mut buf = Vec::new();
        fs::File::from(fd)
            .take(max as u64)
            .read_to_end(&mut buf)
            .ok()?;
        Some(buf)
    }

    fn list(&self, path: &str) -> Vec<String> {
        let Some(fd) = self.open(path, OFlags::RDONLY | OFlags::DIRECTORY) else {
            return Vec::new();
        };
        let Ok(dir) = rustix::fs::Dir::new(fd) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| n != "." && n != "..")
            .take(MAX_LIST)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_never_replay_journals() {
        assert_eq!(mount_options("ext3"), Some(("ext4", "noload")));
        assert_eq!(mount_options("xfs"), Some(("xfs", "norecovery")));
        assert_eq!(mount_options("swap"), None);
        assert_eq!(mount_options("crypto_LUKS"), None);
    }

    /// The tree logic on a plain directory (no mount needed): symlinks stay inside the root.
    #[test]
    fn paths_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("usr/lib/os-release"), "ID=debian\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname-outside", root.join("etc/evil")).unwrap();
        std::os::unix::fs::symlink("/usr", root.join("abs")).unwrap();
        let t = MountedTree {
            root: rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap(),
            mountpoint: PathBuf::from("/nonexistent-not-mounted"),
        };
        assert_eq!(t.read("/etc/os-release", 100).unwrap(), b"ID=debian\n");
        assert!(t.exists("/etc/evil"), "the link itself exists");
        assert_eq!(
            t.read("/etc/evil", 100),
            None,
            "but does not reach the host's /etc"
        );
        assert!(t.is_dir("/abs"), "absolute links resolve inside the root");
        assert!(t.read("/etc/../../../../etc/passwd", 100).is_none());
        let mut names = t.list("/");
        names.sort();
        assert_eq!(names, ["abs", "etc", "usr"]);
        assert!(!t.is_dir("/etc/os-release"));
        std::mem::forget(t); // not mounted: nothing to unmount
    }
}
