//! `vmrescue rescue`: boot the rescue image under QEMU with the operator's disks, stream the
//! agent's progress, collect its report.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmrescue_protocol::params::{self, After, Settings};
use vmrescue_protocol::{console, Message, Mode, Report, Step, Warning, DEFAULT_PORT_NAME};

use crate::accel::{self, Choice};
use crate::collector::{Collector, Event};
use crate::kcmdline::Cmdline;
use crate::qemu::{self, Format};
use crate::render;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub disks: Vec<PathBuf>,
    pub mode: Mode,
    pub memory_mib: u32,
    pub timeout: Duration,
    pub image: Option<PathBuf>,
    pub agent: Option<PathBuf>,
    pub accel: Choice,
    /// Forced format for every disk; `None` detects each.
    pub format: Option<Format>,
    /// Echo progress lines to stderr.
    pub show_progress: bool,
    pub keep_run_dir: bool,
    /// The operator's OS root (`--root`), passed to the agent.
    pub root: Option<String>,
    /// How the agent repairs the guest.
    pub policy: Policy,
    /// Keep e2fsck undo files (repair mode) in a new subdirectory of this directory.
    pub undo_dir: Option<PathBuf>,
}

/// The operator's repair choices, passed to the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Host name for a rebuilt `/etc/hostname` and `/etc/hosts`.
    pub hostname: Option<String>,
    /// Do not add `errors=remount-ro` to an ext root's fstab entry.
    pub keep_root_error_behaviour: bool,
    /// Allow `xfs_repair -L` when an xfs log cannot be replayed (loses the log's transactions).
    pub xfs_zero_log: bool,
    /// A reference `/etc` whose files take precedence when the guest's are missing.
    pub reference_etc: Option<PathBuf>,
}

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad input or a host-side problem (exit 2).
    #[error("{0:#}")]
    Host(#[from] anyhow::Error),
    /// The rescue ran but did not report (exit 3).
    #[error("the rescue did not report: {reason}; console log: {}", console_log.display())]
    NoReport {
        reason: String,
        console_log: PathBuf,
    },
}

/// Longest wait for the guest to power off after it reported.
const POWEROFF_WAIT: Duration = Duration::from_secs(20);
/// Console log bytes searched for a framed report when the channel gave none.
const CONSOLE_TAIL: u64 = 8 << 20;
/// Progress lines echoed at most (a guest could flood the terminal).
const MAX_PROGRESS_LINES: usize = 10_000;

fn qemu_binary() -> PathBuf {
    std::env::var_os("VMRESCUE_QEMU")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

/// The accelerator from `--accel`, else `VMRESCUE_ACCEL`, else auto.
pub fn accel_choice(flag: Option<Choice>) -> anyhow::Result<Choice> {
    if let Some(c) = flag {
        return Ok(c);
    }
    match std::env::var("VMRESCUE_ACCEL") {
        Ok(v) => Choice::parse(&v)
            .ok_or_else(|| anyhow::anyhow!("VMRESCUE_ACCEL={v:?} is not auto, kvm or tcg")),
        Err(_) => Ok(Choice::Auto),
    }
}

/// The operator's disks as QEMU attaches them, each with the size the guest sees.
fn check_disks(req: &Request) -> anyhow::Result<Vec<(qemu::Disk, u64)>> {
    if req.disks.is_empty() {
        anyhow::bail!("no disk given: name the guest's disk image(s) with --disk IMG");
    }
    let mut out = Vec::new();
    for path in &req.disks {
        let meta =
            fs::metadata(path).map_err(|e| anyhow::anyhow!("disk {}: {e}", path.display()))?;
        if meta.is_dir() {
            anyhow::bail!("disk {} is a directory, not a disk image", path.display());
        }
        let path =
            fs::canonicalize(path).map_err(|e| anyhow::anyhow!("disk {}: {e}", path.display()))?;
        let read_only = req.mode == Mode::Check;
        let access = if read_only {
            rustix::fs::Access::READ_OK
        } else {
            rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK
        };
        if rustix::fs::access(&path, access).is_err() {
            anyhow::bail!(
                "disk {}: no {} permission",
                path.display(),
                if read_only { "read" } else { "read and write" }
            );
        }
        let checked = crate::diskimage::check(&path, req.format)?;
        if out.iter().any(|(d, _): &(qemu::Disk, u64)| d.path == path) {
            anyhow::bail!("disk {} is given twice", path.display());
        }
        out.push((
            qemu::Disk {
                path,
                format: checked.format,
                read_only,
                follow_backing: checked.format_named,
            },
            checked.virtual_size,
        ));
    }
    Ok(out)
}

/// What the agent is told for this request (the undo scratch disk's filesystem, when attached).
pub fn agent_settings(req: &Request, undo: Option<&str>) -> Settings {
    Settings {
        mode: req.mode,
        port: DEFAULT_PORT_NAME.to_owned(),
        after: After::PowerOff,
        root: req.root.clone(),
        hostname: req.policy.hostname.clone(),
        errors_remount_ro: !req.policy.keep_root_error_behaviour,
        xfs_zero_log: req.policy.xfs_zero_log,
        // One checker pass may use most of the time, leaving room to report.
        fsck_timeout_secs: (req.timeout.as_secs() * 3 / 4).max(1),
        undo: undo.map(str::to_owned),
        ..Settings::default()
    }
}

/// Why a kernel command line cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    #[error("{0}")]
    Setting(String),
    #[error(transparent)]
    Syntax(#[from] crate::kcmdline::CmdlineError),
}

/// The kernel command line of a rescue boot: the kernel's own parameters, then the agent's
/// settings as the protocol's table writes them (validated by the agent's own rules first).
pub fn kernel_cmdline(settings: &Settings) -> Result<Cmdline, CmdlineError> {
    params::validate(settings).map_err(CmdlineError::Setting)?;
    let mut c = Cmdline::new();
    c.set("console", "ttyS0")?
        .flag("quiet")?
        .set("panic", "-1")?
        .set("8250.nr_uarts", "1")?
        .set("random.trust_cpu", "on")?
        .flag("cryptomgr.notests")?;
    for (key, value) in params::emit(settings) {
        c.set(&key, &value)?;
    }
    Ok(c)
}

fn run_base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// Runs one rescue; on success the guest's report with host-side warnings added.
pub fn run(req: &Request) -> Result<Report, Failure> {
    let (disks, sizes): (Vec<_>, Vec<_>) = check_disks(req)?.into_iter().unzip();
    let image = crate::image::ensure(req.image.clone(), req.agent.as_deref())?;
    let run_dir = tempfile::Builder::new()
        .prefix("vmrescue-run-")
        .tempdir_in(run_base())
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create a run directory in {}: {e}",
                run_base().display()
            )
        })?;
    let dir = run_dir.path().to_owned();
    let qemu_bin = qemu_binary();
    let accel = accel::choose(req.accel, &qemu_bin, &dir);
    let mut disks = disks;
    let scratch = match (&req.undo_dir, req.mode) {
        (Some(_), Mode::Repair) => {
            let bytes = sizes.iter().fold(0u64, |n, s| n.saturating_add(*s));
            let s = crate::undo::make(&dir, bytes)?;
            disks.push(qemu::Disk {
                path: s.image.clone(),
                format: Format::Raw,
                read_only: false,
                follow_backing: false,
            });
            Some(s)
        }
        _ => None,
    };
    let config = qemu::Config {
        name: format!("vmrescue-{}", std::process::id()),
        accel,
        memory_mib: req.memory_mib,
        kernel: image.kernel.clone(),
        initramfs: match &req.policy.reference_etc {
            None => image.initramfs.clone(),
            Some(etc) => crate::overlay::combined_initramfs(
                &image.initramfs,
                &crate::overlay::reference_entries_at(etc, crate::overlay::reference_etc_run())?,
                &dir.join("initramfs-with-reference-etc.img"),
            )?,
        },
        cmdline: kernel_cmdline(&agent_settings(
            req,
            scratch.as_ref().map(|s| s.uuid.as_str()),
        ))
        .map_err(|e| anyhow::anyhow!("--root or --hostname: {e}"))?,
        console_log: dir.join("console.log"),
        agent_socket: dir.join("agent.sock"),
        port_name: DEFAULT_PORT_NAME.to_owned(),
        disks,
    };
    if config.agent_socket.as_os_str().len() >= 100 {
        return Err(anyhow::anyhow!(
            "socket path {} is too long for a unix socket; set XDG_RUNTIME_DIR or TMPDIR to a shorter directory",
            config.agent_socket.display()
        )
        .into());
    }
    let qemu_log = dir.join("qemu.log");
    let log =
        File::create(&qemu_log).map_err(|e| anyhow::anyhow!("{}: {e}", qemu_log.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| anyhow::anyhow!("{}: {e}", qemu_log.display()))?;
    if req.show_progress {
        eprintln!(
            "vmrescue: booting the rescue ({} mode, accel {}, {} disk(s)); run directory {}",
            req.mode.as_str(),
            accel.as_str(),
            config.disks.len(),
            dir.display()
        );
    }
    let mut child = Command::new(&qemu_bin)
        .args(config.args())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start {}: {e}; install qemu-system-x86 (scripts/setup.sh) or set VMRESCUE_QEMU",
                qemu_bin.display()
            )
        })?;
    let result = collect(req, &config, &mut child);
    // Whether QEMU ended by itself, before we stop it.
    let own_exit = child.try_wait().ok().flatten();
    stop(&mut child);
    let outcome = match result {
        Collected::Report(r) => Ok(*r),
        Collected::Nothing(reason) => match recover_from_console(&config.console_log) {
            Some(mut r) => {
                r.warnings.push(host_warning(format!(
                    "no report on the virtio-serial channel ({reason}); recovered it from the console log"
                )));
                Ok(r)
            }
            None => Err(no_report(&config, &qemu_log, own_exit, reason)),
        },
    };
    let mut outcome = outcome;
    // The scratch disk (in the run directory) is all that is left if its files cannot be copied.
    let mut undo_lost = false;
    if let (Ok(report), Some(s), Some(base)) = (&mut outcome, &scratch, &req.undo_dir) {
        let name = dir.file_name().map(PathBuf::from).unwrap_or_default();
        let dest = base.join(name);
        match crate::undo::collect(s, &dest, report) {
            Ok(files) if !files.is_empty() && req.show_progress => eprintln!(
                "vmrescue: e2fsck undo files kept in {} (e2undo FILE DEVICE, newest first)",
                dest.display()
            ),
            Ok(_) => {}
            Err(e) => {
                undo_lost = true;
                report.warnings.push(host_warning(format!(
                    "cannot keep the e2fsck undo files: {e:#}; the scratch disk {} is kept",
                    s.image.display()
                )));
            }
        }
    }
    if let (Ok(report), Some(_), Mode::Check) = (&mut outcome, &req.undo_dir, req.mode) {
        report.warnings.push(host_warning(
            "--undo-dir has no effect in check mode: nothing is written, so there is nothing to undo"
                .into(),
        ));
    }
    match &outcome {
        Ok(_) if !req.keep_run_dir && !undo_lost => drop(run_dir),
        _ => {
            // Keep the console log for the operator.
            let _ = run_dir.keep();
        }
    }
    outcome.map(|mut r| {
        if r.mode != req.mode {
            r.warnings.push(host_warning(format!(
                "the agent says it ran in {} mode but {} was requested",
                r.mode.as_str(),
                req.mode.as_str()
            )));
        }
        r
    })
}

fn host_warning(message: String) -> Warning {
    Warning {
        step: Step::Host,
        message,
        device: None,
    }
}

enum Collected {
    Report(Box<Report>),
    Nothing(String),
}

fn collect(req: &Request, config: &qemu::Config, child: &mut Child) -> Collected {
    let deadline = Instant::now() + req.timeout;
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&config.agent_socket) {
            break s;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Collected::Nothing(format!("QEMU exited ({status}) before the channel opened"));
        }
        if Instant::now() >= deadline {
            return Collected::Nothing(format!("timed out after {} s", req.timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
    let mut collector = Collector::new(stream);
    let mut shown = 0usize;
    let mut report = None;
    loop {
        match collector.next_event() {
            Event::Message(Message::Hello {
                agent_version,
                kernel,
                ..
            }) => {
                if req.show_progress {
                    eprintln!(
                        "vmrescue: agent {} up on kernel {}",
                        render::clean(&agent_version),
                        render::clean(&kernel)
                    );
                }
            }
            Event::Message(Message::Progress { progress, .. }) => {
                if req.show_progress && shown < MAX_PROGRESS_LINES {
                    eprintln!("{}", render::progress(&progress));
                    shown += 1;
                }
            }
            Event::Message(Message::Report { report: r, .. }) => {
                if report.is_none() {
                    report = Some(*r);
                    break;
                }
            }
            Event::Rejected(why) => {
                if collector.rejected <= 10 && req.show_progress {
                    eprintln!("vmrescue: rejected a line from the guest: {why}");
                }
            }
            Event::Idle => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Collected::Nothing(format!("QEMU exited ({status}) without a report"));
                }
                if Instant::now() >= deadline {
                    return Collected::Nothing(format!(
                        "timed out after {} s",
                        req.timeout.as_secs()
                    ));
                }
            }
            Event::Closed => {
                let status = wait_for_exit(child, Duration::from_secs(5));
                return Collected::Nothing(format!(
                    "the channel closed without a report (QEMU: {status})"
                ));
            }
        }
    }
    let mut report = report.unwrap_or_default();
    if collector.rejected > 0 {
        report.warnings.push(host_warning(format!(
            "{} malformed line(s) from the guest were rejected",
            collector.rejected
        )));
    }
    wait_for_exit(child, POWEROFF_WAIT);
    Collected::Report(Box::new(report))
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> String {
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            _ => return "still running".into(),
        }
    }
}

fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn recover_from_console(log: &Path) -> Option<Report> {
    let mut f = File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(CONSOLE_TAIL)))
        .ok()?;
    let mut buf = Vec::new();
    f.take(CONSOLE_TAIL).read_to_end(&mut buf).ok()?;
    console::last_report(&buf)
}

fn no_report(
    config: &qemu::Config,
    qemu_log: &Path,
    own_exit: Option<std::process::ExitStatus>,
    reason: String,
) -> Failure {
    let console_empty = fs::metadata(&config.console_log)
        .map(|m| m.len() == 0)
        .unwrap_or(true);
    if console_empty && own_exit.is_some_and(|s| !s.success()) {
        // QEMU itself refused to start (image locked, bad option...): a host-side problem.
        let text = fs::read_to_string(qemu_log).unwrap_or_default();
        let tail: Vec<&str> = text
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Failure::Host(anyhow::anyhow!(
            "QEMU failed to start the rescue: {}",
            render::clean(&tail.join(" / "))
        ));
    }
    Failure::NoReport {
        reason,
        console_log: config.console_log.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_carries_the_agents_settings() {
        let mut req = request(vec![], Mode::Repair);
        req.root = Some("/dev/vdb1".into());
        let c = kernel_cmdline(&agent_settings(&req, None)).unwrap();
        assert!(
            c.as_str().starts_with("console=ttyS0 quiet"),
            "{}",
            c.as_str()
        );
        assert!(c.as_str().contains("vmrescue.root=/dev/vdb1"));
        assert!(c.as_str().contains("vmrescue.mode=repair"));
        assert!(c.as_str().contains("vmrescue.port=org.vmrescue.agent.0"));
        // The agent reads back exactly what the host meant.
        let (back, warnings) = params::parse(c.as_str());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back, agent_settings(&req, None));
        req.policy = Policy {
            hostname: Some("db-1".into()),
            keep_root_error_behaviour: true,
            xfs_zero_log: true,
            reference_etc: None,
        };
        let s = agent_settings(&req, Some("2c309045-caea-4e02-8bc7-cf04b2b71566"));
        let c = kernel_cmdline(&s).unwrap();
        assert!(c.as_str().contains(
            "vmrescue.hostname=db-1 vmrescue.errors_remount_ro=0 vmrescue.xfs_zero_log=1 vmrescue.undo=2c309045-caea-4e02-8bc7-cf04b2b71566"
        ), "{}", c.as_str());
        assert_eq!(params::parse(c.as_str()).0, s);
        for (root, hostname) in [(Some("a b"), None), (None, Some("a b")), (None, Some("-x"))] {
            req.root = root.map(str::to_owned);
            req.policy.hostname = hostname.map(str::to_owned);
            assert!(kernel_cmdline(&agent_settings(&req, None)).is_err());
        }
        req.root = None;
        req.policy.hostname = None;
        req.mode = Mode::Check;
        assert!(kernel_cmdline(&agent_settings(&req, None))
            .unwrap()
            .as_str()
            .contains("vmrescue.mode=check"));
    }

    fn request(disks: Vec<PathBuf>, mode: Mode) -> Request {
        Request {
            disks,
            mode,
            memory_mib: 256,
            timeout: Duration::from_secs(1),
            image: None,
            agent: None,
            accel: Choice::Tcg,
            format: None,
            show_progress: false,
            keep_run_dir: false,
            root: None,
            policy: Policy::default(),
            undo_dir: None,
        }
    }

    #[test]
    fn bad_disks_are_clear_host_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = check_disks(&request(vec![], Mode::Check))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--disk"), "{e}");
        let missing = d.path().join("nope.img");
        let e = check_disks(&request(vec![missing.clone()], Mode::Check))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.img") && e.contains("No such file"), "{e}");
        let e = check_disks(&request(vec![d.path().to_owned()], Mode::Check))
            .unwrap_err()
            .to_string();
        assert!(e.contains("directory"), "{e}");
        let img = d.path().join("a.img");
        fs::write(&img, b"x").unwrap();
        let e = check_disks(&request(vec![img.clone(), img.clone()], Mode::Check))
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let ok = check_disks(&request(vec![img], Mode::Check)).unwrap();
        assert!(ok[0].0.read_only, "check mode attaches disks read-only");
    }

    #[test]
    fn console_recovery_reads_the_last_report() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        let report = Report {
            mode: Mode::Repair,
            ..Default::default()
        };
        let mut text = b"boot noise\n".to_vec();
        text.extend(console::frame(&Message::report(report.clone())).unwrap());
        fs::write(&log, text).unwrap();
        assert_eq!(recover_from_console(&log), Some(report));
        assert_eq!(recover_from_console(&d.path().join("none")), None);
    }
}
