//! Human-readable output. Every string that came from the guest is hostile: control characters
//! (terminal escapes) are shown escaped and long strings are cut.
//!
//! This module renders rescue reports, progress and discovery; the host-side commands have
//! their own: [`salvage`] and [`fix_owners`].

use std::fmt::Write;

use vmrescue_protocol::{self as p, Progress, Report};

const MAX_FIELD: usize = 400;

/// Makes a guest string safe to print on a terminal.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_FIELD));
    for (n, c) in s.chars().enumerate() {
        if n >= MAX_FIELD {
            out.push('…');
            break;
        }
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(clean).unwrap_or_else(|| "-".into())
}

pub fn progress(p: &Progress) -> String {
    let elapsed = if p.elapsed_s.is_finite() {
        p.elapsed_s.clamp(0.0, 1e7)
    } else {
        0.0
    };
    match &p.device {
        Some(d) => format!(
            "[{elapsed:7.2}s] {} {}: {}",
            clean(p.step.as_str()),
            clean(d),
            clean(&p.message)
        ),
        None => format!(
            "[{elapsed:7.2}s] {}: {}",
            clean(p.step.as_str()),
            clean(&p.message)
        ),
    }
}

/// The discovery sections as an operator reads them (shared by reports and `inspect`).
pub fn discovery(
    disks: &[p::Disk],
    partitions: &[p::Partition],
    filesystems: &[p::Filesystem],
    os: Option<&p::OsInfo>,
    fstab: Option<&p::FstabReport>,
) -> String {
    let mut s = String::new();
    if !disks.is_empty() {
        let _ = writeln!(s, "disks:");
        for d in disks {
            let _ = writeln!(
                s,
                "  {:<8} {:>10} MiB  {}  serial {}{}{}",
                clean(&d.name),
                d.size_bytes / (1024 * 1024),
                opt(&d.pttype),
                opt(&d.serial),
                if d.read_only { "  (read-only)" } else { "" },
                if d.rescue_medium {
                    "  (rescue medium, left alone)"
                } else {
                    ""
                }
            );
        }
    }
    if !partitions.is_empty() {
        let _ = writeln!(s, "partitions:");
        for pt in partitions {
            let _ = writeln!(
                s,
                "  {:<10} {:>10} MiB  type {}  {}  partuuid {}",
                clean(&pt.name),
                pt.size_bytes / (1024 * 1024),
                clean(&pt.type_id),
                clean(&pt.fstype),
                opt(&pt.partuuid)
            );
        }
    }
    let _ = writeln!(s, "filesystems:");
    if filesystems.is_empty() {
        let _ = writeln!(s, "  (none found)");
    }
    for f in filesystems {
        let _ = writeln!(
            s,
            "  {} {} uuid {} label {}{}{}",
            clean(&f.device),
            clean(&f.fstype),
            opt(&f.uuid),
            opt(&f.label),
            f.role
                .as_deref()
                .map(|r| format!("  role {}", clean(r)))
                .unwrap_or_default(),
            f.mountpoint
                .as_deref()
                .map(|m| format!("  mounted on {}", clean(m)))
                .unwrap_or_default(),
        );
        if f.fsck.status != p::FsckStatus::Skipped || !f.fsck.tool.is_empty() {
            let code = f
                .fsck
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "    state {:?} -> {:?}; {} {} (exit {code})",
                f.state_before,
                f.state_after,
                clean(&f.fsck.tool),
                f.fsck.status.as_str()
            );
        }
    }
    if let Some(os) = os {
        match &os.root_device {
            Some(root) => {
                let _ = writeln!(
                    s,
                    "os: {} on {} (id {}, version {})",
                    opt(&os.pretty_name),
                    clean(root),
                    opt(&os.id),
                    opt(&os.version_id)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "os: no root identified ({} candidate(s))",
                    os.candidates.len()
                );
            }
        }
    }
    if let Some(tab) = fstab {
        let _ = writeln!(s, "fstab ({}):", clean(&tab.source));
        for e in &tab.entries {
            let target = e.device.as_deref().map(clean).unwrap_or_else(|| {
                e.candidates
                    .iter()
                    .map(|c| clean(c))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            let _ = writeln!(
                s,
                "  line {:<3} {} {} {}: {:?} {}{}",
                e.line,
                clean(&e.spec),
                clean(&e.file),
                clean(&e.vfstype),
                e.resolution,
                target,
                if e.kernel_name { " (kernel name)" } else { "" }
            );
        }
        for m in &tab.malformed {
            let _ = writeln!(
                s,
                "  line {:<3} malformed: {} ({})",
                m.line,
                clean(&m.text),
                clean(&m.reason)
            );
        }
    }
    s
}

/// A report's summary, when only it came back from a console log.
pub fn summary(sm: &vmrescue_protocol::console::Summary, note: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "vmrescue report summary ({} mode): {}",
        sm.mode.as_str(),
        sm.outcome.as_str()
    );
    let _ = writeln!(s, "  {note}");
    for f in &sm.filesystems {
        let _ = writeln!(
            s,
            "  {} {}: fsck {}",
            clean(&f.device),
            clean(&f.fstype),
            f.status.as_str()
        );
    }
    let _ = writeln!(
        s,
        "  {} change(s), {} planned, {} warning(s)",
        sm.changes, sm.plan, sm.warnings
    );
    s
}

/// The report as an operator reads it.
pub fn report(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "vmrescue report ({} mode): {}",
        r.mode.as_str(),
        r.outcome.as_str()
    );
    let _ = writeln!(
        s,
        "  agent {} on kernel {}, {:.1} s",
        clean(&r.agent_version),
        clean(&r.kernel),
        r.elapsed_s
    );
    s.push_str(&discovery(
        &r.disks,
        &r.partitions,
        &r.filesystems,
        r.os.as_ref(),
        r.fstab.as_ref(),
    ));
    layers(&mut s, &r.layers);
    // Check mode: what repair would do. Repair mode: the changes made say it.
    if r.changes.is_empty() && !r.plan.is_empty() {
        let _ = writeln!(s, "planned (run with --mode repair to apply):");
        changes(&mut s, &r.plan);
    }
    if !r.changes.is_empty() {
        let _ = writeln!(s, "changes:");
        changes(&mut s, &r.changes);
    }
    if let Some(f) = &r.report_file {
        let _ = writeln!(s, "report saved on the guest as {}", clean(f));
    }
    for f in &r.filesystems {
        for u in &f.fsck.undo_files {
            let _ = writeln!(s, "undo file for {}: {}", clean(&f.device), clean(u));
        }
    }
    if let Some(v) = &r.verify {
        verify(&mut s, v);
    }
    warnings(&mut s, &r.warnings);
    s
}

/// The LVM volume groups, md arrays and LUKS containers: what they are made of, what was
/// opened of them, and why not.
pub fn layers(s: &mut String, layers: &[p::Layer]) {
    if layers.is_empty() {
        return;
    }
    let _ = writeln!(s, "layers:");
    for l in layers {
        let ro = if l.read_only { ", read-only" } else { "" };
        let _ = writeln!(
            s,
            "  {} {} ({}{ro}) on {}{}",
            clean(l.kind.as_str()),
            clean(&l.name),
            clean(l.state.as_str()),
            clean(&l.members.join(", ")),
            if l.devices.is_empty() {
                String::new()
            } else {
                format!(": {}", clean(&l.devices.join(", ")))
            }
        );
        if let Some(d) = &l.detail {
            let _ = writeln!(s, "    {}", clean(d));
        }
    }
}

/// The verify boots: how, and what each showed.
fn verify(s: &mut String, v: &p::Verify) {
    let what = match (&v.kernel, &v.cmdline) {
        (Some(k), Some(c)) => format!("{} {} ({})", clean(v.method.as_str()), clean(k), clean(c)),
        _ => clean(v.method.as_str()),
    };
    let _ = writeln!(s, "verify boot of the guest's own OS: {what}");
    for (when, b) in [("before", &v.before), ("after", &v.after)] {
        let Some(b) = b else { continue };
        let mut line = format!(
            "  {when} the rescue: {} after {:.1} s",
            clean(b.state.as_str()),
            b.elapsed_s
        );
        if let Some(j) = &b.last_job {
            line.push_str(&format!(", waiting for {}", clean(j)));
        }
        if let Some(p) = &b.prompt {
            line.push_str(&format!(", at a prompt: {}", clean(p)));
        }
        if !b.milestones.is_empty() {
            line.push_str(&format!(" [{}]", clean(&b.milestones.join(" > "))));
        }
        let _ = writeln!(s, "{line}");
    }
}

fn changes(s: &mut String, list: &[p::Change]) {
    for c in list {
        let _ = writeln!(
            s,
            "  {} {}: {}{}{}",
            clean(c.kind.as_str()),
            clean(&c.path),
            clean(&c.detail),
            c.backup
                .as_deref()
                .map(|b| format!(" (original kept as {})", clean(b)))
                .unwrap_or_default(),
            if c.review { " [review]" } else { "" }
        );
    }
}

/// Appends the warnings section.
pub fn warnings(s: &mut String, list: &[p::Warning]) {
    if !list.is_empty() {
        let _ = writeln!(s, "warnings:");
        for w in list {
            let _ = writeln!(s, "  [{}] {}", clean(w.step.as_str()), clean(&w.message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_protocol::{Filesystem, Outcome, Warning};

    #[test]
    fn escapes_terminal_control_and_cuts_long_strings() {
        assert_eq!(clean("ok"), "ok");
        assert_eq!(clean("\x1b[2Jgone"), "\\u{1b}[2Jgone");
        assert_eq!(clean("a\nb\r"), "a\\u{a}b\\u{d}");
        assert_eq!(clean("\u{202e}txt"), "\\u{202e}txt");
        let long = "x".repeat(10_000);
        assert!(clean(&long).chars().count() <= MAX_FIELD + 1);
    }

    #[test]
    fn report_mentions_outcome_and_hostile_fields_escaped() {
        let r = Report {
            outcome: Outcome::Repaired,
            filesystems: vec![Filesystem {
                device: "/dev/vda\x1b]0;pwn\x07".into(),
                fstype: "ext4".into(),
                ..Default::default()
            }],
            warnings: vec![Warning {
                step: "fsck".into(),
                message: "m".into(),
                device: None,
            }],
            layers: vec![vmrescue_protocol::Layer {
                kind: vmrescue_protocol::LayerKind::Lvm,
                name: "vg0\x1b[2J".into(),
                members: vec!["/dev/vda2".into()],
                devices: vec!["/dev/mapper/vg0-root".into()],
                state: vmrescue_protocol::LayerState::Active,
                read_only: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = report(&r);
        assert!(text.contains("repaired"));
        assert!(
            text.contains(
                "lvm vg0\\u{1b}[2J (active, read-only) on /dev/vda2: /dev/mapper/vg0-root"
            ),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        assert!(!text.contains('\x07'));
        assert!(text.contains("[fsck] m"));
    }

    #[test]
    fn progress_survives_nonsense_numbers() {
        let p = Progress {
            step: "s".into(),
            message: "m".into(),
            device: None,
            elapsed_s: f64::NAN,
        };
        assert!(progress(&p).contains("0.00s"));
    }
}
