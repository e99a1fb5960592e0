//! Checks over the whole input that lowering does not need: route rules that can never match or
//! that overlap earlier rules ([`shadow`]), and HTTP declared on well-known ports of non-HTTP
//! protocols ([`ports`]). They read the syntax tree (for positions) and only add diagnostics; the
//! rules and their order are documented in `docs/diagnostics.md`.

mod ports;
mod shadow;
pub(crate) mod snapshot;

use crate::ast;
use crate::diag::{Diagnostic, FileId, Sources};

/// Runs every analysis over the parsed (and imported) files.
pub(crate) fn analyze(files: &[ast::File], sources: &Sources) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for file in files {
        let origin = origin(file.id, sources);
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
                | ast::Item::Telemetry(_) => {}
            }
        }
    }
    out
}

/// The language a file's declarations were written in. Routes carry no [`ast::Origin`], and the
/// origin of the service a route names says nothing about who wrote the route (a VirtualService
/// may route a `.mesh` service), but `compile_inner` sends exactly the YAML paths to the Istio
/// import, so the path decides.
fn origin(file: FileId, sources: &Sources) -> ast::Origin {
    if crate::istio::is_manifest_path(sources.get(file).path()) {
        ast::Origin::Istio
    } else {
        ast::Origin::Mesh
    }
}

#[cfg(test)]
mod tests;
