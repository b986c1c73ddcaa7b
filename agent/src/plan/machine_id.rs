//! `/etc/machine-id`. Without one systemd takes the next boot for the machine's first:
//! `systemd-firstboot` waits at the console for a key press and the boot never finishes
//! unattended. The guest's own ID is put back where the guest kept a copy (D-Bus's
//! `/var/lib/dbus/machine-id`, the name of its journal directory); when `/etc` was lost and no
//! copy exists, a new random one is written. A file that is there (even empty or
//! `uninitialized`, the states images are shipped in on purpose) is left alone.

use vmrescue_discovery::osroot::Tree;

use super::{Action, Context, Plan};

pub const PATH: &str = "/etc/machine-id";
const DBUS: &str = "/var/lib/dbus/machine-id";
const JOURNAL: &str = "/var/log/journal";

/// A machine ID as systemd writes it: 32 lowercase hex digits, not all zero.
pub fn valid(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0')
}

/// The guest's own ID and where it was found.
fn own(root: &dyn Tree) -> Result<(String, String), Vec<String>> {
    if let Some(text) = root.read(DBUS, 64) {
        let id = String::from_utf8_lossy(&text).trim_end().to_owned();
        if valid(&id) {
            return Ok((id, format!("the guest's own ID, restored from {DBUS}")));
        }
    }
    let mut ids: Vec<String> = root
        .list(JOURNAL)
        .into_iter()
        .filter(|n| valid(n) && root.is_dir(&format!("{JOURNAL}/{n}")))
        .collect();
    ids.sort();
    match ids.len() {
        1 => {
            let id = ids.remove(0);
            let why = format!("the guest's own ID, the name of its journal {JOURNAL}/{id}");
            Ok((id, why))
        }
        _ => Err(ids),
    }
}

/// Plans `/etc/machine-id` when it is missing. `etc_lost`: the account files are gone too, so
/// the guest cannot have meant to boot as a new machine.
pub fn plan(root: &dyn Tree, ctx: &Context, etc_lost: bool, p: &mut Plan) {
    if root.exists(PATH) {
        return;
    }
    let (id, why) = match own(root) {
        Ok(found) => found,
        Err(several) if etc_lost && valid(ctx.fresh_machine_id) => {
            let mut why = String::from("a new random ID");
            if several.is_empty() {
                why.push_str(&format!(
                    " (the guest's own is in neither {DBUS} nor {JOURNAL})"
                ));
            } else {
                why.push_str(&format!(
                    " ({JOURNAL} holds {} machines' journals: {}; none chosen)",
                    several.len(),
                    several.join(", ")
                ));
            }
            why.push_str(
                ": its journal starts afresh, and DHCP servers keyed on it may give a new lease",
            );
            (ctx.fresh_machine_id.to_owned(), why)
        }
        Err(_) => {
            p.notes.push(format!(
                "{PATH} is missing: the guest's next boot is a first boot, and systemd-firstboot \
                 may wait at the console (write one with systemd-machine-id-setup)"
            ));
            return;
        }
    };
    p.push(
        Action::WriteFile {
            path: PATH.into(),
            content: format!("{id}\n").into_bytes(),
            mode: 0o444,
            uid: 0,
            gid: 0,
        },
        format!("{PATH} is missing (systemd would run its first-boot wizard): {why}"),
        true,
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::*;

    const FRESH: &str = "0123456789abcdef0123456789abcdef";
    const OWN: &str = "fedcba9876543210fedcba9876543210";

    fn planned(g: &Guest, etc_lost: bool) -> Plan {
        let fss = [];
        let mut ctx = super::super::testing::ctx(&fss, Some("debian"));
        ctx.fresh_machine_id = FRESH;
        let mut p = Plan::default();
        plan(&g.tree(), &ctx, etc_lost, &mut p);
        p
    }

    fn id(p: &Plan) -> Option<(String, &str)> {
        p.steps.iter().find_map(|s| match &s.action {
            Action::WriteFile { path, content, .. } if path == PATH => Some((
                String::from_utf8_lossy(content).into_owned(),
                s.why.as_str(),
            )),
            _ => None,
        })
    }

    #[test]
    fn the_guests_own_id_comes_back_first() {
        let g = Guest::new(&[
            ("/etc", None),
            ("/var/lib/dbus/machine-id", Some(&format!("{OWN}\n"))),
        ]);
        let p = planned(&g, true);
        let (content, why) = id(&p).unwrap();
        assert_eq!(content, format!("{OWN}\n"));
        assert!(why.contains(DBUS), "{why}");
        let g = Guest::new(&[
            ("/etc", None),
            (&format!("/var/log/journal/{OWN}"), None),
            ("/var/log/journal/not-an-id", None),
        ]);
        let p = planned(&g, true);
        let (content, why) = id(&p).unwrap();
        assert_eq!(content, format!("{OWN}\n"));
        assert!(why.contains("journal"), "{why}");
    }

    #[test]
    fn a_new_id_only_when_etc_was_lost_and_nothing_else_is_there() {
        let g = Guest::new(&[("/etc", None), ("/var/lib/dbus/machine-id", Some("junk\n"))]);
        let p = planned(&g, true);
        let (content, why) = id(&p).unwrap();
        assert_eq!(content, format!("{FRESH}\n"));
        assert!(why.contains("new random ID"), "{why}");
        let p = planned(&g, false);
        assert!(id(&p).is_none(), "a guest with its /etc is not given an ID");
        assert!(p.notes[0].contains("first boot"), "{:?}", p.notes);
        let two = format!("/var/log/journal/{FRESH}");
        let g = Guest::new(&[
            ("/etc", None),
            (&format!("/var/log/journal/{OWN}"), None),
            (&two, None),
        ]);
        let p = planned(&g, true);
        let (_, why) = id(&p).unwrap();
        assert!(why.contains("2 machines' journals"), "{why}");
    }

    #[test]
    fn an_existing_file_is_left_in_any_state() {
        for content in ["", "uninitialized\n", "garbage"] {
            let g = Guest::new(&[("/etc/machine-id", Some(content))]);
            let p = planned(&g, true);
            assert!(
                p.steps.is_empty() && p.notes.is_empty(),
                "{content:?}: {p:?}"
            );
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid(OWN));
        assert!(!valid(&"0".repeat(32)));
        assert!(!valid(&OWN.to_uppercase()));
        assert!(!valid(&OWN[1..]));
        assert!(!valid("../../../../etc/shadow0123456789ab"));
    }
}
