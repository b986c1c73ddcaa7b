//! The parts of a lost `/etc` rebuilt from the guest's own evidence ([`super::evidence`]) rather
//! than from defaults: the accounts its home directories show, with their groups and `sudo`
//! membership (its network configuration is [`super::network`]'s).

use vmrescue_discovery::osroot::Tree;

use super::{Action, Context, Plan};

/// The accounts the home directories found show, added to the rebuilt account files (and a
/// group named after each user whose group id no group has).
pub(super) fn add_accounts(root: &dyn Tree, ctx: &Context, rebuilt: &[&str], p: &mut Plan) {
    let text = |p: &Plan, name: &str| -> String {
        p.written(&format!("/etc/{name}"))
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default()
    };
    let new = super::evidence::accounts(
        &ctx.evidence.homes,
        &ctx.evidence.users,
        &text(p, "passwd"),
        &text(p, "group"),
        super::etc::shell(root),
        ctx.today,
    );
    if new.said.is_empty() {
        return;
    }
    // Who used sudo goes back into the sudo group (Debian's; `wheel` elsewhere).
    let admins: Vec<&(String, String)> = ctx
        .evidence
        .sudoers
        .iter()
        .filter(|(u, _)| new.passwd.lines().any(|l| l.split(':').next() == Some(u)))
        .collect();
    let admin_group = ["sudo", "wheel"].into_iter().find(|g| {
        text(p, "group")
            .lines()
            .any(|l| l.split(':').next() == Some(g))
    });
    let mut said = new.said.clone();
    if let (Some(g), false) = (admin_group, admins.is_empty()) {
        let names: Vec<&str> = admins.iter().map(|(u, _)| u.as_str()).collect();
        for name in ["group", "gshadow"]
            .into_iter()
            .filter(|n| rebuilt.contains(n))
        {
            let path = format!("/etc/{name}");
            if let Some(step) = p.steps.iter_mut().find(|s| s.action.path() == path) {
                if let Action::WriteFile { content, .. } = &mut step.action {
                    *content =
                        with_members(&String::from_utf8_lossy(content), g, &names).into_bytes();
                }
            }
        }
        for (u, log) in &admins {
            said.push(format!(
                "{u} in group {g} ({u} ran commands through sudo: {log})"
            ));
        }
    }
    let gshadow: String = new
        .group
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(|g| format!("{g}:!::\n"))
        .collect();
    let why = format!("; accounts from home directories: {}", said.join(", "));
    for (name, add) in [
        ("passwd", &new.passwd),
        ("group", &new.group),
        ("shadow", &new.shadow),
        ("gshadow", &gshadow),
    ] {
        let path = format!("/etc/{name}");
        let step = p.steps.iter_mut().find(|s| s.action.path() == path);
        if let (true, Some(step)) = (rebuilt.contains(&name) && !add.is_empty(), step) {
            if let Action::WriteFile { content, .. } = &mut step.action {
                content.extend_from_slice(add.as_bytes());
            }
            step.why.push_str(&why);
        }
    }
}

/// A group or gshadow file's text with `users` added to `group`'s member list (the last field).
fn with_members(text: &str, group: &str, users: &[&str]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut f: Vec<String> = line.split(':').map(str::to_owned).collect();
        if f.first().map(String::as_str) == Some(group) && f.len() >= 3 {
            let last = f.len() - 1;
            let mut members: Vec<String> = f[last]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            for u in users {
                if !members.iter().any(|m| m == u) {
                    members.push((*u).to_owned());
                }
            }
            f[last] = members.join(",");
        }
        out.push_str(&f.join(":"));
        out.push('\n');
    }
    out
}
