//! Fixing the guest's `/etc/fstab` so the next boot does not hang on it:
//!
//! - kernel names (`/dev/vdb1`) become `UUID=` (attach order changes kernel names);
//! - an entry whose device is absent gets `nofail` and a short `x-systemd.device-timeout`
//!   instead of being deleted (the volume may come back); a `/` entry naming an absent device
//!   is pointed at the root that was found;
//! - a type that contradicts the filesystem found is corrected from the probe;
//! - malformed lines are commented out with the reason;
//! - `errors=remount-ro` is added to an ext root without an `errors=` option (policy).
//!
//! Untouched lines keep their exact bytes. The result is parsed again and must resolve before
//! it is planned: an edit that would leave an entry unresolvable and able to stop the boot is
//! refused.

use vmrescue_discovery::assemble::resolve_fstab;
use vmrescue_discovery::fstab::{self, strip_eol, Entry, Kind, Spec};
use vmrescue_discovery::fstype::{Checker, FsType};
use vmrescue_protocol::{Filesystem, Resolution};

use super::{Action, Context, Plan};

/// The fixed text and what changed.
#[derive(Debug, Default)]
pub struct Fixed {
    pub text: Vec<u8>,
    /// One description per edit, e.g. `line 3: /dev/vdb1 -> UUID=...`.
    pub edits: Vec<String>,
    /// What was seen and left alone.
    pub notes: Vec<String>,
}

/// Plans the rewrite of an existing `/etc/fstab`, if it needs one.
pub fn plan(text: &[u8], ctx: &Context, p: &mut Plan) {
    let f = fix(text, ctx);
    p.notes.extend(f.notes);
    if f.edits.is_empty() {
        return;
    }
    p.push(
        Action::WriteFile {
            path: "/etc/fstab".into(),
            content: f.text,
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        format!("fstab fixed: {}", f.edits.join("; ")),
        false,
    );
}

/// The type of a filesystem the report lists.
fn fstype(fs: &Filesystem) -> FsType {
    FsType::parse(&fs.fstype)
}

/// The fstab type to write for a filesystem the report lists ([`FsType::fstab_type`]; a name
/// this crate does not know stays as the report has it).
fn fstab_type(fs: &Filesystem) -> &str {
    match fstype(fs) {
        FsType::Unknown => &fs.fstype,
        t => t.fstab_type(),
    }
}

/// Whether discovery can tell that what an entry names is absent: filesystem and partition
/// identifiers and kernel names can be looked up; device-mapper, MD, by-id/by-path links and
/// swap files cannot be seen from the rescue, so they are never called missing.
fn verifiable(e: &Entry, kernel_name: bool) -> bool {
    match &e.spec {
        Spec::Uuid(_) | Spec::Label(_) | Spec::PartUuid(_) | Spec::PartLabel(_) => true,
        // Only disk names: MD, device-mapper, loop or network block devices are not assembled
        // in the rescue.
        Spec::DevPath(p) => {
            let name = p.strip_prefix("/dev/").unwrap_or(p);
            kernel_name
                && ["vd", "sd", "hd", "xvd", "nvme", "mmcblk"]
                    .iter()
                    .any(|d| name.starts_with(d))
        }
        _ => false,
    }
}

/// Whether fstab's `listed` type cannot mount the filesystem `found`.
fn wrong_type(listed: &str, found: &Filesystem) -> bool {
    !fstype(found).mountable_as(listed)
}

fn by_device<'a>(ctx: &'a Context, dev: &str) -> Option<&'a Filesystem> {
    ctx.filesystems.iter().find(|f| f.device == dev)
}

/// Computes the fixed fstab.
pub fn fix(text: &[u8], ctx: &Context) -> Fixed {
    let tab = fstab::parse(text);
    let resolved = resolve_fstab(
        &tab,
        ctx.root_device,
        ctx.dev_prefix,
        ctx.filesystems,
        ctx.partitions,
        &[],
    );
    let root_fs = by_device(ctx, ctx.root_device);
    // Volumes this rescue does not open: what fstab names and was not found may be inside.
    let unopened: Vec<&str> = ctx
        .filesystems
        .iter()
        .filter(|f| fstype(f).is_container())
        .map(|f| f.device.as_str())
        .collect();
    let mut out = Fixed::default();
    let mut lines = tab.lines.clone();
    for (e, r) in tab.entries.iter().zip(&resolved.entries) {
        let mut new = e.clone();
        let mut what: Vec<String> = Vec::new();
        let mut spec = None;
        let device_like = matches!(e.kind, Kind::Device | Kind::Swap);
        match (r.resolution, &r.device) {
            (Resolution::Resolved, Some(dev)) if device_like => {
                let fs = by_device(ctx, dev);
                if r.kernel_name {
                    match fs.and_then(|f| f.uuid.as_deref()) {
                        Some(u) => {
                            spec = Some(format!("UUID={u}"));
                            what.push(format!("{} -> UUID={u}", r.spec));
                        }
                        None => out.notes.push(format!(
                            "fstab line {}: {} is a kernel name but its filesystem has no UUID; left as it is",
                            e.line, r.spec
                        )),
                    }
                }
                if let Some(fs) = fs {
                    let wrong = wrong_type(&e.vfstype, fs)
                        && !(e.kind == Kind::Swap && fstype(fs) == FsType::Swap);
                    if wrong {
                        let t = fstab_type(fs);
                        what.push(format!("type {} -> {t}", e.vfstype));
                        new.vfstype = t.to_owned();
                    }
                }
            }
            (Resolution::Missing, _) if device_like && !verifiable(e, r.kernel_name) => {}
            (Resolution::Missing, _) if device_like && e.file != "/" && !unopened.is_empty() => {
                out.notes.push(format!(
                    "fstab line {}: {} ({}) was not found, but it may be inside {}, which this rescue did not open; left as it is",
                    e.line,
                    r.spec,
                    e.file,
                    unopened.join(", ")
                ))
            }
            (Resolution::Missing, _) if device_like => {
                let root_uuid = root_fs.and_then(|f| f.uuid.as_deref());
                match (e.file.as_str(), root_uuid) {
                    ("/", Some(u)) => {
                        spec = Some(format!("UUID={u}"));
                        what.push(format!(
                            "{} is absent; / now names the root found ({})",
                            r.spec, ctx.root_device
                        ));
                        if let Some(fs) = root_fs {
                            if wrong_type(&e.vfstype, fs) {
                                let t = fstab_type(fs);
                                what.push(format!("type {} -> {t}", e.vfstype));
                                new.vfstype = t.to_owned();
                            }
                        }
                    }
                    ("/", None) => out.notes.push(format!(
                        "fstab line {}: / names {} which is absent, and the root found has no UUID; left as it is",
                        e.line, r.spec
                    )),
                    _ if !e.is_nofail() => {
                        new.options.push("nofail".into());
                        if !e.has_option("x-systemd.device-timeout") {
                            new.options.push(format!(
                                "x-systemd.device-timeout={}",
                                ctx.policy.device_timeout
                            ));
                        }
                        what.push(format!(
                            "{} ({}) is absent: nofail added so the boot does not wait for it",
                            r.spec, e.file
                        ));
                    }
                    _ => {}
                }
            }
            (Resolution::Ambiguous, _) => out.notes.push(format!(
                "fstab line {}: {} matches several devices ({}); left as it is",
                e.line,
                r.spec,
                r.candidates.join(", ")
            )),
            _ => {}
        }
        // errors=remount-ro on an ext root.
        let root_is_ext = e.file == "/"
            && (FsType::parse(&new.vfstype).is_ext()
                || (new.vfstype == "auto" && root_fs.is_some_and(|f| fstype(f).is_ext())));
        if ctx.policy.errors_remount_ro && root_is_ext && !e.has_option("errors") {
            if new.options == ["defaults"] {
                new.options.clear();
            }
            new.options.push("errors=remount-ro".into());
            what.push("errors=remount-ro added to the root".into());
        }
        if !what.is_empty() {
            let raw = &tab.lines[e.line - 1];
            let type_changed = new.vfstype != e.vfstype;
            let options_changed = new.options != e.options;
            lines[e.line - 1] = render(
                raw,
                spec.as_deref(),
                type_changed.then_some(new.vfstype.as_str()),
                options_changed.then(|| new.options.join(",")).as_deref(),
            );
            out.edits
                .push(format!("line {}: {}", e.line, what.join(", ")));
        }
    }
    for m in &tab.malformed {
        let raw = &tab.lines[m.line - 1];
        let mut l = format!(
            "# vmrescue: commented out, {}: ",
            m.reason.replace('\n', " ")
        )
        .into_bytes();
        l.extend_from_slice(strip_eol(raw));
        l.extend_from_slice(eol(raw));
        lines[m.line - 1] = l;
        out.edits.push(format!(
            "line {}: malformed ({}), commented out",
            m.line, m.reason
        ));
    }
    // An edited last line that had no newline gets one (`render`).
    out.text = lines.concat();
    if out.edits.is_empty() {
        out.text = text.to_vec();
        return out;
    }
    if let Err(why) = validate(&out.text, &tab.entries, ctx) {
        out.notes.push(format!(
            "fstab fixes not made: the fixed file would not be safe ({why}); the edits were: {}",
            out.edits.join("; ")
        ));
        out.edits.clear();
        out.text = text.to_vec();
    }
    out
}

/// The fixed file parses without errors, keeps every entry, and every device entry resolves
/// or cannot block the boot (`nofail`).
fn validate(text: &[u8], before: &[Entry], ctx: &Context) -> Result<(), String> {
    let tab = fstab::parse(text);
    if let Some(m) = tab.malformed.first() {
        return Err(format!("line {} does not parse: {}", m.line, m.reason));
    }
    if tab.entries.len() != before.len() {
        return Err(format!(
            "{} entries instead of {}",
            tab.entries.len(),
            before.len()
        ));
    }
    let r = resolve_fstab(
        &tab,
        ctx.root_device,
        ctx.dev_prefix,
        ctx.filesystems,
        ctx.partitions,
        &[],
    );
    for (e, res) in tab.entries.iter().zip(&r.entries) {
        let blocking = matches!(e.kind, Kind::Device | Kind::Swap)
            && !e.is_nofail()
            && verifiable(e, res.kernel_name);
        if blocking && res.resolution == Resolution::Missing {
            return Err(format!(
                "line {}: {} would still name an absent device",
                e.line, res.spec
            ));
        }
    }
    Ok(())
}

fn eol(raw: &[u8]) -> &'static [u8] {
    if raw.ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// fstab escapes for a field (space, tab, newline, backslash, `#` at the start).
fn escape(field: &str) -> String {
    let mut s = String::new();
    for (i, c) in field.chars().enumerate() {
        match c {
            ' ' => s.push_str("\\040"),
            '\t' => s.push_str("\\011"),
            '\n' => s.push_str("\\012"),
            '\\' => s.push_str("\\134"),
            '#' if i == 0 => s.push_str("\\043"),
            c => s.push(c),
        }
    }
    s
}

/// The line with the fields that changed replaced; the others keep their exact bytes (an
/// unchanged mount point with bytes that are not UTF-8 stays as it was). Fields are separated
/// by a tab; a missing options field is added when the options change.
fn render(raw: &[u8], spec: Option<&str>, vfstype: Option<&str>, options: Option<&str>) -> Vec<u8> {
    let mut fields: Vec<Vec<u8>> = strip_eol(raw)
        .split(|&c| c == b' ' || c == b'\t')
        .filter(|f| !f.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    // A trailing comment after six fields stays one field.
    if fields.len() > 6 {
        let rest = fields.split_off(6).join(&b' ');
        fields.push(rest);
    }
    if options.is_some() && fields.len() < 4 {
        fields.resize(4, b"defaults".to_vec());
    }
    for (i, v) in [
        (0, spec.map(str::to_owned)),
        (2, vfstype.map(escape)),
        (3, options.map(escape)),
    ] {
        if let (Some(v), Some(f)) = (v, fields.get_mut(i)) {
            *f = v.into_bytes();
        }
    }
    let mut l = fields.join(&b'\t');
    l.extend_from_slice(eol(raw));
    l
}

/// A new fstab for a root that lost its own: every filesystem found, by UUID. Filesystems whose
/// mount point cannot be known are listed commented out, for the operator to enable.
pub fn rebuild(ctx: &Context) -> Vec<u8> {
    let mut s = String::from(
        "# /etc/fstab rebuilt by vmrescue from the filesystems it found (review it).\n\
         # <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n",
    );
    let root = by_device(ctx, ctx.root_device);
    if let Some(fs) = root {
        let opts = if fstype(fs).is_ext() && ctx.policy.errors_remount_ro {
            "errors=remount-ro"
        } else {
            "defaults"
        };
        s.push_str(&format!(
            "{}\t/\t{}\t{opts}\t0\t1\n",
            spec_of(fs),
            fstab_type(fs)
        ));
    }
    for fs in ctx
        .filesystems
        .iter()
        .filter(|f| f.device != ctx.root_device)
    {
        let hint = ctx.evidence.mount_of(&fs.device);
        let known = fs
            .mountpoint
            .clone()
            .or_else(|| match fs.role.as_deref() {
                Some("boot") => Some("/boot".into()),
                Some("efi") => Some("/boot/efi".into()),
                _ => None,
            })
            .or_else(|| hint.map(|h| h.mountpoint.clone()));
        if let (Some(h), None) = (hint, &fs.mountpoint) {
            s.push_str(&format!("# {}: {}\n", escape(&h.mountpoint), h.source));
        }
        let line = match (fstype(fs), known) {
            (FsType::Swap, _) => format!("{}\tnone\tswap\tsw\t0\t0\n", spec_of(fs)),
            (FsType::Vfat, Some(mp)) => format!(
                "{}\t{}\tvfat\tumask=0077,nofail\t0\t1\n",
                spec_of(fs),
                escape(&mp)
            ),
            (t, Some(mp)) if t.is_mountable() => {
                // fsck at boot does nothing for xfs and btrfs (their fsck is a no-op).
                let pass = if t.checker() == Some(Checker::E2fsck) {
                    2
                } else {
                    0
                };
                format!(
                    "{}\t{}\t{}\tdefaults,nofail\t0\t{pass}\n",
                    spec_of(fs),
                    escape(&mp),
                    t.fstab_type()
                )
            }
            (t, None) if t.is_mountable() => format!(
                "# mount point unknown ({t} on {}):\n#{}\t/mnt/CHANGE-ME\t{}\tdefaults,nofail\t0\t0\n",
                fs.device,
                spec_of(fs),
                t.fstab_type()
            ),
            _ => continue,
        };
        s.push_str(&line);
    }
    s.into_bytes()
}

fn spec_of(fs: &Filesystem) -> String {
    match &fs.uuid {
        Some(u) => format!("UUID={u}"),
        None => fs.device.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Policy;
    use super::*;

    const R: &str = "2c309045-caea-4e02-8bc7-cf04b2b71566";
    const H: &str = "8f1a0c55-0d0e-4a63-9a0b-1c2d3e4f5a6b";

    fn filesystems() -> Vec<Filesystem> {
        vec![
            Filesystem {
                device: "/dev/vda1".into(),
                fstype: "ext4".into(),
                uuid: Some(R.into()),
                ..Default::default()
            },
            Filesystem {
                device: "/dev/vdb1".into(),
                fstype: "xfs".into(),
                uuid: Some(H.into()),
                ..Default::default()
            },
            Filesystem {
                device: "/dev/vda2".into(),
                fstype: "swap".into(),
                uuid: Some("5w".into()),
                ..Default::default()
            },
        ]
    }

    fn ctx(fss: &[Filesystem], policy: Policy) -> Context<'_> {
        Context {
            root_device: "/dev/vda1",
            filesystems: fss,
            partitions: &[],
            dev_prefix: "/dev/",
            os_id: None,
            hostname: None,
            reference: None,
            today: 0,
            fresh_machine_id: "5eed5eed5eed5eed5eed5eed5eed5eed",
            policy,
            access: &vmrescue_protocol::secrets::access::NO_ACCESS,
            evidence: &crate::plan::evidence::NO_EVIDENCE,
            others: &[],
        }
    }

    #[test]
    fn an_entry_not_found_beside_an_unopened_volume_is_not_called_absent() {
        let mut fss = filesystems();
        fss.push(Filesystem {
            device: "/dev/vdc".into(),
            fstype: "LVM2_member".into(),
            ..Default::default()
        });
        let c = ctx(&fss, Policy::default());
        let text = format!(
            "UUID={R} / ext4 errors=remount-ro 0 1\nUUID=dead-beef /home ext4 defaults 0 2\n"
        );
        let f = fix(text.as_bytes(), &c);
        assert!(f.edits.is_empty(), "{:?}", f.edits);
        assert!(
            f.notes[0].contains("may be inside /dev/vdc, which this rescue did not open"),
            "{:?}",
            f.notes
        );
        // Without the container, the same entry is absent: nofail.
        let fss = filesystems();
        let f = fix(text.as_bytes(), &ctx(&fss, Policy::default()));
        assert!(
            f.edits[0].contains("is absent: nofail added"),
            "{:?}",
            f.edits
        );
    }

    #[test]
    fn fixes_each_class_and_keeps_other_lines() {
        let fss = filesystems();
        let c = ctx(&fss, Policy::default());
        let text = format!(
            "# my fstab\r\n\
             /dev/vda1 / ext4 defaults 0 1\n\
             /dev/vdb1 /srv/my\\040data ext4 noatime 0 2\n\
             UUID=dead-beef /backup ext4 defaults 0 2\n\
             proc /proc proc defaults 0 0\n\
             /dev/vda2 none swap sw 0 0\n\
             this line is broken\n\
             UUID={H} /other xfs defaults,nofail 0 0"
        );
        let f = fix(text.as_bytes(), &c);
        let out = String::from_utf8(f.text).unwrap();
        let want = format!(
            "# my fstab\r\n\
             UUID={R}\t/\text4\terrors=remount-ro\t0\t1\n\
             UUID={H}\t/srv/my\\040data\txfs\tnoatime\t0\t2\n\
             UUID=dead-beef\t/backup\text4\tdefaults,nofail,x-systemd.device-timeout=10s\t0\t2\n\
             proc /proc proc defaults 0 0\n\
             UUID=5w\tnone\tswap\tsw\t0\t0\n\
             # vmrescue: commented out, 3 field(s): at least 3 are needed (device, mount point, type): this line is broken\n\
             UUID={H} /other xfs defaults,nofail 0 0"
        );
        // "this line is broken" has 4 fields; the parser's reason is whatever it says.
        let want_prefix = want.split("# vmrescue").next().unwrap();
        assert!(out.starts_with(want_prefix), "{out}");
        assert!(out.contains("# vmrescue: commented out, "), "{out}");
        assert!(out.ends_with(": this line is broken\nUUID=8f1a0c55-0d0e-4a63-9a0b-1c2d3e4f5a6b /other xfs defaults,nofail 0 0"), "{out}");
        assert_eq!(f.edits.len(), 5, "{:#?}", f.edits);
        assert!(f.notes.is_empty(), "{:?}", f.notes);
        // Fixed again: nothing more to do.
        let again = fix(out.as_bytes(), &c);
        assert!(again.edits.is_empty(), "{:?}", again.edits);
    }

    #[test]
    fn policy_off_and_clean_files_are_untouched() {
        let fss = filesystems();
        let c = ctx(
            &fss,
            Policy {
                errors_remount_ro: false,
                ..Policy::default()
            },
        );
        let text = format!("UUID={R} / ext4 defaults 0 1\n");
        let f = fix(text.as_bytes(), &c);
        assert!(f.edits.is_empty());
        assert_eq!(f.text, text.as_bytes());
    }

    #[test]
    fn absent_root_entry_points_at_the_root_found() {
        let fss = filesystems();
        let c = ctx(&fss, Policy::default());
        let f = fix(b"UUID=gone / ext4 errors=remount-ro 0 1\n", &c);
        assert_eq!(
            String::from_utf8(f.text).unwrap(),
            format!("UUID={R}\t/\text4\terrors=remount-ro\t0\t1\n")
        );
    }

    #[test]
    fn ambiguous_entries_are_noted_not_changed() {
        let mut fss = filesystems();
        fss.push(Filesystem {
            device: "/dev/vdc1".into(),
            fstype: "xfs".into(),
            uuid: Some(H.into()),
            ..Default::default()
        });
        let c = ctx(&fss, Policy::default());
        let text = format!("UUID={H} /home xfs defaults 0 0\n");
        let f = fix(text.as_bytes(), &c);
        assert!(f.edits.is_empty());
        assert!(f.notes[0].contains("several devices"), "{:?}", f.notes);
    }

    #[test]
    fn rebuilt_fstab_resolves() {
        let mut fss = filesystems();
        fss[1].role = Some("boot".into());
        let c = ctx(&fss, Policy::default());
        let text = rebuild(&c);
        let s = String::from_utf8(text.clone()).unwrap();
        assert!(
            s.contains(&format!("UUID={R}\t/\text4\terrors=remount-ro\t0\t1\n")),
            "{s}"
        );
        assert!(
            s.contains(&format!("UUID={H}\t/boot\txfs\tdefaults,nofail\t0\t0\n")),
            "{s}"
        );
        assert!(s.contains("UUID=5w\tnone\tswap\tsw\t0\t0\n"), "{s}");
        let tab = fstab::parse(&text);
        assert!(tab.malformed.is_empty());
        assert_eq!(tab.entries.len(), 3);
        assert!(validate(&text, &tab.entries, &c).is_ok());
        assert!(
            fix(&text, &c).edits.is_empty(),
            "a rebuilt fstab needs no fix"
        );
    }

    #[test]
    fn what_the_rescue_cannot_see_is_left_alone() {
        let mut fss = filesystems();
        fss[0].fstype = "ext3".into();
        let c = ctx(&fss, Policy::default());
        let text = format!(
            "UUID={R} / ext4 errors=remount-ro 0 1\n\
             /swap.img none swap sw 0 0\n\
             /dev/mapper/vg-home /home ext4 defaults 0 2\n\
             /dev/disk/by-id/virtio-data /data ext4 defaults 0 2\n\
             /dev/md0 /srv ext4 defaults 0 2\n"
        );
        let f = fix(text.as_bytes(), &c);
        assert!(f.edits.is_empty(), "{:?}", f.edits);
        assert_eq!(f.text, text.as_bytes());
    }

    #[test]
    fn ext3_listed_for_an_ext4_is_corrected_and_raw_bytes_kept() {
        let mut fss = filesystems();
        fss[0].uuid = None;
        let c = ctx(&fss, Policy::default());
        let mut text = b"/dev/vda1 /m\xff\\040x ext3 noatime,errors=panic 0 1 # old\n".to_vec();
        let f = fix(&text, &c);
        assert_eq!(f.edits.len(), 1, "{:?}", f.edits);
        text = b"/dev/vda1\t/m\xff\\040x\text4\tnoatime,errors=panic\t0\t1\t# old\n".to_vec();
        assert_eq!(f.text, text, "{}", String::from_utf8_lossy(&f.text));
        assert!(f.notes[0].contains("has no UUID"), "{:?}", f.notes);
    }

    #[test]
    fn ext4dev_is_of_the_ext_family_and_written_as_ext4() {
        let mut fss = filesystems();
        fss[0].fstype = "ext4dev".into();
        fss[1].fstype = "ext4dev".into();
        fss[1].mountpoint = Some("/srv".into());
        let c = ctx(&fss, Policy::default());
        // ext3 cannot mount it; ext4 can; the root gets errors=remount-ro as any ext root.
        let text = format!(
            "UUID={R} / ext3 defaults 0 1\n\
             UUID={H} /srv ext4 defaults 0 2\n"
        );
        let f = fix(text.as_bytes(), &c);
        assert_eq!(
            String::from_utf8(f.text).unwrap(),
            format!(
                "UUID={R}\t/\text4\terrors=remount-ro\t0\t1\n\
                 UUID={H} /srv ext4 defaults 0 2\n"
            )
        );
        assert_eq!(
            f.edits,
            ["line 1: type ext3 -> ext4, errors=remount-ro added to the root"]
        );
        let s = String::from_utf8(rebuild(&c)).unwrap();
        assert!(
            s.contains(&format!("UUID={R}\t/\text4\terrors=remount-ro\t0\t1\n")),
            "{s}"
        );
        assert!(
            s.contains(&format!("UUID={H}\t/srv\text4\tdefaults,nofail\t0\t2\n")),
            "{s}"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("/a b\\c"), "/a\\040b\\134c");
        assert_eq!(escape("#x#"), "\\043x#");
    }
}
