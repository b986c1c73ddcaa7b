//! `--verify-before` of a domain rescue: a check-mode rescue of the same domain first, whose
//! verify boot is the boot before (in check mode, the whole answer).

use vmrescue_protocol::Mode;

use super::domain::rescue;
use super::request::{DomainError, DomainRequest, Done};
use crate::session::host_warning;
use crate::session::progress::Sink;
use crate::verify::flow;

/// What the rescue before the rescue gave.
pub(super) enum First {
    /// The boot before (if a verify boot ran), for the record of the repair's verify boots.
    Before(Option<vmrescue_protocol::BootCheck>),
    /// In check mode that rescue is the whole answer.
    Done(Done),
}

/// `--verify-before` (implied by `--rollback-on-regression`): a check-mode rescue first, whose
/// verify boot is the boot before.
pub(super) fn verify_before(
    req: &DomainRequest,
    persistent: bool,
    stage: bool,
    sink: &mut dyn Sink,
) -> Result<First, DomainError> {
    if let Some(v) = req
        .verify
        .as_ref()
        .filter(|v| (v.before || stage) && !req.dry_run)
    {
        if !persistent {
            return Err(DomainError::VerifyUnsupported(
                "--verify-before needs a persistent domain (a transient one is re-created after each rescue)",
            ));
        }
        let check = req.mode == Mode::Check;
        let first = DomainRequest {
            mode: Mode::Check,
            start_after: check && req.start_after,
            verify: Some(crate::verify::VerifyRequest {
                before: false,
                rollback: false,
                ..v.clone()
            }),
            ..req.clone()
        };
        let done = rescue(&first, sink)?;
        let after = match &done {
            Done::Report(r) => r.verify.as_ref().and_then(|v| v.after.clone()),
            Done::DryRun(_) => None,
        };
        if check {
            // Nothing changes in check mode: the boot after is the boot before.
            let mut done = with_before(done, after);
            if let (Done::Report(r), true) = (&mut done, v.rollback) {
                r.warnings
                    .push(host_warning(flow::ROLLBACK_IN_CHECK_MODE.into()));
            }
            return Ok(First::Done(done));
        }
        return Ok(First::Before(after));
    }
    Ok(First::Before(None))
}

/// A report with the boot before set (check mode: the same guest, booted before).
fn with_before(done: Done, before: Option<vmrescue_protocol::BootCheck>) -> Done {
    match done {
        Done::Report(mut r) => {
            if let Some(v) = r.verify.as_mut() {
                v.before = before;
            }
            Done::Report(r)
        }
        other => other,
    }
}

/// The boot before, as the flow records it.
pub(super) fn before_boot(b: Option<vmrescue_protocol::BootCheck>) -> flow::Before {
    b.map_or(flow::Before::None, flow::Before::Boot)
}
