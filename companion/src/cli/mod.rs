//! Command-line interface. Command names, flags and exit statuses are contracts other tools
//! drive: add, never rename.
//!
//! Exit status: 0 clean or repaired; 1 unrepaired, no_os or failed; 2 usage or host-side
//! error; 3 the rescue did not report (the message names the console log).

mod args;
mod image;
pub mod nova;
pub mod out;

pub use args::*;

use std::path::PathBuf;
use std::time::Duration;

use vmrescue_protocol::Outcome;

use crate::libvirt::boot_media::BootChoice;
use crate::qemu::Format;
use crate::rescue::{self, Request};

pub const EXIT_OK: i32 = 0;
pub const EXIT_PROBLEMS: i32 = 1;
pub const EXIT_HOST: i32 = 2;
pub const EXIT_NO_REPORT: i32 = 3;

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
            Ok(j) => out::println(&j),
            Err(e) => {
                eprintln!("vmrescue: cannot print the report: {e}");
                return EXIT_HOST;
            }
        }
    } else {
        out::print(&text);
    }
    code
}

/// `vmrescue report --console-log`: the exit status of the rescue it reports on, 3 when the log
/// holds no valid report, 2 when it cannot be read.
fn report_from_log(path: &std::path::Path, json: bool) -> i32 {
    use crate::session::consolelog::{self, ConsoleLogError, FromLog};
    match consolelog::read(path) {
        Ok(FromLog::Report(r)) => finish(json, Ok::<_, String>(crate::session::held(*r)), |r| {
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
        crate::render::layers(&mut s, &found.layers);
        crate::render::warnings(&mut s, &found.warnings);
        (s, status(found.os.root_device.is_some()))
    })
}

/// `vmrescue salvage`: the flags become the run's options (an `--owner` that does not parse
/// stops it before anything is touched).
fn salvage(args: SalvageArgs) -> i32 {
    let mut owners = crate::salvage::OwnerMap::default();
    for o in &args.owner {
        if let Err(e) = set_owner(&mut owners, o) {
            eprintln!("vmrescue: --owner {o}: {e}");
            return EXIT_HOST;
        }
    }
    let opts = crate::salvage::Options {
        instances_dir: args.instances_dir,
        dest: args.dest,
        suspend: args.suspend,
        resume: args.resume,
        connect: args.connect,
        restore: args.restore,
        dry_run: args.dry_run,
        owners,
        ..Default::default()
    };
    let result = crate::salvage::run(&opts);
    finish(args.json, result, |r| (r.render(), status(r.ok())))
}

/// Reads every `--luks-key UUID=FILE` and the access flags; `None` (after saying why) when one
/// cannot be read or is not valid.
fn secrets(a: &SecretArgs) -> Option<vmrescue_protocol::secrets::Secrets> {
    use crate::boot::drive;
    let read = || -> Result<_, drive::DriveError> {
        Ok(vmrescue_protocol::secrets::Secrets {
            luks: a
                .luks_key
                .iter()
                .map(|k| drive::luks_key(k))
                .collect::<Result<_, _>>()?,
            access: drive::access(
                a.root_password_hash.as_deref(),
                &a.ssh_key,
                &a.user,
                &a.unlock_user,
            )?,
        })
    };
    read().map_err(|e| eprintln!("vmrescue: {e}")).ok()
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
        Cmd::Salvage(args) => salvage(args),
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
            memory,
            boots,
            secrets: secret_args,
            root,
            hostname,
            keep_root_error_behaviour,
            xfs_zero_log,
            btrfs_repair,
            thin_repair,
            ..
        } => {
            let Some(secrets) = secrets(&secret_args) else {
                return EXIT_HOST;
            };
            let req = crate::libvirt::domain::DomainRequest {
                secrets,
                root,
                policy: rescue::Policy {
                    hostname,
                    keep_root_error_behaviour,
                    xfs_zero_log,
                    btrfs_repair,
                    thin_repair,
                    reference_etc: None,
                },
                verify: boots.request(memory),
                domain,
                connect,
                boot: match boot {
                    None => BootChoice::Auto,
                    Some(BootArg::Kernel) => BootChoice::Kernel,
                    Some(BootArg::Cdrom) => BootChoice::Cdrom,
                },
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
            match crate::libvirt::domain::rescue(
                &req,
                &mut crate::session::progress::Stderr::default(),
            ) {
                Ok(Done::DryRun(diff)) => {
                    out::print(&diff);
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
                        out::println(&d);
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
            btrfs_repair,
            thin_repair,
            reference_etc,
            undo_dir,
            boots,
            secrets: secret_args,
            ..
        } => {
            let Some(secrets) = secrets(&secret_args) else {
                return EXIT_HOST;
            };
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
                    btrfs_repair,
                    thin_repair,
                    reference_etc,
                },
                undo_dir,
                verify: boots.request(memory),
                secrets,
            };
            match rescue::run(&req, &mut crate::session::progress::Stderr::default()) {
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
        Cmd::Watch {
            connect,
            domain,
            json,
            for_secs,
            exec,
        } => {
            let opts = crate::watch::Options {
                connect,
                domains: domain,
                json,
                for_secs,
                exec,
            };
            match crate::watch::run(&opts, &mut std::io::stdout()) {
                Ok(n) => status(n == 0),
                // The reader of the incidents went away: the watch ends quietly.
                Err(crate::watch::WatchError::Output(e)) if out::reader_gone(&e) => EXIT_OK,
                Err(e) => {
                    eprintln!("vmrescue watch: {e}");
                    EXIT_HOST
                }
            }
        }
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
                out::print(&xml);
                EXIT_OK
            }
            Err(e) => {
                eprintln!("vmrescue: {e}");
                EXIT_HOST
            }
        },
        Cmd::Image { command } => image::run(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
            Cmd::Salvage(SalvageArgs {
                suspend: true,
                resume: true,
                dry_run: true,
                ..
            })
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
                memory,
                timeout,
                disks,
                mode,
                json,
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
        let cli = Cli::try_parse_from([
            "vmrescue",
            "rescue",
            "--domain",
            "g",
            "--luks-key",
            "a=/k1",
            "--luks-key",
            "b=/k2",
        ])
        .unwrap();
        let Cmd::Rescue { secrets: args, .. } = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(args.luks_key, ["a=/k1", "b=/k2"]);
        assert_eq!(args.user, "root");
        // An unreadable key stops the command before anything runs, naming the file only.
        assert!(secrets(&args).is_none());
        let none = SecretArgs {
            luks_key: vec![],
            ..args
        };
        assert!(secrets(&none).is_some_and(|s| s.is_empty()));
        // What a --domain rescue cannot honour is refused, never ignored.
        for flag in [
            &["--reference-etc", "/etc"][..],
            &["--undo-dir", "/tmp"],
            &["--keep-run-dir"],
            &["--accel", "tcg"],
            &["--agent", "/a"],
            &["--format", "raw"],
        ] {
            let args = [&["vmrescue", "rescue", "--domain", "g"][..], flag].concat();
            assert!(Cli::try_parse_from(args).is_err(), "{flag:?}");
        }
        let cli = Cli::try_parse_from([
            "vmrescue",
            "rescue",
            "--domain",
            "g",
            "--root",
            "/dev/vda",
            "--hostname",
            "web-1",
        ]);
        assert!(cli.is_ok(), "--root and --hostname apply to --domain");
        // --user goes with --ssh-key.
        assert!(
            Cli::try_parse_from(["vmrescue", "rescue", "--disk", "a", "--user", "alice"]).is_err()
        );
    }
}
