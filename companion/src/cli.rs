//! Command-line interface. Command names, flags and exit statuses are contracts other tools
//! drive: add, never rename.
//!
//! Exit status: 0 clean or repaired; 1 unrepaired, no_os or failed; 2 usage or host-side
//! error; 3 the rescue did not report (the message names the console log).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use vmrescue_protocol::{Mode, Outcome};

use crate::accel::Choice;
use crate::qemu::Format;
use crate::rescue::{self, Request};

pub const EXIT_OK: i32 = 0;
pub const EXIT_PROBLEMS: i32 = 1;
pub const EXIT_HOST: i32 = 2;
pub const EXIT_NO_REPORT: i32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "vmrescue",
    version,
    about = "Bring broken KVM / libvirt / OpenStack VMs back to life"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Check,
    Repair,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Auto,
    Raw,
    Qcow2,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Check => Mode::Check,
            ModeArg::Repair => Mode::Repair,
        }
    }
}

impl FormatArg {
    /// The format the operator named; `None` for auto-detection.
    pub fn named(self) -> Option<Format> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Raw => Some(Format::Raw),
            FormatArg::Qcow2 => Some(Format::Qcow2),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Boot the rescue image under QEMU with the guest's disk image(s), check or repair them,
    /// and print the report.
    Rescue {
        /// A disk image of the guest (raw or qcow2); repeat for several disks, in bus order.
        #[arg(
            long = "disk",
            value_name = "IMG",
            required_unless_present = "domain",
            conflicts_with = "domain"
        )]
        disks: Vec<PathBuf>,
        /// Rescue this libvirt domain (name or UUID) instead: its definition is never changed.
        #[arg(long, value_name = "NAME")]
        domain: Option<String>,
        /// libvirt URI for --domain (default: $LIBVIRT_DEFAULT_URI, else libvirt's default).
        #[arg(long, value_name = "URI", requires = "domain")]
        connect: Option<String>,
        /// How a --domain rescue boots: the ISO as a cdrom first in the boot order, or the
        /// rescue kernel directly.
        #[arg(long, value_enum, default_value = "cdrom", requires = "domain")]
        boot: BootArg,
        /// A running --domain: shut it down gracefully first (destroyed after a timeout).
        #[arg(long, requires = "domain", conflicts_with = "force")]
        stop: bool,
        /// A running --domain: destroy it at once.
        #[arg(long, requires = "domain")]
        force: bool,
        /// Start the --domain normally after the rescue.
        #[arg(long, requires = "domain")]
        start_after: bool,
        /// Print the diff from the domain's inactive XML to the rescue XML; change nothing.
        #[arg(long, requires = "domain")]
        dry_run: bool,
        /// For a remote --connect: the storage pool the rescue media are uploaded to.
        #[arg(
            long,
            value_name = "NAME",
            default_value = "default",
            requires = "domain"
        )]
        pool: String,
        /// check: look and write nothing (disks attached read-only); repair: fix.
        #[arg(long, value_enum, default_value = "check")]
        mode: ModeArg,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Memory of the rescue VM in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(128..=65536))]
        memory: u32,
        /// Give up when the rescue has not reported after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86400))]
        timeout: u64,
        /// Rescue image directory written by `vmrescue image build` (default: $VMRESCUE_IMAGE_DIR,
        /// $XDG_CACHE_HOME/vmrescue/image or ~/.cache/vmrescue/image); built when missing.
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        /// Agent binary to pack if the image must be built.
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
        /// QEMU accelerator (default: $VMRESCUE_ACCEL, else auto: KVM when it works, else TCG).
        #[arg(long, value_enum)]
        accel: Option<Choice>,
        /// Disk image format for every --disk (default: detected, qcow2 by its magic, else raw;
        /// a detected qcow2 that names a backing or data file is refused: name the format to
        /// follow it).
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
        /// Keep the run directory (console log, QEMU log) even after a successful rescue.
        #[arg(long)]
        keep_run_dir: bool,
        /// The OS root when discovery finds several: a device as the rescue VM names it
        /// (`/dev/vdb1`) or a filesystem UUID.
        #[arg(long, value_name = "DEVICE|UUID")]
        root: Option<String>,
        /// Host name written into a rebuilt /etc/hostname and /etc/hosts (default: localhost).
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
        /// Do not add errors=remount-ro to an ext root's fstab entry that has no errors= option.
        #[arg(long)]
        keep_root_error_behaviour: bool,
        /// DESTRUCTIVE: when an xfs log cannot be replayed by mounting, let xfs_repair -L zero
        /// it, losing the transactions it holds.
        #[arg(long)]
        xfs_zero_log: bool,
        /// A reference /etc directory: its files replace missing guest /etc files (before the
        /// guest's own backups or rebuilt minimal files).
        #[arg(long, value_name = "DIR")]
        reference_etc: Option<PathBuf>,
        /// Keep e2fsck undo files (repair mode) in a new subdirectory of DIR: a scratch disk
        /// is attached for them. `e2undo FILE DISK`, newest first, reverts e2fsck's changes.
        #[arg(long, value_name = "DIR")]
        undo_dir: Option<PathBuf>,
    },
    /// Discover disks, partitions, filesystems, the OS root and its fstab on image files,
    /// without booting anything. Disks are named vda, vdb... in the order given.
    Inspect {
        /// Disk images (raw or qcow2).
        #[arg(value_name = "IMG", required = true)]
        images: Vec<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The OS root when there are several (device or filesystem UUID).
        #[arg(long, value_name = "DEVICE|UUID")]
        root: Option<String>,
        /// Image format of every IMG (default: detected; a detected qcow2 that names a backing
        /// or data file is refused: name the format to follow it).
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
    },
    /// Recover instance files that were deleted while their VMs still run, copying them
    /// through the qemu processes' open file descriptors (sparse-aware, verified).
    Salvage {
        /// Where the files were deleted from.
        #[arg(long, value_name = "DIR", default_value = crate::salvage::DEFAULT_INSTANCES_DIR)]
        instances_dir: PathBuf,
        /// Copy into this directory, mirroring the instances layout.
        #[arg(long, value_name = "DIR", conflicts_with = "restore")]
        dest: Option<PathBuf>,
        /// Pause the owning libvirt domains while copying.
        #[arg(long)]
        suspend: bool,
        /// Resume the paused domains afterwards (without it they stay paused, ready for a hard
        /// reboot onto the restored files).
        #[arg(long, requires = "suspend")]
        resume: bool,
        /// libvirt URI for --suspend (default: $LIBVIRT_DEFAULT_URI, else libvirt's default).
        #[arg(long, value_name = "URI", requires = "suspend")]
        connect: Option<String>,
        /// Copy back to the original paths.
        #[arg(long)]
        restore: bool,
        /// Show what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Owner and mode for a kind of file: ROLE=USER:GROUP:MODE with ROLE one of base-image,
        /// disk, console-log, other-file, directory (default: nova's layout). Repeatable.
        #[arg(long, value_name = "ROLE=USER:GROUP:MODE")]
        owner: Vec<String>,
    },
    /// Change the owner of files from one uid/gid to another (compute hosts whose nova or
    /// libvirt-qemu ids differ), without following symlinks or crossing filesystems.
    FixOwners {
        #[arg(long, value_name = "N")]
        from_uid: Option<u32>,
        #[arg(long, value_name = "M")]
        to_uid: Option<u32>,
        #[arg(long, value_name = "N")]
        from_gid: Option<u32>,
        #[arg(long, value_name = "M")]
        to_gid: Option<u32>,
        /// Tree to walk.
        #[arg(long, value_name = "DIR", default_value = crate::salvage::DEFAULT_INSTANCES_DIR)]
        path: PathBuf,
        /// Count what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Clean up after a `rescue --domain` that crashed or was killed: end a leftover rescue
    /// run of the domain and remove its state (the definition was never changed).
    Unrescue {
        #[arg(long, value_name = "NAME")]
        domain: String,
        #[arg(long, value_name = "URI")]
        connect: Option<String>,
    },
    /// Take a rescue's report back from a console log (an ISO or nova rescue has no channel):
    /// `openstack console log show SERVER | vmrescue report --console-log -`.
    Report {
        /// The console log (`-`: standard input). Only its end is read.
        #[arg(long = "console-log", value_name = "FILE")]
        console_log: PathBuf,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// libvirt domain XML.
    Xml {
        #[command(subcommand)]
        command: XmlCmd,
    },
    /// Rescue image artefacts.
    Image {
        #[command(subcommand)]
        command: ImageCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Build the kernel + initramfs rescue image from the host's kernel.
    Build {
        /// Kernel image (default: the newest /boot/vmlinuz-*).
        #[arg(long, value_name = "PATH")]
        kernel: Option<PathBuf>,
        /// Output directory (default: the rescue command's default image directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The static agent binary to pack as /init.
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
        /// Bake a reference /etc into the image: its files replace missing guest /etc files
        /// in every rescue made with it (a rescue's own --reference-etc takes precedence).
        #[arg(long, value_name = "DIR")]
        reference_etc: Option<PathBuf>,
        /// The boot media's default mode (ISO and disk image boots get no per-rescue command
        /// line; their boot menu also offers the others).
        #[arg(long, value_enum, default_value = "check")]
        mode: ModeArg,
        /// What the media's rescue does once it has reported.
        #[arg(long, value_enum, default_value = "poweroff")]
        after: AfterArg,
        /// Host name for a rebuilt /etc/hostname (baked into the media's command line).
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
        /// Do not add errors=remount-ro to an ext root's fstab entry.
        #[arg(long)]
        keep_root_error_behaviour: bool,
        /// Longest one checker pass may run on the media's rescues.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
        fsck_timeout: Option<u64>,
        /// Build only the kernel and initramfs (no vmrescue.iso or vmrescue-disk.qcow2).
        #[arg(long)]
        no_media: bool,
    },
    /// Print the `openstack` commands that upload the media for `openstack server rescue`.
    Nova {
        /// Image directory (default: as for `rescue`).
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        /// Print the commands as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum XmlCmd {
    /// Print the rescue XML `rescue --domain` would boot, for a domain XML file (`-`: stdin).
    Rescue {
        /// The domain's XML (as `virsh dumpxml --inactive` prints it).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// cdrom: the rescue ISO first in the boot order; kernel: direct kernel boot.
        #[arg(long, value_enum, default_value = "cdrom")]
        boot: BootArg,
        /// The rescue ISO (default: vmrescue.iso in the image directory).
        #[arg(long, value_name = "PATH")]
        iso: Option<PathBuf>,
        /// check: the guest's disks read-only too; repair: writable.
        #[arg(long, value_enum, default_value = "check")]
        mode: ModeArg,
        /// Image directory (default: as for `rescue`).
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BootArg {
    Cdrom,
    Kernel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AfterArg {
    Poweroff,
    Reboot,
    Shell,
}

/// The exit status for a report's outcome.
pub fn exit_code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Clean | Outcome::Repaired => EXIT_OK,
        Outcome::Unrepaired | Outcome::NoOs | Outcome::Failed => EXIT_PROBLEMS,
    }
}

/// Sets one role of an owner map from `ROLE=USER:GROUP:MODE`.
fn set_owner(map: &mut crate::salvage::OwnerMap, arg: &str) -> Result<(), String> {
    let (role, spec) = arg.split_once('=').ok_or("expected ROLE=USER:GROUP:MODE")?;
    let spec = crate::salvage::OwnerSpec::parse(spec).map_err(|e| e.to_string())?;
    match role {
        "base-image" => map.base_image = spec,
        "disk" => map.disk = spec,
        "console-log" => map.console_log = spec,
        "other-file" => map.other_file = spec,
        "directory" => map.directory = spec,
        _ => {
            return Err(format!(
                "unknown role {role:?} (base-image, disk, console-log, other-file, directory)"
            ))
        }
    }
    Ok(())
}

/// 0 when all is well, 1 when something is left to do.
fn status(ok: bool) -> i32 {
    if ok {
        EXIT_OK
    } else {
        EXIT_PROBLEMS
    }
}

/// Prints a command's report (JSON or rendered text) and returns its exit status; an error is
/// printed and gives 2 (the command could not run).
fn finish<T: serde::Serialize, E: std::fmt::Display>(
    json: bool,
    result: Result<T, E>,
    render_and_code: impl FnOnce(&T) -> (String, i32),
) -> i32 {
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmrescue: {e}");
            return EXIT_HOST;
        }
    };
    let (text, code) = render_and_code(&report);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("vmrescue: cannot print the report: {e}");
                return EXIT_HOST;
            }
        }
    } else {
        print!("{text}");
    }
    code
}

/// `vmrescue report --console-log`: the exit status of the rescue it reports on, 3 when the log
/// holds no valid report, 2 when it cannot be read.
fn report_from_log(path: &std::path::Path, json: bool) -> i32 {
    use crate::consolelog::{self, ConsoleLogError, FromLog};
    match consolelog::read(path) {
        Ok(FromLog::Report(r)) => finish(json, Ok::<_, String>(*r), |r| {
            (crate::render::report(r), exit_code(r.outcome))
        }),
        Ok(FromLog::Summary(s)) => {
            eprintln!("vmrescue: {}", consolelog::PARTIAL_NOTE);
            let partial = consolelog::PartialReport {
                partial: true,
                note: consolelog::PARTIAL_NOTE,
                summary: &s,
            };
            finish(json, Ok::<_, String>(partial), |p| {
                (
                    crate::render::summary(p.summary, p.note),
                    exit_code(p.summary.outcome),
                )
            })
        }
        Err(e @ ConsoleLogError::NoReport { .. }) => {
            eprintln!("vmrescue: {e}");
            EXIT_NO_REPORT
        }
        Err(e) => {
            eprintln!("vmrescue: {e}");
            EXIT_HOST
        }
    }
}

/// `vmrescue inspect`: 0 when an OS root was identified, 1 when none, 2 on errors.
fn inspect(images: &[PathBuf], json: bool, root: Option<&str>, format: Option<Format>) -> i32 {
    let result = crate::inspect::inspect(images, root, format).map_err(|e| format!("{e:#}"));
    finish(json, result, |found| {
        let mut s = crate::render::discovery(
            &found.disks,
            &found.partitions,
            &found.filesystems,
            Some(&found.os),
            found.fstab.as_ref(),
        );
        crate::render::warnings(&mut s, &found.warnings);
        (s, status(found.os.root_device.is_some()))
    })
}

/// Runs a parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Cmd::Inspect {
            images,
            json,
            root,
            format,
        } => inspect(&images, json, root.as_deref(), format.named()),
        Cmd::Salvage {
            instances_dir,
            dest,
            suspend,
            resume,
            connect,
            restore,
            dry_run,
            json,
            owner,
        } => {
            let mut owners = crate::salvage::OwnerMap::default();
            for o in &owner {
                if let Err(e) = set_owner(&mut owners, o) {
                    eprintln!("vmrescue: --owner {o}: {e}");
                    return EXIT_HOST;
                }
            }
            let opts = crate::salvage::Options {
                instances_dir,
                dest,
                suspend,
                resume,
                connect,
                restore,
                dry_run,
                owners,
                ..Default::default()
            };
            let result = crate::salvage::run(&opts);
            finish(json, result, |r| (r.render(), status(r.ok())))
        }
        Cmd::FixOwners {
            from_uid,
            to_uid,
            from_gid,
            to_gid,
            path,
            dry_run,
            json,
        } => {
            let opts = crate::fix_owners::FixOwnersOptions {
                path,
                from_uid,
                to_uid,
                from_gid,
                to_gid,
                dry_run,
            };
            let result = crate::fix_owners::run(&opts);
            finish(json, result, |r| (r.render(), status(r.ok())))
        }
        Cmd::Rescue {
            domain: Some(domain),
            connect,
            boot,
            stop,
            force,
            start_after,
            dry_run,
            pool,
            mode,
            json,
            timeout,
            image,
            ..
        } => {
            let req = crate::libvirt::domain::DomainRequest {
                domain,
                connect,
                kernel_boot: boot == BootArg::Kernel,
                mode: mode.into(),
                stop,
                force,
                start_after,
                timeout: Duration::from_secs(timeout),
                dry_run,
                image,
                pool,
            };
            use crate::libvirt::domain::Done;
            match crate::libvirt::domain::rescue(&req, &mut crate::progress::Stderr::default()) {
                Ok(Done::DryRun(diff)) => {
                    print!("{diff}");
                    EXIT_OK
                }
                Ok(Done::Report(r)) => finish(json, Ok::<_, String>(*r), |r| {
                    (crate::render::report(r), exit_code(r.outcome))
                }),
                Err(e) if e.is_no_report() => {
                    eprintln!("vmrescue: {e}");
                    EXIT_NO_REPORT
                }
                Err(e) => {
                    eprintln!("vmrescue: {e}");
                    EXIT_HOST
                }
            }
        }
        Cmd::Unrescue { domain, connect } => {
            match crate::libvirt::domain::unrescue(&domain, connect.as_deref()) {
                Ok(done) => {
                    for d in done {
                        println!("{d}");
                    }
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("vmrescue: {e}");
                    EXIT_HOST
                }
            }
        }
        Cmd::Rescue {
            disks,
            mode,
            json,
            memory,
            timeout,
            image,
            agent,
            accel,
            format,
            keep_run_dir,
            root,
            hostname,
            keep_root_error_behaviour,
            xfs_zero_log,
            reference_etc,
            undo_dir,
            ..
        } => {
            let accel = match rescue::accel_choice(accel) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("vmrescue: {e:#}");
                    return EXIT_HOST;
                }
            };
            let req = Request {
                disks,
                mode: mode.into(),
                memory_mib: memory,
                timeout: Duration::from_secs(timeout),
                image,
                agent,
                accel,
                format: format.named(),
                keep_run_dir,
                root,
                policy: rescue::Policy {
                    hostname,
                    keep_root_error_behaviour,
                    xfs_zero_log,
                    reference_etc,
                },
                undo_dir,
            };
            match rescue::run(&req, &mut crate::progress::Stderr::default()) {
                Err(e) if e.is_no_report() => {
                    eprintln!("vmrescue: {e}");
                    EXIT_NO_REPORT
                }
                other => finish(json, other, |r| {
                    (crate::render::report(r), exit_code(r.outcome))
                }),
            }
        }
        Cmd::Report { console_log, json } => report_from_log(&console_log, json),
        Cmd::Xml {
            command:
                XmlCmd::Rescue {
                    file,
                    boot,
                    iso,
                    mode,
                    image,
                },
        } => match crate::libvirt::rescue_xml_for_file(
            &file,
            boot == BootArg::Kernel,
            iso,
            mode.into(),
            image,
        ) {
            Ok(xml) => {
                print!("{xml}");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("vmrescue: {e}");
                EXIT_HOST
            }
        },
        Cmd::Image {
            command:
                ImageCmd::Build {
                    kernel,
                    out,
                    agent,
                    reference_etc,
                    mode,
                    after,
                    hostname,
                    keep_root_error_behaviour,
                    fsck_timeout,
                    no_media,
                },
        } => {
            let defaults = vmrescue_protocol::params::Settings::default();
            let baked = vmrescue_protocol::params::Settings {
                mode: mode.into(),
                after: match after {
                    AfterArg::Poweroff => vmrescue_protocol::params::After::PowerOff,
                    AfterArg::Reboot => vmrescue_protocol::params::After::Reboot,
                    AfterArg::Shell => vmrescue_protocol::params::After::Shell,
                },
                hostname,
                errors_remount_ro: !keep_root_error_behaviour,
                fsck_timeout_secs: fsck_timeout.unwrap_or(defaults.fsck_timeout_secs),
                ..defaults
            };
            image_build(&crate::image::BuildRequest {
                kernel,
                out,
                agent,
                reference_etc,
                media: (!no_media).then_some(baked),
            })
        }
        Cmd::Image {
            command: ImageCmd::Nova { image, json },
        } => crate::nova::print(image, json),
    }
}

fn image_build(req: &crate::image::BuildRequest) -> i32 {
    match crate::image::build(req) {
        Ok(a) => {
            println!(
                "rescue image for kernel {} in {}",
                a.manifest.kernel_version,
                a.dir.display()
            );
            println!("  kernel     {}", a.kernel.display());
            println!(
                "  initramfs  {} (sha256 {})",
                a.initramfs.display(),
                a.manifest.initramfs_sha256
            );
            println!("  modules    {}", a.manifest.modules.len());
            if let (Some(iso), Some(disk), Some(m)) = (&a.iso, &a.disk_image, &a.manifest.media) {
                println!("  iso        {} (sha256 {})", iso.display(), m.iso_sha256);
                println!("  disk image {} (sha256 {})", disk.display(), m.disk_sha256);
                println!("  default    {}", m.default_cmdline);
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("vmrescue: {e:#}");
            EXIT_HOST
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(exit_code(Outcome::Clean), 0);
        assert_eq!(exit_code(Outcome::Repaired), 0);
        assert_eq!(exit_code(Outcome::Unrepaired), 1);
        assert_eq!(exit_code(Outcome::NoOs), 1);
        assert_eq!(exit_code(Outcome::Failed), 1);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn salvage_and_fix_owners_flags_parse() {
        let cli = Cli::try_parse_from([
            "vmrescue",
            "salvage",
            "--dest",
            "/x",
            "--suspend",
            "--resume",
            "--dry-run",
            "--json",
            "--owner",
            "disk=0:0:0600",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Salvage {
                suspend: true,
                resume: true,
                dry_run: true,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["vmrescue", "salvage", "--dest", "/x", "--restore"]).is_err());
        assert!(
            Cli::try_parse_from(["vmrescue", "salvage", "--resume"]).is_err(),
            "--resume needs --suspend"
        );
        let cli = Cli::try_parse_from([
            "vmrescue",
            "fix-owners",
            "--from-uid",
            "5",
            "--to-uid",
            "6",
            "--dry-run",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Cmd::FixOwners {
                from_uid: Some(5),
                to_uid: Some(6),
                dry_run: true,
                ..
            }
        ));
        let mut map = crate::salvage::OwnerMap::default();
        set_owner(&mut map, "console-log=nova:nova:0660").unwrap();
        assert!(set_owner(&mut map, "kernel=a:b:0644").is_err());
        assert!(set_owner(&mut map, "disk").is_err());
    }

    #[test]
    fn rescue_flags_parse() {
        let cli = Cli::try_parse_from([
            "vmrescue",
            "rescue",
            "--disk",
            "a.img",
            "--disk",
            "b.qcow2",
            "--mode",
            "repair",
            "--json",
            "--memory",
            "512",
            "--timeout",
            "60",
            "--image",
            "/x",
            "--accel",
            "tcg",
        ])
        .unwrap();
        match cli.command {
            Cmd::Rescue {
                disks,
                mode,
                json,
                memory,
                timeout,
                ..
            } => {
                assert_eq!(disks.len(), 2);
                assert!(matches!(mode, ModeArg::Repair));
                assert!(json);
                assert_eq!((memory, timeout), (512, 60));
            }
            _ => panic!("wrong command"),
        }
        assert!(
            Cli::try_parse_from(["vmrescue", "rescue"]).is_err(),
            "--disk is required"
        );
        assert!(
            Cli::try_parse_from(["vmrescue", "rescue", "--disk", "a", "--mode", "fix"]).is_err()
        );
    }
}
