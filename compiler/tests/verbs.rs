//! Drives `meshc check`, `meshc explain` and `meshc diff` through the real binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::TempDir;

const REVIEWS: &str = r#"service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" }
}
"#;

const ROUTES: &str = r#"route reviews {
  rule canary {
    match header "x-canary" = "true"
    to reviews/v2
  }
  rule split {
    match path prefix "/api"
    to reviews/v1 weight 90
    to reviews/v2 weight 10
  }
}
"#;

const WORKLOADS: &str = r#"service ratings { port 9090 http endpoint 127.0.0.1:9091 }
workload productpage {
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> 127.0.0.1:9090
  outbound reviews
}
"#;

impl TempDir {
    /// Writes the standard config and compiles it into `name`.
    fn snapshot(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let mut args: Vec<PathBuf> = vec!["compile".into()];
        for (file, text) in files {
            args.push(self.write(file, text));
        }
        let out = self.path(name);
        args.extend(["-o".into(), out.clone()]);
        let output = meshc(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        out
    }
}

fn meshc<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshc"))
        .args(args)
        .output()
        .expect("run meshc")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn check_json_lists_errors_with_positions_and_exits_1() {
    let dir = TempDir::new("check-error");
    let a = dir.write("reviews.mesh", REVIEWS);
    let bad = dir.write(
        "routes.mesh",
        &ROUTES.replace("reviews/v2\n", "reviews/v3\n"),
    );
    let output = meshc(&["check", path_str(&a), path_str(&bad), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let doc = json(&output);
    assert_eq!(doc["errors"], 1);
    assert_eq!(doc["warnings"], 0);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "E0102");
    assert_eq!(d["message"], "unknown subset `v3` of service `reviews`");
    assert_eq!(d["file"], path_str(&bad));
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(4), Some(16))
    );
    assert_eq!(d["help"], "declared subsets: v1, v2");
}

#[test]
fn check_json_gives_null_positions_for_unreadable_input() {
    let dir = TempDir::new("check-missing");
    let missing = dir.path("missing.mesh");
    let output = meshc(&["check", path_str(&missing), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let doc = json(&output);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "E0100");
    assert!(d["file"].is_null() && d["line"].is_null() && d["column"].is_null());
}

#[test]
fn check_passes_with_warnings_and_writes_no_snapshot() {
    let dir = TempDir::new("check-warning");
    let a = dir.write(
        "a.mesh",
        &REVIEWS.replace(
            "subset v2 { version = \"v2\" }",
            "subset v9 { version = \"v9\" }",
        ),
    );
    let output = meshc(&["check", path_str(&a), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let doc = json(&output);
    assert_eq!(
        (doc["errors"].as_u64(), doc["warnings"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(doc["diagnostics"][0]["severity"], "warning");
    assert_eq!(doc["diagnostics"][0]["code"], "W0107");

    let human = meshc(&["check", path_str(&a)]);
    assert_eq!(human.status.code(), Some(0));
    assert!(human.stdout.is_empty());
    let err = stderr(&human);
    assert!(
        err.starts_with(&format!("{}:6:10: warning[W0107]: ", a.display())),
        "{err}"
    );
    assert!(err.ends_with("meshc: 0 errors, 1 warning\n"), "{err}");
    let entries = fs::read_dir(&dir.0).expect("list dir").count();
    assert_eq!(entries, 1, "check wrote a file");
}

#[test]
fn compile_json_prints_diagnostics_on_stdout_and_the_summary_on_stderr() {
    let dir = TempDir::new("compile-json");
    let a = dir.write("reviews.mesh", REVIEWS);
    let bad = dir.write("routes.mesh", &ROUTES.replace("weight 10", "weight 20"));
    let out = dir.path("mesh.snap");
    let args = [
        "compile",
        path_str(&a),
        path_str(&bad),
        "-o",
        path_str(&out),
        "--format",
        "json",
    ];
    let output = meshc(&args);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["diagnostics"][0]["code"], "E0104");
    assert!(stderr(&output).contains("1 error, 0 warnings; no snapshot written"));

    let good = dir.write("routes.mesh", ROUTES);
    let output = meshc(&[
        "compile",
        path_str(&a),
        path_str(&good),
        "-o",
        path_str(&out),
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["errors"], 0);
    assert!(stderr(&output).starts_with("compiled 1 services"));
}

#[test]
fn explain_json_names_rule_source_and_destinations() {
    let dir = TempDir::new("explain-json");
    let a = dir.write("reviews.mesh", REVIEWS);
    let b = dir.write("routes.mesh", ROUTES);
    let output = meshc(&[
        "explain",
        path_str(&a),
        path_str(&b),
        "--request",
        "GET http://Reviews.default:9080/api/books?id=1",
        "--from",
        "spiffe://cluster.local/ns/default/sa/productpage",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let doc = json(&output);
    assert_eq!(doc["route"]["rule"], "split");
    assert_eq!(doc["route"]["source"], format!("{}:6", b.display()));
    assert_eq!(doc["destinations"][0]["service"], "reviews");
    assert_eq!(doc["destinations"][0]["subset"], "v1");
    assert_eq!(doc["destinations"][0]["weight"], 90);
    assert_eq!(doc["destinations"][1]["weight"], 10);
    assert!(doc["timeout_ms"].is_null());
    assert_eq!(doc["retries"]["attempts"], 0);
    assert_eq!(doc["authz"]["decision"], "allow");
    assert!(doc["authz"]["policy"].is_null());
    assert_eq!(
        doc["from"],
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
}

#[test]
fn explain_gives_the_same_answer_for_snapshot_and_source_input() {
    let dir = TempDir::new("explain-same");
    let snap = dir.snapshot(
        "mesh.snap",
        &[
            ("reviews.mesh", REVIEWS),
            ("routes.mesh", ROUTES),
            ("w.mesh", WORKLOADS),
        ],
    );
    let sources = [
        dir.path("reviews.mesh"),
        dir.path("routes.mesh"),
        dir.path("w.mesh"),
    ];
    let requests: [(&str, &[&str]); 3] = [
        ("GET http://reviews/api", &[]),
        ("GET http://reviews/", &["-H", "X-Canary: true"]),
        ("GET http://reviews/other", &[]),
    ];
    for (request, headers) in requests {
        let mut from_source: Vec<&str> = vec!["explain"];
        from_source.extend(sources.iter().map(|p| path_str(p)));
        let mut from_snapshot = vec!["explain", path_str(&snap)];
        for args in [&mut from_source, &mut from_snapshot] {
            args.extend(["--workload", "productpage", "--request", request]);
            args.extend_from_slice(headers);
        }
        let (a, b) = (meshc(&from_source), meshc(&from_snapshot));
        assert_eq!(a.status.code(), b.status.code(), "{request}");
        assert_eq!(stdout(&a), stdout(&b), "{request}");
        assert!(!a.stdout.is_empty(), "{request}: {}", stderr(&a));
    }
}

#[test]
fn explain_prints_the_route_and_the_policies_that_do_not_exist_yet() {
    let dir = TempDir::new("explain-human");
    let snap = dir.snapshot(
        "mesh.snap",
        &[("reviews.mesh", REVIEWS), ("routes.mesh", ROUTES)],
    );
    let output = meshc(&[
        "explain",
        path_str(&snap),
        "--request",
        "GET http://reviews/x",
        "-H",
        "x-canary: true",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let routes = dir.path("routes.mesh");
    for line in [
        format!(
            "route: service reviews, rule canary ({}:2)",
            routes.display()
        ),
        "  reviews/v2 100%".to_owned(),
        "timeout: default (meshd --upstream-timeout)".to_owned(),
        "retries: none".to_owned(),
        "fault injection: none".to_owned(),
        "authorization: allow (no policy)".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[test]
fn explain_without_a_route_says_why_and_exits_1() {
    let dir = TempDir::new("explain-none");
    let snap = dir.snapshot(
        "mesh.snap",
        &[
            ("reviews.mesh", REVIEWS),
            ("routes.mesh", ROUTES),
            ("w.mesh", WORKLOADS),
        ],
    );
    let snap = path_str(&snap);
    let output = meshc(&["explain", snap, "--request", "GET http://reviews/other"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("no rule of the route for service `reviews` matched GET /other"),
        "{text}"
    );
    assert!(text.contains("  canary ("), "{text}");
    assert!(text.contains("  split ("), "{text}");

    let output = meshc(&[
        "explain",
        snap,
        "--request",
        "GET http://details/",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let doc = json(&output);
    assert!(doc["route"].is_null());
    assert!(doc["error"]
        .as_str()
        .is_some_and(|e| e.contains("unknown host `details`")));

    let args = [
        "explain",
        snap,
        "--workload",
        "productpage",
        "--request",
        "GET http://ratings/",
    ];
    let output = meshc(&args);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("not in the outbound list of workload `productpage`"));

    let output = meshc(&[
        "explain",
        snap,
        "--workload",
        "nope",
        "--request",
        "GET http://reviews/",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("unknown workload `nope`; the snapshot has: productpage"),
        "{}",
        stderr(&output)
    );

    let output = meshc(&["explain", snap, "--request", "GET reviews"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is not http://HOST"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn diff_exits_0_for_equivalent_snapshots_and_1_with_changes() {
    let dir = TempDir::new("diff");
    let old = dir.snapshot(
        "old.snap",
        &[("reviews.mesh", REVIEWS), ("routes.mesh", ROUTES)],
    );
    // Same config, split differently across files: only rule sources change.
    let both = format!("{ROUTES}\n{REVIEWS}");
    let same = dir.snapshot("same.snap", &[("all.mesh", &both)]);
    let output = meshc(&["diff", path_str(&old), path_str(&same)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "{}", stdout(&output));

    let changed = ROUTES
        .replace("weight 90", "weight 50")
        .replace("weight 10", "weight 50");
    let new = dir.snapshot(
        "new.snap",
        &[
            ("reviews.mesh", REVIEWS),
            ("routes.mesh", &changed),
            ("w.mesh", WORKLOADS),
        ],
    );
    let output = meshc(&["diff", path_str(&old), path_str(&new)]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "+ service ratings [hot-swap]\n\
         ~ route reviews rule split destinations reviews/v1 90%, reviews/v2 10% -> \
         reviews/v1 50%, reviews/v2 50% [hot-swap]\n\
         + workload productpage [hot-swap]\n"
    );
}

#[test]
fn diff_exits_2_and_names_the_file_it_cannot_decode() {
    let dir = TempDir::new("diff-error");
    let good = dir.snapshot("good.snap", &[("reviews.mesh", REVIEWS)]);
    let bad = dir.write("bad.snap", "hello");
    let output = meshc(&["diff", path_str(&good), path_str(&bad)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("meshc: {}: ", bad.display())),
        "{err}"
    );
    let missing = dir.path("missing.snap");
    let output = meshc(&["diff", path_str(&missing), path_str(&good)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("missing.snap"));
}
