//! The command line as clap parses it: command names, flags and defaults are contracts other
//! tools drive (add, never rename).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use vmrescue_protocol::Mode;

use crate::qemu::accel::Choice;
use crate::qemu::Format;

#[derive(Debug, Parser)]
#[command(
    name = "vmrescue",
    version,
    about = "Bring broken KVM / libvirt / OpenStack VMs back to life"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Check,
    Repair,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Auto,
    Raw,
    Qcow2,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Check => Mode::Check,
            ModeArg::Repair => Mode::Repair,
        }
    }
}

impl FormatArg {
    /// The format the operator named; `None` for auto-detection.
    pub fn named(self) -> Option<Format> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Raw => Some(Format::Raw),
            FormatArg::Qcow2 => Some(Format::Qcow2),
        }
    }
}

// Parsed once per run: the size of the largest command does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Boot the rescue image under QEMU with the guest's disk image(s), check or repair them,
    /// and print the report.
    Rescue {
        /// A disk image of the guest (raw or qcow2); repeat for several disks, in bus order.
        #[arg(
            long = "disk",
            value_name = "IMG",
            required_unless_present = "domain",
            conflicts_with = "domain"
        )]
        disks: Vec<PathBuf>,
        /// Rescue this libvirt domain (name or UUID) instead: its definition is never changed.
        #[arg(long, value_name = "NAME")]
        domain: Option<String>,
        /// libvirt URI for --domain (default: $LIBVIRT_DEFAULT_URI, else libvirt's default).
        #[arg(long, value_name = "URI", requires = "domain")]
        connect: Option<String>,
        /// How a --domain rescue boots. kernel: the image's rescue kernel by direct kernel boot
        /// (BIOS and UEFI domains, local and remote). cdrom: the ISO as a cdrom first in the
        /// boot order. Default: kernel, except for a domain that boots its own kernel directly
        /// or whose firmware enforces Secure Boot (the ISO's signed chain then).
        #[arg(long, value_enum, requires = "domain")]
        boot: Option<BootArg>,
        /// A running --domain: shut it down gracefully first (destroyed after a timeout).
        #[arg(long, requires = "domain", conflicts_with = "force")]
        stop: bool,
        /// A running --domain: destroy it at once.
        #[arg(long, requires = "domain")]
        force: bool,
        /// Start the --domain normally after the rescue.
        #[arg(long, requires = "domain")]
        start_after: bool,
        /// Print the diff from the domain's inactive XML to the rescue XML; change nothing.
        #[arg(long, requires = "domain")]
        dry_run: bool,
        /// For a remote --connect: the storage pool the rescue media are uploaded to.
        #[arg(
            long,
            value_name = "NAME",
            default_value = "default",
            requires = "domain"
        )]
        pool: String,
        /// check: look and write nothing (disks attached read-only); repair: fix.
        #[arg(long, value_enum, default_value = "check")]
        mode: ModeArg,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Memory of the rescue VM in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=65536))]
        memory: u32,
        /// Give up when the rescue has not reported after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86400))]
        timeout: u64,
        /// Rescue image directory written by `vmrescue image build` (default: $VMRESCUE_IMAGE_DIR,
        /// $XDG_CACHE_HOME/vmrescue/image or ~/.cache/vmrescue/image); built when missing.
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        /// Agent binary to pack if the image must be built.
        #[arg(long, conflicts_with = "domain", value_name = "PATH")]
        agent: Option<PathBuf>,
        /// QEMU accelerator (default: $VMRESCUE_ACCEL, else auto: KVM when it works, else TCG).
        #[arg(long, conflicts_with = "domain", value_enum)]
        accel: Option<Choice>,
        /// Disk image format for every --disk (default: detected, qcow2 by its magic, else raw;
        /// a detected qcow2 that names a backing or data file is refused: name the format to
        /// follow it).
        #[arg(long, conflicts_with = "domain", value_enum, default_value = "auto")]
        format: FormatArg,
        /// Keep the run directory (console log, QEMU log) even after a successful rescue.
        #[arg(long, conflicts_with = "domain")]
        keep_run_dir: bool,
        /// The OS root when discovery finds several: a device as the rescue VM names it
        /// (`/dev/vdb1`) or a filesystem UUID.
        #[arg(long, value_name = "DEVICE|UUID")]
        root: Option<String>,
        /// Host name written into a rebuilt /etc/hostname and /etc/hosts (default: localhost).
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
        /// Do not add errors=remount-ro to an ext root's fstab entry that has no errors= option.
        #[arg(long)]
        keep_root_error_behaviour: bool,
        /// DESTRUCTIVE: when an xfs log cannot be replayed by mounting, let xfs_repair -L zero
        /// it, losing the transactions it holds.
        #[arg(long)]
        xfs_zero_log: bool,
        /// DESTRUCTIVE: in repair mode, let `btrfs check --repair` mend a btrfs the read-only
        /// check found damaged (it can make the damage worse; without this flag it is
        /// reported and left to you).
        #[arg(long)]
        btrfs_repair: bool,
        /// DESTRUCTIVE: in repair mode, let `lvconvert --repair` rebuild the metadata of a thin
        /// pool that fails thin_check (thin_repair can drop mappings it cannot read; the old
        /// metadata is kept as POOL_metaN). Without this flag the pool stays closed, reported.
        #[arg(long)]
        thin_repair: bool,
        /// A reference /etc directory: its files replace missing guest /etc files (before the
        /// guest's own backups or rebuilt minimal files).
        #[arg(long, conflicts_with = "domain", value_name = "DIR")]
        reference_etc: Option<PathBuf>,
        /// Keep e2fsck undo files (repair mode) in a new subdirectory of DIR: a scratch disk
        /// is attached for them. `e2undo FILE DISK`, newest first, reverts e2fsck's changes.
        #[arg(long, conflicts_with = "domain", value_name = "DIR")]
        undo_dir: Option<PathBuf>,
        #[command(flatten)]
        secrets: SecretArgs,
        #[command(flatten)]
        boots: VerifyArgs,
    },
    /// Discover disks, partitions, filesystems, the OS root and its fstab on image files,
    /// without booting anything. Disks are named vda, vdb... in the order given.
    Inspect {
        /// Disk images (raw or qcow2).
        #[arg(value_name = "IMG", required = true)]
        images: Vec<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The OS root when there are several (device or filesystem UUID).
        #[arg(long, value_name = "DEVICE|UUID")]
        root: Option<String>,
        /// Image format of every IMG (default: detected; a detected qcow2 that names a backing
        /// or data file is refused: name the format to follow it).
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
    },
    /// Recover instance files that were deleted while their VMs still run, copying them
    /// through the qemu processes' open file descriptors (sparse-aware, verified).
    Salvage(SalvageArgs),
    /// Change the owner of files from one uid/gid to another (compute hosts whose nova or
    /// libvirt-qemu ids differ), without following symlinks or crossing filesystems.
    FixOwners {
        #[arg(long, value_name = "N")]
        from_uid: Option<u32>,
        #[arg(long, value_name = "M")]
        to_uid: Option<u32>,
        #[arg(long, value_name = "N")]
        from_gid: Option<u32>,
        #[arg(long, value_name = "M")]
        to_gid: Option<u32>,
        /// Tree to walk.
        #[arg(long, value_name = "DIR", default_value = crate::salvage::DEFAULT_INSTANCES_DIR)]
        path: PathBuf,
        /// Count what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Clean up after a `rescue --domain` that crashed or was killed: end a leftover rescue
    /// run of the domain and remove its state (the definition was never changed).
    Unrescue {
        #[arg(long, value_name = "NAME")]
        domain: String,
        #[arg(long, value_name = "URI")]
        connect: Option<String>,
    },
    /// Take a rescue's report back from a console log (an ISO or nova rescue has no channel):
    /// `openstack console log show SERVER | vmrescue report --console-log -`.
    Report {
        /// The console log (`-`: standard input). Only its end is read.
        #[arg(long = "console-log", value_name = "FILE")]
        console_log: PathBuf,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Watch running domains for trouble: libvirt's I/O error and pause events and the guest
    /// kernel's storage messages on its console log; one line per incident (de-duplicated).
    /// Exit status: 0 no incident, 1 incidents printed, 2 the watch could not run.
    Watch {
        /// libvirt connection URI (default: libvirt's default).
        #[arg(long, value_name = "URI")]
        connect: Option<String>,
        /// Only this domain (by name; repeatable). Default: all of the connection's.
        #[arg(long, value_name = "NAME")]
        domain: Vec<String>,
        /// One JSON object per incident per line.
        #[arg(long)]
        json: bool,
        /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
        #[arg(long = "for", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
        for_secs: Option<u64>,
        /// Run this command (`sh -c`) per incident: the incident as JSON on its stdin and in
        /// VMRESCUE_INCIDENT, its fields in VMRESCUE_DOMAIN, VMRESCUE_KIND, VMRESCUE_DISK, ...
        #[arg(long, value_name = "CMD")]
        exec: Option<String>,
    },
    /// libvirt domain XML.
    Xml {
        #[command(subcommand)]
        command: XmlCmd,
    },
    /// Rescue image artefacts.
    Image {
        #[command(subcommand)]
        command: ImageCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Build the kernel + initramfs rescue image from the host's kernel.
    Build {
        /// Kernel image (default: the newest /boot/vmlinuz-*).
        #[arg(long, value_name = "PATH")]
        kernel: Option<PathBuf>,
        /// Output directory (default: the rescue command's default image directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The static agent binary to pack as /init.
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
        /// Bake a reference /etc into the image: its files replace missing guest /etc files
        /// in every rescue made with it (a rescue's own --reference-etc takes precedence).
        #[arg(long, value_name = "DIR")]
        reference_etc: Option<PathBuf>,
        /// The boot media's default mode (ISO and disk image boots get no per-rescue command
        /// line; their boot menu also offers the others).
        #[arg(long, value_enum, default_value = "check")]
        mode: ModeArg,
        /// What the media's rescue does once it has reported.
        #[arg(long, value_enum, default_value = "poweroff")]
        after: AfterArg,
        /// Host name for a rebuilt /etc/hostname (baked into the media's command line).
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
        /// Do not add errors=remount-ro to an ext root's fstab entry.
        #[arg(long)]
        keep_root_error_behaviour: bool,
        /// Longest one checker pass may run on the media's rescues.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
        fsck_timeout: Option<u64>,
        /// Build only the kernel and initramfs (no vmrescue.iso or vmrescue-disk.qcow2).
        #[arg(long)]
        no_media: bool,
        /// Carry the purpose-made rescue kernel, built from Debian's linux-source with only
        /// the drivers a rescue needs, all built in (minutes, once: it is kept in the cache
        /// directory by its inputs). `rescue --disk` and `rescue --domain` boot it; the media
        /// keep the host's kernel. Default: when a linux-source archive is installed, and a failed
        /// build then leaves the host's kernel only; with this flag a failed build is an error.
        #[arg(long, conflicts_with = "no_rescue_kernel")]
        rescue_kernel: bool,
        /// Do not carry the rescue kernel: the host's kernel only.
        #[arg(long)]
        no_rescue_kernel: bool,
        /// The linux-source archive for the rescue kernel (default: the newest
        /// /usr/src/linux-source-*.tar.*).
        #[arg(long, value_name = "ARCHIVE", conflicts_with = "no_rescue_kernel")]
        kernel_source: Option<PathBuf>,
        /// Also carry the host kernel's uncompressed boot files (vmlinux, initramfs.cpio,
        /// initramfs-core.cpio: about 95 MB), which only boots of the host's kernel use
        /// (VMRESCUE_KERNEL=host, for comparisons). Without a rescue kernel they are carried
        /// anyway.
        #[arg(long)]
        host_kernel_files: bool,
    },
    /// Make a settings drive for the rescue media (an ISO labelled VMRESCUE_SETTINGS): attached
    /// as a second cdrom beside vmrescue.iso, it sets the rescue's mode and carries the
    /// secrets (LUKS keys, the access asked for) that never go on a command line.
    SettingsDrive {
        /// The ISO to write (readable by its owner only when it holds secrets).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The mode of the rescue that reads it (it wins over the media's boot menu).
        #[arg(long, value_enum, default_value = "check")]
        mode: ModeArg,
        /// Host name for a rebuilt /etc/hostname.
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Print the `openstack` commands that upload the media for `openstack server rescue`.
    Nova {
        /// Image directory (default: as for `rescue`).
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        /// Print the commands as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum XmlCmd {
    /// Print the rescue XML `rescue --domain` would boot, for a domain XML file (`-`: stdin).
    Rescue {
        /// The domain's XML (as `virsh dumpxml --inactive` prints it).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// cdrom: the rescue ISO first in the boot order; kernel: direct kernel boot.
        #[arg(long, value_enum, default_value = "cdrom")]
        boot: BootArg,
        /// The rescue ISO (default: vmrescue.iso in the image directory).
        #[arg(long, value_name = "PATH")]
        iso: Option<PathBuf>,
        /// check: the guest's disks read-only too; repair: writable.
        #[arg(long, value_enum, default_value = "check")]
        mode: ModeArg,
        /// Image directory (default: as for `rescue`).
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BootArg {
    Cdrom,
    Kernel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AfterArg {
    Poweroff,
    Reboot,
    Shell,
}

/// `vmrescue salvage`'s flags.
#[derive(Debug, clap::Args)]
pub struct SalvageArgs {
    /// Where the files were deleted from.
    #[arg(long, value_name = "DIR", default_value = crate::salvage::DEFAULT_INSTANCES_DIR)]
    pub instances_dir: PathBuf,
    /// Copy into this directory, mirroring the instances layout.
    #[arg(long, value_name = "DIR", conflicts_with = "restore")]
    pub dest: Option<PathBuf>,
    /// Pause the owning libvirt domains while copying.
    #[arg(long)]
    pub suspend: bool,
    /// Resume the paused domains afterwards (without it they stay paused, ready for a hard
    /// reboot onto the restored files).
    #[arg(long, requires = "suspend")]
    pub resume: bool,
    /// libvirt URI for --suspend (default: $LIBVIRT_DEFAULT_URI, else libvirt's default).
    #[arg(long, value_name = "URI", requires = "suspend")]
    pub connect: Option<String>,
    /// Copy back to the original paths.
    #[arg(long)]
    pub restore: bool,
    /// Show what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Owner and mode for a kind of file: ROLE=USER:GROUP:MODE with ROLE one of base-image,
    /// disk, console-log, other-file, directory (default: nova's layout). Repeatable.
    #[arg(long, value_name = "ROLE=USER:GROUP:MODE")]
    pub owner: Vec<String>,
}

/// What `vmrescue rescue` carries on its settings drive only (`--disk` and `--domain` alike):
/// never on a command line, a console, the report or a log.
#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    /// Unlock the LUKS container with this UUID with the key in FILE (repeatable); without
    /// one a LUKS container stays locked.
    #[arg(long, value_name = "UUID=FILE")]
    pub luks_key: Vec<String>,
    /// Set root's password to this crypt(3) hash (from `openssl passwd -6` or `mkpasswd -m
    /// yescrypt`; never a clear-text password). Repair mode writes it; check mode plans it.
    #[arg(long, value_name = "HASH")]
    pub root_password_hash: Option<String>,
    /// Add the public keys in FILE (an OpenSSH .pub file) to --user's
    /// ~/.ssh/authorized_keys (repeatable), creating ~/.ssh with the user's owner and mode 0700.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Vec<PathBuf>,
    /// Whose authorized_keys --ssh-key adds to (an account of the guest's /etc/passwd).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "root",
        requires = "ssh_key"
    )]
    pub user: String,
    /// Clear this user's `!` password lock and a passed account expiry date (repeatable).
    #[arg(long, value_name = "NAME")]
    pub unlock_user: Vec<String>,
}

/// The verify boots of `vmrescue rescue` (`--disk` and `--domain` alike).
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// After the rescue, boot the guest's own OS (its kernel and initramfs, copied out by
    /// the rescue, else its boot loader through the firmware) on throw-away overlays of
    /// its disks: the outcome is `repaired` only when it boots. With --domain over a remote
    /// URI, libvirt boots it on that host (uploads to --pool).
    #[arg(long)]
    pub verify: bool,
    /// Also boot the broken guest before the repair, to show the difference (implies
    /// --verify; with --domain, a persistent one).
    #[arg(long)]
    pub verify_before: bool,
    /// When the guest booted before the repair and does not after it, discard the repair:
    /// it is written to overlays of the disks and committed to them only otherwise
    /// (implies --verify-before; repair mode; with --domain, a local connection and raw or
    /// qcow2 disks).
    #[arg(long)]
    pub rollback_on_regression: bool,
    /// How long one verify boot may take to reach a login prompt, emergency mode or a
    /// panic; past it, the boot hung.
    #[arg(long, value_name = "SECS", default_value_t = 180, value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub verify_timeout: u64,
}

impl VerifyArgs {
    /// The verify boots these flags ask for (none when no flag does).
    pub fn request(&self, memory_mib: u32) -> Option<crate::verify::VerifyRequest> {
        let before = self.verify_before || self.rollback_on_regression;
        (self.verify || before).then(|| crate::verify::VerifyRequest {
            before,
            rollback: self.rollback_on_regression,
            timeout: std::time::Duration::from_secs(self.verify_timeout),
            // The guest's own OS needs more than the rescue.
            memory_mib: memory_mib.max(1024),
        })
    }
}
