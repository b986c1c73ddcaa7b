//! The secrets an operator hands one rescue (today LUKS keys, `--luks-key UUID=FILE`), as the
//! host writes them to [`crate::paths::SECRETS_FILE`] on the per-rescue settings drive and the
//! agent reads them: one line per secret, `luks UUID HEX` (the key file's bytes in hex, so a
//! binary key survives). Nothing here prints a key: [`LuksKey`]'s `Debug` says only whose it
//! is, and its bytes are zeroed when it is dropped.

use std::fmt;

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

/// The file's text for `keys`.
pub fn encode(keys: &[LuksKey]) -> String {
    let mut out = String::new();
    for k in keys {
        out.push_str("luks ");
        out.push_str(&k.uuid);
        out.push(' ');
        for b in &k.key {
            out.push_str(&format!("{b:02x}"));
        }
        out.push('\n');
    }
    out
}

/// The keys in the file's `text`, and a warning (naming the line, never its content) for each
/// line that is not one.
pub fn decode(text: &[u8]) -> (Vec<LuksKey>, Vec<String>) {
    let mut keys = Vec::new();
    let mut warnings = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = std::str::from_utf8(line)
            .ok()
            .and_then(|l| {
                let mut w = l.split_ascii_whitespace();
                match (w.next(), w.next(), w.next(), w.next()) {
                    (Some("luks"), Some(uuid), Some(hex), None) => Some((uuid, hex)),
                    _ => None,
                }
            })
            .ok_or_else(|| "not `luks UUID HEX`".to_owned())
            .and_then(|(uuid, hex)| LuksKey::new(uuid, unhex(hex)?));
        match parsed {
            Ok(k) => keys.push(k),
            Err(e) => warnings.push(format!("secrets line {}: {e}; ignored", n + 1)),
        }
    }
    (keys, warnings)
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
        let text = encode(&[k]);
        assert_eq!(text, "luks 6e2e5ee3-31f4 7061737300ff776f7264\n");
        let (keys, warnings) = decode(text.as_bytes());
        assert!(warnings.is_empty());
        assert_eq!(keys[0].bytes(), b"pass\x00\xffword");
        assert_eq!(keys[0].uuid, "6e2e5ee3-31f4");
    }

    #[test]
    fn bad_lines_are_named_not_shown() {
        let (keys, warnings) =
            decode(b"luks abc 0g\nluks x/y 00\nnonsense secretword\n\nluks abc 00 extra\n");
        assert!(keys.is_empty());
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings.iter().all(|w| !w.contains("secretword")));
        assert!(warnings[0].starts_with("secrets line 1"));
        assert!(LuksKey::new("abc", vec![]).is_err());
        assert!(LuksKey::new("abc", vec![0; MAX_KEY + 1]).is_err());
    }
}
