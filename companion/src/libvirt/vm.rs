//! A libvirt domain as the VM of a rescue session: started once with the rescue XML under the
//! domain's own name and UUID (`virDomainCreateXML`), so the persistent definition is never
//! rewritten and comes back when the run ends; the agent's channel read through a libvirt
//! stream (works over remote URIs too); the console log from the run's state directory.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::stream::Stream;

use crate::vm::{Channel, Exit, Vm, VmError, CHANNEL_POLL};

/// `VIR_DOMAIN_START_AUTODESTROY`: the run ends if this process's connection goes away (a
/// vmrescue killed mid-rescue leaves no rescue running; the definition was never touched).
const START_AUTODESTROY: u32 = 2;
/// `VIR_DOMAIN_START_RESET_NVRAM`: a UEFI rescue's NVRAM copy is made afresh from its template
/// (the guest's own variables) at every start.
const START_RESET_NVRAM: u32 = 32;

pub struct LibvirtVm {
    conn: Connect,
    name: String,
    uuid: String,
    xml: String,
    console_log: PathBuf,
    domain: Option<Domain>,
    channel_name: String,
    exit: Option<Exit>,
    /// Copy the serial console into `console_log` through a libvirt stream (remote
    /// connections, whose log files are on another host).
    capture_console: bool,
    /// The rescue boots from a copy of UEFI variables.
    uefi: bool,
    /// A channel still being opened (a slow libvirtd): asked again rather than opened twice,
    /// so no byte the agent sent goes to a reader nobody reads.
    opening: Option<Opening>,
}

/// A channel whose reader thread is opening it.
struct Opening {
    /// `true` once it is open, `false` if it could not be.
    ready: mpsc::Receiver<bool>,
    bytes: mpsc::Receiver<Vec<u8>>,
}

impl LibvirtVm {
    pub fn new(
        conn: Connect,
        name: String,
        uuid: String,
        xml: String,
        console_log: PathBuf,
        channel_name: String,
    ) -> Self {
        LibvirtVm {
            conn,
            name,
            uuid,
            xml,
            console_log,
            domain: None,
            channel_name,
            exit: None,
            capture_console: false,
            opening: None,
            uefi: false,
        }
    }

    /// The rescue XML boots from an NVRAM copy (made afresh from its template).
    pub fn uefi(mut self, uefi: bool) -> Self {
        self.uefi = uefi;
        self
    }

    /// Reads the console through libvirt into the (local) console log file.
    pub fn capture_console(mut self) -> Self {
        self.capture_console = true;
        self
    }
}

/// Appends the domain's serial console, read through a libvirt stream, to `log`.
fn capture(conn: Connect, dom: Domain, log: PathBuf) {
    std::thread::spawn(move || {
        let Ok(mut out) = std::fs::File::create(&log) else {
            return;
        };
        let Ok(stream) = Stream::new(&conn, 0) else {
            return;
        };
        if dom.open_console(None, &stream, 0).is_err() {
            return;
        }
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = stream.recv(&mut buf) {
            if n <= 0 || io::Write::write_all(&mut out, &buf[..n as usize]).is_err() {
                break;
            }
        }
        let _ = stream.finish();
    });
}

/// Starts a thread that opens the domain's channel `name` through a libvirt stream and hands
/// over what it reads.
fn open(conn: Connect, dom: Domain, name: String) -> Opening {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let (ready_tx, ready_rx) = mpsc::channel::<bool>();
    std::thread::spawn(move || {
        let Ok(stream) = Stream::new(&conn, 0) else {
            let _ = ready_tx.send(false);
            return;
        };
        if dom.open_channel(Some(&name), &stream, 0).is_err() {
            let _ = ready_tx.send(false);
            return;
        }
        let _ = ready_tx.send(true);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stream.recv(&mut buf) {
                Ok(n) if n > 0 => {
                    if tx.send(buf[..n as usize].to_vec()).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        let _ = stream.finish();
    });
    Opening {
        ready: ready_rx,
        bytes: rx,
    }
}

/// The channel's bytes, read by a thread that owns the libvirt stream (blocking receives),
/// handed over with a timeout so the session can look around.
struct StreamReader {
    rx: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            match self.rx.recv_timeout(CHANNEL_POLL) {
                Ok(b) => self.pending = b,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::from(io::ErrorKind::WouldBlock))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl Vm for LibvirtVm {
    fn describe(&self) -> String {
        format!("libvirt domain {}", crate::render::clean(&self.name))
    }

    fn start(&mut self) -> Result<(), VmError> {
        let flags = START_AUTODESTROY | if self.uefi { START_RESET_NVRAM } else { 0 };
        let d = self.conn.create_domain_xml(&self.xml, flags).map_err(|e| {
            VmError::Refused(
                format!("libvirt domain {}", crate::render::clean(&self.name)),
                e.to_string(),
            )
        })?;
        if self.capture_console {
            capture(self.conn.clone(), d.clone(), self.console_log.clone());
        }
        self.domain = Some(d);
        Ok(())
    }

    fn open_channel(&mut self) -> Result<Option<Channel>, VmError> {
        let Some(dom) = &self.domain else {
            return Ok(None);
        };
        let opening = match self.opening.take() {
            Some(o) => o,
            None => open(self.conn.clone(), dom.clone(), self.channel_name.clone()),
        };
        match opening.ready.recv_timeout(Duration::from_secs(1)) {
            Ok(true) => Ok(Some(Box::new(StreamReader {
                rx: opening.bytes,
                pending: Vec::new(),
            }))),
            // Still opening: the same reader is asked again next time.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.opening = Some(opening);
                Ok(None)
            }
            // Not there yet (the guest is still booting): the session asks again.
            _ => {
                std::thread::sleep(Duration::from_millis(200));
                Ok(None)
            }
        }
    }

    fn console_tail(&mut self, max: u64) -> Option<Vec<u8>> {
        let data = std::fs::read(&self.console_log).ok()?;
        let from = data.len().saturating_sub(max as usize);
        Some(data[from..].to_vec())
    }

    fn console_log(&self) -> Option<PathBuf> {
        Some(self.console_log.clone())
    }

    fn exited(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            // The run is over when the domain (same UUID) is no longer active.
            let active = self
                .conn
                .lookup_domain_by_uuid_string(&self.uuid)
                .ok()
                .and_then(|d| d.is_active().ok())
                .unwrap_or(false);
            if self.domain.is_some() && !active {
                self.exit = Some(Exit {
                    success: true,
                    description: "powered off".into(),
                });
            }
        }
        self.exit.clone()
    }

    fn stop(&mut self, grace: Duration) {
        let until = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        if self.exited().is_none() {
            if let Some(d) = &self.domain {
                let _ = d.destroy();
            }
        }
    }

    fn start_failure(&mut self) -> Option<String> {
        None
    }
}
