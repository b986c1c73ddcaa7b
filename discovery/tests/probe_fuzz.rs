//! Property tests for `probe` on hostile input: random bytes, and valid synthetic headers of
//! every supported family (and of the foreign signatures that veto them) with bytes flipped
//! and length/size fields set to extremes, probed with claimed device sizes and session
//! offsets up to `u64::MAX`.
//!
//! Every probe must return (no panic, no I/O error from an in-memory reader), and a global
//! allocator that tracks the calling thread's allocations checks that no single allocation
//! and no peak of live memory during a probe comes anywhere near what a hostile length
//! field asks for.

// The tracking allocator below is the only unsafe code: a thin wrapper over `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;

use proptest::prelude::*;
use vmrescue_discovery::probe::lvm::lvm_crc;
use vmrescue_discovery::probe::{probe, probe_with_session_offset, Probe};

/// Largest single allocation a probe may make (its reads are capped at 64 KiB).
const MAX_SINGLE_ALLOC: usize = 256 * 1024;
/// Largest amount of memory a probe may hold at once.
const MAX_LIVE: isize = 1024 * 1024;

struct Tracking;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    // try_with: the thread-locals may be gone while a thread shuts down.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        let _ = LIVE.try_with(|live| {
            let now = live.get() + size as isize;
            live.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
    }
}

fn note_free(size: usize) {
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = LIVE.try_with(|live| live.set(live.get() - size as isize));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// bookkeeping only touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `f`, returning its result, the largest single allocation it made and its peak of
/// live memory (relative to the start), on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, isize) {
    LARGEST.with(|l| l.set(0));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, LARGEST.with(Cell::get), PEAK.with(Cell::get))
}

/// Probes `img`, claiming `size` bytes and a session offset, within the memory bounds.
fn probe_bounded(img: &[u8], size: u64, session: u64) -> Result<Option<Probe>, String> {
    let (res, largest, peak) = measure(|| {
        let mut c = Cursor::new(img);
        probe_with_session_offset(&mut c, size, session)
    });
    if largest > MAX_SINGLE_ALLOC {
        return Err(format!("single allocation of {largest} bytes"));
    }
    if peak > MAX_LIVE {
        return Err(format!("{peak} bytes live at once"));
    }
    res.map_err(|e| format!("I/O error from an in-memory reader: {e}"))
}

// ---- synthetic headers -------------------------------------------------------------

fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
    b[off..off + bytes.len()].copy_from_slice(bytes);
}

/// A valid image of one family, where its headers are, and how to redo its checksums.
struct Sample {
    name: &'static str,
    img: Vec<u8>,
    /// The claimed device size that makes the sample valid.
    size: u64,
    /// Byte ranges (start, end) holding its headers.
    hot: Vec<(usize, usize)>,
    reseal: fn(&mut [u8]),
}

fn no_reseal(_: &mut [u8]) {}

fn reseal_ext(img: &mut [u8]) {
    let c = crc32c(!0, &img[1024..1024 + 0x3FC]);
    put(img, 1024 + 0x3FC, &c.to_le_bytes());
}

fn ext4() -> Sample {
    let mut img = vec![0u8; 64 * 1024];
    let sb = 1024;
    put(&mut img, sb + 0x04, &8192u32.to_le_bytes());
    put(&mut img, sb + 0x18, &2u32.to_le_bytes());
    put(&mut img, sb + 0x38, &[0x53, 0xEF]);
    put(&mut img, sb + 0x3A, &1u16.to_le_bytes());
    put(&mut img, sb + 0x4C, &1u32.to_le_bytes());
    put(&mut img, sb + 0x5C, &0x3cu32.to_le_bytes());
    put(&mut img, sb + 0x60, &0x2c2u32.to_le_bytes());
    put(&mut img, sb + 0x64, &0x46bu32.to_le_bytes());
    put(&mut img, sb + 0x68, &[0xad; 16]);
    put(&mut img, sb + 0x78, b"test-ext4");
    reseal_ext(&mut img);
    Sample {
        name: "ext4",
        img,
        size: 8 << 20,
        hot: vec![(1024, 2048)],
        reseal: reseal_ext,
    }
}

fn reseal_xfs(img: &mut [u8]) {
    let sectsize = usize::from(u16::from_be_bytes([img[102], img[103]])).clamp(512, 4096);
    img[224..228].fill(0);
    let c = !crc32c(!0, &img[..sectsize]);
    put(img, 224, &c.to_le_bytes());
}

fn xfs() -> Sample {
    let mut img = vec![0u8; 64 * 1024];
    put(&mut img, 0, b"XFSB");
    put(&mut img, 4, &4096u32.to_be_bytes());
    put(&mut img, 8, &4096u64.to_be_bytes());
    put(&mut img, 32, &[0x8c; 16]);
    put(&mut img, 80, &1u32.to_be_bytes());
    put(&mut img, 84, &1024u32.to_be_bytes());
    put(&mut img, 88, &4u32.to_be_bytes());
    put(&mut img, 100, &0x8005u16.to_be_bytes());
    put(&mut img, 102, &512u16.to_be_bytes());
    put(&mut img, 104, &512u16.to_be_bytes());
    put(&mut img, 108, b"test-xfs");
    img[120..124].copy_from_slice(&[12, 9, 9, 3]);
    img[127] = 25;
    put(&mut img, 200, &0x100u32.to_be_bytes());
    reseal_xfs(&mut img);
    Sample {
        name: "xfs",
        img,
        size: 16 << 20,
        hot: vec![(0, 512)],
        reseal: reseal_xfs,
    }
}

fn reseal_btrfs(img: &mut [u8]) {
    let sb = 65536;
    img[sb..sb + 32].fill(0);
    img[sb + 196..sb + 198].fill(0); // crc32c
    let c = !crc32c(!0, &img[sb + 32..sb + 4096]);
    put(img, sb, &c.to_le_bytes());
}

fn btrfs() -> Sample {
    let mut img = vec![0u8; 72 * 1024];
    let sb = 65536;
    put(&mut img, sb + 32, &[0xd4; 16]);
    put(&mut img, sb + 0x40, b"_BHRfS_M");
    put(&mut img, sb + 144, &4096u32.to_le_bytes());
    put(&mut img, sb + 267, &[0x1e; 16]);
    put(&mut img, sb + 299, b"pool");
    reseal_btrfs(&mut img);
    Sample {
        name: "btrfs",
        img,
        size: 128 << 20,
        hot: vec![(sb, sb + 4096)],
        reseal: reseal_btrfs,
    }
}

fn dir_entry(img: &mut [u8], at: usize, name: &[u8; 11], attr: u8) {
    put(img, at, name);
    img[at + 11] = attr;
}

fn fat16() -> Sample {
    let mut img = vec![0u8; 64 * 1024];
    put(&mut img, 0, b"\xeb\x3c\x90mkfs.fat");
    put(&mut img, 0x0b, &512u16.to_le_bytes());
    img[0x0d] = 1;
    put(&mut img, 0x0e, &1u16.to_le_bytes());
    img[0x10] = 2;
    put(&mut img, 0x11, &512u16.to_le_bytes());
    put(&mut img, 0x13, &8192u16.to_le_bytes());
    img[0x15] = 0xf8;
    put(&mut img, 0x16, &32u16.to_le_bytes());
    img[0x26] = 0x29;
    put(&mut img, 0x27, &[0x14, 0x10, 0x04, 0x20]);
    put(&mut img, 0x36, b"FAT16   ");
    put(&mut img, 0x1fe, b"\x55\xaa");
    dir_entry(&mut img, 65 * 512, b"VTech 1070 ", 0x08);
    Sample {
        name: "fat16",
        img,
        size: 4 << 20,
        hot: vec![(0, 512), (65 * 512, 66 * 512)],
        reseal: no_reseal,
    }
}

fn fat32() -> Sample {
    let mut img = vec![0u8; 32 * 1024];
    put(&mut img, 0, b"\xeb\x58\x90MSWIN4.1");
    put(&mut img, 0x0b, &512u16.to_le_bytes());
    img[0x0d] = 1;
    put(&mut img, 0x0e, &32u16.to_le_bytes());
    img[0x10] = 2;
    img[0x15] = 0xf8;
    put(&mut img, 0x20, &128u32.to_le_bytes());
    put(&mut img, 0x24, &1u32.to_le_bytes());
    put(&mut img, 0x2c, &2u32.to_le_bytes());
    put(&mut img, 0x30, &1u16.to_le_bytes());
    img[0x42] = 0x29;
    put(&mut img, 0x43, &[0xe1, 0xaa, 0x23, 0x14]);
    put(&mut img, 0x52, b"FAT32   ");
    put(&mut img, 0x1fe, b"\x55\xaa");
    put(&mut img, 512, b"RRaA");
    put(&mut img, 512 + 484, b"rrAa");
    put(&mut img, 32 * 512 + 8, &0x0fff_ffffu32.to_le_bytes());
    dir_entry(&mut img, 34 * 512, b"TESTVFAT   ", 0x08);
    Sample {
        name: "fat32",
        img,
        size: 64 << 20,
        hot: vec![(0, 1024), (32 * 512, 33 * 512), (34 * 512, 35 * 512)],
        reseal: no_reseal,
    }
}

fn swap() -> Sample {
    let mut img = vec![0u8; 40 * 1024];
    put(&mut img, 0xff6, b"SWAPSPACE2");
    put(&mut img, 1024, &1u32.to_le_bytes());
    put(&mut img, 1028, &100u32.to_le_bytes());
    put(&mut img, 1036, &[0x8f; 16]);
    put(&mut img, 1052, b"SWAP-TEST");
    Sample {
        name: "swap",
        img,
        size: 1 << 20,
        hot: vec![(0, 16), (1024, 1540), (0xff0, 0x1000)],
        reseal: no_reseal,
    }
}

fn reseal_lvm(img: &mut [u8]) {
    let c = lvm_crc(&img[512 + 20..1024]);
    put(img, 512 + 16, &c.to_le_bytes());
}

fn lvm() -> Sample {
    let mut img = vec![0u8; 8 * 1024];
    put(&mut img, 512, b"LABELONE");
    put(&mut img, 520, &1u64.to_le_bytes());
    put(&mut img, 532, &32u32.to_le_bytes());
    put(&mut img, 536, b"LVM2 001");
    put(&mut img, 544, b"Vynv4kAPH8xQERHSBb8VJ3SvFFPB5O1U");
    put(&mut img, 576, &u64::MAX.to_le_bytes()); // device size
    reseal_lvm(&mut img);
    Sample {
        name: "lvm",
        img,
        size: 2 << 20,
        hot: vec![(512, 1024)],
        reseal: reseal_lvm,
    }
}

fn luks2() -> Sample {
    let mut img = vec![0u8; 20 * 1024];
    put(&mut img, 0, b"LUKS\xba\xbe");
    put(&mut img, 6, &2u16.to_be_bytes());
    put(&mut img, 8, &0x4000u64.to_be_bytes()); // header + JSON area size
    put(&mut img, 24, b"tst_label");
    put(&mut img, 168, b"202265fe-9842-4c2d-ac9b-aba1b05deb63");
    put(&mut img, 0x4000, b"SKUL\xba\xbe");
    put(&mut img, 0x4006, &2u16.to_be_bytes());
    put(&mut img, 0x4008, &u64::MAX.to_be_bytes());
    put(&mut img, 0x4000 + 256, &0x4000u64.to_be_bytes());
    Sample {
        name: "luks2",
        img,
        size: 16 << 20,
        hot: vec![(0, 512), (0x4000, 0x4200)],
        reseal: no_reseal,
    }
}

fn iso_descriptor(img: &mut [u8], at: usize, kind: u8, volume_id: &[u8]) {
    img[at] = kind;
    put(img, at + 1, b"CD001");
    img[at + 6] = 1;
    put(img, at + 40, volume_id);
    put(img, at + 80, &u32::MAX.to_le_bytes()); // space size
    put(img, at + 128, &2048u16.to_le_bytes()); // logical block size
    put(img, at + 132, &u32::MAX.to_le_bytes()); // path table size
    put(img, at + 136, &u32::MAX.to_be_bytes());
    put(img, at + 813, b"2020110723165100");
    put(img, at + 830, b"2020110723165100");
}

fn iso_joliet() -> Sample {
    let mut img = vec![0u8; 0x8000 + 4 * 2048];
    iso_descriptor(&mut img, 0x8000, 1, b"NA_VE AND VERY LOOOOOOOONG_LABEL");
    let joliet: Vec<u8> = "Naïve and very l"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    iso_descriptor(&mut img, 0x8800, 2, &joliet);
    put(&mut img, 0x8800 + 88, b"%/E");
    iso_descriptor(&mut img, 0x9000, 0xff, &[0; 32]);
    Sample {
        name: "iso9660",
        img,
        size: 700 << 20,
        hot: vec![
            (0x8000, 0x8000 + 882),
            (0x8800, 0x8800 + 882),
            (0x9000, 0x9010),
        ],
        reseal: no_reseal,
    }
}

fn udf_bridge() -> Sample {
    let mut s = iso_joliet();
    s.img.resize(257 * 512, 0);
    for (i, id) in [&b"BEA01"[..], b"NSR02", b"TEA01"].iter().enumerate() {
        put(&mut s.img, 0x9800 + i * 2048 + 1, id);
    }
    put(&mut s.img, 256 * 512, &2u16.to_le_bytes());
    put(&mut s.img, 256 * 512 + 12, &256u32.to_le_bytes());
    s.name = "udf";
    s.hot
        .extend([(0x9800, 0x9800 + 3 * 2048), (256 * 512, 257 * 512)]);
    s
}

fn md_raid() -> Sample {
    let mut img = ext4().img;
    put(&mut img, 0x1000, &0xa92b_4efcu32.to_le_bytes());
    put(&mut img, 0x1004, &1u32.to_le_bytes());
    put(&mut img, 0x1000 + 144, &8u64.to_le_bytes());
    Sample {
        name: "md-raid",
        img,
        size: 8 << 20,
        hot: vec![(0x1000, 0x1100)],
        reseal: no_reseal,
    }
}

fn bitlocker() -> Sample {
    let mut img = fat32().img;
    put(&mut img, 0, b"\xeb\x58\x90-FVE-FS-");
    put(&mut img, 176, &0x6000u64.to_le_bytes());
    put(&mut img, 0x6000, b"-FVE-FS-");
    Sample {
        name: "bitlocker",
        img,
        size: 64 << 20,
        hot: vec![(0, 512), (0x6000, 0x6010)],
        reseal: no_reseal,
    }
}

fn samples() -> Vec<Sample> {
    vec![
        ext4(),
        xfs(),
        btrfs(),
        fat16(),
        fat32(),
        swap(),
        lvm(),
        luks2(),
        iso_joliet(),
        udf_bridge(),
        md_raid(),
        bitlocker(),
    ]
}

#[test]
fn samples_are_valid() {
    let want = [
        ("ext4", Some("ext4")),
        ("xfs", Some("xfs")),
        ("btrfs", Some("btrfs")),
        ("fat16", Some("vfat")),
        ("fat32", Some("vfat")),
        ("swap", Some("swap")),
        ("lvm", Some("LVM2_member")),
        ("luks2", Some("crypto_LUKS")),
        ("iso9660", Some("iso9660")),
        ("udf", None),
        ("md-raid", Some("linux_raid_member")),
        ("bitlocker", None),
    ];
    for (s, (name, fstype)) in samples().iter().zip(want) {
        assert_eq!(s.name, name);
        let got = probe_bounded(&s.img, s.size, 0).unwrap();
        assert_eq!(got.map(|p| p.fstype.as_str()), fstype, "{name}");
    }
    let p = probe_bounded(&iso_joliet().img, 700 << 20, 0)
        .unwrap()
        .unwrap();
    assert_eq!(p.label.as_deref(), Some("Naïve and very lOOOOOOOONG_LABEL"));
}

/// Field writes that stress length and size fields.
fn extreme(width: usize, pick: u8, random: u64) -> Vec<u8> {
    let v: u64 = match pick % 6 {
        0 => 0,
        1 => u64::MAX,
        2 => 1 << (width * 8 - 1),
        3 => (1 << (width * 8 - 1)) - 1,
        4 => 1,
        _ => random,
    };
    if pick & 0x80 != 0 {
        v.to_be_bytes()[8 - width..].to_vec()
    } else {
        v.to_le_bytes()[..width].to_vec()
    }
}

fn claimed_size(actual: u64, pick: u8, random: u64) -> u64 {
    match pick % 7 {
        0 => actual,
        1 => u64::MAX,
        2 => u64::MAX - 511,
        3 => actual.saturating_mul(1000),
        4 => 1440 * 1024,
        5 => random,
        _ => actual.saturating_add(1),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_headers(
        which in 0usize..12,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
        fields in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(vec![1usize, 2, 4, 8]), any::<u8>(), any::<u64>()),
            0..6,
        ),
        reseal in any::<bool>(),
        size_pick in any::<u8>(),
        size_random in any::<u64>(),
        session in prop::sample::select(vec![0u64, 2048, 0x8000, 300 * 2048, 511, u64::MAX - 2047, u64::MAX]),
    ) {
        let mut s = samples().swap_remove(which);
        let hot: Vec<usize> = s.hot.iter().flat_map(|&(a, b)| a..b).collect();
        for (at, v) in &flips {
            let off = hot[at.index(hot.len())];
            s.img[off] = *v;
        }
        for (at, width, pick, random) in &fields {
            let off = hot[at.index(hot.len())];
            let bytes = extreme(*width, *pick, *random);
            let end = (off + bytes.len()).min(s.img.len());
            let n = end - off;
            s.img[off..end].copy_from_slice(&bytes[..n]);
        }
        if reseal {
            (s.reseal)(&mut s.img);
        }
        let size = claimed_size(s.size, size_pick, size_random);
        let r = probe_bounded(&s.img, size, session);
        prop_assert!(r.is_ok(), "{}: {:?}", s.name, r);
    }

    #[test]
    fn random_bytes(
        img in prop::collection::vec(any::<u8>(), 0..80_000),
        size_pick in any::<u8>(),
        size_random in any::<u64>(),
        session in any::<u64>(),
    ) {
        let size = claimed_size(img.len() as u64, size_pick, size_random);
        prop_assert!(probe_bounded(&img, size, 0).is_ok());
        prop_assert!(probe_bounded(&img, size, session).is_ok());
    }

    #[test]
    fn truncated_samples(which in 0usize..12, cut in any::<prop::sample::Index>()) {
        let s = samples().swap_remove(which);
        let len = cut.index(s.img.len() + 1);
        let img = &s.img[..len];
        prop_assert!(probe_bounded(img, len as u64, 0).is_ok());
        prop_assert!(probe_bounded(img, s.size, 0).is_ok());
    }
}

/// Length fields at their most hostile, one family at a time.
#[test]
fn hostile_length_fields() {
    // LUKS2: the JSON area size is never used to size anything.
    let mut s = luks2();
    put(&mut s.img, 8, &u64::MAX.to_be_bytes());
    let p = probe_bounded(&s.img, u64::MAX, 0).unwrap();
    assert_eq!(p.map(|p| p.fstype.as_str()), Some("crypto_LUKS"));

    // iso9660: path table, space size and block size are not read at all.
    let mut s = iso_joliet();
    put(&mut s.img, 0x8000 + 128, &u16::MAX.to_le_bytes());
    put(&mut s.img, 0x8000 + 132, &u64::MAX.to_le_bytes());
    let p = probe_bounded(&s.img, u64::MAX, 0).unwrap();
    assert_eq!(p.map(|p| p.fstype.as_str()), Some("iso9660"));

    // FAT16 root directory of 65535 entries (2 MiB), read in pieces.
    let mut s = fat16();
    put(&mut s.img, 0x11, &u16::MAX.to_le_bytes());
    probe_bounded(&s.img, s.size, 0).unwrap();

    // FAT32 clusters of 128 sectors of 4 KiB, a root cluster far away, a FAT of 2^32 sectors.
    let mut s = fat32();
    put(&mut s.img, 0x0b, &4096u16.to_le_bytes());
    s.img[0x0d] = 128;
    put(&mut s.img, 0x24, &u32::MAX.to_le_bytes());
    put(&mut s.img, 0x2c, &0x0fff_fff0u32.to_le_bytes());
    put(&mut s.img, 0x20, &u32::MAX.to_le_bytes());
    probe_bounded(&s.img, u64::MAX, 0).unwrap();

    // xfs with the largest sector size to checksum.
    let mut s = xfs();
    put(&mut s.img, 102, &32768u16.to_be_bytes());
    s.img[121] = 15;
    probe_bounded(&s.img, s.size, 0).unwrap();

    // MD RAID 0.90 claiming a 4 TiB component.
    let mut s = md_raid();
    let end = s.img.len() - 0x10000;
    put(&mut s.img, end, &0xa92b_4efcu32.to_le_bytes());
    put(&mut s.img, end + 32, &u32::MAX.to_le_bytes());
    probe_bounded(&s.img, s.img.len() as u64, 0).unwrap();

    // BitLocker metadata pointer at the end of the address space.
    let mut s = bitlocker();
    put(&mut s.img, 176, &u64::MAX.to_le_bytes());
    probe_bounded(&s.img, u64::MAX, 0).unwrap();
}

#[test]
fn plain_probe_is_probe_at_offset_zero() {
    for s in samples() {
        let a = probe(&mut Cursor::new(&s.img), s.size).unwrap();
        let b = probe_with_session_offset(&mut Cursor::new(&s.img), s.size, 0).unwrap();
        assert_eq!(a, b, "{}", s.name);
    }
}

/// The bounds above mean something only if the tracker sees allocations.
#[test]
fn tracker_sees_large_allocations() {
    let (v, largest, peak) = measure(|| vec![1u8; 3 << 20]);
    assert!(largest >= 3 << 20 && peak >= 3 << 20, "{largest} {peak}");
    drop(v);
    let (_, largest, _) = measure(|| Vec::<u8>::with_capacity(5 << 20));
    assert!(largest >= 5 << 20);
}
