//! The `vmrescue salvage` report for a terminal: each group and file with what was done, the
//! domains paused, the warnings and a summary line.

use std::fmt::Write;

use crate::salvage::{Action, GroupKind, Report};

/// `1.5 GiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Listed => "found",
        Action::WouldCopy => "would copy",
        Action::Copied => "copied",
        Action::Exists => "skipped, destination exists",
        Action::Failed => "FAILED",
    }
}

/// The report as an operator reads it.
pub fn report(r: &Report) -> String {
    let mut out = String::new();
    let s = &r.summary;
    let _ = writeln!(
        out,
        "salvage of {}: {} deleted file(s) still open, in {} group(s), {} apparent, {} allocated",
        r.instances_dir.display(),
        s.files,
        s.groups,
        human_bytes(s.apparent_bytes),
        human_bytes(s.allocated_bytes)
    );
    files(&mut out, r);
    domains(&mut out, r);
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(
        out,
        "{}copied {}, would copy {}, skipped {}, failed {}; {} of data written",
        if r.dry_run {
            "dry run, nothing changed: "
        } else {
            ""
        },
        s.copied,
        s.would_copy,
        s.exists,
        s.failed,
        human_bytes(s.copied_bytes)
    );
    out
}

/// Each group, then each of its files: where it was, who holds it, what was done.
fn files(out: &mut String, r: &Report) {
    for g in &r.groups {
        let kind = match g.kind {
            GroupKind::Instance => "instance",
            GroupKind::Base => "base image",
            GroupKind::Other => "other",
        };
        let _ = writeln!(out, "{kind} {}", g.name);
        for f in &g.files {
            let more = match f.holders.len() {
                0 | 1 => String::new(),
                n => format!(" (+{} more holder(s))", n - 1),
            };
            let _ = writeln!(
                out,
                "  {}  {} ({} allocated)  pid {} fd {}{more}",
                f.relative_path.display(),
                human_bytes(f.size),
                human_bytes(f.allocated_bytes),
                f.pid,
                f.fd
            );
            let mut line = format!("    {}", action_word(f.action));
            if let Some(d) = &f.destination {
                let _ = write!(line, " -> {}", d.display());
            }
            if f.action == Action::Copied {
                let _ = write!(line, ", {} of data", human_bytes(f.copied_bytes));
            }
            if let Some(o) = &f.owner {
                let _ = write!(line, ", owner {o}");
            }
            if let Some(h) = &f.sha256 {
                let _ = write!(line, ", sha256 {h}");
            }
            let _ = writeln!(out, "{line}");
            if let Some(e) = &f.error {
                let _ = writeln!(out, "    error: {e}");
            }
        }
    }
}

/// One line per domain: its processes and what was done to it.
fn domains(out: &mut String, r: &Report) {
    for d in &r.domains {
        let mut what = Vec::new();
        if let Some(st) = &d.state_before {
            what.push(format!("was {st}"));
        }
        if d.suspended {
            what.push("suspended".to_string());
        }
        if d.resumed {
            what.push("resumed".to_string());
        }
        if r.dry_run {
            what.push("would be suspended if running".to_string());
        }
        if let Some(e) = &d.error {
            what.push(format!("error: {e}"));
        }
        let _ = writeln!(
            out,
            "domain {} (pid {}): {}",
            d.name,
            d.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            what.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(20 << 30), "20.0 GiB");
    }
}
