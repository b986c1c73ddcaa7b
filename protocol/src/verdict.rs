//! What a rescue amounts to, from what its report says was found and done (pure): the rule
//! both sides apply, the agent to decide the report's `outcome` and the host to hold a report
//! it receives (hostile input) to the same rule.
//!
//! `repaired` and `clean` claim that the guest's OS root was identified and that every volume
//! the guest needs was reached and checked: the root, every device its fstab mounts (swap
//! aside), and every container (LVM physical volume, LUKS container, MD RAID member) that may
//! hold an fstab entry this rescue could not find. A problem left in a checked filesystem is
//! `unrepaired` (a damaged root may be why no root could be looked into); otherwise a root not
//! identified is `no_os`, and a needed volume not reached makes the rescue `unrepaired`,
//! whatever else went well.

use crate::report::{Filesystem, FsState, FsckStatus, Mode, Outcome, Report, Resolution};
use crate::LayerState;

/// A volume that holds other volumes, by the type blkid gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// `LVM2_member`: an LVM physical volume.
    Lvm,
    /// `crypto_LUKS`: a LUKS container.
    Luks,
    /// `linux_raid_member`: a member of an MD RAID array.
    Md,
}

impl Container {
    pub fn of(fstype: &str) -> Option<Container> {
        match fstype {
            "LVM2_member" => Some(Container::Lvm),
            "crypto_LUKS" => Some(Container::Luks),
            "linux_raid_member" => Some(Container::Md),
            _ => None,
        }
    }

    /// Why what it holds was not reached, and what the operator can do.
    pub fn unreached(self) -> &'static str {
        match self {
            Container::Lvm => "an LVM physical volume: its volume group was not activated, so the logical volumes on it were neither opened nor checked (check them from a system that activates LVM: vgchange -ay, then fsck -f each LV)",
            Container::Luks => "a LUKS container: it stayed locked, so the filesystem inside was neither opened nor checked (unlock it with its key, then fsck -f the opened device)",
            Container::Md => "an MD RAID member: its array was not assembled, so the filesystem on the array was neither opened nor checked (assemble it with mdadm --assemble, then fsck -f the array)",
        }
    }
}

/// A volume the guest needs, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub device: String,
    /// `the OS root`, `fstab line 3 (/home)`, `may hold fstab line 2 (/ on /dev/mapper/vg0-root)`.
    pub why: String,
}

/// A needed volume the rescue did not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub device: String,
    pub why_needed: String,
    pub reason: String,
}

impl Gap {
    /// The warning that names it.
    pub fn message(&self) -> String {
        format!(
            "{} is needed by the guest ({}) but was not reached: {}",
            self.device, self.why_needed, self.reason
        )
    }
}

fn is_swap(vfstype: &str) -> bool {
    vfstype == "swap"
}

/// The volumes the guest needs, each once (the first reason wins), in the order: the root,
/// fstab's devices, then containers that may hold what fstab names and was not found.
pub fn needs(report: &Report) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    let mut add = |device: &str, why: String| {
        if !out.iter().any(|n| n.device == device) {
            out.push(Need {
                device: device.to_owned(),
                why,
            });
        }
    };
    let root = report.os.as_ref().and_then(|o| o.root_device.as_deref());
    if let Some(root) = root {
        add(root, "the OS root".to_owned());
    }
    let entries = report.fstab.as_ref().map_or(&[][..], |f| &f.entries[..]);
    let mut unfound = Vec::new();
    for e in entries.iter().filter(|e| !is_swap(&e.vfstype)) {
        let at = format!("fstab line {} ({})", e.line, e.file);
        match e.resolution {
            Resolution::Resolved => {
                if let Some(d) = &e.device {
                    add(d, at);
                }
            }
            Resolution::Ambiguous => {
                for d in &e.candidates {
                    add(d, format!("{at}, one of several matches"));
                }
            }
            Resolution::Missing => unfound.push(format!("{} on {}", e.file, e.spec)),
            Resolution::NotADevice => {}
        }
    }
    // Whatever fstab names and was not found may be inside a container: every container on
    // the guest's disks is needed then (a gone volume is told apart only once it is opened).
    if !unfound.is_empty() {
        for fs in report
            .filesystems
            .iter()
            .filter(|f| Container::of(&f.fstype).is_some())
        {
            add(
                &fs.device,
                format!(
                    "may hold what fstab names and was not found: {}",
                    unfound.join(", ")
                ),
            );
        }
    }
    out
}

/// Why `fs` counts as not reached, if it does: a container not opened, a filesystem not
/// checked, or a checker that could not run.
pub fn unreached(report: &Report, fs: &Filesystem) -> Option<String> {
    if let Some(c) = Container::of(&fs.fstype) {
        // Opened: what it holds is checked (or not) in its own right.
        return (!opened(report, &fs.device)).then(|| c.unreached().to_owned());
    }
    match fs.fsck.status {
        FsckStatus::Skipped => {
            Some(format!(
            "not checked (this rescue has no checker for {}, or the check was stopped before it)",
            if fs.fstype.is_empty() { "its type" } else { &fs.fstype }
        ))
        }
        FsckStatus::Error if fs.fsck.exit_code.is_none() => Some(format!(
            "its checker ({}) could not run; see fsck.passes",
            fs.fsck.tool
        )),
        _ => None,
    }
}

/// Whether the container `device` is a member of a layer the rescue opened whole (an LVM
/// volume group with every LV activated, an md array running, even degraded, a LUKS
/// container unlocked).
pub fn opened(report: &Report, device: &str) -> bool {
    report.layers.iter().any(|l| {
        // A degraded md array still holds all of its data; a volume group activated only in
        // part may hold what fstab names in an LV that was not activated.
        let whole = match l.state {
            LayerState::Active => true,
            LayerState::Partial => l.kind == crate::LayerKind::Md,
            _ => false,
        };
        whole && l.members.iter().any(|m| m == device)
    })
}

/// The needed volumes the rescue did not reach.
pub fn gaps(report: &Report) -> Vec<Gap> {
    needs(report)
        .into_iter()
        .filter_map(|n| {
            let reason = match report.filesystems.iter().find(|f| f.device == n.device) {
                Some(fs) => unreached(report, fs)?,
                None => "not found among the guest's filesystems".to_owned(),
            };
            Some(Gap {
                device: n.device,
                why_needed: n.why,
                reason,
            })
        })
        .collect()
}

/// Records on each of the report's filesystems whether the guest needs it and whether it was
/// reached (`needed_by`, `reached`, `not_reached`); returns the gaps.
pub fn mark(report: &mut Report) -> Vec<Gap> {
    let needs = needs(report);
    let marks: Vec<_> = report
        .filesystems
        .iter()
        .map(|fs| {
            let need = needs.iter().find(|n| n.device == fs.device);
            (
                need.map(|n| n.why.clone()),
                need.and_then(|_| unreached(report, fs)),
            )
        })
        .collect();
    for (fs, (needed_by, not_reached)) in report.filesystems.iter_mut().zip(marks) {
        fs.reached = needed_by.as_ref().map(|_| not_reached.is_none());
        fs.needed_by = needed_by;
        fs.not_reached = not_reached;
    }
    gaps(report)
}

/// Containers on the guest's disks, named for the operator when no root was identified: the
/// root may be inside one.
pub fn unopened_containers(report: &Report) -> Vec<String> {
    report
        .filesystems
        .iter()
        .filter(|f| !opened(report, &f.device))
        .filter_map(|f| {
            Container::of(&f.fstype).map(|c| format!("{} is {}", f.device, c.unreached()))
        })
        .collect()
}

/// The outcome of a rescue: `fatal` when the agent itself broke down.
pub fn outcome(mode: Mode, report: &Report, fatal: bool) -> Outcome {
    if fatal {
        return Outcome::Failed;
    }
    let checked: Vec<&Filesystem> = report
        .filesystems
        .iter()
        .filter(|f| f.fsck.status != FsckStatus::Skipped)
        .collect();
    // The checker could not even start on any filesystem: the rescue did not work.
    if !checked.is_empty()
        && checked
            .iter()
            .all(|f| f.fsck.status == FsckStatus::Error && f.fsck.exit_code.is_none())
    {
        return Outcome::Failed;
    }
    let problem_left = checked.iter().any(|f| {
        matches!(f.fsck.status, FsckStatus::Uncorrected | FsckStatus::Error)
            || (mode == Mode::Check && f.state_before != FsState::Clean)
            || (mode == Mode::Repair && f.state_after != FsState::Clean)
    });
    // A problem left is said first: a damaged root may be why no root could be looked into.
    if problem_left {
        return Outcome::Unrepaired;
    }
    match &report.os {
        // Stopped before the inspection: what was checked is known, the rest is not.
        None if !checked.is_empty() => return Outcome::Unrepaired,
        None => return Outcome::NoOs,
        Some(os) if os.root_device.is_none() => return Outcome::NoOs,
        Some(_) => {}
    }
    if !gaps(report).is_empty() {
        Outcome::Unrepaired
    } else if checked
        .iter()
        .any(|f| f.fsck.status == FsckStatus::Corrected)
    {
        Outcome::Repaired
    } else {
        Outcome::Clean
    }
}

/// The outcome once the guest fixes are counted: in check mode a planned fix is a problem left;
/// in repair mode applied fixes make a clean rescue `repaired`, and a fix that failed leaves it
/// `unrepaired`.
pub fn with_guest_fixes(outcome: Outcome, mode: Mode, planned: usize, failed: usize) -> Outcome {
    match (outcome, mode) {
        (Outcome::Clean | Outcome::Repaired, _) if failed > 0 => Outcome::Unrepaired,
        (Outcome::Clean, Mode::Check) if planned > 0 => Outcome::Unrepaired,
        (Outcome::Clean, Mode::Repair) if planned > 0 => Outcome::Repaired,
        (o, _) => o,
    }
}

/// The host's hold on a received report: a `clean` or `repaired` that the report's own
/// findings do not bear out (no root identified, a needed volume not reached) is lowered, and
/// the reason returned for a warning. Never raises an outcome.
pub fn hold(report: &mut Report) -> Option<String> {
    let claimed = report.outcome;
    if !matches!(claimed, Outcome::Clean | Outcome::Repaired) {
        return None;
    }
    let (lowered, why) = match &report.os {
        None => (
            Outcome::Unrepaired,
            "the guest was never inspected".to_owned(),
        ),
        Some(os) if os.root_device.is_none() => {
            (Outcome::NoOs, "no OS root was identified".to_owned())
        }
        Some(_) => {
            let gaps = gaps(report);
            if gaps.is_empty() {
                return None;
            }
            let names: Vec<String> = gaps.iter().map(|g| g.device.clone()).collect();
            (
                Outcome::Unrepaired,
                format!("needed volumes were not reached: {}", names.join(", ")),
            )
        }
    };
    report.outcome = lowered;
    Some(format!(
        "the rescue reported {} but {why}: outcome {}",
        claimed.as_str(),
        lowered.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Fsck, FstabEntry, FstabReport, Layer, OsInfo};
    use crate::LayerKind;

    fn fs(
        device: &str,
        status: FsckStatus,
        before: FsState,
        after: FsState,
        code: Option<i32>,
    ) -> Filesystem {
        Filesystem {
            device: device.into(),
            fstype: "ext4".into(),
            state_before: before,
            state_after: after,
            fsck: Fsck {
                tool: "e2fsck".into(),
                exit_code: code,
                status,
                passes: vec![],
                undo_files: vec![],
            },
            ..Default::default()
        }
    }

    fn container(device: &str, fstype: &str) -> Filesystem {
        Filesystem {
            device: device.into(),
            fstype: fstype.into(),
            ..Default::default()
        }
    }

    fn entry(
        line: usize,
        spec: &str,
        file: &str,
        res: Resolution,
        dev: Option<&str>,
    ) -> FstabEntry {
        FstabEntry {
            line,
            spec: spec.into(),
            file: file.into(),
            vfstype: "ext4".into(),
            resolution: res,
            device: dev.map(str::to_owned),
            ..Default::default()
        }
    }

    /// A report whose root is `root` (the first filesystem when `Some("")`).
    fn report(filesystems: Vec<Filesystem>, root: Option<&str>) -> Report {
        let root = root.map(|r| {
            if r.is_empty() {
                filesystems[0].device.clone()
            } else {
                r.to_owned()
            }
        });
        Report {
            filesystems,
            os: Some(OsInfo {
                root_device: root,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    use FsState::{Clean as C, Errors as E};
    use FsckStatus as S;

    fn out(m: Mode, fss: Vec<Filesystem>, fatal: bool) -> Outcome {
        outcome(m, &report(fss, Some("")), fatal)
    }

    #[test]
    fn repair_outcomes() {
        let m = Mode::Repair;
        let d = "/dev/vda";
        assert_eq!(outcome(m, &report(vec![], None), false), Outcome::NoOs);
        assert_eq!(
            out(m, vec![fs(d, S::Clean, C, C, Some(0))], false),
            Outcome::Clean
        );
        assert_eq!(
            out(
                m,
                vec![
                    fs(d, S::Corrected, E, C, Some(1)),
                    fs("/dev/vdb", S::Clean, C, C, Some(0))
                ],
                false
            ),
            Outcome::Repaired
        );
        assert_eq!(
            out(
                m,
                vec![
                    fs(d, S::Corrected, E, C, Some(1)),
                    fs("/dev/vdb", S::Uncorrected, E, E, Some(4))
                ],
                false
            ),
            Outcome::Unrepaired
        );
        assert_eq!(
            out(m, vec![fs(d, S::Corrected, E, E, Some(1))], false),
            Outcome::Unrepaired
        );
        assert_eq!(
            out(m, vec![fs(d, S::Error, C, C, None)], false),
            Outcome::Failed
        );
        assert_eq!(
            out(m, vec![fs(d, S::Error, C, C, Some(8))], false),
            Outcome::Unrepaired
        );
        assert_eq!(
            out(m, vec![fs(d, S::Clean, C, C, Some(0))], true),
            Outcome::Failed
        );
    }

    #[test]
    fn check_mode_reports_problems_as_unrepaired() {
        let m = Mode::Check;
        let d = "/dev/vda";
        assert_eq!(
            out(m, vec![fs(d, S::Clean, C, C, Some(0))], false),
            Outcome::Clean
        );
        assert_eq!(
            out(m, vec![fs(d, S::Uncorrected, E, E, Some(4))], false),
            Outcome::Unrepaired
        );
        // e2fsck -n found nothing but the kernel had flagged errors: still a problem to fix.
        assert_eq!(
            out(m, vec![fs(d, S::Clean, E, E, Some(0))], false),
            Outcome::Unrepaired
        );
    }

    #[test]
    fn no_root_identified_is_no_os_whatever_was_repaired() {
        // The root inside an LVM volume group: /boot and /home are found and repaired, the
        // root is never reached.
        let r = report(
            vec![
                fs("/dev/vda1", S::Corrected, E, C, Some(1)),
                container("/dev/vda3", "LVM2_member"),
                fs("/dev/vdb", S::Corrected, E, C, Some(1)),
            ],
            None,
        );
        assert_eq!(outcome(Mode::Repair, &r, false), Outcome::NoOs);
        // A problem left comes first: in check mode a damaged root may be why no root could
        // be looked into (it does not mount until repaired).
        let damaged = report(vec![fs("/dev/vda", S::Uncorrected, E, E, Some(4))], None);
        assert_eq!(outcome(Mode::Check, &damaged, false), Outcome::Unrepaired);
        assert_eq!(
            unopened_containers(&r),
            [format!("/dev/vda3 is {}", Container::Lvm.unreached())]
        );
        // Stopped before the inspection: not finished, but something was checked.
        let mut stopped = r.clone();
        stopped.os = None;
        assert_eq!(outcome(Mode::Repair, &stopped, false), Outcome::Unrepaired);
    }

    #[test]
    fn a_needed_volume_not_reached_leaves_the_rescue_unrepaired() {
        let m = Mode::Repair;
        let mut r = report(
            vec![
                fs("/dev/vda1", S::Corrected, E, C, Some(1)),
                container("/dev/vdb", "LVM2_member"),
                container("/dev/vdc", "crypto_LUKS"),
            ],
            Some("/dev/vda1"),
        );
        // fstab names only the root: the containers are not needed.
        r.fstab = Some(FstabReport {
            entries: vec![entry(
                1,
                "UUID=1",
                "/",
                Resolution::Resolved,
                Some("/dev/vda1"),
            )],
            ..Default::default()
        });
        assert_eq!(outcome(m, &r, false), Outcome::Repaired);
        assert!(mark(&mut r).is_empty());
        assert_eq!(r.filesystems[0].needed_by.as_deref(), Some("the OS root"));
        assert_eq!(r.filesystems[0].reached, Some(true));
        assert_eq!(r.filesystems[1].needed_by, None);
        assert_eq!(r.filesystems[1].reached, None);

        // /home on an LV that was not activated, swap on another (swap is not needed).
        let fstab = r.fstab.as_mut().unwrap();
        fstab.entries.push(entry(
            2,
            "/dev/mapper/vg0-home",
            "/home",
            Resolution::Missing,
            None,
        ));
        fstab.entries.push(FstabEntry {
            vfstype: "swap".into(),
            ..entry(3, "/dev/mapper/vg0-swap", "none", Resolution::Missing, None)
        });
        assert_eq!(outcome(m, &r, false), Outcome::Unrepaired);
        let gaps = mark(&mut r);
        let devices: Vec<&str> = gaps.iter().map(|g| g.device.as_str()).collect();
        assert_eq!(devices, ["/dev/vdb", "/dev/vdc"]);
        assert!(
            gaps[0].why_needed.contains("/home on /dev/mapper/vg0-home"),
            "{:?}",
            gaps[0]
        );
        assert!(!gaps[0].why_needed.contains("swap"), "{:?}", gaps[0]);
        assert!(
            gaps[0].message().contains("LVM physical volume"),
            "{}",
            gaps[0].message()
        );
        assert!(gaps[1].message().contains("LUKS"), "{}", gaps[1].message());
        assert_eq!(r.filesystems[1].reached, Some(false));
        assert!(r.filesystems[1]
            .not_reached
            .as_deref()
            .unwrap()
            .contains("vgchange -ay"));

        // Once the volume group is opened, /home is on an LV of its own: needed and checked
        // there. The opened PV is no gap; the LUKS container still locked is.
        r.filesystems[1].opened_as = vec!["/dev/mapper/vg0-home".into()];
        r.layers.push(Layer {
            kind: LayerKind::Lvm,
            name: "vg0".into(),
            members: vec!["/dev/vdb".into()],
            devices: vec!["/dev/mapper/vg0-home".into()],
            state: LayerState::Active,
            ..Default::default()
        });
        let fstab = r.fstab.as_mut().unwrap();
        fstab.entries[1].resolution = Resolution::Resolved;
        fstab.entries[1].device = Some("/dev/mapper/vg0-home".into());
        r.filesystems
            .push(fs("/dev/mapper/vg0-home", S::Corrected, E, C, Some(1)));
        assert_eq!(outcome(m, &r, false), Outcome::Repaired);
        assert!(mark(&mut r).is_empty());
        assert_eq!(r.filesystems[3].reached, Some(true));
        assert_eq!(r.filesystems[1].needed_by, None);
        assert_eq!(
            unopened_containers(&r),
            [format!("/dev/vdc is {}", Container::Luks.unreached())]
        );
        // An LV the guest needs, opened but not checked, is a gap in its own right.
        r.filesystems[3].fsck.status = S::Skipped;
        assert_eq!(outcome(m, &r, false), Outcome::Unrepaired);
        r.filesystems.remove(3);

        // A volume group activated only in part may hold a missing /home in an LV that did not
        // activate: its PV stays a gap. A degraded md array holds everything: no gap.
        r.fstab.as_mut().unwrap().entries[1].resolution = Resolution::Missing;
        r.fstab.as_mut().unwrap().entries[1].device = None;
        r.filesystems.truncate(2);
        r.layers[0].state = LayerState::Partial;
        assert_eq!(outcome(m, &r, false), Outcome::Unrepaired);
        assert_eq!(super::gaps(&r)[0].device, "/dev/vdb");
        r.layers[0].kind = LayerKind::Md;
        assert_eq!(outcome(m, &r, false), Outcome::Repaired);

        // A gone volume with no container on the disks is not a gap: fstab's repair handles it.
        r.filesystems.truncate(1);
        assert_eq!(outcome(m, &r, false), Outcome::Repaired);
    }

    #[test]
    fn a_needed_filesystem_not_checked_is_a_gap() {
        let mut r = report(
            vec![
                fs("/dev/vda1", S::Clean, C, C, Some(0)),
                Filesystem {
                    fstype: "iso9660".into(),
                    ..fs("/dev/vdb", S::Skipped, C, C, None)
                },
                fs("/dev/vdc", S::Error, C, C, None),
                fs("/dev/vdd", S::Skipped, C, C, None),
            ],
            Some("/dev/vda1"),
        );
        r.fstab = Some(FstabReport {
            entries: vec![
                entry(
                    1,
                    "LABEL=media",
                    "/media",
                    Resolution::Resolved,
                    Some("/dev/vdb"),
                ),
                FstabEntry {
                    candidates: vec!["/dev/vdc".into(), "/dev/vda1".into()],
                    ..entry(2, "UUID=dup", "/srv", Resolution::Ambiguous, None)
                },
            ],
            ..Default::default()
        });
        let found = gaps(&r);
        let got: Vec<(&str, &str)> = found
            .iter()
            .map(|g| (g.device.as_str(), g.why_needed.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/vdb", "fstab line 1 (/media)"),
                ("/dev/vdc", "fstab line 2 (/srv), one of several matches"),
            ]
        );
        assert!(
            found[0].reason.contains("no checker for iso9660"),
            "{}",
            found[0].reason
        );
        assert!(
            found[1].reason.contains("could not run"),
            "{}",
            found[1].reason
        );
        assert_eq!(outcome(Mode::Repair, &r, false), Outcome::Unrepaired);
        // The root itself not reached.
        let r = report(vec![fs("/dev/vda1", S::Skipped, C, C, None)], Some(""));
        assert_eq!(outcome(Mode::Check, &r, false), Outcome::Unrepaired);
        let r = report(vec![], Some("/dev/vda9"));
        assert_eq!(
            gaps(&r)[0].reason,
            "not found among the guest's filesystems"
        );
    }

    #[test]
    fn guest_fixes_count() {
        use Outcome::*;
        assert_eq!(with_guest_fixes(Clean, Mode::Check, 0, 0), Clean);
        assert_eq!(with_guest_fixes(Clean, Mode::Check, 2, 0), Unrepaired);
        assert_eq!(with_guest_fixes(Clean, Mode::Repair, 2, 0), Repaired);
        assert_eq!(with_guest_fixes(Repaired, Mode::Repair, 2, 1), Unrepaired);
        assert_eq!(with_guest_fixes(NoOs, Mode::Repair, 0, 0), NoOs);
        assert_eq!(with_guest_fixes(Unrepaired, Mode::Repair, 3, 0), Unrepaired);
    }

    #[test]
    fn the_host_holds_a_report_to_its_own_findings() {
        // A report that claims more than its findings: lowered, with the reason.
        let mut r = report(vec![fs("/dev/vda", S::Corrected, E, C, Some(1))], None);
        r.outcome = Outcome::Repaired;
        let why = hold(&mut r).unwrap();
        assert_eq!(r.outcome, Outcome::NoOs);
        assert!(why.contains("reported repaired but no OS root"), "{why}");

        let mut r = report(
            vec![
                fs("/dev/vda", S::Clean, C, C, Some(0)),
                container("/dev/vdb", "linux_raid_member"),
            ],
            Some(""),
        );
        r.fstab = Some(FstabReport {
            entries: vec![entry(4, "/dev/md0", "/srv", Resolution::Missing, None)],
            ..Default::default()
        });
        r.outcome = Outcome::Clean;
        assert!(hold(&mut r).unwrap().contains("/dev/vdb"));
        assert_eq!(r.outcome, Outcome::Unrepaired);

        // Never raised, and an honest report is left alone.
        let mut r = report(vec![], None);
        r.outcome = Outcome::Failed;
        assert_eq!(hold(&mut r), None);
        assert_eq!(r.outcome, Outcome::Failed);
        let mut r = report(vec![fs("/dev/vda", S::Clean, C, C, Some(0))], Some(""));
        r.outcome = Outcome::Clean;
        assert_eq!(hold(&mut r), None);
        assert_eq!(r.outcome, Outcome::Clean);
    }
}
