//! Inspecting: every filesystem mounted read-only (no journal replay) to find the OS root and
//! its fstab, and the report's discovery sections from what was found, overlaid with what the
//! checks found.

use std::path::Path;

use vmrescue_discovery::ext::State;
use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::inventory::{DiskScan, Volume};
use vmrescue_discovery::osroot::Tree;
use vmrescue_discovery::{assemble, bootcfg};
use vmrescue_protocol::params::Settings;
use vmrescue_protocol::{BootConfig, Disk, Filesystem, Report, Step};

use crate::disks;
use crate::inspect::MountedTree;
use crate::reporter::Reporter;

/// Discovery's sections, each filesystem mounted read-only (no journal replay) to look inside.
/// Before fsck (`before_fsck`) only ext filesystems whose superblock records no error are
/// mounted: a damaged filesystem is not handed to the kernel until it has been checked.
pub fn sections(
    scans: &[DiskScan],
    settings: &Settings,
    opened: &assemble::Opened,
    before_fsck: bool,
) -> assemble::Found {
    // The btrfs volumes whose OS tree is in a subvolume, and which one.
    let mut subvols: Vec<(String, String)> = Vec::new();
    let mut open_tree = |v: &Volume| -> Option<Box<dyn Tree>> {
        let fstype = v.probe.as_ref()?.fstype;
        let dev = format!("/dev/{}", v.name);
        if before_fsck {
            match disks::probe_ext(Path::new(&dev)) {
                Ok(Some(sb)) if sb.state != State::Errors => {}
                _ => return None,
            }
        }
        if fstype == FsType::Btrfs {
            let (tree, subvol) = btrfs_tree(&dev, &v.name)?;
            if let Some(s) = subvol {
                subvols.push((dev, s));
            }
            return Some(Box::new(tree));
        }
        match MountedTree::mount(&dev, fstype, &v.name) {
            Ok(t) => Some(Box::new(t)),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    };
    let mut found = assemble::assemble(
        scans,
        "/dev/",
        &mut open_tree,
        settings.root.as_deref(),
        opened,
    );
    found.os.root_subvolume = found
        .os
        .root_device
        .as_ref()
        .and_then(|r| subvols.iter().find(|(d, _)| d == r))
        .map(|(_, s)| s.clone());
    found
}

/// Whether a tree looks like an OS root at its top (what a subvolume search looks for).
fn looks_like_root(t: &MountedTree) -> bool {
    ["etc/fstab", "etc/os-release", "usr/lib/os-release"]
        .iter()
        .any(|p| t.exists(p))
}

/// A btrfs volume's tree for the inspection: its top level when that holds the OS, else the
/// first top-level subvolume that does (Ubuntu's `@`, Fedora's `root`: preferred in that
/// order, then by name), with its name. Subvolume names that could not be passed to `mount`
/// as they are (a comma would add options) are passed over.
fn btrfs_tree(dev: &str, name: &str) -> Option<(MountedTree, Option<String>)> {
    let top = MountedTree::mount_in(dev, FsType::Btrfs, name, Some(""))
        .map_err(|e| log::warn!("{e}"))
        .ok()?;
    if looks_like_root(&top) {
        return Some((top, None));
    }
    let plain = |n: &str| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@_-.+".contains(&b))
    };
    let mut subvols: Vec<String> = top.subvolumes().into_iter().filter(|s| plain(s)).collect();
    let rank = |s: &str| {
        ["@", "root", "@root", "@rootfs"]
            .iter()
            .position(|p| *p == s)
            .unwrap_or(9)
    };
    subvols.sort_by_key(|s| (rank(s), s.clone()));
    let chosen = subvols.into_iter().find(|s| {
        let sub = format!("{s}/");
        ["etc/fstab", "etc/os-release", "usr/lib/os-release"]
            .iter()
            .any(|p| top.exists(&format!("{sub}{p}")))
    });
    let Some(subvol) = chosen else {
        return Some((top, None));
    };
    if let Err(e) = top.unmount() {
        log::warn!("{e}");
        return None;
    }
    match MountedTree::mount_in(dev, FsType::Btrfs, name, Some(&subvol)) {
        Ok(t) => Some((t, Some(subvol))),
        Err(e) => {
            log::warn!("{e}");
            None
        }
    }
}

/// Looks for the OS root and fills the report's discovery sections (`disks` as sysfs shows
/// them, the filesystems as `checked`).
pub fn run(
    scans: &[DiskScan],
    disks: &[Disk],
    checked: &[Filesystem],
    settings: &Settings,
    opened: &assemble::Opened,
    report: &mut Report,
    rep: &mut Reporter,
) {
    rep.progress(Step::Inspect, None, "looking for the OS root");
    let found = sections(scans, settings, opened, false);
    for w in found.warnings {
        rep.warn(Step::Discovery, None, w);
    }
    match &found.os.root_device {
        Some(root) => rep.progress(
            Step::Inspect,
            Some(root),
            format!(
                "OS root: {}",
                found
                    .os
                    .pretty_name
                    .as_deref()
                    .unwrap_or("unknown distribution")
            ),
        ),
        None => rep.progress(Step::Inspect, None, "no OS root identified"),
    }
    report.disks = merge_disks(found.disks, disks);
    report.partitions = found.partitions;
    report.filesystems = merge_filesystems(found.filesystems, checked);
    report.os = Some(found.os);
    report.fstab = found.fstab;
    report.boot_config = boot_config(report, rep);
}

/// The guest's own boot entry, read from its root and the separate /boot its fstab names.
fn boot_config(report: &Report, rep: &mut Reporter) -> Option<BootConfig> {
    let tree = BootTree::mount(report)?;
    let uuid = report
        .filesystems
        .iter()
        .find(|f| f.device == tree.root_dev)
        .and_then(|f| f.uuid.clone());
    match bootcfg::find(&tree, uuid.as_deref()) {
        Ok(e) => {
            rep.progress(
                Step::Inspect,
                Some(&tree.root_dev),
                format!("boots {} ({})", e.kernel, e.method),
            );
            let mut cmdline = e.cmdline;
            // A root in a subvolume: the kernel must be told which (GRUB's entries say so
            // themselves; a line made from the newest kernel does not).
            if let Some(sv) = root_subvolume(report, &tree.root_dev) {
                if cmdline.starts_with("root=") && !cmdline.contains("rootflags=") {
                    cmdline.push_str(&format!(" rootflags=subvol={sv}"));
                }
            }
            Some(BootConfig {
                method: e.method,
                title: e.title,
                kernel: e.kernel,
                initrd: e.initrd,
                cmdline,
            })
        }
        Err(e) => {
            rep.progress(
                Step::Inspect,
                Some(&tree.root_dev),
                format!("boot entry: {e}"),
            );
            None
        }
    }
}

/// The guest's root (read-only, or the repair's read-write mount), with the separate /boot
/// filesystem its fstab names at `/boot`.
pub struct BootTree<'a> {
    pub root_dev: String,
    root: Holder<'a>,
    boot: Option<MountedTree>,
}

enum Holder<'a> {
    Own(MountedTree),
    Lent(&'a MountedTree),
}

impl BootTree<'static> {
    /// Mounts the report's OS root (and its /boot) read-only; `None` without a root or when it
    /// does not mount (logged).
    pub fn mount(report: &Report) -> Option<BootTree<'static>> {
        let root_dev = report.os.as_ref()?.root_device.clone()?;
        let root = mount_fs(report, &root_dev, "bootcfg-root")?;
        Some(BootTree::with_root(report, root_dev, Holder::Own(root)))
    }
}

impl<'a> BootTree<'a> {
    /// Over the root already mounted at `root` (the repair keeps it mounted read-write: a
    /// second, read-only mount of it would be refused).
    pub fn over(report: &Report, root: &'a MountedTree) -> Option<BootTree<'a>> {
        let root_dev = report.os.as_ref()?.root_device.clone()?;
        Some(BootTree::with_root(report, root_dev, Holder::Lent(root)))
    }

    fn with_root(report: &Report, root_dev: String, root: Holder<'a>) -> BootTree<'a> {
        let boot_dev = report.fstab.as_ref().and_then(|f| {
            f.entries
                .iter()
                .find(|e| e.file == "/boot")
                .and_then(|e| e.device.clone())
        });
        let boot = boot_dev
            .filter(|d| *d != root_dev)
            .and_then(|d| mount_fs(report, &d, "bootcfg-boot"));
        BootTree {
            root_dev,
            root,
            boot,
        }
    }

    fn root(&self) -> &MountedTree {
        match &self.root {
            Holder::Own(t) => t,
            Holder::Lent(t) => t,
        }
    }

    fn pick<'p>(&self, path: &'p str) -> (&MountedTree, std::borrow::Cow<'p, str>) {
        if let Some(b) = &self.boot {
            if path == "/boot" {
                return (b, "/".into());
            }
            if let Some(rest) = path.strip_prefix("/boot/") {
                return (b, format!("/{rest}").into());
            }
        }
        (self.root(), path.into())
    }

    /// A regular file, opened for reading.
    pub fn open_file(&self, path: &str) -> Option<std::fs::File> {
        let (t, p) = self.pick(path);
        t.open_file(&p)
    }
}

/// Mounts one of the report's filesystems read-only for reading boot files (logged on failure).
/// The subvolume the OS root is in, when `dev` is the root and it is in one.
pub fn root_subvolume<'r>(report: &'r Report, dev: &str) -> Option<&'r str> {
    let os = report.os.as_ref()?;
    (os.root_device.as_deref() == Some(dev))
        .then_some(os.root_subvolume.as_deref())
        .flatten()
}

fn mount_fs(report: &Report, dev: &str, name: &str) -> Option<MountedTree> {
    let fs = report.filesystems.iter().find(|f| f.device == dev)?;
    MountedTree::mount_in(
        dev,
        FsType::parse(&fs.fstype),
        name,
        root_subvolume(report, dev),
    )
    .map_err(|e| log::warn!("boot entry: {e}"))
    .ok()
}

impl Tree for BootTree<'_> {
    fn exists(&self, path: &str) -> bool {
        let (t, p) = self.pick(path);
        t.exists(&p)
    }
    fn is_dir(&self, path: &str) -> bool {
        let (t, p) = self.pick(path);
        t.is_dir(&p)
    }
    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let (t, p) = self.pick(path);
        t.read(&p, max)
    }
    fn list(&self, path: &str) -> Vec<String> {
        let (t, p) = self.pick(path);
        t.list(&p)
    }
}

/// Discovery's disks with what only sysfs knows (serial, read-only) from `sysfs`, by name.
pub fn merge_disks(found: Vec<Disk>, sysfs: &[Disk]) -> Vec<Disk> {
    found
        .into_iter()
        .map(|d| {
            let sys = sysfs.iter().find(|f| f.name == d.name);
            Disk {
                serial: sys.and_then(|f| f.serial.clone()),
                read_only: sys.is_some_and(|f| f.read_only),
                ..d
            }
        })
        .collect()
}

/// Inspection's filesystems, each replaced by its check result (same device) where there is
/// one, keeping the role and mount point only inspection knows. A check result without an
/// inspected filesystem is dropped; the order is inspection's.
pub fn merge_filesystems(found: Vec<Filesystem>, checked: &[Filesystem]) -> Vec<Filesystem> {
    found
        .into_iter()
        .map(|fs| match checked.iter().find(|c| c.device == fs.device) {
            Some(c) => Filesystem {
                role: fs.role,
                mountpoint: fs.mountpoint,
                ..c.clone()
            },
            None => fs,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_protocol::{FsState, Fsck, FsckStatus};

    fn found(device: &str, role: Option<&str>, mountpoint: Option<&str>) -> Filesystem {
        Filesystem {
            device: device.into(),
            fstype: "ext4".into(),
            uuid: Some(format!("uuid-of-{device}")),
            role: role.map(str::to_owned),
            mountpoint: mountpoint.map(str::to_owned),
            ..Default::default()
        }
    }

    fn checked(device: &str, fstype: &str, status: FsckStatus) -> Filesystem {
        Filesystem {
            device: device.into(),
            // e2fsck's superblock read may name the type more exactly than the probe did.
            fstype: fstype.into(),
            uuid: Some(format!("uuid-of-{device}")),
            state_before: FsState::Errors,
            state_after: FsState::Clean,
            error_count_before: 3,
            fsck: Fsck {
                tool: "e2fsck".into(),
                exit_code: Some(1),
                status,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn check_results_overlay_inspection_keeping_role_and_mountpoint() {
        let inspected = vec![
            found("/dev/vda1", Some("root"), Some("/")),
            found("/dev/vda2", Some("swap"), None),
            found("/dev/vdb", Some("data"), Some("/srv")),
        ];
        let results = vec![
            checked("/dev/vdb", "ext3", FsckStatus::Clean),
            checked("/dev/vda1", "ext4", FsckStatus::Corrected),
            // Checked but not inspected (e.g. vanished meanwhile): not in the report.
            checked("/dev/vdc", "ext4", FsckStatus::Clean),
        ];
        let merged = merge_filesystems(inspected.clone(), &results);
        let devices: Vec<_> = merged.iter().map(|f| f.device.as_str()).collect();
        assert_eq!(devices, ["/dev/vda1", "/dev/vda2", "/dev/vdb"]);

        let root = &merged[0];
        assert_eq!(root.fsck.status, FsckStatus::Corrected);
        assert_eq!(
            (root.state_before, root.state_after),
            (FsState::Errors, FsState::Clean)
        );
        assert_eq!(root.error_count_before, 3);
        assert_eq!(root.role.as_deref(), Some("root"));
        assert_eq!(root.mountpoint.as_deref(), Some("/"));

        assert_eq!(merged[1], inspected[1], "not checked: as inspected");

        let data = &merged[2];
        assert_eq!(data.fstype, "ext3", "the check's type wins");
        assert_eq!(data.role.as_deref(), Some("data"));
        assert_eq!(data.mountpoint.as_deref(), Some("/srv"));
        assert_eq!(data.fsck.tool, "e2fsck");

        assert_eq!(merge_filesystems(inspected.clone(), &[]), inspected);
        assert!(merge_filesystems(vec![], &results).is_empty());
    }

    #[test]
    fn sysfs_adds_serial_and_read_only_by_name() {
        let disk = |name: &str| Disk {
            name: name.into(),
            size_bytes: 1 << 30,
            pttype: Some("gpt".into()),
            ..Default::default()
        };
        let sysfs = vec![
            Disk {
                serial: Some("vmrescue-d2".into()),
                read_only: true,
                ..disk("vdb")
            },
            Disk {
                serial: Some("ignored".into()),
                ..disk("vdz")
            },
        ];
        let merged = merge_disks(vec![disk("vda"), disk("vdb")], &sysfs);
        assert_eq!(merged.len(), 2);
        assert_eq!(
            (merged[0].serial.as_deref(), merged[0].read_only),
            (None, false)
        );
        assert_eq!(
            (merged[1].serial.as_deref(), merged[1].read_only),
            (Some("vmrescue-d2"), true)
        );
        assert_eq!(
            merged[1].pttype.as_deref(),
            Some("gpt"),
            "discovery's fields kept"
        );
    }
}
