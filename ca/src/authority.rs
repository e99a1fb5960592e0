//! A certificate authority kept in one directory: its roots (the newest one signs), an optional
//! intermediate, and the trust domain it issues for.
//!
//! ```text
//! CA/meshca.toml            trust_domain = "cluster.local", next_root = N
//! CA/roots/<n>.pem          root certificates; the highest n signs, all of them are trusted
//! CA/roots/<n>.key.pem      their keys (0600)
//! CA/intermediate.pem       optional, signed by the newest root
//! CA/intermediate.key.pem
//! ```
//!
//! Root rotation without a failed request: `add_root` makes a new root the signer while the
//! bundle keeps the old one, leaves are re-issued under the new root, then `retire_root`
//! drops the oldest root from the bundle.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::spiffe::{check_trust_domain, SpiffeError, SpiffeId};

/// Default lifetime of a root certificate: ten years.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default lifetime of an intermediate certificate: one year.
pub const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default lifetime of a workload certificate: 24 hours (Istio's default).
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest workload certificate lifetime `issue` accepts: 90 days.
pub const MAX_LEAF_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// How far a certificate's validity starts before its issuance, for peers with slow clocks:
/// this, or a tenth of a short lifetime (so that half the lifetime, when sidecars renew, still
/// lies after the issuance).
const BACKDATE: Duration = Duration::from_secs(60);

const CONFIG: &str = "meshca.toml";
const ROOTS: &str = "roots";
const INTERMEDIATE: &str = "intermediate.pem";
const INTERMEDIATE_KEY: &str = "intermediate.key.pem";

/// What can go wrong with a CA directory or an issuance.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `init` on a directory that already holds a CA.
    #[error("{} already holds a CA ({CONFIG} exists); use another directory", .0.display())]
    Exists(PathBuf),
    /// The directory holds no CA.
    #[error("{} holds no CA: run `meshca init --dir {}` first", .0.display(), .0.display())]
    Missing(PathBuf),
    /// `meshca.toml` is not valid.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A SPIFFE ID or trust domain is malformed.
    #[error(transparent)]
    Spiffe(#[from] SpiffeError),
    /// The SPIFFE ID is in another trust domain than the CA's.
    #[error("{id} is not in this CA's trust domain {trust_domain}")]
    ForeignTrustDomain {
        /// The ID asked for.
        id: String,
        /// The CA's trust domain.
        trust_domain: String,
    },
    /// A lifetime of zero, or longer than allowed (a workload certificate's is at most
    /// [`MAX_LEAF_TTL`]; a CA certificate's must end before year 10000).
    #[error("lifetime {0:?} is out of range: more than zero, at most 90 days for a workload")]
    Lifetime(Duration),
    /// The certificate that would sign has expired (or is about to): rotate the root or
    /// re-create the intermediate.
    #[error("the signing certificate expired at {0}; add a new root (`meshca root add`)")]
    SignerExpired(OffsetDateTime),
    /// Only one root left: retiring it would leave nothing to trust.
    #[error("the CA has a single root; add a new one before retiring the old")]
    LastRoot,
    /// rcgen refused to build or sign a certificate, or a stored one does not parse.
    #[error("certificate: {0}")]
    Certificate(String),
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        Self::Certificate(e.to_string())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Config {
    /// The trust domain every issued SPIFFE ID must be in.
    trust_domain: String,
    /// Number the next root gets.
    next_root: u32,
}

/// A workload certificate as issued: PEM texts ready to write.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf certificate, then the intermediate if the CA has one.
    pub chain_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
    /// Every root the CA trusts now.
    pub bundle_pem: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// When the leaf expires.
    pub not_after: OffsetDateTime,
}

/// A certificate signed over a key the requester holds.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The leaf certificate, then the intermediate if the CA has one.
    pub chain_pem: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// When the leaf expires.
    pub not_after: OffsetDateTime,
}

/// A CA directory.
#[derive(Debug)]
pub struct Authority {
    dir: PathBuf,
    config: Config,
}

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// Also create an intermediate that signs the workload certificates.
    pub intermediate: bool,
    /// Lifetime of the root.
    pub root_ttl: Duration,
}

impl Authority {
    /// Creates a CA in `dir` (created if missing) with a first root and, if asked, an
    /// intermediate. Refuses a directory that already holds one.
    pub fn init(dir: &Path, options: &InitOptions) -> Result<Self, CaError> {
        check_trust_domain(&options.trust_domain)?;
        if dir.join(CONFIG).exists() {
            return Err(CaError::Exists(dir.to_owned()));
        }
        let roots = dir.join(ROOTS);
        fs::create_dir_all(&roots).map_err(|source| CaError::Io {
            path: roots.clone(),
            source,
        })?;
        let mut ca = Self {
            dir: dir.to_owned(),
            config: Config {
                trust_domain: options.trust_domain.clone(),
                next_root: 1,
            },
        };
        ca.new_root(options.root_ttl)?;
        if options.intermediate {
            ca.new_intermediate()?;
        }
        ca.save_config()?;
        Ok(ca)
    }

    /// Opens the CA in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CaError> {
        let path = dir.join(CONFIG);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CaError::Missing(dir.to_owned()))
            }
            Err(source) => return Err(CaError::Io { path, source }),
        };
        let config: Config = toml::from_str(&text).map_err(|e| CaError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        check_trust_domain(&config.trust_domain)?;
        Ok(Self {
            dir: dir.to_owned(),
            config,
        })
    }

    /// Refuses an ID outside this CA's trust domain.
    pub fn check_trust_domain(&self, id: &SpiffeId) -> Result<(), CaError> {
        if id.trust_domain() == self.config.trust_domain {
            return Ok(());
        }
        Err(CaError::ForeignTrustDomain {
            id: id.to_string(),
            trust_domain: self.config.trust_domain.clone(),
        })
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &str {
        &self.config.trust_domain
    }

    /// Issues a workload certificate for `id`, valid for `ttl` (capped by the signer's own
    /// expiry), with a new ECDSA P-256 key.
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<Issued, CaError> {
        let key = KeyPair::generate()?;
        let signed = self.sign(id, ttl, &key)?;
        Ok(Issued {
            chain_pem: signed.chain_pem,
            key_pem: key.serialize_pem(),
            bundle_pem: self.bundle()?,
            serial: signed.serial,
            not_after: signed.not_after,
        })
    }

    /// Signs a certificate for `id` over `public_key` (a key the CA never sees the private
    /// half of, as from a CSR): the SPIFFE ID as its only URI SAN, client and server auth.
    pub fn sign(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<Signed, CaError> {
        self.sign_with(id, ttl, public_key, &[])
    }

    /// A certificate (chain and new key, PEM) for a service of the CA's own, e.g. `meshca
    /// serve`: its SPIFFE ID plus `extra` names that ordinary HTTPS clients check.
    pub fn serving_certificate(
        &self,
        id: &SpiffeId,
        extra: &[SanType],
    ) -> Result<(String, String), CaError> {
        let key = KeyPair::generate()?;
        let signed = self.sign_with(id, DEFAULT_LEAF_TTL, &key, extra)?;
        Ok((signed.chain_pem, key.serialize_pem()))
    }

    fn sign_with(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        public_key: &impl rcgen::PublicKeyData,
        extra: &[SanType],
    ) -> Result<Signed, CaError> {
        self.check_trust_domain(id)?;
        if ttl.is_zero() || ttl > MAX_LEAF_TTL {
            return Err(CaError::Lifetime(ttl));
        }
        let signer = self.signer()?;
        let now = OffsetDateTime::now_utc();
        if signer.not_after <= now + BACKDATE {
            return Err(CaError::SignerExpired(signer.not_after));
        }
        let mut params = CertificateParams::default();
        params.not_before = now - BACKDATE.min(ttl / 10);
        params.not_after = (now + ttl).min(signer.not_after);
        let serial = random_serial()?;
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        params.subject_alt_names =
            vec![SanType::URI(id.as_str().try_into().map_err(
                |e: rcgen::Error| CaError::Certificate(e.to_string()),
            )?)];
        params.subject_alt_names.extend_from_slice(extra);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.config.trust_domain.clone());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_pem(&signer.cert_pem, signer.key)?;
        let leaf = params.signed_by(public_key, &issuer)?;
        let mut chain_pem = leaf.pem();
        if let Some(intermediate) = signer.chain_pem {
            chain_pem.push_str(&intermediate);
        }
        Ok(Signed {
            chain_pem,
            serial: serial_hex,
            not_after: params.not_after,
        })
    }

    /// Every root certificate, oldest first, as one PEM text: the trust bundle.
    pub fn bundle(&self) -> Result<String, CaError> {
        let mut bundle = String::new();
        for n in self.root_numbers()? {
            bundle.push_str(&read(&self.root_cert(n))?);
        }
        Ok(bundle)
    }

    /// Adds a new root that signs from now on (re-issuing the intermediate under it, if the CA
    /// has one); the bundle keeps trusting the older roots. Returns the new root's number.
    pub fn add_root(&mut self, ttl: Duration) -> Result<u32, CaError> {
        let n = self.new_root(ttl)?;
        if self.dir.join(INTERMEDIATE).exists() {
            self.new_intermediate()?;
        }
        self.save_config()?;
        Ok(n)
    }

    /// Removes the oldest root from the bundle (and deletes its key). Refuses the last one.
    /// Returns its number.
    pub fn retire_root(&mut self) -> Result<u32, CaError> {
        let numbers = self.root_numbers()?;
        let [oldest, _, ..] = numbers[..] else {
            return Err(CaError::LastRoot);
        };
        for path in [self.root_key(oldest), self.root_cert(oldest)] {
            fs::remove_file(&path).map_err(|source| CaError::Io { path, source })?;
        }
        Ok(oldest)
    }

    /// The numbers of the roots present, ascending.
    pub fn root_numbers(&self) -> Result<Vec<u32>, CaError> {
        let roots = self.dir.join(ROOTS);
        let entries = fs::read_dir(&roots).map_err(|source| CaError::Io {
            path: roots.clone(),
            source,
        })?;
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CaError::Io {
                path: roots.clone(),
                source,
            })?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".pem").filter(|n| !n.ends_with(".key")) {
                if let Ok(n) = n.parse() {
                    numbers.push(n);
                }
            }
        }
        numbers.sort_unstable();
        if numbers.is_empty() {
            return Err(CaError::Missing(self.dir.clone()));
        }
        Ok(numbers)
    }

    fn root_cert(&self, n: u32) -> PathBuf {
        self.dir.join(ROOTS).join(format!("{n}.pem"))
    }

    fn root_key(&self, n: u32) -> PathBuf {
        self.dir.join(ROOTS).join(format!("{n}.key.pem"))
    }

    /// Creates a root numbered after every root there is (and `next_root`) and saves the
    /// counter at once, so a root that may have signed is never overwritten.
    fn new_root(&mut self, ttl: Duration) -> Result<u32, CaError> {
        let highest = self.root_numbers().ok().and_then(|n| n.last().copied());
        let n = highest
            .map_or(Some(self.config.next_root), |h| h.checked_add(1))
            .map(|n| n.max(self.config.next_root))
            .ok_or_else(|| CaError::Config {
                path: self.dir.join(CONFIG),
                reason: "no root number left".into(),
            })?;
        let now = OffsetDateTime::now_utc();
        let mut params = ca_params(&self.config.trust_domain, &format!("root {n}"), now, ttl)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write_private(&self.root_key(n), &key.serialize_pem())?;
        write_atomic(&self.root_cert(n), cert.pem().as_bytes(), 0o644)?;
        self.config.next_root = n.saturating_add(1);
        self.save_config()?;
        Ok(n)
    }

    /// Creates (or replaces) the intermediate, signed by the newest root.
    fn new_intermediate(&self) -> Result<(), CaError> {
        let newest = *self.root_numbers()?.last().unwrap_or(&1);
        let root_key = KeyPair::from_pem(&read(&self.root_key(newest))?)?;
        let root_pem = read(&self.root_cert(newest))?;
        let root = Issuer::from_ca_cert_pem(&root_pem, root_key)?;
        let root_expiry = not_after(&root_pem)?;
        let now = OffsetDateTime::now_utc();
        let name = format!("intermediate under root {newest}");
        let mut params = ca_params(
            &self.config.trust_domain,
            &name,
            now,
            DEFAULT_INTERMEDIATE_TTL,
        )?;
        params.not_after = params.not_after.min(root_expiry);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &root)?;
        write_private(&self.dir.join(INTERMEDIATE_KEY), &key.serialize_pem())?;
        write_atomic(&self.dir.join(INTERMEDIATE), cert.pem().as_bytes(), 0o644)
    }

    /// The certificate and key that sign workload certificates now.
    fn signer(&self) -> Result<Signer, CaError> {
        let intermediate = self.dir.join(INTERMEDIATE);
        let (cert_path, key_path, chained) = if intermediate.exists() {
            (intermediate, self.dir.join(INTERMEDIATE_KEY), true)
        } else {
            let newest = *self.root_numbers()?.last().unwrap_or(&1);
            (self.root_cert(newest), self.root_key(newest), false)
        };
        let cert_pem = read(&cert_path)?;
        Ok(Signer {
            not_after: not_after(&cert_pem)?,
            key: KeyPair::from_pem(&read(&key_path)?)?,
            chain_pem: chained.then(|| cert_pem.clone()),
            cert_pem,
        })
    }

    fn save_config(&self) -> Result<(), CaError> {
        let path = self.dir.join(CONFIG);
        let text = toml::to_string(&self.config).map_err(|e| CaError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes(), 0o644)
    }
}

struct Signer {
    cert_pem: String,
    key: KeyPair,
    /// The signer's certificate when it goes into the chain (an intermediate).
    chain_pem: Option<String>,
    not_after: OffsetDateTime,
}

/// Parameters shared by roots and intermediates.
fn ca_params(
    trust_domain: &str,
    name: &str,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<CertificateParams, CaError> {
    let lifetime = time::Duration::try_from(ttl).map_err(|_| CaError::Lifetime(ttl))?;
    let not_after = now
        .checked_add(lifetime)
        .filter(|end| end.year() <= 9999 && !ttl.is_zero())
        .ok_or(CaError::Lifetime(ttl))?;
    let mut params = CertificateParams::default();
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain.to_owned());
    params
        .distinguished_name
        .push(DnType::CommonName, format!("meshca {name}"));
    let domain_uri = format!("spiffe://{trust_domain}");
    params.subject_alt_names =
        vec![SanType::URI(domain_uri.as_str().try_into().map_err(
            |e: rcgen::Error| CaError::Certificate(e.to_string()),
        )?)];
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A positive random 128-bit serial number.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = random_bytes::<16>()?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `N` bytes from the kernel's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], CaError> {
    let io_error = |source| CaError::Io {
        path: "/dev/urandom".into(),
        source,
    };
    let mut bytes = [0u8; N];
    let mut urandom = fs::File::open("/dev/urandom").map_err(io_error)?;
    io::Read::read_exact(&mut urandom, &mut bytes).map_err(io_error)?;
    Ok(bytes)
}

/// The expiry of the first certificate in `pem`.
fn not_after(pem: &str) -> Result<OffsetDateTime, CaError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CaError::Certificate(e.to_string()))?;
    let cert = block
        .parse_x509()
        .map_err(|e| CaError::Certificate(e.to_string()))?;
    Ok(cert.validity().not_after.to_datetime())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a private key readable by its owner only.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    write_atomic(path, text.as_bytes(), 0o600)
}

/// Writes `bytes` to a temporary file with `mode`, then renames it over `path`: a reader (a
/// sidecar watching its certificate files) sees the old file or the new one, never half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let io_error = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    fs::rename(&tmp, path).map_err(io_error)
}

#[cfg(test)]
mod tests;
