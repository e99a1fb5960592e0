//! Outlier detection, host-wide. Each core counts consecutive failures per endpoint
//! ([`Counts`], recorded by [`crate::balancer::Inflight`]) and reports the nonzero counts to the
//! control thread every `interval_ms`. The control thread sums the latest report of every core,
//! decides ejections ([`OutlierState::decide`], a pure function of the counts and the time) and
//! sends the resulting [`Ejections`] to every core; selection then skips ejected endpoints.
//! A reload keeps what was known of the endpoints both route states serve
//! ([`OutlierState::carry_from`]); each core's consecutive counts start again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spec::OutlierDetection;

use crate::routing::RouteState;

/// Consecutive failures of one endpoint seen by one core (or summed over cores).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Consecutive 5xx responses, gateway errors included.
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors: 502, 503, 504, connect failures, resets, timeouts.
    pub consecutive_gateway: u32,
}

/// How one exchange with an endpoint ended, as outlier detection classes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any response below 500.
    Success,
    /// A 5xx response other than 502, 503 and 504.
    ServerError,
    /// 502, 503, 504, or no response at all (connect failure, reset, timeout).
    GatewayError,
}

impl Outcome {
    /// Classes an upstream response status.
    pub fn from_status(status: u16) -> Self {
        match status {
            502..=504 => Self::GatewayError,
            500..=599 => Self::ServerError,
            _ => Self::Success,
        }
    }
}

impl Counts {
    /// Counts one more outcome: a success resets both runs.
    pub fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Success => *self = Self::default(),
            Outcome::ServerError => {
                self.consecutive_5xx = self.consecutive_5xx.saturating_add(1);
                self.consecutive_gateway = 0;
            }
            Outcome::GatewayError => {
                self.consecutive_5xx = self.consecutive_5xx.saturating_add(1);
                self.consecutive_gateway = self.consecutive_gateway.saturating_add(1);
            }
        }
    }

    fn add(self, other: Self) -> Self {
        Self {
            consecutive_5xx: self.consecutive_5xx.saturating_add(other.consecutive_5xx),
            consecutive_gateway: self
                .consecutive_gateway
                .saturating_add(other.consecutive_gateway),
        }
    }
}

/// Health of one endpoint of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointHealth {
    /// Ejected until this instant; `None` when healthy.
    pub ejected_until: Option<Instant>,
    /// How many times the endpoint was ejected (carried across reloads while its group keeps
    /// it).
    pub times_ejected: u32,
}

/// The ejections in force for one route state, sent from the control thread to every core.
#[derive(Debug, Default)]
pub struct Ejections {
    /// Content hash of the route state the indexes refer to.
    pub hash: String,
    /// Per group, per endpoint.
    pub groups: Vec<Vec<EndpointHealth>>,
    /// `ejected[g][e]`: endpoint `e` of group `g` is ejected.
    ejected: Vec<Vec<bool>>,
    /// Endpoints this decision ejected; cores restart their counts for them.
    pub newly_ejected: Vec<(u32, u32)>,
}

impl Ejections {
    fn new(hash: String, groups: Vec<Vec<EndpointHealth>>, newly_ejected: Vec<(u32, u32)>) -> Self {
        let ejected = groups
            .iter()
            .map(|g| g.iter().map(|e| e.ejected_until.is_some()).collect())
            .collect();
        Self {
            hash,
            groups,
            ejected,
            newly_ejected,
        }
    }

    /// The endpoints of group `group` selection must skip: `None` when none is ejected, or when
    /// every one is (panic mode, as Envoy: route to all of them rather than fail).
    pub fn skip(&self, group: usize) -> Option<&[bool]> {
        let ejected = self.ejected.get(group)?;
        let any = ejected.iter().any(|&e| e);
        let all = ejected.iter().all(|&e| e);
        (any && !all).then_some(ejected.as_slice())
    }
}

/// The control thread's outlier state for the route state being served.
#[derive(Debug)]
pub struct OutlierState {
    hash: String,
    /// Per group: its name and endpoint addresses, which identify an endpoint across reloads.
    names: Vec<(String, Vec<SocketAddr>)>,
    /// Per group: its outlier policy (if any) and endpoint health.
    policies: Vec<Option<OutlierDetection>>,
    health: Vec<Vec<EndpointHealth>>,
    /// The latest report of each core: `(group, endpoint, counts)`.
    reports: Vec<Vec<(u32, u32, Counts)>>,
}

impl OutlierState {
    /// Fresh state (nothing ejected) for `routes`, served by `workers` cores.
    pub fn new(routes: &RouteState, workers: usize) -> Self {
        let groups = routes.groups().iter();
        Self::with_groups(
            routes.hash.clone(),
            groups.map(|g| (g.name.clone(), g.outlier.clone(), g.endpoints.clone())),
            workers,
        )
    }

    /// Fresh state for groups given as `(name, outlier policy, endpoint addresses)`.
    pub fn with_groups(
        hash: String,
        groups: impl Iterator<Item = (String, Option<OutlierDetection>, Vec<SocketAddr>)>,
        workers: usize,
    ) -> Self {
        let (mut names, mut policies, mut health) = (Vec::new(), Vec::new(), Vec::new());
        for (name, policy, endpoints) in groups {
            health.push(vec![EndpointHealth::default(); endpoints.len()]);
            names.push((name, endpoints));
            policies.push(policy);
        }
        Self {
            hash,
            names,
            policies,
            health,
            reports: vec![Vec::new(); workers],
        }
    }

    /// Takes over what `previous` (the state before a reload) knew of the endpoints this one
    /// shares with it, an endpoint being its group's name and its address: an ejected one
    /// stays ejected until its time is up, and its ejection count goes on growing, as long as
    /// its group still has outlier detection. Returns whether any carried ejection is in force.
    pub fn carry_from(&mut self, previous: &Self) -> bool {
        let known: HashMap<(&str, SocketAddr), EndpointHealth> = previous
            .names
            .iter()
            .zip(&previous.health)
            .flat_map(|((name, endpoints), health)| {
                endpoints
                    .iter()
                    .zip(health)
                    .map(move |(addr, h)| ((name.as_str(), *addr), *h))
            })
            .collect();
        let mut ejected = false;
        let groups = self.names.iter().zip(&self.policies).zip(&mut self.health);
        for (((name, endpoints), policy), health) in groups {
            if policy.is_none() {
                continue;
            }
            for (addr, h) in endpoints.iter().zip(health.iter_mut()) {
                if let Some(old) = known.get(&(name.as_str(), *addr)) {
                    *h = *old;
                    ejected |= old.ejected_until.is_some();
                }
            }
        }
        ejected
    }

    /// Whether this state is for the route state with content hash `hash`.
    pub fn serves(&self, hash: &str) -> bool {
        self.hash == hash
    }

    /// Whether any group has outlier detection.
    pub fn enabled(&self) -> bool {
        self.policies.iter().any(Option::is_some)
    }

    /// Keeps core `worker`'s latest counts; a report for another route state is dropped.
    pub fn report(&mut self, worker: usize, hash: &str, counts: Vec<(u32, u32, Counts)>) {
        if hash == self.hash {
            if let Some(slot) = self.reports.get_mut(worker) {
                *slot = counts;
            }
        }
    }

    /// Health as of the last decision, for cores and admin `/clusters`.
    pub fn ejections(&self, newly_ejected: Vec<(u32, u32)>) -> Arc<Ejections> {
        Arc::new(Ejections::new(
            self.hash.clone(),
            self.health.clone(),
            newly_ejected,
        ))
    }

    /// Decides ejections at `now` from the cores' latest counts; returns the new ejections
    /// when anything changed.
    pub fn decide(&mut self, now: Instant) -> Option<Arc<Ejections>> {
        let mut totals: Vec<Vec<Counts>> = self
            .health
            .iter()
            .map(|g| vec![Counts::default(); g.len()])
            .collect();
        for report in &self.reports {
            for &(g, e, c) in report {
                if let Some(t) = totals
                    .get_mut(g as usize)
                    .and_then(|t| t.get_mut(e as usize))
                {
                    *t = t.add(c);
                }
            }
        }
        let mut changed = false;
        let mut newly = Vec::new();
        for (g, (policy, health)) in self.policies.iter().zip(&mut self.health).enumerate() {
            let Some(policy) = policy else { continue };
            let step = decide_group(policy, health, &totals[g], now);
            changed |= step.changed;
            newly.extend(step.ejected.into_iter().map(|e| (g as u32, e)));
        }
        // Counts that led to an ejection are spent; cores restart them too.
        for report in &mut self.reports {
            report.retain(|&(g, e, _)| !newly.contains(&(g, e)));
        }
        changed.then(|| self.ejections(newly))
    }
}

/// What one decision changed in a group.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Something was ejected or returned.
    pub changed: bool,
    /// Endpoints ejected now.
    pub ejected: Vec<u32>,
}

/// Decides one group at `now`: ejections whose time is up end; endpoints whose consecutive
/// counts (summed over cores) reach a threshold are ejected for `base_ejection_ms` times the
/// number of times they were ejected, while at most `max_ejection_percent` of the group is
/// ejected (at least one may always be, as in Envoy).
pub fn decide_group(
    policy: &OutlierDetection,
    health: &mut [EndpointHealth],
    totals: &[Counts],
    now: Instant,
) -> Step {
    let mut step = Step::default();
    for h in health.iter_mut() {
        if h.ejected_until.is_some_and(|until| until <= now) {
            h.ejected_until = None;
            step.changed = true;
        }
    }
    let max_ejected = (health.len() * policy.max_ejection_percent.min(100) as usize / 100).max(1);
    let mut ejected = health.iter().filter(|h| h.ejected_until.is_some()).count();
    for (e, (h, counts)) in health.iter_mut().zip(totals).enumerate() {
        if h.ejected_until.is_some() || ejected >= max_ejected {
            continue;
        }
        let reached = |threshold: Option<u32>, count: u32| threshold.is_some_and(|t| count >= t);
        if reached(policy.consecutive_5xx, counts.consecutive_5xx)
            || reached(
                policy.consecutive_gateway_errors,
                counts.consecutive_gateway,
            )
        {
            h.times_ejected = h.times_ejected.saturating_add(1);
            let time =
                Duration::from_millis(policy.base_ejection_ms).saturating_mul(h.times_ejected);
            h.ejected_until = Some(now + time);
            ejected += 1;
            step.changed = true;
            step.ejected.push(e as u32);
        }
    }
    step
}

#[cfg(test)]
mod tests;
