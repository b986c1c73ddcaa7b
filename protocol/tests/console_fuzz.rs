//! The console extractor on hostile logs, as a bounded property run (CI runs it): random
//! bytes, the frames of a real report mutated (bytes flipped, lines cut, dropped, repeated,
//! reordered, noise between them), and forged frames with absurd counts and lengths. The
//! extractor never panics, and what it returns is the report that was framed or nothing: a
//! report it did not verify never comes out.

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use vmrescue_protocol::console::{self, Recovered};
use vmrescue_protocol::{Change, ChangeKind, Message, Mode, Outcome, Report};

fn report() -> Report {
    Report {
        outcome: Outcome::Repaired,
        mode: Mode::Repair,
        changes: (0..40)
            .map(|i| Change {
                kind: ChangeKind::WriteFile,
                path: format!("/etc/file-{i}"),
                detail: format!("rebuilt \u{1b}]0;title\u{7} caf\u{e9} {i}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn framed(r: &Report) -> Vec<Vec<u8>> {
    console::frames(&Message::report(r.clone()), "0badf00d").unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A frame line with a correct check around any header and payload (what a forger can make).
fn forged(header: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = format!("{header} ").into_bytes();
    body.extend_from_slice(payload);
    let check = hex(&Sha256::digest(&body)[..8]);
    let mut line = format!("{}{header} {check} ", console::PREFIX).into_bytes();
    line.extend_from_slice(payload);
    line.push(b'\n');
    line
}

fn only_the_original(got: Recovered, original: &Report) {
    if let Recovered::Report(r) = got {
        assert_eq!(*r, *original, "a report that was not framed came out");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(log in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let _ = console::recover(&log);
        let _ = console::messages(&log);
    }

    #[test]
    fn mutated_frames_give_the_report_or_nothing(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        drop_line in proptest::option::of(any::<prop::sample::Index>()),
        repeat_line in proptest::option::of(any::<prop::sample::Index>()),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        noise in proptest::collection::vec(any::<u8>(), 0..300),
        reverse in any::<bool>(),
    ) {
        let original = report();
        let intact = flips.is_empty() && drop_line.is_none() && cut.is_none();
        let mut lines = framed(&original);
        if let Some(i) = drop_line {
            lines.remove(i.index(lines.len()));
        }
        if let Some(i) = repeat_line {
            let l = lines[i.index(lines.len())].clone();
            lines.push(l);
        }
        if reverse {
            lines.reverse();
        }
        let mut log = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            log.extend_from_slice(l);
            if i == 3 {
                log.extend_from_slice(&noise);
                log.extend_from_slice(b"\r\n");
            }
        }
        for (at, byte) in &flips {
            let i = at.index(log.len());
            log[i] ^= byte | 1;
        }
        if let Some(c) = cut {
            log.truncate(c.index(log.len()));
        }
        let got = console::recover(&log);
        if intact {
            // Reordered, repeated, noise between: every frame is there, so is the report.
            prop_assert!(matches!(&got, Recovered::Report(r) if **r == original), "{got:?}");
        }
        only_the_original(got, &original);
    }

    #[test]
    fn forged_headers_with_absurd_numbers(
        seq in any::<u64>(),
        total in any::<u64>(),
        id in "[0-9a-f]{16}",
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
        copies in 1usize..50,
    ) {
        let mut log = Vec::new();
        for _ in 0..copies {
            log.extend(forged(&format!("0badf00d r {seq}/{total} {id}"), &payload));
        }
        log.extend(forged(&format!("0badf00d s 0/1 {id}"), &payload));
        if let Recovered::Report(r) = console::recover(&log) {
            panic!("forged chunks made a report: {r:?}");
        }
    }
}

/// Verified chunks whose JSON is nested two million deep: "no report", no stack overflow.
#[test]
fn a_report_nested_two_million_deep_is_refused() {
    let json = format!("{}{}", "[".repeat(2_000_000), "]".repeat(2_000_000));
    let sha = hex(&Sha256::digest(json.as_bytes()));
    let chunks: Vec<&[u8]> = json.as_bytes().chunks(60_000).collect();
    let mut log = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        log.extend(forged(
            &format!("0badf00d r {i}/{} {}", chunks.len(), &sha[..16]),
            c,
        ));
    }
    assert!(!matches!(console::recover(&log), Recovered::Report(_)));
}

/// A frame far past the line limit, and a line that never ends: nothing, quickly.
#[test]
fn a_64_mib_frame_and_a_line_without_end() {
    let mut log = console::PREFIX.as_bytes().to_vec();
    log.extend(std::iter::repeat_n(b'A', 64 << 20));
    log.push(b'\n');
    let started = std::time::Instant::now();
    assert!(matches!(console::recover(&log), Recovered::Nothing(_)));
    log.pop();
    assert!(matches!(console::recover(&log), Recovered::Nothing(_)));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
