//! A domain's rescue state on the host: its directory (the original definition, fsynced, the
//! console log, the settings drive, staged overlays) and the lock held for the run; and
//! `unrescue`, which cleans up after a crash; and the definition given back after a run.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use virt::connect::Connect;
use vmrescue_protocol::DEFAULT_PORT_NAME;

use super::domain::XML_INACTIVE_SECURE;
use super::request::{connect, io, lookup, lv, DomainError, DomainRequest};

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

/// Whether a running domain's live XML is one of our rescue runs: it has the agent's
/// virtio-serial channel (`<channel><target type='virtio' name=PORT/></channel>`).
pub(super) fn is_rescue_run(live: &str) -> bool {
    let Ok(doc) = roxmltree::Document::parse(live) else {
        return false;
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("channel"))
        .flat_map(|c| c.children().filter(|n| n.has_tag_name("target")))
        .any(|t| {
            t.attribute("type") == Some("virtio") && t.attribute("name") == Some(DEFAULT_PORT_NAME)
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
        if is_rescue_run(&live) {
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

/// After the run: the persistent definition checked against the one saved before (a
/// difference is said, never silently kept), and the domain started again when it ran before
/// (a transient one is re-created from its XML) or `--start-after` asks. What went wrong is
/// returned as warnings.
#[allow(clippy::too_many_arguments)]
pub(super) fn give_back(
    conn: &Connect,
    uuid: &str,
    name: &str,
    original: &str,
    persistent: bool,
    active: bool,
    req: &DomainRequest,
    state_dir: &Path,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if persistent {
        match lookup(conn, uuid).and_then(|d| {
            d.xml_desc(XML_INACTIVE_SECURE)
                .map_err(lv("reading the definition", name))
        }) {
            Ok(after) if after == original => {}
            Ok(_) => warnings.push(format!(
                "the persistent definition of {name} differs from the one saved before the rescue ({}); compare with `virsh dumpxml --inactive {name}`",
                state_dir.join("original.xml").display()
            )),
            Err(e) => warnings.push(format!("cannot read {name}'s definition back: {e}")),
        }
    }
    let restart = (!persistent && active) || (req.start_after && persistent);
    if restart {
        let started = if persistent {
            lookup(conn, uuid).and_then(|d| d.create().map_err(lv("starting", name)))
        } else {
            // A transient domain exists only while it runs: bring it back as it was.
            conn.create_domain_xml(original, 0)
                .map(|_| ())
                .map_err(lv("re-creating", name))
        };
        if let Err(e) = started {
            warnings.push(format!("{e}"));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rescue_run_is_known_by_the_agents_channel_not_by_a_substring() {
        let run = format!(
            "<domain><name>d</name><devices><channel type='unix'><target type='virtio' name='{DEFAULT_PORT_NAME}'/></channel></devices></domain>"
        );
        assert!(is_rescue_run(&run));
        // The port's name elsewhere (a description, another element) is not a rescue run.
        let decoy = format!(
            "<domain><name>d</name><description>name='{DEFAULT_PORT_NAME}'</description><devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices></domain>"
        );
        assert!(!is_rescue_run(&decoy));
        assert!(!is_rescue_run("not xml"));
    }
}
