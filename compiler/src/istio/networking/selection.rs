//! Selections meshc does not join across kinds yet: a Kubernetes Service's selector matching a
//! WorkloadEntry, and a ServiceEntry's `workloadSelector` matching a Pod or workload
//! controller. Istio joins both; here neither match makes an endpoint, so each says so (W0203)
//! rather than leaving a workload silently out of a service.

use super::workload_entry::WorkloadEntry;
use crate::ast;
use crate::diag::{FileId, Span};
use crate::istio::kubernetes::Selector;
use crate::istio::{selects, Out, Resource};

/// W0203 at each Kubernetes Service whose selector matches a WorkloadEntry.
pub(super) fn services_selecting_entries(
    out: &mut Out<'_>,
    selectors: &[Selector],
    entries: &[WorkloadEntry<'_>],
) {
    for selector in selectors {
        let matched = entries
            .iter()
            .filter(|e| e.namespace == selector.namespace && selects(&selector.labels, &e.labels));
        for entry in matched {
            out.file = selector.file;
            out.inexpressible(
                selector.name.span,
                format!(
                    "Kubernetes Service `{}/{}` selects WorkloadEntry `{}` by its labels, which \
                     meshc does not join yet: it is not an endpoint of the Service",
                    selector.namespace, selector.name.name, entry.workload.name.name
                ),
                "select the WorkloadEntry with a ServiceEntry's `workloadSelector`, or list its \
                 address in the Service's EndpointSlice",
            );
        }
    }
}

/// W0203 at a ServiceEntry's `workloadSelector` for each Pod or controller it matches.
pub(super) fn entry_selecting_pods(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    at: Span,
    selector: &[ast::Label],
    pods: &[(FileId, ast::Workload)],
) {
    let matches = |w: &ast::Workload| {
        let namespace = w.namespace.as_ref().map(|n| n.name.as_str());
        // An empty selector selects every workload of the namespace, as for WorkloadEntries.
        namespace == Some(r.namespace.as_str())
            && (selector.is_empty() || selects(selector, &w.labels))
    };
    for (_, workload) in pods.iter().filter(|(_, w)| matches(w)) {
        out.inexpressible(
            at,
            format!(
                "the `workloadSelector` of ServiceEntry `{}/{}` matches Kubernetes workload `{}`, \
                 which meshc does not join yet (a ServiceEntry selects WorkloadEntries): it is \
                 not an endpoint of the ServiceEntry",
                r.namespace, r.name.name, workload.name.name
            ),
            "select it with a Kubernetes Service instead, or declare a WorkloadEntry for it",
        );
    }
}
