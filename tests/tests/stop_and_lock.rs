//! The companion interrupted, and two rescues of one disk: Ctrl-C or SIGTERM stops a rescue
//! cleanly (QEMU stopped, run directory and console log kept, exit 3), a second rescue naming a
//! disk that is being rescued is refused before it boots anything (exit 2), and what a stopped
//! run leaves does not break the next one.

use std::path::PathBuf;
use std::time::Duration;

use rustix::process::Signal;
use vmrescue_tests::fixture;
use vmrescue_tests::harness;
use vmrescue_tests::live::{self, Live};

const SETTLE: Duration = vmrescue_tests::budgets::SETTLE;

/// The console log path an exit-3 message names.
fn console_log(stderr: &str) -> PathBuf {
    let at = stderr
        .rfind("console log: ")
        .unwrap_or_else(|| panic!("no console log named:\n{stderr}"));
    PathBuf::from(stderr[at + 13..].lines().next().unwrap().trim())
}

#[test]
fn a_busy_disk_is_refused_and_a_signal_stops_the_rescue_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let disk = fixture::field_failure(&dir.path().join("guest.img")).unwrap();
    // The rescues that are refused beside, signalled or killed boot an image whose init is not
    // the agent: they never finish by themselves, so each step below lands while they run.
    let silent = &harness::silent_image().dir;
    for sig in [Signal::INT, Signal::TERM] {
        let first = Live::start_with_image(silent, &[&disk.image], "repair", &[]).unwrap();
        let qemu = first.wait_qemu(SETTLE).unwrap();
        assert_eq!(qemu.len(), 1, "one QEMU: {qemu:?}");

        // The same disk, named another way, while the first rescue runs.
        let other_name = dir.path().join(".").join("guest.img");
        let second = harness::rescue(&[&other_name], "check", &[]).unwrap();
        assert_eq!(second.code, 2, "{}", second.stderr);
        assert!(
            second.stderr.contains("guest.img")
                && second.stderr.contains("in use by another rescue"),
            "{}",
            second.stderr
        );
        assert!(
            second.stderr.contains(&format!("pid {}", first.pid())),
            "the holder is named: {}",
            second.stderr
        );

        first.signal(sig).unwrap();
        let run = first.finish(SETTLE).unwrap();
        assert_eq!(run.code, 3, "{}", run.stderr);
        let name = if sig == Signal::INT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        assert!(
            run.stderr.contains(&format!("interrupted by {name}")),
            "{}",
            run.stderr
        );
        let log = console_log(&run.stderr);
        assert!(
            log.is_file(),
            "the run directory is kept: {}",
            log.display()
        );
        assert!(
            qemu.iter().all(|p| !live::alive(*p)),
            "QEMU was stopped: {qemu:?}"
        );
        std::fs::remove_dir_all(log.parent().unwrap()).unwrap();
    }
    // vmrescue itself killed: its rescue VM goes on alone, and the next rescue of that disk is
    // refused, naming it.
    let killed = Live::start_with_image(silent, &[&disk.image], "check", &[]).unwrap();
    let orphan = killed.wait_qemu(SETTLE).unwrap();
    assert_eq!(orphan.len(), 1);
    killed.signal(Signal::KILL).unwrap();
    let _ = killed.finish(SETTLE);
    assert!(
        live::alive(orphan[0]),
        "the rescue VM outlives its killed vmrescue"
    );
    {
        let refused = harness::rescue(&[&disk.image], "repair", &[]).unwrap();
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("was killed")
                && refused.stderr.contains(&format!("QEMU pid {}", orphan[0])),
            "{}",
            refused.stderr
        );
        live::kill9(orphan[0]).unwrap();
        while live::alive(orphan[0]) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Nothing left behind breaks the next run: it completes and repairs, and says what the
    // killed run left.
    let run = harness::rescue(&[&disk.image], "repair", &[]).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.field("/outcome"), "repaired");
    assert_eq!(fixture::host_e2fsck(&disk.image).unwrap(), 0);
    let warnings = serde_json::to_string(&run.report.as_ref().unwrap()["warnings"]).unwrap();
    let at = warnings
        .find("left its run directory ")
        .unwrap_or_else(|| panic!("the killed run's directory is reported: {warnings}"));
    let left = warnings[at + 23..].split(' ').next().unwrap();
    std::fs::remove_dir_all(left).unwrap();
}
