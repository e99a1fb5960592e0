//! Inbound authorization: the workload's policies decide each request by the snapshot
//! contract's evaluator ([`spec::authz`], the code `meshc explain` predicts with), over a
//! borrowed view of the parsed head and the connection's mTLS peer. A denial is 403 naming the
//! deciding policy and its `file:line:col`, and is logged; a matching AUDIT policy only logs.

use std::net::{IpAddr, SocketAddr};

use spec::authz::{self, Attributes, Decision, JwtFacts};
use spec::AuthorizationPolicy;

use crate::http1::RequestHead;
use crate::stream::Stream;

/// What authorization reads of one inbound request.
#[derive(Debug)]
pub struct InboundRequest<'r, 'b, 'h> {
    /// The parsed head.
    pub head: &'r RequestHead<'b, 'h>,
    /// The inbound port the request is for.
    pub port: Option<u16>,
    /// The caller's SPIFFE ID from mutual TLS.
    pub principal: Option<&'r str>,
    /// The caller's connection (its address is looked up only if a policy asks).
    pub peer: &'r Stream,
    /// The validated JWT, if any.
    pub jwt: Option<&'r JwtFacts>,
}

impl Attributes for InboundRequest<'_, '_, '_> {
    fn method(&self) -> &str {
        self.head.method
    }

    fn host(&self) -> Option<&str> {
        Some(self.head.host).filter(|h| !h.is_empty())
    }

    fn path(&self) -> &str {
        self.head.path
    }

    fn port(&self) -> Option<u16> {
        self.port
    }

    fn principal(&self) -> Option<&str> {
        self.principal
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.peer.peer_addr().ok().map(|a| a.ip().to_canonical())
    }

    fn any_header(&self, name: &str, test: &mut dyn FnMut(&str) -> bool) -> bool {
        self.head.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(name)
                && std::str::from_utf8(h.value).is_ok_and(|v| test(v.trim()))
        })
    }

    fn jwt(&self) -> Option<&JwtFacts> {
        self.jwt
    }
}

/// Decides `request` by `policies`: `Err` with the reason for a denial, naming the deciding
/// policy and where it was written (or the ALLOW policies none of which matched). Denials and
/// AUDIT matches are logged with the caller, the request and the policy's source location.
pub fn check(
    policies: &[AuthorizationPolicy],
    request: &InboundRequest<'_, '_, '_>,
) -> Result<(), String> {
    if policies.is_empty() {
        return Ok(());
    }
    for audit in authz::audits(policies, request) {
        tracing::info!(
            "authz: audit: policy {} ({}) matches {}",
            audit.name,
            audit.source,
            describe(request)
        );
    }
    let Err(detail) = denial(authz::evaluate(policies, request), policies) else {
        return Ok(());
    };
    tracing::info!("authz: {} {detail}", describe(request));
    Err(detail)
}

/// `GET /path from spiffe://... (10.0.0.1)` for log lines.
fn describe(request: &InboundRequest<'_, '_, '_>) -> String {
    let who = request.principal.unwrap_or("a caller without identity");
    let addr = request.peer.peer_addr().ok();
    let ip = addr.map_or(String::new(), |a| format!(" ({})", a.ip().to_canonical()));
    format!(
        "{} {} from {who}{ip}",
        request.head.method, request.head.path
    )
}

/// What authorization reads of a relayed TCP connection: no method, host, path, headers or JWT
/// (rules that read them mean what Istio makes them mean for TCP, see [`authz::policy_matches`]).
#[derive(Debug, Clone, Copy)]
pub struct InboundConnection<'a> {
    /// The inbound port it is for.
    pub port: u16,
    /// The caller's SPIFFE ID from mutual TLS.
    pub principal: Option<&'a str>,
    /// The caller's address.
    pub peer: SocketAddr,
}

impl Attributes for InboundConnection<'_> {
    fn method(&self) -> &str {
        ""
    }

    fn host(&self) -> Option<&str> {
        None
    }

    fn path(&self) -> &str {
        ""
    }

    fn port(&self) -> Option<u16> {
        Some(self.port)
    }

    fn principal(&self) -> Option<&str> {
        self.principal
    }

    fn source_ip(&self) -> Option<IpAddr> {
        Some(self.peer.ip().to_canonical())
    }

    fn any_header(&self, _: &str, _: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }

    fn jwt(&self) -> Option<&JwtFacts> {
        None
    }

    fn is_tcp(&self) -> bool {
        true
    }
}

/// Decides a TCP connection by `policies`, as [`check`] decides a request: `Err` with the
/// reason for a denial; denials and AUDIT matches are logged.
pub fn check_connection(
    policies: &[AuthorizationPolicy],
    connection: &InboundConnection<'_>,
) -> Result<(), String> {
    if policies.is_empty() {
        return Ok(());
    }
    let who = connection.principal.unwrap_or("a caller without identity");
    let describe = || {
        let ip = connection.peer.ip().to_canonical();
        format!(
            "TCP connection to port {} from {who} ({ip})",
            connection.port
        )
    };
    for audit in authz::audits(policies, connection) {
        let (name, source) = (&audit.name, &audit.source);
        tracing::info!(
            "authz: audit: policy {name} ({source}) matches {}",
            describe()
        );
    }
    let Err(detail) = denial(authz::evaluate(policies, connection), policies) else {
        return Ok(());
    };
    tracing::info!("authz: {} {detail}", describe());
    Err(detail)
}

/// Why `decision` denies; `Ok` when it allows.
fn denial(decision: Decision<'_>, policies: &[AuthorizationPolicy]) -> Result<(), String> {
    match decision {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(Some(policy)) => Err(format!(
            "denied by DENY policy {} ({})",
            policy.name, policy.source
        )),
        Decision::Deny(None) => {
            let allows: Vec<String> = policies
                .iter()
                .filter(|p| p.action == spec::AuthzAction::Allow)
                .map(|p| format!("{} ({})", p.name, p.source))
                .collect();
            Err(format!("no ALLOW policy matches: {}", allows.join(", ")))
        }
    }
}
