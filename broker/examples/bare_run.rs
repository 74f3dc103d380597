//! Bare wasmtime running a WASI preview 1 command, with the same engine configuration as
//! Warrant's sandbox and the module precompiled on disk (compiled and serialized to
//! `CACHE_DIR/module.cwasm` on the first run, loaded from there unchecked afterwards): what
//! `wasmtime run` does for a module with a warm cache, without verification, policy, audit or
//! any integrity check of the compiled code. The baseline of `scripts/bench-run.py`.
//!
//! `cargo run --release -p broker --example bare_run -- CACHE_DIR MODULE.wasm`

use std::io::Write as _;

use wasmtime::{Config, Engine, Linker, Module, Store, Strategy};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(cache_dir), Some(path)) = (args.next(), args.next()) else {
        return Err("usage: bare_run CACHE_DIR MODULE.wasm".into());
    };
    let mut config = Config::new();
    config
        .strategy(Strategy::Cranelift)
        .epoch_interruption(true)
        .max_wasm_stack(512 * 1024);
    let engine = Engine::new(&config)?;
    let precompiled = std::path::Path::new(&cache_dir).join("module.cwasm");
    let module = if precompiled.exists() {
        load(&engine, &precompiled)?
    } else {
        let module = Module::from_binary(&engine, &std::fs::read(&path)?)?;
        std::fs::create_dir_all(&cache_dir)?;
        std::fs::write(&precompiled, module.serialize()?)?;
        module
    };
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let stdout = MemoryOutputPipe::new(1 << 20);
    let wasi = WasiCtxBuilder::new()
        .args(&[path.as_str()])
        .stdout(stdout.clone())
        .build_p1();
    let mut store = Store::new(&engine, wasi);
    store.set_epoch_deadline(1000);
    let instance = linker.instantiate(&mut store, &module)?;
    instance
        .get_typed_func::<(), ()>(&mut store, "_start")?
        .call(&mut store, ())?;
    std::io::stdout().write_all(&stdout.contents())?;
    Ok(())
}

/// The module this example serialized earlier, mapped from disk as wasmtime's own cache does.
#[expect(
    unsafe_code,
    reason = "a benchmark baseline loading the code it wrote itself"
)]
#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark baseline loading the code it wrote itself"
)]
fn load(engine: &Engine, path: &std::path::Path) -> wasmtime::Result<Module> {
    // SAFETY: `path` holds what `Module::serialize` wrote in an earlier run of this example
    // with the same engine configuration; nothing else writes the benchmark's directory.
    unsafe { Module::deserialize_file(engine, path) }
}
