//! btrfs and vfat: one checker each, simpler policies.
//!
//! btrfs: `btrfs check --readonly` first, in both modes. `--repair` can make a damaged btrfs
//! worse and its own manual warns against it: it runs only in repair mode, only when the
//! read-only pass found errors, and only on the operator's explicit word (`--btrfs-repair`);
//! a read-only pass then says whether it worked. Without that word the errors are reported and
//! the repair is left to the operator, named.
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

/// `btrfs check --readonly`; in repair mode with `repair_allowed`, errors it found are
/// repaired by `btrfs check --repair --force` (`--force`: no ten-second countdown) and
/// verified by a second read-only pass.
pub fn btrfs<R: Runner>(
    tool: &str,
    dev: &str,
    mode: Mode,
    repair_allowed: bool,
    runner: &mut R,
) -> Fsck {
    let mut s = Session::new(tool, dev, btrfs_status, runner);
    let code = s.pass(&["check", "--readonly"]);
    if code != Some(1) || mode == Mode::Check {
        return s.finish(code, btrfs_status(code));
    }
    if !repair_allowed {
        s.note(
            &["btrfs", "check", "--repair", dev],
            false,
            vec!["not run: btrfs check --repair can make a damaged btrfs worse (its manual warns against it); rerun with the operator's explicit --btrfs-repair flag to allow it".into()],
        );
        return s.finish(code, FsckStatus::Uncorrected);
    }
    let repaired = s.pass(&["check", "--repair", "--force"]);
    let status = match s.pass(&["check", "--readonly"]) {
        Some(0) => FsckStatus::Corrected,
        Some(1) => FsckStatus::Uncorrected,
        _ => FsckStatus::Error,
    };
    s.finish(repaired, status)
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
    fn btrfs_is_repaired_only_in_repair_mode_and_only_when_allowed() {
        // Check mode, allowed or not: one read-only pass.
        for allowed in [false, true] {
            let (mut run, calls) = fake(&[1]);
            let r = btrfs("/sbin/btrfs", "/dev/vdb", Mode::Check, allowed, &mut run);
            assert_eq!(*calls.borrow(), ["check --readonly"]);
            assert_eq!(
                (r.status, r.tool.as_str()),
                (FsckStatus::Uncorrected, "btrfs")
            );
        }
        // Repair mode without the operator's word: reported, the repair named, not run.
        let (mut run, calls) = fake(&[1]);
        let r = btrfs("/sbin/btrfs", "/dev/vdb", Mode::Repair, false, &mut run);
        assert_eq!(*calls.borrow(), ["check --readonly"]);
        assert_eq!(r.status, FsckStatus::Uncorrected);
        let note = r.passes.last().unwrap();
        assert!(note.args.join(" ").contains("--repair"), "{note:?}");
        assert!(note.output.join(" ").contains("--btrfs-repair"), "{note:?}");
        // With it: repaired, then verified.
        let (mut run, calls) = fake(&[1, 0, 0]);
        let r = btrfs("/sbin/btrfs", "/dev/vdb", Mode::Repair, true, &mut run);
        assert_eq!(
            *calls.borrow(),
            [
                "check --readonly",
                "check --repair --force",
                "check --readonly"
            ]
        );
        assert_eq!((r.status, r.exit_code), (FsckStatus::Corrected, Some(0)));
        let (mut run, _) = fake(&[1, 1, 1]);
        assert_eq!(
            btrfs("b", "d", Mode::Repair, true, &mut run).status,
            FsckStatus::Uncorrected
        );
        // A clean filesystem is never repaired.
        let (mut run, calls) = fake(&[0]);
        assert_eq!(
            btrfs("b", "d", Mode::Repair, true, &mut run).status,
            FsckStatus::Clean
        );
        assert_eq!(calls.borrow().len(), 1);
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
