//! Missing `/etc` essentials: the account files, host name, hosts and fstab. Each comes, in
//! order of preference, from the operator's reference `/etc`, from the guest's own `-` backup
//! (`/etc/passwd-`), or is rebuilt minimally; every one is marked for the operator's review.
//! Files the reference holds beyond these are restored too when the guest lacks them. When
//! `/etc` was lost ([`lost`]), what the boot needs besides comes back too: the machine ID
//! ([`super::machine_id`]), the distribution's defaults ([`super::distro_defaults`]), the
//! enabled units ([`super::unit_links`]), and a note of what only the packages hold
//! ([`super::conffiles`]).

use vmrescue_discovery::osroot::Tree;

use super::{Action, Context, Plan};

/// Longest `/etc` file read.
pub const MAX_ETC_FILE: usize = 4 << 20;
/// Files taken from a reference `/etc` at most.
const MAX_REFERENCE_FILES: usize = 2000;

/// What the `/etc` planner restores that later planners need.
#[derive(Debug, Default)]
pub struct Restored {
    /// The fstab text the plan writes, if it writes one.
    pub fstab: Option<Vec<u8>>,
    /// The plan writes `/etc/fstab` (so it needs no further fixing).
    pub fstab_planned: bool,
}

struct Essential {
    name: &'static str,
    mode: u32,
    /// Group that owns it on Debian-like systems (`shadow`), looked up in the group file.
    group: Option<&'static str>,
}

const ACCOUNTS: &[Essential] = &[
    Essential {
        name: "passwd",
        mode: 0o644,
        group: None,
    },
    Essential {
        name: "group",
        mode: 0o644,
        group: None,
    },
    Essential {
        name: "shadow",
        mode: 0o640,
        group: Some("shadow"),
    },
    Essential {
        name: "gshadow",
        mode: 0o640,
        group: Some("shadow"),
    },
];

/// Debian's system accounts and groups (`base-passwd`), the rebuilt account files' base.
const PASSWD_MASTER: &str = "/usr/share/base-passwd/passwd.master";
const GROUP_MASTER: &str = "/usr/share/base-passwd/group.master";

/// Whether `/etc` was lost: its account files are gone (a guest never runs without them).
pub fn lost(root: &dyn Tree) -> bool {
    !root.exists("/etc/passwd") && !root.exists("/etc/group")
}

/// Plans `/etc` and returns what it restored.
pub fn plan(root: &dyn Tree, ctx: &Context, p: &mut Plan) -> Restored {
    let mut out = Restored::default();
    let lost = lost(root);
    if root.exists("/etc") && !root.is_dir("/etc") {
        p.notes.push(
            "/etc exists but is not a directory; /etc left alone (move it aside by hand)".into(),
        );
        return out;
    }
    if !root.exists("/etc") {
        p.push(
            Action::MakeDir {
                path: "/etc".into(),
                mode: 0o755,
            },
            "/etc is missing",
            false,
        );
    }
    // Account files: what exists (or is restored) feeds what is rebuilt.
    let mut have: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut rebuilt = Vec::new();
    for e in ACCOUNTS {
        let path = format!("/etc/{}", e.name);
        if let Some(text) = root.read(&path, MAX_ETC_FILE) {
            have.push((e.name, text));
            continue;
        }
        if root.exists(&path) {
            p.notes.push(format!(
                "{path} exists but cannot be read as a file; left alone"
            ));
            continue;
        }
        let (content, why, made) = restore(root, ctx, e.name, &have);
        if made {
            rebuilt.push(e.name);
        }
        let gid = e.group.and_then(|g| group_id(&have, g)).unwrap_or(0);
        p.push(
            Action::WriteFile {
                path: path.clone(),
                content: content.clone(),
                mode: e.mode,
                uid: 0,
                gid,
            },
            format!("{path} is missing: {why}"),
            true,
        );
        have.push((e.name, content));
    }
    if rebuilt.contains(&"passwd") {
        super::from_evidence::add_accounts(root, ctx, &rebuilt, p);
    }
    // A missing /etc/hostname is a valid state (the name comes from DHCP or cloud-init): it is
    // only written when the operator names the host, the guest's logs do, or the reference
    // /etc has one.
    let (named, from) = match (ctx.hostname, &ctx.evidence.hostname) {
        (Some(h), _) => (Some(h), String::new()),
        (None, Some((h, log))) => (Some(h.as_str()), format!(" (the name {log} gives it)")),
        (None, None) => (None, String::new()),
    };
    let hostname = named.unwrap_or("localhost");
    let small = [
        ("hostname", named.map(|h| format!("{h}\n"))),
        ("hosts", Some(hosts(hostname))),
    ];
    for (name, built) in small {
        let path = format!("/etc/{name}");
        if root.exists(&path) {
            continue;
        }
        let (content, why) = match (reference(ctx, name), built) {
            (Some(c), _) => (c, "restored from the operator's reference /etc".to_owned()),
            (None, Some(b)) => (
                b.into_bytes(),
                format!("rebuilt for host name {hostname}{from}"),
            ),
            (None, None) => continue,
        };
        p.push(
            Action::WriteFile {
                path: path.clone(),
                content,
                mode: reference_mode(ctx, name).unwrap_or(0o644),
                uid: 0,
                gid: 0,
            },
            format!("{path} is missing: {why}"),
            true,
        );
    }
    if !root.exists("/etc/fstab") {
        let (content, why) = if let Some(c) = reference(ctx, "fstab") {
            fixed(c, "restored from the operator's reference /etc", ctx, p)
        } else if let Some(c) = backup(root, "fstab") {
            fixed(c, "restored from /etc/fstab-", ctx, p)
        } else {
            (
                super::fstab::rebuild(ctx),
                "rebuilt from the filesystems found, by UUID".to_owned(),
            )
        };
        p.push(
            Action::WriteFile {
                path: "/etc/fstab".into(),
                content: content.clone(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            format!("/etc/fstab is missing: {why}"),
            true,
        );
        out.fstab = Some(content);
        out.fstab_planned = true;
    }
    super::machine_id::plan(root, ctx, lost, p);
    restore_reference_extras(root, ctx, p);
    if lost {
        super::network::plan(root, ctx, p);
    }
    if lost {
        super::distro_defaults::plan(root, p);
        super::pam::plan(root, p);
        super::sshd::plan(root, ctx.today, p);
    }
    super::unit_links::plan(root, p);
    if lost {
        super::conffiles::plan(root, p);
    }
    out
}

/// A restored fstab with the fstab planner's fixes applied.
fn fixed(text: Vec<u8>, source: &str, ctx: &Context, p: &mut Plan) -> (Vec<u8>, String) {
    let f = super::fstab::fix(&text, ctx);
    p.notes.extend(f.notes);
    if f.edits.is_empty() {
        (text, source.to_owned())
    } else {
        (f.text, format!("{source}, then {}", f.edits.join("; ")))
    }
}

fn reference(ctx: &Context, name: &str) -> Option<Vec<u8>> {
    ctx.reference?.read(&format!("/{name}"), MAX_ETC_FILE)
}

/// The permission bits a reference file has (secrets such as ssh host keys must keep 0600).
fn reference_mode(ctx: &Context, name: &str) -> Option<u32> {
    ctx.reference?.mode(&format!("/{name}")).map(|m| m & 0o7777)
}

fn backup(root: &dyn Tree, name: &str) -> Option<Vec<u8>> {
    root.read(&format!("/etc/{name}-"), MAX_ETC_FILE)
}

/// The shell a rebuilt account gets: bash where the guest has it.
pub(super) fn shell(root: &dyn Tree) -> &'static str {
    if root.exists("/bin/bash") || root.exists("/usr/bin/bash") {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// Content for a missing account file, where it came from, and whether it was rebuilt (not
/// restored from a copy).
fn restore(
    root: &dyn Tree,
    ctx: &Context,
    name: &str,
    have: &[(&str, Vec<u8>)],
) -> (Vec<u8>, String, bool) {
    if let Some(c) = reference(ctx, name) {
        return (
            c,
            "restored from the operator's reference /etc".into(),
            false,
        );
    }
    if let Some(c) = backup(root, name) {
        return (c, format!("restored from /etc/{name}-"), false);
    }
    let (content, why) = rebuild(root, ctx, name, have);
    (content, why, true)
}

/// A minimal account file: the distribution's system accounts, else root only.
fn rebuild(
    root: &dyn Tree,
    ctx: &Context,
    name: &str,
    have: &[(&str, Vec<u8>)],
) -> (Vec<u8>, String) {
    let passwd = have.iter().find(|(n, _)| *n == "passwd").map(|(_, t)| t);
    let group = have.iter().find(|(n, _)| *n == "group").map(|(_, t)| t);
    let master = match name {
        "passwd" => Some(PASSWD_MASTER),
        "group" => Some(GROUP_MASTER),
        _ => None,
    };
    if let Some((text, source)) = master.and_then(|m| Some((root.read(m, MAX_ETC_FILE)?, m))) {
        return (
            shadowed(&text),
            format!(
                "rebuilt with the distribution's system accounts only, from {source} \
                 (passwords in the shadow file)"
            ),
        );
    }
    match name {
        "passwd" => (
            format!("root:x:0:0:root:/root:{}\n", shell(root)).into_bytes(),
            "rebuilt with the root account only".into(),
        ),
        "group" => (
            b"root:x:0:\n".to_vec(),
            "rebuilt with the root group only".into(),
        ),
        "shadow" => (
            names(passwd)
                .iter()
                .map(|u| format!("{u}:*:{}:0:99999:7:::\n", ctx.today))
                .collect::<String>()
                .into_bytes(),
            "rebuilt with every account's password locked (set one before logging in)".into(),
        ),
        _ => (
            names(group)
                .iter()
                .map(|g| format!("{g}:*::\n"))
                .collect::<String>()
                .into_bytes(),
            "rebuilt with every group's password locked".into(),
        ),
    }
}

/// A `base-passwd` master file as `update-passwd` installs it with shadow passwords: each
/// entry's password field becomes `x` (the shadow file holds the locked password).
fn shadowed(master: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for line in String::from_utf8_lossy(master).lines() {
        let mut f: Vec<&str> = line.split(':').collect();
        if f.len() >= 3 && !line.starts_with('#') {
            f[1] = "x";
            out.push_str(&f.join(":"));
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// First fields of a colon-separated account file (`root` when there is none).
fn names(file: Option<&Vec<u8>>) -> Vec<String> {
    let mut out: Vec<String> = file
        .map(|t| {
            String::from_utf8_lossy(t)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split(':').next())
                .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if out.is_empty() {
        out.push("root".into());
    }
    out
}

fn group_id(have: &[(&str, Vec<u8>)], group: &str) -> Option<u32> {
    let (_, text) = have.iter().find(|(n, _)| *n == "group")?;
    String::from_utf8_lossy(text).lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == group).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

fn hosts(hostname: &str) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n");
    if hostname != "localhost" {
        s.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    s.push_str("::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n");
    s
}

/// Every regular file of the reference `/etc` that the guest lacks (besides the essentials
/// handled above), with the directories it needs.
fn restore_reference_extras(root: &dyn Tree, ctx: &Context, p: &mut Plan) {
    let Some(reference) = ctx.reference else {
        return;
    };
    let mut files = Vec::new();
    walk(reference, "", &mut files);
    for rel in files {
        let target = format!("/etc{rel}");
        if target == super::machine_id::PATH {
            if root.exists(&target) {
                continue;
            }
            p.notes.push(format!(
                "the reference /etc's machine-id is not copied: two machines must not share one \
                 ({} is planned from the guest's own evidence, or left missing)",
                super::machine_id::PATH
            ));
            continue;
        }
        let handled = p.steps.iter().any(|s| s.action.path() == target);
        if handled || root.exists(&target) {
            continue;
        }
        p.parents(
            root,
            "/etc",
            &rel,
            "needed for a file from the operator's reference /etc",
        );
        let Some(content) = reference.read(&rel, MAX_ETC_FILE) else {
            continue;
        };
        p.push(
            Action::WriteFile {
                path: target.clone(),
                content,
                mode: reference.mode(&rel).map_or(0o644, |m| m & 0o7777),
                uid: 0,
                gid: 0,
            },
            format!("{target} is missing: restored from the operator's reference /etc"),
            true,
        );
    }
}

fn walk(t: &dyn Tree, dir: &str, out: &mut Vec<String>) {
    let mut names = t.list(if dir.is_empty() { "/" } else { dir });
    names.sort();
    for n in names {
        if out.len() >= MAX_REFERENCE_FILES {
            return;
        }
        let path = format!("{dir}/{n}");
        if t.is_dir(&path) {
            walk(t, &path, out);
        } else if t.read(&path, 0).is_some() {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::super::{plan as full_plan, Policy};
    use super::*;
    use vmrescue_protocol::Filesystem;

    fn ctx<'a>(filesystems: &'a [Filesystem], reference: Option<&'a dyn Tree>) -> Context<'a> {
        Context {
            root_device: "/dev/vda1",
            filesystems,
            partitions: &[],
            dev_prefix: "/dev/",
            os_id: Some("debian"),
            hostname: None,
            reference,
            today: 20_000,
            fresh_machine_id: "5eed5eed5eed5eed5eed5eed5eed5eed",
            policy: Policy::default(),
            access: &vmrescue_protocol::secrets::access::NO_ACCESS,
            evidence: &crate::plan::evidence::NO_EVIDENCE,
            others: &[],
        }
    }

    fn file<'a>(p: &'a Plan, path: &str) -> (&'a [u8], u32, u32, &'a str) {
        let s = p
            .steps
            .iter()
            .find(|s| s.action.path() == path)
            .unwrap_or_else(|| panic!("{path} not planned: {p:#?}"));
        match &s.action {
            Action::WriteFile {
                content, mode, gid, ..
            } => (content, *mode, *gid, &s.why),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backups_first_then_rebuilt_shadow_locks_every_account() {
        let g = Guest::new(&[
            (
                "/etc/passwd-",
                Some("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"),
            ),
            (
                "/etc/group",
                Some("root:x:0:\nshadow:x:42:\nalice:x:1000:\n"),
            ),
            ("/etc/fstab", Some("UUID=r / ext4 errors=remount-ro 0 1\n")),
        ]);
        let fss = [Filesystem {
            device: "/dev/vda1".into(),
            fstype: "ext4".into(),
            uuid: Some("r".into()),
            ..Default::default()
        }];
        let c = ctx(&fss, None);
        let p = full_plan(&g.tree(), &c);
        let (passwd, mode, _, why) = file(&p, "/etc/passwd");
        assert!(passwd.starts_with(b"root:x:0:0"));
        assert_eq!(mode, 0o644);
        assert!(why.contains("/etc/passwd-"), "{why}");
        let (shadow, mode, gid, _) = file(&p, "/etc/shadow");
        assert_eq!(
            String::from_utf8_lossy(shadow),
            "root:*:20000:0:99999:7:::\nalice:*:20000:0:99999:7:::\n"
        );
        assert_eq!((mode, gid), (0o640, 42), "shadow belongs to group shadow");
        let (gshadow, _, _, _) = file(&p, "/etc/gshadow");
        assert_eq!(
            String::from_utf8_lossy(gshadow),
            "root:*::\nshadow:*::\nalice:*::\n"
        );
        assert!(!p.steps.iter().any(|s| s.action.path() == "/etc/group"));
        assert!(p
            .steps
            .iter()
            .filter(|s| s.action.kind() == "write_file")
            .all(|s| s.review));
        let (hosts, _, _, _) = file(&p, "/etc/hosts");
        assert!(hosts.starts_with(b"127.0.0.1\tlocalhost\n"));
    }

    #[test]
    fn reference_etc_takes_precedence_and_fills_extras() {
        let g = Guest::new(&[
            ("/etc/passwd-", Some("from-backup:x:0:0::/:/bin/sh\n")),
            ("/etc/ssh", None),
        ]);
        let r = Guest::new(&[
            ("/passwd", Some("from-reference:x:0:0::/:/bin/sh\n")),
            ("/hostname", Some("golden\n")),
            ("/ssh/sshd_config", Some("PermitRootLogin no\n")),
            ("/network/interfaces", Some("auto lo\n")),
        ]);
        let rt = r.tree();
        let fss = [];
        let c = ctx(&fss, Some(&rt));
        let p = full_plan(&g.tree(), &c);
        assert!(file(&p, "/etc/passwd").0.starts_with(b"from-reference"));
        assert_eq!(file(&p, "/etc/hostname").0, b"golden\n");
        assert_eq!(file(&p, "/etc/ssh/sshd_config").0, b"PermitRootLogin no\n");
        assert_eq!(file(&p, "/etc/network/interfaces").0, b"auto lo\n");
        assert!(p.steps.iter().any(|s| s.action
            == Action::MakeDir {
                path: "/etc/network".into(),
                mode: 0o755
            }));
        assert!(!p.steps.iter().any(|s| s.action.path() == "/etc/ssh"));
    }

    #[test]
    fn lost_etc_takes_the_distributions_system_accounts() {
        let g = Guest::new(&[
            (
                "/usr/share/base-passwd/passwd.master",
                Some("root:*:0:0:root:/root:/bin/bash\ndaemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"),
            ),
            (
                "/usr/share/base-passwd/group.master",
                Some("root:*:0:\ntty:*:5:\nshadow:*:42:\n"),
            ),
        ]);
        let fss = [];
        let r = Guest::new(&[("/machine-id", Some("0123456789abcdef0123456789abcdef\n"))]);
        let rt = r.tree();
        let p = full_plan(&g.tree(), &ctx(&fss, Some(&rt)));
        let (passwd, _, _, why) = file(&p, "/etc/passwd");
        assert_eq!(
            String::from_utf8_lossy(passwd),
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        );
        assert!(why.contains("passwd.master"), "{why}");
        let (group, _, _, _) = file(&p, "/etc/group");
        assert_eq!(
            String::from_utf8_lossy(group),
            "root:x:0:\ntty:x:5:\nshadow:x:42:\n"
        );
        let (_, mode, gid, _) = file(&p, "/etc/shadow");
        assert_eq!((mode, gid), (0o640, 42));
        let (id, _, _, _) = file(&p, "/etc/machine-id");
        assert_ne!(
            id, b"0123456789abcdef0123456789abcdef\n",
            "never the reference's ID"
        );
        assert!(
            p.notes.iter().any(|n| n.contains("must not share")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn etc_as_a_file_is_left_alone() {
        let g = Guest::new(&[("/etc", Some("not a dir"))]);
        let fss = [];
        let p = full_plan(&g.tree(), &ctx(&fss, None));
        assert!(!p.steps.iter().any(|s| s.action.path().starts_with("/etc")));
        assert!(p.notes[0].contains("not a directory"));
    }
}
