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

/// Loads the modules this VM's devices need (filesystem modules come at their first mount,
/// see [`modules::ensure_fs`]); returns their names, `None` when the kernel takes no modules
/// (everything built in). `ata`: also the SATA and IDE controllers' drivers (`vmrescue.ata`).
pub fn load_modules(rep: &mut Reporter, ata: bool) -> Option<Vec<String>> {
    if !takes_modules(Path::new("/proc")) {
        log::info!("modules: this kernel has its drivers built in (no module support)");
        return None;
    }
    Some(load_listed(rep, ata))
}

fn load_listed(rep: &mut Reporter, ata: bool) -> Vec<String> {
    let list = match std::fs::read_to_string(modules::LOAD_LIST) {
        Ok(l) => l,
        Err(e) => {
            rep.warn(
                Step::Modules,
                None,
                format!("cannot read {} ({e}); no module loaded", modules::LOAD_LIST),
            );
            return Vec::new();
        }
    };
    let aliases = std::fs::read_to_string(modules::ALIAS_LIST).unwrap_or_default();
    let mut loader = modules::Loader::new(
        modules::parse_load_list(&list),
        modules::parse_aliases(&aliases),
    );
    if !ata {
        log::info!("modules: no disk on SATA or IDE (vmrescue.ata=0): their drivers stay out");
        loader.skip_for_devices(modules::ATA_DRIVERS);
    }
    let mut loaded = modules::Loaded::default();
    if loader.has_aliases() {
        // Bus drivers bring their devices (virtio_pci the virtio ones): match again until
        // nothing new loads.
        let sys = Path::new("/sys");
        for _ in 0..6 {
            let round = loader.for_devices(&modules::device_modaliases(sys));
            let more = round.loaded;
            add(&mut loaded, round);
            if more == 0 {
                break;
            }
        }
        if Path::new("/sys/firmware/efi").exists() {
            let names = ["efivarfs".to_owned()].into();
            add(&mut loaded, loader.load(&names));
        }
        if !has_disk(Path::new("/sys/class/block")) {
            log::info!("modules: no disk by device aliases; loading every carried module");
            add(&mut loaded, loader.everything());
        }
    } else {
        add(&mut loaded, loader.everything());
    }
    log::info!(
        "modules: {} loaded, {} already present, {} failed",
        loaded.loaded,
        loaded.already,
        loaded.failed.len()
    );
    for f in loaded.failed {
        rep.warn(Step::Modules, None, f);
    }
    modules::install(loader);
    loaded.names
}

/// Whether the running kernel loads modules at all: one built without module support (the
/// purpose-made rescue kernel, everything built in) has no `/proc/modules`.
fn takes_modules(proc: &Path) -> bool {
    !proc.join("self").exists() || proc.join("modules").exists()
}

fn add(into: &mut modules::Loaded, more: modules::Loaded) {
    into.loaded += more.loaded;
    into.names.extend(more.names);
    into.already += more.already;
    into.failed.extend(more.failed);
    into.optional_failed.extend(more.optional_failed);
}

/// Whether a disk (not a ram, loop or zram device) is there.
fn has_disk(class_block: &Path) -> bool {
    std::fs::read_dir(class_block).is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !(n.starts_with("ram") || n.starts_with("loop") || n.starts_with("zram"))
        })
    })
}

/// Opens the host's virtio-serial port and attaches it to the reporter; without it the
/// rescue reports on the console only.
pub fn connect_port(settings: &Settings, rep: &mut Reporter) {
    let sys = Path::new("/sys");
    // No virtio-serial device (a medium booted without the channel): no port to wait for.
    let wait = match port::has_serial_device(sys) {
        true => PORT_WAIT,
        false => Duration::ZERO,
    };
    let Some(dev) = port::wait_for(sys, &settings.port, wait) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_proc_modules_takes_none() {
        let proc = tempfile::tempdir().expect("tempdir");
        assert!(
            takes_modules(proc.path()),
            "/proc not mounted: try as before"
        );
        std::fs::create_dir(proc.path().join("self")).expect("self");
        assert!(!takes_modules(proc.path()), "mounted, no /proc/modules");
        std::fs::write(proc.path().join("modules"), "").expect("modules");
        assert!(takes_modules(proc.path()));
    }
}
