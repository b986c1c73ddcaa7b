//! Guest disks made, not downloaded: a small OS-like root tree packed with `mkfs.ext4 -d`,
//! damaged with `debugfs -w`, and read back with `debugfs` to check file contents without
//! mounting anything.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The file the fixtures damage (its inode, not its data).
pub const VICTIM: &str = "/var/lib/app/victim.dat";

use vmrescue_protocol::digest::sha256_hex as hex;

/// Deterministic pseudo-random bytes (xorshift), so fixtures are reproducible.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Whether `program --version` runs and succeeds: the one check for a tool a test can do
/// without (it then says so and skips). Tools `scripts/setup.sh` installs are not optional.
/// (The discovery crate's tests keep their own checks, sfdisk in `partition_tables.rs` and xz
/// in `blkid_corpus.rs`: this crate depends on discovery, so they cannot use it.)
pub fn has_tool(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Writes a small Debian-like root tree under `dir`; returns each file's guest path and sha256.
pub fn os_tree(dir: &Path) -> Result<BTreeMap<String, String>> {
    os_tree_with_fstab(
        dir,
        "# /etc/fstab\nLABEL=guestroot / ext4 errors=remount-ro 0 1\n",
    )
}

/// [`os_tree`] with the given `/etc/fstab`.
pub fn os_tree_with_fstab(dir: &Path, fstab: &str) -> Result<BTreeMap<String, String>> {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("etc/os-release", b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n".to_vec()),
        ("etc/hostname", b"guest01\n".to_vec()),
        ("etc/fstab", fstab.as_bytes().to_vec()),
        ("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\n".to_vec()),
        ("etc/group", b"root:x:0:\nshadow:x:42:\nuser:x:1000:\n".to_vec()),
        ("etc/shadow", b"root:*:20000:0:99999:7:::\nuser:$y$j9T$salt$hash:20000:0:99999:7:::\n".to_vec()),
        ("etc/gshadow", b"root:*::\nshadow:*::\nuser:!::\n".to_vec()),
        ("etc/hosts", b"127.0.0.1\tlocalhost\n127.0.1.1\tguest01\n".to_vec()),
        ("sbin/init", bytes(1, 4096)),
        ("usr/bin/app", bytes(2, 20_000)),
        ("home/user/notes.txt", b"remember the milk\n".to_vec()),
        ("home/user/photo.bin", bytes(3, 300_000)),
        ("var/log/syslog", bytes(4, 50_000)),
        (VICTIM.trim_start_matches('/'), bytes(5, 10_000)),
    ];
    for d in [
        "proc", "sys", "dev", "run", "tmp", "boot", "bin", "lib", "mnt", "media", "root",
    ] {
        fs::create_dir_all(dir.join(d))?;
    }
    let mut sums = BTreeMap::new();
    for (path, data) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, &data).with_context(|| format!("writing {}", p.display()))?;
        sums.insert(format!("/{path}"), hex(&data));
    }
    Ok(sums)
}

/// Runs a command and returns its output, whatever its exit status.
pub(crate) fn output(cmd: &mut Command) -> Result<std::process::Output> {
    cmd.output()
        .with_context(|| format!("running {cmd:?} (installed by scripts/setup.sh?)"))
}

/// Runs a command that must succeed; its stderr is in the error when it does not.
pub fn run(cmd: &mut Command) -> Result<std::process::Output> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `mkfs.ext4 -d TREE` into a new image file of `size_mib`.
pub fn mkfs_ext4(image: &Path, size_mib: u64, label: &str, tree: &Path) -> Result<()> {
    mkfs_ext4_uuid(image, size_mib, label, None, tree)
}

/// `mkfs.ext4 -d TREE`, with a chosen filesystem UUID when given.
pub fn mkfs_ext4_uuid(
    image: &Path,
    size_mib: u64,
    label: &str,
    uuid: Option<&str>,
    tree: &Path,
) -> Result<()> {
    let f = fs::File::create(image)?;
    f.set_len(size_mib << 20)?;
    drop(f);
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-L", label]);
    if let Some(u) = uuid {
        cmd.args(["-U", u]);
    }
    run(cmd.arg("-d").arg(tree).arg(image))?;
    Ok(())
}

/// A partition to lay out with [`partitioned_disk`].
pub struct Part<'a> {
    pub size_mib: u64,
    /// GPT type GUID.
    pub gpt_type: &'a str,
    pub name: &'a str,
    /// Filesystem image copied into the partition.
    pub content: Option<&'a Path>,
}

pub const GPT_LINUX_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
pub const GPT_LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// Makes a GPT disk image with `sfdisk` and copies each partition's content in place.
pub fn partitioned_disk(image: &Path, size_mib: u64, parts: &[Part]) -> Result<()> {
    let f = fs::File::create(image)?;
    f.set_len(size_mib << 20)?;
    drop(f);
    let mut script = String::from("label: gpt\n");
    for p in parts {
        script.push_str(&format!(
            "size={}MiB, type={}, name={}\n",
            p.size_mib, p.gpt_type, p.name
        ));
    }
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("running sfdisk")?;
    std::io::Write::write_all(
        child.stdin.as_mut().context("sfdisk stdin")?,
        script.as_bytes(),
    )?;
    drop(child.stdin.take());
    if !child.wait()?.success() {
        bail!("sfdisk failed on {}", image.display());
    }
    let out = run(Command::new("sfdisk").arg("--json").arg(image))?;
    let table: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let entries = table["partitiontable"]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let disk = fs::OpenOptions::new().write(true).open(image)?;
    for (p, e) in parts.iter().zip(entries) {
        let Some(content) = p.content else { continue };
        let start = e["start"].as_u64().context("sfdisk start")? * 512;
        let data = fs::read(content)?;
        std::os::unix::fs::FileExt::write_all_at(&disk, &data, start)?;
    }
    disk.sync_all()?;
    Ok(())
}

/// Writes vmrescue's rescue-medium marker into a disk image.
pub fn mark_rescue_medium(image: &Path, build_id: &str) -> Result<()> {
    let disk = fs::OpenOptions::new().write(true).open(image)?;
    let sector = vmrescue_discovery::medium::encode(build_id);
    std::os::unix::fs::FileExt::write_all_at(&disk, &sector, vmrescue_discovery::medium::OFFSET)?;
    Ok(())
}

/// Runs debugfs commands read-write on an image.
pub fn debugfs_write(image: &Path, cmds: &[&str]) -> Result<()> {
    let script = tempfile::NamedTempFile::new()?;
    fs::write(script.path(), cmds.join("\n") + "\n")?;
    let out = run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(script.path())
        .arg(image))?;
    let err = String::from_utf8_lossy(&out.stderr);
    // debugfs exits 0 even when a command fails; its errors name the command.
    if let Some(line) = err
        .lines()
        .find(|l| l.contains(": ") && !l.starts_with("debugfs "))
    {
        bail!("debugfs on {}: {line}", image.display());
    }
    Ok(())
}

/// A file's sha256 read from an unmounted ext image with `debugfs cat`.
pub fn sha256_in_image(image: &Path, path: &str) -> Result<String> {
    match read_in_image(image, path)? {
        Some(data) => Ok(hex(&data)),
        None => bail!("{path} is not in {}", image.display()),
    }
}

/// A file's bytes in an ext image (`None` if it does not exist), read with debugfs.
pub fn read_in_image(image: &Path, path: &str) -> Result<Option<Vec<u8>>> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(image)
        .output()
        .context("running debugfs")?;
    if !String::from_utf8_lossy(&out.stdout).contains("Inode:") {
        return Ok(None);
    }
    let out = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(image))?;
    Ok(Some(out.stdout))
}

/// Permission bits (with sticky/setuid) of a path in an ext image, `None` if absent.
pub fn mode_in_image(image: &Path, path: &str) -> Result<Option<u32>> {
    let out = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(image))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split("Mode:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|m| u32::from_str_radix(m, 8).ok()))
}

/// Zeroes an ext filesystem's primary superblock (bytes 1024..2048), as a stray write would.
pub fn zero_primary_superblock(image: &Path) -> Result<()> {
    let disk = fs::OpenOptions::new().write(true).open(image)?;
    std::os::unix::fs::FileExt::write_all_at(&disk, &[0u8; 1024], 1024)?;
    disk.sync_all()?;
    Ok(())
}

/// The filesystem UUID of an ext image.
pub fn ext_uuid(image: &Path) -> Result<String> {
    let data = {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = fs::File::open(image)?;
        f.seek(SeekFrom::Start(1024))?;
        let mut b = vec![0u8; 1024];
        f.read_exact(&mut b)?;
        b
    };
    let sb = vmrescue_discovery::ext::Superblock::parse(&data)
        .map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))?;
    Ok(sb.uuid)
}

/// Names in a directory of an unmounted ext image (`debugfs ls -l`), without `.` and `..`.
pub fn list_in_image(image: &Path, dir: &str) -> Result<Vec<String>> {
    let out = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("ls -p {dir}"))
        .arg(image))?;
    // `/inode/mode/uid/gid/name/size/` per line.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('/').nth(5).map(str::to_owned))
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .collect())
}

/// A copy of `image` as the guest's next mount would see it: its journal replayed and its
/// damage fixed by the host's `e2fsck -fy` (on the copy only; the image is not touched).
pub fn settled_copy(image: &Path, copy: &Path) -> Result<()> {
    fs::copy(image, copy)?;
    let out = output(Command::new("e2fsck").arg("-fy").arg(copy))?;
    if out.status.code().unwrap_or(8) >= 4 {
        bail!(
            "e2fsck -fy could not fix {}: {}",
            copy.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

/// The exit status of the host's `e2fsck -fn` on an image.
pub fn host_e2fsck(image: &Path) -> Result<i32> {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .context("running e2fsck")?;
    Ok(out.status.code().unwrap_or(-1))
}

/// The sha256 of a whole image file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(vmrescue_protocol::digest::hex(&h.finalize()))
}

/// A guest disk and what its files should contain.
pub struct Disk {
    pub image: PathBuf,
    pub sums: BTreeMap<String, String>,
}

/// The field failure of the issue: an ext4 root whose superblock carries the error state a
/// journal abort leaves (the kernel then remounted it read-only), plus a damaged inode.
pub fn broken_root(image: &Path) -> Result<Disk> {
    let tree = tempfile::tempdir()?;
    let sums = os_tree(tree.path())?;
    mkfs_ext4(image, 64, "guestroot", tree.path())?;
    debugfs_write(
        image,
        &[
            // ERROR_FS set, VALID cleared: mounted when the journal aborted.
            "ssv state 2",
            "ssv error_count 3",
            "ssv first_error_time 20260101",
            "ssv first_error_func ext4_journal_check_start",
            "ssv first_error_line 61",
            "ssv last_error_time 20260102",
            // A damaged inode: its link count no longer matches the directory tree.
            &format!("sif {VICTIM} links_count 7"),
        ],
    )?;
    Ok(Disk {
        image: image.to_owned(),
        sums,
    })
}

/// The demo's guest: [`broken_root`]'s damage on a root that also lost `/proc` and `/run`, whose
/// fstab names the root by kernel name and a data volume that is no longer attached.
pub fn field_failure(image: &Path) -> Result<Disk> {
    let tree = tempfile::tempdir()?;
    let sums = os_tree_with_fstab(
        tree.path(),
        "# /etc/fstab\n/dev/vda / ext4 defaults 0 1\n\
         UUID=5e1f0c2a-7b3d-4c9e-8f10-2a3b4c5d6e7f /srv/data ext4 defaults 0 2\n",
    )?;
    fs::remove_dir(tree.path().join("proc"))?;
    fs::remove_dir(tree.path().join("run"))?;
    mkfs_ext4(image, 64, "guestroot", tree.path())?;
    debugfs_write(
        image,
        &[
            "ssv state 2",
            "ssv error_count 3",
            "ssv first_error_func ext4_journal_check_start",
            &format!("sif {VICTIM} links_count 7"),
        ],
    )?;
    Ok(Disk {
        image: image.to_owned(),
        sums,
    })
}

/// Files as (path, content).
pub type Files = Vec<(String, Vec<u8>)>;

/// Every regular file under `tree`, as (path from the tree's root, content), sorted.
pub fn files_of(tree: &Path) -> Result<Files> {
    let mut out = Vec::new();
    let mut dirs = vec![tree.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                dirs.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(tree)?.to_string_lossy().into_owned();
                out.push((rel, fs::read(e.path())?));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A GPT guest disk of `/boot` (`boot`, a 32 MiB filesystem image, partition 1 at 1 MiB)
/// and `second` (partition 2, at 33 MiB), with room to spare.
pub fn boot_disk(image: &Path, boot: &Path, second: Part) -> Result<()> {
    let size = 1 + 32 + second.size_mib + 7;
    partitioned_disk(
        image,
        size,
        &[
            Part {
                size_mib: 32,
                gpt_type: GPT_LINUX_FS,
                name: "boot",
                content: Some(boot),
            },
            second,
        ],
    )
}

/// An ext4 filesystem image (32 MiB, `name` in `dir`) holding `files`, in the error state a
/// journal abort leaves.
pub fn broken_ext4(
    dir: &Path,
    name: &str,
    label: &str,
    files: &[(&str, &[u8])],
) -> Result<PathBuf> {
    let tree = dir.join(format!("{name}-tree"));
    for (path, data) in files {
        let p = tree.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(p, data)?;
    }
    fs::create_dir_all(&tree)?;
    let img = dir.join(name);
    mkfs_ext4(&img, 32, label, &tree)?;
    debugfs_write(&img, &["ssv state 2"])?;
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_root_is_really_broken_and_files_are_readable() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("root.img");
        let disk = broken_root(&img).unwrap();
        assert_eq!(
            host_e2fsck(&img).unwrap(),
            4,
            "e2fsck -fn must find the damage"
        );
        for (path, sum) in &disk.sums {
            assert_eq!(&sha256_in_image(&img, path).unwrap(), sum, "{path}");
        }
        let sb = vmrescue_discovery_sb(&img);
        assert_eq!(sb & 2, 2, "ERROR_FS set");
    }

    fn vmrescue_discovery_sb(img: &Path) -> u16 {
        let data = fs::read(img).unwrap();
        u16::from_le_bytes([data[1024 + 0x3A], data[1024 + 0x3B]])
    }

    #[test]
    fn debugfs_errors_are_not_swallowed() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("t");
        fs::create_dir(&tree).unwrap();
        let img = d.path().join("x.img");
        mkfs_ext4(&img, 8, "x", &tree).unwrap();
        assert!(debugfs_write(&img, &["sif /no/such/file links_count 2"]).is_err());
    }
}
