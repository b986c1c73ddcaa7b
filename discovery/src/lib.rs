//! What is on a disk, read from its bytes alone: no syscalls beyond reading a device or image
//! file, so the same code runs in the rescue guest and on the host.

pub mod assemble;
pub mod bootcfg;
pub mod ext;
pub mod fstab;
pub mod fstype;
pub mod inventory;
pub mod journal;
pub mod lvm_meta;
pub mod md_meta;
pub mod medium;
pub mod osroot;
pub mod partition;
pub mod path;
pub mod probe;

use std::io::{self, Read, Seek, SeekFrom};

/// Reads `len` bytes at `offset`; a short device yields a short buffer, not an error.
pub fn read_at<R: Read + Seek>(dev: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    dev.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    dev.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Formats 16 bytes as a lowercase hyphenated UUID, as blkid prints it.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_format() {
        let b = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 0xff,
        ];
        assert_eq!(format_uuid(&b), "12345678-9abc-def0-0001-0203040506ff");
    }

    #[test]
    fn read_at_short_device() {
        let mut dev = io::Cursor::new(vec![7u8; 100]);
        assert_eq!(read_at(&mut dev, 90, 50).unwrap(), vec![7u8; 10]);
        assert!(read_at(&mut dev, 200, 50).unwrap().is_empty());
    }
}
