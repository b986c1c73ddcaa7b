//! Which filesystem is an operating system's root, decided by evidence found in it, never by
//! device order: a rescue sees the guest's disk as vda, vdb or last depending on how it was
//! attached. Pure: the caller supplies a [`Tree`] (a read-only mount in the guest, an image
//! reader on the host).

/// Read-only view of a filesystem's contents.
pub trait Tree {
    /// Whether `path` (absolute within the filesystem) exists, without following a final symlink.
    fn exists(&self, path: &str) -> bool;
    fn is_dir(&self, path: &str) -> bool;
    /// Up to `max` bytes of a regular file.
    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>>;
    /// The last `max` bytes of a regular file (a log's newest lines), where the
    /// implementation can seek; else its first `max` bytes.
    fn read_tail(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        self.read(path, max)
    }
    /// Names in a directory (bounded by the implementation).
    fn list(&self, path: &str) -> Vec<String>;
    /// Permission bits of a regular file or directory, where the implementation knows them.
    fn mode(&self, _path: &str) -> Option<u32> {
        None
    }
    /// Owner (uid, gid) of a file or directory (a final symlink not followed), where the
    /// implementation knows it.
    fn owner(&self, _path: &str) -> Option<(u32, u32)> {
        None
    }
}

/// What a piece of evidence is worth.
const EVIDENCE: &[(&str, i32, Check)] = &[
    ("/etc/fstab", 3, Check::File),
    ("/etc/os-release", 4, Check::Any),
    ("/usr/lib/os-release", 4, Check::Any),
    ("/sbin/init", 3, Check::Any),
    ("/lib/systemd/systemd", 2, Check::Any),
    ("/usr/lib/systemd/systemd", 2, Check::Any),
    ("/usr", 2, Check::Dir),
    ("/usr/bin", 1, Check::Dir),
    ("/var", 1, Check::Dir),
    ("/bin", 1, Check::Any),
    ("/lib", 1, Check::Any),
    ("/boot", 1, Check::Dir),
    ("/etc", 1, Check::Dir),
];

#[derive(Clone, Copy)]
enum Check {
    File,
    Dir,
    Any,
}

/// A root needs at least this much evidence.
pub const ROOT_THRESHOLD: i32 = 5;
/// Score added when the GPT partition type says "Linux root".
pub const GPT_ROOT_TYPE_SCORE: i32 = 3;

/// Evidence found in one filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evidence {
    pub score: i32,
    /// The paths (or facts) that counted.
    pub found: Vec<String>,
}

impl Evidence {
    pub fn is_root(&self) -> bool {
        self.score >= ROOT_THRESHOLD
    }
}

/// Scores a filesystem as an OS root.
pub fn score(tree: &dyn Tree, gpt_root_type: bool) -> Evidence {
    let mut e = Evidence::default();
    let mut os_release = false;
    let mut systemd = false;
    for &(path, points, check) in EVIDENCE {
        let hit = match check {
            Check::File => tree.exists(path) && !tree.is_dir(path),
            Check::Dir => tree.is_dir(path),
            Check::Any => tree.exists(path),
        };
        if !hit {
            continue;
        }
        // One os-release and one systemd binary count once.
        if path.ends_with("os-release") {
            if os_release {
                continue;
            }
            os_release = true;
        }
        if path.ends_with("systemd/systemd") {
            if systemd {
                continue;
            }
            systemd = true;
        }
        e.score += points;
        e.found.push(path.to_owned());
    }
    if gpt_root_type {
        e.score += GPT_ROOT_TYPE_SCORE;
        e.found.push("GPT root partition type".to_owned());
    }
    e
}

/// What `/etc/os-release` says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsRelease {
    pub pretty_name: Option<String>,
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub name: Option<String>,
}

/// Parses os-release(5): `KEY=value` lines, values optionally quoted with shell escapes.
pub fn parse_os_release(text: &[u8]) -> OsRelease {
    let text = String::from_utf8_lossy(text);
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        let value = (!value.is_empty()).then_some(value);
        match key.trim() {
            "PRETTY_NAME" => os.pretty_name = value,
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "NAME" => os.name = value,
            _ => {}
        }
    }
    os
}

fn unquote(v: &str) -> String {
    let inner = match v.as_bytes() {
        [q @ (b'"' | b'\''), .., last] if last == q && v.len() >= 2 => &v[1..v.len() - 1],
        _ => v,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out.chars().filter(|c| !c.is_control()).take(256).collect()
}

/// The OS description of a root: `/etc/os-release`, else `/usr/lib/os-release`.
pub fn os_release(tree: &dyn Tree) -> Option<OsRelease> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| tree.read(p, 64 * 1024))
        .map(|t| parse_os_release(&t))
}

/// Whether a filesystem looks like a separate /boot (kernels or a boot loader at its top).
pub fn looks_like_boot(tree: &dyn Tree) -> bool {
    tree.is_dir("/grub")
        || tree.is_dir("/grub2")
        || tree
            .list("/")
            .iter()
            .any(|n| n.starts_with("vmlinuz") || n.starts_with("initrd.img"))
}

/// Whether a filesystem looks like an EFI system partition.
pub fn looks_like_esp(tree: &dyn Tree) -> bool {
    tree.is_dir("/EFI") || tree.is_dir("/efi")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory tree: path -> Some(content) for files, None for directories.
    #[derive(Default)]
    pub struct FakeTree(pub BTreeMap<String, Option<Vec<u8>>>);

    impl FakeTree {
        pub fn with(entries: &[(&str, Option<&str>)]) -> Self {
            FakeTree(
                entries
                    .iter()
                    .map(|(p, c)| (p.to_string(), c.map(|s| s.as_bytes().to_vec())))
                    .collect(),
            )
        }
    }

    impl Tree for FakeTree {
        fn exists(&self, path: &str) -> bool {
            self.0.contains_key(path)
        }
        fn is_dir(&self, path: &str) -> bool {
            matches!(self.0.get(path), Some(None))
        }
        fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
            self.0
                .get(path)?
                .as_ref()
                .map(|c| c[..c.len().min(max)].to_vec())
        }
        fn list(&self, path: &str) -> Vec<String> {
            let prefix = if path == "/" {
                "/".to_owned()
            } else {
                format!("{path}/")
            };
            self.0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                .map(str::to_owned)
                .collect()
        }
    }

    fn debian() -> FakeTree {
        FakeTree::with(&[
            ("/etc", None),
            ("/etc/fstab", Some("UUID=x / ext4 defaults 0 1\n")),
            ("/etc/os-release", Some("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n")),
            ("/sbin/init", Some("")),
            ("/usr", None),
            ("/usr/bin", None),
            ("/var", None),
            ("/bin", None),
            ("/lib", None),
            ("/boot", None),
        ])
    }

    #[test]
    fn a_full_root_scores_high_and_has_os_info() {
        let t = debian();
        let e = score(&t, false);
        assert!(e.is_root(), "{e:?}");
        assert!(e.found.contains(&"/etc/fstab".to_owned()));
        let os = os_release(&t).unwrap();
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version_id.as_deref(), Some("12"));
    }

    #[test]
    fn root_without_etc_is_still_found() {
        let mut t = debian();
        t.0.retain(|k, _| !k.starts_with("/etc"));
        let e = score(&t, false);
        assert!(e.is_root(), "{e:?}");
        assert_eq!(os_release(&t), None);
    }

    #[test]
    fn data_home_and_boot_disks_are_not_roots() {
        let data = FakeTree::with(&[
            ("/data", None),
            ("/data/db.sqlite", Some("x")),
            ("/lost+found", None),
        ]);
        assert!(!score(&data, false).is_root());
        let home = FakeTree::with(&[
            ("/alice", None),
            ("/bob", None),
            ("/alice/.bashrc", Some("")),
        ]);
        assert!(!score(&home, false).is_root());
        let boot = FakeTree::with(&[
            ("/grub", None),
            ("/vmlinuz-6.1.0-56-amd64", Some("k")),
            ("/initrd.img-6.1.0-56-amd64", Some("i")),
        ]);
        assert!(!score(&boot, false).is_root());
        assert!(looks_like_boot(&boot));
        assert!(!looks_like_boot(&data));
        // A /var partition has lib/ but is not a root.
        let var = FakeTree::with(&[("/lib", None), ("/log", None), ("/cache", None)]);
        assert!(!score(&var, false).is_root());
    }

    #[test]
    fn gpt_root_type_adds_evidence_but_not_alone() {
        let empty = FakeTree::default();
        assert!(!score(&empty, true).is_root());
        let thin = FakeTree::with(&[("/usr", None), ("/bin", None)]);
        assert!(!score(&thin, false).is_root());
        assert!(score(&thin, true).is_root());
    }

    #[test]
    fn os_release_quoting_and_garbage() {
        let os = parse_os_release(b"NAME='Fedora Linux'\nID=fedora\nVERSION_ID=40\nPRETTY_NAME=\"A \\\"quoted\\\" name\"\n\xff\xfe=\nbroken line\n");
        assert_eq!(os.name.as_deref(), Some("Fedora Linux"));
        assert_eq!(os.version_id.as_deref(), Some("40"));
        assert_eq!(os.pretty_name.as_deref(), Some("A \"quoted\" name"));
        assert_eq!(parse_os_release(b""), OsRelease::default());
        let long = format!("PRETTY_NAME={}\x1b[2J", "x".repeat(10_000));
        let os = parse_os_release(long.as_bytes());
        assert_eq!(os.pretty_name.unwrap().len(), 256);
    }
}
