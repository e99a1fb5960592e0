//! Inbound authorization: the workload's policies decide each request by the snapshot
//! contract's evaluator ([`spec::authz`], the code `meshc explain` predicts with), over a
//! borrowed view of the parsed head and the connection's mTLS peer. A denial is 403 naming the
//! deciding policy and its `file:line:col`, and is logged; a matching AUDIT policy only logs.

use std::net::IpAddr;

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
    let detail = match authz::evaluate(policies, request) {
        Decision::Allow(_) => return Ok(()),
        Decision::Deny(Some(policy)) => {
            format!("denied by DENY policy {} ({})", policy.name, policy.source)
        }
        Decision::Deny(None) => {
            let allows: Vec<String> = policies
                .iter()
                .filter(|p| p.action == spec::AuthzAction::Allow)
                .map(|p| format!("{} ({})", p.name, p.source))
                .collect();
            format!("no ALLOW policy matches: {}", allows.join(", "))
        }
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
