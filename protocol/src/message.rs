//! Guest-to-host messages.

use serde::{Deserialize, Serialize};

use crate::report::Report;

/// Version carried in every message as `"v"`.
pub const PROTOCOL_VERSION: u32 = 1;

/// One line on the wire: `{"v":1,"type":"hello",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// First message: the agent is up and says who it is.
    Hello {
        v: u32,
        agent_version: String,
        mode: crate::report::Mode,
        kernel: String,
    },
    /// A step started, finished or failed.
    Progress {
        v: u32,
        #[serde(flatten)]
        progress: Progress,
    },
    /// The final report; nothing follows it.
    Report { v: u32, report: Box<Report> },
}

/// A progress event: a short machine-readable step name and a human-readable line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Step, e.g. `modules`, `disks`, `fsck`.
    pub step: crate::Step,
    /// Free text for the operator.
    pub message: String,
    /// Device the step is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Seconds since the agent started.
    #[serde(default)]
    pub elapsed_s: f64,
}

impl Message {
    pub fn hello(agent_version: &str, mode: crate::report::Mode, kernel: &str) -> Self {
        Message::Hello {
            v: PROTOCOL_VERSION,
            agent_version: agent_version.to_owned(),
            mode,
            kernel: kernel.to_owned(),
        }
    }

    pub fn progress(progress: Progress) -> Self {
        Message::Progress {
            v: PROTOCOL_VERSION,
            progress,
        }
    }

    pub fn report(report: Report) -> Self {
        Message::Report {
            v: PROTOCOL_VERSION,
            report: Box::new(report),
        }
    }

    /// The protocol version this message claims.
    pub fn version(&self) -> u32 {
        match self {
            Message::Hello { v, .. } | Message::Progress { v, .. } | Message::Report { v, .. } => {
                *v
            }
        }
    }
}
