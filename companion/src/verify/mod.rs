//! Boot-verify (`rescue --verify`): a repair is done when the guest's own OS boots, not when
//! fsck exits 0. The agent copies the guest's kernel and initramfs (its default boot entry,
//! `boot_config`) to a scratch disk; the host takes them out with debugfs (it never mounts a
//! guest filesystem), boots them on qcow2 overlays of the guest's disks (nothing written to
//! them) with the console to a file, and judges the console with [`crate::verify::bootjudge`]. Without
//! the files it boots the disks through the firmware and the guest's boot loader. The report's
//! outcome is `repaired` only when the guest boots afterwards.

pub mod bootjudge;
pub mod flow;
mod stage;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmrescue_protocol::paths::{BOOTCOPY_DIR, BOOTCOPY_INITRD, BOOTCOPY_KERNEL, BOOTCOPY_LABEL};
use vmrescue_protocol::{BootCheck, BootVerdict, Outcome, Report, Verify, VerifyMethod};

use crate::host::undo::{self, Scratch};
use crate::qemu::accel::Accel;
use crate::qemu::{self, Drive, Firmware};
use crate::render::clean;
use crate::session::host_warning;
use crate::session::progress::{Event, Sink};
use crate::vm::{QemuVm, Vm};
use bootjudge::BootState;
use stage::make_overlay;
pub use stage::{is_regression, rolled_back, stage, staged_overlay, Staged};

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// Also boot the broken guest first (`--verify-before`), to show the difference.
    pub before: bool,
    /// How long one verify boot may take to reach a verdict.
    pub timeout: Duration,
    /// Guest RAM for the verify boots.
    pub memory_mib: u32,
    /// `--rollback-on-regression`: the repair goes to overlays of the disks, committed to them
    /// only unless the guest booted before and does not after (then they are discarded).
    pub rollback: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Scratch(#[from] undo::UndoError),
    #[error("creating the overlay {} of {}: {message}", overlay.display(), disk.display())]
    Overlay {
        disk: PathBuf,
        overlay: PathBuf,
        message: String,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the verify boot's VM: {0}")]
    Vm(#[from] crate::vm::VmError),
    #[error("writing the verified repair to {}: {message}; the repair is kept in {} (run `qemu-img commit {}` to finish, or delete it to drop the repair)", disk.display(), overlay.display(), overlay.display())]
    Commit {
        disk: PathBuf,
        overlay: PathBuf,
        message: String,
    },
}

/// The scratch disk's size: room for a kernel and a large initramfs (it is sparse).
const SCRATCH_SIZE: u64 = 2 << 30;
/// A kernel command line longer than this is refused (x86's COMMAND_LINE_SIZE is 2048, and
/// `console=ttyS0` is added).
const MAX_CMDLINE: usize = 2000;

/// Makes the boot-copy scratch disk in the run directory.
pub fn scratch(dir: &Path) -> Result<Scratch, VerifyError> {
    Ok(undo::make_labelled(
        &dir.join("bootcopy-scratch.img"),
        BOOTCOPY_LABEL,
        SCRATCH_SIZE,
    )?)
}

/// What a verify boot starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootSpec {
    /// The guest's kernel (and initramfs) copied out, with its command line.
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
    /// The guest's disks through SeaBIOS and its own boot loader.
    Firmware,
}

impl BootSpec {
    pub fn method(&self) -> VerifyMethod {
        match self {
            BootSpec::Kernel { .. } => VerifyMethod::DirectKernel,
            BootSpec::Firmware => VerifyMethod::Firmware,
        }
    }
}

/// The guest's command line made safe to hand to QEMU, with `console=ttyS0` last (the last
/// `console=` is where the kernel and systemd write); `None` if it is not one.
pub fn guest_cmdline(guest: &str) -> Option<String> {
    if guest.len() > MAX_CMDLINE || guest.chars().any(|c| c.is_control()) {
        return None;
    }
    let mut words: Vec<&str> = guest.split_whitespace().collect();
    words.push("console=ttyS0");
    Some(words.join(" "))
}

/// Takes the guest's boot files out of the scratch disk into `dir`: the spec to boot them,
/// or the firmware when the agent copied no kernel (or its command line is not one).
pub fn boot_spec(scratch: &Scratch, dir: &Path, report: &Report) -> Result<BootSpec, VerifyError> {
    let Some(cfg) = &report.boot_config else {
        return Ok(BootSpec::Firmware);
    };
    let Some(cmdline) = guest_cmdline(&cfg.cmdline) else {
        return Ok(BootSpec::Firmware);
    };
    let kernel = dir.join("guest-kernel");
    if !undo::dump(
        scratch,
        &format!("/{BOOTCOPY_DIR}/{BOOTCOPY_KERNEL}"),
        &kernel,
    )? {
        return Ok(BootSpec::Firmware);
    }
    let initrd = dir.join("guest-initrd");
    let initrd = match cfg.initrd {
        Some(_)
            if undo::dump(
                scratch,
                &format!("/{BOOTCOPY_DIR}/{BOOTCOPY_INITRD}"),
                &initrd,
            )? =>
        {
            Some(initrd)
        }
        _ => None,
    };
    Ok(BootSpec::Kernel {
        kernel,
        initrd,
        cmdline,
    })
}

/// One guest disk for the verify boot: its drive (as the rescue opened it) and virtual size.
#[derive(Debug, Clone)]
pub struct GuestDrive {
    pub drive: Drive,
    pub virtual_size: u64,
}

/// Boots the guest per `spec` on new overlays of `disks` in `dir/verify-TAG`, until its console
/// shows a verdict or `req.timeout` passes; the overlays are removed afterwards.
pub fn boot(
    spec: &BootSpec,
    disks: &[GuestDrive],
    dir: &Path,
    tag: &str,
    accel: Accel,
    req: &VerifyRequest,
    sink: &mut dyn Sink,
) -> Result<BootCheck, VerifyError> {
    let work = dir.join(format!("verify-{tag}"));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|source| VerifyError::Io {
        what: "creating",
        path: work.clone(),
        source,
    })?;
    let mut drives = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let overlay = work.join(format!("disk{i}.qcow2"));
        make_overlay(d, &overlay)?;
        let mut drive = d.drive.clone().read_only(false).overlay(&overlay);
        drive.serial = None;
        if i == 0 && *spec == BootSpec::Firmware {
            drive = drive.boot_index(1);
        }
        drives.push(drive);
    }
    let boot = match spec {
        BootSpec::Kernel {
            kernel,
            initrd,
            cmdline,
        } => qemu::Boot::Kernel {
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            cmdline: cmdline.clone(),
        },
        BootSpec::Firmware => qemu::Boot::Firmware(Firmware::SeaBios),
    };
    let console = work.join("console.log");
    let config = qemu::Config::new(
        format!("vmrescue-verify-{tag}-{}", std::process::id()),
        accel,
        boot,
    )
    .memory(req.memory_mib)
    .console_log(&console)
    .drives(drives);
    let mut vm = QemuVm::new(qemu::binary(), config, work.join("qemu.log"));
    let check = watch(&mut vm, spec, &console, tag, req.timeout, sink)?;
    // The console is kept for the operator; the overlays (the guest's writes) are not.
    for i in 0..disks.len() {
        let _ = fs::remove_file(work.join(format!("disk{i}.qcow2")));
    }
    Ok(check)
}

/// Runs one verify boot on `vm` (any backend: our own QEMU, a libvirt domain) until its console
/// log `console` shows a verdict, the VM ends or `timeout` passes; then stops it and judges the
/// whole console.
pub fn watch(
    vm: &mut dyn Vm,
    spec: &BootSpec,
    console: &Path,
    tag: &str,
    timeout: Duration,
    sink: &mut dyn Sink,
) -> Result<BootCheck, VerifyError> {
    sink.event(Event::Note(&format!(
        "verify boot ({tag} the rescue): the guest's own OS, {}, on overlays of its disks ({}); at most {}s",
        spec.method(),
        vm.describe(),
        timeout.as_secs()
    )));
    let started = Instant::now();
    vm.start()?;
    let until = started + timeout;
    let state = loop {
        std::thread::sleep(Duration::from_millis(500));
        let text =
            String::from_utf8_lossy(&vm.console_tail(4 << 20).unwrap_or_default()).into_owned();
        let s = bootjudge::judge(&text);
        if matches!(
            s,
            BootState::Booted | BootState::Emergency | BootState::Panic
        ) {
            break s;
        }
        if vm.exited().is_some() {
            // Ended on its own: QEMU runs -no-reboot and libvirt's verify domain destroys on
            // reboot, so a rebooting guest ends here. The whole console decides below.
            let text =
                String::from_utf8_lossy(&vm.console_tail(4 << 20).unwrap_or_default()).into_owned();
            break bootjudge::judge_ended(&text);
        }
        if Instant::now() >= until {
            break s;
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    vm.stop(Duration::ZERO);
    let text = String::from_utf8_lossy(&fs::read(console).unwrap_or_default()).into_owned();
    let check = boot_check(&state, &text, elapsed);
    sink.event(Event::Note(&format!(
        "verify boot ({tag}): {} after {elapsed:.1}s",
        check.state
    )));
    Ok(check)
}

/// The report's record of one boot (pure).
pub fn boot_check(state: &BootState, console: &str, elapsed_s: f64) -> BootCheck {
    let (last_job, prompt) = match state {
        BootState::Hang { last_job, prompt } => (last_job.clone(), prompt.clone()),
        _ => (None, None),
    };
    BootCheck {
        state: state.verdict(),
        elapsed_s,
        milestones: bootjudge::milestones(console)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        last_job: last_job.map(|j| clean(&j)),
        prompt,
        console_tail: bootjudge::tail(console, 20)
            .iter()
            .map(|l| clean(l.trim_end_matches('\r')))
            .collect(),
    }
}

/// The record for the report's `verify`.
pub fn record(spec: &BootSpec, report: &Report) -> Verify {
    let cfg = report
        .boot_config
        .as_ref()
        .filter(|_| matches!(spec, BootSpec::Kernel { .. }));
    Verify {
        method: spec.method(),
        kernel: cfg.map(|c| clean(&c.kernel)),
        initrd: cfg.and_then(|c| c.initrd.as_deref().map(clean)),
        cmdline: match spec {
            BootSpec::Kernel { cmdline, .. } => Some(clean(cmdline)),
            BootSpec::Firmware => None,
        },
        before: None,
        after: None,
        rolled_back: false,
    }
}

/// What the verify boots mean for the outcome (pure): `repaired` (or `clean`) only when the
/// guest booted afterwards. A firmware boot that printed nothing on the serial console proves
/// nothing either way: a warning, the outcome as it was.
pub fn conclude(report: &mut Report) {
    let Some(v) = report.verify.clone() else {
        return;
    };
    let Some(after) = &v.after else { return };
    let before_booted = v
        .before
        .as_ref()
        .is_some_and(|b| b.state == BootVerdict::Booted);
    if after.state == BootVerdict::Booted {
        if let Some(b) = v.before.as_ref().filter(|b| b.state != BootVerdict::Booted) {
            report.warnings.push(host_warning(format!(
                "verify: the guest did not boot before the rescue ({}) and boots after it",
                describe(b)
            )));
        }
        // A gate, never a substitute: the guest's own boot may have mended on the throw-away
        // overlays what the rescue did not reach; its disks are as the rescue left them.
        let unreached = report.os.as_ref().is_some_and(|o| o.root_device.is_none())
            || !vmrescue_protocol::verdict::gaps(report).is_empty();
        if unreached && !matches!(report.outcome, Outcome::Repaired | Outcome::Clean) {
            report.warnings.push(host_warning(format!(
                "verify: the guest boots, but the rescue did not finish its work (outcome {}): the guest's own boot-time fsck would have to finish the job; the verify boot ran on throw-away overlays, so nothing it mended was kept",
                report.outcome.as_str()
            )));
        }
        return;
    }
    if v.method == VerifyMethod::Firmware && after.state == BootVerdict::NoOutput {
        report.warnings.push(host_warning(
            "verify: the boot through the firmware showed nothing on the serial console (the guest's boot loader and kernel do not write to ttyS0): the repair is not verified".into(),
        ));
        return;
    }
    let was = report.outcome;
    if matches!(was, Outcome::Repaired | Outcome::Clean) {
        report.outcome = Outcome::Unrepaired;
    }
    let mut msg = format!(
        "verify: the guest does not boot after the rescue: {}",
        describe(after)
    );
    if before_booted {
        msg.push_str("; it booted before the rescue (a regression)");
    }
    if was != report.outcome {
        msg.push_str(&format!(
            "; outcome {} instead of {}",
            report.outcome.as_str(),
            was.as_str()
        ));
    }
    report.warnings.push(host_warning(msg));
}

/// `hang (last start job: X)`, `panic: <last console line>`.
fn describe(b: &BootCheck) -> String {
    let mut s = b.state.to_string();
    if let Some(j) = &b.last_job {
        s.push_str(&format!(" (last start job: {j})"));
    }
    if let Some(p) = &b.prompt {
        s.push_str(&format!(" (waiting at: {p})"));
    }
    if let Some(l) = b.console_tail.iter().rev().find(|l| !l.trim().is_empty()) {
        s.push_str(&format!("; the console's last line: {}", l.trim()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome, before: Option<&str>, after: &str, method: &str) -> Report {
        let check = |s: &str| BootCheck {
            state: s.into(),
            elapsed_s: 1.0,
            milestones: vec![],
            last_job: (s == "hang").then(|| "dev-disk-by\\x2duuid-5e1f.device".into()),
            prompt: None,
            console_tail: vec!["[ 3.1] Kernel panic - not syncing: No working init found.".into()],
        };
        Report {
            outcome,
            verify: Some(Verify {
                method: method.into(),
                before: before.map(check),
                after: Some(check(after)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn repaired_only_when_the_guest_boots_afterwards() {
        let mut r = report(Outcome::Repaired, Some("hang"), "booted", "direct_kernel");
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::Repaired);
        assert!(
            r.warnings[0]
                .message
                .contains("did not boot before the rescue (hang (last start job: dev-disk-by"),
            "{:?}",
            r.warnings
        );

        let mut r = report(Outcome::Repaired, None, "panic", "direct_kernel");
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::Unrepaired);
        let w = &r.warnings[0].message;
        assert!(
            w.contains("does not boot after the rescue: panic")
                && w.contains("No working init found")
                && w.contains("instead of repaired"),
            "{w}"
        );

        let mut r = report(Outcome::Clean, Some("booted"), "emergency", "direct_kernel");
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::Unrepaired);
        assert!(r.warnings[0].message.contains("a regression"));

        // Already unrepaired: stays so, with the reason.
        let mut r = report(Outcome::Unrepaired, None, "hang", "direct_kernel");
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::Unrepaired);
        assert!(!r.warnings[0].message.contains("instead of"));

        // Silence through the firmware proves nothing.
        let mut r = report(Outcome::Repaired, None, "no_output", "firmware");
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::Repaired);
        assert!(r.warnings[0].message.contains("not verified"));

        let mut r = Report {
            outcome: Outcome::Repaired,
            ..Default::default()
        };
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::Repaired);
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn a_boot_never_raises_what_the_rescue_did_not_reach() {
        use vmrescue_protocol::{Filesystem, FstabEntry, FstabReport, OsInfo, Resolution};
        let gate = "boot-time fsck would have to finish the job";
        // No root identified.
        let mut r = report(Outcome::NoOs, Some("hang"), "booted", "direct_kernel");
        r.os = Some(OsInfo::default());
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::NoOs);
        let w = &r.warnings.last().unwrap().message;
        assert!(w.contains(gate) && w.contains("no_os"), "{w}");
        // A needed /home inside an LVM volume group the rescue did not open.
        let mut r = report(Outcome::Unrepaired, None, "booted", "direct_kernel");
        r.os = Some(OsInfo {
            root_device: Some("/dev/vda1".into()),
            ..Default::default()
        });
        r.filesystems = vec![Filesystem {
            device: "/dev/vdb".into(),
            fstype: "LVM2_member".into(),
            ..Default::default()
        }];
        r.fstab = Some(FstabReport {
            entries: vec![FstabEntry {
                line: 2,
                spec: "/dev/mapper/vg0-home".into(),
                file: "/home".into(),
                vfstype: "ext4".into(),
                resolution: Resolution::Missing,
                ..Default::default()
            }],
            ..Default::default()
        });
        let plain = r.clone();
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::Unrepaired);
        let w = &r.warnings.last().unwrap().message;
        assert!(w.contains(gate) && w.contains("unrepaired"), "{w}");
        // Unrepaired for what check mode plans, everything reached: no such warning.
        let root = Filesystem {
            device: "/dev/vda1".into(),
            fstype: "ext4".into(),
            fsck: vmrescue_protocol::Fsck {
                status: vmrescue_protocol::FsckStatus::Clean,
                exit_code: Some(0),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut r = Report {
            filesystems: vec![root],
            fstab: None,
            ..plain
        };
        conclude(&mut r);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        // A reboot is not a boot.
        let mut r = report(Outcome::Repaired, None, "reboot", "direct_kernel");
        conclude(&mut r);
        assert_eq!(r.outcome, Outcome::Unrepaired);
        assert!(r.warnings[0]
            .message
            .contains("does not boot after the rescue: reboot"));
    }

    /// A VM that prints `console` and ends by itself after `polls` looks.
    struct EndingVm {
        console: Vec<u8>,
        polls: u32,
    }

    impl crate::vm::Vm for EndingVm {
        fn describe(&self) -> String {
            "ending VM".into()
        }
        fn start(&mut self) -> Result<(), crate::vm::VmError> {
            Ok(())
        }
        fn open_channel(&mut self) -> Result<Option<crate::vm::Channel>, crate::vm::VmError> {
            Ok(None)
        }
        fn console_tail(&mut self, _: u64) -> Option<Vec<u8>> {
            Some(self.console.clone())
        }
        fn console_log(&self) -> Option<PathBuf> {
            None
        }
        fn exited(&mut self) -> Option<crate::vm::Exit> {
            self.polls = self.polls.saturating_sub(1);
            (self.polls == 0).then(|| crate::vm::Exit {
                success: true,
                description: "exit status: 0".into(),
            })
        }
        fn stop(&mut self, _: Duration) {}
        fn start_failure(&mut self) -> Option<String> {
            None
        }
    }

    #[test]
    fn a_verify_boot_that_reboots_is_a_reboot_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        let text = "Linux version 6.1.0-27-amd64\nA start job is running for /dev/vda1 (3s / 1min 30s)\nreboot: Restarting system\n";
        std::fs::write(&console, text).unwrap();
        let mut vm = EndingVm {
            console: text.as_bytes().to_vec(),
            polls: 2,
        };
        let started = Instant::now();
        let c = watch(
            &mut vm,
            &BootSpec::Firmware,
            &console,
            "after",
            Duration::from_secs(600),
            &mut crate::session::progress::Quiet,
        )
        .unwrap();
        assert_eq!(c.state, BootVerdict::Reboot);
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "ended with the VM, not at the limit"
        );
        assert_eq!(c.milestones, ["kernel"]);
    }

    #[test]
    fn a_regression_is_booted_before_and_not_after_and_rolling_back_voids_the_repair() {
        let r = report(Outcome::Repaired, Some("booted"), "hang", "direct_kernel");
        assert!(is_regression(r.verify.as_ref().unwrap()));
        for (before, after) in [
            (None, "hang"),
            (Some("hang"), "hang"),
            (Some("booted"), "booted"),
        ] {
            let r = report(Outcome::Repaired, before, after, "direct_kernel");
            assert!(
                !is_regression(r.verify.as_ref().unwrap()),
                "{before:?} {after}"
            );
        }
        let mut r = report(Outcome::Repaired, Some("booted"), "hang", "direct_kernel");
        r.filesystems.push(Default::default());
        r.filesystems[0].fsck.undo_files = vec!["vda.1.e2undo".into()];
        rolled_back(&mut r);
        conclude(&mut r);
        assert!(r.verify.as_ref().unwrap().rolled_back);
        assert!(r.filesystems[0].fsck.undo_files.is_empty());
        assert_eq!(r.outcome, Outcome::Unrepaired);
        assert!(r.warnings.iter().any(|w| w.message.contains("rolled back")));
    }

    #[test]
    fn the_guests_cmdline_gets_the_serial_console_and_nothing_hostile() {
        assert_eq!(
            guest_cmdline("root=UUID=3b1d ro  quiet").as_deref(),
            Some("root=UUID=3b1d ro quiet console=ttyS0")
        );
        assert_eq!(guest_cmdline("").as_deref(), Some("console=ttyS0"));
        assert_eq!(guest_cmdline("root=/dev/vda\u{1b}[2J"), None);
        assert_eq!(guest_cmdline(&"a".repeat(5000)), None);
    }

    #[test]
    fn a_boot_check_names_the_hang_and_escapes_the_console() {
        let console = "[ 0.0] Linux version 6.1\n[ ***  ] A start job is running for dev-disk-by\\x2duuid-5e1f.device (1min / 1min 30s)\n\u{1b}[31mred\u{7}\n";
        let c = boot_check(&bootjudge::judge(console), console, 60.0);
        assert_eq!(c.state, BootVerdict::Hang);
        assert_eq!(
            c.last_job.as_deref(),
            Some("dev-disk-by\\x2duuid-5e1f.device")
        );
        assert_eq!(c.milestones, ["kernel"]);
        assert!(
            c.console_tail
                .iter()
                .all(|l| !l.contains('\u{1b}') && !l.contains('\u{7}')),
            "{:?}",
            c.console_tail
        );
    }
}
