//! Recovering the planned files one by one, to `--dest` or back in place (`--restore`): read
//! through a holder's descriptor, write into the destination directory, and record what
//! happened in the file's report. A file that fails is reported; the others go on.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::copy::{self, CopyError, Outcome};
use super::dest::{self, DestError};
use super::owners::ResolvedOwners;
use super::plan::Planned;
use super::report::{Action, FileReport};

/// Why one file was not recovered (its report's `error`).
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Dest(#[from] DestError),
}

/// Where and as whom the files are written.
pub struct Recovery<'a> {
    /// `/proc`, or a fake tree in tests.
    pub proc_root: &'a Path,
    /// `--dest`, or the instances directory when restoring.
    pub root: &'a Path,
    /// Restoring: the root is the instances directory, given the directory owner if created.
    pub restore: bool,
    pub owners: &'a ResolvedOwners,
}

impl Recovery<'_> {
    /// Copies `p` and records the outcome in `r`; directories created are appended to
    /// `created`.
    pub fn recover(
        &self,
        p: &Planned,
        r: &mut FileReport,
        created: &mut Vec<PathBuf>,
        warnings: &mut Vec<String>,
    ) {
        let (Some(dest), Some(name)) = (&p.destination, p.dest_rel.file_name()) else {
            return;
        };
        match self.copy(p, (dest.as_path(), name), r, created, warnings) {
            Ok(Outcome::Copied(c)) => {
                r.action = Action::Copied;
                r.copied_bytes = c.stats.data_bytes;
                r.destination_allocated_bytes = Some(c.allocated);
                r.sha256 = Some(c.sha256);
                warnings.extend(c.warnings);
            }
            Ok(Outcome::Exists) => {
                r.action = Action::Exists;
                r.owner = None;
                warnings.push(format!(
                    "{} appeared meanwhile: {} was not copied over it",
                    dest.display(),
                    p.original.display()
                ));
            }
            Err(e) => {
                r.action = Action::Failed;
                r.owner = None;
                r.error = Some(e.to_string());
            }
        }
    }

    /// Opens the source (noting in `r` the holder read and the size now), then the
    /// destination directory, and copies to `dest`, named `name` in that directory.
    fn copy(
        &self,
        p: &Planned,
        (dest, name): (&Path, &OsStr),
        r: &mut FileReport,
        created: &mut Vec<PathBuf>,
        warnings: &mut Vec<String>,
    ) -> Result<Outcome, RecoverError> {
        let (src, holder) =
            copy::open_source(self.proc_root, &p.holders, p.dev, p.ino, &p.original)?;
        r.pid = holder.pid;
        r.fd = holder.fd;
        let size = src
            .metadata()
            .map(|m| m.size())
            .map_err(|source| CopyError::Source {
                path: p.original.clone(),
                pid: holder.pid,
                fd: holder.fd,
                source,
            })?;
        r.size = size;
        let rel_dir = p.dest_rel.parent().unwrap_or(Path::new(""));
        let dir = dest::open_dest_dir(
            self.root,
            rel_dir,
            self.restore,
            &self.owners.directory,
            created,
            warnings,
        )?;
        let owner = self.owners.for_role(p.role);
        Ok(copy::copy_file(
            &src,
            size,
            dir.as_fd(),
            name,
            dest,
            &owner,
        )?)
    }
}
