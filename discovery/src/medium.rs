//! The marker that identifies vmrescue's own rescue media (ISO, nova rescue disk), so discovery
//! excludes them. Never by UUID or label: a rescue image made from the guest's base image shares
//! those. The marker is one sector at [`OFFSET`], outside any filesystem: in an ISO's 32 KiB
//! system area and in a disk image's gap between the GPT and the first partition at 1 MiB.

/// Byte offset of the marker sector.
pub const OFFSET: u64 = 0x6000;
/// Marker sector size.
pub const SIZE: usize = 512;
const MAGIC: &[u8] = b"VMRESCUE-MEDIUM:v1:";

/// The marker sector for a medium with `build_id` (printable ASCII, at most 64 bytes kept).
pub fn encode(build_id: &str) -> [u8; SIZE] {
    let mut sector = [0u8; SIZE];
    let id: Vec<u8> = build_id
        .bytes()
        .filter(|b| b.is_ascii_graphic())
        .take(64)
        .collect();
    sector[..MAGIC.len()].copy_from_slice(MAGIC);
    sector[MAGIC.len()..MAGIC.len() + id.len()].copy_from_slice(&id);
    sector[MAGIC.len() + id.len()] = b'\n';
    sector
}

/// The build id if `sector` (read at [`OFFSET`]) is a vmrescue marker.
pub fn detect(sector: &[u8]) -> Option<String> {
    let rest = sector.strip_prefix(MAGIC)?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let id = &rest[..end.min(64)];
    id.iter()
        .all(|b| b.is_ascii_graphic())
        .then(|| String::from_utf8_lossy(id).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        let s = encode("20261123-abc");
        assert_eq!(detect(&s).as_deref(), Some("20261123-abc"));
        assert_eq!(detect(&[0u8; 512]), None);
        assert_eq!(detect(b"VMRESCUE-MEDIUM:v1:no-newline"), None);
        assert_eq!(detect(b""), None);
        let hostile = encode("a b\x1bc");
        assert_eq!(detect(&hostile).as_deref(), Some("abc"));
    }
}
