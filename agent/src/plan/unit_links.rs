//! When `/etc/systemd/system` was lost, the services the guest had enabled are lost with it
//! (ssh, cron, the console's getty): the guest boots, but nothing listens. The links are made
//! again from what the guest's own packages recorded: Debian's `deb-systemd-helper` keeps the
//! state of every link it made under `/var/lib/systemd/deb-systemd-helper-enabled`, and the
//! maintainer scripts under `/var/lib/dpkg/info` name the units they `systemctl enable`
//! (linked as their unit file's `[Install]` section says). Units an administrator enabled by
//! hand are recorded nowhere: a note says so.

use std::collections::BTreeMap;

use vmrescue_discovery::osroot::Tree;

use super::{Action, Plan};

pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const DSH: &str = "/var/lib/systemd/deb-systemd-helper-enabled";
const DPKG_INFO: &str = "/var/lib/dpkg/info";
const UNIT_FILE_DIRS: &[&str] = &["/lib/systemd/system", "/usr/lib/systemd/system"];
const MAX_SCRIPT: usize = 256 << 10;
const MAX_UNIT_FILE: usize = 64 << 10;
const MAX_LINKS: usize = 1000;

/// A unit name systemd would accept (`name.type`, `name@instance.type`), nothing else.
fn unit_name(n: &str) -> bool {
    const TYPES: &[&str] = &[
        ".service", ".socket", ".target", ".timer", ".path", ".mount", ".swap",
    ];
    n.len() <= 255
        && TYPES.iter().any(|t| n.ends_with(t) && n.len() > t.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.@-\\".contains(&b))
        && !n.starts_with('.')
}

/// A link's place below [`UNIT_DIR`]: `UNIT` (an alias) or `UNIT.wants/UNIT`,
/// `UNIT.requires/UNIT`.
fn link_place(rel: &str) -> bool {
    match rel.split_once('/') {
        None => unit_name(rel),
        Some((dir, name)) => {
            let base = dir
                .strip_suffix(".wants")
                .or_else(|| dir.strip_suffix(".requires"));
            base.is_some_and(unit_name) && unit_name(name)
        }
    }
}

/// The unit file a link points to: `foo@bar.service` is an instance of `foo@.service`.
fn template_of(name: &str) -> String {
    match (name.split_once('@'), name.rfind('.')) {
        (Some((prefix, _)), Some(dot)) => format!("{prefix}@{}", &name[dot..]),
        _ => name.to_owned(),
    }
}

/// Where the guest's unit file `name` is, as a link target.
fn unit_file(root: &dyn Tree, name: &str) -> Option<String> {
    UNIT_FILE_DIRS
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| root.read(p, 0).is_some())
}

/// `link below UNIT_DIR -> (unit file, where the record came from)`.
type Links = BTreeMap<String, (String, String)>;

/// Links from `deb-systemd-helper`'s state: every marker file that is not a `.dsh-also` list is
/// an enabled link; the `.dsh-also` lists say which unit an alias belongs to.
fn from_dsh(root: &dyn Tree, out: &mut Links) {
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let mut markers = Vec::new();
    for n in root.list(DSH) {
        let path = format!("{DSH}/{n}");
        if let Some(unit) = n.strip_suffix(".dsh-also") {
            let text = root.read(&path, 64 << 10).unwrap_or_default();
            for line in String::from_utf8_lossy(&text).lines() {
                if let Some(rel) = line.trim().strip_prefix("/etc/systemd/system/") {
                    owner.insert(rel.to_owned(), unit.to_owned());
                }
            }
        } else if root.is_dir(&path) {
            markers.extend(root.list(&path).into_iter().map(|m| format!("{n}/{m}")));
        } else {
            markers.push(n);
        }
    }
    markers.sort();
    for rel in markers {
        if !link_place(&rel) {
            continue;
        }
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        let unit = owner
            .get(&rel)
            .cloned()
            .unwrap_or_else(|| template_of(name));
        if let Some(file) = unit_name(&unit).then(|| unit_file(root, &unit)).flatten() {
            out.entry(rel.clone())
                .or_insert((file, format!("enabled per {DSH}/{rel}")));
        }
    }
}

/// Units a maintainer script enables: `systemctl [options] enable UNIT...`.
fn enabled_in(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in script.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(sc) = words.iter().position(|w| w.ends_with("systemctl")) else {
            continue;
        };
        let Some(en) = words[sc..].iter().position(|w| *w == "enable") else {
            continue;
        };
        for w in &words[sc + en + 1..] {
            if matches!(*w, "||" | "&&" | ";" | "|") {
                break;
            }
            let w = w.trim_end_matches(';');
            if unit_name(w) {
                out.push(w.to_owned());
            }
        }
    }
    out
}

/// `[Install]` of a unit file: (`WantedBy`, `RequiredBy`, `Alias`, `DefaultInstance`).
fn install(text: &str) -> (Vec<String>, Vec<String>, Vec<String>, Option<String>) {
    let (mut wanted, mut required, mut alias, mut default) = (vec![], vec![], vec![], None);
    let mut in_install = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|_| in_install) else {
            continue;
        };
        let names = || v.split_whitespace().map(str::to_owned);
        match k.trim() {
            "WantedBy" => wanted.extend(names()),
            "RequiredBy" => required.extend(names()),
            "Alias" => alias.extend(names()),
            "DefaultInstance" => default = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    (wanted, required, alias, default)
}

/// Links for the units the guest's maintainer scripts enable.
fn from_scripts(root: &dyn Tree, out: &mut Links) {
    let mut scripts: Vec<String> = root
        .list(DPKG_INFO)
        .into_iter()
        .filter(|n| n.ends_with(".postinst"))
        .collect();
    scripts.sort();
    for s in scripts {
        let path = format!("{DPKG_INFO}/{s}");
        let Some(text) = root.read(&path, MAX_SCRIPT) else {
            continue;
        };
        for name in enabled_in(&String::from_utf8_lossy(&text)) {
            let template = template_of(&name);
            let Some(file) = unit_file(root, &template) else {
                continue;
            };
            let unit_text = root.read(&file, MAX_UNIT_FILE).unwrap_or_default();
            let (wanted, required, alias, default) = install(&String::from_utf8_lossy(&unit_text));
            // `foo@.service` alone is enabled as its default instance.
            let instance = match (name == template && name.contains('@'), default) {
                (true, Some(i)) => template.replacen("@.", &format!("@{i}."), 1),
                (true, None) => continue,
                (false, _) => name.clone(),
            };
            let why = format!("enabled by {path} (`systemctl enable {name}`)");
            let places = wanted
                .iter()
                .map(|w| format!("{w}.wants/{instance}"))
                .chain(required.iter().map(|r| format!("{r}.requires/{instance}")))
                .chain(alias.iter().cloned());
            for rel in places.filter(|r| link_place(r)) {
                out.entry(rel).or_insert((file.clone(), why.clone()));
            }
        }
    }
}

/// Plans the links (and their directories) when [`UNIT_DIR`] is missing.
pub fn plan(root: &dyn Tree, p: &mut Plan) {
    let systemd = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
        .iter()
        .any(|s| root.exists(s));
    if root.exists(UNIT_DIR) || !systemd {
        return;
    }
    let mut links = Links::new();
    from_dsh(root, &mut links);
    from_scripts(root, &mut links);
    if links.is_empty() {
        return;
    }
    for dir in ["/etc/systemd", UNIT_DIR] {
        if !root.exists(dir) && !p.has(dir) {
            p.push(
                Action::MakeDir {
                    path: dir.into(),
                    mode: 0o755,
                },
                "needed for the guest's enabled units",
                false,
            );
        }
    }
    for (rel, (target, why)) in links.into_iter().take(MAX_LINKS) {
        // A link the plan already makes (the network's, rebuilt from evidence) stays one.
        if p.has(&format!("{UNIT_DIR}/{rel}")) {
            continue;
        }
        if let Some((dir, _)) = rel.split_once('/') {
            let dir = format!("{UNIT_DIR}/{dir}");
            if !p.has(&dir) {
                p.push(
                    Action::MakeDir {
                        path: dir,
                        mode: 0o755,
                    },
                    "needed for the guest's enabled units",
                    false,
                );
            }
        }
        p.push(
            Action::Symlink {
                path: format!("{UNIT_DIR}/{rel}"),
                target,
            },
            format!("{UNIT_DIR} was lost: {why}"),
            true,
        );
    }
    p.notes.push(format!(
        "{UNIT_DIR} was lost: the units the guest's packages enable were linked again; units \
         enabled or masked by hand are recorded nowhere (check `systemctl list-unit-files`)"
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::*;

    const GETTY: &str =
        "[Unit]\nDescription=Getty\n[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n";
    const SSH: &str = "[Service]\nExecStart=/usr/sbin/sshd\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n";

    fn links(p: &Plan) -> Vec<(String, String)> {
        p.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Symlink { path, target } => Some((path.clone(), target.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn links_come_back_from_the_packages_records() {
        let g = Guest::new(&[
            ("/etc", None),
            ("/lib/systemd/systemd", Some("")),
            ("/lib/systemd/system/ssh.service", Some(SSH)),
            ("/lib/systemd/system/getty@.service", Some(GETTY)),
            ("/lib/systemd/system/fstrim.timer", Some("[Install]\nWantedBy=timers.target\n")),
            (&format!("{DSH}/multi-user.target.wants/ssh.service"), Some("")),
            (&format!("{DSH}/sshd.service"), Some("")),
            (&format!("{DSH}/timers.target.wants/fstrim.timer"), Some("")),
            (&format!("{DSH}/timers.target.wants/gone.timer"), Some("")),
            (&format!("{DSH}/timers.target.wants/..bad"), Some("")),
            (
                &format!("{DSH}/ssh.service.dsh-also"),
                Some("/etc/systemd/system/multi-user.target.wants/ssh.service\n/etc/systemd/system/sshd.service\n"),
            ),
            (
                "/var/lib/dpkg/info/systemd.postinst",
                Some("#!/bin/sh\nif true; then\n    systemctl ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} enable getty@tty1.service || true\nfi\n"),
            ),
            ("/var/lib/dpkg/info/evil.postinst", Some("systemctl enable ../../etc/shadow\n")),
        ]);
        let mut p = Plan::default();
        plan(&g.tree(), &mut p);
        assert_eq!(
            links(&p),
            [
                (
                    "/etc/systemd/system/getty.target.wants/getty@tty1.service".into(),
                    "/lib/systemd/system/getty@.service".into()
                ),
                (
                    "/etc/systemd/system/multi-user.target.wants/ssh.service".into(),
                    "/lib/systemd/system/ssh.service".into()
                ),
                (
                    "/etc/systemd/system/sshd.service".into(),
                    "/lib/systemd/system/ssh.service".into()
                ),
                (
                    "/etc/systemd/system/timers.target.wants/fstrim.timer".into(),
                    "/lib/systemd/system/fstrim.timer".into()
                ),
            ]
        );
        let dirs: Vec<&str> = p
            .steps
            .iter()
            .filter(|s| s.action.kind() == "mkdir")
            .map(|s| s.action.path())
            .collect();
        assert_eq!(
            dirs,
            [
                "/etc/systemd",
                "/etc/systemd/system",
                "/etc/systemd/system/getty.target.wants",
                "/etc/systemd/system/multi-user.target.wants",
                "/etc/systemd/system/timers.target.wants"
            ]
        );
        assert!(p.notes[0].contains("by hand"), "{:?}", p.notes);
    }

    #[test]
    fn no_links_for_a_guest_without_systemd() {
        let g = Guest::new(&[
            ("/etc", None),
            ("/lib/systemd/system/fstrim.timer", Some("")),
            (&format!("{DSH}/timers.target.wants/fstrim.timer"), Some("")),
        ]);
        let mut p = Plan::default();
        plan(&g.tree(), &mut p);
        assert!(p.steps.is_empty() && p.notes.is_empty());
    }

    #[test]
    fn an_existing_unit_directory_is_the_administrators() {
        let g = Guest::new(&[
            ("/etc/systemd/system", None),
            ("/lib/systemd/systemd", Some("")),
            ("/lib/systemd/system/fstrim.timer", Some("")),
            (&format!("{DSH}/timers.target.wants/fstrim.timer"), Some("")),
        ]);
        let mut p = Plan::default();
        plan(&g.tree(), &mut p);
        assert!(p.steps.is_empty() && p.notes.is_empty());
    }

    #[test]
    fn names_are_checked() {
        assert!(unit_name("getty@tty1.service"));
        assert!(!unit_name(".service"));
        assert!(!unit_name("a/b.service"));
        assert!(!unit_name("x.conf"));
        assert!(link_place("multi-user.target.wants/ssh.service"));
        assert!(!link_place("multi-user.target/ssh.service"));
        assert!(!link_place("a.wants/b/c.service"));
        assert_eq!(template_of("getty@tty1.service"), "getty@.service");
        assert_eq!(template_of("ssh.service"), "ssh.service");
        assert_eq!(
            enabled_in("systemctl --root=/ enable a.service b.timer || true\nsystemctl disable c.service\n"),
            ["a.service", "b.timer"]
        );
    }
}
