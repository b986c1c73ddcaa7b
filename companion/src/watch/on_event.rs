//! What the watch makes of each libvirt event: incidents (I/O errors, pauses on them), a
//! domain adopted, refreshed or dropped, a lost connection; and the incidents themselves.

use super::*;

impl Watch<'_> {
    pub(super) fn event(&mut self, ev: Event) {
        match ev {
            Event::Closed { reason } => {
                let why = match reason {
                    0 => "an error",
                    1 => "end of file: libvirtd stopped or restarted",
                    2 => "keepalive timeout",
                    3 => "closed by the client",
                    _ => "unknown reason",
                };
                eprintln!(
                    "vmrescue watch: lost the connection to {} ({why}); reconnecting every {}s",
                    self.uri,
                    RECONNECT_EVERY.as_secs()
                );
                self.disconnect();
            }
            Event::IoError {
                domain,
                uuid,
                src_path,
                dev_alias,
                action,
                reason,
            } => {
                if !self.known(&domain, &uuid) {
                    return;
                }
                let w = &self.watched[&uuid];
                let fact = w.facts.disk(&dev_alias, &src_path);
                let disk = fact.map(|d| d.target.clone());
                let source = if src_path.is_empty() {
                    fact.and_then(|d| d.source.clone())
                } else {
                    Some(src_path.clone())
                };
                let reason = (!reason.is_empty()).then_some(reason);
                let what = match action {
                    0 => "QEMU went on",
                    1 => "QEMU paused the guest",
                    2 => "QEMU passed the error to the guest",
                    _ => "QEMU did something else",
                };
                let detail = format!(
                    "I/O error on {} ({}){}: {what}",
                    disk.as_deref().unwrap_or(&dev_alias),
                    clean(source.as_deref().unwrap_or("unknown source")),
                    reason
                        .as_deref()
                        .map(|r| format!(", {r}"))
                        .unwrap_or_default()
                );
                if let Some(w) = self.watched.get_mut(&uuid) {
                    w.last_io = Some((disk.clone(), source.clone(), reason.clone()));
                }
                let inc = self.incident(
                    &uuid,
                    Kind::IoError,
                    Source::LibvirtEvent,
                    disk,
                    source,
                    reason,
                    detail,
                );
                self.observe(inc);
            }
            Event::Lifecycle {
                domain,
                uuid,
                event,
                detail,
            } => match event {
                events::LIFECYCLE_STARTED => self.refresh(&domain, &uuid),
                events::LIFECYCLE_RESUMED => {
                    for inc in self.dedup.forget(&uuid, Kind::Paused) {
                        let _ = self.emit(&inc);
                    }
                    if let Some(w) = self.watched.get_mut(&uuid) {
                        w.last_io = None;
                    }
                }
                events::LIFECYCLE_STOPPED => {
                    self.read_consoles();
                    self.watched.remove(&uuid);
                }
                events::LIFECYCLE_SUSPENDED if detail == events::SUSPENDED_IOERROR => {
                    if !self.known(&domain, &uuid) {
                        return;
                    }
                    let dom = self
                        .conn
                        .as_ref()
                        .and_then(|(c, _)| c.lookup_domain_by_uuid_string(&uuid).ok());
                    if let Some(dom) = dom {
                        let inc = self.paused(&uuid, &dom, "paused on an I/O error");
                        self.observe(inc);
                    }
                }
                _ => {}
            },
        }
    }

    /// Whether the event's domain is watched (a running domain not seen yet is adopted).
    fn known(&mut self, domain: &str, uuid: &str) -> bool {
        if !self.wanted(domain) {
            return false;
        }
        if !self.watched.contains_key(uuid) {
            self.refresh(domain, uuid);
        }
        self.watched.contains_key(uuid)
    }

    fn refresh(&mut self, domain: &str, uuid: &str) {
        if !self.wanted(domain) {
            return;
        }
        let dom = self
            .conn
            .as_ref()
            .and_then(|(c, _)| c.lookup_domain_by_uuid_string(uuid).ok());
        if let Some(dom) = dom {
            self.adopt(&dom, false);
        }
    }

    /// A paused incident for `uuid`, its disk and reason from the last I/O error event or
    /// libvirt's recorded disk errors.
    pub(super) fn paused(&self, uuid: &str, dom: &Domain, what: &str) -> Incident {
        let w = &self.watched[uuid];
        let (mut disk, mut source, mut reason) = w.last_io.clone().unwrap_or_default();
        if disk.is_none() {
            if let Ok(errs) = events::disk_errors(dom) {
                if let Some((d, code)) = errs.into_iter().next() {
                    source = w.facts.target(&d).and_then(|f| f.source.clone());
                    reason = reason.or(Some(disk_error_reason(code).into()));
                    disk = Some(d);
                }
            }
        }
        let mut detail = what.to_owned();
        if let Some(d) = &disk {
            detail.push_str(&format!(" of {d}"));
        }
        if reason.as_deref() == Some("enospc") {
            detail.push_str(": no space left where its disk lives on the host");
        }
        self.incident(
            uuid,
            Kind::Paused,
            Source::LibvirtEvent,
            disk,
            source,
            reason,
            detail,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn incident(
        &self,
        uuid: &str,
        kind: Kind,
        source: Source,
        disk: Option<String>,
        source_file: Option<String>,
        reason: Option<String>,
        detail: String,
    ) -> Incident {
        let name = self
            .watched
            .get(uuid)
            .map(|w| w.name.clone())
            .unwrap_or_default();
        Incident {
            time: wall_time(),
            suggest: domains::suggest(&name, self.opts.connect.as_deref()),
            domain: name,
            uuid: uuid.to_owned(),
            kind,
            disk,
            source_file,
            reason: reason.filter(|r| !r.is_empty()),
            source,
            detail,
            count: 1,
            guest_device: None,
            repeat: false,
            last_time: String::new(),
        }
    }
}

/// libvirt's disk error code as a reason word.
pub(super) fn disk_error_reason(code: i32) -> &'static str {
    if code == events::DISK_ERROR_NO_SPACE {
        "enospc"
    } else {
        "eio"
    }
}

fn wall_time() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    vmrescue_protocol::utc::rfc3339_millis(ms)
}
