//! A verify boot on the connection's (remote) host, where our own QEMU cannot reach the disks.

use std::path::Path;

use vmrescue_protocol::Report;

use super::placement::Media;
use super::vm::LibvirtVm;
use crate::session::host_warning;
use crate::session::progress::Sink;
use vmrescue_protocol::DEFAULT_PORT_NAME;

/// One verify boot on the connection's (remote) host: the guest's kernel and initramfs
/// uploaded to the pool, the guest booted by libvirt as a new transient domain on transient
/// disks (`verify_xml`), its console read through a stream; the uploads removed after.
pub(super) fn boot_remote(
    spec: &crate::verify::BootSpec,
    report: &mut Report,
    original: &str,
    media: &Media,
    dir: &Path,
    v: &crate::verify::VerifyRequest,
    sink: &mut dyn Sink,
) -> Result<vmrescue_protocol::BootCheck, String> {
    use super::verify_xml::{verify_xml, VerifyBoot};
    let vuuid = crate::host::undo::random_uuid().map_err(|e| e.to_string())?;
    let vname = format!("vmrescue-verify-{}", &vuuid[..8]);
    let mut uploaded = Vec::new();
    let result = (|| {
        let kernel = match spec {
            crate::verify::BootSpec::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                let mut put = |file: &Path, what: &str| {
                    let name = format!("{vname}-{what}");
                    let at = media
                        .upload(file, &name, false, false)
                        .map_err(|e| e.to_string());
                    uploaded.push(name);
                    at.map(|p| p.display().to_string())
                };
                let k = put(kernel, "kernel")?;
                let i = match initrd {
                    Some(i) => Some(put(i, "initrd")?),
                    None => None,
                };
                Some((k, i, cmdline.clone()))
            }
            crate::verify::BootSpec::Firmware => None,
        };
        let boot = VerifyBoot {
            name: vname.clone(),
            uuid: vuuid.clone(),
            kernel,
        };
        let (xml_text, left_out) = verify_xml(original, &boot).map_err(|e| e.to_string())?;
        for target in left_out {
            report.warnings.push(host_warning(format!(
                "verify: disk {target} cannot be overlaid for the verify boot (a network, pool or shareable disk): the boot goes without it"
            )));
        }
        let console = dir.join("verify-after-console.log");
        let mut vm = LibvirtVm::new(
            media.conn.clone(),
            vname.clone(),
            vuuid.clone(),
            xml_text,
            console.clone(),
            DEFAULT_PORT_NAME.to_owned(),
        )
        .capture_console();
        crate::verify::watch(&mut vm, spec, &console, "after", v.timeout, sink)
            .map_err(|e| e.to_string())
    })();
    for name in uploaded {
        media.remove(&name);
    }
    result
}
