//! The `vmrescue fix-owners` report for a terminal: the counts, the first paths matched, the
//! mount points not entered and the errors.

use crate::fix_owners::FixOwnersReport;

/// The report as an operator reads it.
pub fn report(r: &FixOwnersReport) -> String {
    let ids = |what: &str, from: Option<u32>, to: Option<u32>| match (from, to) {
        (Some(f), Some(t)) => Some(format!("{what} {f} -> {t}")),
        _ => None,
    };
    let change = [
        ids("uid", r.from_uid, r.to_uid),
        ids("gid", r.from_gid, r.to_gid),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let mut out = format!(
        "{}fix-owners in {} ({change}): examined {}, {} {}, skipped {}, errors {}\n",
        if r.dry_run {
            "DRY RUN, nothing changed: "
        } else {
            ""
        },
        r.path.display(),
        r.examined,
        if r.dry_run { "would change" } else { "changed" },
        if r.dry_run { r.matched } else { r.changed },
        r.skipped,
        r.error_count
    );
    for p in &r.examples {
        out.push_str(&format!("  {}\n", p.display()));
    }
    if r.matched > r.examples.len() as u64 {
        out.push_str(&format!(
            "  ... and {} more\n",
            r.matched - r.examples.len() as u64
        ));
    }
    for m in &r.other_filesystems {
        out.push_str(&format!(
            "not entered (another file system): {}\n",
            m.display()
        ));
    }
    for e in &r.errors {
        out.push_str(&format!("error: {}: {}\n", e.path.display(), e.error));
    }
    if r.dry_run && r.matched > 0 {
        out.push_str("run again without --dry-run to change them\n");
    }
    out
}
