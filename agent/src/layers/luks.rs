//! LUKS: a container is opened only with the key the operator gave for its UUID (on the
//! settings drive), read-only in check mode. The key goes to cryptsetup through a file on the
//! rescue's tmpfs, readable by root only, overwritten and removed as soon as cryptsetup has
//! read it; the key's bytes in memory are zeroed when dropped. Without a key the container
//! stays locked, named in the report.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The `cryptsetup` binary (late archive).
pub const CRYPTSETUP: &str = "/sbin/cryptsetup";
/// Where a key is put for cryptsetup to read, for a moment.
const KEY_DIR: &str = "/run/vmrescue/keys";

/// The device-mapper name the rescue gives an opened container (Debian's `luks-UUID`).
pub fn mapper_name(uuid: &str) -> String {
    format!("luks-{uuid}")
}

/// The `cryptsetup open` command for `device` with the key in `key_file`.
pub fn open_args(device: &str, uuid: &str, key_file: &str, read_only: bool) -> Vec<String> {
    let mut a: Vec<String> = [CRYPTSETUP, "open", "--type", "luks", "--disable-locks"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if read_only {
        a.push("--readonly".into());
    }
    a.extend([
        "--key-file".into(),
        key_file.into(),
        device.into(),
        mapper_name(uuid),
    ]);
    a
}

/// A key written for cryptsetup; overwritten with zeros and removed when dropped.
pub struct KeyFile {
    path: String,
    len: usize,
}

impl KeyFile {
    pub fn write(uuid: &str, key: &[u8]) -> std::io::Result<KeyFile> {
        std::fs::create_dir_all(KEY_DIR)?;
        let path = format!("{KEY_DIR}/{uuid}");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let file = KeyFile {
            path,
            len: key.len(),
        };
        f.write_all(key)?;
        Ok(file)
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
            let _ = f.write_all(&vec![0u8; self.len]);
            let _ = f.sync_all();
        }
        let _ = std::fs::remove_file(Path::new(&self.path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_the_key_file_never_the_key() {
        let a = open_args("/dev/vdb", "6e2e", "/run/vmrescue/keys/6e2e", true);
        assert_eq!(
            a.join(" "),
            "/sbin/cryptsetup open --type luks --disable-locks --readonly --key-file /run/vmrescue/keys/6e2e /dev/vdb luks-6e2e"
        );
        assert!(!open_args("/dev/vdb", "6e2e", "k", false).contains(&"--readonly".to_owned()));
    }
}
