//! The rescue media booted for real through their boot loaders, as an operator uses them:
//! `vmrescue.iso` as a BIOS cdrom (pc/IDE, q35/SATA), as a UEFI cdrom, as a plain disk first
//! in line (nova's legacy rescue: medium `vda`, guest `vdb`, no channel), and
//! `vmrescue-disk.qcow2` as a disk under BIOS and under UEFI with Secure Boot enforcing. Each
//! repairs a broken guest disk; the report read back from the console log equals what the
//! channel sent; check-mode media write nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmrescue_companion::qemu::accel::Accel;
use vmrescue_companion::qemu::{self, Boot, Bus, Config, Drive, Firmware, Format, Machine};
use vmrescue_companion::session;
use vmrescue_companion::session::progress::Quiet;
use vmrescue_companion::vm::QemuVm;
use vmrescue_protocol::{console, Mode, Outcome, Report};
use vmrescue_tests::fixture;
use vmrescue_tests::harness;

const TIMEOUT: Duration = vmrescue_tests::budgets::RESCUE;
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const OVMF_CODE_SB: &str = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd";
const OVMF_VARS_SB: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

#[derive(Clone, Copy)]
enum Fw {
    Bios,
    Uefi,
    SecureBoot,
}

#[derive(Clone, Copy)]
enum Medium {
    /// The ISO as a cdrom on IDE (pc) or SATA (q35).
    IsoCdrom,
    /// The ISO as the first virtio disk.
    IsoDisk,
    /// The qcow2 disk image as the first virtio disk (on a throw-away overlay).
    DiskImage,
}

struct Booted {
    /// The report the channel carried (when there was one).
    channel: Option<Report>,
    /// The report taken back from the console log.
    console: Report,
}

fn firmware(fw: Fw, dir: &Path) -> Boot {
    let vars = dir.join("vars.fd");
    let (code, template, secure_boot) = match fw {
        Fw::Bios => return Boot::Firmware(Firmware::SeaBios),
        Fw::Uefi => (OVMF_CODE, OVMF_VARS, false),
        Fw::SecureBoot => (OVMF_CODE_SB, OVMF_VARS_SB, true),
    };
    std::fs::copy(template, &vars).unwrap();
    Boot::Firmware(Firmware::Ovmf {
        code: code.into(),
        vars,
        secure_boot,
    })
}

/// Boots `medium` of the image baked for `mode` with `guest` behind it; `channel` adds the
/// agent's virtio-serial port (what an ISO attached by hand or by nova does not have).
fn boot(
    mode: Mode,
    machine: Machine,
    fw: Fw,
    medium: Medium,
    guest: &Path,
    channel: bool,
) -> Booted {
    boot_with(mode, machine, fw, medium, guest, channel, None)
}

/// [`boot`] with more drives after the guest's (a config drive).
fn boot_with(
    mode: Mode,
    machine: Machine,
    fw: Fw,
    medium: Medium,
    guest: &Path,
    channel: bool,
    extra: Option<Drive>,
) -> Booted {
    let image = harness::media_image(mode);
    let dir = tempfile::tempdir().unwrap();
    let medium_drive = match medium {
        Medium::IsoCdrom => Drive::new(image.iso.clone().unwrap(), Format::Raw)
            .bus(Bus::Ide)
            .cdrom(),
        Medium::IsoDisk => Drive::new(image.iso.clone().unwrap(), Format::Raw).read_only(true),
        Medium::DiskImage => {
            let d = Drive::new(image.disk_image.clone().unwrap(), Format::Qcow2);
            let overlay = dir.path().join("medium.qcow2");
            let out = std::process::Command::new("qemu-img")
                .args(qemu::overlay_args(&d, &overlay))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            d.overlay(overlay)
        }
    };
    let console_log = dir.path().join("console.log");
    let mut config = Config::new("vmrescue-media-test", Accel::Tcg, firmware(fw, dir.path()))
        .machine(machine)
        .memory(1024)
        .console_log(&console_log)
        .drive(medium_drive.boot_index(1))
        // Writable even in check mode: only the agent keeps a check from writing.
        .drive(Drive::new(guest, Format::Raw))
        .drives(extra);
    if channel {
        config = config.channel(
            dir.path().join("agent.sock"),
            vmrescue_protocol::DEFAULT_PORT_NAME,
        );
    }
    let mut vm = QemuVm::new(qemu::binary(), config, dir.path().join("qemu.log"));
    let result = session::run(&mut vm, TIMEOUT, &mut Quiet);
    drop(vm);
    let log = std::fs::read(&console_log).unwrap_or_default();
    let report = result.unwrap_or_else(|e| {
        panic!(
            "{e}\nconsole:\n{}",
            String::from_utf8_lossy(&log[log.len().saturating_sub(3000)..])
        )
    });
    let from_console = console::last_report(&log).expect("a verified report in the console log");
    Booted {
        channel: channel.then_some(report),
        console: from_console,
    }
}

fn broken(dir: &Path) -> (PathBuf, std::collections::BTreeMap<String, String>) {
    let d = fixture::field_failure(&dir.join("guest.img")).unwrap();
    (d.image, d.sums)
}

/// The guest was repaired, as the report says and the host's own e2fsck agrees.
fn assert_repaired(b: &Booted, guest: &Path) {
    if let Some(ch) = &b.channel {
        assert_eq!(
            ch, &b.console,
            "the console log's report differs from the channel's"
        );
    }
    assert_eq!(
        b.console.outcome,
        Outcome::Repaired,
        "{:?}",
        b.console.warnings
    );
    assert_eq!(b.console.mode, Mode::Repair);
    // Only the guest's disk is taken for the guest's: the medium, where the rescue sees it,
    // is recognised by its marker.
    let unmarked: Vec<_> = b
        .console
        .disks
        .iter()
        .filter(|d| !d.rescue_medium)
        .collect();
    assert_eq!(unmarked.len(), 1, "{:?}", b.console.disks);
    assert_eq!(fixture::host_e2fsck(guest).unwrap(), 0);
}

/// Boots `medium` of the repair-baked media with a freshly broken guest and checks the guest was
/// repaired; the boot, for more assertions.
fn repairs(machine: Machine, fw: Fw, medium: Medium, channel: bool) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let (guest, _) = broken(dir.path());
    let b = boot(Mode::Repair, machine, fw, medium, &guest, channel);
    assert_repaired(&b, &guest);
    b
}

fn firmware_of(b: &Booted) -> (String, bool) {
    let fw = b
        .console
        .firmware
        .clone()
        .expect("the report says how it booted");
    (fw.kind.to_string(), fw.secure_boot)
}

/// Whether the rescue kernel booted (else Debian's kernel with its modules).
fn rescue_kernel_booted(b: &Booted) -> bool {
    b.console.kernel.ends_with("-vmrescue")
}

#[test]
fn iso_as_a_bios_cdrom_on_pc_ide() {
    let b = repairs(Machine::Pc, Fw::Bios, Medium::IsoCdrom, true);
    assert_eq!(firmware_of(&b), ("bios".into(), false));
    // The media carry the rescue kernel: the menu boots it.
    assert!(rescue_kernel_booted(&b), "{}", b.console.kernel);
}

#[test]
fn iso_as_a_bios_cdrom_on_q35_sata() {
    repairs(Machine::Q35, Fw::Bios, Medium::IsoCdrom, true);
}

#[test]
fn iso_as_a_uefi_cdrom_on_q35() {
    let b = repairs(Machine::Q35, Fw::Uefi, Medium::IsoCdrom, true);
    assert_eq!(firmware_of(&b), ("uefi".into(), false));
    // Without Secure Boot, GRUB starts the rescue kernel's EFI stub.
    assert!(rescue_kernel_booted(&b), "{}", b.console.kernel);
}

#[test]
fn the_isos_rescue_kernel_reaches_a_data_disk_on_nvme() {
    // The rescue kernel has the NVMe driver built in (libvirt 11.3 has no NVMe disk bus; an
    // NVMe volume reaches a guest as a passed-through controller, or by QEMU's own device).
    let dir = tempfile::tempdir().unwrap();
    let (guest, _) = broken(dir.path());
    let data = dir.path().join("nvme.img");
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("records.txt"), "kept\n").unwrap();
    fixture::mkfs_ext4(&data, 32, "nvme-data", tree.path()).unwrap();
    fixture::debugfs_write(&data, &["ssv state 2", "ssv error_count 1"]).unwrap();
    let nvme = Drive::new(&data, Format::Raw)
        .bus(Bus::Nvme)
        .serial("vol-nvme");
    let b = boot_with(
        Mode::Repair,
        Machine::Q35,
        Fw::Bios,
        Medium::IsoCdrom,
        &guest,
        true,
        Some(nvme),
    );
    assert!(rescue_kernel_booted(&b), "{}", b.console.kernel);
    assert_eq!(
        b.console.outcome,
        Outcome::Repaired,
        "{:?}",
        b.console.warnings
    );
    let nvme_disk = b.console.disks.iter().find(|d| d.name.starts_with("nvme"));
    assert_eq!(
        nvme_disk.and_then(|d| d.serial.as_deref()),
        Some("vol-nvme"),
        "{:?}",
        b.console.disks
    );
    assert_eq!(
        fixture::host_e2fsck(&data).unwrap(),
        0,
        "the NVMe disk repaired"
    );
    assert_eq!(
        fixture::read_in_image(&data, "/records.txt")
            .unwrap()
            .as_deref(),
        Some(&b"kept\n"[..])
    );
}

#[test]
fn iso_as_the_first_disk_like_nova_legacy_rescue_under_bios_and_uefi() {
    for (machine, fw) in [(Machine::Pc, Fw::Bios), (Machine::Q35, Fw::Uefi)] {
        let b = repairs(machine, fw, Medium::IsoDisk, false);
        // The guest is the second disk, found by evidence, not by order.
        let root = b.console.os.as_ref().and_then(|o| o.root_device.clone());
        assert_eq!(root.as_deref(), Some("/dev/vdb"));
    }
}

#[test]
fn disk_image_under_bios() {
    repairs(Machine::Pc, Fw::Bios, Medium::DiskImage, true);
}

#[test]
fn the_rescue_kernel_takes_the_late_tools_from_the_medium_it_booted() {
    // The media's rescue kernel boots the core initramfs: XFS's checker is in the late archive,
    // which the agent reads from the medium itself (the ISO's filesystem on a cdrom, the disk
    // image's FAT partition), checked against the sum the core names.
    for medium in [Medium::IsoCdrom, Medium::DiskImage] {
        let dir = tempfile::tempdir().unwrap();
        let (guest, _) = broken(dir.path());
        let xfs = dir.path().join("xfs.img");
        vmrescue_tests::crash::mkfs_xfs(&xfs, vmrescue_tests::crash::XFS_SIZE_MIB, "data").unwrap();
        let b = boot_with(
            Mode::Repair,
            Machine::Pc,
            Fw::Bios,
            medium,
            &guest,
            true,
            Some(Drive::new(&xfs, Format::Raw)),
        );
        assert!(rescue_kernel_booted(&b), "{}", b.console.kernel);
        let fs = b
            .console
            .filesystems
            .iter()
            .find(|f| f.fstype == "xfs")
            .unwrap_or_else(|| panic!("the XFS disk: {:?}", b.console.filesystems));
        assert_eq!(fs.fsck.tool, "xfs_repair", "{fs:?}");
        assert_eq!(
            fs.fsck.status,
            vmrescue_protocol::FsckStatus::Clean,
            "{fs:?}"
        );
        assert_eq!(
            b.console.outcome,
            Outcome::Repaired,
            "{:?}",
            b.console.warnings
        );
    }
}

#[test]
fn disk_image_under_uefi_with_secure_boot_enforcing() {
    let b = repairs(Machine::Q35, Fw::SecureBoot, Medium::DiskImage, false);
    assert_eq!(firmware_of(&b), ("uefi".into(), true));
    // Locked down, GRUB boots Debian's signed kernel (the rescue kernel is not signed).
    assert!(!rescue_kernel_booted(&b), "{}", b.console.kernel);
    assert_eq!(
        b.console.kernel,
        harness::media_image(Mode::Repair).manifest.kernel_version
    );
}

#[test]
fn check_mode_media_write_nothing_to_a_writable_guest_disk() {
    for (machine, fw, medium) in [
        (Machine::Pc, Fw::Bios, Medium::IsoCdrom),
        (Machine::Q35, Fw::Uefi, Medium::DiskImage),
        (Machine::Pc, Fw::Bios, Medium::IsoDisk),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (guest, _) = broken(dir.path());
        let before = fixture::sha256_file(&guest).unwrap();
        // Attached read-write: only the agent's check mode keeps it unchanged.
        let image = harness::media_image(Mode::Check);
        assert!(image
            .manifest
            .media
            .as_ref()
            .unwrap()
            .default_cmdline
            .contains("vmrescue.mode=check"));
        let b = boot(Mode::Check, machine, fw, medium, &guest, false);
        assert_eq!(b.console.mode, Mode::Check);
        assert_eq!(b.console.outcome, Outcome::Unrepaired);
        assert!(!b.console.plan.is_empty(), "check mode plans the fixes");
        assert_eq!(
            fixture::sha256_file(&guest).unwrap(),
            before,
            "check mode wrote to the guest"
        );
    }
}

/// An OpenStack config drive (ISO 9660, label `config-2`) whose server metadata holds `meta`.
fn config_drive(dir: &Path, meta: &str) -> PathBuf {
    let tree = dir.join("cd");
    std::fs::create_dir_all(tree.join("openstack/latest")).unwrap();
    std::fs::write(
        tree.join("openstack/latest/meta_data.json"),
        format!(
            r#"{{"uuid":"6b4f6d0e-1c52-4b8e-9a37-0c6f2f1d2a11","name":"web-1","meta":{meta}}}"#
        ),
    )
    .unwrap();
    let iso = dir.join("config.iso");
    let out = std::process::Command::new("xorriso")
        .args([
            "-as", "mkisofs", "-quiet", "-V", "config-2", "-R", "-J", "-o",
        ])
        .arg(&iso)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    iso
}

#[test]
fn a_config_drive_sets_the_mode_of_a_check_medium() {
    let dir = tempfile::tempdir().unwrap();
    let (guest, _) = broken(dir.path());
    let cd = config_drive(dir.path(), r#"{"vmrescue_mode":"repair","role":"db"}"#);
    // nova's legacy layout on pc: the medium first, the guest second, the config drive an IDE
    // cdrom.
    let b = boot_with(
        Mode::Check,
        Machine::Pc,
        Fw::Bios,
        Medium::IsoDisk,
        &guest,
        false,
        Some(Drive::new(cd, Format::Raw).bus(Bus::Ide).cdrom()),
    );
    assert_eq!(b.console.mode, Mode::Repair, "{:?}", b.console.warnings);
    assert_eq!(
        b.console.outcome,
        Outcome::Repaired,
        "{:?}",
        b.console.warnings
    );
    assert_eq!(fixture::host_e2fsck(&guest).unwrap(), 0);
}

#[test]
fn a_settings_drive_made_for_the_media_sets_the_mode_and_roots_password() {
    // `openssl passwd -6 -salt mediatest throwaway`.
    const HASH: &str = "$6$mediatest$qGY5fTFGUmmHxQArmVFFMBkJ1MsoHOrlvNRQQkYa.XosGHjOiIlxHsSXJJI5CllhC4Eq46bwQqQK4FRLx7aYV1";
    let dir = tempfile::tempdir().unwrap();
    let (guest, _) = broken(dir.path());
    let iso = dir.path().join("settings.iso");
    let out = std::process::Command::new(harness::vmrescue_bin().unwrap())
        .args([
            "image",
            "settings-drive",
            "--mode",
            "repair",
            "--root-password-hash",
            HASH,
        ])
        .arg("--out")
        .arg(&iso)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("repair mode") && !said.contains(HASH),
        "{said}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&iso).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "it holds a secret");
    // The check medium first (nova's legacy layout), the settings drive an IDE cdrom: no
    // channel, so the report comes back through the console.
    let b = boot_with(
        Mode::Check,
        Machine::Pc,
        Fw::Bios,
        Medium::IsoDisk,
        &guest,
        false,
        Some(Drive::new(&iso, Format::Raw).bus(Bus::Ide).cdrom()),
    );
    assert_eq!(b.console.mode, Mode::Repair, "{:?}", b.console.warnings);
    assert_eq!(
        b.console.outcome,
        Outcome::Repaired,
        "{:?}",
        b.console.warnings
    );
    assert!(b
        .console
        .changes
        .iter()
        .any(|c| c.path == "/etc/shadow" && c.detail.contains("root password set")));
    let shadow = fixture::read_in_image(&guest, "/etc/shadow")
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&shadow).starts_with(&format!("root:{HASH}:")),
        "{}",
        String::from_utf8_lossy(&shadow)
    );
    assert_eq!(fixture::host_e2fsck(&guest).unwrap(), 0);
}

#[test]
fn image_nova_prints_the_upload_and_rescue_commands_for_these_media() {
    let image = harness::media_image(Mode::Check);
    let out = std::process::Command::new(harness::vmrescue_bin().unwrap())
        .args(["image", "nova", "--json", "--image"])
        .arg(&image.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let argv = |i: usize| -> Vec<String> {
        v["images"][i]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let disk = argv(0);
    assert!(disk.contains(&image.disk_image.as_ref().unwrap().display().to_string()));
    for want in ["qcow2", "hw_rescue_device=disk", "hw_rescue_bus=virtio"] {
        assert!(disk.iter().any(|a| a == want), "{want} in {disk:?}");
    }
    let iso = argv(1);
    assert!(iso.iter().any(|a| a == "iso") && iso.iter().any(|a| a == "hw_rescue_device=cdrom"));
    assert!(argv(2).iter().any(|a| a == "hw_firmware_type=uefi"));
    let rescue = v["rescue"].to_string();
    assert!(
        rescue.contains("2.87") && rescue.contains("server"),
        "{rescue}"
    );
    assert!(v["report"]
        .as_str()
        .unwrap()
        .contains("vmrescue report --console-log -"));
    // Text form too; an image directory without media is a clear error.
    let text = std::process::Command::new(harness::vmrescue_bin().unwrap())
        .args(["image", "nova", "--image"])
        .arg(&image.dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("openstack server unrescue SERVER"));
    let none = std::process::Command::new(harness::vmrescue_bin().unwrap())
        .args(["image", "nova", "--image", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no rescue media"));
}
