use std::collections::BTreeMap;

use spec::*;

use super::*;

fn snapshot() -> Snapshot {
    let mut snapshot = unindexed();
    snapshot.index_paths();
    snapshot
}

fn unindexed() -> Snapshot {
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
            addresses: Vec::new(),
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
            index: Default::default(),
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
                namespace: Some("default".into()),
                route_table: 0,
            },
            HostEntry {
                host: "reviews.default.svc.cluster.local".into(),
                namespace: None,
                route_table: 0,
            },
        ],
        workloads: vec![Workload {
            serves: Default::default(),
            authorization: Default::default(),
            jwt: Default::default(),
            telemetry: Default::default(),
            labels: Default::default(),
            outbound_traffic: Default::default(),
            name: "productpage".into(),
            namespace: "default".into(),
            identity: None,
            inbound: vec![InboundPort {
                tls: Default::default(),
                port: 9080,
                protocol: Protocol::Http,
                target: SocketAddr::from(([127, 0, 0, 1], 9)),
            }],
            outbound: vec![],
        }],
        unserved: Vec::new(),
        telemetry: Default::default(),
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
        method: "GET",
        query: "",
        headers,
    };
    state
        .route(&view, || draw)
        .map(|d| d.destination.unwrap().group.name.as_str())
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
        state.inbound_target(Some(9080)).map(|(_, addr, _)| addr),
        Some(SocketAddr::from(([127, 0, 0, 1], 9)))
    );
    let err = RouteState::new(snapshot(), String::new(), Some("nope")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown workload `nope`; the snapshot has: productpage"
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

/// The `reviews` snapshot with its rules replaced by `rules`.
fn with_rules(rules: Vec<RouteRule>) -> Snapshot {
    let mut s = snapshot();
    s.routes[0].rules = rules;
    s.index_paths();
    s
}

/// A rule `name` with one match alternative, to subset v1.
fn rule(name: &str, m: RequestMatch) -> RouteRule {
    RouteRule {
        name: name.into(),
        matches: vec![m],
        destinations: vec![WeightedDestination {
            service: 0,
            subset: Some(0),
            weight: 100,
        }],
        ..RouteRule::default()
    }
}

/// Which rule a request matches, and how much path its prefix or exact condition covered.
fn matched(
    state: &RouteState,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> Option<(String, usize)> {
    let headers: Vec<httparse::Header<'_>> = headers
        .iter()
        .map(|(name, value)| httparse::Header {
            name,
            value: value.as_bytes(),
        })
        .collect();
    let view = RequestView {
        host: "reviews",
        port: None,
        path,
        method,
        query,
        headers: &headers,
    };
    let decision = state.route(&view, || 0).ok()?;
    let name = state.snapshot.routes[0].rules[decision.rule.rule as usize]
        .name
        .clone();
    Some((name, decision.path_covered))
}

fn state(rules: Vec<RouteRule>) -> RouteState {
    RouteState::new(with_rules(rules), String::new(), None).unwrap()
}

#[test]
fn path_regex_matches_the_whole_path_only() {
    let state = state(vec![rule(
        "re",
        RequestMatch {
            path: Some(PathMatch::Regex("/users/[0-9]+".into())),
            ..RequestMatch::default()
        },
    )]);
    assert_eq!(
        matched(&state, "GET", "/users/42", "", &[]),
        Some(("re".into(), 9))
    );
    assert_eq!(matched(&state, "GET", "/users/42/x", "", &[]), None);
    assert_eq!(matched(&state, "GET", "/x/users/42", "", &[]), None);
}

#[test]
fn prefix_and_exact_report_what_they_covered() {
    let state = state(vec![
        rule(
            "exact",
            RequestMatch {
                path: Some(PathMatch::Exact("/a".into())),
                ..RequestMatch::default()
            },
        ),
        rule(
            "prefix",
            RequestMatch {
                path: Some(PathMatch::Prefix("/api".into())),
                ..RequestMatch::default()
            },
        ),
    ]);
    assert_eq!(
        matched(&state, "GET", "/a", "", &[]),
        Some(("exact".into(), 2))
    );
    assert_eq!(
        matched(&state, "GET", "/api/x", "", &[]),
        Some(("prefix".into(), 4))
    );
}

#[test]
fn method_matches_exact_prefix_and_regex() {
    let by_method = |name: &str, value: ValueMatch| {
        rule(
            name,
            RequestMatch {
                method: Some(value),
                ..RequestMatch::default()
            },
        )
    };
    let state = state(vec![
        by_method("get", ValueMatch::Exact("GET".into())),
        by_method("p", ValueMatch::Prefix("P".into())),
        by_method("re", ValueMatch::Regex("DEL.*|OPTIONS".into())),
    ]);
    let rule_for = |method| matched(&state, method, "/", "", &[]).map(|(n, _)| n);
    assert_eq!(rule_for("GET").as_deref(), Some("get"));
    assert_eq!(rule_for("POST").as_deref(), Some("p"));
    assert_eq!(rule_for("PUT").as_deref(), Some("p"));
    assert_eq!(rule_for("DELETE").as_deref(), Some("re"));
    assert_eq!(rule_for("OPTIONS").as_deref(), Some("re"));
    assert_eq!(rule_for("HEAD"), None);
    assert_eq!(rule_for("get"), None, "methods are case-sensitive");
}

#[test]
fn header_forms_and_repeated_headers() {
    let by_header = |name: &str, header: &str, value: ValueMatch| {
        rule(
            name,
            RequestMatch {
                headers: vec![HeaderMatch {
                    name: header.into(),
                    value,
                }],
                ..RequestMatch::default()
            },
        )
    };
    let state = state(vec![
        by_header("exact", "x-a", ValueMatch::Exact("1".into())),
        by_header("prefix", "x-b", ValueMatch::Prefix("pre".into())),
        by_header("regex", "x-c", ValueMatch::Regex("v[0-9]+".into())),
        by_header("present", "x-d", ValueMatch::Present),
        by_header("absent", "x-e", ValueMatch::Absent),
    ]);
    let rule_for = |headers: &[(&str, &str)]| matched(&state, "GET", "/", "", headers);
    let name = |headers: &[(&str, &str)]| rule_for(headers).map(|(n, _)| n);
    // x-e is absent from every request below unless given, so "absent" catches the rest.
    assert_eq!(name(&[("X-A", "1")]).as_deref(), Some("exact"));
    assert_eq!(
        name(&[("x-a", "2"), ("x-a", "1")]).as_deref(),
        Some("exact"),
        "any of several values counts"
    );
    assert_eq!(name(&[("x-b", "prefixed")]).as_deref(), Some("prefix"));
    assert_eq!(name(&[("x-c", "v12")]).as_deref(), Some("regex"));
    assert_eq!(
        name(&[("x-c", "v12x")]).as_deref(),
        Some("absent"),
        "regexes are anchored"
    );
    assert_eq!(name(&[("x-d", "")]).as_deref(), Some("present"));
    assert_eq!(name(&[]).as_deref(), Some("absent"));
    assert_eq!(name(&[("x-e", "anything")]), None);
}

#[test]
fn query_parameters_are_percent_decoded() {
    let by_query = |name: &str, param: &str, value: ValueMatch| {
        rule(
            name,
            RequestMatch {
                query: vec![QueryMatch {
                    name: param.into(),
                    value,
                }],
                ..RequestMatch::default()
            },
        )
    };
    let state = state(vec![
        by_query("exact", "user", ValueMatch::Exact("jane doe".into())),
        by_query("prefix", "p", ValueMatch::Prefix("ab".into())),
        by_query("regex", "id", ValueMatch::Regex("[0-9]{3}".into())),
        by_query("present", "debug", ValueMatch::Present),
        by_query("absent", "skip", ValueMatch::Absent),
    ]);
    let name = |query: &str| matched(&state, "GET", "/", query, &[]).map(|(n, _)| n);
    assert_eq!(name("user=jane%20doe").as_deref(), Some("exact"));
    assert_eq!(name("x=1&us%65r=jane%20doe").as_deref(), Some("exact"));
    assert_eq!(name("user=jane+doe").as_deref(), Some("absent"));
    assert_eq!(name("p=abc&p=zz").as_deref(), Some("prefix"));
    assert_eq!(name("p=zz&p=abc").as_deref(), Some("prefix"));
    assert_eq!(name("id=123").as_deref(), Some("regex"));
    assert_eq!(name("id=1234").as_deref(), Some("absent"));
    assert_eq!(name("debug").as_deref(), Some("present"));
    assert_eq!(name("debug=").as_deref(), Some("present"));
    assert_eq!(name("skip=1"), None);
    assert_eq!(name("").as_deref(), Some("absent"));
    assert_eq!(
        name("id=%3").as_deref(),
        Some("absent"),
        "a bad escape stays"
    );
}

#[test]
fn all_conditions_of_a_match_must_hold() {
    let state = state(vec![rule(
        "all",
        RequestMatch {
            path: Some(PathMatch::Prefix("/api".into())),
            method: Some(ValueMatch::Exact("POST".into())),
            headers: vec![HeaderMatch {
                name: "x-a".into(),
                value: ValueMatch::Present,
            }],
            query: vec![QueryMatch {
                name: "v".into(),
                value: ValueMatch::Exact("2".into()),
            }],
        },
    )]);
    let h = [("x-a", "1")];
    assert!(matched(&state, "POST", "/api", "v=2", &h).is_some());
    assert!(matched(&state, "GET", "/api", "v=2", &h).is_none());
    assert!(matched(&state, "POST", "/other", "v=2", &h).is_none());
    assert!(matched(&state, "POST", "/api", "v=3", &h).is_none());
    assert!(matched(&state, "POST", "/api", "v=2", &[]).is_none());
}

#[test]
fn a_bad_regex_refuses_the_snapshot_naming_rule_and_match() {
    let bad = |m: RequestMatch| {
        RouteState::new(with_rules(vec![rule("broken", m)]), String::new(), None)
            .unwrap_err()
            .to_string()
    };
    let path = bad(RequestMatch {
        path: Some(PathMatch::Regex("(".into())),
        ..RequestMatch::default()
    });
    assert!(
        path.starts_with("rule reviews/broken: invalid regex \"(\" in the path match"),
        "{path}"
    );
    let header = bad(RequestMatch {
        headers: vec![HeaderMatch {
            name: "x-a".into(),
            value: ValueMatch::Regex("[".into()),
        }],
        ..RequestMatch::default()
    });
    assert!(header.contains("in the header \"x-a\" match"), "{header}");
}

#[test]
fn a_redirect_rule_routes_without_a_destination() {
    let state = state(vec![RouteRule {
        name: "moved".into(),
        redirect: Some(Redirect {
            scheme: None,
            authority: None,
            port: None,
            path: Some("/new".into()),
            status: 301,
        }),
        ..RouteRule::default()
    }]);
    let view = RequestView {
        host: "reviews",
        port: None,
        path: "/",
        method: "GET",
        query: "",
        headers: &[],
    };
    let decision = state.route(&view, || 0).unwrap();
    assert!(decision.destination.is_none());
    assert_eq!(decision.actions.redirect.as_ref().unwrap().status, 301);
}

#[test]
fn destination_finds_a_service_or_subset_group() {
    let state = RouteState::new(snapshot(), "h".into(), None).unwrap();
    let whole = state.destination(0, None).unwrap();
    assert_eq!(whole.group.name, "reviews");
    assert_eq!(whole.group.endpoints.len(), 3);
    let v2 = state.destination(0, Some(1)).unwrap();
    assert_eq!(v2.group.name, "reviews/v2");
    assert_eq!(v2.group_index, whole.group_index + 2);
    assert!(state.destination(0, Some(2)).is_none());
    assert!(state.destination(1, None).is_none());
}

#[test]
fn large_tables_route_through_the_path_index_in_rule_order() {
    let path = |p: PathMatch| RequestMatch {
        path: Some(p),
        ..RequestMatch::default()
    };
    let mut rules = vec![rule(
        "flagged",
        RequestMatch {
            headers: vec![HeaderMatch {
                name: "x-a".into(),
                value: ValueMatch::Exact("1".into()),
            }],
            ..RequestMatch::default()
        },
    )];
    for i in 1..=9 {
        rules.push(rule(
            &format!("svc{i}"),
            path(PathMatch::Prefix(format!("/svc{i}"))),
        ));
    }
    rules.push(rule(
        "special",
        path(PathMatch::Exact("/svc3/special".into())),
    ));
    rules.push(rule("nested", path(PathMatch::Prefix("/z/y".into()))));
    rules.push(rule("outer", path(PathMatch::Prefix("/z".into()))));
    rules.push(rule("regex", path(PathMatch::Regex("/r[0-9]".into()))));
    let state = state(rules);
    assert!(state.snapshot.routes[0].rules.len() > LINEAR_RULES);
    let name = |path: &str, headers: &[(&str, &str)]| {
        matched(&state, "GET", path, "", headers).map(|(name, _)| name)
    };
    assert_eq!(name("/svc3/special", &[]).as_deref(), Some("svc3"));
    assert_eq!(
        name("/svc3/special", &[("x-a", "1")]).as_deref(),
        Some("flagged")
    );
    assert_eq!(name("/svc10", &[]).as_deref(), Some("svc1"));
    assert_eq!(name("/z/y/x", &[]).as_deref(), Some("nested"));
    assert_eq!(name("/z/q", &[]).as_deref(), Some("outer"));
    assert_eq!(name("/r7", &[]).as_deref(), Some("regex"));
    assert_eq!(name("/other", &[]), None);
}

#[test]
fn a_serving_workload_finds_the_per_source_limited_rule_of_its_service() {
    let limit = |per_source| spec::RateLimit {
        tokens_per_fill: 1,
        fill_interval_ms: 1000,
        max_tokens: 1,
        per_source,
    };
    let mut limited = rule("limited", RequestMatch::default());
    limited.matches[0].path = Some(PathMatch::Prefix("/api".into()));
    limited.rate_limit = Some(limit(true));
    let mut shared = rule("shared", RequestMatch::default());
    shared.rate_limit = Some(limit(false));
    let mut snapshot = with_rules(vec![limited, shared]);
    let view = |host, path| RequestView {
        host,
        port: None,
        path,
        method: "GET",
        query: "",
        headers: &[],
    };
    // productpage does not serve reviews: nothing to enforce inbound.
    let caller = RouteState::new(snapshot.clone(), String::new(), Some("productpage")).unwrap();
    assert_eq!(caller.served_limited_rule(&view("reviews", "/api")), None);

    snapshot.workloads[0].serves = vec![0];
    let server = RouteState::new(snapshot, String::new(), Some("productpage")).unwrap();
    let found = server.served_limited_rule(&view("REVIEWS", "/api/x"));
    assert_eq!(found, Some(RuleRef { table: 0, rule: 0 }));
    // The rule a request matches decides: one without `per_source` is the caller side's.
    assert_eq!(server.served_limited_rule(&view("reviews", "/other")), None);
    assert_eq!(server.served_limited_rule(&view("ratings", "/api")), None);
}
