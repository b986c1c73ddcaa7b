//! libvirt: the rescue of a named domain (`vmrescue rescue --domain`), through the libvirt
//! project's bindings; `xml` makes the rescue XML (pure).

use std::io::Read;
use std::path::{Path, PathBuf};

use vmrescue_image_builder::{self as builder, media, Artefacts};
use vmrescue_protocol::{params, Mode, DEFAULT_PORT_NAME};

pub mod boot_media;
pub mod disks;
pub mod domain;
mod placement;
mod remote_verify;
mod request;
mod state;
pub mod transfer;
mod verify_before;
pub mod verify_xml;
pub mod vm;
pub mod xml;
mod xml_splice;

/// Why a rescue XML cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Xml {
        path: PathBuf,
        source: xml::XmlError,
    },
    #[error("no rescue image in {}: build it with `vmrescue image build --out {}`", .0.display(), .0.display())]
    NoImage(PathBuf),
    #[error("the rescue image in {} has no ISO: build it without --no-media, or name one with --iso", .0.display())]
    NoIso(PathBuf),
    #[error("the rescue's kernel command line: {0}")]
    Cmdline(String),
}

/// The per-domain state directory (the saved definition, the lock, the console log, the NVRAM
/// copy), keyed by the domain's UUID (`key`; a definition without one, its name):
/// `$XDG_RUNTIME_DIR/vmrescue/domains/KEY`, else `/run/vmrescue/domains/KEY`.
pub fn state_dir(key: &str) -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run"));
    base.join("vmrescue/domains").join(key)
}

/// The kernel command line of a direct-kernel rescue boot with the agent's `settings` (the
/// media's own line).
pub fn kernel_cmdline(settings: &params::Settings) -> Result<String, LibvirtError> {
    media::bootcfg::media_cmdline(settings)
        .map(|c| c.to_string())
        .map_err(|e| LibvirtError::Cmdline(e.to_string()))
}

/// `vmrescue xml rescue FILE`: the rescue XML for a domain XML file (`-`: stdin).
pub fn rescue_xml_for_file(
    file: &Path,
    kernel_boot: bool,
    iso: Option<PathBuf>,
    mode: Mode,
    image: Option<PathBuf>,
) -> Result<String, LibvirtError> {
    let read_err = |source| LibvirtError::Read {
        path: file.to_owned(),
        source,
    };
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(16 << 20)
            .read_to_string(&mut text)
            .map_err(read_err)?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(16 << 20).read_to_string(&mut text))
            .map_err(read_err)?;
    }
    let xml_err = |source| LibvirtError::Xml {
        path: file.to_owned(),
        source,
    };
    let facts = xml::facts(&text).map_err(xml_err)?;
    let dir = image.unwrap_or_else(builder::default_dir);
    let image = || Artefacts::open(&dir).ok_or_else(|| LibvirtError::NoImage(dir.clone()));
    let mut late_disk = None;
    let boot = if kernel_boot {
        // What `rescue --domain` boots here, from the image directory itself.
        let files = boot_media::MediaFiles::choose(
            &image()?,
            true,
            facts.uefi,
            boot_media::KernelAsked::from_env(),
        );
        late_disk = files.late.map(|(p, _)| p.display().to_string());
        xml::BootMethod::Kernel {
            kernel: files.kernel.0.display().to_string(),
            initrd: files.initrd.0.display().to_string(),
            cmdline: kernel_cmdline(&params::Settings {
                mode,
                ..params::Settings::default()
            })?,
        }
    } else {
        let iso = match iso {
            Some(p) => p,
            None => image()?
                .iso
                .ok_or_else(|| LibvirtError::NoIso(dir.clone()))?,
        };
        xml::BootMethod::Cdrom {
            iso: iso.display().to_string(),
        }
    };
    // Keyed as `rescue --domain` keys it: by UUID.
    let state = state_dir(facts.uuid.as_deref().unwrap_or(&facts.name));
    xml::rescue_xml(
        &text,
        &xml::Rescue {
            boot,
            mode,
            channel: DEFAULT_PORT_NAME.to_owned(),
            console_log: Some(state.join("console.log").display().to_string()),
            nvram_copy: facts
                .uefi
                .then(|| state.join("nvram.fd").display().to_string()),
            settings_iso: None,
            guest_nvram_exists: true,
            scratch_disk: None,
            late_disk,
            staged: vec![],
        },
    )
    .map_err(xml_err)
}
