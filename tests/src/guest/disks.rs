//! The guest's disks laid out as installers lay them out: syslinux on a FAT partition of
//! their own, the root on a partition, on btrfs subvolumes, on LVM, on md RAID1, or XFS on LVM.

use super::*;

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
