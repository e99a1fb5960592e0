//! Sidecar pairs for `mesh-bench --pairs`: meshload → sidecar A (outbound) → sidecar B
//! (inbound) → upstream, both sidecars on CPU 0 with one worker each. meshd in plaintext
//! (`mtls disable`) and with mutual TLS under both drivers, mutual TLS with a new connection
//! (a handshake) per request, and Envoy pairs with the same certificates. Then meshd B alone
//! behind an Envoy A that calls it over mutual TLS in HTTP/1.1 or HTTP/2 (only B counted):
//! what serving an HTTP/2 caller through the bridge costs against an HTTP/1.1 one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use tools::envoy::{self, Mtls};
use tools::harness::{self, Sidecar};

use crate::{free_port, spawn_envoy, wait_listening, Starter, Target};

const A_ID: &str = "spiffe://cluster.local/ns/bench/sa/a";
const B_ID: &str = "spiffe://cluster.local/ns/bench/sa/b";

/// A CA with certificates for both sides, and the upstream both pairs end at.
pub(crate) struct Setup {
    dir: PathBuf,
    upstream: SocketAddr,
}

impl Setup {
    /// Makes the CA and issues A's and B's certificates under `dir`.
    pub(crate) fn new(dir: &Path, upstream: SocketAddr) -> anyhow::Result<Self> {
        harness::issue_certificates(dir, &[("a", A_ID), ("b", B_ID)])?;
        Ok(Self {
            dir: dir.to_owned(),
            upstream,
        })
    }

    /// The pair targets, in the order the table lists them.
    pub(crate) fn targets<'a>(&'a self, meshd: &'a Path) -> Vec<Box<Starter<'a>>> {
        let mut targets: Vec<Box<Starter<'a>>> = Vec::new();
        for (mode, per_request, label) in [
            ("disable", false, "meshd pair plaintext"),
            ("strict", false, "meshd pair mTLS"),
            ("strict", true, "meshd pair mTLS, handshake per request"),
        ] {
            for driver in ["epoll", "uring"] {
                targets.push(Box::new(move || {
                    self.meshd_pair(meshd, mode, per_request, driver, label)
                }));
            }
        }
        targets.push(Box::new(|| self.envoy_pair(false)));
        targets.push(Box::new(|| self.envoy_pair(true)));
        for h2 in [false, true] {
            for driver in ["epoll", "uring"] {
                targets.push(Box::new(move || self.meshd_behind_envoy(meshd, h2, driver)));
            }
        }
        targets
    }

    fn config(&self, endpoint: &str, mode: &str, per_request: bool) -> String {
        let policy = if per_request {
            "policy { pool { max_requests_per_connection 1 } }"
        } else {
            ""
        };
        format!(
            "service bench {{\n  port 80 http\n  endpoint {endpoint}\n  {policy}\n}}\n\
             workload a {{\n  identity \"{A_ID}\"\n  outbound bench\n}}\n\
             workload b {{\n  identity \"{B_ID}\"\n  serves bench\n  \
             inbound 80 http -> {} mtls {mode}\n}}\n",
            self.upstream
        )
    }

    fn compile(&self, name: &str, config: &str) -> anyhow::Result<PathBuf> {
        let input = self.dir.join(format!("{name}.mesh"));
        std::fs::write(&input, config)?;
        let snapshot = self.dir.join(format!("{name}.snap"));
        let output = harness::compile(&[&input], &snapshot)?;
        if !output.status.success() {
            bail!("meshc: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(snapshot)
    }

    /// meshd on CPU 0 with one worker, as `workload` with its certificates.
    fn start_meshd(
        &self,
        meshd: &Path,
        snapshot: &Path,
        workload: &str,
        driver: &str,
    ) -> anyhow::Result<Sidecar> {
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]).arg(meshd);
        let certs = self.dir.join(workload);
        let certs = certs.to_str().context("a UTF-8 temp dir")?;
        let args = [
            "--cores",
            "1",
            "--io-driver",
            driver,
            "--workload",
            workload,
            "--certs",
            certs,
            "--watch-interval",
            "0s",
        ];
        Ok(Sidecar::start_with(command, snapshot, &args)?)
    }

    fn meshd_pair(
        &self,
        meshd: &Path,
        mode: &str,
        per_request: bool,
        driver: &str,
        label: &str,
    ) -> anyhow::Result<(Target, SocketAddr)> {
        let b_snapshot = self.compile("pair-b", &self.config("127.0.0.1:9", mode, per_request))?;
        let b = self.start_meshd(meshd, &b_snapshot, "b", driver)?;
        let endpoint = b.inbound.context("B's inbound listener")?.to_string();
        let a_snapshot = self.compile("pair-a", &self.config(&endpoint, mode, per_request))?;
        let a = self.start_meshd(meshd, &a_snapshot, "a", driver)?;
        let outbound = a.outbound;
        let name = driver_name(&a);
        let parts = vec![
            Target::Meshd(a, String::new()),
            Target::Meshd(b, String::new()),
        ];
        Ok((Target::Pair(parts, format!("{label} ({name})")), outbound))
    }

    /// meshd B (strict mTLS) behind Envoy A, whose cluster speaks HTTP/2 or HTTP/1.1 to it;
    /// only B's CPU and memory count.
    fn meshd_behind_envoy(
        &self,
        meshd: &Path,
        h2: bool,
        driver: &str,
    ) -> anyhow::Result<(Target, SocketAddr)> {
        let b_snapshot = self.compile("pair-b", &self.config("127.0.0.1:9", "strict", false))?;
        let b = self.start_meshd(meshd, &b_snapshot, "b", driver)?;
        let b_listen = b.inbound.context("B's inbound listener")?;
        let a_listen = free_port()?;
        let a_certs = self.dir.join("a");
        let to_b = Mtls {
            certs: &a_certs,
            peer: B_ID,
            h2,
        };
        let a = envoy::bootstrap(
            &[envoy::listener("a", a_listen, "b", None)],
            &[envoy::cluster("b", b_listen, Some(to_b))],
        );
        let path = self.dir.join("envoy-a.yaml");
        std::fs::write(&path, a)?;
        let envoy = spawn_envoy(&path)?;
        wait_listening(a_listen)?;
        let protocol = if h2 { "HTTP/2" } else { "HTTP/1.1" };
        let label = format!(
            "meshd B alone, Envoy A calling it in {protocol} ({})",
            driver_name(&b)
        );
        let parts = vec![Target::Feeder(envoy), Target::Meshd(b, String::new())];
        Ok((Target::Pair(parts, label), a_listen))
    }

    fn envoy_pair(&self, mtls: bool) -> anyhow::Result<(Target, SocketAddr)> {
        let (a_listen, b_listen) = (free_port()?, free_port()?);
        let (a_certs, b_certs) = (self.dir.join("a"), self.dir.join("b"));
        let to_b = mtls.then_some(Mtls {
            certs: &a_certs,
            peer: B_ID,
            h2: false,
        });
        let from_a = mtls.then_some(Mtls {
            certs: &b_certs,
            peer: A_ID,
            h2: false,
        });
        let a = envoy::bootstrap(
            &[envoy::listener("a", a_listen, "b", None)],
            &[envoy::cluster("b", b_listen, to_b)],
        );
        let b = envoy::bootstrap(
            &[envoy::listener("b", b_listen, "app", from_a)],
            &[envoy::cluster("app", self.upstream, None)],
        );
        let mut parts = Vec::new();
        for (name, yaml, listen) in [("b", b, b_listen), ("a", a, a_listen)] {
            let path = self.dir.join(format!("envoy-{name}.yaml"));
            std::fs::write(&path, yaml)?;
            let child = spawn_envoy(&path)?;
            parts.push(Target::Peer(child, "envoy"));
            wait_listening(listen)?;
        }
        let label = if mtls {
            "Envoy pair mTLS"
        } else {
            "Envoy pair plaintext"
        };
        Ok((Target::Pair(parts, label.to_owned()), a_listen))
    }
}

/// The driver a sidecar reported, as the tables name it.
fn driver_name(sidecar: &Sidecar) -> &'static str {
    if sidecar.io_driver == "epoll" {
        "epoll"
    } else {
        "io_uring"
    }
}
