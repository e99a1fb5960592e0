//! W0107 for the subsets of a Kubernetes Service without endpoints, checked against its Pods
//! and pod templates instead (Istio's IST0173 looks at Pods too): with no endpoint at all the
//! lowering cannot tell an empty subset from an empty service.

use std::collections::HashMap;

use crate::ast;
use crate::diag::Code;
use crate::istio::Out;

/// Labels Istio gives a Pod's endpoints from its Node (locality, network): not read, so a
/// subset asking for one with a value is taken to be satisfied by it; an empty value never is.
const NODE_LABELS: &[&str] = &[
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
    "topology.istio.io/network",
    "topology.istio.io/cluster",
    "kubernetes.io/hostname",
];

/// The label sets of the workloads serving each Kubernetes Service, by service name (FQDN).
pub(in crate::istio) type Members = HashMap<String, Vec<Vec<ast::Label>>>;

/// W0107 for each of `subsets` (of `service`, just added by a DestinationRule of `out.file`)
/// that no workload serving the service carries the labels of, when the service has no
/// endpoints; nothing for other services.
pub(in crate::istio) fn check(
    out: &mut Out<'_>,
    members: &Members,
    service: &ast::Service,
    subsets: &[ast::Subset],
) {
    let Some(workloads) = members.get(&service.name.name) else {
        return;
    };
    if !service.endpoints.is_empty() {
        return;
    }
    for subset in subsets {
        let selected = workloads.iter().any(|labels| {
            subset.selector.iter().all(|want| {
                let from_node = NODE_LABELS.contains(&want.key.name.as_str());
                (from_node && !want.value.value.is_empty())
                    || labels
                        .iter()
                        .any(|l| l.key.name == want.key.name && l.value.value == want.value.value)
            })
        });
        if selected {
            continue;
        }
        let wanted: Vec<String> = subset
            .selector
            .iter()
            .map(|l| format!("{} = {:?}", l.key.name, l.value.value))
            .collect();
        out.push(
            Code::EmptySubset,
            subset.name.span,
            format!(
                "subset `{}` of service `{}` selects no Pod (the service has no endpoints)",
                subset.name.name, service.name.name
            ),
            &format!(
                "no Pod or pod template serving it carries all of: {}",
                wanted.join(", ")
            ),
        );
    }
}
