//! `vmrescue salvage`: recover files deleted from the nova instances directory while qemu (or any
//! process) still holds them open, by copying them out through `/proc/PID/fd/N`.
//!
//! Steps: scan every process's descriptors ([`scan`]), plan one copy per underlying file
//! ([`plan`]), optionally pause the owning libvirt domains ([`suspend`]), copy sparse-aware with
//! verification ([`copy`]) and give each file the owner and mode nova expects ([`owners`]).

pub mod copy;
pub mod owners;
pub mod plan;
pub mod scan;
pub mod suspend;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use owners::{OwnerMap, OwnerSpec};
pub use plan::Holder;
pub use scan::{GroupKind, Role};
pub use suspend::DomainReport;

use plan::{Planned, Target};

/// Where nova keeps instances unless configured otherwise.
pub const DEFAULT_INSTANCES_DIR: &str = "/var/lib/nova/instances";

/// What to salvage and where to put it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory the files were deleted from (`--instances-dir`).
    pub instances_dir: PathBuf,
    /// Copy into this directory, mirroring the instances layout (`--dest`).
    pub dest: Option<PathBuf>,
    /// Pause the owning libvirt domains while copying (`--suspend`).
    pub suspend: bool,
    /// Resume the domains paused by `suspend` afterwards. Without it they stay paused, ready
    /// for a hard reboot onto the restored files.
    pub resume: bool,
    /// Copy back to the original paths (`--restore`).
    pub restore: bool,
    /// Report what would be done; change nothing (`--dry-run`).
    pub dry_run: bool,
    /// `/proc`, or a fake tree in tests.
    pub proc_root: PathBuf,
    pub owners: OwnerMap,
    /// The `virsh` program.
    pub virsh: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            instances_dir: PathBuf::from(DEFAULT_INSTANCES_DIR),
            dest: None,
            suspend: false,
            resume: false,
            restore: false,
            dry_run: false,
            proc_root: PathBuf::from("/proc"),
            owners: OwnerMap::default(),
            virsh: PathBuf::from("virsh"),
        }
    }
}

/// Why salvage stopped or a file could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "cannot list processes in {}: {source}; run on the compute host, as root, with /proc mounted",
        path.display()
    )]
    ProcRoot { path: PathBuf, source: io::Error },
    #[error(
        "cannot read the deleted file {} through /proc/{pid}/fd/{fd}: {source}; if the process \
         exited the data is gone, otherwise run as root",
        path.display()
    )]
    Source {
        path: PathBuf,
        pid: u32,
        fd: u32,
        source: io::Error,
    },
    #[error(
        "{} changed while it was copied ({detail}); the VM is probably still writing to it: \
         retry with --suspend",
        path.display()
    )]
    SourceChanged { path: PathBuf, detail: String },
    #[error(
        "cannot create or open the directory {}: {source}; check that it is writable, or choose \
         another --dest",
        path.display()
    )]
    Dir { path: PathBuf, source: io::Error },
    #[error(
        "{} is a symlink or not a directory; refusing to write through it: move it away and retry",
        path.display()
    )]
    Unsafe { path: PathBuf },
    #[error(
        "cannot write {}: {source}; check free space and permissions at the destination",
        path.display()
    )]
    Write { path: PathBuf, source: io::Error },
    #[error("the copy {} failed verification: {detail}; it was not kept", path.display())]
    Verify { path: PathBuf, detail: String },
    #[error(
        "{} has {available} bytes free but the files need {needed}: free some space or choose \
         another --dest",
        path.display()
    )]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error(
        "cannot suspend libvirt domain {domain}: {detail}; check libvirtd (`virsh list`), or run \
         without --suspend (copies of running VMs may then fail verification)"
    )]
    Virsh { domain: String, detail: String },
}

/// Kind of destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Nothing requested: report only.
    List,
    Dest,
    Restore,
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

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub kind: GroupKind,
    pub name: String,
    pub files: Vec<FileReport>,
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
}

fn absolute(p: &Path) -> Result<PathBuf, SalvageError> {
    std::path::absolute(p)
        .map(|a| scan::lexical(&a))
        .map_err(|e| SalvageError::Usage(format!("bad path {}: {e}", p.display())))
}

/// Free bytes on the file system of `path` or its nearest existing ancestor.
fn free_bytes(path: &Path) -> Option<(PathBuf, u64)> {
    let mut p = path.to_path_buf();
    loop {
        if let Ok(s) = rustix::fs::statvfs(&p) {
            return Some((p, s.f_bavail.saturating_mul(s.f_frsize)));
        }
        if !p.pop() {
            return None;
        }
    }
}

fn file_report(p: &Planned, action: Action) -> FileReport {
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

/// Pauses the running domains among `names`; on failure resumes those it paused and fails.
fn suspend_domains(
    virsh: &suspend::Virsh,
    domains: &mut [DomainReport],
) -> Result<(), SalvageError> {
    let mut failure = None;
    for d in domains.iter_mut() {
        let step = virsh.state(&d.name).and_then(|state| {
            d.state_before = Some(state.clone());
            if state == "running" {
                virsh.suspend(&d.name)?;
                d.suspended = true;
            }
            Ok(())
        });
        if let Err(detail) = step {
            d.error = Some(detail.clone());
            failure = Some(SalvageError::Virsh {
                domain: d.name.clone(),
                detail,
            });
            break;
        }
    }
    let Some(err) = failure else {
        return Ok(());
    };
    for d in domains.iter_mut().filter(|d| d.suspended) {
        match virsh.resume(&d.name) {
            Ok(()) => d.resumed = true,
            Err(e) => d.error = Some(e),
        }
    }
    Err(err)
}

/// Finds, plans and (unless listing or dry-running) copies. Per-file failures are in the
/// report (`action: failed`); errors are for problems that stop everything.
pub fn run(opts: &Options) -> Result<Report, SalvageError> {
    if opts.restore && opts.dest.is_some() {
        return Err(SalvageError::Usage(
            "--dest and --restore exclude each other: copy out with --dest DIR, or put the \
             files back with --restore"
                .to_string(),
        ));
    }
    let mut warnings = Vec::new();
    let instances = absolute(&opts.instances_dir)?;
    let mut roots = vec![instances.clone()];
    if let Ok(c) = std::fs::canonicalize(&instances) {
        if c != instances {
            roots.push(c);
        }
    }
    let found = scan::scan(&opts.proc_root, &roots, std::process::id(), &mut warnings)?;
    let target = match (&opts.dest, opts.restore) {
        (_, true) => Target::Restore(instances.clone()),
        (Some(d), false) => Target::Dest(absolute(d)?),
        (None, false) => Target::List,
    };
    let (planned, plan_warnings) = plan::plan(&found, &target);
    warnings.extend(plan_warnings);
    if target == Target::List && !planned.is_empty() {
        warnings.push(
            "nothing copied: give --dest DIR to copy the files out, or --restore to put them back"
                .to_string(),
        );
    }
    let owners = (target != Target::List).then(|| owners::resolve(&opts.owners, &mut warnings));

    let mut reports: Vec<FileReport> = Vec::with_capacity(planned.len());
    for p in &planned {
        let action = match &p.destination {
            None => Action::Listed,
            Some(d) if std::fs::symlink_metadata(d).is_ok() => {
                warnings.push(format!(
                    "{} exists: {} is not copied over it (move it away to salvage this file)",
                    d.display(),
                    p.original.display()
                ));
                Action::Exists
            }
            Some(_) => Action::WouldCopy,
        };
        let mut r = file_report(p, action);
        if let (Some(o), true) = (&owners, action == Action::WouldCopy) {
            r.owner = Some(owners::describe(&o.for_role(p.role)));
        }
        reports.push(r);
    }
    let to_copy: Vec<usize> = (0..planned.len())
        .filter(|&i| reports[i].action == Action::WouldCopy)
        .collect();

    // Room for the data.
    if let (Some(root), false) = (target.root(), to_copy.is_empty()) {
        let needed: u64 = to_copy.iter().map(|&i| planned[i].allocated).sum();
        if let Some((fs_path, available)) = free_bytes(root) {
            if needed > available {
                if !opts.dry_run {
                    return Err(SalvageError::NoSpace {
                        path: fs_path,
                        needed,
                        available,
                    });
                }
                warnings.push(format!(
                    "{} has {available} bytes free but the files need {needed}",
                    fs_path.display()
                ));
            }
        }
    }

    // Domains owning the files to copy.
    let mut domains: Vec<DomainReport> = Vec::new();
    if opts.suspend && !to_copy.is_empty() {
        let mut by_domain: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        let mut others: BTreeSet<u32> = BTreeSet::new();
        for &i in &to_copy {
            for h in &planned[i].holders {
                match suspend::domain_of_pid(&opts.proc_root, h.pid) {
                    Some(d) => {
                        by_domain.entry(d).or_default().insert(h.pid);
                    }
                    None => {
                        others.insert(h.pid);
                    }
                }
            }
        }
        for pid in others {
            warnings.push(format!(
                "pid {pid} holds deleted files but is not a libvirt qemu process (no -name \
                 guest=...): it is not paused, and its files may change while copied"
            ));
        }
        domains = by_domain
            .into_iter()
            .map(|(name, pids)| DomainReport {
                name,
                pids: pids.into_iter().collect(),
                state_before: None,
                suspended: false,
                resumed: false,
                error: None,
            })
            .collect();
    }
    let virsh = suspend::Virsh::new(&opts.virsh);
    if !opts.dry_run && !domains.is_empty() {
        suspend_domains(&virsh, &mut domains)?;
    }

    let mut created_dirs = Vec::new();
    if let (false, Some(owners), Some(root)) = (opts.dry_run, &owners, target.root()) {
        for &i in &to_copy {
            let p = &planned[i];
            let r = &mut reports[i];
            let (Some(dest), Some(name)) = (&p.destination, p.dest_rel.file_name()) else {
                continue;
            };
            let rel_dir = p.dest_rel.parent().unwrap_or(Path::new(""));
            let result = copy::open_source(&opts.proc_root, &p.holders, p.dev, p.ino, &p.original)
                .and_then(|(src, holder)| {
                    r.pid = holder.pid;
                    r.fd = holder.fd;
                    let size = src
                        .metadata()
                        .map(|m| std::os::unix::fs::MetadataExt::size(&m))
                        .map_err(|source| SalvageError::Source {
                            path: p.original.clone(),
                            pid: holder.pid,
                            fd: holder.fd,
                            source,
                        })?;
                    r.size = size;
                    let dir = copy::open_dest_dir(
                        root,
                        rel_dir,
                        matches!(target, Target::Restore(_)),
                        &owners.directory,
                        &mut created_dirs,
                        &mut warnings,
                    )?;
                    copy::copy_file(
                        &src,
                        size,
                        dir.as_fd(),
                        name,
                        dest,
                        &owners.for_role(p.role),
                    )
                });
            match result {
                Ok(copy::Outcome::Copied(c)) => {
                    r.action = Action::Copied;
                    r.copied_bytes = c.stats.data_bytes;
                    r.destination_allocated_bytes = Some(c.allocated);
                    r.sha256 = Some(c.sha256);
                    warnings.extend(c.warnings);
                }
                Ok(copy::Outcome::Exists) => {
                    r.action = Action::Exists;
                    r.owner = None;
                    warnings.push(format!(
                        "{} appeared meanwhile: {} was not copied over it",
                        dest.display(),
                        p.original.display()
                    ));
                }
                Err(e) => {
                    r.action = Action::Failed;
                    r.owner = None;
                    r.error = Some(e.to_string());
                }
            }
        }
    }

    // Resume what was paused, or say how.
    let paused: Vec<&mut DomainReport> = domains.iter_mut().filter(|d| d.suspended).collect();
    if opts.resume {
        for d in paused {
            match virsh.resume(&d.name) {
                Ok(()) => d.resumed = true,
                Err(e) => {
                    warnings.push(format!(
                        "could not resume domain {}: {e}; run `virsh resume {}`",
                        d.name, d.name
                    ));
                    d.error = Some(e);
                }
            }
        }
    } else if !paused.is_empty() {
        let names: Vec<&str> = paused.iter().map(|d| d.name.as_str()).collect();
        warnings.push(format!(
            "domain(s) {} left paused: hard-reboot them (nova reboot --hard) to run on the \
             restored files, or `virsh resume NAME` to continue as before",
            names.join(", ")
        ));
    }
    let copied = reports
        .iter()
        .filter(|r| r.action == Action::Copied)
        .count();
    if matches!(target, Target::Restore(_)) && copied > 0 {
        warnings.push(
            "the running VMs still use the deleted files: hard-reboot each instance (nova reboot \
             --hard UUID) so qemu opens the restored ones; guest writes made before that are lost"
                .to_string(),
        );
    }

    // Group the file reports.
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
    Ok(Report {
        instances_dir: instances,
        destination_root: target.root().map(Path::to_path_buf),
        target: match target {
            Target::List => TargetKind::List,
            Target::Dest(_) => TargetKind::Dest,
            Target::Restore(_) => TargetKind::Restore,
        },
        dry_run: opts.dry_run,
        groups,
        domains,
        created_dirs,
        summary,
        warnings,
    })
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Listed => "found",
        Action::WouldCopy => "would copy",
        Action::Copied => "copied",
        Action::Exists => "skipped, destination exists",
        Action::Failed => "FAILED",
    }
}

impl Report {
    /// The report for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let _ = writeln!(
            out,
            "salvage of {}: {} deleted file(s) still open, in {} group(s), {} apparent, {} allocated",
            self.instances_dir.display(),
            s.files,
            s.groups,
            human_bytes(s.apparent_bytes),
            human_bytes(s.allocated_bytes)
        );
        for g in &self.groups {
            let kind = match g.kind {
                GroupKind::Instance => "instance",
                GroupKind::Base => "base image",
                GroupKind::Other => "other",
            };
            let _ = writeln!(out, "{kind} {}", g.name);
            for f in &g.files {
                let more = match f.holders.len() {
                    0 | 1 => String::new(),
                    n => format!(" (+{} more holder(s))", n - 1),
                };
                let _ = writeln!(
                    out,
                    "  {}  {} ({} allocated)  pid {} fd {}{more}",
                    f.relative_path.display(),
                    human_bytes(f.size),
                    human_bytes(f.allocated_bytes),
                    f.pid,
                    f.fd
                );
                let mut line = format!("    {}", action_word(f.action));
                if let Some(d) = &f.destination {
                    let _ = write!(line, " -> {}", d.display());
                }
                if f.action == Action::Copied {
                    let _ = write!(line, ", {} of data", human_bytes(f.copied_bytes));
                }
                if let Some(o) = &f.owner {
                    let _ = write!(line, ", owner {o}");
                }
                if let Some(h) = &f.sha256 {
                    let _ = write!(line, ", sha256 {h}");
                }
                let _ = writeln!(out, "{line}");
                if let Some(e) = &f.error {
                    let _ = writeln!(out, "    error: {e}");
                }
            }
        }
        for d in &self.domains {
            let mut what = Vec::new();
            if let Some(st) = &d.state_before {
                what.push(format!("was {st}"));
            }
            if d.suspended {
                what.push("suspended".to_string());
            }
            if d.resumed {
                what.push("resumed".to_string());
            }
            if self.dry_run {
                what.push("would be suspended if running".to_string());
            }
            if let Some(e) = &d.error {
                what.push(format!("error: {e}"));
            }
            let _ = writeln!(
                out,
                "domain {} (pid {}): {}",
                d.name,
                d.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                what.join(", ")
            );
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let _ = writeln!(
            out,
            "{}copied {}, would copy {}, skipped {}, failed {}; {} of data written",
            if self.dry_run {
                "dry run, nothing changed: "
            } else {
                ""
            },
            s.copied,
            s.would_copy,
            s.exists,
            s.failed,
            human_bytes(s.copied_bytes)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_and_restore_exclude_each_other() {
        let o = Options {
            dest: Some(PathBuf::from("/tmp/x")),
            restore: true,
            ..Options::default()
        };
        assert!(matches!(run(&o), Err(SalvageError::Usage(_))));
    }

    #[test]
    fn a_fake_proc_without_matches_gives_an_empty_report() {
        let t = tempfile::tempdir().unwrap();
        let fd = t.path().join("proc/42/fd");
        std::fs::create_dir_all(&fd).unwrap();
        std::os::unix::fs::symlink("/i/u/disk (deleted)", fd.join("3")).unwrap();
        let o = Options {
            instances_dir: PathBuf::from("/elsewhere"),
            proc_root: t.path().join("proc"),
            dest: Some(t.path().join("dest")),
            ..Options::default()
        };
        let r = run(&o).unwrap();
        assert_eq!(r.summary, Summary::default());
        assert_eq!(r.target, TargetKind::Dest);
        assert!(!t.path().join("dest").exists());
        let text = r.render();
        assert!(text.contains("0 deleted file(s)"), "{text}");
        let missing = Options {
            proc_root: t.path().join("nope"),
            ..Options::default()
        };
        let e = run(&missing).unwrap_err();
        assert!(e.to_string().contains("run on the compute host"), "{e}");
    }

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

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(20 << 30), "20.0 GiB");
    }
}
