//! Early set-up of PID 1 as data: one table of steps, applied in order, each failure recorded.
//! devtmpfs comes first after /proc so that device nodes exist for everything that follows.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;

use rustix::mount::{mount, MountFlags};

/// One set-up step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Dir {
        path: &'static str,
        mode: u32,
    },
    Mount {
        fstype: &'static str,
        target: &'static str,
        flags: MountFlags,
        data: &'static str,
    },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::Dir { path, mode } => format!("create directory {path} (mode {mode:o})"),
            Step::Mount { fstype, target, .. } => format!("mount {fstype} on {target}"),
        }
    }

    fn apply(&self) -> io::Result<()> {
        match *self {
            Step::Dir { path, mode } => {
                match fs::create_dir(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
            }
            Step::Mount {
                fstype,
                target,
                flags,
                data,
            } => {
                let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
                match mount(fstype, target, fstype, flags, data.as_c_str()) {
                    Ok(()) => Ok(()),
                    // Already mounted (e.g. the kernel mounted devtmpfs itself).
                    Err(rustix::io::Errno::BUSY) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// The root file system set-up every rescue needs.
pub fn steps() -> Vec<Step> {
    vec![
        Step::Dir {
            path: "/proc",
            mode: 0o555,
        },
        Step::Mount {
            fstype: "proc",
            target: "/proc",
            flags: NOSUID_NODEV_NOEXEC,
            data: "",
        },
        Step::Dir {
            path: "/dev",
            mode: 0o755,
        },
        Step::Mount {
            fstype: "devtmpfs",
            target: "/dev",
            flags: MountFlags::NOSUID,
            data: "mode=0755",
        },
        Step::Dir {
            path: "/sys",
            mode: 0o555,
        },
        Step::Mount {
            fstype: "sysfs",
            target: "/sys",
            flags: NOSUID_NODEV_NOEXEC,
            data: "",
        },
        Step::Dir {
            path: "/run",
            mode: 0o755,
        },
        Step::Mount {
            fstype: "tmpfs",
            target: "/run",
            flags: MountFlags::NOSUID.union(MountFlags::NODEV),
            data: "mode=0755",
        },
        Step::Dir {
            path: "/tmp",
            mode: 0o1777,
        },
        Step::Dir {
            path: "/mnt",
            mode: 0o755,
        },
    ]
}

/// Applies the steps; returns a message per failed step. A failure does not stop later steps.
pub fn apply(steps: &[Step]) -> Vec<String> {
    let mut failures = Vec::new();
    for step in steps {
        if let Err(e) = step.apply() {
            let msg = format!("{} failed: {e}", step.describe());
            log::warn!("{msg}");
            failures.push(msg);
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mount_has_its_directory_first() {
        let steps = steps();
        for (i, s) in steps.iter().enumerate() {
            if let Step::Mount { target, .. } = s {
                assert!(
                    steps[..i]
                        .iter()
                        .any(|d| matches!(d, Step::Dir { path, .. } if path == target)),
                    "{target} mounted before it is created"
                );
            }
        }
        // devtmpfs right after /proc, before sysfs: everything later wants device nodes.
        let order: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Mount { fstype, .. } => Some(*fstype),
                _ => None,
            })
            .collect();
        assert_eq!(order, ["proc", "devtmpfs", "sysfs", "tmpfs"]);
    }

    #[test]
    fn dir_step_is_idempotent_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path: &'static str = Box::leak(
            dir.path()
                .join("t")
                .to_str()
                .unwrap()
                .to_owned()
                .into_boxed_str(),
        );
        let step = Step::Dir { path, mode: 0o1777 };
        step.apply().unwrap();
        step.apply().unwrap();
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o1777);
        assert!(step.describe().contains("1777"));
    }
}
