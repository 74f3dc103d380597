//! The last stage: instantiate a guest in wasmtime with nothing it was not given, and classify
//! how it ended.
//!
//! A guest is a WASI preview 1 command module (`_start`) or a WASI 0.2 command component
//! (`wasi:cli/run`); [`Sandbox::run`] tells them apart by their bytes. What a guest gets, and
//! nothing more:
//!
//! - the directories and environment variables of its [`Handles`], which only a policy
//!   [`Grant`] makes (read-only directories are opened read-only);
//!   nothing else of the host's environment or file system;
//! - no network, unless granted: every address denied, TCP, UDP and name lookup disabled. A
//!   component granted `net.connect` pairs may open TCP connections to exactly the addresses
//!   those pairs stand for (a name is resolved when the run starts, and the check applies to
//!   the address the guest connects to), and may look names up only when a granted host is a
//!   name. No listening, no UDP. WASI preview 1 has no sockets, so a module gets nothing;
//! - stdin closed; stdout and stderr captured, each capped at [`RunLimits::output_bytes`];
//! - the arguments the operator gave;
//! - linear memory capped at [`RunLimits::memory_bytes`] across all its memories; a module
//!   gets one instance, one memory and one table; a component at most
//!   [`limits::MAX_COMPONENT_PARTS`] of each; tables of at most
//!   [`limits::MAX_TABLE_ELEMENTS`] elements; growth past a limit traps;
//! - a component: at most [`limits::MAX_COMPONENT_HANDLES`] live resources and
//!   [`limits::HOSTCALL_FUEL`] bytes passed to the host per call;
//! - at most [`limits::MAX_RANDOM_BYTES`] of randomness per call;
//! - a wall-clock deadline: epoch interruption stops a guest that computes past it, and a
//!   guest waiting in the host (a sleep, a poll, a blocking read or connect) is cancelled at
//!   it, since every guest runs as a future under a timeout; fuel when metered;
//! - a Wasm stack of [`limits::MAX_WASM_STACK`] bytes, well below the host thread's stack.
//!
//! The engine is Cranelift's, and guests over [`limits::MAX_GUEST_BYTES`] are refused before
//! compiling. Compilation cannot be interrupted: it runs on a thread of its own, and a guest
//! whose compilation outlasts the compile deadline ([`limits::COMPILE_DEADLINE`] unless
//! [`Sandbox::set_compile_deadline`]) is refused while that thread finishes in the background
//! (the CLI exits, which ends it). With a compile cache
//! ([`Sandbox::configured`], [`crate::compiled`]) a guest's compiled code is kept, named by its
//! bytes and the engine configuration and authenticated, so a second run does not compile it
//! again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_client::WasmKind;
use wasmtime::component::{Component, ResourceTable};

use wasmtime::{
    Config, Engine, InstancePre, Linker, Module, PoolingAllocationConfig, ResourceLimiter, Store,
    Strategy, Trap,
};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::bindings::{Command, CommandPre};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::compiled::{CompileCache, Compiled};
use crate::policy::Grant;

mod capability;
pub mod http;
mod outcome;
mod prepare;

use outcome::GuestIo;
pub use outcome::Output;
pub use prepare::Preparing;
use prepare::{PrepareFn, check_size, prepare_any, prepare_component, prepare_module};

pub use capability::Handles;

/// The sandbox's fixed bounds.
pub mod limits {
    /// Wasm stack; far below the 8 MiB main-thread stack so exhausting it traps instead of
    /// overflowing the host stack.
    pub const MAX_WASM_STACK: usize = 512 * 1024;
    /// Elements per table.
    pub const MAX_TABLE_ELEMENTS: usize = 100_000;
    /// Epoch tick: the granularity of the deadline.
    pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);
    /// Default linear-memory limit.
    pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
    /// Default wall-clock limit.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
    /// Default cap on stdout and on stderr, each.
    pub const DEFAULT_OUTPUT_BYTES: u64 = 1024 * 1024;
    /// Largest `random_get`: the host fills a buffer of the size asked before it checks the
    /// guest's memory, so this bounds host memory and time per call (wasmtime's default is
    /// 64 MiB, whatever the guest's memory limit).
    pub const MAX_RANDOM_BYTES: u64 = 1024 * 1024;
    /// Core instances, tables and memories of a component (a core module gets one of each).
    pub const MAX_COMPONENT_PARTS: usize = 64;
    /// Live resource handles of a component (files, streams, sockets, …), both in its own
    /// handle tables and in the host's resource table.
    pub const MAX_COMPONENT_HANDLES: usize = 10_000;
    /// Bytes a component may pass to the host in one call (wasmtime's default is 128 MiB).
    pub const HOSTCALL_FUEL: usize = 1024 * 1024;
    /// Largest guest compiled (the registry client's layer limit). Compilation cannot be
    /// interrupted, so this is what bounds its time.
    pub const MAX_GUEST_BYTES: u64 = 256 * 1024 * 1024;
    /// Default time a guest's compilation may take before the guest is refused.
    pub const COMPILE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
}

/// Per-run limits.
#[derive(Clone, Debug)]
pub struct RunLimits {
    /// Linear-memory limit in bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Cap on captured stdout and on stderr, each.
    pub output_bytes: u64,
    /// Fuel, when metered.
    pub fuel: Option<u64>,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            memory_bytes: limits::DEFAULT_MEMORY_BYTES,
            timeout: limits::DEFAULT_TIMEOUT,
            output_bytes: limits::DEFAULT_OUTPUT_BYTES,
            fuel: None,
        }
    }
}

impl RunLimits {
    /// The limits a grant allows, with the operator's output cap.
    pub fn of(grant: &Grant, output_bytes: u64) -> Self {
        Self {
            memory_bytes: grant.memory_bytes(),
            timeout: grant.timeout(),
            output_bytes,
            fuel: grant.fuel(),
        }
    }
}

/// Which limit stopped a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The wall-clock deadline.
    Deadline,
    /// The linear-memory limit.
    Memory,
    /// The table-element limit.
    Table,
    /// The stdout or stderr cap.
    Output,
    /// The fuel budget.
    Fuel,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest returned from `_start` (status 0) or called `proc_exit`.
    Exited(i32),
    /// A limit stopped it.
    Limited {
        /// Which limit.
        limit: Limit,
        /// What happened, for the operator.
        detail: String,
    },
    /// It trapped.
    Trapped(String),
    /// It was stopped from outside while it ran ([`Stop::stop`]: a containerd task killed).
    Stopped,
}

/// Stops a running guest from another thread: a computing guest at its next epoch tick, a
/// guest waiting in the host at once. Cloned handles stop the same run.
#[derive(Clone, Default)]
pub struct Stop(Arc<StopState>);

#[derive(Default)]
struct StopState {
    stopped: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Stop {
    /// A handle no one has used yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop the run (before it starts, it then stops at its first tick or wait).
    pub fn stop(&self) {
        self.0
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether [`Stop::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ready once [`Stop::stop`] is called.
    async fn stopped(&self) {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read, so a stop between the two is not missed.
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// The error a stopped guest's call ends with.
#[derive(Debug, thiserror::Error)]
#[error("the guest was stopped")]
struct Stopped;

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Wall-clock time the guest ran: instantiation, then its entry point (the time an
    /// instance held idle waited is not counted).
    pub elapsed: Duration,
}

/// Why a guest could not be started at all.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine could not be configured.
    #[error("cannot configure the Wasm engine: {0}")]
    Engine(String),
    /// The bytes are not a valid module, or it imports something not provided.
    #[error("the guest cannot be loaded: {0}")]
    Load(String),
    /// Compiling the guest took longer than the compile deadline.
    #[error("the guest's compilation did not finish within {0:?}; it is refused")]
    CompileDeadline(Duration),
}

/// A configured engine. Create once, run many guests.
///
/// Its methods block the calling thread until the guest ends; they must not be called from
/// inside an async runtime. A guest that can wait in the host runs as a future on the
/// sandbox's own runtime (WASI's async host functions) under a timeout, so it is cancelled at
/// its deadline like one that computes; a module whose imports all return promptly
/// ([`PROMPT_CALLS`]) is called directly, which saves the future's own stack.
pub struct Sandbox {
    engine: Engine,
    fuel: bool,
    cache: Option<Arc<CompileCache>>,
    /// Drives guests' host calls (timers, sockets, file I/O) and their deadlines. A
    /// current-thread runtime: the thread running a guest drives it, and several threads may
    /// run guests at once.
    runtime: Arc<GuestRuntime>,
    compile_deadline: Duration,
    /// Advances the engine's epoch (the deadlines' clock) while the sandbox lives.
    ticker: Arc<Ticker>,
}

/// A guest compiled and linked against WASI, ready to run any number of times
/// ([`Sandbox::prepare`], [`Sandbox::run_prepared`]).
pub struct Prepared {
    guest: PreparedGuest,
}

enum PreparedGuest {
    Module {
        pre: InstancePre<Host>,
        /// Every import returns promptly: called directly, not as a future.
        prompt: bool,
    },
    Component(CommandPre<ComponentHost>),
}

/// The WASI preview 1 functions that return promptly whatever the guest passes, given what a
/// guest can hold without `path_open` (its preopened directories, a closed stdin, stdout and
/// stderr captured in memory): arguments, environment, clocks, randomness (capped), writes,
/// descriptor metadata, exit. Everything else may wait in the host for as long as the guest
/// or the file system makes it: `poll_oneoff` sleeps; `path_open` of a named pipe waits for a
/// writer; file-system calls wait on the file system. A module importing only these runs
/// without a future; any other import (a list kept short on purpose) makes it run as one.
pub const PROMPT_CALLS: [&str; 15] = [
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_close",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_write",
    "proc_exit",
    "proc_raise",
    "random_get",
    "sched_yield",
];

/// Whether every import of `module` is a [`PROMPT_CALLS`] function.
fn imports_only_prompt_calls(module: &Module) -> bool {
    module
        .imports()
        .all(|i| i.module() == "wasi_snapshot_preview1" && PROMPT_CALLS.contains(&i.name()))
}

/// The runtime guests' futures run on. Dropped without waiting for host threads: a guest
/// cancelled while the host was blocked for it (opening a named pipe no one writes to) leaves
/// a thread that may never return.
struct GuestRuntime(Option<tokio::runtime::Runtime>);

impl GuestRuntime {
    /// Makes this runtime the thread's current one while the guard lives. A guest called
    /// directly makes only prompt calls, which WASI's synchronous bindings still run as
    /// futures on the current runtime, ready at once; without one they would build and start
    /// a multi-threaded runtime of their own in the process, with a worker per core.
    fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.0.as_ref().map(tokio::runtime::Runtime::enter)
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.0 {
            Some(runtime) => runtime.block_on(future),
            // Only `drop` takes the runtime.
            None => unreachable!("the guests' runtime is gone while the sandbox lives"),
        }
    }
}

impl Drop for GuestRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

struct Host {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// A component's store data: its WASI context and resource table.
struct ComponentHost {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for ComponentHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

struct Limiter {
    /// Linear memory allowed, all memories together.
    memory_bytes: usize,
    /// Linear memory in use, all memories together.
    memory_used: usize,
    table_elements: usize,
    /// Instances, tables and memories allowed (each).
    parts: usize,
    hit: Option<(Limit, String)>,
}

impl Limiter {
    fn new(limits: &RunLimits, parts: usize) -> Self {
        Self::with_memory(limits.memory_bytes, parts)
    }

    fn with_memory(memory_bytes: u64, parts: usize) -> Self {
        Self {
            memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            memory_used: 0,
            table_elements: limits::MAX_TABLE_ELEMENTS,
            parts,
            hit: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_used
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_bytes {
            let detail = format!(
                "linear memory would grow from {current} to {desired} bytes ({total} in all); the limit is {}",
                self.memory_bytes
            );
            self.hit = Some((Limit::Memory, detail.clone()));
            wasmtime::bail!(detail);
        }
        let allowed = maximum.is_none_or(|max| desired <= max);
        if allowed {
            self.memory_used = total;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let detail = format!(
                "a table would grow from {current} to {desired} elements; the limit is {}",
                self.table_elements
            );
            self.hit = Some((Limit::Table, detail.clone()));
            wasmtime::bail!(detail);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        self.parts
    }

    fn tables(&self) -> usize {
        self.parts
    }

    fn memories(&self) -> usize {
        self.parts
    }
}

impl Sandbox {
    /// An engine with epoch interruption and a bounded Wasm stack.
    pub fn new() -> Result<Self, SandboxError> {
        Self::with_fuel(false)
    }

    /// As [`Sandbox::new`], metering fuel when `fuel` (needed for [`RunLimits::fuel`]).
    pub fn with_fuel(fuel: bool) -> Result<Self, SandboxError> {
        Self::configured(fuel, None)
    }

    /// As [`Sandbox::with_fuel`], keeping compiled code in `compile_cache` (named by the
    /// guest's bytes and the engine's configuration, authenticated, in the user's private
    /// state: see [`crate::compiled`]): a guest compiled once is not compiled again by any
    /// later run with the same configuration. Engines of other configurations may share the
    /// cache: its entries are named by the engine's fingerprint too.
    pub fn configured(
        fuel: bool,
        compile_cache: Option<Arc<CompileCache>>,
    ) -> Result<Self, SandboxError> {
        Self::build(fuel, compile_cache, None)
    }

    /// As [`Sandbox::with_fuel`], with wasmtime's pooling allocator: memory, tables and
    /// instances for up to `instances` concurrent guests are reserved up front and reused,
    /// which makes instantiation cheaper for a process that runs many guests. Each memory
    /// slot holds [`limits::DEFAULT_MEMORY_BYTES`]; a guest cannot grow past it, whatever its
    /// grant.
    pub fn pooled(fuel: bool, instances: u32) -> Result<Self, SandboxError> {
        Self::build(fuel, None, Some(instances))
    }

    fn build(
        fuel: bool,
        compile_cache: Option<Arc<CompileCache>>,
        pooling: Option<u32>,
    ) -> Result<Self, SandboxError> {
        let engine_error = |e: wasmtime::Error| SandboxError::Engine(format!("{e:#}"));
        let mut config = Config::new();
        config
            .strategy(Strategy::Cranelift)
            .epoch_interruption(true)
            .max_wasm_stack(limits::MAX_WASM_STACK)
            .consume_fuel(fuel);
        if let Some(instances) = pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_core_instances(instances)
                .total_memories(instances)
                .total_tables(instances)
                .total_component_instances(instances)
                .table_elements(limits::MAX_TABLE_ELEMENTS)
                .max_memory_size(
                    usize::try_from(limits::DEFAULT_MEMORY_BYTES).unwrap_or(usize::MAX),
                );
            config.allocation_strategy(pool);
        }
        let engine = Engine::new(&config).map_err(engine_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SandboxError::Engine(format!("cannot start the guests' runtime: {e}")))?;
        Ok(Self {
            ticker: Arc::new(Ticker::start(engine.clone())?),
            engine,
            fuel,
            cache: compile_cache,
            runtime: Arc::new(GuestRuntime(Some(runtime))),
            compile_deadline: limits::COMPILE_DEADLINE,
        })
    }

    /// How long compiling one guest may take before it is refused
    /// ([`SandboxError::CompileDeadline`]); [`limits::COMPILE_DEADLINE`] by default.
    pub fn set_compile_deadline(&mut self, deadline: Duration) {
        self.compile_deadline = deadline;
    }

    /// Starts preparing `wasm` with `how` (compiling it, or finding it compiled, and linking
    /// it) on a thread of its own; [`Preparing::wait`] waits for it at most the compile
    /// deadline, counted from here.
    fn start(&self, wasm: Vec<u8>, how: PrepareFn) -> Result<Preparing, SandboxError> {
        // Every guest is compiled here: the size bound comes before anything else.
        check_size(&wasm)?;
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let (done, prepared) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("warrant-compile".into())
            .spawn(move || {
                // The receiver is gone when the deadline passed: nothing to report to.
                let _ = done.send(how(&engine, cache.as_deref(), &wasm));
            })
            .map_err(|e| SandboxError::Engine(format!("cannot start compiling: {e}")))?;
        Ok(Preparing {
            prepared,
            until: Instant::now() + self.compile_deadline,
            deadline: self.compile_deadline,
        })
    }

    /// Starts preparing a guest, a module or a component as its bytes say, on a thread of its
    /// own, so that the caller can do something else meanwhile (`warrant run` commits the
    /// audit log). Nothing runs guest code until [`Sandbox::run_prepared`].
    pub fn start_prepare(&self, wasm: Vec<u8>) -> Result<Preparing, SandboxError> {
        self.start(wasm, prepare_any)
    }

    /// How many guests were found compiled in the compile cache, when there is one.
    pub fn compile_cache_hits(&self) -> Option<usize> {
        self.cache.as_ref().map(|c| c.hits())
    }

    /// Run a guest, a core module ([`Sandbox::run_module`]) or a component
    /// ([`Sandbox::run_component`]) as its bytes say.
    pub fn run(
        &self,
        wasm: &[u8],
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
    ) -> Result<Finished, SandboxError> {
        self.run_prepared(&self.prepare(wasm)?, args, limits, handles)
    }

    /// Run a WASI preview 1 command module: instantiate and call `_start`, with `handles` and
    /// nothing else.
    pub fn run_module(
        &self,
        wasm: &[u8],
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
    ) -> Result<Finished, SandboxError> {
        self.run_prepared(&self.prepare_module(wasm)?, args, limits, handles)
    }

    /// Run a WASI 0.2 command component: instantiate and call `wasi:cli/run`, with `handles`
    /// and nothing else. A `run` that returns an error is exit status 1.
    pub fn run_component(
        &self,
        wasm: &[u8],
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
    ) -> Result<Finished, SandboxError> {
        self.run_prepared(&self.prepare_component(wasm)?, args, limits, handles)
    }

    /// Compile (or find compiled, with a compile cache) and link a module or a component, as
    /// its bytes say, waiting at most the compile deadline.
    pub fn prepare(&self, wasm: &[u8]) -> Result<Prepared, SandboxError> {
        self.start(wasm.to_vec(), prepare_any)?.wait()
    }

    fn prepare_module(&self, wasm: &[u8]) -> Result<Prepared, SandboxError> {
        self.start(wasm.to_vec(), prepare_module)?.wait()
    }

    fn prepare_component(&self, wasm: &[u8]) -> Result<Prepared, SandboxError> {
        self.start(wasm.to_vec(), prepare_component)?.wait()
    }

    /// Run a prepared guest once, with `handles` and nothing else, in a store of its own.
    pub fn run_prepared(
        &self,
        prepared: &Prepared,
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
    ) -> Result<Finished, SandboxError> {
        self.run_prepared_with(prepared, args, limits, handles, Output::Captured, None)
    }

    /// As [`Sandbox::run_prepared`], with the output sent where `output` says, and stopped
    /// early when `stop` is used.
    pub fn run_prepared_with(
        &self,
        prepared: &Prepared,
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
        output: Output,
        stop: Option<&Stop>,
    ) -> Result<Finished, SandboxError> {
        self.check_fuel(limits)?;
        let mut io = GuestIo::with(output, limits);
        let builder = io.builder(args, limits, handles)?;
        match &prepared.guest {
            PreparedGuest::Module { pre, prompt } => {
                Ok(self.live(pre, *prompt, builder, io, limits, stop)?.start())
            }
            PreparedGuest::Component(pre) => {
                self.run_command(pre, builder, io, limits, &handles.net, stop)
            }
        }
    }

    /// A store for one module instance, with its limits, and the module instantiated in it.
    fn live(
        &self,
        pre: &InstancePre<Host>,
        prompt: bool,
        mut builder: WasiCtxBuilder,
        io: GuestIo,
        limits: &RunLimits,
        stop: Option<&Stop>,
    ) -> Result<Live, SandboxError> {
        let host = Host {
            wasi: builder.build_p1(),
            limiter: Limiter::new(limits, 1),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        self.bound(&mut store, limits, stop)?;
        let started = Instant::now();
        // The module's own start function runs here, and may wait in the host too.
        let instance = if prompt {
            let _entered = self.runtime.enter();
            pre.instantiate(&mut store)
        } else {
            self.runtime.block_on(within(
                limits.timeout,
                stop,
                pre.instantiate_async(&mut store),
            ))
        };
        Ok(Live {
            store,
            instance,
            prompt,
            instantiation: started.elapsed(),
            io,
            limits: limits.clone(),
            stop: stop.cloned(),
            runtime: self.runtime.clone(),
            _ticker: self.ticker.clone(),
        })
    }

    /// Instantiate a prepared module with `handles` and keep it, idle, until [`Live::start`]
    /// or until dropped (a process holding many plugins ready). Components are run with
    /// [`Sandbox::run_prepared`] only.
    pub fn instantiate(
        &self,
        prepared: &Prepared,
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
    ) -> Result<Live, SandboxError> {
        self.check_fuel(limits)?;
        let PreparedGuest::Module { pre, prompt } = &prepared.guest else {
            return Err(SandboxError::Load(
                "a component cannot be held instantiated; run it instead".into(),
            ));
        };
        let mut io = GuestIo::new(limits);
        let builder = io.builder(args, limits, handles)?;
        self.live(pre, *prompt, builder, io, limits, None)
    }

    fn run_command(
        &self,
        pre: &CommandPre<ComponentHost>,
        mut builder: WasiCtxBuilder,
        io: GuestIo,
        limits: &RunLimits,
        net: &[String],
        stop: Option<&Stop>,
    ) -> Result<Finished, SandboxError> {
        capability::allow_granted_net(&mut builder, net);
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits::MAX_COMPONENT_HANDLES);
        let host = ComponentHost {
            ctx: builder.build(),
            table,
            limiter: Limiter::new(limits, limits::MAX_COMPONENT_PARTS),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        store.set_hostcall_fuel(limits::HOSTCALL_FUEL);
        store.set_max_component_handles(limits::MAX_COMPONENT_HANDLES);
        self.bound(&mut store, limits, stop)?;
        let started = Instant::now();
        let result = self.runtime.block_on(within(limits.timeout, stop, async {
            let command: Command = pre.instantiate_async(&mut store).await?;
            match command.wasi_cli_run().call_run(&mut store).await? {
                Ok(()) => Ok(()),
                Err(()) => Err(wasmtime::Error::new(I32Exit(1))),
            }
        }));
        let elapsed = started.elapsed();
        let hit = store.data().limiter.hit.clone();
        Ok(io.finish(result.err().as_ref(), hit, limits, elapsed))
    }

    fn check_fuel(&self, limits: &RunLimits) -> Result<(), SandboxError> {
        if limits.fuel.is_some() && !self.fuel {
            return Err(SandboxError::Engine(
                "fuel was asked of an engine that does not meter it".into(),
            ));
        }
        Ok(())
    }

    /// The deadline (see [`deadline_ticks`]), the stop and the fuel of a store.
    fn bound<T: 'static>(
        &self,
        store: &mut Store<T>,
        limits: &RunLimits,
        stop: Option<&Stop>,
    ) -> Result<(), SandboxError> {
        set_deadline(store, deadline_ticks(limits.timeout), stop);
        if self.fuel {
            // A metering engine asked for no limit: as much fuel as can be counted.
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        }
        Ok(())
    }
}

/// An instantiated module held idle ([`Sandbox::instantiate`]).
pub struct Live {
    store: Store<Host>,
    instance: wasmtime::Result<wasmtime::Instance>,
    /// Linked with synchronous WASI: called directly.
    prompt: bool,
    /// Time spent instantiating (the module's own start function runs then).
    instantiation: Duration,
    io: GuestIo,
    limits: RunLimits,
    stop: Option<Stop>,
    runtime: Arc<GuestRuntime>,
    /// The epoch goes on advancing while an instance lives, even past its sandbox: its
    /// deadline must still come.
    _ticker: Arc<Ticker>,
}

impl Live {
    /// Whether instantiation succeeded; when it did not, [`Live::start`] says why.
    pub fn is_ready(&self) -> bool {
        self.instance.is_ok()
    }

    /// Call `_start`, with what instantiation left of the deadline counted from now, and
    /// classify how it ended (a failed instantiation ends here too).
    pub fn start(mut self) -> Finished {
        // The deadline covers instantiation and the entry point together, not the idle wait.
        let left = self.limits.timeout.saturating_sub(self.instantiation);
        set_deadline(&mut self.store, deadline_ticks(left), self.stop.as_ref());
        let started = Instant::now();
        let store = &mut self.store;
        let result = self.instance.and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
            if self.prompt {
                let _entered = self.runtime.enter();
                start.call(&mut *store, ())
            } else {
                self.runtime.block_on(within(
                    left,
                    self.stop.as_ref(),
                    start.call_async(&mut *store, ()),
                ))
            }
        });
        let elapsed = self.instantiation + started.elapsed();
        let hit = self.store.data().limiter.hit.clone();
        self.io
            .finish(result.err().as_ref(), hit, &self.limits, elapsed)
    }
}

/// Stop a store's guest after `ticks` epoch ticks (a trap, [`Trap::Interrupt`]), or, with a
/// `stop`, at the first tick after it is used ([`Stopped`]).
fn set_deadline<T: 'static>(store: &mut Store<T>, ticks: u64, stop: Option<&Stop>) {
    match stop {
        None => {
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        Some(stop) => {
            // Called once a tick: the deadline is counted here, so a deadline of any length
            // (a pod's may be none at all) never overflows the engine's epoch arithmetic.
            let stop = stop.clone();
            let mut left = ticks;
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                if stop.is_stopped() {
                    return Err(wasmtime::Error::new(Stopped));
                }
                left = left.saturating_sub(1);
                if left == 0 {
                    return Err(wasmtime::Error::new(Trap::Interrupt));
                }
                Ok(wasmtime::UpdateDeadline::Continue(1))
            });
        }
    }
}

/// Epoch ticks for `timeout`. The ticker runs all along, so the first tick may come at
/// once: one tick more than the timeout makes the guest stop no earlier than its timeout and
/// at most one tick later.
fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout
        .as_millis()
        .div_ceil(limits::EPOCH_TICK.as_millis())
        .saturating_add(1);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// A guest still waiting in the host (a sleep, a poll, a blocking read) when its deadline
/// came: its call was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("the guest was waiting in a host call at its deadline")]
struct WaitedPastDeadline;

/// `guest` (instantiation or a call), cancelled if it is still waiting in the host after
/// `timeout`. Computing guests are stopped by the epoch deadline instead: a future only
/// yields while a host call waits, so this bounds exactly what the epoch cannot.
async fn within<T>(
    timeout: Duration,
    stop: Option<&Stop>,
    guest: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let stopped = async {
        match stop {
            Some(stop) => stop.stopped().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = tokio::time::timeout(timeout, guest) => match result {
            Ok(result) => result,
            Err(_elapsed) => Err(wasmtime::Error::new(WaitedPastDeadline)),
        },
        () = stopped => Err(wasmtime::Error::new(Stopped)),
    }
}

/// Advances the engine's epoch every [`limits::EPOCH_TICK`] until dropped: a deadline of `n`
/// ticks set at any moment passes between `n - 1` and `n` ticks later. Dropping it wakes the
/// thread at once (its sender closes), so a process does not wait out a tick to exit.
struct Ticker {
    /// Dropping it (with the sandbox) closes the channel, which ends the thread's wait; the
    /// thread then ends on its own and is not waited for.
    _stop: std::sync::mpsc::Sender<()>,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Self, SandboxError> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("warrant-epoch".into())
            .spawn(move || {
                // The epoch follows the clock, not the number of sleeps: a thread that wakes
                // late (a loaded machine) catches up, so deadlines do not drift.
                let started = Instant::now();
                let mut ticks: u128 = 0;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(limits::EPOCH_TICK)
                {
                    let due = started.elapsed().as_nanos() / limits::EPOCH_TICK.as_nanos().max(1);
                    while ticks < due {
                        engine.increment_epoch();
                        ticks = ticks.saturating_add(1);
                    }
                }
            })
            .map_err(|e| SandboxError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Self { _stop: stop })
    }
}

#[cfg(test)]
mod tests;
