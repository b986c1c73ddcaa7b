//! Block devices as sysfs shows them, and the filesystems on them.

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, Instant};

use vmrescue_discovery::{ext, read_at};
use vmrescue_protocol::Disk;

/// Kernel names that are never a guest disk.
fn ignored(name: &str) -> bool {
    ["loop", "ram", "zram", "fd", "nbd", "md", "dm-", "sr"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// Disks and their partitions under a sysfs root, sorted by name.
pub fn list(sys: &Path) -> Vec<Disk> {
    let Ok(dir) = fs::read_dir(sys.join("block")) else {
        return Vec::new();
    };
    let mut disks: Vec<Disk> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            if ignored(&name) || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            let path = e.path();
            let sectors: u64 = read_trim(&path.join("size"))?.parse().ok()?;
            let mut partitions: Vec<String> = fs::read_dir(&path)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|p| p.path().join("partition").exists())
                .filter_map(|p| p.file_name().to_str().map(str::to_owned))
                .collect();
            partitions.sort_by_key(|p| (p.len(), p.clone()));
            let serial = read_trim(&path.join("serial"))
                .or_else(|| read_trim(&path.join("device/serial")))
                .filter(|s| !s.is_empty());
            // The host's late-archive disk is the rescue's own, never the guest's.
            if serial.as_deref() == Some(vmrescue_protocol::paths::LATE_SERIAL) {
                return None;
            }
            Some(Disk {
                read_only: read_trim(&path.join("ro")).as_deref() == Some("1"),
                size_bytes: sectors.saturating_mul(512),
                serial,
                partitions,
                name,
                ..Default::default()
            })
        })
        .filter(|d| d.size_bytes > 0)
        .collect();
    disks.sort_by_key(|d| (d.name.len(), d.name.clone()));
    disks
}

/// Waits until `expected` disks are there (when the host said how many it attached), else
/// until the set of disks stays the same for a moment; or until `timeout` runs out. While
/// waiting, `poll` runs every [`POLL_EVERY`] (the agent loads drivers for devices that showed
/// up late, such as a USB or SCSI disk found by an asynchronous scan).
pub fn settle(
    sys: &Path,
    timeout: Duration,
    expected: Option<u32>,
    poll: &mut dyn FnMut(),
) -> Vec<Disk> {
    let deadline = Instant::now() + timeout;
    let quiet = Duration::from_millis(300);
    let mut last = list(sys);
    let mut since = Instant::now();
    let mut polled = Instant::now();
    loop {
        if expected.is_some_and(|n| last.len() >= n as usize) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(20));
        if polled.elapsed() >= POLL_EVERY {
            poll();
            polled = Instant::now();
        }
        let now = list(sys);
        if now != last {
            last = now;
            since = Instant::now();
        } else if expected.is_none() && since.elapsed() >= quiet && !last.is_empty() {
            return last;
        }
        if Instant::now() >= deadline {
            return last;
        }
    }
}

/// How often [`settle`] runs its poll.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// Reads the ext superblock of a device; `Ok(None)` when there is none.
pub fn probe_ext(dev: &Path) -> std::io::Result<Option<ext::Superblock>> {
    let mut f = File::open(dev)?;
    let sb = read_at(&mut f, ext::SUPERBLOCK_OFFSET, ext::SUPERBLOCK_SIZE)?;
    Ok(ext::Superblock::parse(&sb).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(sys: &Path, name: &str, sectors: u64, parts: &[&str]) {
        let d = sys.join("block").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
        fs::write(d.join("ro"), "0\n").unwrap();
        for p in parts {
            fs::create_dir_all(d.join(p)).unwrap();
            fs::write(d.join(p).join("partition"), "1\n").unwrap();
        }
    }

    #[test]
    fn lists_disks_and_partitions() {
        let t = tempfile::tempdir().unwrap();
        disk(t.path(), "vdb", 2048, &[]);
        disk(t.path(), "vda", 4096, &["vda10", "vda2", "vda1"]);
        disk(t.path(), "loop0", 100, &[]);
        disk(t.path(), "sr0", 100, &[]);
        disk(t.path(), "vdc", 0, &[]);
        disk(t.path(), "vdd", 9000, &[]);
        fs::write(t.path().join("block/vdb/serial"), "vmrescue-d1\n").unwrap();
        // The host's late-archive disk is the rescue's own.
        fs::write(t.path().join("block/vdd/serial"), "vmrescue-late\n").unwrap();
        let disks = list(t.path());
        let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["vda", "vdb"]);
        assert_eq!(disks[0].partitions, ["vda1", "vda2", "vda10"]);
        assert_eq!(disks[0].size_bytes, 4096 * 512);
        assert_eq!(disks[1].serial.as_deref(), Some("vmrescue-d1"));
    }

    #[test]
    fn settle_returns_after_quiet_period() {
        let t = tempfile::tempdir().unwrap();
        disk(t.path(), "vda", 10, &[]);
        let start = Instant::now();
        let disks = settle(t.path(), Duration::from_secs(5), None, &mut || {});
        assert_eq!(disks.len(), 1);
        assert!(start.elapsed() < Duration::from_secs(2));
        // Told how many: no quiet period once they are all there.
        disk(t.path(), "vdb", 10, &[]);
        let start = Instant::now();
        assert_eq!(
            settle(t.path(), Duration::from_secs(30), Some(2), &mut || {}).len(),
            2
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not the time limit"
        );
        // Waits for the ones not there yet, up to the limit.
        let start = Instant::now();
        let mut polls = 0;
        assert_eq!(
            settle(t.path(), Duration::from_millis(600), Some(3), &mut || {
                polls += 1
            })
            .len(),
            2
        );
        assert!(start.elapsed() >= Duration::from_millis(600));
        assert!(polls >= 2, "polled while waiting: {polls}");
        // A poll that brings the missing disk (a driver loaded late) ends the wait.
        let sys = t.path().to_owned();
        let mut polls = 0;
        let found = settle(&sys, Duration::from_secs(30), Some(3), &mut || {
            polls += 1;
            disk(&sys, "sda", 10, &[]);
        });
        assert_eq!(found.len(), 3);
        assert!(polls >= 1);
    }

    #[test]
    fn probe_reads_ext_superblock_from_a_file() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("garbage.img");
        fs::write(&img, vec![0x5a; 8192]).unwrap();
        assert_eq!(probe_ext(&img).unwrap(), None);
        let short = t.path().join("short.img");
        fs::write(&short, b"tiny").unwrap();
        assert_eq!(probe_ext(&short).unwrap(), None);
    }
}
