//! The traffic part of the grammar: service and subset `policy` blocks, route rules with their
//! `match` conditions and actions (timeout, retries, fault, header edits, rewrite, redirect,
//! mirror, rate limit), and the duration and percentage lexemes they use.

use nom::bytes::complete::take_while1;
use nom::{Offset as _, Parser as _};

use super::{skip, Lex, PResult, Parser, SyntaxError};
use crate::ast::{
    Condition, Destination, Duration, Fault, HashKey, HeaderEdits, Ident, LbKind, LoadBalancer,
    Match, Mirror, Number, Outlier, Percent, Policy, Pool, RateLimit, Redirect, Retries, Rewrite,
    Rule, Str, ValueCondition,
};
use crate::diag::{Code, Span};

/// What a rule body may hold, for "expected ..." messages.
const RULE_ITEMS: &str = "`match`, `to`, `}` or an action (`timeout`, `retries`, `fault`, \
                          `request_headers`, `response_headers`, `rewrite`, `redirect`, `mirror`, \
                          `rate_limit`)";

/// What a duration looks like, for "expected ..." messages.
const DURATION: &str = "a duration with a unit (e.g. 500ms, 2s, 1m, 1h)";

/// What a percentage looks like, for "expected ..." messages.
const PERCENT: &str = "a percentage (e.g. 10% or 0.5%, at most 4 decimals)";

/// Milliseconds of a duration written `DIGITS(ms|s|m|h)`, saturating; `None` when malformed.
pub(crate) fn duration_millis(text: &str) -> Option<u64> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let value: u64 = text[..digits].parse().unwrap_or(u64::MAX);
    let factor = match &text[digits..] {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(value.saturating_mul(factor))
}

/// Millionths of a percentage written `DIGITS[.DIGITS]%` (at most 4 decimals), saturating;
/// `None` when malformed.
pub(crate) fn percent_per_million(text: &str) -> Option<u64> {
    let number = text.strip_suffix('%')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || fraction.len() > 4 {
        return None;
    }
    if number.contains('.') && fraction.is_empty() {
        return None;
    }
    let whole: u64 = whole.parse().unwrap_or(u64::MAX);
    let fraction: u64 = format!("{fraction:0<4}").parse().unwrap_or(0);
    Some(whole.saturating_mul(10_000).saturating_add(fraction))
}

/// 1-based line of a byte offset, for "first at line N" in duplicate messages.
fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

impl<'s> Parser<'s> {
    /// A repeated setting: E0103 at the second keyword, naming the first.
    fn repeated(&self, keyword: &'s str, first: Span, block: &str) -> SyntaxError {
        let span = self.span_of(keyword);
        SyntaxError {
            span,
            custom: Some((
                Code::Duplicate,
                format!(
                    "`{keyword}` is set more than once in {block} (first at line {})",
                    line_of(self.src, first.start)
                ),
            )),
            help: Some("remove one of them".to_owned()),
            ..SyntaxError::default()
        }
    }

    /// Records `keyword` as set in a block, or reports it as set before.
    fn once(
        &self,
        seen: &mut Vec<(&'s str, Span)>,
        keyword: &'s str,
        block: &str,
    ) -> Result<(), SyntaxError> {
        if let Some(&(_, first)) = seen.iter().find(|(k, _)| *k == keyword) {
            return Err(self.repeated(keyword, first, block));
        }
        seen.push((keyword, self.span_of(keyword)));
        Ok(())
    }

    /// `{ SETTING... }`: calls `setting(keyword, rest)` for every word until `}`; it returns the
    /// input after the setting, or `None` for a word it does not know. When `once`, every
    /// keyword may appear at most once. Returns the input after `}` and the span of the braces.
    fn settings(
        &self,
        i: &'s str,
        block: &str,
        expected: &str,
        once: bool,
        mut setting: impl FnMut(&'s str, &'s str) -> Result<Option<&'s str>, SyntaxError>,
    ) -> PResult<'s, Span> {
        let (mut i, open) = self.expect_punct(i, "{")?;
        let mut seen = Vec::new();
        loop {
            if let Some((rest, close)) = self.punct(i, "}") {
                return Ok((rest, Span::new(open.start, close.end)));
            }
            let Some((rest, keyword)) = self.word(i) else {
                return self.error(i, expected);
            };
            let Some(rest) = setting(keyword, rest)? else {
                return self.error(i, expected);
            };
            if once {
                self.once(&mut seen, keyword, block)?;
            }
            i = rest;
        }
    }

    /// `DIGITS(ms|s|m|h)`.
    pub(super) fn duration(&self, i: &'s str) -> PResult<'s, Duration> {
        let i = skip(i);
        let token: Lex<'_, &str> = take_while1(|c: char| c.is_ascii_alphanumeric()).parse(i);
        match token {
            Ok((rest, t)) if !rest.starts_with(super::is_ident_char) => match duration_millis(t) {
                Some(millis) => Ok((
                    rest,
                    Duration {
                        millis,
                        span: self.span_of(t),
                    },
                )),
                None => self.error(i, DURATION),
            },
            _ => self.error(i, DURATION),
        }
    }

    /// An optional percentage: present when the next token starts with a digit.
    pub(super) fn opt_percent(&self, i: &'s str) -> PResult<'s, Option<Percent>> {
        let i = skip(i);
        if !i.starts_with(|c: char| c.is_ascii_digit()) {
            return Ok((i, None));
        }
        let token: Lex<'_, &str> = take_while1(|c: char| c.is_ascii_digit() || c == '.').parse(i);
        let Ok((rest, number)) = token else {
            return self.error(i, PERCENT);
        };
        let Some(rest) = rest.strip_prefix('%') else {
            return self.error(i, PERCENT);
        };
        let text = &i[..number.len() + 1];
        match percent_per_million(text) {
            Some(per_million) if !rest.starts_with(super::is_ident_char) => Ok((
                rest,
                Some(Percent {
                    per_million,
                    span: self.span_of(text),
                }),
            )),
            _ => self.error(i, PERCENT),
        }
    }

    /// `SERVICE[/SUBSET]`.
    fn destination_name(&self, i: &'s str) -> PResult<'s, (Ident, Option<Ident>)> {
        let (rest, service) = self.ident(i, "a service name")?;
        match self.punct(rest, "/") {
            Some((after, _)) => {
                let (after, subset) = self.ident(after, "a subset name")?;
                Ok((after, (service, Some(subset))))
            }
            None => Ok((rest, (service, None))),
        }
    }

    /// Whether a `policy` keyword after a subset's labels is on the same line (it belongs to
    /// the subset then; on a later line it is the service's own policy).
    pub(super) fn subset_policy(&self, i: &'s str) -> Option<(&'s str, Span)> {
        let (rest, keyword) = self.keyword(i, "policy")?;
        let between = &self.src[self.src.offset(i)..keyword.start];
        (!between.contains('\n')).then_some((rest, keyword))
    }

    /// `policy { load_balancer ... pool { ... } outlier { ... } }` after the keyword.
    pub(super) fn policy(&self, i: &'s str, keyword: Span, block: &str) -> PResult<'s, Policy> {
        let mut policy = Policy {
            span: keyword,
            ..Policy::default()
        };
        let (rest, _) = self.settings(
            i,
            &format!("the policy of {block}"),
            "`load_balancer`, `pool`, `outlier` or `}`",
            true,
            |kw, rest| {
                Ok(Some(match kw {
                    "load_balancer" => {
                        let (rest, lb) = self.load_balancer(rest, self.span_of(kw))?;
                        policy.load_balancer = Some(lb);
                        rest
                    }
                    "pool" => {
                        let (rest, pool) = self.pool(rest, self.span_of(kw))?;
                        policy.pool = Some(pool);
                        rest
                    }
                    "outlier" => {
                        let (rest, outlier) = self.outlier(rest, self.span_of(kw))?;
                        policy.outlier = Some(outlier);
                        rest
                    }
                    _ => return Ok(None),
                }))
            },
        )?;
        Ok((rest, policy))
    }

    fn load_balancer(&self, i: &'s str, keyword: Span) -> PResult<'s, LoadBalancer> {
        const KINDS: &str =
            "a load balancer (round_robin, random, least_request, ring_hash, maglev)";
        let kind = match self.word(i) {
            Some((rest, "round_robin")) => (rest, LbKind::RoundRobin),
            Some((rest, "random")) => (rest, LbKind::Random),
            Some((rest, "least_request")) => (rest, LbKind::LeastRequest),
            Some((rest, "ring_hash")) => (rest, LbKind::RingHash),
            Some((rest, "maglev")) => (rest, LbKind::Maglev),
            _ => return self.error(i, KINDS),
        };
        let (mut i, kind) = kind;
        let mut key = None;
        match self.word(i) {
            Some((rest, "header")) => {
                let (rest, name) = self.string(rest, "a header name in double quotes")?;
                (i, key) = (rest, Some(HashKey::Header(name)));
            }
            Some((rest, "cookie")) => {
                let (mut rest, name) = self.string(rest, "a cookie name in double quotes")?;
                let mut ttl = None;
                if let Some((after, _)) = self.keyword(rest, "ttl") {
                    let (after, d) = self.duration(after)?;
                    (rest, ttl) = (after, Some(d));
                }
                (i, key) = (rest, Some(HashKey::Cookie { name, ttl }));
            }
            Some((rest, w @ "source_ip")) => {
                (i, key) = (rest, Some(HashKey::SourceIp(self.span_of(w))));
            }
            _ => {}
        }
        let mut minimum_ring_size = None;
        if let Some((rest, _)) = self.keyword(i, "min_ring_size") {
            let (rest, n) = self.number(rest, "a minimum ring size")?;
            (i, minimum_ring_size) = (rest, Some(n));
        }
        Ok((
            i,
            LoadBalancer {
                kind,
                key,
                minimum_ring_size,
                span: Span::new(keyword.start, self.src.offset(i)),
            },
        ))
    }

    fn pool(&self, i: &'s str, keyword: Span) -> PResult<'s, Pool> {
        let mut pool = Pool {
            span: keyword,
            ..Pool::default()
        };
        let (rest, _) = self.settings(
            i,
            "this `pool` block",
            "`max_connections`, `max_pending`, `max_requests_per_connection`, `idle_timeout`, \
             `connect_timeout`, `tcp_idle_timeout` or `}`",
            true,
            |kw, rest| {
                Ok(Some(match kw {
                    "max_connections" | "max_pending" | "max_requests_per_connection" => {
                        let (rest, n) = self.number(rest, "a number")?;
                        match kw {
                            "max_connections" => pool.max_connections = Some(n),
                            "max_pending" => pool.max_pending = Some(n),
                            _ => pool.max_requests_per_connection = Some(n),
                        }
                        rest
                    }
                    "idle_timeout" | "connect_timeout" | "tcp_idle_timeout" => {
                        let (rest, d) = self.duration(rest)?;
                        match kw {
                            "idle_timeout" => pool.idle_timeout = Some(d),
                            "connect_timeout" => pool.connect_timeout = Some(d),
                            _ => pool.tcp_idle_timeout = Some(d),
                        }
                        rest
                    }
                    _ => return Ok(None),
                }))
            },
        )?;
        Ok((rest, pool))
    }

    fn outlier(&self, i: &'s str, keyword: Span) -> PResult<'s, Outlier> {
        let mut outlier = Outlier {
            span: keyword,
            ..Outlier::default()
        };
        let (rest, _) = self.settings(
            i,
            "this `outlier` block",
            "`consecutive_5xx`, `consecutive_gateway_errors`, `interval`, `base_ejection`, \
             `max_ejection_percent` or `}`",
            true,
            |kw, rest| {
                Ok(Some(match kw {
                    "consecutive_5xx" | "consecutive_gateway_errors" | "max_ejection_percent" => {
                        let (rest, n) = self.number(rest, "a number")?;
                        match kw {
                            "consecutive_5xx" => outlier.consecutive_5xx = Some(n),
                            "consecutive_gateway_errors" => {
                                outlier.consecutive_gateway_errors = Some(n);
                            }
                            _ => outlier.max_ejection_percent = Some(n),
                        }
                        rest
                    }
                    "interval" | "base_ejection" => {
                        let (rest, d) = self.duration(rest)?;
                        if kw == "interval" {
                            outlier.interval = Some(d);
                        } else {
                            outlier.base_ejection = Some(d);
                        }
                        rest
                    }
                    _ => return Ok(None),
                }))
            },
        )?;
        Ok((rest, outlier))
    }

    /// `rule NAME { ... }` after the keyword.
    pub(super) fn rule(&self, i: &'s str, keyword: Span) -> PResult<'s, Rule> {
        let (i, name) = self.ident(i, "a rule name")?;
        let (mut i, _) = self.expect_punct(i, "{")?;
        let block = format!("rule `{}`", name.name);
        let mut rule = Rule {
            keyword,
            name,
            ..Rule::default()
        };
        let mut seen = Vec::new();
        loop {
            let needs_target = rule.destinations.is_empty() && rule.redirect.is_none();
            if let Some((rest, _)) = self.punct(i, "}") {
                if !needs_target {
                    return Ok((rest, rule));
                }
            }
            let Some((rest, kw)) = self.word(i) else {
                return self.rule_error(i, needs_target);
            };
            let kw_span = self.span_of(kw);
            if !matches!(kw, "match" | "to") && RULE_ACTIONS.contains(&kw) {
                self.once(&mut seen, kw, &block)?;
            }
            i = match kw {
                "match" => {
                    let (mut rest, first) = self.condition(rest)?;
                    let mut conditions = vec![first];
                    while let Some((after, _)) = self.keyword(rest, "and") {
                        let (after, next) = self.condition(after)?;
                        conditions.push(next);
                        rest = after;
                    }
                    rule.matches.push(Match { conditions });
                    rest
                }
                "to" => {
                    let (mut rest, (service, subset)) = self.destination_name(rest)?;
                    let mut weight = None;
                    if let Some((after, _)) = self.keyword(rest, "weight") {
                        let (after, w) = self.number(after, "a weight")?;
                        (rest, weight) = (after, Some(w));
                    }
                    rule.destinations.push(Destination {
                        service,
                        subset,
                        weight,
                        span: Span::new(kw_span.start, self.src.offset(rest)),
                    });
                    rest
                }
                "timeout" => {
                    let (rest, d) = self.duration(rest)?;
                    rule.timeout = Some(d);
                    rest
                }
                "retries" => {
                    let (rest, r) = self.retries(rest, kw_span)?;
                    rule.retries = Some(r);
                    rest
                }
                "fault" => {
                    let (rest, f) = self.fault(rest, kw_span)?;
                    rule.fault = Some(f);
                    rest
                }
                "request_headers" | "response_headers" => {
                    let (rest, edits) = self.header_edits(rest, kw_span, kw)?;
                    if kw == "request_headers" {
                        rule.request_headers = Some(edits);
                    } else {
                        rule.response_headers = Some(edits);
                    }
                    rest
                }
                "rewrite" => {
                    let (rest, r) = self.rewrite(rest, kw_span)?;
                    rule.rewrite = Some(r);
                    rest
                }
                "redirect" => {
                    let (rest, r) = self.redirect(rest, kw_span)?;
                    rule.redirect = Some(r);
                    rest
                }
                "mirror" => {
                    let (rest, (service, subset)) = self.destination_name(rest)?;
                    let (rest, percent) = self.opt_percent(rest)?;
                    rule.mirror = Some(Mirror {
                        span: Span::new(kw_span.start, self.src.offset(rest)),
                        service,
                        subset,
                        percent,
                    });
                    rest
                }
                "rate_limit" => {
                    let (rest, limit) = self.rate_limit(rest, kw_span)?;
                    rule.rate_limit = Some(limit);
                    rest
                }
                _ => return self.rule_error(i, needs_target),
            };
        }
    }

    fn rule_error<T>(&self, i: &'s str, needs_target: bool) -> PResult<'s, T> {
        if needs_target {
            self.error(
                i,
                format!("{RULE_ITEMS} (a rule needs at least one `to`, or a `redirect`)"),
            )
        } else {
            self.error(i, RULE_ITEMS)
        }
    }

    fn condition(&self, i: &'s str) -> PResult<'s, Condition> {
        let start = skip(i);
        match self.word(i) {
            Some((rest, "path")) => {
                let Some((rest, kind @ ("exact" | "prefix" | "regex"))) = self.word(rest) else {
                    return self.error(rest, "`exact`, `prefix` or `regex`");
                };
                let what = if kind == "regex" {
                    "a regex in double quotes"
                } else {
                    "a path in double quotes"
                };
                let (rest, value) = self.string(rest, what)?;
                let span = self.span_between(start, rest);
                let condition = match kind {
                    "exact" => Condition::PathExact { value, span },
                    "prefix" => Condition::PathPrefix { value, span },
                    _ => Condition::PathRegex { value, span },
                };
                Ok((rest, condition))
            }
            Some((rest, "method")) => {
                let (rest, value) = match self.word(rest) {
                    Some((after, "prefix")) => {
                        let (after, s) = self.string(after, "a method prefix in double quotes")?;
                        (after, ValueCondition::Prefix(s))
                    }
                    Some((after, "regex")) => {
                        let (after, s) = self.string(after, "a regex in double quotes")?;
                        (after, ValueCondition::Regex(s))
                    }
                    Some((after, method)) => {
                        let value = Str {
                            value: method.to_owned(),
                            span: self.span_of(method),
                        };
                        (after, ValueCondition::Exact(value))
                    }
                    None => {
                        return self.error(
                            rest,
                            "a method (e.g. GET), `prefix \"...\"` or `regex \"...\"`",
                        )
                    }
                };
                let span = self.span_between(start, rest);
                Ok((rest, Condition::Method { value, span }))
            }
            Some((rest, kind @ ("header" | "query"))) => {
                let what = if kind == "header" {
                    "a header name in double quotes"
                } else {
                    "a query parameter name in double quotes"
                };
                let (rest, name) = self.string(rest, what)?;
                let (rest, value) = self.value_condition(rest, kind)?;
                let condition = if kind == "header" {
                    Condition::Header { name, value }
                } else {
                    Condition::Query { name, value }
                };
                Ok((rest, condition))
            }
            _ => self.error(i, "a condition (`path`, `method`, `header` or `query`)"),
        }
    }

    /// `= "v"`, `prefix "v"`, `regex "v"`, `present` or `absent`.
    fn value_condition(&self, i: &'s str, kind: &str) -> PResult<'s, ValueCondition> {
        let what = format!("a {kind} value in double quotes");
        if let Some((rest, _)) = self.punct(i, "=") {
            let (rest, s) = self.string(rest, &what)?;
            return Ok((rest, ValueCondition::Exact(s)));
        }
        match self.word(i) {
            Some((rest, "prefix")) => {
                let (rest, s) = self.string(rest, &what)?;
                Ok((rest, ValueCondition::Prefix(s)))
            }
            Some((rest, "regex")) => {
                let (rest, s) = self.string(rest, "a regex in double quotes")?;
                Ok((rest, ValueCondition::Regex(s)))
            }
            Some((rest, w @ "present")) => Ok((rest, ValueCondition::Present(self.span_of(w)))),
            Some((rest, w @ "absent")) => Ok((rest, ValueCondition::Absent(self.span_of(w)))),
            _ => self.error(i, "`=`, `prefix`, `regex`, `present` or `absent`"),
        }
    }

    fn retries(&self, i: &'s str, keyword: Span) -> PResult<'s, Retries> {
        let mut retries = Retries {
            span: keyword,
            ..Retries::default()
        };
        let (rest, _) = self.settings(
            i,
            "this `retries` block",
            "`attempts`, `per_try_timeout`, `on`, `backoff`, `max_backoff`, `non_idempotent` or `}`",
            true,
            |kw, rest| {
                Ok(Some(match kw {
                    "attempts" => {
                        let (rest, n) = self.number(rest, "a number of retries")?;
                        retries.attempts = Some(n);
                        rest
                    }
                    "per_try_timeout" | "backoff" | "max_backoff" => {
                        let (rest, d) = self.duration(rest)?;
                        match kw {
                            "per_try_timeout" => retries.per_try_timeout = Some(d),
                            "backoff" => retries.backoff = Some(d),
                            _ => retries.max_backoff = Some(d),
                        }
                        rest
                    }
                    "on" => {
                        let (mut rest, first) = self.retry_condition(rest)?;
                        retries.retry_on.push(first);
                        while let Some((after, _)) = self.punct(rest, ",") {
                            let (after, next) = self.retry_condition(after)?;
                            retries.retry_on.push(next);
                            rest = after;
                        }
                        rest
                    }
                    "non_idempotent" => {
                        retries.non_idempotent = Some(self.span_of(kw));
                        rest
                    }
                    _ => return Ok(None),
                }))
            },
        )?;
        Ok((rest, retries))
    }

    /// A retry condition name (`5xx`, `gateway-error`, ...) or status code, unchecked.
    fn retry_condition(&self, i: &'s str) -> PResult<'s, Str> {
        let i = skip(i);
        let token: Lex<'_, &str> =
            take_while1(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_').parse(i);
        match token {
            Ok((rest, t)) => Ok((
                rest,
                Str {
                    value: t.to_owned(),
                    span: self.span_of(t),
                },
            )),
            Err(_) => self.error(
                i,
                "a retry condition (5xx, gateway-error, reset, connect-failure, \
                 retriable-status-codes or a status code)",
            ),
        }
    }

    fn fault(&self, i: &'s str, keyword: Span) -> PResult<'s, Fault> {
        let mut fault = Fault {
            span: keyword,
            ..Fault::default()
        };
        let (rest, _) = self.settings(
            i,
            "this `fault` block",
            "`delay`, `abort` or `}`",
            true,
            |kw, rest| {
                Ok(Some(match kw {
                    "delay" => {
                        let (rest, d) = self.duration(rest)?;
                        let (rest, p) = self.opt_percent(rest)?;
                        fault.delay = Some((d, p));
                        rest
                    }
                    "abort" => {
                        let (rest, n) = self.number(rest, "an HTTP status")?;
                        let (rest, p) = self.opt_percent(rest)?;
                        fault.abort = Some((n, p));
                        rest
                    }
                    _ => return Ok(None),
                }))
            },
        )?;
        Ok((rest, fault))
    }

    fn header_edits(&self, i: &'s str, keyword: Span, kw: &str) -> PResult<'s, HeaderEdits> {
        let mut edits = HeaderEdits {
            span: keyword,
            ..HeaderEdits::default()
        };
        let (rest, _) = self.settings(
            i,
            &format!("this `{kw}` block"),
            "`set`, `add`, `remove` or `}`",
            false,
            |kw, rest| {
                Ok(Some(match kw {
                    "set" | "add" => {
                        let (rest, name) = self.string(rest, "a header name in double quotes")?;
                        let (rest, _) = self.expect_punct(rest, "=")?;
                        let (rest, value) = self.string(rest, "a header value in double quotes")?;
                        if kw == "set" {
                            edits.set.push((name, value));
                        } else {
                            edits.add.push((name, value));
                        }
                        rest
                    }
                    "remove" => {
                        let (rest, name) = self.string(rest, "a header name in double quotes")?;
                        edits.remove.push(name);
                        rest
                    }
                    _ => return Ok(None),
                }))
            },
        )?;
        Ok((rest, edits))
    }

    fn rewrite(&self, i: &'s str, keyword: Span) -> PResult<'s, Rewrite> {
        let mut rewrite = Rewrite {
            span: keyword,
            ..Rewrite::default()
        };
        let (rest, _) = self.settings(
            i,
            "this `rewrite` block",
            "`prefix`, `regex`, `authority` or `}`",
            true,
            |kw, rest| {
                Ok(Some(match kw {
                    "prefix" => {
                        let (rest, s) = self.string(rest, "a path prefix in double quotes")?;
                        rewrite.prefix = Some(s);
                        rest
                    }
                    "regex" => {
                        let (rest, pattern) = self.string(rest, "a regex in double quotes")?;
                        let (rest, substitution) =
                            self.string(rest, "a substitution in double quotes")?;
                        rewrite.regex = Some((pattern, substitution));
                        rest
                    }
                    "authority" => {
                        let (rest, s) = self.string(rest, "a host in double quotes")?;
                        rewrite.authority = Some(s);
                        rest
                    }
                    _ => return Ok(None),
                }))
            },
        )?;
        Ok((rest, rewrite))
    }

    fn redirect(&self, i: &'s str, keyword: Span) -> PResult<'s, Redirect> {
        let mut redirect = Redirect {
            span: keyword,
            ..Redirect::default()
        };
        let (rest, _) = self.settings(
            i,
            "this `redirect` block",
            "`scheme`, `host`, `port`, `path`, `code` or `}`",
            true,
            |kw, rest| {
                Ok(Some(match kw {
                    "scheme" | "host" | "path" => {
                        let (rest, s) = self.string(rest, &format!("a {kw} in double quotes"))?;
                        match kw {
                            "scheme" => redirect.scheme = Some(s),
                            "host" => redirect.authority = Some(s),
                            _ => redirect.path = Some(s),
                        }
                        rest
                    }
                    "port" => {
                        let (rest, n) = self.number(rest, "a port number")?;
                        redirect.port = Some(n);
                        rest
                    }
                    "code" => {
                        let (rest, n) = self.number(rest, "a redirect status")?;
                        redirect.code = Some(n);
                        rest
                    }
                    _ => return Ok(None),
                }))
            },
        )?;
        Ok((rest, redirect))
    }

    /// `rate_limit N per DURATION [burst M] [per_source]` after the keyword.
    fn rate_limit(&self, i: &'s str, keyword: Span) -> PResult<'s, RateLimit> {
        let (rest, requests) = self.number(i, "a number of requests")?;
        let Some((rest, _)) = self.keyword(rest, "per") else {
            return self.error(rest, "`per`");
        };
        let (mut rest, per) = self.duration(rest)?;
        let mut burst = None;
        if let Some((after, _)) = self.keyword(rest, "burst") {
            let (after, n): (&'s str, Number) = self.number(after, "a burst size")?;
            (rest, burst) = (after, Some(n));
        }
        let mut per_source = None;
        if let Some((after, span)) = self.keyword(rest, "per_source") {
            (rest, per_source) = (after, Some(span));
        }
        Ok((
            rest,
            RateLimit {
                span: Span::new(keyword.start, self.src.offset(rest)),
                requests,
                per,
                burst,
                per_source,
            },
        ))
    }
}

/// Rule actions, each allowed once per rule.
const RULE_ACTIONS: [&str; 9] = [
    "timeout",
    "retries",
    "fault",
    "request_headers",
    "response_headers",
    "rewrite",
    "redirect",
    "mirror",
    "rate_limit",
];

#[cfg(test)]
mod tests;
