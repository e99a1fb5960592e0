//! The routing view a worker serves: host → route table → first matching rule → weighted
//! destination → endpoint. Built once per snapshot, shared by every core behind an `Arc`.

use std::collections::HashMap;
use std::net::SocketAddr;

use spec::{PathMatch, RequestMatch, Snapshot};

/// Which traffic a listener carries and so how a request is routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the local application to the mesh: routed by Host.
    Outbound,
    /// From the mesh to the local application: forwarded to the workload's inbound target.
    Inbound,
}

/// An immutable, query-ready view of one snapshot for one workload (or for every service).
#[derive(Debug)]
pub struct RouteState {
    /// Content hash of the snapshot this view was built from.
    pub hash: String,
    /// The snapshot itself, kept for the admin `/config` page.
    pub snapshot: Snapshot,
    hosts: HashMap<Box<str>, u32>,
    /// Flattened (service, subset) groups; a destination names one by index.
    groups: Vec<EndpointGroup>,
    /// `group_of[service]` is the group index of the whole service; subsets follow it.
    group_of: Vec<u32>,
    inbound: Vec<(u16, SocketAddr)>,
}

/// The endpoints one destination balances over.
#[derive(Debug)]
pub struct EndpointGroup {
    /// Human-readable name for error messages and logs: `service` or `service/subset`.
    pub name: String,
    /// Endpoint addresses, in snapshot order.
    pub endpoints: Vec<SocketAddr>,
    /// The order round robin visits `endpoints` (indexes), each endpoint as often as its weight
    /// and spread out (smooth weighted round robin, as nginx does). Empty when there are no
    /// endpoints.
    pub schedule: Vec<u32>,
}

/// Longest weighted round-robin cycle; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 1024;

/// Smooth weighted round robin: each step adds every weight to its endpoint's credit, picks the
/// endpoint with the most credit, and takes the total from it. Weights 5,1,1 give
/// a a b a c a a rather than a a a a a b c.
fn weighted_schedule(weights: &[u32]) -> Vec<u32> {
    let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
    let gcd = weights.iter().copied().fold(0, gcd);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / gcd.max(1)).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        weights = weights
            .iter()
            .map(|w| (w * MAX_SCHEDULE / total).max(1))
            .collect();
    }
    let total: u64 = weights.iter().sum();
    let mut credit = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in credit.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let Some((best, _)) = credit
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, usize::MAX - i))
        else {
            break;
        };
        credit[best] -= total as i64;
        schedule.push(best as u32);
    }
    schedule
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A routing decision for one request.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// Index of the chosen endpoint group (for the per-core round-robin counters).
    pub group_index: usize,
    /// The chosen group.
    pub group: &'a EndpointGroup,
}

/// Why a request could not be routed.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No route table for the request's host.
    UnknownHost,
    /// The host is known but no rule matched.
    NoRuleMatched,
}

/// The parts of a request head that routing looks at.
#[derive(Debug)]
pub struct RequestView<'r, 'h> {
    /// Host without port, as sent.
    pub host: &'r str,
    /// Port from the Host header, if present.
    pub port: Option<u16>,
    /// Path without the query string.
    pub path: &'r str,
    /// Request headers as parsed.
    pub headers: &'r [httparse::Header<'h>],
}

/// The workload named on the command line does not exist in the snapshot.
#[derive(Debug, thiserror::Error)]
#[error("unknown workload {name:?}; the snapshot has: {known}")]
pub struct UnknownWorkload {
    name: String,
    known: String,
}

impl RouteState {
    /// Builds the view a sidecar for `workload` serves; `None` serves every service outbound.
    pub fn new(
        snapshot: Snapshot,
        hash: String,
        workload: Option<&str>,
    ) -> Result<Self, UnknownWorkload> {
        let (visible, inbound) = match workload {
            None => (
                (0..snapshot.services.len() as u32).collect::<Vec<_>>(),
                Vec::new(),
            ),
            Some(name) => {
                let Some(w) = snapshot.workload(name) else {
                    let mut known: Vec<&str> =
                        snapshot.workloads.iter().map(|w| w.name.as_str()).collect();
                    if known.is_empty() {
                        known.push("(no workloads)");
                    }
                    return Err(UnknownWorkload {
                        name: name.to_owned(),
                        known: known.join(", "),
                    });
                };
                let inbound = w.inbound.iter().map(|p| (p.port, p.target)).collect();
                (w.outbound.clone(), inbound)
            }
        };

        let mut groups = Vec::new();
        let mut group_of = Vec::with_capacity(snapshot.services.len());
        for service in &snapshot.services {
            group_of.push(groups.len() as u32);
            let weights: Vec<u32> = service.endpoints.iter().map(|e| e.weight).collect();
            groups.push(EndpointGroup {
                name: service.name.clone(),
                endpoints: service.endpoints.iter().map(|e| e.address).collect(),
                schedule: weighted_schedule(&weights),
            });
            for subset in &service.subsets {
                let members = subset
                    .endpoints
                    .iter()
                    .map(|&i| &service.endpoints[i as usize]);
                let weights: Vec<u32> = members.clone().map(|e| e.weight).collect();
                groups.push(EndpointGroup {
                    name: format!("{}/{}", service.name, subset.name),
                    endpoints: members.map(|e| e.address).collect(),
                    schedule: weighted_schedule(&weights),
                });
            }
        }

        let hosts = snapshot
            .hosts
            .iter()
            .filter(|h| {
                let table = &snapshot.routes[h.route_table as usize];
                visible.binary_search(&table.service).is_ok()
            })
            .map(|h| (h.host.as_str().into(), h.route_table))
            .collect();

        Ok(Self {
            hash,
            snapshot,
            hosts,
            groups,
            group_of,
            inbound,
        })
    }

    /// Every endpoint address this view can route to (outbound and inbound targets).
    pub fn endpoint_addresses(&self) -> std::collections::HashSet<SocketAddr> {
        let outbound = self.groups.iter().flat_map(|g| g.endpoints.iter().copied());
        outbound
            .chain(self.inbound.iter().map(|(_, target)| *target))
            .collect()
    }

    /// Number of endpoint groups, for sizing per-core balancer state.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The local application address inbound traffic for `port` goes to.
    pub fn inbound_target(&self, port: Option<u16>) -> Option<SocketAddr> {
        port.and_then(|p| self.inbound.iter().find(|(q, _)| *q == p))
            .or_else(|| self.inbound.first())
            .map(|(_, target)| *target)
    }

    /// Routes one outbound request. `pick` draws a number in `0..100` for the weighted split.
    pub fn route(
        &self,
        request: &RequestView<'_, '_>,
        pick: impl FnOnce() -> u32,
    ) -> Result<Decision<'_>, RouteError> {
        let table = self
            .lookup_host(request.host)
            .ok_or(RouteError::UnknownHost)?;
        let table = &self.snapshot.routes[table as usize];
        let rule = table
            .rules
            .iter()
            .find(|rule| {
                rule.matches.is_empty() || rule.matches.iter().any(|m| matches(m, request))
            })
            .ok_or(RouteError::NoRuleMatched)?;
        let destination = match rule.destinations.as_slice() {
            [only] => only,
            many => {
                let mut draw = pick();
                many.iter()
                    .find(|d| {
                        if draw < d.weight {
                            true
                        } else {
                            draw -= d.weight;
                            false
                        }
                    })
                    .unwrap_or(&many[many.len() - 1])
            }
        };
        let base = self.group_of[destination.service as usize] as usize;
        let group_index = base + destination.subset.map_or(0, |s| s as usize + 1);
        Ok(Decision {
            group_index,
            group: &self.groups[group_index],
        })
    }

    fn lookup_host(&self, host: &str) -> Option<u32> {
        if let Some(&table) = self.hosts.get(host) {
            return Some(table);
        }
        // Host names are case-insensitive; the snapshot stores them lower-case.
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.hosts.get(host.to_ascii_lowercase().as_str()).copied();
        }
        None
    }
}

fn matches(m: &RequestMatch, request: &RequestView<'_, '_>) -> bool {
    let path_ok = match &m.path {
        None => true,
        Some(PathMatch::Exact(p)) => request.path == p,
        Some(PathMatch::Prefix(p)) => request.path.starts_with(p.as_str()),
        Some(PathMatch::Regex(_)) => false,
    };
    path_ok
        && m.headers.iter().all(|want| {
            let spec::ValueMatch::Exact(exact) = &want.value else {
                return false;
            };
            request
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(&want.name) && h.value == exact.as_bytes())
        })
}

#[cfg(test)]
mod tests;
