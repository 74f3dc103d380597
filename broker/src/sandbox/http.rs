//! Serving `wasi:http` components (`warrant serve`): one engine with a pooling allocator for
//! every tenant, a component prepared once per artifact, and a fresh instance, store and
//! resource table per request, with the tenant's memory limit and deadline.
//!
//! The guest is linked with all of WASI 0.2 besides `wasi:http`, because components from real
//! toolchains import filesystem, terminal, environment, exit and sockets interfaces beyond the
//! proxy world; those are present and empty: no environment, no arguments, no preopened
//! directory, no socket address allowed, no name lookup, stdio closed. What the guest reaches
//! outside is only what the outbound hooks ([`WasiHttpHooks`]) let through.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, PoolingAllocationConfig, Store, Strategy};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::prepare::{check_size, compile, load_error};
use super::{Limit, Limiter, SandboxError, Ticker, limits};
use crate::compiled::{CompileCache, Compiled};
use registry_client::WasmKind;

/// The limits of the serving engine's pool.
pub mod pool {
    /// Live instances in the whole process, all tenants together: the pool's size. A request
    /// beyond it is refused (503), never queued.
    pub const MAX_LIVE_INSTANCES: u32 = 1000;
    /// Core instances, memories and tables one component may have. Components from real
    /// toolchains hold a dozen or more core instances (the guest, its adapters, shims).
    pub const MAX_PARTS_PER_COMPONENT: u32 = 32;
    /// Memories in the pool, all instances together: most components have one or two.
    pub const TOTAL_MEMORIES: u32 = 2 * MAX_LIVE_INSTANCES;
    /// Tables in the pool, all instances together.
    pub const TOTAL_TABLES: u32 = 4 * MAX_LIVE_INSTANCES;
    /// Core instances in the pool, all component instances together.
    pub const TOTAL_CORE_INSTANCES: u32 = 8 * MAX_LIVE_INSTANCES;
    /// Largest linear memory of one tenant's instance: the pool reserves (address space, not
    /// memory) this much per memory slot, so a tenant's `memory_bytes` above it is refused.
    pub const MAX_MEMORY_BYTES: u64 = 1 << 30;
}

/// A request's store data: an empty WASI context, the `wasi:http` context, its resource table
/// (capped), its limiter, and the tenant's outbound hooks.
pub struct HttpHost {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limiter: Limiter,
    hooks: Box<dyn WasiHttpHooks>,
}

impl WasiView for HttpHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: self.hooks.as_mut(),
        }
    }
}

/// The serving engine: pooling allocator, epoch interruption (a guest yields every tick, so
/// one computing guest does not hold a worker thread), and the compile cache.
pub struct HttpEngine {
    engine: Engine,
    linker: Linker<HttpHost>,
    cache: Option<Arc<CompileCache>>,
    compile_deadline: Duration,
    _ticker: Arc<Ticker>,
}

/// A `wasi:http` component compiled and linked ([`HttpEngine::prepare`]): cheap to clone and
/// to instantiate once per request.
#[derive(Clone)]
pub struct HttpGuest {
    pre: ProxyPre<HttpHost>,
}

/// One request's limits.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Linear memory, all memories of the instance together.
    pub memory_bytes: u64,
    /// From the start of instantiation to the end of the response body.
    pub timeout: Duration,
}

/// How a request's guest ended, known once its task is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestEnd {
    /// `handle` returned.
    Returned,
    /// A limit stopped it (the deadline, memory, tables).
    Limited(Limit, String),
    /// It trapped, or could not be instantiated.
    Trapped(String),
}

/// What a request's guest answered ([`HttpEngine::handle`]).
pub enum Answer {
    /// The guest set a response: its head, and its body still being written by the guest.
    Response(hyper::Response<HyperOutgoingBody>),
    /// The guest ended (or set an error) without a response.
    Failed(GuestEnd),
}

impl HttpEngine {
    /// The engine, its pool and its linker; compiled code kept in `cache`.
    pub fn new(cache: Option<Arc<CompileCache>>) -> Result<Self, SandboxError> {
        let engine_error = |e: wasmtime::Error| SandboxError::Engine(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(pool::MAX_LIVE_INSTANCES)
            .total_stacks(pool::MAX_LIVE_INSTANCES)
            .total_core_instances(pool::TOTAL_CORE_INSTANCES)
            .total_memories(pool::TOTAL_MEMORIES)
            .total_tables(pool::TOTAL_TABLES)
            .max_core_instances_per_component(pool::MAX_PARTS_PER_COMPONENT)
            .max_memories_per_component(pool::MAX_PARTS_PER_COMPONENT)
            .max_tables_per_component(pool::MAX_PARTS_PER_COMPONENT)
            .table_elements(limits::MAX_TABLE_ELEMENTS)
            .max_memory_size(usize::try_from(pool::MAX_MEMORY_BYTES).unwrap_or(usize::MAX));
        let mut config = Config::new();
        config
            .strategy(Strategy::Cranelift)
            .epoch_interruption(true)
            .max_wasm_stack(limits::MAX_WASM_STACK)
            .allocation_strategy(pool);
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;
        Ok(Self {
            _ticker: Arc::new(Ticker::start(engine.clone())?),
            engine,
            linker,
            cache,
            compile_deadline: limits::COMPILE_DEADLINE,
        })
    }

    /// Compile (or find compiled) and link a `wasi:http` component, on a thread of its own,
    /// waiting at most the compile deadline. A core module, or a component that does not
    /// export `wasi:http/incoming-handler`, is refused.
    pub fn prepare(&self, wasm: Vec<u8>) -> Result<HttpGuest, SandboxError> {
        check_size(&wasm)?;
        if WasmKind::detect(&wasm) != Some(WasmKind::Component) {
            return Err(SandboxError::Load(
                "`warrant serve` serves `wasi:http` components; this is not a component".into(),
            ));
        }
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let cache = self.cache.clone();
        let (done, prepared) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("warrant-compile".into())
            .spawn(move || {
                let result = compile(&engine, cache.as_deref(), WasmKind::Component, &wasm)
                    .and_then(|compiled| match compiled {
                        Compiled::Component(component) => link(&linker, &component),
                        Compiled::Module(_) => Err(SandboxError::Load("not a component".into())),
                    });
                // The receiver is gone when the deadline passed: nothing to report to.
                let _ = done.send(result);
            })
            .map_err(|e| SandboxError::Engine(format!("cannot start compiling: {e}")))?;
        match prepared.recv_timeout(self.compile_deadline) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(SandboxError::CompileDeadline(self.compile_deadline))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(SandboxError::Engine(
                "the compiling thread ended without a result".into(),
            )),
        }
    }

    /// Serve one request with a fresh instance of `guest` in a store of its own: `limits`,
    /// `hooks` for its outgoing requests, and nothing else. The guest runs as a task of the
    /// current runtime, stopped at its deadline whatever it is doing (computing, waiting, or
    /// still writing the body); `end` is set to how it ended before its store is dropped.
    pub async fn handle<B>(
        &self,
        guest: &HttpGuest,
        request: hyper::Request<B>,
        limits: RequestLimits,
        hooks: Box<dyn WasiHttpHooks>,
        end: Arc<OnceLock<GuestEnd>>,
    ) -> Answer
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits::MAX_COMPONENT_HANDLES);
        // INVARIANT (no ambient authority): a served request's WASI context is empty — no
        // arguments, environment, directories, socket addresses or name lookups.
        let host = HttpHost {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table,
            limiter: Limiter::with_memory(limits.memory_bytes, pool_parts()),
            hooks,
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        store.set_hostcall_fuel(limits::HOSTCALL_FUEL);
        store.set_max_component_handles(limits::MAX_COMPONENT_HANDLES);
        // Yield to the runtime every tick: the deadline is the task's timeout below.
        store.epoch_deadline_async_yield_and_update(1);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let parts = (|| {
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, request)?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            wasmtime::Result::Ok((req, out))
        })();
        let (req, out) = match parts {
            Ok(parts) => parts,
            Err(e) => {
                let failed = GuestEnd::Trapped(one_line(&e));
                let _ = end.set(failed.clone());
                return Answer::Failed(failed);
            }
        };
        let pre = guest.pre.clone();
        let task_end = end.clone();
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let ended = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(())) => GuestEnd::Returned,
                Ok(Err(e)) => match store.data().limiter.hit.clone() {
                    Some((limit, detail)) => GuestEnd::Limited(limit, detail),
                    None => GuestEnd::Trapped(one_line(&e)),
                },
                Err(_elapsed) => GuestEnd::Limited(
                    Limit::Deadline,
                    format!("{} ms", limits.timeout.as_millis()),
                ),
            };
            // Set before the store (and with it the instance, every resource and the body's
            // sender) is dropped: a body cut short by this reads as cut short.
            let _ = task_end.set(ended.clone());
            drop(store);
            ended
        });
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(Ok(response))) => Answer::Response(response),
            // The guest set an error code: no response.
            Ok(Ok(Err(code))) => Answer::Failed(GuestEnd::Trapped(format!(
                "the guest answered with an error: {code:?}"
            ))),
            // The guest ended without setting a response: how it ended.
            Ok(Err(_dropped)) => Answer::Failed(match task.await {
                Ok(GuestEnd::Returned) => {
                    GuestEnd::Trapped("the guest returned without a response".into())
                }
                Ok(end) => end,
                Err(e) => GuestEnd::Trapped(format!("the guest's task failed: {e}")),
            }),
            Err(_elapsed) => {
                // The task stops at the same deadline; stop it now rather than a tick later.
                let stopped = GuestEnd::Limited(
                    Limit::Deadline,
                    format!("{} ms", limits.timeout.as_millis()),
                );
                let _ = end.set(stopped.clone());
                task.abort();
                Answer::Failed(stopped)
            }
        }
    }
}

fn link(linker: &Linker<HttpHost>, component: &Component) -> Result<HttpGuest, SandboxError> {
    let pre = linker
        .instantiate_pre(component)
        .and_then(ProxyPre::new)
        .map_err(|e| load_error(&e))?;
    Ok(HttpGuest { pre })
}

/// Instances, tables and memories one request's component may have.
fn pool_parts() -> usize {
    usize::try_from(pool::MAX_PARTS_PER_COMPONENT).unwrap_or(usize::MAX)
}

fn one_line(e: &wasmtime::Error) -> String {
    registry_client::text::one_line(&format!("{e:#}")).into_owned()
}

/// The guest's response body as the client gets it: cut off after `cap` bytes (the body then
/// ends in an error, which closes the connection: the head was sent already), and ended in an
/// error, not cleanly, when the guest was stopped (a deadline, a trap) before it finished it,
/// so that a truncated response never reads as a whole one. `written` counts the bytes sent
/// and `capped` is set when the cap cut it; `held` is dropped with the body (when the response
/// is done, or the connection gone).
pub fn checked_body(
    inner: HyperOutgoingBody,
    cap: u64,
    end: Arc<OnceLock<GuestEnd>>,
    capped: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    held: impl Send + 'static,
) -> HyperOutgoingBody {
    CheckedBody {
        inner,
        cap,
        sent: 0,
        end,
        capped,
        written,
        _held: Box::new(held),
    }
    .boxed_unsync()
}

struct CheckedBody {
    inner: HyperOutgoingBody,
    cap: u64,
    sent: u64,
    end: Arc<OnceLock<GuestEnd>>,
    capped: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    _held: Box<dyn Send>,
}

impl http_body::Body for CheckedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let frame = match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            // The guest's body sender is gone: finished, or dropped with a stopped guest
            // (whose end is set before its store is dropped).
            Poll::Ready(None) => {
                return Poll::Ready(match self.end.get() {
                    Some(GuestEnd::Limited(..) | GuestEnd::Trapped(_)) => {
                        Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete))
                    }
                    _ => None,
                });
            }
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
            self.sent = self.sent.saturating_add(len);
            self.written.store(self.sent, Ordering::Relaxed);
            if self.sent > self.cap {
                self.capped.store(true, Ordering::Relaxed);
                let cap = self.cap;
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseBodySize(
                    Some(cap),
                ))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // The end is decided in `poll_frame`, which may turn it into an error.
        false
    }
}
