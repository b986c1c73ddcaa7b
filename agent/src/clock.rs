//! Wall-clock stamps for backup names and report files, in UTC, without a time-zone database.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the kernel started (CLOCK_BOOTTIME), for the report's timings.
pub fn uptime_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Days since the epoch, as `/etc/shadow` counts password changes.
pub fn days(secs: u64) -> u64 {
    secs / 86_400
}

/// `YYYYMMDDTHHMMSSZ`: sortable, and safe in a file name.
pub fn stamp(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = vmrescue_protocol::utc::parts(secs);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(stamp(0), "19700101T000000Z");
        // 2000-02-29 12:34:56 UTC (a leap day).
        assert_eq!(stamp(951_827_696), "20000229T123456Z");
        // 2026-11-23 14:51:20 UTC.
        assert_eq!(stamp(1_795_445_480), "20261123T145120Z");
        assert_eq!(days(1_795_445_480), 20_780);
    }
}
