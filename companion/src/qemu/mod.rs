//! Every QEMU the project starts, described by a typed builder and turned into an argument list
//! (pure). Disks go in through `-blockdev` JSON, so no path needs QEMU's comma escaping.

pub mod accel;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::qemu::accel::Accel;

pub use crate::host::diskimage::Format;

/// The QEMU binary: `$VMRESCUE_QEMU`, else `qemu-system-x86_64` from `PATH`.
pub fn binary() -> PathBuf {
    std::env::var_os("VMRESCUE_QEMU")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

/// The machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// i440fx: IDE for cdroms.
    Pc,
    /// q35: SATA (AHCI) for cdroms.
    Q35,
    /// No machine at all: no CPU runs, drives are opened and held but sit on no bus (a
    /// stand-in for a process that holds disk files open).
    None,
}

impl Machine {
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
            Machine::None => "none",
        }
    }
}

/// Firmware for a boot through a boot loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default BIOS.
    SeaBios,
    /// UEFI: read-only code and a writable variable store (always a copy made for this VM,
    /// never a guest's own file). `secure_boot` needs the Secure Boot build of the code (it
    /// runs in SMM, so the machine must be q35).
    Ovmf {
        code: PathBuf,
        vars: PathBuf,
        secure_boot: bool,
    },
    /// A raw BIOS image (`-bios`).
    Bios(PathBuf),
}

/// How the VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Direct kernel boot: no firmware work, the kernel command line is ours.
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
    /// Through firmware and the boot loader on a drive (see [`Drive::boot_index`]).
    Firmware(Firmware),
}

/// The bus a drive sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Virtio,
    /// IDE on `pc`, the built-in AHCI ports on `q35`.
    Ide,
    /// A virtio-scsi controller (added with the first such drive).
    Scsi,
    /// An NVMe controller of its own (a disk; its serial is the drive's, else `nvmeN`).
    Nvme,
}

/// A disk or a cdrom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Disk,
    Cdrom,
}

/// One drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub path: PathBuf,
    pub format: Format,
    pub read_only: bool,
    /// Open the backing chain a qcow2 header names: only when the operator named the format
    /// (see `diskimage`).
    pub follow_backing: bool,
    /// A block device rather than a file.
    pub block_device: bool,
    pub bus: Bus,
    pub media: Media,
    pub serial: Option<String>,
    /// Writes go to this qcow2 overlay (made beforehand, see `overlay_args`); the drive itself
    /// is opened read-only beneath it.
    pub overlay: Option<PathBuf>,
    /// Firmware boot order (1 first).
    pub boot_index: Option<u32>,
}

impl Drive {
    /// A writable virtio disk of the given format.
    pub fn new(path: impl Into<PathBuf>, format: Format) -> Self {
        Drive {
            path: path.into(),
            format,
            read_only: false,
            follow_backing: false,
            block_device: false,
            bus: Bus::Virtio,
            media: Media::Disk,
            serial: None,
            overlay: None,
            boot_index: None,
        }
    }

    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }

    pub fn follow_backing(mut self, follow: bool) -> Self {
        self.follow_backing = follow;
        self
    }

    pub fn block_device(mut self, block: bool) -> Self {
        self.block_device = block;
        self
    }

    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = bus;
        self
    }

    /// A read-only cdrom.
    pub fn cdrom(mut self) -> Self {
        self.media = Media::Cdrom;
        self.read_only = true;
        self
    }

    pub fn serial(mut self, serial: impl Into<String>) -> Self {
        self.serial = Some(serial.into());
        self
    }

    pub fn overlay(mut self, overlay: impl Into<PathBuf>) -> Self {
        self.overlay = Some(overlay.into());
        self
    }

    pub fn boot_index(mut self, index: u32) -> Self {
        self.boot_index = Some(index);
        self
    }

    /// The node name and `-blockdev` JSON of this drive as the `index`th.
    pub fn blockdev(&self, index: usize) -> (String, String) {
        let node = format!("disk{index}");
        let base_ro = self.read_only || self.overlay.is_some();
        let file = json!({
            "driver": if self.block_device { "host_device" } else { "file" },
            "filename": self.path.to_string_lossy(),
            "read-only": base_ro,
        });
        let mut base = json!({
            "driver": self.format.as_str(),
            "read-only": base_ro,
            "file": file,
        });
        if self.format == Format::Qcow2 && !self.follow_backing {
            // Even if the header changed after it was checked, QEMU opens no other file.
            base["backing"] = Value::Null;
        }
        let spec = match &self.overlay {
            None => {
                base["node-name"] = json!(node);
                base
            }
            Some(overlay) => json!({
                "node-name": node,
                "driver": "qcow2",
                "read-only": self.read_only,
                "file": {"driver": "file", "filename": overlay.to_string_lossy()},
                "backing": base,
            }),
        };
        (node, spec.to_string())
    }
}

/// The `qemu-img create` arguments for an overlay of `drive` at `overlay` (its backing named
/// with its format, so qemu-img never probes it).
pub fn overlay_args(drive: &Drive, overlay: &Path) -> Vec<OsString> {
    vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-F".into(),
        drive.format.as_str().into(),
        "-b".into(),
        drive.path.clone().into(),
        overlay.into(),
    ]
}

/// As [`overlay_args`], but qemu-img does not open the drive at all (`-u`, the size given):
/// a guest-written qcow2 header's backing file is never followed.
pub fn overlay_args_unopened(drive: &Drive, overlay: &Path, virtual_size: u64) -> Vec<OsString> {
    let mut args = overlay_args(drive, overlay);
    args.insert(4, "-u".into());
    args.push(virtual_size.to_string().into());
    args
}

/// The virtio-serial channel to the agent: a unix socket QEMU listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub socket: PathBuf,
    pub name: String,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub name: String,
    pub machine: Machine,
    pub accel: Accel,
    pub memory_mib: u32,
    pub boot: Boot,
    pub drives: Vec<Drive>,
    pub channel: Option<Channel>,
    /// The serial console, written to this file.
    pub console_log: Option<PathBuf>,
    /// The serial console also on a unix socket QEMU listens on, for typing at it (its output
    /// still goes to [`Config::console_log`]).
    pub console_socket: Option<PathBuf>,
    /// An `isa-debug-exit` device at 0xf4 (the guest sets QEMU's exit status).
    pub debug_exit: bool,
    /// A guest reset ends QEMU instead of rebooting.
    pub no_reboot: bool,
    /// Start with the CPUs stopped (`-S`).
    pub paused: bool,
}

impl Config {
    /// A q35 VM with 512 MiB, no drives, no console, ending on reset.
    pub fn new(name: impl Into<String>, accel: Accel, boot: Boot) -> Self {
        Config {
            name: name.into(),
            machine: Machine::Q35,
            accel,
            memory_mib: 512,
            boot,
            drives: Vec::new(),
            channel: None,
            console_log: None,
            console_socket: None,
            debug_exit: false,
            no_reboot: true,
            paused: false,
        }
    }

    pub fn machine(mut self, m: Machine) -> Self {
        self.machine = m;
        self
    }

    pub fn memory(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    pub fn drive(mut self, d: Drive) -> Self {
        self.drives.push(d);
        self
    }

    pub fn drives(mut self, ds: impl IntoIterator<Item = Drive>) -> Self {
        self.drives.extend(ds);
        self
    }

    pub fn channel(mut self, socket: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        self.channel = Some(Channel {
            socket: socket.into(),
            name: name.into(),
        });
        self
    }

    pub fn console_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.console_log = Some(path.into());
        self
    }

    /// Also serves the console on the unix socket `path` (with a console log only).
    pub fn console_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.console_socket = Some(path.into());
        self
    }

    pub fn debug_exit(mut self) -> Self {
        self.debug_exit = true;
        self
    }

    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }

    /// Arguments after the QEMU binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        // libvirt's form, which tools that find a domain's QEMU process read.
        push(&["-name", &format!("guest={}", self.name.replace(',', ",,"))]);
        let mut machine = self.machine.as_str().to_owned();
        if let Boot::Firmware(Firmware::Ovmf { secure_boot, .. }) = self.boot {
            machine.push_str(",pflash0=ovmf-code,pflash1=ovmf-vars");
            if secure_boot {
                machine.push_str(",smm=on");
            }
        }
        push(&["-machine", &machine, "-accel", self.accel.as_str()]);
        if let Boot::Firmware(Firmware::Ovmf {
            secure_boot: true, ..
        }) = self.boot
        {
            // Only SMM code may write the variable store: what makes Secure Boot enforceable.
            push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
        }
        if self.machine != Machine::None {
            let cpu = if self.accel == Accel::Kvm {
                "host"
            } else {
                "max"
            };
            push(&["-cpu", cpu, "-smp", "1"]);
        }
        push(&["-m", &self.memory_mib.to_string()]);
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        if self.no_reboot {
            push(&["-no-reboot"]);
        }
        if self.paused {
            push(&["-S"]);
        }
        self.boot_args(&mut a);
        if let Some(log) = &self.console_log {
            a.push("-chardev".into());
            match &self.console_socket {
                None => a.push(with_path("file,id=console,path=", log)),
                Some(sock) => {
                    let mut c = with_path("socket,id=console,server=on,wait=off,path=", sock);
                    c.push(with_path(",logfile=", log));
                    a.push(c);
                }
            }
            a.push("-serial".into());
            a.push("chardev:console".into());
        }
        if let Some(ch) = &self.channel {
            a.push("-device".into());
            a.push("virtio-serial-pci,id=vser0".into());
            a.push("-chardev".into());
            a.push(with_path(
                "socket,id=agent,server=on,wait=off,path=",
                &ch.socket,
            ));
            a.push("-device".into());
            a.push(format!("virtserialport,bus=vser0.0,chardev=agent,name={}", ch.name).into());
        }
        let mut ide = 0usize;
        if self.machine != Machine::None && self.drives.iter().any(|d| d.bus == Bus::Scsi) {
            a.push("-device".into());
            a.push("virtio-scsi-pci,id=scsi0".into());
        }
        for (i, d) in self.drives.iter().enumerate() {
            let (node, spec) = d.blockdev(i);
            a.push("-blockdev".into());
            a.push(spec.into());
            if self.machine == Machine::None {
                continue;
            }
            let mut dev = match (d.bus, d.media) {
                (Bus::Virtio, _) => format!("virtio-blk-pci,drive={node}"),
                (Bus::Scsi, Media::Cdrom) => format!("scsi-cd,drive={node},bus=scsi0.0"),
                (Bus::Scsi, Media::Disk) => format!("scsi-hd,drive={node},bus=scsi0.0"),
                // QEMU's NVMe controller requires a serial.
                (Bus::Nvme, _) => format!(
                    "nvme,drive={node},serial={}",
                    d.serial.clone().unwrap_or_else(|| format!("nvme{i}"))
                ),
                (Bus::Ide, media) => {
                    let kind = if media == Media::Cdrom {
                        "ide-cd"
                    } else {
                        "ide-hd"
                    };
                    // pc: two IDE buses with two units each; q35: six AHCI ports.
                    let at = match self.machine {
                        Machine::Pc => format!("bus=ide.{},unit={}", ide / 2, ide % 2),
                        _ => format!("bus=ide.{ide}"),
                    };
                    ide += 1;
                    format!("{kind},drive={node},{at}")
                }
            };
            if let (Some(s), false) = (&d.serial, d.bus == Bus::Nvme) {
                dev.push_str(&format!(",serial={s}"));
            }
            if let Some(b) = d.boot_index {
                dev.push_str(&format!(",bootindex={b}"));
            }
            a.push("-device".into());
            a.push(dev.into());
        }
        if self.debug_exit {
            a.push("-device".into());
            a.push("isa-debug-exit,iobase=0xf4,iosize=0x04".into());
        }
        a
    }

    fn boot_args(&self, a: &mut Vec<OsString>) {
        match &self.boot {
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                a.push("-kernel".into());
                a.push(kernel.into());
                if let Some(i) = initrd {
                    a.push("-initrd".into());
                    a.push(i.into());
                }
                a.push("-append".into());
                a.push(cmdline.into());
            }
            Boot::Firmware(Firmware::SeaBios) => {}
            Boot::Firmware(Firmware::Bios(bios)) => {
                a.push("-bios".into());
                a.push(bios.into());
            }
            Boot::Firmware(Firmware::Ovmf { code, vars, .. }) => {
                for (node, path, ro) in [("ovmf-code", code, true), ("ovmf-vars", vars, false)] {
                    a.push("-blockdev".into());
                    a.push(
                        json!({
                            "node-name": node,
                            "driver": "file",
                            "filename": path.to_string_lossy(),
                            "read-only": ro,
                        })
                        .to_string()
                        .into(),
                    );
                }
            }
        }
    }
}

fn with_path(prefix: &str, p: &Path) -> OsString {
    // A chardev option value: commas doubled so a path cannot add options.
    let mut s = OsString::from(prefix);
    s.push(p.to_string_lossy().replace(',', ",,"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rescue_like(drives: Vec<Drive>) -> Config {
        Config::new(
            "vmrescue-test",
            Accel::Tcg,
            Boot::Kernel {
                kernel: "/img/vmlinuz".into(),
                initrd: Some("/img/initramfs.img".into()),
                cmdline: "console=ttyS0".into(),
            },
        )
        .drives(drives)
        .console_log("/run/x/console.log")
        .channel("/run/x/agent.sock", "org.vmrescue.agent.0")
    }

    fn strings(c: &Config) -> Vec<String> {
        c.args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn disks_in_order_with_json_blockdev_and_read_only_flag() {
        let c = rescue_like(vec![
            Drive::new("/var/a,b.img", Format::Raw)
                .read_only(true)
                .serial("vmrescue-disk0"),
            Drive::new("/var/c.qcow2", Format::Qcow2),
        ]);
        let args = strings(&c);
        let blockdevs = after(&args, "-blockdev");
        assert_eq!(blockdevs.len(), 2);
        let first = json(blockdevs[0]);
        assert_eq!(first["file"]["filename"], "/var/a,b.img");
        assert_eq!(first["read-only"], true);
        assert_eq!(first["driver"], "raw");
        assert!(first.get("backing").is_none());
        let second = json(blockdevs[1]);
        assert_eq!(second["driver"], "qcow2");
        assert_eq!(second["read-only"], false);
        assert!(
            second["backing"].is_null() && second.get("backing").is_some(),
            "a detected qcow2 opens no backing file: {second}"
        );
        let devices = after(&args, "-device");
        assert!(devices.contains(&"virtio-blk-pci,drive=disk0,serial=vmrescue-disk0"));
        assert!(devices.contains(&"virtio-blk-pci,drive=disk1"));
        assert!(
            devices.contains(&"virtserialport,bus=vser0.0,chardev=agent,name=org.vmrescue.agent.0")
        );
    }

    #[test]
    fn boots_our_kernel_without_rebooting() {
        let args = strings(&rescue_like(vec![]));
        assert_eq!(after(&args, "-kernel"), ["/img/vmlinuz"]);
        assert_eq!(after(&args, "-initrd"), ["/img/initramfs.img"]);
        assert_eq!(after(&args, "-append"), ["console=ttyS0"]);
        assert_eq!(after(&args, "-accel"), ["tcg"]);
        assert_eq!(after(&args, "-cpu"), ["max"]);
        assert!(args.contains(&"-no-reboot".to_owned()));
        assert!(args.contains(&"-nodefaults".to_owned()));
        assert!(after(&args, "-chardev")
            .iter()
            .any(|c| c.starts_with("socket,") && c.ends_with("path=/run/x/agent.sock")));
    }

    #[test]
    fn chardev_paths_cannot_add_options() {
        let c = rescue_like(vec![]).console_log("/run/a,server=on/console.log");
        let args = strings(&c);
        assert!(after(&args, "-chardev")
            .contains(&"file,id=console,path=/run/a,,server=on/console.log"));
    }

    #[test]
    fn a_console_socket_keeps_the_log() {
        let c = rescue_like(vec![])
            .console_log("/run/x/console.log")
            .console_socket("/run/x/console.sock");
        let args = strings(&c);
        assert!(after(&args, "-chardev").contains(
            &"socket,id=console,server=on,wait=off,path=/run/x/console.sock,logfile=/run/x/console.log"
        ));
        assert_eq!(after(&args, "-serial"), ["chardev:console"]);
    }

    #[test]
    fn overlay_keeps_the_drive_read_only_beneath() {
        let d = Drive::new("/guest/root.img", Format::Raw)
            .overlay("/run/x/root.overlay.qcow2")
            .block_device(true);
        let (node, spec) = d.blockdev(3);
        let v = json(&spec);
        assert_eq!(node, "disk3");
        assert_eq!(v["node-name"], "disk3");
        assert_eq!(v["driver"], "qcow2");
        assert_eq!(v["read-only"], false);
        assert_eq!(v["file"]["filename"], "/run/x/root.overlay.qcow2");
        assert_eq!(v["backing"]["driver"], "raw");
        assert_eq!(v["backing"]["read-only"], true);
        assert_eq!(v["backing"]["file"]["driver"], "host_device");
        assert_eq!(v["backing"]["file"]["read-only"], true);
        let unopened: Vec<String> = overlay_args_unopened(&d, Path::new("/run/x/o.qcow2"), 4096)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&unopened[..5], ["create", "-q", "-f", "qcow2", "-u"]);
        assert_eq!(unopened.last().map(String::as_str), Some("4096"));
        let args: Vec<String> = overlay_args(&d, Path::new("/run/x/o.qcow2"))
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                "/guest/root.img",
                "/run/x/o.qcow2"
            ]
        );
    }

    #[test]
    fn a_cdrom_on_virtio_scsi_gets_one_controller() {
        let cfg = Config::new("t", Accel::Tcg, Boot::Firmware(Firmware::SeaBios)).drives(vec![
            Drive::new("/g.img", Format::Raw),
            Drive::new("/settings.iso", Format::Raw)
                .bus(Bus::Scsi)
                .cdrom(),
        ]);
        let args = strings(&cfg);
        assert_eq!(
            after(&args, "-device"),
            [
                "virtio-scsi-pci,id=scsi0",
                "virtio-blk-pci,drive=disk0",
                "scsi-cd,drive=disk1,bus=scsi0.0"
            ]
        );
    }

    #[test]
    fn an_nvme_disk_gets_a_controller_with_its_serial() {
        let cfg = Config::new("t", Accel::Tcg, Boot::Firmware(Firmware::SeaBios)).drives(vec![
            Drive::new("/g.img", Format::Raw)
                .bus(Bus::Nvme)
                .serial("vol-1"),
            Drive::new("/h.img", Format::Raw).bus(Bus::Nvme),
        ]);
        let args = strings(&cfg);
        assert_eq!(
            after(&args, "-device"),
            [
                "nvme,drive=disk0,serial=vol-1",
                "nvme,drive=disk1,serial=nvme1"
            ]
        );
    }

    #[test]
    fn cdroms_and_disks_on_ide_and_sata_with_boot_order() {
        let drives = vec![
            Drive::new("/iso/vmrescue.iso", Format::Raw)
                .bus(Bus::Ide)
                .cdrom()
                .boot_index(1),
            Drive::new("/g.img", Format::Raw).bus(Bus::Ide),
            Drive::new("/h.img", Format::Raw).bus(Bus::Ide),
        ];
        let fw = Boot::Firmware(Firmware::SeaBios);
        let pc = Config::new("t", Accel::Tcg, fw.clone())
            .machine(Machine::Pc)
            .drives(drives.clone());
        let args = strings(&pc);
        let devices = after(&args, "-device");
        assert_eq!(
            devices,
            [
                "ide-cd,drive=disk0,bus=ide.0,unit=0,bootindex=1",
                "ide-hd,drive=disk1,bus=ide.0,unit=1",
                "ide-hd,drive=disk2,bus=ide.1,unit=0"
            ]
        );
        assert!(json(after(&args, "-blockdev")[0])["read-only"] == true);
        assert!(after(&args, "-kernel").is_empty());
        let q35 = Config::new("t", Accel::Tcg, fw).drives(drives);
        let args = strings(&q35);
        assert_eq!(
            after(&args, "-device")[..2],
            [
                "ide-cd,drive=disk0,bus=ide.0,bootindex=1",
                "ide-hd,drive=disk1,bus=ide.1"
            ]
        );
    }

    #[test]
    fn ovmf_uses_pflash_with_a_writable_vars_copy() {
        let c = Config::new(
            "t",
            Accel::Kvm,
            Boot::Firmware(Firmware::Ovmf {
                code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                vars: "/run/x/vars.fd".into(),
                secure_boot: false,
            }),
        );
        let args = strings(&c);
        assert_eq!(
            after(&args, "-machine"),
            ["q35,pflash0=ovmf-code,pflash1=ovmf-vars"]
        );
        assert_eq!(after(&args, "-cpu"), ["host"]);
        let b = after(&args, "-blockdev");
        assert_eq!(json(b[0])["read-only"], true);
        assert_eq!(json(b[1])["filename"], "/run/x/vars.fd");
        assert_eq!(json(b[1])["read-only"], false);
        assert!(after(&args, "-global").is_empty());
        let sb = Config::new(
            "t",
            Accel::Tcg,
            Boot::Firmware(Firmware::Ovmf {
                code: "/usr/share/OVMF/OVMF_CODE_4M.ms.fd".into(),
                vars: "/run/x/vars.fd".into(),
                secure_boot: true,
            }),
        );
        let args = strings(&sb);
        assert_eq!(
            after(&args, "-machine"),
            ["q35,pflash0=ovmf-code,pflash1=ovmf-vars,smm=on"]
        );
        assert_eq!(
            after(&args, "-global"),
            ["driver=cfi.pflash01,property=secure,value=on"]
        );
    }

    #[test]
    fn bios_probe_with_debug_exit() {
        let c = Config::new(
            "probe",
            Accel::Kvm,
            Boot::Firmware(Firmware::Bios("/t/p.bin".into())),
        )
        .machine(Machine::Pc)
        .debug_exit();
        let args = strings(&c);
        assert_eq!(after(&args, "-bios"), ["/t/p.bin"]);
        assert_eq!(
            after(&args, "-device"),
            ["isa-debug-exit,iobase=0xf4,iosize=0x04"]
        );
        assert!(after(&args, "-serial").is_empty());
    }

    #[test]
    fn a_machineless_holder_opens_drives_on_no_bus() {
        let c = Config::new("web,1", Accel::Tcg, Boot::Firmware(Firmware::SeaBios))
            .machine(Machine::None)
            .paused()
            .drive(Drive::new("/i/disk", Format::Qcow2).follow_backing(true));
        let args = strings(&c);
        assert_eq!(after(&args, "-name"), ["guest=web,,1"]);
        assert!(args.contains(&"-S".to_owned()));
        assert!(after(&args, "-cpu").is_empty() && after(&args, "-device").is_empty());
        let d = json(after(&args, "-blockdev")[0]);
        assert!(
            d.get("backing").is_none(),
            "the operator's chain is followed: {d}"
        );
    }
}
