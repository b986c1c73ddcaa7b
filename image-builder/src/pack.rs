//! The archives made of an image's entries: the late archive (gzip), the core initramfs naming
//! it by checksum, the rescue kernel's core (no host modules), and the full initramfs that
//! carries the late archive inside (with and without the host's modules).

use std::io;
use std::path::Path;

use crate::assemble::{add_to, Tree};
use crate::{cpio, io_err, sha256_hex, BuildError};

/// The archives of one build.
pub(crate) struct Packed {
    /// The late archive's files (the agent makes their directories).
    pub late_files: Vec<cpio::Entry>,
    /// The late archive padded to whole sectors, to attach as a disk (empty: nothing is late).
    pub late_img: Vec<u8>,
    /// The core alone (uncompressed), naming the late archive by checksum and length.
    pub core_archive: Vec<u8>,
    /// The core without the host kernel's modules, for the rescue kernel (empty: not wanted).
    pub rescue_archive: Vec<u8>,
    /// The full initramfs, uncompressed and compressed.
    pub archive: Vec<u8>,
    pub initramfs: Vec<u8>,
}

fn gzip(data: &[u8], level: flate2::Compression, out: &Path) -> Result<Vec<u8>, BuildError> {
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), level);
    io::Write::write_all(&mut gz, data).map_err(io_err(out))?;
    gz.finish().map_err(io_err(out))
}

fn cpio_of(entries: &[cpio::Entry], mtime: u32, out: &Path) -> Result<Vec<u8>, BuildError> {
    let mut archive = Vec::new();
    cpio::write(&mut archive, entries, mtime).map_err(io_err(out))?;
    Ok(archive)
}

/// Packs `tree` with every entry's mtime `mtime`; `rescue_kernel`: also the rescue kernel's
/// core. `out` names the image in errors.
pub(crate) fn pack(
    tree: Tree,
    mtime: u32,
    rescue_kernel: bool,
    out: &Path,
) -> Result<Packed, BuildError> {
    let Tree { mut core, late } = tree;
    let late_files: Vec<cpio::Entry> = late
        .into_values()
        .filter(|e| !matches!(e.kind, cpio::Kind::Dir))
        .collect();
    let mut packed = Vec::new();
    if !late_files.is_empty() {
        packed = gzip(
            &cpio_of(&late_files, mtime, out)?,
            flate2::Compression::best(),
            out,
        )?;
    }
    // The core alone (from a disk, the late archive is taken only when it matches); then the
    // full initramfs, which carries it.
    let mut lean = core.clone();
    add_to(
        &mut lean,
        vmrescue_protocol::paths::LATE_SUM,
        0o644,
        cpio::Kind::File(format!("{} {}\n", sha256_hex(&packed), packed.len()).into_bytes()),
    );
    let lean: Vec<cpio::Entry> = lean.into_values().collect();
    let core_archive = cpio_of(&lean, mtime, out)?;
    let rescue = rescue_kernel && !packed.is_empty();
    let no_modules = |entries: &[cpio::Entry]| -> Vec<cpio::Entry> {
        entries
            .iter()
            .filter(|e| !Path::new(&e.path).starts_with("lib/modules"))
            .cloned()
            .collect()
    };
    let mut rescue_archive = Vec::new();
    if rescue {
        rescue_archive = cpio_of(&no_modules(&lean), mtime, out)?;
    }
    let mut late_img = packed.clone();
    late_img.resize(packed.len().div_ceil(512) * 512, 0);
    if !packed.is_empty() {
        add_to(
            &mut core,
            vmrescue_protocol::paths::LATE_ARCHIVE,
            0o644,
            cpio::Kind::File(packed),
        );
    }
    let entries: Vec<cpio::Entry> = core.into_values().collect();
    let archive = cpio_of(&entries, mtime, out)?;
    let initramfs = gzip(&archive, flate2::Compression::default(), out)?;
    Ok(Packed {
        late_files,
        late_img,
        core_archive,
        rescue_archive,
        archive,
        initramfs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(hay: &[u8], needle: &str) -> bool {
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    fn file(tree: &mut Tree, late: bool, path: &str, data: &str) {
        tree.add(
            late,
            path,
            0o755,
            cpio::Kind::File(data.as_bytes().to_vec()),
        );
    }

    #[test]
    fn the_late_archive_is_named_by_the_core_and_carried_by_the_full_initramfs() {
        let mut tree = Tree::default();
        file(&mut tree, false, "/init", "agent");
        file(
            &mut tree,
            false,
            "/lib/modules/6.1/kernel/virtio.ko",
            "module",
        );
        file(&mut tree, true, "/sbin/lvm", "lvm tool");
        let p = pack(tree, 0, true, Path::new("/out")).unwrap();
        let names: Vec<&str> = p.late_files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["sbin/lvm"], "files only, no directories");
        assert!(!p.late_img.is_empty() && p.late_img.len().is_multiple_of(512));
        // The core names the gzip archive (the image without its padding) by sum and length.
        let n = p.late_img.len();
        let named: Vec<usize> = (n.saturating_sub(511)..=n)
            .filter(|&len| {
                let line = format!("{} {len}\n", sha256_hex(&p.late_img[..len]));
                has(&p.core_archive, &line)
            })
            .collect();
        assert_eq!(
            named.len(),
            1,
            "one length of the archive is named: {named:?}"
        );
        assert!(!has(&p.core_archive, "sbin/lvm"));
        assert!(has(&p.core_archive, "lib/modules/6.1/kernel/virtio.ko"));
        // The rescue kernel's core: the same without the host kernel's modules.
        assert!(has(&p.rescue_archive, "init") && has(&p.rescue_archive, "late.sha256"));
        assert!(!has(&p.rescue_archive, "lib/modules"));
        // The full one: the core with the archive inside, and compressed.
        assert!(has(&p.archive, "lib/vmrescue/late.cpio.gz"));
        assert!(has(&p.archive, "lib/modules/6.1/kernel/virtio.ko"));
        assert_eq!(&p.initramfs[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn nothing_late_makes_no_late_archive_and_no_rescue_core() {
        let mut tree = Tree::default();
        file(&mut tree, false, "/init", "agent");
        let p = pack(tree, 0, true, Path::new("/out")).unwrap();
        assert!(p.late_files.is_empty() && p.late_img.is_empty());
        assert!(p.rescue_archive.is_empty());
        assert!(!has(&p.archive, "late.cpio.gz"));
    }

    #[test]
    fn the_same_tree_packs_to_the_same_bytes() {
        let make = || {
            let mut tree = Tree::default();
            file(&mut tree, true, "/sbin/mdadm", "x");
            file(&mut tree, false, "/init", "y");
            pack(tree, 7, false, Path::new("/out")).unwrap()
        };
        let (a, b) = (make(), make());
        assert_eq!(a.initramfs, b.initramfs);
        assert_eq!(a.late_img, b.late_img);
        assert!(a.rescue_archive.is_empty(), "not asked for");
    }
}
