//! `metadata`: its known fields, its labels, and the Istio annotations that would change how
//! Istio treats the object.

use super::fields::OBJECT_META;
use crate::ast;
use crate::istio::yaml::Node;
use crate::istio::Out;

/// Annotations Istio's own components write, which describe rather than configure.
const DESCRIPTIVE: &[&str] = &["sidecar.istio.io/status", "istio.io/rev"];

/// W0202 for unknown `metadata` fields; W0200 for Istio annotations (and the injection label)
/// the import does not apply.
pub(super) fn check(out: &mut Out<'_>, metadata: &Node, path: &str) {
    if out.map(metadata, path).is_none() {
        return;
    }
    out.check_fields(metadata, path, OBJECT_META);
    for field in ["annotations", "labels"] {
        let Some(map) = metadata.get(field) else {
            continue;
        };
        for (key, value) in map.entries().unwrap_or_default() {
            let Some(key_text) = key.as_str() else {
                continue;
            };
            let at = format!("{path}.{field}.{key_text}");
            if key_text == "sidecar.istio.io/inject" {
                if value.as_str() == Some("false") {
                    out.unsupported(&at, value, "the workload is imported as one with a sidecar");
                }
            } else if field == "annotations"
                && is_istio(key_text)
                && !DESCRIPTIVE.contains(&key_text)
            {
                out.unsupported(&at, value, "ignored");
            }
        }
    }
}

/// Whether an annotation key is in an Istio domain (`sidecar.istio.io/...`, `istio.io/...`).
fn is_istio(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(domain, _)| domain == "istio.io" || domain.ends_with(".istio.io"))
}

/// `metadata.labels` (none when absent).
pub(super) fn labels(out: &mut Out<'_>, metadata: Option<&Node>, path: &str) -> Vec<ast::Label> {
    metadata
        .and_then(|m| m.get("labels"))
        .map(|l| out.labels(l, &format!("{path}.labels")))
        .unwrap_or_default()
}
