//! `vmrescue watch` against the real libvirtd (`scripts/services.sh` starts it): real domains
//! (the rescue kernel running a busybox script as PID 1, see `crash::script_initrd`) that fill
//! a thin disk on a small tmpfs until QEMU pauses them, or hit a corrupted ext4 that the
//! guest kernel remounts read-only; libvirtd restarted under a running watch; bad input.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmrescue_tests::virsh::{virsh, URI};
use vmrescue_tests::{budgets, crash, fixture, harness};

/// Tests that restart libvirtd take it for writing; the others for reading.
static LIBVIRTD: RwLock<()> = RwLock::new(());

fn state(name: &str) -> String {
    String::from_utf8_lossy(&virsh(&["domstate", "--reason", name]).stdout)
        .trim()
        .to_owned()
}

/// A defined (not started) domain booting the rescue kernel with `script` as PID 1, its
/// serial console logged to `console.log` in its directory; destroyed, undefined and its
/// tmpfs unmounted on drop.
struct Guest {
    name: String,
    dir: tempfile::TempDir,
    tmpfs: Option<PathBuf>,
}

impl Guest {
    /// `disks(dir)` gives the `<disk>` elements (files in `dir`, which libvirt's QEMU can
    /// enter) and how many there are.
    fn define(tag: &str, script: &str, disks: impl FnOnce(&Guest) -> (String, usize)) -> Guest {
        assert!(
            virsh(&["version"]).status.success(),
            "libvirtd does not answer on {URI}: start it with scripts/services.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let g = Guest {
            name: format!("vmrescue-watch-{tag}-{}", std::process::id()),
            dir,
            tmpfs: None,
        };
        let (disk_xml, n) = disks(&g);
        let kernel = g.path("vmlinuz");
        std::fs::copy(&harness::image().kernel, &kernel).unwrap();
        let initrd = g.path("initrd.img");
        std::fs::write(&initrd, crash::script_initrd(n, script, &[]).unwrap()).unwrap();
        let xml = format!(
            "<domain type='qemu'>\n  <name>{}</name>\n  <memory unit='MiB'>256</memory>\n  <vcpu>1</vcpu>\n  \
             <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    \
             <cmdline>console=ttyS0 rdinit=/crash.sh panic=-1</cmdline>\n  </os>\n  <on_poweroff>destroy</on_poweroff>\n  \
             <devices>\n{disk_xml}    <serial type='file'>\n      <source path='{}'/>\n      <target port='0'/>\n    </serial>\n  </devices>\n</domain>\n",
            g.name,
            kernel.display(),
            initrd.display(),
            g.console().display(),
        );
        let file = g.path("domain.xml");
        std::fs::write(&file, xml).unwrap();
        let o = virsh(&["define", file.to_str().unwrap()]);
        assert!(o.status.success(), "virsh define: {o:?}");
        g
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn console(&self) -> PathBuf {
        self.path("console.log")
    }

    fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.console()).unwrap_or_default()).into_owned()
    }

    fn start(&self) {
        let o = virsh(&["start", &self.name]);
        assert!(o.status.success(), "virsh start: {o:?}");
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.name]);
        let _ = virsh(&["undefine", &self.name]);
        if let Some(t) = &self.tmpfs {
            let _ = Command::new("umount").arg(t).status();
        }
    }
}

/// A small tmpfs in the guest's directory holding a thin qcow2 much larger than it.
fn thin_disk(g: &Guest, tmpfs: &mut Option<PathBuf>) -> PathBuf {
    let t = g.path("thin");
    std::fs::create_dir(&t).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs"])
        .arg(&t)
        .status()
        .unwrap();
    assert!(st.success(), "mounting a tmpfs (the test runs as root)");
    *tmpfs = Some(t.clone());
    let disk = t.join("disk.qcow2");
    fixture::run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("1G"),
    )
    .unwrap();
    disk
}

/// A `vmrescue watch` in the background: incidents (stdout) and messages (stderr) as they come.
struct Watcher {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    incidents: Vec<Value>,
    stderr: Vec<String>,
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(|l| l.ok()) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

impl Watcher {
    /// Starts `vmrescue watch ARGS` and waits until it says it is watching.
    fn start(args: &[&str]) -> Watcher {
        let mut child = Command::new(harness::vmrescue_bin().unwrap())
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        let mut w = Watcher {
            child,
            out,
            err,
            incidents: Vec::new(),
            stderr: Vec::new(),
        };
        w.wait_stderr("watching", budgets::SETTLE);
        w
    }

    fn drain(&mut self) {
        while let Ok(l) = self.err.try_recv() {
            self.stderr.push(l);
        }
        while let Ok(l) = self.out.try_recv() {
            let v: Value =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            self.incidents.push(v);
        }
    }

    fn wait_stderr(&mut self, needle: &str, limit: Duration) {
        let until = Instant::now() + limit;
        loop {
            self.drain();
            if self.stderr.iter().any(|l| l.contains(needle)) {
                return;
            }
            assert!(
                Instant::now() < until && self.child.try_wait().unwrap().is_none(),
                "no {needle:?} from the watch: {:#?}",
                self.stderr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first incident `pred` accepts.
    fn wait_incident(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
        guest: &Guest,
    ) -> Value {
        let until = Instant::now() + limit;
        loop {
            self.drain();
            if let Some(v) = self.incidents.iter().find(|v| pred(v)) {
                return v.clone();
            }
            assert!(
                Instant::now() < until,
                "no {what} incident; incidents: {:#?}\nstderr: {:#?}\nguest state: {}\nconsole (end): {}",
                self.incidents,
                self.stderr,
                state(&guest.name),
                tail(&guest.console_text())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `sig` and waits for the end: the exit status.
    fn stop(mut self, sig: rustix::process::Signal) -> (i32, Vec<Value>, Vec<String>) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, sig);
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        self.drain_to_end();
        (code, self.incidents, self.stderr)
    }

    /// Everything the ended watch wrote: its readers end with its pipes.
    fn drain_to_end(&mut self) {
        self.stderr.extend(self.err.iter());
        for l in self.out.iter() {
            let v: Value =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            self.incidents.push(v);
        }
    }
}

fn tail(s: &str) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(25)..].join("\n")
}

fn kind<'a>(k: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["kind"] == k
}

fn restart_libvirtd() {
    let running = || {
        Command::new("pgrep")
            .args(["-x", "libvirtd"])
            .output()
            .unwrap()
            .status
            .success()
    };
    // Asked to stop, libvirtd may take long to close its connections; then it is killed
    // (its domains keep running, and it finds them again when it starts).
    let _ = Command::new("pkill").args(["-x", "libvirtd"]).status();
    let polite = Instant::now() + Duration::from_secs(30);
    while running() && Instant::now() < polite {
        std::thread::sleep(Duration::from_millis(100));
    }
    if running() {
        let _ = Command::new("pkill")
            .args(["-KILL", "-x", "libvirtd"])
            .status();
    }
    let until = Instant::now() + budgets::SETTLE;
    while running() {
        assert!(
            Instant::now() < until,
            "libvirtd does not stop, even killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = Command::new("bash")
        .arg(harness::workspace_root().join("scripts/services.sh"))
        .status()
        .unwrap();
    assert!(
        st.success(),
        "scripts/services.sh could not start libvirtd again"
    );
}

#[test]
fn a_guest_filling_its_thin_disk_is_reported_paused_on_enospc_across_a_libvirtd_restart() {
    let _lock = LIBVIRTD.write().unwrap_or_else(|e| e.into_inner());
    let mut tmpfs = None;
    let mut disk = PathBuf::new();
    // The guest writes only once the test says so: when "GO" is on its gate disk (vdb, read
    // past its own cache), which the test writes once the watch has reconnected.
    let script = "mark waiting\n\
                  until [ \"$($bb dd if=/dev/vdb bs=512 count=1 iflag=direct 2>/dev/null | $bb tr -d '\\000')\" = GO ]; do $bb sleep 1; done\n\
                  mark writing\n\
                  $bb dd if=/dev/zero of=/dev/vda bs=1M count=900 oflag=direct\nmark written\n$bb sleep 600\n";
    let mut gate = PathBuf::new();
    let mut g = Guest::define("thin", script, |g| {
        disk = thin_disk(g, &mut tmpfs);
        gate = g.path("gate.img");
        std::fs::write(&gate, vec![0u8; 1 << 20]).unwrap();
        (
            format!(
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2' error_policy='stop'/>\n      \
                 <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n\
                 \x20   <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
                 <source file='{}'/>\n      <target dev='vdb' bus='virtio'/>\n    </disk>\n",
                disk.display(),
                gate.display()
            ),
            2,
        )
    });
    g.tmpfs = tmpfs;
    let mut w = Watcher::start(&["--json", "--domain", &g.name, "--for", "600"]);
    g.start();
    // libvirtd goes away and comes back while the guest runs.
    let until = Instant::now() + budgets::RESCUE;
    while !g.console_text().contains("VMRESCUE-CRASH waiting") {
        assert!(
            Instant::now() < until,
            "the guest never started: {}",
            tail(&g.console_text())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    restart_libvirtd();
    w.wait_stderr("lost the connection", budgets::SETTLE);
    w.wait_stderr("reconnected", budgets::SETTLE);
    assert!(
        !g.console_text().contains("VMRESCUE-CRASH writing"),
        "the guest wrote before the gate opened"
    );
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new().write(true).open(&gate).unwrap(),
        b"GO",
        0,
    )
    .unwrap();

    let limit = budgets::RESCUE;
    let paused = w.wait_incident("paused", limit, kind("paused"), &g);
    assert_eq!(paused["domain"], g.name.as_str());
    assert_eq!(paused["reason"], "enospc", "{paused}");
    assert_eq!(paused["disk"], "vda", "{paused}");
    assert_eq!(paused["source"], "libvirt_event");
    assert_eq!(paused["source_file"], disk.to_str().unwrap(), "{paused}");
    assert!(
        paused["uuid"].as_str().is_some_and(|u| u.len() == 36),
        "{paused}"
    );
    assert!(
        paused["suggest"]
            .as_str()
            .unwrap()
            .starts_with(&format!("vmrescue rescue --domain {}", g.name)),
        "{paused}"
    );
    let io = w.wait_incident("io_error", limit, kind("io_error"), &g);
    assert_eq!(
        (io["reason"].as_str(), io["disk"].as_str()),
        (Some("enospc"), Some("vda")),
        "{io}"
    );
    assert!(state(&g.name).contains("paused"), "{}", state(&g.name));
    // A storm of events is not a storm of lines.
    std::thread::sleep(Duration::from_secs(3));
    w.drain();
    let pauses = w
        .incidents
        .iter()
        .filter(|v| v["kind"] == "paused" && v["repeat"] == false)
        .count();
    assert_eq!(pauses, 1, "{:#?}", w.incidents);

    let (code, _, stderr) = w.stop(rustix::process::Signal::INT);
    assert_eq!(code, 1, "incidents were printed: {stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.contains("SIGINT: stopping")),
        "{stderr:#?}"
    );

    // A new watch reports the domain that is already paused, once, and runs --exec for it.
    let exec = format!("cat > {}/exec-$VMRESCUE_KIND.json", g.dir.path().display());
    let w = Watcher::start(&["--json", "--domain", &g.name, "--for", "4", "--exec", &exec]);
    let (code, incidents, stderr) = w.stop_after_for();
    assert_eq!(code, 1, "{stderr:#?}");
    let at_start: Vec<&Value> = incidents.iter().filter(|v| v["kind"] == "paused").collect();
    assert_eq!(at_start.len(), 1, "{incidents:#?}");
    assert!(at_start[0]["detail"]
        .as_str()
        .unwrap()
        .contains("when the watch started"));
    assert_eq!(at_start[0]["reason"], "enospc");
    let ran: Value =
        serde_json::from_slice(&std::fs::read(g.path("exec-paused.json")).unwrap()).unwrap();
    assert_eq!(ran["domain"], g.name.as_str());
    assert_eq!(ran["kind"], "paused");
}

impl Watcher {
    /// Waits for a watch started with `--for` to end by itself.
    fn stop_after_for(mut self) -> (i32, Vec<Value>, Vec<String>) {
        let until = Instant::now() + budgets::SETTLE;
        let code = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < until, "--for did not end the watch");
            std::thread::sleep(Duration::from_millis(100));
        };
        self.drain_to_end();
        (code, self.incidents, self.stderr)
    }
}

#[test]
fn ext4_remounted_read_only_in_the_guest_is_reported_from_its_console() {
    let _lock = LIBVIRTD.read().unwrap_or_else(|e| e.into_inner());
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("victim"), "data\n").unwrap();
    let script = "\
        $bb head -c 3000000 /dev/zero | $bb tr '\\0' A\necho\n\
        $bb mkdir -p /mnt\n\
        $bb mount -t ext4 -o errors=remount-ro /dev/vda /mnt || die 'cannot mount /dev/vda'\n\
        $bb cat /mnt/victim\n$bb touch /mnt/after\nmark done\n$bb sleep 600\n";
    let g = Guest::define("ro", script, |g| {
        let img = g.path("root.img");
        fixture::mkfs_ext4(&img, 32, "guestroot", tree.path()).unwrap();
        // The inode's checksum no longer matches: reading it is a filesystem error.
        fixture::debugfs_write(&img, &["sif /victim checksum 0x1234"]).unwrap();
        (
            format!(
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
                 <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n",
                img.display()
            ),
            1,
        )
    });
    let mut w = Watcher::start(&["--json", "--domain", &g.name, "--for", "600"]);
    g.start();
    let limit = budgets::RESCUE;
    let ro = w.wait_incident("fs_read_only", limit, kind("fs_read_only"), &g);
    assert_eq!(ro["source"], "console", "{ro}");
    assert_eq!(ro["disk"], "vda", "{ro}");
    assert_eq!(ro["guest_device"], "vda", "{ro}");
    assert!(
        ro["detail"]
            .as_str()
            .unwrap()
            .contains("Remounting filesystem read-only"),
        "{ro}"
    );
    assert!(
        ro["source_file"].as_str().unwrap().ends_with("root.img"),
        "{ro}"
    );
    let err = w.wait_incident("fs_error", limit, kind("fs_error"), &g);
    assert!(
        err["detail"].as_str().unwrap().contains("EXT4-fs error"),
        "{err}"
    );

    // The console log deleted under the watch: said, and the watch goes on.
    std::fs::remove_file(g.console()).unwrap();
    w.wait_stderr("is not there", budgets::SETTLE);
    let (code, incidents, stderr) = w.stop(rustix::process::Signal::TERM);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(
        incidents
            .iter()
            .all(|v| v["detail"].as_str().is_some_and(|d| d.len() <= 600)),
        "the 3 MB line was not kept: {incidents:#?}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_the_watch_goes_on_for_the_others() {
    let _lock = LIBVIRTD.read().unwrap_or_else(|e| e.into_inner());
    let run = |args: &[&str]| {
        let o = Command::new(harness::vmrescue_bin().unwrap())
            .arg("watch")
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.stdout,
        )
    };
    let (code, err, out) = run(&["--domain", "vmrescue-no-such-domain", "--for", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no domain named vmrescue-no-such-domain"),
        "{err}"
    );
    assert!(out.is_empty());
    let (code, err, _) = run(&["--connect", "qemu+tcp://127.0.0.1:1/system", "--for", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot connect") && err.contains("127.0.0.1:1"),
        "{err}"
    );

    // One name that exists, one that does not: a warning, and it watches the one.
    let g = Guest::define("idle", "$bb sleep 600\n", |_| (String::new(), 0));
    let (code, err, out) = run(&[
        "--domain",
        &g.name,
        "--domain",
        "vmrescue-no-such-domain",
        "--for",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("no domain named vmrescue-no-such-domain")
            && err.contains("watching the others"),
        "{err}"
    );
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}
