//! `rescue --verify`: the real Debian 12 guest (see `guest`), broken the way operators find
//! it, rescued, then booted with its own kernel on overlays: the outcome is `repaired` only
//! when the guest boots afterwards, and the verify boots write nothing to its disk.

use vmrescue_tests::guest;
use vmrescue_tests::harness;
use vmrescue_tests::{budgets, fixture};

#[test]
fn an_fstab_volume_gone_hangs_before_the_repair_and_boots_after() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fstab-gone.img");
    guest::disk(&image, guest::gone_volume_fstab).unwrap();
    let seed = fixture::read_in_image(&image, "/var/lib/systemd/random-seed").unwrap();
    // systemd waits for the missing device without end: the boot before hangs on its job.
    let limit = budgets::secs(budgets::GUEST_BOOT);
    let run = harness::rescue(
        &[&image],
        "repair",
        // Staged in overlays and committed to the disk once the guest boots (no regression).
        &["--rollback-on-regression", "--verify-timeout", &limit],
    )
    .unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let r = run.report.as_ref().unwrap();
    assert_eq!(r["outcome"], "repaired", "{r:#}");
    let v = &r["verify"];
    assert_eq!(v["method"], "direct_kernel", "{v:#}");
    assert!(
        v["kernel"].as_str().unwrap().starts_with("/boot/vmlinuz-"),
        "{v:#}"
    );
    assert!(
        v["cmdline"].as_str().unwrap().ends_with("console=ttyS0"),
        "{v:#}"
    );
    assert_eq!(v["before"]["state"], "hang", "{v:#}");
    let job = v["before"]["last_job"].as_str().unwrap();
    assert!(
        job.contains(&guest::GONE_UUID[..8]),
        "the job waiting for the gone volume: {job}"
    );
    assert_eq!(v["after"]["state"], "booted", "{v:#}");
    assert_eq!(v["rolled_back"], false);
    let after: Vec<&str> = v["after"]["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert!(
        after.contains(&"kernel") && after.last() == Some(&"login"),
        "{after:?}"
    );
    assert!(v["after"]["elapsed_s"].as_f64().unwrap() > 0.0);
    assert_eq!(fixture::host_e2fsck(&image).unwrap(), 0);
    // The verify boots wrote nothing: the fstab is the repaired one, and the random seed
    // systemd refreshes at every boot is as it was.
    let fstab = String::from_utf8(
        fixture::read_in_image(&image, "/etc/fstab")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(
        fstab.contains("nofail") || !fstab.contains(&format!("\nUUID={}", guest::GONE_UUID)),
        "{fstab}"
    );
    assert_eq!(
        fixture::read_in_image(&image, "/var/lib/systemd/random-seed").unwrap(),
        seed,
        "a verify boot wrote to the guest's disk"
    );
}

#[test]
fn a_guest_without_its_init_is_never_called_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("no-init.img");
    guest::disk(&image, |root| {
        for init in [
            "sbin/init",
            "lib/systemd/systemd",
            "usr/sbin/init",
            "usr/lib/systemd/systemd",
        ] {
            let p = root.join(init);
            if p.symlink_metadata().is_ok() {
                std::fs::remove_file(p)?;
            }
        }
        Ok(())
    })
    .unwrap();
    let limit = budgets::secs(budgets::GUEST_BOOT);
    let run = harness::rescue(
        &[&image],
        "repair",
        &["--verify", "--verify-timeout", &limit],
    )
    .unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert_ne!(r["outcome"], "repaired", "{r:#}");
    assert_ne!(r["outcome"], "clean", "{r:#}");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let after = &r["verify"]["after"];
    assert_ne!(after["state"], "booted", "{after:#}");
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("does not boot after the rescue"),
        "the warning names what the console showed: {warnings}"
    );
}

#[test]
fn check_mode_verify_boots_the_guest_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fine.img");
    guest::disk(&image, |_| Ok(())).unwrap();
    let sum = fixture::sha256_file(&image).unwrap();
    let run = harness::rescue(&[&image], "check", &["--verify-before"]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("{}", run.stderr));
    // What check mode says stays (the guest boots, so the verify changes nothing).
    let plain = if r["plan"].as_array().unwrap().is_empty() {
        "clean"
    } else {
        "unrepaired"
    };
    assert_eq!(r["outcome"], plain, "{r:#}");
    assert!(
        !r["warnings"].to_string().contains("verify:"),
        "{:#}",
        r["warnings"]
    );
    assert_eq!(r["verify"]["after"]["state"], "booted", "{:#}", r["verify"]);
    assert_eq!(r["verify"]["before"]["state"], "booted");
    assert_eq!(
        fixture::sha256_file(&image).unwrap(),
        sum,
        "nothing written"
    );
}

#[test]
fn a_repair_that_stops_a_booting_guest_from_booting_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("regress.img");
    guest::disk(&image, |_| Ok(())).unwrap();
    // An operator's reference /etc with a bad unit: restored as "missing", it replaces the
    // serial console's getty with a process that never shows a login prompt.
    let reference = dir.path().join("reference-etc");
    let unit = reference.join("systemd/system");
    std::fs::create_dir_all(&unit).unwrap();
    std::fs::write(
        unit.join("serial-getty@ttyS0.service"),
        "[Unit]\nDescription=not a getty\n[Service]\nExecStart=/bin/sleep infinity\n",
    )
    .unwrap();
    let sum = fixture::sha256_file(&image).unwrap();
    let limit = budgets::secs(budgets::GUEST_BOOT);
    let run = harness::rescue(
        &[&image],
        "repair",
        &[
            "--rollback-on-regression",
            "--verify-timeout",
            &limit,
            "--reference-etc",
            reference.to_str().unwrap(),
        ],
    )
    .unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("{}", run.stderr));
    let v = &r["verify"];
    assert_eq!(v["before"]["state"], "booted", "{v:#}");
    assert_ne!(v["after"]["state"], "booted", "{v:#}");
    assert_eq!(v["rolled_back"], true, "{v:#}");
    assert_eq!(r["outcome"], "unrepaired");
    assert_eq!(run.code, 1);
    assert!(
        r["changes"]
            .to_string()
            .contains("serial-getty@ttyS0.service"),
        "the discarded repair is listed: {:#}",
        r["changes"]
    );
    assert_eq!(
        fixture::sha256_file(&image).unwrap(),
        sum,
        "the disk is as it was before the rescue"
    );
}

#[test]
fn a_root_in_the_error_state_is_repaired_and_then_boots() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("error-state.img");
    guest::disk(&image, |_| Ok(())).unwrap();
    fixture::debugfs_write(&image, &["ssv state 2", "ssv error_count 3"]).unwrap();
    let run = harness::rescue(&[&image], "repair", &["--verify"]).unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let r = run.report.as_ref().unwrap();
    assert_eq!(r["outcome"], "repaired", "{r:#}");
    assert_eq!(r["verify"]["after"]["state"], "booted", "{:#}", r["verify"]);
    assert_eq!(fixture::host_e2fsck(&image).unwrap(), 0);
}

#[test]
fn without_a_kernel_to_copy_the_verify_boot_goes_through_the_firmware_and_says_so() {
    // The fixture root has no /boot: the host boots the disk through SeaBIOS, which finds no
    // boot loader and shows nothing on the serial console, at any time limit (QEMU's SeaBIOS
    // does not retry a failed boot); that verifies nothing.
    let dir = tempfile::tempdir().unwrap();
    let d = fixture::broken_root(&dir.path().join("root.img")).unwrap();
    let run = harness::rescue(
        &[&d.image],
        "repair",
        &["--verify", "--verify-timeout", "15"],
    )
    .unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let r = run.report.as_ref().unwrap();
    assert!(r.get("boot_config").is_none(), "{r:#}");
    let v = &r["verify"];
    assert_eq!(v["method"], "firmware", "{v:#}");
    assert_eq!(v["after"]["state"], "no_output", "{v:#}");
    assert_eq!(r["outcome"], "repaired", "silence is no proof either way");
    assert!(
        r["warnings"].to_string().contains("not verified"),
        "{:#}",
        r["warnings"]
    );
}

#[test]
fn a_guest_that_boots_only_through_its_boot_loader_is_verified_through_the_firmware() {
    // syslinux in the MBR and on a FAT partition no fstab line names, the root's /boot empty:
    // the rescue finds no kernel, so the verify boots go through SeaBIOS and the guest's own
    // boot loader, which writes to the serial console. Before the repair the boot fails (the
    // gone volume, given up on after 5 s); after it, it reaches its login prompt.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("syslinux.img");
    guest::syslinux_disk(&image, guest::gone_volume_fstab_failing).unwrap();
    let limit = budgets::secs(budgets::GUEST_BOOT);
    let run = harness::rescue(
        &[&image],
        "repair",
        &["--verify-before", "--verify-timeout", &limit],
    )
    .unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(r.get("boot_config").is_none(), "{r:#}");
    let v = &r["verify"];
    assert_eq!(v["method"], "firmware", "{v:#}");
    assert_eq!(v["before"]["state"], "emergency", "{v:#}");
    assert_eq!(v["after"]["state"], "booted", "{v:#}");
    assert_eq!(r["outcome"], "repaired", "{r:#}");
    assert_eq!(run.code, 0);
}
