//! When `/etc` was lost: the files the distribution itself keeps a pristine copy of outside
//! `/etc` (Debian's packages install these copies and write them to `/etc` when it lacks them),
//! and systemd's factory files under `/usr/share/factory/etc`. Each comes back from its own
//! source, named in the step; nothing here is invented content.

use vmrescue_discovery::osroot::Tree;

use super::etc::MAX_ETC_FILE;
use super::{Action, Plan};

/// `(file in /etc, the distribution's copy)`.
const COPIES: &[(&str, &str)] = &[
    ("/etc/nsswitch.conf", "/usr/share/libc-bin/nsswitch.conf"),
    ("/etc/profile", "/usr/share/base-files/profile"),
    ("/etc/motd", "/usr/share/base-files/motd"),
    ("/etc/shells", "/usr/share/debianutils/shells"),
    ("/etc/debconf.conf", "/usr/share/debconf/debconf.conf"),
];

/// `(link in /etc, its target, the file that must exist)`: how the distribution lays them out.
const LINKS: &[(&str, &str, &str)] = &[(
    "/etc/os-release",
    "../usr/lib/os-release",
    "/usr/lib/os-release",
)];

pub const FACTORY: &str = "/usr/share/factory/etc";
/// Factory files taken at most.
const MAX_FACTORY_FILES: usize = 500;

/// Plans the distribution's defaults for what `/etc` lacks and no earlier planner restored.
pub fn plan(root: &dyn Tree, p: &mut Plan) {
    for (target, source) in COPIES {
        if root.exists(target) || p.has(target) {
            continue;
        }
        let Some(content) = root.read(source, MAX_ETC_FILE) else {
            continue;
        };
        p.push(
            Action::WriteFile {
                path: (*target).into(),
                content,
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            format!("{target} is missing: the distribution's default, copied from {source}"),
            true,
        );
    }
    for (link, target, needs) in LINKS {
        if root.exists(link) || p.has(link) || root.read(needs, 0).is_none() {
            continue;
        }
        p.push(
            Action::Symlink {
                path: (*link).into(),
                target: (*target).into(),
            },
            format!("{link} is missing: linked to {needs}, as the distribution ships it"),
            true,
        );
    }
    factory(root, p);
}

/// systemd's factory `/etc`: every regular file the guest's `/etc` lacks.
fn factory(root: &dyn Tree, p: &mut Plan) {
    if !root.is_dir(FACTORY) {
        return;
    }
    let mut files = Vec::new();
    walk(root, FACTORY, 0, &mut files);
    for rel in files {
        let target = format!("/etc{rel}");
        if root.exists(&target) || p.has(&target) {
            continue;
        }
        let source = format!("{FACTORY}{rel}");
        let Some(content) = root.read(&source, MAX_ETC_FILE) else {
            continue;
        };
        p.parents(
            root,
            "/etc",
            &rel,
            &format!("needed for files from {FACTORY}"),
        );
        p.push(
            Action::WriteFile {
                path: target.clone(),
                content,
                mode: root.mode(&source).map_or(0o644, |m| m & 0o7777),
                uid: 0,
                gid: 0,
            },
            format!("{target} is missing: systemd's factory default, copied from {source}"),
            true,
        );
    }
}

fn walk(t: &dyn Tree, dir: &str, depth: usize, out: &mut Vec<String>) {
    if depth > 8 {
        return;
    }
    let mut names = t.list(dir);
    names.sort();
    for n in names {
        if out.len() >= MAX_FACTORY_FILES {
            return;
        }
        let path = format!("{dir}/{n}");
        if t.is_dir(&path) {
            walk(t, &path, depth + 1, out);
        } else if t.read(&path, 0).is_some() {
            out.push(path[FACTORY.len()..].to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::*;

    #[test]
    fn copies_links_and_factory_files_each_from_its_source() {
        let g = Guest::new(&[
            ("/etc", None),
            ("/etc/profile", Some("mine\n")),
            ("/usr/share/libc-bin/nsswitch.conf", Some("passwd: files\n")),
            ("/usr/share/base-files/profile", Some("PATH=...\n")),
            ("/usr/lib/os-release", Some("ID=debian\n")),
            ("/usr/share/factory/etc/pam.d/login", Some("auth ...\n")),
            ("/usr/share/factory/etc/issue", Some("\\S\n")),
        ]);
        let mut p = Plan::default();
        plan(&g.tree(), &mut p);
        let got: Vec<String> = p
            .steps
            .iter()
            .map(|s| format!("{} {}", s.action.kind(), s.action.path()))
            .collect();
        assert_eq!(
            got,
            [
                "write_file /etc/nsswitch.conf",
                "symlink /etc/os-release",
                "write_file /etc/issue",
                "mkdir /etc/pam.d",
                "write_file /etc/pam.d/login",
            ],
            "{p:#?}"
        );
        let ns = &p.steps[0];
        assert!(
            ns.why.contains("/usr/share/libc-bin/nsswitch.conf"),
            "{}",
            ns.why
        );
        assert!(ns.review);
        assert_eq!(
            p.steps[1].action,
            Action::Symlink {
                path: "/etc/os-release".into(),
                target: "../usr/lib/os-release".into()
            }
        );
        match &p.steps[4].action {
            Action::WriteFile { content, .. } => assert_eq!(content, b"auth ...\n"),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn nothing_without_the_distributions_copies() {
        let g = Guest::new(&[("/etc", None), ("/usr", None)]);
        let mut p = Plan::default();
        plan(&g.tree(), &mut p);
        assert!(p.steps.is_empty(), "{p:#?}");
    }
}
