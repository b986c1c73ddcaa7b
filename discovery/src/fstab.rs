//! /etc/fstab parsing.
//!
//! The syntax is util-linux's (libmount `mnt_parse_table_line`):
//!
//! * a line whose first non-blank character is `#` is a comment; blank lines are ignored;
//! * fields are separated by any run of spaces and tabs; a trailing `\r` (CRLF files) is dropped;
//! * `\ooo` octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash) are
//!   decoded in the first four fields; any other backslash is literal;
//! * fields 1-3 (source, mount point, type) are required; options default to `defaults`,
//!   freq and passno to 0;
//! * `UUID="..."` quotes around a tag value are removed, but quotes never protect blanks
//!   (fields are split first): a label with a space must be written `LABEL=my\040data`.
//!
//! **There are no trailing comments in fstab.** A `#` that is not the first non-blank character
//! of a line is an ordinary character: `/mnt/#1` is a valid mount point and `defaults#x` a valid
//! option string. libmount stops reading after the sixth field, so `... 0 0 # root` happens to
//! work, while `... defaults # root` is rejected (`#` is not a valid freq). This parser accepts
//! extra fields only when the first of them starts with `#` (that harmless case), and reports
//! other lines with more than six fields as malformed (libmount would silently ignore the extra
//! fields, but they are almost always an unescaped space in a path).
//!
//! Lines are reported as malformed when they have fewer than three fields, a non-numeric (or
//! negative, or too large) freq/passno, more than six fields (see above), a NUL byte or another
//! control character (tabs and the final `\r` excepted), an escaped NUL (`\000`), an empty or
//! badly quoted tag value, or a mount point that is not absolute (swap excepted; systemd skips
//! such lines). Bytes that are not UTF-8 are decoded lossily (U+FFFD) in the entries; the raw
//! bytes stay in [`Fstab::lines`].
//!
//! Nothing is dropped silently: every line that is neither blank nor a comment ends up either
//! in [`Fstab::entries`] or in [`Fstab::malformed`], and [`Fstab::lines`] keeps the raw bytes of
//! every line so that a rewrite can leave untouched lines exactly as they were.

/// What an fstab line mounts (its first field), decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Spec {
    /// `UUID=...` or `/dev/disk/by-uuid/...`: a filesystem UUID, as written (case kept).
    Uuid(String),
    /// `LABEL=...` or `/dev/disk/by-label/...`: a filesystem label.
    Label(String),
    /// `PARTUUID=...` or `/dev/disk/by-partuuid/...`: a partition UUID.
    PartUuid(String),
    /// `PARTLABEL=...` or `/dev/disk/by-partlabel/...`: a GPT partition name.
    PartLabel(String),
    /// Any other absolute path: a kernel device name (`/dev/vdb1`, `/dev/nvme0n1p2`), a
    /// device-mapper or LVM path (`/dev/mapper/vg-lv`, `/dev/vg/lv`), a swap file, or the
    /// source directory of a bind mount.
    DevPath(String),
    /// `/dev/disk/by-id/NAME` (or `ID=NAME`): the link name `NAME`, kept opaque.
    ById(String),
    /// `/dev/disk/by-path/NAME`: the link name `NAME`, kept opaque.
    ByPath(String),
    /// A network source: `host:/path` (NFS, sshfs, glusterfs, ceph) or `//host/share` (CIFS).
    Network(String),
    /// A source that is not a device: `none`, `proc`, `tmpfs`, `sysfs`, a virtiofs tag...
    None_(String),
}

/// What sort of mount an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A block device holding a filesystem.
    Device,
    /// Swap space (type `swap`), on a device or in a file.
    Swap,
    /// A bind mount (options contain `bind` or `rbind`).
    Bind,
    /// A pseudo filesystem (proc, sysfs, tmpfs, devpts, cgroup2...).
    Pseudo,
    /// A network filesystem (NFS, CIFS...).
    Network,
}

/// One well-formed fstab line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Line number, from 1 (index into [`Fstab::lines`] plus one).
    pub line: usize,
    /// Field 1: what to mount.
    pub spec: Spec,
    /// Field 2: the mount point (escapes decoded); `none` or `swap` for swap.
    pub file: String,
    /// Field 3: the filesystem type.
    pub vfstype: String,
    /// Field 4, split on commas outside double quotes; `["defaults"]` when the field is absent.
    pub options: Vec<String>,
    /// Field 5: dump frequency (0 when absent).
    pub freq: u32,
    /// Field 6: fsck pass number (0 when absent).
    pub passno: u32,
    /// What sort of mount this is.
    pub kind: Kind,
}

impl Entry {
    /// Whether option `o` is present, alone or as `o=value`.
    pub fn has_option(&self, o: &str) -> bool {
        self.options
            .iter()
            .any(|x| x == o || x.strip_prefix(o).is_some_and(|rest| rest.starts_with('=')))
    }

    /// Whether a failure to mount this entry does not stop the boot (`nofail`).
    pub fn is_nofail(&self) -> bool {
        self.has_option("nofail")
    }
}

/// A line that is neither blank, a comment, nor a valid entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Line number, from 1.
    pub line: usize,
    /// The line as text (invalid UTF-8 replaced), without its line ending.
    pub text: String,
    /// Why the line was not understood.
    pub reason: String,
}

/// A parsed fstab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fstab {
    /// The valid entries, in file order.
    pub entries: Vec<Entry>,
    /// The lines that could not be parsed, in file order.
    pub malformed: Vec<Malformed>,
    /// Every line's raw bytes including its line ending (`\n` or `\r\n`; none on an
    /// unterminated last line): concatenated they give back the input exactly.
    pub lines: Vec<Vec<u8>>,
}

/// Filesystem types that never live on a block device.
const PSEUDO_TYPES: &[&str] = &[
    "proc",
    "sysfs",
    "tmpfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "hugetlbfs",
    "mqueue",
    "pstore",
    "efivarfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "bpf",
    "ramfs",
    "autofs",
    "rpc_pipefs",
    "nfsd",
    "selinuxfs",
    "overlay",
    "virtiofs",
    "9p",
];

/// Filesystem types whose source is on the network.
const NETWORK_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "sshfs",
    "fuse.sshfs",
    "glusterfs",
    "fuse.glusterfs",
    "ceph",
    "davfs",
];

/// Parses the bytes of an fstab file. Never fails: lines it cannot understand are returned in
/// [`Fstab::malformed`].
pub fn parse(text: &[u8]) -> Fstab {
    let mut fstab = Fstab {
        lines: text
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect(),
        ..Fstab::default()
    };
    for (idx, raw) in fstab.lines.iter().enumerate() {
        let line = idx + 1;
        let body = strip_eol(raw);
        let trimmed = trim_blank(body);
        if trimmed.is_empty() || trimmed[0] == b'#' {
            continue;
        }
        match parse_line(body, line) {
            Ok(e) => fstab.entries.push(e),
            Err(reason) => fstab.malformed.push(Malformed {
                line,
                text: String::from_utf8_lossy(body).into_owned(),
                reason,
            }),
        }
    }
    fstab
}

/// A raw fstab line (as in [`Fstab::lines`]) without its `\n` and one `\r` before it.
pub fn strip_eol(raw: &[u8]) -> &[u8] {
    let b = raw.strip_suffix(b"\n").unwrap_or(raw);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_blank(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_blank(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| !is_blank(c))
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn parse_line(body: &[u8], line: usize) -> Result<Entry, String> {
    if body.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    if let Some(&c) = body
        .iter()
        .find(|&&c| (c < 0x20 && c != b'\t') || c == 0x7f)
    {
        return Err(format!("contains the control character 0x{c:02x}"));
    }
    let mut fields: Vec<&[u8]> = body
        .split(|&c| is_blank(c))
        .filter(|f| !f.is_empty())
        .collect();
    if fields.len() < 3 {
        return Err(format!(
            "{} field(s): at least 3 are needed (device, mount point, type)",
            fields.len()
        ));
    }
    if fields.len() > 6 {
        if fields[6].first() == Some(&b'#') {
            fields.truncate(6);
        } else {
            return Err(format!(
                "{} fields: at most 6 are allowed (an unescaped space in a path? write it as \\040)",
                fields.len()
            ));
        }
    }
    let source = unescape(fields[0], "device")?;
    let file = unescape(fields[1], "mount point")?;
    let vfstype = unescape(fields[2], "type")?;
    let options: Vec<String> = match fields.get(3) {
        Some(f) => split_options(&unescape(f, "options")?),
        None => vec!["defaults".to_string()],
    };
    let freq = number(fields.get(4).copied(), "dump frequency (field 5)")?;
    let passno = number(fields.get(5).copied(), "fsck pass number (field 6)")?;

    let spec = classify_spec(&source, &vfstype)?;
    let has = |o: &str| options.iter().any(|x| x == o);
    let kind = if vfstype == "swap" {
        Kind::Swap
    } else if has("bind") || has("rbind") {
        Kind::Bind
    } else {
        match spec {
            Spec::Network(_) => Kind::Network,
            Spec::None_(_) => Kind::Pseudo,
            _ if PSEUDO_TYPES.contains(&vfstype.as_str()) => Kind::Pseudo,
            _ => Kind::Device,
        }
    };
    if kind != Kind::Swap && !file.starts_with('/') {
        return Err(format!(
            "mount point '{file}' is not an absolute path (systemd ignores such lines)"
        ));
    }
    Ok(Entry {
        line,
        spec,
        file,
        vfstype,
        options,
        freq,
        passno,
        kind,
    })
}

/// Decodes `\ooo` octal escapes (libmount's `unmangle`), then the bytes as UTF-8 (lossily).
fn unescape(field: &[u8], what: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = |k: usize| field.get(i + k).filter(|c| (b'0'..=b'7').contains(c));
        if field[i] == b'\\' {
            if let (Some(&a), Some(&b), Some(&c)) = (octal(1), octal(2), octal(3)) {
                let v =
                    (u32::from(a - b'0') << 6) | (u32::from(b - b'0') << 3) | u32::from(c - b'0');
                // Like C's char arithmetic in libmount: \777 wraps to one byte.
                let byte = (v & 0xff) as u8;
                if byte == 0 {
                    return Err(format!("the {what} contains an escaped NUL byte (\\000)"));
                }
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Splits an option string on commas that are not inside double quotes
/// (`context="a,b"` is one option). Empty options are dropped, as libmount drops them.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn number(field: Option<&[u8]>, what: &str) -> Result<u32, String> {
    let Some(f) = field else {
        return Ok(0);
    };
    let text = String::from_utf8_lossy(f);
    if !f.iter().all(u8::is_ascii_digit) {
        return Err(format!("{what} '{text}' is not a number"));
    }
    text.parse::<u32>()
        .map_err(|_| format!("{what} '{text}' is out of range"))
}

/// Removes one pair of matching quotes around a tag value (`UUID="..."`).
fn unquote<'a>(v: &'a str, tag: &str) -> Result<&'a str, String> {
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q) {
            return rest
                .strip_suffix(q)
                .ok_or_else(|| format!("unbalanced quote in {tag}{v}"));
        }
    }
    Ok(v)
}

/// Decodes udev's `\xNN` escapes in a /dev/disk/by-* link name (`my\x2fdata` is `my/data`).
fn decode_udev(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            let hex = |k: usize| b.get(i + k).and_then(|c| (*c as char).to_digit(16));
            if let (Some(h), Some(l)) = (hex(2), hex(3)) {
                // Two hex digits: at most 0xff.
                out.push((h * 16 + l) as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host:/path`, `user@host:path`, `[v6::addr]:/path`, `//host/share`.
fn is_network_source(s: &str) -> bool {
    if s.starts_with("//") {
        return s.len() > 2;
    }
    if s.starts_with('/') {
        return false;
    }
    match s.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/') && !host.contains('='),
        None => false,
    }
}

fn classify_spec(source: &str, vfstype: &str) -> Result<Spec, String> {
    type Ctor = fn(String) -> Spec;
    const TAGS: [(&str, Ctor); 5] = [
        ("UUID=", Spec::Uuid),
        ("LABEL=", Spec::Label),
        ("PARTUUID=", Spec::PartUuid),
        ("PARTLABEL=", Spec::PartLabel),
        // libmount 2.39+: ID=<name> is /dev/disk/by-id/<name>.
        ("ID=", Spec::ById),
    ];
    for (tag, ctor) in TAGS {
        if let Some(v) = source.strip_prefix(tag) {
            let v = unquote(v, tag)?;
            if v.is_empty() {
                return Err(format!("empty {tag} value"));
            }
            return Ok(ctor(v.to_string()));
        }
    }
    const LINKS: [(&str, Ctor, bool); 6] = [
        ("/dev/disk/by-uuid/", Spec::Uuid, true),
        ("/dev/disk/by-label/", Spec::Label, true),
        ("/dev/disk/by-partuuid/", Spec::PartUuid, true),
        ("/dev/disk/by-partlabel/", Spec::PartLabel, true),
        ("/dev/disk/by-id/", Spec::ById, false),
        ("/dev/disk/by-path/", Spec::ByPath, false),
    ];
    for (prefix, ctor, decode) in LINKS {
        if let Some(name) = source.strip_prefix(prefix) {
            if name.is_empty() {
                return Err(format!("no name after {prefix}"));
            }
            let name = if decode {
                decode_udev(name)
            } else {
                name.to_string()
            };
            return Ok(ctor(name));
        }
    }
    if is_network_source(source) || (NETWORK_TYPES.contains(&vfstype) && !source.starts_with('/')) {
        return Ok(Spec::Network(source.to_string()));
    }
    if source.starts_with('/') {
        return Ok(Spec::DevPath(source.to_string()));
    }
    Ok(Spec::None_(source.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(line: &str) -> Entry {
        let f = parse(line.as_bytes());
        assert!(f.malformed.is_empty(), "{:?}", f.malformed);
        assert_eq!(f.entries.len(), 1);
        f.entries[0].clone()
    }

    fn bad(line: &[u8]) -> Malformed {
        let f = parse(line);
        assert!(f.entries.is_empty(), "{:?}", f.entries);
        assert_eq!(f.malformed.len(), 1);
        f.malformed[0].clone()
    }

    #[test]
    fn typical_debian_fstab() {
        let text = b"# /etc/fstab: static file system information.\n\
#\n\
# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n\
UUID=0a1b2c3d-1111-2222-3333-444455556666 /               ext4    errors=remount-ro 0       1\n\
UUID=5E0B-1F2A  /boot/efi       vfat    umask=0077      0       1\n\
/dev/mapper/vg0-swap none            swap    sw              0       0\n\
/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n\
\n";
        let f = parse(text);
        assert!(f.malformed.is_empty());
        assert_eq!(f.lines.len(), 8);
        assert_eq!(f.entries.len(), 4);
        let root = &f.entries[0];
        assert_eq!(root.line, 4);
        assert_eq!(
            root.spec,
            Spec::Uuid("0a1b2c3d-1111-2222-3333-444455556666".into())
        );
        assert_eq!(root.file, "/");
        assert_eq!(root.vfstype, "ext4");
        assert_eq!(root.options, vec!["errors=remount-ro"]);
        assert_eq!((root.freq, root.passno), (0, 1));
        assert_eq!(root.kind, Kind::Device);
        assert_eq!(f.entries[2].kind, Kind::Swap);
        assert_eq!(
            f.entries[2].spec,
            Spec::DevPath("/dev/mapper/vg0-swap".into())
        );
        assert_eq!(f.entries[3].options, vec!["user", "noauto"]);
        assert_eq!(f.lines.concat(), text.to_vec());
    }

    #[test]
    fn octal_escapes() {
        let e = one("LABEL=my\\040data /mnt/my\\040disk\\011x\\012y\\134z ext4 defaults 0 2");
        assert_eq!(e.spec, Spec::Label("my data".into()));
        assert_eq!(e.file, "/mnt/my disk\tx\ny\\z");
        // Not an escape: kept literally.
        let e = one("/dev/sdb1 /mnt/a\\b\\08\\1 ext4");
        assert_eq!(e.file, "/mnt/a\\b\\08\\1");
        // Escaped UTF-8 bytes.
        let e = one("/dev/sdb1 /mnt/caf\\303\\251 ext4");
        assert_eq!(e.file, "/mnt/café");
        let m = bad(b"/dev/sdb1 /mnt/a\\000b ext4");
        assert!(m.reason.contains("NUL"));
    }

    #[test]
    fn tabs_and_spaces() {
        let e = one("  \t/dev/vdb1\t\t/srv  \t xfs \t noatime,nofail\t0 \t 0  \t");
        assert_eq!(e.spec, Spec::DevPath("/dev/vdb1".into()));
        assert_eq!(e.file, "/srv");
        assert_eq!(e.vfstype, "xfs");
        assert!(e.is_nofail());
        assert!(e.has_option("noatime"));
        assert!(!e.has_option("atime"));
    }

    #[test]
    fn missing_fields_take_defaults() {
        let e = one("/dev/sdb1 /data ext4");
        assert_eq!(e.options, vec!["defaults"]);
        assert_eq!((e.freq, e.passno), (0, 0));
        let e = one("/dev/sdb1 /data ext4 ro");
        assert_eq!(e.options, vec!["ro"]);
        assert_eq!((e.freq, e.passno), (0, 0));
        let e = one("/dev/sdb1 /data ext4 ro 1");
        assert_eq!((e.freq, e.passno), (1, 0));
        assert!(bad(b"/dev/sdb1 /data").reason.contains("2 field"));
        assert!(bad(b"/dev/sdb1").reason.contains("1 field"));
    }

    #[test]
    fn quoted_tags() {
        assert_eq!(
            one("UUID=\"abcd-ef\" / ext4").spec,
            Spec::Uuid("abcd-ef".into())
        );
        assert_eq!(one("LABEL='root' / ext4").spec, Spec::Label("root".into()));
        assert_eq!(
            one("PARTUUID=8f8378c0-01 / ext4").spec,
            Spec::PartUuid("8f8378c0-01".into())
        );
        assert_eq!(
            one("PARTLABEL=\"EFI\\040System\" /boot/efi vfat").spec,
            Spec::PartLabel("EFI System".into())
        );
        // Quotes do not protect spaces: fields are split first, as libmount does.
        assert!(bad(b"PARTLABEL=\"EFI System\" /boot/efi vfat")
            .reason
            .contains("unbalanced"));
        assert!(bad(b"UUID=\"abcd / ext4").reason.contains("unbalanced"));
        assert!(bad(b"UUID= / ext4").reason.contains("empty"));
        assert!(bad(b"UUID=\"\" / ext4").reason.contains("empty"));
    }

    #[test]
    fn disk_links() {
        assert_eq!(
            one("/dev/disk/by-uuid/0a1b / ext4").spec,
            Spec::Uuid("0a1b".into())
        );
        assert_eq!(
            one("/dev/disk/by-label/my\\x2fdata\\x20x /d ext4").spec,
            Spec::Label("my/data x".into())
        );
        assert_eq!(
            one("/dev/disk/by-partuuid/8f8378c0-05 /d ext4").spec,
            Spec::PartUuid("8f8378c0-05".into())
        );
        assert_eq!(
            one("/dev/disk/by-partlabel/data /d ext4").spec,
            Spec::PartLabel("data".into())
        );
        assert_eq!(
            one("/dev/disk/by-id/virtio-abc-part1 /d ext4").spec,
            Spec::ById("virtio-abc-part1".into())
        );
        assert_eq!(
            one("/dev/disk/by-path/pci-0000:00:04.0-part1 /d ext4").spec,
            Spec::ByPath("pci-0000:00:04.0-part1".into())
        );
        assert_eq!(
            one("ID=nvme-Samsung_123-part2 /d ext4").spec,
            Spec::ById("nvme-Samsung_123-part2".into())
        );
        assert!(bad(b"/dev/disk/by-uuid/ / ext4").reason.contains("no name"));
    }

    #[test]
    fn kernel_names() {
        for dev in [
            "/dev/sdb1",
            "/dev/vdb1",
            "/dev/xvda1",
            "/dev/nvme0n1p2",
            "/dev/mapper/vg-lv",
            "/dev/vg/lv",
        ] {
            let e = one(&format!("{dev} /d ext4 defaults 0 2"));
            assert_eq!(e.spec, Spec::DevPath(dev.into()));
            assert_eq!(e.kind, Kind::Device);
        }
    }

    #[test]
    fn kinds() {
        let e = one("UUID=1234 none swap sw 0 0");
        assert_eq!(e.kind, Kind::Swap);
        let e = one("/swapfile none swap defaults");
        assert_eq!(
            (e.kind, e.spec),
            (Kind::Swap, Spec::DevPath("/swapfile".into()))
        );
        let e = one("/srv/data /var/www none bind,ro 0 0");
        assert_eq!(e.kind, Kind::Bind);
        assert_eq!(e.spec, Spec::DevPath("/srv/data".into()));
        assert_eq!(one("/a /b none rbind").kind, Kind::Bind);
        for (line, src) in [
            ("proc /proc proc defaults 0 0", "proc"),
            ("tmpfs /tmp tmpfs size=1G,mode=1777 0 0", "tmpfs"),
            ("sysfs /sys sysfs defaults", "sysfs"),
            ("devpts /dev/pts devpts gid=5,mode=620", "devpts"),
            ("none /sys/fs/cgroup cgroup2 defaults", "none"),
            ("myshare /mnt/share virtiofs defaults", "myshare"),
        ] {
            let e = one(line);
            assert_eq!(e.kind, Kind::Pseudo, "{line}");
            assert_eq!(e.spec, Spec::None_(src.into()));
        }
        for (line, src) in [
            (
                "nas:/export/home /home nfs rw,_netdev 0 0",
                "nas:/export/home",
            ),
            ("[fe80::1]:/x /x nfs4 defaults", "[fe80::1]:/x"),
            (
                "//server/share /mnt/s cifs credentials=/root/c,uid=1000",
                "//server/share",
            ),
            (
                "user@host:/data /mnt/d fuse.sshfs defaults",
                "user@host:/data",
            ),
            ("server /mnt/s nfs defaults", "server"),
        ] {
            let e = one(line);
            assert_eq!(e.kind, Kind::Network, "{line}");
            assert_eq!(e.spec, Spec::Network(src.into()));
        }
    }

    #[test]
    fn hash_is_literal_inside_fields() {
        let e = one("/dev/sdb1 /mnt/#1 ext4 defaults#x 0 0");
        assert_eq!(e.file, "/mnt/#1");
        assert_eq!(e.options, vec!["defaults#x"]);
        // After the sixth field libmount stops reading: a trailing comment is harmless.
        let e = one("UUID=x / ext4 defaults 0 1 # the root fs");
        assert_eq!(e.passno, 1);
        // ...but in place of freq/passno it is an error, as for libmount.
        assert!(bad(b"UUID=x / ext4 defaults # root")
            .reason
            .contains("field 5"));
        assert!(bad(b"UUID=x / ext4 defaults 0 #1")
            .reason
            .contains("field 6"));
        // Indented comments are comments.
        let f = parse(b"   \t# UUID=x / ext4\n");
        assert!(f.entries.is_empty() && f.malformed.is_empty());
    }

    #[test]
    fn bad_numbers_and_too_many_fields() {
        assert!(bad(b"/dev/sdb1 /d ext4 defaults x 0")
            .reason
            .contains("not a number"));
        assert!(bad(b"/dev/sdb1 /d ext4 defaults 0 -1")
            .reason
            .contains("not a number"));
        assert!(bad(b"/dev/sdb1 /d ext4 defaults 0 99999999999")
            .reason
            .contains("out of range"));
        let m = bad(b"/dev/sdb1 /mnt/my disk ext4 defaults 0 0");
        assert!(m.reason.contains("7 fields"), "{}", m.reason);
        assert_eq!(m.text, "/dev/sdb1 /mnt/my disk ext4 defaults 0 0");
        assert_eq!(m.line, 1);
        assert!(bad(b"/dev/sdb1 mnt ext4").reason.contains("absolute"));
    }

    #[test]
    fn crlf_line_endings() {
        let text = b"# c\r\n/dev/sdb1 /d ext4 defaults 0 2\r\n\r\n";
        let f = parse(text);
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.entries[0].passno, 2);
        assert_eq!(f.entries[0].line, 2);
        assert!(f.malformed.is_empty());
        assert_eq!(f.lines[1], b"/dev/sdb1 /d ext4 defaults 0 2\r\n".to_vec());
        // A lone CR inside a line is not a line ending.
        assert!(bad(b"/dev/sdb1 /d\rx ext4").reason.contains("0x0d"));
    }

    #[test]
    fn strip_eol_takes_one_line_ending() {
        assert_eq!(strip_eol(b"a b\r\n"), b"a b");
        assert_eq!(strip_eol(b"a b\n"), b"a b");
        assert_eq!(strip_eol(b"a b"), b"a b", "an unterminated last line");
        assert_eq!(strip_eol(b"a\r\r\n"), b"a\r", "one CR only");
        assert_eq!(strip_eol(b"a\n\n"), b"a\n", "one LF only");
        assert_eq!(strip_eol(b"a\r"), b"a", "a CR at the very end");
        assert_eq!(strip_eol(b""), b"");
        for (i, line) in parse(b"x / ext4 defaults 0 1\r\n# c\n")
            .lines
            .iter()
            .enumerate()
        {
            assert!(!strip_eol(line).ends_with(b"\n"), "line {i}");
        }
    }

    #[test]
    fn nul_and_garbage() {
        let f = parse(b"/dev/sdb1 /d ext4\n/dev/sd\0c1 /e ext4\n\x01\x02\x03 x y\n");
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.malformed.len(), 2);
        assert_eq!(f.malformed[0].line, 2);
        assert!(f.malformed[0].reason.contains("NUL"));
        assert!(f.malformed[1].reason.contains("control"));
    }

    #[test]
    fn long_line() {
        let long = format!("/dev/sdb1 /{} ext4 defaults 0 0\n", "a".repeat(64 * 1024));
        let f = parse(long.as_bytes());
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.entries[0].file.len(), 64 * 1024 + 1);
        let m = bad("x".repeat(64 * 1024).as_bytes());
        assert_eq!(m.text.len(), 64 * 1024);
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_and_kept_raw() {
        let text = b"LABEL=caf\xe9 /mnt/\xff ext4\n";
        let f = parse(text);
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.entries[0].spec, Spec::Label("caf\u{fffd}".into()));
        assert_eq!(f.entries[0].file, "/mnt/\u{fffd}");
        assert_eq!(f.lines[0], text.to_vec());
    }

    #[test]
    fn empty_and_unterminated() {
        let f = parse(b"");
        assert!(f.entries.is_empty() && f.malformed.is_empty() && f.lines.is_empty());
        let f = parse(b"\n\n  \n");
        assert!(f.entries.is_empty() && f.malformed.is_empty());
        assert_eq!(f.lines.len(), 3);
        let text = b"/dev/sda1 / ext4\n/dev/sda2 /home ext4 defaults 0 2";
        let f = parse(text);
        assert_eq!(f.entries.len(), 2);
        assert_eq!(f.entries[1].passno, 2);
        assert_eq!(f.lines.len(), 2);
        assert_eq!(f.lines.concat(), text.to_vec());
    }

    #[test]
    fn options() {
        let e = one("/dev/sdb1 /d ext4 context=\"system_u:object_r:tmp_t:s0,c1\",,nofail,x-systemd.device-timeout=5");
        assert_eq!(
            e.options,
            vec![
                "context=\"system_u:object_r:tmp_t:s0,c1\"",
                "nofail",
                "x-systemd.device-timeout=5"
            ]
        );
        assert!(e.has_option("x-systemd.device-timeout"));
        assert!(e.has_option("x-systemd.device-timeout=5"));
        assert!(!e.has_option("x-systemd.device"));
        assert!(e.is_nofail());
    }

    fn is_content_line(raw: &[u8]) -> bool {
        let mut b = raw;
        if let Some(x) = b.strip_suffix(b"\n") {
            b = x;
        }
        if let Some(x) = b.strip_suffix(b"\r") {
            b = x;
        }
        match b.iter().find(|&&c| c != b' ' && c != b'\t') {
            None => false,
            Some(&c) => c != b'#',
        }
    }

    fn check_invariants(text: &[u8]) {
        let f = parse(text);
        assert_eq!(f.lines.concat(), text.to_vec());
        let mut seen = vec![0usize; f.lines.len() + 1];
        for e in &f.entries {
            seen[e.line] += 1;
        }
        for m in &f.malformed {
            seen[m.line] += 1;
        }
        for (i, raw) in f.lines.iter().enumerate() {
            let want = usize::from(is_content_line(raw));
            assert_eq!(seen[i + 1], want, "line {}: {:?}", i + 1, raw);
        }
        assert_eq!(seen[0], 0);
    }

    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"#".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"\\040".to_vec()),
            Just(b"\\000".to_vec()),
            Just(b"\\x2f".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"UUID=".to_vec()),
            Just(b"LABEL=".to_vec()),
            Just(b"PARTUUID=".to_vec()),
            Just(b"/dev/disk/by-label/".to_vec()),
            Just(b"/dev/disk/by-id/".to_vec()),
            Just(b"/dev/sda1".to_vec()),
            Just(b"//h/s".to_vec()),
            Just(b"h:/p".to_vec()),
            Just(b"/mnt".to_vec()),
            Just(b"ext4".to_vec()),
            Just(b"swap".to_vec()),
            Just(b"nfs".to_vec()),
            Just(b"bind,ro".to_vec()),
            Just(b"0".to_vec()),
            Just(b"4294967296".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"\xff\xfe".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..6),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(text in proptest::collection::vec(any::<u8>(), 0..2048)) {
            check_invariants(&text);
        }

        #[test]
        fn fstab_like_bytes_never_panic(parts in proptest::collection::vec(fragment(), 0..80)) {
            check_invariants(&parts.concat());
        }
    }
}
