//! The secrets an operator hands one rescue (LUKS keys, `--luks-key UUID=FILE`; the access
//! asked for, [`access`]), as the host writes them to [`crate::paths::SECRETS_FILE`] on the
//! per-rescue settings drive and the agent reads them: one line per secret, `luks UUID HEX` (the
//! key file's bytes in hex, so a binary key survives), `root-password HASH`, `ssh-key USER HEX`
//! (the key line in hex), `unlock USER`. Nothing here prints a key or a hash: their `Debug` says
//! only whose they are, and a LUKS key's bytes are zeroed when it is dropped.

use std::fmt;

pub mod access;

pub use access::{Access, PasswordHash, SshKey};

/// Largest key file accepted (cryptsetup reads at most 8 MiB; real key files are a few KiB).
pub const MAX_KEY: usize = 64 << 10;

/// The key of one LUKS container, by the container's UUID.
#[derive(Clone)]
pub struct LuksKey {
    pub uuid: String,
    key: Vec<u8>,
}

impl LuksKey {
    /// A key for the container `uuid` (checked by [`valid_uuid`] and [`MAX_KEY`]).
    pub fn new(uuid: &str, key: Vec<u8>) -> Result<LuksKey, String> {
        if !valid_uuid(uuid) {
            return Err(format!("{uuid:?} is not a LUKS UUID"));
        }
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(format!(
                "the key for {uuid} is {} bytes (1 to {MAX_KEY} accepted)",
                key.len()
            ));
        }
        Ok(LuksKey {
            uuid: uuid.to_ascii_lowercase(),
            key,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for LuksKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LuksKey({}, {} bytes)", self.uuid, self.key.len())
    }
}

impl Drop for LuksKey {
    fn drop(&mut self) {
        for b in self.key.iter_mut() {
            // black_box below keeps these stores from being optimised away.
            *b = 0;
        }
        std::hint::black_box(&mut self.key);
    }
}

/// A LUKS UUID as blkid prints it: hex digits and hyphens, 1 to 64 characters.
pub fn valid_uuid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Everything one rescue carries on its settings drive.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    pub luks: Vec<LuksKey>,
    pub access: Access,
}

impl Secrets {
    pub fn is_empty(&self) -> bool {
        self.luks.is_empty() && self.access.is_empty()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file's text for `secrets`.
pub fn encode(secrets: &Secrets) -> String {
    let mut out = String::new();
    for k in &secrets.luks {
        out.push_str(&format!("luks {} {}\n", k.uuid, hex(&k.key)));
    }
    let a = &secrets.access;
    if let Some(h) = &a.root_password {
        out.push_str(&format!("root-password {}\n", h.as_str()));
    }
    for k in &a.ssh_keys {
        out.push_str(&format!(
            "ssh-key {} {}\n",
            k.user,
            hex(k.line().as_bytes())
        ));
    }
    for u in &a.unlock {
        out.push_str(&format!("unlock {u}\n"));
    }
    out
}

/// One line's secret.
enum Line {
    Luks(LuksKey),
    RootPassword(PasswordHash),
    SshKey(SshKey),
    Unlock(String),
}

fn line(l: &str) -> Result<Line, String> {
    let w: Vec<&str> = l.split_ascii_whitespace().collect();
    match w.as_slice() {
        ["luks", uuid, hex] => LuksKey::new(uuid, unhex(hex)?).map(Line::Luks),
        ["root-password", hash] => PasswordHash::new(hash).map(Line::RootPassword),
        ["ssh-key", user, hex] => {
            let text = String::from_utf8(unhex(hex)?).map_err(|_| "the key is not text")?;
            SshKey::new(user, &text).map(Line::SshKey)
        }
        ["unlock", user] if access::valid_user(user) => Ok(Line::Unlock(user.to_string())),
        _ => Err(
            "not `luks UUID HEX`, `root-password HASH`, `ssh-key USER HEX` or `unlock USER`".into(),
        ),
    }
}

/// The secrets in the file's `text`, and a warning (naming the line, never its content) for
/// each line that is not one.
pub fn decode(text: &[u8]) -> (Secrets, Vec<String>) {
    let mut out = Secrets::default();
    let mut warnings = Vec::new();
    for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| "not text".to_owned())
            .and_then(line);
        match parsed {
            Ok(Line::Luks(k)) => out.luks.push(k),
            Ok(Line::RootPassword(h)) => out.access.root_password = Some(h),
            Ok(Line::SshKey(k)) if out.access.ssh_keys.len() < access::MAX_KEYS => {
                out.access.ssh_keys.push(k)
            }
            Ok(Line::SshKey(_)) => warnings.push(format!(
                "secrets line {}: more than {} keys; ignored",
                n + 1,
                access::MAX_KEYS
            )),
            Ok(Line::Unlock(u)) => out.access.unlock.push(u),
            Err(e) => warnings.push(format!("secrets line {}: {e}; ignored", n + 1)),
        }
    }
    (out, warnings)
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) || s.len() > 2 * MAX_KEY {
        return Err("the key is not whole bytes of hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or(""), 16)
                .map_err(|_| "the key is not hex".to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_print() {
        let k = LuksKey::new("6E2E5EE3-31f4", b"pass\x00\xffword".to_vec()).unwrap();
        assert_eq!(format!("{k:?}"), "LuksKey(6e2e5ee3-31f4, 10 bytes)");
        let text = encode(&Secrets {
            luks: vec![k],
            ..Default::default()
        });
        assert_eq!(text, "luks 6e2e5ee3-31f4 7061737300ff776f7264\n");
        let (s, warnings) = decode(text.as_bytes());
        assert!(warnings.is_empty());
        assert_eq!(s.luks[0].bytes(), b"pass\x00\xffword");
        assert_eq!(s.luks[0].uuid, "6e2e5ee3-31f4");
        assert!(s.access.is_empty());
    }

    #[test]
    fn bad_lines_are_named_not_shown() {
        let (s, warnings) = decode(
            b"luks abc 0g\nluks x/y 00\nnonsense secretword\n\nluks abc 00 extra\nroot-password secretword\nunlock a/b\nssh-key bob 7373682d\n",
        );
        assert!(s.is_empty());
        assert_eq!(warnings.len(), 7, "{warnings:?}");
        assert!(warnings.iter().all(|w| !w.contains("secretword")));
        assert!(warnings[0].starts_with("secrets line 1"));
        assert!(LuksKey::new("abc", vec![]).is_err());
        assert!(LuksKey::new("abc", vec![0; MAX_KEY + 1]).is_err());
    }

    #[test]
    fn access_round_trips_and_never_prints() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHyLptXQsulXKbxnfyXQZHg0126hHD8G3/3cynPHq0r8 alice@laptop";
        let s = Secrets {
            luks: vec![],
            access: Access {
                root_password: Some(PasswordHash::new("$6$salt$hash").unwrap()),
                ssh_keys: vec![SshKey::new("alice", key).unwrap()],
                unlock: vec!["alice".into()],
            },
        };
        let text = encode(&s);
        assert!(text.starts_with("root-password $6$salt$hash\nssh-key alice 7373682d"));
        assert!(
            !text.contains("alice@laptop"),
            "the key line travels in hex"
        );
        let (back, warnings) = decode(text.as_bytes());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back.access, s.access);
        let shown = format!("{back:?}");
        assert!(
            !shown.contains("salt") && !shown.contains("AAAA"),
            "{shown}"
        );
    }
}
