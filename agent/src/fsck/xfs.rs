//! xfs policy. `xfs_repair` refuses to run on a dirty log (exit 2) and `-n` ignores one, so:
//!
//! - check mode: `xfs_repair -n`; a dirty log or any inconsistency is reported, never fixed;
//! - repair mode: `xfs_repair -n` first. Clean: done. A dirty log is replayed by mounting and
//!   unmounting (the kernel replays it), then `-n` again. What is still inconsistent gets
//!   `xfs_repair`, then a verifying `-n`. When the log cannot be replayed, `xfs_repair -L`
//!   (which zeroes the log and loses its transactions) runs only if the operator allowed it.

use vmrescue_protocol::{FsState, Fsck, FsckStatus, Mode};

use super::{Runner, Session};

/// What xfs_repair's exit code means (0 clean, 1 inconsistent, 2 dirty log).
pub fn status_of(code: Option<i32>) -> FsckStatus {
    match code {
        Some(0) => FsckStatus::Clean,
        Some(1 | 2) => FsckStatus::Uncorrected,
        _ => FsckStatus::Error,
    }
}

/// Whether xfs_repair's output says the log holds changes not yet replayed.
pub fn mentions_dirty_log(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        l.contains("metadata changes in a log") || l.contains("log which needs to be replayed")
    })
}

/// The result with the filesystem's state before and after, as xfs has no state flag to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub fsck: Fsck,
    pub before: FsState,
    pub after: FsState,
}

/// Mounts and unmounts to let the kernel replay the log; records it among the passes.
fn replay_log<R: Runner>(
    s: &mut Session<'_, R>,
    dev: &str,
    replay: &mut dyn FnMut() -> Result<(), String>,
) -> bool {
    match replay() {
        Ok(()) => {
            s.note(&["mount", dev, "(log replay)", "umount"], true, vec![]);
            true
        }
        Err(e) => {
            s.note(&["mount", dev, "(log replay)"], false, vec![e]);
            false
        }
    }
}

/// Checks (and in repair mode repairs) one xfs filesystem. `replay` mounts and unmounts it.
pub fn xfs<R: Runner>(
    tool: &str,
    dev: &str,
    mode: Mode,
    zero_log: bool,
    replay: &mut dyn FnMut() -> Result<(), String>,
    runner: &mut R,
) -> Checked {
    let mut s = Session::new(tool, dev, status_of, runner);
    let (first, lines) = s.pass_full(&["-n"]);
    let dirty = mentions_dirty_log(&lines);
    let before = match (first, dirty) {
        (_, true) => FsState::NotClean,
        (Some(0), false) => FsState::Clean,
        (Some(1), false) => FsState::Errors,
        _ => FsState::Unknown,
    };
    let done = |s: Session<'_, R>, code, status, after| Checked {
        fsck: s.finish(code, status),
        before,
        after,
    };
    if first.is_none() || first.is_some_and(|c| c > 2) {
        return done(s, first, FsckStatus::Error, FsState::Unknown);
    }
    if first == Some(0) && !dirty {
        return done(s, first, FsckStatus::Clean, FsState::Clean);
    }
    if mode == Mode::Check {
        return done(s, first, FsckStatus::Uncorrected, before);
    }
    let mut replayed = None;
    if dirty {
        let ok = replay_log(&mut s, dev, replay);
        replayed = Some(ok);
        if ok && s.pass(&["-n"]) == Some(0) {
            return done(s, Some(0), FsckStatus::Corrected, FsState::Clean);
        }
    }
    let mut repaired = s.pass(&[]);
    // xfs_repair refuses a dirty log with exit 2 (also when the warning scrolled out of the
    // output kept from the first pass): replay it now if that was not tried.
    if repaired == Some(2) && replayed.is_none() && replay_log(&mut s, dev, replay) {
        repaired = s.pass(&[]);
    }
    if repaired == Some(2) {
        if !zero_log {
            s.note(
                &["xfs_repair", "-L", dev],
                false,
                vec!["not run: the log could not be replayed, and xfs_repair -L would zero it, losing the transactions it holds; rerun with the operator's explicit xfs zero-log flag to allow it".into()],
            );
            return done(s, repaired, FsckStatus::Uncorrected, FsState::NotClean);
        }
        repaired = s.pass(&["-L"]);
    }
    if repaired != Some(0) {
        return done(s, repaired, FsckStatus::Error, FsState::Unknown);
    }
    let verify = s.pass(&["-n"]);
    let (status, after) = match verify {
        Some(0) => (FsckStatus::Corrected, FsState::Clean),
        Some(1 | 2) => (FsckStatus::Uncorrected, FsState::Errors),
        _ => (FsckStatus::Error, FsState::Unknown),
    };
    done(s, repaired, status, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::{Exit, Output, RunError};
    use std::collections::VecDeque;

    const DIRTY: &str = "ERROR: The filesystem has valuable metadata changes in a log which is being ignored because the -n option was used.";

    struct Fake {
        script: VecDeque<(i32, &'static str)>,
        calls: Vec<String>,
    }

    impl Runner for Fake {
        fn run(&mut self, argv: &[&str]) -> Result<Output, RunError> {
            self.calls.push(argv[1..argv.len() - 1].join(" "));
            let (code, line) = self.script.pop_front().expect("scripted");
            Ok(Output {
                exit: Exit::Code(code),
                lines: vec![line.to_owned()],
                timed_out: false,
            })
        }
    }

    fn fake(script: &[(i32, &'static str)]) -> Fake {
        Fake {
            script: script.iter().copied().collect(),
            calls: vec![],
        }
    }

    fn run(mode: Mode, zero_log: bool, replay_ok: bool, f: &mut Fake) -> (Checked, usize) {
        let mut replays = 0;
        let mut replay = || {
            replays += 1;
            if replay_ok {
                Ok(())
            } else {
                Err("mount: Structure needs cleaning".to_owned())
            }
        };
        let c = xfs(
            "/sbin/xfs_repair",
            "/dev/vda",
            mode,
            zero_log,
            &mut replay,
            f,
        );
        (c, replays)
    }

    #[test]
    fn clean_is_one_read_only_pass() {
        let mut f = fake(&[(0, "")]);
        let (c, replays) = run(Mode::Repair, false, true, &mut f);
        assert_eq!(f.calls, ["-n"]);
        assert_eq!(
            (c.fsck.status, c.before, c.after),
            (FsckStatus::Clean, FsState::Clean, FsState::Clean)
        );
        assert_eq!((replays, c.fsck.tool.as_str()), (0, "xfs_repair"));
    }

    #[test]
    fn check_mode_reports_a_dirty_log_and_replays_nothing() {
        let mut f = fake(&[(0, DIRTY)]);
        let (c, replays) = run(Mode::Check, false, true, &mut f);
        assert_eq!(
            (c.fsck.status, c.before, replays),
            (FsckStatus::Uncorrected, FsState::NotClean, 0)
        );
    }

    #[test]
    fn dirty_log_is_replayed_by_mounting() {
        let mut f = fake(&[(1, DIRTY), (0, "")]);
        let (c, replays) = run(Mode::Repair, false, true, &mut f);
        assert_eq!(f.calls, ["-n", "-n"]);
        assert_eq!(replays, 1);
        assert_eq!(
            (c.fsck.status, c.after),
            (FsckStatus::Corrected, FsState::Clean)
        );
        assert_eq!(c.fsck.passes[1].args[0], "mount");
    }

    #[test]
    fn inconsistencies_after_replay_get_xfs_repair_then_verified() {
        let mut f = fake(&[(1, DIRTY), (1, "agi unlinked bucket"), (0, ""), (0, "")]);
        let (c, _) = run(Mode::Repair, false, true, &mut f);
        assert_eq!(f.calls, ["-n", "-n", "", "-n"]);
        assert_eq!(c.fsck.status, FsckStatus::Corrected);
    }

    #[test]
    fn unreplayable_log_is_never_zeroed_without_the_flag() {
        let mut f = fake(&[(1, DIRTY), (2, "log which needs to be replayed")]);
        let (c, _) = run(Mode::Repair, false, false, &mut f);
        assert_eq!(f.calls, ["-n", ""]);
        assert_eq!(c.fsck.status, FsckStatus::Uncorrected);
        assert!(c.fsck.passes.last().unwrap().output[0].contains("not run"));
        let mut f = fake(&[
            (1, DIRTY),
            (2, "log which needs to be replayed"),
            (0, ""),
            (0, ""),
        ]);
        let (c, _) = run(Mode::Repair, true, false, &mut f);
        assert_eq!(f.calls, ["-n", "", "-L", "-n"]);
        assert_eq!(c.fsck.status, FsckStatus::Corrected);
    }

    #[test]
    fn a_refusal_for_a_dirty_log_missed_by_the_first_pass_still_replays() {
        // The first pass's warning scrolled away: only xfs_repair's exit 2 says the log is dirty.
        let mut f = fake(&[
            (1, "agno = 199"),
            (2, "needs to be replayed"),
            (0, ""),
            (0, ""),
        ]);
        let (c, replays) = run(Mode::Repair, true, true, &mut f);
        assert_eq!(f.calls, ["-n", "", "", "-n"]);
        assert_eq!(replays, 1, "replayed, so -L never ran");
        assert_eq!(c.fsck.status, FsckStatus::Corrected);
    }

    #[test]
    fn missing_tool_is_an_error() {
        let mut missing = |_: &[&str]| Err(RunError::NotFound("/sbin/xfs_repair".into()));
        let mut replay = || Ok(());
        let c = xfs(
            "/sbin/xfs_repair",
            "/dev/vda",
            Mode::Repair,
            false,
            &mut replay,
            &mut missing,
        );
        assert_eq!((c.fsck.status, c.fsck.exit_code), (FsckStatus::Error, None));
    }
}
