//! The QEMU command line for a rescue boot, built from typed settings (pure), and disk format
//! detection. Disks go in through `-blockdev` JSON, so no path needs QEMU's comma escaping.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::accel::Accel;
use crate::kcmdline::Cmdline;

pub use crate::diskimage::Format;

#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub format: Format,
    pub read_only: bool,
    /// Open the backing chain a qcow2 header names: only when the operator named the format
    /// (see `diskimage`).
    pub follow_backing: bool,
}

/// Everything a rescue boot needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub accel: Accel,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: Cmdline,
    pub console_log: PathBuf,
    pub agent_socket: PathBuf,
    pub port_name: String,
    pub disks: Vec<Disk>,
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

fn path_arg(prefix: &str, p: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(p.as_os_str());
    s
}

/// The node name and JSON of a disk's `-blockdev`.
pub fn blockdev(index: usize, disk: &Disk) -> (String, String) {
    let node = format!("disk{index}");
    let file = json!({
        "driver": "file",
        "filename": disk.path.to_string_lossy(),
        "read-only": disk.read_only,
    });
    let mut spec = json!({
        "node-name": node,
        "driver": disk.format.as_str(),
        "read-only": disk.read_only,
        "file": file,
    });
    if disk.format == Format::Qcow2 && !disk.follow_backing {
        // Even if the header changed after it was checked, QEMU opens no other file.
        spec["backing"] = serde_json::Value::Null;
    }
    (node, spec.to_string())
}

impl Config {
    /// Arguments after the QEMU binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(os));
        push(&["-name", &self.name]);
        push(&["-machine", "q35", "-accel", self.accel.as_str()]);
        push(&[
            "-cpu",
            if self.accel == Accel::Kvm {
                "host"
            } else {
                "max"
            },
        ]);
        push(&["-m", &self.memory_mib.to_string(), "-smp", "1"]);
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        a.push(os("-kernel"));
        a.push(self.kernel.clone().into());
        a.push(os("-initrd"));
        a.push(self.initramfs.clone().into());
        a.push(os("-append"));
        a.push(os(self.cmdline.as_str()));
        a.push(os("-chardev"));
        a.push(path_arg("file,id=console,path=", &self.console_log));
        a.push(os("-serial"));
        a.push(os("chardev:console"));
        a.push(os("-device"));
        a.push(os("virtio-serial-pci,id=vser0"));
        a.push(os("-chardev"));
        a.push(path_arg(
            "socket,id=agent,server=on,wait=off,path=",
            &self.agent_socket,
        ));
        a.push(os("-device"));
        a.push(os(format!(
            "virtserialport,bus=vser0.0,chardev=agent,name={}",
            self.port_name
        )));
        for (i, d) in self.disks.iter().enumerate() {
            let (node, spec) = blockdev(i, d);
            a.push(os("-blockdev"));
            a.push(os(spec));
            a.push(os("-device"));
            a.push(os(format!(
                "virtio-blk-pci,drive={node},serial=vmrescue-disk{i}"
            )));
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(disks: Vec<Disk>) -> Config {
        let mut cmdline = Cmdline::new();
        cmdline.set("console", "ttyS0").unwrap();
        Config {
            name: "vmrescue-test".into(),
            accel: Accel::Tcg,
            memory_mib: 512,
            kernel: "/img/vmlinuz".into(),
            initramfs: "/img/initramfs.img".into(),
            cmdline,
            console_log: "/run/x/console.log".into(),
            agent_socket: "/run/x/agent.sock".into(),
            port_name: "org.vmrescue.agent.0".into(),
            disks,
        }
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

    #[test]
    fn disks_in_order_with_json_blockdev_and_read_only_flag() {
        let c = config(vec![
            Disk {
                path: "/var/a,b.img".into(),
                format: Format::Raw,
                read_only: true,
                follow_backing: false,
            },
            Disk {
                path: "/var/c.qcow2".into(),
                format: Format::Qcow2,
                read_only: false,
                follow_backing: false,
            },
        ]);
        let args = strings(&c);
        let blockdevs = after(&args, "-blockdev");
        assert_eq!(blockdevs.len(), 2);
        let first: serde_json::Value = serde_json::from_str(blockdevs[0]).unwrap();
        assert_eq!(first["file"]["filename"], "/var/a,b.img");
        assert_eq!(first["read-only"], true);
        assert_eq!(first["driver"], "raw");
        let second: serde_json::Value = serde_json::from_str(blockdevs[1]).unwrap();
        assert_eq!(second["driver"], "qcow2");
        assert!(
            second["backing"].is_null() && second.get("backing").is_some(),
            "a detected qcow2 opens no backing file: {second}"
        );
        assert!(first.get("backing").is_none());
        assert_eq!(second["read-only"], false);
        let devices = after(&args, "-device");
        assert!(devices.contains(&"virtio-blk-pci,drive=disk0,serial=vmrescue-disk0"));
        assert!(
            devices.contains(&"virtserialport,bus=vser0.0,chardev=agent,name=org.vmrescue.agent.0")
        );
    }

    #[test]
    fn boots_our_kernel_without_rebooting() {
        let args = strings(&config(vec![]));
        assert_eq!(after(&args, "-kernel"), ["/img/vmlinuz"]);
        assert_eq!(after(&args, "-append"), ["console=ttyS0"]);
        assert_eq!(after(&args, "-accel"), ["tcg"]);
        assert!(args.contains(&"-no-reboot".to_owned()));
        assert!(args.contains(&"-nodefaults".to_owned()));
        assert!(after(&args, "-chardev")
            .iter()
            .any(|c| c.starts_with("socket,") && c.ends_with("path=/run/x/agent.sock")));
    }
}
