//! The report's outcome from what was found: pure.

use vmrescue_protocol::{Filesystem, FsState, FsckStatus, Mode, Outcome};

pub fn outcome(mode: Mode, filesystems: &[Filesystem], fatal: bool) -> Outcome {
    if fatal {
        return Outcome::Failed;
    }
    let checked: Vec<_> = filesystems
        .iter()
        .filter(|f| f.fsck.status != FsckStatus::Skipped)
        .collect();
    if checked.is_empty() {
        return Outcome::NoOs;
    }
    // The checker could not even start on any filesystem: the rescue did not work.
    if checked
        .iter()
        .all(|f| f.fsck.status == FsckStatus::Error && f.fsck.exit_code.is_none())
    {
        return Outcome::Failed;
    }
    let problem_left = checked.iter().any(|f| {
        matches!(f.fsck.status, FsckStatus::Uncorrected | FsckStatus::Error)
            || (mode == Mode::Check && f.state_before != FsState::Clean)
            || (mode == Mode::Repair && f.state_after != FsState::Clean)
    });
    if problem_left {
        Outcome::Unrepaired
    } else if checked
        .iter()
        .any(|f| f.fsck.status == FsckStatus::Corrected)
    {
        Outcome::Repaired
    } else {
        Outcome::Clean
    }
}

/// The outcome once the guest fixes are counted: in check mode a planned fix is a problem left;
/// in repair mode applied fixes make a clean rescue `repaired`, and a fix that failed leaves it
/// `unrepaired`.
pub fn with_guest_fixes(outcome: Outcome, mode: Mode, planned: usize, failed: usize) -> Outcome {
    match (outcome, mode) {
        (Outcome::Clean | Outcome::Repaired, _) if failed > 0 => Outcome::Unrepaired,
        (Outcome::Clean, Mode::Check) if planned > 0 => Outcome::Unrepaired,
        (Outcome::Clean, Mode::Repair) if planned > 0 => Outcome::Repaired,
        (o, _) => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_protocol::Fsck;

    fn fs(status: FsckStatus, before: FsState, after: FsState, code: Option<i32>) -> Filesystem {
        Filesystem {
            device: "/dev/vda".into(),
            fstype: "ext4".into(),
            state_before: before,
            state_after: after,
            fsck: Fsck {
                tool: "e2fsck".into(),
                exit_code: code,
                status,
                passes: vec![],
                undo_files: vec![],
            },
            ..Default::default()
        }
    }

    use FsState::{Clean as C, Errors as E};
    use FsckStatus as S;

    #[test]
    fn repair_outcomes() {
        let m = Mode::Repair;
        assert_eq!(outcome(m, &[], false), Outcome::NoOs);
        assert_eq!(
            outcome(m, &[fs(S::Skipped, C, C, None)], false),
            Outcome::NoOs
        );
        assert_eq!(
            outcome(m, &[fs(S::Clean, C, C, Some(0))], false),
            Outcome::Clean
        );
        assert_eq!(
            outcome(
                m,
                &[fs(S::Corrected, E, C, Some(1)), fs(S::Clean, C, C, Some(0))],
                false
            ),
            Outcome::Repaired
        );
        assert_eq!(
            outcome(
                m,
                &[
                    fs(S::Corrected, E, C, Some(1)),
                    fs(S::Uncorrected, E, E, Some(4))
                ],
                false
            ),
            Outcome::Unrepaired
        );
        assert_eq!(
            outcome(m, &[fs(S::Corrected, E, E, Some(1))], false),
            Outcome::Unrepaired
        );
        assert_eq!(
            outcome(m, &[fs(S::Error, C, C, None)], false),
            Outcome::Failed
        );
        assert_eq!(
            outcome(m, &[fs(S::Error, C, C, Some(8))], false),
            Outcome::Unrepaired
        );
        assert_eq!(
            outcome(m, &[fs(S::Clean, C, C, Some(0))], true),
            Outcome::Failed
        );
    }

    #[test]
    fn guest_fixes_count() {
        use Outcome::*;
        assert_eq!(with_guest_fixes(Clean, Mode::Check, 0, 0), Clean);
        assert_eq!(with_guest_fixes(Clean, Mode::Check, 2, 0), Unrepaired);
        assert_eq!(with_guest_fixes(Clean, Mode::Repair, 2, 0), Repaired);
        assert_eq!(with_guest_fixes(Repaired, Mode::Repair, 2, 1), Unrepaired);
        assert_eq!(with_guest_fixes(NoOs, Mode::Repair, 0, 0), NoOs);
        assert_eq!(with_guest_fixes(Unrepaired, Mode::Repair, 3, 0), Unrepaired);
    }

    #[test]
    fn check_mode_reports_problems_as_unrepaired() {
        let m = Mode::Check;
        assert_eq!(
            outcome(m, &[fs(S::Clean, C, C, Some(0))], false),
            Outcome::Clean
        );
        assert_eq!(
            outcome(m, &[fs(S::Uncorrected, E, E, Some(4))], false),
            Outcome::Unrepaired
        );
        // e2fsck -n found nothing but the kernel had flagged errors: still a problem to fix.
        assert_eq!(
            outcome(m, &[fs(S::Clean, E, E, Some(0))], false),
            Outcome::Unrepaired
        );
    }
}
