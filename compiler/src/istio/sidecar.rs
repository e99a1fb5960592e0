//! Istio `Sidecar` (`networking.istio.io`): of its settings meshd serves the outbound traffic
//! policy (`outboundTrafficPolicy.mode`), for the mesh (the root namespace without a
//! selector), a namespace, or the workloads `workloadSelector` picks; it lowers to the
//! `outbound_traffic` a DSL workload writes. The rest (egress and ingress listeners, the
//! egress proxy, connection pools) is W0200 and listed under `not_enforced`.

use super::security::Header;
use super::yaml::Node;
use super::Out;
use crate::ast;

const SPEC_FIELDS: &[&str] = &[
    "workloadSelector",
    "ingress",
    "egress",
    "outboundTrafficPolicy",
    "inboundConnectionPool",
];

/// Lowers a `Sidecar`.
pub(super) fn lower(out: &mut Out<'_>, header: &Header, spec: &Node) -> Option<ast::Item> {
    out.map(spec, "spec")?;
    out.check_fields(spec, "spec", SPEC_FIELDS);
    for field in ["ingress", "egress", "inboundConnectionPool"] {
        if let Some(node) = spec.get(field) {
            out.unsupported(&format!("spec.{field}"), node, "ignored");
        }
    }
    let mut target = ast::PolicyTarget {
        namespace: header.scope(),
        ..ast::PolicyTarget::default()
    };
    if let Some(selector) = spec.get("workloadSelector") {
        out.map(selector, "spec.workloadSelector")?;
        out.fields(selector, "spec.workloadSelector", &["labels"], &[], "");
        if let Some(labels) = selector.get("labels") {
            target.selector = Some(out.labels(labels, "spec.workloadSelector.labels"));
        }
    }
    header.scope_selector_locally(&mut target);
    let mut sidecar = ast::Sidecar {
        span: header.kind_span,
        target: Box::new((header.name.clone(), target)),
        outbound_traffic: None,
    };
    if let Some(policy) = spec.get("outboundTrafficPolicy") {
        let path = "spec.outboundTrafficPolicy";
        out.map(policy, path)?;
        out.fields(policy, path, &["mode", "egressProxy"], &[], "");
        if let Some(proxy) = policy.get("egressProxy") {
            out.unsupported(&format!("{path}.egressProxy"), proxy, "ignored");
        }
        if let Some(mode) = policy.get("mode") {
            let word = match out.str(mode, &format!("{path}.mode"))? {
                "ALLOW_ANY" => "allow_any",
                "REGISTRY_ONLY" => "registry_only",
                other => {
                    let message = format!(
                        "`{path}.mode`: unsupported value {other:?}, expected one of ALLOW_ANY, \
                         REGISTRY_ONLY"
                    );
                    out.schema(mode.span, message);
                    return None;
                }
            };
            sidecar.outbound_traffic = Some(ast::Ident {
                name: word.to_owned(),
                span: mode.span,
            });
        }
    }
    Some(ast::Item::Sidecar(sidecar))
}
