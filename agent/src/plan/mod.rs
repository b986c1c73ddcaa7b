//! The repair plan: from what discovery found on the guest's root to the list of guest fixes.
//! Pure: the root is read through a [`Tree`], nothing is written here. Check mode reports the
//! plan; repair mode hands it to [`crate::apply`].

pub mod access;
pub mod conffiles;
pub mod distro_defaults;
pub mod etc;
pub mod evidence;
mod from_evidence;
pub mod fstab;
pub mod journal;
pub mod leftovers;
pub mod machine_id;
pub mod mountpoints;
mod network;
pub mod pam;
pub mod sshd;
pub mod unit_links;

use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::{Change, ChangeKind, Filesystem, Partition};

/// One thing to do on the guest's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a directory (parents must exist or come earlier in the plan).
    MakeDir { path: String, mode: u32 },
    /// Create or replace a file (a replaced file is backed up and keeps its mode and owner).
    WriteFile {
        path: String,
        content: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Create a symbolic link where nothing is (never replacing anything).
    Symlink { path: String, target: String },
    /// Remove a temporary file an earlier, stopped rescue left (only such names).
    RemoveTemp { path: String },
    /// Create a directory in a user's home, owned by the user, following no symlink anywhere
    /// on its path (a user's link must not steer the rescue's write to another's files).
    MakeUserDir {
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Create or replace a file in a user's home, as [`Action::WriteFile`], following no
    /// symlink anywhere on its path.
    WriteUserFile {
        path: String,
        content: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl Action {
    pub fn path(&self) -> &str {
        match self {
            Action::MakeDir { path, .. }
            | Action::WriteFile { path, .. }
            | Action::Symlink { path, .. }
            | Action::RemoveTemp { path }
            | Action::MakeUserDir { path, .. }
            | Action::WriteUserFile { path, .. } => path,
        }
    }

    pub fn kind(&self) -> ChangeKind {
        match self {
            Action::MakeDir { .. } | Action::MakeUserDir { .. } => ChangeKind::Mkdir,
            Action::WriteFile { .. } | Action::WriteUserFile { .. } => ChangeKind::WriteFile,
            Action::Symlink { .. } => ChangeKind::Symlink,
            Action::RemoveTemp { .. } => ChangeKind::RemoveTemp,
        }
    }
}

/// An action and why it is planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub why: String,
    /// The content is rebuilt or guessed: the operator should review it.
    pub review: bool,
    /// The device of the guest's other filesystem the step is on (its path is then from that
    /// filesystem's top: a user's home on a separate /home); `None`: the root.
    pub on: Option<String>,
}

impl Step {
    /// The report's view of the step (before it is applied).
    pub fn to_change(&self) -> Change {
        Change {
            kind: self.action.kind(),
            path: self.action.path().to_owned(),
            detail: self.why.clone(),
            review: self.review,
            ..Default::default()
        }
    }
}

/// Operator choices that change the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Add `errors=remount-ro` to an ext root's fstab options when it has no `errors=`.
    pub errors_remount_ro: bool,
    /// `x-systemd.device-timeout` given to entries whose device is absent.
    pub device_timeout: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            errors_remount_ro: true,
            device_timeout: "10s".into(),
        }
    }
}

/// What the planners know besides the root's contents.
pub struct Context<'a> {
    /// The root filesystem's device (as in `filesystems`).
    pub root_device: &'a str,
    /// Every filesystem found (rescue medium excluded), with roles and fstab mount points.
    pub filesystems: &'a [Filesystem],
    pub partitions: &'a [Partition],
    /// Prefix of device paths in `filesystems` (`/dev/`).
    pub dev_prefix: &'a str,
    /// os-release ID of the guest, if known.
    pub os_id: Option<&'a str>,
    /// Host name for a rebuilt `/etc/hostname` and `/etc/hosts`.
    pub hostname: Option<&'a str>,
    /// The operator's reference `/etc` (its `/` is the reference's `etc` directory).
    pub reference: Option<&'a dyn Tree>,
    /// Days since the epoch, for rebuilt shadow entries.
    pub today: u64,
    /// A machine ID drawn at random by the caller (32 lowercase hex digits), for a rebuilt
    /// `/etc/machine-id` when the guest's own cannot be found.
    pub fresh_machine_id: &'a str,
    pub policy: Policy,
    /// The access the operator asked for (a root password, SSH keys, users to unlock).
    pub access: &'a vmrescue_protocol::secrets::Access,
    /// What the guest left elsewhere about a lost `/etc` (homes, host name, mount points).
    pub evidence: &'a evidence::Evidence,
    /// The guest's other filesystems the caller opened, where they mount.
    pub others: &'a [Other<'a>],
}

/// One of the guest's other filesystems, opened for the plan (a separate `/home` holding the
/// home a key goes to).
pub struct Other<'a> {
    pub device: &'a str,
    /// Where the guest mounts it (fstab's, or the evidence's for a lost `/etc`).
    pub mountpoint: &'a str,
    pub tree: &'a dyn Tree,
}

impl Other<'_> {
    /// The one of `others` holding `path` of the running guest (the longest mount point that
    /// is a prefix of it), and `path` from that filesystem's top.
    pub fn holding<'o, 'a>(others: &'o [Other<'a>], path: &str) -> Option<(&'o Other<'a>, String)> {
        others
            .iter()
            .filter_map(|o| {
                let m = o.mountpoint.trim_end_matches('/');
                let rest = path.strip_prefix(m)?;
                (!m.is_empty() && (rest.is_empty() || rest.starts_with('/'))).then(|| {
                    (
                        o,
                        if rest.is_empty() {
                            "/".to_owned()
                        } else {
                            rest.to_owned()
                        },
                    )
                })
            })
            .max_by_key(|(o, _)| o.mountpoint.len())
    }
}

/// The plan, and what the planners noticed but will not fix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

impl Plan {
    /// Whether a step for `path` is already planned.
    fn has(&self, path: &str) -> bool {
        self.steps.iter().any(|s| s.action.path() == path)
    }

    /// Plans the directories between `base` and the file `base` + `rel` (`/a/b/f`: `base/a`,
    /// `base/a/b`) that the root lacks and no step makes yet.
    fn parents(&mut self, root: &dyn Tree, base: &str, rel: &str, why: &str) {
        let mut dir = base.to_owned();
        let parts: Vec<&str> = rel.trim_start_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            dir.push('/');
            dir.push_str(part);
            if !root.exists(&dir) && !self.has(&dir) {
                self.push(
                    Action::MakeDir {
                        path: dir.clone(),
                        mode: 0o755,
                    },
                    why,
                    false,
                );
            }
        }
    }

    /// The content the plan writes to `path` (on the root), if it does.
    pub fn written(&self, path: &str) -> Option<&[u8]> {
        self.steps.iter().find_map(|s| match &s.action {
            Action::WriteFile {
                path: at, content, ..
            } if at == path && s.on.is_none() => Some(content.as_slice()),
            _ => None,
        })
    }

    /// A step on another of the guest's filesystems (`on`: its device), or on the root.
    fn push_on(&mut self, on: Option<&str>, action: Action, why: impl Into<String>, review: bool) {
        self.push(action, why, review);
        if let Some(step) = self.steps.last_mut() {
            step.on = on.map(str::to_owned);
        }
    }

    fn push(&mut self, action: Action, why: impl Into<String>, review: bool) {
        self.steps.push(Step {
            action,
            why: why.into(),
            review,
            on: None,
        });
    }
}

/// Plans every guest fix for the root seen through `root`.
pub fn plan(root: &dyn Tree, ctx: &Context) -> Plan {
    let mut p = Plan::default();
    // /etc first: the fstab planner reads what the /etc planner restores.
    let restored = etc::plan(root, ctx, &mut p);
    let fstab_text = restored
        .fstab
        .or_else(|| root.read("/etc/fstab", etc::MAX_ETC_FILE));
    // A restored or rebuilt fstab was fixed as it was planned.
    if let (false, Some(text)) = (restored.fstab_planned, &fstab_text) {
        fstab::plan(text, ctx, &mut p);
    }
    let fstab_for_mounts = p
        .steps
        .iter()
        .rev()
        .find_map(|s| match &s.action {
            Action::WriteFile { path, content, .. } if path == "/etc/fstab" => {
                Some(content.clone())
            }
            _ => None,
        })
        .or(fstab_text);
    mountpoints::plan(root, ctx, fstab_for_mounts.as_deref(), &mut p);
    // On the account files as restored or rebuilt above.
    access::plan(root, ctx.access, ctx, &mut p);
    selinux_relabel(root, &mut p);
    leftovers::plan(root, vmrescue_protocol::paths::REPORT_DIR, &mut p);
    // Leftovers first, then directories before the files that go in them.
    p.steps.sort_by_key(|s| match s.action {
        Action::RemoveTemp { .. } => 0,
        Action::MakeDir { .. } | Action::MakeUserDir { .. } => 1,
        Action::WriteFile { .. } | Action::WriteUserFile { .. } => 2,
        Action::Symlink { .. } => 3,
    });
    p
}

/// Whether the guest runs SELinux (enforcing or permissive) per `/etc/selinux/config`.
fn selinux_active(root: &dyn Tree) -> bool {
    let Some(text) = root.read("/etc/selinux/config", 64 * 1024) else {
        return false;
    };
    String::from_utf8_lossy(&text).lines().any(|l| {
        let l = l.trim();
        matches!(
            l.strip_prefix("SELINUX=").map(str::trim),
            Some("enforcing" | "permissive")
        )
    })
}

/// New files and directories get no SELinux label in the rescue: an SELinux guest relabels
/// the whole filesystem at its next boot when `/.autorelabel` exists.
fn selinux_relabel(root: &dyn Tree, p: &mut Plan) {
    if p.steps.is_empty() || root.exists("/.autorelabel") || !selinux_active(root) {
        return;
    }
    p.push(
        Action::WriteFile {
            path: "/.autorelabel".into(),
            content: Vec::new(),
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        "SELinux guest: what the rescue creates has no label; the guest relabels at its next boot",
        false,
    );
}

#[cfg(test)]
pub(crate) mod testing {
    use vmrescue_protocol::Filesystem;

    use super::{Context, Policy};
    use crate::inspect::MountedTree;

    /// A planning context for root `/dev/vda1` with the given filesystems and OS.
    pub fn ctx<'a>(filesystems: &'a [Filesystem], os_id: Option<&'a str>) -> Context<'a> {
        Context {
            root_device: "/dev/vda1",
            filesystems,
            partitions: &[],
            dev_prefix: "/dev/",
            os_id,
            hostname: None,
            reference: None,
            today: 20_000,
            fresh_machine_id: "5eed5eed5eed5eed5eed5eed5eed5eed",
            policy: Policy::default(),
            access: &vmrescue_protocol::secrets::access::NO_ACCESS,
            evidence: &super::evidence::NO_EVIDENCE,
            others: &[],
        }
    }

    /// A guest root in a temporary directory, read through the agent's real tree code.
    pub struct Guest {
        pub dir: tempfile::TempDir,
    }

    impl Guest {
        pub fn new(entries: &[(&str, Option<&str>)]) -> Guest {
            let dir = tempfile::tempdir().unwrap();
            for (path, content) in entries {
                let p = dir.path().join(path.trim_start_matches('/'));
                match content {
                    None => std::fs::create_dir_all(&p).unwrap(),
                    Some(c) => {
                        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                        std::fs::write(&p, c).unwrap();
                    }
                }
            }
            Guest { dir }
        }

        pub fn tree(&self) -> MountedTree {
            MountedTree::directory(self.dir.path()).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{self, Guest};
    use super::*;

    fn fs(device: &str, fstype: &str, uuid: &str, role: Option<&str>) -> Filesystem {
        Filesystem {
            device: device.into(),
            fstype: fstype.into(),
            uuid: Some(uuid.into()),
            role: role.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn healthy_debian_root_needs_nothing() {
        let g = Guest::new(&[
            ("/proc", None),
            ("/sys", None),
            ("/dev", None),
            ("/run", None),
            ("/tmp", None),
            ("/mnt", None),
            ("/media", None),
            ("/home", None),
            ("/etc/passwd", Some("root:x:0:0:root:/root:/bin/bash\n")),
            ("/etc/group", Some("root:x:0:\n")),
            ("/etc/shadow", Some("root:*:19000:0:99999:7:::\n")),
            ("/etc/gshadow", Some("root:*::\n")),
            ("/etc/hostname", Some("web1\n")),
            ("/etc/hosts", Some("127.0.0.1 localhost\n")),
            (
                "/etc/fstab",
                Some("UUID=r / ext4 errors=remount-ro 0 1\nUUID=h /home ext4 defaults 0 2\n"),
            ),
        ]);
        let filesystems = [
            fs("/dev/vda1", "ext4", "r", Some("root")),
            fs("/dev/vdb", "ext4", "h", Some("home")),
        ];
        let ctx = testing::ctx(&filesystems, Some("debian"));
        let p = plan(&g.tree(), &ctx);
        assert_eq!(p.steps, [], "{p:#?}");
    }

    #[test]
    fn selinux_guest_relabels_after_fixes() {
        let g = Guest::new(&[
            (
                "/etc/selinux/config",
                Some("# x\nSELINUX=enforcing\nSELINUXTYPE=targeted\n"),
            ),
            ("/etc/passwd", Some("root:x:0:0::/root:/bin/sh\n")),
        ]);
        let ctx = testing::ctx(&[], Some("rhel"));
        let p = plan(&g.tree(), &ctx);
        assert!(
            p.steps.iter().any(|s| s.action.path() == "/.autorelabel"),
            "{p:#?}"
        );
        let g = Guest::new(&[("/etc/selinux/config", Some("SELINUX=disabled\n"))]);
        let p = plan(&g.tree(), &ctx);
        assert!(!p.steps.iter().any(|s| s.action.path() == "/.autorelabel"));
    }

    #[test]
    fn etc_wiped_and_mount_points_gone() {
        let g = Guest::new(&[
            ("/usr/bin/bash", Some("")),
            ("/var", None),
            ("/dev", None),
            ("/usr/lib/os-release", Some("ID=debian\n")),
        ]);
        let filesystems = [
            fs("/dev/vda1", "ext4", "r", Some("root")),
            fs("/dev/vda2", "swap", "s", Some("swap")),
        ];
        let ctx = Context {
            hostname: Some("db1"),
            ..testing::ctx(&filesystems, Some("debian"))
        };
        let p = plan(&g.tree(), &ctx);
        let kinds: Vec<ChangeKind> = p.steps.iter().map(|s| s.action.kind()).collect();
        let paths: Vec<(&str, &str)> = p
            .steps
            .iter()
            .zip(&kinds)
            .map(|(s, k)| (k.as_str(), s.action.path()))
            .collect();
        assert_eq!(
            paths,
            [
                ("mkdir", "/etc"),
                ("mkdir", "/proc"),
                ("mkdir", "/sys"),
                ("mkdir", "/run"),
                ("mkdir", "/tmp"),
                ("mkdir", "/mnt"),
                ("mkdir", "/media"),
                ("write_file", "/etc/passwd"),
                ("write_file", "/etc/group"),
                ("write_file", "/etc/shadow"),
                ("write_file", "/etc/gshadow"),
                ("write_file", "/etc/hostname"),
                ("write_file", "/etc/hosts"),
                ("write_file", "/etc/fstab"),
                ("write_file", "/etc/machine-id"),
                ("symlink", "/etc/os-release"),
            ]
        );
        assert!(p
            .steps
            .iter()
            .all(|s| s.review || s.action.kind() == "mkdir"));
        let tmp = p.steps.iter().find(|s| s.action.path() == "/tmp").unwrap();
        assert_eq!(
            tmp.action,
            Action::MakeDir {
                path: "/tmp".into(),
                mode: 0o1777
            }
        );
    }

    #[test]
    fn a_lost_etc_is_rebuilt_from_the_guests_evidence() {
        use super::evidence::{Evidence, Home, MountHint};
        let g = Guest::new(&[
            ("/usr/bin/bash", Some("")),
            ("/usr/sbin/ifup", Some("")),
            ("/home", None),
            ("/usr/lib/os-release", Some("ID=debian\n")),
            (
                "/usr/share/base-passwd/passwd.master",
                Some("root:*:0:0:root:/root:/bin/bash\n"),
            ),
            (
                "/usr/share/base-passwd/group.master",
                Some("root:*:0:\nsudo:*:27:\n"),
            ),
        ]);
        let filesystems = [
            fs("/dev/vda1", "ext4", "r", Some("root")),
            fs("/dev/vdb", "ext4", "h", None),
        ];
        let evidence = Evidence {
            homes: vec![Home {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                dir: "/home/alice".into(),
                seen_on: "/dev/vdb".into(),
            }],
            hostname: Some((
                "web-1".into(),
                "the journal /var/log/journal/m/system.journal".into(),
            )),
            mounts: vec![MountHint {
                device: "/dev/vdb".into(),
                mountpoint: "/home".into(),
                source: "its superblock's last-mounted path".into(),
            }],
            sudoers: vec![("alice".into(), "/var/log/auth.log".into())],
            dhcp: vec![evidence::Lease {
                iface: "ens3".into(),
                client: evidence::Client::Dhclient,
                source: "/var/lib/dhcp/dhclient.ens3.leases".into(),
            }],
            users: vec![],
        };
        let ctx = Context {
            evidence: &evidence,
            ..testing::ctx(&filesystems, Some("debian"))
        };
        let p = plan(&g.tree(), &ctx);
        let file = |path: &str| -> (String, String) {
            let s = p.steps.iter().find(|s| s.action.path() == path).unwrap();
            match &s.action {
                Action::WriteFile { content, .. } => {
                    (String::from_utf8_lossy(content).into_owned(), s.why.clone())
                }
                other => panic!("{other:?}"),
            }
        };
        let (passwd, why) = file("/etc/passwd");
        assert!(
            passwd.ends_with("alice:x:1000:1000::/home/alice:/bin/bash\n"),
            "{passwd}"
        );
        assert!(
            why.contains("alice (uid 1000) from the home directory /home/alice on /dev/vdb"),
            "{why}"
        );
        let (group, why) = file("/etc/group");
        assert_eq!(group, "root:x:0:\nsudo:x:27:alice\nalice:x:1000:\n");
        assert!(
            why.contains(
                "alice in group sudo (alice ran commands through sudo: /var/log/auth.log)"
            ),
            "{why}"
        );
        assert!(file("/etc/gshadow").0.contains("sudo:*::alice\n"));
        assert!(file("/etc/shadow")
            .0
            .ends_with("alice:!:20000:0:99999:7:::\n"));
        assert!(file("/etc/gshadow").0.ends_with("alice:!::\n"));
        let (hostname, why) = file("/etc/hostname");
        assert_eq!(hostname, "web-1\n");
        assert!(why.contains("the journal"), "{why}");
        assert!(file("/etc/hosts").0.contains("127.0.1.1\tweb-1"));
        let (fstab, _) = file("/etc/fstab");
        assert!(
            fstab.contains("# /home: its superblock's last-mounted path\nUUID=h\t/home\text4\tdefaults,nofail\t0\t2\n"),
            "{fstab}"
        );
        assert!(!fstab.contains("CHANGE-ME"), "{fstab}");
        let (interfaces, why) = file("/etc/network/interfaces");
        assert!(
            interfaces.ends_with("\nallow-hotplug ens3\niface ens3 inet dhcp\n"),
            "{interfaces}"
        );
        assert!(
            why.contains("ens3 from /var/lib/dhcp/dhclient.ens3.leases"),
            "{why}"
        );
        // Asked for a host name, the operator's wins.
        let ctx = Context {
            hostname: Some("db-9"),
            ..ctx
        };
        let p = plan(&g.tree(), &ctx);
        let s = p
            .steps
            .iter()
            .find(|s| s.action.path() == "/etc/hostname")
            .unwrap();
        assert!(matches!(&s.action, Action::WriteFile { content, .. } if content == b"db-9\n"));
    }
}
