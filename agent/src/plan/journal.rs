//! What a guest's systemd journal says about what its lost `/etc` held (pure, over the entries
//! [`vmrescue_discovery::journal`] reads from the guest's journal files): its host name, who
//! logged in (with their uid) and who ran commands through sudo, and where its filesystems
//! were mounted at boot. Every value is guest data: checked before it is used, and only ever a
//! reviewed suggestion.

use std::collections::BTreeMap;

use vmrescue_discovery::journal::Entry;
use vmrescue_protocol::secrets::access::valid_user;

use super::evidence::{sudo_user, usable, valid_iface, Client, USER_IDS};

/// systemd's message ids for a unit's start job beginning, done and failed.
const STARTING: &[u8] = b"7d4958e842da4a758f6c1cdc7b36dcc5";
const STARTED: &[u8] = b"39f53479d3a045ac8e11786248231fbf";
const FAILED: &[u8] = b"be02cf6855d2428ba40df7e9d022f03d";

/// The host name the entries carry most often (the newest of equals): every entry names it.
pub fn hostname(entries: &[Entry]) -> Option<String> {
    let mut counts: BTreeMap<&[u8], (usize, usize)> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(name) = e.field("_HOSTNAME") {
            let seen = counts.entry(name).or_default();
            *seen = (seen.0 + 1, i);
        }
    }
    let mut best: Vec<(&[u8], (usize, usize))> = counts.into_iter().collect();
    best.sort_by_key(|b| std::cmp::Reverse(b.1));
    best.into_iter()
        .find_map(|(name, _)| usable(std::str::from_utf8(name).ok()?))
}

/// The users sudo's messages show running commands.
pub fn sudoers(entries: &[Entry]) -> Vec<String> {
    let mut out: Vec<String> = entries
        .iter()
        .filter(|e| e.field("SYSLOG_IDENTIFIER") == Some(b"sudo"))
        .filter_map(|e| sudo_user(e.text("MESSAGE")?))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The regular users pam_unix saw opening a session, with their uid
/// (`pam_unix(login:session): session opened for user alice(uid=1000) by LOGIN(uid=0)`).
pub fn logins(entries: &[Entry]) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for e in entries {
        let Some(m) = e.text("MESSAGE") else {
            continue;
        };
        let Some(rest) = m
            .split_once("session opened for user ")
            .filter(|(pam, _)| pam.contains("pam_unix("))
            .map(|(_, r)| r)
        else {
            continue;
        };
        let Some((name, rest)) = rest.split_once("(uid=") else {
            continue;
        };
        let uid = rest.split(')').next().and_then(|u| u.parse::<u32>().ok());
        if let Some(uid) = uid.filter(|u| USER_IDS.contains(u)) {
            if valid_user(name) && !out.iter().any(|(n, _)| n == name) {
                out.push((name.to_owned(), uid));
            }
        }
    }
    out
}

/// The interfaces the guest's DHCP clients leased addresses on, and which client:
/// systemd-networkd (`ens3: DHCPv4 address 10.0.0.5/24, gateway ... acquired from ...`),
/// NetworkManager (`dhcp4 (ens3): state changed new lease, ...`) or dhclient
/// (`DHCPREQUEST for 10.0.0.5 on ens3 to 10.0.0.1 port 67`).
pub fn dhcp(entries: &[Entry]) -> Vec<(String, Client)> {
    let mut out: Vec<(String, Client)> = Vec::new();
    for e in entries {
        let (Some(who), Some(m)) = (e.field("SYSLOG_IDENTIFIER"), e.text("MESSAGE")) else {
            continue;
        };
        let found = match who {
            b"systemd-networkd" => m
                .split_once(": DHCPv4 address ")
                .map(|(i, _)| (i, Client::Networkd)),
            b"NetworkManager" => m
                .split_once("dhcp4 (")
                .and_then(|(_, r)| r.split_once("): state changed "))
                .filter(|(_, r)| r.starts_with("new lease") || r.starts_with("bound"))
                .map(|(i, _)| (i, Client::NetworkManager { connection: None })),
            b"dhclient" => m
                .strip_prefix("DHCPREQUEST for ")
                .and_then(|r| r.split_once(" on "))
                .and_then(|(_, r)| r.split_whitespace().next())
                .map(|i| (i, Client::Dhclient)),
            _ => None,
        };
        if let Some((iface, client)) = found.filter(|(i, _)| valid_iface(i)) {
            if !out.iter().any(|(have, _)| have == iface) {
                out.push((iface.to_owned(), client));
            }
        }
    }
    out
}

/// A filesystem the guest mounted at boot, and what names its device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mounted {
    pub mountpoint: String,
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// The kernel's name for it then (`vdb`, `sda2`): the weakest of the three.
    pub kernel: Option<String>,
    /// What said so, for the change's detail.
    pub how: String,
}

/// `\xNN` escapes (systemd's unit names, udev's `/dev/disk/by-*` names) decoded.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 2..i + 4)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], b.get(i + 1), hex) {
            (b'\\', Some(b'x'), Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path a unit name stands for (`home.mount` -> `/home`, `dev-disk-by\x2dlabel-home` ->
/// `/dev/disk/by-label/home`).
fn unit_path(name: &str) -> String {
    if name == "-" {
        return "/".to_owned();
    }
    let parts: Vec<String> = name.split('-').map(unescape).collect();
    format!("/{}", parts.join("/"))
}

/// What a `/dev/disk/by-*` path or a kernel device path names.
fn device_names(path: &str, m: &mut Mounted) {
    if let Some(u) = path.strip_prefix("/dev/disk/by-uuid/") {
        m.uuid = Some(unescape(u).to_ascii_lowercase());
    } else if let Some(l) = path.strip_prefix("/dev/disk/by-label/") {
        m.label = Some(unescape(l));
    } else if let Some(k) = path.strip_prefix("/dev/").filter(|k| plain_kernel_name(k)) {
        m.kernel = Some(k.to_owned());
    }
}

/// A disk or partition name that means the same disk in the next boot with the same hardware
/// (`vdb`, `sda1`, `nvme0n1p2`), never a name the kernel hands out in order of use (`dm-0`).
fn plain_kernel_name(k: &str) -> bool {
    (1..=32).contains(&k.len())
        && !k.starts_with("dm-")
        && !k.starts_with("loop")
        && k.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A word that is a UUID, lowercased.
fn uuid_word(w: Option<&str>) -> Option<String> {
    w.filter(|w| w.len() == 36 && w.bytes().filter(|&b| b == b'-').count() == 4)
        .filter(|w| w.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .map(str::to_ascii_lowercase)
}

/// What a kernel line about mounting a filesystem names: its device and, where the line has
/// it, its UUID. (`EXT4-fs (vdb): mounted filesystem [UUID ]...`, `XFS (vdb1): Mounting V5
/// Filesystem UUID`, `BTRFS info (device vdb): ...`)
fn kernel_mount(m: &str) -> Option<(String, Option<String>)> {
    let dev = |rest: &str| -> Option<String> {
        let d = rest.split(')').next()?;
        plain_kernel_name(d).then(|| d.to_owned())
    };
    if let Some(rest) = m.strip_prefix("EXT4-fs (") {
        let (_, after) = rest.split_once("): mounted filesystem")?;
        return Some((dev(rest)?, uuid_word(after.split_whitespace().next())));
    }
    if let Some(rest) = m.strip_prefix("XFS (") {
        let (_, after) = rest.split_once("): Mounting V")?;
        return Some((dev(rest)?, uuid_word(after.split_whitespace().nth(2))));
    }
    let rest = m.strip_prefix("BTRFS info (device ")?;
    Some((dev(rest)?, None))
}

/// What btrfs's device scan line names: the device's kernel name and its filesystem's UUID
/// (`BTRFS: device fsid UUID devid 1 transid 9 /dev/vdb scanned by ...`).
fn btrfs_scan(m: &str) -> Option<(String, String)> {
    let w: Vec<&str> = m.strip_prefix("BTRFS: device fsid ")?.split(' ').collect();
    let dev = w.get(5)?.strip_prefix("/dev/")?;
    let uuid = uuid_word(w.first().copied())?;
    plain_kernel_name(dev).then(|| (dev.to_owned(), uuid))
}

/// A mount unit's start job being followed.
#[derive(Default)]
struct Window {
    fsck: Option<String>,
    kernel: Vec<(String, Option<String>)>,
}

/// Where the guest's boots mounted its filesystems: each mount unit whose start job succeeded,
/// with its device from the file system check that came just before it (systemd mounts a
/// filesystem as soon as its check is done) or from the one kernel line about mounting that
/// came while it was the only mount under way. The newest boot's word wins.
pub fn mounts(entries: &[Entry]) -> Vec<Mounted> {
    let mut out: BTreeMap<String, Mounted> = BTreeMap::new();
    let mut boot = None;
    let mut open: BTreeMap<String, Window> = BTreeMap::new();
    // Checks finished and no mount started since.
    let mut checked: Vec<String> = Vec::new();
    let mut scanned: BTreeMap<String, String> = BTreeMap::new();
    for e in entries {
        if boot != Some(e.boot_id) {
            boot = Some(e.boot_id);
            open.clear();
            checked.clear();
        }
        let message = e.text("MESSAGE").unwrap_or_default();
        if e.field("_TRANSPORT") == Some(b"kernel") {
            if let Some((dev, uuid)) = btrfs_scan(message) {
                scanned.insert(dev, uuid);
            } else if let (Some(found), 1) = (kernel_mount(message), open.len()) {
                open.values_mut().for_each(|w| w.kernel.push(found.clone()));
            }
            continue;
        }
        if e.field("_PID") != Some(b"1") {
            continue;
        }
        let (Some(unit), Some(id)) = (e.text("UNIT"), e.field("MESSAGE_ID")) else {
            continue;
        };
        if let Some(dev) = unit
            .strip_prefix("systemd-fsck@")
            .and_then(|u| u.strip_suffix(".service"))
        {
            if id == STARTED {
                checked.push(unit_path(dev));
            }
            continue;
        }
        let Some(name) = unit.strip_suffix(".mount") else {
            continue;
        };
        match id {
            _ if id == STARTING => {
                let fsck = (checked.len() == 1).then(|| checked.remove(0));
                checked.clear();
                open.insert(
                    name.to_owned(),
                    Window {
                        fsck,
                        kernel: vec![],
                    },
                );
            }
            _ if id == STARTED || id == FAILED => {
                let Some(w) = open.remove(name) else {
                    continue;
                };
                if id == FAILED {
                    continue;
                }
                let mut m = Mounted {
                    mountpoint: unit_path(name),
                    ..Default::default()
                };
                if let Some(dev) = &w.fsck {
                    device_names(dev, &mut m);
                    m.how = format!("{unit} was mounted after the check of {dev}");
                }
                let mut kernel = w.kernel.clone();
                kernel.dedup_by(|a, b| a.0 == b.0);
                if let [(dev, uuid)] = kernel.as_slice() {
                    m.kernel.get_or_insert_with(|| dev.clone());
                    let uuid = uuid.clone().or_else(|| scanned.get(dev).cloned());
                    if m.uuid.is_none() && uuid.is_some() {
                        m.uuid = uuid;
                    }
                    if m.how.is_empty() {
                        m.how = format!("{unit} was mounted while the kernel mounted {dev}");
                    }
                }
                let named = m.uuid.is_some() || m.label.is_some() || m.kernel.is_some();
                if named && m.mountpoint != "/" {
                    out.insert(m.mountpoint.clone(), m);
                }
            }
            _ => {}
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_discovery::journal::{entries, write};

    /// A journal of `(fields)` entries, each `FIELD=value` joined by `|`, one boot.
    fn journal(lines: &[&str]) -> Vec<u8> {
        let owned: Vec<Vec<Vec<u8>>> = lines
            .iter()
            .map(|l| l.split('|').map(|f| f.as_bytes().to_vec()).collect())
            .collect();
        let list: Vec<(u64, Vec<&[u8]>)> = owned
            .iter()
            .enumerate()
            .map(|(i, fs)| (i as u64 + 1, fs.iter().map(Vec::as_slice).collect()))
            .collect();
        write::journal(&list, true, &[])
    }

    fn pid1(unit: &str, id: &str, message: &str) -> String {
        let id = match id {
            "starting" => STARTING,
            "started" => STARTED,
            _ => FAILED,
        };
        format!(
            "_PID=1|UNIT={unit}|MESSAGE_ID={}|MESSAGE={message}|_HOSTNAME=web-7",
            std::str::from_utf8(id).unwrap()
        )
    }

    fn kernel(message: &str) -> String {
        format!("_TRANSPORT=kernel|MESSAGE={message}|_HOSTNAME=web-7")
    }

    #[test]
    fn a_mount_after_its_check_is_named_by_the_checked_device() {
        let fsck = r"systemd-fsck@dev-disk-by\x2dlabel-my\x5cx20home.service";
        let lines = [
            pid1(fsck, "starting", "Starting File System Check..."),
            pid1(fsck, "started", "Finished File System Check."),
            pid1(
                "srv-data.mount",
                "starting",
                "Mounting srv-data.mount - /srv/data...",
            ),
            kernel("EXT4-fs (vdb): mounted filesystem with ordered data mode. Quota mode: none."),
            pid1(
                "srv-data.mount",
                "started",
                "Mounted srv-data.mount - /srv/data.",
            ),
        ];
        let data = journal(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        let got = mounts(&entries(&data).unwrap());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].mountpoint, "/srv/data");
        assert_eq!(got[0].label.as_deref(), Some("my home"));
        assert_eq!(got[0].kernel.as_deref(), Some("vdb"));
        assert!(got[0]
            .how
            .contains("after the check of /dev/disk/by-label/my\\x20home"));
    }

    #[test]
    fn an_xfs_or_btrfs_mount_is_named_by_the_uuid_the_kernel_gives() {
        let lines = [
            kernel("BTRFS: device fsid 0D6D63B1-4C2F-4E7B-9F6E-2A1B3C4D5E6F devid 1 transid 9 /dev/vdc scanned by mount (300)"),
            pid1("home.mount", "starting", "Mounting home.mount - /home..."),
            kernel("XFS (vdb1): Mounting V5 Filesystem 11111111-2222-3333-4444-555555555555"),
            kernel("XFS (vdb1): Ending clean mount"),
            pid1("home.mount", "started", "Mounted home.mount - /home."),
            pid1(r"var-lib-x\x2dy.mount", "starting", "Mounting..."),
            kernel("BTRFS info (device vdc): using crc32c (crc32c-generic) checksum algorithm"),
            pid1(r"var-lib-x\x2dy.mount", "started", "Mounted."),
            // A failed mount and a tmpfs say nothing.
            pid1("mnt.mount", "starting", "Mounting..."),
            pid1("mnt.mount", "failed", "Failed to mount."),
            pid1("tmp.mount", "starting", "Mounting..."),
            pid1("tmp.mount", "started", "Mounted."),
        ];
        let data = journal(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        let got = mounts(&entries(&data).unwrap());
        let seen: Vec<(&str, Option<&str>, Option<&str>)> = got
            .iter()
            .map(|m| {
                (
                    m.mountpoint.as_str(),
                    m.uuid.as_deref(),
                    m.kernel.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "/home",
                    Some("11111111-2222-3333-4444-555555555555"),
                    Some("vdb1")
                ),
                (
                    "/var/lib/x-y",
                    Some("0d6d63b1-4c2f-4e7b-9f6e-2a1b3c4d5e6f"),
                    Some("vdc")
                ),
            ]
        );
    }

    #[test]
    fn overlapping_mounts_and_two_pending_checks_name_nothing() {
        let lines = [
            pid1("systemd-fsck@dev-vdb.service", "started", "Finished."),
            pid1("systemd-fsck@dev-vdc.service", "started", "Finished."),
            pid1("a.mount", "starting", "Mounting..."),
            pid1("b.mount", "starting", "Mounting..."),
            kernel("EXT4-fs (vdb): mounted filesystem with ordered data mode."),
            pid1("a.mount", "started", "Mounted."),
            pid1("b.mount", "started", "Mounted."),
            // A device-mapper name is no name.
            pid1("c.mount", "starting", "Mounting..."),
            kernel("EXT4-fs (dm-3): mounted filesystem with ordered data mode."),
            pid1("c.mount", "started", "Mounted."),
        ];
        let data = journal(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(mounts(&entries(&data).unwrap()), []);
    }

    #[test]
    fn host_name_sudo_and_logins() {
        let lines = [
            "_HOSTNAME=old-name|MESSAGE=x",
            "_HOSTNAME=web-7|MESSAGE=x",
            "_HOSTNAME=web-7|SYSLOG_IDENTIFIER=sudo|MESSAGE=   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/id",
            "_HOSTNAME=web-7|SYSLOG_IDENTIFIER=sudo|MESSAGE=eve : user NOT in sudoers ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
            "_HOSTNAME=localhost|MESSAGE=pam_unix(login:session): session opened for user alice(uid=1000) by LOGIN(uid=0)",
            "_HOSTNAME=localhost|MESSAGE=pam_unix(sshd:session): session opened for user root(uid=0) by (uid=0)",
            "_HOSTNAME=localhost|MESSAGE=pam_unix(cron:session): session opened for user bob(uid=1001) by (uid=0)",
            "_HOSTNAME=localhost|MESSAGE=pam_unix(su:session): session opened for user ../x(uid=1002) by (uid=0)",
            "_HOSTNAME=localhost|MESSAGE=someone: session opened for user mallory(uid=1003) by (uid=0)",
        ];
        let data = journal(&lines);
        let e = entries(&data).unwrap();
        assert_eq!(hostname(&e).as_deref(), Some("web-7"));
        assert_eq!(sudoers(&e), ["alice"]);
        assert_eq!(
            logins(&e),
            [("alice".to_owned(), 1000), ("bob".to_owned(), 1001)]
        );
    }

    #[test]
    fn dhcp_clients_and_their_interfaces() {
        let lines = [
            "SYSLOG_IDENTIFIER=systemd-networkd|MESSAGE=ens3: DHCPv4 address 10.0.0.5/24, gateway 10.0.0.1 acquired from 10.0.0.1",
            "SYSLOG_IDENTIFIER=NetworkManager|MESSAGE=<info>  [1700000000.1] dhcp4 (enp2s0): state changed new lease, address=10.0.1.5",
            "SYSLOG_IDENTIFIER=NetworkManager|MESSAGE=<info>  [1700000000.2] dhcp4 (enp3s0): state changed expire",
            "SYSLOG_IDENTIFIER=dhclient|MESSAGE=DHCPREQUEST for 10.0.2.5 on eth1 to 10.0.2.1 port 67",
            "SYSLOG_IDENTIFIER=dhclient|MESSAGE=DHCPREQUEST for 10.0.2.5 on ../x to 10.0.2.1 port 67",
            "SYSLOG_IDENTIFIER=sshd|MESSAGE=eth9: DHCPv4 address 1.2.3.4/8",
        ];
        let data = journal(&lines);
        let got = dhcp(&entries(&data).unwrap());
        assert_eq!(
            got,
            [
                ("ens3".to_owned(), Client::Networkd),
                (
                    "enp2s0".to_owned(),
                    Client::NetworkManager { connection: None }
                ),
                ("eth1".to_owned(), Client::Dhclient),
            ]
        );
    }

    #[test]
    fn unit_names_unescape() {
        assert_eq!(unit_path("home"), "/home");
        assert_eq!(unit_path("-"), "/");
        assert_eq!(unit_path(r"srv-my\x2ddata"), "/srv/my-data");
        assert_eq!(
            unit_path(r"dev-disk-by\x2duuid-1a2b\x2d3c"),
            "/dev/disk/by-uuid/1a2b-3c"
        );
        assert_eq!(unescape(r"a\x4"), r"a\x4");
        assert_eq!(unescape(r"\xzz\x41"), r"\xzzA");
    }
}
