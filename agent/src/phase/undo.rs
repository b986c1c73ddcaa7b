//! The host's undo scratch disk: found among the scanned disks by the ext4 filesystem UUID the
//! host announced, set apart from the guest's disks (never checked, never inspected) and, in
//! repair mode, mounted read-write so that e2fsck keeps its undo files on it.

use std::path::{Path, PathBuf};

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::inventory::DiskScan;
use vmrescue_protocol::paths::UNDO_DIR;
use vmrescue_protocol::{Mode, Step};

use crate::inspect::MountedTree;
use crate::reporter::Reporter;

/// What the undo scratch disk is marked as among the scans (so nothing else touches it).
pub const MEDIUM: &str = "undo scratch disk";

/// The undo scratch disk, mounted, and the directory on it for e2fsck's undo files.
pub struct UndoDisk {
    tree: MountedTree,
    dir: PathBuf,
}

impl UndoDisk {
    /// Where e2fsck writes its undo files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts the disk once the checks are done.
    pub fn release(self, rep: &mut Reporter) {
        if let Err(e) = self.tree.unmount() {
            rep.warn(Step::Fsck, None, format!("undo scratch disk: {e}"));
        }
    }
}

/// Which scanned volume is the undo scratch disk: the first ext4 filesystem whose UUID is
/// `uuid` (case-insensitive), as (index of its disk in `scans`, volume name).
pub fn find<'a>(scans: &'a [DiskScan], uuid: &str) -> Option<(usize, &'a str)> {
    scans.iter().enumerate().find_map(|(i, s)| {
        let v = s.volumes.iter().find(|v| {
            v.probe.as_ref().is_some_and(|p| {
                p.fstype == FsType::Ext4
                    && p.uuid
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
            })
        })?;
        Some((i, v.name.as_str()))
    })
}

/// Finds the undo scratch disk (filesystem `uuid`), sets its disk apart from the guest's and,
/// in repair mode, mounts it for e2fsck's undo files.
pub fn attach(
    scans: &mut [DiskScan],
    uuid: &str,
    mode: Mode,
    rep: &mut Reporter,
) -> Option<UndoDisk> {
    let Some((disk, name)) = find(scans, uuid).map(|(i, n)| (i, n.to_owned())) else {
        rep.warn(
            Step::Fsck,
            None,
            format!(
                "the undo scratch disk (filesystem {uuid}) is not attached; no undo files kept"
            ),
        );
        return None;
    };
    if let Some(s) = scans.get_mut(disk) {
        s.medium = Some(MEDIUM.into());
    }
    if mode == Mode::Check {
        return None;
    }
    let dev = format!("/dev/{name}");
    let tree = match MountedTree::mount_rw(&dev, FsType::Ext4, "undo") {
        Ok(t) => t,
        Err(e) => {
            rep.warn(
                Step::Fsck,
                Some(&dev),
                format!("undo scratch disk: {e}; no undo files kept"),
            );
            return None;
        }
    };
    let dir = tree.path().join(UNDO_DIR);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        rep.warn(
            Step::Fsck,
            Some(&dev),
            format!("undo scratch disk: {}: {e}", dir.display()),
        );
        return None;
    }
    rep.progress(
        Step::Fsck,
        Some(&dev),
        "keeping e2fsck undo files on the undo scratch disk",
    );
    Some(UndoDisk { tree, dir })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_discovery::inventory::Volume;
    use vmrescue_discovery::probe::{Probe, Usage};

    fn volume(name: &str, fstype: FsType, uuid: Option<&str>) -> Volume {
        Volume {
            name: name.into(),
            offset: 0,
            size: 1 << 20,
            partition: None,
            probe: Some(Probe {
                fstype,
                uuid: uuid.map(str::to_owned),
                label: None,
                usage: Usage::Filesystem,
                version: None,
                uuid_sub: None,
            }),
            ext_backup: None,
        }
    }

    fn disk(name: &str, volumes: Vec<Volume>) -> DiskScan {
        DiskScan {
            name: name.into(),
            size: 1 << 30,
            table: None,
            medium: None,
            volumes,
            warnings: vec![],
        }
    }

    const UNDO: &str = "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab";

    #[test]
    fn the_undo_disk_is_the_ext4_filesystem_with_the_announced_uuid() {
        let scans = vec![
            disk(
                "vda",
                vec![
                    volume(
                        "vda1",
                        FsType::Ext4,
                        Some("11111111-2222-3333-4444-555555555555"),
                    ),
                    // Same UUID, wrong type: a guest filesystem, not the scratch disk.
                    volume("vda2", FsType::Xfs, Some(UNDO)),
                    volume("vda3", FsType::Ext3, Some(UNDO)),
                ],
            ),
            disk(
                "vdb",
                vec![volume("vdb", FsType::Ext4, Some(&UNDO.to_uppercase()))],
            ),
        ];
        assert_eq!(find(&scans, UNDO), Some((1, "vdb")), "case-insensitive");
        assert_eq!(find(&scans, &UNDO.to_uppercase()), Some((1, "vdb")));
        assert_eq!(find(&scans[..1], UNDO), None);
        assert_eq!(
            find(&scans, "0b1c2d3e"),
            None,
            "the whole UUID, not a prefix"
        );
        assert_eq!(find(&[], UNDO), None);
        let unprobed = disk(
            "vdc",
            vec![Volume {
                probe: None,
                ..volume("vdc", FsType::Ext4, None)
            }],
        );
        assert_eq!(find(&[unprobed], UNDO), None);
    }
}
