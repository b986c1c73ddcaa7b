//! The step names of progress and warnings, and the kinds of changes, as enums that serialise to
//! exactly the strings the report has always carried. A name the host does not know (a newer or
//! hostile agent) is kept as `Other`, never refused.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! wire_names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A name this side does not know, kept as it came.
            Other(String),
            /// Never sent: what a defaulted value holds until it is set.
            #[default]
            Unset,
        }

        impl $name {
            /// Every known name, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s,
                    $name::Unset => "",
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)*
                    "" => $name::Unset,
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::from(s.as_str()))
            }
        }
    };
}

wire_names! {
    /// The step a progress line or warning comes from.
    Step {
        /// Mounts and set-up of PID 1.
        Boot => "boot",
        /// The kernel command line and other settings.
        Cmdline => "cmdline",
        Modules => "modules",
        /// The virtio-serial port to the host.
        Port => "port",
        Disks => "disks",
        Fsck => "fsck",
        /// The read-only look for the OS root.
        Inspect => "inspect",
        /// Discovery's findings (fstab, several roots...).
        Discovery => "discovery",
        /// Opening what holds filesystems: LVM volume groups, md arrays, LUKS containers.
        Layers => "layers",
        /// Planning the guest fixes.
        Plan => "plan",
        /// Applying the guest fixes.
        Apply => "apply",
        /// e2fsck undo files.
        Undo => "undo",
        /// Saving the report.
        Report => "report",
        /// Copying the guest's kernel and initramfs out for the host's verify boot.
        BootCopy => "boot_copy",
        /// The agent itself (internal error, stopped by a signal).
        Agent => "agent",
        /// Added by the host companion.
        Host => "host",
    }
}

wire_names! {
    /// What a change (or planned change) to the guest is.
    ChangeKind {
        /// A checker corrected a filesystem.
        Fsck => "fsck",
        /// A directory was created.
        Mkdir => "mkdir",
        /// A file was written (atomically, backed up).
        WriteFile => "write_file",
        /// A symbolic link was created where nothing was (never replacing anything).
        Symlink => "symlink",
        /// A temporary file an earlier, stopped rescue left was removed.
        RemoveTemp => "remove_temp",
        /// The report saved on the repaired root.
        Report => "report",
        /// An md array assembled read-write (repair mode): the kernel writes its members'
        /// superblocks, and resynchronises them if it was not stopped cleanly.
        Assemble => "assemble",
        /// A thin pool's metadata rebuilt by `lvconvert --repair` (`--thin-repair`); the old
        /// metadata stays beside it as `POOL_metaN`.
        ThinRepair => "thin_repair",
    }
}

wire_names! {
    /// How a verify boot went, as its console showed it (`verify.before.state`,
    /// `verify.after.state`).
    BootVerdict {
        /// A getty login prompt, or systemd's multi-user or graphical target.
        Booted => "booted",
        /// Emergency or rescue mode, an initramfs or dracut shell.
        Emergency => "emergency",
        /// A kernel panic, or no init.
        Panic => "panic",
        /// No verdict within the time limit.
        Hang => "hang",
        /// Nothing on the console at all.
        NoOutput => "no_output",
        /// The VM ended on its own before a verdict: the guest rebooted or reset.
        Reboot => "reboot",
        /// The VM ended on its own before a verdict, the guest having powered off.
        PowerOff => "power_off",
    }
}

wire_names! {
    /// How a verify boot started the guest (`verify.method`).
    VerifyMethod {
        /// The guest's kernel and initramfs, copied out by the agent, booted by QEMU.
        DirectKernel => "direct_kernel",
        /// The guest's disks through the firmware and its own boot loader.
        Firmware => "firmware",
    }
}

wire_names! {
    /// Where the guest's boot entry was found (`boot_config.method`).
    BootMethod {
        /// grub.cfg's default entry.
        Grub => "grub",
        /// Boot Loader Specification entries.
        Bls => "bls",
        /// The newest vmlinuz-* in /boot.
        NewestKernel => "newest_kernel",
    }
}

wire_names! {
    /// What a layer between a disk and its filesystems is (`layers[].kind`).
    LayerKind {
        /// An LVM volume group (its members are physical volumes).
        Lvm => "lvm",
        /// An md RAID array.
        Md => "md",
        /// A LUKS container.
        Luks => "luks",
    }
}

wire_names! {
    /// How far the rescue opened a layer (`layers[].state`).
    LayerState {
        /// Opened: every device it holds is there.
        Active => "active",
        /// Opened, but not everything: some of its devices are missing (a degraded array, a
        /// volume group with a member gone).
        Partial => "partial",
        /// Left closed on purpose: a LUKS container with no key given.
        Locked => "locked",
        /// Left closed on purpose: the same volume group (name or UUIDs) as one the rescue
        /// opened, as when a clone is attached beside its source.
        Duplicate => "duplicate",
        /// Opening it failed (`detail` says why).
        Failed => "failed",
    }
}

wire_names! {
    /// The rescue VM's firmware (`firmware.type`).
    FirmwareKind {
        Bios => "bios",
        Uefi => "uefi",
    }
}

/// A point of the report's `timings`: the agent's phase that had just ended. On the wire the
/// names the report has always had (`agent`, `modules`, ..., `fsck DEV`); a name this side does
/// not know is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Phase {
    /// PID 1 started.
    Agent,
    Modules,
    Port,
    /// Block devices settled.
    Disks,
    /// The layers (LVM, md, LUKS) opened.
    Layers,
    /// A filesystem's checks done (its device).
    Fsck(String),
    Checks,
    Inspect,
    Fixes,
    /// The guest's kernel and initramfs copied for the host's verify boot.
    BootCopy,
    /// The report ready to be saved and sent.
    Report,
    /// A name this side does not know, kept as it came.
    Other(String),
    /// Never sent: what a defaulted value holds until it is set.
    #[default]
    Unset,
}

impl Phase {
    const PLAIN: [(Phase, &'static str); 10] = [
        (Phase::Agent, "agent"),
        (Phase::Modules, "modules"),
        (Phase::Port, "port"),
        (Phase::Disks, "disks"),
        (Phase::Layers, "layers"),
        (Phase::Checks, "checks"),
        (Phase::Inspect, "inspect"),
        (Phase::Fixes, "fixes"),
        (Phase::BootCopy, "boot_copy"),
        (Phase::Report, "report"),
    ];
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Fsck(dev) => write!(f, "fsck {dev}"),
            Phase::Other(s) => f.write_str(s),
            Phase::Unset => Ok(()),
            p => f.write_str(
                Phase::PLAIN
                    .iter()
                    .find(|(k, _)| k == p)
                    .map_or("", |(_, t)| t),
            ),
        }
    }
}

impl From<&str> for Phase {
    fn from(s: &str) -> Self {
        if let Some((p, _)) = Phase::PLAIN.iter().find(|(_, t)| *t == s) {
            return p.clone();
        }
        match s.strip_prefix("fsck ") {
            Some(dev) if !dev.is_empty() => Phase::Fsck(dev.to_owned()),
            _ if s.is_empty() => Phase::Unset,
            _ => Phase::Other(s.to_owned()),
        }
    }
}

impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Phase::from(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_serialise_to_the_strings_reports_always_had() {
        for (step, text) in [
            (Step::Boot, "boot"),
            (Step::Fsck, "fsck"),
            (Step::Host, "host"),
            (Step::Apply, "apply"),
        ] {
            assert_eq!(serde_json::to_string(&step).unwrap(), format!("\"{text}\""));
            assert_eq!(Step::from(text), step);
        }
        for k in ChangeKind::ALL {
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(&serde_json::from_str::<ChangeKind>(&json).unwrap(), k);
        }
        assert_eq!(ChangeKind::WriteFile.as_str(), "write_file");
        for (v, text) in [
            (BootVerdict::Booted, "booted"),
            (BootVerdict::NoOutput, "no_output"),
            (BootVerdict::Reboot, "reboot"),
            (BootVerdict::PowerOff, "power_off"),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{text}\""));
        }
        assert_eq!(
            VerifyMethod::from("direct_kernel"),
            VerifyMethod::DirectKernel
        );
        assert_eq!(BootMethod::NewestKernel.as_str(), "newest_kernel");
        assert_eq!(FirmwareKind::from("uefi"), FirmwareKind::Uefi);
        assert_eq!(Step::ALL.len(), 16);
        assert_eq!(LayerKind::from("lvm"), LayerKind::Lvm);
        assert_eq!(LayerState::Duplicate.as_str(), "duplicate");
        assert_eq!(Phase::from("layers"), Phase::Layers);
    }

    #[test]
    fn phases_keep_the_strings_timings_always_had() {
        for (p, text) in [
            (Phase::Agent, "agent"),
            (Phase::BootCopy, "boot_copy"),
            (Phase::Fsck("/dev/vda1".into()), "fsck /dev/vda1"),
            (Phase::Other("selinux".into()), "selinux"),
        ] {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<Phase>(&format!("\"{text}\"")).unwrap(),
                p
            );
        }
        assert_eq!(Phase::from(""), Phase::Unset);
        assert_eq!(Phase::from("fsck "), Phase::Other("fsck ".into()));
    }

    #[test]
    fn unknown_names_are_kept_not_refused() {
        let s: Step = serde_json::from_str("\"selinux\"").unwrap();
        assert_eq!(s, Step::Other("selinux".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"selinux\"");
        assert!(s == "selinux");
        assert_eq!(Step::from(""), Step::Unset);
    }
}
