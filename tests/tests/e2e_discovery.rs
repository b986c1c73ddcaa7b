//! End-to-end discovery: the rescue names the right OS root whatever the disk layout, in the
//! guest (real QEMU boots, check mode) and on the host (`vmrescue inspect`, no VM).

use std::path::{Path, PathBuf};
use std::process::Command;

use vmrescue_tests::fixture::{self, Part, GPT_LINUX_FS, GPT_LINUX_ROOT_X86_64};
use vmrescue_tests::harness;

const ROOT_UUID: &str = "11111111-2222-4333-8444-555555555555";
const HOME_UUID: &str = "66666666-7777-4888-9999-aaaaaaaaaaaa";
const FSTAB: &str = "\
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=11111111-2222-4333-8444-555555555555 / ext4 errors=remount-ro 0 1
UUID=66666666-7777-4888-9999-aaaaaaaaaaaa /home ext4 defaults 0 2
/dev/vdb1\t/srv\text4\tdefaults,nofail\t0\t2
UUID=deadbeef-0000-4000-8000-000000000000 /mnt/gone ext4 defaults 0 2
proc /proc proc defaults 0 0
";

/// The guest's root filesystem image (optionally without /etc).
fn root_fs(dir: &Path, without_etc: bool) -> PathBuf {
    let tree = dir.join("root-tree");
    fixture::os_tree_with_fstab(&tree, FSTAB).unwrap();
    if without_etc {
        std::fs::remove_dir_all(tree.join("etc")).unwrap();
    }
    let img = dir.join("root.fs");
    fixture::mkfs_ext4_uuid(&img, 48, "guestroot", Some(ROOT_UUID), &tree).unwrap();
    img
}

/// A GPT disk whose first partition holds `fs`.
fn gpt_disk(dir: &Path, name: &str, fs: &Path, gpt_type: &str) -> PathBuf {
    let img = dir.join(name);
    fixture::partitioned_disk(
        &img,
        64,
        &[Part {
            size_mib: 50,
            gpt_type,
            name: "p1",
            content: Some(fs),
        }],
    )
    .unwrap();
    img
}

fn home_disk(dir: &Path) -> PathBuf {
    let tree = dir.join("home-tree");
    std::fs::create_dir_all(tree.join("user")).unwrap();
    std::fs::write(tree.join("user/notes.txt"), "hi\n").unwrap();
    let fs = dir.join("home.fs");
    fixture::mkfs_ext4_uuid(&fs, 16, "home", Some(HOME_UUID), &tree).unwrap();
    gpt_disk(dir, "home.img", &fs, GPT_LINUX_FS)
}

/// A data disk that holds an fstab but is no OS: the decoy.
fn decoy_disk(dir: &Path) -> PathBuf {
    let tree = dir.join("decoy-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("data")).unwrap();
    std::fs::write(tree.join("etc/fstab"), "LABEL=x / ext4 defaults 0 1\n").unwrap();
    std::fs::write(tree.join("data/db.bin"), fixture::bytes(7, 100_000)).unwrap();
    let img = dir.join("decoy.img");
    fixture::mkfs_ext4(&img, 16, "data", &tree).unwrap();
    img
}

fn inspect(images: &[&Path]) -> serde_json::Value {
    let mut cmd = Command::new(harness::vmrescue_bin().unwrap());
    cmd.args(["inspect", "--json"]).args(images);
    let out = cmd.output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rescue_check(images: &[&Path]) -> harness::Run {
    let run = harness::rescue(images, "check", &[]).unwrap();
    assert!(run.report.is_some(), "no report: {}", run.stderr);
    run
}

fn fstab_entry<'a>(report: &'a serde_json::Value, file: &str) -> &'a serde_json::Value {
    report["fstab"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == file)
        .unwrap_or_else(|| panic!("no fstab entry for {file}"))
}

#[test]
fn guest_disk_first_with_home_on_a_second_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = root_fs(dir.path(), false);
    let guest = gpt_disk(dir.path(), "guest.img", &root, GPT_LINUX_ROOT_X86_64);
    let home = home_disk(dir.path());
    for report in [
        inspect(&[&guest, &home]),
        rescue_check(&[&guest, &home]).report.unwrap(),
    ] {
        assert_eq!(report["os"]["root_device"], "/dev/vda1", "{report:#}");
        assert_eq!(report["os"]["id"], "debian");
        assert_eq!(
            report["os"]["pretty_name"],
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(report["disks"][0]["pttype"], "gpt");
        let fs: Vec<_> = report["filesystems"].as_array().unwrap().iter().collect();
        let by_dev = |d: &str| {
            fs.iter()
                .find(|f| f["device"] == d)
                .unwrap_or_else(|| panic!("{d}"))
        };
        assert_eq!(by_dev("/dev/vda1")["role"], "root");
        assert_eq!(by_dev("/dev/vda1")["uuid"], ROOT_UUID);
        assert_eq!(by_dev("/dev/vdb1")["role"], "home");
        assert_eq!(by_dev("/dev/vdb1")["mountpoint"], "/home");
        assert_eq!(fstab_entry(&report, "/")["resolution"], "resolved");
        assert_eq!(fstab_entry(&report, "/home")["device"], "/dev/vdb1");
        assert_eq!(fstab_entry(&report, "/srv")["kernel_name"], true);
        assert_eq!(fstab_entry(&report, "/mnt/gone")["resolution"], "missing");
        assert_eq!(fstab_entry(&report, "/proc")["resolution"], "not_a_device");
    }
}

#[test]
fn decoy_data_disk_before_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let root = root_fs(dir.path(), false);
    let guest = gpt_disk(dir.path(), "guest.img", &root, GPT_LINUX_FS);
    let decoy = decoy_disk(dir.path());
    for report in [
        inspect(&[&decoy, &guest]),
        rescue_check(&[&decoy, &guest]).report.unwrap(),
    ] {
        assert_eq!(report["os"]["root_device"], "/dev/vdb1", "{report:#}");
        assert_eq!(report["os"]["candidates"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn root_on_a_whole_disk_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let root = root_fs(dir.path(), false);
    for report in [inspect(&[&root]), rescue_check(&[&root]).report.unwrap()] {
        assert_eq!(report["os"]["root_device"], "/dev/vda", "{report:#}");
        assert_eq!(report["partitions"], serde_json::json!([]));
    }
}

#[test]
fn root_found_when_etc_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let root = root_fs(dir.path(), true);
    let guest = gpt_disk(dir.path(), "guest.img", &root, GPT_LINUX_FS);
    let run = rescue_check(&[&guest]);
    let report = run.report.unwrap();
    assert_eq!(report["os"]["root_device"], "/dev/vda1", "{report:#}");
    assert!(report["os"]["pretty_name"].is_null());
    assert!(report["fstab"].is_null());
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("no /etc/fstab"), "{warnings}");
}

#[test]
fn rescue_medium_with_the_same_uuids_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = root_fs(dir.path(), false);
    // A rescue disk made from the guest's own base image: same filesystem, same UUID.
    let medium = gpt_disk(dir.path(), "medium.img", &root, GPT_LINUX_ROOT_X86_64);
    fixture::mark_rescue_medium(&medium, "test-build").unwrap();
    let guest = gpt_disk(dir.path(), "guest.img", &root, GPT_LINUX_ROOT_X86_64);
    for report in [
        inspect(&[&medium, &guest]),
        rescue_check(&[&medium, &guest]).report.unwrap(),
    ] {
        assert_eq!(report["disks"][0]["rescue_medium"], true, "{report:#}");
        assert_eq!(report["os"]["root_device"], "/dev/vdb1");
        assert_eq!(fstab_entry(&report, "/")["device"], "/dev/vdb1");
        assert!(report["filesystems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["device"] != "/dev/vda1"));
    }
}

#[test]
fn two_guest_roots_pick_none_unless_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = root_fs(dir.path(), false);
    let a = gpt_disk(dir.path(), "a.img", &root, GPT_LINUX_FS);
    let b = gpt_disk(dir.path(), "b.img", &root, GPT_LINUX_FS);
    let report = inspect(&[&a, &b]);
    assert!(report["os"]["root_device"].is_null(), "{report:#}");
    assert_eq!(report["os"]["candidates"].as_array().unwrap().len(), 2);
    assert!(report["warnings"].to_string().contains("--root"));
    let mut cmd = Command::new(harness::vmrescue_bin().unwrap());
    let out = cmd
        .args(["inspect", "--json", "--root", "/dev/vdb1"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let chosen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(chosen["os"]["root_device"], "/dev/vdb1");
    // Duplicate UUIDs make the fstab's root entry ambiguous, and it says so.
    assert_eq!(fstab_entry(&chosen, "/")["resolution"], "ambiguous");
}
