//! Every command ends quietly when the reader of its output goes away (`vmrescue ... | head
//! -1`), as Unix tools do: no panic, its own exit status.

use std::process::{Command, Stdio};

use vmrescue_tests::fixture;
use vmrescue_tests::harness;

/// Runs vmrescue with `args`, its standard output a pipe whose reader is already gone: its
/// exit status and standard error.
fn with_reader_gone(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(harness::vmrescue_bin().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fixture::os_tree(&tree).unwrap();
    let img = dir.path().join("root.img");
    fixture::mkfs_ext4(&img, 16, "guestroot", &tree).unwrap();
    let xml =
        harness::workspace_root().join("../shared/corpora/libvirt-domains/440fx-wrong-root.xml");
    let cases: Vec<(Vec<&std::ffi::OsStr>, i32)> = vec![
        (
            vec!["inspect".as_ref(), img.as_os_str(), "--json".as_ref()],
            0,
        ),
        (vec!["inspect".as_ref(), img.as_os_str()], 0),
        (vec!["--help".as_ref()], 0),
    ];
    for (args, want) in cases {
        let (code, stderr) = with_reader_gone(&args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(code, Some(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
    // A command that fails says so on standard error, whoever reads its output.
    let (code, stderr) = with_reader_gone(&[
        "xml".as_ref(),
        "rescue".as_ref(),
        xml.as_os_str(),
        "--image".as_ref(),
        dir.path().join("no-image").as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
