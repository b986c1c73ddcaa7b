//! One boot of the rescue under our own QEMU, and the verified run (the boot before, the
//! repair staged on overlays, the boot after, then commit or roll back) through
//! [`crate::verify::flow`].

use std::fs;
use std::path::PathBuf;

use vmrescue_protocol::{Mode, Report, DEFAULT_PORT_NAME};

use super::{agent_settings, kernel_cmdline, Request, RescueError};
use crate::qemu::{self, Drive, Format};
use crate::session;
use crate::session::progress::{Event, Sink};
use crate::verify::flow::{self, Before};
use crate::verify::{self, GuestDrive, VerifyRequest};
use crate::vm::QemuVm;

/// What one boot of the rescue needs.
pub(super) struct Once<'a> {
    pub(super) req: &'a Request,
    pub(super) guest: &'a [GuestDrive],
    /// The kernel and how the boot line names it (see [`own_vm_boot`]).
    pub(super) kernel: PathBuf,
    pub(super) how: &'static str,
    pub(super) initramfs: PathBuf,
    /// The image's late archive as a disk, when `initramfs` is a core initramfs.
    pub(super) late: Option<PathBuf>,
    pub(super) dir: &'a std::path::Path,
    pub(super) accel: crate::qemu::accel::Accel,
    pub(super) qemu_bin: &'a std::path::Path,
    /// The run directory must stay (it holds a staged repair not yet in the disks).
    pub(super) keep: std::cell::Cell<bool>,
}

impl Once<'_> {
    /// Boots the rescue once in `mode` (check mode attaches the disks read-only) with the undo
    /// and boot-copy scratch disks given, and collects its report.
    pub(super) fn boot(
        &self,
        mode: Mode,
        guest: &[GuestDrive],
        undo: Option<&crate::host::undo::Scratch>,
        bootcopy: Option<&crate::host::undo::Scratch>,
        sink: &mut dyn Sink,
    ) -> Result<Report, RescueError> {
        let mut req = self.req.clone();
        req.mode = mode;
        let mut settings = agent_settings(&req, undo.map(|s| s.uuid.as_str()));
        if let Some(b) = bootcopy {
            settings.bootcopy = Some(b.uuid.clone());
            settings.disks = settings.disks.map(|n| n + 1);
        }
        let cmdline = kernel_cmdline(&settings)?;
        // Secrets go on a settings drive (a cdrom), never on the command line; it is removed
        // as soon as the rescue VM is gone.
        let settings_iso = crate::boot::drive::for_secrets(self.dir, &settings, &req.secrets)?;
        let socket = self.dir.join("agent.sock");
        if socket.as_os_str().len() >= 100 {
            return Err(RescueError::SocketPath(socket));
        }
        let _ = fs::remove_file(&socket);
        let n = guest.len();
        let (kernel, how) = (&self.kernel, self.how);
        let config =
            qemu::Config::new(
                format!("vmrescue-{}", std::process::id()),
                self.accel,
                qemu::Boot::Kernel {
                    kernel: kernel.clone(),
                    initrd: Some(self.initramfs.clone()),
                    cmdline: cmdline.as_str().to_owned(),
                },
            )
            // pc, not q35: its IDE controller probes empty in about half the time q35's
            // six AHCI ports take, and the kernel runs no init before every probe is done
            // (measured 0.2-0.3 s a boot). Every disk here is on virtio or SCSI.
            .machine(qemu::Machine::Pc)
            .memory(req.memory_mib)
            .console_log(self.dir.join("console.log"))
            .channel(socket, DEFAULT_PORT_NAME)
            .drives(guest.iter().map(|d| {
                d.drive
                    .clone()
                    .read_only(d.drive.read_only || mode == Mode::Check)
            }))
            .drives(undo.map(|s| {
                Drive::new(s.image.clone(), Format::Raw).serial(format!("vmrescue-disk{n}"))
            }))
            .drives(bootcopy.map(|s| {
                Drive::new(s.image.clone(), Format::Raw).serial(format!("vmrescue-disk{}", n + 1))
            }))
            // Not counted in `vmrescue.disks`: the agent sets it apart by its serial.
            .drives(self.late.as_ref().map(|p| {
                Drive::new(p, Format::Raw)
                    .read_only(true)
                    .serial(vmrescue_protocol::paths::LATE_SERIAL)
            }))
            .drives(
                settings_iso
                    .as_ref()
                    .map(|p| Drive::new(p, Format::Raw).bus(qemu::Bus::Scsi).cdrom()),
            );
        sink.event(Event::Note(&format!(
            "booting the rescue ({} mode, accel {}, {}, {} disk(s)); run directory {}",
            mode.as_str(),
            self.accel.as_str(),
            how,
            config.drives.len(),
            self.dir.display()
        )));
        let mut vm = QemuVm::new(self.qemu_bin.to_owned(), config, self.dir.join("qemu.log"));
        let outcome = session::run(&mut vm, req.timeout, sink).map_err(RescueError::from);
        drop(vm);
        if let Some(iso) = settings_iso {
            let _ = fs::remove_file(iso);
        }
        outcome
    }

    /// The rescue with verify boots of the guest's own OS: with `--verify-before` in repair
    /// mode, a check-mode rescue first (for the guest's boot files) and a boot of the broken
    /// guest; then the rescue and the boot after it. The outcome is `repaired` only when the
    /// guest boots afterwards. With `--rollback-on-regression` the repair writes to overlays
    /// of the disks, committed to them only when it is no regression.
    pub(super) fn verified(
        &self,
        v: &VerifyRequest,
        undo: Option<&crate::host::undo::Scratch>,
        sink: &mut dyn Sink,
    ) -> Result<Report, RescueError> {
        let repair = self.req.mode == Mode::Repair;
        let mut before = None;
        if (v.before || v.rollback) && repair {
            let copy = verify::scratch(self.dir)?;
            let first = self.boot(Mode::Check, self.guest, None, Some(&copy), sink)?;
            let spec = verify::boot_spec(&copy, self.dir, &first)?;
            before = Some(verify::boot(
                &spec, self.guest, self.dir, "before", self.accel, v, sink,
            )?);
            let _ = fs::remove_file(&copy.image);
        }
        // Where the repair writes: the disks, or (to roll back) overlays of them.
        let staged = match v.rollback && repair {
            true => Some(verify::stage(self.guest, self.dir)?),
            false => None,
        };
        let (target, after_disks) = match &staged {
            Some(st) => (st.rescue_drives(), st.verify_drives()),
            None => (self.guest.to_vec(), self.guest.to_vec()),
        };
        let copy = verify::scratch(self.dir)?;
        let mut report = self.boot(self.req.mode, &target, undo, Some(&copy), sink)?;
        // From here on the rescue has reported (and maybe repaired): a verify boot that cannot
        // run is a warning on that report, never its loss.
        let before = match before {
            Some(b) => Before::Boot(b),
            None if !repair && v.before => Before::SameAsAfter,
            None => Before::None,
        };
        let regression = flow::boot_after(&mut report, &copy, self.dir, before, &mut |spec, _| {
            verify::boot(spec, &after_disks, self.dir, "after", self.accel, v, sink)
                .map_err(|e| e.to_string())
        });
        let _ = fs::remove_file(&copy.image);
        let rollback_in_check_mode = v.rollback && !repair;
        if flow::settle(
            &mut report,
            staged,
            regression,
            rollback_in_check_mode,
            sink,
        ) {
            self.keep.set(true);
        }
        Ok(report)
    }
}
