//! What a guest whose `/etc` was lost left elsewhere about what it held (pure): its users' home
//! directories and their owners (the accounts), the users other evidence names, the host name
//! its text logs carry (syslog lines; the journal is read in [`super::journal`]), and where its
//! other filesystems were mounted.
//! All of it is guest data: bounded, checked, and only ever a reviewed suggestion.

use std::ops::RangeInclusive;

use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::params::valid_hostname;
use vmrescue_protocol::secrets::access::valid_user;

/// Debian's range of regular users' ids (`FIRST_UID`..`LAST_UID` of adduser).
pub const USER_IDS: RangeInclusive<u32> = 1000..=59999;
/// Most homes taken from one directory.
const MAX_HOMES: usize = 200;

/// A user's home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Its path on the running guest (`/home/alice`).
    pub dir: String,
    /// The device it was found on.
    pub seen_on: String,
}

/// A regular user other evidence names (a login in the journal, a mail spool, a crontab).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserHint {
    pub name: String,
    pub uid: u32,
    pub source: String,
}

/// Where a filesystem was mounted, and what says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountHint {
    pub device: String,
    pub mountpoint: String,
    pub source: String,
}

/// Everything found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    pub homes: Vec<Home>,
    /// Users named elsewhere, for those without a home directory found.
    pub users: Vec<UserHint>,
    /// The host name and the log that names it.
    pub hostname: Option<(String, String)>,
    pub mounts: Vec<MountHint>,
    /// Users the logs show running commands through sudo, and the log.
    pub sudoers: Vec<(String, String)>,
    /// Interfaces the guest's DHCP clients leased addresses on.
    pub dhcp: Vec<Lease>,
}

/// The DHCP client that leased an address: what configured the guest's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// ISC dhclient (ifupdown's).
    Dhclient,
    /// NetworkManager, with the connection's UUID where its lease file names it.
    NetworkManager {
        connection: Option<String>,
    },
    Networkd,
}

/// An interface a DHCP client leased an address on, and what says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub iface: String,
    pub client: Client,
    pub source: String,
}

/// A network interface's name as the kernel allows it (at most 15 bytes, no `/`), and only
/// the characters names have in practice.
pub fn valid_iface(i: &str) -> bool {
    (1..=15).contains(&i.len())
        && i.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && i != "."
        && i != ".."
}

/// The connection UUID and interface a NetworkManager lease file's name carries
/// (`internal-UUID-IFACE.lease`, `dhclient-UUID-IFACE.lease`).
pub fn nm_lease_name(file: &str) -> Option<(String, String)> {
    let rest = file.strip_suffix(".lease")?;
    let rest = rest
        .strip_prefix("internal-")
        .or_else(|| rest.strip_prefix("dhclient-"))?;
    let (uuid, iface) = (rest.get(..36)?, rest.get(36..)?.strip_prefix('-')?);
    let is_uuid = uuid.bytes().filter(|&b| b == b'-').count() == 4
        && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (is_uuid && valid_iface(iface)).then(|| (uuid.to_ascii_lowercase(), iface.to_owned()))
}

/// Nothing found (or not looked for: `/etc` is there).
pub static NO_EVIDENCE: Evidence = Evidence {
    homes: Vec::new(),
    users: Vec::new(),
    hostname: None,
    mounts: Vec::new(),
    sudoers: Vec::new(),
    dhcp: Vec::new(),
};

impl Evidence {
    /// The mount point evidence gives `device`.
    pub fn mount_of(&self, device: &str) -> Option<&MountHint> {
        self.mounts.iter().find(|m| m.device == device)
    }
}

/// The home directories in `dir` of `tree`: directories named like a user and owned by a
/// regular user's id, at `base/NAME` on the running guest, found on `device`.
pub fn homes_in(tree: &dyn Tree, dir: &str, base: &str, device: &str) -> Vec<Home> {
    let mut names = tree.list(dir);
    names.sort();
    names
        .into_iter()
        .filter(|n| valid_user(n) && !n.ends_with('$'))
        .filter_map(|n| {
            let path = format!("{}/{n}", dir.trim_end_matches('/'));
            if !tree.is_dir(&path) {
                return None;
            }
            let (uid, gid) = tree.owner(&path)?;
            USER_IDS.contains(&uid).then(|| Home {
                dir: format!("{}/{n}", base.trim_end_matches('/')),
                name: n,
                uid,
                gid,
                seen_on: device.to_owned(),
            })
        })
        .take(MAX_HOMES)
        .collect()
}

pub(super) fn usable(name: &str) -> Option<String> {
    (valid_hostname(name) && name != "localhost" && !name.starts_with("localhost."))
        .then(|| name.to_owned())
}

/// The host name the newest syslog line names: `Dec  7 10:00:00 NAME prog[1]: ...`
/// (traditional) or `2026-12-07T10:00:00.1+00:00 NAME prog[1]: ...` (RFC 3339).
pub fn hostname_from_syslog(text: &str) -> Option<String> {
    const MONTHS: &[&str] = &[
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    text.lines().rev().find_map(|line| {
        let w: Vec<&str> = line.split_whitespace().take(5).collect();
        let name = match w.first()? {
            m if MONTHS.contains(m) => w.get(3)?,
            t if t.len() >= 19 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T' => {
                w.get(1)?
            }
            _ => return None,
        };
        usable(name)
    })
}

/// What a dhclient lease file (`/var/lib/dhcp/dhclient*.leases`) says: the interfaces leased
/// on, and the newest lease's host name (`option host-name "web-1";`).
pub fn dhclient_leases(text: &str) -> (Vec<String>, Option<String>) {
    let quoted = |l: &str, key: &str| -> Option<String> {
        let rest = l.trim().strip_prefix(key)?.trim();
        Some(rest.strip_prefix('"')?.split('"').next()?.to_owned())
    };
    let mut ifaces: Vec<String> = Vec::new();
    let mut host = None;
    for line in text.lines() {
        if let Some(i) = quoted(line, "interface") {
            if valid_iface(&i) && !ifaces.contains(&i) {
                ifaces.push(i);
            }
        }
        if let Some(h) = quoted(line, "option host-name").and_then(|h| usable(&h)) {
            host = Some(h);
        }
    }
    (ifaces, host)
}

/// The user of one sudo log message (`alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ;
/// COMMAND=/usr/bin/apt`): only a command sudo ran, never a refusal or a wrong password.
pub(super) fn sudo_user(message: &str) -> Option<String> {
    let (user, rest) = message.trim().split_once(" : ")?;
    let ran = rest.contains("PWD=") && rest.contains("COMMAND=");
    let refused = rest.contains("NOT in sudoers") || rest.contains("incorrect password");
    (ran && !refused && valid_user(user.trim())).then(|| user.trim().to_owned())
}

/// The users a syslog file's sudo lines show running commands (`... sudo:    alice : TTY=...`).
pub fn sudoers_from_syslog(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let at = l.find(" sudo:").or_else(|| l.find(" sudo["))?;
            let rest = &l[at..];
            sudo_user(&rest[rest.find(':')? + 1..])
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Accounts for the `homes` that `passwd` lacks (by name or by id): lines for passwd, group
/// (a group named after the user for an id no group has) and shadow (the password locked),
/// and what the plan says of them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NewAccounts {
    pub passwd: String,
    pub group: String,
    pub shadow: String,
    pub said: Vec<String>,
}

pub fn accounts(
    homes: &[Home],
    users: &[UserHint],
    passwd: &str,
    group: &str,
    shell: &str,
    today: u64,
) -> NewAccounts {
    let field = |text: &str, i: usize| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split(':').nth(i).map(str::to_owned))
            .collect()
    };
    let (mut names, mut uids) = (field(passwd, 0), field(passwd, 2));
    let mut gids = field(group, 2);
    let mut out = NewAccounts::default();
    // The homes first; then users named elsewhere, in Debian's way (a group of their own
    // with their uid as its id, a home under /home).
    let found = homes.iter().map(|h| {
        let said = format!(
            "{} (uid {}) from the home directory {} on {}",
            h.name, h.uid, h.dir, h.seen_on
        );
        (&h.name, h.uid, h.gid, h.dir.clone(), said)
    });
    let named = users.iter().map(|u| {
        let said = format!(
            "{} (uid {}) from {}; no home directory found, so /home/{} and group {} are assumed",
            u.name, u.uid, u.source, u.name, u.uid
        );
        (&u.name, u.uid, u.uid, format!("/home/{}", u.name), said)
    });
    for (name, uid, gid, dir, said) in found.chain(named) {
        let (uid, gid) = (uid.to_string(), gid.to_string());
        if names.contains(name)
            || uids.contains(&uid)
            || !USER_IDS.contains(&uid.parse().unwrap_or(0))
        {
            continue;
        }
        out.passwd
            .push_str(&format!("{name}:x:{uid}:{gid}::{dir}:{shell}\n"));
        out.shadow
            .push_str(&format!("{name}:!:{today}:0:99999:7:::\n"));
        if !gids.contains(&gid) {
            out.group.push_str(&format!("{name}:x:{gid}:\n"));
            gids.push(gid);
        }
        out.said.push(said);
        names.push(name.clone());
        uids.push(uid);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::Guest;
    use std::os::unix::fs::chown;

    #[test]
    fn homes_are_user_owned_directories_named_like_users() {
        let g = Guest::new(&[
            ("/alice/notes", Some("x")),
            ("/bob", None),
            ("/lost+found", None),
            ("/root-owned", None),
            ("/a file", Some("")),
        ]);
        let p = g.dir.path();
        if !rustix::process::geteuid().is_root() {
            return;
        }
        chown(p.join("alice"), Some(1000), Some(1000)).unwrap();
        chown(p.join("bob"), Some(1001), Some(100)).unwrap();
        chown(p.join("lost+found"), Some(1002), Some(1002)).unwrap();
        let homes = homes_in(&g.tree(), "/", "/home", "/dev/vdb");
        let got: Vec<(&str, u32, u32, &str)> = homes
            .iter()
            .map(|h| (h.name.as_str(), h.uid, h.gid, h.dir.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("alice", 1000, 1000, "/home/alice"),
                ("bob", 1001, 100, "/home/bob")
            ]
        );
        assert_eq!(homes[0].seen_on, "/dev/vdb");
    }

    #[test]
    fn syslog_host_names_traditional_and_rfc3339() {
        let text = "Dec  6 09:00:00 old-name kernel: x\nDec  7 10:00:00 web-1 systemd[1]: Started.\nnot a log line\n";
        assert_eq!(hostname_from_syslog(text).as_deref(), Some("web-1"));
        let text = "2026-12-07T10:00:00.123456+00:00 db-2.example.org sshd[9]: Accepted\n";
        assert_eq!(
            hostname_from_syslog(text).as_deref(),
            Some("db-2.example.org")
        );
        assert_eq!(
            hostname_from_syslog("Dec  7 10:00:00 localhost x: y\n"),
            None
        );
        assert_eq!(
            hostname_from_syslog("Dec  7 10:00:00 bad_name! x: y\n"),
            None
        );
    }

    #[test]
    fn sudo_users_from_logs_only_for_commands_run() {
        let log = "Dec  7 10:00:00 web-1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt update\n\
                   Dec  7 10:01:00 web-1 sudo:      bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/sh\n\
                   Dec  7 10:02:00 web-1 sudo:    carol : 3 incorrect password attempts ; TTY=pts/2 ; PWD=/ ; USER=root ; COMMAND=/bin/ls\n\
                   Dec  7 10:03:00 web-1 sudo: pam_unix(sudo:session): session opened for user root\n\
                   2026-12-07T10:04:00.1+00:00 web-1 sudo[99]:     dave : TTY=pts/3 ; PWD=/srv ; USER=root ; COMMAND=/bin/true\n";
        assert_eq!(sudoers_from_syslog(log), ["alice", "dave"]);
    }

    #[test]
    fn dhclient_leases_name_interfaces_and_the_host() {
        let text = "lease {\n  interface \"ens3\";\n  fixed-address 10.0.0.5;\n  option host-name \"old-name\";\n}\nlease {\n  interface \"ens3\";\n  option host-name \"web-1\";\n}\nlease {\n  interface \"bad/../x\";\n}\n";
        let (ifaces, host) = dhclient_leases(text);
        assert_eq!(ifaces, ["ens3"]);
        assert_eq!(host.as_deref(), Some("web-1"));
        assert_eq!(dhclient_leases("garbage\n"), (vec![], None));
    }

    #[test]
    fn network_manager_lease_names() {
        assert_eq!(
            nm_lease_name("internal-0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9-ens3.lease"),
            Some((
                "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9".to_owned(),
                "ens3".to_owned()
            ))
        );
        assert!(
            nm_lease_name("dhclient-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9-enp1s0.lease").is_some()
        );
        assert_eq!(
            nm_lease_name("internal-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9-...lease"),
            None
        );
        assert_eq!(nm_lease_name("internal-short-ens3.lease"), None);
        assert_eq!(nm_lease_name("timestamps"), None);
        assert!(!valid_iface("a/b") && !valid_iface("") && !valid_iface("sixteen-chars-xx"));
    }

    #[test]
    fn accounts_for_homes_passwd_lacks() {
        let home = |name: &str, uid, gid| Home {
            name: name.into(),
            uid,
            gid,
            dir: format!("/home/{name}"),
            seen_on: "/dev/vdb".into(),
        };
        let homes = [
            home("alice", 1000, 1000),
            home("bob", 1001, 100),
            home("root", 1002, 1002),
            home("eve", 0, 0),
        ];
        let users = [
            UserHint {
                name: "carol".into(),
                uid: 1003,
                source: "the mail spool /var/mail/carol".into(),
            },
            UserHint {
                name: "alice".into(),
                uid: 1000,
                source: "the journal".into(),
            },
            UserHint {
                name: "daemon2".into(),
                uid: 999,
                source: "the journal".into(),
            },
        ];
        let a = accounts(
            &homes,
            &users,
            "root:x:0:0:root:/root:/bin/bash\n",
            "root:x:0:\nusers:x:100:\n",
            "/bin/bash",
            20_000,
        );
        assert_eq!(
            a.passwd,
            "alice:x:1000:1000::/home/alice:/bin/bash\nbob:x:1001:100::/home/bob:/bin/bash\n\
             carol:x:1003:1003::/home/carol:/bin/bash\n"
        );
        assert_eq!(
            a.group, "alice:x:1000:\ncarol:x:1003:\n",
            "bob's group 100 exists"
        );
        assert_eq!(
            a.shadow,
            "alice:!:20000:0:99999:7:::\nbob:!:20000:0:99999:7:::\ncarol:!:20000:0:99999:7:::\n"
        );
        assert_eq!(a.said.len(), 3);
        assert_eq!(
            a.said[2],
            "carol (uid 1003) from the mail spool /var/mail/carol; no home directory found, so /home/carol and group 1003 are assumed"
        );
        assert_eq!(
            a.said[0],
            "alice (uid 1000) from the home directory /home/alice on /dev/vdb"
        );
    }
}
