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
pub mod lvm;
pub mod md;

use std::path::Path;
use std::time::Duration;

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::inventory::{self, DiskScan};
use vmrescue_protocol::secrets::LuksKey;
use vmrescue_protocol::{Change, ChangeKind, Layer, LayerKind, LayerState, Mode, Step};

use crate::reporter::Reporter;
use crate::{late, proc};

/// How long one `lvm` command may run.
const LVM_TIMEOUT: Duration = Duration::from_secs(120);

/// What opening the layers found.
#[derive(Debug, Default)]
pub struct Opened {
    pub layers: Vec<Layer>,
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
    report.changes.splice(0..0, assembled);
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
/// `prefer` is the operator's `--root`, which picks among copies when it names a disk.
pub fn open(
    scans: &mut Vec<DiskScan>,
    mode: Mode,
    prefer: Option<&str>,
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
        need(md::MDADM, rep);
        let layers = open_md(&md_members, mode, rep);
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
            need(lvm::LVM, rep);
            open_lvm(&found, mode, rep)
        } else {
            let keyed = |c: &lvm::Member| {
                luks_keys.iter().any(|k| {
                    c.uuid
                        .as_deref()
                        .is_some_and(|u| k.uuid.eq_ignore_ascii_case(u))
                })
            };
            if found.iter().any(keyed) {
                need(luks::CRYPTSETUP, rep);
            }
            open_luks(&found, &luks_keys, mode, rep)
        };
        add(layers, scans, &mut opened, rep);
    }
    opened
}

/// What a tool printed, on one line (its non-empty lines, trimmed, joined).
fn said(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Unpacks the late archive when `tool` is not there yet (a warning when it cannot).
fn need(tool: &str, rep: &mut Reporter) {
    if let Some(w) = late::need(tool) {
        rep.warn(Step::Layers, None, w);
    }
}

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

/// Opens each LUKS container a key was given for (read-only in check mode); the others stay
/// locked and are named.
fn open_luks(
    containers: &[lvm::Member],
    keys: &[LuksKey],
    mode: Mode,
    rep: &mut Reporter,
) -> Vec<Layer> {
    let read_only = mode == Mode::Check;
    containers
        .iter()
        .map(|c| {
            let uuid = c.uuid.clone().unwrap_or_default();
            let mut layer = Layer {
                kind: LayerKind::Luks,
                name: c.device.clone(),
                uuid: c.uuid.clone(),
                members: vec![c.device.clone()],
                read_only,
                ..Default::default()
            };
            let Some(key) = keys
                .iter()
                .find(|k| !uuid.is_empty() && k.uuid.eq_ignore_ascii_case(&uuid))
            else {
                layer.state = LayerState::Locked;
                layer.detail = Some(format!(
                    "locked: no key was given for it (rescue with --luks-key {uuid}=FILE)"
                ));
                rep.progress(
                    Step::Layers,
                    Some(&c.device),
                    format!("LUKS {uuid}: locked, no key given"),
                );
                return layer;
            };
            let opened = luks::KeyFile::write(&key.uuid, key.bytes())
                .map_err(|e| format!("cannot write the key for cryptsetup: {e}"))
                .and_then(|file| {
                    let args = luks::open_args(&c.device, &key.uuid, file.path(), read_only);
                    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                    let out = proc::run(&argv, Some(LVM_TIMEOUT)).map_err(|e| e.to_string())?;
                    drop(file);
                    match out.exit.code() {
                        Some(0) => Ok(()),
                        _ => Err(format!(
                            "cryptsetup open failed (exit {}): {}",
                            out.exit.code().map_or("?".into(), |c| c.to_string()),
                            said(&out.lines)
                        )),
                    }
                });
            match opened {
                Ok(()) => {
                    let dev = format!("/dev/mapper/{}", luks::mapper_name(&key.uuid));
                    ensure_node(&dev);
                    let how = if read_only { " read-only" } else { "" };
                    rep.progress(
                        Step::Layers,
                        Some(&c.device),
                        format!("LUKS {uuid} unlocked{how}: {dev}"),
                    );
                    layer.devices = vec![dev];
                    layer.state = LayerState::Active;
                }
                Err(e) => {
                    rep.warn(Step::Layers, Some(&c.device), format!("LUKS {uuid}: {e}"));
                    layer.state = LayerState::Failed;
                    layer.detail = Some(e);
                }
            }
            layer
        })
        .collect()
}

/// Assembles the md arrays on `members` (read-only in check mode) and says what ran.
fn open_md(members: &[lvm::Member], mode: Mode, rep: &mut Reporter) -> Vec<Layer> {
    let read_only = mode == Mode::Check;
    let devices: Vec<String> = members.iter().map(|m| m.device.clone()).collect();
    rep.progress(
        Step::Layers,
        None,
        format!("md RAID members: {}", devices.join(", ")),
    );
    let config = Path::new(md::CONFIG);
    let written = config
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(config, md::config(&devices)));
    let assembled = match written {
        Err(e) => Err(format!("cannot write {}: {e}", md::CONFIG)),
        Ok(()) => {
            let args = md::assemble_args(read_only);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            match proc::run(&argv, Some(LVM_TIMEOUT)) {
                Err(e) => Err(e.to_string()),
                Ok(out) if out.exit.code() == Some(0) => Ok(()),
                Ok(out) => Err(format!("mdadm --assemble failed: {}", said(&out.lines))),
            }
        }
    };
    let mut layers = Vec::new();
    let mut used: Vec<String> = Vec::new();
    for a in md::arrays(Path::new("/sys/block")) {
        let array_members: Vec<String> = a.members.iter().map(|m| format!("/dev/{m}")).collect();
        let Some(first) = members.iter().find(|m| array_members.contains(&m.device)) else {
            continue;
        };
        used.extend(array_members.iter().cloned());
        let dev = format!("/dev/{}", a.name);
        let detail = a.degraded_detail();
        let how = if read_only { " read-only" } else { "" };
        match &detail {
            Some(d) => rep.warn(Step::Layers, Some(&dev), d.clone()),
            None => rep.progress(
                Step::Layers,
                Some(&dev),
                format!(
                    "{} assembled{how} from {}",
                    a.level,
                    array_members.join(", ")
                ),
            ),
        }
        layers.push(Layer {
            kind: LayerKind::Md,
            name: first.label.clone().unwrap_or_else(|| a.name.clone()),
            uuid: first.uuid.clone(),
            members: array_members,
            devices: vec![dev],
            state: if a.degraded > 0 {
                LayerState::Partial
            } else {
                LayerState::Active
            },
            read_only,
            detail,
        });
    }
    // Members in no running array: by array, what mdadm said.
    let mut left: Vec<&lvm::Member> = members
        .iter()
        .filter(|m| !used.contains(&m.device))
        .collect();
    while let Some(m) = left.first().copied() {
        let same: Vec<String> = left
            .iter()
            .filter(|o| o.uuid == m.uuid)
            .map(|o| o.device.clone())
            .collect();
        left.retain(|o| o.uuid != m.uuid);
        let detail = format!(
            "not assembled{}",
            match &assembled {
                Err(e) => format!(": {e}"),
                Ok(()) => " (too few members for the array to run)".to_owned(),
            }
        );
        rep.warn(Step::Layers, Some(&same[0]), detail.clone());
        layers.push(Layer {
            kind: LayerKind::Md,
            name: m.label.clone().unwrap_or_default(),
            uuid: m.uuid.clone(),
            members: same,
            state: LayerState::Failed,
            read_only,
            detail: Some(detail),
            ..Default::default()
        });
    }
    layers
}

/// Runs `lvm ARGS --config CONFIG`; the merged output, or why it failed.
fn run_lvm(args: &[&str], config: &str) -> Result<Vec<String>, String> {
    let mut argv = vec![lvm::LVM];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--config", config]);
    let out = proc::run(&argv, Some(LVM_TIMEOUT)).map_err(|e| e.to_string())?;
    if out.timed_out {
        return Err(format!("lvm {} timed out", args[0]));
    }
    match out.exit.code() {
        Some(0) => Ok(out.lines),
        _ => Err(format!("lvm {} failed: {}", args[0], said(&out.lines))),
    }
}

/// The JSON part of a report command's output (lvm prints warnings on the same stream).
fn json_of(lines: &[String]) -> String {
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with('{'))
        .unwrap_or(lines.len());
    lines[start..]
        .iter()
        .filter(|l| !l.trim_start().starts_with("WARNING"))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a VG name from the guest's disks is one lvm itself accepts (and so safe to quote
/// in a configuration).
fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b))
}

fn open_lvm(pvs: &[lvm::Member], mode: Mode, rep: &mut Reporter) -> Vec<Layer> {
    let mut layers = Vec::new();
    let (kept, dup_pvs) = lvm::duplicate_pvs(pvs);
    let devices: Vec<String> = kept.iter().map(|m| m.device.clone()).collect();
    let config = lvm::config(&devices, &[]);
    let rows = match run_lvm(
        &[
            "pvs",
            "--reportformat",
            "json",
            "-o",
            "pv_name,pv_uuid,vg_name,vg_uuid",
        ],
        &config,
    )
    .and_then(|lines| {
        lvm::parse_pvs(&json_of(&lines)).ok_or_else(|| "lvm pvs: unreadable report".to_owned())
    }) {
        Ok(rows) => rows,
        Err(e) => {
            rep.warn(Step::Layers, None, e.clone());
            return vec![Layer {
                kind: LayerKind::Lvm,
                name: String::new(),
                members: devices,
                state: LayerState::Failed,
                detail: Some(e),
                ..Default::default()
            }];
        }
    };
    let (open, same_name) = lvm::split_same_names(lvm::groups(&rows));
    for (m, first) in &dup_pvs {
        let vg = rows
            .iter()
            .find(|r| r.pv_name == *first)
            .map(|r| r.vg_name.clone())
            .unwrap_or_default();
        let detail = format!(
            "{} carries the same physical volume (UUID {}) as {first}, which was opened: a copy, left untouched (to use both, give the copy its own name and UUIDs: {})",
            m.device,
            m.uuid.as_deref().unwrap_or("?"),
            lvm::import_clone_hint(std::slice::from_ref(&m.device), if vg.is_empty() { "vg" } else { &vg })
        );
        rep.warn(Step::Layers, Some(&m.device), detail.clone());
        layers.push(Layer {
            kind: LayerKind::Lvm,
            name: vg,
            uuid: m.uuid.clone(),
            members: vec![m.device.clone()],
            state: LayerState::Duplicate,
            detail: Some(detail),
            ..Default::default()
        });
    }
    for g in &same_name {
        let detail = format!(
            "another volume group named {} was opened: this one (UUID {}) is left untouched (to use both: {})",
            g.name,
            g.uuid,
            lvm::import_clone_hint(&g.members, &g.name)
        );
        rep.warn(
            Step::Layers,
            g.members.first().map(String::as_str),
            detail.clone(),
        );
        layers.push(Layer {
            kind: LayerKind::Lvm,
            name: g.name.clone(),
            uuid: Some(g.uuid.clone()),
            members: g.members.clone(),
            state: LayerState::Duplicate,
            detail: Some(detail),
            ..Default::default()
        });
    }
    for g in open {
        layers.push(activate(&g, mode, rep));
    }
    layers
}

/// Activates one volume group (read-only in check mode) and lists its LVs.
fn activate(g: &lvm::Group, mode: Mode, rep: &mut Reporter) -> Layer {
    let read_only = mode == Mode::Check;
    let mut layer = Layer {
        kind: LayerKind::Lvm,
        name: g.name.clone(),
        uuid: Some(g.uuid.clone()),
        members: g.members.clone(),
        read_only,
        ..Default::default()
    };
    if !plain_name(&g.name) {
        layer.state = LayerState::Failed;
        layer.detail = Some(format!(
            "volume group name {:?} is not one LVM accepts",
            g.name
        ));
        return layer;
    }
    let ro: Vec<String> = if read_only {
        vec![g.name.clone()]
    } else {
        vec![]
    };
    let config = lvm::config(&g.members, &ro);
    let select = format!("vg_uuid={}", g.uuid);
    let activated = run_lvm(&["vgchange", "-ay", "--select", &select], &config);
    let lvs = run_lvm(
        &[
            "lvs",
            "--reportformat",
            "json",
            "--select",
            &select,
            "-o",
            "vg_name,lv_name,lv_attr,lv_dm_path",
        ],
        &config,
    )
    .ok()
    .and_then(|lines| lvm::parse_lvs(&json_of(&lines)))
    .unwrap_or_default();
    let (active, inactive): (Vec<_>, Vec<_>) = lvs
        .into_iter()
        .filter(lvm::LvRow::holds_data)
        .partition(lvm::LvRow::active);
    layer.devices = active
        .iter()
        .filter(|l| l.lv_dm_path.starts_with("/dev/mapper/"))
        .map(|l| l.lv_dm_path.clone())
        .collect();
    for d in &layer.devices {
        ensure_node(d);
    }
    let not_active: Vec<String> = inactive
        .iter()
        .map(|l| format!("{}/{}", l.vg_name, l.lv_name))
        .collect();
    layer.state = match (&activated, layer.devices.is_empty(), not_active.is_empty()) {
        (Ok(_), _, true) => LayerState::Active,
        (_, false, _) => LayerState::Partial,
        (_, true, _) => LayerState::Failed,
    };
    let mut detail = Vec::new();
    if let Err(e) = &activated {
        detail.push(e.clone());
    }
    if !not_active.is_empty() {
        detail.push(format!("not activated: {}", not_active.join(", ")));
    }
    layer.detail = (!detail.is_empty()).then(|| detail.join("; "));
    let how = if read_only { " read-only" } else { "" };
    match layer.state {
        LayerState::Active => rep.progress(
            Step::Layers,
            None,
            format!(
                "volume group {} activated{how}: {}",
                g.name,
                if layer.devices.is_empty() {
                    "no logical volume".to_owned()
                } else {
                    layer.devices.join(", ")
                }
            ),
        ),
        _ => rep.warn(
            Step::Layers,
            g.members.first().map(String::as_str),
            format!(
                "volume group {}: {}",
                g.name,
                layer.detail.as_deref().unwrap_or("not activated")
            ),
        ),
    }
    layer
}

/// Makes sure `/dev/mapper/NAME` exists (lvm makes it without udev; this is the fallback),
/// from the dm device sysfs names the same way.
fn ensure_node(path: &str) {
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
    fn the_json_is_found_among_warnings() {
        let lines: Vec<String> = [
            "  WARNING: Activation disabled.",
            "  {",
            "      \"report\": [",
            "  WARNING: late",
            "      ]",
            "  }",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(json_of(&lines), "  {\n      \"report\": [\n      ]\n  }");
        assert!(plain_name("vg0") && plain_name("my_vg-1.x+"));
        assert!(!plain_name("a\"b") && !plain_name(""));
    }

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
        };
        assert_eq!(o.opened_from("/dev/vda3"), ["/dev/mapper/vg0-root"]);
        assert!(o.opened_from("/dev/vdb").is_empty());
        assert_eq!(o.device_names(), ["mapper/vg0-root"]);
    }
}
