//! GUID Partition Table: header at LBA 1 (512- or 4096-byte sectors), CRC32-checked header and
//! entry array, with a fall back to the backup header at the last LBA when the primary copy is
//! damaged.

use std::io::{self, Read, Seek};

use super::{PartType, Partition, PartitionError, Table, TableKind};
use crate::probe::csum::{reflected_table, reflected_update};
use crate::{format_uuid, read_at};

/// Type GUID of a Linux filesystem data partition.
pub const LINUX_FILESYSTEM: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// Type GUID of a Linux root partition for x86-64 (Discoverable Partitions Specification).
pub const LINUX_ROOT_X86_64: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
/// Type GUID of an EFI System Partition.
pub const EFI_SYSTEM: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// Type GUID of a Linux swap partition.
pub const LINUX_SWAP: &str = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f";
/// Type GUID of a Linux LVM physical volume partition.
pub const LINUX_LVM: &str = "e6d6d379-f507-44c2-a23c-238f2a3df928";
/// Type GUID of a BIOS boot partition (GRUB's core image on a GPT disk booted by BIOS).
pub const BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
/// Type GUID of a Linux /home partition.
pub const LINUX_HOME: &str = "933ac7e1-2eb4-4f13-b844-0e14e2aef915";
/// Type GUID of a Linux software RAID member partition.
pub const LINUX_RAID: &str = "a19d880f-05fc-4d3b-a006-743f0f84911e";
/// Type GUID of a Microsoft basic data partition (also used by old Linux partitioners).
pub const MICROSOFT_BASIC_DATA: &str = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7";

/// Attribute bit 0: the partition is required for the platform to work.
pub const ATTR_REQUIRED: u64 = 1 << 0;
/// Attribute bit 1: firmware must not produce a block I/O protocol for the partition.
pub const ATTR_NO_BLOCK_IO: u64 = 1 << 1;
/// Attribute bit 2: legacy BIOS bootable (the GPT counterpart of the MBR boot flag).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// Largest partition entry array read from disk (entry count × entry size), in bytes.
pub const MAX_ENTRY_ARRAY: u64 = 1 << 20;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: usize = 92;
const ENTRY_SIZE: usize = 128;
const NAME_OFFSET: usize = 56;
const NAME_UNITS: usize = 36;
/// Sector sizes tried, in order.
const SECTOR_SIZES: [u64; 2] = [512, 4096];

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as used by GPT, zlib and Ethernet.
pub fn crc32(data: &[u8]) -> u32 {
    !reflected_update(&CRC_TABLE, !0, data)
}

static CRC_TABLE: [u32; 256] = reflected_table(0xEDB8_8320);

/// Formats a GUID stored on disk in the mixed-endian GPT layout (first three groups
/// little-endian) as lowercase text, the way blkid and lsblk print it.
pub fn guid_to_string(b: &[u8; 16]) -> String {
    let swapped = [
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    ];
    format_uuid(&swapped)
}

/// What looking for a GPT found.
#[derive(Debug)]
pub(crate) enum Probe {
    /// A usable GPT (from the primary or the backup copy).
    Found(Table),
    /// No GPT signature at any of the places looked at.
    Absent,
    /// GPT signatures were seen but no copy is usable; the text says why.
    Broken(String),
}

/// A header that passed its own checks (signature, size, CRC, location).
#[derive(Debug, Clone)]
struct Header {
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: [u8; 16],
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
}

/// Why a header copy could not be used.
#[derive(Debug)]
enum Bad {
    /// Nothing that looks like a GPT header there.
    NoSignature,
    /// A header is there but is unusable. `alternate` is the other copy's LBA when the
    /// header itself checked out (only its entry array is bad), so it can be trusted.
    Invalid {
        reason: String,
        alternate: Option<u64>,
    },
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn guid_at(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(off..off + 16) {
        a.copy_from_slice(s);
    }
    a
}

/// Number of whole sectors of `ss` bytes on a device of `size` bytes.
fn sectors(size: u64, ss: u64) -> u64 {
    size / ss
}

/// Reads and checks the header at `lba`, then its entry array.
fn load<R: Read + Seek>(
    dev: &mut R,
    size: u64,
    ss: u64,
    lba: u64,
) -> io::Result<Result<(Header, Vec<u8>), Bad>> {
    let invalid = |reason: String| {
        Ok(Err(Bad::Invalid {
            reason,
            alternate: None,
        }))
    };
    let Some(offset) = lba.checked_mul(ss) else {
        return Ok(Err(Bad::NoSignature));
    };
    if offset.checked_add(ss).filter(|&end| end <= size).is_none() {
        return Ok(Err(Bad::NoSignature));
    }
    // ss is 512 or 4096, so the cast cannot truncate.
    let buf = read_at(dev, offset, ss as usize)?;
    if buf.len() < MIN_HEADER_SIZE || buf.get(0..8) != Some(&SIGNATURE[..]) {
        return Ok(Err(Bad::NoSignature));
    }
    let header_size = le_u32(&buf, 12) as usize;
    if header_size < MIN_HEADER_SIZE || header_size > buf.len() {
        return invalid(format!(
            "header size {header_size} is outside {MIN_HEADER_SIZE}..={}",
            buf.len()
        ));
    }
    let stored_crc = le_u32(&buf, 16);
    let mut hdr = buf[..header_size].to_vec();
    hdr[16..20].fill(0);
    let computed = crc32(&hdr);
    if computed != stored_crc {
        return invalid(format!(
            "header checksum mismatch (stored {stored_crc:08x}, computed {computed:08x})"
        ));
    }
    let h = Header {
        my_lba: le_u64(&buf, 24),
        alternate_lba: le_u64(&buf, 32),
        first_usable: le_u64(&buf, 40),
        last_usable: le_u64(&buf, 48),
        disk_guid: guid_at(&buf, 56),
        entries_lba: le_u64(&buf, 72),
        num_entries: le_u32(&buf, 80),
        entry_size: le_u32(&buf, 84),
        entries_crc: le_u32(&buf, 88),
    };
    // From here on the header is authentic, so its pointer to the other copy can be used.
    let invalid = |reason: String| {
        Ok(Err(Bad::Invalid {
            reason,
            alternate: Some(h.alternate_lba),
        }))
    };
    if h.my_lba != lba {
        return invalid(format!(
            "header says it lives at LBA {} but was found at LBA {lba}",
            h.my_lba
        ));
    }
    if h.first_usable > h.last_usable {
        return invalid(format!(
            "first usable LBA {} is after last usable LBA {}",
            h.first_usable, h.last_usable
        ));
    }
    let es = u64::from(h.entry_size);
    if es < ENTRY_SIZE as u64 || !es.is_power_of_two() || es > 4096 {
        return invalid(format!(
            "partition entry size {es} is not 128 × 2^n (at most 4096)"
        ));
    }
    let array_len = u64::from(h.num_entries) * es;
    if array_len > MAX_ENTRY_ARRAY {
        return invalid(format!(
            "partition entry array of {} × {es} bytes exceeds the {MAX_ENTRY_ARRAY}-byte limit",
            h.num_entries
        ));
    }
    let Some(array_off) = h.entries_lba.checked_mul(ss) else {
        return invalid(format!(
            "partition entry array LBA {} is absurd",
            h.entries_lba
        ));
    };
    if array_off
        .checked_add(array_len)
        .filter(|&end| end <= size)
        .is_none()
    {
        return invalid(format!(
            "partition entry array at LBA {} lies beyond the end of the device",
            h.entries_lba
        ));
    }
    // array_len <= MAX_ENTRY_ARRAY (1 MiB), so the cast cannot truncate.
    let array = read_at(dev, array_off, array_len as usize)?;
    if array.len() as u64 != array_len {
        return invalid(format!(
            "partition entry array at LBA {} is truncated",
            h.entries_lba
        ));
    }
    let computed = crc32(&array);
    if computed != h.entries_crc {
        return invalid(format!(
            "partition entry array checksum mismatch (stored {:08x}, computed {computed:08x})",
            h.entries_crc
        ));
    }
    Ok(Ok((h, array)))
}

/// Turns a checked header and entry array into a table.
fn build(h: &Header, array: &[u8], ss: u64, mut warnings: Vec<String>) -> Table {
    let mut partitions = Vec::new();
    let es = h.entry_size as usize;
    for (i, e) in array.chunks_exact(es.max(1)).enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let type_guid = guid_at(e, 0);
        if type_guid == [0u8; 16] {
            continue;
        }
        let first = le_u64(e, 32);
        let last = le_u64(e, 40);
        if last < first {
            warnings.push(format!(
                "GPT entry {number} ends (LBA {last}) before it starts (LBA {first}); ignored"
            ));
            continue;
        }
        let (Some(start), Some(bytes)) = (
            first.checked_mul(ss),
            (last - first)
                .checked_add(1)
                .and_then(|n| n.checked_mul(ss)),
        ) else {
            warnings.push(format!(
                "GPT entry {number} (LBA {first}..={last}) does not fit in 64-bit byte offsets; ignored"
            ));
            continue;
        };
        if first < h.first_usable || last > h.last_usable {
            warnings.push(format!(
                "GPT partition {number} (LBA {first}..={last}) lies outside the usable area \
                 (LBA {}..={})",
                h.first_usable, h.last_usable
            ));
        }
        let attributes = le_u64(e, 48);
        partitions.push(Partition {
            number,
            start,
            size: bytes,
            part_type: PartType::Gpt(guid_to_string(&type_guid)),
            uuid: Some(guid_to_string(&guid_at(e, 16))),
            name: decode_name(e),
            bootable: attributes & ATTR_LEGACY_BIOS_BOOTABLE != 0,
            attributes,
        });
    }
    Table {
        kind: TableKind::Gpt,
        id: Some(guid_to_string(&h.disk_guid)),
        // ss is 512 or 4096.
        sector_size: ss as u32,
        partitions,
        warnings,
    }
}

/// The partition name: up to 36 UTF-16LE code units, ended by the first NUL.
fn decode_name(entry: &[u8]) -> Option<String> {
    let units: Vec<u16> = entry
        .get(NAME_OFFSET..NAME_OFFSET + 2 * NAME_UNITS)
        .unwrap_or(&[])
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    if units.is_empty() {
        None
    } else {
        Some(String::from_utf16_lossy(&units))
    }
}

/// Checks the backup copy that a valid primary points at and warns about what is off.
fn check_backup<R: Read + Seek>(
    dev: &mut R,
    size: u64,
    ss: u64,
    primary: &Header,
    warnings: &mut Vec<String>,
) -> io::Result<()> {
    let count = sectors(size, ss);
    let last = count.saturating_sub(1);
    let alt = primary.alternate_lba;
    if alt >= count {
        warnings.push(format!(
            "the primary GPT header puts the backup at LBA {alt}, beyond the end of the device \
             (last LBA {last}): the image is truncated or the disk shrank"
        ));
        return Ok(());
    }
    if alt != last {
        warnings.push(format!(
            "the backup GPT header is at LBA {alt}, not at the last LBA {last}: \
             the disk was probably enlarged and the backup table should be moved to the end"
        ));
    }
    match load(dev, size, ss, alt)? {
        Ok((b, _)) => {
            if b.disk_guid != primary.disk_guid
                || b.entries_crc != primary.entries_crc
                || b.num_entries != primary.num_entries
                || b.entry_size != primary.entry_size
            {
                warnings.push(format!(
                    "the backup GPT at LBA {alt} differs from the primary (disk GUID or \
                     partition entries); the primary is used"
                ));
            }
        }
        Err(Bad::NoSignature) => warnings.push(format!(
            "the backup GPT header at LBA {alt} is missing (no signature)"
        )),
        Err(Bad::Invalid { reason, .. }) => warnings.push(format!(
            "the backup GPT header at LBA {alt} is damaged: {reason}"
        )),
    }
    Ok(())
}

/// Whether a valid primary GPT header (with a valid entry array) sits at LBA 1.
pub(crate) fn primary_present<R: Read + Seek>(dev: &mut R, size: u64) -> io::Result<bool> {
    for ss in SECTOR_SIZES {
        if load(dev, size, ss, 1)?.is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads only the backup GPT (header at the last LBA, 512- then 4096-byte sectors), ignoring
/// sector 0 and LBA 1 entirely: for recovering a disk whose first sectors were wiped, which
/// [`super::read_table`] does not do on its own (a backup-only GPT without a protective MBR may
/// just as well be a stale leftover behind a whole-disk filesystem). `Ok(None)` when there is
/// no valid backup.
pub fn read_backup<R: Read + Seek>(
    dev: &mut R,
    size: u64,
) -> Result<Option<Table>, PartitionError> {
    for ss in SECTOR_SIZES {
        let count = sectors(size, ss);
        if count < 3 {
            continue;
        }
        if let Ok((h, array)) = load(dev, size, ss, count - 1)? {
            let warnings = vec![format!(
                "read from the backup GPT header at LBA {} only",
                count - 1
            )];
            let mut t = build(&h, &array, ss, warnings);
            super::check_layout(&mut t, size);
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// Looks for a GPT: the primary header at LBA 1, then the backup header at the last LBA (and
/// where a damaged primary says the backup is), for 512- then 4096-byte sectors. With
/// `need_primary_signature`, the backup is only consulted when LBA 1 holds a (damaged) GPT
/// header.
pub(crate) fn probe<R: Read + Seek>(
    dev: &mut R,
    size: u64,
    need_primary_signature: bool,
) -> io::Result<Probe> {
    let mut problems: Vec<String> = Vec::new();
    // (sector size, alternate LBA from an authentic primary header) of damaged primaries.
    let mut damaged: Vec<(u64, Option<u64>)> = Vec::new();

    for ss in SECTOR_SIZES {
        match load(dev, size, ss, 1)? {
            Ok((h, array)) => {
                let mut warnings = Vec::new();
                check_backup(dev, size, ss, &h, &mut warnings)?;
                return Ok(Probe::Found(build(&h, &array, ss, warnings)));
            }
            Err(Bad::NoSignature) => {}
            Err(Bad::Invalid { reason, alternate }) => {
                problems.push(format!(
                    "primary GPT header at LBA 1 ({ss}-byte sectors) is damaged: {reason}"
                ));
                damaged.push((ss, alternate));
            }
        }
    }

    if need_primary_signature && damaged.is_empty() {
        return Ok(Probe::Absent);
    }

    // Backup candidates: for sector sizes where a damaged primary was seen first.
    let mut candidates: Vec<(u64, u64)> = Vec::new();
    let mut sizes: Vec<u64> = damaged.iter().map(|&(ss, _)| ss).collect();
    for ss in SECTOR_SIZES {
        if !sizes.contains(&ss) {
            sizes.push(ss);
        }
    }
    for ss in sizes {
        let count = sectors(size, ss);
        if count < 3 {
            continue;
        }
        candidates.push((ss, count - 1));
        for &(dss, alt) in &damaged {
            if let Some(alt) = alt {
                if dss == ss && alt != count - 1 && alt > 1 && alt < count {
                    candidates.push((ss, alt));
                }
            }
        }
    }

    for (ss, lba) in candidates {
        match load(dev, size, ss, lba)? {
            Ok((h, array)) => {
                let mut warnings = Vec::new();
                if problems.is_empty() {
                    warnings.push(format!(
                        "the primary GPT header at LBA 1 is missing (no signature); \
                         using the backup header at LBA {lba}"
                    ));
                } else {
                    for p in &problems {
                        warnings.push(format!("{p}; using the backup header at LBA {lba}"));
                    }
                }
                return Ok(Probe::Found(build(&h, &array, ss, warnings)));
            }
            Err(Bad::NoSignature) => {}
            Err(Bad::Invalid { reason, .. }) => problems.push(format!(
                "backup GPT header at LBA {lba} ({ss}-byte sectors) is damaged: {reason}"
            )),
        }
    }

    if problems.is_empty() {
        Ok(Probe::Absent)
    } else {
        Ok(Probe::Broken(problems.join("; ")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// One partition for [`build_image`]: type GUID, unique GUID, first and last LBA, name.
    pub(crate) struct Spec<'a> {
        pub type_guid: &'a str,
        pub uuid: &'a str,
        pub first: u64,
        pub last: u64,
        pub name: &'a str,
        pub attrs: u64,
    }

    /// Text GUID → on-disk mixed-endian bytes.
    pub(crate) fn guid_bytes(s: &str) -> [u8; 16] {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        ss: u64,
        my: u64,
        alt: u64,
        first_usable: u64,
        last_usable: u64,
        entries_lba: u64,
        disk: &str,
        array: &[u8],
    ) -> Vec<u8> {
        let mut h = vec![0u8; ss as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&guid_bytes(disk));
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&((array.len() / ENTRY_SIZE) as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&crc32(array).to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// A whole disk image with protective MBR, primary and backup GPT (128 entries).
    pub(crate) fn build_image(sectors: u64, ss: u64, disk: &str, parts: &[Spec]) -> Vec<u8> {
        let mut img = vec![0u8; (sectors * ss) as usize];
        // protective MBR
        img[446 + 4] = 0xEE;
        img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        let n = (sectors - 1).min(u64::from(u32::MAX)) as u32;
        img[446 + 12..446 + 16].copy_from_slice(&n.to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;
        let mut array = vec![0u8; 128 * ENTRY_SIZE];
        for (i, p) in parts.iter().enumerate() {
            let e = &mut array[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE];
            e[0..16].copy_from_slice(&guid_bytes(p.type_guid));
            e[16..32].copy_from_slice(&guid_bytes(p.uuid));
            e[32..40].copy_from_slice(&p.first.to_le_bytes());
            e[40..48].copy_from_slice(&p.last.to_le_bytes());
            e[48..56].copy_from_slice(&p.attrs.to_le_bytes());
            for (j, u) in p.name.encode_utf16().take(NAME_UNITS).enumerate() {
                e[NAME_OFFSET + 2 * j..NAME_OFFSET + 2 * j + 2].copy_from_slice(&u.to_le_bytes());
            }
        }
        let array_sectors = (array.len() as u64).div_ceil(ss);
        let last = sectors - 1;
        let first_usable = 2 + array_sectors;
        let last_usable = last - 1 - array_sectors;
        let backup_entries = last - array_sectors;
        let put = |img: &mut Vec<u8>, lba: u64, data: &[u8]| {
            let off = (lba * ss) as usize;
            img[off..off + data.len()].copy_from_slice(data);
        };
        put(&mut img, 2, &array);
        put(&mut img, backup_entries, &array);
        let primary = header(ss, 1, last, first_usable, last_usable, 2, disk, &array);
        put(&mut img, 1, &primary);
        let backup = header(
            ss,
            last,
            1,
            first_usable,
            last_usable,
            backup_entries,
            disk,
            &array,
        );
        put(&mut img, last, &backup);
        img
    }

    pub(crate) fn sample_parts() -> Vec<Spec<'static>> {
        vec![
            Spec {
                type_guid: EFI_SYSTEM,
                uuid: "11111111-2222-3333-4444-555555555555",
                first: 34,
                last: 99,
                name: "EFI System",
                attrs: 0,
            },
            Spec {
                type_guid: LINUX_ROOT_X86_64,
                uuid: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                first: 100,
                last: 199,
                name: "root ✓",
                attrs: ATTR_LEGACY_BIOS_BOOTABLE,
            },
        ]
    }

    const DISK: &str = "01234567-89ab-cdef-0123-456789abcdef";

    fn probe_vec(img: Vec<u8>) -> Probe {
        let size = img.len() as u64;
        probe(&mut Cursor::new(img), size, false).unwrap()
    }

    #[test]
    fn crc32_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn guid_mixed_endian() {
        let b = guid_bytes(LINUX_FILESYSTEM);
        assert_eq!(&b[0..4], &[0xaf, 0x3d, 0xc6, 0x0f]);
        assert_eq!(guid_to_string(&b), LINUX_FILESYSTEM);
    }

    #[test]
    fn reads_primary() {
        let img = build_image(300, 512, DISK, &sample_parts());
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert_eq!(t.kind, TableKind::Gpt);
        assert_eq!(t.id.as_deref(), Some(DISK));
        assert_eq!(t.sector_size, 512);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(t.partitions.len(), 2);
        let p = &t.partitions[1];
        assert_eq!(p.number, 2);
        assert_eq!(p.start, 100 * 512);
        assert_eq!(p.size, 100 * 512);
        assert_eq!(p.part_type, PartType::Gpt(LINUX_ROOT_X86_64.into()));
        assert_eq!(
            p.uuid.as_deref(),
            Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
        );
        assert_eq!(p.name.as_deref(), Some("root ✓"));
        assert!(p.bootable);
        assert_eq!(p.attributes, ATTR_LEGACY_BIOS_BOOTABLE);
        assert!(!t.partitions[0].bootable);
    }

    #[test]
    fn reads_4k_sectors() {
        let parts = [Spec {
            type_guid: LINUX_SWAP,
            uuid: "11111111-2222-3333-4444-555555555555",
            first: 10,
            last: 20,
            name: "swap",
            attrs: 0,
        }];
        let img = build_image(64, 4096, DISK, &parts);
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert_eq!(t.sector_size, 4096);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(t.partitions[0].start, 10 * 4096);
        assert_eq!(t.partitions[0].size, 11 * 4096);
    }

    #[test]
    fn damaged_primary_header_uses_backup() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        img[512 + 40] ^= 0xff; // first usable LBA: header CRC now wrong
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert_eq!(t.partitions.len(), 2);
        assert!(
            t.warnings
                .iter()
                .any(|w| w.contains("checksum") && w.contains("backup header at LBA 299")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn damaged_primary_entries_use_backup() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        img[2 * 512 + 60] ^= 0xff; // inside the first name
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert_eq!(t.partitions[0].name.as_deref(), Some("EFI System"));
        assert!(t
            .warnings
            .iter()
            .any(|w| w.contains("entry array checksum")));
    }

    #[test]
    fn missing_primary_uses_backup() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        img[512..1024].fill(0);
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert_eq!(t.partitions.len(), 2);
        assert!(t.warnings.iter().any(|w| w.contains("missing")));
    }

    #[test]
    fn both_damaged_is_broken() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        img[512 + 40] ^= 0xff;
        img[299 * 512 + 40] ^= 0xff;
        match probe_vec(img) {
            Probe::Broken(why) => assert!(why.contains("primary") && why.contains("backup")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damaged_backup_is_reported() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        img[299 * 512 + 40] ^= 0xff;
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert!(t
            .warnings
            .iter()
            .any(|w| w.contains("backup GPT header at LBA 299 is damaged")));
    }

    #[test]
    fn enlarged_disk_is_reported() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        img.resize(400 * 512, 0);
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert!(t.warnings.iter().any(|w| w.contains("enlarged")));
    }

    #[test]
    fn huge_entry_count_is_refused() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        // 2^24 entries × 128 bytes, with a correct header CRC.
        let h = &mut img[512..1024];
        h[80..84].copy_from_slice(&(1u32 << 24).to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert!(t.warnings.iter().any(|w| w.contains("limit")));
    }

    #[test]
    fn backup_alone_needs_asking() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        img[..1024].fill(0);
        let size = img.len() as u64;
        let mut dev = Cursor::new(img);
        assert!(matches!(
            probe(&mut dev, size, true).unwrap(),
            Probe::Absent
        ));
        let t = read_backup(&mut dev, size).unwrap().unwrap();
        assert_eq!(t.partitions.len(), 2);
        assert!(t.warnings[0].contains("backup"));
        assert!(read_backup(&mut Cursor::new(vec![0u8; 4096]), 4096)
            .unwrap()
            .is_none());
    }

    #[test]
    fn differing_backup_is_reported() {
        let mut img = build_image(300, 512, DISK, &sample_parts());
        let other = build_image(300, 512, DISK, &sample_parts()[..1]);
        img[267 * 512..].copy_from_slice(&other[267 * 512..]);
        let Probe::Found(t) = probe_vec(img) else {
            panic!("no table")
        };
        assert_eq!(t.partitions.len(), 2);
        assert!(
            t.warnings.iter().any(|w| w.contains("differs")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn no_signature_is_absent() {
        assert!(matches!(probe_vec(vec![0u8; 300 * 512]), Probe::Absent));
        assert!(matches!(probe_vec(vec![0u8; 100]), Probe::Absent));
    }
}
