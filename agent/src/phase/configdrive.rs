//! Settings from drives, for boots through the rescue media, which have no per-rescue kernel
//! command line:
//! - an OpenStack config drive (label `config-2`, ISO 9660 or FAT): the server metadata in its
//!   `openstack/latest/meta_data.json` (`vmrescue_mode`, ... see `vmrescue_protocol::params`),
//!   for an image booted by `openstack server rescue --image`;
//! - the settings drive `vmrescue rescue --domain` attaches (label
//!   `vmrescue_protocol::paths::SETTINGS_LABEL`): `vmrescue.KEY=VALUE` words; it wins. It is
//!   taken only from a cdrom, and only when exactly one carries that label: a guest can label
//!   a filesystem on its own disks as it likes, but it cannot add a cdrom to its rescue.
//!
//! Each drive is read once, read-only, and set apart from the guest's disks.

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::inventory::DiskScan;
use vmrescue_discovery::osroot::Tree;
use vmrescue_protocol::params::{self, Settings};
use vmrescue_protocol::paths;
use vmrescue_protocol::secrets::{self, Secrets};
use vmrescue_protocol::Step;

use crate::inspect::MountedTree;
use crate::reporter::Reporter;

/// The label nova gives a config drive.
pub const LABEL: &str = "config-2";
/// What the drive is marked as among the scans.
pub const MEDIUM: &str = "config drive";
const META_DATA: &str = "/openstack/latest/meta_data.json";
/// Largest metadata file read.
const MAX_META: usize = 1 << 20;

/// The drive labelled `label` among the scans: (disk index, volume name, type).
pub fn find(scans: &[DiskScan], label: &str) -> Option<(usize, String, FsType)> {
    find_all(scans, label).into_iter().next()
}

/// Every ISO 9660 or FAT volume labelled `label` among the scans, in scan order.
pub fn find_all(scans: &[DiskScan], label: &str) -> Vec<(usize, String, FsType)> {
    scans
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.volumes.iter().filter_map(move |v| {
                let p = v.probe.as_ref()?;
                let label_ok = p
                    .label
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(label));
                (label_ok && matches!(p.fstype, FsType::Iso9660 | FsType::Vfat))
                    .then(|| (i, v.name.clone(), p.fstype))
            })
        })
        .collect()
}

/// Where the host's settings drive is: the one cdrom labelled `paths::SETTINGS_LABEL`, or why
/// none is taken (pure).
pub fn settings_drive(
    scans: &[DiskScan],
    cdroms: &[DiskScan],
) -> (Option<(String, FsType)>, Vec<String>) {
    let mut warnings: Vec<String> = find_all(scans, paths::SETTINGS_LABEL)
        .into_iter()
        .map(|(_, name, _)| {
            format!(
                "/dev/{name} is labelled {} but is a disk, not the host's cdrom: it is a guest disk and its settings are ignored",
                paths::SETTINGS_LABEL
            )
        })
        .collect();
    let found = find_all(cdroms, paths::SETTINGS_LABEL);
    match found.as_slice() {
        [] => (None, warnings),
        [(_, name, fstype)] => (Some((name.clone(), *fstype)), warnings),
        many => {
            let names: Vec<String> = many.iter().map(|(_, n, _)| format!("/dev/{n}")).collect();
            warnings.push(format!(
                "{} cdroms are labelled {} ({}): the host attaches one, so none is trusted and their settings are ignored",
                many.len(),
                paths::SETTINGS_LABEL,
                names.join(", ")
            ));
            (None, warnings)
        }
    }
}

/// The string values of `meta_data.json`'s `meta` object (pure).
pub fn meta_pairs(json: &[u8]) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("{META_DATA} is not JSON: {e}"))?;
    let Some(meta) = v.get("meta") else {
        return Ok(Vec::new());
    };
    let meta = meta
        .as_object()
        .ok_or_else(|| format!("{META_DATA}: meta is not an object"))?;
    Ok(meta
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect())
}

/// The cdroms once the host's settings drive is among them (the host said it attached one: a
/// SATA or IDE cdrom shows up after the disks), or `limit` passed (then a warning).
fn wait_for_settings_drive(limit: std::time::Duration, rep: &mut Reporter) -> Vec<DiskScan> {
    let until = std::time::Instant::now() + limit;
    loop {
        let cdroms = cdrom_scans();
        if !find_all(&cdroms, paths::SETTINGS_LABEL).is_empty() {
            return cdroms;
        }
        if std::time::Instant::now() >= until {
            rep.warn(
                Step::Cmdline,
                None,
                format!(
                    "the host said it attached a settings drive, but no cdrom labelled {} showed up within {} s: its secrets (LUKS keys) are not read",
                    paths::SETTINGS_LABEL,
                    limit.as_secs()
                ),
            );
            return cdroms;
        }
        let late = crate::modules::rescan(std::path::Path::new("/sys"));
        if !late.is_empty() {
            log::info!("modules for the settings drive: {}", late.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The cdroms (`sr*`), which the guest-disk scan leaves out: nova attaches an ISO 9660 config
/// drive as one.
fn cdrom_scans() -> Vec<DiskScan> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with("sr") && n[2..].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let mut f = std::fs::File::open(format!("/dev/{name}")).ok()?;
            Some(vmrescue_discovery::inventory::scan_disk(
                &name,
                &mut f,
                sectors.saturating_mul(512),
            ))
        })
        .collect()
}

/// Reads the drives' vmrescue settings into `settings`: the config drive's, then the settings
/// drive's (which win). Returns the secrets (LUKS keys, the access asked for) the settings
/// drive carries: the only place they come from.
pub fn apply(scans: &mut [DiskScan], settings: &mut Settings, rep: &mut Reporter) -> Secrets {
    let cdroms = if settings.settings_drive {
        wait_for_settings_drive(
            std::time::Duration::from_secs(settings.settle_secs.max(30)),
            rep,
        )
    } else {
        cdrom_scans()
    };
    if let Some(data) = read_drive(scans, &cdroms, LABEL, META_DATA, rep) {
        match meta_pairs(&data) {
            Ok(pairs) => {
                let ours = pairs
                    .iter()
                    .filter(|(k, _)| k.starts_with(params::META_PREFIX))
                    .count();
                for w in params::apply_meta(settings, &pairs) {
                    rep.warn(Step::Cmdline, None, w);
                }
                if ours > 0 {
                    rep.progress(
                        Step::Cmdline,
                        None,
                        format!(
                            "{ours} setting(s) from the config drive's metadata; mode {}",
                            settings.mode.as_str()
                        ),
                    );
                }
            }
            Err(e) => rep.warn(Step::Cmdline, None, format!("config drive: {e}")),
        }
    }
    let (drive, warnings) = settings_drive(scans, &cdroms);
    for w in warnings {
        rep.warn(Step::Cmdline, None, w);
    }
    let mut files = drive
        .map(|(name, fstype)| {
            read_files(
                &name,
                fstype,
                paths::SETTINGS_LABEL,
                &[paths::SETTINGS_FILE, paths::SECRETS_FILE],
                rep,
            )
        })
        .unwrap_or_default()
        .into_iter();
    let (words, secrets) = (files.next().flatten(), files.next().flatten());
    let mut keys = Secrets::default();
    if let Some(mut data) = secrets {
        let (k, warnings) = secrets::decode(&data);
        data.iter_mut().for_each(|b| *b = 0);
        for w in warnings {
            rep.warn(Step::Cmdline, None, format!("settings drive: {w}"));
        }
        if !k.is_empty() {
            let a = &k.access;
            let access = [
                a.root_password
                    .as_ref()
                    .map(|_| "a root password hash".to_owned()),
                (!a.ssh_keys.is_empty()).then(|| format!("{} SSH key(s)", a.ssh_keys.len())),
                (!a.unlock.is_empty()).then(|| format!("{} user(s) to unlock", a.unlock.len())),
            ];
            let what: Vec<String> = std::iter::once(format!("{} LUKS key(s)", k.luks.len()))
                .chain(access.into_iter().flatten())
                .collect();
            rep.progress(
                Step::Cmdline,
                None,
                format!("{} from the host's settings drive", what.join(", ")),
            );
        }
        keys = k;
    }
    if let Some(data) = words {
        let text = String::from_utf8_lossy(&data);
        for w in params::apply_words(settings, &text) {
            rep.warn(Step::Cmdline, None, format!("settings drive: {w}"));
        }
        rep.progress(
            Step::Cmdline,
            None,
            format!(
                "settings from the host's settings drive; mode {}",
                settings.mode.as_str()
            ),
        );
    }
    keys
}

/// The file `path` on the drive labelled `label` (a disk among `scans`, which is then set apart
/// from the guest's, or a cdrom), read-only.
fn read_drive(
    scans: &mut [DiskScan],
    cdroms: &[DiskScan],
    label: &str,
    path: &str,
    rep: &mut Reporter,
) -> Option<Vec<u8>> {
    let (name, fstype) = match find(scans, label) {
        Some((disk, name, fstype)) => {
            if let Some(s) = scans.get_mut(disk) {
                s.medium = Some(MEDIUM.into());
            }
            (name, fstype)
        }
        None => find(cdroms, label).map(|(_, name, fstype)| (name, fstype))?,
    };
    read_volume(&name, fstype, label, path, rep)
}

/// The file `path` on the volume `name` (the drive labelled `label`), mounted read-only.
fn read_volume(
    name: &str,
    fstype: FsType,
    label: &str,
    path: &str,
    rep: &mut Reporter,
) -> Option<Vec<u8>> {
    read_files(name, fstype, label, &[path], rep)
        .into_iter()
        .next()
        .flatten()
}

/// The files `paths` (each, or `None`) on the volume `name`, mounted read-only once.
fn read_files(
    name: &str,
    fstype: FsType,
    label: &str,
    paths: &[&str],
    rep: &mut Reporter,
) -> Vec<Option<Vec<u8>>> {
    let dev = format!("/dev/{name}");
    let driver = if fstype == FsType::Iso9660 {
        "iso9660"
    } else {
        "vfat"
    };
    let tree = match MountedTree::mount_plain(&dev, fstype, driver, "settings-drive") {
        Ok(t) => t,
        Err(e) => {
            rep.warn(Step::Cmdline, Some(&dev), format!("{label} drive: {e}"));
            return Vec::new();
        }
    };
    let data = paths.iter().map(|p| tree.read(p, MAX_META)).collect();
    if let Err(e) = tree.unmount() {
        rep.warn(Step::Cmdline, Some(&dev), format!("{label} drive: {e}"));
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmrescue_discovery::inventory::Volume;
    use vmrescue_discovery::probe::{Probe, Usage};

    fn drive(name: &str, fstype: FsType, label: &str) -> DiskScan {
        DiskScan {
            name: name.into(),
            size: 1 << 20,
            table: None,
            medium: None,
            volumes: vec![Volume {
                name: name.into(),
                offset: 0,
                size: 1 << 20,
                partition: None,
                probe: Some(Probe {
                    fstype,
                    uuid: None,
                    label: Some(label.into()),
                    usage: Usage::Filesystem,
                    version: None,
                    uuid_sub: None,
                }),
                ext_backup: None,
            }],
            warnings: vec![],
        }
    }

    #[test]
    fn the_settings_drive_is_the_one_cdrom_with_its_label_never_a_guest_disk() {
        let ours = drive("sr1", FsType::Iso9660, paths::SETTINGS_LABEL);
        let install = drive("sr0", FsType::Iso9660, "Debian 12 amd64");
        // A guest labels a FAT partition of its own disk like the host's drive.
        let imitation = drive("vdb", FsType::Vfat, paths::SETTINGS_LABEL);

        let (found, w) = settings_drive(&[], &[install.clone(), ours.clone()]);
        assert_eq!(found, Some(("sr1".into(), FsType::Iso9660)));
        assert!(w.is_empty(), "{w:?}");

        let (found, w) = settings_drive(
            std::slice::from_ref(&imitation),
            std::slice::from_ref(&ours),
        );
        assert_eq!(
            found,
            Some(("sr1".into(), FsType::Iso9660)),
            "the cdrom wins"
        );
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("/dev/vdb") && w[0].contains("guest disk"),
            "{w:?}"
        );

        let (found, w) = settings_drive(&[imitation], std::slice::from_ref(&install));
        assert_eq!(found, None, "a disk alone is never the settings drive");
        assert_eq!(w.len(), 1, "{w:?}");

        let twin = drive("sr2", FsType::Iso9660, paths::SETTINGS_LABEL);
        let (found, w) = settings_drive(&[], &[ours, twin]);
        assert_eq!(found, None, "two drives: neither is trusted");
        assert!(w[0].contains("/dev/sr1, /dev/sr2"), "{w:?}");

        assert_eq!(settings_drive(&[], &[install]), (None, vec![]));
    }

    #[test]
    fn meta_strings_only() {
        let pairs = meta_pairs(
            br#"{"uuid":"x","meta":{"vmrescue_mode":"repair","n":3,"role":"db"},"hostname":"h"}"#,
        )
        .unwrap();
        assert_eq!(
            pairs,
            [
                ("role".to_owned(), "db".to_owned()),
                ("vmrescue_mode".to_owned(), "repair".to_owned())
            ]
        );
        assert_eq!(meta_pairs(br#"{"uuid":"x"}"#).unwrap(), []);
        assert!(meta_pairs(br#"{"meta":[1]}"#).is_err());
        assert!(meta_pairs(b"\xff").is_err());
    }
}
