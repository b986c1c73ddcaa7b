//! The rescue's phases, in the order [`crate::rescue`] runs them:
//!
//! 1. [`setup`]: the operator's settings from the kernel command line, the kernel modules, the
//!    port to the host;
//! 2. [`scan`]: the guest's disks, their partition tables and signatures;
//!    [`configdrive`]: settings from an OpenStack config drive's metadata, when one is attached;
//! 3. [`undo`]: the host's undo scratch disk, set apart from the guest's disks and, in repair
//!    mode, mounted for e2fsck's undo files;
//! 4. [`crate::layers`]: the LVM volume groups on the guest's disks activated (read-only in
//!    check mode), each logical volume scanned like a disk;
//!    [`check`]: fsck of every filesystem, ordered by the guest's fstab;
//! 5. [`inspect`]: the read-only look for the OS root and its fstab, overlaid with the check
//!    results;
//! 6. [`fixes`]: the guest fixes planned on the root and, in repair mode, applied;
//!    [`bootcopy`]: the guest's kernel and initramfs copied to the host's boot-copy scratch
//!    disk (set apart with the undo disk, before the checks), for a verify boot;
//! 7. [`report`]: the report's change entries and the copy saved on the repaired root.
//!
//! Every phase turns its failures into report warnings; none ends PID 1.

pub mod bootcopy;
pub mod check;
pub mod configdrive;
pub mod evidence;
pub mod fixes;
pub mod inspect;
pub mod report;
pub mod scan;
pub mod setup;
pub mod undo;
