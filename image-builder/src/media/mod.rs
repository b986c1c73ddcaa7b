//! The rescue media: `vmrescue.iso` (hybrid: an El Torito cdrom with ISOLINUX for BIOS and
//! shim + GRUB for UEFI, and a plain disk through its isohybrid MBR and GPT) and
//! `vmrescue-disk.qcow2` (a DOS-partitioned disk with one FAT partition holding SYSLINUX for
//! BIOS and shim + GRUB at `EFI/BOOT/BOOTX64.EFI` for UEFI), for `virsh edit` and `nova rescue`.
//!
//! UEFI boots Debian's Microsoft-signed shim and Debian-signed GRUB: the same files boot with
//! Secure Boot on or off. Where the image has the rescue kernel, the media carry it too and
//! boot it under BIOS and UEFI without Secure Boot; with Secure Boot, GRUB loads Debian's
//! signed kernel (see [`bootcfg`]). Both media carry the rescue-medium
//! marker sector, so discovery never mistakes them for the guest. Built with xorriso, mtools,
//! syslinux and qemu-img on image files (no loop mounts); reproducible: the same inputs and
//! `SOURCE_DATE_EPOCH` give the same bytes.

pub mod bootcfg;
pub mod mbr;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use vmrescue_discovery::medium;
use vmrescue_protocol::params::Settings;

pub const ISO_FILE: &str = "vmrescue.iso";
pub const DISK_FILE: &str = "vmrescue-disk.qcow2";

/// Boot files from Debian's packages.
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const ISOHYBRID_MBR: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
pub const SYSLINUX_MBR: &str = "/usr/lib/syslinux/mbr/mbr.bin";
pub const SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
pub const GRUB_SIGNED: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";

/// Size of the FAT partition of the disk image and of the ISO's EFI image.
const DISK_PART_MIB: u64 = 96;
const EFI_IMG_MIB: u64 = 8;
/// FAT cannot store dates before 1980.
const FAT_EPOCH: u32 = 315_532_800;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is missing; install the boot loader packages (scripts/setup.sh: isolinux, syslinux, shim-signed, grub-efi-amd64-signed, mtools, xorriso)")]
    Missing(PathBuf),
    #[error("running {tool}: {source}; install it (scripts/setup.sh)")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("the image's baked settings: {0}")]
    Settings(String),
    #[error("{0}")]
    Layout(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MediaError {
    let path = path.to_owned();
    move |source| MediaError::Io { what, path, source }
}

/// What the media are made of.
pub struct Inputs<'a> {
    pub kernel: &'a [u8],
    pub initramfs: &'a [u8],
    /// Names this build (the marker sector and the marker file GRUB searches for).
    pub build_id: &'a str,
    /// The settings the boot menu's default passes to the agent.
    pub baked: &'a Settings,
    /// Timestamp of every file on the media.
    pub epoch: u32,
    /// The rescue kernel's bzImage and its initramfs, to boot by default where no Secure Boot
    /// is enforced.
    pub rescue: Option<(&'a [u8], &'a [u8])>,
    /// The late archive's bytes, a file on the media (`paths::LATE_MEDIUM_FILE`) that the
    /// rescue kernel's core initramfs takes them from (checked against the sum it names).
    pub late: Option<&'a [u8]>,
}

/// Runs a tool (argv, never a shell) with the reproducible timestamp in its environment.
fn run(tool: &str, args: &[&OsStr], epoch: u32) -> Result<(), MediaError> {
    let out = Command::new(tool)
        .args(args)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|source| MediaError::Spawn {
            tool: tool.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(MediaError::Failed {
            tool: tool.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn os(s: &(impl AsRef<OsStr> + ?Sized)) -> &OsStr {
    s.as_ref()
}

fn need(path: &str) -> Result<&Path, MediaError> {
    let p = Path::new(path);
    if p.is_file() {
        Ok(p)
    } else {
        Err(MediaError::Missing(p.to_owned()))
    }
}

fn write(path: &Path, data: &[u8]) -> Result<(), MediaError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    fs::write(path, data).map_err(io("writing", path))
}

/// A FAT image file of `mib` MiB with the files `(path in image, source)`; `serial` fixes the
/// volume serial (mformat draws a random one otherwise).
fn fat_image(
    img: &Path,
    mib: u64,
    label: &str,
    serial: u32,
    files: &[(&str, &Path)],
    epoch: u32,
) -> Result<(), MediaError> {
    let f = fs::File::create(img).map_err(io("creating", img))?;
    f.set_len(mib << 20).map_err(io("sizing", img))?;
    drop(f);
    let serial = format!("{serial:08x}");
    let fat32 = if mib >= 64 { &["-F"][..] } else { &[][..] };
    let mut args: Vec<&OsStr> = vec![os("-i"), img.as_os_str()];
    args.extend(fat32.iter().map(os));
    args.extend([os("-v"), os(label), os("-N"), os(&serial), os("::")]);
    run("mformat", &args, epoch)?;
    // Every parent directory, each once, parents first.
    let mut dirs: Vec<&Path> = files
        .iter()
        .flat_map(|(dest, _)| Path::new(dest).ancestors().skip(1))
        .filter(|d| d.as_os_str().len() > 1)
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        let target = format!("::{}", d.display());
        run("mmd", &[os("-i"), img.as_os_str(), os(&target)], epoch)?;
    }
    for (dest, src) in files {
        let target = format!("::{dest}");
        run(
            "mcopy",
            &[os("-i"), img.as_os_str(), src.as_os_str(), os(&target)],
            epoch,
        )?;
    }
    Ok(())
}

/// Sets every file's and directory's mtime under `dir` to `epoch` (xorriso takes file dates
/// from the tree).
fn touch_tree(dir: &Path, epoch: u32) -> Result<(), MediaError> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.into());
    for e in fs::read_dir(dir).map_err(io("reading", dir))? {
        let p = e.map_err(io("reading", dir))?.path();
        if p.is_dir() {
            touch_tree(&p, epoch)?;
        }
        fs::File::open(&p)
            .and_then(|f| f.set_modified(t))
            .map_err(io("setting the time of", &p))?;
    }
    fs::File::open(dir)
        .and_then(|f| f.set_modified(t))
        .map_err(io("setting the time of", dir))
}

/// Writes the rescue-medium marker sector into `image` at its fixed offset; the bytes there
/// must be unused (zero).
fn mark(image: &Path, build_id: &str) -> Result<(), MediaError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(io("opening", image))?;
    let mut old = [0u8; medium::SIZE];
    f.seek(SeekFrom::Start(medium::OFFSET))
        .and_then(|_| f.read_exact(&mut old))
        .map_err(io("reading the marker area of", image))?;
    if old.iter().any(|&b| b != 0) {
        return Err(MediaError::Layout(format!(
            "{}: the marker area at {:#x} is in use",
            image.display(),
            medium::OFFSET
        )));
    }
    f.seek(SeekFrom::Start(medium::OFFSET))
        .and_then(|_| f.write_all(&medium::encode(build_id)))
        .and_then(|_| f.sync_all())
        .map_err(io("writing the marker into", image))
}

/// The file GRUB searches for to find the medium it booted from.
pub fn marker_file(build_id: &str) -> String {
    format!("/vmrescue/medium-{build_id}")
}

/// A 32-bit value derived from the build id (FAT serials, the MBR signature).
fn id32(build_id: &str, salt: u8) -> u32 {
    let h = vmrescue_protocol::digest::sha256_hex(format!("{salt}:{build_id}").as_bytes());
    u32::from_str_radix(&h[..8], 16).unwrap_or(0x5652_4553)
}

struct Staged {
    kernel: PathBuf,
    initrd: PathBuf,
    /// The rescue kernel and its initramfs, when carried.
    rescue: Option<(PathBuf, PathBuf)>,
    /// The late archive beside them, when their initramfs is the core.
    late: Option<PathBuf>,
    marker: PathBuf,
    syslinux_cfg: PathBuf,
    grub_cfg: PathBuf,
}

fn stage(dir: &Path, inp: &Inputs) -> Result<Staged, MediaError> {
    let (entries, default) = bootcfg::menu(inp.baked).map_err(MediaError::Settings)?;
    let s = Staged {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        rescue: inp
            .rescue
            .map(|_| (dir.join("vmlinuz-rescue"), dir.join("initrd-rescue.cpio"))),
        late: inp.rescue.and(inp.late).map(|_| dir.join("late.img")),
        marker: dir.join("marker"),
        syslinux_cfg: dir.join("syslinux.cfg"),
        grub_cfg: dir.join("grub.cfg"),
    };
    write(&s.kernel, inp.kernel)?;
    write(&s.initrd, inp.initramfs)?;
    if let (Some((kernel, initrd)), Some((k, i))) = (inp.rescue, &s.rescue) {
        write(k, kernel)?;
        write(i, initrd)?;
    }
    if let (Some(late), Some(l)) = (inp.late, &s.late) {
        write(l, late)?;
    }
    let rescue = s.rescue.is_some();
    write(
        &s.marker,
        format!("vmrescue rescue medium {}\n", inp.build_id).as_bytes(),
    )?;
    write(
        &s.syslinux_cfg,
        bootcfg::syslinux(&entries, default, rescue).as_bytes(),
    )?;
    write(
        &s.grub_cfg,
        bootcfg::grub(&entries, default, &marker_file(inp.build_id), rescue).as_bytes(),
    )?;
    Ok(s)
}

/// Builds both media into `out_dir` (as [`ISO_FILE`] and [`DISK_FILE`]), using `work` as scratch.
pub fn build(inp: &Inputs, work: &Path, out_dir: &Path) -> Result<(PathBuf, PathBuf), MediaError> {
    for f in [
        ISOLINUX_BIN,
        ISOHYBRID_MBR,
        LDLINUX_C32,
        SYSLINUX_MBR,
        SHIM,
        GRUB_SIGNED,
    ] {
        need(f)?;
    }
    let epoch = inp.epoch.max(FAT_EPOCH);
    let staged = stage(&work.join("staged"), inp)?;
    let iso = out_dir.join(ISO_FILE);
    build_iso(inp, &staged, &work.join("iso"), &iso, epoch)?;
    let disk = out_dir.join(DISK_FILE);
    build_disk(inp, &staged, &work.join("disk"), &disk, epoch)?;
    Ok((iso, disk))
}

fn efi_files(staged: &Staged) -> [(&'static str, &Path); 3] {
    [
        ("/EFI/BOOT/BOOTX64.EFI", Path::new(SHIM)),
        ("/EFI/BOOT/grubx64.efi", Path::new(GRUB_SIGNED)),
        // Debian's GRUB reads its prefix directory's grub.cfg.
        ("/EFI/debian/grub.cfg", staged.grub_cfg.as_path()),
    ]
}

/// The rescue kernel's files on the media, when carried, with the late archive beside them.
fn rescue_files(staged: &Staged) -> impl Iterator<Item = (&str, &Path)> {
    staged
        .rescue
        .iter()
        .flat_map(|(k, i)| {
            [
                (bootcfg::RESCUE_KERNEL_PATH, k.as_path()),
                (bootcfg::RESCUE_INITRD_PATH, i.as_path()),
            ]
        })
        .chain(
            staged
                .late
                .iter()
                .map(|l| (vmrescue_protocol::paths::LATE_MEDIUM_FILE, l.as_path())),
        )
}

fn copy_into(tree: &Path, dest: &str, src: &Path) -> Result<(), MediaError> {
    let to = tree.join(dest.trim_start_matches('/'));
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    fs::copy(src, &to).map_err(io("copying", src))?;
    Ok(())
}

fn build_iso(
    inp: &Inputs,
    staged: &Staged,
    work: &Path,
    out: &Path,
    epoch: u32,
) -> Result<(), MediaError> {
    let tree = work.join("tree");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(&tree).map_err(io("creating", &tree))?;
    let marker = marker_file(inp.build_id);
    let mut files: Vec<(String, &Path)> = vec![
        ("/isolinux/isolinux.bin".into(), Path::new(ISOLINUX_BIN)),
        ("/isolinux/ldlinux.c32".into(), Path::new(LDLINUX_C32)),
        ("/isolinux/isolinux.cfg".into(), &staged.syslinux_cfg),
        (bootcfg::KERNEL_PATH.into(), &staged.kernel),
        (bootcfg::INITRD_PATH.into(), &staged.initrd),
        (marker.clone(), &staged.marker),
        // GRUB booted from the El Torito image sees the ISO9660 as its device.
        ("/boot/grub/grub.cfg".into(), &staged.grub_cfg),
    ];
    files.extend(efi_files(staged).iter().map(|(d, s)| ((*d).to_owned(), *s)));
    files.extend(rescue_files(staged).map(|(d, s)| (d.to_owned(), s)));
    for (dest, src) in &files {
        copy_into(&tree, dest, src)?;
    }
    let efi_img = tree.join("boot/grub/efi.img");
    fat_image(
        &efi_img,
        EFI_IMG_MIB,
        "VMRESCUEEFI",
        id32(inp.build_id, 1),
        &efi_files(staged),
        epoch,
    )?;
    touch_tree(&tree, epoch)?;
    let _ = fs::remove_file(out);
    run(
        "xorriso",
        &[
            os("-as"),
            os("mkisofs"),
            os("-quiet"),
            os("-o"),
            out.as_os_str(),
            os("-V"),
            os("VMRESCUE"),
            os("-R"),
            os("-J"),
            os("-iso-level"),
            os("3"),
            os("-isohybrid-mbr"),
            os(ISOHYBRID_MBR),
            os("-c"),
            os("isolinux/boot.cat"),
            os("-b"),
            os("isolinux/isolinux.bin"),
            os("-no-emul-boot"),
            os("-boot-load-size"),
            os("4"),
            os("-boot-info-table"),
            os("-eltorito-alt-boot"),
            os("-e"),
            os("boot/grub/efi.img"),
            os("-no-emul-boot"),
            os("-isohybrid-gpt-basdat"),
            tree.as_os_str(),
        ],
        epoch,
    )?;
    mark(out, inp.build_id)
}

fn build_disk(
    inp: &Inputs,
    staged: &Staged,
    work: &Path,
    out: &Path,
    epoch: u32,
) -> Result<(), MediaError> {
    fs::create_dir_all(work).map_err(io("creating", work))?;
    let part = work.join("part.img");
    let marker = marker_file(inp.build_id);
    let mut files: Vec<(&str, &Path)> = vec![
        ("/syslinux/syslinux.cfg", &staged.syslinux_cfg),
        (bootcfg::KERNEL_PATH, &staged.kernel),
        (bootcfg::INITRD_PATH, &staged.initrd),
        (&marker, &staged.marker),
    ];
    files.extend(efi_files(staged));
    files.extend(rescue_files(staged));
    fat_image(
        &part,
        DISK_PART_MIB,
        "VMRESCUE",
        id32(inp.build_id, 2),
        &files,
        epoch,
    )?;
    run(
        "syslinux",
        &[
            os("--install"),
            os("--directory"),
            os("/syslinux"),
            part.as_os_str(),
        ],
        epoch,
    )?;
    let code = fs::read(SYSLINUX_MBR).map_err(io("reading", Path::new(SYSLINUX_MBR)))?;
    let sectors = (DISK_PART_MIB << 20) / mbr::SECTOR;
    let s0 =
        mbr::sector0(&code, id32(inp.build_id, 3), sectors as u32).map_err(MediaError::Layout)?;
    let raw = work.join("disk.img");
    let mut disk = vec![0u8; (mbr::FIRST_LBA * mbr::SECTOR) as usize];
    disk[..512].copy_from_slice(&s0);
    disk.extend(fs::read(&part).map_err(io("reading", &part))?);
    write(&raw, &disk)?;
    drop(disk);
    mark(&raw, inp.build_id)?;
    let _ = fs::remove_file(out);
    run(
        "qemu-img",
        &[
            os("convert"),
            os("-q"),
            os("-f"),
            os("raw"),
            os("-O"),
            os("qcow2"),
            raw.as_os_str(),
            out.as_os_str(),
        ],
        epoch,
    )
}
