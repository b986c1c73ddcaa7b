//! What a watch needs to know about a running domain, from its live XML (pure): its disks
//! (target, device alias, source) to name the disk of an I/O error event, and the files its
//! consoles are logged to (`<serial type='file'>`, or `<log file=...>` as nova configures it).

use std::path::PathBuf;

/// One disk of the live definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFact {
    /// `vda`, `sda`.
    pub target: String,
    /// libvirt's device alias (`virtio-disk0`), as I/O error events name the disk.
    pub alias: Option<String>,
    /// The file, block device, volume or network name behind it.
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub disks: Vec<DiskFact>,
    pub console_logs: Vec<PathBuf>,
}

impl Facts {
    /// The disk an event names by alias or source.
    pub fn disk(&self, alias: &str, source: &str) -> Option<&DiskFact> {
        self.disks
            .iter()
            .find(|d| !alias.is_empty() && d.alias.as_deref() == Some(alias))
            .or_else(|| {
                self.disks
                    .iter()
                    .find(|d| !source.is_empty() && d.source.as_deref() == Some(source))
            })
    }

    /// The disk with this target.
    pub fn target(&self, target: &str) -> Option<&DiskFact> {
        self.disks.iter().find(|d| d.target == target)
    }
}

/// Reads a live domain XML.
pub fn facts(xml: &str) -> Result<Facts, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("malformed domain XML: {e}"))?;
    let mut out = Facts {
        disks: crate::libvirt::disks::read(xml)?
            .into_iter()
            .filter_map(|d| {
                Some(DiskFact {
                    source: d.source().map(str::to_owned),
                    target: d.target?,
                    alias: d.alias,
                })
            })
            .collect(),
        ..Facts::default()
    };
    let Some(devices) = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("devices"))
    else {
        return Ok(out);
    };
    for dev in devices.children().filter(|n| n.is_element()) {
        let child = |name: &str| dev.children().find(|n| n.has_tag_name(name));
        match dev.tag_name().name() {
            "serial" | "console" => {
                let mut paths = Vec::new();
                if dev.attribute("type") == Some("file") {
                    paths.extend(child("source").and_then(|s| s.attribute("path")));
                }
                paths.extend(child("log").and_then(|l| l.attribute("file")));
                for p in paths {
                    let p = PathBuf::from(p);
                    if p.is_absolute() && !out.console_logs.contains(&p) {
                        out.console_logs.push(p);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Whether a connection URI reaches this host's libvirtd (then its console logs are files
/// here): no host, `localhost`, or a loopback address.
pub fn is_local(uri: Option<&str>) -> bool {
    let Some(uri) = uri else { return true };
    let Some((_, rest)) = uri.split_once("://") else {
        return true;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    matches!(host, "" | "localhost" | "127.0.0.1" | "::1")
}

/// `s` as one shell word.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+=".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command that would check `domain`'s disks (it must be shut off first).
pub fn suggest(domain: &str, uri: Option<&str>) -> String {
    let mut s = format!("vmrescue rescue --domain {}", shell_word(domain));
    if let Some(u) = uri {
        s.push_str(&format!(" --connect {}", shell_word(u)));
    }
    s.push_str(" --mode check");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_and_console_logs_of_a_live_definition() {
        let xml = r#"<domain type='kvm' id='3'><name>instance-0000002a</name><devices>
          <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
            <source file='/var/lib/nova/instances/9a/disk' index='2'/><target dev='vda' bus='virtio'/>
            <alias name='virtio-disk0'/></disk>
          <disk type='volume' device='disk'><source pool='default' volume='data.qcow2'/><target dev='vdb' bus='virtio'/><alias name='ua-data'/></disk>
          <disk type='network' device='disk'><source protocol='rbd' name='volumes/volume-1'/><target dev='vdc' bus='virtio'/></disk>
          <disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>
          <serial type='pty'><source path='/dev/pts/3'/><log file='/var/lib/nova/instances/9a/console.log' append='off'/><target port='0'/></serial>
          <console type='pty' tty='/dev/pts/3'><log file='/var/lib/nova/instances/9a/console.log' append='off'/></console>
          <serial type='file'><source path='/var/log/guest-serial1.log'/></serial>
          <serial type='file'><source path='relative.log'/></serial>
        </devices></domain>"#;
        let f = facts(xml).unwrap();
        assert_eq!(f.disks.len(), 4);
        assert_eq!(f.disk("virtio-disk0", "").unwrap().target, "vda");
        assert_eq!(
            f.disk("", "/var/lib/nova/instances/9a/disk")
                .unwrap()
                .target,
            "vda"
        );
        assert_eq!(
            f.disk("ua-data", "").unwrap().source.as_deref(),
            Some("default/data.qcow2")
        );
        assert_eq!(
            f.target("vdc").unwrap().source.as_deref(),
            Some("volumes/volume-1")
        );
        assert!(f.disk("nope", "").is_none());
        assert_eq!(
            f.console_logs,
            [
                PathBuf::from("/var/lib/nova/instances/9a/console.log"),
                PathBuf::from("/var/log/guest-serial1.log")
            ]
        );
        assert!(facts("<domain><devices>").is_err());
        assert_eq!(facts("<domain/>").unwrap(), Facts::default());
    }

    #[test]
    fn local_uris_and_suggestions() {
        for u in [
            None,
            Some("qemu:///system"),
            Some("qemu+tcp://127.0.0.1/system"),
            Some("qemu+ssh://root@localhost/system"),
            Some("qemu+tcp://[::1]:16509/system"),
        ] {
            assert!(is_local(u), "{u:?}");
        }
        for u in [
            "qemu+ssh://root@compute-7/system",
            "qemu+tls://10.0.0.7:16514/system",
        ] {
            assert!(!is_local(Some(u)), "{u}");
        }
        assert_eq!(
            suggest("web-1", None),
            "vmrescue rescue --domain web-1 --mode check"
        );
        assert_eq!(
            suggest("it's; rm -rf /", Some("qemu+tcp://127.0.0.1/system")),
            r"vmrescue rescue --domain 'it'\''s; rm -rf /' --connect qemu+tcp://127.0.0.1/system --mode check"
        );
    }
}
