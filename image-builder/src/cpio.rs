//! A newc ("070701") cpio writer, the format the kernel unpacks as an initramfs. Entries are
//! written in the order given; the caller sorts them for reproducibility.

use std::io::{self, Write};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without leading `/`.
    pub path: String,
    /// Permission bits (the type bits come from `kind`).
    pub mode: u32,
    pub kind: Kind,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

fn pad4(w: &mut impl Write, len: usize) -> io::Result<()> {
    let pad = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..pad])
}

#[allow(clippy::too_many_arguments)]
fn header(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let namesize = name.len() + 1;
    write!(
        w,
        "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{filesize:08x}{dmaj:08x}{dmin:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
        uid = 0,
        gid = 0,
        dmaj = 0,
        dmin = 0,
        rmaj = rdev.0,
        rmin = rdev.1,
        check = 0,
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w, 110 + namesize)
}

/// Writes the archive, trailer included. All entries get `mtime` and owner root.
pub fn write(w: &mut impl Write, entries: &[Entry], mtime: u32) -> io::Result<()> {
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let path = e.path.trim_start_matches('/');
        let perm = e.mode & 0o7777;
        let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &e.kind {
            Kind::Dir => (S_IFDIR | perm, 2, &[], (0, 0)),
            Kind::File(d) => (S_IFREG | perm, 1, d, (0, 0)),
            Kind::Symlink(t) => (S_IFLNK | 0o777, 1, t.as_bytes(), (0, 0)),
            Kind::CharDev { major, minor } => (S_IFCHR | perm, 1, &[], (*major, *minor)),
        };
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::other(format!("{path}: larger than 4 GiB, too big for cpio"))
        })?;
        header(w, ino, mode, nlink, mtime, size, rdev, path)?;
        w.write_all(data)?;
        pad4(w, data.len())?;
    }
    header(w, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sample() -> Vec<Entry> {
        vec![
            Entry {
                path: "dev".into(),
                mode: 0o755,
                kind: Kind::Dir,
            },
            Entry {
                path: "dev/console".into(),
                mode: 0o600,
                kind: Kind::CharDev { major: 5, minor: 1 },
            },
            Entry {
                path: "init".into(),
                mode: 0o755,
                kind: Kind::File(b"#!/bin/sh\n".to_vec()),
            },
            Entry {
                path: "bin/sh".into(),
                mode: 0o777,
                kind: Kind::Symlink("busybox".into()),
            },
        ]
    }

    #[test]
    fn layout_is_aligned_and_ends_with_trailer() {
        let mut out = Vec::new();
        write(&mut out, &sample(), 1234).unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        let tail = String::from_utf8_lossy(&out[out.len() - 16..]).into_owned();
        assert!(tail.contains("TRAILER!!!"), "{tail}");
    }

    #[test]
    fn gnu_cpio_reads_it_back() {
        // The host's cpio is the independent reader (installed by scripts/setup.sh).
        let mut out = Vec::new();
        write(&mut out, &sample(), 1234).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, &out).unwrap();
        let listing = Command::new("cpio")
            .args(["-itv", "--quiet", "-F"])
            .arg(&archive)
            .output()
            .expect("cpio must be installed (scripts/setup.sh)");
        assert!(listing.status.success());
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(text.contains("dev/console"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("crw-------")
                && l.contains("5,")
                && l.contains("dev/console")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("lrwxrwxrwx") && l.contains("bin/sh -> busybox")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("-rwxr-xr-x") && l.contains(" 10 ") && l.ends_with("init")),
            "{text}"
        );
    }
}
