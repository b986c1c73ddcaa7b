//! Builds the rescue artefacts from the host's kernel: the kernel itself and a compressed newc
//! initramfs carrying the static agent as `/init`, the static checkers, busybox and the kernel
//! modules the rescue needs (with their dependency closure). Reproducible: the same inputs give
//! the same bytes (sorted entries, fixed mtimes, `SOURCE_DATE_EPOCH` honoured).
//!
//! It packs the agent binary; it does not link the agent's code.

mod assemble;
pub mod closure;
pub mod cpio;
pub mod elf;
pub mod kernel;
pub mod layout;
pub mod manifest;
pub mod media;
pub mod modules;
mod pack;
pub mod pvh;
pub mod rescue_kernel;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use manifest::{default_dir, Artefacts, Manifest, MediaManifest, RescueKernelManifest};

/// The module list and the image list, from `initramfs/` (data, not code).
pub const MODULES_LIST: &str = include_str!("../../initramfs/modules.list");
pub const IMAGE_LIST: &str = include_str!("../../initramfs/image.list");

/// File names inside an image directory.
pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRAMFS_FILE: &str = "initramfs.img";
/// The uncompressed kernel for QEMU's PVH entry, when the bzImage yields one.
pub const VMLINUX_FILE: &str = "vmlinux";
/// The initramfs uncompressed, for the boots vmrescue starts itself: the kernel copies it
/// instead of inflating it (under TCG, most of a second).
pub const INITRAMFS_CPIO_FILE: &str = "initramfs.cpio";
/// The initramfs without the late archive (uncompressed), for boots that attach [`LATE_FILE`]
/// as a disk: what the kernel unpacks at boot is only what every rescue needs.
pub const INITRAMFS_CORE_FILE: &str = "initramfs-core.cpio";
/// The late archive as a disk image (the gzip archive padded to whole sectors), attached
/// read-only with the serial `paths::LATE_SERIAL` next to [`INITRAMFS_CORE_FILE`].
pub const LATE_FILE: &str = "late.img";
/// The purpose-made rescue kernel (see [`rescue_kernel`]) for QEMU's PVH entry, when the
/// build was given one: the VMs vmrescue starts itself boot it with [`RESCUE_INITRAMFS_FILE`].
pub const RESCUE_VMLINUX_FILE: &str = "vmlinux-rescue";
/// [`INITRAMFS_CORE_FILE`] without the host kernel's modules, for the rescue kernel.
pub const RESCUE_INITRAMFS_FILE: &str = "initramfs-rescue.cpio";
/// The rescue kernel as its bzImage: what a UEFI firmware starts (its EFI stub), and the
/// smaller file to upload to a remote libvirt host.
pub const RESCUE_BZIMAGE_FILE: &str = "vmlinuz-rescue";
/// [`INITRAMFS_CPIO_FILE`] without the host kernel's modules (the late archive inside): what
/// images built before the late archive rode beside the rescue kernel's core everywhere gave
/// libvirt domains and the media. Read in such images, no longer written.
pub const RESCUE_INITRAMFS_FULL_FILE: &str = "initramfs-rescue-full.cpio";
pub const MANIFEST_FILE: &str = "manifest.json";
/// Why an image with the rescue kernel has no [`VMLINUX_FILE`] (the manifest's
/// `vmlinux_missing`).
pub const NOT_CARRIED: &str =
    "not carried: the image boots its rescue kernel (image build --host-kernel-files carries it)";
/// The manifest's `format` this builder writes: 2 added the core initramfs, the late archive
/// and the rescue kernel. An image of an older format still boots, the slower way.
pub const MANIFEST_FORMAT: u32 = 2;
/// Where the agent finds its module load order.
pub const MODULES_LOAD_PATH: &str = "/etc/vmrescue/modules.load";
/// The aliases of the modules carried (device patterns, `fs-TYPE`), for the agent to load only
/// what the attached devices and the filesystems found need.
pub const MODULES_ALIAS_PATH: &str = "/etc/vmrescue/modules.alias";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no kernel given and none found as /boot/vmlinuz-*; install linux-image-amd64 (scripts/setup.sh) or pass --kernel")]
    NoKernel,
    #[error("cannot tell the version of kernel {0}; name it vmlinuz-VERSION or pass a bzImage")]
    KernelVersion(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("agent {0} is not a static binary; build it with: cargo build --release -p vmrescue-agent --target x86_64-unknown-linux-musl")]
    AgentNotStatic(PathBuf),
    #[error("{0}")]
    List(#[from] layout::ListError),
    #[error("{0}")]
    Closure(#[from] closure::ClosureError),
    #[error(transparent)]
    Media(#[from] media::MediaError),
    #[error("rescue kernel {path}: {reason}")]
    RescueKernel { path: PathBuf, reason: String },
    #[error("kernel {version}: {source}")]
    Module {
        version: String,
        source: modules::ModuleError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(path).map_err(io_err(path))
}

/// What to build from.
#[derive(Debug, Clone)]
pub struct Options {
    /// Kernel image; default: the newest `/boot/vmlinuz-*`.
    pub kernel: Option<PathBuf>,
    /// Module tree; default: `/lib/modules/<kernel version>`.
    pub modules_dir: Option<PathBuf>,
    /// The static agent binary.
    pub agent: PathBuf,
    /// Output directory (replaced atomically).
    pub out: PathBuf,
    /// mtime for every archive entry; default: `SOURCE_DATE_EPOCH` or 0.
    pub mtime: Option<u32>,
    /// Entries baked in beyond the image list (e.g. the operator's reference `/etc` under
    /// `etc/vmrescue/reference-etc`); they win over list entries of the same path.
    pub extra: Vec<cpio::Entry>,
    /// The settings the media's boot menu passes by default (they have no per-rescue command
    /// line); `None` builds only the kernel and initramfs.
    pub media: Option<vmrescue_protocol::params::Settings>,
    /// A purpose-made rescue kernel (a bzImage [`rescue_kernel::ensure`] built, everything
    /// built in), carried beside the host's kernel for the VMs vmrescue starts itself.
    pub rescue_kernel: Option<rescue_kernel::Built>,
    /// Also carry the host kernel's uncompressed boot files ([`VMLINUX_FILE`],
    /// [`INITRAMFS_CPIO_FILE`], [`INITRAMFS_CORE_FILE`]: about 95 MB), which only boots of the
    /// host's kernel take (`VMRESCUE_KERNEL=host`, for comparisons). Carried anyway without a
    /// rescue kernel: the host's kernel is then what every own boot starts.
    pub host_kernel_files: bool,
}

pub use vmrescue_protocol::digest::sha256_hex;

fn source_date_epoch() -> u32 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Builds the image into `opts.out`, replacing what was there only once the new one is complete.
pub fn build(opts: &Options) -> Result<Artefacts, BuildError> {
    let kernel_path = match &opts.kernel {
        Some(k) => k.clone(),
        None => kernel::default_kernel(Path::new("/boot")).ok_or(BuildError::NoKernel)?,
    };
    let kernel_bytes = read(&kernel_path)?;
    let version = kernel::bzimage_version(&kernel_bytes)
        .or_else(|| kernel::version_from_name(&kernel_path))
        .ok_or_else(|| BuildError::KernelVersion(kernel_path.clone()))?;
    let moddir = opts
        .modules_dir
        .clone()
        .unwrap_or_else(|| Path::new("/lib/modules").join(&version));
    let agent = read(&opts.agent)?;
    if elf::is_static(&agent) != Some(true) {
        return Err(BuildError::AgentNotStatic(opts.agent.clone()));
    }

    let optional_text = |name: &str| fs::read_to_string(moddir.join(name)).unwrap_or_default();
    let dep_path = moddir.join("modules.dep");
    let dep = fs::read_to_string(&dep_path).map_err(io_err(&dep_path))?;
    let index = modules::Index::parse(
        &dep,
        &optional_text("modules.softdep"),
        &optional_text("modules.alias"),
        &optional_text("modules.builtin"),
    );
    let loads = assemble::resolve(&index, &assemble::module_list(MODULES_LIST), &version)?;
    let mut tree = assemble::Tree::default();
    assemble::add_list(&mut tree, IMAGE_LIST, &agent)?;
    for e in &opts.extra {
        tree.add(false, &e.path, e.mode, e.kind.clone());
    }
    assemble::add_modules(&mut tree, &index, &loads, &version, &moddir)?;
    let mtime = opts.mtime.unwrap_or_else(source_date_epoch);
    let packed = pack::pack(tree, mtime, opts.rescue_kernel.is_some(), &opts.out)?;

    // The host kernel's uncompressed files: only where its boots need them.
    let host_files = opts.host_kernel_files || opts.rescue_kernel.is_none();
    let vmlinux = match host_files {
        true => pvh::vmlinux(&kernel_bytes).map_err(|e| e.to_string()),
        false => Err(NOT_CARRIED.to_owned()),
    };
    let rescue = match &opts.rescue_kernel {
        None => None,
        Some(k) => {
            let bzimage = read(&k.bzimage)?;
            let elf = pvh::vmlinux(&bzimage).map_err(|e| BuildError::RescueKernel {
                path: k.bzimage.clone(),
                reason: e.to_string(),
            })?;
            let m = RescueKernelManifest {
                release: k.release.clone(),
                source: k.source.clone(),
                vmlinux_sha256: sha256_hex(&elf),
                initramfs_sha256: (!packed.rescue_archive.is_empty())
                    .then(|| sha256_hex(&packed.rescue_archive)),
                bzimage_sha256: Some(sha256_hex(&bzimage)),
                // Every boot of the rescue kernel takes the core and the late archive apart.
                initramfs_full_sha256: None,
            };
            Some((elf, bzimage, m))
        }
    };
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        builder_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel_version: version,
        kernel_sha256: sha256_hex(&kernel_bytes),
        initramfs_sha256: sha256_hex(&packed.initramfs),
        vmlinux_sha256: vmlinux.as_ref().ok().map(|v| sha256_hex(v)),
        initramfs_cpio_sha256: host_files.then(|| sha256_hex(&packed.archive)),
        initramfs_core_sha256: (host_files && !packed.late_img.is_empty())
            .then(|| sha256_hex(&packed.core_archive)),
        late_sha256: (!packed.late_img.is_empty()).then(|| sha256_hex(&packed.late_img)),
        vmlinux_missing: vmlinux.as_ref().err().cloned(),
        agent_sha256: sha256_hex(&agent),
        modules: loads.0.iter().map(|l| l.path.clone()).collect(),
        late: packed
            .late_files
            .iter()
            .map(|e| format!("/{}", e.path))
            .collect(),
        media: None,
        rescue_kernel: rescue.as_ref().map(|(_, _, m)| m.clone()),
    };
    publish(
        &opts.out,
        &[
            (KERNEL_FILE, kernel_bytes.as_slice()),
            (INITRAMFS_FILE, packed.initramfs.as_slice()),
        ]
        .into_iter()
        .chain(host_files.then_some((INITRAMFS_CPIO_FILE, packed.archive.as_slice())))
        .chain(
            (host_files && !packed.late_img.is_empty())
                .then_some((INITRAMFS_CORE_FILE, packed.core_archive.as_slice())),
        )
        .chain((!packed.late_img.is_empty()).then_some((LATE_FILE, packed.late_img.as_slice())))
        .chain(vmlinux.as_deref().ok().map(|v| (VMLINUX_FILE, v)))
        .chain(rescue.as_ref().into_iter().flat_map(|(elf, bzimage, _)| {
            [
                (RESCUE_VMLINUX_FILE, elf.as_slice()),
                (RESCUE_BZIMAGE_FILE, bzimage.as_slice()),
            ]
        }))
        .chain(
            (rescue.is_some() && !packed.rescue_archive.is_empty())
                .then_some((RESCUE_INITRAMFS_FILE, packed.rescue_archive.as_slice())),
        )
        .collect::<Vec<_>>(),
        |tmp| {
            if let Some(baked) = &opts.media {
                // Names this build of the media: the initramfs and the baked settings.
                let (entries, default) =
                    media::bootcfg::menu(baked).map_err(media::MediaError::Settings)?;
                // The rescue kernel's pair, booted by the media too: its core initramfs, with
                // the late archive a file on the medium (13 MB less for the firmware to read
                // and the kernel to unpack than with the archive inside).
                let (rescue_pair, late) = match &rescue {
                    Some((_, bz, _)) if !packed.rescue_archive.is_empty() => (
                        Some((bz.as_slice(), packed.rescue_archive.as_slice())),
                        (!packed.late_img.is_empty()).then_some(packed.late_img.as_slice()),
                    ),
                    _ => (None, None),
                };
                let rescue_sum = rescue_pair
                    .map(|(bz, initrd)| format!("\n{}\n{}", sha256_hex(bz), sha256_hex(initrd)))
                    .unwrap_or_default();
                let build_id = sha256_hex(
                    format!(
                        "{}\n{}{rescue_sum}",
                        manifest.initramfs_sha256, entries[default].cmdline
                    )
                    .as_bytes(),
                )[..16]
                    .to_owned();
                let inputs = media::Inputs {
                    kernel: &kernel_bytes,
                    initramfs: &packed.initramfs,
                    build_id: &build_id,
                    baked,
                    epoch: mtime,
                    rescue: rescue_pair,
                    late,
                };
                let work = tmp.join(".media-work");
                let (iso, disk) = media::build(&inputs, &work, tmp)?;
                let _ = fs::remove_dir_all(&work);
                manifest.media = Some(MediaManifest {
                    build_id,
                    iso_sha256: sha256_hex(&read(&iso)?),
                    disk_sha256: sha256_hex(&read(&disk)?),
                    default_cmdline: entries[default].cmdline.clone(),
                });
            }
            let mut json =
                serde_json::to_vec_pretty(&manifest).map_err(|e| io_err(tmp)(e.into()))?;
            json.push(b'\n');
            let p = tmp.join(MANIFEST_FILE);
            let mut f = File::create(&p).map_err(io_err(&p))?;
            f.write_all(&json)
                .and_then(|_| f.sync_all())
                .map_err(io_err(&p))
        },
    )?;
    Artefacts::open(&opts.out).ok_or_else(|| BuildError::Io {
        path: opts.out.clone(),
        source: io::Error::other("the image just written cannot be read back"),
    })
}

/// Writes the files into a fresh sibling directory, syncs them, and exchanges it with `out`
/// (renameat2 RENAME_EXCHANGE) under a lock, so readers and concurrent builders never see a
/// half-written or missing image.
fn publish(
    out: &Path,
    files: &[(&str, &[u8])],
    more: impl FnOnce(&Path) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("image");
    let lock_path = parent.join(format!(".{name}.lock"));
    let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(&lock_path)(e.into()))?;
    let tmp = parent.join(format!(".{name}.new-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    for (file, data) in files {
        let p = tmp.join(file);
        let mut f = File::create(&p).map_err(io_err(&p))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(io_err(&p))?;
    }
    more(&tmp)?;
    if out.exists() {
        // Swap old and new in one step, then drop the old one.
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            out,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io_err(out)(e.into()))?;
        let _ = fs::remove_dir_all(&tmp);
    } else {
        fs::rename(&tmp, out).map_err(io_err(out))?;
    }
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(parent))?;
    Ok(())
}
