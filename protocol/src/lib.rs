//! The one description of what crosses the virtio-serial port (and the console) between the
//! rescue agent in the guest and the `vmrescue` companion on the host.
//!
//! Messages are JSON lines, versioned with `"v": 1`. Fields and variants are only ever added,
//! never renamed: other tools drive these names.
//!
//! The host treats every byte from the guest as hostile: [`frame`] caps line length and rejects
//! what does not parse, [`console`] extracts framed messages from a console log.

pub mod cmdline;
pub mod console;
pub mod digest;
pub mod frame;
pub mod message;
pub mod names;
pub mod params;
pub mod paths;
pub mod report;
pub mod secrets;
pub mod utc;
pub mod verdict;

pub use frame::{FrameError, LineReader, MAX_LINE};
pub use message::{Message, Progress, PROTOCOL_VERSION};
pub use names::{
    BootMethod, BootVerdict, ChangeKind, FirmwareKind, LayerKind, LayerState, Phase, Step,
    VerifyMethod,
};
pub use report::*;

/// Name of the virtio-serial port the agent talks on unless the kernel command line says otherwise.
pub const DEFAULT_PORT_NAME: &str = "org.vmrescue.agent.0";
