use crate::compile_sources;
use crate::diag::Sources;

const DSL: &str = r#"
service reviews { port 9080 http endpoint 127.0.0.1:9081 }
workload reviews-v1 {
  namespace default
  labels { app = "reviews", version = "v1" }
  identity "spiffe://cluster.local/ns/default/sa/reviews"
  serves reviews
  inbound 9080 http -> 127.0.0.1:9090 mtls strict
  inbound 9443 http -> 127.0.0.1:9091
  outbound reviews
  telemetry { access_log "%REQ(:METHOD)%" trace_sampling 1% }
}
workload other { identity "spiffe://cluster.local/ns/default/sa/other" telemetry { access_log off } inbound 80 http -> 127.0.0.1:81 }
telemetry { access_log "%REQ(:PATH)%" trace_sampling 0.1% }
peer_authentication mesh { mode strict }
peer_authentication v1 {
  namespace default
  workloads reviews-v1
  mode permissive
  port 9443 disable
}
authorization allow-productpage {
  namespace default
  workloads reviews-v1
  action deny
  rule {
    from { principals "cluster.local/ns/default/sa/productpage" not_namespaces "x" }
    from { request_principals "iss/*" not_principals "*" not_request_principals "a"
           namespaces "default" }
    to { methods "GET", "HEAD" paths "/reviews/*" ports 9080 not_ports 1 }
    to { hosts "a" not_hosts "b" not_methods "POST" not_paths "/x" }
    when "request.headers[x-token]" = "abc", "def"
    when "request.auth.claims[groups]" != "guests"
  }
  rule { to { paths "/admin/*" } }
}
authorization nothing {}
authentication users {
  workloads reviews-v1
  jwt { issuer "https://auth.example.com" audiences "reviews", "ratings" jwks "/jwks.json" }
}
"#;

const TOML: &str = r#"
[[service]]
name = "reviews"
ports = [{ number = 9080, protocol = "http" }]
endpoints = [{ address = "127.0.0.1:9081" }]

[[workload]]
name = "reviews-v1"
namespace = "default"
labels = { app = "reviews", version = "v1" }
identity = "spiffe://cluster.local/ns/default/sa/reviews"
serves = ["reviews"]
inbound = [
  { port = 9080, protocol = "http", target = "127.0.0.1:9090", mtls = "strict" },
  { port = 9443, protocol = "http", target = "127.0.0.1:9091" },
]
outbound = ["reviews"]
telemetry = { access_log = "%REQ(:METHOD)%", trace_sampling = "1%" }

[[workload]]
name = "other"
identity = "spiffe://cluster.local/ns/default/sa/other"
telemetry = { access_log = false }
inbound = [{ port = 80, protocol = "http", target = "127.0.0.1:81" }]

[telemetry]
access_log = "%REQ(:PATH)%"
trace_sampling = "0.1%"

[[peer_authentication]]
name = "mesh"
mode = "strict"

[[peer_authentication]]
name = "v1"
namespace = "default"
workloads = ["reviews-v1"]
mode = "permissive"
ports = [{ port = 9443, mode = "disable" }]

[[authorization]]
name = "allow-productpage"
namespace = "default"
workloads = ["reviews-v1"]
action = "deny"

[[authorization.rule]]
from = [
  { principals = ["cluster.local/ns/default/sa/productpage"], not_namespaces = ["x"] },
  { request_principals = ["iss/*"], not_principals = ["*"], not_request_principals = ["a"], namespaces = ["default"] },
]
to = [
  { methods = ["GET", "HEAD"], paths = ["/reviews/*"], ports = [9080], not_ports = [1] },
  { hosts = ["a"], not_hosts = ["b"], not_methods = ["POST"], not_paths = ["/x"] },
]
when = [
  { key = "request.headers[x-token]", values = ["abc", "def"] },
  { key = "request.auth.claims[groups]", not_values = ["guests"] },
]

[[authorization.rule]]
to = [{ paths = ["/admin/*"] }]

[[authorization]]
name = "nothing"

[[authentication]]
name = "users"
workloads = ["reviews-v1"]
jwt = [{ issuer = "https://auth.example.com", audiences = ["reviews", "ratings"], jwks = "/jwks.json" }]
"#;

fn compile_one(path: &str, text: &str) -> Result<crate::Compiled, crate::Failed> {
    let mut sources = Sources::new();
    sources.add(path.to_owned(), text.to_owned());
    compile_sources(sources)
}

/// The snapshot with every source location cleared (they differ between the two forms).
fn without_sources(mut snapshot: spec::Snapshot) -> spec::Snapshot {
    for table in &mut snapshot.routes {
        for rule in &mut table.rules {
            rule.source = spec::SourceLocation::default();
        }
    }
    for workload in &mut snapshot.workloads {
        for policy in &mut workload.authorization {
            policy.source = spec::SourceLocation::default();
        }
        for jwt in &mut workload.jwt {
            jwt.source = spec::SourceLocation::default();
        }
    }
    snapshot
}

#[test]
fn toml_and_dsl_compile_security_to_the_same_model() {
    let from_dsl = compile_one("mesh.mesh", DSL).unwrap();
    let from_toml = compile_one("mesh.toml", TOML).unwrap();
    assert!(from_dsl
        .warnings
        .iter()
        .all(|w| matches!(w.code.as_str(), "W0141" | "W0164")));
    assert_eq!(from_dsl.warnings.len(), from_toml.warnings.len());
    let dsl = without_sources(from_dsl.snapshot);
    let toml = without_sources(from_toml.snapshot);
    assert_eq!(dsl, toml);
    // The model is the one written, not two equal empty ones.
    let w = toml.workload("reviews-v1").unwrap();
    assert_eq!(w.authorization.len(), 2);
    assert_eq!(w.authorization[0].rules.len(), 2);
    assert_eq!(w.jwt.len(), 1);
    let tls: Vec<spec::TlsMode> = w.inbound.iter().map(|i| i.tls).collect();
    assert_eq!(tls, [spec::TlsMode::Strict, spec::TlsMode::Disable]);
    assert_eq!(w.telemetry.trace_sampling_per_million, 10_000);
    let other = toml.workload("other").unwrap();
    assert_eq!(other.telemetry.access_log, None);
    assert_eq!(other.telemetry.trace_sampling_per_million, 1_000);
    assert_eq!(other.inbound[0].tls, spec::TlsMode::Strict);
    assert_eq!(toml.services[0].identities.len(), 1);
}

#[test]
fn policy_sources_point_at_their_tables() {
    let s = compile_one("mesh.toml", TOML).unwrap().snapshot;
    let w = s.workload("reviews-v1").unwrap();
    let line_of = |needle: &str| TOML.lines().position(|l| l == needle).unwrap() as u32 + 1;
    let first = line_of("[[authorization]]");
    assert_eq!(
        (
            w.authorization[0].source.line,
            w.authorization[0].source.column
        ),
        (first, 1)
    );
    assert_eq!(w.jwt[0].source.file, "mesh.toml");
    assert_eq!(w.jwt[0].source.line, line_of("jwt = [{ issuer = \"https://auth.example.com\", audiences = [\"reviews\", \"ratings\"], jwks = \"/jwks.json\" }]"));
}

/// The first diagnostic rendered.
fn first_error(text: &str) -> String {
    compile_one("m.toml", text).unwrap_err().render()
}

#[test]
fn reports_bad_security_values_as_syntax_errors_where_they_are() {
    for (text, start) in [
        (
            "[[peer_authentication]]\nname = \"p\"\nmode = \"on\"\n",
            "m.toml:3:8: error[E0001]: expected an mTLS mode (strict, permissive, disable), found \"on\"",
        ),
        (
            "[[workload]]\nname = \"w\"\ninbound = [{ port = 1, protocol = \"http\", target = \"127.0.0.1:2\", mtls = \"x\" }]\n",
            "m.toml:3:74: error[E0001]: expected an mTLS mode",
        ),
        (
            "[[authorization]]\nname = \"a\"\naction = \"permit\"\n",
            "m.toml:3:10: error[E0001]: expected an action (allow, deny, audit), found \"permit\"",
        ),
        (
            "[telemetry]\ntrace_sampling = \"1\"\n",
            "m.toml:2:18: error[E0001]: expected a percentage (e.g. \"10%\" or \"0.5%\"",
        ),
        (
            "[telemetry]\ntrace_sampling = \"0.00001%\"\n",
            "m.toml:2:18: error[E0001]: expected a percentage",
        ),
        (
            "[telemetry]\naccess_log = true\n",
            "m.toml:2:14: error[E0001]: expected an access log format string, \"json\" or `false` (off)",
        ),
        (
            "[telemetry]\naccess_log = 5\n",
            "m.toml:2:14: error[E0001]: expected an access log format string, \"json\" or `false` (off), found `5`",
        ),
        (
            "[telemetry]\naccess_log = \"%REQ(:PATH)% %NOPE%\"\n",
            "m.toml:2:28: error[E0148]: unknown operator %NOPE%",
        ),
        (
            "[[authentication]]\nname = \"a\"\njwt = []\n",
            "m.toml:1:1: error[E0001]: an authentication needs at least one `jwt` rule",
        ),
        (
            "[[authorization]]\nname = \"a\"\nselector = {}\n",
            "m.toml:3:1: error[E0001]: unknown field `selector`",
        ),
        (
            "[[authentication]]\nname = \"a\"\njwt = [{ issuer = \"i\" }]\n",
            "m.toml:3:8: error[E0001]: missing field `jwks`",
        ),
    ] {
        let rendered = first_error(text);
        assert!(rendered.starts_with(start), "{text}\n{rendered}");
    }
}

#[test]
fn toml_gets_the_same_security_diagnostics() {
    let text = TOML.replace(
        "workloads = [\"reviews-v1\"]\naction",
        "workloads = [\"reviews-v2\"]\naction",
    );
    let rendered = compile_one("mesh.toml", &text).unwrap_err().render();
    let line = text.lines().position(|l| l.contains("reviews-v2")).unwrap() + 1;
    assert!(
        rendered.contains(&format!(
            "mesh.toml:{line}:14: error[E0140]: unknown workload `reviews-v2`"
        )),
        "{rendered}"
    );
    let text = TOML.replace(
        "{ key = \"request.headers[x-token]\", values = [\"abc\", \"def\"] }",
        "{ key = \"request.headers[x-token]\" }",
    );
    let rendered = compile_one("mesh.toml", &text).unwrap_err().render();
    let line = text
        .lines()
        .position(|l| l.contains("{ key = \"request.headers[x-token]\" }"))
        .unwrap()
        + 1;
    assert!(
        rendered.contains(&format!("mesh.toml:{line}:3: error[E0144]: condition on \"request.headers[x-token]\" has no values")),
        "{rendered}"
    );
    let text = TOML.replace("\"/reviews/*\"", "\"/rev*ews\"");
    let rendered = compile_one("mesh.toml", &text).unwrap_err().render();
    assert!(rendered.contains("error[E0144]"), "{rendered}");
    // Methods must be upper-case in TOML as in `.mesh` (only Istio input keeps any case).
    let text = TOML.replace(
        "methods = [\"GET\", \"HEAD\"]",
        "methods = [\"get\", \"HEAD\"]",
    );
    let rendered = compile_one("mesh.toml", &text).unwrap_err().render();
    assert!(
        rendered.contains("error[E0144]: method \"get\" is not an upper-case HTTP method"),
        "{rendered}"
    );
}
