//! fsck policy per filesystem type, apart from the processes it runs (a [`Runner`]) and the
//! mounts it needs (a log replay callback), so every policy is tested with fakes:
//!
//! - ext2/3/4 ([`ext`]): e2fsck, forced, preen then full passes, verified;
//! - xfs ([`xfs`]): a dirty log is replayed by mounting before `xfs_repair`; `-L` only on the
//!   operator's explicit word;
//! - btrfs ([`simple::btrfs`]): read-only `btrfs check`, reported, never `--repair`;
//! - vfat ([`simple::vfat`]): `fsck.fat -a`, verified with `-n`.
//!
//! [`order`] decides which filesystems are checked in parallel and in which sequence.

pub mod ext;
pub mod order;
pub mod simple;
pub mod xfs;

pub use ext::{ext, ext_from, status_of};

use vmrescue_protocol::{Fsck, FsckPass, FsckStatus};

use crate::proc::{Output, RunError};

/// Output lines kept per pass in the report.
const KEEP_LINES: usize = 40;

/// Runs a checker's argv; the real one is [`crate::proc::run`].
pub trait Runner {
    fn run(&mut self, argv: &[&str]) -> Result<Output, RunError>;
}

impl<F: FnMut(&[&str]) -> Result<Output, RunError>> Runner for F {
    fn run(&mut self, argv: &[&str]) -> Result<Output, RunError> {
        self(argv)
    }
}

/// The passes of one checker on one device.
pub(crate) struct Session<'a, R: Runner> {
    tool: &'a str,
    dev: &'a str,
    status: fn(Option<i32>) -> FsckStatus,
    runner: &'a mut R,
    passes: Vec<FsckPass>,
    pub(crate) undo_files: Vec<String>,
}

impl<'a, R: Runner> Session<'a, R> {
    pub(crate) fn new(
        tool: &'a str,
        dev: &'a str,
        status: fn(Option<i32>) -> FsckStatus,
        runner: &'a mut R,
    ) -> Self {
        Session {
            tool,
            dev,
            status,
            runner,
            passes: Vec::new(),
            undo_files: Vec::new(),
        }
    }

    /// Runs `tool FLAGS... DEVICE` and records the pass.
    pub(crate) fn pass(&mut self, flags: &[&str]) -> Option<i32> {
        self.pass_full(flags).0
    }

    /// [`Session::pass`], also returning the pass's output lines.
    pub(crate) fn pass_full(&mut self, flags: &[&str]) -> (Option<i32>, Vec<String>) {
        let mut argv = vec![self.tool];
        argv.extend_from_slice(flags);
        argv.push(self.dev);
        let (code, all, mut kept) = match self.runner.run(&argv) {
            Ok(out) => {
                let keep = out.lines.len().saturating_sub(KEEP_LINES);
                let mut lines = out.lines[keep..].to_vec();
                if out.timed_out {
                    lines.push("(killed: took longer than its time limit)".into());
                }
                (out.exit.code(), out.lines, lines)
            }
            Err(e) => (None, vec![e.to_string()], vec![e.to_string()]),
        };
        log::info!("{} exited {:?} on {}", argv.join(" "), code, self.dev);
        kept.shrink_to_fit();
        self.passes.push(FsckPass {
            args: argv.iter().map(|s| s.to_string()).collect(),
            exit_code: code,
            status: (self.status)(code),
            output: kept,
        });
        (code, all)
    }

    /// Notes a step that is not a checker run (a log replay) among the passes.
    pub(crate) fn note(&mut self, args: &[&str], ok: bool, output: Vec<String>) {
        self.passes.push(FsckPass {
            args: args.iter().map(|s| s.to_string()).collect(),
            exit_code: Some(if ok { 0 } else { 1 }),
            status: if ok {
                FsckStatus::Corrected
            } else {
                FsckStatus::Error
            },
            output,
        });
    }

    pub(crate) fn finish(self, exit_code: Option<i32>, status: FsckStatus) -> Fsck {
        let name = self.tool.rsplit('/').next().unwrap_or(self.tool);
        Fsck {
            tool: name.strip_suffix(".static").unwrap_or(name).to_owned(),
            exit_code,
            status,
            passes: self.passes,
            undo_files: self.undo_files,
        }
    }
}
