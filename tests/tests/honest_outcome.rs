//! The outcome never claims more than was done: `repaired` or `clean` only when the OS root was
//! identified and every volume the guest needs was reached and checked. Real rescues under QEMU
//! of guests whose root, or a volume their fstab needs, is inside a LUKS container no key was
//! given for; and of a guest whose root and /home are LVM logical volumes, which the rescue
//! opens (read-only in check mode), checks and repairs.

use std::path::Path;

use serde_json::Value;
use vmrescue_tests::fixture::{self, Part, GPT_LINUX_FS};
use vmrescue_tests::harness;
use vmrescue_tests::layouts::{self, Lv};

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

fn sha(path: &Path) -> String {
    fixture::sha256_file(path).unwrap()
}

#[test]
fn a_root_on_lvm_is_opened_checked_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // /boot plain ext4; then an LVM physical volume of vg0 holding the root and /home, fstab
    // naming them by both of LVM's names. All three filesystems in the error state.
    let boot = broken_ext4(
        d,
        "boot.fs",
        "boot",
        &[("vmlinuz-6.1.0-27-amd64", &fixture::bytes(1, 4096))],
    );
    let tree = d.join("root-tree");
    let sums = fixture::os_tree_with_fstab(
        &tree,
        "/dev/mapper/vg0-root / ext4 errors=remount-ro 0 1\nLABEL=boot /boot ext4 defaults 0 2\n/dev/vg0/home /home ext4 defaults 0 2\n",
    )
    .unwrap();
    let root = d.join("root.fs");
    fixture::mkfs_ext4(&root, 40, "guestroot", &tree).unwrap();
    fixture::debugfs_write(&root, &["ssv state 2"]).unwrap();
    let home = broken_ext4(
        d,
        "home.fs",
        "home",
        &[("alice/notes.txt", b"remember the milk\n")],
    );
    let pv = d.join("pv.img");
    let extents = layouts::lvm_vg(
        &pv,
        100,
        "vg0",
        &[
            Lv {
                name: "root",
                size_mib: 48,
                content: Some(&root),
            },
            Lv {
                name: "home",
                size_mib: 36,
                content: Some(&home),
            },
        ],
    )
    .unwrap();
    let disk = d.join("guest.img");
    fixture::partitioned_disk(
        &disk,
        140,
        &[
            Part {
                size_mib: 32,
                gpt_type: GPT_LINUX_FS,
                name: "boot",
                content: Some(&boot),
            },
            Part {
                size_mib: 100,
                gpt_type: "E6D6D379-F507-44C2-A23C-238F2A3DF928",
                name: "lvm",
                content: Some(&pv),
            },
        ],
    )
    .unwrap();
    // The PV starts at 33 MiB: the first partition at 1 MiB, 32 MiB long.
    let pv_at = |e: layouts::Extent| layouts::Extent {
        offset: (33 << 20) + e.offset,
        len: e.len,
    };

    // Check mode: the LVs are found and checked on a read-only activation; nothing is
    // written anywhere on the disk, LVM metadata included.
    let before = sha(&disk);
    let run = harness::rescue(&[&disk], "check", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(
        (run.code, r["outcome"].as_str()),
        (1, Some("unrepaired")),
        "{r:#}"
    );
    assert_eq!(r["os"]["root_device"], "/dev/mapper/vg0-root", "{r:#}");
    let layer = &r["layers"][0];
    assert_eq!(layer["kind"], "lvm", "{r:#}");
    assert_eq!(layer["name"], "vg0");
    assert_eq!(layer["state"], "active", "{layer:#}");
    assert_eq!(layer["read_only"], true);
    assert_eq!(layer["members"][0], "/dev/vda2");
    assert_eq!(
        filesystem(r, "/dev/vda2")["opened_as"],
        serde_json::json!(["/dev/mapper/vg0-home", "/dev/mapper/vg0-root"]),
        "{r:#}"
    );
    for dev in ["/dev/mapper/vg0-root", "/dev/mapper/vg0-home"] {
        let f = filesystem(r, dev);
        assert_eq!(f["state_before"], "errors", "{f:#}");
        assert_eq!(f["reached"], true, "{f:#}");
    }
    assert_eq!(
        filesystem(r, "/dev/mapper/vg0-home")["mountpoint"],
        "/home",
        "fstab's /dev/vg0/home is this LV: {r:#}"
    );
    assert!(
        !r["disks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"].as_str().unwrap().starts_with("mapper")),
        "an LV is not a disk: {r:#}"
    );
    assert_eq!(sha(&disk), before, "check mode wrote to the disk");

    // Repair mode: every filesystem mended, in place, the guest's files intact.
    let run = harness::rescue(&[&disk], "repair", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(
        (run.code, r["outcome"].as_str()),
        (0, Some("repaired")),
        "{r:#}"
    );
    assert_eq!(r["layers"][0]["read_only"], false);
    for dev in ["/dev/vda1", "/dev/mapper/vg0-root", "/dev/mapper/vg0-home"] {
        assert_eq!(filesystem(r, dev)["fsck"]["status"], "corrected", "{dev}");
    }
    let root_now = d.join("root-now.fs");
    let home_now = d.join("home-now.fs");
    layouts::extract(&disk, pv_at(extents[0]), &root_now).unwrap();
    layouts::extract(&disk, pv_at(extents[1]), &home_now).unwrap();
    assert_eq!(
        fixture::host_e2fsck(&root_now).unwrap(),
        0,
        "root LV mended"
    );
    assert_eq!(
        fixture::host_e2fsck(&home_now).unwrap(),
        0,
        "home LV mended"
    );
    for (path, sum) in &sums {
        assert_eq!(
            &fixture::sha256_in_image(&root_now, path).unwrap(),
            sum,
            "{path}"
        );
    }
    assert_eq!(
        fixture::read_in_image(&home_now, "/alice/notes.txt").unwrap(),
        Some(b"remember the milk\n".to_vec())
    );
}

#[test]
fn a_root_inside_a_locked_luks_container_is_no_os_however_much_else_was_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The guest's disk: /boot (plain ext4, a kernel in it), then a LUKS container, where its
    // root would be, and no key given; /home on a second disk. Both plain filesystems are in
    // the error state.
    let boot = broken_ext4(
        d,
        "boot.fs",
        "boot",
        &[
            ("vmlinuz-6.1.0-27-amd64", &fixture::bytes(1, 4096)),
            ("grub/grub.cfg", b""),
        ],
    );
    let luks = d.join("luks.img");
    layouts::luks(&luks, 40).unwrap();
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
                gpt_type: GPT_LINUX_FS,
                name: "root",
                content: Some(&luks),
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
    let luks_before = sha(&luks);

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
    assert_eq!(filesystem(r, "/dev/vda2")["type"], "crypto_LUKS");
    assert!(warned_about(r, "/dev/vda2", "LUKS container"), "{r:#}");
    // Nothing was written to the container.
    let data = std::fs::read(&disk).unwrap();
    assert_eq!(
        vmrescue_protocol::digest::sha256_hex(&data[(33 << 20)..(73 << 20)]),
        luks_before,
        "the LUKS container changed"
    );
}

#[test]
fn a_needed_volume_the_rescue_cannot_open_leaves_it_unrepaired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A plain root whose fstab mounts /home from a LUKS container on a second disk.
    let tree = d.join("root-tree");
    let sums = fixture::os_tree_with_fstab(
        &tree,
        "LABEL=guestroot / ext4 errors=remount-ro 0 1\n/dev/mapper/home_crypt /home ext4 defaults 0 2\n/dev/mapper/swap_crypt none swap sw 0 0\n",
    )
    .unwrap();
    let root = d.join("root.img");
    fixture::mkfs_ext4(&root, 64, "guestroot", &tree).unwrap();
    fixture::debugfs_write(&root, &["ssv state 2"]).unwrap();
    let luks = d.join("luks.img");
    layouts::luks(&luks, 40).unwrap();

    // Check mode: unrepaired, nothing written on either disk.
    let before = [sha(&root), sha(&luks)];
    let run = harness::rescue(&[&root, &luks], "check", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(
        (run.code, r["outcome"].as_str()),
        (1, Some("unrepaired")),
        "{r:#}"
    );
    assert_eq!(
        [sha(&root), sha(&luks)],
        before,
        "check mode wrote to a disk"
    );

    // Repair mode: the root is mended, but /home was never reached: still unrepaired.
    let run = harness::rescue(&[&root, &luks], "repair", &[]).unwrap();
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
    let luks_fs = filesystem(r, "/dev/vdb");
    assert_eq!(luks_fs["type"], "crypto_LUKS");
    assert_eq!(luks_fs["reached"], false, "{luks_fs:#}");
    let why = luks_fs["needed_by"].as_str().unwrap();
    assert!(why.contains("/home on /dev/mapper/home_crypt"), "{why}");
    assert!(
        !why.contains("swap"),
        "swap is not a volume to check: {why}"
    );
    assert!(
        luks_fs["not_reached"]
            .as_str()
            .unwrap()
            .contains("stayed locked"),
        "{luks_fs:#}"
    );
    assert!(warned_about(r, "/dev/vdb", "needed by the guest"), "{r:#}");
    assert_eq!(
        fixture::host_e2fsck(&root).unwrap(),
        0,
        "the root is mended"
    );
    assert_eq!(sha(&luks), before[1], "the LUKS container is untouched");
    for (path, sum) in &sums {
        assert_eq!(
            &fixture::sha256_in_image(&root, path).unwrap(),
            sum,
            "{path}"
        );
    }
}
