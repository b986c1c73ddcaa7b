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

/// The guest on btrfs as Ubuntu's and Fedora's installers lay it out, booting through
/// syslinux with `rootflags=subvol=@`: the filesystem (UUID [`ROOT_UUID`]) is the disk's
/// second partition, its root in the subvolume `@` (after `change`), /home in `@home` (alice's
/// notes), the top level holding nothing else; fstab mounts both with `subvol=`. The tree is
/// written by `mkfs.btrfs --rootdir`; the subvolumes are made in a throw-away VM on the rescue
/// kernel (`@` a snapshot of the top level, whose own copy is then removed).
pub fn btrfs_syslinux_disk(image: &Path, change: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let g = debian_layouts();
    let work = tempfile::tempdir()?;
    let tree = work.path().join("root");
    tree_copy(g, &tree, |tree| {
        empty_boot(tree)?;
        fs::write(
            tree.join("etc/fstab"),
            format!(
                "UUID={ROOT_UUID} / btrfs defaults,subvol=@ 0 0\n\
                 UUID={ROOT_UUID} /home btrfs defaults,subvol=@home 0 0\n"
            ),
        )?;
        change(tree)
    })?;
    let fs_image = work.path().join("root.btrfs");
    fs::File::create(&fs_image)?.set_len(BTRFS_ROOT_MIB << 20)?;
    crate::fixture::run(
        Command::new("mkfs.btrfs")
            .args(["-q", "-f", "-U", ROOT_UUID, "-L", "guestroot", "--rootdir"])
            .arg(&tree)
            .arg(&fs_image),
    )
    .context("mkfs.btrfs --rootdir")?;
    let script = r#"$bb mount -t btrfs /dev/vda /mnt || die "mount"
/sbin/btrfs subvolume snapshot /mnt /mnt/@ >/dev/null || die "snapshot @"
for e in /mnt/* /mnt/.[!.]*; do
  [ "$e" = /mnt/@ ] || [ ! -e "$e" ] || $bb rm -rf "$e" || die "removing $e"
done
/sbin/btrfs subvolume create /mnt/@home >/dev/null || die "subvolume @home"
$bb mkdir /mnt/@home/alice || die "mkdir"
$bb cp /crash-payload/notes.txt /mnt/@home/alice/notes.txt || die "notes"
$bb umount /mnt || die "umount"
mark laid-out
power_off
"#;
    let boot = crate::crash::crash_guest_on(
        crate::crash::CrashKernel::Rescue,
        &[&fs_image],
        script,
        &[("notes.txt", ALICE_NOTES)],
    )?;
    boot.expect(&["laid-out"])?;
    // mkfs.btrfs --rootdir grows the image when the tree needs more: the partition takes
    // what it made.
    let mib = fs::metadata(&fs_image)?.len().div_ceil(1 << 20);
    syslinux_boot(
        g,
        image,
        &format!("UUID={ROOT_UUID} rootflags=subvol=@"),
        &fs_image,
        "83",
        mib,
    )
}

/// The btrfs root's size (its DUP metadata takes more room than ext4's).
const BTRFS_ROOT_MIB: u64 = 2048;

/// A disk of the guest that boots only through its firmware and its own boot loader, as a
/// BIOS guest of an older image does: an MBR with syslinux's boot code, a FAT partition holding
/// syslinux, the kernel and initramfs (no fstab line names it), and the root (after `change`)
/// on the second partition, its /boot empty; syslinux writes to the serial console and boots
/// with `console=ttyS0`. Made without mounting anything (mtools, `syslinux --offset`).
pub fn syslinux_disk(image: &Path, change: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    syslinux_disk_broken(debian(), image, change, |_| Ok(()))
}

/// [`syslinux_disk`] of the guest `g`, whose root filesystem `break_fs` damages before it is
/// placed; the root filesystem's bytes are at [`SYSLINUX_ROOT`] on the disk.
pub fn syslinux_disk_broken(
    g: &Guest,
    image: &Path,
    change: impl FnOnce(&Path) -> Result<()>,
    break_fs: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let work = tempfile::tempdir()?;
    let root = work.path().join("root.img");
    disk_of(g, &root, |tree| {
        empty_boot(tree)?;
        change(tree)
    })?;
    break_fs(&root)?;
    syslinux_boot(
        g,
        image,
        &format!("UUID={ROOT_UUID}"),
        &root,
        "83",
        ROOT_MIB,
    )
}

/// Where a syslinux disk's root filesystem is (its second partition).
pub const SYSLINUX_ROOT: crate::layouts::Extent = crate::layouts::Extent {
    offset: (BOOT_START_MIB + BOOT_MIB) << 20,
    len: ROOT_MIB << 20,
};

/// Size of the guest's root filesystem.
const ROOT_MIB: u64 = 1536;

/// Empties the tree's /boot (the kernel and initramfs go to the boot loader's partition).
fn empty_boot(tree: &Path) -> Result<()> {
    for e in fs::read_dir(tree.join("boot"))?.flatten() {
        fs::remove_file(e.path())?;
    }
    for link in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        let _ = fs::remove_file(tree.join(link));
    }
    Ok(())
}

/// The LVM guest's /home: alice's notes.
pub const ALICE_NOTES: &[u8] = b"remember the milk\n";

/// The guest as a default LVM install lays it out, booting through syslinux from its FAT
/// partition (vda1) with `root=/dev/mapper/vg0-root`: vda2 an LVM physical volume of `vg0`
/// holding `root` (the guest, after `change`) and `home` (alice's notes); fstab names them
/// `/dev/mapper/vg0-root` and `/dev/vg0/home`. `break_fs` runs on each filesystem image
/// (root, then home) before it is placed. Returns where each LV's bytes are on the disk.
pub fn lvm_syslinux_disk(
    image: &Path,
    change: impl FnOnce(&Path) -> Result<()>,
    break_fs: impl Fn(&Path) -> Result<()>,
) -> Result<(crate::layouts::Extent, crate::layouts::Extent)> {
    const HOME_MIB: u64 = 64;
    let work = tempfile::tempdir()?;
    let root = work.path().join("root.img");
    disk(&root, |tree| {
        empty_boot(tree)?;
        fs::write(
            tree.join("etc/fstab"),
            "/dev/mapper/vg0-root / ext4 errors=remount-ro 0 1\n/dev/vg0/home /home ext4 defaults 0 2\n",
        )?;
        change(tree)
    })?;
    break_fs(&root)?;
    let home_tree = work.path().join("home");
    fs::create_dir_all(home_tree.join("alice"))?;
    fs::write(home_tree.join("alice/notes.txt"), ALICE_NOTES)?;
    let home = work.path().join("home.img");
    crate::fixture::mkfs_ext4(&home, HOME_MIB, "home", &home_tree)?;
    break_fs(&home)?;
    let pv = work.path().join("pv.img");
    let pv_mib = ROOT_MIB + HOME_MIB + 8;
    let extents = crate::layouts::lvm_vg(
        &pv,
        pv_mib,
        "vg0",
        &[
            crate::layouts::Lv {
                name: "root",
                size_mib: ROOT_MIB,
                content: Some(&root),
            },
            crate::layouts::Lv {
                name: "home",
                size_mib: HOME_MIB,
                content: Some(&home),
            },
        ],
    )?;
    syslinux_boot(debian(), image, "/dev/mapper/vg0-root", &pv, "8e", pv_mib)?;
    let at = |e: crate::layouts::Extent| crate::layouts::Extent {
        offset: ((BOOT_START_MIB + BOOT_MIB) << 20) + e.offset,
        len: e.len,
    };
    Ok((at(extents[0]), at(extents[1])))
}

/// What a metadata-1.0 md member needs past its data: the superblock at the end.
const MD_SUPERBLOCK_MIB: u64 = 4;

/// The guest with its root mirrored by md RAID1 across two disks, as an install with a
/// mirrored root lays it out: each disk boots through syslinux from its own FAT partition (the
/// same on both, so either disk boots alone) with `root=UUID=...`, and its second partition
/// (MBR type fd) is a member of the array `root` (metadata 1.0: the root filesystem starts
/// each member, the superblock is at its end). `break_fs` runs on the root filesystem before
/// it is mirrored. Returns where the root filesystem's bytes are on each disk.
pub fn raid1_syslinux_disks(
    disks: [&Path; 2],
    break_fs: impl Fn(&Path) -> Result<()>,
) -> Result<crate::layouts::Extent> {
    let work = tempfile::tempdir()?;
    let root = work.path().join("root.img");
    let g = debian_layouts();
    disk_of(g, &root, empty_boot)?;
    break_fs(&root)?;
    let member_mib = ROOT_MIB + MD_SUPERBLOCK_MIB;
    let members = [work.path().join("a.img"), work.path().join("b.img")];
    for m in &members {
        sparse_copy(&root, m)?;
        fs::OpenOptions::new()
            .write(true)
            .open(m)?
            .set_len(member_mib << 20)?;
    }
    crate::layouts::md_raid1(&[&members[0], &members[1]], "root")?;
    for (image, member) in disks.iter().zip(&members) {
        syslinux_boot(
            g,
            image,
            &format!("UUID={ROOT_UUID}"),
            member,
            "fd",
            member_mib,
        )?;
    }
    Ok(SYSLINUX_ROOT)
}

/// Copies `from` to `to` keeping its holes (guest disks are mostly holes).
pub fn sparse_copy(from: &Path, to: &Path) -> Result<()> {
    crate::fixture::run(Command::new("cp").arg("--sparse=always").arg(from).arg(to))
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// A file the XFS guest's last writes before the power cut hold (in its log only).
pub const LATE_WRITE: (&str, &[u8]) = (
    "home/alice/late.txt",
    b"written just before the power cut\n",
);

/// The guest as a RHEL-like install lays it out, booting through syslinux from its FAT
/// partition with `root=/dev/mapper/rhel-root`: the second partition `/boot` (XFS, label
/// `boot`), the third an LVM physical volume of `rhel` holding `root` (XFS: the guest's tree
/// after `change`, then [`LATE_WRITE`] left in its log by a power cut) and `swap`; fstab names
/// the LVs by `/dev/mapper/` path and /boot by label. Returns where the
/// root LV's bytes are on the disk.
pub fn xfs_lvm_syslinux_disk(
    image: &Path,
    change: impl FnOnce(&Path) -> Result<()>,
) -> Result<crate::layouts::Extent> {
    const SWAP_MIB: u64 = 64;
    let work = tempfile::tempdir()?;
    let tree = work.path().join("root");
    let g = debian_layouts();
    tree_copy(g, &tree, |tree| {
        empty_boot(tree)?;
        // The package cache: nothing boots from it, and it would be copied twice.
        for e in fs::read_dir(tree.join("var/cache/apt/archives"))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                fs::remove_file(e.path())?;
            }
        }
        fs::create_dir_all(tree.join("home/alice"))?;
        fs::write(
            tree.join("etc/fstab"),
            "/dev/mapper/rhel-root / xfs defaults 0 0\nLABEL=boot /boot xfs defaults 0 0\n\
             /dev/mapper/rhel-swap none swap defaults 0 0\n",
        )?;
        change(tree)
    })?;
    let tree_image = work.path().join("tree.ext4");
    crate::fixture::mkfs_ext4(&tree_image, ROOT_MIB, "tree", &tree)?;
    fs::remove_dir_all(&tree)?;
    let root = work.path().join("root.xfs");
    crate::crash::xfs_tree_with_dirty_log(
        &root,
        ROOT_MIB,
        "guestroot",
        &tree_image,
        &[LATE_WRITE],
    )?;
    let swap = work.path().join("swap.img");
    fs::File::create(&swap)?.set_len(SWAP_MIB << 20)?;
    crate::fixture::run(Command::new("mkswap").arg("-q").arg(&swap)).context("mkswap")?;
    let pv = work.path().join("pv.img");
    let pv_mib = ROOT_MIB + SWAP_MIB + 8;
    let extents = crate::layouts::lvm_vg(
        &pv,
        pv_mib,
        "rhel",
        &[
            crate::layouts::Lv {
                name: "root",
                size_mib: ROOT_MIB,
                content: Some(&root),
            },
            crate::layouts::Lv {
                name: "swap",
                size_mib: SWAP_MIB,
                content: Some(&swap),
            },
        ],
    )?;
    // /boot as RHEL has it, XFS (the boot loader reads its own copy on the FAT partition).
    let boot = work.path().join("boot.xfs");
    crate::crash::mkfs_xfs(&boot, XFS_BOOT_MIB, "boot")?;
    syslinux_boot_parts(
        g,
        image,
        "/dev/mapper/rhel-root",
        &[(&boot, "83", XFS_BOOT_MIB), (&pv, "8e", pv_mib)],
    )?;
    Ok(crate::layouts::Extent {
        offset: ((BOOT_START_MIB + BOOT_MIB + XFS_BOOT_MIB) << 20) + extents[0].offset,
        len: extents[0].len,
    })
}

const BOOT_START_MIB: u64 = 1;
const BOOT_MIB: u64 = 64;
/// The RHEL-like guest's XFS /boot (XFS needs 300 MiB at least).
const XFS_BOOT_MIB: u64 = 300;

/// Writes `image`: an MBR with syslinux's boot code, a FAT boot partition with syslinux, the
/// guest's kernel and initramfs booting `root=ROOT`, and `second` (`second_mib`, MBR type
/// `kind`) as the second partition.
fn syslinux_boot(
    g: &Guest,
    image: &Path,
    root_arg: &str,
    second: &Path,
    kind: &str,
    second_mib: u64,
) -> Result<()> {
    syslinux_boot_parts(g, image, root_arg, &[(second, kind, second_mib)])
}

/// [`syslinux_boot`] with `parts` (content, MBR type, MiB) as the partitions after the FAT
/// one, in order, each right after the one before.
fn syslinux_boot_parts(
    g: &Guest,
    image: &Path,
    root_arg: &str,
    parts: &[(&Path, &str, u64)],
) -> Result<()> {
    let work = tempfile::tempdir()?;
    let second_start = BOOT_START_MIB + BOOT_MIB;
    let total: u64 = parts.iter().map(|p| p.2).sum();
    fs::File::create(image)?.set_len((second_start + total + 1) << 20)?;
    let run = |cmd: &mut Command| -> Result<()> {
        let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        if !out.status.success() {
            bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(image);
    sfdisk.stdin(std::process::Stdio::piped());
    let mut child = sfdisk.spawn()?;
    let mut table =
        format!("label: dos\nstart={BOOT_START_MIB}MiB, size={BOOT_MIB}MiB, type=e, bootable\n");
    let mut at = second_start;
    for (_, kind, mib) in parts {
        table.push_str(&format!("start={at}MiB, size={mib}MiB, type={kind}\n"));
        at += mib;
    }
    std::io::Write::write_all(
        child.stdin.as_mut().context("sfdisk stdin")?,
        table.as_bytes(),
    )?;
    drop(child.stdin.take());
    if !child.wait()?.success() {
        bail!("sfdisk could not partition {}", image.display());
    }
    let offset = BOOT_START_MIB << 20;
    run(Command::new("mkfs.fat")
        .args(["-F", "16", "-n", "BOOT"])
        .arg(format!("--offset={}", offset / 512))
        .arg(image)
        .arg((BOOT_MIB << 10).to_string()))?;
    let fat = format!("{}@@{offset}", image.display());
    let cfg = work.path().join("syslinux.cfg");
    fs::write(
        &cfg,
        format!(
            "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 1\nDEFAULT debian\nLABEL debian\n  KERNEL vmlinuz\n  \
             APPEND initrd=initrd.img root={root_arg} ro console=ttyS0\n"
        ),
    )?;
    for (src, name) in [
        (g.kernel.as_path(), "vmlinuz"),
        (g.initrd.as_path(), "initrd.img"),
        (cfg.as_path(), "syslinux.cfg"),
    ] {
        run(Command::new("mcopy")
            .args(["-i", &fat])
            .arg(src)
            .arg(format!("::{name}")))?;
    }
    run(Command::new("syslinux")
        .args(["--install", "--offset", &offset.to_string()])
        .arg(image))?;
    run(Command::new("dd")
        .arg("if=/usr/lib/syslinux/mbr/mbr.bin")
        .arg(format!("of={}", image.display()))
        .args(["bs=440", "count=1", "conv=notrunc", "status=none"]))?;
    let mut at = second_start;
    for (content, _, mib) in parts {
        run(Command::new("dd")
            .arg(format!("if={}", content.display()))
            .arg(format!("of={}", image.display()))
            .arg(format!("seek={at}"))
            .args(["bs=1M", "conv=notrunc,sparse", "status=none"]))?;
        at += mib;
    }
    Ok(())
}

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

/// What a boot of the guest showed.
pub struct Booted {
    pub state: BootState,
    pub console: String,
}

/// Boots the guest's own kernel and initramfs on `image` (behind an overlay: nothing written)
/// until its console shows a login prompt, emergency mode or a panic, or `BOOT_LIMIT` passes.
pub fn boot(image: &Path) -> Result<Booted> {
    boot_disks(&[image], Written::No)
}

/// Whether a boot writes to its disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Behind overlays; judged until login, emergency mode or a panic.
    No,
    /// On the disks themselves, until the guest powers itself off (or `BOOT_LIMIT` passes):
    /// what it wrote (its journal) stays.
    UntilPowerOff,
}

/// The guest's VM on `disks` (in `dir`), its console logged to `dir/console.log`.
fn guest_config(dir: &Path, disks: &[&Path], written: Written) -> Result<Config> {
    let g = debian();
    let mut drives = Vec::new();
    for (i, image) in disks.iter().enumerate() {
        let base = Drive::new(image, Format::Raw);
        if written == Written::UntilPowerOff {
            drives.push(base);
            continue;
        }
        let overlay = dir.join(format!("overlay{i}.qcow2"));
        let out = Command::new("qemu-img")
            .args(qemu::overlay_args(&base, &overlay))
            .output()?;
        if !out.status.success() {
            bail!("qemu-img: {}", String::from_utf8_lossy(&out.stderr));
        }
        drives.push(base.overlay(&overlay));
    }
    Ok(Config::new(
        "vmrescue-guest-boot",
        Accel::Tcg,
        Boot::Kernel {
            kernel: g.kernel.clone(),
            initrd: Some(g.initrd.clone()),
            cmdline: format!("root=UUID={ROOT_UUID} ro console=ttyS0"),
        },
    )
    .memory(1024)
    .console_log(dir.join("console.log"))
    .drives(drives))
}

/// [`boot`] with `disks` attached in order (vda, vdb...).
pub fn boot_disks(disks: &[&Path], written: Written) -> Result<Booted> {
    let dir = tempfile::tempdir()?;
    let console_log = dir.path().join("console.log");
    let config = guest_config(dir.path(), disks, written)?;
    let mut vm = QemuVm::new(qemu::binary(), config, dir.path().join("qemu.log"));
    vm.start()?;
    let until = Instant::now() + BOOT_LIMIT;
    let state = loop {
        std::thread::sleep(Duration::from_secs(1));
        let text =
            String::from_utf8_lossy(&vm.console_tail(4 << 20).unwrap_or_default()).into_owned();
        let s = bootjudge::judge(&text);
        let decided = written == Written::No
            && matches!(
                s,
                BootState::Booted | BootState::Emergency | BootState::Panic
            );
        if decided || vm.exited().is_some() || Instant::now() > until {
            break s;
        }
    };
    vm.stop(Duration::ZERO);
    let console = String::from_utf8_lossy(&fs::read(&console_log).unwrap_or_default()).into_owned();
    Ok(Booted { state, console })
}

/// Boots the guest on `disks` (on overlays) and logs in on its serial console as `user` with
/// `password`, as an operator would, then runs `command` there. Returns the console from the
/// login on; an error says which prompt did not come.
pub fn log_in(disks: &[&Path], user: &str, password: &str, command: &str) -> Result<String> {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("console.sock");
    let config = guest_config(dir.path(), disks, Written::No)?.console_socket(&socket);
    let mut vm = QemuVm::new(qemu::binary(), config, dir.path().join("qemu.log"));
    vm.start()?;
    let until = Instant::now() + BOOT_LIMIT;
    let mut stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => bail!("the console socket {}: {e}", socket.display()),
        }
    };
    // The log file has what the console says: what comes on the socket is drained.
    let mut drain = stream.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
    });
    let log = dir.path().join("console.log");
    let bytes = || fs::read(&log).unwrap_or_default();
    let has = |t: &[u8], s: &str| t.windows(s.len()).any(|w| w == s.as_bytes());
    let wait_for = |what: &str, from: usize, done: &dyn Fn(&[u8]) -> bool| -> Result<usize> {
        loop {
            let t = bytes();
            if t.len() >= from && done(&t[from..]) {
                return Ok(t.len());
            }
            if Instant::now() > until {
                bail!(
                    "no {what} on the console; its tail:\n{}",
                    bootjudge::tail(&String::from_utf8_lossy(&t), 30).join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let booted = |t: &[u8]| bootjudge::judge(&String::from_utf8_lossy(t)) == BootState::Booted;
    let mut at = wait_for("login prompt", 0, &booted)?;
    let start = at;
    stream.write_all(format!("{user}\n").as_bytes())?;
    at = wait_for("password prompt", at, &|t| has(t, "Password:"))?;
    stream.write_all(format!("{password}\n").as_bytes())?;
    at = wait_for("shell prompt", at, &|t| {
        let t = t.trim_ascii_end();
        t.ends_with(b"#") || t.ends_with(b"$")
    })?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let marker = "vmrescue-test-done";
    stream.write_all(format!("echo {marker}-$((6*7))\n").as_bytes())?;
    wait_for("command's output", at, &|t| has(t, &format!("{marker}-42")))?;
    vm.stop(Duration::ZERO);
    Ok(String::from_utf8_lossy(&bytes()[start..]).into_owned())
}
