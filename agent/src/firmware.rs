//! Which firmware booted the rescue and whether UEFI Secure Boot is on, for the report.

use std::path::Path;

use rustix::mount::{mount, MountFlags};
use vmrescue_protocol::{Firmware, FirmwareKind};

const EFI: &str = "/sys/firmware/efi";
const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// The global variable `SecureBoot` (EFI_GLOBAL_VARIABLE GUID).
const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// The `SecureBoot` variable's value as efivarfs shows it: 4 attribute bytes, then 1 when on.
pub fn secure_boot_from_var(bytes: &[u8]) -> bool {
    bytes.get(4) == Some(&1)
}

/// Looks at `/sys/firmware/efi` (mounting efivarfs read-only when needed).
pub fn detect() -> Firmware {
    if !Path::new(EFI).is_dir() {
        return Firmware {
            kind: FirmwareKind::Bios,
            secure_boot: false,
        };
    }
    let var = Path::new(EFIVARS).join(SECURE_BOOT_VAR);
    if !var.exists() {
        let flags =
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        if let Err(e) = mount("efivarfs", EFIVARS, "efivarfs", flags, c"") {
            log::warn!("cannot mount efivarfs on {EFIVARS}: {e}");
        }
    }
    Firmware {
        kind: FirmwareKind::Uefi,
        secure_boot: std::fs::read(&var).is_ok_and(|b| secure_boot_from_var(&b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_variable_layout() {
        assert!(secure_boot_from_var(&[6, 0, 0, 0, 1]));
        assert!(!secure_boot_from_var(&[6, 0, 0, 0, 0]));
        assert!(!secure_boot_from_var(&[6, 0]));
    }
}
