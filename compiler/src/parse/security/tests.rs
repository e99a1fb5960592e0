use crate::ast::{AccessLog, Item};
use crate::diag::{Code, FileId, Sources, Span};
use crate::parse::parse_file;
use crate::parse::tests::{only_item, parse};

/// The syntax error's `line:col`, message and help.
fn syntax_error(src: &str) -> (usize, usize, String) {
    parse_error(src, Code::Syntax)
}

/// The `line:col` and message of the parse error, which must have `code`.
fn parse_error(src: &str, code: Code) -> (usize, usize, String) {
    let d = parse_file(FileId(0), src).expect_err("expected a parse error");
    assert_eq!(d.code, code);
    let mut sources = Sources::new();
    sources.add("t.mesh", src);
    let (_, line, col) = d.location(&sources).expect("syntax errors have a span");
    (line, col, d.message)
}

fn text(src: &str, span: Span) -> &str {
    &src[span.start..span.end]
}

fn values(list: &[crate::ast::Str]) -> Vec<&str> {
    list.iter().map(|s| s.value.as_str()).collect()
}

#[test]
fn parses_workload_security_lines() {
    let src = r#"workload reviews-v1 {
  namespace prod
  labels { app = "reviews", version = "v1" }
  serves reviews, details
  serves ratings
  inbound 9080 http -> 127.0.0.1:9090 mtls strict
  inbound 9081 http -> 127.0.0.1:9091 mtls permissive
  inbound 9082 tcp -> 127.0.0.1:9092 mtls disable
  inbound 9083 http -> 127.0.0.1:9093
  telemetry { access_log "%REQ(:METHOD)%" trace_sampling 1% }
}"#;
    let Item::Workload(w) = only_item(src) else {
        panic!("not a workload")
    };
    assert_eq!(w.namespace.as_ref().map(|n| n.name.as_str()), Some("prod"));
    assert_eq!(w.labels.len(), 2);
    assert_eq!(w.labels[1].key.name, "version");
    assert_eq!(w.labels[1].value.value, "v1");
    let serves: Vec<&str> = w.serves.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(serves, ["reviews", "details", "ratings"]);
    let modes: Vec<Option<spec::TlsMode>> =
        w.inbound.iter().map(|i| i.mtls.map(|m| m.value)).collect();
    assert_eq!(
        modes,
        [
            Some(spec::TlsMode::Strict),
            Some(spec::TlsMode::Permissive),
            Some(spec::TlsMode::Disable),
            None
        ]
    );
    assert_eq!(text(src, w.inbound[0].mtls.unwrap().span), "strict");
    assert_eq!(w.inbound[0].target.text, "127.0.0.1:9090");
    let t = w.telemetry.expect("telemetry");
    assert_eq!(text(src, t.span), "telemetry");
    let Some(AccessLog::Text(format)) = t.access_log else {
        panic!("not a text format: {:?}", t.access_log)
    };
    assert_eq!(format.value, "%REQ(:METHOD)%");
    assert_eq!(t.trace_sampling.map(|p| p.per_million), Some(10_000));
}

#[test]
fn parses_a_mesh_wide_telemetry_block() {
    let src = "telemetry { access_log off trace_sampling 0.1% }";
    let Item::Telemetry(t) = only_item(src) else {
        panic!("not telemetry")
    };
    assert_eq!(t.access_log, Some(AccessLog::Off));
    let Item::Telemetry(json) = only_item("telemetry { access_log json }") else {
        panic!("not telemetry")
    };
    assert_eq!(json.access_log, Some(AccessLog::Json));
    let p = t.trace_sampling.expect("sampling");
    assert_eq!(p.per_million, 1_000);
    assert_eq!(text(src, p.span), "0.1%");
    let Item::Telemetry(empty) = only_item("telemetry {}") else {
        panic!("not telemetry")
    };
    assert_eq!((empty.access_log, empty.trace_sampling), (None, None));
}

#[test]
fn parses_percentages_to_millionths() {
    for (written, per_million) in [
        ("0%", 0),
        ("100%", 1_000_000),
        ("0.0001%", 1),
        ("12.5%", 125_000),
        ("150%", 1_500_000),
    ] {
        let src = format!("telemetry {{ trace_sampling {written} }}");
        let Item::Telemetry(t) = only_item(&src) else {
            panic!("not telemetry")
        };
        assert_eq!(t.trace_sampling.map(|p| p.per_million), Some(per_million));
    }
}

#[test]
fn parses_peer_authentication() {
    let src = "peer_authentication default-strict {
  namespace default
  workloads reviews-v1, ratings
  mode strict
  port 9080 disable
  port 9443 permissive
}
peer_authentication mesh {}";
    let file = parse(src);
    let Item::PeerAuthentication(p) = &file.items[0] else {
        panic!("not a peer authentication")
    };
    assert_eq!(text(src, p.keyword), "peer_authentication");
    assert_eq!(p.name.name, "default-strict");
    assert_eq!(
        p.target.namespace.as_ref().map(|n| n.name.as_str()),
        Some("default")
    );
    let workloads: Vec<&str> = p
        .target
        .workloads
        .iter()
        .flatten()
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(workloads, ["reviews-v1", "ratings"]);
    assert_eq!(p.mode.map(|m| m.value), Some(spec::TlsMode::Strict));
    let ports: Vec<(u64, spec::TlsMode)> = p
        .port_modes
        .iter()
        .map(|(n, m)| (n.value, m.value))
        .collect();
    assert_eq!(
        ports,
        [
            (9080, spec::TlsMode::Disable),
            (9443, spec::TlsMode::Permissive)
        ]
    );
    let Item::PeerAuthentication(more) =
        only_item("peer_authentication p {\n workloads a\n workloads b, c }")
    else {
        panic!("not a peer authentication")
    };
    let names: Vec<&str> = more
        .target
        .workloads
        .iter()
        .flatten()
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"], "`workloads` lines accumulate");
    let Item::PeerAuthentication(mesh) = &file.items[1] else {
        panic!("not a peer authentication")
    };
    assert_eq!(mesh.target, crate::ast::PolicyTarget::default());
    assert_eq!(mesh.mode, None);
}

#[test]
fn parses_authorization_policies() {
    let src = r#"authorization allow-productpage {
  namespace default
  workloads reviews-v1
  action deny
  rule {
    from { principals "cluster.local/ns/default/sa/productpage" namespaces "default" }
    from { not_principals "a", "b" request_principals "iss/sub" not_request_principals "x"
           not_namespaces "kube-system" }
    to { methods "GET", "HEAD" paths "/reviews/*" ports 9080, 9443 }
    to { hosts "a.com" not_hosts "b.com" not_methods "POST" not_paths "/admin" not_ports 1 }
    when "request.headers[x-token]" = "abc", "def"
    when "request.auth.claims[groups]" != "guests"
  }
  rule {}
}
authorization deny-all {}"#;
    let file = parse(src);
    let Item::Authorization(a) = &file.items[0] else {
        panic!("not an authorization")
    };
    assert_eq!(text(src, a.keyword), "authorization");
    assert_eq!(a.name.name, "allow-productpage");
    assert_eq!(a.action.map(|(a, _)| a), Some(spec::AuthzAction::Deny));
    assert_eq!(a.rules.len(), 2);
    let rule = &a.rules[0];
    assert_eq!(text(src, rule.span), "rule");
    assert_eq!(rule.from.len(), 2);
    assert_eq!(
        values(&rule.from[0].principals),
        ["cluster.local/ns/default/sa/productpage"]
    );
    assert_eq!(values(&rule.from[0].namespaces), ["default"]);
    assert_eq!(values(&rule.from[1].not_principals), ["a", "b"]);
    assert_eq!(values(&rule.from[1].request_principals), ["iss/sub"]);
    assert_eq!(values(&rule.from[1].not_request_principals), ["x"]);
    assert_eq!(values(&rule.from[1].not_namespaces), ["kube-system"]);
    assert_eq!(values(&rule.to[0].methods), ["GET", "HEAD"]);
    assert_eq!(values(&rule.to[0].paths), ["/reviews/*"]);
    let ports: Vec<u64> = rule.to[0].ports.iter().map(|p| p.value).collect();
    assert_eq!(ports, [9080, 9443]);
    assert_eq!(values(&rule.to[1].hosts), ["a.com"]);
    assert_eq!(values(&rule.to[1].not_hosts), ["b.com"]);
    assert_eq!(values(&rule.to[1].not_methods), ["POST"]);
    assert_eq!(values(&rule.to[1].not_paths), ["/admin"]);
    assert_eq!(rule.to[1].not_ports[0].value, 1);
    assert_eq!(rule.when.len(), 2);
    assert_eq!(rule.when[0].key.value, "request.headers[x-token]");
    assert_eq!(values(&rule.when[0].values), ["abc", "def"]);
    assert!(rule.when[0].not_values.is_empty());
    assert_eq!(
        text(src, rule.when[0].span),
        r#"when "request.headers[x-token]" = "abc", "def""#
    );
    assert_eq!(values(&rule.when[1].not_values), ["guests"]);
    assert!(rule.when[1].values.is_empty());
    assert_eq!(
        a.rules[1],
        crate::ast::AuthzRule {
            span: a.rules[1].span,
            ..Default::default()
        }
    );

    let Item::Authorization(empty) = &file.items[1] else {
        panic!("not an authorization")
    };
    assert!(empty.rules.is_empty());
    assert_eq!(empty.action, None);
    assert_eq!(empty.target, crate::ast::PolicyTarget::default());
}

#[test]
fn parses_authentication() {
    let src = r#"authentication users {
  workloads reviews-v1
  jwt { issuer "https://auth.example.com" audiences "reviews", "ratings" jwks "/etc/jwks.json" }
  jwt { jwks "/b.json" issuer "b" }
}"#;
    let Item::Authentication(a) = only_item(src) else {
        panic!("not an authentication")
    };
    assert_eq!(a.name.name, "users");
    assert_eq!(a.jwt.len(), 2);
    assert_eq!(text(src, a.jwt[0].span), "jwt");
    assert_eq!(a.jwt[0].issuer.value, "https://auth.example.com");
    assert_eq!(values(&a.jwt[0].audiences), ["reviews", "ratings"]);
    assert_eq!(a.jwt[0].jwks.value, "/etc/jwks.json");
    assert!(a.jwt[1].audiences.is_empty());
}

#[test]
fn reports_an_unknown_mtls_mode() {
    let (line, col, message) =
        syntax_error("workload w {\n  inbound 80 http -> 127.0.0.1:81 mtls strcit\n}");
    assert_eq!((line, col), (2, 40));
    assert_eq!(
        message,
        r#"expected an mTLS mode (strict, permissive, disable), found "strcit""#
    );
    let (line, col, _) = syntax_error("peer_authentication p { mode on }");
    assert_eq!((line, col), (1, 30));
    let (line, col, _) = syntax_error("peer_authentication p { port 80 }");
    assert_eq!((line, col), (1, 33));
}

#[test]
fn reports_repeated_single_settings() {
    for (src, at, what) in [
        (
            "workload w {\n namespace a\n namespace b }",
            (3, 2),
            "namespace",
        ),
        (
            "workload w { labels { a = \"b\" }\n labels {} }",
            (2, 2),
            "labels",
        ),
        (
            "workload w { telemetry {}\n telemetry {} }",
            (2, 2),
            "telemetry",
        ),
        (
            "telemetry { access_log off\n access_log \"x\" }",
            (2, 2),
            "access_log",
        ),
        (
            "telemetry { trace_sampling 1%\n trace_sampling 2% }",
            (2, 2),
            "trace_sampling",
        ),
        (
            "authorization a { action allow\n action deny }",
            (2, 2),
            "action",
        ),
        (
            "authorization a { namespace x\n namespace y }",
            (2, 2),
            "namespace",
        ),
        (
            "peer_authentication p { mode strict\n mode disable }",
            (2, 2),
            "mode",
        ),
        (
            "authentication a { jwt { issuer \"a\"\n issuer \"b\" jwks \"j\" } }",
            (2, 2),
            "issuer",
        ),
        (
            "authentication a { jwt { jwks \"a\"\n jwks \"b\" issuer \"j\" } }",
            (2, 2),
            "jwks",
        ),
    ] {
        let (line, col, message) = parse_error(src, Code::Duplicate);
        assert_eq!((line, col), at, "{src}");
        assert!(
            message.starts_with(&format!("`{what}` is set more than once")),
            "{src}: {message}"
        );
    }
}

#[test]
fn reports_bad_percentages() {
    let (line, col, message) = syntax_error("telemetry { trace_sampling 1 }");
    assert_eq!((line, col), (1, 28));
    assert!(message.starts_with("expected a percentage"), "{message}");
    let (_, col, message) = syntax_error("telemetry { trace_sampling 0.00001% }");
    assert_eq!(col, 28);
    assert_eq!(
        message,
        r#"expected a percentage (e.g. 10% or 0.5%, at most 4 decimals), found "0.00001%""#
    );
    let (_, col, _) = syntax_error("telemetry { trace_sampling 1.% }");
    assert_eq!(col, 28);
}

#[test]
fn reports_bad_telemetry_statements() {
    let (line, col, message) = syntax_error("telemetry {\n  acces_log off }");
    assert_eq!((line, col), (2, 3));
    assert_eq!(
        message,
        r#"expected `access_log`, `trace_sampling`, `trace_collector`, `metrics` or `}`, found "acces_log""#
    );
    let (_, col, message) = syntax_error("telemetry { access_log on }");
    assert_eq!(col, 24);
    assert!(
        message.starts_with("expected an access log format"),
        "{message}"
    );
}

#[test]
fn reports_bad_authorization_statements() {
    let (_, col, message) = syntax_error("authorization a { action permit }");
    assert_eq!(col, 26);
    assert_eq!(
        message,
        r#"expected an action (allow, deny, audit), found "permit""#
    );
    let (_, col, message) = syntax_error("authorization a { rules {} }");
    assert_eq!(col, 19);
    assert!(message.starts_with("expected `namespace`, `workloads`, `action`, `rule`"));
    let (_, col, message) = syntax_error("authorization a { rule { from { principal \"x\" } } }");
    assert_eq!(col, 33);
    assert!(
        message.starts_with("expected `principals`, `not_principals`"),
        "{message}"
    );
    let (_, col, message) = syntax_error("authorization a { rule { to { method \"GET\" } } }");
    assert_eq!(col, 31);
    assert!(
        message.starts_with("expected `hosts`, `not_hosts`"),
        "{message}"
    );
    let (_, col, message) = syntax_error("authorization a { rule { to { ports \"80\" } } }");
    assert_eq!(col, 37);
    assert!(message.starts_with("expected a port number"), "{message}");
    let (_, col, message) = syntax_error("authorization a { rule { when \"k\" == \"v\" } }");
    assert_eq!(col, 36);
    assert!(
        message.starts_with("expected a value in double quotes"),
        "{message}"
    );
    let (_, col, message) = syntax_error("authorization a { rule { when \"k\" ~ \"v\" } }");
    assert_eq!(col, 35);
    assert!(message.starts_with("expected `=` or `!=`"), "{message}");
    let (_, col, message) = syntax_error("authorization a { rule { when k = \"v\" } }");
    assert_eq!(col, 31);
    assert!(
        message.starts_with("expected an attribute name"),
        "{message}"
    );
    let (_, col, message) = syntax_error("authorization a { rule { deny } }");
    assert_eq!(col, 26);
    assert!(
        message.starts_with("expected `from`, `to`, `when` or `}`"),
        "{message}"
    );
    let (_, col, message) = syntax_error("authorization a { workloads }");
    assert_eq!(col, 29);
    assert!(message.starts_with("expected a workload name"), "{message}");
    let (_, col, _) = syntax_error("authorization a { rule { from { principals } } }");
    assert_eq!(col, 44);
}

#[test]
fn reports_incomplete_authentication() {
    let (_, col, message) = syntax_error("authentication a { workloads w }");
    assert_eq!(col, 32);
    assert!(
        message.contains("an authentication needs a `jwt` block"),
        "{message}"
    );
    let (_, col, message) = syntax_error("authentication a { jwt { jwks \"j\" } }");
    assert_eq!(col, 35);
    assert!(message.starts_with("expected `issuer`"), "{message}");
    let (_, col, message) = syntax_error("authentication a { jwt { issuer \"i\" } }");
    assert_eq!(col, 37);
    assert!(message.starts_with("expected `jwks`"), "{message}");
    let (_, col, message) =
        syntax_error("authentication a { jwt { issuer \"i\" jwks \"j\" aud \"x\" } }");
    assert_eq!(col, 46);
    assert!(
        message.starts_with("expected `issuer`, `audiences`, `jwks` or `}`"),
        "{message}"
    );
    let (_, col, message) = syntax_error("authentication a { jwt {} mode strict }");
    assert!(col > 0, "{message}");
}

#[test]
fn reports_unknown_workload_and_peer_statements() {
    let (line, col, message) = syntax_error("workload w {\n  serve reviews\n}");
    assert_eq!((line, col), (2, 3));
    assert!(
        message.starts_with(
            "expected `identity`, `inbound`, `outbound`, `outbound_traffic`, `serves`"
        ),
        "{message}"
    );
    let (_, col, message) = syntax_error("peer_authentication p { selector {} }");
    assert_eq!(col, 25);
    assert!(message.starts_with("expected `namespace`, `workloads`, `mode`, `port`"));
}
