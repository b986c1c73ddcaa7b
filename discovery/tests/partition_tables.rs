//! Partition tables of real images: tables written by util-linux's `sfdisk` and compared with
//! `sfdisk --json`, GPTs damaged on purpose, util-linux's own test images from the shared
//! corpus, and a property test feeding mutated tables (no panic, bounded allocation).
//!
//! Tests needing `sfdisk` (Debian package `fdisk`), `xz` or the corpus skip with a message
//! when those are missing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proptest::prelude::*;
use serde_json::Value;
use vmrescue_discovery::partition::{gpt, read_table, PartType, PartitionError, Table, TableKind};

// ---------------------------------------------------------------------------------------------
// Allocation accounting for the property test: the largest single allocation and the peak of
// bytes held, per thread, between `alloc_reset()` and `alloc_peaks()`.

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
    let _ = LIVE.try_with(|l| {
        let now = l.get() + size as i64;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get() - size as i64));
}

fn alloc_reset() {
    LARGEST.with(|m| m.set(0));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
}

/// (largest single allocation, peak bytes held) since the last reset.
fn alloc_peaks() -> (usize, i64) {
    (LARGEST.with(Cell::get), PEAK.with(Cell::get))
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches const-initialised thread-locals (no allocation, no destructor) through `try_with`.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn sfdisk() -> Option<PathBuf> {
    ["sfdisk", "/usr/sbin/sfdisk", "/sbin/sfdisk"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        // scripts/setup.sh installs it: a missing sfdisk is a broken set-up, not a skip.
        .or_else(|| panic!("sfdisk is missing: run scripts/setup.sh (package fdisk)"))
}

/// Makes a sparse image of `mib` MiB (like `truncate -s`) and partitions it with `script`.
fn make_image(sfdisk: &Path, dir: &Path, name: &str, mib: u64, script: &str) -> PathBuf {
    let path = dir.join(name);
    File::create(&path).unwrap().set_len(mib << 20).unwrap();
    let mut child = Command::new(sfdisk)
        .args(["--no-reread", "--no-tell-kernel", "--quiet"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk failed on {script}");
    path
}

fn sfdisk_json(sfdisk: &Path, path: &Path) -> Value {
    let out = Command::new(sfdisk)
        .arg("--json")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["partitiontable"].clone()
}

fn read_file(path: &Path) -> Result<Option<Table>, PartitionError> {
    let mut f = File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    read_table(&mut f, size)
}

/// Asserts that `t` says what `sfdisk --json` says about the same image.
fn assert_matches_sfdisk(t: &Table, json: &Value, image: &Path) {
    let ss = json["sectorsize"].as_u64().unwrap();
    assert_eq!(u64::from(t.sector_size), ss);
    let label = json["label"].as_str().unwrap();
    assert_eq!(t.kind.as_str(), label);
    let id = json["id"].as_str().unwrap().to_lowercase();
    let id = id.strip_prefix("0x").unwrap_or(&id).to_string();
    assert_eq!(t.id.as_deref(), Some(id.as_str()));
    let parts = json["partitions"].as_array().unwrap();
    assert_eq!(t.partitions.len(), parts.len(), "{t:#?}");
    let prefix = image.to_str().unwrap();
    for (p, j) in t.partitions.iter().zip(parts) {
        let node = j["node"].as_str().unwrap();
        let number: u32 = node.strip_prefix(prefix).unwrap().parse().unwrap();
        assert_eq!(p.number, number);
        assert_eq!(
            p.start,
            j["start"].as_u64().unwrap() * ss,
            "start of {node}"
        );
        assert_eq!(p.size, j["size"].as_u64().unwrap() * ss, "size of {node}");
        let ty = j["type"].as_str().unwrap();
        match &p.part_type {
            PartType::Mbr(b) => {
                assert_eq!(*b, u8::from_str_radix(ty, 16).unwrap(), "type of {node}");
                assert_eq!(
                    p.uuid.as_deref(),
                    Some(format!("{id}-{number:02x}").as_str())
                );
                assert_eq!(p.bootable, j["bootable"].as_bool().unwrap_or(false));
                assert_eq!(p.name, None);
            }
            PartType::Gpt(g) => {
                assert_eq!(*g, ty.to_lowercase(), "type of {node}");
                let uuid = j["uuid"].as_str().unwrap().to_lowercase();
                assert_eq!(p.uuid.as_deref(), Some(uuid.as_str()));
                assert_eq!(p.name.as_deref(), j["name"].as_str());
                let legacy = j["attrs"]
                    .as_str()
                    .is_some_and(|a| a.contains("LegacyBIOSBootable"));
                assert_eq!(p.bootable, legacy);
                assert_eq!(p.attributes & gpt::ATTR_LEGACY_BIOS_BOOTABLE != 0, legacy);
            }
        }
    }
}

const DOS_SCRIPT: &str = "label: dos\n\
label-id: 0x1badcafe\n\
,8M,83,*\n\
,8M,82\n\
,,5\n\
,4M,83\n\
,4M,8e\n\
,,83\n";

const GPT_SCRIPT: &str = "label: gpt\n\
label-id: 5F0C9D4E-8B1A-4C2D-9E3F-A0B1C2D3E4F5\n\
size=1M, type=21686148-6449-6E6F-744E-656564454649, name=\"BIOS boot\"\n\
size=8M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI System\", attrs=\"LegacyBIOSBootable\"\n\
size=8M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap, uuid=AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE\n\
size=16M, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=\"root fs\"\n\
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"données\"\n";

// ---------------------------------------------------------------------------------------------
// (a) Tables written by sfdisk.

#[test]
fn sfdisk_dos_with_logical_partitions() {
    let Some(sf) = sfdisk() else {
        eprintln!("SKIP sfdisk_dos_with_logical_partitions: sfdisk not installed (package fdisk)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(&sf, dir.path(), "dos.img", 64, DOS_SCRIPT);
    let t = read_file(&img).unwrap().unwrap();
    assert_eq!(t.kind, TableKind::Dos);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_matches_sfdisk(&t, &sfdisk_json(&sf, &img), &img);
    // 2 primaries + the extended container + 3 logicals numbered 5, 6, 7.
    let numbers: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, vec![1, 2, 3, 5, 6, 7]);
    assert!(t.partitions[2].part_type.is_extended());
    assert_eq!(t.id.as_deref(), Some("1badcafe"));
    assert_eq!(t.partitions[3].uuid.as_deref(), Some("1badcafe-05"));
}

#[test]
fn sfdisk_gpt_with_names() {
    let Some(sf) = sfdisk() else {
        eprintln!("SKIP sfdisk_gpt_with_names: sfdisk not installed (package fdisk)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(&sf, dir.path(), "gpt.img", 64, GPT_SCRIPT);
    let t = read_file(&img).unwrap().unwrap();
    assert_eq!(t.kind, TableKind::Gpt);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_matches_sfdisk(&t, &sfdisk_json(&sf, &img), &img);
    assert_eq!(
        t.id.as_deref(),
        Some("5f0c9d4e-8b1a-4c2d-9e3f-a0b1c2d3e4f5")
    );
    let types: Vec<&PartType> = t.partitions.iter().map(|p| &p.part_type).collect();
    let want = [
        gpt::BIOS_BOOT,
        gpt::EFI_SYSTEM,
        gpt::LINUX_SWAP,
        gpt::LINUX_ROOT_X86_64,
        gpt::LINUX_FILESYSTEM,
    ];
    for (got, want) in types.iter().zip(want) {
        assert_eq!(**got, PartType::Gpt(want.to_string()));
    }
    assert_eq!(t.partitions[4].name.as_deref(), Some("données"));
    assert_eq!(
        t.partitions[2].uuid.as_deref(),
        Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    );
}

// ---------------------------------------------------------------------------------------------
// (b) A damaged primary GPT: the backup is used, with a warning.

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn damaged_primary_gpt_falls_back_to_backup() {
    let Some(sf) = sfdisk() else {
        eprintln!("SKIP damaged_primary_gpt_falls_back_to_backup: sfdisk not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(&sf, dir.path(), "gpt.img", 64, GPT_SCRIPT);
    let good = read_file(&img).unwrap().unwrap();
    let json = sfdisk_json(&sf, &img);

    // Garbage over the primary header's fields (signature kept, so it is "damaged").
    overwrite(&img, 512 + 24, &[0xA5; 64]);
    let t = read_file(&img).unwrap().unwrap();
    assert_eq!(t.kind, TableKind::Gpt);
    assert_eq!(t.partitions, good.partitions);
    assert_eq!(t.id, good.id);
    let last_lba = (64u64 << 20) / 512 - 1;
    assert!(
        t.warnings.iter().any(|w| w.contains("primary GPT header")
            && w.contains("damaged")
            && w.contains(&format!("backup header at LBA {last_lba}"))),
        "{:?}",
        t.warnings
    );
    assert_matches_sfdisk(&t, &json, &img);

    // The whole primary header sector wiped.
    overwrite(&img, 512, &[0; 512]);
    let t = read_file(&img).unwrap().unwrap();
    assert_eq!(t.partitions, good.partitions);
    assert!(
        t.warnings.iter().any(|w| w.contains("missing")),
        "{:?}",
        t.warnings
    );
}

#[test]
fn damaged_primary_gpt_entries_fall_back_to_backup() {
    let Some(sf) = sfdisk() else {
        eprintln!("SKIP damaged_primary_gpt_entries_fall_back_to_backup: sfdisk not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(&sf, dir.path(), "gpt.img", 64, GPT_SCRIPT);
    let good = read_file(&img).unwrap().unwrap();
    overwrite(&img, 2 * 512 + 56, b"X\0Y\0"); // first partition's name
    let t = read_file(&img).unwrap().unwrap();
    assert_eq!(t.partitions, good.partitions);
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("entry array checksum")),
        "{:?}",
        t.warnings
    );
}

#[test]
fn both_gpt_copies_damaged_is_an_error() {
    let Some(sf) = sfdisk() else {
        eprintln!("SKIP both_gpt_copies_damaged_is_an_error: sfdisk not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(&sf, dir.path(), "gpt.img", 64, GPT_SCRIPT);
    overwrite(&img, 512 + 24, &[0xA5; 8]);
    overwrite(&img, (64 << 20) - 512 + 24, &[0xA5; 8]);
    match read_file(&img) {
        Err(PartitionError::BrokenGpt(why)) => {
            assert!(why.contains("primary") && why.contains("backup"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// (c) util-linux's partition-table test images (shared corpus).

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/blkid");
    if dir.join("manifest.tsv").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: the blkid corpus is absent ({} not found); clone next to shared/ to run it",
            dir.display()
        );
        None
    }
}

/// Decompresses `images-pt/NAME.img.xz` with `xz -dc` into `dir`.
fn unxz(corpus: &Path, name: &str, dir: &Path) -> Option<PathBuf> {
    let out = dir.join(name);
    let status = Command::new("xz")
        .arg("-dc")
        .arg(corpus.join("images-pt").join(format!("{name}.img.xz")))
        .stdout(File::create(&out).unwrap())
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        other => panic!("cannot decompress {name}.img.xz with xz (scripts/setup.sh installs xz-utils): {other:?}"),
    }
}

/// One `#N: start size ...` line of blkid's expected lowprobe-pt output.
#[derive(Debug)]
struct ExpectedPart {
    number: u32,
    start: u64,
    size: u64,
    rest: String,
}

impl ExpectedPart {
    fn attr(&self, key: &str) -> Option<String> {
        let tag = format!("{key}='");
        let from = self.rest.find(&tag)? + tag.len();
        let len = self.rest[from..].find('\'')?;
        Some(self.rest[from..from + len].to_string())
    }
    /// Nested tables (BSD slices inside a DOS partition) are marked `(freebsd)` and the like.
    fn nested(&self) -> bool {
        self.rest.contains('(')
    }
}

/// (PT type, PT id, partitions) from an expected lowprobe-pt file.
fn expected(corpus: &Path, file: &str) -> (String, Option<String>, Vec<ExpectedPart>) {
    let text = std::fs::read_to_string(corpus.join(file)).unwrap();
    let first = text.lines().next().unwrap();
    let pt = first
        .split(", ")
        .find_map(|f| f.strip_prefix("PT: "))
        .unwrap()
        .to_string();
    let id = first
        .split(", ")
        .find_map(|f| f.strip_prefix("id="))
        .filter(|id| *id != "(null)")
        .map(str::to_string);
    let parts = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| {
            let (n, rest) = l.split_once(':').unwrap();
            let mut it = rest.split_whitespace();
            let start = it.next().unwrap().parse().unwrap();
            let size = it.next().unwrap().parse().unwrap();
            ExpectedPart {
                number: n.parse().unwrap(),
                start,
                size,
                rest: it.collect::<Vec<_>>().join(" "),
            }
        })
        .collect();
    (pt, id, parts)
}

/// The manifest row of an image: its fields.
fn manifest_row(corpus: &Path, image: &str) -> Vec<String> {
    let text = std::fs::read_to_string(corpus.join("manifest.tsv")).unwrap();
    text.lines()
        .map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.first().map(String::as_str) == Some(image))
        .unwrap_or_else(|| panic!("{image} not in manifest.tsv"))
}

fn check_corpus_image(name: &str) {
    let Some(corpus) = corpus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(img) = unxz(&corpus, name, dir.path()) else {
        return;
    };
    let image = format!("images-pt/{name}.img.xz");
    let row = manifest_row(&corpus, &image);
    let (pt, id, parts) = expected(&corpus, &row[1]);

    let t = read_file(&img).unwrap().unwrap();
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    // PTTYPE and PTUUID, from the expected output and the manifest. The manifest's PT rows
    // do not all have the header's column count, so look the values up among the row's fields
    // instead of by column; the partition count is the last field.
    assert_eq!(t.kind.as_str(), pt);
    assert!(row.iter().any(|f| f == t.kind.as_str()), "{row:?}");
    assert_eq!(t.id, id);
    if let Some(id) = &t.id {
        assert!(row.iter().any(|f| f == id), "{row:?}");
    }
    let count: usize = row.last().unwrap().parse().unwrap();
    assert_eq!(count, parts.len());
    // Nested tables (BSD disklabels inside a DOS partition) are not read by this crate.
    let own: Vec<&ExpectedPart> = parts.iter().filter(|p| !p.nested()).collect();
    assert_eq!(t.partitions.len(), own.len(), "{t:#?}");
    let ss = u64::from(t.sector_size);
    for (p, e) in t.partitions.iter().zip(own) {
        assert_eq!(p.number, e.number);
        assert_eq!(p.start, e.start * ss);
        assert_eq!(p.size, e.size * ss);
        assert_eq!(p.uuid, e.attr("uuid"));
        match &p.part_type {
            PartType::Gpt(g) => {
                assert_eq!(Some(g.clone()), e.attr("type"));
                assert_eq!(p.name, e.attr("name"));
            }
            PartType::Mbr(b) => {
                let ty = e.rest.split_whitespace().next().unwrap();
                assert_eq!(format!("{b:#x}"), ty);
            }
        }
    }
}

#[test]
fn corpus_gpt_image() {
    check_corpus_image("gpt");
}

#[test]
fn corpus_dos_bsd_image() {
    check_corpus_image("dos+bsd");
}

// ---------------------------------------------------------------------------------------------
// Property test: mutated MBR/EBR/GPT sectors never panic and allocate a bounded amount.

const SS: usize = 512;
const SEED_SECTORS: usize = 200;

fn crc_fix_gpt(img: &mut [u8], hdr_lba: usize) {
    let h = hdr_lba * SS;
    let entries_lba = u64::from_le_bytes(img[h + 72..h + 80].try_into().unwrap()) as usize;
    let n = u32::from_le_bytes(img[h + 80..h + 84].try_into().unwrap()) as usize;
    let es = u32::from_le_bytes(img[h + 84..h + 88].try_into().unwrap()) as usize;
    if let Some(arr) = entries_lba
        .checked_mul(SS)
        .zip(n.checked_mul(es))
        .and_then(|(o, l)| img.get(o..o.checked_add(l)?))
    {
        let crc = gpt::crc32(arr);
        img[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
    }
    let hs = u32::from_le_bytes(img[h + 12..h + 16].try_into().unwrap()) as usize;
    if (92..=SS).contains(&hs) {
        img[h + 16..h + 20].fill(0);
        let crc = gpt::crc32(&img[h..h + hs]);
        img[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A small GPT disk: protective MBR, 128 entries, three partitions, primary and backup.
fn seed_gpt() -> Vec<u8> {
    let mut img = vec![0u8; SEED_SECTORS * SS];
    img[446 + 4] = 0xEE;
    img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    img[446 + 12..446 + 16].copy_from_slice(&(SEED_SECTORS as u32 - 1).to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    let last = SEED_SECTORS - 1;
    for (i, (first, end)) in [(34u64, 60u64), (61, 100), (101, 160)].iter().enumerate() {
        for base in [2, last - 32] {
            let e = base * SS + i * 128;
            img[e] = 0x10 + i as u8; // type GUID
            img[e + 16] = 0x20 + i as u8; // unique GUID
            img[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
            img[e + 40..e + 48].copy_from_slice(&end.to_le_bytes());
            img[e + 56] = b'p';
        }
    }
    for (lba, alt, entries) in [(1, last, 2), (last, 1, last - 32)] {
        let h = lba * SS;
        img[h..h + 8].copy_from_slice(b"EFI PART");
        img[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        img[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
        img[h + 24..h + 32].copy_from_slice(&(lba as u64).to_le_bytes());
        img[h + 32..h + 40].copy_from_slice(&(alt as u64).to_le_bytes());
        img[h + 40..h + 48].copy_from_slice(&34u64.to_le_bytes());
        img[h + 48..h + 56].copy_from_slice(&(last as u64 - 33).to_le_bytes());
        img[h + 56] = 0x42;
        img[h + 72..h + 80].copy_from_slice(&(entries as u64).to_le_bytes());
        img[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
        img[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        crc_fix_gpt(&mut img, lba);
    }
    img
}

fn put_slot(img: &mut [u8], sector: usize, i: usize, ptype: u8, start: u32, n: u32) {
    let o = sector * SS + 446 + 16 * i;
    img[o + 4] = ptype;
    img[o + 8..o + 12].copy_from_slice(&start.to_le_bytes());
    img[o + 12..o + 16].copy_from_slice(&n.to_le_bytes());
    img[sector * SS + 510] = 0x55;
    img[sector * SS + 511] = 0xAA;
}

/// A small DOS disk: two primaries and an extended partition with three logicals.
fn seed_dos() -> Vec<u8> {
    let mut img = vec![0u8; SEED_SECTORS * SS];
    img[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    put_slot(&mut img, 0, 0, 0x83, 2, 20);
    put_slot(&mut img, 0, 1, 0x82, 22, 20);
    put_slot(&mut img, 0, 2, 0x05, 50, 150);
    put_slot(&mut img, 50, 0, 0x83, 1, 30);
    put_slot(&mut img, 50, 1, 0x05, 40, 50);
    put_slot(&mut img, 90, 0, 0x8e, 1, 30);
    put_slot(&mut img, 90, 1, 0x05, 90, 50);
    put_slot(&mut img, 140, 0, 0x83, 1, 40);
    img
}

/// Byte ranges worth mutating: tables, headers, entries, EBRs.
const HOT: &[(usize, usize)] = &[
    (440, 72),
    (SS, 96),
    (2 * SS, 512),
    (50 * SS + 440, 72),
    (90 * SS + 440, 72),
    (140 * SS + 440, 72),
    ((SEED_SECTORS - 33) * SS, 512),
    ((SEED_SECTORS - 1) * SS, 96),
];

fn check_bounded(img: Vec<u8>, size: u64) {
    let mut dev = Cursor::new(img);
    alloc_reset();
    let result = read_table(&mut dev, size);
    let (largest, peak) = alloc_peaks();
    // The GPT entry array (at most 1 MiB) is the largest thing ever read.
    assert!(largest <= (1 << 20) + 4096, "largest allocation {largest}");
    assert!(peak <= 8 << 20, "peak {peak} bytes held");
    drop(result);
}

fn mutation() -> impl Strategy<Value = (usize, usize, u8)> {
    (0..HOT.len(), any::<usize>(), any::<u8>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_tables_never_panic(
        gpt_seed in any::<bool>(),
        muts in proptest::collection::vec(mutation(), 0..24),
        big_values in proptest::collection::vec((0..HOT.len(), any::<usize>(), any::<u32>()), 0..4),
        fix_crc in any::<bool>(),
        size_choice in 0..4u8,
        odd_size in any::<u64>(),
    ) {
        let mut img = if gpt_seed { seed_gpt() } else { seed_dos() };
        for (region, off, byte) in muts {
            let (start, len) = HOT[region];
            img[start + off % len] = byte;
        }
        for (region, off, v) in big_values {
            let (start, len) = HOT[region];
            let o = start + (off % (len / 4)) * 4;
            img[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
        if fix_crc {
            crc_fix_gpt(&mut img, 1);
            crc_fix_gpt(&mut img, SEED_SECTORS - 1);
        }
        let len = img.len() as u64;
        let size = match size_choice {
            0 => len,
            1 => len / 2,
            2 => odd_size,
            _ => u64::MAX,
        };
        check_bounded(img, size);
    }

    #[test]
    fn random_sectors_never_panic(
        mut head in proptest::collection::vec(any::<u8>(), 0..3 * SS),
        signature in any::<bool>(),
        efi in any::<bool>(),
        size in any::<u64>(),
    ) {
        if signature && head.len() >= SS {
            head[510] = 0x55;
            head[511] = 0xAA;
        }
        if efi && head.len() >= SS + 8 {
            head[SS..SS + 8].copy_from_slice(b"EFI PART");
        }
        check_bounded(head, size);
    }
}

#[test]
fn huge_gpt_entry_array_is_refused_without_allocating_it() {
    let mut img = seed_gpt();
    // 1 << 20 entries of 4096 bytes (4 GiB), with valid header CRCs.
    for lba in [1, SEED_SECTORS - 1] {
        let h = lba * SS;
        img[h + 80..h + 84].copy_from_slice(&(1u32 << 20).to_le_bytes());
        img[h + 84..h + 88].copy_from_slice(&4096u32.to_le_bytes());
        crc_fix_gpt(&mut img, lba);
    }
    let size = img.len() as u64;
    match read_table(&mut Cursor::new(img.clone()), size) {
        Err(PartitionError::BrokenGpt(why)) => assert!(why.contains("limit"), "{why}"),
        other => panic!("{other:?}"),
    }
    check_bounded(img, size);
}
