//! The shapes Kubernetes tools print: `kind: List` (`kubectl get -o yaml`) and JSON manifests
//! (`kubectl get -o json`), through `compile_sources` so the lowering runs too.

use crate::diag::{Code, Sources};
use crate::{compile_sources, Compiled, Diagnostic, Failed};

fn compile(path: &str, text: &str) -> Result<Compiled, Failed> {
    let mut sources = Sources::new();
    sources.add(path, text);
    compile_sources(sources)
}

/// `(code, line, column)` of every diagnostic.
fn positions(diagnostics: &[Diagnostic], sources: &Sources) -> Vec<(Code, usize, usize)> {
    diagnostics
        .iter()
        .map(|d| {
            let (_, line, column) = d.location(sources).unwrap_or_default();
            (d.code, line, column)
        })
        .collect()
}

/// 1-based line and column of the first occurrence of `needle` in `text` (ASCII text).
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).expect("needle is in the text");
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    (
        text[..offset].matches('\n').count() + 1,
        offset - line_start + 1,
    )
}

/// What `kubectl get serviceentries,virtualservices -o yaml` prints, server fields included.
const KUBECTL_LIST_YAML: &str = r#"apiVersion: v1
items:
- apiVersion: networking.istio.io/v1
  kind: ServiceEntry
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry"}
    creationTimestamp: "2024-05-01T10:00:00Z"
    generation: 1
    name: reviews
    namespace: default
    resourceVersion: "1234"
    uid: 5f0c1a9e-0000-4000-8000-000000000001
  spec:
    hosts:
    - reviews.example
    ports:
    - name: http
      number: 9080
      protocol: HTTP
    resolution: STATIC
    endpoints:
    - address: 10.0.0.1
      labels:
        version: v1
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata:
    name: reviews
    namespace: default
  spec:
    hosts:
    - reviews.example
    http:
    - corsPolicy: {}
      route:
      - destination:
          host: reviews.example
kind: List
metadata:
  resourceVersion: ""
"#;

#[test]
fn imports_each_item_of_a_kubectl_list_at_its_own_position() {
    let compiled = compile("list.yaml", KUBECTL_LIST_YAML).unwrap();
    assert!(compiled.snapshot.service("reviews.example").is_some());
    assert_eq!(compiled.snapshot.routes.len(), 1);
    let (line, column) = position_of(KUBECTL_LIST_YAML, "corsPolicy");
    assert_eq!(
        positions(&compiled.warnings, &compiled.sources),
        [(
            Code::IstioUnsupportedField,
            line,
            column + "corsPolicy: ".len()
        )]
    );
}

#[test]
fn a_list_item_replacing_an_earlier_item_is_reported_at_the_later_one() {
    let yaml = "\
apiVersion: v1
kind: List
items:
- {apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: a}, spec: {}}
- {apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: a}, spec: {}}
";
    let compiled = compile("list.yaml", yaml).unwrap();
    let found = positions(&compiled.warnings, &compiled.sources);
    let second_item = yaml.lines().nth(4).expect("five lines");
    let column = second_item.find("{name: a}").expect("a name") + "{name: ".len() + 1;
    assert!(
        found.contains(&(Code::IstioReplaced, 5, column)),
        "{found:?}"
    );
}

#[test]
fn a_malformed_list_is_reported_and_its_unknown_fields_too() {
    let yaml = "apiVersion: v1\nkind: List\nextra: 1\nitems: {a: b}\n";
    let failed = compile("list.yaml", yaml).unwrap_err();
    let found = positions(&failed.diagnostics, &failed.sources);
    assert_eq!(
        found,
        [(Code::IstioUnknownField, 3, 1), (Code::IstioSchema, 4, 8)]
    );
}

#[test]
fn an_empty_list_and_a_nested_list_import_their_items() {
    let yaml = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: networking.istio.io/v1, kind: Gateway, metadata: {name: g}, spec: {}}
---
{apiVersion: v1, kind: List, items: []}
";
    let compiled = compile("list.yaml", yaml).unwrap();
    let found = positions(&compiled.warnings, &compiled.sources);
    let (line, column) = position_of(yaml, "Gateway");
    assert_eq!(found, [(Code::IstioOutOfScope, line, column)]);
}

/// What `kubectl get serviceentry reviews -o json` prints (four-space indentation).
const KUBECTL_JSON: &str = r#"{
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {
        "name": "reviews",
        "namespace": "default",
        "resourceVersion": "1234"
    },
    "spec": {
        "hosts": [
            "reviews.example"
        ],
        "ports": [
            {
                "name": "http",
                "number": 9080,
                "protocol": "HTTP"
            }
        ],
        "resolution": "STATIC",
        "endpoints": [
            {
                "address": "10.0.0.1",
                "labels": {
                    "version": 1
                }
            }
        ]
    }
}
"#;

#[test]
fn imports_a_json_manifest_with_positions_in_the_json_text() {
    let failed = compile("se.json", KUBECTL_JSON).unwrap_err();
    let (line, column) = position_of(KUBECTL_JSON, "1\n");
    assert_eq!(
        positions(&failed.diagnostics, &failed.sources),
        [(Code::IstioSchema, line, column)]
    );
    let fixed = KUBECTL_JSON.replace("\"version\": 1", "\"version\": \"v1\"");
    let compiled = compile("se.json", &fixed).unwrap();
    assert!(compiled.snapshot.service("reviews.example").is_some());
    assert!(
        compiled.warnings.is_empty(),
        "{}",
        compiled.render_warnings()
    );
}

#[test]
fn imports_a_compact_json_list_and_tab_indented_json() {
    let compact = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"r"},"spec":{"hosts":["r.example"],"ports":[{"number":80,"name":"http","protocol":"HTTP"}],"resolution":"STATIC","endpoints":[{"address":"10.0.0.1"}],"bogus":true}}],"metadata":{"resourceVersion":""}}"#;
    let compiled = compile("list.json", compact).unwrap();
    assert!(compiled.snapshot.service("r.example").is_some());
    let (_, column) = position_of(compact, "\"bogus\"");
    assert_eq!(
        positions(&compiled.warnings, &compiled.sources),
        [(Code::IstioUnknownField, 1, column)]
    );
    let tabs = KUBECTL_JSON
        .replace("    ", "\t")
        .replace("\"version\": 1", "\"version\": \"v1\"");
    let compiled = compile("se.json", &tabs).unwrap();
    assert!(compiled.snapshot.service("reviews.example").is_some());
}
