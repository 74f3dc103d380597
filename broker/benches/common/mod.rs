//! What the guest benchmarks share: a hello module and the policy decision that lets it run.

use std::path::PathBuf;

use broker::policy::{Asks, Facts, Policies};
use broker::verify::{Signer, SignerKind};
use registry_client::{Digest, WasmKind};

/// Writes `hello\n` to stdout.
pub const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 6))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

const POLICY: &str = r#"@id("run")
permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.signer.kind == "key" && context.memoryBytes <= 268435456 };
"#;

/// A policy set permitting `instantiate` for a keyed signer, the facts of `wasm` signed by a
/// key, and a run's asks (64 MiB, 10 s): each run's `Grant` comes from the decision cache.
pub fn hello_decision(wasm: &[u8]) -> Result<(Policies, Facts, Asks), Box<dyn std::error::Error>> {
    let policies = Policies::from_sources(&[(PathBuf::from("bench.cedar"), POLICY.to_owned())])?;
    let facts = Facts::new(
        Digest::of(wasm),
        WasmKind::Module,
        wasm.len() as u64,
        "localhost".into(),
        "localhost/hello".into(),
        vec![Signer {
            kind: SignerKind::Key,
            identity: "sha256:00".into(),
            issuer: "key".into(),
            claims: Default::default(),
        }],
        Vec::new(),
    );
    let asks = Asks {
        memory_bytes: 64 << 20,
        timeout_ms: 10_000,
        ..Asks::default()
    };
    Ok((policies, facts, asks))
}
