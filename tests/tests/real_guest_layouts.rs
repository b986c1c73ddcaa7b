//! The layouts on a real Debian 12 guest (debootstrap, its own kernel, its own initramfs with
//! lvm2, its own boot loader): the root and /home LVM logical volumes, both in the error state a
//! power cut leaves, rescued in check then repair mode, and `--verify` booting the guest through
//! its firmware and syslinux to a login prompt; alice's files byte for byte the same.

use vmrescue_tests::reports::filesystem;
use vmrescue_tests::{fixture, guest, harness, layouts};

#[test]
fn a_debian_guest_with_its_root_on_lvm_is_repaired_and_boots_to_login() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("lvm-guest.img");
    let (root_at, home_at) = guest::lvm_syslinux_disk(
        &image,
        |_| Ok(()),
        |fs| fixture::debugfs_write(fs, &["ssv state 2", "ssv error_count 2"]),
    )
    .unwrap();

    // Check mode: the volume group activated read-only, both LVs found broken, nothing written.
    let before = fixture::sha256_file(&image).unwrap();
    let run = harness::rescue(&[&image], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    assert_eq!(r["os"]["root_device"], "/dev/mapper/vg0-root", "{r:#}");
    assert_eq!(r["layers"][0]["read_only"], true, "{r:#}");
    for dev in ["/dev/mapper/vg0-root", "/dev/mapper/vg0-home"] {
        assert_eq!(filesystem(r, dev)["state_before"], "errors", "{dev}: {r:#}");
    }
    assert_eq!(
        fixture::sha256_file(&image).unwrap(),
        before,
        "check mode wrote"
    );

    // Repair with --verify: the guest's own boot loader and initramfs (which must activate
    // vg0 itself) bring it to a login prompt.
    let run = harness::repair_verified(&[&image], &["--verify"]).unwrap();
    let r = run.expect(0, "repaired");
    let v = &r["verify"];
    assert_eq!(v["method"], "firmware", "{v:#}");
    assert_eq!(v["after"]["state"], "booted", "{v:#}");
    for dev in ["/dev/mapper/vg0-root", "/dev/mapper/vg0-home"] {
        assert_eq!(filesystem(r, dev)["fsck"]["status"], "corrected", "{dev}");
    }
    let root = dir.path().join("root-now.img");
    let home = dir.path().join("home-now.img");
    layouts::extract(&image, root_at, &root).unwrap();
    layouts::extract(&image, home_at, &home).unwrap();
    assert_eq!(fixture::host_e2fsck(&root).unwrap(), 0);
    assert_eq!(fixture::host_e2fsck(&home).unwrap(), 0);
    assert_eq!(
        fixture::read_in_image(&home, "/alice/notes.txt").unwrap(),
        Some(guest::ALICE_NOTES.to_vec())
    );
}
