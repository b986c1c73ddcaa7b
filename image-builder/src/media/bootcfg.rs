//! The boot loaders' configuration (pure): a menu of check, repair and shell, each with the
//! kernel command line that tells the agent its settings, the image's baked default chosen
//! after a short timeout (unattended boots must not wait). Where the media carry the rescue
//! kernel, the menu boots it (every driver built in: nothing to load), except under UEFI
//! Secure Boot, where GRUB is locked down and only Debian's signed kernel starts; each entry
//! also has a twin on Debian's kernel (`check-debian`...), for hardware the rescue kernel has
//! no driver for.

use vmrescue_protocol::cmdline::{Cmdline, CmdlineError};
use vmrescue_protocol::params::{After, Settings};
use vmrescue_protocol::Mode;

/// Seconds the menu waits before booting the default.
pub const MENU_TIMEOUT_SECS: u32 = 3;
/// Where the kernel and initramfs sit on the media (Debian's kernel with its modules).
pub const KERNEL_PATH: &str = "/vmrescue/vmlinuz";
pub const INITRD_PATH: &str = "/vmrescue/initrd.img";
/// The rescue kernel (its bzImage, with the EFI stub) and its core initramfs, when the media
/// carry them (the late archive beside them, `paths::LATE_MEDIUM_FILE`).
pub const RESCUE_KERNEL_PATH: &str = "/vmrescue/vmlinuz-rescue";
pub const RESCUE_INITRD_PATH: &str = "/vmrescue/initrd-rescue.cpio";
/// The suffix of the entries that boot Debian's kernel where the rescue kernel is the default.
pub const DEBIAN_SUFFIX: &str = "-debian";
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
/// the timeout. Only `ldlinux.c32` is needed. `rescue`: the media carry the rescue kernel.
pub fn syslinux(entries: &[Entry], default: usize, rescue: bool) -> String {
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
    if rescue {
        s.push_str(&format!(
            "SAY vmrescue: {}{DEBIAN_SUFFIX} and the others boot Debian's kernel with its modules\n",
            entries[default].label
        ));
    }
    let label = |kernel: &str, initrd: &str, label: &str, cmdline: &str| {
        format!("LABEL {label}\n  KERNEL {kernel}\n  APPEND initrd={initrd} {cmdline}\n")
    };
    for e in entries {
        if rescue {
            s.push_str(&label(
                RESCUE_KERNEL_PATH,
                RESCUE_INITRD_PATH,
                e.label,
                &e.cmdline,
            ));
        } else {
            s.push_str(&label(KERNEL_PATH, INITRD_PATH, e.label, &e.cmdline));
        }
    }
    if rescue {
        for e in entries {
            let twin = format!("{}{DEBIAN_SUFFIX}", e.label);
            s.push_str(&label(KERNEL_PATH, INITRD_PATH, &twin, &e.cmdline));
        }
    }
    s
}

/// GRUB (Debian's signed grub, through shim): finds the medium by its marker file, then the
/// menu on screen and serial. With `rescue`, the entries boot the rescue kernel unless GRUB is
/// locked down (Secure Boot: it sets `lockdown=y` and starts only signed kernels).
pub fn grub(entries: &[Entry], default: usize, marker: &str, rescue: bool) -> String {
    let mut s = String::new();
    s.push_str("serial --unit=0 --speed=115200\n");
    s.push_str("terminal_input console serial\nterminal_output console serial\n");
    s.push_str(&format!("search --no-floppy --file --set=root {marker}\n"));
    s.push_str(&format!(
        "set timeout={MENU_TIMEOUT_SECS}\nset timeout_style=menu\nset default={default}\n"
    ));
    let (kernel, initrd) = if rescue {
        s.push_str(&format!(
            "if [ \"$lockdown\" = \"y\" ]; then\n  set vmrescue_kernel={KERNEL_PATH}\n  \
             set vmrescue_initrd={INITRD_PATH}\nelse\n  set vmrescue_kernel={RESCUE_KERNEL_PATH}\n  \
             set vmrescue_initrd={RESCUE_INITRD_PATH}\nfi\nexport vmrescue_kernel vmrescue_initrd\n"
        ));
        ("$vmrescue_kernel", "$vmrescue_initrd")
    } else {
        (KERNEL_PATH, INITRD_PATH)
    };
    let entry = |title: &str, id: &str, kernel: &str, initrd: &str, cmdline: &str| {
        format!(
            "menuentry '{title}' --id {id} {{\n  linux {kernel} {cmdline}\n  initrd {initrd}\n}}\n"
        )
    };
    for e in entries {
        s.push_str(&entry(e.title, e.label, kernel, initrd, &e.cmdline));
    }
    if rescue {
        for e in entries {
            s.push_str(&entry(
                &format!("{} (Debian's kernel)", e.title),
                &format!("{}{DEBIAN_SUFFIX}", e.label),
                KERNEL_PATH,
                INITRD_PATH,
                &e.cmdline,
            ));
        }
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
        let sys = syslinux(&entries, default, false);
        assert!(
            sys.contains("TIMEOUT 30\n") && sys.contains("DEFAULT check\n"),
            "{sys}"
        );
        assert!(sys.contains("APPEND initrd=/vmrescue/initrd.img console=tty0"));
        assert_eq!(sys.matches("LABEL ").count(), 3);
        let g = grub(&entries, default, "/vmrescue/medium-abc", false);
        assert!(g.contains("search --no-floppy --file --set=root /vmrescue/medium-abc\n"));
        assert!(g.contains("set timeout=3\n") && g.contains("set default=0\n"));
        assert_eq!(g.matches("menuentry ").count(), 3);
        assert!(g.contains("vmrescue.mode=repair"));
    }

    #[test]
    fn with_the_rescue_kernel_it_is_the_default_but_under_secure_boot() {
        let (entries, default) = menu(&Settings::default()).unwrap();
        let sys = syslinux(&entries, default, true);
        assert!(sys.contains("DEFAULT check\n"), "{sys}");
        assert!(
            sys.contains(
                "LABEL check\n  KERNEL /vmrescue/vmlinuz-rescue\n  APPEND initrd=/vmrescue/initrd-rescue.cpio console=tty0"
            ),
            "{sys}"
        );
        assert!(
            sys.contains("LABEL check-debian\n  KERNEL /vmrescue/vmlinuz\n  APPEND initrd=/vmrescue/initrd.img console=tty0"),
            "{sys}"
        );
        assert_eq!(sys.matches("LABEL ").count(), 6);
        let g = grub(&entries, default, "/vmrescue/medium-abc", true);
        // Locked down (Secure Boot): Debian's signed kernel; else the rescue kernel. The
        // variables are exported, as a menu entry sees only exported ones.
        let lockdown = g
            .find("if [ \"$lockdown\" = \"y\" ]")
            .expect("the lockdown test");
        let first_entry = g.find("menuentry ").unwrap();
        assert!(lockdown < first_entry, "{g}");
        assert!(
            g.contains("then\n  set vmrescue_kernel=/vmrescue/vmlinuz\n"),
            "{g}"
        );
        assert!(
            g.contains("else\n  set vmrescue_kernel=/vmrescue/vmlinuz-rescue\n"),
            "{g}"
        );
        assert!(
            g.contains("export vmrescue_kernel vmrescue_initrd\n"),
            "{g}"
        );
        assert!(
            g.contains("--id check {\n  linux $vmrescue_kernel console=tty0"),
            "{g}"
        );
        assert!(g.contains("--id check-debian {\n  linux /vmrescue/vmlinuz console=tty0"));
        assert!(
            g.contains("set default=0\n"),
            "the default stays the first entry: {g}"
        );
        assert_eq!(g.matches("menuentry ").count(), 6);
    }
}
