//! The telemetry kind: Istio's `Telemetry`, by mesh, namespace and selector.

use super::*;
use crate::istio::telemetry::ISTIO_DEFAULT_FORMAT;

fn telemetry_of(compiled: &Compiled, workload: &str) -> spec::Telemetry {
    compiled
        .snapshot
        .workloads
        .iter()
        .find(|w| w.name == workload)
        .map(|w| w.telemetry.clone())
        .expect("workload")
}

#[test]
fn telemetry_applies_by_mesh_then_namespace_then_selector() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  accessLogging:
  - providers: [{{name: envoy}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: shop-tracing, namespace: shop}}
spec:
  tracing:
  - randomSamplingPercentage: 10
---
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {{name: quiet-api, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  accessLogging:
  - disabled: true
  metrics:
  - providers: [{{name: prometheus}}]
    overrides:
    - disabled: true
"
    );
    let compiled = compile(&yaml).expect("compiles");
    let istio = Some(spec::AccessLog::Text(ISTIO_DEFAULT_FORMAT.to_owned()));
    assert_eq!(compiled.snapshot.telemetry.access_log, istio);
    let web = telemetry_of(&compiled, "web-1");
    assert_eq!(web.access_log, istio);
    assert_eq!(web.trace_sampling_per_million, 100_000);
    assert!(!web.metrics_disabled);
    let api = telemetry_of(&compiled, "api-1");
    assert_eq!(api.access_log, None);
    assert_eq!(api.trace_sampling_per_million, 100_000);
    assert!(api.metrics_disabled);
    let db = telemetry_of(&compiled, "db-1");
    assert_eq!(db.access_log, istio);
    assert_eq!(db.trace_sampling_per_million, 0);
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
}

#[test]
fn what_meshd_cannot_serve_is_w0200_and_travels_as_unserved() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: shop, namespace: shop}}
spec:
  accessLogging:
  - providers: [{{name: otel}}]
    filter: {{expression: response.code >= 400}}
    match: {{mode: SERVER}}
  tracing:
  - customTags: {{team: {{literal: {{value: a}}}}}}
  metrics:
  - overrides:
    - match: {{metric: REQUEST_COUNT}}
      disabled: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: gateway, namespace: shop}}
spec:
  targetRefs: [{{kind: Gateway, name: edge}}]
  accessLogging:
  - providers: [{{name: envoy}}]
"
    );
    let compiled = compile(&yaml).expect("compiles");
    let lines: Vec<(Code, usize)> = codes_and_lines(&compiled.warnings, &compiled.sources);
    let unsupported = lines
        .iter()
        .filter(|(c, _)| *c == Code::IstioUnsupportedField)
        .count();
    assert_eq!(unsupported, 6, "{lines:?}");
    let web = telemetry_of(&compiled, "web-1");
    assert_eq!(web, spec::Telemetry::default(), "nothing half-applied");
    assert_eq!(compiled.snapshot.unserved.len(), 6);
}

#[test]
fn two_telemetries_at_one_level_for_one_workload_are_an_error() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: a, namespace: shop}}
spec: {{tracing: [{{randomSamplingPercentage: 1}}]}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: b, namespace: shop}}
spec: {{tracing: [{{randomSamplingPercentage: 2}}]}}
"
    );
    let failed = compile(&yaml).unwrap_err();
    let found = codes_and_lines(&failed.diagnostics, &failed.sources);
    assert!(
        found.iter().any(|(c, _)| *c == Code::Duplicate),
        "{found:?}"
    );
}

#[test]
fn a_root_telemetry_with_a_selector_stays_in_the_root_namespace() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: web-only, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  metrics:
  - providers: [{{name: prometheus}}]
    overrides: [{{disabled: true}}]
"
    );
    let compiled = compile(&yaml).unwrap_or_else(|f| panic!("{}", f.render()));
    assert!(!telemetry_of(&compiled, "web-1").metrics_disabled);
}

#[test]
fn a_flag_that_is_not_a_boolean_is_a_schema_error() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: quiet, namespace: shop}}
spec:
  accessLogging:
  - disabled: \"true\"
"
    );
    let Err(failed) = compile(&yaml) else {
        panic!("a string for `disabled` compiled")
    };
    let lines = codes_and_lines(&failed.diagnostics, &failed.sources);
    assert!(lines.contains(&(Code::IstioSchema, 21)), "{lines:?}");
}
