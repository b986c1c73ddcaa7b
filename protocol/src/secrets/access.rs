//! Access on request: a crypt(3) hash for root's password (`--root-password-hash`), public keys
//! for a user's `authorized_keys` (`--ssh-key FILE --user NAME`) and users to unlock
//! (`--unlock-user`). Checked where they are given and again where they are read; an error
//! names the line or the user, never a hash or a key.

use std::fmt;

/// Longest hash accepted (yescrypt and sha512-crypt are about 100 characters).
pub const MAX_HASH: usize = 512;
/// Most keys one rescue adds.
pub const MAX_KEYS: usize = 64;
/// Longest key line accepted (an 16384-bit RSA key is about 2.8 KiB of base64).
pub const MAX_KEY_LINE: usize = 8 << 10;

/// The key types OpenSSH accepts in `authorized_keys`.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A crypt(3) hash in the modular format (`$id$[params$]salt$hash`: `$y$` yescrypt, `$6$`
/// sha512-crypt, `$2b$` bcrypt, ...): what `/etc/shadow` holds, never a clear-text password.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(text: &str) -> Result<PasswordHash, String> {
        let ok_chars = text.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'$' | b'=' | b',' | b'-' | b'+')
        });
        let fields: Vec<&str> = text.split('$').collect();
        let id = fields.get(1).copied().unwrap_or("");
        if text.len() > MAX_HASH
            || !ok_chars
            || !text.starts_with('$')
            || fields.len() < 4
            || id.is_empty()
            || !id.bytes().all(|b| b.is_ascii_alphanumeric())
            || fields[2..].iter().any(|f| f.is_empty())
        {
            return Err(
                "not a crypt(3) hash such as `openssl passwd -6` or `mkpasswd -m yescrypt` print ($id$salt$hash)"
                    .into(),
            );
        }
        Ok(PasswordHash(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheme's id (`6`, `y`, `2b`): all that is ever shown of it.
    pub fn scheme(&self) -> &str {
        self.0.split('$').nth(1).unwrap_or("")
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash(${}$…)", self.scheme())
    }
}

/// A login name as `useradd` accepts it (Debian's relaxed rule, without the characters that
/// would break `/etc/passwd` or a path): 1 to 32 of letters, digits, `.`, `_`, `-`, not starting
/// with `-` or `.`, optionally ending in `$`.
pub fn valid_user(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    !body.is_empty()
        && name.len() <= 32
        && !body.starts_with(['-', '.'])
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One public key for `user`'s `authorized_keys`: `TYPE BASE64 [COMMENT]`, its blob naming
/// the same type.
#[derive(Clone, PartialEq, Eq)]
pub struct SshKey {
    pub user: String,
    line: String,
}

impl SshKey {
    pub fn new(user: &str, line: &str) -> Result<SshKey, String> {
        if !valid_user(user) {
            return Err(format!("{user:?} is not a user name"));
        }
        let line = line.trim();
        if line.len() > MAX_KEY_LINE || line.chars().any(char::is_control) {
            return Err("not a public key line (too long, or control characters)".into());
        }
        let mut words = line.splitn(3, ' ');
        let (kind, blob) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if !KEY_TYPES.contains(&kind) {
            return Err(format!(
                "not a public key of a known type ({})",
                KEY_TYPES.join(", ")
            ));
        }
        let named = base64(blob).and_then(|b| {
            let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
            Some(b.get(4..4 + len)? == kind.as_bytes())
        });
        if named != Some(true) {
            return Err(format!("its {kind} key data is not valid"));
        }
        Ok(SshKey {
            user: user.to_owned(),
            line: line.to_owned(),
        })
    }

    /// The line as it goes into `authorized_keys`.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// `TYPE BASE64`, without the comment: what says two lines hold the same key.
    pub fn key(&self) -> &str {
        let mut it = self.line.splitn(3, ' ');
        let kind = it.next().unwrap_or("");
        let blob = it.next().unwrap_or("");
        &self.line[..kind.len() + 1 + blob.len()]
    }
}

impl fmt::Debug for SshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.line.split(' ').next().unwrap_or("");
        write!(f, "SshKey({}, {kind})", self.user)
    }
}

/// The keys in a public key file's `text` (OpenSSH's `.pub` or `authorized_keys` format
/// without options; blank lines and `#` comments skipped) for `user`.
pub fn ssh_keys_from(user: &str, text: &str) -> Result<Vec<SshKey>, String> {
    if text.contains("PRIVATE KEY") {
        return Err("it holds a private key: give the public one (the .pub file)".into());
    }
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(SshKey::new(user, line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    if keys.is_empty() {
        return Err("it holds no public key".into());
    }
    Ok(keys)
}

/// What the operator asked for to get back in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub root_password: Option<PasswordHash>,
    pub ssh_keys: Vec<SshKey>,
    /// Users whose `!` lock and expiry date are cleared.
    pub unlock: Vec<String>,
}

/// No access asked for.
pub static NO_ACCESS: Access = Access {
    root_password: None,
    ssh_keys: Vec::new(),
    unlock: Vec::new(),
};

impl Access {
    pub fn is_empty(&self) -> bool {
        self.root_password.is_none() && self.ssh_keys.is_empty() && self.unlock.is_empty()
    }
}

/// Standard base64 (padding optional); `None` if `s` is not.
fn base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ed25519 public key (`ssh-keygen -t ed25519`, made for these tests).
    pub const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHyLptXQsulXKbxnfyXQZHg0126hHD8G3/3cynPHq0r8 alice@laptop";

    #[test]
    fn hashes_are_crypt_formats_and_never_shown() {
        for good in [
            "$6$rounds=5000$saltsalt$Zm9vYmFyLi4uLi4uLi4uLi4uLi4uLi4uLi4uLi4uLi4uLi4uLi4",
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
            "$2b$12$abcdefghijklmnopqrstuuHash.GoesHere/0123456789abcdefghi",
            "$1$salt$hash",
        ] {
            let h = PasswordHash::new(good).unwrap();
            assert!(!format!("{h:?}").contains("salt"), "{h:?}");
        }
        for bad in [
            "hunter2",
            "$6$",
            "$6$salt$",
            "$$salt$hash",
            "$6$sa:lt$hash",
            "$6$salt$hash\nroot::0:0",
            "!$6$salt$hash",
            "*",
            "",
        ] {
            let e = PasswordHash::new(bad).unwrap_err();
            assert!(bad.len() < 3 || !e.contains(bad), "{e}");
        }
        let h = PasswordHash::new("$y$j9T$salt$hash").unwrap();
        assert_eq!(format!("{h:?}"), "PasswordHash($y$…)");
    }

    #[test]
    fn keys_are_checked_to_their_blob() {
        let k = SshKey::new("alice", ED25519).unwrap();
        assert_eq!(k.line(), ED25519);
        assert_eq!(k.key(), &ED25519[..ED25519.rfind(' ').unwrap()]);
        assert_eq!(format!("{k:?}"), "SshKey(alice, ssh-ed25519)");
        // The blob names another type than the line does.
        let wrong = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(SshKey::new("alice", &wrong).is_err());
        assert!(SshKey::new("alice", "ssh-ed25519 not*base64").is_err());
        assert!(SshKey::new("alice", "command=\"x\" ssh-ed25519 AAAA").is_err());
        assert!(SshKey::new("../etc", ED25519).is_err());
        assert!(SshKey::new("al:ice", ED25519).is_err());
        assert!(SshKey::new("alice", &format!("{ED25519}\u{1b}[2J")).is_err());
    }

    #[test]
    fn key_files_keep_their_keys_and_refuse_private_ones() {
        let text = format!(
            "# mine\n\n{ED25519}\n{}\n",
            ED25519.replace("alice@laptop", "other")
        );
        let keys = ssh_keys_from("root", &text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key(), keys[1].key());
        let e = ssh_keys_from("root", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n").unwrap_err();
        assert!(e.contains("private key") && !e.contains("b3Blbn"), "{e}");
        let e = ssh_keys_from("root", &format!("{ED25519}\nssh-rsa AAAA secret-comment\n"))
            .unwrap_err();
        assert!(
            e.starts_with("line 2:") && !e.contains("secret-comment"),
            "{e}"
        );
        assert!(ssh_keys_from("root", "# nothing\n").is_err());
    }

    #[test]
    fn user_names() {
        for ok in ["root", "alice", "a.b_c-d", "host$", "_apt", "Bob"] {
            assert!(valid_user(ok), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a:b", "a b", "$", &"x".repeat(33)] {
            assert!(!valid_user(bad), "{bad}");
        }
    }
}
