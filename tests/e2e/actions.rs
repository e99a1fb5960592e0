//! Per-rule matching and actions of snapshot format v2 through the real meshd: regex, method,
//! header and query matches, rule timeouts, header edits, rewrites, redirects, fault injection,
//! and the refusal of a snapshot whose regex does not compile. The snapshots are built here in
//! Rust and written with `spec::encode`, independent of the DSL.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use ringmesh_tests::*;
use spec::*;

/// Builds a snapshot with one service `web` (host `web`) that has one endpoint and one subset
/// per upstream, the subset named after the upstream.
struct Mesh {
    /// (subset name, endpoint address), sorted by name.
    members: Vec<(String, SocketAddr)>,
}

impl Mesh {
    fn new(members: &[(&str, SocketAddr)]) -> Self {
        let mut members: Vec<(String, SocketAddr)> = members
            .iter()
            .map(|(name, addr)| ((*name).to_owned(), *addr))
            .collect();
        members.sort();
        Self { members }
    }

    fn of(upstreams: &[&Upstream]) -> Self {
        let members: Vec<(&str, SocketAddr)> =
            upstreams.iter().map(|u| (u.name(), u.addr())).collect();
        Self::new(&members)
    }

    /// All traffic of a rule to the subset `name`.
    fn to(&self, name: &str) -> Vec<WeightedDestination> {
        let index = self
            .members
            .iter()
            .position(|(n, _)| n == name)
            .expect("a subset of this mesh");
        vec![WeightedDestination {
            service: 0,
            subset: Some(index as u32),
            weight: 100,
        }]
    }

    /// A rule `name` with one match alternative, to the subset `to`.
    fn rule(&self, name: &str, m: RequestMatch, to: &str) -> RouteRule {
        RouteRule {
            name: name.into(),
            matches: vec![m],
            destinations: self.to(to),
            ..RouteRule::default()
        }
    }

    fn snapshot(&self, rules: Vec<RouteRule>) -> Snapshot {
        let label = |name: &str| BTreeMap::from([("name".to_owned(), name.to_owned())]);
        let mut snapshot = Snapshot {
            services: vec![Service {
                name: "web".into(),
                namespace: "default".into(),
                ports: vec![ServicePort {
                    number: 80,
                    protocol: Protocol::Http,
                }],
                endpoints: self
                    .members
                    .iter()
                    .map(|(name, addr)| Endpoint {
                        address: *addr,
                        labels: label(name),
                        weight: 1,
                    })
                    .collect(),
                subsets: self
                    .members
                    .iter()
                    .enumerate()
                    .map(|(i, (name, _))| Subset {
                        name: name.clone(),
                        selector: label(name),
                        endpoints: vec![i as u32],
                        policy: TrafficPolicy::default(),
                    })
                    .collect(),
                policy: TrafficPolicy::default(),
                identities: vec![],
                addresses: Vec::new(),
            }],
            routes: vec![RouteTable {
                service: 0,
                rules,
                index: Default::default(),
            }],
            hosts: vec![HostEntry {
                host: "web".into(),
                namespace: None,
                route_table: 0,
            }],
            workloads: vec![],
            unserved: Vec::new(),
            telemetry: Default::default(),
        };
        snapshot.index_paths();
        snapshot
    }

    /// Writes the snapshot for `rules` to `mesh.snap` in `scratch`.
    fn write(&self, scratch: &Scratch, rules: Vec<RouteRule>) -> PathBuf {
        scratch.write("mesh.snap", spec::encode(&self.snapshot(rules)))
    }

    /// Writes the snapshot and starts a one-core meshd on it.
    fn serve(&self, scratch: &Scratch, rules: Vec<RouteRule>, driver: &str) -> Sidecar {
        let path = self.write(scratch, rules);
        let args = [
            "--cores",
            "1",
            "--io-driver",
            driver,
            "--watch-interval",
            "0s",
        ];
        Sidecar::start(&path, &args).expect("start meshd")
    }
}

fn path(m: PathMatch) -> RequestMatch {
    RequestMatch {
        path: Some(m),
        ..RequestMatch::default()
    }
}

fn header(name: &str, value: ValueMatch) -> RequestMatch {
    RequestMatch {
        headers: vec![HeaderMatch {
            name: name.into(),
            value,
        }],
        ..RequestMatch::default()
    }
}

fn value(name: &str, value: &str) -> HeaderValue {
    HeaderValue {
        name: name.into(),
        value: value.into(),
    }
}

fn matches_route_by_regex_method_headers_and_query(driver: &str) {
    let names = [
        "regex", "method", "prefix", "hregex", "present", "query", "absent",
    ];
    let upstreams: Vec<Upstream> = names.iter().map(|n| Upstream::start(n).unwrap()).collect();
    let mesh = Mesh::of(&upstreams.iter().collect::<Vec<_>>());
    let rules = vec![
        mesh.rule(
            "regex",
            path(PathMatch::Regex("/items/[0-9]+".into())),
            "regex",
        ),
        mesh.rule(
            "method",
            RequestMatch {
                method: Some(ValueMatch::Regex("DEL.*".into())),
                ..RequestMatch::default()
            },
            "method",
        ),
        mesh.rule(
            "prefix",
            header("x-user", ValueMatch::Prefix("adm".into())),
            "prefix",
        ),
        mesh.rule(
            "hregex",
            header("x-ver", ValueMatch::Regex("v[0-9]".into())),
            "hregex",
        ),
        mesh.rule("present", header("x-debug", ValueMatch::Present), "present"),
        mesh.rule(
            "query",
            RequestMatch {
                query: vec![QueryMatch {
                    name: "tier".into(),
                    value: ValueMatch::Exact("gold plus".into()),
                }],
                ..RequestMatch::default()
            },
            "query",
        ),
        mesh.rule("absent", header("x-skip", ValueMatch::Absent), "absent"),
    ];
    let scratch = Scratch::new();
    let meshd = mesh.serve(&scratch, rules, driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let mut served_by = |method: &str, target: &str, headers: &[(&str, &str)]| {
        let response = client.request(method, "web", target, headers, b"").unwrap();
        (response.status, response.text())
    };
    let ok = |name: &str| (200, name.to_owned());
    assert_eq!(served_by("GET", "/items/42", &[]), ok("regex"));
    assert_eq!(served_by("GET", "/items/42x", &[]), ok("absent"));
    assert_eq!(served_by("DELETE", "/x", &[]), ok("method"));
    assert_eq!(served_by("GET", "/", &[("x-user", "admin")]), ok("prefix"));
    assert_eq!(
        served_by("GET", "/", &[("x-ver", "x"), ("x-ver", "v2")]),
        ok("hregex"),
        "any of several values counts"
    );
    assert_eq!(served_by("GET", "/", &[("x-ver", "v22")]), ok("absent"));
    assert_eq!(served_by("GET", "/", &[("x-debug", "")]), ok("present"));
    assert_eq!(served_by("GET", "/?a=1&tier=gold%20plus", &[]), ok("query"));
    assert_eq!(served_by("GET", "/?tier=gold", &[]), ok("absent"));
    let (status, _) = served_by("GET", "/", &[("x-skip", "1")]);
    assert_eq!(status, 404, "no rule matches");
}

/// A server that accepts connections and never answers.
fn black_hole() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(std::time::Duration::from_secs(30));
    });
    (addr, handle)
}

fn rule_timeout_answers_504_ut(driver: &str) {
    let (silent, _hold) = black_hole();
    let fast = Upstream::start("fast").unwrap();
    let mesh = Mesh::new(&[("silent", silent), ("fast", fast.addr())]);
    let rules = vec![
        RouteRule {
            timeout_ms: Some(200),
            ..mesh.rule("slow", path(PathMatch::Prefix("/slow".into())), "silent")
        },
        RouteRule {
            timeout_ms: Some(200),
            ..mesh.rule(
                "trickle",
                path(PathMatch::Prefix("/trickle".into())),
                "fast",
            )
        },
        RouteRule {
            timeout_ms: Some(5000),
            ..mesh.rule("ok", RequestMatch::default(), "fast")
        },
    ];
    let scratch = Scratch::new();
    // The sidecar-wide timeout is long: the 504 can only come from the rule's.
    let path = mesh.write(&scratch, rules);
    let meshd = Sidecar::start(
        &path,
        &[
            "--cores",
            "1",
            "--io-driver",
            driver,
            "--upstream-timeout",
            "60s",
        ],
    )
    .unwrap();
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client.get("web", "/slow", &[]).unwrap();
    assert_eq!(response.status, 504, "{}", response.text());
    assert_eq!(response.header("x-ringmesh-flag"), Some("UT"));
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client.get("web", "/fine", &[]).unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "fast"));
    // A body that stops arriving is bounded by the rule timeout too, not the idle timeout.
    let mut client = Client::connect(meshd.outbound).unwrap();
    client
        .send(b"POST /trickle HTTP/1.1\r\nhost: web\r\ncontent-length: 100\r\n\r\n0123456789")
        .unwrap();
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 504, "{}", response.text());
    assert_eq!(response.header("x-ringmesh-flag"), Some("UT"));
    assert!(
        response.text().contains("request body"),
        "{}",
        response.text()
    );
}

fn header_edits_reach_upstream_and_client(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let mesh = Mesh::of(&[&up]);
    let rules = vec![RouteRule {
        headers: HeaderOps {
            request: HeaderEdits {
                set: vec![value("x-user", "replaced")],
                add: vec![value("x-added", "1"), value("x-keep", "second")],
                remove: vec!["x-secret".into()],
            },
            response: HeaderEdits {
                set: vec![value("content-type", "text/x-mesh")],
                add: vec![value("x-served-by", "meshd")],
                remove: vec!["x-upstream".into()],
            },
        },
        ..mesh.rule("edits", RequestMatch::default(), "up")
    }];
    let scratch = Scratch::new();
    let meshd = mesh.serve(&scratch, rules, driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let headers = [
        ("x-user", "original"),
        ("x-secret", "s"),
        ("x-keep", "first"),
    ];
    let response = client.get("web", "/headers", &headers).unwrap();
    assert_eq!(response.status, 200);
    let seen = response.text().to_ascii_lowercase();
    assert!(seen.contains("x-user: replaced\n"), "{seen}");
    assert!(!seen.contains("original"), "{seen}");
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(seen.contains("x-added: 1\n"), "{seen}");
    assert!(
        seen.contains("x-keep: first\n") && seen.contains("x-keep: second\n"),
        "{seen}"
    );
    assert_eq!(response.header("content-type"), Some("text/x-mesh"));
    assert_eq!(response.header("x-served-by"), Some("meshd"));
    assert_eq!(response.header("x-upstream"), None);
    // The same connection keeps working with the edited heads.
    assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    assert_eq!(client.connections(), 1);
}

fn rewrites_reach_the_upstream(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let mesh = Mesh::of(&[&up]);
    let rules = vec![
        RouteRule {
            rewrite: Some(Rewrite {
                path_prefix: Some(String::new()),
                ..Rewrite::default()
            }),
            ..mesh.rule("prefix", path(PathMatch::Prefix("/old".into())), "up")
        },
        RouteRule {
            rewrite: Some(Rewrite {
                path_regex: Some(RegexRewrite {
                    pattern: "^/v([0-9]+)/code$".into(),
                    substitution: "/status/4$1".into(),
                }),
                ..Rewrite::default()
            }),
            ..mesh.rule(
                "regex",
                path(PathMatch::Regex("/v[0-9]+/code".into())),
                "up",
            )
        },
        RouteRule {
            rewrite: Some(Rewrite {
                path_prefix: Some("/headers".into()),
                authority: Some("backend.internal:8080".into()),
                ..Rewrite::default()
            }),
            ..mesh.rule("authority", path(PathMatch::Exact("/host".into())), "up")
        },
        // No path condition: the prefix rewrite replaces the leading `/`, as in Envoy.
        RouteRule {
            rewrite: Some(Rewrite {
                path_prefix: Some("/status/".into()),
                ..Rewrite::default()
            }),
            ..mesh.rule("no-path", header("x-status", ValueMatch::Present), "up")
        },
    ];
    let scratch = Scratch::new();
    let meshd = mesh.serve(&scratch, rules, driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    // "/old/chunked?chunks=3&size=7" reaches the upstream as "/chunked" with its query.
    let response = client
        .get("web", "/old/chunked?chunks=3&size=7", &[])
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), 21, "{}", response.text());
    let response = client.get("web", "/v18/code", &[]).unwrap();
    assert_eq!(response.status, 418, "{}", response.text());
    let response = client.get("web", "/host", &[]).unwrap();
    let seen = response.text().to_ascii_lowercase();
    assert!(seen.contains("host: backend.internal:8080\n"), "{seen}");
    assert_eq!(seen.matches("host:").count(), 1, "{seen}");
    let response = client.get("web", "/403", &[("x-status", "")]).unwrap();
    assert_eq!(response.status, 403, "{}", response.text());
}

fn redirect_answers_locally(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let mesh = Mesh::of(&[&up]);
    let rules = vec![
        RouteRule {
            name: "moved".into(),
            matches: vec![path(PathMatch::Prefix("/old".into()))],
            redirect: Some(Redirect {
                scheme: Some("https".into()),
                authority: None,
                port: None,
                path: Some("/new".into()),
                status: 301,
            }),
            ..RouteRule::default()
        },
        RouteRule {
            name: "elsewhere".into(),
            matches: vec![path(PathMatch::Prefix("/away".into()))],
            redirect: Some(Redirect {
                scheme: None,
                authority: Some("other.example".into()),
                port: Some(8443),
                path: None,
                status: 307,
            }),
            ..RouteRule::default()
        },
        mesh.rule("rest", RequestMatch::default(), "up"),
    ];
    let scratch = Scratch::new();
    let meshd = mesh.serve(&scratch, rules, driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let response = client.get("web:8080", "/old/page?x=1", &[]).unwrap();
    assert_eq!(response.status, 301);
    assert_eq!(response.header("location"), Some("https://web/new?x=1"));
    assert!(response.body.is_empty());
    let response = client.get("web", "/away/p", &[]).unwrap();
    assert_eq!(response.status, 307);
    assert_eq!(
        response.header("location"),
        Some("http://other.example:8443/away/p")
    );
    assert_eq!(up.requests(), 0, "a redirect contacts no upstream");
    assert_eq!(client.connections(), 1, "the connection stays open");
    assert_eq!(client.get("web", "/", &[]).unwrap().text(), "up");
}

fn fault_abort_and_delay(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let mesh = Mesh::of(&[&up]);
    let fault = |delay: Option<FaultDelay>, abort: Option<FaultAbort>| {
        Some(FaultInjection { delay, abort })
    };
    let rules = vec![
        RouteRule {
            fault: fault(
                None,
                Some(FaultAbort {
                    status: 503,
                    per_million: 1_000_000,
                }),
            ),
            ..mesh.rule("always", path(PathMatch::Prefix("/always".into())), "up")
        },
        RouteRule {
            fault: fault(
                None,
                Some(FaultAbort {
                    status: 500,
                    per_million: 0,
                }),
            ),
            ..mesh.rule("never", path(PathMatch::Prefix("/never".into())), "up")
        },
        RouteRule {
            fault: fault(
                Some(FaultDelay {
                    delay_ms: 50,
                    per_million: 1_000_000,
                }),
                None,
            ),
            ..mesh.rule("delayed", path(PathMatch::Prefix("/delayed".into())), "up")
        },
    ];
    let scratch = Scratch::new();
    let meshd = mesh.serve(&scratch, rules, driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    for _ in 0..20 {
        let response = client.get("web", "/always", &[]).unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.header("x-ringmesh-flag"), Some("FI"));
    }
    assert_eq!(up.requests(), 0, "an abort contacts no upstream");
    for _ in 0..20 {
        let response = client.get("web", "/never", &[]).unwrap();
        assert_eq!((response.status, response.text().as_str()), (200, "up"));
    }
    let response = client.get("web", "/delayed", &[]).unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "up"));
    assert_eq!(up.requests(), 21);
}

fn config(admin: SocketAddr) -> String {
    Client::connect(admin)
        .unwrap()
        .get("admin", "/config", &[])
        .unwrap()
        .text()
}

fn bad_regex_is_refused_on_reload_and_unenforced_features_are_listed(driver: &str) {
    let up = Upstream::start("up").unwrap();
    let mesh = Mesh::of(&[&up]);
    // An edit of a hop-by-hop header is left out (and listed), never applied.
    let good = vec![RouteRule {
        headers: HeaderOps {
            request: HeaderEdits {
                remove: vec!["te".into()],
                ..HeaderEdits::default()
            },
            ..HeaderOps::default()
        },
        ..mesh.rule("hop", RequestMatch::default(), "up")
    }];
    let scratch = Scratch::new();
    let meshd = mesh.serve(&scratch, good, driver);
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(client.get("web", "/", &[]).unwrap().text(), "up");
    // `/config` is read as text: the checks are substrings of its pretty-printed JSON.
    let listed = config(meshd.admin);
    assert!(
        listed.contains("\"not_enforced\"")
            && listed
                .contains("\"feature\": \"header edits of framing, hop-by-hop or Host headers\"")
            && listed.contains("\"rule web/hop\""),
        "{listed}"
    );

    let bad = vec![mesh.rule("broken", path(PathMatch::Regex("/(unclosed".into())), "up")];
    mesh.write(&scratch, bad);
    let refused = Client::connect(meshd.admin)
        .unwrap()
        .request("POST", "admin", "/reload", &[], b"")
        .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.text());
    let reason = "rule web/broken: invalid regex \"/(unclosed\" in the path match: \
                  error: unclosed group";
    assert!(refused.text().contains(reason), "{}", refused.text());
    assert_eq!(client.get("web", "/", &[]).unwrap().text(), "up");
    assert!(config(meshd.admin).contains(&meshd.snapshot_hash));
}

on_both_drivers!(
    matches_route_by_regex_method_headers_and_query,
    rule_timeout_answers_504_ut,
    header_edits_reach_upstream_and_client,
    rewrites_reach_the_upstream,
    redirect_answers_locally,
    fault_abort_and_delay,
    bad_regex_is_refused_on_reload_and_unenforced_features_are_listed,
);
