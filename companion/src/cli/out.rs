//! The commands' standard output. A reader that goes away (`vmrescue inspect IMG | head -1`)
//! ends the output quietly, as Unix tools end, instead of a panic: Rust ignores SIGPIPE, so a
//! write to a closed pipe is an error (`BrokenPipe`) here, and `print!` would panic on it.

use std::io::{self, Write};

/// Whether `e` says that the reader went away.
pub fn reader_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes `text` to `w` and flushes it. A reader that went away is not an error (the command
/// goes on to its own exit status, printing nothing more); any other write error is said on
/// standard error.
pub fn write_to(w: &mut dyn Write, text: &str) {
    if let Err(e) = w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
        if !reader_gone(&e) {
            eprintln!("vmrescue: cannot write to standard output: {e}");
        }
    }
}

/// Writes `text` to standard output (see [`write_to`]).
pub fn print(text: &str) {
    write_to(&mut io::stdout().lock(), text);
}

/// [`print`] with a newline.
pub fn println(text: &str) {
    print(&format!("{text}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that went away after `room` bytes.
    struct Closed {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Closed {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_went_away_ends_the_output_quietly() {
        let mut w = Closed {
            room: 5,
            got: Vec::new(),
        };
        write_to(&mut w, "first line\nsecond line\n");
        write_to(&mut w, "more\n");
        assert_eq!(w.got, b"first");
        assert!(reader_gone(&io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(!reader_gone(&io::Error::from(io::ErrorKind::StorageFull)));
    }
}
