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

/// `openssl passwd -6 -salt rootsalt throwaway`.
const ROOT_HASH: &str = "$6$rootsalt$MYeWNoNtb0ikiVSoQqsixbzFrEziL2/EkpQXU4UIm6EFXMHfDJhUMUoKHw/IRYOHA8dK5fCLN/C7xrxDexRoQ1";
/// `openssl passwd -6 -salt alicesalt alice-pass`, behind the lock `usermod -L` puts.
const ALICE_HASH: &str = "$6$alicesalt$jSCAAEC3oSXxT9w5nPJOiAPl2wCQZLv7/xoqSKifFL2z.znBDnTRyimqfO6Z2kCbch2/zrahzWWEznlbB3QGv0";
/// Where the guest's root keeps the private half of alice's new key (put there by the test,
/// as if root had brought it: the guest has no network to bring it over).
const GUEST_PRIVATE_KEY: &str = "root/.ssh/alice_key";

/// A new ed25519 key pair (`ssh-keygen`) in `dir`: the private key's path and the public line.
fn key_pair(dir: &Path) -> (std::path::PathBuf, String) {
    let private = dir.join("alice_key");
    fixture::run(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f"])
            .arg(&private),
    )
    .unwrap();
    let public = std::fs::read_to_string(dir.join("alice_key.pub")).unwrap();
    (private, public.trim().to_owned())
}

fn locked_out(root: &Path, private_key: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let key_at = root.join(GUEST_PRIVATE_KEY);
    std::fs::create_dir_all(key_at.parent().unwrap())?;
    std::fs::set_permissions(
        key_at.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )?;
    std::fs::copy(private_key, &key_at)?;
    std::fs::set_permissions(&key_at, std::fs::Permissions::from_mode(0o600))?;
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

/// The console's lines without terminal control sequences (bash's bracketed paste) or `\r`.
fn plain_lines(console: &str) -> Vec<String> {
    let mut out = String::new();
    let mut chars = console.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out.lines().map(|l| l.trim().to_owned()).collect()
}

#[test]
fn root_and_a_locked_out_user_log_in_again_after_the_rescue() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("guest.img");
    let (private_key, public) = key_pair(dir.path());
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
    let lines = plain_lines(&alice);
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
            "id -un; for try in 1 2 3 4 5 6; do ssh -n -i /{GUEST_PRIVATE_KEY} -o BatchMode=yes \
             -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null alice@127.0.0.1 \
             'echo over-ssh-as-$(id -un)' && break; sleep 5; done"
        ),
    )
    .unwrap();
    let lines = plain_lines(&root);
    assert!(lines.iter().any(|l| l == "root"), "{root:?}");
    assert!(lines.iter().any(|l| l == "over-ssh-as-alice"), "{root}");
}
