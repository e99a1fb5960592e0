use std::time::{Duration, Instant};

use spec::OutlierDetection;

use super::*;

fn policy(percent: u32) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: Some(5),
        consecutive_gateway_errors: Some(3),
        interval_ms: 100,
        base_ejection_ms: 1_000,
        max_ejection_percent: percent,
    }
}

fn counts(c5xx: u32, gateway: u32) -> Counts {
    Counts {
        consecutive_5xx: c5xx,
        consecutive_gateway: gateway,
    }
}

#[test]
fn outcomes_count_runs_and_a_success_resets_them() {
    let mut c = Counts::default();
    c.record(Outcome::from_status(503));
    c.record(Outcome::GatewayError);
    assert_eq!(c, counts(2, 2));
    c.record(Outcome::from_status(500));
    assert_eq!(c, counts(3, 0));
    c.record(Outcome::from_status(404));
    assert_eq!(c, Counts::default());
    assert_eq!(Outcome::from_status(504), Outcome::GatewayError);
    assert_eq!(Outcome::from_status(501), Outcome::ServerError);
}

#[test]
fn ejects_at_a_threshold_and_returns_when_the_time_is_up() {
    let now = Instant::now();
    let mut health = vec![EndpointHealth::default(); 3];
    // Below both thresholds: nothing happens.
    let step = decide_group(&policy(100), &mut health, &[counts(4, 2); 3], now);
    assert_eq!(step, Step::default());
    // Gateway errors reach 3 on endpoint 1, 5xx reach 5 on endpoint 2.
    let totals = [counts(0, 0), counts(3, 3), counts(5, 0)];
    let step = decide_group(&policy(100), &mut health, &totals, now);
    assert_eq!(step.ejected, [1, 2]);
    assert_eq!(health[1].times_ejected, 1);
    assert_eq!(health[1].ejected_until, Some(now + Duration::from_secs(1)));
    // Still ejected just before the time; back after it.
    let step = decide_group(&policy(100), &mut health, &[Counts::default(); 3], now);
    assert!(!step.changed);
    let later = now + Duration::from_secs(1);
    let step = decide_group(&policy(100), &mut health, &[Counts::default(); 3], later);
    assert!(step.changed && step.ejected.is_empty());
    assert!(health.iter().all(|h| h.ejected_until.is_none()));
    // A second ejection lasts twice as long.
    let step = decide_group(&policy(100), &mut health, &totals, later);
    assert_eq!(step.ejected, [1, 2]);
    assert_eq!(health[1].times_ejected, 2);
    assert_eq!(
        health[1].ejected_until,
        Some(later + Duration::from_secs(2))
    );
}

#[test]
fn the_ejection_percent_caps_ejections_but_one_is_always_allowed() {
    let now = Instant::now();
    let failing = [counts(5, 3); 4];
    let mut health = vec![EndpointHealth::default(); 4];
    // 50 % of 4: two.
    assert_eq!(
        decide_group(&policy(50), &mut health, &failing, now).ejected,
        [0, 1]
    );
    // 10 % of 4 rounds to zero, yet one may be ejected.
    let mut health = vec![EndpointHealth::default(); 4];
    assert_eq!(
        decide_group(&policy(10), &mut health, &failing, now).ejected,
        [0]
    );
    // Already at the cap: nothing more.
    assert!(decide_group(&policy(10), &mut health, &failing, now)
        .ejected
        .is_empty());
}

#[test]
fn disabled_thresholds_never_eject() {
    let p = OutlierDetection {
        consecutive_5xx: None,
        consecutive_gateway_errors: None,
        ..policy(100)
    };
    let mut health = vec![EndpointHealth::default(); 2];
    let step = decide_group(&p, &mut health, &[counts(99, 99); 2], Instant::now());
    assert_eq!(step, Step::default());
}

#[test]
fn skip_lists_ejected_endpoints_except_in_panic_mode() {
    let until = Some(Instant::now());
    let h = |ejected: bool| EndpointHealth {
        ejected_until: ejected.then_some(until).flatten(),
        times_ejected: u32::from(ejected),
    };
    let ejections = Ejections::new(
        "hash".into(),
        vec![
            vec![h(false), h(true)],
            vec![h(true), h(true)],
            vec![h(false), h(false)],
        ],
        vec![],
    );
    assert_eq!(ejections.skip(0), Some(&[false, true][..]));
    // Every endpoint ejected: route to all of them rather than fail.
    assert_eq!(ejections.skip(1), None);
    assert_eq!(ejections.skip(2), None);
    assert_eq!(ejections.skip(7), None);
}

#[test]
fn the_control_thread_sums_the_cores_latest_reports() {
    let groups = [group("a", Some(policy(50)), 2), group("b", None, 2)].into_iter();
    let mut state = OutlierState::with_groups("h1".into(), groups, 2);
    assert!(state.enabled() && state.serves("h1"));
    let now = Instant::now();
    // Two gateway errors on each core: three are needed, the sum reaches four.
    state.report(0, "h1", vec![(0, 1, counts(2, 2))]);
    assert!(state.decide(now).is_none());
    // A report for another route state is dropped; a newer report replaces the older one.
    state.report(1, "h0", vec![(0, 1, counts(9, 9))]);
    assert!(state.decide(now).is_none());
    state.report(0, "h1", vec![(0, 1, counts(1, 1))]);
    state.report(1, "h1", vec![(0, 1, counts(2, 2))]);
    let ejections = state.decide(now).expect("an ejection");
    assert_eq!(ejections.newly_ejected, [(0, 1)]);
    assert_eq!(ejections.skip(0), Some(&[false, true][..]));
    assert_eq!(ejections.hash, "h1");
    // The counts that ejected are spent: nothing new until the time is up.
    assert!(state.decide(now).is_none());
    // A group without outlier detection never ejects.
    state.report(0, "h1", vec![(1, 0, counts(99, 99))]);
    let back = state
        .decide(now + Duration::from_secs(1))
        .expect("the return");
    assert_eq!(back.skip(0), None);
    assert_eq!(back.skip(1), None);
    assert_eq!(back.groups[0][1].times_ejected, 1);
}

#[test]
fn a_core_applies_ejections_and_restarts_counts_of_ejected_endpoints() {
    use crate::balancer::{CoreBalancing, Inflight, Pick};
    let core = std::cell::RefCell::new(CoreBalancing::new([2usize].into_iter()));
    let pick = Pick {
        group: 0,
        endpoint: 1,
    };
    for _ in 0..3 {
        Inflight::start(&core, pick).failed();
    }
    assert_eq!(core.borrow().report(), [(0, 1, counts(3, 3))]);
    let groups = [group("svc", Some(policy(50)), 2)].into_iter();
    let mut state = OutlierState::with_groups("h".into(), groups, 1);
    state.report(0, "h", core.borrow().report());
    let ejections = state.decide(Instant::now()).expect("an ejection");
    core.borrow_mut().set_ejections(ejections);
    assert!(core.borrow().report().is_empty());

    // Selection on this core now avoids the ejected endpoint.
    let addresses: Vec<std::net::SocketAddr> = vec![
        "10.0.0.1:80".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    ];
    let group = crate::routing::EndpointGroup {
        service: 0,
        name: "svc".into(),
        balancer: crate::balancer::Balancer::new(&spec::LoadBalancer::Random, &addresses, &[1, 1]),
        endpoints: addresses,
        schedule: vec![0, 1],
        outlier: Some(policy(50)),
        pool: spec::PoolLimits::default(),
        identities: Vec::new(),
    };
    let no_peer = || None;
    let input = crate::balancer::Input {
        headers: &[],
        peer: &no_peer,
    };
    for _ in 0..50 {
        assert_eq!(core.borrow_mut().pick(0, &group, &input).endpoint, 0);
    }
}

/// A group for [`OutlierState::with_groups`]: `n` endpoints 10.0.0.1:80, 10.0.0.2:80, ...
fn group(
    name: &str,
    policy: Option<OutlierDetection>,
    n: u8,
) -> (String, Option<OutlierDetection>, Vec<std::net::SocketAddr>) {
    let endpoints = (1..=n).map(|i| ([10, 0, 0, i], 80).into()).collect();
    (name.to_owned(), policy, endpoints)
}

#[test]
fn a_reload_keeps_ejections_of_the_endpoints_it_keeps() {
    let mut old = OutlierState::with_groups(
        "h1".into(),
        [group("a", Some(policy(50)), 3)].into_iter(),
        1,
    );
    let now = Instant::now();
    old.report(0, "h1", vec![(0, 1, counts(3, 3))]);
    assert!(old.decide(now).is_some());
    // The new state reorders the group's endpoints (10.0.0.2 is now second of two), adds a
    // group, and gives another group of the same address no outlier detection.
    let (name, policy_a, _) = group("a", Some(policy(50)), 0);
    let reordered = vec![([10, 0, 0, 3], 80).into(), ([10, 0, 0, 2], 80).into()];
    let groups = [
        group("new", Some(policy(50)), 2),
        (name, policy_a, reordered),
        group("plain", None, 2),
    ];
    let mut new = OutlierState::with_groups("h2".into(), groups.into_iter(), 1);
    assert!(new.carry_from(&old), "an ejection carried over");
    let ejections = new.ejections(Vec::new());
    assert_eq!(ejections.hash, "h2");
    assert_eq!(ejections.skip(0), None);
    assert_eq!(ejections.skip(1), Some(&[false, true][..]));
    assert_eq!(ejections.groups[1][1].times_ejected, 1);
    assert_eq!(ejections.skip(2), None);
    // Its time still ends when it would have.
    let back = new
        .decide(now + Duration::from_secs(1))
        .expect("the return");
    assert_eq!(back.skip(1), None);
    // A group without the endpoint keeps nothing.
    let mut other = OutlierState::with_groups(
        "h3".into(),
        [group("b", Some(policy(50)), 3)].into_iter(),
        1,
    );
    assert!(!other.carry_from(&old));
}
