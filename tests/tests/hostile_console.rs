//! `vmrescue report --console-log` on any input: memory stays under 256 MiB (its address space
//! is limited to that, so any growth past it fails the command), it ends in time with a clear
//! error, and what it shows of a report is escaped (no terminal sequence reaches the screen).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};
use vmrescue_protocol::{
    console, Change, ChangeKind, Filesystem, FsState, Fsck, FsckStatus, Message, Mode, OsInfo,
    Outcome, Report,
};
use vmrescue_tests::{budgets, harness};

const LIMIT_KIB: u64 = 256 * 1024;

/// Runs the command with its address space limited, feeding `input` on stdin in pieces;
/// returns (exit status, stdout, stderr).
fn report_under_limit(
    args: &[&str],
    input: impl FnOnce(&mut dyn Write) + Send,
) -> (i32, String, String) {
    let bin = harness::vmrescue_bin().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(&bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            input(&mut stdin);
        });
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < budgets::MUST_END,
        "took {:?}",
        started.elapsed()
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A verified-looking frame with any header and payload.
fn forged(header: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = format!("{header} ").into_bytes();
    body.extend_from_slice(payload);
    let mut line = format!(
        "{}{header} {} ",
        console::PREFIX,
        hex(&Sha256::digest(&body)[..8])
    )
    .into_bytes();
    line.extend_from_slice(payload);
    line.push(b'\n');
    line
}

fn assert_clear_no_report(code: i32, stderr: &str, what: &str) {
    assert_eq!(code, 3, "{what}: {stderr}");
    assert!(stderr.contains("no vmrescue report"), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

#[test]
fn endless_lines_huge_frames_and_forged_chunks_in_bounded_memory() {
    // 300 MiB without a newline.
    let (code, _, err) = report_under_limit(&["report", "--console-log", "-"], |w| {
        let block = vec![b'A'; 1 << 20];
        for _ in 0..300 {
            if w.write_all(&block).is_err() {
                break;
            }
        }
    });
    assert_clear_no_report(code, &err, "a line without end");
    // A 64 MiB frame between kernel lines.
    let (code, _, err) = report_under_limit(&["report", "--console-log", "-"], |w| {
        let _ = w.write_all(b"[    1.0] kernel line\n");
        let _ = w.write_all(console::PREFIX.as_bytes());
        let block = vec![b'7'; 1 << 20];
        for _ in 0..64 {
            let _ = w.write_all(&block);
        }
        let _ = w.write_all(b"\n[    2.0] more\n");
    });
    assert_clear_no_report(code, &err, "a 64 MiB frame");
    // 200 000 verified chunk frames claiming absurd counts, invalid UTF-8 and escapes inside.
    let (code, _, err) = report_under_limit(&["report", "--console-log", "-"], |w| {
        for i in 0..200_000u64 {
            let payload = b"\x1b[2J\xff\xfe{\"junk\":";
            let line = forged(
                &format!("0badf00d r {}/{} 0123456789abcdef", i * 7919, u64::MAX - i),
                payload,
            );
            if w.write_all(&line).is_err() {
                break;
            }
        }
    });
    assert_clear_no_report(code, &err, "forged chunks");
    assert!(
        !err.contains('\u{1b}'),
        "escapes reach the terminal: {err:?}"
    );
}

#[test]
fn a_reports_hostile_text_is_shown_escaped() {
    // A report whose findings bear out its outcome (the host lowers one that claims more).
    let root = Filesystem {
        device: "/dev/vda".into(),
        fstype: "ext4".into(),
        state_before: FsState::Errors,
        state_after: FsState::Clean,
        fsck: Fsck {
            tool: "e2fsck".into(),
            exit_code: Some(1),
            status: FsckStatus::Corrected,
            ..Default::default()
        },
        ..Default::default()
    };
    let report = Report {
        outcome: Outcome::Repaired,
        mode: Mode::Repair,
        filesystems: vec![root],
        os: Some(OsInfo {
            root_device: Some("/dev/vda".into()),
            ..Default::default()
        }),
        changes: vec![Change {
            kind: ChangeKind::WriteFile,
            path: "/etc/\u{1b}]0;owned\u{7}fstab".into(),
            detail: "\u{1b}[2J\u{9b}31m cleared your screen".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let lines = console::frames(&Message::report(report), "0badf00d").unwrap();
    let (code, out, err) = report_under_limit(&["report", "--console-log", "-"], move |w| {
        for l in lines {
            let _ = w.write_all(&l);
        }
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("fstab") && out.contains("cleared your screen"),
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{9b}') && !out.contains('\u{7}'),
        "terminal sequences in the display: {out:?}"
    );
}
