//! Preparing a guest: its size bounded, compiled (or found compiled in the compile cache) and
//! linked against WASI, on a thread of its own under the compile deadline.

use super::*;

/// How a guest is prepared: compiled (or found compiled) and linked, as a module, a component,
/// or whichever its bytes say.
pub(super) type PrepareFn =
    fn(&Engine, Option<&CompileCache>, &[u8]) -> Result<Prepared, SandboxError>;

/// A guest being compiled and linked on a thread of its own ([`Sandbox::start_prepare`]).
pub struct Preparing {
    pub(super) prepared: std::sync::mpsc::Receiver<Result<Prepared, SandboxError>>,
    pub(super) until: Instant,
    pub(super) deadline: Duration,
}

impl Preparing {
    /// The prepared guest, once compiled and linked. Past the compile deadline (counted from
    /// the start) the guest is refused ([`SandboxError::CompileDeadline`]); the thread, which
    /// nothing can interrupt, finishes in the background and its result is dropped.
    pub fn wait(self) -> Result<Prepared, SandboxError> {
        let left = self.until.saturating_duration_since(Instant::now());
        match self.prepared.recv_timeout(left) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(SandboxError::CompileDeadline(self.deadline))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(SandboxError::Engine(
                "the compiling thread ended without a result".into(),
            )),
        }
    }
}

pub(super) fn prepare_any(
    engine: &Engine,
    cache: Option<&CompileCache>,
    wasm: &[u8],
) -> Result<Prepared, SandboxError> {
    match WasmKind::detect(wasm) {
        Some(WasmKind::Module) => prepare_module(engine, cache, wasm),
        Some(WasmKind::Component) => prepare_component(engine, cache, wasm),
        None => Err(SandboxError::Load(
            "not WebAssembly: the bytes do not start with a Wasm preamble".into(),
        )),
    }
}

/// `wasm` compiled as `kind`: from the compile cache when it holds exactly this, else by
/// compiling it (and keeping the result).
pub(super) fn compile(
    engine: &Engine,
    cache: Option<&CompileCache>,
    kind: WasmKind,
    wasm: &[u8],
) -> Result<Compiled, SandboxError> {
    if let Some(compiled) = cache.and_then(|c| c.get(engine, kind, wasm)) {
        return Ok(compiled);
    }
    let compiled = match kind {
        WasmKind::Module => Module::new(engine, wasm).map(Compiled::Module),
        WasmKind::Component => Component::new(engine, wasm).map(Compiled::Component),
    }
    .map_err(|e| load_error(&e))?;
    if let Some(cache) = cache {
        cache.put(engine, kind, wasm, &compiled);
    }
    Ok(compiled)
}

pub(super) fn prepare_module(
    engine: &Engine,
    cache: Option<&CompileCache>,
    wasm: &[u8],
) -> Result<Prepared, SandboxError> {
    let Compiled::Module(module) = compile(engine, cache, WasmKind::Module, wasm)? else {
        return Err(SandboxError::Load("not a core module".into()));
    };
    let prompt = imports_only_prompt_calls(&module);
    let mut linker: Linker<Host> = Linker::new(engine);
    if prompt {
        p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)
    } else {
        p1::add_to_linker_async(&mut linker, |h: &mut Host| &mut h.wasi)
    }
    .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| load_error(&e))?;
    Ok(Prepared {
        guest: PreparedGuest::Module { pre, prompt },
    })
}

pub(super) fn prepare_component(
    engine: &Engine,
    cache: Option<&CompileCache>,
    wasm: &[u8],
) -> Result<Prepared, SandboxError> {
    let Compiled::Component(component) = compile(engine, cache, WasmKind::Component, wasm)? else {
        return Err(SandboxError::Load("not a component".into()));
    };
    let mut linker: wasmtime::component::Linker<ComponentHost> =
        wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
    let pre = linker
        .instantiate_pre(&component)
        .and_then(CommandPre::new)
        .map_err(|e| load_error(&e))?;
    Ok(Prepared {
        guest: PreparedGuest::Component(pre),
    })
}

/// Why a guest cannot be loaded, from wasmtime's error: names the guest chose (its imports and
/// exports) are in it, so it is made one safe line.
pub(super) fn load_error(e: &wasmtime::Error) -> SandboxError {
    SandboxError::Load(registry_client::text::one_line(&format!("{e:#}")).into_owned())
}

/// Refuses guests over [`limits::MAX_GUEST_BYTES`] before compiling anything.
pub(super) fn check_size(wasm: &[u8]) -> Result<(), SandboxError> {
    if u64::try_from(wasm.len()).unwrap_or(u64::MAX) > limits::MAX_GUEST_BYTES {
        return Err(SandboxError::Load(format!(
            "the guest is {} bytes; the limit is {}",
            wasm.len(),
            limits::MAX_GUEST_BYTES
        )));
    }
    Ok(())
}
