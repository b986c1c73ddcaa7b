//! Repairs a real guest survives: a Debian 12 guest (debootstrap, systemd, its own kernel and
//! initramfs) broken the way operators find them, rescued in repair mode, then booted with its
//! own kernel: it must reach its login prompt. Check mode on the same breakage writes nothing.

use std::path::Path;

use vmrescue_companion::bootjudge::BootState;
use vmrescue_tests::fixture;
use vmrescue_tests::guest::{self, ROOT_UUID};
use vmrescue_tests::harness;

fn assert_boots(image: &Path) {
    let b = guest::boot(image).unwrap();
    assert_eq!(
        b.state,
        BootState::Booted,
        "the guest did not reach its login prompt; console tail:\n{}",
        vmrescue_companion::bootjudge::tail(&b.console, 40).join("\n")
    );
}

/// Breaks a fresh guest disk with `change`, checks that check mode writes nothing, repairs it
/// and boots it.
fn repaired_guest_boots(
    name: &str,
    change: impl FnOnce(&Path) -> anyhow::Result<()>,
    debugfs: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
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
}

#[test]
fn the_guest_boots_to_its_login_prompt_as_built() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("guest.img");
    guest::disk(&image, |_| Ok(())).unwrap();
    assert_boots(&image);
}

#[test]
fn a_gone_fstab_volume_and_the_error_state() {
    repaired_guest_boots(
        "fstab-gone",
        |root| {
            std::fs::write(
                root.join("etc/fstab"),
                format!(
                    "UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n\
                     UUID=5e1f0c2a-7b3d-4c9e-8f10-2a3b4c5d6e7f /srv/data ext4 defaults 0 2\n"
                ),
            )?;
            Ok(())
        },
        &["ssv state 2", "ssv error_count 3"],
    );
}

#[test]
fn proc_sys_run_dev_removed_and_the_root_named_by_kernel_name() {
    repaired_guest_boots(
        "api-dirs",
        |root| {
            for d in ["proc", "sys", "run", "dev"] {
                std::fs::remove_dir_all(root.join(d))?;
            }
            std::fs::write(root.join("etc/fstab"), "/dev/vda / ext4 defaults 0 1\n")?;
            Ok(())
        },
        &[],
    );
}
