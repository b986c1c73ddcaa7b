//! Child processes under PID 1: a reaper thread collects every exit (orphans included) and
//! publishes it; [`run`] starts a program from an argv (never a shell), captures its output
//! (bounded) and reads its status from the reaper.
//!
//! std's `Child::wait` cannot be used: once `waitpid(-1)` reaps, it gets ECHILD.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }
}

/// Statuses of reaped children not yet claimed; orphans nobody waits for are dropped oldest first.
const MAX_UNCLAIMED: usize = 1024;

struct State {
    exited: BTreeMap<i32, Exit>,
    order: VecDeque<i32>,
    /// Bumped on every spawn so the reaper knows a child may exist again.
    generation: u64,
}

struct Reaper {
    state: Mutex<State>,
    changed: Condvar,
}

static REAPER: Reaper = Reaper {
    state: Mutex::new(State {
        exited: BTreeMap::new(),
        order: VecDeque::new(),
        generation: 0,
    }),
    changed: Condvar::new(),
};
static STARTED: Once = Once::new();

/// Starts the reaper thread once (PID 1 does so early, so orphans never pile up as zombies).
pub fn start_reaper() {
    STARTED.call_once(|| {
        if let Err(e) = std::thread::Builder::new()
            .name("reaper".into())
            .spawn(reap_forever)
        {
            log::error!("cannot start the child reaper: {e}");
        }
    });
}

fn lock() -> MutexGuard<'static, State> {
    REAPER.state.lock().unwrap_or_else(|p| p.into_inner())
}

fn reap_forever() {
    loop {
        let generation = lock().generation;
        match waitpid(None, WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let exit = match (status.exit_status(), status.terminating_signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(s)) => Exit::Signal(s),
                    (None, None) => continue,
                };
                let pid = pid.as_raw_nonzero().get();
                let mut st = lock();
                st.exited.insert(pid, exit);
                st.order.push_back(pid);
                while st.order.len() > MAX_UNCLAIMED {
                    if let Some(old) = st.order.pop_front() {
                        st.exited.remove(&old);
                    }
                }
                REAPER.changed.notify_all();
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                // No children (ECHILD): sleep until something is spawned.
                let st = lock();
                drop(
                    REAPER
                        .changed
                        .wait_while(st, |s| s.generation == generation)
                        .unwrap_or_else(|p| p.into_inner()),
                );
            }
        }
    }
}

/// Output and status of a finished program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub exit: Exit,
    /// Merged stdout and stderr, last [`MAX_LINES`] lines, each cut to [`MAX_LINE_LEN`].
    pub lines: Vec<String>,
    pub timed_out: bool,
}

pub const MAX_LINES: usize = 200;
pub const MAX_LINE_LEN: usize = 512;

#[derive(Debug)]
pub enum RunError {
    NotFound(String),
    Spawn(String, io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::NotFound(p) => write!(f, "{p} is not in the rescue image or not executable"),
            RunError::Spawn(p, e) => write!(f, "cannot start {p}: {e}"),
        }
    }
}

/// Runs `argv` to completion (or until `timeout`, then kills it) and returns its status and
/// output. The program path must be absolute.
pub fn run(argv: &[&str], timeout: Option<Duration>) -> Result<Output, RunError> {
    let program = argv.first().copied().unwrap_or_default();
    // Checked first: std's spawn waits on a child whose exec failed, which races the reaper.
    if !is_executable(program) {
        return Err(RunError::NotFound(program.to_owned()));
    }
    start_reaper();
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RunError::Spawn(program.to_owned(), e.into()))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| RunError::Spawn(program.to_owned(), e))?;
    let child = {
        let mut cmd = Command::new(program);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2))
            .env_clear()
            .env("PATH", "/sbin:/bin")
            .env("LANG", "C");
        let spawned = cmd.spawn();
        // Drop our copies of the pipe's write end (they live inside `cmd`) before reading.
        drop(cmd);
        spawned.map_err(|e| RunError::Spawn(program.to_owned(), e))?
    };
    let pid = child.id() as i32;
    note_spawn();
    let deadline = timeout.map(|t| Instant::now() + t);
    let (lines, timed_out) = read_lines(&reader, deadline, pid);
    drop(reader);
    Ok(Output {
        exit: wait_reaped(pid),
        lines,
        timed_out,
    })
}

/// Runs `argv` attached to PID 1's console (for the emergency shell) and waits for it.
pub fn run_attached(argv: &[&str]) -> Result<Exit, RunError> {
    let program = argv.first().copied().unwrap_or_default();
    if !is_executable(program) {
        return Err(RunError::NotFound(program.to_owned()));
    }
    start_reaper();
    let child = Command::new(program)
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/sbin:/bin")
        .env("HOME", "/")
        .env("TERM", "linux")
        .spawn()
        .map_err(|e| RunError::Spawn(program.to_owned(), e))?;
    Ok(wait_reaped(child.id() as i32))
}

/// Tells the reaper a child exists now.
fn note_spawn() {
    let mut st = lock();
    st.generation += 1;
    REAPER.changed.notify_all();
}

/// Waits for the reaper to publish `pid`'s exit.
fn wait_reaped(pid: i32) -> Exit {
    note_spawn();
    let mut st = lock();
    loop {
        if let Some(exit) = st.exited.remove(&pid) {
            st.order.retain(|p| *p != pid);
            return exit;
        }
        st = REAPER
            .changed
            .wait_timeout(st, Duration::from_millis(500))
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

fn is_executable(path: &str) -> bool {
    path.starts_with('/')
        && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
        && std::fs::metadata(path)
            .map(|m| m.is_file())
            .unwrap_or(false)
}

/// Reads the child's output until EOF or the deadline (then kills the child and keeps reading
/// what is left). Keeps the last lines only.
fn read_lines(fd: &OwnedFd, deadline: Option<Instant>, pid: i32) -> (Vec<String>, bool) {
    let mut lines = VecDeque::new();
    let mut partial = Vec::new();
    let mut timed_out = false;
    let mut buf = [0u8; 4096];
    loop {
        let wait = match deadline {
            Some(d) if !timed_out => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    if let Some(p) = Pid::from_raw(pid) {
                        let _ = kill_process(p, Signal::KILL);
                    }
                    continue;
                }
                Some(left.min(Duration::from_millis(500)))
            }
            _ => Some(Duration::from_millis(500)),
        };
        let ts = wait.map(|w| Timespec {
            tv_sec: w.as_secs() as _,
            tv_nsec: w.subsec_nanos() as _,
        });
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        match rustix::io::read(fd.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                for &b in &buf[..n] {
                    if b == b'\n' {
                        push_line(&mut lines, &partial);
                        partial.clear();
                    } else if partial.len() < MAX_LINE_LEN {
                        partial.push(b);
                    }
                }
            }
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            Err(_) => break,
        }
    }
    if !partial.is_empty() {
        push_line(&mut lines, &partial);
    }
    (lines.into_iter().collect(), timed_out)
}

fn push_line(lines: &mut VecDeque<String>, raw: &[u8]) {
    let line = String::from_utf8_lossy(raw)
        .trim_end_matches('\r')
        .to_owned();
    if lines.len() == MAX_LINES {
        lines.pop_front();
    }
    lines.push_back(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    // These tests run under the test harness, not as PID 1: the reaper's waitpid(-1) reaps the
    // harness's children too, which is exactly the situation the code must cope with.

    #[test]
    fn runs_and_captures_merged_output() {
        let out = run(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], None).unwrap();
        assert_eq!(out.exit, Exit::Code(3));
        assert!(out.lines.contains(&"out".to_owned()));
        assert!(out.lines.contains(&"err".to_owned()));
        assert!(!out.timed_out);
    }

    #[test]
    fn kills_on_timeout() {
        let t = Instant::now();
        let out = run(&["/bin/sleep", "30"], Some(Duration::from_millis(300))).unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit, Exit::Signal(9));
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_is_bounded() {
        let out = run(
            &[
                "/bin/sh",
                "-c",
                "i=0; while [ $i -lt 1000 ]; do printf '%0900d\\n' $i; i=$((i+1)); done",
            ],
            None,
        )
        .unwrap();
        assert_eq!(out.lines.len(), MAX_LINES);
        assert!(out.lines.iter().all(|l| l.len() <= MAX_LINE_LEN));
    }

    #[test]
    fn missing_program_is_an_error_not_a_panic() {
        assert!(matches!(
            run(&["/nonexistent/e2fsck"], None),
            Err(RunError::NotFound(_))
        ));
        assert!(matches!(
            run(&["relative"], None),
            Err(RunError::NotFound(_))
        ));
        assert!(matches!(run(&[], None), Err(RunError::NotFound(_))));
    }

    #[test]
    fn many_concurrent_runs_each_get_their_own_status() {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    let arg = format!("exit {i}");
                    run(&["/bin/sh", "-c", &arg], None).unwrap().exit
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), Exit::Code(i as i32));
        }
    }
}
