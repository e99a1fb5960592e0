//! Hosts for multi-host tests: network namespaces on one bridge, with addresses from
//! 198.18.0.0/15 (the benchmarking range) that exist only inside them. Needs root and
//! iproute2.

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// One host: a network namespace with loopback up and one interface on the bridge.
#[derive(Debug)]
pub struct Host {
    /// The namespace's name.
    pub name: String,
    /// The host's address on the bridge.
    pub addr: Ipv4Addr,
}

impl Host {
    /// `program` to be run inside this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Gives this host a hosts file (`ip netns exec` mounts `/etc/netns/NAME/hosts` over
    /// `/etc/hosts`), so its applications resolve service names as a cluster's DNS would.
    pub fn set_hosts(&self, entries: &[(&str, &str)]) {
        let dir = std::path::Path::new("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        let mut text = String::from("127.0.0.1 localhost\n");
        for (addr, names) in entries {
            text.push_str(&format!("{addr} {names}\n"));
        }
        std::fs::write(dir.join("hosts"), text).expect("write the host's hosts file");
    }

    /// Runs `program args` inside this host and returns what it printed; panics if it cannot
    /// start.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program} in {}: {e}", self.name))
    }
}

/// Hosts on one bridge (the bridge lives in a namespace of its own).
#[derive(Debug)]
pub struct Network {
    /// The hosts, addressed 198.18.0.1, .2, ...
    pub hosts: Vec<Host>,
    switch: String,
}

impl Network {
    /// Creates `count` hosts on a fresh bridge; panics with the failing command's output.
    pub fn new(count: usize) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "ringmesh-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{prefix}-switch");
        let mut network = Self {
            hosts: Vec::new(),
            switch,
        };
        ip(&["netns", "add", &network.switch]);
        network.switch_ip(&["link", "add", "br0", "type", "bridge"]);
        network.switch_ip(&["link", "set", "br0", "up"]);
        for i in 0..count {
            let name = format!("{prefix}-h{i}");
            let addr = Ipv4Addr::new(198, 18, 0, i as u8 + 1);
            ip(&["netns", "add", &name]);
            let port = format!("port{i}");
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &network.switch,
            ]);
            network.switch_ip(&["link", "set", &port, "master", "br0", "up"]);
            let host = Host { name, addr };
            for args in [
                vec!["link", "set", "lo", "up"],
                vec!["link", "set", "eth0", "up"],
                vec!["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
                // Virtual addresses (198.18.1.0/24 in the tests) exist on no host: a route
                // lets a connection to one start, and capture redirects it.
                vec!["route", "add", "default", "dev", "eth0"],
            ] {
                checked(&host.run("ip", &args), "ip");
            }
            network.hosts.push(host);
        }
        network
    }

    fn switch_ip(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.switch, "ip"];
        full.extend_from_slice(args);
        ip(&full);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for name in self.hosts.iter().map(|h| &h.name).chain([&self.switch]) {
            // Processes still inside would keep the namespace's sockets alive.
            let _ = Command::new("ip")
                .args(["netns", "pids", name])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-KILL", pid]).status();
                    }
                });
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(name));
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    checked(&output, "ip");
}

/// Panics with `what`'s stderr unless it succeeded; returns its stdout.
pub fn checked(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
