//! Damage a btrfs the way a bad write leaves it, for `--btrfs-repair`: one inode's `nbytes`
//! made wrong in every copy of the fs-tree leaf that holds it, each copy's checksum recomputed
//! so that it still reads as valid metadata. `btrfs check` reports "nbytes wrong" and
//! `btrfs check --repair` mends it. Plain file edits, from the on-disk format: the host never
//! mounts the filesystem.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Result};

/// Where the primary superblock is.
const SUPER_AT: u64 = 0x10000;
/// A tree block's header: checksum (32), fsid (16), bytenr, flags, chunk tree UUID (16),
/// generation, owner, item count (u32), level (u8).
const HEADER: usize = 0x65;
/// One leaf item: key (objectid u64, type u8, offset u64), data offset (u32), data size (u32).
const ITEM: usize = 25;
const FS_TREE: u64 = 5;
const INODE_ITEM: u8 = 1;
const INODE_REF: u8 = 12;
/// In an inode item: generation, transid, size, then nbytes.
const NBYTES_AT: usize = 24;

/// CRC-32C (Castagnoli), btrfs's default metadata checksum.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Adds a block to the `nbytes` of the file named `name` (any directory) in the top-level
/// fs tree of the btrfs in `image` (a whole-device filesystem image), in every copy of its
/// leaf. Returns how many copies were changed (two with DUP metadata).
pub fn wrong_nbytes(image: &Path, name: &str) -> Result<usize> {
    let mut f = fs::OpenOptions::new().read(true).write(true).open(image)?;
    let mut sb = vec![0u8; 4096];
    f.seek(SeekFrom::Start(SUPER_AT))?;
    f.read_exact(&mut sb)?;
    if &sb[0x40..0x48] != b"_BHRfS_M" {
        bail!("{} is not a btrfs filesystem", image.display());
    }
    let fsid = sb[0x20..0x30].to_vec();
    let nodesize = u32_at(&sb, 0x94) as usize;
    let len = f.metadata()?.len();
    let mut block = vec![0u8; nodesize];
    let mut changed = 0;
    let mut at = 0u64;
    while at + nodesize as u64 <= len {
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut block)?;
        let leaf_of_fs_tree = block[0x20..0x30] == fsid[..]
            && block[0x64] == 0
            && u64_at(&block, 0x58) == FS_TREE
            && u32_at(&block, 0) == crc32c(&block[0x20..]);
        if leaf_of_fs_tree && patch_leaf(&mut block, name.as_bytes()) {
            let sum = crc32c(&block[0x20..]);
            block[..4].copy_from_slice(&sum.to_le_bytes());
            f.seek(SeekFrom::Start(at))?;
            f.write_all(&block)?;
            changed += 1;
        }
        at += nodesize as u64;
    }
    f.sync_all()?;
    if changed == 0 {
        bail!("no leaf of {} holds {name:?}", image.display());
    }
    Ok(changed)
}

/// In one leaf: finds the inode whose reference names `name` and bumps its nbytes.
fn patch_leaf(block: &mut [u8], name: &[u8]) -> bool {
    let count = u32_at(block, 0x60) as usize;
    let items: Vec<(u64, u8, usize, usize)> = (0..count)
        .map(|i| HEADER + ITEM * i)
        .filter(|o| o + ITEM <= block.len())
        .map(|o| {
            (
                u64_at(block, o),
                block[o + 8],
                HEADER + u32_at(block, o + 17) as usize,
                u32_at(block, o + 21) as usize,
            )
        })
        .filter(|&(_, _, data, size)| data + size <= block.len())
        .collect();
    let named = |data: usize, size: usize| {
        size >= 10 && {
            let len = u16::from_le_bytes([block[data + 8], block[data + 9]]) as usize;
            10 + len <= size && &block[data + 10..data + 10 + len] == name
        }
    };
    let Some(inode) = items
        .iter()
        .find(|&&(_, kind, data, size)| kind == INODE_REF && named(data, size))
        .map(|&(oid, ..)| oid)
    else {
        return false;
    };
    let Some(&(_, _, data, size)) = items
        .iter()
        .find(|&&(oid, kind, ..)| oid == inode && kind == INODE_ITEM)
    else {
        return false;
    };
    if size < NBYTES_AT + 8 {
        return false;
    }
    let at = data + NBYTES_AT;
    let nbytes = u64_at(block, at) + 4096;
    block[at..at + 8].copy_from_slice(&nbytes.to_le_bytes());
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_of_the_standard_check_string() {
        assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
    }
}
