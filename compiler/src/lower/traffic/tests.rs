use spec::{
    FaultAbort, FaultDelay, HashKey, HeaderMatch, HeaderValue, LoadBalancer, OutlierDetection,
    PathMatch, PoolLimits, QueryMatch, RateLimit, Redirect, RegexRewrite, RetryOn, RouteRule,
    Snapshot, TrafficPolicy, ValueMatch,
};

use crate::diag::{Code, Severity, Sources};
use crate::{compile_sources, Compiled, Failed};

const SERVICES: &str = r#"
service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2" }
  endpoint 127.0.0.1:9083 { version = "v3" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" } policy { load_balancer least_request }
  subset v3 { version = "v3" } policy { pool { max_connections 7 } outlier { consecutive_gateway_errors 2 } }
  policy {
    load_balancer ring_hash header "X-User" min_ring_size 2048
    pool { max_connections 100 max_pending 50 max_requests_per_connection 1000 idle_timeout 60s connect_timeout 1s tcp_idle_timeout 30m }
    outlier { consecutive_5xx 4 interval 5s base_ejection 1m max_ejection_percent 50 }
  }
}
service plain { port 80 http endpoint 127.0.0.1:80 }
"#;

fn sources(src: &str) -> Sources {
    let mut sources = Sources::new();
    sources.add("m.mesh", format!("{SERVICES}{src}"));
    sources
}

fn compiled(src: &str) -> Compiled {
    match compile_sources(sources(src)) {
        Ok(compiled) => compiled,
        Err(failed) => panic!("compilation failed:\n{}", failed.render()),
    }
}

fn snapshot(src: &str) -> Snapshot {
    compiled(src).snapshot
}

/// The rules of the route of `reviews`.
fn rules(src: &str) -> Vec<RouteRule> {
    let s = snapshot(src);
    let (index, _) = s.service("reviews").expect("reviews");
    s.routes[index as usize].rules.clone()
}

/// The only rule of `route reviews { rule x { BODY } }`.
fn rule(body: &str) -> RouteRule {
    rules(&format!("route reviews {{ rule x {{ {body} }} }}")).remove(0)
}

/// Line of `SERVICES` + `src` where the test's own text starts (1-based line of `src`'s line 1).
fn line(n: usize) -> usize {
    SERVICES.lines().count() + n
}

/// `(code, line, col)` of every diagnostic, and the messages.
fn diagnostics(src: &str) -> (Vec<(&'static str, usize, usize)>, Vec<String>) {
    let failed: Failed = match compile_sources(sources(src)) {
        Ok(c) => panic!("compilation succeeded with warnings {:?}", c.warnings),
        Err(failed) => failed,
    };
    let found = failed
        .diagnostics
        .iter()
        .map(|d| {
            let (file, line, col) = d.location(&failed.sources).unwrap_or_default();
            assert_eq!(file, "m.mesh");
            (d.code.as_str(), line, col)
        })
        .collect();
    let messages = failed
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    (found, messages)
}

/// The one diagnostic of a rule body written on one line: its code, column and message.
fn rule_diagnostic(body: &str) -> (&'static str, usize, String) {
    let src = format!("route reviews {{ rule x {{ {body} }} }}");
    let (found, messages) = diagnostics(&src);
    assert_eq!(found.len(), 1, "{found:?} {messages:?}");
    let (code, l, col) = found[0];
    assert_eq!(l, line(1));
    // Columns count from the start of the route line.
    (
        code,
        col - "route reviews { rule x { ".len(),
        messages[0].clone(),
    )
}

#[test]
fn lowers_service_and_subset_policies() {
    let s = snapshot("");
    let (_, reviews) = s.service("reviews").expect("reviews");
    let service_policy = TrafficPolicy {
        load_balancer: LoadBalancer::RingHash {
            key: HashKey::Header("x-user".to_owned()),
            minimum_ring_size: 2048,
        },
        pool: PoolLimits {
            max_connections: Some(100),
            max_pending_requests: Some(50),
            max_requests_per_connection: Some(1000),
            idle_timeout_ms: Some(60_000),
            connect_timeout_ms: Some(1_000),
            tcp_idle_timeout_ms: Some(1_800_000),
        },
        outlier: Some(OutlierDetection {
            consecutive_5xx: Some(4),
            consecutive_gateway_errors: None,
            interval_ms: 5_000,
            base_ejection_ms: 60_000,
            max_ejection_percent: 50,
        }),
    };
    assert_eq!(reviews.policy, service_policy);
    let subset = |name: &str| {
        reviews
            .subsets
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.policy.clone())
            .expect("subset")
    };
    assert_eq!(subset("v1"), service_policy);
    assert_eq!(
        subset("v2"),
        TrafficPolicy {
            load_balancer: LoadBalancer::LeastRequest,
            ..service_policy.clone()
        }
    );
    assert_eq!(
        subset("v3"),
        TrafficPolicy {
            pool: PoolLimits {
                max_connections: Some(7),
                ..PoolLimits::default()
            },
            outlier: Some(OutlierDetection {
                consecutive_5xx: None,
                consecutive_gateway_errors: Some(2),
                interval_ms: 10_000,
                base_ejection_ms: 30_000,
                max_ejection_percent: 10,
            }),
            ..service_policy
        }
    );
    let (_, plain) = s.service("plain").expect("plain");
    assert_eq!(plain.policy, TrafficPolicy::default());
}

#[test]
fn lowers_every_load_balancer_and_outlier_defaults() {
    let policy = |text: &str| {
        let s = snapshot(&format!(
            "service p {{ port 1 http endpoint 127.0.0.1:1 policy {{ {text} }} }}"
        ));
        s.service("p").expect("p").1.policy.clone()
    };
    assert_eq!(
        policy("load_balancer random").load_balancer,
        LoadBalancer::Random
    );
    assert_eq!(
        policy("load_balancer round_robin").load_balancer,
        LoadBalancer::RoundRobin
    );
    assert_eq!(
        policy(r#"load_balancer ring_hash cookie "session" ttl 1h"#).load_balancer,
        LoadBalancer::RingHash {
            key: HashKey::Cookie {
                name: "session".to_owned(),
                ttl_ms: Some(3_600_000)
            },
            minimum_ring_size: 1024,
        }
    );
    assert_eq!(
        policy("load_balancer maglev source_ip").load_balancer,
        LoadBalancer::Maglev {
            key: HashKey::SourceIp
        }
    );
    assert_eq!(
        policy("outlier { }").outlier,
        Some(OutlierDetection {
            consecutive_5xx: Some(5),
            consecutive_gateway_errors: None,
            interval_ms: 10_000,
            base_ejection_ms: 30_000,
            max_ejection_percent: 10,
        })
    );
}

#[test]
fn lowers_match_conditions() {
    let rule = rule(
        r#"match method GET and path regex "/api/v[0-9]+/.*" and header "X-User" prefix "test" and query "debug" = "1"
    match header "x-debug" present and header "x-legacy" absent and header "x-v" regex "v[12]" and method prefix "P"
    match method regex "P(U|OS)T" and query "q" prefix "a" and query "r" regex "[0-9]+" and query "s" present and query "t" absent
    to reviews"#,
    );
    let m = &rule.matches;
    assert_eq!(m[0].method, Some(ValueMatch::Exact("GET".to_owned())));
    assert_eq!(
        m[0].path,
        Some(PathMatch::Regex("/api/v[0-9]+/.*".to_owned()))
    );
    assert_eq!(
        m[0].headers,
        [HeaderMatch {
            name: "x-user".to_owned(),
            value: ValueMatch::Prefix("test".to_owned())
        }]
    );
    assert_eq!(
        m[0].query,
        [QueryMatch {
            name: "debug".to_owned(),
            value: ValueMatch::Exact("1".to_owned())
        }]
    );
    let values: Vec<&ValueMatch> = m[1].headers.iter().map(|h| &h.value).collect();
    assert_eq!(
        values,
        [
            &ValueMatch::Present,
            &ValueMatch::Absent,
            &ValueMatch::Regex("v[12]".to_owned())
        ]
    );
    assert_eq!(m[1].method, Some(ValueMatch::Prefix("P".to_owned())));
    assert_eq!(m[2].method, Some(ValueMatch::Regex("P(U|OS)T".to_owned())));
    let values: Vec<&ValueMatch> = m[2].query.iter().map(|q| &q.value).collect();
    assert_eq!(
        values,
        [
            &ValueMatch::Prefix("a".to_owned()),
            &ValueMatch::Regex("[0-9]+".to_owned()),
            &ValueMatch::Present,
            &ValueMatch::Absent
        ]
    );
}

#[test]
fn lowers_rule_actions() {
    let rules = rules(
        r#"
route reviews {
  rule canary {
    match path prefix "/api"
    to reviews/v2 weight 90
    to reviews/v1 weight 10
    timeout 2s
    retries { attempts 3 per_try_timeout 500ms on 5xx, gateway-error, reset, connect-failure, 503, 409, 409, unavailable, cancelled backoff 20ms max_backoff 250ms non_idempotent }
    fault { delay 2s 10% abort 503 0.5% }
    request_headers { set "X-A" = "b" add "x-c" = "d" remove "X-E" }
    response_headers { remove "x-internal" }
    rewrite { prefix "/v2/" authority "reviews-v2" }
    mirror plain 25%
    rate_limit 100 per 1s burst 200 per_source
  }
  rule moved {
    match path prefix "/old"
    redirect { scheme "https" host "new.example.com" port 8443 path "/new" code 308 }
  }
  rule plain_redirect { match path exact "/x" redirect { path "/y" } }
  rule regex { to reviews/v3 rewrite { regex "^/old/(.*)" "/new/$1" } mirror reviews/v1 }
}"#,
    );
    let canary = &rules[0];
    assert_eq!(canary.timeout_ms, Some(2_000));
    let retries = canary.retries.as_ref().expect("retries");
    assert_eq!(retries.attempts, 3);
    assert_eq!(retries.per_try_timeout_ms, Some(500));
    assert_eq!(
        retries.retry_on,
        RetryOn {
            server_error: true,
            gateway_error: true,
            reset: true,
            connect_failure: true,
            status_codes: vec![409, 503],
            grpc_statuses: vec![1, 14],
        }
    );
    assert_eq!((retries.backoff_base_ms, retries.backoff_max_ms), (20, 250));
    assert!(retries.non_idempotent);
    let fault = canary.fault.as_ref().expect("fault");
    assert_eq!(
        fault.delay,
        Some(FaultDelay {
            delay_ms: 2_000,
            per_million: 100_000
        })
    );
    assert_eq!(
        fault.abort,
        Some(FaultAbort {
            status: 503,
            per_million: 5_000
        })
    );
    let header = |name: &str, value: &str| HeaderValue {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    assert_eq!(canary.headers.request.set, [header("x-a", "b")]);
    assert_eq!(canary.headers.request.add, [header("x-c", "d")]);
    assert_eq!(canary.headers.request.remove, ["x-e"]);
    assert_eq!(canary.headers.response.remove, ["x-internal"]);
    let rewrite = canary.rewrite.as_ref().expect("rewrite");
    assert_eq!(rewrite.path_prefix.as_deref(), Some("/v2/"));
    assert_eq!(rewrite.authority.as_deref(), Some("reviews-v2"));
    assert!(rewrite.path_regex.is_none());
    let mirror = canary.mirror.as_ref().expect("mirror");
    // Services sort by name: plain (0), reviews (1).
    assert_eq!(
        (mirror.service, mirror.subset, mirror.per_million),
        (0, None, 250_000)
    );
    assert_eq!(
        canary.rate_limit,
        Some(RateLimit {
            tokens_per_fill: 100,
            fill_interval_ms: 1_000,
            max_tokens: 200,
            per_source: true,
        })
    );
    let moved = &rules[1];
    assert!(moved.destinations.is_empty());
    assert_eq!(
        moved.redirect,
        Some(Redirect {
            scheme: Some("https".to_owned()),
            authority: Some("new.example.com".to_owned()),
            port: Some(8443),
            path: Some("/new".to_owned()),
            status: 308,
        })
    );
    assert_eq!(rules[2].redirect.as_ref().map(|r| r.status), Some(301));
    let regex = &rules[3];
    assert_eq!(
        regex.rewrite.as_ref().and_then(|r| r.path_regex.clone()),
        Some(RegexRewrite {
            pattern: "^/old/(.*)".to_owned(),
            substitution: "/new/$1".to_owned(),
        })
    );
    let mirror = regex.mirror.as_ref().expect("mirror");
    assert_eq!(
        (mirror.service, mirror.subset, mirror.per_million),
        (1, Some(0), 1_000_000)
    );
}

#[test]
fn applies_action_defaults() {
    let r = rule("to reviews retries { attempts 2 } fault { delay 1s } rate_limit 10 per 1m");
    let retries = r.retries.expect("retries");
    assert_eq!(
        retries.retry_on,
        RetryOn {
            gateway_error: true,
            reset: true,
            connect_failure: true,
            ..RetryOn::default()
        }
    );
    assert_eq!((retries.backoff_base_ms, retries.backoff_max_ms), (25, 250));
    assert_eq!(retries.per_try_timeout_ms, None);
    assert!(!retries.non_idempotent);
    assert_eq!(
        r.fault.and_then(|f| f.delay).map(|d| d.per_million),
        Some(1_000_000)
    );
    assert_eq!(
        r.rate_limit,
        Some(RateLimit {
            tokens_per_fill: 10,
            fill_interval_ms: 60_000,
            max_tokens: 10,
            per_source: false,
        })
    );
    let r = rule("to reviews retries { attempts 1 backoff 100ms on retriable-status-codes, 409 }");
    let retries = r.retries.expect("retries");
    assert_eq!(retries.backoff_max_ms, 1_000);
    assert_eq!(retries.retry_on.status_codes, [409]);
    assert!(!retries.retry_on.gateway_error);
    let r = rule("to reviews fault { abort 500 }");
    assert_eq!(
        r.fault.and_then(|f| f.abort).map(|a| a.per_million),
        Some(1_000_000)
    );
    let r = rule("to reviews");
    assert!(r.retries.is_none() && r.fault.is_none() && r.rate_limit.is_none());
    assert_eq!(r.headers, spec::HeaderOps::default());
}

#[test]
fn reports_policy_errors() {
    let src = r#"
service p {
  port 1 http endpoint 127.0.0.1:1
  policy {
    load_balancer random header "x"
    pool { max_connections 0 idle_timeout 0s }
    outlier { max_ejection_percent 101 consecutive_5xx 0 }
  }
  policy { }
}
service q { port 1 http endpoint 127.0.0.1:1 policy { load_balancer ring_hash } }
service r { port 1 http endpoint 127.0.0.1:1 policy { load_balancer maglev source_ip min_ring_size 5 } }
service s { port 1 http endpoint 127.0.0.1:1 policy { load_balancer ring_hash header "bad name" min_ring_size 0 } }
service t { port 1 http endpoint 127.0.0.1:1 policy { load_balancer ring_hash cookie "a b" ttl 0ms } }
"#;
    let (found, messages) = diagnostics(src);
    let l = line;
    assert_eq!(
        found,
        [
            ("E0120", l(5), 33),
            ("E0002", l(6), 28),
            ("E0002", l(6), 43),
            ("E0002", l(7), 36),
            ("E0002", l(7), 56),
            ("E0103", l(9), 3),
            ("E0123", l(11), 55),
            ("E0120", l(12), 100),
            ("E0002", l(13), 86),
            ("E0002", l(13), 111),
            ("E0002", l(14), 86),
            ("E0002", l(14), 96),
        ],
        "{messages:#?}"
    );
    assert_eq!(
        messages[0],
        "load balancer `random` does not hash; it takes no key"
    );
    assert_eq!(messages[1], "`max_connections` 0 is out of range");
    assert_eq!(messages[2], "`idle_timeout` must be at least 1ms");
    assert_eq!(messages[3], "`max_ejection_percent` 101 is out of range");
    assert!(messages[5].starts_with("the policy of service `p` is defined more than once"));
    assert_eq!(messages[6], "load balancer `ring_hash` needs a hash key");
    assert_eq!(messages[7], "`min_ring_size` does not apply to `maglev`");
    assert_eq!(messages[8], "invalid header name \"bad name\"");
    assert_eq!(messages[10], "invalid cookie name \"a b\"");
}

#[test]
fn reports_match_errors() {
    let (code, col, message) = rule_diagnostic(r#"match path regex "/a(" to reviews"#);
    assert_eq!((code, col), ("E0121", 18));
    assert_eq!(message, r#"invalid regex "/a(": unclosed group"#);
    let (code, col, message) = rule_diagnostic(r#"match header "x" regex "(?=a)" to reviews"#);
    assert_eq!((code, col), ("E0121", 24));
    assert!(
        message.starts_with(r#"invalid regex "(?=a)": "#),
        "{message}"
    );
    let (code, col, _) = rule_diagnostic(r#"match method regex "[" to reviews"#);
    assert_eq!((code, col), ("E0121", 20));
    let (code, col, _) = rule_diagnostic(r#"match query "q" regex "*" to reviews"#);
    assert_eq!((code, col), ("E0121", 23));
}

#[test]
fn reports_more_match_errors() {
    let (code, col, message) = rule_diagnostic(r#"match query "" = "1" to reviews"#);
    assert_eq!((code, col), ("E0002", 13));
    assert_eq!(message, "empty query parameter name");
    let (code, col, message) = rule_diagnostic(r#"match method GET and method POST to reviews"#);
    assert_eq!((code, col), ("E0103", 22));
    assert!(message.starts_with("a method condition in one `match` line is defined more than once"));
    let (code, col, _) =
        rule_diagnostic(r#"match path regex "/a" and path prefix "/b" to reviews"#);
    assert_eq!((code, col), ("E0103", 27));
    let (code, col, _) = rule_diagnostic(r#"match header "a b" present to reviews"#);
    assert_eq!((code, col), ("E0002", 14));
}

#[test]
fn reports_action_errors() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("to reviews timeout 0ms", "E0002", 20, "`timeout` must be at least 1ms"),
        ("to reviews retries { }", "E0123", 12, "`retries` needs `attempts`"),
        ("to reviews retries { attempts 11 }", "E0002", 31, "`attempts` 11 is out of range"),
        ("to reviews retries { attempts 1 on 5xx, gateway_error }", "E0124", 41, "unknown retry condition `gateway_error`"),
        ("to reviews retries { attempts 1 on 600 }", "E0002", 36, "retry status 600 is out of range"),
        ("to reviews retries { attempts 1 on retriable-status-codes }", "E0123", 36, "`retriable-status-codes` lists no status code"),
        ("to reviews retries { attempts 1 backoff 100ms max_backoff 50ms }", "E0002", 59, "`max_backoff` 50ms is shorter than `backoff` 100ms"),
        ("to reviews fault { }", "E0123", 12, "`fault` sets neither `delay` nor `abort`"),
        ("to reviews fault { abort 199 }", "E0002", 26, "abort status 199 is out of range"),
        ("to reviews fault { abort 600 }", "E0002", 26, "abort status 600 is out of range"),
        ("to reviews fault { delay 1s 100.0001% }", "E0002", 29, "the delay percentage is above 100%"),
        ("to reviews fault { abort 503 150% }", "E0002", 30, "the abort percentage is above 100%"),
        (r#"to reviews request_headers { set "Host" = "x" }"#, "E0122", 34, "header `host` cannot be edited: meshd owns it"),
        (r#"to reviews response_headers { remove "transfer-encoding" }"#, "E0122", 38, "header `transfer-encoding` cannot be edited: meshd owns it"),
        (r#"to reviews request_headers { add "a b" = "x" }"#, "E0002", 34, "invalid header name \"a b\""),
        (r#"to reviews request_headers { set "a" = "x\ny" }"#, "E0002", 40, "header value \"x\\ny\" contains a line break or NUL"),
        (r#"to reviews request_headers { set "a" = "1" set "A" = "2" }"#, "E0103", 48, "`set` of header `a` is defined more than once (first at m.mesh:17)"),
        (r#"to reviews rewrite { }"#, "E0123", 12, "`rewrite` changes nothing"),
        (r#"match path prefix "/a" to reviews rewrite { prefix "/b" regex "x" "y" }"#, "E0120", 63, "`rewrite` sets both `prefix` and `regex`"),
        (r#"to reviews rewrite { prefix "/b" }"#, "E0120", 29, "`rewrite prefix` replaces the path prefix the rule matched, but a match of rule `x` has no `path prefix` or `path exact`"),
        (r#"match path prefix "/a" to reviews rewrite { prefix "b" }"#, "E0002", 52, "rewrite prefix `b` does not start with `/`"),
        (r#"to reviews rewrite { regex "(" "x" }"#, "E0121", 28, "invalid regex \"(\": unclosed group"),
        (r#"to reviews rewrite { authority "a b" }"#, "E0002", 32, "invalid rewrite authority \"a b\""),
        (r#"redirect { }"#, "E0123", 1, "`redirect` changes nothing, so it would redirect to itself"),
        (r#"redirect { scheme "ftp" }"#, "E0002", 19, "redirect scheme \"ftp\" is not http or https"),
        (r#"redirect { host "" }"#, "E0002", 17, "invalid redirect host \"\""),
        (r#"redirect { port 0 }"#, "E0002", 17, "port 0 is out of range"),
        (r#"redirect { path "new" }"#, "E0002", 17, "redirect path `new` does not start with `/`"),
        (r#"redirect { path "/n" code 200 }"#, "E0002", 27, "redirect code 200 is not a redirect status"),
        (r#"to reviews redirect { path "/n" }"#, "E0120", 1, "rule `x` has both `redirect` and `to`: a redirect answers the request without forwarding it"),
        (r#"timeout 1s redirect { path "/n" }"#, "E0120", 9, "rule `x` has both `redirect` and `timeout`: a redirect answers the request without forwarding it"),
        (r#"redirect { path "/n" } mirror reviews"#, "E0120", 24, "rule `x` has both `redirect` and `mirror`: a redirect answers the request without forwarding it"),
        (r#"redirect { path "/n" } retries { attempts 1 }"#, "E0120", 24, "rule `x` has both `redirect` and `retries`: a redirect answers the request without forwarding it"),
        (r#"redirect { path "/n" } request_headers { remove "a" }"#, "E0120", 24, "rule `x` has both `redirect` and `request_headers`: a redirect answers the request without forwarding it"),
        (r#"match path prefix "/" redirect { path "/n" } rewrite { authority "a" }"#, "E0120", 46, "rule `x` has both `redirect` and `rewrite`: a redirect answers the request without forwarding it"),
        ("to reviews mirror nope", "E0101", 19, "unknown service `nope`"),
        ("to reviews mirror reviews/v9", "E0102", 27, "unknown subset `v9` of service `reviews`"),
        ("to reviews mirror reviews 101%", "E0002", 27, "the mirror percentage is above 100%"),
        ("to reviews rate_limit 0 per 1s", "E0002", 23, "the request count 0 is out of range"),
        ("to reviews rate_limit 1 per 0s", "E0002", 29, "the rate limit interval must be at least 1ms"),
        ("to reviews rate_limit 10 per 1s burst 5", "E0002", 39, "`burst` 5 is smaller than the rate (10 requests per interval)"),
    ];
    for &(body, code, col, message) in cases {
        let (found_code, found_col, found_message) = rule_diagnostic(body);
        assert_eq!(
            (found_code, found_col, found_message.as_str()),
            (code, col, message),
            "{body}"
        );
    }
}

#[test]
fn retry_condition_help_lists_the_valid_ones() {
    let src = "route reviews { rule x { to reviews retries { attempts 1 on gateway-eror } } }";
    let failed = compile_sources(sources(src)).expect_err("fails");
    let help = failed.diagnostics[0].help.clone().unwrap_or_default();
    assert_eq!(
        help,
        "did you mean `gateway-error`? valid conditions: 5xx, gateway-error, reset, \
         connect-failure, retriable-status-codes, cancelled, deadline-exceeded, \
         resource-exhausted, internal, unavailable, or a status code (100 to 599)"
    );
}

#[test]
fn warns_when_the_per_try_timeout_leaves_no_time_to_retry() {
    let src = "route reviews { rule x { to reviews timeout 1s retries { attempts 2 per_try_timeout 1s } } }";
    let compiled = compiled(src);
    let w: Vec<_> = compiled
        .warnings
        .iter()
        .filter(|d| d.code != Code::CanEjectEveryEndpoint)
        .map(|d| {
            (
                d.code,
                d.severity,
                d.location(&compiled.sources).map(|l| (l.1, l.2)),
            )
        })
        .collect();
    assert_eq!(
        w,
        [(
            Code::PerTryTimeoutNotBelowTimeout,
            Severity::Warning,
            Some((line(1), 17))
        )]
    );
    // No warning without retries, or with a shorter per-try timeout.
    let src = "route reviews { rule x { to reviews timeout 1s retries { attempts 0 per_try_timeout 1s } } }";
    assert!(compiled_warnings(src).is_empty());
    let src = "route reviews { rule x { to reviews timeout 1s retries { attempts 2 per_try_timeout 300ms } } }";
    assert!(compiled_warnings(src).is_empty());
}

fn compiled_warnings(src: &str) -> Vec<Code> {
    compiled(src)
        .warnings
        .iter()
        .map(|d| d.code)
        .filter(|&c| c != Code::CanEjectEveryEndpoint)
        .collect()
}

/// Codes of every diagnostic of a route, whether compilation succeeds or not.
/// Every code except W0163, which the one-endpoint subsets of `SERVICES` always get.
fn all_codes(src: &str) -> Vec<&'static str> {
    let codes: Vec<&'static str> = match compile_sources(sources(src)) {
        Ok(c) => c.warnings.iter().map(|d| d.code.as_str()).collect(),
        Err(f) => f.diagnostics.iter().map(|d| d.code.as_str()).collect(),
    };
    codes.into_iter().filter(|&c| c != "W0163").collect()
}

#[test]
fn shadow_analysis_never_lets_an_undecided_condition_shadow_a_rule() {
    // Before the new condition kinds were modeled, `a` read as a catch-all here.
    for condition in [
        r#"path regex "/x[0-9]+""#,
        "method GET",
        r#"query "q" = "1""#,
        r#"header "x" prefix "a""#,
        r#"header "x" regex "a""#,
        r#"header "x" present"#,
        r#"header "x" absent"#,
    ] {
        let src = format!(
            r#"route reviews {{
  rule a {{ match {condition} to reviews/v1 }}
  rule b {{ match path prefix "/y" to reviews/v2 }}
  rule c {{ match {condition} to reviews/v2 }}
}}"#
        );
        assert_eq!(all_codes(&src), Vec::<&str>::new(), "{condition}");
    }
}

#[test]
fn shadow_analysis_still_sees_a_narrowed_rule_behind_a_broader_one() {
    let src = r#"route reviews {
  rule a { match path prefix "/a" to reviews/v1 }
  rule b { match path prefix "/a/b" and method GET and query "q" present to reviews/v2 }
}"#;
    assert_eq!(all_codes(src), ["E0110"]);
}
