use spec::Snapshot;

use super::diff;
use crate::diag::Sources;

const REVIEWS: &str = r#"service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" }
}
"#;

const ROUTES: &str = r#"route reviews {
  rule split {
    match path prefix "/"
    to reviews/v1 weight 90
    to reviews/v2 weight 10
  }
}
"#;

const WORKLOAD: &str = r#"workload productpage {
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> 127.0.0.1:9090
  outbound reviews
}
"#;

fn compile(files: &[(&str, &str)]) -> Snapshot {
    let mut sources = Sources::new();
    for (path, text) in files {
        sources.add(*path, *text);
    }
    match crate::compile_sources(sources) {
        Ok(compiled) => compiled.snapshot,
        Err(failed) => panic!("{}", failed.render()),
    }
}

fn base() -> Snapshot {
    compile(&[
        ("a.mesh", REVIEWS),
        ("b.mesh", ROUTES),
        ("c.mesh", WORKLOAD),
    ])
}

/// The diff from the base config to one where `from` is replaced by `to` in all files.
fn lines_after(from: &str, to: &str) -> Vec<String> {
    let edit = |t: &str| t.replace(from, to);
    let (a, b, c) = (edit(REVIEWS), edit(ROUTES), edit(WORKLOAD));
    assert!(
        a != REVIEWS || b != ROUTES || c != WORKLOAD,
        "`{from}` is not in the config"
    );
    let new = compile(&[("a.mesh", &a), ("b.mesh", &b), ("c.mesh", &c)]);
    diff(&base(), &new)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn identical_snapshots_have_no_changes() {
    assert!(diff(&base(), &base()).is_empty());
}

#[test]
fn reordered_and_relocated_input_is_equivalent() {
    // Different files, different order, rules on other lines: only sources differ.
    let moved = format!("\n\n{WORKLOAD}{ROUTES}");
    let other = compile(&[("z/all.mesh", &moved), ("y.mesh", REVIEWS)]);
    assert_ne!(other, base());
    assert!(diff(&base(), &other).is_empty());
    assert!(diff(&other, &base()).is_empty());
}

#[test]
fn adding_a_service_before_the_others_is_one_line() {
    // `details` sorts before `reviews`, so every service index shifts by one.
    let new = compile(&[
        ("a.mesh", REVIEWS),
        ("b.mesh", ROUTES),
        ("c.mesh", WORKLOAD),
        (
            "d.mesh",
            "service details { port 80 http endpoint 127.0.0.1:9000 }",
        ),
    ]);
    let lines: Vec<String> = diff(&base(), &new)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(lines, ["+ service details [hot-swap]"]);
    let lines: Vec<String> = diff(&new, &base())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(lines, ["- service details [drains connections]"]);
}

#[test]
fn endpoint_changes_are_keyed_by_address() {
    assert_eq!(
        lines_after(
            "endpoint 127.0.0.1:9081 { version = \"v1\" }",
            "endpoint 127.0.0.1:9081 { version = \"v1\" } weight 2"
        ),
        ["~ endpoint reviews 127.0.0.1:9081 weight 1 -> 2 [hot-swap]"]
    );
    assert_eq!(
        lines_after(
            "  endpoint 127.0.0.1:9082 { version = \"v2\" }\n",
            "  endpoint 127.0.0.1:9082 { version = \"v2\" }\n  endpoint 127.0.0.1:9083 { version = \"v2\" }\n"
        ),
        ["+ endpoint reviews 127.0.0.1:9083 [hot-swap]"]
    );
    assert_eq!(
        lines_after(
            "  endpoint 127.0.0.1:9082 { version = \"v2\" }\n",
            "  endpoint 127.0.0.1:9083 { version = \"v2\" }\n"
        ),
        [
            "- endpoint reviews 127.0.0.1:9082 [drains connections]",
            "+ endpoint reviews 127.0.0.1:9083 [hot-swap]"
        ]
    );
    assert_eq!(
        lines_after(
            "endpoint 127.0.0.1:9081 { version = \"v1\" }",
            "endpoint 127.0.0.1:9081 { version = \"v1\", zone = \"a\" }"
        ),
        [
            r#"~ endpoint reviews 127.0.0.1:9081 labels {version = "v1"} -> {version = "v1", zone = "a"} [hot-swap]"#
        ]
    );
}

#[test]
fn endpoint_order_does_not_matter() {
    let swapped = REVIEWS.replace(
        "  endpoint 127.0.0.1:9081 { version = \"v1\" }\n  endpoint 127.0.0.1:9082 { version = \"v2\" }\n",
        "  endpoint 127.0.0.1:9082 { version = \"v2\" }\n  endpoint 127.0.0.1:9081 { version = \"v1\" }\n",
    );
    assert_ne!(swapped, REVIEWS);
    let new = compile(&[
        ("a.mesh", &swapped),
        ("b.mesh", ROUTES),
        ("c.mesh", WORKLOAD),
    ]);
    assert!(diff(&base(), &new).is_empty());
}

#[test]
fn subset_changes_are_reported() {
    assert_eq!(
        lines_after(
            "subset v2 { version = \"v2\" }",
            "subset v2 { version = \"v1\" }"
        ),
        [r#"~ subset reviews/v2 selector {version = "v2"} -> {version = "v1"} [hot-swap]"#]
    );
    assert_eq!(
        lines_after(
            "subset v2 { version = \"v2\" }",
            "subset v2 { version = \"v2\" }\n  subset all { version = \"v1\" }"
        ),
        ["+ subset reviews/all [hot-swap]"]
    );
}

#[test]
fn route_weight_changes_show_both_splits() {
    assert_eq!(
        lines_after(
            "to reviews/v1 weight 90\n    to reviews/v2 weight 10",
            "to reviews/v1 weight 50\n    to reviews/v2 weight 50"
        ),
        ["~ route reviews rule split destinations reviews/v1 90%, reviews/v2 10% -> reviews/v1 50%, reviews/v2 50% [hot-swap]"]
    );
}

#[test]
fn added_removed_reordered_and_rematched_rules_are_reported() {
    assert_eq!(
        lines_after(
            "route reviews {\n",
            "route reviews {\n  rule canary { match header \"x-canary\" = \"1\" to reviews/v2 }\n"
        ),
        ["+ route reviews rule canary (before split) [hot-swap]"]
    );
    assert_eq!(
        lines_after(
            "    to reviews/v2 weight 10\n  }\n",
            "    to reviews/v2 weight 10\n  }\n  rule rest { to reviews }\n"
        ),
        ["+ route reviews rule rest (after split) [hot-swap]"]
    );
    assert_eq!(
        lines_after("match path prefix \"/\"", "match path exact \"/\""),
        [r#"~ route reviews rule split matches path prefix "/" -> path exact "/" [hot-swap]"#]
    );
    // Disjoint matches: two catch-alls in a row would make the second unreachable (E0110).
    let a = "  rule a { match path prefix \"/a\" to reviews }\n";
    let b = "  rule b { match path prefix \"/b\" to reviews }\n";
    let two = format!("route reviews {{\n{a}{b}}}\n");
    let swapped = format!("route reviews {{\n{b}{a}}}\n");
    let old = compile(&[("a.mesh", REVIEWS), ("b.mesh", &two)]);
    let new = compile(&[("a.mesh", REVIEWS), ("b.mesh", &swapped)]);
    let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["~ route reviews rule order a, b -> b, a [hot-swap]"]
    );
    let one = format!("route reviews {{\n{a}}}\n");
    let new = compile(&[("a.mesh", REVIEWS), ("b.mesh", &one)]);
    let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["- route reviews rule b [hot-swap]"]);
}

#[test]
fn match_and_condition_order_does_not_matter() {
    let a = "route reviews { rule r {\n match header \"x\" = \"1\" and path prefix \"/a\"\n match path exact \"/b\"\n to reviews } }";
    let b = "route reviews { rule r {\n match path exact \"/b\"\n match path prefix \"/a\" and header \"x\" = \"1\"\n to reviews } }";
    let old = compile(&[("a.mesh", REVIEWS), ("b.mesh", a)]);
    let new = compile(&[("a.mesh", REVIEWS), ("b.mesh", b)]);
    assert!(diff(&old, &new).is_empty());
}

#[test]
fn workload_port_and_identity_changes_restart_listeners() {
    assert_eq!(
        lines_after("inbound 9080 http", "inbound 9081 http"),
        ["~ workload productpage inbound 9080/http (to 127.0.0.1:9090) -> 9081/http (to 127.0.0.1:9090) [restarts listeners]"]
    );
    assert_eq!(
        lines_after("-> 127.0.0.1:9090", "-> 127.0.0.1:9091"),
        ["~ workload productpage inbound 9080/http (to 127.0.0.1:9090) -> 9080/http (to 127.0.0.1:9091) [hot-swap]"]
    );
    assert_eq!(
        lines_after("sa/productpage", "sa/other"),
        [
            r#"~ workload productpage identity "spiffe://cluster.local/ns/default/sa/productpage" -> "spiffe://cluster.local/ns/default/sa/other" [restarts listeners]"#
        ]
    );
    // Without an `outbound` line the workload may call every service: here, still `reviews`.
    assert!(lines_after("  outbound reviews\n", "").is_empty());
}

#[test]
fn service_namespace_change_moves_its_hosts() {
    let lines = lines_after(
        "service reviews {\n",
        "service reviews {\n  namespace prod\n",
    );
    assert_eq!(
        lines[0],
        "~ service reviews namespace default -> prod [hot-swap]"
    );
    assert!(lines.contains(&"- host reviews.default (service reviews) [hot-swap]".to_owned()));
    assert!(lines.contains(&"+ host reviews.prod.svc (service reviews) [hot-swap]".to_owned()));
    assert_eq!(lines.len(), 7, "{lines:#?}");
}

// ---- Format v2 fields, on snapshots edited in Rust (no config syntax produces them here yet).

use spec::{
    AccessLog, AuthorizationPolicy, AuthzAction, AuthzOperation, AuthzRule, AuthzSource,
    FaultAbort, FaultInjection, HashKey, HeaderMatch, HeaderValue, JwtRule, LoadBalancer, Mirror,
    OutlierDetection, PathMatch, QueryMatch, RateLimit, Redirect, RequestMatch, RetryOn,
    RetryPolicy, Rewrite, RouteRule, SourceLocation, StringPattern, TlsMode, ValueMatch,
};

/// The lines from `base()` to `base()` edited by `edit`.
fn lines_edited(edit: impl FnOnce(&mut Snapshot)) -> Vec<String> {
    let mut new = base();
    edit(&mut new);
    new.index_paths();
    new.validate().expect("the edited snapshot is valid");
    diff(&base(), &new)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn split(s: &mut Snapshot) -> &mut RouteRule {
    &mut s.routes[0].rules[0]
}

#[test]
fn service_and_subset_policies_are_hot_swapped() {
    assert_eq!(
        lines_edited(|s| {
            let policy = LoadBalancer::RingHash {
                key: HashKey::Header("x-user".into()),
                minimum_ring_size: 1024,
            };
            s.services[0].policy.load_balancer = policy.clone();
            // Subsets inherit it: no line of their own.
            for subset in &mut s.services[0].subsets {
                subset.policy.load_balancer = policy.clone();
            }
        }),
        ["~ service reviews policy load balancer round-robin -> ring-hash on header x-user (minimum ring size 1024) [hot-swap]"]
    );
    assert_eq!(
        lines_edited(|s| {
            s.services[0].policy.pool.max_connections = Some(100);
            s.services[0].policy.pool.connect_timeout_ms = Some(250);
            s.services[0].policy.outlier = Some(OutlierDetection {
                consecutive_5xx: Some(5),
                consecutive_gateway_errors: None,
                interval_ms: 10_000,
                base_ejection_ms: 30_000,
                max_ejection_percent: 10,
            });
            let service = s.services[0].policy.clone();
            s.services[0].subsets[0].policy = service.clone();
            s.services[0].subsets[1].policy = service;
        }),
        [
            "~ service reviews policy pool (defaults) -> max connections 100, connect timeout 250ms [hot-swap]",
            "~ service reviews policy outlier detection (off) -> consecutive 5xx 5, interval 10000ms, base ejection 30000ms, max ejection 10% [hot-swap]",
        ]
    );
    assert_eq!(
        lines_edited(|s| s.services[0].subsets[1].policy.load_balancer = LoadBalancer::LeastRequest),
        ["~ subset reviews/v2 policy (the service's) -> load balancer least-request; pool (defaults); outlier detection (off) [hot-swap]"]
    );
}

#[test]
fn service_identities_drain_connections() {
    assert_eq!(
        lines_edited(|s| s.services[0].identities =
            vec!["spiffe://cluster.local/ns/default/sa/reviews".into()]),
        ["~ service reviews identities (none) -> spiffe://cluster.local/ns/default/sa/reviews [drains connections]"]
    );
}

#[test]
fn every_rule_action_change_is_one_hot_swap_line() {
    assert_eq!(
        lines_edited(|s| split(s).timeout_ms = Some(2000)),
        ["~ route reviews rule split timeout (sidecar default) -> 2000ms [hot-swap]"]
    );
    assert_eq!(
        lines_edited(|s| {
            split(s).retries = Some(RetryPolicy {
                attempts: 2,
                per_try_timeout_ms: None,
                retry_on: RetryOn {
                    server_error: true,
                    ..RetryOn::default()
                },
                backoff_base_ms: 25,
                backoff_max_ms: 250,
                non_idempotent: true,
            });
        }),
        ["~ route reviews rule split retries (sidecar default) -> 2 attempts, on 5xx, backoff 25ms..250ms, every method [hot-swap]"]
    );
    assert_eq!(
        lines_edited(|s| {
            split(s).fault = Some(FaultInjection {
                delay: None,
                abort: Some(FaultAbort {
                    status: 503,
                    per_million: 1_000_000,
                }),
            });
        }),
        ["~ route reviews rule split fault (none) -> abort with 503 for 100% of requests [hot-swap]"]
    );
    assert_eq!(
        lines_edited(|s| {
            split(s).headers.response.set = vec![HeaderValue {
                name: "x-v".into(),
                value: "2".into(),
            }];
            split(s).headers.request.remove = vec!["cookie".into()];
        }),
        [
            "~ route reviews rule split request headers (none) -> remove cookie [hot-swap]",
            "~ route reviews rule split response headers (none) -> set x-v: 2 [hot-swap]",
        ]
    );
    assert_eq!(
        lines_edited(|s| {
            split(s).rewrite = Some(Rewrite {
                path_prefix: Some("/v2".into()),
                path_regex: None,
                authority: Some("reviews.internal".into()),
            });
        }),
        [
            r#"~ route reviews rule split rewrite (none) -> path prefix "/v2", authority "reviews.internal" [hot-swap]"#
        ]
    );
    assert_eq!(
        lines_edited(|s| {
            split(s).destinations.clear();
            split(s).redirect = Some(Redirect {
                scheme: Some("https".into()),
                authority: None,
                port: Some(8443),
                path: None,
                status: 308,
            });
        }),
        [
            "~ route reviews rule split destinations reviews/v1 90%, reviews/v2 10% -> (none) [hot-swap]",
            "~ route reviews rule split redirect (none) -> 308, scheme https, port 8443 [hot-swap]",
        ]
    );
    assert_eq!(
        lines_edited(|s| {
            split(s).rate_limit = Some(RateLimit {
                tokens_per_fill: 10,
                fill_interval_ms: 1000,
                max_tokens: 20,
                per_source: false,
            });
        }),
        ["~ route reviews rule split rate limit (none) -> 10 requests per 1000ms, burst 20, one bucket for the rule [hot-swap]"]
    );
}

#[test]
fn a_mirror_is_compared_by_name_not_index() {
    let with_mirror = |s: &mut Snapshot| {
        let (reviews, _) = s.service("reviews").expect("reviews");
        let table = s
            .routes
            .iter_mut()
            .find(|t| t.service == reviews)
            .expect("reviews route");
        table.rules[0].mirror = Some(Mirror {
            service: reviews,
            subset: Some(1),
            per_million: 100_000,
        });
    };
    assert_eq!(
        lines_edited(with_mirror),
        ["~ route reviews rule split mirror (none) -> 10% of requests to reviews/v2 [hot-swap]"]
    );
    // A service sorting before `reviews` shifts every index: the mirror is unchanged.
    let mut old = base();
    with_mirror(&mut old);
    let extra = "service details { port 80 http endpoint 127.0.0.1:9000 }";
    let mut new = compile(&[
        ("a.mesh", REVIEWS),
        ("b.mesh", ROUTES),
        ("c.mesh", WORKLOAD),
        ("d.mesh", extra),
    ]);
    with_mirror(&mut new);
    let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["+ service details [hot-swap]"]);
}

#[test]
fn every_match_kind_is_shown_and_order_free() {
    let conditions = RequestMatch {
        path: Some(PathMatch::Regex("/api/v[0-9]+".into())),
        method: Some(ValueMatch::Exact("GET".into())),
        headers: vec![
            HeaderMatch {
                name: "x-debug".into(),
                value: ValueMatch::Present,
            },
            HeaderMatch {
                name: "x-skip".into(),
                value: ValueMatch::Absent,
            },
        ],
        query: vec![QueryMatch {
            name: "user".into(),
            value: ValueMatch::Prefix("qa-".into()),
        }],
    };
    let m = conditions.clone();
    assert_eq!(
        lines_edited(move |s| split(s).matches = vec![m]),
        [
            r#"~ route reviews rule split matches path prefix "/" -> path regex "/api/v[0-9]+" and method = "GET" and header "x-debug" present and header "x-skip" absent and query "user" prefix "qa-" [hot-swap]"#
        ]
    );
    let mut old = base();
    split(&mut old).matches = vec![conditions.clone()];
    let mut new = base();
    let mut swapped = conditions;
    swapped.headers.reverse();
    split(&mut new).matches = vec![swapped];
    assert!(diff(&old, &new).is_empty());
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
        source: SourceLocation {
            file: "authz.mesh".into(),
            line,
            column: 1,
        },
    }
}

fn get_from(principal: &str) -> AuthzRule {
    AuthzRule {
        from: vec![AuthzSource {
            principals: vec![StringPattern::Exact(principal.into())],
            ..AuthzSource::default()
        }],
        to: vec![AuthzOperation {
            methods: vec![StringPattern::Exact("GET".into())],
            paths: vec![StringPattern::Prefix("/api/".into())],
            ..AuthzOperation::default()
        }],
        when: Vec::new(),
    }
}

#[test]
fn authorization_policies_are_compared_by_name_ignoring_order_and_source() {
    let two = || {
        vec![
            policy(
                "a",
                AuthzAction::Allow,
                vec![get_from("spiffe://x"), get_from("spiffe://y")],
                1,
            ),
            policy("b", AuthzAction::Deny, vec![AuthzRule::default()], 2),
        ]
    };
    let mut old = base();
    old.workloads[0].authorization = two();
    // Other order, other lines, rules reordered: equivalent.
    let mut new = base();
    let mut policies = two();
    policies.reverse();
    policies[1].rules.reverse();
    policies[0].source.line = 40;
    new.workloads[0].authorization = policies;
    assert!(diff(&old, &new).is_empty());

    let lines = |new: &Snapshot| -> Vec<String> {
        diff(&old, new).iter().map(ToString::to_string).collect()
    };
    let mut new = old.clone();
    new.workloads[0].authorization[1].action = AuthzAction::Audit;
    assert_eq!(
        lines(&new),
        ["~ workload productpage authorization b action deny -> audit [hot-swap]"]
    );
    let mut new = old.clone();
    new.workloads[0].authorization[0].rules.pop();
    assert_eq!(
        lines(&new),
        ["~ workload productpage authorization a rules from (principals [spiffe://x]); to (methods [GET] and paths [/api/*]) | from (principals [spiffe://y]); to (methods [GET] and paths [/api/*]) -> from (principals [spiffe://x]); to (methods [GET] and paths [/api/*]) [hot-swap]"]
    );
    let mut new = old.clone();
    new.workloads[0].authorization.remove(1);
    new.workloads[0]
        .authorization
        .push(policy("c", AuthzAction::Audit, Vec::new(), 3));
    assert_eq!(
        lines(&new),
        [
            "- workload productpage authorization b (deny) [hot-swap]",
            "+ workload productpage authorization c (audit) [hot-swap]",
        ]
    );
}

#[test]
fn tls_mode_changes_restart_listeners_and_the_rest_hot_swaps() {
    assert_eq!(
        lines_edited(|s| s.workloads[0].inbound[0].tls = TlsMode::Strict),
        ["~ workload productpage inbound 9080 tls permissive -> strict [restarts listeners]"]
    );
    assert_eq!(
        lines_edited(|s| {
            let mut port = s.workloads[0].inbound[0].clone();
            port.port = 9443;
            port.tls = TlsMode::Strict;
            s.workloads[0].inbound.push(port);
        }),
        [
            "~ workload productpage inbound 9080/http (to 127.0.0.1:9090) -> 9080/http (to 127.0.0.1:9090), 9443/http (to 127.0.0.1:9090) [restarts listeners]",
            "+ workload productpage inbound 9443 tls strict [restarts listeners]",
        ]
    );
    assert_eq!(
        lines_edited(|s| s.workloads[0].serves = vec![0]),
        ["~ workload productpage serves (none) -> reviews [hot-swap]"]
    );
    assert_eq!(
        lines_edited(|s| {
            s.workloads[0].telemetry.access_log =
                Some(AccessLog::Text("%REQ(:PATH)% %RESPONSE_CODE%".into()));
            s.telemetry.access_log = Some(AccessLog::Json);
            s.workloads[0].telemetry.trace_sampling_per_million = 10_000;
        }),
        [
            r#"~ workload productpage access log (off) -> "%REQ(:PATH)% %RESPONSE_CODE%" [hot-swap]"#,
            "~ workload productpage trace sampling 0% -> 1% [hot-swap]",
            "~ mesh-wide access log (off) -> json [hot-swap]",
        ]
    );
}

#[test]
fn jwt_rules_are_compared_by_issuer() {
    let rule = |audiences: &[&str], jwks: &str| JwtRule {
        issuer: "https://issuer.example".into(),
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        jwks_file: jwks.into(),
        source: SourceLocation::default(),
    };
    assert_eq!(
        lines_edited(|s| s.workloads[0].jwt = vec![rule(&[], "keys.json")]),
        ["+ workload productpage jwt issuer https://issuer.example [hot-swap]"]
    );
    let mut old = base();
    old.workloads[0].jwt = vec![rule(&["a", "b"], "keys.json")];
    let mut new = base();
    new.workloads[0].jwt = vec![rule(&["b", "a"], "keys.json")];
    assert!(diff(&old, &new).is_empty());
    new.workloads[0].jwt = vec![rule(&["a"], "other.json")];
    let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "~ workload productpage jwt issuer https://issuer.example audiences a, b -> a [hot-swap]",
            "~ workload productpage jwt issuer https://issuer.example jwks file keys.json -> other.json [hot-swap]",
        ]
    );
}

#[test]
fn service_addresses_swap_hot() {
    assert_eq!(
        lines_edited(
            |s| s.services[0].addresses = vec![spec::AddressBlock::new([10, 96, 0, 10].into(), 32)]
        ),
        ["~ service reviews addresses (none) -> 10.96.0.10 [hot-swap]"]
    );
}
