//! What `meshc` reads, through the real binary: `kind: List` and JSON manifests, standard input
//! (`-`), and the directory scan that keeps only config files.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;
use common::TempDir;

fn meshc<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshc"))
        .args(args)
        .output()
        .expect("run meshc")
}

/// Runs meshc with `input` on its standard input.
fn meshc_with_stdin<S: AsRef<std::ffi::OsStr>>(args: &[S], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run meshc");
    let mut stdin = child.stdin.take().expect("a stdin pipe");
    // meshc may exit without reading (a usage error): a closed pipe is fine then.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("wait for meshc")
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

const SERVICE: &str = "service reviews { port 9080 http endpoint 127.0.0.1:9081 }\n";

/// A repository: config in `mesh/`, and the files a Rust project with CI has beside it.
fn repository(dir: &TempDir) {
    dir.write("mesh/reviews.mesh", SERVICE);
    dir.write("mesh/ratings.toml", "[[service]]\nname = \"ratings\"\nports = [{ number = 9090, protocol = \"http\" }]\nendpoints = [{ address = \"127.0.0.1:9091\" }]\n");
    dir.write(
        "Cargo.toml",
        "[package]\nname = \"app\"\n\n[dependencies]\n",
    );
    dir.write("rustfmt.toml", "max_width = 100\n");
    dir.write(
        "docker-compose.yml",
        "services:\n  web:\n    image: nginx\n",
    );
    dir.write("package.json", "{\"name\": \"app\"}\n");
    dir.write("README.md", "# app\n");
    // Broken config where the scan must not look.
    dir.write(".github/workflows/ci.yml", "apiVersion: v1\nkind: [\n");
    dir.write(".git/stash.mesh", "service {\n");
    dir.write("target/debug/out.mesh", "service {\n");
}

#[test]
fn a_directory_scan_reads_only_config_and_notes_each_skipped_file() {
    let dir = TempDir::new("inputs-scan");
    repository(&dir);
    let root = path_str(&dir.0);
    let output = meshc(&["check", root]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let err = stderr(&output);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("note[N0100]")).collect();
    let skipped = [
        "Cargo.toml",
        "docker-compose.yml",
        "package.json",
        "rustfmt.toml",
    ];
    assert_eq!(notes.len(), skipped.len(), "{err}");
    for (note, file) in notes.iter().zip(skipped) {
        assert!(
            note.starts_with(&format!("{root}/{file}:1:1: note[N0100]: skipped: ")),
            "{note}"
        );
    }
    assert!(
        err.ends_with("meshc: 0 errors, 0 warnings, 4 notes\n"),
        "{err}"
    );

    let output = meshc(&["check", root, "--format", "json", "--deny", "warnings"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "notes never fail: {}",
        stderr(&output)
    );
    let doc = json(&output);
    assert_eq!(
        (doc["notes"].as_u64(), doc["warnings"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(doc["diagnostics"][0]["severity"], "note");
    assert_eq!(doc["diagnostics"][0]["file"], format!("{root}/Cargo.toml"));

    let out = dir.path("mesh.snap");
    let compiled = meshc(&["compile", root, "-o", path_str(&out)]);
    assert_eq!(compiled.status.code(), Some(0), "{}", stderr(&compiled));
    assert!(
        stderr(&compiled).contains("compiled 2 services"),
        "{}",
        stderr(&compiled)
    );
}

#[test]
fn a_directory_with_nothing_but_skipped_files_is_an_error() {
    let dir = TempDir::new("inputs-none");
    dir.write("Cargo.toml", "[package]\nname = \"app\"\n");
    dir.write(".config/mesh.mesh", SERVICE);
    let output = meshc(&["check", path_str(&dir.0), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let codes: Vec<String> = positions(&json(&output))
        .into_iter()
        .map(|(c, _, _)| c)
        .collect();
    assert_eq!(codes, ["E0100", "N0100"]);
}

#[test]
fn a_file_named_on_the_command_line_is_read_even_if_a_scan_would_skip_it() {
    let dir = TempDir::new("inputs-named");
    let cargo = dir.write("Cargo.toml", "[package]\nname = \"app\"\n");
    let output = meshc(&["check", path_str(&cargo), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(positions(&json(&output)), [("E0001".to_owned(), 1, 2)]);
}

#[test]
fn standard_input_is_named_stdin_and_its_language_comes_from_its_content() {
    let dir = TempDir::new("inputs-stdin");
    let service = dir.write("reviews.mesh", SERVICE);
    let route = "route reviews {\n  rule all { to reviews/v9 }\n}\n";
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n  metadata: {name: r}\n  spec: {host: nope}\n";
    let json_doc = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "r"}, "spec": {"host": "nope"}}]}"#;
    let toml = "[[route]]\nservice = \"reviews\"\n[[route.rule]]\nname = \"all\"\nto = [{ service = \"reviews\", subset = \"v9\" }]\n";
    // Each input points its one diagnostic at `<stdin>`: E0102 from the DSL and TOML, W0203
    // (an undeclared DestinationRule host) from the YAML and JSON lists.
    let json_column = json_doc.find("\"nope\"").map_or(0, |i| i as u64 + 1);
    let cases = [
        (route, ("E0102", 2, 25)),
        (toml, ("E0102", 5, 39)),
        (list, ("W0203", 7, 16)),
        (json_doc, ("W0203", 1, json_column)),
    ];
    for (input, (code, line, column)) in cases {
        let output = meshc_with_stdin(
            &["check", path_str(&service), "-", "--format", "json"],
            input,
        );
        let doc = json(&output);
        let d = &doc["diagnostics"][0];
        assert_eq!(d["file"], "<stdin>", "{input}: {doc}");
        let found = (d["code"].as_str(), d["line"].as_u64(), d["column"].as_u64());
        assert_eq!(
            found,
            (Some(code), Some(line), Some(column)),
            "{input}: {doc}"
        );
    }
}

#[test]
fn standard_input_given_twice_is_a_usage_error() {
    let output = meshc_with_stdin(&["check", "-", "-"], SERVICE);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("`-` (standard input) is given more than once"));
}

#[test]
fn compile_and_explain_read_standard_input() {
    let dir = TempDir::new("inputs-stdin-compile");
    let out = dir.path("mesh.snap");
    let output = meshc_with_stdin(&["compile", "-", "-o", path_str(&out)], SERVICE);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(out.exists());

    let routed = format!("{SERVICE}route reviews {{\n  rule all {{ to reviews }}\n}}\n");
    let args = ["explain", "-", "--request", "GET http://reviews/", "--json"];
    let output = meshc_with_stdin(&args, &routed);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["route"]["source"], "<stdin>:3");
}
