//! The mesh model written as TOML: the same declarations as the DSL, lowered to the same AST,
//! so every check and diagnostic applies unchanged. `docs/dsl.md` shows both forms.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::ast;
use crate::diag::{Code, Diagnostic, FileId, SourceSpan, Span};

/// The top-level tables of mesh TOML: the fields of [`Document`].
pub(crate) const TABLES: &[&str] = &[
    "service",
    "route",
    "workload",
    "authorization",
    "authentication",
    "peer_authentication",
    "telemetry",
];

/// Whether `text` is mesh TOML: its top level has one of [`TABLES`]. Text that is not valid TOML
/// is when a line opens one of them (`[[service]]`, `[telemetry]`, `route = ...`), so that its
/// syntax error gets reported.
pub(crate) fn is_mesh_toml(text: &str) -> bool {
    match toml::from_str::<toml::Table>(text) {
        Ok(table) => TABLES.iter().any(|name| table.contains_key(*name)),
        Err(_) => text.lines().any(opens_mesh_table),
    }
}

/// Whether a line is a table header or key that starts one of [`TABLES`].
fn opens_mesh_table(line: &str) -> bool {
    let line = line.trim_start();
    let header = line
        .strip_prefix('[')
        .map(|l| l.strip_prefix('[').unwrap_or(l));
    let rest = header.unwrap_or(line).trim_start();
    TABLES.iter().any(|name| {
        rest.strip_prefix(name).is_some_and(|after| {
            let after = after.trim_start();
            match header {
                Some(_) => after.starts_with([']', '.']),
                None => after.starts_with(['=', '.']),
            }
        })
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    service: Vec<Spanned<ServiceDoc>>,
    #[serde(default)]
    route: Vec<Spanned<RouteDoc>>,
    #[serde(default)]
    workload: Vec<Spanned<WorkloadDoc>>,
    #[serde(default)]
    authorization: Vec<Spanned<security::AuthorizationDoc>>,
    #[serde(default)]
    authentication: Vec<Spanned<security::AuthenticationDoc>>,
    #[serde(default)]
    peer_authentication: Vec<Spanned<security::PeerAuthenticationDoc>>,
    telemetry: Option<Spanned<security::TelemetryDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDoc {
    name: Spanned<String>,
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    ports: Vec<PortDoc>,
    #[serde(default)]
    endpoints: Vec<EndpointDoc>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    #[serde(default)]
    subsets: Vec<SubsetDoc>,
    policy: Option<Spanned<traffic::PolicyDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortDoc {
    number: Spanned<u64>,
    protocol: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointDoc {
    address: Spanned<String>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    weight: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubsetDoc {
    name: Spanned<String>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    policy: Option<Spanned<traffic::PolicyDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDoc {
    service: Spanned<String>,
    rule: Vec<Spanned<RuleDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    name: Spanned<String>,
    #[serde(default, rename = "match")]
    matches: Vec<Spanned<traffic::MatchDoc>>,
    #[serde(default)]
    to: Vec<Spanned<DestinationDoc>>,
    timeout: Option<Spanned<String>>,
    retries: Option<Spanned<traffic::RetriesDoc>>,
    fault: Option<Spanned<traffic::FaultDoc>>,
    request_headers: Option<Spanned<traffic::HeadersDoc>>,
    response_headers: Option<Spanned<traffic::HeadersDoc>>,
    rewrite: Option<Spanned<traffic::RewriteDoc>>,
    redirect: Option<Spanned<traffic::RedirectDoc>>,
    mirror: Option<Spanned<traffic::MirrorDoc>>,
    rate_limit: Option<Spanned<traffic::RateLimitDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationDoc {
    service: Spanned<String>,
    subset: Option<Spanned<String>>,
    weight: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadDoc {
    name: Spanned<String>,
    identity: Option<Spanned<String>>,
    #[serde(default)]
    inbound: Vec<InboundDoc>,
    outbound: Option<Vec<Spanned<String>>>,
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    serves: Vec<Spanned<String>>,
    telemetry: Option<Spanned<security::TelemetryDoc>>,
    outbound_traffic: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundDoc {
    port: Spanned<u64>,
    protocol: Spanned<String>,
    target: Spanned<String>,
    mtls: Option<Spanned<String>>,
}

/// Parses one `.toml` file into the same AST the DSL parser produces.
pub(crate) fn parse_file(id: FileId, text: &str) -> Result<ast::File, Diagnostic> {
    let document: Document = toml::from_str(text).map_err(|e| {
        let span = e
            .span()
            .map_or(Span::new(0, 0), |r| Span::new(r.start, r.end));
        Diagnostic::new(
            Code::Syntax,
            SourceSpan { file: id, span },
            e.message().trim().to_owned(),
        )
    })?;
    let mut items = Vec::new();
    for service in document.service {
        items.push(ast::Item::Service(service_ast(id, service)?));
    }
    for route in document.route {
        items.push(ast::Item::Route(route_ast(id, route)?));
    }
    for workload in document.workload {
        items.push(ast::Item::Workload(workload_ast(id, workload)?));
    }
    for a in document.authorization {
        items.push(ast::Item::Authorization(security::authorization(id, a)?));
    }
    for a in document.authentication {
        items.push(ast::Item::Authentication(security::authentication(id, a)?));
    }
    for p in document.peer_authentication {
        items.push(ast::Item::PeerAuthentication(
            security::peer_authentication(id, p)?,
        ));
    }
    if let Some(t) = &document.telemetry {
        items.push(ast::Item::Telemetry(security::telemetry(id, t)?));
    }
    Ok(ast::File { id, items })
}

fn span(range: Range<usize>) -> Span {
    Span::new(range.start, range.end)
}

fn ident(value: &Spanned<String>) -> ast::Ident {
    ast::Ident {
        name: value.get_ref().clone(),
        span: span(value.span()),
    }
}

fn string(value: &Spanned<String>) -> ast::Str {
    ast::Str {
        value: value.get_ref().clone(),
        span: span(value.span()),
    }
}

fn number(value: &Spanned<u64>) -> ast::Number {
    ast::Number {
        value: *value.get_ref(),
        span: span(value.span()),
    }
}

fn address(value: &Spanned<String>) -> ast::Address {
    ast::Address {
        text: value.get_ref().clone(),
        span: span(value.span()),
    }
}

fn protocol(id: FileId, value: &Spanned<String>) -> Result<ast::Protocol, Diagnostic> {
    let parsed = match value.get_ref().as_str() {
        "http" => spec::Protocol::Http,
        "http2" => spec::Protocol::Http2,
        "grpc" => spec::Protocol::Grpc,
        "tcp" => spec::Protocol::Tcp,
        other => {
            let at = SourceSpan {
                file: id,
                span: span(value.span()),
            };
            return Err(Diagnostic::new(
                Code::Syntax,
                at,
                format!("expected a protocol (http, http2, grpc, tcp), found {other:?}"),
            ));
        }
    };
    Ok(ast::Protocol {
        value: parsed,
        span: span(value.span()),
    })
}

/// Labels keep their value's span for both key and value: TOML keys carry no position here.
fn labels(map: &BTreeMap<String, Spanned<String>>) -> Vec<ast::Label> {
    map.iter()
        .map(|(key, value)| ast::Label {
            key: ast::Ident {
                name: key.clone(),
                span: span(value.span()),
            },
            value: string(value),
        })
        .collect()
}

fn service_ast(id: FileId, doc: Spanned<ServiceDoc>) -> Result<ast::Service, Diagnostic> {
    let whole = span(doc.span());
    let doc = doc.into_inner();
    let mut ports = Vec::new();
    for port in &doc.ports {
        ports.push(ast::Port {
            number: number(&port.number),
            protocol: protocol(id, &port.protocol)?,
        });
    }
    let mut subsets = Vec::new();
    for s in &doc.subsets {
        subsets.push(ast::Subset {
            file: None,
            policy: s
                .policy
                .as_ref()
                .map(|p| traffic::policy(id, p))
                .transpose()?,
            name: ident(&s.name),
            selector: labels(&s.labels),
        });
    }
    Ok(ast::Service {
        policies: doc
            .policy
            .as_ref()
            .map(|p| traffic::policy(id, p))
            .transpose()?
            .into_iter()
            .collect(),
        keyword: whole,
        name: ident(&doc.name),
        namespaces: doc.namespace.iter().map(ident).collect(),
        ports,
        endpoints: doc
            .endpoints
            .iter()
            .map(|e| ast::Endpoint {
                file: None,
                address: address(&e.address),
                labels: labels(&e.labels),
                weight: e.weight.as_ref().map(number),
            })
            .collect(),
        addresses: doc.addresses.iter().map(address).collect(),
        subsets,
        close: Span::new(whole.end, whole.end),
        origin: ast::Origin::Mesh,
    })
}

fn route_ast(id: FileId, doc: Spanned<RouteDoc>) -> Result<ast::Route, Diagnostic> {
    let whole = span(doc.span());
    let doc = doc.into_inner();
    if doc.rule.is_empty() {
        let at = SourceSpan {
            file: id,
            span: whole,
        };
        return Err(Diagnostic::new(
            Code::Syntax,
            at,
            "a route needs at least one [[route.rule]]",
        ));
    }
    let mut rules = Vec::new();
    for rule in doc.rule {
        let keyword = span(rule.span());
        let rule = rule.into_inner();
        if rule.to.is_empty() && rule.redirect.is_none() {
            let at = SourceSpan {
                file: id,
                span: keyword,
            };
            return Err(Diagnostic::new(
                Code::Syntax,
                at,
                "a rule needs at least one `to` destination, or a `redirect`",
            ));
        }
        let mut matches = Vec::new();
        for spanned in &rule.matches {
            let conditions = traffic::conditions(id, spanned)?;
            if conditions.is_empty() {
                let at = SourceSpan {
                    file: id,
                    span: span(spanned.span()),
                };
                return Err(Diagnostic::new(
                    Code::Syntax,
                    at,
                    "an empty match matches everything; leave `match` out instead",
                ));
            }
            matches.push(ast::Match { conditions });
        }
        let mut lowered = ast::Rule {
            keyword,
            name: ident(&rule.name),
            matches,
            destinations: rule
                .to
                .iter()
                .map(|d| ast::Destination {
                    service: ident(&d.get_ref().service),
                    subset: d.get_ref().subset.as_ref().map(ident),
                    weight: d.get_ref().weight.as_ref().map(number),
                    span: span(d.span()),
                })
                .collect(),
            ..ast::Rule::default()
        };
        traffic::actions(id, &rule, &mut lowered)?;
        rules.push(lowered);
    }
    Ok(ast::Route {
        keyword: whole,
        service: ident(&doc.service),
        rules,
    })
}

fn workload_ast(id: FileId, doc: Spanned<WorkloadDoc>) -> Result<ast::Workload, Diagnostic> {
    let whole = span(doc.span());
    let doc = doc.into_inner();
    let mut inbound = Vec::new();
    for i in &doc.inbound {
        inbound.push(ast::Inbound {
            mtls: i
                .mtls
                .as_ref()
                .map(|m| security::tls_mode(id, m))
                .transpose()?,
            port: number(&i.port),
            protocol: protocol(id, &i.protocol)?,
            target: address(&i.target),
        });
    }
    Ok(ast::Workload {
        outbound_traffic: doc.outbound_traffic.iter().map(ident).collect(),
        labels: labels(&doc.labels),
        namespace: doc.namespace.as_ref().map(ident),
        serves: doc.serves.iter().map(ident).collect(),
        telemetry: doc
            .telemetry
            .as_ref()
            .map(|t| security::telemetry(id, t))
            .transpose()?,
        keyword: whole,
        name: ident(&doc.name),
        identities: doc.identity.iter().map(string).collect(),
        inbound,
        outbound: doc
            .outbound
            .as_ref()
            .map(|names| names.iter().map(ident).collect()),
    })
}

mod security;
mod traffic;

#[cfg(test)]
mod tests;
