//! What a rescue VM boots: the rescue image (built, checked, its kernel chosen), the files
//! appended to its initramfs for one rescue, and the kernel command line it gets.

pub mod image;
pub mod kcmdline;
pub mod overlay;
