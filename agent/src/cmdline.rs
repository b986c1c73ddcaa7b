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
            "root" if valid_root(value) => s.root = Some(value.to_owned()),
            "root" => warnings.push(format!(
                "vmrescue.root={value:?} is not a device name or UUID; ignored"
            )),
            _ => warnings.push(format!("unknown setting vmrescue.{key} ignored")),
        }
    }
    (s, warnings)
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
