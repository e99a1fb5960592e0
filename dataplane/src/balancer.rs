//! Endpoint selection inside one endpoint group (a service or a subset): round robin, random,
//! least request, ring hash and Maglev, each honouring endpoint weights and skipping endpoints
//! the outlier detector ejected. Rings and tables are built once per snapshot load; picking
//! allocates nothing.
//!
//! Also holds one core's balancing state ([`CoreBalancing`]): round-robin cursors, outstanding
//! requests per endpoint (for least request), consecutive failure counts (for outlier
//! detection) and the ejections the control thread sent last.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use spec::{HashKey, LoadBalancer};

use crate::outlier::{Counts, Ejections, Outcome};

/// Maglev lookup table size: a prime well above any endpoint count served here.
pub const MAGLEV_TABLE_SIZE: usize = 65537;

/// Largest ring a ring hash balancer builds (Envoy's bound).
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// How one group picks an endpoint, with everything it needs precomputed.
#[derive(Debug)]
pub struct Balancer {
    kind: Kind,
    /// Endpoint weights, at least 1 each.
    weights: Box<[u32]>,
}

#[derive(Debug)]
enum Kind {
    RoundRobin,
    Random,
    LeastRequest,
    /// Ring entries `(hash, endpoint)`, sorted by hash.
    RingHash {
        key: Key,
        ring: Box<[(u64, u32)]>,
    },
    /// `table[hash % len]` is the endpoint.
    Maglev {
        key: Key,
        table: Box<[u32]>,
    },
}

/// A compiled [`HashKey`].
#[derive(Debug)]
enum Key {
    Header(Box<str>),
    Cookie {
        name: Box<str>,
        max_age: Option<u64>,
    },
    SourceIp,
}

/// What the request offers to hash on.
pub struct Input<'r, 'h> {
    /// The request headers.
    pub headers: &'r [httparse::Header<'h>],
    /// The caller's address, looked up only for a source-IP key.
    pub peer: &'r dyn Fn() -> Option<IpAddr>,
}

impl std::fmt::Debug for Input<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("headers", &self.headers.len())
            .finish_non_exhaustive()
    }
}

/// A cookie the response must set so that the client sticks to the endpoint picked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewCookie {
    /// The generated value: 16 lower-case hex digits.
    pub value: [u8; 16],
    /// `Max-Age` in seconds.
    pub max_age: u64,
}

/// The outcome of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    /// Index of the endpoint in its group.
    pub endpoint: u32,
    /// A cookie to set on the response, when a cookie key with a TTL was missing.
    pub cookie: Option<NewCookie>,
}

/// Which endpoints of a group to avoid; `None` means none (or every one: panic mode).
type Skip<'a> = Option<&'a [bool]>;

impl Balancer {
    /// Builds the balancer for a group with these endpoint addresses and weights.
    pub fn new(policy: &LoadBalancer, addresses: &[SocketAddr], weights: &[u32]) -> Self {
        let weights: Box<[u32]> = weights.iter().map(|&w| w.max(1)).collect();
        let kind = match policy {
            LoadBalancer::RoundRobin => Kind::RoundRobin,
            LoadBalancer::Random => Kind::Random,
            LoadBalancer::LeastRequest => Kind::LeastRequest,
            LoadBalancer::RingHash {
                key,
                minimum_ring_size,
            } => Kind::RingHash {
                key: Key::new(key),
                ring: build_ring(addresses, &weights, *minimum_ring_size),
            },
            LoadBalancer::Maglev { key } => Kind::Maglev {
                key: Key::new(key),
                table: build_maglev(addresses, &weights, MAGLEV_TABLE_SIZE),
            },
        };
        Self { kind, weights }
    }

    /// The policy name shown by admin `/clusters`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::RoundRobin => "round_robin",
            Kind::Random => "random",
            Kind::LeastRequest => "least_request",
            Kind::RingHash { .. } => "ring_hash",
            Kind::Maglev { .. } => "maglev",
        }
    }

    /// Picks an endpoint (the group must have at least one). `schedule` is the group's
    /// weighted round-robin order, `cursor` this core's position in it, `outstanding` this
    /// core's requests in flight per endpoint, `skip` the ejected endpoints.
    pub fn pick(
        &self,
        schedule: &[u32],
        cursor: &mut u32,
        outstanding: &[u32],
        skip: Skip<'_>,
        input: &Input<'_, '_>,
    ) -> Picked {
        let plain = |endpoint: u32| Picked {
            endpoint,
            cookie: None,
        };
        match &self.kind {
            Kind::RoundRobin => plain(round_robin(schedule, cursor, skip)),
            Kind::Random => plain(weighted_draw(&self.weights, skip)),
            Kind::LeastRequest => {
                let a = weighted_draw(&self.weights, skip);
                let b = weighted_draw(&self.weights, skip);
                plain(fewer_outstanding(a, b, &self.weights, outstanding))
            }
            Kind::RingHash { key, ring } => {
                self.hashed(key, input, skip, |h| ring_lookup(ring, h, skip))
            }
            Kind::Maglev { key, table } => {
                self.hashed(key, input, skip, |h| maglev_lookup(table, h, skip))
            }
        }
    }

    /// Hashes the request's key and looks it up with `lookup`; a missing key picks at random
    /// (and, for a cookie with a TTL, generates the cookie whose hash leads there).
    fn hashed(
        &self,
        key: &Key,
        input: &Input<'_, '_>,
        skip: Skip<'_>,
        lookup: impl Fn(u64) -> u32,
    ) -> Picked {
        let hash = match key {
            Key::Header(name) => input
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| hash_bytes(h.value)),
            Key::Cookie { name, .. } => cookie_value(input.headers, name).map(hash_bytes),
            Key::SourceIp => (input.peer)().map(|ip| match ip {
                IpAddr::V4(v4) => hash_bytes(&v4.octets()),
                IpAddr::V6(v6) => hash_bytes(&v6.octets()),
            }),
        };
        if let Some(hash) = hash {
            return Picked {
                endpoint: lookup(hash),
                cookie: None,
            };
        }
        if let Key::Cookie {
            max_age: Some(max_age),
            ..
        } = key
        {
            let value = hex16(fastrand::u64(..));
            return Picked {
                endpoint: lookup(hash_bytes(&value)),
                cookie: Some(NewCookie {
                    value,
                    max_age: *max_age,
                }),
            };
        }
        Picked {
            endpoint: weighted_draw(&self.weights, skip),
            cookie: None,
        }
    }

    /// The cookie name of a cookie key, for writing `Set-Cookie`.
    pub fn cookie_name(&self) -> Option<&str> {
        match &self.kind {
            Kind::RingHash {
                key: Key::Cookie { name, .. },
                ..
            }
            | Kind::Maglev {
                key: Key::Cookie { name, .. },
                ..
            } => Some(name),
            _ => None,
        }
    }
}

impl Key {
    fn new(key: &HashKey) -> Self {
        match key {
            HashKey::Header(name) => Self::Header(name.as_str().into()),
            HashKey::Cookie { name, ttl_ms } => Self::Cookie {
                name: name.as_str().into(),
                max_age: ttl_ms.map(|ms| ms.div_ceil(1000).max(1)),
            },
            HashKey::SourceIp => Self::SourceIp,
        }
    }
}

fn skipped(skip: Skip<'_>, endpoint: usize) -> bool {
    skip.is_some_and(|s| s.get(endpoint).copied().unwrap_or(false))
}

/// Next slot of the smooth weighted schedule that is not ejected.
fn round_robin(schedule: &[u32], cursor: &mut u32, skip: Skip<'_>) -> u32 {
    for _ in 0..schedule.len() {
        let slot = schedule[*cursor as usize % schedule.len()];
        *cursor = cursor.wrapping_add(1);
        if !skipped(skip, slot as usize) {
            return slot;
        }
    }
    // Unreachable when `skip` leaves one endpoint (callers pass `None` in panic mode).
    schedule.first().copied().unwrap_or(0)
}

/// A weighted random endpoint among those not skipped.
fn weighted_draw(weights: &[u32], skip: Skip<'_>) -> u32 {
    let total: u64 = weights
        .iter()
        .enumerate()
        .filter(|&(i, _)| !skipped(skip, i))
        .map(|(_, &w)| u64::from(w))
        .sum();
    if total == 0 {
        return 0;
    }
    let mut draw = fastrand::u64(..total);
    for (i, &w) in weights.iter().enumerate() {
        if skipped(skip, i) {
            continue;
        }
        if draw < u64::from(w) {
            return i as u32;
        }
        draw -= u64::from(w);
    }
    0
}

/// Of two candidates, the one with fewer requests in flight per unit of weight.
fn fewer_outstanding(a: u32, b: u32, weights: &[u32], outstanding: &[u32]) -> u32 {
    let load = |i: u32| u64::from(outstanding.get(i as usize).copied().unwrap_or(0)) + 1;
    let weight = |i: u32| u64::from(weights.get(i as usize).copied().unwrap_or(1));
    // load(a)/weight(a) <= load(b)/weight(b), without division.
    if load(a) * weight(b) <= load(b) * weight(a) {
        a
    } else {
        b
    }
}

/// The first ring entry at or after `hash` (wrapping) whose endpoint is not skipped.
fn ring_lookup(ring: &[(u64, u32)], hash: u64, skip: Skip<'_>) -> u32 {
    if ring.is_empty() {
        return 0;
    }
    let start = ring.partition_point(|&(h, _)| h < hash);
    for k in 0..ring.len() {
        let (_, endpoint) = ring[(start + k) % ring.len()];
        if !skipped(skip, endpoint as usize) {
            return endpoint;
        }
    }
    ring[start % ring.len()].1
}

/// The table entry for `hash`, probing onwards past skipped endpoints.
fn maglev_lookup(table: &[u32], hash: u64, skip: Skip<'_>) -> u32 {
    if table.is_empty() {
        return 0;
    }
    let start = (hash % table.len() as u64) as usize;
    for k in 0..table.len() {
        let endpoint = table[(start + k) % table.len()];
        if !skipped(skip, endpoint as usize) {
            return endpoint;
        }
    }
    table[start]
}

/// Builds a ketama-style ring: each endpoint gets entries in proportion to its weight, hashed from its address and entry number, so an endpoint's entries do not move
/// when others come or go.
fn build_ring(addresses: &[SocketAddr], weights: &[u32], minimum: u64) -> Box<[(u64, u32)]> {
    if addresses.is_empty() {
        return Box::new([]);
    }
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    // Entries per unit of weight, rounded up to a power of two: the ring has at least
    // `minimum` entries, and adding or removing an endpoint rarely changes the per-weight
    // count, so the other endpoints' entries (and keys) stay where they were.
    let per_weight = minimum
        .div_ceil(total.max(1))
        .max(1)
        .next_power_of_two()
        .min((MAX_RING_SIZE / total.max(1)).max(1));
    let mut ring = Vec::new();
    let mut name = Vec::with_capacity(64);
    for (i, (address, &weight)) in addresses.iter().zip(weights).enumerate() {
        let entries = per_weight * u64::from(weight);
        for k in 0..entries {
            name.clear();
            use std::io::Write;
            let _ = write!(name, "{address}_{k}");
            ring.push((hash_bytes(&name), i as u32));
        }
    }
    ring.sort_unstable();
    ring.into_boxed_slice()
}

/// Builds a Maglev lookup table of `size` (a prime) entries. Each endpoint walks its own
/// permutation of the slots (offset and skip from its address); in each round an endpoint
/// claims slots in proportion to its weight, so weights hold and removing an endpoint moves
/// few of the others' slots.
fn build_maglev(addresses: &[SocketAddr], weights: &[u32], size: usize) -> Box<[u32]> {
    if addresses.is_empty() {
        return Box::new([]);
    }
    let m = size as u64;
    let mut name = Vec::with_capacity(64);
    let permutation: Vec<(u64, u64)> = addresses
        .iter()
        .map(|address| {
            name.clear();
            use std::io::Write;
            let _ = write!(name, "{address}");
            let offset = hash_seeded(&name, 0x6d61_676c) % m;
            let skip = hash_seeded(&name, 0x736b_6970) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let max_weight = u64::from(weights.iter().copied().max().unwrap_or(1));
    let mut next = vec![0u64; addresses.len()];
    let mut credit = vec![0u64; addresses.len()];
    let mut table = vec![u32::MAX; size];
    let mut filled = 0;
    while filled < size {
        for i in 0..addresses.len() {
            credit[i] += u64::from(weights[i]);
            while credit[i] >= max_weight && filled < size {
                credit[i] -= max_weight;
                let (offset, skip) = permutation[i];
                loop {
                    let slot = ((offset + skip * next[i]) % m) as usize;
                    next[i] += 1;
                    if table[slot] == u32::MAX {
                        table[slot] = i as u32;
                        filled += 1;
                        break;
                    }
                }
            }
        }
    }
    table.into_boxed_slice()
}

/// Adds `set-cookie: name=value; Max-Age=N; Path=/; HttpOnly` to a response head in `head`
/// (which ends with its blank line).
pub fn write_set_cookie(head: &mut Vec<u8>, name: &str, cookie: NewCookie) {
    use std::io::Write;
    if head.ends_with(b"\r\n\r\n") {
        head.truncate(head.len() - 2);
    }
    head.extend_from_slice(b"set-cookie: ");
    head.extend_from_slice(name.as_bytes());
    head.push(b'=');
    head.extend_from_slice(&cookie.value);
    let _ = write!(
        head,
        "; Max-Age={}; Path=/; HttpOnly\r\n\r\n",
        cookie.max_age
    );
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value<'h>(headers: &[httparse::Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .flat_map(|h| h.value.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// Lower-case hex of `value`, 16 digits.
fn hex16(value: u64) -> [u8; 16] {
    let digits = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = digits[((value >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// A 64-bit hash of `bytes`: FNV-1a, then a finalizer that spreads the bits.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_seeded(bytes, 0)
}

fn hash_seeded(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // murmur3's fmix64.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One core's balancing state for the route state it serves. Reset on every install.
#[derive(Debug, Default)]
pub struct CoreBalancing {
    /// Round-robin cursor per group.
    cursors: Vec<u32>,
    /// Requests in flight per group and endpoint.
    outstanding: Vec<Box<[u32]>>,
    /// Consecutive failures per group and endpoint since the last success.
    counts: Vec<Box<[Counts]>>,
    /// The ejections in force, as the control thread sent them for this route state.
    ejections: Option<Arc<Ejections>>,
}

/// Where a request went: group and endpoint indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Group index in the route state.
    pub group: u32,
    /// Endpoint index in the group.
    pub endpoint: u32,
}

impl CoreBalancing {
    /// Fresh state for groups with these endpoint counts.
    pub fn new(sizes: impl Iterator<Item = usize>) -> Self {
        let sizes: Vec<usize> = sizes.collect();
        Self {
            cursors: vec![0; sizes.len()],
            outstanding: sizes.iter().map(|&n| vec![0; n].into()).collect(),
            counts: sizes
                .iter()
                .map(|&n| vec![Counts::default(); n].into())
                .collect(),
            ejections: None,
        }
    }

    /// Picks an endpoint of group `group_index` with the group's balancer.
    pub fn pick(
        &mut self,
        group_index: usize,
        group: &crate::routing::EndpointGroup,
        input: &Input<'_, '_>,
    ) -> Picked {
        let skip = self.ejections.as_deref().and_then(|e| e.skip(group_index));
        let Self {
            cursors,
            outstanding,
            ..
        } = self;
        let mut spare = 0;
        let cursor = cursors.get_mut(group_index).unwrap_or(&mut spare);
        let outstanding = outstanding.get(group_index).map_or(&[][..], |o| o);
        group
            .balancer
            .pick(&group.schedule, cursor, outstanding, skip, input)
    }

    /// Picks an endpoint of group `group_index` other than `avoid` for a retry, with the
    /// group's balancer, skipping ejected endpoints (a hash key is not looked at again: a
    /// retry draws at random among the others). `None` when no other endpoint is available.
    pub fn pick_other(
        &mut self,
        group_index: usize,
        group: &crate::routing::EndpointGroup,
        avoid: u32,
    ) -> Option<u32> {
        let len = group.endpoints.len();
        let ejected = self.ejections.as_deref().and_then(|e| e.skip(group_index));
        let mut skip: Vec<bool> = (0..len).map(|i| skipped(ejected, i)).collect();
        if let Some(s) = skip.get_mut(avoid as usize) {
            *s = true;
        }
        if skip.iter().all(|&s| s) {
            // Every other endpoint is ejected: any other one (panic mode), if there is one.
            skip = (0..len).map(|i| i == avoid as usize).collect();
            if skip.iter().all(|&s| s) {
                return None;
            }
        }
        let Self {
            cursors,
            outstanding,
            ..
        } = self;
        let mut spare = 0;
        let cursor = cursors.get_mut(group_index).unwrap_or(&mut spare);
        let outstanding = outstanding.get(group_index).map_or(&[][..], |o| o);
        let input = Input {
            headers: &[],
            peer: &|| None,
        };
        let picked = group
            .balancer
            .pick(&group.schedule, cursor, outstanding, Some(&skip), &input)
            .endpoint;
        if !skipped(Some(&skip), picked as usize) {
            return Some(picked);
        }
        // A balancer that could not honour the skip list: the first endpoint not skipped.
        (0..len).find(|&i| !skip[i]).map(|i| i as u32)
    }

    /// Counts a request going to `pick`.
    pub fn start(&mut self, pick: Pick) {
        if let Some(n) = self.slot(pick) {
            *n += 1;
        }
    }

    /// Counts a request to `pick` finished, with the upstream's outcome if one is known.
    pub fn finish(&mut self, pick: Pick, outcome: Option<Outcome>) {
        if let Some(n) = self.slot(pick) {
            *n = n.saturating_sub(1);
        }
        if let Some(outcome) = outcome {
            if let Some(counts) = self
                .counts
                .get_mut(pick.group as usize)
                .and_then(|c| c.get_mut(pick.endpoint as usize))
            {
                counts.record(outcome);
            }
        }
    }

    /// Requests in flight to endpoint `endpoint` of group `group` on this core.
    pub fn in_flight(&self, group: usize, endpoint: usize) -> u32 {
        let group = self.outstanding.get(group);
        group.and_then(|g| g.get(endpoint)).copied().unwrap_or(0)
    }

    fn slot(&mut self, pick: Pick) -> Option<&mut u32> {
        self.outstanding
            .get_mut(pick.group as usize)?
            .get_mut(pick.endpoint as usize)
    }

    /// The nonzero failure counts, as `(group, endpoint, counts)`, for the control thread.
    pub fn report(&self) -> Vec<(u32, u32, Counts)> {
        let mut out = Vec::new();
        for (g, counts) in self.counts.iter().enumerate() {
            for (e, c) in counts.iter().enumerate() {
                if *c != Counts::default() {
                    out.push((g as u32, e as u32, *c));
                }
            }
        }
        out
    }

    /// Takes the ejections the control thread decided; counts of newly ejected endpoints start
    /// over, so an endpoint coming back is judged on its new behaviour.
    pub fn set_ejections(&mut self, ejections: Arc<Ejections>) {
        for &(g, e) in &ejections.newly_ejected {
            if let Some(c) = self
                .counts
                .get_mut(g as usize)
                .and_then(|c| c.get_mut(e as usize))
            {
                *c = Counts::default();
            }
        }
        self.ejections = Some(ejections);
    }
}

/// A request in flight to an endpoint: counted while it lives, and its outcome recorded when
/// it ends (dropped).
#[derive(Debug)]
pub struct Inflight<'c> {
    state: &'c RefCell<CoreBalancing>,
    pick: Pick,
    outcome: Option<Outcome>,
}

impl<'c> Inflight<'c> {
    /// Counts a request to `pick` in flight on this core.
    pub fn start(state: &'c RefCell<CoreBalancing>, pick: Pick) -> Self {
        state.borrow_mut().start(pick);
        Self {
            state,
            pick,
            outcome: None,
        }
    }

    /// The upstream answered with `status`.
    pub fn response(&mut self, status: u16) {
        self.outcome = Some(Outcome::from_status(status));
    }

    /// The upstream failed before a response: connect failure, reset, timeout or a response
    /// that was not HTTP (a gateway error).
    pub fn failed(&mut self) {
        self.outcome = Some(Outcome::GatewayError);
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.state.borrow_mut().finish(self.pick, self.outcome);
    }
}

#[cfg(test)]
mod tests;
