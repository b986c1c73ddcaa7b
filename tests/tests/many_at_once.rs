//! Many rescues on one host: 8 rescues of different disks started together all complete, each
//! reporting on its own disk, with run directories (and so sockets and console logs) of their
//! own. (Two rescues of one disk are refused: `stop_and_lock.rs`.) More, for longer:
//! `bench/many-rescues.sh`.

use std::collections::BTreeSet;
use std::process::Command;

use vmrescue_tests::live::Live;
use vmrescue_tests::{budgets, fixture};

/// 8, or `VMRESCUE_SOAK_RESCUES` (the soak script's).
fn rescues() -> usize {
    std::env::var("VMRESCUE_SOAK_RESCUES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

#[test]
fn eight_rescues_at_once_each_on_its_own_disk() {
    let rescues = rescues();
    let dir = tempfile::tempdir().unwrap();
    let disks: Vec<_> = (0..rescues)
        .map(|i| {
            let d = fixture::field_failure(&dir.path().join(format!("guest{i}.img"))).unwrap();
            let out = Command::new("e2label")
                .arg(&d.image)
                .arg(format!("guest{i}"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            d
        })
        .collect();
    // Started together; 8 TCG guests share the host's cores, so each gets a long timeout.
    let limit = budgets::secs(budgets::MANY_RESCUES);
    let runs: Vec<Live> = disks
        .iter()
        .map(|d| Live::start(&[&d.image], "repair", &["--timeout", &limit]).unwrap())
        .collect();
    let mut run_dirs = BTreeSet::new();
    for (i, live) in runs.into_iter().enumerate() {
        let run = live
            .finish(budgets::MANY_RESCUES + budgets::SETTLE)
            .unwrap();
        assert_eq!(run.code, 0, "rescue {i}: {}", run.stderr);
        assert_eq!(run.field("/outcome"), "repaired", "rescue {i}");
        assert_eq!(
            run.field("/filesystems/0/label"),
            format!("guest{i}"),
            "rescue {i} reported on its own disk"
        );
        let at = run
            .stderr
            .find("run directory ")
            .unwrap_or_else(|| panic!("rescue {i} names no run directory: {}", run.stderr));
        run_dirs.insert(run.stderr[at..].lines().next().unwrap().to_owned());
        assert_eq!(
            fixture::host_e2fsck(&disks[i].image).unwrap(),
            0,
            "rescue {i}"
        );
        for (path, sum) in &disks[i].sums {
            if path == "/etc/fstab" {
                continue;
            }
            assert_eq!(
                &fixture::sha256_in_image(&disks[i].image, path).unwrap(),
                sum,
                "rescue {i}: {path}"
            );
        }
    }
    assert_eq!(
        run_dirs.len(),
        rescues,
        "run directories are per run: {run_dirs:?}"
    );
}
