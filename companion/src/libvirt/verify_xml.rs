//! The XML of a verify boot under libvirt (pure): the guest's own definition, booted once as a
//! new transient domain of its own name and UUID, on its own kernel (or its firmware and boot
//! loader), writing nothing that lasts.
//!
//! - Every local disk gets `<transient/>`: libvirt puts an overlay beside it for the boot and
//!   deletes it after. Disks that cannot be overlaid (network or pool volumes, shareable disks,
//!   SCSI passthrough) are left out, and said so.
//! - What would reach the outside world or keep state goes: network interfaces, host devices
//!   and redirections, shared host directories, TPM state, channels, the domain's own serial
//!   consoles (one pty serial is added for the console), nova's metadata.
//! - A direct kernel boot drops the firmware (`<loader>`, `<nvram>`, `firmware='efi'`): SeaBIOS
//!   loads the kernel and the guest's NVRAM is never written. A UEFI guest is not booted
//!   through its firmware for the same reason.
//! - The domain ends on reboot, power-off or crash.

use roxmltree::{Document, Node};

use super::xml::{child, children, escape, fill, finish, Edits, XmlError};

const KERNEL_BOOT: &str = include_str!("../../../xml-templates/kernel-boot.xml");

/// What the verify boot boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyBoot {
    /// The transient domain's name and UUID (never the guest's: its definition stays alone).
    pub name: String,
    pub uuid: String,
    /// The guest's kernel copied out, its initramfs and command line, as paths on the
    /// connection's host; `None` boots the disks through the firmware and boot loader.
    pub kernel: Option<(String, Option<String>, String)>,
}

/// The verify XML and the targets of the disks left out of it.
pub fn verify_xml(text: &str, v: &VerifyBoot) -> Result<(String, Vec<String>), XmlError> {
    let facts = super::xml::facts(text)?;
    if v.kernel.is_none() && facts.uefi {
        return Err(XmlError::Unsupported(
            "a UEFI guest is not booted through its firmware for a verify (its NVRAM would be written)".into(),
        ));
    }
    let doc = Document::parse(text).map_err(|e| XmlError::Parse(e.to_string()))?;
    let (dom, os, devices) = super::xml::domain_parts(&doc)?;
    let mut edits = Edits::default();
    let mut appends: Vec<(Node, String)> = Vec::new();
    let mut left_out = Vec::new();

    let name = child(dom, "name").ok_or(XmlError::Missing("name"))?;
    edits.replace(name.range(), format!("<name>{}</name>", escape(&v.name)));
    let uuid = format!("<uuid>{}</uuid>", escape(&v.uuid));
    match child(dom, "uuid") {
        Some(u) => edits.replace(u.range(), uuid),
        None => edits.insert(name.range().end, uuid),
    }
    for n in children(dom, "metadata") {
        edits.replace(n.range(), "");
    }
    for tag in ["on_reboot", "on_poweroff", "on_crash"] {
        for n in children(dom, tag) {
            edits.replace(n.range(), "");
        }
        appends.push((dom, format!("<{tag}>destroy</{tag}>")));
    }

    if let Some((kernel, initrd, cmdline)) = &v.kernel {
        if let Some(a) = os.attributes().find(|a| a.name() == "firmware") {
            edits.replace(a.range(), "");
        }
        for tag in [
            "kernel", "initrd", "cmdline", "dtb", "loader", "nvram", "firmware",
        ] {
            for n in children(os, tag) {
                edits.replace(n.range(), "");
            }
        }
        let mut frag = fill(
            KERNEL_BOOT,
            &[
                ("kernel", &escape(kernel)),
                ("initrd", &escape(initrd.as_deref().unwrap_or(""))),
                ("cmdline", &escape(cmdline)),
            ],
        );
        if initrd.is_none() {
            frag = frag
                .lines()
                .filter(|l| !l.contains("<initrd>"))
                .collect::<Vec<_>>()
                .join("\n");
        }
        appends.push((os, frag));
    }

    for d in children(devices, "disk") {
        let device = d.attribute("device").unwrap_or("disk");
        let target = child(d, "target")
            .and_then(|t| t.attribute("dev"))
            .unwrap_or("?")
            .to_owned();
        let local = matches!(d.attribute("type"), Some("file") | Some("block"));
        match device {
            "cdrom" | "floppy" => {}
            "disk" if local && child(d, "shareable").is_none() => {
                if child(d, "transient").is_none() && child(d, "readonly").is_none() {
                    appends.push((d, "<transient/>".into()));
                }
            }
            _ => {
                edits.replace(d.range(), "");
                left_out.push(target);
            }
        }
    }
    for tag in [
        "interface",
        "hostdev",
        "redirdev",
        "filesystem",
        "tpm",
        "channel",
        "serial",
        "console",
        "smartcard",
    ] {
        for n in children(devices, tag) {
            edits.replace(n.range(), "");
        }
    }
    appends.push((
        devices,
        "<serial type='pty'>\n  <target port='0'/>\n</serial>".into(),
    ));
    Ok((finish(text, edits, appends), left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: &str = include_str!("testdata/nova-uefi-mixed-disks.xml");

    fn boot(kernel: bool) -> VerifyBoot {
        VerifyBoot {
            name: "vmrescue-verify-6b4f6d0e".into(),
            uuid: "0c9a2f4e-5d6b-4c7a-8e9f-0a1b2c3d4e5f".into(),
            kernel: kernel.then(|| {
                (
                    "/pool/k".into(),
                    Some("/pool/i".into()),
                    "root=UUID=x ro console=ttyS0".into(),
                )
            }),
        }
    }

    #[test]
    fn the_guests_own_kernel_on_transient_disks_with_nothing_that_lasts() {
        let (out, left) = verify_xml(GUEST, &boot(true)).unwrap();
        let doc = Document::parse(&out).unwrap();
        let dom = doc.root_element();
        let text = |tag: &str| child(dom, tag).and_then(|n| n.text()).map(str::to_owned);
        assert_eq!(text("name").as_deref(), Some("vmrescue-verify-6b4f6d0e"));
        assert_eq!(
            text("uuid").as_deref(),
            Some("0c9a2f4e-5d6b-4c7a-8e9f-0a1b2c3d4e5f")
        );
        assert_eq!(text("on_reboot").as_deref(), Some("destroy"), "{out}");
        assert_eq!(children(dom, "on_reboot").count(), 1, "{out}");
        let os = child(dom, "os").unwrap();
        assert_eq!(os.attribute("firmware"), None, "{out}");
        assert!(child(os, "loader").is_none() && child(os, "nvram").is_none());
        assert_eq!(child(os, "kernel").unwrap().text(), Some("/pool/k"));
        assert_eq!(child(os, "initrd").unwrap().text(), Some("/pool/i"));
        assert_eq!(
            child(os, "cmdline").unwrap().text(),
            Some("root=UUID=x ro console=ttyS0")
        );
        let devices = child(dom, "devices").unwrap();
        let disks: Vec<(String, bool)> = children(devices, "disk")
            .map(|d| {
                (
                    child(d, "target")
                        .unwrap()
                        .attribute("dev")
                        .unwrap()
                        .to_owned(),
                    child(d, "transient").is_some(),
                )
            })
            .collect();
        assert_eq!(
            disks,
            [("vda".to_owned(), true), ("sda".to_owned(), false)],
            "{out}"
        );
        assert_eq!(left, ["vdb", "vdc"]);
        for gone in [
            "interface",
            "filesystem",
            "tpm",
            "channel",
            "console",
            "metadata",
        ] {
            assert!(!out.contains(&format!("<{gone}")), "{gone} in {out}");
        }
        assert_eq!(children(devices, "serial").count(), 1);
        assert!(!out.contains("console.log"), "{out}");
        assert!(out.contains("<memory unit=\"KiB\">2097152</memory>"));
    }

    #[test]
    fn through_the_firmware_only_without_uefi() {
        let e = verify_xml(GUEST, &boot(false)).unwrap_err();
        assert!(e.to_string().contains("NVRAM"), "{e}");
        let bios = GUEST
            .replace(" firmware=\"efi\"", "")
            .replace(
                "    <loader readonly=\"yes\" type=\"pflash\">/usr/share/OVMF/OVMF_CODE_4M.fd</loader>\n",
                "",
            )
            .replace(
                "    <nvram>/var/lib/libvirt/qemu/nvram/instance-00000002_VARS.fd</nvram>\n",
                "",
            );
        let (out, _) = verify_xml(&bios, &boot(false)).unwrap();
        assert!(
            out.contains("<boot dev=\"hd\"/>") && !out.contains("<kernel>"),
            "{out}"
        );
        let mut no_initrd = boot(true);
        no_initrd.kernel.as_mut().unwrap().1 = None;
        let (out, _) = verify_xml(&bios, &no_initrd).unwrap();
        assert!(
            out.contains("<kernel>/pool/k</kernel>") && !out.contains("<initrd>"),
            "{out}"
        );
        assert!(verify_xml("<domain type='xen'/>", &boot(true)).is_err());
    }
}
