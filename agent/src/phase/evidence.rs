//! Gathering the evidence of a lost `/etc` (see [`crate::plan::evidence`]): the root's own
//! `/home`, the journal and syslog on the root, and every other filesystem mounted read-only
//! for a look at its top level and its recorded last mount point.

use std::path::Path;

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::{Report, Step};

use crate::inspect::MountedTree;
use crate::plan::evidence::{self, Evidence, MountHint};
use crate::reporter::Reporter;

/// Most of a journal file read (its data objects are anywhere in it).
const MAX_JOURNAL: usize = 16 << 20;
/// Most of a text log read.
const MAX_LOG: usize = 2 << 20;

/// What the root (`tree`, on `root`) and the report's other filesystems show.
pub fn gather(tree: &dyn Tree, root: &str, report: &Report, rep: &mut Reporter) -> Evidence {
    let mut ev = Evidence {
        homes: evidence::homes_in(tree, "/home", "/home", root),
        hostname: hostname(tree),
        mounts: Vec::new(),
        sudoers: sudoers(tree),
        dhcp: Vec::new(),
    };
    let (dhcp, leased_name) = leases(tree);
    ev.dhcp = dhcp;
    if ev.hostname.is_none() {
        ev.hostname = leased_name.or_else(|| {
            let file = "/var/lib/cloud/data/previous-hostname";
            let text = tree.read(file, 4096)?;
            let name = String::from_utf8_lossy(&text).trim().to_owned();
            vmrescue_protocol::params::valid_hostname(&name)
                .then(|| (name, format!("cloud-init's {file}")))
        });
    }
    for f in report.filesystems.iter().filter(|f| f.device != root) {
        let fstype = FsType::parse(&f.fstype);
        if !fstype.is_mountable() || f.mountpoint.is_some() {
            continue;
        }
        let last = (fstype.is_ext())
            .then(|| crate::disks::probe_ext(Path::new(&f.device)).ok().flatten())
            .flatten()
            .and_then(|sb| sb.last_mounted);
        let name = f.device.trim_start_matches("/dev/").replace('/', "-");
        let homes =
            match MountedTree::mount_in(&f.device, fstype, &format!("evidence-{name}"), None) {
                Ok(t) => evidence::homes_in(&t, "/", "/home", &f.device),
                Err(e) => {
                    rep.warn(
                        Step::Plan,
                        Some(&f.device),
                        format!("{e}; not looked at for what /etc had"),
                    );
                    Vec::new()
                }
            };
        let hint = match (&last, homes.is_empty()) {
            (Some(mp), _) => Some((mp.clone(), "its superblock's last-mounted path".to_owned())),
            (None, false) => Some((
                "/home".to_owned(),
                format!(
                    "it holds the home directories of {}",
                    homes
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            (None, true) => None,
        };
        if let Some((mountpoint, source)) = hint {
            let is_home = mountpoint == "/home";
            ev.mounts.push(MountHint {
                device: f.device.clone(),
                mountpoint,
                source,
            });
            if is_home && ev.homes.is_empty() {
                ev.homes = homes;
            }
        }
    }
    ev
}

/// A thing found and where (a log, a lease file).
type Sourced = (String, String);

/// The interfaces the guest's dhclient leased addresses on, and the newest leased host name.
fn leases(tree: &dyn Tree) -> (Vec<Sourced>, Option<Sourced>) {
    let mut ifaces: Vec<(String, String)> = Vec::new();
    let mut host = None;
    let mut files = tree.list("/var/lib/dhcp");
    files.sort();
    for f in files.into_iter().filter(|f| f.ends_with(".leases")) {
        let path = format!("/var/lib/dhcp/{f}");
        let Some(text) = tree.read(&path, MAX_LOG) else {
            continue;
        };
        let (found, name) = evidence::dhclient_leases(&String::from_utf8_lossy(&text));
        for i in found {
            if !ifaces.iter().any(|(have, _)| *have == i) {
                ifaces.push((i, path.clone()));
            }
        }
        if let Some(n) = name {
            host = Some((n, format!("the DHCP lease file {path}")));
        }
    }
    (ifaces, host)
}

/// The users the journal or the auth log show running commands through sudo.
fn sudoers(tree: &dyn Tree) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |users: Vec<String>, source: &str| {
        for u in users {
            if !out.iter().any(|(have, _)| *have == u) {
                out.push((u, source.to_owned()));
            }
        }
    };
    let mut dirs = tree.list("/var/log/journal");
    dirs.sort();
    for d in dirs {
        let file = format!("/var/log/journal/{d}/system.journal");
        if let Some(data) = tree.read(&file, MAX_JOURNAL) {
            add(
                evidence::sudoers_from_journal(&data),
                &format!("the journal {file}"),
            );
        }
    }
    for log in ["/var/log/auth.log", "/var/log/secure"] {
        if let Some(text) = tree.read(log, MAX_LOG) {
            add(
                evidence::sudoers_from_syslog(&String::from_utf8_lossy(&text)),
                log,
            );
        }
    }
    out
}

/// The host name the journal or, failing that, syslog names.
fn hostname(tree: &dyn Tree) -> Option<(String, String)> {
    let mut dirs = tree.list("/var/log/journal");
    dirs.sort();
    for d in dirs {
        let file = format!("/var/log/journal/{d}/system.journal");
        if let Some(name) = tree
            .read(&file, MAX_JOURNAL)
            .and_then(|data| evidence::hostname_from_journal(&data))
        {
            return Some((name, format!("the journal {file}")));
        }
    }
    ["/var/log/syslog", "/var/log/messages"]
        .into_iter()
        .find_map(|log| {
            let text = tree.read(log, MAX_LOG)?;
            let name = evidence::hostname_from_syslog(&String::from_utf8_lossy(&text))?;
            Some((name, log.to_owned()))
        })
}
