//! `vmrescue image`: build the rescue image, print nova's upload commands, make a settings
//! drive for the media.

use std::path::Path;

use super::{out, secrets, AfterArg, ImageCmd, ModeArg, SecretArgs, EXIT_HOST, EXIT_OK};

pub(super) fn run(command: ImageCmd) -> i32 {
    match command {
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
            rescue_kernel,
            no_rescue_kernel,
            kernel_source,
            host_kernel_files,
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
            build(&crate::boot::image::BuildRequest {
                kernel,
                out,
                agent,
                reference_etc,
                media: (!no_media).then_some(baked),
                rescue_kernel: match (rescue_kernel, no_rescue_kernel) {
                    (true, _) => crate::boot::image::RescueKernel::Yes,
                    (_, true) => crate::boot::image::RescueKernel::No,
                    _ => crate::boot::image::RescueKernel::Auto,
                },
                kernel_source,
                host_kernel_files,
            })
        }
        ImageCmd::Nova { image, json } => crate::cli::nova::print(image, json),
        ImageCmd::SettingsDrive {
            out,
            mode,
            hostname,
            secrets: secret_args,
        } => settings_drive(&out, mode, hostname, &secret_args),
    }
}

/// `image settings-drive`: the ISO a media rescue reads its mode and secrets from.
fn settings_drive(out: &Path, mode: ModeArg, hostname: Option<String>, a: &SecretArgs) -> i32 {
    let Some(secrets) = secrets(a) else {
        return EXIT_HOST;
    };
    if let Some(h) = hostname
        .as_deref()
        .filter(|h| !vmrescue_protocol::params::valid_hostname(h))
    {
        eprintln!("vmrescue: --hostname {h:?} is not a host name");
        return EXIT_HOST;
    }
    let settings = vmrescue_protocol::params::Settings {
        mode: mode.into(),
        hostname,
        ..Default::default()
    };
    match crate::boot::drive::for_media(out, &settings, &secrets) {
        Ok(()) => {
            out::print(&format!(
                "settings drive {} ({} mode{}): attach it as a second cdrom beside vmrescue.iso\n",
                out.display(),
                settings.mode.as_str(),
                if secrets.is_empty() {
                    ""
                } else {
                    "; it holds secrets: readable by its owner only, remove it after the rescue"
                }
            ));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("vmrescue: {e}");
            EXIT_HOST
        }
    }
}

fn build(req: &crate::boot::image::BuildRequest) -> i32 {
    match crate::boot::image::build(req, &mut |n| eprintln!("vmrescue: {n}")) {
        Ok(a) => {
            let mut lines = Vec::new();
            lines.push(format!(
                "rescue image for kernel {} in {}",
                a.manifest.kernel_version,
                a.dir.display()
            ));
            lines.push(format!("  kernel     {}", a.kernel.display()));
            lines.push(format!(
                "  initramfs  {} (sha256 {})",
                a.initramfs.display(),
                a.manifest.initramfs_sha256
            ));
            lines.push(format!("  modules    {}", a.manifest.modules.len()));
            if let (Some(k), Some(m)) = (&a.rescue_vmlinux, &a.manifest.rescue_kernel) {
                lines.push(format!(
                    "  rescue kernel {} ({}, from {})",
                    k.display(),
                    m.release,
                    m.source
                ));
            }
            if let (Some(iso), Some(disk), Some(m)) = (&a.iso, &a.disk_image, &a.manifest.media) {
                lines.push(format!(
                    "  iso        {} (sha256 {})",
                    iso.display(),
                    m.iso_sha256
                ));
                lines.push(format!(
                    "  disk image {} (sha256 {})",
                    disk.display(),
                    m.disk_sha256
                ));
                lines.push(format!("  default    {}", m.default_cmdline));
            }
            lines.push(String::new());
            out::print(&lines.join("\n"));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("vmrescue: {e:#}");
            EXIT_HOST
        }
    }
}
