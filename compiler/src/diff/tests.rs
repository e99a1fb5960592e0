use spec::Snapshot;

use super::diff;
use crate::diag::Sources;

const REVIEWS: &str = r#"service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" }
}
"#;

const ROUTES: &str = r#"route reviews {
  rule split {
    match path prefix "/"
    to reviews/v1 weight 90
    to reviews/v2 weight 10
  }
}
"#;

const WORKLOAD: &str = r#"workload productpage {
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> 127.0.0.1:9090
  outbound reviews
}
"#;

fn compile(files: &[(&str, &str)]) -> Snapshot {
    let mut sources = Sources::new();
    for (path, text) in files {
        sources.add(*path, *text);
    }
    match crate::compile_sources(sources) {
        Ok(compiled) => compiled.snapshot,
        Err(failed) => panic!("{}", failed.render()),
    }
}

fn base() -> Snapshot {
    compile(&[
        ("a.mesh", REVIEWS),
        ("b.mesh", ROUTES),
        ("c.mesh", WORKLOAD),
    ])
}

/// The diff from the base config to one where `from` is replaced by `to` in all files.
fn lines_after(from: &str, to: &str) -> Vec<String> {
    let edit = |t: &str| t.replace(from, to);
    let (a, b, c) = (edit(REVIEWS), edit(ROUTES), edit(WORKLOAD));
    assert!(
        a != REVIEWS || b != ROUTES || c != WORKLOAD,
        "`{from}` is not in the config"
    );
    let new = compile(&[("a.mesh", &a), ("b.mesh", &b), ("c.mesh", &c)]);
    diff(&base(), &new)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn identical_snapshots_have_no_changes() {
    assert!(diff(&base(), &base()).is_empty());
}

#[test]
fn reordered_and_relocated_input_is_equivalent() {
    // Different files, different order, rules on other lines: only sources differ.
    let moved = format!("\n\n{WORKLOAD}{ROUTES}");
    let other = compile(&[("z/all.mesh", &moved), ("y.mesh", REVIEWS)]);
    assert_ne!(other, base());
    assert!(diff(&base(), &other).is_empty());
    assert!(diff(&other, &base()).is_empty());
}

#[test]
fn adding_a_service_before_the_others_is_one_line() {
    // `details` sorts before `reviews`, so every service index shifts by one.
    let new = compile(&[
        ("a.mesh", REVIEWS),
        ("b.mesh", ROUTES),
        ("c.mesh", WORKLOAD),
        (
            "d.mesh",
            "service details { port 80 http endpoint 127.0.0.1:9000 }",
        ),
    ]);
    let lines: Vec<String> = diff(&base(), &new)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(lines, ["+ service details [hot-swap]"]);
    let lines: Vec<String> = diff(&new, &base())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(lines, ["- service details [drains connections]"]);
}

#[test]
fn endpoint_changes_are_keyed_by_address() {
    assert_eq!(
        lines_after(
            "endpoint 127.0.0.1:9081 { version = \"v1\" }",
            "endpoint 127.0.0.1:9081 { version = \"v1\" } weight 2"
        ),
        ["~ endpoint reviews 127.0.0.1:9081 weight 1 -> 2 [hot-swap]"]
    );
    assert_eq!(
        lines_after(
            "  endpoint 127.0.0.1:9082 { version = \"v2\" }\n",
            "  endpoint 127.0.0.1:9082 { version = \"v2\" }\n  endpoint 127.0.0.1:9083 { version = \"v2\" }\n"
        ),
        ["+ endpoint reviews 127.0.0.1:9083 [hot-swap]"]
    );
    assert_eq!(
        lines_after(
            "  endpoint 127.0.0.1:9082 { version = \"v2\" }\n",
            "  endpoint 127.0.0.1:9083 { version = \"v2\" }\n"
        ),
        [
            "- endpoint reviews 127.0.0.1:9082 [drains connections]",
            "+ endpoint reviews 127.0.0.1:9083 [hot-swap]"
        ]
    );
    assert_eq!(
        lines_after(
            "endpoint 127.0.0.1:9081 { version = \"v1\" }",
            "endpoint 127.0.0.1:9081 { version = \"v1\", zone = \"a\" }"
        ),
        [
            r#"~ endpoint reviews 127.0.0.1:9081 labels {version = "v1"} -> {version = "v1", zone = "a"} [hot-swap]"#
        ]
    );
}

#[test]
fn endpoint_order_does_not_matter() {
    let swapped = REVIEWS.replace(
        "  endpoint 127.0.0.1:9081 { version = \"v1\" }\n  endpoint 127.0.0.1:9082 { version = \"v2\" }\n",
        "  endpoint 127.0.0.1:9082 { version = \"v2\" }\n  endpoint 127.0.0.1:9081 { version = \"v1\" }\n",
    );
    assert_ne!(swapped, REVIEWS);
    let new = compile(&[
        ("a.mesh", &swapped),
        ("b.mesh", ROUTES),
        ("c.mesh", WORKLOAD),
    ]);
    assert!(diff(&base(), &new).is_empty());
}

#[test]
fn subset_changes_are_reported() {
    assert_eq!(
        lines_after(
            "subset v2 { version = \"v2\" }",
            "subset v2 { version = \"v1\" }"
        ),
        [r#"~ subset reviews/v2 selector {version = "v2"} -> {version = "v1"} [hot-swap]"#]
    );
    assert_eq!(
        lines_after(
            "subset v2 { version = \"v2\" }",
            "subset v2 { version = \"v2\" }\n  subset all { version = \"v1\" }"
        ),
        ["+ subset reviews/all [hot-swap]"]
    );
}

#[test]
fn route_weight_changes_show_both_splits() {
    assert_eq!(
        lines_after(
            "to reviews/v1 weight 90\n    to reviews/v2 weight 10",
            "to reviews/v1 weight 50\n    to reviews/v2 weight 50"
        ),
        ["~ route reviews rule split destinations reviews/v1 90%, reviews/v2 10% -> reviews/v1 50%, reviews/v2 50% [hot-swap]"]
    );
}

#[test]
fn added_removed_reordered_and_rematched_rules_are_reported() {
    assert_eq!(
        lines_after(
            "route reviews {\n",
            "route reviews {\n  rule canary { match header \"x-canary\" = \"1\" to reviews/v2 }\n"
        ),
        ["+ route reviews rule canary (before split) [hot-swap]"]
    );
    assert_eq!(
        lines_after(
            "    to reviews/v2 weight 10\n  }\n",
            "    to reviews/v2 weight 10\n  }\n  rule rest { to reviews }\n"
        ),
        ["+ route reviews rule rest (after split) [hot-swap]"]
    );
    assert_eq!(
        lines_after("match path prefix \"/\"", "match path exact \"/\""),
        [r#"~ route reviews rule split matches path prefix "/" -> path exact "/" [hot-swap]"#]
    );
    // Disjoint matches: two catch-alls in a row would make the second unreachable (E0110).
    let a = "  rule a { match path prefix \"/a\" to reviews }\n";
    let b = "  rule b { match path prefix \"/b\" to reviews }\n";
    let two = format!("route reviews {{\n{a}{b}}}\n");
    let swapped = format!("route reviews {{\n{b}{a}}}\n");
    let old = compile(&[("a.mesh", REVIEWS), ("b.mesh", &two)]);
    let new = compile(&[("a.mesh", REVIEWS), ("b.mesh", &swapped)]);
    let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["~ route reviews rule order a, b -> b, a [hot-swap]"]
    );
    let one = format!("route reviews {{\n{a}}}\n");
    let new = compile(&[("a.mesh", REVIEWS), ("b.mesh", &one)]);
    let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["- route reviews rule b [hot-swap]"]);
}

#[test]
fn match_and_condition_order_does_not_matter() {
    let a = "route reviews { rule r {\n match header \"x\" = \"1\" and path prefix \"/a\"\n match path exact \"/b\"\n to reviews } }";
    let b = "route reviews { rule r {\n match path exact \"/b\"\n match path prefix \"/a\" and header \"x\" = \"1\"\n to reviews } }";
    let old = compile(&[("a.mesh", REVIEWS), ("b.mesh", a)]);
    let new = compile(&[("a.mesh", REVIEWS), ("b.mesh", b)]);
    assert!(diff(&old, &new).is_empty());
}

#[test]
fn workload_port_and_identity_changes_restart_listeners() {
    assert_eq!(
        lines_after("inbound 9080 http", "inbound 9081 http"),
        ["~ workload productpage inbound 9080/http (to 127.0.0.1:9090) -> 9081/http (to 127.0.0.1:9090) [restarts listeners]"]
    );
    assert_eq!(
        lines_after("-> 127.0.0.1:9090", "-> 127.0.0.1:9091"),
        ["~ workload productpage inbound 9080/http (to 127.0.0.1:9090) -> 9080/http (to 127.0.0.1:9091) [hot-swap]"]
    );
    assert_eq!(
        lines_after("sa/productpage", "sa/other"),
        [
            r#"~ workload productpage identity "spiffe://cluster.local/ns/default/sa/productpage" -> "spiffe://cluster.local/ns/default/sa/other" [restarts listeners]"#
        ]
    );
    // Without an `outbound` line the workload may call every service: here, still `reviews`.
    assert!(lines_after("  outbound reviews\n", "").is_empty());
}

#[test]
fn service_namespace_change_moves_its_hosts() {
    let lines = lines_after(
        "service reviews {\n",
        "service reviews {\n  namespace prod\n",
    );
    assert_eq!(
        lines[0],
        "~ service reviews namespace default -> prod [hot-swap]"
    );
    assert!(lines.contains(&"- host reviews.default (service reviews) [hot-swap]".to_owned()));
    assert!(lines.contains(&"+ host reviews.prod.svc (service reviews) [hot-swap]".to_owned()));
    assert_eq!(lines.len(), 7, "{lines:#?}");
}

#[test]
fn reports_traffic_policy_and_rule_action_changes() {
    let old = compile(&[(
        "m.mesh",
        r#"service r { port 80 http endpoint 127.0.0.1:80 { v = "1" } subset a { v = "1" } }
service m { port 80 http endpoint 127.0.0.1:81 }
route r { rule x { match method GET to r mirror m } }"#,
    )]);
    let new = compile(&[(
        "m.mesh",
        r#"service m { port 80 http endpoint 127.0.0.1:81 }
service r {
  port 80 http endpoint 127.0.0.1:80 { v = "1" }
  subset a { v = "1" } policy { load_balancer random }
  policy { pool { max_connections 5 } }
}
route r { rule x { match method POST and query "q" present to r mirror r/a 50% timeout 2s } }"#,
    )]);
    let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("~ service r policy"), "{lines:#?}");
    assert!(has("~ subset r/a policy"), "{lines:#?}");
    assert!(
        has(
            r#"~ route r rule x matches method Exact("GET") -> method Exact("POST") and query "q" Present"#
        ),
        "{lines:#?}"
    );
    assert!(
        has("~ route r rule x timeout_ms null -> 2000 [hot-swap]"),
        "{lines:#?}"
    );
    assert!(
        has("~ route r rule x mirror m 1000000/1000000 -> r/a 500000/1000000"),
        "{lines:#?}"
    );
    // Nothing else changed.
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(diff(&new, &new).is_empty());
}
