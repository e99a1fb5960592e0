use super::*;
use crate::ast::{Condition, ValueCondition};
use crate::diag::Sources;

/// Parses `src`, failing the test on a syntax error. Shared by the parser's submodule tests.
pub(super) fn parse(src: &str) -> File {
    match parse_file(FileId(0), src) {
        Ok(file) => file,
        Err(d) => panic!("unexpected syntax error: {d:?}"),
    }
}

/// The one item `src` declares.
pub(super) fn only_item(src: &str) -> Item {
    let mut file = parse(src);
    assert_eq!(file.items.len(), 1, "{:?}", file.items);
    file.items.remove(0)
}

/// The syntax error's `line:col` and message.
fn syntax_error(src: &str) -> (usize, usize, String) {
    let d = parse_file(FileId(0), src).expect_err("expected a syntax error");
    assert_eq!(d.code, Code::Syntax);
    let mut sources = Sources::new();
    sources.add("t.mesh", src);
    let (_, line, col) = d.location(&sources).expect("syntax errors have a span");
    (line, col, d.message)
}

fn text(src: &str, span: Span) -> &str {
    &src[span.start..span.end]
}

#[test]
fn parses_a_full_service() {
    let src = r#"
service reviews {
  namespace prod
  port 9080 http
  port 9443 grpc
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint [::1]:9082 { version = "v2", zone = "a", } weight 2
  endpoint 10.0.0.1:80
  subset v1 { version = "v1" }
}"#;
    let Item::Service(s) = only_item(src) else {
        panic!("not a service")
    };
    assert_eq!(s.name.name, "reviews");
    assert_eq!(text(src, s.keyword), "service");
    assert_eq!(s.namespaces[0].name, "prod");
    assert_eq!(s.ports.len(), 2);
    assert_eq!(s.ports[0].number.value, 9080);
    assert_eq!(s.ports[1].protocol.value, spec::Protocol::Grpc);
    assert_eq!(s.endpoints.len(), 3);
    assert_eq!(s.endpoints[1].address.text, "[::1]:9082");
    assert_eq!(text(src, s.endpoints[1].address.span), "[::1]:9082");
    assert_eq!(s.endpoints[1].labels.len(), 2);
    assert_eq!(s.endpoints[1].labels[1].key.name, "zone");
    assert_eq!(s.endpoints[1].labels[1].value.value, "a");
    assert_eq!(s.endpoints[1].weight.map(|w| w.value), Some(2));
    assert!(s.endpoints[2].labels.is_empty());
    assert_eq!(s.endpoints[2].weight, None);
    assert_eq!(s.subsets[0].name.name, "v1");
    assert_eq!(s.subsets[0].selector[0].value.value, "v1");
}

#[test]
fn parses_every_protocol() {
    for (word, protocol) in [
        ("http", spec::Protocol::Http),
        ("http2", spec::Protocol::Http2),
        ("grpc", spec::Protocol::Grpc),
        ("tcp", spec::Protocol::Tcp),
    ] {
        let src = format!("service s {{ port 1 {word} }}");
        let Item::Service(s) = only_item(&src) else {
            panic!("not a service")
        };
        assert_eq!(s.ports[0].protocol.value, protocol);
    }
}

#[test]
fn parses_rules_matches_and_destinations() {
    let src = r#"route reviews {
  rule canary {
    match header "X-Canary" = "true"
    match path prefix "/beta" and header "x-user" = "tester"
    to reviews/v2
  }
  rule split {
    match path exact "/"
    to reviews/v1 weight 90
    to reviews weight 10
  }
  rule all { to other }
}"#;
    let Item::Route(r) = only_item(src) else {
        panic!("not a route")
    };
    assert_eq!(r.service.name, "reviews");
    assert_eq!(r.rules.len(), 3);
    let canary = &r.rules[0];
    assert_eq!(text(src, canary.keyword), "rule");
    assert_eq!(canary.matches.len(), 2);
    assert_eq!(canary.matches[1].conditions.len(), 2);
    let Condition::Header {
        name,
        value: ValueCondition::Exact(value),
    } = &canary.matches[0].conditions[0]
    else {
        panic!("not a header condition")
    };
    assert_eq!(
        (name.value.as_str(), value.value.as_str()),
        ("X-Canary", "true")
    );
    let Condition::PathPrefix { value, span } = &canary.matches[1].conditions[0] else {
        panic!("not a prefix condition")
    };
    assert_eq!(value.value, "/beta");
    assert_eq!(text(src, *span), r#"path prefix "/beta""#);
    let dest = &canary.destinations[0];
    assert_eq!(dest.subset.as_ref().map(|s| s.name.as_str()), Some("v2"));
    assert_eq!(dest.weight, None);
    assert_eq!(text(src, dest.span), "to reviews/v2");
    let split = &r.rules[1];
    assert!(matches!(
        &split.matches[0].conditions[0],
        Condition::PathExact { value, .. } if value.value == "/"
    ));
    assert_eq!(split.destinations[0].weight.map(|w| w.value), Some(90));
    assert_eq!(split.destinations[1].subset, None);
    assert!(r.rules[2].matches.is_empty());
}

#[test]
fn parses_workloads() {
    let src = r#"workload productpage {
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> 127.0.0.1:9090
  inbound 9443 tcp->127.0.0.1:9091
  outbound reviews, ratings
  outbound details
}
workload bare {}"#;
    let file = parse(src);
    let Item::Workload(w) = &file.items[0] else {
        panic!("not a workload")
    };
    assert_eq!(
        w.identities[0].value,
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    assert_eq!(w.inbound.len(), 2);
    assert_eq!(w.inbound[1].target.text, "127.0.0.1:9091");
    let outbound: Vec<&str> = w
        .outbound
        .iter()
        .flatten()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(outbound, ["reviews", "ratings", "details"]);
    let Item::Workload(bare) = &file.items[1] else {
        panic!("not a workload")
    };
    assert_eq!(bare.outbound, None);
    assert!(bare.inbound.is_empty());
}

#[test]
fn ignores_comments_and_layout() {
    let compact = parse(r#"service a{port 1 http endpoint 1.2.3.4:5{k="v"}weight 3}# trailing"#);
    let spread = parse(
        "# header\nservice   a # name\n{\n port\n 1\n http\n endpoint 1.2.3.4:5 {\n k = \"v\" } weight 3 }\n",
    );
    let strip = |f: File| match f.items.into_iter().next() {
        Some(Item::Service(s)) => (
            s.ports.len(),
            s.endpoints[0].labels.len(),
            s.endpoints[0].weight.map(|w| w.value),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(strip(compact), strip(spread));
    assert!(parse("  # only a comment\n").items.is_empty());
}

#[test]
fn accepts_identifier_characters() {
    let Item::Service(s) = only_item("service my-svc_2.v1 { port 1 http }") else {
        panic!("not a service")
    };
    assert_eq!(s.name.name, "my-svc_2.v1");
}

#[test]
fn resolves_string_escapes() {
    let Item::Route(r) = only_item(r#"route r { rule x { match header "a" = "q\"b\\c" to r } }"#)
    else {
        panic!("not a route")
    };
    let Condition::Header {
        value: ValueCondition::Exact(value),
        ..
    } = &r.rules[0].matches[0].conditions[0]
    else {
        panic!("not a header condition")
    };
    assert_eq!(value.value, "q\"b\\c");
}

#[test]
fn saturates_huge_numbers_for_lowering_to_report() {
    let Item::Service(s) = only_item("service s { port 99999999999999999999999 http }") else {
        panic!("not a service")
    };
    assert_eq!(s.ports[0].number.value, u64::MAX);
}

#[test]
fn reports_unknown_protocol_where_it_is() {
    let (line, col, message) = syntax_error("service s {\n  port 9080 htp\n}");
    assert_eq!((line, col), (2, 13));
    assert_eq!(
        message,
        r#"expected a protocol (http, http2, grpc, tcp), found "htp""#
    );
}

#[test]
fn reports_unknown_top_level_keyword() {
    let (line, col, message) = syntax_error("# c\n\n  servce s {}");
    assert_eq!((line, col), (3, 3));
    assert_eq!(
        message,
        "expected `service`, `route`, `workload`, `authorization`, `authentication`, \
         `peer_authentication` or `telemetry`, found \"servce\""
    );
}

#[test]
fn reports_missing_brace_at_end_of_file() {
    let (line, col, message) = syntax_error("service s {\n  port 1 http\n");
    assert_eq!((line, col), (3, 1));
    assert!(message.ends_with("found end of file"), "{message}");
}

#[test]
fn reports_unknown_statement_in_service() {
    let (line, col, message) = syntax_error("service s {\n  prot 1 http\n}");
    assert_eq!((line, col), (2, 3));
    assert!(
        message.starts_with("expected `namespace`, `port`"),
        "{message}"
    );
}

#[test]
fn reports_a_port_that_is_not_a_number() {
    let (line, col, message) = syntax_error("service s { port 80x http }");
    assert_eq!((line, col), (1, 18));
    assert_eq!(message, r#"expected a port number, found "80x""#);
}

#[test]
fn reports_a_label_without_quotes() {
    let (line, col, message) = syntax_error("service s { subset v1 { version = v1 } }");
    assert_eq!((line, col), (1, 35));
    assert_eq!(
        message,
        r#"expected a label value in double quotes, found "v1""#
    );
}

#[test]
fn reports_missing_comma_between_labels() {
    let (_, col, message) = syntax_error(r#"service s { subset v1 { a = "1" b = "2" } }"#);
    assert_eq!(col, 33);
    assert_eq!(message, r#"expected `,` or `}`, found "b""#);
}

#[test]
fn reports_an_unterminated_string() {
    let (line, col, message) =
        syntax_error("route r {\n  rule x {\n    match path prefix \"/a\n  to r } }");
    assert_eq!((line, col), (3, 23));
    assert_eq!(message, "expected a closing `\"`, found end of line");
}

#[test]
fn reports_an_unknown_escape() {
    let (_, col, message) = syntax_error(r#"route r { rule x { match path exact "/\q" to r } }"#);
    assert_eq!(col, 39);
    assert!(message.ends_with(r#"found "\q""#), "{message}");
}

#[test]
fn requires_a_rule_in_a_route() {
    let (_, col, message) = syntax_error("route r { }");
    assert_eq!(col, 11);
    assert_eq!(
        message,
        r#"expected `rule` (a route needs at least one rule), found "}""#
    );
}

#[test]
fn requires_a_destination_in_a_rule() {
    let (line, col, message) =
        syntax_error("route r {\n  rule x {\n    match path prefix \"/\"\n  }\n}");
    assert_eq!((line, col), (4, 3));
    assert!(
        message.contains("a rule needs at least one `to`"),
        "{message}"
    );
}

#[test]
fn reports_a_bad_condition() {
    let (_, col, message) = syntax_error(r#"route r { rule x { match verb "GET" to r } }"#);
    assert_eq!(col, 26);
    assert!(message.starts_with("expected a condition"), "{message}");
    let (_, col, message) = syntax_error(r#"route r { rule x { match path suffix "/" to r } }"#);
    assert_eq!(col, 31);
    assert_eq!(
        message,
        r#"expected `exact`, `prefix` or `regex`, found "suffix""#
    );
}

#[test]
fn reports_missing_arrow_in_inbound() {
    let (_, col, message) = syntax_error("workload w { inbound 80 http 127.0.0.1:80 }");
    assert_eq!(col, 30);
    assert_eq!(message, r#"expected `->`, found "127.0.0.1:80""#);
}

#[test]
fn counts_columns_in_characters() {
    let (line, col, message) = syntax_error("# ünïcödé\nservice s { port 1 \"ü\" }");
    assert_eq!((line, col), (2, 20));
    assert_eq!(
        message,
        "expected a protocol (http, http2, grpc, tcp), found string \"ü\""
    );
    let (_, col, _) = syntax_error("service s { subset ü { } }");
    assert_eq!(col, 20);
}
