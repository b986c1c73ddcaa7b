//! Whole disks that lie, through `vmrescue inspect` (the host-side discovery, no VM): a real
//! GPT disk with an ext4 root and a data partition, its partition tables (both GPT copies and
//! the protective MBR) and superblocks overwritten with random bytes and extreme values. Every
//! run ends (in time, memory limited) with a report or a clear error: never a panic, a signal,
//! a hang or a crash of the host tools' wrapper. The discovery crate's property tests drive the
//! probes and table parsers alone (`discovery/tests/`); this puts whole disks through the CLI.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use vmrescue_tests::fixture::{self, Part};
use vmrescue_tests::{budgets, harness};

/// Mutated disks per run (each takes about 150 ms).
const DISKS: u64 = 150;
const MIB: u64 = 1 << 20;

/// xorshift64*: the same mutations on every run, a seed per disk.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn base(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    fixture::os_tree(&tree).unwrap();
    let rootfs = dir.join("root.ext4");
    fixture::mkfs_ext4(&rootfs, 24, "fuzzroot", &tree).unwrap();
    let empty = dir.join("empty");
    fs::create_dir(&empty).unwrap();
    let datafs = dir.join("data.ext4");
    fixture::mkfs_ext4(&datafs, 8, "fuzzdata", &empty).unwrap();
    let disk = dir.join("base.img");
    fixture::partitioned_disk(
        &disk,
        40,
        &[
            Part {
                size_mib: 24,
                gpt_type: fixture::GPT_LINUX_ROOT_X86_64,
                name: "root",
                content: Some(&rootfs),
            },
            Part {
                size_mib: 8,
                gpt_type: fixture::GPT_LINUX_FS,
                name: "data",
                content: Some(&datafs),
            },
        ],
    )
    .unwrap();
    disk
}

/// Overwrites some of the places discovery reads with random bytes or extreme values.
fn mutate(disk: &Path, seed: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Protective MBR, primary GPT header and entries, backup GPT, each superblock.
    let regions = [
        (0, 512),
        (512, 512),
        (1024, 16 * 1024),
        (len - 33 * 512, 33 * 512),
        (MIB + 1024, 1024),
        (25 * MIB + 1024, 1024),
    ];
    for _ in 0..(1 + rng.next() % 24) {
        let (start, size) = regions[(rng.next() % regions.len() as u64) as usize];
        let at = start + rng.next() % size;
        let value: [u8; 8] = match rng.next() % 4 {
            0 => u64::MAX.to_le_bytes(),
            1 => 0u64.to_le_bytes(),
            2 => (1u64 << 31).to_le_bytes(),
            _ => rng.next().to_le_bytes(),
        };
        let width = 1 + (rng.next() % 8) as usize;
        f.write_all_at(&value[..width], at.min(len - width as u64))
            .unwrap();
    }
}

#[test]
fn mutated_whole_disks_never_crash_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let original = base(dir.path());
    let bin = harness::vmrescue_bin().unwrap();
    let mut outcomes = std::collections::BTreeMap::new();
    for seed in 0..DISKS {
        let disk = dir.path().join("fuzzed.img");
        fs::copy(&original, &disk).unwrap();
        mutate(&disk, seed);
        let started = Instant::now();
        let out = Command::new("timeout")
            .args(["-s", "KILL", "60", "sh", "-c"])
            .arg("ulimit -v 1048576 && exec \"$0\" \"$@\"")
            .arg(&bin)
            .args(["inspect", "--json"])
            .arg(&disk)
            .output()
            .unwrap();
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(code, Some(0..=2)),
            "seed {seed}: inspect ended with {:?} after {:?}: {stderr}",
            out.status,
            started.elapsed()
        );
        assert!(!stderr.contains("panicked"), "seed {seed}: {stderr}");
        assert!(started.elapsed() < budgets::MUST_END, "seed {seed}");
        if code != Some(2) {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("seed {seed}: not JSON ({e}): {stderr}"));
            assert!(v["disks"].is_array(), "seed {seed}");
        } else {
            assert!(
                !stderr.trim().is_empty(),
                "seed {seed}: an error says what failed"
            );
        }
        *outcomes.entry(code).or_insert(0) += 1;
    }
    eprintln!("inspect exit statuses over {DISKS} fuzzed disks: {outcomes:?}");
}
