//! Starts the real `meshc` and `meshd` binaries as child processes and reads back what they
//! bound, for the demo, the benchmark harness and the end-to-end tests.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a sidecar may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of a workspace binary built into the same target directory as the running program.
pub fn binary(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test binaries live in target/<profile>/deps; the real binaries one level up.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found; build the workspace binaries first (cargo build --workspace --bins, \
                 or run the tests with --workspace)",
                path.display()
            ),
        ))
    }
}

/// Runs `meshc compile INPUTS -o OUT` and returns its output (status, stdout, stderr).
pub fn compile(inputs: &[&Path], out: &Path) -> io::Result<Output> {
    Command::new(binary("meshc")?)
        .arg("compile")
        .args(inputs)
        .arg("-o")
        .arg(out)
        .output()
}

/// A running `meshd` child process; killed on drop unless already stopped.
#[derive(Debug)]
pub struct Sidecar {
    child: Child,
    /// Bound outbound listener.
    pub outbound: SocketAddr,
    /// Bound inbound listener, when serving a workload.
    pub inbound: Option<SocketAddr>,
    /// Bound admin listener.
    pub admin: SocketAddr,
    /// The IO driver the workers run (`io_uring` or `epoll`).
    pub io_driver: String,
    /// The snapshot's content hash.
    pub snapshot_hash: String,
}

impl Sidecar {
    /// Starts `meshd --snapshot SNAPSHOT` on ephemeral loopback ports plus `args`, and waits
    /// for its ready line.
    pub fn start(snapshot: &Path, args: &[&str]) -> io::Result<Self> {
        Self::start_with(Command::new(binary("meshd")?), snapshot, args)
    }

    /// Like [`Sidecar::start`] with a prepared command (e.g. `taskset -c 0 meshd`).
    pub fn start_with(mut command: Command, snapshot: &Path, args: &[&str]) -> io::Result<Self> {
        let has = |flag: &str| args.iter().any(|a| a.starts_with(flag));
        command.arg("--snapshot").arg(snapshot);
        for (flag, default) in [
            ("--outbound", "127.0.0.1:0"),
            ("--admin", "127.0.0.1:0"),
            ("--inbound", "127.0.0.1:0"),
        ] {
            if !has(flag) {
                command.arg(flag).arg(default);
            }
        }
        let mut child = command.args(args).stdout(Stdio::piped()).spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("meshd ready:") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        let Ok(line) = rx.recv_timeout(READY_TIMEOUT) else {
            let _ = child.kill();
            let status = child.wait()?;
            return Err(io::Error::other(format!(
                "meshd did not become ready ({status})"
            )));
        };
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .unwrap_or("")
                .to_owned()
        };
        let addr = |key: &str| {
            field(key)
                .parse::<SocketAddr>()
                .map_err(|e| io::Error::other(format!("meshd ready line {line:?}: bad {key}: {e}")))
        };
        Ok(Self {
            outbound: addr("outbound")?,
            inbound: addr("inbound").ok(),
            admin: addr("admin")?,
            io_driver: field("io"),
            snapshot_hash: field("snapshot"),
            child,
        })
    }

    /// Process id, e.g. for reading its CPU time from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful drain) and waits for the process to exit.
    pub fn terminate(mut self) -> io::Result<ExitStatus> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            return Err(io::Error::other("kill -TERM failed"));
        }
        self.child.wait()
    }

    /// Sends SIGTERM without waiting; pair with [`Sidecar::wait`].
    pub fn signal_terminate(&self) -> io::Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .map(drop)
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds (user + system) a process has used so far, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = ticks(11) + ticks(12);
    Ok(total as f64 / clock_ticks_per_second())
}

/// Resident set size of a process in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// When run through `cargo run`, builds `meshc`, `meshd`, `meshca`, `meshload` and
/// `mesh-upstream` in the same profile as the running program, so `cargo run --release --bin
/// mesh-demo` works on a fresh clone. Outside cargo it only checks that they exist.
pub fn ensure_built() -> io::Result<()> {
    ensure_built_with(&[])
}

/// [`ensure_built`], building the binaries of the packages `extra` selects too (cargo
/// arguments, e.g. `["-p", "benches"]`).
pub fn ensure_built_with(extra: &[&str]) -> io::Result<()> {
    if let Ok(cargo) = std::env::var("CARGO") {
        let exe = std::env::current_exe()?;
        let profile_dir = exe
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "compiler",
            "-p",
            "dataplane",
            "-p",
            "ca",
            "-p",
            "tools",
        ]);
        build.args(extra);
        build.arg("--manifest-path").arg(manifest);
        match profile_dir.as_str() {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "building the ringmesh binaries failed: {status}"
            )));
        }
    }
    binary("meshc").and(binary("meshd")).map(drop)
}

/// Makes a meshca CA in `dir/ca` (trust domain `cluster.local`) and issues a certificate for
/// each `(name, spiffe_id)` into `dir/name` (`cert.pem`, `key.pem`, `bundle.pem`).
pub fn issue_certificates(dir: &Path, workloads: &[(&str, &str)]) -> io::Result<()> {
    let meshca = binary("meshca")?;
    let run = |args: &[&std::ffi::OsStr]| -> io::Result<()> {
        let output = Command::new(&meshca).args(args).output()?;
        if output.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "meshca {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        )))
    };
    let os = std::ffi::OsStr::new;
    let ca = dir.join("ca");
    let ca = ca.as_os_str();
    run(&[
        os("init"),
        os("--dir"),
        ca,
        os("--trust-domain"),
        os("cluster.local"),
    ])?;
    for (name, id) in workloads {
        let out = dir.join(name);
        let args = [os("issue"), os("--dir"), ca, os("--spiffe"), os(id)];
        run(&[&args[..], &[os("--out"), out.as_os_str()]].concat())?;
    }
    Ok(())
}
