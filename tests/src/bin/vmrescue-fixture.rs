//! `vmrescue-fixture broken-root IMG`: makes the demo's broken guest disk and prints what was
//! done to it. The same code builds the end-to-end tests' disks.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [kind, out] if kind == "broken-root" => {
            let disk = vmrescue_tests::fixture::broken_root(&PathBuf::from(out))?;
            println!(
                "made {out}: 64 MiB ext4 root (label guestroot) with {} files",
                disk.sums.len()
            );
            println!("  superblock state: errors (as after a journal abort), error count 3");
            println!(
                "  damaged inode: {} (link count 7, should be 1)",
                vmrescue_tests::fixture::VICTIM
            );
            Ok(())
        }
        [kind, out] if kind == "field-failure" => {
            let disk = vmrescue_tests::fixture::field_failure(&PathBuf::from(out))?;
            println!(
                "made {out}: 64 MiB ext4 root (label guestroot) with {} files",
                disk.sums.len()
            );
            println!("  superblock state: errors (as after a journal abort), error count 3");
            println!(
                "  damaged inode: {} (link count 7, should be 1)",
                vmrescue_tests::fixture::VICTIM
            );
            println!("  /proc and /run missing");
            println!(
                "  /etc/fstab: root by kernel name (/dev/vda), /srv/data on a volume that is gone"
            );
            Ok(())
        }
        _ => anyhow::bail!("usage: vmrescue-fixture broken-root|field-failure IMG"),
    }
}
