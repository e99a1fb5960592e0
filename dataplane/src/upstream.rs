//! Opening upstream connections: TCP by a deadline, then mutual TLS with secure naming when
//! the destination service has identities and this sidecar has a certificate.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use monoio::time::Instant;

use crate::conn::Conn;
use crate::intercept::socket;
use crate::percore::Security;
use crate::routing::EndpointGroup;
use crate::stream::{Stream, TlsStream};
use crate::tls::{CoreTls, NamingMismatch};

/// What a connection to a group with identities needs: this core's TLS configurations and
/// the SPIFFE IDs its servers may present.
#[derive(Debug, Clone)]
pub struct Secure<'a> {
    /// The workload certificate's configurations.
    pub tls: Rc<CoreTls>,
    /// The service's identities (secure naming).
    pub identities: &'a [String],
    /// The ALPN protocols to offer instead of the configuration's (HTTP/1.1's).
    pub alpn: Option<&'static [&'static [u8]]>,
}

impl<'a> Secure<'a> {
    /// Mutual TLS towards `group`; `None` when its service has no identities or this core has
    /// no certificate (then the connection is plain, as `meshd` warned at load).
    pub fn for_group(security: &Security, group: &'a EndpointGroup) -> Option<Self> {
        if group.identities.is_empty() {
            return None;
        }
        let tls = security.tls.borrow().clone()?;
        Some(Self {
            tls,
            identities: &group.identities,
            alpn: None,
        })
    }

    /// Whether a pooled connection may carry a request for this group: it is TLS and its
    /// server proved one of the group's identities.
    pub fn accepts(secure: Option<&Self>, conn: &Conn) -> bool {
        match (secure, conn.stream.peer_identity()) {
            (None, _) => !conn.stream.is_tls(),
            (Some(s), Some(id)) => s.identities.iter().any(|i| i == id),
            (Some(_), None) => false,
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connection failed.
    Refused(io::Error),
    /// The deadline passed (connecting or in the handshake).
    TimedOut,
    /// The server's certificate names another identity than the service's.
    Naming(NamingMismatch),
    /// The TLS handshake failed otherwise (the server refused our certificate, ...).
    Tls(io::Error),
}

/// Connects to `addr` by `until`, its socket marked `mark` (0: none), with mutual TLS when
/// `secure` says so.
pub async fn connect(
    security: &Security,
    addr: SocketAddr,
    mark: u32,
    until: Instant,
    secure: Option<&Secure<'_>>,
) -> Result<Conn, ConnectError> {
    let stream = match monoio::time::timeout_at(until, socket::connect(addr, mark)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(ConnectError::Refused(e)),
        Err(_) => return Err(ConnectError::TimedOut),
    };
    let _ = stream.set_nodelay(true);
    let Some(secure) = secure else {
        return Ok(Conn::new(stream));
    };
    let config = secure
        .tls
        .client(secure.identities)
        .map_err(|e| ConnectError::Tls(io::Error::other(e)))?;
    let handshake = TlsStream::connect(stream, config, addr, secure.alpn);
    match monoio::time::timeout_at(until, handshake).await {
        Ok(Ok(tls)) => {
            security.count_authn(|c| c.outbound_handshakes += 1);
            Ok(Conn::from_stream(Stream::tls(tls)))
        }
        Ok(Err(e)) => match NamingMismatch::in_error(&e) {
            Some(mismatch) => {
                security.count_authn(|c| c.naming_failures += 1);
                Err(ConnectError::Naming(mismatch.clone()))
            }
            None => {
                security.count_authn(|c| c.outbound_failures += 1);
                Err(ConnectError::Tls(e))
            }
        },
        Err(_) => {
            security.count_authn(|c| c.outbound_failures += 1);
            Err(ConnectError::TimedOut)
        }
    }
}
