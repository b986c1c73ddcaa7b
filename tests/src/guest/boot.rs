//! Booting the guest with its own kernel and initramfs (behind overlays, or written when a
//! test needs its disk changed by the boot) and judging its console; logging in on it.

use super::*;

/// What a boot of the guest showed.
pub struct Booted {
    pub state: BootState,
    pub console: String,
}

/// Boots the guest's own kernel and initramfs on `image` (behind an overlay: nothing written)
/// until its console shows a login prompt, emergency mode or a panic, or `BOOT_LIMIT` passes.
pub fn boot(image: &Path) -> Result<Booted> {
    boot_disks(&[image], Written::No)
}

/// Whether a boot writes to its disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Behind overlays; judged until login, emergency mode or a panic.
    No,
    /// On the disks themselves, until the guest powers itself off (or `BOOT_LIMIT` passes):
    /// what it wrote (its journal) stays.
    UntilPowerOff,
}

/// The guest's VM on `disks` (in `dir`), its console logged to `dir/console.log`.
fn guest_config(dir: &Path, disks: &[&Path], written: Written) -> Result<Config> {
    let g = debian();
    let mut drives = Vec::new();
    for (i, image) in disks.iter().enumerate() {
        let base = Drive::new(image, Format::Raw);
        if written == Written::UntilPowerOff {
            drives.push(base);
            continue;
        }
        let overlay = dir.join(format!("overlay{i}.qcow2"));
        let out = Command::new("qemu-img")
            .args(qemu::overlay_args(&base, &overlay))
            .output()?;
        if !out.status.success() {
            bail!("qemu-img: {}", String::from_utf8_lossy(&out.stderr));
        }
        drives.push(base.overlay(&overlay));
    }
    Ok(Config::new(
        "vmrescue-guest-boot",
        Accel::Tcg,
        Boot::Kernel {
            kernel: g.kernel.clone(),
            initrd: Some(g.initrd.clone()),
            cmdline: format!("root=UUID={ROOT_UUID} ro console=ttyS0"),
        },
    )
    .memory(1024)
    .console_log(dir.join("console.log"))
    .drives(drives))
}

/// [`boot`] with `disks` attached in order (vda, vdb...).
pub fn boot_disks(disks: &[&Path], written: Written) -> Result<Booted> {
    let dir = tempfile::tempdir()?;
    let console_log = dir.path().join("console.log");
    let config = guest_config(dir.path(), disks, written)?;
    let mut vm = QemuVm::new(qemu::binary(), config, dir.path().join("qemu.log"));
    vm.start()?;
    let until = Instant::now() + BOOT_LIMIT;
    let state = loop {
        std::thread::sleep(Duration::from_secs(1));
        let text =
            String::from_utf8_lossy(&vm.console_tail(4 << 20).unwrap_or_default()).into_owned();
        let s = bootjudge::judge(&text);
        let decided = written == Written::No
            && matches!(
                s,
                BootState::Booted | BootState::Emergency | BootState::Panic
            );
        if decided || vm.exited().is_some() || Instant::now() > until {
            break s;
        }
    };
    vm.stop(Duration::ZERO);
    let console = String::from_utf8_lossy(&fs::read(&console_log).unwrap_or_default()).into_owned();
    Ok(Booted { state, console })
}

/// Boots the guest on `disks` (on overlays) and logs in on its serial console as `user` with
/// `password`, as an operator would, then runs `command` there. Returns the console from the
/// login on; an error says which prompt did not come.
pub fn log_in(disks: &[&Path], user: &str, password: &str, command: &str) -> Result<String> {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("console.sock");
    let config = guest_config(dir.path(), disks, Written::No)?.console_socket(&socket);
    let mut vm = QemuVm::new(qemu::binary(), config, dir.path().join("qemu.log"));
    vm.start()?;
    let until = Instant::now() + BOOT_LIMIT;
    let mut stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => bail!("the console socket {}: {e}", socket.display()),
        }
    };
    // The log file has what the console says: what comes on the socket is drained.
    let mut drain = stream.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
    });
    let log = dir.path().join("console.log");
    let bytes = || fs::read(&log).unwrap_or_default();
    let has = |t: &[u8], s: &str| t.windows(s.len()).any(|w| w == s.as_bytes());
    let wait_for = |what: &str, from: usize, done: &dyn Fn(&[u8]) -> bool| -> Result<usize> {
        loop {
            let t = bytes();
            if t.len() >= from && done(&t[from..]) {
                return Ok(t.len());
            }
            if Instant::now() > until {
                bail!(
                    "no {what} on the console; its tail:\n{}",
                    bootjudge::tail(&String::from_utf8_lossy(&t), 30).join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let booted = |t: &[u8]| bootjudge::judge(&String::from_utf8_lossy(t)) == BootState::Booted;
    let mut at = wait_for("login prompt", 0, &booted)?;
    let start = at;
    stream.write_all(format!("{user}\n").as_bytes())?;
    at = wait_for("password prompt", at, &|t| has(t, "Password:"))?;
    stream.write_all(format!("{password}\n").as_bytes())?;
    at = wait_for("shell prompt", at, &|t| {
        let t = t.trim_ascii_end();
        t.ends_with(b"#") || t.ends_with(b"$")
    })?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let marker = "vmrescue-test-done";
    stream.write_all(format!("echo {marker}-$((6*7))\n").as_bytes())?;
    wait_for("command's output", at, &|t| has(t, &format!("{marker}-42")))?;
    vm.stop(Duration::ZERO);
    Ok(String::from_utf8_lossy(&bytes()[start..]).into_owned())
}
