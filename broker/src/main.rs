//! The `warrant` command.

fn main() -> std::process::ExitCode {
    broker::cli_main()
}
