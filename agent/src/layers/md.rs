//! md RAID: the arrays whose members are on the guest's disks, assembled by `mdadm` (read-only
//! in check mode: no resync, no recovery, no superblock written), and what sysfs says of each
//! array once it runs (its members, how many are missing). The pure parts (the configuration,
//! reading sysfs values) apart from running `mdadm`.

use std::path::Path;

/// The `mdadm` binary (late archive).
pub const MDADM: &str = "/sbin/mdadm";
/// Where the agent writes mdadm's configuration.
pub const CONFIG: &str = "/run/vmrescue/mdadm.conf";

/// mdadm's configuration: only `members` are looked at; every array found on them is taken
/// for this host's (no `_0` renaming of arrays made elsewhere, as a rescue's always are).
pub fn config(members: &[String]) -> String {
    format!("DEVICE {}\nHOMEHOST <ignore>\n", members.join(" "))
}

/// The assembly command: every array on the configured members, started even when degraded
/// (`--run`), read-only in check mode.
pub fn assemble_args(read_only: bool) -> Vec<String> {
    let mut a: Vec<String> = [MDADM, "--assemble", "--scan", "--run"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if read_only {
        a.push("--readonly".into());
    }
    a.push(format!("--config={CONFIG}"));
    a
}

/// An array as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Array {
    /// Kernel name: `md127`.
    pub name: String,
    /// Its members' kernel names (`vda2`), sorted.
    pub members: Vec<String>,
    pub level: String,
    pub raid_disks: u32,
    /// How many members are missing.
    pub degraded: u32,
    /// `readonly`, `read-auto`, `clean`, `active`...
    pub array_state: String,
}

impl Array {
    /// Reads `sys/block/NAME` (`None` unless it is an md array with a level).
    pub fn read(sys_block: &Path, name: &str) -> Option<Array> {
        let dir = sys_block.join(name);
        let read = |p: &str| {
            std::fs::read_to_string(dir.join(p))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let level = read("md/level").filter(|l| !l.is_empty())?;
        let mut members: Vec<String> = std::fs::read_dir(dir.join("slaves"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        members.sort();
        Some(Array {
            name: name.to_owned(),
            members,
            level,
            raid_disks: read("md/raid_disks")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            degraded: read("md/degraded")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            array_state: read("md/array_state").unwrap_or_default(),
        })
    }

    /// What the operator should know of a degraded array.
    pub fn degraded_detail(&self) -> Option<String> {
        (self.degraded > 0).then(|| {
            format!(
                "{} degraded: {} of its {} members missing (running on {}); nothing was resynced or re-added",
                self.level,
                self.degraded,
                self.raid_disks,
                self.members
                    .iter()
                    .map(|m| format!("/dev/{m}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// The md arrays under `sys_block`, by name.
pub fn arrays(sys_block: &Path) -> Vec<Array> {
    let mut out: Vec<Array> = std::fs::read_dir(sys_block)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            name.starts_with("md")
                .then(|| Array::read(sys_block, &name))
                .flatten()
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_guest_members_are_looked_at() {
        assert_eq!(
            config(&["/dev/vda".into(), "/dev/vdb2".into()]),
            "DEVICE /dev/vda /dev/vdb2\nHOMEHOST <ignore>\n"
        );
        let ro = assemble_args(true);
        assert!(ro.contains(&"--readonly".to_owned()) && ro.contains(&"--run".to_owned()));
        assert!(!assemble_args(false).contains(&"--readonly".to_owned()));
    }

    #[test]
    fn arrays_are_read_from_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("md127");
        std::fs::create_dir_all(md.join("md")).unwrap();
        std::fs::create_dir_all(md.join("slaves/vdb")).unwrap();
        std::fs::create_dir_all(md.join("slaves/vda")).unwrap();
        for (f, v) in [
            ("md/level", "raid1\n"),
            ("md/raid_disks", "3\n"),
            ("md/degraded", "1\n"),
            ("md/array_state", "readonly\n"),
        ] {
            std::fs::write(md.join(f), v).unwrap();
        }
        // Not arrays: a disk, and an md device with no level (stopped).
        std::fs::create_dir_all(t.path().join("vda")).unwrap();
        std::fs::create_dir_all(t.path().join("md0/md")).unwrap();
        let a = arrays(t.path());
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].members, ["vda", "vdb"]);
        assert_eq!(a[0].array_state, "readonly");
        assert_eq!(
            a[0].degraded_detail().unwrap(),
            "raid1 degraded: 1 of its 3 members missing (running on /dev/vda, /dev/vdb); nothing was resynced or re-added"
        );
    }
}
