//! Activating LVM volume groups with lvm ([`super::lvm`] holds the configuration, the report
//! parsing and the choice among copies).

use vmrescue_protocol::{Change, ChangeKind, Layer, LayerKind, LayerState, Mode, Step};

use super::{said, TOOL_TIMEOUT};
use crate::proc;
use crate::reporter::Reporter;

use super::{ensure_node, lvm};

/// Runs `lvm ARGS --config CONFIG`; the merged output, or why it failed.
fn run_lvm(args: &[&str], config: &str) -> Result<Vec<String>, String> {
    let mut argv = vec![lvm::LVM];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--config", config]);
    let out = proc::run(&argv, Some(TOOL_TIMEOUT)).map_err(|e| e.to_string())?;
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

/// Opens the volume groups on `pvs`; with `thin_repair` in repair mode, a thin pool that does
/// not activate has its metadata rebuilt first (each rebuild is added to `changes`).
pub(super) fn open(
    pvs: &[lvm::Member],
    mode: Mode,
    thin_repair: bool,
    changes: &mut Vec<Change>,
    rep: &mut Reporter,
) -> Vec<Layer> {
    let mut layers = Vec::new();
    let (kept, dup_pvs) = lvm::duplicate_pvs(pvs);
    let devices: Vec<String> = kept.iter().map(|m| m.device.clone()).collect();
    let config = lvm::config(&devices, &[], lvm::Metadata::ReadOnly);
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
        layers.push(activate(&g, mode, thin_repair, changes, rep));
    }
    layers
}

/// The LVs of the volume group `select` picks, as `lvs` lists them now.
fn list_lvs(select: &str, config: &str) -> Vec<lvm::LvRow> {
    run_lvm(
        &[
            "lvs",
            "--reportformat",
            "json",
            "--select",
            select,
            "-o",
            "vg_name,lv_name,lv_attr,lv_dm_path",
        ],
        config,
    )
    .ok()
    .and_then(|lines| lvm::parse_lvs(&json_of(&lines)))
    .unwrap_or_default()
}

/// Rebuilds the metadata of each thin pool in `pools` (`VG/POOL`) with `lvconvert --repair`:
/// thin_repair writes new metadata into the pool's spare, and the old metadata stays in the
/// volume group as `POOL_metaN`. Each rebuild is a change; each failure a note.
fn repair_pools(
    pools: &[String],
    members: &[String],
    changes: &mut Vec<Change>,
    rep: &mut Reporter,
) -> Vec<String> {
    let write = lvm::config(members, &[], lvm::Metadata::Writable);
    let mut notes = Vec::new();
    for pool in pools {
        rep.progress(
            Step::Layers,
            None,
            format!("thin pool {pool}: rebuilding its metadata (lvconvert --repair, as --thin-repair allows)"),
        );
        match run_lvm(&["lvconvert", "--repair", "-y", pool], &write) {
            Ok(_) => changes.push(Change {
                kind: ChangeKind::ThinRepair,
                path: pool.clone(),
                detail: format!(
                    "thin pool {pool}: its metadata did not pass thin_check and was rebuilt by lvconvert --repair (thin_repair); the old metadata is kept in the volume group as {pool}_metaN (lvs -a)"
                ),
                ..Default::default()
            }),
            Err(e) => notes.push(format!("thin pool {pool}: {e}")),
        }
    }
    notes
}

/// Activates one volume group (read-only in check mode) and lists its LVs.
fn activate(
    g: &lvm::Group,
    mode: Mode,
    thin_repair: bool,
    changes: &mut Vec<Change>,
    rep: &mut Reporter,
) -> Layer {
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
    let config = lvm::config(&g.members, &ro, lvm::Metadata::ReadOnly);
    let select = format!("vg_uuid={}", g.uuid);
    let mut activated = run_lvm(&["vgchange", "-ay", "--select", &select], &config);
    let mut lvs = list_lvs(&select, &config);
    let said = activated.as_ref().err().cloned().unwrap_or_default();
    let (failed_check, other): (Vec<String>, Vec<String>) = lvm::inactive_pools(&lvs)
        .iter()
        .map(|l| format!("{}/{}", l.vg_name, l.lv_name))
        .partition(|p| lvm::pool_failed_check(&said, p));
    let mut pool_notes = Vec::new();
    if !failed_check.is_empty() {
        if mode == Mode::Repair && thin_repair {
            pool_notes = repair_pools(&failed_check, &g.members, changes, rep);
            activated = run_lvm(&["vgchange", "-ay", "--select", &select], &config);
            lvs = list_lvs(&select, &config);
        } else {
            let how = match mode {
                Mode::Check => "in repair mode with --thin-repair",
                Mode::Repair => "rerun with --thin-repair",
            };
            pool_notes.push(format!(
                "thin pool {}: its metadata fails thin_check; to rebuild it with lvconvert --repair (which keeps the old metadata as POOL_metaN), {how}",
                failed_check.join(", ")
            ));
        }
    }
    if !other.is_empty() && mode == Mode::Check {
        pool_notes.push(format!(
            "thin pool {} not activated: the kernel's thin-pool target cannot run on the read-only disks of check mode, so the thin volumes in it were not checked (a repair-mode rescue activates it)",
            other.join(", ")
        ));
    }
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
    detail.extend(pool_notes);
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
}
