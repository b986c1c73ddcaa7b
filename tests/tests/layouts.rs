//! The layouts real guests have under their filesystems, rescued for real under QEMU: a root
//! and /home on LVM logical volumes, opened (read-only in check mode), checked and repaired;
//! a copy of the volume group attached beside it, never merged and never touched; a root on
//! md RAID1, assembled read-only in check mode, repaired on both mirrors, and degraded; a
//! LUKS /home; a RHEL-like XFS root on LVM with a dirty log; a btrfs root in a subvolume with
//! /home in another; a damaged btrfs, repaired only with `--btrfs-repair`.

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
    let r = run.expect(1, "unrepaired");
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
    let r = run.expect(0, "repaired");
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
    let r = run.expect(0, "repaired");
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

/// `n` copies of a 48 MiB md member holding at its start a broken 40 MiB ext4 root (the guest's
/// OS tree, fstab by label), made one RAID1 array; with the tree's sums.
fn raid1_root(
    dir: &Path,
) -> (
    Vec<std::path::PathBuf>,
    std::collections::BTreeMap<String, String>,
) {
    let tree = dir.join("root-tree");
    let sums = fixture::os_tree_with_fstab(&tree, "LABEL=guestroot / ext4 errors=remount-ro 0 1\n")
        .unwrap();
    let root = dir.join("root.fs");
    fixture::mkfs_ext4(&root, 40, "guestroot", &tree).unwrap();
    fixture::debugfs_write(&root, &["ssv state 2"]).unwrap();
    let members: Vec<_> = ["a.img", "b.img"]
        .iter()
        .map(|n| {
            let m = dir.join(n);
            std::fs::copy(&root, &m).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&m)
                .unwrap()
                .set_len(48 << 20)
                .unwrap();
            m
        })
        .collect();
    let refs: Vec<&Path> = members.iter().map(|m| m.as_path()).collect();
    layouts::md_raid1(&refs, "root").unwrap();
    (members, sums)
}

/// The root filesystem at the start of an md member, copied out and checked on the host.
fn root_of_member(member: &Path, dir: &Path) -> std::path::PathBuf {
    let out = dir.join(format!(
        "{}-root.fs",
        member.file_name().unwrap().to_string_lossy()
    ));
    layouts::extract(
        member,
        layouts::Extent {
            offset: 0,
            len: 40 << 20,
        },
        &out,
    )
    .unwrap();
    out
}

#[test]
fn a_root_on_md_raid1_is_assembled_checked_and_repaired_even_with_a_member_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (members, sums) = raid1_root(d);
    // A copy of one member alone, for the degraded array below.
    let alone = d.join("alone.img");
    std::fs::copy(&members[0], &alone).unwrap();
    let [a, b] = [&members[0], &members[1]];

    // Check mode: assembled read-only, the root found on the array and checked; nothing
    // written to either member.
    let before = [sha(a), sha(b)];
    let run = harness::rescue(&[a, b], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    let root = r["os"]["root_device"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(root.starts_with("/dev/md"), "{r:#}");
    let layer = &r["layers"][0];
    assert_eq!(layer["kind"], "md", "{r:#}");
    assert_eq!(layer["state"], "active", "{layer:#}");
    assert_eq!(layer["read_only"], true);
    assert_eq!(layer["devices"], serde_json::json!([root]));
    assert_eq!(
        layer["members"],
        serde_json::json!(["/dev/vda", "/dev/vdb"])
    );
    assert_eq!(filesystem(r, &root)["state_before"], "errors");
    assert_eq!(filesystem(r, "/dev/vda")["type"], "linux_raid_member");
    assert_eq!([sha(a), sha(b)], before, "check mode wrote to a member");

    // Repair mode: assembled read-write (recorded), the root mended on both mirrors.
    let run = harness::rescue(&[a, b], "repair", &[]).unwrap();
    let r = run.expect(0, "repaired");
    assert_eq!(r["changes"][0]["kind"], "assemble", "{r:#}");
    for m in [a, b] {
        let fs = root_of_member(m, d);
        assert_eq!(fixture::host_e2fsck(&fs).unwrap(), 0, "{}", m.display());
        for (path, sum) in &sums {
            assert_eq!(&fixture::sha256_in_image(&fs, path).unwrap(), sum, "{path}");
        }
    }

    // One member missing: the array runs degraded, the missing member is said, nothing is
    // written in check mode, and repair mends the root on what is there.
    let before = sha(&alone);
    let run = harness::rescue(&[&alone], "check", &[]).unwrap();
    let r = run.json();
    let layer = &r["layers"][0];
    assert_eq!(layer["state"], "partial", "{r:#}");
    assert!(
        layer["detail"]
            .as_str()
            .unwrap()
            .contains("1 of its 2 members missing"),
        "{layer:#}"
    );
    assert!(
        r["os"]["root_device"]
            .as_str()
            .unwrap()
            .starts_with("/dev/md"),
        "{r:#}"
    );
    assert_eq!(sha(&alone), before, "check mode wrote to the member");
    let run = harness::rescue(&[&alone], "repair", &[]).unwrap();
    run.expect(0, "repaired");
    let fs = root_of_member(&alone, d);
    assert_eq!(fixture::host_e2fsck(&fs).unwrap(), 0);
}

#[test]
fn a_luks_home_opens_only_with_its_key_and_the_key_is_never_seen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const KEY: &[u8] = b"correct horse battery staple";
    // /home inside a LUKS container on the second disk, fstab naming it by the name crypttab
    // gives the opened container (as Debian's installer writes it), both filesystems in the
    // error state.
    let home = fixture::broken_ext4(
        d,
        "home.fs",
        "home",
        &[("alice/notes.txt", b"remember the milk\n")],
    )
    .unwrap();
    let luks = d.join("luks.img");
    let luks_uuid = layouts::luks_with(&luks, KEY, &home).unwrap();
    let tree = d.join("root-tree");
    fixture::os_tree_with_fstab(
        &tree,
        "LABEL=guestroot / ext4 errors=remount-ro 0 1\n/dev/mapper/home_crypt /home ext4 defaults 0 2\n",
    )
    .unwrap();
    std::fs::write(
        tree.join("etc/crypttab"),
        format!("home_crypt UUID={luks_uuid} none luks\n"),
    )
    .unwrap();
    let root = d.join("root.img");
    fixture::mkfs_ext4(&root, 64, "guestroot", &tree).unwrap();
    fixture::debugfs_write(&root, &["ssv state 2"]).unwrap();
    let key_file = d.join("home.key");
    std::fs::write(&key_file, KEY).unwrap();
    let key_arg = format!("{luks_uuid}={}", key_file.display());
    let mapped = format!("/dev/mapper/luks-{luks_uuid}");

    // Without the key: locked, named, and the rescue is not repaired.
    let run = harness::rescue(&[&root, &luks], "repair", &[]).unwrap();
    let r = run.json();
    assert_eq!(r["outcome"], "unrepaired", "{r:#}");
    let layer = &r["layers"][0];
    assert_eq!(
        (&layer["kind"], &layer["state"]),
        (&"luks".into(), &"locked".into()),
        "{r:#}"
    );
    assert!(
        layer["detail"].as_str().unwrap().contains("--luks-key"),
        "{layer:#}"
    );

    // Check mode with the key: opened read-only, /home found inside and checked, nothing
    // written; the key nowhere in the output, the console or what the run leaves.
    let before = sha(&luks);
    let run = harness::rescue(
        &[&root, &luks],
        "check",
        &["--luks-key", &key_arg, "--keep-run-dir"],
    )
    .unwrap();
    let r = run.json();
    let kept = harness::run_dir(&run.stderr);
    let console = std::fs::read(kept.join("console.log")).unwrap_or_default();
    let leftovers: Vec<_> = std::fs::read_dir(&kept)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    std::fs::remove_dir_all(&kept).unwrap();
    let key_text = std::str::from_utf8(KEY).unwrap();
    assert!(!run.stdout.contains(key_text) && !run.stderr.contains(key_text));
    assert!(
        !console.windows(KEY.len()).any(|w| w == KEY),
        "the key is on the console"
    );
    assert!(
        !leftovers.iter().any(|f| f.contains("settings")),
        "{leftovers:?}"
    );
    let layer = &r["layers"][0];
    assert_eq!(layer["state"], "active", "{r:#}");
    assert_eq!(layer["read_only"], true);
    assert_eq!(layer["devices"], serde_json::json!([mapped]));
    let f = filesystem(r, &mapped);
    assert_eq!(
        (&f["mountpoint"], &f["state_before"]),
        (&"/home".into(), &"errors".into()),
        "{f:#}"
    );
    assert_eq!(f["reached"], true);
    assert_eq!(sha(&luks), before, "check mode wrote to the LUKS disk");

    // Repair with the key: both mended; a check afterwards finds /home clean.
    let run = harness::rescue(&[&root, &luks], "repair", &["--luks-key", &key_arg]).unwrap();
    let r = run.expect(0, "repaired");
    assert_eq!(filesystem(r, &mapped)["fsck"]["status"], "corrected");
    let run = harness::rescue(&[&root, &luks], "check", &["--luks-key", &key_arg]).unwrap();
    let r = run.json();
    assert_eq!(filesystem(r, &mapped)["state_before"], "clean", "{r:#}");
    assert_eq!(
        (run.code, r["outcome"].as_str()),
        (0, Some("clean")),
        "{r:#}"
    );

    // A key file that cannot be read is a clear error before anything starts.
    let run = harness::rescue(
        &[&root, &luks],
        "check",
        &["--luks-key", &format!("{luks_uuid}=/nonexistent")],
    )
    .unwrap();
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--luks-key") && run.stderr.contains("/nonexistent"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_rhel_like_xfs_root_on_lvm_with_a_dirty_log_is_replayed_and_repaired() {
    use vmrescue_tests::crash;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // RHEL's default layout: /boot ext4 (here), the root XFS on rhel/root. A power cut left
    // the last writes in the XFS log only.
    let tree = d.join("root-tree");
    fixture::os_tree_with_fstab(
        &tree,
        "/dev/mapper/rhel-root / xfs defaults 0 0\nLABEL=boot /boot ext4 defaults 1 2\n",
    )
    .unwrap();
    let base = fixture::files_of(&tree).unwrap();
    let base: Vec<(&str, &[u8])> = base
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    let root = d.join("root.xfs");
    crash::xfs_root_with_dirty_log(
        &root,
        &base,
        &[("home/user/late.txt", b"written just before the power cut\n")],
    )
    .unwrap();
    let boot = fixture::broken_ext4(
        d,
        "boot.fs",
        "boot",
        &[("vmlinuz-6.1.0-27-amd64", &fixture::bytes(1, 4096))],
    )
    .unwrap();
    let pv = d.join("pv.img");
    let size = crash::XFS_SIZE_MIB + 8;
    let extents = layouts::lvm_vg(
        &pv,
        size + 8,
        "rhel",
        &[layouts::Lv {
            name: "root",
            size_mib: size,
            content: Some(&root),
        }],
    )
    .unwrap();
    let disk = d.join("rhel.img");
    fixture::boot_disk(
        &disk,
        &boot,
        fixture::Part {
            size_mib: size + 8,
            gpt_type: layouts::GPT_LINUX_LVM,
            name: "lvm",
            content: Some(&pv),
        },
    )
    .unwrap();
    let root_at = layouts::Extent {
        offset: LvmGuest::PV_OFFSET + extents[0].offset,
        len: extents[0].len,
    };

    // Check mode: the root is found (without a replay: what was checkpointed), the dirty log
    // is a problem left, nothing is written.
    let before = sha(&disk);
    let run = harness::rescue(&[&disk], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    assert_eq!(r["os"]["root_device"], "/dev/mapper/rhel-root", "{r:#}");
    assert_eq!(filesystem(r, "/dev/mapper/rhel-root")["type"], "xfs");
    assert_eq!(sha(&disk), before, "check mode wrote to the disk");

    // Repair: the log replayed on the LV, the root clean, the last write kept.
    let run = harness::rescue(&[&disk], "repair", &[]).unwrap();
    let r = run.expect(0, "repaired");
    assert_eq!(r["layers"][0]["name"], "rhel", "{r:#}");
    let now = d.join("root-now.xfs");
    layouts::extract(&disk, root_at, &now).unwrap();
    assert_eq!(crash::xfs_log_state(&now).unwrap(), crash::LogState::Clean);
    let check = crash::xfs_repair(&now, &["-n"]).unwrap();
    assert_eq!(check.code, 0, "xfs_repair -n: {}", check.stderr);
    assert_eq!(
        crash::xfs_read_file(&now, "/home/user/late.txt").unwrap(),
        Some(b"written just before the power cut\n".to_vec())
    );
}

#[test]
fn a_btrfs_root_in_a_subvolume_is_found_checked_once_and_fixed_inside_its_subvolume() {
    const UUID: &str = "b7a1f0e2-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Ubuntu's layout: the root in @, /home in @home, the top level holding nothing else; the
    // root lacks /proc, /sys, /run and the rest (the guest fixes put them back, in @).
    let tree = d.join("root-tree");
    fixture::os_tree_with_fstab(
        &tree,
        &format!("UUID={UUID} / btrfs defaults,subvol=@ 0 0\nUUID={UUID} /home btrfs defaults,subvol=@home 0 0\n"),
    )
    .unwrap();
    let root_files = fixture::files_of(&tree).unwrap();
    let home_files = vec![(
        "alice/notes.txt".to_owned(),
        b"remember the milk\n".to_vec(),
    )];
    let image = d.join("btrfs.img");
    layouts::btrfs_subvolumes(
        &image,
        256,
        UUID,
        &[("@", root_files), ("@home", home_files)],
    )
    .unwrap();

    let before = sha(&image);
    let run = harness::rescue(&[&image], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    assert_eq!(r["os"]["root_device"], "/dev/vda", "{r:#}");
    assert_eq!(r["os"]["root_subvolume"], "@", "{r:#}");
    assert_eq!(r["os"]["pretty_name"], "Debian GNU/Linux 12 (bookworm)");
    for e in r["fstab"]["entries"].as_array().unwrap() {
        assert_eq!(e["device"], "/dev/vda", "{e:#}");
    }
    let f = filesystem(r, "/dev/vda");
    assert_eq!(f["fsck"]["status"], "clean", "{f:#}");
    assert_eq!(
        f["fsck"]["passes"].as_array().unwrap().len(),
        1,
        "checked once: {f:#}"
    );
    assert!(
        r["plan"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "/proc"),
        "{r:#}"
    );
    assert_eq!(sha(&image), before, "check mode wrote to the disk");

    let run = harness::rescue(&[&image], "repair", &[]).unwrap();
    let r = run.expect(0, "repaired");
    assert!(
        r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "mkdir" && c["path"] == "/proc"),
        "{r:#}"
    );
    // The fixes landed in @: a check now finds nothing left to do.
    let run = harness::rescue(&[&image], "check", &[]).unwrap();
    let r = run.expect(0, "clean");
    assert_eq!(r["os"]["root_subvolume"], "@");
    assert!(r["plan"].as_array().unwrap().is_empty(), "{r:#}");
}

#[test]
fn inspect_reads_a_raid1_root_through_a_member_and_names_a_luks_container_locked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (members, _) = raid1_root(d);
    let luks = d.join("luks.img");
    let luks_uuid = layouts::luks_format(&luks, 20, b"secret").unwrap();
    let inspect = |disks: &[&Path]| -> serde_json::Value {
        let out = std::process::Command::new(harness::vmrescue_bin().unwrap())
            .args(["inspect", "--json"])
            .args(disks)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before: Vec<String> = members.iter().map(|m| sha(m)).collect();
    let r = inspect(&[&members[0], &members[1], &luks]);
    assert_eq!(r["os"]["root_device"], "/dev/md/root", "{r:#}");
    assert_eq!(filesystem(&r, "/dev/md/root")["label"], "guestroot");
    let md = &r["layers"][0];
    assert_eq!(
        (&md["kind"], &md["name"]),
        (&"md".into(), &"root".into()),
        "{md:#}"
    );
    assert_eq!(md["state"], "active");
    assert_eq!(md["members"], serde_json::json!(["/dev/vda", "/dev/vdb"]));
    assert_eq!(md["devices"], serde_json::json!(["/dev/md/root"]));
    let lk = &r["layers"][1];
    assert_eq!(
        (&lk["kind"], &lk["state"]),
        (&"luks".into(), &"locked".into()),
        "{lk:#}"
    );
    assert_eq!(lk["uuid"], luks_uuid.as_str());
    assert!(
        lk["detail"].as_str().unwrap().contains("--luks-key"),
        "{lk:#}"
    );
    // One member alone: degraded, still read.
    let r = inspect(&[&members[1]]);
    let md = &r["layers"][0];
    assert_eq!(md["state"], "partial", "{md:#}");
    assert!(
        md["detail"]
            .as_str()
            .unwrap()
            .starts_with("degraded: 1 of its 2"),
        "{md:#}"
    );
    assert_eq!(r["os"]["root_device"], "/dev/md/root");
    let after: Vec<String> = members.iter().map(|m| sha(m)).collect();
    assert_eq!(before, after, "inspect wrote to a member");
}

#[test]
fn inspect_reads_the_logical_volumes_from_the_lvm_metadata_without_booting() {
    let dir = tempfile::tempdir().unwrap();
    let g = LvmGuest::make(dir.path()).unwrap();
    let out = std::process::Command::new(harness::vmrescue_bin().unwrap())
        .args(["inspect", "--json"])
        .arg(&g.disk)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["os"]["root_device"], "/dev/mapper/vg0-root", "{r:#}");
    assert_eq!(
        filesystem(&r, "/dev/mapper/vg0-home")["mountpoint"],
        "/home"
    );
    assert_eq!(filesystem(&r, "/dev/mapper/vg0-root")["label"], "guestroot");
    let layer = &r["layers"][0];
    assert_eq!(layer["name"], "vg0");
    assert_eq!(layer["members"], serde_json::json!(["/dev/vda2"]));
    assert_eq!(
        layer["devices"],
        serde_json::json!(["/dev/mapper/vg0-root", "/dev/mapper/vg0-home"])
    );
    assert_eq!(
        filesystem(&r, "/dev/vda2")["opened_as"],
        serde_json::json!(["/dev/mapper/vg0-root", "/dev/mapper/vg0-home"])
    );
}

#[test]
fn a_damaged_btrfs_is_repaired_only_on_the_operators_explicit_word() {
    const UUID: &str = "c4d5e6f7-0a1b-4c2d-9e3f-4a5b6c7d8e9f";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // /srv on btrfs (named in fstab, so the guest needs it), one of its inodes with a wrong
    // byte count in every copy of its metadata.
    let srv = d.join("srv-tree");
    std::fs::create_dir_all(srv.join("app")).unwrap();
    let data = fixture::bytes(11, 8192);
    std::fs::write(srv.join("app/state.db"), &data).unwrap();
    let btrfs = d.join("srv.btrfs");
    std::fs::File::create(&btrfs)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    fixture::run(
        std::process::Command::new("mkfs.btrfs")
            .args(["-q", "-f", "-U", UUID, "--rootdir"])
            .arg(&srv)
            .arg(&btrfs),
    )
    .unwrap();
    assert_eq!(
        vmrescue_tests::btrfs::wrong_nbytes(&btrfs, "state.db").unwrap(),
        2
    );
    let host_check = |img: &Path| {
        std::process::Command::new("btrfs")
            .args(["check", "--readonly"])
            .arg(img)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(host_check(&btrfs), Some(1), "the damage is not seen");
    let tree = d.join("root-tree");
    fixture::os_tree_with_fstab(
        &tree,
        &format!(
            "LABEL=guestroot / ext4 errors=remount-ro 0 1\nUUID={UUID} /srv btrfs defaults 0 0\n"
        ),
    )
    .unwrap();
    let root = d.join("root.img");
    fixture::mkfs_ext4(&root, 64, "guestroot", &tree).unwrap();

    // Check mode and repair mode without the flag: the damage reported, nothing written, the
    // repair named and not run, the guest not called repaired.
    let before = sha(&btrfs);
    let run = harness::rescue(&[&root, &btrfs], "check", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    assert_eq!(filesystem(r, "/dev/vdb")["state_before"], "errors", "{r:#}");
    let run = harness::rescue(&[&root, &btrfs], "repair", &[]).unwrap();
    let r = run.expect(1, "unrepaired");
    let f = filesystem(r, "/dev/vdb");
    assert_eq!(f["fsck"]["status"], "uncorrected", "{f:#}");
    let passes = f["fsck"]["passes"].as_array().unwrap();
    assert!(
        !passes
            .iter()
            .any(|p| p["args"].to_string().contains("--force")),
        "btrfs check --repair ran without the flag: {f:#}"
    );
    assert!(
        passes.last().unwrap()["output"]
            .to_string()
            .contains("--btrfs-repair"),
        "{f:#}"
    );
    assert_eq!(sha(&btrfs), before, "written without --btrfs-repair");

    // With --btrfs-repair: repaired and verified; the host's own btrfs check agrees, and the
    // file's bytes are the same.
    let run = harness::rescue(&[&root, &btrfs], "repair", &["--btrfs-repair"]).unwrap();
    let r = run.expect(0, "repaired");
    let f = filesystem(r, "/dev/vdb");
    assert_eq!(
        (&f["fsck"]["status"], &f["state_after"]),
        (&"corrected".into(), &"clean".into()),
        "{f:#}"
    );
    assert_eq!(host_check(&btrfs), Some(0));
    assert_eq!(
        layouts::btrfs_file_sha(&btrfs, "/dev/vda", "/", "/app/state.db").unwrap(),
        Some(vmrescue_protocol::digest::sha256_hex(&data))
    );
}

#[test]
fn a_thin_pool_that_fails_thin_check_is_rebuilt_only_on_the_operators_explicit_word() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // /srv on a thin LV (named in fstab) of vg0/pool, whose metadata a bad write damaged.
    let data = fixture::broken_ext4(
        d,
        "data.fs",
        "data",
        &[("app/state.db", &fixture::bytes(12, 20_000))],
    )
    .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let pv = d.join("pv.img");
    layouts::thin_pool_damaged(&pv, 160, "vg0", 96, "data", &data).unwrap();
    let tree = d.join("root-tree");
    fixture::os_tree_with_fstab(
        &tree,
        "LABEL=guestroot / ext4 errors=remount-ro 0 1\n/dev/mapper/vg0-data /srv ext4 defaults 0 2\n",
    )
    .unwrap();
    let root = d.join("root.img");
    fixture::mkfs_ext4(&root, 64, "guestroot", &tree).unwrap();

    // Check mode, and repair mode without the flag: the pool stays closed, named with the
    // flag, /srv is not reached, nothing is written (LVM metadata included).
    let before = sha(&pv);
    for mode in ["check", "repair"] {
        let run = harness::rescue(&[&root, &pv], mode, &[]).unwrap();
        let r = run.expect(1, "unrepaired");
        let layer = &r["layers"][0];
        assert_eq!(layer["kind"], "lvm", "{r:#}");
        assert_ne!(layer["state"], "active", "{layer:#}");
        assert!(
            layer["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("--thin-repair"),
            "{layer:#}"
        );
        assert!(r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kind"] != "thin_repair"));
        assert_eq!(sha(&pv), before, "{mode} mode wrote to the physical volume");
    }

    // With --thin-repair: the metadata rebuilt (recorded), the pool activated, /srv reached,
    // checked and mended.
    let run = harness::rescue(&[&root, &pv], "repair", &["--thin-repair"]).unwrap();
    let r = run.expect(0, "repaired");
    let rebuilt: Vec<&serde_json::Value> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "thin_repair")
        .collect();
    assert_eq!(rebuilt.len(), 1, "{r:#}");
    assert_eq!(rebuilt[0]["path"], "vg0/pool");
    assert_eq!(r["layers"][0]["state"], "active", "{r:#}");
    let f = filesystem(r, "/dev/mapper/vg0-data");
    assert_eq!(
        (&f["mountpoint"], &f["fsck"]["status"]),
        (&"/srv".into(), &"corrected".into()),
        "{f:#}"
    );

    // The pool now passes thin_check: a repair-mode run without the flag (check mode's
    // read-only disks cannot run a thin pool) activates it and finds /srv clean.
    let run = harness::rescue(&[&root, &pv], "repair", &[]).unwrap();
    let r = run.json();
    assert_eq!(run.code, 0, "{r:#}");
    assert_eq!(r["layers"][0]["state"], "active", "{r:#}");
    assert!(r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["kind"] != "thin_repair"));
    assert_eq!(
        filesystem(r, "/dev/mapper/vg0-data")["state_before"],
        "clean",
        "{r:#}"
    );
}
