//! Density: how many hello instances one process holds live and idle, and the memory each
//! costs, Warrant against bare wasmtime with the same engine configuration, in the same run.
//! Run with `cargo bench -p broker --bench density` (`WARRANT_DENSITY=N` to aim elsewhere than
//! 20,000).
//!
//! Bare wasmtime: a `Store` with a WASI preview 1 context (captured stdout), instantiated.
//! Warrant: the run's `Grant` from the decision cache, its `instantiate` record committed to an
//! audit log (one fdatasync each, before the instance exists), handles and limits from the
//! grant, and `Sandbox::instantiate` (least-privilege context, captured stdout and stderr, the
//! limiter, the deadline). Verification is per artifact, not per instance: it is not in the
//! loop. Each side stops at its target or at the first failure, which is printed
//! (on-demand allocation maps memory per instance, so `vm.max_map_count` is the usual end).
//! Each side runs in a process of its own (this one, started again), so neither inherits the
//! other's freed heap.

mod common;

use broker::sandbox::{Handles, Live, RunLimits, Sandbox};
use common::HELLO;
use wasmtime::{Config, Engine, Instance, Linker, Module, Store, Strategy};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Resident memory of this process, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Instances made until `target` or the first failure; KiB per instance; the failure.
fn hold<T>(target: usize, mut make: impl FnMut() -> Result<T, String>) -> (usize, f64, String) {
    let before = rss_kib();
    let mut live = Vec::with_capacity(target);
    let mut stopped = String::from("target reached");
    while live.len() < target {
        match make() {
            Ok(instance) => live.push(instance),
            Err(e) => {
                stopped = e;
                break;
            }
        }
    }
    let per = (rss_kib().saturating_sub(before)) as f64 / live.len().max(1) as f64;
    if std::env::var_os("WARRANT_DENSITY_MAPS").is_some() {
        let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
        eprintln!("{} mappings with {} instances", maps, live.len());
    }
    let count = live.len();
    drop(live);
    (count, per, stopped)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target: usize = std::env::var("WARRANT_DENSITY")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let Ok(side) = std::env::var("WARRANT_DENSITY_SIDE") else {
        println!("target {target} live idle instances, on-demand allocation");
        println!("| | live instances | RSS per instance | stopped by |");
        println!("|---|---:|---:|---|");
        for side in ["bare wasmtime", "Warrant"] {
            let out = std::process::Command::new(std::env::current_exe()?)
                .arg("--bench")
                .env("WARRANT_DENSITY_SIDE", side)
                .output()?;
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        return Ok(());
    };
    let wasm = wat::parse_str(HELLO)?;
    let report = |(count, per, stopped): (usize, f64, String)| {
        println!("| {side} | {count} | {per:.1} KiB | {stopped} |");
    };

    let mut config = Config::new();
    config
        .strategy(Strategy::Cranelift)
        .epoch_interruption(true)
        .max_wasm_stack(512 * 1024);
    let engine = Engine::new(&config)?;
    let module = Module::new(&engine, &wasm)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let pre = linker.instantiate_pre(&module)?;
    if side == "bare wasmtime" {
        report(hold(target, || {
            let wasi = WasiCtxBuilder::new()
                .args(&["hello"])
                .stdout(MemoryOutputPipe::new(1 << 20))
                .build_p1();
            let mut store = Store::new(&engine, wasi);
            store.set_epoch_deadline(1000);
            let instance: Instance = pre.instantiate(&mut store).map_err(|e| format!("{e:#}"))?;
            Ok((store, instance))
        }));
        return Ok(());
    }

    let sandbox = Sandbox::new()?;
    let prepared = sandbox.prepare(&wasm)?;
    let (policies, facts, asks) = common::hello_decision(&wasm)?;
    let args = vec!["hello".to_owned()];
    // Every instance's grant is in the audit log, durable, before the instance exists.
    let logs = tempfile::tempdir()?;
    let mut audit = broker::audit::Audit::open(&logs.path().join("audit"), &logs.path().join("k"))
        .map_err(|e| e.to_string())?;
    report(hold(target, || -> Result<Live, String> {
        let grant = policies
            .grant(&facts, &asks, false)
            .map_err(|e| e.to_string())?;
        audit
            .record_before_effect(
                "instantiate",
                broker::records::instantiate_body(&grant, 1 << 20),
            )
            .map_err(|e| e.to_string())?;
        sandbox
            .instantiate(
                &prepared,
                &args,
                &RunLimits::of(&grant, 1 << 20),
                &Handles::of(&grant),
            )
            .map_err(|e| e.to_string())
            .and_then(|live| {
                if live.is_ready() {
                    Ok(live)
                } else {
                    Err(format!("{:?}", live.start().outcome))
                }
            })
    }));
    Ok(())
}
