//! Volume layouts real guests have, laid out by the real tools without activating anything on
//! the host (whose kernel has no device-mapper and no md): LVM physical volumes and volume
//! groups written by `pvcreate` / `vgcreate` onto a loop device over an image file, with their
//! own throw-away LVM configuration (no backups in the host's /etc/lvm, no other device
//! scanned, no udev).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::fixture::run;

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

/// An LVM command confined to `dev`, its configuration in `conf_dir`.
fn lvm(conf_dir: &Path, dev: &Path, args: &[&str]) -> Result<()> {
    let filter = format!(
        "devices {{ filter = [ \"a|^{}$|\", \"r|.*|\" ] obtain_device_list_from_udev = 0 }} activation {{ udev_sync = 0 udev_rules = 0 }} backup {{ backup = 0 archive = 0 }}",
        dev.display()
    );
    run(Command::new(args[0])
        .args(&args[1..])
        .args(["--config", &filter])
        .env("LVM_SYSTEM_DIR", conf_dir)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1"))?;
    Ok(())
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
