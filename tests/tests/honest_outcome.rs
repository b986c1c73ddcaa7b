//! The outcome never claims more than was done: `repaired` or `clean` only when the OS root was
//! identified and every volume the guest needs was reached and checked. Real rescues under QEMU
//! of guests whose root, or a volume their fstab needs, is inside a LUKS container no key was
//! given for.

use std::path::Path;

use vmrescue_tests::fixture::{self, broken_ext4, Part, GPT_LINUX_FS};
use vmrescue_tests::reports::{filesystem, warned_about};
use vmrescue_tests::{harness, layouts};

fn sha(path: &Path) -> String {
    fixture::sha256_file(path).unwrap()
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
    )
    .unwrap();
    let luks = d.join("luks.img");
    layouts::luks(&luks, 40).unwrap();
    let disk = d.join("guest.img");
    fixture::boot_disk(
        &disk,
        &boot,
        Part {
            size_mib: 40,
            gpt_type: GPT_LINUX_FS,
            name: "root",
            content: Some(&luks),
        },
    )
    .unwrap();
    let home = broken_ext4(
        d,
        "home.img",
        "home",
        &[("alice/notes.txt", b"remember the milk\n")],
    )
    .unwrap();
    let luks_before = sha(&luks);

    let run = harness::rescue(&[&disk, &home], "repair", &[]).unwrap();
    let r = run.json();
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
    run.expect(1, "unrepaired");
    assert_eq!(
        [sha(&root), sha(&luks)],
        before,
        "check mode wrote to a disk"
    );

    // Repair mode: the root is mended, but /home was never reached: still unrepaired.
    let run = harness::rescue(&[&root, &luks], "repair", &[]).unwrap();
    let r = run.json();
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
