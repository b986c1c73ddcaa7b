//! The rescue from boot to report: set-up, modules, port, disks, fsck, report. Every failure
//! becomes a report entry; nothing here ends PID 1.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use vmrescue_discovery::assemble;
use vmrescue_discovery::ext;
use vmrescue_discovery::inventory::{self, DiskScan, Volume};
use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::{
    self as p, Change, Filesystem, FsState, FsckStatus, Message, Mode, Report,
};

use crate::cmdline::{self, After, Settings};
use crate::inspect::MountedTree;
use crate::reporter::Reporter;
use crate::{boot, disks, fsck, modules, port, proc, signals, verdict};

const E2FSCK: &str = "/sbin/e2fsck";
const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long to wait for the virtio-serial port to show up after its module loaded.
const PORT_WAIT: Duration = Duration::from_secs(3);

/// Runs the rescue and returns what to do afterwards.
pub fn run(started: Instant) -> After {
    proc::start_reaper();
    let mut rep = Reporter::new(started);
    for failure in boot::apply(&boot::steps()) {
        rep.warn("boot", None, failure);
    }
    if let Err(e) = signals::install() {
        rep.warn("boot", None, e);
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
    let fatal = catch_unwind(AssertUnwindSafe(|| {
        work(&settings, &kernel, &mut rep, &mut report);
    }))
    .is_err();
    if fatal {
        rep.warn(
            "agent",
            None,
            "internal error (see the console log); the rescue stopped early".into(),
        );
    }
    report.outcome = verdict::outcome(settings.mode, &report.filesystems, fatal);
    if let Some(sig) = signals::requested() {
        rep.warn(
            "agent",
            None,
            format!("stopped early on {}", signals::name(sig)),
        );
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
                rep.warn("cmdline", None, w);
            }
            s
        }
        Err(e) => {
            rep.warn(
                "cmdline",
                None,
                format!("cannot read /proc/cmdline ({e}); check mode, default port"),
            );
            Settings::default()
        }
    }
}

fn work(settings: &Settings, kernel: &str, rep: &mut Reporter, report: &mut Report) {
    load_modules(rep);
    connect_port(settings, rep);
    rep.hello(&Message::hello(AGENT_VERSION, settings.mode, kernel));
    rep.progress("disks", None, "waiting for block devices");
    let found = disks::settle(Path::new("/sys"), Duration::from_secs(settings.settle_secs));
    if found.is_empty() {
        rep.warn("disks", None, "no disk is attached to the rescue VM".into());
    }
    rep.progress(
        "disks",
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
    let scans = scan(&found, rep);

    // Check (and repair) first: a damaged filesystem may not mount for inspection.
    let mut checked: Vec<Filesystem> = Vec::new();
    'check: for s in scans.iter().filter(|s| s.medium.is_none()) {
        for v in &s.volumes {
            if signals::requested().is_some() {
                break 'check;
            }
            let Some(probe) = &v.probe else { continue };
            if !matches!(probe.fstype, "ext2" | "ext3" | "ext4" | "ext4dev") {
                continue;
            }
            let dev = format!("/dev/{}", v.name);
            match disks::probe_ext(Path::new(&dev)) {
                Ok(Some(sb)) => checked.push(check_ext(settings.mode, &dev, sb, rep)),
                Ok(None) => {}
                Err(e) => rep.warn("fsck", Some(&dev), format!("cannot read {dev}: {e}")),
            }
        }
    }

    if signals::requested().is_some() {
        // Stopping: report what was checked (and changed) so far, skip the inspection.
        report.filesystems = checked;
        report.changes = fsck_changes(settings.mode, &report.filesystems);
        return;
    }

    rep.progress("inspect", None, "looking for the OS root");
    let mut open_tree = |v: &Volume| -> Option<Box<dyn Tree>> {
        let fstype = v.probe.as_ref()?.fstype;
        match MountedTree::mount(&format!("/dev/{}", v.name), fstype, &v.name) {
            Ok(t) => Some(Box::new(t)),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    };
    let sections = assemble::assemble(&scans, "/dev/", &mut open_tree, settings.root.as_deref());
    for w in sections.warnings {
        rep.warn("discovery", None, w);
    }
    match &sections.os.root_device {
        Some(root) => rep.progress(
            "inspect",
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
        None => rep.progress("inspect", None, "no OS root identified"),
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
}

/// The report's change entry for every filesystem fsck corrected (repair mode only).
fn fsck_changes(mode: Mode, filesystems: &[Filesystem]) -> Vec<Change> {
    filesystems
        .iter()
        .filter(|fs| mode == Mode::Repair && fs.fsck.status == FsckStatus::Corrected)
        .map(|fs| Change {
            kind: "fsck".into(),
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
                rep.progress("disks", Some(&dev), what.join(", "));
                scans.push(s);
            }
            Err(e) => rep.warn("disks", Some(&dev), format!("cannot open {dev}: {e}")),
        }
    }
    scans
}

fn load_modules(rep: &mut Reporter) {
    let list = match std::fs::read_to_string(modules::LOAD_LIST) {
        Ok(l) => l,
        Err(e) => {
            rep.warn(
                "modules",
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
        rep.warn("modules", None, f);
    }
}

fn connect_port(settings: &Settings, rep: &mut Reporter) {
    let Some(dev) = port::wait_for(Path::new("/sys"), &settings.port, PORT_WAIT) else {
        rep.warn(
            "port",
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
            "port",
            Some(&path.to_string_lossy()),
            format!(
                "cannot open {}: {e}; reporting on the console only",
                path.display()
            ),
        ),
    }
}

fn state(sb: &ext::Superblock) -> FsState {
    match sb.state {
        ext::State::Clean => FsState::Clean,
        ext::State::Errors => FsState::Errors,
        ext::State::NotClean => FsState::NotClean,
    }
}

fn check_ext(mode: Mode, dev: &str, sb: ext::Superblock, rep: &mut Reporter) -> Filesystem {
    let before = state(&sb);
    rep.progress(
        "fsck",
        Some(dev),
        format!(
            "{} {} state {:?}: running e2fsck ({})",
            sb.fstype,
            sb.uuid,
            before,
            mode.as_str()
        ),
    );
    let mut runner = |argv: &[&str]| proc::run(argv, None);
    let result = fsck::ext(E2FSCK, dev, mode, &mut runner);
    let after = match disks::probe_ext(Path::new(dev)) {
        Ok(Some(sb)) => state(&sb),
        _ => FsState::Unknown,
    };
    rep.progress(
        "fsck",
        Some(dev),
        format!(
            "e2fsck {}: {} (exit {}), state now {:?}",
            mode.as_str(),
            result.status.as_str(),
            result.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            after
        ),
    );
    Filesystem {
        device: dev.to_owned(),
        fstype: sb.fstype.to_owned(),
        uuid: Some(sb.uuid.clone()),
        label: sb.label.clone(),
        state_before: before,
        state_after: after,
        error_count_before: sb.error_count,
        fsck: result,
        ..Default::default()
    }
}
