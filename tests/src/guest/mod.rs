//! A real Debian 12 guest for the tests that check a repair by booting it: built once with
//! debootstrap from Debian's packages (the mirror the machine's own apt uses), cached under a
//! directory keyed by its inputs, turned into ext4 disks with `mkfs.ext4 -d`, and booted with
//! its own kernel and initramfs on a throw-away overlay (nothing written to the disk) while its
//! console is judged (`vmrescue_companion::verify::bootjudge`). Shared with the boot-verify tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmrescue_companion::qemu::accel::Accel;
use vmrescue_companion::qemu::{self, Boot, Config, Drive, Format};
use vmrescue_companion::verify::bootjudge::{self, BootState};
use vmrescue_companion::vm::{QemuVm, Vm};

/// What the guest is built from: changing any of it builds a new one.
const SUITE: &str = "bookworm";
/// lvm2 puts LVM into the guest's initramfs, as on an LVM install (harmless on a plain root).
const INCLUDE: &str = "systemd-sysv,linux-image-amd64,initramfs-tools,udev,e2fsprogs,lvm2";
/// What [`debian_layouts`] adds: mdadm, cryptsetup and btrfs-progs put what an install on
/// those layouts has into the guest and its initramfs; xfsprogs for an XFS root;
/// openssh-server for a login with a key. Apart from the plain guest because each boot of a
/// guest that has them takes longer (mdadm's initramfs script waits for udev at every boot).
const LAYOUTS_INCLUDE: &str = "mdadm,cryptsetup,btrfs-progs,xfsprogs,openssh-server";
/// Filesystem UUID of every guest root disk (its fstab names it).
pub const ROOT_UUID: &str = "3b1d0c6e-5f0a-4d7b-9a62-7c1e2d3f4a5b";
/// A TCG boot of this guest reaches its login prompt in about 35 s on an idle machine.
pub const BOOT_LIMIT: Duration = crate::budgets::GUEST_BOOT;

/// The built guest: its root tree, kernel and initramfs.
pub struct Guest {
    pub root: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The mirror of the machine's own `bookworm` suite (deb822 `debian.sources`, else
/// `sources.list`), as `scripts/setup.sh` finds it; never a host name of ours.
fn mirror() -> Result<String> {
    if let Ok(src) = fs::read_to_string("/etc/apt/sources.list.d/debian.sources") {
        for stanza in src.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or("")
                    .to_owned()
            };
            if field("Suites:").split_whitespace().any(|s| s == SUITE) {
                if let Some(u) = field("URIs:").split_whitespace().next() {
                    return Ok(u.to_owned());
                }
            }
        }
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&"deb") && w.get(2) == Some(&SUITE)).then(|| w[1].to_owned())
        })
        .context("no mirror of the bookworm suite in the machine's apt sources")
}

fn cache_base() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"))
        .join("vmrescue")
}

fn newest(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no {prefix}* in {}", dir.display()))
}

fn build(dir: &Path, mirror: &str, include: &str) -> Result<()> {
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={include}"), SUITE])
        .arg(&tmp)
        .arg(mirror)
        .output()
        .context("running debootstrap (scripts/setup.sh installs it)")?;
    if !out.status.success() {
        bail!(
            "debootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    // What an installer would have written: the root by UUID, a host name.
    fs::write(
        tmp.join("etc/fstab"),
        format!("UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n"),
    )?;
    fs::write(tmp.join("etc/hostname"), "guest\n")?;
    fs::rename(&tmp, dir)?;
    Ok(())
}

/// The guest, built on first use (a few minutes) and then cached.
pub fn debian() -> &'static Guest {
    static GUEST: OnceLock<Guest> = OnceLock::new();
    GUEST.get_or_init(|| cached(INCLUDE.to_owned()))
}

/// The guest with the layouts' tools too ([`LAYOUTS_INCLUDE`]), for the guests on md, LUKS,
/// btrfs and XFS and for an SSH login; built and cached like [`debian`].
pub fn debian_layouts() -> &'static Guest {
    static GUEST: OnceLock<Guest> = OnceLock::new();
    GUEST.get_or_init(|| cached(format!("{INCLUDE},{LAYOUTS_INCLUDE}")))
}

/// The guest debootstrapped with `include`, from the cache (built there on first use).
fn cached(include: String) -> Guest {
    let get = || -> Result<Guest> {
        let mirror = mirror()?;
        let key = vmrescue_protocol::digest::sha256_hex(
            format!("{SUITE}\n{include}\n{mirror}\nminbase\n").as_bytes(),
        );
        let dir = cache_base().join(format!("guest-{}", &key[..16]));
        fs::create_dir_all(cache_base())?;
        let lock = fs::File::create(cache_base().join(format!("guest-{}.lock", &key[..16])))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        if !dir.join("etc/fstab").is_file() {
            build(&dir, &mirror, &include)?;
        }
        Ok(Guest {
            kernel: newest(&dir.join("boot"), "vmlinuz-")?,
            initrd: newest(&dir.join("boot"), "initrd.img-")?,
            root: dir,
        })
    };
    get().unwrap_or_else(|e| panic!("cannot build the Debian test guest: {e:#}"))
}

/// A copy of the guest's tree at `tree`, after `change` edited it.
fn tree_copy(g: &Guest, tree: &Path, change: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let out = Command::new("cp")
        .args(["-a"])
        .arg(&g.root)
        .arg(tree)
        .output()?;
    if !out.status.success() {
        bail!(
            "copying the guest tree: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    change(tree)
}

/// A root disk of the guest at `image`, after `change` edited a copy of its tree.
pub fn disk(image: &Path, change: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    disk_of(debian(), image, change)
}

/// [`disk`] of the guest `g` ([`debian`] or [`debian_layouts`]).
pub fn disk_of(g: &Guest, image: &Path, change: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let work = tempfile::tempdir()?;
    let tree = work.path().join("root");
    tree_copy(g, &tree, change)?;
    crate::fixture::mkfs_ext4_uuid(image, ROOT_MIB, "guestroot", Some(ROOT_UUID), &tree)
}

/// Size of the guest's root filesystem.
pub(crate) const ROOT_MIB: u64 = 1536;

mod boot;
mod disks;

pub use boot::{boot, boot_disks, log_in, Booted, Written};
pub use disks::*;

/// The UUID [`gone_volume_fstab`] names: no disk carries it.
pub const GONE_UUID: &str = "5e1f0c2a-7b3d-4c9e-8f10-2a3b4c5d6e7f";

/// Breaks a guest tree the way a deleted data volume does: its fstab still names the volume
/// (by UUID, without `nofail`), so systemd waits for it at every boot. The wait has no end
/// (`x-systemd.device-timeout=0`), so a boot of the broken guest hangs on that job however
/// long a test looks at it, on a fast machine as on a slow one.
pub fn gone_volume_fstab(root: &Path) -> Result<()> {
    fs::write(
        root.join("etc/fstab"),
        format!(
            "UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n\
             UUID={GONE_UUID} /srv/data ext4 defaults,x-systemd.device-timeout=0 0 2\n"
        ),
    )?;
    Ok(())
}

/// Breaks a guest tree like [`gone_volume_fstab`], but systemd gives up on the volume after
/// 5 s and the boot drops to emergency mode: a broken boot that ends by itself, for a test
/// that needs a boot that fails rather than one that hangs (nobody waits out a time limit).
pub fn gone_volume_fstab_failing(root: &Path) -> Result<()> {
    fs::write(
        root.join("etc/fstab"),
        format!(
            "UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n\
             UUID={GONE_UUID} /srv/data ext4 defaults,x-systemd.device-timeout=5s 0 2\n"
        ),
    )?;
    Ok(())
}

/// Appends `text` to the guest tree's file `rel` (`etc/passwd`).
pub fn append(root: &Path, rel: &str, text: &str) -> Result<()> {
    let p = root.join(rel);
    let mut s = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    s.push_str(text);
    fs::write(&p, s)?;
    Ok(())
}
