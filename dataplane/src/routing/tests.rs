use std::collections::BTreeMap;

use spec::*;

use super::*;

fn snapshot() -> Snapshot {
    let labels = |v: &str| BTreeMap::from([("version".to_owned(), v.to_owned())]);
    let endpoint = |port: u16, v: &str| Endpoint {
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        labels: labels(v),
        weight: 1,
    };
    let source = SourceLocation {
        file: "m.mesh".into(),
        line: 1,
        column: 1,
    };
    Snapshot {
        services: vec![Service {
            identities: Default::default(),
            policy: Default::default(),
            name: "reviews".into(),
            namespace: "default".into(),
            ports: vec![ServicePort {
                number: 9080,
                protocol: Protocol::Http,
            }],
            endpoints: vec![endpoint(1, "v1"), endpoint(2, "v2"), endpoint(3, "v2")],
            subsets: vec![
                Subset {
                    policy: Default::default(),
                    name: "v1".into(),
                    selector: labels("v1"),
                    endpoints: vec![0],
                },
                Subset {
                    policy: Default::default(),
                    name: "v2".into(),
                    selector: labels("v2"),
                    endpoints: vec![1, 2],
                },
            ],
        }],
        routes: vec![RouteTable {
            service: 0,
            rules: vec![
                RouteRule {
                    timeout_ms: Default::default(),
                    retries: Default::default(),
                    fault: Default::default(),
                    headers: Default::default(),
                    rewrite: Default::default(),
                    redirect: Default::default(),
                    mirror: Default::default(),
                    rate_limit: Default::default(),
                    name: "canary".into(),
                    matches: vec![RequestMatch {
                        method: Default::default(),
                        query: Default::default(),
                        path: None,
                        headers: vec![HeaderMatch {
                            name: "x-canary".into(),
                            value: spec::ValueMatch::Exact("1".into()),
                        }],
                    }],
                    destinations: vec![WeightedDestination {
                        service: 0,
                        subset: Some(1),
                        weight: 100,
                    }],
                    source: source.clone(),
                },
                RouteRule {
                    timeout_ms: Default::default(),
                    retries: Default::default(),
                    fault: Default::default(),
                    headers: Default::default(),
                    rewrite: Default::default(),
                    redirect: Default::default(),
                    mirror: Default::default(),
                    rate_limit: Default::default(),
                    name: "api".into(),
                    matches: vec![RequestMatch {
                        method: Default::default(),
                        query: Default::default(),
                        path: Some(PathMatch::Prefix("/api".into())),
                        headers: vec![],
                    }],
                    destinations: vec![
                        WeightedDestination {
                            service: 0,
                            subset: Some(0),
                            weight: 90,
                        },
                        WeightedDestination {
                            service: 0,
                            subset: Some(1),
                            weight: 10,
                        },
                    ],
                    source,
                },
            ],
        }],
        hosts: vec![
            HostEntry {
                host: "reviews".into(),
                route_table: 0,
            },
            HostEntry {
                host: "reviews.default.svc.cluster.local".into(),
                route_table: 0,
            },
        ],
        workloads: vec![Workload {
            serves: Default::default(),
            authorization: Default::default(),
            jwt: Default::default(),
            telemetry: Default::default(),
            name: "productpage".into(),
            identity: None,
            inbound: vec![InboundPort {
                tls: Default::default(),
                port: 9080,
                protocol: Protocol::Http,
                target: SocketAddr::from(([127, 0, 0, 1], 9)),
            }],
            outbound: vec![],
        }],
    }
}

fn route<'s>(
    state: &'s RouteState,
    host: &str,
    path: &str,
    headers: &[httparse::Header<'_>],
    draw: u32,
) -> Result<&'s str, RouteError> {
    let view = RequestView {
        host,
        port: None,
        path,
        headers,
    };
    state.route(&view, || draw).map(|d| d.group.name.as_str())
}

#[test]
fn header_match_wins_over_later_rules() {
    let state = RouteState::new(snapshot(), String::new(), None).unwrap();
    let canary = [httparse::Header {
        name: "X-Canary",
        value: b"1",
    }];
    assert_eq!(
        route(&state, "reviews", "/api", &canary, 0),
        Ok("reviews/v2")
    );
    let other = [httparse::Header {
        name: "x-canary",
        value: b"0",
    }];
    assert_eq!(
        route(&state, "reviews", "/api", &other, 0),
        Ok("reviews/v1")
    );
}

#[test]
fn weighted_split_follows_the_draw() {
    let state = RouteState::new(snapshot(), String::new(), None).unwrap();
    assert_eq!(
        route(&state, "reviews", "/api/x", &[], 89),
        Ok("reviews/v1")
    );
    assert_eq!(
        route(&state, "reviews", "/api/x", &[], 90),
        Ok("reviews/v2")
    );
    assert_eq!(
        route(&state, "reviews", "/api/x", &[], 99),
        Ok("reviews/v2")
    );
}

#[test]
fn host_lookup_is_case_insensitive_and_knows_fqdns() {
    let state = RouteState::new(snapshot(), String::new(), None).unwrap();
    assert_eq!(route(&state, "Reviews", "/api", &[], 0), Ok("reviews/v1"));
    assert_eq!(
        route(&state, "reviews.default.svc.cluster.local", "/api", &[], 0),
        Ok("reviews/v1")
    );
    assert_eq!(
        route(&state, "ratings", "/api", &[], 0),
        Err(RouteError::UnknownHost)
    );
    assert_eq!(
        route(&state, "reviews", "/other", &[], 0),
        Err(RouteError::NoRuleMatched)
    );
}

#[test]
fn workload_view_hides_services_it_may_not_call() {
    let state = RouteState::new(snapshot(), String::new(), Some("productpage")).unwrap();
    assert_eq!(
        route(&state, "reviews", "/api", &[], 0),
        Err(RouteError::UnknownHost)
    );
    assert_eq!(
        state.inbound_target(Some(9080)),
        Some(SocketAddr::from(([127, 0, 0, 1], 9)))
    );
    let err = RouteState::new(snapshot(), String::new(), Some("nope")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown workload \"nope\"; the snapshot has: productpage"
    );
}

#[test]
fn weighted_schedule_visits_each_endpoint_by_weight_and_spreads_them() {
    assert_eq!(weighted_schedule(&[1, 1, 1]), [0, 1, 2]);
    assert_eq!(weighted_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(
        weighted_schedule(&[2, 2]),
        [0, 1],
        "weights reduce by their gcd"
    );
    let big = weighted_schedule(&[u32::MAX, 1]);
    assert!(
        big.len() as u64 <= MAX_SCHEDULE && big.contains(&1),
        "scaled, every endpoint kept"
    );
    assert_eq!(weighted_schedule(&[]), Vec::<u32>::new());
}
