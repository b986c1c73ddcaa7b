//! `vmrescue rescue --domain` against the real libvirtd (`scripts/services.sh` starts it):
//! domains of type `qemu` with broken disks, rescued in check and repair mode; the persistent
//! definition byte-identical before and after; bad input refused with a clear message and the
//! domain left as it was.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use vmrescue_protocol::Mode;
use vmrescue_tests::fixture;
use vmrescue_tests::virsh::{virsh, URI};
use vmrescue_tests::{budgets, harness};

fn inactive_xml(name: &str) -> String {
    let o = virsh(&["dumpxml", "--inactive", name]);
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// A persistent domain of type qemu shaped like nova's (nova metadata, sysinfo, a volume with
/// a `<serial>`) with a broken disk as its only disk; undefined on drop.
struct TestDomain {
    name: String,
    _dir: tempfile::TempDir,
    disk: PathBuf,
    disk_sums: std::collections::BTreeMap<String, String>,
}

impl TestDomain {
    fn new(tag: &str, machine: &str, extra_os: &str) -> TestDomain {
        Self::with_os(tag, machine, "", extra_os, true)
    }

    /// `os_attrs` go on `<os>` (`firmware='efi'`); `persistent: false` creates it transient
    /// (running).
    fn with_os(
        tag: &str,
        machine: &str,
        os_attrs: &str,
        extra_os: &str,
        persistent: bool,
    ) -> TestDomain {
        Self::build(tag, machine, os_attrs, extra_os, "", persistent)
    }

    /// `devices` go after the root disk in `<devices>`.
    fn build(
        tag: &str,
        machine: &str,
        os_attrs: &str,
        extra_os: &str,
        devices: &str,
        persistent: bool,
    ) -> TestDomain {
        Self::build_on(tag, machine, os_attrs, extra_os, devices, persistent, |p| {
            fixture::field_failure(p).unwrap()
        })
    }

    /// With the root disk `root` makes at the path it is given.
    fn build_on(
        tag: &str,
        machine: &str,
        os_attrs: &str,
        extra_os: &str,
        devices: &str,
        persistent: bool,
        root: impl FnOnce(&std::path::Path) -> fixture::Disk,
    ) -> TestDomain {
        let out = virsh(&["version"]);
        assert!(
            out.status.success(),
            "libvirtd does not answer on {URI}: start it with scripts/services.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = root(&dir.path().join("guest.img"));
        let name = format!("vmrescue-test-{tag}-{}", std::process::id());
        let xml = format!(
            "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>1024</memory>\n  <vcpu>1</vcpu>\n  \
             <metadata>\n    <nova:instance xmlns:nova=\"http://openstack.org/xmlns/libvirt/nova/1.1\"><nova:name>web-1</nova:name></nova:instance>\n  </metadata>\n  \
             <sysinfo type='smbios'>\n    <system>\n      <entry name='manufacturer'>OpenStack Foundation</entry>\n      <entry name='product'>OpenStack Nova</entry>\n    </system>\n  </sysinfo>\n  \
             <os{os_attrs}>\n    <type arch='x86_64' machine='{machine}'>hvm</type>\n{extra_os}    <smbios mode='sysinfo'/>\n  </os>\n  <features><acpi/></features>\n  <devices>\n    \
             <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='{}'/>\n      \
             <target dev='vda' bus='virtio'/>\n      <serial>vol-0001</serial>\n{boot}    </disk>\n{devices}  </devices>\n</domain>\n",
            d.image.display(),
            // Without <os><boot dev>, per-device boot order.
            boot = if extra_os.is_empty() { "      <boot order='1'/>\n" } else { "" },
        );
        let file = dir.path().join("domain.xml");
        std::fs::write(&file, xml).unwrap();
        let o = virsh(&[
            if persistent { "define" } else { "create" },
            file.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "virsh define/create: {o:?}");
        TestDomain {
            name,
            disk: d.image,
            disk_sums: d.sums,
            _dir: dir,
        }
    }
}

impl Drop for TestDomain {
    fn drop(&mut self) {
        let _ = Command::new(harness::vmrescue_bin().unwrap())
            .args(["unrescue", "--domain", &self.name])
            .output();
        let _ = virsh(&["destroy", &self.name]);
        let _ = virsh(&["undefine", "--nvram", &self.name]);
    }
}

/// A transient `dir` storage pool in a directory of `mode`; destroyed on drop.
struct TestPool {
    name: String,
    dir: tempfile::TempDir,
}

impl TestPool {
    fn new(tag: &str, mode: u32) -> TestPool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let name = format!("vmrescue-test-{tag}-{}", std::process::id());
        let o = virsh(&[
            "pool-create-as",
            &name,
            "dir",
            "--target",
            dir.path().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{o:?}");
        TestPool { name, dir }
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        let _ = virsh(&["pool-destroy", &self.name]);
    }
}

/// Waits (at most [`budgets::SETTLE`]) for the domain to run its rescue.
fn wait_running(name: &str) {
    let until = std::time::Instant::now() + budgets::SETTLE;
    while !String::from_utf8_lossy(&virsh(&["domstate", name]).stdout).contains("running") {
        assert!(
            std::time::Instant::now() < until,
            "the rescue never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn vmrescue(args: &[&str]) -> (i32, Option<serde_json::Value>, String, String) {
    let out = Command::new(harness::vmrescue_bin().unwrap())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).ok(),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn image_dir() -> String {
    harness::media_image(Mode::Check).dir.display().to_string()
}

fn rescue_domain(name: &str, extra: &[&str]) -> (i32, Option<serde_json::Value>, String, String) {
    let dir = image_dir();
    let limit = budgets::secs(budgets::RESCUE);
    let mut args = vec![
        "rescue",
        "--json",
        "--domain",
        name,
        "--image",
        &dir,
        "--timeout",
        &limit,
    ];
    args.extend_from_slice(extra);
    vmrescue(&args)
}

#[test]
fn check_then_repair_a_domain_leaving_its_definition_byte_identical() {
    let d = TestDomain::new("cr", "pc", "    <boot dev='hd'/>\n");
    let before = inactive_xml(&d.name);
    let sha = fixture::sha256_file(&d.disk).unwrap();

    let (code, report, _, err) = rescue_domain(&d.name, &["--mode", "check"]);
    assert_eq!(code, 1, "{err}");
    let r = report.unwrap();
    assert_eq!(
        (r["mode"].as_str(), r["outcome"].as_str()),
        (Some("check"), Some("unrepaired"))
    );
    assert_eq!(
        fixture::sha256_file(&d.disk).unwrap(),
        sha,
        "check mode wrote to the disk"
    );
    assert!(
        !r["warnings"]
            .to_string()
            .contains("recovered it from the console log"),
        "the report came over the libvirt channel: {r}"
    );
    assert_eq!(inactive_xml(&d.name), before);

    // The ISO's path, asked for: its boot loader starts the rescue kernel it carries (no
    // Secure Boot here).
    let (code, report, _, err) = rescue_domain(&d.name, &["--mode", "repair", "--boot", "cdrom"]);
    assert_eq!(code, 0, "{err}");
    let r = report.unwrap();
    assert_eq!(r["outcome"], "repaired", "{r}");
    let release = r["kernel"].as_str().unwrap_or_default();
    assert!(release.ends_with("-vmrescue"), "{release:?}");
    assert!(err.contains("(repair mode, cdrom)"), "{err}");
    assert_eq!(
        r["disks"][0]["serial"], "vol-0001",
        "the guest's own disk, with its serial"
    );
    assert_eq!(fixture::host_e2fsck(&d.disk).unwrap(), 0);
    let mut untouched = d.disk_sums.clone();
    untouched.remove(fixture::VICTIM);
    untouched.remove("/etc/fstab");
    for (path, sum) in &untouched {
        assert_eq!(
            &fixture::sha256_in_image(&d.disk, path).unwrap(),
            sum,
            "{path}"
        );
    }
    assert_eq!(inactive_xml(&d.name), before, "the definition changed");
    let state = virsh(&["domstate", &d.name]);
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("shut off"),
        "{state:?}"
    );
}

/// The names of the files in `dir`.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A broken ext4 data disk (error state recorded, one file) labelled `label` in `dir`.
fn broken_data_disk(dir: &std::path::Path, label: &str) -> PathBuf {
    let data = dir.join(format!("{label}.img"));
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("records.txt"), "kept\n").unwrap();
    fixture::mkfs_ext4(&data, 32, label, tree.path()).unwrap();
    fixture::debugfs_write(&data, &["ssv state 2", "ssv error_count 1"]).unwrap();
    data
}

/// A `<disk>` of `file` at `target` on `bus`.
fn disk_xml(file: &std::path::Path, target: &str, bus: &str) -> String {
    format!(
        "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
         <source file='{}'/>\n      <target dev='{target}' bus='{bus}'/>\n    </disk>\n",
        file.display()
    )
}

/// The labels of the filesystems a report found.
fn labels(r: &serde_json::Value) -> Vec<String> {
    r["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["label"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_default_boot_is_the_rescue_kernel_and_it_reaches_disks_on_every_bus_the_domain_uses() {
    // q35: data disks on SATA (AHCI) and virtio-scsi beside the virtio root; pc: one on IDE.
    // The rescue kernel has every driver built in; nothing is loaded by the devices' aliases.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sata = broken_data_disk(dir.path(), "sata-data");
    let scsi = broken_data_disk(dir.path(), "scsi-data");
    let ide = broken_data_disk(dir.path(), "ide-data");
    let devices = format!(
        "    <controller type='scsi' model='virtio-scsi'/>\n{}{}",
        disk_xml(&sata, "sda", "sata"),
        disk_xml(&scsi, "sdb", "scsi")
    );
    let d = TestDomain::build("buses", "q35", "", "", &devices, true);
    let before = inactive_xml(&d.name);
    let (code, report, _, err) = rescue_domain(&d.name, &["--mode", "repair"]);
    assert_eq!(code, 0, "{err}");
    let r = report.unwrap();
    assert_eq!(r["outcome"], "repaired", "{r}");
    let release = r["kernel"].as_str().unwrap_or_default();
    assert!(
        release.ends_with("-vmrescue"),
        "the rescue kernel booted, not {release:?}"
    );
    assert!(err.contains("direct kernel boot: rescue kernel"), "{err}");
    let found = labels(&r);
    for (disk, label) in [(&sata, "sata-data"), (&scsi, "scsi-data")] {
        assert!(found.iter().any(|l| l == label), "{label}: {found:?}\n{r}");
        assert_eq!(fixture::host_e2fsck(disk).unwrap(), 0, "{label} repaired");
        assert_eq!(
            fixture::read_in_image(disk, "/records.txt")
                .unwrap()
                .as_deref(),
            Some(&b"kept\n"[..]),
            "{label}"
        );
    }
    assert_eq!(inactive_xml(&d.name), before);

    let pc = TestDomain::build("ide", "pc", "", "", &disk_xml(&ide, "hdb", "ide"), true);
    let sum = fixture::sha256_file(&ide).unwrap();
    let (code, report, _, err) = rescue_domain(&pc.name, &["--mode", "check"]);
    assert_eq!(code, 1, "check mode finds what to repair: {err}");
    let r = report.unwrap();
    assert!(
        r["kernel"]
            .as_str()
            .unwrap_or_default()
            .ends_with("-vmrescue"),
        "{r}"
    );
    assert!(labels(&r).iter().any(|l| l == "ide-data"), "{r}");
    assert_eq!(
        fixture::sha256_file(&ide).unwrap(),
        sum,
        "check mode wrote nothing"
    );
    // An IDE disk cannot be read-only: it was transient, and libvirt's overlay is gone.
    let left: Vec<_> = file_names(dir.path())
        .into_iter()
        .filter(|n| n.contains("TRANSIENT"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn verify_boots_the_repaired_domain_guests_own_os_and_leaves_the_definition_as_it_was() {
    let d = TestDomain::build_on("verify", "q35", "", "", "", true, |p| {
        vmrescue_tests::guest::disk(p, vmrescue_tests::guest::gone_volume_fstab_failing).unwrap();
        fixture::Disk {
            image: p.to_owned(),
            sums: Default::default(),
        }
    });
    let before = inactive_xml(&d.name);
    // The default cdrom boot: the boot-copy disk is named on the settings drive. The repair is
    // staged in overlays the rescue XML points the disk at, and written to it once the guest
    // boots (--rollback-on-regression implies --verify-before).
    let (code, report, _, err) = rescue_domain(
        &d.name,
        &[
            "--mode",
            "repair",
            "--rollback-on-regression",
            "--verify-timeout",
            &budgets::secs(budgets::GUEST_BOOT),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = report.unwrap();
    assert_eq!(r["outcome"], "repaired", "{r:#}");
    let v = &r["verify"];
    assert_eq!(v["method"], "direct_kernel", "{v:#}");
    assert_eq!(
        v["before"]["state"], "emergency",
        "the gone volume, before: {v:#}"
    );
    assert_eq!(v["after"]["state"], "booted", "{v:#}");
    assert_eq!(v["rolled_back"], false, "{v:#}");
    assert!(
        err.contains(&format!(
            "the verified repair is written to {}",
            d.disk.display()
        )),
        "{err}"
    );
    assert_eq!(inactive_xml(&d.name), before, "the definition changed");
    // The commit reached the disk: a plain verify of it boots at once.
    let (code, report, _, err) = rescue_domain(
        &d.name,
        &[
            "--mode",
            "check",
            "--verify",
            "--verify-timeout",
            &budgets::secs(budgets::GUEST_BOOT),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = report.unwrap();
    assert_eq!(r["verify"]["after"]["state"], "booted", "{r:#}");
    assert_eq!(inactive_xml(&d.name), before, "the definition changed");
}

#[test]
fn a_disk_that_cannot_be_staged_refuses_rollback_before_anything_changes() {
    let d = TestDomain::build(
        "nostage",
        "pc",
        "",
        "    <boot dev='hd'/>\n",
        "    <disk type='network' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
         <source protocol='nbd' name='export'><host name='127.0.0.1' port='10809'/></source>\n      \
         <target dev='vdb' bus='virtio'/>\n    </disk>\n",
        true,
    );
    let before = inactive_xml(&d.name);
    let sha = fixture::sha256_file(&d.disk).unwrap();
    let (code, report, _, err) =
        rescue_domain(&d.name, &["--mode", "repair", "--rollback-on-regression"]);
    assert_eq!(code, 2, "{err}");
    assert!(report.is_none());
    assert!(
        err.contains("vdb") && err.contains("cannot be staged") && err.contains(&d.name),
        "{err}"
    );
    assert_eq!(inactive_xml(&d.name), before);
    assert_eq!(fixture::sha256_file(&d.disk).unwrap(), sha);
}

#[test]
fn q35_domain_with_per_device_boot_order_by_direct_kernel_boot_and_start_after() {
    let d = TestDomain::new("q35", "q35", "");
    let before = inactive_xml(&d.name);
    // Dry run: the diff, nothing changed.
    let (code, _, diff, err) = rescue_domain(&d.name, &["--dry-run", "--boot", "kernel"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        diff.contains("+    <kernel>") && diff.contains("org.vmrescue.agent.0"),
        "{diff}"
    );
    assert_eq!(inactive_xml(&d.name), before);
    let (code, report, _, err) = rescue_domain(
        &d.name,
        &["--mode", "repair", "--boot", "kernel", "--start-after"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(report.unwrap()["outcome"], "repaired");
    assert_eq!(inactive_xml(&d.name), before);
    let state = virsh(&["domstate", &d.name]);
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("running"),
        "--start-after: {state:?}"
    );
}

#[test]
fn bad_input_is_refused_clearly_and_the_domain_is_left_as_it_was() {
    let d = TestDomain::new("bad", "pc", "    <boot dev='hd'/>\n");
    let before = inactive_xml(&d.name);

    let (code, _, _, err) = rescue_domain("vmrescue-no-such-domain", &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no domain \"vmrescue-no-such-domain\""),
        "{err}"
    );

    let (code, _, _, err) = vmrescue(&[
        "rescue",
        "--domain",
        &d.name,
        "--connect",
        "qemu+unix:///system?socket=/nonexistent/sock",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot connect to libvirt"), "{err}");

    // A running domain needs --stop or --force.
    let o = virsh(&["start", &d.name]);
    assert!(o.status.success(), "{o:?}");
    let (code, _, _, err) = rescue_domain(&d.name, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is running") && err.contains("--stop"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&virsh(&["domstate", &d.name]).stdout).contains("running"));
    let _ = virsh(&["destroy", &d.name]);

    // A stale state directory from a crashed run: refused until unrescue cleans it.
    let uuid = String::from_utf8(virsh(&["domuuid", &d.name]).stdout)
        .unwrap()
        .trim()
        .to_owned();
    let state = vmrescue_companion::libvirt::state_dir(&uuid);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("original.xml"), &before).unwrap();
    let (code, _, _, err) = rescue_domain(&d.name, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("stale") && err.contains("vmrescue unrescue --domain"),
        "{err}"
    );
    // A second rescue while one holds the lock.
    let lock = std::fs::File::create(state.join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let (code, _, _, err) = rescue_domain(&d.name, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("another rescue"), "{err}");
    drop(lock);
    let (code, _, out, _) = vmrescue(&["unrescue", "--domain", &d.name]);
    assert_eq!(code, 0);
    assert!(out.contains("removed the rescue state"), "{out}");
    assert!(!state.exists());
    // Idempotent.
    let (code, _, out, _) = vmrescue(&["unrescue", "--domain", &d.name]);
    assert!(code == 0 && out.contains("nothing to undo"), "{out}");
    assert_eq!(inactive_xml(&d.name), before);
}

#[test]
fn over_a_remote_tcp_uri_the_media_are_uploaded_to_a_pool_and_the_report_streams_back() {
    let d = TestDomain::new("tcp", "pc", "    <boot dev='hd'/>\n");
    let before = inactive_xml(&d.name);
    let pool = TestPool::new("pool", 0o755);
    let uri = "qemu+tcp://127.0.0.1/system";
    let (code, report, _, err) = rescue_domain(
        &d.name,
        &["--connect", uri, "--pool", &pool.name, "--mode", "repair"],
    );
    assert_eq!(code, 0, "{err}");
    let r = report.unwrap();
    assert_eq!(r["outcome"], "repaired", "{r}");
    assert!(
        !r["warnings"]
            .to_string()
            .contains("recovered it from the console log"),
        "the report came over the stream: {r}"
    );
    let uploaded: Vec<String> = file_names(pool.dir.path());
    // By default the rescue kernel's bzImage (less to upload than its ELF), its core initramfs
    // and the late archive's disk beside it.
    for suffix in ["-vmlinuz-rescue", "-initrd-rescue.cpio", "-late.img"] {
        assert!(
            uploaded
                .iter()
                .any(|n| n.starts_with("vmrescue-") && n.ends_with(suffix)),
            "{suffix}: {uploaded:?}"
        );
    }
    assert!(
        r["kernel"]
            .as_str()
            .unwrap_or_default()
            .ends_with("-vmrescue"),
        "{r}"
    );
    assert!(
        err.contains("rescue kernel") && err.contains("bzImage"),
        "{err}"
    );
    assert_eq!(fixture::host_e2fsck(&d.disk).unwrap(), 0);
    assert_eq!(inactive_xml(&d.name), before);

    // The ISO's path over the same connection: the ISO and a settings drive go to the pool,
    // and the per-run drive is removed afterwards.
    let (code, report, _, err) = rescue_domain(
        &d.name,
        &[
            "--connect",
            uri,
            "--pool",
            &pool.name,
            "--mode",
            "check",
            "--boot",
            "cdrom",
        ],
    );
    assert!(code == 0 || code == 1, "{err}");
    let r = report.unwrap();
    assert_eq!(r["mode"], "check", "{r}");
    assert!(err.contains("(check mode, cdrom)"), "{err}");
    let uploaded: Vec<String> = file_names(pool.dir.path());
    assert!(
        uploaded
            .iter()
            .any(|n| n.starts_with("vmrescue-") && n.ends_with(".iso")),
        "{uploaded:?}"
    );
    assert!(
        !uploaded.iter().any(|n| n.contains("settings")),
        "the per-run settings drive is removed: {uploaded:?}"
    );
    assert_eq!(inactive_xml(&d.name), before);
}

#[test]
fn verify_over_a_remote_uri_boots_the_guest_on_that_host_as_a_transient_domain() {
    let d = TestDomain::build_on(
        "rverify",
        "pc",
        "",
        "    <boot dev='hd'/>\n",
        "",
        true,
        |p| {
            vmrescue_tests::guest::disk(p, vmrescue_tests::guest::gone_volume_fstab).unwrap();
            fixture::Disk {
                image: p.to_owned(),
                sums: Default::default(),
            }
        },
    );
    let before = inactive_xml(&d.name);
    let pool = TestPool::new("rvpool", 0o755);
    let uri = "qemu+tcp://127.0.0.1/system";
    let remote = ["--connect", uri, "--pool", &pool.name];
    // Staging needs overlays on that host: refused before anything changes.
    let (code, _, _, err) = rescue_domain(
        &d.name,
        &[
            &remote[..],
            &["--mode", "repair", "--rollback-on-regression"],
        ]
        .concat(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("remote connection"), "{err}");
    let (code, report, _, err) = rescue_domain(
        &d.name,
        &[
            &remote[..],
            &[
                "--mode",
                "repair",
                "--verify",
                "--verify-timeout",
                &budgets::secs(budgets::GUEST_BOOT),
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    let r = report.unwrap();
    assert_eq!(r["outcome"], "repaired", "{r:#}");
    let v = &r["verify"];
    assert_eq!(v["method"], "direct_kernel", "{v:#}");
    assert_eq!(v["after"]["state"], "booted", "{v:#}");
    assert!(
        !v["after"]["console_tail"].as_array().unwrap().is_empty(),
        "the console came through the stream: {v:#}"
    );
    assert!(err.contains("libvirt domain vmrescue-verify-"), "{err}");
    // Nothing stays on that host: no verify domain, no uploads but the (reusable) rescue media,
    // no transient overlay beside the disk.
    let names = String::from_utf8_lossy(&virsh(&["list", "--all", "--name"]).stdout).into_owned();
    assert!(!names.contains("vmrescue-verify-"), "{names}");
    let uploaded: Vec<String> = file_names(pool.dir.path());
    assert!(
        uploaded.iter().all(|n| n.starts_with("vmrescue-")
            && !n.contains("bootcopy")
            && !n.contains("verify")),
        "{uploaded:?}"
    );
    let beside: Vec<String> = file_names(d.disk.parent().unwrap())
        .into_iter()
        .filter(|n| n.contains("TRANSIENT"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    assert_eq!(fixture::host_e2fsck(&d.disk).unwrap(), 0);
    assert_eq!(inactive_xml(&d.name), before);
}

#[test]
fn uefi_domain_boots_the_rescue_from_a_copy_of_its_nvram_and_a_transient_domain_comes_back() {
    let d = TestDomain::with_os("efi", "q35", " firmware='efi'", "", true);
    let before = inactive_xml(&d.name);
    let (code, report, _, err) = rescue_domain(&d.name, &["--mode", "repair"]);
    assert_eq!(code, 0, "{err}");
    let r = report.unwrap();
    assert_eq!(r["outcome"], "repaired", "{r}");
    assert_eq!(r["firmware"]["type"], "uefi", "{r}");
    // libvirt chose a firmware with Secure Boot on: the ISO's signed chain by default, as the
    // rescue kernel is not signed (asked for by name, it is refused before anything changes).
    assert_eq!(r["firmware"]["secure_boot"], true, "{r}");
    assert!(err.contains("(repair mode, cdrom)"), "{err}");
    assert!(
        !r["kernel"]
            .as_str()
            .unwrap_or("-vmrescue")
            .ends_with("-vmrescue"),
        "{r}"
    );
    let (code, _, _, err) = rescue_domain(&d.name, &["--mode", "check", "--boot", "kernel"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("Secure Boot") && err.contains("--boot cdrom"),
        "{err}"
    );
    assert_eq!(inactive_xml(&d.name), before);
    assert_eq!(inactive_xml(&d.name), before);
    // The guest's own variables file was never created or written by the rescue.
    let nvram = before
        .split("<nvram")
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .unwrap_or_default()
        .to_owned();
    assert!(
        nvram.is_empty() || !std::path::Path::new(&nvram).exists(),
        "{nvram} was touched"
    );

    // Without Secure Boot: the rescue kernel by default, started by the firmware's EFI stub.
    let plain = TestDomain::with_os(
        "efi-nosb",
        "q35",
        " firmware='efi'",
        "    <firmware><feature enabled='no' name='secure-boot'/></firmware>\n",
        true,
    );
    let (code, report, _, err) = rescue_domain(&plain.name, &["--mode", "repair"]);
    assert_eq!(code, 0, "{err}");
    let r = report.unwrap();
    assert_eq!(r["outcome"], "repaired", "{r}");
    assert_eq!(
        (&r["firmware"]["type"], &r["firmware"]["secure_boot"]),
        (&serde_json::json!("uefi"), &serde_json::json!(false)),
        "{r}"
    );
    assert!(
        r["kernel"]
            .as_str()
            .unwrap_or_default()
            .ends_with("-vmrescue"),
        "{r}"
    );
    assert!(
        err.contains("rescue kernel") && err.contains("EFI stub"),
        "{err}"
    );

    // A transient domain (running): --force, and it is there again afterwards.
    let t = TestDomain::with_os("transient", "pc", "", "    <boot dev='hd'/>\n", false);
    let (code, _, _, err) = rescue_domain(&t.name, &["--mode", "check"]);
    assert_eq!(code, 2, "running: refused without --stop/--force: {err}");
    let (code, report, _, err) = rescue_domain(&t.name, &["--mode", "check", "--force"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(report.unwrap()["mode"], "check");
    assert!(
        String::from_utf8_lossy(&virsh(&["domstate", &t.name]).stdout).contains("running"),
        "the transient domain is back"
    );
}

#[test]
fn a_guest_that_never_reports_and_vmrescue_killed_mid_rescue_leave_the_definition_intact() {
    let d = TestDomain::new("kill", "pc", "    <boot dev='hd'/>\n");
    let before = inactive_xml(&d.name);

    // No report within the time limit: exit 3, the console log named, the run stopped. The
    // rescue media's init is not the agent, so no report can come whatever the limit, and the
    // signals below always land mid-rescue.
    let silent = harness::silent_media_image().dir.display().to_string();
    let (code, _, _, err) = vmrescue(&[
        "rescue",
        "--domain",
        &d.name,
        "--image",
        &silent,
        "--mode",
        "check",
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 3, "{err}");
    let log = err
        .split("console log: ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_default();
    assert!(
        log.ends_with("console.log") && std::path::Path::new(log).exists(),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&virsh(&["domstate", &d.name]).stdout).contains("shut off"));
    assert_eq!(inactive_xml(&d.name), before);

    // Ctrl-C while the rescue runs: the run is stopped, the definition comes back, exit 3, and
    // nothing stale is left (the next rescue is not refused).
    let child = Command::new(harness::vmrescue_bin().unwrap())
        .args([
            "rescue", "--domain", &d.name, "--image", &silent, "--mode", "check",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&d.name);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    assert!(String::from_utf8_lossy(&virsh(&["domstate", &d.name]).stdout).contains("shut off"));
    assert_eq!(inactive_xml(&d.name), before);

    // SIGKILL while the rescue runs.
    let mut child = Command::new(harness::vmrescue_bin().unwrap())
        .args([
            "rescue", "--domain", &d.name, "--image", &silent, "--mode", "repair",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_running(&d.name);
    child.kill().unwrap();
    child.wait().unwrap();
    // The run dies with vmrescue's connection; the definition never changed.
    let until = std::time::Instant::now() + budgets::SETTLE;
    while String::from_utf8_lossy(&virsh(&["domstate", &d.name]).stdout).contains("running") {
        assert!(
            std::time::Instant::now() < until,
            "the rescue run outlived vmrescue"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(inactive_xml(&d.name), before);
    let (code, _, _, err) = rescue_domain(&d.name, &["--mode", "repair"]);
    assert_eq!(code, 2, "a stale state is refused: {err}");
    assert!(err.contains("unrescue"), "{err}");
    let (code, _, out, _) = vmrescue(&["unrescue", "--domain", &d.name]);
    assert_eq!(code, 0);
    assert!(out.contains("removed the rescue state"), "{out}");
    let (code, report, _, err) = rescue_domain(&d.name, &["--mode", "repair"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report.unwrap()["outcome"], "repaired");
    assert_eq!(inactive_xml(&d.name), before);
}

#[test]
fn two_domains_rescued_at_once_share_nothing() {
    let a = TestDomain::new("para", "pc", "    <boot dev='hd'/>\n");
    let b = TestDomain::new("parb", "pc", "    <boot dev='hd'/>\n");
    let (xa, xb) = (inactive_xml(&a.name), inactive_xml(&b.name));
    let runs: Vec<_> = [a.name.clone(), b.name.clone()]
        .into_iter()
        .map(|n| std::thread::spawn(move || rescue_domain(&n, &["--mode", "repair"])))
        .collect();
    for r in runs {
        let (code, report, _, err) = r.join().unwrap();
        assert_eq!(code, 0, "{err}");
        assert_eq!(report.unwrap()["outcome"], "repaired");
    }
    for (d, x) in [(&a, xa), (&b, xb)] {
        assert_eq!(fixture::host_e2fsck(&d.disk).unwrap(), 0);
        assert_eq!(inactive_xml(&d.name), x);
    }
}

#[test]
fn a_disk_the_qemu_process_cannot_read_is_a_clear_host_error() {
    let d = TestDomain::new("perm", "pc", "    <boot dev='hd'/>\n");
    let before = inactive_xml(&d.name);
    // libvirt hands the file to QEMU's own user, who may not read mode 000.
    std::fs::set_permissions(&d.disk, std::fs::Permissions::from_mode(0o000)).unwrap();
    let (code, report, _, err) = rescue_domain(&d.name, &["--mode", "check"]);
    std::fs::set_permissions(&d.disk, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(report.is_none());
    assert!(
        err.contains("failed to start the rescue") && err.contains(&*d.disk.to_string_lossy()),
        "{err}"
    );
    assert_eq!(inactive_xml(&d.name), before);
    // Nothing stale left: the next rescue runs.
    let (code, _, _, err) = rescue_domain(&d.name, &["--mode", "check"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn an_iso_the_qemu_process_cannot_read_is_a_clear_host_error() {
    let d = TestDomain::new("noread", "pc", "    <boot dev='hd'/>\n");
    let before = inactive_xml(&d.name);
    // A pool whose directory QEMU's own user cannot enter: the uploaded ISO is unreadable to it.
    let pool = TestPool::new("noread", 0o700);
    let (code, report, _, err) = rescue_domain(
        &d.name,
        &[
            "--connect",
            "qemu+tcp://127.0.0.1/system",
            "--pool",
            &pool.name,
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(report.is_none());
    assert!(err.contains("failed to start the rescue"), "{err}");
    assert_eq!(inactive_xml(&d.name), before);
    assert!(!String::from_utf8_lossy(&virsh(&["domstate", &d.name]).stdout).contains("running"));
}

#[test]
fn lvm_and_luks_disks_are_opened_by_both_boots_with_the_key_on_the_settings_drive_only() {
    // Beside the broken root: an LVM physical volume (vg0: root, home) and a LUKS container
    // holding /home's filesystem. The host's kernel has device-mapper as modules: the rescue
    // loads them when it finds such a container.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let g = vmrescue_tests::layouts::LvmGuest::make(dir.path()).unwrap();
    const KEY: &[u8] = b"correct horse battery staple";
    let home = fixture::broken_ext4(dir.path(), "home.fs", "home", &[("a.txt", b"a\n")]).unwrap();
    let luks = dir.path().join("luks.img");
    let uuid = vmrescue_tests::layouts::luks_with(&luks, KEY, &home).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, KEY).unwrap();
    let key_arg = format!("{uuid}={}", key.display());
    let disk = |path: &std::path::Path, dev: &str| {
        format!(
            "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='{}'/>\n      <target dev='{dev}' bus='virtio'/>\n    </disk>\n",
            path.display()
        )
    };
    let devices = disk(&g.pv, "vdb") + &disk(&luks, "vdc");
    let d = TestDomain::build("layers", "pc", "", "    <boot dev='hd'/>\n", &devices, true);
    let before = [
        fixture::sha256_file(&g.pv).unwrap(),
        fixture::sha256_file(&luks).unwrap(),
    ];
    // Access rides the same drive: `openssl passwd -6 -salt domsalt throwaway`.
    const HASH: &str = "$6$domsalt$LMnhO0LfDNcYN4rr/M3q0ZvjfIsNOSz2Vs/03tqmB6Nc4IM82RIADWfY8vQCjeYYA50wUaI7.srkAZr6KD04Q1";
    for boot in [&["--boot", "cdrom"][..], &[][..]] {
        let mut extra = vec![
            "--mode",
            "check",
            "--luks-key",
            &key_arg,
            "--root-password-hash",
            HASH,
            // Two OS roots (vda, and vg0's): --root chooses, with --domain as with --disk.
            "--root",
            "/dev/vda",
        ];
        extra.extend_from_slice(boot);
        let (code, report, stdout, err) = rescue_domain(&d.name, &extra);
        assert_eq!(code, 1, "{boot:?}: {err}");
        let r = report.unwrap_or_else(|| panic!("{boot:?}: no report: {err}"));
        let layers = r["layers"].as_array().unwrap();
        let kind = |k: &str| {
            layers
                .iter()
                .find(|l| l["kind"] == k)
                .unwrap_or_else(|| panic!("{boot:?}: no {k} layer: {r:#}"))
        };
        let lvm = kind("lvm");
        assert_eq!(lvm["state"], "active", "{boot:?}: {lvm:#}");
        assert_eq!(
            lvm["devices"],
            serde_json::json!(["/dev/mapper/vg0-home", "/dev/mapper/vg0-root"])
        );
        let l = kind("luks");
        assert_eq!(l["state"], "active", "{boot:?}: {l:#} {:#}", r["warnings"]);
        assert_eq!(l["read_only"], true);
        let key_text = std::str::from_utf8(KEY).unwrap();
        assert!(!stdout.contains(key_text) && !err.contains(key_text));
        assert_eq!(
            r["os"]["root_device"], "/dev/vda",
            "{boot:?}: {:#}",
            r["os"]
        );
        assert!(
            r["plan"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["path"] == "/etc/shadow"
                    && c["detail"].as_str().unwrap().contains("root password set")),
            "{boot:?}: {:#}",
            r["plan"]
        );
        assert!(!stdout.contains("domsalt") && !err.contains("domsalt"));
    }
    assert_eq!(
        [
            fixture::sha256_file(&g.pv).unwrap(),
            fixture::sha256_file(&luks).unwrap()
        ],
        before,
        "check mode wrote to a disk"
    );
}
