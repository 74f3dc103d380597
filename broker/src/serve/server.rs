//! The request path: accept (a connection cap), read the head (a deadline), route (whole
//! segments, longest first), admit (the tenant's concurrency, the instance pool, a journal
//! slot: refused at once when full, never queued), cap the body, run a fresh instance, answer,
//! and record the outcome.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::config::{ServeSettings, limits as serve_limits, route_matches};
use super::journal::{Entry, Journal, Slot};
use super::metrics::{Metrics, TenantMetrics};
use super::outbound::Counts;
use super::tenants::{Serving, TenantState};
use crate::sandbox::Limit;
use crate::sandbox::http::{Answer, GuestEnd, HttpEngine, RequestLimits, checked_body, pool};

/// Longest path kept in a request record.
const MAX_RECORDED_PATH: usize = 1024;

/// The routes: each tenant's state by its route, swapped whole on reload.
#[derive(Default)]
pub struct Routes {
    by_route: HashMap<String, Arc<TenantState>>,
}

impl Routes {
    /// Routes for `tenants`.
    pub fn new(tenants: Vec<Arc<TenantState>>) -> Self {
        Self {
            by_route: tenants
                .into_iter()
                .map(|t| (t.spec().route.clone(), t))
                .collect(),
        }
    }

    /// The tenant whose route is the longest whole-segment prefix of `path`.
    pub fn find(&self, path: &str) -> Option<&Arc<TenantState>> {
        let mut candidate = path.trim_end_matches('/');
        loop {
            let key = if candidate.is_empty() { "/" } else { candidate };
            if let Some(t) = self.by_route.get(key)
                && route_matches(key, path)
            {
                return Some(t);
            }
            if candidate.is_empty() {
                return None;
            }
            candidate = candidate.rsplit_once('/').map_or("", |(head, _)| head);
        }
    }

    /// Every tenant, by name.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<TenantState>> {
        self.by_route.values()
    }
}

/// What every request shares.
pub struct Shared {
    /// The routes, swapped whole on reload.
    pub routes: RwLock<Arc<Routes>>,
    /// The serving engine.
    pub engine: Arc<HttpEngine>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The request journal.
    pub journal: Journal,
    /// The instance pool's slots.
    pub instances: Arc<Semaphore>,
    /// Largest request body.
    pub max_request_bytes: u64,
    /// Largest response body.
    pub max_response_bytes: u64,
    /// Requests in flight (for the drain at shutdown).
    pub in_flight: Arc<tokio::sync::watch::Sender<usize>>,
    /// Loaded and not shutting down.
    pub ready: AtomicBool,
}

impl Shared {
    /// Everything a server needs, with no tenant yet.
    pub fn new(
        settings: &ServeSettings,
        engine: Arc<HttpEngine>,
        metrics: Arc<Metrics>,
        journal: Journal,
    ) -> Self {
        Self {
            routes: RwLock::new(Arc::new(Routes::default())),
            engine,
            metrics,
            journal,
            instances: Arc::new(Semaphore::new(
                usize::try_from(pool::MAX_LIVE_INSTANCES).unwrap_or(usize::MAX),
            )),
            max_request_bytes: settings.max_request_bytes,
            max_response_bytes: settings.max_response_bytes,
            in_flight: Arc::new(tokio::sync::watch::Sender::new(0)),
            ready: AtomicBool::new(false),
        }
    }

    /// The routes now.
    pub fn routes(&self) -> Arc<Routes> {
        match self.routes.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replace the routes.
    pub fn set_routes(&self, routes: Routes) {
        let routes = Arc::new(routes);
        match self.routes.write() {
            Ok(mut r) => *r = routes,
            Err(poisoned) => *poisoned.into_inner() = routes,
        }
    }
}

/// Accept connections on `listener` until `stop` is set: each served on a task of its own,
/// at most `max_connections` at once (past it, closed at once).
pub async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    max_connections: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(
        usize::try_from(max_connections).unwrap_or(usize::MAX),
    ));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of descriptors, or a connection reset before it was accepted: go on.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            shared
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
            let service = hyper::service::service_fn({
                let shared = shared.clone();
                move |request| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, request).await) }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(serve_limits::HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// A response with a short plain-text body of Warrant's own (naming nothing internal).
fn plain(status: u16, text: &'static str) -> hyper::Response<HyperOutgoingBody> {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What one request holds while it runs, and records when it is dropped (when its response
/// body is done, or the connection gone).
struct InFlight {
    serving: Option<Arc<Serving>>,
    tenant: Arc<str>,
    metrics: Arc<TenantMetrics>,
    method: String,
    path: String,
    started: Instant,
    status: u16,
    end: Arc<OnceLock<GuestEnd>>,
    counts: Arc<Counts>,
    capped: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    request_too_large: Arc<AtomicBool>,
    slot: Option<Slot>,
    live: Option<(OwnedSemaphorePermit, Arc<Metrics>)>,
    _concurrency: Option<OwnedSemaphorePermit>,
    in_flight: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let (limit, trap) = match self.end.get() {
            Some(GuestEnd::Limited(limit, detail)) => {
                (Some(format!("{}: {detail}", limit_name(*limit))), None)
            }
            Some(GuestEnd::Trapped(t)) => (None, Some(t.clone())),
            _ if self.capped.load(Ordering::Relaxed) => Some(format!(
                "response-body: over {} bytes",
                self.written.load(Ordering::Relaxed).saturating_sub(1)
            ))
            .map(|l| (Some(l), None))
            .unwrap_or((None, None)),
            _ if self.request_too_large.load(Ordering::Relaxed) => {
                (Some("request-body".to_owned()), None)
            }
            _ => (None, None),
        };
        if let Some(l) = &limit {
            self.metrics.limit(match l.split(':').next().unwrap_or("") {
                "deadline" => "deadline",
                "memory" => "memory",
                "table" => "table",
                "response-body" => "response-body",
                "request-body" => "request-body",
                _ => "other",
            });
        }
        self.metrics.observe(self.status, elapsed);
        if let Some(slot) = self.slot.take() {
            slot.write(Entry {
                tenant: self.tenant.clone(),
                digest: self.serving.as_ref().map(|s| s.prepared.digest().clone()),
                method: std::mem::take(&mut self.method),
                path: std::mem::take(&mut self.path),
                status: self.status,
                elapsed,
                limit,
                trap,
                response_bytes: self.written.load(Ordering::Relaxed),
                outbound_allowed: self.counts.allowed.load(Ordering::Relaxed),
                outbound_denied: self.counts.denied.load(Ordering::Relaxed),
            });
        }
        if let Some((permit, metrics)) = self.live.take() {
            metrics.live_instances.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        }
        self.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn limit_name(limit: Limit) -> &'static str {
    match limit {
        Limit::Deadline => "deadline",
        Limit::Memory => "memory",
        Limit::Table => "table",
        _ => "other",
    }
}

/// The path without its query, capped, for the record.
fn recorded_path(uri: &hyper::Uri) -> String {
    let path = uri.path();
    let mut end = path.len().min(MAX_RECORDED_PATH);
    while !path.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    path.get(..end).unwrap_or("").to_owned()
}

/// Serve one request.
pub async fn handle(
    shared: &Arc<Shared>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let started = Instant::now();
    let routes = shared.routes();
    let Some(state) = routes.find(request.uri().path()) else {
        return plain(404, "no such route\n");
    };
    shared.in_flight.send_modify(|n| *n = n.saturating_add(1));
    let (serving, tenant, metrics) = match &**state {
        TenantState::Serving(s) => (Some(s.clone()), s.name.clone(), s.metrics.clone()),
        TenantState::Unserved { spec, .. } => (
            None,
            Arc::from(spec.name.as_str()),
            shared.metrics.tenant(&spec.name),
        ),
    };
    let mut flight = InFlight {
        serving: serving.clone(),
        tenant,
        metrics,
        method: request.method().as_str().to_owned(),
        path: recorded_path(request.uri()),
        started,
        status: 503,
        end: Arc::new(OnceLock::new()),
        counts: Arc::new(Counts::default()),
        capped: Arc::new(AtomicBool::new(false)),
        written: Arc::new(AtomicU64::new(0)),
        request_too_large: Arc::new(AtomicBool::new(false)),
        slot: shared.journal.reserve(),
        live: None,
        _concurrency: None,
        in_flight: shared.in_flight.clone(),
    };
    // Nothing runs that cannot be recorded.
    if flight.slot.is_none() {
        return plain(503, "service unavailable\n");
    }
    // INVARIANT (served only when granted): a route runs only the `PreparedHttp` the stages
    // made for its tenant; a tenant without one answers 503 and never a shorter route's.
    let Some(serving) = serving else {
        // A tenant that failed verification or decision: 503, never a shorter route.
        return plain(503, "service unavailable\n");
    };
    let Ok(concurrency) = serving.concurrency.clone().try_acquire_owned() else {
        serving.metrics.limit("concurrency");
        return plain(503, "service unavailable: too many requests in flight\n");
    };
    flight._concurrency = Some(concurrency);
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.max_request_bytes) {
        flight.status = 413;
        flight.request_too_large.store(true, Ordering::Relaxed);
        return plain(413, "request body too large\n");
    }
    let Ok(instance) = shared.instances.clone().try_acquire_owned() else {
        serving.metrics.limit("instances");
        return plain(503, "service unavailable\n");
    };
    shared
        .metrics
        .live_instances
        .fetch_add(1, Ordering::Relaxed);
    flight.live = Some((instance, shared.metrics.clone()));
    let request = request.map(|body| CappedRequest {
        inner: body,
        left: shared.max_request_bytes,
        too_large: flight.request_too_large.clone(),
    });
    let limits = RequestLimits {
        memory_bytes: serving.spec.memory_bytes,
        timeout: serving.spec.timeout,
    };
    let hooks = serving.gate.hooks(flight.counts.clone());
    let answer = shared
        .engine
        .handle(
            serving.prepared.guest(),
            request,
            limits,
            hooks,
            flight.end.clone(),
        )
        .await;
    match answer {
        Answer::Response(response) => {
            flight.status = response.status().as_u16();
            let (parts, body) = response.into_parts();
            let (end, capped, written) = (
                flight.end.clone(),
                flight.capped.clone(),
                flight.written.clone(),
            );
            // The body holds the request's `InFlight`: it is recorded when the body is done.
            let body = checked_body(
                body,
                shared.max_response_bytes,
                end,
                capped,
                written,
                flight,
            );
            hyper::Response::from_parts(parts, body)
        }
        Answer::Failed(end) => {
            let (status, text) = if flight.request_too_large.load(Ordering::Relaxed) {
                (413, "request body too large\n")
            } else {
                match end {
                    GuestEnd::Limited(Limit::Deadline, _) => (504, "gateway timeout\n"),
                    _ => (500, "internal server error\n"),
                }
            };
            flight.status = status;
            plain(status, text)
        }
    }
}

/// The request body a guest reads: at most the cap, then an error (and 413 if the guest
/// has not answered yet).
struct CappedRequest {
    inner: Incoming,
    left: u64,
    too_large: Arc<AtomicBool>,
}

impl http_body::Body for CappedRequest {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    if len > self.left {
                        self.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(None),
                        )));
                    }
                    self.left -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz`, and `/tenants` (each tenant's route,
/// and the digest it serves or why it is not served).
pub async fn admin_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(admin(&shared, request.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(serve_limits::HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn admin(shared: &Shared, path: &str) -> hyper::Response<HyperOutgoingBody> {
    match path {
        "/healthz" => plain(200, "ok\n"),
        "/readyz" if shared.ready.load(Ordering::Relaxed) => plain(200, "ready\n"),
        "/readyz" => plain(503, "not ready\n"),
        "/tenants" => {
            let routes = shared.routes();
            let mut lines: Vec<String> = routes
                .tenants()
                .map(|t| match &**t {
                    TenantState::Serving(s) => format!(
                        "{} {} served {}\n",
                        s.spec.name,
                        s.spec.route,
                        s.prepared.digest()
                    ),
                    TenantState::Unserved { spec, reason } => {
                        format!("{} {} unserved {reason}\n", spec.name, spec.route)
                    }
                })
                .collect();
            lines.sort();
            let mut response = hyper::Response::new(
                Full::new(Bytes::from(lines.concat()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        "/metrics" => {
            let routes = shared.routes();
            let mut served: Vec<(String, bool)> = routes
                .tenants()
                .map(|t| {
                    (
                        t.spec().name.clone(),
                        matches!(**t, TenantState::Serving(_)),
                    )
                })
                .collect();
            served.sort();
            let text = shared.metrics.render(&served);
            let mut response = hyper::Response::new(
                Full::new(Bytes::from(text))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        _ => plain(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::config::TenantSpec;

    fn unserved(name: &str, route: &str) -> Arc<TenantState> {
        Arc::new(TenantState::Unserved {
            spec: Box::new(TenantSpec {
                name: name.into(),
                route: route.into(),
                reference: String::new(),
                keys: Vec::new(),
                identities: Vec::new(),
                policies: None,
                outbound: Vec::new(),
                memory_bytes: 0,
                timeout: Duration::from_secs(1),
                max_concurrency: 1,
                drop_denied: false,
            }),
            reason: String::new(),
        })
    }

    #[test]
    fn the_longest_whole_segment_route_wins() {
        let routes = Routes::new(vec![
            unserved("root", "/"),
            unserved("acme", "/acme"),
            unserved("fn", "/acme/fn"),
        ]);
        let name = |p: &str| routes.find(p).map(|t| t.spec().name.clone());
        assert_eq!(name("/acme").as_deref(), Some("acme"));
        assert_eq!(name("/acme/").as_deref(), Some("acme"));
        assert_eq!(name("/acme/x").as_deref(), Some("acme"));
        assert_eq!(name("/acme/fn").as_deref(), Some("fn"));
        assert_eq!(name("/acme/fn/deep/er").as_deref(), Some("fn"));
        assert_eq!(name("/acme/fnx").as_deref(), Some("acme"));
        assert_eq!(name("/acme-x").as_deref(), Some("root"));
        assert_eq!(name("/").as_deref(), Some("root"));
        let no_root = Routes::new(vec![unserved("acme", "/acme")]);
        assert!(no_root.find("/acme-x").is_none());
        assert!(no_root.find("/").is_none());
    }
}
