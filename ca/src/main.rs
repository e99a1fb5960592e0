//! meshca: the Ringmesh certificate authority's command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ca::authority::{DEFAULT_LEAF_TTL, DEFAULT_ROOT_TTL};
use ca::{Authority, InitOptions, SpiffeId};
use clap::{Parser, Subcommand};

/// Issues SPIFFE workload certificates for a Ringmesh mesh.
#[derive(Debug, Parser)]
#[command(name = "meshca", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a CA: a root (and optionally an intermediate) for one trust domain.
    Init {
        /// Directory to create the CA in.
        #[arg(long)]
        dir: PathBuf,
        /// Trust domain of every identity the CA issues, e.g. cluster.local.
        #[arg(long)]
        trust_domain: String,
        /// Also create an intermediate that signs workload certificates.
        #[arg(long)]
        intermediate: bool,
        /// Root lifetime, e.g. 3650d.
        #[arg(long, value_parser = parse_ttl)]
        root_ttl: Option<Duration>,
    },
    /// Issue a workload certificate: DIR/cert.pem (leaf, then chain), DIR/key.pem (0600),
    /// DIR/bundle.pem (trust roots).
    Issue {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The workload's SPIFFE ID, e.g. spiffe://cluster.local/ns/default/sa/reviews.
        #[arg(long)]
        spiffe: String,
        /// Lifetime, e.g. 24h, 30m, 7d [default: 24h; at most 90d].
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Directory to write the files to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a one-time bootstrap token for a workload's first certificate from `meshca serve`.
    Token {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The SPIFFE ID the token may obtain a certificate for.
        #[arg(long)]
        spiffe: String,
    },
    /// Serve CSR signing over TLS 1.3: POST /v1/sign (a PEM CSR; authenticate with your
    /// current certificate or `Authorization: Bearer TOKEN`), GET /v1/bundle.
    Serve {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:15012")]
        listen: std::net::SocketAddr,
        /// Lifetime of the certificates it signs [default: 24h].
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// An address or DNS name clients dial the service by, for its own certificate
        /// (repeatable; needed when listening on 0.0.0.0).
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Print the trust bundle (every root) as PEM.
    Bundle {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Root rotation: `add` makes a new root the signer (the bundle keeps the old ones);
    /// `retire` drops the oldest root once every leaf is re-issued.
    Root {
        #[command(subcommand)]
        action: RootAction,
    },
}

#[derive(Debug, Subcommand)]
enum RootAction {
    /// Add a root that signs from now on.
    Add {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// Root lifetime, e.g. 3650d.
        #[arg(long, value_parser = parse_ttl)]
        root_ttl: Option<Duration>,
    },
    /// Remove the oldest root from the bundle.
    Retire {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Parses `90s`, `30m`, `24h`, `7d`.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit: s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 24h, 30m or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?}: too long"))
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshca: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Init {
            dir,
            trust_domain,
            intermediate,
            root_ttl,
        } => {
            let options = InitOptions {
                trust_domain,
                intermediate,
                root_ttl: root_ttl.unwrap_or(DEFAULT_ROOT_TTL),
            };
            let ca = Authority::init(&dir, &options)?;
            let kind = if intermediate {
                "root 1 and an intermediate"
            } else {
                "root 1"
            };
            println!(
                "meshca: created a CA for trust domain {} in {} ({kind})",
                ca.trust_domain(),
                dir.display()
            );
        }
        Command::Issue {
            dir,
            spiffe,
            ttl,
            out,
        } => {
            let ca = Authority::open(&dir)?;
            let id = SpiffeId::parse(&spiffe)?;
            let issued = ca.issue(&id, ttl.unwrap_or(DEFAULT_LEAF_TTL))?;
            issued.write_to(&out)?;
            // One log line per issuance: who, which serial, until when.
            println!(
                "meshca: issued {id} serial {} valid until {} into {}",
                issued.serial,
                issued.not_after,
                out.display()
            );
        }
        Command::Bundle { dir } => print!("{}", Authority::open(&dir)?.bundle()?),
        Command::Token { dir, spiffe } => {
            let ca = Authority::open(&dir)?;
            let id = SpiffeId::parse(&spiffe)?;
            println!("{}", ca::serve::new_token(&ca, &dir, &id)?);
        }
        Command::Serve {
            dir,
            listen,
            ttl,
            names,
        } => {
            let options = ca::serve::ServeOptions {
                listen,
                ttl: ttl.unwrap_or(DEFAULT_LEAF_TTL),
                names,
            };
            let addr = ca::serve::serve(&dir, &options)?;
            println!("meshca serving on {addr}");
            std::io::Write::flush(&mut std::io::stdout())?;
            // The accept thread serves until the process is stopped.
            loop {
                std::thread::park();
            }
        }
        Command::Root { action } => match action {
            RootAction::Add { dir, root_ttl } => {
                let mut ca = Authority::open(&dir)?;
                let n = ca.add_root(root_ttl.unwrap_or(DEFAULT_ROOT_TTL))?;
                println!(
                    "meshca: root {n} signs from now on; the bundle trusts roots {:?}; \
                     re-issue every workload certificate, then `meshca root retire`",
                    ca.root_numbers()?
                );
            }
            RootAction::Retire { dir } => {
                let mut ca = Authority::open(&dir)?;
                let n = ca.retire_root()?;
                println!(
                    "meshca: root {n} retired; the bundle trusts roots {:?}",
                    ca.root_numbers()?
                );
            }
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;
    use std::time::Duration;

    #[test]
    fn lifetimes_take_a_unit() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_ttl("24").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}
