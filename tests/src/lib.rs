//! Shared pieces of vmrescue's end-to-end tests and demo: broken guest disks made from scratch
//! (`mkfs.ext4 -d`, `debugfs -w`; no mounting) and a harness that runs the real `vmrescue` CLI.

pub mod btrfs;
pub mod budgets;
pub mod crash;
pub mod fixture;
pub mod guest;
pub mod harness;
pub mod layouts;
pub mod live;
pub mod login;
pub mod reports;
pub mod virsh;
