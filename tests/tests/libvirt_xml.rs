//! The rescue XML over libvirt's own test domains (`../shared/corpora/libvirt-domains`): every
//! x86 QEMU domain that libvirt's schema accepts still validates after the rescue edit, keeps
//! every element it had, and boots the rescue first; other architectures are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use roxmltree::Document;
use vmrescue_companion::libvirt::xml::{self, BootMethod, Rescue, XmlError};
use vmrescue_protocol::Mode;

fn corpus() -> Option<(PathBuf, PathBuf)> {
    let root = vmrescue_tests::harness::workspace_root().join("../shared/corpora");
    let (d, s) = (
        root.join("libvirt-domains"),
        root.join("libvirt-schemas/domain.rng"),
    );
    (d.is_dir() && s.is_file()).then_some((d, s))
}

/// Which of `files` validate against `schema` (one xmllint run).
fn valid(schema: &Path, files: &[PathBuf]) -> Vec<bool> {
    let mut out = vec![false; files.len()];
    for (chunk_no, chunk) in files.chunks(200).enumerate() {
        let o = Command::new("xmllint")
            .args(["--noout", "--relaxng"])
            .arg(schema)
            .args(chunk)
            .output()
            .expect("xmllint (libxml2-utils, scripts/setup.sh)");
        let err = String::from_utf8_lossy(&o.stderr);
        for (i, f) in chunk.iter().enumerate() {
            out[chunk_no * 200 + i] = err.contains(&format!("{} validates", f.display()));
        }
    }
    out
}

/// Element paths (tag names from the root) and how often each occurs.
fn element_paths(text: &str) -> BTreeMap<String, usize> {
    let doc = Document::parse(text).unwrap();
    let mut m = BTreeMap::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        let path: Vec<&str> = n
            .ancestors()
            .filter(|a| a.is_element())
            .map(|a| a.tag_name().name())
            .collect();
        *m.entry(path.join("<")).or_insert(0) += 1;
    }
    m
}

/// The rescue boots first: `<boot dev='cdrom'/>` leads `<os>`, or the ISO's cdrom has order 1
/// and nothing else does.
fn boots_rescue_first(text: &str, iso: &str) -> bool {
    let doc = Document::parse(text).unwrap();
    let dom = doc.root_element();
    let os = dom
        .children()
        .find(|c| c.tag_name().name() == "os")
        .unwrap();
    let first_os_boot = os
        .children()
        .find(|c| c.tag_name().name() == "boot")
        .and_then(|b| b.attribute("dev"));
    let order_one: Vec<_> = dom
        .descendants()
        .filter(|n| {
            n.tag_name().name() == "boot" && n.attribute("order").map(str::trim) == Some("1")
        })
        .collect();
    match (first_os_boot, order_one.as_slice()) {
        (Some("cdrom"), []) => true,
        (None, [one]) => {
            one.parent()
                .and_then(|d| d.descendants().find(|s| s.tag_name().name() == "source"))
                .and_then(|s| s.attribute("file"))
                == Some(iso)
        }
        _ => false,
    }
}

#[test]
fn rescue_xml_of_libvirts_own_test_domains() {
    let Some((dir, schema)) = corpus() else {
        eprintln!("SKIP: ../shared/corpora/libvirt-domains or libvirt-schemas is not next to the checkout");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .filter(|p| !p.to_string_lossy().contains("-invalid"))
        .collect();
    files.sort();
    let ok = valid(&schema, &files);
    let accepted: Vec<&PathBuf> = files
        .iter()
        .zip(&ok)
        .filter(|(_, v)| **v)
        .map(|(f, _)| f)
        .collect();
    assert!(
        accepted.len() > 500,
        "only {} of {} domains validate",
        accepted.len(),
        files.len()
    );

    let out_dir = tempfile::tempdir().unwrap();
    let iso = "/var/lib/libvirt/images/vmrescue-test.iso";
    let (mut rescued, mut refused_arch, mut other) = (Vec::new(), 0usize, Vec::new());
    for f in &accepted {
        let text = std::fs::read_to_string(f).unwrap();
        let r = Rescue {
            boot: BootMethod::Cdrom { iso: iso.into() },
            mode: Mode::Check,
            channel: "org.vmrescue.agent.0".into(),
            console_log: Some("/run/vmrescue/domains/d/console.log".into()),
            nvram_copy: Some("/run/vmrescue/domains/d/nvram.fd".into()),
            settings_iso: None,
            guest_nvram_exists: true,
            scratch_disk: None,
            // The late archive's disk too, so its template meets libvirt's schema.
            late_disk: Some("/var/lib/libvirt/images/vmrescue-test-late.img".into()),
            staged: vec![],
        };
        match xml::rescue_xml(&text, &r) {
            Ok(new) => {
                let before = element_paths(&text);
                let after = element_paths(&new);
                for (path, n) in &before {
                    assert!(
                        after.get(path).copied().unwrap_or(0) >= *n,
                        "{}: element {path} lost",
                        f.display()
                    );
                }
                assert!(
                    boots_rescue_first(&new, iso),
                    "{}: the rescue does not boot first:\n{new}",
                    f.display()
                );
                let out = out_dir.path().join(f.file_name().unwrap());
                std::fs::write(&out, new).unwrap();
                rescued.push(out);
            }
            Err(XmlError::Arch(a)) => {
                assert!(!matches!(a.as_str(), "x86_64" | "i686"));
                assert!(
                    text.contains(&format!("arch='{a}'"))
                        || text.contains(&format!("arch=\"{a}\""))
                );
                refused_arch += 1;
            }
            Err(e) => other.push(format!("{}: {e}", f.display())),
        }
    }
    assert!(
        refused_arch > 20,
        "non-x86 domains are refused ({refused_arch})"
    );
    // Other refusals must be rare and explained (kernel boot domains given --boot cdrom are fine).
    assert!(other.len() * 50 < accepted.len(), "{other:#?}");
    let still = valid(&schema, &rescued);
    let broken: Vec<_> = rescued
        .iter()
        .zip(&still)
        .filter(|(_, v)| !**v)
        .map(|(f, _)| f)
        .collect();
    assert!(broken.is_empty(), "rescue XML fails the schema: {broken:?}");
    eprintln!(
        "{} domains: {} validate, {} rescued and still valid, {} non-x86 refused, {} other refusals",
        files.len(),
        accepted.len(),
        rescued.len(),
        refused_arch,
        other.len()
    );
}

#[test]
fn xml_rescue_command_prints_the_rescue_xml_or_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let dom = dir.path().join("web.xml");
    std::fs::write(
        &dom,
        "<domain type='kvm'>\n  <name>web</name>\n  <os>\n    <type arch='x86_64' machine='pc-q35-9.0'>hvm</type>\n  </os>\n  <devices>\n  </devices>\n</domain>\n",
    )
    .unwrap();
    let bin = vmrescue_tests::harness::vmrescue_bin().unwrap();
    let out = Command::new(&bin)
        .args(["xml", "rescue", "--iso", "/srv/vmrescue.iso"])
        .arg(&dom)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("<source file='/srv/vmrescue.iso'/>") && text.contains("bus='sata'"),
        "{text}"
    );
    assert!(text.contains("<boot dev='cdrom'/>"), "{text}");
    let arm = dir.path().join("arm.xml");
    std::fs::write(&arm, "<domain type='kvm'><name>a</name><os><type arch='aarch64'>hvm</type></os><devices/></domain>").unwrap();
    let out = Command::new(&bin)
        .args(["xml", "rescue", "--iso", "/x"])
        .arg(&arm)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("x86"),
        "{out:?}"
    );
    let out = Command::new(&bin)
        .args(["xml", "rescue", "/nonexistent.xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
