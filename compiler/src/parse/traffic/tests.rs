use super::{duration_millis, percent_per_million};
use crate::ast::{Condition, HashKey, Item, LbKind, Route, Rule, Service, ValueCondition};
use crate::diag::{Code, FileId, Sources, Span};
use crate::parse::parse_file;
use crate::parse::tests::parse;

fn service(src: &str) -> Service {
    match parse(src).items.remove(0) {
        Item::Service(s) => s,
        other => panic!("not a service: {other:?}"),
    }
}

fn route(src: &str) -> Route {
    match parse(src).items.remove(0) {
        Item::Route(r) => r,
        other => panic!("not a route: {other:?}"),
    }
}

/// The only rule of `route r { rule x { BODY } }`.
fn rule(body: &str) -> Rule {
    route(&format!("route r {{ rule x {{ {body} }} }}"))
        .rules
        .remove(0)
}

/// The error's code, `line:col` and message.
fn error(src: &str) -> (Code, usize, usize, String) {
    let d = parse_file(FileId(0), src).expect_err("expected an error");
    let mut sources = Sources::new();
    sources.add("t.mesh", src);
    let (_, line, col) = d.location(&sources).expect("parse errors have a span");
    (d.code, line, col, d.message)
}

/// The error message of a rule body, checking it is a syntax error.
fn rule_error(body: &str) -> String {
    let (code, _, _, message) = error(&format!("route r {{ rule x {{ {body} }} }}"));
    assert_eq!(code, Code::Syntax, "{message}");
    message
}

fn text(src: &str, span: Span) -> &str {
    &src[span.start..span.end]
}

const EXAMPLE: &str = r#"
service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" } policy { load_balancer least_request }   # subset override
  policy {
    load_balancer ring_hash header "x-user" min_ring_size 2048
    pool { max_connections 100 max_pending 50 max_requests_per_connection 1000 idle_timeout 60s connect_timeout 1s }
    outlier { consecutive_5xx 5 consecutive_gateway_errors 3 interval 10s base_ejection 30s max_ejection_percent 50 }
  }
}
route reviews {
  rule canary {
    match method GET and path regex "/api/v[0-9]+/.*" and header "x-user" prefix "test" and query "debug" = "1"
    match header "x-debug" present and header "x-legacy" absent and header "x-v" regex "v[12]"
    to reviews/v2 weight 90
    to reviews/v1 weight 10
    timeout 2s
    retries { attempts 3 per_try_timeout 500ms on 5xx, gateway-error, reset, connect-failure, 409 backoff 25ms max_backoff 250ms non_idempotent }
    fault { delay 2s 10% abort 503 5% }
    request_headers { set "x-a" = "b" add "x-c" = "d" remove "x-e" }
    response_headers { remove "x-internal" }
    rewrite { prefix "/v2/" authority "reviews-v2" }
    mirror reviews/v3 25%
    rate_limit 100 per 1s burst 200 per_source
  }
  rule moved {
    match path prefix "/old"
    redirect { scheme "https" host "new.example.com" port 8443 path "/new" code 308 }
  }
  rule regex_rewrite {
    match method prefix "P" and method regex "P(U|OS)T" and query "q" prefix "a"
    to reviews
    rewrite { regex "^/old/(.*)" "/new/$1" }
  }
}
"#;

#[test]
fn parses_service_and_subset_policies() {
    let file = parse(EXAMPLE);
    let Item::Service(s) = &file.items[0] else {
        panic!("not a service")
    };
    assert_eq!(s.policies.len(), 1);
    let policy = &s.policies[0];
    assert_eq!(text(EXAMPLE, policy.span), "policy");
    let lb = policy.load_balancer.as_ref().expect("load balancer");
    assert_eq!(lb.kind, LbKind::RingHash);
    assert!(matches!(&lb.key, Some(HashKey::Header(h)) if h.value == "x-user"));
    assert_eq!(lb.minimum_ring_size.map(|n| n.value), Some(2048));
    assert_eq!(
        text(EXAMPLE, lb.span),
        r#"load_balancer ring_hash header "x-user" min_ring_size 2048"#
    );
    let pool = policy.pool.as_ref().expect("pool");
    assert_eq!(pool.max_connections.map(|n| n.value), Some(100));
    assert_eq!(pool.max_pending.map(|n| n.value), Some(50));
    assert_eq!(
        pool.max_requests_per_connection.map(|n| n.value),
        Some(1000)
    );
    assert_eq!(pool.idle_timeout.map(|d| d.millis), Some(60_000));
    assert_eq!(pool.connect_timeout.map(|d| d.millis), Some(1_000));
    let outlier = policy.outlier.as_ref().expect("outlier");
    assert_eq!(outlier.consecutive_5xx.map(|n| n.value), Some(5));
    assert_eq!(outlier.consecutive_gateway_errors.map(|n| n.value), Some(3));
    assert_eq!(outlier.interval.map(|d| d.millis), Some(10_000));
    assert_eq!(outlier.base_ejection.map(|d| d.millis), Some(30_000));
    assert_eq!(outlier.max_ejection_percent.map(|n| n.value), Some(50));

    assert!(s.subsets[0].policy.is_none());
    let subset = s.subsets[1].policy.as_ref().expect("subset policy");
    assert_eq!(
        subset.load_balancer.as_ref().map(|lb| lb.kind),
        Some(LbKind::LeastRequest)
    );
    assert!(subset.pool.is_none() && subset.outlier.is_none());
}

#[test]
fn a_policy_on_the_next_line_belongs_to_the_service() {
    let s = service("service s {\n  subset v1 { v = \"1\" }\n  policy { load_balancer random }\n}");
    assert!(s.subsets[0].policy.is_none());
    assert_eq!(s.policies.len(), 1);
    let s = service("service s { subset v1 { v = \"1\" } # note\n policy { } }");
    assert!(s.subsets[0].policy.is_none());
    assert_eq!(s.policies.len(), 1);
    // Two service policies parse; lowering reports the second (E0103).
    let s = service("service s { policy { } policy { } }");
    assert_eq!(s.policies.len(), 2);
}

#[test]
fn parses_every_load_balancer() {
    let lb = |text: &str| {
        let s = service(&format!(
            "service s {{ policy {{ load_balancer {text} }} }}"
        ));
        s.policies[0].load_balancer.clone().expect("load balancer")
    };
    assert_eq!(lb("round_robin").kind, LbKind::RoundRobin);
    assert_eq!(lb("random").kind, LbKind::Random);
    assert_eq!(lb("least_request").kind, LbKind::LeastRequest);
    let cookie = lb(r#"ring_hash cookie "session" ttl 1h"#);
    assert!(matches!(
        cookie.key,
        Some(HashKey::Cookie { ref name, ttl: Some(ttl) }) if name.value == "session" && ttl.millis == 3_600_000
    ));
    assert!(cookie.minimum_ring_size.is_none());
    let cookie = lb(r#"ring_hash cookie "session""#);
    assert!(matches!(
        cookie.key,
        Some(HashKey::Cookie { ttl: None, .. })
    ));
    let maglev = lb("maglev source_ip");
    assert_eq!(maglev.kind, LbKind::Maglev);
    assert!(matches!(maglev.key, Some(HashKey::SourceIp(_))));
    // Keys on kinds that do not hash parse; lowering refuses them.
    assert!(lb(r#"random header "x""#).key.is_some());
}

#[test]
fn parses_match_conditions() {
    let Item::Route(route) = parse(EXAMPLE).items.remove(1) else {
        panic!("not a route")
    };
    let canary = &route.rules[0];
    let first = &canary.matches[0].conditions;
    assert_eq!(first.len(), 4);
    assert!(
        matches!(&first[0], Condition::Method { value: ValueCondition::Exact(m), .. } if m.value == "GET")
    );
    assert!(
        matches!(&first[1], Condition::PathRegex { value, .. } if value.value == "/api/v[0-9]+/.*")
    );
    assert!(matches!(
        &first[2],
        Condition::Header { name, value: ValueCondition::Prefix(p) } if name.value == "x-user" && p.value == "test"
    ));
    assert!(matches!(
        &first[3],
        Condition::Query { name, value: ValueCondition::Exact(v) } if name.value == "debug" && v.value == "1"
    ));
    let second = &canary.matches[1].conditions;
    assert!(matches!(
        &second[0],
        Condition::Header {
            value: ValueCondition::Present(_),
            ..
        }
    ));
    assert!(matches!(
        &second[1],
        Condition::Header {
            value: ValueCondition::Absent(_),
            ..
        }
    ));
    assert!(
        matches!(&second[2], Condition::Header { value: ValueCondition::Regex(r), .. } if r.value == "v[12]")
    );
    let third = &route.rules[2].matches[0].conditions;
    assert!(
        matches!(&third[0], Condition::Method { value: ValueCondition::Prefix(p), .. } if p.value == "P")
    );
    assert!(
        matches!(&third[1], Condition::Method { value: ValueCondition::Regex(r), .. } if r.value == "P(U|OS)T")
    );
    assert!(matches!(
        &third[2],
        Condition::Query {
            value: ValueCondition::Prefix(_),
            ..
        }
    ));
    let absent = rule(r#"match query "q" absent and query "p" present to r"#);
    assert!(matches!(
        &absent.matches[0].conditions[0],
        Condition::Query {
            value: ValueCondition::Absent(_),
            ..
        }
    ));
    assert!(matches!(
        &absent.matches[0].conditions[1],
        Condition::Query {
            value: ValueCondition::Present(_),
            ..
        }
    ));
}

#[test]
fn parses_rule_actions() {
    let file = parse(EXAMPLE);
    let Item::Route(route) = &file.items[1] else {
        panic!("not a route")
    };
    let canary = &route.rules[0];
    assert_eq!(canary.destinations.len(), 2);
    assert_eq!(
        text(EXAMPLE, canary.destinations[0].span),
        "to reviews/v2 weight 90"
    );
    assert_eq!(canary.timeout.map(|d| d.millis), Some(2_000));
    let retries = canary.retries.as_ref().expect("retries");
    assert_eq!(text(EXAMPLE, retries.span), "retries");
    assert_eq!(retries.attempts.map(|n| n.value), Some(3));
    assert_eq!(retries.per_try_timeout.map(|d| d.millis), Some(500));
    let on: Vec<&str> = retries.retry_on.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(
        on,
        ["5xx", "gateway-error", "reset", "connect-failure", "409"]
    );
    assert_eq!(text(EXAMPLE, retries.retry_on[4].span), "409");
    assert_eq!(retries.backoff.map(|d| d.millis), Some(25));
    assert_eq!(retries.max_backoff.map(|d| d.millis), Some(250));
    assert!(retries.non_idempotent.is_some());
    let fault = canary.fault.as_ref().expect("fault");
    let (delay, delay_pct) = fault.delay.expect("delay");
    assert_eq!(
        (delay.millis, delay_pct.map(|p| p.per_million)),
        (2_000, Some(100_000))
    );
    let (abort, abort_pct) = fault.abort.expect("abort");
    assert_eq!(
        (abort.value, abort_pct.map(|p| p.per_million)),
        (503, Some(50_000))
    );
    assert_eq!(
        text(EXAMPLE, abort_pct.map(|p| p.span).unwrap_or_default()),
        "5%"
    );
    let request = canary.request_headers.as_ref().expect("request headers");
    assert_eq!(request.set[0].0.value, "x-a");
    assert_eq!(request.set[0].1.value, "b");
    assert_eq!(request.add[0].0.value, "x-c");
    assert_eq!(request.remove[0].value, "x-e");
    let response = canary.response_headers.as_ref().expect("response headers");
    assert_eq!(response.remove[0].value, "x-internal");
    assert!(response.set.is_empty() && response.add.is_empty());
    let rewrite = canary.rewrite.as_ref().expect("rewrite");
    assert_eq!(
        rewrite.prefix.as_ref().map(|s| s.value.as_str()),
        Some("/v2/")
    );
    assert_eq!(
        rewrite.authority.as_ref().map(|s| s.value.as_str()),
        Some("reviews-v2")
    );
    let mirror = canary.mirror.as_ref().expect("mirror");
    assert_eq!(mirror.service.name, "reviews");
    assert_eq!(mirror.subset.as_ref().map(|s| s.name.as_str()), Some("v3"));
    assert_eq!(mirror.percent.map(|p| p.per_million), Some(250_000));
    assert_eq!(text(EXAMPLE, mirror.span), "mirror reviews/v3 25%");
    let limit = canary.rate_limit.as_ref().expect("rate limit");
    assert_eq!(limit.requests.value, 100);
    assert_eq!(limit.per.millis, 1_000);
    assert_eq!(limit.burst.map(|n| n.value), Some(200));
    assert!(limit.per_source.is_some());
    assert_eq!(
        text(EXAMPLE, limit.span),
        "rate_limit 100 per 1s burst 200 per_source"
    );

    let moved = &route.rules[1];
    assert!(moved.destinations.is_empty());
    let redirect = moved.redirect.as_ref().expect("redirect");
    assert_eq!(
        redirect.scheme.as_ref().map(|s| s.value.as_str()),
        Some("https")
    );
    assert_eq!(
        redirect.authority.as_ref().map(|s| s.value.as_str()),
        Some("new.example.com")
    );
    assert_eq!(redirect.port.map(|n| n.value), Some(8443));
    assert_eq!(
        redirect.path.as_ref().map(|s| s.value.as_str()),
        Some("/new")
    );
    assert_eq!(redirect.code.map(|n| n.value), Some(308));

    let regex = route.rules[2]
        .rewrite
        .as_ref()
        .and_then(|r| r.regex.clone());
    let (pattern, substitution) = regex.expect("regex rewrite");
    assert_eq!(
        (pattern.value.as_str(), substitution.value.as_str()),
        ("^/old/(.*)", "/new/$1")
    );
}

#[test]
fn optional_parts_of_actions_may_be_left_out() {
    let r = rule("to r fault { abort 503 } mirror r rate_limit 5 per 1m");
    let fault = r.fault.expect("fault");
    assert!(fault.delay.is_none());
    assert!(matches!(fault.abort, Some((n, None)) if n.value == 503));
    let mirror = r.mirror.expect("mirror");
    assert!(mirror.subset.is_none() && mirror.percent.is_none());
    let limit = r.rate_limit.expect("rate limit");
    assert!(limit.burst.is_none() && limit.per_source.is_none());
    assert_eq!(limit.per.millis, 60_000);
    let r = rule("to r retries { attempts 0 }");
    assert!(r.retries.expect("retries").retry_on.is_empty());
    let r = rule("redirect { path \"/x\" }");
    assert!(r.destinations.is_empty() && r.redirect.is_some());
}

#[test]
fn lexes_durations_and_percentages() {
    assert_eq!(duration_millis("250ms"), Some(250));
    assert_eq!(duration_millis("10s"), Some(10_000));
    assert_eq!(duration_millis("2m"), Some(120_000));
    assert_eq!(duration_millis("1h"), Some(3_600_000));
    assert_eq!(duration_millis("0s"), Some(0));
    assert_eq!(duration_millis("99999999999999999999h"), Some(u64::MAX));
    assert_eq!(duration_millis("10"), None);
    assert_eq!(duration_millis("s"), None);
    assert_eq!(duration_millis("1d"), None);
    assert_eq!(duration_millis("1.5s"), None);
    assert_eq!(percent_per_million("100%"), Some(1_000_000));
    assert_eq!(percent_per_million("0.5%"), Some(5_000));
    assert_eq!(percent_per_million("0.0001%"), Some(1));
    assert_eq!(percent_per_million("12.25%"), Some(122_500));
    assert_eq!(percent_per_million("150%"), Some(1_500_000));
    assert_eq!(percent_per_million("0.00001%"), None);
    assert_eq!(percent_per_million("1.%"), None);
    assert_eq!(percent_per_million(".5%"), None);
    assert_eq!(percent_per_million("5"), None);
}

#[test]
fn reports_bad_durations_and_percentages() {
    let message = rule_error("to r timeout 2");
    assert_eq!(
        message,
        r#"expected a duration with a unit (e.g. 500ms, 2s, 1m, 1h), found "2""#
    );
    let message = rule_error("to r timeout 2d");
    assert!(message.starts_with("expected a duration"), "{message}");
    let message = rule_error("to r timeout fast");
    assert!(message.starts_with("expected a duration"), "{message}");
    let message = rule_error("to r mirror r 0.12345%");
    assert_eq!(
        message,
        r#"expected a percentage (e.g. 10% or 0.5%, at most 4 decimals), found "0.12345%""#
    );
    let message = rule_error("to r fault { delay 1s 10 }");
    assert!(message.starts_with("expected a percentage"), "{message}");
}

#[test]
fn reports_syntax_errors_in_policies() {
    let (code, line, col, message) = error("service s {\n  policy { load_balancer fastest }\n}");
    assert_eq!((code, line, col), (Code::Syntax, 2, 26));
    assert_eq!(
        message,
        r#"expected a load balancer (round_robin, random, least_request, ring_hash, maglev), found "fastest""#
    );
    let (_, _, _, message) = error("service s { policy { balance random } }");
    assert_eq!(
        message,
        r#"expected `load_balancer`, `pool`, `outlier` or `}`, found "balance""#
    );
    let (_, _, _, message) = error("service s { policy { pool { max_conns 1 } } }");
    assert!(
        message.starts_with("expected `max_connections`, `max_pending`"),
        "{message}"
    );
    let (_, _, _, message) = error("service s { policy { outlier { eject 1 } } }");
    assert!(
        message.starts_with("expected `consecutive_5xx`"),
        "{message}"
    );
    let (_, _, _, message) = error("service s { policy { pool { max_connections many } } }");
    assert_eq!(message, r#"expected a number, found "many""#);
    let (_, _, _, message) =
        error(r#"service s { policy { load_balancer ring_hash cookie "c" ttl soon } }"#);
    assert!(message.starts_with("expected a duration"), "{message}");
    let (_, _, _, message) = error("service s { policy { load_balancer ring_hash header x } }");
    assert_eq!(
        message,
        r#"expected a header name in double quotes, found "x""#
    );
    let (_, _, _, message) = error("service s { policy oops }");
    assert_eq!(message, r#"expected `{`, found "oops""#);
    let (_, _, _, message) = error("service s { polcy { } }");
    assert_eq!(
        message,
        r#"expected `namespace`, `port`, `endpoint`, `subset`, `policy` or `}`, found "polcy""#
    );
}

#[test]
fn reports_a_repeated_setting_as_a_duplicate() {
    let src = "service s {\n  policy {\n    load_balancer random\n    load_balancer maglev source_ip\n  }\n}";
    let (code, line, col, message) = error(src);
    assert_eq!((code, line, col), (Code::Duplicate, 4, 5));
    assert_eq!(
        message,
        "`load_balancer` is set more than once in the policy of service `s` (first at line 3)"
    );
    let (code, _, _, message) =
        error("service s { subset v { a = \"b\" } policy { pool { } pool { } } }");
    assert_eq!(code, Code::Duplicate);
    assert!(message.contains("the policy of subset `v`"), "{message}");
    let (code, _, _, message) =
        error("service s { policy { pool { max_pending 1 max_pending 2 } } }");
    assert_eq!(code, Code::Duplicate);
    assert!(message.starts_with("`max_pending` is set more than once in this `pool` block"));
    let (code, line, col, message) =
        error("route r {\n  rule x {\n    to r\n    timeout 1s\n    timeout 2s\n  }\n}");
    assert_eq!((code, line, col), (Code::Duplicate, 5, 5));
    assert_eq!(
        message,
        "`timeout` is set more than once in rule `x` (first at line 4)"
    );
    for body in [
        "to r retries { attempts 1 attempts 2 }",
        "to r fault { abort 503 abort 500 }",
        "to r rewrite { prefix \"/a\" prefix \"/b\" }",
        "redirect { code 301 code 302 }",
        "to r mirror r mirror r",
        "to r rate_limit 1 per 1s rate_limit 2 per 1s",
        "to r request_headers { } request_headers { }",
        "to r outlier",
    ] {
        let src = format!("route r {{ rule x {{ {body} }} }}");
        let (code, _, _, message) = error(&src);
        if body.ends_with("outlier") {
            assert_eq!(code, Code::Syntax, "{body}: {message}");
        } else {
            assert_eq!(code, Code::Duplicate, "{body}: {message}");
        }
    }
    // Header edits and `to` lines repeat freely.
    let r = rule(
        r#"to r weight 50 to r weight 50 request_headers { set "a" = "1" set "b" = "2" remove "c" remove "d" }"#,
    );
    assert_eq!(
        r.request_headers.map(|h| (h.set.len(), h.remove.len())),
        Some((2, 2))
    );
}

#[test]
fn reports_syntax_errors_in_rules() {
    let message = rule_error("match path prefix \"/\"");
    assert_eq!(
        message,
        "expected `match`, `to`, `}` or an action (`timeout`, `retries`, `fault`, \
         `request_headers`, `response_headers`, `rewrite`, `redirect`, `mirror`, `rate_limit`) \
         (a rule needs at least one `to`, or a `redirect`), found \"}\""
    );
    let message = rule_error("to r retry 3");
    assert!(
        message.starts_with("expected `match`, `to`, `}` or an action"),
        "{message}"
    );
    assert!(message.ends_with(r#"found "retry""#), "{message}");
    let message = rule_error(r#"match header "x" ~ "y" to r"#);
    assert_eq!(
        message,
        r#"expected `=`, `prefix`, `regex`, `present` or `absent`, found "~""#
    );
    let message = rule_error(r#"match query debug = "1" to r"#);
    assert_eq!(
        message,
        r#"expected a query parameter name in double quotes, found "debug""#
    );
    let message = rule_error(r#"match method "GET" to r"#);
    assert_eq!(
        message,
        r#"expected a method (e.g. GET), `prefix "..."` or `regex "..."`, found string "GET""#
    );
    let message = rule_error(r#"match path regex /x to r"#);
    assert_eq!(message, r#"expected a regex in double quotes, found "/""#);
    let message = rule_error("to r retries { tries 3 }");
    assert!(
        message.starts_with("expected `attempts`, `per_try_timeout`, `on`"),
        "{message}"
    );
    let message = rule_error("to r retries { on , }");
    assert!(
        message.starts_with("expected a retry condition"),
        "{message}"
    );
    let message = rule_error("to r fault { drop 5% }");
    assert_eq!(message, r#"expected `delay`, `abort` or `}`, found "drop""#);
    let message = rule_error("to r fault { abort x }");
    assert_eq!(message, r#"expected an HTTP status, found "x""#);
    let message = rule_error(r#"to r request_headers { set "a" "b" }"#);
    assert_eq!(message, r#"expected `=`, found string "b""#);
    let message = rule_error(r#"to r response_headers { append "a" = "b" }"#);
    assert_eq!(
        message,
        r#"expected `set`, `add`, `remove` or `}`, found "append""#
    );
    let message = rule_error(r#"to r rewrite { regex "a" }"#);
    assert_eq!(
        message,
        r#"expected a substitution in double quotes, found "}""#
    );
    let message = rule_error(r#"to r rewrite { path "/a" }"#);
    assert_eq!(
        message,
        r#"expected `prefix`, `regex`, `authority` or `}`, found "path""#
    );
    let message = rule_error(r#"redirect { url "x" }"#);
    assert_eq!(
        message,
        r#"expected `scheme`, `host`, `port`, `path`, `code` or `}`, found "url""#
    );
    let message = rule_error("to r rate_limit 10 / 1s");
    assert_eq!(message, r#"expected `per`, found "/""#);
    let message = rule_error("to r rate_limit many per 1s");
    assert_eq!(message, r#"expected a number of requests, found "many""#);
    let message = rule_error("to r mirror /v1");
    assert_eq!(message, r#"expected a service name, found "/""#);
    let message = rule_error("to r mirror r/ 5%");
    assert_eq!(message, r#"expected a subset name, found "5%""#);
    let message = rule_error("redirect { port x }");
    assert_eq!(message, r#"expected a port number, found "x""#);
    let message = rule_error("redirect { code moved }");
    assert_eq!(message, r#"expected a redirect status, found "moved""#);
    let message = rule_error(r#"redirect { scheme https }"#);
    assert_eq!(
        message,
        r#"expected a scheme in double quotes, found "https""#
    );
    let message = rule_error("to r rate_limit 1 per 1s burst x");
    assert_eq!(message, r#"expected a burst size, found "x""#);
    let message = rule_error("to r retries { attempts x }");
    assert_eq!(message, r#"expected a number of retries, found "x""#);
    let message = rule_error(r#"match method prefix GET to r"#);
    assert_eq!(
        message,
        r#"expected a method prefix in double quotes, found "GET""#
    );
    let message = rule_error(r#"match header "x" prefix y to r"#);
    assert_eq!(
        message,
        r#"expected a header value in double quotes, found "y""#
    );
    let message = rule_error(r#"match query "x" = y to r"#);
    assert_eq!(
        message,
        r#"expected a query value in double quotes, found "y""#
    );
}

#[test]
fn reports_bad_load_balancer_parts() {
    let (_, _, _, message) =
        error("service s { policy { load_balancer ring_hash source_ip min_ring_size x } }");
    assert_eq!(message, r#"expected a minimum ring size, found "x""#);
    let (_, _, _, message) = error("service s { policy { load_balancer ring_hash cookie c } }");
    assert_eq!(
        message,
        r#"expected a cookie name in double quotes, found "c""#
    );
    let (_, _, _, message) = error("service s { subset v { a = \"b\" } policy { pool x } }");
    assert_eq!(message, r#"expected `{`, found "x""#);
}
