//! The layers under filesystems, read from the disks' own bytes (nothing activated, assembled
//! or opened): LVM volume groups and their linear volumes, md RAID1 arrays through one member's
//! copy, LUKS containers (locked: only a rescue given the key looks inside).

use std::fs::File;
use std::path::Path;

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::inventory;
use vmrescue_protocol as p;

/// The linear logical volumes of the volume groups on the scanned disks, read from their LVM
/// metadata (no device-mapper): each scanned like a disk named `mapper/VG-LV` (its volumes'
/// offsets on its disk's image), with the disk it is on; and what was found, as layers. A
/// volume group seen twice (a copy) is read once; an LV that is not one linear segment on one
/// of the PVs is named, not read.
pub(super) fn logical_volumes(
    scans: &[inventory::DiskScan],
    images: &[&Path],
) -> (Vec<(usize, inventory::DiskScan)>, Vec<p::Layer>) {
    use vmrescue_discovery::lvm_meta;
    let mut out = Vec::new();
    let mut layers: Vec<p::Layer> = Vec::new();
    for (disk, scan) in scans.iter().enumerate() {
        let Some(image) = images.get(disk) else {
            continue;
        };
        let Ok(mut f) = File::open(image) else {
            continue;
        };
        for v in &scan.volumes {
            let Some(probe) = v.probe.as_ref().filter(|p| p.fstype == FsType::Lvm2Member) else {
                continue;
            };
            let pv_id = probe.uuid.clone().unwrap_or_default();
            let member = format!("/dev/{}", v.name);
            let Some(vg) = lvm_meta::read(&mut inventory::Window::new(&mut f, v.offset, v.size))
            else {
                continue;
            };
            if let Some(l) = layers
                .iter_mut()
                .find(|l| l.uuid.as_deref() == Some(&vg.id))
            {
                l.members.push(member);
                continue;
            }
            let mut layer = p::Layer {
                kind: p::LayerKind::Lvm,
                name: vg.name.clone(),
                uuid: Some(vg.id.clone()),
                members: vec![member],
                state: p::LayerState::Active,
                read_only: true,
                ..Default::default()
            };
            let mut unread = Vec::new();
            for lv in &vg.lvs {
                let Some((off, len)) = vg
                    .linear_extent(lv, &pv_id)
                    .filter(|(off, len)| off.saturating_add(*len) <= v.size)
                else {
                    unread.push(format!("{}/{}", vg.name, lv.name));
                    continue;
                };
                let name = format!("mapper/{}", lvm_meta::dm_name(&vg.name, &lv.name));
                let at = v.offset + off;
                let mut lv_scan =
                    inventory::scan_disk(&name, &mut inventory::Window::new(&mut f, at, len), len);
                for vol in &mut lv_scan.volumes {
                    vol.offset += at;
                }
                layer.devices.push(format!("/dev/{name}"));
                out.push((disk, lv_scan));
            }
            let mut detail =
                vec!["read from the LVM metadata on the disk; nothing activated".to_owned()];
            if !unread.is_empty() {
                layer.state = p::LayerState::Partial;
                detail.push(format!(
                    "not one linear segment on this disk, so not looked into without booting: {}",
                    unread.join(", ")
                ));
            }
            layer.detail = Some(detail.join("; "));
            layers.push(layer);
        }
    }
    (out, layers)
}

/// The md arrays whose members are on the scanned disks: a RAID1 array scanned like a disk
/// named `md/NAME` through its first member's copy (its data window on that disk's image),
/// with the disk it is on; other levels named, not read (their data is striped).
pub(super) fn md_arrays(
    scans: &[inventory::DiskScan],
    images: &[&Path],
) -> (Vec<(usize, inventory::DiskScan)>, Vec<p::Layer>) {
    use vmrescue_discovery::md_meta;
    let mut out = Vec::new();
    let mut layers: Vec<(p::Layer, u32)> = Vec::new();
    for (disk, scan) in scans.iter().enumerate() {
        let Some(image) = images.get(disk) else {
            continue;
        };
        let Ok(mut f) = File::open(image) else {
            continue;
        };
        for v in &scan.volumes {
            let Some(probe) = v
                .probe
                .as_ref()
                .filter(|p| p.fstype == FsType::LinuxRaidMember)
            else {
                continue;
            };
            let member = format!("/dev/{}", v.name);
            let uuid = probe.uuid.clone();
            if let Some((l, _)) = layers
                .iter_mut()
                .find(|(l, _)| l.uuid.is_some() && l.uuid == uuid)
            {
                l.members.push(member);
                continue;
            }
            let sb = md_meta::read(
                &mut inventory::Window::new(&mut f, v.offset, v.size),
                v.size,
            );
            let mut layer = p::Layer {
                kind: p::LayerKind::Md,
                name: sb.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                uuid,
                members: vec![member],
                state: p::LayerState::Active,
                read_only: true,
                ..Default::default()
            };
            let disks = sb.as_ref().map_or(0, |s| s.raid_disks);
            match sb.filter(|s| s.level == 1 && !s.name.is_empty()) {
                Some(s) => {
                    let name = format!("md/{}", s.name);
                    let at = v.offset + s.data_offset;
                    let mut md_scan = inventory::scan_disk(
                        &name,
                        &mut inventory::Window::new(&mut f, at, s.data_size),
                        s.data_size,
                    );
                    for vol in &mut md_scan.volumes {
                        vol.offset += at;
                    }
                    layer.devices.push(format!("/dev/{name}"));
                    layer.detail = Some(format!(
                        "raid1 read through the copy on {}; nothing assembled",
                        layer.members[0]
                    ));
                    out.push((disk, md_scan));
                }
                None => {
                    layer.state = p::LayerState::Partial;
                    layer.detail = Some(
                        "not a RAID1 array with a 1.x superblock: its data is not looked into without assembling it"
                            .into(),
                    );
                }
            }
            layers.push((layer, disks));
        }
    }
    let layers = layers
        .into_iter()
        .map(|(mut l, disks)| {
            let present = l.members.len() as u32;
            if disks > present {
                l.state = p::LayerState::Partial;
                let said = l.detail.take().unwrap_or_default();
                l.detail = Some(format!(
                    "degraded: {} of its {disks} members missing; {said}",
                    disks - present
                ));
            }
            l
        })
        .collect();
    (out, layers)
}

/// The LUKS containers on the scanned disks, locked.
pub(super) fn luks_containers(scans: &[inventory::DiskScan]) -> Vec<p::Layer> {
    scans
        .iter()
        .flat_map(|s| s.volumes.iter())
        .filter_map(|v| {
            let probe = v
                .probe
                .as_ref()
                .filter(|p| p.fstype == FsType::CryptoLuks)?;
            let uuid = probe.uuid.clone();
            Some(p::Layer {
                kind: p::LayerKind::Luks,
                name: format!("luks-{}", uuid.as_deref().unwrap_or("")),
                uuid: uuid.clone(),
                members: vec![format!("/dev/{}", v.name)],
                state: p::LayerState::Locked,
                read_only: true,
                detail: Some(format!(
                    "{} container, locked: a rescue opens it with --luks-key {}=FILE",
                    probe
                        .version
                        .as_deref()
                        .map_or("LUKS".to_owned(), |v| format!("LUKS{v}")),
                    uuid.as_deref().unwrap_or("UUID")
                )),
                ..Default::default()
            })
        })
        .collect()
}
