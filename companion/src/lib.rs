//! The `vmrescue` host CLI as a library, a folder per concern:
//!
//! - [`cli`]: the commands, what they print and their exit statuses;
//! - [`session`]: one rescue over any VM (the channel collector, the console log, progress,
//!   stopping signals); [`vm`]: the VMs a session drives;
//! - [`qemu`]: the typed builder of every QEMU the project starts, and the accelerator;
//! - [`boot`]: the rescue image, initramfs overlays, the kernel command line;
//! - [`host`]: disk image sniffing, disk locks, run directories, scratch disks;
//! - [`rescue`]: `rescue --disk`; [`libvirt`]: `rescue --domain`, `unrescue`, the rescue XML;
//! - [`verify`]: boots of the guest's own OS and what their consoles say;
//! - [`inspect`], [`render`], [`salvage`], [`fix_owners`], [`watch`]: the other commands.

pub mod boot;
pub mod cli;
pub mod fix_owners;
pub mod host;
pub mod inspect;
pub mod libvirt;
pub mod qemu;
pub mod render;
pub mod rescue;
pub mod salvage;
pub mod session;
pub mod verify;
pub mod vm;
pub mod watch;
