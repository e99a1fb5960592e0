//! Unit tests of the Istio import, through `compile_sources` so the lowering runs too: what
//! every kind shares (documents, schema errors, positions, durations, `kubectl apply`
//! semantics, what travels as unserved) here; each API group's kinds in a file of its own.

mod networking;
mod security;
mod sidecar;
mod telemetry;

use crate::ast;
use crate::diag::{Code, Sources};
use crate::{compile_sources, Compiled, Diagnostic, Failed};

/// Three WorkloadEntries, two in `shop` (`app: web`, `app: api`) and one in `data`
/// (`app: db`): the workloads the policy kinds' tests target by namespace and selector.
const WORKLOADS: &str = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-1, namespace: shop}
spec: {address: 10.0.0.5, labels: {app: web}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-1, namespace: shop}
spec: {address: 10.0.0.6, labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: data}
spec: {address: 10.0.0.7, labels: {app: db}}
";

fn compile(yaml: &str) -> Result<Compiled, Failed> {
    let mut sources = Sources::new();
    sources.add("mesh.yaml", yaml);
    compile_sources(sources)
}

fn codes_and_lines(diagnostics: &[Diagnostic], sources: &Sources) -> Vec<(Code, usize)> {
    diagnostics
        .iter()
        .map(|d| (d.code, d.location(sources).map_or(0, |(_, line, _)| line)))
        .collect()
}

const SERVICE_ENTRY: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: shop
spec:
  hosts: [reviews.example]
  resolution: STATIC
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  endpoints:
  - address: 10.0.0.1
    labels: {version: v1}
  - address: 10.0.0.2
    ports: {http: 9090}
    labels: {version: v2}
    weight: 3
";

#[test]
fn reports_schema_errors_at_the_field() {
    let yaml = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bad}
spec:
  hosts: [example.com]
  ports:
  - {name: a, number: 99999}
";
    let failed = compile(yaml).unwrap_err();
    let errors: Vec<Diagnostic> = failed
        .diagnostics
        .into_iter()
        .filter(|d| d.is_error())
        .collect();
    assert_eq!(
        codes_and_lines(&errors, &failed.sources),
        [(Code::IstioSchema, 7)]
    );
}

#[test]
fn yaml_syntax_error_and_non_mapping_documents_are_errors() {
    let failed = compile("a: [1, 2\n").unwrap_err();
    assert_eq!(failed.diagnostics[0].code, Code::YamlSyntax);
    let failed = compile("just text\n").unwrap_err();
    assert_eq!(
        codes_and_lines(&failed.diagnostics, &failed.sources),
        [(Code::YamlSyntax, 1)]
    );
}

#[test]
fn out_of_scope_kinds_are_warnings_and_security_kinds_are_imported() {
    let yaml = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p}
spec: {mtls: {mode: STRICT}}
---
foo: bar
";
    let compiled = compile(yaml).unwrap();
    assert_eq!(
        codes_and_lines(&compiled.warnings, &compiled.sources),
        [
            (Code::IstioOutOfScope, 2),
            (Code::PolicySelectsNothing, 7),
            (Code::IstioOutOfScope, 10)
        ]
    );
    assert!(compiled.snapshot.services.is_empty());
}

#[test]
fn positions_count_characters_after_non_ascii_text() {
    let yaml = "\
# überprüfung ✓
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ü, annotations: {note: «ä»}}
spec: {ports: [{name: ä, number: 0}], hosts: [a.example]}
";
    let failed = compile(yaml).unwrap_err();
    let d = failed.diagnostics.iter().find(|d| d.is_error()).unwrap();
    assert_eq!(d.code, Code::IstioSchema);
    let (_, line, col) = d.location(&failed.sources).unwrap();
    assert_eq!((line, col), (5, 34));
    let span = d.span.unwrap().span;
    assert_eq!(&yaml[span.start..span.end], "0");
}

#[test]
fn parses_durations_like_kubernetes() {
    assert!(super::security::is_duration("5s"));
    assert!(super::security::is_duration("1m30.5s"));
    assert!(!super::security::is_duration("apple"));
    assert!(!super::security::is_duration(""));
}

// AST-level tests: the semantic lowering of the new nodes lives elsewhere, so these check what
// the import produces.

/// Imports one YAML file: the items, and every diagnostic as (code, line).
pub(super) fn import_ast(yaml: &str) -> (Vec<ast::Item>, Vec<(Code, usize)>) {
    let mut sources = Sources::new();
    let id = sources.add("mesh.yaml", yaml);
    let mut diagnostics = Vec::new();
    let file = super::YamlFile {
        id,
        path: "mesh.yaml",
        text: yaml,
    };
    let files = super::import(&[file], &[], &mut diagnostics);
    let items = files.into_iter().flat_map(|f| f.items).collect();
    (items, codes_and_lines(&diagnostics, &sources))
}

fn routes(items: &[ast::Item]) -> Vec<&ast::Route> {
    items
        .iter()
        .filter_map(|i| match i {
            ast::Item::Route(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn service<'a>(items: &'a [ast::Item], name: &str) -> &'a ast::Service {
    items
        .iter()
        .find_map(|i| match i {
            ast::Item::Service(s) if s.name.name == name => Some(s),
            _ => None,
        })
        .unwrap()
}

fn value(condition: &ast::ValueCondition) -> String {
    match condition {
        ast::ValueCondition::Exact(s) => format!("exact {}", s.value),
        ast::ValueCondition::Prefix(s) => format!("prefix {}", s.value),
        ast::ValueCondition::Regex(s) => format!("regex {}", s.value),
        ast::ValueCondition::Present(_) => "present".to_owned(),
        ast::ValueCondition::Absent(_) => "absent".to_owned(),
    }
}

fn condition(c: &ast::Condition) -> String {
    match c {
        ast::Condition::PathExact { value, .. } => format!("path exact {}", value.value),
        ast::Condition::PathPrefix { value, .. } => format!("path prefix {}", value.value),
        ast::Condition::PathRegex { value, .. } => format!("path regex {}", value.value),
        ast::Condition::Method { value: v, .. } => format!("method {}", value(v)),
        ast::Condition::Header { name, value: v } => format!("header {} {}", name.value, value(v)),
        ast::Condition::Query { name, value: v } => format!("query {} {}", name.value, value(v)),
    }
}

#[test]
fn converts_durations_to_milliseconds() {
    let ms = super::security::duration_millis;
    assert_eq!(ms("1m30.5s"), Some(90_500));
    assert_eq!(ms("250ms"), Some(250));
    assert_eq!(ms("1h"), Some(3_600_000));
    assert_eq!(ms("1500us"), Some(2));
    assert_eq!(ms("s"), None);
}

#[test]
fn a_later_document_replaces_one_of_the_same_kind_and_name() {
    let yaml = "\
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec: {action: DENY}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
spec: {action: AUDIT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: bar}
spec: {}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: foo}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: foo}
spec: {mtls: {mode: DISABLE}}
";
    let (items, found) = import_ast(yaml);
    assert_eq!(
        found,
        [(Code::IstioReplaced, 9), (Code::IstioReplaced, 25)],
        "{found:?}"
    );
    let policies = authorizations(&items);
    let names: Vec<(&str, Option<spec::AuthzAction>)> = policies
        .iter()
        .map(|p| (p.name.name.as_str(), p.action.map(|(a, _)| a)))
        .collect();
    assert_eq!(
        names,
        [
            ("foo/httpbin", Some(spec::AuthzAction::Audit)),
            ("bar/httpbin", None)
        ]
    );
    let peers: Vec<spec::TlsMode> = items
        .iter()
        .filter_map(|i| match i {
            ast::Item::PeerAuthentication(p) => p.mode.map(|m| m.value),
            _ => None,
        })
        .collect();
    assert_eq!(peers, [spec::TlsMode::Disable]);

    let failed_or_compiled = compile(yaml);
    let compiled = failed_or_compiled.unwrap_or_else(|f| panic!("{}", f.render()));
    let replaced = compiled
        .warnings
        .iter()
        .find(|d| d.code == Code::IstioReplaced)
        .unwrap();
    assert_eq!(
        replaced.message,
        "AuthorizationPolicy `foo/httpbin` replaces the earlier resource of the same kind and \
         name at mesh.yaml:3, which is not imported"
    );
}

#[test]
fn a_later_networking_document_replaces_the_earlier_one() {
    let yaml = format!(
        "{SERVICE_ENTRY}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: shop}}
spec:
  hosts: [reviews.example]
  resolution: STATIC
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  endpoints: [{{address: 10.0.0.9}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: vm, namespace: shop}}
spec: {{address: 10.1.0.1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: vm, namespace: shop}}
spec: {{address: 10.1.0.2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: shop}}
spec:
  host: reviews.example
  subsets: [{{name: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: shop}}
spec:
  host: reviews.example
  subsets: [{{name: v1}}, {{name: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec:
  hosts: [reviews.example]
  http: [{{route: [{{destination: {{host: reviews.example, subset: v1}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec:
  hosts: [reviews.example]
  http: [{{route: [{{destination: {{host: reviews.example, subset: v2}}}}]}}]
"
    );
    let compiled = compile(&yaml).unwrap_or_else(|f| panic!("{}", f.render()));
    let found = codes_and_lines(&compiled.warnings, &compiled.sources);
    let replaced: Vec<usize> = found
        .iter()
        .filter(|(code, _)| *code == Code::IstioReplaced)
        .map(|&(_, line)| line)
        .collect();
    assert_eq!(replaced, [23, 37, 49, 63], "{found:?}");
    let snapshot = &compiled.snapshot;
    let (index, service) = snapshot.service("reviews.example").unwrap();
    assert_eq!(service.ports[0].number, 8080);
    let addresses: Vec<String> = service
        .endpoints
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(addresses, ["10.0.0.9:8080"]);
    assert_eq!(service.subsets.len(), 2);
    let destination = &snapshot.routes[index as usize].rules[0].destinations[0];
    assert_eq!(
        service.subsets[destination.subset.unwrap() as usize].name,
        "v2"
    );
    assert!(snapshot.workload("vm").is_some());
}

#[test]
fn duplicates_across_files_stay_errors() {
    let policy = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec: {}
";
    let mut sources = Sources::new();
    sources.add("a.yaml", policy);
    sources.add("b.yaml", policy);
    let failed = compile_sources(sources).err().unwrap();
    let found = codes_and_lines(&failed.diagnostics, &failed.sources);
    assert!(found.contains(&(Code::Duplicate, 3)), "{found:?}");
    assert!(!found.iter().any(|(code, _)| *code == Code::IstioReplaced));
}

#[test]
fn fields_accepted_without_being_served_travel_in_the_snapshot() {
    let yaml = SERVICE_ENTRY.replace(
        "  resolution: STATIC\n",
        "  resolution: STATIC\n  exportTo: [\".\"]\n",
    );
    let compiled = compile(&yaml).unwrap();
    let unserved: Vec<(String, String)> = compiled
        .snapshot
        .unserved
        .iter()
        .map(|u| (u.code.clone(), u.source.to_string()))
        .collect();
    assert_eq!(
        unserved,
        [("W0200".to_owned(), "mesh.yaml:9:13".to_owned())]
    );
    assert!(compiled.snapshot.unserved[0]
        .message
        .contains("spec.exportTo"));
}

fn authorizations(items: &[ast::Item]) -> Vec<&ast::Authorization> {
    items
        .iter()
        .filter_map(|i| match i {
            ast::Item::Authorization(a) => Some(a),
            _ => None,
        })
        .collect()
}
