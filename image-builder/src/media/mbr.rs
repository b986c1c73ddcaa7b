//! A DOS partition table with one bootable partition (pure): what the disk image needs, with
//! SYSLINUX's boot code in front.

/// Sector size.
pub const SECTOR: u64 = 512;
/// The partition starts at 1 MiB.
pub const FIRST_LBA: u64 = 2048;
/// EFI System Partition type: OVMF boots from it, SYSLINUX's MBR code from the active flag.
const TYPE_ESP: u8 = 0xef;

/// The first sector: `boot_code` (at most 440 bytes), the disk signature, one active
/// partition of `sectors` from [`FIRST_LBA`], and the boot signature.
pub fn sector0(boot_code: &[u8], signature: u32, sectors: u32) -> Result<[u8; 512], String> {
    if boot_code.len() > 440 {
        return Err(format!(
            "MBR boot code is {} bytes, more than 440",
            boot_code.len()
        ));
    }
    let mut s = [0u8; 512];
    s[..boot_code.len()].copy_from_slice(boot_code);
    s[0x1b8..0x1bc].copy_from_slice(&signature.to_le_bytes());
    let e = &mut s[0x1be..0x1ce];
    e[0] = 0x80;
    // CHS fields beyond what CHS can address, as tools write for LBA-only disks.
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = TYPE_ESP;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&(FIRST_LBA as u32).to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    s[0x1fe] = 0x55;
    s[0x1ff] = 0xaa;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_reads_back_the_partition() {
        let code = [0xfau8; 440];
        let s = sector0(&code, 0x5652_4553, 129_024).unwrap();
        let mut disk = s.to_vec();
        disk.resize(((FIRST_LBA + 129_024) * SECTOR) as usize, 0);
        let table = vmrescue_discovery::partition::read_table(
            &mut std::io::Cursor::new(&disk),
            disk.len() as u64,
        )
        .unwrap()
        .unwrap();
        assert_eq!(table.partitions.len(), 1);
        let p = &table.partitions[0];
        assert_eq!((p.start, p.size), (FIRST_LBA * SECTOR, 129_024 * SECTOR));
        assert!(p.bootable);
        assert_eq!(table.id.as_deref(), Some("56524553"));
        assert_eq!(&s[..440], &code[..]);
        assert_eq!(&s[0x1fe..], &[0x55, 0xaa]);
        assert_eq!(s[0x1be], 0x80);
        assert!(sector0(&[0u8; 441], 0, 1).is_err());
    }
}
