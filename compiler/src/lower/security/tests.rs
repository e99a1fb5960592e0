use spec::{AuthzAction, ConditionKey, Snapshot, StringPattern, TlsMode};

use crate::ast;
use crate::diag::{Code, Diagnostic, Sources, Span};
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

fn located(diagnostics: &[Diagnostic], sources: &Sources) -> Vec<(&'static str, String)> {
    diagnostics
        .iter()
        .map(|d| {
            let (file, line, col) = d.location(sources).unwrap_or_default();
            (d.code.as_str(), format!("{file}:{line}:{col}"))
        })
        .collect()
}

/// `(code, "file:line:col")` of every diagnostic of a failing one-file compilation.
fn codes(src: &str) -> Vec<(&'static str, String)> {
    let failed = failed(&[("m.mesh", src)]);
    located(&failed.diagnostics, &failed.sources)
}

/// `(code, "file:line:col")` of every warning of a succeeding one-file compilation.
fn warnings(src: &str) -> Vec<(&'static str, String)> {
    let compiled = compile_ok(&[("m.mesh", src)]);
    located(&compiled.warnings, &compiled.sources)
}

/// The help line of the first error.
fn help(src: &str) -> String {
    let failed = failed(&[("m.mesh", src)]);
    let error = failed.diagnostics.iter().find(|d| d.is_error());
    error.and_then(|d| d.help.clone()).unwrap_or_default()
}

const BASE: &str = r#"service reviews { port 9080 http endpoint 127.0.0.1:9081 }
service ratings { port 9080 http endpoint 127.0.0.1:9082 }
workload reviews-v1 {
  labels { app = "reviews", version = "v1" }
  identity "spiffe://cluster.local/ns/default/sa/reviews"
  serves reviews
  inbound 9080 http -> 127.0.0.1:9090
  inbound 9443 http -> 127.0.0.1:9091
}
workload reviews-v2 {
  labels { app = "reviews", version = "v2" }
  identity "spiffe://cluster.local/ns/default/sa/reviews-v2"
  serves ratings
  serves reviews
  inbound 9080 http -> 127.0.0.1:9092
}
workload ratings {
  namespace prod
  labels { app = "ratings" }
  identity "spiffe://cluster.local/ns/prod/sa/ratings"
  serves ratings, ratings
  inbound 9080 http -> 127.0.0.1:9093
}
workload bare { identity "spiffe://cluster.local/ns/default/sa/bare" }
"#;

/// BASE is 24 lines; extra text starts on line 25.
fn with_base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn workload<'s>(s: &'s Snapshot, name: &str) -> &'s spec::Workload {
    s.workload(name).expect("workload")
}

fn policy_names(s: &Snapshot, name: &str) -> Vec<String> {
    workload(s, name)
        .authorization
        .iter()
        .map(|p| p.name.clone())
        .collect()
}

#[test]
fn fills_serves_and_service_identities() {
    let s = snapshot(BASE);
    let (ratings, _) = s.service("ratings").expect("ratings");
    let (reviews, _) = s.service("reviews").expect("reviews");
    assert_eq!(workload(&s, "reviews-v2").serves, [ratings, reviews]);
    assert_eq!(workload(&s, "ratings").serves, [ratings]);
    assert!(workload(&s, "bare").serves.is_empty());
    assert_eq!(
        s.services[reviews as usize].identities,
        [
            "spiffe://cluster.local/ns/default/sa/reviews",
            "spiffe://cluster.local/ns/default/sa/reviews-v2"
        ]
    );
    assert_eq!(
        s.services[ratings as usize].identities,
        [
            "spiffe://cluster.local/ns/default/sa/reviews-v2",
            "spiffe://cluster.local/ns/prod/sa/ratings"
        ]
    );
}

#[test]
fn reports_an_unknown_served_service() {
    let src = "service a { port 80 http endpoint 127.0.0.1:81 }\nworkload w {\n  serves a, b\n}";
    assert_eq!(codes(src), [("E0101", "m.mesh:3:13".to_owned())]);
}

#[test]
fn defaults_to_permissive_mtls_and_honours_explicit_modes() {
    let s = snapshot(
        "workload w {\n inbound 1 http -> 127.0.0.1:2\n inbound 3 http -> 127.0.0.1:4 mtls strict\n}",
    );
    let tls: Vec<TlsMode> = workload(&s, "w").inbound.iter().map(|i| i.tls).collect();
    assert_eq!(tls, [TlsMode::Permissive, TlsMode::Strict]);
}

#[test]
fn peer_authentication_levels_override_each_other() {
    let s = snapshot(&with_base(
        "peer_authentication mesh { mode strict }
peer_authentication prod-ns { namespace prod mode disable }
peer_authentication inherit { namespace default }
peer_authentication v1 { workloads reviews-v1 mode permissive port 9443 disable }
peer_authentication v2 { workloads reviews-v2 port 9080 disable }
",
    ));
    let tls =
        |name: &str| -> Vec<TlsMode> { workload(&s, name).inbound.iter().map(|i| i.tls).collect() };
    // Workload mode, then its port override.
    assert_eq!(tls("reviews-v1"), [TlsMode::Permissive, TlsMode::Disable]);
    // A port override without a mode: the port uses it.
    assert_eq!(tls("reviews-v2"), [TlsMode::Disable]);
    // Namespace-wide beats mesh-wide.
    assert_eq!(tls("ratings"), [TlsMode::Disable]);
    // A namespace policy without a mode inherits the mesh-wide one.
    let s2 = snapshot(&with_base(
        "peer_authentication mesh { mode strict }\npeer_authentication inherit { namespace default }\n",
    ));
    let tls: Vec<TlsMode> = workload(&s2, "reviews-v2")
        .inbound
        .iter()
        .map(|i| i.tls)
        .collect();
    assert_eq!(tls, [TlsMode::Strict]);
}

#[test]
fn explicit_inbound_mtls_beats_every_peer_authentication() {
    let s = snapshot(
        "workload w { inbound 1 http -> 127.0.0.1:2 mtls disable }
peer_authentication p { workloads w mode strict port 1 strict }",
    );
    assert_eq!(workload(&s, "w").inbound[0].tls, TlsMode::Disable);
}

#[test]
fn reports_conflicting_peer_authentications_once() {
    let src = with_base(
        "peer_authentication a { mode strict }
peer_authentication b { mode disable }
peer_authentication c { workloads reviews-v1 mode strict }
peer_authentication d { workloads reviews-v1 }
",
    );
    assert_eq!(
        codes(&src),
        [
            ("E0142", "m.mesh:26:21".to_owned()),
            ("E0142", "m.mesh:28:21".to_owned())
        ]
    );
    let failed = failed(&[("m.mesh", &src)]);
    assert!(
        failed.diagnostics[0]
            .message
            .contains("`b` and the one at m.mesh:25 are both mesh-wide"),
        "{}",
        failed.diagnostics[0].message
    );
}

#[test]
fn reports_port_overrides_without_a_workload_target() {
    let src = with_base("peer_authentication p {\n  namespace default\n  port 9080 strict\n}\n");
    assert_eq!(codes(&src), [("E0143", "m.mesh:27:8".to_owned())]);
}

#[test]
fn reports_bad_and_duplicate_port_overrides() {
    let src = with_base("peer_authentication p {\n  workloads bare\n  port 0 strict\n  port 7 disable port 7 strict\n}\n");
    assert_eq!(
        codes(&src),
        [
            ("E0002", "m.mesh:27:8".to_owned()),
            // `bare` has no inbound port 7.
            ("W0147", "m.mesh:28:8".to_owned()),
            ("E0103", "m.mesh:28:23".to_owned())
        ]
    );
}

#[test]
fn warns_about_port_overrides_for_ports_the_workload_lacks() {
    let src = with_base("peer_authentication p { workloads reviews-v2 port 9443 strict }\n");
    assert_eq!(warnings(&src), [("W0147", "m.mesh:25:51".to_owned())]);
}

#[test]
fn attaches_authorization_policies_in_file_then_declaration_order() {
    let first = r#"authorization z-first { rule {} }
authorization a-second { action deny }
"#;
    let second = r#"authorization b-third { namespace prod action audit }
authorization c-fourth { workloads reviews-v1, reviews-v2 }
"#;
    let s = compile_ok(&[("a.mesh", BASE), ("b.mesh", first), ("c.mesh", second)]).snapshot;
    assert_eq!(
        policy_names(&s, "reviews-v1"),
        ["z-first", "a-second", "c-fourth"]
    );
    assert_eq!(
        policy_names(&s, "ratings"),
        ["z-first", "a-second", "b-third"]
    );
    let v1 = workload(&s, "reviews-v1");
    assert_eq!(v1.authorization[0].action, AuthzAction::Allow);
    // `rule {}` matches every request; no rule at all matches nothing.
    assert_eq!(v1.authorization[0].rules, [spec::AuthzRule::default()]);
    assert_eq!(v1.authorization[1].action, AuthzAction::Deny);
    assert!(v1.authorization[1].rules.is_empty());
    assert_eq!(
        workload(&s, "ratings").authorization[2].action,
        AuthzAction::Audit
    );
    let source = &v1.authorization[2].source;
    assert_eq!(
        (source.file.as_str(), source.line, source.column),
        ("c.mesh", 2, 1)
    );
}

#[test]
fn lowers_sources_operations_and_patterns() {
    let s = snapshot(&with_base(
        r#"authorization p {
  workloads reviews-v1
  rule {
    from {
      principals "cluster.local/ns/default/sa/productpage", "spiffe://td/ns/x/sa/y"
      not_principals "cluster.local/ns/x/*", "*/sa/admin", "*"
      request_principals "https://auth/*" not_request_principals "*@evil"
      namespaces "default" not_namespaces "kube-*"
      ip_blocks "198.18.0.0/15", "fd00::1" not_ip_blocks "198.18.0.9"
    }
    to {
      hosts "Reviews.Example.COM" not_hosts "*.Internal"
      methods "GET", "P*" not_methods "DELETE"
      paths "/reviews/*", "*.json", "/exact" not_paths "/admin"
      ports 9080 not_ports 9443
    }
  }
}
"#,
    ));
    let rule = &workload(&s, "reviews-v1").authorization[0].rules[0];
    let from = &rule.from[0];
    use StringPattern::{Any, Exact, Prefix, Suffix};
    let e = |s: &str| Exact(s.to_owned());
    let p = |s: &str| Prefix(s.to_owned());
    let x = |s: &str| Suffix(s.to_owned());
    assert_eq!(
        from.principals,
        [
            e("spiffe://cluster.local/ns/default/sa/productpage"),
            e("spiffe://td/ns/x/sa/y")
        ]
    );
    assert_eq!(
        from.not_principals,
        [p("spiffe://cluster.local/ns/x/"), x("/sa/admin"), Any]
    );
    assert_eq!(from.request_principals, [p("https://auth/")]);
    assert_eq!(from.not_request_principals, [x("@evil")]);
    assert_eq!(from.namespaces, [e("default")]);
    assert_eq!(from.not_namespaces, [p("kube-")]);
    let block = |s: &str| s.parse::<spec::AddressBlock>().unwrap();
    assert_eq!(from.ip_blocks, [block("198.18.0.0/15"), block("fd00::1")]);
    assert_eq!(from.not_ip_blocks, [block("198.18.0.9")]);
    let to = &rule.to[0];
    assert_eq!(to.hosts, [e("reviews.example.com")]);
    assert_eq!(to.not_hosts, [x(".internal")]);
    assert_eq!(to.methods, [e("GET"), p("P")]);
    assert_eq!(to.not_methods, [e("DELETE")]);
    assert_eq!(to.paths, [p("/reviews/"), x(".json"), e("/exact")]);
    assert_eq!(to.not_paths, [e("/admin")]);
    assert_eq!(
        (to.ports.as_slice(), to.not_ports.as_slice()),
        ([9080].as_slice(), [9443].as_slice())
    );
}

#[test]
fn parses_every_condition_key() {
    let s = snapshot(&with_base(
        r#"authorization p {
  workloads bare
  rule {
    when "request.headers[X-Token]" = "a"
    when "request.auth.claims[groups]" = "admin"
    when "request.auth.claims[nested][key]" != "x"
    when "request.auth.principal" = "iss/sub"
    when "request.auth.audiences" = "aud"
    when "request.auth.presenter" = "pres"
    when "source.principal" = "cluster.local/ns/a/sa/b"
    when "source.namespace" = "a"
    when "source.ip" = "10.0.0.1"
    when "destination.port" = "9080"
  }
}
"#,
    ));
    let when = &workload(&s, "bare").authorization[0].rules[0].when;
    let keys: Vec<&ConditionKey> = when.iter().map(|c| &c.key).collect();
    assert_eq!(
        keys,
        [
            &ConditionKey::RequestHeader("x-token".to_owned()),
            &ConditionKey::JwtClaim(vec!["groups".to_owned()]),
            &ConditionKey::JwtClaim(vec!["nested".to_owned(), "key".to_owned()]),
            &ConditionKey::RequestPrincipal,
            &ConditionKey::JwtAudience,
            &ConditionKey::JwtPresenter,
            &ConditionKey::SourcePrincipal,
            &ConditionKey::SourceNamespace,
            &ConditionKey::SourceIp,
            &ConditionKey::DestinationPort,
        ]
    );
    assert_eq!(when[2].not_values, [StringPattern::Exact("x".to_owned())]);
    assert!(when[2].values.is_empty());
    assert_eq!(
        when[6].values,
        [StringPattern::Exact(
            "spiffe://cluster.local/ns/a/sa/b".to_owned()
        )]
    );
}

#[test]
fn reports_malformed_authorization_values() {
    let src = with_base(
        r#"authorization p {
  rule {
    from { principals "cluster.local/*/sa/x" namespaces "" }
    to { methods "get" paths "reviews" ports 0, 70000 }
    when "request.header[x]" = "a"
    when "request.headers[]" = "a"
    when "request.auth.claims" = "a"
  }
}
"#,
    );
    assert_eq!(
        codes(&src),
        [
            ("E0144", "m.mesh:27:23".to_owned()),
            ("E0144", "m.mesh:27:57".to_owned()),
            ("E0144", "m.mesh:28:18".to_owned()),
            ("E0144", "m.mesh:28:30".to_owned()),
            ("E0002", "m.mesh:28:46".to_owned()),
            ("E0002", "m.mesh:28:49".to_owned()),
            ("E0145", "m.mesh:29:10".to_owned()),
            ("E0145", "m.mesh:30:10".to_owned()),
            ("E0145", "m.mesh:31:10".to_owned()),
        ]
    );
    let src = with_base(
        r#"authorization p {
  rule {
    when "destination.port" = "80", "0", "http"
    when "source.ip" != "10.0.0.1", "10.0.0.0/8", "fd00::/8", "10.0.0.0/33", "host"
    from { ip_blocks "10.0.0.0/8", "10.0.0.1/40" not_ip_blocks "*" }
  }
}
"#,
    );
    assert_eq!(
        codes(&src),
        [
            ("E0144", "m.mesh:27:37".to_owned()),
            ("E0144", "m.mesh:27:42".to_owned()),
            ("E0144", "m.mesh:28:63".to_owned()),
            ("E0144", "m.mesh:28:78".to_owned()),
            ("E0144", "m.mesh:29:36".to_owned()),
            ("E0144", "m.mesh:29:64".to_owned()),
        ]
    );
    let help = help(&with_base(
        "authorization p { rule { when \"source.user\" = \"a\" } }\n",
    ));
    assert!(help.contains("request.headers[NAME]"), "{help}");
    assert!(help.contains("destination.port"), "{help}");
}

#[test]
fn reports_unknown_workloads_with_a_suggestion() {
    let src = with_base("authorization p {\n  workloads reviews-v1, reveiws-v2\n}\n");
    assert_eq!(codes(&src), [("E0140", "m.mesh:26:25".to_owned())]);
    let help = help(&src);
    assert_eq!(
        help,
        "declared workloads: bare, ratings, reviews-v1, reviews-v2"
    );
    let many: String = (0..8)
        .map(|i| format!("workload reviews-{i} {{}}\n"))
        .collect();
    let src = format!(
        "{many}authentication a {{ workloads reviews-9x jwt {{ issuer \"i\" jwks \"j\" }} }}"
    );
    assert_eq!(self::help(&src), "did you mean `reviews-0`?");
}

#[test]
fn reports_named_workloads_outside_the_policy_namespace() {
    let src = with_base("peer_authentication p {\n  namespace default\n  workloads ratings\n}\n");
    assert_eq!(codes(&src), [("E0146", "m.mesh:27:13".to_owned())]);
}

#[test]
fn warns_about_policies_that_select_no_workload() {
    let src = with_base(
        "authorization p { namespace staging }\npeer_authentication q { namespace staging mode strict }\n",
    );
    assert_eq!(
        warnings(&src),
        [
            ("W0141", "m.mesh:25:15".to_owned()),
            ("W0141", "m.mesh:26:21".to_owned())
        ]
    );
}

#[test]
fn reports_duplicate_policy_names_per_namespace() {
    let src = with_base(
        "authorization p {}\nauthorization p {}\nauthorization p { namespace prod }\npeer_authentication p {}\n",
    );
    assert_eq!(codes(&src), [("E0103", "m.mesh:26:15".to_owned())]);
}

#[test]
fn attaches_jwt_rules_to_targeted_workloads() {
    let s = snapshot(&with_base(
        r#"authentication users {
  namespace default
  jwt { issuer "https://auth.example.com" audiences "reviews", "ratings" jwks "/etc/jwks.json" }
}
authentication more { workloads reviews-v1 jwt { issuer "b" jwks "/b.json" } }
"#,
    ));
    let jwt = &workload(&s, "reviews-v1").jwt;
    assert_eq!(jwt.len(), 2);
    assert_eq!(jwt[0].issuer, "https://auth.example.com");
    assert_eq!(jwt[0].audiences, ["reviews", "ratings"]);
    assert_eq!(jwt[0].jwks_file, "/etc/jwks.json");
    assert_eq!((jwt[0].source.line, jwt[0].source.column), (27, 3));
    assert_eq!(jwt[1].issuer, "b");
    assert_eq!(workload(&s, "reviews-v2").jwt.len(), 1);
    assert!(workload(&s, "ratings").jwt.is_empty());
}

#[test]
fn reports_empty_jwt_fields() {
    let src = with_base("authentication a { jwt { issuer \"\" audiences \"\" jwks \"\" } }\n");
    assert_eq!(
        codes(&src),
        [
            ("E0002", "m.mesh:25:33".to_owned()),
            ("E0002", "m.mesh:25:46".to_owned()),
            ("E0002", "m.mesh:25:54".to_owned()),
        ]
    );
}

#[test]
fn an_unknown_access_log_operator_is_an_error_at_its_column() {
    let src = with_base(
        r#"telemetry { access_log "%REQ(:PATH)% %BOGUS% %RESPONSE_CODE%" }
"#,
    );
    let line = src.lines().count();
    assert_eq!(codes(&src), [("E0148", format!("m.mesh:{line}:38"))]);
    let escaped = with_base(
        r#"workload t { telemetry { access_log "\t%DURATION(1)%" } }
"#,
    );
    // Escapes shift the value's offsets: the whole string is pointed at.
    assert_eq!(codes(&escaped), [("E0148", format!("m.mesh:{line}:37"))]);
}

#[test]
fn applies_mesh_telemetry_with_workload_overrides_per_field() {
    let s = snapshot(&with_base(
        r#"telemetry { access_log "%REQ(:PATH)%" trace_sampling 0.5% }
workload t1 { telemetry { access_log off } }
workload t2 { telemetry { trace_sampling 100% } }
workload t3 { telemetry { access_log "%RESPONSE_CODE%" trace_sampling 0% } }
workload t4 { telemetry { access_log json } }
"#,
    ));
    let t = |name: &str| workload(&s, name).telemetry.clone();
    let text = |format: &str| Some(spec::AccessLog::Text(format.to_owned()));
    assert_eq!(t("bare").access_log, text("%REQ(:PATH)%"));
    assert_eq!(t("bare").trace_sampling_per_million, 5_000);
    assert_eq!(t("t1").access_log, None);
    assert_eq!(t("t1").trace_sampling_per_million, 5_000);
    assert_eq!(t("t2").access_log, text("%REQ(:PATH)%"));
    assert_eq!(t("t2").trace_sampling_per_million, 1_000_000);
    assert_eq!(t("t3").access_log, text("%RESPONSE_CODE%"));
    assert_eq!(t("t3").trace_sampling_per_million, 0);
    assert_eq!(t("t4").access_log, Some(spec::AccessLog::Json));
    // The mesh-wide block is what a sidecar serving no workload applies.
    assert_eq!(s.telemetry.access_log, text("%REQ(:PATH)%"));
    assert_eq!(s.telemetry.trace_sampling_per_million, 5_000);
    // Without any telemetry block: no access log, no tracing.
    assert_eq!(
        snapshot(BASE).workloads[0].telemetry,
        spec::Telemetry::default()
    );
}

#[test]
fn reports_bad_telemetry() {
    let src = with_base(
        "telemetry { trace_sampling 100.5% }\ntelemetry {}\nworkload t { telemetry { access_log \"\" } }\n",
    );
    assert_eq!(
        codes(&src),
        [
            ("E0002", "m.mesh:25:28".to_owned()),
            ("E0103", "m.mesh:26:1".to_owned()),
            ("E0002", "m.mesh:27:37".to_owned()),
        ]
    );
}

/// Istio-style targets: a root-namespace policy (`namespace: None`) and label selectors.
#[test]
fn selects_workloads_by_labels_for_imported_policies() {
    let text = with_base("");
    let mut sources = Sources::new();
    let id = sources.add("m.mesh", text.clone());
    let mut file = crate::parse::parse_file(id, &text).expect("parses");
    let ident = |name: &str| ast::Ident {
        name: name.to_owned(),
        span: Span::new(0, 1),
    };
    let label = |k: &str, v: &str| ast::Label {
        key: ident(k),
        value: ast::Str {
            value: v.to_owned(),
            span: Span::new(0, 1),
        },
    };
    let authz = |name: &str, namespace: Option<&str>, selector: Option<Vec<ast::Label>>| {
        ast::Item::Authorization(ast::Authorization {
            keyword: Span::new(0, 1),
            name: ident(name),
            target: ast::PolicyTarget {
                namespace: namespace.map(ident),
                workloads: None,
                selector,
            },
            action: None,
            rules: Vec::new(),
            origin: ast::Origin::Istio,
        })
    };
    file.items.push(authz(
        "default/reviews",
        Some("default"),
        Some(vec![label("app", "reviews")]),
    ));
    file.items.push(authz("istio-system/all", None, None));
    file.items.push(authz(
        "default/v2",
        Some("default"),
        Some(vec![label("app", "reviews"), label("version", "v2")]),
    ));
    file.items
        .push(authz("prod/ns", Some("prod"), Some(Vec::new())));
    file.items
        .push(ast::Item::PeerAuthentication(ast::PeerAuthentication {
            keyword: Span::new(0, 1),
            name: ident("default/strict-v1"),
            target: ast::PolicyTarget {
                namespace: Some(ident("default")),
                workloads: None,
                selector: Some(vec![label("version", "v1")]),
            },
            mode: Some(ast::TlsMode {
                value: TlsMode::Strict,
                span: Span::new(0, 1),
            }),
            port_modes: vec![(
                ast::Number {
                    value: 9443,
                    span: Span::new(0, 1),
                },
                ast::TlsMode {
                    value: TlsMode::Disable,
                    span: Span::new(0, 1),
                },
            )],
            origin: ast::Origin::Istio,
        }));
    let (snapshot, diagnostics) = crate::lower::lower(&[file], &sources);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let s = snapshot.expect("lowers");
    assert_eq!(
        policy_names(&s, "reviews-v1"),
        ["default/reviews", "istio-system/all"]
    );
    assert_eq!(
        policy_names(&s, "reviews-v2"),
        ["default/reviews", "istio-system/all", "default/v2"]
    );
    assert_eq!(policy_names(&s, "ratings"), ["istio-system/all", "prod/ns"]);
    assert_eq!(policy_names(&s, "bare"), ["istio-system/all"]);
    let tls: Vec<TlsMode> = workload(&s, "reviews-v1")
        .inbound
        .iter()
        .map(|i| i.tls)
        .collect();
    assert_eq!(tls, [TlsMode::Strict, TlsMode::Disable]);
    assert_eq!(
        workload(&s, "reviews-v2").inbound[0].tls,
        TlsMode::Permissive
    );
}

/// `.mesh`/TOML methods must be upper-case (E0144); an imported Istio policy keeps any method
/// Istio accepts, as written.
#[test]
fn checks_method_case_only_for_mesh_policies() {
    let text = with_base("");
    let mut sources = Sources::new();
    let id = sources.add("m.mesh", text.clone());
    let file = crate::parse::parse_file(id, &text).expect("parses");
    let str_at = |value: &str, at: usize| ast::Str {
        value: value.to_owned(),
        span: Span::new(at, at + 1),
    };
    let authz = |origin: ast::Origin| {
        ast::Item::Authorization(ast::Authorization {
            keyword: Span::new(0, 1),
            name: ast::Ident {
                name: "default/p".to_owned(),
                span: Span::new(0, 1),
            },
            target: ast::PolicyTarget::default(),
            action: None,
            rules: vec![ast::AuthzRule {
                to: vec![ast::AuthzOperation {
                    methods: vec![str_at("method", 100), str_at("l7-*", 200)],
                    not_methods: vec![str_at("*-suffix-method", 300)],
                    ..ast::AuthzOperation::default()
                }],
                ..ast::AuthzRule::default()
            }],
            origin,
        })
    };
    let mut istio = file.clone();
    istio.items.push(authz(ast::Origin::Istio));
    let (snapshot, diagnostics) = crate::lower::lower(&[istio], &sources);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let s = snapshot.expect("lowers");
    let to = &workload(&s, "bare").authorization[0].rules[0].to[0];
    use StringPattern::{Exact, Prefix, Suffix};
    assert_eq!(
        to.methods,
        [Exact("method".to_owned()), Prefix("l7-".to_owned())]
    );
    assert_eq!(to.not_methods, [Suffix("-suffix-method".to_owned())]);

    let mut mesh = file;
    mesh.items.push(authz(ast::Origin::Mesh));
    let (_, diagnostics) = crate::lower::lower(&[mesh], &sources);
    let found: Vec<(Code, usize)> = diagnostics
        .iter()
        .map(|d| (d.code, d.span.map_or(0, |s| s.span.start)))
        .collect();
    assert_eq!(
        found,
        [
            (Code::InvalidAuthzValue, 100),
            (Code::InvalidAuthzValue, 200),
            (Code::InvalidAuthzValue, 300),
        ]
    );
}

#[test]
fn security_codes_are_stable() {
    use crate::diag::Severity;
    let all = [
        (Code::UnknownWorkload, "E0140"),
        (Code::PolicySelectsNothing, "W0141"),
        (Code::PeerAuthenticationConflict, "E0142"),
        (Code::PortModeWithoutWorkload, "E0143"),
        (Code::InvalidAuthzValue, "E0144"),
        (Code::UnknownConditionKey, "E0145"),
        (Code::WorkloadOutsideNamespace, "E0146"),
        (Code::UnusedPortMode, "W0147"),
    ];
    for (code, text) in all {
        assert_eq!(code.to_string(), text);
        assert_eq!(code.severity() == Severity::Warning, text.starts_with('W'));
    }
}

#[test]
fn per_workload_snapshots_keep_served_indexes_valid() {
    let s = snapshot(&with_base(
        "workload caller { serves ratings outbound reviews }\n",
    ));
    let pruned = crate::prune::for_workload(&s, "caller").expect("workload");
    pruned.validate().expect("valid");
    // `ratings` is not reachable from `caller`, so it is not in its snapshot.
    assert!(pruned.workloads[0].serves.is_empty());
    let pruned = crate::prune::for_workload(&s, "reviews-v2").expect("workload");
    pruned.validate().expect("valid");
    let served: Vec<&str> = pruned.workloads[0]
        .serves
        .iter()
        .map(|&i| pruned.services[i as usize].name.as_str())
        .collect();
    assert_eq!(served, ["ratings", "reviews"]);
}
