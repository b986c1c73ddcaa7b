//! The uncompressed kernel for QEMU's PVH entry: QEMU starts an ELF `vmlinux` that carries a
//! Xen `PHYS32_ENTRY` note at its 32-bit entry, with no real-mode setup, no firmware work and
//! no self-decompression (about half of a TCG rescue's boot). The ELF is the bzImage's own
//! payload (the setup header says where it is), decompressed with the tool of its format.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// Why a bzImage gives no PVH kernel.
#[derive(Debug, thiserror::Error)]
pub enum PvhError {
    #[error("not a bzImage with a payload (boot protocol 2.08 or later)")]
    NoPayload,
    #[error("its payload is compressed with {0}, which the builder does not decompress")]
    Compression(&'static str),
    #[error("decompressing its payload with {tool}: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("its payload is not an ELF kernel with a PVH entry note (CONFIG_PVH)")]
    NoPvhNote,
}

/// How a payload is compressed (by its magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    Other(&'static str),
}

fn compression(data: &[u8]) -> Compression {
    match data {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Compression::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [0x5d, 0, 0, ..] => Compression::Other("lzma"),
        [0x89, b'L', b'Z', b'O', ..] => Compression::Other("lzo"),
        [0x02, 0x21, 0x4c, 0x18, ..] => Compression::Other("lz4"),
        [b'B', b'Z', b'h', ..] => Compression::Other("bzip2"),
        _ => Compression::Other("an unknown format"),
    }
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The compressed kernel inside a bzImage, from its setup header (pure, bounds-checked).
pub fn payload(bz: &[u8]) -> Option<&[u8]> {
    if bz.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let version = u16::from_le_bytes([*bz.get(0x206)?, *bz.get(0x207)?]);
    if version < 0x208 {
        return None;
    }
    let setup_sects = match *bz.get(0x1f1)? {
        0 => 4,
        n => n as usize,
    };
    let start = (setup_sects + 1) * 512;
    let offset = le32(bz, 0x248)? as usize;
    let len = le32(bz, 0x24c)? as usize;
    let from = start.checked_add(offset)?;
    bz.get(from..from.checked_add(len)?)
}

/// Whether an ELF (64-bit little-endian) has a Xen `PHYS32_ENTRY` note (type 18), the PVH
/// entry QEMU boots (pure, bounds-checked).
pub fn has_pvh_note(elf: &[u8]) -> bool {
    fn note(elf: &[u8]) -> Option<bool> {
        if elf.get(0..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
            return None;
        }
        let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
        let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
        let phoff = u64_at(0x20)? as usize;
        let phentsize = u16_at(0x36)? as usize;
        let phnum = u16_at(0x38)? as usize;
        for i in 0..phnum.min(256) {
            let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
            if le32(elf, ph)? != 4 {
                continue; // not PT_NOTE
            }
            let off = u64_at(ph + 8)? as usize;
            let size = u64_at(ph + 32)? as usize;
            let notes = elf.get(off..off.checked_add(size)?)?;
            let mut at = 0;
            while at + 12 <= notes.len() {
                let namesz = le32(notes, at)? as usize;
                let descsz = le32(notes, at + 4)? as usize;
                let kind = le32(notes, at + 8)?;
                let name = notes.get(at + 12..at + 12 + namesz)?;
                if kind == 18 && name.starts_with(b"Xen") {
                    return Some(true);
                }
                let pad = |n: usize| n.div_ceil(4) * 4;
                at += 12 + pad(namesz) + pad(descsz);
            }
        }
        Some(false)
    }
    note(elf).unwrap_or(false)
}

/// Runs `tool ARGS` with `input` on stdin; its stdout.
fn filter(tool: &'static str, args: &[&str], input: &[u8]) -> Result<Vec<u8>, PvhError> {
    let err = |detail: String| PvhError::Tool { tool, detail };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("{e} (scripts/setup.sh installs it)")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| err("no stdin".into()))?;
    let mut out = Vec::new();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(input);
        });
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_end(&mut out);
        }
    });
    let done = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !done.status.success() {
        return Err(err(String::from_utf8_lossy(&done.stderr).trim().to_owned()));
    }
    Ok(out)
}

/// The PVH-bootable `vmlinux` inside a bzImage.
pub fn vmlinux(bz: &[u8]) -> Result<Vec<u8>, PvhError> {
    let data = payload(bz).ok_or(PvhError::NoPayload)?;
    let elf = match compression(data) {
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(|e| PvhError::Tool {
                    tool: "gzip",
                    detail: e.to_string(),
                })?;
            out
        }
        // The kernel's build appends the uncompressed size after the stream.
        Compression::Xz => filter("xz", &["-dc", "--single-stream"], data)?,
        Compression::Zstd => filter("zstd", &["-dcq"], data)?,
        Compression::Other(what) => return Err(PvhError::Compression(what)),
    };
    if !has_pvh_note(&elf) {
        return Err(PvhError::NoPvhNote);
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage-shaped buffer: setup header, `setup_sects` sectors, then `payload`.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 2u8;
        let start = (setup_sects as usize + 1) * 512;
        let mut b = vec![0u8; start + 16 + payload.len()];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b[start + 16..].copy_from_slice(payload);
        b
    }

    /// A minimal ELF64 with one PT_NOTE holding a note of `kind` named `name`.
    fn elf_with_note(name: &[u8], kind: u32) -> Vec<u8> {
        let mut e = vec![0u8; 0x40 + 56];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let mut note = Vec::new();
        note.extend((name.len() as u32).to_le_bytes());
        note.extend(8u32.to_le_bytes());
        note.extend(kind.to_le_bytes());
        note.extend(name);
        note.resize(note.len().div_ceil(4) * 4, 0);
        note.extend([0u8; 8]);
        let off = e.len() as u64;
        let ph = 0x40;
        e[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
        e[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
        e[ph + 32..ph + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        e.extend(note);
        e
    }

    #[test]
    fn the_payload_is_found_by_the_setup_header() {
        let b = bzimage(b"\x1f\x8bPAYLOAD");
        assert_eq!(payload(&b), Some(&b"\x1f\x8bPAYLOAD"[..]));
        let mut short = b.clone();
        short[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(payload(&short), None, "lengths past the end are refused");
        let mut old = b.clone();
        old[0x206..0x208].copy_from_slice(&0x206u16.to_le_bytes());
        assert_eq!(payload(&old), None);
        assert_eq!(payload(b"tiny"), None);
    }

    #[test]
    fn a_gzip_payload_is_decompressed_and_its_note_checked() {
        let elf = elf_with_note(b"Xen\0", 18);
        assert!(has_pvh_note(&elf));
        assert!(!has_pvh_note(&elf_with_note(b"Xen\0", 17)));
        assert!(!has_pvh_note(&elf_with_note(b"GNU\0", 18)));
        assert!(!has_pvh_note(b"\x7fELF garbage"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&elf).unwrap();
        let b = bzimage(&gz.finish().unwrap());
        assert_eq!(vmlinux(&b).unwrap(), elf);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&elf_with_note(b"Xen\0", 5)).unwrap();
        assert!(matches!(
            vmlinux(&bzimage(&gz.finish().unwrap())),
            Err(PvhError::NoPvhNote)
        ));
        assert!(matches!(
            vmlinux(&bzimage(b"BZh91AY&SY")),
            Err(PvhError::Compression("bzip2"))
        ));
    }

    #[test]
    fn the_hosts_kernel_has_a_pvh_vmlinux() {
        let k = crate::kernel::default_kernel(std::path::Path::new("/boot"))
            .expect("scripts/setup.sh installs linux-image-amd64");
        let bz = std::fs::read(&k).unwrap();
        let elf = vmlinux(&bz).unwrap_or_else(|e| panic!("{}: {e}", k.display()));
        assert!(elf.len() > bz.len(), "decompressed");
    }
}
