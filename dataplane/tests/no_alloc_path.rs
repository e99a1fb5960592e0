//! The whole plain HTTP/1.1 path, in steady state, allocates nothing per request: meshd runs in
//! this process under a counting allocator, with the load generator (meshload) and the upstream
//! (mesh-upstream) in their own processes so that every allocation counted is meshd's. Two
//! runs at the same rate and connection count but different lengths differ only in requests:
//! their allocation counts must not differ by more than a run's own jitter (per-run and
//! per-connection costs cancel out).
//!
//! Needs the workspace binaries built next to this test (`cargo build --workspace --bins`, as
//! `.ci/run` does).
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::control::{self, Options};
use dataplane::percore::Settings;
use dataplane::worker::IoDriver;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A workspace binary built into the same target directory as this test.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/this-test -> target/<profile>/<name>
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` with this profile first",
        path.display()
    );
    path
}

/// A loopback port free a moment ago (meshd binds the addresses it is given).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Kills the child when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mesh-upstream` and returns it with its address.
fn upstream() -> (Process, SocketAddr) {
    let mut child = Command::new(binary("mesh-upstream"))
        .args(["--name", "up"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap()
        .parse()
        .unwrap();
    (Process(child), addr)
}

/// Compiles one service `web` served by `endpoint` with the real meshc.
fn snapshot(dir: &std::path::Path, endpoint: SocketAddr) -> PathBuf {
    let config = dir.join("mesh.mesh");
    std::fs::write(
        &config,
        format!("service web {{\n  port 80 http\n  endpoint {endpoint}\n}}\n"),
    )
    .unwrap();
    let out = dir.join("mesh.snap");
    let status = Command::new(binary("meshc"))
        .arg("compile")
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// One meshload run through meshd: fixed rate, two keep-alive connections. Returns the
/// responses (all 200) and the allocations counted in this process meanwhile.
fn run_load(outbound: SocketAddr, duration: &str, json: &std::path::Path) -> (u64, u64) {
    let url = format!("http://{outbound}/");
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let status = Command::new(binary("meshload"))
        .args([url.as_str(), "--rate", "2000", "-c", "2", "-H", "host: web"])
        .args(["--duration", duration, "--json"])
        .arg(json)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let counted = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert!(status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let errors = report["errors"].as_object().unwrap();
    assert!(errors.values().all(|n| n == 0), "{report}");
    assert_eq!(report["status"].as_object().unwrap().len(), 1, "{report}");
    assert!(report["status"]["200"].is_u64(), "{report}");
    (report["responses"].as_u64().unwrap(), counted)
}

fn no_allocation_per_request(driver: IoDriver) {
    let dir = std::env::temp_dir().join(format!(
        "ringmesh-noalloc-{}-{driver:?}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (_upstream, endpoint) = upstream();
    let path = snapshot(&dir, endpoint);
    let routes = control::load(&path, None, None).unwrap();
    let (outbound, admin) = (free_port(), free_port());
    let options = Options {
        routes: Arc::new(routes),
        snapshot: path,
        workload: None,
        // No file watcher: its stat each interval would be counted.
        watch_interval: Duration::ZERO,
        outbound,
        inbound: None,
        admin,
        metrics: None,
        cores: Some(1),
        driver,
        settings: Settings {
            connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(1),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_core: 1000,
            retry_buffer: dataplane::retry::DEFAULT_RETRY_BUFFER,
            grpc_max_message: None,
            marks: None,
        },
        certs: None,
        access_log: dataplane::export::writer::Destination::Stdout,
        trace_collector: None,
        log_level: None,
    };
    // meshd lives until this test process exits.
    std::thread::spawn(move || control::run(options).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready(admin) {
        assert!(Instant::now() < deadline, "meshd did not become ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let json = dir.join("load.json");
    // Warm up: pools, buffers, timers and the runtime's queues reach their working sizes.
    run_load(outbound, "500ms", &json);
    let (short, short_allocations) = run_load(outbound, "1s", &json);
    let (long, long_allocations) = run_load(outbound, "3s", &json);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(long > short + 1000, "{long} vs {short} responses");
    let extra = long_allocations.saturating_sub(short_allocations);
    eprintln!(
        "{driver:?}: {short} requests {short_allocations} allocations, \
         {long} requests {long_allocations} allocations"
    );
    // A run's own costs (spawning meshload, its two connections) vary by a few allocations
    // between runs; one allocation per request would add thousands.
    assert!(
        extra <= 32,
        "{} more requests cost {extra} more allocations ({:.3} per request)",
        long - short,
        extra as f64 / (long - short) as f64
    );
}

fn ready(admin: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(admin) else {
        return false;
    };
    let mut answer = String::new();
    stream
        .write_all(b"GET /ready HTTP/1.1\r\nhost: admin\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut answer))
        .is_ok_and(|_| answer.starts_with("HTTP/1.1 200"))
}

/// One test for both drivers: the counter is process-wide, so two meshds measured at once
/// (as `cargo test` would run two tests) would count each other. Measured one after the other,
/// the first one is idle (and allocates nothing) while the second is measured.
#[test]
fn the_plain_path_allocates_nothing_per_request_under_both_drivers() {
    no_allocation_per_request(IoDriver::Epoll);
    no_allocation_per_request(IoDriver::Uring);
}
