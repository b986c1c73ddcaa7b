//! What salvage reports: each file (grouped by instance or base image), the domains paused,
//! and a summary. Serialised as `--json` (the field names are a contract) and rendered for a
//! terminal by [`crate::salvage::render`].

use std::path::PathBuf;

use serde::Serialize;

use super::plan::{Holder, Planned, Target};
use super::scan::{GroupKind, Role};
use super::suspend::DomainReport;

/// Kind of destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Nothing requested: report only.
    List,
    Dest,
    Restore,
}

impl From<&Target> for TargetKind {
    fn from(t: &Target) -> Self {
        match t {
            Target::List => TargetKind::List,
            Target::Dest(_) => TargetKind::Dest,
            Target::Restore(_) => TargetKind::Restore,
        }
    }
}

/// What was done with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Found; no destination asked for.
    Listed,
    /// Dry run: would be copied.
    WouldCopy,
    Copied,
    /// The destination exists; left untouched.
    Exists,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub original_path: PathBuf,
    pub relative_path: PathBuf,
    pub role: Role,
    /// The descriptor read (the first holder before copying).
    pub pid: u32,
    pub fd: u32,
    /// Every descriptor holding this file.
    pub holders: Vec<Holder>,
    pub size: u64,
    pub allocated_bytes: u64,
    pub device: u64,
    pub inode: u64,
    pub destination: Option<PathBuf>,
    pub action: Action,
    /// Data bytes copied (holes are skipped).
    pub copied_bytes: u64,
    /// Bytes allocated to the copy.
    pub destination_allocated_bytes: Option<u64>,
    pub sha256: Option<String>,
    /// `uid:gid mode` applied (`-` for an id left alone).
    pub owner: Option<String>,
    pub error: Option<String>,
}

impl FileReport {
    /// The report of a planned file before anything is copied.
    pub fn planned(p: &Planned, action: Action) -> Self {
        let first = p
            .holders
            .first()
            .copied()
            .unwrap_or(Holder { pid: 0, fd: 0 });
        FileReport {
            original_path: p.original.clone(),
            relative_path: p.rel.clone(),
            role: p.role,
            pid: first.pid,
            fd: first.fd,
            holders: p.holders.clone(),
            size: p.size,
            allocated_bytes: p.allocated,
            device: p.dev,
            inode: p.ino,
            destination: p.destination.clone(),
            action,
            copied_bytes: 0,
            destination_allocated_bytes: None,
            sha256: None,
            owner: None,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub kind: GroupKind,
    pub name: String,
    pub files: Vec<FileReport>,
}

/// The reports of `planned` (in plan order, so a group's files are adjacent) by group.
pub fn group(planned: &[Planned], reports: Vec<FileReport>) -> Vec<GroupReport> {
    let mut groups: Vec<GroupReport> = Vec::new();
    for (p, r) in planned.iter().zip(reports) {
        match groups.last_mut() {
            Some(g) if g.kind == p.group.kind && g.name == p.group.name => g.files.push(r),
            _ => groups.push(GroupReport {
                kind: p.group.kind,
                name: p.group.name.clone(),
                files: vec![r],
            }),
        }
    }
    groups
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub groups: usize,
    pub files: usize,
    pub descriptors: usize,
    pub apparent_bytes: u64,
    pub allocated_bytes: u64,
    pub would_copy: usize,
    pub copied: usize,
    pub exists: usize,
    pub failed: usize,
    pub copied_bytes: u64,
}

impl Summary {
    /// The counts over `groups`.
    pub fn of(groups: &[GroupReport]) -> Self {
        let mut summary = Summary {
            groups: groups.len(),
            ..Summary::default()
        };
        for f in groups.iter().flat_map(|g| g.files.iter()) {
            summary.files += 1;
            summary.descriptors += f.holders.len();
            summary.apparent_bytes += f.size;
            summary.allocated_bytes += f.allocated_bytes;
            summary.copied_bytes += f.copied_bytes;
            match f.action {
                Action::WouldCopy => summary.would_copy += 1,
                Action::Copied => summary.copied += 1,
                Action::Exists => summary.exists += 1,
                Action::Failed => summary.failed += 1,
                Action::Listed => {}
            }
        }
        summary
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub instances_dir: PathBuf,
    pub target: TargetKind,
    /// `--dest`, or the instances directory with `--restore`.
    pub destination_root: Option<PathBuf>,
    pub dry_run: bool,
    pub groups: Vec<GroupReport>,
    pub domains: Vec<DomainReport>,
    pub created_dirs: Vec<PathBuf>,
    pub summary: Summary,
    pub warnings: Vec<String>,
}

impl Report {
    /// True when no file failed.
    pub fn ok(&self) -> bool {
        self.summary.failed == 0
    }

    /// Every file, group by group.
    pub fn files(&self) -> impl Iterator<Item = &FileReport> {
        self.groups.iter().flat_map(|g| g.files.iter())
    }

    /// The report for a terminal.
    pub fn render(&self) -> String {
        crate::salvage::render::report(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_serialises_with_stable_names() {
        let r = Report {
            instances_dir: PathBuf::from("/i"),
            target: TargetKind::Restore,
            destination_root: Some(PathBuf::from("/i")),
            dry_run: true,
            groups: vec![GroupReport {
                kind: GroupKind::Base,
                name: "h".into(),
                files: vec![FileReport {
                    original_path: "/i/_base/h".into(),
                    relative_path: "_base/h".into(),
                    role: Role::BaseImage,
                    pid: 1,
                    fd: 3,
                    holders: vec![Holder { pid: 1, fd: 3 }],
                    size: 10,
                    allocated_bytes: 4096,
                    device: 1,
                    inode: 2,
                    destination: Some("/i/_base/h".into()),
                    action: Action::WouldCopy,
                    copied_bytes: 0,
                    destination_allocated_bytes: None,
                    sha256: None,
                    owner: Some("1:2 0644".into()),
                    error: None,
                }],
            }],
            domains: vec![],
            created_dirs: vec![],
            summary: Summary::default(),
            warnings: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["target"], "restore");
        assert_eq!(v["groups"][0]["kind"], "base");
        assert_eq!(v["groups"][0]["files"][0]["action"], "would-copy");
        assert_eq!(v["groups"][0]["files"][0]["role"], "base_image");
        assert_eq!(v["groups"][0]["files"][0]["holders"][0]["fd"], 3);
        assert!(r.render().contains("would copy -> /i/_base/h"));
    }
}
