//! The purpose-made rescue kernel: Debian's `linux-source` configured from `allnoconfig` with
//! only the options of `initramfs/rescue-kernel.config`, everything built in (no modules to
//! load), for the VMs vmrescue starts itself. It is built once and kept in a cache directory
//! named by its inputs (the source archive, the options, the compiler, this builder), so a
//! second image build, or one of many rescues building at once, reuses it.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The options the kernel is built with (data, not code).
pub const CONFIG: &str = include_str!("../../initramfs/rescue-kernel.config");
/// Where Debian's `linux-source-*` packages put their archive.
pub const SOURCE_DIR: &str = "/usr/src";
/// The built kernel inside its cache directory.
pub const BZIMAGE_FILE: &str = "bzImage";
const INFO_FILE: &str = "kernel.json";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no linux-source-*.tar.* in {0}: install Debian's linux-source package (scripts/setup.sh installs linux-source-6.1) or pass --kernel-source ARCHIVE")]
    NoSource(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot run {tool} for the rescue kernel: {source} (scripts/setup.sh installs make, gcc, flex, bison, bc and libelf-dev)")]
    Spawn { tool: String, source: io::Error },
    #[error("building the rescue kernel: `{step}` failed ({status}); its output is in {}", log.display())]
    Step {
        step: String,
        status: String,
        log: PathBuf,
    },
    #[error("the rescue kernel's configuration from {source_archive} lacks {}: the source names them differently; its .config is in {}", missing.join(", "), config.display())]
    Missing {
        source_archive: PathBuf,
        missing: Vec<String>,
        config: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KernelError + '_ {
    move |source| KernelError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A built rescue kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Built {
    /// The bzImage.
    #[serde(skip)]
    pub bzimage: PathBuf,
    /// `make kernelrelease`.
    pub release: String,
    /// The source archive's file name.
    pub source: String,
    /// The cache key: what the kernel was built from.
    pub key: String,
}

/// The newest `linux-source-*.tar.*` in `dir` (by version in the name), if any.
pub fn find_source(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("linux-source-")?.split(".tar").next()?;
            name.contains(".tar").then_some(())?;
            let key = version
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((key, e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// The options of `fragment` set to `y` that `config` (a final .config) does not set to `y`
/// (pure).
pub fn missing_options(fragment: &str, config: &str) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = config
        .lines()
        .filter_map(|l| l.strip_suffix("=y"))
        .collect();
    fragment
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_suffix("=y"))
        .filter(|o| o.starts_with("CONFIG_") && !set.contains(o))
        .map(str::to_owned)
        .collect()
}

/// The cache key of a build (pure): the source archive's name, size and modification time,
/// the options, the compiler's version line and this builder's version.
pub fn cache_key(source_name: &str, size: u64, mtime: i64, compiler: &str) -> String {
    let text = format!(
        "{source_name}\n{size}\n{mtime}\n{compiler}\n{}\n{CONFIG}",
        env!("CARGO_PKG_VERSION")
    );
    vmrescue_protocol::digest::sha256_hex(text.as_bytes())[..16].to_owned()
}

/// The default cache directory: `$XDG_CACHE_HOME/vmrescue`, else `$HOME/.cache/vmrescue`, else
/// `/var/cache/vmrescue`.
pub fn default_cache() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("XDG_CACHE_HOME") {
        return d.join("vmrescue");
    }
    if let Some(h) = env("HOME") {
        return h.join(".cache/vmrescue");
    }
    PathBuf::from("/var/cache/vmrescue")
}

fn compiler_version() -> Result<String, KernelError> {
    let out = Command::new("gcc")
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .map_err(|source| KernelError::Spawn {
            tool: "gcc".into(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// The rescue kernel from `source` (default: [`find_source`] in [`SOURCE_DIR`]), built into
/// `cache` unless a build with the same inputs is there. `note` hears what takes minutes.
pub fn ensure(
    source: Option<&Path>,
    cache: &Path,
    note: &mut dyn FnMut(&str),
) -> Result<Built, KernelError> {
    let source = match source {
        Some(s) => s.to_owned(),
        None => find_source(Path::new(SOURCE_DIR))
            .ok_or_else(|| KernelError::NoSource(SOURCE_DIR.into()))?,
    };
    let meta = fs::metadata(&source).map_err(io_err(&source))?;
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let key = cache_key(&name, meta.len(), mtime, &compiler_version()?);
    let dir = cache.join(format!("rescue-kernel-{key}"));
    fs::create_dir_all(cache).map_err(io_err(cache))?;
    // One build per key at a time: the others wait for it and take its result.
    let lock_path = cache.join(format!("rescue-kernel-{key}.lock"));
    let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(&lock_path)(e.into()))?;
    if let Some(b) = open(&dir) {
        return Ok(b);
    }
    note(&format!(
        "building the rescue kernel from {} into {} (minutes, once)",
        source.display(),
        dir.display()
    ));
    let work = tempfile::Builder::new()
        .prefix(".rescue-kernel-build.")
        .tempdir_in(cache)
        .map_err(io_err(cache))?;
    let tree = work.path().join("linux");
    fs::create_dir(&tree).map_err(io_err(&tree))?;
    let log = cache.join(format!("rescue-kernel-{key}.log"));
    let log_file = File::create(&log).map_err(io_err(&log))?;
    let run = |step: &str, cmd: &mut Command| -> Result<(), KernelError> {
        let out = log_file.try_clone().map_err(io_err(&log))?;
        let err = log_file.try_clone().map_err(io_err(&log))?;
        let tool = cmd.get_program().to_string_lossy().into_owned();
        let status = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|source| KernelError::Spawn { tool, source })?;
        if status.success() {
            Ok(())
        } else {
            Err(KernelError::Step {
                step: step.to_owned(),
                status: status.to_string(),
                log: log.clone(),
            })
        }
    };
    run(
        "tar -xf",
        Command::new("tar")
            .arg("-xf")
            .arg(&source)
            .arg("-C")
            .arg(&tree)
            .arg("--strip-components=1"),
    )?;
    let fragment = tree.join("vmrescue.config");
    fs::write(&fragment, CONFIG).map_err(io_err(&fragment))?;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C")
            .arg(&tree)
            .args(args)
            // Reproducible: no build host, user or time in the kernel.
            .env("KBUILD_BUILD_USER", "vmrescue")
            .env("KBUILD_BUILD_HOST", "vmrescue")
            .env("KBUILD_BUILD_TIMESTAMP", "1970-01-01")
            .env_remove("ARCH")
            .env_remove("CROSS_COMPILE");
        c
    };
    run(
        "make allnoconfig",
        &mut make(&["KCONFIG_ALLCONFIG=vmrescue.config", "allnoconfig"]),
    )?;
    let config_path = tree.join(".config");
    let config = fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
    let missing = missing_options(CONFIG, &config);
    if !missing.is_empty() {
        let kept = cache.join(format!("rescue-kernel-{key}.config"));
        fs::write(&kept, &config).map_err(io_err(&kept))?;
        return Err(KernelError::Missing {
            source_archive: source,
            missing,
            config: kept,
        });
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    run(
        "make bzImage",
        &mut make(&[&format!("-j{jobs}"), "bzImage"]),
    )?;
    let release_path = tree.join("include/config/kernel.release");
    let release = fs::read_to_string(&release_path)
        .map_err(io_err(&release_path))?
        .trim()
        .to_owned();
    // Published whole: the directory appears only once everything in it is written.
    let stage = work.path().join("out");
    fs::create_dir(&stage).map_err(io_err(&stage))?;
    let built = tree.join("arch/x86/boot/bzImage");
    fs::copy(&built, stage.join(BZIMAGE_FILE)).map_err(io_err(&built))?;
    fs::write(stage.join(".config"), &config).map_err(io_err(&stage))?;
    let info = Built {
        bzimage: dir.join(BZIMAGE_FILE),
        release,
        source: name,
        key,
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|e| io_err(&stage)(e.into()))?;
    fs::write(stage.join(INFO_FILE), json).map_err(io_err(&stage))?;
    fs::rename(&stage, &dir).map_err(io_err(&dir))?;
    let _ = fs::remove_file(&log);
    Ok(info)
}

/// A kernel a build left in `dir`; `None` if it is missing or incomplete.
pub fn open(dir: &Path) -> Option<Built> {
    let mut b: Built = serde_json::from_slice(&fs::read(dir.join(INFO_FILE)).ok()?).ok()?;
    b.bzimage = dir.join(BZIMAGE_FILE);
    b.bzimage.is_file().then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_are_checked_against_the_final_config() {
        let fragment = "# c\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_C=n\n";
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_BB=y\n";
        assert_eq!(missing_options(fragment, config), ["CONFIG_B"]);
        assert!(missing_options(fragment, "CONFIG_A=y\nCONFIG_B=y\n").is_empty());
        // The shipped options are all `y` or `n`, and the kernel needs virtio and ext4.
        assert!(CONFIG.contains("CONFIG_VIRTIO_BLK=y") && CONFIG.contains("CONFIG_EXT4_FS=y"));
        assert!(CONFIG.contains("CONFIG_PVH=y"));
    }

    #[test]
    fn the_newest_source_archive_is_found() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(find_source(d.path()), None);
        for n in [
            "linux-source-6.1.tar.xz",
            "linux-source-6.10.tar.xz",
            "linux-source-6.9.tar.xz",
            "linux-config-6.1",
            "linux-source-7.0",
        ] {
            fs::write(d.path().join(n), "").expect("write");
        }
        assert_eq!(
            find_source(d.path()),
            Some(d.path().join("linux-source-6.10.tar.xz"))
        );
    }

    #[test]
    fn the_cache_key_follows_every_input() {
        let k = cache_key("linux-source-6.1.tar.xz", 10, 5, "gcc 12");
        assert_eq!(k.len(), 16);
        assert_eq!(k, cache_key("linux-source-6.1.tar.xz", 10, 5, "gcc 12"));
        assert_ne!(k, cache_key("linux-source-6.1.tar.xz", 11, 5, "gcc 12"));
        assert_ne!(k, cache_key("linux-source-6.1.tar.xz", 10, 6, "gcc 12"));
        assert_ne!(k, cache_key("linux-source-6.1.tar.xz", 10, 5, "gcc 13"));
        assert_ne!(k, cache_key("linux-source-6.2.tar.xz", 10, 5, "gcc 12"));
    }

    #[test]
    fn an_incomplete_cache_directory_is_not_a_kernel() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(open(d.path()), None);
        let info = r#"{"release":"6.1.0","source":"linux-source-6.1.tar.xz","key":"k"}"#;
        fs::write(d.path().join(INFO_FILE), info).expect("info");
        assert_eq!(open(d.path()), None, "no bzImage");
        fs::write(d.path().join(BZIMAGE_FILE), "x").expect("bzImage");
        let b = open(d.path()).expect("complete");
        assert_eq!(b.release, "6.1.0");
        assert_eq!(b.bzimage, d.path().join(BZIMAGE_FILE));
    }
}
