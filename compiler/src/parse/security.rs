//! The workload, security and telemetry part of the grammar: workload `namespace`, `labels`,
//! `serves`, `telemetry` lines and inbound `mtls`, and the top-level `authorization`,
//! `authentication`, `peer_authentication` and `telemetry` blocks.

use super::{skip, PResult, Parser, SyntaxError};
use crate::ast::{
    AccessLog, Authentication, Authorization, AuthzOperation, AuthzRule, AuthzSource, AuthzWhen,
    Ident, Item, JwtRule, Number, PeerAuthentication, PolicyTarget, Str, Telemetry, TlsMode,
    Workload,
};
use crate::diag::{Code, Span};

/// Top-level keywords this module parses.
pub(super) const ITEM_KEYWORDS: &[&str] = &[
    "authorization",
    "authentication",
    "peer_authentication",
    "telemetry",
];

const TLS_MODES: &str = "an mTLS mode (strict, permissive, disable)";

impl<'s> Parser<'s> {
    /// Parses the item introduced by `kw` (one of [`ITEM_KEYWORDS`]).
    pub(super) fn security_item(&self, i: &'s str, kw: &str, keyword: Span) -> PResult<'s, Item> {
        match kw {
            "authorization" => self.authorization(i, keyword),
            "authentication" => self.authentication(i, keyword),
            "peer_authentication" => self.peer_authentication(i, keyword),
            _ => {
                let (rest, t) = self.telemetry(i, keyword)?;
                Ok((rest, Item::Telemetry(t)))
            }
        }
    }

    /// A workload line this module owns (`namespace`, `labels`, `serves`, `telemetry`);
    /// `None` when the next word is none of them.
    pub(super) fn workload_line(
        &self,
        i: &'s str,
        workload: &mut Workload,
    ) -> Result<Option<&'s str>, SyntaxError> {
        let rest = match self.word(i) {
            Some((rest, "namespace")) => {
                if workload.namespace.is_some() {
                    return Err(self.repeated_once(i, "namespace", "workload"));
                }
                let (rest, ns) = self.ident(rest, "a namespace name")?;
                workload.namespace = Some(ns);
                rest
            }
            Some((rest, "labels")) => {
                if !workload.labels.is_empty() {
                    return Err(self.repeated_once(i, "labels", "workload"));
                }
                let (rest, labels) = self.labels(rest)?;
                workload.labels = labels;
                rest
            }
            Some((rest, "serves")) => {
                let (rest, names) = self.ident_list(rest, "a service name")?;
                workload.serves.extend(names);
                rest
            }
            Some((rest, w @ "telemetry")) => {
                if workload.telemetry.is_some() {
                    return Err(self.repeated_once(i, "telemetry", "workload"));
                }
                let (rest, t) = self.telemetry(rest, self.span_of(w))?;
                workload.telemetry = Some(t);
                rest
            }
            _ => return Ok(None),
        };
        Ok(Some(rest))
    }

    /// The optional `mtls MODE` at the end of an `inbound` line.
    pub(super) fn inbound_mtls(&self, i: &'s str) -> PResult<'s, Option<TlsMode>> {
        match self.keyword(i, "mtls") {
            Some((rest, _)) => {
                let (rest, mode) = self.tls_mode(rest)?;
                Ok((rest, Some(mode)))
            }
            None => Ok((i, None)),
        }
    }

    /// A syntax error for a setting that may appear once.
    /// A setting that may appear once, seen again: E0103 at the second one. The AST keeps no
    /// position for these settings, so unlike [`Self::repeated`] it cannot name the first.
    fn repeated_once(&self, at: &'s str, what: &str, block: &str) -> SyntaxError {
        SyntaxError {
            span: self.syntax_error(at, "").span,
            custom: Some((
                Code::Duplicate,
                format!("`{what}` is set more than once in {block}"),
            )),
            help: Some(format!("remove the second `{what}`")),
            ..SyntaxError::default()
        }
    }

    fn tls_mode(&self, i: &'s str) -> PResult<'s, TlsMode> {
        let value = match self.word(i) {
            Some((_, "strict")) => spec::TlsMode::Strict,
            Some((_, "permissive")) => spec::TlsMode::Permissive,
            Some((_, "disable")) => spec::TlsMode::Disable,
            _ => return self.error(i, TLS_MODES),
        };
        let (rest, w) = self
            .word(i)
            .ok_or_else(|| self.syntax_error(i, TLS_MODES))?;
        Ok((
            rest,
            TlsMode {
                value,
                span: self.span_of(w),
            },
        ))
    }

    /// `a, b, c`: one or more identifiers.
    fn ident_list(&self, i: &'s str, what: &str) -> PResult<'s, Vec<Ident>> {
        let (mut rest, first) = self.ident(i, what)?;
        let mut out = vec![first];
        while let Some((after, _)) = self.punct(rest, ",") {
            let (after, next) = self.ident(after, what)?;
            out.push(next);
            rest = after;
        }
        Ok((rest, out))
    }

    /// `"a", "b"`: one or more strings.
    fn string_list(&self, i: &'s str, what: &str) -> PResult<'s, Vec<Str>> {
        let (mut rest, first) = self.string(i, what)?;
        let mut out = vec![first];
        while let Some((after, _)) = self.punct(rest, ",") {
            let (after, next) = self.string(after, what)?;
            out.push(next);
            rest = after;
        }
        Ok((rest, out))
    }

    /// `80, 443`: one or more numbers.
    fn number_list(&self, i: &'s str, what: &str) -> PResult<'s, Vec<Number>> {
        let (mut rest, first) = self.number(i, what)?;
        let mut out = vec![first];
        while let Some((after, _)) = self.punct(rest, ",") {
            let (after, next) = self.number(after, what)?;
            out.push(next);
            rest = after;
        }
        Ok((rest, out))
    }

    /// `telemetry { access_log "FORMAT" | json | off  trace_sampling PERCENT }`.
    fn telemetry(&self, i: &'s str, keyword: Span) -> PResult<'s, Telemetry> {
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut t = Telemetry {
            span: keyword,
            ..Telemetry::default()
        };
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return Ok((rest, t));
            }
            i = match self.word(i) {
                Some((rest, "access_log")) => {
                    if t.access_log.is_some() {
                        return Err(self.repeated_once(i, "access_log", "telemetry block"));
                    }
                    if let Some((rest, _)) = self.keyword(rest, "off") {
                        t.access_log = Some(AccessLog::Off);
                        rest
                    } else if let Some((rest, _)) = self.keyword(rest, "json") {
                        t.access_log = Some(AccessLog::Json);
                        rest
                    } else {
                        let what = "an access log format in double quotes, `json` or `off`";
                        let (rest, format) = self.string(rest, what)?;
                        t.access_log = Some(AccessLog::Text(format));
                        rest
                    }
                }
                Some((rest, "trace_collector")) => {
                    if t.trace_collector.is_some() {
                        return Err(self.repeated_once(i, "trace_collector", "telemetry block"));
                    }
                    let (rest, url) = self.string(rest, "a collector URL in double quotes")?;
                    t.trace_collector = Some(url);
                    rest
                }
                Some((rest, "metrics")) => {
                    if t.metrics.is_some() {
                        return Err(self.repeated_once(i, "metrics", "telemetry block"));
                    }
                    if let Some((rest, _)) = self.keyword(rest, "off") {
                        t.metrics = Some(false);
                        rest
                    } else if let Some((rest, _)) = self.keyword(rest, "on") {
                        t.metrics = Some(true);
                        rest
                    } else {
                        return self.error(rest, "`on` or `off`");
                    }
                }
                Some((rest, "trace_sampling")) => {
                    if t.trace_sampling.is_some() {
                        return Err(self.repeated_once(i, "trace_sampling", "telemetry block"));
                    }
                    let (rest, p) = self.opt_percent(rest)?;
                    let Some(p) = p else {
                        return self.error(rest, "a percentage (e.g. 1% or 0.5%)");
                    };
                    t.trace_sampling = Some(p);
                    rest
                }
                _ => {
                    let expected =
                        "`access_log`, `trace_sampling`, `trace_collector`, `metrics` or `}`";
                    return self.error(i, expected);
                }
            };
        }
    }

    /// `namespace NAME` or `workloads a, b` inside a policy block; `None` for other words.
    fn target_line(
        &self,
        i: &'s str,
        target: &mut PolicyTarget,
        block: &str,
    ) -> Result<Option<&'s str>, SyntaxError> {
        match self.word(i) {
            Some((rest, "namespace")) => {
                if target.namespace.is_some() {
                    return Err(self.repeated_once(i, "namespace", block));
                }
                let (rest, ns) = self.ident(rest, "a namespace name")?;
                target.namespace = Some(ns);
                Ok(Some(rest))
            }
            Some((rest, "workloads")) => {
                let (rest, names) = self.ident_list(rest, "a workload name")?;
                target.workloads.get_or_insert_with(Vec::new).extend(names);
                Ok(Some(rest))
            }
            _ => Ok(None),
        }
    }

    fn authorization(&self, i: &'s str, keyword: Span) -> PResult<'s, Item> {
        let (i, name) = self.ident(i, "an authorization policy name")?;
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut policy = Authorization {
            keyword,
            name,
            target: PolicyTarget::default(),
            action: None,
            rules: Vec::new(),
            origin: crate::ast::Origin::Mesh,
        };
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return Ok((rest, Item::Authorization(policy)));
            }
            if let Some(rest) = self.target_line(i, &mut policy.target, "authorization")? {
                i = rest;
                continue;
            }
            i = match self.word(i) {
                Some((rest, "action")) => {
                    if policy.action.is_some() {
                        return Err(self.repeated_once(i, "action", "authorization"));
                    }
                    let action = match self.word(rest) {
                        Some((_, "allow")) => spec::AuthzAction::Allow,
                        Some((_, "deny")) => spec::AuthzAction::Deny,
                        Some((_, "audit")) => spec::AuthzAction::Audit,
                        _ => return self.error(rest, "an action (allow, deny, audit)"),
                    };
                    let (rest, w) = self
                        .word(rest)
                        .ok_or_else(|| self.syntax_error(rest, "an action"))?;
                    policy.action = Some((action, self.span_of(w)));
                    rest
                }
                Some((rest, w @ "rule")) => {
                    let (rest, rule) = self.authz_rule(rest, self.span_of(w))?;
                    policy.rules.push(rule);
                    rest
                }
                _ => {
                    return self.error(i, "`namespace`, `workloads`, `action`, `rule` or `}`");
                }
            };
        }
    }

    /// `rule { from { ... } to { ... } when "KEY" = "v", ... }`.
    fn authz_rule(&self, i: &'s str, span: Span) -> PResult<'s, AuthzRule> {
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut rule = AuthzRule {
            span,
            ..AuthzRule::default()
        };
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return Ok((rest, rule));
            }
            i = match self.word(i) {
                Some((rest, w @ "from")) => {
                    let (rest, source) = self.authz_from(rest, self.span_of(w))?;
                    rule.from.push(source);
                    rest
                }
                Some((rest, w @ "to")) => {
                    let (rest, op) = self.authz_to(rest, self.span_of(w))?;
                    rule.to.push(op);
                    rest
                }
                Some((rest, "when")) => {
                    let start = skip(i);
                    let (rest, key) = self.string(rest, "an attribute name in double quotes")?;
                    let (rest, negated) = if let Some((rest, _)) = self.punct(rest, "!=") {
                        (rest, true)
                    } else if let Some((rest, _)) = self.punct(rest, "=") {
                        (rest, false)
                    } else {
                        return self.error(rest, "`=` or `!=`");
                    };
                    let (rest, values) = self.string_list(rest, "a value in double quotes")?;
                    let (values, not_values) = if negated {
                        (Vec::new(), values)
                    } else {
                        (values, Vec::new())
                    };
                    rule.when.push(AuthzWhen {
                        span: self.span_between(start, rest),
                        key,
                        values,
                        not_values,
                    });
                    rest
                }
                _ => return self.error(i, "`from`, `to`, `when` or `}`"),
            };
        }
    }

    fn authz_from(&self, i: &'s str, span: Span) -> PResult<'s, AuthzSource> {
        const FIELDS: &str = "`principals`, `not_principals`, `request_principals`, \
                              `not_request_principals`, `namespaces`, `not_namespaces`, \
                              `ip_blocks`, `not_ip_blocks` or `}`";
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut source = AuthzSource {
            span,
            ..AuthzSource::default()
        };
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return Ok((rest, source));
            }
            let Some((rest, word)) = self.word(i) else {
                return self.error(i, FIELDS);
            };
            let field = match word {
                "principals" => &mut source.principals,
                "not_principals" => &mut source.not_principals,
                "request_principals" => &mut source.request_principals,
                "not_request_principals" => &mut source.not_request_principals,
                "namespaces" => &mut source.namespaces,
                "not_namespaces" => &mut source.not_namespaces,
                "ip_blocks" => &mut source.ip_blocks,
                "not_ip_blocks" => &mut source.not_ip_blocks,
                _ => return self.error(i, FIELDS),
            };
            let (rest, values) = self.string_list(rest, "a value in double quotes")?;
            field.extend(values);
            i = rest;
        }
    }

    fn authz_to(&self, i: &'s str, span: Span) -> PResult<'s, AuthzOperation> {
        const FIELDS: &str = "`hosts`, `not_hosts`, `methods`, `not_methods`, `paths`, \
                              `not_paths`, `ports`, `not_ports` or `}`";
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut op = AuthzOperation {
            span,
            ..AuthzOperation::default()
        };
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return Ok((rest, op));
            }
            let Some((rest, word)) = self.word(i) else {
                return self.error(i, FIELDS);
            };
            let ports = match word {
                "ports" => Some(&mut op.ports),
                "not_ports" => Some(&mut op.not_ports),
                _ => None,
            };
            if let Some(ports) = ports {
                let (rest, numbers) = self.number_list(rest, "a port number")?;
                ports.extend(numbers);
                i = rest;
                continue;
            }
            let field = match word {
                "hosts" => &mut op.hosts,
                "not_hosts" => &mut op.not_hosts,
                "methods" => &mut op.methods,
                "not_methods" => &mut op.not_methods,
                "paths" => &mut op.paths,
                "not_paths" => &mut op.not_paths,
                _ => return self.error(i, FIELDS),
            };
            let (rest, values) = self.string_list(rest, "a value in double quotes")?;
            field.extend(values);
            i = rest;
        }
    }

    fn authentication(&self, i: &'s str, keyword: Span) -> PResult<'s, Item> {
        let (i, name) = self.ident(i, "an authentication policy name")?;
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut policy = Authentication {
            keyword,
            name,
            target: PolicyTarget::default(),
            jwt: Vec::new(),
        };
        loop {
            if !policy.jwt.is_empty() {
                if let Some((rest, _)) = self.punct(i, "}") {
                    return Ok((rest, Item::Authentication(policy)));
                }
            }
            if let Some(rest) = self.target_line(i, &mut policy.target, "authentication")? {
                i = rest;
                continue;
            }
            i =
                match self.word(i) {
                    Some((rest, w @ "jwt")) => {
                        let (rest, rule) = self.jwt(rest, self.span_of(w))?;
                        policy.jwt.push(rule);
                        rest
                    }
                    _ if policy.jwt.is_empty() => return self.error(
                        i,
                        "`namespace`, `workloads` or `jwt` (an authentication needs a `jwt` block)",
                    ),
                    _ => return self.error(i, "`namespace`, `workloads`, `jwt` or `}`"),
                };
        }
    }

    /// `jwt { issuer "..." audiences "a", "b" jwks "path" }`; `issuer` and `jwks` are required.
    fn jwt(&self, i: &'s str, span: Span) -> PResult<'s, JwtRule> {
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut issuer: Option<Str> = None;
        let mut jwks: Option<Str> = None;
        let mut audiences = Vec::new();
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return match (issuer, jwks) {
                    (Some(issuer), Some(jwks)) => Ok((
                        rest,
                        JwtRule {
                            span,
                            issuer,
                            audiences,
                            jwks,
                        },
                    )),
                    (None, _) => self.error(i, "`issuer` (a jwt block needs an issuer)"),
                    (_, None) => self.error(i, "`jwks` (a jwt block needs a JWKS file)"),
                };
            }
            i = match self.word(i) {
                Some((rest, "issuer")) => {
                    if issuer.is_some() {
                        return Err(self.repeated_once(i, "issuer", "jwt block"));
                    }
                    let (rest, s) = self.string(rest, "an issuer in double quotes")?;
                    issuer = Some(s);
                    rest
                }
                Some((rest, "jwks")) => {
                    if jwks.is_some() {
                        return Err(self.repeated_once(i, "jwks", "jwt block"));
                    }
                    let (rest, s) = self.string(rest, "a JWKS file path in double quotes")?;
                    jwks = Some(s);
                    rest
                }
                Some((rest, "audiences")) => {
                    let (rest, list) = self.string_list(rest, "an audience in double quotes")?;
                    audiences.extend(list);
                    rest
                }
                _ => return self.error(i, "`issuer`, `audiences`, `jwks` or `}`"),
            };
        }
    }

    fn peer_authentication(&self, i: &'s str, keyword: Span) -> PResult<'s, Item> {
        let (i, name) = self.ident(i, "a peer authentication name")?;
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut policy = PeerAuthentication {
            keyword,
            name,
            target: PolicyTarget::default(),
            mode: None,
            port_modes: Vec::new(),
            origin: crate::ast::Origin::Mesh,
        };
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return Ok((rest, Item::PeerAuthentication(policy)));
            }
            if let Some(rest) = self.target_line(i, &mut policy.target, "peer_authentication")? {
                i = rest;
                continue;
            }
            i = match self.word(i) {
                Some((rest, "mode")) => {
                    if policy.mode.is_some() {
                        return Err(self.repeated_once(i, "mode", "peer_authentication"));
                    }
                    let (rest, mode) = self.tls_mode(rest)?;
                    policy.mode = Some(mode);
                    rest
                }
                Some((rest, "port")) => {
                    let (rest, port) = self.number(rest, "a port number")?;
                    let (rest, mode) = self.tls_mode(rest)?;
                    policy.port_modes.push((port, mode));
                    rest
                }
                _ => return self.error(i, "`namespace`, `workloads`, `mode`, `port` or `}`"),
            };
        }
    }
}

#[cfg(test)]
mod tests;
