//! Unit tests of the Istio import, through `compile_sources` so the lowering runs too.

use crate::diag::{Code, Sources};
use crate::{compile_sources, Compiled, Diagnostic, Failed};

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
fn maps_service_entry_to_service_with_endpoints() {
    let compiled = compile(SERVICE_ENTRY).unwrap();
    let (_, service) = compiled.snapshot.service("reviews.example").unwrap();
    assert_eq!(service.namespace, "shop");
    assert_eq!(service.ports[0].protocol, spec::Protocol::Http);
    let addresses: Vec<String> = service
        .endpoints
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(addresses, ["10.0.0.1:9080", "10.0.0.2:9090"]);
    assert_eq!(service.endpoints[1].weight, 3);
    assert!(
        compiled.warnings.is_empty(),
        "{}",
        compiled.render_warnings()
    );
}

#[test]
fn skips_dns_endpoints_with_a_warning_and_keeps_the_service() {
    let yaml = "\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: https, protocol: TLS}]
  endpoints:
  - address: api.example.com
";
    let compiled = compile(yaml).unwrap();
    let found = codes_and_lines(&compiled.warnings, &compiled.sources);
    assert!(found.contains(&(Code::IstioNotExpressible, 7)), "{found:?}"); // TLS -> tcp
    assert!(found.contains(&(Code::IstioNotExpressible, 9)), "{found:?}"); // DNS endpoint
    assert!(found.contains(&(Code::IstioIncomplete, 5)), "{found:?}");
    let (_, service) = compiled.snapshot.service("api.example.com").unwrap();
    assert_eq!(service.ports[0].protocol, spec::Protocol::Tcp);
    assert!(service.endpoints.is_empty());
}

#[test]
fn imports_subsets_and_routes_across_documents() {
    let yaml = format!(
        "{SERVICE_ENTRY}---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: reviews, namespace: shop}}
spec:
  host: reviews.example
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec:
  hosts: [reviews.example]
  http:
  - match:
    - uri: {{prefix: /beta}}
      headers: {{x-canary: {{exact: 'true'}}}}
    route:
    - destination: {{host: reviews.example, subset: v2}}
  - route:
    - destination: {{host: reviews.example, subset: v1}}
      weight: 90
    - destination: {{host: reviews.example, subset: v2}}
      weight: 10
"
    );
    let compiled = compile(&yaml).unwrap();
    let snapshot = &compiled.snapshot;
    let (index, service) = snapshot.service("reviews.example").unwrap();
    assert_eq!(service.subsets.len(), 2);
    let table = &snapshot.routes[index as usize];
    let names: Vec<&str> = table.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["reviews-0", "reviews-1"]);
    let first = &table.rules[0].matches[0];
    assert_eq!(first.path, Some(spec::PathMatch::Prefix("/beta".into())));
    assert_eq!(first.headers[0].name, "x-canary");
    assert_eq!(table.rules[1].destinations[0].weight, 90);
    assert_eq!(table.rules[0].source.line, 36);
}

#[test]
fn drops_rules_with_unsupported_matches_and_keeps_others() {
    let yaml = format!(
        "{SERVICE_ENTRY}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: shop}}
spec:
  hosts: [reviews.example, unknown.example]
  http:
  - name: regex
    match:
    - uri: {{regex: '/a.*'}}
    route: [{{destination: {{host: reviews.example}}}}]
  - name: rest
    timeout: 2s
    route: [{{destination: {{host: reviews.example}}}}]
"
    );
    let compiled = compile(&yaml).unwrap();
    let found = codes_and_lines(&compiled.warnings, &compiled.sources);
    assert!(
        found.contains(&(Code::IstioUnsupportedField, 29)),
        "{found:?}"
    ); // uri regex
    assert!(
        found.contains(&(Code::IstioUnsupportedField, 32)),
        "{found:?}"
    ); // timeout
    assert!(
        found.contains(&(Code::IstioNotExpressible, 25)),
        "{found:?}"
    ); // unknown host
    let (index, _) = compiled.snapshot.service("reviews.example").unwrap();
    let rules = &compiled.snapshot.routes[index as usize].rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].name, "rest");
}

#[test]
fn workload_entry_becomes_endpoint_and_workload() {
    let yaml = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: shop}
spec:
  address: 10.1.0.5
  labels: {app: db}
  serviceAccount: db
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.shop.svc.cluster.local]
  ports: [{number: 5432, name: tcp-db, protocol: TCP}]
  resolution: STATIC
  workloadSelector: {labels: {app: db}}
";
    let compiled = compile(yaml).unwrap();
    let (_, service) = compiled
        .snapshot
        .service("db.shop.svc.cluster.local")
        .unwrap();
    assert_eq!(service.endpoints[0].address.to_string(), "10.1.0.5:5432");
    let workload = compiled.snapshot.workload("vm-1").unwrap();
    assert_eq!(
        workload.identity.as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/db")
    );
}

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
fn out_of_scope_and_security_kinds_are_warnings() {
    let yaml = "\
apiVersion: v1
kind: Service
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
            (Code::IstioUnsupportedKind, 6),
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
fn checks_security_resources_before_ignoring_them() {
    let yaml = "\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r}
spec:
  jwtRules:
  - issuer: example
    timeout: apple
    jwksUri: example.com/keys
";
    let failed = compile(yaml).unwrap_err();
    let found = codes_and_lines(&failed.diagnostics, &failed.sources);
    assert_eq!(
        found,
        [
            (Code::IstioUnsupportedKind, 2),
            (Code::IstioSchema, 7),
            (Code::IstioSchema, 8)
        ]
    );
}

#[test]
fn parses_durations_like_kubernetes() {
    assert!(super::security::is_duration("5s"));
    assert!(super::security::is_duration("1m30.5s"));
    assert!(!super::security::is_duration("apple"));
    assert!(!super::security::is_duration(""));
}
