use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use spec::{HashKey, LoadBalancer};

use super::*;

fn addrs(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)))
        .collect()
}

fn no_peer() -> Option<IpAddr> {
    None
}

/// Picks `n` times with no request key and counts picks per endpoint.
fn spread(balancer: &Balancer, endpoints: usize, n: usize, skip: Option<&[bool]>) -> Vec<usize> {
    let schedule = crate::routing::weighted_schedule(&vec![1; endpoints]);
    let mut cursor = 0;
    let outstanding = vec![0; endpoints];
    let input = Input {
        headers: &[],
        peer: &no_peer,
    };
    let mut seen = vec![0; endpoints];
    for _ in 0..n {
        let p = balancer.pick(&schedule, &mut cursor, &outstanding, skip, &input);
        seen[p.endpoint as usize] += 1;
    }
    seen
}

fn header_pick(balancer: &Balancer, key: &str, skip: Option<&[bool]>) -> u32 {
    let headers = [httparse::Header {
        name: "x-user",
        value: key.as_bytes(),
    }];
    let input = Input {
        headers: &headers,
        peer: &no_peer,
    };
    balancer.pick(&[0], &mut 0, &[], skip, &input).endpoint
}

fn ring(min: u64) -> LoadBalancer {
    LoadBalancer::RingHash {
        key: HashKey::Header("x-user".into()),
        minimum_ring_size: min,
    }
}

fn maglev() -> LoadBalancer {
    LoadBalancer::Maglev {
        key: HashKey::Header("x-user".into()),
    }
}

#[test]
fn random_follows_weights() {
    let b = Balancer::new(&LoadBalancer::Random, &addrs(3), &[1, 2, 5]);
    let seen = spread(&b, 3, 16_000, None);
    // Expected 2000, 4000, 10000; generous bounds keep this free of flakiness.
    assert!((1_400..2_600).contains(&seen[0]), "{seen:?}");
    assert!((3_200..4_800).contains(&seen[1]), "{seen:?}");
    assert!((9_000..11_000).contains(&seen[2]), "{seen:?}");
}

#[test]
fn random_skips_ejected_endpoints() {
    let b = Balancer::new(&LoadBalancer::Random, &addrs(3), &[1, 1, 1]);
    let seen = spread(&b, 3, 3_000, Some(&[false, true, false]));
    assert_eq!(seen[1], 0, "{seen:?}");
    assert!(seen[0] > 1_000 && seen[2] > 1_000, "{seen:?}");
}

#[test]
fn round_robin_skips_ejected_endpoints() {
    let b = Balancer::new(&LoadBalancer::RoundRobin, &addrs(3), &[1, 1, 1]);
    assert_eq!(spread(&b, 3, 30, None), [10, 10, 10]);
    assert_eq!(spread(&b, 3, 30, Some(&[true, false, false])), [0, 15, 15]);
}

#[test]
fn least_request_prefers_fewer_outstanding_per_weight() {
    assert_eq!(fewer_outstanding(0, 1, &[1, 1], &[5, 0]), 1);
    assert_eq!(fewer_outstanding(0, 1, &[1, 1], &[0, 5]), 0);
    // Weight 4 with 3 in flight (4/4 = 1) beats weight 1 with 1 in flight (2/1 = 2).
    assert_eq!(fewer_outstanding(0, 1, &[4, 1], &[3, 1]), 0);

    let b = Balancer::new(&LoadBalancer::LeastRequest, &addrs(3), &[1, 1, 1]);
    let input = Input {
        headers: &[],
        peer: &no_peer,
    };
    // Endpoint 0 is busy: it wins only when both draws land on it (1 in 9).
    let mut busy = 0;
    for _ in 0..900 {
        let p = b.pick(&[0, 1, 2], &mut 0, &[50, 0, 0], None, &input);
        busy += usize::from(p.endpoint == 0);
    }
    assert!(busy < 200, "{busy}");
    // Idle endpoints with weights: least request still follows the weights.
    let b = Balancer::new(&LoadBalancer::LeastRequest, &addrs(2), &[1, 3]);
    let seen = spread(&b, 2, 8_000, None);
    assert!(seen[1] > seen[0] * 2, "{seen:?}");
}

#[test]
fn ring_hash_is_consistent_and_weighted() {
    let b = Balancer::new(&ring(1024), &addrs(4), &[1, 1, 1, 1]);
    for key in ["alice", "bob", "carol", "dave"] {
        let first = header_pick(&b, key, None);
        for _ in 0..10 {
            assert_eq!(header_pick(&b, key, None), first);
        }
    }
    // Weighted: endpoint 1 owns about 3/4 of the key space.
    let b = Balancer::new(&ring(4096), &addrs(2), &[1, 3]);
    let to_one = (0..4_000)
        .filter(|i| header_pick(&b, &format!("user-{i}"), None) == 1)
        .count();
    assert!((2_600..3_400).contains(&to_one), "{to_one}");
}

/// Share of keys that move when endpoint 0 of `n` is removed, and that none of the keys that
/// did not live on it moved.
fn remapping(policy: &LoadBalancer, n: u16) -> f64 {
    let all = addrs(n);
    let before = Balancer::new(policy, &all, &vec![1; n as usize]);
    let after = Balancer::new(policy, &all[1..], &vec![1; n as usize - 1]);
    let keys = 5_000;
    let mut moved = 0;
    for i in 0..keys {
        let key = format!("key-{i}");
        let old = header_pick(&before, &key, None);
        let new = header_pick(&after, &key, None) + 1;
        if old != 0 && old != new {
            moved += 1;
        }
    }
    moved as f64 / keys as f64
}

#[test]
fn ring_hash_moves_few_keys_when_an_endpoint_goes() {
    // Keys of the remaining endpoints stay put on a ring.
    assert_eq!(remapping(&ring(1024), 5), 0.0);
}

#[test]
fn maglev_is_consistent_and_moves_few_keys() {
    let b = Balancer::new(&maglev(), &addrs(5), &[1; 5]);
    for key in ["alice", "bob"] {
        let first = header_pick(&b, key, None);
        assert_eq!(header_pick(&b, key, None), first);
    }
    // Maglev moves a little more than the removed endpoint's share, not a rehash (~80 %).
    let moved = remapping(&maglev(), 5);
    assert!(moved < 0.1, "{moved}");
}

#[test]
fn maglev_table_follows_weights() {
    let table = build_maglev(&addrs(3), &[1, 2, 1], MAGLEV_TABLE_SIZE);
    let mut owned = [0usize; 3];
    for &e in table.iter() {
        owned[e as usize] += 1;
    }
    let quarter = MAGLEV_TABLE_SIZE / 4;
    assert!(owned[0].abs_diff(quarter) < 100, "{owned:?}");
    assert!(owned[1].abs_diff(2 * quarter) < 100, "{owned:?}");
    assert_eq!(owned.iter().sum::<usize>(), MAGLEV_TABLE_SIZE);
}

#[test]
fn hashing_skips_ejected_endpoints_and_keeps_the_rest() {
    for policy in [ring(1024), maglev()] {
        let b = Balancer::new(&policy, &addrs(3), &[1, 1, 1]);
        let skip = [false, true, false];
        for i in 0..300 {
            let key = format!("k{i}");
            let home = header_pick(&b, &key, None);
            let now = header_pick(&b, &key, Some(&skip));
            assert_ne!(now, 1);
            if home != 1 {
                assert_eq!(now, home, "{policy:?} moved {key}");
            }
        }
    }
}

#[test]
fn a_cookie_with_ttl_is_generated_and_then_sticks() {
    let policy = LoadBalancer::Maglev {
        key: HashKey::Cookie {
            name: "sticky".into(),
            ttl_ms: Some(1_500),
        },
    };
    let b = Balancer::new(&policy, &addrs(4), &[1; 4]);
    let input = Input {
        headers: &[],
        peer: &no_peer,
    };
    let first = b.pick(&[0], &mut 0, &[], None, &input);
    let cookie = first.cookie.expect("a generated cookie");
    assert_eq!(cookie.max_age, 2);
    assert_eq!(b.cookie_name(), Some("sticky"));
    let value = format!(
        "other=1; sticky={}",
        std::str::from_utf8(&cookie.value).unwrap()
    );
    let headers = [httparse::Header {
        name: "Cookie",
        value: value.as_bytes(),
    }];
    let input = Input {
        headers: &headers,
        peer: &no_peer,
    };
    for _ in 0..20 {
        let again = b.pick(&[0], &mut 0, &[], None, &input);
        assert_eq!(again.endpoint, first.endpoint);
        assert_eq!(again.cookie, None);
    }

    let mut head = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec();
    write_set_cookie(&mut head, "sticky", cookie);
    let text = String::from_utf8(head).unwrap();
    assert!(
        text.ends_with("; Max-Age=2; Path=/; HttpOnly\r\n\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nset-cookie: sticky="), "{text}");
}

#[test]
fn a_cookie_without_ttl_is_never_generated() {
    let policy = LoadBalancer::RingHash {
        key: HashKey::Cookie {
            name: "s".into(),
            ttl_ms: None,
        },
        minimum_ring_size: 64,
    };
    let b = Balancer::new(&policy, &addrs(2), &[1, 1]);
    let input = Input {
        headers: &[],
        peer: &no_peer,
    };
    assert_eq!(b.pick(&[0], &mut 0, &[], None, &input).cookie, None);
}

#[test]
fn source_ip_keys_on_the_peer() {
    let policy = LoadBalancer::Maglev {
        key: HashKey::SourceIp,
    };
    let b = Balancer::new(&policy, &addrs(8), &[1; 8]);
    let picks: std::collections::HashSet<u32> = (1..=40u8)
        .map(|last| {
            let peer = move || Some(IpAddr::V4(Ipv4Addr::new(192, 168, 0, last)));
            let input = Input {
                headers: &[],
                peer: &peer,
            };
            let one = b.pick(&[0], &mut 0, &[], None, &input).endpoint;
            assert_eq!(b.pick(&[0], &mut 0, &[], None, &input).endpoint, one);
            one
        })
        .collect();
    assert!(picks.len() > 3, "{picks:?}");
}

#[test]
fn cookie_values_are_found_among_others() {
    let headers = [
        httparse::Header {
            name: "cookie",
            value: b"a=1; b = 2",
        },
        httparse::Header {
            name: "Cookie",
            value: b"c=3",
        },
    ];
    assert_eq!(cookie_value(&headers, "b"), Some(&b"2"[..]));
    assert_eq!(cookie_value(&headers, "c"), Some(&b"3"[..]));
    assert_eq!(cookie_value(&headers, "d"), None);
    assert_eq!(&hex16(0x0123_4567_89ab_cdef), b"0123456789abcdef");
}

#[test]
fn core_state_counts_in_flight_and_failures() {
    let state = RefCell::new(CoreBalancing::new([2usize, 3].into_iter()));
    let pick = Pick {
        group: 1,
        endpoint: 2,
    };
    {
        let mut a = Inflight::start(&state, pick);
        let _b = Inflight::start(&state, pick);
        assert_eq!(state.borrow().outstanding[1][2], 2);
        a.response(503);
    }
    assert_eq!(state.borrow().outstanding[1][2], 0);
    let report = state.borrow().report();
    assert_eq!(
        report,
        [(
            1,
            2,
            Counts {
                consecutive_5xx: 1,
                consecutive_gateway: 1
            }
        )]
    );
    // A pick from a replaced route state (out of range) is ignored, not a panic.
    drop(Inflight::start(
        &state,
        Pick {
            group: 9,
            endpoint: 9,
        },
    ));
}
