//! Read-only views of the guest's filesystems, for OS evidence. Each filesystem is mounted
//! read-only by its device path (never by UUID or label: duplicates are real) without journal
//! replay, and every path is resolved inside the mount with openat2(RESOLVE_IN_ROOT): a guest
//! symlink such as `/etc -> /proc` cannot lead outside its filesystem.

use std::ffi::{CString, NulError};
use std::fs;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::osroot::Tree;

/// Where inspection mounts go.
pub const BASE: &str = "/run/vmrescue/inspect";
/// Names listed from one directory at most.
const MAX_LIST: usize = 10_000;

/// Why a filesystem (or directory) could not be opened as a tree, or unmounted.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// No kernel driver the rescue uses mounts this type.
    #[error("{device}: cannot mount {fstype}")]
    NotMountable { device: String, fstype: FsType },
    #[error("creating the mount point {}: {source}", path.display())]
    MountPoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount options {options:?}: {source}")]
    Options { options: String, source: NulError },
    #[error("mounting {device} ({fstype}) {}: {source}", if *writable { "read-write" } else { "read-only" })]
    Mount {
        device: String,
        fstype: FsType,
        writable: bool,
        source: Errno,
    },
    /// The mounted filesystem's root (or the directory) could not be opened.
    #[error("{}: {source}", path.display())]
    OpenRoot { path: PathBuf, source: Errno },
    #[error("unmounting {}: {source} (detached instead)", path.display())]
    Unmount { path: PathBuf, source: Errno },
}

/// A filesystem mounted read-only; unmounted on drop.
pub struct MountedTree {
    /// The mount's root (taken, so closed, before unmounting: an open fd keeps it busy).
    root: Option<OwnedFd>,
    mountpoint: PathBuf,
    /// Unmount on drop (false for a plain directory).
    mounted: bool,
}

/// Mount options with a btrfs subvolume added (`Some("")`: the top level); others unchanged.
fn with_subvol(options: &str, fstype: FsType, subvol: Option<&str>) -> String {
    let extra = match (fstype, subvol) {
        (FsType::Btrfs, Some("")) => "subvolid=5".to_owned(),
        (FsType::Btrfs, Some(s)) => format!("subvol={s}"),
        _ => return options.to_owned(),
    };
    if options.is_empty() {
        extra
    } else {
        format!("{options},{extra}")
    }
}

fn not_mountable(device: &str, fstype: FsType) -> InspectError {
    InspectError::NotMountable {
        device: device.to_owned(),
        fstype,
    }
}

impl MountedTree {
    /// Mounts read-only without journal replay ([`FsType::inspect_mount`]), for inspection.
    pub fn mount(device: &str, fstype: FsType, name: &str) -> Result<MountedTree, InspectError> {
        Self::mount_in(device, fstype, name, None)
    }

    /// [`MountedTree::mount`] of the btrfs subvolume `subvol` (`None`: the default one;
    /// `Some("")`: the top level, whatever the default).
    pub fn mount_in(
        device: &str,
        fstype: FsType,
        name: &str,
        subvol: Option<&str>,
    ) -> Result<MountedTree, InspectError> {
        let how = fstype
            .inspect_mount()
            .ok_or_else(|| not_mountable(device, fstype))?;
        let options = with_subvol(how.no_replay, fstype, subvol);
        Self::mount_with(device, fstype, how.driver, &options, name, false)
    }

    /// Mounts read-only with `driver` as it is (for media the rescue only reads, such as a
    /// config drive's ISO 9660).
    pub fn mount_plain(
        device: &str,
        fstype: FsType,
        driver: &'static str,
        name: &str,
    ) -> Result<MountedTree, InspectError> {
        Self::mount_with(device, fstype, driver, "", name, false)
    }

    /// Mounts read-write, to apply the repair plan (only after fsck left it consistent): journals
    /// and logs replay normally.
    pub fn mount_rw(device: &str, fstype: FsType, name: &str) -> Result<MountedTree, InspectError> {
        Self::mount_rw_in(device, fstype, name, None)
    }

    /// [`MountedTree::mount_rw`] of the btrfs subvolume `subvol`.
    pub fn mount_rw_in(
        device: &str,
        fstype: FsType,
        name: &str,
        subvol: Option<&str>,
    ) -> Result<MountedTree, InspectError> {
        let driver = fstype
            .driver()
            .ok_or_else(|| not_mountable(device, fstype))?;
        let options = with_subvol("", fstype, subvol);
        Self::mount_with(device, fstype, driver, &options, name, true)
    }

    /// The top-level directories that are btrfs subvolumes (a subvolume's root directory is
    /// inode 256), sorted by name.
    pub fn subvolumes(&self) -> Vec<String> {
        let Some(root) = self.root.as_ref() else {
            return Vec::new();
        };
        let mut out: Vec<String> = fs::read_dir(&self.mountpoint)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                let st =
                    rustix::fs::statat(root, name.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .ok()?;
                (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
                    && st.st_ino == 256)
                    .then_some(name)
            })
            .collect();
        out.sort();
        out
    }

    fn mount_with(
        device: &str,
        fstype: FsType,
        driver: &str,
        options: &str,
        name: &str,
        writable: bool,
    ) -> Result<MountedTree, InspectError> {
        let mountpoint = Path::new(BASE).join(name);
        fs::create_dir_all(&mountpoint).map_err(|source| InspectError::MountPoint {
            path: mountpoint.clone(),
            source,
        })?;
        let data = CString::new(options).map_err(|source| InspectError::Options {
            options: options.to_owned(),
            source,
        })?;
        for failure in crate::modules::ensure_fs(driver) {
            log::warn!("{device}: {failure}");
        }
        let mut flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        if !writable {
            flags |= MountFlags::RDONLY;
        }
        mount(device, &mountpoint, driver, flags, data.as_c_str()).map_err(|source| {
            InspectError::Mount {
                device: device.to_owned(),
                fstype,
                writable,
                source,
            }
        })?;
        let root = match rustix::fs::open(
            &mountpoint,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(source) => {
                let _ = unmount(&mountpoint, UnmountFlags::DETACH);
                return Err(InspectError::OpenRoot {
                    path: mountpoint,
                    source,
                });
            }
        };
        Ok(MountedTree {
            root: Some(root),
            mountpoint,
            mounted: true,
        })
    }

    /// A plain directory seen as a tree (an operator's reference `/etc`, tests).
    pub fn directory(path: &Path) -> Result<MountedTree, InspectError> {
        let root = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| InspectError::OpenRoot {
            path: path.to_owned(),
            source,
        })?;
        Ok(MountedTree {
            root: Some(root),
            mountpoint: path.to_owned(),
            mounted: false,
        })
    }

    /// Where it is mounted (or the directory).
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Flushes and unmounts now, reporting failure (drop only logs it).
    pub fn unmount(mut self) -> Result<(), InspectError> {
        self.mounted = false;
        self.root = None;
        rustix::fs::sync();
        if let Err(source) = unmount(&self.mountpoint, UnmountFlags::empty()) {
            // Detached, it is at least unmounted once its last user is gone.
            let _ = unmount(&self.mountpoint, UnmountFlags::DETACH);
            return Err(InspectError::Unmount {
                path: std::mem::take(&mut self.mountpoint),
                source,
            });
        }
        let _ = fs::remove_dir(&self.mountpoint);
        Ok(())
    }

    fn open(&self, path: &str, flags: OFlags) -> Option<OwnedFd> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        openat2(
            self.root.as_ref()?,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        )
        .ok()
    }
}

impl MountedTree {
    /// A regular file of the tree, opened for reading (symbolic links followed inside it).
    pub fn open_file(&self, path: &str) -> Option<fs::File> {
        let fd = self.open(path, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd).ok()?;
        (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile)
            .then(|| fs::File::from(fd))
    }
}

impl Drop for MountedTree {
    fn drop(&mut self) {
        self.root = None;
        if !self.mounted {
            return;
        }
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

    fn read_tail(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let fd = self.open(path, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return None;
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let cut = size > max as u64;
        // One byte before the tail says whether it starts a line.
        let start = if cut { size - max as u64 - 1 } else { 0 };
        let mut file = fs::File::from(fd);
        file.seek(std::io::SeekFrom::Start(start)).ok()?;
        let mut buf = Vec::new();
        file.take(max as u64 + u64::from(cut))
            .read_to_end(&mut buf)
            .ok()?;
        // A line cut by where the tail starts is no line.
        if cut {
            let first = buf
                .iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |i| i + 1);
            buf.drain(..first);
        }
        Some(buf)
    }

    fn mode(&self, path: &str) -> Option<u32> {
        let fd = self.open(path, OFlags::PATH | OFlags::NOFOLLOW)?;
        rustix::fs::fstat(&fd).ok().map(|st| st.st_mode & 0o7777)
    }

    fn owner(&self, path: &str) -> Option<(u32, u32)> {
        let fd = self.open(path, OFlags::PATH | OFlags::NOFOLLOW)?;
        rustix::fs::fstat(&fd).ok().map(|st| (st.st_uid, st.st_gid))
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
    fn a_tail_is_whole_lines_from_the_end() {
        let g = crate::plan::testing::Guest::new(&[(
            "/var/log/syslog",
            Some("line one\nline two\nline three\n"),
        )]);
        let t = g.tree();
        assert_eq!(t.read_tail("/var/log/syslog", 14).unwrap(), b"line three\n");
        assert_eq!(t.read_tail("/var/log/syslog", 11).unwrap(), b"line three\n");
        assert_eq!(
            t.read_tail("/var/log/syslog", 1000).unwrap(),
            b"line one\nline two\nline three\n"
        );
        assert!(t.read_tail("/var/log", 10).is_none());
    }

    #[test]
    fn a_btrfs_subvolume_is_one_more_mount_option() {
        assert_eq!(
            with_subvol("rescue=nologreplay", FsType::Btrfs, Some("@")),
            "rescue=nologreplay,subvol=@"
        );
        assert_eq!(with_subvol("", FsType::Btrfs, Some("")), "subvolid=5");
        assert_eq!(with_subvol("", FsType::Btrfs, None), "");
        assert_eq!(
            with_subvol("norecovery", FsType::Xfs, Some("@")),
            "norecovery"
        );
    }

    #[test]
    fn unmountable_types_are_refused_before_any_mount() {
        for t in [
            FsType::Swap,
            FsType::CryptoLuks,
            FsType::Jbd,
            FsType::Unknown,
        ] {
            let e = MountedTree::mount("/dev/vdz9", t, "never").err();
            assert!(
                matches!(&e, Some(InspectError::NotMountable { device, fstype }) if device == "/dev/vdz9" && *fstype == t),
                "{e:?}"
            );
            let e = MountedTree::mount_rw("/dev/vdz9", t, "never").err();
            assert_eq!(
                e.map(|e| e.to_string()),
                Some(format!("/dev/vdz9: cannot mount {t}"))
            );
        }
        let e = MountedTree::directory(Path::new("/nonexistent/vmrescue")).err();
        assert!(
            matches!(&e, Some(InspectError::OpenRoot { source, .. }) if *source == Errno::NOENT),
            "{e:?}"
        );
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
        let t = MountedTree::directory(root).unwrap();
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
    }
}
