//! Repairs a real guest survives: a Debian 12 guest (debootstrap, systemd, its own kernel and
//! initramfs) broken the way operators find them, rescued in repair mode, then booted with its
//! own kernel: it must reach its login prompt. Check mode on the same breakage writes nothing.
//! (That the guest boots as built is what every other real-guest test starts from.)

use std::path::Path;

use vmrescue_companion::verify::bootjudge::BootState;
use vmrescue_tests::fixture;
use vmrescue_tests::guest::{self, ROOT_UUID};
use vmrescue_tests::harness;

fn assert_boots(image: &Path) {
    let b = guest::boot(image).unwrap();
    assert_eq!(
        b.state,
        BootState::Booted,
        "the guest did not reach its login prompt; console tail:\n{}",
        vmrescue_companion::verify::bootjudge::tail(&b.console, 40).join("\n")
    );
}

/// Breaks a fresh guest disk with `change`, checks that check mode writes nothing, repairs it
/// and boots it. Returns the repair's run and the repaired disk (in `dir`).
fn repaired_guest_boots(
    dir: &tempfile::TempDir,
    name: &str,
    change: impl FnOnce(&Path) -> anyhow::Result<()>,
    debugfs: &[&str],
) -> (harness::Run, std::path::PathBuf) {
    let image = dir.path().join(format!("{name}.img"));
    guest::disk(&image, change).unwrap();
    if !debugfs.is_empty() {
        fixture::debugfs_write(&image, debugfs).unwrap();
    }
    let before = fixture::sha256_file(&image).unwrap();
    let check = harness::rescue(&[&image], "check", &[]).unwrap();
    assert!(check.report.is_some(), "{}", check.stderr);
    assert_eq!(
        fixture::sha256_file(&image).unwrap(),
        before,
        "check mode wrote to the guest"
    );
    let run = harness::rescue(&[&image], "repair", &[]).unwrap();
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(run.field("/outcome"), "repaired");
    assert_eq!(fixture::host_e2fsck(&image).unwrap(), 0);
    assert_boots(&image);
    (run, image)
}

#[test]
fn the_root_in_the_error_state() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = repaired_guest_boots(
        &dir,
        "error-state",
        |_| Ok(()),
        &["ssv state 2", "ssv error_count 3"],
    );
    let report = run.report.as_ref().unwrap();
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["kind"] == "fsck"),
        "the error state was cleared by fsck: {changes:#?}"
    );
    // How the guest boots itself (no boot loader in this guest: its newest kernel).
    let boot = &report["boot_config"];
    assert_eq!(boot["method"], "newest_kernel", "{boot}");
    let kernel = boot["kernel"].as_str().unwrap();
    assert!(kernel.starts_with("/boot/vmlinuz-6."), "{boot}");
    let version = kernel.trim_start_matches("/boot/vmlinuz-");
    assert_eq!(
        boot["initrd"],
        format!("/boot/initrd.img-{version}").as_str(),
        "{boot}"
    );
    assert_eq!(
        boot["cmdline"],
        format!("root=UUID={ROOT_UUID} ro").as_str(),
        "{boot}"
    );
}

/// The ID a guest's persistent journal is kept under (as if it had booted and logged before).
const OWN_ID: &str = "4c0ffee04c0ffee04c0ffee04c0ffee0";

#[test]
fn etc_lost_entirely_boots_unattended() {
    let dir = tempfile::tempdir().unwrap();
    let (run, image) = repaired_guest_boots(
        &dir,
        "etc-lost",
        |root| {
            std::fs::remove_dir_all(root.join("etc"))?;
            std::fs::create_dir_all(root.join("var/log/journal").join(OWN_ID))?;
            Ok(())
        },
        &[],
    );
    let report = run.report.as_ref().unwrap();
    let changes = report["changes"].as_array().unwrap();
    let change = |path: &str| {
        changes
            .iter()
            .find(|c| c["path"] == path)
            .unwrap_or_else(|| panic!("{path} not among the changes: {changes:#?}"))
    };
    // The machine ID the guest's journal is named by, so systemd sees no first boot.
    let id = change("/etc/machine-id");
    assert_eq!(id["review"], true);
    assert!(
        id["detail"].as_str().unwrap().contains("/var/log/journal"),
        "{id}"
    );
    assert_eq!(
        fixture::read_in_image(&image, "/etc/machine-id").unwrap(),
        Some(format!("{OWN_ID}\n").into_bytes())
    );
    // Debian's system accounts, the distribution's own copies, the packages' enabled units.
    let group = fixture::read_in_image(&image, "/etc/group")
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&group).contains("\nshadow:x:42:"),
        "group from base-passwd"
    );
    assert!(change("/etc/passwd")["detail"]
        .as_str()
        .unwrap()
        .contains("base-passwd"));
    assert!(change("/etc/nsswitch.conf")["detail"]
        .as_str()
        .unwrap()
        .contains("/usr/share/libc-bin/nsswitch.conf"));
    assert_eq!(change("/etc/os-release")["kind"], "symlink");
    let getty = change("/etc/systemd/system/getty.target.wants/getty@tty1.service");
    assert_eq!(getty["kind"], "symlink");
    assert!(getty["detail"]
        .as_str()
        .unwrap()
        .contains("systemd.postinst"));
    change("/etc/systemd/system/timers.target.wants/fstrim.timer");
    assert!(changes
        .iter()
        .filter(|c| c["kind"] == "write_file" || c["kind"] == "symlink")
        .filter(|c| c["path"].as_str().unwrap().starts_with("/etc/"))
        .all(|c| c["review"] == true));
    // What only the packages hold is named, with the command that restores it.
    let warnings = serde_json::to_string(&report["warnings"]).unwrap();
    assert!(warnings.contains("--force-confmiss"), "{warnings}");
}

#[test]
fn proc_sys_run_dev_removed_a_gone_volume_and_the_root_named_by_kernel_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_, image) = repaired_guest_boots(
        &dir,
        "api-dirs",
        |root| {
            for d in ["proc", "sys", "run", "dev"] {
                std::fs::remove_dir_all(root.join(d))?;
            }
            guest::gone_volume_fstab(root)?;
            let fstab = std::fs::read_to_string(root.join("etc/fstab"))?;
            let by_name = fstab.replace(&format!("UUID={ROOT_UUID} /"), "/dev/vda /");
            std::fs::write(root.join("etc/fstab"), by_name)?;
            Ok(())
        },
        &[],
    );
    let fstab = String::from_utf8(
        fixture::read_in_image(&image, "/etc/fstab")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let gone = fstab
        .lines()
        .find(|l| l.contains(guest::GONE_UUID))
        .unwrap_or_else(|| panic!("the gone volume's line is kept: {fstab}"));
    assert!(gone.contains("nofail"), "{fstab}");
}
