//! Load balancers and outlier ejection end to end: DSL policies compiled by the real meshc,
//! served by the real meshd, over real upstreams.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringmesh_tests::*;

/// Service `web` served by `upstreams`, with `policy` as its policy block body.
fn web(upstreams: &[&Upstream], policy: &str) -> String {
    let endpoints: String = upstreams
        .iter()
        .map(|u| format!("  endpoint {}\n", u.addr()))
        .collect();
    format!("service web {{\n  port 80 http\n{endpoints}  policy {{\n{policy}\n  }}\n}}\n")
}

fn upstreams(names: &[&str]) -> Vec<Upstream> {
    names.iter().map(|n| Upstream::start(n).unwrap()).collect()
}

fn clusters(admin: SocketAddr) -> String {
    let response = Client::connect(admin)
        .unwrap()
        .get("admin", "/clusters", &[])
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    response.text()
}

/// The `field` of endpoint `addr` in `/clusters` text (pretty JSON, keys sorted).
fn endpoint_field(clusters: &str, addr: SocketAddr, field: &str) -> String {
    let at = clusters
        .find(&format!("\"address\": \"{addr}\""))
        .unwrap_or_else(|| panic!("{addr} not in /clusters:\n{clusters}"));
    let rest = &clusters[at..];
    let end = rest.find('}').unwrap_or(rest.len());
    let key = format!("\"{field}\": ");
    let start = rest[..end]
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} for {addr}:\n{clusters}"))
        + key.len();
    rest[start..end]
        .split([',', '\n'])
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"')
        .to_owned()
}

fn random_and_least_request_spread_over_endpoints(driver: &str) {
    for (kind, names) in [
        ("random", ["r1", "r2", "r3"]),
        ("least_request", ["l1", "l2", "l3"]),
    ] {
        let ups = upstreams(&names);
        let refs: Vec<&Upstream> = ups.iter().collect();
        let scratch = Scratch::new();
        let config = web(&refs, &format!("    load_balancer {kind}"));
        let meshd = serve(&scratch, &config, driver, &[]);
        let mut client = Client::connect(meshd.outbound).unwrap();
        let mut seen: HashMap<String, u32> = HashMap::new();
        for _ in 0..90 {
            let response = client.get("web", "/", &[]).unwrap();
            assert_eq!(response.status, 200);
            *seen.entry(response.text()).or_default() += 1;
        }
        // Each of three endpoints misses 90 draws with probability (2/3)^90 < 1e-15.
        assert_eq!(seen.len(), 3, "{kind}: {seen:?}");
        let listed = clusters(meshd.admin);
        assert!(
            listed.contains(&format!("\"load_balancer\": \"{kind}\"")),
            "{listed}"
        );
    }
}

fn ring_hash_on_a_header_pins_a_key_to_one_endpoint(driver: &str) {
    let ups = upstreams(&["a", "b", "c", "d"]);
    let refs: Vec<&Upstream> = ups.iter().collect();
    let scratch = Scratch::new();
    let config = web(&refs, "    load_balancer ring_hash header \"x-user\"");
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    let mut homes = HashSet::new();
    for user in 0..12 {
        let user = format!("user-{user}");
        let first = client.get("web", "/", &[("x-user", &user)]).unwrap().text();
        for _ in 0..5 {
            let again = client.get("web", "/", &[("x-user", &user)]).unwrap().text();
            assert_eq!(again, first, "{user} moved");
        }
        homes.insert(first);
    }
    // Twelve keys all on one of four endpoints: probability 4 * (1/4)^12.
    assert!(homes.len() > 1, "{homes:?}");
}

fn maglev_on_a_cookie_with_ttl_sets_it_and_sticks(driver: &str) {
    let ups = upstreams(&["m1", "m2", "m3"]);
    let refs: Vec<&Upstream> = ups.iter().collect();
    let scratch = Scratch::new();
    let config = web(&refs, "    load_balancer maglev cookie \"session\" ttl 1h");
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    for _ in 0..3 {
        let first = client.get("web", "/", &[]).unwrap();
        assert_eq!(first.status, 200);
        let set = first
            .header("set-cookie")
            .unwrap_or_else(|| panic!("no set-cookie: {:?}", first.headers))
            .to_owned();
        assert!(set.starts_with("session="), "{set}");
        assert!(set.contains("; Max-Age=3600; Path=/"), "{set}");
        let cookie = set.split(';').next().unwrap().to_owned();
        let home = first.text();
        for _ in 0..10 {
            let again = client
                .get("web", "/", &[("cookie", &format!("theme=dark; {cookie}"))])
                .unwrap();
            assert_eq!(again.text(), home);
            assert_eq!(again.header("set-cookie"), None);
        }
    }
}

fn a_failing_endpoint_is_ejected_and_returns_once_healthy(driver: &str) {
    let ups = upstreams(&["e1", "e2", "e3"]);
    let refs: Vec<&Upstream> = ups.iter().collect();
    let policy = "    outlier {\n      consecutive_gateway_errors 3\n      interval 20ms\n      \
                  base_ejection 4s\n      max_ejection_percent 50\n    }";
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &web(&refs, policy), driver, &[]);
    let bad = &ups[1];
    let mut client = Client::connect(meshd.outbound).unwrap();
    assert_eq!(
        endpoint_field(&clusters(meshd.admin), bad.addr(), "health"),
        "healthy"
    );

    // Under load, the failing endpoint's 503s count until the control thread ejects it.
    bad.set_failing(Some(503));
    let mut errors = 0;
    let mut ejected = false;
    for _ in 0..5_000 {
        let response = client.get("web", "/", &[]).unwrap();
        if response.status != 200 {
            assert_eq!(response.text(), "e2");
            errors += 1;
        }
        if errors >= 3 && endpoint_field(&clusters(meshd.admin), bad.addr(), "health") == "ejected"
        {
            ejected = true;
            break;
        }
    }
    assert!(ejected, "not ejected after {errors} errors");
    let listed = clusters(meshd.admin);
    assert_eq!(endpoint_field(&listed, bad.addr(), "times_ejected"), "1");
    assert_ne!(
        endpoint_field(&listed, bad.addr(), "ejection_ends_in_ms"),
        "null"
    );
    // Once ejected, the endpoint gets no traffic: every request succeeds.
    let served_before = bad.requests();
    for _ in 0..60 {
        let response = client.get("web", "/", &[]).unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert_eq!(bad.requests(), served_before);

    // Healthy again: it returns when its ejection time is up and takes its share again.
    bad.set_failing(None);
    wait_until(|| {
        // Poll gently: each look is a new admin connection.
        std::thread::sleep(std::time::Duration::from_millis(20));
        endpoint_field(&clusters(meshd.admin), bad.addr(), "health") == "healthy"
    });
    let mut back = false;
    for _ in 0..30 {
        let response = client.get("web", "/", &[]).unwrap();
        assert_eq!(response.status, 200);
        back |= response.text() == "e2";
    }
    assert!(back, "the endpoint did not come back");
}

/// Paced load from `threads` keep-alive clients, one request per `every` each, until `stop`
/// (or a bound of 30 s); every response's send time and status.
fn paced_load(
    outbound: SocketAddr,
    threads: usize,
    every: Duration,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(Instant, u16)>>> {
    (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(outbound).unwrap();
                let (mut seen, start) = (Vec::new(), Instant::now());
                let mut next = start;
                while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
                    let sent = Instant::now();
                    let status = client.get("web", "/", &[]).map_or(0, |r| r.status);
                    seen.push((sent, status));
                    next += every;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                seen
            })
        })
        .collect()
}

fn killing_one_of_three_endpoints_under_load_ejects_it_until_it_is_back(driver: &str) {
    let mut ups = upstreams(&["k1", "k2", "k3"]);
    let refs: Vec<&Upstream> = ups.iter().collect();
    let interval = Duration::from_millis(50);
    let base = Duration::from_secs(2);
    let policy = "    outlier {\n      consecutive_gateway_errors 3\n      interval 50ms\n      \
                  base_ejection 2s\n      max_ejection_percent 50\n    }";
    let scratch = Scratch::new();
    // Two cores: the ejection must reach both (eight client connections spread over them).
    let snapshot = compile(&scratch, &web(&refs, policy));
    let meshd = Sidecar::start(&snapshot, &["--cores", "2", "--io-driver", driver]).unwrap();
    let victim = ups[1].addr();
    // About 1000 req/s from eight clients.
    let stop = Arc::new(AtomicBool::new(false));
    let load = paced_load(meshd.outbound, 8, Duration::from_millis(8), &stop);
    wait_until(|| ups.iter().all(|u| u.requests() > 20));

    // Kill the endpoint: its connections close and new ones are refused.
    let killed_at = Instant::now();
    drop(ups.remove(1));
    wait_until(|| endpoint_field(&clusters(meshd.admin), victim, "health") == "ejected");
    let ejected_seen = Instant::now();
    // Healthy again (the same address serving), it returns once the ejection time is up.
    let revived = Upstream::bind("k2", victim).unwrap();
    wait_until(|| endpoint_field(&clusters(meshd.admin), victim, "health") == "healthy");
    let back_seen = Instant::now();
    wait_until(|| revived.requests() > 20);
    stop.store(true, Ordering::SeqCst);
    let seen: Vec<(Instant, u16)> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();

    assert!(
        back_seen >= killed_at + base,
        "back {:?} after the kill, before the {base:?} ejection time",
        back_seen - killed_at
    );
    let errors: Vec<Instant> = seen
        .iter()
        .filter(|(_, s)| *s != 200)
        .map(|(t, _)| *t)
        .collect();
    assert!(
        !errors.is_empty(),
        "the kill caused no error: not a test of ejection"
    );
    // Errors stop once the ejection reaches the cores: nothing sent later than one detection
    // interval after /clusters showed it failed.
    let late: Vec<_> = errors
        .iter()
        .filter(|t| **t > ejected_seen + interval)
        .map(|t| *t - killed_at)
        .collect();
    assert!(
        late.is_empty(),
        "errors after the ejection, at {late:?} after the kill"
    );
    assert!(seen.len() > 1000, "only {} requests sent", seen.len());
}

fn with_every_endpoint_ejected_requests_still_go_to_them(driver: &str) {
    let ups = upstreams(&["p1", "p2"]);
    let refs: Vec<&Upstream> = ups.iter().collect();
    let policy = "    outlier {\n      consecutive_5xx 2\n      interval 20ms\n      \
                  base_ejection 1h\n      max_ejection_percent 100\n    }";
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &web(&refs, policy), driver, &[]);
    for up in &ups {
        up.set_failing(Some(500));
    }
    let mut client = Client::connect(meshd.outbound).unwrap();
    let all_ejected = |listed: &str| {
        ups.iter()
            .all(|u| endpoint_field(listed, u.addr(), "health") == "ejected")
    };
    let mut ejected = false;
    for _ in 0..5_000 {
        assert_eq!(client.get("web", "/", &[]).unwrap().status, 500);
        if all_ejected(&clusters(meshd.admin)) {
            ejected = true;
            break;
        }
    }
    assert!(ejected, "not every endpoint was ejected");
    // Panic mode: rather than failing locally (503 UH), requests go to all endpoints.
    let mut seen = HashSet::new();
    for _ in 0..40 {
        let response = client.get("web", "/", &[]).unwrap();
        assert_eq!(response.header("x-ringmesh-flag"), None);
        seen.insert(response.text());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

fn retried_failures_count_against_the_endpoint_that_failed(driver: &str) {
    let ups = upstreams(&["bad", "good"]);
    let (bad, good) = (&ups[0], &ups[1]);
    let policy = "    outlier {\n      consecutive_5xx 3\n      interval 20ms\n      \
                  base_ejection 30s\n      max_ejection_percent 50\n    }";
    let config = format!(
        "{}route web {{\n  rule all {{\n    to web\n    \
         retries {{ attempts 1 on 503 backoff 1ms }}\n  }}\n}}\n",
        web(&[bad, good], policy)
    );
    let scratch = Scratch::new();
    let meshd = serve(&scratch, &config, driver, &[]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    // Every request succeeds (a 503 try is retried on the other endpoint), yet each failed
    // try counts against the endpoint that answered it until that endpoint is ejected.
    bad.set_failing(Some(503));
    let mut ejected = false;
    for _ in 0..5_000 {
        let response = client.get("web", "/", &[]).unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text(), "good");
        if bad.requests() >= 3
            && endpoint_field(&clusters(meshd.admin), bad.addr(), "health") == "ejected"
        {
            ejected = true;
            break;
        }
    }
    assert!(ejected, "not ejected after {} failed tries", bad.requests());
    let listed = clusters(meshd.admin);
    assert_eq!(endpoint_field(&listed, good.addr(), "health"), "healthy");
    // Once ejected, first tries go to the healthy endpoint only.
    let served_before = bad.requests();
    for _ in 0..20 {
        assert_eq!(client.get("web", "/", &[]).unwrap().status, 200);
    }
    assert_eq!(bad.requests(), served_before);
}

fn an_ejection_survives_a_reload_that_keeps_the_endpoint(driver: &str) {
    let ups = upstreams(&["bad", "good"]);
    let (bad, good) = (&ups[0], &ups[1]);
    let policy = "    outlier {\n      consecutive_5xx 3\n      interval 20ms\n      \
                  base_ejection 1h\n      max_ejection_percent 50\n    }";
    let scratch = Scratch::new();
    let config = web(&[bad, good], policy);
    let meshd = serve(&scratch, &config, driver, &["--watch-interval", "0s"]);
    let mut client = Client::connect(meshd.outbound).unwrap();
    bad.set_failing(Some(503));
    let mut ejected = false;
    for _ in 0..5_000 {
        client.get("web", "/", &[]).unwrap();
        if endpoint_field(&clusters(meshd.admin), bad.addr(), "health") == "ejected" {
            ejected = true;
            break;
        }
    }
    assert!(ejected, "not ejected after {} failures", bad.requests());
    // A new snapshot that adds a service but keeps `web` as it was.
    compile(
        &scratch,
        &format!("{config}{}", one_service("other", good.addr())),
    );
    let reply = Client::connect(meshd.admin)
        .unwrap()
        .request("POST", "admin", "/reload", &[], b"")
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let listed = clusters(meshd.admin);
    assert!(
        listed.contains("\"other\""),
        "the reload did not land:\n{listed}"
    );
    assert_eq!(endpoint_field(&listed, bad.addr(), "health"), "ejected");
    assert_eq!(endpoint_field(&listed, bad.addr(), "times_ejected"), "1");
    let served_before = bad.requests();
    for _ in 0..20 {
        assert_eq!(client.get("web", "/", &[]).unwrap().text(), "good");
    }
    assert_eq!(
        bad.requests(),
        served_before,
        "the ejected endpoint got traffic"
    );
}

on_both_drivers!(
    killing_one_of_three_endpoints_under_load_ejects_it_until_it_is_back,
    an_ejection_survives_a_reload_that_keeps_the_endpoint,
    retried_failures_count_against_the_endpoint_that_failed,
    with_every_endpoint_ejected_requests_still_go_to_them,
    random_and_least_request_spread_over_endpoints,
    ring_hash_on_a_header_pins_a_key_to_one_endpoint,
    maglev_on_a_cookie_with_ttl_sets_it_and_sticks,
    a_failing_endpoint_is_ejected_and_returns_once_healthy,
);
