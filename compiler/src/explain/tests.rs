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
fn json_names_rule_source_destinations_and_the_absent_policies() {
    let mut e = ask("GET http://reviews/health", &[], None);
    e.from = Some("spiffe://cluster.local/ns/default/sa/productpage".into());
    let json = e.to_json();
    assert_eq!(json["route"]["rule"], "exact");
    assert_eq!(json["route"]["source"], "m.mesh:14");
    assert_eq!(json["destinations"][0]["service"], "reviews");
    assert_eq!(json["destinations"][0]["subset"], "v1");
    assert_eq!(json["destinations"][0]["weight"], 100);
    assert!(json["timeout_ms"].is_null());
    assert_eq!(json["retries"]["attempts"], 0);
    assert_eq!(json["authz"]["decision"], "allow");
    assert!(json["authz"]["policy"].is_null());
    assert_eq!(
        json["from"],
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    assert!(json.get("error").is_none());
    let text = e.render();
    assert!(
        text.contains("route: service reviews, rule exact (m.mesh:14)\n"),
        "{text}"
    );
    assert!(text.contains("  reviews/v1 100%\n"), "{text}");
    assert!(
        text.contains("timeout: default (meshd --upstream-timeout)\n"),
        "{text}"
    );
    assert!(
        text.contains("authorization: allow (no policy)\n"),
        "{text}"
    );
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

#[test]
fn explains_the_traffic_match_kinds() {
    let mut sources = Sources::new();
    sources.add(
        "t.mesh",
        r#"service s { port 80 http endpoint 127.0.0.1:80 }
route s {
  rule method { match method prefix "PU" and path regex "/items/[0-9]+" to s }
  rule query { match query "debug" = "a b" and query "off" absent to s }
  rule headers { match header "x-v" regex "v[12]" and header "x-user" prefix "te" to s }
  rule present { match header "x-debug" present to s }
  rule redirect { match path prefix "/old" redirect { path "/new" } }
  rule rest { to s }
}
"#,
    );
    let snapshot = match crate::compile_sources(sources) {
        Ok(compiled) => compiled.snapshot,
        Err(failed) => panic!("{}", failed.render()),
    };
    let ask = |line: &str, headers: &[&str]| {
        let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
        let request = Request::parse(line, &headers).expect("valid request");
        let e = explain(&snapshot, None, request, None).expect("explained");
        rule(&e).0
    };
    assert_eq!(ask("PUT http://s/items/12", &[]), "method");
    assert_eq!(ask("GET http://s/items/12", &[]), "rest");
    assert_eq!(ask("PUT http://s/items/12/x", &[]), "rest");
    assert_eq!(ask("GET http://s/?debug=a%20b", &[]), "query");
    assert_eq!(ask("GET http://s/?debug=a%20b&off", &[]), "rest");
    assert_eq!(ask("GET http://s/?debug=ab", &[]), "rest");
    assert_eq!(
        ask("GET http://s/", &["X-V: v2", "x-user: tester"]),
        "headers"
    );
    assert_eq!(ask("GET http://s/", &["X-V: v3", "x-user: tester"]), "rest");
    assert_eq!(ask("GET http://s/", &["x-debug: "]), "present");
    assert_eq!(ask("GET http://s/old/x", &[]), "redirect");
}

#[test]
fn parses_query_parameters() {
    let r = Request::parse("GET http://s/p?a=1&b&&c=%41%zz&a=2#f", &[]).expect("valid");
    let pairs: Vec<(&str, &str)> = r
        .query
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(pairs, [("a", "1"), ("b", ""), ("c", "A%zz"), ("a", "2")]);
    assert_eq!(r.path, "/p");
}

#[test]
fn explains_the_matched_rule_actions() {
    let mut sources = Sources::new();
    sources.add(
        "t.mesh",
        r#"service s { port 80 http endpoint 127.0.0.1:80 }
route s {
  rule moved { match path prefix "/old" redirect { scheme "https" path "/new" code 308 } }
  rule api {
    match path prefix "/api"
    to s
    timeout 2s
    retries { attempts 3 per_try_timeout 500ms on 5xx, 409 non_idempotent }
    fault { delay 1s 0.5% abort 503 }
  }
}
"#,
    );
    let snapshot = match crate::compile_sources(sources) {
        Ok(compiled) => compiled.snapshot,
        Err(failed) => panic!("{}", failed.render()),
    };
    let ask = |line: &str| {
        let request = Request::parse(line, &[]).expect("valid request");
        explain(&snapshot, None, request, None).expect("explained")
    };
    let e = ask("GET http://s/api/x");
    let text = e.render();
    assert!(text.contains("timeout: 2000ms\n"), "{text}");
    assert!(
        text.contains(
            "retries: 3 attempts on 5xx, 409, 500ms per try, backoff 25ms to 250ms, \
             non-idempotent requests too\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("fault injection: delay 1000ms for 0.5%, abort 503 for 100%\n"),
        "{text}"
    );
    let json = e.to_json();
    assert_eq!(json["timeout_ms"], 2000);
    assert_eq!(json["retries"]["attempts"], 3);
    assert_eq!(json["fault"]["abort"]["status"], 503);
    assert!(json["redirect"].is_null());
    let e = ask("GET http://s/old");
    let text = e.render();
    assert!(
        text.contains("redirect: 308 scheme https path /new\n"),
        "{text}"
    );
    assert_eq!(e.to_json()["redirect"]["status"], 308);
}
