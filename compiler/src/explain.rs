//! `meshc explain`: which rule and destinations a snapshot picks for one request, evaluated the
//! way `meshd` routes it (`dataplane/src/routing.rs`): the host without its port, looked up
//! case-insensitively in the snapshot's `hosts` table (only the workload's outbound services
//! with `--workload`); rules in order, the first match wins; a rule without matches matches
//! every request; `match` alternatives are ORed and their conditions ANDed; paths compared
//! without the query; header names case-insensitive, values byte for byte.

use std::fmt::Write as _;

use serde_json::{json, Value};
use spec::{PathMatch, RequestMatch, RouteTable, Snapshot, SourceLocation, ValueMatch};

/// The parts of a request that routing looks at, parsed from `METHOD URL` and `-H` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method as given, e.g. `GET`.
    pub method: String,
    /// Host from the URL, without port, as given (lookup lower-cases it like `meshd`).
    pub host: String,
    /// Port from the URL, if given (routing ignores it).
    pub port: Option<u16>,
    /// Path without query or fragment; `/` when the URL has none.
    pub path: String,
    /// Headers as `(name, value)`, value trimmed of surrounding whitespace.
    pub headers: Vec<(String, String)>,
    /// Query parameters as `(name, value)`, percent-decoded, in URL order.
    pub query: Vec<(String, String)>,
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
            Some(("", query)) => ("/", query),
            Some((path, query)) => (path, query),
            None => (target, ""),
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
            headers,
            query: query_params(query),
        })
    }
}

/// `a=1&b&c=%20` as `(name, value)` pairs, percent-decoded (a parameter without `=` has an
/// empty value; `+` stays `+`).
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// Decodes `%XX` escapes; a malformed escape is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `host[:port]` (IPv6 in brackets) as `meshd` does.
fn split_host_port<'a>(
    authority: &'a str,
    url: &str,
) -> Result<(&'a str, Option<u16>), RequestError> {
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if host.starts_with('[') && !host.ends_with(']') {
                // `[::1]` without a port: the colon is inside the brackets.
                return Ok((authority, None));
            }
            match port.parse() {
                Ok(p) => Ok((host, Some(p))),
                Err(_) => Err(RequestError::Port(url.to_owned())),
            }
        }
        _ => Ok((authority, None)),
    }
}

/// The `--workload` names no workload of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown workload `{name}`; the snapshot has: {known}")]
pub struct UnknownWorkload {
    /// The name asked for.
    pub name: String,
    /// The workloads the snapshot declares, comma-separated.
    pub known: String,
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
        /// The rule's timeout, retries, fault injection and redirect.
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

/// The actions of the matched rule that decide how the request is answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Whole-request timeout in milliseconds; `None` is meshd's `--upstream-timeout`.
    pub timeout_ms: Option<u64>,
    /// Retry policy; `None` is meshd's default.
    pub retries: Option<spec::RetryPolicy>,
    /// Injected delay and abort.
    pub fault: Option<spec::FaultInjection>,
    /// The redirect answered instead of forwarding.
    pub redirect: Option<spec::Redirect>,
}

/// `per_million` as a percentage, e.g. `10%`, `0.5%`.
fn percent(per_million: u32) -> String {
    let whole = per_million / 10_000;
    let fraction = per_million % 10_000;
    if fraction == 0 {
        format!("{whole}%")
    } else {
        let digits = format!("{fraction:04}");
        format!("{whole}.{}%", digits.trim_end_matches('0'))
    }
}

impl Actions {
    fn retries_text(&self) -> String {
        let Some(r) = &self.retries else {
            return "none".to_owned();
        };
        let mut on = Vec::new();
        for (set, name) in [
            (r.retry_on.server_error, "5xx"),
            (r.retry_on.gateway_error, "gateway-error"),
            (r.retry_on.reset, "reset"),
            (r.retry_on.connect_failure, "connect-failure"),
        ] {
            if set {
                on.push(name.to_owned());
            }
        }
        on.extend(r.retry_on.status_codes.iter().map(u16::to_string));
        let mut text = format!("{} attempts on {}", r.attempts, on.join(", "));
        if let Some(per_try) = r.per_try_timeout_ms {
            let _ = write!(text, ", {per_try}ms per try");
        }
        let _ = write!(
            text,
            ", backoff {}ms to {}ms",
            r.backoff_base_ms, r.backoff_max_ms
        );
        if r.non_idempotent {
            text.push_str(", non-idempotent requests too");
        }
        text
    }

    fn fault_text(&self) -> String {
        let Some(f) = &self.fault else {
            return "none".to_owned();
        };
        let mut parts = Vec::new();
        if let Some(d) = &f.delay {
            parts.push(format!(
                "delay {}ms for {}",
                d.delay_ms,
                percent(d.per_million)
            ));
        }
        if let Some(a) = &f.abort {
            parts.push(format!("abort {} for {}", a.status, percent(a.per_million)));
        }
        parts.join(", ")
    }
}

/// The answer to one `meshc explain` question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The request as understood.
    pub request: Request,
    /// The workload whose view was used, if any.
    pub workload: Option<String>,
    /// The caller's SPIFFE ID from `--from`, echoed (no authorization policy uses it yet).
    pub from: Option<String>,
    /// The routing outcome.
    pub outcome: Outcome,
}

/// Evaluates `request` against `snapshot` as `meshd --workload WORKLOAD` would route it.
pub fn explain(
    snapshot: &Snapshot,
    workload: Option<&str>,
    request: Request,
    from: Option<String>,
) -> Result<Explanation, UnknownWorkload> {
    let visible: Option<&[u32]> = match workload {
        None => None,
        Some(name) => match snapshot.workload(name) {
            Some(w) => Some(&w.outbound),
            None => {
                let known: Vec<&str> = snapshot.workloads.iter().map(|w| w.name.as_str()).collect();
                return Err(UnknownWorkload {
                    name: name.to_owned(),
                    known: if known.is_empty() {
                        "(no workloads)".to_owned()
                    } else {
                        known.join(", ")
                    },
                });
            }
        },
    };
    let outcome = route(snapshot, visible, &request);
    Ok(Explanation {
        request,
        workload: workload.map(str::to_owned),
        from,
        outcome,
    })
}

fn route(snapshot: &Snapshot, visible: Option<&[u32]>, request: &Request) -> Outcome {
    let service_name = |i: u32| {
        snapshot
            .services
            .get(i as usize)
            .map_or_else(|| format!("#{i}"), |s| s.name.clone())
    };
    let Some(table) = lookup_host(snapshot, &request.host) else {
        return Outcome::UnknownHost {
            host: request.host.clone(),
            hidden_service: None,
        };
    };
    if let Some(visible) = visible {
        if visible.binary_search(&table.service).is_err() {
            return Outcome::UnknownHost {
                host: request.host.clone(),
                hidden_service: Some(service_name(table.service)),
            };
        }
    }
    let matched = table
        .rules
        .iter()
        .find(|rule| rule.matches.is_empty() || rule.matches.iter().any(|m| matches(m, request)));
    match matched {
        None => Outcome::NoRuleMatched {
            service: service_name(table.service),
            tried: table
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.source.clone()))
                .collect(),
        },
        Some(rule) => Outcome::Routed {
            service: service_name(table.service),
            rule: rule.name.clone(),
            source: rule.source.clone(),
            destinations: rule
                .destinations
                .iter()
                .map(|d| {
                    let service = snapshot.services.get(d.service as usize);
                    Destination {
                        service: service_name(d.service),
                        subset: d.subset.map(|s| {
                            service
                                .and_then(|svc| svc.subsets.get(s as usize))
                                .map_or_else(|| format!("#{s}"), |sub| sub.name.clone())
                        }),
                        weight: d.weight,
                    }
                })
                .collect(),
            actions: Box::new(Actions {
                timeout_ms: rule.timeout_ms,
                retries: rule.retries.clone(),
                fault: rule.fault.clone(),
                redirect: rule.redirect.clone(),
            }),
        },
    }
}

/// The route table for `host`: exact first, then lower-cased (the snapshot stores lower case).
fn lookup_host<'s>(snapshot: &'s Snapshot, host: &str) -> Option<&'s RouteTable> {
    let find = |host: &str| {
        let i = snapshot
            .hosts
            .binary_search_by(|h| h.host.as_str().cmp(host))
            .ok()?;
        snapshot.routes.get(snapshot.hosts[i].route_table as usize)
    };
    find(host).or_else(|| {
        host.bytes()
            .any(|b| b.is_ascii_uppercase())
            .then(|| find(&host.to_ascii_lowercase()))
            .flatten()
    })
}

fn matches(m: &RequestMatch, request: &Request) -> bool {
    let path_ok = match &m.path {
        None => true,
        Some(PathMatch::Exact(p)) => request.path == *p,
        Some(PathMatch::Prefix(p)) => request.path.starts_with(p.as_str()),
        Some(PathMatch::Regex(r)) => full_match(r, &request.path),
    };
    let method_ok = m
        .method
        .as_ref()
        .is_none_or(|want| value_matches(want, std::iter::once(request.method.as_str())));
    let headers_ok = m.headers.iter().all(|want| {
        let values = request
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(&want.name))
            .map(|(_, value)| value.as_str());
        value_matches(&want.value, values)
    });
    let query_ok = m.query.iter().all(|want| {
        let values = request
            .query
            .iter()
            .filter(|(name, _)| *name == want.name)
            .map(|(_, value)| value.as_str());
        value_matches(&want.value, values)
    });
    path_ok && method_ok && headers_ok && query_ok
}

/// Whether the values a request carries for one name (one per header line or query parameter)
/// satisfy a condition: `Absent` when there is none, the others when some value does.
fn value_matches<'v>(want: &ValueMatch, mut values: impl Iterator<Item = &'v str>) -> bool {
    match want {
        ValueMatch::Absent => values.next().is_none(),
        ValueMatch::Present => values.next().is_some(),
        ValueMatch::Exact(e) => values.any(|v| v == e),
        ValueMatch::Prefix(p) => values.any(|v| v.starts_with(p.as_str())),
        ValueMatch::Regex(r) => values.any(|v| full_match(r, v)),
    }
}

/// Whether the whole text matches a regex, as the data plane anchors it (`meshc` compiled every
/// regex of the snapshot; one that does not compile matches nothing).
fn full_match(pattern: &str, text: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(text))
}

fn file_line(source: &SourceLocation) -> String {
    format!("{}:{}", source.file, source.line)
}

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
        if let Some(from) = &self.from {
            let _ = writeln!(out, "from: {from}");
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
                if let Some(r) = &actions.redirect {
                    let mut target = String::new();
                    if let Some(scheme) = &r.scheme {
                        let _ = write!(target, "scheme {scheme} ");
                    }
                    if let Some(host) = &r.authority {
                        let _ = write!(target, "host {host} ");
                    }
                    if let Some(port) = r.port {
                        let _ = write!(target, "port {port} ");
                    }
                    if let Some(path) = &r.path {
                        let _ = write!(target, "path {path} ");
                    }
                    let _ = writeln!(out, "redirect: {} {}", r.status, target.trim_end());
                }
                let _ = writeln!(out, "destinations:");
                for d in destinations {
                    match &d.subset {
                        Some(subset) => {
                            let _ = writeln!(out, "  {}/{subset} {}%", d.service, d.weight);
                        }
                        None => {
                            let _ = writeln!(out, "  {} {}%", d.service, d.weight);
                        }
                    }
                }
                match actions.timeout_ms {
                    Some(ms) => {
                        let _ = writeln!(out, "timeout: {ms}ms");
                    }
                    None => out.push_str("timeout: default (meshd --upstream-timeout)\n"),
                }
                let _ = writeln!(out, "retries: {}", actions.retries_text());
                let _ = writeln!(out, "fault injection: {}", actions.fault_text());
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
        out.push_str("authorization: allow (no policy)\n");
        out
    }

    /// The `--json` document: `route`, `destinations`, `timeout_ms`, `retries`, `authz`, `from`,
    /// plus `error` (and `rules_tried`) when there is no route.
    pub fn to_json(&self) -> Value {
        let no_actions = Actions::default();
        let actions = match &self.outcome {
            Outcome::Routed { actions, .. } => actions.as_ref(),
            _ => &no_actions,
        };
        let (route, destinations) = match &self.outcome {
            Outcome::Routed {
                rule,
                source,
                destinations,
                ..
            } => (
                json!({ "rule": rule, "source": file_line(source) }),
                destinations
                    .iter()
                    .map(
                        |d| json!({ "service": d.service, "subset": d.subset, "weight": d.weight }),
                    )
                    .collect(),
            ),
            _ => (Value::Null, Vec::new()),
        };
        let mut doc = json!({
            "route": route,
            "destinations": destinations,
            "timeout_ms": actions.timeout_ms,
            "retries": actions
                .retries
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok())
                .unwrap_or_else(|| json!({ "attempts": 0 })),
            "fault": actions.fault.as_ref().and_then(|f| serde_json::to_value(f).ok()),
            "redirect": actions.redirect.as_ref().and_then(|r| serde_json::to_value(r).ok()),
            "authz": { "decision": "allow", "policy": null },
            "from": self.from,
        });
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
}

#[cfg(test)]
mod tests;
