//! A `vmrescue rescue` running in the background, for the tests that interrupt one: its
//! progress lines as they come, its QEMU child, signals to either, and its end.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::harness::{self, Run};

/// A running rescue.
pub struct Live {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line seen so far.
    pub seen: Vec<String>,
    stdout: std::thread::JoinHandle<String>,
}

impl Live {
    /// Starts `vmrescue rescue --json --image IMAGE --mode MODE --disk ...` plus `extra`.
    pub fn start(disks: &[&Path], mode: &str, extra: &[&str]) -> Result<Live> {
        Live::start_with_image(&harness::image().dir, disks, mode, extra)
    }

    /// [`Live::start`] booting the image in `image_dir`.
    pub fn start_with_image(
        image_dir: &Path,
        disks: &[&Path],
        mode: &str,
        extra: &[&str],
    ) -> Result<Live> {
        let mut cmd = Command::new(harness::vmrescue_bin()?);
        cmd.args(["rescue", "--json", "--mode", mode, "--image"])
            .arg(image_dir)
            .args(extra);
        for d in disks {
            cmd.arg("--disk").arg(d);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vmrescue")?;
        let err = child.stderr.take().context("stderr")?;
        let mut out = child.stdout.take().context("stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(|l| l.ok()) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        Ok(Live {
            child,
            lines,
            seen: Vec::new(),
            stdout,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; the `nth` such line (from 1).
    pub fn wait_for(&mut self, needle: &str, nth: usize, limit: Duration) -> Result<String> {
        let until = Instant::now() + limit;
        let mut count = self.seen.iter().filter(|l| l.contains(needle)).count();
        if count >= nth {
            return Ok(self
                .seen
                .iter()
                .filter(|l| l.contains(needle))
                .nth(nth - 1)
                .cloned()
                .unwrap_or_default());
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l.clone());
                    if hit {
                        count += 1;
                        if count >= nth {
                            return Ok(l);
                        }
                    }
                }
                Err(_) => bail!(
                    "no line with {needle:?} (#{nth}) within {limit:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The QEMU processes this rescue started (its children).
    pub fn qemu_pids(&self) -> Vec<u32> {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p: &u32| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("qemu-system"))
            })
            .collect()
    }

    /// Waits until vmrescue's QEMU child runs; its pids.
    pub fn wait_qemu(&self, limit: Duration) -> Result<Vec<u32>> {
        let until = Instant::now() + limit;
        loop {
            let pids = self.qemu_pids();
            if !pids.is_empty() {
                return Ok(pids);
            }
            if Instant::now() >= until {
                bail!(
                    "no QEMU child of vmrescue (pid {}) within {limit:?}",
                    self.pid()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `sig` to vmrescue itself.
    pub fn signal(&self, sig: rustix::process::Signal) -> Result<()> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).context("pid")?;
        rustix::process::kill_process(pid, sig)?;
        Ok(())
    }

    /// Waits for vmrescue to end (at most `limit`) and gathers what it printed.
    pub fn finish(mut self, limit: Duration) -> Result<Run> {
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "vmrescue did not end within {limit:?}; stderr:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        let stdout = self.stdout.join().unwrap_or_default();
        Ok(Run {
            code: status.code().unwrap_or(-1),
            report: serde_json::from_str(&stdout).ok(),
            stdout,
            stderr: self.seen.join("\n"),
        })
    }
}

/// Kills process `pid` with SIGKILL (a power cut, for a QEMU).
pub fn kill9(pid: u32) -> Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32).context("pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    Ok(())
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim().starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}
