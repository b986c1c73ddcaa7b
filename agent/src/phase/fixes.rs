//! The guest fixes: planned on the OS root (mounted read-only in check mode, read-write in
//! repair mode, after fsck left it consistent) and, in repair mode, applied there.

use std::path::Path;

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::params::Settings;
use vmrescue_protocol::paths::{REFERENCE_ETC, REFERENCE_ETC_RUN};
use vmrescue_protocol::secrets::Access;
use vmrescue_protocol::{Change, Filesystem, FsState, FsckStatus, Mode, Report, Step};

use crate::inspect::MountedTree;
use crate::reporter::Reporter;
use crate::{apply, atomic, clock, plan};

/// The guest's root, mounted read-write after repair, kept until the report is saved on it.
pub struct RootMount {
    pub tree: MountedTree,
    pub device: String,
    /// The stamp of this rescue's backups and report file.
    pub stamp: String,
}

/// What the guest fixes leave for the verdict and the saved report.
#[derive(Default)]
pub struct Fixes {
    /// The root, still mounted read-write (repair mode).
    pub root: Option<RootMount>,
    /// Planned fixes that could not be made.
    pub failed: usize,
}

/// Plans the guest fixes on the root and, in repair mode, applies them. Returns the root still
/// mounted read-write in repair mode, for the report.
pub fn run(
    settings: &Settings,
    access: &Access,
    root: &str,
    report: &mut Report,
    rep: &mut Reporter,
) -> Fixes {
    let Some(fs) = report
        .filesystems
        .iter()
        .find(|f| f.device == root)
        .cloned()
    else {
        return Fixes::default();
    };
    let subvol = super::inspect::root_subvolume(report, root).map(str::to_owned);
    let Some(tree) = mount_root(settings.mode, &fs, subvol.as_deref(), rep) else {
        return Fixes::default();
    };
    let now = clock::now_secs();
    let (steps, others) = plan_on(&tree, settings, access, root, now, report, rep);
    if settings.mode == Mode::Check {
        return Fixes::default();
    }
    let stamp = clock::stamp(now);
    let mut failed = 0;
    for o in others {
        failed += apply_elsewhere(o, &steps, &stamp, report, rep);
    }
    let mut fixes = apply_on(tree, root, &fs, &steps, &stamp, report, rep);
    fixes.failed += failed;
    fixes
}

/// One of the guest's other filesystems, opened for access steps (a key for a user whose home
/// is on a separate /home).
struct OtherFs {
    device: String,
    fstype: FsType,
    mountpoint: String,
    /// Mounted read-only for the plan.
    tree: MountedTree,
}

/// The guest's other filesystems a key may go to, when keys are asked for: each mountable one
/// the guest mounts somewhere (its fstab, or the evidence of a lost /etc), mounted read-only
/// for the plan (in repair mode only where fsck left it consistent).
fn open_others(
    mode: Mode,
    access: &Access,
    root: &str,
    report: &Report,
    evidence: &plan::evidence::Evidence,
    rep: &mut Reporter,
) -> Vec<OtherFs> {
    if access.ssh_keys.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for f in report.filesystems.iter().filter(|f| f.device != root) {
        let fstype = FsType::parse(&f.fstype);
        let mountpoint = f
            .mountpoint
            .clone()
            .or_else(|| evidence.mount_of(&f.device).map(|m| m.mountpoint.clone()));
        let Some(mountpoint) = mountpoint.filter(|m| m.starts_with('/') && m != "/") else {
            continue;
        };
        if !fstype.is_mountable() {
            continue;
        }
        if mode == Mode::Repair
            && !matches!(f.fsck.status, FsckStatus::Clean | FsckStatus::Corrected)
        {
            rep.warn(
                Step::Plan,
                Some(&f.device),
                format!(
                    "not consistent after fsck ({}): no key is added to a home on it ({mountpoint})",
                    f.fsck.status.as_str()
                ),
            );
            continue;
        }
        let name = format!(
            "other-{}",
            f.device.trim_start_matches("/dev/").replace('/', "-")
        );
        match MountedTree::mount_in(&f.device, fstype, &name, None) {
            Ok(tree) => out.push(OtherFs {
                device: f.device.clone(),
                fstype,
                mountpoint,
                tree,
            }),
            Err(e) => rep.warn(
                Step::Plan,
                Some(&f.device),
                format!("{e}; no key is added to a home on it ({mountpoint})"),
            ),
        }
    }
    out
}

/// Applies the steps planned on the other filesystem `o`, mounted read-write for them only
/// when there are any (nothing else of the guest's is mounted writable); how many failed.
fn apply_elsewhere(
    o: OtherFs,
    steps: &[plan::Step],
    stamp: &str,
    report: &mut Report,
    rep: &mut Reporter,
) -> usize {
    let device = o.device.clone();
    let mine: Vec<plan::Step> = steps
        .iter()
        .filter(|s| s.on.as_deref() == Some(device.as_str()))
        .cloned()
        .collect();
    if mine.is_empty() {
        return 0;
    }
    let name = format!(
        "write-{}",
        device.trim_start_matches("/dev/").replace('/', "-")
    );
    let writable = o
        .tree
        .unmount()
        .and_then(|()| MountedTree::mount_rw_in(&device, o.fstype, &name, None))
        .map_err(|e| e.to_string())
        .and_then(|t| {
            atomic::Root::open(t.path())
                .map(|d| (t, d))
                .map_err(|e| e.to_string())
        });
    match writable {
        // The tree stays mounted while its steps are applied.
        Ok((_tree, dir)) => apply_steps(&dir, &device, &mine, stamp, report, rep),
        Err(e) => {
            rep.warn(
                Step::Apply,
                Some(&device),
                format!("{e}; no fix made on it"),
            );
            mine.len()
        }
    }
}

/// Applies `steps` in `dir` (the filesystem on `device`): their changes join the report's,
/// each failure is a warning; how many failed.
fn apply_steps(
    dir: &atomic::Root,
    device: &str,
    steps: &[plan::Step],
    stamp: &str,
    report: &mut Report,
    rep: &mut Reporter,
) -> usize {
    let applied = apply::apply(dir, device, steps, stamp, &mut |c| {
        rep.progress(Step::Apply, Some(device), format!("{} {}", c.kind, c.path))
    });
    let failed = applied.failures.len();
    for (path, e) in applied.failures {
        rep.warn(Step::Apply, Some(device), format!("{path} not fixed: {e}"));
    }
    report.changes.extend(applied.changes);
    failed
}

/// The root mounted to plan on: read-only in check mode, read-write in repair mode, where it
/// must have been left consistent by fsck. `None` (and a warning): no guest fix.
fn mount_root(
    mode: Mode,
    fs: &Filesystem,
    subvol: Option<&str>,
    rep: &mut Reporter,
) -> Option<MountedTree> {
    let root = fs.device.as_str();
    let name = root.trim_start_matches("/dev/");
    if mode == Mode::Repair && !matches!(fs.fsck.status, FsckStatus::Clean | FsckStatus::Corrected)
    {
        rep.warn(
            Step::Plan,
            Some(root),
            format!(
                "the root filesystem was not brought to a consistent state by fsck ({}); no file on it was changed",
                fs.fsck.status.as_str()
            ),
        );
        return None;
    }
    if mode == Mode::Check && fs.state_before == FsState::NotClean {
        rep.warn(
            Step::Plan,
            Some(root),
            "the root's journal or log was not replayed (check mode writes nothing): the plan is made from what is on disk now; repair replays it first and may find less to do".into(),
        );
    }
    let fstype = FsType::parse(&fs.fstype);
    let mounted = match mode {
        Mode::Check => MountedTree::mount_in(root, fstype, &format!("plan-{name}"), subvol),
        Mode::Repair => MountedTree::mount_rw_in(root, fstype, &format!("root-{name}"), subvol),
    };
    match mounted {
        Ok(t) => Some(t),
        Err(e) => {
            rep.warn(Step::Plan, Some(root), format!("{e}; guest fixes skipped"));
            None
        }
    }
}

/// A random machine ID (systemd's format), for a guest whose own is lost ([`crate::random`]).
/// Empty if the kernel gives nothing.
fn fresh_machine_id() -> String {
    crate::random::unique_bytes::<16>()
        .map(|b| vmrescue_protocol::digest::hex(&b))
        .unwrap_or_default()
}

/// Plans the fixes on the mounted root and lists them as the report's plan.
fn plan_on(
    tree: &MountedTree,
    settings: &Settings,
    access: &Access,
    root: &str,
    now: u64,
    report: &mut Report,
    rep: &mut Reporter,
) -> (Vec<plan::Step>, Vec<OtherFs>) {
    // One rescue's own reference /etc replaces the one baked into the image.
    let reference = [REFERENCE_ETC_RUN, REFERENCE_ETC]
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .and_then(|p| MountedTree::directory(p).ok());
    let machine_id = fresh_machine_id();
    let evidence = if plan::etc::lost(tree) {
        let ev = super::evidence::gather(tree, root, report, rep);
        rep.progress(
            Step::Plan,
            Some(root),
            format!(
                "/etc is lost; the guest's evidence of it: {} home director(ies), host name {}, {} mount point(s)",
                ev.homes.len(),
                ev.hostname.as_ref().map_or("unknown", |(h, _)| h.as_str()),
                ev.mounts.len()
            ),
        );
        ev
    } else {
        plan::evidence::Evidence::default()
    };
    let opened = open_others(settings.mode, access, root, report, &evidence, rep);
    let others: Vec<plan::Other> = opened
        .iter()
        .map(|o| plan::Other {
            device: &o.device,
            mountpoint: &o.mountpoint,
            tree: &o.tree,
        })
        .collect();
    let ctx = plan::Context {
        root_device: root,
        filesystems: &report.filesystems,
        partitions: &report.partitions,
        dev_prefix: "/dev/",
        os_id: report.os.as_ref().and_then(|o| o.id.as_deref()),
        hostname: settings.hostname.as_deref(),
        reference: reference.as_ref().map(|r| r as &dyn Tree),
        today: clock::days(now),
        fresh_machine_id: &machine_id,
        policy: plan::Policy {
            errors_remount_ro: settings.errors_remount_ro,
            ..plan::Policy::default()
        },
        access,
        evidence: &evidence,
        others: &others,
    };
    let planned = plan::plan(tree, &ctx);
    for n in &planned.notes {
        rep.warn(Step::Plan, Some(root), n.clone());
    }
    report.plan = planned
        .steps
        .iter()
        .map(|s| Change {
            device: Some(s.on.clone().unwrap_or_else(|| root.to_owned())),
            ..s.to_change()
        })
        .collect();
    rep.progress(
        Step::Plan,
        Some(root),
        format!("{} guest fix(es) planned", planned.steps.len()),
    );
    drop(others);
    (planned.steps, opened)
}

/// Applies the planned `steps` on the root mounted read-write; their changes join the report's.
fn apply_on(
    tree: MountedTree,
    root: &str,
    fs: &Filesystem,
    steps: &[plan::Step],
    stamp: &str,
    report: &mut Report,
    rep: &mut Reporter,
) -> Fixes {
    let dir = match atomic::Root::open(tree.path()) {
        Ok(d) => d,
        Err(e) => {
            rep.warn(Step::Apply, Some(root), format!("{e}; no guest fix made"));
            return Fixes {
                root: None,
                failed: steps.len(),
            };
        }
    };
    let on_root: Vec<plan::Step> = steps.iter().filter(|s| s.on.is_none()).cloned().collect();
    let failed = apply_steps(&dir, root, &on_root, stamp, report, rep);
    if !fs.fsck.undo_files.is_empty() {
        rep.warn(
            Step::Undo,
            Some(root),
            "e2undo will refuse this root's undo files: writing the guest fixes and the report changed its superblock after e2fsck (e2undo -f would put e2fsck's blocks back under those writes)".into(),
        );
    }
    Fixes {
        root: Some(RootMount {
            tree,
            device: root.to_owned(),
            stamp: stamp.to_owned(),
        }),
        failed,
    }
}
