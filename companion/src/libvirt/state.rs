//! A domain's rescue state on the host: its directory (the original definition, fsynced, the
//! console log, the settings drive, staged overlays) and the lock held for the run; and
//! `unrescue`, which cleans up after a crash.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use vmrescue_protocol::DEFAULT_PORT_NAME;

use super::request::{connect, io, lookup, lv, DomainError};

/// A file written and fsynced.
pub(super) fn write_synced(path: &Path, data: &[u8]) -> Result<(), DomainError> {
    let mut f = File::create(path).map_err(io("creating", path))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io("writing", path))
}

/// The per-domain state: its directory and the lock held for the run.
pub(super) struct State {
    pub dir: PathBuf,
    _lock: File,
}

pub(super) fn lock_state(domain: &str, dir: &Path) -> Result<State, DomainError> {
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path).map_err(io("creating", &lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| DomainError::Busy {
            domain: domain.to_owned(),
            dir: dir.to_owned(),
        },
    )?;
    if dir.join("original.xml").exists() {
        return Err(DomainError::Stale {
            domain: domain.to_owned(),
            dir: dir.to_owned(),
        });
    }
    Ok(State {
        dir: dir.to_owned(),
        _lock: lock,
    })
}

/// `vmrescue unrescue --domain NAME`: after a crash, ends a leftover rescue run of the domain
/// and removes its state; the persistent definition was never changed. Idempotent. Returns
/// what it did.
pub fn unrescue(domain: &str, uri: Option<&str>) -> Result<Vec<String>, DomainError> {
    let conn = connect(uri)?;
    let dom = lookup(&conn, domain)?;
    let name = dom.name().map_err(lv("reading the name", domain))?;
    let uuid = dom.uuid_string().map_err(lv("reading the UUID", &name))?;
    let mut done = Vec::new();
    if dom.is_active().unwrap_or(false) {
        let live = dom.xml_desc(0).unwrap_or_default();
        if live.contains(&format!("name='{DEFAULT_PORT_NAME}'"))
            || live.contains(&format!("name=\"{DEFAULT_PORT_NAME}\""))
        {
            dom.destroy()
                .map_err(lv("destroying the rescue run", &name))?;
            done.push(format!("destroyed the leftover rescue run of {name}"));
        }
    }
    let dir = super::state_dir(&uuid);
    if dir.exists() {
        let lock = File::open(dir.join("lock")).ok();
        if let Some(l) = &lock {
            rustix::fs::flock(l, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
                |_| DomainError::Busy {
                    domain: name.clone(),
                    dir: dir.clone(),
                },
            )?;
        }
        fs::remove_dir_all(&dir).map_err(io("removing", &dir))?;
        done.push(format!("removed the rescue state in {}", dir.display()));
    }
    if done.is_empty() {
        done.push(format!("nothing to undo for {name}"));
    }
    Ok(done)
}
