//! Opening LUKS containers with the operator's keys ([`super::luks`] holds the command and
//! the key file).

use vmrescue_protocol::secrets::LuksKey;
use vmrescue_protocol::{Layer, LayerKind, LayerState, Mode, Step};

use super::{said, TOOL_TIMEOUT};
use crate::proc;
use crate::reporter::Reporter;

use super::{ensure_node, luks, lvm};

/// Opens each LUKS container a key was given for (read-only in check mode); the others stay
/// locked and are named.
pub(super) fn open(
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
                    let out = proc::run(&argv, Some(TOOL_TIMEOUT)).map_err(|e| e.to_string())?;
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
