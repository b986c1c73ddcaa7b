//! An md RAID member's 1.x superblock read from its bytes (no md driver): the array's name,
//! level and member count, and where the array's data lies on this member, so that a RAID1
//! member's copy is looked into without assembling anything. (0.90 superblocks are named by
//! the probe but not read here.)

use std::io::{Read, Seek, SeekFrom};

const MAGIC: u32 = 0xa92b_4efc;

/// What a member's superblock says of its array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdSuper {
    /// The array's name without its host (`guest01:root` -> `root`).
    pub name: String,
    /// 0, 1, 4, 5, 6, 10 (-1 linear).
    pub level: i32,
    pub raid_disks: u32,
    /// Where the array's data starts on this member, and how long it is (bytes).
    pub data_offset: u64,
    pub data_size: u64,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | u64::from(le32(b, at + 4)) << 32
}

/// The superblock of the 256 bytes `sb` found at byte `off` (pure).
pub fn parse(sb: &[u8], off: u64) -> Option<MdSuper> {
    if sb.len() < 256 || le32(sb, 0) != MAGIC || le32(sb, 4) != 1 || le64(sb, 144) != off >> 9 {
        return None;
    }
    let raw = &sb[32..64];
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let full = String::from_utf8_lossy(raw);
    let name = full.rsplit(':').next().unwrap_or_default().to_owned();
    Some(MdSuper {
        name,
        level: le32(sb, 72) as i32,
        raid_disks: le32(sb, 92),
        data_offset: le64(sb, 128).saturating_mul(512),
        data_size: le64(sb, 136).saturating_mul(512),
    })
}

/// The 1.x superblock of a member of `size` bytes: 1.0 near its end, 1.1 at its start, 1.2 at
/// 4 KiB (where the probe looks).
pub fn read<R: Read + Seek>(r: &mut R, size: u64) -> Option<MdSuper> {
    let end = (size & !0xfff).checked_sub(0x2000);
    [end, Some(0), Some(0x1000)]
        .into_iter()
        .flatten()
        .find_map(|off| {
            let mut sb = [0u8; 256];
            r.seek(SeekFrom::Start(off)).ok()?;
            r.read_exact(&mut sb).ok()?;
            parse(&sb, off)
        })
        .filter(|s| s.data_offset.saturating_add(s.data_size) <= size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(off: u64, name: &[u8], level: u32, disks: u32, data: (u64, u64)) -> Vec<u8> {
        let mut b = vec![0u8; 256];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[32..32 + name.len()].copy_from_slice(name);
        b[72..76].copy_from_slice(&level.to_le_bytes());
        b[92..96].copy_from_slice(&disks.to_le_bytes());
        b[128..136].copy_from_slice(&(data.0 / 512).to_le_bytes());
        b[136..144].copy_from_slice(&(data.1 / 512).to_le_bytes());
        b[144..152].copy_from_slice(&(off >> 9).to_le_bytes());
        b
    }

    #[test]
    fn a_1_0_member_holds_its_data_from_its_start() {
        let size = 64u64 << 20;
        let off = size - 0x2000;
        let mut disk = vec![0u8; size as usize];
        disk[off as usize..off as usize + 256].copy_from_slice(&sb(
            off,
            b"guest01:root",
            1,
            2,
            (0, size - (128 << 10)),
        ));
        let s = read(&mut std::io::Cursor::new(&disk), size).unwrap();
        assert_eq!(
            s,
            MdSuper {
                name: "root".into(),
                level: 1,
                raid_disks: 2,
                data_offset: 0,
                data_size: size - (128 << 10),
            }
        );
    }

    #[test]
    fn a_1_2_superblock_and_what_is_refused() {
        let b = sb(0x1000, b"data", 5, 3, (1 << 20, 8 << 20));
        let s = parse(&b, 0x1000).unwrap();
        assert_eq!((s.name.as_str(), s.level, s.raid_disks), ("data", 5, 3));
        assert_eq!((s.data_offset, s.data_size), (1 << 20, 8 << 20));
        // Its own offset must match where it was found.
        assert_eq!(parse(&b, 0), None);
        assert_eq!(parse(&b[..100], 0x1000), None);
        // Data beyond the member is not taken.
        let mut disk = vec![0u8; 4 << 20];
        disk[0x1000..0x1100].copy_from_slice(&b);
        assert_eq!(read(&mut std::io::Cursor::new(&disk), 4 << 20), None);
    }
}
