//! Certificate renewal from `meshca serve`: a thread off the data cores obtains the workload's
//! first certificate with a bootstrap token when the certificate directory has none, then
//! renews at half of each certificate's lifetime with the current one as its credential. New
//! files are written into the directory (each atomically, the key first), where the
//! certificate watcher picks them up like any other change. A failed attempt is logged and
//! tried again after a backoff, never later than the certificate's own expiry allows.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ca::client::{self, Credentials};
use ca::SpiffeId;

use crate::intercept::socket;
use crate::tls::Identity;

/// Shortest and longest wait before trying a failed renewal again.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why renewal could not obtain or store a certificate.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// A needed file is missing or unreadable.
    // The cause is part of the message, not a source: `{:#}` would print it twice.
    #[error("{}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The directory holds no usable certificate and there is no token to bootstrap with.
    #[error("{} holds no usable certificate and no --ca-token-file was given", .0.display())]
    NoCredentials(PathBuf),
    /// The service refused or could not be reached.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// Writing the new files failed.
    #[error(transparent)]
    Write(#[from] ca::CaError),
    /// The current certificate's SPIFFE ID does not parse.
    #[error(transparent)]
    Spiffe(#[from] ca::SpiffeError),
    /// The certificate set obtained does not load (refused before it replaced anything).
    #[error("the certificate obtained is unusable: {0}")]
    Unusable(#[from] crate::tls::TlsError),
}

/// Where renewal gets its certificates.
#[derive(Debug, Clone)]
pub struct Renewal {
    /// The certificate directory (`cert.pem`, `key.pem`, `bundle.pem`).
    pub dir: PathBuf,
    /// The `meshca serve` address.
    pub ca: SocketAddr,
    /// A file holding a one-time bootstrap token, for a directory without certificates.
    pub token_file: Option<PathBuf>,
    /// The trust bundle to verify the service with before the directory has one.
    pub bundle: Option<PathBuf>,
    /// The socket mark of connections to the service (0: none).
    pub mark: u32,
}

impl Renewal {
    /// Obtains the first certificate with the bootstrap token if the directory has no usable
    /// one; returns once the directory holds a certificate set.
    pub fn bootstrap(&self) -> Result<(), RenewError> {
        if Identity::load(&self.dir).is_ok() {
            return Ok(());
        }
        let token_file = self
            .token_file
            .as_ref()
            .ok_or_else(|| RenewError::NoCredentials(self.dir.clone()))?;
        let token = read(token_file)?;
        let bundle_path = self
            .bundle
            .clone()
            .unwrap_or_else(|| self.dir.join("bundle.pem"));
        let bundle = read(&bundle_path)?;
        let credentials = Credentials::Token(token.trim());
        let obtained = client::obtain(self.ca, &self.connect(), &bundle, credentials, None)?;
        install(&self.dir, &obtained)?;
        tracing::info!("obtained a first certificate from meshca at {}", self.ca);
        Ok(())
    }

    /// Starts the renewal thread.
    pub fn spawn(self) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("meshd-renew".into())
            .spawn(move || loop {
                let wait = match self.renew_when_due() {
                    Ok(()) => Duration::ZERO,
                    Err(wait) => wait,
                };
                std::thread::sleep(wait);
            })
            .map(drop)
    }

    /// Waits until the current certificate is half way through its life and renews it.
    /// `Err(wait)`: it failed, try again after `wait`.
    fn renew_when_due(&self) -> Result<(), Duration> {
        let identity = match Identity::load(&self.dir) {
            Ok(identity) => identity,
            Err(e) => {
                tracing::warn!("renewal: {e}; trying again in {}s", RETRY_MAX.as_secs());
                return Err(RETRY_MAX);
            }
        };
        let due = identity.not_before + (identity.not_after - identity.not_before) / 2;
        let now = unix_now();
        if due > now {
            return Err(Duration::from_secs((due - now) as u64));
        }
        match self.renew(&identity) {
            Ok(serial) => {
                tracing::info!(
                    "renewed {} from meshca (was serial {serial})",
                    identity.spiffe_id
                );
                Ok(())
            }
            Err(e) => {
                // Retry well before expiry: a tenth of what is left, within bounds.
                let left = Duration::from_secs((identity.not_after - now).max(0) as u64);
                let wait = (left / 10).clamp(RETRY_MIN, RETRY_MAX);
                tracing::warn!("renewal failed: {e}; trying again in {}s", wait.as_secs());
                Err(wait)
            }
        }
    }

    fn connect(&self) -> impl Fn(SocketAddr, Duration) -> std::io::Result<TcpStream> {
        let mark = self.mark;
        move |addr, timeout| socket::connect_blocking(addr, mark, timeout)
    }

    fn renew(&self, identity: &Identity) -> Result<String, RenewError> {
        let file = |name: &str| read(&self.dir.join(name));
        let (chain_pem, key_pem, bundle) =
            (file("cert.pem")?, file("key.pem")?, file("bundle.pem")?);
        let id = SpiffeId::parse(&identity.spiffe_id)?;
        let credentials = Credentials::Certificate {
            chain_pem: &chain_pem,
            key_pem: &key_pem,
        };
        let obtained = client::obtain(self.ca, &self.connect(), &bundle, credentials, Some(&id))?;
        install(&self.dir, &obtained)?;
        Ok(identity.serial.clone())
    }
}

/// Checks a new certificate set in a scratch directory beside `dir` (it must load as an
/// identity: key matching, chaining to its bundle, valid now) before it replaces the files
/// in `dir`.
fn install(dir: &Path, obtained: &client::Obtained) -> Result<(), RenewError> {
    let scratch = dir.join(".incoming");
    obtained.write_to(&scratch)?;
    let checked = Identity::load(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    checked?;
    obtained.write_to(dir)?;
    Ok(())
}

fn read(path: &Path) -> Result<String, RenewError> {
    std::fs::read_to_string(path).map_err(|cause| RenewError::Read {
        path: path.to_owned(),
        cause,
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
