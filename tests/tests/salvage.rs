//! Salvage against real processes holding deleted files: `sh`/`sleep` holders of sparse files
//! (one file shared by two processes) and a real qemu holding a deleted qcow2 disk and its base.
//! (Here rather than in the companion's own tests to share the fixtures' noise and checks.)

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmrescue_companion::salvage::{
    self, Action, GroupKind, Options, OwnerMap, OwnerSpec, Report, TargetKind,
};
use vmrescue_tests::{budgets, fixture};

const MIB: u64 = 1 << 20;

/// Kills and reaps the child when the test ends, however it ends.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Kid {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// A file of `size` bytes with noise at `chunks` (offset, length) and holes elsewhere; returns
/// the data bytes.
fn sparse_file(path: &Path, size: u64, chunks: &[(u64, u64)], seed: u64) -> u64 {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (i, &(off, len)) in chunks.iter().enumerate() {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(&fixture::bytes(seed + i as u64, len as usize))
            .unwrap();
    }
    f.sync_all().unwrap();
    chunks.iter().map(|c| c.1).sum()
}

fn sha256_of(path: &Path) -> String {
    fixture::sha256_file(path).unwrap()
}

/// Waits until `pid` has `paths` open.
fn wait_open(pid: u32, paths: &[&Path]) {
    let deadline = Instant::now() + budgets::SETTLE;
    loop {
        let targets: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if paths.iter().all(|p| targets.iter().any(|t| t == p)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} did not open {paths:?}; it has {targets:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A shell that opens `files` on fds 3.. and then becomes `sleep`, keeping them.
fn hold(files: &[&Path]) -> Kid {
    let script: String = (0..files.len())
        .map(|i| format!("exec {}<\"${}\"; ", i + 3, i + 1))
        .collect::<String>()
        + "exec sleep 600";
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(files)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let kid = Kid(child);
    wait_open(kid.pid(), files);
    kid
}

/// Numeric owners, so the test does not depend on nova users existing here.
fn numeric_owners() -> OwnerMap {
    OwnerMap {
        base_image: OwnerSpec::new("4001", "4002", 0o644),
        disk: OwnerSpec::new("4003", "4004", 0o644),
        console_log: OwnerSpec::new("4005", "4005", 0o660),
        other_file: OwnerSpec::new("4005", "4005", 0o644),
        directory: OwnerSpec::new("4006", "4006", 0o755),
        ..OwnerMap::default()
    }
}

/// Every path under `dir`.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.symlink_metadata().unwrap().is_dir() {
            out.extend(tree(&p));
        }
        out.push(p);
    }
    out.sort();
    out
}

fn file<'a>(r: &'a Report, rel: &str) -> &'a salvage::FileReport {
    r.files()
        .find(|f| f.relative_path == Path::new(rel))
        .unwrap_or_else(|| panic!("{rel} not in the report:\n{}", r.render()))
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    instances: PathBuf,
    /// (relative path, sha256, data bytes, mode, uid, gid) of each file.
    files: Vec<(String, String, u64, u32, u32, u32)>,
    _holders: Vec<Kid>,
    pids: (u32, u32),
}

impl Fixture {
    /// Salvage of its instances directory with numeric owners (no destination yet).
    fn options(&self) -> Options {
        Options {
            instances_dir: self.instances.clone(),
            owners: numeric_owners(),
            ..Options::default()
        }
    }
}

/// `opts` as a dry run.
fn dry_run(opts: &Options) -> Report {
    salvage::run(&Options {
        dry_run: true,
        ..opts.clone()
    })
    .unwrap()
}

const U1: &str = "0b5e1c3a-1111-2222-3333-444455556666";
const U2: &str = "9f0e2d4c-aaaa-bbbb-cccc-ddddeeeeffff";
const BASE: &str = "_base/3f786850e387550fdab836ed7e6dc881de23001b";

/// Two instances and a shared base image, held open by two processes, then purged.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let instances = root.join("instances");
    let disk1 = instances.join(U1).join("disk");
    let console1 = instances.join(U1).join("console.log");
    let base = instances.join(BASE);
    let disk2 = instances.join(U2).join("disk");
    let d1 = sparse_file(
        &disk1,
        256 * MIB,
        &[
            (0, MIB),
            (64 * MIB, 2 * MIB),
            (200 * MIB, MIB),
            (255 * MIB, MIB),
        ],
        1,
    );
    let c1 = sparse_file(&console1, 12_345, &[(0, 12_345)], 9);
    let b = sparse_file(&base, 64 * MIB, &[(4 * MIB, 2 * MIB)], 20);
    let d2 = sparse_file(&disk2, 32 * MIB, &[(16 * MIB, MIB)], 30);
    let a = hold(&[&disk1, &console1, &base]);
    let bk = hold(&[&disk2, &base]);
    let mut files = Vec::new();
    for (rel, data, mode, uid, gid) in [
        (format!("{U1}/disk"), d1, 0o644, 4003, 4004),
        (format!("{U1}/console.log"), c1, 0o660, 4005, 4005),
        (BASE.to_string(), b, 0o644, 4001, 4002),
        (format!("{U2}/disk"), d2, 0o644, 4003, 4004),
    ] {
        let sum = sha256_of(&instances.join(&rel));
        files.push((rel, sum, data, mode, uid, gid));
    }
    // The purge.
    std::fs::remove_dir_all(&instances).unwrap();
    let pids = (a.pid(), bk.pid());
    Fixture {
        _tmp: tmp,
        root,
        instances,
        files,
        _holders: vec![a, bk],
        pids,
    }
}

fn check_recovered(fx: &Fixture, report: &Report, dest_root: &Path) {
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.summary.files, 4, "{}", report.render());
    assert_eq!(report.summary.copied, 4, "{}", report.render());
    for (rel, sum, data, mode, uid, gid) in &fx.files {
        let p = dest_root.join(rel);
        assert_eq!(&sha256_of(&p), sum, "{rel} differs");
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.is_file());
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (*mode, *uid, *gid),
            "{rel}"
        );
        // Holes kept: about the data allocated, not the apparent size.
        let alloc = m.blocks() * 512;
        assert!(
            alloc >= *data && alloc <= data + MIB,
            "{rel}: {alloc} bytes allocated for {data} bytes of data"
        );
        let f = file(report, rel);
        assert_eq!(f.action, Action::Copied);
        assert_eq!(f.sha256.as_deref(), Some(sum.as_str()));
        assert_eq!(f.destination.as_deref(), Some(p.as_path()));
        assert!(f.copied_bytes >= *data && f.copied_bytes <= data + MIB);
        assert_eq!(f.destination_allocated_bytes, Some(alloc));
    }
    // Instance and _base directories are created with the directory owner.
    for d in [U1, U2, "_base"] {
        let m = std::fs::metadata(dest_root.join(d)).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 4006, 4006));
    }
    // No temporary files left over.
    let names: Vec<String> = tree(dest_root)
        .iter()
        .map(|p| p.strip_prefix(dest_root).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        vec![
            U1.to_string(),
            format!("{U1}/console.log"),
            format!("{U1}/disk"),
            U2.to_string(),
            format!("{U2}/disk"),
            "_base".to_string(),
            BASE.to_string(),
        ]
    );
}

#[test]
fn deleted_sparse_files_are_recovered_to_dest() {
    let fx = fixture();
    let dest = fx.root.join("dest");
    std::fs::create_dir(&dest).unwrap();
    let opts = Options {
        dest: Some(dest.clone()),
        ..fx.options()
    };

    // Dry run: the plan, and nothing written.
    let dry = dry_run(&opts);
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        0,
        "dry run wrote"
    );
    assert!(dry.dry_run);
    assert_eq!(dry.summary.would_copy, 4, "{}", dry.render());
    assert_eq!(dry.summary.copied_bytes, 0);
    let groups: Vec<(GroupKind, &str, usize)> = dry
        .groups
        .iter()
        .map(|g| (g.kind, g.name.as_str(), g.files.len()))
        .collect();
    assert_eq!(
        groups,
        vec![
            (GroupKind::Base, &BASE[6..], 1),
            (GroupKind::Instance, U1, 2),
            (GroupKind::Instance, U2, 1),
        ]
    );
    let base = file(&dry, BASE);
    let holder_pids: Vec<u32> = base.holders.iter().map(|h| h.pid).collect();
    let mut want = vec![fx.pids.0, fx.pids.1];
    want.sort();
    assert_eq!(holder_pids, want, "the shared base image is one file");
    assert_eq!(base.size, 64 * MIB);
    assert_eq!(file(&dry, &format!("{U1}/disk")).size, 256 * MIB);
    assert_eq!(
        base.original_path,
        fx.instances.join(BASE),
        "original path without the (deleted) suffix"
    );
    assert!(dry.render().contains("dry run, nothing changed"));

    // The copy.
    let report = salvage::run(&opts).unwrap();
    eprintln!("{}", report.render());
    assert_eq!(report.target, TargetKind::Dest);
    check_recovered(&fx, &report, &dest);
    assert_eq!(report.summary.descriptors, 5);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["summary"]["copied"], 4);
    assert!(report
        .warnings
        .iter()
        .all(|w| !w.contains("is not in /etc/")));
    assert!(
        !fx.instances.exists(),
        "--dest must not touch the instances dir"
    );

    // Again: every destination exists and is left alone.
    let stamp = |rel: &str| {
        let m = std::fs::metadata(dest.join(rel)).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec(), m.size())
    };
    let before: Vec<_> = fx.files.iter().map(|f| stamp(&f.0)).collect();
    let again = salvage::run(&opts).unwrap();
    assert_eq!(again.summary.exists, 4, "{}", again.render());
    assert_eq!(again.summary.copied, 0);
    let after: Vec<_> = fx.files.iter().map(|f| stamp(&f.0)).collect();
    assert_eq!(before, after);
}

#[test]
fn deleted_sparse_files_are_restored_in_place() {
    let fx = fixture();
    let opts = Options {
        restore: true,
        ..fx.options()
    };
    let dry = dry_run(&opts);
    assert_eq!(dry.summary.would_copy, 4);
    assert!(!fx.instances.exists(), "dry run created the instances dir");

    let report = salvage::run(&opts).unwrap();
    assert_eq!(report.target, TargetKind::Restore);
    check_recovered(&fx, &report, &fx.instances);
    // The restored instances dir itself gets the directory owner too.
    let m = std::fs::metadata(&fx.instances).unwrap();
    assert_eq!((m.uid(), m.gid()), (4006, 4006));
    assert!(report.warnings.iter().any(|w| w.contains("hard-reboot")));
    // The restored files are no longer deleted: a new scan finds nothing to restore.
    let again = salvage::run(&opts).unwrap();
    assert_eq!(again.summary.exists, 4, "{}", again.render());
}

#[test]
fn unknown_owner_names_warn_and_the_data_is_still_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let instances = tmp.path().join("instances");
    let disk = instances.join(U1).join("disk");
    sparse_file(&disk, 8 * MIB, &[(MIB, MIB)], 3);
    let sum = sha256_of(&disk);
    let _k = hold(&[&disk]);
    std::fs::remove_file(&disk).unwrap();
    let passwd = tmp.path().join("passwd");
    let group = tmp.path().join("group");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(&group, "root:x:0:\n").unwrap();
    let dest = tmp.path().join("dest");
    let report = salvage::run(&Options {
        instances_dir: instances.clone(),
        dest: Some(dest.clone()),
        owners: OwnerMap {
            passwd_file: passwd,
            group_file: group,
            ..OwnerMap::default()
        },
        ..Options::default()
    })
    .unwrap();
    assert!(report.ok(), "{}", report.render());
    let out = dest.join(U1).join("disk");
    assert_eq!(sha256_of(&out), sum);
    let all = report.warnings.join("\n");
    assert!(all.contains("user \"libvirt-qemu\" is not in"), "{all}");
    assert!(all.contains("group \"kvm\" is not in"), "{all}");
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o644));
}

#[test]
fn qemu_holding_a_deleted_qcow2_disk_and_its_base() {
    if !fixture::has_tool("qemu-system-x86_64") || !fixture::has_tool("qemu-img") {
        eprintln!("skipped: qemu-system-x86_64 or qemu-img missing");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let instances = tmp.path().join("instances");
    let base = instances.join(BASE);
    let disk = instances.join(U1).join("disk");
    sparse_file(&base, 64 * MIB, &[(0, MIB), (40 * MIB, 3 * MIB)], 7);
    // A command that must succeed; what it printed is in the failure.
    let run = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
    let (base_s, disk_s) = (base.to_str().unwrap(), disk.to_str().unwrap());
    run(&[
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base_s, disk_s, "64M",
    ]);
    if fixture::has_tool("qemu-io") {
        run(&[
            "qemu-io",
            "-f",
            "qcow2",
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "write -P 0xcd 32M 2M",
            disk_s,
        ]);
    }
    // A real libvirt domain (type qemu, no OS: it sits in its firmware) whose QEMU holds the
    // disk and its base; libvirt's own `-name guest=...` names it.
    let virsh = |args: &[&str]| {
        Command::new("virsh")
            .args(["-q", "-c", "qemu:///system"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        virsh(&["version"]).status.success(),
        "libvirtd does not answer on qemu:///system (scripts/services.sh starts it)"
    );
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let domain = format!("salvage-test-{}", std::process::id());
    let xml = tmp.path().join("domain.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='qemu'><name>{domain}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features><devices>\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk_s}'/>\
             <backingStore type='file'><format type='raw'/><source file='{base_s}'/></backingStore>\
             <target dev='vda' bus='virtio'/></disk></devices></domain>"
        ),
    )
    .unwrap();
    let o = virsh(&["create", xml.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    struct Gone<'a>(&'a dyn Fn(&[&str]) -> std::process::Output, String);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["destroy", &self.1]);
        }
    }
    let _gone = Gone(&virsh, domain.clone());
    let pid: u32 = std::fs::read_to_string(format!("/run/libvirt/qemu/{domain}.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_open(pid, &[&disk, &base]);
    let (disk_sum, base_sum) = (sha256_of(&disk), sha256_of(&base));
    std::fs::remove_dir_all(&instances).unwrap();

    let report = salvage::run(&Options {
        instances_dir: instances.clone(),
        restore: true,
        suspend: true,
        resume: true,
        owners: numeric_owners(),
        ..Options::default()
    })
    .unwrap();
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.summary.copied, 2, "{}", report.render());
    assert_eq!(sha256_of(&disk), disk_sum);
    assert_eq!(sha256_of(&base), base_sum);
    assert_eq!(file(&report, &format!("{U1}/disk")).pid, pid);
    let m = std::fs::metadata(&disk).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (4003, 4004, 0o644));
    let m = std::fs::metadata(&base).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (4001, 4002, 0o644));

    run(&["qemu-img", "check", "-f", "qcow2", disk_s]);

    // The domain was found from qemu's command line, paused, and resumed.
    eprintln!("{}", report.render());
    assert_eq!(report.domains.len(), 1, "{}", report.render());
    let d = &report.domains[0];
    assert_eq!(
        (d.name.as_str(), d.pids.clone(), d.suspended, d.resumed),
        (domain.as_str(), vec![pid], true, true)
    );
    assert_eq!(d.state_before.as_deref(), Some("running"));
    let state = virsh(&["domstate", &domain]);
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("running"),
        "resumed: {state:?}"
    );
}
