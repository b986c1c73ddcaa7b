//! The report's records of the guest's own boot: its boot entry as the agent found it, and the
//! host's verify boots of it.

use serde::{Deserialize, Serialize};

/// How the guest's own OS booted on throw-away overlays of its disks ([`super::Report::verify`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Verify {
    /// `direct_kernel` (the guest's kernel and initramfs, copied out by the agent, booted by
    /// QEMU with `console=ttyS0` added) or `firmware` (the guest's disks through the firmware
    /// and its own boot loader).
    pub method: crate::VerifyMethod,
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub initrd: Option<String>,
    #[serde(default)]
    pub cmdline: Option<String>,
    /// The boot before the repair (`--verify-before`).
    #[serde(default)]
    pub before: Option<BootCheck>,
    /// The boot after the rescue.
    #[serde(default)]
    pub after: Option<BootCheck>,
    /// `--rollback-on-regression` discarded the repair: the guest booted before and not
    /// after, and its disks were never written.
    #[serde(default)]
    pub rolled_back: bool,
}

/// One verify boot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BootCheck {
    /// `booted`, `emergency`, `panic`, `hang`, `no_output`, `reboot` or `power_off`.
    pub state: crate::BootVerdict,
    /// From QEMU's start to the verdict (or the time limit).
    pub elapsed_s: f64,
    /// The boot's stages seen on the console, in order (`kernel`, `initramfs`, `init`,
    /// `multi_user`, `login`, ...).
    #[serde(default)]
    pub milestones: Vec<String>,
    /// For a hang: the last start job that was running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
    /// For a hang: the prompt the boot waits at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The console's last lines (escaped).
    #[serde(default)]
    pub console_tail: Vec<String>,
}

/// The guest's own boot entry ([`super::Report::boot_config`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootConfig {
    /// Where it was found: `grub` (grub.cfg's default entry), `bls` (Boot Loader
    /// Specification entries) or `newest_kernel` (the newest vmlinuz-* in /boot).
    pub method: crate::BootMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The kernel's path on the guest's root (`/boot/vmlinuz-6.1.0-27-amd64`).
    pub kernel: String,
    #[serde(default)]
    pub initrd: Option<String>,
    /// The entry's command line (boot-loader variables left out).
    #[serde(default)]
    pub cmdline: String,
}
