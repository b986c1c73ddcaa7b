//! `vmrescue report --console-log FILE|-`: the rescue's report taken back from a console log
//! (an ISO or nova rescue has no channel), as `openstack console log show SERVER` or libvirt's
//! log file gives it. The log is hostile input: only its last [`MAX_READ`] bytes are kept, and
//! the protocol's extractor verifies every frame.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vmrescue_protocol::console::{self, Recovered, Scan, Summary};
use vmrescue_protocol::Report;

/// Bytes of a log kept at most (its end): far more than nova's 100 KiB, bounded memory on any
/// input.
pub const MAX_READ: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleLogError {
    #[error("reading the console log {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no vmrescue report in {}: {}", path.display(), describe(scan))]
    NoReport { path: PathBuf, scan: Scan },
}

fn describe(scan: &Scan) -> String {
    if scan.frames == 0 && scan.bad == 0 {
        return "no vmrescue frame at all (is it the rescue's console log, and did the rescue get as far as reporting?)".into();
    }
    let mut s = format!("{} intact frame(s) from {} run(s)", scan.frames, scan.runs);
    if scan.bad > 0 {
        s.push_str(&format!(
            ", {} damaged frame(s) refused (checksum or format)",
            scan.bad
        ));
    }
    match scan.chunks {
        Some((have, total)) => s.push_str(&format!(
            "; the last run's report is incomplete ({have} of {total} chunks) and its summary is missing"
        )),
        None => s.push_str("; the last run sent no report (it may still be running, or it stopped early)"),
    }
    s
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub enum FromLog {
    Report(Box<Report>),
    Summary(Summary),
}

/// The JSON printed when only the summary survived: its fields, and `partial: true`.
#[derive(Debug, Serialize)]
pub struct PartialReport<'a> {
    pub partial: bool,
    pub note: &'static str,
    #[serde(flatten)]
    pub summary: &'a Summary,
}

pub const PARTIAL_NOTE: &str =
    "only the report's summary survived in the console log; the full report is on the repaired root (/var/log/vmrescue/)";

/// The last `max` bytes of a stream.
pub fn tail(mut input: impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * max {
            buf.drain(..buf.len() - max);
        }
    }
    if buf.len() > max {
        buf.drain(..buf.len() - max);
    }
    Ok(buf)
}

/// Reads the log at `path` (`-`: standard input) and takes the last run's report back.
pub fn read(path: &Path) -> Result<FromLog, ConsoleLogError> {
    let err = |source| ConsoleLogError::Read {
        path: path.to_owned(),
        source,
    };
    let log = if path == Path::new("-") {
        tail(std::io::stdin().lock(), MAX_READ).map_err(err)?
    } else {
        tail(std::fs::File::open(path).map_err(err)?, MAX_READ).map_err(err)?
    };
    match console::recover(&log) {
        Recovered::Report(r) => Ok(FromLog::Report(r)),
        Recovered::Summary(s) => Ok(FromLog::Summary(s)),
        Recovered::Nothing(scan) => Err(ConsoleLogError::NoReport {
            path: path.to_owned(),
            scan,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_protocol::{Message, Mode, Outcome};

    #[test]
    fn keeps_only_the_tail() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let t = tail(&data[..], 1000).unwrap();
        assert_eq!(t, &data[data.len() - 1000..]);
        assert_eq!(tail(&b"abc"[..], 1000).unwrap(), b"abc");
    }

    #[test]
    fn says_what_was_found_when_there_is_no_report() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        std::fs::write(&p, "[ 0.0] Linux version 6.1\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("no vmrescue frame at all"), "{e}");
        let mut log = Vec::new();
        for l in console::frames(&Message::hello("1", Mode::Check, "6.1"), "0a1b2c3d").unwrap() {
            log.extend(l);
        }
        std::fs::write(&p, &log).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("1 intact frame(s) from 1 run(s)") && e.contains("sent no report"),
            "{e}"
        );
        let e = read(&d.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        let r = Report {
            outcome: Outcome::Clean,
            ..Default::default()
        };
        for l in console::frames(&Message::report(r.clone()), "0a1b2c3d").unwrap() {
            log.extend(l);
        }
        std::fs::write(&p, &log).unwrap();
        assert_eq!(read(&p).unwrap(), FromLog::Report(Box::new(r)));
    }
}
