//! One rescue session over any VM: start it, collect the agent's report from its channel with
//! the hostile-input collector, fall back to the framed report on its console, and stop it.
//! Which VM runs the rescue (our own QEMU, a libvirt domain) is the caller's business.

pub mod collector;
pub mod consolelog;
pub mod interrupt;
pub mod progress;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vmrescue_protocol::{console, verdict, Message, Report, Step, Warning};

use crate::session::collector::{Collector, Event};
use crate::vm::{Vm, VmError};
use progress::Sink;

/// Longest wait for the guest to power off after it reported.
pub const POWEROFF_WAIT: Duration = Duration::from_secs(20);
/// Longest wait for the VM to end once its channel closed.
const CLOSED_WAIT: Duration = Duration::from_secs(5);
/// Console log bytes searched for a framed report when the channel gave none.
pub const CONSOLE_TAIL: u64 = 8 << 20;

/// Why a session gave no report.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The VM never ran the guest: a host-side problem.
    #[error("{vm} failed to start the rescue: {detail}")]
    Refused { vm: String, detail: String },
    /// The rescue ran but did not report.
    #[error("the rescue did not report: {reason}{}console log: {}", last_lines(last), console_log.as_ref().map_or_else(|| "none".into(), |p| p.display().to_string()))]
    NoReport {
        reason: String,
        console_log: Option<PathBuf>,
        /// The console's last lines that are not the agent's frames (escaped): where a guest
        /// stuck says why (a kernel's hung task, a panic).
        last: Vec<String>,
    },
}

/// How many of the console's last lines a rescue that did not report shows.
const LAST_LINES: usize = 12;

/// The last `n` lines of a console log that are not the agent's frames, escaped.
fn plain_lines(log: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(&log[log.len().saturating_sub(64 << 10)..]);
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.contains(console::PREFIX))
        .map(crate::render::clean)
        .collect();
    lines.drain(..lines.len().saturating_sub(n));
    lines
}

/// The lines between the reason and the console log's path (which stays last).
fn last_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; ".into();
    }
    let mut out = String::from("; the console's last lines:\n");
    for l in lines {
        out.push_str("  | ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A warning the host adds to the guest's report.
pub fn host_warning(message: String) -> Warning {
    Warning {
        step: Step::Host,
        message,
        device: None,
    }
}

/// The guest's report held to the outcome rule ([`verdict::hold`]): a `clean` or `repaired`
/// its own findings do not bear out is lowered, with a warning saying why.
pub fn held(mut report: Report) -> Report {
    if let Some(why) = verdict::hold(&mut report) {
        report.warnings.push(host_warning(why));
    }
    report
}

/// Runs the rescue on `vm` until it reports or `timeout` passes, then stops it.
pub fn run(
    vm: &mut dyn Vm,
    timeout: Duration,
    sink: &mut dyn Sink,
) -> Result<Report, SessionError> {
    crate::session::interrupt::arm();
    if let Some(sig) = crate::session::interrupt::pending() {
        return Err(SessionError::NoReport {
            reason: format!("interrupted by {sig} before the rescue VM started"),
            console_log: None,
            last: Vec::new(),
        });
    }
    vm.start()?;
    let collected = collect(vm, Instant::now() + timeout, timeout, sink);
    let grace = match collected {
        Collected::Report(_) => POWEROFF_WAIT,
        Collected::Nothing(_) => Duration::ZERO,
    };
    vm.stop(grace);
    match collected {
        Collected::Report(r) => Ok(held(*r)),
        Collected::Nothing(mut reason) => {
            let tail = vm.console_tail(CONSOLE_TAIL);
            let recovered = tail.as_deref().map(console::recover);
            match recovered {
                Some(console::Recovered::Report(mut r)) => {
                    r.warnings.push(host_warning(format!(
                        "no report on the virtio-serial channel ({reason}); recovered it from the console log"
                    )));
                    return Ok(held(*r));
                }
                Some(console::Recovered::Summary(s)) => {
                    reason.push_str(&format!(
                        "; the console log has only the report's summary (outcome {})",
                        s.outcome.as_str()
                    ));
                }
                _ => {}
            }
            if let Some(detail) = vm.start_failure() {
                return Err(SessionError::Refused {
                    vm: vm.describe(),
                    detail,
                });
            }
            Err(SessionError::NoReport {
                reason,
                console_log: vm.console_log(),
                last: tail
                    .as_deref()
                    .map_or_else(Vec::new, |t| plain_lines(t, LAST_LINES)),
            })
        }
    }
}

enum Collected {
    Report(Box<Report>),
    Nothing(String),
}

/// Why the session must end now: the VM exited, or the operator stopped vmrescue.
fn ended(vm: &mut dyn Vm, what: &str) -> Option<String> {
    if let Some(sig) = crate::session::interrupt::pending() {
        return Some(format!(
            "interrupted by {sig}: {} stopped {what}",
            vm.describe()
        ));
    }
    vm.exited()
        .map(|e| format!("{} exited ({}) {what}", vm.describe(), e.description))
}

fn collect(
    vm: &mut dyn Vm,
    deadline: Instant,
    timeout: Duration,
    sink: &mut dyn Sink,
) -> Collected {
    let timed_out = || Collected::Nothing(format!("timed out after {} s", timeout.as_secs()));
    let stream = loop {
        match vm.open_channel() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Collected::Nothing(format!("the channel could not be opened: {e}")),
        }
        if let Some(why) = ended(vm, "before the channel opened") {
            return Collected::Nothing(why);
        }
        if Instant::now() >= deadline {
            return timed_out();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut collector = Collector::new(stream);
    let report = loop {
        match collector.next_event() {
            Event::Message(Message::Hello {
                agent_version,
                kernel,
                ..
            }) => sink.event(progress::Event::AgentUp {
                agent_version: &agent_version,
                kernel: &kernel,
            }),
            Event::Message(Message::Progress { progress, .. }) => {
                sink.event(progress::Event::Agent(&progress));
                // Only a stop request here: an exited VM may still have its report buffered.
                if let Some(sig) = crate::session::interrupt::pending() {
                    return Collected::Nothing(format!(
                        "interrupted by {sig}: {} stopped before it reported",
                        vm.describe()
                    ));
                }
            }
            Event::Message(Message::Report { report, .. }) => break report,
            Event::Rejected(why) => sink.event(progress::Event::Rejected {
                why: &why,
                count: collector.rejected,
            }),
            Event::Idle => {
                if let Some(why) = ended(vm, "without a report") {
                    return Collected::Nothing(why);
                }
                if Instant::now() >= deadline {
                    return timed_out();
                }
            }
            Event::Closed => {
                let until = Instant::now() + CLOSED_WAIT;
                while vm.exited().is_none() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let status = vm
                    .exited()
                    .map_or_else(|| "still running".into(), |e| e.description);
                return Collected::Nothing(format!(
                    "the channel closed without a report ({}: {status})",
                    vm.describe()
                ));
            }
        }
    };
    let mut report = report;
    if collector.rejected > 0 {
        report.warnings.push(host_warning(format!(
            "{} malformed line(s) from the guest were rejected",
            collector.rejected
        )));
    }
    Collected::Report(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{Channel, Exit};
    use vmrescue_protocol::{frame, Mode};

    /// A VM whose channel and console are byte strings, ending when told.
    struct FakeVm {
        channel: Option<Vec<u8>>,
        console: Vec<u8>,
        exit_after_polls: Option<usize>,
        polls: usize,
        started: bool,
        stopped: bool,
        refused: Option<String>,
    }

    impl FakeVm {
        fn new(channel: Option<Vec<u8>>, console: Vec<u8>) -> Self {
            FakeVm {
                channel,
                console,
                exit_after_polls: Some(3),
                polls: 0,
                started: false,
                stopped: false,
                refused: None,
            }
        }
    }

    impl Vm for FakeVm {
        fn describe(&self) -> String {
            "fake VM".into()
        }
        fn start(&mut self) -> Result<(), VmError> {
            self.started = true;
            Ok(())
        }
        fn open_channel(&mut self) -> Result<Option<Channel>, VmError> {
            Ok(self
                .channel
                .take()
                .map(|b| Box::new(std::io::Cursor::new(b)) as Channel))
        }
        fn console_tail(&mut self, max: u64) -> Option<Vec<u8>> {
            let from = self.console.len().saturating_sub(max as usize);
            Some(self.console[from..].to_vec())
        }
        fn console_log(&self) -> Option<PathBuf> {
            Some("/run/fake/console.log".into())
        }
        fn exited(&mut self) -> Option<Exit> {
            self.polls += 1;
            (self.exit_after_polls.is_some_and(|n| self.polls > n) || self.stopped).then(|| Exit {
                success: self.refused.is_none(),
                description: "exit status: 0".into(),
            })
        }
        fn stop(&mut self, _: Duration) {
            self.stopped = true;
        }
        fn start_failure(&mut self) -> Option<String> {
            self.refused.clone()
        }
    }

    fn report(mode: Mode) -> Report {
        Report {
            mode,
            ..Default::default()
        }
    }

    #[test]
    fn a_report_claiming_more_than_its_findings_is_held_to_them() {
        use vmrescue_protocol::{OsInfo, Outcome};
        // No root identified, yet "repaired": a broken or hostile agent.
        let claim = Report {
            outcome: Outcome::Repaired,
            os: Some(OsInfo::default()),
            ..report(Mode::Repair)
        };
        let bytes = frame::encode(&Message::report(claim)).unwrap();
        let mut vm = FakeVm::new(Some(bytes), Vec::new());
        let r = run(&mut vm, Duration::from_secs(5), &mut progress::Quiet).unwrap();
        assert_eq!(r.outcome, Outcome::NoOs);
        let w = r.warnings.last().unwrap();
        assert_eq!(w.step, Step::Host);
        assert!(
            w.message
                .contains("the rescue reported repaired but no OS root was identified"),
            "{}",
            w.message
        );
    }

    #[test]
    fn report_from_the_channel_with_progress_and_rejections() {
        let mut bytes = frame::encode(&Message::hello("1", Mode::Check, "6.1")).unwrap();
        bytes.extend_from_slice(b"garbage\n");
        bytes.extend(frame::encode(&Message::report(report(Mode::Repair))).unwrap());
        let mut vm = FakeVm::new(Some(bytes), Vec::new());
        let mut sink = progress::Recorder::default();
        let r = run(&mut vm, Duration::from_secs(5), &mut sink).unwrap();
        assert!(vm.started && vm.stopped);
        assert_eq!(r.mode, Mode::Repair);
        assert!(
            r.warnings[0].message.contains("1 malformed line"),
            "{:?}",
            r.warnings
        );
        assert!(
            sink.lines[0].contains("agent 1 up on kernel 6.1"),
            "{:?}",
            sink.lines
        );
        assert!(sink.lines[1].contains("rejected"), "{:?}", sink.lines);
    }

    #[test]
    fn console_frames_when_the_channel_gave_nothing() {
        let mut console = b"[    1.0] kernel noise\n".to_vec();
        for line in console::frames(&Message::report(report(Mode::Repair)), "0a1b2c3d").unwrap() {
            console.extend(line);
        }
        let mut vm = FakeVm::new(None, console);
        let r = run(&mut vm, Duration::from_secs(5), &mut progress::Quiet).unwrap();
        assert_eq!(r.mode, Mode::Repair);
        assert!(r.warnings[0]
            .message
            .contains("recovered it from the console log"));
    }

    #[test]
    fn no_report_names_the_console_log_and_refusals_are_host_errors() {
        let mut summary_only = b"no frames here\n".to_vec();
        let frames = console::frames(&Message::report(report(Mode::Repair)), "0a1b2c3d").unwrap();
        summary_only.extend(frames.last().unwrap());
        let mut vm = FakeVm::new(Some(b"noise\n".to_vec()), summary_only);
        let e = run(&mut vm, Duration::from_secs(5), &mut progress::Quiet).unwrap_err();
        match &e {
            SessionError::NoReport {
                reason,
                console_log,
                last,
            } => {
                // The frame (the summary) is not among the lines shown.
                assert_eq!(last, &["no frames here"]);
                assert!(reason.contains("closed without a report"), "{reason}");
                assert!(
                    reason.contains("only the report's summary (outcome failed)"),
                    "{reason}"
                );
                assert_eq!(
                    console_log.as_deref(),
                    Some(std::path::Path::new("/run/fake/console.log"))
                );
            }
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("/run/fake/console.log"));
        let mut vm = FakeVm::new(None, Vec::new());
        vm.refused = Some("Could not open '/x': Permission denied".into());
        let e = run(&mut vm, Duration::from_secs(5), &mut progress::Quiet).unwrap_err();
        assert!(matches!(e, SessionError::Refused { .. }), "{e}");
        assert!(e.to_string().contains("Permission denied"));
    }

    #[test]
    fn a_silent_vm_times_out() {
        let mut vm = FakeVm::new(None, Vec::new());
        vm.exit_after_polls = None;
        let e = run(&mut vm, Duration::from_millis(100), &mut progress::Quiet).unwrap_err();
        assert!(e.to_string().contains("timed out after 0 s"), "{e}");
        assert!(
            !e.to_string().contains("last lines"),
            "an empty console adds none: {e}"
        );
        assert!(
            e.to_string()
                .ends_with("; console log: /run/fake/console.log"),
            "{e}"
        );
    }

    #[test]
    fn a_stuck_rescue_shows_the_consoles_last_lines_escaped() {
        let mut console = Vec::new();
        for i in 0..40 {
            console.extend(format!("[ {i:3}.0] line {i}\r\n").into_bytes());
        }
        console.extend(b"INFO: task e2fsck:93 blocked for more than 120 seconds.\x1b[2J\n");
        let mut vm = FakeVm::new(None, console);
        vm.exit_after_polls = None;
        let e = run(&mut vm, Duration::from_millis(100), &mut progress::Quiet).unwrap_err();
        let SessionError::NoReport { last, .. } = &e else {
            panic!("{e}");
        };
        assert_eq!(last.len(), LAST_LINES);
        assert_eq!(
            last[0], "[  29.0] line 29",
            "the last ones, without carriage returns"
        );
        assert!(last[LAST_LINES - 1].starts_with("INFO: task e2fsck:93 blocked"));
        assert!(!last[LAST_LINES - 1].contains('\x1b'), "escaped: {last:?}");
        let text = e.to_string();
        assert!(
            text.contains("last lines:\n  | [  29.0] line 29\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                " blocked for more than 120 seconds.\\u{1b}[2J\nconsole log: /run/fake/console.log"
            ),
            "the path stays last: {text}"
        );
    }
}
