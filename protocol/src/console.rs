//! Messages mirrored on the serial console, so a host can recover them from a console log when
//! the virtio-serial channel is missing or broken.
//!
//! Each message is one console line: [`PREFIX`] followed by the message's JSON.

use crate::frame::{decode, encode, FrameError, LineReader};
use crate::message::Message;

/// Marks a vmrescue line on the console.
pub const PREFIX: &str = "@vmrescue:v1 ";

/// The console line for a message (with its newline).
pub fn frame(msg: &Message) -> Result<Vec<u8>, FrameError> {
    let json = encode(msg)?;
    let mut line = Vec::with_capacity(PREFIX.len() + json.len());
    line.extend_from_slice(PREFIX.as_bytes());
    line.extend_from_slice(&json);
    Ok(line)
}

/// Every framed message in a console log, in order; lines that carry the prefix but do not
/// parse are returned as errors (a kernel message may have cut into them). Other lines are
/// ignored.
pub fn extract(log: &[u8]) -> Vec<Result<Message, FrameError>> {
    let mut out = Vec::new();
    let mut lines = LineReader::new(log);
    loop {
        match lines.next_line() {
            Ok(Some(line)) => {
                if let Some(pos) = find(&line, PREFIX.as_bytes()) {
                    out.push(decode(&line[pos + PREFIX.len()..]));
                }
            }
            Ok(None) => break,
            Err(FrameError::Io(_)) => break,
            Err(e) => out.push(Err(e)),
        }
    }
    out
}

/// The last report found in a console log, if any.
pub fn last_report(log: &[u8]) -> Option<crate::report::Report> {
    extract(log).into_iter().rev().find_map(|m| match m {
        Ok(Message::Report { report, .. }) => Some(*report),
        _ => None,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Mode, Outcome, Report};

    #[test]
    fn extracts_report_between_kernel_noise() {
        let report = Report {
            outcome: Outcome::Repaired,
            mode: Mode::Repair,
            ..Default::default()
        };
        let mut log =
            b"[    1.0] virtio_blk virtio1: [vda] 131072 512-byte logical blocks\r\n".to_vec();
        log.extend(frame(&Message::hello("0.1", Mode::Repair, "6.1")).unwrap());
        log.extend_from_slice(b"@vmrescue:v1 {\"type\":\"report\",\"v\":1,\"rep[ 2.0] cut\r\n");
        let mut framed = frame(&Message::report(report.clone())).unwrap();
        // The tty turns \n into \r\n.
        framed.pop();
        framed.extend_from_slice(b"\r\n");
        log.extend(framed);
        log.extend_from_slice(b"reboot: Power down\r\n");
        let msgs = extract(&log);
        assert_eq!(msgs.len(), 3);
        assert!(msgs[1].is_err());
        assert_eq!(last_report(&log), Some(report));
    }

    #[test]
    fn no_report_in_plain_log() {
        assert_eq!(last_report(b"Kernel panic - not syncing\n"), None);
        assert_eq!(last_report(b""), None);
    }
}
