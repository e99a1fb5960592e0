//! The traffic part of the TOML form: `policy` tables of services and subsets, the condition
//! keys of `match` tables, and rule actions. Durations and percentages are strings in the DSL's
//! spelling (`"500ms"`, `"10%"`), checked with the DSL's own lexeme rules.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ident, number, span, string};
use crate::ast;
use crate::diag::{Code, Diagnostic, FileId, SourceSpan, Span};
use crate::parse::{duration_millis, percent_per_million};

/// `policy = { load_balancer = ..., pool = ..., outlier = ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyDoc {
    load_balancer: Option<Spanned<LoadBalancerDoc>>,
    pool: Option<Spanned<PoolDoc>>,
    outlier: Option<Spanned<OutlierDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadBalancerDoc {
    kind: Spanned<String>,
    header: Option<Spanned<String>>,
    cookie: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    source_ip: Option<Spanned<bool>>,
    min_ring_size: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolDoc {
    max_connections: Option<Spanned<u64>>,
    max_pending: Option<Spanned<u64>>,
    max_requests_per_connection: Option<Spanned<u64>>,
    idle_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    tcp_idle_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutlierDoc {
    consecutive_5xx: Option<Spanned<u64>>,
    consecutive_gateway_errors: Option<Spanned<u64>>,
    interval: Option<Spanned<String>>,
    base_ejection: Option<Spanned<String>>,
    max_ejection_percent: Option<Spanned<u64>>,
}

/// A header, query or method value: a string (exact) or a table with one key.
#[derive(Debug)]
pub(super) enum ValueDoc {
    Exact(String),
    Table(ValueTableDoc),
}

impl<'de> Deserialize<'de> for ValueDoc {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ValueDoc;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a string (exact value) or a table with one of `exact`, `prefix`, `regex`, \
                     `present`, `absent`",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ValueDoc, E> {
                Ok(ValueDoc::Exact(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ValueDoc, A::Error> {
                let deserializer = serde::de::value::MapAccessDeserializer::new(map);
                ValueTableDoc::deserialize(deserializer).map(ValueDoc::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ValueTableDoc {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
    present: Option<bool>,
    absent: Option<bool>,
}

/// One `match` table: its keys are ANDed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchDoc {
    path_exact: Option<Spanned<String>>,
    path_prefix: Option<Spanned<String>>,
    path_regex: Option<Spanned<String>>,
    method: Option<Spanned<ValueDoc>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<ValueDoc>>,
    #[serde(default)]
    query: BTreeMap<String, Spanned<ValueDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetriesDoc {
    attempts: Option<Spanned<u64>>,
    per_try_timeout: Option<Spanned<String>>,
    on: Option<Vec<Spanned<RetryOnDoc>>>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    non_idempotent: Option<Spanned<bool>>,
}

/// A retry condition name or a status code.
#[derive(Debug)]
enum RetryOnDoc {
    Code(u64),
    Name(String),
}

impl<'de> Deserialize<'de> for RetryOnDoc {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RetryOnDoc;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a retry condition name (e.g. \"5xx\") or a status code")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RetryOnDoc, E> {
                Ok(RetryOnDoc::Name(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RetryOnDoc, E> {
                Ok(RetryOnDoc::Code(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RetryOnDoc, E> {
                // A negative status is out of range; keep it so lowering reports it there.
                Ok(RetryOnDoc::Name(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FaultDoc {
    delay: Option<Spanned<String>>,
    delay_percent: Option<Spanned<String>>,
    abort: Option<Spanned<u64>>,
    abort_percent: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeadersDoc {
    #[serde(default)]
    set: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    add: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    remove: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RewriteDoc {
    prefix: Option<Spanned<String>>,
    regex: Option<Spanned<String>>,
    substitution: Option<Spanned<String>>,
    authority: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedirectDoc {
    scheme: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<u64>>,
    path: Option<Spanned<String>>,
    code: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MirrorDoc {
    service: Spanned<String>,
    subset: Option<Spanned<String>>,
    percent: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitDoc {
    requests: Spanned<u64>,
    per: Spanned<String>,
    burst: Option<Spanned<u64>>,
    per_source: Option<Spanned<bool>>,
}

fn syntax(id: FileId, at: Span, message: String) -> Diagnostic {
    Diagnostic::new(Code::Syntax, SourceSpan { file: id, span: at }, message)
}

fn duration(id: FileId, value: &Spanned<String>) -> Result<ast::Duration, Diagnostic> {
    let at = span(value.span());
    match duration_millis(value.get_ref()) {
        Some(millis) => Ok(ast::Duration { millis, span: at }),
        None => Err(syntax(
            id,
            at,
            format!(
                "expected a duration with a unit (e.g. \"500ms\", \"2s\", \"1m\", \"1h\"), found {:?}",
                value.get_ref()
            ),
        )),
    }
}

/// `"10%"`, `"0.5%"`: the DSL's percentages, as a string.
pub(super) fn percent(id: FileId, value: &Spanned<String>) -> Result<ast::Percent, Diagnostic> {
    let at = span(value.span());
    match percent_per_million(value.get_ref()) {
        Some(per_million) => Ok(ast::Percent {
            per_million,
            span: at,
        }),
        None => Err(syntax(
            id,
            at,
            format!(
                "expected a percentage (e.g. \"10%\" or \"0.5%\", at most 4 decimals), found {:?}",
                value.get_ref()
            ),
        )),
    }
}

/// `Some(span)` for `true`, `None` for `false` or absent.
fn flag(value: Option<&Spanned<bool>>) -> Option<Span> {
    value.filter(|v| *v.get_ref()).map(|v| span(v.span()))
}

/// A string keyed by a table key, which carries no position of its own: the value's span.
fn keyed(key: &str, at: Span) -> ast::Str {
    ast::Str {
        value: key.to_owned(),
        span: at,
    }
}

/// Lowers a `policy` table to the AST.
pub(super) fn policy(id: FileId, doc: &Spanned<PolicyDoc>) -> Result<ast::Policy, Diagnostic> {
    let whole = span(doc.span());
    let doc = doc.get_ref();
    let load_balancer = match &doc.load_balancer {
        Some(lb) => Some(load_balancer(id, lb)?),
        None => None,
    };
    let pool = match &doc.pool {
        Some(p) => {
            let d = p.get_ref();
            Some(ast::Pool {
                span: span(p.span()),
                max_connections: d.max_connections.as_ref().map(number),
                max_pending: d.max_pending.as_ref().map(number),
                max_requests_per_connection: d.max_requests_per_connection.as_ref().map(number),
                idle_timeout: d
                    .idle_timeout
                    .as_ref()
                    .map(|t| duration(id, t))
                    .transpose()?,
                connect_timeout: d
                    .connect_timeout
                    .as_ref()
                    .map(|t| duration(id, t))
                    .transpose()?,
                tcp_idle_timeout: d
                    .tcp_idle_timeout
                    .as_ref()
                    .map(|t| duration(id, t))
                    .transpose()?,
            })
        }
        None => None,
    };
    let outlier = match &doc.outlier {
        Some(o) => {
            let d = o.get_ref();
            Some(ast::Outlier {
                span: span(o.span()),
                consecutive_5xx: d.consecutive_5xx.as_ref().map(number),
                consecutive_gateway_errors: d.consecutive_gateway_errors.as_ref().map(number),
                interval: d.interval.as_ref().map(|t| duration(id, t)).transpose()?,
                base_ejection: d
                    .base_ejection
                    .as_ref()
                    .map(|t| duration(id, t))
                    .transpose()?,
                max_ejection_percent: d.max_ejection_percent.as_ref().map(number),
                triggers_off: false,
            })
        }
        None => None,
    };
    Ok(ast::Policy {
        span: whole,
        file: None,
        tls: None,
        load_balancer,
        pool,
        outlier,
    })
}

fn load_balancer(
    id: FileId,
    doc: &Spanned<LoadBalancerDoc>,
) -> Result<ast::LoadBalancer, Diagnostic> {
    let whole = span(doc.span());
    let d = doc.get_ref();
    let kind = match d.kind.get_ref().as_str() {
        "round_robin" => ast::LbKind::RoundRobin,
        "random" => ast::LbKind::Random,
        "least_request" => ast::LbKind::LeastRequest,
        "ring_hash" => ast::LbKind::RingHash,
        "maglev" => ast::LbKind::Maglev,
        other => {
            return Err(syntax(
                id,
                span(d.kind.span()),
                format!(
                    "expected a load balancer (round_robin, random, least_request, ring_hash, \
                     maglev), found {other:?}"
                ),
            ))
        }
    };
    let mut keys = Vec::new();
    if let Some(h) = &d.header {
        keys.push(ast::HashKey::Header(string(h)));
    }
    if let Some(c) = &d.cookie {
        let ttl = d.ttl.as_ref().map(|t| duration(id, t)).transpose()?;
        keys.push(ast::HashKey::Cookie {
            name: string(c),
            ttl,
        });
    } else if let Some(t) = &d.ttl {
        return Err(syntax(
            id,
            span(t.span()),
            "`ttl` is the lifetime of a hash cookie; it needs `cookie`".to_owned(),
        ));
    }
    if let Some(at) = flag(d.source_ip.as_ref()) {
        keys.push(ast::HashKey::SourceIp(at));
    }
    if keys.len() > 1 {
        return Err(syntax(
            id,
            whole,
            "a load balancer hashes on one key: set only one of `header`, `cookie`, `source_ip`"
                .to_owned(),
        ));
    }
    Ok(ast::LoadBalancer {
        kind,
        key: keys.pop(),
        minimum_ring_size: d.min_ring_size.as_ref().map(number),
        span: whole,
    })
}

fn value_condition(
    id: FileId,
    doc: &Spanned<ValueDoc>,
    what: &str,
) -> Result<ast::ValueCondition, Diagnostic> {
    let at = span(doc.span());
    let str_at = |value: &str| ast::Str {
        value: value.to_owned(),
        span: at,
    };
    let table = match doc.get_ref() {
        ValueDoc::Exact(value) => return Ok(ast::ValueCondition::Exact(str_at(value))),
        ValueDoc::Table(table) => table,
    };
    let mut found = Vec::new();
    if let Some(v) = &table.exact {
        found.push(ast::ValueCondition::Exact(str_at(v)));
    }
    if let Some(v) = &table.prefix {
        found.push(ast::ValueCondition::Prefix(str_at(v)));
    }
    if let Some(v) = &table.regex {
        found.push(ast::ValueCondition::Regex(str_at(v)));
    }
    match table.present {
        Some(true) => found.push(ast::ValueCondition::Present(at)),
        Some(false) => {
            return Err(syntax(
                id,
                at,
                "`present = false` is not a condition; write `absent = true`".to_owned(),
            ))
        }
        None => {}
    }
    match table.absent {
        Some(true) => found.push(ast::ValueCondition::Absent(at)),
        Some(false) => {
            return Err(syntax(
                id,
                at,
                "`absent = false` is not a condition; write `present = true`".to_owned(),
            ))
        }
        None => {}
    }
    if found.len() != 1 {
        return Err(syntax(
            id,
            at,
            format!(
                "a {what} condition needs exactly one of `exact`, `prefix`, `regex`, `present`, \
                 `absent`"
            ),
        ));
    }
    Ok(found.remove(0))
}

/// The conditions of one `match` table, ANDed.
pub(super) fn conditions(
    id: FileId,
    doc: &Spanned<MatchDoc>,
) -> Result<Vec<ast::Condition>, Diagnostic> {
    let m = doc.get_ref();
    let mut out = Vec::new();
    if let Some(p) = &m.path_exact {
        out.push(ast::Condition::PathExact {
            value: string(p),
            span: span(p.span()),
        });
    }
    if let Some(p) = &m.path_prefix {
        out.push(ast::Condition::PathPrefix {
            value: string(p),
            span: span(p.span()),
        });
    }
    if let Some(p) = &m.path_regex {
        out.push(ast::Condition::PathRegex {
            value: string(p),
            span: span(p.span()),
        });
    }
    if let Some(method) = &m.method {
        let value = value_condition(id, method, "method")?;
        if let ast::ValueCondition::Present(at) | ast::ValueCondition::Absent(at) = value {
            return Err(syntax(
                id,
                at,
                "every request has a method: write a method, `{ prefix = \"...\" }` or \
                 `{ regex = \"...\" }`"
                    .to_owned(),
            ));
        }
        out.push(ast::Condition::Method {
            value,
            span: span(method.span()),
        });
    }
    for (name, value) in &m.headers {
        out.push(ast::Condition::Header {
            name: keyed(name, span(value.span())),
            value: value_condition(id, value, "header")?,
        });
    }
    for (name, value) in &m.query {
        out.push(ast::Condition::Query {
            name: keyed(name, span(value.span())),
            value: value_condition(id, value, "query")?,
        });
    }
    Ok(out)
}

/// Lowers a rule's actions into `rule`.
pub(super) fn actions(
    id: FileId,
    doc: &super::RuleDoc,
    rule: &mut ast::Rule,
) -> Result<(), Diagnostic> {
    rule.timeout = doc.timeout.as_ref().map(|t| duration(id, t)).transpose()?;
    if let Some(r) = &doc.retries {
        let d = r.get_ref();
        let mut retry_on = Vec::new();
        for condition in d.on.iter().flatten() {
            let at = span(condition.span());
            let value = match condition.get_ref() {
                RetryOnDoc::Code(code) => code.to_string(),
                RetryOnDoc::Name(name) => name.clone(),
            };
            retry_on.push(ast::Str { value, span: at });
        }
        rule.retries = Some(ast::Retries {
            span: span(r.span()),
            attempts: d.attempts.as_ref().map(number),
            per_try_timeout: d
                .per_try_timeout
                .as_ref()
                .map(|t| duration(id, t))
                .transpose()?,
            retry_on,
            backoff: d.backoff.as_ref().map(|t| duration(id, t)).transpose()?,
            max_backoff: d
                .max_backoff
                .as_ref()
                .map(|t| duration(id, t))
                .transpose()?,
            non_idempotent: flag(d.non_idempotent.as_ref()),
        });
    }
    if let Some(f) = &doc.fault {
        let d = f.get_ref();
        let delay_percent = d
            .delay_percent
            .as_ref()
            .map(|p| percent(id, p))
            .transpose()?;
        let abort_percent = d
            .abort_percent
            .as_ref()
            .map(|p| percent(id, p))
            .transpose()?;
        let delay = match &d.delay {
            Some(t) => Some((duration(id, t)?, delay_percent)),
            None => {
                if let Some(p) = delay_percent {
                    let message = "`delay_percent` needs `delay`".to_owned();
                    return Err(syntax(id, p.span, message));
                }
                None
            }
        };
        let abort = match &d.abort {
            Some(n) => Some((number(n), abort_percent)),
            None => {
                if let Some(p) = abort_percent {
                    let message = "`abort_percent` needs `abort`".to_owned();
                    return Err(syntax(id, p.span, message));
                }
                None
            }
        };
        rule.fault = Some(ast::Fault {
            span: span(f.span()),
            delay,
            abort,
        });
    }
    rule.request_headers = doc.request_headers.as_ref().map(header_edits);
    rule.response_headers = doc.response_headers.as_ref().map(header_edits);
    if let Some(r) = &doc.rewrite {
        let d = r.get_ref();
        let regex = match (&d.regex, &d.substitution) {
            (Some(p), Some(s)) => Some((string(p), string(s))),
            (None, None) => None,
            (Some(p), None) => {
                let message = "`regex` needs a `substitution`".to_owned();
                return Err(syntax(id, span(p.span()), message));
            }
            (None, Some(s)) => {
                let message = "`substitution` needs a `regex`".to_owned();
                return Err(syntax(id, span(s.span()), message));
            }
        };
        rule.rewrite = Some(ast::Rewrite {
            span: span(r.span()),
            prefix: d.prefix.as_ref().map(string),
            regex,
            authority: d.authority.as_ref().map(string),
        });
    }
    rule.redirect = doc.redirect.as_ref().map(|r| {
        let d = r.get_ref();
        ast::Redirect {
            span: span(r.span()),
            scheme: d.scheme.as_ref().map(string),
            authority: d.host.as_ref().map(string),
            port: d.port.as_ref().map(number),
            path: d.path.as_ref().map(string),
            code: d.code.as_ref().map(number),
        }
    });
    if let Some(m) = &doc.mirror {
        let d = m.get_ref();
        rule.mirror = Some(ast::Mirror {
            span: span(m.span()),
            service: ident(&d.service),
            subset: d.subset.as_ref().map(ident),
            percent: d.percent.as_ref().map(|p| percent(id, p)).transpose()?,
        });
    }
    if let Some(r) = &doc.rate_limit {
        let d = r.get_ref();
        rule.rate_limit = Some(ast::RateLimit {
            span: span(r.span()),
            requests: number(&d.requests),
            per: duration(id, &d.per)?,
            burst: d.burst.as_ref().map(number),
            per_source: flag(d.per_source.as_ref()),
        });
    }
    Ok(())
}

fn header_edits(doc: &Spanned<HeadersDoc>) -> ast::HeaderEdits {
    let d = doc.get_ref();
    let pairs = |map: &BTreeMap<String, Spanned<String>>| {
        map.iter()
            .map(|(name, value)| (keyed(name, span(value.span())), string(value)))
            .collect()
    };
    ast::HeaderEdits {
        span: span(doc.span()),
        set: pairs(&d.set),
        add: pairs(&d.add),
        remove: d.remove.iter().map(string).collect(),
    }
}

#[cfg(test)]
mod tests;
