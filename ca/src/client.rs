//! The client half of `meshca serve`, for sidecars renewing their certificate: a new ECDSA
//! P-256 key, a CSR naming the workload's SPIFFE ID, `POST /v1/sign` over TLS 1.3 (the service
//! verified against the trust bundle, by the address dialled), authenticated with the current
//! certificate or a bootstrap token; then `GET /v1/bundle` for the roots trusted now.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::spiffe::SpiffeId;

/// Longest a call to the service may take, connect and each read or write.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response read.
const MAX_RESPONSE: usize = 256 * 1024;

/// How the caller proves who it is.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// Its current certificate chain and key (PEM): renewal of the identity it names.
    Certificate {
        /// Leaf, then chain.
        chain_pem: &'a str,
        /// The leaf's key.
        key_pem: &'a str,
    },
    /// A one-time bootstrap token from `meshca token`.
    Token(&'a str),
}

/// A certificate obtained from the service, ready to write as `cert.pem`, `key.pem` and
/// `bundle.pem`.
#[derive(Debug, Clone)]
pub struct Obtained {
    /// Leaf, then chain.
    pub chain_pem: String,
    /// The new key (PKCS#8).
    pub key_pem: String,
    /// The roots the service trusts now.
    pub bundle_pem: String,
}

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, TLS or reading the answer failed.
    #[error("meshca at {addr}: {reason}")]
    Transport {
        /// The service.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The service answered with an error status (the reason is its body).
    #[error("meshca at {addr} answered {status}: {reason}")]
    Refused {
        /// The service.
        addr: SocketAddr,
        /// The HTTP status.
        status: u16,
        /// The service's explanation.
        reason: String,
    },
    /// The trust bundle, the current certificate or the key is unusable, or the CSR could
    /// not be made.
    #[error("{0}")]
    Local(String),
}

/// Opens the TCP connection to the service within a timeout (a sidecar marks its socket so
/// capture rules let it through).
pub type Connect<'a> = &'a dyn Fn(SocketAddr, Duration) -> std::io::Result<TcpStream>;

/// Connects with no socket options.
pub fn connect_plain(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, timeout)
}

/// Obtains a new certificate from the `meshca serve` at `addr`, trusting `bundle_pem`: for
/// `id` when given, else for the identity the credentials stand for (a bootstrap token's).
pub fn obtain(
    addr: SocketAddr,
    connect: Connect<'_>,
    bundle_pem: &str,
    credentials: Credentials<'_>,
    id: Option<&SpiffeId>,
) -> Result<Obtained, ClientError> {
    let local = |e: &dyn std::fmt::Display| ClientError::Local(e.to_string());
    let key = KeyPair::generate().map_err(|e| local(&e))?;
    let mut params = CertificateParams::default();
    if let Some(id) = id {
        let uri = id
            .as_str()
            .try_into()
            .map_err(|e: rcgen::Error| local(&e))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
    }
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| local(&e))?;
    let config = Arc::new(client_config(bundle_pem, credentials)?);
    let bearer = match credentials {
        Credentials::Token(token) => format!("authorization: Bearer {token}\r\n"),
        Credentials::Certificate { .. } => String::new(),
    };
    let request = format!(
        "POST /v1/sign HTTP/1.1\r\nhost: meshca\r\ncontent-type: application/pkcs10\r\n\
         content-length: {}\r\n{bearer}connection: close\r\n\r\n{csr}",
        csr.len()
    );
    let chain_pem = call(addr, connect, &config, &request)?;
    let bundle_request = "GET /v1/bundle HTTP/1.1\r\nhost: meshca\r\nconnection: close\r\n\r\n";
    let bundle_pem = call(addr, connect, &config, bundle_request)?;
    Ok(Obtained {
        chain_pem,
        key_pem: key.serialize_pem(),
        bundle_pem,
    })
}

fn client_config(
    bundle_pem: &str,
    credentials: Credentials<'_>,
) -> Result<ClientConfig, ClientError> {
    let local = |e: &dyn std::fmt::Display| ClientError::Local(e.to_string());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| local(&e))?)
            .map_err(|e| local(&e))?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| local(&e))?
            .with_root_certificates(roots);
    match credentials {
        Credentials::Token(_) => Ok(builder.with_no_client_auth()),
        Credentials::Certificate { chain_pem, key_pem } => {
            let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| local(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| local(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| local(&e))
        }
    }
}

/// Sends one request and returns the body of a 200 answer.
fn call(
    addr: SocketAddr,
    connect: Connect<'_>,
    config: &Arc<ClientConfig>,
    request: &str,
) -> Result<String, ClientError> {
    let transport = |e: &dyn std::fmt::Display| ClientError::Transport {
        addr,
        reason: e.to_string(),
    };
    let stream = connect(addr, TIMEOUT).map_err(|e| transport(&e))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| transport(&e))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| transport(&e))?;
    let mut tls = StreamOwned::new(conn, stream);
    tls.write_all(request.as_bytes())
        .and_then(|()| tls.flush())
        .map_err(|e| transport(&e))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            // The service closes right after its answer; a missing close_notify is its end.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(transport(&e)),
        }
        if response.len() > MAX_RESPONSE {
            return Err(transport(&"answer too large"));
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| transport(&"no complete HTTP answer"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| transport(&"no HTTP status"))?;
    if status != 200 {
        return Err(ClientError::Refused {
            addr,
            status,
            reason: body.trim().to_owned(),
        });
    }
    // An answer cut short (the connection closed early) must not pass for a whole one.
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(n) if n == body.len() => Ok(body.to_owned()),
        Some(n) => Err(transport(&format!(
            "answer cut short: {} of {n} bytes",
            body.len()
        ))),
        None => Err(transport(&"answer without content-length")),
    }
}
