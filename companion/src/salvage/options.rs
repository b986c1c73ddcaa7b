//! What the operator asked salvage to do (`vmrescue salvage` flags), and the checks made on it
//! before anything is looked at.

use std::io;
use std::path::{Path, PathBuf};

use super::owners::OwnerMap;
use super::scan;

/// Where nova keeps instances unless configured otherwise.
pub const DEFAULT_INSTANCES_DIR: &str = "/var/lib/nova/instances";

/// What to salvage and where to put it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory the files were deleted from (`--instances-dir`).
    pub instances_dir: PathBuf,
    /// Copy into this directory, mirroring the instances layout (`--dest`).
    pub dest: Option<PathBuf>,
    /// Pause the owning libvirt domains while copying (`--suspend`).
    pub suspend: bool,
    /// Resume the domains paused by `suspend` afterwards. Without it they stay paused, ready
    /// for a hard reboot onto the restored files.
    pub resume: bool,
    /// Copy back to the original paths (`--restore`).
    pub restore: bool,
    /// Report what would be done; change nothing (`--dry-run`).
    pub dry_run: bool,
    /// `/proc`, or a fake tree in tests.
    pub proc_root: PathBuf,
    pub owners: OwnerMap,
    /// libvirt URI for `--suspend` (default: `LIBVIRT_DEFAULT_URI`, else libvirt's default).
    pub connect: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            instances_dir: PathBuf::from(DEFAULT_INSTANCES_DIR),
            dest: None,
            suspend: false,
            resume: false,
            restore: false,
            dry_run: false,
            proc_root: PathBuf::from("/proc"),
            owners: OwnerMap::default(),
            connect: None,
        }
    }
}

/// Options that cannot be carried out as given.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(
        "--dest and --restore exclude each other: copy out with --dest DIR, or put the files \
         back with --restore"
    )]
    DestAndRestore,
    #[error("bad path {}: {source}", path.display())]
    BadPath { path: PathBuf, source: io::Error },
}

impl Options {
    /// Refuses flags that exclude each other.
    pub fn check(&self) -> Result<(), OptionsError> {
        if self.restore && self.dest.is_some() {
            return Err(OptionsError::DestAndRestore);
        }
        Ok(())
    }
}

/// `p` made absolute against the current directory, without `.` components (no symlinks
/// resolved: the operator's spelling of the instances directory is one of the roots searched).
pub fn absolute(p: &Path) -> Result<PathBuf, OptionsError> {
    std::path::absolute(p)
        .map(|a| scan::lexical(&a))
        .map_err(|source| OptionsError::BadPath {
            path: p.to_path_buf(),
            source,
        })
}
