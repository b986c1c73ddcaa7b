//! The host kernel: which one, and its version.

use std::fs;
use std::path::{Path, PathBuf};

/// Reads the version string a bzImage carries in its setup header, if it has one.
pub fn bzimage_version(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*image.get(0x20E)?, *image.get(0x20F)?]) as usize;
    let start = 0x200 + ptr;
    let raw = image.get(start..start.checked_add(256)?.min(image.len()))?;
    let end = raw.iter().position(|&b| b == 0 || b == b' ')?;
    let v = std::str::from_utf8(&raw[..end]).ok()?;
    (!v.is_empty()).then(|| v.to_owned())
}

/// `vmlinuz-6.1.0-56-amd64` -> `6.1.0-56-amd64`.
pub fn version_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("vmlinuz-").map(str::to_owned)
}

/// The newest `/boot/vmlinuz-*` (by version-aware name order), if any.
pub fn default_kernel(boot: &Path) -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = fs::read_dir(boot)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| version_from_name(p).is_some())
        .collect();
    kernels.sort_by_key(|p| version_key(&version_from_name(p).unwrap_or_default()));
    kernels.pop()
}

/// Sort key comparing the numeric runs of a version as numbers.
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut num = String::new();
    let mut text = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            if !text.is_empty() {
                out.push((0, std::mem::take(&mut text)));
            }
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((num.parse().unwrap_or(u64::MAX), String::new()));
                num.clear();
            }
            text.push(c);
        }
    }
    if !num.is_empty() {
        out.push((num.parse().unwrap_or(u64::MAX), String::new()));
    }
    if !text.is_empty() {
        out.push((0, text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_newest_kernel_numerically() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-56-amd64",
            "config-6.1.0-99-amd64",
            "vmlinuz-6.1.0-10-amd64",
        ] {
            fs::write(d.path().join(n), b"").unwrap();
        }
        assert_eq!(
            default_kernel(d.path()).unwrap().file_name().unwrap(),
            "vmlinuz-6.1.0-56-amd64"
        );
        assert_eq!(default_kernel(Path::new("/nonexistent")), None);
    }

    #[test]
    fn reads_version_from_setup_header() {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20E..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        img[0x500..0x520].copy_from_slice(b"6.1.0-56-amd64 (debian-kernel@l\0");
        assert_eq!(bzimage_version(&img).as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(bzimage_version(b"not a kernel"), None);
        img[0x20E..0x210].copy_from_slice(&0xFFFFu16.to_le_bytes());
        assert_eq!(bzimage_version(&img), None);
    }
}
