//! Assembling md arrays with mdadm ([`super::md`] holds its configuration and what sysfs says).

use std::path::Path;

use vmrescue_protocol::{Layer, LayerKind, LayerState, Mode, Step};

use super::{said, TOOL_TIMEOUT};
use crate::proc;
use crate::reporter::Reporter;

use super::{lvm, md};

/// Assembles the md arrays on `members` (read-only in check mode) and says what ran.
pub(super) fn open(members: &[lvm::Member], mode: Mode, rep: &mut Reporter) -> Vec<Layer> {
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
            match proc::run(&argv, Some(TOOL_TIMEOUT)) {
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
