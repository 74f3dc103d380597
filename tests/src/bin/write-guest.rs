//! Writes one of the tests' `wasi:http` guests to a file, for the serving benchmarks
//! (`scripts/bench-serve.py`): `write-guest hello OUT.wasm` or `write-guest hello-N OUT.wasm`
//! (the hello guest with `N` in its bytes: a distinct artifact per tenant).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test tool")]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(which), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: write-guest hello|hello-N OUT.wasm");
        std::process::exit(2);
    };
    let wasm = match which.strip_prefix("hello-") {
        Some(n) => tests::http_guests::hello_numbered(n.parse().expect("a number")),
        None if which == "hello" => tests::http_guests::hello(),
        None => {
            eprintln!("unknown guest `{which}`");
            std::process::exit(2);
        }
    };
    std::fs::write(out, wasm).unwrap();
}
