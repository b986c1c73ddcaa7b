//! `vmrescue report --console-log`: the report of a real rescue, taken back from its console log
//! the way an operator gets it (`openstack console log show` gives the last 100 KiB; virtlogd
//! logs hold several runs; consoles turn `\n` into `\r\n`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use vmrescue_tests::fixture;
use vmrescue_tests::harness;

/// nova's `MAX_CONSOLE_BYTES`.
const NOVA_TAIL: usize = 100 << 10;

/// A rescue of a broken disk in `mode`: what its agent reported over the channel (without the
/// warnings the host adds, such as another run's leftovers: the console carries the agent's
/// report only) and its console log's bytes.
fn rescue(mode: &str) -> (serde_json::Value, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let disk = fixture::broken_root(&dir.path().join("root.img")).unwrap();
    let run = harness::rescue(&[&disk.image], mode, &["--keep-run-dir"]).unwrap();
    let report = run
        .report
        .clone()
        .unwrap_or_else(|| panic!("{}", run.stderr));
    let rd = harness::run_dir(&run.stderr);
    let log = std::fs::read(rd.join("console.log")).unwrap();
    let _ = std::fs::remove_dir_all(&rd);
    let mut report = report;
    if let Some(w) = report["warnings"].as_array_mut() {
        w.retain(|w| w["step"] != "host");
    }
    (report, log)
}

fn report_cmd(log: &[u8], via_stdin: bool) -> (i32, Option<serde_json::Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(harness::vmrescue_bin().unwrap());
    cmd.args(["report", "--json", "--console-log"]);
    if via_stdin {
        cmd.arg("-").stdin(Stdio::piped());
    } else {
        let p = dir.path().join("console.log");
        std::fs::write(&p, log).unwrap();
        cmd.arg(&p).stdin(Stdio::null());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if via_stdin {
        child.stdin.take().unwrap().write_all(log).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).ok(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kernel_noise(bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < bytes {
        out.extend_from_slice(
            format!(
                "[{:>5}.{:06}] EXT4-fs (vdb1): re-mounted. Quota mode: none.\r\n",
                i / 1000,
                i % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    out
}

fn crlf(log: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(log.len() * 2);
    for &b in log {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The byte offsets of our frames' lines of kind `kind` (`r`, `s`) in `log`.
fn frame_lines(log: &[u8], kind: &str) -> Vec<usize> {
    let pat = b"@vmrescue:v2 ";
    let mut at = Vec::new();
    let mut i = 0;
    while let Some(p) = log[i..].windows(pat.len()).position(|w| w == pat) {
        let start = i + p;
        let rest = &log[start + pat.len()..];
        if rest.get(9..10) == Some(kind.as_bytes()) {
            at.push(start);
        }
        i = start + 1;
    }
    at
}

#[test]
fn the_console_log_gives_back_what_the_channel_sent() {
    let (check_report, check_log) = rescue("check");
    let (report, log) = rescue("repair");
    assert_eq!(report["outcome"], "repaired");

    // The whole log, and stdin.
    let (code, got, err) = report_cmd(&log, false);
    assert_eq!(code, 0, "{err}");
    assert_eq!(got.as_ref(), Some(&report), "{err}");
    let (code, got, err) = report_cmd(&log, true);
    assert_eq!((code, got.as_ref()), (0, Some(&report)), "{err}");

    // Two runs in one log (virtlogd keeps appending): the last one wins, either way round.
    let mut both = check_log.clone();
    both.extend_from_slice(&log);
    assert_eq!(report_cmd(&both, false).1.as_ref(), Some(&report));
    let mut both = log.clone();
    both.extend_from_slice(&check_log);
    let (code, got, _) = report_cmd(&both, false);
    assert_eq!((code, got.as_ref()), (1, Some(&check_report)));

    // What nova returns: the last 100 KiB after megabytes of kernel noise, CRLF line ends and
    // NUL padding.
    let mut noisy = kernel_noise(3 << 20);
    noisy.extend(crlf(&log));
    noisy.extend_from_slice(&[0u8; 512]);
    let tail = &noisy[noisy.len() - NOVA_TAIL..];
    let (code, got, err) = report_cmd(tail, false);
    assert_eq!((code, got.as_ref()), (0, Some(&report)), "{err}");
}

#[test]
fn damaged_or_missing_frames_are_refused_with_a_clear_message() {
    let (report, log) = rescue("repair");
    let chunks = frame_lines(&log, "r");
    let summaries = frame_lines(&log, "s");
    assert!(
        !chunks.is_empty() && summaries.len() == 1,
        "frames in {}",
        String::from_utf8_lossy(&log)
    );

    // One chunk damaged: the full report is refused, the summary still tells the outcome.
    let mut one = log.clone();
    one[chunks[0] + 60] ^= 0x01;
    let (code, got, err) = report_cmd(&one, false);
    assert_eq!(code, 0, "{err}");
    let got = got.unwrap();
    assert_eq!(got["partial"], true);
    assert_eq!(got["outcome"], report["outcome"]);
    assert_eq!(
        got["filesystems"][0]["device"],
        report["filesystems"][0]["device"]
    );
    assert!(err.contains("only the report's summary survived"), "{err}");

    // The summary damaged as well: no report (exit 3), and the message says what was seen.
    let mut two = one.clone();
    two[summaries[0] + 40] ^= 0x01;
    let (code, got, err) = report_cmd(&two, false);
    assert_eq!((code, got), (3, None), "{err}");
    assert!(
        err.contains("damaged frame(s) refused") && err.contains("incomplete"),
        "{err}"
    );

    // No frame at all.
    let (code, _, err) = report_cmd(&kernel_noise(10_000), false);
    assert_eq!(code, 3);
    assert!(err.contains("no vmrescue frame at all"), "{err}");
    let (code, _, err) = report_cmd(b"", true);
    assert_eq!(code, 3, "{err}");

    // An unreadable path is a host error.
    let mut cmd = Command::new(harness::vmrescue_bin().unwrap());
    let out = cmd
        .args(["report", "--console-log"])
        .arg(Path::new("/nonexistent/console.log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
