//! `vmrescue salvage`: recover files deleted from the nova instances directory while qemu (or any
//! process) still holds them open, by copying them out through `/proc/PID/fd/N`.
//!
//! Steps, run by [`run()`] with the [`Options`] given: scan every process's descriptors
//! ([`scan`]), plan one copy per underlying file ([`plan`]), optionally pause the owning libvirt
//! domains ([`suspend`]), recover each file ([`recover`]: into directories opened without
//! following symlinks, [`dest`]; copied sparse-aware with verification, [`copy`]; given the
//! owner and mode nova expects, [`owners`]) and say what happened ([`report`], rendered by
//! [`crate::salvage::render`]).

pub mod render;

pub mod copy;
pub mod dest;
pub mod options;
pub mod owners;
pub mod plan;
pub mod recover;
pub mod report;
pub mod run;
pub mod scan;
pub mod suspend;

pub use options::{Options, OptionsError, DEFAULT_INSTANCES_DIR};
pub use owners::{OwnerError, OwnerMap, OwnerSpec};
pub use plan::Holder;
pub use report::{Action, FileReport, GroupReport, Report, Summary, TargetKind};
pub use run::{run, SalvageError};
pub use scan::{GroupKind, Role};
pub use suspend::DomainReport;
