//! The workload, security and telemetry tables of the TOML form: `[[authorization]]`,
//! `[[authentication]]`, `[[peer_authentication]]`, `[telemetry]`, and the extra workload keys.

use serde::Deserialize;
use toml::Spanned;

use super::traffic::percent;
use super::{ident, number, span, string};
use crate::ast;
use crate::diag::{Code, Diagnostic, FileId, SourceSpan};

/// `[[authorization]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthorizationDoc {
    name: Spanned<String>,
    namespace: Option<Spanned<String>>,
    workloads: Option<Vec<Spanned<String>>>,
    action: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<AuthzRuleDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthzRuleDoc {
    #[serde(default)]
    from: Vec<Spanned<SourceDoc>>,
    #[serde(default)]
    to: Vec<Spanned<OperationDoc>>,
    #[serde(default)]
    when: Vec<Spanned<WhenDoc>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceDoc {
    #[serde(default)]
    principals: Vec<Spanned<String>>,
    #[serde(default)]
    not_principals: Vec<Spanned<String>>,
    #[serde(default)]
    request_principals: Vec<Spanned<String>>,
    #[serde(default)]
    not_request_principals: Vec<Spanned<String>>,
    #[serde(default)]
    namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    not_namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    ip_blocks: Vec<Spanned<String>>,
    #[serde(default)]
    not_ip_blocks: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationDoc {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    not_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    methods: Vec<Spanned<String>>,
    #[serde(default)]
    not_methods: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    not_paths: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<u64>>,
    #[serde(default)]
    not_ports: Vec<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenDoc {
    key: Spanned<String>,
    #[serde(default)]
    values: Vec<Spanned<String>>,
    #[serde(default)]
    not_values: Vec<Spanned<String>>,
}

/// `[[authentication]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthenticationDoc {
    name: Spanned<String>,
    namespace: Option<Spanned<String>>,
    workloads: Option<Vec<Spanned<String>>>,
    jwt: Vec<Spanned<JwtDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtDoc {
    issuer: Spanned<String>,
    #[serde(default)]
    audiences: Vec<Spanned<String>>,
    jwks: Spanned<String>,
}

/// `[[peer_authentication]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerAuthenticationDoc {
    name: Spanned<String>,
    namespace: Option<Spanned<String>>,
    workloads: Option<Vec<Spanned<String>>>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    ports: Vec<PortModeDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortModeDoc {
    port: Spanned<u64>,
    mode: Spanned<String>,
}

/// `[telemetry]` or a workload's `telemetry` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TelemetryDoc {
    /// A format string, or `false` for off.
    access_log: Option<Spanned<toml::Value>>,
    trace_sampling: Option<Spanned<String>>,
    metrics: Option<bool>,
    trace_collector: Option<Spanned<String>>,
}

fn error(id: FileId, at: std::ops::Range<usize>, message: String) -> Diagnostic {
    Diagnostic::new(
        Code::Syntax,
        SourceSpan {
            file: id,
            span: span(at),
        },
        message,
    )
}

/// An mTLS mode name.
pub(super) fn tls_mode(id: FileId, value: &Spanned<String>) -> Result<ast::TlsMode, Diagnostic> {
    let mode = match value.get_ref().as_str() {
        "strict" => spec::TlsMode::Strict,
        "permissive" => spec::TlsMode::Permissive,
        "disable" => spec::TlsMode::Disable,
        other => {
            return Err(error(
                id,
                value.span(),
                format!("expected an mTLS mode (strict, permissive, disable), found {other:?}"),
            ))
        }
    };
    Ok(ast::TlsMode {
        value: mode,
        span: span(value.span()),
    })
}

fn strings(values: &[Spanned<String>]) -> Vec<ast::Str> {
    values.iter().map(string).collect()
}

fn target(
    namespace: Option<&Spanned<String>>,
    workloads: Option<&Vec<Spanned<String>>>,
) -> ast::PolicyTarget {
    ast::PolicyTarget {
        namespace: namespace.map(ident),
        workloads: workloads.map(|names| names.iter().map(ident).collect()),
        selector: None,
    }
}

/// The AST of a `[[authorization]]` table.
pub(super) fn authorization(
    id: FileId,
    doc: Spanned<AuthorizationDoc>,
) -> Result<ast::Authorization, Diagnostic> {
    let keyword = span(doc.span());
    let doc = doc.into_inner();
    let action = match &doc.action {
        None => None,
        Some(a) => {
            let value = match a.get_ref().as_str() {
                "allow" => spec::AuthzAction::Allow,
                "deny" => spec::AuthzAction::Deny,
                "audit" => spec::AuthzAction::Audit,
                other => {
                    return Err(error(
                        id,
                        a.span(),
                        format!("expected an action (allow, deny, audit), found {other:?}"),
                    ))
                }
            };
            Some((value, span(a.span())))
        }
    };
    let rules = doc
        .rule
        .iter()
        .map(|r| {
            let rule = r.get_ref();
            ast::AuthzRule {
                span: span(r.span()),
                from: rule
                    .from
                    .iter()
                    .map(|f| {
                        let s = f.get_ref();
                        ast::AuthzSource {
                            span: span(f.span()),
                            principals: strings(&s.principals),
                            not_principals: strings(&s.not_principals),
                            request_principals: strings(&s.request_principals),
                            not_request_principals: strings(&s.not_request_principals),
                            namespaces: strings(&s.namespaces),
                            not_namespaces: strings(&s.not_namespaces),
                            ip_blocks: strings(&s.ip_blocks),
                            not_ip_blocks: strings(&s.not_ip_blocks),
                        }
                    })
                    .collect(),
                to: rule
                    .to
                    .iter()
                    .map(|t| {
                        let o = t.get_ref();
                        ast::AuthzOperation {
                            span: span(t.span()),
                            hosts: strings(&o.hosts),
                            not_hosts: strings(&o.not_hosts),
                            methods: strings(&o.methods),
                            not_methods: strings(&o.not_methods),
                            paths: strings(&o.paths),
                            not_paths: strings(&o.not_paths),
                            ports: o.ports.iter().map(number).collect(),
                            not_ports: o.not_ports.iter().map(number).collect(),
                        }
                    })
                    .collect(),
                when: rule
                    .when
                    .iter()
                    .map(|w| {
                        let c = w.get_ref();
                        ast::AuthzWhen {
                            span: span(w.span()),
                            key: string(&c.key),
                            values: strings(&c.values),
                            not_values: strings(&c.not_values),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(ast::Authorization {
        keyword,
        name: ident(&doc.name),
        target: target(doc.namespace.as_ref(), doc.workloads.as_ref()),
        action,
        rules,
        origin: ast::Origin::Mesh,
    })
}

/// The AST of a `[[authentication]]` table.
pub(super) fn authentication(
    id: FileId,
    doc: Spanned<AuthenticationDoc>,
) -> Result<ast::Authentication, Diagnostic> {
    let keyword = span(doc.span());
    let doc = doc.into_inner();
    if doc.jwt.is_empty() {
        return Err(error(
            id,
            keyword.start..keyword.end,
            "an authentication needs at least one `jwt` rule".to_owned(),
        ));
    }
    Ok(ast::Authentication {
        keyword,
        name: ident(&doc.name),
        target: target(doc.namespace.as_ref(), doc.workloads.as_ref()),
        jwt: doc
            .jwt
            .iter()
            .map(|j| ast::JwtRule {
                span: span(j.span()),
                issuer: string(&j.get_ref().issuer),
                audiences: strings(&j.get_ref().audiences),
                jwks: string(&j.get_ref().jwks),
            })
            .collect(),
    })
}

/// The AST of a `[[peer_authentication]]` table.
pub(super) fn peer_authentication(
    id: FileId,
    doc: Spanned<PeerAuthenticationDoc>,
) -> Result<ast::PeerAuthentication, Diagnostic> {
    let keyword = span(doc.span());
    let doc = doc.into_inner();
    let mut port_modes = Vec::new();
    for p in &doc.ports {
        port_modes.push((number(&p.port), tls_mode(id, &p.mode)?));
    }
    Ok(ast::PeerAuthentication {
        keyword,
        name: ident(&doc.name),
        target: target(doc.namespace.as_ref(), doc.workloads.as_ref()),
        mode: doc.mode.as_ref().map(|m| tls_mode(id, m)).transpose()?,
        port_modes,
        origin: ast::Origin::Mesh,
    })
}

/// The AST of a `[telemetry]` table (top level or in a workload).
pub(super) fn telemetry(
    id: FileId,
    doc: &Spanned<TelemetryDoc>,
) -> Result<ast::Telemetry, Diagnostic> {
    let t = doc.get_ref();
    let access_log = match &t.access_log {
        None => None,
        Some(log) => match log.get_ref() {
            toml::Value::String(json) if json == "json" => Some(ast::AccessLog::Json),
            toml::Value::String(format) => Some(ast::AccessLog::Text(ast::Str {
                value: format.clone(),
                span: span(log.span()),
            })),
            toml::Value::Boolean(false) => Some(ast::AccessLog::Off),
            other => {
                return Err(error(
                    id,
                    log.span(),
                    format!(
                        "expected an access log format string, \"json\" or `false` (off), \
                         found `{other}`"
                    ),
                ))
            }
        },
    };
    Ok(ast::Telemetry {
        span: span(doc.span()),
        access_log,
        trace_sampling: t
            .trace_sampling
            .as_ref()
            .map(|p| percent(id, p))
            .transpose()?,
        metrics: t.metrics,
        trace_collector: t.trace_collector.as_ref().map(|url| ast::Str {
            value: url.get_ref().clone(),
            span: span(url.span()),
        }),
        target: None,
    })
}

#[cfg(test)]
mod tests;
