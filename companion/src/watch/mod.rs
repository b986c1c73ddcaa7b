//! `vmrescue watch`: notices a failing guest before its operator does. It joins libvirt's
//! events (I/O errors, pauses on them) with what the guest kernel says on its console
//! (ext4 remounted read-only, XFS shut down, block-layer I/O errors), prints one line per
//! incident (de-duplicated), and can run a command for each.
//!
//! Parts: [`events`] (the one `unsafe` module: libvirt's event callbacks), [`domains`] (what
//! the live XML says), [`follow`] (console logs as they grow), [`kernel_lines`] (what a line
//! means), [`incident`] (the printed contract and de-duplication), [`exec`] (the `--exec`
//! runner); `on_event` turns libvirt's events into incidents. This file drives them.

pub mod domains;
pub mod events;
pub mod exec;
pub mod follow;
pub mod incident;
pub mod kernel_lines;
mod on_event;
use on_event::disk_error_reason;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use virt::connect::Connect;
use virt::domain::Domain;

use domains::Facts;
use events::{Event, Subscription};
use follow::{Follower, Notice};
use incident::{Dedup, Incident, Kind, Source};
use kernel_lines::Finding;

use crate::render::clean;

/// What `vmrescue watch` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub connect: Option<String>,
    /// Only these domains (by name); all when empty.
    pub domains: Vec<String>,
    pub json: bool,
    /// Stop after this long.
    pub for_secs: Option<u64>,
    /// Run for each incident (`sh -c`), the incident on stdin and in the environment.
    pub exec: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0}")]
    Connect(String),
    #[error("no domain named {names} on {uri}; list them with `virsh -c {uri} list --all`")]
    NoDomain { names: String, uri: String },
    #[error("cannot start libvirt's event loop: {0}")]
    EventLoop(String),
    #[error("cannot subscribe to libvirt's domain events on {uri}: {message}")]
    Subscribe { uri: String, message: String },
    #[error("cannot list the domains on {uri}: {message}")]
    List { uri: String, message: String },
    #[error("cannot print an incident: {0}")]
    Output(std::io::Error),
}

/// How often console logs are read and incidents due are printed.
const TICK: Duration = Duration::from_millis(250);
/// How often a lost connection is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(2);
/// How often the domain list is read again (events cover the rest; this catches what a
/// reconnect missed).
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// A running domain being watched.
struct Watched {
    name: String,
    uuid: String,
    facts: Facts,
    followers: Vec<Follower>,
    /// The last I/O error event: (disk, source, reason), to name a pause's cause.
    last_io: Option<(Option<String>, Option<String>, Option<String>)>,
}

struct Watch<'a> {
    opts: &'a Options,
    uri: String,
    local: bool,
    conn: Option<(Connect, Subscription)>,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    watched: BTreeMap<String, Watched>,
    dedup: Dedup,
    start: Instant,
    out: &'a mut dyn Write,
    printed: u64,
    runner: exec::Runner,
    /// Named domains not found (said once each).
    missing: BTreeSet<String>,
}

/// Watches until `--for` runs out or SIGINT / SIGTERM / SIGHUP; returns how many incidents
/// were printed.
pub fn run(opts: &Options, out: &mut dyn Write) -> Result<u64, WatchError> {
    crate::session::interrupt::arm();
    events::start_loop().map_err(|e| WatchError::EventLoop(e.to_string()))?;
    let uri = opts
        .connect
        .clone()
        .or_else(|| std::env::var("LIBVIRT_DEFAULT_URI").ok())
        .unwrap_or_else(|| "libvirt's default URI".into());
    let (tx, rx) = mpsc::channel();
    let mut w = Watch {
        opts,
        local: domains::is_local(opts.connect.as_deref()),
        uri,
        conn: None,
        tx,
        rx,
        watched: BTreeMap::new(),
        dedup: Dedup::default(),
        start: Instant::now(),
        out,
        printed: 0,
        runner: exec::Runner::default(),
        missing: BTreeSet::new(),
    };
    w.connect()?;
    w.scan(true)?;
    if !w.local {
        eprintln!(
            "vmrescue watch: console logs of domains on {} are on that host: watching libvirt's events only",
            w.uri
        );
    }
    let logs: usize = w.watched.values().map(|d| d.followers.len()).sum();
    eprintln!(
        "vmrescue watch: watching {} running domain(s) on {} ({} console log(s)); stop with Ctrl-C",
        w.watched.len(),
        w.uri,
        logs
    );
    let result = w.run_loop();
    w.finish();
    result.map(|()| w.printed)
}

impl Watch<'_> {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn wanted(&self, name: &str) -> bool {
        self.opts.domains.is_empty() || self.opts.domains.iter().any(|d| d == name)
    }

    fn connect(&mut self) -> Result<(), WatchError> {
        let conn = crate::libvirt::domain::connect(self.opts.connect.as_deref())
            .map_err(|e| WatchError::Connect(e.to_string()))?;
        let sub = events::subscribe(&conn, &self.tx).map_err(|e| WatchError::Subscribe {
            uri: self.uri.clone(),
            message: e.to_string(),
        })?;
        if self.opts.connect.is_none() {
            if let Ok(u) = conn.uri() {
                self.local = domains::is_local(Some(&u));
                self.uri = u;
            }
        }
        self.conn = Some((conn, sub));
        Ok(())
    }

    fn disconnect(&mut self) {
        if let Some((conn, mut sub)) = self.conn.take() {
            sub.cancel(&conn);
            drop(conn);
        }
    }

    /// Reads the domain list: running domains are watched, paused-on-I/O-error ones and
    /// recorded disk errors reported. `first`: the watch's start (a named domain that does
    /// not exist is an error when none of them does).
    fn scan(&mut self, first: bool) -> Result<(), WatchError> {
        let Some((conn, _)) = &self.conn else {
            return Ok(());
        };
        let all = conn.list_all_domains(0).map_err(|e| WatchError::List {
            uri: self.uri.clone(),
            message: e.to_string(),
        })?;
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for dom in all {
            let Ok(name) = dom.name() else { continue };
            seen.insert(name.clone());
            if self.wanted(&name) {
                found.push(dom);
            }
        }
        let missing: Vec<String> = self
            .opts
            .domains
            .iter()
            .filter(|d| !seen.contains(*d))
            .cloned()
            .collect();
        if first && !self.opts.domains.is_empty() && missing.len() == self.opts.domains.len() {
            return Err(WatchError::NoDomain {
                names: missing.join(", "),
                uri: self.uri.clone(),
            });
        }
        for m in missing {
            if self.missing.insert(m.clone()) {
                eprintln!(
                    "vmrescue watch: no domain named {m} on {}; watching the others (it is picked up once it is defined)",
                    self.uri
                );
            }
        }
        self.missing.retain(|m| !seen.contains(m));
        let running: BTreeSet<String> = found
            .iter()
            .filter(|d| d.is_active().unwrap_or(false))
            .filter_map(|d| d.uuid_string().ok())
            .collect();
        self.watched.retain(|uuid, _| running.contains(uuid));
        for dom in found {
            self.adopt(&dom, first);
        }
        Ok(())
    }

    /// Starts watching `dom` if it runs (console logs from their end when `from_end`), and
    /// reports a pause on an I/O error and the disk errors libvirt recorded.
    fn adopt(&mut self, dom: &Domain, from_end: bool) {
        let (Ok(name), Ok(uuid)) = (dom.name(), dom.uuid_string()) else {
            return;
        };
        if !dom.is_active().unwrap_or(false) {
            self.watched.remove(&uuid);
            return;
        }
        let facts = match dom.xml_desc(0) {
            Ok(xml) => domains::facts(&xml).unwrap_or_else(|e| {
                eprintln!("vmrescue watch: {name}: {e}; watching its events only");
                Facts::default()
            }),
            Err(e) => {
                eprintln!("vmrescue watch: {name}: cannot read its definition ({e}); watching its events only");
                Facts::default()
            }
        };
        let known = self.watched.contains_key(&uuid);
        let entry = self.watched.entry(uuid.clone()).or_insert_with(|| Watched {
            name: name.clone(),
            uuid: uuid.clone(),
            facts: Facts::default(),
            followers: Vec::new(),
            last_io: None,
        });
        if self.local {
            for p in &facts.console_logs {
                if !entry.followers.iter().any(|f| f.path() == p) {
                    entry.followers.push(Follower::new(p, from_end || known));
                }
            }
        }
        entry.facts = facts;
        if known {
            return;
        }
        // What was already wrong when the watch started (or the domain was first seen).
        if let Ok((state, reason)) = events::state(dom) {
            if state == events::STATE_PAUSED && reason == events::PAUSED_IOERROR {
                let inc = self.paused(
                    &uuid,
                    dom,
                    "paused on an I/O error (found so when the watch started)",
                );
                self.observe(inc);
            }
        }
        if let Ok(errs) = events::disk_errors(dom) {
            for (disk, code) in errs {
                let reason = disk_error_reason(code);
                let w = &self.watched[&uuid];
                let source = w.facts.target(&disk).and_then(|d| d.source.clone());
                let detail = format!(
                    "libvirt recorded an I/O error on {disk} ({reason}) before the watch started"
                );
                let inc = self.incident(
                    &uuid,
                    Kind::IoError,
                    Source::LibvirtEvent,
                    Some(disk),
                    source,
                    Some(reason.into()),
                    detail,
                );
                self.observe(inc);
            }
        }
    }

    fn observe(&mut self, inc: Incident) {
        let now = self.now_ms();
        self.dedup.observe(inc, now);
    }

    fn run_loop(&mut self) -> Result<(), WatchError> {
        let deadline = self
            .opts
            .for_secs
            .map(|s| self.start + Duration::from_secs(s));
        let mut last_try = Instant::now();
        let mut last_refresh = Instant::now();
        loop {
            if let Some(sig) = crate::session::interrupt::pending() {
                eprintln!("vmrescue watch: {sig}: stopping");
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
            match self.rx.recv_timeout(TICK) {
                Ok(ev) => {
                    self.event(ev);
                    while let Ok(ev) = self.rx.try_recv() {
                        self.event(ev);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
            if self.conn.is_none() && last_try.elapsed() >= RECONNECT_EVERY {
                last_try = Instant::now();
                if self.connect().is_ok() {
                    eprintln!("vmrescue watch: reconnected to {}", self.uri);
                    if let Err(e) = self.scan(false) {
                        eprintln!("vmrescue watch: {e}");
                    }
                    last_refresh = Instant::now();
                }
            }
            if self.conn.is_some() && last_refresh.elapsed() >= REFRESH_EVERY {
                last_refresh = Instant::now();
                if let Err(e) = self.scan(false) {
                    eprintln!("vmrescue watch: {e}");
                }
            }
            self.read_consoles();
            let now = self.now_ms();
            for inc in self.dedup.due(now) {
                self.emit(&inc)?;
            }
            self.runner.reap(false);
        }
    }

    fn read_consoles(&mut self) {
        let mut found = Vec::new();
        for w in self.watched.values_mut() {
            for f in &mut w.followers {
                let (mut lines, mut notices) = (Vec::new(), Vec::new());
                f.poll(&mut lines, &mut notices);
                for n in notices {
                    let p = f.path().display();
                    match n {
                        Notice::Truncated => eprintln!("vmrescue watch: {}: console log {p} was truncated; reading it from its start", w.name),
                        Notice::Rotated => eprintln!("vmrescue watch: {}: console log {p} was rotated; reading the new one", w.name),
                        Notice::Gone => eprintln!("vmrescue watch: {}: console log {p} is not there; it is read once it is", w.name),
                        Notice::Unreadable(e) => eprintln!("vmrescue watch: {}: cannot read console log {p}: {e}", w.name),
                    }
                }
                for line in lines {
                    if let Some(m) = kernel_lines::classify(&line) {
                        found.push((w.uuid.clone(), f.path().to_owned(), m));
                    }
                }
            }
        }
        for (uuid, _log, m) in found {
            let kind = match m.finding {
                Finding::IoError => Kind::IoError,
                Finding::FsError => Kind::FsError,
                Finding::FsReadOnly => Kind::FsReadOnly,
            };
            let w = &self.watched[&uuid];
            let disk = m
                .device
                .as_deref()
                .map(kernel_lines::whole_disk)
                .filter(|d| w.facts.target(d).is_some())
                .map(str::to_owned);
            let source = disk
                .as_deref()
                .and_then(|d| w.facts.target(d))
                .and_then(|d| d.source.clone());
            let mut inc = self.incident(
                &uuid,
                kind,
                Source::Console,
                disk,
                source,
                None,
                clean(&m.message),
            );
            inc.guest_device = m.device;
            self.observe(inc);
        }
    }

    fn emit(&mut self, inc: &Incident) -> Result<(), WatchError> {
        let line = if self.opts.json {
            serde_json::to_string(inc).unwrap_or_default()
        } else {
            inc.text()
        };
        writeln!(self.out, "{line}").map_err(WatchError::Output)?;
        self.out.flush().map_err(WatchError::Output)?;
        self.printed += 1;
        if let Some(cmd) = &self.opts.exec {
            self.runner.run(cmd, inc);
        }
        Ok(())
    }

    /// The end: the last console lines, everything not printed yet, the commands' ends.
    fn finish(&mut self) {
        self.read_consoles();
        for inc in self.dedup.flush() {
            if let Err(e) = self.emit(&inc) {
                eprintln!("vmrescue watch: {e}");
                break;
            }
        }
        self.runner.reap(true);
        self.disconnect();
    }
}
