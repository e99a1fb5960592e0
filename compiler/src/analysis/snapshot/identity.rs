//! Mutual TLS nobody can speak: a caller without an identity calling a service whose server
//! requires mTLS (E0168), and a workload requiring mTLS without an identity of its own (W0169).

use std::collections::BTreeSet;

use spec::{Snapshot, TlsMode, Workload};

use super::{diagnostic, Anchors};
use crate::diag::{Code, Diagnostic};

pub(super) fn check(snapshot: &Snapshot, anchors: &Anchors, out: &mut Vec<Diagnostic>) {
    // One error per caller and service, even when several servers require mTLS for it.
    let mut reported = BTreeSet::new();
    for server in &snapshot.workloads {
        let strict: Vec<u16> = server
            .inbound
            .iter()
            .filter(|p| p.tls == TlsMode::Strict)
            .map(|p| p.port)
            .collect();
        if strict.is_empty() {
            continue;
        }
        if server.identity.is_none() {
            out.push(
                diagnostic(
                    Code::StrictWithoutIdentity,
                    anchors.workload(server),
                    format!(
                        "workload `{}` requires mTLS on port{} {} but has no identity: its \
                         sidecar has no certificate to accept mTLS with, so every connection \
                         to {} fails",
                        server.name,
                        if strict.len() == 1 { "" } else { "s" },
                        list(&strict),
                        if strict.len() == 1 { "it" } else { "them" },
                    ),
                )
                .with_help(format!(
                    "give `{}` an `identity \"spiffe://...\"`, or make the port permissive",
                    server.name
                )),
            );
        }
        for &service in &server.serves {
            let Some(served) = snapshot.services.get(service as usize) else {
                continue;
            };
            // The service ports callers address that the server requires mTLS on.
            let ports: Vec<u16> = served
                .ports
                .iter()
                .map(|p| p.number)
                .filter(|n| strict.contains(n))
                .collect();
            if ports.is_empty() {
                continue;
            }
            for caller in callers_without_identity(snapshot, server, service) {
                if !reported.insert((caller.name.as_str(), caller.namespace.as_str(), service)) {
                    continue;
                }
                out.push(
                    diagnostic(
                        Code::CallerWithoutIdentity,
                        anchors.workload(caller),
                        format!(
                            "workload `{}` calls service `{}`, but `{}` serves it with mTLS \
                             strict on port{} {} and `{}` has no identity: its requests are \
                             refused",
                            caller.name,
                            served.name,
                            server.name,
                            if ports.len() == 1 { "" } else { "s" },
                            list(&ports),
                            caller.name,
                        ),
                    )
                    .with_help(format!(
                        "give `{}` an `identity \"spiffe://...\"`, or set `mtls permissive` on \
                         `{}`'s inbound port",
                        caller.name, server.name
                    )),
                );
            }
        }
    }
}

/// Workloads other than `server` that call `service` and have no identity.
fn callers_without_identity<'a>(
    snapshot: &'a Snapshot,
    server: &'a Workload,
    service: u32,
) -> impl Iterator<Item = &'a Workload> {
    snapshot.workloads.iter().filter(move |w| {
        w.name != server.name && w.identity.is_none() && w.outbound.contains(&service)
    })
}

fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
