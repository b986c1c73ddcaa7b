//! `--rollback-on-regression`: the repair staged in qcow2 overlays of the guest's disks, then
//! committed into them or discarded (rolled back) when the guest booted before and not after.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use vmrescue_protocol::{BootVerdict, Report, Verify};

use super::{GuestDrive, VerifyError};
use crate::qemu::{self, Drive};
use crate::render::clean;
use crate::session::host_warning;
use crate::session::progress::{Event, Sink};

/// The repair staged in overlays of the guest's disks (`--rollback-on-regression`).
pub struct Staged {
    disks: Vec<(GuestDrive, PathBuf)>,
}

/// Where [`stage`] puts the overlay of the `i`-th disk.
pub fn staged_overlay(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("repair-disk{i}.qcow2"))
}

/// Makes one overlay per guest disk in `dir` for the repair to write to.
pub fn stage(disks: &[GuestDrive], dir: &Path) -> Result<Staged, VerifyError> {
    let mut out = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let overlay = staged_overlay(dir, i);
        let _ = fs::remove_file(&overlay);
        make_overlay(d, &overlay)?;
        out.push((d.clone(), overlay));
    }
    Ok(Staged { disks: out })
}

impl Staged {
    /// The disks as the rescue sees them: the guest's, writes going to the overlays.
    pub fn rescue_drives(&self) -> Vec<GuestDrive> {
        self.disks
            .iter()
            .map(|(d, o)| GuestDrive {
                drive: d.drive.clone().read_only(false).overlay(o),
                virtual_size: d.virtual_size,
            })
            .collect()
    }

    /// The repaired disks for the verify boot: the overlays, with the guest's disks beneath
    /// (the backing chain of files we made, each naming its format).
    pub fn verify_drives(&self) -> Vec<GuestDrive> {
        self.disks
            .iter()
            .map(|(d, o)| GuestDrive {
                drive: Drive::new(o, qemu::Format::Qcow2).follow_backing(true),
                virtual_size: d.virtual_size,
            })
            .collect()
    }

    /// The repair never reaches the disks.
    pub fn discard(self) {
        for (_, o) in self.disks {
            let _ = fs::remove_file(o);
        }
    }

    /// Writes the repair into the guest's disks (`qemu-img commit`), then removes the
    /// overlays. A failure keeps them and says how to finish.
    pub fn commit(self, sink: &mut dyn Sink) -> Result<(), VerifyError> {
        for (d, o) in &self.disks {
            let out = Command::new("qemu-img")
                .args(["commit", "-q", "-f", "qcow2"])
                .arg(o)
                .output();
            let failed = match out {
                Ok(out) if out.status.success() => None,
                Ok(out) => Some(clean(String::from_utf8_lossy(&out.stderr).trim())),
                Err(e) => Some(e.to_string()),
            };
            if let Some(message) = failed {
                return Err(VerifyError::Commit {
                    disk: d.drive.path.clone(),
                    overlay: o.clone(),
                    message,
                });
            }
            sink.event(Event::Note(&format!(
                "the verified repair is written to {}",
                d.drive.path.display()
            )));
        }
        for (_, o) in self.disks {
            let _ = fs::remove_file(o);
        }
        Ok(())
    }
}

/// The guest booted before the rescue and does not after.
pub fn is_regression(v: &Verify) -> bool {
    v.before
        .as_ref()
        .is_some_and(|b| b.state == BootVerdict::Booted)
        && v.after
            .as_ref()
            .is_some_and(|a| a.state != BootVerdict::Booted)
}

/// Records that the repair was rolled back (pure): nothing of it is on the disks, so its
/// changes and undo files are void.
pub fn rolled_back(report: &mut Report) {
    if let Some(v) = report.verify.as_mut() {
        v.rolled_back = true;
    }
    let n = report.changes.len();
    for f in &mut report.filesystems {
        f.fsck.undo_files.clear();
    }
    report.warnings.push(host_warning(format!(
        "rolled back (--rollback-on-regression): the guest booted before the rescue and not after it, so the repair ({n} change(s), listed in `changes`) was discarded: it went to overlays of the disks, which were never written"
    )));
}

/// An overlay whose backing is the guest disk, made without qemu-img opening the disk (so a
/// guest-written qcow2 header's backing file is never followed: QEMU itself opens the disk as
/// the rescue did).
pub(super) fn make_overlay(d: &GuestDrive, overlay: &Path) -> Result<(), VerifyError> {
    let out = Command::new("qemu-img")
        .args(qemu::overlay_args_unopened(
            &d.drive,
            overlay,
            d.virtual_size,
        ))
        .output()
        .map_err(|source| VerifyError::Io {
            what: "running qemu-img for",
            path: overlay.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(VerifyError::Overlay {
            disk: d.drive.path.clone(),
            overlay: overlay.to_owned(),
            message: clean(String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(())
}
