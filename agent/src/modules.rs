//! Kernel module loading without modprobe or udev. The image builder resolved the dependency
//! closure (modules.dep and modules.softdep) and wrote the modules in load order to
//! [`LOAD_LIST`]; this loads them with `finit_module`.

use std::fs::File;

/// Where the image builder puts the ordered module list.
pub const LOAD_LIST: &str = "/etc/vmrescue/modules.load";

/// One line of the load list: `PATH` or `PATH optional` (an alternative provider of a soft
/// dependency, e.g. crc32c_intel, which fails on CPUs without SSE4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub optional: bool,
}

pub fn parse_load_list(text: &str) -> Vec<Entry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let path = words.next().unwrap_or_default().to_owned();
            let optional = words.any(|w| w == "optional");
            Entry { path, optional }
        })
        .collect()
}

/// Result of loading the list.
#[derive(Debug, Default)]
pub struct Loaded {
    pub loaded: usize,
    pub already: usize,
    /// Failures of required modules, as report warnings.
    pub failed: Vec<String>,
    /// Failures of optional modules (informational).
    pub optional_failed: Vec<String>,
}

pub fn load_all(entries: &[Entry]) -> Loaded {
    let mut out = Loaded::default();
    for e in entries {
        match load_one(&e.path) {
            Ok(()) => out.loaded += 1,
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

fn load_one(path: &str) -> Result<(), rustix::io::Errno> {
    let file = File::open(path).map_err(|e| {
        e.raw_os_error()
            .map(rustix::io::Errno::from_raw_os_error)
            .unwrap_or(rustix::io::Errno::IO)
    })?;
    rustix::system::finit_module(&file, c"", 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list() {
        let list = "# comment\n/lib/modules/6.1/kernel/lib/crc16.ko\n\n  /lib/modules/6.1/kernel/arch/x86/crypto/crc32c-intel.ko optional\n";
        let e = parse_load_list(list);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].path, "/lib/modules/6.1/kernel/lib/crc16.ko");
        assert!(!e[0].optional);
        assert!(e[1].optional);
    }

    #[test]
    fn missing_file_is_a_reported_failure() {
        let out = load_all(&[
            Entry {
                path: "/nonexistent/a.ko".into(),
                optional: false,
            },
            Entry {
                path: "/nonexistent/b.ko".into(),
                optional: true,
            },
        ]);
        assert_eq!(out.loaded, 0);
        assert_eq!(out.failed.len(), 1);
        assert!(out.failed[0].contains("/nonexistent/a.ko"));
        assert_eq!(out.optional_failed.len(), 1);
    }
}
