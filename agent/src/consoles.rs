//! Every console the agent writes its frames to, so the report comes back whichever one the
//! host logs: the kernel's active consoles (`/sys/class/tty/console/active`), plus the first
//! serial port and the virtio console when they exist. Writes are non-blocking with a deadline:
//! a console nobody reads must not hold up the rescue.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Consoles always tried besides the active ones: the serial port nova and libvirt log, the
/// virtio console.
const ALSO: &[&str] = &["ttyS0", "hvc0"];
/// Longest a frame may wait for one console.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The console names to open (pure): the active ones in order, then [`ALSO`], each once.
pub fn targets(active: &str, exists: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let names = active
        .split_ascii_whitespace()
        .map(str::to_owned)
        .chain(ALSO.iter().map(|s| (*s).to_owned()));
    for name in names {
        let plain =
            !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric());
        if plain && !out.contains(&name) && exists(&name) {
            out.push(name);
        }
    }
    out
}

struct Console {
    name: String,
    file: File,
    /// A write timed out: this console is not read; stop waiting on it.
    stuck: bool,
}

/// The open consoles.
pub struct Consoles {
    open: Vec<Console>,
}

impl Consoles {
    /// Opens every console found under `/dev`; one that cannot be opened (a serial port with no
    /// UART behind it) is left out.
    pub fn open() -> Consoles {
        let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
        let names = targets(&active, |n| Path::new("/dev").join(n).exists());
        let open = names
            .into_iter()
            .filter_map(|name| {
                let file = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc_flags())
                    .open(Path::new("/dev").join(&name))
                    .ok()?;
                Some(Console {
                    name,
                    file,
                    stuck: false,
                })
            })
            .collect();
        Consoles { open }
    }

    /// Names of the consoles written to.
    pub fn names(&self) -> Vec<&str> {
        self.open.iter().map(|c| c.name.as_str()).collect()
    }

    /// Writes `bytes` to every console (stdout when none could be opened).
    pub fn write(&mut self, bytes: &[u8]) {
        if self.open.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
            return;
        }
        for c in self.open.iter_mut().filter(|c| !c.stuck) {
            if !write_with_deadline(&mut c.file, bytes, WRITE_TIMEOUT) {
                log::warn!("console {} is not being read; no more frames to it", c.name);
                c.stuck = true;
            }
        }
    }
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32
}

/// Writes all of `bytes`, retrying while the console is busy, until `limit`; false on timeout
/// or error.
fn write_with_deadline(f: &mut File, mut bytes: &[u8], limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while !bytes.is_empty() {
        match f.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                if Instant::now() >= until {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return false,
        }
    }
    true
}

/// Sets the kernel's console log level (`/proc/sys/kernel/printk`), returning the old
/// setting: kernel messages printed into the middle of a frame would spoil its checksum.
pub fn quiet_kernel(level: u8) -> Option<String> {
    let path = "/proc/sys/kernel/printk";
    let old = std::fs::read_to_string(path).ok()?;
    std::fs::write(path, format!("{level}\n")).ok()?;
    Some(old.split_ascii_whitespace().next()?.to_owned())
}

/// Puts back a console log level [`quiet_kernel`] returned.
pub fn restore_kernel(old: &str) {
    let _ = std::fs::write("/proc/sys/kernel/printk", format!("{old}\n"));
}

/// A run id for the console frames, new at every boot.
pub fn run_id() -> String {
    let b = crate::random::unique_bytes::<4>().unwrap_or_else(|| {
        // Distinct enough between boots: the clock's nanoseconds.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
            .unwrap_or(0);
        n.to_le_bytes()
    });
    vmrescue_protocol::console::run_id(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_consoles_first_then_serial_and_virtio_each_once() {
        let all = |_: &str| true;
        assert_eq!(targets("tty0 ttyS0\n", all), ["tty0", "ttyS0", "hvc0"]);
        assert_eq!(targets("", |n| n == "ttyS0"), ["ttyS0"]);
        assert_eq!(targets("hvc0", |n| n != "ttyS0"), ["hvc0"]);
        // Odd names from sysfs are never turned into paths.
        assert_eq!(targets("../sda tty/0", |n| n == "ttyS0"), ["ttyS0"]);
    }

    #[test]
    fn writes_to_a_pipe_and_gives_up_on_a_full_one() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut w = File::from(w);
        assert!(write_with_deadline(
            &mut w,
            b"frame\n",
            Duration::from_millis(100)
        ));
        let mut got = [0u8; 6];
        std::io::Read::read_exact(&mut File::from(r.try_clone().unwrap()), &mut got).unwrap();
        assert_eq!(&got, b"frame\n");
        rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::NONBLOCK).unwrap();
        let big = vec![b'x'; 1 << 20];
        assert!(!write_with_deadline(
            &mut w,
            &big,
            Duration::from_millis(50)
        ));
        drop(r);
    }
}
