//! Finding deleted files that processes still hold open under the instances directory, and
//! naming what they were (`<uuid>/disk`, `_base/<hash>`...).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// Why the processes' open files could not be listed at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "cannot list processes in {}: {source}; run on the compute host, as root, with /proc mounted",
        path.display()
    )]
    ProcRoot { path: PathBuf, source: io::Error },
}

/// What the kernel appends to the `/proc/PID/fd/N` link of a file whose name was removed.
pub const DELETED_SUFFIX: &[u8] = b" (deleted)";

/// One open descriptor and its `/proc` link text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdLink {
    pub pid: u32,
    pub fd: u32,
    pub target: OsString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// A shared base image under `_base/`.
    Base,
    /// The files of one instance, `<uuid>/...`.
    Instance,
    /// Anything else under the directory (`locks/`, top-level files).
    Other,
}

/// The group a file belongs to: an instance (by its directory name), a base image (by its
/// name under `_base`), or other.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub kind: GroupKind,
    pub name: String,
}

/// What nova uses a file for; decides its owner and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    BaseImage,
    Disk,
    ConsoleLog,
    Other,
}

/// Where a deleted file sat inside the instances directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub rel: PathBuf,
    pub group: GroupKey,
    pub role: Role,
}

/// A deleted file held open by a process, with what `stat` says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: u32,
    pub fd: u32,
    pub original: PathBuf,
    pub located: Located,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub allocated: u64,
}

/// The path a file had before it was deleted, from a link text like `/a/b (deleted)`; `None`
/// when the link is not marked deleted or is not a path (sockets, pipes, anon inodes).
pub fn deleted_path(target: &OsStr) -> Option<PathBuf> {
    let stripped = target.as_bytes().strip_suffix(DELETED_SUFFIX)?;
    if !stripped.starts_with(b"/") {
        return None;
    }
    Some(PathBuf::from(OsStr::from_bytes(stripped)))
}

/// `dir` without `.` components or trailing slashes (no file system access).
pub fn lexical(dir: &Path) -> PathBuf {
    dir.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Group and role of a path relative to the instances directory.
pub fn classify(rel: &Path) -> (GroupKey, Role) {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [first, rest @ ..] if first == "_base" && !rest.is_empty() => (
            GroupKey {
                kind: GroupKind::Base,
                name: rest.join("/"),
            },
            Role::BaseImage,
        ),
        [first, .., last] if !matches!(first.as_str(), "_base" | "locks" | "snapshots") => (
            GroupKey {
                kind: GroupKind::Instance,
                name: first.clone(),
            },
            instance_file_role(last),
        ),
        [first, _, ..] => (
            GroupKey {
                kind: GroupKind::Other,
                name: first.clone(),
            },
            Role::Other,
        ),
        _ => (
            GroupKey {
                kind: GroupKind::Other,
                name: ".".to_string(),
            },
            Role::Other,
        ),
    }
}

fn instance_file_role(name: &str) -> Role {
    match name {
        "console.log" => Role::ConsoleLog,
        "disk.info" => Role::Other,
        n if n.starts_with("disk") => Role::Disk,
        _ => Role::Other,
    }
}

/// Where `original` sits under one of `roots` (the instances directory as given and as
/// resolved); `None` when outside them or not a plain relative path.
pub fn locate(original: &Path, roots: &[PathBuf]) -> Option<Located> {
    for root in roots {
        let Ok(rel) = original.strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            continue;
        }
        let (group, role) = classify(rel);
        return Some(Located {
            rel: rel.to_path_buf(),
            group,
            role,
        });
    }
    None
}

/// The links of deleted files under `roots`, with where they were (pure).
pub fn candidates(links: &[FdLink], roots: &[PathBuf]) -> Vec<(FdLink, PathBuf, Located)> {
    links
        .iter()
        .filter_map(|l| {
            let original = deleted_path(&l.target)?;
            let located = locate(&original, roots)?;
            Some((l.clone(), original, located))
        })
        .collect()
}

fn parse_id(name: &OsStr) -> Option<u32> {
    let s = name.to_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Every process's descriptors under `proc_root` (`/proc` or a fake tree), skipping `skip_pid`.
/// Processes that vanish meanwhile are ignored; unreadable ones become warnings.
pub fn fd_links(
    proc_root: &Path,
    skip_pid: u32,
    warnings: &mut Vec<String>,
) -> Result<Vec<FdLink>, ScanError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| ScanError::ProcRoot {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_id(&e.file_name()))
        .filter(|&p| p != skip_pid)
        .collect();
    pids.sort_unstable();
    let mut denied = Vec::new();
    let mut out = Vec::new();
    for pid in pids {
        let fd_dir = proc_root.join(pid.to_string()).join("fd");
        let dir = match std::fs::read_dir(&fd_dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                denied.push(pid);
                continue;
            }
            // Gone, a kernel thread, or not a process directory.
            Err(_) => continue,
        };
        let mut fds: Vec<u32> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_id(&e.file_name()))
            .collect();
        fds.sort_unstable();
        for fd in fds {
            if let Ok(target) = std::fs::read_link(fd_dir.join(fd.to_string())) {
                out.push(FdLink {
                    pid,
                    fd,
                    target: target.into_os_string(),
                });
            }
        }
    }
    if !denied.is_empty() {
        warnings.push(format!(
            "cannot read the open files of {} process(es) (pids {}): permission denied; run as \
             root to see every process",
            denied.len(),
            denied
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(out)
}

/// The deleted regular files under `roots` that processes hold open.
pub fn scan(
    proc_root: &Path,
    roots: &[PathBuf],
    skip_pid: u32,
    warnings: &mut Vec<String>,
) -> Result<Vec<Found>, ScanError> {
    let links = fd_links(proc_root, skip_pid, warnings)?;
    let mut found = Vec::new();
    for (link, original, located) in candidates(&links, roots) {
        let fd_path = proc_root
            .join(link.pid.to_string())
            .join("fd")
            .join(link.fd.to_string());
        // Follows the magic link to the open file itself.
        let Ok(meta) = std::fs::metadata(&fd_path) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        // A live file literally named "... (deleted)" is not deleted.
        if meta.nlink() > 0 {
            if let Ok(m) = std::fs::symlink_metadata(Path::new(&link.target)) {
                if m.dev() == meta.dev() && m.ino() == meta.ino() {
                    continue;
                }
            }
        }
        found.push(Found {
            pid: link.pid,
            fd: link.fd,
            original,
            located,
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            allocated: meta.blocks().saturating_mul(512),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(pid: u32, fd: u32, t: &str) -> FdLink {
        FdLink {
            pid,
            fd,
            target: OsString::from(t),
        }
    }

    #[test]
    fn deleted_suffix_is_parsed() {
        assert_eq!(
            deleted_path(OsStr::new("/var/lib/nova/instances/u/disk (deleted)")),
            Some(PathBuf::from("/var/lib/nova/instances/u/disk"))
        );
        assert_eq!(deleted_path(OsStr::new("/var/lib/x/disk")), None);
        assert_eq!(deleted_path(OsStr::new("socket:[1234]")), None);
        assert_eq!(
            deleted_path(OsStr::new("anon_inode:[eventfd] (deleted)")),
            None
        );
        // A name that itself ends in " (deleted)", then deleted.
        assert_eq!(
            deleted_path(OsStr::new("/i/a (deleted) (deleted)")),
            Some(PathBuf::from("/i/a (deleted)"))
        );
    }

    #[test]
    fn files_are_grouped_by_instance_and_base() {
        let (g, r) = classify(Path::new("0b5e1c3a-1111-2222-3333-444455556666/disk"));
        assert_eq!(g.kind, GroupKind::Instance);
        assert_eq!(g.name, "0b5e1c3a-1111-2222-3333-444455556666");
        assert_eq!(r, Role::Disk);
        assert_eq!(classify(Path::new("u/console.log")).1, Role::ConsoleLog);
        assert_eq!(classify(Path::new("u/disk.config")).1, Role::Disk);
        assert_eq!(classify(Path::new("u/disk.local")).1, Role::Disk);
        assert_eq!(classify(Path::new("u/disk.info")).1, Role::Other);
        assert_eq!(classify(Path::new("u/libvirt.xml")).1, Role::Other);
        let (g, r) = classify(Path::new("_base/3f786850e387550fdab836ed7e6dc881de23001b"));
        assert_eq!(
            (g.kind, g.name.as_str(), r),
            (
                GroupKind::Base,
                "3f786850e387550fdab836ed7e6dc881de23001b",
                Role::BaseImage
            )
        );
        let (g, r) = classify(Path::new("locks/nova-abc"));
        assert_eq!(
            (g.kind, g.name.as_str(), r),
            (GroupKind::Other, "locks", Role::Other)
        );
        let (g, _) = classify(Path::new("compute_nodes"));
        assert_eq!((g.kind, g.name.as_str()), (GroupKind::Other, "."));
        let (g, _) = classify(Path::new("_base"));
        assert_eq!(g.kind, GroupKind::Other);
    }

    #[test]
    fn only_paths_under_the_roots_are_located() {
        let roots = vec![
            PathBuf::from("/var/lib/nova/instances"),
            PathBuf::from("/srv/nova/instances"),
        ];
        let l = locate(Path::new("/srv/nova/instances/u/disk"), &roots).unwrap();
        assert_eq!(l.rel, PathBuf::from("u/disk"));
        assert!(locate(Path::new("/var/lib/nova/instances"), &roots).is_none());
        assert!(locate(Path::new("/var/lib/nova/instances2/u/disk"), &roots).is_none());
        assert!(locate(Path::new("/var/lib/nova/other/u/disk"), &roots).is_none());
        assert!(locate(Path::new("/var/lib/nova/instances/../x"), &roots).is_none());
    }

    #[test]
    fn candidates_keep_only_deleted_files_under_the_roots() {
        let roots = vec![PathBuf::from("/i")];
        let links = vec![
            link(10, 3, "/i/u/disk (deleted)"),
            link(10, 4, "/i/u/console.log"),
            link(10, 5, "/other/disk (deleted)"),
            link(11, 7, "/i/_base/abc (deleted)"),
            link(11, 8, "pipe:[99]"),
            link(12, 9, "/i/_base/abc (deleted)"),
        ];
        let c = candidates(&links, &roots);
        let got: Vec<(u32, u32, String)> = c
            .iter()
            .map(|(l, _, loc)| (l.pid, l.fd, loc.rel.display().to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 3, "u/disk".to_string()),
                (11, 7, "_base/abc".to_string()),
                (12, 9, "_base/abc".to_string()),
            ]
        );
    }

    #[test]
    fn fake_proc_tree_is_walked() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        for (pid, fd, target) in [
            ("100", "3", "/i/u/disk (deleted)"),
            ("100", "4", "/i/u/console.log (deleted)"),
            ("200", "0", "/dev/null"),
            ("300", "5", "/i/_base/h (deleted)"),
        ] {
            let dir = p.join(pid).join("fd");
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(target, dir.join(fd)).unwrap();
        }
        std::fs::create_dir_all(p.join("self/fd")).unwrap();
        std::fs::create_dir_all(p.join("400")).unwrap(); // no fd dir: a vanished process
        std::fs::write(p.join("uptime"), "1 2").unwrap();
        let mut warnings = Vec::new();
        let links = fd_links(p, 300, &mut warnings).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            links,
            vec![
                link(100, 3, "/i/u/disk (deleted)"),
                link(100, 4, "/i/u/console.log (deleted)"),
                link(200, 0, "/dev/null"),
            ]
        );
        let c = candidates(&links, &[PathBuf::from("/i")]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].2.role, Role::ConsoleLog);
        assert!(fd_links(&p.join("missing"), 0, &mut warnings).is_err());
    }

    #[test]
    fn lexical_drops_dots_and_trailing_slashes() {
        assert_eq!(
            lexical(Path::new("/var/lib/./nova/instances/")),
            PathBuf::from("/var/lib/nova/instances")
        );
    }
}
