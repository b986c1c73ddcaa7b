//! The report's own entries: a change for every filesystem fsck corrected, and the whole
//! report saved on the repaired root (which is unmounted then).

use vmrescue_protocol::{Change, ChangeKind, Filesystem, FsckStatus, Mode, Report, Step};

use super::fixes::RootMount;
use crate::reporter::Reporter;
use crate::{apply, atomic};

/// The report's change entry for every filesystem fsck corrected (repair mode only).
pub fn fsck_changes(mode: Mode, filesystems: &[Filesystem]) -> Vec<Change> {
    filesystems
        .iter()
        .filter(|fs| mode == Mode::Repair && fs.fsck.status == FsckStatus::Corrected)
        .map(|fs| Change {
            kind: ChangeKind::Fsck,
            path: fs.device.clone(),
            detail: format!(
                "{} corrected the filesystem (exit {})",
                fs.fsck.tool,
                fs.fsck.exit_code.unwrap_or(-1)
            ),
            ..Default::default()
        })
        .collect()
}

/// Saves the whole report on the repaired root and unmounts it. The saved copy names itself
/// (`report_file` and a change entry) and holds the warnings gathered so far; when it cannot
/// be saved, neither is left in the report.
pub fn save(root: RootMount, report: &mut Report, rep: &mut Reporter) {
    let path = apply::report_path(&root.stamp);
    report.report_file = Some(format!("{}:{path}", root.device));
    report.changes.push(Change {
        kind: ChangeKind::Report,
        path: path.clone(),
        device: Some(root.device.clone()),
        detail: "this report, saved on the repaired root".into(),
        ..Default::default()
    });
    // The warnings gathered so far belong in the saved copy too.
    report.warnings = rep.warnings.clone();
    report.elapsed_s = rep.elapsed();
    let saved = atomic::Root::open(root.tree.path())
        .map_err(apply::ApplyError::from)
        .and_then(|r| apply::save_report(&r, report, &root.stamp));
    if let Err(e) = saved {
        report.changes.pop();
        report.report_file = None;
        rep.warn(
            Step::Report,
            Some(&root.device),
            format!("cannot save the report on the root: {e}"),
        );
    } else {
        rep.progress(
            Step::Report,
            Some(&root.device),
            format!("report saved as {path}"),
        );
    }
    if let Err(e) = root.tree.unmount() {
        rep.warn(Step::Report, Some(&root.device), e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_protocol::Fsck;

    fn fs(device: &str, tool: &str, status: FsckStatus, exit_code: Option<i32>) -> Filesystem {
        Filesystem {
            device: device.into(),
            fstype: "ext4".into(),
            fsck: Fsck {
                tool: tool.into(),
                exit_code,
                status,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_change_for_each_corrected_filesystem_in_repair_mode_only() {
        let all = vec![
            fs("/dev/vda1", "e2fsck", FsckStatus::Corrected, Some(1)),
            fs("/dev/vda2", "e2fsck", FsckStatus::Clean, Some(0)),
            fs("/dev/vdb", "xfs_repair", FsckStatus::Corrected, None),
            fs("/dev/vdc", "e2fsck", FsckStatus::Uncorrected, Some(4)),
            fs("/dev/vdd", "fsck.fat", FsckStatus::Skipped, None),
        ];
        let changes = fsck_changes(Mode::Repair, &all);
        assert_eq!(
            changes,
            [
                Change {
                    kind: ChangeKind::Fsck,
                    path: "/dev/vda1".into(),
                    detail: "e2fsck corrected the filesystem (exit 1)".into(),
                    ..Default::default()
                },
                Change {
                    kind: ChangeKind::Fsck,
                    path: "/dev/vdb".into(),
                    detail: "xfs_repair corrected the filesystem (exit -1)".into(),
                    ..Default::default()
                },
            ]
        );
        assert!(changes
            .iter()
            .all(|c| c.device.is_none() && c.backup.is_none()));
        assert_eq!(
            fsck_changes(Mode::Check, &all),
            [],
            "check mode changes nothing"
        );
        assert_eq!(fsck_changes(Mode::Repair, &[]), []);
    }
}
