//! Outlier detection that can eject every endpoint of a service or subset (W0163): then every
//! request to it fails with 503 until an ejection ends.

use spec::{OutlierDetection, Snapshot};

use super::{diagnostic, Anchors};
use crate::diag::{Code, Diagnostic};

pub(super) fn check(snapshot: &Snapshot, anchors: &Anchors, out: &mut Vec<Diagnostic>) {
    for service in &snapshot.services {
        let own = service.policy.outlier.as_ref();
        let whole = own.filter(|o| ejects_all(o, service.endpoints.len()));
        if let Some(outlier) = whole {
            out.push(warning(
                anchors.service_outlier(&service.name),
                format!("service `{}`", service.name),
                outlier,
                service.endpoints.len(),
            ));
        }
        for subset in &service.subsets {
            let Some(outlier) = subset.policy.outlier.as_ref() else {
                continue;
            };
            // The service's warning already covers a subset that inherits the same settings
            // and reaches the same conclusion.
            if whole.is_some() && Some(outlier) == own {
                continue;
            }
            if ejects_all(outlier, subset.endpoints.len()) {
                out.push(warning(
                    anchors.subset_outlier(&service.name, &subset.name),
                    format!("subset `{}/{}`", service.name, subset.name),
                    outlier,
                    subset.endpoints.len(),
                ));
            }
        }
    }
}

/// Whether ejection can take out all of `endpoints` (none: nothing to eject, and W0107 or E0106
/// say so). A single endpoint always can: an ejection limit below one endpoint still ejects one.
fn ejects_all(outlier: &OutlierDetection, endpoints: usize) -> bool {
    if endpoints == 0 || !detects(outlier) {
        return false;
    }
    let n = endpoints as u64;
    endpoints == 1 || n * u64::from(outlier.max_ejection_percent) / 100 >= n
}

/// Whether any ejection trigger is enabled.
fn detects(outlier: &OutlierDetection) -> bool {
    outlier.consecutive_5xx.is_some() || outlier.consecutive_gateway_errors.is_some()
}

fn warning(
    at: Option<crate::diag::SourceSpan>,
    what: String,
    outlier: &OutlierDetection,
    endpoints: usize,
) -> Diagnostic {
    let why = if endpoints == 1 {
        "has a single endpoint and outlier detection".to_owned()
    } else {
        format!(
            "has {endpoints} endpoints and `max_ejection_percent {}`",
            outlier.max_ejection_percent
        )
    };
    diagnostic(
        Code::CanEjectEveryEndpoint,
        at,
        format!(
            "{what} {why}: it can eject every endpoint; meshd then ignores the ejections \
             (panic mode) and sends requests to the failing endpoints too"
        ),
    )
    .with_help(if endpoints == 1 {
        "add endpoints, or remove the outlier detection of a single-endpoint service".to_owned()
    } else {
        "lower `max_ejection_percent` below 100 so at least one endpoint stays in rotation"
            .to_owned()
    })
}
