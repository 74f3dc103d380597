//! `warrant serve`: a resident multi-tenant host for `wasi:http` components.
//!
//! Each tenant (`[[serve.tenant]]` in `warrant.toml`) is a route, a signed artifact, its own
//! signers and policies, outbound destinations and limits. At start and on every reload
//! (SIGHUP) each tenant is resolved, verified against its own trust only, decided (`instantiate`
//! on `Warrant::Runtime::"<name>"` in `Warrant::Runtime::"serve"`, and `http.outgoing` per
//! outbound destination), compiled, and its `load` record committed — all before its route
//! takes a request. A tenant that fails is not served (its route answers 503, never a shorter
//! route's tenant) and the reason is logged and audited. Each request gets a fresh instance
//! of the prepared component, with the tenant's limits, and leaves a `request` record.
//!
//! On SIGHUP a tenant whose artifact changed is switched only if the new one verifies and is
//! granted; otherwise the old one keeps serving if *it* still verifies and is granted under
//! the new trust and policies — a changed trust or policy applies to what is running, so a
//! revoked signer or a new `forbid` stops the tenant at once. In-flight requests finish on the
//! version they started with. On SIGTERM or SIGINT the server stops accepting, drains in-flight
//! requests up to the grace period, signs a final checkpoint and exits 0.

pub mod config;
mod journal;
mod metrics;
mod outbound;
mod server;
mod tenants;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

pub use config::{ServeSettings, TenantSpec};
pub use tenants::{
    Loader, Serving, TenantState, base_dir as tenants_base, reason as failure_reason,
};

use crate::records;
use crate::stages::Error;
use server::{Routes, Shared};

/// Tenants loaded at once (each resolving, verifying and compiling): enough to overlap the
/// registry's latency with compilation, few enough that a thousand tenants do not compile a
/// thousand components in parallel.
pub const LOAD_PARALLELISM: usize = 4;

/// One tenant's load: served, or why not.
pub struct Loaded {
    /// The tenant.
    pub spec: TenantSpec,
    /// Served, or the failure.
    pub result: Result<Arc<Serving>, Error>,
    /// A version kept serving although the configured one failed (reload only).
    pub kept: Option<Arc<Serving>>,
}

/// Load every tenant of `specs`, in order, [`LOAD_PARALLELISM`] at a time. With `previous`
/// (a reload), a tenant whose new load fails keeps its previous version if that version
/// still verifies and is granted under the tenant's new trust and policies.
pub async fn load_all(
    loader: &Loader,
    specs: &[TenantSpec],
    previous: Option<&Routes>,
) -> Vec<Loaded> {
    let previous_digest = |name: &str| {
        previous.and_then(|routes| {
            routes.tenants().find_map(|t| match &**t {
                TenantState::Serving(s) if s.spec.name == name => Some(s.prepared.digest().clone()),
                _ => None,
            })
        })
    };
    futures_util::stream::iter(specs.iter().cloned())
        .map(|spec| {
            let old = previous_digest(&spec.name);
            async move {
                let result = loader.load(&spec, None).await.map(Arc::new);
                let kept = match (&result, old) {
                    (Err(_), Some(digest)) => {
                        loader.load(&spec, Some(&digest)).await.ok().map(Arc::new)
                    }
                    _ => None,
                };
                Loaded { spec, result, kept }
            }
        })
        .buffered(LOAD_PARALLELISM)
        .collect()
        .await
}

/// The routes for `loaded`, each failure logged and audited, every record of the load
/// committed (one `fdatasync`) before the routes are returned: none of them may take traffic
/// before then.
fn routes_of(loader: &Loader, loaded: &[Loaded]) -> Result<Routes, String> {
    let mut states = Vec::with_capacity(loaded.len());
    for l in loaded {
        let state = match (&l.result, &l.kept) {
            (Ok(serving), _) => TenantState::Serving(serving.clone()),
            (Err(e), kept) => {
                let reason = tenants::reason(e);
                let kept_digest = kept.as_ref().map(|k| k.prepared.digest().clone());
                loader
                    .broker
                    .record_later(&records::Unserved {
                        tenant: &l.spec.name,
                        reference: &l.spec.reference,
                        kept: kept_digest.as_ref(),
                        reason: &reason,
                    })
                    .map_err(|e| format!("the audit log refused a record: {e}"))?;
                match kept {
                    Some(k) => {
                        say(&format!(
                            "tenant `{}`: the new version is refused, {} keeps serving: {reason}",
                            l.spec.name,
                            k.prepared.digest()
                        ));
                        TenantState::Serving(k.clone())
                    }
                    None => {
                        say(&format!("tenant `{}` is not served: {reason}", l.spec.name));
                        TenantState::Unserved {
                            spec: Box::new(l.spec.clone()),
                            reason,
                        }
                    }
                }
            }
        };
        states.push(Arc::new(state));
    }
    // INVARIANT (audit before effect): every tenant's `load` (and every refusal) is durable
    // before its route can take a request.
    loader
        .broker
        .commit()
        .map_err(|e| format!("the audit log refused a commit: {e}"))?;
    Ok(Routes::new(states))
}

/// How a server finds its configuration again on reload.
pub struct Reloading {
    /// The configuration file (none: nothing to re-read; a reload re-resolves and
    /// re-verifies the same tenants).
    pub file: Option<PathBuf>,
    /// `--policies`, which overrides the file's.
    pub global_policies: Option<PathBuf>,
    /// `--listen`/`--admin-listen` (not changed by a reload: the listeners stay bound).
    pub listen: Option<String>,
    /// See `listen`.
    pub admin_listen: Option<String>,
}

/// Serve until SIGTERM or SIGINT: bind, load every tenant, take traffic, reload on SIGHUP.
/// `announce` receives the bound addresses (the main one, the admin one) once listening.
pub async fn serve(
    loader: Loader,
    settings: ServeSettings,
    reloading: Reloading,
    announce: impl Fn(&str),
) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;

    let journal = journal::Journal::start(loader.broker.clone(), settings.checkpoint_interval)
        .map_err(|e| format!("cannot start the request journal: {e}"))?;
    let shared = Arc::new(Shared::new(
        &settings,
        loader.engine.clone(),
        loader.metrics.clone(),
        journal,
    ));
    // Every tenant answers 503 until it is loaded.
    shared.set_routes(Routes::new(
        settings
            .tenants
            .iter()
            .map(|spec| {
                Arc::new(TenantState::Unserved {
                    spec: Box::new(spec.clone()),
                    reason: "loading".into(),
                })
            })
            .collect(),
    ));
    raise_open_files(settings.max_connections);
    let listener = bind(settings.listen).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    announce(&format!("serving on http://{local}"));
    let accepting = tokio::spawn(server::accept_loop(
        shared.clone(),
        listener,
        settings.max_connections,
        stopped.clone(),
    ));
    if let Some(admin) = settings.admin_listen {
        let listener = bind(admin).await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        announce(&format!("admin on http://{local}"));
        tokio::spawn(server::admin_loop(
            shared.clone(),
            listener,
            stopped.clone(),
        ));
    }

    let started = Instant::now();
    let loaded = load_all(&loader, &settings.tenants, None).await;
    let served = loaded.iter().filter(|l| l.result.is_ok()).count();
    shared.set_routes(routes_of(&loader, &loaded)?);
    shared.ready.store(true, Ordering::Relaxed);
    announce(&format!(
        "ready: {served} of {} tenants served, loaded in {} ms",
        loaded.len(),
        started.elapsed().as_millis()
    ));

    loop {
        tokio::select! {
            _ = hangup.recv() => {
                let started = Instant::now();
                match reload(&loader, &shared, &reloading).await {
                    Ok((served, total)) => announce(&format!(
                        "reloaded: {served} of {total} tenants served, in {} ms",
                        started.elapsed().as_millis()
                    )),
                    Err(e) => say(&format!("reload refused, nothing changed: {e}")),
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    // Shutdown: stop accepting, drain, checkpoint.
    shared.ready.store(false, Ordering::Relaxed);
    let _ = stop.send(true);
    let _ = accepting.await;
    let mut in_flight = shared.in_flight.subscribe();
    let drained = tokio::time::timeout(settings.shutdown_grace, in_flight.wait_for(|n| *n == 0))
        .await
        .is_ok();
    if !drained {
        say(&format!(
            "{} requests still in flight after the {} ms grace; stopping them",
            *shared.in_flight.borrow(),
            settings.shutdown_grace.as_millis()
        ));
    }
    // Connections may still hold the shared state: the journal is checkpointed through it.
    shared.journal.checkpoint()?;
    announce("stopped");
    Ok(())
}

/// Raise the soft open-file limit to the hard one: each connection is a descriptor, and the
/// usual soft limit (1,024) is far below the connection cap. Said when even the hard limit is.
fn raise_open_files(max_connections: u32) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let now = getrlimit(Resource::Nofile).current;
    // Descriptors besides connections: the listeners, the log, the store, the engine's.
    const RESERVED: u64 = 256;
    if let Some(n) = now
        && n < u64::from(max_connections).saturating_add(RESERVED)
    {
        say(&format!(
            "the open-file limit ({n}) is below max_connections ({max_connections}) and what \
             the server needs besides; connections past it wait in the listen queue"
        ));
    }
}

/// A line on standard error, escaped for the terminal (reasons carry registry text).
fn say(line: &str) {
    eprintln!("warrant: {}", registry_client::text::for_terminal(line));
}

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// Re-read the configuration and reload every tenant; returns (served, configured).
async fn reload(
    loader: &Loader,
    shared: &Shared,
    reloading: &Reloading,
) -> Result<(usize, usize), String> {
    let settings = match &reloading.file {
        Some(file) => {
            let config = crate::config::Config::load(file).map_err(|e| e.to_string())?;
            let policies = reloading
                .global_policies
                .clone()
                .or(config.policies.clone());
            config::settings(
                &config.serve,
                &tenants::base_dir(Some(file)),
                policies.as_deref(),
                reloading.listen.as_deref(),
                reloading.admin_listen.as_deref(),
            )?
        }
        None => {
            let routes = shared.routes();
            let mut specs: Vec<TenantSpec> = routes.tenants().map(|t| t.spec().clone()).collect();
            specs.sort_by(|a, b| a.name.cmp(&b.name));
            ServeSettings {
                tenants: specs,
                ..placeholder_settings()
            }
        }
    };
    let previous = shared.routes();
    // Tenants added by this reload first, switched in beside the running ones as soon as they
    // are loaded (an added tenant is not kept waiting for every other tenant's re-check); then
    // every tenant, the routes replaced as a whole.
    let is_new = |spec: &TenantSpec| !previous.tenants().any(|t| t.spec().name == spec.name);
    let added: Vec<TenantSpec> = settings
        .tenants
        .iter()
        .filter(|s| is_new(s))
        .cloned()
        .collect();
    if !added.is_empty() && added.len() < settings.tenants.len() {
        let loaded = load_all(loader, &added, None).await;
        let mut states: Vec<Arc<TenantState>> = previous
            .tenants()
            .filter(|t| {
                settings
                    .tenants
                    .iter()
                    .any(|s| s.name == t.spec().name && s.route == t.spec().route)
            })
            .cloned()
            .collect();
        states.extend(routes_of(loader, &loaded)?.tenants().cloned());
        shared.set_routes(Routes::new(states));
    }
    let again: Vec<TenantSpec> = settings
        .tenants
        .iter()
        .filter(|s| added.len() == settings.tenants.len() || !is_new(s))
        .cloned()
        .collect();
    let reloaded = load_all(loader, &again, Some(&previous)).await;
    let current = shared.routes();
    let mut states: Vec<Arc<TenantState>> =
        routes_of(loader, &reloaded)?.tenants().cloned().collect();
    // The tenants added in the first phase, as they were switched in.
    states.extend(
        current
            .tenants()
            .filter(|t| {
                added.len() < settings.tenants.len()
                    && added.iter().any(|a| a.name == t.spec().name)
            })
            .cloned(),
    );
    let served = states
        .iter()
        .filter(|t| matches!(***t, TenantState::Serving(_)))
        .count();
    let total = states.len();
    shared.set_routes(Routes::new(states));
    Ok((served, total))
}

fn placeholder_settings() -> ServeSettings {
    ServeSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_listen: None,
        shutdown_grace: Duration::ZERO,
        max_connections: 1,
        max_request_bytes: 0,
        max_response_bytes: 0,
        checkpoint_interval: Duration::from_secs(1),
        outbound_roots: None,
        tenants: Vec::new(),
    }
}

/// The loader's parts: the serving engine (sharing the broker's compile cache), the outbound
/// TLS roots, the metrics.
pub fn loader(
    broker: crate::Broker,
    compile_cache: Option<Arc<crate::compiled::CompileCache>>,
    trusted_root: crate::verify::TrustedRoot,
    extra_roots: Option<&std::path::Path>,
) -> Result<Loader, String> {
    let engine = crate::sandbox::http::HttpEngine::new(compile_cache).map_err(|e| e.to_string())?;
    Ok(Loader {
        broker,
        engine: Arc::new(engine),
        tls: outbound::tls_config(extra_roots)?,
        trusted_root: Arc::new(trusted_root),
        metrics: Arc::new(metrics::Metrics::default()),
    })
}
