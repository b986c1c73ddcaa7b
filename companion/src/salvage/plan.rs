//! From the files found to the copies to make (pure): one copy per underlying file however
//! many descriptors and processes hold it, each with its destination.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::scan::{Found, GroupKey, Role};

/// Where copies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Only report what was found.
    List,
    /// Under this directory, mirroring the instances directory's layout.
    Dest(PathBuf),
    /// Back to the original paths under the instances directory.
    Restore(PathBuf),
}

impl Target {
    pub fn root(&self) -> Option<&Path> {
        match self {
            Target::List => None,
            Target::Dest(p) | Target::Restore(p) => Some(p),
        }
    }
}

/// A process descriptor through which a file can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Holder {
    pub pid: u32,
    pub fd: u32,
}

/// One underlying file to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub dev: u64,
    pub ino: u64,
    /// Every descriptor holding it, in (pid, fd) order; the copy reads through the first that
    /// still works.
    pub holders: Vec<Holder>,
    pub original: PathBuf,
    pub rel: PathBuf,
    pub group: GroupKey,
    pub role: Role,
    pub size: u64,
    pub allocated: u64,
    /// Relative path written (differs from `rel` when several files had the same path).
    pub dest_rel: PathBuf,
    pub destination: Option<PathBuf>,
}

/// The copies to make, in group then path order, plus warnings.
pub fn plan(found: &[Found], target: &Target) -> (Vec<Planned>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut by_inode: BTreeMap<(u64, u64), Vec<&Found>> = BTreeMap::new();
    for f in found {
        by_inode.entry((f.dev, f.ino)).or_default().push(f);
    }
    let mut files: Vec<Planned> = Vec::new();
    for ((dev, ino), mut fs) in by_inode {
        fs.sort_by_key(|a| (a.pid, a.fd));
        let mut holders: Vec<Holder> = fs
            .iter()
            .map(|f| Holder {
                pid: f.pid,
                fd: f.fd,
            })
            .collect();
        holders.dedup();
        // The same inode under several deleted names (hard links): keep the smallest path.
        let Some(first) = fs.iter().min_by(|a, b| a.original.cmp(&b.original)) else {
            continue;
        };
        let mut others: Vec<&Path> = fs
            .iter()
            .map(|f| f.original.as_path())
            .filter(|p| *p != first.original)
            .collect();
        others.sort();
        others.dedup();
        if !others.is_empty() {
            warnings.push(format!(
                "{} was also open as {} (hard links to the same file); it is copied once, as {}",
                first.original.display(),
                others
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                first.located.rel.display()
            ));
        }
        // Sizes can differ between holders' fstat only if it changed in between: take the largest.
        let size = fs.iter().map(|f| f.size).max().unwrap_or(first.size);
        let allocated = fs
            .iter()
            .map(|f| f.allocated)
            .max()
            .unwrap_or(first.allocated);
        files.push(Planned {
            dev,
            ino,
            holders,
            original: first.original.clone(),
            rel: first.located.rel.clone(),
            group: first.located.group.clone(),
            role: first.located.role,
            size,
            allocated,
            dest_rel: first.located.rel.clone(),
            destination: None,
        });
    }

    // Different files that had the same path (deleted, recreated, deleted again): the one held by
    // the lowest pid keeps the name, the others get their inode number appended.
    files.sort_by(|a, b| a.rel.cmp(&b.rel).then(a.holders.cmp(&b.holders)));
    let mut i = 0;
    while i < files.len() {
        let mut j = i + 1;
        while j < files.len() && files[j].rel == files[i].rel {
            j += 1;
        }
        if j - i > 1 {
            let mut renamed = Vec::new();
            for f in &mut files[i + 1..j] {
                let mut name = f
                    .dest_rel
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_else(OsString::new);
                name.push(format!(".ino-{}", f.ino));
                f.dest_rel.set_file_name(name);
                renamed.push(f.dest_rel.display().to_string());
            }
            warnings.push(format!(
                "{} different deleted files were all at {}: the one held by pid {} keeps the \
                 name, the others are written as {}; compare them before using one",
                j - i,
                files[i].original.display(),
                files[i].holders.first().map(|h| h.pid).unwrap_or(0),
                renamed.join(", ")
            ));
        }
        i = j;
    }

    for f in &mut files {
        f.destination = target.root().map(|root| root.join(&f.dest_rel));
    }
    files.sort_by(|a, b| a.group.cmp(&b.group).then(a.dest_rel.cmp(&b.dest_rel)));
    (files, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salvage::scan::{classify, Located};

    fn found(pid: u32, fd: u32, path: &str, ino: u64) -> Found {
        let rel = PathBuf::from(path);
        let (group, role) = classify(&rel);
        Found {
            pid,
            fd,
            original: Path::new("/i").join(&rel),
            located: Located { rel, group, role },
            dev: 8,
            ino,
            size: 1 << 20,
            allocated: 4096,
        }
    }

    #[test]
    fn a_file_shared_by_processes_is_copied_once() {
        let f = vec![
            found(300, 7, "_base/h", 5),
            found(100, 3, "u1/disk", 1),
            found(100, 9, "_base/h", 5),
            found(200, 4, "u2/disk", 2),
            found(200, 5, "_base/h", 5),
            found(100, 4, "u1/console.log", 3),
        ];
        let (p, w) = plan(&f, &Target::Dest(PathBuf::from("/d")));
        assert!(w.is_empty(), "{w:?}");
        let got: Vec<(String, usize)> = p
            .iter()
            .map(|p| {
                (
                    p.destination.clone().unwrap().display().to_string(),
                    p.holders.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("/d/_base/h".to_string(), 3),
                ("/d/u1/console.log".to_string(), 1),
                ("/d/u1/disk".to_string(), 1),
                ("/d/u2/disk".to_string(), 1),
            ]
        );
        assert_eq!(
            p[0].holders,
            vec![
                Holder { pid: 100, fd: 9 },
                Holder { pid: 200, fd: 5 },
                Holder { pid: 300, fd: 7 }
            ]
        );
    }

    #[test]
    fn restore_and_list_targets() {
        let f = vec![found(1, 3, "u/disk", 1)];
        let (p, _) = plan(&f, &Target::Restore(PathBuf::from("/i")));
        assert_eq!(p[0].destination, Some(PathBuf::from("/i/u/disk")));
        let (p, _) = plan(&f, &Target::List);
        assert_eq!(p[0].destination, None);
    }

    #[test]
    fn different_files_with_one_path_do_not_collide() {
        let f = vec![found(2, 3, "u/disk", 11), found(1, 3, "u/disk", 10)];
        let (p, w) = plan(&f, &Target::Dest(PathBuf::from("/d")));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].destination, Some(PathBuf::from("/d/u/disk")));
        assert_eq!(p[0].ino, 10);
        assert_eq!(p[1].destination, Some(PathBuf::from("/d/u/disk.ino-11")));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("ino-11"), "{w:?}");
    }

    #[test]
    fn hard_links_are_one_file() {
        let mut a = found(1, 3, "u/disk", 10);
        let b = found(1, 4, "u/disk.bak", 10);
        a.size = 5;
        let (p, w) = plan(&[b, a], &Target::List);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].rel, PathBuf::from("u/disk"));
        assert_eq!(p[0].size, 1 << 20);
        assert_eq!(w.len(), 1);
    }
}
