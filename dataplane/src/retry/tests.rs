use super::*;
use std::net::SocketAddr;

use crate::routing::EndpointGroup;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy(attempts: u32, on: RetryOn, non_idempotent: bool) -> RetryPolicy {
    RetryPolicy {
        attempts,
        per_try_timeout_ms: None,
        retry_on: on,
        backoff_base_ms: 25,
        backoff_max_ms: 250,
        non_idempotent,
    }
}

#[test]
fn backoff_ceiling_doubles_from_base_and_stops_at_max() {
    // The largest draw shows the ceiling; the smallest is always zero.
    let top = |retry| backoff(retry, ms(25), ms(250), |n| n - 1);
    assert_eq!(top(1), ms(25));
    assert_eq!(top(2), ms(50));
    assert_eq!(top(3), ms(100));
    assert_eq!(top(4), ms(200));
    assert_eq!(top(5), ms(250));
    assert_eq!(top(60), ms(250));
    assert_eq!(top(u32::MAX), ms(250));
    assert_eq!(backoff(3, ms(25), ms(250), |_| 0), ms(0));
    // A draw out of range is clamped; a zero base never waits.
    assert_eq!(backoff(1, ms(25), ms(250), |_| u64::MAX), ms(25));
    assert_eq!(backoff(7, ms(0), ms(250), |n| n - 1), ms(0));
}

#[test]
fn backoff_draws_stay_within_bounds() {
    for retry in 1..12 {
        for _ in 0..200 {
            let b = backoff(retry, ms(10), ms(300), |n| fastrand::u64(..n));
            assert!(b <= ms(300).min(ms(10 << (retry - 1))), "{retry}: {b:?}");
        }
    }
}

#[test]
fn budget_allows_three_then_a_fifth_of_active_requests() {
    let budget = RetryBudget::default();
    let requests: Vec<_> = (0..10).map(|_| budget.request()).collect();
    let first: Vec<_> = (0..3).map(|_| budget.retry().unwrap()).collect();
    assert!(
        budget.retry().is_none(),
        "10 active requests: min 3 retries"
    );
    let more: Vec<_> = (0..20).map(|_| budget.request()).collect();
    // 30 active: 20% is 6.
    let second: Vec<_> = (0..3).map(|_| budget.retry().unwrap()).collect();
    assert!(budget.retry().is_none());
    drop(first);
    assert!(budget.retry().is_some(), "a finished retry frees its slot");
    drop((requests, more, second));
    assert_eq!(budget.active.get(), 0);
    assert_eq!(budget.retrying.get(), 0);
}

#[test]
fn retry_on_decision_table() {
    let on = |f: fn(&mut RetryOn)| {
        let mut on = RetryOn::default();
        f(&mut on);
        on
    };
    let five = on(|o| o.server_error = true);
    let gateway = on(|o| o.gateway_error = true);
    let reset = on(|o| o.reset = true);
    let connect = on(|o| o.connect_failure = true);
    let codes = on(|o| o.status_codes = vec![409, 500]);
    use Failure::*;
    let table: [(&RetryOn, Failure, bool); 22] = [
        (&five, Status(500), true),
        (&five, Status(503), true),
        (&five, Status(599), true),
        (&five, Status(404), false),
        (&five, Reset, true),
        (&five, ConnectFailure, true),
        (&five, PerTryTimeout, true),
        (&gateway, Status(500), false),
        (&gateway, Status(502), true),
        (&gateway, Status(504), true),
        (&gateway, Reset, true),
        (&gateway, ConnectFailure, true),
        (&reset, Status(503), false),
        (&reset, Reset, true),
        (&reset, PerTryTimeout, true),
        (&reset, ConnectFailure, true),
        (&connect, ConnectFailure, true),
        (&connect, Reset, false),
        (&connect, Status(503), false),
        (&codes, Status(409), true),
        (&codes, Status(500), true),
        (&codes, Status(503), false),
    ];
    for (on, failure, want) in table {
        assert_eq!(retried_on(on, failure), want, "{on:?} {failure:?}");
    }
}

#[test]
fn default_retries_once_a_stale_pooled_connection() {
    let budget = RetryBudget::default();
    let mut r = Retries::new(None, true, true, &budget);
    assert_eq!(r.after(Failure::Reset, false, true, true), Verdict::Final);
    assert_eq!(
        r.after(Failure::Status(503), true, false, true),
        Verdict::Final
    );
    assert_eq!(
        r.after(Failure::Reset, true, true, true),
        Verdict::Retry(Duration::ZERO)
    );
    assert_eq!(r.after(Failure::Reset, true, true, true), Verdict::Final);
    let mut post = Retries::new(None, false, true, &budget);
    assert_eq!(post.after(Failure::Reset, true, true, true), Verdict::Final);
}

#[test]
fn policy_retries_until_exhausted() {
    let budget = RetryBudget::default();
    let _active = budget.request();
    let p = policy(
        2,
        RetryOn {
            gateway_error: true,
            ..RetryOn::default()
        },
        false,
    );
    let mut r = Retries::new(Some(&p), true, true, &budget);
    assert!(r.may_retry_response(Failure::Status(503)));
    assert!(!r.may_retry_response(Failure::Status(500)));
    assert!(
        !r.exhausted_on_response(Failure::Status(503)),
        "attempts are left"
    );
    assert!(matches!(
        r.after(Failure::Status(503), false, false, true),
        Verdict::Retry(_)
    ));
    assert!(matches!(
        r.after(Failure::ConnectFailure, false, true, true),
        Verdict::Retry(_)
    ));
    assert!(!r.may_retry_response(Failure::Status(503)));
    assert!(
        r.exhausted_on_response(Failure::Status(503)),
        "a retried status after the last attempt"
    );
    assert!(
        !r.exhausted_on_response(Failure::Status(500)),
        "not a retried status"
    );
    assert_eq!(
        r.after(Failure::Status(503), false, false, true),
        Verdict::Exhausted
    );
    assert_eq!(r.done(), 2);
    // Not a retried condition, or no time left: final.
    let mut r = Retries::new(Some(&p), true, true, &budget);
    assert_eq!(
        r.after(Failure::Status(500), false, false, true),
        Verdict::Final
    );
    assert_eq!(
        r.after(Failure::Status(503), false, false, false),
        Verdict::Final
    );
    // Zero attempts disable retries without counting as exhausted.
    let off = policy(
        0,
        RetryOn {
            gateway_error: true,
            ..RetryOn::default()
        },
        false,
    );
    let mut r = Retries::new(Some(&off), true, true, &budget);
    assert_eq!(
        r.after(Failure::Status(503), false, false, true),
        Verdict::Final
    );
}

#[test]
fn non_idempotent_and_unbuffered_requests() {
    let budget = RetryBudget::default();
    let on = RetryOn {
        server_error: true,
        ..RetryOn::default()
    };
    let strict = policy(3, on.clone(), false);
    let lenient = policy(3, on, true);
    let mut post = Retries::new(Some(&strict), false, true, &budget);
    assert!(!post.may_retry_response(Failure::Status(503)));
    assert_eq!(
        post.after(Failure::Reset, false, true, true),
        Verdict::Final
    );
    let mut post = Retries::new(Some(&lenient), false, true, &budget);
    assert!(post.may_retry_response(Failure::Status(503)));
    assert!(matches!(
        post.after(Failure::Reset, false, true, true),
        Verdict::Retry(_)
    ));
    let mut streamed = Retries::new(Some(&lenient), true, false, &budget);
    assert!(!streamed.may_retry_response(Failure::Status(503)));
    assert_eq!(
        streamed.after(Failure::Reset, false, true, true),
        Verdict::Final
    );
}

#[test]
fn retries_beyond_the_budget_are_refused() {
    let budget = RetryBudget::default();
    let p = policy(
        10,
        RetryOn {
            reset: true,
            ..RetryOn::default()
        },
        false,
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut r = Retries::new(Some(&p), true, true, &budget);
        assert!(matches!(
            r.after(Failure::Reset, false, true, true),
            Verdict::Retry(_)
        ));
        held.push(r);
    }
    let mut r = Retries::new(Some(&p), true, true, &budget);
    assert_eq!(
        r.after(Failure::Reset, false, true, true),
        Verdict::OverBudget
    );
    // One request retrying again reuses its own slot.
    assert!(matches!(
        held[0].after(Failure::Reset, false, true, true),
        Verdict::Retry(_)
    ));
    // A failed connect loaded no upstream: it is retried beyond the budget.
    let on_connect = policy(
        10,
        RetryOn {
            connect_failure: true,
            ..RetryOn::default()
        },
        false,
    );
    let mut r = Retries::new(Some(&on_connect), true, true, &budget);
    assert!(matches!(
        r.after(Failure::ConnectFailure, false, true, true),
        Verdict::Retry(_)
    ));
}

#[test]
fn a_refused_stream_is_replayed_once_whatever_the_method_or_policy() {
    let budget = RetryBudget::default();
    let connect_only = policy(
        2,
        RetryOn {
            connect_failure: true,
            ..RetryOn::default()
        },
        false,
    );
    for policy in [None, Some(&connect_only)] {
        let mut post = Retries::new(policy, false, true, &budget);
        assert_eq!(
            post.after(Failure::RefusedStream, true, true, true),
            Verdict::Retry(Duration::ZERO)
        );
        assert!(post.picks_another());
        assert_eq!(
            post.after(Failure::RefusedStream, true, true, true),
            Verdict::Final
        );
    }
    // Its body went and was not kept: nothing to send again.
    let mut streamed = Retries::new(None, true, false, &budget);
    let refused = streamed.after(Failure::RefusedStream, false, true, true);
    assert_eq!(refused, Verdict::Final);
}

#[test]
fn a_failed_connect_leaves_a_streamed_body_to_send_elsewhere() {
    let budget = RetryBudget::default();
    let p = policy(
        2,
        RetryOn {
            connect_failure: true,
            reset: true,
            ..RetryOn::default()
        },
        false,
    );
    let mut streamed = Retries::new(Some(&p), true, false, &budget);
    let connect = |r: &mut Retries<'_>| r.after(Failure::ConnectFailure, false, true, true);
    assert_eq!(connect(&mut streamed), Verdict::Final);
    streamed.body_untouched(true);
    assert!(matches!(connect(&mut streamed), Verdict::Retry(_)));
    let reset = streamed.after(Failure::Reset, false, true, true);
    assert_eq!(reset, Verdict::Final, "the reset try took the body");
    // A method the policy may not send twice is not sent twice.
    let mut post = Retries::new(Some(&p), false, false, &budget);
    post.body_untouched(true);
    assert_eq!(connect(&mut post), Verdict::Final);
}

#[test]
fn per_try_deadline_is_bounded_by_the_rule_deadline() {
    let budget = RetryBudget::default();
    let mut p = policy(1, RetryOn::default(), false);
    p.per_try_timeout_ms = Some(100);
    let r = Retries::new(Some(&p), true, true, &budget);
    let now = Instant::now();
    assert_eq!(r.try_deadline(now, None), Some(now + ms(100)));
    assert_eq!(r.try_deadline(now, Some(now + ms(50))), Some(now + ms(50)));
    assert_eq!(
        r.try_deadline(now, Some(now + ms(500))),
        Some(now + ms(100))
    );
    let none = Retries::new(None, true, true, &budget);
    assert_eq!(none.try_deadline(now, None), None);
}

#[test]
fn a_retry_picks_another_endpoint_with_the_group_balancer() {
    let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
    for lb in [
        spec::LoadBalancer::RoundRobin,
        spec::LoadBalancer::LeastRequest,
    ] {
        let group = EndpointGroup {
            service: 0,
            name: "g".into(),
            balancer: crate::balancer::Balancer::new(&lb, &[a, b], &[1, 1]),
            endpoints: vec![a, b],
            schedule: vec![0, 1],
            outlier: None,
            pool: spec::PoolLimits::default(),
            identities: Vec::new(),
        };
        let mut balancing = crate::balancer::CoreBalancing::new([2].into_iter());
        for _ in 0..10 {
            assert_eq!(balancing.pick_other(0, &group, 0), Some(1), "{lb:?}");
            assert_eq!(balancing.pick_other(0, &group, 1), Some(0), "{lb:?}");
        }
    }
    let single = EndpointGroup {
        service: 0,
        name: "s".into(),
        balancer: crate::balancer::Balancer::new(&spec::LoadBalancer::RoundRobin, &[a], &[1]),
        endpoints: vec![a],
        schedule: vec![0],
        outlier: None,
        pool: spec::PoolLimits::default(),
        identities: Vec::new(),
    };
    let mut balancing = crate::balancer::CoreBalancing::new([1].into_iter());
    assert_eq!(balancing.pick_other(0, &single, 0), None);
}

#[test]
fn a_grpc_status_in_the_head_is_retried_when_the_policy_names_it() {
    let on = RetryOn {
        grpc_statuses: vec![1, 14],
        ..RetryOn::default()
    };
    assert!(retried_on(&on, Failure::GrpcStatus(14)));
    assert!(!retried_on(&on, Failure::GrpcStatus(4)));
    // A gRPC error is a 200 to HTTP: only its gRPC status makes it a failure.
    assert!(!retried_on(&on, Failure::Status(200)));
}
