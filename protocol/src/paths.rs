//! Paths both sides use: where the host puts things in the rescue image or on the disks it
//! attaches, and where the agent looks for them.

/// The operator's reference `/etc` baked into an image (`image build --reference-etc`), as an
/// absolute path in the rescue's root.
pub const REFERENCE_ETC: &str = "/etc/vmrescue/reference-etc";
/// One rescue's own reference `/etc` (`rescue --reference-etc`, appended to the initramfs by the
/// host); it replaces the baked one.
pub const REFERENCE_ETC_RUN: &str = "/etc/vmrescue/reference-etc-run";
/// Directory on the undo scratch disk that holds e2fsck's undo files.
pub const UNDO_DIR: &str = "vmrescue-undo";
/// Filesystem label of the undo scratch disk.
pub const UNDO_LABEL: &str = "vmrescue-undo";
/// Filesystem label of the boot-copy scratch disk (`vmrescue.bootcopy=`): the agent copies
/// the guest's own kernel and initramfs to it, for the host's verify boot.
pub const BOOTCOPY_LABEL: &str = "vmrescue-boot";
/// Directory on the boot-copy scratch disk holding [`BOOTCOPY_KERNEL`] and [`BOOTCOPY_INITRD`].
pub const BOOTCOPY_DIR: &str = "vmrescue-boot";
/// The guest's kernel, as copied (a name of our own: the guest's path is in the report).
pub const BOOTCOPY_KERNEL: &str = "kernel";
/// The guest's initramfs, as copied (absent when its entry has none).
pub const BOOTCOPY_INITRD: &str = "initrd";

/// Where the agent saves each report on the repaired root (the report's `report_file`), and
/// where it looks for what an earlier, stopped rescue left.
pub const REPORT_DIR: &str = "/var/log/vmrescue";

/// Volume label of the per-rescue settings drive the host attaches to a boot through the
/// rescue media (a cdrom boot has no per-rescue kernel command line).
pub const SETTINGS_LABEL: &str = "VMRESCUE_SETTINGS";
/// The file on it: `vmrescue.KEY=VALUE` words, as on the kernel command line.
pub const SETTINGS_FILE: &str = "/vmrescue/settings";
/// The secrets the operator hands a rescue (LUKS keys), in [`crate::secrets`]' format, on the
/// same drive only: never on a kernel command line, a console line, the report or a log.
pub const SECRETS_FILE: &str = "/vmrescue/secrets";

/// In the initramfs: a gzip newc archive of what the rescue needs only for some filesystems
/// (XFS, btrfs and FAT checkers, their libraries, the XFS module), which the agent unpacks into
/// its root the first time one of them is needed, so that a rescue of ext4 alone fits in less
/// guest memory.
pub const LATE_ARCHIVE: &str = "/lib/vmrescue/late.cpio.gz";

/// In a core initramfs (booted with the late archive on a disk instead): `HEX LEN`, the
/// SHA-256 and length of the late archive the agent may take from that disk.
pub const LATE_SUM: &str = "/etc/vmrescue/late.sha256";
/// Serial of the read-only disk holding the late archive (its bytes, padded to whole sectors).
/// Never a guest disk; its content is taken only when it matches [`LATE_SUM`].
pub const LATE_SERIAL: &str = "vmrescue-late";
/// The late archive as a file on the rescue media (the ISO's filesystem, the disk image's FAT
/// partition), for their rescue-kernel entries, which boot the core initramfs. Taken, like the
/// late disk, only when it matches [`LATE_SUM`].
pub const LATE_MEDIUM_FILE: &str = "/vmrescue/late.img";

/// `path` without its leading `/`: the form archive entries (newc) take.
pub fn archive_path(path: &str) -> &str {
    path.trim_start_matches('/')
}
