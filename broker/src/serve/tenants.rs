//! Loading a tenant: its own trust and policies, then every stage of the broker — resolved,
//! verified, fetched, decided, compiled and its `load` record committed — before it takes a
//! request. Nothing of this runs on the request path.

use std::path::Path;
use std::sync::Arc;

use registry_client::{Digest, Reference, Selector};
use tokio::sync::Semaphore;

use super::config::TenantSpec;
use super::metrics::TenantMetrics;
use super::outbound::Gate;
use crate::policy::Asks;
use crate::sandbox::http::HttpEngine;
use crate::stages::{Broker, Error, PreparedHttp};

/// A tenant ready to serve: its prepared component, its gate and its concurrency.
pub struct Serving {
    /// What was configured.
    pub spec: TenantSpec,
    /// The name, shared by every request's record.
    pub name: Arc<str>,
    /// The verified, granted, compiled component.
    pub prepared: PreparedHttp,
    /// Its outgoing requests' gate.
    pub gate: Arc<Gate>,
    /// Its requests in flight.
    pub concurrency: Arc<Semaphore>,
    /// Its counters.
    pub metrics: Arc<TenantMetrics>,
}

/// A tenant's state on its route.
pub enum TenantState {
    /// Served.
    Serving(Arc<Serving>),
    /// Not served (503): why, for the log and `--check`.
    Unserved {
        /// What was configured.
        spec: Box<TenantSpec>,
        /// Why not.
        reason: String,
    },
}

impl TenantState {
    /// The tenant's configuration.
    pub fn spec(&self) -> &TenantSpec {
        match self {
            Self::Serving(s) => &s.spec,
            Self::Unserved { spec, .. } => spec,
        }
    }
}

/// What loading needs besides the tenant: the broker the tenants' scopes are made from, the
/// engine, the outbound TLS configuration, the trusted root for keyless signers.
pub struct Loader {
    /// The broker (its trust and policies unused: each tenant has its own scope).
    pub broker: Broker,
    /// The serving engine.
    pub engine: Arc<HttpEngine>,
    /// Outbound TLS.
    pub tls: Arc<rustls::ClientConfig>,
    /// The Sigstore trusted root for keyless tenants, parsed once.
    pub trusted_root: Arc<crate::verify::TrustedRoot>,
    /// The metrics, per tenant.
    pub metrics: Arc<super::metrics::Metrics>,
}

impl Loader {
    /// Load `spec`, the artifact pinned to `digest` when given (a version served before).
    pub async fn load(&self, spec: &TenantSpec, digest: Option<&Digest>) -> Result<Serving, Error> {
        let trust = self.trust(spec)?;
        let scoped = self.broker.scoped(trust, spec.policies.as_deref())?;
        let mut reference: Reference = spec.reference.parse()?;
        if let Some(digest) = digest {
            reference = pinned(&reference, digest);
        }
        let resolution = scoped.resolve(&reference).await?;
        let verified = scoped.verify(resolution).await?;
        let artifact = scoped.fetch(verified).await?;
        if artifact.kind() != registry_client::WasmKind::Component {
            return Err(Error::Sandbox(crate::sandbox::SandboxError::Load(
                "`warrant serve` serves `wasi:http` components; this artifact is a core module"
                    .into(),
            )));
        }
        let asks = Asks {
            memory_bytes: spec.memory_bytes,
            timeout_ms: u64::try_from(spec.timeout.as_millis()).unwrap_or(u64::MAX),
            http: spec.outbound.clone(),
            runtime: spec.runtime(),
            ..Asks::default()
        };
        let granted = scoped.decide(artifact, &asks, spec.drop_denied)?;
        let engine = self.engine.clone();
        let (name, route) = (spec.name.clone(), spec.route.clone());
        // Compiling is CPU work on a thread of its own; the runtime's workers go on serving.
        let prepared = tokio::task::spawn_blocking(move || {
            scoped.prepare_http(granted, &engine, &name, &route)
        })
        .await
        .map_err(|e| {
            Error::Sandbox(crate::sandbox::SandboxError::Engine(format!(
                "preparing the tenant failed: {e}"
            )))
        })??;
        let metrics = self.metrics.tenant(&spec.name);
        let gate = Arc::new(Gate::new(
            &spec.name,
            prepared.grant().http().to_vec(),
            self.tls.clone(),
            metrics.clone(),
        ));
        Ok(Serving {
            spec: spec.clone(),
            name: Arc::from(spec.name.as_str()),
            concurrency: Arc::new(Semaphore::new(
                usize::try_from(spec.max_concurrency).unwrap_or(usize::MAX),
            )),
            prepared,
            gate,
            metrics,
        })
    }

    /// The tenant's own trust: its keys and keyless identities, nothing else.
    fn trust(&self, spec: &TenantSpec) -> Result<crate::verify::Trust, Error> {
        let keys = spec
            .keys
            .iter()
            .map(|path| crate::keys::read_public_key(path))
            .collect::<Result<Vec<_>, _>>()?;
        crate::verify::Trust::new(keys, spec.identities.clone(), &self.trusted_root)
            .map_err(|e| Error::Verification(crate::pipeline::PipelineError::from(e)))
    }
}

/// `reference` pinned to `digest` (same repository or layout).
pub fn pinned(reference: &Reference, digest: &Digest) -> Reference {
    let selector = Selector::Digest(digest.clone());
    match reference {
        Reference::Registry(r) => Reference::Registry(r.with_selector(selector)),
        Reference::Layout(l) => Reference::Layout(l.with_selector(selector)),
    }
}

/// A tenant's failure as one line for the log, the audit log and `--check` (the message may
/// name what the registry or the artifact supplied: escaped).
pub fn reason(e: &Error) -> String {
    registry_client::text::one_line(&e.to_string()).into_owned()
}

/// The base directory relative tenant paths are resolved against.
pub fn base_dir(config_file: Option<&Path>) -> std::path::PathBuf {
    config_file
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}
