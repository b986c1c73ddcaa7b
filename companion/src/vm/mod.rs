//! The VMs a rescue session can drive. The session does not care which one runs the rescue: it
//! starts it, reads the agent's channel and, failing that, its console log, watches whether it
//! still runs, and stops it.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

pub mod qemu;

pub use qemu::QemuVm;

/// Why a VM could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {program}: {source}; install qemu-system-x86 (scripts/setup.sh) or set VMRESCUE_QEMU")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} failed to start the rescue: {1}")]
    Refused(String, String),
}

/// The agent's channel: a byte stream whose reads time out (`WouldBlock` or `TimedOut`) at
/// least every quarter second, so the session can watch its deadline and the VM.
pub type Channel = Box<dyn Read + Send>;

/// How often a channel read gives up so the session can look around.
pub const CHANNEL_POLL: Duration = Duration::from_millis(250);

/// A VM that runs the rescue.
pub trait Vm {
    /// What it is, for messages ("QEMU", "libvirt domain web-1").
    fn describe(&self) -> String;
    /// Starts it.
    fn start(&mut self) -> Result<(), VmError>;
    /// The agent's channel once it can be opened (`None`: not yet, or this VM has none).
    fn open_channel(&mut self) -> Result<Option<Channel>, VmError>;
    /// The last `max` bytes of the serial console's log.
    fn console_tail(&mut self, max: u64) -> Option<Vec<u8>>;
    /// Where the operator finds the console log.
    fn console_log(&self) -> Option<PathBuf>;
    /// `Some(how it ended)` once it no longer runs.
    fn exited(&mut self) -> Option<Exit>;
    /// Stops it: asks the guest, waits up to `grace`, then forces it off.
    fn stop(&mut self, grace: Duration);
    /// When it ended without the guest ever running (the hypervisor refused the
    /// configuration): what it said. A host-side problem, not the guest's.
    fn start_failure(&mut self) -> Option<String>;
}

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub success: bool,
    pub description: String,
}
