//! The nat rules that capture a network namespace's TCP for meshd, as `iptables-restore` input.
//!
//! Modelled on istio-iptables, with socket marks in place of its uid match (so the application
//! and meshd may run as the same user):
//! - every TCP connection arriving from another host goes to the inbound listener, except to
//!   the excluded ports (meshd's admin port by default);
//! - every TCP connection the namespace opens goes to the outbound listener, except loopback
//!   traffic, meshd's own connections (marked [`Marks::mesh`]) and excluded CIDRs;
//! - meshd's connections to the namespace's own address (not loopback) go through the inbound
//!   listener, so a workload calling its own service is still served by its inbound policy;
//! - meshd's forwards to the application (marked [`Marks::app`]) are never captured.

use std::fmt::Write as _;

use ipnet::IpNet;

/// Chains meshd owns; creating one flushes it, so applying twice leaves the same rules.
pub const CHAINS: [&str; 4] = [INBOUND, REDIRECT, IN_REDIRECT, OUTPUT];
const INBOUND: &str = "RINGMESH_INBOUND";
const REDIRECT: &str = "RINGMESH_REDIRECT";
const IN_REDIRECT: &str = "RINGMESH_IN_REDIRECT";
const OUTPUT: &str = "RINGMESH_OUTPUT";

/// The rules in the built-in chains that lead into meshd's: `(built-in chain, own chain)`.
pub const JUMPS: [(&str, &str); 2] = [("PREROUTING", INBOUND), ("OUTPUT", OUTPUT)];

/// The socket marks meshd sets on the connections it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// Connections into the mesh (upstreams, the CA, the trace collector).
    pub mesh: u32,
    /// Inbound forwards to the local application.
    pub app: u32,
}

impl Default for Marks {
    fn default() -> Self {
        Self {
            mesh: 0x539,
            app: 0x53a,
        }
    }
}

/// An address family, with the tools and loopback address that go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4: `iptables`.
    V4,
    /// IPv6: `ip6tables`.
    V6,
}

impl Family {
    /// The command that changes single rules.
    pub fn iptables(self) -> &'static str {
        match self {
            Self::V4 => "iptables",
            Self::V6 => "ip6tables",
        }
    }

    /// The command that loads a rule set.
    pub fn restore(self) -> &'static str {
        match self {
            Self::V4 => "iptables-restore",
            Self::V6 => "ip6tables-restore",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Self::V4 => "127.0.0.1/32",
            Self::V6 => "::1/128",
        }
    }

    fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Self::V4, IpNet::V4(_)) | (Self::V6, IpNet::V6(_))
        )
    }
}

/// What `meshd iptables` captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// meshd's outbound listener port.
    pub outbound_port: u16,
    /// meshd's inbound listener port.
    pub inbound_port: u16,
    /// Inbound ports reached directly, not through meshd (meshd's admin port among them).
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports reached directly.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations captured; `None`: all.
    pub include_cidrs: Option<Vec<IpNet>>,
    /// Outbound destinations reached directly (checked before `include_cidrs`).
    pub exclude_cidrs: Vec<IpNet>,
    /// The marks meshd's own connections carry.
    pub marks: Marks,
}

impl Default for Capture {
    fn default() -> Self {
        Self {
            outbound_port: 15001,
            inbound_port: 15006,
            exclude_inbound_ports: vec![15000],
            exclude_outbound_ports: Vec::new(),
            include_cidrs: None,
            exclude_cidrs: Vec::new(),
            marks: Marks::default(),
        }
    }
}

impl Capture {
    /// The `iptables-restore --noflush` input for `family`: meshd's chains, created or
    /// flushed, and their rules. The jumps into them ([`JUMPS`]) are added separately, once.
    pub fn payload(&self, family: Family) -> String {
        let mut out = String::from("*nat\n");
        for chain in CHAINS {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        let rule = |out: &mut String, chain: &str, spec: &str| {
            let _ = writeln!(out, "-A {chain} {spec}");
        };
        rule(
            &mut out,
            REDIRECT,
            &format!("-p tcp -j REDIRECT --to-ports {}", self.outbound_port),
        );
        rule(
            &mut out,
            IN_REDIRECT,
            &format!("-p tcp -j REDIRECT --to-ports {}", self.inbound_port),
        );
        for port in &self.exclude_inbound_ports {
            rule(
                &mut out,
                INBOUND,
                &format!("-p tcp --dport {port} -j RETURN"),
            );
        }
        rule(&mut out, INBOUND, &format!("-p tcp -j {IN_REDIRECT}"));
        self.output_rules(family, &mut out);
        out.push_str("COMMIT\n");
        out
    }

    fn output_rules(&self, family: Family, out: &mut String) {
        let Marks { mesh, app } = self.marks;
        let loopback = family.loopback();
        let mut rule = |spec: String| {
            let _ = writeln!(out, "-A {OUTPUT} {spec}");
        };
        rule(format!("-m mark --mark {app:#x} -j RETURN"));
        rule(format!(
            "-o lo ! -d {loopback} -p tcp -m mark --mark {mesh:#x} -j {IN_REDIRECT}"
        ));
        rule(format!("-o lo -m mark ! --mark {mesh:#x} -j RETURN"));
        rule(format!("-m mark --mark {mesh:#x} -j RETURN"));
        rule(format!("-d {loopback} -j RETURN"));
        for port in &self.exclude_outbound_ports {
            rule(format!("-p tcp --dport {port} -j RETURN"));
        }
        for net in self.exclude_cidrs.iter().filter(|n| family.holds(n)) {
            rule(format!("-d {net} -j RETURN"));
        }
        match &self.include_cidrs {
            None => rule(format!("-j {REDIRECT}")),
            Some(nets) => {
                for net in nets.iter().filter(|n| family.holds(n)) {
                    rule(format!("-d {net} -j {REDIRECT}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
