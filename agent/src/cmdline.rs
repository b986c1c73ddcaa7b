//! Settings from the kernel command line (`/proc/cmdline`): pure parsing.

use vmrescue_protocol::{Mode, DEFAULT_PORT_NAME};

/// What to do once the report is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    PowerOff,
    Reboot,
    Shell,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub port: String,
    pub after: After,
    /// Longest wait for block devices to appear and settle.
    pub settle_secs: u64,
    /// The operator's choice of OS root (`vmrescue.root=DEVICE|UUID`) when there are several.
    pub root: Option<String>,
    /// Host name for a rebuilt `/etc/hostname` (`vmrescue.hostname=`).
    pub hostname: Option<String>,
    /// Add `errors=remount-ro` to an ext root's fstab entry (`vmrescue.errors_remount_ro=0` off).
    pub errors_remount_ro: bool,
    /// Allow `xfs_repair -L` (zeroes the log, losing its transactions) when the log cannot be
    /// replayed: destructive, only on the operator's explicit `vmrescue.xfs_zero_log=1`.
    pub xfs_zero_log: bool,
    /// Longest one checker pass may run before it is killed (`vmrescue.fsck_timeout=SECS`): a
    /// checker can loop on some damage.
    pub fsck_timeout_secs: u64,
    /// Filesystem UUID of the undo scratch disk the host attached (`vmrescue.undo=UUID`).
    pub undo: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            // The safe default: look, write nothing.
            mode: Mode::Check,
            port: DEFAULT_PORT_NAME.to_owned(),
            after: After::PowerOff,
            settle_secs: 10,
            root: None,
            hostname: None,
            errors_remount_ro: true,
            xfs_zero_log: false,
            fsck_timeout_secs: 1800,
            undo: None,
        }
    }
}

/// Parses the command line; returns the settings and a warning per value it did not understand.
pub fn parse(cmdline: &str) -> (Settings, Vec<String>) {
    let mut s = Settings::default();
    let mut warnings = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(rest) = word.strip_prefix("vmrescue.") else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        match key {
            "mode" => match Mode::parse(value) {
                Some(m) => s.mode = m,
                None => warnings.push(format!(
                    "vmrescue.mode={value:?} is not check or repair; using check"
                )),
            },
            "port" if valid_port_name(value) => s.port = value.to_owned(),
            "port" => warnings.push(format!(
                "vmrescue.port={value:?} is not a valid port name; using {DEFAULT_PORT_NAME}"
            )),
            "after" => match value {
                "poweroff" => s.after = After::PowerOff,
                "reboot" => s.after = After::Reboot,
                "shell" => s.after = After::Shell,
                _ => warnings.push(format!(
                    "vmrescue.after={value:?} is not poweroff, reboot or shell; using poweroff"
                )),
            },
            "settle" => match value.parse::<u64>() {
                Ok(n) if n <= 600 => s.settle_secs = n,
                _ => warnings.push(format!(
                    "vmrescue.settle={value:?} is not a number of seconds up to 600; using {}",
                    s.settle_secs
                )),
            },
            "fsck_timeout" => match value.parse::<u64>() {
                Ok(n) if (1..=86_400).contains(&n) => s.fsck_timeout_secs = n,
                _ => warnings.push(format!(
                    "vmrescue.fsck_timeout={value:?} is not a number of seconds from 1 to 86400; using {}",
                    s.fsck_timeout_secs
                )),
            },
            "undo" if is_uuid(value) => s.undo = Some(value.to_ascii_lowercase()),
            "undo" => warnings.push(format!(
                "vmrescue.undo={value:?} is not a filesystem UUID; no undo files kept"
            )),
            "root" if valid_root(value) => s.root = Some(value.to_owned()),
            "root" => warnings.push(format!(
                "vmrescue.root={value:?} is not a device name or UUID; ignored"
            )),
            "hostname" if valid_hostname(value) => s.hostname = Some(value.to_owned()),
            "hostname" => warnings.push(format!(
                "vmrescue.hostname={value:?} is not a valid host name; ignored"
            )),
            "errors_remount_ro" | "xfs_zero_log" => {
                let flag = match value {
                    "1" | "yes" | "on" | "" => true,
                    "0" | "no" | "off" => false,
                    _ => {
                        warnings.push(format!("vmrescue.{key}={value:?} is not 0 or 1; ignored"));
                        continue;
                    }
                };
                if key == "xfs_zero_log" {
                    s.xfs_zero_log = flag;
                } else {
                    s.errors_remount_ro = flag;
                }
            }
            _ => warnings.push(format!("unknown setting vmrescue.{key} ignored")),
        }
    }
    (s, warnings)
}

/// RFC 1123 host name: labels of letters, digits and `-`, dot-separated, at most 253 bytes.
fn valid_hostname(v: &str) -> bool {
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

fn is_uuid(v: &str) -> bool {
    v.len() == 36
        && v.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A device (`vda1`, `/dev/vda1`) or a UUID.
fn valid_root(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && !v.contains("..")
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.' | b':'))
}

/// Port names as libvirt and QEMU accept them: short, printable, no path separators.
fn valid_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let (s, w) = parse("console=ttyS0 quiet");
        assert_eq!(s, Settings::default());
        assert_eq!(s.mode, Mode::Check);
        assert!(w.is_empty());
    }

    #[test]
    fn reads_all_settings() {
        let (s, w) = parse(
            "console=ttyS0 vmrescue.mode=repair vmrescue.port=org.x.y-1 vmrescue.after=shell vmrescue.settle=3 vmrescue.root=/dev/vdb1\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.mode, Mode::Repair);
        assert_eq!(s.port, "org.x.y-1");
        assert_eq!(s.after, After::Shell);
        assert_eq!(s.settle_secs, 3);
        assert_eq!(s.root.as_deref(), Some("/dev/vdb1"));
        assert!(s.errors_remount_ro && !s.xfs_zero_log && s.hostname.is_none());
        let (s, w) = parse(
            "vmrescue.hostname=web-1.example vmrescue.errors_remount_ro=0 vmrescue.xfs_zero_log=1",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.hostname.as_deref(), Some("web-1.example"));
        assert!(!s.errors_remount_ro && s.xfs_zero_log);
        assert_eq!(parse("vmrescue.fsck_timeout=90").0.fsck_timeout_secs, 90);
        assert_eq!(parse("vmrescue.fsck_timeout=0").1.len(), 1);
        assert_eq!(
            parse("vmrescue.undo=2C309045-caea-4e02-8bc7-cf04b2b71566")
                .0
                .undo
                .as_deref(),
            Some("2c309045-caea-4e02-8bc7-cf04b2b71566")
        );
        assert_eq!(parse("vmrescue.undo=../x").1.len(), 1);
        let (s, w) =
            parse("vmrescue.hostname=-bad vmrescue.hostname=a..b vmrescue.xfs_zero_log=maybe");
        assert_eq!((w.len(), s.hostname, s.xfs_zero_log), (3, None, false));
        let (s, w) =
            parse("vmrescue.root=../../x vmrescue.root=2c309045-caea-4e02-8bc7-cf04b2b71566");
        assert_eq!(w.len(), 1);
        assert_eq!(
            s.root.as_deref(),
            Some("2c309045-caea-4e02-8bc7-cf04b2b71566")
        );
    }

    #[test]
    fn bad_values_warn_and_keep_defaults() {
        let (s, w) = parse(
            "vmrescue.mode=fix vmrescue.port=../../etc vmrescue.after= vmrescue.settle=x vmrescue.bogus",
        );
        assert_eq!(s, Settings::default());
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w[1].contains("../../etc"));
    }
}
