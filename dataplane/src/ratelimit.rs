//! Local rate limits: a token bucket per rule (or per rule and caller) on each core, as Envoy's
//! local rate limit filter does. The rule's rate is divided among the cores, so the sidecar as a
//! whole admits about the configured rate without any cross-core traffic: core `i` of `n` gets
//! `tokens_per_fill / n` tokens per interval (the remainder going one each to the first cores),
//! at least 1, and a bucket of `max_tokens / n` likewise. Buckets refill lazily from a monotonic
//! clock when a request looks at them; no timer runs.
//!
//! `per_source` keeps one bucket per caller ([`Caller`]): on the outbound side, where route
//! rules apply, the caller is the client's IP address (the local application); the inbound side
//! of a workload serving the service applies the same rule keyed on the caller's mTLS identity
//! (its IP address when it has none). Each core tracks at most [`MAX_SOURCES`] callers per rule
//! and forgets the least recently seen one beyond that, so memory stays bounded.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use spec::RateLimit;

use crate::http1::reply::LocalReply;
use crate::routing::{RouteState, RuleRef};

/// Most callers one core tracks for one `per_source` rule; beyond it the least recently seen
/// caller's bucket is dropped (it starts full again if that caller comes back).
pub const MAX_SOURCES: usize = 4096;

/// One core's share of a rule's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreShare {
    /// Tokens added each interval (at least 1).
    pub tokens_per_fill: u32,
    /// Bucket size (at least `tokens_per_fill`).
    pub max_tokens: u32,
    /// Refill interval (at least 1 ms).
    pub interval: Duration,
}

impl CoreShare {
    /// The share of `limit` that core `index` of `cores` enforces: each amount divided by the
    /// core count, the remainder spread one each over the first cores so the total is exactly
    /// the configured one, but never below 1 (so with fewer tokens than cores the sidecar as a
    /// whole admits up to one token per core and interval).
    pub fn of(limit: &RateLimit, index: usize, cores: usize) -> Self {
        let cores = cores.max(1) as u64;
        let index = index as u64 % cores;
        let divide = |total: u32| -> u32 {
            let total = u64::from(total);
            let share = total / cores + u64::from(index < total % cores);
            share.clamp(1, u64::from(u32::MAX)) as u32
        };
        let tokens_per_fill = divide(limit.tokens_per_fill);
        Self {
            tokens_per_fill,
            max_tokens: divide(limit.max_tokens).max(tokens_per_fill),
            interval: Duration::from_millis(limit.fill_interval_ms.max(1)),
        }
    }
}

/// A token bucket; starts full.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: u32,
    /// When the tokens were last topped up; fills happen at whole intervals after it.
    last_fill: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(share: &CoreShare, now: Instant) -> Self {
        Self {
            tokens: share.max_tokens,
            last_fill: now,
        }
    }

    /// Adds the tokens of every whole interval since the last fill, up to the bucket size.
    fn refill(&mut self, share: &CoreShare, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_fill);
        let interval = share.interval.as_nanos();
        let fills = elapsed.as_nanos() / interval;
        if fills == 0 {
            return;
        }
        let added = fills.saturating_mul(u128::from(share.tokens_per_fill));
        let tokens = (u128::from(self.tokens) + added).min(u128::from(share.max_tokens));
        self.tokens = tokens as u32;
        // Keep the phase: the next fill is a whole interval after the last one that happened.
        let into_interval = Duration::from_nanos((elapsed.as_nanos() % interval) as u64);
        self.last_fill = now.checked_sub(into_interval).unwrap_or(now);
    }

    /// Takes one token, or says how long until the next one arrives.
    pub fn take(&mut self, share: &CoreShare, now: Instant) -> Result<(), Duration> {
        self.refill(share, now);
        if self.tokens > 0 {
            self.tokens -= 1;
            Ok(())
        } else {
            let next = self.last_fill + share.interval;
            Err(next.saturating_duration_since(now))
        }
    }

    /// Tokens left once refilled at `now`.
    pub fn tokens(&mut self, share: &CoreShare, now: Instant) -> u32 {
        self.refill(share, now);
        self.tokens
    }
}

const NIL: u32 = u32::MAX;

/// Who a `per_source` bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A caller proven by mutual TLS: its SPIFFE ID.
    Principal(&'a str),
    /// A caller without an identity: its IP address.
    Ip(IpAddr),
}

/// A [`Caller`] a table keeps.
#[derive(Debug)]
enum Source {
    Principal(Box<str>),
    Ip(IpAddr),
}

/// Buckets by caller, bounded: hash indexes into nodes linked from most to least recently
/// used, so a hit, an insert and an eviction are each O(1).
#[derive(Debug)]
pub struct SourceTable {
    capacity: usize,
    by_ip: HashMap<IpAddr, u32>,
    by_principal: HashMap<Box<str>, u32>,
    nodes: Vec<SourceNode>,
    /// Most recently used node.
    head: u32,
    /// Least recently used node: the next to go when the table is full.
    tail: u32,
}

#[derive(Debug)]
struct SourceNode {
    source: Source,
    bucket: Bucket,
    prev: u32,
    next: u32,
}

impl SourceTable {
    /// An empty table that tracks at most `capacity` callers (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.clamp(1, NIL as usize),
            by_ip: HashMap::new(),
            by_principal: HashMap::new(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// Callers tracked now.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no caller is tracked.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `source` has a bucket here.
    pub fn contains(&self, source: Caller<'_>) -> bool {
        self.slot(source).is_some()
    }

    fn slot(&self, source: Caller<'_>) -> Option<u32> {
        match source {
            Caller::Ip(ip) => self.by_ip.get(&ip).copied(),
            Caller::Principal(id) => self.by_principal.get(id).copied(),
        }
    }

    /// The bucket of `source`, created full (evicting the least recently used caller when the
    /// table is full), and marked most recently used.
    pub fn bucket(&mut self, source: Caller<'_>, share: &CoreShare, now: Instant) -> &mut Bucket {
        let slot = match self.slot(source) {
            Some(slot) => {
                self.unlink(slot);
                slot
            }
            None => {
                let kept = match source {
                    Caller::Ip(ip) => Source::Ip(ip),
                    Caller::Principal(id) => Source::Principal(id.into()),
                };
                let node = SourceNode {
                    source: kept,
                    bucket: Bucket::full(share, now),
                    prev: NIL,
                    next: NIL,
                };
                let slot = if self.nodes.len() < self.capacity {
                    self.nodes.push(node);
                    (self.nodes.len() - 1) as u32
                } else {
                    let slot = self.tail;
                    self.unlink(slot);
                    let old = std::mem::replace(&mut self.nodes[slot as usize], node);
                    match old.source {
                        Source::Ip(ip) => self.by_ip.remove(&ip),
                        Source::Principal(id) => self.by_principal.remove(&id),
                    };
                    slot
                };
                match source {
                    Caller::Ip(ip) => self.by_ip.insert(ip, slot),
                    Caller::Principal(id) => self.by_principal.insert(id.into(), slot),
                };
                slot
            }
        };
        self.push_front(slot);
        &mut self.nodes[slot as usize].bucket
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let node = &self.nodes[slot as usize];
            (node.prev, node.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        {
            let node = &mut self.nodes[slot as usize];
            node.prev = NIL;
            node.next = old_head;
        }
        match old_head {
            NIL => self.tail = slot,
            h => self.nodes[h as usize].prev = slot,
        }
        self.head = slot;
    }
}

/// The buckets of one rule on one core.
#[derive(Debug)]
enum Buckets {
    /// One bucket for every caller.
    Shared(Bucket),
    /// One bucket per caller.
    PerSource(SourceTable),
}

/// One rate-limited rule on one core.
#[derive(Debug)]
struct RuleLimiter {
    /// `service/rule`: what a reload matches to keep the buckets.
    name: String,
    /// The limit as configured; a reload with another one starts fresh buckets.
    limit: RateLimit,
    share: CoreShare,
    buckets: Buckets,
}

/// A request over its rule's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Time until this core's bucket has a token again.
    pub retry_after: Duration,
}

impl Limited {
    /// `retry_after` in whole seconds, rounded up, at least 1 (the `retry-after` header).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }
}

/// The rate-limit buckets of one core, laid out like the route tables so a request finds its
/// rule's bucket by index.
#[derive(Debug, Default)]
pub struct RateLimits {
    /// `rules[table][rule]`: the limiter of that rule, if it has a limit.
    rules: Vec<Vec<Option<RuleLimiter>>>,
    /// This core's number and the core count, for dividing limits.
    core: usize,
    cores: usize,
}

impl RateLimits {
    /// Buckets for the limited rules of `routes` on core `core` of `cores`. A rule whose name
    /// (`service/rule`) and limit are the same as in `previous` keeps its buckets, so a reload
    /// does not hand every caller a fresh burst.
    pub fn build(
        routes: &RouteState,
        previous: Self,
        core: usize,
        cores: usize,
        now: Instant,
    ) -> Self {
        let mut kept: HashMap<String, RuleLimiter> = previous
            .rules
            .into_iter()
            .flatten()
            .flatten()
            .map(|l| (l.name.clone(), l))
            .collect();
        let snapshot = &routes.snapshot;
        let rules = snapshot
            .routes
            .iter()
            .map(|table| {
                let service = snapshot
                    .services
                    .get(table.service as usize)
                    .map_or("?", |s| s.name.as_str());
                table
                    .rules
                    .iter()
                    .map(|rule| {
                        let limit = rule.rate_limit.as_ref()?;
                        let name = format!("{service}/{}", rule.name);
                        match kept.remove(&name) {
                            Some(old) if old.limit == *limit => Some(old),
                            _ => Some(RuleLimiter::new(name, limit, core, cores, now)),
                        }
                    })
                    .collect()
            })
            .collect();
        Self { rules, core, cores }
    }

    /// Whether `rule` has a rate limit.
    pub fn limits(&self, rule: RuleRef) -> bool {
        self.rules
            .get(rule.table as usize)
            .and_then(|t| t.get(rule.rule as usize))
            .is_some_and(Option::is_some)
    }

    /// Takes a token for a request that matched `rule` from caller `source`.
    pub fn check(
        &mut self,
        rule: RuleRef,
        source: Caller<'_>,
        now: Instant,
    ) -> Result<(), Limited> {
        let Some(limiter) = self
            .rules
            .get_mut(rule.table as usize)
            .and_then(|t| t.get_mut(rule.rule as usize))
            .and_then(Option::as_mut)
        else {
            return Ok(());
        };
        let share = &limiter.share;
        let bucket = match &mut limiter.buckets {
            Buckets::Shared(bucket) => bucket,
            Buckets::PerSource(table) => table.bucket(source, share, now),
        };
        bucket
            .take(share, now)
            .map_err(|retry_after| Limited { retry_after })
    }

    /// This core's number and the core count the limits are divided by.
    pub fn core(&self) -> (usize, usize) {
        (self.core, self.cores)
    }
}

/// Takes a token of `rule`'s limit on this core for a request from `source`: `None` when the
/// request may go on, else the 429 to answer and its detail.
pub fn over_limit(
    limits: &RefCell<RateLimits>,
    routes: &RouteState,
    rule: RuleRef,
    source: Caller<'_>,
) -> Option<(LocalReply, String)> {
    let mut limits = limits.borrow_mut();
    // Most rules have no limit: they do not even read the clock.
    if !limits.limits(rule) {
        return None;
    }
    let limited = limits.check(rule, source, Instant::now()).err()?;
    let secs = limited.retry_after_secs();
    let name = routes.actions(rule).map_or("?", |a| a.name.as_str());
    let detail = format!("rule {name} allows no more requests now; retry in {secs} s");
    let retry_after = u32::try_from(secs).unwrap_or(u32::MAX);
    Some((LocalReply::RateLimited { retry_after }, detail))
}

impl RuleLimiter {
    fn new(name: String, limit: &RateLimit, core: usize, cores: usize, now: Instant) -> Self {
        let share = CoreShare::of(limit, core, cores);
        let buckets = if limit.per_source {
            Buckets::PerSource(SourceTable::new(MAX_SOURCES))
        } else {
            Buckets::Shared(Bucket::full(&share, now))
        };
        Self {
            name,
            limit: limit.clone(),
            share,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests;
