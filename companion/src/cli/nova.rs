//! `vmrescue image nova`: the `openstack` commands that upload the rescue media and use them
//! with `openstack server rescue --image`, with the image properties nova needs.
//!
//! nova picks the rescue mode from the image: with `hw_rescue_device` or `hw_rescue_bus` it
//! uses stable-device rescue (the guest's disks keep their addresses, the rescue medium is
//! added last with boot order 1, the domain keeps the guest's own firmware and machine type);
//! without them legacy rescue (the medium is the first disk, `vda`, the guest's root `vdb`, and
//! the rescue image's `hw_firmware_type` / `hw_machine_type` apply). Both media boot under BIOS
//! and UEFI, so one image serves both modes. Volume-backed servers need compute API
//! microversion 2.87 and both rescue properties.

use std::path::PathBuf;

use serde::Serialize;
use vmrescue_image_builder::{self as builder, Artefacts};

/// One command line, as argv.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Step {
    pub why: String,
    pub argv: Vec<String>,
}

/// Everything printed.
#[derive(Debug, Clone, Serialize)]
pub struct Commands {
    pub images: Vec<Step>,
    pub rescue: Vec<Step>,
    pub report: String,
    pub unrescue: Step,
}

fn step(why: &str, argv: &[&str]) -> Step {
    Step {
        why: why.to_owned(),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn image_create(
    name: &str,
    file: &str,
    format: &str,
    props: &[(&str, &str)],
    build_id: &str,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "openstack",
        "image",
        "create",
        name,
        "--disk-format",
        format,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    a.extend(["--container-format", "bare", "--file", file].map(str::to_owned));
    for (k, v) in props {
        a.push("--property".into());
        a.push(format!("{k}={v}"));
    }
    a.push("--property".into());
    a.push(format!("vmrescue_build_id={build_id}"));
    a
}

/// The commands for an image directory's media (pure).
pub fn commands(a: &Artefacts) -> Option<Commands> {
    let (iso, disk, m) = (
        a.iso.as_ref()?,
        a.disk_image.as_ref()?,
        a.manifest.media.as_ref()?,
    );
    let (iso, disk) = (iso.display().to_string(), disk.display().to_string());
    let disk_props = [("hw_rescue_device", "disk"), ("hw_rescue_bus", "virtio")];
    let iso_props = [("hw_rescue_device", "cdrom"), ("hw_rescue_bus", "sata")];
    let uefi_props = [
        ("hw_rescue_device", "disk"),
        ("hw_rescue_bus", "virtio"),
        ("hw_firmware_type", "uefi"),
        ("hw_machine_type", "q35"),
    ];
    let images = vec![
        Step {
            why: "the disk image: accepted by every glance and nova release (recommended)".into(),
            argv: image_create("vmrescue-disk", &disk, "qcow2", &disk_props, &m.build_id),
        },
        Step {
            why: "the hybrid ISO as a cdrom (glance before 2026.1 and nova 2024.2 refuse an image detected as both iso and gpt: use the disk image there)".into(),
            argv: image_create("vmrescue-iso", &iso, "iso", &iso_props, &m.build_id),
        },
        Step {
            why: "for legacy rescue (no hw_rescue_* support) of UEFI guests: the rescue image's firmware applies".into(),
            argv: image_create("vmrescue-disk-uefi", &disk, "qcow2", &uefi_props, &m.build_id),
        },
    ];
    let rescue = vec![
        step(
            "rescue a server (stable-device rescue: its disks keep their addresses)",
            &["openstack", "server", "rescue", "--image", "vmrescue-disk", "SERVER"],
        ),
        step(
            "a volume-backed server needs microversion 2.87 (and the host trait COMPUTE_RESCUE_BFV)",
            &[
                "openstack",
                "--os-compute-api-version",
                "2.87",
                "server",
                "rescue",
                "--image",
                "vmrescue-disk",
                "SERVER",
            ],
        ),
    ];
    Some(Commands {
        images,
        rescue,
        report: "openstack console log show SERVER | vmrescue report --console-log -".into(),
        unrescue: step(
            "boot the server normally again",
            &["openstack", "server", "unrescue", "SERVER"],
        ),
    })
}

/// A shell-quoted command line for display.
fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=./:,".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn render(c: &Commands) -> String {
    let mut s = String::new();
    s.push_str("# Upload the rescue media (once per build):\n");
    for st in &c.images {
        s.push_str(&format!("# {}\n{}\n", st.why, shell_line(&st.argv)));
    }
    s.push_str("\n# Rescue a broken server, read the report, bring it back:\n");
    for st in &c.rescue {
        s.push_str(&format!("# {}\n{}\n", st.why, shell_line(&st.argv)));
    }
    s.push_str(&format!(
        "# the report comes back through the console log (the last 100 KiB are enough)\n{}\n",
        c.report
    ));
    s.push_str(&format!(
        "# {}\n{}\n",
        c.unrescue.why,
        shell_line(&c.unrescue.argv)
    ));
    s
}

/// `vmrescue image nova`: 0, or 2 when the image directory has no media.
pub fn print(image: Option<PathBuf>, json: bool) -> i32 {
    let dir = image.unwrap_or_else(builder::default_dir);
    let Some(c) = Artefacts::open(&dir).as_ref().and_then(commands) else {
        eprintln!(
            "vmrescue: no rescue media in {}; build them with `vmrescue image build --out {}`",
            dir.display(),
            dir.display()
        );
        return crate::cli::EXIT_HOST;
    };
    if json {
        match serde_json::to_string_pretty(&c) {
            Ok(j) => crate::cli::out::println(&j),
            Err(e) => {
                eprintln!("vmrescue: {e}");
                return crate::cli::EXIT_HOST;
            }
        }
    } else {
        crate::cli::out::print(&render(&c));
    }
    crate::cli::EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_argv_intact() {
        assert_eq!(
            shell_line(&["a".into(), "b c".into(), "it's".into(), "k=v".into()]),
            "a 'b c' 'it'\\''s' k=v"
        );
    }
}
