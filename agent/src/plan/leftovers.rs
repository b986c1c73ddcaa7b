//! Temporary files a killed earlier rescue left (`.NAME.vmrescue-tmp.PID.NANOS.SEQ`, made by
//! [`crate::atomic`] before its rename): never the file they were to replace, so they are
//! removed, each one reported. They can only be in a directory a rescue writes to: the root,
//! `/etc` and below, the report directory, and the directories this plan writes to.

use vmrescue_discovery::osroot::Tree;

use super::{Action, Plan};
pub use crate::atomic::is_temp_name;

/// Directories searched at most, and their depth below `/etc`.
const MAX_DIRS: usize = 2000;
const MAX_DEPTH: usize = 4;

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Plans the removal of every leftover in the directories a rescue writes to.
pub fn plan(root: &dyn Tree, report_dir: &str, p: &mut Plan) {
    let mut dirs: Vec<String> = vec!["/".into(), report_dir.into()];
    // /etc and its subdirectories, breadth first, bounded.
    let mut queue = vec![("/etc".to_owned(), 0)];
    while let Some((d, depth)) = queue.pop() {
        if dirs.len() >= MAX_DIRS {
            break;
        }
        if depth < MAX_DEPTH {
            for n in root.list(&d) {
                let sub = join(&d, &n);
                if root.is_dir(&sub) && root.exists(&sub) && !is_temp_name(&n) {
                    queue.push((sub, depth + 1));
                }
            }
        }
        dirs.push(d);
    }
    for s in &p.steps {
        if let Some((parent, _)) = s.action.path().rsplit_once('/') {
            dirs.push(if parent.is_empty() {
                "/".into()
            } else {
                parent.to_owned()
            });
        }
    }
    dirs.sort();
    dirs.dedup();
    let mut found = Vec::new();
    for d in dirs {
        let mut names = root.list(&d);
        names.sort();
        found.extend(
            names
                .into_iter()
                .filter(|n| is_temp_name(n))
                .map(|n| join(&d, &n))
                .filter(|path| !root.is_dir(path)),
        );
    }
    for path in found {
        p.push(
            Action::RemoveTemp { path },
            "left by an earlier rescue that was stopped before it renamed it into place (never \
             the file itself)",
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::*;

    #[test]
    fn only_the_atomic_writers_names_are_taken() {
        assert!(is_temp_name(".fstab.vmrescue-tmp.1.1764590000000000000.3"));
        assert!(is_temp_name(".report-X.json.vmrescue-tmp.1.2.0"));
        for n in [
            "fstab",
            ".fstab.vmrescue-tmp.1.2",
            ".fstab.vmrescue-tmp.1.2.x",
            "fstab.vmrescue-tmp.1.2.3",
            ".vmrescue-tmp.1.2.3",
            ".fstab.vmrescue-20261201T000000Z",
        ] {
            assert!(!is_temp_name(n), "{n}");
        }
    }

    #[test]
    fn leftovers_in_etc_the_root_and_the_report_directory() {
        let g = Guest::new(&[
            ("/etc/fstab", Some("x")),
            ("/etc/.fstab.vmrescue-tmp.1.5.0", Some("partial")),
            ("/etc/ssh/.sshd_config.vmrescue-tmp.1.6.1", Some("")),
            ("/.autorelabel.vmrescue-tmp.1.7.2", Some("")),
            (
                "/var/log/vmrescue/.report-S.json.vmrescue-tmp.1.8.3",
                Some("{"),
            ),
            ("/home/u/.x.vmrescue-tmp.1.9.4", Some("not ours to look at")),
            ("/etc/.dir.vmrescue-tmp.1.2.3", None),
        ]);
        let mut p = Plan::default();
        plan(&g.tree(), "/var/log/vmrescue", &mut p);
        let paths: Vec<&str> = p.steps.iter().map(|s| s.action.path()).collect();
        assert_eq!(
            paths,
            [
                "/.autorelabel.vmrescue-tmp.1.7.2",
                "/etc/.fstab.vmrescue-tmp.1.5.0",
                "/etc/ssh/.sshd_config.vmrescue-tmp.1.6.1",
                "/var/log/vmrescue/.report-S.json.vmrescue-tmp.1.8.3",
            ]
        );
        assert!(p.steps.iter().all(|s| s.action.kind() == "remove_temp"));
    }
}
