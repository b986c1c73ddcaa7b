//! The per-rescue settings drive: an ISO 9660 labelled `paths::SETTINGS_LABEL` holding the
//! agent's settings (`paths::SETTINGS_FILE`) and the secrets the operator handed this rescue
//! (`paths::SECRETS_FILE`: LUKS keys, the access asked for), attached as a cdrom (a guest cannot add one to its
//! rescue). The one way a secret reaches the agent: never a kernel command line, a console
//! line, the report or a log. The tree it is made from is removed as soon as the ISO exists.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use vmrescue_protocol::params::{self, Settings};
use vmrescue_protocol::paths;
use vmrescue_protocol::secrets::{self, Access, LuksKey, PasswordHash, Secrets};

/// Why a settings drive could not be made, or a key not read.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making the settings drive {}: xorriso said: {message}", path.display())]
    Xorriso { path: PathBuf, message: String },
    #[error("--luks-key {arg:?}: {message}")]
    Key { arg: String, message: String },
    #[error("{flag}: {message}")]
    Access { flag: String, message: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriveError {
    let path = path.to_owned();
    move |source| DriveError::Io { what, path, source }
}

/// Reads `--luks-key UUID=FILE`: the key file's bytes for the container with that UUID. The
/// error names the argument and the file, never what is in it.
pub fn luks_key(arg: &str) -> Result<LuksKey, DriveError> {
    let err = |message: String| DriveError::Key {
        arg: arg.to_owned(),
        message,
    };
    let (uuid, file) = arg
        .split_once('=')
        .ok_or_else(|| err("expected UUID=FILE (the LUKS container's UUID, as blkid or `vmrescue inspect` shows it)".into()))?;
    let meta = fs::metadata(file).map_err(|e| err(format!("{file}: {e}")))?;
    if !meta.is_file() || meta.len() > secrets::MAX_KEY as u64 {
        return Err(err(format!(
            "{file} is not a key file of at most {} bytes",
            secrets::MAX_KEY
        )));
    }
    let key = fs::read(file).map_err(|e| err(format!("{file}: {e}")))?;
    LuksKey::new(uuid, key).map_err(err)
}

/// Largest public key file read.
const MAX_KEY_FILE: u64 = 64 << 10;

/// The access asked for by `--root-password-hash`, `--ssh-key FILE` (for `user`) and
/// `--unlock-user`, checked. An error names the flag and the file, never a hash or a key.
pub fn access(
    hash: Option<&str>,
    key_files: &[PathBuf],
    user: &str,
    unlock: &[String],
) -> Result<Access, DriveError> {
    let err = |flag: String, message: String| DriveError::Access { flag, message };
    let root_password = hash
        .map(|h| PasswordHash::new(h).map_err(|m| err("--root-password-hash".into(), m)))
        .transpose()?;
    let mut ssh_keys = Vec::new();
    for file in key_files {
        let flag = format!("--ssh-key {}", file.display());
        let meta = fs::metadata(file).map_err(|e| err(flag.clone(), e.to_string()))?;
        if !meta.is_file() || meta.len() > MAX_KEY_FILE {
            return Err(err(
                flag,
                format!("not a public key file of at most {MAX_KEY_FILE} bytes"),
            ));
        }
        let text = fs::read_to_string(file).map_err(|e| err(flag.clone(), e.to_string()))?;
        ssh_keys.extend(secrets::access::ssh_keys_from(user, &text).map_err(|m| err(flag, m))?);
    }
    if ssh_keys.len() > secrets::access::MAX_KEYS {
        return Err(err(
            "--ssh-key".into(),
            format!("more than {} keys", secrets::access::MAX_KEYS),
        ));
    }
    if let Some(u) = unlock.iter().find(|u| !secrets::access::valid_user(u)) {
        return Err(err(
            format!("--unlock-user {u:?}"),
            "not a user name".into(),
        ));
    }
    Ok(Access {
        root_password,
        ssh_keys,
        unlock: unlock.to_vec(),
    })
}

/// Writes the drive for `settings` and `keys` to `iso`, made from a tree under `work` (removed
/// again, whatever happens).
pub fn write(
    work: &Path,
    iso: &Path,
    settings: &Settings,
    keys: &Secrets,
) -> Result<(), DriveError> {
    let tree = work.join("settings-tree");
    let _ = fs::remove_dir_all(&tree);
    let made = make(&tree, iso, settings, keys);
    let _ = fs::remove_dir_all(&tree);
    made
}

fn make(tree: &Path, iso: &Path, settings: &Settings, keys: &Secrets) -> Result<(), DriveError> {
    let file = tree.join(paths::SETTINGS_FILE.trim_start_matches('/'));
    let dir = file.parent().unwrap_or(tree);
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    fs::set_permissions(tree, fs::Permissions::from_mode(0o700)).map_err(io("securing", tree))?;
    write_private(
        &file,
        format!("{}\n", params::drive_words(settings)).as_bytes(),
    )?;
    if !keys.is_empty() {
        let secrets_file = tree.join(paths::SECRETS_FILE.trim_start_matches('/'));
        let mut text = secrets::encode(keys).into_bytes();
        let written = write_private(&secrets_file, &text);
        text.iter_mut().for_each(|b| *b = 0);
        written?;
    }
    let _ = fs::remove_file(iso);
    let out = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-R",
            "-V",
            paths::SETTINGS_LABEL,
            "-o",
        ])
        .arg(iso)
        .arg(tree)
        .output()
        .map_err(io("running xorriso (scripts/setup.sh) to make", iso))?;
    if !out.status.success() {
        return Err(DriveError::Xorriso {
            path: iso.to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    // With secrets, readable by its owner only (libvirt hands it to its QEMU as it does a
    // disk: dynamic ownership).
    if !keys.is_empty() {
        fs::set_permissions(iso, fs::Permissions::from_mode(0o600)).map_err(io("securing", iso))?;
    }
    Ok(())
}

/// The drive at `dir/settings.iso` when there are `keys` to carry (`None` without: the
/// settings then go on the kernel command line alone).
pub fn for_secrets(
    dir: &Path,
    settings: &Settings,
    keys: &Secrets,
) -> Result<Option<PathBuf>, DriveError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let iso = dir.join("settings.iso");
    write(dir, &iso, settings, keys)?;
    Ok(Some(iso))
}

/// The drive an operator attaches to a media boot (`image settings-drive --out ISO`), made in
/// a scratch directory beside it.
pub fn for_media(iso: &Path, settings: &Settings, keys: &Secrets) -> Result<(), DriveError> {
    let parent = iso
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let work = tempfile::tempdir_in(parent).map_err(io("making a scratch directory in", parent))?;
    write(work.path(), iso, settings, keys)
}

/// Creates `path` readable by its owner only and writes `data`, synced.
fn write_private(path: &Path, data: &[u8]) -> Result<(), DriveError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("creating", path))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_argument_is_read_and_its_errors_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        fs::write(&file, b"correct horse").unwrap();
        let arg = format!("6e2e5ee3-31f4-4f8c-82e3-b188e292252a={}", file.display());
        let k = luks_key(&arg).unwrap();
        assert_eq!(k.bytes(), b"correct horse");
        for bad in [
            "no-equals-sign".to_owned(),
            format!("not/a/uuid={}", file.display()),
            "abc=/nonexistent/key".to_owned(),
            format!("abc={}", dir.path().display()),
        ] {
            let e = luks_key(&bad).unwrap_err().to_string();
            assert!(e.starts_with("--luks-key"), "{e}");
            assert!(!e.contains("correct horse"), "{e}");
        }
    }

    #[test]
    fn the_drive_holds_the_settings_and_the_keys_and_its_tree_is_gone() {
        if Command::new("xorriso").arg("-version").output().is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("settings.iso");
        let keys = Secrets {
            luks: vec![LuksKey::new("abc", b"k3y".to_vec()).unwrap()],
            ..Default::default()
        };
        write(dir.path(), &iso, &Settings::default(), &keys).unwrap();
        assert!(!dir.path().join("settings-tree").exists());
        assert_eq!(
            fs::metadata(&iso).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let data = fs::read(&iso).unwrap();
        let needle = b"luks abc 6b3379";
        assert!(data.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn access_flags_are_checked_and_their_errors_show_no_hash_or_key() {
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("id.pub");
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHyLptXQsulXKbxnfyXQZHg0126hHD8G3/3cynPHq0r8 me";
        fs::write(&public, format!("{key}\n")).unwrap();
        let a = access(
            Some("$y$j9T$salt$hash"),
            std::slice::from_ref(&public),
            "alice",
            &["bob".into()],
        )
        .unwrap();
        assert_eq!(a.ssh_keys[0].user, "alice");
        assert_eq!(a.ssh_keys[0].line(), key);
        assert_eq!(a.unlock, ["bob"]);
        let private = dir.path().join("id");
        fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
        type Case<'a> = (Option<&'a str>, Vec<PathBuf>, &'a str, Vec<String>, &'a str);
        let cases: [Case; 5] = [
            (
                Some("hunter2-clear"),
                vec![],
                "root",
                vec![],
                "--root-password-hash",
            ),
            (None, vec![private], "root", vec![], "private key"),
            (
                None,
                vec![dir.path().join("missing.pub")],
                "root",
                vec![],
                "missing.pub",
            ),
            (
                None,
                vec![public.clone()],
                "../root",
                vec![],
                "is not a user name",
            ),
            (None, vec![], "root", vec!["a:b".into()], "--unlock-user"),
        ];
        for (hash, files, user, unlock, said) in cases {
            let e = access(hash, &files, user, &unlock).unwrap_err().to_string();
            assert!(e.contains(said), "{e}");
            for secret in ["hunter2-clear", "c2VjcmV0", "AAAAC3Nza"] {
                assert!(!e.contains(secret), "{e}");
            }
        }
    }
}
