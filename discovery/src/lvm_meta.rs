//! LVM2 metadata read from a physical volume's bytes, with no device-mapper: the label's PV
//! header (the first metadata area), the metadata area header, and the newest metadata text
//! in it, parsed into the volume group's logical volumes and where their extents are. Enough
//! for the host to look into a linear LV of an image file (`vmrescue inspect`).

use std::io::{Read, Seek};

use crate::read_at;

const LABEL_ID: &[u8] = b"LABELONE";
const MDA_MAGIC: &[u8] = b" LVM2 x[5A%r0N*>";
/// Largest metadata text read.
const MAX_TEXT: u64 = 1 << 20;

/// One segment of an LV on one PV (linear, or one stripe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    /// The PV's name in the metadata (`pv0`) and the first extent on it, for each stripe.
    pub stripes: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lv {
    pub name: String,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pv {
    /// Its name in the metadata (`pv0`).
    pub key: String,
    /// The PV UUID (with hyphens, as blkid prints it).
    pub id: String,
    /// Where its first extent starts, in 512-byte sectors.
    pub pe_start: u64,
}

/// A volume group as its metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vg {
    pub name: String,
    pub id: String,
    /// In 512-byte sectors.
    pub extent_size: u64,
    pub pvs: Vec<Pv>,
    pub lvs: Vec<Lv>,
}

impl Vg {
    /// Where the LV `lv` lies on the PV whose UUID is `pv_id`, in bytes from the PV's start,
    /// when it is one linear segment there (`None` otherwise: striped, several segments,
    /// another PV, or a thin/RAID/snapshot LV).
    pub fn linear_extent(&self, lv: &Lv, pv_id: &str) -> Option<(u64, u64)> {
        let [seg] = lv.segments.as_slice() else {
            return None;
        };
        let [(pv_key, start_pe)] = seg.stripes.as_slice() else {
            return None;
        };
        let pv = self.pvs.iter().find(|p| &p.key == pv_key)?;
        if !pv.id.eq_ignore_ascii_case(pv_id) || seg.start_extent != 0 {
            return None;
        }
        let sector = 512u64;
        let offset = pv.pe_start.checked_mul(sector)?.checked_add(
            start_pe
                .checked_mul(self.extent_size)?
                .checked_mul(sector)?,
        )?;
        let len = seg
            .extent_count
            .checked_mul(self.extent_size)?
            .checked_mul(sector)?;
        Some((offset, len))
    }
}

fn le32(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(
        b.get(at..at + 4)?.try_into().ok()?,
    )))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the volume group from the PV that is `dev` (its first metadata area's newest text).
pub fn read<R: Read + Seek>(dev: &mut R) -> Option<Vg> {
    let head = read_at(dev, 0, 2048).ok()?;
    let sector = (0..4).find(|s| head.get(s * 512..s * 512 + 8) == Some(LABEL_ID))?;
    let label = &head[sector * 512..sector * 512 + 512];
    let pvh = usize::try_from(le32(label, 20)?).ok()?;
    // pv_header: uuid[32], device size (8), then disk_locn lists (offset, size) ending in zeros:
    // data areas first, then metadata areas.
    let mut at = pvh + 32 + 8;
    let mut lists = 0;
    let mut mda = None;
    while at + 16 <= label.len() {
        let (off, size) = (le64(label, at)?, le64(label, at + 8)?);
        at += 16;
        if off == 0 && size == 0 {
            lists += 1;
            if lists == 2 {
                break;
            }
            continue;
        }
        if lists == 1 && mda.is_none() {
            mda = Some((off, size));
        }
    }
    let (mda_start, mda_size) = mda?;
    let mh = read_at(dev, mda_start, 512).ok()?;
    if mh.get(4..20)? != MDA_MAGIC {
        return None;
    }
    // raw_locn[0]: offset (from the area's start), size, checksum, flags.
    let (off, size) = (le64(&mh, 40)?, le64(&mh, 48)?);
    if size == 0 || size > MAX_TEXT || off >= mda_size {
        return None;
    }
    // A circular buffer after the 512-byte header: the text may wrap.
    let first = size.min(mda_size - off);
    let mut text = read_at(dev, mda_start + off, usize::try_from(first).ok()?).ok()?;
    if first < size {
        text.extend(read_at(dev, mda_start + 512, usize::try_from(size - first).ok()?).ok()?);
    }
    // The text ends in a NUL.
    let text = String::from_utf8_lossy(&text);
    parse_vg(text.trim_end_matches('\0'))
}

/// A value of LVM's configuration format.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Str(String),
    List(Vec<Value>),
    Section(Vec<(String, Value)>),
}

impl Value {
    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Section(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn int(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }
    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn sections(&self) -> Vec<(&str, &Value)> {
        match self {
            Value::Section(items) => items
                .iter()
                .filter(|(_, v)| matches!(v, Value::Section(_)))
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
            _ => Vec::new(),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip(&mut self) {
        while let Some(&c) = self.s.get(self.at) {
            if c == b'#' {
                while self.s.get(self.at).is_some_and(|&c| c != b'\n') {
                    self.at += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.at += 1;
            } else {
                break;
            }
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip();
        self.s.get(self.at).copied()
    }
    fn word(&mut self) -> Option<String> {
        self.skip();
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"_+.-".contains(c))
        {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }
    fn string(&mut self) -> Option<String> {
        self.at += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.at)?;
            self.at += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    out.push(*self.s.get(self.at)?);
                    self.at += 1;
                }
                _ => out.push(c),
            }
        }
    }
    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek()? {
                        b']' => {
                            self.at += 1;
                            return Some(Value::List(items));
                        }
                        b',' => self.at += 1,
                        _ => items.push(self.value()?),
                    }
                }
            }
            _ => self.word()?.parse().ok().map(Value::Int),
        }
    }
    /// Items until `}` (or the end, at the top level).
    fn items(&mut self) -> Option<Vec<(String, Value)>> {
        self.depth += 1;
        if self.depth > 32 {
            return None;
        }
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => {}
            }
            let key = self.word()?;
            match self.peek()? {
                b'=' => {
                    self.at += 1;
                    items.push((key, self.value()?));
                }
                b'{' => {
                    self.at += 1;
                    items.push((key, Value::Section(self.items()?)));
                }
                _ => return None,
            }
        }
        self.depth -= 1;
        Some(items)
    }
}

/// Parses metadata text: the one top-level section is the volume group.
pub fn parse_vg(text: &str) -> Option<Vg> {
    let top = Parser {
        s: text.as_bytes(),
        at: 0,
        depth: 0,
    }
    .items()?;
    let (name, vg) = top.iter().find(|(_, v)| matches!(v, Value::Section(_)))?;
    let pvs = vg
        .get("physical_volumes")?
        .sections()
        .into_iter()
        .filter_map(|(key, p)| {
            Some(Pv {
                key: key.to_owned(),
                id: p.str("id")?.to_owned(),
                pe_start: p.int("pe_start")?,
            })
        })
        .collect();
    let lvs = vg
        .get("logical_volumes")
        .map(Value::sections)
        .unwrap_or_default()
        .into_iter()
        .map(|(lv_name, lv)| Lv {
            name: lv_name.to_owned(),
            segments: lv
                .sections()
                .into_iter()
                .filter(|(k, _)| k.starts_with("segment"))
                .filter_map(|(_, s)| {
                    let stripes = match s.get("stripes") {
                        Some(Value::List(l)) => l
                            .chunks(2)
                            .filter_map(|c| match c {
                                [Value::Str(pv), Value::Int(pe)] => {
                                    Some((pv.clone(), u64::try_from(*pe).ok()?))
                                }
                                _ => None,
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    Some(Segment {
                        start_extent: s.int("start_extent")?,
                        extent_count: s.int("extent_count")?,
                        stripes,
                    })
                })
                .collect(),
        })
        .collect();
    Some(Vg {
        name: name.clone(),
        id: vg.str("id")?.to_owned(),
        extent_size: vg.int("extent_size")?,
        pvs,
        lvs,
    })
}

/// The device-mapper name of `vg`/`lv` (LVM doubles the hyphens inside each name).
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"vg0 {
id = "E0HnXx-Q57K-bPcJ-AoxX-ZhKD-BsD8-AM8Ygv"
seqno = 3
format = "lvm2" # informational
status = ["RESIZEABLE", "READ", "WRITE"]
extent_size = 8192
physical_volumes {
pv0 {
id = "KEcoGF-njug-Zfqe-0sth-Gu8a-4Ivl-Rhl8Tg"
device = "/dev/loop0"
pe_start = 2048
pe_count = 49
}
}
logical_volumes {
root {
id = "x"
segment_count = 1
segment1 {
start_extent = 0
extent_count = 25
type = "striped"
stripe_count = 1
stripes = [
"pv0", 0
]
}
}
home {
segment_count = 1
segment1 {
start_extent = 0
extent_count = 10
type = "striped"
stripe_count = 1
stripes = ["pv0", 25]
}
}
}
}
# Generated by LVM2
contents = "Text Format Volume"
description = "Created *after* executing 'lvcreate --name \"x\"'"
creation_time = 1796627988	# Mon Dec  7 07:00:00 2026
"#;

    #[test]
    fn metadata_text_gives_where_each_linear_lv_is() {
        let vg = parse_vg(TEXT).unwrap();
        assert_eq!(vg.name, "vg0");
        assert_eq!(vg.extent_size, 8192);
        assert_eq!(vg.pvs[0].pe_start, 2048);
        let pv = "KEcoGF-njug-Zfqe-0sth-Gu8a-4Ivl-Rhl8Tg";
        assert_eq!(vg.linear_extent(&vg.lvs[0], pv), Some((1 << 20, 100 << 20)));
        assert_eq!(
            vg.linear_extent(&vg.lvs[1], pv),
            Some(((1 << 20) + (100 << 20), 40 << 20))
        );
        assert_eq!(vg.linear_extent(&vg.lvs[0], "other"), None);
        assert_eq!(dm_name("my-vg", "lv"), "my--vg-lv");
    }

    #[test]
    fn nonsense_is_no_volume_group() {
        assert!(parse_vg("").is_none());
        assert!(parse_vg("vg0 { id = ").is_none());
        assert!(parse_vg(&"a {".repeat(100)).is_none());
        let mut c = std::io::Cursor::new(vec![0u8; 4096]);
        assert!(read(&mut c).is_none());
    }
}
