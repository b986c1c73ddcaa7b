//! The layouts real guests have under their filesystems, rescued for real under QEMU: a root
//! and /home on LVM logical volumes, opened (read-only in check mode), checked and repaired;
//! a copy of the volume group attached beside it, never merged and never touched.

use std::path::Path;

use vmrescue_tests::fixture;
use vmrescue_tests::harness;
use vmrescue_tests::layouts::{self, LvmGuest};
use vmrescue_tests::reports::filesystem;

fn sha(path: &Path) -> String {
    fixture::sha256_file(path).unwrap()
}

/// The LVs' filesystems as they are now on `g.disk`, copied out into `dir`.
fn lvs_now(g: &LvmGuest, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = dir.join("root-now.fs");
    let home = dir.join("home-now.fs");
    layouts::extract(&g.disk, g.root, &root).unwrap();
    layouts::extract(&g.disk, g.home, &home).unwrap();
    (root, home)
}

#[test]
fn a_root_on_lvm_is_opened_checked_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let g = LvmGuest::make(dir.path()).unwrap();

    // Check mode: the LVs are found and checked on a read-only activation; nothing is
    // written anywhere on the disk, LVM metadata included.
    let before = sha(&g.disk);
    let run = harness::rescue(&[&g.disk], "check", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(
        (run.code, r["outcome"].as_str()),
        (1, Some("unrepaired")),
        "{r:#}"
    );
    assert_eq!(r["os"]["root_device"], "/dev/mapper/vg0-root", "{r:#}");
    let layer = &r["layers"][0];
    assert_eq!(layer["kind"], "lvm", "{r:#}");
    assert_eq!(layer["name"], "vg0");
    assert_eq!(layer["state"], "active", "{layer:#}");
    assert_eq!(layer["read_only"], true);
    assert_eq!(layer["members"], serde_json::json!(["/dev/vda2"]));
    assert_eq!(
        filesystem(r, "/dev/vda2")["opened_as"],
        serde_json::json!(["/dev/mapper/vg0-home", "/dev/mapper/vg0-root"]),
        "{r:#}"
    );
    for dev in ["/dev/mapper/vg0-root", "/dev/mapper/vg0-home"] {
        let f = filesystem(r, dev);
        assert_eq!(f["state_before"], "errors", "{f:#}");
        assert_eq!(f["fsck"]["passes"][0]["args"][2], "-n", "{f:#}");
        assert_eq!(f["reached"], true, "{f:#}");
    }
    assert_eq!(
        filesystem(r, "/dev/mapper/vg0-home")["mountpoint"],
        "/home",
        "fstab's /dev/vg0/home is this LV: {r:#}"
    );
    assert!(
        !r["disks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"].as_str().unwrap().starts_with("mapper")),
        "an LV is not a disk: {r:#}"
    );
    assert_eq!(sha(&g.disk), before, "check mode wrote to the disk");

    // Repair mode: every filesystem mended, in place, the guest's files intact.
    let run = harness::rescue(&[&g.disk], "repair", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(
        (run.code, r["outcome"].as_str()),
        (0, Some("repaired")),
        "{r:#}"
    );
    assert_eq!(r["layers"][0]["read_only"], false);
    for dev in ["/dev/vda1", "/dev/mapper/vg0-root", "/dev/mapper/vg0-home"] {
        assert_eq!(filesystem(r, dev)["fsck"]["status"], "corrected", "{dev}");
    }
    let (root, home) = lvs_now(&g, dir.path());
    assert_eq!(fixture::host_e2fsck(&root).unwrap(), 0, "root LV mended");
    assert_eq!(fixture::host_e2fsck(&home).unwrap(), 0, "home LV mended");
    for (path, sum) in &g.sums {
        assert_eq!(
            &fixture::sha256_in_image(&root, path).unwrap(),
            sum,
            "{path}"
        );
    }
    assert_eq!(
        fixture::read_in_image(&home, "/alice/notes.txt").unwrap(),
        Some(b"remember the milk\n".to_vec())
    );
}

#[test]
fn a_copy_of_the_volume_group_beside_it_is_never_merged_or_touched() {
    let dir = tempfile::tempdir().unwrap();
    let g = LvmGuest::make(dir.path()).unwrap();
    // A clone of the physical volume attached as a second disk: the same PV and VG UUIDs, the
    // same VG name, the same filesystems inside.
    let clone = dir.path().join("clone.img");
    std::fs::copy(&g.pv, &clone).unwrap();
    let clone_before = sha(&clone);

    let run = harness::rescue(&[&g.disk, &clone], "repair", &[]).unwrap();
    let r = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report: {}", run.stderr));
    assert_eq!(
        (run.code, r["outcome"].as_str()),
        (0, Some("repaired")),
        "{r:#}"
    );
    let layers = r["layers"].as_array().unwrap();
    let active: Vec<_> = layers.iter().filter(|l| l["state"] == "active").collect();
    assert_eq!(active.len(), 1, "{r:#}");
    assert_eq!(active[0]["members"], serde_json::json!(["/dev/vda2"]));
    let dup = layers
        .iter()
        .find(|l| l["state"] == "duplicate")
        .unwrap_or_else(|| panic!("no duplicate named: {r:#}"));
    assert_eq!(dup["members"], serde_json::json!(["/dev/vdb"]));
    assert!(
        dup["detail"].as_str().unwrap().contains("vgimportclone"),
        "{dup:#}"
    );
    assert_eq!(sha(&clone), clone_before, "the copy was written to");
    let (root, _) = lvs_now(&g, dir.path());
    assert_eq!(
        fixture::host_e2fsck(&root).unwrap(),
        0,
        "the source's root mended"
    );
}
