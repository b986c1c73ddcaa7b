//! The `vmrescue` host CLI as a library: QEMU launcher, channel collector, image handling and
//! output, each in its own module.

pub mod accel;
pub mod bootjudge;
pub mod cli;
pub mod collector;
pub mod consolelog;
pub mod diskimage;
pub mod disklock;
pub mod fix_owners;
pub mod image;
pub mod inspect;
pub mod interrupt;
pub mod kcmdline;
pub mod libvirt;
pub mod nova;
pub mod overlay;
pub mod progress;
pub mod qemu;
pub mod render;
pub mod rescue;
pub mod rundir;
pub mod salvage;
pub mod session;
pub mod undo;
pub mod verify;
pub mod vm;
pub mod watch;
