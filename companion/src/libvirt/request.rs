//! What `rescue --domain` is asked, what comes of it and why it fails; the connection and
//! the domain it names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use virt::connect::Connect;
use virt::domain::Domain;
use vmrescue_protocol::{Mode, Report};

use super::xml;
use crate::session::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("cannot connect to libvirt at {uri}: {message}; is libvirtd running and the URI right (--connect, LIBVIRT_DEFAULT_URI)?")]
    Connect { uri: String, message: String },
    #[error("no domain {0:?} on {1} (by name or UUID); list them with `virsh list --all`")]
    NotFound(String, String),
    #[error("domain {0} is running: stop it first, or pass --stop (graceful shutdown, then destroy) or --force (destroy at once)")]
    Running(String),
    #[error("another rescue of domain {domain} holds {}; wait for it, or if it crashed run `vmrescue unrescue --domain {domain}`", dir.display())]
    Busy { domain: String, dir: PathBuf },
    #[error("a stale rescue state for domain {domain} is in {}; run `vmrescue unrescue --domain {domain}` first", dir.display())]
    Stale { domain: String, dir: PathBuf },
    #[error("storage pool {pool:?} on {uri}: {message}; name an active pool with --pool (virsh pool-list)")]
    Pool {
        pool: String,
        uri: String,
        message: String,
    },
    #[error("libvirt: {what} of domain {domain}: {message}")]
    Libvirt {
        what: &'static str,
        domain: String,
        message: String,
    },
    #[error("domain {domain}: {source}")]
    Xml {
        domain: String,
        source: xml::XmlError,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no rescue image in {}: build it with `vmrescue image build --out {}`", .0.display(), .0.display())]
    NoImage(PathBuf),
    #[error("the rescue image in {} has no ISO: rebuild it without --no-media (or use --boot kernel)", .0.display())]
    NoIso(PathBuf),
    #[error(transparent)]
    Cmdline(super::LibvirtError),
    #[error(transparent)]
    Session(SessionError),
    #[error("--verify with --domain: {0}")]
    VerifyUnsupported(&'static str),
    #[error("--rollback-on-regression: {domain}'s disk(s) {disks} are not local raw or qcow2 files or block devices, so the repair cannot be staged in overlays of them; rescue without the option (or detach those disks)")]
    NotStaged { domain: String, disks: String },
    #[error("verify: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    #[error(transparent)]
    Drive(#[from] crate::boot::drive::DriveError),
}

impl DomainError {
    /// The rescue ran but did not report (exit 3).
    pub fn is_no_report(&self) -> bool {
        matches!(self, DomainError::Session(SessionError::NoReport { .. }))
    }
}

pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DomainError {
    let path = path.to_owned();
    move |source| DomainError::Io { what, path, source }
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct DomainRequest {
    pub domain: String,
    pub connect: Option<String>,
    /// `--boot`: direct kernel boot by default where the domain allows it.
    pub boot: super::boot_media::BootChoice,
    pub mode: Mode,
    pub stop: bool,
    pub force: bool,
    pub start_after: bool,
    pub timeout: Duration,
    pub dry_run: bool,
    pub image: Option<PathBuf>,
    /// For a remote connection: the storage pool the rescue media are uploaded to.
    pub pool: String,
    /// Boot the guest's own OS after the rescue (`--verify`).
    pub verify: Option<crate::verify::VerifyRequest>,
    /// What travels on the settings drive only (LUKS keys, the access asked for).
    pub secrets: vmrescue_protocol::secrets::Secrets,
    /// `--root`: the OS root when discovery finds several.
    pub root: Option<String>,
    /// `--hostname`, `--keep-root-error-behaviour`, `--xfs-zero-log`, as for `--disk` (no
    /// reference /etc: `--reference-etc` is refused with `--domain`).
    pub policy: crate::rescue::Policy,
}

/// What came of it.
pub enum Done {
    Report(Box<Report>),
    /// `--dry-run`: the unified diff from the inactive XML to the rescue XML.
    DryRun(String),
}

/// A connection with libvirt's own error printing off.
pub fn connect(uri: Option<&str>) -> Result<Connect, DomainError> {
    virt::error::clear_error_callback();
    Connect::open(uri).map_err(|e| DomainError::Connect {
        uri: uri
            .map(str::to_owned)
            .or_else(|| std::env::var("LIBVIRT_DEFAULT_URI").ok())
            .unwrap_or_else(|| "libvirt's default URI".into()),
        message: e.to_string(),
    })
}

pub(super) fn lv(
    what: &'static str,
    domain: &str,
) -> impl FnOnce(virt::error::Error) -> DomainError {
    let domain = domain.to_owned();
    move |e| DomainError::Libvirt {
        what,
        domain,
        message: e.to_string(),
    }
}

/// The domain by name, else by UUID.
pub fn lookup(conn: &Connect, name_or_uuid: &str) -> Result<Domain, DomainError> {
    conn.lookup_domain_by_name(name_or_uuid)
        .or_else(|_| conn.lookup_domain_by_uuid_string(name_or_uuid))
        .map_err(|_| {
            DomainError::NotFound(
                crate::render::clean(name_or_uuid),
                conn.uri().unwrap_or_default(),
            )
        })
}

pub(super) fn is_local(uri: &str) -> bool {
    // qemu:///system, qemu:///session, qemu+unix:///system: no host part.
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            rest.starts_with('/') && (!scheme.contains('+') || scheme.ends_with("+unix"))
        }
        None => true,
    }
}
