//! Signals PID 1 must handle: SIGTERM and SIGPWR ask for power-off, SIGINT (Ctrl-Alt-Del once
//! `reboot(CAD_OFF)` is in force) for a reboot. The rescue stops after its current step.

use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// SIGPWR has no constant in signal_hook::consts.
const SIGPWR: i32 = 30;

static REQUESTED: AtomicI32 = AtomicI32::new(0);

/// Why the signal handling could not be set up (PID 1 then only stops when its work is done).
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot install signal handlers: {0}")]
    Handlers(#[source] std::io::Error),
    #[error("cannot start the signal thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Installs the handlers and turns Ctrl-Alt-Del into SIGINT.
pub fn install() -> Result<(), SignalError> {
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGPWR]).map_err(SignalError::Handlers)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                log::warn!("received signal {sig}; stopping after the current step");
                REQUESTED.store(sig, Ordering::SeqCst);
            }
        })
        .map_err(SignalError::Thread)?;
    Ok(())
}

/// The signal that asked PID 1 to stop, if any.
pub fn requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Whether the stop request means reboot (Ctrl-Alt-Del) rather than power-off.
pub fn wants_reboot(sig: i32) -> bool {
    sig == SIGINT
}

pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGPWR => "SIGPWR",
        _ => "signal",
    }
}
