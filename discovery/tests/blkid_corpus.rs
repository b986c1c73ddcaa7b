//! util-linux's own blkid test images (`../shared/corpora/blkid`, see its README.txt): every
//! image is probed and compared with blkid's expected low-level probe output.
//!
//! - For the types `vmrescue_discovery::probe` supports, TYPE, UUID, LABEL, VERSION, USAGE
//!   and UUID_SUB must match exactly (labels and UUIDs compared as decoded `*_ENC` bytes,
//!   non-UTF-8 bytes replaced by U+FFFD on both sides, as `Probe` carries `String`s).
//! - Every other filesystem image must give `None`.
//! - Partition-table images (images-pt/) are probed at offset 0: their expected files only
//!   describe partitions, so the answer must be `None` unless listed in
//!   [`PT_IMAGE_FILESYSTEMS`] with what `blkid -p` reports for the whole image.
//!
//! All mismatches are collected and reported together.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vmrescue_discovery::fstype::FsType;
use vmrescue_discovery::probe::{probe_with_session_offset, Probe};

/// Whether `probe` identifies blkid's TYPE `t`: every known [`FsType`].
fn is_supported(t: &str) -> bool {
    FsType::KNOWN.iter().any(|k| k.as_str() == t)
}

/// Filesystems on partition-table images at offset 0, as `blkid -p -o export` (util-linux
/// 2.38.1) reports them: (image, TYPE, UUID). The lowprobe-pt expected files do not cover
/// filesystems at all.
const PT_IMAGE_FILESYSTEMS: &[(&str, &str, &str)] = &[(
    "images-pt/dos+bsd.img.xz",
    "ext3",
    "47c6f88b-696d-434e-9682-370bb78c67a1",
)];

const MIB: u64 = 1 << 20;
const CD_SECTOR: u64 = 2048;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/blkid")
}

/// Decodes blkid's `\xNN` escapes (`blkid_encode_string`) into bytes.
fn decode_enc(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What blkid's expected low-probe file says, with `*_ENC` values decoded.
#[derive(Debug, Default)]
struct Expected {
    fstype: Option<String>,
    uuid: Option<String>,
    label: Option<String>,
    version: Option<String>,
    usage: Option<String>,
    uuid_sub: Option<String>,
}

fn read_expected(path: &Path) -> Result<Expected, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut e = Expected::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = Some(lossy(&decode_enc(v)));
        match k {
            "ID_FS_TYPE" => e.fstype = v,
            "ID_FS_UUID_ENC" => e.uuid = v,
            "ID_FS_LABEL_ENC" => e.label = v,
            "ID_FS_VERSION" => e.version = v,
            "ID_FS_USAGE" => e.usage = v,
            "ID_FS_UUID_SUB_ENC" => e.uuid_sub = v,
            _ => {}
        }
    }
    Ok(e)
}

/// One manifest row.
struct Row {
    image: String,
    expected_file: String,
    /// `session_offset_bytes`, when the row has one.
    session_offset: Option<u64>,
}

/// The manifest rows. Rows without a session offset leave that column out entirely (their
/// TYPE is in its place), so a session offset is recognised as an all-digit third column on
/// an images-fs row (no blkid TYPE is all digits).
fn read_manifest(path: &Path) -> Result<Vec<Row>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(image), Some(expected_file)) = (cols.first(), cols.get(1)) else {
            return Err(format!("bad manifest line: {line:?}"));
        };
        let session_offset = cols
            .get(2)
            .filter(|c| {
                image.starts_with("images-fs/")
                    && !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
            })
            .and_then(|c| c.parse().ok());
        rows.push(Row {
            image: image.to_string(),
            expected_file: expected_file.to_string(),
            session_offset,
        });
    }
    Ok(rows)
}

/// The session offset blkid's test used. The manifest computes "N × 2048 sectors of 512 B"
/// (N MiB) from the expected file's "-N" suffix, but the images are CD images whose
/// sessions start at N × 2048 bytes (N is in 2 KiB CD sectors), which is also the only
/// reading that fits in the image. Returns the offset and a note when it had to be fixed.
fn session_offset(row: &Row, image_size: u64) -> (u64, Option<String>) {
    let Some(off) = row.session_offset else {
        return (0, None);
    };
    if off < image_size || off == 0 {
        return (off, None);
    }
    let suffix: Option<u64> = row
        .expected_file
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok());
    match suffix {
        Some(n) if off == n * MIB => (
            n * CD_SECTOR,
            Some(format!(
                "manifest session_offset_bytes {off} (= {n} MiB) is past the end of the \
                 {image_size}-byte image; used {n} CD sectors = {} bytes",
                n * CD_SECTOR
            )),
        ),
        _ => (off, None),
    }
}

fn decompress(src: &Path, dst: &Path) -> Result<(), String> {
    let out = File::create(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    let status = Command::new("xz")
        .arg("-dc")
        .arg(src)
        .stdout(out)
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("running xz: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("xz -dc {} failed: {status}", src.display()))
    }
}

fn show(p: &Option<Probe>) -> String {
    match p {
        None => "None".into(),
        Some(p) => format!(
            "{} uuid={:?} label={:?} version={:?} usage={} uuid_sub={:?}",
            p.fstype,
            p.uuid,
            p.label,
            p.version,
            p.usage.as_str(),
            p.uuid_sub
        ),
    }
}

/// Compares a probe of a supported type with blkid's expectations.
fn compare(got: &Option<Probe>, want: &Expected) -> Vec<String> {
    let Some(p) = got else {
        return vec![format!("expected {:?}, got None", want.fstype)];
    };
    let mut diffs = Vec::new();
    let mut check = |what: &str, got: Option<&str>, want: Option<&str>| {
        if got != want {
            diffs.push(format!("{what}: got {got:?}, blkid {want:?}"));
        }
    };
    check("TYPE", Some(p.fstype.as_str()), want.fstype.as_deref());
    check("UUID", p.uuid.as_deref(), want.uuid.as_deref());
    check("LABEL", p.label.as_deref(), want.label.as_deref());
    check("VERSION", p.version.as_deref(), want.version.as_deref());
    check("USAGE", Some(p.usage.as_str()), want.usage.as_deref());
    check("UUID_SUB", p.uuid_sub.as_deref(), want.uuid_sub.as_deref());
    diffs
}

#[test]
fn blkid_corpus() {
    let dir = corpus_dir();
    let manifest = dir.join("manifest.tsv");
    if !manifest.is_file() {
        eprintln!(
            "SKIP blkid_corpus: {} not found (the shared corpora live outside the repository)",
            manifest.display()
        );
        return;
    }
    if Command::new("xz").arg("--version").output().is_err() {
        eprintln!("SKIP blkid_corpus: the `xz` command is not available to unpack the images");
        return;
    }
    let rows = match read_manifest(&manifest) {
        Ok(rows) => rows,
        Err(e) => panic!("{e}"),
    };
    assert!(!rows.is_empty(), "empty manifest");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let img_path = tmp.path().join("image");
    let mut unpacked: Option<String> = None;
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();

    for row in &rows {
        let tag = format!("{} [{}]", row.image, row.expected_file);
        if unpacked.as_deref() != Some(row.image.as_str()) {
            if let Err(e) = decompress(&dir.join(&row.image), &img_path) {
                failures.push(format!("{tag}: {e}"));
                unpacked = None;
                continue;
            }
            unpacked = Some(row.image.clone());
        }
        let want = match read_expected(&dir.join(&row.expected_file)) {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!("{tag}: {e}"));
                continue;
            }
        };
        let size = match fs::metadata(&img_path) {
            Ok(m) => m.len(),
            Err(e) => {
                failures.push(format!("{tag}: {e}"));
                continue;
            }
        };
        let is_pt = row.image.starts_with("images-pt/");
        let (offset, note) = if is_pt {
            (0, None)
        } else {
            session_offset(row, size)
        };
        if let Some(n) = note {
            notes.push(format!("{tag}: {n}"));
        }
        let got = catch_unwind(AssertUnwindSafe(|| {
            let mut f = File::open(&img_path).map_err(|e| e.to_string())?;
            probe_with_session_offset(&mut f, size, offset).map_err(|e| e.to_string())
        }));
        let got = match got {
            Ok(Ok(got)) => got,
            Ok(Err(e)) => {
                failures.push(format!("{tag}: I/O error {e}"));
                continue;
            }
            Err(_) => {
                failures.push(format!("{tag}: PANIC in probe"));
                continue;
            }
        };
        eprintln!("{tag} @{offset}: {}", show(&got));

        let supported = want.fstype.as_deref().is_some_and(is_supported);
        let verdict = if is_pt {
            let allowed = PT_IMAGE_FILESYSTEMS
                .iter()
                .find(|(img, _, _)| *img == row.image);
            match (&got, allowed) {
                (None, _) => "pt-none",
                (Some(p), Some((_, t, u)))
                    if p.fstype.as_str() == *t && p.uuid.as_deref() == Some(*u) =>
                {
                    "pt-known-fs"
                }
                (Some(_), _) => {
                    failures.push(format!(
                        "{tag}: partition-table image probed as {}",
                        show(&got)
                    ));
                    "FAIL"
                }
            }
        } else if supported {
            let diffs = compare(&got, &want);
            if diffs.is_empty() {
                "match"
            } else {
                failures.push(format!("{tag}: {}", diffs.join("; ")));
                "FAIL"
            }
        } else if got.is_none() {
            "unsupported-none"
        } else {
            failures.push(format!(
                "{tag}: blkid says {:?}, which is not supported, but probe said {}",
                want.fstype,
                show(&got)
            ));
            "FAIL"
        };
        *tally.entry(verdict).or_default() += 1;
    }

    for n in &notes {
        eprintln!("note: {n}");
    }
    eprintln!("blkid corpus: {} rows, {tally:?}", rows.len());
    assert!(
        failures.is_empty(),
        "{} of {} corpus rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn enc_decoding() {
    assert_eq!(decode_enc(r"NO\x20NAME"), b"NO NAME");
    assert_eq!(decode_enc(r"\xe5\xe5"), [0xe5, 0xe5]);
    assert_eq!(decode_enc(r"a\x2"), b"a\\x2");
    assert_eq!(decode_enc("Новый\\x20том"), "Новый том".as_bytes());
}
