//! A domain's disks: the one typed reader of a domain XML's `<disk>` elements (pure; used by
//! `rescue --domain` and `vmrescue watch`), and the disks as our own QEMU opens them (for
//! verify boots and staged repairs).

use std::fs::{self, File};
use std::path::Path;

use super::xml_splice::{child, children};

/// One `<disk>` of a domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainDisk {
    /// `<target dev>` (`vda`), when given.
    pub target: Option<String>,
    /// The `type` attribute: `file`, `block`, `network`, `volume`...
    pub kind: String,
    /// The `device` attribute: `disk` (the default), `cdrom`, `floppy`, `lun`.
    pub device: String,
    /// A file's or block device's path (`<source file>` / `<source dev>`).
    pub path: Option<String>,
    /// What names any other source: `POOL/VOLUME`, or a network disk's `name`.
    pub name: Option<String>,
    /// `<driver type>` (`raw`, `qcow2`), when given.
    pub format: Option<String>,
    pub shareable: bool,
    pub readonly: bool,
    /// `<alias name>` (live XML only).
    pub alias: Option<String>,
}

impl DomainDisk {
    /// The source as a path, else its name.
    pub fn source(&self) -> Option<&str> {
        self.path.as_deref().or(self.name.as_deref())
    }
}

/// Every `<disk>` under the domain's `<devices>`, in definition order.
pub fn read(xml: &str) -> Result<Vec<DomainDisk>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("malformed domain XML: {e}"))?;
    let Some(devices) = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("devices"))
    else {
        return Ok(Vec::new());
    };
    Ok(devices
        .children()
        .filter(|n| n.has_tag_name("disk"))
        .map(|d| {
            let child = |name: &str| d.children().find(|n| n.has_tag_name(name));
            let attr =
                |name: &str, a: &str| child(name).and_then(|n| n.attribute(a)).map(str::to_owned);
            let source = child("source");
            DomainDisk {
                target: attr("target", "dev"),
                kind: d.attribute("type").unwrap_or("file").to_owned(),
                device: d.attribute("device").unwrap_or("disk").to_owned(),
                path: source
                    .and_then(|s| s.attribute("file").or_else(|| s.attribute("dev")))
                    .map(str::to_owned),
                name: source.and_then(|s| match (s.attribute("pool"), s.attribute("volume")) {
                    (Some(p), Some(v)) => Some(format!("{p}/{v}")),
                    _ => s.attribute("name").map(str::to_owned),
                }),
                format: attr("driver", "type"),
                shareable: child("shareable").is_some(),
                readonly: child("readonly").is_some(),
                alias: attr("alias", "name"),
            }
        })
        .collect())
}

/// The domain's disks as our own QEMU opens them for a verify boot (raw or qcow2 files and
/// block devices, in definition order; a qcow2's backing chain is the domain's own), each with
/// its target, and the targets of those it cannot open.
pub type Drives = Vec<(String, crate::verify::GuestDrive)>;
pub fn guest_drives(xml: &str) -> Result<(Drives, Vec<String>), String> {
    use crate::qemu::{Drive, Format};
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for d in read(xml)?.into_iter().filter(|d| d.device == "disk") {
        let target = d.target.clone().unwrap_or_else(|| "?".to_owned());
        let format = match d.format.as_deref() {
            Some("qcow2") => Some(Format::Qcow2),
            Some("raw") | None => Some(Format::Raw),
            _ => None,
        };
        let (Some(path), Some(format)) = (d.path.as_deref(), format) else {
            skipped.push(target);
            continue;
        };
        let Ok(meta) = fs::metadata(path) else {
            skipped.push(target);
            continue;
        };
        let size = match format {
            Format::Raw if meta.file_type().is_block_device() => File::open(path)
                .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
                .unwrap_or(0),
            Format::Raw => meta.len(),
            Format::Qcow2 => crate::host::diskimage::check(Path::new(path), Some(Format::Qcow2))
                .map(|c| c.virtual_size)
                .unwrap_or(0),
        };
        out.push((
            target,
            crate::verify::GuestDrive {
                drive: Drive::new(path, format)
                    .follow_backing(format == Format::Qcow2)
                    .block_device(meta.file_type().is_block_device()),
                virtual_size: size,
            },
        ));
    }
    Ok((out, skipped))
}

/// The disk buses the rescue kernel has drivers for (SCSI only behind virtio-scsi).
const KNOWN_BUSES: [&str; 5] = ["virtio", "scsi", "sata", "ide", "nvme"];

/// How many block devices the domain's disks make in the rescue kernel (`disk` and `lun`
/// devices; cdroms and floppies are never scanned), or `None` when some disk may not show
/// up or something else may add one (a bus without a driver, a SCSI controller other than
/// virtio-scsi, a passed-through SCSI host device).
pub(super) fn rescue_disk_count(devices: roxmltree::Node) -> Option<u32> {
    let models: Vec<Option<&str>> = children(devices, "controller")
        .filter(|c| c.attribute("type") == Some("scsi"))
        .map(|c| c.attribute("model"))
        .collect();
    // libvirt adds a SCSI controller of its own choosing where none is declared.
    let scsi_ok = !models.is_empty() && models.iter().all(|m| *m == Some("virtio-scsi"));
    let scsi_hostdev = children(devices, "hostdev")
        .any(|h| matches!(h.attribute("type"), Some("scsi") | Some("scsi_host")));
    if scsi_hostdev {
        return None;
    }
    let mut n = 0u32;
    for d in children(devices, "disk") {
        if matches!(d.attribute("device"), Some("cdrom") | Some("floppy")) {
            continue;
        }
        let bus = child(d, "target").and_then(|t| t.attribute("bus"))?;
        if !KNOWN_BUSES.contains(&bus) || (bus == "scsi" && !scsi_ok) {
            return None;
        }
        n += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_disk_with_its_source_format_and_flags() {
        let xml = "<domain type='kvm'><name>d</name><devices>\
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/nova/instances/x/disk'/><target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>\
            <disk type='block' device='disk'><source dev='/dev/vg/data'/><target dev='vdb' bus='virtio'/><shareable/></disk>\
            <disk type='network' device='disk'><source protocol='rbd' name='volumes/volume-1'/><target dev='vdc' bus='virtio'/></disk>\
            <disk type='volume' device='disk'><source pool='default' volume='v1'/><target dev='vdd'/></disk>\
            <disk type='file' device='cdrom'><source file='/x/disk.config'/><target dev='sda' bus='sata'/><readonly/></disk>\
            <interface type='bridge'/></devices></domain>";
        let d = read(xml).unwrap();
        assert_eq!(d.len(), 5);
        assert_eq!(d[0].target.as_deref(), Some("vda"));
        assert_eq!(d[0].format.as_deref(), Some("qcow2"));
        assert_eq!(d[0].alias.as_deref(), Some("virtio-disk0"));
        assert_eq!(d[0].source(), Some("/var/lib/nova/instances/x/disk"));
        assert_eq!((d[1].kind.as_str(), d[1].shareable), ("block", true));
        assert_eq!(
            (d[2].path.as_deref(), d[2].source()),
            (None, Some("volumes/volume-1"))
        );
        assert_eq!(d[3].source(), Some("default/v1"));
        assert_eq!((d[4].device.as_str(), d[4].readonly), ("cdrom", true));
        assert!(read("<domain/>").unwrap().is_empty());
        assert!(read("<domain").is_err());
    }

    #[test]
    fn the_rescue_kernel_sees_a_known_number_of_disks_or_none_is_said() {
        let count = |devices: &str| {
            let xml =
                format!("<domain type='kvm'><name>d</name><devices>{devices}</devices></domain>");
            let doc = roxmltree::Document::parse(&xml).unwrap();
            let devices = child(doc.root_element(), "devices").unwrap();
            rescue_disk_count(devices)
        };
        let disk = |bus: &str| {
            format!("<disk type='file' device='disk'><target dev='x' bus='{bus}'/></disk>")
        };
        let cdrom = "<disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>";
        let floppy = "<disk type='file' device='floppy'><target dev='fda' bus='fdc'/></disk>";
        assert_eq!(count(""), Some(0));
        assert_eq!(
            count(
                &[
                    disk("virtio"),
                    disk("sata"),
                    disk("ide"),
                    disk("nvme"),
                    cdrom.into(),
                    floppy.into()
                ]
                .concat()
            ),
            Some(4)
        );
        // SCSI disks only behind virtio-scsi, declared as such.
        let vscsi = "<controller type='scsi' index='0' model='virtio-scsi'/>";
        let lsi = "<controller type='scsi' index='1' model='lsilogic'/>";
        assert_eq!(count(&[vscsi, &disk("scsi")].concat()), Some(1));
        assert_eq!(count(&disk("scsi")), None);
        assert_eq!(count(&[vscsi, lsi, &disk("scsi")].concat()), None);
        // A bus without a driver, a disk without a bus, a passed-through SCSI device.
        assert_eq!(count(&[disk("virtio"), disk("usb")].concat()), None);
        assert_eq!(
            count("<disk type='file' device='disk'><target dev='vda'/></disk>"),
            None
        );
        assert_eq!(
            count(
                &[
                    disk("virtio"),
                    "<hostdev mode='subsystem' type='scsi'/>".into()
                ]
                .concat()
            ),
            None
        );
    }
}
