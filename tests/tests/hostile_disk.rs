//! Disks that lie: a raw guest disk whose bytes are a qcow2 header naming a host file as its
//! backing file must not make the host open that file.

use std::path::Path;
use std::process::Command;

use vmrescue_tests::fixture;
use vmrescue_tests::harness;

/// A host file the guest must never see: a whole ext4 root labelled `hostsecret`, so that if
/// QEMU followed the header the rescue would report its filesystem.
fn host_secret(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    fixture::os_tree(&tree).unwrap();
    let secret = dir.join("secret.img");
    fixture::mkfs_ext4(&secret, 32, "hostsecret", &tree).unwrap();
    secret
}

/// The bytes a malicious guest writes to the start of its raw disk: a real qcow2 header (made by
/// qemu-img) naming `backing` as a raw backing file, padded to a disk-like size.
fn forged_raw_disk(dir: &Path, backing: &Path) -> std::path::PathBuf {
    let overlay = dir.join("overlay.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(backing)
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let guest = dir.join("guest.img");
    let mut bytes = std::fs::read(&overlay).unwrap();
    bytes.resize(8 << 20, 0);
    std::fs::write(&guest, bytes).unwrap();
    guest
}

fn vmrescue(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(harness::vmrescue_bin().unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn auto_format_refuses_a_forged_backing_file_in_rescue_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let secret = host_secret(dir.path());
    let guest = forged_raw_disk(dir.path(), &secret);
    let before = fixture::sha256_file(&guest).unwrap();

    let run = harness::rescue(&[&guest], "repair", &[]).unwrap();
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    assert!(run.report.is_none());
    assert!(
        run.stderr.contains(&*secret.to_string_lossy()) && run.stderr.contains("--format qcow2"),
        "the refusal names the backing file and the way to follow it: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("booting the rescue"),
        "refused before QEMU started: {}",
        run.stderr
    );

    let (code, stdout, stderr) = vmrescue(&["inspect".as_ref(), guest.as_os_str()]);
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains(&*secret.to_string_lossy()) && stderr.contains("--format qcow2"),
        "{stderr}"
    );
    assert!(!stdout.contains("hostsecret"), "{stdout}");
    assert_eq!(fixture::sha256_file(&guest).unwrap(), before);
}

#[test]
fn format_raw_attaches_the_forged_bytes_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let secret = host_secret(dir.path());
    let guest = forged_raw_disk(dir.path(), &secret);
    let before = fixture::sha256_file(&guest).unwrap();
    let run = harness::rescue(&[&guest], "check", &["--format", "raw"]).unwrap();
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert_eq!(run.field("/outcome"), "no_os");
    assert!(
        !run.stdout.contains("hostsecret"),
        "the host file's bytes reached the rescue: {}",
        run.stdout
    );
    assert_eq!(fixture::sha256_file(&guest).unwrap(), before);
}

#[test]
fn format_qcow2_follows_a_real_overlay_when_the_operator_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = host_secret(dir.path());
    let overlay = dir.path().join("overlay.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&base)
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (code, stdout, stderr) = vmrescue(&[
        "inspect".as_ref(),
        "--json".as_ref(),
        "--format".as_ref(),
        "qcow2".as_ref(),
        overlay.as_os_str(),
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["filesystems"][0]["label"], "hostsecret", "{v}");
}
