use spec::Snapshot;

use super::{explain, Destination, Explanation, Outcome, Request, RequestError};
use crate::diag::Sources;

const MESH: &str = r#"service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" }
}
service ratings { port 9090 http endpoint 127.0.0.1:9091 }
route reviews {
  rule canary {
    match header "X-Canary" = "true" and path prefix "/api"
    to reviews/v2
  }
  rule exact {
    match path exact "/health"
    to reviews/v1
  }
  rule split {
    match path prefix "/api"
    match path prefix "/v1"
    to reviews/v1 weight 90
    to reviews/v2 weight 10
  }
}
route ratings {
  rule only-get { match header "x-method" = "get" to ratings }
}
workload productpage { outbound reviews }
"#;

fn snapshot() -> Snapshot {
    let mut sources = Sources::new();
    sources.add("m.mesh", MESH);
    match crate::compile_sources(sources) {
        Ok(compiled) => compiled.snapshot,
        Err(failed) => panic!("{}", failed.render()),
    }
}

fn ask(line: &str, headers: &[&str], workload: Option<&str>) -> Explanation {
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let request = Request::parse(line, &headers).expect("valid request");
    explain(&snapshot(), workload, request, None).expect("known workload")
}

/// `(rule, "file:line")` of a routed answer.
fn rule(e: &Explanation) -> (String, String) {
    match &e.outcome {
        Outcome::Routed { rule, source, .. } => {
            (rule.clone(), format!("{}:{}", source.file, source.line))
        }
        other => panic!("not routed: {other:?}"),
    }
}

#[test]
fn header_match_needs_every_condition_and_ignores_header_name_case() {
    let e = ask("GET http://reviews/api/x", &["x-canary: true"], None);
    assert_eq!(rule(&e), ("canary".into(), "m.mesh:10".into()));
    let e = ask("GET http://reviews/api/x", &["X-CANARY:true "], None);
    assert_eq!(rule(&e).0, "canary");
    // The value is compared byte for byte.
    let e = ask("GET http://reviews/api/x", &["x-canary: TRUE"], None);
    assert_eq!(rule(&e).0, "split");
    // The header alone is not enough: the path condition is ANDed.
    let e = ask("GET http://reviews/other", &["x-canary: true"], None);
    assert!(matches!(e.outcome, Outcome::NoRuleMatched { .. }));
}

#[test]
fn exact_path_ignores_the_query_and_prefix_matches_longer_paths() {
    assert_eq!(
        rule(&ask("GET http://reviews/health?full=1", &[], None)).0,
        "exact"
    );
    let e = ask("GET http://reviews/health/deep", &[], None);
    assert!(matches!(e.outcome, Outcome::NoRuleMatched { .. }));
    assert_eq!(
        rule(&ask("GET http://reviews/apiary", &[], None)).0,
        "split"
    );
    // The second `match` line is ORed with the first.
    let e = ask("GET http://reviews/v1/x", &[], None);
    assert_eq!(rule(&e).0, "split");
    let Outcome::Routed { destinations, .. } = &e.outcome else {
        panic!("not routed");
    };
    assert_eq!(
        destinations,
        &[
            Destination {
                service: "reviews".into(),
                subset: Some("v1".into()),
                weight: 90
            },
            Destination {
                service: "reviews".into(),
                subset: Some("v2".into()),
                weight: 10
            },
        ]
    );
}

#[test]
fn host_port_is_ignored_and_fqdn_and_upper_case_hosts_resolve() {
    for url in [
        "http://reviews:9080/health",
        "http://REVIEWS/health",
        "http://reviews.default.svc.cluster.local:9080/health",
        "http://Reviews.Default.Svc/health",
    ] {
        assert_eq!(
            rule(&ask(&format!("GET {url}"), &[], None)).0,
            "exact",
            "{url}"
        );
    }
    let e = ask("GET http://reviews.other/health", &[], None);
    assert_eq!(
        e.outcome,
        Outcome::UnknownHost {
            host: "reviews.other".into(),
            hidden_service: None
        }
    );
}

#[test]
fn workload_sees_only_its_outbound_services() {
    let e = ask("GET http://ratings/", &["x-method: get"], None);
    assert_eq!(rule(&e).0, "only-get");
    let e = ask(
        "GET http://ratings/",
        &["x-method: get"],
        Some("productpage"),
    );
    assert_eq!(
        e.outcome,
        Outcome::UnknownHost {
            host: "ratings".into(),
            hidden_service: Some("ratings".into())
        }
    );
    assert!(e
        .error()
        .is_some_and(|m| m.contains("outbound list of workload `productpage`")));
    let e = ask("GET http://reviews/health", &[], Some("productpage"));
    assert_eq!(rule(&e).0, "exact");

    let request = Request::parse("GET http://reviews/", &[]).expect("valid");
    let err = explain(&snapshot(), Some("details"), request, None).expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown workload `details`; the snapshot has: productpage"
    );
}

#[test]
fn no_match_lists_every_rule_tried_with_its_source() {
    let e = ask("POST http://reviews/nothing", &[], None);
    let Outcome::NoRuleMatched { service, tried } = &e.outcome else {
        panic!("expected no match: {:?}", e.outcome);
    };
    assert_eq!(service, "reviews");
    let tried: Vec<String> = tried
        .iter()
        .map(|(name, s)| format!("{name} {}:{}", s.file, s.line))
        .collect();
    assert_eq!(
        tried,
        ["canary m.mesh:10", "exact m.mesh:14", "split m.mesh:18"]
    );
    let text = e.render();
    assert!(
        text.contains("no route: no rule of the route for service `reviews` matched POST /nothing")
    );
    assert!(text.contains("  exact (m.mesh:14)\n"), "{text}");
    let json = e.to_json();
    assert!(json["route"].is_null());
    assert_eq!(json["rules_tried"][2]["source"], "m.mesh:18");
}

#[test]
fn json_names_rule_source_destinations_and_the_defaults() {
    let mut e = ask("GET http://reviews/health", &[], None);
    e.from = Some("spiffe://cluster.local/ns/default/sa/productpage".into());
    let json = e.to_json();
    assert_eq!(json["route"]["rule"], "exact");
    assert_eq!(json["route"]["source"], "m.mesh:14");
    assert_eq!(json["route"]["service"], "reviews");
    assert_eq!(json["destinations"][0]["service"], "reviews");
    assert_eq!(json["destinations"][0]["subset"], "v1");
    assert_eq!(json["destinations"][0]["weight"], 100);
    assert!(json["timeout_ms"].is_null());
    assert_eq!(json["timeout_default"], true);
    assert_eq!(json["retries"]["attempts"], 1);
    assert_eq!(json["retries"]["default"], true);
    assert!(json["fault"].is_null());
    assert!(json["rewrite"].is_null());
    // No workload serves `reviews`: nothing to authorize on the inbound side.
    assert_eq!(json["authz"]["decision"], "allow");
    assert!(json["authz"]["policy"].is_null());
    assert_eq!(
        json["from"],
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    assert!(json.get("error").is_none());
    let text = e.render();
    for line in [
        "route: service reviews, rule exact (m.mesh:14)\n",
        "  reviews/v1 100%\n",
        "timeout: sidecar default (--upstream-timeout, 15s)\n",
        "retries: sidecar default (1 retry of idempotent requests that failed before any response byte)\n",
        "fault injection: none\n",
        "authorization: allow (no workload declares that it serves reviews, so no inbound policy applies)\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn parses_request_lines_like_a_client_sends_them() {
    let r = Request::parse("GET http://reviews:9080?q=1#frag", &[]).expect("valid");
    assert_eq!(
        (r.host.as_str(), r.port, r.path.as_str()),
        ("reviews", Some(9080), "/")
    );
    let r = Request::parse("GET http://[::1]:80/a?b", &[]).expect("valid");
    assert_eq!(
        (r.host.as_str(), r.port, r.path.as_str()),
        ("[::1]", Some(80), "/a")
    );
    let r = Request::parse("GET http://[::1]", &[]).expect("valid");
    assert_eq!((r.host.as_str(), r.port), ("[::1]", None));
    assert!(matches!(
        Request::parse("http://reviews/", &[]),
        Err(RequestError::Line(_))
    ));
    assert!(matches!(
        Request::parse("GET https://reviews/", &[]),
        Err(RequestError::Url(_))
    ));
    assert!(matches!(
        Request::parse("GET http://reviews:http/", &[]),
        Err(RequestError::Port(_))
    ));
    assert!(matches!(
        Request::parse("GET http:///x", &[]),
        Err(RequestError::Url(_))
    ));
    assert_eq!(
        Request::parse("GET http://r/", &["no-colon".into()]),
        Err(RequestError::Header("no-colon".into()))
    );
}

// ---- Format v2: match kinds, actions and authorization, on snapshots built in Rust (no
// config syntax produces them in this crate yet).

use spec::{
    AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource,
    ConditionKey, FaultAbort, FaultDelay, FaultInjection, HeaderMatch, HeaderValue, InboundPort,
    Mirror, PathMatch, Protocol, QueryMatch, RateLimit, Redirect, RegexRewrite, RequestMatch,
    RetryOn, RetryPolicy, Rewrite, RouteRule, SourceLocation, StringPattern, TlsMode, ValueMatch,
    Workload,
};

use super::{Authorization, Decision};

/// The route table rules of `service` in `snap`, for editing.
fn rules_mut<'s>(snap: &'s mut Snapshot, service: &str) -> &'s mut Vec<RouteRule> {
    let (index, _) = snap.service(service).expect("service");
    let table = snap
        .routes
        .iter_mut()
        .find(|t| t.service == index)
        .expect("route table");
    &mut table.rules
}

/// Replaces the rules of `reviews` with one rule `r` (line 42) matching `m`, to `reviews/v1`.
fn one_rule(snap: &mut Snapshot, matches: Vec<RequestMatch>) -> &mut RouteRule {
    let (reviews, _) = snap.service("reviews").expect("reviews");
    let rules = rules_mut(snap, "reviews");
    *rules = vec![RouteRule {
        name: "r".into(),
        matches,
        destinations: vec![spec::WeightedDestination {
            service: reviews,
            subset: Some(0),
            weight: 100,
        }],
        source: SourceLocation {
            file: "v2.mesh".into(),
            line: 42,
            column: 3,
        },
        ..RouteRule::default()
    }];
    &mut rules[0]
}

fn ask_in(snap: &Snapshot, line: &str, headers: &[&str]) -> Explanation {
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let request = Request::parse(line, &headers).expect("valid request");
    explain(snap, None, request, None).expect("no workload")
}

fn routed(snap: &Snapshot, line: &str, headers: &[&str]) -> bool {
    ask_in(snap, line, headers).is_routed()
}

fn header(name: &str, value: ValueMatch) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        value,
    }
}

#[test]
fn path_regex_is_anchored_at_both_ends() {
    let mut snap = snapshot();
    one_rule(
        &mut snap,
        vec![RequestMatch {
            path: Some(PathMatch::Regex("/api/v[0-9]+".into())),
            ..RequestMatch::default()
        }],
    );
    assert!(routed(&snap, "GET http://reviews/api/v12?x=1", &[]));
    assert!(!routed(&snap, "GET http://reviews/api/v12/books", &[]));
    assert!(!routed(&snap, "GET http://reviews/x/api/v1", &[]));
    // An alternation stays inside the anchors.
    one_rule(
        &mut snap,
        vec![RequestMatch {
            path: Some(PathMatch::Regex("/a|/b".into())),
            ..RequestMatch::default()
        }],
    );
    assert!(routed(&snap, "GET http://reviews/b", &[]));
    assert!(!routed(&snap, "GET http://reviews/ab", &[]));
    assert!(!routed(&snap, "GET http://reviews/a/x", &[]));
}

#[test]
fn method_matches_exact_prefix_and_regex() {
    let mut snap = snapshot();
    let method = |m: ValueMatch| {
        vec![RequestMatch {
            method: Some(m),
            ..RequestMatch::default()
        }]
    };
    one_rule(&mut snap, method(ValueMatch::Exact("GET".into())));
    assert!(routed(&snap, "GET http://reviews/", &[]));
    assert!(!routed(&snap, "get http://reviews/", &[]));
    assert!(!routed(&snap, "POST http://reviews/", &[]));
    one_rule(&mut snap, method(ValueMatch::Prefix("P".into())));
    assert!(routed(&snap, "PUT http://reviews/", &[]));
    assert!(!routed(&snap, "GET http://reviews/", &[]));
    one_rule(&mut snap, method(ValueMatch::Regex("GET|HEAD".into())));
    assert!(routed(&snap, "HEAD http://reviews/", &[]));
    assert!(!routed(&snap, "GETX http://reviews/", &[]));
}

#[test]
fn header_matches_every_value_kind_and_repeated_headers() {
    let mut snap = snapshot();
    let headers = |h: Vec<HeaderMatch>| {
        vec![RequestMatch {
            headers: h,
            ..RequestMatch::default()
        }]
    };
    one_rule(
        &mut snap,
        headers(vec![header("x-user", ValueMatch::Prefix("qa-".into()))]),
    );
    assert!(routed(&snap, "GET http://reviews/", &["X-User: qa-1"]));
    assert!(!routed(&snap, "GET http://reviews/", &["x-user: dev"]));
    // A repeated header matches when one of its values does.
    assert!(routed(
        &snap,
        "GET http://reviews/",
        &["x-user: dev", "x-user: qa-2"]
    ));
    one_rule(
        &mut snap,
        headers(vec![header("x-v", ValueMatch::Regex("[0-9]+".into()))]),
    );
    assert!(routed(&snap, "GET http://reviews/", &["x-v: 42"]));
    assert!(!routed(&snap, "GET http://reviews/", &["x-v: 42a"]));
    one_rule(
        &mut snap,
        headers(vec![
            header("x-debug", ValueMatch::Present),
            header("x-skip", ValueMatch::Absent),
        ]),
    );
    assert!(routed(&snap, "GET http://reviews/", &["x-debug:"]));
    assert!(!routed(&snap, "GET http://reviews/", &[]));
    assert!(!routed(
        &snap,
        "GET http://reviews/",
        &["x-debug: 1", "X-Skip: 1"]
    ));
}

#[test]
fn query_parameters_come_from_the_url_percent_decoded() {
    let mut snap = snapshot();
    let query = |name: &str, value: ValueMatch| {
        vec![RequestMatch {
            query: vec![QueryMatch {
                name: name.into(),
                value,
            }],
            ..RequestMatch::default()
        }]
    };
    one_rule(&mut snap, query("user", ValueMatch::Exact("a b/c".into())));
    assert!(routed(
        &snap,
        "GET http://reviews/x?id=1&user=a%20b%2Fc",
        &[]
    ));
    assert!(!routed(&snap, "GET http://reviews/x?User=a%20b%2Fc", &[]));
    assert!(!routed(&snap, "GET http://reviews/x", &[]));
    one_rule(&mut snap, query("debug", ValueMatch::Present));
    assert!(routed(&snap, "GET http://reviews/?debug", &[]));
    assert!(routed(&snap, "GET http://reviews?debug=", &[]));
    assert!(!routed(&snap, "GET http://reviews/?debugx=1", &[]));
    one_rule(&mut snap, query("debug", ValueMatch::Absent));
    assert!(routed(&snap, "GET http://reviews/?other=1", &[]));
    assert!(!routed(&snap, "GET http://reviews/?debug=0", &[]));
    let r = Request::parse("GET http://r/?a=%41%zz&b", &[]).expect("valid");
    assert_eq!(r.query.as_deref(), Some("a=%41%zz&b"));
}

#[test]
fn a_regex_that_does_not_compile_matches_nothing_and_says_so() {
    let mut snap = snapshot();
    one_rule(
        &mut snap,
        vec![RequestMatch {
            path: Some(PathMatch::Regex("/(unclosed".into())),
            ..RequestMatch::default()
        }],
    );
    let e = ask_in(&snap, "GET http://reviews/(unclosed", &[]);
    assert!(!e.is_routed());
    assert_eq!(e.notes.len(), 1);
    assert!(e.notes[0].starts_with("regex \"/(unclosed\" does not compile"));
    assert!(e
        .render()
        .contains("note: regex \"/(unclosed\" does not compile"));
    assert_eq!(e.to_json()["notes"][0], e.notes[0].as_str());
}

/// A rule with every action set, matching `path prefix "/api"`.
fn full_actions(snap: &mut Snapshot) {
    let (ratings, _) = snap.service("ratings").expect("ratings");
    let rule = one_rule(
        snap,
        vec![RequestMatch {
            path: Some(PathMatch::Prefix("/api".into())),
            ..RequestMatch::default()
        }],
    );
    rule.timeout_ms = Some(2500);
    rule.retries = Some(RetryPolicy {
        attempts: 3,
        per_try_timeout_ms: Some(800),
        retry_on: RetryOn {
            gateway_error: true,
            connect_failure: true,
            status_codes: vec![409, 429],
            ..RetryOn::default()
        },
        backoff_base_ms: 25,
        backoff_max_ms: 250,
        non_idempotent: false,
    });
    rule.fault = Some(FaultInjection {
        delay: Some(FaultDelay {
            delay_ms: 5000,
            per_million: 100_000,
        }),
        abort: Some(FaultAbort {
            status: 503,
            per_million: 5_000,
        }),
    });
    rule.headers.request.set = vec![HeaderValue {
        name: "x-env".into(),
        value: "canary".into(),
    }];
    rule.headers.request.remove = vec!["x-debug".into()];
    rule.headers.response.add = vec![HeaderValue {
        name: "x-served-by".into(),
        value: "reviews".into(),
    }];
    rule.rewrite = Some(Rewrite {
        path_prefix: Some("/v2".into()),
        path_regex: None,
        authority: Some("reviews.internal".into()),
    });
    rule.mirror = Some(Mirror {
        service: ratings,
        subset: None,
        per_million: 250_000,
    });
    rule.rate_limit = Some(RateLimit {
        tokens_per_fill: 100,
        fill_interval_ms: 1000,
        max_tokens: 200,
        per_source: true,
    });
}

#[test]
fn every_rule_action_is_shown_in_text_and_json() {
    let mut snap = snapshot();
    full_actions(&mut snap);
    let e = ask_in(&snap, "GET http://reviews/api/books?id=7", &[]);
    let text = e.render();
    for line in [
        "route: service reviews, rule r (v2.mesh:42)",
        "  reviews/v1 100%",
        "timeout: 2500ms (rule)",
        "retries: 3 attempts, 800ms per try, on gateway-error, connect-failure, \
         retriable-status-codes 409 429, backoff 25ms..250ms, idempotent methods only",
        "fault injection: delay 5000ms for 10% of requests; abort with 503 for 0.5% of requests",
        "request headers: remove x-debug; set x-env: canary",
        "response headers: add x-served-by: reviews",
        "rewrite: path /v2/books, host reviews.internal",
        "mirror: 25% of requests to ratings",
        "rate limit: 100 requests per 1000ms, burst 200, one bucket per caller",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    let json = e.to_json();
    assert_eq!(json["timeout_ms"], 2500);
    assert_eq!(json["timeout_default"], false);
    assert_eq!(json["retries"]["attempts"], 3);
    assert_eq!(json["retries"]["per_try_timeout_ms"], 800);
    assert_eq!(
        json["retries"]["retry_on"],
        serde_json::json!([
            "gateway-error",
            "connect-failure",
            "retriable-status-codes 409 429"
        ])
    );
    assert_eq!(json["retries"]["applies"], true);
    assert_eq!(json["fault"]["delay"]["delay_ms"], 5000);
    assert_eq!(json["fault"]["delay"]["percent"], 10.0);
    assert_eq!(json["fault"]["abort"]["status"], 503);
    assert_eq!(json["fault"]["abort"]["per_million"], 5000);
    assert_eq!(json["headers"]["request"]["set"][0]["name"], "x-env");
    assert_eq!(json["headers"]["request"]["remove"][0], "x-debug");
    assert_eq!(json["rewrite"]["path"], "/v2/books");
    assert_eq!(json["rewrite"]["host"], "reviews.internal");
    assert_eq!(json["rewrite"]["path_prefix"], "/v2");
    assert_eq!(json["mirror"]["service"], "ratings");
    assert!(json["mirror"]["subset"].is_null());
    assert_eq!(json["mirror"]["percent"], 25.0);
    assert_eq!(json["rate_limit"]["max_tokens"], 200);
    assert_eq!(json["rate_limit"]["per_source"], true);

    // A POST is not retried by a policy without `non_idempotent`.
    let e = ask_in(&snap, "POST http://reviews/api/books", &[]);
    assert!(e
        .render()
        .contains("(POST is not idempotent: not retried)\n"));
    assert_eq!(e.to_json()["retries"]["applies"], false);
}

#[test]
fn rewrites_replace_what_the_match_matched() {
    let mut snap = snapshot();
    let rewrite = |snap: &mut Snapshot, path: Option<PathMatch>, rw: Rewrite| {
        one_rule(
            snap,
            vec![RequestMatch {
                path,
                ..RequestMatch::default()
            }],
        )
        .rewrite = Some(rw);
    };
    let prefix = |p: &str| Rewrite {
        path_prefix: Some(p.into()),
        ..Rewrite::default()
    };
    let path_after = |snap: &Snapshot, url: &str| -> String {
        let e = ask_in(snap, &format!("GET {url}"), &[]);
        e.to_json()["rewrite"]["path"]
            .as_str()
            .expect("rewritten")
            .to_owned()
    };
    rewrite(
        &mut snap,
        Some(PathMatch::Exact("/old".into())),
        prefix("/new"),
    );
    assert_eq!(path_after(&snap, "http://reviews/old?q"), "/new");
    rewrite(
        &mut snap,
        Some(PathMatch::Prefix("/api/".into())),
        prefix("/"),
    );
    assert_eq!(path_after(&snap, "http://reviews/api/books"), "/books");
    // Without a path condition the matched part is `/`, as in Envoy.
    rewrite(&mut snap, None, prefix("/v2/"));
    assert_eq!(path_after(&snap, "http://reviews/books"), "/v2/books");
    rewrite(
        &mut snap,
        None,
        Rewrite {
            path_regex: Some(RegexRewrite {
                pattern: "^/users/([0-9]+)/profile$".into(),
                substitution: "/profiles/$1".into(),
            }),
            ..Rewrite::default()
        },
    );
    assert_eq!(
        path_after(&snap, "http://reviews/users/17/profile"),
        "/profiles/17"
    );
}

#[test]
fn a_redirect_shows_the_location_and_skips_authorization() {
    let mut snap = snapshot();
    let rule = one_rule(&mut snap, Vec::new());
    rule.destinations.clear();
    rule.redirect = Some(Redirect {
        scheme: Some("https".into()),
        authority: Some("reviews.example.com".into()),
        port: None,
        path: Some("/moved".into()),
        status: 301,
    });
    let e = ask_in(&snap, "GET http://reviews:9080/old?a=1", &[]);
    let text = e.render();
    assert!(
        text.contains("redirect: 301 to https://reviews.example.com/moved?a=1\n"),
        "{text}"
    );
    assert!(!text.contains("destinations:"), "{text}");
    assert!(text.contains("authorization: not evaluated (the caller's sidecar answers"));
    let json = e.to_json();
    assert_eq!(json["redirect"]["status"], 301);
    assert_eq!(
        json["redirect"]["location"], "https://reviews.example.com/moved?a=1",
        "a new scheme and host do not keep the request's port, as meshd answers"
    );
    assert!(json["authz"]["decision"].is_null());
    assert_eq!(json["destinations"], serde_json::json!([]));
}

// ---- Authorization.

const CALLER: &str = "spiffe://cluster.local/ns/default/sa/productpage";

fn location(line: u32) -> SourceLocation {
    SourceLocation {
        file: "authz.mesh".into(),
        line,
        column: 1,
    }
}

fn policy(
    name: &str,
    action: AuthzAction,
    rules: Vec<AuthzRule>,
    line: u32,
) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.into(),
        action,
        rules,
        source: location(line),
    }
}

fn from_principal(p: StringPattern) -> AuthzRule {
    AuthzRule {
        from: vec![AuthzSource {
            principals: vec![p],
            ..AuthzSource::default()
        }],
        ..AuthzRule::default()
    }
}

fn to_methods(methods: &[&str]) -> AuthzRule {
    AuthzRule {
        to: vec![AuthzOperation {
            methods: methods
                .iter()
                .map(|m| StringPattern::Exact((*m).into()))
                .collect(),
            ..AuthzOperation::default()
        }],
        ..AuthzRule::default()
    }
}

/// The MESH snapshot plus workload `reviews-server` serving `reviews` on 9080 with `policies`.
fn served(policies: Vec<AuthorizationPolicy>, tls: TlsMode) -> Snapshot {
    let mut snap = snapshot();
    let (reviews, _) = snap.service("reviews").expect("reviews");
    snap.workloads.push(Workload {
        name: "reviews-server".into(),
        namespace: "default".into(),
        identity: Some("spiffe://cluster.local/ns/default/sa/reviews".into()),
        inbound: vec![InboundPort {
            port: 9080,
            protocol: Protocol::Http,
            target: "127.0.0.1:19080".parse().expect("address"),
            tls,
        }],
        outbound: Vec::new(),
        serves: vec![reviews],
        authorization: policies,
        jwt: Vec::new(),
        telemetry: spec::Telemetry::default(),
        labels: Default::default(),
        outbound_traffic: Default::default(),
    });
    snap.validate().expect("valid");
    snap
}

fn decide(
    snap: &Snapshot,
    line: &str,
    headers: &[&str],
    workload: Option<&str>,
    from: Option<&str>,
) -> Explanation {
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let request = Request::parse(line, &headers).expect("valid request");
    explain(snap, workload, request, from.map(str::to_owned)).expect("known workload")
}

/// `(decision, policy)` from the JSON.
fn verdict(e: &Explanation) -> (String, Option<String>) {
    let json = e.to_json();
    (
        json["authz"]["decision"]
            .as_str()
            .unwrap_or("null")
            .to_owned(),
        json["authz"]["policy"].as_str().map(str::to_owned),
    )
}

#[test]
fn deny_policies_win_over_allow_policies() {
    let snap = served(
        vec![
            policy(
                "allow-productpage",
                AuthzAction::Allow,
                vec![from_principal(StringPattern::Exact(CALLER.into()))],
                3,
            ),
            policy(
                "no-delete",
                AuthzAction::Deny,
                vec![to_methods(&["DELETE"])],
                9,
            ),
        ],
        TlsMode::Permissive,
    );
    let e = decide(&snap, "GET http://reviews/health", &[], None, Some(CALLER));
    assert_eq!(
        verdict(&e),
        ("allow".into(), Some("allow-productpage".into()))
    );
    let text = e.render();
    assert!(
        text.contains("authorization: allow (policy allow-productpage, authz.mesh:3)\n"),
        "{text}"
    );
    assert!(text
        .contains("  on workload reviews-server: allow, ALLOW policy allow-productpage matches\n"));
    let e = decide(
        &snap,
        "DELETE http://reviews/health",
        &[],
        None,
        Some(CALLER),
    );
    assert_eq!(verdict(&e), ("deny".into(), Some("no-delete".into())));
    assert_eq!(e.to_json()["authz"]["policy_source"], "authz.mesh:9");
    assert!(e
        .render()
        .contains("authorization: deny (policy no-delete, authz.mesh:9)\n"));
}

#[test]
fn with_allow_policies_an_unmatched_request_is_denied_and_they_are_listed() {
    let snap = served(
        vec![
            policy(
                "allow-productpage",
                AuthzAction::Allow,
                vec![from_principal(StringPattern::Exact(CALLER.into()))],
                3,
            ),
            policy(
                "allow-reads",
                AuthzAction::Allow,
                vec![to_methods(&["GET"])],
                5,
            ),
            policy("log-all", AuthzAction::Audit, vec![AuthzRule::default()], 7),
        ],
        TlsMode::Permissive,
    );
    let other = "spiffe://cluster.local/ns/default/sa/ratings";
    let e = decide(&snap, "POST http://reviews/health", &[], None, Some(other));
    assert_eq!(verdict(&e), ("deny".into(), None));
    let json = e.to_json();
    assert_eq!(
        json["authz"]["reason"],
        "no ALLOW policy matched (allow-productpage, allow-reads)"
    );
    assert_eq!(json["authz"]["audited_by"][0], "log-all");
    let text = e.render();
    assert!(
        text.contains("authorization: deny (no policy decided)\n"),
        "{text}"
    );
    assert!(text.contains("    audited by: log-all\n"), "{text}");
    // The second ALLOW policy matches a GET from anyone; absent identity fails `principals`.
    let e = decide(&snap, "GET http://reviews/health", &[], None, None);
    assert_eq!(verdict(&e), ("allow".into(), Some("allow-reads".into())));
}

#[test]
fn an_allow_policy_without_rules_denies_and_no_policy_allows() {
    let snap = served(
        vec![policy("deny-all", AuthzAction::Allow, Vec::new(), 1)],
        TlsMode::Permissive,
    );
    let e = decide(&snap, "GET http://reviews/health", &[], None, Some(CALLER));
    assert_eq!(verdict(&e), ("deny".into(), None));
    let snap = served(Vec::new(), TlsMode::Permissive);
    let e = decide(&snap, "GET http://reviews/health", &[], None, Some(CALLER));
    assert_eq!(verdict(&e), ("allow".into(), None));
    assert_eq!(e.to_json()["authz"]["reason"], "no authorization policy");
    assert_eq!(e.to_json()["authz"]["workload"], "reviews-server");
}

#[test]
fn not_fields_namespaces_ports_and_when_conditions() {
    // Deny callers outside `default` unless they send `x-token: ok`, on port 9080 only.
    let rule = AuthzRule {
        from: vec![AuthzSource {
            not_namespaces: vec![StringPattern::Exact("default".into())],
            ..AuthzSource::default()
        }],
        to: vec![AuthzOperation {
            ports: vec![9080],
            not_paths: vec![StringPattern::Prefix("/public".into())],
            ..AuthzOperation::default()
        }],
        when: vec![AuthzCondition {
            key: ConditionKey::RequestHeader("x-token".into()),
            values: Vec::new(),
            not_values: vec![StringPattern::Exact("ok".into())],
        }],
    };
    let snap = served(
        vec![policy("outsiders", AuthzAction::Deny, vec![rule], 2)],
        TlsMode::Permissive,
    );
    let prod = "spiffe://cluster.local/ns/prod/sa/x";
    let deny = |url: &str, headers: &[&str], from: Option<&str>| {
        verdict(&decide(&snap, &format!("GET {url}"), headers, None, from)).0 == "deny"
    };
    assert!(deny("http://reviews/api", &[], Some(prod)));
    // No identity: no namespace, and a `not_namespaces` list holds for an absent attribute.
    assert!(deny("http://reviews/api", &[], None));
    assert!(!deny("http://reviews/api", &[], Some(CALLER)));
    assert!(!deny("http://reviews/api", &["x-token: ok"], Some(prod)));
    assert!(!deny("http://reviews/public/x", &[], Some(prod)));
    // The port comes from the URL, or the service's only port (reviews has 9080).
    assert!(!deny("http://reviews:9081/api", &[], Some(prod)));
    assert!(deny("http://reviews:9080/api", &[], Some(prod)));
}

#[test]
fn strict_mtls_refuses_a_caller_without_identity() {
    let snap = served(Vec::new(), TlsMode::Strict);
    let e = decide(&snap, "GET http://reviews/health", &[], None, None);
    assert_eq!(verdict(&e), ("deny".into(), None));
    assert!(e.to_json()["authz"]["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("inbound port 9080 requires mutual TLS (strict)")));
    let e = decide(&snap, "GET http://reviews/health", &[], None, Some(CALLER));
    assert_eq!(verdict(&e).0, "allow");
    // Plaintext only: the identity cannot be presented, and the answer says so.
    let snap = served(
        vec![policy(
            "only-productpage",
            AuthzAction::Allow,
            vec![from_principal(StringPattern::Any)],
            1,
        )],
        TlsMode::Disable,
    );
    let e = decide(&snap, "GET http://reviews/health", &[], None, Some(CALLER));
    assert_eq!(verdict(&e).0, "deny");
    assert!(e.render().contains("is plaintext only (tls disable)"));
}

#[test]
fn jwt_attributes_are_absent_and_noted() {
    let rule = AuthzRule {
        when: vec![AuthzCondition {
            key: ConditionKey::JwtClaim(vec!["groups".into()]),
            values: vec![StringPattern::Exact("admin".into())],
            not_values: Vec::new(),
        }],
        ..AuthzRule::default()
    };
    let snap = served(
        vec![policy("admins", AuthzAction::Allow, vec![rule], 4)],
        TlsMode::Permissive,
    );
    let e = decide(&snap, "GET http://reviews/health", &[], None, Some(CALLER));
    assert_eq!(verdict(&e).0, "deny");
    let json = e.to_json();
    assert_eq!(json["authz"]["notes"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        json["authz"]["notes"][0],
        "policy admins reads request.auth.claims[groups], which explain cannot know: treated \
         as absent"
    );
}

#[test]
fn the_workload_flag_names_the_callee_or_the_caller() {
    let snap = served(
        vec![policy(
            "no-get",
            AuthzAction::Deny,
            vec![to_methods(&["GET"])],
            1,
        )],
        TlsMode::Permissive,
    );
    // Caller: `productpage` may call `reviews`; the serving workload decides.
    let e = decide(
        &snap,
        "GET http://reviews/health",
        &[],
        Some("productpage"),
        None,
    );
    assert_eq!(rule(&e).0, "exact");
    assert_eq!(verdict(&e), ("deny".into(), Some("no-get".into())));
    // Callee: `reviews-server` serves `reviews` (not in its outbound list: still routed).
    let e = decide(
        &snap,
        "GET http://reviews/health",
        &[],
        Some("reviews-server"),
        None,
    );
    assert_eq!(rule(&e).0, "exact");
    let Authorization::Evaluated(verdicts) = &e.authz else {
        panic!("not evaluated: {:?}", e.authz);
    };
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].workload, "reviews-server");
    assert_eq!(verdicts[0].decision, Decision::Deny);
    // A second server for `reviews` with no policy: both are evaluated, deny wins overall.
    let mut snap = snap;
    let mut other = snap.workloads[1].clone();
    other.name = "reviews-v2".into();
    other.authorization.clear();
    snap.workloads.push(other);
    let e = decide(&snap, "GET http://reviews/health", &[], None, None);
    let json = e.to_json();
    assert_eq!(json["authz"]["decision"], "deny");
    assert_eq!(json["authz"]["workload"], "reviews-server");
    assert_eq!(json["authz"]["workloads"][1]["workload"], "reviews-v2");
    assert_eq!(json["authz"]["workloads"][1]["decision"], "allow");
}

#[test]
fn a_caller_calling_over_mutual_tls_presents_its_own_identity() {
    let productpage = "spiffe://cluster.local/ns/default/sa/productpage";
    let mut snap = served(
        vec![policy(
            "from-productpage",
            AuthzAction::Allow,
            vec![from_principal(StringPattern::Exact(productpage.into()))],
            1,
        )],
        TlsMode::Strict,
    );
    snap.workloads[0].identity = Some(productpage.into());
    let ask = |snap: &Snapshot, from| {
        decide(
            snap,
            "GET http://reviews/health",
            &[],
            Some("productpage"),
            from,
        )
    };
    // `reviews` names no server identity: the call is plaintext, refused by the strict port.
    assert_eq!(verdict(&ask(&snap, None)).0, "deny");
    let (reviews, _) = snap.service("reviews").expect("reviews");
    snap.services[reviews as usize].identities =
        vec!["spiffe://cluster.local/ns/default/sa/reviews".into()];
    let e = ask(&snap, None);
    assert_eq!(e.from.as_deref(), Some(productpage));
    assert_eq!(
        verdict(&e),
        ("allow".into(), Some("from-productpage".into()))
    );
    assert!(
        e.notes.iter().any(|n| n.contains("--from overrides it")),
        "{:?}",
        e.notes
    );
    let other = "spiffe://cluster.local/ns/default/sa/other";
    assert_eq!(verdict(&ask(&snap, Some(other))).0, "deny");
}

#[test]
fn jwt_rules_and_a_non_spiffe_caller_are_noted() {
    let mut snap = served(Vec::new(), TlsMode::Permissive);
    snap.workloads[1].jwt = vec![spec::JwtRule {
        issuer: "https://issuer.example".into(),
        audiences: Vec::new(),
        jwks_file: "keys.json".into(),
        source: location(1),
    }];
    let e = decide(
        &snap,
        "GET http://reviews/health",
        &[],
        None,
        Some("cluster.local/ns/default/sa/productpage"),
    );
    assert_eq!(verdict(&e).0, "allow");
    let text = e.render();
    assert!(
        text.contains(
            "    note: a JWT from https://issuer.example is validated when the request carries \
             one (an invalid token gets 401); explain sends none\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "note: --from \"cluster.local/ns/default/sa/productpage\" is not a spiffe:// ID"
        ),
        "{text}"
    );
}

#[test]
fn a_mirror_names_its_target_and_share() {
    let mut snap = snapshot();
    let (ratings, _) = snap.service("ratings").expect("ratings");
    one_rule(&mut snap, Vec::new()).mirror = Some(Mirror {
        service: ratings,
        subset: None,
        per_million: 1,
    });
    let e = ask_in(&snap, "GET http://reviews/", &[]);
    assert!(e
        .render()
        .contains("mirror: 0.0001% of requests to ratings\n"));
    assert_eq!(e.to_json()["mirror"]["per_million"], 1);
}
