//! `meshd iptables`: the command line of capture.

use std::net::IpAddr;

use ipnet::IpNet;

use super::install::{self, InstallError};
use super::rules::{Capture, Family, Marks};

/// Capture this network namespace's TCP for meshd, as istio-iptables does: connections the
/// namespace opens go to the outbound listener, connections from other hosts to the inbound
/// listener. meshd's own connections carry a socket mark (0x539, and 0x53a towards the local
/// application) and are let through.
#[derive(Debug, Clone, clap::Args)]
pub struct IptablesArgs {
    /// meshd's outbound listener port.
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// meshd's inbound listener port.
    #[arg(long, default_value_t = 15006)]
    inbound_port: u16,
    /// meshd's admin port, which other hosts reach directly.
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    /// Inbound ports other hosts reach directly, not through meshd (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_ports: Vec<u16>,
    /// Outbound destination ports reached directly (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations captured: CIDRs or addresses (comma-separated), or `*` for all.
    #[arg(long, value_delimiter = ',', default_value = "*", value_parser = parse_scope)]
    include_cidrs: Vec<Scope>,
    /// Outbound destinations reached directly: CIDRs or addresses (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_net)]
    exclude_cidrs: Vec<IpNet>,
    /// Leave IPv6 alone (by default ip6tables gets the same rules, when the kernel has IPv6).
    #[arg(long)]
    no_ipv6: bool,
    /// Print the commands instead of running them.
    #[arg(long)]
    dry_run: bool,
    /// Remove meshd's rules instead (other rules stay).
    #[arg(long, conflicts_with = "dry_run")]
    cleanup: bool,
}

/// One `--include-cidrs` entry.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// `*`: every destination.
    All,
    /// One network.
    Net(IpNet),
}

impl IptablesArgs {
    /// What the flags capture.
    pub fn capture(&self) -> Capture {
        let include_cidrs = if self.include_cidrs.iter().any(|s| matches!(s, Scope::All)) {
            None
        } else {
            let nets = self.include_cidrs.iter().filter_map(|s| match s {
                Scope::Net(net) => Some(*net),
                Scope::All => None,
            });
            Some(nets.collect())
        };
        let mut exclude_inbound_ports = vec![self.admin_port];
        for port in &self.exclude_ports {
            if !exclude_inbound_ports.contains(port) {
                exclude_inbound_ports.push(*port);
            }
        }
        Capture {
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            exclude_inbound_ports,
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            include_cidrs,
            exclude_cidrs: self.exclude_cidrs.clone(),
            marks: Marks::default(),
        }
    }

    /// Applies, removes or prints the rules; what it did (or would do) goes to stdout.
    pub fn run(&self) -> Result<(), InstallError> {
        let capture = self.capture();
        let mut families = vec![Family::V4];
        if !self.no_ipv6 {
            families.push(Family::V6);
        }
        for family in families {
            let result = if self.dry_run {
                print!("{}", install::dry_run(&capture, family));
                Ok(())
            } else if self.cleanup {
                install::cleanup(family)
            } else {
                install::apply(&capture, family)
            };
            match result {
                // A host without IPv6 (or without ip6tables) is captured for IPv4 alone.
                Err(e) if family == Family::V6 => {
                    tracing::warn!("IPv6 left uncaptured: {e} (--no-ipv6 silences this)");
                }
                Err(e) => return Err(e),
                Ok(()) if self.dry_run => {}
                Ok(()) => println!(
                    "{}: {}",
                    family.iptables(),
                    if self.cleanup { "removed" } else { "installed" }
                ),
            }
        }
        Ok(())
    }
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    match text.trim() {
        "*" => Ok(Scope::All),
        other => parse_net(other).map(Scope::Net),
    }
}

/// A CIDR, or a single address as its /32 or /128.
fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?}: expected a CIDR such as 10.0.0.0/8, or an address"))
}
