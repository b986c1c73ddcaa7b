//! Volume layouts real guests have, laid out by the real tools without activating anything on
//! the host (whose kernel has no device-mapper and no md): LVM physical volumes, volume groups
//! and linear logical volumes written by `pvcreate` / `vgcreate` / `lvcreate` onto a loop
//! device over an image file, with their own throw-away LVM configuration (no backups in the
//! host's /etc/lvm, no other device scanned, no udev) and lvm's no-activation mode
//! (`--driverloaded n`); a logical volume's content is then written at the offset of its
//! extents, which lvm reports. LUKS headers come from `cryptsetup luksFormat` on an image file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::fixture::{self, run, Part};

/// A loop device over an image file, detached when dropped.
struct Loop(PathBuf);

impl Loop {
    fn attach(image: &Path) -> Result<Loop> {
        let out = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image))
        .context("attaching a loop device (losetup)")?;
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(Loop(PathBuf::from(dev)))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// An LVM command confined to `dev`, its configuration in `conf_dir`; its standard output.
fn lvm(conf_dir: &Path, dev: &Path, args: &[&str]) -> Result<String> {
    let filter = format!(
        "devices {{ filter = [ \"a|^{}$|\", \"r|.*|\" ] obtain_device_list_from_udev = 0 }} activation {{ udev_sync = 0 udev_rules = 0 }} backup {{ backup = 0 archive = 0 }}",
        dev.display()
    );
    let out = run(Command::new(args[0])
        .args(&args[1..])
        .args(["--config", &filter])
        .env("LVM_SYSTEM_DIR", conf_dir)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes `image` (`size_mib`) an LVM physical volume in a new volume group `vg`, with no
/// logical volume (creating one needs device-mapper; the layouts that need them are made in a
/// throw-away VM).
pub fn lvm_pv(image: &Path, size_mib: u64, vg: &str) -> Result<()> {
    let f = fs::File::create(image)?;
    f.set_len(size_mib << 20)?;
    drop(f);
    let conf = tempfile::tempdir()?;
    fs::write(conf.path().join("lvm.conf"), "")?;
    let lo = Loop::attach(image)?;
    let dev = lo.0.to_string_lossy().into_owned();
    lvm(conf.path(), &lo.0, &["pvcreate", "-ff", "-y", &dev])?;
    lvm(conf.path(), &lo.0, &["vgcreate", vg, &dev])?;
    Ok(())
}

/// A logical volume to lay out: its name, size and, when given, the filesystem image written
/// into it.
pub struct Lv<'a> {
    pub name: &'a str,
    pub size_mib: u64,
    pub content: Option<&'a Path>,
}

/// Where a logical volume's bytes are inside its physical volume image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// Makes `image` (`size_mib`) an LVM physical volume of a new volume group `vg` holding the
/// linear logical volumes `lvs` (in order, each contiguous), each filled with its content.
/// Returns where each LV's bytes are in `image`.
pub fn lvm_vg(image: &Path, size_mib: u64, vg: &str, lvs: &[Lv]) -> Result<Vec<Extent>> {
    lvm_pv(image, size_mib, vg)?;
    let conf = tempfile::tempdir()?;
    fs::write(conf.path().join("lvm.conf"), "")?;
    let lo = Loop::attach(image)?;
    let num = |s: &str| -> Result<u64> {
        s.trim()
            .parse()
            .with_context(|| format!("lvm printed {s:?}, not a number"))
    };
    let mut out = Vec::new();
    for lv in lvs {
        let size = format!("{}m", lv.size_mib);
        lvm(
            conf.path(),
            &lo.0,
            &[
                "lvcreate",
                "--driverloaded",
                "n",
                "-an",
                "-Zn",
                "-L",
                &size,
                "-n",
                lv.name,
                vg,
            ],
        )?;
    }
    let pe_start = num(&lvm(
        conf.path(),
        &lo.0,
        &[
            "pvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "pe_start",
        ],
    )?)?;
    let extent = num(&lvm(
        conf.path(),
        &lo.0,
        &[
            "vgs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_extent_size",
            vg,
        ],
    )?)?;
    for lv in lvs {
        let full = format!("{vg}/{}", lv.name);
        // "/dev/loop0:0-24": the LV's first and last physical extent.
        let ranges = lvm(
            conf.path(),
            &lo.0,
            &["lvs", "--noheadings", "-o", "seg_pe_ranges", &full],
        )?;
        let range = ranges
            .trim()
            .rsplit_once(':')
            .map(|(_, r)| r.to_owned())
            .with_context(|| format!("{full}: no extent range in {ranges:?}"))?;
        let (first, last) = range
            .split_once('-')
            .with_context(|| format!("{full}: extent range {range:?}"))?;
        let (first, last) = (num(first)?, num(last)?);
        let e = Extent {
            offset: pe_start + first * extent,
            len: (last - first + 1) * extent,
        };
        if let Some(src) = lv.content {
            let len = fs::metadata(src)?.len();
            anyhow::ensure!(
                len <= e.len,
                "{}: {len} bytes do not fit in {full} ({} bytes)",
                src.display(),
                e.len
            );
            // Sparse, streamed: a guest's root is large and mostly holes.
            run(Command::new("dd")
                .arg(format!("if={}", src.display()))
                .arg(format!("of={}", image.display()))
                .arg(format!("seek={}", e.offset))
                .args([
                    "bs=1M",
                    "oflag=seek_bytes",
                    "conv=notrunc,sparse",
                    "status=none",
                ]))
            .with_context(|| format!("writing {} into {full}", src.display()))?;
        }
        out.push(e);
    }
    Ok(out)
}

/// Copies `len` bytes at `offset` of `image` into a file of their own (a logical volume's
/// filesystem, to check on the host).
pub fn extract(image: &Path, at: Extent, to: &Path) -> Result<()> {
    let _ = fs::remove_file(to);
    run(Command::new("dd")
        .arg(format!("if={}", image.display()))
        .arg(format!("of={}", to.display()))
        .arg(format!("skip={}", at.offset))
        .arg(format!("count={}", at.len))
        .args([
            "bs=1M",
            "iflag=skip_bytes,count_bytes",
            "conv=sparse",
            "status=none",
        ]))
    .with_context(|| format!("copying out of {}", image.display()))?;
    // A sparse copy ends at its last data: the filesystem's size is the extent's.
    fs::OpenOptions::new()
        .write(true)
        .open(to)?
        .set_len(at.len)?;
    Ok(())
}

/// Makes `image` (`size_mib`) a LUKS2 container (locked: its key is thrown away) with random
/// content behind its header.
pub fn luks(image: &Path, size_mib: u64) -> Result<()> {
    luks_format(image, size_mib, &fixture::bytes(7, 32))?;
    Ok(())
}

/// Makes `image` (`size_mib`) a LUKS2 container for `key` (a fast PBKDF: tests only); returns
/// its UUID.
pub fn luks_format(image: &Path, size_mib: u64, key: &[u8]) -> Result<String> {
    let f = fs::File::create(image)?;
    f.set_len(size_mib << 20)?;
    drop(f);
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("key");
    fs::write(&key_file, key)?;
    run(Command::new("cryptsetup")
        .args(["luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2"])
        // 512-byte sectors: the content is a filesystem image made apart (1 KiB blocks when
        // small), which a kernel cannot mount on a 4096-byte-sector mapping (cryptsetup's
        // default for an image file).
        .args(["--sector-size", "512"])
        .args(["--pbkdf-force-iterations", "1000"])
        .arg(image)
        .arg(&key_file))
    .context("cryptsetup luksFormat")?;
    let out = run(Command::new("cryptsetup").arg("luksUUID").arg(image))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Makes `image` a LUKS2 container for `key` holding `content` (a filesystem image): the
/// header by `cryptsetup luksFormat` here, the content written through dm-crypt in a
/// throw-away VM on the rescue kernel (the host's kernel here has no device-mapper). Returns
/// its UUID.
pub fn luks_with(image: &Path, key: &[u8], content: &Path) -> Result<String> {
    let data = fs::read(content)?;
    // LUKS2's data starts 16 MiB in.
    let size_mib = 16 + (data.len() as u64).div_ceil(1 << 20) + 1;
    let uuid = luks_format(image, size_mib, key)?;
    let script = r#"/sbin/cryptsetup open --type luks --disable-locks --key-file /crash-payload/key /dev/vda fill || die "cryptsetup open"
$bb dd if=/crash-payload/content of=/dev/mapper/fill bs=1M 2>/dev/null || die "dd"
$bb sync
/sbin/cryptsetup close fill || die "cryptsetup close"
mark filled
power_off
"#;
    let boot = crate::crash::crash_guest_on(
        crate::crash::CrashKernel::Rescue,
        &[image],
        script,
        &[("key", key), ("content", &data)],
    )?;
    boot.expect(&["filled"])?;
    Ok(uuid)
}

/// What the LUKS2 container `image` holds, opened with `key` in a throw-away VM on the rescue
/// kernel and copied into the new image file `out` (`size_mib`), for the host to read.
pub fn luks_content(image: &Path, key: &[u8], out: &Path, size_mib: u64) -> Result<()> {
    fs::File::create(out)?.set_len(size_mib << 20)?;
    let script = format!(
        r#"/sbin/cryptsetup open --type luks --readonly --disable-locks --key-file /crash-payload/key /dev/vda out || die "cryptsetup open"
$bb dd if=/dev/mapper/out of=/dev/vdb bs=1M count={size_mib} 2>/dev/null || die "dd"
$bb sync
/sbin/cryptsetup close out || die "cryptsetup close"
mark copied
power_off
"#
    );
    let boot = crate::crash::crash_guest_on(
        crate::crash::CrashKernel::Rescue,
        &[image, out],
        &script,
        &[("key", key)],
    )?;
    boot.expect(&["copied"])
}

/// The SHA-256 of `path` inside subvolume `subvol` (`/` for the top level) of the btrfs
/// filesystem on `dev` (`/dev/vda2`: the first disk is `disk`), read in a throw-away VM on
/// the rescue kernel (the host never mounts it); `None` when the file is not there.
pub fn btrfs_file_sha(disk: &Path, dev: &str, subvol: &str, path: &str) -> Result<Option<String>> {
    let script = format!(
        r#"wait_dev {dev}
$bb mount -t btrfs -o ro,subvol={subvol} {dev} /mnt || die "mount"
if [ -f "/mnt{path}" ]; then
  set -- $($bb sha256sum "/mnt{path}")
  mark "sha $1"
else
  mark absent
fi
$bb umount /mnt
power_off
"#
    );
    let boot =
        crate::crash::crash_guest_on(crate::crash::CrashKernel::Rescue, &[disk], &script, &[])?;
    let marks = boot.marks();
    if marks.contains(&"absent") {
        return Ok(None);
    }
    marks
        .iter()
        .find_map(|m| m.strip_prefix("sha "))
        .map(|s| Some(s.to_owned()))
        .with_context(|| format!("no checksum of {path} on the console:\n{}", boot.tail()))
}

/// Makes `image` (`size_mib`) an LVM physical volume of `vg` holding the thin pool `pool`
/// (`pool_mib`) and in it the thin LV `lv`, filled with `content` (a filesystem image of the
/// LV's size), made by lvm in a throw-away VM on the rescue kernel (dm-thin built in); then
/// damages the pool's metadata as a bad write does: a byte of the metadata space map's index
/// block (the superblock says where it is) flipped, so that thin_check fails on its checksum
/// and the pool no longer activates, while thin_repair, which rebuilds the space maps from the
/// mapping trees, loses nothing.
pub fn thin_pool_damaged(
    image: &Path,
    size_mib: u64,
    vg: &str,
    pool_mib: u64,
    lv: &str,
    content: &Path,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    fs::File::create(image)?.set_len(size_mib << 20)?;
    let lv_mib = fs::metadata(content)?.len() >> 20;
    let script = format!(
        r#"$bb mkdir -p /run/lock/lvm /run/lvm /etc/lvm
C='devices {{ filter = [ "a|^/dev/vda$|", "r|.*|" ] obtain_device_list_from_udev = 0 use_devicesfile = 0 }} activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 }} global {{ use_lvmpolld = 0 thin_check_executable = "/sbin/thin_check" }} backup {{ backup = 0 archive = 0 }}'
lvm() {{ /sbin/lvm "$@" --config "$C"; }}
lvm pvcreate -y -ff /dev/vda >/dev/null || die "pvcreate"
lvm vgcreate {vg} /dev/vda >/dev/null || die "vgcreate"
lvm lvcreate -y -T -L {pool_mib}m {vg}/pool >/dev/null || die "lvcreate pool"
lvm lvcreate -y -V {lv_mib}m -T {vg}/pool -n {lv} >/dev/null || die "lvcreate {lv}"
$bb dd if=/dev/vdb of=/dev/mapper/{vg}-{lv} bs=1M 2>/dev/null || die "dd"
$bb sync
lvm vgchange -an {vg} >/dev/null || die "vgchange -an"
r=$(lvm lvs -a --noheadings -o seg_pe_ranges {vg}/pool_tmeta) || die "lvs pool_tmeta"
r=${{r##*:}}
first=${{r%-*}}
start=$(lvm pvs --noheadings --units b --nosuffix -o pe_start /dev/vda) || die "pvs"
ext=$(lvm vgs --noheadings --units b --nosuffix -o vg_extent_size {vg}) || die "vgs"
mark "tmeta $(( start + first * ext ))"
power_off
"#
    );
    let boot = crate::crash::crash_guest_on(
        crate::crash::CrashKernel::Rescue,
        &[image, content],
        &script,
        &[],
    )?;
    let tmeta: u64 = boot
        .marks()
        .iter()
        .find_map(|m| m.strip_prefix("tmeta "))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| {
            format!(
                "where the pool's metadata is was not said:\n{}",
                boot.tail()
            )
        })?;
    // The thin superblock: the metadata space map root (nr_blocks, nr_allocated, index
    // block, ref count root) is 192 bytes in; its index block number 16 bytes further.
    let f = fs::OpenOptions::new().read(true).write(true).open(image)?;
    let mut word = [0u8; 8];
    f.read_exact_at(&mut word, tmeta + 192 + 16)?;
    let index = u64::from_le_bytes(word);
    if index == 0 || index > 1 << 16 {
        bail!("the thin superblock names metadata block {index} as the space map index");
    }
    let at = tmeta + index * 4096 + 64;
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, at)?;
    byte[0] ^= 0xff;
    f.write_all_at(&byte, at)?;
    f.sync_all()?;
    Ok(())
}

/// The GPT type of an LVM physical volume partition.
pub const GPT_LINUX_LVM: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";

/// A guest disk in the layout of a default RHEL or Debian LVM install: `/boot` plain ext4
/// (vda1, 32 MiB), then an LVM physical volume (vda2, 100 MiB, at [`LvmGuest::PV_OFFSET`]) of
/// volume group `vg0` with the root (`vg0/root`) and `/home` (`vg0/home`). fstab names the
/// root `/dev/mapper/vg0-root` and /home `/dev/vg0/home`. All three filesystems are in the
/// error state a journal abort leaves; /home holds alice's notes.
pub struct LvmGuest {
    pub disk: PathBuf,
    /// The physical volume alone (the same bytes as vda2 before any rescue).
    pub pv: PathBuf,
    /// Where the root LV's and /home LV's bytes are on `disk`.
    pub root: Extent,
    pub home: Extent,
    /// SHA-256 of every file of the root's OS tree, by path.
    pub sums: BTreeMap<String, String>,
}

impl LvmGuest {
    /// Where the physical volume starts on the disk (the first partition: 1 MiB, 32 MiB long).
    pub const PV_OFFSET: u64 = 33 << 20;

    /// Lays it out in `dir`.
    pub fn make(dir: &Path) -> Result<LvmGuest> {
        let boot = fixture::broken_ext4(
            dir,
            "boot.fs",
            "boot",
            &[("vmlinuz-6.1.0-27-amd64", &fixture::bytes(1, 4096))],
        )?;
        let tree = dir.join("root-tree");
        let sums = fixture::os_tree_with_fstab(
            &tree,
            "/dev/mapper/vg0-root / ext4 errors=remount-ro 0 1\nLABEL=boot /boot ext4 defaults 0 2\n/dev/vg0/home /home ext4 defaults 0 2\n",
        )?;
        let root = dir.join("root.fs");
        fixture::mkfs_ext4(&root, 40, "guestroot", &tree)?;
        fixture::debugfs_write(&root, &["ssv state 2"])?;
        let home = fixture::broken_ext4(
            dir,
            "home.fs",
            "home",
            &[("alice/notes.txt", b"remember the milk\n")],
        )?;
        let pv = dir.join("pv.img");
        let extents = lvm_vg(
            &pv,
            100,
            "vg0",
            &[
                Lv {
                    name: "root",
                    size_mib: 48,
                    content: Some(&root),
                },
                Lv {
                    name: "home",
                    size_mib: 36,
                    content: Some(&home),
                },
            ],
        )?;
        let disk = dir.join("guest.img");
        fixture::boot_disk(
            &disk,
            &boot,
            Part {
                size_mib: 100,
                gpt_type: GPT_LINUX_LVM,
                name: "lvm",
                content: Some(&pv),
            },
        )?;
        let on_disk = |e: Extent| Extent {
            offset: Self::PV_OFFSET + e.offset,
            len: e.len,
        };
        Ok(LvmGuest {
            disk,
            pv,
            root: on_disk(extents[0]),
            home: on_disk(extents[1]),
            sums,
        })
    }
}

/// Makes `members` (raw image files of one size, each already holding at offset 0 what the
/// array is to hold) one md RAID1 array named `name`, metadata 1.0 (the superblock at the end
/// of each member, so the data stays where it is), created without a sync (`--assume-clean`).
/// mdadm runs in a throw-away VM on the rescue kernel, which has md built in (the host's
/// kernel here has no md).
pub fn md_raid1(members: &[&Path], name: &str) -> Result<()> {
    let devices: Vec<String> = (0..members.len()).map(crate::crash::guest_disk).collect();
    let script = format!(
        r#"$bb mkdir -p /run/mdadm
/sbin/mdadm --create /dev/md0 --run --metadata=1.0 --level=1 --raid-devices={n} --assume-clean --bitmap=none --name={name} --homehost=guest01 {devices} </dev/null || die "mdadm --create"
/sbin/mdadm --stop /dev/md0 || die "mdadm --stop"
mark created
power_off
"#,
        n = members.len(),
        devices = devices.join(" "),
    );
    let boot =
        crate::crash::crash_guest_on(crate::crash::CrashKernel::Rescue, members, &script, &[])?;
    boot.expect(&["created"])?;
    Ok(())
}

/// Makes `image` (`size_mib`) a btrfs filesystem with the UUID `uuid` whose top level holds
/// only subvolumes, as Ubuntu's and Fedora's installers lay it out: each of `subvols` (name,
/// files) created and filled. `mkfs.btrfs` runs here; the subvolumes are made by `btrfs
/// subvolume create` in a throw-away VM on the rescue kernel (the host never mounts it).
pub fn btrfs_subvolumes(
    image: &Path,
    size_mib: u64,
    uuid: &str,
    subvols: &[(&str, fixture::Files)],
) -> Result<()> {
    let f = fs::File::create(image)?;
    f.set_len(size_mib << 20)?;
    drop(f);
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-U", uuid, "-L", "guestroot"])
        .arg(image))
    .context("mkfs.btrfs")?;
    let mut script = String::from("$bb mount -t btrfs /dev/vda /mnt || die \"mount\"\n");
    let mut payload: Vec<(String, &[u8])> = Vec::new();
    for (name, files) in subvols {
        script.push_str(&format!(
            "/sbin/btrfs subvolume create /mnt/{name} >/dev/null || die \"subvolume {name}\"\n\
             $bb cp -R /crash-payload/{name}/. /mnt/{name}/ || die \"copy {name}\"\n"
        ));
        payload.push((format!("{name}/"), b""));
        for (p, d) in files {
            payload.push((format!("{name}/{}", p.trim_start_matches('/')), d));
        }
    }
    script.push_str("$bb umount /mnt || die \"umount\"\nmark laid-out\npower_off\n");
    let refs: Vec<(&str, &[u8])> = payload.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    let boot =
        crate::crash::crash_guest_on(crate::crash::CrashKernel::Rescue, &[image], &script, &refs)?;
    boot.expect(&["laid-out"])?;
    Ok(())
}
