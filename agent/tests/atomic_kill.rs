//! A writer killed between its temp file and its rename (or anywhere else) leaves the old file
//! or the new one, never a torn one. The writer is this test binary run again as a child that
//! replaces one file over and over with [`vmrescue_agent::atomic`]; the parent SIGKILLs it at
//! varying moments and then reads the file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vmrescue_agent::atomic::{Perm, Root};

const SIZE: usize = 2 << 20;
const CHILD_ENV: &str = "VMRESCUE_ATOMIC_CHILD_DIR";

fn content(gen: u8) -> Vec<u8> {
    vec![gen; SIZE]
}

/// The child: replaces `/etc/fstab` forever with whole files of one repeated byte.
#[test]
#[ignore = "run by atomic_writes_survive_sigkill as its child"]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = Root::open(Path::new(&dir)).unwrap();
    let perm = Perm {
        mode: 0o644,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    };
    println!("ready");
    for i in 0u64.. {
        let gen = b'a' + (i % 26) as u8;
        root.write("/etc/fstab", &content(gen), perm, &format!("S{i}"))
            .unwrap();
    }
}

fn whole(data: &[u8]) -> bool {
    data.len() == SIZE && data.iter().all(|&b| b == data[0]) && data[0].is_ascii_lowercase()
}

#[test]
fn atomic_writes_survive_sigkill() {
    let exe = std::env::current_exe().unwrap();
    let mut progressed = 0;
    let mut in_window = 0;
    for round in 0..30u64 {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/fstab"), content(b'a')).unwrap();
        let mut child = Command::new(&exe)
            .args(["child_writer", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        while !ready.contains("ready") {
            ready.clear();
            assert!(
                std::io::BufRead::read_line(&mut out, &mut ready).unwrap() > 0,
                "child died"
            );
        }
        // Different moments in the write cycle: a 2 MiB write plus two fsyncs takes a few ms.
        std::thread::sleep(Duration::from_millis(5 + round * 10));
        child.kill().unwrap();
        child.wait().unwrap();
        let data = std::fs::read(d.path().join("etc/fstab")).unwrap();
        assert!(
            whole(&data),
            "round {round}: torn file ({} bytes)",
            data.len()
        );
        // Every backup that exists is whole too.
        let mut backups = 0;
        for e in std::fs::read_dir(d.path().join("etc")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.starts_with(".fstab.vmrescue-tmp.") {
                // Killed between creating the temp file and renaming it.
                in_window += 1;
            }
            if name.starts_with("fstab.vmrescue-") {
                backups += 1;
                let b = std::fs::read(d.path().join("etc").join(&name)).unwrap();
                assert!(whole(&b), "round {round}: torn backup {name}");
            }
        }
        if backups > 0 {
            progressed += 1;
        }
    }
    assert!(
        progressed >= 10,
        "the writer completed a write in only {progressed} of 30 rounds: the kills did not land mid-stream"
    );
    eprintln!("{progressed} rounds progressed, {in_window} kills between temp file and rename");
    assert!(
        in_window > 0,
        "no kill landed between temp file and rename: the test did not test the window"
    );
}
