//! `meshc explain`: which rule and destinations a snapshot picks for one request, evaluated the
//! way `meshd` routes it (`dataplane/src/routing.rs`): the host without its port, looked up
//! case-insensitively in the snapshot's `hosts` table (only the workload's outbound services
//! when `--workload` names the caller); rules in order, the first match wins, each decided by
//! [`spec::matching`], the same code meshd runs. Then the matched rule's actions, and the
//! authorization decision of the workload serving the destination.

mod authz;

use std::convert::Infallible;
use std::fmt::Write as _;

use regex::Regex;
use serde_json::{json, Value};
use spec::matching::{Conditions, Pattern};
use spec::WorkloadLookupError;
use spec::{
    FaultInjection, HeaderEdits, HeaderOps, RateLimit, Redirect, RetryPolicy, Rewrite, RouteRule,
    RouteTable, Snapshot, SourceLocation,
};

pub use authz::{Decision, Verdict};

/// The parts of a request that routing looks at, parsed from `METHOD URL` and `-H` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method as given, e.g. `GET`.
    pub method: String,
    /// Host from the URL, without port, as given (lookup lower-cases it like `meshd`).
    pub host: String,
    /// Port from the URL, if given (routing ignores it; authorization reads it).
    pub port: Option<u16>,
    /// Path without query or fragment; `/` when the URL has none.
    pub path: String,
    /// The query string as written (without `?`), if the URL has one.
    pub query: Option<String>,
    /// Headers as `(name, value)`, value trimmed of surrounding whitespace.
    pub headers: Vec<(String, String)>,
}

/// A request line or header that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not two words.
    #[error("request {0:?} is not `METHOD URL`, e.g. 'GET http://reviews/api'")]
    Line(String),
    /// Not an `http://` URL with a host.
    #[error("url {0:?} is not http://HOST[:PORT][/PATH][?QUERY]")]
    Url(String),
    /// The port is not a number in 0..=65535.
    #[error("url {0:?} has an invalid port")]
    Port(String),
    /// A `-H` value without a colon or with an empty name.
    #[error("header {0:?} is not `name: value`")]
    Header(String),
}

impl Request {
    /// Parses `METHOD URL` and `name: value` header lines.
    pub fn parse(line: &str, headers: &[String]) -> Result<Self, RequestError> {
        let mut words = line.split_whitespace();
        let (Some(method), Some(url), None) = (words.next(), words.next(), words.next()) else {
            return Err(RequestError::Line(line.to_owned()));
        };
        let rest = match url.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &url[7..],
            _ => return Err(RequestError::Url(url.to_owned())),
        };
        // A client never sends the fragment; meshd routes on the path before the query.
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (path, query) = match target.split_once('?') {
            Some(("", query)) => ("/", Some(query)),
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let (host, port) = split_host_port(authority, url)?;
        if host.is_empty() {
            return Err(RequestError::Url(url.to_owned()));
        }
        let headers = headers
            .iter()
            .map(|h| match h.split_once(':') {
                Some((name, value)) if !name.trim().is_empty() => {
                    Ok((name.trim().to_owned(), value.trim().to_owned()))
                }
                _ => Err(RequestError::Header(h.clone())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            method: method.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers,
        })
    }

    /// Whether the method is idempotent (RFC 9110), hence retried by default.
    fn is_idempotent(&self) -> bool {
        spec::http::is_idempotent(&self.method)
    }
}

/// Splits `host[:port]` as `meshd` does (`spec::host::split_authority`), but refuses what
/// meshd would take whole as an unknown host: a port that is not a number.
fn split_host_port<'a>(
    authority: &'a str,
    url: &str,
) -> Result<(&'a str, Option<u16>), RequestError> {
    let (host, port) = spec::host::split_authority(authority);
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if port.is_none() && host.contains(':') && !bracketed {
        return Err(RequestError::Port(url.to_owned()));
    }
    Ok((host, port))
}

/// One destination of the matched rule, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Service name.
    pub service: String,
    /// Subset name; `None` for the whole service.
    pub subset: Option<String>,
    /// Percentage of matching requests.
    pub weight: u32,
}

impl Destination {
    /// `service` or `service/subset`.
    fn target(&self) -> String {
        match &self.subset {
            Some(subset) => format!("{}/{subset}", self.service),
            None => self.service.clone(),
        }
    }
}

/// The path and host the request is forwarded with after the rule's rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The rewrite as configured.
    pub rewrite: Rewrite,
    /// This request's path after the rewrite.
    pub path: String,
    /// This request's Host after the rewrite.
    pub host: String,
}

/// Where the matched rule copies a share of the requests, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorTarget {
    /// `service` or `service/subset`.
    pub target: String,
    /// Service name.
    pub service: String,
    /// Subset name; `None` for the whole service.
    pub subset: Option<String>,
    /// Share of requests mirrored, in millionths.
    pub per_million: u32,
}

/// What the matched rule does besides choosing destinations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Whole-request timeout in milliseconds; `None` is `meshd --upstream-timeout`.
    pub timeout_ms: Option<u64>,
    /// Retry policy; `None` is the sidecar default.
    pub retries: Option<RetryPolicy>,
    /// Injected faults.
    pub fault: Option<FaultInjection>,
    /// Header edits.
    pub headers: HeaderOps,
    /// The rewrite and its effect on this request.
    pub rewrite: Option<Rewritten>,
    /// The redirect and the `Location` this request gets.
    pub redirect: Option<(Redirect, String)>,
    /// Where a copy goes.
    pub mirror: Option<MirrorTarget>,
    /// The local rate limit.
    pub rate_limit: Option<RateLimit>,
}

/// What routing does with the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A rule matched.
    Routed {
        /// The service the host names.
        service: String,
        /// The matched rule's name.
        rule: String,
        /// Where the rule is written.
        source: SourceLocation,
        /// Its weighted destinations.
        destinations: Vec<Destination>,
        /// Its other actions.
        actions: Box<Actions>,
    },
    /// No visible host entry for the request's host.
    UnknownHost {
        /// The host as looked up.
        host: String,
        /// Set when the host exists but the workload may not call its service.
        hidden_service: Option<String>,
    },
    /// The host is known but no rule matched.
    NoRuleMatched {
        /// The service the host names.
        service: String,
        /// Every rule tried, in order, with its source.
        tried: Vec<(String, SourceLocation)>,
    },
}

/// The inbound authorization outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// Nothing reaches a server: no route, or the caller's sidecar answers with a redirect.
    NotEvaluated(String),
    /// No workload declares that it serves the destination services.
    NoServer(Vec<String>),
    /// The decision of each workload serving a destination.
    Evaluated(Vec<Verdict>),
}

impl Authorization {
    /// The overall decision: allow only when every serving workload allows; the deciding
    /// verdict is the first deny, else the first allow.
    fn decisive(&self) -> Option<&Verdict> {
        match self {
            Self::Evaluated(verdicts) => verdicts
                .iter()
                .find(|v| v.decision == Decision::Deny)
                .or_else(|| verdicts.first()),
            _ => None,
        }
    }
}

/// The answer to one `meshc explain` question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The request as understood.
    pub request: Request,
    /// The workload whose view was used, if any.
    pub workload: Option<String>,
    /// The caller's SPIFFE ID: `--from`, else the caller workload's own when its sidecar calls
    /// a destination over mutual TLS; `None` means no peer identity.
    pub from: Option<String>,
    /// The routing outcome.
    pub outcome: Outcome,
    /// The authorization outcome on the serving side.
    pub authz: Authorization,
    /// Things `explain` could not evaluate exactly (a regex that does not compile).
    pub notes: Vec<String>,
}

/// Evaluates `request` against `snapshot`. `workload` is the caller (only its outbound
/// services are visible) unless it serves the service the host names: then it is the callee
/// and its inbound authorization is the one evaluated.
pub fn explain(
    snapshot: &Snapshot,
    workload: Option<&str>,
    request: Request,
    from: Option<String>,
) -> Result<Explanation, WorkloadLookupError> {
    let workload_entry = workload
        .map(|query| snapshot.find_workload(query))
        .transpose()?;
    // Short host names resolve in the namespace of the workload asking.
    let namespace = workload_entry.map_or(spec::host::DEFAULT_NAMESPACE, |w| &w.namespace);
    let host_service = lookup_host(snapshot, &request.host, namespace).map(|t| t.service);
    let callee =
        workload_entry.filter(|w| host_service.is_some_and(|s| w.serves.binary_search(&s).is_ok()));
    // The callee receives requests from any caller, so every host is visible to it.
    let visible = match (workload_entry, callee) {
        (Some(w), None) => Some(w.outbound.as_slice()),
        _ => None,
    };
    let mut notes = Vec::new();
    if let Some(from) = from.as_deref().filter(|f| !f.starts_with("spiffe://")) {
        notes.push(format!(
            "--from {from:?} is not a spiffe:// ID: policies on source namespaces see none"
        ));
    }
    let (outcome, served) = route(snapshot, (visible, namespace), &request, &mut notes);
    let caller = workload_entry.filter(|_| callee.is_none());
    // Without --from, the caller presents its own identity to every destination it calls over
    // mutual TLS, as its sidecar does.
    let presented = served
        .iter()
        .flatten()
        .find_map(|&s| presented_identity(snapshot, caller, s));
    if let (None, Some(identity), Some(caller)) = (&from, &presented, caller) {
        notes.push(format!(
            "from: {identity}, the identity workload {} presents when its sidecar calls over \
             mutual TLS (--from overrides it)",
            snapshot.workload_query(caller)
        ));
    }
    let peer = Peer {
        from: from.as_deref(),
        caller,
    };
    let authz = match (&outcome, served) {
        (Outcome::Routed { actions, .. }, _) if actions.redirect.is_some() => {
            Authorization::NotEvaluated(
                "the caller's sidecar answers with a redirect; no server sees the request"
                    .to_owned(),
            )
        }
        (Outcome::Routed { .. }, Some(served)) => {
            authorize(snapshot, callee, &served, &request, peer)
        }
        _ => Authorization::NotEvaluated("no route".to_owned()),
    };
    Ok(Explanation {
        request,
        workload: workload.map(str::to_owned),
        from: from.or(presented),
        outcome,
        authz,
        notes,
    })
}

/// Who calls, as a server sees it: the `--from` identity, else the caller workload's own
/// where its sidecar calls over mutual TLS.
#[derive(Clone, Copy)]
struct Peer<'a> {
    from: Option<&'a str>,
    caller: Option<&'a spec::Workload>,
}

/// The identity the `caller`'s sidecar presents to the servers of `service`: its own, when the
/// service names the identities of its servers (then meshd calls it over mutual TLS with secure
/// naming, deciding per destination); `None` for a plaintext call.
fn presented_identity(
    snapshot: &Snapshot,
    caller: Option<&spec::Workload>,
    service: u32,
) -> Option<String> {
    let identity = caller?.identity.clone()?;
    let service = snapshot.services.get(service as usize)?;
    (!service.identities.is_empty()).then_some(identity)
}

/// Evaluates inbound authorization on the callee, or on every workload serving one of the
/// `served` services.
fn authorize(
    snapshot: &Snapshot,
    callee: Option<&spec::Workload>,
    served: &[u32],
    request: &Request,
    peer: Peer<'_>,
) -> Authorization {
    let servers: Vec<&spec::Workload> = match callee {
        Some(w) => vec![w],
        None => snapshot
            .workloads
            .iter()
            .filter(|w| served.iter().any(|s| w.serves.binary_search(s).is_ok()))
            .collect(),
    };
    if servers.is_empty() {
        return Authorization::NoServer(
            served.iter().map(|&s| service_name(snapshot, s)).collect(),
        );
    }
    // The port the caller addressed: the URL's, else the service's only port.
    let port = request.port.or_else(|| match served {
        [one] => match snapshot
            .services
            .get(*one as usize)
            .map(|s| s.ports.as_slice())
        {
            Some([port]) => Some(port.number),
            _ => None,
        },
        _ => None,
    });
    let verdicts = servers.iter().map(|server| {
        // The destination this server is one of decides whether the call is mutual TLS.
        let service = served
            .iter()
            .find(|s| server.serves.binary_search(s).is_ok());
        let presented = service.and_then(|&s| presented_identity(snapshot, peer.caller, s));
        let attrs = authz::Attributes {
            request,
            principal: peer.from.or(presented.as_deref()),
            port,
        };
        authz::evaluate(server, &snapshot.workload_query(server), attrs)
    });
    Authorization::Evaluated(verdicts.collect())
}

fn service_name(snapshot: &Snapshot, i: u32) -> String {
    snapshot
        .services
        .get(i as usize)
        .map_or_else(|| format!("#{i}"), |s| s.name.clone())
}

fn destination(snapshot: &Snapshot, service: u32, subset: Option<u32>, weight: u32) -> Destination {
    Destination {
        service: service_name(snapshot, service),
        subset: subset.map(|s| {
            snapshot
                .services
                .get(service as usize)
                .and_then(|svc| svc.subsets.get(s as usize))
                .map_or_else(|| format!("#{s}"), |sub| sub.name.clone())
        }),
        weight,
    }
}

/// The outcome, and for a routed request the services its destinations name (ascending).
fn route(
    snapshot: &Snapshot,
    (visible, namespace): (Option<&[u32]>, &str),
    request: &Request,
    notes: &mut Vec<String>,
) -> (Outcome, Option<Vec<u32>>) {
    let Some(table) = lookup_host(snapshot, &request.host, namespace) else {
        let outcome = Outcome::UnknownHost {
            host: request.host.clone(),
            hidden_service: None,
        };
        return (outcome, None);
    };
    if let Some(visible) = visible {
        if visible.binary_search(&table.service).is_err() {
            let outcome = Outcome::UnknownHost {
                host: request.host.clone(),
                hidden_service: Some(service_name(snapshot, table.service)),
            };
            return (outcome, None);
        }
    }
    let matched = table
        .rules
        .iter()
        .find_map(|rule| rule_holds(rule, request, notes).map(|covered| (rule, covered)));
    let Some((rule, path_covered)) = matched else {
        let outcome = Outcome::NoRuleMatched {
            service: service_name(snapshot, table.service),
            tried: table
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.source.clone()))
                .collect(),
        };
        return (outcome, None);
    };
    let mut served: Vec<u32> = rule.destinations.iter().map(|d| d.service).collect();
    served.sort_unstable();
    served.dedup();
    let actions = Actions {
        timeout_ms: rule.timeout_ms,
        retries: rule.retries.clone(),
        fault: rule.fault.clone(),
        headers: rule.headers.clone(),
        rewrite: rule
            .rewrite
            .as_ref()
            .map(|rw| rewritten(rw, path_covered, request, notes)),
        redirect: rule
            .redirect
            .as_ref()
            .map(|r| (r.clone(), location(r, request))),
        mirror: rule.mirror.as_ref().map(|m| {
            let d = destination(snapshot, m.service, m.subset, 0);
            MirrorTarget {
                target: d.target(),
                service: d.service,
                subset: d.subset,
                per_million: m.per_million,
            }
        }),
        rate_limit: rule.rate_limit.clone(),
    };
    let outcome = Outcome::Routed {
        service: service_name(snapshot, table.service),
        rule: rule.name.clone(),
        source: rule.source.clone(),
        destinations: rule
            .destinations
            .iter()
            .map(|d| destination(snapshot, d.service, d.subset, d.weight))
            .collect(),
        actions: Box::new(actions),
    };
    (outcome, Some(served))
}

/// The route table a caller in `namespace` reaches by `host`, as meshd looks it up: host names
/// are case-insensitive and the snapshot stores them lower-case.
fn lookup_host<'s>(snapshot: &'s Snapshot, host: &str, namespace: &str) -> Option<&'s RouteTable> {
    let table = snapshot.route_table_for_host(&host.to_ascii_lowercase(), namespace)?;
    snapshot.routes.get(table as usize)
}

/// Whether `rule` matches `request`, decided by [`spec::matching`] as meshd decides it; if so,
/// how many leading bytes of the path its conditions covered.
fn rule_holds(rule: &RouteRule, request: &Request, notes: &mut Vec<String>) -> Option<usize> {
    let compiled: Result<Vec<Conditions<Anchored>>, Infallible> = rule
        .matches
        .iter()
        .map(|m| Conditions::compile(m, |pattern, _| Ok(anchored(pattern, notes))))
        .collect();
    let Ok(alternatives) = compiled;
    spec::matching::rule_holds(&alternatives, request)
}

/// A regex of a match condition, anchored at both ends; `None` when it does not compile, and
/// then it matches nothing (meshd refuses such a snapshot).
struct Anchored(Option<regex::bytes::Regex>);

impl Pattern for Anchored {
    fn is_match(&self, value: &[u8]) -> bool {
        self.0.as_ref().is_some_and(|re| re.is_match(value))
    }
}

impl spec::matching::Request for Request {
    fn path(&self) -> &str {
        &self.path
    }

    fn method(&self) -> &str {
        &self.method
    }

    fn query(&self) -> &str {
        self.query.as_deref().unwrap_or("")
    }

    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
    }
}

/// Compiles `pattern` anchored at both ends; a pattern that does not compile leaves a note.
fn anchored(pattern: &str, notes: &mut Vec<String>) -> Anchored {
    match regex::bytes::Regex::new(&spec::matching::anchored(pattern)) {
        Ok(re) => Anchored(Some(re)),
        Err(e) => {
            let note = format!("regex {pattern:?} does not compile, treated as not matching: {e}");
            if !notes.contains(&note) {
                notes.push(note);
            }
            Anchored(None)
        }
    }
}

/// Applies `rewrite` to this request. A path prefix rewrite replaces the `covered` leading
/// bytes of the path ([`spec::matching::rule_holds`]); like meshd, a result that does not start
/// with `/` gets one.
fn rewritten(
    rewrite: &Rewrite,
    covered: usize,
    request: &Request,
    notes: &mut Vec<String>,
) -> Rewritten {
    let mut path = request.path.clone();
    // One or the other, as meshd applies them (the compilers refuse both).
    if let Some(new_prefix) = &rewrite.path_prefix {
        path = format!("{new_prefix}{}", path.get(covered..).unwrap_or_default());
    } else if let Some(re) = &rewrite.path_regex {
        // Unanchored: every match in the path is replaced.
        match Regex::new(&re.pattern) {
            Ok(compiled) => {
                path = compiled
                    .replace_all(&path, re.substitution.as_str())
                    .into_owned()
            }
            Err(e) => notes.push(format!(
                "rewrite regex {:?} does not compile, path left as is: {e}",
                re.pattern
            )),
        }
    }
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    Rewritten {
        rewrite: rewrite.clone(),
        path,
        host: rewrite
            .authority
            .clone()
            .unwrap_or_else(|| request.host.clone()),
    }
}

/// The `Location` a redirect gives this request, built as meshd builds it.
fn location(r: &Redirect, request: &Request) -> String {
    let source = spec::http::RedirectSource {
        host: &request.host,
        port: request.port,
        path: &request.path,
        query: request.query.as_deref().unwrap_or(""),
    };
    let mut out = Vec::new();
    spec::http::write_location(r, source, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn file_line(source: &SourceLocation) -> String {
    format!("{}:{}", source.file, source.line)
}

/// A share in millionths as a percentage, e.g. `12.5%`.
pub(crate) fn percent(per_million: u32) -> String {
    format!("{}%", f64::from(per_million) / 10_000.0)
}

/// The retry conditions, by their Envoy names.
pub(crate) fn retry_on(r: &RetryPolicy) -> Vec<String> {
    let on = &r.retry_on;
    let mut out: Vec<String> = [
        (on.server_error, "5xx"),
        (on.gateway_error, "gateway-error"),
        (on.reset, "reset"),
        (on.connect_failure, "connect-failure"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| (*name).to_owned())
    .collect();
    if !on.status_codes.is_empty() {
        let codes: Vec<String> = on.status_codes.iter().map(u16::to_string).collect();
        out.push(format!("retriable-status-codes {}", codes.join(" ")));
    }
    for (name, status) in spec::GRPC_RETRY_ON {
        if on.grpc_statuses.contains(&status) {
            out.push(name.to_owned());
        }
    }
    out
}

/// One line describing a retry policy.
pub(crate) fn describe_retries(r: &RetryPolicy) -> String {
    if r.attempts == 0 {
        return "none (0 attempts)".to_owned();
    }
    let mut out = format!(
        "{} attempt{}",
        r.attempts,
        if r.attempts == 1 { "" } else { "s" }
    );
    if let Some(per_try) = r.per_try_timeout_ms {
        let _ = write!(out, ", {per_try}ms per try");
    }
    let on = retry_on(r);
    let on = if on.is_empty() {
        "(no condition)".to_owned()
    } else {
        on.join(", ")
    };
    let _ = write!(
        out,
        ", on {on}, backoff {}ms..{}ms, {}",
        r.backoff_base_ms,
        r.backoff_max_ms,
        if r.non_idempotent {
            "every method"
        } else {
            "idempotent methods only"
        }
    );
    out
}

/// One line describing injected faults.
pub(crate) fn describe_fault(f: &FaultInjection) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &f.delay {
        parts.push(format!(
            "delay {}ms for {} of requests",
            d.delay_ms,
            percent(d.per_million)
        ));
    }
    if let Some(a) = &f.abort {
        parts.push(format!(
            "abort with {} for {} of requests",
            a.status,
            percent(a.per_million)
        ));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Header edits in application order, e.g. `remove a; set b: 1; add c: 2`.
pub(crate) fn describe_edits(e: &HeaderEdits) -> String {
    let mut parts: Vec<String> = e.remove.iter().map(|n| format!("remove {n}")).collect();
    parts.extend(e.set.iter().map(|h| format!("set {}: {}", h.name, h.value)));
    parts.extend(e.add.iter().map(|h| format!("add {}: {}", h.name, h.value)));
    parts.join("; ")
}

/// One line describing a rate limit.
pub(crate) fn describe_rate_limit(r: &RateLimit) -> String {
    format!(
        "{} request{} per {}ms, burst {}, {}",
        r.tokens_per_fill,
        if r.tokens_per_fill == 1 { "" } else { "s" },
        r.fill_interval_ms,
        r.max_tokens,
        if r.per_source {
            "one bucket per caller"
        } else {
            "one bucket for the rule"
        }
    )
}

/// The sidecar's retry behaviour when a rule has no retry policy.
const DEFAULT_RETRIES: &str =
    "sidecar default (1 retry of idempotent requests that failed before any response byte)";

impl Explanation {
    /// Whether a rule matched.
    pub fn is_routed(&self) -> bool {
        matches!(self.outcome, Outcome::Routed { .. })
    }

    /// Why there is no route, or `None` when a rule matched.
    pub fn error(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Routed { .. } => None,
            Outcome::UnknownHost {
                host,
                hidden_service: None,
            } => Some(format!("unknown host `{host}`: no service has this host name")),
            Outcome::UnknownHost {
                host,
                hidden_service: Some(service),
            } => Some(format!(
                "unknown host `{host}`: service `{service}` is not in the outbound list of workload `{}`",
                self.workload.as_deref().unwrap_or_default()
            )),
            Outcome::NoRuleMatched { service, .. } => Some(format!(
                "no rule of the route for service `{service}` matched {} {}",
                self.request.method, self.request.path
            )),
        }
    }

    /// The plain-text report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = &self.request;
        let _ = write!(
            out,
            "request: {}, host {}, path {}",
            r.method, r.host, r.path
        );
        if let Some(workload) = &self.workload {
            let _ = write!(out, ", as workload {workload}");
        }
        out.push('\n');
        match &self.from {
            Some(from) => {
                let _ = writeln!(out, "from: {from}");
            }
            None => out.push_str("from: (no peer identity)\n"),
        }
        match &self.outcome {
            Outcome::Routed {
                service,
                rule,
                source,
                destinations,
                actions,
            } => {
                let _ = writeln!(
                    out,
                    "route: service {service}, rule {rule} ({})",
                    file_line(source)
                );
                render_actions(&mut out, destinations, actions, r);
            }
            Outcome::UnknownHost { .. } | Outcome::NoRuleMatched { .. } => {
                let _ = writeln!(out, "no route: {}", self.error().unwrap_or_default());
                if let Outcome::NoRuleMatched { tried, .. } = &self.outcome {
                    let _ = writeln!(out, "rules tried:");
                    for (name, source) in tried {
                        let _ = writeln!(out, "  {name} ({})", file_line(source));
                    }
                }
            }
        }
        self.render_authz(&mut out);
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    fn render_authz(&self, out: &mut String) {
        match &self.authz {
            Authorization::NotEvaluated(why) => {
                let _ = writeln!(out, "authorization: not evaluated ({why})");
            }
            Authorization::NoServer(services) => {
                let _ = writeln!(
                    out,
                    "authorization: allow (no workload declares that it serves {}, so no \
                     inbound policy applies)",
                    services.join(", ")
                );
            }
            Authorization::Evaluated(verdicts) => {
                let decisive = self.authz.decisive();
                if let Some(v) = decisive {
                    let policy = v.policy.as_ref().map_or_else(
                        || "no policy decided".to_owned(),
                        |(name, source)| format!("policy {name}, {}", file_line(source)),
                    );
                    let _ = writeln!(out, "authorization: {} ({policy})", v.decision.as_str());
                }
                for v in verdicts {
                    let _ = writeln!(
                        out,
                        "  on workload {}: {}, {}",
                        v.workload,
                        v.decision.as_str(),
                        v.reason
                    );
                    if !v.audited_by.is_empty() {
                        let _ = writeln!(out, "    audited by: {}", v.audited_by.join(", "));
                    }
                    for note in &v.notes {
                        let _ = writeln!(out, "    note: {note}");
                    }
                }
            }
        }
    }

    /// The `--json` document. Always: `route` (`rule`, `source`, `service`), `destinations`,
    /// `timeout_ms`, `retries`, `fault`, `headers`, `rewrite`, `redirect`, `mirror`,
    /// `rate_limit`, `authz`, `from`, `notes`; plus `error` (and `rules_tried`) when there is
    /// no route.
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "route": null,
            "destinations": [],
            "timeout_ms": null,
            "timeout_default": null,
            "retries": null,
            "fault": null,
            "headers": null,
            "rewrite": null,
            "redirect": null,
            "mirror": null,
            "rate_limit": null,
            "authz": self.authz_json(),
            "from": self.from,
            "notes": self.notes,
        });
        if let Outcome::Routed {
            service,
            rule,
            source,
            destinations,
            actions,
        } = &self.outcome
        {
            let a = actions.as_ref();
            doc["route"] = json!({ "rule": rule, "source": file_line(source), "service": service });
            doc["destinations"] = destinations
                .iter()
                .map(|d| json!({ "service": d.service, "subset": d.subset, "weight": d.weight }))
                .collect();
            doc["timeout_ms"] = json!(a.timeout_ms);
            doc["timeout_default"] = json!(a.timeout_ms.is_none());
            doc["retries"] = match &a.retries {
                Some(r) => json!({
                    "default": false,
                    "attempts": r.attempts,
                    "per_try_timeout_ms": r.per_try_timeout_ms,
                    "retry_on": retry_on(r),
                    "backoff_base_ms": r.backoff_base_ms,
                    "backoff_max_ms": r.backoff_max_ms,
                    "non_idempotent": r.non_idempotent,
                    "applies": r.attempts > 0 && (r.non_idempotent || self.request.is_idempotent()),
                }),
                None => json!({
                    "default": true,
                    "attempts": 1,
                    "description": DEFAULT_RETRIES,
                    "applies": self.request.is_idempotent(),
                }),
            };
            doc["fault"] = a.fault.as_ref().map_or(Value::Null, |f| {
                json!({
                    "delay": f.delay.as_ref().map(|d| json!({
                        "delay_ms": d.delay_ms,
                        "per_million": d.per_million,
                        "percent": f64::from(d.per_million) / 10_000.0,
                    })),
                    "abort": f.abort.as_ref().map(|x| json!({
                        "status": x.status,
                        "per_million": x.per_million,
                        "percent": f64::from(x.per_million) / 10_000.0,
                    })),
                })
            });
            doc["headers"] = serde_json::to_value(&a.headers).unwrap_or(Value::Null);
            doc["rewrite"] = a.rewrite.as_ref().map_or(Value::Null, |rw| {
                json!({
                    "path_prefix": rw.rewrite.path_prefix,
                    "path_regex": rw.rewrite.path_regex.as_ref().map(|r| json!({
                        "pattern": r.pattern,
                        "substitution": r.substitution,
                    })),
                    "authority": rw.rewrite.authority,
                    "path": rw.path,
                    "host": rw.host,
                })
            });
            doc["redirect"] = a.redirect.as_ref().map_or(
                Value::Null,
                |(r, location)| json!({ "status": r.status, "location": location }),
            );
            doc["mirror"] = a.mirror.as_ref().map_or(Value::Null, |m| {
                json!({
                    "service": m.service,
                    "subset": m.subset,
                    "per_million": m.per_million,
                    "percent": f64::from(m.per_million) / 10_000.0,
                })
            });
            doc["rate_limit"] = a.rate_limit.as_ref().map_or(Value::Null, |r| {
                json!({
                    "tokens_per_fill": r.tokens_per_fill,
                    "fill_interval_ms": r.fill_interval_ms,
                    "max_tokens": r.max_tokens,
                    "per_source": r.per_source,
                })
            });
        }
        if let Some(error) = self.error() {
            doc["error"] = json!(error);
        }
        if let Outcome::NoRuleMatched { tried, .. } = &self.outcome {
            doc["rules_tried"] = tried
                .iter()
                .map(|(name, source)| json!({ "rule": name, "source": file_line(source) }))
                .collect();
        }
        doc
    }

    /// `authz`: `decision` (`allow`, `deny`, or null when not evaluated), `policy` (name or
    /// null), `policy_source`, `reason`, `workloads` (each serving workload's verdict).
    fn authz_json(&self) -> Value {
        let verdict = |v: &Verdict| {
            json!({
                "workload": v.workload,
                "decision": v.decision.as_str(),
                "policy": v.policy.as_ref().map(|(name, _)| name),
                "policy_source": v.policy.as_ref().map(|(_, s)| file_line(s)),
                "reason": v.reason,
                "allow_policies": v.allow_policies,
                "audited_by": v.audited_by,
                "notes": v.notes,
            })
        };
        match &self.authz {
            Authorization::NotEvaluated(why) => json!({
                "decision": null, "policy": null, "policy_source": null,
                "reason": format!("not evaluated: {why}"), "workloads": [],
            }),
            Authorization::NoServer(services) => json!({
                "decision": "allow", "policy": null, "policy_source": null,
                "reason": format!("no workload declares that it serves {}", services.join(", ")),
                "workloads": [],
            }),
            Authorization::Evaluated(verdicts) => {
                let mut doc = self.authz.decisive().map_or(Value::Null, verdict);
                doc["workloads"] = verdicts.iter().map(verdict).collect();
                doc
            }
        }
    }
}

fn render_actions(out: &mut String, destinations: &[Destination], a: &Actions, r: &Request) {
    if a.redirect.is_none() || !destinations.is_empty() {
        let _ = writeln!(out, "destinations:");
        for d in destinations {
            let _ = writeln!(out, "  {} {}%", d.target(), d.weight);
        }
    }
    match a.timeout_ms {
        Some(ms) => {
            let _ = writeln!(out, "timeout: {ms}ms (rule)");
        }
        None => out.push_str("timeout: sidecar default (--upstream-timeout, 15s)\n"),
    }
    match &a.retries {
        Some(policy) => {
            let _ = write!(out, "retries: {}", describe_retries(policy));
            if policy.attempts > 0 && !policy.non_idempotent && !r.is_idempotent() {
                let _ = write!(out, " ({} is not idempotent: not retried)", r.method);
            }
            out.push('\n');
        }
        None => {
            let _ = writeln!(out, "retries: {DEFAULT_RETRIES}");
        }
    }
    let fault = a
        .fault
        .as_ref()
        .map_or_else(|| "none".to_owned(), describe_fault);
    let _ = writeln!(out, "fault injection: {fault}");
    for (direction, edits) in [
        ("request", &a.headers.request),
        ("response", &a.headers.response),
    ] {
        let text = describe_edits(edits);
        if !text.is_empty() {
            let _ = writeln!(out, "{direction} headers: {text}");
        }
    }
    if let Some(rw) = &a.rewrite {
        let _ = write!(out, "rewrite: path {}", rw.path);
        if rw.rewrite.authority.is_some() {
            let _ = write!(out, ", host {}", rw.host);
        }
        out.push('\n');
    }
    if let Some((redirect, location)) = &a.redirect {
        let _ = writeln!(out, "redirect: {} to {location}", redirect.status);
    }
    if let Some(m) = &a.mirror {
        let _ = writeln!(
            out,
            "mirror: {} of requests to {}",
            percent(m.per_million),
            m.target
        );
    }
    if let Some(limit) = &a.rate_limit {
        let _ = writeln!(out, "rate limit: {}", describe_rate_limit(limit));
    }
}

#[cfg(test)]
mod tests;
