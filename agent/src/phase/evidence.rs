//! Gathering the evidence of a lost `/etc` (see [`crate::plan::evidence`]): the root's own
//! `/home`, mail spools and crontabs, the journal ([`crate::plan::journal`]) and syslog on the
//! root, DHCP leases, and every other filesystem mounted read-only for a look at its top level
//! and its recorded last mount point.

use std::path::Path;

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::{Report, Step};

use crate::inspect::MountedTree;
use crate::plan::evidence::{self, Client, Evidence, Lease, MountHint, UserHint};
use crate::plan::journal::{self, Mounted};
use crate::reporter::Reporter;

/// Most of a journal file read (its data objects are anywhere in it), and most files read.
const MAX_JOURNAL: usize = 16 << 20;
const MAX_JOURNALS: usize = 8;
/// Most of a text log read (its newest lines).
const MAX_LOG: usize = 2 << 20;

/// What the root (`tree`, on `root`) and the report's other filesystems show.
pub fn gather(tree: &dyn Tree, root: &str, report: &Report, rep: &mut Reporter) -> Evidence {
    let said = Journal::read(tree);
    let mut ev = Evidence {
        homes: evidence::homes_in(tree, "/home", "/home", root),
        users: users(tree, &said),
        hostname: said.hostname.clone().or_else(|| syslog_hostname(tree)),
        mounts: Vec::new(),
        sudoers: sudoers(tree, &said),
        dhcp: Vec::new(),
    };
    let (dhcp, leased_name) = leases(tree, &said);
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
            .and_then(|sb| sb.last_mounted)
            // Where an earlier rescue mounted it says nothing of the guest.
            .filter(|m| !m.starts_with(crate::inspect::BASE));
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
        // What the guest's own boots did first, then what the filesystem recorded, then what
        // it holds.
        let booted = said.mount_of(f).map(|(m, file)| {
            (
                m.mountpoint.clone(),
                format!("the journal {file}: {}", m.how),
            )
        });
        let hint = booted.or_else(|| match (&last, homes.is_empty()) {
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
        });
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

/// What the guest's journal files say, each thing with the file that says it.
#[derive(Default)]
struct Journal {
    hostname: Option<Sourced>,
    sudoers: Vec<Sourced>,
    logins: Vec<(String, u32, String)>,
    dhcp: Vec<(String, Client, String)>,
    /// Newest last.
    mounts: Vec<(Mounted, String)>,
}

impl Journal {
    /// The journal files under `/var/log/journal/*/` (archived ones, then the active
    /// `system.journal`, per machine directory; at most [`MAX_JOURNALS`], the newest).
    fn files(tree: &dyn Tree) -> Vec<String> {
        let mut out = Vec::new();
        let mut dirs = tree.list("/var/log/journal");
        dirs.sort();
        for d in dirs {
            let dir = format!("/var/log/journal/{d}");
            let mut names: Vec<String> = tree
                .list(&dir)
                .into_iter()
                .filter(|n| n.ends_with(".journal") && !n.starts_with('.'))
                .collect();
            // `system@...` (archived, named by sequence) before the active `system.journal`.
            names.sort_by_key(|n| (n == "system.journal", n.clone()));
            out.extend(names.into_iter().map(|n| format!("{dir}/{n}")));
        }
        let skip = out.len().saturating_sub(MAX_JOURNALS);
        out.split_off(skip)
    }

    fn read(tree: &dyn Tree) -> Journal {
        let mut j = Journal::default();
        for file in Self::files(tree) {
            let Some(data) = tree.read(&file, MAX_JOURNAL) else {
                continue;
            };
            let Ok(entries) = vmrescue_discovery::journal::entries(&data) else {
                continue;
            };
            let source = format!("the journal {file}");
            if let Some(name) = journal::hostname(&entries) {
                j.hostname = Some((name, source.clone()));
            }
            for u in journal::sudoers(&entries) {
                if !j.sudoers.iter().any(|(have, _)| *have == u) {
                    j.sudoers.push((u, source.clone()));
                }
            }
            for (u, uid) in journal::logins(&entries) {
                if !j.logins.iter().any(|(have, _, _)| *have == u) {
                    j.logins.push((u, uid, source.clone()));
                }
            }
            for (iface, client) in journal::dhcp(&entries) {
                if !j.dhcp.iter().any(|(have, _, _)| *have == iface) {
                    j.dhcp.push((iface, client, file.clone()));
                }
            }
            j.mounts.extend(
                journal::mounts(&entries)
                    .into_iter()
                    .map(|m| (m, file.clone())),
            );
        }
        j
    }

    /// Where the newest boot that names `f` (by UUID, label, or the kernel's name for it then)
    /// mounted it.
    fn mount_of(&self, f: &vmrescue_protocol::Filesystem) -> Option<&(Mounted, String)> {
        let uuid = f.uuid.as_ref().map(|u| u.to_ascii_lowercase());
        let names = |m: &Mounted, how: usize| match how {
            0 => m.uuid.is_some() && m.uuid == uuid,
            1 => m.label.is_some() && m.label == f.label,
            _ => {
                m.uuid.is_none()
                    && m.label.is_none()
                    && m.kernel.as_deref() == f.device.strip_prefix("/dev/")
            }
        };
        (0..3).find_map(|how| self.mounts.iter().rev().find(|(m, _)| names(m, how)))
    }
}

/// Regular users named by the journal's logins, mail spools and crontabs (the file's owner).
fn users(tree: &dyn Tree, said: &Journal) -> Vec<UserHint> {
    let mut out: Vec<UserHint> = said
        .logins
        .iter()
        .map(|(name, uid, file)| UserHint {
            name: name.clone(),
            uid: *uid,
            source: format!("a login in {file}"),
        })
        .collect();
    for (dir, what) in [
        ("/var/mail", "the mail spool"),
        ("/var/spool/mail", "the mail spool"),
        ("/var/spool/cron/crontabs", "the crontab"),
    ] {
        let mut names = tree.list(dir);
        names.sort();
        for name in names.into_iter().take(200) {
            let path = format!("{dir}/{name}");
            let uid = tree.owner(&path).map(|(uid, _)| uid);
            let Some(uid) = uid.filter(|u| evidence::USER_IDS.contains(u)) else {
                continue;
            };
            let fresh = !out.iter().any(|u| u.name == name || u.uid == uid);
            if fresh && vmrescue_protocol::secrets::access::valid_user(&name) {
                out.push(UserHint {
                    name,
                    uid,
                    source: format!("{what} {path}, owned by uid {uid}"),
                });
            }
        }
    }
    out
}

/// A thing found and where (a log, a lease file).
type Sourced = (String, String);

/// The interfaces the guest's DHCP clients leased addresses on (dhclient's and
/// NetworkManager's lease files, then the journal), and the newest host name a lease gave.
fn leases(tree: &dyn Tree, said: &Journal) -> (Vec<Lease>, Option<Sourced>) {
    let mut out: Vec<Lease> = Vec::new();
    let mut add = |iface: String, client: Client, source: String| {
        if !out.iter().any(|l| l.iface == iface) {
            out.push(Lease {
                iface,
                client,
                source,
            });
        }
    };
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
            add(i, Client::Dhclient, path.clone());
        }
        if let Some(n) = name {
            host = Some((n, format!("the DHCP lease file {path}")));
        }
    }
    let mut files = tree.list("/var/lib/NetworkManager");
    files.sort();
    for f in files {
        if let Some((uuid, iface)) = evidence::nm_lease_name(&f) {
            let client = Client::NetworkManager {
                connection: Some(uuid),
            };
            add(iface, client, format!("/var/lib/NetworkManager/{f}"));
        }
    }
    for (iface, client, file) in &said.dhcp {
        add(iface.clone(), client.clone(), format!("the journal {file}"));
    }
    (out, host)
}

/// The users the journal or the auth log show running commands through sudo.
fn sudoers(tree: &dyn Tree, said: &Journal) -> Vec<Sourced> {
    let mut out = said.sudoers.clone();
    for log in ["/var/log/auth.log", "/var/log/secure"] {
        if let Some(text) = tree.read_tail(log, MAX_LOG) {
            for u in evidence::sudoers_from_syslog(&String::from_utf8_lossy(&text)) {
                if !out.iter().any(|(have, _)| *have == u) {
                    out.push((u, log.to_owned()));
                }
            }
        }
    }
    out
}

/// The host name syslog names.
fn syslog_hostname(tree: &dyn Tree) -> Option<Sourced> {
    ["/var/log/syslog", "/var/log/messages"]
        .into_iter()
        .find_map(|log| {
            let text = tree.read_tail(log, MAX_LOG)?;
            let name = evidence::hostname_from_syslog(&String::from_utf8_lossy(&text))?;
            Some((name, log.to_owned()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::Guest;
    use vmrescue_discovery::journal::write;

    const STARTING: &str = "7d4958e842da4a758f6c1cdc7b36dcc5";
    const STARTED: &str = "39f53479d3a045ac8e11786248231fbf";

    /// A compact journal file of entries given as `FIELD=value` lists.
    fn journal(entries: &[&[&str]]) -> Vec<u8> {
        let list: Vec<(u64, Vec<&[u8]>)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u64 + 1, e.iter().map(|f| f.as_bytes()).collect()))
            .collect();
        write::journal(&list, true, &[])
    }

    fn fs(device: &str, uuid: Option<&str>, label: Option<&str>) -> vmrescue_protocol::Filesystem {
        vmrescue_protocol::Filesystem {
            device: device.into(),
            fstype: "xfs".into(),
            uuid: uuid.map(str::to_uppercase),
            label: label.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn journal_files_newest_last_with_names_logins_and_mounts() {
        let g = Guest::new(&[("/var/log/journal/m/x", Some("")), ("/var/mail", None)]);
        let dir = g.dir.path().join("var/log/journal/m");
        let mount = |unit: &str, kernel: &str, host: &str| {
            let starting = format!("MESSAGE_ID={STARTING}");
            let started = format!("MESSAGE_ID={STARTED}");
            let unit = format!("UNIT={unit}");
            let kernel = format!("MESSAGE={kernel}");
            let host = format!("_HOSTNAME={host}");
            journal(&[
                &["_PID=1", &unit, &starting, &host],
                &["_TRANSPORT=kernel", &kernel, &host],
                &["_PID=1", &unit, &started, &host],
                &[
                    "MESSAGE=pam_unix(login:session): session opened for user bob(uid=1001) by LOGIN(uid=0)",
                    &host,
                ],
            ])
        };
        std::fs::write(
            dir.join("system@0001.journal"),
            mount(
                "srv.mount",
                "EXT4-fs (vdc): mounted filesystem with ordered data mode.",
                "old-name",
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("system.journal"),
            mount(
                "data.mount",
                "XFS (vdc): Mounting V5 Filesystem 11111111-2222-3333-4444-555555555555",
                "web-7",
            ),
        )
        .unwrap();
        std::fs::write(dir.join("not-a-journal.journal"), b"garbage").unwrap();
        let tree = g.tree();
        assert_eq!(
            Journal::files(&tree),
            [
                "/var/log/journal/m/not-a-journal.journal",
                "/var/log/journal/m/system@0001.journal",
                "/var/log/journal/m/system.journal"
            ]
        );
        let said = Journal::read(&tree);
        assert_eq!(
            said.hostname,
            Some((
                "web-7".to_owned(),
                "the journal /var/log/journal/m/system.journal".to_owned()
            ))
        );
        // The newest boot's word: vdc was mounted at /data, by its UUID.
        let xfs = fs(
            "/dev/vdc",
            Some("11111111-2222-3333-4444-555555555555"),
            None,
        );
        let (m, file) = said.mount_of(&xfs).unwrap();
        assert_eq!(m.mountpoint, "/data");
        assert_eq!(file, "/var/log/journal/m/system.journal");
        // Without a UUID the kernel's name alone names only a mount that had nothing better.
        let (m, _) = said.mount_of(&fs("/dev/vdc", None, None)).unwrap();
        assert_eq!(m.mountpoint, "/srv");
        assert!(said.mount_of(&fs("/dev/vdd", None, Some("x"))).is_none());

        let users = users(&tree, &said);
        assert_eq!(users.len(), 1);
        assert_eq!((users[0].name.as_str(), users[0].uid), ("bob", 1001));
        assert!(users[0].source.contains("system@0001.journal"), "{users:?}");
        if rustix::process::geteuid().is_root() {
            let mail = g.dir.path().join("var/mail");
            std::fs::write(mail.join("carol"), b"").unwrap();
            std::fs::write(mail.join("bob"), b"").unwrap();
            std::fs::write(mail.join("daemon"), b"").unwrap();
            std::os::unix::fs::chown(mail.join("carol"), Some(1003), Some(8)).unwrap();
            std::os::unix::fs::chown(mail.join("bob"), Some(1001), Some(8)).unwrap();
            let users = super::users(&tree, &said);
            let got: Vec<(&str, u32)> = users.iter().map(|u| (u.name.as_str(), u.uid)).collect();
            assert_eq!(got, [("bob", 1001), ("carol", 1003)]);
            assert_eq!(
                users[1].source,
                "the mail spool /var/mail/carol, owned by uid 1003"
            );
        }
    }
}
