//! How a domain's rescue boots (pure): by default the purpose-made rescue kernel by direct
//! kernel boot (no firmware boot menu, no cdrom to read, no module to load), else the ISO; and
//! which of the image's files that boot takes, under the names they get where they are placed.

use std::path::PathBuf;

use vmrescue_image_builder::Artefacts;

pub use crate::boot::KernelAsked;

use super::xml::{Facts, XmlError};

/// How the operator asked a domain's rescue to boot (`--boot`, or nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootChoice {
    /// Direct kernel boot unless the domain rules it out, then the ISO.
    #[default]
    Auto,
    Kernel,
    Cdrom,
}

/// The boot a domain's rescue takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootPath {
    /// The image's kernel and initramfs through libvirt's `<os><kernel>`.
    Kernel,
    /// The ISO as a cdrom, first in the boot order.
    Cdrom,
}

/// The boot `choice` comes to for a domain: a domain that boots its own kernel directly keeps
/// its `<os><kernel>` for its own OS, and a firmware that enforces Secure Boot starts only
/// signed kernels (the ISO's shim and GRUB are signed; the rescue kernel is not). Left to us,
/// those two boot the ISO; asked for by name, the kernel boot is refused for them.
pub fn resolve(choice: BootChoice, facts: &Facts) -> Result<BootPath, XmlError> {
    let against = if facts.own_kernel {
        Some("the domain already boots a kernel directly (<os><kernel>)")
    } else if facts.secure_boot {
        Some(
            "the domain's firmware enforces Secure Boot and starts only signed kernels; the \
             rescue kernel is not signed",
        )
    } else {
        None
    };
    match (choice, against) {
        (BootChoice::Cdrom, _) | (BootChoice::Auto, Some(_)) => Ok(BootPath::Cdrom),
        (BootChoice::Auto, None) | (BootChoice::Kernel, None) => Ok(BootPath::Kernel),
        (BootChoice::Kernel, Some(why)) => Err(XmlError::Unsupported(format!(
            "{why}: use --boot cdrom (or leave --boot out)"
        ))),
    }
}

/// The image's files a domain's rescue boots, each with the name it gets where it is placed
/// (names carry their content's checksum, so a medium of that name is reused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFiles {
    pub iso_name: String,
    pub kernel: (PathBuf, String),
    pub initrd: (PathBuf, String),
    /// The late archive's disk (`late.img`), read-only beside a core initramfs.
    pub late: Option<(PathBuf, String)>,
    /// What the kernel boot starts, for the operator (`rescue kernel 6.1.x, PVH entry`).
    pub how: String,
}

fn short(sum: &str) -> &str {
    &sum[..sum.len().min(16)]
}

impl MediaFiles {
    /// The rescue kernel where the image carries it (everything built in, with its initramfs
    /// that holds the late archive): here on a BIOS domain its ELF through QEMU's PVH entry
    /// (nothing to decompress); under UEFI its bzImage (the firmware starts its EFI stub), and
    /// remote its bzImage too (less to upload). Without it, or when the host's kernel is
    /// asked for, the host's kernel with its modules: the uncompressed PVH one here on BIOS,
    /// else the bzImage; the uncompressed initramfs here, the compressed one remote.
    pub fn choose(image: &Artefacts, local: bool, uefi: bool, asked: KernelAsked) -> MediaFiles {
        let m = &image.manifest;
        let iso_name = match &m.media {
            Some(media) => format!("vmrescue-{}.iso", short(&media.iso_sha256)),
            None => format!("vmrescue-{}.iso", short(&m.initramfs_sha256)),
        };
        if let (false, Some(rk)) = (asked != KernelAsked::Rescue, &m.rescue_kernel) {
            let pvh = match (&image.rescue_vmlinux, local && !uefi) {
                (Some(elf), true) => Some((
                    (
                        elf.clone(),
                        format!("vmrescue-{}-vmlinux-rescue", short(&rk.vmlinux_sha256)),
                    ),
                    "PVH entry",
                )),
                _ => None,
            };
            let bz = match (&image.rescue_bzimage, &rk.bzimage_sha256) {
                (Some(bz), Some(sum)) => Some((
                    (
                        bz.clone(),
                        format!("vmrescue-{}-vmlinuz-rescue", short(sum)),
                    ),
                    if uefi { "EFI stub" } else { "bzImage" },
                )),
                _ => None,
            };
            // The core initramfs with the late archive on a disk of its own (13 MB less for the
            // firmware to load and the kernel to unpack), else, in an image built before, the
            // initramfs with the late archive inside.
            let core = match (
                &image.rescue_initramfs,
                &rk.initramfs_sha256,
                &image.late_disk,
                &m.late_sha256,
            ) {
                (Some(core), Some(sum), Some(late), Some(late_sum)) => Some((
                    (core.clone(), sum),
                    Some((
                        late.clone(),
                        format!("vmrescue-{}-late.img", short(late_sum)),
                    )),
                )),
                _ => None,
            };
            let full = match (&image.rescue_initramfs_full, &rk.initramfs_full_sha256) {
                (Some(full), Some(sum)) => Some(((full.clone(), sum), None)),
                _ => None,
            };
            let initrd = core.or(full);
            if let (Some((kernel, entry)), Some(((initrd, sum), late))) = (pvh.or(bz), initrd) {
                return MediaFiles {
                    iso_name,
                    kernel,
                    initrd: (
                        initrd,
                        format!("vmrescue-{}-initrd-rescue.cpio", short(sum)),
                    ),
                    late,
                    how: format!("rescue kernel {}, {entry}", rk.release),
                };
            }
        }
        let pvh = match &m.vmlinux_sha256 {
            Some(sum) if local && !uefi && asked != KernelAsked::HostBzimage => image
                .vmlinux
                .as_ref()
                .map(|v| (v.clone(), format!("vmrescue-{}-vmlinux", short(sum)))),
            _ => None,
        };
        let how = format!(
            "host kernel {}, {}",
            m.kernel_version,
            match (&pvh, uefi) {
                (Some(_), _) => "PVH entry",
                (None, true) => "EFI stub",
                (None, false) => "bzImage",
            }
        );
        let kernel = pvh.unwrap_or_else(|| {
            (
                image.kernel.clone(),
                format!("vmrescue-{}-vmlinuz", short(&m.kernel_sha256)),
            )
        });
        let initrd = match (&image.initramfs_cpio, &m.initramfs_cpio_sha256) {
            (Some(cpio), Some(sum)) if local => {
                (cpio.clone(), format!("vmrescue-{}-initrd.cpio", short(sum)))
            }
            _ => (
                image.initramfs.clone(),
                format!("vmrescue-{}-initrd.img", short(&m.initramfs_sha256)),
            ),
        };
        MediaFiles {
            iso_name,
            kernel,
            initrd,
            late: None,
            how,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_image_builder::{Manifest, RescueKernelManifest};

    fn facts(own_kernel: bool, secure_boot: bool) -> Facts {
        Facts {
            name: "g".into(),
            uuid: None,
            machine: "q35".into(),
            nvram: None,
            uefi: secure_boot,
            own_kernel,
            secure_boot,
            disk_count: None,
        }
    }

    #[test]
    fn the_kernel_boot_is_the_default_unless_the_domain_rules_it_out() {
        let plain = facts(false, false);
        assert_eq!(resolve(BootChoice::Auto, &plain), Ok(BootPath::Kernel));
        assert_eq!(resolve(BootChoice::Kernel, &plain), Ok(BootPath::Kernel));
        assert_eq!(resolve(BootChoice::Cdrom, &plain), Ok(BootPath::Cdrom));
        for f in [facts(true, false), facts(false, true)] {
            assert_eq!(resolve(BootChoice::Auto, &f), Ok(BootPath::Cdrom), "{f:?}");
            assert_eq!(resolve(BootChoice::Cdrom, &f), Ok(BootPath::Cdrom), "{f:?}");
            let err = resolve(BootChoice::Kernel, &f).unwrap_err().to_string();
            assert!(err.contains("--boot cdrom"), "{err}");
        }
        let err = resolve(BootChoice::Kernel, &facts(false, true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Secure Boot"), "{err}");
    }

    fn sum(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    /// An image directory's artefacts (nothing is read): with the rescue kernel or without.
    fn image(rescue: bool) -> Artefacts {
        let at = |n: &str| PathBuf::from("/img").join(n);
        Artefacts {
            dir: at(""),
            kernel: at("vmlinuz"),
            initramfs: at("initramfs.img"),
            vmlinux: Some(at("vmlinux")),
            initramfs_cpio: Some(at("initramfs.cpio")),
            initramfs_core: Some(at("initramfs-core.cpio")),
            late_disk: Some(at("late.img")),
            rescue_vmlinux: rescue.then(|| at("vmlinux-rescue")),
            rescue_initramfs: rescue.then(|| at("initramfs-rescue.cpio")),
            rescue_bzimage: rescue.then(|| at("vmlinuz-rescue")),
            rescue_initramfs_full: rescue.then(|| at("initramfs-rescue-full.cpio")),
            iso: None,
            disk_image: None,
            manifest: Manifest {
                format: 2,
                builder_version: "0".into(),
                kernel_version: "6.1.0-57-amd64".into(),
                kernel_sha256: sum('a'),
                initramfs_sha256: sum('b'),
                vmlinux_sha256: Some(sum('c')),
                initramfs_cpio_sha256: Some(sum('d')),
                initramfs_core_sha256: Some(sum('e')),
                late_sha256: Some(sum('f')),
                vmlinux_missing: None,
                agent_sha256: sum('0'),
                modules: vec![],
                late: vec![],
                media: None,
                rescue_kernel: rescue.then(|| RescueKernelManifest {
                    release: "6.1.192-vmrescue".into(),
                    source: "linux-source-6.1.tar.xz".into(),
                    vmlinux_sha256: sum('1'),
                    initramfs_sha256: Some(sum('2')),
                    bzimage_sha256: Some(sum('3')),
                    initramfs_full_sha256: Some(sum('4')),
                }),
            },
        }
    }

    fn names(m: &MediaFiles) -> (&str, &str) {
        (m.kernel.1.as_str(), m.initrd.1.as_str())
    }

    #[test]
    fn the_rescue_kernel_boots_pvh_here_on_bios_and_its_bzimage_under_uefi_or_remote() {
        let img = image(true);
        let local_bios = MediaFiles::choose(&img, true, false, KernelAsked::Rescue);
        assert_eq!(
            names(&local_bios),
            (
                "vmrescue-1111111111111111-vmlinux-rescue",
                "vmrescue-2222222222222222-initrd-rescue.cpio"
            )
        );
        // The core initramfs, the late archive on its own disk.
        assert_eq!(
            local_bios.initrd.0,
            PathBuf::from("/img/initramfs-rescue.cpio")
        );
        assert_eq!(
            local_bios.late,
            Some((
                PathBuf::from("/img/late.img"),
                "vmrescue-ffffffffffffffff-late.img".into()
            ))
        );
        assert_eq!(local_bios.kernel.0, PathBuf::from("/img/vmlinux-rescue"));
        assert_eq!(local_bios.how, "rescue kernel 6.1.192-vmrescue, PVH entry");
        for (local, uefi, entry) in [
            (true, true, "EFI stub"),
            (false, false, "bzImage"),
            (false, true, "EFI stub"),
        ] {
            let m = MediaFiles::choose(&img, local, uefi, KernelAsked::Rescue);
            assert_eq!(m.kernel.0, PathBuf::from("/img/vmlinuz-rescue"));
            assert_eq!(m.kernel.1, "vmrescue-3333333333333333-vmlinuz-rescue");
            assert_eq!(m.initrd.0, PathBuf::from("/img/initramfs-rescue.cpio"));
            assert!(m.late.is_some());
            assert!(m.how.ends_with(entry), "{}", m.how);
        }
        // An image built before (no late disk beside the rescue kernel's core in a domain):
        // its initramfs with the late archive inside.
        let mut no_late = image(true);
        no_late.late_disk = None;
        let m = MediaFiles::choose(&no_late, true, false, KernelAsked::Rescue);
        assert_eq!(m.initrd.0, PathBuf::from("/img/initramfs-rescue-full.cpio"));
        assert_eq!(m.initrd.1, "vmrescue-4444444444444444-initrd-rescue.cpio");
        assert_eq!(m.late, None);
    }

    #[test]
    fn without_the_rescue_kernel_or_when_told_the_hosts_kernel_boots() {
        use KernelAsked::{Host, Rescue};
        for (img, host) in [(image(false), Rescue), (image(true), Host)] {
            let here = MediaFiles::choose(&img, true, false, host);
            assert_eq!(
                names(&here),
                (
                    "vmrescue-cccccccccccccccc-vmlinux",
                    "vmrescue-dddddddddddddddd-initrd.cpio"
                )
            );
            assert!(here.how.starts_with("host kernel 6.1.0-57-amd64"));
            let remote = MediaFiles::choose(&img, false, false, host);
            assert_eq!(
                names(&remote),
                (
                    "vmrescue-aaaaaaaaaaaaaaaa-vmlinuz",
                    "vmrescue-bbbbbbbbbbbbbbbb-initrd.img"
                )
            );
        }
        // An image whose rescue kernel predates the bzImage: its PVH ELF here on BIOS, the
        // host's kernel where only a bzImage boots.
        let mut old = image(true);
        old.rescue_bzimage = None;
        let m = MediaFiles::choose(&old, true, false, Rescue);
        assert!(m.how.ends_with("PVH entry"), "{}", m.how);
        let m = MediaFiles::choose(&old, true, true, Rescue);
        assert!(m.how.starts_with("host kernel"), "{}", m.how);
        // One without the late disk: no rescue kernel in a domain.
        let mut no_late = image(true);
        no_late.late_disk = None;
        no_late.rescue_initramfs_full = None;
        let m = MediaFiles::choose(&no_late, true, false, Rescue);
        assert!(m.how.starts_with("host kernel"), "{}", m.how);
        // The host's bzImage when told, even here on BIOS.
        let bz = MediaFiles::choose(&image(true), true, false, KernelAsked::HostBzimage);
        assert_eq!(bz.kernel.0, PathBuf::from("/img/vmlinuz"));
        assert!(bz.how.ends_with("bzImage"), "{}", bz.how);
    }
}
