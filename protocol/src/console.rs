//! Messages on the serial console, framed so a host can take the report back from a console log
//! when there is no virtio-serial channel (nova rescue, a hand-attached ISO) or it broke.
//!
//! What an operator can fetch is often only the end of the log (`openstack console log show`
//! returns the last 100 KiB), with kernel messages between (or inside) our lines, CRLF line
//! ends and NUL padding. So every frame is one line that carries its own checksum; a report is
//! sent as numbered chunks, each naming the digest of the whole report; and a small summary
//! frame (outcome, each filesystem's status, counts) comes last, so that a short tail still
//! tells the outcome.
//!
//! A frame: `@vmrescue:v2 RUN KIND SEQ/TOTAL ID CHECK PAYLOAD`
//! - `RUN`: 8 hex digits, new at every boot of the agent (a log can hold several runs);
//! - `KIND`: `m` a whole message (hello, progress), `r` a report chunk, `s` the summary;
//! - `SEQ/TOTAL`: the chunk's number from 0 and the count (`0/1` for `m` and `s`);
//! - `ID`: 16 hex digits of the report JSON's sha256 (`r`, `s`), `-` for `m`;
//! - `CHECK`: 16 hex digits of the sha256 of everything from `RUN` to the end of `PAYLOAD`;
//! - `PAYLOAD`: JSON bytes with every non-ASCII character escaped (printable ASCII only).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::hex;
use crate::frame::FrameError;
use crate::message::Message;
use crate::report::{FsState, FsckStatus, Mode, Outcome, Report};

/// Marks a vmrescue frame on the console.
pub const PREFIX: &str = "@vmrescue:v2 ";
/// Report bytes per chunk.
pub const CHUNK: usize = 1024;
/// What the host accepts at most: chunk payloads, chunks per report, frames kept per scan.
pub const MAX_PAYLOAD: usize = 64 << 10;
pub const MAX_CHUNKS: usize = 4096;
const MAX_FRAMES: usize = 1 << 16;
/// Lines longer than this are not frames (bounded memory on hostile logs).
const MAX_FRAME_LINE: usize = MAX_PAYLOAD + 256;

/// What kind of frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Chunk,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "m",
            Kind::Chunk => "r",
            Kind::Summary => "s",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "m" => Some(Kind::Message),
            "r" => Some(Kind::Chunk),
            "s" => Some(Kind::Summary),
            _ => None,
        }
    }
}

/// The last words: enough to tell the outcome when only the end of a log survives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub mode: Mode,
    pub filesystems: Vec<FsSummary>,
    pub changes: usize,
    pub warnings: usize,
    pub plan: usize,
    /// Chunks of the full report, and its sha256 (hex, whole).
    pub report_chunks: usize,
    pub report_sha256: String,
}

/// One filesystem in a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsSummary {
    pub device: String,
    #[serde(rename = "type")]
    pub fstype: String,
    pub state_after: FsState,
    pub status: FsckStatus,
}

impl Summary {
    pub fn of(report: &Report, chunks: usize, sha256: &str) -> Summary {
        Summary {
            outcome: report.outcome,
            mode: report.mode,
            filesystems: report
                .filesystems
                .iter()
                .map(|f| FsSummary {
                    device: f.device.clone(),
                    fstype: f.fstype.clone(),
                    state_after: f.state_after,
                    status: f.fsck.status,
                })
                .collect(),
            changes: report.changes.len(),
            warnings: report.warnings.len(),
            plan: report.plan.len(),
            report_chunks: chunks,
            report_sha256: sha256.to_owned(),
        }
    }
}

/// JSON with every non-ASCII character as `\uXXXX`: printable ASCII that no console mangles.
fn ascii_json<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let text = serde_json::to_string(value)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    Ok(out.into_bytes())
}

fn check(body: &[u8]) -> String {
    hex(&Sha256::digest(body)[..8])
}

fn frame_line(
    run: &str,
    kind: Kind,
    seq: usize,
    total: usize,
    id: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = format!("{run} {} {seq}/{total} {id} ", kind.as_str()).into_bytes();
    body.extend_from_slice(payload);
    let sum = check(&body);
    // The check goes between the header and the payload.
    let head_len = body.len() - payload.len();
    let mut line = Vec::with_capacity(PREFIX.len() + body.len() + 18);
    line.extend_from_slice(PREFIX.as_bytes());
    line.extend_from_slice(&body[..head_len]);
    line.extend_from_slice(sum.as_bytes());
    line.push(b' ');
    line.extend_from_slice(payload);
    line.push(b'\n');
    line
}

/// A run id from 4 random bytes.
pub fn run_id(random: [u8; 4]) -> String {
    hex(&random)
}

/// The console lines for `msg` in run `run`: one frame for a hello or progress; for a report,
/// its chunks and then the summary.
pub fn frames(msg: &Message, run: &str) -> Result<Vec<Vec<u8>>, FrameError> {
    let Message::Report { report, .. } = msg else {
        return Ok(vec![frame_line(
            run,
            Kind::Message,
            0,
            1,
            "-",
            &ascii_json(msg)?,
        )]);
    };
    let json = ascii_json(msg)?;
    let sha = hex(&Sha256::digest(&json));
    let id = &sha[..16];
    let chunks: Vec<&[u8]> = json.chunks(CHUNK).collect();
    let total = chunks.len();
    let mut out: Vec<Vec<u8>> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| frame_line(run, Kind::Chunk, i, total, id, c))
        .collect();
    let summary = ascii_json(&Summary::of(report, total, &sha))?;
    out.push(frame_line(run, Kind::Summary, 0, 1, id, &summary));
    Ok(out)
}

/// One frame read back from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    run: String,
    kind: Kind,
    seq: usize,
    total: usize,
    id: String,
    payload: Vec<u8>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the frame in `line` (after our prefix, wherever it starts); `Err` when it carries
/// the prefix but is not a valid, intact frame.
fn parse_frame(rest: &[u8]) -> Result<Frame, &'static str> {
    let mut fields = rest.splitn(6, |&b| b == b' ');
    let mut next = || -> Result<&str, &'static str> {
        let f = fields.next().ok_or("cut short")?;
        std::str::from_utf8(f).map_err(|_| "not ASCII")
    };
    let run = next()?;
    let kind = next()?;
    let count = next()?;
    let id = next()?;
    let sum = next()?;
    let payload = fields.next().ok_or("cut short")?;
    if !is_hex(run, 8) || !is_hex(sum, 16) || !(id == "-" || is_hex(id, 16)) {
        return Err("malformed header");
    }
    let kind = Kind::parse(kind).ok_or("unknown kind")?;
    let (seq, total) = count.split_once('/').ok_or("malformed count")?;
    let (seq, total): (usize, usize) = (
        seq.parse().map_err(|_| "malformed count")?,
        total.parse().map_err(|_| "malformed count")?,
    );
    if total == 0 || seq >= total || total > MAX_CHUNKS || payload.len() > MAX_PAYLOAD {
        return Err("count or length out of bounds");
    }
    let mut body = format!("{run} {} {count} {id} ", kind.as_str()).into_bytes();
    body.extend_from_slice(payload);
    if check(&body) != sum.to_ascii_lowercase() {
        return Err("checksum mismatch");
    }
    Ok(Frame {
        run: run.to_owned(),
        kind,
        seq,
        total,
        id: id.to_owned(),
        payload: payload.to_vec(),
    })
}

/// Lines of a log: split on `\n`, with `\r` and NULs (padding, CRLF) removed, overlong lines
/// dropped (they cannot be frames).
fn lines(log: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    log.split(|&b| b == b'\n')
        .filter(|l| l.len() <= MAX_FRAME_LINE)
        .map(|l| {
            l.iter()
                .copied()
                .filter(|&b| b != b'\r' && b != 0)
                .collect()
        })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a console log gave back.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovered {
    /// The whole report, every chunk verified and the digest matching.
    Report(Box<Report>),
    /// Only the summary of the last run's report survived.
    Summary(Summary),
    /// No report: what was seen instead.
    Nothing(Scan),
}

/// Counts from a scan, for the message when there is no report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Valid frames.
    pub frames: usize,
    /// Lines with our prefix that failed their checks.
    pub bad: usize,
    /// Distinct runs seen.
    pub runs: usize,
    /// Chunks of the last run's report that arrived, and how many it has.
    pub chunks: Option<(usize, usize)>,
}

/// The last run's report from a console log: the full report when all its chunks are there and
/// verify, else its summary, else nothing (with what was seen). Earlier runs never stand in for
/// the last one.
pub fn recover(log: &[u8]) -> Recovered {
    let mut scan = Scan::default();
    let mut frames: std::collections::VecDeque<Frame> = std::collections::VecDeque::new();
    for line in lines(log) {
        let Some(pos) = find(&line, PREFIX.as_bytes()) else {
            continue;
        };
        match parse_frame(&line[pos + PREFIX.len()..]) {
            Ok(f) => {
                scan.frames += 1;
                if frames.len() >= MAX_FRAMES {
                    frames.pop_front();
                }
                frames.push_back(f);
            }
            Err(_) => scan.bad += 1,
        }
    }
    let mut runs: Vec<&str> = Vec::new();
    for f in &frames {
        if !runs.contains(&f.run.as_str()) {
            runs.push(&f.run);
        }
    }
    scan.runs = runs.len();
    let Some(last) = frames.back().map(|f| f.run.clone()) else {
        return Recovered::Nothing(scan);
    };
    let of_run: Vec<&Frame> = frames.iter().filter(|f| f.run == last).collect();
    // The run's last report id (a run sends one report; take the last if it sent more).
    let Some(id) = of_run
        .iter()
        .rev()
        .find(|f| f.kind != Kind::Message)
        .map(|f| f.id.clone())
    else {
        return Recovered::Nothing(scan);
    };
    let chunks: Vec<&&Frame> = of_run
        .iter()
        .filter(|f| f.kind == Kind::Chunk && f.id == id)
        .collect();
    if let Some(total) = chunks.last().map(|f| f.total) {
        let mut parts: Vec<Option<&[u8]>> = vec![None; total];
        for c in chunks.iter().filter(|c| c.total == total) {
            parts[c.seq] = Some(&c.payload);
        }
        let have = parts.iter().filter(|p| p.is_some()).count();
        scan.chunks = Some((have, total));
        if have == total {
            let json: Vec<u8> = parts.into_iter().flatten().flatten().copied().collect();
            let whole = hex(&Sha256::digest(&json));
            if whole.starts_with(&id) {
                if let Ok(Message::Report { report, .. }) = serde_json::from_slice(&json) {
                    return Recovered::Report(report);
                }
            }
        }
    }
    let summary = of_run
        .iter()
        .rev()
        .filter(|f| f.kind == Kind::Summary && f.id == id)
        .find_map(|f| serde_json::from_slice::<Summary>(&f.payload).ok());
    match summary {
        Some(s) => Recovered::Summary(s),
        None => Recovered::Nothing(scan),
    }
}

/// The last run's full report in a console log, if it is all there.
pub fn last_report(log: &[u8]) -> Option<Report> {
    match recover(log) {
        Recovered::Report(r) => Some(*r),
        _ => None,
    }
}

/// Every intact `m` frame's message, in order (progress shown from a log).
pub fn messages(log: &[u8]) -> Vec<Message> {
    lines(log)
        .filter_map(|line| {
            let pos = find(&line, PREFIX.as_bytes())?;
            let f = parse_frame(&line[pos + PREFIX.len()..]).ok()?;
            (f.kind == Kind::Message)
                .then(|| crate::frame::decode(&f.payload).ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Change, Filesystem, Warning};

    fn big_report(n: usize) -> Report {
        Report {
            outcome: Outcome::Repaired,
            mode: Mode::Repair,
            filesystems: vec![Filesystem {
                device: "/dev/vda1".into(),
                fstype: "ext4".into(),
                label: Some("rööt ✓".into()),
                ..Default::default()
            }],
            warnings: (0..n)
                .map(|i| Warning {
                    step: crate::Step::Fsck,
                    message: format!("warning number {i} with some text to fill the line"),
                    device: None,
                })
                .collect(),
            changes: vec![Change {
                kind: crate::ChangeKind::Fsck,
                path: "/dev/vda1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn log_of(run: &str, msgs: &[Message]) -> Vec<u8> {
        msgs.iter()
            .flat_map(|m| frames(m, run).unwrap())
            .flatten()
            .collect()
    }

    #[test]
    fn frames_are_printable_ascii_lines_with_chunks_then_summary() {
        let r = big_report(200);
        let f = frames(&Message::report(r), "0a1b2c3d").unwrap();
        assert!(f.len() > 3, "a big report is chunked");
        for line in &f {
            assert!(line.starts_with(PREFIX.as_bytes()));
            assert_eq!(line.last(), Some(&b'\n'));
            assert!(line[..line.len() - 1]
                .iter()
                .all(|b| b.is_ascii_graphic() || *b == b' '));
        }
        assert!(String::from_utf8_lossy(f.last().unwrap()).contains(" s 0/1 "));
    }

    #[test]
    fn report_survives_kernel_noise_crlf_nul_padding_and_a_cut_front() {
        let r = big_report(300);
        let mut log = vec![b'x'; 5000];
        log.extend_from_slice(b"\n[    1.0] EXT4-fs (vda1): mounted\r\n");
        log.extend(log_of(
            "0a1b2c3d",
            &[Message::hello("1", Mode::Repair, "6.1")],
        ));
        for line in frames(&Message::report(r.clone()), "0a1b2c3d").unwrap() {
            // A kernel line before our frame on the same line, CRLF and padding after.
            log.extend_from_slice(b"[  2.0] virtio_blk: ok ");
            log.extend_from_slice(&line[..line.len() - 1]);
            log.extend_from_slice(b"\r\n\0\0");
        }
        log.extend_from_slice(b"reboot: Power down\r\n");
        assert_eq!(recover(&log), Recovered::Report(Box::new(r.clone())));
        // The front cut off in the middle of the noise: still whole.
        assert_eq!(last_report(&log[4000..]), Some(r));
        assert_eq!(messages(&log).len(), 1);
    }

    #[test]
    fn a_short_tail_still_has_the_summary() {
        let r = big_report(300);
        let log = log_of("0a1b2c3d", &[Message::report(r.clone())]);
        let tail = &log[log.len() - 700..];
        match recover(tail) {
            Recovered::Summary(s) => {
                assert_eq!(s.outcome, Outcome::Repaired);
                assert_eq!(s.filesystems[0].device, "/dev/vda1");
                assert_eq!(s.filesystems[0].fstype, "ext4");
                assert_eq!(s.warnings, 300);
                assert_eq!(s.changes, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_last_run_wins_and_never_borrows_an_earlier_report() {
        let first = big_report(1);
        let mut second = big_report(2);
        second.outcome = Outcome::Unrepaired;
        let mut log = log_of("00000001", &[Message::report(first.clone())]);
        log.extend(log_of("00000002", &[Message::report(second.clone())]));
        assert_eq!(last_report(&log), Some(second));
        // A third run that only said hello: nothing, not the second run's report.
        log.extend(log_of(
            "00000003",
            &[Message::hello("1", Mode::Check, "6.1")],
        ));
        match recover(&log) {
            Recovered::Nothing(s) => assert_eq!((s.runs, s.bad), (3, 0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_corrupted_frame_is_refused() {
        let r = big_report(50);
        let f = frames(&Message::report(r), "0a1b2c3d").unwrap();
        let mut log: Vec<u8> = Vec::new();
        for (i, mut line) in f.into_iter().enumerate() {
            if i == 1 {
                // One byte of a chunk's payload flipped.
                let at = line.len() - 10;
                line[at] ^= 0x01;
            }
            log.extend(line);
        }
        match recover(&log) {
            Recovered::Summary(_) => {}
            other => panic!("a damaged chunk must not give a report: {other:?}"),
        }
        // The summary itself damaged too: nothing, and the bad frames are counted.
        let n = log.len();
        log[n - 5] ^= 0x01;
        match recover(&log) {
            Recovered::Nothing(s) => {
                assert_eq!(s.bad, 2);
                assert_eq!(s.chunks.map(|(have, _)| have + 1), s.chunks.map(|(_, t)| t));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forged_headers_are_bounded() {
        for forged in [
            "@vmrescue:v2 0a1b2c3d r 0/999999999 0123456789abcdef 0123456789abcdef x\n",
            "@vmrescue:v2 0a1b2c3d r 5/2 0123456789abcdef 0123456789abcdef x\n",
            "@vmrescue:v2 0a1b2c3d r 0/18446744073709551616 0123456789abcdef 0123456789abcdef x\n",
            "@vmrescue:v2 0a1b2c3d q 0/1 - 0123456789abcdef x\n",
            "@vmrescue:v2 zz 0/1\n",
        ] {
            match recover(forged.as_bytes()) {
                Recovered::Nothing(s) => assert_eq!((s.frames, s.bad), (0, 1), "{forged}"),
                other => panic!("{forged}: {other:?}"),
            }
        }
        assert_eq!(recover(b""), Recovered::Nothing(Scan::default()));
        assert_eq!(last_report(b"Kernel panic - not syncing\n"), None);
    }
}
