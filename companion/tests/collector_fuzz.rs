//! The channel collector on a hostile guest's bytes, as a bounded property run (CI runs it):
//! random streams, real messages with bytes flipped and lines joined or cut, lines far past the
//! limit, invalid UTF-8 and JSON nested deep. The collector never panics, always reaches the
//! end of the stream, yields at most one event per line, and still takes a good message after
//! any amount of garbage.

use std::io::Read;

use proptest::prelude::*;
use vmrescue_companion::session::collector::{Collector, Event};
use vmrescue_protocol::{frame, Message, Mode, Outcome, Report};

fn hello() -> Vec<u8> {
    frame::encode(&Message::Hello {
        v: 1,
        agent_version: "0.1.0".into(),
        mode: Mode::Repair,
        kernel: "6.1.0".into(),
    })
    .unwrap()
}

fn report() -> Vec<u8> {
    frame::encode(&Message::report(Report {
        outcome: Outcome::Clean,
        ..Default::default()
    }))
    .unwrap()
}

/// Every event until the end of the stream (bounded: a stuck collector fails the test).
fn drain(input: impl Read, limit: usize) -> Vec<Event> {
    let mut c = Collector::new(input);
    let mut out = Vec::new();
    loop {
        match c.next_event() {
            Event::Closed => return out,
            e => out.push(e),
        }
        assert!(out.len() <= limit, "more events than lines");
    }
}

fn reports(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Message(Message::Report { .. })))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_streams(bytes in proptest::collection::vec(any::<u8>(), 0..50_000)) {
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
        drain(&bytes[..], lines);
    }

    #[test]
    fn garbage_then_a_good_report(
        garbage in proptest::collection::vec(any::<u8>(), 0..5_000),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let mut hostile = hello();
        hostile.extend(&garbage);
        for (at, b) in &flips {
            let i = at.index(hostile.len());
            hostile[i] ^= b | 1;
        }
        // Whatever came before, a newline ends it and the next good line is taken.
        hostile.push(b'\n');
        hostile.extend(report());
        let lines = hostile.iter().filter(|&&b| b == b'\n').count() + 1;
        let events = drain(&hostile[..], lines);
        prop_assert_eq!(reports(&events), 1);
    }
}

/// A reader of `len` bytes of `fill` with no newline, then `tail`: nothing is held in memory.
struct Endless {
    left: usize,
    fill: u8,
    tail: std::io::Cursor<Vec<u8>>,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return self.tail.read(buf);
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(self.fill);
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn a_64_mib_line_is_rejected_and_the_next_line_is_read() {
    let mut tail = b"\n".to_vec();
    tail.extend(report());
    let events = drain(
        Endless {
            left: 64 << 20,
            fill: b'{',
            tail: std::io::Cursor::new(tail),
        },
        10,
    );
    assert!(
        matches!(&events[0], Event::Rejected(why) if why.contains("long")),
        "{events:?}"
    );
    assert_eq!(reports(&events), 1, "{events:?}");
}

#[test]
fn deep_nesting_and_invalid_utf8_are_rejected_lines() {
    let mut input = "[".repeat(900_000).into_bytes();
    input.push(b'\n');
    input.extend(b"{\"v\":1,\"type\":\"hello\",\"agent_version\":\"\xff\xfe\",\"mode\":\"check\",\"kernel\":\"x\"}\n");
    input.extend(report());
    let events = drain(&input[..], 5);
    let rejected = events
        .iter()
        .filter(|e| matches!(e, Event::Rejected(_)))
        .count();
    assert_eq!(rejected, 2, "{events:?}");
    assert_eq!(reports(&events), 1);
}
