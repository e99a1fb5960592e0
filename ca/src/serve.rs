//! `meshca serve`: the CSR signing service, HTTP/1.1 over TLS 1.3.
//!
//! - `POST /v1/sign` with a PEM CSR as the body answers the signed chain (leaf, then
//!   intermediate) as PEM. The caller authenticates with its current certificate (mutual TLS:
//!   it may renew only the identity that certificate names) or, for its first certificate, with
//!   `Authorization: Bearer TOKEN`, a one-time bootstrap token made by `meshca token`, bound to
//!   one SPIFFE ID and spent on use. A CSR that asks for another identity is refused (403).
//! - `GET /v1/bundle` answers the trust bundle (no authentication: roots are public).
//!
//! Each identity may obtain at most [`RATE_BURST`] certificates per [`RATE_WINDOW`] (then 429);
//! every issuance and every refusal is logged on stderr with the caller's address.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rcgen::{CertificateSigningRequestParams, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use x509_parser::extensions::GeneralName;

use crate::authority::{write_private, Authority, CaError};
use crate::spiffe::SpiffeId;

/// Certificates one identity may obtain per [`RATE_WINDOW`].
pub const RATE_BURST: usize = 5;
/// The rate limit's window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;
/// Largest request head or body read.
const MAX_REQUEST: usize = 16 * 1024;
/// A silent client is dropped after this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may take from accept to answer, handshake included: a client that
/// trickles bytes is cut off here, so slow clients cannot hold every connection slot.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(15);
/// How often the service makes itself a new certificate (valid 24 h) and re-reads the bundle,
/// so it neither expires nor misses a root added by `meshca root add`.
const TLS_REFRESH: Duration = Duration::from_secs(600);
/// The file in the CA directory holding unspent bootstrap tokens (`TOKEN SPIFFE-ID` lines).
pub const TOKENS: &str = "tokens";

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Lifetime of the certificates it signs.
    pub ttl: Duration,
    /// Extra names (IP addresses or DNS names) for the service's own certificate, the ones
    /// clients dial it by; the listen address (when not unspecified) and `localhost` are
    /// always in.
    pub names: Vec<String>,
}

/// Creates a one-time bootstrap token for `id`, recorded in the CA directory's token file.
pub fn new_token(ca: &Authority, dir: &Path, id: &SpiffeId) -> Result<String, CaError> {
    ca.check_trust_domain(id)?;
    let bytes = crate::authority::random_bytes::<24>()?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut tokens = Tokens::load(dir)?;
    tokens.by_token.insert(token.clone(), id.clone());
    tokens.save()?;
    Ok(token)
}

/// Unspent bootstrap tokens, mirrored in the CA directory so a spent one stays spent.
#[derive(Debug)]
struct Tokens {
    path: PathBuf,
    by_token: HashMap<String, SpiffeId>,
}

impl Tokens {
    fn load(dir: &Path) -> Result<Self, CaError> {
        let path = dir.join(TOKENS);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(CaError::Io { path, source }),
        };
        let mut by_token = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| CaError::Config {
                path: path.clone(),
                reason: format!("line {}: {reason}", n + 1),
            };
            let (token, id) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected `TOKEN SPIFFE-ID`".into()))?;
            let id = SpiffeId::parse(id.trim()).map_err(|e| bad(e.to_string()))?;
            by_token.insert(token.to_owned(), id);
        }
        Ok(Self { path, by_token })
    }

    fn save(&self) -> Result<(), CaError> {
        let mut text =
            String::from("# meshca bootstrap tokens: TOKEN SPIFFE-ID, each spent on use\n");
        let mut lines: Vec<_> = self.by_token.iter().collect();
        lines.sort_by(|a, b| a.0.cmp(b.0));
        for (token, id) in lines {
            text.push_str(&format!("{token} {id}\n"));
        }
        write_private(&self.path, &text)
    }

    /// Spends `token` as the file holds it now: saved without it before it counts as spent.
    fn spend(dir: &Path, token: &str) -> Result<Option<SpiffeId>, CaError> {
        let mut tokens = Self::load(dir)?;
        let Some(id) = tokens.by_token.get(token).cloned() else {
            return Ok(None);
        };
        tokens.by_token.remove(token);
        tokens.save()?;
        Ok(Some(id))
    }
}

/// What every connection thread shares.
struct Service {
    ca: Authority,
    /// The CA directory, where the token file is re-read for every token use (tokens made
    /// while the service runs count at once; a spent one never returns).
    dir: PathBuf,
    ttl: Duration,
    /// Serialises token spending within this process.
    tokens: Mutex<()>,
    issued: Mutex<HashMap<String, VecDeque<Instant>>>,
    connections: AtomicUsize,
    /// Connections being served: when each started and a handle to cut it off past the
    /// deadline.
    live: Mutex<Vec<(u64, Instant, TcpStream)>>,
    /// The service's own certificate names.
    names: Vec<String>,
    /// The TLS configuration in use and when it was made.
    tls: Mutex<(Instant, Arc<ServerConfig>)>,
    addr: SocketAddr,
}

impl Service {
    /// The TLS configuration for a new connection, remade every [`TLS_REFRESH`]; if remaking
    /// fails the previous one stays (and the failure is logged).
    fn tls(&self) -> Arc<ServerConfig> {
        let mut tls = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if tls.0.elapsed() >= TLS_REFRESH {
            match tls_config(&self.ca, self.addr, &self.names) {
                Ok(config) => *tls = (Instant::now(), Arc::new(config)),
                Err(e) => eprintln!("meshca: keeping the current TLS certificate: {e}"),
            }
        }
        tls.1.clone()
    }
}

/// Starts serving; returns the bound address once the listener is up, with the thread
/// accepting connections until the process exits.
pub fn serve(dir: &Path, options: &ServeOptions) -> Result<SocketAddr, CaError> {
    let ca = Authority::open(dir)?;
    let listener = TcpListener::bind(options.listen).map_err(|source| CaError::Io {
        path: format!("listen {}", options.listen).into(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| CaError::Io {
        path: format!("listen {}", options.listen).into(),
        source,
    })?;
    let config = Arc::new(tls_config(&ca, addr, &options.names)?);
    Tokens::load(dir)?; // a malformed token file is an error at start, not at first use
    let service = Arc::new(Service {
        tokens: Mutex::new(()),
        dir: dir.to_owned(),
        ca,
        ttl: options.ttl,
        issued: Mutex::new(HashMap::new()),
        connections: AtomicUsize::new(0),
        live: Mutex::new(Vec::new()),
        names: options.names.clone(),
        tls: Mutex::new((Instant::now(), config)),
        addr,
    });
    let sweeper = service.clone();
    std::thread::Builder::new()
        .name("meshca-deadline".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            sweeper.cut_off_late_connections();
        })
        .map_err(|source| CaError::Io {
            path: "deadline thread".into(),
            source,
        })?;
    std::thread::Builder::new()
        .name("meshca-accept".into())
        .spawn(move || accept_loop(&listener, &service))
        .map_err(|source| CaError::Io {
            path: "accept thread".into(),
            source,
        })?;
    Ok(addr)
}

/// TLS 1.3 only; client certificates are asked for and verified against the bundle, but not
/// required (a bootstrapping workload has none yet). The service's own certificate names
/// `spiffe://TD/ns/mesh-system/sa/meshca`, plus the listen address and `localhost` so that
/// ordinary HTTPS clients can check the name they dialled.
fn tls_config(ca: &Authority, addr: SocketAddr, names: &[String]) -> Result<ServerConfig, CaError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.bundle()?.as_bytes()) {
        let cert = cert.map_err(|e| CaError::Certificate(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| CaError::Certificate(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| CaError::Certificate(e.to_string()))?;
    let id = SpiffeId::parse(&format!(
        "spiffe://{}/ns/mesh-system/sa/meshca",
        ca.trust_domain()
    ))?;
    let mut extra = vec![SanType::DnsName("localhost".try_into()?)];
    if !addr.ip().is_unspecified() {
        extra.push(SanType::IpAddress(addr.ip()));
    }
    for name in names {
        extra.push(match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.as_str().try_into()?),
        });
    }
    let (chain_pem, key_pem) = ca.serving_certificate(&id, &extra)?;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::Certificate(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| CaError::Certificate(e.to_string()))?;
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CaError::Certificate(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| CaError::Certificate(e.to_string()))
}

fn accept_loop(listener: &TcpListener, service: &Arc<Service>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if service.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue; // dropped: closes the connection
        }
        let (config, for_thread) = (service.tls(), service.clone());
        let id = next_id;
        next_id += 1;
        if let Ok(handle) = stream.try_clone() {
            let mut live = service.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.push((id, Instant::now(), handle));
        }
        // Counted before the thread starts, uncounted if it cannot.
        service.connections.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("meshca-conn".into())
            .spawn(move || {
                let peer = stream.peer_addr().ok();
                if let Err(e) = handle(stream, config, &for_thread) {
                    eprintln!("meshca: {}: {e}", describe(peer));
                }
                for_thread.finished(id);
            });
        if spawned.is_err() {
            service.finished(id);
            eprintln!("meshca: cannot start a connection thread");
        }
    }
}

fn describe(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown peer".to_owned(), |p| p.to_string())
}

/// A request as far as this service reads it.
struct Request {
    method: String,
    path: String,
    bearer: Option<String>,
    body: Vec<u8>,
}

fn handle(stream: TcpStream, config: Arc<ServerConfig>, service: &Service) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let peer = describe(stream.peer_addr().ok());
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, stream);
    let request = match read_request(&mut tls) {
        Ok(request) => request,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return respond(&mut tls, 400, &format!("bad request: {e}\n"));
        }
        Err(e) => return Err(e),
    };
    let caller = peer_identity(&tls.conn);
    let (status, body) = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/v1/bundle") => match service.ca.bundle() {
            Ok(bundle) => (200, bundle),
            Err(e) => (500, format!("{e}\n")),
        },
        ("POST", "/v1/sign") => sign(service, caller, &request, &peer),
        (_, "/v1/bundle" | "/v1/sign") => (405, "method not allowed\n".to_owned()),
        _ => (
            404,
            "unknown path; try POST /v1/sign or GET /v1/bundle\n".to_owned(),
        ),
    };
    respond(&mut tls, status, &body)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// Authenticates the caller, checks its CSR and rate, and signs.
fn sign(
    service: &Service,
    caller: Option<SpiffeId>,
    request: &Request,
    peer: &str,
) -> (u16, String) {
    let refuse = |status: u16, reason: String| {
        eprintln!("meshca: refused {peer}: {status} {reason}");
        (status, format!("{reason}\n"))
    };
    // Who is asking: the identity of the client certificate, else a bootstrap token's (looked
    // up now, spent only once the request is found good).
    let (id, token) = match (caller, &request.bearer) {
        (Some(id), _) => (id, None),
        (None, Some(token)) => match Tokens::load(&service.dir) {
            Ok(tokens) => match tokens.by_token.get(token) {
                Some(id) => (id.clone(), Some(token.as_str())),
                None => return refuse(401, "unknown or already spent bootstrap token".into()),
            },
            Err(e) => return refuse(500, e.to_string()),
        },
        (None, None) => {
            return refuse(
                401,
                "authenticate with your current certificate or a bootstrap token".into(),
            )
        }
    };
    let Ok(csr_pem) = std::str::from_utf8(&request.body) else {
        return refuse(
            400,
            "the body must be a PEM certificate signing request".into(),
        );
    };
    let csr = match CertificateSigningRequestParams::from_pem(csr_pem) {
        Ok(csr) => csr,
        Err(e) => return refuse(400, format!("bad certificate signing request: {e}")),
    };
    for san in &csr.params.subject_alt_names {
        let asked = match san {
            SanType::URI(uri) => uri.as_str().to_owned(),
            other => format!("{other:?}"),
        };
        if asked != id.as_str() {
            return refuse(
                403,
                format!("the CSR asks for {asked}; this caller may only obtain {id}"),
            );
        }
    }
    if !service.admit(&id) {
        return refuse(
            429,
            format!(
                "{id} obtained {RATE_BURST} certificates in the last {} s; try later",
                RATE_WINDOW.as_secs()
            ),
        );
    }
    let how = match token {
        None => "client certificate",
        Some(token) => {
            let _spending = service
                .tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match Tokens::spend(&service.dir, token) {
                Ok(Some(_)) => "bootstrap token",
                Ok(None) => return refuse(401, "bootstrap token already spent".into()),
                Err(e) => return refuse(500, e.to_string()),
            }
        }
    };
    match service.ca.sign(&id, service.ttl, &csr.public_key) {
        Ok(signed) => {
            eprintln!(
                "meshca: issued {id} serial {} valid until {} to {peer} ({how})",
                signed.serial, signed.not_after
            );
            (200, signed.chain_pem)
        }
        Err(e) => refuse(500, e.to_string()),
    }
}

impl Service {
    /// A connection ended: uncount it and forget its handle.
    fn finished(&self, id: u64) {
        self.connections.fetch_sub(1, Ordering::SeqCst);
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|(other, _, _)| *other != id);
    }

    /// Shuts down connections past [`CONNECTION_DEADLINE`]; their threads' reads then fail.
    fn cut_off_late_connections(&self) {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, started, stream) in live.iter() {
            if started.elapsed() >= CONNECTION_DEADLINE {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Counts an issuance for `id` if it is within the rate limit.
    fn admit(&self, id: &SpiffeId) -> bool {
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        let recent = issued.entry(id.to_string()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= RATE_BURST {
            return false;
        }
        recent.push_back(now);
        true
    }
}

/// The SPIFFE ID of the verified client certificate, if the caller presented one.
fn peer_identity(conn: &ServerConnection) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let sans = cert.subject_alternative_name().ok()??;
    let mut uris = sans.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let uri = uris.next()?;
    // An SVID has exactly one URI SAN.
    if uris.next().is_some() {
        return None;
    }
    SpiffeId::parse(uri).ok()
}

fn read_request(tls: &mut impl Read) -> io::Result<Request> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a request",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_REQUEST {
            return Err(invalid("request head too large"));
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed
        .parse(&buf[..head_len])
        .map_err(|e| invalid(&e.to_string()))?;
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let length: usize = match header("content-length") {
        Some(v) => v.parse().map_err(|_| invalid("bad content-length"))?,
        None => 0,
    };
    if length > MAX_REQUEST {
        return Err(invalid("body too large"));
    }
    if header("transfer-encoding").is_some() {
        return Err(invalid("send the CSR with a content-length"));
    }
    let bearer = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_owned()));
    let request = Request {
        method: parsed.method.unwrap_or("").to_owned(),
        path: parsed.path.unwrap_or("").to_owned(),
        bearer,
        body: Vec::new(),
    };
    let mut body = buf[head_len..].to_vec();
    while body.len() < length {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(invalid("closed inside the body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request { body, ..request })
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_owned())
}

fn respond(tls: &mut impl Write, status: u16, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let content_type = if status == 200 {
        "application/x-pem-file"
    } else {
        "text/plain"
    };
    let retry = if status == 429 {
        format!("retry-after: {}\r\n", RATE_WINDOW.as_secs())
    } else {
        String::new()
    };
    write!(
        tls,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         {retry}connection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.flush()
}
