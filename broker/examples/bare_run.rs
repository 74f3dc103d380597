//! Bare wasmtime running a WASI preview 1 command, with the same engine configuration as
//! Warrant's sandbox and wasmtime's compile cache: what `wasmtime run --dir … module.wasm`
//! does for a module, without verification, policy or audit. The baseline of
//! `scripts/bench-run.py`.
//!
//! `cargo run --release -p broker --example bare_run -- CACHE_DIR MODULE.wasm`

use std::io::Write as _;

use wasmtime::{Cache, CacheConfig, Config, Engine, Linker, Module, Store, Strategy};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(cache_dir), Some(path)) = (args.next(), args.next()) else {
        return Err("usage: bare_run CACHE_DIR MODULE.wasm".into());
    };
    let mut settings = CacheConfig::new();
    settings.with_directory(&cache_dir);
    let mut config = Config::new();
    config
        .strategy(Strategy::Cranelift)
        .epoch_interruption(true)
        .max_wasm_stack(512 * 1024)
        .cache(Some(Cache::new(settings)?));
    let engine = Engine::new(&config)?;
    let module = Module::from_binary(&engine, &std::fs::read(&path)?)?;
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
