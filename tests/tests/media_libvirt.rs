//! The rescue media in libvirt domains shaped like nova's rescues, run by the real libvirtd
//! (`scripts/services.sh` starts it): no channel, the console a pty logged by virtlogd to a
//! file, the report taken back from that log.
//! - legacy rescue: the medium is the first disk (`vda`), the guest's disk the second (`vdb`);
//! - stable-device rescue: the guest's disk keeps `vda`, the medium is added as a SATA cdrom
//!   with boot order 1 (q35).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmrescue_protocol::{console, Mode, Outcome, Report};
use vmrescue_tests::fixture;
use vmrescue_tests::harness;
use vmrescue_tests::virsh::{virsh, URI};
const TIMEOUT: Duration = vmrescue_tests::budgets::RESCUE;

fn require_libvirtd() {
    let out = virsh(&["version"]);
    assert!(
        out.status.success(),
        "libvirtd does not answer on {URI} (start it with scripts/services.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory the QEMU process (libvirt's unprivileged user) can reach.
fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn xml_escape(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}

/// Starts the transient domain `xml`, waits for it to power off, and returns its console log's
/// report.
fn run_domain(name: &str, xml: &str, dir: &Path, log: &Path) -> Report {
    let file = dir.join(format!("{name}.xml"));
    std::fs::write(&file, xml).unwrap();
    let out = virsh(&["create", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "virsh create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let until = Instant::now() + TIMEOUT;
    // A transient domain is gone once it powers off.
    while virsh(&["domstate", name]).status.success() {
        if Instant::now() > until {
            let _ = virsh(&["destroy", name]);
            panic!("{name} did not power off within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = std::fs::read(log).unwrap_or_default();
    console::last_report(&text).unwrap_or_else(|| {
        panic!(
            "no report in {}:\n{}",
            log.display(),
            String::from_utf8_lossy(&text[text.len().saturating_sub(3000)..])
        )
    })
}

fn medium_copy(dir: &Path, src: &Path) -> PathBuf {
    let dest = dir.join(src.file_name().unwrap());
    std::fs::copy(src, &dest).unwrap();
    dest
}

fn domain_xml(name: &str, machine: &str, disks: &str, log: &Path) -> String {
    format!(
        "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>1024</memory>\n  <vcpu>1</vcpu>\n  \
         <os><type arch='x86_64' machine='{machine}'>hvm</type></os>\n  <features><acpi/></features>\n  \
         <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n  <devices>\n{disks}    \
         <serial type='pty'>\n      <log file='{}' append='off'/>\n      <target port='0'/>\n    </serial>\n  \
         </devices>\n</domain>\n",
        xml_escape(log)
    )
}

#[test]
fn nova_legacy_rescue_with_the_disk_image_first() {
    require_libvirtd();
    let dir = shared_dir();
    let image = harness::media_image(Mode::Repair);
    let medium = medium_copy(dir.path(), image.disk_image.as_ref().unwrap());
    let guest = fixture::field_failure(&dir.path().join("guest.img"))
        .unwrap()
        .image;
    let log = dir.path().join("console.log");
    let name = format!("vmrescue-test-legacy-{}", std::process::id());
    let disks = format!(
        "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      \
         <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n    \
         <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
         <source file='{}'/>\n      <target dev='vdb' bus='virtio'/>\n    </disk>\n",
        xml_escape(&medium),
        xml_escape(&guest)
    );
    let r = run_domain(
        &name,
        &domain_xml(&name, "pc", &disks, &log),
        dir.path(),
        &log,
    );
    assert_eq!(r.outcome, Outcome::Repaired, "{:?}", r.warnings);
    assert_eq!(
        r.os.as_ref().unwrap().root_device.as_deref(),
        Some("/dev/vdb")
    );
    assert_eq!(fixture::host_e2fsck(&guest).unwrap(), 0);
}

#[test]
fn nova_stable_device_rescue_with_the_iso_as_a_sata_cdrom_booted_first() {
    require_libvirtd();
    let dir = shared_dir();
    let image = harness::media_image(Mode::Repair);
    let iso = medium_copy(dir.path(), image.iso.as_ref().unwrap());
    let guest = fixture::field_failure(&dir.path().join("guest.img"))
        .unwrap()
        .image;
    let log = dir.path().join("console.log");
    let name = format!("vmrescue-test-stable-{}", std::process::id());
    let disks = format!(
        "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
         <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n      <boot order='2'/>\n    \
         </disk>\n    <disk type='file' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n      \
         <source file='{}'/>\n      <target dev='sda' bus='sata'/>\n      <readonly/>\n      \
         <boot order='1'/>\n    </disk>\n",
        xml_escape(&guest),
        xml_escape(&iso)
    );
    let r = run_domain(
        &name,
        &domain_xml(&name, "q35", &disks, &log),
        dir.path(),
        &log,
    );
    assert_eq!(r.outcome, Outcome::Repaired, "{:?}", r.warnings);
    // The guest keeps its address.
    assert_eq!(
        r.os.as_ref().unwrap().root_device.as_deref(),
        Some("/dev/vda")
    );
    assert_eq!(fixture::host_e2fsck(&guest).unwrap(), 0);
}
