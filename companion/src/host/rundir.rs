//! A rescue's run directory (`vmrescue-run-*` under `$XDG_RUNTIME_DIR` or the temporary
//! directory): the agent's socket, the console and QEMU logs, the scratch disks. Each is new
//! per run and locked (`flock` on its `.lock`) while its vmrescue lives, so a run killed with
//! SIGKILL is told apart from one still going: the next rescue reports the directories such
//! runs left, and refuses a disk whose rescue VM a killed run left running.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

pub const PREFIX: &str = "vmrescue-run-";
const LOCK: &str = ".lock";
/// The lock file while it is being made (never looked at by `stale`).
const LOCK_NEW: &str = ".lock-new";
const DISKS: &str = "disks";
/// Run directories looked at, at most.
const MAX_SCAN: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("cannot create a run directory in {}: {source}", base.display())]
    Create {
        base: PathBuf,
        source: std::io::Error,
    },
    #[error("run directory {}: {what}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// This run's directory, locked while it lives.
pub struct RunDir {
    dir: tempfile::TempDir,
    _lock: File,
}

impl RunDir {
    /// Creates and locks a new run directory in `base`, noting the disks it rescues.
    pub fn create(base: &Path, disks: &[&Path]) -> Result<RunDir, RunDirError> {
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(base)
            .map_err(|source| RunDirError::Create {
                base: base.to_owned(),
                source,
            })?;
        let io = |what, path: PathBuf| move |source| RunDirError::Io { what, path, source };
        // Locked before it is named `.lock`: another rescue looking for killed runs (`stale`)
        // briefly locks every `.lock` it finds, and must never find this one unlocked (it would
        // take this run for a killed one, and its lock would make ours fail).
        let lock_path = dir.path().join(LOCK);
        let new_path = dir.path().join(LOCK_NEW);
        let lock = File::create(&new_path).map_err(io("creating the lock", new_path.clone()))?;
        flock(&lock, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io("locking", new_path.clone())(e.into()))?;
        fs::rename(&new_path, &lock_path).map_err(io("naming the lock", lock_path))?;
        let list: String = disks.iter().map(|d| format!("{}\n", d.display())).collect();
        let disks_path = dir.path().join(DISKS);
        fs::write(&disks_path, list).map_err(io("writing", disks_path))?;
        Ok(RunDir { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the directory after the run (for the operator); returns its path. It is no
    /// longer a run's: its lock goes, so later runs do not take it for a killed one.
    pub fn keep(self) -> PathBuf {
        let _ = fs::remove_file(self.dir.path().join(LOCK));
        self.dir.keep()
    }
}

/// A run directory whose vmrescue is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub path: PathBuf,
    /// The disks that run rescued.
    pub disks: Vec<PathBuf>,
    /// Its rescue VM, still running.
    pub qemu: Option<u32>,
}

/// Where run directories are made: `$XDG_RUNTIME_DIR` when it is a directory, else the
/// temporary directory.
pub fn base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// The run directories in `base` that are ours (same owner), unlocked (their vmrescue died)
/// and still there, with any QEMU that still uses them.
pub fn stale(base: &Path) -> Vec<Stale> {
    let me = rustix::process::geteuid().as_raw();
    let Ok(entries) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten().take(MAX_SCAN) {
        let path = e.path();
        let ours = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PREFIX))
            && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !ours {
            continue;
        }
        let Ok(lock) = File::open(path.join(LOCK)) else {
            continue;
        };
        if flock(&lock, FlockOperation::NonBlockingLockShared).is_err() {
            continue; // its vmrescue is alive
        }
        // A run that just ended (its directory removed, then its lock released) is gone, not
        // killed: the lock must still be the run's `.lock`.
        let same = |a: &fs::Metadata, b: &fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
        let still_there = lock
            .metadata()
            .ok()
            .zip(fs::metadata(path.join(LOCK)).ok())
            .is_some_and(|(a, b)| same(&a, &b));
        if !still_there {
            continue;
        }
        let disks = fs::read(path.join(DISKS))
            .map(|b| {
                String::from_utf8_lossy(&b[..b.len().min(64 << 10)])
                    .lines()
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        let qemu = qemu_using(&path);
        out.push(Stale { path, disks, qemu });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A QEMU process whose command line names a file in `dir` (its socket, its console log).
fn qemu_using(dir: &Path) -> Option<u32> {
    let needle = format!("{}/", dir.display());
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains("qemu-system") && cmd.contains(&needle)).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_made_while_others_look_for_killed_ones_are_never_taken_for_them() {
        let base = tempfile::tempdir().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let lookers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut seen = Vec::new();
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            seen.extend(stale(base.path()));
                        }
                        seen
                    })
                })
                .collect();
            let makers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..150 {
                            let run = RunDir::create(base.path(), &[]);
                            assert!(run.is_ok(), "{:?}", run.err());
                        }
                    })
                })
                .collect();
            // Every maker ends (a failed one too) before the lookers are stopped.
            let made: Vec<_> = makers.into_iter().map(|m| m.join()).collect();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for m in made {
                m.unwrap_or_else(|e| std::panic::resume_unwind(e));
            }
            for l in lookers {
                let seen = l.join().unwrap();
                assert!(seen.is_empty(), "live runs taken for killed ones: {seen:?}");
            }
        });
    }

    #[test]
    fn a_live_run_is_not_stale_and_a_dead_one_is() {
        let base = tempfile::tempdir().unwrap();
        let disk = base.path().join("disk.img");
        let live = RunDir::create(base.path(), &[&disk]).unwrap();
        assert!(stale(base.path()).is_empty(), "a locked run is alive");
        // What a SIGKILLed run leaves: its directory, its lock file unlocked.
        let RunDir { dir, _lock } = live;
        drop(_lock);
        let left = dir.keep();
        let s = stale(base.path());
        assert_eq!(
            s,
            [Stale {
                path: left.clone(),
                disks: vec![disk],
                qemu: None
            }]
        );
        let kept = RunDir::create(base.path(), &[]).unwrap().keep();
        assert!(kept.is_dir());
        assert_eq!(
            stale(base.path()).len(),
            1,
            "a directory kept on purpose is not stale"
        );
        fs::create_dir(base.path().join("other-dir")).unwrap();
        fs::create_dir(base.path().join(format!("{PREFIX}nolock"))).unwrap();
        assert_eq!(
            stale(base.path()).len(),
            1,
            "only run directories with a lock"
        );
    }
}
