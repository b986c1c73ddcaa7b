//! Progress of a long-running command, sent to a sink the caller provides (the terminal for
//! the CLI; a log or a channel for a watcher or a batch of rescues), never printed by library
//! code itself.

use std::path::Path;

use vmrescue_protocol::Progress;

use crate::render;

/// What happened.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A host-side step: building the image, booting the rescue...
    Note(&'a str),
    /// The agent said hello.
    AgentUp {
        agent_version: &'a str,
        kernel: &'a str,
    },
    /// A progress line from the agent (hostile text: render before showing).
    Agent(&'a Progress),
    /// A line from the guest was rejected; `count` so far.
    Rejected { why: &'a str, count: usize },
    /// A file the operator should know about was kept.
    Kept { what: &'a str, path: &'a Path },
}

/// Receives progress.
pub trait Sink {
    fn event(&mut self, event: Event<'_>);
}

/// Drops everything.
pub struct Quiet;

impl Sink for Quiet {
    fn event(&mut self, _: Event<'_>) {}
}

/// Agent progress lines shown at most (a guest could flood the terminal).
const MAX_AGENT_LINES: usize = 10_000;
/// Rejected guest lines reported at most.
const MAX_REJECTED: usize = 10;

/// Human-readable lines on standard error, guest text escaped and bounded.
#[derive(Default)]
pub struct Stderr {
    shown: usize,
}

impl Stderr {
    /// The line for an event, or `None` when it is not shown.
    pub fn line(&mut self, event: Event<'_>) -> Option<String> {
        match event {
            Event::Note(text) => Some(format!("vmrescue: {text}")),
            Event::AgentUp {
                agent_version,
                kernel,
            } => Some(format!(
                "vmrescue: agent {} up on kernel {}",
                render::clean(agent_version),
                render::clean(kernel)
            )),
            Event::Agent(p) if self.shown < MAX_AGENT_LINES => {
                self.shown += 1;
                Some(render::progress(p))
            }
            Event::Agent(_) => None,
            Event::Rejected { why, count } if count <= MAX_REJECTED => Some(format!(
                "vmrescue: rejected a line from the guest: {}",
                render::clean(why)
            )),
            Event::Rejected { .. } => None,
            Event::Kept { what, path } => {
                Some(format!("vmrescue: {what} kept in {}", path.display()))
            }
        }
    }
}

impl Sink for Stderr {
    fn event(&mut self, event: Event<'_>) {
        if let Some(l) = self.line(event) {
            eprintln!("{l}");
        }
    }
}

/// Keeps every event as its line, for tests and batch runs.
#[derive(Default)]
pub struct Recorder {
    pub lines: Vec<String>,
    format: Stderr,
}

impl Sink for Recorder {
    fn event(&mut self, event: Event<'_>) {
        if let Some(l) = self.format.line(event) {
            self.lines.push(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_is_escaped_and_floods_are_bounded() {
        let mut s = Stderr::default();
        let l = s
            .line(Event::AgentUp {
                agent_version: "1\x1b[2J",
                kernel: "6.1",
            })
            .unwrap();
        assert!(!l.contains('\x1b'), "{l}");
        for count in 1..=MAX_REJECTED {
            assert!(s.line(Event::Rejected { why: "x", count }).is_some());
        }
        assert!(s
            .line(Event::Rejected {
                why: "x",
                count: MAX_REJECTED + 1
            })
            .is_none());
        let p = Progress {
            step: vmrescue_protocol::Step::Fsck,
            message: "m".into(),
            device: None,
            elapsed_s: 1.0,
        };
        let shown = (0..MAX_AGENT_LINES + 5)
            .filter(|_| s.line(Event::Agent(&p)).is_some())
            .count();
        assert_eq!(shown, MAX_AGENT_LINES);
    }
}
