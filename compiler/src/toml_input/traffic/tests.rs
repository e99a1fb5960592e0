use spec::Snapshot;

use crate::compile_sources;
use crate::diag::Sources;

const DSL: &str = r#"
service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" } policy { load_balancer least_request pool { max_connections 7 } }
  policy {
    load_balancer ring_hash cookie "session" ttl 1h min_ring_size 2048
    pool { max_connections 100 max_pending 50 max_requests_per_connection 1000 idle_timeout 60s connect_timeout 1s }
    outlier { consecutive_5xx 5 consecutive_gateway_errors 3 interval 10s base_ejection 30s max_ejection_percent 50 }
  }
}
service ratings {
  port 80 http
  endpoint 127.0.0.1:80
  policy { load_balancer maglev source_ip outlier { } }
}
route reviews {
  rule canary {
    match method GET and path regex "/api/v[0-9]+/.*" and header "x-user" prefix "test" and query "debug" = "1"
    match header "x-debug" present and header "x-legacy" absent and header "x-v" regex "v[12]"
    match method prefix "P" and path prefix "/p" and header "x-e" = "1" and query "q" regex "a+"
    to reviews/v2 weight 90
    to reviews/v1 weight 10
    timeout 2s
    retries { attempts 3 per_try_timeout 500ms on 5xx, gateway-error, reset, connect-failure, 409 backoff 25ms max_backoff 250ms non_idempotent }
    fault { delay 2s 10% abort 503 0.5% }
    request_headers { set "x-a" = "b" add "x-c" = "d" remove "x-e" }
    response_headers { remove "x-internal" }
    rewrite { authority "reviews-v2" }
    mirror ratings 25%
    rate_limit 100 per 1s burst 200 per_source
  }
  rule moved {
    match path prefix "/old"
    redirect { scheme "https" host "new.example.com" port 8443 path "/new" code 308 }
  }
  rule rest {
    match path prefix "/r"
    to reviews/v1
    rewrite { prefix "/" }
    mirror reviews/v2
    retries { attempts 1 }
    fault { abort 500 }
  }
  rule last { to reviews rewrite { regex "^/old/(.*)" "/new/$1" } }
}
"#;

const TOML: &str = r#"
[[service]]
name = "reviews"
ports = [{ number = 9080, protocol = "http" }]
endpoints = [
  { address = "127.0.0.1:9081", labels = { version = "v1" } },
  { address = "127.0.0.1:9082", labels = { version = "v2" } },
]
subsets = [
  { name = "v1", labels = { version = "v1" } },
  { name = "v2", labels = { version = "v2" }, policy = { load_balancer = { kind = "least_request" }, pool = { max_connections = 7 } } },
]

[service.policy]
load_balancer = { kind = "ring_hash", cookie = "session", ttl = "1h", min_ring_size = 2048 }
pool = { max_connections = 100, max_pending = 50, max_requests_per_connection = 1000, idle_timeout = "60s", connect_timeout = "1s" }
outlier = { consecutive_5xx = 5, consecutive_gateway_errors = 3, interval = "10s", base_ejection = "30s", max_ejection_percent = 50 }

[[service]]
name = "ratings"
ports = [{ number = 80, protocol = "http" }]
endpoints = [{ address = "127.0.0.1:80" }]
policy = { load_balancer = { kind = "maglev", source_ip = true }, outlier = {} }

[[route]]
service = "reviews"

[[route.rule]]
name = "canary"
match = [
  { method = "GET", path_regex = "/api/v[0-9]+/.*", headers = { "x-user" = { prefix = "test" } }, query = { debug = "1" } },
  { headers = { "x-debug" = { present = true }, "x-legacy" = { absent = true }, "x-v" = { regex = "v[12]" } } },
  { method = { prefix = "P" }, path_prefix = "/p", headers = { "x-e" = { exact = "1" } }, query = { q = { regex = "a+" } } },
]
to = [
  { service = "reviews", subset = "v2", weight = 90 },
  { service = "reviews", subset = "v1", weight = 10 },
]
timeout = "2s"
retries = { attempts = 3, per_try_timeout = "500ms", on = ["5xx", "gateway-error", "reset", "connect-failure", 409], backoff = "25ms", max_backoff = "250ms", non_idempotent = true }
fault = { delay = "2s", delay_percent = "10%", abort = 503, abort_percent = "0.5%" }
request_headers = { set = { "x-a" = "b" }, add = { "x-c" = "d" }, remove = ["x-e"] }
response_headers = { remove = ["x-internal"] }
rewrite = { authority = "reviews-v2" }
mirror = { service = "ratings", percent = "25%" }
rate_limit = { requests = 100, per = "1s", burst = 200, per_source = true }

[[route.rule]]
name = "moved"
match = [{ path_prefix = "/old" }]
redirect = { scheme = "https", host = "new.example.com", port = 8443, path = "/new", code = 308 }

[[route.rule]]
name = "rest"
match = [{ path_prefix = "/r" }]
to = [{ service = "reviews", subset = "v1" }]
rewrite = { prefix = "/" }
mirror = { service = "reviews", subset = "v2" }
retries = { attempts = 1 }
fault = { abort = 500 }

[[route.rule]]
name = "last"
to = [{ service = "reviews" }]
rewrite = { regex = "^/old/(.*)", substitution = "/new/$1" }
"#;

fn snapshot(path: &str, text: &str) -> Snapshot {
    let mut sources = Sources::new();
    sources.add(path, text);
    match compile_sources(sources) {
        Ok(c) => c.snapshot,
        Err(f) => panic!("compilation failed:\n{}", f.render()),
    }
}

/// The snapshot without rule source locations (they differ between the two files).
fn without_sources(mut s: Snapshot) -> Snapshot {
    for table in &mut s.routes {
        for rule in &mut table.rules {
            rule.source = spec::SourceLocation::default();
        }
    }
    s
}

#[test]
fn toml_lowers_to_the_same_traffic_model_as_the_dsl() {
    let dsl = without_sources(snapshot("m.mesh", DSL));
    let toml = without_sources(snapshot("m.toml", TOML));
    assert_eq!(dsl, toml);
    // And the model is the interesting one, not an empty one.
    let rules = &dsl.routes[dsl.service("reviews").map(|(i, _)| i as usize).unwrap_or(0)].rules;
    assert_eq!(rules.len(), 4);
    assert!(rules[0].retries.is_some() && rules[0].rate_limit.is_some());
    assert!(rules[1].redirect.is_some());
    assert_eq!(rules[0].matches.len(), 3);
}

/// The one diagnostic of a TOML file: code, `line:col`, message.
fn toml_error(text: &str) -> (&'static str, usize, usize, String) {
    let mut sources = Sources::new();
    sources.add("t.toml", text);
    let failed = compile_sources(sources).expect_err("compilation fails");
    let d = &failed.diagnostics[0];
    let (_, line, col) = d.location(&failed.sources).unwrap_or_default();
    (d.code.as_str(), line, col, d.message.clone())
}

const HEAD: &str = r#"[[service]]
name = "s"
ports = [{ number = 80, protocol = "http" }]
endpoints = [{ address = "127.0.0.1:80" }]
"#;

/// `HEAD` plus a route with one rule whose body is `rule` (lines 5 on are the route).
fn with_rule(rule: &str) -> String {
    format!("{HEAD}[[route]]\nservice = \"s\"\n[[route.rule]]\nname = \"x\"\n{rule}\n")
}

#[test]
fn reports_bad_toml_traffic_values() {
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "to = [{ service = \"s\" }]\ntimeout = \"2\"",
            10,
            11,
            "expected a duration with a unit (e.g. \"500ms\", \"2s\", \"1m\", \"1h\"), found \"2\"",
        ),
        (
            "to = [{ service = \"s\" }]\nmirror = { service = \"s\", percent = \"10\" }",
            10,
            37,
            "expected a percentage (e.g. \"10%\" or \"0.5%\", at most 4 decimals), found \"10\"",
        ),
        (
            "to = [{ service = \"s\" }]\nfault = { delay_percent = \"10%\" }",
            10,
            27,
            "`delay_percent` needs `delay`",
        ),
        (
            "to = [{ service = \"s\" }]\nfault = { abort_percent = \"10%\" }",
            10,
            27,
            "`abort_percent` needs `abort`",
        ),
        (
            "to = [{ service = \"s\" }]\nrewrite = { regex = \"a\" }",
            10,
            21,
            "`regex` needs a `substitution`",
        ),
        (
            "to = [{ service = \"s\" }]\nrewrite = { substitution = \"a\" }",
            10,
            28,
            "`substitution` needs a `regex`",
        ),
        (
            "match = [{ headers = { a = { prefix = \"x\", regex = \"y\" } } }]\nto = [{ service = \"s\" }]",
            9,
            28,
            "a header condition needs exactly one of `exact`, `prefix`, `regex`, `present`, `absent`",
        ),
        (
            "match = [{ query = { a = { present = false } } }]\nto = [{ service = \"s\" }]",
            9,
            26,
            "`present = false` is not a condition; write `absent = true`",
        ),
        (
            "match = [{ headers = { a = { absent = false } } }]\nto = [{ service = \"s\" }]",
            9,
            28,
            "`absent = false` is not a condition; write `present = true`",
        ),
        (
            "match = [{ method = { present = true } }]\nto = [{ service = \"s\" }]",
            9,
            21,
            "every request has a method: write a method, `{ prefix = \"...\" }` or `{ regex = \"...\" }`",
        ),
        (
            "match = [{ path_prefix = \"/\" }]",
            7,
            1,
            "a rule needs at least one `to` destination, or a `redirect`",
        ),
    ];
    for &(rule, line, col, message) in cases {
        let (code, l, c, m) = toml_error(&with_rule(rule));
        assert_eq!(
            (code, l, c, m.as_str()),
            ("E0001", line, col, message),
            "{rule}"
        );
    }
}

#[test]
fn reports_bad_toml_policies() {
    let policy = |p: &str| toml_error(&format!("{HEAD}policy = {p}\n"));
    let (code, line, col, message) = policy(r#"{ load_balancer = { kind = "fastest" } }"#);
    assert_eq!((code, line, col), ("E0001", 5, 37));
    assert_eq!(
        message,
        r#"expected a load balancer (round_robin, random, least_request, ring_hash, maglev), found "fastest""#
    );
    let (code, _, _, message) =
        policy(r#"{ load_balancer = { kind = "ring_hash", header = "a", source_ip = true } }"#);
    assert_eq!(code, "E0001");
    assert_eq!(
        message,
        "a load balancer hashes on one key: set only one of `header`, `cookie`, `source_ip`"
    );
    let (_, _, col, message) = policy(r#"{ load_balancer = { kind = "ring_hash", ttl = "1s" } }"#);
    assert_eq!(col, 56);
    assert_eq!(
        message,
        "`ttl` is the lifetime of a hash cookie; it needs `cookie`"
    );
    let (code, _, _, message) = policy(r#"{ pool = { idle_timeout = "soon" } }"#);
    assert_eq!(code, "E0001");
    assert!(message.starts_with("expected a duration"), "{message}");
    let (code, _, _, message) = policy(r#"{ outlier = { eject = 1 } }"#);
    assert_eq!(code, "E0001");
    assert!(message.contains("unknown field `eject`"), "{message}");
}

#[test]
fn reports_lowering_errors_at_toml_positions() {
    let rule = "to = [{ service = \"s\" }]\nrequest_headers = { set = { host = \"x\" } }";
    let (code, line, col, message) = toml_error(&with_rule(rule));
    assert_eq!((code, line, col), ("E0122", 10, 36));
    assert_eq!(message, "header `host` cannot be edited: meshd owns it");
    let rule = "to = [{ service = \"s\" }]\nretries = { attempts = 1, on = [\"oops\", 700] }";
    let mut sources = Sources::new();
    sources.add("t.toml", with_rule(rule));
    let failed = compile_sources(sources).expect_err("fails");
    let found: Vec<_> = failed
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.code.as_str(),
                d.location(&failed.sources).map(|l| (l.1, l.2)),
            )
        })
        .collect();
    assert_eq!(
        found,
        [("E0124", Some((10, 33))), ("E0002", Some((10, 41)))]
    );
    let policy = "policy = { load_balancer = { kind = \"ring_hash\" } }";
    let (code, line, col, _) = toml_error(&format!("{HEAD}{policy}\n"));
    assert_eq!((code, line, col), ("E0123", 5, 28));
}

#[test]
fn explains_what_a_toml_value_should_look_like() {
    let rule = "match = [{ headers = { a = { prefx = \"x\" } } }]\nto = [{ service = \"s\" }]";
    let (code, line, _, message) = toml_error(&with_rule(rule));
    assert_eq!((code, line), ("E0001", 9));
    assert!(message.contains("unknown field `prefx`"), "{message}");
    let rule = "match = [{ query = { a = 1 } }]\nto = [{ service = \"s\" }]";
    let (_, _, _, message) = toml_error(&with_rule(rule));
    assert!(
        message.contains("a string (exact value) or a table with one of `exact`"),
        "{message}"
    );
    let rule = "to = [{ service = \"s\" }]\nretries = { attempts = 1, on = [true] }";
    let (code, line, col, message) = toml_error(&with_rule(rule));
    assert_eq!((code, line, col), ("E0001", 10, 33));
    assert!(
        message.contains("a retry condition name (e.g. \"5xx\") or a status code"),
        "{message}"
    );
    let rule = "to = [{ service = \"s\" }]\nretries = { attempts = 1, on = [-5] }";
    let (code, line, col, message) = toml_error(&with_rule(rule));
    assert_eq!((code, line, col), ("E0002", 10, 33));
    assert_eq!(message, "retry status -5 is out of range");
}
