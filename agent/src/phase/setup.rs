//! Setting up: the operator's settings from the kernel command line, the kernel modules the
//! image lists, and the virtio-serial port to the host.

use std::path::Path;
use std::time::Duration;

use vmrescue_protocol::params::{self as cmdline, Settings};
use vmrescue_protocol::Step;

use crate::reporter::Reporter;
use crate::{modules, port};

/// How long to wait for the virtio-serial port to show up after its module loaded.
const PORT_WAIT: Duration = Duration::from_secs(3);

/// The settings on `/proc/cmdline`; the defaults (check mode) when it cannot be read.
pub fn settings(rep: &mut Reporter) -> Settings {
    match std::fs::read_to_string("/proc/cmdline") {
        Ok(line) => {
            let (s, warnings) = cmdline::parse(&line);
            for w in warnings {
                rep.warn(Step::Cmdline, None, w);
            }
            s
        }
        Err(e) => {
            rep.warn(
                Step::Cmdline,
                None,
                format!("cannot read /proc/cmdline ({e}); check mode, default port"),
            );
            Settings::default()
        }
    }
}

/// Loads the modules on the image's load list.
pub fn load_modules(rep: &mut Reporter) {
    let list = match std::fs::read_to_string(modules::LOAD_LIST) {
        Ok(l) => l,
        Err(e) => {
            rep.warn(
                Step::Modules,
                None,
                format!("cannot read {} ({e}); no module loaded", modules::LOAD_LIST),
            );
            return;
        }
    };
    let loaded = modules::load_all(&modules::parse_load_list(&list));
    log::info!(
        "modules: {} loaded, {} already present, {} failed",
        loaded.loaded,
        loaded.already,
        loaded.failed.len()
    );
    for f in loaded.failed {
        rep.warn(Step::Modules, None, f);
    }
}

/// Opens the host's virtio-serial port and attaches it to the reporter; without it the
/// rescue reports on the console only.
pub fn connect_port(settings: &Settings, rep: &mut Reporter) {
    let Some(dev) = port::wait_for(Path::new("/sys"), &settings.port, PORT_WAIT) else {
        rep.warn(
            Step::Port,
            None,
            format!(
                "no virtio-serial port named {}; reporting on the console only",
                settings.port
            ),
        );
        return;
    };
    let path = Path::new("/dev").join(&dev);
    match port::Port::open(path.clone()) {
        Ok(p) => {
            log::info!("talking to the host on {}", path.display());
            rep.attach(p);
        }
        Err(e) => rep.warn(
            Step::Port,
            Some(&path.to_string_lossy()),
            format!(
                "cannot open {}: {e}; reporting on the console only",
                path.display()
            ),
        ),
    }
}
