//! Getting back into a real guest: the Debian guest, intact, whose root password nobody knows
//! and whose user alice is locked out (`usermod -L -e 1`). Check mode plans and writes nothing;
//! repair sets root's password from a hash, unlocks alice and gives her a key; then root and
//! alice each log in on the guest's serial console, typed at as an operator would, and root
//! logs in as alice over SSH with the key's private half (the guest's own sshd, on its
//! loopback: the test guest has no network).

use std::os::unix::fs::chown;
use std::path::Path;

use vmrescue_tests::fixture;
use vmrescue_tests::guest;
use vmrescue_tests::harness;
use vmrescue_tests::login;

/// `openssl passwd -6 -salt rootsalt throwaway`.
const ROOT_HASH: &str = "$6$rootsalt$MYeWNoNtb0ikiVSoQqsixbzFrEziL2/EkpQXU4UIm6EFXMHfDJhUMUoKHw/IRYOHA8dK5fCLN/C7xrxDexRoQ1";
/// `openssl passwd -6 -salt alicesalt alice-pass`, behind the lock `usermod -L` puts.
const ALICE_HASH: &str = "$6$alicesalt$jSCAAEC3oSXxT9w5nPJOiAPl2wCQZLv7/xoqSKifFL2z.znBDnTRyimqfO6Z2kCbch2/zrahzWWEznlbB3QGv0";

/// The guest as its owner left it: root's password unknown, alice locked out and expired, the
/// private half of her coming key with root.
fn locked_out(root: &Path, private_key: &Path) -> anyhow::Result<()> {
    login::put_private_key(root, private_key)?;
    let append = |file: &str, text: &str| guest::append(root, file, text);
    append(
        "etc/passwd",
        "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n",
    )?;
    append("etc/group", "alice:x:1000:\n")?;
    append(
        "etc/shadow",
        &format!("alice:!{ALICE_HASH}:20000:0:99999:7::1:\n"),
    )?;
    std::fs::create_dir_all(root.join("home/alice"))?;
    chown(root.join("home/alice"), Some(1000), Some(1000))?;
    Ok(())
}

#[test]
fn root_and_a_locked_out_user_log_in_again_after_the_rescue() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("guest.img");
    let (private_key, public) = login::key_pair(dir.path()).unwrap();
    // The guest with openssh-server.
    guest::disk_of(guest::debian_layouts(), &image, |root| {
        locked_out(root, &private_key)
    })
    .unwrap();
    let key = dir.path().join("alice.pub");
    std::fs::write(&key, format!("{public}\n")).unwrap();
    let key = key.display().to_string();
    let flags = [
        "--root-password-hash",
        ROOT_HASH,
        "--ssh-key",
        &key,
        "--user",
        "alice",
        "--unlock-user",
        "alice",
    ];

    let before = fixture::sha256_file(&image).unwrap();
    let check = harness::rescue(&[&image], "check", &flags).unwrap();
    let r = check.json();
    assert_eq!(
        fixture::sha256_file(&image).unwrap(),
        before,
        "check mode wrote"
    );
    assert!(
        r["plan"]
            .to_string()
            .contains("root password set; alice unlocked"),
        "{r:#}"
    );

    let run = harness::rescue(&[&image], "repair", &flags).unwrap();
    let r = run.expect(0, "repaired");
    let said = format!("{}{}{}", run.stdout, run.stderr, r);
    assert!(
        !said.contains("rootsalt") && !said.contains("AAAAC3Nza"),
        "{said}"
    );
    assert_eq!(fixture::host_e2fsck(&image).unwrap(), 0);

    let alice = guest::log_in(
        &[&image],
        "alice",
        "alice-pass",
        "id -un; stat -c '%U %a' ~/.ssh ~/.ssh/authorized_keys; cat ~/.ssh/authorized_keys",
    )
    .unwrap();
    let lines = login::plain_lines(&alice);
    for line in ["alice", "alice 700", "alice 600", public.as_str()] {
        assert!(lines.iter().any(|l| l == line), "{line:?} not in:\n{alice}");
    }

    // root logs in with the new password, and the key works: sshd lets alice in with it, and
    // with nothing else (no password asked; `-n`: ssh would otherwise read what is typed next
    // on the console). One boot for both.
    let root = guest::log_in(
        &[&image],
        "root",
        "throwaway",
        &format!(
            "id -un; {}",
            login::ssh_as("alice", "echo over-ssh-as-$(id -un)")
        ),
    )
    .unwrap();
    let lines = login::plain_lines(&root);
    assert!(lines.iter().any(|l| l == "root"), "{root:?}");
    assert!(lines.iter().any(|l| l == "over-ssh-as-alice"), "{root}");
}
