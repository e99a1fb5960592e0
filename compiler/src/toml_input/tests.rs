use crate::compile_sources;
use crate::diag::Sources;

const DSL: &str = r#"
service reviews {
  port 9080 http
  endpoint 127.0.0.1:9081 { version = "v1" }
  endpoint 127.0.0.1:9082 { version = "v2" } weight 2
  subset v1 { version = "v1" }
  subset v2 { version = "v2" }
}
route reviews {
  rule canary {
    match header "x-canary" = "true"
    match path prefix "/beta" and header "x-user" = "tester"
    to reviews/v2
  }
  rule split {
    to reviews/v1 weight 90
    to reviews/v2 weight 10
  }
}
workload productpage {
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> 127.0.0.1:9090
  outbound reviews
}
"#;

const TOML: &str = r#"
[[service]]
name = "reviews"
ports = [{ number = 9080, protocol = "http" }]
endpoints = [
  { address = "127.0.0.1:9081", labels = { version = "v1" } },
  { address = "127.0.0.1:9082", labels = { version = "v2" }, weight = 2 },
]
subsets = [
  { name = "v1", labels = { version = "v1" } },
  { name = "v2", labels = { version = "v2" } },
]

[[route]]
service = "reviews"

[[route.rule]]
name = "canary"
match = [
  { headers = { "x-canary" = "true" } },
  { path_prefix = "/beta", headers = { "x-user" = "tester" } },
]
to = [{ service = "reviews", subset = "v2" }]

[[route.rule]]
name = "split"
to = [
  { service = "reviews", subset = "v1", weight = 90 },
  { service = "reviews", subset = "v2", weight = 10 },
]

[[workload]]
name = "productpage"
identity = "spiffe://cluster.local/ns/default/sa/productpage"
inbound = [{ port = 9080, protocol = "http", target = "127.0.0.1:9090" }]
outbound = ["reviews"]
"#;

fn compile_one(path: &str, text: &str) -> Result<crate::Compiled, crate::Failed> {
    let mut sources = Sources::new();
    sources.add(path.to_owned(), text.to_owned());
    compile_sources(sources)
}

#[test]
fn toml_and_dsl_compile_to_the_same_model() {
    let mut from_dsl = compile_one("mesh.mesh", DSL).unwrap().snapshot;
    let mut from_toml = compile_one("mesh.toml", TOML).unwrap().snapshot;
    // Only the rules' source locations differ.
    for snapshot in [&mut from_dsl, &mut from_toml] {
        for table in &mut snapshot.routes {
            for rule in &mut table.rules {
                rule.source = spec::SourceLocation::default();
            }
        }
    }
    assert_eq!(from_dsl, from_toml);
}

#[test]
fn rule_sources_point_into_the_toml_file() {
    let snapshot = compile_one("mesh.toml", TOML).unwrap().snapshot;
    let rules = &snapshot.routes[0].rules;
    let headers: Vec<u32> = TOML
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "[[route.rule]]")
        .map(|(i, _)| i as u32 + 1)
        .collect();
    assert_eq!(rules[0].source.file, "mesh.toml");
    assert_eq!(
        (rules[0].source.line, rules[0].source.column),
        (headers[0], 1)
    );
    assert_eq!(
        (rules[1].source.line, rules[1].source.column),
        (headers[1], 1)
    );
}

#[test]
fn toml_gets_the_same_semantic_diagnostics() {
    let text = TOML.replace(r#"subset = "v2" }]"#, r#"subset = "v3" }]"#);
    let failed = compile_one("mesh.toml", &text).unwrap_err();
    let rendered = failed.render();
    let line = text.lines().position(|l| l.contains("\"v3\"")).unwrap() + 1;
    assert!(
        rendered.starts_with(&format!("mesh.toml:{line}:")),
        "{rendered}"
    );
    assert!(
        rendered.contains("error[E0102]: unknown subset `v3`"),
        "{rendered}"
    );
}

#[test]
fn unknown_keys_and_bad_protocols_are_syntax_errors_at_the_key() {
    let failed = compile_one("m.toml", "[[service]]\nname = \"a\"\nprots = []\n").unwrap_err();
    let rendered = failed.render();
    assert!(
        rendered.starts_with("m.toml:3:1: error[E0001]: unknown field `prots`"),
        "{rendered}"
    );

    let text = "[[service]]\nname = \"a\"\nports = [{ number = 80, protocol = \"htp\" }]\n";
    let rendered = compile_one("m.toml", text).unwrap_err().render();
    assert!(
        rendered.starts_with("m.toml:3:36: error[E0001]: expected a protocol (http, http2, grpc, tcp), found \"htp\""),
        "{rendered}"
    );
}

#[test]
fn the_mesh_tables_are_exactly_the_document_fields() {
    for name in super::TABLES {
        let error = toml::from_str::<super::Document>(&format!("{name} = 1"))
            .expect_err("1 is no table")
            .to_string();
        assert!(!error.contains("unknown field"), "{name}: {error}");
    }
    let error = toml::from_str::<super::Document>("bogus = 1")
        .expect_err("bogus is unknown")
        .to_string();
    for name in super::TABLES {
        assert!(
            error.contains(&format!("`{name}`")),
            "{name} missing in: {error}"
        );
    }
}

#[test]
fn tells_mesh_toml_from_other_toml_even_when_broken() {
    use super::is_mesh_toml;
    assert!(is_mesh_toml("[[service]]\nname = \"a\"\n"));
    assert!(is_mesh_toml("[telemetry]\naccess_log = true\n"));
    assert!(is_mesh_toml("route = []\n"));
    assert!(!is_mesh_toml(
        "[package]\nname = \"compiler\"\n[dependencies]\nspec = \"1\"\n"
    ));
    assert!(!is_mesh_toml("max_width = 100\n"));
    assert!(!is_mesh_toml(""));
    // Not valid TOML: a line opening a mesh table decides.
    assert!(is_mesh_toml("[[service]]\nname = \n"));
    assert!(is_mesh_toml("[[ route.rule ]]\nname = =\n"));
    assert!(!is_mesh_toml("[package\nname = \"x\"\n"));
    assert!(!is_mesh_toml("service reviews {\n  port 9080 http\n}\n"));
}
