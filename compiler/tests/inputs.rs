//! What `meshc` reads, through the real binary: `kind: List` and JSON manifests, standard input
//! (`-`), and the directory scan that keeps only config files.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::TempDir;

fn meshc<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshc"))
        .args(args)
        .output()
        .expect("run meshc")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// `(code, line, column)` of every diagnostic of a `--format json` document.
fn positions(doc: &Value) -> Vec<(String, u64, u64)> {
    let diagnostics = doc["diagnostics"].as_array().expect("a diagnostics array");
    diagnostics
        .iter()
        .map(|d| {
            let code = d["code"].as_str().unwrap_or_default().to_owned();
            (
                code,
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// What `kubectl get serviceentries,virtualservices -o yaml` prints (server fields trimmed).
const KUBECTL_LIST: &str = "\
apiVersion: v1
items:
- apiVersion: networking.istio.io/v1
  kind: ServiceEntry
  metadata:
    name: reviews
    namespace: default
    resourceVersion: \"1234\"
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
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata:
    name: reviews
  spec:
    hosts:
    - reviews.example
    http:
    - timeout: 2s
      corsPolicy: {}
      route:
      - destination:
          host: reviews.example
kind: List
metadata:
  resourceVersion: \"\"
";

#[test]
fn a_kubectl_list_is_imported_item_by_item() {
    let dir = TempDir::new("inputs-list");
    let list = dir.write("list.yaml", KUBECTL_LIST);
    let output = meshc(&["check", path_str(&list), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The one warning is the item's `corsPolicy`, at its own line and column.
    assert_eq!(positions(&json(&output)), [("W0200".to_owned(), 28, 19)]);

    let out = dir.path("mesh.snap");
    let compiled = meshc(&["compile", path_str(&list), "-o", path_str(&out)]);
    assert_eq!(compiled.status.code(), Some(0), "{}", stderr(&compiled));
    assert!(
        stderr(&compiled).contains("compiled 1 services, 1 route rules, 0 workloads"),
        "{}",
        stderr(&compiled)
    );
}

/// What `kubectl get serviceentry reviews -o json` prints.
const KUBECTL_JSON: &str = r#"{
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {
        "name": "reviews",
        "namespace": "default"
    },
    "spec": {
        "hosts": [
            "reviews.example"
        ],
        "ports": [
            {
                "name": "http",
                "number": 99999,
                "protocol": "HTTP"
            }
        ],
        "resolution": "STATIC",
        "endpoints": [
            {
                "address": "10.0.0.1"
            }
        ]
    }
}
"#;

#[test]
fn a_json_manifest_is_imported_with_json_positions() {
    let dir = TempDir::new("inputs-json");
    let bad = dir.write("se.json", KUBECTL_JSON);
    let output = meshc(&["check", path_str(&bad), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let found = positions(&json(&output));
    assert!(found.contains(&("E0201".to_owned(), 15, 27)), "{found:?}");

    let good = dir.write("good.json", &KUBECTL_JSON.replace("99999", "9080"));
    let out = dir.path("mesh.snap");
    let compiled = meshc(&["compile", path_str(&good), "-o", path_str(&out)]);
    assert_eq!(compiled.status.code(), Some(0), "{}", stderr(&compiled));
    assert!(stderr(&compiled).contains("compiled 1 services"));
}
