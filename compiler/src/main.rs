//! `meshc`: compiles Ringmesh config into a validated snapshot, checks it, explains how a request
//! would be routed, compares snapshots, and prints them as JSON.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use compiler::check::{Gate, Report};
use compiler::explain::{self, Request};
use compiler::Severity;

#[derive(Debug, Parser)]
#[command(name = "meshc", version, about = "Ringmesh config compiler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile config (.mesh, mesh .toml, Istio .yaml/.yml/.json; directories are scanned for
    /// them) into a snapshot, or into one snapshot per workload.
    Compile {
        /// Files, directories (scanned for config), or `-` for standard input.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where to write the snapshot (written atomically). A directory (existing, or written
        /// with a trailing `/`) gets one `<workload>.snap` per workload plus `all.snap`
        /// (`<namespace>.<name>.snap` for a name used in several namespaces).
        #[arg(short, long)]
        output: PathBuf,
        /// How to print diagnostics: `human` on stderr, or one `json` document on stdout.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Report every diagnostic of the inputs without writing a snapshot (exit 1 on errors, or
    /// on warnings with `--deny warnings`).
    Check {
        /// Files, directories (scanned for config), or `-` for standard input.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// `human` (rendered on stderr) or `json` (one document on stdout).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Show what meshd would do with one request: rule, source line, destinations, timeout,
    /// retries, faults and other actions, and the inbound authorization decision.
    Explain {
        /// Config files, directories or `-` (standard input), or a single snapshot file.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The caller's workload (only its outbound services are visible), or the callee's
        /// when it serves the requested service (its inbound authorization is evaluated).
        #[arg(long)]
        workload: Option<String>,
        /// The request: `METHOD http://HOST[:PORT]/PATH?QUERY`.
        #[arg(long)]
        request: String,
        /// A request header, 'name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The caller's SPIFFE ID (`spiffe://…`) as the callee sees it over mutual TLS;
        /// without it the request has no peer identity.
        #[arg(long)]
        from: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the behavioural changes from OLD to NEW (exit 0 same, 1 different, 2 error).
    Diff {
        /// The old snapshot file.
        old: PathBuf,
        /// The new snapshot file.
        new: PathBuf,
    },
    /// Print a snapshot as JSON.
    Dump {
        /// The snapshot file.
        snapshot: PathBuf,
    },
}

/// Which diagnostics fail `check` and `compile` besides errors.
#[derive(Debug, clap::Args)]
struct GateArgs {
    /// `warnings`: any warning fails the run (exit 1), as an error does.
    #[arg(long, value_enum, value_name = "WHAT")]
    deny: Option<Deny>,
    /// A warning code that never fails the run, e.g. `W0107` (repeatable; its warnings are
    /// still printed).
    #[arg(long, value_name = "CODE", value_parser = compiler::check::allowed_code)]
    allow: Vec<compiler::Code>,
}

impl GateArgs {
    fn gate(self) -> Gate {
        Gate {
            deny_warnings: self.deny == Some(Deny::Warnings),
            allow: self.allow,
        }
    }
}

/// What `--deny` turns into failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Deny {
    /// Every warning (except `--allow`ed codes).
    Warnings,
}

/// How diagnostics are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Rendered like rustc, on stderr.
    Human,
    /// One JSON document on stdout.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Compile { inputs, .. }
    | Command::Check { inputs, .. }
    | Command::Explain { inputs, .. } = &cli.command
    {
        stdin_at_most_once(inputs);
    }
    let (result, error_code) = match cli.command {
        Command::Compile {
            inputs,
            output,
            format,
            gate,
        } => (
            compile(&inputs, &output, format, &gate.gate()),
            ExitCode::FAILURE,
        ),
        Command::Check {
            inputs,
            format,
            gate,
        } => (check(&inputs, format, &gate.gate()), ExitCode::FAILURE),
        Command::Explain {
            inputs,
            workload,
            request,
            headers,
            from,
            json,
        } => {
            let question = Question {
                workload,
                request,
                headers,
                from,
                json,
            };
            (explain(&inputs, question), ExitCode::FAILURE)
        }
        // Like diff(1): 1 means "different", so errors need their own code.
        Command::Diff { old, new } => (diff(&old, &new), ExitCode::from(2)),
        Command::Dump { snapshot } => (dump(&snapshot), ExitCode::FAILURE),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshc: {e:#}");
            error_code
        }
    }
}

/// Exits with a usage error (2) when `-` is given more than once: standard input can be read
/// only once.
fn stdin_at_most_once(inputs: &[PathBuf]) {
    let stdin = Path::new(compiler::input::STDIN_ARG);
    if inputs.iter().filter(|i| *i == stdin).count() > 1 {
        use clap::CommandFactory as _;
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "`-` (standard input) is given more than once; it can be read only once",
            )
            .exit();
    }
}

/// Prints `text` to stdout; a closed pipe (`meshc ... | head`) is the reader's choice.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    print_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

fn check(inputs: &[PathBuf], format: Format, gate: &Gate) -> anyhow::Result<ExitCode> {
    let report = Report::check(inputs);
    match format {
        Format::Json => print_json(&report.to_json(gate))?,
        Format::Human => {
            eprint!("{}", report.render());
            eprintln!("meshc: {}", summary(&report.diagnostics, gate));
        }
    }
    Ok(if gate.fails(&report.diagnostics) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `E errors, W warnings`, how many warnings `gate` denies and how many notes there are, each
/// when there is any.
fn summary(diagnostics: &[compiler::Diagnostic], gate: &Gate) -> String {
    use compiler::check::count;
    let errors = count(diagnostics, Severity::Error);
    let warnings = count(diagnostics, Severity::Warning);
    let mut text = format!(
        "{errors} error{}, {warnings} warning{}",
        plural(errors),
        plural(warnings)
    );
    let denied = gate.denied(diagnostics);
    if denied > 0 {
        text.push_str(&format!(" ({denied} denied by --deny warnings)"));
    }
    let notes = count(diagnostics, Severity::Note);
    if notes > 0 {
        text.push_str(&format!(", {notes} note{}", plural(notes)));
    }
    text
}

fn compile(
    inputs: &[PathBuf],
    output: &Path,
    format: Format,
    gate: &Gate,
) -> anyhow::Result<ExitCode> {
    let compiled = match compiler::compile(inputs) {
        Ok(compiled) if !gate.fails(&compiled.warnings) => compiled,
        Ok(compiled) => {
            let report = Report {
                diagnostics: compiled.warnings,
                sources: compiled.sources,
            };
            return compile_failed(&report, format, gate);
        }
        Err(failed) => {
            let report = Report {
                diagnostics: failed.diagnostics,
                sources: failed.sources,
            };
            return compile_failed(&report, format, gate);
        }
    };
    match format {
        Format::Human if !compiled.warnings.is_empty() => {
            eprintln!("{}", compiled.render_warnings());
        }
        Format::Human => {}
        Format::Json => {
            print_json(&compiler::check::to_json(
                &compiled.warnings,
                &compiled.sources,
                gate,
            ))?;
        }
    }
    let snapshot = &compiled.snapshot;
    // Pruned per-workload snapshots, in workload order, each named as `meshd --workload`
    // finds it (`NAMESPACE/NAME` is written `NAMESPACE.NAME.snap`).
    let mut per_workload = Vec::with_capacity(snapshot.workloads.len());
    for workload in &snapshot.workloads {
        let query = snapshot.workload_query(workload);
        let pruned = compiler::prune::for_workload(snapshot, &query)
            .context("a workload of the snapshot has no pruned snapshot")?;
        per_workload.push((query.replace('/', "."), spec::encode(&pruned), pruned));
    }
    let bytes = spec::encode(snapshot);
    let directory = is_directory_output(output);
    let written = if directory {
        write_directory(output, &per_workload, &bytes)?
    } else {
        write_atomically(output, &bytes)
            .with_context(|| format!("cannot write {}", output.display()))?;
        output.to_path_buf()
    };
    for (name, encoded, pruned) in &per_workload {
        eprintln!(
            "workload {name}: {} services, {} rules, {} bytes",
            pruned.services.len(),
            rule_count(pruned),
            encoded.len()
        );
    }
    if directory && snapshot.workloads.is_empty() {
        eprintln!(
            "no workloads: wrote only {} (for meshd without --workload)",
            written.display()
        );
    }
    let hash: String = bytes[spec::HEADER_LEN - 32..spec::HEADER_LEN]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    eprintln!(
        "compiled {} services, {} route rules, {} workloads into {} (sha256 {hash}, {} bytes)",
        snapshot.services.len(),
        rule_count(snapshot),
        snapshot.workloads.len(),
        written.display(),
        bytes.len()
    );
    // The process exits next: freeing a large mesh piece by piece cost a sixth of the compile
    // time (10 000 services), and the operating system reclaims it at once.
    std::mem::forget(per_workload);
    std::mem::forget(compiled);
    Ok(ExitCode::SUCCESS)
}

/// Prints the diagnostics of a compilation that errors or denied warnings failed.
fn compile_failed(report: &Report, format: Format, gate: &Gate) -> anyhow::Result<ExitCode> {
    match format {
        Format::Human => eprint!("{}", report.render()),
        Format::Json => print_json(&report.to_json(gate))?,
    }
    eprintln!(
        "meshc: {}; no snapshot written",
        summary(&report.diagnostics, gate)
    );
    Ok(ExitCode::FAILURE)
}

fn rule_count(snapshot: &spec::Snapshot) -> usize {
    snapshot.routes.iter().map(|t| t.rules.len()).sum()
}

/// Whether `-o` names a directory: an existing one, or any path written with a trailing `/`.
fn is_directory_output(output: &Path) -> bool {
    output.as_os_str().as_encoded_bytes().ends_with(b"/") || output.is_dir()
}

/// The name of the whole-mesh snapshot in directory mode.
const ALL_SNAPSHOT: &str = "all.snap";

/// Directory mode: `DIR/<workload>.snap` for each workload, then `DIR/all.snap` with the whole
/// mesh, each written atomically. Every name is checked before anything is written. Returns the
/// path of `all.snap`.
fn write_directory(
    dir: &Path,
    per_workload: &[(String, Vec<u8>, spec::Snapshot)],
    all: &[u8],
) -> anyhow::Result<PathBuf> {
    let mut stems = std::collections::HashSet::new();
    for (name, _, _) in per_workload {
        check_file_stem(name)?;
        if !stems.insert(name) {
            anyhow::bail!(
                "two workloads would both be written to {name}.snap; rename one or compile to \
                 a single file; no snapshot written"
            );
        }
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    for (name, encoded, _) in per_workload {
        let path = dir.join(format!("{name}.snap"));
        write_atomically(&path, encoded)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let path = dir.join(ALL_SNAPSHOT);
    write_atomically(&path, all).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A workload name must make a plain file name in the output directory, and not `all.snap`.
fn check_file_stem(name: &str) -> anyhow::Result<()> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !plain {
        anyhow::bail!(
            "workload {name:?} is not a plain file name for the output directory (letters, \
             digits, '_', '-' and '.', not leading '.'); no snapshot written"
        );
    }
    if format!("{name}.snap") == ALL_SNAPSHOT {
        anyhow::bail!(
            "workload `{name}` would overwrite {ALL_SNAPSHOT}, the whole-mesh snapshot; \
             rename the workload or compile to a single file; no snapshot written"
        );
    }
    Ok(())
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

/// Reads and decodes a snapshot file; the error names the file.
fn read_snapshot(path: &Path) -> anyhow::Result<spec::Snapshot> {
    let bytes = fs::read(path).with_context(|| path.display().to_string())?;
    let (snapshot, _hash) = spec::decode(&bytes).with_context(|| path.display().to_string())?;
    Ok(snapshot)
}

fn dump(path: &Path) -> anyhow::Result<ExitCode> {
    let snapshot = read_snapshot(path)?;
    print_stdout(&format!("{}\n", serde_json::to_string_pretty(&snapshot)?))?;
    Ok(ExitCode::SUCCESS)
}

/// The request-related arguments of `meshc explain`.
#[derive(Debug)]
struct Question {
    workload: Option<String>,
    request: String,
    headers: Vec<String>,
    from: Option<String>,
    json: bool,
}

/// Whether `path` is a file starting with the snapshot magic bytes.
fn is_snapshot(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 8];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == spec::MAGIC)
}

fn explain(inputs: &[PathBuf], question: Question) -> anyhow::Result<ExitCode> {
    // A request that is not one is a usage error (exit 2), as clap's own are.
    let request = Request::parse(&question.request, &question.headers).unwrap_or_else(|e| {
        use clap::CommandFactory as _;
        Cli::command()
            .error(clap::error::ErrorKind::InvalidValue, e.to_string())
            .exit()
    });
    let snapshot = match inputs {
        [single] if single != Path::new(compiler::input::STDIN_ARG) && is_snapshot(single) => {
            read_snapshot(single)?
        }
        _ => match compiler::compile(inputs) {
            Ok(compiled) => compiled.snapshot,
            Err(failed) => {
                eprint!("{}", failed.render());
                let errors = failed.error_count();
                eprintln!(
                    "meshc: {errors} error{}; cannot explain a config that does not compile",
                    plural(errors)
                );
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let answer = explain::explain(
        &snapshot,
        question.workload.as_deref(),
        request,
        question.from,
    )?;
    if question.json {
        print_json(&answer.to_json())?;
    } else {
        print_stdout(&answer.render())?;
    }
    Ok(if answer.is_routed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn diff(old: &Path, new: &Path) -> anyhow::Result<ExitCode> {
    let changes = compiler::diff::diff(&read_snapshot(old)?, &read_snapshot(new)?);
    let text: String = changes.iter().map(|c| format!("{c}\n")).collect();
    print_stdout(&text)?;
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
