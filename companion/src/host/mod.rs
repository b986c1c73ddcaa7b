//! The host's side of a rescue's disks and runs: what a disk image file is (without trusting a
//! guest-written header), one rescue per disk, per-run directories, and the scratch disks the
//! host hands the rescue (undo files, boot copies).

pub mod diskimage;
pub mod disklock;
pub mod rundir;
pub mod undo;
