//! Access on request (pure): root's password set from the operator's crypt(3) hash, users
//! unlocked (a `!` lock and a passed expiry date cleared), public keys added to a user's
//! `~/.ssh/authorized_keys`. Planned on what the plan already rebuilt (a lost `/etc`) or else
//! on the root's own files; a step's `why` says what was done ("root password set", "1 key
//! added for alice"), never a hash or a key.

use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::secrets::{Access, SshKey};

use super::etc::MAX_ETC_FILE;
use super::{Action, Context, Other, Plan};

/// An account of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The accounts in a passwd file's text (malformed lines skipped).
pub fn accounts(passwd: &str) -> Vec<Account> {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 7).then_some(())?;
            Some(Account {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

/// What editing the shadow file did: its new text, what was done, what could not be.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ShadowEdit {
    pub text: String,
    pub done: Vec<String>,
    pub notes: Vec<String>,
}

/// `shadow` with root's password set to `hash` (a line added when root has none) and the
/// `unlock` users' `!` locks and passed expiry dates cleared; `today` in days since the epoch.
pub fn edit_shadow(shadow: &str, hash: Option<&str>, unlock: &[String], today: u64) -> ShadowEdit {
    let mut out = ShadowEdit::default();
    let mut root_seen = false;
    let mut unlocked: Vec<&str> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for line in shadow.lines() {
        let mut f: Vec<String> = line.split(':').map(str::to_owned).collect();
        if f.len() != 9 {
            lines.push(line.to_owned());
            continue;
        }
        if let (Some(h), "root") = (hash, f[0].as_str()) {
            root_seen = true;
            f[1] = h.to_owned();
            f[2] = today.to_string();
        }
        if let Some(u) = unlock.iter().find(|u| **u == f[0]) {
            unlocked.push(u);
            let open = f[1].trim_start_matches('!').to_owned();
            let expired = f[7].parse::<u64>().is_ok_and(|d| d <= today);
            match (open.as_str(), f[1].starts_with('!')) {
                // Not locked (root's password given above is not).
                (_, false) => {}
                ("" | "*", true) => out.notes.push(format!(
                    "{u} has no password behind its lock: not unlocked (an empty password would let anyone in); give it a key with --ssh-key --user {u}"
                )),
                _ => {
                    f[1] = open;
                    out.done.push(format!("{u} unlocked"));
                }
            }
            if expired {
                f[7].clear();
                out.done.push(format!("{u}'s account expiry date cleared"));
            }
        }
        lines.push(f.join(":"));
    }
    if let (Some(h), false) = (hash, root_seen) {
        lines.insert(0, format!("root:{h}:{today}:0:99999:7:::"));
    }
    if hash.is_some() {
        out.done.insert(0, "root password set".into());
    }
    for u in unlock.iter().filter(|u| !unlocked.contains(&u.as_str())) {
        out.notes.push(format!(
            "no user {u} in /etc/shadow: not unlocked (vmrescue creates no account)"
        ));
    }
    out.text = lines.join("\n") + "\n";
    out
}

/// `authorized_keys` with `keys` appended where the same key is not there yet; how many were.
pub fn add_keys(existing: &str, keys: &[&SshKey]) -> (String, usize) {
    let have = |k: &SshKey, text: &str| {
        text.lines().any(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(k.key())
        })
    };
    let mut text = existing.to_owned();
    let mut added = 0;
    for k in keys {
        if have(k, &text) {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(k.line());
        text.push('\n');
        added += 1;
    }
    (text, added)
}

/// The newest text of `path`: what the plan writes there, else the root's file.
fn current(root: &dyn Tree, p: &Plan, path: &str) -> Option<Vec<u8>> {
    p.steps
        .iter()
        .rev()
        .find_map(|s| match &s.action {
            Action::WriteFile {
                path: at, content, ..
            } if at == path => Some(content.clone()),
            _ => None,
        })
        .or_else(|| root.read(path, MAX_ETC_FILE))
}

/// Puts `content` at `path`: into the step that already writes it (its `why` extended), or a
/// new step.
fn write_etc(p: &mut Plan, path: &str, content: Vec<u8>, mode: u32, why: String) {
    let planned = p.steps.iter_mut().rev().find(|s| match &s.action {
        Action::WriteFile { path: at, .. } => at == path,
        _ => false,
    });
    match planned {
        Some(step) => {
            if let Action::WriteFile { content: c, .. } = &mut step.action {
                *c = content;
            }
            step.why = format!("{}; {why}", step.why);
        }
        None => p.push(
            Action::WriteFile {
                path: path.into(),
                content,
                mode,
                uid: 0,
                gid: 0,
            },
            why,
            false,
        ),
    }
}

/// Plans the access asked for on the root seen through `root`.
pub fn plan(root: &dyn Tree, access: &Access, ctx: &Context, p: &mut Plan) {
    if access.is_empty() {
        return;
    }
    if access.root_password.is_some() || !access.unlock.is_empty() {
        match current(root, p, "/etc/shadow") {
            Some(text) => {
                let e = edit_shadow(
                    &String::from_utf8_lossy(&text),
                    access.root_password.as_ref().map(|h| h.as_str()),
                    &access.unlock,
                    ctx.today,
                );
                p.notes.extend(e.notes);
                if !e.done.is_empty() {
                    write_etc(
                        p,
                        "/etc/shadow",
                        e.text.into_bytes(),
                        0o640,
                        e.done.join("; "),
                    );
                }
            }
            None => p.notes.push(
                "/etc/shadow is missing and not rebuilt: no password set and no user unlocked"
                    .into(),
            ),
        }
    }
    let passwd = current(root, p, "/etc/passwd")
        .map(|t| accounts(&String::from_utf8_lossy(&t)))
        .unwrap_or_default();
    let mut users: Vec<&str> = access.ssh_keys.iter().map(|k| k.user.as_str()).collect();
    users.dedup();
    for user in users {
        let keys: Vec<&SshKey> = access.ssh_keys.iter().filter(|k| k.user == user).collect();
        let Some(acct) = passwd.iter().find(|a| a.name == user) else {
            p.notes.push(format!(
                "no user {user} in /etc/passwd: its SSH key(s) were not added (vmrescue creates no account)"
            ));
            continue;
        };
        let home = acct.home.trim_end_matches('/');
        if !acct.home.starts_with('/') || home.split('/').any(|c| c == "..") {
            p.notes.push(format!(
                "{user}'s home {:?} is not a path: its SSH key(s) were not added",
                acct.home
            ));
            continue;
        }
        // On the root, or on the guest's filesystem mounted there (a separate /home).
        let held = Other::holding(ctx.others, home).filter(|(o, rel)| o.tree.is_dir(rel));
        let (tree, base, on) = match held {
            _ if root.is_dir(&acct.home) => (root, home.to_owned(), None),
            Some((o, rel)) => (o.tree, rel.trim_end_matches('/').to_owned(), Some(o.device)),
            None => {
                p.notes.push(format!(
                    "{user}'s home {:?} is not a directory on the root or on a filesystem mounted \
                     there: its SSH key(s) were not added",
                    acct.home
                ));
                continue;
            }
        };
        let on_what = on.map_or(String::new(), |d| format!(" (on {d}, the guest's {home})"));
        let dir = format!("{base}/.ssh");
        let file = format!("{dir}/authorized_keys");
        if !tree.is_dir(&dir) {
            p.push_on(
                on,
                Action::MakeUserDir {
                    path: dir.clone(),
                    mode: 0o700,
                    uid: acct.uid,
                    gid: acct.gid,
                },
                format!("for {user}'s SSH keys{on_what}"),
                false,
            );
        }
        let existing = tree.read(&file, MAX_ETC_FILE).unwrap_or_default();
        let (text, added) = add_keys(&String::from_utf8_lossy(&existing), &keys);
        if added == 0 {
            p.notes
                .push(format!("{user}'s SSH key(s) are already authorized"));
            continue;
        }
        p.push_on(
            on,
            Action::WriteUserFile {
                path: file,
                content: text.into_bytes(),
                mode: 0o600,
                uid: acct.uid,
                gid: acct.gid,
            },
            format!("{added} key(s) added for {user}{on_what}"),
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{self, Guest};
    use vmrescue_protocol::secrets::PasswordHash;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHyLptXQsulXKbxnfyXQZHg0126hHD8G3/3cynPHq0r8 alice@laptop";
    const SHADOW: &str = "root:!:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:!$y$j9T$s$h:19000:0:99999:7::19001:\nbob:!:19000:0:99999:7:::\n";

    #[test]
    fn shadow_root_password_and_unlocks() {
        let e = edit_shadow(
            SHADOW,
            Some("$6$salt$hash"),
            &["alice".into(), "bob".into(), "carol".into()],
            20_000,
        );
        let lines: Vec<&str> = e.text.lines().collect();
        assert_eq!(lines[0], "root:$6$salt$hash:20000:0:99999:7:::");
        assert_eq!(lines[1], "daemon:*:19000:0:99999:7:::", "others untouched");
        assert_eq!(lines[2], "alice:$y$j9T$s$h:19000:0:99999:7:::");
        assert_eq!(
            lines[3], "bob:!:19000:0:99999:7:::",
            "no password behind the lock"
        );
        assert_eq!(
            e.done,
            [
                "root password set",
                "alice unlocked",
                "alice's account expiry date cleared"
            ]
        );
        assert_eq!(e.notes.len(), 2, "{:?}", e.notes);
        assert!(e.notes[0].starts_with("bob has no password"));
        assert!(e.notes[1].starts_with("no user carol"));
        assert!(e.notes.iter().all(|n| !n.contains("$y$")));
    }

    #[test]
    fn a_shadow_without_root_gets_its_line() {
        let e = edit_shadow("alice:x:1:0:99999:7:::\n", Some("$6$s$h"), &[], 7);
        assert_eq!(
            e.text,
            "root:$6$s$h:7:0:99999:7:::\nalice:x:1:0:99999:7:::\n"
        );
    }

    #[test]
    fn keys_are_added_once() {
        let k = SshKey::new("alice", KEY).unwrap();
        let (t, n) = add_keys("", &[&k]);
        assert_eq!((t.as_str(), n), (format!("{KEY}\n").as_str(), 1));
        // The same key with another comment, and a file without a final newline.
        let other = KEY.replace("alice@laptop", "old");
        assert_eq!(add_keys(&other, &[&k]), (other.clone(), 0));
        let (t, n) = add_keys("ssh-rsa AAAA x", &[&k]);
        assert_eq!((t, n), (format!("ssh-rsa AAAA x\n{KEY}\n"), 1));
    }

    fn access(user: &str) -> Access {
        Access {
            root_password: Some(PasswordHash::new("$6$salt$hash").unwrap()),
            ssh_keys: vec![SshKey::new(user, KEY).unwrap()],
            unlock: vec![],
        }
    }

    #[test]
    fn plan_sets_the_password_and_makes_ssh_as_the_user() {
        let g = Guest::new(&[
            (
                "/etc/passwd",
                Some("root:x:0:0::/root:/bin/bash\nalice:x:1000:1001::/home/alice:/bin/bash\n"),
            ),
            ("/etc/shadow", Some(SHADOW)),
            ("/home/alice", None),
        ]);
        let ctx = testing::ctx(&[], Some("debian"));
        let mut p = Plan::default();
        plan(&g.tree(), &access("alice"), &ctx, &mut p);
        let kinds: Vec<String> = p
            .steps
            .iter()
            .map(|s| format!("{} {}: {}", s.action.kind(), s.action.path(), s.why))
            .collect();
        assert_eq!(
            kinds,
            [
                "write_file /etc/shadow: root password set",
                "mkdir /home/alice/.ssh: for alice's SSH keys",
                "write_file /home/alice/.ssh/authorized_keys: 1 key(s) added for alice",
            ]
        );
        assert_eq!(
            p.steps[1].action,
            Action::MakeUserDir {
                path: "/home/alice/.ssh".into(),
                mode: 0o700,
                uid: 1000,
                gid: 1001
            }
        );
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        // No hash or key in what the report shows.
        for s in &p.steps {
            let c = s.to_change();
            assert!(
                !c.detail.contains("$6$") && !c.detail.contains("AAAA"),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_rebuilt_shadow_is_edited_in_its_step_and_unknown_users_are_notes() {
        let g = Guest::new(&[("/etc/passwd", Some("root:x:0:0::/root:/bin/sh\n"))]);
        let ctx = testing::ctx(&[], Some("debian"));
        let mut p = Plan::default();
        p.push(
            Action::WriteFile {
                path: "/etc/shadow".into(),
                content: b"root:*:1:0:99999:7:::\n".to_vec(),
                mode: 0o640,
                uid: 0,
                gid: 42,
            },
            "rebuilt",
            true,
        );
        plan(&g.tree(), &access("nobody-here"), &ctx, &mut p);
        assert_eq!(p.steps.len(), 1, "{p:#?}");
        assert_eq!(p.steps[0].why, "rebuilt; root password set");
        match &p.steps[0].action {
            Action::WriteFile { content, .. } => {
                assert!(content.starts_with(b"root:$6$salt$hash:20000:"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.notes.len(), 1);
        assert!(p.notes[0].starts_with("no user nobody-here in /etc/passwd"));
    }

    #[test]
    fn a_home_elsewhere_or_missing_gets_no_key() {
        let g = Guest::new(&[(
            "/etc/passwd",
            Some("alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::../x:/bin/sh\n"),
        )]);
        let ctx = testing::ctx(&[], Some("debian"));
        for (user, says) in [
            (
                "alice",
                "is not a directory on the root or on a filesystem mounted there",
            ),
            ("bob", "is not a path"),
        ] {
            let mut p = Plan::default();
            let a = Access {
                ssh_keys: vec![SshKey::new(user, KEY).unwrap()],
                ..Default::default()
            };
            plan(&g.tree(), &a, &ctx, &mut p);
            assert!(p.steps.is_empty(), "{p:#?}");
            assert!(p.notes[0].contains(says), "{:?}", p.notes);
        }
    }

    #[test]
    fn a_home_on_a_separate_filesystem_gets_the_key_there() {
        let g = Guest::new(&[
            (
                "/etc/passwd",
                Some("alice:x:1000:1000::/home/alice:/bin/sh\ncarol:x:1002:1002::/srv/carol:/bin/sh\n"),
            ),
            ("/home", None),
        ]);
        let home = Guest::new(&[("/alice", None), ("/lost+found", None)]);
        let srv = Guest::new(&[("/x", None)]);
        let (home_tree, srv_tree) = (home.tree(), srv.tree());
        let others = [
            Other {
                device: "/dev/vdb",
                mountpoint: "/home",
                tree: &home_tree,
            },
            Other {
                device: "/dev/vdc",
                mountpoint: "/",
                tree: &srv_tree,
            },
        ];
        let ctx = Context {
            others: &others,
            ..testing::ctx(&[], Some("debian"))
        };
        let a = Access {
            ssh_keys: vec![
                SshKey::new("alice", KEY).unwrap(),
                SshKey::new("carol", KEY).unwrap(),
            ],
            ..Default::default()
        };
        let mut p = Plan::default();
        plan(&g.tree(), &a, &ctx, &mut p);
        let got: Vec<(&str, Option<&str>)> = p
            .steps
            .iter()
            .map(|s| (s.action.path(), s.on.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("/alice/.ssh", Some("/dev/vdb")),
                ("/alice/.ssh/authorized_keys", Some("/dev/vdb"))
            ]
        );
        assert!(p.steps[1]
            .why
            .contains("1 key(s) added for alice (on /dev/vdb, the guest's /home/alice)"));
        // carol's /srv is no filesystem the guest mounts there.
        assert!(
            p.notes.iter().any(|n| n.starts_with("carol's home")),
            "{:?}",
            p.notes
        );
        assert_eq!(
            Other::holding(&others, "/home").map(|(o, r)| (o.device, r)),
            Some(("/dev/vdb", "/".to_owned()))
        );
        assert!(Other::holding(&others, "/homeless").is_none());
    }
}
