//! Finding or building the rescue image, and the agent binary it packs.

use std::path::{Path, PathBuf};

use vmrescue_image_builder::{self as builder, Artefacts};
use vmrescue_protocol::params::Settings;

use crate::session::progress::{Event, Sink};

/// Why there is no rescue image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "no static rescue agent binary was found (tried {tried}); build it with \
         `cargo build --release -p vmrescue-agent --target x86_64-unknown-linux-musl`, \
         or name it with --agent or VMRESCUE_AGENT"
    )]
    NoAgent { tried: String },
    #[error(transparent)]
    ReferenceEtc(#[from] crate::boot::overlay::OverlayError),
    #[error(transparent)]
    RescueKernel(#[from] builder::rescue_kernel::KernelError),
    #[error("building the rescue image in {} (agent {}): {source}", out.display(), agent.display())]
    Build {
        out: PathBuf,
        agent: PathBuf,
        source: Box<builder::BuildError>,
    },
}

type Result<T> = std::result::Result<T, ImageError>;

/// The agent binary: `--agent`, `$VMRESCUE_AGENT`, next to this program, the workspace's musl
/// build, or the system install location.
pub fn locate_agent(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(p) = std::env::var_os("VMRESCUE_AGENT").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        tried.push(dir.join("vmrescue-agent"));
        // cargo's layout: target/{debug,release}/vmrescue next to target/<triple>/release/.
        tried.push(dir.join("../x86_64-unknown-linux-musl/release/vmrescue-agent"));
    }
    tried.push(PathBuf::from("/usr/lib/vmrescue/vmrescue-agent"));
    // A host (glibc) build of the agent can sit next to this program in cargo's layout: only a
    // static one will do as PID 1.
    let is_static = |p: &Path| {
        std::fs::read(p)
            .ok()
            .and_then(|b| builder::elf::is_static(&b))
            == Some(true)
    };
    if let Some(found) = tried.iter().find(|p| is_static(p)) {
        return Ok(found.clone());
    }
    Err(ImageError::NoAgent {
        tried: tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// What `vmrescue image build` is asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub kernel: Option<PathBuf>,
    /// Default: the documented image directory.
    pub out: Option<PathBuf>,
    pub agent: Option<PathBuf>,
    pub reference_etc: Option<PathBuf>,
    /// The boot media's baked settings; `None`: kernel and initramfs only.
    pub media: Option<Settings>,
    /// Whether to carry the purpose-made rescue kernel (built once, then taken from the cache).
    pub rescue_kernel: RescueKernel,
    /// The linux-source archive for it (default: the newest in /usr/src).
    pub kernel_source: Option<PathBuf>,
    /// Also carry the host kernel's uncompressed boot files (for `VMRESCUE_KERNEL=host`).
    pub host_kernel_files: bool,
}

/// Whether an image carries the purpose-made rescue kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RescueKernel {
    /// When a linux-source archive is installed (or named); a failed build leaves the image
    /// with the host's kernel only, and says why.
    #[default]
    Auto,
    /// Always; a failed build fails the image build.
    Yes,
    /// Never: the host's kernel only.
    No,
}

/// Builds the image; `note` hears of the steps that take minutes.
pub fn build(req: &BuildRequest, note: &mut dyn FnMut(&str)) -> Result<Artefacts> {
    let out = req.out.clone().unwrap_or_else(builder::default_dir);
    let agent = locate_agent(req.agent.as_deref())?;
    let source = req.kernel_source.clone().or_else(|| {
        builder::rescue_kernel::find_source(Path::new(builder::rescue_kernel::SOURCE_DIR))
    });
    let cache = builder::rescue_kernel::default_cache();
    let rescue_kernel = match (req.rescue_kernel, &source) {
        (RescueKernel::No, _) | (RescueKernel::Auto, None) => None,
        (RescueKernel::Yes, _) => Some(builder::rescue_kernel::ensure(
            source.as_deref(),
            &cache,
            note,
        )?),
        (RescueKernel::Auto, Some(src)) => {
            match builder::rescue_kernel::ensure(Some(src), &cache, note) {
                Ok(k) => Some(k),
                Err(e) => {
                    note(&format!(
                        "{e}; the image carries the host's kernel only (--no-rescue-kernel skips this)"
                    ));
                    None
                }
            }
        }
    };
    let extra = match &req.reference_etc {
        Some(dir) => crate::boot::overlay::reference_entries(dir)?,
        None => Vec::new(),
    };
    builder::build(&builder::Options {
        kernel: req.kernel.clone(),
        modules_dir: None,
        agent: agent.clone(),
        out: out.clone(),
        mtime: None,
        extra,
        media: req.media.clone(),
        rescue_kernel,
        host_kernel_files: req.host_kernel_files,
    })
    .map_err(|source| ImageError::Build {
        out,
        agent,
        source: Box::new(source),
    })
}

/// The image in `dir` (default location when `None`), built first if it is missing (kernel and
/// initramfs only: `rescue --disk` boots them directly).
pub fn ensure(
    dir: Option<PathBuf>,
    agent: Option<&Path>,
    sink: &mut dyn Sink,
) -> Result<Artefacts> {
    let dir = dir.unwrap_or_else(builder::default_dir);
    match Artefacts::open(&dir) {
        Some(a) if a.manifest.format >= builder::MANIFEST_FORMAT => return Ok(a),
        // Its media may have been built with settings a rebuild would not know: kept.
        Some(a) if a.manifest.media.is_some() => {
            sink.event(Event::Note(&format!(
                "the rescue image in {} was built by an older vmrescue (format {}); \
                 `vmrescue image build` rebuilds it for the faster boot",
                dir.display(),
                a.manifest.format
            )));
            return Ok(a);
        }
        Some(a) => sink.event(Event::Note(&format!(
            "the rescue image in {} was built by an older vmrescue (format {}); rebuilding it",
            dir.display(),
            a.manifest.format
        ))),
        None => sink.event(Event::Note(&format!(
            "no rescue image in {}; building it",
            dir.display()
        ))),
    }
    build(
        &BuildRequest {
            out: Some(dir),
            agent: agent.map(Path::to_owned),
            ..BuildRequest::default()
        },
        &mut |n| sink.event(Event::Note(n)),
    )
}
