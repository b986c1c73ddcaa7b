//! Line framing with a hard size cap, for reading hostile input.

use std::io::{self, Read};

use crate::message::{Message, PROTOCOL_VERSION};

/// Longest line either side accepts, newline excluded.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("line longer than {MAX_LINE} bytes; discarded")]
    TooLong,
    #[error("line is not UTF-8")]
    NotUtf8,
    #[error("line is not a valid message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported protocol version {0} (this side speaks {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("reading: {0}")]
    Io(#[from] io::Error),
}

/// Serialises a message as one line (JSON and `\n`), refusing one over [`MAX_LINE`].
pub fn encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    let mut line = serde_json::to_vec(msg)?;
    if line.len() > MAX_LINE {
        return Err(FrameError::TooLong);
    }
    line.push(b'\n');
    Ok(line)
}

/// Parses one line (without its newline) into a message of a version this side speaks.
pub fn decode(line: &[u8]) -> Result<Message, FrameError> {
    if line.len() > MAX_LINE {
        return Err(FrameError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| FrameError::NotUtf8)?;
    let text = text.trim_end_matches('\r');
    let msg: Message = serde_json::from_str(text)?;
    if msg.version() != PROTOCOL_VERSION {
        return Err(FrameError::Version(msg.version()));
    }
    Ok(msg)
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes. An overlong line is reported
/// once as [`FrameError::TooLong`] and skipped up to its newline; memory stays bounded.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out or skipped.
    start: usize,
    /// Inside an overlong line: drop bytes until the next newline.
    skipping: bool,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(8192),
            start: 0,
            skipping: false,
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Next complete line without its newline; `Ok(None)` at end of stream. A final line without
    /// newline is returned too. Read errors (including timeouts) are passed through and the
    /// reader can be called again afterwards.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            if let Some(pos) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let end = self.start + pos;
                let line = if self.skipping || end - self.start > MAX_LINE {
                    Vec::new()
                } else {
                    self.buf[self.start..end].to_vec()
                };
                let overlong = end - self.start > MAX_LINE;
                self.start = end + 1;
                self.compact();
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                if overlong {
                    return Err(FrameError::TooLong);
                }
                return Ok(Some(line));
            }
            if self.buf.len() - self.start > MAX_LINE {
                self.buf.clear();
                self.start = 0;
                if !self.skipping {
                    self.skipping = true;
                    return Err(FrameError::TooLong);
                }
            }
            if self.eof {
                if self.start < self.buf.len() && !self.skipping {
                    let line = self.buf[self.start..].to_vec();
                    self.buf.clear();
                    self.start = 0;
                    return Ok(Some(line));
                }
                return Ok(None);
            }
            let mut chunk = [0u8; 8192];
            match self.inner.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
    }

    fn compact(&mut self) {
        if self.start > 64 * 1024 || self.start == self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Progress;

    fn progress(step: &str) -> Message {
        Message::progress(Progress {
            step: step.into(),
            message: "m".into(),
            device: None,
            elapsed_s: 0.5,
        })
    }

    #[test]
    fn roundtrip() {
        let msg = progress("fsck");
        let line = encode(&msg).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(decode(&line[..line.len() - 1]).unwrap(), msg);
    }

    #[test]
    fn rejects_other_versions_and_garbage() {
        let line = br#"{"type":"progress","v":2,"step":"x","message":"y"}"#;
        assert!(matches!(decode(line), Err(FrameError::Version(2))));
        assert!(matches!(decode(b"\xff\xfe"), Err(FrameError::NotUtf8)));
        assert!(matches!(
            decode(b"{\"type\":\"nope\",\"v\":1}"),
            Err(FrameError::Json(_))
        ));
        assert!(matches!(decode(b"[[[[[[[["), Err(FrameError::Json(_))));
        // Deep nesting must not blow the stack.
        let deep = "[".repeat(100_000);
        assert!(decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn reader_splits_and_resyncs_after_overlong_line() {
        let mut input = Vec::new();
        input.extend_from_slice(b"first\r\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\nsecond\nlast-no-newline");
        let mut r = LineReader::new(&input[..]);
        assert_eq!(r.next_line().unwrap().unwrap(), b"first\r");
        assert!(matches!(r.next_line(), Err(FrameError::TooLong)));
        assert_eq!(r.next_line().unwrap().unwrap(), b"second");
        assert_eq!(r.next_line().unwrap().unwrap(), b"last-no-newline");
        assert!(r.next_line().unwrap().is_none());
    }

    #[test]
    fn reader_memory_stays_bounded_on_endless_line() {
        let input = vec![b'a'; 5 * MAX_LINE];
        let mut r = LineReader::new(&input[..]);
        assert!(matches!(r.next_line(), Err(FrameError::TooLong)));
        assert!(r.next_line().unwrap().is_none());
        assert!(r.buf.capacity() <= 2 * MAX_LINE + 16384);
    }
}
