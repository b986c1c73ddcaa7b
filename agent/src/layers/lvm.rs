//! LVM: which physical volumes form which volume group, which sets are the same group twice
//! (a clone beside its source), and the `lvm` commands that open them without writing
//! anything but what the mode allows. The pure parts (configuration, report parsing, the
//! choice among duplicates) apart from running `lvm`.

use serde::Deserialize;

/// The `lvm` binary (late archive).
pub const LVM: &str = "/sbin/lvm";
/// thin_check, run by lvm before it activates a thin pool (late archive).
pub const THIN_CHECK: &str = "/sbin/thin_check";
/// thin_repair and thin_dump, run by `lvconvert --repair` (the same multi-call binary).
pub const THIN_REPAIR: &str = "/sbin/thin_repair";
pub const THIN_DUMP: &str = "/sbin/thin_dump";

/// Whether lvm may write metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// Never (every activation, in both modes).
    ReadOnly,
    /// `lvconvert --repair` of a thin pool, on the operator's `--thin-repair` in repair mode.
    Writable,
}

/// A container as discovery saw it on a guest disk: a physical volume, an md member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    /// `/dev/vda3`.
    pub device: String,
    /// The UUID discovery read: a PV's own, an md member's array's.
    pub uuid: Option<String>,
    /// An md member's array name (`host:root`).
    pub label: Option<String>,
}

/// The `--config` of every `lvm` command: only `devices` are scanned (the guest's physical
/// volumes; nothing of the rescue's own), no udev, no backups or archives written, no daemon;
/// metadata is written only when `metadata` says so (activation never needs it). Every LV of
/// the volume groups in `read_only` (check mode: all of them) is activated read-only.
pub fn config(devices: &[String], read_only: &[String], metadata: Metadata) -> String {
    let filter: Vec<String> = devices
        .iter()
        .map(|d| format!("\"a|^{}$|\"", regex_escape(d)))
        .chain(std::iter::once("\"r|.*|\"".to_owned()))
        .collect();
    let filter = filter.join(", ");
    let ro: Vec<String> = read_only.iter().map(|v| format!("\"{v}\"")).collect();
    let ro = if ro.is_empty() {
        String::new()
    } else {
        format!(" read_only_volume_list = [ {} ]", ro.join(", "))
    };
    let metadata_read_only = match metadata {
        Metadata::ReadOnly => 1,
        Metadata::Writable => 0,
    };
    format!(
        "devices {{ filter = [ {filter} ] global_filter = [ {filter} ] obtain_device_list_from_udev = 0 external_device_info_source = \"none\" use_devicesfile = 0 multipath_component_detection = 0 md_component_detection = 1 }} \
         global {{ metadata_read_only = {metadata_read_only} use_lvmpolld = 0 event_activation = 0 thin_check_executable = \"{THIN_CHECK}\" thin_check_options = [ \"-q\" ] thin_repair_executable = \"{THIN_REPAIR}\" thin_dump_executable = \"{THIN_DUMP}\" }} \
         activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 verify_udev_operations = 1{ro} }} \
         backup {{ backup = 0 archive = 0 }}"
    )
}

/// The thin pools of `lvs` that are not active: a pool stays down when its metadata fails
/// `thin_check`, and on a read-only disk (the kernel's thin-pool target is never read-only).
pub fn inactive_pools(lvs: &[LvRow]) -> Vec<&LvRow> {
    lvs.iter()
        .filter(|l| l.lv_attr.starts_with('t') && !l.active())
        .collect()
}

/// Whether lvm's activation output `said` that `thin_check` failed on the pool `vg/pool`
/// ("Check of pool vg0/pool failed (status:1). Manual repair required!").
pub fn pool_failed_check(said: &str, pool: &str) -> bool {
    said.contains(&format!("Check of pool {pool} failed"))
}

/// Escapes a device path for an LVM filter regex.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() && c != '/' && c != '_' && c != '-' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Deserialize)]
struct ReportJson {
    report: Vec<ReportItem>,
}

#[derive(Debug, Deserialize, Default)]
struct ReportItem {
    #[serde(default)]
    pv: Vec<PvRow>,
    #[serde(default)]
    lv: Vec<LvRow>,
}

/// One row of `lvm pvs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PvRow {
    pub pv_name: String,
    #[serde(default)]
    pub pv_uuid: String,
    #[serde(default)]
    pub vg_name: String,
    #[serde(default)]
    pub vg_uuid: String,
}

/// One row of `lvm lvs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LvRow {
    pub vg_name: String,
    pub lv_name: String,
    #[serde(default)]
    pub lv_attr: String,
    #[serde(default)]
    pub lv_dm_path: String,
}

impl LvRow {
    /// An LV that holds data of its own (not a thin pool or a VDO pool, which hold other LVs).
    pub fn holds_data(&self) -> bool {
        !matches!(self.lv_attr.chars().next(), Some('t' | 'd'))
    }

    /// Active: the fifth attribute is `a` (or a read-only/suspended variant).
    pub fn active(&self) -> bool {
        self.lv_attr.chars().nth(4).is_some_and(|c| c != '-')
    }
}

/// Parses `lvm pvs --reportformat json` output.
pub fn parse_pvs(json: &str) -> Option<Vec<PvRow>> {
    let r: ReportJson = serde_json::from_str(json).ok()?;
    Some(r.report.into_iter().flat_map(|i| i.pv).collect())
}

/// Parses `lvm lvs --reportformat json` output.
pub fn parse_lvs(json: &str) -> Option<Vec<LvRow>> {
    let r: ReportJson = serde_json::from_str(json).ok()?;
    Some(r.report.into_iter().flat_map(|i| i.lv).collect())
}

/// Members that carry the same PV UUID as an earlier one (in disk order, the preferred disk
/// first): a copy of the same physical volume. The first of each UUID is kept.
pub fn duplicate_pvs(members: &[Member]) -> (Vec<Member>, Vec<(Member, String)>) {
    let mut kept: Vec<Member> = Vec::new();
    let mut dups = Vec::new();
    for m in members {
        match m
            .uuid
            .as_ref()
            .and_then(|u| kept.iter().find(|k| k.uuid.as_ref() == Some(u)))
        {
            Some(first) => dups.push((m.clone(), first.device.clone())),
            None => kept.push(m.clone()),
        }
    }
    (kept, dups)
}

/// A volume group as `pvs` shows it: its name, UUID and physical volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub uuid: String,
    pub members: Vec<String>,
}

/// Groups `pvs` rows by VG UUID (rows without a VG are orphan PVs, left out), in the order of
/// their first member.
pub fn groups(rows: &[PvRow]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for r in rows.iter().filter(|r| !r.vg_uuid.is_empty()) {
        match out.iter_mut().find(|g| g.uuid == r.vg_uuid) {
            Some(g) => g.members.push(r.pv_name.clone()),
            None => out.push(Group {
                name: r.vg_name.clone(),
                uuid: r.vg_uuid.clone(),
                members: vec![r.pv_name.clone()],
            }),
        }
    }
    out
}

/// Splits groups into those to open and those that share a name with one opened before
/// (a clone with other UUIDs but the same VG name): the first of each name, in disk order,
/// is opened.
pub fn split_same_names(groups: Vec<Group>) -> (Vec<Group>, Vec<Group>) {
    let mut open: Vec<Group> = Vec::new();
    let mut dup = Vec::new();
    for g in groups {
        if open.iter().any(|o| o.name == g.name) {
            dup.push(g);
        } else {
            open.push(g);
        }
    }
    (open, dup)
}

/// The command that would give a duplicate set its own name and UUIDs, for the operator.
pub fn import_clone_hint(devices: &[String], vg: &str) -> String {
    format!(
        "vgimportclone --basevgname {vg}_clone {}",
        devices.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_scans_only_the_guest_pvs_and_writes_no_metadata() {
        let c = config(
            &["/dev/vda3".into(), "/dev/md127".into()],
            &[],
            Metadata::ReadOnly,
        );
        assert!(
            c.contains("\"a|^/dev/vda3$|\", \"a|^/dev/md127$|\", \"r|.*|\""),
            "{c}"
        );
        assert!(c.contains("metadata_read_only = 1"));
        assert!(c.contains("backup = 0 archive = 0"));
        assert!(c.contains("udev_sync = 0"));
        assert!(!c.contains("read_only_volume_list"));
        let c = config(
            &["/dev/vda3".into()],
            &["vg0".into(), "data".into()],
            Metadata::ReadOnly,
        );
        assert!(
            c.contains("read_only_volume_list = [ \"vg0\", \"data\" ] }"),
            "{c}"
        );
        // Only a thin repair writes metadata.
        let c = config(&["/dev/vda3".into()], &[], Metadata::Writable);
        assert!(c.contains("metadata_read_only = 0"), "{c}");
        assert!(
            c.contains("thin_repair_executable = \"/sbin/thin_repair\""),
            "{c}"
        );
        assert_eq!(regex_escape("/dev/mapper/a.b"), "/dev/mapper/a\\.b");
    }

    #[test]
    fn reports_parse() {
        let pvs = r#"{"report":[{"pv":[{"pv_name":"/dev/vda3","pv_uuid":"p1","vg_name":"vg0","vg_uuid":"g1"},{"pv_name":"/dev/vdb","pv_uuid":"p2","vg_name":"","vg_uuid":""}]}]}"#;
        let rows = parse_pvs(pvs).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            groups(&rows),
            [Group {
                name: "vg0".into(),
                uuid: "g1".into(),
                members: vec!["/dev/vda3".into()]
            }]
        );
        let lvs = r#"{"report":[{"lv":[{"vg_name":"vg0","lv_name":"root","lv_attr":"-wi-a-----","lv_dm_path":"/dev/mapper/vg0-root"},{"vg_name":"vg0","lv_name":"pool","lv_attr":"twi-a-tz--","lv_dm_path":"/dev/mapper/vg0-pool"},{"vg_name":"vg0","lv_name":"off","lv_attr":"-wi-------","lv_dm_path":"/dev/mapper/vg0-off"}]}]}"#;
        let lvs = parse_lvs(lvs).unwrap();
        assert!(lvs[0].holds_data() && lvs[0].active());
        assert!(!lvs[1].holds_data());
        assert!(!lvs[2].active());
        assert!(inactive_pools(&lvs).is_empty());
        let down = r#"{"report":[{"lv":[{"vg_name":"vg0","lv_name":"pool","lv_attr":"twi---tz--","lv_dm_path":""},{"vg_name":"vg0","lv_name":"data","lv_attr":"Vwi---tz--","lv_dm_path":""}]}]}"#;
        let down = parse_lvs(down).unwrap();
        let pools: Vec<&str> = inactive_pools(&down)
            .iter()
            .map(|l| l.lv_name.as_str())
            .collect();
        assert_eq!(pools, ["pool"]);
        let said = "lvm vgchange failed: Check of pool vg0/pool failed (status:1). Manual repair required!";
        assert!(pool_failed_check(said, "vg0/pool"));
        assert!(!pool_failed_check(said, "vg0/other"));
        assert!(!pool_failed_check(
            "thin-pool: target type may not be included in a read-only table",
            "vg0/pool"
        ));
        assert!(parse_pvs("not json").is_none());
    }

    #[test]
    fn copies_of_a_volume_group_are_never_merged() {
        let m = |d: &str, u: &str| Member {
            device: d.into(),
            uuid: Some(u.into()),
            label: None,
        };
        // The same PV UUID on two disks: the first disk's is kept.
        let (kept, dups) =
            duplicate_pvs(&[m("/dev/vda3", "A"), m("/dev/vdb3", "A"), m("/dev/vdc", "B")]);
        assert_eq!(kept, [m("/dev/vda3", "A"), m("/dev/vdc", "B")]);
        assert_eq!(dups, [(m("/dev/vdb3", "A"), "/dev/vda3".to_owned())]);
        // The same VG name with other UUIDs: the first group is opened.
        let g = |n: &str, u: &str, d: &str| Group {
            name: n.into(),
            uuid: u.into(),
            members: vec![d.into()],
        };
        let (open, dup) = split_same_names(vec![
            g("vg0", "1", "/dev/vda3"),
            g("vg0", "2", "/dev/vdb3"),
            g("data", "3", "/dev/vdc"),
        ]);
        assert_eq!(
            open,
            [g("vg0", "1", "/dev/vda3"), g("data", "3", "/dev/vdc")]
        );
        assert_eq!(dup, [g("vg0", "2", "/dev/vdb3")]);
        assert_eq!(
            import_clone_hint(&dup[0].members, "vg0"),
            "vgimportclone --basevgname vg0_clone /dev/vdb3"
        );
    }
}
