//! `vmrescue watch --exec CMD`: a command per printed incident, `sh -c CMD` with the incident
//! as JSON on its stdin and in `VMRESCUE_INCIDENT`, its fields in `VMRESCUE_*`, its output on
//! the watch's stderr; at most a few at once, and those still running when the watch ends are
//! waited for a while, then killed.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::incident::Incident;

/// How long commands may still run when the watch ends.
pub const GRACE: Duration = Duration::from_secs(10);
/// Commands running at once at most (more incidents wait for one to end).
pub const MAX: usize = 16;

/// The commands started and not yet ended.
pub struct Runner {
    children: Vec<(Child, String)>,
    max: usize,
    grace: Duration,
}

impl Default for Runner {
    fn default() -> Self {
        Runner::new(MAX, GRACE)
    }
}

impl Runner {
    pub fn new(max: usize, grace: Duration) -> Runner {
        Runner {
            children: Vec::new(),
            max: max.max(1),
            grace,
        }
    }

    /// Commands still running.
    pub fn running(&self) -> usize {
        self.children.len()
    }

    /// Runs `--exec` for `inc`: `sh -c CMD`, the incident as JSON on stdin and in
    /// `VMRESCUE_INCIDENT`, its fields in `VMRESCUE_*`; its output goes to stderr.
    pub fn run(&mut self, cmd: &str, inc: &Incident) {
        while self.children.len() >= self.max {
            self.reap(false);
            std::thread::sleep(Duration::from_millis(50));
        }
        let json = serde_json::to_string(inc).unwrap_or_default();
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("VMRESCUE_INCIDENT", &json)
            .env("VMRESCUE_DOMAIN", &inc.domain)
            .env("VMRESCUE_UUID", &inc.uuid)
            .env("VMRESCUE_KIND", inc.kind.as_str())
            .env("VMRESCUE_DISK", inc.disk.as_deref().unwrap_or(""))
            .env(
                "VMRESCUE_SOURCE_FILE",
                inc.source_file.as_deref().unwrap_or(""),
            )
            .env("VMRESCUE_REASON", inc.reason.as_deref().unwrap_or(""))
            .env("VMRESCUE_SOURCE", inc.source.as_str())
            .env("VMRESCUE_SUGGEST", &inc.suggest)
            .stdin(Stdio::piped())
            .stdout(stdout)
            // Its own process group: what it starts ends with it.
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => {
                if let Some(mut stdin) = child.stdin.take() {
                    // One line, far below a pipe's buffer; a command that does not read it
                    // just closes it.
                    let _ = writeln!(stdin, "{json}");
                }
                self.children
                    .push((child, format!("{} {}", inc.domain, inc.kind.as_str())));
            }
            Err(e) => eprintln!("vmrescue watch: cannot run --exec {cmd:?}: {e}"),
        }
    }

    /// Collects ended commands (all of them, up to the grace time, when `wait`).
    pub fn reap(&mut self, wait: bool) {
        let until = Instant::now() + self.grace;
        loop {
            self.children.retain_mut(|(c, what)| match c.try_wait() {
                Ok(Some(st)) => {
                    if !st.success() {
                        eprintln!("vmrescue watch: --exec for {what} ended with {st}");
                    }
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            });
            if !wait || self.children.is_empty() {
                return;
            }
            if Instant::now() >= until {
                for (c, what) in &mut self.children {
                    eprintln!(
                        "vmrescue watch: --exec for {what} still runs after {}s; killed",
                        self.grace.as_secs()
                    );
                    kill_group(c);
                }
                self.children.clear();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Kills `c` and everything in its process group, and collects it.
fn kill_group(c: &mut Child) {
    let group = i32::try_from(c.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    match group {
        Some(g) => {
            let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
        }
        None => {
            let _ = c.kill();
        }
    }
    let _ = c.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::incident::{Kind, Source};

    fn incident() -> Incident {
        Incident {
            time: "2026-12-07T04:00:00.000Z".into(),
            domain: "web-1".into(),
            uuid: "2c309045-caea-4e02-8bc7-cf04b2b71566".into(),
            kind: Kind::IoError,
            disk: Some("vda".into()),
            source_file: None,
            reason: Some("enospc".into()),
            source: Source::LibvirtEvent,
            detail: "I/O error".into(),
            suggest: "vmrescue rescue --domain web-1".into(),
            count: 1,
            guest_device: None,
            repeat: false,
            last_time: "2026-12-07T04:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_command_gets_the_incident_on_stdin_and_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!(
            "cat > {0}.stdin; printf '%s %s %s %s' \"$VMRESCUE_DOMAIN\" \"$VMRESCUE_KIND\" \"$VMRESCUE_DISK\" \"$VMRESCUE_REASON\" > {0}.env",
            out.display()
        );
        let mut r = Runner::default();
        r.run(&cmd, &incident());
        r.reap(true);
        assert_eq!(r.running(), 0);
        let env = std::fs::read_to_string(dir.path().join("out.env")).unwrap();
        assert_eq!(env, "web-1 io_error vda enospc");
        let stdin: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.stdin")).unwrap())
                .unwrap();
        assert_eq!(stdin["domain"], "web-1");
        assert_eq!(stdin["kind"], "io_error");
    }

    #[test]
    fn commands_still_running_at_the_end_are_killed_after_the_grace_time() {
        let mut r = Runner::new(2, Duration::from_millis(200));
        let started = Instant::now();
        // The shell's own child too: the whole group goes.
        r.run("sleep 600; true", &incident());
        r.run("sleep 600; true", &incident());
        assert_eq!(r.running(), 2);
        r.reap(false);
        assert_eq!(r.running(), 2, "not waited for without `wait`");
        let groups: Vec<i32> = r.children.iter().map(|(c, _)| c.id() as i32).collect();
        r.reap(true);
        assert_eq!(r.running(), 0);
        assert!(started.elapsed() < Duration::from_secs(60));
        // Killed members are gone once their new parent has collected them.
        let gone = |g: i32| {
            rustix::process::test_kill_process_group(rustix::process::Pid::from_raw(g).unwrap())
                .is_err()
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !groups.iter().all(|g| gone(*g)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        for g in groups {
            assert!(gone(g), "process group {g} still has members");
        }
    }
}
