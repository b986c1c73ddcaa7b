//! fsck policy for ext2/3/4, apart from the process it runs, so it can be tested with a fake.
//!
//! A rescue never trusts the clean flag: every pass is forced (`-f`). Check mode runs `-f -n`
//! only. Repair mode preens (`-f -p`), runs a full `-f -y` pass when preen cannot finish, then
//! verifies with `-f -n`, repairing once more if the verification still finds problems.

use vmrescue_protocol::{Fsck, FsckPass, FsckStatus, Mode};

use crate::proc::{Output, RunError};

/// e2fsck exit bits (see e2fsck(8)).
const CORRECTED: i32 = 1 | 2;
const UNCORRECTED: i32 = 4;
const OPERATIONAL: i32 = 8 | 16 | 32 | 128;

/// Output lines kept per pass in the report.
const KEEP_LINES: usize = 40;
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

/// Runs a checker's argv; the real one is [`crate::proc::run`].
pub trait Runner {
    fn run(&mut self, argv: &[&str]) -> Result<Output, RunError>;
}

impl<F: FnMut(&[&str]) -> Result<Output, RunError>> Runner for F {
    fn run(&mut self, argv: &[&str]) -> Result<Output, RunError> {
        self(argv)
    }
}

struct Session<'a, R: Runner> {
    tool: &'a str,
    dev: &'a str,
    runner: &'a mut R,
    passes: Vec<FsckPass>,
}

impl<R: Runner> Session<'_, R> {
    fn pass(&mut self, flags: &[&str]) -> Option<i32> {
        let mut argv = vec![self.tool];
        argv.extend_from_slice(flags);
        argv.push(self.dev);
        let (code, output) = match self.runner.run(&argv) {
            Ok(out) => {
                let keep = out.lines.len().saturating_sub(KEEP_LINES);
                let mut lines = out.lines[keep..].to_vec();
                if out.timed_out {
                    lines.push("(killed: took longer than its time limit)".into());
                }
                (out.exit.code(), lines)
            }
            Err(e) => (None, vec![e.to_string()]),
        };
        log::info!("{} exited {:?} on {}", argv.join(" "), code, self.dev);
        self.passes.push(FsckPass {
            args: argv.iter().map(|s| s.to_string()).collect(),
            exit_code: code,
            status: status_of(code),
            output,
        });
        code
    }
}

/// Checks (and in repair mode repairs) one ext filesystem.
pub fn ext<R: Runner>(tool: &str, dev: &str, mode: Mode, runner: &mut R) -> Fsck {
    let mut s = Session {
        tool,
        dev,
        runner,
        passes: Vec::new(),
    };
    let name = tool.rsplit('/').next().unwrap_or(tool);
    let tool_name = name.strip_suffix(".static").unwrap_or(name).to_owned();
    let (exit_code, status) = match mode {
        Mode::Check => {
            let code = s.pass(&["-f", "-n"]);
            (code, status_of(code))
        }
        Mode::Repair => repair(&mut s),
    };
    Fsck {
        tool: tool_name,
        exit_code,
        status,
        passes: s.passes,
    }
}

fn repair<R: Runner>(s: &mut Session<'_, R>) -> (Option<i32>, FsckStatus) {
    let mut decided = s.pass(&["-f", "-p"]);
    let Some(preen) = decided else {
        return (None, FsckStatus::Error);
    };
    let mut corrected = preen & CORRECTED != 0;
    let mut full_passes = 0;
    if preen & (UNCORRECTED | OPERATIONAL) != 0 {
        decided = s.pass(&["-f", "-y"]);
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
                decided = s.pass(&["-f", "-y"]);
                full_passes += 1;
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
    use crate::proc::Exit;

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
