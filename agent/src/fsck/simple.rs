//! btrfs and vfat: one checker each, simpler policies.
//!
//! btrfs: `btrfs check --readonly` in both modes. `--repair` can make a damaged btrfs worse and
//! its own manual warns against it; a rescue reports what the check found and leaves repair
//! to the operator.
//!
//! vfat: check mode `fsck.fat -n` (no writes); repair `fsck.fat -a` then `-n` to verify.
//! fsck.fat exits 0 when nothing needed fixing, 1 when it found (and with `-a` fixed) errors,
//! 2 on a usage or access error.

use vmrescue_protocol::{Fsck, FsckStatus, Mode};

use super::{Runner, Session};

pub fn btrfs_status(code: Option<i32>) -> FsckStatus {
    match code {
        Some(0) => FsckStatus::Clean,
        Some(1) => FsckStatus::Uncorrected,
        _ => FsckStatus::Error,
    }
}

/// Read-only `btrfs check`, whatever the mode.
pub fn btrfs<R: Runner>(tool: &str, dev: &str, runner: &mut R) -> Fsck {
    let mut s = Session::new(tool, dev, btrfs_status, runner);
    let code = s.pass(&["check", "--readonly"]);
    s.finish(code, btrfs_status(code))
}

pub fn vfat_status(code: Option<i32>) -> FsckStatus {
    match code {
        Some(0) => FsckStatus::Clean,
        Some(1) => FsckStatus::Uncorrected,
        _ => FsckStatus::Error,
    }
}

pub fn vfat<R: Runner>(tool: &str, dev: &str, mode: Mode, runner: &mut R) -> Fsck {
    let mut s = Session::new(tool, dev, vfat_status, runner);
    if mode == Mode::Check {
        let code = s.pass(&["-n"]);
        return s.finish(code, vfat_status(code));
    }
    let fixed = s.pass(&["-a"]);
    match fixed {
        Some(0) => s.finish(fixed, FsckStatus::Clean),
        Some(1) => {
            let verify = s.pass(&["-n"]);
            let status = match verify {
                Some(0) => FsckStatus::Corrected,
                Some(1) => FsckStatus::Uncorrected,
                _ => FsckStatus::Error,
            };
            s.finish(fixed, status)
        }
        _ => s.finish(fixed, FsckStatus::Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::{Exit, Output, RunError};

    type Calls = std::rc::Rc<std::cell::RefCell<Vec<String>>>;

    fn fake(codes: &[i32]) -> (impl FnMut(&[&str]) -> Result<Output, RunError>, Calls) {
        let calls = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = calls.clone();
        let mut codes: std::collections::VecDeque<i32> = codes.iter().copied().collect();
        (
            move |argv: &[&str]| {
                seen.borrow_mut().push(argv[1..argv.len() - 1].join(" "));
                Ok(Output {
                    exit: Exit::Code(codes.pop_front().expect("scripted")),
                    lines: vec![],
                    timed_out: false,
                })
            },
            calls,
        )
    }

    #[test]
    fn btrfs_is_never_repaired() {
        let (mut run, calls) = fake(&[1]);
        let r = btrfs("/sbin/btrfs", "/dev/vdb", &mut run);
        assert_eq!(*calls.borrow(), ["check --readonly"]);
        assert_eq!(
            (r.status, r.tool.as_str()),
            (FsckStatus::Uncorrected, "btrfs")
        );
    }

    #[test]
    fn vfat_policies() {
        let (mut run, calls) = fake(&[1]);
        let r = vfat("/sbin/fsck.fat", "/dev/vda1", Mode::Check, &mut run);
        assert_eq!(*calls.borrow(), ["-n"]);
        assert_eq!(r.status, FsckStatus::Uncorrected);
        let (mut run, calls) = fake(&[1, 0]);
        let r = vfat("/sbin/fsck.fat", "/dev/vda1", Mode::Repair, &mut run);
        assert_eq!(*calls.borrow(), ["-a", "-n"]);
        assert_eq!((r.status, r.exit_code), (FsckStatus::Corrected, Some(1)));
        let (mut run, _) = fake(&[0]);
        assert_eq!(
            vfat("f", "d", Mode::Repair, &mut run).status,
            FsckStatus::Clean
        );
        let (mut run, _) = fake(&[1, 1]);
        assert_eq!(
            vfat("f", "d", Mode::Repair, &mut run).status,
            FsckStatus::Uncorrected
        );
        let (mut run, _) = fake(&[2]);
        assert_eq!(
            vfat("f", "d", Mode::Repair, &mut run).status,
            FsckStatus::Error
        );
    }
}
