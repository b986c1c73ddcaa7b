//! Mount-point directories the root must have for the next boot: the API filesystems
//! (`/proc`, `/sys`, `/dev`, `/run`, `/tmp` with 1777), `/mnt` and `/media` where the
//! distribution has them, and every fstab mount point that lives on the root.

use vmrescue_discovery::fstab::{self, Kind};
use vmrescue_discovery::osroot::Tree;

use super::{Action, Context, Plan};

/// Directories every Linux root needs, with their standard modes.
const API: &[(&str, u32)] = &[
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/dev", 0o755),
    ("/run", 0o755),
    ("/tmp", 0o1777),
];

/// Distributions (os-release `ID`) whose base layout has `/mnt` and `/media`.
fn distribution_dirs(id: &str) -> &'static [&'static str] {
    match id {
        "debian"
        | "ubuntu"
        | "fedora"
        | "rhel"
        | "centos"
        | "rocky"
        | "almalinux"
        | "ol"
        | "amzn"
        | "opensuse-leap"
        | "opensuse-tumbleweed"
        | "sles"
        | "alpine" => &["/mnt", "/media"],
        "arch" => &["/mnt"],
        _ => &[],
    }
}

pub fn plan(root: &dyn Tree, ctx: &Context, fstab_text: Option<&[u8]>, p: &mut Plan) {
    let mut want: Vec<(String, u32, String)> = API
        .iter()
        .map(|(d, m)| {
            (
                d.to_string(),
                *m,
                format!("{d} is missing (mount point of the kernel's own filesystems)"),
            )
        })
        .collect();
    for d in ctx.os_id.map(distribution_dirs).unwrap_or(&[]) {
        want.push((
            d.to_string(),
            0o755,
            format!("{d} is missing (part of the distribution's layout)"),
        ));
    }
    if let Some(text) = fstab_text {
        let tab = fstab::parse(text);
        let mounts: Vec<&str> = tab
            .entries
            .iter()
            .filter(|e| e.file.starts_with('/') && e.file != "/" && e.kind != Kind::Swap)
            .map(|e| e.file.as_str())
            .collect();
        for e in &tab.entries {
            if !e.file.starts_with('/') || e.file == "/" || e.kind == Kind::Swap {
                continue;
            }
            let path = normalise(&e.file);
            if path.split('/').any(|c| c == "..") {
                continue;
            }
            // Only directories on the root itself: /boot/efi lives on /boot when /boot is a
            // separate filesystem.
            let on_other = mounts
                .iter()
                .filter(|m| normalise(m) != path)
                .any(|m| path.starts_with(&format!("{}/", normalise(m))));
            if on_other {
                continue;
            }
            want.push((
                path.clone(),
                0o755,
                format!(
                    "{path} is missing (mount point in /etc/fstab, line {})",
                    e.line
                ),
            ));
        }
    }
    let mut seen: Vec<String> = p.steps.iter().map(|s| s.action.path().to_owned()).collect();
    for (path, mode, why) in want {
        if seen.contains(&path) {
            continue;
        }
        if root.exists(&path) {
            if !root.is_dir(&path) {
                p.notes.push(format!(
                    "{path} exists but is not a directory; left alone (the boot may fail to mount there)"
                ));
            }
            seen.push(path);
            continue;
        }
        // Parents first (an fstab mount point may be deep).
        let mut cur = String::new();
        let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            cur.push('/');
            cur.push_str(part);
            if seen.contains(&cur) || root.exists(&cur) {
                continue;
            }
            let last = i + 1 == parts.len();
            p.push(
                Action::MakeDir {
                    path: cur.clone(),
                    mode: if last { mode } else { 0o755 },
                },
                if last {
                    why.clone()
                } else {
                    format!("parent of {path}")
                },
                false,
            );
            seen.push(cur.clone());
        }
    }
}

use vmrescue_discovery::path::tidy_keep_dotdot as normalise;

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::super::Policy;
    use super::*;

    fn ctx(os: Option<&str>) -> Context<'_> {
        Context {
            root_device: "/dev/vda1",
            filesystems: &[],
            partitions: &[],
            dev_prefix: "/dev/",
            os_id: os,
            hostname: None,
            reference: None,
            today: 0,
            fresh_machine_id: "5eed5eed5eed5eed5eed5eed5eed5eed",
            policy: Policy::default(),
            access: &vmrescue_protocol::secrets::access::NO_ACCESS,
            evidence: &crate::plan::evidence::NO_EVIDENCE,
            others: &[],
        }
    }

    fn planned(p: &Plan) -> Vec<(String, u32)> {
        p.steps
            .iter()
            .map(|s| match &s.action {
                Action::MakeDir { path, mode } => (path.clone(), *mode),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn api_dirs_and_fstab_mount_points() {
        let g = Guest::new(&[("/dev", None), ("/sys", Some("a file"))]);
        let mut p = Plan::default();
        let fstab = b"UUID=a / ext4 defaults 0 1\nUUID=b /boot ext4 defaults 0 2\n\
UUID=c /boot/efi vfat umask=0077 0 1\nUUID=d /srv//data ext4 defaults 0 2\n\
proc /proc proc defaults 0 0\nUUID=e none swap sw 0 0\n/dev/x /a/../../etc ext4 defaults 0 0\n";
        plan(&g.tree(), &ctx(Some("arch")), Some(fstab), &mut p);
        assert_eq!(
            planned(&p),
            [
                ("/proc".to_string(), 0o555),
                ("/run".into(), 0o755),
                ("/tmp".into(), 0o1777),
                ("/mnt".into(), 0o755),
                ("/boot".into(), 0o755),
                ("/srv".into(), 0o755),
                ("/srv/data".into(), 0o755),
            ]
        );
        assert!(p.notes[0].starts_with("/sys exists but is not a directory"));
    }

    #[test]
    fn unknown_distribution_gets_only_the_api_dirs() {
        let g = Guest::new(&[("/proc", None), ("/sys", None), ("/dev", None)]);
        let mut p = Plan::default();
        plan(&g.tree(), &ctx(None), None, &mut p);
        assert_eq!(
            planned(&p),
            [("/run".to_string(), 0o755), ("/tmp".into(), 0o1777)]
        );
    }
}
