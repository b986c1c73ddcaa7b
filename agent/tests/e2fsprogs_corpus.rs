//! e2fsprogs' own e2fsck regression images (`../shared/corpora/e2fsprogs`, see its README.txt)
//! run through the agent's fsck orchestration ([`vmrescue_agent::fsck::ext`]) with the host's
//! real `/sbin/e2fsck`.
//!
//! Upstream runs every plain `f_*` test the same way (`_harness/run_e2fsck`): gunzip
//! `image.gz` to a temporary file, then `e2fsck -yf` on it twice, recording each exit status
//! (`manifest.tsv`: `pass1_exit`, `pass2_exit`). Tests with their own `script` run something
//! else, so only tests with an `image.gz`, no script and two numeric exits are used.
//!
//! For each selected image, on fresh copies:
//!
//! 1. Control: upstream's two `-yf` passes are replayed. The corpus was recorded with e2fsprogs
//!    1.47.4; the host's e2fsck may be older. Where the control's exits differ from the record,
//!    the record says nothing about this host's e2fsck: the image is a *version difference*,
//!    printed, counted and left out of the assertions below (they must stay a small minority).
//! 2. Repair: [`Mode::Repair`] must end in a status the record allows ([`expected_repair`]).
//! 3. Check: [`Mode::Check`] (one `-f -n` pass) must be `Clean` exactly when `pass1 == 0`,
//!    apart from the images [`CHECK_MODE_DEVIATIONS`] lists (where `-n` and `-yf` disagree on
//!    this host's e2fsck), and must leave every byte of the image as it was (checked for every
//!    image, version differences included).
//!
//! Every e2fsck runs with upstream's test environment ([`UPSTREAM_ENV`]) and a time limit
//! ([`PASS_TIME_LIMIT`]; only [`CHECK_MODE_HANGS`] may reach it). All mismatches are collected
//! and printed as tables before the test fails. The images run one after another: about 10 s
//! in all, half of it the known hang.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use vmrescue_agent::fsck;
use vmrescue_agent::proc::{Exit, Output, RunError};
use vmrescue_protocol::{Fsck, FsckStatus, Mode};

const E2FSCK: &str = "/sbin/e2fsck";

/// The parts of upstream's `_harness/test_config` that can change what e2fsck does or how it
/// exits: no `e2fsck.conf` from the host (`/etc/e2fsck.conf` may set e.g.
/// `broken_system_clock` or change problem answers), a fixed time zone and locale, no blkid
/// cache, no progress bar, no `/etc/mtab` required to decide the image is not mounted, and no
/// libmagic probing. Everything else is cleared. The test checks that `test_config` still
/// exports each of these.
const UPSTREAM_ENV: &[(&str, &str)] = &[
    ("TZ", "GMT0"),
    ("LC_ALL", "C"),
    ("E2FSCK_CONFIG", "/dev/null"),
    ("BLKID_FILE", "/dev/null"),
    ("E2FSPROGS_SKIP_PROGRESS", "yes"),
    ("EXT2FS_NO_MTAB_OK", "yes"),
    ("E2FSPROGS_LIBMAGIC_SUPPRESS", "yes"),
];

/// One e2fsck run may not take longer than this: every pass on these images takes well under
/// 0.1 s, except the known hang ([`CHECK_MODE_HANGS`]), which this limit ends.
const PASS_TIME_LIMIT: Duration = Duration::from_secs(5);

/// Output lines kept per pass (as the agent's own runner keeps the last ones).
const KEEP_LINES: usize = 200;

/// Images whose check-mode status contradicts "`Clean` exactly when `pass1 == 0`" with this
/// host's e2fsck, with the status they give and why. A read-only `-f -n` pass is not a dry run
/// of `-f -y`:
///
/// - work `-yf` does routinely and does not count as a fix (journal replay, the orphan list, a
///   checksum-only rewrite) is skipped by `-n`, which then reports what it left as errors;
/// - a few problems `-n` does not report at all (f_hurd). Those it declines ("Clear? no",
///   "IGNORED") while exiting 0 are read from the output by the policy
///   (`fsck::ext::check_status`) and need no entry here.
///
/// These are limits of what one `-f -n` exit code can say, listed so that any other image
/// contradicting the rule fails the test; an entry that stops deviating fails it too (remove
/// it).
const CHECK_MODE_DEVIATIONS: &[(&str, FsckStatus, &str)] = &[
    (
        "f_journal",
        FsckStatus::Uncorrected,
        "journal replay pending: -n skips it, checks stale metadata, aborts (exit 12)",
    ),
    (
        "f_orphan",
        FsckStatus::Uncorrected,
        "orphan list pending: -n leaves it and reports the orphans as errors",
    ),
    (
        "f_extent_int_bad_csum",
        FsckStatus::Uncorrected,
        "checksum-only rewrite: not a fix for -y, an error for -n",
    ),
    (
        "f_bad_gdt_csum",
        FsckStatus::Uncorrected,
        "group descriptor checksums: -y rewrites them without counting a fix; -n declines (\"Fix? no\")",
    ),
    (
        "f_hurd",
        FsckStatus::Clean,
        "-n does not report the Hurd/filetype feature conflict at all",
    ),
];

/// Images on which this host's `e2fsck -f -n` never finishes, so the check-mode pass is killed
/// at [`PASS_TIME_LIMIT`] (status `Error`, which "Clean exactly when pass1 == 0" allows). On
/// f_misstable (a group's inode table missing) e2fsck 1.47.0 relocates the table although it
/// answered "Relocate? no", every write fails, and it restarts from the beginning forever.
/// Any other pass hitting the time limit fails the test.
const CHECK_MODE_HANGS: &[&str] = &["f_misstable"];

/// Version differences may be at most this percentage of the selected images.
const MAX_VERSION_DIFFERENCES_PERCENT: usize = 15;

/// Fewer selected images than this means the manifest or the corpus is broken.
const MIN_SELECTED: usize = 50;

/// e2fsck exit bits (e2fsck(8)).
const CORRECTED: i32 = 1 | 2;
const UNCORRECTED: i32 = 4;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/e2fsprogs")
}

/// The statuses [`Mode::Repair`] may end in for an image whose two upstream `e2fsck -yf` runs
/// exited `pass1` then `pass2`.
///
/// The orchestration preens (`-f -p`), runs a full `-f -y` pass if preen cannot finish, then
/// verifies with `-f -n`; while the verification finds problems it runs another `-f -y`, at
/// most 2 full passes in all. Preen only ever answers "yes" to problems a full `-y` pass would
/// also fix, so "preen, then a full pass if needed" ends where upstream's first `-yf` ended,
/// and each verification asks what upstream's next `-yf` would find. `pass1` therefore
/// describes the damage found, `pass2` what one full repair left behind:
///
/// | `pass1`                 | `pass2`             | status                                   |
/// |-------------------------|---------------------|------------------------------------------|
/// | 0                       | any                 | `Clean`                                  |
/// | any bit of value >= 8   | any                 | `Error`                                  |
/// | 1..=7                   | 0                   | `Corrected`                              |
/// | 1..=7                   | 1..=3               | `Corrected` or `Uncorrected`             |
/// | 1..=7                   | 4..=7               | `Uncorrected`                            |
/// | 1..=7                   | any bit >= 8        | `Error` or `Uncorrected`                 |
///
/// - `pass1 == 0`: `-yf` found nothing (and changed nothing, so `pass2` only repeats it);
///   preen finds nothing either and the verification passes.
/// - `pass1` with an operational bit (8 e2fsck error, 16 usage, 32 cancelled, 128 library):
///   e2fsck cannot process the image at all; preen and the full pass fail the same way and
///   the orchestration stops with `Error`.
/// - `pass2 == 0`: one full repair leaves the filesystem clean, so the first verification
///   passes; something was repaired (`pass1 != 0`), hence `Corrected`. (`pass1 == 4` with
///   `pass2 == 0`, leftovers the next pass cannot see, does not occur in the corpus.)
/// - `pass2` in 1..=3: the first full repair left problems that a second full repair fixed.
///   Whether the filesystem is then clean is exactly what the record does not say: upstream
///   stops after two passes, while our verification after our second (and last) full pass is
///   a third look. Clean then gives `Corrected`, still damaged gives `Uncorrected`; both are
///   accepted.
/// - `pass2` in 4..=7: even the second full repair leaves problems it cannot fix; the
///   orchestration has no third full pass, so `Uncorrected`.
/// - `pass2` operational: the second full pass fails; the verification after it either fails
///   the same way (`Error`) or still finds the problems (`Uncorrected`). Does not occur in the
///   corpus.
pub fn expected_repair(pass1: i32, pass2: i32) -> &'static [FsckStatus] {
    use FsckStatus::*;
    if pass1 == 0 {
        &[Clean]
    } else if pass1 < 0 || pass1 & !(CORRECTED | UNCORRECTED) != 0 {
        &[Error]
    } else if pass2 == 0 {
        &[Corrected]
    } else if pass2 < 0 || pass2 & !(CORRECTED | UNCORRECTED) != 0 {
        &[Error, Uncorrected]
    } else if pass2 & UNCORRECTED != 0 {
        &[Uncorrected]
    } else {
        &[Corrected, Uncorrected]
    }
}

/// One selected manifest row.
struct Case {
    test: String,
    pass1: i32,
    pass2: i32,
}

/// Tests with an `image.gz`, no script and numeric exits for both passes.
fn select(dir: &Path) -> Vec<Case> {
    let manifest = fs::read_to_string(dir.join("manifest.tsv")).expect("read manifest.tsv");
    let mut rows = manifest.lines();
    let header: Vec<&str> = rows.next().expect("manifest header").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("manifest.tsv has no {name} column"))
    };
    let (test, pass1, pass2, image, has_script) = (
        col("test"),
        col("pass1_exit"),
        col("pass2_exit"),
        col("image"),
        col("has_script"),
    );
    rows.filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("");
            if get(image) != "image.gz" || !get(has_script).is_empty() {
                return None;
            }
            let case = Case {
                test: get(test).to_owned(),
                pass1: get(pass1).parse().ok()?,
                pass2: get(pass2).parse().ok()?,
            };
            dir.join(&case.test)
                .join("image.gz")
                .is_file()
                .then_some(case)
        })
        .collect()
}

/// Runs one e2fsck argv with [`UPSTREAM_ENV`], output merged into a file, killed after
/// [`PASS_TIME_LIMIT`].
fn run_e2fsck(argv: &[&str], log: &Path) -> Result<Output, RunError> {
    let program = argv[0];
    let spawn_err = |e| RunError::Spawn(program.to_owned(), e);
    let out = File::create(log).map_err(spawn_err)?;
    let err = out.try_clone().map_err(spawn_err)?;
    let mut child = Command::new(program)
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/sbin:/usr/sbin:/bin:/usr/bin")
        .envs(UPSTREAM_ENV.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(spawn_err)?;
    let deadline = Instant::now() + PASS_TIME_LIMIT;
    let mut nap = Duration::from_micros(500);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_err)? {
            break status;
        }
        if !timed_out && Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let exit = match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        (None, None) => Exit::Signal(0),
    };
    let text = fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.drain(..lines.len().saturating_sub(KEEP_LINES));
    Ok(Output {
        exit,
        lines,
        timed_out,
    })
}

/// A runner for [`fsck::ext`] over [`run_e2fsck`], counting passes killed at the time limit.
fn runner<'a>(
    log: &'a Path,
    timeouts: &'a mut usize,
) -> impl FnMut(&[&str]) -> Result<Output, RunError> + 'a {
    move |argv: &[&str]| {
        let out = run_e2fsck(argv, log);
        if out.as_ref().is_ok_and(|o| o.timed_out) {
            *timeouts += 1;
        }
        out
    }
}

/// Writes `data` to `path` (replacing it), leaving holes where it is zero: the images are
/// mostly empty, and three copies of each are written.
fn write_sparse(path: &Path, data: &[u8]) {
    const BLOCK: usize = 64 * 1024;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut f = File::create(path).expect("create image copy");
    let mut hole = 0i64;
    for chunk in data.chunks(BLOCK) {
        if chunk == &ZEROS[..chunk.len()] {
            hole += chunk.len() as i64;
            continue;
        }
        if hole > 0 {
            f.seek(SeekFrom::Current(hole)).expect("seek");
            hole = 0;
        }
        f.write_all(chunk).expect("write image copy");
    }
    f.set_len(data.len() as u64).expect("size image copy");
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut data = Vec::new();
    GzDecoder::new(File::open(path).expect("open image.gz"))
        .read_to_end(&mut data)
        .unwrap_or_else(|e| panic!("gunzip {}: {e}", path.display()));
    data
}

/// `-f -p:4 -f -y:1 -f -n:0`
fn passes(r: &Fsck) -> String {
    r.passes
        .iter()
        .map(|p| {
            let flags = &p.args[1..p.args.len() - 1];
            let code = p.exit_code.map_or("-".to_owned(), |c| c.to_string());
            format!("{}:{code}", flags.join(" "))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn statuses(s: &[FsckStatus]) -> String {
    s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("|")
}

/// Last output lines of the final pass, for the mismatch table.
fn tail(r: &Fsck) -> String {
    r.passes
        .last()
        .map(|p| {
            let keep = p.output.len().saturating_sub(3);
            p.output[keep..].join(" / ")
        })
        .unwrap_or_default()
}

/// What [`fsck::ext`] and the control did with one image.
struct Outcome<'a> {
    case: &'a Case,
    control: [i32; 2],
    check: Fsck,
    check_timed_out: bool,
    check_modified: bool,
    repair: Fsck,
    repair_timed_out: bool,
}

/// Runs the control, check mode and repair mode on fresh copies of one image.
fn run_case<'a>(dir: &Path, tmp: &Path, case: &'a Case) -> Outcome<'a> {
    let data = gunzip(&dir.join(&case.test).join("image.gz"));
    let img = tmp.join("image");
    let log = tmp.join("e2fsck.log");
    let img_str = img.to_str().expect("UTF-8 temp path");

    write_sparse(&img, &data);
    let mut control = [0; 2];
    for exit in &mut control {
        let out = run_e2fsck(&[E2FSCK, "-yf", img_str], &log).expect("run e2fsck");
        *exit = out.exit.code().unwrap_or(-1);
    }

    write_sparse(&img, &data);
    let mut check_timeouts = 0;
    let check = fsck::ext(
        E2FSCK,
        img_str,
        Mode::Check,
        &mut runner(&log, &mut check_timeouts),
    );
    let check_modified = fs::read(&img).expect("read image copy") != data;

    write_sparse(&img, &data);
    let mut repair_timeouts = 0;
    let repair = fsck::ext(
        E2FSCK,
        img_str,
        Mode::Repair,
        &mut runner(&log, &mut repair_timeouts),
    );

    Outcome {
        case,
        control,
        check,
        check_timed_out: check_timeouts > 0,
        check_modified,
        repair,
        repair_timed_out: repair_timeouts > 0,
    }
}

#[test]
fn fsck_orchestration_agrees_with_upstream_exit_statuses() {
    let dir = corpus_dir();
    if !dir.join("manifest.tsv").is_file() {
        println!(
            "SKIP e2fsprogs_corpus: {} not found (the shared corpora live outside the repository)",
            dir.display()
        );
        return;
    }
    if !Path::new(E2FSCK).is_file() {
        println!("SKIP e2fsprogs_corpus: {E2FSCK} is not installed on this host");
        return;
    }
    let test_config =
        fs::read_to_string(dir.join("_harness/test_config")).expect("read _harness/test_config");
    for (k, v) in UPSTREAM_ENV {
        assert!(
            test_config.contains(&format!("{k}={v}"))
                && test_config.contains(&format!("export {k}")),
            "_harness/test_config no longer exports {k}={v}: update UPSTREAM_ENV"
        );
    }

    let started = Instant::now();
    let cases = select(&dir);
    assert!(
        cases.len() >= MIN_SELECTED,
        "only {} plain image tests selected from manifest.tsv",
        cases.len()
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut slowest = (Duration::ZERO, "");
    let outcomes: Vec<Outcome> = cases
        .iter()
        .map(|case| {
            let t = Instant::now();
            let o = run_case(&dir, tmp.path(), case);
            slowest = slowest.max((t.elapsed(), case.test.as_str()));
            o
        })
        .collect();
    let elapsed = started.elapsed();

    let mut version_diffs = Vec::new();
    let mut repair_mismatches = Vec::new();
    let mut check_mismatches = Vec::new();
    let mut check_deviations = Vec::new();
    let mut problems = Vec::new();
    let mut agreed = 0;
    let mut repair_table = BTreeMap::<(i32, i32, &str), usize>::new();
    let mut check_table = BTreeMap::<(i32, Option<i32>, &str), usize>::new();
    let e2fsck_runs: usize = outcomes
        .iter()
        .map(|o| 2 + o.check.passes.len() + o.repair.passes.len())
        .sum();

    for o in &outcomes {
        let case = o.case;
        let (test, p1, p2) = (case.test.as_str(), case.pass1, case.pass2);
        if o.check_modified {
            problems.push(format!("{test}: check mode changed the image"));
        }
        if o.repair_timed_out {
            problems.push(format!("{test}: a repair-mode pass hit the time limit"));
        }
        let known_hang = CHECK_MODE_HANGS.contains(&test);
        if o.check_timed_out && !known_hang {
            problems.push(format!("{test}: the check-mode pass hit the time limit"));
        }
        if o.control != [p1, p2] {
            version_diffs.push(format!(
                "  {test:<34} recorded {p1}/{p2}  host -yf twice {}/{}  repair {} -> {}",
                o.control[0],
                o.control[1],
                passes(&o.repair),
                o.repair.status.as_str()
            ));
            continue;
        }
        if known_hang && !o.check_timed_out {
            problems.push(format!(
                "{test}: listed in CHECK_MODE_HANGS but its check-mode pass finished ({}): \
                 remove it from the list",
                passes(&o.check)
            ));
        }

        let expected = expected_repair(p1, p2);
        *repair_table
            .entry((p1, p2, o.repair.status.as_str()))
            .or_default() += 1;
        if expected.contains(&o.repair.status) {
            agreed += 1;
        } else {
            repair_mismatches.push(format!(
                "  {test:<34} {p1:>3}/{p2:<3}  {:<44} {:<12} {:<22} {}",
                passes(&o.repair),
                o.repair.status.as_str(),
                statuses(expected),
                tail(&o.repair)
            ));
        }

        *check_table
            .entry((p1, o.check.exit_code, o.check.status.as_str()))
            .or_default() += 1;
        let natural = (o.check.status == FsckStatus::Clean) == (p1 == 0);
        let listed = CHECK_MODE_DEVIATIONS.iter().find(|d| d.0 == test);
        match (natural, listed) {
            (true, None) => {}
            (false, Some(&(_, status, why))) if status == o.check.status => {
                check_deviations.push(format!(
                    "  {test:<34} {p1:>3}/{p2:<3}  {:<12} {:<12} {why}",
                    passes(&o.check),
                    status.as_str()
                ));
            }
            _ => check_mismatches.push(format!(
                "  {test:<34} {p1:>3}/{p2:<3}  {:<12} {:<12} {:<12} {}",
                passes(&o.check),
                o.check.status.as_str(),
                listed.map_or("-", |d| d.1.as_str()),
                tail(&o.check)
            )),
        }
    }

    let selected = cases.len();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "e2fsprogs corpus: {selected} images selected, {} excluded as version differences, \
         {agreed} repair statuses agreed, {} repair mismatches, {} check mismatches, \
         {} known check-mode deviations, {} other problems; {e2fsck_runs} e2fsck runs in \
         {:.1} s (slowest image {} {:.1} s)",
        version_diffs.len(),
        repair_mismatches.len(),
        check_mismatches.len(),
        check_deviations.len(),
        problems.len(),
        elapsed.as_secs_f64(),
        slowest.1,
        slowest.0.as_secs_f64(),
    );
    let _ = writeln!(report, "repair (recorded pass1/pass2 -> status: images):");
    for ((p1, p2, status), n) in &repair_table {
        let _ = writeln!(report, "  {p1}/{p2} -> {status}: {n}");
    }
    let _ = writeln!(
        report,
        "check (recorded pass1 -> -f -n exit, status: images):"
    );
    for ((p1, exit, status), n) in &check_table {
        let exit = exit.map_or("killed".to_owned(), |c| c.to_string());
        let _ = writeln!(report, "  {p1} -> {exit}, {status}: {n}");
    }
    if !version_diffs.is_empty() {
        let _ = writeln!(
            report,
            "version differences (host e2fsck does not reproduce the record; excluded):"
        );
        for line in &version_diffs {
            let _ = writeln!(report, "{line}");
        }
    }
    if !check_deviations.is_empty() {
        let _ = writeln!(
            report,
            "known check-mode deviations (CHECK_MODE_DEVIATIONS):\n  {:<34} {:>7}  {:<12} {:<12} why",
            "test", "record", "our pass", "status"
        );
        for line in &check_deviations {
            let _ = writeln!(report, "{line}");
        }
    }
    if !repair_mismatches.is_empty() {
        let _ = writeln!(
            report,
            "REPAIR MISMATCHES:\n  {:<34} {:>7}  {:<44} {:<12} {:<22} last output",
            "test", "record", "our passes", "status", "expected"
        );
        for line in &repair_mismatches {
            let _ = writeln!(report, "{line}");
        }
    }
    if !check_mismatches.is_empty() {
        let _ = writeln!(
            report,
            "CHECK MISMATCHES (Clean exactly when pass1 == 0, or as CHECK_MODE_DEVIATIONS lists):\n  \
             {:<34} {:>7}  {:<12} {:<12} {:<12} last output",
            "test", "record", "our pass", "status", "listed"
        );
        for line in &check_mismatches {
            let _ = writeln!(report, "{line}");
        }
    }
    for p in &problems {
        let _ = writeln!(report, "PROBLEM: {p}");
    }
    println!("{report}");

    assert!(
        version_diffs.len() * 100 < selected * MAX_VERSION_DIFFERENCES_PERCENT,
        "{} of {selected} images are version differences (limit \
         {MAX_VERSION_DIFFERENCES_PERCENT}%): the host's e2fsck no longer matches the corpus \
         closely enough\n{report}",
        version_diffs.len()
    );
    assert!(
        repair_mismatches.is_empty() && check_mismatches.is_empty() && problems.is_empty(),
        "the fsck orchestration disagrees with upstream's recorded exit statuses\n{report}"
    );
}

#[test]
fn expected_repair_table() {
    use FsckStatus::*;
    assert_eq!(expected_repair(0, 0), [Clean]);
    assert_eq!(expected_repair(8, 8), [Error]);
    assert_eq!(expected_repair(12, 0), [Error]);
    assert_eq!(expected_repair(1, 0), [Corrected]);
    assert_eq!(expected_repair(3, 0), [Corrected]);
    assert_eq!(expected_repair(1, 1), [Corrected, Uncorrected]);
    assert_eq!(expected_repair(4, 1), [Corrected, Uncorrected]);
    assert_eq!(expected_repair(1, 4), [Uncorrected]);
    assert_eq!(expected_repair(5, 5), [Uncorrected]);
    assert_eq!(expected_repair(1, 8), [Error, Uncorrected]);
}
