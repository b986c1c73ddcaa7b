//! Files to and from storage volumes through libvirt streams (remote connections, whose files
//! are on another host): read and written in chunks, never whole in memory; a sparse upload
//! sends only the file's data (a new volume reads as zeros elsewhere), and a download keeps
//! runs of zeros as holes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use virt::connect::Connect;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

const CHUNK: usize = 256 << 10;

/// The data extents of `f` (offset, length) up to `len`, by `SEEK_DATA`/`SEEK_HOLE`; the whole
/// file where the filesystem cannot say.
pub fn extents(f: &File, len: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{seek, SeekFrom as RSeek};
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        let start = match seek(f, RSeek::Data(at)) {
            Ok(p) => p,
            // ENXIO: no data past `at`.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, len)],
        };
        if start >= len {
            break;
        }
        let end = match seek(f, RSeek::Hole(start)) {
            Ok(p) => p.min(len),
            Err(_) => return vec![(0, len)],
        };
        out.push((start, end - start));
        at = end;
    }
    out
}

/// Writes `src` (`len` bytes) into `vol` from offset 0; `sparse`: only its data extents (the
/// volume must be new, reading as zeros).
pub fn upload(
    conn: &Connect,
    vol: &StorageVol,
    src: &Path,
    len: u64,
    sparse: bool,
) -> Result<(), String> {
    let mut f = File::open(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    let parts = if sparse {
        extents(&f, len)
    } else {
        vec![(0, len)]
    };
    let mut buf = vec![0u8; CHUNK];
    for (offset, length) in parts {
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| format!("reading {}: {e}", src.display()))?;
        let stream = Stream::new(conn, 0).map_err(|e| e.to_string())?;
        vol.upload(&stream, offset, length, 0)
            .map_err(|e| e.to_string())?;
        let mut left = length;
        while left > 0 {
            let want = (left as usize).min(CHUNK);
            f.read_exact(&mut buf[..want])
                .map_err(|e| format!("reading {}: {e}", src.display()))?;
            let mut rest = &buf[..want];
            while !rest.is_empty() {
                let n = stream.send(rest).map_err(|e| e.to_string())?;
                if n <= 0 {
                    let _ = stream.abort();
                    return Err(format!("the upload of {} stopped", src.display()));
                }
                rest = &rest[n as usize..];
            }
            left -= want as u64;
        }
        stream.finish().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Copies the whole of `vol` into a new file `dest`; returns its length. Zero chunks become
/// holes.
pub fn download(conn: &Connect, vol: &StorageVol, dest: &Path) -> Result<u64, String> {
    let len = vol.info().map_err(|e| e.to_string())?.capacity;
    let mut out = File::create(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let stream = Stream::new(conn, 0).map_err(|e| e.to_string())?;
    vol.download(&stream, 0, len, 0)
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = stream.recv(&mut buf).map_err(|e| e.to_string())?;
        if n <= 0 {
            break;
        }
        let data = &buf[..n as usize];
        let w = if data.iter().all(|b| *b == 0) {
            out.seek(SeekFrom::Current(n as i64)).map(|_| ())
        } else {
            out.write_all(data)
        };
        w.map_err(|e| format!("writing {}: {e}", dest.display()))?;
        got += n as u64;
    }
    stream.finish().map_err(|e| e.to_string())?;
    out.set_len(got)
        .and_then(|_| out.sync_all())
        .map_err(|e| format!("writing {}: {e}", dest.display()))?;
    if got != len {
        return Err(format!(
            "the download into {} ended after {got} of {len} bytes",
            dest.display()
        ));
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_files_extents_are_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let mut f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.seek(SeekFrom::Start(32 << 20)).unwrap();
        f.write_all(&[2u8; 8192]).unwrap();
        f.sync_all().unwrap();
        let f = File::open(&p).unwrap();
        let e = extents(&f, 64 << 20);
        // Filesystems round extents to their blocks; tmpfs and ext4 report these exactly.
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].0, 0);
        assert!(e[0].1 >= 4096 && e[0].1 < 1 << 20, "{e:?}");
        assert!(
            e[1].0 <= 32 << 20 && e[1].0 + e[1].1 >= (32 << 20) + 8192,
            "{e:?}"
        );
        // The whole of every byte written is covered; nothing past the end.
        assert_eq!(extents(&f, 0), []);
        let empty = File::create(dir.path().join("empty")).unwrap();
        assert_eq!(extents(&empty, 0), []);
    }
}
