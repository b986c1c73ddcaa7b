//! The owners and modes nova expects, with user and group names resolved from the host's
//! `/etc/passwd` and `/etc/group` (read directly: no NSS), and set on the files and
//! directories salvage creates.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Gid, Mode, Uid};
use serde::{Deserialize, Serialize};

use super::scan::Role;

/// An owner specification that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("{spec:?} is not USER:GROUP:MODE (e.g. nova:kvm:0644)")]
    NotUserGroupMode { spec: String },
    #[error("{mode:?} in {spec:?} is not an octal mode such as 0644")]
    Mode { spec: String, mode: String },
}

/// Owner, group and mode for one kind of file. `user` and `group` are names, numeric ids, or
/// empty to leave that id as created (root when run as root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerSpec {
    pub user: String,
    pub group: String,
    pub mode: u32,
}

impl OwnerSpec {
    pub fn new(user: &str, group: &str, mode: u32) -> Self {
        OwnerSpec {
            user: user.to_string(),
            group: group.to_string(),
            mode,
        }
    }

    /// Parses `USER:GROUP:MODE` with an octal mode, e.g. `nova:kvm:0644`.
    pub fn parse(s: &str) -> Result<Self, OwnerError> {
        let mut it = s.splitn(3, ':');
        let (Some(user), Some(group), Some(mode)) = (it.next(), it.next(), it.next()) else {
            return Err(OwnerError::NotUserGroupMode {
                spec: s.to_string(),
            });
        };
        let octal = u32::from_str_radix(mode, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| OwnerError::Mode {
                spec: s.to_string(),
                mode: mode.to_string(),
            })?;
        Ok(OwnerSpec::new(user, group, octal))
    }
}

/// Which owner and mode each kind of salvaged file and created directory gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerMap {
    pub base_image: OwnerSpec,
    pub disk: OwnerSpec,
    pub console_log: OwnerSpec,
    /// Other files of an instance (`disk.info`, `libvirt.xml`, kernel, ramdisk...).
    pub other_file: OwnerSpec,
    /// Directories created for instances and `_base`.
    pub directory: OwnerSpec,
    pub passwd_file: PathBuf,
    pub group_file: PathBuf,
}

impl Default for OwnerMap {
    /// What nova on Debian/Ubuntu expects.
    fn default() -> Self {
        OwnerMap {
            base_image: OwnerSpec::new("nova", "kvm", 0o644),
            disk: OwnerSpec::new("libvirt-qemu", "kvm", 0o644),
            console_log: OwnerSpec::new("nova", "nova", 0o660),
            other_file: OwnerSpec::new("nova", "nova", 0o644),
            directory: OwnerSpec::new("nova", "nova", 0o755),
            passwd_file: PathBuf::from("/etc/passwd"),
            group_file: PathBuf::from("/etc/group"),
        }
    }
}

/// Numeric ids to apply; `None` leaves that id alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedOwners {
    pub base_image: Resolved,
    pub disk: Resolved,
    pub console_log: Resolved,
    pub other_file: Resolved,
    pub directory: Resolved,
}

impl ResolvedOwners {
    pub fn for_role(&self, role: Role) -> Resolved {
        match role {
            Role::BaseImage => self.base_image,
            Role::Disk => self.disk,
            Role::ConsoleLog => self.console_log,
            Role::Other => self.other_file,
        }
    }
}

/// `name -> id` from `/etc/passwd` or `/etc/group` text (the id is the third field of both).
pub fn parse_id_file(text: &str) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>() {
            if !name.is_empty() && !name.starts_with('+') && !name.starts_with('-') {
                out.entry(name.to_string()).or_insert(id);
            }
        }
    }
    out
}

fn read_ids(path: &Path, what: &str, warnings: &mut Vec<String>) -> HashMap<String, u32> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_id_file(&text),
        Err(e) => {
            warnings.push(format!(
                "cannot read {} ({e}): {what} names cannot be resolved; give numeric ids in the \
                 owner mapping",
                path.display()
            ));
            HashMap::new()
        }
    }
}

/// An id from a name or a number; records which roles miss a name.
fn lookup(
    spec: &str,
    table: &HashMap<String, u32>,
    role: &'static str,
    missing: &mut BTreeMap<String, Vec<&'static str>>,
) -> Option<u32> {
    if spec.is_empty() {
        return None;
    }
    if let Some(id) = table.get(spec) {
        return Some(*id);
    }
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(id) = spec.parse::<u32>() {
            if id != u32::MAX {
                return Some(id);
            }
        }
    }
    missing.entry(spec.to_string()).or_default().push(role);
    None
}

/// Resolves names to ids with the host's files. Unknown names leave that id alone and give a
/// warning naming the roles affected.
pub fn resolve(map: &OwnerMap, warnings: &mut Vec<String>) -> ResolvedOwners {
    let users = read_ids(&map.passwd_file, "user", warnings);
    let groups = read_ids(&map.group_file, "group", warnings);
    let mut missing_users = BTreeMap::new();
    let mut missing_groups = BTreeMap::new();
    let mut one = |spec: &OwnerSpec, role: &'static str| Resolved {
        uid: lookup(&spec.user, &users, role, &mut missing_users),
        gid: lookup(&spec.group, &groups, role, &mut missing_groups),
        mode: spec.mode & 0o7777,
    };
    let owners = ResolvedOwners {
        base_image: one(&map.base_image, "base images"),
        disk: one(&map.disk, "disks"),
        console_log: one(&map.console_log, "console logs"),
        other_file: one(&map.other_file, "other instance files"),
        directory: one(&map.directory, "directories"),
    };
    for (what, file, missing) in [
        ("user", &map.passwd_file, missing_users),
        ("group", &map.group_file, missing_groups),
    ] {
        for (name, roles) in missing {
            warnings.push(format!(
                "{what} {name:?} is not in {}: {} keep the copying process's {what} (usually \
                 root); chown them by hand, or map {} to an existing {what} or a numeric id",
                file.display(),
                roles.join(", "),
                roles.join(", ")
            ));
        }
    }
    owners
}

/// `uid:gid mode` for reports, with `-` for ids left alone.
pub fn describe(r: &Resolved) -> String {
    let id = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    format!("{}:{} {:04o}", id(r.uid), id(r.gid), r.mode)
}

/// Sets owner and mode on an open file or directory (`path` names it in messages); failures
/// are returned as warnings: the data is safe, only its owner needs a hand.
pub fn apply_owner(fd: BorrowedFd<'_>, owner: &Resolved, path: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    if owner.uid.is_some() || owner.gid.is_some() {
        let uid = owner.uid.map(Uid::from_raw);
        let gid = owner.gid.map(Gid::from_raw);
        if let Err(e) = rfs::fchown(fd, uid, gid) {
            warnings.push(format!(
                "cannot set the owner of {} to {}: {e}; fix it by hand with chown",
                path.display(),
                describe(owner)
            ));
        }
    }
    // After chown, which may clear set-id bits.
    if let Err(e) = rfs::fchmod(fd, Mode::from_raw_mode(owner.mode)) {
        warnings.push(format!(
            "cannot set the mode of {} to {:04o}: {e}; fix it by hand with chmod",
            path.display(),
            owner.mode
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # comment\n\
        nova:x:64060:64060::/var/lib/nova:/bin/sh\n\
        libvirt-qemu:x:64055:108:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n\
        broken line\n\
        +nisuser::::::\n";
    const GROUP: &str = "root:x:0:\nkvm:x:108:\nnova:x:64060:\n";

    #[test]
    fn passwd_and_group_are_parsed() {
        let u = parse_id_file(PASSWD);
        assert_eq!(u.get("nova"), Some(&64060));
        assert_eq!(u.get("libvirt-qemu"), Some(&64055));
        assert_eq!(u.get("root"), Some(&0));
        assert_eq!(u.len(), 3);
        let g = parse_id_file(GROUP);
        assert_eq!(g.get("kvm"), Some(&108));
    }

    fn map_with(dir: &Path, passwd: &str, group: &str) -> OwnerMap {
        std::fs::write(dir.join("passwd"), passwd).unwrap();
        std::fs::write(dir.join("group"), group).unwrap();
        OwnerMap {
            passwd_file: dir.join("passwd"),
            group_file: dir.join("group"),
            ..OwnerMap::default()
        }
    }

    #[test]
    fn default_mapping_resolves_on_a_nova_host() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Vec::new();
        let r = resolve(&map_with(t.path(), PASSWD, GROUP), &mut w);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            r.for_role(Role::Disk),
            Resolved {
                uid: Some(64055),
                gid: Some(108),
                mode: 0o644
            }
        );
        assert_eq!(
            r.for_role(Role::ConsoleLog),
            Resolved {
                uid: Some(64060),
                gid: Some(64060),
                mode: 0o660
            }
        );
        assert_eq!(r.for_role(Role::BaseImage).gid, Some(108));
        assert_eq!(r.directory.mode, 0o755);
    }

    #[test]
    fn missing_names_warn_and_numbers_work() {
        let t = tempfile::tempdir().unwrap();
        let mut map = map_with(t.path(), "root:x:0:0::/:/bin/sh\n", "root:x:0:\n");
        map.disk = OwnerSpec::new("4242", "", 0o600);
        let mut w = Vec::new();
        let r = resolve(&map, &mut w);
        assert_eq!(
            r.disk,
            Resolved {
                uid: Some(4242),
                gid: None,
                mode: 0o600
            }
        );
        assert_eq!(r.base_image.uid, None);
        let all = w.join("\n");
        assert!(all.contains("user \"nova\""), "{all}");
        assert!(all.contains("group \"kvm\""), "{all}");
        assert!(all.contains("base images"), "{all}");
        // One warning per missing name.
        assert_eq!(w.iter().filter(|l| l.contains("user \"nova\"")).count(), 1);
    }

    #[test]
    fn unreadable_files_warn() {
        let map = OwnerMap {
            passwd_file: PathBuf::from("/nonexistent/passwd"),
            group_file: PathBuf::from("/nonexistent/group"),
            ..OwnerMap::default()
        };
        let mut w = Vec::new();
        let r = resolve(&map, &mut w);
        assert_eq!(r.disk.uid, None);
        assert!(w.iter().any(|l| l.contains("/nonexistent/passwd")));
    }

    #[test]
    fn owner_spec_parses() {
        assert_eq!(
            OwnerSpec::parse("nova:kvm:0644"),
            Ok(OwnerSpec::new("nova", "kvm", 0o644))
        );
        assert_eq!(
            OwnerSpec::parse("107:107:660"),
            Ok(OwnerSpec::new("107", "107", 0o660))
        );
        assert!(OwnerSpec::parse("nova:kvm").is_err());
        assert!(OwnerSpec::parse("nova:kvm:999").is_err());
        assert!(OwnerSpec::parse("nova:kvm:17777").is_err());
        assert_eq!(
            describe(&Resolved {
                uid: None,
                gid: Some(5),
                mode: 0o644
            }),
            "-:5 0644"
        );
    }
}
