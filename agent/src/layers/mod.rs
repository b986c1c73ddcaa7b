//! Opening the layers between the guest's disks and its filesystems: md arrays and LVM volume
//! groups (LUKS containers next), so that the filesystems inside them are checked, inspected
//! and repaired like any other.
//!
//! Only what is on the guest's disks is opened, and in check mode nothing is written to open
//! it: arrays are assembled read-only (no resync, no recovery), LVM metadata is never written
//! (in either mode), and every logical volume is activated read-only. A degraded array is
//! assembled and reported, never re-added to.
//! Two copies of one volume group (a clone attached beside its source) are never merged: the
//! first disk's set is opened and the other reported as a duplicate, untouched.
//!
//! Each device opened is scanned like a disk (`mapper/vg0-root`, so `/dev/mapper/vg0-root`)
//! and appended to the scans; the report's `layers` says what was found and opened.

pub mod luks;
mod luks_open;
pub mod lvm;
mod lvm_open;
pub mod md;
mod md_open;

use std::path::Path;
use std::time::Duration;

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::inventory::{self, DiskScan};
use vmrescue_protocol::secrets::LuksKey;
use vmrescue_protocol::{Change, ChangeKind, Layer, LayerKind, Mode, Step};

use crate::late;
use crate::reporter::Reporter;

/// How long one `lvm`, `mdadm` or `cryptsetup` command may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// What opening the layers found.
#[derive(Debug, Default)]
pub struct Opened {
    pub layers: Vec<Layer>,
    /// What opening them changed on the guest's disks besides assembling arrays (a thin
    /// pool's metadata rebuilt).
    pub changes: Vec<Change>,
}

impl Opened {
    /// The scan names of the devices opened (`mapper/vg0-root`): not disks of their own.
    pub fn device_names(&self) -> Vec<String> {
        self.layers
            .iter()
            .flat_map(|l| l.devices.iter())
            .filter_map(|d| d.strip_prefix("/dev/").map(str::to_owned))
            .collect()
    }

    /// What discovery needs to know of them for the guest's names: each LUKS container opened
    /// (its UUID and device) and each md array running (its name and device).
    pub fn for_discovery(&self) -> vmrescue_discovery::assemble::Opened {
        let mut o = vmrescue_discovery::assemble::Opened::default();
        for l in self.layers.iter().filter(|l| !l.devices.is_empty()) {
            let dev = l.devices[0].clone();
            match l.kind {
                LayerKind::Luks => {
                    if let Some(u) = &l.uuid {
                        o.luks.push((u.clone(), dev));
                    }
                }
                LayerKind::Md => o.md.push((l.name.clone(), dev)),
                _ => {}
            }
        }
        o
    }

    /// The devices opened from the container `device` (its layer's devices).
    pub fn opened_from(&self, device: &str) -> Vec<String> {
        self.layers
            .iter()
            .filter(|l| l.members.iter().any(|m| m == device))
            .flat_map(|l| l.devices.iter().cloned())
            .collect()
    }
}

/// Puts what was opened into the report: its `layers`, each container's `opened_as`, and
/// before the other changes an `assemble` change for each md array run read-write; the
/// devices opened are not disks of the guest's.
pub fn record(opened: Opened, report: &mut vmrescue_protocol::Report) {
    let names = opened.device_names();
    report.disks.retain(|d| !names.contains(&d.name));
    for fs in &mut report.filesystems {
        fs.opened_as = opened.opened_from(&fs.device);
    }
    let assembled = opened
        .layers
        .iter()
        .filter(|l| l.kind == LayerKind::Md && !l.read_only && !l.devices.is_empty())
        .flat_map(|l| {
            l.devices.iter().map(|d| Change {
                kind: ChangeKind::Assemble,
                path: d.clone(),
                detail: format!(
                    "md array assembled read-write from {}: the kernel updates its members' superblocks, and resynchronises them if it was not stopped cleanly",
                    l.members.join(", ")
                ),
                ..Default::default()
            })
        });
    let rebuilt = opened.changes.into_iter();
    report.changes.splice(0..0, assembled.chain(rebuilt));
    report.layers = opened.layers;
}

/// The containers of one kind on the scanned disks, in disk order, except that the disk
/// `prefer` names (`/dev/vdb`, or a partition of it) comes first: of two copies of one volume
/// group, the first is opened.
fn containers(scans: &[DiskScan], kind: FsType, prefer: Option<&str>) -> Vec<lvm::Member> {
    let named = |s: &DiskScan| {
        prefer.is_some_and(|p| {
            let p = p.strip_prefix("/dev/").unwrap_or(p);
            s.name == p || s.volumes.iter().any(|v| v.name == p)
        })
    };
    let mut order: Vec<&DiskScan> = scans.iter().collect();
    order.sort_by_key(|s| !named(s));
    order
        .into_iter()
        .flat_map(|s| s.volumes.iter())
        .filter_map(|v| {
            let p = v.probe.as_ref()?;
            (p.fstype == kind).then(|| lvm::Member {
                device: format!("/dev/{}", v.name),
                uuid: p.uuid.clone(),
                label: p.label.clone(),
            })
        })
        .collect()
}

/// Opens what it can of the layers on `scans` and appends a scan of every device opened;
/// `prefer` is the operator's `--root`, which picks among copies when it names a disk;
/// `thin_repair` (repair mode only) lets a thin pool whose metadata fails `thin_check` be
/// rebuilt.
pub fn open(
    scans: &mut Vec<DiskScan>,
    mode: Mode,
    prefer: Option<&str>,
    thin_repair: bool,
    luks_keys: Vec<LuksKey>,
    rep: &mut Reporter,
) -> Opened {
    let mut opened = Opened::default();
    let unopened = |scans: &[DiskScan], opened: &Opened, kind| -> Vec<lvm::Member> {
        containers(scans, kind, prefer)
            .into_iter()
            .filter(|m| !opened.layers.iter().any(|l| l.members.contains(&m.device)))
            .collect()
    };
    // md first (a physical volume may be on an array), LUKS under LVM (Debian's encrypted
    // installs), LVM, then LUKS over it.
    let md_members = unopened(scans, &opened, FsType::LinuxRaidMember);
    if !md_members.is_empty() {
        need(md::MDADM, MD_MODULES, rep);
        let layers = md_open::open(&md_members, mode, rep);
        add(layers, scans, &mut opened, rep);
    }
    for pass in [FsType::CryptoLuks, FsType::Lvm2Member, FsType::CryptoLuks] {
        let found = unopened(scans, &opened, pass);
        if found.is_empty() {
            continue;
        }
        let layers = if pass == FsType::Lvm2Member {
            rep.progress(
                Step::Layers,
                None,
                format!(
                    "LVM physical volumes: {}",
                    found
                        .iter()
                        .map(|m| m.device.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            need(lvm::LVM, LVM_MODULES, rep);
            lvm_open::open(&found, mode, thin_repair, &mut opened.changes, rep)
        } else {
            let keyed = |c: &lvm::Member| {
                luks_keys.iter().any(|k| {
                    c.uuid
                        .as_deref()
                        .is_some_and(|u| k.uuid.eq_ignore_ascii_case(u))
                })
            };
            if found.iter().any(keyed) {
                need(luks::CRYPTSETUP, LUKS_MODULES, rep);
            }
            luks_open::open(&found, &luks_keys, mode, rep)
        };
        add(layers, scans, &mut opened, rep);
    }
    opened
}

/// What a tool printed, on one line (its non-empty lines, trimmed, joined).
pub(super) fn said(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Unpacks the late archive when `tool` is not there yet and loads `modules` (on a kernel
/// that has them as modules); a warning for what fails.
fn need(tool: &str, modules: &[&str], rep: &mut Reporter) {
    if let Some(w) = late::need(tool) {
        rep.warn(Step::Layers, None, w);
    }
    for f in crate::modules::ensure_named(modules) {
        rep.warn(Step::Layers, None, f);
    }
}

/// The modules each layer needs on a kernel that has them as modules.
const MD_MODULES: &[&str] = &["md_mod", "raid0", "raid1", "raid10", "raid456"];
const LVM_MODULES: &[&str] = &[
    "dm_mod",
    "dm_snapshot",
    "dm_mirror",
    "dm_thin_pool",
    "dm_zero",
];
const LUKS_MODULES: &[&str] = &[
    "dm_mod",
    "dm_crypt",
    "xts",
    "essiv",
    "aesni_intel",
    "algif_skcipher",
    "algif_hash",
];

/// Scans each device `layers` opened, like a disk, appends the scans, and keeps the layers.
fn add(layers: Vec<Layer>, scans: &mut Vec<DiskScan>, opened: &mut Opened, rep: &mut Reporter) {
    for layer in &layers {
        for dev in &layer.devices {
            if let Some(s) = scan(dev, rep) {
                scans.push(s);
            }
        }
    }
    opened.layers.extend(layers);
}

/// Makes sure `/dev/mapper/NAME` exists (lvm makes it without udev; this is the fallback),
/// from the dm device sysfs names the same way.
pub(super) fn ensure_node(path: &str) {
    let p = Path::new(path);
    if p.exists() {
        return;
    }
    let Some(name) = path.strip_prefix("/dev/mapper/") else {
        return;
    };
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return;
    };
    for e in dir.flatten() {
        let sys = e.path();
        let dm_name = std::fs::read_to_string(sys.join("dm/name")).unwrap_or_default();
        if dm_name.trim() != name {
            continue;
        }
        let dev = std::fs::read_to_string(sys.join("dev")).unwrap_or_default();
        let Some((maj, min)) = dev.trim().split_once(':') else {
            return;
        };
        let (Ok(maj), Ok(min)) = (maj.parse(), min.parse()) else {
            return;
        };
        let _ = std::fs::create_dir_all("/dev/mapper");
        let _ = rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(maj, min),
        );
        return;
    }
}

/// Scans an opened device like a disk (`/dev/mapper/vg0-root` as `mapper/vg0-root`).
fn scan(dev: &str, rep: &mut Reporter) -> Option<DiskScan> {
    let name = dev.strip_prefix("/dev/")?;
    match std::fs::File::open(dev) {
        Ok(mut f) => {
            let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).unwrap_or(0);
            let s = inventory::scan_disk(name, &mut f, size);
            let kind = s
                .volumes
                .first()
                .and_then(|v| v.probe.as_ref())
                .map_or(FsType::Unknown, |p| p.fstype);
            rep.progress(Step::Layers, Some(dev), format!("{kind}"));
            Some(s)
        }
        Err(e) => {
            rep.warn(Step::Layers, Some(dev), format!("cannot open {dev}: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_the_operator_names_comes_first() {
        use vmrescue_discovery::inventory::Volume;
        use vmrescue_discovery::probe::{Probe, Usage};
        let pv = |disk: &str| DiskScan {
            name: disk.into(),
            size: 1 << 20,
            table: None,
            medium: None,
            volumes: vec![Volume {
                name: disk.into(),
                offset: 0,
                size: 1 << 20,
                partition: None,
                probe: Some(Probe {
                    fstype: FsType::Lvm2Member,
                    uuid: Some("same".into()),
                    label: None,
                    usage: Usage::Raid,
                    version: None,
                    uuid_sub: None,
                }),
                ext_backup: None,
            }],
            warnings: vec![],
        };
        let scans = [pv("vda"), pv("vdb")];
        let devices = |prefer| {
            containers(&scans, FsType::Lvm2Member, prefer)
                .into_iter()
                .map(|m| m.device)
                .collect::<Vec<_>>()
        };
        assert_eq!(devices(None), ["/dev/vda", "/dev/vdb"]);
        assert_eq!(devices(Some("/dev/vdb")), ["/dev/vdb", "/dev/vda"]);
        assert_eq!(
            devices(Some("2c309045-caea-4e02-8bc7-cf04b2b71566")),
            ["/dev/vda", "/dev/vdb"]
        );
    }

    #[test]
    fn what_a_container_opened() {
        let o = Opened {
            layers: vec![Layer {
                members: vec!["/dev/vda3".into()],
                devices: vec!["/dev/mapper/vg0-root".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(o.opened_from("/dev/vda3"), ["/dev/mapper/vg0-root"]);
        assert!(o.opened_from("/dev/vdb").is_empty());
        assert_eq!(o.device_names(), ["mapper/vg0-root"]);
    }

    #[test]
    fn what_opening_changed_comes_first_in_the_report() {
        let o = Opened {
            layers: vec![Layer {
                kind: LayerKind::Md,
                members: vec!["/dev/vda2".into(), "/dev/vdb2".into()],
                devices: vec!["/dev/md127".into()],
                ..Default::default()
            }],
            changes: vec![Change {
                kind: ChangeKind::ThinRepair,
                path: "vg0/pool".into(),
                ..Default::default()
            }],
        };
        let mut report = vmrescue_protocol::Report::default();
        report.changes.push(Change {
            kind: ChangeKind::Fsck,
            path: "/dev/md127".into(),
            ..Default::default()
        });
        record(o, &mut report);
        let kinds: Vec<ChangeKind> = report.changes.iter().map(|c| c.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                ChangeKind::Assemble,
                ChangeKind::ThinRepair,
                ChangeKind::Fsck
            ]
        );
    }
}
