//! The request path's pure phases (parse, route with regex/method/header/query matches, head
//! rewrite with a rule's header edits and prefix rewrite) allocate nothing once warm: docs/design.md
//! budgets zero heap allocations per request. The whole path through real sockets, under both
//! IO drivers, is counted by `no_alloc_path.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use dataplane::actions::NO_EDITS;
use dataplane::http1::head::{parse_request, parse_response, RequestEdits, MAX_HEADERS};
use dataplane::routing::{RequestView, RouteState};
use spec::*;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn header(name: &str, value: &str) -> HeaderValue {
    HeaderValue {
        name: name.into(),
        value: value.into(),
    }
}

/// A rule that matches by regex, method, header forms and query, and edits both heads and the
/// path: everything the request path does for it must stay allocation-free too.
fn edit_rule() -> RouteRule {
    RouteRule {
        name: "edits".into(),
        matches: vec![RequestMatch {
            path: Some(PathMatch::Prefix("/edit".into())),
            method: Some(ValueMatch::Regex("P(OST|UT)".into())),
            headers: vec![
                HeaderMatch {
                    name: "x-user".into(),
                    value: ValueMatch::Regex("[a-z]+".into()),
                },
                HeaderMatch {
                    name: "x-absent".into(),
                    value: ValueMatch::Absent,
                },
            ],
            query: vec![QueryMatch {
                name: "name".into(),
                value: ValueMatch::Exact("a b".into()),
            }],
        }],
        destinations: vec![WeightedDestination {
            service: 0,
            subset: Some(1),
            weight: 100,
        }],
        headers: HeaderOps {
            request: HeaderEdits {
                set: vec![header("x-user", "b")],
                add: vec![header("x-added", "1")],
                remove: vec!["connection".into(), "x-drop".into()],
            },
            response: HeaderEdits {
                set: vec![header("server", "mesh")],
                add: vec![header("x-served-by", "meshd")],
                remove: vec![],
            },
        },
        rewrite: Some(Rewrite {
            path_prefix: Some("/v2".into()),
            path_regex: None,
            authority: Some("reviews.internal".into()),
        }),
        timeout_ms: Some(500),
        ..RouteRule::default()
    }
}

fn routes() -> RouteState {
    let labels = |v: &str| BTreeMap::from([("version".to_owned(), v.to_owned())]);
    let endpoint = |port: u16, v: &str| Endpoint {
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        labels: labels(v),
        weight: 1,
    };
    let mut snapshot = Snapshot {
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
            endpoints: vec![endpoint(1, "v1"), endpoint(2, "v2")],
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
                    endpoints: vec![1],
                },
            ],
        }],
        routes: vec![RouteTable {
            index: Default::default(),
            service: 0,
            rules: vec![
                edit_rule(),
                RouteRule {
                    timeout_ms: Default::default(),
                    retries: Default::default(),
                    fault: Default::default(),
                    headers: Default::default(),
                    rewrite: Default::default(),
                    redirect: Default::default(),
                    mirror: Default::default(),
                    rate_limit: Default::default(),
                    name: "split".into(),
                    matches: vec![RequestMatch {
                        method: Default::default(),
                        query: Default::default(),
                        path: Some(PathMatch::Prefix("/".into())),
                        headers: vec![HeaderMatch {
                            name: "x-user".into(),
                            value: spec::ValueMatch::Exact("a".into()),
                        }],
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
                    source: SourceLocation::default(),
                },
            ],
        }],
        hosts: vec![HostEntry {
            host: "reviews".into(),
            namespace: None,
            route_table: 0,
        }],
        workloads: vec![],
        unserved: Vec::new(),
        telemetry: Default::default(),
    };
    snapshot.index_paths();
    RouteState::new(snapshot, String::new(), None).expect("the test snapshot is valid")
}

#[test]
fn parse_route_and_rewrite_allocate_nothing_when_warm() {
    let routes = routes();
    let request = b"POST /api/v1?x=1 HTTP/1.1\r\nHost: reviews:9080\r\nX-User: a\r\n\
                    Connection: keep-alive\r\nContent-Length: 5\r\n\r\nhello";
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: x\r\n\r\nok";
    let mut request_out = Vec::with_capacity(4096);
    let mut response_out = Vec::with_capacity(4096);
    let mut one_request = || {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(request, &mut headers).unwrap().unwrap();
        let view = RequestView {
            host: head.host,
            port: head.port,
            path: head.path,
            method: head.method,
            query: head.query,
            headers: head.headers,
        };
        let decision = routes.route(&view, || 42).unwrap();
        assert_eq!(decision.destination.unwrap().group.name, "reviews/v1");
        request_out.clear();
        head.write_forwarded(&mut request_out);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_response(response, &mut headers, "POST")
            .unwrap()
            .unwrap();
        response_out.clear();
        head.write_forwarded(&mut response_out, false);
    };
    one_request();
    let before = allocations();
    for _ in 0..1000 {
        one_request();
    }
    assert_eq!(allocations() - before, 0, "the request path allocated");
}

#[test]
fn matching_and_header_edits_allocate_nothing_when_warm() {
    let routes = routes();
    let request = b"PUT /edit/item?name=a%20b&x=1 HTTP/1.1\r\nHost: reviews\r\nX-User: abc\r\n\
                    X-Drop: 1\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: x\r\n\r\nok";
    let mut request_out = Vec::with_capacity(4096);
    let mut response_out = Vec::with_capacity(4096);
    let mut one_request = || {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(request, &mut headers).unwrap().unwrap();
        let view = RequestView {
            host: head.host,
            port: head.port,
            path: head.path,
            method: head.method,
            query: head.query,
            headers: head.headers,
        };
        let decision = routes.route(&view, || 42).unwrap();
        assert_eq!(decision.destination.unwrap().group.name, "reviews/v2");
        let actions = decision.actions;
        let write_path = |out: &mut Vec<u8>| {
            if let Some(rewrite) = &actions.path {
                rewrite.write(head.path, decision.path_covered, out);
            }
        };
        request_out.clear();
        head.write_edited(
            &mut request_out,
            &RequestEdits {
                path: Some(&write_path),
                authority: actions.authority.as_deref(),
                headers: &actions.request_headers,
            },
        );
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_response(response, &mut headers, "PUT")
            .unwrap()
            .unwrap();
        response_out.clear();
        head.write_edited(&mut response_out, false, &actions.response_headers);
        head.write_edited(&mut response_out, false, &NO_EDITS);
    };
    one_request();
    let before = allocations();
    for _ in 0..1000 {
        one_request();
    }
    assert_eq!(allocations() - before, 0, "the request path allocated");
    assert_eq!(
        String::from_utf8_lossy(&request_out),
        "PUT /v2/item?name=a%20b&x=1 HTTP/1.1\r\nhost: reviews.internal\r\n\
         Content-Length: 0\r\nx-user: b\r\nx-added: 1\r\n\r\n"
    );
}

#[test]
fn rate_limit_checks_allocate_nothing_when_warm() {
    use dataplane::ratelimit::{Caller, RateLimits};
    use dataplane::routing::RuleRef;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    let limit = |per_source| RateLimit {
        tokens_per_fill: 1000,
        fill_interval_ms: 1,
        max_tokens: 1000,
        per_source,
    };
    let mut routes = routes();
    let rules = &mut routes.snapshot.routes[0].rules;
    rules[0].rate_limit = Some(limit(false));
    rules[1].rate_limit = Some(limit(true));
    let start = Instant::now();
    let mut limits = RateLimits::build(&routes, RateLimits::default(), 0, 1, start);
    let source = Caller::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    let principal = Caller::Principal("spiffe://cluster.local/ns/default/sa/frontend");
    let (shared, per_source) = (RuleRef { table: 0, rule: 0 }, RuleRef { table: 0, rule: 1 });
    // The first request of a caller creates its bucket; later ones find it.
    assert!(limits.check(per_source, source, start).is_ok());
    assert!(limits.check(per_source, principal, start).is_ok());
    let before = allocations();
    for i in 0..1000u64 {
        // One refill per request: the lazy refill path runs too.
        let now = start + Duration::from_millis(i + 1);
        assert!(limits.check(shared, source, now).is_ok());
        assert!(limits.check(per_source, source, now).is_ok());
        assert!(limits.check(per_source, principal, now).is_ok());
    }
    assert_eq!(allocations() - before, 0, "a rate limit check allocated");
}
