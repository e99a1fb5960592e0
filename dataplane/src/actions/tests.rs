use spec::*;

use super::*;

fn rewrite_prefix(to: &str, path: &str, covered: usize) -> String {
    let mut out = Vec::new();
    PathRewrite::Prefix(to.into()).write(path, covered, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn prefix_rewrite_replaces_what_the_conditions_covered() {
    assert_eq!(rewrite_prefix("/v2", "/api/users", 4), "/v2/users");
    assert_eq!(rewrite_prefix("/", "/api", 4), "/");
    assert_eq!(rewrite_prefix("/new", "/old/exact", 10), "/new");
    // A regex path match covers the whole path; no path condition covers the leading `/`.
    assert_eq!(rewrite_prefix("/whole", "/a/b", 4), "/whole");
    assert_eq!(rewrite_prefix("/v2/", "/a/b", 1), "/v2/a/b");
    assert_eq!(
        rewrite_prefix("", "/api/x", 4),
        "/x",
        "an empty result keeps a leading slash"
    );
}

#[test]
fn regex_rewrite_substitutes_groups_everywhere() {
    let rewrite = PathRewrite::Regex(
        Regex::new("^/users/([0-9]+)/(.*)$").unwrap(),
        "/u/$1/$2".into(),
    );
    let mut out = Vec::new();
    rewrite.write("/users/42/profile", 17, &mut out);
    assert_eq!(out, b"/u/42/profile");
    let every = PathRewrite::Regex(Regex::new("a").unwrap(), "b".into());
    out.clear();
    every.write("/aXa", 4, &mut out);
    assert_eq!(out, b"/bXb");
    out.clear();
    every.write("/none", 5, &mut out);
    assert_eq!(out, b"/none", "no match keeps the path");
}

fn header(name: &str, value: &str) -> HeaderValue {
    HeaderValue {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn compile_leaves_out_edits_of_protected_headers_and_lists_them() {
    let rule = RouteRule {
        name: "r".into(),
        headers: HeaderOps {
            request: HeaderEdits {
                set: vec![header("x-a", "1"), header("content-length", "0")],
                add: vec![header("x-b", "2"), header("Host", "evil")],
                remove: vec!["x-c".into(), "transfer-encoding".into()],
            },
            response: HeaderEdits::default(),
        },
        ..RouteRule::default()
    };
    let actions = RuleActions::compile("svc/r".into(), &rule).unwrap();
    assert_eq!(actions.request_headers.set, [header("x-a", "1")]);
    assert_eq!(actions.request_headers.add, [header("x-b", "2")]);
    assert_eq!(actions.request_headers.remove, ["x-c"]);
    assert!(actions.edits_request());

    let snapshot = Snapshot {
        services: vec![Service {
            name: "svc".into(),
            namespace: "default".into(),
            ports: vec![],
            endpoints: vec![],
            subsets: vec![],
            policy: TrafficPolicy {
                load_balancer: LoadBalancer::LeastRequest,
                pool: PoolLimits {
                    max_connections: Some(4),
                    ..PoolLimits::default()
                },
                ..TrafficPolicy::default()
            },
            identities: vec![],
            addresses: Vec::new(),
        }],
        routes: vec![RouteTable {
            index: Default::default(),
            service: 0,
            rules: vec![
                rule,
                RouteRule {
                    name: "retrying".into(),
                    retries: Some(RetryPolicy {
                        attempts: 3,
                        per_try_timeout_ms: None,
                        retry_on: RetryOn::default(),
                        backoff_base_ms: 25,
                        backoff_max_ms: 250,
                        non_idempotent: false,
                    }),
                    rate_limit: Some(RateLimit {
                        tokens_per_fill: 1,
                        fill_interval_ms: 1000,
                        max_tokens: 1,
                        per_source: false,
                    }),
                    mirror: Some(Mirror {
                        service: 0,
                        subset: None,
                        per_million: 1_000_000,
                    }),
                    ..RouteRule::default()
                },
            ],
        }],
        hosts: vec![],
        workloads: vec![],
        unserved: Vec::new(),
        telemetry: Default::default(),
    };
    // Retries, pool limits, load balancers, rate limits and mirroring are enforced: only the
    // others are listed.
    let found = not_enforced(&snapshot, None);
    let features: Vec<&str> = found.iter().map(|n| n.feature).collect();
    assert_eq!(
        features,
        ["header edits of framing, hop-by-hop or Host headers"]
    );
    assert_eq!(
        found[0].warning(),
        "snapshot uses header edits of framing, hop-by-hop or Host headers \
         (rule svc/r) which this meshd does not enforce yet"
    );
}

#[test]
fn a_bad_rewrite_regex_is_refused_with_the_rule_name() {
    let rule = RouteRule {
        rewrite: Some(Rewrite {
            path_regex: Some(RegexRewrite {
                pattern: "(".into(),
                substitution: "x".into(),
            }),
            ..Rewrite::default()
        }),
        ..RouteRule::default()
    };
    let err = RuleActions::compile("svc/r".into(), &rule).unwrap_err();
    assert!(
        err.starts_with("rule svc/r: invalid path rewrite regex \"(\""),
        "{err}"
    );
}

#[test]
fn chance_is_exact_at_the_ends() {
    assert!((0..1000).all(|_| chance(1_000_000)));
    assert!((0..1000).all(|_| !chance(0)));
}

#[test]
fn ports_of_every_protocol_are_served_so_none_is_listed() {
    let port = |number, protocol| ServicePort { number, protocol };
    let snapshot = Snapshot {
        services: vec![Service {
            name: "db".into(),
            namespace: "default".into(),
            ports: vec![
                port(80, Protocol::Http),
                port(3306, Protocol::Tcp),
                port(9000, Protocol::Grpc),
            ],
            endpoints: vec![],
            subsets: vec![],
            policy: TrafficPolicy::default(),
            identities: vec![],
            addresses: Vec::new(),
        }],
        routes: vec![],
        hosts: vec![],
        workloads: vec![Workload {
            name: "w".into(),
            namespace: "default".into(),
            identity: None,
            inbound: vec![InboundPort {
                port: 8443,
                protocol: Protocol::Http2,
                target: "127.0.0.1:8443".parse().unwrap(),
                tls: TlsMode::Permissive,
            }],
            outbound: vec![],
            serves: vec![],
            authorization: vec![],
            jwt: vec![],
            telemetry: Telemetry::default(),
            labels: Default::default(),
            outbound_traffic: Default::default(),
        }],
        unserved: Vec::new(),
        telemetry: Default::default(),
    };
    let found = not_enforced(&snapshot, Some("w"));
    let listed: Vec<&str> = found.iter().map(|n| n.feature).collect();
    assert_eq!(listed, Vec::<&str>::new());
}
