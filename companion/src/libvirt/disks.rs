//! A domain's disks as our own QEMU opens them (for verify boots and staged repairs).

use std::fs::{self, File};
use std::path::Path;

/// The domain's disks as our own QEMU opens them for a verify boot (raw or qcow2 files and
/// block devices, in definition order; a qcow2's backing chain is the domain's own), each with
/// its target, and the targets of those it cannot open.
pub(super) type Drives = Vec<(String, crate::verify::GuestDrive)>;
pub(super) fn guest_drives(xml: &str) -> Result<(Drives, Vec<String>), String> {
    use crate::qemu::{Drive, Format};
    use std::os::unix::fs::FileTypeExt;
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("the domain XML: {e}"))?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for d in doc
        .descendants()
        .filter(|n| n.has_tag_name("disk") && n.attribute("device").unwrap_or("disk") == "disk")
    {
        let child = |name: &str| d.children().find(|n| n.has_tag_name(name));
        let target = child("target")
            .and_then(|t| t.attribute("dev"))
            .unwrap_or("?")
            .to_owned();
        let source = child("source").and_then(|s| s.attribute("file").or(s.attribute("dev")));
        let format = match child("driver").and_then(|dr| dr.attribute("type")) {
            Some("qcow2") => Some(Format::Qcow2),
            Some("raw") | None => Some(Format::Raw),
            _ => None,
        };
        let (Some(path), Some(format)) = (source, format) else {
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
