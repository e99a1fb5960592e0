//! Drives `meshc check`, `meshc explain`, `meshc diff` and `meshc dump` through the real binary.

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
    // The end is exclusive: `v3` spans columns 16 and 17.
    assert_eq!(
        (d["end_line"].as_u64(), d["end_column"].as_u64()),
        (Some(4), Some(18))
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

/// `REVIEWS` with a subset that selects no endpoint (W0107).
fn reviews_with_empty_subset() -> String {
    REVIEWS.replace(
        "subset v2 { version = \"v2\" }",
        "subset v9 { version = \"v9\" }",
    )
}

#[test]
fn check_deny_warnings_fails_on_a_warning_unless_its_code_is_allowed() {
    let dir = TempDir::new("check-deny");
    let a = dir.write("a.mesh", &reviews_with_empty_subset());
    let a = path_str(&a);

    let denied = meshc(&["check", a, "--deny", "warnings"]);
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    let err = stderr(&denied);
    assert!(err.contains("warning[W0107]"), "{err}");
    assert!(
        err.ends_with("meshc: 0 errors, 1 warning (1 denied by --deny warnings)\n"),
        "{err}"
    );

    let allowed = meshc(&["check", a, "--deny", "warnings", "--allow", "W0107"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    let err = stderr(&allowed);
    assert!(
        err.contains("warning[W0107]"),
        "allowed warnings are still printed: {err}"
    );
    assert!(err.ends_with("meshc: 0 errors, 1 warning\n"), "{err}");

    let other = meshc(&["check", a, "--deny", "warnings", "--allow", "W0111"]);
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));

    let json_run = meshc(&["check", a, "--deny", "warnings", "--format", "json"]);
    assert_eq!(json_run.status.code(), Some(1));
    let doc = json(&json_run);
    assert_eq!(
        (doc["warnings"].as_u64(), doc["denied"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn allowing_an_unknown_or_error_code_is_a_usage_error_naming_it() {
    let dir = TempDir::new("check-allow-unknown");
    let a = dir.write("a.mesh", REVIEWS);
    for code in ["W9999", "E0102"] {
        let output = meshc(&["check", path_str(&a), "--deny", "warnings", "--allow", code]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(code), "{}", stderr(&output));
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn compile_deny_warnings_writes_no_snapshot_on_a_warning() {
    let dir = TempDir::new("compile-deny");
    let a = dir.write("a.mesh", &reviews_with_empty_subset());
    let out = dir.path("mesh.snap");
    let args = [
        "compile",
        path_str(&a),
        "-o",
        path_str(&out),
        "--deny",
        "warnings",
    ];
    let denied = meshc(&args);
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    assert!(
        stderr(&denied).ends_with(
            "meshc: 0 errors, 1 warning (1 denied by --deny warnings); no snapshot written\n"
        ),
        "{}",
        stderr(&denied)
    );
    assert!(!out.exists());

    let allowed = meshc(&[&args[..], &["--allow", "W0107"]].concat());
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert!(out.exists());
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
    // No retry policy: the sidecar default of one retry.
    assert_eq!(doc["retries"]["attempts"], 1);
    assert_eq!(doc["retries"]["default"], true);
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
fn explain_prints_the_route_and_the_sidecar_defaults() {
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
        "timeout: sidecar default (--upstream-timeout, 15s)".to_owned(),
        "retries: sidecar default (1 retry of idempotent requests that failed before any \
         response byte)"
            .to_owned(),
        "fault injection: none".to_owned(),
        "authorization: allow (no workload declares that it serves reviews, so no inbound \
         policy applies)"
            .to_owned(),
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

    // A request that is not one is a usage error.
    let output = meshc(&["explain", snap, "--request", "GET reviews"]);
    assert_eq!(output.status.code(), Some(2));
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

// ---- Format v2: snapshots edited in Rust and encoded with `spec::encode`, since no config
// syntax produces the new fields in this crate yet.

/// Decodes the snapshot at `path`, applies `edit`, and writes it to `name`.
fn edited(
    dir: &TempDir,
    path: &Path,
    name: &str,
    edit: impl FnOnce(&mut spec::Snapshot),
) -> PathBuf {
    let bytes = fs::read(path).expect("read snapshot");
    let (mut snapshot, _) = spec::decode(&bytes).expect("decode");
    edit(&mut snapshot);
    snapshot.validate().expect("the edited snapshot is valid");
    let out = dir.path(name);
    fs::write(&out, spec::encode(&snapshot)).expect("write snapshot");
    out
}

const CALLER: &str = "spiffe://cluster.local/ns/default/sa/productpage";

/// Adds workload `reviews-server` serving `reviews` on 9080 (strict mTLS) that denies DELETE
/// and allows only `productpage`, and gives rule `split` a timeout, retries and a fault.
fn secure_reviews(s: &mut spec::Snapshot) {
    use spec::{
        AuthorizationPolicy, AuthzAction, AuthzOperation, AuthzRule, AuthzSource, FaultDelay,
        FaultInjection, RetryOn, RetryPolicy, SourceLocation, StringPattern,
    };
    let (reviews, _) = s.service("reviews").expect("reviews");
    let table = s
        .routes
        .iter_mut()
        .find(|t| t.service == reviews)
        .expect("reviews route");
    let split = table
        .rules
        .iter_mut()
        .find(|r| r.name == "split")
        .expect("split");
    split.timeout_ms = Some(3000);
    split.retries = Some(RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: Some(1000),
        retry_on: RetryOn {
            gateway_error: true,
            ..RetryOn::default()
        },
        backoff_base_ms: 25,
        backoff_max_ms: 250,
        non_idempotent: false,
    });
    split.fault = Some(FaultInjection {
        delay: Some(FaultDelay {
            delay_ms: 100,
            per_million: 500_000,
        }),
        abort: None,
    });
    let source = |line| SourceLocation {
        file: "authz.mesh".into(),
        line,
        column: 1,
    };
    let mut server = s.workload("productpage").expect("productpage").clone();
    server.name = "reviews-server".into();
    server.identity = Some("spiffe://cluster.local/ns/default/sa/reviews".into());
    server.inbound[0].tls = spec::TlsMode::Strict;
    server.outbound = Vec::new();
    server.serves = vec![reviews];
    server.authorization = vec![
        AuthorizationPolicy {
            name: "no-delete".into(),
            action: AuthzAction::Deny,
            rules: vec![AuthzRule {
                to: vec![AuthzOperation {
                    methods: vec![StringPattern::Exact("DELETE".into())],
                    ..AuthzOperation::default()
                }],
                ..AuthzRule::default()
            }],
            source: source(2),
        },
        AuthorizationPolicy {
            name: "productpage-only".into(),
            action: AuthzAction::Allow,
            rules: vec![AuthzRule {
                from: vec![AuthzSource {
                    principals: vec![StringPattern::Exact(CALLER.into())],
                    ..AuthzSource::default()
                }],
                ..AuthzRule::default()
            }],
            source: source(8),
        },
    ];
    s.workloads.push(server);
}

#[test]
fn explain_a_v2_snapshot_shows_actions_and_the_deciding_policy() {
    let dir = TempDir::new("explain-v2");
    let base = dir.snapshot(
        "base.snap",
        &[
            ("reviews.mesh", REVIEWS),
            ("routes.mesh", ROUTES),
            ("w.mesh", WORKLOADS),
        ],
    );
    let snap = edited(&dir, &base, "v2.snap", secure_reviews);
    let snap = path_str(&snap);
    let ask = |method: &str, from: Option<&str>, extra: &[&str]| {
        let request = format!("{method} http://reviews:9080/api/books?id=7");
        let mut args = vec![
            "explain",
            snap,
            "--workload",
            "productpage",
            "--request",
            request.as_str(),
        ];
        if let Some(from) = from {
            args.extend(["--from", from]);
        }
        args.extend_from_slice(extra);
        meshc(&args)
    };
    let output = ask("GET", Some(CALLER), &["--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let doc = json(&output);
    assert_eq!(doc["route"]["rule"], "split");
    assert_eq!(doc["destinations"][1]["subset"], "v2");
    assert_eq!(doc["timeout_ms"], 3000);
    assert_eq!(doc["retries"]["attempts"], 2);
    assert_eq!(doc["retries"]["retry_on"][0], "gateway-error");
    assert_eq!(doc["fault"]["delay"]["percent"], 50.0);
    assert_eq!(doc["authz"]["decision"], "allow");
    assert_eq!(doc["authz"]["policy"], "productpage-only");
    assert_eq!(doc["authz"]["workload"], "reviews-server");

    let doc = json(&ask("DELETE", Some(CALLER), &["--json"]));
    assert_eq!(doc["authz"]["decision"], "deny");
    assert_eq!(doc["authz"]["policy"], "no-delete");
    assert_eq!(doc["authz"]["policy_source"], "authz.mesh:2");

    // Without --from there is no peer identity, and port 9080 is strict.
    let output = ask("GET", None, &[]);
    let text = stdout(&output);
    for line in [
        "from: (no peer identity)",
        "timeout: 3000ms (rule)",
        "retries: 2 attempts, 1000ms per try, on gateway-error, backoff 25ms..250ms, \
         idempotent methods only",
        "fault injection: delay 100ms for 50% of requests",
        "authorization: deny (no policy decided)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(
        text.contains("inbound port 9080 requires mutual TLS (strict)"),
        "{text}"
    );
}

#[test]
fn diff_reports_v2_changes_with_their_impact() {
    let dir = TempDir::new("diff-v2");
    let files = [
        ("reviews.mesh", REVIEWS),
        ("routes.mesh", ROUTES),
        ("w.mesh", WORKLOADS),
    ];
    let old = dir.snapshot("old.snap", &files);
    let v2 = edited(&dir, &old, "v2.snap", secure_reviews);
    let same = edited(&dir, &v2, "same.snap", |s| {
        // Policy order and source lines do not change behaviour.
        let server = s.workloads.iter_mut().find(|w| w.name == "reviews-server");
        let server = server.expect("reviews-server");
        server.authorization.reverse();
        server.authorization[0].source.line = 99;
    });
    let output = meshc(&["diff", path_str(&v2), path_str(&same)]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let new = edited(&dir, &v2, "new.snap", |s| {
        let server = s.workloads.iter_mut().find(|w| w.name == "reviews-server");
        let server = server.expect("reviews-server");
        server.inbound[0].tls = spec::TlsMode::Permissive;
        server.authorization.remove(0);
    });
    let output = meshc(&["diff", path_str(&v2), path_str(&new)]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "~ workload reviews-server inbound 9080 tls strict -> permissive [restarts listeners]\n\
         - workload reviews-server authorization no-delete (deny) [hot-swap]\n"
    );
}

#[test]
fn dump_prints_v2_snapshots_as_json_that_reads_back() {
    use spec::{
        ConditionKey, HashKey, LoadBalancer, PathMatch, RequestMatch, StringPattern, ValueMatch,
    };
    let dir = TempDir::new("dump-v2");
    let base = dir.snapshot(
        "base.snap",
        &[
            ("reviews.mesh", REVIEWS),
            ("routes.mesh", ROUTES),
            ("w.mesh", WORKLOADS),
        ],
    );
    let snap = edited(&dir, &base, "v2.snap", |s| {
        secure_reviews(s);
        let (reviews, _) = s.service("reviews").expect("reviews");
        s.services[reviews as usize].policy.load_balancer = LoadBalancer::RingHash {
            key: HashKey::Header("x-user".into()),
            minimum_ring_size: 1024,
        };
        let table = s
            .routes
            .iter_mut()
            .find(|t| t.service == reviews)
            .expect("reviews route");
        table.rules[0].matches.push(RequestMatch {
            path: Some(PathMatch::Regex("/v[0-9]+/.*".into())),
            method: Some(ValueMatch::Exact("GET".into())),
            headers: vec![spec::HeaderMatch {
                name: "x-debug".into(),
                value: ValueMatch::Present,
            }],
            query: Vec::new(),
        });
        let server = s.workloads.iter_mut().find(|w| w.name == "reviews-server");
        let server = server.expect("reviews-server");
        server.authorization[1].rules[0]
            .when
            .push(spec::AuthzCondition {
                key: ConditionKey::JwtClaim(vec!["groups".into()]),
                values: vec![StringPattern::Prefix("admin".into())],
                not_values: Vec::new(),
            });
    });
    let output = meshc(&["dump", path_str(&snap)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let doc = json(&output);
    // Enums are externally tagged: a unit variant is its name, a data variant a one-key map.
    let reviews = &doc["services"][1];
    assert_eq!(reviews["name"], "reviews");
    assert_eq!(
        reviews["policy"]["load_balancer"]["RingHash"]["key"]["Header"],
        "x-user"
    );
    assert_eq!(doc["services"][0]["policy"]["load_balancer"], "RoundRobin");
    let table = doc["routes"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["service"] == 1));
    let rule = &table.expect("the reviews route table")["rules"][0];
    assert_eq!(rule["matches"][1]["path"]["Regex"], "/v[0-9]+/.*");
    assert_eq!(rule["matches"][1]["method"]["Exact"], "GET");
    assert_eq!(rule["matches"][1]["headers"][0]["value"], "Present");
    let server = &doc["workloads"][1];
    assert_eq!(server["inbound"][0]["tls"], "Strict");
    assert_eq!(server["authorization"][0]["action"], "Deny");
    assert_eq!(
        server["authorization"][1]["rules"][0]["when"][0]["key"]["JwtClaim"][0],
        "groups"
    );
    assert_eq!(
        server["authorization"][1]["rules"][0]["from"][0]["principals"][0]["Exact"],
        CALLER
    );
    // The JSON is the snapshot: it reads back into the same value.
    let back: spec::Snapshot = serde_json::from_value(doc).expect("dump output reads back");
    let (original, _) = spec::decode(&fs::read(&snap).expect("read")).expect("decode");
    assert_eq!(back, original);
}
