//! The rescue report: what the agent found and what it changed.
//!
//! Stable field names (other tools read them): `outcome`, `mode`, `filesystems[]` with `device`,
//! `type`, `uuid`, `label`, `state_before`, `state_after`, `fsck {tool, exit_code, status}`,
//! `changes[]` with `kind`, `path`, `detail`, and `warnings[]`. Fields are only ever added.

use serde::{Deserialize, Serialize};

mod boot;

pub use boot::{BootCheck, BootConfig, Verify};

/// What the rescue amounts to. The companion's exit status follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The OS root was identified, every volume the guest needs was reached and checked clean;
    /// nothing needed doing.
    Clean,
    /// As `clean`, after problems were found and all were fixed.
    Repaired,
    /// Problems remain (always the case for problems found in check mode), or a volume the
    /// guest needs was not reached (see each filesystem's `reached`).
    Unrepaired,
    /// No OS root was identified (none found, several found and none named, or the root is
    /// inside a volume this rescue did not open).
    NoOs,
    /// The rescue itself could not do its work (see `warnings`). Also what a report that was
    /// never decided says.
    #[default]
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Repaired => "repaired",
            Outcome::Unrepaired => "unrepaired",
            Outcome::NoOs => "no_os",
            Outcome::Failed => "failed",
        }
    }
}

/// `check` looks and writes nothing; `repair` fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Check,
    Repair,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Check => "check",
            Mode::Repair => "repair",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "check" => Some(Mode::Check),
            "repair" => Some(Mode::Repair),
            _ => None,
        }
    }
}

/// Superblock state of a filesystem as read before and after fsck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsState {
    /// Cleanly unmounted, no error recorded.
    Clean,
    /// The kernel recorded an error (e.g. after a journal abort that remounted it read-only).
    Errors,
    /// Not cleanly unmounted (still marked mounted, or its journal needs recovery).
    NotClean,
    /// The superblock could not be read.
    #[default]
    Unknown,
}

/// Normalised result of a filesystem check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsckStatus {
    /// No problem found.
    Clean,
    /// Problems found and corrected.
    Corrected,
    /// Problems found and left (check mode, or the checker could not fix them).
    Uncorrected,
    /// Not checked (unsupported type, or the operator asked not to).
    #[default]
    Skipped,
    /// The checker could not run or failed operationally.
    Error,
}

impl FsckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FsckStatus::Clean => "clean",
            FsckStatus::Corrected => "corrected",
            FsckStatus::Uncorrected => "uncorrected",
            FsckStatus::Skipped => "skipped",
            FsckStatus::Error => "error",
        }
    }
}

/// One run of a checker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FsckPass {
    /// The arguments given (the device last).
    pub args: Vec<String>,
    /// Raw exit code; `None` when the process could not be started or was killed by a signal.
    pub exit_code: Option<i32>,
    /// What this pass amounted to.
    pub status: FsckStatus,
    /// The checker's own summary lines (bounded).
    #[serde(default)]
    pub output: Vec<String>,
}

/// The fsck result of one filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fsck {
    /// Checker program, e.g. `e2fsck`.
    pub tool: String,
    /// Raw exit code of the pass that decided `status`.
    pub exit_code: Option<i32>,
    pub status: FsckStatus,
    /// Every pass, in order (preen, full, verification).
    #[serde(default)]
    pub passes: Vec<FsckPass>,
    /// e2fsck undo files of the fixing passes, in the order written: undo them newest first
    /// (`e2undo FILE DEVICE`). In the guest these are names on the undo scratch disk; the
    /// companion replaces them with where it saved them on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo_files: Vec<String>,
}

/// A filesystem the agent found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Filesystem {
    /// Device inside the rescue VM, e.g. `/dev/vda1`.
    pub device: String,
    /// Filesystem type as blkid names it (`ext4`, `xfs`, ...).
    #[serde(rename = "type")]
    pub fstype: String,
    pub uuid: Option<String>,
    pub label: Option<String>,
    pub state_before: FsState,
    pub state_after: FsState,
    /// What the filesystem is to the guest: `root`, `boot`, `efi`, `home`, `swap`, `data`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Where the guest's fstab mounts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Errors the kernel recorded in the superblock before the rescue.
    #[serde(default)]
    pub error_count_before: u32,
    pub fsck: Fsck,
    /// Why the guest needs it (`the OS root`, `fstab line 3 (/home)`, or a container that
    /// `may hold` what fstab names and was not found); absent when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed_by: Option<String>,
    /// For a needed volume: whether the rescue reached it (opened and checked it). A needed
    /// volume not reached makes the outcome `unrepaired` ([`crate::verdict`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<bool>,
    /// Why a needed volume was not reached, and what the operator can do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_reached: Option<String>,
    /// For a container (an LVM physical volume, an md member, a LUKS volume): the devices the
    /// rescue opened from it (`/dev/mapper/vg0-root`, `/dev/md127`); empty when it stayed
    /// closed. See the report's `layers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opened_as: Vec<String>,
}

/// A layer between the guest's disks and its filesystems that the rescue found: an LVM volume
/// group, an md array or a LUKS container, what it is made of and what the rescue opened.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Layer {
    pub kind: crate::LayerKind,
    /// The volume group's name, the array's name, or the LUKS container's device.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The devices it is made of (`/dev/vda3`).
    #[serde(default)]
    pub members: Vec<String>,
    /// The devices it holds, as opened (`/dev/mapper/vg0-root`); empty when it stayed closed.
    #[serde(default)]
    pub devices: Vec<String>,
    pub state: crate::LayerState,
    /// Opened read-only (check mode): nothing on it, nor its metadata, could be written.
    #[serde(default)]
    pub read_only: bool,
    /// What the operator should know: why it failed or stayed closed, what is missing, and the
    /// command that would do what the rescue did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One write the agent made to a guest disk.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Change {
    /// What kind of change, e.g. `fsck`, `mkdir`, `write_file`.
    pub kind: crate::ChangeKind,
    /// Device or file path the change is on (a file path is inside `device`'s filesystem).
    pub path: String,
    /// The filesystem a file change is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub detail: String,
    /// Where the original was saved before the change, if it was a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_after: Option<String>,
    /// The content was rebuilt or guessed (e.g. a minimal `/etc/passwd`): the operator should
    /// review it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub review: bool,
}

/// Something the operator should know: a step that failed, a module that did not load.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Warning {
    /// Step the warning comes from (`boot`, `modules`, `disks`, `fsck`, `port`, ...).
    pub step: crate::Step,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// A block device the agent saw.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name, e.g. `vda`.
    pub name: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    pub read_only: bool,
    /// Partitions' kernel names, e.g. `vda1`.
    #[serde(default)]
    pub partitions: Vec<String>,
    /// Partition table type as blkid names it (`dos`, `gpt`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pttype: Option<String>,
    /// Partition table id (blkid PTUUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptuuid: Option<String>,
    /// This disk is vmrescue's own rescue medium (recognised by its marker) and was left alone.
    #[serde(default)]
    pub rescue_medium: bool,
}

/// A partition the agent found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Partition {
    /// Kernel name, e.g. `vda1`.
    pub name: String,
    pub disk: String,
    pub number: u32,
    pub start_bytes: u64,
    pub size_bytes: u64,
    /// MBR type (`0x83`) or GPT type GUID.
    pub type_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partlabel: Option<String>,
    /// Filesystem or volume type found in it (`unknown` when none is recognised).
    #[serde(rename = "type")]
    pub fstype: String,
}

/// A filesystem that looks like an OS root, and why.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RootCandidate {
    pub device: String,
    pub score: i32,
    pub evidence: Vec<String>,
}

/// The guest operating system.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OsInfo {
    /// The root filesystem's device; `None` when none or several were found and the operator
    /// named none.
    pub root_device: Option<String>,
    /// The btrfs subvolume the root is in (`@`, `root`), when it is not the filesystem's top
    /// level; every mount of the root uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_subvolume: Option<String>,
    pub pretty_name: Option<String>,
    pub id: Option<String>,
    pub version_id: Option<String>,
    /// Every filesystem that looked like a root.
    #[serde(default)]
    pub candidates: Vec<RootCandidate>,
}

/// How an fstab entry's device was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Found: `device` names it.
    Resolved,
    /// The entry names a device that is not attached.
    #[default]
    Missing,
    /// Several devices match (e.g. duplicate UUIDs); `candidates` lists them.
    Ambiguous,
    /// Not a block device: pseudo filesystem, bind mount, network share.
    NotADevice,
}

/// One /etc/fstab entry of the guest and what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FstabEntry {
    pub line: usize,
    pub spec: String,
    pub file: String,
    pub vfstype: String,
    pub options: String,
    pub passno: u32,
    pub resolution: Resolution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// The entry names a device by kernel name (`/dev/vdb1`), which changes with attach order.
    #[serde(default)]
    pub kernel_name: bool,
}

/// An fstab line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FstabMalformed {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// The guest's /etc/fstab as found on its root.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FstabReport {
    /// Device the fstab was read from.
    pub source: String,
    pub entries: Vec<FstabEntry>,
    #[serde(default)]
    pub malformed: Vec<FstabMalformed>,
}

/// The final report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    pub outcome: Outcome,
    pub mode: Mode,
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub kernel: String,
    /// Seconds from the agent's start to the report.
    #[serde(default)]
    pub elapsed_s: f64,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub partitions: Vec<Partition>,
    #[serde(default)]
    pub filesystems: Vec<Filesystem>,
    /// LVM volume groups, md arrays and LUKS containers on the guest's disks, and what the
    /// rescue opened of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstab: Option<FstabReport>,
    /// Writes to guest disks that were made (repair mode).
    #[serde(default)]
    pub changes: Vec<Change>,
    /// The guest fixes the repair plan holds: in check mode what repair would do, in repair
    /// mode what was attempted (each also in `changes` once made).
    #[serde(default)]
    pub plan: Vec<Change>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Where the report was saved on the repaired root (device and path), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_file: Option<String>,
    /// How the rescue VM booted: its firmware and whether Secure Boot was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
    /// Where the time went: the guest's uptime as each phase of the agent ended, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timings: Vec<Timing>,
    /// How the guest boots itself, as found on its root (and its /boot): what a verify boot
    /// starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_config: Option<BootConfig>,
    /// The host's verify boots of the guest's own OS (`rescue --verify`), added by the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
}

/// One point of [`Report::timings`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Timing {
    /// `agent` (PID 1 started), `modules`, `port`, `disks` (block devices settled), `fsck DEV`
    /// (a filesystem's checks done), `checks`, `inspect`, `fixes`, `report` (ready to be saved
    /// and sent).
    pub phase: crate::Phase,
    /// Seconds since the guest's kernel started (CLOCK_BOOTTIME).
    pub uptime_s: f64,
}

/// The rescue VM's firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firmware {
    /// `bios` or `uefi`.
    #[serde(rename = "type")]
    pub kind: crate::FirmwareKind,
    /// UEFI Secure Boot was enforcing (the kernel runs locked down).
    pub secure_boot: bool,
}
