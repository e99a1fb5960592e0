//! meshca's library: a certificate authority in a directory that issues SPIFFE workload
//! certificates (X.509 SVIDs) and keeps a multi-root trust bundle for root rotation.
#![forbid(unsafe_code)]

pub mod authority;
pub mod client;
pub mod serve;
pub mod spiffe;

pub use authority::{Authority, CaError, InitOptions, Issued};
pub use spiffe::{SpiffeError, SpiffeId};

use std::path::Path;

impl Issued {
    /// Writes `cert.pem` (leaf, then chain), `key.pem` (mode 0600) and `bundle.pem` (trust
    /// roots) into `dir`, creating it if needed. Each file is replaced atomically, the key
    /// first, so a sidecar watching the directory never pairs a certificate with a stale key
    /// for longer than one rename.
    pub fn write_to(&self, dir: &Path) -> Result<(), CaError> {
        write_certificate_set(dir, &self.chain_pem, &self.key_pem, &self.bundle_pem)
    }
}

impl client::Obtained {
    /// Writes the set as [`Issued::write_to`] does.
    pub fn write_to(&self, dir: &Path) -> Result<(), CaError> {
        write_certificate_set(dir, &self.chain_pem, &self.key_pem, &self.bundle_pem)
    }
}

fn write_certificate_set(dir: &Path, chain: &str, key: &str, bundle: &str) -> Result<(), CaError> {
    std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
        path: dir.to_owned(),
        source,
    })?;
    authority::write_private(&dir.join("key.pem"), key)?;
    authority::write_atomic(&dir.join("cert.pem"), chain.as_bytes(), 0o644)?;
    authority::write_atomic(&dir.join("bundle.pem"), bundle.as_bytes(), 0o644)
}
