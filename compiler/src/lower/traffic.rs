//! Lowering of the traffic part of the language: service and subset policies, `match`
//! conditions and rule actions. Every value is range-checked here and every regex compiled.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use spec::{
    FaultAbort, FaultDelay, FaultInjection, HashKey, HeaderMatch, HeaderOps, HeaderValue,
    LoadBalancer, OutlierDetection, PathMatch, PoolLimits, QueryMatch, RateLimit, Redirect,
    RegexRewrite, RequestMatch, RetryOn, RetryPolicy, Rewrite, RouteRule, TrafficPolicy,
    ValueMatch,
};

use super::{Lowerer, ServiceIndex};
use crate::ast;
use crate::diag::{did_you_mean, Code, FileId, Span};

/// Headers meshd writes itself (framing and hop-by-hop); rules may not edit them.
const FRAMING_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// Retry condition names, as written.
const RETRY_NAMES: [&str; 10] = [
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "resource-exhausted",
    "internal",
    "unavailable",
];

/// The gRPC status a gRPC retry condition names.
fn grpc_retry_on(name: &str) -> Option<u8> {
    spec::GRPC_RETRY_ON
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, status)| status)
}

/// Redirect statuses.
const REDIRECT_CODES: [u64; 5] = [301, 302, 303, 307, 308];

/// 100% in millionths.
const ALL: u64 = 1_000_000;

/// Whether `s` is an HTTP token (header names, methods, cookie names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a retry condition is written as a number (possibly negative: out of range).
fn is_status_like(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The first line of a regex error that says what is wrong.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim())
        .to_owned()
}

fn hash_key_span(key: &ast::HashKey) -> Span {
    match key {
        ast::HashKey::Header(s) | ast::HashKey::Cookie { name: s, .. } => s.span,
        ast::HashKey::SourceIp(span) => *span,
    }
}

fn lb_name(kind: ast::LbKind) -> &'static str {
    match kind {
        ast::LbKind::RoundRobin => "round_robin",
        ast::LbKind::Random => "random",
        ast::LbKind::LeastRequest => "least_request",
        ast::LbKind::RingHash => "ring_hash",
        ast::LbKind::Maglev => "maglev",
    }
}

impl Lowerer<'_> {
    fn invalid(&mut self, file: FileId, span: Span, message: String, help: &str) {
        self.report(Code::InvalidValue, file, span, message, help);
    }

    /// `n` if it lies in `range`, else an E0002 naming `what` (and the low end of the range).
    fn ranged(
        &mut self,
        file: FileId,
        n: ast::Number,
        range: RangeInclusive<u64>,
        what: &str,
    ) -> u64 {
        if range.contains(&n.value) {
            return n.value;
        }
        let message = format!("{what} {} is out of range", n.value);
        let help = format!("{what} is {} to {}", range.start(), range.end());
        self.invalid(file, n.span, message, &help);
        *range.start()
    }

    /// `n` as a `u32` of at least 1.
    fn positive(&mut self, file: FileId, n: ast::Number, what: &str) -> u32 {
        self.ranged(file, n, 1..=u64::from(u32::MAX), what) as u32
    }

    /// A duration of at least 1ms, in milliseconds.
    fn millis(&mut self, file: FileId, d: ast::Duration, what: &str) -> u64 {
        if d.millis == 0 {
            let message = format!("{what} must be at least 1ms");
            self.invalid(
                file,
                d.span,
                message,
                "write a positive duration, e.g. 500ms or 2s",
            );
            return 1;
        }
        d.millis
    }

    /// A share of requests in millionths; `None` is 100%.
    fn share(&mut self, file: FileId, p: Option<ast::Percent>, what: &str) -> u32 {
        let Some(p) = p else {
            return ALL as u32;
        };
        if p.per_million > ALL {
            let message = format!("{what} percentage is above 100%");
            self.invalid(file, p.span, message, "percentages are 0% to 100%");
            return ALL as u32;
        }
        p.per_million as u32
    }

    /// Compiles a regex (anchored at both ends when `anchored`), reporting E0121 at the string.
    fn check_regex(&mut self, file: FileId, s: &ast::Str, anchored: bool) {
        let result = regex::Regex::new(&s.value).and_then(|_| {
            if anchored {
                regex::Regex::new(&format!("^(?:{})$", s.value)).map(|_| ())
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            let message = format!("invalid regex {:?}: {}", s.value, regex_error(&e));
            self.report(
                Code::InvalidRegex,
                file,
                s.span,
                message,
                "regexes use RE2 syntax (the Rust `regex` crate): no look-around or backreferences",
            );
        }
    }

    /// A header name, checked and lower-cased.
    pub(super) fn header_name(&mut self, file: FileId, name: &ast::Str) -> String {
        if !is_token(&name.value) {
            let message = format!("invalid header name {:?}", name.value);
            self.invalid(
                file,
                name.span,
                message,
                "header names are letters, digits and !#$%&'*+-.^_`|~",
            );
        }
        name.value.to_ascii_lowercase()
    }

    /// The service's policy (the first `policy` block; more are E0103).
    pub(super) fn service_policy(&mut self, file: FileId, s: &ast::Service) -> TrafficPolicy {
        let Some((first, rest)) = s.policies.split_first() else {
            return TrafficPolicy::default();
        };
        let first_file = first.file.unwrap_or(file);
        for again in rest {
            let at = self.at(first_file, first.span);
            let what = format!("the policy of service `{}`", s.name.name);
            self.duplicate(what, again.file.unwrap_or(file), again.span, at);
        }
        self.policy(first_file, first, &TrafficPolicy::default())
    }

    /// A subset's policy: the service's, with each setting the subset gives replacing it.
    pub(super) fn subset_policy(
        &mut self,
        file: FileId,
        service: &TrafficPolicy,
        subset: Option<&ast::Policy>,
    ) -> TrafficPolicy {
        match subset {
            None => service.clone(),
            Some(p) => self.policy(p.file.unwrap_or(file), p, service),
        }
    }

    fn policy(&mut self, file: FileId, p: &ast::Policy, base: &TrafficPolicy) -> TrafficPolicy {
        let load_balancer = match &p.load_balancer {
            Some(lb) => self.load_balancer(file, lb),
            None => base.load_balancer.clone(),
        };
        let pool = match &p.pool {
            Some(pool) => self.pool(file, pool),
            None => base.pool.clone(),
        };
        let outlier = match &p.outlier {
            Some(o) => Some(self.outlier(file, o)),
            None => base.outlier.clone(),
        };
        TrafficPolicy {
            load_balancer,
            pool,
            outlier,
        }
    }

    fn load_balancer(&mut self, file: FileId, lb: &ast::LoadBalancer) -> LoadBalancer {
        let name = lb_name(lb.kind);
        if let Some(n) = lb.minimum_ring_size {
            if lb.kind != ast::LbKind::RingHash {
                let message = format!("`min_ring_size` does not apply to `{name}`");
                let help = "only `ring_hash` has a ring; remove `min_ring_size`";
                self.report(Code::TrafficConflict, file, n.span, message, help);
            }
        }
        let hashed = matches!(lb.kind, ast::LbKind::RingHash | ast::LbKind::Maglev);
        let key = match &lb.key {
            Some(key) if !hashed => {
                let message = format!("load balancer `{name}` does not hash; it takes no key");
                let help = "remove the key, or use `ring_hash` or `maglev`";
                self.report(
                    Code::TrafficConflict,
                    file,
                    hash_key_span(key),
                    message,
                    help,
                );
                return LoadBalancer::RoundRobin;
            }
            Some(key) => self.hash_key(file, key),
            None if hashed => {
                let message = format!("load balancer `{name}` needs a hash key");
                let help = "add `header \"NAME\"`, `cookie \"NAME\" [ttl DURATION]` or `source_ip`";
                self.report(Code::MissingSetting, file, lb.span, message, help);
                return LoadBalancer::RoundRobin;
            }
            None => HashKey::SourceIp,
        };
        match lb.kind {
            ast::LbKind::RoundRobin => LoadBalancer::RoundRobin,
            ast::LbKind::Random => LoadBalancer::Random,
            ast::LbKind::LeastRequest => LoadBalancer::LeastRequest,
            ast::LbKind::RingHash => LoadBalancer::RingHash {
                key,
                minimum_ring_size: lb.minimum_ring_size.map_or(1024, |n| {
                    self.ranged(file, n, 1..=8_388_608, "`min_ring_size`")
                }),
            },
            ast::LbKind::Maglev => LoadBalancer::Maglev { key },
        }
    }

    fn hash_key(&mut self, file: FileId, key: &ast::HashKey) -> HashKey {
        match key {
            ast::HashKey::Header(name) => HashKey::Header(self.header_name(file, name)),
            ast::HashKey::Cookie { name, ttl } => {
                if !is_token(&name.value) {
                    let message = format!("invalid cookie name {:?}", name.value);
                    let help = "cookie names are letters, digits and !#$%&'*+-.^_`|~";
                    self.invalid(file, name.span, message, help);
                }
                HashKey::Cookie {
                    name: name.value.clone(),
                    ttl_ms: ttl.map(|d| self.millis(file, d, "the cookie `ttl`")),
                }
            }
            ast::HashKey::SourceIp(_) => HashKey::SourceIp,
        }
    }

    fn pool(&mut self, file: FileId, p: &ast::Pool) -> PoolLimits {
        PoolLimits {
            max_connections: p
                .max_connections
                .map(|n| self.positive(file, n, "`max_connections`")),
            max_pending_requests: p
                .max_pending
                .map(|n| self.positive(file, n, "`max_pending`")),
            max_requests_per_connection: p
                .max_requests_per_connection
                .map(|n| self.positive(file, n, "`max_requests_per_connection`")),
            idle_timeout_ms: p
                .idle_timeout
                .map(|d| self.millis(file, d, "`idle_timeout`")),
            connect_timeout_ms: p
                .connect_timeout
                .map(|d| self.millis(file, d, "`connect_timeout`")),
            // Zero never times out, as Envoy's TCP proxy reads it.
            tcp_idle_timeout_ms: p.tcp_idle_timeout.map(|d| d.millis),
        }
    }

    fn outlier(&mut self, file: FileId, o: &ast::Outlier) -> OutlierDetection {
        let neither = o.consecutive_5xx.is_none()
            && o.consecutive_gateway_errors.is_none()
            && !o.triggers_off;
        OutlierDetection {
            consecutive_5xx: if neither {
                Some(5)
            } else {
                o.consecutive_5xx
                    .map(|n| self.positive(file, n, "`consecutive_5xx`"))
            },
            consecutive_gateway_errors: o
                .consecutive_gateway_errors
                .map(|n| self.positive(file, n, "`consecutive_gateway_errors`")),
            interval_ms: o
                .interval
                .map_or(10_000, |d| self.millis(file, d, "`interval`")),
            base_ejection_ms: o
                .base_ejection
                .map_or(30_000, |d| self.millis(file, d, "`base_ejection`")),
            max_ejection_percent: o.max_ejection_percent.map_or(10, |n| {
                self.ranged(file, n, 0..=100, "`max_ejection_percent`") as u32
            }),
        }
    }

    /// One `match` line.
    pub(super) fn request_match(&mut self, file: FileId, m: &ast::Match) -> RequestMatch {
        let mut out = RequestMatch::default();
        let mut path_span: Option<Span> = None;
        let mut method_span: Option<Span> = None;
        for condition in &m.conditions {
            match condition {
                ast::Condition::PathExact { value, span }
                | ast::Condition::PathPrefix { value, span }
                | ast::Condition::PathRegex { value, span } => {
                    if let Some(first) = path_span {
                        let first = self.at(file, first);
                        let what = "a path condition in one `match` line".to_owned();
                        self.duplicate(what, file, *span, first);
                        continue;
                    }
                    path_span = Some(*span);
                    if let ast::Condition::PathRegex { .. } = condition {
                        self.check_regex(file, value, true);
                        out.path = Some(PathMatch::Regex(value.value.clone()));
                        continue;
                    }
                    if !value.value.starts_with('/') {
                        let message = format!("path `{}` does not start with `/`", value.value);
                        let help = "request paths start with `/`, e.g. \"/api\"";
                        self.invalid(file, value.span, message, help);
                    }
                    out.path = Some(match condition {
                        ast::Condition::PathExact { .. } => PathMatch::Exact(value.value.clone()),
                        _ => PathMatch::Prefix(value.value.clone()),
                    });
                }
                ast::Condition::Method { value, span } => {
                    if let Some(first) = method_span {
                        let first = self.at(file, first);
                        let what = "a method condition in one `match` line".to_owned();
                        self.duplicate(what, file, *span, first);
                        continue;
                    }
                    method_span = Some(*span);
                    if let ast::ValueCondition::Exact(method) = value {
                        if !is_token(&method.value) {
                            let message = format!("invalid method {:?}", method.value);
                            let help = "methods are tokens such as GET or POST";
                            self.invalid(file, method.span, message, help);
                        }
                    }
                    if let ast::ValueCondition::Present(at) | ast::ValueCondition::Absent(at) =
                        value
                    {
                        let message = "every request has a method; `present` and `absent` do \
                                       not apply to it"
                            .to_owned();
                        let help = "compare the method: `method GET`, `method prefix \"P\"` or \
                                    `method regex \"...\"`";
                        self.invalid(file, *at, message, help);
                    }
                    out.method = Some(self.value_match(file, value));
                }
                ast::Condition::Header { name, value } => {
                    let name = self.header_name(file, name);
                    let value = self.value_match(file, value);
                    out.headers.push(HeaderMatch { name, value });
                }
                ast::Condition::Query { name, value } => {
                    if name.value.is_empty() {
                        let help = "name the query parameter, e.g. query \"debug\" = \"1\"";
                        self.invalid(
                            file,
                            name.span,
                            "empty query parameter name".to_owned(),
                            help,
                        );
                    }
                    let value = self.value_match(file, value);
                    out.query.push(QueryMatch {
                        name: name.value.clone(),
                        value,
                    });
                }
            }
        }
        out
    }

    fn value_match(&mut self, file: FileId, value: &ast::ValueCondition) -> ValueMatch {
        match value {
            ast::ValueCondition::Exact(s) => ValueMatch::Exact(s.value.clone()),
            ast::ValueCondition::Prefix(s) => ValueMatch::Prefix(s.value.clone()),
            ast::ValueCondition::Regex(s) => {
                self.check_regex(file, s, true);
                ValueMatch::Regex(s.value.clone())
            }
            ast::ValueCondition::Present(_) => ValueMatch::Present,
            ast::ValueCondition::Absent(_) => ValueMatch::Absent,
        }
    }

    /// Lowers a rule's actions into `out` (whose matches and destinations are already set).
    pub(super) fn rule_actions(
        &mut self,
        file: FileId,
        rule: &ast::Rule,
        index: &ServiceIndex<'_>,
        out: &mut RouteRule,
    ) {
        let name = &rule.name.name;
        if rule.redirect.is_some() {
            let mut useless: Vec<(Span, &str)> = Vec::new();
            if let Some(first) = rule.destinations.first() {
                useless.push((first.span, "`to`"));
            }
            if let Some(t) = &rule.timeout {
                useless.push((t.span, "`timeout`"));
            }
            if let Some(r) = &rule.retries {
                useless.push((r.span, "`retries`"));
            }
            if let Some(h) = &rule.request_headers {
                useless.push((h.span, "`request_headers`"));
            }
            if let Some(r) = &rule.rewrite {
                useless.push((r.span, "`rewrite`"));
            }
            if let Some(m) = &rule.mirror {
                useless.push((m.span, "`mirror`"));
            }
            for (span, what) in useless {
                let message = format!(
                    "rule `{name}` has both `redirect` and {what}: a redirect answers the request \
                     without forwarding it"
                );
                let help = format!("remove {what}, or the `redirect`");
                self.report(Code::TrafficConflict, file, span, message, &help);
            }
        }
        out.timeout_ms = rule.timeout.map(|d| self.millis(file, d, "`timeout`"));
        out.retries = rule.retries.as_ref().map(|r| self.retries(file, r));
        out.fault = rule.fault.as_ref().map(|f| self.fault(file, f));
        out.headers = HeaderOps {
            request: self.header_edits(file, rule.request_headers.as_ref()),
            response: self.header_edits(file, rule.response_headers.as_ref()),
        };
        out.rewrite = rule.rewrite.as_ref().map(|r| self.rewrite(file, rule, r));
        out.redirect = rule.redirect.as_ref().map(|r| self.redirect(file, r));
        out.mirror = rule.mirror.as_ref().map(|m| {
            let (service, subset) = self.resolve(file, &m.service, m.subset.as_ref(), index);
            spec::Mirror {
                service: service.unwrap_or(0),
                subset,
                per_million: self.share(file, m.percent, "the mirror"),
            }
        });
        out.rate_limit = rule.rate_limit.as_ref().map(|r| self.rate_limit(file, r));
    }

    fn retries(&mut self, file: FileId, r: &ast::Retries) -> RetryPolicy {
        let attempts = match r.attempts {
            Some(n) => self.ranged(file, n, 0..=10, "`attempts`") as u32,
            None => {
                let message = "`retries` needs `attempts`".to_owned();
                let help = "add e.g. `attempts 3` (0 to 10; 0 disables retries)";
                self.report(Code::MissingSetting, file, r.span, message, help);
                0
            }
        };
        let per_try_timeout_ms = r
            .per_try_timeout
            .map(|d| self.millis(file, d, "`per_try_timeout`"));
        let retry_on = self.retry_on(file, r);
        let backoff_base_ms = r.backoff.map_or(25, |d| self.millis(file, d, "`backoff`"));
        let backoff_max_ms = match r.max_backoff {
            None => backoff_base_ms.saturating_mul(10),
            Some(d) => {
                let max = self.millis(file, d, "`max_backoff`");
                if max < backoff_base_ms {
                    let message = format!(
                        "`max_backoff` {max}ms is shorter than `backoff` {backoff_base_ms}ms"
                    );
                    let help = "`max_backoff` caps the backoff, so it must be at least `backoff`";
                    self.invalid(file, d.span, message, help);
                }
                max
            }
        };
        RetryPolicy {
            attempts,
            per_try_timeout_ms,
            retry_on,
            backoff_base_ms,
            backoff_max_ms,
            non_idempotent: r.non_idempotent.is_some(),
        }
    }

    fn retry_on(&mut self, file: FileId, r: &ast::Retries) -> RetryOn {
        if r.retry_on.is_empty() {
            return RetryOn {
                gateway_error: true,
                reset: true,
                connect_failure: true,
                ..RetryOn::default()
            };
        }
        let mut on = RetryOn::default();
        let mut named_codes: Option<Span> = None;
        for condition in &r.retry_on {
            let text = condition.value.as_str();
            match text {
                "5xx" => on.server_error = true,
                "gateway-error" => on.gateway_error = true,
                "reset" => on.reset = true,
                "connect-failure" => on.connect_failure = true,
                "retriable-status-codes" => named_codes = Some(condition.span),
                _ if grpc_retry_on(text).is_some() => {
                    on.grpc_statuses.extend(grpc_retry_on(text));
                }
                _ if is_status_like(text) => match text.parse::<u16>() {
                    Ok(code) if (100..=599).contains(&code) => on.status_codes.push(code),
                    _ => {
                        let message = format!("retry status {text} is out of range");
                        self.invalid(file, condition.span, message, "statuses are 100 to 599");
                    }
                },
                _ => {
                    let message = format!("unknown retry condition `{text}`");
                    let mut help = format!(
                        "valid conditions: {}, or a status code (100 to 599)",
                        RETRY_NAMES.join(", ")
                    );
                    if let Some(close) = did_you_mean(text, RETRY_NAMES.iter().copied()) {
                        help = format!("did you mean `{close}`? {help}");
                    }
                    self.report(Code::UnknownRetryOn, file, condition.span, message, &help);
                }
            }
        }
        if let Some(span) = named_codes {
            if on.status_codes.is_empty() {
                let message = "`retriable-status-codes` lists no status code".to_owned();
                let help = "add the statuses to retry, e.g. `on retriable-status-codes, 409`";
                self.report(Code::MissingSetting, file, span, message, help);
            }
        }
        on.status_codes.sort_unstable();
        on.status_codes.dedup();
        on.grpc_statuses.sort_unstable();
        on.grpc_statuses.dedup();
        on
    }

    fn fault(&mut self, file: FileId, f: &ast::Fault) -> FaultInjection {
        if f.delay.is_none() && f.abort.is_none() {
            let message = "`fault` sets neither `delay` nor `abort`".to_owned();
            let help = "add e.g. `delay 2s 10%` or `abort 503 5%`, or remove the block";
            self.report(Code::MissingSetting, file, f.span, message, help);
        }
        FaultInjection {
            delay: f.delay.map(|(d, p)| FaultDelay {
                delay_ms: self.millis(file, d, "the fault `delay`"),
                per_million: self.share(file, p, "the delay"),
            }),
            abort: f.abort.map(|(n, p)| FaultAbort {
                status: self.ranged(file, n, 200..=599, "abort status") as u16,
                per_million: self.share(file, p, "the abort"),
            }),
        }
    }

    fn header_edits(&mut self, file: FileId, e: Option<&ast::HeaderEdits>) -> spec::HeaderEdits {
        let Some(e) = e else {
            return spec::HeaderEdits::default();
        };
        let mut out = spec::HeaderEdits::default();
        let mut set_names: HashMap<String, Span> = HashMap::new();
        for (set, (name, value)) in e
            .set
            .iter()
            .map(|pair| (true, pair))
            .chain(e.add.iter().map(|pair| (false, pair)))
        {
            let lower = self.edited_header(file, name);
            if value.value.contains(['\r', '\n', '\0']) {
                let message = format!(
                    "header value {:?} contains a line break or NUL",
                    value.value
                );
                self.invalid(
                    file,
                    value.span,
                    message,
                    "header values are one line of text",
                );
            }
            if set {
                if let Some(&first) = set_names.get(&lower) {
                    let first = self.at(file, first);
                    self.duplicate(format!("`set` of header `{lower}`"), file, name.span, first);
                    continue;
                }
                set_names.insert(lower.clone(), name.span);
            }
            let header = HeaderValue {
                name: lower,
                value: value.value.clone(),
            };
            if set {
                out.set.push(header);
            } else {
                out.add.push(header);
            }
        }
        for name in &e.remove {
            let lower = self.edited_header(file, name);
            out.remove.push(lower);
        }
        out
    }

    /// A header name a rule edits: valid, lower-cased, and not one meshd owns.
    fn edited_header(&mut self, file: FileId, name: &ast::Str) -> String {
        let lower = self.header_name(file, name);
        if FRAMING_HEADERS.contains(&lower.as_str()) {
            let message = format!("header `{lower}` cannot be edited: meshd owns it");
            let help = format!(
                "meshd writes the framing and hop-by-hop headers ({}) itself; to change the \
                 host use `rewrite {{ authority \"...\" }}`",
                FRAMING_HEADERS.join(", ")
            );
            self.report(Code::FramingHeader, file, name.span, message, &help);
        }
        lower
    }

    fn host(&mut self, file: FileId, s: &ast::Str, what: &str) {
        if s.value.is_empty() || s.value.contains(|c: char| c.is_whitespace() || c == '/') {
            let message = format!("invalid {what} {:?}", s.value);
            self.invalid(
                file,
                s.span,
                message,
                "write a host name such as \"reviews-v2\"",
            );
        }
    }

    fn rewrite(&mut self, file: FileId, rule: &ast::Rule, r: &ast::Rewrite) -> Rewrite {
        if r.prefix.is_none() && r.regex.is_none() && r.authority.is_none() {
            let message = "`rewrite` changes nothing".to_owned();
            let help = "set `prefix`, `regex` or `authority`, or remove the block";
            self.report(Code::MissingSetting, file, r.span, message, help);
        }
        if let (Some(_), Some((pattern, _))) = (&r.prefix, &r.regex) {
            let message = "`rewrite` sets both `prefix` and `regex`".to_owned();
            let help = "keep one: `prefix` replaces the matched prefix, `regex` substitutes";
            self.report(Code::TrafficConflict, file, pattern.span, message, help);
        }
        if let Some(prefix) = &r.prefix {
            if !prefix.value.starts_with('/') {
                let message = format!("rewrite prefix `{}` does not start with `/`", prefix.value);
                self.invalid(
                    file,
                    prefix.span,
                    message,
                    "paths start with `/`, e.g. \"/v2/\"",
                );
            }
            let has_path = |m: &ast::Match| {
                m.conditions.iter().any(|c| {
                    matches!(
                        c,
                        ast::Condition::PathPrefix { .. } | ast::Condition::PathExact { .. }
                    )
                })
            };
            if rule.matches.is_empty() || !rule.matches.iter().all(has_path) {
                let message = format!(
                    "`rewrite prefix` replaces the path prefix the rule matched, but a match of \
                     rule `{}` has no `path prefix` or `path exact`",
                    rule.name.name
                );
                let help = "add a `path prefix` to every `match` line, or use `rewrite regex`";
                self.report(Code::TrafficConflict, file, prefix.span, message, help);
            }
        }
        if let Some((pattern, _)) = &r.regex {
            self.check_regex(file, pattern, false);
        }
        if let Some(authority) = &r.authority {
            self.host(file, authority, "rewrite authority");
        }
        Rewrite {
            path_prefix: r.prefix.as_ref().map(|s| s.value.clone()),
            path_regex: r.regex.as_ref().map(|(p, s)| RegexRewrite {
                pattern: p.value.clone(),
                substitution: s.value.clone(),
            }),
            authority: r.authority.as_ref().map(|s| s.value.clone()),
        }
    }

    fn redirect(&mut self, file: FileId, r: &ast::Redirect) -> Redirect {
        if r.scheme.is_none() && r.authority.is_none() && r.port.is_none() && r.path.is_none() {
            let message = "`redirect` changes nothing, so it would redirect to itself".to_owned();
            let help = "set at least one of `scheme`, `host`, `port`, `path`";
            self.report(Code::MissingSetting, file, r.span, message, help);
        }
        if let Some(scheme) = &r.scheme {
            if !matches!(scheme.value.as_str(), "http" | "https") {
                let message = format!("redirect scheme {:?} is not http or https", scheme.value);
                self.invalid(file, scheme.span, message, "write \"http\" or \"https\"");
            }
        }
        if let Some(host) = &r.authority {
            self.host(file, host, "redirect host");
        }
        if let Some(path) = &r.path {
            if !path.value.starts_with('/') {
                let message = format!("redirect path `{}` does not start with `/`", path.value);
                self.invalid(
                    file,
                    path.span,
                    message,
                    "paths start with `/`, e.g. \"/new\"",
                );
            }
        }
        let status = match r.code {
            None => 301,
            Some(n) if REDIRECT_CODES.contains(&n.value) => n.value as u16,
            Some(n) => {
                let message = format!("redirect code {} is not a redirect status", n.value);
                self.invalid(
                    file,
                    n.span,
                    message,
                    "redirect codes are 301, 302, 303, 307, 308",
                );
                301
            }
        };
        Redirect {
            scheme: r.scheme.as_ref().map(|s| s.value.clone()),
            authority: r.authority.as_ref().map(|s| s.value.clone()),
            port: r.port.and_then(|n| self.port_number(file, n)),
            path: r.path.as_ref().map(|s| s.value.clone()),
            status,
        }
    }

    fn rate_limit(&mut self, file: FileId, r: &ast::RateLimit) -> RateLimit {
        let tokens = self.positive(file, r.requests, "the request count");
        let fill_interval_ms = self.millis(file, r.per, "the rate limit interval");
        let max_tokens = match r.burst {
            None => tokens,
            Some(b) => {
                let burst = self.positive(file, b, "`burst`");
                if burst < tokens {
                    let message = format!(
                        "`burst` {burst} is smaller than the rate ({tokens} requests per interval)"
                    );
                    let help = "the bucket must hold at least one interval's requests; raise \
                                `burst` or leave it out";
                    self.invalid(file, b.span, message, help);
                }
                burst
            }
        };
        RateLimit {
            tokens_per_fill: tokens,
            fill_interval_ms,
            max_tokens,
            per_source: r.per_source.is_some(),
        }
    }
}

#[cfg(test)]
mod tests;
