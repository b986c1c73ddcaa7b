//! `vmrescue rescue --disk`: the operator's disk images under our own QEMU. This module turns
//! the request into a run (disks checked, image, run directory, the agent's settings, the VM's
//! configuration) and hands it to the backend-independent [`crate::session`]; `once` boots it.

mod once;

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::Duration;

use vmrescue_protocol::params::{self, After, Settings};
use vmrescue_protocol::{Mode, Report, DEFAULT_PORT_NAME};

use crate::boot::KernelAsked;
use crate::host::diskimage::DiskImageError;
use crate::qemu::accel::{self, Choice};
use crate::qemu::{self, Drive, Format};
use crate::session::progress::{Event, Sink};
use crate::session::{host_warning, SessionError};
use crate::verify::{GuestDrive, VerifyRequest};
use once::Once;
use vmrescue_protocol::cmdline::{Cmdline, CmdlineError};

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
    pub keep_run_dir: bool,
    /// The operator's OS root (`--root`), passed to the agent.
    pub root: Option<String>,
    /// How the agent repairs the guest.
    pub policy: Policy,
    /// Keep e2fsck undo files (repair mode) in a new subdirectory of this directory.
    pub undo_dir: Option<PathBuf>,
    /// Boot the guest's own OS after the rescue (`--verify`).
    pub verify: Option<VerifyRequest>,
    /// `--luks-key`: keys for the guest's LUKS containers, carried on a settings drive.
    /// What travels on the settings drive only (LUKS keys, the access asked for).
    pub secrets: vmrescue_protocol::secrets::Secrets,
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
    /// Allow `btrfs check --repair` on a damaged btrfs (can make the damage worse).
    pub btrfs_repair: bool,
    /// Allow `lvconvert --repair` of a thin pool whose metadata fails thin_check.
    pub thin_repair: bool,
    /// A reference `/etc` whose files take precedence when the guest's are missing.
    pub reference_etc: Option<PathBuf>,
}

/// Why a rescue gave no report.
#[derive(Debug, thiserror::Error)]
pub enum RescueError {
    #[error("no disk given: name the guest's disk image(s) with --disk IMG")]
    NoDisk,
    #[error("disk {}: {source}", path.display())]
    DiskMissing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk {} is a directory, not a disk image", .0.display())]
    DiskIsDirectory(PathBuf),
    #[error("disk {}: no {needed} permission", path.display())]
    DiskPermission { path: PathBuf, needed: &'static str },
    #[error("disk {} is given twice", .0.display())]
    DiskTwice(PathBuf),
    #[error(transparent)]
    DiskImage(#[from] DiskImageError),
    #[error(transparent)]
    DiskLock(#[from] crate::host::disklock::DiskLockError),
    #[error("VMRESCUE_ACCEL={0:?} is not auto, kvm or tcg")]
    Accel(String),
    #[error(transparent)]
    Image(#[from] crate::boot::image::ImageError),
    #[error(transparent)]
    RunDir(#[from] crate::host::rundir::RunDirError),
    #[error(
        "disk {} is still attached to the rescue VM of an earlier vmrescue that was killed (QEMU pid {pid}, run directory {}): it powers off when its rescue ends; wait for it or kill it, then try again",
        disk.display(),
        run_dir.display()
    )]
    LeftRunning {
        disk: PathBuf,
        pid: u32,
        run_dir: PathBuf,
    },
    #[error("socket path {} is too long for a unix socket; set XDG_RUNTIME_DIR or TMPDIR to a shorter directory", .0.display())]
    SocketPath(PathBuf),
    #[error("--root or --hostname: {0}")]
    Cmdline(#[from] CmdlineError),
    #[error(transparent)]
    ReferenceEtc(#[from] crate::boot::overlay::OverlayError),
    #[error(transparent)]
    Undo(#[from] crate::host::undo::UndoError),
    #[error("verify: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Drive(#[from] crate::boot::drive::DriveError),
}

impl RescueError {
    /// The rescue ran but did not report (exit 3), rather than a host-side problem (exit 2).
    pub fn is_no_report(&self) -> bool {
        matches!(self, RescueError::Session(SessionError::NoReport { .. }))
    }
}

/// The accelerator from `--accel`, else `VMRESCUE_ACCEL`, else auto.
pub fn accel_choice(flag: Option<Choice>) -> Result<Choice, RescueError> {
    if let Some(c) = flag {
        return Ok(c);
    }
    match std::env::var("VMRESCUE_ACCEL") {
        Ok(v) => Choice::parse(&v).ok_or(RescueError::Accel(v)),
        Err(_) => Ok(Choice::Auto),
    }
}

/// One of the operator's disks, checked, as QEMU attaches it.
#[derive(Debug, Clone)]
pub struct GuestDisk {
    pub drive: Drive,
    /// The size the guest sees.
    pub virtual_size: u64,
}

/// Checks the operator's disks: they exist, are files or block devices we may open as the mode
/// needs, are not given twice, and their format is safe to open (see `diskimage`).
pub fn check_disks(req: &Request) -> Result<Vec<GuestDisk>, RescueError> {
    if req.disks.is_empty() {
        return Err(RescueError::NoDisk);
    }
    let mut out: Vec<GuestDisk> = Vec::new();
    for (i, path) in req.disks.iter().enumerate() {
        let missing = |source| RescueError::DiskMissing {
            path: path.clone(),
            source,
        };
        let meta = fs::metadata(path).map_err(missing)?;
        if meta.is_dir() {
            return Err(RescueError::DiskIsDirectory(path.clone()));
        }
        let path = fs::canonicalize(path).map_err(missing)?;
        let read_only = req.mode == Mode::Check;
        let (access, needed) = if read_only {
            (rustix::fs::Access::READ_OK, "read")
        } else {
            (
                rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
                "read and write",
            )
        };
        if rustix::fs::access(&path, access).is_err() {
            return Err(RescueError::DiskPermission { path, needed });
        }
        if out.iter().any(|d| d.drive.path == path) {
            return Err(RescueError::DiskTwice(path));
        }
        let checked = crate::host::diskimage::check(&path, req.format)?;
        out.push(GuestDisk {
            drive: Drive::new(path, checked.format)
                .read_only(read_only)
                .follow_backing(checked.format_named)
                .block_device(meta.file_type().is_block_device())
                .serial(format!("vmrescue-disk{i}")),
            virtual_size: checked.virtual_size,
        });
    }
    Ok(out)
}

/// What the agent is told for this request (the undo scratch disk's filesystem, when attached).
pub fn agent_settings(req: &Request, undo: Option<&str>) -> Settings {
    let scratch = usize::from(undo.is_some());
    Settings {
        // More than the table allows: the agent waits for the disks to stay quiet instead.
        disks: u32::try_from(req.disks.len() + scratch)
            .ok()
            .filter(|n| (1..=params::DISKS_MAX).contains(&u64::from(*n))),
        port: DEFAULT_PORT_NAME.to_owned(),
        after: After::PowerOff,
        root: req.root.clone(),
        hostname: req.policy.hostname.clone(),
        errors_remount_ro: !req.policy.keep_root_error_behaviour,
        xfs_zero_log: req.policy.xfs_zero_log,
        btrfs_repair: req.policy.btrfs_repair,
        thin_repair: req.policy.thin_repair,
        // Every disk of a rescue here is on virtio.
        ata: false,
        undo: undo.map(str::to_owned),
        settings_drive: !req.secrets.is_empty(),
        ..crate::boot::settings::for_rescue(req.mode, req.timeout)
    }
}

/// The kernel command line of a rescue boot: the kernel's own parameters, then the agent's
/// settings as the protocol's table writes them (validated by the agent's own rules first).
pub fn kernel_cmdline(settings: &Settings) -> Result<Cmdline, CmdlineError> {
    let mut c = Cmdline::new();
    c.set("console", "ttyS0")?
        .flag("quiet")?
        .set("panic", "-1")?
        .set("8250.nr_uarts", "1")?
        .set("random.trust_cpu", "on")?
        .flag("cryptomgr.notests")?
        .settings(settings)?;
    Ok(c)
}

/// Guest RAM from which a rescue boots the uncompressed initramfs; below it the gzip one, which
/// leaves the kernel room to unpack it in 96 MiB.
pub const CPIO_MIN_MEMORY_MIB: u32 = 160;

/// The kernel QEMU boots: the image's uncompressed PVH kernel where it has one (no real-mode
/// setup, no self-decompression: the cheapest boot QEMU offers), else the bzImage.
/// `VMRESCUE_KERNEL_ENTRY=bzimage` forces the bzImage (for comparisons).
fn boot_kernel(image: &vmrescue_image_builder::Artefacts, asked: KernelAsked) -> PathBuf {
    match &image.vmlinux {
        Some(v) if asked != KernelAsked::HostBzimage => v.clone(),
        _ => image.kernel.clone(),
    }
}

/// What a rescue VM vmrescue starts itself boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnBoot {
    pub kernel: PathBuf,
    /// How the boot line names the kernel and its entry.
    pub how: &'static str,
    pub initramfs: PathBuf,
    /// The late archive's disk, attached read-only beside the initramfs.
    pub late: Option<PathBuf>,
}

/// The boot of a rescue VM vmrescue starts itself: the image's purpose-made rescue kernel
/// where it carries one (everything built in: no module to load) with its module-free core
/// initramfs, else [`boot_kernel`] with the core initramfs; each with the late archive on a
/// disk. The kernel copies only what every rescue needs (uncompressed, nothing to inflate).
/// Without a core: the whole initramfs, uncompressed where the guest has the memory to hold
/// the archive and its unpacked files at once. `VMRESCUE_KERNEL=host` takes the host's kernel
/// (for comparisons), as does `VMRESCUE_KERNEL_ENTRY=bzimage` (the rescue kernel is carried as
/// an ELF only).
pub fn own_vm_boot(image: &vmrescue_image_builder::Artefacts, memory_mib: u32) -> OwnBoot {
    let asked = KernelAsked::from_env();
    if let (KernelAsked::Rescue, Some(k), Some(i), Some(late)) = (
        asked,
        &image.rescue_vmlinux,
        &image.rescue_initramfs,
        &image.late_disk,
    ) {
        return OwnBoot {
            kernel: k.clone(),
            how: "rescue kernel, PVH entry",
            initramfs: i.clone(),
            late: Some(late.clone()),
        };
    }
    let kernel = boot_kernel(image, asked);
    let how = if kernel == image.kernel {
        "bzImage"
    } else {
        "PVH entry"
    };
    let (initramfs, late) = match (&image.initramfs_core, &image.late_disk) {
        (Some(core), Some(late)) => (core.clone(), Some(late.clone())),
        _ => match &image.initramfs_cpio {
            Some(cpio) if memory_mib >= CPIO_MIN_MEMORY_MIB => (cpio.clone(), None),
            _ => (image.initramfs.clone(), None),
        },
    };
    OwnBoot {
        kernel,
        how,
        initramfs,
        late,
    }
}

/// What killed earlier runs left in `base`, as warnings for this run's report; an error if one
/// left a rescue VM running on one of `disks`.
fn left_behind(base: &std::path::Path, disks: &[GuestDisk]) -> Result<Vec<String>, RescueError> {
    let mut notes = Vec::new();
    for s in crate::host::rundir::stale(base) {
        match s.qemu {
            Some(pid) => {
                if let Some(d) = disks.iter().find(|d| s.disks.contains(&d.drive.path)) {
                    return Err(RescueError::LeftRunning {
                        disk: d.drive.path.clone(),
                        pid,
                        run_dir: s.path,
                    });
                }
                notes.push(format!(
                    "an earlier vmrescue was killed and left its rescue VM running (QEMU pid {pid}, run directory {}); it powers off when its rescue ends",
                    s.path.display()
                ));
            }
            None => notes.push(format!(
                "an earlier vmrescue was killed and left its run directory {} (its console log may tell how far it got; remove it when done)",
                s.path.display()
            )),
        }
    }
    Ok(notes)
}

/// Runs one rescue; on success the guest's report with host-side warnings added.
pub fn run(req: &Request, sink: &mut dyn Sink) -> Result<Report, RescueError> {
    let disks = check_disks(req)?;
    // Held until the rescue is over: a second rescue of the same disk is refused.
    let _locks = disks
        .iter()
        .map(|d| crate::host::disklock::lock(&d.drive.path))
        .collect::<Result<Vec<_>, _>>()?;
    let base = crate::host::rundir::base();
    let left_behind = left_behind(&base, &disks)?;
    let image = crate::boot::image::ensure(req.image.clone(), req.agent.as_deref(), sink)?;
    let paths: Vec<&std::path::Path> = disks.iter().map(|d| d.drive.path.as_path()).collect();
    let run_dir = crate::host::rundir::RunDir::create(&base, &paths)?;
    let dir = run_dir.path().to_owned();
    let qemu_bin = qemu::binary();
    let accel = accel::choose(req.accel, &qemu_bin, &dir);
    let scratch = match (&req.undo_dir, req.mode) {
        (Some(_), Mode::Repair) => {
            let bytes = disks
                .iter()
                .fold(0u64, |n, d| n.saturating_add(d.virtual_size));
            Some(crate::host::undo::make(&dir, bytes)?)
        }
        _ => None,
    };
    let own = own_vm_boot(&image, req.memory_mib);
    let initramfs = match &req.policy.reference_etc {
        None => own.initramfs.clone(),
        Some(etc) => crate::boot::overlay::combined_initramfs(
            &own.initramfs,
            &crate::boot::overlay::reference_entries_at(
                etc,
                crate::boot::overlay::reference_etc_run(),
            )?,
            &dir.join("initramfs-with-reference-etc.img"),
        )?,
    };
    let guest: Vec<GuestDrive> = disks
        .into_iter()
        .map(|d| GuestDrive {
            drive: d.drive,
            virtual_size: d.virtual_size,
        })
        .collect();
    let once = Once {
        kernel: own.kernel,
        how: own.how,
        late: own.late,
        req,
        guest: &guest,
        initramfs,
        dir: &dir,
        accel,
        qemu_bin: &qemu_bin,
        keep: std::cell::Cell::new(false),
    };
    let mut outcome = match &req.verify {
        None => once.boot(req.mode, &guest, scratch.as_ref(), None, sink),
        Some(v) => once.verified(v, scratch.as_ref(), sink),
    };
    // The scratch disk (in the run directory) is all that is left if its files cannot be copied.
    let mut undo_lost = false;
    if let (Ok(report), Some(s), Some(base)) = (&mut outcome, &scratch, &req.undo_dir) {
        let dest = base.join(dir.file_name().unwrap_or_default());
        match crate::host::undo::collect(s, &dest, report) {
            Ok(files) if !files.is_empty() => sink.event(Event::Kept {
                what: "e2fsck undo files (e2undo FILE DEVICE, newest first)",
                path: &dest,
            }),
            Ok(_) => {}
            Err(e) => {
                undo_lost = true;
                report.warnings.push(host_warning(format!(
                    "cannot keep the e2fsck undo files: {e}; the scratch disk {} is kept",
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
    for note in &left_behind {
        sink.event(Event::Note(note));
    }
    if let Ok(report) = &mut outcome {
        report
            .warnings
            .extend(left_behind.into_iter().map(host_warning));
    }
    match &outcome {
        Ok(_) if !req.keep_run_dir && !undo_lost && !once.keep.get() => drop(run_dir),
        // Keep the console log for the operator.
        _ => drop(run_dir.keep()),
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
            btrfs_repair: true,
            thin_repair: true,
            reference_etc: None,
        };
        let s = agent_settings(&req, Some("2c309045-caea-4e02-8bc7-cf04b2b71566"));
        let c = kernel_cmdline(&s).unwrap();
        assert!(c.as_str().contains(
            "vmrescue.hostname=db-1 vmrescue.errors_remount_ro=0 vmrescue.xfs_zero_log=1 vmrescue.btrfs_repair=1 vmrescue.thin_repair=1 vmrescue.undo=2c309045-caea-4e02-8bc7-cf04b2b71566"
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
            keep_run_dir: false,
            root: None,
            policy: Policy::default(),
            undo_dir: None,
            verify: None,
            secrets: Default::default(),
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
        assert!(ok[0].drive.read_only, "check mode attaches disks read-only");
        assert_eq!(ok[0].drive.serial.as_deref(), Some("vmrescue-disk0"));
    }
}
