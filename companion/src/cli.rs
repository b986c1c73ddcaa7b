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
use crate::rescue::{self, Failure, Request};

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

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Boot the rescue image under QEMU with the guest's disk image(s), check or repair them,
    /// and print the report.
    Rescue {
        /// A disk image of the guest (raw or qcow2); repeat for several disks, in bus order.
        #[arg(long = "disk", value_name = "IMG", required = true)]
        disks: Vec<PathBuf>,
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
        /// Disk image format for every --disk (default: detected; qcow2 by its magic, else raw).
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
        /// Keep the run directory (console log, QEMU log) even after a successful rescue.
        #[arg(long)]
        keep_run_dir: bool,
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
    },
}

/// The exit status for a report's outcome.
pub fn exit_code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Clean | Outcome::Repaired => EXIT_OK,
        Outcome::Unrepaired | Outcome::NoOs | Outcome::Failed => EXIT_PROBLEMS,
    }
}

/// Runs a parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
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
                mode: match mode {
                    ModeArg::Check => Mode::Check,
                    ModeArg::Repair => Mode::Repair,
                },
                memory_mib: memory,
                timeout: Duration::from_secs(timeout),
                image,
                agent,
                accel,
                format: match format {
                    FormatArg::Auto => None,
                    FormatArg::Raw => Some(Format::Raw),
                    FormatArg::Qcow2 => Some(Format::Qcow2),
                },
                show_progress: true,
                keep_run_dir,
            };
            match rescue::run(&req) {
                Ok(report) => {
                    if json {
                        match serde_json::to_string_pretty(&report) {
                            Ok(text) => println!("{text}"),
                            Err(e) => {
                                eprintln!("vmrescue: cannot print the report: {e}");
                                return EXIT_HOST;
                            }
                        }
                    } else {
                        print!("{}", crate::render::report(&report));
                    }
                    exit_code(report.outcome)
                }
                Err(e @ Failure::Host(_)) => {
                    eprintln!("vmrescue: {e}");
                    EXIT_HOST
                }
                Err(e @ Failure::NoReport { .. }) => {
                    eprintln!("vmrescue: {e}");
                    EXIT_NO_REPORT
                }
            }
        }
        Cmd::Image {
            command: ImageCmd::Build { kernel, out, agent },
        } => match crate::image::build(kernel, out, agent.as_deref()) {
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
                EXIT_OK
            }
            Err(e) => {
                eprintln!("vmrescue: {e:#}");
                EXIT_HOST
            }
        },
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
