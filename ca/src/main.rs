//! meshca: the Ringmesh certificate authority. Certificate issuance lands with the identity issue (#5).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("meshca: certificate issuance is not implemented yet (tracked in issue #5)");
    std::process::ExitCode::from(2)
}
