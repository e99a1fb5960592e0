//! Phase 2, routing a parsed head: the rule, destination and endpoint outbound; the inbound
//! port, JWT and authorization inbound. No IO, so a refused request costs no upstream work.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spec::authz::JwtFacts;

use super::Arrival;
use crate::actions::chance;
use crate::authz::InboundRequest;
use crate::balancer::{Input, NewCookie, Pick};
use crate::http1::head::RequestEdits;
use crate::http1::reply::LocalReply;
use crate::http1::BodyFraming;
use crate::percore::{Core, Installed, FORWARDED_CLIENT_CERT};
use crate::routing::{Decision, Direction, RequestView, RouteError, RouteState, RuleRef};
use crate::stream::Stream;
use spec::http::{write_location, RedirectSource};
use spec::OutboundTraffic;

/// The parts of a request head that outlive the borrow of the read buffer.
pub(super) struct Plan {
    pub(super) head_len: usize,
    pub(super) framing: BodyFraming,
    pub(super) keep_alive: bool,
    pub(super) is_head: bool,
    /// The client asked to switch protocols; a 101 then turns the connection into a tunnel.
    pub(super) upgrade: bool,
    /// HTTP/1.1 client (a 1.0 client gets no interim responses).
    pub(super) http11: bool,
    /// Safe to send twice (RFC 9110 §9.2.2).
    pub(super) idempotent: bool,
    pub(super) expects_continue: bool,
    pub(super) action: Action,
    /// The route state the request was routed with (kept across a reload) and its rule.
    pub(super) routes: Rc<Installed>,
    pub(super) rule: Option<RuleRef>,
    /// Inbound: the rule of the served service whose `per_source` rate limit applies, keyed on
    /// the caller's identity.
    pub(super) inbound_limit: Option<RuleRef>,
    /// The service the request is for: the destination's outbound, the served one inbound.
    pub(super) service: Option<u32>,
    /// Fault injection drew a delay for this request.
    pub(super) delay: Option<Duration>,
    /// The group and endpoint the balancer picked (outbound forwards only).
    pub(super) pick: Option<Pick>,
    /// A hash-key cookie to set on the response so the client sticks to its endpoint.
    pub(super) cookie: Option<NewCookie>,
    /// The upstream is called with HTTP/2: inbound, the application's port says `http2` or
    /// `grpc`; outbound, see [`crate::routing::RouteState::service_speaks_h2`].
    pub(super) h2_upstream: bool,
    /// The request arrived as an HTTP/2 stream and goes as one: its body streams on its own
    /// while the response comes back (full duplex), so it is not read ahead.
    pub(super) duplex: bool,
}

/// What the request path does after routing.
pub(super) enum Action {
    /// Forward to this endpoint (of this endpoint group, for outbound requests); the head to
    /// send is in `request_out`.
    Forward(SocketAddr, Option<usize>),
    /// Answer locally.
    Reply(LocalReply, String),
    /// Answer with a redirect of this status; the Location is in `request_out`.
    Redirect(u16),
    /// Close the connection: plaintext to a strict mTLS port (counted).
    Refuse,
}

/// What routing reads of a parsed head.
pub(super) fn request_view<'r, 'h>(
    head: &'r crate::http1::RequestHead<'_, 'h>,
) -> RequestView<'r, 'h> {
    RequestView {
        host: head.host,
        port: head.port,
        path: head.path,
        method: head.method,
        query: head.query,
        headers: head.headers,
    }
}

/// Verifies an inbound request's JWT through the core's cache, counting the outcome.
pub(super) fn verify_jwt(
    core: &Core,
    verifier: &crate::jwt::Verifier,
    token: &str,
) -> Result<Rc<JwtFacts>, crate::jwt::Rejection> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verified = core
        .security
        .jwt_tokens
        .borrow_mut()
        .verify(verifier, token, now);
    match &verified {
        Ok(_) => core.security.count_authn(|c| c.jwt_verified += 1),
        Err(_) => core.security.count_authn(|c| c.jwt_rejected += 1),
    }
    verified
}

/// Decides an inbound request by the workload's policies and, if allowed, writes the head
/// forwarded to the application at `app`: without the caller's own client-certificate header
/// (and, `strip_bearer`, the verified Authorization header), with meshd's.
pub(super) fn authorize_inbound(
    core: &Core,
    routes: &RouteState,
    request: &InboundRequest<'_, '_, '_>,
    app: SocketAddr,
    strip_bearer: bool,
    out: &mut Vec<u8>,
) -> Action {
    if let Err(detail) = crate::authz::check(&routes.authorization, request) {
        return Action::Reply(LocalReply::Forbidden, detail);
    }
    let edits = RequestEdits {
        path: None,
        authority: None,
        headers: if strip_bearer {
            &core.security.inbound_edits_bearer
        } else {
            &core.security.inbound_edits
        },
    };
    request.head.write_edited(out, &edits);
    if let Some(caller) = request.principal {
        write_client_cert(out, core, caller);
    }
    Action::Forward(app, None)
}

/// Routes an outbound request by its Host, or, when that names no service and capture
/// redirected the connection, by the address it was sent to.
fn route_outbound<'r>(
    routes: &'r RouteState,
    head: &crate::http1::RequestHead<'_, '_>,
    original_dst: Option<SocketAddr>,
) -> Result<Decision<'r>, RouteError> {
    let draw = || fastrand::u32(..100);
    let view = request_view(head);
    match (routes.route(&view, draw), original_dst) {
        (Err(RouteError::UnknownHost), Some(original)) => {
            routes.route_address(original, &view, draw)
        }
        (decided, _) => decided,
    }
}

/// The inbound port serving a request: by the port capture sent it to, whatever its Host says;
/// else by the Host's port.
fn inbound_target(
    routes: &RouteState,
    original_dst: Option<SocketAddr>,
    host_port: Option<u16>,
) -> Option<(u16, SocketAddr, spec::TlsMode)> {
    match original_dst {
        Some(original) => Some(routes.captured_inbound_target(original)),
        None => routes.inbound_target(host_port),
    }
}

/// Routes a parsed head and writes into `out` the forwarded head (or a redirect's Location).
pub(super) fn plan_request(
    head: &crate::http1::RequestHead<'_, '_>,
    arrival: Arrival,
    core: &Core,
    out: &mut Vec<u8>,
    peer: &Stream,
) -> Plan {
    let routes = core.routes.borrow().clone();
    let mut rule = None;
    let mut inbound_limit = None;
    let mut service = None;
    let mut delay = None;
    let mut pick = None;
    let mut cookie = None;
    let mut h2_upstream = false;
    let action = match arrival.direction {
        // A tunnel is not an HTTP exchange this proxy can frame; refuse it rather than
        // relaying half of it.
        _ if head.method == "CONNECT" => Action::Reply(
            LocalReply::BadRequest { status: 501 },
            "CONNECT tunnels are not supported".to_owned(),
        ),
        Direction::Outbound => match route_outbound(&routes, head, arrival.original_dst) {
            Ok(decision) => {
                rule = Some(decision.rule);
                service = match decision.destination {
                    Some(d) => Some(d.group.service),
                    None => routes.table_service(decision.rule.table),
                };
                let actions = decision.actions;
                delay = actions
                    .delay
                    .filter(|&(_, share)| chance(share))
                    .map(|(d, _)| d);
                if let Some((status, _)) = actions.abort.filter(|&(_, share)| chance(share)) {
                    let detail = format!("rule {} injected an abort", actions.name);
                    Action::Reply(LocalReply::FaultAbort { status }, detail)
                } else if let Some(redirect) = &actions.redirect {
                    let source = RedirectSource {
                        host: head.host,
                        port: head.port,
                        path: head.path,
                        query: head.query,
                    };
                    write_location(redirect, source, out);
                    Action::Redirect(redirect.status)
                } else {
                    match decision.destination {
                        None => Action::Reply(
                            LocalReply::NoHealthyUpstream,
                            format!("rule {} has no destination", actions.name),
                        ),
                        Some(d) if d.group.endpoints.is_empty() => Action::Reply(
                            LocalReply::NoHealthyUpstream,
                            format!("{} has no endpoints", d.group.name),
                        ),
                        Some(d) => {
                            let group = d.group;
                            let input = Input {
                                headers: head.headers,
                                peer: &|| peer.peer_addr().ok().map(|a| a.ip()),
                            };
                            let picked = core.upstreams.balancing.borrow_mut().pick(
                                d.group_index,
                                group,
                                &input,
                            );
                            // A connection captured on its way to one endpoint of the group
                            // (a pod's own address) goes to that endpoint.
                            let sent_to = arrival.original_dst.and_then(|original| {
                                group.endpoints.iter().position(|&e| e == original)
                            });
                            let slot = sent_to.map_or(picked.endpoint, |e| e as u32);
                            pick = Some(Pick {
                                group: d.group_index as u32,
                                endpoint: slot,
                            });
                            cookie = picked.cookie;
                            if actions.edits_request() {
                                let matched = decision.path_covered;
                                let write_path = |out: &mut Vec<u8>| {
                                    if let Some(rewrite) = &actions.path {
                                        rewrite.write(head.path, matched, out);
                                    }
                                };
                                let edits = RequestEdits {
                                    path: actions
                                        .path
                                        .as_ref()
                                        .map(|_| &write_path as &dyn Fn(&mut Vec<u8>)),
                                    authority: actions.authority.as_deref(),
                                    headers: &actions.request_headers,
                                };
                                head.write_edited(out, &edits);
                            } else {
                                head.write_forwarded(out);
                            }
                            let port = head.port.or(arrival.original_dst.map(|a| a.port()));
                            let arrived_h2 = peer.is_bridged();
                            // An upgrade (a WebSocket) stays HTTP/1.1: HTTP/2 has no Upgrade.
                            h2_upstream = !head.upgrade
                                && routes.service_speaks_h2(group.service, port, arrived_h2);
                            Action::Forward(group.endpoints[slot as usize], Some(d.group_index))
                        }
                    }
                }
            }
            // A captured connection to an address outside the mesh passes through, unless the
            // workload allows only the mesh's services.
            Err(RouteError::UnknownHost) => match arrival.original_dst {
                Some(original) if routes.outbound_traffic == OutboundTraffic::RegistryOnly => {
                    Action::Reply(
                        LocalReply::OutsideMesh,
                        format!(
                            "{original} is no service's, and outbound traffic is registry_only"
                        ),
                    )
                }
                Some(original) => {
                    head.write_forwarded(out);
                    Action::Forward(original, None)
                }
                None => Action::Reply(
                    LocalReply::NoRoute,
                    format!("no service for host {:?}", head.host),
                ),
            },
            Err(RouteError::NoRuleMatched) => Action::Reply(
                LocalReply::NoRoute,
                format!(
                    "no rule for host {:?} matched path {:?}",
                    head.host, head.path
                ),
            ),
        },
        Direction::Inbound => match inbound_target(&routes, arrival.original_dst, head.port) {
            // A listener shared with permissive ports let this plaintext request in.
            Some((_, _, spec::TlsMode::Strict)) if !peer.is_tls() => Action::Refuse,
            Some((port, _, _)) if routes.inbound_port_is_tcp(port) => Action::Reply(
                LocalReply::NoRoute,
                format!("inbound port {port} is declared tcp: it relays TCP, not HTTP requests"),
            ),
            Some((port, addr, _)) => {
                service = routes.served_service(port);
                h2_upstream = !head.upgrade && routes.inbound_speaks_h2(port);
                let found = if routes.jwt.is_empty() {
                    Ok(None)
                } else {
                    crate::jwt::token(head)
                };
                let verified = match found {
                    Ok(Some(bearer)) => verify_jwt(core, &routes.jwt, bearer.token)
                        .map(|facts| Some((bearer.in_header, facts))),
                    Ok(None) => Ok(None),
                    Err(several) => {
                        core.security.count_authn(|c| c.jwt_rejected += 1);
                        Err(several)
                    }
                };
                match verified {
                    Err(rejection) => {
                        Action::Reply(LocalReply::Unauthorized, rejection.to_string())
                    }
                    Ok(verified) => {
                        let stripped = verified.as_ref().is_some_and(|(in_header, _)| *in_header);
                        let jwt = verified.map(|(_, facts)| facts);
                        let request = InboundRequest {
                            head,
                            port: Some(port),
                            principal: peer.peer_identity(),
                            peer,
                            jwt: jwt.as_deref(),
                        };
                        let action =
                            authorize_inbound(core, &routes, &request, addr, stripped, out);
                        if matches!(action, Action::Forward(..)) {
                            inbound_limit = routes.served_limited_rule(&request_view(head));
                        }
                        action
                    }
                }
            }
            None => Action::Reply(
                LocalReply::NoRoute,
                "this workload declares no inbound port".to_owned(),
            ),
        },
    };
    Plan {
        head_len: head.len,
        framing: head.framing,
        keep_alive: head.keep_alive,
        is_head: head.method == "HEAD",
        upgrade: head.upgrade,
        http11: head.minor_version == 1,
        idempotent: spec::http::is_idempotent(head.method),
        expects_continue: head.expects_continue,
        action,
        routes,
        rule,
        inbound_limit,
        service,
        delay,
        pick,
        cookie,
        h2_upstream,
        duplex: h2_upstream && peer.is_bridged(),
    }
}

/// Adds `x-forwarded-client-cert: By=<this workload>;URI=<caller>` to the forwarded head in
/// `out`, as Envoy does for a verified mTLS caller.
pub(super) fn write_client_cert(out: &mut Vec<u8>, core: &Core, caller: &str) {
    let tls = core.security.tls.borrow();
    let Some(own) = tls.as_deref().map(|t| t.spiffe_id()) else {
        return;
    };
    out.truncate(out.len() - 2);
    for part in [FORWARDED_CLIENT_CERT, ": By=", own, ";URI="] {
        out.extend_from_slice(part.as_bytes());
    }
    // A SPIFFE ID has no `;`, `,` or `"`; one that does (from another CA in the bundle) is
    // quoted, as Envoy quotes such values.
    if caller.contains([';', ',', '"']) {
        out.push(b'"');
        out.extend_from_slice(caller.replace('"', "\\\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(caller.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}
