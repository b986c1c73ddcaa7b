//! Applying the repair plan to the guest's root, and saving the report there. Every write goes
//! through [`crate::atomic`] (backup, temp file, fsync, rename, fsync directory) and becomes a
//! `changes[]` entry; a step that fails is reported and the others still run.

use vmrescue_protocol::{Change, ChangeKind, Report};

use crate::atomic::{AtomicError, Perm, Root};
use crate::plan::{Action, Step};

use vmrescue_protocol::paths::REPORT_DIR;

/// Why the report could not be saved on the root.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Creating [`REPORT_DIR`] or writing the file failed (the error names the path).
    #[error(transparent)]
    Write(#[from] AtomicError),
    #[error("{path}: encoding the report: {source}")]
    Encode {
        path: String,
        source: serde_json::Error,
    },
}

/// What applying the plan did.
#[derive(Debug, Default)]
pub struct Applied {
    pub changes: Vec<Change>,
    /// (path, error) for every step that failed.
    pub failures: Vec<(String, AtomicError)>,
}

fn perm(mode: u32, uid: u32, gid: u32) -> Perm {
    Perm { mode, uid, gid }
}

/// The change a step made: `kind` at `path`, said by `detail` (`Ok(None)`: nothing to do, it
/// was there or was not).
fn made(
    done: Result<bool, AtomicError>,
    kind: ChangeKind,
    path: &str,
    detail: String,
    review: bool,
    device: &str,
) -> Result<Option<Change>, AtomicError> {
    done.map(|done| {
        done.then(|| Change {
            kind,
            path: path.to_owned(),
            device: Some(device.to_owned()),
            detail,
            review,
            ..Default::default()
        })
    })
}

/// Writes one planned file and says what changed.
fn write(
    root: &Root,
    step: &Step,
    path: &str,
    content: &[u8],
    perm: Perm,
    stamp: &str,
    device: &str,
) -> Result<Option<Change>, AtomicError> {
    root.write(path, content, perm, stamp).map(|w| {
        Some(Change {
            kind: ChangeKind::WriteFile,
            path: path.to_owned(),
            device: Some(device.to_owned()),
            detail: step.why.clone(),
            backup: w.backup,
            sha256_before: w.sha256_before,
            sha256_after: Some(w.sha256_after),
            review: step.review,
        })
    })
}

/// Applies `steps` in order below `root` (the root filesystem `device`, mounted read-write);
/// `done` hears of each change as soon as it is made.
pub fn apply(
    root: &Root,
    device: &str,
    steps: &[Step],
    stamp: &str,
    done: &mut dyn FnMut(&Change),
) -> Applied {
    let mut out = Applied::default();
    for step in steps {
        let path = step.action.path().to_owned();
        let result = match &step.action {
            Action::MakeDir { path, mode } => made(
                root.mkdir(path, *mode),
                ChangeKind::Mkdir,
                path,
                format!("{} (mode {mode:04o})", step.why),
                step.review,
                device,
            ),
            Action::MakeUserDir {
                path,
                mode,
                uid,
                gid,
            } => made(
                root.no_symlinks()
                    .and_then(|r| r.mkdir_owned(path, *mode, *uid, *gid)),
                ChangeKind::Mkdir,
                path,
                format!("{} (mode {mode:04o})", step.why),
                step.review,
                device,
            ),
            Action::WriteFile {
                path,
                content,
                mode,
                uid,
                gid,
            } => write(
                root,
                step,
                path,
                content,
                perm(*mode, *uid, *gid),
                stamp,
                device,
            ),
            Action::WriteUserFile {
                path,
                content,
                mode,
                uid,
                gid,
            } => root.no_symlinks().and_then(|r| {
                write(
                    &r,
                    step,
                    path,
                    content,
                    perm(*mode, *uid, *gid),
                    stamp,
                    device,
                )
            }),
            Action::Symlink { path, target } => made(
                root.symlink(path, target),
                ChangeKind::Symlink,
                path,
                format!("{} (-> {target})", step.why),
                step.review,
                device,
            ),
            Action::RemoveTemp { path } => made(
                root.remove_temp(path),
                ChangeKind::RemoveTemp,
                path,
                step.why.clone(),
                step.review,
                device,
            ),
        };
        match result {
            Ok(Some(c)) => {
                log::info!("{} {} on {device}", c.kind, c.path);
                done(&c);
                out.changes.push(c);
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("{device}: {e}");
                out.failures.push((path, e));
            }
        }
    }
    out
}

/// The report file's path for a stamp.
pub fn report_path(stamp: &str) -> String {
    format!("{REPORT_DIR}/report-{stamp}.json")
}

/// Saves the report on the root as `/var/log/vmrescue/report-STAMP.json`. The report is
/// expected to name this file already (`report_file` and a `changes[]` entry), so that the copy
/// on disk is the whole report.
pub fn save_report(root: &Root, report: &Report, stamp: &str) -> Result<(), ApplyError> {
    root.mkdir_all(REPORT_DIR, 0o755)?;
    let path = report_path(stamp);
    let mut json = serde_json::to_vec_pretty(report).map_err(|source| ApplyError::Encode {
        path: path.clone(),
        source,
    })?;
    json.push(b'\n');
    root.write(
        &path,
        &json,
        Perm {
            mode: 0o600,
            uid: 0,
            gid: 0,
        },
        stamp,
    )
    .map(|_| ())
    .map_err(ApplyError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::sha256_hex;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn applies_in_order_and_records_every_write() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/fstab"), b"old\n").unwrap();
        std::fs::write(d.path().join("proc"), b"in the way").unwrap();
        let root = Root::open(d.path()).unwrap();
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let steps = vec![
            Step {
                action: Action::MakeDir {
                    path: "/tmp".into(),
                    mode: 0o1777,
                },
                why: "/tmp is missing".into(),
                review: false,
                on: None,
            },
            Step {
                action: Action::MakeDir {
                    path: "/proc".into(),
                    mode: 0o555,
                },
                why: "/proc is missing".into(),
                review: false,
                on: None,
            },
            Step {
                action: Action::WriteFile {
                    path: "/etc/fstab".into(),
                    content: b"new\n".to_vec(),
                    mode: 0o644,
                    uid: me.0,
                    gid: me.1,
                },
                why: "fstab fixed".into(),
                review: false,
                on: None,
            },
        ];
        let mut heard = Vec::new();
        let a = apply(&root, "/dev/vda1", &steps, "20261123T000000Z", &mut |c| {
            heard.push(c.path.clone())
        });
        assert_eq!(
            heard,
            ["/tmp", "/etc/fstab"],
            "each change is heard as it is made"
        );
        assert_eq!(a.changes.len(), 2, "{a:#?}");
        assert_eq!(a.failures.len(), 1);
        assert_eq!(a.failures[0].0, "/proc");
        assert!(
            matches!(&a.failures[0].1, AtomicError::NotADirectory { path, .. } if path == "/proc"),
            "{:?}",
            a.failures[0].1
        );
        let c = &a.changes[1];
        assert_eq!(c.path, "/etc/fstab");
        assert_eq!(c.device.as_deref(), Some("/dev/vda1"));
        assert_eq!(
            c.backup.as_deref(),
            Some("/etc/fstab.vmrescue-20261123T000000Z")
        );
        assert_eq!(c.sha256_before, Some(sha256_hex(b"old\n")));
        assert_eq!(c.sha256_after, Some(sha256_hex(b"new\n")));
        assert_eq!(
            std::fs::read(d.path().join("etc/fstab.vmrescue-20261123T000000Z")).unwrap(),
            b"old\n"
        );
        assert_eq!(
            std::fs::metadata(d.path().join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );

        let report = Report {
            changes: a.changes,
            ..Default::default()
        };
        save_report(&root, &report, "S").unwrap();
        let saved: Report = serde_json::from_slice(
            &std::fs::read(d.path().join("var/log/vmrescue/report-S.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(saved, report);
    }

    #[test]
    fn a_users_files_are_written_as_the_user_and_never_through_a_link() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        for dir in ["home/alice", "home/mallory", "root/.ssh"] {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
        }
        std::fs::write(d.path().join("root/.ssh/authorized_keys"), b"root's\n").unwrap();
        // Mallory's ~/.ssh points at root's: a write there must not land in root's file.
        std::os::unix::fs::symlink("../../root/.ssh", d.path().join("home/mallory/.ssh")).unwrap();
        let root = Root::open(d.path()).unwrap();
        let user = |path: &str, dir: bool| Step {
            action: if dir {
                Action::MakeUserDir {
                    path: path.into(),
                    mode: 0o700,
                    uid: 1000,
                    gid: 1001,
                }
            } else {
                Action::WriteUserFile {
                    path: path.into(),
                    content: b"ssh-ed25519 AAAA k\n".to_vec(),
                    mode: 0o600,
                    uid: 1000,
                    gid: 1001,
                }
            },
            why: "1 key(s) added".into(),
            review: false,
            on: None,
        };
        let steps = [
            user("/home/alice/.ssh", true),
            user("/home/alice/.ssh/authorized_keys", false),
            user("/home/mallory/.ssh/authorized_keys", false),
        ];
        let applied = apply(&root, "/dev/vda1", &steps, "20261207T000000Z", &mut |_| {});
        assert_eq!(applied.changes.len(), 2, "{:?}", applied.failures);
        assert_eq!(applied.failures.len(), 1);
        assert_eq!(applied.failures[0].0, "/home/mallory/.ssh/authorized_keys");
        assert_eq!(
            std::fs::read(d.path().join("root/.ssh/authorized_keys")).unwrap(),
            b"root's\n"
        );
        let ssh = std::fs::metadata(d.path().join("home/alice/.ssh")).unwrap();
        let keys = std::fs::metadata(d.path().join("home/alice/.ssh/authorized_keys")).unwrap();
        assert_eq!((ssh.mode() & 0o7777, keys.mode() & 0o7777), (0o700, 0o600));
        if rustix::process::geteuid().is_root() {
            assert_eq!(
                (ssh.uid(), ssh.gid(), keys.uid(), keys.gid()),
                (1000, 1001, 1000, 1001)
            );
        }
    }
}
