//! A QEMU process started from a [`crate::qemu::Config`]: the rescue VM vmrescue runs itself.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Channel, Exit, Vm, VmError, CHANNEL_POLL};
use crate::qemu::Config;

/// Lines of QEMU's own log shown when it refuses to start.
const LOG_LINES: usize = 5;

pub struct QemuVm {
    binary: PathBuf,
    config: Config,
    /// QEMU's stdout and stderr.
    log: PathBuf,
    child: Option<Child>,
    exit: Option<Exit>,
    /// It was still running when we stopped it (so its end says nothing about the guest).
    killed: bool,
}

impl QemuVm {
    /// `log` receives QEMU's own output.
    pub fn new(binary: PathBuf, config: Config, log: PathBuf) -> Self {
        QemuVm {
            binary,
            config,
            log,
            child: None,
            exit: None,
            killed: false,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_LINES)..].join(" / ")
    }
}

impl Vm for QemuVm {
    fn describe(&self) -> String {
        "QEMU".into()
    }

    fn start(&mut self) -> Result<(), VmError> {
        let file = |source| VmError::File {
            what: "QEMU log",
            path: self.log.clone(),
            source,
        };
        let out = File::create(&self.log).map_err(file)?;
        let err = out.try_clone().map_err(file)?;
        // Its own process group: the terminal's Ctrl-C reaches vmrescue, which stops QEMU itself.
        let child = Command::new(&self.binary)
            .args(self.config.args())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| VmError::Spawn {
                program: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn open_channel(&mut self) -> Result<Option<Channel>, VmError> {
        let Some(ch) = &self.config.channel else {
            return Ok(None);
        };
        match UnixStream::connect(&ch.socket) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(CHANNEL_POLL));
                Ok(Some(Box::new(s)))
            }
            Err(_) => Ok(None),
        }
    }

    fn console_tail(&mut self, max: u64) -> Option<Vec<u8>> {
        let mut f = File::open(self.config.console_log.as_ref()?).ok()?;
        let len = f.metadata().ok()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max))).ok()?;
        let mut buf = Vec::new();
        f.take(max).read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    fn console_log(&self) -> Option<PathBuf> {
        self.config.console_log.clone()
    }

    fn exited(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            let status = self.child.as_mut()?.try_wait().ok().flatten()?;
            self.exit = Some(Exit {
                success: status.success(),
                description: status.to_string(),
            });
        }
        self.exit.clone()
    }

    fn stop(&mut self, grace: Duration) {
        let until = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(child) = &mut self.child {
            if self.exit.is_none() {
                self.killed = true;
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    fn start_failure(&mut self) -> Option<String> {
        if self.killed {
            return None;
        }
        let exit = self.exited()?;
        let console_empty = self
            .config
            .console_log
            .as_ref()
            .and_then(|p| fs::metadata(p).ok())
            .is_none_or(|m| m.len() == 0);
        (console_empty && !exit.success).then(|| crate::render::clean(&self.log_tail()))
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
