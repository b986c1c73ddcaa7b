//! Scanning: waiting for the guest's block devices, then reading each disk's partition table
//! and signatures with the discovery library.

use std::path::Path;
use std::time::Duration;

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::inventory::{self, DiskScan};
use vmrescue_protocol::{Disk, Step};

use crate::reporter::Reporter;
use crate::{disks, modules};

/// What the scan found: the disks as sysfs shows them, and what is on each.
pub struct Scanned {
    pub disks: Vec<Disk>,
    pub scans: Vec<DiskScan>,
}

/// Waits up to `settle` for the `expected` disks (or, not told, for the set of disks to stay
/// the same), then scans every disk.
pub fn run(settle: Duration, expected: Option<u32>, rep: &mut Reporter) -> Scanned {
    rep.progress(Step::Disks, None, "waiting for block devices");
    let sys = Path::new("/sys");
    let found = disks::settle(sys, settle, expected, &mut || {
        let late = modules::rescan(sys);
        if !late.is_empty() {
            log::info!(
                "modules for devices that showed up late: {}",
                late.join(" ")
            );
        }
    });
    if found.is_empty() {
        rep.warn(
            Step::Disks,
            None,
            "no disk is attached to the rescue VM".into(),
        );
    }
    rep.progress(
        Step::Disks,
        None,
        format!(
            "found {}",
            found
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let scans = scan(&found, rep);
    Scanned {
        disks: found,
        scans,
    }
}

/// Reads each disk's partition table and signatures.
fn scan(found: &[Disk], rep: &mut Reporter) -> Vec<DiskScan> {
    let mut scans = Vec::new();
    for d in found {
        let dev = format!("/dev/{}", d.name);
        match std::fs::File::open(&dev) {
            Ok(mut f) => {
                let s = inventory::scan_disk(&d.name, &mut f, d.size_bytes);
                rep.progress(Step::Disks, Some(&dev), summary(&s));
                scans.push(s);
            }
            Err(e) => rep.warn(Step::Disks, Some(&dev), format!("cannot open {dev}: {e}")),
        }
    }
    scans
}

/// `vda1 ext4, vda2 swap, ...`: each volume and its type.
fn summary(s: &DiskScan) -> String {
    s.volumes
        .iter()
        .map(|v| {
            let t = v.probe.as_ref().map_or(FsType::Unknown, |p| p.fstype);
            format!("{} {t}", v.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
