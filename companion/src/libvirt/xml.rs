//! The rescue XML of a libvirt domain (pure): the domain's own inactive XML with the rescue
//! added by splicing text into it, so that everything else keeps its bytes (metadata in foreign
//! namespaces such as nova's, `qemu:commandline`, comments, attribute order and quoting).
//!
//! The rescue: a cdrom with the ISO first in the boot order (or direct kernel boot), the
//! agent's virtio-serial channel, `on_reboot` destroy so a rescue never loops, a serial console
//! logged to the run's state directory, a copy of a UEFI guest's NVRAM instead of its own, and
//! in check mode every guest disk read-only.

use roxmltree::{Document, Node};
use vmrescue_protocol::Mode;

pub use super::xml_splice::escape;
pub(super) use super::xml_splice::{child, children, fill, finish, line_indent, Edits};

const CDROM: &str = include_str!("../../../xml-templates/cdrom.xml");
const CHANNEL: &str = include_str!("../../../xml-templates/channel.xml");
const KERNEL_BOOT: &str = include_str!("../../../xml-templates/kernel-boot.xml");
const SERIAL: &str = include_str!("../../../xml-templates/serial.xml");
const SCRATCH_DISK: &str = include_str!("../../../xml-templates/scratch-disk.xml");
const LATE_DISK: &str = include_str!("../../../xml-templates/late-disk.xml");

/// Why a domain cannot be rescued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the domain XML is not well-formed: {0}")]
    Parse(String),
    #[error("the domain XML has no <{0}> element")]
    Missing(&'static str),
    #[error("domain type {0:?} is not a qemu/kvm guest; vmrescue rescues QEMU domains only")]
    Hypervisor(String),
    #[error("the guest's architecture is {0:?}: the rescue media are x86 (x86_64, i686) only")]
    Arch(String),
    #[error("{0}")]
    Unsupported(String),
}

/// How the rescue boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootMethod {
    /// The rescue ISO as a cdrom, first in the boot order.
    Cdrom { iso: String },
    /// Direct kernel boot with the rescue's own command line.
    Kernel {
        kernel: String,
        initrd: String,
        cmdline: String,
    },
}

/// What to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescue {
    pub boot: BootMethod,
    pub mode: Mode,
    /// The agent's port name.
    pub channel: String,
    /// Where the rescue's serial console is logged (a file in the state directory).
    pub console_log: Option<String>,
    /// Where the copy of a UEFI guest's NVRAM goes (its own file is the template).
    pub nvram_copy: Option<String>,
    /// The per-rescue settings drive (an ISO), attached as a second cdrom to a cdrom boot.
    pub settings_iso: Option<String>,
    /// Whether the guest's own NVRAM file exists yet (a UEFI guest that never ran has none; its
    /// template then seeds the copy).
    pub guest_nvram_exists: bool,
    /// A scratch disk image of our own to attach (the boot copy of `--verify`).
    pub scratch_disk: Option<String>,
    /// The image's late archive (`late.img`), attached read-only beside a kernel boot's core
    /// initramfs with the serial the agent knows it by.
    pub late_disk: Option<String>,
    /// Guest disks the rescue writes through qcow2 overlays instead (`--rollback-on-regression`):
    /// (target, overlay file). Each overlay names its disk and that disk's format as backing.
    pub staged: Vec<(String, String)>,
}

/// The settings drive as a cdrom on the machine's cdrom bus, at a target not in `used`.
fn settings_cdrom(iso: &str, machine: &str, used: &[String]) -> String {
    let bus = cdrom_bus(machine);
    let prefix = if bus == "ide" { "hd" } else { "sd" };
    fill(
        CDROM,
        &[
            ("iso", &escape(iso)),
            ("target", &free_target(prefix, used)),
            ("bus", bus),
            ("boot", ""),
        ],
    )
}

/// The serial of the scratch disk [`Rescue::scratch_disk`] attaches.
pub const SCRATCH_SERIAL: &str = "vmrescue-scratch";

/// What the rescue XML edit found out about the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub name: String,
    pub uuid: Option<String>,
    pub machine: String,
    /// The guest's own NVRAM file (UEFI), which the rescue never touches.
    pub nvram: Option<String>,
    pub uefi: bool,
    /// It boots a kernel of its own directly (`<os><kernel>`).
    pub own_kernel: bool,
    /// Its firmware enforces Secure Boot (`<loader secure='yes'>`, or the `secure-boot`
    /// feature of `<os firmware='efi'>` enabled).
    pub secure_boot: bool,
    /// How many disks the rescue kernel will see, when that is certain: every disk of the
    /// domain on a bus it has a driver for, and no passed-through SCSI device. The agent then
    /// scans as soon as they are all there instead of waiting for the set to stay quiet.
    pub disk_count: Option<u32>,
}

/// Target names the domain's disks use.
fn used_targets(devices: Node) -> Vec<String> {
    children(devices, "disk")
        .filter_map(|d| child(d, "target")?.attribute("dev").map(str::to_owned))
        .collect()
}

/// The first free `PREFIX[a-z]` name.
fn free_target(prefix: &str, used: &[String]) -> String {
    for c in b'a'..=b'z' {
        let name = format!("{prefix}{}", c as char);
        if !used.contains(&name) {
            return name;
        }
    }
    format!("{prefix}zz")
}

/// Reads the facts and checks the domain can be rescued.
pub fn facts(text: &str) -> Result<Facts, XmlError> {
    let doc = Document::parse(text).map_err(|e| XmlError::Parse(e.to_string()))?;
    let dom = doc.root_element();
    if dom.tag_name().name() != "domain" {
        return Err(XmlError::Missing("domain"));
    }
    let kind = dom.attribute("type").unwrap_or("");
    if kind != "qemu" && kind != "kvm" {
        return Err(XmlError::Hypervisor(kind.to_owned()));
    }
    let os = child(dom, "os").ok_or(XmlError::Missing("os"))?;
    let ty = child(os, "type").ok_or(XmlError::Missing("os/type"))?;
    let arch = ty.attribute("arch").unwrap_or("x86_64");
    if arch != "x86_64" && arch != "i686" {
        return Err(XmlError::Arch(arch.to_owned()));
    }
    let text_of = |n: Option<Node>| n.and_then(|n| n.text()).map(|t| t.trim().to_owned());
    let nvram = child(os, "nvram");
    let loader = child(os, "loader");
    let uefi = os.attribute("firmware") == Some("efi")
        || loader.is_some_and(|l| l.attribute("type") == Some("pflash"))
        || nvram.is_some();
    let secure_boot = loader.is_some_and(|l| l.attribute("secure") == Some("yes"))
        || child(os, "firmware").is_some_and(|fw| {
            children(fw, "feature").any(|f| {
                f.attribute("name") == Some("secure-boot") && f.attribute("enabled") == Some("yes")
            })
        });
    Ok(Facts {
        name: text_of(child(dom, "name")).ok_or(XmlError::Missing("name"))?,
        uuid: text_of(child(dom, "uuid")),
        machine: ty.attribute("machine").unwrap_or("pc").to_owned(),
        nvram: text_of(nvram).filter(|t| !t.is_empty()),
        uefi,
        own_kernel: child(os, "kernel").is_some(),
        secure_boot,
        disk_count: child(dom, "devices").and_then(super::disks::rescue_disk_count),
    })
}

/// The cdrom's bus for a machine type: q35 has no IDE.
pub fn cdrom_bus(machine: &str) -> &'static str {
    if machine.contains("q35") {
        "sata"
    } else {
        "ide"
    }
}

/// A parsed domain's element, its `<os>` and its `<devices>`.
pub(super) fn domain_parts<'a, 'i>(
    doc: &'a Document<'i>,
) -> Result<(Node<'a, 'i>, Node<'a, 'i>, Node<'a, 'i>), XmlError> {
    let dom = doc.root_element();
    let os = child(dom, "os").ok_or(XmlError::Missing("os"))?;
    let devices = child(dom, "devices").ok_or(XmlError::Missing("devices"))?;
    Ok((dom, os, devices))
}

/// The rescue XML for `text` (a domain's inactive XML).
pub fn rescue_xml(text: &str, r: &Rescue) -> Result<String, XmlError> {
    let f = facts(text)?;
    let doc = Document::parse(text).map_err(|e| XmlError::Parse(e.to_string()))?;
    let (dom, os, devices) = domain_parts(&doc)?;
    let mut edits = Edits::default();
    // New children, per parent, added in one edit each (a `<devices/>` gets them all at once).
    let mut appends: Vec<(Node, String)> = Vec::new();

    // Boot order: per-device <boot order> or <os><boot dev>, never both.
    let device_boots: Vec<Node> = devices
        .descendants()
        .filter(|n| {
            n.is_element() && n.tag_name().name() == "boot" && n.attribute("order").is_some()
        })
        .collect();
    if !device_boots.is_empty() && children(os, "boot").next().is_some() {
        return Err(XmlError::Unsupported(
            "the domain mixes <os><boot dev> with per-device <boot order>, which libvirt refuses; fix its definition first".into(),
        ));
    }
    let mut cdrom_boot = String::new();
    match &r.boot {
        BootMethod::Cdrom { iso } => {
            if device_boots.is_empty() {
                let first_boot = children(os, "boot").next();
                let indent = line_indent(text, ty_start(os));
                match first_boot {
                    Some(b) => {
                        edits.insert(b.range().start, format!("<boot dev='cdrom'/>\n{indent}"))
                    }
                    None => {
                        let ty = child(os, "type").ok_or(XmlError::Missing("os/type"))?;
                        edits.insert(ty.range().end, format!("\n{indent}<boot dev='cdrom'/>"));
                    }
                }
            } else {
                for b in &device_boots {
                    let a = b
                        .attributes()
                        .find(|a| a.name() == "order")
                        .ok_or(XmlError::Missing("boot order"))?;
                    let n: u32 = a.value().trim().parse().map_err(|_| {
                        XmlError::Unsupported(format!("boot order {:?} is not a number", a.value()))
                    })?;
                    edits.replace(a.range_value(), (n + 1).to_string());
                }
                cdrom_boot = "  <boot order='1'/>\n".into();
            }
            let bus = cdrom_bus(&f.machine);
            let prefix = if bus == "ide" { "hd" } else { "sd" };
            let mut used = used_targets(devices);
            let target = free_target(prefix, &used);
            let disk = fill(
                CDROM,
                &[
                    ("iso", &escape(iso)),
                    ("target", &target),
                    ("bus", bus),
                    ("boot", &cdrom_boot),
                ],
            );
            appends.push((devices, disk));
            if let Some(settings) = &r.settings_iso {
                used.push(target);
                appends.push((devices, settings_cdrom(settings, &f.machine, &used)));
            }
        }
        BootMethod::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            if child(os, "kernel").is_some() {
                return Err(XmlError::Unsupported(
                    "the domain already boots a kernel directly (<os><kernel>); use --boot cdrom"
                        .into(),
                ));
            }
            let frag = fill(
                KERNEL_BOOT,
                &[
                    ("kernel", &escape(kernel)),
                    ("initrd", &escape(initrd)),
                    ("cmdline", &escape(cmdline)),
                ],
            );
            appends.push((os, frag));
            // Secrets for a kernel boot come on a settings drive too (never its command line).
            if let Some(settings) = &r.settings_iso {
                let used = used_targets(devices);
                appends.push((devices, settings_cdrom(settings, &f.machine, &used)));
            }
        }
    }
    // Our own disks, each at a virtio target free in the domain and among themselves.
    let mut used = used_targets(devices);
    for (template, image, serial) in [
        (SCRATCH_DISK, &r.scratch_disk, SCRATCH_SERIAL),
        (
            LATE_DISK,
            &r.late_disk,
            vmrescue_protocol::paths::LATE_SERIAL,
        ),
    ] {
        let Some(image) = image else { continue };
        let target = free_target("vd", &used);
        appends.push((
            devices,
            fill(
                template,
                &[
                    ("image", &escape(image)),
                    ("target", &target),
                    ("serial", serial),
                ],
            ),
        ));
        used.push(target);
    }

    // The agent's channel.
    appends.push((devices, fill(CHANNEL, &[("name", &escape(&r.channel))])));

    // A rescue never reboots into itself.
    match child(dom, "on_reboot") {
        Some(n) => edits.replace(n.range(), "<on_reboot>destroy</on_reboot>"),
        None => {
            let indent = line_indent(text, devices.range().start);
            edits.insert(
                devices.range().start,
                format!("<on_reboot>destroy</on_reboot>\n{indent}"),
            );
        }
    }

    // The rescue powers off through ACPI: without it the VM only halts, and the run would wait
    // out its grace period before destroying it.
    match child(dom, "features") {
        Some(f) if child(f, "acpi").is_none() => appends.push((f, "<acpi/>".into())),
        Some(_) => {}
        None => {
            let indent = line_indent(text, devices.range().start);
            edits.insert(
                devices.range().start,
                format!("<features>\n{indent}  <acpi/>\n{indent}</features>\n{indent}"),
            );
        }
    }

    // A serial console (the report's fallback), logged where the run can read it.
    if r.console_log.is_none() && children(devices, "serial").next().is_none() {
        appends.push((
            devices,
            "<serial type='pty'>\n  <target port='0'/>\n</serial>".into(),
        ));
    }
    if let Some(log) = &r.console_log {
        let log = escape(log);
        match children(devices, "serial").next() {
            Some(s) => match child(s, "log") {
                Some(l) => match l.attributes().find(|a| a.name() == "file") {
                    Some(a) => edits.replace(a.range_value(), log),
                    None => {
                        return Err(XmlError::Unsupported("a <serial><log> without file".into()))
                    }
                },
                None if s.attribute("type") == Some("pty") => {
                    appends.push((s, format!("<log file='{log}' append='off'/>")))
                }
                None => {} // file, tcp, unix...: the console goes where the domain says.
            },
            None => appends.push((devices, fill(SERIAL, &[("log", &log)]))),
        }
    }

    // UEFI: boot from a copy of the guest's variables, never the file itself.
    if let (true, Some(copy)) = (f.uefi, &r.nvram_copy) {
        let copy = escape(copy);
        match child(os, "nvram") {
            Some(n) => {
                if n.attribute("type") == Some("network") {
                    return Err(XmlError::Unsupported(
                        "the guest's NVRAM is on the network (<nvram type='network'>): vmrescue cannot boot the rescue from a copy of it".into(),
                    ));
                }
                let source_file = child(n, "source")
                    .and_then(|src| src.attributes().find(|a| a.name() == "file"));
                if let Some(file) = source_file {
                    // `<nvram type='file'><source file='OWN'/></nvram>`: the copy in the
                    // source, the guest's own file as the template.
                    let own = escape(file.value());
                    edits.replace(file.range_value(), copy.clone());
                    match n.attributes().find(|a| a.name() == "template") {
                        Some(t) => edits.replace(t.range_value(), own),
                        None => edits.insert(
                            n.range().start + "<nvram".len(),
                            format!(" template='{own}'"),
                        ),
                    }
                } else {
                    let own = n
                        .text()
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned);
                    // The guest's own file (or, before it has one, its template) seeds the copy.
                    let template = own
                        .filter(|_| r.guest_nvram_exists)
                        .or_else(|| n.attribute("template").map(str::to_owned));
                    let mut attrs = String::new();
                    for a in n
                        .attributes()
                        .filter(|a| !matches!(a.name(), "template" | "type"))
                    {
                        attrs.push_str(&format!(" {}='{}'", a.name(), escape(a.value())));
                    }
                    if let Some(t) = template {
                        attrs.push_str(&format!(" template='{}'", escape(&t)));
                    }
                    edits.replace(n.range(), format!("<nvram{attrs}>{copy}</nvram>"));
                }
            }
            None => appends.push((os, format!("<nvram>{copy}</nvram>"))),
        }
    }

    // Staged: the repair writes to an overlay of the disk, the disk beneath it.
    for (target, overlay) in &r.staged {
        let disk = children(devices, "disk").find(|d| {
            d.attribute("device").unwrap_or("disk") == "disk"
                && child(*d, "target").and_then(|t| t.attribute("dev")) == Some(target.as_str())
        });
        let Some(d) = disk else {
            return Err(XmlError::Unsupported(format!(
                "no disk {target} to stage the repair of"
            )));
        };
        stage_disk(&mut edits, &mut appends, d, &escape(overlay));
    }

    // Check mode: the guest's disks read-only as well (the agent writes nothing anyway). IDE
    // and SATA disks cannot be read-only (libvirt refuses, as QEMU's ide-hd does): they are
    // transient instead, so libvirt puts a throw-away overlay over each (beside its file, gone
    // with the run) and QEMU opens the disk itself read-only.
    if r.mode == Mode::Check {
        for d in
            children(devices, "disk").filter(|d| d.attribute("device").unwrap_or("disk") == "disk")
        {
            if child(d, "readonly").is_some()
                || child(d, "shareable").is_some()
                || child(d, "transient").is_some()
            {
                continue;
            }
            let element = if on_ide_or_sata(d) {
                "<transient/>"
            } else {
                "<readonly/>"
            };
            appends.push((d, element.into()));
        }
    }
    Ok(finish(text, edits, appends))
}

/// Whether disk `d` is on an IDE or SATA bus (without a `bus`, libvirt takes an `hd*` target
/// for IDE).
fn on_ide_or_sata(d: Node) -> bool {
    let target = child(d, "target");
    match target.and_then(|t| t.attribute("bus")) {
        Some(bus) => bus == "ide" || bus == "sata",
        None => target
            .and_then(|t| t.attribute("dev"))
            .is_some_and(|dev| dev.starts_with("hd")),
    }
}

/// Points disk `d` at `overlay` (a qcow2 file whose backing is the disk): its type, source,
/// driver format and (the chain is the overlay's) any `<backingStore>`.
fn stage_disk<'a, 'i>(
    edits: &mut Edits,
    appends: &mut Vec<(Node<'a, 'i>, String)>,
    d: Node<'a, 'i>,
    overlay: &str,
) {
    let open_end = d.range().start + "<disk".len();
    match d.attributes().find(|a| a.name() == "type") {
        Some(a) => edits.replace(a.range_value(), "file"),
        None => edits.insert(open_end, " type='file'"),
    }
    let source = format!("<source file='{overlay}'/>");
    match child(d, "source") {
        Some(src) => edits.replace(src.range(), source),
        None => appends.push((d, source)),
    }
    match child(d, "driver") {
        Some(dr) => match dr.attributes().find(|a| a.name() == "type") {
            Some(a) => edits.replace(a.range_value(), "qcow2"),
            None => edits.insert(dr.range().start + "<driver".len(), " type='qcow2'"),
        },
        None => appends.push((d, "<driver name='qemu' type='qcow2'/>".into())),
    }
    for b in children(d, "backingStore") {
        edits.replace(b.range(), "");
    }
}

fn ty_start(os: Node) -> usize {
    child(os, "type").map_or(os.range().start, |t| t.range().start)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOVA: &str = include_str!("testdata/nova-bios-two-disks.xml");

    fn rescue(boot: BootMethod, mode: Mode) -> Rescue {
        Rescue {
            boot,
            mode,
            channel: "org.vmrescue.agent.0".into(),
            console_log: Some("/run/vmrescue/instance-00000001/console.log".into()),
            nvram_copy: Some("/run/vmrescue/x/VARS.fd".into()),
            settings_iso: None,
            guest_nvram_exists: true,
            scratch_disk: None,
            late_disk: None,
            staged: vec![],
        }
    }

    #[test]
    fn staged_disks_point_at_their_overlays_and_keep_the_rest() {
        let mut r = rescue(cdrom(), Mode::Repair);
        r.staged = vec![
            ("vda".into(), "/run/vmrescue/x/repair-disk0.qcow2".into()),
            ("vdb".into(), "/run/vmrescue/x/repair-disk1.qcow2".into()),
        ];
        let out = rescue_xml(NOVA, &r).unwrap();
        let doc = Document::parse(&out).unwrap();
        let disk = |target: &str| {
            doc.descendants()
                .find(|n| {
                    n.has_tag_name("disk")
                        && n.children()
                            .any(|t| t.has_tag_name("target") && t.attribute("dev") == Some(target))
                })
                .unwrap()
        };
        for (target, overlay) in [
            ("vda", "/run/vmrescue/x/repair-disk0.qcow2"),
            ("vdb", "/run/vmrescue/x/repair-disk1.qcow2"),
        ] {
            let d = disk(target);
            let of = |tag: &str| d.children().find(|n| n.has_tag_name(tag)).unwrap();
            assert_eq!(d.attribute("type"), Some("file"), "{out}");
            assert_eq!(of("source").attribute("file"), Some(overlay), "{out}");
            assert_eq!(of("source").attribute("dev"), None, "{out}");
            assert_eq!(of("driver").attribute("type"), Some("qcow2"), "{out}");
        }
        assert_eq!(
            disk("vda")
                .children()
                .find(|n| n.has_tag_name("driver"))
                .unwrap()
                .attribute("cache"),
            Some("none"),
            "the driver's other settings stay"
        );
        assert!(out.contains("<serial>f00ba4</serial>"), "{out}");
        assert!(
            !out.contains("/var/lib/nova/instances/6b4f/disk\""),
            "{out}"
        );
        assert!(!out.contains("/dev/sdb"), "{out}");
        // A backing chain written in the XML gives way to the overlay's.
        let chained = NOVA.replace(
            "<target bus=\"virtio\" dev=\"vda\"/>",
            "<target bus=\"virtio\" dev=\"vda\"/>\n      <backingStore type='file'><format type='raw'/><source file='/base'/></backingStore>",
        );
        let out = rescue_xml(&chained, &r).unwrap();
        assert!(
            !out.contains("backingStore") && !out.contains("/base"),
            "{out}"
        );
        let mut missing = r.clone();
        missing.staged = vec![("vdz".into(), "/o.qcow2".into())];
        assert!(matches!(
            rescue_xml(NOVA, &missing),
            Err(XmlError::Unsupported(m)) if m.contains("vdz")
        ));
    }

    #[test]
    fn a_scratch_disk_gets_a_free_virtio_target() {
        let mut r = rescue(
            BootMethod::Kernel {
                kernel: "/k".into(),
                initrd: "/i".into(),
                cmdline: "console=ttyS0".into(),
            },
            Mode::Repair,
        );
        r.scratch_disk = Some("/run/vmrescue/x/bootcopy-scratch.img".into());
        let out = rescue_xml(NOVA, &r).unwrap();
        let doc = roxmltree::Document::parse(&out).unwrap();
        let disk = doc
            .descendants()
            .find(|n| n.has_tag_name("serial") && n.text() == Some(SCRATCH_SERIAL))
            .and_then(|s| s.parent())
            .expect("the scratch disk");
        let target = disk
            .children()
            .find(|n| n.has_tag_name("target"))
            .and_then(|t| t.attribute("dev"))
            .unwrap();
        let others: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("target"))
            .filter_map(|t| t.attribute("dev"))
            .collect();
        assert_eq!(
            others.iter().filter(|t| **t == target).count(),
            1,
            "{target} is free"
        );
        assert!(target.starts_with("vd"));
        // The late archive's disk beside it: read-only, at another free target.
        r.late_disk = Some("/var/lib/libvirt/images/vmrescue-f-late.img".into());
        let out = rescue_xml(NOVA, &r).unwrap();
        let doc = roxmltree::Document::parse(&out).unwrap();
        let late = doc
            .descendants()
            .find(|n| {
                n.has_tag_name("serial") && n.text() == Some(vmrescue_protocol::paths::LATE_SERIAL)
            })
            .and_then(|s| s.parent())
            .expect("the late disk");
        assert!(late.children().any(|n| n.has_tag_name("readonly")));
        let mut targets: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("target"))
            .filter_map(|t| t.attribute("dev"))
            .collect();
        let all = targets.len();
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), all, "every target once: {targets:?}");
    }

    fn cdrom() -> BootMethod {
        BootMethod::Cdrom {
            iso: "/var/lib/libvirt/images/vmrescue-abc.iso".into(),
        }
    }

    /// Every line of `orig` is still in `new`, in order (the edit only adds and changes values).
    fn keeps_lines(orig: &str, new: &str, changed: &[&str]) {
        let mut rest = new.lines();
        for line in orig
            .lines()
            .filter(|l| !changed.iter().any(|c| l.contains(c)))
        {
            assert!(rest.any(|l| l == line), "line {line:?} lost in:\n{new}");
        }
    }

    #[test]
    fn nova_domain_gets_a_cdrom_first_and_keeps_its_bytes() {
        let out = rescue_xml(NOVA, &rescue(cdrom(), Mode::Repair)).unwrap();
        keeps_lines(NOVA, &out, &["on_reboot", "<log file"]);
        assert!(
            out.contains("    <boot dev='cdrom'/>\n    <boot dev=\"hd\"/>"),
            "{out}"
        );
        assert!(out.contains("<target dev='hda' bus='ide'/>"), "{out}");
        assert!(out.contains("<source file='/var/lib/libvirt/images/vmrescue-abc.iso'/>"));
        assert!(out.contains("<target type='virtio' name='org.vmrescue.agent.0'/>"));
        assert!(out.contains("<on_reboot>destroy</on_reboot>") && !out.contains("restart"));
        assert!(out.contains(
            "<log file=\"/run/vmrescue/instance-00000001/console.log\" append=\"off\"/>"
        ));
        assert!(
            !out.contains("<readonly/>\n    </disk>\n    <disk type=\"block\""),
            "repair: disks stay writable"
        );
        // Still one document, still parseable, the nova metadata untouched.
        let doc = Document::parse(&out).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "domain");
        assert!(out.contains("<nova:name>web-1</nova:name>"));
    }

    #[test]
    fn the_rescue_run_has_acpi_to_power_off() {
        let acpi = |xml: &str| {
            let out = rescue_xml(xml, &rescue(cdrom(), Mode::Check)).unwrap();
            let doc = Document::parse(&out).unwrap();
            let features = doc
                .root_element()
                .children()
                .filter(|n| n.has_tag_name("features"))
                .collect::<Vec<_>>();
            assert_eq!(features.len(), 1, "{out}");
            children(features[0], "acpi").count()
        };
        let head = "<domain type='qemu'><name>p</name><os><type arch='x86_64' machine='pc'>hvm</type></os>";
        let tail = "<devices><disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk></devices></domain>";
        assert_eq!(acpi(&format!("{head}{tail}")), 1, "added");
        assert_eq!(acpi(&format!("{head}<features><pae/></features>{tail}")), 1);
        assert_eq!(
            acpi(&format!("{head}<features><acpi/><apic/></features>{tail}")),
            1
        );
    }

    #[test]
    fn check_mode_makes_virtio_disks_read_only_and_ide_ones_transient() {
        let xml = "<domain type='qemu'><name>p</name><os><type arch='x86_64' machine='pc'>hvm</type></os>\
                   <devices><disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk>\
                   <disk type='file' device='disk'><target dev='hdb'/></disk>\
                   <disk type='file' device='disk'><target dev='sdc' bus='scsi'/></disk></devices></domain>";
        let out = rescue_xml(xml, &rescue(cdrom(), Mode::Check)).unwrap();
        assert_eq!(disk_marks(&out, "vda"), ["target", "readonly"], "{out}");
        assert_eq!(disk_marks(&out, "hdb"), ["target", "transient"], "{out}");
        assert_eq!(disk_marks(&out, "sdc"), ["target", "readonly"], "{out}");
        let repair = rescue_xml(xml, &rescue(cdrom(), Mode::Repair)).unwrap();
        for dev in ["vda", "hdb", "sdc"] {
            assert_eq!(disk_marks(&repair, dev), ["target"], "{repair}");
        }
    }

    /// The child elements of the disk at target `dev` in `xml`.
    fn disk_marks(xml: &str, dev: &str) -> Vec<String> {
        let doc = Document::parse(xml).unwrap();
        let disk = doc
            .descendants()
            .find(|n| {
                n.has_tag_name("disk")
                    && child(*n, "target").and_then(|t| t.attribute("dev")) == Some(dev)
            })
            .unwrap_or_else(|| panic!("no disk {dev} in {xml}"));
        disk.children()
            .filter(|c| c.is_element())
            .map(|c| c.tag_name().name().to_owned())
            .collect()
    }

    #[test]
    fn per_device_boot_order_is_renumbered_never_mixed() {
        let xml = "<domain type='qemu'><name>q</name><os><type arch='x86_64' machine='pc-q35-9.0'>hvm</type></os>\
                   <devices><disk type='file' device='disk'><target dev='sda' bus='sata'/><boot order='1'/></disk>\
                   <interface type='network'><boot order='2'/></interface></devices></domain>";
        let out = rescue_xml(xml, &rescue(cdrom(), Mode::Check)).unwrap();
        assert!(!out.contains("<boot dev="), "{out}");
        assert!(
            out.contains("<boot order='2'/></disk>") || out.contains("<boot order='2'/>"),
            "{out}"
        );
        assert!(out.contains("<boot order='3'/>"), "{out}");
        assert!(
            out.contains("<target dev='sdb' bus='sata'/>"),
            "q35: SATA, next free name: {out}"
        );
        assert!(out.contains("  <boot order='1'/>"), "{out}");
        // Check mode: the guest's SATA disk transient (libvirt refuses a read-only one).
        assert_eq!(
            disk_marks(&out, "sda"),
            ["target", "boot", "transient"],
            "{out}"
        );
        Document::parse(&out).unwrap();
        let with_settings = rescue_xml(
            xml,
            &Rescue {
                settings_iso: Some("/run/s.iso".into()),
                ..rescue(cdrom(), Mode::Check)
            },
        )
        .unwrap();
        assert!(
            with_settings.contains("<source file='/run/s.iso'/>\n  <target dev='sdc' bus='sata'/>"),
            "{with_settings}"
        );
        assert_eq!(
            with_settings.matches("<boot order='1'/>").count(),
            1,
            "{with_settings}"
        );
    }

    #[test]
    fn kernel_boot_uefi_nvram_copy_and_a_missing_serial() {
        let xml = "<domain type='kvm'>\n  <name>u</name>\n  <os firmware='efi'>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    \
                   <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/u_VARS.fd</nvram>\n  </os>\n  <devices/>\n</domain>\n";
        let out = rescue_xml(
            xml,
            &rescue(
                BootMethod::Kernel {
                    kernel: "/img/vmlinuz".into(),
                    initrd: "/img/initramfs.img".into(),
                    cmdline: "console=ttyS0 vmrescue.mode=repair".into(),
                },
                Mode::Repair,
            ),
        )
        .unwrap();
        assert!(
            out.contains("<kernel>/img/vmlinuz</kernel>")
                && out.contains("<cmdline>console=ttyS0 vmrescue.mode=repair</cmdline>"),
            "{out}"
        );
        assert!(
            out.contains("<nvram template='/var/lib/libvirt/qemu/nvram/u_VARS.fd'>/run/vmrescue/x/VARS.fd</nvram>"),
            "the guest's own variables are only the template: {out}"
        );
        assert!(
            out.contains("<log file='/run/vmrescue/instance-00000001/console.log' append='off'/>"),
            "{out}"
        );
        assert!(!out.contains("cdrom"));
        Document::parse(&out).unwrap();
        // With secrets, the settings drive comes as a cdrom (q35: SATA), not on the line.
        let mut with_keys = rescue(
            BootMethod::Kernel {
                kernel: "/img/vmlinuz".into(),
                initrd: "/img/initramfs.img".into(),
                cmdline: "console=ttyS0 vmrescue.settings_drive=1".into(),
            },
            Mode::Check,
        );
        with_keys.settings_iso = Some("/run/s.iso".into());
        let out = rescue_xml(xml, &with_keys).unwrap();
        assert!(
            out.contains("<source file='/run/s.iso'/>") && out.contains("bus='sata'"),
            "{out}"
        );
        Document::parse(&out).unwrap();
    }

    #[test]
    fn non_x86_and_other_hypervisors_are_refused() {
        let arm = "<domain type='kvm'><name>a</name><os><type arch='aarch64' machine='virt'>hvm</type></os><devices/></domain>";
        assert_eq!(
            rescue_xml(arm, &rescue(cdrom(), Mode::Check)),
            Err(XmlError::Arch("aarch64".into()))
        );
        let xen = "<domain type='xen'><name>x</name><os><type>hvm</type></os><devices/></domain>";
        assert!(matches!(
            rescue_xml(xen, &rescue(cdrom(), Mode::Check)),
            Err(XmlError::Hypervisor(_))
        ));
        assert!(matches!(
            rescue_xml("<domain", &rescue(cdrom(), Mode::Check)),
            Err(XmlError::Parse(_))
        ));
        assert!(matches!(
            rescue_xml("<network/>", &rescue(cdrom(), Mode::Check)),
            Err(XmlError::Missing("domain"))
        ));
    }

    #[test]
    fn values_are_escaped() {
        let out = rescue_xml(
            NOVA,
            &Rescue {
                boot: BootMethod::Cdrom {
                    iso: "/a'b&c<d.iso".into(),
                },
                ..rescue(cdrom(), Mode::Check)
            },
        )
        .unwrap();
        assert!(out.contains("/a&apos;b&amp;c&lt;d.iso"), "{out}");
        let doc = Document::parse(&out).unwrap();
        assert!(doc
            .descendants()
            .any(|n| n.attribute("file") == Some("/a'b&c<d.iso")));
    }
}
