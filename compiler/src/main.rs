//! `meshc`: compiles Ringmesh config into a validated snapshot, and prints snapshots as JSON.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "meshc", version, about = "Ringmesh config compiler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile .mesh files (directories: every *.mesh file below them) into a snapshot.
    Compile {
        /// Files or directories.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where to write the snapshot (written atomically).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a snapshot as JSON.
    Dump {
        /// The snapshot file.
        snapshot: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile { inputs, output } => compile(&inputs, &output),
        Command::Dump { snapshot } => dump(&snapshot),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshc: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn compile(inputs: &[PathBuf], output: &Path) -> anyhow::Result<ExitCode> {
    let compiled = match compiler::compile(inputs) {
        Ok(compiled) => compiled,
        Err(failed) => {
            eprint!("{}", failed.render());
            let errors = failed.error_count();
            let warnings = failed.diagnostics.len() - errors;
            eprintln!(
                "meshc: {errors} error{}, {warnings} warning{}; no snapshot written",
                plural(errors),
                plural(warnings)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if !compiled.warnings.is_empty() {
        eprintln!("{}", compiled.render_warnings());
    }
    let snapshot = &compiled.snapshot;
    let bytes = spec::encode(snapshot);
    write_atomically(output, &bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let hash: String = bytes[spec::HEADER_LEN - 32..spec::HEADER_LEN]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let rules: usize = snapshot.routes.iter().map(|t| t.rules.len()).sum();
    eprintln!(
        "compiled {} services, {rules} route rules, {} workloads into {} (sha256 {hash}, {} bytes)",
        snapshot.services.len(),
        snapshot.workloads.len(),
        output.display(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Writes `OUT.tmp` beside `OUT`, syncs it, then renames it over `OUT`, so a reader (a running
/// `meshd` watching the file) never sees a half-written snapshot.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut name = path
        .file_name()
        .context("the output path has no file name")?
        .to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}

fn dump(path: &Path) -> anyhow::Result<ExitCode> {
    let decoded = fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| Ok(spec::decode(&bytes)?));
    let (snapshot, _hash) = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            eprintln!("meshc: {}: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let json = serde_json::to_string_pretty(&snapshot)?;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{json}").and_then(|()| stdout.flush()) {
        // A closed pipe (`meshc dump x | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
