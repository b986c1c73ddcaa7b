//! Files the host sends to the rescue: an extra newc archive appended to the image's initramfs
//! (the kernel unpacks concatenated archives, each starting on a 4-byte boundary). Used for the
//! operator's reference `/etc`, which the agent finds at `/etc/vmrescue/reference-etc`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use vmrescue_image_builder::cpio::{self, Entry, Kind};
use vmrescue_protocol::paths;

/// Where a reference `/etc` baked into the image lives (an archive path).
pub fn reference_etc() -> &'static str {
    paths::archive_path(paths::REFERENCE_ETC)
}

/// Where one rescue's own reference `/etc` goes: the agent uses it instead of the baked one
/// (never a mix of both).
pub fn reference_etc_run() -> &'static str {
    paths::archive_path(paths::REFERENCE_ETC_RUN)
}
/// Why a reference `/etc` cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("--reference-etc {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("--reference-etc {}: more than {MAX_FILES} files", .0.display())]
    TooManyFiles(PathBuf),
    #[error("--reference-etc {}: more than {} MiB", .0.display(), MAX_BYTES >> 20)]
    TooLarge(PathBuf),
    #[error("--reference-etc: {} is not a regular file or directory (copy the target instead)", .0.display())]
    NotAFile(PathBuf),
    #[error("--reference-etc: {}: the name is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, OverlayError>;

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OverlayError {
    let path = path.to_owned();
    move |source| OverlayError::Io { what, path, source }
}

/// Files taken from a reference directory at most, and bytes in all.
const MAX_FILES: usize = 2000;
const MAX_BYTES: u64 = 64 << 20;

/// The archive entries for a reference `/etc` directory baked into an image.
pub fn reference_entries(dir: &Path) -> Result<Vec<Entry>> {
    reference_entries_at(dir, reference_etc())
}

/// The archive entries for a reference `/etc` directory placed at `target` in the image: its
/// directories and regular files (symlinks and special files are refused: the agent writes
/// plain files only).
pub fn reference_entries_at(dir: &Path, target: &str) -> Result<Vec<Entry>> {
    if !dir.is_dir() {
        return Err(OverlayError::NotADirectory(dir.to_owned()));
    }
    let mut entries = vec![Entry {
        path: target.into(),
        mode: 0o755,
        kind: Kind::Dir,
    }];
    let mut total = 0u64;
    walk(dir, Path::new(""), target, &mut entries, &mut total)?;
    Ok(entries)
}

fn walk(
    base: &Path,
    rel: &Path,
    target: &str,
    out: &mut Vec<Entry>,
    total: &mut u64,
) -> Result<()> {
    let dir = base.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io("reading", &dir))?
        .collect::<std::result::Result<_, _>>()
        .map_err(io("reading", &dir))?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let rel = rel.join(e.file_name());
        let path = base.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(io("reading", &path))?;
        let name = rel
            .to_str()
            .ok_or_else(|| OverlayError::NotUtf8(path.clone()))?;
        let path_in_image = format!("{target}/{name}");
        if out.len() >= MAX_FILES {
            return Err(OverlayError::TooManyFiles(base.to_owned()));
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if meta.is_dir() {
            out.push(Entry {
                path: path_in_image,
                mode,
                kind: Kind::Dir,
            });
            walk(base, &rel, target, out, total)?;
        } else if meta.is_file() {
            *total += meta.len();
            if *total > MAX_BYTES {
                return Err(OverlayError::TooLarge(base.to_owned()));
            }
            let data = fs::read(&path).map_err(io("reading", &path))?;
            out.push(Entry {
                path: path_in_image,
                mode,
                kind: Kind::File(data),
            });
        } else {
            return Err(OverlayError::NotAFile(path));
        }
    }
    Ok(())
}

/// Writes `base` padded to 4 bytes followed by an archive of `entries` into `out`.
pub fn combined_initramfs(base: &Path, entries: &[Entry], out: &Path) -> Result<PathBuf> {
    let mut data = fs::read(base).map_err(io("reading", base))?;
    data.resize(data.len().next_multiple_of(4), 0);
    cpio::write(&mut data, entries, 0).map_err(io("writing the overlay archive for", out))?;
    let mut f = fs::File::create(out).map_err(io("creating", out))?;
    f.write_all(&data).map_err(io("writing", out))?;
    Ok(out.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_tree_becomes_entries_and_symlinks_are_refused() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("ssh")).unwrap();
        fs::write(d.path().join("hostname"), "golden\n").unwrap();
        fs::write(d.path().join("ssh/sshd_config"), "x\n").unwrap();
        let e = reference_entries(d.path()).unwrap();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                reference_etc(),
                "etc/vmrescue/reference-etc/hostname",
                "etc/vmrescue/reference-etc/ssh",
                "etc/vmrescue/reference-etc/ssh/sshd_config"
            ]
        );
        std::os::unix::fs::symlink("/etc/shadow", d.path().join("evil")).unwrap();
        let err = reference_entries(d.path()).unwrap_err().to_string();
        assert!(err.contains("evil"), "{err}");
        assert!(reference_entries(&d.path().join("hostname")).is_err());
    }

    #[test]
    fn overlay_starts_on_a_four_byte_boundary() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base.img");
        fs::write(&base, [1u8; 7]).unwrap();
        let out = d.path().join("c.img");
        let entries = vec![Entry {
            path: "etc/x".into(),
            mode: 0o644,
            kind: Kind::File(b"hi".to_vec()),
        }];
        combined_initramfs(&base, &entries, &out).unwrap();
        let data = fs::read(&out).unwrap();
        assert_eq!(&data[..7], &[1u8; 7]);
        assert_eq!(data[7], 0);
        assert_eq!(
            &data[8..14],
            b"070701",
            "newc magic right after the padding"
        );
    }
}
