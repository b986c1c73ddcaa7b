//! ISO 9660 (and High Sierra), following blkid's `libblkid/src/superblocks/iso9660.c`:
//!
//! - the volume descriptors from 32 KiB on (after the session offset hint, if any), at most
//!   16 of them, each read with a fixed size;
//! - UUID is the modification date of the primary descriptor (the creation date if that is
//!   unset), printed `YYYY-MM-DD-HH-MM-SS-HH` as the raw digits;
//! - LABEL is the Joliet volume id when there is a Joliet descriptor, merged with the longer
//!   primary volume id when the Joliet one is a prefix of it (blkid's reconstruction of the
//!   original name); otherwise the primary volume id;
//! - VERSION is "Joliet Extension" or "High Sierra" (none for plain ISO 9660).
//!
//! No path table or directory is read, so no length field on the disc sizes any read.

use std::io;

use super::{byte, label, rtrim, slice, utf16be_to_utf8, Dev, Hit, Probe, Usage};
use crate::fstype::FsType;

/// Descriptors start 32 KiB into the session.
const VD_START: u64 = 0x8000;
const SECTOR: u64 = 0x800;
const VD_MAX: u64 = 16;
/// `max(sizeof(struct boot_record), sizeof(struct iso_volume_descriptor))`.
const VD_LEN: usize = 882;
const VD_BOOT: u8 = 0;
const VD_PRIMARY: u8 = 1;
const VD_SUPPLEMENTARY: u8 = 2;
const VD_END: u8 = 0xff;

const VOLUME_ID: usize = 40;
const VOLUME_ID_LEN: usize = 32;
const ESCAPES: usize = 88;
const ISO_CREATED: usize = 813;
const ISO_MODIFIED: usize = 830;
const HS_CREATED: usize = 782;
const HS_MODIFIED: usize = 798;

/// The descriptors blkid keeps from the volume descriptor set.
#[derive(Debug, Default)]
pub(super) struct Descriptors {
    pub(super) primary: Option<Vec<u8>>,
    pub(super) joliet: Option<Vec<u8>>,
}

/// blkid's `probe_iso9660_set_uuid`: the date as UUID, or `None` (unset: all '0' with a zero
/// offset) to fall back to the other date. `Some(None)` means "set, but prints as nothing".
fn date_uuid(date: &[u8], offset: u8) -> Option<Option<String>> {
    let digits = slice(date, 0, 16)?;
    if digits.iter().all(|&b| b == b'0') && offset == 0 {
        return None;
    }
    if digits.iter().all(|&b| b == 0) {
        return Some(None);
    }
    let mut s = Vec::with_capacity(22);
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        if i >= 2 {
            s.push(b'-');
        }
        s.extend_from_slice(pair);
    }
    // blkid formats with %c: the string ends at a NUL.
    let s = super::c_str(&s);
    Some((!s.is_empty()).then(|| String::from_utf8_lossy(s).into_owned()))
}

/// blkid's `merge_utf16be_ascii`: when the Joliet name (UTF-16BE) is, ignoring case and '_'
/// replacement characters, a prefix of the primary name (ASCII), the full name in UTF-16BE.
fn merge_utf16be_ascii(utf16: &[u8], ascii: &[u8], out_len: usize) -> Option<Vec<u8>> {
    let len = utf16.len().min(ascii.len());
    let at = |b: &[u8], i: usize| b.get(i).copied().unwrap_or(0);
    let mut out = Vec::with_capacity(out_len);
    let (mut a, mut u) = (0usize, 0usize);
    while u + 1 < len && a < len && out.len() + 1 < out_len {
        if (0xD8..=0xDB).contains(&at(utf16, u))
            && u + 3 < len
            && (0xDC..=0xDF).contains(&at(utf16, u + 2))
        {
            out.extend([at(utf16, u), at(utf16, u + 1)]);
            u += 2;
        }
        let (hi, lo, c) = (at(utf16, u), at(utf16, u + 1), at(ascii, a));
        if c == b'_' {
            out.extend([hi, lo]);
        } else if hi == 0 && lo == b'_' {
            out.extend([0, c]);
        } else if hi == 0 && c.eq_ignore_ascii_case(&lo) {
            out.extend([0, if c.is_ascii_uppercase() { lo } else { c }]);
        } else {
            return None;
        }
        a += 1;
        u += 2;
    }
    while a < len && out.len() + 1 < out_len {
        out.extend([0, at(ascii, a)]);
        a += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// blkid's `blkid_probe_set_utf8label` for UTF-16BE bytes.
fn utf16_label(raw: &[u8]) -> Option<String> {
    let utf8 = utf16be_to_utf8(raw);
    let s = rtrim(&utf8);
    (!s.is_empty()).then(|| String::from_utf8_lossy(s).into_owned())
}

/// What blkid reports, from the primary descriptor and the Joliet one (if any).
pub(super) fn identity(d: &Descriptors, high_sierra: bool) -> Option<Probe> {
    let pvd = d.primary.as_deref()?;
    let (modified, created) = if high_sierra {
        ((HS_MODIFIED, 0), (HS_CREATED, 0))
    } else {
        (
            (ISO_MODIFIED, byte(pvd, ISO_MODIFIED + 16)?),
            (ISO_CREATED, byte(pvd, ISO_CREATED + 16)?),
        )
    };
    let uuid = match date_uuid(slice(pvd, modified.0, 16)?, modified.1) {
        Some(u) => u,
        None => date_uuid(slice(pvd, created.0, 16)?, created.1).flatten(),
    };
    let pvd_id = slice(pvd, VOLUME_ID, VOLUME_ID_LEN)?;
    let label = match d.joliet.as_deref() {
        Some(joliet) => {
            let joliet_id = slice(joliet, VOLUME_ID, VOLUME_ID_LEN)?;
            // blkid's buffer holds 5/2 of the longest ISO string field (128 bytes).
            match merge_utf16be_ascii(joliet_id, pvd_id, 128 * 5 / 2) {
                Some(merged) => utf16_label(&merged),
                None => utf16_label(joliet_id),
            }
        }
        None => label(pvd_id),
    };
    let version = if d.joliet.is_some() {
        Some("Joliet Extension")
    } else if high_sierra {
        Some("High Sierra")
    } else {
        None
    };
    Some(Probe {
        fstype: FsType::Iso9660,
        uuid,
        label,
        usage: Usage::Filesystem,
        version: version.map(String::from),
        uuid_sub: None,
    })
}

/// blkid's `iso9660` prober, at the session offset hint.
pub(super) fn probe(dev: &mut Dev<'_>) -> io::Result<Option<Hit>> {
    let hint = dev.session_offset();
    let high_sierra = if dev.has_magic(hint, 32, 1, b"CD001")? {
        false
    } else if dev.has_magic(hint, 32, 9, b"CDROM")? {
        true
    } else {
        return Ok(None);
    };
    if hint & (SECTOR - 1) != 0 {
        return Ok(None);
    }
    let mut boot = false;
    let mut d = Descriptors::default();
    for i in 0..VD_MAX {
        if boot && d.primary.is_some() && (high_sierra || d.joliet.is_some()) {
            break;
        }
        // High Sierra descriptors start with 8 bytes of their own block number.
        let skip = if high_sierra { 8 } else { 0 };
        let Some(off) = hint.checked_add(VD_START + i * SECTOR + skip) else {
            break;
        };
        let Some(desc) = dev.get(off, VD_LEN)? else {
            break;
        };
        match desc.first().copied() {
            Some(VD_END) | None => break,
            Some(VD_BOOT) if !boot => boot = true,
            Some(VD_PRIMARY) if d.primary.is_none() => d.primary = Some(desc),
            Some(VD_SUPPLEMENTARY) if !high_sierra && d.joliet.is_none() => {
                let escapes = slice(&desc, ESCAPES, 3);
                if matches!(escapes, Some(b"%/@" | b"%/C" | b"%/E")) {
                    d.joliet = Some(desc);
                }
            }
            Some(_) => {}
        }
    }
    Ok(identity(&d, high_sierra).map(Hit::Known))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::{probe as probe_device, probe_with_session_offset};
    use std::io::Cursor;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    fn padded(s: &[u8], fill: &[u8], len: usize) -> Vec<u8> {
        let mut v = s.to_vec();
        while v.len() < len {
            v.extend_from_slice(fill);
        }
        v.truncate(len);
        v
    }

    /// A descriptor sector of `kind`.
    fn descriptor(kind: u8, volume_id: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 2048];
        d[0] = kind;
        d[1..6].copy_from_slice(b"CD001");
        d[6] = 1;
        d[VOLUME_ID..VOLUME_ID + 32].copy_from_slice(volume_id);
        d[ISO_CREATED..ISO_CREATED + 16].copy_from_slice(b"2009092412524300");
        d[ISO_MODIFIED..ISO_MODIFIED + 16].copy_from_slice(b"2009092412524300");
        d
    }

    /// An image with a primary descriptor, an optional Joliet one and the terminator.
    pub(crate) fn image(pvd_label: &str, joliet_label: Option<&str>) -> Vec<u8> {
        let mut img = vec![0u8; 0x8000];
        img.extend(descriptor(
            VD_PRIMARY,
            &padded(pvd_label.as_bytes(), b" ", 32),
        ));
        if let Some(j) = joliet_label {
            let mut d = descriptor(VD_SUPPLEMENTARY, &padded(&utf16(j), &[0, b' '], 32));
            d[ESCAPES..ESCAPES + 3].copy_from_slice(b"%/E");
            img.extend(d);
        }
        let mut end = descriptor(VD_END, &[0; 32]);
        end[ISO_CREATED..].fill(0);
        img.extend(end);
        img.resize(img.len() + 64 * 1024, 0);
        img
    }

    fn probed(img: &[u8]) -> Option<Probe> {
        probe_device(&mut Cursor::new(img), img.len() as u64).unwrap()
    }

    #[test]
    fn plain_iso() {
        let p = probed(&image("IsoVolumeName", None)).unwrap();
        assert_eq!(p.fstype, FsType::Iso9660);
        assert_eq!(p.label.as_deref(), Some("IsoVolumeName"));
        assert_eq!(p.uuid.as_deref(), Some("2009-09-24-12-52-43-00"));
        assert_eq!(p.version, None);
    }

    #[test]
    fn joliet_label_merged_with_the_longer_primary_one() {
        let img = image("NA_VE AND VERY LOOOOOOOONG_LABEL", Some("Naïve and very l"));
        let p = probed(&img).unwrap();
        assert_eq!(p.label.as_deref(), Some("Naïve and very lOOOOOOOONG_LABEL"));
        assert_eq!(p.version.as_deref(), Some("Joliet Extension"));
        // Not a prefix: the Joliet label alone.
        let p = probed(&image("SOMETHING_ELSE", Some("Другое"))).unwrap();
        assert_eq!(p.label.as_deref(), Some("Другое"));
    }

    #[test]
    fn uuid_from_dates() {
        let mut img = image("X", None);
        let pvd = 0x8000;
        img[pvd + ISO_MODIFIED..pvd + ISO_MODIFIED + 16].copy_from_slice(b"0000000000000000");
        img[pvd + ISO_CREATED..pvd + ISO_CREATED + 16].copy_from_slice(b"2020110723165100");
        assert_eq!(
            probed(&img).unwrap().uuid.as_deref(),
            Some("2020-11-07-23-16-51-00")
        );
        img[pvd + ISO_CREATED..pvd + ISO_CREATED + 16].copy_from_slice(b"0000000000000000");
        assert_eq!(probed(&img).unwrap().uuid, None);
        // A set time zone offset makes an all-zero date a date.
        img[pvd + ISO_MODIFIED + 16] = 4;
        assert_eq!(
            probed(&img).unwrap().uuid.as_deref(),
            Some("0000-00-00-00-00-00-00")
        );
    }

    #[test]
    fn merge_rules() {
        let j = padded(&utf16("ab_d"), &[0, b' '], 8);
        let merged = merge_utf16be_ascii(&j, b"ABCDEFGH", 320).unwrap();
        assert_eq!(utf16be_to_utf8(&merged), b"abCdEFGH");
        assert_eq!(merge_utf16be_ascii(&utf16("xy"), b"AB", 320), None);
        assert_eq!(merge_utf16be_ascii(&[], b"", 320), None);
        // A surrogate pair stands for one '_' in the ASCII name.
        let j = utf16("😀b");
        let merged = merge_utf16be_ascii(&j, b"_BCDEF", 320).unwrap();
        assert_eq!(utf16be_to_utf8(&merged), "😀bCDEF".as_bytes());
    }

    #[test]
    fn sessions_and_truncation() {
        let first = image("FIRST", None);
        let mut img = first.clone();
        let second_at = img.len() as u64;
        img.extend(image("SECOND", None));
        let len = img.len() as u64;
        let p = probe_device(&mut Cursor::new(&img), len).unwrap().unwrap();
        assert_eq!(p.label.as_deref(), Some("FIRST"));
        let p = probe_with_session_offset(&mut Cursor::new(&img), len, second_at)
            .unwrap()
            .unwrap();
        assert_eq!(p.label.as_deref(), Some("SECOND"));
        // Not a multiple of 2048.
        assert_eq!(
            probe_with_session_offset(&mut Cursor::new(&img), len, second_at + 512).unwrap(),
            None
        );
        // The KiB holding the magic must be on the device.
        assert_eq!(probed(&first[..0x8000 + 1023]), None);
        assert!(probed(&first[..0x8000 + 1024]).is_some());
    }

    #[test]
    fn high_sierra() {
        let mut img = vec![0u8; 0x8000];
        let mut d = vec![0u8; 2048];
        d[8] = VD_PRIMARY;
        d[9..14].copy_from_slice(b"CDROM");
        d[8 + VOLUME_ID..8 + VOLUME_ID + 5].copy_from_slice(b"OLDCD");
        d[8 + HS_MODIFIED..8 + HS_MODIFIED + 16].copy_from_slice(b"1990010203040500");
        img.extend(d);
        img.resize(0x20000, 0);
        let p = probed(&img).unwrap();
        assert_eq!(p.label.as_deref(), Some("OLDCD"));
        assert_eq!(p.version.as_deref(), Some("High Sierra"));
        assert_eq!(p.uuid.as_deref(), Some("1990-01-02-03-04-05-00"));
    }

    #[test]
    fn no_primary_descriptor() {
        let mut img = image("X", None);
        img[0x8000] = VD_BOOT;
        assert_eq!(probed(&img), None);
        assert_eq!(identity(&Descriptors::default(), false), None);
    }
}
