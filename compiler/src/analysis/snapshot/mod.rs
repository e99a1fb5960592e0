//! Checks over the compiled [`Snapshot`]: what the data plane will do with a valid config that
//! is probably not what its author meant. Retry budgets against timeouts ([`retries`]), outlier
//! detection that can eject every endpoint ([`ejection`]), authorization that locks callers or
//! health probes out ([`authz`]), and mutual TLS that callers cannot speak ([`identity`]).
//!
//! They run after lowering succeeded and only add diagnostics. Route rules and policies carry
//! their [`spec::SourceLocation`]; services, subsets and workloads do not, so their positions
//! come from the syntax tree ([`Anchors`]). A finding without a known position is still
//! reported, without a span. The rules are documented in `docs/diagnostics.md`.

mod authz;
mod ejection;
mod identity;
mod retries;

use std::collections::HashMap;

use spec::{Snapshot, SourceLocation};

use crate::ast;
use crate::diag::{Code, Diagnostic, SourceSpan, Sources};

/// Positions of the snapshot's services, subsets and workloads in the config.
#[derive(Clone, Debug, Default)]
pub(crate) struct Anchors {
    services: HashMap<String, ServiceAnchor>,
    /// By name and namespace.
    workloads: HashMap<(String, String), SourceSpan>,
}

/// Where a service, its outlier settings and its subsets were written.
#[derive(Clone, Debug)]
struct ServiceAnchor {
    name: SourceSpan,
    outlier: Option<SourceSpan>,
    /// Subset name, and the subset's own `outlier` block if it has one.
    subsets: HashMap<String, (SourceSpan, Option<SourceSpan>)>,
}

impl Anchors {
    /// Collects the positions from the parsed files; the first declaration of a name wins
    /// (lowering reports duplicates).
    pub(crate) fn from_files(files: &[ast::File]) -> Self {
        let mut anchors = Self::default();
        for file in files {
            let at = |span| SourceSpan {
                file: file.id,
                span,
            };
            for item in &file.items {
                match item {
                    ast::Item::Service(service) => {
                        // A DestinationRule's policies and subsets live in its own file.
                        let outlier = |policy: Option<&ast::Policy>| {
                            let p = policy?;
                            let span = p.outlier.as_ref()?.span;
                            Some(SourceSpan {
                                file: p.file.unwrap_or(file.id),
                                span,
                            })
                        };
                        let subsets = service
                            .subsets
                            .iter()
                            .map(|s| {
                                let own = outlier(s.policy.as_ref());
                                let name = SourceSpan {
                                    file: s.file.unwrap_or(file.id),
                                    span: s.name.span,
                                };
                                (s.name.name.clone(), (name, own))
                            })
                            .collect();
                        anchors.services.entry(service.name.name.clone()).or_insert(
                            ServiceAnchor {
                                name: at(service.name.span),
                                outlier: outlier(service.policies.first()),
                                subsets,
                            },
                        );
                    }
                    ast::Item::Workload(workload) => {
                        let namespace = workload
                            .namespace
                            .as_ref()
                            .map_or(spec::host::DEFAULT_NAMESPACE, |n| n.name.as_str());
                        anchors
                            .workloads
                            .entry((workload.name.name.clone(), namespace.to_owned()))
                            .or_insert(at(workload.name.span));
                    }
                    _ => {}
                }
            }
        }
        anchors
    }

    /// The service's outlier block, or its name.
    fn service_outlier(&self, service: &str) -> Option<SourceSpan> {
        let anchor = self.services.get(service)?;
        Some(anchor.outlier.unwrap_or(anchor.name))
    }

    /// The subset's own outlier block, else (it inherits the service's) the subset's name.
    fn subset_outlier(&self, service: &str, subset: &str) -> Option<SourceSpan> {
        let (name, own) = self.services.get(service)?.subsets.get(subset)?;
        Some(own.unwrap_or(*name))
    }

    /// The workload's name in its declaration.
    fn workload(&self, workload: &spec::Workload) -> Option<SourceSpan> {
        let key = (workload.name.clone(), workload.namespace.clone());
        self.workloads.get(&key).copied()
    }
}

/// Runs every snapshot analysis.
pub(crate) fn analyze(
    snapshot: &Snapshot,
    anchors: &Anchors,
    sources: &Sources,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    retries::check(snapshot, sources, &mut out);
    ejection::check(snapshot, anchors, &mut out);
    authz::check(snapshot, sources, &mut out);
    identity::check(snapshot, anchors, &mut out);
    out
}

/// A diagnostic at `at` when it is known, without a span otherwise.
fn diagnostic(code: Code, at: Option<SourceSpan>, message: String) -> Diagnostic {
    match at {
        Some(at) => Diagnostic::new(code, at, message),
        None => Diagnostic::without_span(code, message),
    }
}

/// A diagnostic at a snapshot source location (see [`Sources::span_at`]).
fn at_location(
    code: Code,
    sources: &Sources,
    location: &SourceLocation,
    message: String,
) -> Diagnostic {
    diagnostic(code, sources.span_at(location), message)
}

/// Milliseconds as the config writes durations: `1500ms`, `2s`.
fn duration(ms: u64) -> String {
    if ms % 1000 == 0 && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests;
