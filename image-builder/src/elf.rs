//! Just enough ELF to tell whether a binary is static (no program interpreter): PID 1 in an
//! initramfs has no dynamic loader.

const PT_INTERP: u32 = 3;

/// `Some(true)` for a 64-bit little-endian ELF without PT_INTERP, `Some(false)` with one,
/// `None` if it is not such an ELF file.
pub fn is_static(bin: &[u8]) -> Option<bool> {
    if bin.get(0..4)? != b"\x7fELF" || *bin.get(4)? != 2 || *bin.get(5)? != 1 {
        return None;
    }
    let u64_at = |o: usize| Some(u64::from_le_bytes(bin.get(o..o + 8)?.try_into().ok()?));
    let u16_at = |o: usize| Some(u16::from_le_bytes(bin.get(o..o + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum {
        let off = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = u32::from_le_bytes(bin.get(off..off + 4)?.try_into().ok()?);
        if p_type == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
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
}
