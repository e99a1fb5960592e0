use std::net::{Ipv4Addr, SocketAddr};

use spec::*;

use super::*;

fn limit(tokens_per_fill: u32, fill_interval_ms: u64, max_tokens: u32) -> RateLimit {
    RateLimit {
        tokens_per_fill,
        fill_interval_ms,
        max_tokens,
        per_source: false,
    }
}

fn ip(last: u8) -> Caller<'static> {
    Caller::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
}

#[test]
fn a_bucket_starts_full_and_refills_whole_intervals() {
    let share = CoreShare::of(&limit(2, 1000, 3), 0, 1);
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut bucket = Bucket::full(&share, t0);
    for _ in 0..3 {
        assert_eq!(bucket.take(&share, t0), Ok(()));
    }
    // Empty: the next token comes one interval after the start.
    assert_eq!(
        bucket.take(&share, ms(250)),
        Err(Duration::from_millis(750))
    );
    // 999 ms is not a whole interval yet.
    assert_eq!(bucket.tokens(&share, ms(999)), 0);
    // One interval adds tokens_per_fill.
    assert_eq!(bucket.tokens(&share, ms(1000)), 2);
    assert_eq!(bucket.take(&share, ms(1400)), Ok(()));
    assert_eq!(bucket.take(&share, ms(1500)), Ok(()));
    // The phase is kept: the next fill is at 2000 ms, not 1000 ms after the last take.
    assert_eq!(
        bucket.take(&share, ms(1500)),
        Err(Duration::from_millis(500))
    );
    // A long idle time fills the bucket up to its size, never beyond.
    assert_eq!(bucket.tokens(&share, ms(3_600_000)), 3);
}

#[test]
fn refill_survives_huge_gaps_and_clock_equalities() {
    let share = CoreShare::of(&limit(u32::MAX, 1, u32::MAX), 0, 1);
    let t0 = Instant::now();
    let mut bucket = Bucket::full(&share, t0);
    assert_eq!(bucket.take(&share, t0), Ok(()));
    let later = t0 + Duration::from_secs(10 * 365 * 24 * 3600);
    assert_eq!(bucket.tokens(&share, later), u32::MAX);
    // A clock reading before the last fill (not monotonic across callers) adds nothing.
    assert_eq!(bucket.tokens(&share, t0), u32::MAX);
}

#[test]
fn divides_the_rate_among_cores_without_exceeding_it() {
    let l = limit(10, 1000, 25);
    let shares: Vec<CoreShare> = (0..4).map(|i| CoreShare::of(&l, i, 4)).collect();
    let fills: Vec<u32> = shares.iter().map(|s| s.tokens_per_fill).collect();
    let sizes: Vec<u32> = shares.iter().map(|s| s.max_tokens).collect();
    assert_eq!(fills, [3, 3, 2, 2]);
    assert_eq!(sizes, [7, 6, 6, 6]);
    assert_eq!(fills.iter().sum::<u32>(), 10);
    assert_eq!(sizes.iter().sum::<u32>(), 25);
    assert!(shares.iter().all(|s| s.interval == Duration::from_secs(1)));

    // One core keeps the whole limit.
    assert_eq!(
        CoreShare::of(&l, 0, 1),
        CoreShare {
            tokens_per_fill: 10,
            max_tokens: 25,
            interval: Duration::from_secs(1)
        }
    );
}

#[test]
fn every_core_gets_at_least_one_token() {
    let l = limit(2, 60_000, 2);
    let shares: Vec<CoreShare> = (0..4).map(|i| CoreShare::of(&l, i, 4)).collect();
    assert!(shares
        .iter()
        .all(|s| s.tokens_per_fill == 1 && s.max_tokens == 1));
}

#[test]
fn a_core_bucket_is_never_smaller_than_its_fill() {
    for cores in 1..9 {
        for i in 0..cores {
            let s = CoreShare::of(&limit(7, 10, 7), i, cores);
            assert!(s.max_tokens >= s.tokens_per_fill, "{s:?}");
        }
    }
}

#[test]
fn source_table_keeps_at_most_its_capacity_and_drops_the_least_recent() {
    let share = CoreShare::of(&limit(1, 60_000, 1), 0, 1);
    let now = Instant::now();
    let mut table = SourceTable::new(3);
    for last in 1..=3 {
        assert_eq!(
            table.bucket(ip(last), &share, now).take(&share, now),
            Ok(())
        );
    }
    // Touch 1 so that 2 is the least recently used.
    assert!(table.bucket(ip(1), &share, now).take(&share, now).is_err());
    table.bucket(ip(4), &share, now);
    assert_eq!(table.len(), 3);
    assert!(!table.contains(ip(2)));
    assert!(table.contains(ip(1)) && table.contains(ip(3)) && table.contains(ip(4)));
    // 1 still has its (empty) bucket.
    assert!(table.bucket(ip(1), &share, now).take(&share, now).is_err());

    // Many callers never grow it.
    for last in 5..=250 {
        table.bucket(ip(last), &share, now);
        assert!(table.len() <= 3);
    }
    assert!(table.contains(ip(250)) && table.contains(ip(249)) && table.contains(ip(248)));
    assert!(!table.contains(ip(1)));
}

#[test]
fn source_table_of_one_replaces_its_only_caller() {
    let share = CoreShare::of(&limit(1, 1000, 1), 0, 1);
    let now = Instant::now();
    let mut table = SourceTable::new(1);
    table.bucket(ip(1), &share, now);
    table.bucket(ip(2), &share, now);
    table.bucket(ip(2), &share, now);
    assert_eq!(table.len(), 1);
    assert!(table.contains(ip(2)));
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    let secs = |ms| {
        Limited {
            retry_after: Duration::from_millis(ms),
        }
        .retry_after_secs()
    };
    assert_eq!(secs(0), 1);
    assert_eq!(secs(1), 1);
    assert_eq!(secs(1000), 1);
    assert_eq!(secs(1001), 2);
    assert_eq!(secs(59_500), 60);
}

fn routes(rules: Vec<RouteRule>) -> RouteState {
    let snapshot = Snapshot {
        services: vec![Service {
            name: "web".into(),
            namespace: "default".into(),
            ports: vec![],
            endpoints: vec![Endpoint {
                address: SocketAddr::from(([127, 0, 0, 1], 1)),
                labels: Default::default(),
                weight: 1,
            }],
            subsets: vec![],
            policy: TrafficPolicy::default(),
            identities: vec![],
            addresses: Vec::new(),
        }],
        routes: vec![RouteTable {
            index: Default::default(),
            service: 0,
            rules,
        }],
        hosts: vec![],
        workloads: vec![],
        unserved: Vec::new(),
        telemetry: Default::default(),
    };
    RouteState::new(snapshot, "h".into(), None).unwrap()
}

fn rule(name: &str, rate_limit: Option<RateLimit>) -> RouteRule {
    RouteRule {
        name: name.into(),
        destinations: vec![WeightedDestination {
            service: 0,
            subset: None,
            weight: 100,
        }],
        rate_limit,
        ..RouteRule::default()
    }
}

fn at(table: u32, rule: u32) -> RuleRef {
    RuleRef { table, rule }
}

#[test]
fn limits_only_rules_that_have_a_limit() {
    let state = routes(vec![
        rule("open", None),
        rule("tight", Some(limit(1, 60_000, 1))),
    ]);
    let now = Instant::now();
    let mut limits = RateLimits::build(&state, RateLimits::default(), 0, 1, now);
    assert!(!limits.limits(at(0, 0)) && limits.limits(at(0, 1)) && !limits.limits(at(1, 0)));
    for _ in 0..10 {
        assert_eq!(limits.check(at(0, 0), ip(1), now), Ok(()));
    }
    assert_eq!(limits.check(at(0, 1), ip(1), now), Ok(()));
    let limited = limits.check(at(0, 1), ip(2), now).unwrap_err();
    assert_eq!(limited.retry_after, Duration::from_secs(60));
    assert_eq!(limited.retry_after_secs(), 60);
    // A rule reference past the tables (never produced by routing) is not limited.
    assert_eq!(limits.check(at(3, 9), ip(1), now), Ok(()));
}

#[test]
fn per_source_limits_each_caller_separately() {
    let per_source = RateLimit {
        per_source: true,
        ..limit(2, 60_000, 2)
    };
    let state = routes(vec![rule("r", Some(per_source))]);
    let now = Instant::now();
    let mut limits = RateLimits::build(&state, RateLimits::default(), 0, 1, now);
    for _ in 0..2 {
        assert_eq!(limits.check(at(0, 0), ip(1), now), Ok(()));
    }
    assert!(limits.check(at(0, 0), ip(1), now).is_err());
    assert_eq!(limits.check(at(0, 0), ip(2), now), Ok(()));
}

#[test]
fn buckets_survive_a_reload_that_keeps_the_rule_and_its_limit() {
    let now = Instant::now();
    let one = limit(1, 60_000, 1);
    let state = routes(vec![
        rule("a", Some(one.clone())),
        rule("b", Some(one.clone())),
    ]);
    let mut limits = RateLimits::build(&state, RateLimits::default(), 0, 1, now);
    assert_eq!(limits.check(at(0, 0), ip(1), now), Ok(()));
    assert_eq!(limits.check(at(0, 1), ip(1), now), Ok(()));

    // `a` moved behind a new rule, same limit: still empty. `b` changed its limit: fresh.
    let reloaded = routes(vec![
        rule("new", None),
        rule("a", Some(one)),
        rule("b", Some(limit(1, 60_000, 2))),
    ]);
    let mut limits = RateLimits::build(&reloaded, limits, 0, 1, now);
    assert!(limits.check(at(0, 1), ip(1), now).is_err());
    assert_eq!(limits.check(at(0, 2), ip(1), now), Ok(()));
    assert_eq!(limits.check(at(0, 2), ip(1), now), Ok(()));
    assert!(limits.check(at(0, 2), ip(1), now).is_err());
    assert_eq!(limits.check(at(0, 0), ip(1), now), Ok(()));
    assert_eq!(limits.core(), (0, 1));
}

#[test]
fn principals_and_addresses_are_separate_callers() {
    let share = CoreShare::of(&limit(1, 60_000, 1), 0, 1);
    let now = Instant::now();
    let mut table = SourceTable::new(2);
    let alice = Caller::Principal("spiffe://cluster.local/ns/default/sa/alice");
    let bob = Caller::Principal("spiffe://cluster.local/ns/default/sa/bob");
    assert_eq!(table.bucket(alice, &share, now).take(&share, now), Ok(()));
    assert!(table.bucket(alice, &share, now).take(&share, now).is_err());
    assert_eq!(table.bucket(ip(1), &share, now).take(&share, now), Ok(()));
    // Bob replaces the least recently used caller (alice), who starts full if she returns.
    assert_eq!(table.bucket(bob, &share, now).take(&share, now), Ok(()));
    assert!(!table.contains(alice) && table.contains(bob) && table.contains(ip(1)));
    assert_eq!(table.bucket(alice, &share, now).take(&share, now), Ok(()));
    assert!(!table.contains(ip(1)));
}
