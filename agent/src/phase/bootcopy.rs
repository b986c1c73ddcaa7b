//! The host's boot-copy scratch disk (`vmrescue.bootcopy=UUID`): set apart from the guest's
//! disks before the checks (never checked, never inspected), and after the fixes given a copy
//! of the guest's own kernel and initramfs (the report's `boot_config`), so the host can boot
//! the guest to prove the repair without ever mounting a guest filesystem itself.

use std::fs;
use std::io::{Read, Write};

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::inventory::DiskScan;
use vmrescue_protocol::paths::{BOOTCOPY_DIR, BOOTCOPY_INITRD, BOOTCOPY_KERNEL};
use vmrescue_protocol::{Report, Step};

use crate::inspect::MountedTree;
use crate::phase::inspect::BootTree;
use crate::phase::undo;
use crate::reporter::Reporter;

/// What the boot-copy scratch disk is marked as among the scans.
pub const MEDIUM: &str = "boot-copy scratch disk";
/// The largest kernel or initramfs copied.
const MAX_FILE: u64 = 1 << 30;

/// Finds the scratch disk (ext4 filesystem `uuid`), marks its disk apart from the guest's and
/// returns its device.
pub fn reserve(scans: &mut [DiskScan], uuid: &str, rep: &mut Reporter) -> Option<String> {
    let Some((disk, name)) = undo::find(scans, uuid).map(|(i, n)| (i, n.to_owned())) else {
        rep.warn(
            Step::BootCopy,
            None,
            format!("the boot-copy scratch disk (filesystem {uuid}) is not attached; the guest's kernel is not copied out"),
        );
        return None;
    };
    if let Some(s) = scans.get_mut(disk) {
        s.medium = Some(MEDIUM.into());
    }
    Some(format!("/dev/{name}"))
}

/// Copies the kernel and initramfs of `report.boot_config` from the guest's root (`mounted`:
/// the repair's read-write mount of it, else it is mounted read-only) to the scratch disk
/// `dev`. Failures are warnings: the host then boots through the firmware.
pub fn copy(dev: &str, report: &Report, mounted: Option<&MountedTree>, rep: &mut Reporter) {
    let Some(cfg) = report.boot_config.as_ref() else {
        rep.progress(
            Step::BootCopy,
            None,
            "no boot entry of the guest's own was found: nothing to copy",
        );
        return;
    };
    let tree = match mounted {
        Some(root) => BootTree::over(report, root),
        None => BootTree::mount(report),
    };
    let Some(tree) = tree else {
        rep.warn(
            Step::BootCopy,
            None,
            "the guest's root does not mount again: its kernel is not copied out".into(),
        );
        return;
    };
    let scratch = match MountedTree::mount_rw(dev, FsType::Ext4, "bootcopy") {
        Ok(t) => t,
        Err(e) => {
            rep.warn(
                Step::BootCopy,
                Some(dev),
                format!("boot-copy scratch disk: {e}"),
            );
            return;
        }
    };
    let dir = scratch.path().join(BOOTCOPY_DIR);
    let mut files = vec![(cfg.kernel.as_str(), BOOTCOPY_KERNEL)];
    files.extend(cfg.initrd.as_deref().map(|i| (i, BOOTCOPY_INITRD)));
    let result = fs::create_dir_all(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| {
            for (from, to) in &files {
                let n = copy_one(&tree, from, &dir.join(to))?;
                rep.progress(
                    Step::BootCopy,
                    Some(&tree.root_dev),
                    format!("copied {from} ({n} bytes) for the verify boot"),
                );
            }
            Ok(())
        });
    if let Err(e) = result {
        rep.warn(
            Step::BootCopy,
            Some(&tree.root_dev),
            format!("copying the guest's boot files: {e}"),
        );
    }
    if let Err(e) = scratch.unmount() {
        rep.warn(
            Step::BootCopy,
            Some(dev),
            format!("boot-copy scratch disk: {e}"),
        );
    }
}

fn copy_one(tree: &BootTree, from: &str, to: &std::path::Path) -> Result<u64, String> {
    let src = tree
        .open_file(from)
        .ok_or_else(|| format!("{from} is not a regular file on the guest's root"))?;
    let mut out = fs::File::create(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let n =
        std::io::copy(&mut src.take(MAX_FILE + 1), &mut out).map_err(|e| format!("{from}: {e}"))?;
    if n > MAX_FILE {
        let _ = fs::remove_file(to);
        return Err(format!("{from} is larger than {MAX_FILE} bytes"));
    }
    out.flush()
        .and_then(|()| out.sync_all())
        .map_err(|e| format!("{}: {e}", to.display()))?;
    Ok(n)
}
