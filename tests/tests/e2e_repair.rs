//! End-to-end repair matrix: each scenario is a broken guest disk made from scratch (mkfs -d,
//! debugfs, dd), rescued under QEMU first in check mode (which must report the problem and
//! leave every byte as it was) and then in repair mode (which must fix it). Afterwards the host's
//! own checker agrees, and every user file outside a damaged inode keeps its checksum.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vmrescue_tests::fixture::{self, VICTIM};
use vmrescue_tests::harness::{self, Run};

/// A scenario's disks, in attach order.
struct Scenario {
    _dir: tempfile::TempDir,
    disks: Vec<PathBuf>,
    /// Per disk: guest path -> sha256 of files that must survive.
    sums: Vec<BTreeMap<String, String>>,
}

impl Scenario {
    fn paths(&self) -> Vec<&Path> {
        self.disks.iter().map(PathBuf::as_path).collect()
    }

    fn intact(&self) {
        for (disk, sums) in self.disks.iter().zip(&self.sums) {
            for (path, sum) in sums {
                assert_eq!(
                    &fixture::sha256_in_image(disk, path).unwrap(),
                    sum,
                    "{path} changed on {}",
                    disk.display()
                );
            }
        }
    }

    fn image_sums(&self) -> Vec<String> {
        self.disks
            .iter()
            .map(|d| fixture::sha256_file(d).unwrap())
            .collect()
    }
}

/// One root disk from a tree that `shape` may alter, then `damage` on the image.
fn root_scenario(fstab: &str, shape: impl FnOnce(&Path), damage: impl FnOnce(&Path)) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let mut sums = fixture::os_tree_with_fstab(&tree, fstab).unwrap();
    shape(&tree);
    sums.retain(|p, _| tree.join(p.trim_start_matches('/')).exists());
    let img = dir.path().join("root.img");
    fixture::mkfs_ext4(&img, 64, "guestroot", &tree).unwrap();
    damage(&img);
    Scenario {
        _dir: dir,
        disks: vec![img],
        sums: vec![sums],
    }
}

const FSTAB: &str = "LABEL=guestroot / ext4 errors=remount-ro 0 1\n";

fn report(run: &Run) -> &Value {
    run.report
        .as_ref()
        .unwrap_or_else(|| panic!("no report\nstderr: {}", run.stderr))
}

fn kinds_and_paths(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Check mode: reports, changes nothing (not one byte of any disk).
fn check(s: &Scenario, want_outcome: &str) -> Run {
    let before = s.image_sums();
    let run = harness::rescue(&s.paths(), "check", &[]).unwrap();
    assert_eq!(
        run.field("/outcome"),
        want_outcome,
        "stderr: {}",
        run.stderr
    );
    assert_eq!(report(&run)["changes"], serde_json::json!([]));
    assert_eq!(report(&run).get("report_file"), None);
    assert_eq!(s.image_sums(), before, "check mode changed a disk");
    run
}

fn repair(s: &Scenario, want_outcome: &str) -> Run {
    let run = harness::rescue(&s.paths(), "repair", &[]).unwrap();
    assert_eq!(
        run.field("/outcome"),
        want_outcome,
        "stderr: {}\nreport: {:#}",
        run.stderr,
        report(&run)
    );
    run
}

/// The report saved on the root matches the one the host received.
fn saved_report_matches(image: &Path, run: &Run) {
    let file = run.field("/report_file");
    let path = file.split_once(':').expect("device:path").1;
    let saved = fixture::read_in_image(image, path)
        .unwrap()
        .unwrap_or_else(|| panic!("{path} not on the root"));
    let saved: Value = serde_json::from_slice(&saved).unwrap();
    for key in ["outcome", "mode", "changes", "plan", "filesystems"] {
        assert_eq!(saved[key], report(run)[key], "{key} differs in {path}");
    }
}

fn host_clean(image: &Path) {
    assert_eq!(fixture::host_e2fsck(image).unwrap(), 0, "host e2fsck -fn");
}

#[test]
fn journal_abort_error_state() {
    let s = root_scenario(
        FSTAB,
        |_| {},
        |img| {
            fixture::debugfs_write(
                img,
                &[
                    "ssv state 2",
                    "ssv error_count 5",
                    "ssv first_error_func ext4_journal_check_start",
                ],
            )
            .unwrap()
        },
    );
    let run = check(&s, "unrepaired");
    assert_eq!(run.field("/filesystems/0/state_before"), "errors");
    assert_eq!(run.field("/filesystems/0/error_count_before"), "5");
    let run = repair(&s, "repaired");
    assert_eq!(run.field("/filesystems/0/state_after"), "clean");
    // A healthy tree needs no guest fix: only fsck and the saved report.
    assert_eq!(report(&run)["plan"], serde_json::json!([]));
    assert_eq!(
        kinds_and_paths(&report(&run)["changes"]),
        [
            ("fsck".to_owned(), "/dev/vda".to_owned()),
            (
                "report".into(),
                run.field("/report_file").split_once(':').unwrap().1.into()
            )
        ]
    );
    host_clean(&s.disks[0]);
    s.intact();
    saved_report_matches(&s.disks[0], &run);
}

#[test]
fn damaged_inodes() {
    let mut s = root_scenario(
        FSTAB,
        |_| {},
        |img| {
            fixture::debugfs_write(
                img,
                &[
                    &format!("sif {VICTIM} links_count 9"),
                    "sif /usr/bin/app block[2] 4000000",
                    "clri /var/log/syslog",
                ],
            )
            .unwrap()
        },
    );
    for damaged in [VICTIM, "/usr/bin/app", "/var/log/syslog"] {
        s.sums[0].remove(damaged);
    }
    let run = check(&s, "unrepaired");
    assert_eq!(run.field("/filesystems/0/fsck/status"), "uncorrected");
    let run = repair(&s, "repaired");
    assert_eq!(run.field("/filesystems/0/fsck/status"), "corrected");
    host_clean(&s.disks[0]);
    s.intact();
}

#[test]
fn zeroed_primary_superblock() {
    let s = root_scenario(
        FSTAB,
        |_| {},
        |img| fixture::zero_primary_superblock(img).unwrap(),
    );
    assert_ne!(fixture::host_e2fsck(&s.disks[0]).unwrap(), 0);
    let run = check(&s, "unrepaired");
    let passes = &report(&run)["filesystems"][0]["fsck"]["passes"];
    assert!(
        passes[0]["args"].to_string().contains("\"-b\",\"8193\""),
        "check starts from the backup: {passes}"
    );
    let run = repair(&s, "repaired");
    assert_eq!(run.field("/filesystems/0/state_after"), "clean");
    // The primary is back: the host reads it without help.
    host_clean(&s.disks[0]);
    s.intact();
}

#[test]
fn missing_api_mount_points() {
    let s = root_scenario(
        FSTAB,
        |tree| {
            for d in ["proc", "sys", "run"] {
                std::fs::remove_dir(tree.join(d)).unwrap();
            }
        },
        |_| {},
    );
    let run = check(&s, "unrepaired");
    let planned = kinds_and_paths(&report(&run)["plan"]);
    assert_eq!(
        planned,
        [
            ("mkdir".to_owned(), "/proc".to_owned()),
            ("mkdir".into(), "/sys".into()),
            ("mkdir".into(), "/run".into())
        ]
    );
    let run = repair(&s, "repaired");
    let changes = kinds_and_paths(&report(&run)["changes"]);
    assert_eq!(&changes[..3], &planned[..]);
    let img = &s.disks[0];
    assert_eq!(fixture::mode_in_image(img, "/proc").unwrap(), Some(0o555));
    assert_eq!(fixture::mode_in_image(img, "/sys").unwrap(), Some(0o555));
    assert_eq!(fixture::mode_in_image(img, "/run").unwrap(), Some(0o755));
    host_clean(img);
    s.intact();
    saved_report_matches(img, &run);
}

#[test]
fn etc_removed() {
    let s = root_scenario(
        FSTAB,
        |tree| {
            let osr = std::fs::read(tree.join("etc/os-release")).unwrap();
            std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
            std::fs::write(tree.join("usr/lib/os-release"), osr).unwrap();
            std::fs::remove_dir_all(tree.join("etc")).unwrap();
        },
        |_| {},
    );
    let img = &s.disks[0];
    let uuid = fixture::ext_uuid(img).unwrap();
    let run = check(&s, "unrepaired");
    assert_eq!(run.field("/os/root_device"), "/dev/vda");
    let want: Vec<(String, String)> = [
        ("mkdir", "/etc"),
        ("write_file", "/etc/passwd"),
        ("write_file", "/etc/group"),
        ("write_file", "/etc/shadow"),
        ("write_file", "/etc/gshadow"),
        ("write_file", "/etc/hosts"),
        ("write_file", "/etc/fstab"),
        // /etc was lost: a machine ID (no copy of the guest's own here) and os-release.
        ("write_file", "/etc/machine-id"),
        ("symlink", "/etc/os-release"),
    ]
    .iter()
    .map(|(k, p)| (k.to_string(), p.to_string()))
    .collect();
    assert_eq!(kinds_and_paths(&report(&run)["plan"]), want);
    let run = repair(&s, "repaired");
    let id = fixture::read_in_image(img, "/etc/machine-id")
        .unwrap()
        .unwrap();
    let id = String::from_utf8(id).unwrap();
    assert!(
        id.len() == 33 && id.ends_with('\n') && id[..32].bytes().all(|b| b.is_ascii_hexdigit()),
        "a fresh machine ID: {id:?}"
    );
    let changes = kinds_and_paths(&report(&run)["changes"]);
    assert_eq!(&changes[..want.len()], &want[..]);
    // Every rebuilt file is flagged for review.
    for c in report(&run)["changes"].as_array().unwrap() {
        if c["kind"] == "write_file" {
            assert_eq!(c["review"], true, "{c}");
        }
    }
    let fstab = fixture::read_in_image(img, "/etc/fstab").unwrap().unwrap();
    let fstab = String::from_utf8(fstab).unwrap();
    assert!(
        fstab.contains(&format!("UUID={uuid}\t/\text4\terrors=remount-ro\t0\t1\n")),
        "{fstab}"
    );
    let passwd = fixture::read_in_image(img, "/etc/passwd").unwrap().unwrap();
    assert_eq!(passwd, b"root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(
        fixture::mode_in_image(img, "/etc/shadow").unwrap(),
        Some(0o640)
    );
    host_clean(img);
    s.intact();
}

#[test]
fn fstab_with_a_detached_volume_a_kernel_name_and_a_bad_line() {
    let fstab = "/dev/vda / ext4 defaults 0 1\n\
                 UUID=0badc0de-0000-4000-8000-000000000000 /data ext4 defaults 0 2\n\
                 this is not an fstab line\n";
    let mut s = root_scenario(fstab, |_| {}, |_| {});
    s.sums[0].remove("/etc/fstab");
    let img = &s.disks[0];
    let uuid = fixture::ext_uuid(img).unwrap();
    let run = check(&s, "unrepaired");
    let planned = kinds_and_paths(&report(&run)["plan"]);
    assert_eq!(
        planned,
        [
            ("mkdir".to_owned(), "/data".to_owned()),
            ("write_file".into(), "/etc/fstab".into())
        ]
    );
    let run = repair(&s, "repaired");
    let fixed = report(&run)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/etc/fstab")
        .unwrap()
        .clone();
    let backup = fixed["backup"].as_str().unwrap();
    assert!(backup.starts_with("/etc/fstab.vmrescue-"), "{backup}");
    assert_eq!(
        fixture::read_in_image(img, backup).unwrap().unwrap(),
        fstab.as_bytes(),
        "the original is kept"
    );
    let new =
        String::from_utf8(fixture::read_in_image(img, "/etc/fstab").unwrap().unwrap()).unwrap();
    let lines: Vec<&str> = new.lines().collect();
    assert_eq!(lines.len(), 3, "{new}");
    assert_eq!(
        lines[0],
        format!("UUID={uuid}\t/\text4\terrors=remount-ro\t0\t1")
    );
    assert_eq!(
        lines[1],
        "UUID=0badc0de-0000-4000-8000-000000000000\t/data\text4\tdefaults,nofail,x-systemd.device-timeout=10s\t0\t2"
    );
    assert!(
        lines[2].starts_with("# vmrescue: commented out, ")
            && lines[2].ends_with(": this is not an fstab line"),
        "{new}"
    );
    assert_eq!(
        fixed["sha256_after"].as_str().unwrap(),
        fixture::sha256_in_image(img, "/etc/fstab").unwrap()
    );
    assert_eq!(fixture::mode_in_image(img, "/data").unwrap(), Some(0o755));
    host_clean(img);
    s.intact();
}

#[test]
fn root_and_home_on_a_second_disk_attached_first() {
    let dir = tempfile::tempdir().unwrap();
    let home_uuid = "6d1f7c36-2f5e-4f0a-9d0e-7a1b2c3d4e5f";
    let tree = dir.path().join("root");
    let root_sums = fixture::os_tree_with_fstab(
        &tree,
        &format!("LABEL=guestroot / ext4 errors=remount-ro 0 1\nUUID={home_uuid} /home ext4 defaults 0 2\n"),
    )
    .unwrap();
    let root_img = dir.path().join("root.img");
    fixture::mkfs_ext4(&root_img, 64, "guestroot", &tree).unwrap();
    let home_tree = dir.path().join("home");
    std::fs::create_dir_all(home_tree.join("alice")).unwrap();
    let data = fixture::bytes(7, 200_000);
    std::fs::write(home_tree.join("alice/thesis.pdf"), &data).unwrap();
    std::fs::write(home_tree.join("alice/victim"), b"x").unwrap();
    let home_img = dir.path().join("home.img");
    fixture::mkfs_ext4_uuid(&home_img, 32, "home", Some(home_uuid), &home_tree).unwrap();
    fixture::debugfs_write(
        &home_img,
        &["ssv state 2", "sif /alice/victim links_count 4"],
    )
    .unwrap();
    fixture::debugfs_write(&root_img, &["ssv state 2"]).unwrap();
    let mut home_sums = BTreeMap::new();
    home_sums.insert(
        "/alice/thesis.pdf".to_owned(),
        fixture::sha256_in_image(&home_img, "/alice/thesis.pdf").unwrap(),
    );
    let s = Scenario {
        _dir: dir,
        disks: vec![home_img, root_img],
        sums: vec![home_sums, root_sums],
    };
    let run = check(&s, "unrepaired");
    assert_eq!(run.field("/os/root_device"), "/dev/vdb");
    let run = repair(&s, "repaired");
    let fss = report(&run)["filesystems"].as_array().unwrap();
    let home = fss.iter().find(|f| f["device"] == "/dev/vda").unwrap();
    assert_eq!(home["mountpoint"], "/home");
    assert_eq!(home["fsck"]["status"], "corrected");
    assert_eq!(home["state_after"], "clean");
    let root = fss.iter().find(|f| f["device"] == "/dev/vdb").unwrap();
    assert_eq!(root["role"], "root");
    assert_eq!(root["state_after"], "clean");
    for d in &s.disks {
        host_clean(d);
    }
    s.intact();
}

#[test]
fn garbage_disk_check_mode() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("garbage.img");
    std::fs::write(&img, fixture::bytes(11, 8 << 20)).unwrap();
    let s = Scenario {
        _dir: dir,
        disks: vec![img],
        sums: vec![BTreeMap::new()],
    };
    let run = check(&s, "no_os");
    assert_eq!(report(&run)["plan"], serde_json::json!([]));
}

#[test]
fn xfs_root_with_a_dirty_log() {
    use vmrescue_tests::crash::{self, LogState};
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("xfs.img");
    let state = fixture::bytes(21, 150_000);
    let files: Vec<(&str, &[u8])> = vec![
        (
            "etc/os-release",
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        ),
        ("etc/fstab", b"LABEL=dirtyxfs / xfs defaults 0 0\n"),
        ("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
        ("etc/group", b"root:x:0:\n"),
        ("etc/shadow", b"root:*:20000:0:99999:7:::\n"),
        ("etc/gshadow", b"root:*::\n"),
        ("etc/hostname", b"xfs01\n"),
        ("etc/hosts", b"127.0.0.1\tlocalhost\n"),
        ("sbin/init", b"\x7fELF"),
        ("usr/bin/", b""),
        ("var/lib/app/state.bin", &state),
        ("proc/", b""),
        ("sys/", b""),
        ("dev/", b""),
        ("tmp/", b""),
        ("mnt/", b""),
        ("media/", b""),
    ];
    crash::xfs_with_dirty_log(&img, &files).unwrap();
    let s = Scenario {
        _dir: dir,
        disks: vec![img.clone()],
        sums: vec![BTreeMap::new()],
    };

    let run = check(&s, "unrepaired");
    assert_eq!(run.field("/filesystems/0/type"), "xfs");
    assert_eq!(run.field("/filesystems/0/fsck/tool"), "xfs_repair");
    assert_eq!(run.field("/filesystems/0/fsck/status"), "uncorrected");
    assert_eq!(run.field("/filesystems/0/state_before"), "not_clean");
    assert_eq!(crash::xfs_log_state(&img).unwrap(), LogState::Dirty);

    let run = repair(&s, "repaired");
    let fs = &report(&run)["filesystems"][0];
    assert_eq!(fs["fsck"]["status"], "corrected", "{fs:#}");
    assert_eq!(fs["state_after"], "clean");
    let passes: Vec<String> = fs["fsck"]["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["args"][0]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        passes,
        ["xfs_repair", "mount", "xfs_repair"],
        "replayed by mounting, never -L"
    );
    assert!(!fs["fsck"]["passes"].to_string().contains("\"-L\""));
    // The replayed root is found and its missing /run restored.
    assert_eq!(run.field("/os/root_device"), "/dev/vda");
    assert!(kinds_and_paths(&report(&run)["changes"])
        .contains(&("mkdir".to_owned(), "/run".to_owned())));
    // The host agrees, and what was written before the crash survived.
    assert_eq!(crash::xfs_log_state(&img).unwrap(), LogState::Clean);
    let n = crash::xfs_repair(&img, &["-n"]).unwrap();
    assert_eq!(n.code, 0, "host xfs_repair -n: {n:?}");
    assert_eq!(
        crash::xfs_read_file(&img, "/var/lib/app/state.bin")
            .unwrap()
            .as_deref(),
        Some(&state[..])
    );
    assert_eq!(
        crash::xfs_read_file(&img, "/etc/hostname")
            .unwrap()
            .as_deref(),
        Some(&b"xfs01\n"[..])
    );
}

#[test]
fn etc_removed_with_the_operators_reference_etc_and_hostname() {
    let s = root_scenario(
        FSTAB,
        |tree| std::fs::remove_dir_all(tree.join("etc")).unwrap(),
        |_| {},
    );
    let reference = tempfile::tempdir().unwrap();
    std::fs::create_dir(reference.path().join("ssh")).unwrap();
    std::fs::write(
        reference.path().join("passwd"),
        b"root:x:0:0:root:/root:/bin/bash\nops:x:1001:1001::/home/ops:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(
        reference.path().join("ssh/sshd_config"),
        b"PermitRootLogin no\n",
    )
    .unwrap();
    let ref_arg = reference.path().to_str().unwrap();
    let run = harness::rescue(
        &s.paths(),
        "repair",
        &[
            "--reference-etc",
            ref_arg,
            "--hostname",
            "db1",
            "--root",
            "/dev/vda",
        ],
    )
    .unwrap();
    assert_eq!(run.field("/outcome"), "repaired", "stderr: {}", run.stderr);
    let img = &s.disks[0];
    let read = |p: &str| fixture::read_in_image(img, p).unwrap();
    assert_eq!(
        read("/etc/passwd").unwrap(),
        std::fs::read(reference.path().join("passwd")).unwrap(),
        "the reference takes precedence"
    );
    assert_eq!(
        read("/etc/ssh/sshd_config").unwrap(),
        b"PermitRootLogin no\n"
    );
    assert_eq!(read("/etc/hostname").unwrap(), b"db1\n");
    let hosts = String::from_utf8(read("/etc/hosts").unwrap()).unwrap();
    assert!(hosts.contains("127.0.1.1\tdb1\n"), "{hosts}");
    // Rebuilt shadow locks both accounts of the reference passwd.
    let shadow = String::from_utf8(read("/etc/shadow").unwrap()).unwrap();
    assert!(
        shadow.starts_with("root:*:") && shadow.contains("\nops:*:"),
        "{shadow}"
    );
    host_clean(img);
    s.intact();
}

/// Sets the FAT32 "not cleanly unmounted" bit, as a power cut with the ESP mounted leaves it.
fn set_fat_dirty_bit(image: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, 0x41).unwrap();
    f.write_all_at(&[b[0] | 1], 0x41).unwrap();
}

fn tool_ok(cmd: &mut std::process::Command) -> i32 {
    let out = cmd.output().unwrap();
    out.status.code().unwrap_or(-1)
}

#[test]
fn dirty_esp_and_a_btrfs_data_disk() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp.img");
    std::fs::File::create(&esp)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    assert_eq!(
        tool_ok(
            Command::new("mkfs.vfat")
                .args(["-F", "32", "-i", "1234abcd"])
                .arg(&esp)
        ),
        0
    );
    set_fat_dirty_bit(&esp);
    let tree = dir.path().join("root");
    let sums = fixture::os_tree_with_fstab(
        &tree,
        "LABEL=guestroot / ext4 errors=remount-ro 0 1\nUUID=1234-ABCD /boot/efi vfat umask=0077 0 1\n",
    )
    .unwrap();
    let root = dir.path().join("root.img");
    fixture::mkfs_ext4(&root, 48, "guestroot", &tree).unwrap();
    let disk = dir.path().join("disk.img");
    fixture::partitioned_disk(
        &disk,
        100,
        &[
            fixture::Part {
                size_mib: 40,
                gpt_type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                name: "esp",
                content: Some(&esp),
            },
            fixture::Part {
                size_mib: 48,
                gpt_type: fixture::GPT_LINUX_ROOT_X86_64,
                name: "root",
                content: Some(&root),
            },
        ],
    )
    .unwrap();
    let data = dir.path().join("data.img");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    assert_eq!(
        tool_ok(
            Command::new("mkfs.btrfs")
                .args(["-q", "-f", "-L", "data"])
                .arg(&data)
        ),
        0
    );
    let s = Scenario {
        _dir: dir,
        disks: vec![disk.clone(), data.clone()],
        sums: vec![BTreeMap::new(), BTreeMap::new()],
    };
    let _ = sums;

    let run = check(&s, "unrepaired");
    let fss = report(&run)["filesystems"].as_array().unwrap().clone();
    let by_dev = |fss: &[Value], d: &str| fss.iter().find(|f| f["device"] == d).unwrap().clone();
    let efi = by_dev(&fss, "/dev/vda1");
    assert_eq!(
        (efi["type"].as_str(), efi["fsck"]["tool"].as_str()),
        (Some("vfat"), Some("fsck.fat"))
    );
    assert_eq!(efi["fsck"]["status"], "uncorrected");
    assert_eq!(efi["state_before"], "not_clean");
    assert_eq!(efi["mountpoint"], "/boot/efi");
    let btrfs = by_dev(&fss, "/dev/vdb");
    assert_eq!(btrfs["fsck"]["tool"], "btrfs");
    assert_eq!(btrfs["fsck"]["status"], "clean");
    assert_eq!(btrfs["fsck"]["passes"][0]["args"][1], "check");
    assert_eq!(btrfs["fsck"]["passes"][0]["args"][2], "--readonly");
    assert_eq!(run.field("/os/root_device"), "/dev/vda2");

    let run = repair(&s, "repaired");
    let fss = report(&run)["filesystems"].as_array().unwrap().clone();
    assert_eq!(by_dev(&fss, "/dev/vda1")["fsck"]["status"], "corrected");
    assert_eq!(by_dev(&fss, "/dev/vda1")["state_after"], "clean");
    assert_eq!(by_dev(&fss, "/dev/vdb")["fsck"]["status"], "clean");
    assert!(
        !by_dev(&fss, "/dev/vdb")["fsck"]
            .to_string()
            .contains("--repair"),
        "btrfs is never repaired"
    );
    // The host agrees: the ESP is clean now (read back out of the partition).
    let part = report(&run)["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "vda1")
        .unwrap()
        .clone();
    let start = part["start_bytes"].as_u64().unwrap();
    let size = part["size_bytes"].as_u64().unwrap();
    let bytes = std::fs::read(&disk).unwrap();
    let esp_now = s._dir.path().join("esp-after.img");
    std::fs::write(&esp_now, &bytes[start as usize..(start + size) as usize]).unwrap();
    assert_eq!(tool_ok(Command::new("fsck.fat").arg("-n").arg(&esp_now)), 0);
    assert_eq!(
        tool_ok(
            Command::new("btrfs")
                .args(["check", "--readonly"])
                .arg(&data)
        ),
        0
    );
}

#[test]
fn undo_files_put_back_every_block_e2fsck_changed() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("root");
    fixture::os_tree(&tree).unwrap();
    let root = dir.path().join("root.img");
    fixture::mkfs_ext4(&root, 48, "guestroot", &tree).unwrap();
    let data_tree = dir.path().join("data");
    std::fs::create_dir_all(data_tree.join("db")).unwrap();
    std::fs::write(data_tree.join("db/table"), fixture::bytes(3, 100_000)).unwrap();
    std::fs::write(data_tree.join("db/victim"), b"v").unwrap();
    let data = dir.path().join("data.img");
    fixture::mkfs_ext4(&data, 32, "data", &data_tree).unwrap();
    fixture::debugfs_write(
        &data,
        &[
            "ssv state 2",
            "sif /db/victim links_count 5",
            "clri /db/table",
        ],
    )
    .unwrap();
    let damaged = fixture::sha256_file(&data).unwrap();
    let undo = dir.path().join("undo");
    let run = harness::rescue(
        &[&root, &data],
        "repair",
        &["--undo-dir", undo.to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(run.field("/outcome"), "repaired", "stderr: {}", run.stderr);
    let fs = report(&run)["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["device"] == "/dev/vdb")
        .unwrap()
        .clone();
    assert_eq!(fs["fsck"]["status"], "corrected");
    let files: Vec<PathBuf> = fs["fsck"]["undo_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect();
    assert!(!files.is_empty(), "{fs:#}");
    assert!(
        files.iter().all(|f| f.starts_with(&undo) && f.is_file()),
        "{files:?}"
    );
    // The undo disk is not a guest disk.
    assert!(
        !report(&run)["filesystems"]
            .to_string()
            .contains("\"label\":\"vmrescue-undo\""),
        "{:#}",
        report(&run)["filesystems"]
    );
    host_clean(&data);
    assert_ne!(fixture::sha256_file(&data).unwrap(), damaged);
    for f in files.iter().rev() {
        let st = std::process::Command::new("e2undo")
            .arg(f)
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "e2undo {}: {}",
            f.display(),
            String::from_utf8_lossy(&st.stderr)
        );
    }
    assert_eq!(
        fixture::sha256_file(&data).unwrap(),
        damaged,
        "undoing newest first gives back the disk e2fsck started from"
    );
}
