//! The last stage: instantiate a guest in wasmtime with nothing it was not given, and classify
//! how it ended.
//!
//! What a guest gets from [`Sandbox::run_module`], and nothing more:
//!
//! - the directories and environment variables of its [`Handles`], which only a policy
//!   [`Grant`] makes (read-only directories are opened read-only);
//!   nothing else of the host's environment or file system;
//! - no network (every address denied, TCP and UDP disabled, no name lookup): WASI preview 1
//!   has no sockets, so granted `net.connect` pairs have nothing to open yet;
//! - stdin closed; stdout and stderr captured, each capped at [`RunLimits::output_bytes`];
//! - the arguments the operator gave;
//! - linear memory capped at [`RunLimits::memory_bytes`], one instance, one memory, one
//!   table of at most [`limits::MAX_TABLE_ELEMENTS`] elements, traps on failed growth;
//! - a wall-clock deadline enforced by epoch interruption, and fuel when metered;
//! - a Wasm stack of [`limits::MAX_WASM_STACK`] bytes, well below the host thread's stack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

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
    dirs: Vec<(std::path::PathBuf, String, bool)>,
    env: Vec<(String, String)>,
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
                .map(|d| (d.host.clone(), d.guest.clone(), d.writable))
                .collect(),
            env: grant.env().to_vec(),
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
    /// Wall-clock time from instantiation to end.
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
}

/// A configured engine. Create once, run many guests.
pub struct Sandbox {
    engine: Engine,
    fuel: bool,
}

struct Host {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    hit: Option<(Limit, String)>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let detail = format!(
                "linear memory would grow from {current} to {desired} bytes; the limit is {}",
                self.memory_bytes
            );
            self.hit = Some((Limit::Memory, detail.clone()));
            wasmtime::bail!(detail);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
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
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

impl Sandbox {
    /// An engine with epoch interruption and a bounded Wasm stack.
    pub fn new() -> Result<Self, SandboxError> {
        Self::with_fuel(false)
    }

    /// As [`Sandbox::new`], metering fuel when `fuel` (needed for [`RunLimits::fuel`]).
    pub fn with_fuel(fuel: bool) -> Result<Self, SandboxError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(limits::MAX_WASM_STACK);
        config.consume_fuel(fuel);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        Ok(Self { engine, fuel })
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
        if limits.fuel.is_some() && !self.fuel {
            return Err(SandboxError::Engine(
                "fuel was asked of an engine that does not meter it".into(),
            ));
        }
        let module =
            Module::new(&self.engine, wasm).map_err(|e| SandboxError::Load(format!("{e:#}")))?;
        let mut linker: Linker<Host> = Linker::new(&self.engine);
        p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| SandboxError::Load(format!("{e:#}")))?;

        let output_cap = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
        let stdout = MemoryOutputPipe::new(output_cap);
        let stderr = MemoryOutputPipe::new(output_cap);
        // Least privilege: `WasiCtxBuilder::new()` has no env, no preopens, stdin closed;
        // networking is switched off outright; the granted handles are added one by one.
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(args)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(limits::MAX_RANDOM_BYTES.min(limits.memory_bytes));
        for (name, value) in &handles.env {
            builder.env(name, value);
        }
        for (host, guest, writable) in &handles.dirs {
            let perms = if *writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder.preopened_dir(host, guest, perms).map_err(|e| {
                SandboxError::Load(format!("cannot open `{}`: {e:#}", host.display()))
            })?;
        }
        let wasi = builder.build_p1();
        let host = Host {
            wasi,
            limiter: Limiter {
                memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                table_elements: limits::MAX_TABLE_ELEMENTS,
                hit: None,
            },
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        let ticks = limits
            .timeout
            .as_millis()
            .div_ceil(limits::EPOCH_TICK.as_millis())
            .max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        if self.fuel {
            // A metering engine asked for no limit: as much fuel as can be counted.
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        }

        let ticker = Ticker::start(self.engine.clone());
        let started = Instant::now();
        let result = pre.instantiate(&mut store).and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });
        let elapsed = started.elapsed();
        drop(ticker);

        let stdout_bytes = stdout.contents().to_vec();
        let stderr_bytes = stderr.contents().to_vec();
        let output_full = stdout_bytes.len() >= output_cap || stderr_bytes.len() >= output_cap;
        let outcome = classify(
            result.err().as_ref(),
            store.data().limiter.hit.clone(),
            output_full,
            limits,
        );
        Ok(Finished {
            outcome,
            stdout: stdout_bytes,
            stderr: stderr_bytes,
            elapsed,
        })
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
    let interrupted = trap == Some(&Trap::Interrupt);
    if interrupted {
        return Outcome::Limited {
            limit: Limit::Deadline,
            detail: format!("the guest ran past its {:?} deadline", limits.timeout),
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

/// Advances the engine's epoch every [`limits::EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(limits::EPOCH_TICK);
                engine.increment_epoch();
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
}
