//! Just enough 64-bit little-endian ELF to pack a binary into the initramfs: whether it is static
//! (PID 1 has no dynamic loader) and, for a dynamic one, its program interpreter (PT_INTERP) and
//! what its dynamic section asks for (DT_NEEDED, DT_SONAME, DT_RUNPATH, DT_RPATH). Pure and
//! bounds-checked: garbage gives an error or `None`, never a panic.

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// Size of an ELF64 program header and of a dynamic entry.
const PHDR_SIZE: usize = 56;
const DYN_SIZE: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("not a 64-bit little-endian ELF file")]
    NotElf64Le,
    #[error("corrupt ELF file: bad {0}")]
    Corrupt(&'static str),
}

/// What the dynamic loader needs to know about an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `e_machine` (62 for x86_64).
    pub machine: u16,
    /// PT_INTERP: the program interpreter's path; `None` for a static binary or a library.
    pub interp: Option<String>,
    /// DT_NEEDED names, in order.
    pub needed: Vec<String>,
    pub soname: Option<String>,
    /// DT_RUNPATH and DT_RPATH, split on `:` (empty entries dropped).
    pub runpath: Vec<String>,
    pub rpath: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Phdr {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn le<const N: usize>(bin: &[u8], off: usize) -> Option<[u8; N]> {
    bin.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn u16_at(bin: &[u8], off: usize) -> Option<u16> {
    le(bin, off).map(u16::from_le_bytes)
}

fn u32_at(bin: &[u8], off: usize) -> Option<u32> {
    le(bin, off).map(u32::from_le_bytes)
}

fn u64_at(bin: &[u8], off: usize) -> Option<u64> {
    le(bin, off).map(u64::from_le_bytes)
}

/// `len` bytes at file offset `off`, if the file has them.
fn range(bin: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bin.get(start..end)
}

/// `e_machine` and the program headers.
fn header(bin: &[u8]) -> Result<(u16, Vec<Phdr>), ElfError> {
    if bin.get(0..4) != Some(b"\x7fELF") || bin.get(4) != Some(&2) || bin.get(5) != Some(&1) {
        return Err(ElfError::NotElf64Le);
    }
    let bad = || ElfError::Corrupt("ELF header");
    let machine = u16_at(bin, 0x12).ok_or_else(bad)?;
    let phoff = u64_at(bin, 0x20).ok_or_else(bad)?;
    let phentsize = usize::from(u16_at(bin, 0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(bin, 0x38).ok_or_else(bad)?);
    let bad = || ElfError::Corrupt("program header table");
    if phnum > 0 && phentsize < PHDR_SIZE {
        return Err(bad());
    }
    let phoff = usize::try_from(phoff).map_err(|_| bad())?;
    let mut phdrs = Vec::with_capacity(phnum.min(bin.len() / PHDR_SIZE));
    for i in 0..phnum {
        let off = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or_else(bad)?;
        let ph = le::<PHDR_SIZE>(bin, off).ok_or_else(bad)?;
        phdrs.push(Phdr {
            p_type: u32_at(&ph, 0).ok_or_else(bad)?,
            offset: u64_at(&ph, 8).ok_or_else(bad)?,
            vaddr: u64_at(&ph, 16).ok_or_else(bad)?,
            filesz: u64_at(&ph, 32).ok_or_else(bad)?,
        });
    }
    Ok((machine, phdrs))
}

/// `Some(true)` for a 64-bit little-endian ELF without PT_INTERP, `Some(false)` with one,
/// `None` if it is not such an ELF file.
pub fn is_static(bin: &[u8]) -> Option<bool> {
    let (_, phdrs) = header(bin).ok()?;
    Some(!phdrs.iter().any(|p| p.p_type == PT_INTERP))
}

/// The file offset of virtual address `vaddr`, through the PT_LOAD segments.
fn file_offset(phdrs: &[Phdr], vaddr: u64) -> Option<u64> {
    phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .find(|p| vaddr >= p.vaddr && vaddr - p.vaddr < p.filesz)
        .and_then(|p| p.offset.checked_add(vaddr - p.vaddr))
}

/// The NUL-terminated UTF-8 string at `off` in `table`.
fn string_at(table: &[u8], off: u64) -> Result<String, ElfError> {
    let bad = || ElfError::Corrupt("string table entry");
    let rest = usize::try_from(off)
        .ok()
        .and_then(|o| table.get(o..))
        .ok_or_else(bad)?;
    let end = rest.iter().position(|b| *b == 0).ok_or_else(bad)?;
    String::from_utf8(rest[..end].to_vec()).map_err(|_| bad())
}

fn interp(bin: &[u8], p: &Phdr) -> Result<String, ElfError> {
    let bad = || ElfError::Corrupt("PT_INTERP");
    let raw = range(bin, p.offset, p.filesz).ok_or_else(bad)?;
    let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
    match std::str::from_utf8(raw) {
        Ok(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(bad()),
    }
}

fn split_path(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(':').filter(|d| !d.is_empty()).map(str::to_owned)
}

/// Reads PT_INTERP and the dynamic section. A static binary gives no interpreter and no names.
pub fn dynamic(bin: &[u8]) -> Result<Dynamic, ElfError> {
    let (machine, phdrs) = header(bin)?;
    let mut out = Dynamic {
        machine,
        ..Dynamic::default()
    };
    if let Some(p) = phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        out.interp = Some(interp(bin, p)?);
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) else {
        return Ok(out);
    };
    let bad_dyn = || ElfError::Corrupt("PT_DYNAMIC");
    let table = range(bin, dynamic.offset, dynamic.filesz).ok_or_else(bad_dyn)?;
    let mut strtab = None;
    let mut strsz = None;
    let mut wanted = Vec::new(); // (tag, string offset)
    for entry in table.chunks_exact(DYN_SIZE) {
        let tag = u64_at(entry, 0).ok_or_else(bad_dyn)?;
        let val = u64_at(entry, 8).ok_or_else(bad_dyn)?;
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(val),
            DT_STRSZ => strsz = Some(val),
            DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH => wanted.push((tag, val)),
            _ => {}
        }
    }
    if wanted.is_empty() {
        return Ok(out);
    }
    let bad_str = || ElfError::Corrupt("DT_STRTAB");
    let start = strtab
        .and_then(|v| file_offset(&phdrs, v))
        .ok_or_else(bad_str)?;
    let strings = match strsz {
        Some(len) => range(bin, start, len),
        None => usize::try_from(start).ok().and_then(|s| bin.get(s..)),
    }
    .ok_or_else(bad_str)?;
    for (tag, off) in wanted {
        let s = string_at(strings, off)?;
        match tag {
            DT_NEEDED => out.needed.push(s),
            DT_SONAME => out.soname = Some(s),
            DT_RPATH => out.rpath.extend(split_path(&s)),
            _ => out.runpath.extend(split_path(&s)),
        }
    }
    Ok(out)
}

/// Test support: a small but well-formed dynamic ELF64 object.
#[cfg(test)]
pub(crate) mod fake {
    pub const X86_64: u16 = 62;
    const BASE: u64 = 0x40_0000;

    #[derive(Debug, Clone, Default)]
    pub struct Fake<'a> {
        pub machine: u16,
        pub interp: Option<&'a str>,
        pub needed: &'a [&'a str],
        pub soname: Option<&'a str>,
        pub runpath: Option<&'a str>,
        pub rpath: Option<&'a str>,
    }

    fn phdr(out: &mut Vec<u8>, p_type: u32, offset: u64, filesz: u64) {
        out.extend_from_slice(&p_type.to_le_bytes());
        out.extend_from_slice(&4u32.to_le_bytes()); // p_flags
        for v in [offset, BASE + offset, BASE + offset, filesz, filesz, 8] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    impl Fake<'_> {
        pub fn build(&self) -> Vec<u8> {
            let interp_off = 64 + 3 * 56u64;
            let interp = self.interp.map(|i| format!("{i}\0")).unwrap_or_default();
            let strtab_off = interp_off + interp.len() as u64;
            let mut strtab = vec![0u8];
            let mut dyns: Vec<(u64, u64)> = Vec::new();
            let mut string = |tag: u64, s: &str, dyns: &mut Vec<(u64, u64)>| {
                dyns.push((tag, strtab.len() as u64));
                strtab.extend_from_slice(s.as_bytes());
                strtab.push(0);
            };
            for n in self.needed {
                string(super::DT_NEEDED, n, &mut dyns);
            }
            for (tag, s) in [
                (super::DT_SONAME, self.soname),
                (super::DT_RUNPATH, self.runpath),
                (super::DT_RPATH, self.rpath),
            ] {
                if let Some(s) = s {
                    string(tag, s, &mut dyns);
                }
            }
            dyns.push((super::DT_STRTAB, BASE + strtab_off));
            dyns.push((super::DT_STRSZ, strtab.len() as u64));
            dyns.push((super::DT_NULL, 0));
            let dyn_off = (strtab_off + strtab.len() as u64).next_multiple_of(8);
            let total = dyn_off + 16 * dyns.len() as u64;

            let mut out = b"\x7fELF\x02\x01\x01".to_vec();
            out.resize(16, 0);
            out.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
            out.extend_from_slice(&self.machine.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            for v in [0u64, 64, 0] {
                out.extend_from_slice(&v.to_le_bytes()); // entry, phoff, shoff
            }
            out.extend_from_slice(&0u32.to_le_bytes()); // flags
            for v in [64u16, 56, 3, 64, 0, 0] {
                out.extend_from_slice(&v.to_le_bytes()); // ehsize, phentsize, phnum, sh*
            }
            let interp_type = if self.interp.is_some() {
                super::PT_INTERP
            } else {
                0
            };
            phdr(&mut out, interp_type, interp_off, interp.len() as u64);
            phdr(&mut out, super::PT_LOAD, 0, total);
            phdr(&mut out, super::PT_DYNAMIC, dyn_off, total - dyn_off);
            out.extend_from_slice(interp.as_bytes());
            out.extend_from_slice(&strtab);
            out.resize(dyn_off as usize, 0);
            for (tag, val) in dyns {
                out.extend_from_slice(&tag.to_le_bytes());
                out.extend_from_slice(&val.to_le_bytes());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Fake, X86_64};
    use super::*;

    #[test]
    fn host_binaries() {
        // A dynamically linked Debian binary and a static one from the set-up packages.
        let sh = std::fs::read("/bin/bash").unwrap();
        assert_eq!(is_static(&sh), Some(false));
        let bb = std::fs::read("/bin/busybox").expect("busybox-static (scripts/setup.sh)");
        assert_eq!(is_static(&bb), Some(true));
        assert_eq!(is_static(b"#!/bin/sh\n"), None);
        assert_eq!(is_static(b"\x7fELF\x02\x01"), None);
    }

    #[test]
    fn reads_interpreter_and_needed_of_host_binaries() {
        let xfs = std::fs::read("/sbin/xfs_repair").expect("xfsprogs (scripts/setup.sh)");
        let d = dynamic(&xfs).unwrap();
        assert_eq!(d.machine, X86_64);
        assert_eq!(d.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        for lib in ["libuuid.so.1", "libblkid.so.1", "libc.so.6"] {
            assert!(d.needed.iter().any(|n| n == lib), "{lib} in {:?}", d.needed);
        }
        let bash = dynamic(&std::fs::read("/bin/bash").unwrap()).unwrap();
        assert!(bash.needed.iter().any(|n| n == "libc.so.6"));
        let libc = dynamic(&std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap()).unwrap();
        assert_eq!(libc.soname.as_deref(), Some("libc.so.6"));
        assert_eq!(libc.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        let bb = dynamic(&std::fs::read("/bin/busybox").unwrap()).unwrap();
        assert_eq!((bb.interp, bb.needed), (None, vec![]));
    }

    #[test]
    fn reads_a_synthetic_object() {
        let bin = Fake {
            machine: X86_64,
            interp: Some("/lib64/ld.so"),
            needed: &["liba.so.1", "libb.so.2"],
            soname: Some("libself.so.3"),
            runpath: Some("$ORIGIN/../lib::/opt/x"),
            rpath: Some("/old"),
        }
        .build();
        assert_eq!(
            dynamic(&bin).unwrap(),
            Dynamic {
                machine: X86_64,
                interp: Some("/lib64/ld.so".into()),
                needed: vec!["liba.so.1".into(), "libb.so.2".into()],
                soname: Some("libself.so.3".into()),
                runpath: vec!["$ORIGIN/../lib".into(), "/opt/x".into()],
                rpath: vec!["/old".into()],
            }
        );
        let lib = Fake {
            machine: 3,
            ..Fake::default()
        };
        assert_eq!(dynamic(&lib.build()).unwrap().machine, 3);
        assert_eq!(is_static(&lib.build()), Some(true));
    }

    #[test]
    fn rejects_bad_headers_and_tables() {
        assert_eq!(dynamic(b"#!/bin/sh\n"), Err(ElfError::NotElf64Le));
        assert_eq!(dynamic(b"\x7fELF\x01\x01\x01"), Err(ElfError::NotElf64Le));
        assert_eq!(dynamic(b""), Err(ElfError::NotElf64Le));
        let good = Fake {
            machine: X86_64,
            interp: Some("/lib64/ld.so"),
            needed: &["liba.so.1"],
            ..Fake::default()
        }
        .build();
        let patched = |off: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[off..off + bytes.len()].copy_from_slice(bytes);
            dynamic(&b)
        };
        // e_phoff far out, e_phentsize too small.
        assert!(patched(0x20, &u64::MAX.to_le_bytes()).is_err());
        assert!(patched(0x36, &8u16.to_le_bytes()).is_err());
        // PT_DYNAMIC's p_filesz beyond the file; PT_INTERP's p_offset overflowing.
        assert!(patched(64 + 2 * 56 + 32, &u64::MAX.to_le_bytes()).is_err());
        assert!(patched(64 + 8, &(u64::MAX - 1).to_le_bytes()).is_err());
        // DT_STRTAB pointing outside every PT_LOAD.
        let strtab_entry = good.len() - 3 * 16;
        assert!(patched(strtab_entry + 8, &1u64.to_le_bytes()).is_err());
        // DT_NEEDED offset past DT_STRSZ.
        let needed_entry = good.len() - 4 * 16;
        assert!(patched(needed_entry + 8, &9999u64.to_le_bytes()).is_err());
    }

    /// A tiny xorshift generator, so the garbage below is the same on every run.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn truncated_or_garbled_input_never_panics() {
        let good = Fake {
            machine: X86_64,
            interp: Some("/lib64/ld-linux-x86-64.so.2"),
            needed: &["libc.so.6", "libm.so.6"],
            soname: Some("x"),
            runpath: Some("/a:/b"),
            rpath: None,
        }
        .build();
        assert!(dynamic(&good).is_ok());
        for len in 0..good.len() {
            let _ = dynamic(&good[..len]);
            let _ = is_static(&good[..len]);
        }
        let mut next = rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            let _ = dynamic(&b);
        }
        // Real binary, headers and dynamic section garbled in place (restored after each try).
        let mut bash = std::fs::read("/bin/bash").unwrap();
        for _ in 0..2_000 {
            let at = (next() % 4096) as usize;
            let old = bash[at];
            bash[at] = next() as u8;
            let _ = dynamic(&bash);
            bash[at] = old;
        }
        for _ in 0..2_000 {
            let mut junk = b"\x7fELF\x02\x01".to_vec();
            junk.extend((0..next() % 512).map(|_| next() as u8));
            let _ = dynamic(&junk);
        }
    }
}
