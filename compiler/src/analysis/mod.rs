//! Checks over the whole input that lowering does not need: route rules that can never match or
//! that overlap earlier rules ([`shadow`]), and HTTP declared on well-known ports of non-HTTP
//! protocols ([`ports`]). They read the syntax tree (for positions) and only add diagnostics; the
//! rules and their order are documented in `docs/diagnostics.md`.

mod ports;
mod shadow;
pub(crate) mod snapshot;

use crate::ast;
use crate::diag::{Diagnostic, FileId, Sources};

/// Runs every analysis over the parsed (and imported) files; `istio_files` are the files the
/// Istio import read.
pub(crate) fn analyze(
    files: &[ast::File],
    sources: &Sources,
    istio_files: &[FileId],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for file in files {
        let origin = if istio_files.contains(&file.id) {
            ast::Origin::Istio
        } else {
            ast::Origin::Mesh
        };
        for item in &file.items {
            match item {
                ast::Item::Route(route) => {
                    shadow::check_route(file.id, origin, route, sources, &mut out)
                }
                ast::Item::Service(service) => ports::check_service(file.id, service, &mut out),
                ast::Item::Workload(workload) => {
                    ports::check_workload(file.id, origin, workload, &mut out);
                }
                ast::Item::Authorization(_)
                | ast::Item::Authentication(_)
                | ast::Item::PeerAuthentication(_)
                | ast::Item::Telemetry(_)
                | ast::Item::Sidecar(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
