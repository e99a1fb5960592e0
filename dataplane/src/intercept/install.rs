//! Installs and removes the capture rules with the system's `iptables` tools (either backend;
//! Debian's default is nftables behind the `iptables` commands).

use std::io::{self, Write as _};
use std::process::{Command, Output, Stdio};

use super::rules::{Capture, Family, CHAINS, JUMPS};

/// Why the rules could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The tool is not installed or could not run.
    #[error("cannot run {tool}: {source} (is the iptables package installed?)")]
    Spawn {
        /// The command.
        tool: &'static str,
        /// What running it returned.
        source: io::Error,
    },
    /// The tool refused the rules.
    #[error("{tool} failed: {stderr}")]
    Refused {
        /// The command.
        tool: &'static str,
        /// What it printed.
        stderr: String,
    },
}

/// Installs `capture` for `family`. Applying again replaces meshd's rules and adds nothing.
pub fn apply(capture: &Capture, family: Family) -> Result<(), InstallError> {
    let tool = family.restore();
    let mut child = Command::new(tool)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| InstallError::Spawn { tool, source })?;
    // A write that fails means the tool exited early; its stderr below says why.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(capture.payload(family).as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|source| InstallError::Spawn { tool, source })?;
    succeeded(tool, &output)?;
    for (builtin, own) in JUMPS {
        if !iptables(family, &["-C", builtin, "-p", "tcp", "-j", own])?
            .status
            .success()
        {
            let output = iptables(family, &["-A", builtin, "-p", "tcp", "-j", own])?;
            succeeded(family.iptables(), &output)?;
        }
    }
    Ok(())
}

/// Removes meshd's rules and chains for `family`, leaving every other rule; removing what is
/// not there is not an error.
pub fn cleanup(family: Family) -> Result<(), InstallError> {
    for (builtin, own) in JUMPS {
        while iptables(family, &["-D", builtin, "-p", "tcp", "-j", own])?
            .status
            .success()
        {}
    }
    for verb in ["-F", "-X"] {
        for chain in CHAINS {
            let output = iptables(family, &[verb, chain])?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            // "No chain by that name" is what cleaning up twice looks like; anything else
            // (not root, say) leaves the rules in place and must be said.
            if !output.status.success() && !stderr.contains("No chain") {
                return Err(InstallError::Refused {
                    tool: family.iptables(),
                    stderr: stderr.trim().to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// What [`apply`] runs for `family`, as shell commands.
pub fn dry_run(capture: &Capture, family: Family) -> String {
    let mut out = format!("{} --noflush <<'EOF'\n", family.restore());
    out.push_str(&capture.payload(family));
    out.push_str("EOF\n");
    for (builtin, own) in JUMPS {
        let rule = format!("{builtin} -p tcp -j {own}");
        let tool = family.iptables();
        out.push_str(&format!(
            "{tool} -t nat -C {rule} 2>/dev/null || {tool} -t nat -A {rule}\n"
        ));
    }
    out
}

fn iptables(family: Family, args: &[&str]) -> Result<Output, InstallError> {
    let tool = family.iptables();
    Command::new(tool)
        .args(["-t", "nat"])
        .args(args)
        .output()
        .map_err(|source| InstallError::Spawn { tool, source })
}

fn succeeded(tool: &'static str, output: &Output) -> Result<(), InstallError> {
    if output.status.success() {
        return Ok(());
    }
    Err(InstallError::Refused {
        tool,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}
