//! The virtio-serial port to the host. There is no udev: the port is found by its name in
//! `/sys/class/virtio-ports/*/name`, its node is `/dev/<vportNpM>`. A write blocks until the host
//! connects, so the port is opened non-blocking and every write has a deadline.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{open, Mode, OFlags};
use rustix::io::Errno;

/// Finds the port device whose name is `name` under a sysfs root (normally `/sys`).
pub fn find(sys: &Path, name: &str) -> Option<String> {
    let dir = fs::read_dir(sys.join("class/virtio-ports")).ok()?;
    let mut found: Vec<String> = dir
        .flatten()
        .filter(|e| {
            fs::read_to_string(e.path().join("name"))
                .map(|n| n.trim_end() == name)
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|dev| dev.starts_with("vport") && dev.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Whether the VM has a virtio-serial device at all (virtio device id 3), under a sysfs root:
/// its ports come a moment after it, named by the host; without it no port will ever come.
/// Every virtio device is probed before the agent looks (built in, or loaded before).
pub fn has_serial_device(sys: &Path) -> bool {
    fs::read_dir(sys.join("bus/virtio/devices")).is_ok_and(|d| {
        d.flatten().any(|e| {
            fs::read_to_string(e.path().join("device")).is_ok_and(|id| id.trim() == "0x0003")
        })
    })
}

/// Waits (bounded) for the port to appear; virtio_console may still be probing.
pub fn wait_for(sys: &Path, name: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(dev) = find(sys, name) {
            return Some(dev);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How often [`Port::drain`] looks whether the host closed its end.
const DRAIN_POLL: Duration = Duration::from_millis(20);

pub struct Port {
    fd: OwnedFd,
    pub device: PathBuf,
    /// A message was cut off by its deadline: start the next one on a fresh line.
    torn: bool,
}

impl Port {
    pub fn open(device: PathBuf) -> std::io::Result<Port> {
        let fd = open(
            &device,
            OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        Ok(Port {
            fd,
            device,
            torn: false,
        })
    }

    /// Writes one whole line before `timeout` runs out. On timeout the rest is dropped and the
    /// port marked so the next line starts clean.
    pub fn send(&mut self, line: &[u8], timeout: Duration) -> Result<(), Errno> {
        let deadline = Instant::now() + timeout;
        if self.torn {
            self.write_all(b"\n", deadline)?;
            self.torn = false;
        }
        self.write_all(line, deadline)
            .inspect_err(|_| self.torn = true)
    }

    /// Waits, at most `timeout`, until the host has taken everything written to the port, so a
    /// report is out before the guest powers off: a blocking write to a virtio port returns
    /// only once QEMU has consumed its buffers, so a newline written that way (a blank line,
    /// which the host skips) follows the rest out. A host that closed its end has taken what
    /// it wanted (it closes once it has the report; a write would then block until it came
    /// back): done at once. `false` when the time ran out (the host is connected but not
    /// reading); the writer is then left behind, and nothing is written after it.
    pub fn drain(&self, timeout: Duration) -> bool {
        if self.host_closed() {
            return true;
        }
        let Ok(fd) = rustix::io::dup(&self.fd) else {
            return false;
        };
        // The flag belongs to the open file: nothing non-blocking is written after this.
        if rustix::fs::fcntl_setfl(&fd, OFlags::empty()).is_err() {
            return false;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("port-drain".into())
            .spawn(move || {
                let _ = tx.send(rustix::io::write(&fd, b"\n").is_ok());
            });
        if spawned.is_err() {
            return false;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(DRAIN_POLL)) {
                Ok(written) => return written || self.host_closed(),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            if self.host_closed() {
                return true;
            }
            if left.is_zero() {
                return false;
            }
        }
    }

    /// Whether the host's end is closed (a virtio port then polls as hung up).
    fn host_closed(&self) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::OUT)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&now)).is_ok() && fds[0].revents().contains(PollFlags::HUP)
    }

    fn write_all(&mut self, mut data: &[u8], deadline: Instant) -> Result<(), Errno> {
        while !data.is_empty() {
            match rustix::io::write(&self.fd, data) {
                Ok(n) => data = &data[n..],
                Err(Errno::AGAIN) | Err(Errno::INTR) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Errno::TIMEDOUT);
                    }
                    let left = left.min(Duration::from_millis(200));
                    let ts = Timespec {
                        tv_sec: left.as_secs() as _,
                        tv_nsec: left.subsec_nanos() as _,
                    };
                    let mut fds = [PollFd::new(&self.fd, PollFlags::OUT)];
                    match poll(&mut fds, Some(&ts)) {
                        Ok(_) | Err(Errno::INTR) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sys(ports: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (dev, name) in ports {
            let p = d.path().join("class/virtio-ports").join(dev);
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("name"), format!("{name}\n")).unwrap();
        }
        d
    }

    #[test]
    fn finds_port_by_name_not_order() {
        let sys = fake_sys(&[
            ("vport0p0", ""),
            ("vport1p1", "org.qemu.guest_agent.0"),
            ("vport1p2", "org.vmrescue.agent.0"),
        ]);
        assert_eq!(
            find(sys.path(), "org.vmrescue.agent.0").as_deref(),
            Some("vport1p2")
        );
        assert_eq!(find(sys.path(), "other"), None);
        assert_eq!(find(Path::new("/nonexistent"), "x"), None);
    }

    #[test]
    fn ignores_hostile_device_names() {
        let sys = fake_sys(&[("vport..x", "n")]);
        assert_eq!(find(sys.path(), "n"), None);
    }

    #[test]
    fn wait_for_gives_up() {
        let sys = fake_sys(&[]);
        let t = Instant::now();
        assert_eq!(wait_for(sys.path(), "n", Duration::from_millis(150)), None);
        assert!(t.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn a_serial_device_is_told_by_its_virtio_id() {
        let sys = tempfile::tempdir().unwrap();
        assert!(!has_serial_device(sys.path()));
        let dev = |n: &str, id: &str| {
            let d = sys.path().join("bus/virtio/devices").join(n);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("device"), id).unwrap();
        };
        dev("virtio0", "0x0002\n");
        assert!(!has_serial_device(sys.path()), "a block device only");
        dev("virtio1", "0x0003\n");
        assert!(has_serial_device(sys.path()));
    }

    #[test]
    fn send_times_out_when_nobody_reads() {
        // A pipe whose reader never reads fills up and then behaves like an unconnected port.
        let (r, w) = rustix::pipe::pipe().unwrap();
        rustix::fs::fcntl_setfl(&w, OFlags::NONBLOCK).unwrap();
        let mut port = Port {
            fd: w,
            device: "pipe".into(),
            torn: false,
        };
        let big = vec![b'x'; 1 << 20];
        assert_eq!(
            port.send(&big, Duration::from_millis(100)),
            Err(Errno::TIMEDOUT)
        );
        assert!(port.torn);
        drop(r);
    }

    #[test]
    fn drain_waits_for_the_reader_and_gives_up_in_time() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::NONBLOCK).unwrap();
        let port = Port {
            fd: w,
            device: PathBuf::from("/dev/vport0p1"),
            torn: false,
        };
        // Room: the newline goes out at once.
        assert!(port.drain(Duration::from_secs(5)));
        let mut buf = [0u8; 8];
        assert_eq!(rustix::io::read(&r, &mut buf).unwrap(), 1);
        assert_eq!(buf[0], b'\n');
        // Full and nobody reading: it gives up. (The drain left the pipe blocking.)
        rustix::fs::fcntl_setfl(&port.fd, OFlags::NONBLOCK).unwrap();
        let chunk = [b'x'; 4096];
        while rustix::io::write(&port.fd, &chunk).is_ok() {}
        let started = Instant::now();
        assert!(!port.drain(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn drain_is_done_at_once_when_the_host_closed_its_end() {
        // A virtio port whose host end is closed polls as hung up and a write to it blocks
        // until the host comes back; a socket whose peer is gone polls as hung up too.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        rustix::fs::fcntl_setfl(&ours, OFlags::NONBLOCK).unwrap();
        let port = Port {
            fd: OwnedFd::from(ours),
            device: PathBuf::from("/dev/vport0p1"),
            torn: false,
        };
        assert!(!port.host_closed());
        drop(theirs);
        let started = Instant::now();
        assert!(port.drain(Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
