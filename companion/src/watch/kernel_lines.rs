//! What a guest kernel's console lines say about its storage: pure matching of the messages
//! ext2/3/4, XFS, btrfs, the block layer and the buffer cache print when I/O fails or a
//! filesystem gives up. Lines come from the guest: hostile, possibly cut or garbled.

/// What a line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// The block layer or buffer cache saw an I/O error.
    IoError,
    /// A filesystem recorded an error (aborted journal, corrupted metadata, XFS shut down).
    FsError,
    /// A filesystem went read-only.
    FsReadOnly,
}

/// One matched line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub finding: Finding,
    /// The guest's device as its kernel names it (`vda1`, `dm-0`, `sdb`), when the line says.
    pub device: Option<String>,
    /// The message without its timestamp and log-level prefix.
    pub message: String,
}

/// How much of a line is looked at and kept.
pub const MAX_LINE: usize = 512;

/// Classifies one console line; `None` for anything that is not a storage incident.
pub fn classify(line: &str) -> Option<Matched> {
    let msg = strip_prefixes(line);
    let (finding, device) = find(msg)?;
    Some(Matched {
        finding,
        device: device.filter(|d| plausible_device(d)),
        message: msg.to_owned(),
    })
}

fn find(m: &str) -> Option<(Finding, Option<String>)> {
    // ext2/3/4: "EXT4-fs (vda1): Remounting filesystem read-only",
    // "EXT4-fs error (device vda1): ext4_journal_check_start:83: ... Detected aborted journal".
    for fs in ["EXT4-fs", "EXT3-fs", "EXT2-fs"] {
        if let Some(rest) = after(m, fs) {
            if m.contains("Remounting filesystem read-only") {
                return Some((Finding::FsReadOnly, paren_device(rest)));
            }
            if let Some(r) = rest.strip_prefix(" error (device ") {
                return Some((Finding::FsError, upto(r, ')')));
            }
            if rest.contains("I/O error") {
                return Some((Finding::IoError, paren_device(rest)));
            }
        }
    }
    // "Aborting journal on device vda1-8."
    if let Some(r) = after(m, "Aborting journal on device ") {
        let dev = upto(r, '.').map(|d| match d.rsplit_once('-') {
            Some((dev, n)) if n.bytes().all(|b| b.is_ascii_digit()) => dev.to_owned(),
            _ => d,
        });
        return Some((Finding::FsError, dev));
    }
    // XFS: "XFS (vdb1): Filesystem has been shut down due to log error (0x2)." and
    // "XFS (vdb): Corruption of in-memory data (0x8) detected at ...  Shutting down filesystem."
    if let Some(rest) = after(m, "XFS (") {
        let dev = upto(rest, ')');
        if m.contains("has been shut down") || m.contains("Shutting down filesystem") {
            return Some((Finding::FsError, dev));
        }
        if m.contains("I/O error") || m.contains("I/O Error") {
            return Some((Finding::IoError, dev));
        }
        if m.contains("Corruption") || m.contains("corruption") {
            return Some((Finding::FsError, dev));
        }
    }
    // btrfs: "BTRFS: error (device vda2) in ...", "BTRFS info (device vda2): forced readonly".
    if let Some(rest) = after(m, "BTRFS") {
        let dev = after(rest, "(device ").and_then(|r| upto(r, ')'));
        if rest.contains("forced readonly") {
            return Some((Finding::FsReadOnly, dev));
        }
        if rest.starts_with(": error")
            || rest.starts_with(" error")
            || rest.starts_with(" critical")
        {
            return Some((Finding::FsError, dev));
        }
    }
    // "Buffer I/O error on dev vda1, logical block 0, lost async page write" (older kernels:
    // "on device").
    if let Some(r) = after(m, "Buffer I/O error on dev") {
        let r = r.strip_prefix("ice").unwrap_or(r).trim_start();
        return Some((Finding::IoError, upto(r, ',')));
    }
    // The block layer: "I/O error, dev vda, sector 2048 op 0x1:(WRITE) ..." (6.x), after
    // "blk_update_request: " (5.x), "print_req_error: " (4.x) or "end_request: " (3.x); also
    // "critical medium error, dev sda, sector ...".
    for what in [
        "I/O error, dev ",
        "medium error, dev ",
        "target error, dev ",
        "nexus error, dev ",
    ] {
        if let Some(r) = after(m, what) {
            return Some((Finding::IoError, upto(r, ',')));
        }
    }
    None
}

/// `line` without `\r`, a `<N>` syslog level, a `[ 12.345678]` timestamp or a journal's
/// `... kernel: ` prefix; at most [`MAX_LINE`] bytes.
fn strip_prefixes(line: &str) -> &str {
    let mut s = cut(
        line.trim_matches(|c: char| c == '\r' || c == '\n' || c == '\0'),
        MAX_LINE,
    );
    if let Some(r) = s.strip_prefix('<') {
        if let Some((n, rest)) = r.split_once('>') {
            if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) {
                s = rest;
            }
        }
    }
    let t = s.trim_start();
    if let Some(r) = t.strip_prefix('[') {
        if let Some((stamp, rest)) = r.split_once(']') {
            if stamp
                .trim()
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.')
            {
                s = rest;
            }
        }
    }
    if let Some((_, rest)) = s.split_once(" kernel: ") {
        s = rest;
    }
    s.trim()
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What follows the first `pat` in `s`.
fn after<'a>(s: &'a str, pat: &str) -> Option<&'a str> {
    s.find(pat).map(|i| &s[i + pat.len()..])
}

/// `s` up to `end` (trimmed), when `end` is there and something precedes it.
fn upto(s: &str, end: char) -> Option<String> {
    let (d, _) = s.split_once(end)?;
    let d = d.trim();
    (!d.is_empty()).then(|| d.to_owned())
}

/// The device of ` (vda1): ...`.
fn paren_device(rest: &str) -> Option<String> {
    rest.trim_start()
        .strip_prefix('(')
        .and_then(|r| upto(r, ')'))
}

/// A kernel device name: short, of letters, digits, `-`, `_`, `:` and `!`.
fn plausible_device(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 32
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:!".contains(&b))
}

/// The whole disk of a partition's kernel name: `vda1` -> `vda`, `nvme0n1p2` -> `nvme0n1`,
/// `mmcblk0p1` -> `mmcblk0`; a name that is no partition is returned as it is.
pub fn whole_disk(dev: &str) -> &str {
    let trimmed = dev.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() == dev.len() || trimmed.is_empty() {
        return dev;
    }
    if (dev.starts_with("nvme") || dev.starts_with("mmcblk")) && trimmed.ends_with('p') {
        let base = &trimmed[..trimmed.len() - 1];
        if base.ends_with(|c: char| c.is_ascii_digit()) {
            return base;
        }
        return dev;
    }
    if dev.starts_with("nvme")
        || dev.starts_with("mmcblk")
        || dev.starts_with("dm-")
        || dev.starts_with("loop")
        || dev.starts_with("md")
    {
        return dev;
    }
    trimmed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(line: &str) -> Option<(Finding, Option<String>)> {
        classify(line).map(|m| (m.finding, m.device))
    }

    fn some(f: Finding, d: &str) -> Option<(Finding, Option<String>)> {
        Some((f, Some(d.to_owned())))
    }

    #[test]
    fn ext4_messages_of_real_kernels() {
        // Debian 12 (6.1), as a journal abort after a storage path failure prints them.
        assert_eq!(
            c("[  183.513375] EXT4-fs error (device vda1): ext4_journal_check_start:83: comm systemd-journal: Detected aborted journal"),
            some(Finding::FsError, "vda1")
        );
        assert_eq!(
            c("[  183.520014] EXT4-fs (vda1): Remounting filesystem read-only\r"),
            some(Finding::FsReadOnly, "vda1")
        );
        assert_eq!(
            c("[  183.500101] Aborting journal on device vda1-8."),
            some(Finding::FsError, "vda1")
        );
        assert_eq!(
            c("<3>[   12.1] EXT4-fs error (device sda): ext4_lookup:1855: inode #2: comm ls: iget: checksum invalid"),
            some(Finding::FsError, "sda")
        );
        assert_eq!(
            c("EXT4-fs warning (device vdb): ext4_end_bio:343: I/O error 10 writing to inode 12 starting block 8320)"),
            Some((Finding::IoError, None)),
        );
        assert_eq!(
            c("[ 5.1] EXT3-fs error (device dm-0): ext3_journal_start_sb: Detected aborted journal"),
            some(Finding::FsError, "dm-0")
        );
        // RHEL 9 through journald on the console.
        assert_eq!(
            c("Dec 01 14:02:11 web-1 kernel: EXT4-fs (dm-0): Remounting filesystem read-only"),
            some(Finding::FsReadOnly, "dm-0")
        );
    }

    #[test]
    fn block_layer_and_buffer_cache() {
        assert_eq!(
            c("[   94.300501] I/O error, dev vda, sector 2099200 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 2"),
            some(Finding::IoError, "vda")
        );
        assert_eq!(
            c("[   94.3] blk_update_request: I/O error, dev sdb, sector 4096 op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 0"),
            some(Finding::IoError, "sdb")
        );
        assert_eq!(
            c("print_req_error: I/O error, dev vdc, sector 0"),
            some(Finding::IoError, "vdc")
        );
        assert_eq!(
            c("[   94.31] Buffer I/O error on dev vda1, logical block 262144, lost async page write"),
            some(Finding::IoError, "vda1")
        );
        assert_eq!(
            c("Buffer I/O error on device sdb1, logical block 1234"),
            some(Finding::IoError, "sdb1")
        );
        assert_eq!(
            c("[ 7.7] critical medium error, dev sda, sector 8 op 0x0:(READ) flags 0x0"),
            some(Finding::IoError, "sda")
        );
    }

    #[test]
    fn xfs_and_btrfs() {
        assert_eq!(
            c("[  301.2] XFS (vdb1): Filesystem has been shut down due to log error (0x2)."),
            some(Finding::FsError, "vdb1")
        );
        assert_eq!(
            c("XFS (sdb): Corruption of in-memory data (0x8) detected at xfs_trans_cancel+0x12a/0x150 [xfs] (fs/xfs/xfs_trans.c:1097).  Shutting down filesystem."),
            some(Finding::FsError, "sdb")
        );
        assert_eq!(
            c("XFS (vdb): metadata I/O error in \"xfs_buf_ioend+0x1c/0x30 [xfs]\" at daddr 0x2 len 1 error 5"),
            some(Finding::IoError, "vdb")
        );
        assert_eq!(
            c("BTRFS: error (device vda2) in btrfs_commit_transaction:2418: errno=-5 IO failure"),
            some(Finding::FsError, "vda2")
        );
        assert_eq!(
            c("BTRFS info (device vda2): forced readonly"),
            some(Finding::FsReadOnly, "vda2")
        );
    }

    #[test]
    fn ordinary_lines_are_nothing() {
        for line in [
            "[    1.2] EXT4-fs (vda1): mounted filesystem 3c2a... with ordered data mode. Quota mode: none.",
            "[    1.3] EXT4-fs (vda1): re-mounted 3c2a.... Quota mode: none.",
            "[  OK  ] Reached target multi-user.target - Multi-User System.",
            "XFS (vdb): Mounting V5 Filesystem",
            "BTRFS info (device vda2): using crc32c (crc32c-intel) checksum algorithm",
            "debian login: ",
            "",
            "\u{1b}[0m\u{1b}[31mgarbage\u{0}",
        ] {
            assert_eq!(c(line), None, "{line:?}");
        }
        // A line cut short still says what happened, without a device.
        assert_eq!(c("Buffer I/O error on dev"), Some((Finding::IoError, None)));
    }

    #[test]
    fn hostile_device_names_are_dropped_and_lines_bounded() {
        let m = classify("EXT4-fs (vda1; rm -rf /): Remounting filesystem read-only").unwrap();
        assert_eq!(m.finding, Finding::FsReadOnly);
        assert_eq!(m.device, None);
        let long = format!(
            "EXT4-fs (vda): Remounting filesystem read-only {}",
            "é".repeat(10_000)
        );
        let m = classify(&long).unwrap();
        assert!(m.message.len() <= MAX_LINE);
        assert_eq!(m.device.as_deref(), Some("vda"));
    }

    #[test]
    fn whole_disks() {
        assert_eq!(whole_disk("vda1"), "vda");
        assert_eq!(whole_disk("vda"), "vda");
        assert_eq!(whole_disk("sdb12"), "sdb");
        assert_eq!(whole_disk("nvme0n1p2"), "nvme0n1");
        assert_eq!(whole_disk("nvme0n1"), "nvme0n1");
        assert_eq!(whole_disk("mmcblk0p1"), "mmcblk0");
        assert_eq!(whole_disk("dm-0"), "dm-0");
        assert_eq!(whole_disk("xvda1"), "xvda");
    }
}
