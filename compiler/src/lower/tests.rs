use spec::{PathMatch, Protocol, Snapshot};

use crate::diag::{Code, Severity, Sources};
use crate::{compile_sources, Compiled, Failed};

fn sources(files: &[(&str, &str)]) -> Sources {
    let mut sources = Sources::new();
    for (path, text) in files {
        sources.add(*path, *text);
    }
    sources
}

fn compile_ok(files: &[(&str, &str)]) -> Compiled {
    match compile_sources(sources(files)) {
        Ok(compiled) => compiled,
        Err(failed) => panic!("compilation failed:\n{}", failed.render()),
    }
}

fn snapshot(src: &str) -> Snapshot {
    compile_ok(&[("m.mesh", src)]).snapshot
}

fn failed(files: &[(&str, &str)]) -> Failed {
    match compile_sources(sources(files)) {
        Ok(_) => panic!("compilation succeeded"),
        Err(failed) => failed,
    }
}

/// `(code, "file:line:col")` of every diagnostic.
fn codes(files: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let failed = failed(files);
    failed
        .diagnostics
        .iter()
        .map(|d| {
            let (file, line, col) = d.location(&failed.sources).unwrap_or_default();
            (d.code.as_str(), format!("{file}:{line}:{col}"))
        })
        .collect()
}

/// Two services, enough for most reference tests.
const BASE: &str = r#"
service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2", zone = "a" } weight 2
  endpoint 127.0.0.1:9083 { version = "v1", zone = "a" }
  subset v2 { version = "v2" }
  subset v1 { version = "v1" }
  subset a { zone = "a" }
}
service ratings { namespace Prod port 9090 http endpoint [::1]:9000 }
"#;

fn with_base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn sorts_services_and_subsets_by_name() {
    let s = snapshot(BASE);
    let names: Vec<&str> = s.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ratings", "reviews"]);
    let reviews = &s.services[1];
    let subsets: Vec<&str> = reviews.subsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(subsets, ["a", "v1", "v2"]);
    assert_eq!(reviews.ports[0].protocol, Protocol::Http);
}

#[test]
fn keeps_each_port_protocol() {
    let s = snapshot(
        "service s { port 1 http port 2 http2 port 3 grpc port 4 tcp endpoint 127.0.0.1:1 }",
    );
    let protocols: Vec<Protocol> = s.services[0].ports.iter().map(|p| p.protocol).collect();
    assert_eq!(
        protocols,
        [
            Protocol::Http,
            Protocol::Http2,
            Protocol::Grpc,
            Protocol::Tcp
        ]
    );
}

#[test]
fn subsets_list_the_endpoints_they_select() {
    let s = snapshot(BASE);
    let reviews = &s.services[1];
    let endpoints = |name: &str| {
        let subset = reviews.subsets.iter().find(|s| s.name == name);
        subset.map(|s| s.endpoints.clone()).unwrap_or_default()
    };
    assert_eq!(endpoints("v1"), [0, 2]);
    assert_eq!(endpoints("v2"), [1]);
    assert_eq!(endpoints("a"), [1, 2]);
}

#[test]
fn keeps_endpoints_in_declaration_order_with_default_weight() {
    let s = snapshot(BASE);
    let reviews = &s.services[1];
    let ports: Vec<u16> = reviews.endpoints.iter().map(|e| e.address.port()).collect();
    assert_eq!(ports, [9081, 9082, 9083]);
    let weights: Vec<u32> = reviews.endpoints.iter().map(|e| e.weight).collect();
    assert_eq!(weights, [1, 2, 1]);
    assert_eq!(
        reviews.endpoints[1].labels.get("zone").map(String::as_str),
        Some("a")
    );
}

#[test]
fn gives_every_service_four_lower_case_hosts() {
    let s = snapshot(BASE);
    assert_eq!(s.services[0].namespace, "Prod");
    assert_eq!(s.services[1].namespace, "default");
    let hosts: Vec<(&str, u32)> = s
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.route_table))
        .collect();
    assert_eq!(
        hosts,
        [
            ("ratings", 0),
            ("ratings.prod", 0),
            ("ratings.prod.svc", 0),
            ("ratings.prod.svc.cluster.local", 0),
            ("reviews", 1),
            ("reviews.default", 1),
            ("reviews.default.svc", 1),
            ("reviews.default.svc.cluster.local", 1),
        ]
    );
    for table in &s.routes {
        assert_eq!(s.routes[table.service as usize].service, table.service);
    }
}

#[test]
fn gives_unrouted_services_a_default_rule() {
    let s = snapshot(BASE);
    assert_eq!(s.routes.len(), 2);
    let rule = &s.routes[0].rules[0];
    assert_eq!(rule.name, "default");
    assert!(rule.matches.is_empty());
    assert_eq!(rule.destinations.len(), 1);
    assert_eq!(
        (rule.destinations[0].service, rule.destinations[0].subset),
        (0, None)
    );
    assert_eq!(rule.destinations[0].weight, 100);
    // The source is the `service` keyword of `ratings` (line 11, column 1).
    assert_eq!(rule.source.to_string(), "m.mesh:11:1");
}

#[test]
fn lowers_rules_in_order_with_their_source() {
    let src = with_base(
        r#"route reviews {
  rule canary {
    match header "X-Canary" = "true"
    match path prefix "/beta" and header "x-user" = "tester"
    to reviews/v2
  }
  rule split {
    match path exact "/"
    to reviews/v1 weight 90
    to ratings weight 10
  }
}"#,
    );
    let s = snapshot(&src);
    let table = &s.routes[1];
    assert_eq!(table.service, 1);
    let canary = &table.rules[0];
    assert_eq!(canary.name, "canary");
    assert_eq!(canary.source.to_string(), "m.mesh:13:3");
    assert_eq!(canary.matches.len(), 2);
    assert_eq!(canary.matches[0].headers[0].name, "x-canary");
    assert_eq!(canary.matches[0].path, None);
    assert_eq!(
        canary.matches[1].path,
        Some(PathMatch::Prefix("/beta".into()))
    );
    assert_eq!(
        canary.matches[1].headers[0].value,
        spec::ValueMatch::Exact("tester".into())
    );
    // Subsets are sorted a, v1, v2: v2 is index 2.
    assert_eq!(canary.destinations[0].subset, Some(2));
    assert_eq!(canary.destinations[0].weight, 100);
    let split = &table.rules[1];
    assert_eq!(split.matches[0].path, Some(PathMatch::Exact("/".into())));
    let dests: Vec<(u32, Option<u32>, u32)> = split
        .destinations
        .iter()
        .map(|d| (d.service, d.subset, d.weight))
        .collect();
    assert_eq!(dests, [(1, Some(1), 90), (0, None, 10)]);
}

#[test]
fn accepts_a_lone_destination_with_weight_100() {
    let s = snapshot(&with_base(
        "route reviews { rule r { to reviews weight 100 } }",
    ));
    assert_eq!(s.routes[1].rules[0].destinations[0].weight, 100);
}

#[test]
fn workloads_may_call_every_service_by_default() {
    let src = with_base(
        r#"workload zeta { outbound reviews, reviews }
workload alpha {
  identity "spiffe://cluster.local/ns/default/sa/alpha"
  inbound 9080 http -> 127.0.0.1:9090
}"#,
    );
    let s = snapshot(&src);
    let names: Vec<&str> = s.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(s.workloads[0].outbound, [0, 1]);
    assert_eq!(s.workloads[0].inbound[0].port, 9080);
    assert_eq!(s.workloads[0].inbound[0].target.port(), 9090);
    assert_eq!(s.workloads[1].outbound, [1]);
    assert_eq!(s.workloads[1].identity, None);
}

#[test]
fn declarations_may_span_files() {
    let compiled = compile_ok(&[
        ("a.mesh", "route r { rule x { to s } }"),
        ("b.mesh", "service r { port 1 http endpoint 1.1.1.1:1 }\nservice s { port 1 http endpoint 1.1.1.1:2 }"),
    ]);
    let rule = &compiled.snapshot.routes[0].rules[0];
    assert_eq!(rule.source.to_string(), "a.mesh:1:11");
    assert_eq!(rule.destinations[0].service, 1);
    assert!(compiled.snapshot.validate().is_ok());
}

#[test]
fn unknown_subset_is_e0102_with_declared_subsets() {
    let src = with_base("route reviews {\n  rule r {\n    to reviews/v3\n  }\n}");
    let failed = failed(&[("m.mesh", &src)]);
    let d = &failed.diagnostics[0];
    assert_eq!(d.code, Code::UnknownSubset);
    assert_eq!(d.message, "unknown subset `v3` of service `reviews`");
    assert_eq!(d.help.as_deref(), Some("declared subsets: a, v1, v2"));
    assert_eq!(
        codes(&[("m.mesh", &src)]),
        [("E0102", "m.mesh:14:16".to_owned())]
    );
}

#[test]
fn unknown_subset_of_service_without_subsets() {
    let failed = failed(&[(
        "m.mesh",
        &with_base("route ratings { rule r { to ratings/v1 } }"),
    )]);
    assert_eq!(
        failed.diagnostics[0].help.as_deref(),
        Some("service `ratings` declares no subsets")
    );
}

#[test]
fn unknown_services_are_e0101_everywhere() {
    let src = with_base(
        "route reveiws { rule r { to reviews } }\nroute reviews { rule r { to ratngs } }\nworkload w { outbound details }",
    );
    assert_eq!(
        codes(&[("m.mesh", &src)]),
        [
            ("E0101", "m.mesh:12:7".to_owned()),
            ("E0101", "m.mesh:13:29".to_owned()),
            ("E0101", "m.mesh:14:23".to_owned()),
        ]
    );
    let failed = failed(&[("m.mesh", &src)]);
    assert_eq!(
        failed.diagnostics[0].help.as_deref(),
        Some("declared services: ratings, reviews")
    );
}

#[test]
fn unknown_service_among_many_suggests_a_close_name() {
    let mut src = String::new();
    for i in 0..10 {
        src.push_str(&format!(
            "service svc{i} {{ port 1 http endpoint 1.1.1.1:1 }}\n"
        ));
    }
    src.push_str(
        "service reviews { port 1 http endpoint 1.1.1.1:1 }\nworkload w { outbound reveiws }",
    );
    let failed = failed(&[("m.mesh", &src)]);
    assert_eq!(
        failed.diagnostics[0].help.as_deref(),
        Some("did you mean `reviews`?")
    );
}

#[test]
fn duplicates_are_e0103_naming_the_first() {
    let files = [
        ("a.mesh", "service s { port 1 http endpoint 1.1.1.1:1 subset x {} subset x {} }\nworkload w {}"),
        ("b.mesh", "service s { port 1 http endpoint 1.1.1.1:1 }\nroute s { rule r { to s } rule r { to s } }\nroute s { rule q { to s } }\nworkload w {}"),
    ];
    assert_eq!(
        codes(&files),
        [
            ("E0103", "a.mesh:1:63".to_owned()),
            ("E0103", "b.mesh:1:9".to_owned()),
            ("E0103", "b.mesh:2:32".to_owned()),
            ("E0103", "b.mesh:3:7".to_owned()),
            ("E0103", "b.mesh:4:10".to_owned()),
        ]
    );
    let failed = failed(&files);
    let messages: Vec<&str> = failed
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages[0],
        "subset `x` of service `s` is defined more than once (first at a.mesh:1)"
    );
    assert_eq!(
        messages[1],
        "service `s` is defined more than once (first at a.mesh:1)"
    );
    assert_eq!(
        messages[2],
        "rule `r` of route `s` is defined more than once (first at b.mesh:2)"
    );
    assert_eq!(
        messages[3],
        "route for service `s` is defined more than once (first at b.mesh:2)"
    );
    assert_eq!(
        messages[4],
        "workload `w` is defined more than once (first at a.mesh:2)"
    );
}

#[test]
fn colliding_hosts_are_e0103() {
    let src = "service a.b { port 1 http endpoint 1.1.1.1:1 }\nservice a { namespace b port 1 http endpoint 1.1.1.1:1 }";
    assert_eq!(
        codes(&[("m.mesh", src)]),
        [("E0103", "m.mesh:1:9".to_owned())]
    );
    let src = "service A { port 1 http endpoint 1.1.1.1:1 }\nservice a { port 1 http endpoint 1.1.1.1:1 }";
    let codes = codes(&[("m.mesh", src)]);
    assert!(codes.iter().all(|(c, _)| *c == "E0103"), "{codes:?}");
}

#[test]
fn weights_that_do_not_sum_to_100_are_e0104_at_the_rule() {
    let src = with_base("route reviews {\n  rule r { match path prefix \"/r\"\n    to reviews/v1 weight 90\n    to reviews/v2 weight 20\n  }\n  rule q { match path prefix \"/q\" to reviews weight 50 }\n  rule m { match path prefix \"/m\"\n    to reviews/v1 weight 90\n    to reviews/v2\n  }\n}");
    assert_eq!(
        codes(&[("m.mesh", &src)]),
        [
            ("E0104", "m.mesh:13:3".to_owned()),
            ("E0104", "m.mesh:17:3".to_owned()),
            ("E0104", "m.mesh:18:3".to_owned()),
        ]
    );
}

#[test]
fn invalid_values_are_e0002() {
    let src = "service s {\n  port 0 http\n  port 65536 http\n  endpoint 1.2.3:80\n  endpoint 1.1.1.1:0\n  endpoint 1.1.1.1:1 weight 0\n}\nroute s { rule r { to s weight 101 } }\nroute t { rule r { match path prefix \"api\" and header \"bad name\" = \"x\" to s } }\nservice t { port 1 http endpoint 1.1.1.1:1 }\nworkload w { identity \"sa/w\" inbound 99999 http -> localhost:80 }";
    assert_eq!(
        codes(&[("m.mesh", src)]),
        [
            ("E0002", "m.mesh:2:8".to_owned()),
            ("E0002", "m.mesh:3:8".to_owned()),
            ("E0002", "m.mesh:4:12".to_owned()),
            ("E0002", "m.mesh:5:12".to_owned()),
            ("E0002", "m.mesh:6:29".to_owned()),
            ("E0002", "m.mesh:8:32".to_owned()),
            ("E0002", "m.mesh:9:38".to_owned()),
            ("E0002", "m.mesh:9:55".to_owned()),
            ("E0002", "m.mesh:11:23".to_owned()),
            ("E0002", "m.mesh:11:38".to_owned()),
            ("E0002", "m.mesh:11:52".to_owned()),
        ]
    );
}

#[test]
fn missing_ports_and_endpoints_are_e0105_and_e0106() {
    let src = "\nservice lonely { }";
    assert_eq!(
        codes(&[("m.mesh", src)]),
        [
            ("E0105", "m.mesh:2:9".to_owned()),
            ("E0106", "m.mesh:2:9".to_owned())
        ]
    );
}

#[test]
fn a_subset_selecting_nothing_is_only_a_warning() {
    let compiled = compile_ok(&[(
        "m.mesh",
        &with_base("service x { port 1 http endpoint 1.1.1.1:1 subset none { version = \"v9\" } }"),
    )]);
    assert_eq!(compiled.warnings.len(), 1);
    let w = &compiled.warnings[0];
    assert_eq!((w.code, w.severity), (Code::EmptySubset, Severity::Warning));
    assert_eq!(
        w.location(&compiled.sources),
        Some(("m.mesh".to_owned(), 12, 51))
    );
    let x = &compiled.snapshot.services[2];
    assert!(x.subsets[0].endpoints.is_empty());
}

#[test]
fn reports_every_semantic_error_not_just_the_first() {
    let src = "service s { port 1 http }\nroute s { rule r { to nope } }\nworkload w { outbound s, gone }";
    let codes: Vec<&str> = codes(&[("m.mesh", src)])
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(codes, ["E0106", "E0101", "E0101"]);
}

#[test]
fn a_syntax_error_stops_before_lowering() {
    let files = [
        ("a.mesh", "service s { port 1 htp }"),
        ("b.mesh", "route nope { rule r { to nope } }"),
    ];
    assert_eq!(codes(&files), [("E0001", "a.mesh:1:20".to_owned())]);
}

#[test]
fn a_workloads_namespace_resolves_short_names_whatever_its_case() {
    let s = snapshot(&with_base("workload w { namespace Prod }"));
    let w = s.workload("w").expect("w");
    assert_eq!(w.namespace, "prod");
    let ratings = s.route_table_for_host("ratings", &w.namespace);
    assert_eq!(ratings, s.route_table_for_host("ratings.prod", "default"));
    assert!(ratings.is_some());
}

#[test]
fn virtual_addresses_are_lowered_and_checked() {
    let snapshot = snapshot(
        "service web { port 80 http endpoint 127.0.0.1:8080 address 10.96.0.10, 240.1.2.3/16 }\n\
         service api { port 81 http endpoint 127.0.0.1:8081 address fd00::1 }",
    );
    let of = |name: &str| -> Vec<String> {
        let service = snapshot.services.iter().find(|s| s.name == name).unwrap();
        service.addresses.iter().map(ToString::to_string).collect()
    };
    assert_eq!(of("web"), ["10.96.0.10", "240.1.0.0/16"]);
    assert_eq!(of("api"), ["fd00::1"]);

    let bad =
        "service web { port 80 http endpoint 127.0.0.1:8080 address 10.96.0.300, 10.0.0.0/33 }";
    assert_eq!(
        codes(&[("m.mesh", bad)]),
        [
            ("E0002", "m.mesh:1:60".to_owned()),
            ("E0002", "m.mesh:1:73".to_owned())
        ]
    );

    // The same address on a port both declare: a captured connection could go to either.
    let clash = "service a { port 80 http endpoint 127.0.0.1:8080 address 10.96.0.10 }\n\
                 service b { port 80 http endpoint 127.0.0.1:8081 address 10.96.0.10 }\n\
                 service c { port 90 http endpoint 127.0.0.1:8082 address 10.96.0.10 }";
    assert_eq!(
        codes(&[("m.mesh", clash)]),
        [("E0149", "m.mesh:2:58".to_owned())]
    );
    // An address inside another service's block is the more specific one: meshd (as Envoy)
    // tries single addresses first. Two overlapping blocks are a conflict again.
    compile_ok(&[(
        "m.mesh",
        "service a { port 80 http endpoint 127.0.0.1:8080 address 10.96.0.10 }\n\
         service b { port 80 http endpoint 127.0.0.1:8081 address 10.96.0.0/24 }",
    )]);
    let blocks = "service a { port 80 http endpoint 127.0.0.1:8080 address 10.96.0.0/16 }\n\
                  service b { port 80 http endpoint 127.0.0.1:8081 address 10.96.1.0/24 }";
    assert_eq!(
        codes(&[("m.mesh", blocks)]),
        [("E0149", "m.mesh:2:58".to_owned())]
    );
}

#[test]
fn a_workload_may_allow_only_the_mesh_outbound() {
    let of = |snapshot: &Snapshot| snapshot.workloads[0].outbound_traffic;
    let base = "service web { port 80 http endpoint 127.0.0.1:8080 }\n";
    let dsl = format!("{base}workload app {{ outbound_traffic registry_only }}");
    assert_eq!(of(&snapshot(&dsl)), spec::OutboundTraffic::RegistryOnly);
    let default = format!("{base}workload app {{ outbound web }}");
    assert_eq!(of(&snapshot(&default)), spec::OutboundTraffic::AllowAny);
    let toml = "[[workload]]\nname = \"app\"\noutbound_traffic = \"registry_only\"\n";
    let compiled = compile_ok(&[("m.mesh", base), ("w.toml", toml)]);
    assert_eq!(of(&compiled.snapshot), spec::OutboundTraffic::RegistryOnly);

    let bad =
        format!("{base}workload app {{ outbound_traffic closed\n outbound_traffic allow_any }}");
    assert_eq!(
        codes(&[("m.mesh", &bad)]),
        [
            ("E0002", "m.mesh:2:33".to_owned()),
            ("E0103", "m.mesh:3:19".to_owned())
        ]
    );
}
