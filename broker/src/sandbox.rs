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

use std::collections::HashSet;
use std::net::SocketAddr;

use registry_client::WasmKind;
use wasmtime::component::{Component, ResourceTable};

use wasmtime::{
    Config, Engine, InstancePre, Linker, Module, PoolingAllocationConfig, ResourceLimiter, Store,
    Strategy, Trap,
};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::bindings::{Command, CommandPre};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::compiled::{CompileCache, Compiled};
use crate::policy::Grant;

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

/// The handles a guest is given. Only a [`Grant`] makes any; [`Handles::none`] gives nothing.
#[derive(Clone, Debug, Default)]
pub struct Handles {
    /// Directories: held open since they were asked for, where the guest sees them, writable.
    dirs: Vec<(crate::policy::HostDir, String, bool)>,
    env: Vec<(String, crate::policy::EnvValue)>,
    /// Granted `host:port` pairs (components only: WASI preview 1 has no sockets).
    net: Vec<String>,
}

impl Handles {
    /// No directory, no environment.
    pub fn none() -> Self {
        Self::default()
    }

    /// Exactly what `grant` allows.
    pub fn of(grant: &Grant) -> Self {
        Self {
            dirs: grant
                .dirs()
                .iter()
                .map(|d| (d.dir.clone(), d.guest.clone(), d.writable))
                .collect(),
            env: grant.env().to_vec(),
            net: grant.net().to_vec(),
        }
    }
}

/// The socket addresses the granted `host:port` pairs stand for: an IP literal itself, a name
/// every address it resolves to now. A pair that does not resolve grants nothing.
fn granted_addresses(net: &[String]) -> HashSet<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    net.iter()
        .filter_map(|pair| pair.to_socket_addrs().ok())
        .flatten()
        .collect()
}

/// Whether a component may use `addr` for `how`: only a TCP connection to a granted address,
/// and the implicit bind to the wildcard address that a connection makes.
fn socket_allowed(granted: &HashSet<SocketAddr>, addr: SocketAddr, how: SocketAddrUse) -> bool {
    match how {
        SocketAddrUse::TcpConnect => granted.contains(&addr),
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        _ => false,
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
}

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
        Self {
            memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
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
    /// later run with the same configuration.
    pub fn configured(
        fuel: bool,
        compile_cache: Option<CompileCache>,
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
        compile_cache: Option<CompileCache>,
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
            cache: compile_cache.map(Arc::new),
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
        self.check_fuel(limits)?;
        let io = GuestIo::new(limits);
        let builder = io.builder(args, limits, handles)?;
        match &prepared.guest {
            PreparedGuest::Module { pre, prompt } => {
                Ok(self.live(pre, *prompt, builder, io, limits)?.start())
            }
            PreparedGuest::Component(pre) => {
                self.run_command(pre, builder, io, limits, &handles.net)
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
    ) -> Result<Live, SandboxError> {
        let host = Host {
            wasi: builder.build_p1(),
            limiter: Limiter::new(limits, 1),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        self.bound(&mut store, limits)?;
        let started = Instant::now();
        // The module's own start function runs here, and may wait in the host too.
        let instance = if prompt {
            let _entered = self.runtime.enter();
            pre.instantiate(&mut store)
        } else {
            self.runtime
                .block_on(within(limits.timeout, pre.instantiate_async(&mut store)))
        };
        Ok(Live {
            store,
            instance,
            prompt,
            instantiation: started.elapsed(),
            io,
            limits: limits.clone(),
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
        let io = GuestIo::new(limits);
        let builder = io.builder(args, limits, handles)?;
        self.live(pre, *prompt, builder, io, limits)
    }

    fn run_command(
        &self,
        pre: &CommandPre<ComponentHost>,
        mut builder: WasiCtxBuilder,
        io: GuestIo,
        limits: &RunLimits,
        net: &[String],
    ) -> Result<Finished, SandboxError> {
        if !net.is_empty() {
            // Only TCP connections to the granted pairs. A granted name is resolved here, and
            // the check applies to the address the guest finally connects to; the guest may
            // look names up only when a granted host is a name.
            let granted = granted_addresses(net);
            let names = net.iter().any(|pair| {
                let host = pair.rsplit_once(':').map_or(pair.as_str(), |(h, _)| h);
                host.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_err()
            });
            builder
                .allow_tcp(true)
                .allow_ip_name_lookup(names)
                .socket_addr_check(move |addr, how| {
                    let allowed = socket_allowed(&granted, addr, how);
                    Box::pin(async move { allowed })
                });
        }
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
        self.bound(&mut store, limits)?;
        let started = Instant::now();
        let result = self.runtime.block_on(within(limits.timeout, async {
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

    /// The deadline (see [`deadline_ticks`]) and the fuel of a store.
    fn bound<T>(&self, store: &mut Store<T>, limits: &RunLimits) -> Result<(), SandboxError> {
        store.set_epoch_deadline(deadline_ticks(limits.timeout));
        store.epoch_deadline_trap();
        if self.fuel {
            // A metering engine asked for no limit: as much fuel as can be counted.
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        }
        Ok(())
    }
}

/// How a guest is prepared: compiled (or found compiled) and linked, as a module, a component,
/// or whichever its bytes say.
type PrepareFn = fn(&Engine, Option<&CompileCache>, &[u8]) -> Result<Prepared, SandboxError>;

/// A guest being compiled and linked on a thread of its own ([`Sandbox::start_prepare`]).
pub struct Preparing {
    prepared: std::sync::mpsc::Receiver<Result<Prepared, SandboxError>>,
    until: Instant,
    deadline: Duration,
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

fn prepare_any(
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
fn compile(
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

fn prepare_module(
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

fn prepare_component(
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
fn load_error(e: &wasmtime::Error) -> SandboxError {
    SandboxError::Load(registry_client::text::one_line(&format!("{e:#}")).into_owned())
}

/// Refuses guests over [`limits::MAX_GUEST_BYTES`] before compiling anything.
fn check_size(wasm: &[u8]) -> Result<(), SandboxError> {
    if u64::try_from(wasm.len()).unwrap_or(u64::MAX) > limits::MAX_GUEST_BYTES {
        return Err(SandboxError::Load(format!(
            "the guest is {} bytes; the limit is {}",
            wasm.len(),
            limits::MAX_GUEST_BYTES
        )));
    }
    Ok(())
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
        self.store.set_epoch_deadline(deadline_ticks(left));
        let started = Instant::now();
        let store = &mut self.store;
        let result = self.instance.and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
            if self.prompt {
                let _entered = self.runtime.enter();
                start.call(&mut *store, ())
            } else {
                self.runtime
                    .block_on(within(left, start.call_async(&mut *store, ())))
            }
        });
        let elapsed = self.instantiation + started.elapsed();
        let hit = self.store.data().limiter.hit.clone();
        self.io
            .finish(result.err().as_ref(), hit, &self.limits, elapsed)
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
    guest: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    match tokio::time::timeout(timeout, guest).await {
        Ok(result) => result,
        Err(_elapsed) => Err(wasmtime::Error::new(WaitedPastDeadline)),
    }
}

/// A guest's captured stdout and stderr.
struct GuestIo {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    cap: usize,
}

impl GuestIo {
    fn new(limits: &RunLimits) -> Self {
        let cap = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
        Self {
            stdout: MemoryOutputPipe::new(cap),
            stderr: MemoryOutputPipe::new(cap),
            cap,
        }
    }

    /// Least privilege: `WasiCtxBuilder::new()` has no env, no preopens, stdin closed;
    /// networking is switched off outright; the granted handles are added one by one.
    fn builder(
        &self,
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
    ) -> Result<WasiCtxBuilder, SandboxError> {
        // INVARIANT (no ambient authority): the context starts empty; only the arguments, the
        // capped pipes and the grant's handles are added.
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(args)
            .stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(limits::MAX_RANDOM_BYTES.min(limits.memory_bytes));
        for (name, value) in &handles.env {
            builder.env(name, value.expose());
        }
        for (dir, guest, writable) in &handles.dirs {
            let perms = if *writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            // INVARIANT (one object): the directory decided is the directory given. WASI
            // opens a preopen by path; the path given is the held descriptor's, which the
            // kernel resolves to that directory, not to whatever its name leads to now.
            builder
                .preopened_dir(dir.descriptor_path(), guest, perms)
                .map_err(|e| SandboxError::Load(format!("cannot give `{guest}`: {e:#}")))?;
        }
        Ok(builder)
    }

    fn finish(
        self,
        error: Option<&wasmtime::Error>,
        hit: Option<(Limit, String)>,
        limits: &RunLimits,
        elapsed: Duration,
    ) -> Finished {
        let stdout = self.stdout.contents().to_vec();
        let stderr = self.stderr.contents().to_vec();
        let output_full = stdout.len() >= self.cap || stderr.len() >= self.cap;
        Finished {
            outcome: classify(error, hit, output_full, limits),
            stdout,
            stderr,
            elapsed,
        }
    }
}

/// How a run ended. A full stdout or stderr pipe means output was lost (writes past the cap
/// fail), so it counts as the output limit even when the guest then exited normally or trapped
/// on the failed write; the deadline and memory limits keep precedence.
fn classify(
    error: Option<&wasmtime::Error>,
    limit_hit: Option<(Limit, String)>,
    output_full: bool,
    limits: &RunLimits,
) -> Outcome {
    if let Some((limit, detail)) = limit_hit {
        return Outcome::Limited { limit, detail };
    }
    let trap = error.and_then(|e| e.downcast_ref::<Trap>());
    if trap == Some(&Trap::OutOfFuel) {
        return Outcome::Limited {
            limit: Limit::Fuel,
            detail: format!(
                "the guest used all of its {} units of fuel",
                limits.fuel.unwrap_or(0)
            ),
        };
    }
    let waited = error.is_some_and(|e| e.downcast_ref::<WaitedPastDeadline>().is_some());
    let past = if waited {
        Some("was still waiting in a host call (a sleep, a poll, a blocking read) at")
    } else if trap == Some(&Trap::Interrupt) {
        Some("ran past")
    } else {
        None
    };
    if let Some(how) = past {
        return Outcome::Limited {
            limit: Limit::Deadline,
            detail: format!("the guest {how} its {:?} deadline", limits.timeout),
        };
    }
    if output_full {
        return Outcome::Limited {
            limit: Limit::Output,
            detail: format!(
                "the guest wrote {} bytes or more to stdout or stderr; output past that was dropped",
                limits.output_bytes
            ),
        };
    }
    let Some(e) = error else {
        return Outcome::Exited(0);
    };
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    match e.downcast_ref::<Trap>() {
        Some(trap) => Outcome::Trapped(trap.to_string()),
        None => Outcome::Trapped(format!("{e:#}")),
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
mod tests {
    use super::*;

    fn run(wat: &str, limits: &RunLimits) -> Finished {
        let wasm = wat::parse_str(wat).unwrap();
        Sandbox::new()
            .unwrap()
            .run_module(&wasm, &["guest".into()], limits, &Handles::none())
            .unwrap()
    }

    const HELLO: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "hi\n")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

    #[test]
    fn captures_stdout_and_exits_zero() {
        let f = run(HELLO, &RunLimits::default());
        assert_eq!(f.outcome, Outcome::Exited(0));
        assert_eq!(f.stdout, b"hi\n");
    }

    #[test]
    fn proc_exit_status_is_reported() {
        let f = run(
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
               (memory (export "memory") 1)
               (func (export "_start") (call $e (i32.const 42))))"#,
            &RunLimits::default(),
        );
        assert_eq!(f.outcome, Outcome::Exited(42));
    }

    #[test]
    fn an_infinite_loop_stops_at_the_deadline() {
        let limits = RunLimits {
            timeout: Duration::from_millis(200),
            ..RunLimits::default()
        };
        let f = run(
            r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#,
            &limits,
        );
        assert!(
            matches!(
                f.outcome,
                Outcome::Limited {
                    limit: Limit::Deadline,
                    ..
                }
            ),
            "{:?}",
            f.outcome
        );
        assert!(f.elapsed < Duration::from_secs(5), "{:?}", f.elapsed);
    }

    #[test]
    fn memory_growth_past_the_limit_is_a_limit() {
        let limits = RunLimits {
            memory_bytes: 1 << 20,
            ..RunLimits::default()
        };
        let f = run(
            r#"(module (memory (export "memory") 1)
               (func (export "_start") (loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))))"#,
            &limits,
        );
        assert!(
            matches!(
                f.outcome,
                Outcome::Limited {
                    limit: Limit::Memory,
                    ..
                }
            ),
            "{:?}",
            f.outcome
        );
    }

    #[test]
    fn initial_memory_over_the_limit_is_a_limit() {
        let limits = RunLimits {
            memory_bytes: 1 << 20,
            ..RunLimits::default()
        };
        let f = run(
            r#"(module (memory (export "memory") 100) (func (export "_start")))"#,
            &limits,
        );
        assert!(
            matches!(
                f.outcome,
                Outcome::Limited {
                    limit: Limit::Memory,
                    ..
                }
            ),
            "{:?}",
            f.outcome
        );
    }

    #[test]
    fn output_past_the_cap_is_a_limit() {
        let limits = RunLimits {
            output_bytes: 10,
            ..RunLimits::default()
        };
        let f = run(
            r#"(module
              (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (func (export "_start")
                (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 64))
                (loop (br_if 0 (i32.eqz (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))))"#,
            &limits,
        );
        assert!(
            matches!(
                f.outcome,
                Outcome::Limited {
                    limit: Limit::Output,
                    ..
                }
            ),
            "{:?}",
            f.outcome
        );
        assert!(f.stdout.len() <= 10);
    }

    #[test]
    fn unreachable_is_a_trap() {
        let f = run(
            r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
            &RunLimits::default(),
        );
        assert!(matches!(f.outcome, Outcome::Trapped(_)), "{:?}", f.outcome);
    }

    #[test]
    fn unbounded_recursion_traps_without_killing_the_host() {
        let f = run(
            r#"(module (memory (export "memory") 1) (func $f (export "_start") (call $f)))"#,
            &RunLimits::default(),
        );
        assert!(
            matches!(&f.outcome, Outcome::Trapped(m) if m.contains("stack")),
            "{:?}",
            f.outcome
        );
    }

    #[test]
    fn the_guest_sees_no_environment() {
        // environ_sizes_get writes the count of env vars at address 0.
        let f = run(
            r#"(module
              (import "wasi_snapshot_preview1" "environ_sizes_get" (func $s (param i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
              (memory (export "memory") 1)
              (func (export "_start")
                (drop (call $s (i32.const 0) (i32.const 4)))
                (call $e (i32.load (i32.const 0)))))"#,
            &RunLimits::default(),
        );
        assert_eq!(f.outcome, Outcome::Exited(0));
    }

    #[test]
    fn invalid_bytes_are_a_load_error() {
        let err = Sandbox::new()
            .unwrap()
            .run_module(
                b"\0asm\x01\0\0\0\xff",
                &[],
                &RunLimits::default(),
                &Handles::none(),
            )
            .unwrap_err();
        assert!(matches!(err, SandboxError::Load(_)));
    }
    /// A second engine with the same compile cache finds the guest compiled: the second run of
    /// the same bytes does not compile again. Other bytes are compiled. An entry that is not
    /// exactly what was written under its name — another guest's code copied over it, one
    /// byte changed, cut short, or written under another state's key — is compiled afresh,
    /// and the guest runs as itself.
    #[test]
    fn a_second_run_of_the_same_guest_is_not_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::State::open(&dir.path().join("data")).unwrap();
        let wasm = wat::parse_str(HELLO).unwrap();
        let run_in = |state: &crate::state::State, wasm: &[u8]| {
            let cache = CompileCache::open(state).unwrap();
            let sandbox = Sandbox::configured(false, Some(cache)).unwrap();
            let f = sandbox
                .run(
                    wasm,
                    &["guest".into()],
                    &RunLimits::default(),
                    &Handles::none(),
                )
                .unwrap();
            assert_eq!(f.outcome, Outcome::Exited(0));
            (sandbox.compile_cache_hits().unwrap(), f.stdout)
        };
        let run = |wasm: &[u8]| run_in(&state, wasm);
        assert_eq!(run(&wasm), (0, b"hi\n".to_vec()), "first run: compiled");
        assert_eq!(
            run(&wasm),
            (1, b"hi\n".to_vec()),
            "second run: from the cache"
        );
        let other = wat::parse_str(HELLO.replace("hi\\n", "ho\\n")).unwrap();
        assert_ne!(other, wasm);
        let entries = || {
            let mut names: Vec<_> = std::fs::read_dir(dir.path().join("data/compiled"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            names
        };
        let before = entries();
        assert_eq!(run(&other), (0, b"ho\n".to_vec()), "other bytes: compiled");
        let (mine, theirs) = {
            let after = entries();
            let theirs = after.iter().find(|p| !before.contains(p)).unwrap().clone();
            (before[0].clone(), theirs)
        };
        let genuine = std::fs::read(&mine).unwrap();
        // The other guest's code copied over this guest's entry.
        std::fs::copy(&theirs, &mine).unwrap();
        assert_eq!(
            run(&wasm),
            (0, b"hi\n".to_vec()),
            "swapped: compiled afresh"
        );
        assert_eq!(
            std::fs::read(&mine).unwrap(),
            genuine,
            "and the entry replaced"
        );
        // One byte of the code changed, the entry cut short, the MAC removed.
        let mut patched = genuine.clone();
        let middle = patched.len() / 2;
        patched[middle] ^= 0x40;
        for bad in [
            patched,
            genuine[..genuine.len() - 1].to_vec(),
            genuine[..31].to_vec(),
        ] {
            std::fs::write(&mine, bad).unwrap();
            assert_eq!(run(&wasm), (0, b"hi\n".to_vec()));
        }
        // The same guest's entry from another data directory (another MAC key).
        let elsewhere = crate::state::State::open(&dir.path().join("elsewhere")).unwrap();
        assert_eq!(run_in(&elsewhere, &wasm).0, 0);
        let foreign = dir
            .path()
            .join("elsewhere/compiled")
            .join(mine.file_name().unwrap());
        std::fs::copy(&foreign, &mine).unwrap();
        assert_eq!(
            run(&wasm),
            (0, b"hi\n".to_vec()),
            "another key: compiled afresh"
        );
        assert_eq!(run(&wasm), (1, b"hi\n".to_vec()));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("data/compiled"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn guests_over_the_size_limit_are_refused_before_compiling() {
        let big = vec![0u8; usize::try_from(limits::MAX_GUEST_BYTES).unwrap() + 1];
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend_from_slice(&big);
        let err = Sandbox::new()
            .unwrap()
            .run(&wasm, &[], &RunLimits::default(), &Handles::none())
            .unwrap_err();
        assert!(err.to_string().contains("the limit is"), "{err}");
    }

    /// An instance held idle past its deadline still gets its whole budget when started, and
    /// runs exactly like `run`.
    #[test]
    fn an_idle_instance_starts_with_its_full_deadline() {
        let sandbox = Sandbox::new().unwrap();
        let prepared = sandbox.prepare(&wat::parse_str(HELLO).unwrap()).unwrap();
        let limits = RunLimits {
            timeout: Duration::from_millis(50),
            ..RunLimits::default()
        };
        let live = sandbox
            .instantiate(&prepared, &["guest".into()], &limits, &Handles::none())
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let f = live.start();
        assert_eq!(f.outcome, Outcome::Exited(0));
        assert_eq!(f.stdout, b"hi\n");
    }

    /// An instance outlives the sandbox that made it, and its deadline still comes: the epoch
    /// goes on advancing as long as an instance lives.
    #[test]
    fn an_instance_started_after_its_sandbox_is_dropped_still_stops_at_its_deadline() {
        let sandbox = Sandbox::new().unwrap();
        let looping = wat::parse_str(
            r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#,
        )
        .unwrap();
        let prepared = sandbox.prepare(&looping).unwrap();
        let limits = RunLimits {
            timeout: Duration::from_millis(100),
            ..RunLimits::default()
        };
        let live = sandbox
            .instantiate(&prepared, &[], &limits, &Handles::none())
            .unwrap();
        drop(prepared);
        drop(sandbox);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(live.start().outcome);
        });
        let outcome = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the loop never stopped: no deadline without the sandbox");
        assert!(
            matches!(
                outcome,
                Outcome::Limited {
                    limit: Limit::Deadline,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }

    /// Components may connect only to granted addresses, and bind only implicitly (the
    /// wildcard address a connection binds to); no listening, no UDP.
    #[test]
    fn the_socket_check_allows_exactly_the_granted_pairs() {
        let granted = granted_addresses(&["127.0.0.1:8443".into(), "[::1]:443".into()]);
        assert_eq!(granted.len(), 2);
        use SocketAddrUse::{TcpAccept, TcpBind, TcpConnect, TcpListen, UdpBind, UdpSend};
        for (addr, how, allowed) in [
            ("127.0.0.1:8443", TcpConnect, true),
            ("[::1]:443", TcpConnect, true),
            ("127.0.0.1:8444", TcpConnect, false),
            ("127.0.0.2:8443", TcpConnect, false),
            ("0.0.0.0:0", TcpBind, true),
            ("0.0.0.0:8443", TcpBind, false),
            ("127.0.0.1:8443", TcpBind, false),
            ("127.0.0.1:8443", TcpListen, false),
            ("127.0.0.1:8443", TcpAccept, false),
            ("127.0.0.1:8443", UdpBind, false),
            ("127.0.0.1:8443", UdpSend, false),
        ] {
            let at = addr.parse::<SocketAddr>().unwrap();
            assert_eq!(socket_allowed(&granted, at, how), allowed, "{addr} {how:?}");
        }
        // A name stands for what it resolves to; one that does not resolve grants nothing.
        let local = granted_addresses(&["localhost:80".into()]);
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert!(granted_addresses(&["no-such-host.invalid:80".into()]).is_empty());
    }

    /// Only a module whose imports are all prompt calls is called directly; one importing
    /// `poll_oneoff`, `path_open` or any call not on the list runs as a future under the
    /// deadline's timeout.
    #[test]
    fn only_modules_importing_prompt_calls_skip_the_future() {
        let prompt = |imports: &[&str]| {
            let imports: String = imports
                .iter()
                .map(|name| format!(r#"(import "wasi_snapshot_preview1" "{name}" (func))"#))
                .collect();
            let wasm = wat::parse_str(format!("(module {imports})")).unwrap();
            let module = Module::new(&Sandbox::new().unwrap().engine, wasm).unwrap();
            imports_only_prompt_calls(&module)
        };
        assert!(prompt(&[]));
        assert!(prompt(&PROMPT_CALLS));
        for waits in [
            "poll_oneoff",
            "path_open",
            "fd_read",
            "fd_sync",
            "sock_recv",
        ] {
            assert!(!prompt(&["fd_write", waits]), "{waits}");
        }
        let hello = Sandbox::new()
            .unwrap()
            .prepare(&wat::parse_str(HELLO).unwrap());
        assert!(matches!(
            hello.map(|p| p.guest),
            Ok(PreparedGuest::Module { prompt: true, .. })
        ));
    }

    /// A guest whose compilation outlasts the compile deadline is refused with that reason;
    /// with the default deadline the same bytes compile and run.
    #[test]
    fn a_compilation_past_the_compile_deadline_refuses_the_guest() {
        let functions: String = (0..2_000)
            .map(|i| {
                format!("(func (param i32) (result i32) (i32.mul (local.get 0) (i32.const {i})))")
            })
            .collect();
        let wasm = wat::parse_str(format!(
            r#"(module {functions} (memory (export "memory") 1) (func (export "_start")))"#
        ))
        .unwrap();
        let mut sandbox = Sandbox::new().unwrap();
        sandbox.set_compile_deadline(Duration::ZERO);
        let refused = sandbox.prepare(&wasm).err();
        assert!(
            matches!(refused, Some(SandboxError::CompileDeadline(d)) if d == Duration::ZERO),
            "{refused:?}"
        );
        sandbox.set_compile_deadline(limits::COMPILE_DEADLINE);
        let f = sandbox
            .run(&wasm, &[], &RunLimits::default(), &Handles::none())
            .unwrap();
        assert_eq!(f.outcome, Outcome::Exited(0));
    }
}
