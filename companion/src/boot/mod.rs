//! What a rescue VM boots: the rescue image (built, checked, its kernel chosen), the files
//! appended to its initramfs for one rescue (its kernel command line is
//! [`vmrescue_protocol::cmdline`]).

pub mod drive;
pub mod image;
pub mod overlay;
pub mod settings;

/// Which kernel a rescue boots, as the environment asks (for comparisons): the VMs vmrescue
/// starts itself and libvirt domains alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelAsked {
    /// The rescue kernel where the image carries it (nothing set).
    Rescue,
    /// `VMRESCUE_KERNEL=host`.
    Host,
    /// `VMRESCUE_KERNEL_ENTRY=bzimage`: the host's bzImage, not its PVH ELF.
    HostBzimage,
}

impl KernelAsked {
    pub fn from_env() -> KernelAsked {
        if std::env::var("VMRESCUE_KERNEL_ENTRY").is_ok_and(|v| v == "bzimage") {
            KernelAsked::HostBzimage
        } else if std::env::var("VMRESCUE_KERNEL").is_ok_and(|v| v == "host") {
            KernelAsked::Host
        } else {
            KernelAsked::Rescue
        }
    }
}
