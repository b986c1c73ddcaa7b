//! Disks that went through a crash. A throwaway "crash guest" boots the rescue kernel with the
//! rescue initramfs plus a tiny appended archive whose `/crash.sh` runs as PID 1
//! (`rdinit=/crash.sh`): it loads the rescue's modules with busybox, does what the caller's script
//! says to the virtio disks and then resets the machine without syncing or unmounting anything
//! more. Nothing is mounted on the host; the results are read back with `xfs_db`,
//! `xfs_logprint` and `xfs_repair -n`.
//!
//! The first user is [`xfs_with_dirty_log`]: an XFS filesystem whose last changes sit in its log
//! only, as after a power cut.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmrescue_companion::qemu::accel::Accel;
use vmrescue_companion::qemu::{self, Drive, Format};
use vmrescue_companion::vm::{QemuVm, Vm};
use vmrescue_image_builder::{self as builder, cpio};

use crate::harness;

/// Where the caller's files sit in the crash guest (copy them from here).
pub const PAYLOAD_DIR: &str = "/crash-payload";

/// How long a crash guest may run (TCG boots it in seconds).
pub const TIMEOUT: Duration = crate::budgets::RESCUE;

/// Size of the images [`xfs_with_dirty_log`] makes: recent xfsprogs refuse smaller ones.
pub const XFS_SIZE_MIB: u64 = 300;
/// Their filesystem label.
pub const XFS_LABEL: &str = "dirtyxfs";

const MARK: &str = "<<VMRESCUE-CRASH ";
const FAIL: &str = "<<VMRESCUE-CRASH-FAIL ";
const END: &str = ">>";

/// What every crash-guest script starts with: pseudo filesystems, the rescue's kernel modules in
/// the image builder's load order, and shell functions for the caller's script:
/// - `mark STEP`: prints a marker the host side finds with [`Boot::expect`];
/// - `die MESSAGE`: reports a failure ([`crash_guest`] returns it as an error) and powers off;
/// - `hard_reset`: resets at once, like a power cut (no sync, no unmount);
/// - `power_off`: syncs and powers off (unmount first);
/// - `$bb`: busybox, which provides the commands (`$bb mount`, `$bb sync`, ...).
fn prelude(disks: usize, kernel: CrashKernel) -> String {
    let mut s = format!(
        r#"#!/bin/sh
# vmrescue crash guest: PID 1 by rdinit=/crash.sh on the rescue kernel and initramfs.
export PATH=/bin:/sbin
bb=/bin/busybox
mark() {{ echo "{MARK}$*{END}"; }}
die() {{
    echo "{FAIL}$*{END}"
    $bb poweroff -f
    $bb sleep 60
}}
hard_reset() {{
    mark reset
    echo b > /proc/sysrq-trigger 2>/dev/null || $bb reboot -f -n
    $bb sleep 60
}}
power_off() {{
    mark poweroff
    $bb sync
    # The rescue kernel has no magic SysRq: busybox's poweroff -f does the same there.
    echo o > /proc/sysrq-trigger 2>/dev/null || $bb poweroff -f
    $bb sleep 60
}}
wait_dev() {{
    n=0
    while [ ! -b "$1" ]; do
        [ $n -ge 300 ] && die "no block device $1"
        $bb sleep 0.1
        n=$((n + 1))
    done
}}
$bb mount -t proc proc /proc || die "cannot mount /proc"
$bb mount -t sysfs sysfs /sys || die "cannot mount /sys"
$bb mount -t devtmpfs devtmpfs /dev || die "cannot mount /dev"
mark booted
# The image's late archive (checkers, the XFS module), as the agent unpacks it when needed.
if [ -f {late} ]; then
    (cd / && $bb zcat {late} | $bb cpio -i -d -u 2>/dev/null) || die "cannot unpack {late}"
fi
if [ "{load}" = yes ]; then
    while read -r mod rest; do
        case "$mod" in '' | '#'*) continue ;; esac
        if ! err=$($bb insmod "$mod" 2>&1); then
            case "$err" in *'File exists'*) continue ;; esac
            case " $rest " in *' optional '*) continue ;; esac
            die "insmod $mod: $err"
        fi
    done < {load_list}
fi
mark modules
"#,
        load_list = builder::MODULES_LOAD_PATH,
        late = vmrescue_protocol::paths::LATE_ARCHIVE,
        load = if kernel == CrashKernel::Host {
            "yes"
        } else {
            "no"
        },
    );
    for i in 0..disks {
        s.push_str(&format!("wait_dev {}\n", guest_disk(i)));
    }
    s.push_str("mark ready\n");
    s
}

/// The guest device of the `index`th disk given to [`crash_guest`]: `/dev/vda`, `/dev/vdb`, ...
pub fn guest_disk(index: usize) -> String {
    let letter = b"abcdefghijklmnopqrstuvwxyz"
        .get(index)
        .copied()
        .expect("at most 26 disks");
    format!("/dev/vd{}", letter as char)
}

/// What a crash guest printed on its serial console.
#[derive(Debug)]
pub struct Boot {
    pub console: String,
}

impl Boot {
    /// The steps the script marked, in order.
    pub fn marks(&self) -> Vec<&str> {
        markers(&self.console, MARK)
    }

    /// Fails unless the script marked each of `steps`, in this order.
    pub fn expect(&self, steps: &[&str]) -> Result<()> {
        let marks = self.marks();
        let mut rest = marks.iter();
        for step in steps {
            if !rest.any(|m| m == step) {
                bail!(
                    "the crash guest never reached step {step:?} (marked: {marks:?}); console:\n{}",
                    self.tail()
                );
            }
        }
        Ok(())
    }

    /// The last lines of the console, for error messages.
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn markers<'a>(console: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = console;
    while let Some(start) = rest.find(prefix) {
        let after = &rest[start + prefix.len()..];
        let Some(end) = after.find(END) else { break };
        out.push(&after[..end]);
        rest = &after[end + END.len()..];
    }
    out
}

/// The appended archive: `/crash.sh` and the payload under [`PAYLOAD_DIR`]. A path ending in `/`
/// is an (empty) directory.
fn crash_archive(script: &str, payload: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut entries: BTreeMap<String, cpio::Entry> = BTreeMap::new();
    let mut add = |path: String, mode: u32, kind: cpio::Kind| {
        for dir in Path::new(&path).ancestors().skip(1) {
            let dir = dir.to_string_lossy().into_owned();
            if !dir.is_empty() {
                entries.entry(dir.clone()).or_insert(cpio::Entry {
                    path: dir,
                    mode: 0o755,
                    kind: cpio::Kind::Dir,
                });
            }
        }
        entries.insert(path.clone(), cpio::Entry { path, mode, kind });
    };
    add(
        "crash.sh".into(),
        0o755,
        cpio::Kind::File(script.as_bytes().to_vec()),
    );
    // The script's shell: the image keeps busybox in its late archive, which the script
    // unpacks only once it runs.
    add(
        "bin/busybox".into(),
        0o755,
        cpio::Kind::File(fs::read("/bin/busybox").context("/bin/busybox (busybox-static)")?),
    );
    let base = PAYLOAD_DIR.trim_start_matches('/');
    add(base.into(), 0o755, cpio::Kind::Dir);
    for (path, data) in payload {
        let rel = path.trim_start_matches('/');
        let name = rel.trim_end_matches('/');
        if name.is_empty()
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("payload path {path:?} is not a plain relative path");
        }
        if rel.ends_with('/') {
            add(format!("{base}/{name}"), 0o755, cpio::Kind::Dir);
        } else {
            add(
                format!("{base}/{name}"),
                0o644,
                cpio::Kind::File(data.to_vec()),
            );
        }
    }
    let entries: Vec<cpio::Entry> = entries.into_values().collect();
    let mut out = Vec::new();
    cpio::write(&mut out, &entries, 0)?;
    Ok(out)
}

/// The accelerator: `VMRESCUE_ACCEL=kvm` asks for KVM; anything else gives TCG (this fixture
/// does not probe whether KVM works, as the companion does).
fn accel() -> Accel {
    match std::env::var("VMRESCUE_ACCEL").as_deref() {
        Ok("kvm") => Accel::Kvm,
        _ => Accel::Tcg,
    }
}

/// Which kernel a crash guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKernel {
    /// The host's kernel (Debian's), with the rescue's modules loaded.
    Host,
    /// The purpose-made rescue kernel: everything built in, device-mapper and md included
    /// (the host's kernel here has neither), so md arrays and dm-crypt devices can be laid out.
    Rescue,
}

/// Boots the rescue kernel with `script` as PID 1 and `disks` as raw virtio disks (see
/// [`guest_disk`]); `payload` files are at [`PAYLOAD_DIR`] in the guest (a path ending in `/` is
/// an empty directory). `script` runs after the prelude (see `prelude`): the modules are loaded
/// and the disks present; it should end with `hard_reset` or `power_off` (else it fails). QEMU
/// runs with `-no-reboot`, so the guest's reset or power-off ends it. Fails if QEMU does not
/// end in [`TIMEOUT`], if the script called `die`, or if the prelude did not finish.
pub fn crash_guest(disks: &[&Path], script: &str, payload: &[(&str, &[u8])]) -> Result<Boot> {
    crash_guest_on(CrashKernel::Host, disks, script, payload)
}

/// [`crash_guest`] on the given kernel.
pub fn crash_guest_on(
    kernel: CrashKernel,
    disks: &[&Path],
    script: &str,
    payload: &[(&str, &[u8])],
) -> Result<Boot> {
    let image = harness::image();
    let dir = tempfile::tempdir()?;
    let initrd = initrd_for(kernel, disks.len(), script, payload)?;
    let kernel_path = match kernel {
        CrashKernel::Host => image.kernel.clone(),
        CrashKernel::Rescue => image
            .rescue_vmlinux
            .clone()
            .context("the test image has no rescue kernel")?,
    };
    let initrd_path = dir.path().join("crash-initrd.img");
    fs::write(&initrd_path, &initrd)?;
    let console_path = dir.path().join("console.log");

    let config = qemu::Config::new(
        "vmrescue-crash-guest",
        accel(),
        qemu::Boot::Kernel {
            kernel: kernel_path,
            initrd: Some(initrd_path),
            cmdline: "console=ttyS0 rdinit=/crash.sh panic=-1".into(),
        },
    )
    .console_log(&console_path)
    .drives(disks.iter().map(|d| Drive::new(*d, Format::Raw)));
    let mut vm = QemuVm::new(qemu::binary(), config, dir.path().join("qemu.log"));
    vm.start()?;
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(e) = vm.exited() {
            break Some(e);
        }
        if Instant::now() >= deadline {
            vm.stop(Duration::ZERO);
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let qemu_err = fs::read_to_string(dir.path().join("qemu.log")).unwrap_or_default();
    let boot = Boot {
        console: String::from_utf8_lossy(&fs::read(&console_path).unwrap_or_default())
            .replace('\r', ""),
    };
    match status {
        None => bail!(
            "the crash guest did not end within {TIMEOUT:?}; console:\n{}",
            boot.tail()
        ),
        Some(e) if !e.success => bail!(
            "QEMU failed ({}): {}; console:\n{}",
            e.description,
            qemu_err.trim(),
            boot.tail()
        ),
        Some(_) => {}
    }
    if let Some(msg) = markers(&boot.console, FAIL).first() {
        bail!("the crash guest failed: {msg}; console:\n{}", boot.tail());
    }
    boot.expect(&["booted", "modules", "ready"])?;
    Ok(boot)
}

/// The rescue initramfs with `script` as `/crash.sh` after the prelude (see [`crash_guest`]),
/// for a guest booted with `rdinit=/crash.sh` by anything (QEMU here, libvirt elsewhere);
/// `disks` virtio disks are waited for.
pub fn script_initrd(disks: usize, script: &str, payload: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    initrd_for(CrashKernel::Host, disks, script, payload)
}

fn initrd_for(
    kernel: CrashKernel,
    disks: usize,
    script: &str,
    payload: &[(&str, &[u8])],
) -> Result<Vec<u8>> {
    let image = harness::image();
    let full = format!(
        "{}\n{script}\ndie \"the script ended without hard_reset or power_off\"\n",
        prelude(disks, kernel)
    );
    // The kernel unpacks concatenated archives; an uncompressed one must start 4-byte aligned
    // (zeros in between are skipped).
    let mut initrd = fs::read(&image.initramfs)
        .with_context(|| format!("reading {}", image.initramfs.display()))?;
    initrd.resize(initrd.len().next_multiple_of(4), 0);
    initrd.extend(crash_archive(&full, payload)?);
    Ok(initrd)
}

fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = crate::fixture::run(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn mkfs_xfs(image: &Path, size_mib: u64, label: &str) -> Result<()> {
    let f = fs::File::create(image)?;
    f.set_len(size_mib << 20)?;
    drop(f);
    run_ok(
        Command::new("mkfs.xfs")
            .args(["-q", "-f", "-L", label])
            .arg(image),
    )?;
    Ok(())
}

/// An XFS filesystem (a new [`XFS_SIZE_MIB`] image labelled [`XFS_LABEL`]) with a dirty log: a
/// crash guest mounts it, writes `files` (paths relative to its root; one ending in `/` is an
/// empty directory; parents are created), runs `sync` (so data and log reach the disk while the
/// metadata is not checkpointed in place) and resets. Only mounting replays the log; until then
/// the files are not in the on-disk metadata. Keep `files` small (the log is far bigger than a
/// few MiB, so it never needs to checkpoint). Fails unless `xfs_logprint` sees a dirty log.
pub fn xfs_with_dirty_log(image: &Path, files: &[(&str, &[u8])]) -> Result<Boot> {
    xfs_root_with_dirty_log(image, &[], files)
}

/// An XFS root as a crash leaves it: `base` files written and checkpointed (the filesystem
/// unmounted cleanly once), then `dirty` files written and synced to the log only before the
/// machine resets. A look without log replay sees `base`; a replay brings `dirty` in.
pub fn xfs_root_with_dirty_log(
    image: &Path,
    base: &[(&str, &[u8])],
    dirty: &[(&str, &[u8])],
) -> Result<Boot> {
    mkfs_xfs(image, XFS_SIZE_MIB, XFS_LABEL)?;
    let mut payload: Vec<(String, &[u8])> = Vec::new();
    for (p, d) in base {
        payload.push((format!("base/{}", p.trim_start_matches('/')), d));
    }
    for (p, d) in dirty {
        payload.push((format!("dirty/{}", p.trim_start_matches('/')), d));
    }
    payload.push(("base/".into(), b""));
    payload.push(("dirty/".into(), b""));
    let refs: Vec<(&str, &[u8])> = payload.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    let boot = crash_guest(
        &[image],
        &format!(
            r#"
echo 720000 > /proc/sys/fs/xfs/xfssyncd_centisecs || die "cannot set xfssyncd_centisecs"
$bb mount -t xfs {disk} /mnt || die "cannot mount {disk}"
$bb cp -R {PAYLOAD_DIR}/base/. /mnt/ || die "cannot copy the base files"
$bb umount /mnt || die "cannot unmount"
$bb mount -t xfs {disk} /mnt || die "cannot mount {disk} again"
mark mounted
$bb cp -R {PAYLOAD_DIR}/dirty/. /mnt/ || die "cannot copy the files"
mark written
$bb sync || die "sync failed"
mark synced
hard_reset
"#,
            disk = guest_disk(0)
        ),
        &refs,
    )?;
    crashed_dirty(image, boot)
}

/// An XFS root of `size_mib` (label `label`) holding the tree of the ext4 image `tree`, as a
/// crash leaves it: the tree copied and checkpointed (unmounted cleanly once), then `dirty`
/// files written and synced to the log only before the machine resets. Made in a crash guest
/// on the rescue kernel (XFS and ext4 built in): the host never mounts either.
pub fn xfs_tree_with_dirty_log(
    image: &Path,
    size_mib: u64,
    label: &str,
    tree: &Path,
    dirty: &[(&str, &[u8])],
) -> Result<Boot> {
    mkfs_xfs(image, size_mib, label)?;
    let mut payload: Vec<(String, &[u8])> = vec![("dirty/".into(), b"")];
    for (p, d) in dirty {
        payload.push((format!("dirty/{}", p.trim_start_matches('/')), d));
    }
    let refs: Vec<(&str, &[u8])> = payload.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    let boot = crash_guest_on(
        CrashKernel::Rescue,
        &[image, tree],
        &format!(
            r#"
echo 720000 > /proc/sys/fs/xfs/xfssyncd_centisecs || die "cannot set xfssyncd_centisecs"
$bb mkdir -p /src
$bb mount -t ext4 -o ro {tree} /src || die "cannot mount the tree {tree}"
$bb mount -t xfs {disk} /mnt || die "cannot mount {disk}"
$bb cp -a /src/. /mnt/ || die "cannot copy the tree"
$bb umount /mnt || die "cannot unmount"
$bb umount /src
$bb mount -t xfs {disk} /mnt || die "cannot mount {disk} again"
mark mounted
$bb cp -R {PAYLOAD_DIR}/dirty/. /mnt/ || die "cannot copy the files"
mark written
$bb sync || die "sync failed"
mark synced
hard_reset
"#,
            disk = guest_disk(0),
            tree = guest_disk(1),
        ),
        &refs,
    )?;
    crashed_dirty(image, boot)
}

/// `boot` after a crash script that marked `mounted`, `written`, `synced` and reset; fails
/// unless `image`'s XFS log is dirty.
fn crashed_dirty(image: &Path, boot: Boot) -> Result<Boot> {
    boot.expect(&["mounted", "written", "synced", "reset"])?;
    let state = xfs_log_state(image)?;
    if state != LogState::Dirty {
        bail!(
            "the log of {} is {state:?} after the crash; console:\n{}",
            image.display(),
            boot.tail()
        );
    }
    Ok(boot)
}

/// Replays an XFS log the way the rescue policy does: a crash guest mounts the filesystem,
/// unmounts it and powers off. The console shows the kernel's `Starting recovery` when there
/// was a log to replay.
pub fn replay_xfs_log(image: &Path) -> Result<Boot> {
    let boot = crash_guest(
        &[image],
        &format!(
            r#"
$bb mount -t xfs {disk} /mnt || die "cannot mount {disk}"
mark mounted
$bb umount /mnt || die "cannot unmount {disk}"
mark unmounted
power_off
"#,
            disk = guest_disk(0)
        ),
        &[],
    )?;
    boot.expect(&["mounted", "unmounted", "poweroff"])?;
    Ok(boot)
}

/// The state of an XFS log as `xfs_logprint -t` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogState {
    Clean,
    Dirty,
}

/// Reads the log state (`state: <CLEAN>` or `<DIRTY>` in `xfs_logprint -t`).
pub fn xfs_log_state(image: &Path) -> Result<LogState> {
    let out = run_ok(Command::new("xfs_logprint").arg("-t").arg(image))?;
    if out.contains("state: <DIRTY>") {
        Ok(LogState::Dirty)
    } else if out.contains("state: <CLEAN>") {
        Ok(LogState::Clean)
    } else {
        bail!(
            "xfs_logprint -t {} shows no log state:\n{}",
            image.display(),
            out.lines().take(10).collect::<Vec<_>>().join("\n")
        )
    }
}

/// What an `xfs_repair` run gave (its progress goes to stderr).
#[derive(Debug)]
pub struct Repair {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `xfs_repair ARGS IMAGE`, whatever its exit status.
pub fn xfs_repair(image: &Path, args: &[&str]) -> Result<Repair> {
    let out = crate::fixture::output(Command::new("xfs_repair").args(args).arg(image))?;
    Ok(Repair {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `xfs_db -r` with the given commands; `None` when a `path` command found nothing.
fn xfs_db(image: &Path, cmds: &[&str]) -> Result<Option<String>> {
    let mut cmd = Command::new("xfs_db");
    cmd.arg("-r");
    for c in cmds {
        cmd.arg("-c").arg(c);
    }
    let out = crate::fixture::output(cmd.arg(image))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    // xfs_db reports a failed command on stdout, and exits 1.
    if stdout
        .lines()
        .chain(err.lines())
        .any(|l| l.ends_with(": No such file or directory"))
    {
        return Ok(None);
    }
    if !out.status.success() || !err.trim().is_empty() {
        bail!(
            "xfs_db {cmds:?} on {} failed ({}): {}{}",
            image.display(),
            out.status,
            err.trim(),
            stdout.trim()
        );
    }
    Ok(Some(stdout))
}

fn field(out: &str, name: &str) -> Result<u64> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} in xfs_db output:\n{out}"))
}

/// The names in a directory of an unmounted XFS image, as the on-disk metadata has them (`.`
/// and `..` left out); `None` if there is no such path.
pub fn xfs_ls(image: &Path, dir: &str) -> Result<Option<Vec<String>>> {
    let Some(out) = xfs_db(image, &[&format!("ls {dir}")])? else {
        return Ok(None);
    };
    // "OFFSET INUM TYPE HASH NAMELEN NAME (STATUS)"
    let names = out
        .lines()
        .skip(1)
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.len() >= 7).then(|| words[5..words.len() - 1].join(" "))
        })
        .filter(|n| n != "." && n != "..")
        .collect();
    Ok(Some(names))
}

/// A regular file's contents read from an unmounted XFS image through its on-disk metadata
/// (`xfs_db` maps its extents); `None` if there is no such path.
pub fn xfs_read_file(image: &Path, path: &str) -> Result<Option<Vec<u8>>> {
    let Some(out) = xfs_db(
        image,
        &[&format!("path {path}"), "print core.mode core.size", "bmap"],
    )?
    else {
        return Ok(None);
    };
    let mode = out
        .lines()
        .find_map(|l| l.strip_prefix("core.mode = "))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .with_context(|| format!("no core.mode in xfs_db output:\n{out}"))?;
    if mode & 0o170000 != 0o100000 {
        bail!("{path} in {} is not a regular file", image.display());
    }
    let size = usize::try_from(field(&out, "core.size")?)?;
    let sb = xfs_db(image, &["sb 0", "print blocksize"])?.context("reading the superblock")?;
    let bsize = field(&sb, "blocksize")?;
    let disk = fs::File::open(image)?;
    let mut data = vec![0u8; size];
    // "data offset 0 startblock 32778 (1/10) count 1 flag 0"
    for l in out.lines().filter(|l| l.starts_with("data offset ")) {
        let w: Vec<&str> = l.split_whitespace().collect();
        let num = |i: usize| -> Result<u64> {
            w.get(i)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("cannot parse xfs_db bmap line {l:?}"))
        };
        let (offset, start, count, flag) = (num(2)?, num(4)?, num(7)?, num(9)?);
        if flag != 0 {
            continue; // unwritten extent: reads as zeros
        }
        let conv = xfs_db(image, &[&format!("convert fsblock {start} byte")])?
            .context("converting a block number")?;
        // "0x12c09000 (314609664)"
        let byte: u64 = conv
            .split(['(', ')'])
            .nth(1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("cannot parse xfs_db convert output {conv:?}"))?;
        let from = usize::try_from(offset * bsize)?;
        if from >= size {
            continue;
        }
        let to = size.min(usize::try_from((offset + count) * bsize)?);
        std::os::unix::fs::FileExt::read_exact_at(&disk, &mut data[from..to], byte)?;
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_in_a_noisy_console() {
        let console = "x<<VMRESCUE-CRASH booted>>\n[ 1.0] kernel\n<<VMRESCUE-CRASH a b>><<VMRESCUE-CRASH-FAIL oops>>\n";
        let boot = Boot {
            console: console.into(),
        };
        assert_eq!(boot.marks(), ["booted", "a b"]);
        assert_eq!(markers(console, FAIL), ["oops"]);
        boot.expect(&["booted", "a b"]).unwrap();
        assert!(boot.expect(&["a b", "booted"]).is_err());
    }

    #[test]
    fn payload_paths_must_be_plain() {
        for bad in ["", "/", "a/../b", "./a", "a//b"] {
            assert!(crash_archive("", &[(bad, b"")]).is_err(), "{bad:?}");
        }
        assert!(crash_archive("", &[("a/b", b"x"), ("c/", b"")]).is_ok());
    }

    #[test]
    fn disks_are_named_in_order() {
        assert_eq!(guest_disk(0), "/dev/vda");
        assert_eq!(guest_disk(2), "/dev/vdc");
    }
}
