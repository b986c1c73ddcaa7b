//! Builds the rescue artefacts from the host's kernel: the kernel itself and a compressed newc
//! initramfs carrying the static agent as `/init`, the static checkers, busybox and the kernel
//! modules the rescue needs (with their dependency closure). Reproducible: the same inputs give
//! the same bytes (sorted entries, fixed mtimes, `SOURCE_DATE_EPOCH` honoured).
//!
//! It packs the agent binary; it does not link the agent's code.

pub mod closure;
pub mod cpio;
pub mod elf;
pub mod kernel;
pub mod layout;
pub mod manifest;
pub mod media;
pub mod modules;
pub mod pvh;
pub mod rescue_kernel;

use std::collections::{BTreeMap, BTreeSet};
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
pub const MANIFEST_FILE: &str = "manifest.json";
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
    // `NAME`, `NAME optional`, `NAME late`.
    let listed_modules: Vec<(&str, bool, bool)> = MODULES_LIST
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap_or(l);
            let flags: Vec<&str> = words.collect();
            (name, flags.contains(&"optional"), flags.contains(&"late"))
        })
        .collect();
    let resolve = |wanted: Vec<(&str, bool)>| {
        index
            .resolve_with(&wanted)
            .map_err(|source| BuildError::Module {
                version: version.clone(),
                source,
            })
    };
    let loads = resolve(listed_modules.iter().map(|(n, o, _)| (*n, *o)).collect())?;
    // A module is late when only late ones need it.
    let core_modules: BTreeSet<String> = resolve(
        listed_modules
            .iter()
            .filter(|(_, _, late)| !late)
            .map(|(n, o, _)| (*n, *o))
            .collect(),
    )?
    .into_iter()
    .map(|l| l.path)
    .collect();

    // Every entry by path, in the initramfs or the late archive; a BTreeMap sorts them (parents
    // before children) and dedups.
    let mut core: BTreeMap<String, cpio::Entry> = BTreeMap::new();
    let mut late: BTreeMap<String, cpio::Entry> = BTreeMap::new();
    let add_to =
        |entries: &mut BTreeMap<String, cpio::Entry>, path: &str, mode: u32, kind: cpio::Kind| {
            let key = path.trim_start_matches('/').to_owned();
            // Parent directories too, so the archive unpacks whatever the list forgot.
            for dir in Path::new(&key).ancestors().skip(1) {
                let dir = dir.to_string_lossy().into_owned();
                if !dir.is_empty() {
                    let entry = cpio::Entry {
                        path: dir.clone(),
                        mode: 0o755,
                        kind: cpio::Kind::Dir,
                    };
                    entries.entry(dir).or_insert(entry);
                }
            }
            entries.insert(
                key.clone(),
                cpio::Entry {
                    path: key,
                    mode,
                    kind,
                },
            );
        };
    let mut add = |path: &str, mode: u32, kind: cpio::Kind| add_to(&mut core, path, mode, kind);
    // Shared libraries of `bin` items, by image path: each once, however many binaries need it;
    // those only late binaries need go late.
    let mut libs: BTreeMap<String, closure::Lib> = BTreeMap::new();
    let mut core_libs: BTreeSet<String> = BTreeSet::new();
    let mut late_bins: Vec<(String, u32, Vec<u8>)> = Vec::new();
    let resolver = closure::Resolver::host();
    let source_bytes = |source: &str| {
        if source == layout::AGENT {
            Ok(agent.clone())
        } else {
            read(Path::new(source))
        }
    };
    let items = layout::parse(IMAGE_LIST)?;
    let listed: BTreeSet<String> = items.iter().map(|i| i.path().to_owned()).collect();
    for item in items {
        let is_bin = matches!(item, layout::Item::Bin { .. });
        match item {
            layout::Item::Dir { path, mode } => add(&path, mode, cpio::Kind::Dir),
            layout::Item::Nod {
                path,
                mode,
                major,
                minor,
            } => add(&path, mode, cpio::Kind::CharDev { major, minor }),
            layout::Item::Slink { path, target } => add(&path, 0o777, cpio::Kind::Symlink(target)),
            // A file is taken as it is; a binary also brings its shared libraries.
            layout::Item::File {
                path,
                source,
                mode,
                late,
            }
            | layout::Item::Bin {
                path,
                source,
                mode,
                late,
            } => {
                let data = source_bytes(&source)?;
                if is_bin {
                    for lib in resolver.closure(&path, Path::new(&source), &data)? {
                        if !late {
                            core_libs.insert(lib.image_path.clone());
                        }
                        libs.entry(lib.image_path.clone()).or_insert(lib);
                    }
                }
                if late {
                    late_bins.push((path, mode, data));
                } else {
                    add(&path, mode, cpio::Kind::File(data));
                }
            }
        }
    }
    for (path, mode, data) in late_bins {
        add_to(&mut late, &path, mode, cpio::Kind::File(data));
    }
    // What the list names itself wins over a library found for a binary.
    for (path, lib) in libs {
        if !listed.contains(&path) {
            let into = if core_libs.contains(&path) {
                &mut core
            } else {
                &mut late
            };
            add_to(into, &path, lib.mode, cpio::Kind::File(lib.data));
        }
    }
    let mut add = |path: &str, mode: u32, kind: cpio::Kind| add_to(&mut core, path, mode, kind);
    for e in &opts.extra {
        add(&e.path, e.mode, e.kind.clone());
    }
    // `PATH [optional] name=NAME needs=A,B`: in load order, each with what it needs first.
    let carried: BTreeSet<String> = loads.iter().map(|l| modules::name_of(&l.path)).collect();
    let mut load_list = String::from("# Written by vmrescue image build: modules in load order.\n");
    let mut late_modules = Vec::new();
    for l in &loads {
        let image_path = format!("/lib/modules/{version}/{}", l.path);
        let data = cpio::Kind::File(read(&moddir.join(&l.path))?);
        if core_modules.contains(&l.path) {
            add(&image_path, 0o644, data);
        } else {
            late_modules.push((image_path.clone(), data));
        }
        let name = modules::name_of(&l.path);
        let needs = index.needs(&name, &carried).join(",");
        load_list.push_str(&format!(
            "{image_path}{} name={name} needs={needs}\n",
            if l.optional { " optional" } else { "" }
        ));
    }
    add(
        MODULES_LOAD_PATH,
        0o644,
        cpio::Kind::File(load_list.into_bytes()),
    );
    let alias_list: String = index
        .aliases_of(&carried)
        .into_iter()
        .map(|(pattern, module)| format!("alias {pattern} {module}\n"))
        .collect();
    add(
        MODULES_ALIAS_PATH,
        0o644,
        cpio::Kind::File(alias_list.into_bytes()),
    );

    for (path, data) in late_modules {
        add_to(&mut late, &path, 0o644, data);
    }
    let mtime = opts.mtime.unwrap_or_else(source_date_epoch);
    let gzip = |data: &[u8], level: flate2::Compression| -> Result<Vec<u8>, BuildError> {
        let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), level);
        io::Write::write_all(&mut gz, data).map_err(io_err(&opts.out))?;
        gz.finish().map_err(io_err(&opts.out))
    };
    // The late archive: the files themselves, not their directories (the agent makes those).
    let late_files: Vec<cpio::Entry> = late
        .into_values()
        .filter(|e| !matches!(e.kind, cpio::Kind::Dir))
        .collect();
    let mut packed = Vec::new();
    if !late_files.is_empty() {
        let mut archive = Vec::new();
        cpio::write(&mut archive, &late_files, mtime).map_err(io_err(&opts.out))?;
        packed = gzip(&archive, flate2::Compression::best())?;
    }
    // The core alone, naming the late archive by checksum and length (from a disk, it is
    // taken only when it matches); then the full initramfs, which carries it.
    let mut lean = core.clone();
    add_to(
        &mut lean,
        vmrescue_protocol::paths::LATE_SUM,
        0o644,
        cpio::Kind::File(format!("{} {}\n", sha256_hex(&packed), packed.len()).into_bytes()),
    );
    let lean: Vec<cpio::Entry> = lean.into_values().collect();
    let mut core_archive = Vec::new();
    cpio::write(&mut core_archive, &lean, mtime).map_err(io_err(&opts.out))?;
    // The rescue kernel's: the core without the host kernel's modules (it takes none).
    let mut rescue_archive = Vec::new();
    if opts.rescue_kernel.is_some() && !packed.is_empty() {
        let no_modules: Vec<cpio::Entry> = lean
            .iter()
            .filter(|e| !Path::new(&e.path).starts_with("lib/modules"))
            .cloned()
            .collect();
        cpio::write(&mut rescue_archive, &no_modules, mtime).map_err(io_err(&opts.out))?;
    }
    let mut late_img = packed.clone();
    late_img.resize(packed.len().div_ceil(512) * 512, 0);
    if !packed.is_empty() {
        add_to(
            &mut core,
            vmrescue_protocol::paths::LATE_ARCHIVE,
            0o644,
            cpio::Kind::File(packed),
        );
    }
    let entries: Vec<cpio::Entry> = core.into_values().collect();
    let mut archive = Vec::new();
    cpio::write(&mut archive, &entries, mtime).map_err(io_err(&opts.out))?;
    let initramfs = gzip(&archive, flate2::Compression::default())?;

    let vmlinux = pvh::vmlinux(&kernel_bytes);
    let rescue = match &opts.rescue_kernel {
        None => None,
        Some(k) => {
            let elf = pvh::vmlinux(&read(&k.bzimage)?).map_err(|e| BuildError::RescueKernel {
                path: k.bzimage.clone(),
                reason: e.to_string(),
            })?;
            let m = RescueKernelManifest {
                release: k.release.clone(),
                source: k.source.clone(),
                vmlinux_sha256: sha256_hex(&elf),
                initramfs_sha256: (!rescue_archive.is_empty()).then(|| sha256_hex(&rescue_archive)),
            };
            Some((elf, m))
        }
    };
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        builder_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel_version: version,
        kernel_sha256: sha256_hex(&kernel_bytes),
        initramfs_sha256: sha256_hex(&initramfs),
        vmlinux_sha256: vmlinux.as_ref().ok().map(|v| sha256_hex(v)),
        initramfs_cpio_sha256: Some(sha256_hex(&archive)),
        initramfs_core_sha256: (!late_img.is_empty()).then(|| sha256_hex(&core_archive)),
        late_sha256: (!late_img.is_empty()).then(|| sha256_hex(&late_img)),
        vmlinux_missing: vmlinux.as_ref().err().map(|e| e.to_string()),
        agent_sha256: sha256_hex(&agent),
        modules: loads.iter().map(|l| l.path.clone()).collect(),
        late: late_files.iter().map(|e| format!("/{}", e.path)).collect(),
        media: None,
        rescue_kernel: rescue.as_ref().map(|(_, m)| m.clone()),
    };
    publish(
        &opts.out,
        &[
            (KERNEL_FILE, kernel_bytes.as_slice()),
            (INITRAMFS_FILE, initramfs.as_slice()),
            (INITRAMFS_CPIO_FILE, archive.as_slice()),
        ]
        .into_iter()
        .chain(
            (!late_img.is_empty())
                .then_some([
                    (INITRAMFS_CORE_FILE, core_archive.as_slice()),
                    (LATE_FILE, late_img.as_slice()),
                ])
                .into_iter()
                .flatten(),
        )
        .chain(vmlinux.as_deref().ok().map(|v| (VMLINUX_FILE, v)))
        .chain(
            rescue
                .as_ref()
                .map(|(elf, _)| (RESCUE_VMLINUX_FILE, elf.as_slice())),
        )
        .chain(
            (rescue.is_some() && !rescue_archive.is_empty())
                .then_some((RESCUE_INITRAMFS_FILE, rescue_archive.as_slice())),
        )
        .collect::<Vec<_>>(),
        |tmp| {
            if let Some(baked) = &opts.media {
                // Names this build of the media: the initramfs and the baked settings.
                let (entries, default) =
                    media::bootcfg::menu(baked).map_err(media::MediaError::Settings)?;
                let build_id = sha256_hex(
                    format!(
                        "{}\n{}",
                        manifest.initramfs_sha256, entries[default].cmdline
                    )
                    .as_bytes(),
                )[..16]
                    .to_owned();
                let inputs = media::Inputs {
                    kernel: &kernel_bytes,
                    initramfs: &initramfs,
                    build_id: &build_id,
                    baked,
                    epoch: mtime,
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
