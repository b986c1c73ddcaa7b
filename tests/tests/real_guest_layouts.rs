//! The layouts on a real Debian 12 guest (debootstrap, its own kernel, its own initramfs with
//! lvm2, mdadm, cryptsetup and btrfs-progs, its own boot loader): root and /home on LVM, a root
//! mirrored by md RAID1 (also with a disk gone), a LUKS /home the guest opens with its key file,
//! and a btrfs root in a subvolume; each broken the way a power cut or a purge leaves it,
//! rescued in check then repair mode, and `--verify` booting the guest through its firmware
//! and syslinux to a login prompt; alice's files byte for byte the same.

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

/// The root filesystem at `at` on `disk`, copied out: its e2fsck status on the host.
fn host_fsck_at(disk: &std::path::Path, at: layouts::Extent, dir: &std::path::Path) -> i32 {
    let out = dir.join(format!(
        "{}-root.fs",
        disk.file_name().unwrap().to_string_lossy()
    ));
    layouts::extract(disk, at, &out).unwrap();
    let status = fixture::host_e2fsck(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    status
}

#[test]
fn a_debian_guest_with_its_root_on_md_raid1_is_repaired_and_boots_even_with_a_disk_gone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("raid-a.img"), d.join("raid-b.img"));
    let root_at = guest::raid1_syslinux_disks([&a, &b], |fs| {
        fixture::debugfs_write(fs, &["ssv state 2", "ssv error_count 2"])
    })
    .unwrap();
    // The first disk alone, as it was, for the guest that lost its second disk.
    let alone = d.join("alone.img");
    guest::sparse_copy(&a, &alone).unwrap();
    let sha = |p: &std::path::Path| fixture::sha256_file(p).unwrap();

    // Check mode: the array assembled read-only from both partitions, the root found on it
    // and broken, nothing written to either disk.
    let before = [sha(&a), sha(&b)];
    let run = harness::rescue(&[&a, &b], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    let root = r["os"]["root_device"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(root.starts_with("/dev/md"), "{r:#}");
    let layer = &r["layers"][0];
    assert_eq!(
        (&layer["kind"], &layer["state"]),
        (&"md".into(), &"active".into()),
        "{r:#}"
    );
    assert_eq!(layer["read_only"], true, "{layer:#}");
    assert_eq!(
        layer["members"],
        serde_json::json!(["/dev/vda2", "/dev/vdb2"])
    );
    assert_eq!(filesystem(r, &root)["state_before"], "errors", "{r:#}");
    assert_eq!([sha(&a), sha(&b)], before, "check mode wrote");

    // Repair with --verify: the guest's own syslinux and initramfs (whose mdadm assembles the
    // array) bring it to a login prompt; both mirrors mended.
    let run = harness::repair_verified(&[&a, &b], &["--verify"]).unwrap();
    let r = run.expect(0, "repaired");
    let v = &r["verify"];
    assert_eq!(
        (&v["method"], &v["after"]["state"]),
        (&"firmware".into(), &"booted".into()),
        "{v:#}"
    );
    let root = r["os"]["root_device"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(filesystem(r, &root)["fsck"]["status"], "corrected", "{r:#}");
    for disk in [&a, &b] {
        assert_eq!(host_fsck_at(disk, root_at, d), 0, "{}", disk.display());
    }

    // The second disk gone: the array runs degraded, the missing member is said, check mode
    // writes nothing, and the repaired guest boots on one disk (its initramfs starts the
    // array degraded once the root does not come).
    let before = sha(&alone);
    let run = harness::rescue(&[&alone], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    let layer = &r["layers"][0];
    assert_eq!(layer["state"], "partial", "{r:#}");
    assert!(
        layer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("1 of its 2 members missing"),
        "{layer:#}"
    );
    assert_eq!(sha(&alone), before, "check mode wrote to the lone member");
    let run = harness::repair_verified(&[&alone], &["--verify"]).unwrap();
    let r = run.expect(0, "repaired");
    assert_eq!(r["verify"]["after"]["state"], "booted", "{:#}", r["verify"]);
    assert_eq!(host_fsck_at(&alone, root_at, d), 0);
}

#[test]
fn a_debian_guest_with_a_luks_home_is_repaired_only_with_its_key_and_boots_to_login() {
    const KEY: &[u8] = b"correct horse battery staple";
    const HOME_MIB: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // /home on the second disk inside a LUKS container that the guest opens at boot with its
    // key file (crypttab), both filesystems in the error state a power cut leaves.
    let home_tree = d.join("home-tree");
    std::fs::create_dir_all(home_tree.join("alice")).unwrap();
    std::fs::write(home_tree.join("alice/notes.txt"), guest::ALICE_NOTES).unwrap();
    let home = d.join("home.fs");
    fixture::mkfs_ext4(&home, HOME_MIB, "home", &home_tree).unwrap();
    fixture::debugfs_write(&home, &["ssv state 2", "ssv error_count 2"]).unwrap();
    let luks = d.join("luks.img");
    let uuid = layouts::luks_with(&luks, KEY, &home).unwrap();
    let disk = d.join("guest.img");
    guest::syslinux_disk_broken(
        guest::debian_layouts(),
        &disk,
        |tree| {
            guest::append(
                tree,
                "etc/fstab",
                "/dev/mapper/home_crypt /home ext4 defaults 0 2\n",
            )?;
            std::fs::write(
                tree.join("etc/crypttab"),
                format!("home_crypt UUID={uuid} /etc/keys/home.key luks\n"),
            )?;
            std::fs::create_dir_all(tree.join("etc/keys"))?;
            std::fs::write(tree.join("etc/keys/home.key"), KEY)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                tree.join("etc/keys/home.key"),
                std::fs::Permissions::from_mode(0o400),
            )?;
            Ok(())
        },
        |fs| fixture::debugfs_write(fs, &["ssv state 2", "ssv error_count 2"]),
    )
    .unwrap();
    let key_file = d.join("home.key");
    std::fs::write(&key_file, KEY).unwrap();
    let key_arg = format!("{uuid}={}", key_file.display());
    let mapped = format!("/dev/mapper/luks-{uuid}");
    let key_text = std::str::from_utf8(KEY).unwrap();

    // Without the key: the container is locked and named, the root is mended, and the guest
    // is not called repaired (its /home was never reached).
    let run = harness::rescue(&[&disk, &luks], "repair", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    let layer = &r["layers"][0];
    assert_eq!(
        (&layer["kind"], &layer["state"]),
        (&"luks".into(), &"locked".into()),
        "{r:#}"
    );
    assert!(
        layer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("--luks-key"),
        "{layer:#}"
    );
    assert_eq!(
        filesystem(r, "/dev/vda2")["fsck"]["status"],
        "corrected",
        "{r:#}"
    );

    // With the key and --verify: /home opened and mended, and the guest's own boot (its
    // systemd opening the container with its key file) reaches a login prompt; the key is
    // nowhere in what the run printed.
    let run =
        harness::repair_verified(&[&disk, &luks], &["--verify", "--luks-key", &key_arg]).unwrap();
    let r = run.expect(0, "repaired");
    assert_eq!(
        filesystem(r, &mapped)["fsck"]["status"],
        "corrected",
        "{r:#}"
    );
    assert_eq!(filesystem(r, &mapped)["mountpoint"], "/home", "{r:#}");
    assert_eq!(r["verify"]["after"]["state"], "booted", "{:#}", r["verify"]);
    assert!(!run.stdout.contains(key_text) && !run.stderr.contains(key_text));

    // On the host: the root clean, and /home (copied out through dm-crypt) clean with alice's
    // notes byte for byte.
    let root = d.join("root-now.fs");
    layouts::extract(&disk, guest::SYSLINUX_ROOT, &root).unwrap();
    assert_eq!(fixture::host_e2fsck(&root).unwrap(), 0);
    let home_now = d.join("home-now.fs");
    layouts::luks_content(&luks, KEY, &home_now, HOME_MIB).unwrap();
    assert_eq!(fixture::host_e2fsck(&home_now).unwrap(), 0);
    assert_eq!(
        fixture::read_in_image(&home_now, "/alice/notes.txt").unwrap(),
        Some(guest::ALICE_NOTES.to_vec())
    );
}

#[test]
fn a_debian_guest_on_btrfs_subvolumes_is_repaired_inside_its_subvolume_and_boots_to_login() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("btrfs-guest.img");
    // The root in @ lost the mount points its boot needs (/proc, /sys, /run, /dev), as a
    // purge or a bad copy leaves it; /home in @home.
    guest::btrfs_syslinux_disk(&disk, |tree| {
        for d in ["proc", "sys", "run", "dev"] {
            std::fs::remove_dir_all(tree.join(d))?;
        }
        Ok(())
    })
    .unwrap();

    // Check mode: the root found in its subvolume, fstab read from there, the filesystem
    // checked once, the mount points planned, nothing written.
    let before = fixture::sha256_file(&disk).unwrap();
    let run = harness::rescue(&[&disk], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    assert_eq!(
        (&r["os"]["root_device"], &r["os"]["root_subvolume"]),
        (&"/dev/vda2".into(), &"@".into()),
        "{r:#}"
    );
    let f = filesystem(r, "/dev/vda2");
    assert_eq!(
        f["fsck"]["passes"].as_array().map(Vec::len),
        Some(1),
        "{f:#}"
    );
    let planned: Vec<&str> = r["plan"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    for p in ["/proc", "/sys", "/run", "/dev"] {
        assert!(planned.contains(&p), "{p} not planned: {r:#}");
    }
    assert_eq!(
        fixture::sha256_file(&disk).unwrap(),
        before,
        "check mode wrote"
    );

    // Repair with --verify: the mount points made inside @, and the guest's own syslinux and
    // initramfs (rootflags=subvol=@) bring it to a login prompt with /home mounted from @home.
    let run = harness::repair_verified(&[&disk], &["--verify"]).unwrap();
    let r = run.expect(0, "repaired");
    assert_eq!(r["verify"]["after"]["state"], "booted", "{:#}", r["verify"]);
    let run = harness::rescue(&[&disk], "check", &[]).unwrap();
    let r = run.expect(0, "clean");
    assert!(r["plan"].as_array().unwrap().is_empty(), "{r:#}");
    let notes = vmrescue_protocol::digest::sha256_hex(guest::ALICE_NOTES);
    assert_eq!(
        layouts::btrfs_file_sha(&disk, "/dev/vda2", "@home", "/alice/notes.txt").unwrap(),
        Some(notes)
    );
}

#[test]
fn a_rhel_like_guest_with_an_xfs_root_on_lvm_and_a_dirty_log_is_replayed_and_boots_to_login() {
    use vmrescue_tests::crash;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("rhel-guest.img");
    let root_at = guest::xfs_lvm_syslinux_disk(&disk, |_| Ok(())).unwrap();
    let root_lv = "/dev/mapper/rhel-root";

    // Check mode: the root found on rhel/root (what was checkpointed: no replay), the dirty
    // log a problem left, nothing written. /boot is XFS on the second partition.
    let before = fixture::sha256_file(&disk).unwrap();
    let run = harness::rescue(&[&disk], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    assert_eq!(r["os"]["root_device"], root_lv, "{r:#}");
    let f = filesystem(r, root_lv);
    assert_eq!(
        (&f["type"], &f["state_before"]),
        (&"xfs".into(), &"not_clean".into()),
        "{f:#}"
    );
    assert_eq!(
        fixture::sha256_file(&disk).unwrap(),
        before,
        "check mode wrote"
    );

    // Repair with --verify: the log replayed on the LV (the last write kept), the root clean,
    // and the guest's own boot (its initramfs activating rhel) reaches a login prompt.
    let run = harness::repair_verified(&[&disk], &["--verify"]).unwrap();
    let r = run.expect(0, "repaired");
    assert_eq!(r["verify"]["after"]["state"], "booted", "{:#}", r["verify"]);
    let boot = filesystem(r, "/dev/vda2");
    assert_eq!(
        (&boot["type"], &boot["mountpoint"], &boot["fsck"]["status"]),
        (&"xfs".into(), &"/boot".into(), &"clean".into()),
        "{boot:#}"
    );
    let now = dir.path().join("root-now.xfs");
    layouts::extract(&disk, root_at, &now).unwrap();
    assert_eq!(crash::xfs_log_state(&now).unwrap(), crash::LogState::Clean);
    let check = crash::xfs_repair(&now, &["-n"]).unwrap();
    assert_eq!(check.code, 0, "xfs_repair -n: {}", check.stderr);
    let (path, content) = guest::LATE_WRITE;
    assert_eq!(
        crash::xfs_read_file(&now, &format!("/{path}")).unwrap(),
        Some(content.to_vec())
    );
}

#[test]
fn a_clone_of_the_lvm_guest_beside_it_is_never_touched_and_the_named_guest_boots() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = d.join("source.img");
    let (root_at, _) = guest::lvm_syslinux_disk(
        &source,
        |_| Ok(()),
        |fs| fixture::debugfs_write(fs, &["ssv state 2", "ssv error_count 2"]),
    )
    .unwrap();
    // A clone of the whole disk attached first (a copy made for a migration, or the image it
    // was made from): the same PV and VG UUIDs and name; the operator names the source's disk.
    let clone = d.join("clone.img");
    guest::sparse_copy(&source, &clone).unwrap();
    let sha = |p: &std::path::Path| fixture::sha256_file(p).unwrap();
    let clone_before = sha(&clone);

    let run = harness::rescue(&[&clone, &source], "repair", &["--root", "/dev/vdb"]).unwrap();
    let r = run.expect(0, "repaired");
    let layers = r["layers"].as_array().unwrap();
    let active: Vec<_> = layers.iter().filter(|l| l["state"] == "active").collect();
    assert_eq!(active.len(), 1, "{r:#}");
    assert_eq!(
        active[0]["members"],
        serde_json::json!(["/dev/vdb2"]),
        "{r:#}"
    );
    let dup = layers
        .iter()
        .find(|l| l["state"] == "duplicate")
        .unwrap_or_else(|| panic!("no duplicate named: {r:#}"));
    assert_eq!(dup["members"], serde_json::json!(["/dev/vda2"]), "{dup:#}");
    assert!(
        dup["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("vgimportclone"),
        "{dup:#}"
    );
    assert_eq!(sha(&clone), clone_before, "the clone was written to");
    for lv in ["/dev/mapper/vg0-root", "/dev/mapper/vg0-home"] {
        assert_eq!(
            filesystem(r, lv)["fsck"]["status"],
            "corrected",
            "{lv}: {r:#}"
        );
    }
    assert_eq!(host_fsck_at(&source, root_at, d), 0, "the source's root");

    // The repaired guest on its own: a check finds it clean and its own boot reaches login.
    let run = harness::rescue(
        &[&source],
        "check",
        &[
            "--verify",
            "--verify-timeout",
            &vmrescue_tests::budgets::secs(vmrescue_tests::budgets::GUEST_BOOT),
        ],
    )
    .unwrap();
    let r = run.expect(0, "clean");
    assert_eq!(r["verify"]["after"]["state"], "booted", "{:#}", r["verify"]);
}
