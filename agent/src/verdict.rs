//! The report's outcome, by the rule both sides share ([`vmrescue_protocol::verdict`]), with a
//! warning for every volume the guest needs that the rescue did not reach.

use vmrescue_protocol::verdict;
use vmrescue_protocol::{Mode, Outcome, Report, Step};

use crate::reporter::Reporter;

/// Marks each filesystem's `needed_by` / `reached`, warns about every gap (and, when no root
/// was identified, about the containers it may be inside), and returns the outcome with the
/// guest fixes counted (`planned` in the plan, `failed` of those applied).
pub fn decide(
    mode: Mode,
    report: &mut Report,
    fatal: bool,
    failed: usize,
    rep: &mut Reporter,
) -> Outcome {
    for gap in verdict::mark(report) {
        rep.warn(Step::Discovery, Some(&gap.device), gap.message());
    }
    let inspected_without_root = report.os.as_ref().is_some_and(|o| o.root_device.is_none());
    if inspected_without_root {
        for c in verdict::unopened_containers(report) {
            rep.warn(
                Step::Discovery,
                None,
                format!("no OS root identified; it may be inside a volume this rescue did not open: {c}"),
            );
        }
    }
    verdict::with_guest_fixes(
        verdict::outcome(mode, report, fatal),
        mode,
        report.plan.len(),
        failed,
    )
}
