//! What a guest's console says about its boot (pure): it reached a login prompt or its
//! multi-user target, fell into emergency or rescue mode, panicked, or hung (and on which start
//! job), or printed nothing. The console is hostile text: only matched, never interpreted.

use serde::Serialize;
use vmrescue_protocol::BootVerdict;

/// How a boot went, as its console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BootState {
    /// A getty login prompt, or systemd reached its multi-user or graphical target.
    Booted,
    /// Emergency or rescue mode ("Give root password for maintenance").
    Emergency,
    /// A kernel panic, or no working init.
    Panic,
    /// No progress to one of the above before the limit; the last start job that was running,
    /// and the console prompt the boot waits at, if it shows one (systemd's first-boot
    /// wizard, a disk passphrase).
    Hang {
        last_job: Option<String>,
        prompt: Option<String>,
    },
    /// Nothing on the console at all.
    NoOutput,
    /// The VM ended on its own before any verdict: the guest rebooted or reset (the verify VM
    /// does not restart, so a reboot ends it), e.g. a boot loop or a triple fault.
    Reboot,
    /// The VM ended on its own before any verdict, the guest having powered itself off.
    PowerOff,
}

impl BootState {
    /// The report's name for it.
    pub fn verdict(&self) -> BootVerdict {
        match self {
            BootState::Booted => BootVerdict::Booted,
            BootState::Emergency => BootVerdict::Emergency,
            BootState::Panic => BootVerdict::Panic,
            BootState::Hang { .. } => BootVerdict::Hang,
            BootState::NoOutput => BootVerdict::NoOutput,
            BootState::Reboot => BootVerdict::Reboot,
            BootState::PowerOff => BootVerdict::PowerOff,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self.verdict() {
            BootVerdict::Booted => "booted",
            BootVerdict::Emergency => "emergency",
            BootVerdict::Panic => "panic",
            BootVerdict::Hang => "hang",
            BootVerdict::NoOutput => "no_output",
            BootVerdict::Reboot => "reboot",
            BootVerdict::PowerOff => "power_off",
            BootVerdict::Other(_) | BootVerdict::Unset => "",
        }
    }
}

/// What the guest kernel prints when it powers off (not when it restarts).
const POWER_OFF: &[&str] = &[
    "reboot: Power down",
    "System halted",
    "reboot: System halted",
];

/// The verdict on a boot whose VM ended on its own: a verdict the console already shows stands
/// (a panic that then reset the VM is a panic); otherwise the guest rebooted or powered off.
/// A hang is only what reaches the time limit without a verdict.
pub fn judge_ended(console: &str) -> BootState {
    match judge(console) {
        BootState::Hang { .. } | BootState::NoOutput => {
            if console
                .lines()
                .any(|l| POWER_OFF.iter().any(|p| l.contains(p)))
            {
                BootState::PowerOff
            } else {
                BootState::Reboot
            }
        }
        s => s,
    }
}

const BOOTED: &[&str] = &[
    "Reached target Multi-User System",
    "Reached target multi-user.target",
    "Reached target Graphical Interface",
    "Reached target graphical.target",
];
const EMERGENCY: &[&str] = &[
    "You are in emergency mode",
    "You are in rescue mode",
    "Give root password for maintenance",
    "Entering emergency mode",
    "Cannot open access to console, the root account is locked",
    "emergency shell",
    // Debian's and Ubuntu's initramfs when the root does not show up.
    "Dropping to a shell!",
];
const PANIC: &[&str] = &[
    "Kernel panic - not syncing",
    "No working init found",
    "Attempted to kill init",
    // Debian's and Ubuntu's initramfs: the root mounted, but without an init.
    "No init found. Try passing init= bootarg",
    "Target filesystem doesn't have requested",
];

/// Console prompts a boot can wait at forever: (what the console shows, what it means).
const PROMPTS: &[(&str, &str)] = &[
    (
        "-- Press any key to proceed --",
        "systemd-firstboot waits for a key press (no /etc/machine-id: a first boot)",
    ),
    (
        "Please enter system locale name or number",
        "systemd-firstboot asks for a locale (a first boot)",
    ),
    (
        "Please enter timezone name or number",
        "systemd-firstboot asks for a time zone (a first boot)",
    ),
    (
        "Please enter a new root password",
        "systemd-firstboot asks for a root password (a first boot)",
    ),
    (
        "Please enter passphrase for disk",
        "a disk passphrase is asked for (encrypted volume)",
    ),
];

/// A getty prompt: `HOSTNAME login:` starting a line, alone or followed by what was typed or
/// by kernel messages that landed on the same line.
fn is_login_prompt(line: &str) -> bool {
    let Some((host, _)) = line.split_once(" login:") else {
        return false;
    };
    let host = host.trim_start_matches(['\r', ' ']);
    !host.is_empty()
        && host != "Last"
        && host.len() <= 64
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

fn last_pos(lines: &[&str], pats: &[&str]) -> Option<usize> {
    lines
        .iter()
        .rposition(|l| pats.iter().any(|p| l.contains(p)))
}

/// The job in a `A start job is running for NAME (12s / 1min 30s)` line, or in the form
/// systemd alternates it with, `Job NAME/start running (46s / 1min 30s)` (the name cut with
/// `…` when long).
fn start_job(line: &str) -> Option<String> {
    let name = if let Some(rest) = line.split("A start job is running for ").nth(1) {
        rest.rsplit_once(" (").map_or(rest, |(n, _)| n)
    } else {
        let (before, _) = line.rsplit_once("/start running (")?;
        before.rsplit_once("Job ")?.1
    };
    let name: String = name.trim().chars().take(200).collect();
    (!name.is_empty()).then_some(name)
}

/// Judges a console (its text, terminal escapes and all). The latest of a login prompt or
/// target, emergency mode and a panic wins; with none of them the boot hung, or said nothing.
pub fn judge(console: &str) -> BootState {
    let lines: Vec<&str> = console.lines().collect();
    if console.trim().is_empty() {
        return BootState::NoOutput;
    }
    let booted = lines
        .iter()
        .rposition(|l| is_login_prompt(l))
        .max(last_pos(&lines, BOOTED));
    let candidates = [
        (booted, BootState::Booted),
        (last_pos(&lines, EMERGENCY), BootState::Emergency),
        (last_pos(&lines, PANIC), BootState::Panic),
    ];
    if let Some((_, state)) = candidates
        .into_iter()
        .filter_map(|(p, s)| p.map(|p| (p, s)))
        .max_by_key(|(p, _)| *p)
    {
        return state;
    }
    let prompt = lines.iter().rev().find_map(|l| {
        PROMPTS
            .iter()
            .find(|(shown, _)| l.contains(shown))
            .map(|(_, means)| (*means).to_owned())
    });
    BootState::Hang {
        last_job: lines.iter().rev().find_map(|l| start_job(l)),
        prompt,
    }
}

/// Boot stages and what shows each on a console, in boot order.
const MILESTONES: &[(&str, &[&str])] = &[
    (
        "kernel",
        &["Linux version ", "Booting Linux on", "Command line: "],
    ),
    (
        "initramfs",
        &[
            "Run /init as init process",
            "Loading, please wait...",
            "dracut-",
            "Begin: Loading essential drivers",
            "Trying to unpack rootfs",
        ],
    ),
    (
        "root_mounted",
        &[
            "mounted filesystem",
            "Mounting V5 Filesystem",
            "Switching root.",
            "Reached target initrd-root-fs.target",
            "Reached target Initrd Root File System",
        ],
    ),
    (
        "init",
        &[
            "Run /sbin/init as init process",
            "Run /lib/systemd/systemd as init process",
            "systemd[1]: ",
            "Welcome to ",
            "INIT: version",
            "OpenRC ",
        ],
    ),
    (
        "multi_user",
        &[
            "Reached target Multi-User System",
            "Reached target multi-user.target",
            "Reached target Graphical Interface",
            "Reached target graphical.target",
        ],
    ),
];

/// The boot stages a console shows, in boot order (`login` last when a getty prompt is there).
pub fn milestones(console: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = MILESTONES
        .iter()
        .filter(|(_, pats)| console.lines().any(|l| pats.iter().any(|p| l.contains(p))))
        .map(|(name, _)| *name)
        .collect();
    if console.lines().any(is_login_prompt) {
        out.push("login");
    }
    out
}

/// The last `n` lines of a console, for reports (escaped by the renderer).
pub fn tail(console: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.chars().take(300).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_LOGIN: &str =
        "[  OK  ] Started serial-getty@ttyS0.service - Serial Getty on ttyS0.\r
[  OK  ] Reached target getty.target - Login Prompts.\r
[  OK  ] Reached target multi-user.target - Multi-User System.\r
\r
Debian GNU/Linux 12 debian ttyS0\r
\r
debian login: ";

    #[test]
    fn login_prompts() {
        for yes in [
            "debian login: ",
            "debian login:",
            "\rfedora-riscv login: root",
            "fedora-riscv login: [  159.306184] sunxi-ehci 4200000.ehci1-controller: connect",
        ] {
            assert!(is_login_prompt(yes), "{yes:?}");
        }
        for no in [
            "Last login: Mon Dec  1 14:00:00 on ttyS0",
            "root password logins are disabled in SSH",
            " login: ",
            "[  OK  ] Started systemd-logind.service - User Login Management.",
            "please enter your login: here",
        ] {
            assert!(!is_login_prompt(no), "{no:?}");
        }
    }

    #[test]
    fn a_login_prompt_or_multi_user_is_booted() {
        assert_eq!(judge(DEBIAN_LOGIN), BootState::Booted);
        assert_eq!(
            judge("[  OK  ] Reached target Multi-User System.\n"),
            BootState::Booted
        );
        assert_eq!(
            judge("Last login: Mon\n"),
            BootState::Hang {
                last_job: None,
                prompt: None
            }
        );
    }

    #[test]
    fn emergency_panic_hang_and_silence() {
        let emergency = "[  OK  ] Reached target Local File Systems.\n\
            You are in emergency mode. After logging in, type \"journalctl -xb\" to view\n\
            Give root password for maintenance\n(or press Control-D to continue): ";
        assert_eq!(judge(emergency), BootState::Emergency);
        let panic = "[    2.1] Run /sbin/init as init process\n[    2.2] Kernel panic - not syncing: No working init found.  Try passing init= option to kernel.\n";
        assert_eq!(judge(panic), BootState::Panic);
        let hang = "[ ***  ] A start job is running for /dev/disk/by-uuid/5e1f0c2a (12s / 1min 30s)\n\
            [  *** ] A start job is running for dev-disk-by\\x2duuid-5e1f0c2a.device (1min 2s / 1min 30s)\n";
        assert_eq!(
            judge(hang),
            BootState::Hang {
                last_job: Some("dev-disk-by\\x2duuid-5e1f0c2a.device".into()),
                prompt: None
            }
        );
        // What a Debian guest without /etc/machine-id showed on its serial console.
        let firstboot = "         Starting \x1b[0;1;39msystemd-firstboot.service\x1b[0m - First Boot Wizard...\r\n\
            \r\n-- Press any key to proceed --[   18.820009] random: crng init done\r\n\
            [\x1b[0;1;31m TIME \x1b[0m] Timed out waiting for device \x1b[0;1;39mdev-ttyS0.device\x1b[0m - /dev/ttyS0.\r\n";
        match judge(firstboot) {
            BootState::Hang {
                prompt: Some(p), ..
            } => assert!(p.contains("systemd-firstboot"), "{p}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(judge(" \r\n "), BootState::NoOutput);
        // The latest word wins: an emergency shell after an earlier multi-user target.
        let later = format!(
            "{}\nYou are in emergency mode.\n",
            "Reached target Multi-User System"
        );
        assert_eq!(judge(&later), BootState::Emergency);
        assert_eq!(BootState::Booted.as_str(), "booted");
    }

    #[test]
    fn a_vm_that_ends_before_a_verdict_rebooted_or_powered_off() {
        let reboot = "Linux version 6.1.0-27-amd64\n[    2.1] reboot: Restarting system\n";
        assert_eq!(judge_ended(reboot), BootState::Reboot);
        assert_eq!(
            judge_ended(""),
            BootState::Reboot,
            "a reset before any output"
        );
        assert_eq!(
            judge_ended("Linux version 6.1.0\n[    3.0] reboot: Power down\n"),
            BootState::PowerOff
        );
        // A verdict the console shows stands, even when the VM then ended.
        let panic =
            "Linux version 6.1.0\nKernel panic - not syncing: VFS: Unable to mount root fs\n";
        assert_eq!(judge_ended(panic), BootState::Panic);
        assert_eq!(judge_ended(DEBIAN_LOGIN), BootState::Booted);
        assert_eq!(BootState::Reboot.as_str(), "reboot");
        assert_eq!(BootState::PowerOff.as_str(), "power_off");
        // The same console while the VM still runs is a hang, not a reboot.
        assert!(matches!(judge(reboot), BootState::Hang { .. }));
    }

    #[test]
    fn milestones_in_boot_order() {
        let console =
            "[    0.000000] Linux version 6.1.0-27-amd64 (debian-kernel@lists.debian.org)\n\
            Loading, please wait...\n\
            [    2.2] EXT4-fs (vda): mounted filesystem 3b1d0c6e with ordered data mode.\n\
            [    3.1] systemd[1]: systemd 252.31-1~deb12u1 running in system mode\n";
        assert_eq!(
            milestones(console),
            ["kernel", "initramfs", "root_mounted", "init"]
        );
        let booted = format!("{console}{DEBIAN_LOGIN}");
        assert_eq!(
            milestones(&booted),
            [
                "kernel",
                "initramfs",
                "root_mounted",
                "init",
                "multi_user",
                "login"
            ]
        );
        assert!(milestones("").is_empty());
    }
}
