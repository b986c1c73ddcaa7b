//! fsck policy for ext2/3/4, apart from the process it runs, so it can be tested with a fake.
//!
//! A rescue never trusts the clean flag: every pass is forced (`-f`). Check mode runs `-f -n`
//! only. Repair mode preens (`-f -p`), runs a full `-f -y` pass when preen cannot finish, then
//! verifies with `-f -n`, repairing once more if the verification still finds problems.
//!
//! When the primary superblock is unreadable, the passes start from a backup superblock
//! (`-b BLOCK -B SIZE`); e2fsck then rewrites the primary, and the verification pass reads the
//! primary again to prove it.

use vmrescue_discovery::ext::Backup;
use vmrescue_protocol::{Fsck, FsckStatus, Mode};

use super::{Runner, Session};

/// e2fsck exit bits (see e2fsck(8)).
const CORRECTED: i32 = 1 | 2;
const UNCORRECTED: i32 = 4;
const OPERATIONAL: i32 = 8 | 16 | 32 | 128;

/// Full repair passes at most (the first may uncover what a second fixes).
const MAX_FULL_PASSES: usize = 2;

/// What one e2fsck exit code means.
pub fn status_of(code: Option<i32>) -> FsckStatus {
    match code {
        None => FsckStatus::Error,
        Some(0) => FsckStatus::Clean,
        Some(c) if c < 0 || c & OPERATIONAL != 0 => FsckStatus::Error,
        Some(c) if c & UNCORRECTED != 0 => FsckStatus::Uncorrected,
        Some(c) if c & CORRECTED != 0 => FsckStatus::Corrected,
        Some(_) => FsckStatus::Error,
    }
}

/// What a check-mode (`-f -n`) pass means. `-n` answers "no" to every fix, so:
/// - problems left behind with an abort (`4|8`, e.g. "Salvage? no" then "Cannot proceed") are
///   problems found, not a checker that could not run: `Uncorrected`;
/// - exit 0 after declining a fix ("Clear? no", "IGNORED") or after falling back to a backup
///   superblock still means repair has work to do: `Uncorrected`.
pub fn check_status(code: Option<i32>, lines: &[String]) -> FsckStatus {
    match code {
        Some(0) if lines.iter().any(|l| declined(l)) => FsckStatus::Uncorrected,
        Some(c) if c > 0 && c & UNCORRECTED != 0 && c & (OPERATIONAL & !8) == 0 => {
            FsckStatus::Uncorrected
        }
        other => status_of(other),
    }
}

/// A line where e2fsck -n declined or skipped a fix.
fn declined(line: &str) -> bool {
    let l = line.trim_end();
    l.ends_with("? no") || l.contains("IGNORED") || l.contains("trying backup blocks")
}

/// Checks (and in repair mode repairs) one ext filesystem.
pub fn ext<R: Runner>(tool: &str, dev: &str, mode: Mode, runner: &mut R) -> Fsck {
    ext_from(tool, dev, None, None, mode, runner)
}

/// [`ext`], starting from a backup superblock when the primary is unreadable, and keeping an
/// undo file per fixing pass (`-z PREFIX.N.e2undo`) when `undo` names a prefix.
pub fn ext_from<R: Runner>(
    tool: &str,
    dev: &str,
    backup: Option<Backup>,
    undo: Option<&str>,
    mode: Mode,
    runner: &mut R,
) -> Fsck {
    let sb: Vec<String> = backup
        .map(|b| {
            vec![
                "-b".into(),
                b.block.to_string(),
                "-B".into(),
                b.block_size.to_string(),
            ]
        })
        .unwrap_or_default();
    let sb: Vec<&str> = sb.iter().map(String::as_str).collect();
    let mut s = Session::new(tool, dev, status_of, runner);
    let (exit_code, status) = match mode {
        Mode::Check => {
            let (code, lines) = s.pass_full(&[&["-f", "-n"], &sb[..]].concat());
            (code, check_status(code, &lines))
        }
        Mode::Repair => repair(&mut s, &sb, undo),
    };
    s.finish(exit_code, status)
}

/// A pass that may write: with the superblock flags given and an undo file when asked.
fn fixing<R: Runner>(
    s: &mut Session<'_, R>,
    flags: &[&str],
    sb: &[&str],
    undo: Option<&str>,
) -> Option<i32> {
    let file = undo.map(|prefix| format!("{prefix}.{}.e2undo", s.undo_files.len() + 1));
    let mut argv: Vec<&str> = [flags, sb].concat();
    if let Some(f) = &file {
        argv.extend(["-z", f.as_str()]);
    }
    let code = s.pass(&argv);
    s.undo_files.extend(file);
    code
}

fn repair<R: Runner>(
    s: &mut Session<'_, R>,
    sb: &[&str],
    undo: Option<&str>,
) -> (Option<i32>, FsckStatus) {
    // Until a repair pass has run, only the backup superblock can be read.
    let mut decided = fixing(s, &["-f", "-p"], sb, undo);
    let Some(preen) = decided else {
        return (None, FsckStatus::Error);
    };
    let mut corrected = preen & CORRECTED != 0;
    let mut full_passes = 0;
    if preen & (UNCORRECTED | OPERATIONAL) != 0 {
        decided = fixing(s, &["-f", "-y"], sb, undo);
        full_passes += 1;
        corrected |= decided.is_some_and(|c| c & CORRECTED != 0);
    }
    if decided.is_none_or(|c| c & OPERATIONAL != 0) {
        return (decided, FsckStatus::Error);
    }
    loop {
        let verify = s.pass(&["-f", "-n"]);
        match verify {
            Some(0) => {
                let status = if corrected {
                    FsckStatus::Corrected
                } else {
                    FsckStatus::Clean
                };
                return (decided, status);
            }
            Some(c) if c & UNCORRECTED != 0 && full_passes < MAX_FULL_PASSES => {
                decided = fixing(s, &["-f", "-y"], &[], undo);
                full_passes += 1;
                if decided.is_none_or(|c| c & OPERATIONAL != 0) {
                    return (decided, FsckStatus::Error);
                }
                corrected |= decided.is_some_and(|c| c & CORRECTED != 0);
            }
            other => {
                let status = match status_of(other) {
                    FsckStatus::Error => FsckStatus::Error,
                    _ => FsckStatus::Uncorrected,
                };
                return (decided, status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::{Exit, Output, RunError};

    /// A fake e2fsck answering each pass with the next scripted exit code.
    struct Fake {
        codes: std::collections::VecDeque<i32>,
        calls: Vec<String>,
    }

    impl Runner for Fake {
        fn run(&mut self, argv: &[&str]) -> Result<Output, RunError> {
            self.calls.push(argv[1..argv.len() - 1].join(" "));
            let code = self.codes.pop_front().expect("more passes than scripted");
            Ok(Output {
                exit: Exit::Code(code),
                lines: vec![format!("exit {code}")],
                timed_out: false,
            })
        }
    }

    fn script(codes: &[i32]) -> Fake {
        Fake {
            codes: codes.iter().copied().collect(),
            calls: Vec::new(),
        }
    }

    #[test]
    fn exit_codes_normalise() {
        assert_eq!(status_of(Some(0)), FsckStatus::Clean);
        assert_eq!(status_of(Some(1)), FsckStatus::Corrected);
        assert_eq!(status_of(Some(3)), FsckStatus::Corrected);
        assert_eq!(status_of(Some(4)), FsckStatus::Uncorrected);
        assert_eq!(status_of(Some(5)), FsckStatus::Uncorrected);
        assert_eq!(status_of(Some(8)), FsckStatus::Error);
        assert_eq!(status_of(Some(12)), FsckStatus::Error);
        assert_eq!(status_of(None), FsckStatus::Error);
        assert_eq!(status_of(Some(-1)), FsckStatus::Error);
    }

    #[test]
    fn check_mode_status_reads_declined_fixes_and_aborts() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_status(Some(0), &[]), FsckStatus::Clean);
        assert_eq!(
            check_status(
                Some(0),
                &lines(&["First_meta_bg is too big.  Clear? no", ""])
            ),
            FsckStatus::Uncorrected
        );
        assert_eq!(
            check_status(
                Some(0),
                &lines(&["Padding at end of inode bitmap is not set. IGNORED."])
            ),
            FsckStatus::Uncorrected
        );
        assert_eq!(check_status(Some(12), &[]), FsckStatus::Uncorrected);
        assert_eq!(check_status(Some(4), &[]), FsckStatus::Uncorrected);
        assert_eq!(check_status(Some(8), &[]), FsckStatus::Error);
        assert_eq!(check_status(Some(4 | 32), &[]), FsckStatus::Error);
        assert_eq!(check_status(None, &[]), FsckStatus::Error);
    }

    #[test]
    fn backup_superblock_and_undo_files_on_fixing_passes_only() {
        let mut run = script(&[4, 1, 0]);
        let b = Backup {
            block: 8193,
            block_size: 1024,
        };
        let r = ext_from(
            "e2fsck",
            "/dev/vda",
            Some(b),
            Some("/u/vda"),
            Mode::Repair,
            &mut run,
        );
        assert_eq!(
            run.calls,
            [
                "-f -p -b 8193 -B 1024 -z /u/vda.1.e2undo",
                "-f -y -b 8193 -B 1024 -z /u/vda.2.e2undo",
                "-f -n"
            ]
        );
        assert_eq!(r.undo_files, ["/u/vda.1.e2undo", "/u/vda.2.e2undo"]);
        let mut run = script(&[4]);
        let r = ext_from(
            "e2fsck",
            "/dev/vda",
            Some(b),
            Some("/u/vda"),
            Mode::Check,
            &mut run,
        );
        assert_eq!(run.calls, ["-f -n -b 8193 -B 1024"]);
        assert!(r.undo_files.is_empty(), "check mode writes nothing");
    }

    #[test]
    fn a_failing_second_full_pass_is_an_error() {
        let mut run = script(&[4, 1, 4, 8, 0]);
        let r = ext("/sbin/e2fsck", "/dev/vda", Mode::Repair, &mut run);
        assert_eq!(run.calls, ["-f -p", "-f -y", "-f -n", "-f -y"]);
        assert_eq!((r.status, r.exit_code), (FsckStatus::Error, Some(8)));
    }

    #[test]
    fn check_mode_is_one_forced_read_only_pass() {
        let mut run = script(&[4]);
        let r = ext("/sbin/e2fsck", "/dev/vda", Mode::Check, &mut run);
        assert_eq!(run.calls, ["-f -n"]);
        assert_eq!((r.status, r.exit_code), (FsckStatus::Uncorrected, Some(4)));
        assert_eq!(r.tool, "e2fsck");
    }

    #[test]
    fn clean_filesystem_is_still_forced_and_verified() {
        let mut run = script(&[0, 0]);
        let r = ext("/sbin/e2fsck", "/dev/vda", Mode::Repair, &mut run);
        assert_eq!(run.calls, ["-f -p", "-f -n"]);
        assert_eq!(r.status, FsckStatus::Clean);
    }

    #[test]
    fn preen_fixes_it() {
        let mut run = script(&[1, 0]);
        let r = ext("/sbin/e2fsck", "/dev/vda", Mode::Repair, &mut run);
        assert_eq!(run.calls, ["-f -p", "-f -n"]);
        assert_eq!((r.status, r.exit_code), (FsckStatus::Corrected, Some(1)));
    }

    #[test]
    fn preen_gives_up_then_full_pass_fixes() {
        let mut run = script(&[4, 1, 0]);
        let r = ext("/sbin/e2fsck.static", "/dev/vda1", Mode::Repair, &mut run);
        assert_eq!(run.calls, ["-f -p", "-f -y", "-f -n"]);
        assert_eq!((r.status, r.exit_code), (FsckStatus::Corrected, Some(1)));
        assert_eq!(r.passes.len(), 3);
        assert_eq!(
            r.passes[1].args,
            ["/sbin/e2fsck.static", "-f", "-y", "/dev/vda1"]
        );
    }

    #[test]
    fn second_full_pass_when_verification_fails_then_gives_up() {
        let mut run = script(&[4, 1, 4, 1, 4]);
        let r = ext("/sbin/e2fsck", "/dev/vda", Mode::Repair, &mut run);
        assert_eq!(run.calls, ["-f -p", "-f -y", "-f -n", "-f -y", "-f -n"]);
        assert_eq!(r.status, FsckStatus::Uncorrected);
    }

    #[test]
    fn operational_error_and_missing_tool() {
        let mut run = script(&[8, 8]);
        let r = ext("/sbin/e2fsck", "/dev/vda", Mode::Repair, &mut run);
        assert_eq!((r.status, r.exit_code), (FsckStatus::Error, Some(8)));
        let mut missing = |_: &[&str]| Err(RunError::NotFound("/sbin/e2fsck".into()));
        let r = ext("/sbin/e2fsck", "/dev/vda", Mode::Repair, &mut missing);
        assert_eq!((r.status, r.exit_code), (FsckStatus::Error, None));
        assert!(r.passes[0].output[0].contains("not in the rescue image"));
    }
}
