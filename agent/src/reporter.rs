//! Everything the agent says goes to the console (always, framed so the host can extract it from
//! a console log) and to the virtio-serial port (when there is one and the host listens).

use std::time::{Duration, Instant};

use vmrescue_protocol::{console, frame, Message, Phase, Progress, Step, Timing, Warning};

use crate::consoles::{self, Consoles};
use crate::port::Port;

/// How long a message may wait for the host.
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(2);
/// Once the host missed a message, progress does not hold up the rescue any more.
const DEGRADED_TIMEOUT: Duration = Duration::from_millis(200);
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the host to take the report off the port before the guest powers off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Reporter {
    started: Instant,
    port: Option<Port>,
    /// Opened on the first message (after `/dev` and `/sys` are mounted).
    consoles: Option<Consoles>,
    /// This boot's id in the console frames.
    run: String,
    degraded: bool,
    pub warnings: Vec<Warning>,
    /// The guest's uptime as each phase ended (the report's `timings`).
    pub timings: Vec<Timing>,
}

impl Reporter {
    pub fn new(started: Instant) -> Self {
        Reporter {
            started,
            port: None,
            consoles: None,
            run: String::new(),
            degraded: false,
            warnings: Vec::new(),
            timings: vec![Timing {
                phase: Phase::Agent,
                uptime_s: (crate::clock::uptime_secs() - started.elapsed().as_secs_f64()).max(0.0),
            }],
        }
    }

    /// Notes that `phase` ended now (bounded: a report never carries more than 200).
    pub fn mark(&mut self, phase: Phase) {
        if self.timings.len() < 200 {
            self.timings.push(Timing {
                phase,
                uptime_s: crate::clock::uptime_secs(),
            });
        }
    }

    pub fn attach(&mut self, port: Port) {
        self.port = Some(port);
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn warn(&mut self, step: Step, device: Option<&str>, message: String) {
        log::warn!("{step}: {message}");
        self.warnings.push(Warning {
            step,
            message,
            device: device.map(str::to_owned),
        });
    }

    pub fn progress(&mut self, step: Step, device: Option<&str>, message: impl Into<String>) {
        let msg = Message::progress(Progress {
            step,
            message: message.into(),
            device: device.map(str::to_owned),
            elapsed_s: self.elapsed(),
        });
        let timeout = if self.degraded {
            DEGRADED_TIMEOUT
        } else {
            PROGRESS_TIMEOUT
        };
        self.send(&msg, timeout);
    }

    pub fn hello(&mut self, msg: &Message) {
        self.send(msg, HELLO_TIMEOUT);
    }

    pub fn report(&mut self, msg: &Message) {
        // Kernel messages printed into a frame would spoil its checksum.
        let old = consoles::quiet_kernel(1);
        self.send(msg, REPORT_TIMEOUT);
        if let Some(level) = old {
            consoles::restore_kernel(&level);
        }
        // Powering off now could drop what the host has not taken yet (a busy host).
        if let Some(port) = self.port.as_ref().filter(|_| !self.degraded) {
            if !port.drain(DRAIN_TIMEOUT) {
                log::warn!("the host did not take the report off the port in time");
            }
        }
    }

    fn send(&mut self, msg: &Message, timeout: Duration) {
        if self.consoles.is_none() {
            self.run = consoles::run_id();
            let c = Consoles::open();
            log::info!(
                "console frames (run {}) on {}",
                self.run,
                c.names().join(", ")
            );
            self.consoles = Some(c);
        }
        match console::frames(msg, &self.run) {
            Ok(lines) => {
                if let Some(c) = self.consoles.as_mut() {
                    for line in lines {
                        c.write(&line);
                    }
                }
            }
            Err(e) => log::error!("cannot frame a message for the console: {e}"),
        }
        let Some(port) = self.port.as_mut() else {
            return;
        };
        let line = match frame::encode(msg) {
            Ok(l) => l,
            Err(e) => {
                log::error!("cannot encode a message for the port: {e}");
                return;
            }
        };
        if let Err(e) = port.send(&line, timeout) {
            if !self.degraded {
                log::warn!(
                    "host not reading {} ({e}); carrying on with the console only",
                    port.device.display()
                );
            }
            self.degraded = true;
        } else {
            self.degraded = false;
        }
    }
}
