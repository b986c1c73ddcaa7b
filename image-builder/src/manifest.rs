//! What a build wrote (`manifest.json` next to the artefacts) and the artefacts as a reader
//! finds them in an image directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::*;

/// What a build wrote, recorded in `manifest.json` next to the artefacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub builder_version: String,
    pub kernel_version: String,
    pub kernel_sha256: String,
    pub initramfs_sha256: String,
    /// The PVH kernel (`vmlinux`), when the bzImage yields one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmlinux_sha256: Option<String>,
    /// The uncompressed initramfs (`initramfs.cpio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs_cpio_sha256: Option<String>,
    /// The initramfs without the late archive (`initramfs-core.cpio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs_core_sha256: Option<String>,
    /// The late archive's disk image (`late.img`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_sha256: Option<String>,
    /// Why there is no `vmlinux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmlinux_missing: Option<String>,
    pub agent_sha256: String,
    /// Modules in load order (paths under /lib/modules/VERSION/).
    pub modules: Vec<String>,
    /// The files of the late archive (`paths::LATE_ARCHIVE`): checkers, their libraries and
    /// modules the agent unpacks only when a filesystem needs them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late: Vec<String>,
    /// The boot media, when built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaManifest>,
    /// The purpose-made rescue kernel (`vmlinux-rescue`), when built with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescue_kernel: Option<RescueKernelManifest>,
}

/// What the purpose-made rescue kernel is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescueKernelManifest {
    /// Its `uname -r`.
    pub release: String,
    /// The source archive it was built from.
    pub source: String,
    pub vmlinux_sha256: String,
    /// `initramfs-rescue.cpio`, when the image has a late archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs_sha256: Option<String>,
    /// `vmlinuz-rescue` (its bzImage), in images since libvirt domains boot it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bzimage_sha256: Option<String>,
    /// `initramfs-rescue-full.cpio`, when the image has a late archive (and the bzImage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs_full_sha256: Option<String>,
}

/// What the boot media are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaManifest {
    /// The rescue-medium marker's build id.
    pub build_id: String,
    pub iso_sha256: String,
    pub disk_sha256: String,
    /// The kernel command line of the boot menu's default entry.
    pub default_cmdline: String,
}

/// Paths of a built image.
#[derive(Debug, Clone)]
pub struct Artefacts {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The PVH kernel, when the build made one.
    pub vmlinux: Option<PathBuf>,
    /// The uncompressed initramfs, when the build made one (the same archive as `initramfs`).
    pub initramfs_cpio: Option<PathBuf>,
    /// The core initramfs and the late archive's disk, to boot together, when built.
    pub initramfs_core: Option<PathBuf>,
    pub late_disk: Option<PathBuf>,
    /// The purpose-made rescue kernel (PVH) and its initramfs, when built with one.
    pub rescue_vmlinux: Option<PathBuf>,
    pub rescue_initramfs: Option<PathBuf>,
    /// The rescue kernel's bzImage and its initramfs with the late archive inside, for libvirt
    /// domains, when built with them.
    pub rescue_bzimage: Option<PathBuf>,
    pub rescue_initramfs_full: Option<PathBuf>,
    /// `vmrescue.iso` and `vmrescue-disk.qcow2`, when built.
    pub iso: Option<PathBuf>,
    pub disk_image: Option<PathBuf>,
    pub manifest: Manifest,
}

impl Artefacts {
    /// Opens an image directory that a build wrote; `None` if it is missing or incomplete.
    pub fn open(dir: &Path) -> Option<Artefacts> {
        let manifest: Manifest =
            serde_json::from_slice(&fs::read(dir.join(MANIFEST_FILE)).ok()?).ok()?;
        let rescue = |has: &dyn Fn(&RescueKernelManifest) -> bool| {
            manifest.rescue_kernel.as_ref().is_some_and(has)
        };
        let media = |name: &str| {
            let p = dir.join(name);
            (manifest.media.is_some() && p.is_file()).then_some(p)
        };
        let a = Artefacts {
            dir: dir.to_owned(),
            kernel: dir.join(KERNEL_FILE),
            initramfs: dir.join(INITRAMFS_FILE),
            vmlinux: Some(dir.join(VMLINUX_FILE))
                .filter(|p| manifest.vmlinux_sha256.is_some() && p.is_file()),
            initramfs_cpio: Some(dir.join(INITRAMFS_CPIO_FILE))
                .filter(|p| manifest.initramfs_cpio_sha256.is_some() && p.is_file()),
            initramfs_core: Some(dir.join(INITRAMFS_CORE_FILE))
                .filter(|p| manifest.initramfs_core_sha256.is_some() && p.is_file()),
            late_disk: Some(dir.join(LATE_FILE))
                .filter(|p| manifest.late_sha256.is_some() && p.is_file()),
            rescue_vmlinux: Some(dir.join(RESCUE_VMLINUX_FILE))
                .filter(|p| manifest.rescue_kernel.is_some() && p.is_file()),
            rescue_initramfs: Some(dir.join(RESCUE_INITRAMFS_FILE)).filter(|p| {
                manifest
                    .rescue_kernel
                    .as_ref()
                    .is_some_and(|k| k.initramfs_sha256.is_some())
                    && p.is_file()
            }),
            rescue_bzimage: Some(dir.join(RESCUE_BZIMAGE_FILE)).filter(|p| {
                rescue(&|k: &RescueKernelManifest| k.bzimage_sha256.is_some()) && p.is_file()
            }),
            rescue_initramfs_full: Some(dir.join(RESCUE_INITRAMFS_FULL_FILE)).filter(|p| {
                rescue(&|k: &RescueKernelManifest| k.initramfs_full_sha256.is_some()) && p.is_file()
            }),
            iso: media(media::ISO_FILE),
            disk_image: media(media::DISK_FILE),
            manifest,
        };
        (a.kernel.is_file() && a.initramfs.is_file()).then_some(a)
    }
}

/// The documented default image directory: `$VMRESCUE_IMAGE_DIR`, else
/// `$XDG_CACHE_HOME/vmrescue/image`, else `$HOME/.cache/vmrescue/image`, else
/// `/var/cache/vmrescue/image`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("VMRESCUE_IMAGE_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => rescue_kernel::default_cache().join("image"),
    }
}
