//! What a rescue VM boots: the rescue image (built, checked, its kernel chosen), the files
//! appended to its initramfs for one rescue (its kernel command line is
//! [`vmrescue_protocol::cmdline`]).

pub mod drive;
pub mod image;
pub mod overlay;
pub mod settings;
