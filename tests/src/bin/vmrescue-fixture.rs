//! `vmrescue-fixture broken-root|field-failure IMG`: makes a broken guest disk for the demo and
//! prints what was done to it; `vmrescue-fixture lvm-guest DIR` makes the layout of a default
//! LVM install (`DIR/guest.img`) for the benchmark. The same code builds the end-to-end tests'
//! disks.

use std::path::PathBuf;

use vmrescue_tests::fixture::{self, Disk, VICTIM};

fn describe(out: &str, disk: &Disk, extra: &[&str]) {
    println!(
        "made {out}: 64 MiB ext4 root (label guestroot) with {} files",
        disk.sums.len()
    );
    println!("  superblock state: errors (as after a journal abort), error count 3");
    println!("  damaged inode: {VICTIM} (link count 7, should be 1)");
    for line in extra {
        println!("  {line}");
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [kind, out] if kind == "broken-root" => {
            describe(out, &fixture::broken_root(&PathBuf::from(out))?, &[]);
            Ok(())
        }
        [kind, out] if kind == "field-failure" => {
            let disk = fixture::field_failure(&PathBuf::from(out))?;
            describe(
                out,
                &disk,
                &[
                    "/proc and /run missing",
                    "/etc/fstab: root by kernel name (/dev/vda), /srv/data on a volume that is gone",
                ],
            );
            Ok(())
        }
        [kind, dir] if kind == "lvm-guest" => {
            let g = vmrescue_tests::layouts::LvmGuest::make(&PathBuf::from(dir))?;
            println!(
                "made {}: /boot (vda1, ext4) and an LVM physical volume (vda2) of vg0 with root and home (ext4), all three in the error state",
                g.disk.display()
            );
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: vmrescue-fixture broken-root|field-failure IMG, or vmrescue-fixture lvm-guest DIR"
        ),
    }
}
