//! Access on request (`--root-password-hash`, `--ssh-key FILE --user NAME`, `--unlock-user`):
//! planned in check mode (nothing written), made in repair mode as the guest's own tools would
//! leave them (shadow fields, `~/.ssh` owned by the user, modes 0700 and 0600), each change
//! backed up; the hash and the key travel on the settings drive only, so they are on no output,
//! console or leftover.

use std::path::Path;

use vmrescue_tests::fixture;
use vmrescue_tests::harness;

/// `openssl passwd -6 -salt vmrescuetest throwaway`.
const HASH: &str =
    "$6$vmrescuetest$DGZRv0Bo8DndeulaEwguEp9fwIsmoS8GggWKr3ciTb4NsQ.OdiOR5tUV.BMHz.W1yha/GBwSUGNXESzUSPau41";
/// A real ed25519 public key (`ssh-keygen -t ed25519`, made for this test).
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHyLptXQsulXKbxnfyXQZHg0126hHD8G3/3cynPHq0r8 alice@laptop";
const BLOB: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIHyLptXQsulXKbxnfyXQZHg0126hHD8G3";

/// Asserts neither the hash nor the key is anywhere a run leaves text, and removes its kept
/// run directory.
fn nothing_secret(run: &harness::Run) {
    let kept = harness::run_dir(&run.stderr);
    let console =
        String::from_utf8_lossy(&std::fs::read(kept.join("console.log")).unwrap()).into_owned();
    let leftovers: Vec<String> = std::fs::read_dir(&kept)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    std::fs::remove_dir_all(&kept).unwrap();
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("console", &console),
    ] {
        assert!(
            !text.contains(HASH) && !text.contains(BLOB),
            "a secret on {what}"
        );
        assert!(!text.contains("vmrescuetest"), "the hash's salt on {what}");
    }
    assert!(
        !leftovers.iter().any(|f| f.contains("settings")),
        "{leftovers:?}"
    );
}

/// `stat`'s owner line of a path in an ext image: (uid, gid).
fn owner_in_image(image: &Path, path: &str) -> (u32, u32) {
    let out = std::process::Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u32 {
        text.split(name)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (field("User:"), field("Group:"))
}

fn changed<'a>(r: &'a serde_json::Value, list: &str, path: &str) -> &'a serde_json::Value {
    r[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in {list}: {r:#}"))
}

#[test]
fn root_password_keys_and_unlock_on_request_and_never_seen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tree = d.join("tree");
    fixture::os_tree(&tree).unwrap();
    // The user's password locked and the account expired, as `usermod -L -e 1` leaves it.
    std::fs::write(
        tree.join("etc/shadow"),
        "root:*:20000:0:99999:7:::\nuser:!$y$j9T$salt$hash:20000:0:99999:7::1:\n",
    )
    .unwrap();
    let img = d.join("root.img");
    fixture::mkfs_ext4(&img, 64, "guestroot", &tree).unwrap();
    let key_file = d.join("alice.pub");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let key_arg = key_file.display().to_string();
    let flags = [
        "--root-password-hash",
        HASH,
        "--ssh-key",
        &key_arg,
        "--user",
        "user",
        "--unlock-user",
        "user",
        "--unlock-user",
        "ghost",
        "--keep-run-dir",
    ];

    // Check mode: the plan says what would be done, nothing is written.
    let before = fixture::sha256_file(&img).unwrap();
    let run = harness::rescue(&[&img], "check", &flags).unwrap();
    let r = run.json();
    nothing_secret(&run);
    assert_eq!(
        fixture::sha256_file(&img).unwrap(),
        before,
        "check mode wrote"
    );
    let shadow = changed(r, "plan", "/etc/shadow");
    assert_eq!(
        shadow["detail"], "root password set; user unlocked; user's account expiry date cleared",
        "{shadow:#}"
    );
    assert_eq!(changed(r, "plan", "/home/user/.ssh")["kind"], "mkdir");
    assert_eq!(
        changed(r, "plan", "/home/user/.ssh/authorized_keys")["detail"],
        "1 key(s) added for user"
    );
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("no user ghost in /etc/shadow"),
        "{warnings}"
    );

    // Repair: made, backed up, owned and moded as the guest's own tools would.
    let run = harness::rescue(&[&img], "repair", &flags).unwrap();
    let r = run.expect(0, "repaired");
    nothing_secret(&run);
    let shadow = String::from_utf8(
        fixture::read_in_image(&img, "/etc/shadow")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let lines: Vec<&str> = shadow.lines().collect();
    assert!(lines[0].starts_with(&format!("root:{HASH}:")), "{shadow}");
    assert_eq!(lines[1], "user:$y$j9T$salt$hash:20000:0:99999:7:::");
    let backup = changed(r, "changes", "/etc/shadow")["backup"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        fixture::read_in_image(&img, &backup).unwrap().unwrap(),
        b"root:*:20000:0:99999:7:::\nuser:!$y$j9T$salt$hash:20000:0:99999:7::1:\n"
    );
    let keys = "/home/user/.ssh/authorized_keys";
    assert_eq!(
        fixture::read_in_image(&img, keys).unwrap().unwrap(),
        format!("{KEY}\n").as_bytes()
    );
    assert_eq!(
        fixture::mode_in_image(&img, "/home/user/.ssh").unwrap(),
        Some(0o700)
    );
    assert_eq!(fixture::mode_in_image(&img, keys).unwrap(), Some(0o600));
    assert_eq!(owner_in_image(&img, "/home/user/.ssh"), (1000, 1000));
    assert_eq!(owner_in_image(&img, keys), (1000, 1000));
    assert_eq!(fixture::host_e2fsck(&img).unwrap(), 0);

    // Again: the key is there already, nothing more is added.
    let run = harness::rescue(
        &[&img],
        "repair",
        &["--ssh-key", &key_arg, "--user", "user"],
    )
    .unwrap();
    let r = run.json();
    assert!(
        !r["changes"].to_string().contains("authorized_keys"),
        "{r:#}"
    );
    assert!(
        r["warnings"].to_string().contains("already authorized"),
        "{r:#}"
    );
}

#[test]
fn bad_access_input_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("never-opened.img");
    std::fs::write(&img, b"").unwrap();
    let private = dir.path().join("id_ed25519");
    std::fs::write(
        &private,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWJvZHk=\n",
    )
    .unwrap();
    let private = private.display().to_string();
    for (flags, said) in [
        (
            vec!["--root-password-hash", "clear-text-password"],
            "--root-password-hash",
        ),
        (vec!["--ssh-key", &private], "private key"),
        (
            vec!["--ssh-key", "/nonexistent/id.pub"],
            "/nonexistent/id.pub",
        ),
        (vec!["--unlock-user", "../etc"], "--unlock-user"),
    ] {
        let run = harness::rescue(&[&img], "repair", &flags).unwrap();
        assert_eq!(run.code, 2, "{flags:?}: {}", run.stderr);
        assert!(run.stderr.contains(said), "{}", run.stderr);
        assert!(
            !run.stderr.contains("clear-text-password") && !run.stderr.contains("c2VjcmV0"),
            "{}",
            run.stderr
        );
    }
}
