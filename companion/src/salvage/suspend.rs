//! Pausing the libvirt domains whose qemu holds the files, so the copies are consistent:
//! the domain comes from qemu's `-name guest=NAME,...`, and libvirt's bindings pause it.
//! Afterwards the domains are resumed, or left paused for a hard reboot onto the restored files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::plan::Holder;

/// A libvirt call for a domain that did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot connect to libvirt ({uri}): {message}")]
    Connect { uri: String, message: String },
    #[error("no libvirt domain {0:?} (the qemu process names it, libvirt does not know it)")]
    Unknown(String),
    #[error("{what} of domain {domain}: {message}")]
    Call {
        what: &'static str,
        domain: String,
        message: String,
    },
}

/// Pausing and resuming domains: libvirt, or a stand-in in tests.
pub trait Control {
    /// The domain's state as virsh names it: `running`, `paused`, `shut off`...
    fn state(&self, domain: &str) -> Result<String, ControlError>;
    fn suspend(&self, domain: &str) -> Result<(), ControlError>;
    fn resume(&self, domain: &str) -> Result<(), ControlError>;
}

/// Domains through libvirt's bindings (the same layer as `rescue --domain`), connected on
/// first use.
pub struct Libvirt {
    uri: Option<String>,
    conn: std::sync::OnceLock<Result<virt::connect::Connect, String>>,
}

impl Libvirt {
    pub fn new(uri: Option<String>) -> Self {
        Libvirt {
            uri,
            conn: std::sync::OnceLock::new(),
        }
    }

    fn domain(&self, name: &str) -> Result<virt::domain::Domain, ControlError> {
        let conn = self.conn.get_or_init(|| {
            crate::libvirt::domain::connect(self.uri.as_deref()).map_err(|e| e.to_string())
        });
        let conn = conn.as_ref().map_err(|message| ControlError::Connect {
            uri: self
                .uri
                .clone()
                .unwrap_or_else(|| "libvirt's default".into()),
            message: message.clone(),
        })?;
        conn.lookup_domain_by_name(name)
            .map_err(|_| ControlError::Unknown(name.to_owned()))
    }
}

fn call(what: &'static str, domain: &str) -> impl FnOnce(virt::error::Error) -> ControlError {
    let domain = domain.to_owned();
    move |e| ControlError::Call {
        what,
        domain,
        message: e.to_string(),
    }
}

/// virsh's name for a domain state.
pub fn state_name(state: &virt::domain::DomainStateEnum) -> &'static str {
    use virt::domain::DomainState as S;
    match state {
        virt::enumutil::Enum::Known(S::Running) => "running",
        virt::enumutil::Enum::Known(S::Blocked) => "idle",
        virt::enumutil::Enum::Known(S::Paused) => "paused",
        virt::enumutil::Enum::Known(S::Shutdown) => "in shutdown",
        virt::enumutil::Enum::Known(S::Shutoff) => "shut off",
        virt::enumutil::Enum::Known(S::Crashed) => "crashed",
        virt::enumutil::Enum::Known(S::PMSuspended) => "pmsuspended",
        _ => "no state",
    }
}

impl Control for Libvirt {
    fn state(&self, domain: &str) -> Result<String, ControlError> {
        let (state, _) = self
            .domain(domain)?
            .state()
            .map_err(call("reading the state", domain))?;
        Ok(state_name(&state).to_owned())
    }

    fn suspend(&self, domain: &str) -> Result<(), ControlError> {
        self.domain(domain)?
            .suspend()
            .map(|_| ())
            .map_err(call("suspending", domain))
    }

    fn resume(&self, domain: &str) -> Result<(), ControlError> {
        self.domain(domain)?
            .resume()
            .map(|_| ())
            .map_err(call("resuming", domain))
    }
}

/// A domain that could not be paused; those paused before it were resumed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot suspend libvirt domain {domain}: {source}; check libvirtd (`virsh list`), or run \
     without --suspend (copies of running VMs may then fail verification)"
)]
pub struct SuspendError {
    pub domain: String,
    pub source: ControlError,
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
    /// The domain's state before anything was done (`None` in a dry run).
    pub state_before: Option<String>,
    pub suspended: bool,
    pub resumed: bool,
    pub error: Option<String>,
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
pub fn suspend_all(
    libvirt: &dyn Control,
    domains: &mut [DomainReport],
) -> Result<(), SuspendError> {
    let mut failure = None;
    for d in domains.iter_mut() {
        let step = libvirt.state(&d.name).and_then(|state| {
            d.state_before = Some(state.clone());
            if state == "running" {
                libvirt.suspend(&d.name)?;
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
        match libvirt.resume(&d.name) {
            Ok(()) => d.resumed = true,
            Err(e) => d.error = Some(e.to_string()),
        }
    }
    Err(err)
}

/// After the copies: resumes the paused domains when `resume`, else says how to go on.
pub fn resume_or_leave_paused(
    libvirt: &dyn Control,
    domains: &mut [DomainReport],
    resume: bool,
    warnings: &mut Vec<String>,
) {
    let paused: Vec<&mut DomainReport> = domains.iter_mut().filter(|d| d.suspended).collect();
    if resume {
        for d in paused {
            match libvirt.resume(&d.name) {
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

    /// A stand-in for libvirt that records the calls.
    struct Fake {
        calls: std::cell::RefCell<Vec<String>>,
        fail_suspend_of: Option<&'static str>,
    }

    impl Control for Fake {
        fn state(&self, d: &str) -> Result<String, ControlError> {
            self.calls.borrow_mut().push(format!("state {d}"));
            Ok("running".into())
        }
        fn suspend(&self, d: &str) -> Result<(), ControlError> {
            self.calls.borrow_mut().push(format!("suspend {d}"));
            if self.fail_suspend_of == Some(d) {
                return Err(ControlError::Call {
                    what: "suspending",
                    domain: d.into(),
                    message: "boom".into(),
                });
            }
            Ok(())
        }
        fn resume(&self, d: &str) -> Result<(), ControlError> {
            self.calls.borrow_mut().push(format!("resume {d}"));
            Ok(())
        }
    }

    fn report(name: &str) -> DomainReport {
        DomainReport {
            name: name.into(),
            pids: vec![1],
            state_before: None,
            suspended: false,
            resumed: false,
            error: None,
        }
    }

    #[test]
    fn a_failed_suspend_resumes_those_already_paused() {
        let f = Fake {
            calls: Default::default(),
            fail_suspend_of: Some("b"),
        };
        let mut ds = vec![report("a"), report("b")];
        let e = suspend_all(&f, &mut ds).unwrap_err();
        assert_eq!(e.domain, "b");
        assert!(e.to_string().contains("boom") && e.to_string().contains("--suspend"));
        assert_eq!(
            f.calls.borrow().as_slice(),
            ["state a", "suspend a", "state b", "suspend b", "resume a"]
        );
        assert!(ds[0].resumed && !ds[1].suspended);
        let mut warnings = Vec::new();
        let f = Fake {
            calls: Default::default(),
            fail_suspend_of: None,
        };
        let mut ds = vec![report("a")];
        suspend_all(&f, &mut ds).unwrap();
        resume_or_leave_paused(&f, &mut ds, false, &mut warnings);
        assert!(warnings[0].contains("left paused"), "{warnings:?}");
        assert_eq!(
            state_name(&virt::enumutil::Enum::Known(
                virt::domain::DomainState::Paused
            )),
            "paused"
        );
    }
}
