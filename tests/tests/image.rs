//! The rescue image and the agent binary, checked against the real host kernel and tools.

use std::process::Command;

use vmrescue_image_builder as builder;
use vmrescue_tests::harness;

#[test]
fn agent_is_a_static_binary() {
    let agent = harness::agent().unwrap();
    let out = Command::new("file")
        .arg(&agent)
        .output()
        .expect("file(1) (scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("statically linked"), "{text}");
}

#[test]
fn same_inputs_give_the_same_bytes_and_epoch_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let build =
        |name: &str, mtime: u32| build_image(&dir.path().join(name), mtime, Vec::new(), None);
    let a = build("a", 1_700_000_000);
    let b = build("b", 1_700_000_000);
    let c = build("c", 1_600_000_000);
    let bytes = |x: &builder::Artefacts| std::fs::read(&x.initramfs).unwrap();
    assert_eq!(bytes(&a), bytes(&b));
    assert_ne!(bytes(&a), bytes(&c));
    // The archive's mtimes are the epoch given.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | cpio -itv --quiet 2>/dev/null | grep ' init$'",
            c.initramfs.display()
        ))
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("2020"), "mtime of /init: {line}");
    // Rebuilding in place replaces the image atomically and leaves no temporaries.
    let again = build("a", 1_700_000_000);
    assert_eq!(bytes(&again), bytes(&a));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".new-") || n.contains(".old-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn module_closure_follows_dep_and_softdep_of_the_real_kernel() {
    let a = harness::image();
    let m = &a.manifest.modules;
    let pos = |name: &str| {
        m.iter()
            .position(|p| p.rsplit('/').next().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in {m:?}"))
    };
    // ext4 needs jbd2, mbcache and crc16 (modules.dep) and crc32c (modules.softdep).
    for dep in ["jbd2.ko", "mbcache.ko", "crc16.ko", "crc32c_generic.ko"] {
        assert!(pos(dep) < pos("ext4.ko"), "{dep} must load before ext4");
    }
    // xfs needs libcrc32c, which wants crc32c first.
    assert!(pos("libcrc32c.ko") < pos("xfs.ko"));
    assert!(pos("crc32c_generic.ko") < pos("libcrc32c.ko"));
    assert!(pos("virtio_ring.ko") < pos("virtio_blk.ko"));
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("zcat {} | cpio -it --quiet", a.initramfs.display()))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    for want in [
        "init",
        "sbin/e2fsck",
        "dev/console",
        "etc/vmrescue/modules.load",
        "etc/vmrescue/modules.alias",
        "sbin/fsck.vfat",
        "lib/vmrescue/late.cpio.gz",
    ] {
        assert!(
            names.lines().any(|l| l == want),
            "{want} missing from the initramfs"
        );
    }
    let ext4 = a
        .manifest
        .modules
        .iter()
        .find(|m| m.ends_with("/ext4.ko"))
        .unwrap();
    assert!(
        names.lines().any(|l| l.ends_with(ext4.as_str())),
        "ext4 is in the initramfs itself"
    );
    // The dynamically linked checkers come with their loader and libraries in the late
    // archive, with the XFS module: nothing of it is unpacked at boot.
    let late_listing = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | cpio -i --quiet --to-stdout lib/vmrescue/late.cpio.gz | zcat | cpio -it --quiet",
            a.initramfs.display()
        ))
        .output()
        .unwrap();
    let late = String::from_utf8_lossy(&late_listing.stdout);
    let xfs = a
        .manifest
        .modules
        .iter()
        .find(|m| m.ends_with("/xfs.ko"))
        .unwrap();
    for want in [
        "bin/busybox",
        "sbin/xfs_repair",
        "sbin/fsck.fat",
        "sbin/btrfs",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libuuid.so.1",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("lib/modules/{}/{xfs}", a.manifest.kernel_version)])
    {
        assert!(late.lines().any(|l| l == want), "{want} not late:\n{late}");
        assert!(!names.lines().any(|l| l == want), "{want} unpacked at boot");
    }
    assert_eq!(
        a.manifest.late.len(),
        late.lines().count(),
        "the manifest lists the late files"
    );
    // The agent loads a driver when a device's modalias matches one of these, a filesystem's
    // module at its first mount: the aliases of what is carried are in the image.
    let unpacked = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | cpio -i --quiet --to-stdout etc/vmrescue/modules.alias",
            a.initramfs.display()
        ))
        .output()
        .unwrap();
    let aliases = String::from_utf8_lossy(&unpacked.stdout);
    for want in [
        "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci",
        "alias virtio:d00000002v* virtio_blk",
        "alias virtio:d00000003v* virtio_console",
        "alias fs-ext4 ext4",
        "alias fs-xfs xfs",
        "alias fs-iso9660 isofs",
    ] {
        assert!(
            aliases.lines().any(|l| l == want),
            "{want:?} not in:\n{aliases}"
        );
    }
    let mut all: Vec<&str> = names.lines().collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a path appears twice in the initramfs");
}

#[test]
fn accel_probe_boots_its_firmware_under_tcg() {
    // Auto-detection boots this firmware to decide whether KVM works; under TCG it must always
    // run to its exit, or detection could never say yes.
    use vmrescue_companion::qemu::accel::{works, Accel};
    let dir = tempfile::tempdir().unwrap();
    assert!(works(
        &vmrescue_companion::qemu::binary(),
        Accel::Tcg,
        dir.path()
    ));
}

#[test]
fn a_reference_etc_is_baked_where_the_agent_looks() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("ssh")).unwrap();
    std::fs::write(etc.join("hostname"), "golden\n").unwrap();
    std::fs::write(etc.join("ssh/sshd_config"), "PermitRootLogin no\n").unwrap();
    let a = build_image(
        &dir.path().join("img"),
        0,
        vmrescue_companion::boot::overlay::reference_entries(&etc).unwrap(),
        None,
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | cpio -i --to-stdout --quiet etc/vmrescue/reference-etc/ssh/sshd_config",
            a.initramfs.display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"PermitRootLogin no\n");
}

#[test]
fn media_are_reproducible_and_carry_the_marker_and_the_baked_default() {
    let dir = tempfile::tempdir().unwrap();
    let build = |name: &str, mtime: u32, mode: vmrescue_protocol::Mode| {
        let baked = vmrescue_protocol::params::Settings {
            mode,
            ..Default::default()
        };
        build_image(&dir.path().join(name), mtime, Vec::new(), Some(baked))
    };
    use vmrescue_protocol::Mode;
    let a = build("a", 1_700_000_000, Mode::Repair);
    let b = build("b", 1_700_000_000, Mode::Repair);
    let c = build("c", 1_600_000_000, Mode::Repair);
    let iso = |x: &builder::Artefacts| std::fs::read(x.iso.as_ref().unwrap()).unwrap();
    let disk = |x: &builder::Artefacts| std::fs::read(x.disk_image.as_ref().unwrap()).unwrap();
    assert!(iso(&a) == iso(&b), "same inputs, same ISO bytes");
    assert!(disk(&a) == disk(&b), "same inputs, same disk image bytes");
    assert!(iso(&a) != iso(&c), "SOURCE_DATE_EPOCH reaches the ISO");
    let m = a.manifest.media.clone().unwrap();
    assert!(
        m.default_cmdline.contains("vmrescue.mode=repair"),
        "{}",
        m.default_cmdline
    );
    assert_eq!(
        m.iso_sha256,
        vmrescue_protocol::digest::sha256_hex(&iso(&a))
    );
    // Both carry the rescue-medium marker, so discovery leaves them alone.
    let raw = dir.path().join("disk.raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(a.disk_image.as_ref().unwrap())
        .arg(&raw)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for image in [iso(&a), std::fs::read(&raw).unwrap()] {
        let at = vmrescue_discovery::medium::OFFSET as usize;
        let sector = &image[at..at + vmrescue_discovery::medium::SIZE];
        assert_eq!(
            vmrescue_discovery::medium::detect(sector).as_deref(),
            Some(m.build_id.as_str())
        );
    }
    // A check-mode build defaults to check.
    let d = build("d", 1_700_000_000, Mode::Check);
    assert!(d
        .manifest
        .media
        .unwrap()
        .default_cmdline
        .contains("vmrescue.mode=check"));
}

/// The image built from this host's kernel and the test agent into `out`.
fn build_image(
    out: &std::path::Path,
    mtime: u32,
    extra: Vec<vmrescue_image_builder::cpio::Entry>,
    media: Option<vmrescue_protocol::params::Settings>,
) -> builder::Artefacts {
    builder::build(&builder::Options {
        kernel: None,
        modules_dir: None,
        agent: harness::agent().unwrap(),
        out: out.to_owned(),
        mtime: Some(mtime),
        extra,
        media,
        rescue_kernel: None,
        host_kernel_files: false,
    })
    .unwrap()
}

#[test]
fn the_image_has_the_kernel_for_qemus_pvh_entry() {
    let a = harness::image();
    let vmlinux = a
        .vmlinux
        .as_ref()
        .unwrap_or_else(|| panic!("no vmlinux: {:?}", a.manifest.vmlinux_missing));
    let elf = std::fs::read(vmlinux).unwrap();
    assert!(vmrescue_image_builder::pvh::has_pvh_note(&elf));
    assert_eq!(
        a.manifest.vmlinux_sha256.as_deref(),
        Some(vmrescue_image_builder::sha256_hex(&elf).as_str())
    );
    // The same archive uncompressed, for the boots vmrescue starts itself.
    let cpio = std::fs::read(a.initramfs_cpio.as_ref().expect("initramfs.cpio")).unwrap();
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&a.initramfs).unwrap()),
        &mut inflated,
    )
    .unwrap();
    assert!(cpio == inflated, "initramfs.cpio is initramfs.img inflated");
    // The bzImage stays, for boot loaders and libvirt's direct kernel boot.
    let bz = std::fs::read(&a.kernel).unwrap();
    assert_eq!(&bz[0x202..0x206], b"HdrS");
}

/// The member names of a newc archive, as `cpio -it` lists them.
fn cpio_names(archive: &std::path::Path) -> String {
    let list = Command::new("cpio")
        .args(["-it", "--quiet", "-F"])
        .arg(archive)
        .output()
        .unwrap();
    String::from_utf8_lossy(&list.stdout).into_owned()
}

#[test]
fn the_rescue_kernel_has_its_drivers_built_in_and_its_own_initramfs() {
    let a = harness::image();
    let m = a.manifest.rescue_kernel.as_ref().expect("rescue kernel");
    let vmlinux = a.rescue_vmlinux.as_ref().expect("vmlinux-rescue");
    let elf = std::fs::read(vmlinux).unwrap();
    assert!(vmrescue_image_builder::pvh::has_pvh_note(&elf));
    assert_eq!(m.vmlinux_sha256, vmrescue_image_builder::sha256_hex(&elf));
    assert!(m.release.ends_with("-vmrescue"), "{}", m.release);
    // Built from the options: no module support, and every driver a rescue needs built in.
    let built = harness::rescue_kernel().unwrap();
    let config =
        std::fs::read_to_string(built.bzimage.with_file_name(".config")).expect("its .config");
    assert!(config.contains("# CONFIG_MODULES is not set"));
    assert_eq!(
        vmrescue_image_builder::rescue_kernel::missing_options(
            vmrescue_image_builder::rescue_kernel::CONFIG,
            &config
        ),
        Vec::<String>::new()
    );
    // Its initramfs is the core without the host kernel's modules, and names the late archive.
    let names = cpio_names(a.rescue_initramfs.as_ref().expect("initramfs-rescue.cpio"));
    assert!(names.lines().any(|l| l == "init"), "{names}");
    assert!(names.lines().any(|l| l == "sbin/e2fsck"), "{names}");
    assert!(
        names.lines().any(|l| l == "etc/vmrescue/late.sha256"),
        "{names}"
    );
    assert!(!names.contains(".ko"), "{names}");
    assert!(!names.contains("late.cpio.gz"), "{names}");
    // For libvirt domains: its bzImage, whose EFI stub a UEFI firmware starts (a PE image
    // behind the boot sector).
    let bz = std::fs::read(a.rescue_bzimage.as_ref().expect("vmlinuz-rescue")).unwrap();
    assert_eq!(
        m.bzimage_sha256.as_deref(),
        Some(vmrescue_image_builder::sha256_hex(&bz).as_str())
    );
    assert_eq!(&bz[..2], b"MZ", "EFI stub: a PE header");
    assert_eq!(
        &bz[0x202..0x206],
        b"HdrS",
        "and a Linux boot protocol header"
    );
    // Every boot of it takes the core and the late archive apart: no initramfs with the
    // archive inside is carried for it.
    assert!(a.rescue_initramfs_full.is_none());
    assert!(!a.dir.join(builder::RESCUE_INITRAMFS_FULL_FILE).exists());
    assert!(a.late_disk.as_ref().is_some_and(|p| p.is_file()));
}

#[test]
fn with_the_rescue_kernel_the_hosts_uncompressed_files_are_carried_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let build = |name: &str, host_kernel_files: bool| {
        builder::build(&builder::Options {
            kernel: None,
            modules_dir: None,
            agent: harness::agent().unwrap(),
            out: dir.path().join(name),
            mtime: Some(0),
            extra: Vec::new(),
            media: None,
            rescue_kernel: Some(harness::rescue_kernel().unwrap()),
            host_kernel_files,
        })
        .unwrap()
    };
    let slim = build("slim", false);
    for name in ["vmlinux", "initramfs.cpio", "initramfs-core.cpio"] {
        assert!(!slim.dir.join(name).exists(), "{name} carried unasked");
    }
    assert!(slim.vmlinux.is_none() && slim.initramfs_cpio.is_none());
    assert!(slim.initramfs_core.is_none());
    assert_eq!(
        slim.manifest.vmlinux_missing.as_deref(),
        Some(builder::NOT_CARRIED)
    );
    // What its boots take is all there: the rescue kernel's files, the late disk, and the
    // host's compressed pair (the media's, and a boot of the host's kernel when told).
    for p in [
        slim.rescue_vmlinux.as_ref(),
        slim.rescue_initramfs.as_ref(),
        slim.rescue_bzimage.as_ref(),
        slim.late_disk.as_ref(),
    ] {
        assert!(p.is_some_and(|p| p.is_file()), "{p:?}");
    }
    assert!(slim.kernel.is_file() && slim.initramfs.is_file());
    let full = build("full", true);
    assert!(full.vmlinux.is_some() && full.initramfs_cpio.is_some());
    assert!(full.initramfs_core.is_some());
    // The same archives either way: only which files are written differs.
    assert_eq!(
        slim.manifest.initramfs_sha256,
        full.manifest.initramfs_sha256
    );
}
