//! The boot judge against real console logs (`tests/fixtures/consoles/`, sources in its
//! SOURCES.md): Debian's own from our test guest, Ubuntu, Fedora, Alpine, and the emergency
//! shells of Ubuntu's initramfs, dracut and systemd.

use std::path::Path;

use vmrescue_companion::verify::bootjudge::{self, BootState};

fn judge(name: &str) -> (BootState, Vec<&'static str>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/consoles")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8_lossy(&bytes);
    (bootjudge::judge(&text), bootjudge::milestones(&text))
}

#[test]
fn booted_guests_of_several_distributions() {
    for name in [
        "ubuntu-24.04-booted.log",
        // A device timeout on the way (zram) is no emergency when the login prompt follows.
        "fedora-41-booted-zram-timeout.log",
        // Sixteen start jobs and kernel messages on the login prompt's line.
        "fedora-rawhide-booted-start-jobs-interleaved.log",
        // OpenRC, with services that failed before the prompt.
        "alpine-3.20-booted.log",
    ] {
        let (state, milestones) = judge(name);
        assert_eq!(state, BootState::Booted, "{name}");
        assert!(
            milestones.contains(&"login") || milestones.contains(&"multi_user"),
            "{name}: {milestones:?}"
        );
    }
}

#[test]
fn emergency_shells_of_initramfs_dracut_and_systemd() {
    for name in [
        "ubuntu-22.04-initramfs-alert.log",
        "centos-7-dracut-emergency.log",
        "debian-mkosi-timed-out-device-emergency.log",
    ] {
        assert_eq!(judge(name).0, BootState::Emergency, "{name}");
    }
}

#[test]
fn our_debian_guest_booted_hung_on_a_gone_volume_and_without_init() {
    let (state, milestones) = judge("debian-12-booted.log");
    assert_eq!(state, BootState::Booted);
    // `quiet` on its command line: systemd shows no targets, the getty its prompt.
    assert_eq!(
        milestones,
        ["kernel", "initramfs", "root_mounted", "init", "login"]
    );
    match judge("debian-12-fstab-volume-gone-hang.log").0 {
        BootState::Hang {
            last_job: Some(job),
            ..
        } => assert!(job.starts_with("dev-disk-by\\x2duuid-5e1f0c2a"), "{job}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(judge("debian-12-no-init.log").0, BootState::Panic);
}
