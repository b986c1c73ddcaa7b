//! Filesystem and volume types, named as blkid names them (its TYPE), and the questions the
//! rescue asks of a type: which checker checks it, how the kernel mounts it to look inside
//! without replaying a journal, whether it is of the ext family, and which fstab types mount
//! it. Every such answer lives here, so that the checks, the inspection mounts and the fstab
//! fixes cannot drift apart.

use std::fmt;

/// A type [`crate::probe`] reports, or [`FsType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    Ext2,
    Ext3,
    Ext4,
    /// ext4 with the test-filesystem flag set (`ext4dev`): the ext4 driver and e2fsck serve it.
    Ext4dev,
    /// An external ext3/ext4 journal device (`jbd`): not a filesystem of its own.
    Jbd,
    Xfs,
    Btrfs,
    Vfat,
    Swap,
    /// An LVM2 physical volume (`LVM2_member`).
    Lvm2Member,
    /// A LUKS container (`crypto_LUKS`).
    CryptoLuks,
    /// A member of a Linux MD RAID array (`linux_raid_member`).
    LinuxRaidMember,
    Iso9660,
    /// Nothing known, or a type name this crate does not know (`unknown`).
    Unknown,
}

/// The program that checks (and may repair) a filesystem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checker {
    /// `e2fsck`, for the ext family.
    E2fsck,
    /// `xfs_repair`.
    XfsRepair,
    /// `btrfs check` (read-only: never `--repair`).
    Btrfs,
    /// `fsck.fat`.
    FsckFat,
}

/// How to mount a filesystem read-only to look inside without replaying its journal or log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InspectMount {
    /// The kernel filesystem driver (`mount -t`).
    pub driver: &'static str,
    /// The mount option that skips the journal or log replay (empty: none is needed).
    pub no_replay: &'static str,
}

impl FsType {
    /// Every known type (all but [`FsType::Unknown`]).
    pub const KNOWN: [FsType; 13] = [
        FsType::Ext2,
        FsType::Ext3,
        FsType::Ext4,
        FsType::Ext4dev,
        FsType::Jbd,
        FsType::Xfs,
        FsType::Btrfs,
        FsType::Vfat,
        FsType::Swap,
        FsType::Lvm2Member,
        FsType::CryptoLuks,
        FsType::LinuxRaidMember,
        FsType::Iso9660,
    ];

    /// blkid's TYPE string (`unknown` for [`FsType::Unknown`]).
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Ext4dev => "ext4dev",
            FsType::Jbd => "jbd",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Vfat => "vfat",
            FsType::Swap => "swap",
            FsType::Lvm2Member => "LVM2_member",
            FsType::CryptoLuks => "crypto_LUKS",
            FsType::LinuxRaidMember => "linux_raid_member",
            FsType::Iso9660 => "iso9660",
            FsType::Unknown => "unknown",
        }
    }

    /// The type blkid calls `s` (exactly, case included); [`FsType::Unknown`] for any other.
    pub fn parse(s: &str) -> FsType {
        FsType::KNOWN
            .into_iter()
            .find(|t| t.as_str() == s)
            .unwrap_or(FsType::Unknown)
    }

    /// ext2, ext3, ext4 or ext4dev (not an external journal).
    pub fn is_ext(self) -> bool {
        self.ext_rank().is_some()
    }

    /// Rank in the ext family: a filesystem mounts under its own type or a newer one.
    fn ext_rank(self) -> Option<u8> {
        match self {
            FsType::Ext2 => Some(2),
            FsType::Ext3 => Some(3),
            FsType::Ext4 | FsType::Ext4dev => Some(4),
            _ => None,
        }
    }

    /// A volume that holds other volumes (an LVM physical volume, a LUKS container, an MD RAID
    /// member): what is inside is reached only once it is activated, unlocked or assembled.
    pub fn is_container(self) -> bool {
        // One list of them: the outcome rule's (`protocol::verdict::Container`).
        vmrescue_protocol::verdict::Container::of(self.as_str()).is_some()
    }

    /// The checker for this type; `None`: not checked (swap, containers, journals, media).
    pub fn checker(self) -> Option<Checker> {
        match self {
            t if t.is_ext() => Some(Checker::E2fsck),
            FsType::Xfs => Some(Checker::XfsRepair),
            FsType::Btrfs => Some(Checker::Btrfs),
            FsType::Vfat => Some(Checker::FsckFat),
            _ => None,
        }
    }

    /// The kernel driver that mounts this type (read-write, journals and logs replayed);
    /// `None`: not a filesystem the rescue mounts.
    pub fn driver(self) -> Option<&'static str> {
        self.inspect_mount().map(|m| m.driver)
    }

    /// Whether the rescue can mount this type, to inspect it or to fix files on it.
    pub fn is_mountable(self) -> bool {
        self.inspect_mount().is_some()
    }

    /// How to mount this type read-only without journal or log replay; `None`: not mounted.
    pub fn inspect_mount(self) -> Option<InspectMount> {
        let (driver, no_replay) = match self {
            // The ext4 driver serves the whole family; noload skips the journal.
            t if t.is_ext() => ("ext4", "noload"),
            FsType::Xfs => ("xfs", "norecovery"),
            FsType::Btrfs => ("btrfs", "rescue=nologreplay"),
            FsType::Vfat => ("vfat", ""),
            _ => return None,
        };
        Some(InspectMount { driver, no_replay })
    }

    /// The fstab type to write for this filesystem: its own name, except `ext4` for an ext4dev
    /// (no kernel registers `ext4dev` any more; the ext4 driver mounts it).
    pub fn fstab_type(self) -> &'static str {
        match self {
            FsType::Ext4dev => FsType::Ext4.as_str(),
            t => t.as_str(),
        }
    }

    /// Whether an fstab entry of type `vfstype` mounts a filesystem of this type: `auto`, its
    /// own name, or in the ext family a newer one (ext4 mounts ext2 and ext3; ext3 cannot mount
    /// an ext4: extents, 64bit...). An unknown filesystem contradicts no listed type.
    pub fn mountable_as(self, vfstype: &str) -> bool {
        if vfstype == "auto" || vfstype == self.as_str() || self == FsType::Unknown {
            return true;
        }
        match (FsType::parse(vfstype).ext_rank(), self.ext_rank()) {
            (Some(listed), Some(found)) => listed >= found,
            _ => false,
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_unknown() {
        for t in FsType::KNOWN {
            assert_eq!(FsType::parse(t.as_str()), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(FsType::parse("LVM2_member"), FsType::Lvm2Member);
        assert_eq!(FsType::parse("crypto_LUKS"), FsType::CryptoLuks);
        assert_eq!(
            FsType::parse("lvm2_member"),
            FsType::Unknown,
            "case matters"
        );
        assert_eq!(FsType::parse("ntfs"), FsType::Unknown);
        assert_eq!(FsType::parse(""), FsType::Unknown);
        assert_eq!(FsType::Unknown.as_str(), "unknown");
    }

    #[test]
    fn ext_family_includes_ext4dev_not_journals() {
        let ext: Vec<_> = FsType::KNOWN.into_iter().filter(|t| t.is_ext()).collect();
        assert_eq!(
            ext,
            [FsType::Ext2, FsType::Ext3, FsType::Ext4, FsType::Ext4dev]
        );
    }

    #[test]
    fn checkers() {
        assert_eq!(FsType::Ext4dev.checker(), Some(Checker::E2fsck));
        assert_eq!(FsType::Ext2.checker(), Some(Checker::E2fsck));
        assert_eq!(FsType::Xfs.checker(), Some(Checker::XfsRepair));
        assert_eq!(FsType::Btrfs.checker(), Some(Checker::Btrfs));
        assert_eq!(FsType::Vfat.checker(), Some(Checker::FsckFat));
        for t in [
            FsType::Jbd,
            FsType::Swap,
            FsType::Lvm2Member,
            FsType::CryptoLuks,
            FsType::LinuxRaidMember,
            FsType::Iso9660,
            FsType::Unknown,
        ] {
            assert_eq!(t.checker(), None, "{t}");
        }
        let containers: Vec<_> = FsType::KNOWN
            .into_iter()
            .filter(|t| t.is_container())
            .map(FsType::as_str)
            .collect();
        assert_eq!(
            containers,
            ["LVM2_member", "crypto_LUKS", "linux_raid_member"]
        );
    }

    #[test]
    fn inspection_mounts_never_replay_journals() {
        let m = |t: FsType| t.inspect_mount().map(|m| (m.driver, m.no_replay));
        assert_eq!(m(FsType::Ext3), Some(("ext4", "noload")));
        assert_eq!(m(FsType::Ext4dev), Some(("ext4", "noload")));
        assert_eq!(m(FsType::Xfs), Some(("xfs", "norecovery")));
        assert_eq!(m(FsType::Btrfs), Some(("btrfs", "rescue=nologreplay")));
        assert_eq!(m(FsType::Vfat), Some(("vfat", "")));
        assert_eq!(m(FsType::Swap), None);
        assert_eq!(m(FsType::CryptoLuks), None);
        assert_eq!(m(FsType::Jbd), None);
        assert_eq!(FsType::Ext2.driver(), Some("ext4"));
        assert_eq!(FsType::Iso9660.driver(), None);
        // What is checked is what can be mounted, and the other way round.
        for t in FsType::KNOWN {
            assert_eq!(t.is_mountable(), t.checker().is_some(), "{t}");
        }
    }

    #[test]
    fn fstab_types_that_mount_a_filesystem() {
        assert!(FsType::Ext3.mountable_as("ext4"), "ext4 mounts an ext3");
        assert!(FsType::Ext2.mountable_as("ext3"));
        assert!(
            !FsType::Ext4.mountable_as("ext3"),
            "ext3 cannot mount an ext4"
        );
        assert!(!FsType::Ext4dev.mountable_as("ext2"));
        assert!(FsType::Ext4dev.mountable_as("ext4"));
        assert!(FsType::Ext4.mountable_as("ext4dev"));
        assert!(FsType::Xfs.mountable_as("xfs"));
        assert!(FsType::Xfs.mountable_as("auto"));
        assert!(!FsType::Xfs.mountable_as("ext4"));
        assert!(!FsType::Ext4.mountable_as("xfs"));
        assert!(!FsType::Vfat.mountable_as("msdos"));
        assert!(!FsType::Swap.mountable_as("ext4"));
        assert!(FsType::Unknown.mountable_as("ntfs"));
        // What is written into an fstab mounts the filesystem.
        for t in FsType::KNOWN {
            assert!(t.mountable_as(t.fstab_type()), "{t}");
        }
        assert_eq!(FsType::Ext4dev.fstab_type(), "ext4");
        assert_eq!(FsType::Ext3.fstab_type(), "ext3");
        assert_eq!(FsType::Xfs.fstab_type(), "xfs");
    }
}
