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
mod example;
mod findings;
mod fuzzed_guests;
mod hostile;
mod hostile_guests;
mod keyless;
mod policy_corpus;
mod policy_e2e;
mod policy_props;
mod registry;
mod signing;
mod store_findings;
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
