//! When `/etc` was lost: the PAM configuration nobody can log in without (login, su and sshd
//! all ask PAM, and PAM refuses everything without its files). Debian keeps what builds it
//! outside `/etc`: the templates of the `common-*` files (`/usr/share/pam`) and a profile per
//! module package (`/usr/share/pam-configs`); `pam-auth-update` fills the templates from the
//! profiles enabled by default. That is done here the same way (pure), and `/etc/pam.d/other`,
//! the fallback of every service whose own file was lost, includes them.

use vmrescue_discovery::osroot::Tree;

use super::etc::MAX_ETC_FILE;
use super::{Action, Plan};

const TEMPLATES: &str = "/usr/share/pam";
const PROFILES: &str = "/usr/share/pam-configs";
/// Profiles read at most.
const MAX_PROFILES: usize = 64;

/// One profile: its name and its fields (`Auth-Type`, `Auth`, ...; a multi-line field's lines).
#[derive(Debug, Default)]
struct Profile {
    name: String,
    fields: Vec<(String, Vec<String>)>,
}

impl Profile {
    fn parse(name: &str, text: &str) -> Profile {
        let mut p = Profile {
            name: name.to_owned(),
            fields: Vec::new(),
        };
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, lines)) = p.fields.last_mut() {
                    if !line.trim().is_empty() {
                        lines.push(line.trim_start().to_owned());
                    }
                }
            } else if let Some((key, value)) = line.split_once(':') {
                let value = value.trim();
                let lines = if value.is_empty() {
                    vec![]
                } else {
                    vec![value.to_owned()]
                };
                p.fields.push((key.trim().to_owned(), lines));
            }
        }
        p
    }

    fn field(&self, key: &str) -> Option<&[String]> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.field(key)?.first().map(String::as_str)
    }

    fn priority(&self) -> i64 {
        self.value("Priority")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// The lines `kind` (`Auth`, `Session`, ...) of the profiles of `class` (`Primary`,
/// `Additional`), in order; `first`/`last`: whether the block begins or ends the stack (a
/// profile's `-Initial` and `-Final` lines are for those places).
fn block(
    profiles: &[&Profile],
    kind: &str,
    class: &str,
    interactive: bool,
    first: bool,
    last: bool,
) -> Vec<String> {
    let chosen: Vec<&&Profile> = profiles
        .iter()
        .filter(|p| p.value(&format!("{kind}-Type")) == Some(class))
        .filter(|p| interactive || p.value(&format!("{kind}-Interactive-Only")) != Some("yes"))
        .collect();
    let n = chosen.len();
    let mut out = Vec::new();
    for (i, p) in chosen.iter().enumerate() {
        let mut order = Vec::new();
        if first && i == 0 {
            order.push(format!("{kind}-Initial"));
        }
        if last && i + 1 == n {
            order.push(format!("{kind}-Final"));
        }
        order.extend([
            kind.to_owned(),
            format!("{kind}-Final"),
            format!("{kind}-Initial"),
        ]);
        if let Some(lines) = order.iter().find_map(|k| p.field(k)) {
            out.extend(lines.iter().cloned());
        }
    }
    out
}

/// A `common-*` file: the template with its `$..._primary` and `$..._additional` lines
/// filled from `profiles` for `kind`, as pam-auth-update fills it.
fn fill(template: &str, profiles: &[&Profile], kind: &str, interactive: bool) -> String {
    let word = kind.to_ascii_lowercase();
    let primary = block(profiles, kind, "Primary", interactive, true, false);
    let additional = block(
        profiles,
        kind,
        "Additional",
        interactive,
        primary.is_empty(),
        true,
    );
    let mut out = String::new();
    for line in template.lines() {
        let t = line.trim();
        if t.starts_with('$') && t.ends_with("_primary") {
            if primary.is_empty() {
                // Nothing to jump over: on to the permit that follows the deny.
                out.push_str(&format!("{word}\t[default=1]\t\t\tpam_permit.so\n"));
            }
            let n = primary.len();
            for (i, l) in primary.iter().enumerate() {
                // `end` is past the primary block and the deny after it.
                let l = l.replace("=end", &format!("={}", n - i));
                out.push_str(&format!("{word}\t{l}\n"));
            }
        } else if t.starts_with('$') && t.ends_with("_additional") {
            for l in &additional {
                out.push_str(&format!("{word}\t{l}\n"));
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Plans `/etc/pam.d` when the guest has none and has Debian's templates and profiles.
pub fn plan(root: &dyn Tree, p: &mut Plan) {
    if root.exists("/etc/pam.d") || p.has("/etc/pam.d") {
        return;
    }
    let mut names = root.list(PROFILES);
    names.sort();
    let profiles: Vec<Profile> = names
        .iter()
        .take(MAX_PROFILES)
        .filter_map(|n| {
            let text = root.read(&format!("{PROFILES}/{n}"), MAX_ETC_FILE)?;
            Some(Profile::parse(n, &String::from_utf8_lossy(&text)))
        })
        .collect();
    let mut enabled: Vec<&Profile> = profiles
        .iter()
        .filter(|p| p.value("Default") == Some("yes"))
        .collect();
    enabled.sort_by(|a, b| b.priority().cmp(&a.priority()).then(a.name.cmp(&b.name)));
    let files = [
        ("common-auth", "Auth", true),
        ("common-account", "Account", true),
        ("common-password", "Password", true),
        ("common-session", "Session", true),
        ("common-session-noninteractive", "Session", false),
    ];
    let mut made = Vec::new();
    for (file, kind, interactive) in files {
        let Some(template) = root.read(&format!("{TEMPLATES}/{file}"), MAX_ETC_FILE) else {
            continue;
        };
        let text = fill(
            &String::from_utf8_lossy(&template),
            &enabled,
            kind,
            interactive,
        );
        made.push((file, text));
    }
    // Without the password and account stacks nobody gets in: rebuild all or nothing.
    if made.len() != files.len() || enabled.is_empty() {
        return;
    }
    p.push(
        Action::MakeDir {
            path: "/etc/pam.d".into(),
            mode: 0o755,
        },
        "for the guest's PAM configuration",
        false,
    );
    let used: Vec<&str> = enabled.iter().map(|p| p.name.as_str()).collect();
    for (file, text) in made {
        let path = format!("/etc/pam.d/{file}");
        p.push(
            Action::WriteFile {
                path: path.clone(),
                content: text.into_bytes(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            format!(
                "{path} is missing: rebuilt as pam-auth-update builds it, from \
                 {TEMPLATES}/{file} and the profiles enabled by default in {PROFILES} ({})",
                used.join(", ")
            ),
            true,
        );
    }
    p.push(
        Action::WriteFile {
            path: "/etc/pam.d/other".into(),
            content: b"# Rebuilt by vmrescue: every service whose own PAM file was lost uses the common files.\n\
                       @include common-auth\n@include common-account\n@include common-password\n@include common-session\n"
                .to_vec(),
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        "/etc/pam.d/other is missing: the fallback of every service without its own file (the \
         lost login, su and sshd files among them), including the common files",
        true,
    );
    p.notes.push(
        "/etc/pam.d was lost: the common files and `other` are rebuilt; each service's own file \
         (login, su, sshd, ...) comes back with its package (`apt-get install --reinstall`)"
            .into(),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::Guest;
    use super::*;

    const UNIX: &str = "Name: Unix authentication\nDefault: yes\nPriority: 256\nAuth-Type: Primary\nAuth:\n\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass\nAuth-Initial:\n\t[success=end default=ignore]\tpam_unix.so nullok\nAccount-Type: Primary\nAccount:\n\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so\nAccount-Initial:\n\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so\nSession-Type: Additional\nSession:\n\trequired\tpam_unix.so\nSession-Initial:\n\trequired\tpam_unix.so\nPassword-Type: Primary\nPassword:\n\t[success=end default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\nPassword-Initial:\n\t[success=end default=ignore]\tpam_unix.so obscure yescrypt\n";
    const SYSTEMD: &str = "Name: Register user sessions\nDefault: yes\nPriority: 0\nSession-Interactive-Only: yes\nSession-Type: Additional\nSession:\n\toptional\tpam_systemd.so\n";
    const CAP: &str = "Name: Capabilities\nDefault: yes\nPriority: 0\nAuth-Type: Additional\nAuth-Final:\n\toptional\t\t\tpam_cap.so\n";
    const MKHOME: &str = "Name: Create home\nDefault: no\nPriority: 0\nSession-Type: Additional\nSession:\n\toptional\tpam_mkhomedir.so\n";

    fn template(kind: &str) -> String {
        format!(
            "# header\n${kind}_primary\n{w}\trequisite\t\t\tpam_deny.so\n{w}\trequired\t\t\tpam_permit.so\n${kind}_additional\n# end\n",
            w = kind.split('_').next().unwrap()
        )
    }

    fn guest() -> Guest {
        let t = |k: &str| template(k);
        let files = [
            ("common-auth", t("auth")),
            ("common-account", t("account")),
            ("common-password", t("password")),
            ("common-session", t("session")),
            ("common-session-noninteractive", t("session_nonint")),
        ];
        let mut entries: Vec<(String, String)> = files
            .iter()
            .map(|(f, text)| (format!("/usr/share/pam/{f}"), text.clone()))
            .collect();
        for (n, text) in [
            ("unix", UNIX),
            ("systemd", SYSTEMD),
            ("capability", CAP),
            ("mkhomedir", MKHOME),
        ] {
            entries.push((format!("/usr/share/pam-configs/{n}"), text.into()));
        }
        let refs: Vec<(&str, Option<&str>)> = entries
            .iter()
            .map(|(p, t)| (p.as_str(), Some(t.as_str())))
            .collect();
        Guest::new(&refs)
    }

    fn planned(g: &Guest) -> Plan {
        let mut p = Plan::default();
        plan(&g.tree(), &mut p);
        p
    }

    fn file(p: &Plan, path: &str) -> String {
        p.written(path)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_else(|| panic!("{path} not planned"))
    }

    #[test]
    fn common_files_as_pam_auth_update_makes_them_on_debian() {
        let p = planned(&guest());
        assert_eq!(
            file(&p, "/etc/pam.d/common-auth"),
            "# header\nauth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\nauth\toptional\t\t\tpam_cap.so\n# end\n"
        );
        assert!(file(&p, "/etc/pam.d/common-account").contains(
            "account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\naccount\trequisite"
        ));
        assert!(file(&p, "/etc/pam.d/common-password")
            .contains("password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n"));
        assert_eq!(
            file(&p, "/etc/pam.d/common-session"),
            "# header\nsession\t[default=1]\t\t\tpam_permit.so\nsession\trequisite\t\t\tpam_deny.so\nsession\trequired\t\t\tpam_permit.so\nsession\trequired\tpam_unix.so\nsession\toptional\tpam_systemd.so\n# end\n"
        );
        // The non-interactive sessions leave out what only interactive ones want.
        let nonint = file(&p, "/etc/pam.d/common-session-noninteractive");
        assert!(
            nonint.contains("session\trequired\tpam_unix.so\n# end"),
            "{nonint}"
        );
        assert!(!nonint.contains("pam_systemd") && !nonint.contains("pam_mkhomedir"));
        assert!(file(&p, "/etc/pam.d/other").contains("@include common-auth\n"));
        assert!(p
            .steps
            .iter()
            .all(|s| s.review || s.action.path() == "/etc/pam.d"));
    }

    #[test]
    fn two_primary_modules_jump_past_each_other() {
        let profiles = [
            Profile::parse("unix", UNIX),
            Profile::parse(
                "sss",
                "Default: yes\nPriority: 128\nAuth-Type: Primary\nAuth:\n\t[success=end default=ignore]\tpam_sss.so use_first_pass\n",
            ),
        ];
        let refs: Vec<&Profile> = profiles.iter().collect();
        let text = fill(&template("auth"), &refs, "Auth", true);
        assert!(text.contains(
            "auth\t[success=2 default=ignore]\tpam_unix.so nullok\nauth\t[success=1 default=ignore]\tpam_sss.so use_first_pass\nauth\trequisite"
        ), "{text}");
    }

    #[test]
    fn nothing_without_the_templates_or_when_pam_d_is_there() {
        let g = Guest::new(&[("/usr/share/pam-configs/unix", Some(UNIX))]);
        assert!(planned(&g).steps.is_empty());
        let g = guest();
        std::fs::create_dir_all(g.dir.path().join("etc/pam.d")).unwrap();
        assert!(planned(&g).steps.is_empty());
    }
}
