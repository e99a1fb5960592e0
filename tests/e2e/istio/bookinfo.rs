//! Istio's Bookinfo tasks, with Istio's own sample YAML (the platform manifest and the
//! networking samples, unmodified) and the task pages' inline YAML, through real meshd
//! sidecars: each test asserts what the task page says the user sees. The cluster's state,
//! which Kubernetes would report, is a `kind: List` of Pods and EndpointSlices pointing at
//! real upstreams on 127.0.0.1 (a Pod with a sidecar is at 127.0.0.2, where its sidecar
//! listens; its application at 127.0.0.1 on the same port).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

/// Bookinfo's versions of each service, as its platform manifest deploys them.
const VERSIONS: [(&str, &[&str]); 4] = [
    ("productpage", &["v1"]),
    ("details", &["v1"]),
    ("ratings", &["v1"]),
    ("reviews", &["v1", "v2", "v3"]),
];

/// A running Bookinfo: an upstream per Deployment, named `app-version` (its body and its
/// `x-upstream` header say which answered), and the Pods and EndpointSlices reporting them.
struct Bookinfo {
    scratch: Scratch,
    apps: Vec<(String, Upstream)>,
    /// The platform manifest(s), then the cluster's state.
    platform: Vec<(String, String)>,
}

impl Bookinfo {
    /// Bookinfo's platform manifest; the Pods named in `with_sidecar` (`app-version`) are at
    /// 127.0.0.2, the others at 127.0.0.1.
    fn start(with_sidecar: &[&str]) -> Self {
        let deployments: Vec<(&str, &str)> = VERSIONS
            .iter()
            .flat_map(|(app, versions)| versions.iter().map(move |v| (*app, *v)))
            .collect();
        let manifest = sample("bookinfo__platform__kube__bookinfo.yaml");
        Self::with_manifest(&deployments, ("bookinfo.yaml", manifest), with_sidecar)
    }

    /// httpbin's manifest with Deployments v1 and v2, as the mirroring and circuit breaking
    /// tasks deploy them.
    fn httpbin() -> Self {
        let manifest = sample("httpbin__httpbin.yaml");
        let deployments = [("httpbin", "v1"), ("httpbin", "v2")];
        Self::with_manifest(&deployments, ("httpbin.yaml", manifest), &[])
    }

    fn with_manifest(
        deployments: &[(&str, &str)],
        manifest: (&str, String),
        with_sidecar: &[&str],
    ) -> Self {
        let mut apps = Vec::new();
        let mut items = Vec::new();
        for &(app, version) in deployments {
            let name = format!("{app}-{version}");
            let upstream = Upstream::start(&name).unwrap();
            let ip = if with_sidecar.contains(&name.as_str()) {
                [127, 0, 0, 2]
            } else {
                [127, 0, 0, 1]
            };
            let addr = SocketAddr::from((ip, upstream.addr().port()));
            let pod_name = format!("{name}-pod");
            items.push(pod((app, version), &pod_name, addr.ip()));
            items.push(slice(app, &format!("{name}-slice"), &pod_name, addr));
            apps.push((name, upstream));
        }
        let platform = vec![
            (manifest.0.to_owned(), manifest.1),
            ("cluster.yaml".to_owned(), list(&items)),
        ];
        Self {
            scratch: Scratch::new(),
            apps,
            platform,
        }
    }

    fn app(&self, name: &str) -> &Upstream {
        let found = self.apps.iter().find(|(n, _)| n == name);
        &found.unwrap_or_else(|| panic!("no upstream {name}")).1
    }

    /// Where the Pod of `app` (`app-version`) is: its sidecar's inbound listener.
    fn pod_address(&self, app: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], self.app(app).addr().port()))
    }

    /// Compiles the platform plus `applied` (name, YAML) into `bookinfo.snap`, the snapshot
    /// every sidecar of the test serves: compiling again is `kubectl apply`, then a reload.
    /// The applied files are the documents of one file in the order applied, so a later
    /// resource of the same kind and name replaces the earlier one (W0206), as `kubectl apply`
    /// replaces it in the cluster.
    fn apply(&self, applied: &[(String, String)]) -> PathBuf {
        let documents: Vec<&str> = applied.iter().map(|(_, yaml)| yaml.as_str()).collect();
        let applied = documents.join("\n---\n");
        let files: Vec<(&str, &str)> = self
            .platform
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .chain([("applied.yaml", applied.as_str()), LOG_EVERY_REQUEST])
            .collect();
        compile_yaml(&self.scratch, "bookinfo", &files)
    }

    /// A sidecar on the snapshot with no workload of its own: a caller in `default`, logging
    /// every request to [`Self::access_log`].
    fn caller(&self, snapshot: &Path, driver: &str) -> Sidecar {
        let access_log = self.access_log();
        let args = ["--access-log", access_log.to_str().unwrap()];
        start_logged(
            snapshot,
            driver,
            &args,
            &self.scratch.path().join("caller.log"),
        )
    }

    fn access_log(&self) -> PathBuf {
        self.scratch.path().join("caller-access.log")
    }
}

/// Bookinfo's networking samples `names`, each under its own file name.
fn samples(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            let file = format!("bookinfo__networking__{n}.yaml");
            (format!("{n}.yaml"), sample(&file))
        })
        .collect()
}

/// Inline YAML of a task page, as the file a user would save it in.
fn inline(name: &str, yaml: &str) -> (String, String) {
    (name.to_owned(), yaml.to_owned())
}

/// Asks the sidecar to load its snapshot file again; fails the test if it refuses.
fn reload(sidecar: &Sidecar) {
    let answer = Client::connect(sidecar.admin)
        .and_then(|mut c| c.request("POST", "admin", "/reload", &[], b""))
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
}

/// Who answered `requests` requests for `host` (with `headers`): each upstream's share.
fn answers(
    client: &mut Client,
    host: &str,
    headers: &[(&str, &str)],
    requests: u32,
) -> Vec<String> {
    (0..requests)
        .map(|_| {
            let response = client.get(host, "/", headers).unwrap();
            assert_eq!(response.status, 200, "{}", response.text());
            response.text()
        })
        .collect()
}

/// "Request routing": all traffic to v1, then `end-user: jason` to reviews v2.
fn request_routing_sends_everyone_to_v1_then_jason_to_v2(driver: &str) {
    let bookinfo = Bookinfo::start(&[]);
    let all_v1 = samples(&["destination-rule-all", "virtual-service-all-v1"]);
    let snapshot = bookinfo.apply(&all_v1);
    let caller = bookinfo.caller(&snapshot, driver);
    let access_log = bookinfo.access_log();
    let logged = Logged {
        outbound: caller.outbound,
        log: &access_log,
    };
    let mut client = Client::connect(caller.outbound).unwrap();
    for service in ["productpage", "details", "ratings", "reviews"] {
        let seen = answers(&mut client, service, &[("end-user", "jason")], 6);
        assert!(
            seen.iter().all(|s| *s == format!("{service}-v1")),
            "{seen:?}"
        );
    }

    let test_v2 = samples(&[
        "destination-rule-all",
        "virtual-service-all-v1",
        "virtual-service-reviews-test-v2",
    ]);
    bookinfo.apply(&test_v2);
    reload(&caller);
    let jason = answers(&mut client, "reviews", &[("end-user", "jason")], 6);
    assert!(jason.iter().all(|s| s == "reviews-v2"), "{jason:?}");
    explain_agrees(
        &snapshot,
        &logged,
        "reviews",
        &[("end-user", "jason")],
        &jason,
    );
    let others = answers(&mut client, "reviews", &[("end-user", "alice")], 6);
    assert!(others.iter().all(|s| s == "reviews-v1"), "{others:?}");
    explain_agrees(
        &snapshot,
        &logged,
        "reviews",
        &[("end-user", "alice")],
        &others,
    );
}

/// "Traffic shifting": 50 % to v3, then all of it.
fn traffic_shifting_moves_half_then_all_of_reviews_to_v3(driver: &str) {
    let bookinfo = Bookinfo::start(&[]);
    let half = samples(&[
        "destination-rule-all",
        "virtual-service-all-v1",
        "virtual-service-reviews-50-v3",
    ]);
    let snapshot = bookinfo.apply(&half);
    let caller = bookinfo.caller(&snapshot, driver);
    let access_log = bookinfo.access_log();
    let logged = Logged {
        outbound: caller.outbound,
        log: &access_log,
    };
    let mut client = Client::connect(caller.outbound).unwrap();
    const N: u32 = 400;
    let seen = answers(&mut client, "reviews", &[], N);
    let v3 = seen.iter().filter(|s| *s == "reviews-v3").count();
    assert_eq!(
        seen.iter().filter(|s| *s == "reviews-v1").count() + v3,
        N as usize
    );
    // Binomial(400, 0.5): mean 200, sd 10; ±5 sd fails by chance about once in 10^6 runs.
    assert!((150..=250).contains(&v3), "v3 got {v3} of {N}");
    explain_agrees(&snapshot, &logged, "reviews", &[], &seen);

    let all = samples(&[
        "destination-rule-all",
        "virtual-service-all-v1",
        "virtual-service-reviews-v3",
    ]);
    bookinfo.apply(&all);
    reload(&caller);
    let seen = answers(&mut client, "reviews", &[], 20);
    assert!(seen.iter().all(|s| s == "reviews-v3"), "{seen:?}");
    explain_agrees(&snapshot, &logged, "reviews", &[], &seen);
}

/// "Fault injection": a 7 s delay for jason's calls to ratings (others are not delayed), and
/// an HTTP 500 abort for jason.
fn fault_injection_delays_and_aborts_jason_only(driver: &str) {
    let bookinfo = Bookinfo::start(&[]);
    let delay = samples(&[
        "destination-rule-all",
        "virtual-service-all-v1",
        "virtual-service-ratings-test-delay",
    ]);
    let snapshot = bookinfo.apply(&delay);
    let caller = bookinfo.caller(&snapshot, driver);
    let mut client = Client::connect(caller.outbound).unwrap();
    let started = Instant::now();
    let delayed = client
        .get("ratings", "/", &[("end-user", "jason")])
        .unwrap();
    // The fault holds the request 7 s before it is forwarded: a floor, never a ceiling.
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (delayed.status, delayed.text().as_str()),
        (200, "ratings-v1")
    );
    let started = Instant::now();
    let undelayed = client
        .get("ratings", "/", &[("end-user", "alice")])
        .unwrap();
    assert_eq!(undelayed.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "alice is not delayed"
    );
    // explain predicts the delay for jason only.
    let said = explain(&snapshot, None, "http://ratings/", &["end-user: jason"]);
    assert_eq!(said["fault"]["delay"]["delay_ms"], 7000, "{said}");
    assert_eq!(said["fault"]["delay"]["percent"], 100.0, "{said}");
    let said = explain(&snapshot, None, "http://ratings/", &["end-user: alice"]);
    assert!(said["fault"].is_null(), "{said}");

    let abort = samples(&[
        "destination-rule-all",
        "virtual-service-all-v1",
        "virtual-service-ratings-test-abort",
    ]);
    bookinfo.apply(&abort);
    reload(&caller);
    let before = bookinfo.app("ratings-v1").requests();
    let aborted = client
        .get("ratings", "/", &[("end-user", "jason")])
        .unwrap();
    assert_eq!(aborted.status, 500);
    assert_eq!(aborted.header("x-ringmesh-flag"), Some("FI"));
    let said = explain(&snapshot, None, "http://ratings/", &["end-user: jason"]);
    assert_eq!(said["fault"]["abort"]["status"], 500, "{said}");
    assert_eq!(bookinfo.app("ratings-v1").requests(), before);
    let other = client
        .get("ratings", "/", &[("end-user", "alice")])
        .unwrap();
    assert_eq!((other.status, other.text().as_str()), (200, "ratings-v1"));
}

/// "Request timeouts": reviews routed to v2 with `timeout: 0.5s`; a v2 that does not answer in
/// time gets the caller a 504.
fn request_timeouts_answer_504_when_reviews_is_too_slow(driver: &str) {
    let bookinfo = Bookinfo::start(&[]);
    let timeout = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
    timeout: 0.5s
"#;
    let mut applied = samples(&["destination-rule-all"]);
    applied.push(inline("reviews-timeout.yaml", timeout));
    let snapshot = bookinfo.apply(&applied);
    let caller = bookinfo.caller(&snapshot, driver);
    let access_log = bookinfo.access_log();
    let logged = Logged {
        outbound: caller.outbound,
        log: &access_log,
    };
    let mut client = Client::connect(caller.outbound).unwrap();
    let answered = client.get("reviews", "/", &[]).unwrap();
    assert_eq!(
        (answered.status, answered.text().as_str()),
        (200, "reviews-v2")
    );
    bookinfo.app("reviews-v2").hold_next(1);
    let timed_out = client.get("reviews", "/", &[]).unwrap();
    bookinfo.app("reviews-v2").release();
    assert_eq!(timed_out.status, 504);
    assert_eq!(timed_out.header("x-ringmesh-flag"), Some("UT"));
    let said = explain(&snapshot, None, "http://reviews/", &[]);
    assert_eq!(said["timeout_ms"], 500, "{said}");
    explain_agrees(&snapshot, &logged, "reviews", &[], &["reviews-v2".into()]);
}

/// "Circuit breaking": httpbin with `maxConnections: 1` and `http1MaxPendingRequests: 1`;
/// beyond one request in flight and one waiting, requests are shed with 503 `UO`.
fn circuit_breaking_sheds_what_the_pool_cannot_hold(driver: &str) {
    let httpbin = Bookinfo::httpbin();
    let rule = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
  subsets:
  - name: v1
    labels:
      version: v1
"#;
    let route = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
"#;
    let applied = [
        inline("destination-rule.yaml", rule),
        inline("virtual-service.yaml", route),
    ];
    let snapshot = httpbin.apply(&applied);
    let caller = httpbin.caller(&snapshot, driver);
    let outbound = caller.outbound;
    let get = move || {
        Client::connect(outbound)
            .unwrap()
            .get("httpbin:8000", "/get", &[])
            .unwrap()
    };
    let v1 = httpbin.app("httpbin-v1");
    v1.hold_next(1);
    let first = std::thread::spawn(get);
    wait_until(|| v1.requests() == 1);
    let (tx, rx) = mpsc::channel();
    let others: Vec<_> = (0..2)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(get()).unwrap())
        })
        .collect();
    let shed = rx.recv().unwrap();
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("x-ringmesh-flag"), Some("UO"));
    v1.release();
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(rx.recv().unwrap().status, 200, "the waiting one is served");
    for other in others {
        other.join().unwrap();
    }
}

/// "Mirroring": all of httpbin's traffic to v1, and a copy of each request to v2.
fn mirroring_copies_every_request_to_v2(driver: &str) {
    let httpbin = Bookinfo::httpbin();
    let rule = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"#;
    let route = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: 100.0
"#;
    let applied = [
        inline("destination-rule.yaml", rule),
        inline("virtual-service.yaml", route),
    ];
    let snapshot = httpbin.apply(&applied);
    let caller = httpbin.caller(&snapshot, driver);
    let access_log = httpbin.access_log();
    let logged = Logged {
        outbound: caller.outbound,
        log: &access_log,
    };
    let mut client = Client::connect(caller.outbound).unwrap();
    let seen = answers(&mut client, "httpbin:8000", &[], 10);
    assert!(seen.iter().all(|s| s == "httpbin-v1"), "{seen:?}");
    let v2 = httpbin.app("httpbin-v2");
    wait_until(|| v2.requests() == 10);
    let said = explain(&snapshot, None, "http://httpbin:8000/", &[]);
    assert_eq!(said["mirror"]["subset"], "v2", "{said}");
    assert_eq!(said["mirror"]["percent"], 100.0, "{said}");
    explain_agrees(&snapshot, &logged, "httpbin:8000", &[], &seen);
}

/// "Authorization for HTTP traffic": `allow-nothing` denies every request to the workloads of
/// `default`; then `reviews-viewer` lets productpage's identity GET reviews, and nothing else.
fn authorization_denies_all_then_allows_productpage_to_get_reviews(driver: &str) {
    let bookinfo = Bookinfo::start(&["reviews-v1"]);
    let ca = new_ca(&bookinfo.scratch, false);
    let certs = |name: &str, account: &str| {
        let dir = bookinfo.scratch.path().join(name);
        issue(
            &ca,
            &format!("spiffe://cluster.local/ns/default/sa/{account}"),
            &dir,
        );
        dir
    };
    let (reviews_certs, productpage_certs, ratings_certs) = (
        certs("reviews", "bookinfo-reviews"),
        certs("productpage", "bookinfo-productpage"),
        certs("ratings", "bookinfo-ratings"),
    );
    let allow_nothing = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: default
spec:
  {}
"#;
    // Only reviews v1 answers, so every call reaches the sidecar under test.
    let mut applied = samples(&["destination-rule-all", "virtual-service-all-v1"]);
    applied.push(inline("allow-nothing.yaml", allow_nothing));
    let snapshot = bookinfo.apply(&applied);
    let inbound = bookinfo.pod_address("reviews-v1").to_string();
    let sidecar = |pod: &str, certs: &Path, extra: &[&str]| {
        let mut args = vec!["--workload", pod, "--certs", certs.to_str().unwrap()];
        args.extend_from_slice(extra);
        let log = bookinfo.scratch.path().join(format!("{pod}.log"));
        start_logged(&snapshot, driver, &args, &log)
    };
    let reviews = sidecar("reviews-v1-pod", &reviews_certs, &["--inbound", &inbound]);
    let productpage = sidecar(
        "productpage-v1-pod",
        &productpage_certs,
        &["--inbound", "127.0.0.1:0"],
    );
    let call = |from: &Sidecar, method: &str| {
        Client::connect(from.outbound)
            .and_then(|mut c| c.request(method, "reviews", "/", &[], b""))
            .unwrap()
    };
    let denied = call(&productpage, "GET");
    assert_eq!(denied.status, 403);
    assert!(denied.text().contains("allow-nothing"), "{}", denied.text());
    // explain, asked as each caller, predicts every decision below.
    let decision = |caller: &str, method: &str| {
        let request = format!("{method} http://reviews/");
        let said = explain_request(&snapshot, Some(caller), &request, &[]);
        said["authz"]["decision"]
            .as_str()
            .unwrap_or("null")
            .to_owned()
    };
    assert_eq!(decision("productpage-v1-pod", "GET"), "deny");

    let reviews_viewer = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-viewer
  namespace: default
spec:
  selector:
    matchLabels:
      app: reviews
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]
    to:
    - operation:
        methods: ["GET"]
"#;
    applied.push(inline("reviews-viewer.yaml", reviews_viewer));
    bookinfo.apply(&applied);
    reload(&reviews);
    let allowed = call(&productpage, "GET");
    assert_eq!(
        (allowed.status, allowed.text().as_str()),
        (200, "reviews-v1")
    );
    assert_eq!(call(&productpage, "POST").status, 403);
    assert_eq!(decision("productpage-v1-pod", "GET"), "allow");
    assert_eq!(decision("productpage-v1-pod", "POST"), "deny");
    assert_eq!(decision("ratings-v1-pod", "GET"), "deny");
    // Another identity (ratings' sidecar, which may call reviews) is still denied.
    let ratings = sidecar(
        "ratings-v1-pod",
        &ratings_certs,
        &["--inbound", "127.0.0.1:0"],
    );
    let other = call(&ratings, "GET");
    assert_eq!(other.status, 403);
    assert!(other.text().contains("reviews-viewer"), "{}", other.text());
}

on_both_drivers!(
    request_routing_sends_everyone_to_v1_then_jason_to_v2,
    traffic_shifting_moves_half_then_all_of_reviews_to_v3,
    fault_injection_delays_and_aborts_jason_only,
    request_timeouts_answer_504_when_reviews_is_too_slow,
    circuit_breaking_sheds_what_the_pool_cannot_hold,
    mirroring_copies_every_request_to_v2,
    authorization_denies_all_then_allows_productpage_to_get_reviews,
);
