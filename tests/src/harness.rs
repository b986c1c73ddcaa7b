//! Runs the real `vmrescue` binary against the real rescue image under QEMU.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use vmrescue_image_builder::{self as builder, Artefacts};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The static agent: `$VMRESCUE_AGENT` or the workspace's musl release build.
pub fn agent() -> Result<PathBuf> {
    let p = std::env::var_os("VMRESCUE_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("x86_64-unknown-linux-musl/release/vmrescue-agent"));
    if !p.is_file() {
        bail!(
            "the static agent {} is missing: run the tests with scripts/test.sh, which builds it \
             (cargo build --release -p vmrescue-agent --target x86_64-unknown-linux-musl)",
            p.display()
        );
    }
    Ok(p)
}

/// The `vmrescue` binary cargo built next to this test executable (or `$VMRESCUE_BIN`).
pub fn vmrescue_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VMRESCUE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/debug/deps/<test> -> target/debug/vmrescue
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("vmrescue"))
        .context("locating the vmrescue binary")?;
    if !p.is_file() {
        bail!(
            "{} is missing: build it with cargo build -p vmrescue-companion",
            p.display()
        );
    }
    // `cargo test -p vmrescue-tests` does not rebuild another package's binary: refuse to
    // test a stale one.
    let built = std::fs::metadata(&p)?.modified()?;
    let root = workspace_root();
    if let Some(newer) = [
        "companion/src",
        "protocol/src",
        "image-builder/src",
        "discovery/src",
    ]
    .iter()
    .flat_map(|d| walk(&root.join(d)))
    .find(|f| {
        std::fs::metadata(f)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m > built)
    }) {
        bail!(
            "{} is older than {}: rebuild it (cargo build -p vmrescue-companion, or run scripts/test.sh)",
            p.display(),
            newer.display()
        );
    }
    Ok(p)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The purpose-made rescue kernel (scripts/setup.sh installs its source), built once into the
/// cache and reused by every later run.
pub fn rescue_kernel() -> Result<builder::rescue_kernel::Built> {
    Ok(builder::rescue_kernel::ensure(
        None,
        &builder::rescue_kernel::default_cache(),
        &mut |n| eprintln!("{n}"),
    )?)
}

/// What an image for the tests is built from.
struct Recipe {
    /// Its directory under the test target's `vmrescue-test/`.
    name: &'static str,
    /// `None`: the current agent.
    init: Option<&'static str>,
    /// Boot media whose menu defaults to this mode.
    media: Option<vmrescue_protocol::Mode>,
    rescue_kernel: bool,
    /// The host kernel's uncompressed boot files too (its own boots' tests need them).
    host_kernel_files: bool,
}

/// Builds `recipe` once per test process into `cell`; a failure fails the test that needed it.
fn built_once(cell: &'static OnceLock<Artefacts>, recipe: Recipe) -> &'static Artefacts {
    cell.get_or_init(|| {
        let build = || -> Result<Artefacts> {
            Ok(builder::build(&builder::Options {
                kernel: None,
                modules_dir: None,
                agent: match recipe.init {
                    Some(p) => PathBuf::from(p),
                    None => agent()?,
                },
                out: target_dir().join("vmrescue-test").join(recipe.name),
                mtime: None,
                extra: Vec::new(),
                media: recipe
                    .media
                    .map(|mode| vmrescue_protocol::params::Settings {
                        mode,
                        ..Default::default()
                    }),
                rescue_kernel: if recipe.rescue_kernel {
                    Some(rescue_kernel()?)
                } else {
                    None
                },
                host_kernel_files: recipe.host_kernel_files,
            })?)
        };
        match build() {
            Ok(a) if recipe.media.is_some() && (a.iso.is_none() || a.disk_image.is_none()) => {
                panic!("the image in {} has no media", a.dir.display())
            }
            Ok(a) => a,
            Err(e) => panic!(
                "cannot build the {} image for the tests: {e:#}",
                recipe.name
            ),
        }
    })
}

/// The rescue image, built once per test process from the current agent, with the rescue
/// kernel and the host kernel's uncompressed boot files (the tests of its boots take them).
pub fn image() -> &'static Artefacts {
    static IMAGE: OnceLock<Artefacts> = OnceLock::new();
    built_once(
        &IMAGE,
        Recipe {
            name: "image",
            init: None,
            media: None,
            rescue_kernel: true,
            host_kernel_files: true,
        },
    )
}

/// busybox (static): as `/init` it runs busybox's `init`, which never starts the agent.
const SILENT_INIT: &str = "/bin/busybox";

/// An image whose `/init` is busybox's `init` instead of the agent: a rescue booted from it
/// never reports, however fast or slow the machine is. With the rescue kernel.
pub fn silent_image() -> &'static Artefacts {
    static IMAGE: OnceLock<Artefacts> = OnceLock::new();
    built_once(
        &IMAGE,
        Recipe {
            name: "silent-image",
            init: Some(SILENT_INIT),
            media: None,
            rescue_kernel: true,
            host_kernel_files: false,
        },
    )
}

/// [`silent_image`] with boot media (check mode) and the rescue kernel, for `rescue --domain`.
pub fn silent_media_image() -> &'static Artefacts {
    static IMAGE: OnceLock<Artefacts> = OnceLock::new();
    built_once(
        &IMAGE,
        Recipe {
            name: "silent-media",
            init: Some(SILENT_INIT),
            media: Some(vmrescue_protocol::Mode::Check),
            rescue_kernel: true,
            host_kernel_files: false,
        },
    )
}

/// An image with boot media whose menu defaults to `mode` (`check` or `repair`) and the rescue
/// kernel (what `rescue --domain` boots by default), built once per test process.
pub fn media_image(mode: vmrescue_protocol::Mode) -> &'static Artefacts {
    static CHECK: OnceLock<Artefacts> = OnceLock::new();
    static REPAIR: OnceLock<Artefacts> = OnceLock::new();
    let cell = match mode {
        vmrescue_protocol::Mode::Check => &CHECK,
        vmrescue_protocol::Mode::Repair => &REPAIR,
    };
    built_once(
        cell,
        Recipe {
            name: match mode {
                vmrescue_protocol::Mode::Check => "media-check",
                vmrescue_protocol::Mode::Repair => "media-repair",
            },
            init: None,
            media: Some(mode),
            rescue_kernel: true,
            host_kernel_files: false,
        },
    )
}

/// What a `vmrescue rescue --json` run gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub report: Option<serde_json::Value>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// `report[key]` as a string, for assertions.
    pub fn field(&self, pointer: &str) -> String {
        self.report
            .as_ref()
            .and_then(|r| r.pointer(pointer))
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    }

    /// The report (panics with what the run printed when there is none).
    pub fn json(&self) -> &serde_json::Value {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no report (exit {}): {}", self.code, self.stderr))
    }

    /// Asserts the exit status and outcome; the report.
    pub fn expect(&self, code: i32, outcome: &str) -> &serde_json::Value {
        let r = self.json();
        assert_eq!(
            (self.code, r["outcome"].as_str()),
            (code, Some(outcome)),
            "{r:#}"
        );
        r
    }
}

/// The run directory a `--keep-run-dir` rescue names on its standard error.
pub fn run_dir(stderr: &str) -> PathBuf {
    let at = stderr
        .find("run directory ")
        .unwrap_or_else(|| panic!("no run directory in {stderr}"));
    let rest = &stderr[at + "run directory ".len()..];
    PathBuf::from(
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches(';'),
    )
}

/// Runs `vmrescue rescue --json --image IMAGE --mode MODE --disk ...` plus `extra` arguments.
pub fn rescue(disks: &[&Path], mode: &str, extra: &[&str]) -> Result<Run> {
    rescue_with_image(&image().dir, disks, mode, extra)
}

/// A repair-mode [`rescue`] with `verify_flags` (`--verify`, `--verify-before`, ...) whose
/// verify boots may each take the guest's boot budget.
pub fn repair_verified(disks: &[&Path], verify_flags: &[&str]) -> Result<Run> {
    let limit = crate::budgets::secs(crate::budgets::GUEST_BOOT);
    let mut extra = verify_flags.to_vec();
    extra.extend(["--verify-timeout", &limit]);
    rescue(disks, "repair", &extra)
}

/// [`rescue`] booting the image in `image_dir`.
pub fn rescue_with_image(
    image_dir: &Path,
    disks: &[&Path],
    mode: &str,
    extra: &[&str],
) -> Result<Run> {
    let mut cmd = Command::new(vmrescue_bin()?);
    cmd.args(["rescue", "--json", "--mode", mode, "--image"])
        .arg(image_dir)
        .args(extra);
    for d in disks {
        cmd.arg("--disk").arg(d);
    }
    let out = cmd.output().context("running vmrescue")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_str(&stdout).ok(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
