//! Shadowing and port checks, through `compile_sources` so parsing and lowering run too.

use crate::diag::{Code, Diagnostic, Severity, Sources};
use crate::{compile_sources, Compiled};

/// Four lines, so a route appended to it starts on line 5.
const SERVICE: &str = "service web {\n  port 8080 http\n  endpoint 127.0.0.1:8081\n}\n";

const ANALYSIS: [Code; 5] = [
    Code::RuleNeverMatches,
    Code::RuleOverlap,
    Code::ImportedRuleNeverMatches,
    Code::HttpOnOpaquePort,
    Code::MatchNeverDecides,
];

/// Every diagnostic of the analysis codes, whether the compilation failed or not.
fn analysis(files: &[(&str, &str)]) -> (Vec<Diagnostic>, Sources) {
    let mut sources = Sources::new();
    for (path, text) in files {
        sources.add(*path, *text);
    }
    let (diagnostics, sources) = match compile_sources(sources) {
        Ok(Compiled {
            warnings, sources, ..
        }) => (warnings, sources),
        Err(failed) => (failed.diagnostics, failed.sources),
    };
    let found = diagnostics
        .into_iter()
        .filter(|d| ANALYSIS.contains(&d.code))
        .collect();
    (found, sources)
}

/// `(code, "file:line")` of every analysis diagnostic.
fn found(files: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let (diagnostics, sources) = analysis(files);
    diagnostics
        .iter()
        .map(|d| {
            let (file, line, _) = d.location(&sources).unwrap_or_default();
            (d.code.as_str(), format!("{file}:{line}"))
        })
        .collect()
}

fn route(rules: &str) -> String {
    format!("{SERVICE}route web {{\n{rules}}}\n")
}

fn mesh(rules: &str) -> Vec<(&'static str, String)> {
    found(&[("m.mesh", &route(rules))])
}

fn only(files: &[(&str, &str)]) -> Diagnostic {
    let (mut diagnostics, _) = analysis(files);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    diagnostics.remove(0)
}

fn e(file_line: &str) -> (&'static str, String) {
    ("E0110", file_line.to_owned())
}

fn w(file_line: &str) -> (&'static str, String) {
    ("W0111", file_line.to_owned())
}

#[test]
fn exact_path_under_an_earlier_prefix_never_matches() {
    let rules = "  rule api { match path prefix \"/api\" to web }\n  \
                 rule users { match path exact \"/api/users\" to web }\n";
    assert_eq!(mesh(rules), [e("m.mesh:7")]);
    let d = only(&[("m.mesh", &route(rules))]);
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(
        d.message,
        "rule `users` can never match: every request it matches is taken by rule `api` (m.mesh:6)"
    );
    assert_eq!(
        d.help.as_deref(),
        Some("move it above `api`, or narrow `api`")
    );
}

#[test]
fn longer_prefix_after_a_shorter_one_never_matches() {
    let rules = "  rule api { match path prefix \"/api\" to web }\n  \
                 rule v1 { match path prefix \"/api/v1\" to web }\n";
    assert_eq!(mesh(rules), [e("m.mesh:7")]);
}

#[test]
fn prefix_is_a_string_prefix_as_in_the_data_plane() {
    // `/a` takes `/ab` too: the data plane compares bytes, not path segments.
    let rules = "  rule a { match path prefix \"/a\" to web }\n  \
                 rule ab { match path prefix \"/ab\" to web }\n";
    assert_eq!(mesh(rules), [e("m.mesh:7")]);
}

#[test]
fn literal_path_regexes_shadow_and_are_shadowed_like_exact_and_prefix_paths() {
    // `/api/.*` is the prefix `/api/`: it takes `/api/users`.
    let rules = "  rule any { match path regex \"^/api/.*$\" to web }\n  \
                 rule users { match path prefix \"/api/users\" to web }\n";
    assert_eq!(mesh(rules), [e("m.mesh:7")]);
    // A literal regex is an exact path, inside an earlier prefix.
    let rules = "  rule api { match path prefix \"/api\" to web }\n  \
                 rule v1 { match path regex \"/api/v1\" to web }\n";
    assert_eq!(mesh(rules), [e("m.mesh:7")]);
    // A regex with a class is not decided, so it never shadows a later rule...
    let rules = "  rule digits { match path regex \"/api/[0-9]+\" to web }\n  \
                 rule v1 { match path exact \"/api/1\" to web }\n";
    assert_eq!(mesh(rules), []);
    // ...but its literal head is a prefix every path it matches has.
    let rules = "  rule api { match path prefix \"/api\" to web }\n  \
                 rule digits { match path regex \"/api/[0-9]+\" to web }\n";
    assert_eq!(mesh(rules), [e("m.mesh:7")]);
    // An optional last character or an alternation leaves less (or nothing) certain.
    let rules = "  rule ab { match path prefix \"/ab\" to web }\n  \
                 rule opt { match path regex \"/ab?c\" to web }\n  \
                 rule alt { match path regex \"/abc|/x\" to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn disjoint_prefixes_are_not_reported() {
    let rules = "  rule a { match path prefix \"/a/\" to web }\n  \
                 rule b { match path prefix \"/b/\" to web }\n  \
                 rule c { match path exact \"/a\" to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn exact_path_does_not_contain_a_prefix() {
    let rules = "  rule root { match path exact \"/api\" to web }\n  \
                 rule api { match path prefix \"/api\" to web }\n";
    // `/api` exact is a refinement of `/api` prefix placed first: intended, no finding.
    assert_eq!(mesh(rules), []);
}

#[test]
fn catch_all_first_shadows_every_later_rule() {
    let rules = "  rule all { to web }\n  \
                 rule a { match path prefix \"/a\" to web }\n  \
                 rule b { match header \"x\" = \"1\" to web }\n";
    assert_eq!(mesh(rules), [e("m.mesh:7"), e("m.mesh:8")]);
}

#[test]
fn catch_all_last_is_not_reported() {
    let rules = "  rule a { match path prefix \"/a\" to web }\n  \
                 rule b { match header \"x\" = \"1\" to web }\n  \
                 rule rest { to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn header_subset_shadows_and_names_are_case_insensitive() {
    let rules = "  rule user { match header \"X-User\" = \"t\" to web }\n  \
                 rule more { match path prefix \"/b\" and header \"x-user\" = \"t\" and \
                 header \"x-env\" = \"p\" to web }\n";
    assert_eq!(mesh(rules), [e("m.mesh:7")]);
}

#[test]
fn header_values_are_compared_byte_for_byte() {
    let rules = "  rule lower { match header \"x-user\" = \"t\" to web }\n  \
                 rule upper { match header \"x-user\" = \"T\" to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn rule_whose_every_match_is_contained_never_matches() {
    let rules = "  rule ab {\n    match path prefix \"/a\"\n    match path prefix \"/b\"\n    \
                 to web\n  }\n  \
                 rule c {\n    match path exact \"/a/x\"\n    match path prefix \"/b/y\" and \
                 header \"k\" = \"v\"\n    to web\n  }\n";
    assert_eq!(mesh(rules), [e("m.mesh:11")]);
}

#[test]
fn a_match_contained_in_an_earlier_match_of_its_rule_is_w0185() {
    // Line 6 `rule a {`, 7 `/api`, 8 `/api/users` (inside `/api`), 9 `/other`, 10 `/api`
    // again (identical to line 7).
    let rules = "  rule a {\n    match path prefix \"/api\"\n    \
                 match path exact \"/api/users\"\n    match path prefix \"/other\"\n    \
                 match path prefix \"/api\" and header \"k\" = \"v\"\n    to web\n  }\n";
    assert_eq!(
        mesh(rules),
        [
            ("W0185", "m.mesh:8".to_owned()),
            ("W0185", "m.mesh:10".to_owned())
        ]
    );
    let (diagnostics, _) = analysis(&[("m.mesh", &route(rules))]);
    assert_eq!(
        diagnostics[0].message,
        "match #2 of rule `a` never decides anything: every request it matches satisfies match \
         #1 of the same rule"
    );
    assert_eq!(diagnostics[0].severity, Severity::Warning);
}

#[test]
fn an_imported_rule_with_a_duplicated_match_is_w0185() {
    let yaml = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web.example]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example]
  http:
  - match:
    - uri: {prefix: /a}
    - uri: {prefix: /a}
    route: [{destination: {host: web.example}}]
";
    assert_eq!(
        found(&[("m.yaml", yaml)]),
        [("W0185", "m.yaml:18".to_owned())]
    );
}

#[test]
fn matches_covered_by_several_earlier_rules_name_them_all() {
    let rules = "  rule a { match path prefix \"/a\" to web }\n  \
                 rule b { match path prefix \"/b\" to web }\n  \
                 rule c {\n    match path exact \"/a/x\"\n    match path prefix \"/b/y\"\n    \
                 to web\n  }\n";
    assert_eq!(mesh(rules), [e("m.mesh:8")]);
    let d = only(&[("m.mesh", &route(rules))]);
    assert!(
        d.message
            .ends_with("taken by rules `a` (m.mesh:6) and `b` (m.mesh:7)"),
        "{}",
        d.message
    );
    assert_eq!(
        d.help.as_deref(),
        Some("move it above `a` and `b`, or narrow `a` and `b`")
    );
}

#[test]
fn partial_overlap_is_a_warning_naming_both_rules() {
    let rules = "  rule api { match path prefix \"/api\" to web }\n  \
                 rule debug {\n    match path exact \"/api/users\"\n    \
                 match header \"x-debug\" = \"1\"\n    to web\n  }\n";
    let text = route(rules);
    let files = [("m.mesh", text.as_str())];
    assert_eq!(found(&files), [w("m.mesh:7")]);
    let d = only(&files);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        d.message,
        "rule `debug` partly overlaps rule `api` (m.mesh:6): every request its match #1 matches \
         is taken by `api`"
    );
    assert_eq!(
        d.help.as_deref(),
        Some("remove that match from `debug`, or move `debug` above `api`")
    );
    // A warning only: the snapshot is still built.
    let mut sources = Sources::new();
    sources.add("m.mesh", text);
    assert!(compile_sources(sources).is_ok());
}

#[test]
fn header_canary_before_a_path_rule_is_not_reported() {
    // Requests to /api with the canary header go to `canary`: the usual layering, not a finding.
    let rules = "  rule canary { match header \"x-canary\" = \"true\" to web }\n  \
                 rule api { match path prefix \"/api\" to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn a_match_taken_by_an_earlier_rule_is_a_partial_overlap() {
    // `b`'s first match is exactly `a`'s (Istio's IST0131); its second one keeps it reachable.
    let rules = "  rule a { match path prefix \"/x\" to web }\n  \
                 rule b {\n    match path prefix \"/x\"\n    match path prefix \"/y\"\n    \
                 to web\n  }\n";
    assert_eq!(mesh(rules), [w("m.mesh:7")]);
}

#[test]
fn specific_rule_before_a_broader_one_is_not_reported() {
    let rules = "  rule v1 { match path prefix \"/api/v1\" and header \"x\" = \"1\" to web }\n  \
                 rule api { match path prefix \"/api\" to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn conflicting_header_values_do_not_overlap() {
    let rules = "  rule v1 { match header \"x-version\" = \"1\" to web }\n  \
                 rule v2 { match path prefix \"/\" and header \"x-version\" = \"2\" to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn shadow_in_a_toml_route_points_at_the_rule_header() {
    let toml = r#"[[route]]
service = "web"

[[route.rule]]
name = "all"
to = [{ service = "web" }]

[[route.rule]]
name = "api"
match = [{ path_prefix = "/api" }]
to = [{ service = "web" }]
"#;
    let files = [("a.mesh", SERVICE), ("b.toml", toml)];
    assert_eq!(found(&files), [e("b.toml:8")]);
    assert!(only(&files).message.contains("rule `all` (b.toml:4)"));
}

#[test]
fn routes_for_one_service_in_two_files_are_a_duplicate_not_one_table() {
    // Lowering rejects the second route (E0103), so a table never spans files and the catch-all
    // in `a.mesh` does not shadow the rule in `b.toml`.
    let mesh = format!("{SERVICE}route web {{ rule all {{ to web }} }}\n");
    let toml = "[[route]]\nservice = \"web\"\n\n[[route.rule]]\nname = \"api\"\n\
                match = [{ path_prefix = \"/api\" }]\nto = [{ service = \"web\" }]\n";
    let mut sources = Sources::new();
    sources.add("a.mesh", mesh);
    sources.add("b.toml", toml);
    let failed = compile_sources(sources).expect_err("a duplicate route fails");
    let codes: Vec<Code> = failed.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::Duplicate]);
}

const SAMPLE_ENTRY: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: sample
spec:
  hosts: [sample.default.svc.cluster.local]
  resolution: STATIC
  ports:
  - number: 80
    name: http
    protocol: HTTP
  endpoints:
  - address: 10.0.0.1
---
";

/// `duplicate-match` from Istio's analyzer test data (IST0130): starts on line 16.
const DUPLICATE_MATCH: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: duplicate-match
spec:
  hosts: [sample]
  http:
  - name: first
    match:
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: sample
  - name: second
    match:
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: sample
";

#[test]
fn unreachable_istio_rule_is_a_warning() {
    let yaml = format!("{SAMPLE_ENTRY}{DUPLICATE_MATCH}");
    let files = [("vs.yaml", yaml.as_str())];
    assert_eq!(found(&files), [("W0112", "vs.yaml:29".to_owned())]);
    let d = only(&files);
    assert_eq!(d.severity, Severity::Warning);
    assert!(
        d.message.contains("taken by rule `first` (vs.yaml:22)"),
        "{}",
        d.message
    );
}

#[test]
fn istio_rule_for_a_mesh_service_is_still_an_imported_rule() {
    // The rule's origin is the file it was written in, not the service it routes.
    let mesh = "service sample {\n  port 80 http\n  endpoint 127.0.0.1:8081\n}\n";
    let files = [("a.mesh", mesh), ("b.yaml", DUPLICATE_MATCH)];
    assert_eq!(found(&files), [("W0112", "b.yaml:15".to_owned())]);
}

#[test]
fn http_on_a_server_first_port_is_a_warning_at_the_port_line() {
    let src = "service db {\n  port 3306 http\n  port 3307 http\n  endpoint 127.0.0.1:3306\n}\n\
               workload app {\n  inbound 6379 grpc -> 127.0.0.1:6379\n  \
               inbound 5432 tcp -> 127.0.0.1:5432\n}\n";
    let files = [("m.mesh", src)];
    assert_eq!(
        found(&files),
        [
            ("W0113", "m.mesh:2".to_owned()),
            ("W0113", "m.mesh:7".to_owned())
        ]
    );
    let (diagnostics, sources) = analysis(&files);
    assert_eq!(
        diagnostics[0].help.as_deref(),
        Some("declare it `tcp`; a server-first protocol never sends an HTTP request")
    );
    assert_eq!(
        diagnostics[1].help.as_deref(),
        Some("declare it `tcp`; Redis clients never send an HTTP request")
    );
    assert!(diagnostics[0]
        .render(&sources)
        .contains(" 2 |   port 3306 http\n   |        ^^^^^^^^^"));
}

#[test]
fn http_on_a_server_first_port_of_a_service_entry_suggests_tcp() {
    let yaml = SAMPLE_ENTRY
        .replace("number: 80", "number: 25")
        .replace("---\n", "");
    let files = [("se.yaml", yaml.as_str())];
    assert_eq!(found(&files), [("W0113", "se.yaml:9".to_owned())]);
    let d = only(&files);
    assert!(d
        .help
        .as_deref()
        .is_some_and(|h| h.starts_with("set `protocol: TCP`")));
}

#[test]
fn catch_all_after_prefix_slash_is_not_reported() {
    // A request target need not start with `/` (`OPTIONS *`), so `rest` stays reachable.
    let rules = "  rule root { match path prefix \"/\" to web }\n  rule rest { to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn a_rule_repeating_a_name_is_left_to_e0103() {
    // Lowering drops the second `a` (E0103), so it neither shadows nor is shadowed.
    let rules = "  rule a { to web }\n  rule a { match path prefix \"/a\" to web }\n";
    assert_eq!(mesh(rules), []);
}

#[test]
fn ports_of_every_protocol_compile_without_a_warning() {
    let src = "service s {\n  port 80 http\n  port 81 tcp\n  port 82 grpc\n  port 83 http2\n  \
               endpoint 127.0.0.1:80\n}\nworkload w {\n  inbound 84 tcp -> 127.0.0.1:84\n  \
               inbound 85 grpc -> 127.0.0.1:85\n}\n";
    let mut sources = Sources::new();
    sources.add("m.mesh", src);
    let compiled = compile_sources(sources).expect("no error");
    let codes: Vec<&str> = compiled.warnings.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, Vec::<&str>::new());
}
