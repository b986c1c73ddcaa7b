//! `vmrescue inspect IMG...`: the rescue's discovery on image files, on the host, no VM. Disks
//! are named `vda`, `vdb`... in the order given, as the rescue VM would attach them. ext
//! filesystems are read with e2fsprogs' `debugfs` (read-only; the image is never mounted).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use vmrescue_discovery::assemble::{self, Found};
use vmrescue_discovery::inventory::{self, Volume};
use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol as p;

use crate::host::diskimage::Format;

mod layers;

/// The JSON `inspect --json` prints: the same sections as a rescue report.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Image file of each disk, in order (`vda` first).
    pub images: Vec<String>,
    pub disks: Vec<p::Disk>,
    pub partitions: Vec<p::Partition>,
    pub filesystems: Vec<p::Filesystem>,
    pub os: p::OsInfo,
    pub fstab: Option<p::FstabReport>,
    pub warnings: Vec<p::Warning>,
    /// The LVM volume groups, md arrays and LUKS containers read from the disks (nothing
    /// activated, assembled or opened).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<p::Layer>,
}

/// Why images cannot be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no image given: vmrescue inspect IMG [IMG...]")]
    NoImage,
    #[error(transparent)]
    DiskImage(#[from] crate::host::diskimage::DiskImageError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("running qemu-img: {0}; install qemu-utils (scripts/setup.sh)")]
    QemuImg(std::io::Error),
    #[error("qemu-img convert {}: {stderr}", image.display())]
    Convert { image: PathBuf, stderr: String },
}

type Result<T> = std::result::Result<T, InspectError>;

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InspectError {
    let path = path.to_owned();
    move |source| InspectError::Io { what, path, source }
}

/// A qcow2 image is read through a sparse raw copy made by `qemu-img convert`.
struct Raw {
    path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// `format` is the operator's `--format` (`None`: detected, and a qcow2 naming another file is
/// refused, see `diskimage`).
fn raw_view(image: &Path, format: Option<Format>) -> Result<Raw> {
    match crate::host::diskimage::check(image, format)?.format {
        Format::Raw => Ok(Raw {
            path: image.to_owned(),
            _tmp: None,
        }),
        Format::Qcow2 => {
            let tmp = tempfile::Builder::new()
                .prefix("vmrescue-inspect-")
                .tempdir()
                .map_err(io("creating a scratch directory for", image))?;
            let path = tmp.path().join("disk.raw");
            let out = Command::new("qemu-img")
                .args(["convert", "-f", "qcow2", "-O", "raw"])
                .arg(image)
                .arg(&path)
                .output()
                .map_err(InspectError::QemuImg)?;
            if !out.status.success() {
                return Err(InspectError::Convert {
                    image: image.to_owned(),
                    stderr: crate::render::clean(String::from_utf8_lossy(&out.stderr).trim()),
                });
            }
            Ok(Raw {
                path,
                _tmp: Some(tmp),
            })
        }
    }
}

/// An ext filesystem inside an image file, read with `debugfs` (read-only).
pub struct DebugfsTree {
    /// `IMAGE?offset=N`, e2fsprogs' syntax for a filesystem inside a larger file.
    spec: String,
}

/// Symlinks followed at most while resolving one path.
const MAX_LINKS: usize = 8;

impl DebugfsTree {
    pub fn new(image: &Path, offset: u64) -> Self {
        DebugfsTree {
            spec: format!("{}?offset={offset}", image.display()),
        }
    }

    fn request(&self, req: &str) -> Option<Vec<u8>> {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(req)
            .arg(&self.spec)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    /// `(type, fast symlink target)` of a path's inode, without following a final symlink.
    fn stat(&self, path: &str) -> Option<(String, Option<String>)> {
        // Guest-controlled names never reach debugfs: only our fixed paths and checked targets.
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'"')
        {
            return None;
        }
        let out = String::from_utf8_lossy(&self.request(&format!("stat {path}"))?).into_owned();
        let kind = out
            .split("Type: ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_owned();
        let target = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Fast link dest: "))
            .map(|t| t.trim_matches('"').to_owned());
        Some((kind, target))
    }

    /// Follows symlinks (inside the filesystem) to the final path.
    fn resolve(&self, path: &str) -> Option<(String, String)> {
        let mut path = path.to_owned();
        for _ in 0..MAX_LINKS {
            let (kind, target) = self.stat(&path)?;
            if kind != "symlink" {
                return Some((path, kind));
            }
            let target = target?;
            path = if target.starts_with('/') {
                target
            } else {
                let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                normalise(&format!("{parent}/{target}"))
            };
        }
        None
    }
}

use vmrescue_discovery::path::clamp_at_root as normalise;

impl Tree for DebugfsTree {
    fn exists(&self, path: &str) -> bool {
        self.stat(path).is_some()
    }

    fn is_dir(&self, path: &str) -> bool {
        self.resolve(path).is_some_and(|(_, k)| k == "directory")
    }

    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let (real, kind) = self.resolve(path)?;
        if kind != "regular" {
            return None;
        }
        let mut data = self.request(&format!("cat {real}"))?;
        data.truncate(max);
        Some(data)
    }

    fn list(&self, path: &str) -> Vec<String> {
        let Some((real, _)) = self.resolve(path) else {
            return Vec::new();
        };
        let Some(out) = self.request(&format!("ls -p {real}")) else {
            return Vec::new();
        };
        // Lines look like `/12/100644/0/0/name/size/`.
        String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split('/').nth(5).map(str::to_owned))
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .collect()
    }
}

/// Discovery over image files.
pub fn inspect(
    images: &[PathBuf],
    root: Option<&str>,
    format: Option<Format>,
) -> Result<Inspection> {
    if images.is_empty() {
        return Err(InspectError::NoImage);
    }
    let raws: Vec<Raw> = images
        .iter()
        .map(|i| raw_view(i, format))
        .collect::<Result<_>>()?;
    let mut scans = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        let name = disk_name(i);
        let mut f = File::open(&raw.path).map_err(io("opening", &images[i]))?;
        let size = f
            .metadata()
            .map_err(io("reading the size of", &images[i]))?
            .len();
        scans.push(inventory::scan_disk(&name, &mut f, size));
    }
    // Each scan's image (the LVs' are windows onto their disk's).
    let mut image_of: Vec<usize> = (0..scans.len()).collect();
    let paths: Vec<&Path> = raws.iter().map(|r| r.path.as_path()).collect();
    let (lv_scans, mut layers) = layers::logical_volumes(&scans, &paths);
    let (md_scans, md_layers) = layers::md_arrays(&scans, &paths);
    layers.extend(md_layers);
    layers.extend(layers::luks_containers(&scans));
    for (disk, scan) in lv_scans.into_iter().chain(md_scans) {
        scans.push(scan);
        image_of.push(disk);
    }
    let mut tree = |v: &Volume| -> Option<Box<dyn Tree>> {
        let fstype = v.probe.as_ref()?.fstype;
        if !fstype.is_ext() {
            return None;
        }
        let idx = scans
            .iter()
            .position(|s| s.volumes.iter().any(|x| x.name == v.name))?;
        let raw = raws.get(*image_of.get(idx)?)?;
        Some(Box::new(DebugfsTree::new(&raw.path, v.offset)))
    };
    let mut found: Found =
        assemble::assemble(&scans, "/dev/", &mut tree, root, &Default::default());
    let lv_names: Vec<String> = layers
        .iter()
        .flat_map(|l| l.devices.iter())
        .filter_map(|d| d.strip_prefix("/dev/").map(str::to_owned))
        .collect();
    found.disks.retain(|d| !lv_names.contains(&d.name));
    for fs in &mut found.filesystems {
        fs.opened_as = layers
            .iter()
            .filter(|l| l.members.contains(&fs.device))
            .flat_map(|l| l.devices.iter().cloned())
            .collect();
    }
    Ok(Inspection {
        images: images.iter().map(|p| p.display().to_string()).collect(),
        disks: found.disks,
        partitions: found.partitions,
        filesystems: found.filesystems,
        os: found.os,
        fstab: found.fstab,
        layers,
        warnings: found
            .warnings
            .into_iter()
            .map(|message| p::Warning {
                step: p::Step::Discovery,
                message,
                device: None,
            })
            .collect(),
    })
}

/// The kernel's name for the `i`-th virtio disk: `vda`..`vdz`, then `vdaa`, `vdab`...
fn disk_name(i: usize) -> String {
    let mut suffix = Vec::new();
    let mut n = i + 1;
    while n > 0 {
        n -= 1;
        suffix.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    suffix.reverse();
    format!("vd{}", String::from_utf8_lossy(&suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_inside_the_root() {
        assert_eq!(
            normalise("/etc/../usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(normalise("/../../etc"), "/etc");
        assert_eq!(normalise("/a/./b//c"), "/a/b/c");
        assert_eq!(disk_name(0), "vda");
        assert_eq!(disk_name(25), "vdz");
        assert_eq!(disk_name(26), "vdaa");
        assert_eq!(disk_name(27), "vdab");
    }

    #[test]
    fn hostile_names_never_reach_debugfs() {
        let t = DebugfsTree::new(Path::new("/nonexistent.img"), 0);
        assert!(!t.exists("/etc/x\"; rdump / /tmp"));
        assert!(!t.exists("/a b"));
    }
}
