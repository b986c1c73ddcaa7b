//! One salvage run, start to end: scan the processes, plan the copies, check there is room,
//! pause the owning domains, recover the files, resume or leave the domains paused, report.

use std::path::{Path, PathBuf};

use super::options::{absolute, Options, OptionsError};
use super::owners::{self, ResolvedOwners};
use super::plan::{self, Planned, Target};
use super::recover::Recovery;
use super::report::{self, Action, FileReport, Report, Summary};
use super::scan::{self, ScanError};
use super::suspend::{self, SuspendError};

/// Why salvage stopped before copying anything (a file that fails is in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error(transparent)]
    Usage(#[from] OptionsError),
    #[error(transparent)]
    Scan(#[from] ScanError),
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
    #[error(transparent)]
    Suspend(#[from] SuspendError),
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

/// Fails (or, in a dry run, warns) when the destination has no room for the files to copy.
fn check_room(
    root: &Path,
    to_copy: &[&Planned],
    dry_run: bool,
    warnings: &mut Vec<String>,
) -> Result<(), SalvageError> {
    let needed: u64 = to_copy.iter().map(|p| p.allocated).sum();
    let Some((fs_path, available)) = free_bytes(root) else {
        return Ok(());
    };
    if needed <= available {
        return Ok(());
    }
    if !dry_run {
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
    Ok(())
}

/// The first report of each planned file: listed, to copy, or left alone because its
/// destination exists.
fn first_reports(
    planned: &[Planned],
    owners: Option<&ResolvedOwners>,
    warnings: &mut Vec<String>,
) -> Vec<FileReport> {
    let mut reports: Vec<FileReport> = Vec::with_capacity(planned.len());
    for p in planned {
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
        let mut r = FileReport::planned(p, action);
        if let (Some(o), true) = (owners, action == Action::WouldCopy) {
            r.owner = Some(owners::describe(&o.for_role(p.role)));
        }
        reports.push(r);
    }
    reports
}

/// Finds, plans and (unless listing or dry-running) copies. Per-file failures are in the
/// report (`action: failed`); errors are for problems that stop everything.
pub fn run(opts: &Options) -> Result<Report, SalvageError> {
    opts.check()?;
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

    let mut reports = first_reports(&planned, owners.as_ref(), &mut warnings);
    let to_copy: Vec<usize> = (0..planned.len())
        .filter(|&i| reports[i].action == Action::WouldCopy)
        .collect();
    let copies: Vec<&Planned> = to_copy.iter().map(|&i| &planned[i]).collect();
    if let (Some(root), false) = (target.root(), copies.is_empty()) {
        check_room(root, &copies, opts.dry_run, &mut warnings)?;
    }

    let mut domains = Vec::new();
    if opts.suspend && !copies.is_empty() {
        let holders = copies.iter().flat_map(|p| &p.holders);
        domains = suspend::domains_holding(&opts.proc_root, holders, &mut warnings);
    }
    let libvirt = suspend::Libvirt::new(opts.connect.clone());
    if !opts.dry_run && !domains.is_empty() {
        suspend::suspend_all(&libvirt, &mut domains)?;
    }

    let mut created_dirs = Vec::new();
    if let (false, Some(owners), Some(root)) = (opts.dry_run, &owners, target.root()) {
        let recovery = Recovery {
            proc_root: &opts.proc_root,
            root,
            restore: matches!(target, Target::Restore(_)),
            owners,
        };
        for &i in &to_copy {
            recovery.recover(
                &planned[i],
                &mut reports[i],
                &mut created_dirs,
                &mut warnings,
            );
        }
    }

    suspend::resume_or_leave_paused(&libvirt, &mut domains, opts.resume, &mut warnings);
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

    let groups = report::group(&planned, reports);
    Ok(Report {
        instances_dir: instances,
        destination_root: target.root().map(Path::to_path_buf),
        target: (&target).into(),
        dry_run: opts.dry_run,
        summary: Summary::of(&groups),
        groups,
        domains,
        created_dirs,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salvage::TargetKind;

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
}
