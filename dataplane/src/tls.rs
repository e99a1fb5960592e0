//! Workload identity for mutual TLS: the certificate files `meshca issue` writes (`cert.pem`
//! leaf then chain, `key.pem`, `bundle.pem`), checked once at load, and the rustls
//! configurations built from them: TLS 1.3 only, the ring provider; inbound accepts ALPN `h2`,
//! `http/1.1` and [`TCP_ALPN`], outbound offers `http/1.1` (or [`TCP_ALPN`] for opaque TCP).
//!
//! Peers are named by SPIFFE ID, not by host name: the server side requires a client
//! certificate that chains to the bundle and reads the caller's ID from its URI SAN; the
//! client side (secure naming) checks the server's chain against the bundle and then that its
//! URI SAN is one of the identities the snapshot allows for the service it dialled, whatever
//! name the connection was opened with.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, ClientConfig};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, ServerConfig, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use x509_parser::extensions::GeneralName;

/// The ALPN protocol of opaque TCP between sidecars, the name Istio's sidecars give it: the
/// callee relays the connection's bytes to the application instead of parsing HTTP.
pub const TCP_ALPN: &[u8] = b"istio";

/// What a sidecar offers for opaque TCP.
pub const TCP_OFFER: &[&[u8]] = &[TCP_ALPN];

/// What a sidecar offers for HTTP/2: Istio's name first, then the plain one (for servers that
/// know only that).
pub const H2_OFFER: &[&[u8]] = &[b"istio-h2", b"h2"];

/// ALPN protocols the inbound side accepts, most preferred first: a client that offers `h2`
/// gets HTTP/2 (bridged to the HTTP/1.1 path, see [`crate::http2`]). The `istio-` names are
/// what sidecars offer, Istio's and meshd's, so a ClientHello is told to be the mesh's
/// mutual TLS rather than an application's own TLS (see [`offers_mesh_alpn`]).
const SERVER_ALPN: [&[u8]; 5] = [b"istio-h2", b"h2", b"istio-http/1.1", b"http/1.1", TCP_ALPN];

/// ALPN protocols the outbound side offers for HTTP/1.1.
const CLIENT_ALPN: [&[u8]; 2] = [b"istio-http/1.1", b"http/1.1"];

/// Whether an ALPN protocol is one of HTTP/2's names.
pub fn is_h2(protocol: &[u8]) -> bool {
    protocol == b"h2" || protocol == b"istio-h2"
}

/// Whether the ClientHello at the start of `bytes` offers an ALPN protocol only sidecars
/// offer (`istio`, `istio-*`), as Istio's permissive listeners tell the mesh's mutual TLS from
/// an application's own; `None` while the ClientHello is incomplete. Bytes that are no
/// ClientHello are not the mesh's.
pub fn offers_mesh_alpn(bytes: &[u8]) -> Option<bool> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        if acceptor.read_tls(&mut rest).is_err() {
            return Some(false);
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let alpn = accepted.client_hello().alpn();
                let mesh = alpn.is_some_and(|mut offered| offered.any(|p| p.starts_with(b"istio")));
                return Some(mesh);
            }
            Ok(None) => {}
            Err(_) => return Some(false),
        }
    }
    None
}

/// Why a workload identity could not be loaded or a configuration built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    // The cause is part of the message, not a source: `{:#}` would print it twice.
    #[error("{}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A file holds no certificate or key, or one that does not parse.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The leaf names no SPIFFE ID, or more than one.
    #[error("{}: the leaf certificate must carry exactly one spiffe:// URI SAN", path.display())]
    NoSpiffeId {
        /// The certificate file.
        path: PathBuf,
    },
    /// The leaf has expired or is not valid yet.
    #[error("{}: the certificate is not valid now (valid {not_before} to {not_after})", path.display())]
    NotValidNow {
        /// The certificate file.
        path: PathBuf,
        /// Start of validity (UTC).
        not_before: String,
        /// End of validity (UTC).
        not_after: String,
    },
    /// The certificate does not chain to the bundle (a stale or foreign bundle).
    #[error("{}: the certificate does not chain to bundle.pem: {reason}", path.display())]
    Untrusted {
        /// The certificate file.
        path: PathBuf,
        /// What verification said.
        reason: String,
    },
    /// rustls refused the key, the chain or the roots.
    #[error("{0}")]
    Rustls(String),
    /// The certificate names another identity than the snapshot gives the workload.
    #[error(
        "the certificate is for {presented} but the snapshot gives this workload {expected}: \
         issue one for {expected}"
    )]
    WrongIdentity {
        /// The certificate's SPIFFE ID.
        presented: String,
        /// The workload's identity in the snapshot.
        expected: String,
    },
}

/// A workload's certificate, key and trust bundle, loaded and checked.
#[derive(Debug)]
pub struct Identity {
    /// Leaf, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Trusted roots.
    pub roots: Arc<RootCertStore>,
    /// The bundle's certificates as read, to tell a changed bundle from the same one.
    pub bundle: Vec<CertificateDer<'static>>,
    /// The leaf's SPIFFE ID.
    pub spiffe_id: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// Start of the leaf's validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// Expiry of the leaf, seconds since the Unix epoch.
    pub not_after: i64,
}

impl Identity {
    /// Loads `dir/cert.pem`, `dir/key.pem` and `dir/bundle.pem`, refusing a leaf without a
    /// SPIFFE ID, one not valid now, a key that does not match, or an empty bundle.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join("cert.pem");
        let chain = certificates(&cert_path)?;
        let key_path = dir.join("key.pem");
        let key =
            PrivateKeyDer::from_pem_slice(&read(&key_path)?).map_err(|e| TlsError::Malformed {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
        let bundle_path = dir.join("bundle.pem");
        let mut roots = RootCertStore::empty();
        let bundle = certificates(&bundle_path)?;
        for root in bundle.iter().cloned() {
            roots.add(root).map_err(|e| TlsError::Malformed {
                path: bundle_path.clone(),
                reason: e.to_string(),
            })?;
        }
        let (_, leaf) =
            x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| TlsError::Malformed {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        let spiffe_id = spiffe_id(&leaf).ok_or_else(|| TlsError::NoSpiffeId {
            path: cert_path.clone(),
        })?;
        let validity = leaf.validity();
        if !validity.is_valid() {
            return Err(TlsError::NotValidNow {
                path: cert_path,
                not_before: validity.not_before.to_string(),
                not_after: validity.not_after.to_string(),
            });
        }
        // Peers verify against the same bundle: a set that cannot chain to it is refused now
        // rather than at every handshake.
        let parsed = ParsedCertificate::try_from(&chain[0]).map_err(|e| TlsError::Untrusted {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
        let algorithms = provider().signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &chain[1..],
            UnixTime::now(),
            algorithms,
        )
        .map_err(|e| TlsError::Untrusted {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
        let serial = leaf
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (not_before, not_after) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        let identity = Self {
            chain,
            key,
            roots: Arc::new(roots),
            bundle,
            spiffe_id,
            serial,
            not_before,
            not_after,
        };
        // Building a server configuration checks that the key matches the leaf.
        identity.server_config()?;
        Ok(identity)
    }

    /// The inbound side: a client certificate chaining to the bundle is required.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        // Sessions are not resumed: every connection proves its identity afresh, and no
        // ticket arrives unasked on a connection that may sit idle in a pool.
        config.send_tls13_tickets = 0;
        Ok(config)
    }

    /// The outbound side towards a service whose servers may present any of `expected`
    /// (SPIFFE IDs; the snapshot's secure-naming list).
    pub fn client_config(&self, expected: Vec<String>) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let verifier = SecureNaming {
            roots: self.roots.clone(),
            expected,
            provider: provider.clone(),
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.alpn_protocols = CLIENT_ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// The SPIFFE ID of a verified peer's leaf certificate (the first of `chain`).
pub fn peer_spiffe_id(chain: &[CertificateDer<'_>]) -> Option<String> {
    let (_, leaf) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    spiffe_id(&leaf)
}

fn spiffe_id(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    let sans = cert.subject_alternative_name().ok()??;
    let mut uris = sans
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let id = uris.next().filter(|uri| uri.starts_with("spiffe://"))?;
    // An X.509 SVID carries exactly one URI SAN, its SPIFFE ID.
    uris.next().is_none().then(|| id.to_owned())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        path: path.to_owned(),
        cause,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Malformed {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Malformed {
            path: path.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// A server whose certificate chains to the bundle but names an identity the service may not
/// be served by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secure naming: the server presented {}, expected one of [{}]",
    presented.as_deref().unwrap_or("no SPIFFE ID"),
    expected.join(", ")
)]
pub struct NamingMismatch {
    /// The SPIFFE ID the server's certificate carries, if any.
    pub presented: Option<String>,
    /// The identities the snapshot allows for the service.
    pub expected: Vec<String>,
}

impl NamingMismatch {
    /// The mismatch behind a failed handshake, if that is what failed it.
    pub fn in_error(error: &std::io::Error) -> Option<&Self> {
        Self::in_tls_error(error.get_ref()?.downcast_ref::<rustls::Error>()?)
    }

    /// The mismatch a rustls error stands for, if it does.
    pub fn in_tls_error(error: &rustls::Error) -> Option<&Self> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                other.0.downcast_ref::<Self>()
            }
            _ => None,
        }
    }
}

/// One core's TLS configurations: the inbound one, and an outbound one per list of server
/// identities, built when a connection first needs it. Replaced whole when the certificates
/// rotate, so new handshakes use the new certificate and open connections keep theirs.
#[derive(Debug)]
pub struct CoreTls {
    identity: Arc<Identity>,
    /// Inbound: a client certificate chaining to the bundle is required.
    pub server: Arc<ServerConfig>,
    /// Outbound, per list of identities a server may present: built on first use, dropped
    /// when a route state no longer calls any service with that list.
    clients: RefCell<HashMap<Vec<String>, Arc<ClientConfig>>>,
}

impl CoreTls {
    /// The configurations for `identity`.
    pub fn new(identity: Arc<Identity>) -> Result<Self, TlsError> {
        Ok(Self {
            server: Arc::new(identity.server_config()?),
            identity,
            clients: RefCell::new(HashMap::new()),
        })
    }

    /// This workload's SPIFFE ID.
    pub fn spiffe_id(&self) -> &str {
        &self.identity.spiffe_id
    }

    /// The outbound configuration towards servers that may present any of `expected`.
    pub fn client(&self, expected: &[String]) -> Result<Arc<ClientConfig>, TlsError> {
        let mut clients = self.clients.borrow_mut();
        if let Some(config) = clients.get(expected) {
            return Ok(config.clone());
        }
        let config = Arc::new(self.identity.client_config(expected.to_vec())?);
        clients.insert(expected.to_vec(), config.clone());
        Ok(config)
    }

    /// Drops the outbound configurations for lists of identities not in `in_use`; open
    /// connections keep theirs.
    pub fn keep_clients<'a>(&self, in_use: impl IntoIterator<Item = &'a [String]>) {
        let in_use: HashSet<&[String]> = in_use.into_iter().collect();
        self.clients
            .borrow_mut()
            .retain(|ids, _| in_use.contains(ids.as_slice()));
    }

    /// How many outbound configurations are built.
    #[cfg(test)]
    fn clients_built(&self) -> usize {
        self.clients.borrow().len()
    }
}

/// Secure naming: the server's chain must reach the bundle, and its SPIFFE ID must be one the
/// service may be served by. The name the connection was opened with is not consulted.
#[derive(Debug)]
struct SecureNaming {
    roots: Arc<RootCertStore>,
    expected: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SecureNaming {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            algorithms,
        )?;
        let presented = peer_spiffe_id(std::slice::from_ref(end_entity));
        match presented {
            Some(id) if self.expected.contains(&id) => Ok(ServerCertVerified::assertion()),
            presented => {
                let mismatch = NamingMismatch {
                    presented,
                    expected: self.expected.clone(),
                };
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(mismatch)),
                )))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests;
