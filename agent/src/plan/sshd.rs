//! When `/etc` was lost on a guest with OpenSSH's server: what sshd needs to start again, so
//! the owner can get in the way cloud guests are reached. Its configuration from Debian's
//! pristine copy (`/usr/share/openssh/sshd_config`, which the package's own scripts install),
//! its privilege separation user (the package's scripts made it; the rebuilt account files
//! lack it and sshd refuses to start without it), and new host keys made by the guest's own
//! `ssh-keygen -A` once, at its next boot before sshd (the old keys were in `/etc`: clients
//! that knew the guest will be told its key changed, and the report says so).

use vmrescue_discovery::osroot::Tree;

use super::etc::MAX_ETC_FILE;
use super::{Action, Plan};

const PRISTINE: &str = "/usr/share/openssh/sshd_config";
const KEYGEN: &str = "/usr/bin/ssh-keygen";
pub const HOST_KEYS_UNIT: &str = "vmrescue-ssh-host-keys.service";

/// The unit that makes the host keys, once.
fn host_keys_unit() -> String {
    format!(
        "# Made by vmrescue: /etc was lost with the SSH host keys; new ones are made once,\n\
         # before sshd starts. Remove this file and its link afterwards if you like.\n\
         [Unit]\nDescription=SSH host keys made again after vmrescue rebuilt /etc\n\
         Before=ssh.service sshd.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n\
         [Service]\nType=oneshot\nExecStart={KEYGEN} -A\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// The planned content of `path`, when the plan writes it.
fn planned<'a>(p: &'a mut Plan, path: &str) -> Option<&'a mut Vec<u8>> {
    p.steps.iter_mut().find_map(|s| match &mut s.action {
        Action::WriteFile {
            path: at, content, ..
        } if at == path => Some(content),
        _ => None,
    })
}

/// The privilege separation user `sshd` added to the rebuilt passwd and shadow (a free
/// system uid, group nogroup), unless it has one.
fn privsep_user(p: &mut Plan, today: u64) {
    let Some(passwd) = planned(p, "/etc/passwd") else {
        return;
    };
    let text = String::from_utf8_lossy(passwd).into_owned();
    if text.lines().any(|l| l.starts_with("sshd:")) {
        return;
    }
    let used: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    let Some(uid) = (100..1000).find(|u| !used.contains(u)) else {
        return;
    };
    if !text.is_empty() && !text.ends_with('\n') {
        passwd.push(b'\n');
    }
    passwd
        .extend_from_slice(format!("sshd:x:{uid}:65534::/run/sshd:/usr/sbin/nologin\n").as_bytes());
    if let Some(shadow) = planned(p, "/etc/shadow") {
        if !shadow.is_empty() && !shadow.ends_with(b"\n") {
            shadow.push(b'\n');
        }
        shadow.extend_from_slice(format!("sshd:*:{today}:0:99999:7:::\n").as_bytes());
    }
    if let Some(step) = p
        .steps
        .iter_mut()
        .find(|s| s.action.path() == "/etc/passwd")
    {
        step.why.push_str(&format!(
            "; sshd's privilege separation user (uid {uid}), which its package made"
        ));
    }
}

pub fn plan(root: &dyn Tree, today: u64, p: &mut Plan) {
    let sshd = ["/usr/sbin/sshd", "/sbin/sshd"]
        .iter()
        .any(|f| root.exists(f));
    if !sshd || root.exists("/etc/ssh") {
        return;
    }
    let config = "/etc/ssh/sshd_config";
    match root.read(PRISTINE, MAX_ETC_FILE) {
        Some(content) if !p.has(config) => {
            p.parents(root, "/etc", "/ssh/sshd_config", "for sshd's configuration");
            p.push(
                Action::WriteFile {
                    path: config.into(),
                    content,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
                format!("{config} is missing: the distribution's default, copied from {PRISTINE}"),
                true,
            );
        }
        Some(_) => {}
        None => p.notes.push(format!(
            "/etc/ssh was lost and {PRISTINE} is not there: sshd has no configuration"
        )),
    }
    privsep_user(p, today);
    if !root.exists(KEYGEN) {
        p.notes.push(format!(
            "/etc/ssh was lost with the SSH host keys and {KEYGEN} is not there: sshd will not \
             start until host keys are made (`ssh-keygen -A`)"
        ));
        return;
    }
    let units = super::unit_links::UNIT_DIR;
    let unit = format!("{units}/{HOST_KEYS_UNIT}");
    let link = format!("{units}/multi-user.target.wants/{HOST_KEYS_UNIT}");
    if p.has(&unit) {
        return;
    }
    p.parents(
        root,
        "/etc",
        "/systemd/system/multi-user.target.wants/x",
        "for the unit that makes sshd's host keys",
    );
    p.push(
        Action::WriteFile {
            path: unit.clone(),
            content: host_keys_unit().into_bytes(),
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        "/etc/ssh was lost with the SSH host keys: new ones are made once at the next boot, \
         before sshd starts (clients that knew the guest will see its host key changed)",
        true,
    );
    p.push(
        Action::Symlink {
            path: link,
            target: unit,
        },
        format!("{HOST_KEYS_UNIT} runs at the next boot"),
        true,
    );
    p.notes.push(
        "/etc/ssh was lost: the guest makes new SSH host keys at its next boot, so SSH clients \
         that knew it will warn that its host key changed"
            .into(),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::*;

    fn with_accounts() -> Plan {
        let mut p = Plan::default();
        for (path, text) in [
            ("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/false\nsystemd-network:x:100:102::/:/bin/false\n"),
            ("/etc/shadow", "root:!:20000:0:99999:7:::\n"),
        ] {
            p.push(
                Action::WriteFile {
                    path: path.into(),
                    content: text.as_bytes().to_vec(),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
                "rebuilt",
                true,
            );
        }
        p
    }

    fn content(p: &Plan, path: &str) -> String {
        p.written(path)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default()
    }

    #[test]
    fn config_user_and_host_keys_for_a_lost_etc_ssh() {
        let g = Guest::new(&[
            ("/usr/sbin/sshd", Some("")),
            (KEYGEN, Some("")),
            (
                PRISTINE,
                Some("Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n"),
            ),
        ]);
        let mut p = with_accounts();
        plan(&g.tree(), 20_000, &mut p);
        assert_eq!(
            content(&p, "/etc/ssh/sshd_config"),
            "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n"
        );
        assert!(content(&p, "/etc/passwd")
            .ends_with("\nsshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n"));
        assert!(content(&p, "/etc/shadow").ends_with("\nsshd:*:20000:0:99999:7:::\n"));
        let unit = content(&p, "/etc/systemd/system/vmrescue-ssh-host-keys.service");
        assert!(
            unit.contains("Before=ssh.service")
                && unit.contains("ExecStart=/usr/bin/ssh-keygen -A\n"),
            "{unit}"
        );
        let made: Vec<String> = p.steps.iter().map(|s| s.action.path().to_owned()).collect();
        for dir in [
            "/etc/ssh",
            "/etc/systemd",
            "/etc/systemd/system",
            "/etc/systemd/system/multi-user.target.wants",
        ] {
            let at = made
                .iter()
                .position(|m| m == dir)
                .unwrap_or_else(|| panic!("{dir} in {made:?}"));
            assert!(at < made.len() - 1);
        }
        assert!(made.contains(
            &"/etc/systemd/system/multi-user.target.wants/vmrescue-ssh-host-keys.service"
                .to_owned()
        ));
        assert!(p.notes.iter().any(|n| n.contains("host key changed")));
    }

    #[test]
    fn nothing_without_sshd_or_with_etc_ssh_and_no_second_user() {
        let g = Guest::new(&[(KEYGEN, Some(""))]);
        let mut p = with_accounts();
        plan(&g.tree(), 20_000, &mut p);
        assert_eq!(p.steps.len(), 2);
        let g = Guest::new(&[
            ("/usr/sbin/sshd", Some("")),
            ("/etc/ssh/sshd_config", Some("")),
        ]);
        plan(&g.tree(), 20_000, &mut p);
        assert_eq!(p.steps.len(), 2);
        // A passwd with sshd already keeps its one line; no keygen, no unit, and a note.
        let g = Guest::new(&[("/usr/sbin/sshd", Some(""))]);
        let mut p = with_accounts();
        if let Some(c) = planned(&mut p, "/etc/passwd") {
            c.extend_from_slice(b"sshd:x:104:65534::/run/sshd:/usr/sbin/nologin\n");
        }
        plan(&g.tree(), 20_000, &mut p);
        assert_eq!(
            content(&p, "/etc/passwd")
                .lines()
                .filter(|l| l.starts_with("sshd:"))
                .count(),
            1
        );
        assert!(!p.has("/etc/systemd/system/vmrescue-ssh-host-keys.service"));
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    }
}
