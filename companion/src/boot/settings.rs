//! The per-rescue settings the agent gets, built once for every way of running a rescue
//! (`rescue --disk` adds what only it knows: its disks, the undo disk, the operator's policy).

use std::time::Duration;

use vmrescue_protocol::params::Settings;
use vmrescue_protocol::Mode;

/// How long one checker pass may run within a rescue's `timeout`: most of it, leaving room to
/// report.
pub fn fsck_limit(timeout: Duration) -> u64 {
    (timeout.as_secs() * 3 / 4).max(1)
}

/// The settings of a rescue in `mode` that must report within `timeout`.
pub fn for_rescue(mode: Mode, timeout: Duration) -> Settings {
    Settings {
        mode,
        fsck_timeout_secs: fsck_limit(timeout),
        ..Settings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checker_pass_gets_three_quarters_of_the_time() {
        let s = for_rescue(Mode::Repair, Duration::from_secs(900));
        assert_eq!((s.mode, s.fsck_timeout_secs), (Mode::Repair, 675));
        assert_eq!(fsck_limit(Duration::from_secs(1)), 1);
        assert_eq!(fsck_limit(Duration::ZERO), 1);
    }
}
