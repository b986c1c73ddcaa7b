//! From scanned disks to the report's discovery sections: disks, partitions, filesystems with
//! role and mountpoint, the OS root (by evidence), and the guest's fstab resolved against what
//! was found. Pure: file contents come through the caller's [`Tree`] per volume.

use vmrescue_protocol as p;

use crate::fstab::{self, Kind, Spec};
use crate::fstype::FsType;
use crate::inventory::{DiskScan, Volume};
use crate::osroot::{self, Tree};
use crate::partition::PartType;

/// GPT type of a Linux x86-64 root partition.
pub const GPT_ROOT_X86_64: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
/// Longest fstab read.
pub const MAX_FSTAB: usize = 1 << 20;

/// What the rescue opened of the layers under the filesystems, for the names fstab may give
/// them: each LUKS container's UUID with the device it was opened as, and each md array's
/// name (`host:root`) with its device.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    pub luks: Vec<(String, String)>,
    pub md: Vec<(String, String)>,
}

impl Opened {
    /// The other names of opened devices, as `/dev/`-less paths (`mapper/home_crypt`,
    /// `md/root`) with the device: a LUKS container by the name the guest's crypttab gives it,
    /// an md array by its name with and without its host part.
    pub fn aliases(&self, crypttab: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for line in crypttab.lines() {
            let mut w = line.split_whitespace();
            let (Some(name), Some(source)) = (w.next(), w.next()) else {
                continue;
            };
            if name.starts_with('#') || name.contains('/') {
                continue;
            }
            let uuid = source
                .strip_prefix("UUID=")
                .or_else(|| source.strip_prefix("/dev/disk/by-uuid/"));
            if let Some((_, dev)) = uuid.and_then(|u| {
                self.luks
                    .iter()
                    .find(|(l, _)| l.eq_ignore_ascii_case(u.trim_matches('"')))
            }) {
                out.push((format!("mapper/{name}"), dev.clone()));
            }
        }
        for (name, dev) in &self.md {
            out.push((format!("md/{name}"), dev.clone()));
            if let Some((_, short)) = name.split_once(':') {
                out.push((format!("md/{short}"), dev.clone()));
            }
        }
        out
    }
}

/// The discovery sections of a report.
#[derive(Debug, Default)]
pub struct Found {
    pub disks: Vec<p::Disk>,
    pub partitions: Vec<p::Partition>,
    pub filesystems: Vec<p::Filesystem>,
    pub os: p::OsInfo,
    pub fstab: Option<p::FstabReport>,
    pub warnings: Vec<String>,
}

fn type_id(t: &PartType) -> String {
    match t {
        PartType::Mbr(b) => format!("0x{b:02x}"),
        PartType::Gpt(g) => g.clone(),
    }
}

/// `--root` naming a disk or a partition that holds no filesystem of its own (an LVM physical
/// volume, say: naming its disk picks which copy of a volume group is opened): the one OS root
/// candidate on that disk or inside what was opened (a device on no plain disk), or why there
/// is none. `None` when `want` names no disk or partition.
fn root_on_named_disk(want: &str, dev_prefix: &str, f: &Found) -> Option<Result<String, String>> {
    let name = want.strip_prefix(dev_prefix).unwrap_or(want);
    let disk = f.disks.iter().find(|d| {
        !d.name.contains('/') && (d.name == name || d.partitions.iter().any(|p| p == name))
    })?;
    let plain = |dev: &str| -> Option<&str> {
        let n = dev.strip_prefix(dev_prefix).unwrap_or(dev);
        f.disks
            .iter()
            .filter(|d| !d.name.contains('/'))
            .find(|d| d.name == n || d.partitions.iter().any(|p| p == n))
            .map(|d| d.name.as_str())
    };
    let found: Vec<&str> =
        f.os.candidates
            .iter()
            .map(|c| c.device.as_str())
            .filter(|dev| plain(dev).is_none_or(|d| d == disk.name))
            .collect();
    Some(match found.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(format!(
            "--root {want} names a disk, and no OS root was found on it or inside what was opened from it"
        )),
        many => Err(format!(
            "--root {want} names a disk holding several OS roots ({}); none chosen: name one with --root DEVICE|UUID",
            many.join(", ")
        )),
    })
}

/// Builds the sections. `tree` opens a volume's contents (`None`: cannot be read); `root_choice`
/// is the operator's `--root DEVICE|UUID`.
pub fn assemble(
    scans: &[DiskScan],
    dev_prefix: &str,
    tree: &mut dyn FnMut(&Volume) -> Option<Box<dyn Tree>>,
    root_choice: Option<&str>,
    opened: &Opened,
) -> Found {
    let mut f = Found::default();
    let mut volumes: Vec<&Volume> = Vec::new();
    for s in scans {
        f.warnings.extend(s.warnings.iter().cloned());
        f.disks.push(p::Disk {
            name: s.name.clone(),
            size_bytes: s.size,
            pttype: s.table.as_ref().map(|t| t.kind.as_str().to_owned()),
            ptuuid: s.table.as_ref().and_then(|t| t.id.clone()),
            rescue_medium: s.medium.is_some(),
            partitions: s
                .volumes
                .iter()
                .filter(|v| v.partition.is_some())
                .map(|v| v.name.clone())
                .collect(),
            ..Default::default()
        });
        if let Some(id) = &s.medium {
            f.warnings.push(format!(
                "{} is vmrescue's own disk ({id}); left alone",
                s.name
            ));
            continue;
        }
        if let Some(w) = blank(s) {
            f.warnings.push(w);
        }
        for v in &s.volumes {
            if let Some(part) = &v.partition {
                f.partitions.push(p::Partition {
                    name: v.name.clone(),
                    disk: s.name.clone(),
                    number: part.number,
                    start_bytes: part.start,
                    size_bytes: part.size,
                    type_id: type_id(&part.part_type),
                    partuuid: part.uuid.clone(),
                    partlabel: part.name.clone(),
                    fstype: v
                        .probe
                        .as_ref()
                        .map_or(FsType::Unknown, |p| p.fstype)
                        .to_string(),
                });
            }
            if v.probe.is_some() {
                volumes.push(v);
            }
        }
    }

    // Evidence for each inspectable filesystem.
    let mut trees: Vec<(String, Box<dyn Tree>)> = Vec::new();
    for v in &volumes {
        let Some(probe) = &v.probe else { continue };
        let device = format!("{dev_prefix}{}", v.name);
        f.filesystems.push(p::Filesystem {
            device: device.clone(),
            fstype: probe.fstype.to_string(),
            uuid: probe.uuid.clone(),
            label: probe.label.clone(),
            role: (probe.fstype == FsType::Swap).then(|| "swap".to_owned()),
            ..Default::default()
        });
        // Only what can be mounted can be looked into for OS evidence.
        if !probe.fstype.is_mountable() {
            continue;
        }
        let Some(t) = tree(v) else {
            f.warnings.push(format!(
                "{device}: contents could not be read to look for an OS"
            ));
            continue;
        };
        let gpt_root = matches!(&v.partition, Some(part) if matches!(&part.part_type, PartType::Gpt(g) if g == GPT_ROOT_X86_64));
        let e = osroot::score(t.as_ref(), gpt_root);
        if e.is_root() {
            f.os.candidates.push(p::RootCandidate {
                device: device.clone(),
                score: e.score,
                evidence: e.found,
            });
        } else if osroot::looks_like_esp(t.as_ref()) && probe.fstype == FsType::Vfat {
            set_role(&mut f.filesystems, &device, "efi");
        } else if osroot::looks_like_boot(t.as_ref()) {
            set_role(&mut f.filesystems, &device, "boot");
        }
        trees.push((device, t));
    }

    // The root: the operator's choice, else the only candidate.
    let chosen = match root_choice {
        Some(want) => {
            let hit = f.filesystems.iter().find(|fs| {
                fs.device == want
                    || fs.device.strip_prefix(dev_prefix) == Some(want)
                    || fs
                        .uuid
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(want))
            });
            match hit {
                Some(fs) => Some(fs.device.clone()),
                None => match root_on_named_disk(want, dev_prefix, &f) {
                    Some(Ok(dev)) => {
                        f.warnings.push(format!(
                                "--root {want} names a disk, not a filesystem: the OS root found on it (or inside what was opened from it) is {dev}"
                            ));
                        Some(dev)
                    }
                    Some(Err(w)) => {
                        f.warnings.push(w);
                        None
                    }
                    None => {
                        f.warnings
                            .push(format!("--root {want}: no such device or filesystem UUID"));
                        None
                    }
                },
            }
        }
        None => {
            match f.os.candidates.len() {
                1 => Some(f.os.candidates[0].device.clone()),
                0 => None,
                _ => {
                    f.warnings.push(format!(
                    "several OS roots found ({}); none chosen: name one with --root DEVICE|UUID",
                    f.os.candidates.iter().map(|c| c.device.as_str()).collect::<Vec<_>>().join(", ")
                ));
                    None
                }
            }
        }
    };
    f.os.root_device = chosen.clone();
    let Some(root) = chosen else {
        return f;
    };
    set_role(&mut f.filesystems, &root, "root");
    let root_tree = trees
        .iter()
        .find(|(d, _)| *d == root)
        .map(|(_, t)| t.as_ref());
    if let Some(t) = root_tree {
        if let Some(os) = osroot::os_release(t) {
            f.os.pretty_name = os.pretty_name;
            f.os.id = os.id;
            f.os.version_id = os.version_id;
        }
        let crypttab = t.read("/etc/crypttab", MAX_FSTAB).unwrap_or_default();
        let aliases = opened.aliases(&String::from_utf8_lossy(&crypttab));
        match t.read("/etc/fstab", MAX_FSTAB) {
            Some(text) => {
                let report = resolve_fstab(
                    &fstab::parse(&text),
                    &root,
                    dev_prefix,
                    &f.filesystems,
                    &f.partitions,
                    &aliases,
                );
                for e in &report.entries {
                    if let (p::Resolution::Resolved, Some(dev)) = (e.resolution, &e.device) {
                        if let Some(fs) = f.filesystems.iter_mut().find(|fs| &fs.device == dev) {
                            if fs.mountpoint.is_none() && e.file.starts_with('/') {
                                fs.mountpoint = Some(e.file.clone());
                            }
                            if fs.role.is_none() {
                                fs.role = Some(role_of(&e.file, &e.vfstype));
                            }
                        }
                    }
                }
                f.fstab = Some(report);
            }
            None => f.warnings.push(format!("{root}: no /etc/fstab")),
        }
    }
    f
}

/// What to say of a disk with nothing on it: empty, or no partition table and no filesystem
/// this rescue knows (blank, wiped, or a format it does not read).
fn blank(s: &DiskScan) -> Option<String> {
    if s.size == 0 {
        return Some(format!("{} is empty (0 bytes)", s.name));
    }
    (s.table.is_none() && s.volumes.iter().all(|v| v.probe.is_none())).then(|| {
        format!(
            "{} holds no partition table and no filesystem this rescue knows ({} bytes: blank, wiped, or a format it does not read)",
            s.name, s.size
        )
    })
}

fn set_role(filesystems: &mut [p::Filesystem], device: &str, role: &str) {
    if let Some(fs) = filesystems.iter_mut().find(|fs| fs.device == device) {
        fs.role = Some(role.to_owned());
    }
}

/// The role a mount point gives a filesystem.
pub fn role_of(mountpoint: &str, vfstype: &str) -> String {
    match (mountpoint, vfstype) {
        (_, "swap") => "swap",
        ("/", _) => "root",
        ("/boot", _) => "boot",
        ("/boot/efi" | "/efi", _) => "efi",
        ("/home", _) => "home",
        ("/var", _) => "var",
        ("/usr", _) => "usr",
        ("/tmp", _) => "tmp",
        _ => "data",
    }
    .to_owned()
}

fn spec_text(spec: &Spec) -> String {
    match spec {
        Spec::Uuid(u) => format!("UUID={u}"),
        Spec::Label(l) => format!("LABEL={l}"),
        Spec::PartUuid(u) => format!("PARTUUID={u}"),
        Spec::PartLabel(l) => format!("PARTLABEL={l}"),
        Spec::DevPath(s) | Spec::ById(s) | Spec::ByPath(s) | Spec::Network(s) | Spec::None_(s) => {
            s.clone()
        }
    }
}

/// The device-mapper name (`mapper/vg0-root`) of an LVM logical volume named as
/// `mapper/NAME` or `VG/LV` under /dev (LVM doubles the hyphens inside each name).
pub fn lv_mapper_name(name: &str) -> Option<String> {
    if let Some(n) = name.strip_prefix("mapper/") {
        return (!n.is_empty() && !n.contains('/')).then(|| name.to_owned());
    }
    let (vg, lv) = name.split_once('/')?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b))
    };
    (plain(vg) && plain(lv))
        .then(|| format!("mapper/{}-{}", vg.replace('-', "--"), lv.replace('-', "--")))
}

/// Resolves every entry of a parsed fstab against what discovery found.
pub fn resolve_fstab(
    tab: &fstab::Fstab,
    source: &str,
    dev_prefix: &str,
    filesystems: &[p::Filesystem],
    partitions: &[p::Partition],
    aliases: &[(String, String)],
) -> p::FstabReport {
    let entries = tab
        .entries
        .iter()
        .map(|e| {
            let mut out = p::FstabEntry {
                line: e.line,
                spec: spec_text(&e.spec),
                file: e.file.clone(),
                vfstype: e.vfstype.clone(),
                options: e.options.join(","),
                passno: e.passno,
                ..Default::default()
            };
            let matches: Vec<String> = match (&e.kind, &e.spec) {
                (Kind::Pseudo | Kind::Network | Kind::Bind, _) => {
                    out.resolution = p::Resolution::NotADevice;
                    return out;
                }
                (_, Spec::Uuid(u)) => filesystems
                    .iter()
                    .filter(|fs| {
                        fs.uuid
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(u))
                    })
                    .map(|fs| fs.device.clone())
                    .collect(),
                (_, Spec::Label(l)) => filesystems
                    .iter()
                    .filter(|fs| fs.label.as_deref() == Some(l.as_str()))
                    .map(|fs| fs.device.clone())
                    .collect(),
                (_, Spec::PartUuid(u)) => partitions
                    .iter()
                    .filter(|pt| {
                        pt.partuuid
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(u))
                    })
                    .map(|pt| format!("{dev_prefix}{}", pt.name))
                    .collect(),
                (_, Spec::PartLabel(l)) => partitions
                    .iter()
                    .filter(|pt| pt.partlabel.as_deref() == Some(l.as_str()))
                    .map(|pt| format!("{dev_prefix}{}", pt.name))
                    .collect(),
                (_, Spec::DevPath(path)) => {
                    let name = path.strip_prefix("/dev/").unwrap_or(path);
                    let is_kernel_name = !name.contains('/');
                    out.kernel_name = is_kernel_name;
                    let dev = format!("{dev_prefix}{name}");
                    let known = filesystems.iter().any(|fs| fs.device == dev)
                        || partitions.iter().any(|pt| pt.name == name);
                    if is_kernel_name && known {
                        vec![dev]
                    } else {
                        // A name the guest gives an opened layer (crypttab, md), else an LVM
                        // logical volume, by its device-mapper name or as /dev/VG/LV.
                        aliases
                            .iter()
                            .find(|(a, _)| a == name)
                            .map(|(_, d)| d.clone())
                            .or_else(|| lv_mapper_name(name).map(|n| format!("{dev_prefix}{n}")))
                            .filter(|d| filesystems.iter().any(|fs| fs.device == *d))
                            .into_iter()
                            .collect()
                    }
                }
                (_, Spec::ById(_) | Spec::ByPath(_)) => vec![],
                (_, Spec::Network(_) | Spec::None_(_)) => {
                    out.resolution = p::Resolution::NotADevice;
                    return out;
                }
            };
            match matches.len() {
                0 => out.resolution = p::Resolution::Missing,
                1 => {
                    out.resolution = p::Resolution::Resolved;
                    out.device = matches.into_iter().next();
                }
                _ => {
                    out.resolution = p::Resolution::Ambiguous;
                    out.candidates = matches;
                }
            }
            out
        })
        .collect();
    p::FstabReport {
        source: source.to_owned(),
        entries,
        malformed: tab
            .malformed
            .iter()
            .map(|m| p::FstabMalformed {
                line: m.line,
                text: m.text.clone(),
                reason: m.reason.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::scan_disk;
    use std::io::Cursor;

    fn found(disks: &[(&str, Vec<u8>)]) -> Found {
        let scans: Vec<DiskScan> = disks
            .iter()
            .map(|(n, b)| scan_disk(n, &mut Cursor::new(b), b.len() as u64))
            .collect();
        assemble(&scans, "/dev/", &mut |_| None, None, &Opened::default())
    }

    #[test]
    fn a_root_named_by_its_disk_is_the_one_os_root_on_it_or_opened_from_it() {
        let disk = |name: &str, parts: &[&str]| p::Disk {
            name: name.into(),
            partitions: parts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut f = Found {
            disks: vec![
                disk("vda", &["vda1", "vda2"]),
                disk("vdb", &["vdb1", "vdb2"]),
                disk("mapper/vg0-root", &[]),
            ],
            ..Default::default()
        };
        let candidate = |d: &str| p::RootCandidate {
            device: d.into(),
            ..Default::default()
        };
        // An LVM root opened from the named disk's copy, another guest's root on vda1.
        f.os.candidates = vec![candidate("/dev/vda1"), candidate("/dev/mapper/vg0-root")];
        assert_eq!(
            root_on_named_disk("/dev/vdb", "/dev/", &f),
            Some(Ok("/dev/mapper/vg0-root".into()))
        );
        assert_eq!(
            root_on_named_disk("vdb2", "/dev/", &f),
            Some(Ok("/dev/mapper/vg0-root".into()))
        );
        // vda holds one of its own and what was opened: two, none chosen.
        let e = root_on_named_disk("/dev/vda", "/dev/", &f)
            .unwrap()
            .unwrap_err();
        assert!(e.contains("several OS roots"), "{e}");
        // Not a disk at all, or a disk with nothing.
        assert_eq!(root_on_named_disk("/dev/vdz", "/dev/", &f), None);
        assert_eq!(
            root_on_named_disk("/dev/mapper/vg0-root", "/dev/", &f),
            None
        );
        f.os.candidates.clear();
        assert!(root_on_named_disk("/dev/vdb", "/dev/", &f)
            .unwrap()
            .is_err());
    }

    #[test]
    fn an_empty_or_blank_disk_is_said_to_be_so() {
        let f = found(&[("vda", vec![]), ("vdb", vec![0u8; 1 << 20])]);
        assert_eq!(
            f.warnings,
            [
                "vda is empty (0 bytes)".to_owned(),
                "vdb holds no partition table and no filesystem this rescue knows (1048576 bytes: blank, wiped, or a format it does not read)".to_owned(),
            ]
        );
        assert!(f.os.root_device.is_none());
        // A disk with a filesystem says nothing of the kind.
        let mut swap = vec![0u8; 1 << 20];
        swap[4086..4096].copy_from_slice(b"SWAPSPACE2");
        swap[1024] = 1;
        swap[1028..1032].copy_from_slice(&255u32.to_le_bytes());
        let f = found(&[("vda", swap)]);
        assert_eq!(f.filesystems.len(), 1, "{:?}", f.filesystems);
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    }

    #[test]
    fn logical_volumes_are_found_by_either_of_their_names() {
        assert_eq!(
            lv_mapper_name("vg0/root").as_deref(),
            Some("mapper/vg0-root")
        );
        assert_eq!(
            lv_mapper_name("my-vg/lv-home").as_deref(),
            Some("mapper/my--vg-lv--home")
        );
        assert_eq!(
            lv_mapper_name("mapper/vg0-root").as_deref(),
            Some("mapper/vg0-root")
        );
        assert_eq!(lv_mapper_name("disk/by-uuid/x"), None);
        assert_eq!(lv_mapper_name("vda1"), None);
        let tab = fstab::parse(
            b"/dev/mapper/vg0-root / ext4 defaults 0 1\n/dev/vg0/home /home ext4 defaults 0 2\n/dev/vg0/gone /srv ext4 defaults 0 2\n",
        );
        let fss: Vec<p::Filesystem> = ["/dev/mapper/vg0-root", "/dev/mapper/vg0-home"]
            .iter()
            .map(|d| p::Filesystem {
                device: (*d).into(),
                ..Default::default()
            })
            .collect();
        let r = resolve_fstab(&tab, "/etc/fstab", "/dev/", &fss, &[], &[]);
        let got: Vec<_> = r
            .entries
            .iter()
            .map(|e| (e.resolution, e.device.as_deref(), e.kernel_name))
            .collect();
        assert_eq!(
            got,
            [
                (p::Resolution::Resolved, Some("/dev/mapper/vg0-root"), false),
                (p::Resolution::Resolved, Some("/dev/mapper/vg0-home"), false),
                (p::Resolution::Missing, None, false),
            ]
        );
    }

    #[test]
    fn opened_layers_go_by_the_guest_s_names_for_them() {
        let o = Opened {
            luks: vec![("6e2e".into(), "/dev/mapper/luks-6e2e".into())],
            md: vec![("guest01:root".into(), "/dev/md127".into())],
        };
        assert_eq!(
            o.aliases("# name source key options\nhome_crypt UUID=6E2E none luks\nswap_crypt /dev/vdc /dev/urandom swap\n"),
            [
                ("mapper/home_crypt".to_owned(), "/dev/mapper/luks-6e2e".to_owned()),
                ("md/guest01:root".to_owned(), "/dev/md127".to_owned()),
                ("md/root".to_owned(), "/dev/md127".to_owned()),
            ]
        );
    }
}
