//! Kernel module loading without modprobe or udev, and only what this VM needs. The image
//! builder resolved the dependency closure (modules.dep and modules.softdep) and wrote the
//! modules in load order, each with what it needs first, to [`LOAD_LIST`], and their aliases
//! to [`ALIAS_LIST`]. The agent loads the drivers whose aliases match the devices the VM has
//! (each device's `modalias` in sysfs, again after each round, as loading a bus driver brings
//! its devices), and a filesystem's module only when a filesystem of that type is mounted
//! ([`ensure_fs`]): under TCG every module costs boot time.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

/// Where the image builder puts the ordered module list.
pub const LOAD_LIST: &str = "/etc/vmrescue/modules.load";
/// The carried modules' aliases (`alias PATTERN MODULE`).
pub const ALIAS_LIST: &str = "/etc/vmrescue/modules.alias";
/// Device aliases read at most per round.
const MAX_DEVICES: usize = 4096;
/// Modules loaded whenever the first one is: a SCSI host (ahci through libata, virtio_scsi,
/// ata_piix) scans its ports asynchronously, so its disks' `scsi:t-0x00` aliases may appear
/// only after the last modalias round; the disk driver comes with the midlayer instead.
const TOGETHER: &[(&str, &str)] = &[("scsi_mod", "sd_mod")];

/// One line of the load list: `PATH [optional] [name=NAME] [needs=A,B]`. `optional`: an
/// alternative provider of a soft dependency (e.g. crc32c_intel, which fails on CPUs without
/// SSE4.2), whose failure is no warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub optional: bool,
    pub name: String,
    /// Modules to load first (by name).
    pub needs: Vec<String>,
}

/// `.../crc32c-intel.ko` -> `crc32c_intel`.
fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split(".ko").next().unwrap_or(base).replace('-', "_")
}

pub fn parse_load_list(text: &str) -> Vec<Entry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let path = words.next().unwrap_or_default().to_owned();
            let mut e = Entry {
                name: name_of(&path),
                path,
                optional: false,
                needs: Vec::new(),
            };
            for w in words {
                if w == "optional" {
                    e.optional = true;
                } else if let Some(n) = w.strip_prefix("name=") {
                    e.name = n.to_owned();
                } else if let Some(n) = w.strip_prefix("needs=") {
                    e.needs = n
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
            }
            e
        })
        .collect()
}

/// `alias PATTERN MODULE` lines.
pub fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("alias"), Some(p), Some(m)) => Some((p.to_owned(), m.to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// Whether `text` matches the shell-style `pattern` (`*`, `?`, `[...]`), as modprobe matches
/// a device's modalias against modules.alias.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` class at `p[at]`: whether `c` is in it, and the index after it; `None` if the
/// class is not closed.
fn class(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while let Some(&x) = p.get(i) {
        if x == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            matched |= x <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= x == c;
            i += 1;
        }
        first = false;
    }
    None
}

/// What a round of loading did.
#[derive(Debug, Default)]
pub struct Loaded {
    pub loaded: usize,
    /// The names of the modules loaded.
    pub names: Vec<String>,
    pub already: usize,
    /// Failures of required modules, as report warnings.
    pub failed: Vec<String>,
    /// Failures of optional modules (informational).
    pub optional_failed: Vec<String>,
}

/// The carried modules and which of them are loaded.
pub struct Loader {
    entries: Vec<Entry>,
    aliases: Vec<(String, String)>,
    done: BTreeSet<String>,
    /// Never loaded for the devices present (see [`Loader::skip_for_devices`]).
    skip: BTreeSet<String>,
}

/// The SATA and IDE controllers' drivers: not loaded when the host says no disk is on them
/// (`vmrescue.ata=0`).
pub const ATA_DRIVERS: &[&str] = &["ahci", "ata_piix"];

impl Loader {
    pub fn new(entries: Vec<Entry>, aliases: Vec<(String, String)>) -> Loader {
        Loader {
            entries,
            aliases,
            done: BTreeSet::new(),
            skip: BTreeSet::new(),
        }
    }

    /// Leaves `names` out of what [`Loader::for_devices`] loads (their devices stay without
    /// a driver, and their own dependencies are not loaded for them).
    pub fn skip_for_devices(&mut self, names: &[&str]) {
        self.skip.extend(names.iter().map(|n| n.to_string()));
    }

    /// Whether the image came with aliases (else everything is loaded, as before them).
    pub fn has_aliases(&self) -> bool {
        !self.aliases.is_empty()
    }

    /// Indices of `names` and what they need, in load-list order.
    fn closure(&self, names: &BTreeSet<String>) -> Vec<usize> {
        let mut want: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = names.iter().cloned().collect();
        while let Some(n) = stack.pop() {
            if !want.insert(n.clone()) {
                continue;
            }
            if let Some(e) = self.entries.iter().find(|e| e.name == n) {
                stack.extend(e.needs.iter().cloned());
            }
            for (with, also) in TOGETHER {
                if n == *with {
                    stack.push((*also).to_owned());
                }
            }
        }
        (0..self.entries.len())
            .filter(|&i| want.contains(&self.entries[i].name))
            .collect()
    }

    /// Loads `names` (with what they need) that are not loaded yet.
    pub fn load(&mut self, names: &BTreeSet<String>) -> Loaded {
        let mut out = Loaded::default();
        for i in self.closure(names) {
            let e = self.entries[i].clone();
            if !self.done.insert(e.name.clone()) {
                continue;
            }
            if let Some(w) = crate::late::need(&e.path) {
                log::warn!("{w}");
            }
            match load_one(&e.path) {
                Ok(()) => {
                    out.loaded += 1;
                    out.names.push(e.name.clone());
                }
                Err(rustix::io::Errno::EXIST) => out.already += 1,
                Err(err) => {
                    let msg = format!("module {} did not load: {err}", e.path);
                    if e.optional {
                        log::info!("{msg} (optional)");
                        out.optional_failed.push(msg);
                    } else {
                        log::warn!("{msg}");
                        out.failed.push(msg);
                    }
                }
            }
        }
        out
    }

    /// The modules whose aliases match any of `modaliases` (pure).
    pub fn matching(&self, modaliases: &[String]) -> BTreeSet<String> {
        self.aliases
            .iter()
            .filter(|(p, _)| modaliases.iter().any(|m| glob(p, m)))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The drivers [`Loader::for_devices`] loads for `modaliases` (pure).
    pub fn wanted_for(&self, modaliases: &[String]) -> BTreeSet<String> {
        let mut names = self.matching(modaliases);
        names.retain(|n| !self.skip.contains(n));
        names
    }

    /// Loads the drivers of `modaliases`.
    pub fn for_devices(&mut self, modaliases: &[String]) -> Loaded {
        let names = self.wanted_for(modaliases);
        self.load(&names)
    }

    /// Every carried module (an image without aliases, or no disk found the careful way).
    pub fn everything(&mut self) -> Loaded {
        let names = self.entries.iter().map(|e| e.name.clone()).collect();
        self.load(&names)
    }
}

/// Every device's `modalias` under `sys/bus/*/devices/` (bounded).
pub fn device_modaliases(sys: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(buses) = std::fs::read_dir(sys.join("bus")) else {
        return out;
    };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for d in devices.flatten() {
            if out.len() >= MAX_DEVICES {
                return out;
            }
            if let Ok(m) = std::fs::read_to_string(d.path().join("modalias")) {
                let m = m.trim();
                if !m.is_empty() {
                    out.push(m.to_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn load_one(path: &str) -> Result<(), rustix::io::Errno> {
    let file = File::open(path).map_err(|e| {
        e.raw_os_error()
            .map(rustix::io::Errno::from_raw_os_error)
            .unwrap_or(rustix::io::Errno::IO)
    })?;
    rustix::system::finit_module(&file, c"", 0)
}

/// The agent's loader, once set-up made it (PID 1 is one process; mounts ask it for modules).
static LOADER: Mutex<Option<Loader>> = Mutex::new(None);

/// Keeps `loader` for [`ensure_fs`].
pub fn install(loader: Loader) {
    if let Ok(mut l) = LOADER.lock() {
        *l = Some(loader);
    }
}

/// One more round of drivers for the devices present now (see [`disks::settle`]); returns the
/// names of the modules it loaded.
///
/// [`disks::settle`]: crate::disks::settle
pub fn rescan(sys: &Path) -> Vec<String> {
    let Ok(mut guard) = LOADER.lock() else {
        return Vec::new();
    };
    match guard.as_mut() {
        Some(loader) if loader.has_aliases() => {
            let out = loader.for_devices(&device_modaliases(sys));
            for f in &out.failed {
                log::warn!("{f}");
            }
            out.names
        }
        _ => Vec::new(),
    }
}

/// Loads the modules `names` (and what they need) if the image carries them and they are not
/// loaded (a kernel with them built in carries none: nothing to do). Returns the failures.
pub fn ensure_named(names: &[&str]) -> Vec<String> {
    let Ok(mut guard) = LOADER.lock() else {
        return Vec::new();
    };
    let Some(loader) = guard.as_mut() else {
        return Vec::new();
    };
    let wanted: BTreeSet<String> = names
        .iter()
        .filter(|n| loader.entries.iter().any(|e| e.name == **n))
        .map(|n| n.to_string())
        .collect();
    let out = loader.load(&wanted);
    if out.loaded > 0 {
        log::info!("{} module(s) loaded: {}", out.loaded, out.names.join(" "));
    }
    out.failed
}

/// Loads the module of filesystem type `fstype` (its `fs-TYPE` alias) if it is not loaded:
/// called before every mount. Returns the failures.
pub fn ensure_fs(fstype: &str) -> Vec<String> {
    let Ok(mut guard) = LOADER.lock() else {
        return Vec::new();
    };
    let Some(loader) = guard.as_mut() else {
        return Vec::new();
    };
    let alias = format!("fs-{fstype}");
    let names: BTreeSet<String> = loader
        .aliases
        .iter()
        .filter(|(p, _)| *p == alias)
        .map(|(_, m)| m.clone())
        .collect();
    let out = loader.load(&names);
    if out.loaded > 0 {
        log::info!("{fstype}: {} module(s) loaded for the mount", out.loaded);
    }
    out.failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list() {
        let list = "# comment\n/lib/modules/6.1/kernel/lib/crc16.ko\n\n  /lib/modules/6.1/kernel/arch/x86/crypto/crc32c-intel.ko optional\n/lib/modules/6.1/kernel/fs/ext4/ext4.ko name=ext4 needs=crc16,jbd2\n";
        let e = parse_load_list(list);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].path, "/lib/modules/6.1/kernel/lib/crc16.ko");
        assert_eq!(e[0].name, "crc16");
        assert!(!e[0].optional);
        assert!(e[1].optional);
        assert_eq!(e[1].name, "crc32c_intel");
        assert_eq!(e[2].needs, ["crc16", "jbd2"]);
    }

    #[test]
    fn globs_as_modprobe_matches_modaliases() {
        let virtio_pci = "pci:v00001AF4d*sv*sd*bc*sc*i*";
        assert!(glob(
            virtio_pci,
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"
        ));
        assert!(!glob(
            virtio_pci,
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"
        ));
        assert!(glob("virtio:d00000002v*", "virtio:d00000002v00001AF4"));
        assert!(!glob("virtio:d00000002v*", "virtio:d00000003v00001AF4"));
        assert!(glob("scsi:t-0x0[05]*", "scsi:t-0x05"));
        assert!(!glob("scsi:t-0x0[!05]*", "scsi:t-0x05"));
        assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
        assert!(glob("*", "") && glob("**x", "x") && !glob("x", "xy"));
        assert!(glob("fs-ext4", "fs-ext4") && !glob("fs-ext4", "fs-ext3"));
    }

    fn loader() -> Loader {
        Loader::new(
            parse_load_list(
                "/m/virtio_ring.ko\n/m/virtio.ko needs=virtio_ring\n/m/virtio_pci.ko needs=virtio\n\
                 /m/virtio_blk.ko needs=virtio\n/m/ahci.ko\n/m/jbd2.ko\n/m/ext4.ko needs=jbd2\n",
            ),
            parse_aliases(
                "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias virtio:d00000002v* virtio_blk\n\
                 alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias fs-ext4 ext4\n",
            ),
        )
    }

    #[test]
    fn only_the_drivers_of_the_devices_present() {
        let l = loader();
        let m = l.matching(&["pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00".into()]);
        assert_eq!(m.into_iter().collect::<Vec<_>>(), ["virtio_pci"]);
        let names: BTreeSet<String> = ["virtio_blk".to_owned()].into();
        let order: Vec<&str> = l
            .closure(&names)
            .into_iter()
            .map(|i| l.entries[i].name.as_str())
            .collect();
        assert_eq!(
            order,
            ["virtio_ring", "virtio", "virtio_blk"],
            "dependencies first"
        );
        assert!(l.matching(&["platform:serial8250".into()]).is_empty());
    }

    #[test]
    fn a_scsi_host_brings_the_disk_driver_before_its_disks_show() {
        let l = Loader::new(
            parse_load_list(
                "/m/scsi_mod.ko\n/m/libata.ko needs=scsi_mod\n/m/ahci.ko needs=libata\n\
                 /m/sd_mod.ko needs=scsi_mod\n/m/virtio_blk.ko\n",
            ),
            parse_aliases("alias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias scsi:t-0x00* sd_mod\n"),
        );
        let names = l.matching(&["pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".into()]);
        let order: Vec<&str> = l
            .closure(&names)
            .into_iter()
            .map(|i| l.entries[i].name.as_str())
            .collect();
        assert_eq!(order, ["scsi_mod", "libata", "ahci", "sd_mod"]);
        let virtio: BTreeSet<String> = ["virtio_blk".to_owned()].into();
        assert_eq!(l.closure(&virtio).len(), 1, "no SCSI, no sd_mod");
    }

    #[test]
    fn without_ata_disks_the_machines_built_in_controllers_get_no_driver() {
        let mut l = loader();
        let present = [
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_owned(),
            "virtio:d00000002v00001AF4".to_owned(),
        ];
        let all: Vec<String> = l.wanted_for(&present).into_iter().collect();
        assert_eq!(all, ["ahci", "virtio_blk"]);
        l.skip_for_devices(ATA_DRIVERS);
        let some: Vec<String> = l.wanted_for(&present).into_iter().collect();
        assert_eq!(some, ["virtio_blk"]);
    }

    #[test]
    fn a_failed_load_is_reported_once() {
        let mut l = loader();
        let names: BTreeSet<String> = ["ext4".to_owned()].into();
        let out = l.load(&names);
        assert_eq!(out.failed.len(), 2, "jbd2 and ext4: {:?}", out.failed);
        assert!(out.failed[1].contains("/m/ext4.ko"));
        assert!(l.load(&names).failed.is_empty(), "not tried again");
    }

    #[test]
    fn modaliases_are_read_from_every_bus() {
        let d = tempfile::tempdir().unwrap();
        for (bus, dev, alias) in [
            ("pci", "0000:00:01.0", "pci:v00001AF4d00001001\n"),
            ("virtio", "virtio0", "virtio:d00000002v00001AF4\n"),
            ("virtio", "virtio1", ""),
        ] {
            let p = d.path().join("bus").join(bus).join("devices").join(dev);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("modalias"), alias).unwrap();
        }
        assert_eq!(
            device_modaliases(d.path()),
            ["pci:v00001AF4d00001001", "virtio:d00000002v00001AF4"]
        );
    }
}
