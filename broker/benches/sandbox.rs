//! The warm path in process: a hello guest that was verified, decided and compiled before is
//! instantiated and its `_start` called, by Warrant and by bare wasmtime with the same engine
//! configuration, in the same run. Run with `cargo bench -p broker --bench sandbox`.
//!
//! - **bare wasmtime**: a `Store` with a WASI preview 1 context holding a captured stdout,
//!   the epoch deadline set, `InstancePre::instantiate`, `_start` (synchronous WASI);
//! - **bare wasmtime, async**: the same with WASI's async host functions,
//!   `instantiate_async` and `call_async` driven by a current-thread Tokio runtime — how
//!   Warrant runs guests, so that one waiting in the host can be cancelled at its deadline;
//! - **Warrant**: the run's decisions from the decision cache and its `Grant`
//!   (`Policies::grant`), the handles and limits made from it, then
//!   `Sandbox::run_prepared` (a least-privilege WASI context, captured and capped output,
//!   the resource limiter, the deadline, instantiate, `_start`, the outcome classified).
//!
//! Both with on-demand allocation (what `warrant run` uses) and with the pooling allocator,
//! for the hello module (its only import, `fd_write`, returns promptly, so Warrant calls it
//! directly) and for the same module importing `poll_oneoff` too (never called; the import
//! alone makes Warrant run it as a future under the deadline's timeout). Printed: p50 and p99
//! per run of each, and the ratios.

use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;

use broker::sandbox::{Handles, Outcome, RunLimits, Sandbox};
use common::HELLO;
use wasmtime::{Config, Engine, Linker, Module, PoolingAllocationConfig, Store, Strategy};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// The hello module, also importing `poll_oneoff` (a call that can wait in the host).
const HELLO_WAITS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 6))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Per-run times of `runs` runs (after `runs / 10` warm-up runs), sorted.
fn samples(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..runs / 10 {
        f();
    }
    let mut all: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let at = (sorted.len().saturating_sub(1) * p) / 100;
    sorted.get(at).copied().unwrap_or_default()
}

/// p50 and p99 of bare wasmtime (synchronous, then async) and of Warrant, with the pooling
/// allocator or on demand.
fn compare(
    wasm: &[u8],
    pooling: Option<u32>,
    runs: usize,
) -> Result<[Duration; 6], Box<dyn std::error::Error>> {
    // Bare wasmtime: the sandbox's engine configuration.
    let mut config = Config::new();
    config
        .strategy(Strategy::Cranelift)
        .epoch_interruption(true)
        .max_wasm_stack(512 * 1024);
    if let Some(instances) = pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(instances)
            .total_memories(instances)
            .total_tables(instances)
            .total_component_instances(instances)
            .table_elements(100_000)
            .max_memory_size(256 << 20);
        config.allocation_strategy(pool);
    }
    let engine = Engine::new(&config)?;
    let module = Module::new(&engine, wasm)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let pre = linker.instantiate_pre(&module)?;
    // A store with a WASI context capturing stdout, and the deadline.
    let store = || {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new()
            .args(&["hello"])
            .stdout(stdout.clone())
            .build_p1();
        let mut store = Store::new(&engine, wasi);
        store.set_epoch_deadline(1000);
        (store, stdout)
    };
    let bare = samples(runs, || {
        let (mut store, stdout) = store();
        let instance = pre.instantiate(&mut store).ok();
        let start = instance.and_then(|i| i.get_typed_func::<(), ()>(&mut store, "_start").ok());
        black_box(start.map(|s| s.call(&mut store, ())));
        black_box(stdout.contents());
    });

    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_async(&mut linker, |cx| cx)?;
    let pre = linker.instantiate_pre(&module)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bare_async = samples(runs, || {
        let (mut store, stdout) = store();
        black_box(runtime.block_on(async {
            let instance = pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        }))
        .ok();
        black_box(stdout.contents());
    });

    // Warrant: decisions cached, guest prepared.
    let sandbox = match pooling {
        Some(instances) => Sandbox::pooled(false, instances)?,
        None => Sandbox::new()?,
    };
    let prepared = sandbox.prepare(wasm)?;
    let (policies, facts, asks) = common::hello_decision(wasm)?;
    let args = vec!["hello".to_owned()];
    let first = policies.grant(&facts, &asks, false)?;
    let finished = sandbox.run_prepared(
        &prepared,
        &args,
        &RunLimits::of(&first, 1 << 20),
        &Handles::of(&first),
    )?;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert_eq!(finished.stdout, b"hello\n");
    let warrant = samples(runs, || {
        let Ok(grant) = policies.grant(&facts, &asks, false) else {
            return;
        };
        let limits = RunLimits::of(&grant, 1 << 20);
        let handles = Handles::of(&grant);
        black_box(
            sandbox
                .run_prepared(&prepared, &args, &limits, &handles)
                .ok(),
        );
    });
    Ok([
        percentile(&bare, 50),
        percentile(&bare, 99),
        percentile(&bare_async, 50),
        percentile(&bare_async, 99),
        percentile(&warrant, 50),
        percentile(&warrant, 99),
    ])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs = 20_000;
    println!("{runs} runs each");
    println!(
        "| guest | allocation | bare p50 | p99 | bare async p50 | p99 | Warrant p50 | p99 | Warrant / bare p50 | p99 | Warrant / bare async p50 | p99 |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    for (guest, wat) in [
        ("hello", HELLO),
        ("hello importing poll_oneoff", HELLO_WAITS),
    ] {
        let wasm = wat::parse_str(wat)?;
        for (name, pooling) in [("on demand", None), ("pooling (1,000 slots)", Some(1000))] {
            let [b50, b99, a50, a99, w50, w99] = compare(&wasm, pooling, runs)?;
            println!(
                "| {guest} | {name} | {b50:.2?} | {b99:.2?} | {a50:.2?} | {a99:.2?} | {w50:.2?} | {w99:.2?} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
                ratio(w50, b50),
                ratio(w99, b99),
                ratio(w50, a50),
                ratio(w99, a99),
            );
        }
    }
    Ok(())
}
