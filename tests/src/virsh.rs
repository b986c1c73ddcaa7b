//! `virsh` against the tests' libvirtd (`scripts/services.sh` starts it).

use std::process::{Command, Output};

/// The local system connection the libvirt tests use.
pub const URI: &str = "qemu:///system";

/// `virsh -q -c URI ARGS...`.
pub fn virsh(args: &[&str]) -> Output {
    Command::new("virsh")
        .args(["-q", "-c", URI])
        .args(args)
        .output()
        .expect("running virsh (libvirt-clients, scripts/setup.sh)")
}
