//! The rescue's boot parameters (`vmrescue.KEY=VALUE` on the kernel command line): one table of
//! key, type, default and validation that the host writes ([`emit`]) and the agent reads
//! ([`parse`]). Nothing else names a key. The table itself is in `table`.

mod table;

use crate::report::Mode;
use crate::DEFAULT_PORT_NAME;

pub use table::{is_uuid, valid_hostname, valid_port_name, valid_root, DISKS_MAX, PARAMS};

/// Every key is `PREFIX` + the table's key.
pub const PREFIX: &str = "vmrescue.";
/// In a config drive's `meta_data.json` `meta` object (nova server metadata), a setting is
/// `META_PREFIX` + the table's key: `vmrescue_mode`, `vmrescue_hostname`...
pub const META_PREFIX: &str = "vmrescue_";

/// What to do once the report is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum After {
    #[default]
    PowerOff,
    Reboot,
    Shell,
}

impl After {
    pub fn as_str(self) -> &'static str {
        match self {
            After::PowerOff => "poweroff",
            After::Reboot => "reboot",
            After::Shell => "shell",
        }
    }

    pub fn parse(s: &str) -> Option<After> {
        match s {
            "poweroff" => Some(After::PowerOff),
            "reboot" => Some(After::Reboot),
            "shell" => Some(After::Shell),
            _ => None,
        }
    }
}

/// What the agent is told to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub port: String,
    pub after: After,
    /// Longest wait for block devices to appear and settle.
    pub settle_secs: u64,
    /// The operator's choice of OS root (`DEVICE|UUID`) when there are several.
    pub root: Option<String>,
    /// Host name for a rebuilt `/etc/hostname`.
    pub hostname: Option<String>,
    /// Add `errors=remount-ro` to an ext root's fstab entry.
    pub errors_remount_ro: bool,
    /// Allow `xfs_repair -L` (zeroes the log, losing its transactions) when the log cannot be
    /// replayed: destructive, only on the operator's explicit request.
    pub xfs_zero_log: bool,
    /// Allow `btrfs check --repair` on a btrfs the read-only check found damaged: it can make
    /// the damage worse, so only on the operator's explicit request.
    pub btrfs_repair: bool,
    /// Allow `lvconvert --repair` on a thin pool whose metadata fails `thin_check` (repair
    /// mode): it rebuilds the metadata with `thin_repair`, which can drop mappings it cannot
    /// read, so only on the operator's explicit request.
    pub thin_repair: bool,
    /// Longest one checker pass may run before it is killed: a checker can loop on some damage.
    pub fsck_timeout_secs: u64,
    /// Filesystem UUID of the undo scratch disk the host attached.
    pub undo: Option<String>,
    /// Filesystem UUID of the boot-copy scratch disk the host attached: the agent copies the
    /// guest's kernel and initramfs there for a verify boot.
    pub bootcopy: Option<String>,
    /// How many disks the host attached: the agent scans as soon as that many are there,
    /// instead of waiting for the set of disks to stay quiet.
    pub disks: Option<u32>,
    /// Load the SATA and IDE controllers' drivers (`ahci`, `ata_piix`) for the devices present.
    /// The host turns it off when every disk it attached is on virtio: probing the machine's
    /// built-in ports costs boot time and memory for nothing.
    pub ata: bool,
    /// The host attached a settings drive (with secrets) to a boot that also has a command
    /// line: wait for its cdrom (a SATA or IDE one shows up after the disks).
    pub settings_drive: bool,
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
            btrfs_repair: false,
            thin_repair: false,
            fsck_timeout_secs: 1800,
            undo: None,
            bootcopy: None,
            disks: None,
            ata: true,
            settings_drive: false,
        }
    }
}

/// The type of a parameter's value (for documentation and the host's checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `check` or `repair`.
    Mode,
    /// A virtio-serial port name.
    PortName,
    /// `poweroff`, `reboot` or `shell`.
    After,
    /// Whole seconds in `min..=max`.
    Seconds { min: u64, max: u64 },
    /// A device name or filesystem UUID.
    Root,
    /// An RFC 1123 host name.
    Hostname,
    /// `0` or `1` (also `no`/`yes`, `off`/`on`; a bare key is `1`).
    Flag,
    /// A filesystem UUID.
    Uuid,
    /// A whole number in `min..=max`.
    Count { min: u64, max: u64 },
}

/// One boot parameter.
pub struct Param {
    /// The key after [`PREFIX`].
    pub key: &'static str,
    pub kind: Kind,
    /// What the agent uses when the parameter is absent or invalid.
    pub default: &'static str,
    /// Always written by the host, even at its default (so a console log shows it).
    pub always: bool,
    /// What the agent does with an invalid value, when not "using DEFAULT" or "ignored".
    pub invalid: Option<&'static str>,
    /// Can also come from a config drive's metadata ([`META_PREFIX`] + key), read once the
    /// disks are found (so not what is needed before: the port, the settle time, the undo
    /// disk the host attached).
    pub from_meta: bool,
    /// Can also come from the settings drive the host attaches to a cdrom boot (see
    /// `paths::SETTINGS_LABEL`): every [`Param::from_meta`] one, and the host's own scratch
    /// disks, which only the host names (a config drive's metadata is the API user's).
    pub from_drive: bool,
    /// Validates a value and stores it; the error is the warning the agent reports.
    set: fn(&mut Settings, &str) -> Result<(), String>,
    /// The value to write, or `None` when it is the default.
    get: fn(&Settings) -> Option<String>,
}

impl Param {
    /// `vmrescue.KEY`.
    pub fn name(&self) -> String {
        format!("{PREFIX}{}", self.key)
    }

    /// What the agent does instead of an invalid value.
    pub fn fallback(&self) -> String {
        match self.invalid {
            Some(t) => t.to_owned(),
            None if !self.default.is_empty() => format!("using {}", self.default),
            None => "ignored".to_owned(),
        }
    }
}

/// The parameter named `key` (without the prefix).
pub fn param(key: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.key == key)
}

/// Sets one parameter from its text, as the agent would; the error says what is wrong with it
/// and what the agent does instead.
pub fn set(settings: &mut Settings, key: &str, value: &str) -> Result<(), String> {
    match param(key) {
        Some(p) => (p.set)(settings, value).map_err(|e| format!("{e}; {}", p.fallback())),
        None => Err(format!("unknown setting {PREFIX}{key} ignored")),
    }
}

/// Applies settings from a config drive's metadata (`meta` key/value pairs; others are
/// ignored): each `vmrescue_KEY` the table allows there. Returns a warning per value refused.
pub fn apply_meta(settings: &mut Settings, meta: &[(String, String)]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (k, v) in meta {
        let Some(key) = k.strip_prefix(META_PREFIX) else {
            continue;
        };
        match param(key) {
            Some(p) if p.from_meta => {
                if let Err(e) = (p.set)(settings, v) {
                    warnings.push(format!("config drive {k}: {e}; {}", p.fallback()));
                }
            }
            Some(_) => warnings.push(format!(
                "config drive {k}: only the kernel command line can set this; ignored"
            )),
            None => warnings.push(format!("config drive: unknown setting {k} ignored")),
        }
    }
    warnings
}

/// The `vmrescue.KEY=VALUE` words the host writes on its settings drive for `settings`: those
/// of [`emit`] a drive may carry ([`Param::from_drive`]).
pub fn drive_words(settings: &Settings) -> String {
    PARAMS
        .iter()
        .filter(|p| p.from_drive)
        .filter_map(|p| (p.get)(settings).map(|v| format!("{}={v}", p.name())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Applies the `vmrescue.KEY=VALUE` words of the host's settings drive (see
/// `paths::SETTINGS_FILE`): each setting a drive may carry ([`Param::from_drive`]). Returns a
/// warning per word refused.
pub fn apply_words(settings: &mut Settings, text: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    for word in text.split_ascii_whitespace() {
        let Some(rest) = word.strip_prefix(PREFIX) else {
            warnings.push(format!("{word:?} is not a {PREFIX}KEY=VALUE word; ignored"));
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        match param(key) {
            Some(p) if p.from_drive => {
                if let Err(e) = (p.set)(settings, value) {
                    warnings.push(format!("{e}; {}", p.fallback()));
                }
            }
            Some(p) => warnings.push(format!(
                "{}: only the kernel command line can set this; ignored",
                p.name()
            )),
            None => warnings.push(format!("unknown setting {PREFIX}{key} ignored")),
        }
    }
    warnings
}

/// Checks, on the host, that the agent will accept every value [`emit`] writes for `settings`:
/// the same validation the agent runs. The error names the first parameter it would refuse.
pub fn validate(settings: &Settings) -> Result<(), String> {
    let mut scratch = Settings::default();
    for p in PARAMS {
        if let Some(v) = (p.get)(settings) {
            (p.set)(&mut scratch, &v)?;
        }
    }
    Ok(())
}

/// Reads the command line; returns the settings and a warning per value it did not understand.
/// Words without the prefix belong to the kernel and are skipped.
pub fn parse(cmdline: &str) -> (Settings, Vec<String>) {
    let mut s = Settings::default();
    let mut warnings = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(rest) = word.strip_prefix(PREFIX) else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        if let Err(w) = set(&mut s, key, value) {
            warnings.push(w);
        }
    }
    (s, warnings)
}

/// The `(vmrescue.KEY, VALUE)` pairs that tell the agent `settings`: every parameter not at its
/// default, plus those always written.
pub fn emit(settings: &Settings) -> Vec<(String, String)> {
    PARAMS
        .iter()
        .filter_map(|p| (p.get)(settings).map(|v| (p.name(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pairs: &[(String, String)]) -> String {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn defaults_are_safe() {
        let (s, w) = parse("console=ttyS0 quiet");
        assert_eq!(s, Settings::default());
        assert_eq!(s.mode, Mode::Check);
        assert!(w.is_empty());
    }

    #[test]
    fn every_key_is_unique_and_its_default_parses_to_the_default() {
        let mut keys: Vec<&str> = PARAMS.iter().map(|p| p.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), PARAMS.len());
        for p in PARAMS.iter().filter(|p| !p.default.is_empty()) {
            let mut s = Settings::default();
            set(&mut s, p.key, p.default).unwrap();
            assert_eq!(s, Settings::default(), "{}", p.key);
        }
    }

    #[test]
    fn host_to_agent_round_trip() {
        let d = Settings::default();
        assert_eq!(
            line(&emit(&d)),
            "vmrescue.mode=check vmrescue.port=org.vmrescue.agent.0 vmrescue.after=poweroff"
        );
        let s = Settings {
            mode: Mode::Repair,
            port: "org.x.y-1".into(),
            after: After::Shell,
            settle_secs: 3,
            root: Some("/dev/vdb1".into()),
            hostname: Some("web-1.example".into()),
            errors_remount_ro: false,
            xfs_zero_log: true,
            btrfs_repair: true,
            thin_repair: true,
            fsck_timeout_secs: 90,
            undo: Some("2c309045-caea-4e02-8bc7-cf04b2b71566".into()),
            bootcopy: Some("7d0f3b4e-9a1c-4e2b-8f60-1c2d3e4f5a6b".into()),
            disks: Some(3),
            ata: false,
            settings_drive: true,
        };
        let text = format!("console=ttyS0 {} quiet", line(&emit(&s)));
        let (back, w) = parse(&text);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(back, s);
        // Every parameter the table knows is exercised by that settings value.
        assert_eq!(emit(&s).len(), PARAMS.len());
    }

    #[test]
    fn agent_reads_all_settings() {
        let (s, w) = parse(
            "vmrescue.hostname=web-1.example vmrescue.errors_remount_ro=0 vmrescue.xfs_zero_log=1",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.hostname.as_deref(), Some("web-1.example"));
        assert!(!s.errors_remount_ro && s.xfs_zero_log);
        assert_eq!(parse("vmrescue.fsck_timeout=90").0.fsck_timeout_secs, 90);
        assert_eq!(parse("vmrescue.fsck_timeout=0").1.len(), 1);
        assert_eq!(parse("vmrescue.disks=2").0.disks, Some(2));
        for bad in ["0", "65", "-1", "two"] {
            let (s, w) = parse(&format!("vmrescue.disks={bad}"));
            assert_eq!((s.disks, w.len()), (None, 1), "{bad}");
        }
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
        assert!(parse("vmrescue.xfs_zero_log").0.xfs_zero_log);
        assert!(parse("vmrescue.undo=x").1[0].ends_with("; no undo files kept"));
        assert!(parse("vmrescue.mode=x").1[0].ends_with("; using check"));
        assert!(parse("vmrescue.root=").1[0].ends_with("; ignored"));
    }

    #[test]
    fn config_drive_metadata_sets_what_it_may() {
        let mut s = Settings::default();
        let meta = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let w = apply_meta(
            &mut s,
            &meta(&[
                ("vmrescue_mode", "repair"),
                ("vmrescue_hostname", "web-1"),
                ("role", "db"),
                ("vmrescue_port", "x"),
                ("vmrescue_fsck_timeout", "0"),
                ("vmrescue_bogus", "1"),
            ]),
        );
        assert_eq!(s.mode, Mode::Repair);
        assert_eq!(s.hostname.as_deref(), Some("web-1"));
        assert_eq!(s.port, DEFAULT_PORT_NAME);
        assert_eq!(s.fsck_timeout_secs, 1800);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("only the kernel command line"));
        let late: Vec<&str> = PARAMS
            .iter()
            .filter(|p| p.from_meta)
            .map(|p| p.key)
            .collect();
        assert_eq!(
            late,
            [
                "mode",
                "after",
                "root",
                "hostname",
                "errors_remount_ro",
                "xfs_zero_log",
                "btrfs_repair",
                "thin_repair",
                "fsck_timeout"
            ]
        );
    }

    #[test]
    fn settings_drive_words_round_trip() {
        let s = Settings {
            mode: Mode::Repair,
            hostname: Some("db-1".into()),
            ..Settings::default()
        };
        let mut back = Settings::default();
        assert!(apply_words(&mut back, &drive_words(&s)).is_empty());
        assert_eq!(back, s);
        // The host's scratch disks come from its drive, never from a config drive's metadata.
        let s = Settings {
            bootcopy: Some("0b6f1c52-7a8e-4d3b-9c1e-2f4a5b6c7d8e".into()),
            undo: Some("1b6f1c52-7a8e-4d3b-9c1e-2f4a5b6c7d8e".into()),
            ..Settings::default()
        };
        let words = drive_words(&s);
        assert!(words.contains("vmrescue.bootcopy=0b6f1c52"), "{words}");
        let mut back = Settings::default();
        assert!(apply_words(&mut back, &words).is_empty());
        assert_eq!(back, s);
        let mut meta = Settings::default();
        let w = apply_meta(
            &mut meta,
            &[("vmrescue_bootcopy".into(), s.bootcopy.clone().unwrap())],
        );
        assert_eq!((meta.bootcopy, w.len()), (None, 1), "{w:?}");
        // What the drive may not carry, and what is not ours, is refused with a warning.
        let mut back = Settings::default();
        let w = apply_words(
            &mut back,
            "vmrescue.port=evil vmrescue.bogus=1 quiet vmrescue.mode=x",
        );
        assert_eq!(back, Settings::default());
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].contains("only the kernel command line"), "{w:?}");
    }

    #[test]
    fn host_validates_with_the_agents_rules() {
        assert_eq!(validate(&Settings::default()), Ok(()));
        let bad = Settings {
            hostname: Some("-bad".into()),
            ..Settings::default()
        };
        let e = validate(&bad).unwrap_err();
        assert!(e.contains("vmrescue.hostname") && e.contains("-bad"), "{e}");
        let bad = Settings {
            fsck_timeout_secs: 0,
            ..Settings::default()
        };
        assert!(validate(&bad).unwrap_err().contains("fsck_timeout"));
    }

    #[test]
    fn bad_values_warn_and_keep_defaults() {
        let (s, w) = parse(
            "vmrescue.mode=fix vmrescue.port=../../etc vmrescue.after= vmrescue.settle=x vmrescue.bogus",
        );
        assert_eq!(s, Settings::default());
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w[1].contains("../../etc"));
        assert!(w[4].contains("vmrescue.bogus"));
    }
}
