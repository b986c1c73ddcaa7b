//! The table of the rescue's parameters (key, type, default, validation, how the host writes
//! it and how the agent reads it) and the validators of their values.

use super::{After, Kind, Param, Settings};
use crate::report::Mode;
use crate::DEFAULT_PORT_NAME;

fn seconds(value: &str, min: u64, max: u64) -> Option<u64> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

fn flag(value: &str) -> Option<bool> {
    match value {
        "1" | "yes" | "on" | "" => Some(true),
        "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn flag_text(b: bool) -> String {
    if b { "1" } else { "0" }.to_owned()
}

/// An operator's flag that is off unless asked for (on the command line, in the server
/// metadata or on the settings drive): `vmrescue.FIELD=1`, written only when on.
macro_rules! off_flag {
    ($field:ident) => {
        Param {
            key: stringify!($field),
            kind: Kind::Flag,
            default: "0",
            always: false,
            invalid: None,
            from_meta: true,
            from_drive: true,
            set: |s, v| {
                s.$field = flag(v).ok_or_else(|| {
                    format!(
                        concat!("vmrescue.", stringify!($field), "={:?} is not 0 or 1"),
                        v
                    )
                })?;
                Ok(())
            },
            get: |s| s.$field.then(|| flag_text(s.$field)),
        }
    };
}

const SETTLE_MAX: u64 = 600;
/// Disks a rescue VM has at most (virtio-blk, SATA, IDE, SCSI together).
pub const DISKS_MAX: u64 = 64;
const FSCK_TIMEOUT_MAX: u64 = 86_400;

/// The table. Order is the order the host writes them.
pub const PARAMS: &[Param] = &[
    Param {
        key: "mode",
        kind: Kind::Mode,
        default: "check",
        always: true,
        invalid: None,
        from_meta: true,
        from_drive: true,
        set: |s, v| {
            s.mode = Mode::parse(v)
                .ok_or_else(|| format!("vmrescue.mode={v:?} is not check or repair"))?;
            Ok(())
        },
        get: |s| Some(s.mode.as_str().to_owned()),
    },
    Param {
        key: "port",
        kind: Kind::PortName,
        default: DEFAULT_PORT_NAME,
        always: true,
        invalid: None,
        from_meta: false,
        from_drive: false,
        set: |s, v| {
            if !valid_port_name(v) {
                return Err(format!("vmrescue.port={v:?} is not a valid port name"));
            }
            s.port = v.to_owned();
            Ok(())
        },
        get: |s| Some(s.port.clone()),
    },
    Param {
        key: "after",
        kind: Kind::After,
        default: "poweroff",
        always: true,
        invalid: None,
        from_meta: true,
        from_drive: true,
        set: |s, v| {
            s.after = After::parse(v)
                .ok_or_else(|| format!("vmrescue.after={v:?} is not poweroff, reboot or shell"))?;
            Ok(())
        },
        get: |s| Some(s.after.as_str().to_owned()),
    },
    Param {
        key: "settle",
        kind: Kind::Seconds {
            min: 0,
            max: SETTLE_MAX,
        },
        default: "10",
        always: false,
        invalid: None,
        from_meta: false,
        from_drive: false,
        set: |s, v| {
            s.settle_secs = seconds(v, 0, SETTLE_MAX).ok_or_else(|| {
                format!("vmrescue.settle={v:?} is not a number of seconds up to {SETTLE_MAX}")
            })?;
            Ok(())
        },
        get: |s| {
            (s.settle_secs != Settings::default().settle_secs).then(|| s.settle_secs.to_string())
        },
    },
    Param {
        key: "root",
        kind: Kind::Root,
        default: "",
        always: false,
        invalid: None,
        from_meta: true,
        from_drive: true,
        set: |s, v| {
            if !valid_root(v) {
                return Err(format!("vmrescue.root={v:?} is not a device name or UUID"));
            }
            s.root = Some(v.to_owned());
            Ok(())
        },
        get: |s| s.root.clone(),
    },
    Param {
        key: "hostname",
        kind: Kind::Hostname,
        default: "",
        always: false,
        invalid: None,
        from_meta: true,
        from_drive: true,
        set: |s, v| {
            if !valid_hostname(v) {
                return Err(format!("vmrescue.hostname={v:?} is not a valid host name"));
            }
            s.hostname = Some(v.to_owned());
            Ok(())
        },
        get: |s| s.hostname.clone(),
    },
    Param {
        key: "errors_remount_ro",
        kind: Kind::Flag,
        default: "1",
        always: false,
        invalid: None,
        from_meta: true,
        from_drive: true,
        set: |s, v| {
            s.errors_remount_ro =
                flag(v).ok_or_else(|| format!("vmrescue.errors_remount_ro={v:?} is not 0 or 1"))?;
            Ok(())
        },
        get: |s| (!s.errors_remount_ro).then(|| flag_text(s.errors_remount_ro)),
    },
    off_flag!(xfs_zero_log),
    off_flag!(btrfs_repair),
    off_flag!(thin_repair),
    Param {
        key: "undo",
        kind: Kind::Uuid,
        default: "",
        always: false,
        invalid: Some("no undo files kept"),
        from_meta: false,
        from_drive: true,
        set: |s, v| {
            if !is_uuid(v) {
                return Err(format!("vmrescue.undo={v:?} is not a filesystem UUID"));
            }
            s.undo = Some(v.to_ascii_lowercase());
            Ok(())
        },
        get: |s| s.undo.clone(),
    },
    Param {
        key: "bootcopy",
        kind: Kind::Uuid,
        default: "",
        always: false,
        invalid: Some("the guest's kernel is not copied out; no verify boot"),
        from_meta: false,
        from_drive: true,
        set: |s, v| {
            if !is_uuid(v) {
                return Err(format!("vmrescue.bootcopy={v:?} is not a filesystem UUID"));
            }
            s.bootcopy = Some(v.to_ascii_lowercase());
            Ok(())
        },
        get: |s| s.bootcopy.clone(),
    },
    Param {
        key: "fsck_timeout",
        kind: Kind::Seconds {
            min: 1,
            max: FSCK_TIMEOUT_MAX,
        },
        default: "1800",
        always: false,
        invalid: None,
        from_meta: true,
        from_drive: true,
        set: |s, v| {
            s.fsck_timeout_secs = seconds(v, 1, FSCK_TIMEOUT_MAX).ok_or_else(|| {
                format!(
                    "vmrescue.fsck_timeout={v:?} is not a number of seconds from 1 to {FSCK_TIMEOUT_MAX}"
                )
            })?;
            Ok(())
        },
        get: |s| {
            (s.fsck_timeout_secs != Settings::default().fsck_timeout_secs)
                .then(|| s.fsck_timeout_secs.to_string())
        },
    },
    Param {
        key: "ata",
        kind: Kind::Flag,
        default: "1",
        always: false,
        invalid: None,
        from_meta: false,
        from_drive: false,
        set: |s, v| {
            s.ata = flag(v).ok_or_else(|| format!("vmrescue.ata={v:?} is not 0 or 1"))?;
            Ok(())
        },
        get: |s| (!s.ata).then(|| flag_text(s.ata)),
    },
    Param {
        key: "disks",
        kind: Kind::Count {
            min: 1,
            max: DISKS_MAX,
        },
        default: "",
        always: false,
        invalid: Some("waiting for the disks to stay quiet"),
        from_meta: false,
        from_drive: false,
        set: |s, v| {
            s.disks = Some(seconds(v, 1, DISKS_MAX).ok_or_else(|| {
                format!("vmrescue.disks={v:?} is not a number of disks from 1 to {DISKS_MAX}")
            })? as u32);
            Ok(())
        },
        get: |s| s.disks.map(|n| n.to_string()),
    },
    Param {
        key: "settings_drive",
        kind: Kind::Flag,
        default: "0",
        always: false,
        invalid: None,
        from_meta: false,
        from_drive: false,
        set: |s, v| {
            s.settings_drive =
                flag(v).ok_or_else(|| format!("vmrescue.settings_drive={v:?} is not 0 or 1"))?;
            Ok(())
        },
        get: |s| s.settings_drive.then(|| flag_text(s.settings_drive)),
    },
];

/// RFC 1123 host name: labels of letters, digits and `-`, dot-separated, at most 253 bytes.
pub fn valid_hostname(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub fn is_uuid(v: &str) -> bool {
    v.len() == 36
        && v.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A device (`vda1`, `/dev/vda1`) or a UUID.
pub fn valid_root(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && !v.contains("..")
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.' | b':'))
}

/// Port names as libvirt and QEMU accept them: short, printable, no path separators.
pub fn valid_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}
