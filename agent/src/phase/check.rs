//! Checking: a read-only look at the filesystems that are safe to mount, for the fstab pass
//! numbers that order the checks, then fsck of every filesystem, one thread per disk.

use std::path::Path;
use std::time::Duration;

use vmrescue_discovery::inventory::DiskScan;
use vmrescue_protocol::params::Settings;
use vmrescue_protocol::Filesystem;

use super::inspect;
use crate::checks;
use crate::reporter::Reporter;

/// Checks (and in repair mode repairs) every filesystem on the guest's disks; `undo` is where
/// e2fsck keeps its undo files. Returns the results in completion order.
pub fn run(
    scans: &[DiskScan],
    settings: &Settings,
    opened: &vmrescue_discovery::assemble::Opened,
    undo: Option<&Path>,
    rep: &mut Reporter,
) -> Vec<Filesystem> {
    // The real inspection follows the checks: this one only mounts what is safe before fsck.
    let pre = inspect::sections(scans, settings, opened, true);
    let groups = checks::plan(scans, pre.fstab.as_ref(), pre.os.root_device.as_deref());
    let opts = checks::Options {
        mode: settings.mode,
        xfs_zero_log: settings.xfs_zero_log,
        btrfs_repair: settings.btrfs_repair,
        pass_timeout: Duration::from_secs(settings.fsck_timeout_secs),
    };
    checks::run_all(opts, undo, groups, rep)
}
