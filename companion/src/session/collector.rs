//! Reading the agent's channel. The guest is hostile: lines are capped (see
//! [`vmrescue_protocol::LineReader`]), whatever does not parse is counted and dropped, and
//! nothing the guest says is used as a path or reaches a shell.

use std::io::{self, Read};

use vmrescue_protocol::{frame, FrameError, LineReader, Message};

/// What one read produced.
#[derive(Debug)]
pub enum Event {
    Message(Message),
    /// A line that was rejected, and why.
    Rejected(String),
    /// Nothing arrived before the read timeout.
    Idle,
    /// The host end closed (QEMU exited).
    Closed,
}

pub struct Collector<R> {
    lines: LineReader<R>,
    pub rejected: usize,
}

impl<R: Read> Collector<R> {
    pub fn new(inner: R) -> Self {
        Collector {
            lines: LineReader::new(inner),
            rejected: 0,
        }
    }

    pub fn next_event(&mut self) -> Event {
        match self.lines.next_line() {
            Ok(Some(line)) if line.iter().all(|b| b.is_ascii_whitespace()) => Event::Idle,
            Ok(Some(line)) => match frame::decode(&line) {
                Ok(m) => Event::Message(m),
                Err(e) => {
                    self.rejected += 1;
                    Event::Rejected(e.to_string())
                }
            },
            Ok(None) => Event::Closed,
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Event::Idle
            }
            Err(FrameError::Io(_)) => Event::Closed,
            Err(e) => {
                self.rejected += 1;
                Event::Rejected(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_protocol::{Mode, Report};

    fn events(input: &[u8]) -> Vec<String> {
        let mut c = Collector::new(input);
        let mut out = Vec::new();
        loop {
            match c.next_event() {
                Event::Closed => break,
                Event::Idle => out.push("idle".into()),
                Event::Rejected(_) => out.push("rejected".into()),
                Event::Message(Message::Report { .. }) => out.push("report".into()),
                Event::Message(_) => out.push("message".into()),
            }
        }
        out
    }

    #[test]
    fn hostile_stream_is_survived() {
        let mut input = Vec::new();
        input.extend(frame::encode(&Message::hello("1", Mode::Repair, "k")).unwrap());
        input.extend_from_slice(b"\xff\xfe\xfd\n");
        input.extend_from_slice(
            b"{\"type\":\"report\",\"v\":1,\"report\":{\"outcome\":\"pwned\"}}\n",
        );
        input.extend_from_slice(b"{\"type\":\"report\",\"v\":99,\"report\":{}}\n");
        input.extend(vec![b'{'; vmrescue_protocol::MAX_LINE + 5]);
        input.extend_from_slice(b"\n\n");
        input.extend(frame::encode(&Message::report(Report::default())).unwrap());
        assert_eq!(
            events(&input),
            ["message", "rejected", "rejected", "rejected", "rejected", "idle", "report"]
        );
    }
}
