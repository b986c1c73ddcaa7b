//! e2fsck undo files: the rescue VM's memory is gone at power-off, so the host attaches a
//! scratch disk (a sparse ext4 image, recognised by the random filesystem UUID given on the
//! kernel command line) where e2fsck writes one undo file per fixing pass; afterwards the
//! files are copied out to the operator's `--undo-dir` and the report names them there.
//! `e2undo FILE DEVICE`, newest file first, puts back every block e2fsck changed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use vmrescue_protocol::paths::{UNDO_DIR, UNDO_LABEL};
use vmrescue_protocol::Report;

/// Why the undo scratch disk cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("running {tool} ({what}): {source}; install e2fsprogs (scripts/setup.sh)")]
    Tool {
        tool: &'static str,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("mkfs.ext4 on {}: {stderr}", image.display())]
    Mkfs { image: PathBuf, stderr: String },
    #[error("the agent named an undo file {0:?}: not DEVICE.N.e2undo")]
    BadName(String),
    #[error("{} exists already; choose an empty --undo-dir", .0.display())]
    Exists(PathBuf),
    #[error("copying {name} out of {}: {stderr}", image.display())]
    Copy {
        name: String,
        image: PathBuf,
        stderr: String,
    },
}

type Result<T> = std::result::Result<T, UndoError>;

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> UndoError {
    let path = path.to_owned();
    move |source| UndoError::Io { what, path, source }
}

/// Smallest scratch disk (it is sparse: only what e2fsck writes takes space).
const MIN_SIZE: u64 = 256 << 20;

/// A scratch disk made for one rescue.
#[derive(Debug, Clone)]
pub struct Scratch {
    pub image: PathBuf,
    pub uuid: String,
}

/// `DEVICE.N.e2undo` with a kernel device name: what the agent writes, and nothing a hostile
/// guest could use to reach another path or smuggle a debugfs argument.
fn plain_undo_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".e2undo") else {
        return false;
    };
    let Some((dev, n)) = stem.rsplit_once('.') else {
        return false;
    };
    !dev.is_empty()
        && dev.len() <= 32
        && dev
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !n.is_empty()
        && n.len() <= 3
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// A random (version 4) UUID.
pub fn random_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("reading", Path::new("/dev/urandom")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = vmrescue_protocol::digest::hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Makes a sparse ext4 scratch image in `dir` large enough to hold undo files for `disks`
/// (an undo file holds at most every block of its filesystem).
pub fn make(dir: &Path, disks_bytes: u64) -> Result<Scratch> {
    let size = disks_bytes.saturating_add(64 << 20).max(MIN_SIZE);
    make_labelled(&dir.join("undo-scratch.img"), UNDO_LABEL, size)
}

/// Makes a sparse ext4 scratch image of `size` bytes at `image`, labelled `label`, with a new
/// random filesystem UUID (how the agent recognises it).
pub fn make_labelled(image: &Path, label: &str, size: u64) -> Result<Scratch> {
    let image = image.to_owned();
    fs::File::create(&image)
        .and_then(|f| f.set_len(size))
        .map_err(io("creating", &image))?;
    let uuid = random_uuid()?;
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-U", &uuid])
        .args(["-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard"])
        .arg(&image)
        .output()
        .map_err(|source| UndoError::Tool {
            tool: "mkfs.ext4",
            what: "the undo scratch disk",
            source,
        })?;
    if !out.status.success() {
        return Err(UndoError::Mkfs {
            image,
            stderr: crate::render::clean(String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(Scratch { image, uuid })
}

/// Copies the undo files out of the scratch disk into `dest` and points the report's
/// `undo_files` at the copies. Returns the files copied.
pub fn collect(scratch: &Scratch, dest: &Path, report: &mut Report) -> Result<Vec<PathBuf>> {
    let mut wanted: Vec<String> = report
        .filesystems
        .iter()
        .flat_map(|f| f.fsck.undo_files.iter().cloned())
        .collect();
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    fs::create_dir_all(dest).map_err(io("creating", dest))?;
    let mut copied = Vec::new();
    for name in &wanted {
        if !plain_undo_name(name) {
            return Err(UndoError::BadName(crate::render::clean(name)));
        }
        let to = dest.join(name);
        if to.exists() {
            return Err(UndoError::Exists(to));
        }
        if let Dumped::Missing { stderr } = dump_file(scratch, &format!("/{UNDO_DIR}/{name}"), &to)?
        {
            return Err(UndoError::Copy {
                name: name.clone(),
                image: scratch.image.clone(),
                stderr,
            });
        }
        copied.push(to);
    }
    for f in &mut report.filesystems {
        for u in &mut f.fsck.undo_files {
            *u = dest.join(&*u).display().to_string();
        }
    }
    Ok(copied)
}

/// What [`dump_file`] found.
enum Dumped {
    Copied,
    /// Not on the scratch disk; debugfs's words (escaped).
    Missing {
        stderr: String,
    },
}

/// Copies the file `inner` (an absolute path of our own, never a guest's name) out of a
/// scratch image to `to`, with debugfs (the host never mounts it); `Ok(false)` when it is not
/// there.
pub fn dump(scratch: &Scratch, inner: &str, to: &Path) -> Result<bool> {
    Ok(matches!(dump_file(scratch, inner, to)?, Dumped::Copied))
}

/// debugfs splits its command into words: dump to a fixed name next to the scratch image,
/// then move the file to `to` (whatever characters its path has; copied across filesystems).
fn dump_file(scratch: &Scratch, inner: &str, to: &Path) -> Result<Dumped> {
    let staging = scratch.image.with_file_name("dump-staging");
    let _ = fs::remove_file(&staging);
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump {inner} {}", staging.display()))
        .arg(&scratch.image)
        .output()
        .map_err(|source| UndoError::Tool {
            tool: "debugfs",
            what: "copying out of a scratch disk",
            source,
        })?;
    if !staging.is_file() {
        return Ok(Dumped::Missing {
            stderr: crate::render::clean(String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    if fs::rename(&staging, to).is_err() {
        fs::copy(&staging, to).map_err(io("writing", to))?;
        let _ = fs::remove_file(&staging);
    }
    Ok(Dumped::Copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_random_v4() {
        let a = random_uuid().unwrap();
        let b = random_uuid().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn scratch_is_a_sparse_ext4_and_hostile_names_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = make(d.path(), 1 << 30).unwrap();
        let meta = fs::metadata(&s.image).unwrap();
        assert_eq!(meta.len(), (1 << 30) + (64 << 20));
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 64 << 20,
            "sparse"
        );
        let mut r = Report::default();
        r.filesystems.push(Default::default());
        r.filesystems[0].fsck.undo_files = vec!["../../etc/passwd".into()];
        let e = collect(&s, &d.path().join("out"), &mut r).unwrap_err();
        assert!(e.to_string().contains("not DEVICE.N.e2undo"), "{e}");
        for ok in ["vda.1.e2undo", "nvme0n1p2.12.e2undo"] {
            assert!(plain_undo_name(ok), "{ok}");
        }
        for bad in [
            "vda.e2undo",
            "../vda.1.e2undo",
            "vda 1.1.e2undo",
            "vda.1.e2undo x",
            ".1.e2undo",
        ] {
            assert!(!plain_undo_name(bad), "{bad}");
        }
    }
}
