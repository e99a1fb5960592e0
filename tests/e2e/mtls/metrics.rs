//! Istio's standard metrics through a caller sidecar (A, `reporter="source"`) and a callee
//! sidecar (B, `reporter="destination"`) over mutual TLS: admin `/metrics` counts every request
//! on both sides with both principals, and local replies with their response flags.

use super::*;

/// B denies `/admin*`; A routes `/down` to a service nobody listens for (503 `UF`), limits
/// `/limited` to one request a minute (429 `RL`), and retries `/flaky` once on a 5xx.
const EXTRA: &str = r#"
service ratings {
  port 9090 http
  endpoint 127.0.0.1:1
}
route reviews {
  rule down {
    match path prefix "/down"
    to ratings
  }
  rule limited {
    match path prefix "/limited"
    to reviews
    rate_limit 1 per 1m
  }
  rule flaky {
    match path prefix "/flaky"
    to reviews
    retries { attempts 1 on 5xx }
  }
  rule rest { to reviews }
}
authorization deny-admin {
  workloads reviews
  action deny
  rule { to { paths "/admin*" } }
}
"#;

/// Admin `/metrics` of the sidecar at `admin`.
fn scrape(admin: std::net::SocketAddr, path: &str) -> String {
    let response = Client::connect(admin)
        .and_then(|mut c| c.get("admin", path, &[]))
        .expect("scrape");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    response.text()
}

/// The sum of the samples of `metric` (the exact name) whose labels hold every `label`.
fn sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn requests_are_counted_on_both_sides_with_their_flags(driver: &str) {
    let pair = Pair::start_with(driver, "strict", "reviews", REVIEWS, "", EXTRA);
    const N: u32 = 20;
    let mut client = Client::connect(pair.a.outbound).unwrap();
    for _ in 0..N {
        assert_eq!(client.get("reviews", "/ok", &[]).unwrap().status, 200);
    }
    let statuses: Vec<u16> = ["/limited", "/limited", "/admin", "/down"]
        .iter()
        .map(|path| pair.call(path, &[]).status)
        .collect();
    assert_eq!(statuses, [200, 429, 403, 503]);
    let unknown = Client::connect(pair.a.outbound)
        .and_then(|mut c| c.get("nosuch", "/", &[]))
        .unwrap();
    assert_eq!(unknown.status, 404);
    // Both tries of /flaky get the application's 503: the last one goes to the client.
    pair.upstream.fail_next(2, 503);
    assert_eq!(pair.call("/flaky", &[]).status, 503);

    let frontend = format!("source_principal=\"{FRONTEND}\"");
    let reviews = format!("destination_principal=\"{REVIEWS}\"");
    let source = |labels: &[&str]| {
        let text = scrape(pair.a.admin, "/metrics");
        let mut all = vec!["reporter=\"source\"", frontend.as_str()];
        all.extend_from_slice(labels);
        sum(&text, "istio_requests_total", &all)
    };
    // A request is recorded once it has ended, which may be just after its client has read
    // the answer.
    wait_until(|| source(&[]) == f64::from(N + 6));
    let ok = ["response_code=\"200\"", reviews.as_str()];
    assert_eq!(source(&ok), f64::from(N + 1));
    assert_eq!(
        source(&["response_code=\"429\"", "response_flags=\"RL\""]),
        1.0
    );
    assert_eq!(
        source(&["response_code=\"403\"", "response_flags=\"-\""]),
        1.0
    );
    let down = [
        "response_code=\"503\"",
        "response_flags=\"UF",
        "destination_service=\"ratings.default.svc.cluster.local\"",
    ];
    assert_eq!(source(&down), 1.0);
    let unknown = [
        "response_code=\"404\"",
        "response_flags=\"NR\"",
        "destination_service=\"unknown\"",
    ];
    assert_eq!(source(&unknown), 1.0);
    let exhausted = ["response_code=\"503\"", "response_flags=\"URX\""];
    assert_eq!(source(&exhausted), 1.0);
    let text = scrape(pair.a.admin, "/stats/prometheus");
    assert!(
        text.contains(
            "destination_service_name=\"reviews\",destination_service_namespace=\"default\""
        ),
        "{text}"
    );
    // meshd's own: the caller's mutual TLS handshakes and its certificate's remaining life.
    let outbound_ok = ["direction=\"outbound\"", "result=\"ok\""];
    assert!(sum(&text, "ringmesh_tls_handshakes_total", &outbound_ok) >= 1.0);
    let expiry = text
        .lines()
        .find_map(|l| l.strip_prefix("ringmesh_certificate_expiry_seconds "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(expiry.is_some_and(|s| s > 0.0), "{text}");

    let destination = |labels: &[&str]| {
        let text = scrape(pair.b.admin, "/metrics");
        let mut all = vec![
            "reporter=\"destination\"",
            frontend.as_str(),
            "source_workload=\"frontend\"",
            "destination_workload=\"reviews\"",
            "connection_security_policy=\"mutual_tls\"",
        ];
        all.extend_from_slice(labels);
        sum(&text, "istio_requests_total", &all)
    };
    // The callee served both tries of /flaky (503, no flag of its own).
    wait_until(|| destination(&[]) == f64::from(N + 4));
    assert_eq!(
        destination(&["response_code=\"503\"", "response_flags=\"-\""]),
        2.0
    );
    assert_eq!(destination(&["response_code=\"200\""]), f64::from(N + 1));
    let denied = ["response_code=\"403\"", "response_flags=\"RBAC\""];
    assert_eq!(destination(&denied), 1.0);

    // Histograms: buckets are cumulative and `_count` is the number of requests.
    let text = scrape(pair.b.admin, "/metrics");
    let ok = ["reporter=\"destination\"", "response_code=\"200\""];
    let count = sum(&text, "istio_request_duration_milliseconds_count", &ok);
    assert_eq!(count, f64::from(N + 1));
    let mut inf = ok.to_vec();
    inf.push("le=\"+Inf\"");
    assert_eq!(
        sum(&text, "istio_request_duration_milliseconds_bucket", &inf),
        count
    );
    let mut previous = 0.0;
    for line in text.lines().filter(|l| {
        l.starts_with("istio_response_bytes_bucket{") && ok.iter().all(|o| l.contains(o))
    }) {
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= previous, "not cumulative: {line}");
        previous = value;
    }
    assert_eq!(previous, count);
}

on_both_drivers!(requests_are_counted_on_both_sides_with_their_flags);

/// Debian's Prometheus, scraping `targets` every 100 ms, stopped on drop.
struct Prometheus {
    child: std::process::Child,
    web: std::net::SocketAddr,
}

impl Prometheus {
    fn start(scratch: &Scratch, targets: &[std::net::SocketAddr]) -> Self {
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n\
             scrape_configs:\n  - job_name: sidecars\n    metrics_path: /stats/prometheus\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let file = scratch.write("prometheus.yml", &config);
        // A free port for its web listener (taken back just before Prometheus binds it).
        let web = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let log = std::fs::File::create(scratch.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                scratch.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run prometheus (apt-get install prometheus)");
        let prometheus = Self { child, web };
        wait_until(|| prometheus.get("/-/ready").is_some_and(|r| r.status == 200));
        prometheus
    }

    fn get(&self, path: &str) -> Option<Response> {
        Client::connect(self.web)
            .and_then(|mut c| c.get("prometheus", path, &[]))
            .ok()
    }

    /// The value of the instant PromQL `query` (URL-encoded), if it has one.
    fn query(&self, query: &str) -> Option<f64> {
        let answer = self.get(&format!("/api/v1/query?query={query}"))?;
        let json: serde_json::Value = serde_json::from_str(&answer.text()).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_both_sidecars_and_promtool_reads_the_format() {
    let pair = Pair::start("epoll", "strict", "reviews", REVIEWS);
    let prometheus = Prometheus::start(&pair.scratch, &[pair.a.admin, pair.b.admin]);
    const N: u32 = 12;
    let mut client = Client::connect(pair.a.outbound).unwrap();
    for _ in 0..N {
        assert_eq!(client.get("reviews", "/", &[]).unwrap().status, 200);
    }
    // sum(istio_requests_total{reporter="destination"}), and the same for the source side.
    let sum = |reporter: &str| {
        prometheus.query(&format!(
            "sum(istio_requests_total%7Breporter%3D%22{reporter}%22%7D)"
        ))
    };
    wait_until(|| sum("destination") == Some(f64::from(N)));
    wait_until(|| sum("source") == Some(f64::from(N)));
    let by_principal = prometheus.query(
        "sum(istio_requests_total%7Breporter%3D%22destination%22%2C\
         source_principal%3D%22spiffe%3A%2F%2Fcluster.local%2Fns%2Fdefault%2Fsa%2Ffrontend%22%7D)",
    );
    assert_eq!(by_principal, Some(f64::from(N)));

    // promtool parses the scrape; its only lint is the unit in Istio's own metric name.
    let scrape = scrape(pair.b.admin, "/metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&checked.stderr).into_owned()
        + &String::from_utf8_lossy(&checked.stdout);
    let problems: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        checked.status.success()
            || problems.iter().all(|p| p.starts_with(
                "istio_request_duration_milliseconds use base unit \"seconds\" instead of \"milliseconds\""
            )),
        "promtool: {said}"
    );
}
