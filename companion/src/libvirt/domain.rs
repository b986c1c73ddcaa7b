//! `vmrescue rescue --domain NAME` and `vmrescue unrescue --domain NAME`: the rescue of a
//! libvirt domain that leaves its definition exactly as it was.
//!
//! The rescue XML runs once under the domain's own name and UUID (`virDomainCreateXML`), so the
//! persistent definition is never rewritten (a crash of vmrescue at any point leaves it intact;
//! the run is started with AUTODESTROY, so it also ends with vmrescue's connection). Before
//! anything changes, the original inactive XML is saved (fsynced) in a per-domain state
//! directory holding a lock: two rescues of one domain cannot run at once, and `unrescue`
//! cleans up after a crash.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use virt::domain::Domain;
use vmrescue_image_builder::{self as builder, Artefacts};
use vmrescue_protocol::{params, paths, Mode, DEFAULT_PORT_NAME};

use super::boot_media::{resolve, BootPath, KernelAsked, MediaFiles};
use super::disks::guest_drives;
use super::placement::{settings_drive, Media, LOCAL_MEDIA_DIR};
use super::remote_verify::boot_remote;
pub use super::request::{connect, lookup, DomainError, DomainRequest, Done};
use super::request::{io, is_local, lv};
pub use super::state::unrescue;
use super::state::{give_back, lock_state, write_synced};
use super::verify_before::{before_boot, verify_before, First};
use super::vm::LibvirtVm;
use super::xml::{self, BootMethod};
use crate::session::progress::{Event, Sink};
use crate::session::{self, host_warning};
use crate::verify::flow;

/// `VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE`.
pub(super) const XML_INACTIVE_SECURE: u32 = 1 | 2;
const XML_SECURE: u32 = 1;
/// The boot-copy disk (sparse): room for a kernel and a large initramfs. Remote: smaller, as it
/// comes back whole through a stream.
const LOCAL_BOOTCOPY_SIZE: u64 = 2 << 30;
const REMOTE_BOOTCOPY_SIZE: u64 = 512 << 20;
/// Longest wait for a graceful shutdown (`--stop`) before the domain is destroyed.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// This rescue's settings for the agent.
fn agent_settings(req: &DomainRequest) -> params::Settings {
    params::Settings {
        // A kernel boot's line tells the agent to wait for the drive its secrets are on.
        settings_drive: !req.secrets.is_empty(),
        root: req.root.clone(),
        hostname: req.policy.hostname.clone(),
        errors_remount_ro: !req.policy.keep_root_error_behaviour,
        xfs_zero_log: req.policy.xfs_zero_log,
        btrfs_repair: req.policy.btrfs_repair,
        thin_repair: req.policy.thin_repair,
        ..crate::boot::settings::for_rescue(req.mode, req.timeout)
    }
}

fn unified_diff(a: &str, b: &str) -> Result<String, DomainError> {
    let dir = tempfile::tempdir()
        .map_err(io("creating a scratch directory in", &std::env::temp_dir()))?;
    let (pa, pb) = (
        dir.path().join("inactive.xml"),
        dir.path().join("rescue.xml"),
    );
    fs::write(&pa, a).map_err(io("writing", &pa))?;
    fs::write(&pb, b).map_err(io("writing", &pb))?;
    // diff exits 1 when the files differ: only its output matters.
    let out = std::process::Command::new("diff")
        .args(["-u", "--label", "inactive", "--label", "rescue"])
        .arg(&pa)
        .arg(&pb)
        .output()
        .map_err(io("running diff (diffutils) on", &pa))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_inactive(dom: &Domain, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while dom.is_active().unwrap_or(false) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    true
}

/// Rescues the domain.
pub fn rescue(req: &DomainRequest, sink: &mut dyn Sink) -> Result<Done, DomainError> {
    // Bad values stop here, before anything changes (a cdrom boot's drive would not check).
    params::validate(&agent_settings(req))
        .map_err(|e| DomainError::Cmdline(super::LibvirtError::Cmdline(e)))?;
    let conn = connect(req.connect.as_deref())?;
    let uri = conn.uri().unwrap_or_default();
    let dom = lookup(&conn, &req.domain)?;
    let name = dom.name().map_err(lv("reading the name", &req.domain))?;
    let uuid = dom.uuid_string().map_err(lv("reading the UUID", &name))?;
    let persistent = dom.is_persistent().unwrap_or(true);
    let original = dom
        .xml_desc(if persistent {
            XML_INACTIVE_SECURE
        } else {
            XML_SECURE
        })
        .map_err(lv("reading the definition", &name))?;
    let facts = xml::facts(&original).map_err(|source| DomainError::Xml {
        domain: name.clone(),
        source,
    })?;
    let local = is_local(&uri);
    let kernel_boot = resolve(req.boot, &facts).map_err(|source| DomainError::Xml {
        domain: name.clone(),
        source,
    })? == BootPath::Kernel;
    // The disks our own QEMU opens for the verify boots (and, to roll back, stages).
    let mut drives = Vec::new();
    let mut skipped = Vec::new();
    if let Some(v) = &req.verify {
        if !local && v.rollback && req.mode == Mode::Repair {
            return Err(DomainError::VerifyUnsupported(
                "--rollback-on-regression is not available over a remote connection yet (the overlays that stage the repair would have to be on that host)",
            ));
        }
        if local {
            (drives, skipped) = guest_drives(&original).map_err(|e| DomainError::Xml {
                domain: name.clone(),
                source: xml::XmlError::Unsupported(e),
            })?;
        }
        if v.rollback && req.mode == Mode::Repair && !skipped.is_empty() {
            return Err(DomainError::NotStaged {
                domain: name.clone(),
                disks: skipped
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let stage = req
        .verify
        .as_ref()
        .is_some_and(|v| v.rollback && req.mode == Mode::Repair);
    let mut before = match verify_before(req, persistent, stage, sink)? {
        First::Before(b) => b,
        First::Done(done) => return Ok(done),
    };
    let dir = req.image.clone().unwrap_or_else(builder::default_dir);
    let image = Artefacts::open(&dir).ok_or_else(|| DomainError::NoImage(dir.clone()))?;
    let state_dir = super::state_dir(&uuid);
    // Local: libvirt logs the serial console into the state directory. Remote: vmrescue copies
    // it there through a console stream.
    let console_log = state_dir.join("console.log");
    // On the connection's host, in libvirt's own NVRAM directory.
    let nvram = PathBuf::from(format!(
        "/var/lib/libvirt/qemu/nvram/vmrescue-{uuid}_VARS.fd"
    ));
    let settings_iso = state_dir.join("settings.iso");
    let bootcopy_image = state_dir.join("bootcopy-scratch.img");
    // --rollback-on-regression: the repair writes to overlays of the disks.
    let staged_targets: Vec<(String, String)> = match stage {
        true => drives
            .iter()
            .enumerate()
            .map(|(i, (target, _))| {
                let overlay = crate::verify::staged_overlay(&state_dir, i);
                (target.clone(), overlay.display().to_string())
            })
            .collect(),
        false => Vec::new(),
    };
    let scratch_local = req
        .verify
        .as_ref()
        .map(|_| bootcopy_image.display().to_string());
    let rescue_xml = |boot: BootMethod,
                      settings: Option<&Path>,
                      scratch: Option<String>,
                      late: Option<String>| {
        xml::rescue_xml(
            &original,
            &xml::Rescue {
                boot,
                mode: req.mode,
                channel: DEFAULT_PORT_NAME.to_owned(),
                console_log: local.then(|| console_log.display().to_string()),
                nvram_copy: facts.uefi.then(|| nvram.display().to_string()),
                // A cdrom boot gets this rescue's settings from a drive.
                settings_iso: settings.map(|p| p.display().to_string()),
                // Remote: assume it is there (libvirt says so if not).
                guest_nvram_exists: !local
                    || facts.nvram.as_deref().is_none_or(|n| Path::new(n).exists()),
                scratch_disk: scratch,
                late_disk: late,
                staged: staged_targets.clone(),
            },
        )
        .map_err(|source| DomainError::Xml {
            domain: name.clone(),
            source,
        })
    };
    let kernel_method =
        |kernel: &Path, initrd: &Path, bootcopy: Option<&str>| -> Result<BootMethod, DomainError> {
            let cmdline = super::kernel_cmdline(&params::Settings {
                bootcopy: bootcopy.map(str::to_owned),
                // The boot-copy scratch disk is one more.
                disks: facts.disk_count.map(|n| n + u32::from(bootcopy.is_some())),
                ..agent_settings(req)
            })
            .map_err(DomainError::Cmdline)?;
            Ok(BootMethod::Kernel {
                kernel: kernel.display().to_string(),
                initrd: initrd.display().to_string(),
                cmdline,
            })
        };
    let cdrom_boot = |iso: &Path| BootMethod::Cdrom {
        iso: iso.display().to_string(),
    };
    let MediaFiles {
        iso_name,
        kernel: (kernel_file, kernel_name),
        initrd: (initrd_file, initrd_name),
        late,
        how,
    } = MediaFiles::choose(&image, local, facts.uefi, KernelAsked::from_env());
    if req.dry_run {
        let at = |n: &str| Path::new(LOCAL_MEDIA_DIR).join(n);
        let xml_text = if kernel_boot {
            rescue_xml(
                kernel_method(&at(&kernel_name), &at(&initrd_name), None)?,
                (!req.secrets.is_empty()).then_some(settings_iso.as_path()),
                scratch_local.clone(),
                late.as_ref().map(|(_, n)| at(n).display().to_string()),
            )?
        } else {
            rescue_xml(
                cdrom_boot(&at(&iso_name)),
                Some(&settings_iso),
                scratch_local.clone(),
                None,
            )?
        };
        return Ok(Done::DryRun(unified_diff(&original, &xml_text)?));
    }
    let active = dom.is_active().map_err(lv("reading the state", &name))?;
    if active && !req.stop && !req.force {
        return Err(DomainError::Running(name));
    }
    let state = lock_state(&name, &state_dir)?;
    // From here on the definition may change: a stopping signal ends the session instead, and
    // the domain gets its definition back.
    crate::session::interrupt::arm();
    write_synced(&state.dir.join("original.xml"), original.as_bytes())?;
    let _ = fs::remove_file(&console_log);
    // Where the media go: libvirt's image directory here, or a storage pool on a remote host.
    let media = Media {
        conn: &conn,
        uri: &uri,
        local,
        pool: &req.pool,
    };
    let mut settings_volume = None;
    let guest: Vec<crate::verify::GuestDrive> = drives.iter().map(|(_, d)| d.clone()).collect();
    let mut staged = match stage {
        true => Some(crate::verify::stage(&guest, &state.dir)?),
        false => None,
    };
    let bootcopy = match req.verify {
        Some(_) => Some(
            crate::host::undo::make_labelled(
                &bootcopy_image,
                paths::BOOTCOPY_LABEL,
                if local {
                    LOCAL_BOOTCOPY_SIZE
                } else {
                    REMOTE_BOOTCOPY_SIZE
                },
            )
            .map_err(crate::verify::VerifyError::from)?,
        ),
        None => None,
    };
    // Remote: the boot-copy disk goes to the pool (its data only) and comes back after.
    let bootcopy_volume = format!("vmrescue-bootcopy-{uuid}.img");
    let scratch_at = match (&bootcopy, local) {
        (Some(_), true) => scratch_local.clone(),
        (Some(_), false) => Some(
            media
                .upload(&bootcopy_image, &bootcopy_volume, false, true)?
                .display()
                .to_string(),
        ),
        (None, _) => None,
    };
    // The settings drive: always for a cdrom boot (it has no per-rescue command line), and
    // for a kernel boot when there are secrets to carry.
    let settings_at = if !kernel_boot || !req.secrets.is_empty() {
        let settings = params::Settings {
            bootcopy: bootcopy.as_ref().map(|b| b.uuid.clone()),
            ..agent_settings(req)
        };
        settings_drive(&state.dir, &settings_iso, &settings, &req.secrets)?;
        Some(if local {
            settings_iso.clone()
        } else {
            let v = format!("vmrescue-settings-{uuid}.iso");
            settings_volume = Some(v.clone());
            media.put(&settings_iso, &v, false)?
        })
    } else {
        None
    };
    let xml_text = if kernel_boot {
        rescue_xml(
            kernel_method(
                &media.put(&kernel_file, &kernel_name, true)?,
                &media.put(&initrd_file, &initrd_name, true)?,
                bootcopy.as_ref().map(|b| b.uuid.as_str()),
            )?,
            settings_at.as_deref(),
            scratch_at.clone(),
            match &late {
                Some((file, name)) => Some(media.put(file, name, true)?.display().to_string()),
                None => None,
            },
        )?
    } else {
        let iso = image
            .iso
            .clone()
            .ok_or_else(|| DomainError::NoIso(dir.clone()))?;
        let placed = media.put(&iso, &iso_name, true)?;
        rescue_xml(
            cdrom_boot(&placed),
            settings_at.as_deref(),
            scratch_at.clone(),
            None,
        )?
    };
    if active {
        if req.stop && !req.force {
            sink.event(Event::Note(&format!("shutting down {name}")));
            let _ = dom.shutdown();
            if !wait_inactive(&dom, SHUTDOWN_WAIT) {
                sink.event(Event::Note(&format!(
                    "{name} did not shut down in time; destroying it"
                )));
            }
        }
        if dom.is_active().unwrap_or(false) {
            dom.destroy().map_err(lv("destroying", &name))?;
            wait_inactive(&dom, Duration::from_secs(30));
        }
    }
    sink.event(Event::Note(&format!(
        "booting the rescue of {name} ({} mode, {}); state in {}",
        req.mode.as_str(),
        if kernel_boot {
            format!("direct kernel boot: {how}")
        } else {
            "cdrom".to_owned()
        },
        state.dir.display()
    )));
    let mut vm = LibvirtVm::new(
        conn.clone(),
        name.clone(),
        uuid.clone(),
        xml_text,
        console_log.clone(),
        DEFAULT_PORT_NAME.to_owned(),
    )
    .uefi(facts.uefi);
    if !local {
        vm = vm.capture_console();
    }
    let mut outcome = session::run(&mut vm, req.timeout, sink);
    drop(vm);
    // The state directory stays while it holds a staged repair not in the disks yet.
    let mut keep = false;
    if let (Ok(report), Some(v), Some(copy)) = (&mut outcome, &req.verify, &bootcopy) {
        for target in &skipped {
            report.warnings.push(host_warning(format!(
                "verify: disk {target} is not a local raw or qcow2 file or block device: the verify boot goes without it"
            )));
        }
        let proven = if local {
            let boot_on = match &staged {
                Some(st) => st.verify_drives(),
                None => guest.clone(),
            };
            let accel = crate::qemu::accel::choose(
                crate::qemu::accel::Choice::Auto,
                &crate::qemu::binary(),
                &state.dir,
            );
            flow::boot_after(
                report,
                copy,
                &state.dir,
                before_boot(before.take()),
                &mut |spec, _| {
                    crate::verify::boot(spec, &boot_on, &state.dir, "after", accel, v, sink)
                        .map_err(|e| e.to_string())
                },
            )
        } else {
            // The boot-copy disk back from the pool, over the one made here.
            let back = media.download(&bootcopy_volume, &bootcopy_image);
            media.remove(&bootcopy_volume);
            match back {
                Ok(()) => flow::boot_after(
                    report,
                    copy,
                    &state.dir,
                    before_boot(before.take()),
                    &mut |spec, r| boot_remote(spec, r, &original, &media, &state.dir, v, sink),
                ),
                Err(e) => {
                    report.warnings.push(host_warning(format!(
                        "verify: {e}; the guest's boot is not verified"
                    )));
                    None
                }
            }
        };
        // A commit that failed keeps the state directory: the overlays hold the repair.
        let rollback_in_check_mode = v.rollback && staged.is_none();
        keep = flow::settle(report, staged.take(), proven, rollback_in_check_mode, sink);
    }
    if let Some(st) = staged {
        // The rescue did not report: the disks were never written.
        st.discard();
    }
    if !local && bootcopy.is_some() {
        media.remove(&bootcopy_volume);
    }
    if let Some(v) = settings_volume {
        if let Ok(vol) = conn
            .lookup_storage_pool_by_name(&req.pool)
            .and_then(|p| p.lookup_storage_vol_by_name(&v))
        {
            let _ = vol.delete(0);
        }
    }
    let warnings = give_back(
        &conn, &uuid, &name, &original, persistent, active, req, &state.dir,
    );
    match outcome {
        Ok(mut report) => {
            report
                .warnings
                .extend(warnings.into_iter().map(host_warning));
            if !keep {
                let _ = fs::remove_dir_all(&state.dir);
            }
            Ok(Done::Report(Box::new(report)))
        }
        Err(e) => {
            // The run ended and the definition is as it was: only the console log stays, for
            // the operator (a crash, in contrast, leaves the saved definition for `unrescue`).
            if warnings.is_empty() {
                let _ = fs::remove_file(state.dir.join("original.xml"));
            }
            Err(DomainError::Session(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_remote_uris() {
        for u in [
            "qemu:///system",
            "qemu:///session",
            "qemu+unix:///system",
            "test:///default",
        ] {
            assert!(is_local(u), "{u}");
        }
        for u in [
            "qemu+tcp://127.0.0.1/system",
            "qemu+ssh://root@host/system",
            "qemu://host/system",
        ] {
            assert!(!is_local(u), "{u}");
        }
    }

    #[test]
    fn diff_shows_the_rescue_additions() {
        let d = unified_diff("<a>\n</a>\n", "<a>\n  <b/>\n</a>\n").unwrap();
        assert!(d.contains("+  <b/>") && d.contains("--- inactive"), "{d}");
    }
}
