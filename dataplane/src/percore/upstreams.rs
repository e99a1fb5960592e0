//! A core's side of the upstreams: idle connections, balancer state, circuit breakers and the
//! retry budget.

use std::cell::RefCell;
use std::rc::Rc;

use crate::balancer::CoreBalancing;
use crate::pool::{Breaker, Pool};
use crate::retry::RetryBudget;
use crate::routing::RouteState;

/// One core's upstream state.
#[derive(Debug)]
pub struct Upstreams {
    /// Idle upstream connections.
    pub pool: Pool,
    /// Balancer cursors, requests in flight and failure counts per endpoint, ejections.
    pub balancing: RefCell<CoreBalancing>,
    /// Circuit breaker per endpoint group (`None`: the group has no pool limits).
    pub breakers: RefCell<Vec<Option<Rc<Breaker>>>>,
    /// Requests and retries in flight, for the retry budget.
    pub retry_budget: RetryBudget,
    /// HTTP/2 connections to applications whose port says `http2` or `grpc`.
    pub h2: crate::http2::Clients,
}

impl Upstreams {
    /// Upstream state for `routes`, the pool limits divided among `cores`.
    pub fn new(routes: &RouteState, cores: usize) -> Self {
        Self {
            pool: Pool::default(),
            balancing: RefCell::new(balancing(routes)),
            breakers: RefCell::new(breakers(routes, cores)),
            retry_budget: RetryBudget::default(),
            h2: crate::http2::Clients::default(),
        }
    }

    /// Follows a reload: closes idle connections (and HTTP/2 ones, once their streams end) to
    /// endpoints `routes` no longer has, and restarts balancers and breakers.
    pub(super) fn install(&self, routes: &RouteState, cores: usize) {
        let endpoints = routes.endpoint_addresses();
        self.pool.retain(|addr| endpoints.contains(addr));
        self.h2.retain(|addr| endpoints.contains(&addr));
        *self.balancing.borrow_mut() = balancing(routes);
        // Connections opened under the old breakers keep counting there until they close.
        *self.breakers.borrow_mut() = breakers(routes, cores);
    }
}

fn balancing(routes: &RouteState) -> CoreBalancing {
    CoreBalancing::new(routes.groups().iter().map(|g| g.endpoints.len()))
}

/// One breaker per endpoint group with pool limits, sized for this core's share.
fn breakers(routes: &RouteState, cores: usize) -> Vec<Option<Rc<Breaker>>> {
    routes
        .groups()
        .iter()
        .map(|g| Breaker::new(&g.pool, cores))
        .collect()
}
