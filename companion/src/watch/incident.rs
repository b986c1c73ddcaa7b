//! Incidents as `vmrescue watch` prints them, and their de-duplication: a storm of identical
//! messages is one incident with a count. The JSON fields are a contract other tools drive
//! (add, never rename). Pure: the caller passes the time.

use std::collections::BTreeMap;

use serde::Serialize;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A disk's I/O failed (libvirt's I/O error event, or the guest kernel's block layer).
    IoError,
    /// The domain is paused because of an I/O error (a full thin disk: reason `enospc`).
    Paused,
    /// A guest filesystem went read-only.
    FsReadOnly,
    /// A guest filesystem recorded an error.
    FsError,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IoError => "io_error",
            Kind::Paused => "paused",
            Kind::FsReadOnly => "fs_read_only",
            Kind::FsError => "fs_error",
        }
    }
}

/// Where it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// libvirt: an event, or the domain's state and disk errors when the watch started.
    LibvirtEvent,
    /// The guest kernel's messages in the domain's console log.
    Console,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::LibvirtEvent => "libvirt_event",
            Source::Console => "console",
        }
    }
}

/// One incident (one JSON line with `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// When it was first seen (RFC 3339, UTC).
    pub time: String,
    pub domain: String,
    pub uuid: String,
    pub kind: Kind,
    /// The disk's target (`vda`), when known.
    pub disk: Option<String>,
    /// The disk's source on the host, when known.
    pub source_file: Option<String>,
    /// libvirt's reason (`enospc`, `eio`), when known.
    pub reason: Option<String>,
    pub source: Source,
    /// What was seen: the event, or the kernel's message (escaped).
    pub detail: String,
    /// The vmrescue command that would check this guest.
    pub suggest: String,
    /// How many times it was seen: the first sighting and its repeats in the coalescing
    /// window (or, with `repeat`, the repeats since the incident was printed).
    pub count: u64,
    /// The guest's own name of the device (`vda1`), from a console message.
    pub guest_device: Option<String>,
    /// This line only counts repeats of an incident printed earlier.
    pub repeat: bool,
    /// When it was last seen (RFC 3339, UTC).
    pub last_time: String,
}

impl Incident {
    /// What makes two sightings the same incident: domain, kind, device, reason, source (not
    /// the detail: sector numbers and timestamps differ within one storm).
    fn key(&self) -> Key {
        (
            if self.uuid.is_empty() {
                self.domain.clone()
            } else {
                self.uuid.clone()
            },
            self.kind,
            self.disk.clone().or_else(|| self.guest_device.clone()),
            self.reason.clone(),
            self.source,
        )
    }

    /// One line for people.
    pub fn text(&self) -> String {
        let mut s = format!("{} {} {}", self.time, self.domain, self.kind.as_str());
        if let Some(d) = &self.disk {
            s.push_str(&format!(" disk={d}"));
        } else if let Some(d) = &self.guest_device {
            s.push_str(&format!(" guest_device={d}"));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!(" reason={r}"));
        }
        if let Some(f) = &self.source_file {
            s.push_str(&format!(" file={f}"));
        }
        s.push_str(&format!(" ({}", self.source.as_str()));
        if self.count > 1 || self.repeat {
            s.push_str(&format!(
                ", {} {}",
                self.count,
                if self.repeat { "more times" } else { "times" }
            ));
        }
        s.push_str(&format!(
            "): {}; check it with: {}",
            self.detail, self.suggest
        ));
        s
    }
}

type Key = (String, Kind, Option<String>, Option<String>, Source);

/// How long repeats are gathered before an incident is printed (ms).
pub const COALESCE_MS: u64 = 1500;
/// How long an incident must stay quiet before the same thing is a new incident (ms).
pub const QUIET_MS: u64 = 120_000;
/// Incidents tracked at most: past it, a new device's sightings join their domain's and
/// kind's incident without a device (a guest inventing device names cannot grow memory).
pub const MAX_TRACKED: usize = 4096;

struct Entry {
    incident: Incident,
    first_ms: u64,
    last_ms: u64,
    printed: bool,
    /// Repeats since it was printed.
    suppressed: u64,
}

/// Gathers sightings into incidents.
#[derive(Default)]
pub struct Dedup {
    entries: BTreeMap<Key, Entry>,
}

impl Dedup {
    /// Notes a sighting at `now_ms` (`last_time` is set from `now_text`).
    pub fn observe(&mut self, mut incident: Incident, now_ms: u64) {
        let mut key = incident.key();
        if self.entries.len() >= MAX_TRACKED && !self.entries.contains_key(&key) {
            incident.disk = None;
            incident.guest_device = None;
            incident.source_file = None;
            key = incident.key();
        }
        match self.entries.get_mut(&key) {
            Some(e) if now_ms.saturating_sub(e.last_ms) < QUIET_MS => {
                e.last_ms = now_ms;
                e.incident.last_time = incident.time;
                if e.printed {
                    e.suppressed += 1;
                } else {
                    e.incident.count += 1;
                }
            }
            _ => {
                incident.count = 1;
                incident.repeat = false;
                incident.last_time = incident.time.clone();
                self.entries.insert(
                    key,
                    Entry {
                        incident,
                        first_ms: now_ms,
                        last_ms: now_ms,
                        printed: false,
                        suppressed: 0,
                    },
                );
            }
        }
    }

    /// The incidents to print at `now_ms`: new ones whose coalescing window is over, and the
    /// repeat counts of printed ones that went quiet (which are then forgotten).
    pub fn due(&mut self, now_ms: u64) -> Vec<Incident> {
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (k, e) in self.entries.iter_mut() {
            if !e.printed && now_ms.saturating_sub(e.first_ms) >= COALESCE_MS {
                e.printed = true;
                out.push(e.incident.clone());
            } else if e.printed && now_ms.saturating_sub(e.last_ms) >= QUIET_MS {
                if e.suppressed > 0 {
                    out.push(repeat_of(e));
                }
                gone.push(k.clone());
            }
        }
        for k in gone {
            self.entries.remove(&k);
        }
        out
    }

    /// Everything not printed yet, at the end of the watch.
    pub fn flush(&mut self) -> Vec<Incident> {
        let out = self
            .entries
            .values()
            .filter_map(|e| {
                if !e.printed {
                    Some(e.incident.clone())
                } else if e.suppressed > 0 {
                    Some(repeat_of(e))
                } else {
                    None
                }
            })
            .collect();
        self.entries.clear();
        out
    }

    /// Forgets a domain's incidents of `kind` (it resumed: a new pause is a new incident).
    /// Ones not printed yet are returned, to be printed now.
    pub fn forget(&mut self, domain_or_uuid: &str, kind: Kind) -> Vec<Incident> {
        let keys: Vec<Key> = self
            .entries
            .keys()
            .filter(|k| k.0 == domain_or_uuid && k.1 == kind)
            .cloned()
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(e) = self.entries.remove(&k) {
                if !e.printed {
                    out.push(e.incident);
                } else if e.suppressed > 0 {
                    out.push(repeat_of(&e));
                }
            }
        }
        out
    }
}

fn repeat_of(e: &Entry) -> Incident {
    let mut i = e.incident.clone();
    i.count = e.suppressed;
    i.repeat = true;
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(kind: Kind, dev: &str, detail: &str, time: &str) -> Incident {
        Incident {
            time: time.into(),
            domain: "web-1".into(),
            uuid: "7f1e0c2a-0000-4000-8000-000000000001".into(),
            kind,
            disk: Some(dev.into()),
            source_file: None,
            reason: None,
            source: Source::Console,
            detail: detail.into(),
            suggest: "vmrescue rescue --domain web-1 --mode check".into(),
            count: 1,
            guest_device: None,
            repeat: false,
            last_time: String::new(),
        }
    }

    #[test]
    fn a_storm_is_one_incident_with_a_count() {
        let mut d = Dedup::default();
        for i in 0..10_000u64 {
            let line = format!("Buffer I/O error on dev vda1, logical block {i}");
            d.observe(inc(Kind::IoError, "vda", &line, "t0"), i / 10);
        }
        // Another kind on the same disk is another incident.
        d.observe(inc(Kind::FsReadOnly, "vda", "Remounting", "t1"), 900);
        assert!(d.due(1000).is_empty(), "still gathering");
        let out = d.due(COALESCE_MS + 1000);
        assert_eq!(out.len(), 2, "{out:?}");
        let io = out.iter().find(|i| i.kind == Kind::IoError).unwrap();
        assert_eq!(io.count, 10_000);
        assert!(io.detail.contains("logical block 0"), "the first line");
        assert!(!io.repeat);
        assert!(d.due(COALESCE_MS + 2000).is_empty(), "printed once");
        // Repeats after printing are counted and printed once it goes quiet.
        d.observe(inc(Kind::IoError, "vda", "again", "t2"), 5000);
        d.observe(inc(Kind::IoError, "vda", "again", "t3"), 6000);
        assert!(d.due(7000).is_empty());
        let out = d.due(6000 + QUIET_MS);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].repeat && out[0].count == 2 && out[0].last_time == "t3");
        // Forgotten after the quiet time: the same thing later is a new incident.
        d.observe(inc(Kind::IoError, "vda", "later", "t4"), 10 * QUIET_MS);
        let out = d.due(10 * QUIET_MS + COALESCE_MS);
        assert_eq!(out.len(), 1);
        assert!(!out[0].repeat && out[0].count == 1 && out[0].detail == "later");
    }

    #[test]
    fn invented_device_names_do_not_grow_memory() {
        let mut d = Dedup::default();
        for i in 0..(MAX_TRACKED as u64 * 3) {
            d.observe(inc(Kind::IoError, &format!("vd{i}"), "x", "t"), i);
        }
        assert!(d.entries.len() <= MAX_TRACKED + 1, "{}", d.entries.len());
        let out = d.flush();
        let rest = out.iter().find(|i| i.disk.is_none()).unwrap();
        assert_eq!(
            rest.count,
            2 * MAX_TRACKED as u64,
            "the rest counted in one incident"
        );
    }

    #[test]
    fn different_disks_are_different_incidents_and_flush_prints_the_rest() {
        let mut d = Dedup::default();
        d.observe(inc(Kind::IoError, "vda", "a", "t"), 0);
        d.observe(inc(Kind::IoError, "vdb", "b", "t"), 0);
        let out = d.flush();
        assert_eq!(out.len(), 2);
        assert!(d.flush().is_empty());
    }

    #[test]
    fn a_resume_forgets_the_pause() {
        let mut d = Dedup::default();
        let uuid = "7f1e0c2a-0000-4000-8000-000000000001";
        d.observe(inc(Kind::Paused, "vda", "paused", "t"), 0);
        assert_eq!(d.due(COALESCE_MS).len(), 1);
        assert!(d.forget(uuid, Kind::Paused).is_empty());
        d.observe(inc(Kind::Paused, "vda", "paused again", "t"), 10);
        assert_eq!(d.due(10 + COALESCE_MS).len(), 1, "a new pause is printed");
        // Not printed yet when it resumed: printed then, not lost.
        d.observe(inc(Kind::Paused, "vdb", "short", "t"), 20);
        assert_eq!(d.forget(uuid, Kind::Paused).len(), 1);
    }

    #[test]
    fn json_fields_are_the_contract() {
        let mut i = inc(
            Kind::FsReadOnly,
            "vda",
            "EXT4-fs (vda1): Remounting",
            "2026-12-01T00:00:00.000Z",
        );
        i.source_file = Some("/var/lib/libvirt/images/web.qcow2".into());
        let v = serde_json::to_value(&i).unwrap();
        for f in [
            "time",
            "domain",
            "uuid",
            "kind",
            "disk",
            "source_file",
            "reason",
            "source",
            "detail",
            "suggest",
            "count",
        ] {
            assert!(v.get(f).is_some(), "{f} missing: {v}");
        }
        assert_eq!(v["kind"], "fs_read_only");
        assert_eq!(v["source"], "console");
        assert!(v["reason"].is_null());
        assert!(i.text().contains("fs_read_only disk=vda"));
    }
}
