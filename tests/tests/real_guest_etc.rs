//! A real guest whose /etc was lost, brought back with what it had rather than defaults, and
//! its owner let in: the Debian guest (with sshd) with a user alice (uid 1000) whose home is
//! on a second disk, and a host name, runs once (its journal reaches the disk); then a power
//! cut leaves /etc and /proc gone and both filesystems in the error state. After the repair
//! alice exists with her uid, /home is mounted from the second disk at boot and the host name
//! is the original one: all from the guest's own evidence (the home directory's owner, the
//! journal's host name and its record of mounting /home), none of it given. With
//! `--root-password-hash` root logs in on the serial console, and with `--ssh-key` for alice
//! (her home on the second disk) root gets in as alice over SSH: the rebuilt PAM files, sshd's
//! configuration, user and new host keys.

use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use vmrescue_companion::verify::bootjudge;
use vmrescue_tests::fixture;
use vmrescue_tests::guest::{self, Written};
use vmrescue_tests::harness;
use vmrescue_tests::login;

const HOSTNAME: &str = "web-7";
/// `openssl passwd -6 -salt rootsalt throwaway`.
const ROOT_HASH: &str = "$6$rootsalt$MYeWNoNtb0ikiVSoQqsixbzFrEziL2/EkpQXU4UIm6EFXMHfDJhUMUoKHw/IRYOHA8dK5fCLN/C7xrxDexRoQ1";
/// What the guest's own unit prints on its console once its filesystems are mounted.
const SAYS: &str = "vmrescue-test home:";

/// What the guest had besides the Debian base: alice in its account files, /home in its
/// fstab, its host name; a unit under /usr (it outlives /etc) that prints what /home is
/// mounted from; with `power_off`, a unit in /etc that powers the guest off once it is up;
/// root's copy of the private half of alice's coming key.
fn as_it_ran(root: &Path, power_off: bool, private_key: &Path) -> anyhow::Result<()> {
    login::put_private_key(root, private_key)?;
    let append = |file: &str, text: &str| guest::append(root, file, text);
    append(
        "etc/passwd",
        "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n",
    )?;
    append("etc/group", "alice:x:1000:\n")?;
    append("etc/shadow", "alice:!:20000:0:99999:7:::\n")?;
    append("etc/fstab", "LABEL=home /home ext4 defaults 0 2\n")?;
    std::fs::write(root.join("etc/hostname"), format!("{HOSTNAME}\n"))?;
    std::fs::create_dir_all(root.join("var/log/journal"))?;
    let script = root.join("usr/lib/vmrescue-test/say-home");
    std::fs::create_dir_all(script.parent().unwrap())?;
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"{SAYS} $(grep -m1 ' /home ' /proc/mounts || echo not mounted)\" >/dev/console\n"),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let units = root.join("usr/lib/systemd/system");
    std::fs::write(
        units.join("vmrescue-test-home.service"),
        "[Unit]\nAfter=local-fs.target home.mount\nBefore=serial-getty@ttyS0.service getty.target\n[Service]\nType=oneshot\nExecStart=/usr/lib/vmrescue-test/say-home\n",
    )?;
    std::fs::create_dir_all(units.join("multi-user.target.wants"))?;
    symlink(
        "../vmrescue-test-home.service",
        units.join("multi-user.target.wants/vmrescue-test-home.service"),
    )?;
    if power_off {
        let etc = root.join("etc/systemd/system");
        std::fs::write(
            etc.join("vmrescue-test-off.service"),
            "[Unit]\nAfter=vmrescue-test-home.service\n[Service]\nType=oneshot\nExecStart=/bin/systemctl --no-block poweroff\n",
        )?;
        std::fs::create_dir_all(etc.join("multi-user.target.wants"))?;
        symlink(
            "../vmrescue-test-off.service",
            etc.join("multi-user.target.wants/vmrescue-test-off.service"),
        )?;
    }
    Ok(())
}

#[test]
fn a_lost_etc_comes_back_with_alice_her_home_and_the_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // alice's home, owned by her, on its own disk.
    let home_tree = d.join("home-tree");
    std::fs::create_dir_all(home_tree.join("alice")).unwrap();
    std::fs::write(home_tree.join("alice/notes.txt"), b"remember the milk\n").unwrap();
    for p in ["alice", "alice/notes.txt"] {
        chown(home_tree.join(p), Some(1000), Some(1000)).unwrap();
    }
    let home = d.join("home.img");
    fixture::mkfs_ext4(&home, 64, "home", &home_tree).unwrap();

    // The guest runs once and powers itself off: its journal is on its disk.
    let (private_key, public) = login::key_pair(d).unwrap();
    let key = d.join("alice.pub");
    std::fs::write(&key, format!("{public}\n")).unwrap();
    let ran = d.join("ran.img");
    // The guest with sshd.
    let with_sshd = guest::debian_layouts();
    guest::disk_of(with_sshd, &ran, |root| as_it_ran(root, true, &private_key)).unwrap();
    let b = guest::boot_disks(&[&ran, &home], Written::UntilPowerOff).unwrap();
    assert!(
        b.console.contains(&format!("{SAYS} /dev/vdb /home ext4")),
        "the guest as built mounts /home; console tail:\n{}",
        bootjudge::tail(&b.console, 40).join("\n")
    );
    let journal = d.join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /var/log/journal {}", journal.display()))
        .arg(&ran)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // What the power cut left: that guest with its journal, /etc and /proc gone, the root and
    // /home in the error state.
    let image = d.join("guest.img");
    guest::disk_of(with_sshd, &image, |root| {
        as_it_ran(root, false, &private_key)?;
        std::fs::remove_dir_all(root.join("etc"))?;
        std::fs::remove_dir(root.join("proc"))?;
        std::fs::remove_dir_all(root.join("var/log/journal"))?;
        let copied = Command::new("cp")
            .arg("-a")
            .arg(journal.join("journal"))
            .arg(root.join("var/log/journal"))
            .output()?;
        anyhow::ensure!(copied.status.success(), "{copied:?}");
        Ok(())
    })
    .unwrap();
    for disk in [&image, &home] {
        fixture::debugfs_write(disk, &["ssv state 2"]).unwrap();
    }

    let key = key.display().to_string();
    let flags = [
        "--root-password-hash",
        ROOT_HASH,
        "--ssh-key",
        &key,
        "--user",
        "alice",
    ];
    let run = harness::rescue(&[&image, &home], "repair", &flags).unwrap();
    let r = run.expect(0, "repaired");
    let read = |path: &str| {
        String::from_utf8(fixture::read_in_image(&image, path).unwrap().unwrap()).unwrap()
    };
    let passwd = read("/etc/passwd");
    assert!(
        passwd.contains("\nalice:x:1000:1000::/home/alice:/bin/bash\n"),
        "{passwd}"
    );
    assert_eq!(read("/etc/hostname"), format!("{HOSTNAME}\n"));
    let fstab = read("/etc/fstab");
    let home_uuid = fixture::ext_uuid(&home).unwrap();
    assert!(
        fstab.contains(&format!("UUID={home_uuid}\t/home\text4\tdefaults,nofail")),
        "{fstab}"
    );
    assert!(!fstab.contains("CHANGE-ME"), "{fstab}");
    let changes = r["changes"].to_string();
    assert!(
        changes.contains("alice (uid 1000) from the home directory"),
        "{changes}"
    );
    assert!(
        changes.contains("the journal /var/log/journal/"),
        "{changes}"
    );
    // Where /home goes comes from the guest's own boot, read from its journal file: systemd
    // mounted it just after checking the filesystem its fstab named by label.
    assert!(
        fstab.contains("home.mount was mounted after the check of /dev/disk/by-label/home"),
        "{fstab}"
    );

    assert!(
        changes.contains("1 key(s) added for alice (on /dev/vdb, the guest's /home/alice)"),
        "{changes}"
    );

    // It boots to its login prompt; root logs in on the serial console with the new password,
    // finds the host name and alice's home mounted from the second disk, and gets in as alice
    // over SSH with her new key (PAM, sshd's configuration, user and host keys all rebuilt).
    let console = guest::log_in(
        &[&image, &home],
        "root",
        "throwaway",
        &format!(
            "id -un; hostname; findmnt -n -o SOURCE,TARGET /home; {}",
            login::ssh_as(
                "alice",
                "echo over-ssh-as-$(id -un) owning $(stat -c %U ~/notes.txt)"
            )
        ),
    )
    .unwrap();
    let lines = login::plain_lines(&console);
    for line in [
        "root",
        HOSTNAME,
        "/dev/vdb /home",
        "over-ssh-as-alice owning alice",
    ] {
        assert!(
            lines.iter().any(|l| l == line),
            "{line:?} not in:\n{console}"
        );
    }
    assert_eq!(
        fixture::read_in_image(&home, "/alice/notes.txt")
            .unwrap()
            .unwrap(),
        b"remember the milk\n"
    );
}
