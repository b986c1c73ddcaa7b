//! The rescue from boot to report, as the sequence of its [phases](crate::phase): set-up,
//! scan, undo disk, layers (LVM), checks, inspection, guest fixes, report. Every failure
//! becomes a report entry; nothing here ends PID 1.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use vmrescue_protocol::params::{After, Settings};
use vmrescue_protocol::{Message, Phase, Report, Step};

use crate::phase::fixes::Fixes;
use crate::phase::{bootcopy, check, configdrive, fixes, inspect, report, scan, setup, undo};
use crate::reporter::Reporter;
use crate::{boot, layers, proc, signals, verdict};

const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the rescue and returns what to do afterwards.
pub fn run(started: Instant) -> After {
    proc::start_reaper();
    let mut rep = Reporter::new(started);
    for failure in boot::apply(&boot::steps()) {
        rep.warn(Step::Boot, None, failure);
    }
    if let Err(e) = signals::install() {
        rep.warn(Step::Boot, None, e.to_string());
    }
    let mut settings = setup::settings(&mut rep);
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
        fixes = work(&mut settings, &kernel, &mut rep, &mut report);
    }))
    .is_err();
    if fatal {
        rep.warn(
            Step::Agent,
            None,
            "internal error (see the console log); the rescue stopped early".into(),
        );
    }
    report.outcome = verdict::decide(settings.mode, &mut report, fatal, fixes.failed, &mut rep);
    if let Some(sig) = signals::requested() {
        rep.warn(
            Step::Agent,
            None,
            format!("stopped early on {}", signals::name(sig)),
        );
    }
    // The copy saved on the root carries them too.
    rep.mark(Phase::Report);
    report.timings = std::mem::take(&mut rep.timings);
    if let Some(root) = fixes.root.take() {
        report::save(root, &mut report, &mut rep);
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

/// The phases after set-up, each filling its part of `report`. A stop request (signal) ends
/// the work after the checks or the inspection, with what was found so far.
fn work(settings: &mut Settings, kernel: &str, rep: &mut Reporter, report: &mut Report) -> Fixes {
    let modules = setup::load_modules(rep, settings.ata);
    rep.mark(Phase::Modules);
    // After the modules: efivarfs is one.
    let fw = crate::firmware::detect();
    let sb = if fw.secure_boot { "on" } else { "off" };
    log::info!("firmware: {}, Secure Boot {sb}", fw.kind);
    report.firmware = Some(fw);
    setup::connect_port(settings, rep);
    rep.hello(&Message::hello(AGENT_VERSION, settings.mode, kernel));
    rep.mark(Phase::Port);
    rep.progress(
        Step::Modules,
        None,
        match &modules {
            Some(names) => format!("loaded for the devices present: {}", names.join(" ")),
            None => "none to load: the kernel has its drivers built in".to_owned(),
        },
    );

    let mut found = scan::run(
        Duration::from_secs(settings.settle_secs),
        settings.disks,
        rep,
    );
    rep.mark(Phase::Disks);
    let secrets = configdrive::apply(&mut found.scans, settings, rep);
    let (luks_keys, access) = (secrets.luks, secrets.access);
    report.mode = settings.mode;
    let settings = &*settings;
    let undo = settings
        .undo
        .as_deref()
        .and_then(|uuid| undo::attach(&mut found.scans, uuid, settings.mode, rep));
    let bootcopy = settings
        .bootcopy
        .as_deref()
        .and_then(|uuid| bootcopy::reserve(&mut found.scans, uuid, rep));
    let opened = layers::open(
        &mut found.scans,
        settings.mode,
        settings.root.as_deref(),
        settings.thin_repair,
        luks_keys,
        rep,
    );
    if !opened.layers.is_empty() {
        rep.mark(Phase::Layers);
    }
    let names = opened.for_discovery();
    let checked = check::run(
        &found.scans,
        settings,
        &names,
        undo.as_ref().map(undo::UndoDisk::dir),
        rep,
    );
    if let Some(u) = undo {
        u.release(rep);
    }
    rep.mark(Phase::Checks);
    if signals::requested().is_some() {
        // Stopping: report what was checked (and changed) so far, skip the inspection.
        report.filesystems = checked;
        report.changes = report::fsck_changes(settings.mode, &report.filesystems);
        layers::record(opened, report);
        return Fixes::default();
    }

    inspect::run(
        &found.scans,
        &found.disks,
        &checked,
        settings,
        &names,
        report,
        rep,
    );
    rep.mark(Phase::Inspect);
    report.changes = report::fsck_changes(settings.mode, &report.filesystems);
    layers::record(opened, report);
    if signals::requested().is_some() {
        return Fixes::default();
    }

    let Some(root) = report.os.as_ref().and_then(|o| o.root_device.clone()) else {
        return Fixes::default();
    };
    let fixes = fixes::run(settings, &access, &root, report, rep);
    rep.mark(Phase::Fixes);
    if let Some(dev) = bootcopy {
        bootcopy::copy(&dev, report, fixes.root.as_ref().map(|r| &r.tree), rep);
        rep.mark(Phase::BootCopy);
    }
    fixes
}
