//! e2fsck undo files: the rescue VM's memory is gone at power-off, so the host attaches a
//! scratch disk (a sparse ext4 image, recognised by the random filesystem UUID given on the
//! kernel command line) where e2fsck writes one undo file per fixing pass; afterwards the
//! files are copied out to the operator's `--undo-dir` and the report names them there.
//! `e2undo FILE DEVICE`, newest file first, puts back every block e2fsck changed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use vmrescue_protocol::paths::{UNDO_DIR, UNDO_LABEL};
use vmrescue_protocol::Report;

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
        .context("reading /dev/urandom")?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
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
    let image = dir.join("undo-scratch.img");
    let size = disks_bytes.saturating_add(64 << 20).max(MIN_SIZE);
    fs::File::create(&image)
        .and_then(|f| f.set_len(size))
        .with_context(|| format!("creating {}", image.display()))?;
    let uuid = random_uuid()?;
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", UNDO_LABEL, "-U", &uuid])
        .args(["-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard"])
        .arg(&image)
        .output()
        .context("running mkfs.ext4 for the undo scratch disk (e2fsprogs, scripts/setup.sh)")?;
    if !out.status.success() {
        bail!(
            "mkfs.ext4 on {} failed: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
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
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut copied = Vec::new();
    // debugfs splits its command into words: dump to a fixed name next to the scratch image,
    // then move the file to the operator's directory (whatever characters its path has).
    let staging = scratch.image.with_file_name("undo-staging");
    for name in &wanted {
        if !plain_undo_name(name) {
            bail!("the agent named an undo file {name:?}: not DEVICE.N.e2undo");
        }
        let to = dest.join(name);
        if to.exists() {
            bail!(
                "{} exists already; choose an empty --undo-dir",
                to.display()
            );
        }
        let _ = fs::remove_file(&staging);
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump /{UNDO_DIR}/{name} {}", staging.display()))
            .arg(&scratch.image)
            .output()
            .context("running debugfs (e2fsprogs, scripts/setup.sh)")?;
        if !staging.is_file() {
            bail!(
                "copying {name} out of {}: {}",
                scratch.image.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if fs::rename(&staging, &to).is_err() {
            fs::copy(&staging, &to).with_context(|| format!("writing {}", to.display()))?;
            let _ = fs::remove_file(&staging);
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
