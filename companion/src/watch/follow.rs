//! Following a domain's console log as it grows, the way `tail -F` does, without taking the
//! console from anyone: the file is only read. Truncation (a log reopened with
//! `append='off'`), rotation (virtlogd renames it and starts a new one), deletion and an
//! endless line are handled; memory stays bounded.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::kernel_lines::MAX_LINE;

/// Bytes read from one file per poll at most (the rest waits for the next poll).
pub const READ_BUDGET: usize = 1 << 20;

/// Something about the file itself, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// It was cut shorter than where reading was: read again from its start.
    Truncated,
    /// Another file took its name (log rotation): the old one was read to its end.
    Rotated,
    /// It is gone; it is picked up again if it comes back.
    Gone,
    /// It cannot be opened or read.
    Unreadable(String),
}

pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of the open file.
    id: (u64, u64),
    pos: u64,
    /// The start of an unfinished line (at most MAX_LINE bytes kept).
    partial: Vec<u8>,
    /// The unfinished line is longer than MAX_LINE: the rest is dropped up to its newline.
    overlong: bool,
    /// The first open starts at the end (what was there before the watch is history).
    from_end: bool,
    gone: bool,
    unreadable: bool,
}

impl Follower {
    /// Follows `path`; `from_end`: a file there now is read from its current end.
    pub fn new(path: &Path, from_end: bool) -> Follower {
        Follower {
            path: path.to_owned(),
            file: None,
            id: (0, 0),
            pos: 0,
            partial: Vec::new(),
            overlong: false,
            from_end,
            gone: false,
            unreadable: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was added since the last poll: complete lines into `lines` (lossy UTF-8,
    /// at most MAX_LINE bytes each), and what happened to the file into `notices`.
    pub fn poll(&mut self, lines: &mut Vec<String>, notices: &mut Vec<Notice>) {
        let mut budget = READ_BUDGET;
        let meta = fs::metadata(&self.path);
        if self.file.is_some() {
            let same = meta.as_ref().is_ok_and(|m| (m.dev(), m.ino()) == self.id);
            if same {
                let len = meta.as_ref().map_or(0, |m| m.len());
                if len < self.pos {
                    notices.push(Notice::Truncated);
                    self.pos = 0;
                    self.partial.clear();
                    self.overlong = false;
                }
                self.read(&mut budget, lines, notices);
                return;
            }
            // Renamed, replaced or deleted: what was written to the old file before it went.
            self.read(&mut budget, lines, notices);
            self.end_line(lines);
            self.file = None;
            if meta.is_ok() {
                notices.push(Notice::Rotated);
                self.from_end = false;
            }
        }
        match meta {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.gone {
                    self.gone = true;
                    notices.push(Notice::Gone);
                }
                self.from_end = false;
            }
            Err(e) => self.unreadable(e, notices),
            Ok(m) => match File::open(&self.path) {
                Ok(f) => {
                    self.gone = false;
                    self.unreadable = false;
                    self.id = (m.dev(), m.ino());
                    self.pos = if std::mem::take(&mut self.from_end) {
                        m.len()
                    } else {
                        0
                    };
                    self.partial.clear();
                    self.overlong = false;
                    self.file = Some(f);
                    self.read(&mut budget, lines, notices);
                }
                Err(e) => self.unreadable(e, notices),
            },
        }
    }

    fn unreadable(&mut self, e: io::Error, notices: &mut Vec<Notice>) {
        if !self.unreadable {
            self.unreadable = true;
            notices.push(Notice::Unreadable(e.to_string()));
        }
    }

    fn read(&mut self, budget: &mut usize, lines: &mut Vec<String>, notices: &mut Vec<Notice>) {
        let Some(mut f) = self.file.take() else {
            return;
        };
        self.read_from(&mut f, budget, lines, notices);
        self.file = Some(f);
    }

    fn read_from(
        &mut self,
        f: &mut File,
        budget: &mut usize,
        lines: &mut Vec<String>,
        notices: &mut Vec<Notice>,
    ) {
        if let Err(e) = f.seek(SeekFrom::Start(self.pos)) {
            notices.push(Notice::Unreadable(e.to_string()));
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        while *budget > 0 {
            let want = buf.len().min(*budget);
            let n = match f.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    notices.push(Notice::Unreadable(e.to_string()));
                    break;
                }
            };
            *budget -= n;
            self.pos += n as u64;
            self.split(&buf[..n], lines);
        }
    }

    fn split(&mut self, mut data: &[u8], lines: &mut Vec<String>) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.take(&data[..i]);
                    self.end_line(lines);
                    data = &data[i + 1..];
                }
                None => {
                    self.take(data);
                    break;
                }
            }
        }
    }

    /// Keeps the first MAX_LINE bytes of the current line.
    fn take(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.overlong = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self, lines: &mut Vec<String>) {
        if !self.partial.is_empty() || self.overlong {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        self.partial.clear();
        self.overlong = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(p: &Path, s: &[u8]) {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
            .write_all(s)
            .unwrap();
    }

    fn poll(f: &mut Follower) -> (Vec<String>, Vec<Notice>) {
        let (mut l, mut n) = (Vec::new(), Vec::new());
        f.poll(&mut l, &mut n);
        (l, n)
    }

    #[test]
    fn follows_from_the_end_through_truncation_rotation_and_deletion() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        append(&p, b"old line before the watch\n");
        let mut f = Follower::new(&p, true);
        assert_eq!(poll(&mut f), (vec![], vec![]));
        append(&p, b"one\ntw");
        assert_eq!(poll(&mut f).0, ["one"]);
        append(&p, b"o\r\n");
        assert_eq!(poll(&mut f).0, ["two\r"]);
        // Truncated (append='off' on the domain's next start).
        fs::write(&p, b"new\n").unwrap();
        assert_eq!(poll(&mut f), (vec!["new".into()], vec![Notice::Truncated]));
        // Rotated: the rest of the old file, then the new one from its start.
        append(&p, b"last of old\n");
        fs::rename(&p, d.path().join("console.log.0")).unwrap();
        append(&p, b"first of new\n");
        assert_eq!(
            poll(&mut f),
            (
                vec!["last of old".into(), "first of new".into()],
                vec![Notice::Rotated]
            )
        );
        // Deleted: said once; a new file is read from its start.
        fs::remove_file(&p).unwrap();
        assert_eq!(poll(&mut f), (vec![], vec![Notice::Gone]));
        assert_eq!(poll(&mut f), (vec![], vec![]));
        append(&p, b"back\n");
        assert_eq!(poll(&mut f), (vec!["back".into()], vec![]));
    }

    #[test]
    fn an_endless_line_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        fs::write(&p, b"").unwrap();
        let mut f = Follower::new(&p, false);
        let chunk = vec![b'A'; 1 << 20];
        for _ in 0..8 {
            append(&p, &chunk);
            let (l, _) = poll(&mut f);
            assert!(l.is_empty());
            assert!(f.partial.len() <= MAX_LINE);
        }
        append(&p, b"\nEXT4-fs (vda): Remounting filesystem read-only\n");
        let mut all = Vec::new();
        for _ in 0..4 {
            all.extend(poll(&mut f).0);
        }
        assert_eq!(
            all.len(),
            2,
            "the long line cut, then the next: {:?}",
            all.len()
        );
        assert_eq!(all[0].len(), MAX_LINE);
        assert_eq!(all[1], "EXT4-fs (vda): Remounting filesystem read-only");
    }

    #[test]
    fn a_file_that_is_not_there_yet_is_read_from_its_start() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("later.log");
        let mut f = Follower::new(&p, true);
        assert_eq!(poll(&mut f).1, [Notice::Gone]);
        append(&p, b"hello\n");
        assert_eq!(poll(&mut f).0, ["hello"]);
    }
}
