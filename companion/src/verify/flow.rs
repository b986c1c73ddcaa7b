//! The verify flow once the rescue has reported, the same for every way of running a rescue
//! (`rescue --disk` under our own QEMU, `rescue --domain` on a local or remote libvirt host,
//! next an OpenStack server): the boot after the rescue, its record on the report beside the
//! boot before, then what it means for a repair staged on overlays (committed, or discarded
//! on a regression) and for the outcome. Each way supplies only how it boots the guest.

use std::path::Path;

use vmrescue_protocol::{BootCheck, Outcome, Report};

use super::{boot_spec, conclude, is_regression, record, rolled_back, BootSpec, Staged};
use crate::host::undo::Scratch;
use crate::session::host_warning;
use crate::session::progress::Sink;

/// The warning for `--rollback-on-regression` in check mode.
pub const ROLLBACK_IN_CHECK_MODE: &str =
    "--rollback-on-regression has no effect in check mode: nothing is written";

/// The boot before the rescue, as the report records it.
#[derive(Debug, Clone)]
pub enum Before {
    /// Not asked for (`--verify` alone).
    None,
    /// The boot of the broken guest (`--verify-before` in repair mode).
    Boot(BootCheck),
    /// Check mode changes nothing: the boot after is the boot before.
    SameAsAfter,
}

/// After the rescue reported: the guest's boot files out of the boot-copy disk `copy` (in
/// `dir`), one verify boot of them by `boot` (our own QEMU, or libvirt on a remote host), and
/// its record on the report. What cannot be done is a warning: the rescue's report stands.
/// Returns whether the boot showed a regression (booted before, not after), or `None` when
/// there was no verify boot.
pub fn boot_after(
    report: &mut Report,
    copy: &Scratch,
    dir: &Path,
    before: Before,
    boot: &mut dyn FnMut(&BootSpec, &mut Report) -> Result<BootCheck, String>,
) -> Option<bool> {
    let result = boot_spec(copy, dir, report)
        .map_err(|e| e.to_string())
        .and_then(|spec| {
            let after = boot(&spec, report)?;
            Ok((spec, after))
        });
    match result {
        Ok((spec, after)) => {
            let mut rec = record(&spec, report);
            rec.before = match before {
                Before::None => None,
                Before::Boot(b) => Some(b),
                Before::SameAsAfter => Some(after.clone()),
            };
            rec.after = Some(after);
            let regression = is_regression(&rec);
            report.verify = Some(rec);
            Some(regression)
        }
        Err(e) => {
            report.warnings.push(host_warning(format!(
                "verify: {e}; the guest's boot is not verified"
            )));
            None
        }
    }
}

/// What the boot after means: a repair `staged` on overlays is discarded on a `regression`
/// (the report says so) and otherwise committed to the disks (no regression proven, including
/// no verify boot at all: the repair stands, as without the option); then the outcome
/// ([`conclude`]). `rollback_in_check_mode` adds its warning. Returns whether the run's state
/// must be kept: a commit that failed leaves the repair in the overlays, the outcome `failed`
/// and a warning that says how to finish.
pub fn settle(
    report: &mut Report,
    staged: Option<Staged>,
    regression: Option<bool>,
    rollback_in_check_mode: bool,
    sink: &mut dyn Sink,
) -> bool {
    let mut keep = false;
    match staged {
        Some(st) if regression == Some(true) => {
            st.discard();
            rolled_back(report);
        }
        Some(st) => {
            if let Err(e) = st.commit(sink) {
                keep = true;
                report.outcome = Outcome::Failed;
                report.warnings.push(host_warning(e.to_string()));
            }
        }
        None if rollback_in_check_mode => report
            .warnings
            .push(host_warning(ROLLBACK_IN_CHECK_MODE.into())),
        None => {}
    }
    conclude(report);
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_protocol::{BootVerdict, Verify, VerifyMethod};

    fn check(state: BootVerdict) -> BootCheck {
        BootCheck {
            state,
            ..Default::default()
        }
    }

    #[test]
    fn settling_without_a_staged_repair_concludes_and_warns_in_check_mode() {
        let mut r = Report {
            outcome: Outcome::Repaired,
            verify: Some(Verify {
                method: VerifyMethod::DirectKernel,
                before: Some(check(BootVerdict::Booted)),
                after: Some(check(BootVerdict::Panic)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let keep = settle(
            &mut r,
            None,
            Some(true),
            true,
            &mut crate::session::progress::Quiet,
        );
        assert!(!keep);
        assert_eq!(
            r.outcome,
            Outcome::Unrepaired,
            "concluded: it does not boot after"
        );
        assert!(r
            .warnings
            .iter()
            .any(|w| w.message == ROLLBACK_IN_CHECK_MODE));
        let mut r = Report {
            outcome: Outcome::Clean,
            ..Default::default()
        };
        settle(
            &mut r,
            None,
            None,
            false,
            &mut crate::session::progress::Quiet,
        );
        assert_eq!(
            r.outcome,
            Outcome::Clean,
            "no verify boot: nothing to conclude"
        );
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn a_boot_that_cannot_run_is_a_warning_and_the_report_stands() {
        let dir = tempfile::tempdir().unwrap();
        let copy = Scratch {
            image: dir.path().join("bootcopy.img"),
            uuid: "2c309045-caea-4e02-8bc7-cf04b2b71566".into(),
        };
        let mut r = Report {
            outcome: Outcome::Repaired,
            ..Default::default()
        };
        // No boot entry: the boot goes through the firmware, which cannot start here.
        let got = boot_after(&mut r, &copy, dir.path(), Before::None, &mut |spec, _| {
            assert_eq!(*spec, BootSpec::Firmware);
            Err("QEMU could not start".into())
        });
        assert_eq!(got, None);
        assert_eq!(r.outcome, Outcome::Repaired);
        assert_eq!(r.verify, None);
        assert_eq!(
            r.warnings[0].message,
            "verify: QEMU could not start; the guest's boot is not verified"
        );
        // It boots: recorded, with the boot before as asked.
        let got = boot_after(
            &mut r,
            &copy,
            dir.path(),
            Before::SameAsAfter,
            &mut |_, _| Ok(check(BootVerdict::Booted)),
        );
        assert_eq!(got, Some(false));
        let v = r.verify.as_ref().unwrap();
        assert_eq!(v.method, VerifyMethod::Firmware);
        assert_eq!(v.before, v.after);
    }
}
