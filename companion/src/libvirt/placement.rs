//! Where a domain's rescue media go: libvirt's image directory on a local connection (where
//! its security drivers label them for QEMU), a storage pool on a remote one (uploaded, sparse
//! where the pool allows, and downloaded back); and the per-rescue settings drive.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use virt::connect::Connect;
use vmrescue_protocol::params;

use super::request::{io, DomainError};
use super::xml;

/// Where local media go: libvirt's image directory.
pub(super) const LOCAL_MEDIA_DIR: &str = "/var/lib/libvirt/images";

/// Where rescue media go for a connection.
pub(super) struct Media<'a> {
    pub conn: &'a Connect,
    pub uri: &'a str,
    pub local: bool,
    pub pool: &'a str,
}

impl Media<'_> {
    /// `src` where the connection's QEMU can read it, as `name`: in libvirt's image directory
    /// (a local connection) or uploaded into the storage pool (a remote one). `reuse`: one of
    /// that name (which carries the content's checksum) and size is used as it is.
    pub(super) fn put(&self, src: &Path, name: &str, reuse: bool) -> Result<PathBuf, DomainError> {
        if self.local {
            return place(src, name, reuse);
        }
        self.upload(src, name, reuse, false)
    }

    fn pool_err(&self, message: String) -> DomainError {
        DomainError::Pool {
            pool: self.pool.to_owned(),
            uri: self.uri.to_owned(),
            message,
        }
    }

    fn volume(&self, name: &str) -> Result<virt::storage_vol::StorageVol, DomainError> {
        let pool = self
            .conn
            .lookup_storage_pool_by_name(self.pool)
            .map_err(|e| self.pool_err(e.to_string()))?;
        let _ = pool.refresh(0);
        pool.lookup_storage_vol_by_name(name)
            .map_err(|e| self.pool_err(format!("volume {name}: {e}")))
    }

    /// Uploads `src` into the pool as `name`. `sparse`: a sparse file's data only, where the
    /// pool's new volumes read as zeros (file-system pools).
    pub(super) fn upload(
        &self,
        src: &Path,
        name: &str,
        reuse: bool,
        sparse: bool,
    ) -> Result<PathBuf, DomainError> {
        let pool_err = |e: virt::error::Error| self.pool_err(e.to_string());
        let len = fs::metadata(src).map_err(io("reading", src))?.len();
        let pool = self
            .conn
            .lookup_storage_pool_by_name(self.pool)
            .map_err(pool_err)?;
        let _ = pool.refresh(0);
        if let Ok(vol) = pool.lookup_storage_vol_by_name(name) {
            let same = vol.info().is_ok_and(|i| i.capacity == len);
            if reuse && same {
                return vol.path().map(PathBuf::from).map_err(pool_err);
            }
            vol.delete(0).map_err(pool_err)?;
        }
        let zeroed = pool.xml_desc(0).is_ok_and(|x| {
            ["dir", "fs", "netfs"]
                .iter()
                .any(|t| x.contains(&format!("type='{t}'")) || x.contains(&format!("type=\"{t}\"")))
        });
        let xml = format!(
            "<volume><name>{}</name><capacity unit='bytes'>{len}</capacity><allocation unit='bytes'>0</allocation><target><format type='raw'/></target></volume>",
            xml::escape(name),
        );
        let vol = virt::storage_vol::StorageVol::create_xml(&pool, &xml, 0).map_err(pool_err)?;
        if let Err(m) = super::transfer::upload(self.conn, &vol, src, len, sparse && zeroed) {
            let _ = vol.delete(0);
            return Err(self.pool_err(format!("uploading {name}: {m}")));
        }
        vol.path().map(PathBuf::from).map_err(pool_err)
    }

    /// The pool's volume `name`, copied into `dest` (a remote boot-copy disk coming back).
    pub(super) fn download(&self, name: &str, dest: &Path) -> Result<(), DomainError> {
        let vol = self.volume(name)?;
        super::transfer::download(self.conn, &vol, dest)
            .map(|_| ())
            .map_err(|m| self.pool_err(format!("downloading {name}: {m}")))
    }

    /// Deletes the pool's volume `name`, if it is there.
    pub(super) fn remove(&self, name: &str) {
        if let Ok(vol) = self.volume(name) {
            let _ = vol.delete(0);
        }
    }
}

/// A local medium placed in libvirt's image directory, where its security drivers label it for
/// QEMU (reused when one of that name and size is there).
fn place(src: &Path, name: &str, reuse: bool) -> Result<PathBuf, DomainError> {
    let dest = Path::new(LOCAL_MEDIA_DIR).join(name);
    let same = fs::metadata(&dest)
        .ok()
        .zip(fs::metadata(src).ok())
        .is_some_and(|(a, b)| a.len() == b.len());
    if !(reuse && same) {
        // Unique per process: rescues running at once may place the same medium.
        let tmp = dest.with_extension(format!("vmrescue-tmp-{}", std::process::id()));
        fs::copy(src, &tmp).map_err(io("copying the rescue medium to", &tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io("syncing", &tmp))?;
        fs::rename(&tmp, &dest).map_err(io("placing", &dest))?;
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))
        .map_err(io("making readable", &dest))?;
    Ok(dest)
}

/// The settings drive a boot reads this rescue's settings (and secrets) from.
pub(super) fn settings_drive(
    state: &Path,
    iso: &Path,
    settings: &params::Settings,
    keys: &vmrescue_protocol::secrets::Secrets,
) -> Result<(), DomainError> {
    Ok(crate::boot::drive::write(state, iso, settings, keys)?)
}
