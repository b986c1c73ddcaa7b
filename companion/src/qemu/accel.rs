//! Which QEMU accelerator to use. KVM only when it really works: `/dev/kvm` can exist on a host
//! where KVM hangs or aborts (nested virtualisation without VMX), so auto-detection boots a
//! 64 KiB firmware that does nothing but write to QEMU's debug-exit port.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the operator asked for (`--accel` or `VMRESCUE_ACCEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    Auto,
    Kvm,
    Tcg,
}

impl Choice {
    pub fn parse(s: &str) -> Option<Choice> {
        match s {
            "auto" | "" => Some(Choice::Auto),
            "kvm" => Some(Choice::Kvm),
            "tcg" => Some(Choice::Tcg),
            _ => None,
        }
    }
}

/// Exit status QEMU gives when the probe firmware writes 1 to the isa-debug-exit port.
const PROBE_EXIT: i32 = (1 << 1) | 1;
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A 64 KiB BIOS whose reset vector (at 0xFFFF0) runs `mov al,1; out 0xf4,al; hlt`.
pub fn probe_firmware() -> Vec<u8> {
    let mut bios = vec![0xF4u8; 64 * 1024];
    bios[0xFFF0..0xFFF5].copy_from_slice(&[0xB0, 0x01, 0xE6, 0xF4, 0xF4]);
    bios
}

/// Whether the CPU advertises hardware virtualisation at all.
fn cpu_has_virt() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
        .unwrap_or(false)
}

/// Boots the probe firmware with `accel`; true if it ran to its exit in time.
pub fn works(qemu: &Path, accel: Accel, scratch: &Path) -> bool {
    let bios = scratch.join("accel-probe.bin");
    let written = std::fs::File::create(&bios).and_then(|mut f| f.write_all(&probe_firmware()));
    if written.is_err() {
        return false;
    }
    let config = crate::qemu::Config::new(
        "vmrescue-accel-probe",
        accel,
        crate::qemu::Boot::Firmware(crate::qemu::Firmware::Bios(bios)),
    )
    .machine(crate::qemu::Machine::Pc)
    .debug_exit();
    let child = Command::new(qemu)
        .args(config.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code() == Some(PROBE_EXIT),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Picks the accelerator: the operator's choice, else KVM when it works, else TCG.
pub fn choose(choice: Choice, qemu: &Path, scratch: &Path) -> Accel {
    match choice {
        Choice::Kvm => Accel::Kvm,
        Choice::Tcg => Accel::Tcg,
        Choice::Auto => {
            let usable = cpu_has_virt()
                && std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/kvm")
                    .is_ok()
                && works(qemu, Accel::Kvm, scratch);
            if usable {
                Accel::Kvm
            } else {
                Accel::Tcg
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_has_reset_vector_code() {
        let fw = probe_firmware();
        assert_eq!(fw.len(), 65536);
        assert_eq!(&fw[0xFFF0..0xFFF4], &[0xB0, 0x01, 0xE6, 0xF4]);
    }

    #[test]
    fn choice_parsing() {
        assert_eq!(Choice::parse("kvm"), Some(Choice::Kvm));
        assert_eq!(Choice::parse(""), Some(Choice::Auto));
        assert_eq!(Choice::parse("hvf"), None);
    }
}
