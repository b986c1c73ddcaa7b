//! The outcome never claims more than was done: `repaired` or `clean` only when the OS root was
//! identified and every volume the guest needs was reached and checked. Real rescues under QEMU
//! of guests whose root, or a volume their fstab needs, is inside an LVM volume group this
//! rescue does not activate.

use std::path::Path;

use serde_json::Value;
use vmrescue_tests::fixture::{self, Part, GPT_LINUX_FS};
use vmrescue_tests::{harness, layouts};

fn filesystem<'a>(report: &'a Value, device: &str) -> &'a Value {
    report["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["device"] == device)
        .unwrap_or_else(|| panic!("{device} not in {report:#}"))
}

fn warned_about(report: &Value, device: &str, words: &str) -> bool {
    report["warnings"].as_array().unwrap().iter().any(|w| {
        w["message"]
            .as_str()
            .is_some_and(|m| m.contains(device) && m.contains(words))
    })
}

/// An ext4 filesystem image in the error state a journal abort leaves.
fn broken_ext4(dir: &Path, name: &str, label: &str, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    for (path, data) in files {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::fs::create_dir_all(&tree).unwrap();
    let img = dir.join(name);
    fixture::mkfs_ext4(&img, 32, label, &tree).unwrap();
    fixture::debugfs_write(&img, &["ssv state 2"]).unwrap();
    img
}

#[test]
fn a_root_inside_lvm_is_no_os_however_much_else_was_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The guest's disk: /boot (plain ext4, a kernel in it), then an LVM physical volume of
    // volume group vg0, where its root would be; /home on a second disk. Both plain
    // filesystems are in the error state.
    let boot = broken_ext4(
        d,
        "boot.fs",
        "boot",
        &[
            ("vmlinuz-6.1.0-27-amd64", &fixture::bytes(1, 4096)),
            ("grub/grub.cfg", b""),
        ],
    );
    let pv = d.join("pv.img");
    layouts::lvm_pv(&pv, 40, "vg0").unwrap();
    let disk = d.join("guest.img");
    fixture::partitioned_disk(
        &disk,
        80,
        &[
            Part {
                size_mib: 32,
                gpt_type: GPT_LINUX_FS,
                name: "boot",
                content: Some(&boot),
            },
            Part {
                size_mib: 40,
                gpt_type: "E6D6D379-F507-44C2-A23C-238F2A3DF928",
                name: "lvm",
                content: Some(&pv),
            },
        ],
    )
    .unwrap();
    let home = broken_ext4(
        d,
        "home.img",
        "home",
        &[("alice/notes.txt", b"remember the milk\n")],
    );
    let pv_before = fixture::sha256_file(&pv).unwrap();

    let run = harness::rescue(&[&disk, &home], "repair", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert_eq!(r["outcome"], "no_os", "{r:#}");
    assert!(r["os"]["root_device"].is_null(), "{r:#}");
    // The rescue did what it could (both plain filesystems mended) and says where the root
    // may be.
    assert_eq!(filesystem(r, "/dev/vda1")["fsck"]["status"], "corrected");
    assert_eq!(filesystem(r, "/dev/vdb")["fsck"]["status"], "corrected");
    assert_eq!(filesystem(r, "/dev/vda2")["type"], "LVM2_member");
    assert!(warned_about(r, "/dev/vda2", "LVM physical volume"), "{r:#}");
    // Nothing was written to the volume group.
    let mut pv_now = Vec::new();
    let data = std::fs::read(&disk).unwrap();
    pv_now.extend_from_slice(&data[(33 << 20)..(73 << 20)]);
    assert_eq!(
        vmrescue_protocol::digest::sha256_hex(&pv_now),
        pv_before,
        "the physical volume changed"
    );
}

#[test]
fn a_needed_volume_the_rescue_cannot_open_leaves_it_unrepaired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A plain root whose fstab mounts /home from an LV of vg0, on a second disk.
    let tree = d.join("root-tree");
    let sums = fixture::os_tree_with_fstab(
        &tree,
        "LABEL=guestroot / ext4 errors=remount-ro 0 1\n/dev/mapper/vg0-home /home ext4 defaults 0 2\n/dev/mapper/vg0-swap none swap sw 0 0\n",
    )
    .unwrap();
    let root = d.join("root.img");
    fixture::mkfs_ext4(&root, 64, "guestroot", &tree).unwrap();
    fixture::debugfs_write(&root, &["ssv state 2"]).unwrap();
    let pv = d.join("pv.img");
    layouts::lvm_pv(&pv, 40, "vg0").unwrap();

    // Check mode: unrepaired, nothing written on either disk.
    let before = [
        fixture::sha256_file(&root).unwrap(),
        fixture::sha256_file(&pv).unwrap(),
    ];
    let run = harness::rescue(&[&root, &pv], "check", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(
        (run.code, r["outcome"].as_str()),
        (1, Some("unrepaired")),
        "{r:#}"
    );
    let after = [
        fixture::sha256_file(&root).unwrap(),
        fixture::sha256_file(&pv).unwrap(),
    ];
    assert_eq!(after, before, "check mode wrote to a disk");

    // Repair mode: the root is mended, but /home was never reached: still unrepaired.
    let run = harness::rescue(&[&root, &pv], "repair", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert_eq!(r["outcome"], "unrepaired", "{r:#}");
    assert_eq!(r["os"]["root_device"], "/dev/vda");
    let root_fs = filesystem(r, "/dev/vda");
    assert_eq!(root_fs["fsck"]["status"], "corrected");
    assert_eq!(root_fs["needed_by"], "the OS root");
    assert_eq!(root_fs["reached"], true);
    let pv_fs = filesystem(r, "/dev/vdb");
    assert_eq!(pv_fs["type"], "LVM2_member");
    assert_eq!(pv_fs["reached"], false, "{pv_fs:#}");
    let why = pv_fs["needed_by"].as_str().unwrap();
    assert!(why.contains("/home on /dev/mapper/vg0-home"), "{why}");
    assert!(
        !why.contains("swap"),
        "swap is not a volume to check: {why}"
    );
    assert!(
        pv_fs["not_reached"]
            .as_str()
            .unwrap()
            .contains("not activated"),
        "{pv_fs:#}"
    );
    assert!(warned_about(r, "/dev/vdb", "needed by the guest"), "{r:#}");
    assert_eq!(
        fixture::host_e2fsck(&root).unwrap(),
        0,
        "the root is mended"
    );
    assert_eq!(
        fixture::sha256_file(&pv).unwrap(),
        before[1],
        "the PV is untouched"
    );
    for (path, sum) in &sums {
        assert_eq!(
            &fixture::sha256_in_image(&root, path).unwrap(),
            sum,
            "{path}"
        );
    }
}
