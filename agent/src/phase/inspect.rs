//! Inspecting: every filesystem mounted read-only (no journal replay) to find the OS root and
//! its fstab, and the report's discovery sections from what was found, overlaid with what the
//! checks found.

use std::path::Path;

use vmrescue_discovery::assemble;
use vmrescue_discovery::ext::State;
use vmrescue_discovery::inventory::{DiskScan, Volume};
use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::params::Settings;
use vmrescue_protocol::{Disk, Filesystem, Report, Step};

use crate::disks;
use crate::inspect::MountedTree;
use crate::reporter::Reporter;

/// Discovery's sections, each filesystem mounted read-only (no journal replay) to look inside.
/// Before fsck (`before_fsck`) only ext filesystems whose superblock records no error are
/// mounted: a damaged filesystem is not handed to the kernel until it has been checked.
pub fn sections(scans: &[DiskScan], settings: &Settings, before_fsck: bool) -> assemble::Found {
    let mut open_tree = |v: &Volume| -> Option<Box<dyn Tree>> {
        let fstype = v.probe.as_ref()?.fstype;
        let dev = format!("/dev/{}", v.name);
        if before_fsck {
            match disks::probe_ext(Path::new(&dev)) {
                Ok(Some(sb)) if sb.state != State::Errors => {}
                _ => return None,
            }
        }
        match MountedTree::mount(&dev, fstype, &v.name) {
            Ok(t) => Some(Box::new(t)),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    };
    assemble::assemble(scans, "/dev/", &mut open_tree, settings.root.as_deref())
}

/// Looks for the OS root and fills the report's discovery sections (`disks` as sysfs shows
/// them, the filesystems as `checked`).
pub fn run(
    scans: &[DiskScan],
    disks: &[Disk],
    checked: &[Filesystem],
    settings: &Settings,
    report: &mut Report,
    rep: &mut Reporter,
) {
    rep.progress(Step::Inspect, None, "looking for the OS root");
    let found = sections(scans, settings, false);
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
