//! The rescue agent as a library: pure policy and planning (`fsck`, `verdict`, the
//! repair planners) beside the side effects that apply them (`boot`, `disks`, `inspect`,
//! `apply`, `proc`). [`rescue`] runs the rescue as a sequence of [`phase`]s. The
//! `vmrescue-agent` binary is PID 1 and only wires these together; host tests drive the pure
//! parts directly.

pub mod apply;
pub mod atomic;
pub mod boot;
pub mod checks;
pub mod clock;
pub mod consoles;
pub mod disks;
pub mod finish;
pub mod firmware;
pub mod fsck;
pub mod inspect;
pub mod late;
pub mod layers;
pub mod logger;
pub mod modules;
pub mod phase;
pub mod plan;
pub mod port;
pub mod proc;
pub mod random;
pub mod reporter;
pub mod rescue;
pub mod signals;
pub mod verdict;
