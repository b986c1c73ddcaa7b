//! Ctrl-C, SIGTERM and SIGHUP during a rescue: once armed, they no longer kill the process but
//! are noted, so that the session stops the rescue VM, a libvirt domain gets its definition
//! back, the run directory is kept, and the command ends with exit status 3 naming the console
//! log. Signals are process-wide, so this one flag is too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

static CAUGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Catches the stopping signals from now on (idempotent). If they cannot be caught, they keep
/// their default action: nothing else changes.
pub fn arm() {
    CAUGHT.get_or_init(|| {
        let flag = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            if let Err(e) = signal_hook::flag::register_usize(sig, Arc::clone(&flag), sig as usize)
            {
                eprintln!("vmrescue: cannot catch signal {sig}: {e}");
            }
        }
        flag
    });
}

/// The name of the stopping signal caught since [`arm`], if any.
pub fn pending() -> Option<&'static str> {
    let sig = CAUGHT.get()?.load(Ordering::SeqCst) as i32;
    match sig {
        0 => None,
        SIGINT => Some("SIGINT"),
        SIGTERM => Some("SIGTERM"),
        SIGHUP => Some("SIGHUP"),
        _ => Some("a signal"),
    }
}
