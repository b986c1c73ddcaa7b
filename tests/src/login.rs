//! Getting into a repaired guest as its owner would: an SSH key pair made for the test, its
//! private half put where the guest's root keeps it, the command that logs in with it over the
//! guest's own sshd on its loopback (the test guests have no network), and the console's lines
//! as typed and printed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::fixture;

/// Where the guest's root keeps the private half of a user's new key (put there by the test,
/// as if root had brought it: the guest has no network to bring it over).
pub const GUEST_PRIVATE_KEY: &str = "root/.ssh/user_key";

/// A new ed25519 key pair (`ssh-keygen`) in `dir`: the private key's path and the public line.
pub fn key_pair(dir: &Path) -> Result<(PathBuf, String)> {
    let private = dir.join("user_key");
    fixture::run(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "user@laptop", "-f"])
            .arg(&private),
    )?;
    let public = std::fs::read_to_string(dir.join("user_key.pub"))?;
    Ok((private, public.trim().to_owned()))
}

/// Puts `private_key` at [`GUEST_PRIVATE_KEY`] in the guest tree `root` (0600 in a 0700 dir).
pub fn put_private_key(root: &Path, private_key: &Path) -> Result<()> {
    let key_at = root.join(GUEST_PRIVATE_KEY);
    let dir = key_at.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::copy(private_key, &key_at)?;
    std::fs::set_permissions(&key_at, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// The shell command root types to run `remote` as `user` over SSH with the key, on the
/// guest's loopback, retried while sshd starts (`-n`: ssh would otherwise read what is typed
/// next on the console; `BatchMode`: a password is never asked).
pub fn ssh_as(user: &str, remote: &str) -> String {
    format!(
        "for try in 1 2 3 4 5 6; do ssh -n -i /{GUEST_PRIVATE_KEY} -o BatchMode=yes \
         -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {user}@127.0.0.1 \
         '{remote}' && break; sleep 5; done"
    )
}

/// The console's lines without terminal control sequences (bash's bracketed paste) or `\r`,
/// each trimmed.
pub fn plain_lines(console: &str) -> Vec<String> {
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
