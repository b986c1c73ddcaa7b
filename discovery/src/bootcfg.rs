//! How a guest boots itself: its boot loader's default entry (GRUB's `grub.cfg`, or Boot Loader
//! Specification entries under `/boot/loader/entries` as RHEL and Fedora use them), else the
//! newest kernel in `/boot`. Pure over a [`Tree`] of the guest's root (with its `/boot`): the
//! rescue reports what it found so the host can boot the guest's own kernel to prove a repair.
//! Everything read is guest-written: bounded reads, bounded entries, paths clamped to the root.

use crate::osroot::Tree;
use crate::path::clamp_at_root;
use vmrescue_protocol::BootMethod;

/// Bytes of a boot configuration read at most.
const MAX_CONFIG: usize = 1 << 20;
/// Menu entries (or BLS files) looked at at most.
const MAX_ENTRIES: usize = 256;
/// A kernel command line longer than this is not one (x86's COMMAND_LINE_SIZE is 2048).
const MAX_CMDLINE: usize = 2048;

/// What the guest boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// Where it was found: `grub`, `bls` or `newest_kernel`.
    pub method: BootMethod,
    /// The entry's title, when it has one.
    pub title: Option<String>,
    /// The kernel, as a path in the root's tree (`/boot/vmlinuz-6.1.0-27-amd64`).
    pub kernel: String,
    /// The initramfs (the last one an entry names: the others are CPU microcode), if any.
    pub initrd: Option<String>,
    /// The entry's kernel command line (GRUB variables left out).
    pub cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootCfgError {
    #[error("no kernel found: no usable GRUB or BLS entry and no vmlinuz-* in /boot")]
    NoKernel,
    #[error("the default boot entry {entry:?} names kernel {kernel}, which is not on the root or its /boot (a /boot the rescue could not read?)")]
    KernelMissing { entry: String, kernel: String },
}

/// The guest's default boot entry. `root_uuid`: the root filesystem's UUID, for a command
/// line when only a kernel was found.
pub fn find(tree: &dyn Tree, root_uuid: Option<&str>) -> Result<BootEntry, BootCfgError> {
    let grubenv = read_text(tree, "/boot/grub/grubenv")
        .or_else(|| read_text(tree, "/boot/grub2/grubenv"))
        .map(|t| parse_grubenv(&t))
        .unwrap_or_default();
    for cfg in ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"] {
        let Some(text) = read_text(tree, cfg) else {
            continue;
        };
        if uses_blscfg(&text) {
            if let Some(e) = from_bls(tree, &grubenv) {
                return resolve(tree, e);
            }
        }
        let menu = parse_grub(&text);
        if let Some(e) = grub_default(&menu, &text, &grubenv) {
            return resolve(tree, e);
        }
    }
    if let Some(e) = from_bls(tree, &grubenv) {
        return resolve(tree, e);
    }
    newest_kernel(tree, root_uuid).ok_or(BootCfgError::NoKernel)
}

/// The entry with its paths found in the tree: as written, or under `/boot` (GRUB on a
/// separate /boot names `/vmlinuz-...` relative to that filesystem).
fn resolve(tree: &dyn Tree, mut e: BootEntry) -> Result<BootEntry, BootCfgError> {
    let find = |p: &str| -> Option<String> {
        let p = clamp_at_root(p);
        [p.clone(), clamp_at_root(&format!("/boot{p}"))]
            .into_iter()
            .find(|c| tree.exists(c) && !tree.is_dir(c))
    };
    let Some(kernel) = find(&e.kernel) else {
        return Err(BootCfgError::KernelMissing {
            entry: e.title.clone().unwrap_or_else(|| e.method.to_string()),
            kernel: e.kernel,
        });
    };
    e.kernel = kernel;
    e.initrd = e.initrd.as_deref().and_then(find);
    Ok(e)
}

fn read_text(tree: &dyn Tree, path: &str) -> Option<String> {
    tree.read(path, MAX_CONFIG)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `KEY=VALUE` lines of GRUB's environment block (the `#` padding ignored).
pub fn parse_grubenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .take(MAX_ENTRIES)
        .collect()
}

fn env<'a>(grubenv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    grubenv
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn uses_blscfg(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "blscfg")
}

/// A `grub.cfg` menu: entries and submenus in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Entry {
        title: String,
        id: Option<String>,
        linux: Option<(String, String)>,
        initrd: Option<String>,
    },
    Submenu {
        title: String,
        id: Option<String>,
        items: Vec<Item>,
    },
}

/// The words of a GRUB script line: quotes removed, `\` escapes kept literal.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '#') if !any => break,
            (None, ' ' | '\t') => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                any = true;
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Parses the menu of a `grub.cfg` (line by line, as grub-mkconfig writes them).
pub fn parse_grub(text: &str) -> Vec<Item> {
    // A stack of open submenus; the entry being read.
    let mut stack: Vec<(String, Option<String>, Vec<Item>)> =
        vec![(String::new(), None, Vec::new())];
    let mut entry: Option<Item> = None;
    let mut depth_in_entry = 0usize;
    let mut count = 0usize;
    for line in text.lines() {
        let w = words(line.trim());
        let Some(first) = w.first().map(String::as_str) else {
            continue;
        };
        if let Some(Item::Entry { linux, initrd, .. }) = entry.as_mut() {
            match first {
                "linux" | "linuxefi" | "linux16" | "kernel" if w.len() >= 2 => {
                    let args: Vec<&str> = w[2..]
                        .iter()
                        .map(String::as_str)
                        .filter(|a| !a.contains('$'))
                        .collect();
                    *linux = Some((w[1].clone(), args.join(" ")));
                }
                "initrd" | "initrdefi" | "initrd16" if w.len() >= 2 => {
                    *initrd = w[1..].iter().rfind(|a| !a.contains('$')).cloned();
                }
                "}" if depth_in_entry == 0 => {
                    if let (Some(e), Some(top)) = (entry.take(), stack.last_mut()) {
                        top.2.push(e);
                    }
                }
                _ => {
                    depth_in_entry += line.matches('{').count();
                    depth_in_entry = depth_in_entry.saturating_sub(line.matches('}').count());
                }
            }
            continue;
        }
        match first {
            "menuentry" | "submenu" if count < MAX_ENTRIES => {
                count += 1;
                let title = w.get(1).cloned().unwrap_or_default();
                let id = w
                    .iter()
                    .position(|x| x == "--id" || x == "$menuentry_id_option")
                    .and_then(|i| w.get(i + 1).cloned())
                    .or_else(|| {
                        w.iter()
                            .find_map(|x| x.strip_prefix("--id=").map(str::to_owned))
                    });
                if first == "menuentry" {
                    entry = Some(Item::Entry {
                        title,
                        id,
                        linux: None,
                        initrd: None,
                    });
                    depth_in_entry = 0;
                } else {
                    stack.push((title, id, Vec::new()));
                }
            }
            "}" if stack.len() > 1 => {
                if let Some((title, id, items)) = stack.pop() {
                    if let Some(top) = stack.last_mut() {
                        top.2.push(Item::Submenu { title, id, items });
                    }
                }
            }
            _ => {}
        }
    }
    while stack.len() > 1 {
        if let Some((title, id, items)) = stack.pop() {
            if let Some(top) = stack.last_mut() {
                top.2.push(Item::Submenu { title, id, items });
            }
        }
    }
    stack.pop().map(|s| s.2).unwrap_or_default()
}

/// The `set default=` GRUB would use: a literal one, or `${saved_entry}` from grubenv.
fn default_setting(text: &str, grubenv: &[(String, String)]) -> String {
    let mut literal = None;
    let mut saved = false;
    for line in text.lines() {
        let w = words(line.trim());
        if w.first().map(String::as_str) != Some("set") {
            continue;
        }
        if let Some(v) = w.get(1).and_then(|a| a.strip_prefix("default=")) {
            if v.contains("${saved_entry}") || v == "$saved_entry" {
                saved = true;
            } else if !v.contains('$') && literal.is_none() {
                literal = Some(v.to_owned());
            }
        }
    }
    if saved {
        if let Some(s) = env(grubenv, "saved_entry") {
            return s.to_owned();
        }
    }
    literal.unwrap_or_else(|| "0".into())
}

fn grub_default(menu: &[Item], text: &str, grubenv: &[(String, String)]) -> Option<BootEntry> {
    let want = default_setting(text, grubenv);
    let mut items = menu;
    let parts: Vec<&str> = want.split('>').collect();
    for (i, part) in parts.iter().enumerate() {
        let found = match part.parse::<usize>() {
            Ok(n) => items.get(n),
            Err(_) => items.iter().find(|it| {
                let (t, id) = match it {
                    Item::Entry { title, id, .. } | Item::Submenu { title, id, .. } => (title, id),
                };
                t == part || id.as_deref() == Some(part)
            }),
        };
        // GRUB falls back to the first entry when the default names none.
        let found = found.or_else(|| if i == 0 { items.first() } else { None })?;
        match found {
            Item::Entry {
                title,
                linux: Some((kernel, args)),
                initrd,
                ..
            } if i + 1 == parts.len() => {
                return Some(BootEntry {
                    method: BootMethod::Grub,
                    title: Some(title.clone()),
                    kernel: kernel.clone(),
                    initrd: initrd.clone(),
                    cmdline: bounded(args),
                })
            }
            Item::Submenu { items: sub, .. } => {
                items = sub;
                if i + 1 == parts.len() {
                    // A submenu as the default boots its first entry.
                    return grub_default(sub, "", &[]);
                }
            }
            _ => return None,
        }
    }
    None
}

fn bounded(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_CMDLINE {
        return s.to_owned();
    }
    let mut end = MAX_CMDLINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// One BLS entry file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlsEntry {
    pub id: String,
    pub title: Option<String>,
    pub version: Option<String>,
    pub linux: Option<String>,
    pub initrd: Option<String>,
    pub options: String,
}

pub fn parse_bls(id: &str, text: &str) -> BlsEntry {
    let mut e = BlsEntry {
        id: id.to_owned(),
        ..Default::default()
    };
    let mut options = Vec::new();
    for line in text.lines().take(1000) {
        let line = line.trim();
        let (k, v) = line.split_once([' ', '\t']).unwrap_or((line, ""));
        let v = v.trim();
        match k {
            "title" => e.title = Some(v.to_owned()),
            "version" => e.version = Some(v.to_owned()),
            "linux" => e.linux = Some(v.to_owned()),
            "initrd" => e.initrd = Some(v.to_owned()),
            "options" => options.push(v.to_owned()),
            _ => {}
        }
    }
    e.options = options.join(" ");
    e
}

fn from_bls(tree: &dyn Tree, grubenv: &[(String, String)]) -> Option<BootEntry> {
    let dir = "/boot/loader/entries";
    let mut entries: Vec<BlsEntry> = tree
        .list(dir)
        .into_iter()
        .filter_map(|n| n.strip_suffix(".conf").map(str::to_owned))
        .take(MAX_ENTRIES)
        .filter_map(|id| {
            let text = read_text(tree, &format!("{dir}/{id}.conf"))?;
            Some(parse_bls(&id, &text))
        })
        .filter(|e| e.linux.is_some())
        .collect();
    if entries.is_empty() {
        return None;
    }
    let chosen =
        match env(grubenv, "saved_entry").and_then(|s| entries.iter().position(|e| e.id == s)) {
            Some(i) => entries.swap_remove(i),
            None => {
                entries.sort_by(|a, b| {
                    version_cmp(
                        a.version.as_deref().unwrap_or(&a.id),
                        b.version.as_deref().unwrap_or(&b.id),
                    )
                });
                entries.pop()?
            }
        };
    let kernelopts = env(grubenv, "kernelopts").unwrap_or("");
    let options: Vec<String> = chosen
        .options
        .split_whitespace()
        .flat_map(|w| {
            if w == "$kernelopts" {
                kernelopts.split_whitespace().map(str::to_owned).collect()
            } else if w.contains('$') {
                Vec::new()
            } else {
                vec![w.to_owned()]
            }
        })
        .collect();
    Some(BootEntry {
        method: BootMethod::Bls,
        title: chosen.title,
        kernel: chosen.linux?,
        initrd: chosen.initrd.and_then(|i| {
            i.split_whitespace()
                .rfind(|w| !w.contains('$'))
                .map(str::to_owned)
        }),
        cmdline: bounded(&options.join(" ")),
    })
}

/// Compares version strings the way people read them: digit runs as numbers
/// (`6.1.0-27` after `6.1.0-9`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let (xt, yt) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                xt.len().cmp(&yt.len()).then(xt.cmp(yt))
            }
            _ => x.1.cmp(y.1),
        };
        if o.is_ne() {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The newest `/boot/vmlinuz-VERSION` with its `initrd.img-VERSION` (Debian, Ubuntu) or
/// `initramfs-VERSION.img` (RHEL, Arch, Alpine).
fn newest_kernel(tree: &dyn Tree, root_uuid: Option<&str>) -> Option<BootEntry> {
    let names = tree.list("/boot");
    let version = names
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .filter(|v| !v.is_empty() && !v.ends_with(".old") && !v.contains("rescue"))
        .max_by(|a, b| version_cmp(a, b))?
        .to_owned();
    let initrd = [
        format!("initrd.img-{version}"),
        format!("initramfs-{version}.img"),
        format!("initramfs-{version}"),
    ]
    .into_iter()
    .find(|n| names.contains(n))
    .map(|n| format!("/boot/{n}"));
    let mut cmdline = String::new();
    if let Some(u) = root_uuid.filter(|u| u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')) {
        cmdline = format!("root=UUID={u} ro");
    }
    Some(BootEntry {
        method: BootMethod::NewestKernel,
        title: None,
        kernel: format!("/boot/vmlinuz-{version}"),
        initrd,
        cmdline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osroot::tests::FakeTree;

    /// grub-mkconfig's output on Debian 12 (abridged: the same structure and lines).
    const DEBIAN_GRUB: &str = r#"
if [ -s $prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="0"
fi
### BEGIN /etc/grub.d/10_linux ###
function gfxmode {
	set gfxpayload="${1}"
}
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple-3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab' {
	load_video
	insmod gzio
	if [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
	insmod part_msdos
	insmod ext2
	search --no-floppy --fs-uuid --set=root 3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab
	echo	'Loading Linux 6.1.0-27-amd64 ...'
	linux	/boot/vmlinuz-6.1.0-27-amd64 root=UUID=3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab ro  quiet
	echo	'Loading initial ramdisk ...'
	initrd	/boot/initrd.img-6.1.0-27-amd64
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab' {
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-27-amd64' --class debian $menuentry_id_option 'gnulinux-6.1.0-27-amd64-advanced-3c2a' {
		linux	/boot/vmlinuz-6.1.0-27-amd64 root=UUID=3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab ro  quiet
		initrd	/boot/initrd.img-6.1.0-27-amd64
	}
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-9-amd64' --class debian $menuentry_id_option 'gnulinux-6.1.0-9-amd64-advanced-3c2a' {
		linux	/boot/vmlinuz-6.1.0-9-amd64 root=UUID=3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab ro  quiet
		initrd	/boot/initrd.img-6.1.0-9-amd64
	}
}
"#;

    fn debian_tree(extra: &[(&str, Option<&str>)]) -> FakeTree {
        let mut t = FakeTree::with(&[
            ("/boot", None),
            ("/boot/grub", None),
            ("/boot/grub/grub.cfg", Some(DEBIAN_GRUB)),
            ("/boot/vmlinuz-6.1.0-27-amd64", Some("k27")),
            ("/boot/initrd.img-6.1.0-27-amd64", Some("i27")),
            ("/boot/vmlinuz-6.1.0-9-amd64", Some("k9")),
            ("/boot/initrd.img-6.1.0-9-amd64", Some("i9")),
        ]);
        for (p, c) in extra {
            t.0.insert(p.to_string(), c.map(|s| s.as_bytes().to_vec()));
        }
        t
    }

    #[test]
    fn debians_default_grub_entry() {
        let e = find(&debian_tree(&[]), None).unwrap();
        assert_eq!(e.method, BootMethod::Grub);
        assert_eq!(e.title.as_deref(), Some("Debian GNU/Linux"));
        assert_eq!(e.kernel, "/boot/vmlinuz-6.1.0-27-amd64");
        assert_eq!(e.initrd.as_deref(), Some("/boot/initrd.img-6.1.0-27-amd64"));
        assert_eq!(
            e.cmdline,
            "root=UUID=3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab ro quiet"
        );
    }

    #[test]
    fn a_saved_or_numbered_default_in_a_submenu() {
        let cfg = DEBIAN_GRUB.replace("set default=\"0\"", "set default=\"1>1\"");
        let t = debian_tree(&[("/boot/grub/grub.cfg", Some(&cfg))]);
        assert_eq!(
            find(&t, None).unwrap().kernel,
            "/boot/vmlinuz-6.1.0-9-amd64"
        );
        let cfg = DEBIAN_GRUB.replace("set default=\"0\"", "set default=\"${saved_entry}\"");
        let env = "# GRUB Environment Block\nsaved_entry=gnulinux-advanced-3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab>gnulinux-6.1.0-9-amd64-advanced-3c2a\n#####";
        let t = debian_tree(&[
            ("/boot/grub/grub.cfg", Some(&cfg)),
            ("/boot/grub/grubenv", Some(env)),
        ]);
        let e = find(&t, None).unwrap();
        assert_eq!(
            e.title.as_deref(),
            Some("Debian GNU/Linux, with Linux 6.1.0-9-amd64")
        );
    }

    #[test]
    fn a_separate_boot_names_paths_relative_to_it() {
        let cfg = DEBIAN_GRUB
            .replace("/boot/vmlinuz", "/vmlinuz")
            .replace("/boot/initrd", "/initrd");
        let e = find(&debian_tree(&[("/boot/grub/grub.cfg", Some(&cfg))]), None).unwrap();
        assert_eq!(e.kernel, "/boot/vmlinuz-6.1.0-27-amd64");
        assert_eq!(e.initrd.as_deref(), Some("/boot/initrd.img-6.1.0-27-amd64"));
        // The kernel not there (a /boot the rescue could not read): said, with the path.
        let t = FakeTree::with(&[("/boot", None), ("/boot/grub/grub.cfg", Some(&cfg))]);
        let err = find(&t, None).unwrap_err();
        assert!(err.to_string().contains("/vmlinuz-6.1.0-27-amd64"), "{err}");
    }

    #[test]
    fn rhel_bls_entries_with_kernelopts() {
        let t = FakeTree::with(&[
            ("/boot", None),
            ("/boot/grub2/grub.cfg", Some("set default=\"${saved_entry}\"\nload_env -f ${config_directory}/grubenv\nblscfg\n")),
            ("/boot/grub2/grubenv", Some("saved_entry=\nkernelopts=root=/dev/mapper/rhel-root ro crashkernel=auto resume=/dev/mapper/rhel-swap\n")),
            ("/boot/loader", None),
            ("/boot/loader/entries", None),
            ("/boot/loader/entries/8f2e-5.14.0-70.13.1.el9_0.x86_64.conf", Some("title Red Hat Enterprise Linux (5.14.0-70.13.1.el9_0.x86_64) 9.0 (Plow)\nversion 5.14.0-70.13.1.el9_0.x86_64\nlinux /vmlinuz-5.14.0-70.13.1.el9_0.x86_64\ninitrd /initramfs-5.14.0-70.13.1.el9_0.x86_64.img $tuned_initrd\noptions $kernelopts $tuned_params\ngrub_users $grub_users\n")),
            ("/boot/loader/entries/8f2e-5.14.0-162.6.1.el9_1.x86_64.conf", Some("title Red Hat Enterprise Linux (5.14.0-162.6.1.el9_1.x86_64) 9.1 (Plow)\nversion 5.14.0-162.6.1.el9_1.x86_64\nlinux /vmlinuz-5.14.0-162.6.1.el9_1.x86_64\ninitrd /initramfs-5.14.0-162.6.1.el9_1.x86_64.img\noptions root=/dev/mapper/rhel-root ro\n")),
            ("/boot/vmlinuz-5.14.0-70.13.1.el9_0.x86_64", Some("k")),
            ("/boot/vmlinuz-5.14.0-162.6.1.el9_1.x86_64", Some("k")),
            ("/boot/initramfs-5.14.0-162.6.1.el9_1.x86_64.img", Some("i")),
            ("/boot/initramfs-5.14.0-70.13.1.el9_0.x86_64.img", Some("i")),
        ]);
        let e = find(&t, None).unwrap();
        assert_eq!(e.method, BootMethod::Bls);
        assert_eq!(
            e.kernel, "/boot/vmlinuz-5.14.0-162.6.1.el9_1.x86_64",
            "the newest"
        );
        assert_eq!(e.cmdline, "root=/dev/mapper/rhel-root ro");
        // The saved entry wins, with $kernelopts from grubenv.
        let mut t = t;
        t.0.insert(
            "/boot/grub2/grubenv".into(),
            Some(b"saved_entry=8f2e-5.14.0-70.13.1.el9_0.x86_64\nkernelopts=root=/dev/mapper/rhel-root ro crashkernel=auto\n".to_vec()),
        );
        let e = find(&t, None).unwrap();
        assert_eq!(e.kernel, "/boot/vmlinuz-5.14.0-70.13.1.el9_0.x86_64");
        assert_eq!(
            e.initrd.as_deref(),
            Some("/boot/initramfs-5.14.0-70.13.1.el9_0.x86_64.img")
        );
        assert_eq!(e.cmdline, "root=/dev/mapper/rhel-root ro crashkernel=auto");
    }

    #[test]
    fn without_a_boot_loader_the_newest_kernel() {
        let t = FakeTree::with(&[
            ("/boot", None),
            ("/boot/vmlinuz-6.1.0-9-amd64", Some("k")),
            ("/boot/vmlinuz-6.1.0-27-amd64", Some("k")),
            ("/boot/vmlinuz-6.1.0-27-amd64.old", Some("k")),
            ("/boot/initrd.img-6.1.0-27-amd64", Some("i")),
            ("/boot/vmlinuz-lts", Some("k")),
        ]);
        let e = find(&t, Some("3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab")).unwrap();
        assert_eq!(e.method, BootMethod::NewestKernel);
        assert_eq!(
            e.kernel, "/boot/vmlinuz-lts",
            "letters after digits, as sort -V"
        );
        let t = FakeTree::with(&[
            ("/boot", None),
            ("/boot/vmlinuz-6.1.0-9-amd64", Some("k")),
            ("/boot/vmlinuz-6.1.0-27-amd64", Some("k")),
            ("/boot/initrd.img-6.1.0-27-amd64", Some("i")),
        ]);
        let e = find(&t, Some("3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab")).unwrap();
        assert_eq!(e.kernel, "/boot/vmlinuz-6.1.0-27-amd64");
        assert_eq!(e.initrd.as_deref(), Some("/boot/initrd.img-6.1.0-27-amd64"));
        assert_eq!(
            e.cmdline,
            "root=UUID=3c2a6a3e-1f0b-4d5e-9b7a-0123456789ab ro"
        );
        assert_eq!(
            find(&FakeTree::with(&[("/boot", None)]), None),
            Err(BootCfgError::NoKernel)
        );
    }

    #[test]
    fn hostile_configs_stay_inside_the_root_and_bounded() {
        let cfg = format!(
            "menuentry 'x' {{\n linux /../../../etc/shadow {}\n initrd ../../secret\n}}\n",
            "a".repeat(10_000)
        );
        let t = FakeTree::with(&[
            ("/boot/grub/grub.cfg", Some(&cfg)),
            ("/etc/shadow", Some("root:x")),
        ]);
        let e = find(&t, None).unwrap();
        assert_eq!(e.kernel, "/etc/shadow", "clamped to the guest's own root");
        assert!(e.cmdline.len() <= MAX_CMDLINE);
        // Unbalanced braces and endless menus end.
        let junk = "submenu 'a' {\n".repeat(100_000);
        assert!(parse_grub(&junk).len() <= 1);
        assert_eq!(
            words("linux '/a b' \"c\\\"d\" # rest"),
            ["linux", "/a b", "c\"d"]
        );
    }

    #[test]
    fn versions_compare_as_people_read_them() {
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("6.1.0-27-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(version_cmp("5.14.0-162.6.1", "5.14.0-70.13.1"), Greater);
        assert_eq!(version_cmp("1.02", "1.2"), Equal);
        assert_eq!(version_cmp("6.1", "6.1.1"), Less);
    }
}
