//! Pausing the libvirt domains whose qemu holds the files, so the copies are consistent:
//! the domain comes from qemu's `-name guest=NAME,...`; `virsh` runs as an argv, never a shell.
//! Afterwards the domains are resumed, or left paused for a hard reboot onto the restored files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::plan::Holder;

/// A `virsh` command that did not do its job (`command` is the command line as shown).
#[derive(Debug, thiserror::Error)]
pub enum VirshError {
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` did not finish in {secs} s (is libvirtd hung?)")]
    Timeout { command: String, secs: u64 },
    #[error("waiting for `{command}`: {source}")]
    Wait { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// A domain that could not be paused; those paused before it were resumed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot suspend libvirt domain {domain}: {source}; check libvirtd (`virsh list`), or run \
     without --suspend (copies of running VMs may then fail verification)"
)]
pub struct SuspendError {
    pub domain: String,
    pub source: VirshError,
}

/// The libvirt domain name in a qemu command line (`/proc/PID/cmdline`, NUL-separated), or
/// `None` when the process is not qemu or has no `-name`.
pub fn domain_from_cmdline(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let argv0 = String::from_utf8_lossy(args.first()?);
    let base = argv0.rsplit('/').next().unwrap_or_default();
    if !(base.contains("qemu") || base == "kvm") {
        return None;
    }
    let pos = args
        .iter()
        .position(|a| *a == b"-name" || *a == b"--name")?;
    let value = String::from_utf8_lossy(args.get(pos + 1)?);
    guest_name(&value)
}

/// The guest name in a qemu `-name` value: `guest=NAME,debug-threads=on` or bare `NAME`, where
/// `,,` is an escaped comma.
pub fn guest_name(value: &str) -> Option<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    for (i, part) in parts.iter().enumerate() {
        if let Some(name) = part.strip_prefix("guest=") {
            return Some(name.to_string()).filter(|n| !n.is_empty());
        }
        // The first part may omit its key, which is then "guest".
        if i == 0 && !part.contains('=') && !part.is_empty() {
            return Some(part.clone());
        }
    }
    None
}

/// The domain of process `pid` under `proc_root`, if it is a qemu started with `-name`.
pub fn domain_of_pid(proc_root: &Path, pid: u32) -> Option<String> {
    let cmdline = std::fs::read(proc_root.join(pid.to_string()).join("cmdline")).ok()?;
    domain_from_cmdline(&cmdline)
}

/// What happened to one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainReport {
    pub name: String,
    pub pids: Vec<u32>,
    /// `virsh domstate` before anything was done (`None` in a dry run).
    pub state_before: Option<String>,
    pub suspended: bool,
    pub resumed: bool,
    pub error: Option<String>,
}

/// Runs `virsh` with a deadline.
#[derive(Debug, Clone)]
pub struct Virsh {
    pub program: PathBuf,
    pub timeout: Duration,
}

impl Virsh {
    pub fn new(program: &Path) -> Self {
        Virsh {
            program: program.to_path_buf(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Runs `virsh ARGS`; its stdout, or an error with its stderr or why it did not run.
    pub fn run(&self, args: &[&str]) -> Result<String, VirshError> {
        let command = format!("{} {}", self.program.display(), args.join(" "));
        let mut child = match Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(source) => return Err(VirshError::Spawn { command, source }),
        };
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if start.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(VirshError::Timeout {
                        command,
                        secs: self.timeout.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(source) => return Err(VirshError::Wait { command, source }),
            }
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        if status.success() {
            Ok(out)
        } else {
            Err(VirshError::Failed {
                command,
                status,
                stderr: err.trim().to_string(),
            })
        }
    }

    /// `virsh domstate`: `running`, `paused`, `shut off`...
    pub fn state(&self, domain: &str) -> Result<String, VirshError> {
        self.run(&["domstate", "--domain", domain])
            .map(|s| s.trim().to_string())
    }

    pub fn suspend(&self, domain: &str) -> Result<(), VirshError> {
        self.run(&["suspend", "--domain", domain]).map(|_| ())
    }

    pub fn resume(&self, domain: &str) -> Result<(), VirshError> {
        self.run(&["resume", "--domain", domain]).map(|_| ())
    }
}

/// The libvirt domains of the processes among `holders` (nothing done to them yet), with a
/// warning for each holder that is not a libvirt qemu and so cannot be paused.
pub fn domains_holding<'a>(
    proc_root: &Path,
    holders: impl IntoIterator<Item = &'a Holder>,
    warnings: &mut Vec<String>,
) -> Vec<DomainReport> {
    let mut by_domain: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut others: BTreeSet<u32> = BTreeSet::new();
    for h in holders {
        match domain_of_pid(proc_root, h.pid) {
            Some(d) => {
                by_domain.entry(d).or_default().insert(h.pid);
            }
            None => {
                others.insert(h.pid);
            }
        }
    }
    for pid in others {
        warnings.push(format!(
            "pid {pid} holds deleted files but is not a libvirt qemu process (no -name \
             guest=...): it is not paused, and its files may change while copied"
        ));
    }
    by_domain
        .into_iter()
        .map(|(name, pids)| DomainReport {
            name,
            pids: pids.into_iter().collect(),
            state_before: None,
            suspended: false,
            resumed: false,
            error: None,
        })
        .collect()
}

/// Pauses the running domains among `domains`; on failure resumes those it paused and fails.
pub fn suspend_all(virsh: &Virsh, domains: &mut [DomainReport]) -> Result<(), SuspendError> {
    let mut failure = None;
    for d in domains.iter_mut() {
        let step = virsh.state(&d.name).and_then(|state| {
            d.state_before = Some(state.clone());
            if state == "running" {
                virsh.suspend(&d.name)?;
                d.suspended = true;
            }
            Ok(())
        });
        if let Err(source) = step {
            d.error = Some(source.to_string());
            failure = Some(SuspendError {
                domain: d.name.clone(),
                source,
            });
            break;
        }
    }
    let Some(err) = failure else {
        return Ok(());
    };
    for d in domains.iter_mut().filter(|d| d.suspended) {
        match virsh.resume(&d.name) {
            Ok(()) => d.resumed = true,
            Err(e) => d.error = Some(e.to_string()),
        }
    }
    Err(err)
}

/// After the copies: resumes the paused domains when `resume`, else says how to go on.
pub fn resume_or_leave_paused(
    virsh: &Virsh,
    domains: &mut [DomainReport],
    resume: bool,
    warnings: &mut Vec<String>,
) {
    let paused: Vec<&mut DomainReport> = domains.iter_mut().filter(|d| d.suspended).collect();
    if resume {
        for d in paused {
            match virsh.resume(&d.name) {
                Ok(()) => d.resumed = true,
                Err(e) => {
                    warnings.push(format!(
                        "could not resume domain {}: {e}; run `virsh resume {}`",
                        d.name, d.name
                    ));
                    d.error = Some(e.to_string());
                }
            }
        }
    } else if !paused.is_empty() {
        let names: Vec<&str> = paused.iter().map(|d| d.name.as_str()).collect();
        warnings.push(format!(
            "domain(s) {} left paused: hard-reboot them (nova reboot --hard) to run on the \
             restored files, or `virsh resume NAME` to continue as before",
            names.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmdline(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn libvirt_qemu_command_lines_give_the_domain() {
        let c = cmdline(&[
            "/usr/bin/qemu-system-x86_64",
            "-name",
            "guest=instance-0000002a,debug-threads=on",
            "-S",
            "-object",
            "secret,id=masterKey0",
        ]);
        assert_eq!(
            domain_from_cmdline(&c),
            Some("instance-0000002a".to_string())
        );
        let c = cmdline(&["qemu-kvm", "-name", "web,,1,process=x"]);
        assert_eq!(domain_from_cmdline(&c), Some("web,1".to_string()));
        let c = cmdline(&["kvm", "--name", "debug-threads=on,guest=a,,b"]);
        assert_eq!(domain_from_cmdline(&c), Some("a,b".to_string()));
    }

    #[test]
    fn other_processes_give_none() {
        assert_eq!(
            domain_from_cmdline(&cmdline(&["sleep", "-name", "x"])),
            None
        );
        assert_eq!(
            domain_from_cmdline(&cmdline(&["/usr/bin/qemu-system-x86_64", "-S"])),
            None
        );
        assert_eq!(
            domain_from_cmdline(&cmdline(&["qemu-system-x86_64", "-name"])),
            None
        );
        assert_eq!(domain_from_cmdline(b""), None);
        assert_eq!(guest_name("guest=,debug-threads=on"), None);
        assert_eq!(guest_name("process=q"), None);
    }

    #[test]
    fn virsh_failures_are_reported() {
        let v = Virsh::new(Path::new("/nonexistent/virsh"));
        assert!(v.state("x").unwrap_err().to_string().contains("cannot run"));
        let v = Virsh::new(Path::new("false"));
        assert!(v.suspend("x").unwrap_err().to_string().contains("failed"));
        let v = Virsh::new(Path::new("echo"));
        assert_eq!(v.state("dom").unwrap(), "domstate --domain dom".to_string());
        let mut v = Virsh::new(Path::new("sleep"));
        v.timeout = Duration::from_millis(100);
        assert!(v
            .run(&["5"])
            .unwrap_err()
            .to_string()
            .contains("did not finish"));
    }
}
