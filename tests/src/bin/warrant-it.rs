//! The `warrant` command, built inside the test package so its integration tests can start it
//! as a process (`CARGO_BIN_EXE_warrant-it`). Same code path as the shipped binary.

fn main() -> std::process::ExitCode {
    broker::cli_main()
}
