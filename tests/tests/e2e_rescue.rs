//! End-to-end: the real rescue image boots under QEMU (TCG here) on broken disks.

use std::path::Path;

use vmrescue_tests::fixture::{self, VICTIM};
use vmrescue_tests::harness;

fn assert_files_intact(image: &Path, sums: &std::collections::BTreeMap<String, String>) {
    for (path, sum) in sums {
        assert_eq!(
            &fixture::sha256_in_image(image, path).unwrap(),
            sum,
            "{path} changed on {}",
            image.display()
        );
    }
}

#[test]
fn repair_fixes_a_journal_abort_and_a_damaged_inode() {
    let dir = tempfile::tempdir().unwrap();
    let disk = fixture::broken_root(&dir.path().join("root.img")).unwrap();
    let run = harness::rescue(&[&disk.image], "repair", &[]).unwrap();
    assert_eq!(
        run.code, 0,
        "stderr: {}\nstdout: {}",
        run.stderr, run.stdout
    );
    assert_eq!(run.field("/outcome"), "repaired");
    assert_eq!(run.field("/mode"), "repair");
    assert_eq!(run.field("/filesystems/0/device"), "/dev/vda");
    assert_eq!(run.field("/filesystems/0/type"), "ext4");
    assert_eq!(run.field("/filesystems/0/label"), "guestroot");
    assert_eq!(run.field("/filesystems/0/state_before"), "errors");
    assert_eq!(run.field("/filesystems/0/state_after"), "clean");
    assert_eq!(run.field("/filesystems/0/fsck/tool"), "e2fsck");
    assert_eq!(run.field("/filesystems/0/fsck/status"), "corrected");
    assert_eq!(run.field("/changes/0/kind"), "fsck");
    // Every pass was forced.
    let passes = run.report.as_ref().unwrap()["filesystems"][0]["fsck"]["passes"]
        .as_array()
        .unwrap()
        .clone();
    assert!(passes
        .iter()
        .all(|p| p["args"].as_array().unwrap().iter().any(|a| a == "-f")));
    // The host agrees, and the user's files are untouched.
    assert_eq!(fixture::host_e2fsck(&disk.image).unwrap(), 0);
    let mut untouched = disk.sums.clone();
    untouched.remove(VICTIM);
    assert_files_intact(&disk.image, &untouched);
    // Progress streamed to the terminal while it ran.
    assert!(run.stderr.contains("fsck /dev/vda"), "{}", run.stderr);
}

#[test]
fn check_mode_reports_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = fixture::broken_root(&dir.path().join("root.img")).unwrap();
    let before = fixture::sha256_file(&disk.image).unwrap();
    let run = harness::rescue(&[&disk.image], "check", &[]).unwrap();
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    // The purpose-made rescue kernel: its drivers are built in, so no module is loaded.
    assert!(
        run.stderr.contains("rescue kernel, PVH entry"),
        "{}",
        run.stderr
    );
    let release = &harness::image()
        .manifest
        .rescue_kernel
        .as_ref()
        .expect("the test image carries the rescue kernel")
        .release;
    assert_eq!(&run.field("/kernel"), release);
    assert!(release.ends_with("-vmrescue"), "{release}");
    assert!(
        run.stderr
            .contains("none to load: the kernel has its drivers built in"),
        "no module loaded: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("did not load"), "{}", run.stderr);
    assert_eq!(run.field("/outcome"), "unrepaired");
    assert_eq!(run.field("/mode"), "check");
    assert_eq!(run.field("/filesystems/0/state_before"), "errors");
    assert_eq!(run.field("/filesystems/0/fsck/status"), "uncorrected");
    assert_eq!(run.field("/filesystems/0/fsck/exit_code"), "4");
    assert_eq!(
        run.report.as_ref().unwrap()["changes"],
        serde_json::json!([])
    );
    assert_eq!(
        fixture::sha256_file(&disk.image).unwrap(),
        before,
        "check mode changed the image"
    );
    // Where the time went: the guest's uptime at each phase, in order.
    let timings = run.report.as_ref().unwrap()["timings"]
        .as_array()
        .unwrap()
        .clone();
    let phases: Vec<&str> = timings
        .iter()
        .map(|t| t["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "agent",
            "modules",
            "port",
            "disks",
            "fsck /dev/vda",
            "checks",
            "inspect",
            "fixes",
            "report"
        ],
        "{timings:#?}"
    );
    let uptimes: Vec<f64> = timings
        .iter()
        .map(|t| t["uptime_s"].as_f64().unwrap())
        .collect();
    assert!(
        uptimes[0] > 0.0,
        "the agent starts after the kernel: {uptimes:?}"
    );
    assert!(uptimes.windows(2).all(|w| w[0] <= w[1]), "{uptimes:?}");
}

#[test]
fn garbage_disk_has_no_os() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("garbage.img");
    std::fs::write(&img, fixture::bytes(9, 8 << 20)).unwrap();
    let before = fixture::sha256_file(&img).unwrap();
    let run = harness::rescue(&[&img], "repair", &[]).unwrap();
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert_eq!(run.field("/outcome"), "no_os");
    assert_eq!(
        fixture::sha256_file(&img).unwrap(),
        before,
        "nothing to repair, nothing written"
    );
}

#[test]
fn no_report_in_time_exits_3_and_names_the_console_log() {
    let dir = tempfile::tempdir().unwrap();
    let disk = fixture::broken_root(&dir.path().join("root.img")).unwrap();
    // The rescue VM's init is not the agent: no report can come, whatever the time limit.
    let run = harness::rescue_with_image(
        &harness::silent_image().dir,
        &[&disk.image],
        "check",
        &["--timeout", "20"],
    )
    .unwrap();
    assert_eq!(run.code, 3, "stderr: {}", run.stderr);
    assert!(run.report.is_none(), "{}", run.stdout);
    assert!(run.stderr.contains("did not report"), "{}", run.stderr);
    let log = run
        .stderr
        .split("console log: ")
        .nth(1)
        .map(|s| s.trim().to_owned())
        .expect("message names the console log");
    assert!(Path::new(&log).is_file(), "{log} kept for the operator");
    let _ = std::fs::remove_dir_all(Path::new(&log).parent().unwrap());
}

#[test]
fn missing_disk_is_a_usage_error() {
    let run = harness::rescue(&[Path::new("/nonexistent/disk.img")], "check", &[]).unwrap();
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("/nonexistent/disk.img"),
        "{}",
        run.stderr
    );
    assert!(run.report.is_none());
}

/// A check-mode rescue of a broken root with `var=value` in the environment: the report and
/// the companion's stderr.
fn check_with_env(var: &str, value: &str) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let disk = fixture::broken_root(&dir.path().join("root.img")).unwrap();
    let out = std::process::Command::new(harness::vmrescue_bin().unwrap())
        .env(var, value)
        .args(["rescue", "--json", "--mode", "check", "--image"])
        .arg(&harness::image().dir)
        .arg("--disk")
        .arg(&disk.image)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (report, stderr)
}

#[test]
fn the_hosts_kernel_loads_only_the_modules_of_the_devices_present() {
    let (report, stderr) = check_with_env("VMRESCUE_KERNEL", "host");
    assert!(
        stderr.contains("(check mode, accel") && stderr.contains(", PVH entry,"),
        "{stderr}"
    );
    assert_eq!(report["kernel"], harness::image().manifest.kernel_version);
    // Only the drivers of the devices present; filesystem modules at their first mount.
    let modules = stderr
        .lines()
        .find(|l| l.contains("loaded for the devices present:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        modules.contains(" virtio_blk") && modules.contains(" virtio_console"),
        "{modules}"
    );
    assert!(
        !modules.contains(" xfs") && !modules.contains(" ext4"),
        "{modules}"
    );
    assert_eq!(report["outcome"], "unrepaired");
    assert_eq!(report["filesystems"][0]["fsck"]["status"], "uncorrected");
}

#[test]
fn the_bzimage_still_boots_when_asked_for() {
    let (report, stderr) = check_with_env("VMRESCUE_KERNEL_ENTRY", "bzimage");
    assert!(stderr.contains("bzImage"), "{stderr}");
    assert_eq!(report["kernel"], harness::image().manifest.kernel_version);
    assert_eq!(report["outcome"], "unrepaired");
    assert_eq!(report["filesystems"][0]["fsck"]["status"], "uncorrected");
}
