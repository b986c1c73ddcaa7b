//! A power cut mid-repair: QEMU is killed with SIGKILL at points of a repair (in the e2fsck
//! pass, between guest-fix writes, before the report is saved, at a random moment), then the
//! same disk is rescued again. The second run completes; the filesystem is clean; every user
//! file is byte-identical; every file the rescue writes was, after the cut, either its old or
//! its new content (never partial); the first run's backups are still there; and a temporary
//! file a stopped run left is removed and reported. More kill points: `bench/power-cut.sh`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vmrescue_tests::fixture::{self, Disk};
use vmrescue_tests::harness;
use vmrescue_tests::live::{self, Live};

const LIMIT: Duration = vmrescue_tests::budgets::RESCUE;
/// Files the repair writes: their content after a cut must be the old or the new one.
const WRITTEN: &[&str] = &["/etc/fstab", "/etc/shadow", "/etc/gshadow", "/etc/hosts"];
/// A temporary file "left by an earlier stopped run", planted in the broken disk.
const LEFTOVER: &str = ".fstab.vmrescue-tmp.1.1764590000000000000.0";

/// The broken disk: the field failure (fsck damage, missing mount points, an fstab to fix)
/// with account files and hosts lost, and a leftover temporary file.
fn broken(image: &Path) -> Disk {
    let disk = fixture::field_failure(image).unwrap();
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"half a fstab").unwrap();
    fixture::debugfs_write(
        image,
        &[
            "rm /etc/shadow",
            "rm /etc/gshadow",
            "rm /etc/hosts",
            &format!("write {} /etc/{LEFTOVER}", junk.path().display()),
        ],
    )
    .unwrap();
    disk
}

/// What an uninterrupted repair of the broken disk writes, and how many changes it applies.
struct Reference {
    written: BTreeMap<&'static str, Option<Vec<u8>>>,
    /// The reference disk's filesystem UUID (a rebuilt fstab names the root by it).
    uuid: String,
    applies: usize,
    /// From the agent's start to its report being saved.
    elapsed: Duration,
}

fn reference() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let disk = broken(&dir.path().join("reference.img"));
        let mut live = Live::start(&[&disk.image], "repair", &[]).unwrap();
        live.wait_for(" up on kernel", 1, LIMIT).unwrap();
        let started = Instant::now();
        let _ = live.wait_for("report saved", 1, LIMIT);
        let applies = live.seen.iter().filter(|l| l.contains("] apply ")).count();
        let run = live.finish(LIMIT).unwrap();
        assert_eq!(run.code, 0, "{}", run.stderr);
        let changes = run.report.as_ref().unwrap()["changes"].as_array().unwrap();
        assert!(
            changes
                .iter()
                .any(|c| c["kind"] == "remove_temp" && c["path"] == format!("/etc/{LEFTOVER}")),
            "the leftover is removed and reported: {changes:#?}"
        );
        Reference {
            written: WRITTEN
                .iter()
                .map(|p| (*p, fixture::read_in_image(&disk.image, p).unwrap()))
                .collect(),
            applies,
            elapsed: started.elapsed(),
            uuid: fixture::ext_uuid(&disk.image).unwrap(),
        }
    })
}

/// Where the cut comes.
enum Cut {
    /// `delay` after the `nth` stderr line containing `needle`.
    After {
        needle: &'static str,
        nth: usize,
        delay: Duration,
    },
    /// The `nth` apply line from the end (1: the last one, just before the report is saved).
    BeforeReport,
    /// At a random moment between the agent's start and its report being saved (as long as
    /// the reference run took).
    Random,
}

fn backups(image: &Path) -> Vec<String> {
    fixture::list_in_image(image, "/etc")
        .unwrap()
        .into_iter()
        .filter(|n| n.contains(".vmrescue-") && !n.contains("vmrescue-tmp"))
        .collect()
}

impl Reference {
    /// What the repair writes to `path` on a disk whose filesystem UUID is `uuid`.
    fn new_content(&self, path: &str, uuid: &str) -> Option<Vec<u8>> {
        self.written[path].as_ref().map(|b| {
            String::from_utf8_lossy(b)
                .replace(&self.uuid, uuid)
                .into_bytes()
        })
    }
}

fn power_cut(name: &str, cut: Cut) {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    let disk = broken(&dir.path().join(format!("{name}.img")));
    let uuid = fixture::ext_uuid(&disk.image).unwrap();
    let original: BTreeMap<&str, Option<Vec<u8>>> = WRITTEN
        .iter()
        .map(|p| (*p, fixture::read_in_image(&disk.image, p).unwrap()))
        .collect();

    let mut first = Live::start(&[&disk.image], "repair", &[]).unwrap();
    first.wait_for(" up on kernel", 1, LIMIT).unwrap();
    let (needle, nth, delay) = match cut {
        Cut::After { needle, nth, delay } => (needle, nth, delay),
        Cut::BeforeReport => ("] apply ", r.applies.max(1), Duration::ZERO),
        Cut::Random => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64;
            let ms = nanos % (r.elapsed.as_millis() as u64).max(1);
            eprintln!("{name}: cutting {ms} ms after the agent came up");
            (" up on kernel", 1, Duration::from_millis(ms))
        }
    };
    let _ = first.wait_for(needle, nth, LIMIT);
    std::thread::sleep(delay);
    for q in first.qemu_pids() {
        live::kill9(q).unwrap();
    }
    let cut_run = first.finish(LIMIT).unwrap();
    eprintln!("{name}: the cut run ended with {}", cut_run.code);

    // After the cut, as the next mount would see it: old or new, never partial.
    let settled = dir.path().join("settled.img");
    fixture::settled_copy(&disk.image, &settled).unwrap();
    for p in WRITTEN {
        let now = fixture::read_in_image(&settled, p).unwrap();
        assert!(
            now == original[p] || now == r.new_content(p, &uuid),
            "{name}: {p} is neither its old nor its new content after the cut: {:?}",
            now.map(|b| String::from_utf8_lossy(&b).into_owned())
        );
    }
    let first_backups = backups(&settled);
    std::fs::remove_file(&settled).unwrap();

    let second = harness::rescue(&[&disk.image], "repair", &[]).unwrap();
    assert_eq!(
        second.code, 0,
        "{name}: {}\n{}",
        second.stderr, second.stdout
    );
    let outcome = second.field("/outcome");
    assert!(
        outcome == "repaired" || outcome == "clean",
        "{name}: {outcome}"
    );
    let report = second.report.as_ref().unwrap();
    assert!(
        report["filesystems"][0]["fsck"]["status"].is_string(),
        "{name}: the second run says what fsck found: {report:#}"
    );
    assert_eq!(fixture::host_e2fsck(&disk.image).unwrap(), 0, "{name}");
    for (path, sum) in &disk.sums {
        if WRITTEN.contains(&path.as_str()) {
            continue;
        }
        assert_eq!(
            &fixture::sha256_in_image(&disk.image, path).unwrap(),
            sum,
            "{name}: {path} changed"
        );
    }
    for p in WRITTEN {
        assert_eq!(
            fixture::read_in_image(&disk.image, p).unwrap(),
            r.new_content(p, &uuid),
            "{name}: {p} after the second run"
        );
    }
    let after = backups(&disk.image);
    for b in &first_backups {
        assert!(
            after.contains(b),
            "{name}: backup {b} of the cut run is gone"
        );
    }
    let etc = fixture::list_in_image(&disk.image, "/etc").unwrap();
    assert!(
        !etc.iter().any(|n| n.contains("vmrescue-tmp")),
        "{name}: temporary files left: {etc:?}"
    );
}

#[test]
fn cut_during_the_e2fsck_pass() {
    power_cut(
        "fsck",
        Cut::After {
            needle: "] fsck ",
            nth: 1,
            delay: Duration::from_millis(200),
        },
    );
}

#[test]
fn cut_between_guest_fix_writes() {
    power_cut(
        "writes",
        Cut::After {
            needle: "] apply ",
            nth: 2,
            delay: Duration::ZERO,
        },
    );
}

#[test]
fn cut_before_the_report_is_saved() {
    power_cut("report", Cut::BeforeReport);
}

/// `VMRESCUE_SOAK_CUTS` random cuts (1 unless the soak script asks for more).
#[test]
fn cut_at_a_random_moment() {
    let n: usize = std::env::var("VMRESCUE_SOAK_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for i in 0..n {
        power_cut(&format!("random-{i}"), Cut::Random);
    }
}
