//! `broker`'s `plugin_host` example, its very source, built inside the test package so that
//! its integration test can start it as a process (`CARGO_BIN_EXE_plugin-host`).

#[path = "../../../broker/examples/plugin_host.rs"]
mod example;

fn main() -> std::process::ExitCode {
    example::main()
}
