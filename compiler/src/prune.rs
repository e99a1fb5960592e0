//! Per-workload snapshots: only the services, route tables and host names one sidecar can reach.
//!
//! `meshd --workload W` routes a request by its host, and only hosts of the services in W's
//! `outbound` list are visible (`dataplane/src/routing.rs`). A rule of those services may send
//! (or mirror) to other services, whose endpoints and subsets must then be present too; their own route
//! tables are kept as well, so the closure is taken transitively (a route on service A sends to
//! B, B's route sends to C, ...). Everything else is dropped and every index is renumbered.
//! Kept items keep their original relative order, so the result is sorted like its input and a
//! pure function of it.

use spec::{HostEntry, RouteTable, Snapshot, Workload};

/// The snapshot `meshd --workload NAME` needs: the workload (alone in `workloads`), the
/// services in its `outbound` list plus every service their route rules send to, transitively,
/// with those services' route tables and host entries. `None` if there is no such workload.
///
/// `snapshot` must be valid ([`Snapshot::validate`]), as [`crate::compile`] and [`spec::decode`]
/// return it; the result is then valid too, and routes every request of that workload to the
/// same destinations. A workload declared without an `outbound` list may call every service
/// (lowering lists them all), so it keeps the whole mesh.
pub fn for_workload(snapshot: &Snapshot, name: &str) -> Option<Snapshot> {
    let workload = snapshot.workload(name)?;
    let keep = reachable(snapshot, &workload.outbound);

    // Old service index -> new one, for the kept services.
    let mut service_map: Vec<Option<u32>> = vec![None; snapshot.services.len()];
    let mut services = Vec::new();
    for (old, service) in snapshot.services.iter().enumerate() {
        if keep[old] {
            service_map[old] = Some(services.len() as u32);
            services.push(service.clone());
        }
    }
    let map_service = |old: u32| service_map.get(old as usize).copied().flatten();

    let mut table_map: Vec<Option<u32>> = vec![None; snapshot.routes.len()];
    let mut routes = Vec::new();
    for (old, table) in snapshot.routes.iter().enumerate() {
        let Some(service) = map_service(table.service) else {
            continue;
        };
        // Rules keep their order and paths, so the path index carries over unchanged.
        let mut table = RouteTable {
            service,
            rules: table.rules.clone(),
            index: table.index.clone(),
        };
        for rule in &mut table.rules {
            for destination in &mut rule.destinations {
                // Reachability put every destination of a kept table in `keep`.
                if let Some(service) = map_service(destination.service) {
                    destination.service = service;
                }
            }
            // Mirror targets are reachable too.
            if let Some(mirror) = &mut rule.mirror {
                if let Some(service) = map_service(mirror.service) {
                    mirror.service = service;
                }
            }
        }
        table_map[old] = Some(routes.len() as u32);
        routes.push(table);
    }

    let hosts = snapshot
        .hosts
        .iter()
        // Short names of other namespaces are not this workload's to resolve.
        .filter(|h| h.resolves_for(&workload.namespace))
        .filter_map(|h| {
            let route_table = table_map.get(h.route_table as usize).copied().flatten()?;
            Some(HostEntry {
                host: h.host.clone(),
                namespace: h.namespace.clone(),
                route_table,
            })
        })
        .collect();

    let workload = Workload {
        // The map is increasing, so the list stays ascending.
        outbound: workload
            .outbound
            .iter()
            .filter_map(|&s| map_service(s))
            .collect(),
        // Served services stay listed only when they are kept for the outbound side: the
        // per-workload snapshot holds only what the sidecar can route to.
        serves: workload
            .serves
            .iter()
            .filter_map(|&s| map_service(s))
            .collect(),
        ..workload.clone()
    };

    Some(Snapshot {
        services,
        routes,
        hosts,
        workloads: vec![workload],
        unserved: snapshot.unserved.clone(),
        telemetry: snapshot.telemetry.clone(),
    })
}

/// Marks the services in `roots` and every service a route table of a marked service sends or
/// mirrors to.
fn reachable(snapshot: &Snapshot, roots: &[u32]) -> Vec<bool> {
    let count = snapshot.services.len();
    let mut tables_of: Vec<Vec<&RouteTable>> = vec![Vec::new(); count];
    for table in &snapshot.routes {
        if let Some(tables) = tables_of.get_mut(table.service as usize) {
            tables.push(table);
        }
    }
    let mut keep = vec![false; count];
    let mut pending: Vec<u32> = Vec::new();
    fn visit(service: u32, keep: &mut [bool], pending: &mut Vec<u32>) {
        if let Some(seen) = keep.get_mut(service as usize) {
            if !*seen {
                *seen = true;
                pending.push(service);
            }
        }
    }
    for &root in roots {
        visit(root, &mut keep, &mut pending);
    }
    while let Some(service) = pending.pop() {
        for table in &tables_of[service as usize] {
            for rule in &table.rules {
                for destination in &rule.destinations {
                    visit(destination.service, &mut keep, &mut pending);
                }
                if let Some(mirror) = &rule.mirror {
                    visit(mirror.service, &mut keep, &mut pending);
                }
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests;
