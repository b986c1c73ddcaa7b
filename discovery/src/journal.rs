//! The entries of a systemd journal file read from its bytes (systemd's documented journal file
//! format: a header, then 8-byte aligned objects; an entry object lists the offsets of the data
//! objects holding its `FIELD=value` pairs). Pure and bounded: every offset and size is checked
//! against the bytes there are, a damaged or truncated file (a power cut's, or one cut short by
//! the caller's read limit) yields the entries before the damage, and a compressed data object
//! (xz, lz4, zstd: only payloads longer than systemd's threshold, 512 bytes by default) is left
//! out of its entry rather than decompressed.

const SIGNATURE: &[u8; 8] = b"LPKSHHRH";
/// `incompatible_flags`: items are 32-bit offsets, data objects carry two more fields.
const COMPACT: u32 = 1 << 4;
/// Object types.
const DATA: u8 = 1;
const ENTRY: u8 = 3;
/// Object flags: any of the three compressions.
const COMPRESSED: u8 = 1 | 2 | 4;
/// The object header: type, flags, 6 reserved bytes, the size.
const OBJECT_HEADER: usize = 16;
/// Where an entry's items start (after seqnum, realtime, monotonic, boot id, xor hash).
const ENTRY_ITEMS: usize = 64;
/// Most entries taken from one file, and most fields of one entry.
pub const MAX_ENTRIES: usize = 500_000;
const MAX_FIELDS: usize = 512;

/// Why a file is no journal at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("no journal file signature")]
    Signature,
    #[error("journal header size {0} is not within the file")]
    Header(u64),
}

/// One journal entry: when it was written and its uncompressed `FIELD=value` payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Microseconds since the epoch.
    pub realtime: u64,
    /// Microseconds since the boot (`boot_id`) began.
    pub monotonic: u64,
    pub boot_id: [u8; 16],
    pub fields: Vec<&'a [u8]>,
}

impl<'a> Entry<'a> {
    /// The value of `name` (`MESSAGE`, `_HOSTNAME`, ...), when the entry has it uncompressed.
    pub fn field(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.iter().find_map(|f| {
            f.strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
        })
    }

    /// The value of `name` as text, when it is UTF-8.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        std::str::from_utf8(self.field(name)?).ok()
    }
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The object at `at`: its type, flags and bytes (header included), when it lies in `data`.
fn object(data: &[u8], at: u64) -> Option<(u8, u8, &[u8])> {
    let at = usize::try_from(at).ok()?;
    if at % 8 != 0 {
        return None;
    }
    let size = usize::try_from(le64(data, at + 8)?).ok()?;
    if size < OBJECT_HEADER {
        return None;
    }
    let bytes = data.get(at..at.checked_add(size)?)?;
    Some((bytes[0], bytes[1], bytes))
}

/// The payload of the data object at `at`, when it is one and is not compressed.
fn payload(data: &[u8], at: u64, compact: bool) -> Option<&[u8]> {
    let (kind, flags, bytes) = object(data, at)?;
    if kind != DATA || flags & COMPRESSED != 0 {
        return None;
    }
    bytes.get(if compact { 72 } else { 64 }..)
}

/// The entries of the journal file `data` (or of its first part), oldest first.
pub fn entries(data: &[u8]) -> Result<Vec<Entry<'_>>, JournalError> {
    if data.get(..8) != Some(SIGNATURE.as_slice()) {
        return Err(JournalError::Signature);
    }
    let compact = le32(data, 12).is_some_and(|f| f & COMPACT != 0);
    let header = le64(data, 88).ok_or(JournalError::Header(0))?;
    if header < 208 || header % 8 != 0 || header >= data.len() as u64 {
        return Err(JournalError::Header(header));
    }
    // The last object written; zero or beyond the bytes there are when the file was cut short.
    let tail = le64(data, 136).filter(|&t| t != 0).unwrap_or(u64::MAX);
    let item = if compact { 4 } else { 16 };
    let mut out = Vec::new();
    let mut at = header;
    while at <= tail && out.len() < MAX_ENTRIES {
        let Some((kind, _, bytes)) = object(data, at) else {
            break;
        };
        if kind == ENTRY && bytes.len() >= ENTRY_ITEMS {
            let items = bytes[ENTRY_ITEMS..].chunks_exact(item).take(MAX_FIELDS);
            let fields = items
                .filter_map(|i| {
                    let off = if compact {
                        u64::from(le32(i, 0)?)
                    } else {
                        le64(i, 0)?
                    };
                    payload(data, off, compact)
                })
                .collect();
            out.push(Entry {
                realtime: le64(bytes, 24).unwrap_or_default(),
                monotonic: le64(bytes, 32).unwrap_or_default(),
                boot_id: bytes[40..56].try_into().unwrap_or_default(),
                fields,
            });
        }
        at += (bytes.len() as u64).next_multiple_of(8);
    }
    Ok(out)
}

/// A journal file written from entries (tests: of this crate and of its users).
pub mod write {
    /// The bytes of a journal file (regular or compact) holding `entries`, each a realtime
    /// stamp and its `FIELD=value` payloads; a payload given twice is stored once, as systemd
    /// does. `compressed` payloads are flagged as zstd-compressed (their bytes unchanged).
    pub fn journal(entries: &[(u64, Vec<&[u8]>)], compact: bool, compressed: &[&[u8]]) -> Vec<u8> {
        let mut f = vec![0u8; 272];
        f[..8].copy_from_slice(super::SIGNATURE);
        if compact {
            f[12..16].copy_from_slice(&super::COMPACT.to_le_bytes());
        }
        f[88..96].copy_from_slice(&272u64.to_le_bytes());
        let mut stored: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut tail = 0u64;
        let mut put = |f: &mut Vec<u8>, kind: u8, flags: u8, body: &[u8]| -> u64 {
            let at = f.len() as u64;
            f.extend_from_slice(&[kind, flags, 0, 0, 0, 0, 0, 0]);
            f.extend_from_slice(&((16 + body.len()) as u64).to_le_bytes());
            f.extend_from_slice(body);
            f.resize(f.len().next_multiple_of(8), 0);
            tail = at;
            at
        };
        for (seq, (realtime, fields)) in entries.iter().enumerate() {
            let mut offsets = Vec::new();
            for p in fields {
                let at = match stored.iter().find(|(s, _)| s == p) {
                    Some((_, at)) => *at,
                    None => {
                        let mut body = vec![0u8; if compact { 56 } else { 48 }];
                        body.extend_from_slice(p);
                        let flags = if compressed.contains(p) { 4 } else { 0 };
                        let at = put(&mut f, super::DATA, flags, &body);
                        stored.push((p.to_vec(), at));
                        at
                    }
                };
                offsets.push(at);
            }
            let mut body = Vec::new();
            body.extend_from_slice(&(seq as u64 + 1).to_le_bytes());
            body.extend_from_slice(&realtime.to_le_bytes());
            body.extend_from_slice(&(*realtime / 2).to_le_bytes());
            body.extend_from_slice(&[7u8; 16]);
            body.extend_from_slice(&0u64.to_le_bytes());
            for at in offsets {
                if compact {
                    body.extend_from_slice(&(at as u32).to_le_bytes());
                } else {
                    body.extend_from_slice(&at.to_le_bytes());
                    body.extend_from_slice(&0u64.to_le_bytes());
                }
            }
            put(&mut f, super::ENTRY, 0, &body);
        }
        f[136..144].copy_from_slice(&tail.to_le_bytes());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(compact: bool) -> Vec<u8> {
        write::journal(
            &[
                (100, vec![b"MESSAGE=one", b"_HOSTNAME=web-7"]),
                (200, vec![b"MESSAGE=two", b"_HOSTNAME=web-7", b"BIG=zzz"]),
            ],
            compact,
            &[b"BIG=zzz"],
        )
    }

    #[test]
    fn entries_in_order_with_their_fields_both_formats() {
        for compact in [false, true] {
            let data = sample(compact);
            let e = entries(&data).unwrap();
            assert_eq!(e.len(), 2, "compact {compact}");
            assert_eq!(e[0].realtime, 100);
            assert_eq!(e[1].monotonic, 100);
            assert_eq!(e[0].text("MESSAGE"), Some("one"));
            assert_eq!(e[1].text("MESSAGE"), Some("two"));
            // The host name is stored once and shared by both entries.
            assert_eq!(e[1].text("_HOSTNAME"), Some("web-7"));
            // A compressed payload is left out, never read as if it were plain.
            assert_eq!(e[1].field("BIG"), None);
            assert_eq!(e[1].fields.len(), 2);
            // A field name is matched whole.
            assert_eq!(e[0].field("MESSAG"), None);
        }
    }

    #[test]
    fn a_file_cut_short_yields_the_entries_before_the_cut() {
        let data = sample(false);
        let whole = entries(&data).unwrap().len();
        let mut seen = Vec::new();
        for cut in (280..data.len()).step_by(8) {
            let n = entries(&data[..cut]).unwrap().len();
            assert!(n < whole, "cut at {cut}");
            seen.push(n);
        }
        assert!(seen.contains(&1), "the first entry survives a cut after it");
    }

    #[test]
    fn not_a_journal_or_a_bad_header_is_an_error() {
        assert_eq!(entries(b"hello"), Err(JournalError::Signature));
        let mut data = sample(true);
        data[88..96].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(entries(&data), Err(JournalError::Header(1 << 40)));
    }

    #[test]
    fn hostile_sizes_and_offsets_are_bounded() {
        let data = sample(false);
        // Every byte of the file set to every troublesome value: never a panic, never more
        // entries than were written.
        for at in 0..data.len() {
            for v in [0u8, 0x01, 0x7f, 0xff] {
                let mut bad = data.clone();
                bad[at] = v;
                if let Ok(e) = entries(&bad) {
                    assert!(e.len() <= 2);
                }
            }
        }
        // A zero-sized object ends the walk instead of looping.
        let mut bad = data.clone();
        bad[272 + 8..272 + 16].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(entries(&bad).unwrap().len(), 0);
    }
}
