//! What the rebuilt `/etc` still lacks, per the guest's own package database: every
//! configuration file dpkg installed under `/etc` that is neither there nor planned, grouped by
//! package, with the command that puts them back. A note only: the pristine copies live in the
//! packages, which the rescue does not have.

use std::collections::BTreeMap;

use vmrescue_discovery::osroot::Tree;

use super::Plan;

pub const STATUS: &str = "/var/lib/dpkg/status";
const MAX_STATUS: usize = 32 << 20;
/// Packages named in the note at most.
const MAX_NAMED: usize = 40;

/// Per installed package, its conffiles under `/etc` (obsolete ones left out).
pub fn conffiles(status: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for stanza in status.split("\n\n") {
        let mut package = None;
        let mut installed = false;
        let mut files = Vec::new();
        let mut in_conffiles = false;
        for line in stanza.lines() {
            if let Some(rest) = line.strip_prefix(' ') {
                if in_conffiles {
                    let mut w = rest.split_whitespace();
                    let (Some(path), Some(_md5)) = (w.next(), w.next()) else {
                        continue;
                    };
                    let obsolete = w.any(|x| x == "obsolete" || x == "remove-on-upgrade");
                    if path.starts_with("/etc/") && !obsolete && !path.contains("/../") {
                        files.push(path.to_owned());
                    }
                }
                continue;
            }
            in_conffiles = false;
            match line.split_once(':') {
                Some(("Package", v)) => package = Some(v.trim().to_owned()),
                Some(("Status", v)) => installed = v.trim().ends_with(" installed"),
                Some(("Conffiles", _)) => in_conffiles = true,
                _ => {}
            }
        }
        if let (Some(p), true, false) = (package, installed, files.is_empty()) {
            let valid = p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.:".contains(&b));
            if valid && p.len() <= 100 {
                out.insert(p, files);
            }
        }
    }
    out
}

/// Notes the conffiles still missing once the plan is done.
pub fn plan(root: &dyn Tree, p: &mut Plan) {
    let Some(status) = root.read(STATUS, MAX_STATUS) else {
        return;
    };
    let mut missing_files = 0;
    let mut packages = Vec::new();
    for (package, files) in conffiles(&String::from_utf8_lossy(&status)) {
        let missing = files
            .iter()
            .filter(|f| !root.exists(f) && !p.has(f))
            .count();
        if missing > 0 {
            missing_files += missing;
            packages.push(package);
        }
    }
    if packages.is_empty() {
        return;
    }
    let more = packages.len().saturating_sub(MAX_NAMED);
    let named = packages[..packages.len().min(MAX_NAMED)].join(" ");
    p.notes.push(format!(
        "{missing_files} configuration file(s) of {} package(s) are still missing from /etc \
         (only their packages hold them): once logged in, run `apt-get install --reinstall -o \
         Dpkg::Options::=--force-confmiss {named}`{}",
        packages.len(),
        if more > 0 {
            format!(" (and {more} more: see {STATUS})")
        } else {
            String::new()
        }
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::*;

    const STATUS_TEXT: &str = "Package: login\nStatus: install ok installed\nConffiles:\n /etc/pam.d/login 1c2d newconffile\n /etc/login.defs 3e4f\n /etc/old.conf 5a6b obsolete\nDescription: x\n continued\n\nPackage: gone\nStatus: deinstall ok config-files\nConffiles:\n /etc/gone.conf 7c8d\n\nPackage: bash\nStatus: install ok installed\nConffiles:\n /etc/bash.bashrc 9e0f\n /usr/not-etc 1a2b\n";

    #[test]
    fn installed_packages_conffiles_under_etc() {
        let c = conffiles(STATUS_TEXT);
        assert_eq!(
            c.into_iter().collect::<Vec<_>>(),
            [
                ("bash".to_owned(), vec!["/etc/bash.bashrc".to_owned()]),
                (
                    "login".to_owned(),
                    vec!["/etc/pam.d/login".to_owned(), "/etc/login.defs".to_owned()]
                ),
            ]
        );
    }

    #[test]
    fn the_note_names_packages_whose_files_are_still_missing() {
        let g = Guest::new(&[("/etc/bash.bashrc", Some("")), (STATUS, Some(STATUS_TEXT))]);
        let mut p = Plan::default();
        plan(&g.tree(), &mut p);
        assert_eq!(p.notes.len(), 1);
        assert!(
            p.notes[0].starts_with("2 configuration file(s) of 1 package(s)"),
            "{}",
            p.notes[0]
        );
        assert!(
            p.notes[0].contains("--force-confmiss login`"),
            "{}",
            p.notes[0]
        );
        let g = Guest::new(&[("/etc/bash.bashrc", Some(""))]);
        let mut p = Plan::default();
        plan(&g.tree(), &mut p);
        assert!(p.notes.is_empty());
    }
}
