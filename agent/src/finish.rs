//! The end of PID 1's work: power off, reboot or hand the console to a shell. PID 1 never
//! returns; if the kernel refuses to power off, it sleeps forever.

use std::time::Duration;

use rustix::system::{reboot, RebootCommand};

use vmrescue_protocol::params::After;

const SHELL: &str = "/bin/sh";

pub fn finish(after: After) -> ! {
    let after = match after {
        After::Shell => {
            // The operator's tools: xfs_repair, btrfs and fsck.fat too.
            if let Some(w) = crate::late::ensure() {
                log::warn!("{w}");
            }
            log::info!("starting the emergency shell on the console; exit it to power off");
            match crate::proc::run_attached(&[SHELL, "-i"]) {
                Ok(exit) => log::info!("shell ended ({exit:?})"),
                Err(e) => log::error!("{e}"),
            }
            After::PowerOff
        }
        other => other,
    };
    rustix::fs::sync();
    let _ = rustix::termios::tcdrain(std::io::stdout());
    let cmd = match after {
        After::Reboot => RebootCommand::Restart,
        _ => RebootCommand::PowerOff,
    };
    if let Err(e) = reboot(cmd) {
        log::error!("{cmd:?} failed: {e}; halting here");
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
