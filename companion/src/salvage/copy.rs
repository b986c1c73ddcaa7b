//! Copying a deleted file out through `/proc/PID/fd/N`: only its data extents
//! (SEEK_DATA/SEEK_HOLE, `copy_file_range`, read/write as fallback), into a temporary file that is
//! verified against a second read, given its owner and mode, synced, then renamed into place
//! without ever replacing an existing file.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, SeekFrom};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use vmrescue_protocol::digest::hex;

use super::owners::{apply_owner, Resolved};
use super::plan::Holder;

/// Why one file could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "cannot read the deleted file {} through /proc/{pid}/fd/{fd}: {source}; if the process \
         exited the data is gone, otherwise run as root",
        path.display()
    )]
    Source {
        path: PathBuf,
        pid: u32,
        fd: u32,
        source: io::Error,
    },
    #[error(
        "{} changed while it was copied ({detail}); the VM is probably still writing to it: \
         retry with --suspend",
        path.display()
    )]
    SourceChanged { path: PathBuf, detail: String },
    #[error(
        "cannot write {}: {source}; check free space and permissions at the destination",
        path.display()
    )]
    Write { path: PathBuf, source: io::Error },
    #[error("the copy {} failed verification: {detail}; it was not kept", path.display())]
    Verify { path: PathBuf, detail: String },
}

/// Buffer size for read/write copies and hashing.
const CHUNK: usize = 1 << 20;
/// Longest single `copy_file_range` request.
const CFR_MAX: u64 = 1 << 30;

/// The next data extent `[start, end)` at or after `off`, or `None` when only holes remain.
/// File systems without SEEK_DATA report the whole rest as data.
pub fn next_data(fd: BorrowedFd<'_>, off: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
    if off >= size {
        return Ok(None);
    }
    let start = match rfs::seek(fd, SeekFrom::Data(off)) {
        Ok(s) => s,
        Err(Errno::NXIO) => return Ok(None),
        Err(Errno::INVAL) | Err(Errno::OPNOTSUPP) => return Ok(Some((off, size))),
        Err(e) => return Err(e.into()),
    };
    if start >= size {
        return Ok(None);
    }
    let end = match rfs::seek(fd, SeekFrom::Hole(start)) {
        Ok(e) => e.min(size),
        Err(Errno::NXIO) => size,
        Err(e) => return Err(e.into()),
    };
    // Never loop on a zero-length extent (a racing truncate): take the rest as data.
    Ok(Some((start, if end > start { end } else { size })))
}

/// How the data moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes of data extents copied (holes are not written).
    pub data_bytes: u64,
    /// Whether `copy_file_range` did it (else read/write).
    pub copy_file_range: bool,
}

fn early_eof(at: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the source ended at byte {at}, before its recorded size (truncated meanwhile?)"),
    )
}

fn copy_extent(
    src: &File,
    dst: &File,
    start: u64,
    end: u64,
    use_cfr: &mut bool,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let mut pos = start;
    while pos < end {
        if *use_cfr {
            let len = usize::try_from((end - pos).min(CFR_MAX)).unwrap_or(CHUNK);
            let (mut off_in, mut off_out) = (pos, pos);
            match rfs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), len) {
                Ok(0) => return Err(early_eof(pos)),
                Ok(n) => {
                    pos += n as u64;
                    continue;
                }
                // Not supported across these file systems: read and write instead.
                Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                    *use_cfr = false
                }
                Err(e) => return Err(e.into()),
            }
        }
        if buf.is_empty() {
            buf.resize(CHUNK, 0);
        }
        let want = usize::try_from((end - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
        let n = rustix::io::pread(src, &mut buf[..want], pos)?;
        if n == 0 {
            return Err(early_eof(pos));
        }
        let mut written = 0;
        while written < n {
            let w = rustix::io::pwrite(dst, &buf[written..n], pos + written as u64)?;
            if w == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
            }
            written += w;
        }
        pos += n as u64;
    }
    Ok(())
}

/// Copies the first `size` bytes of `src` into `dst` (sized to `size`), writing only data
/// extents so holes stay holes.
pub fn sparse_copy(src: &File, dst: &File, size: u64) -> io::Result<CopyStats> {
    rfs::ftruncate(dst, size)?;
    let mut use_cfr = true;
    let mut buf = Vec::new();
    let mut data_bytes = 0;
    let mut off = 0;
    while let Some((start, end)) = next_data(src.as_fd(), off, size)? {
        copy_extent(src, dst, start, end, &mut use_cfr, &mut buf)?;
        data_bytes += end - start;
        off = end;
    }
    Ok(CopyStats {
        data_bytes,
        copy_file_range: use_cfr,
    })
}

/// SHA-256 of the first `size` bytes of `f` (holes hashed as zeros without reading them), as hex.
pub fn sha256_sparse(f: &File, size: u64) -> io::Result<String> {
    let mut h = Sha256::new();
    let zeros = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let zero_fill = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(CHUNK as u64);
            h.update(&zeros[..k as usize]);
            n -= k;
        }
    };
    let mut pos = 0;
    while pos < size {
        let Some((start, end)) = next_data(f.as_fd(), pos, size)? else {
            zero_fill(&mut h, size - pos);
            break;
        };
        zero_fill(&mut h, start - pos);
        pos = start;
        while pos < end {
            let want = (end - pos).min(CHUNK as u64) as usize;
            let n = rustix::io::pread(f, &mut buf[..want], pos)?;
            if n == 0 {
                return Err(early_eof(pos));
            }
            h.update(&buf[..n]);
            pos += n as u64;
        }
    }
    Ok(hex(&h.finalize()))
}

/// Opens the file through the first holder whose descriptor still points at inode
/// (`dev`, `ino`). Each open is a new open file description: the holder's offset is untouched.
pub fn open_source(
    proc_root: &Path,
    holders: &[Holder],
    dev: u64,
    ino: u64,
    original: &Path,
) -> Result<(File, Holder), CopyError> {
    let mut last: Option<(Holder, io::Error)> = None;
    for h in holders {
        let p = proc_root
            .join(h.pid.to_string())
            .join("fd")
            .join(h.fd.to_string());
        match File::open(&p).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok((f, m)) if m.dev() == dev && m.ino() == ino => return Ok((f, *h)),
            Ok(_) => {
                last = Some((
                    *h,
                    io::Error::other("the descriptor now points at another file"),
                ))
            }
            Err(e) => last = Some((*h, e)),
        }
    }
    let (h, source) =
        last.unwrap_or_else(|| (Holder { pid: 0, fd: 0 }, io::Error::other("no holder")));
    Err(CopyError::Source {
        path: original.to_path_buf(),
        pid: h.pid,
        fd: h.fd,
        source,
    })
}

/// Whether `name` exists in `dir` (any type, symlinks not followed).
pub fn exists_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<bool, CopyError> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(CopyError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the temporary file unless disarmed.
struct TempFile<'a> {
    dir: BorrowedFd<'a>,
    name: OsString,
    armed: bool,
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rfs::unlinkat(self.dir, self.name.as_os_str(), AtFlags::empty());
        }
    }
}

fn create_temp<'a>(dir: BorrowedFd<'a>, path: &Path) -> Result<(File, TempFile<'a>), CopyError> {
    let pid = std::process::id();
    for _ in 0..1000 {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = OsString::from(format!(".vmrescue-salvage.{pid}.{n}.tmp"));
        match rfs::openat(
            dir,
            name.as_os_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => {
                return Ok((
                    File::from(fd),
                    TempFile {
                        dir,
                        name,
                        armed: true,
                    },
                ))
            }
            Err(Errno::EXIST) => continue,
            Err(e) => {
                return Err(CopyError::Write {
                    path: path.with_file_name(&name),
                    source: e.into(),
                })
            }
        }
    }
    Err(CopyError::Write {
        path: path.to_path_buf(),
        source: io::Error::other("no free temporary file name"),
    })
}

/// A verified copy in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub stats: CopyStats,
    pub sha256: String,
    /// Bytes allocated to the copy on disk.
    pub allocated: u64,
    pub warnings: Vec<String>,
}

/// What `copy_file` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Copied(Copied),
    /// The destination exists: nothing was written.
    Exists,
}

/// Copies `size` bytes of `src` to `name` in `dir` (`path` names it in messages): temp file,
/// sparse copy, owner and mode, fsync, verification of size and sha256 against a second read of
/// the source, rename without replacing, directory fsync.
pub fn copy_file(
    src: &File,
    size: u64,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    owner: &Resolved,
) -> Result<Outcome, CopyError> {
    let write_err = |e: io::Error| CopyError::Write {
        path: path.to_path_buf(),
        source: e,
    };
    if exists_at(dir, name, path)? {
        return Ok(Outcome::Exists);
    }
    let (tmp, mut guard) = create_temp(dir, path)?;
    let stats = sparse_copy(src, &tmp, size).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            CopyError::SourceChanged {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        } else {
            write_err(e)
        }
    })?;
    let warnings = apply_owner(tmp.as_fd(), owner, path);
    rfs::fsync(&tmp).map_err(|e| write_err(e.into()))?;

    // Second read of the source and read-back of the copy, in parallel.
    let (src_hash, dst_hash) = std::thread::scope(|s| {
        let a = s.spawn(|| sha256_sparse(src, size));
        let b = sha256_sparse(&tmp, size);
        (a.join(), b)
    });
    let src_hash = match src_hash {
        Ok(r) => r.map_err(|e| CopyError::SourceChanged {
            path: path.to_path_buf(),
            detail: format!("second read failed: {e}"),
        })?,
        Err(_) => {
            return Err(CopyError::Verify {
                path: path.to_path_buf(),
                detail: "the hashing thread panicked".to_string(),
            })
        }
    };
    let dst_hash = dst_hash.map_err(write_err)?;
    let src_size = src.metadata().map(|m| m.size()).unwrap_or(u64::MAX);
    let dst_meta = tmp.metadata().map_err(write_err)?;
    if src_size != size {
        return Err(CopyError::SourceChanged {
            path: path.to_path_buf(),
            detail: format!("its size went from {size} to {src_size} bytes during the copy"),
        });
    }
    if dst_meta.size() != size {
        return Err(CopyError::Verify {
            path: path.to_path_buf(),
            detail: format!("the copy has {} bytes, the source {size}", dst_meta.size()),
        });
    }
    if src_hash != dst_hash {
        return Err(CopyError::SourceChanged {
            path: path.to_path_buf(),
            detail: format!("sha256 of the copy {dst_hash} differs from a second read {src_hash}"),
        });
    }

    match rfs::renameat_with(
        dir,
        guard.name.as_os_str(),
        dir,
        name,
        RenameFlags::NOREPLACE,
    ) {
        Ok(()) => {}
        Err(Errno::EXIST) => return Ok(Outcome::Exists),
        // No RENAME_NOREPLACE on this file system: link (never replaces) then unlink.
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            match rfs::linkat(dir, guard.name.as_os_str(), dir, name, AtFlags::empty()) {
                Ok(()) => {}
                Err(Errno::EXIST) => return Ok(Outcome::Exists),
                Err(e) => return Err(write_err(e.into())),
            }
            let _ = rfs::unlinkat(dir, guard.name.as_os_str(), AtFlags::empty());
        }
        Err(e) => return Err(write_err(e.into())),
    }
    guard.armed = false;
    rfs::fsync(dir).map_err(|e| write_err(e.into()))?;
    Ok(Outcome::Copied(Copied {
        stats,
        sha256: src_hash,
        allocated: dst_meta.blocks().saturating_mul(512),
        warnings,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    const MIB: u64 = 1 << 20;

    /// A 64 MiB file with data at 0, 10 MiB and in its last MiB.
    fn sparse_file(dir: &Path) -> (PathBuf, Vec<(u64, Vec<u8>)>) {
        let p = dir.join("src");
        let mut f = File::create(&p).unwrap();
        f.set_len(64 * MIB).unwrap();
        let mut chunks = Vec::new();
        for (i, off) in [0, 10 * MIB, 63 * MIB].into_iter().enumerate() {
            let data: Vec<u8> = (0..MIB).map(|j| (j as u8) ^ (i as u8 * 37 + 1)).collect();
            f.seek(io::SeekFrom::Start(off)).unwrap();
            f.write_all(&data).unwrap();
            chunks.push((off, data));
        }
        f.sync_all().unwrap();
        (p, chunks)
    }

    /// `copy_file` of `size` bytes of `src` to `dir/name`, mode 0640, ids left alone.
    fn copy_into(dir: &Path, src: &File, size: u64, name: &str) -> Result<Outcome, CopyError> {
        let fd = rfs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let owner = Resolved {
            uid: None,
            gid: None,
            mode: 0o640,
        };
        copy_file(
            src,
            size,
            fd.as_fd(),
            OsStr::new(name),
            &dir.join(name),
            &owner,
        )
    }

    #[test]
    fn extents_are_found() {
        let t = tempfile::tempdir().unwrap();
        let (p, _) = sparse_file(t.path());
        let f = File::open(&p).unwrap();
        let mut got = Vec::new();
        let mut off = 0;
        while let Some((s, e)) = next_data(f.as_fd(), off, 64 * MIB).unwrap() {
            got.push((s, e));
            off = e;
        }
        assert_eq!(
            got,
            vec![(0, MIB), (10 * MIB, 11 * MIB), (63 * MIB, 64 * MIB)]
        );
        assert_eq!(next_data(f.as_fd(), 64 * MIB, 64 * MIB).unwrap(), None);
    }

    #[test]
    fn sparse_copy_keeps_bytes_and_holes() {
        let t = tempfile::tempdir().unwrap();
        let (p, _) = sparse_file(t.path());
        let src = File::open(&p).unwrap();
        let out = t.path().join("dst");
        let r = copy_into(t.path(), &src, 64 * MIB, "dst").unwrap();
        let Outcome::Copied(c) = r else {
            panic!("not copied")
        };
        assert_eq!(c.stats.data_bytes, 3 * MIB);
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&out).unwrap());
        let m = std::fs::metadata(&out).unwrap();
        assert!(
            m.blocks() * 512 <= 4 * MIB,
            "holes kept: {}",
            m.blocks() * 512
        );
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(
            c.sha256,
            sha256_sparse(&File::open(&p).unwrap(), 64 * MIB).unwrap()
        );
        let whole = vmrescue_protocol::digest::sha256_hex(&std::fs::read(&p).unwrap());
        assert_eq!(c.sha256, whole);
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn existing_files_are_never_replaced() {
        let t = tempfile::tempdir().unwrap();
        let (p, _) = sparse_file(t.path());
        std::fs::write(t.path().join("dst"), b"keep me").unwrap();
        std::os::unix::fs::symlink("/nonexistent", t.path().join("link")).unwrap();
        let src = File::open(&p).unwrap();
        for name in ["dst", "link"] {
            let r = copy_into(t.path(), &src, 64 * MIB, name).unwrap();
            assert_eq!(r, Outcome::Exists);
        }
        assert_eq!(std::fs::read(t.path().join("dst")).unwrap(), b"keep me");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 3);
    }

    #[test]
    fn a_truncated_source_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let (p, _) = sparse_file(t.path());
        let src = File::open(&p).unwrap();
        // Claims more bytes than the file has.
        let e = copy_into(t.path(), &src, 65 * MIB, "dst").unwrap_err();
        assert!(matches!(e, CopyError::SourceChanged { .. }), "{e}");
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "temp removed"
        );
    }
}
