//! Running the fsck policies on the guest's filesystems: one thread per disk, each checking its
//! filesystems in [`fsck::order`]; progress flows back to the reporter as it happens.

use std::path::Path;
use std::sync::mpsc;

use vmrescue_discovery::ext::{self, Backup};
use vmrescue_discovery::fstype::{Checker, FsType};
use vmrescue_discovery::inventory::DiskScan;
use vmrescue_protocol::{Filesystem, FsState, FsckStatus, FstabReport, Mode, Phase, Step};

use crate::fsck::{self, order};
use crate::inspect::MountedTree;
use crate::reporter::Reporter;
use crate::{disks, proc, signals};

const E2FSCK: &str = "/sbin/e2fsck";
const XFS_REPAIR: &str = "/sbin/xfs_repair";
const BTRFS: &str = "/sbin/btrfs";
const FSCK_FAT: &str = "/sbin/fsck.fat";

/// One filesystem to check.
#[derive(Debug, Clone)]
pub struct Job {
    pub device: String,
    pub fstype: FsType,
    /// What checks it ([`FsType::checker`]).
    pub checker: Checker,
    pub uuid: Option<String>,
    pub label: Option<String>,
    pub backup: Option<Backup>,
}

/// Operator choices for the checks.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    pub xfs_zero_log: bool,
    /// `btrfs check --repair` allowed (repair mode only).
    pub btrfs_repair: bool,
    /// Longest one checker pass may run.
    pub pass_timeout: std::time::Duration,
}

/// Where e2fsck undo files go (a directory on the undo scratch disk), if anywhere.
pub type UndoDir<'a> = Option<&'a Path>;

/// The jobs in check order: grouped per disk, ordered by the guest's fstab (`fstab`, from a
/// read-only look before any check) with the root first.
pub fn plan(
    scans: &[DiskScan],
    fstab: Option<&FstabReport>,
    root: Option<&str>,
) -> Vec<Vec<order::Item<Job>>> {
    let mut items = Vec::new();
    for s in scans.iter().filter(|s| s.medium.is_none()) {
        for v in &s.volumes {
            let Some(p) = &v.probe else { continue };
            let Some(checker) = p.fstype.checker() else {
                continue;
            };
            let device = format!("/dev/{}", v.name);
            let passno = fstab.and_then(|t| {
                t.entries
                    .iter()
                    .find(|e| e.device.as_deref() == Some(device.as_str()))
                    .map(|e| e.passno)
            });
            items.push(order::Item {
                disk: s.name.clone(),
                is_root: root == Some(device.as_str()),
                passno,
                device: device.clone(),
                data: Job {
                    device,
                    fstype: p.fstype,
                    checker,
                    uuid: p.uuid.clone(),
                    label: p.label.clone(),
                    backup: v.ext_backup,
                },
            });
        }
    }
    order::groups(items)
}

enum Event {
    Progress(String, String),
    Done(Box<Filesystem>),
}

/// Runs every group in its own thread; returns the results in completion order.
pub fn run_all(
    opts: Options,
    undo: UndoDir,
    groups: Vec<Vec<order::Item<Job>>>,
    rep: &mut Reporter,
) -> Vec<Filesystem> {
    let (tx, rx) = mpsc::channel::<Event>();
    let mut out = Vec::new();
    std::thread::scope(|scope| {
        for group in groups {
            let tx = tx.clone();
            scope.spawn(move || {
                for item in group {
                    if signals::requested().is_some() {
                        return;
                    }
                    let job = item.data;
                    let say = |msg: String| {
                        let _ = tx.send(Event::Progress(job.device.clone(), msg));
                    };
                    // A bug in one check must not lose the others' results.
                    let fs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        check_one(opts, undo, &job, &say)
                    }))
                    .unwrap_or_else(|_| {
                        let mut fs = unchecked(&job);
                        fs.fsck.status = FsckStatus::Error;
                        fs.fsck.passes.push(vmrescue_protocol::FsckPass {
                            args: vec!["(internal error in the agent; see the console log)".into()],
                            status: FsckStatus::Error,
                            ..Default::default()
                        });
                        fs
                    });
                    let _ = tx.send(Event::Done(Box::new(fs)));
                }
            });
        }
        drop(tx);
        for ev in rx {
            match ev {
                Event::Progress(dev, msg) => rep.progress(Step::Fsck, Some(&dev), msg),
                Event::Done(fs) => {
                    rep.mark(Phase::Fsck(fs.device.clone()));
                    out.push(*fs)
                }
            }
        }
    });
    out
}

/// The state a checker's first (read-only or fixing) pass shows, for types without a state
/// flag of their own: fsck.fat names a set dirty bit.
fn state_from(first: Option<&vmrescue_protocol::FsckPass>) -> FsState {
    match first.and_then(|p| p.exit_code.map(|c| (c, p))) {
        Some((0, _)) => FsState::Clean,
        Some((1, p)) if p.output.iter().any(|l| l.contains("Dirty bit is set")) => {
            FsState::NotClean
        }
        Some((1, _)) => FsState::Errors,
        _ => FsState::Unknown,
    }
}

fn ext_state(sb: &ext::Superblock) -> FsState {
    match sb.state {
        ext::State::Clean => FsState::Clean,
        ext::State::Errors => FsState::Errors,
        ext::State::NotClean => FsState::NotClean,
    }
}

/// The superblock e2fsck will start from: the primary, or the backup discovery found.
fn read_ext(dev: &str, backup: Option<Backup>) -> Option<ext::Superblock> {
    match backup {
        None => disks::probe_ext(Path::new(dev)).ok().flatten(),
        Some(at) => {
            let mut f = std::fs::File::open(dev).ok()?;
            let sb = vmrescue_discovery::read_at(&mut f, at.offset(), ext::SUPERBLOCK_SIZE).ok()?;
            ext::is_backup(&sb, at)
        }
    }
}

/// The report entry of a job before any check.
fn unchecked(job: &Job) -> Filesystem {
    Filesystem {
        device: job.device.clone(),
        fstype: job.fstype.to_string(),
        uuid: job.uuid.clone(),
        label: job.label.clone(),
        ..Default::default()
    }
}

fn check_one(opts: Options, undo: UndoDir, job: &Job, say: &dyn Fn(String)) -> Filesystem {
    let dev = job.device.as_str();
    let mut runner = |argv: &[&str]| proc::run(argv, Some(opts.pass_timeout));
    let mut fs = unchecked(job);
    let mode = opts.mode.as_str();
    // The XFS, btrfs and FAT checkers are in the late archive.
    let late = match job.checker {
        Checker::XfsRepair => Some(XFS_REPAIR),
        Checker::Btrfs => Some(BTRFS),
        Checker::FsckFat => Some(FSCK_FAT),
        _ => None,
    };
    if let Some(w) = late.and_then(crate::late::need) {
        say(w);
    }
    match job.checker {
        Checker::XfsRepair => {
            say(format!("xfs: running xfs_repair ({mode})"));
            let name = dev.trim_start_matches("/dev/");
            let mut replay = || {
                MountedTree::mount_rw(dev, FsType::Xfs, &format!("replay-{name}"))
                    .and_then(MountedTree::unmount)
                    .map_err(|e| e.to_string())
            };
            let c = fsck::xfs::xfs(
                XFS_REPAIR,
                dev,
                opts.mode,
                opts.xfs_zero_log,
                &mut replay,
                &mut runner,
            );
            fs.fsck = c.fsck;
            fs.state_before = c.before;
            fs.state_after = c.after;
        }
        Checker::Btrfs => {
            let repair = if opts.mode == Mode::Repair && opts.btrfs_repair {
                "--repair if it finds errors, as the operator allowed"
            } else {
                "never --repair"
            };
            say(format!("btrfs: running btrfs check --readonly ({repair})"));
            fs.fsck = fsck::simple::btrfs(BTRFS, dev, opts.mode, opts.btrfs_repair, &mut runner);
            fs.state_before = state_from(fs.fsck.passes.first());
            fs.state_after = match fs.fsck.status {
                FsckStatus::Corrected => FsState::Clean,
                _ => fs.state_before,
            };
        }
        Checker::FsckFat => {
            say(format!("vfat: running fsck.fat ({mode})"));
            fs.fsck = fsck::simple::vfat(FSCK_FAT, dev, opts.mode, &mut runner);
            fs.state_before = state_from(fs.fsck.passes.first());
            fs.state_after = match (opts.mode, fs.fsck.status) {
                (Mode::Check, _) => fs.state_before,
                (_, FsckStatus::Clean | FsckStatus::Corrected) => FsState::Clean,
                (_, FsckStatus::Uncorrected) => FsState::Errors,
                _ => FsState::Unknown,
            };
        }
        Checker::E2fsck => {
            let Some(sb) = read_ext(dev, job.backup) else {
                say("ext superblock unreadable; not checked".into());
                return fs;
            };
            fs.state_before = ext_state(&sb);
            fs.error_count_before = sb.error_count;
            fs.fstype = sb.fstype.to_string();
            let from = job
                .backup
                .map(|b| format!(" from the backup superblock at block {}", b.block))
                .unwrap_or_default();
            say(format!(
                "{} {} state {:?}: running e2fsck ({mode}){from}",
                sb.fstype, sb.uuid, fs.state_before
            ));
            let prefix = undo.map(|d| d.join(dev.trim_start_matches("/dev/")));
            let prefix = prefix.as_ref().and_then(|p| p.to_str());
            fs.fsck = fsck::ext_from(E2FSCK, dev, job.backup, prefix, opts.mode, &mut runner);
            // Name the undo files e2fsck wrote by their name on the scratch disk.
            fs.fsck.undo_files = std::mem::take(&mut fs.fsck.undo_files)
                .into_iter()
                .filter(|f| Path::new(f).is_file())
                .filter_map(|f| Path::new(&f).file_name()?.to_str().map(str::to_owned))
                .collect();
            fs.state_after = match disks::probe_ext(Path::new(dev)) {
                Ok(Some(sb)) => ext_state(&sb),
                _ if opts.mode == Mode::Check => fs.state_before,
                _ => FsState::Unknown,
            };
        }
    }
    say(format!(
        "{} {}: {} (exit {}), state now {:?}",
        fs.fsck.tool,
        mode,
        fs.fsck.status.as_str(),
        fs.fsck.exit_code.map_or("-".to_owned(), |c| c.to_string()),
        fs.state_after
    ));
    fs
}
