use spec::Snapshot;

use crate::diag::Sources;
use crate::diff::diff;

const BASE: &str = r#"service reviews { port 9080 http endpoint 127.0.0.1:9081 }
service ratings { port 9080 http endpoint 127.0.0.1:9082 }
workload w {
  identity "spiffe://cluster.local/ns/default/sa/w"
  serves reviews
  inbound 9080 http -> 127.0.0.1:9090
  telemetry { trace_sampling 1% }
}
authorization a { action deny rule { to { paths "/admin" } } }
authorization b { rule {} }
authentication j { jwt { issuer "i" jwks "/j.json" } }
"#;

fn compile(text: &str) -> Snapshot {
    let mut sources = Sources::new();
    sources.add("m.mesh", text);
    match crate::compile_sources(sources) {
        Ok(compiled) => compiled.snapshot,
        Err(failed) => panic!("{}", failed.render()),
    }
}

fn lines_after(from: &str, to: &str) -> Vec<String> {
    assert!(BASE.contains(from), "`{from}` is not in the config");
    let new = compile(&BASE.replace(from, to));
    diff(&compile(BASE), &new)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn identical_security_config_has_no_changes() {
    assert!(diff(&compile(BASE), &compile(BASE)).is_empty());
}

#[test]
fn served_services_and_identities_are_reported() {
    assert_eq!(
        lines_after("serves reviews", "serves reviews, ratings"),
        [
            "~ workload w serves reviews -> ratings, reviews [hot-swap]",
            "~ service ratings identities (none) -> spiffe://cluster.local/ns/default/sa/w [hot-swap]",
        ]
    );
}

#[test]
fn mtls_mode_changes_are_reported() {
    assert_eq!(
        lines_after("127.0.0.1:9090", "127.0.0.1:9090 mtls strict"),
        ["~ workload w mtls port 9080 permissive -> strict [hot-swap]"]
    );
}

#[test]
fn authorization_changes_are_reported_by_name() {
    assert_eq!(
        lines_after(
            "authorization b { rule {} }",
            "authorization c { action audit }"
        ),
        [
            "- workload w authorization b [hot-swap]",
            "+ workload w authorization c (audit) [hot-swap]",
        ]
    );
    assert_eq!(
        lines_after("action deny", "action allow"),
        ["~ workload w authorization a action deny -> allow [hot-swap]"]
    );
    assert_eq!(
        lines_after("\"/admin\"", "\"/admin/*\""),
        ["~ workload w authorization a rules [hot-swap]"]
    );
    let swapped = BASE.replace(
        "authorization a { action deny rule { to { paths \"/admin\" } } }\nauthorization b { rule {} }",
        "authorization b { rule {} }\nauthorization a { action deny rule { to { paths \"/admin\" } } }",
    );
    let lines: Vec<String> = diff(&compile(BASE), &compile(&swapped))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        ["~ workload w authorization order a, b -> b, a [hot-swap]"]
    );
}

#[test]
fn jwt_and_telemetry_changes_are_reported() {
    assert_eq!(
        lines_after("issuer \"i\"", "issuer \"i2\" audiences \"x\""),
        [r#"~ workload w jwt "i" jwks "/j.json" -> "i2" audiences x jwks "/j.json" [hot-swap]"#]
    );
    assert_eq!(
        lines_after(
            "trace_sampling 1%",
            "trace_sampling 0.5% access_log \"%PATH%\""
        ),
        [
            r#"~ workload w telemetry access_log off, trace_sampling 1.0000% -> access_log "%PATH%", trace_sampling 0.5000% [hot-swap]"#
        ]
    );
}
