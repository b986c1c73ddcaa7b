//! The rescue from boot to report: set-up, modules, port, disks, fsck, report. Every failure
//! becomes a report entry; nothing here ends PID 1.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use vmrescue_discovery::assemble;
use vmrescue_discovery::inventory::{self, DiskScan, Volume};
use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::{
    self as p, Change, Filesystem, FsState, FsckStatus, Message, Mode, Report,
};

use crate::inspect::MountedTree;
use crate::reporter::Reporter;
use crate::{
    apply, atomic, boot, checks, clock, disks, modules, plan, port, proc, signals, verdict,
};
use vmrescue_protocol::params::{self as cmdline, After, Settings};
use vmrescue_protocol::paths::{REFERENCE_ETC, REFERENCE_ETC_RUN, UNDO_DIR};
use vmrescue_protocol::{ChangeKind, Step};

const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long to wait for the virtio-serial port to show up after its module loaded.
const PORT_WAIT: Duration = Duration::from_secs(3);

/// Runs the rescue and returns what to do afterwards.
pub fn run(started: Instant) -> After {
    proc::start_reaper();
    let mut rep = Reporter::new(started);
    for failure in boot::apply(&boot::steps()) {
        rep.warn(Step::Boot, None, failure);
    }
    if let Err(e) = signals::install() {
        rep.warn(Step::Boot, None, e);
    }
    let settings = settings(&mut rep);
    let kernel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut report = Report {
        mode: settings.mode,
        agent_version: AGENT_VERSION.to_owned(),
        kernel: kernel.clone(),
        ..Default::default()
    };
    let mut fixes = Fixes::default();
    let fatal = catch_unwind(AssertUnwindSafe(|| {
        fixes = work(&settings, &kernel, &mut rep, &mut report);
    }))
    .is_err();
    if fatal {
        rep.warn(
            Step::Agent,
            None,
            "internal error (see the console log); the rescue stopped early".into(),
        );
    }
    report.outcome = verdict::with_guest_fixes(
        verdict::outcome(settings.mode, &report.filesystems, fatal),
        settings.mode,
        report.plan.len(),
        fixes.failed,
    );
    if let Some(sig) = signals::requested() {
        rep.warn(
            Step::Agent,
            None,
            format!("stopped early on {}", signals::name(sig)),
        );
    }
    if let Some(root) = fixes.root.take() {
        save_report(root, &mut report, &mut rep);
    }
    report.warnings = std::mem::take(&mut rep.warnings);
    report.elapsed_s = rep.elapsed();
    log::info!("outcome: {}", report.outcome.as_str());
    rep.report(&Message::report(report));
    match signals::requested() {
        Some(sig) if signals::wants_reboot(sig) => After::Reboot,
        Some(_) => After::PowerOff,
        None => settings.after,
    }
}

fn settings(rep: &mut Reporter) -> Settings {
    match std::fs::read_to_string("/proc/cmdline") {
        Ok(line) => {
            let (s, warnings) = cmdline::parse(&line);
            for w in warnings {
                rep.warn(Step::Cmdline, None, w);
            }
            s
        }
        Err(e) => {
            rep.warn(
                Step::Cmdline,
                None,
                format!("cannot read /proc/cmdline ({e}); check mode, default port"),
            );
            Settings::default()
        }
    }
}

/// Finds the host's undo scratch disk (by the filesystem UUID it announced), sets it apart from
/// the guest's disks and, in repair mode, mounts it for e2fsck's undo files.
fn undo_scratch(
    scans: &mut [DiskScan],
    uuid: &str,
    mode: Mode,
    rep: &mut Reporter,
) -> Option<(MountedTree, std::path::PathBuf)> {
    let found = scans.iter_mut().find_map(|s| {
        let v = s.volumes.iter().find(|v| {
            v.probe.as_ref().is_some_and(|p| {
                p.fstype == "ext4"
                    && p.uuid
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
            })
        })?;
        let name = v.name.clone();
        s.medium = Some("undo scratch disk".into());
        Some(name)
    });
    let Some(name) = found else {
        rep.warn(
            Step::Fsck,
            None,
            format!(
                "the undo scratch disk (filesystem {uuid}) is not attached; no undo files kept"
            ),
        );
        return None;
    };
    if mode == Mode::Check {
        return None;
    }
    let dev = format!("/dev/{name}");
    let tree = match MountedTree::mount_rw(&dev, "ext4", "undo") {
        Ok(t) => t,
        Err(e) => {
            rep.warn(
                Step::Fsck,
                Some(&dev),
                format!("undo scratch disk: {e}; no undo files kept"),
            );
            return None;
        }
    };
    let dir = tree.path().join(UNDO_DIR);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        rep.warn(
            Step::Fsck,
            Some(&dev),
            format!("undo scratch disk: {}: {e}", dir.display()),
        );
        return None;
    }
    rep.progress(
        Step::Fsck,
        Some(&dev),
        "keeping e2fsck undo files on the undo scratch disk",
    );
    Some((tree, dir))
}

/// Discovery's sections, each filesystem mounted read-only (no journal replay) to look inside.
/// Before fsck (`before_fsck`) only ext filesystems whose superblock records no error are
/// mounted: a damaged filesystem is not handed to the kernel until it has been checked.
fn inspect_all(scans: &[DiskScan], settings: &Settings, before_fsck: bool) -> assemble::Found {
    let mut open_tree = |v: &Volume| -> Option<Box<dyn Tree>> {
        let fstype = v.probe.as_ref()?.fstype;
        let dev = format!("/dev/{}", v.name);
        if before_fsck {
            match disks::probe_ext(Path::new(&dev)) {
                Ok(Some(sb)) if sb.state != vmrescue_discovery::ext::State::Errors => {}
                _ => return None,
            }
        }
        match MountedTree::mount(&dev, fstype, &v.name) {
            Ok(t) => Some(Box::new(t)),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    };
    assemble::assemble(scans, "/dev/", &mut open_tree, settings.root.as_deref())
}

/// The guest's root, mounted read-write after repair, kept until the report is saved on it.
pub struct RootMount {
    tree: MountedTree,
    device: String,
    stamp: String,
}

/// What the guest fixes leave for the verdict and the saved report.
#[derive(Default)]
pub struct Fixes {
    /// The root, still mounted read-write (repair mode).
    root: Option<RootMount>,
    /// Planned fixes that could not be made.
    failed: usize,
}

/// Saves the whole report on the repaired root and unmounts it.
fn save_report(root: RootMount, report: &mut Report, rep: &mut Reporter) {
    let path = apply::report_path(&root.stamp);
    report.report_file = Some(format!("{}:{path}", root.device));
    report.changes.push(Change {
        kind: ChangeKind::Report,
        path: path.clone(),
        device: Some(root.device.clone()),
        detail: "this report, saved on the repaired root".into(),
        ..Default::default()
    });
    // The warnings gathered so far belong in the saved copy too.
    report.warnings = rep.warnings.clone();
    report.elapsed_s = rep.elapsed();
    let saved = atomic::Root::open(root.tree.path())
        .and_then(|r| apply::save_report(&r, report, &root.stamp));
    if let Err(e) = saved {
        report.changes.pop();
        report.report_file = None;
        rep.warn(
            Step::Report,
            Some(&root.device),
            format!("cannot save the report on the root: {e}"),
        );
    } else {
        rep.progress(
            Step::Report,
            Some(&root.device),
            format!("report saved as {path}"),
        );
    }
    if let Err(e) = root.tree.unmount() {
        rep.warn(Step::Report, Some(&root.device), e);
    }
}

fn work(settings: &Settings, kernel: &str, rep: &mut Reporter, report: &mut Report) -> Fixes {
    load_modules(rep);
    connect_port(settings, rep);
    rep.hello(&Message::hello(AGENT_VERSION, settings.mode, kernel));
    rep.progress(Step::Disks, None, "waiting for block devices");
    let found = disks::settle(Path::new("/sys"), Duration::from_secs(settings.settle_secs));
    if found.is_empty() {
        rep.warn(
            Step::Disks,
            None,
            "no disk is attached to the rescue VM".into(),
        );
    }
    rep.progress(
        Step::Disks,
        None,
        format!(
            "found {}",
            found
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let mut scans = scan(&found, rep);
    let undo = settings
        .undo
        .as_deref()
        .and_then(|uuid| undo_scratch(&mut scans, uuid, settings.mode, rep));

    // A read-only look first, at the filesystems that are safe to mount, for the fstab pass
    // numbers that order the checks; the real inspection follows the checks.
    let pre = inspect_all(&scans, settings, true);
    let groups = checks::plan(&scans, pre.fstab.as_ref(), pre.os.root_device.as_deref());
    let opts = checks::Options {
        mode: settings.mode,
        xfs_zero_log: settings.xfs_zero_log,
        pass_timeout: Duration::from_secs(settings.fsck_timeout_secs),
    };
    let checked = checks::run_all(
        opts,
        undo.as_ref().map(|(_, dir)| dir.as_path()),
        groups,
        rep,
    );
    if let Some((tree, _)) = undo {
        if let Err(e) = tree.unmount() {
            rep.warn(Step::Fsck, None, format!("undo scratch disk: {e}"));
        }
    }

    if signals::requested().is_some() {
        // Stopping: report what was checked (and changed) so far, skip the inspection.
        report.filesystems = checked;
        report.changes = fsck_changes(settings.mode, &report.filesystems);
        return Fixes::default();
    }

    rep.progress(Step::Inspect, None, "looking for the OS root");
    let sections = inspect_all(&scans, settings, false);
    for w in sections.warnings {
        rep.warn(Step::Discovery, None, w);
    }
    match &sections.os.root_device {
        Some(root) => rep.progress(
            Step::Inspect,
            Some(root),
            format!(
                "OS root: {}",
                sections
                    .os
                    .pretty_name
                    .as_deref()
                    .unwrap_or("unknown distribution")
            ),
        ),
        None => rep.progress(Step::Inspect, None, "no OS root identified"),
    }

    report.disks = sections
        .disks
        .into_iter()
        .map(|d| {
            let sys = found.iter().find(|f| f.name == d.name);
            p::Disk {
                serial: sys.and_then(|f| f.serial.clone()),
                read_only: sys.is_some_and(|f| f.read_only),
                ..d
            }
        })
        .collect();
    report.partitions = sections.partitions;
    report.filesystems = sections
        .filesystems
        .into_iter()
        .map(|fs| match checked.iter().find(|c| c.device == fs.device) {
            Some(c) => Filesystem {
                role: fs.role,
                mountpoint: fs.mountpoint,
                ..c.clone()
            },
            None => fs,
        })
        .collect();
    report.changes = fsck_changes(settings.mode, &report.filesystems);
    report.os = Some(sections.os);
    report.fstab = sections.fstab;
    if signals::requested().is_some() {
        return Fixes::default();
    }
    let Some(root) = report.os.as_ref().and_then(|o| o.root_device.clone()) else {
        return Fixes::default();
    };
    guest_fixes(settings, &root, report, rep)
}

/// Plans the guest fixes on the root and, in repair mode, applies them. Returns the root still
/// mounted read-write in repair mode, for the report.
fn guest_fixes(settings: &Settings, root: &str, report: &mut Report, rep: &mut Reporter) -> Fixes {
    let Some(fs) = report
        .filesystems
        .iter()
        .find(|f| f.device == root)
        .cloned()
    else {
        return Fixes::default();
    };
    let name = root.trim_start_matches("/dev/");
    if settings.mode == Mode::Repair
        && !matches!(fs.fsck.status, FsckStatus::Clean | FsckStatus::Corrected)
    {
        rep.warn(
            Step::Plan,
            Some(root),
            format!(
                "the root filesystem was not brought to a consistent state by fsck ({}); no file on it was changed",
                fs.fsck.status.as_str()
            ),
        );
        return Fixes::default();
    }
    if settings.mode == Mode::Check && fs.state_before == FsState::NotClean {
        rep.warn(
            Step::Plan,
            Some(root),
            "the root's journal or log was not replayed (check mode writes nothing): the plan is made from what is on disk now; repair replays it first and may find less to do".into(),
        );
    }
    let mounted = match settings.mode {
        Mode::Check => MountedTree::mount(root, &fs.fstype, &format!("plan-{name}")),
        Mode::Repair => MountedTree::mount_rw(root, &fs.fstype, &format!("root-{name}")),
    };
    let tree = match mounted {
        Ok(t) => t,
        Err(e) => {
            rep.warn(Step::Plan, Some(root), format!("{e}; guest fixes skipped"));
            return Fixes::default();
        }
    };
    // One rescue's own reference /etc replaces the one baked into the image.
    let reference = [REFERENCE_ETC_RUN, REFERENCE_ETC]
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .and_then(|p| MountedTree::directory(p).ok());
    let now = clock::now_secs();
    let ctx = plan::Context {
        root_device: root,
        filesystems: &report.filesystems,
        partitions: &report.partitions,
        dev_prefix: "/dev/",
        os_id: report.os.as_ref().and_then(|o| o.id.as_deref()),
        hostname: settings.hostname.as_deref(),
        reference: reference.as_ref().map(|r| r as &dyn Tree),
        today: clock::days(now),
        policy: plan::Policy {
            errors_remount_ro: settings.errors_remount_ro,
            ..plan::Policy::default()
        },
    };
    let planned = plan::plan(&tree, &ctx);
    for n in &planned.notes {
        rep.warn(Step::Plan, Some(root), n.clone());
    }
    report.plan = planned
        .steps
        .iter()
        .map(|s| Change {
            device: Some(root.to_owned()),
            ..s.to_change()
        })
        .collect();
    rep.progress(
        Step::Plan,
        Some(root),
        format!("{} guest fix(es) planned", planned.steps.len()),
    );
    if settings.mode == Mode::Check {
        return Fixes::default();
    }
    let stamp = clock::stamp(now);
    let dir = match atomic::Root::open(tree.path()) {
        Ok(d) => d,
        Err(e) => {
            rep.warn(Step::Apply, Some(root), format!("{e}; no guest fix made"));
            return Fixes {
                root: None,
                failed: planned.steps.len(),
            };
        }
    };
    let applied = apply::apply(&dir, root, &planned.steps, &stamp);
    let failed = applied.failures.len();
    for (path, e) in applied.failures {
        rep.warn(Step::Apply, Some(root), format!("{path} not fixed: {e}"));
    }
    for c in &applied.changes {
        rep.progress(Step::Apply, Some(root), format!("{} {}", c.kind, c.path));
    }
    report.changes.extend(applied.changes);
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
            stamp,
        }),
        failed,
    }
}

/// The report's change entry for every filesystem fsck corrected (repair mode only).
fn fsck_changes(mode: Mode, filesystems: &[Filesystem]) -> Vec<Change> {
    filesystems
        .iter()
        .filter(|fs| mode == Mode::Repair && fs.fsck.status == FsckStatus::Corrected)
        .map(|fs| Change {
            kind: ChangeKind::Fsck,
            path: fs.device.clone(),
            detail: format!(
                "{} corrected the filesystem (exit {})",
                fs.fsck.tool,
                fs.fsck.exit_code.unwrap_or(-1)
            ),
            ..Default::default()
        })
        .collect()
}

/// Reads each disk's partition table and signatures with the discovery library.
fn scan(found: &[p::Disk], rep: &mut Reporter) -> Vec<DiskScan> {
    let mut scans = Vec::new();
    for d in found {
        let dev = format!("/dev/{}", d.name);
        match std::fs::File::open(&dev) {
            Ok(mut f) => {
                let s = inventory::scan_disk(&d.name, &mut f, d.size_bytes);
                let what: Vec<String> = s
                    .volumes
                    .iter()
                    .map(|v| {
                        format!(
                            "{} {}",
                            v.name,
                            v.probe.as_ref().map_or("unknown", |p| p.fstype)
                        )
                    })
                    .collect();
                rep.progress(Step::Disks, Some(&dev), what.join(", "));
                scans.push(s);
            }
            Err(e) => rep.warn(Step::Disks, Some(&dev), format!("cannot open {dev}: {e}")),
        }
    }
    scans
}

fn load_modules(rep: &mut Reporter) {
    let list = match std::fs::read_to_string(modules::LOAD_LIST) {
        Ok(l) => l,
        Err(e) => {
            rep.warn(
                Step::Modules,
                None,
                format!("cannot read {} ({e}); no module loaded", modules::LOAD_LIST),
            );
            return;
        }
    };
    let loaded = modules::load_all(&modules::parse_load_list(&list));
    log::info!(
        "modules: {} loaded, {} already present, {} failed",
        loaded.loaded,
        loaded.already,
        loaded.failed.len()
    );
    for f in loaded.failed {
        rep.warn(Step::Modules, None, f);
    }
}

fn connect_port(settings: &Settings, rep: &mut Reporter) {
    let Some(dev) = port::wait_for(Path::new("/sys"), &settings.port, PORT_WAIT) else {
        rep.warn(
            Step::Port,
            None,
            format!(
                "no virtio-serial port named {}; reporting on the console only",
                settings.port
            ),
        );
        return;
    };
    let path = Path::new("/dev").join(&dev);
    match port::Port::open(path.clone()) {
        Ok(p) => {
            log::info!("talking to the host on {}", path.display());
            rep.attach(p);
        }
        Err(e) => rep.warn(
            Step::Port,
            Some(&path.to_string_lossy()),
            format!(
                "cannot open {}: {e}; reporting on the console only",
                path.display()
            ),
        ),
    }
}
