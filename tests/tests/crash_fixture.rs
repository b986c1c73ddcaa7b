//! The crash fixture: an XFS image whose last changes sit only in its log, made by a guest that
//! resets after `sync`, and what xfsprogs say about it before and after the log is replayed.
//! Boots the rescue kernel under QEMU (a few seconds each under TCG).

use std::path::Path;

use vmrescue_tests::crash::{self, LogState};
use vmrescue_tests::fixture;

const DIR: &str = "var/spool/queue/";

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("etc/hostname", b"crashed01\n".to_vec()),
        ("var/lib/app/state.bin", fixture::bytes(11, 150_000)),
        (
            "home/user/notes.txt",
            b"written just before the power cut\n".to_vec(),
        ),
        (DIR, Vec::new()),
    ]
}

fn dirty_image(path: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let files = files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (*p, d.as_slice())).collect();
    crash::xfs_with_dirty_log(path, &refs).unwrap();
    files
}

#[test]
fn xfs_repair_sees_the_dirty_log_and_refuses_to_repair() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("xfs.img");
    dirty_image(&img);

    assert_eq!(crash::xfs_log_state(&img).unwrap(), LogState::Dirty);
    // The changes are in the log only: the on-disk metadata does not have them yet.
    assert_eq!(crash::xfs_read_file(&img, "/etc/hostname").unwrap(), None);
    assert_eq!(crash::xfs_ls(&img, "/").unwrap(), Some(vec![]));

    let n = crash::xfs_repair(&img, &["-n"]).unwrap();
    assert_eq!(n.code, 1, "xfs_repair -n on a dirty log: {n:?}");
    assert!(
        n.stderr.contains(
            "ALERT: The filesystem has valuable metadata changes in a log which is being\n\
             ignored because the -n option was used."
        ),
        "{n:?}"
    );

    // Without -n it refuses before touching anything, and says to mount first.
    let before = fixture::sha256_file(&img).unwrap();
    let r = crash::xfs_repair(&img, &[]).unwrap();
    assert_eq!(r.code, 2, "xfs_repair on a dirty log: {r:?}");
    assert!(
        r.stderr.contains(
            "ERROR: The filesystem has valuable metadata changes in a log which needs to\n\
             be replayed.  Mount the filesystem to replay the log, and unmount it before\n\
             re-running xfs_repair."
        ),
        "{r:?}"
    );
    assert_eq!(fixture::sha256_file(&img).unwrap(), before, "image changed");
    assert_eq!(crash::xfs_log_state(&img).unwrap(), LogState::Dirty);
}

#[test]
fn mounting_replays_the_log_and_then_repair_is_clean() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("xfs.img");
    let files = dirty_image(&img);

    let boot = crash::replay_xfs_log(&img).unwrap();
    assert!(
        boot.console.contains("XFS (vda): Starting recovery"),
        "the mount did not replay a log:\n{}",
        boot.tail()
    );
    assert_eq!(crash::xfs_log_state(&img).unwrap(), LogState::Clean);
    let n = crash::xfs_repair(&img, &["-n"]).unwrap();
    assert_eq!(n.code, 0, "xfs_repair -n after the replay: {n:?}");
    assert!(!n.stderr.contains("ALERT"), "{n:?}");

    // What the guest wrote before the crash is there, byte for byte.
    for (path, data) in &files {
        let path = format!("/{}", path.trim_end_matches('/'));
        if path.ends_with(DIR.trim_end_matches('/')) {
            assert_eq!(crash::xfs_ls(&img, &path).unwrap(), Some(vec![]), "{path}");
        } else {
            let got = crash::xfs_read_file(&img, &path).unwrap();
            assert!(
                got.as_ref() == Some(data),
                "{path} differs after the replay"
            );
        }
    }
    let mut top = crash::xfs_ls(&img, "/").unwrap().unwrap();
    top.sort();
    assert_eq!(top, ["etc", "home", "var"]);
}

#[test]
fn a_failing_crash_script_is_an_error_with_its_message() {
    let err = crash::crash_guest(&[], "die \"on purpose\"", &[]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("the crash guest failed: on purpose"), "{msg}");
}
