//! Istio's `Sidecar`: the outbound traffic policy, by root namespace, namespace and selector.

use super::*;

fn policy_of(compiled: &Compiled, workload: &str) -> spec::OutboundTraffic {
    let found = compiled
        .snapshot
        .workloads
        .iter()
        .find(|w| w.name == workload);
    found.map(|w| w.outbound_traffic).expect("workload")
}

#[test]
fn the_most_specific_sidecar_decides_as_in_istio() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: istio-system}}
spec: {{outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: shop}}
spec:
  egress: [{{hosts: [./*]}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: api, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: api}}}}
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"
    );
    let compiled = compile(&yaml).unwrap_or_else(|f| panic!("{}", f.render()));
    // The root namespace's applies where the namespace has none.
    assert_eq!(
        policy_of(&compiled, "db-1"),
        spec::OutboundTraffic::RegistryOnly
    );
    // The namespace's Sidecar says nothing of the policy: Istio's mesh default, ALLOW_ANY.
    assert_eq!(
        policy_of(&compiled, "web-1"),
        spec::OutboundTraffic::AllowAny
    );
    assert_eq!(
        policy_of(&compiled, "api-1"),
        spec::OutboundTraffic::RegistryOnly
    );
    // Its egress listeners are not served: W0200 at the field.
    let lines = codes_and_lines(&compiled.warnings, &compiled.sources);
    assert!(
        lines.contains(&(Code::IstioUnsupportedField, 25)),
        "{lines:?}"
    );
}

#[test]
fn two_namespace_sidecars_for_one_workload_are_a_duplicate() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: a, namespace: shop}}
spec: {{outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: b, namespace: shop}}
spec: {{outboundTrafficPolicy: {{mode: ALLOW_ANY}}}}
"
    );
    let Err(failed) = compile(&yaml) else {
        panic!("two namespace-wide Sidecars compiled")
    };
    let codes: Vec<Code> = failed.diagnostics.iter().map(|d| d.code).collect();
    assert!(codes.contains(&Code::Duplicate), "{codes:?}");
}

#[test]
fn a_root_sidecar_with_a_selector_stays_in_the_root_namespace() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web-only, namespace: istio-system}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"
    );
    let compiled = compile(&yaml).unwrap_or_else(|f| panic!("{}", f.render()));
    assert_eq!(
        policy_of(&compiled, "web-1"),
        spec::OutboundTraffic::AllowAny
    );
}
