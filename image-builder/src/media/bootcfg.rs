//! The boot loaders' configuration (pure): a menu of check, repair and shell, each with the
//! kernel command line that tells the agent its settings, the image's baked default chosen
//! after a short timeout (unattended boots must not wait).

use vmrescue_protocol::cmdline::{Cmdline, CmdlineError};
use vmrescue_protocol::params::{After, Settings};
use vmrescue_protocol::Mode;

/// Seconds the menu waits before booting the default.
pub const MENU_TIMEOUT_SECS: u32 = 3;
/// Where the kernel and initramfs sit on the media.
pub const KERNEL_PATH: &str = "/vmrescue/vmlinuz";
pub const INITRD_PATH: &str = "/vmrescue/initrd.img";
/// The kernel command line the media boot with `settings`: the kernel's own parameters
/// (every console, the serial one last: it becomes `/dev/console`, and it is what nova and
/// libvirt log), then the agent's settings.
pub fn media_cmdline(settings: &Settings) -> Result<Cmdline, CmdlineError> {
    let mut c = Cmdline::new();
    c.set("console", "tty0")?
        .set("console", "ttyS0,115200")?
        .flag("quiet")?
        .set("panic", "-1")?
        .settings(settings)?;
    Ok(c)
}

/// One menu entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `check`, `repair` or `shell`: what the operator types at the SYSLINUX prompt.
    pub label: &'static str,
    pub title: &'static str,
    pub cmdline: String,
}

/// The menu for `baked` (the image's defaults) and which entry is the default.
pub fn menu(baked: &Settings) -> Result<(Vec<Entry>, usize), String> {
    let variant = |mode: Mode, after: After| Settings {
        mode,
        after,
        ..baked.clone()
    };
    let entries = [
        (
            "check",
            "vmrescue: check (writes nothing)",
            variant(Mode::Check, baked.after),
        ),
        (
            "repair",
            "vmrescue: repair",
            variant(Mode::Repair, baked.after),
        ),
        (
            "shell",
            "vmrescue: check, then a shell",
            variant(Mode::Check, After::Shell),
        ),
    ];
    let mut out = Vec::new();
    for (label, title, settings) in entries {
        let cmdline = media_cmdline(&settings).map_err(|e| e.to_string())?;
        out.push(Entry {
            label,
            title,
            cmdline: cmdline.to_string(),
        });
    }
    let default = match (baked.mode, baked.after) {
        (Mode::Check, After::Shell) => 2,
        (Mode::Repair, _) => 1,
        (Mode::Check, _) => 0,
    };
    Ok((out, default))
}

/// ISOLINUX / SYSLINUX: a `boot:` prompt on screen and serial (type a label), the default after
/// the timeout. Only `ldlinux.c32` is needed.
pub fn syslinux(entries: &[Entry], default: usize) -> String {
    let mut s = String::new();
    s.push_str("SERIAL 0 115200\nPROMPT 1\n");
    s.push_str(&format!("TIMEOUT {}\n", MENU_TIMEOUT_SECS * 10));
    s.push_str(&format!("DEFAULT {}\n", entries[default].label));
    let labels: Vec<&str> = entries.iter().map(|e| e.label).collect();
    s.push_str(&format!(
        "SAY vmrescue: type {} (default {} in {} s)\n",
        labels.join(", "),
        entries[default].label,
        MENU_TIMEOUT_SECS
    ));
    for e in entries {
        s.push_str(&format!(
            "LABEL {}\n  KERNEL {KERNEL_PATH}\n  APPEND initrd={INITRD_PATH} {}\n",
            e.label, e.cmdline
        ));
    }
    s
}

/// GRUB (Debian's signed grub, through shim): finds the medium by its marker file, then the
/// menu on screen and serial.
pub fn grub(entries: &[Entry], default: usize, marker: &str) -> String {
    let mut s = String::new();
    s.push_str("serial --unit=0 --speed=115200\n");
    s.push_str("terminal_input console serial\nterminal_output console serial\n");
    s.push_str(&format!("search --no-floppy --file --set=root {marker}\n"));
    s.push_str(&format!(
        "set timeout={MENU_TIMEOUT_SECS}\nset timeout_style=menu\nset default={default}\n"
    ));
    for e in entries {
        s.push_str(&format!(
            "menuentry '{}' --id {} {{\n  linux {KERNEL_PATH} {}\n  initrd {INITRD_PATH}\n}}\n",
            e.title, e.label, e.cmdline
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_protocol::params;

    #[test]
    fn the_baked_default_is_chosen_and_every_entry_parses_back() {
        let baked = Settings {
            mode: Mode::Repair,
            hostname: Some("db-1".into()),
            fsck_timeout_secs: 600,
            ..Settings::default()
        };
        let (entries, default) = menu(&baked).unwrap();
        assert_eq!(entries[default].label, "repair");
        let labels: Vec<&str> = entries.iter().map(|e| e.label).collect();
        assert_eq!(labels, ["check", "repair", "shell"]);
        for e in &entries {
            let (s, warnings) = params::parse(&e.cmdline);
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(s.hostname.as_deref(), Some("db-1"));
            assert_eq!(s.fsck_timeout_secs, 600);
            assert!(e.cmdline.contains(" vmrescue.fsck_timeout=600"));
            assert!(e.cmdline.starts_with("console=tty0 console=ttyS0,115200"));
        }
        assert_eq!(params::parse(&entries[0].cmdline).0.mode, Mode::Check);
        assert_eq!(params::parse(&entries[2].cmdline).0.after, After::Shell);
        let (_, d) = menu(&Settings::default()).unwrap();
        assert_eq!(d, 0);
        let bad = Settings {
            hostname: Some("a b".into()),
            ..Settings::default()
        };
        assert!(menu(&bad).is_err());
    }

    #[test]
    fn loader_configs_boot_the_default_after_the_timeout() {
        let (entries, default) = menu(&Settings::default()).unwrap();
        let sys = syslinux(&entries, default);
        assert!(
            sys.contains("TIMEOUT 30\n") && sys.contains("DEFAULT check\n"),
            "{sys}"
        );
        assert!(sys.contains("APPEND initrd=/vmrescue/initrd.img console=tty0"));
        assert_eq!(sys.matches("LABEL ").count(), 3);
        let g = grub(&entries, default, "/vmrescue/medium-abc");
        assert!(g.contains("search --no-floppy --file --set=root /vmrescue/medium-abc\n"));
        assert!(g.contains("set timeout=3\n") && g.contains("set default=0\n"));
        assert_eq!(g.matches("menuentry ").count(), 3);
        assert!(g.contains("vmrescue.mode=repair"));
    }
}
