//! What the watch makes of each libvirt event: incidents (I/O errors, pauses on them), a
//! domain adopted, refreshed or dropped, a lost connection.

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
}
