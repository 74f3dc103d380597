//! Warrant's end-to-end tests: one binary, one module per area.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

mod audit_e2e;
mod auth;
mod cli;
mod components;
mod conformance;
mod docs;
mod example;
mod findings;
mod fuzzed_guests;
mod hostile;
mod hostile_guests;
mod keyless;
mod pinned;
mod policy_corpus;
mod policy_e2e;
mod policy_props;
mod registry;
mod serve;
mod shim;
mod signing;
mod store_findings;
mod suggest;
mod tamper;

/// The `warrant` CLI with `home` as its home (`WARRANT_HOME` and `HOME`) and no configuration or
/// registry credentials from the environment.
fn warrant_in(home: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_warrant-it"));
    command
        .env("WARRANT_HOME", home)
        .env("HOME", home)
        .env_remove("WARRANT_CONFIG")
        .env_remove("DOCKER_CONFIG");
    command
}

/// Give `path` to uid 65534 (`nobody`) to test a refusal, returning its owner before, to give
/// it back with [`take_back`]. Only root may; otherwise `None`, said on stderr, and the caller
/// skips that case (the suite runs as root in CI).
fn give_away(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::symlink_metadata(path).unwrap().uid();
    match std::os::unix::fs::chown(path, Some(65534), None) {
        Ok(()) => Some(owner),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "skipped: giving `{}` to another user needs root ({e})",
                path.display()
            );
            None
        }
        Err(e) => panic!("chown {}: {e}", path.display()),
    }
}

/// Give `path` back to `owner` (from [`give_away`]).
fn take_back(path: &std::path::Path, owner: u32) {
    std::os::unix::fs::chown(path, Some(owner), None).unwrap();
}
