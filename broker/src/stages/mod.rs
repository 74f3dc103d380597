//! The broker: the one path from a reference to a running guest.
//!
//! ```text
//! Broker::resolve ─▶ Resolution ─▶ verify ─▶ Verified ─▶ fetch ─▶ Artifact
//!        ─▶ decide ─▶ Granted ─▶ prepare ─▶ Prepared ─▶ run (any number of times)
//! ```
//!
//! Each stage takes the previous stage's output by value, and each output has private fields
//! and no public constructor: outside this module, the only way to a [`Prepared`] guest is
//! through every stage before it, in order. So "verified before decided before run" and "the
//! bytes run are the digest verified" are facts the compiler checks, not the caller's duty.
//! The audit records (`pull`, `verify`, `decide`, `instantiate`, `outcome`) are written here,
//! a refusal and the grant committed before they take effect, so no client can forget them.
//!
//! See the crate's documentation for the flow, and for what cannot be written outside it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry_client::{
    ClientOptions, Digest, Fetched, NoProgress, Progress, Reference, RegistryClient, Resolved,
    Store, WasmKind,
};

use crate::attest::Attestations;
use crate::audit::{Audit, AuditFailure};
use crate::cache::{PolicyMemo, VerdictCache};
use crate::compiled::CompileCache;
use crate::cosign::Verdict;
use crate::pipeline::PipelineError;
use crate::policy::{Asks, Decision, Denial, Grant, PolicyError};
use crate::records::{self, Record};
use crate::sandbox::{Finished, Handles, Output, RunLimits, Sandbox, SandboxError, Stop};
use crate::state::{State, StateError};
use crate::verify::Trust;

mod engines;
mod policies;

use engines::Engines;
use policies::RunPolicies;

/// What a [`Broker`] is opened with. [`Config::new`] gives the defaults under a data directory;
/// every field may then be changed.
#[non_exhaustive]
pub struct Config {
    /// The private state (verdict cache, policy memo, compile cache, keys): created 0700 and
    /// checked to be the user's alone.
    pub data_dir: PathBuf,
    /// The content store (default: `store/` in the data directory).
    pub store: Option<PathBuf>,
    /// The policy directory; none denies everything.
    pub policies: Option<PathBuf>,
    /// The audit log's directory (default: `audit/` in the data directory).
    pub audit_log: Option<PathBuf>,
    /// The audit log's signing key (default: `audit.key` in the data directory, created on
    /// first use).
    pub audit_key: Option<PathBuf>,
    /// Keep every Nth record's full body in the log (see [`Audit::set_keep_every`]).
    pub audit_keep_every: Option<u64>,
    /// Who may sign, and what roots certify keyless signers.
    pub trust: Trust,
    /// How the registry is reached.
    pub registry: ClientOptions,
    /// How long a verified verdict is reused; zero verifies every time.
    pub verdict_ttl: Duration,
    /// Cap on a guest's captured stdout and on its stderr, each.
    pub output_bytes: u64,
    /// Whether the engine built ahead (while the first artifact is resolved and verified)
    /// meters fuel: set it when the runs will ask for fuel.
    pub metered: bool,
    /// Reports the progress of downloads.
    pub progress: Box<dyn Progress + Send>,
    /// Open the audit log only while writing a record, for several processes that share one
    /// log (a node's containerd shims); every record is then committed as it is written.
    pub audit_shared: bool,
}

impl Config {
    /// The defaults: state, store and audit log under `data_dir`, no policies (everything
    /// denied), verdicts kept an hour.
    pub fn new(data_dir: impl Into<PathBuf>, trust: Trust) -> Self {
        Self {
            data_dir: data_dir.into(),
            store: None,
            policies: None,
            audit_log: None,
            audit_key: None,
            audit_keep_every: None,
            trust,
            registry: ClientOptions::default(),
            verdict_ttl: limits::VERDICT_TTL,
            output_bytes: crate::sandbox::limits::DEFAULT_OUTPUT_BYTES,
            metered: false,
            progress: Box::new(NoProgress),
            audit_shared: false,
        }
    }

    /// The defaults ([`Config::new`]) under Warrant's own data directory: `$WARRANT_HOME`,
    /// else `$XDG_DATA_HOME/warrant`, else `~/.local/share/warrant`.
    pub fn in_data_dir(trust: Trust) -> Self {
        Self::new(crate::config::data_dir(), trust)
    }

    /// The audit log's directory and key, as [`Broker::open`] opens them.
    pub fn audit_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.audit_log
                .clone()
                .unwrap_or_else(|| self.data_dir.join("audit")),
            self.audit_key
                .clone()
                .unwrap_or_else(|| self.data_dir.join("audit.key")),
        )
    }
}

/// The broker's own limits.
pub mod limits {
    use std::time::Duration;

    /// How long a verified verdict is reused by default: long enough that a host running the
    /// same plugin all day verifies it once an hour, short enough that a revoked key (a
    /// removed `--key`, a changed trusted root changes the verdict's key at once) or a
    /// signature removed from the registry stops counting within the hour.
    pub const VERDICT_TTL: Duration = Duration::from_secs(3600);
}

/// Why the broker stopped. Each variant is one kind of refusal or failure; the command line
/// maps each to its documented exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry, the network or the store failed.
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
    /// Verification refused the artifact, or could not be carried out.
    #[error(transparent)]
    Verification(#[from] PipelineError),
    /// The stored bytes are not the digest that was verified.
    #[error("stored module `{path}` hashes to `{actual}`, not `{expected}`; the store is corrupt", path = .path.display())]
    StoreCorrupt {
        /// The file read.
        path: PathBuf,
        /// The verified layer digest.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The bytes are not the kind of WebAssembly the verified manifest says.
    #[error("`{reference}` is published as a {published} but its bytes are {found}")]
    KindMismatch {
        /// The artifact.
        reference: String,
        /// What its manifest says.
        published: &'static str,
        /// What its bytes are.
        found: &'static str,
    },
    /// The verified bytes do not parse as WebAssembly.
    #[error("`{reference}`'s verified bytes are not valid WebAssembly: {reason}")]
    Malformed {
        /// The artifact.
        reference: String,
        /// What the parser said.
        reason: String,
    },
    /// A stored file could not be read.
    #[error("cannot read `{path}`: {source}", path = .path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key could not be read.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// The policies could not be read or are invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The policies denied a request the run needs.
    #[error("{0}")]
    Denied(Box<Denial>),
    /// The guest could not be compiled, linked or started.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The audit log refused a write: nothing takes effect that it could not record.
    #[error(transparent)]
    Audit(#[from] AuditFailure),
    /// The private state is not the user's alone, or cannot be used.
    #[error("warrant's state: {0}")]
    State(#[from] StateError),
    /// A thread panicked while it held this part of the broker; it is not used again.
    #[error("{0} cannot be used: a thread panicked while using it")]
    Poisoned(&'static str),
}

/// Whether the state is not private to the user (a configuration to fix) rather than
/// unwritable.
pub(crate) fn state_unsafe(e: &StateError) -> bool {
    matches!(
        e,
        StateError::Path(registry_client::Error::Unsafe { .. }) | StateError::BadKey { .. }
    )
}

/// A part of the state that only saves work: used when it opens, refused when it is not
/// private to the user, and done without (with a warning) when it merely cannot be used.
pub(crate) fn saving<T>(what: &str, opened: Result<T, StateError>) -> Result<Option<T>, Error> {
    match opened {
        Ok(part) => Ok(Some(part)),
        Err(e) if state_unsafe(&e) => Err(Error::State(e)),
        Err(e) => {
            tracing::warn!("{what} unavailable, working without it: {e}");
            Ok(None)
        }
    }
}

/// The pipeline, opened once: the state, store, registry client, trust, policies, audit log
/// and engine every stage uses. Cheap to clone and shared across threads.
///
/// INVARIANT (sealed stages): each stage's output ([`Resolution`], [`Verified`], [`Artifact`],
/// [`Granted`], [`Prepared`]) has private fields and is made only by its stage here, from the
/// output of the stage before.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
    scope: Arc<Scope>,
}

/// What every broker of one process shares: the state, the store, the audit log, the engines.
struct Inner {
    state: State,
    /// The registry client every scope's budgeted client is made from.
    client: RegistryClient,
    /// A scope's registry work together is bounded by this deadline and the request cap.
    registry_deadline: Duration,
    store: Store,
    verdicts: Option<VerdictCache>,
    audit: Mutex<Audit>,
    engines: Engines,
    output_bytes: u64,
    progress: Box<dyn Progress + Send>,
}

/// What a broker decides with: who may sign, the policies, and a registry budget of its own
/// ([`Broker::scoped`]: a `warrant serve` tenant's).
struct Scope {
    client: RegistryClient,
    trust: Trust,
    policies: Mutex<RunPolicies>,
}

impl Broker {
    /// Open everything a run needs, before anything is fetched: the state (checked to be the
    /// user's alone: an unsafe state refuses here), the audit log (a torn tail repaired; a log
    /// that cannot be written refuses here), the policies (strictly validated, or vouched for
    /// by the state's memo: a bad set refuses here), the store and the registry client. An
    /// engine starts building on a thread of its own meanwhile.
    pub fn open(config: Config) -> Result<Self, Error> {
        let state = State::open(&config.data_dir)?;
        let compile_cache = saving("the compile cache", CompileCache::open(&state))?;
        let engines = Engines::start(config.metered, compile_cache);
        let (audit_dir, audit_key) = config.audit_paths();
        std::thread::scope(|scope| {
            // The audit log is opened on another thread while the policies and the store are
            // read; the scope waits for it whatever happens.
            let opening = std::thread::Builder::new()
                .name("warrant-audit".into())
                .spawn_scoped(scope, || {
                    if config.audit_shared {
                        Audit::open_shared(&audit_dir, &audit_key)
                    } else {
                        Audit::open(&audit_dir, &audit_key)
                    }
                });
            let memo = saving("the policy memo", PolicyMemo::open(&state))?;
            let policies = RunPolicies::open(config.policies.as_deref(), memo)?;
            let verdicts = if config.verdict_ttl.is_zero() {
                None
            } else {
                saving(
                    "the verdict cache",
                    VerdictCache::open(&state, config.verdict_ttl),
                )?
            };
            // One broker's registry work together is bounded by the operation deadline and
            // the request cap, not each operation alone.
            let deadline = config.registry.operation_deadline;
            let base = RegistryClient::new(config.registry)?;
            let client = base.budgeted(deadline, registry_client::limits::MAX_REQUESTS_PER_RUN);
            let store = Store::open(
                config
                    .store
                    .unwrap_or_else(|| config.data_dir.join("store")),
            )?;
            let mut audit = match opening {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|_| Err(AuditFailure::new(&audit_dir, "opening it panicked"))),
                Err(_) if config.audit_shared => Audit::open_shared(&audit_dir, &audit_key),
                Err(_) => Audit::open(&audit_dir, &audit_key),
            }?;
            if let Some(records) = config.audit_keep_every {
                audit.set_keep_every(records);
            }
            Ok(Self {
                inner: Arc::new(Inner {
                    state,
                    client: base,
                    registry_deadline: deadline,
                    store,
                    verdicts,
                    audit: Mutex::new(audit),
                    engines,
                    output_bytes: config.output_bytes,
                    progress: config.progress,
                }),
                scope: Arc::new(Scope {
                    client,
                    trust: config.trust,
                    policies: Mutex::new(policies),
                }),
            })
        })
    }

    /// A broker sharing this one's state, store, audit log and engines, that verifies against
    /// `trust` only and decides with the policies in `policies` (none: everything denied),
    /// with a registry budget of its own: a `warrant serve` tenant, whose signers lend nothing
    /// to another tenant. The policies are checked now, as [`Broker::open`] checks them.
    pub fn scoped(&self, trust: Trust, policies: Option<&Path>) -> Result<Self, Error> {
        let memo = saving("the policy memo", PolicyMemo::open(&self.inner.state))?;
        let policies = RunPolicies::open(policies, memo)?;
        Ok(Self {
            inner: self.inner.clone(),
            scope: Arc::new(Scope {
                client: self.inner.client.budgeted(
                    self.inner.registry_deadline,
                    registry_client::limits::MAX_REQUESTS_PER_RUN,
                ),
                trust,
                policies: Mutex::new(policies),
            }),
        })
    }

    /// The compile cache this broker's engines use, if there is one (for another engine of
    /// the same process: entries are named by the engine's fingerprint too).
    pub(crate) fn compile_cache(&self) -> Option<Arc<CompileCache>> {
        self.inner.engines.cache()
    }

    /// The trust this broker verifies against.
    pub fn trust(&self) -> &Trust {
        &self.scope.trust
    }

    /// Append a record to the audit log (written with the next commit).
    /// How this broker reaches registries.
    pub(crate) fn registry_options(&self) -> &ClientOptions {
        self.scope.client.options()
    }

    /// The content store.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Commit a refusal that no stage made (a pod's image refused before resolving).
    pub(crate) fn record_refused(&self, record: &records::Refused<'_>) -> Result<(), Error> {
        self.record_before_effect(record)
    }

    fn record<R: Record>(&self, record: &R) -> Result<(), Error> {
        let body = self.body(record)?;
        Ok(self.audit()?.record(R::KIND, body)?)
    }

    /// Append a record and commit the log: it is durable when this returns.
    fn record_before_effect<R: Record>(&self, record: &R) -> Result<(), Error> {
        let body = self.body(record)?;
        Ok(self.audit()?.record_before_effect(R::KIND, body)?)
    }

    fn body<R: Record>(&self, record: &R) -> Result<serde_json::Value, Error> {
        serde_json::to_value(record).map_err(|e| {
            Error::Audit(AuditFailure::new(
                Path::new(R::KIND),
                format_args!("the record cannot be written: {e}"),
            ))
        })
    }

    fn audit(&self) -> Result<std::sync::MutexGuard<'_, Audit>, Error> {
        self.inner
            .audit
            .lock()
            .map_err(|_| Error::Poisoned("the audit log"))
    }

    /// Resolve `reference` to the digest every later stage uses. A digest-pinned reference
    /// whose manifest is in the store is resolved from the store (checked against the digest),
    /// without asking the registry. Records `pull`.
    pub async fn resolve(&self, reference: &Reference) -> Result<Resolution, Error> {
        let resolved = resolve_once(&self.scope.client, &self.inner.store, reference).await?;
        // The reference as resolved (a layout by its canonical path): the name the policies
        // decide on.
        self.record(&records::Pull {
            reference: resolved.reference().to_string(),
            digest: resolved.digest(),
            platform: resolved
                .index()
                .map(registry_client::ResolvedIndex::platform),
            manifest: resolved.index().map(|_| resolved.manifest_digest()),
        })?;
        Ok(Resolution { resolved })
    }

    /// Verify the resolved digest against the trust: every signature, attestation and
    /// Sigstore bundle found for it, or a cached verdict for the same repository, digest and
    /// trust. Refused (and the refusal committed to the log before it is returned) when the
    /// trust names signers and none of them signed. Records `verify`.
    pub async fn verify(&self, resolution: Resolution) -> Result<Verified, Error> {
        let trust = &self.scope.trust;
        // INVARIANT (digest binding): verification uses the resolved digest; nothing looks the
        // tag up again.
        let (verdict, attestations) = crate::pipeline::verify_cached(
            &self.scope.client,
            resolution.resolved.reference(),
            resolution.resolved.digest(),
            trust,
            self.inner.verdicts.as_ref(),
        )
        .await?;
        if trust.names_signers() && !verdict.signers.iter().any(|s| trust.is_named(s)) {
            // The refusal is durable before it is reported.
            self.record_before_effect(&records::Verify {
                digest: &verdict.digest,
                trust: trust.id(),
                verified: false,
                verdict: &verdict,
                attestations: None,
            })?;
            return Err(PipelineError::Unverified(verdict).into());
        }
        for signer in &verdict.signers {
            tracing::info!(digest = %verdict.digest, signer = %signer.identity, "verified");
        }
        self.record(&records::Verify {
            digest: &verdict.digest,
            trust: trust.id(),
            verified: true,
            verdict: &verdict,
            attestations: Some(&attestations.verified),
        })?;
        Ok(Verified {
            resolution,
            verdict,
            attestations,
        })
    }

    /// Fetch exactly the verified digest into the store (or find it there), and read the
    /// module's bytes, checked to be that digest and the kind its manifest says.
    pub async fn fetch(&self, verified: Verified) -> Result<Artifact, Error> {
        let fetched = self
            .scope
            .client
            .fetch(
                &verified.resolution.resolved,
                &self.inner.store,
                self.inner.progress.as_ref(),
            )
            .await?;
        let wasm = checked_bytes(&fetched)?;
        Ok(Artifact {
            verified,
            fetched,
            wasm,
        })
    }

    /// Ask the policies for everything the run needs (`asks`): granted, or denied (the denial
    /// committed to the log before it is returned). With `drop_denied`, denied optional
    /// requests (directories, environment variables, sockets) are left out of the grant
    /// instead of denying the run. Records `decide`.
    pub fn decide(
        &self,
        artifact: Artifact,
        asks: &Asks,
        drop_denied: bool,
    ) -> Result<Granted, Error> {
        let facts = crate::pipeline::facts(
            &artifact.fetched,
            &artifact.verified.verdict,
            &artifact.verified.attestations,
        );
        let (granted, policy_hash, remembered) = self
            .scope
            .policies
            .lock()
            .map_err(|_| Error::Poisoned("the policies"))?
            .grant(&facts, asks, drop_denied)?;
        let decisions = match &granted {
            Ok(grant) => grant.decisions(),
            Err(denial) => &denial.decisions,
        };
        let decide = records::Decide {
            digest: facts.digest(),
            policy_hash: &policy_hash,
            remembered,
            allowed: granted.is_ok(),
            decisions,
        };
        match &granted {
            Ok(_) => self.record(&decide)?,
            // The denial is durable before it is reported.
            Err(_) => self.record_before_effect(&decide)?,
        }
        match granted {
            Ok(grant) => {
                // INVARIANT (grant binding): the grant was decided for this very digest.
                debug_assert_eq!(grant.digest(), artifact.fetched.digest());
                Ok(Granted { artifact, grant })
            }
            Err(denial) => Err(Error::Denied(Box::new(denial))),
        }
    }

    /// Compile (or find compiled) and link the granted guest, and commit the grant to the log.
    /// Records `instantiate`.
    ///
    /// INVARIANT (audit before effect): the grant, and every record before it, is committed
    /// (one `fdatasync`) before any guest code can run. The module is compiled (or loaded from
    /// the compile cache) and linked meanwhile, on another thread: that runs no guest code,
    /// and a failed commit drops it unused.
    pub fn prepare(&self, granted: Granted) -> Result<Prepared, Error> {
        let Granted { artifact, grant } = granted;
        let limits = RunLimits::of(&grant, self.inner.output_bytes);
        let sandbox = self.inner.engines.get(limits.fuel.is_some())?;
        let preparing = sandbox.start_prepare(artifact.wasm)?;
        self.record_before_effect(&records::Instantiate::of(&grant, self.inner.output_bytes))?;
        let guest = preparing.wait()?;
        Ok(Prepared {
            broker: self.clone(),
            sandbox,
            guest,
            handles: Handles::of(&grant),
            limits,
            reference: artifact
                .verified
                .resolution
                .resolved
                .reference()
                .to_string(),
            digest: artifact.fetched.digest().clone(),
            grant,
        })
    }

    /// Compile (or find compiled) and link a granted `wasi:http` component for `warrant
    /// serve`'s tenant `tenant` at `route`, and write the grant and the `load` record to the
    /// log. Records `instantiate` and `load`, durable with the next commit: the server commits
    /// once for every tenant it loads together, before any of them takes a request
    /// ([`Broker::commit`]), so that a thousand tenants cost one `fdatasync`, not a thousand.
    ///
    /// Compilation runs no guest code; a component that cannot be served (a core module, no
    /// `wasi:http/incoming-handler` export) is refused here, before anything is recorded.
    pub fn prepare_http(
        &self,
        granted: Granted,
        engine: &crate::sandbox::http::HttpEngine,
        tenant: &str,
        route: &str,
    ) -> Result<PreparedHttp, Error> {
        let Granted { artifact, grant } = granted;
        let reference = artifact
            .verified
            .resolution
            .resolved
            .reference()
            .to_string();
        let guest = engine.prepare(artifact.wasm)?;
        self.record(&records::Instantiate::of(&grant, 0))?;
        self.record(&records::Load {
            tenant,
            route,
            reference: &reference,
            digest: artifact.fetched.digest(),
            outbound: grant.http(),
        })?;
        Ok(PreparedHttp {
            guest,
            digest: artifact.fetched.digest().clone(),
            signers: artifact.verified.verdict.signers.clone(),
            reference,
            grant,
        })
    }

    /// Append a record to the log, written with the next commit ([`Broker::commit`]).
    pub(crate) fn record_later<R: Record>(&self, record: &R) -> Result<(), Error> {
        self.record(record)
    }

    /// Make every record written so far durable (one `fdatasync` if any is pending).
    pub(crate) fn commit(&self) -> Result<(), Error> {
        Ok(self.audit()?.commit()?)
    }

    /// Commit the log and sign a checkpoint over it: the end of a run, or of a batch of them.
    pub fn checkpoint(&self) -> Result<(), Error> {
        Ok(self.audit()?.finish()?)
    }
}

/// A reference resolved to a digest ([`Broker::resolve`]).
#[derive(Debug)]
pub struct Resolution {
    resolved: Resolved,
}

impl Resolution {
    /// The reference as resolved (a layout by its canonical path).
    pub fn reference(&self) -> &Reference {
        self.resolved.reference()
    }

    /// The digest every later stage uses.
    pub fn digest(&self) -> &Digest {
        self.resolved.digest()
    }
}

/// A resolved digest whose signatures were verified against the trust ([`Broker::verify`]).
#[derive(Debug)]
pub struct Verified {
    resolution: Resolution,
    verdict: Verdict,
    attestations: Attestations,
}

impl Verified {
    /// The digest verified.
    pub fn digest(&self) -> &Digest {
        self.resolution.digest()
    }

    /// Who verifiably signed it.
    pub fn signers(&self) -> &[crate::verify::Signer] {
        &self.verdict.signers
    }
}

/// A verified artifact fetched, its bytes read and checked to be the verified digest
/// ([`Broker::fetch`]).
pub struct Artifact {
    verified: Verified,
    fetched: Fetched,
    wasm: Vec<u8>,
}

impl Artifact {
    /// The manifest digest.
    pub fn digest(&self) -> &Digest {
        self.fetched.digest()
    }

    /// A core module or a component.
    pub fn kind(&self) -> WasmKind {
        self.fetched.kind()
    }

    /// Who verifiably signed it.
    pub fn signers(&self) -> &[crate::verify::Signer] {
        self.verified.signers()
    }
}

/// An artifact and what the policies granted it ([`Broker::decide`]).
pub struct Granted {
    artifact: Artifact,
    grant: Grant,
}

impl Granted {
    /// The artifact.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// Every decision, the optional requests dropped (`drop_denied`) among them.
    pub fn decisions(&self) -> &[Decision] {
        self.grant.decisions()
    }
}

/// A granted guest compiled and linked, with its handles and limits ([`Broker::prepare`]):
/// cheap to run many times, from any thread.
pub struct Prepared {
    broker: Broker,
    sandbox: Arc<Sandbox>,
    guest: crate::sandbox::Prepared,
    handles: Handles,
    limits: RunLimits,
    reference: String,
    digest: Digest,
    grant: Grant,
}

impl Prepared {
    /// The artifact's manifest digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The limits every run of it has.
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    /// What it was granted.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// Run it once, in a store of its own, with `args` after its name (`argv[0]` is the
    /// reference) and exactly its granted handles. Records `outcome`.
    pub fn run(&self, args: &[String]) -> Result<Finished, Error> {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(self.reference.clone());
        argv.extend_from_slice(args);
        self.run_argv(&argv, Output::Captured, None)
    }

    /// Run it once with `argv` as its whole argument list (`argv[0]` included, as a container
    /// spec gives it), its output sent where `output` says, stopped early by `stop`. Records
    /// `outcome`.
    pub fn run_argv(
        &self,
        argv: &[String],
        output: Output,
        stop: Option<&Stop>,
    ) -> Result<Finished, Error> {
        let finished = self.sandbox.run_prepared_with(
            &self.guest,
            argv,
            &self.limits,
            &self.handles,
            output,
            stop,
        )?;
        self.broker
            .record(&records::OutcomeRecord::of(&self.digest, &finished))?;
        Ok(finished)
    }
}

/// A granted `wasi:http` component compiled and linked for serving
/// ([`Broker::prepare_http`]): a fresh instance of it serves each request.
pub struct PreparedHttp {
    guest: crate::sandbox::http::HttpGuest,
    digest: Digest,
    signers: Vec<crate::verify::Signer>,
    reference: String,
    grant: Grant,
}

impl PreparedHttp {
    /// The artifact's manifest digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The reference as resolved.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Who verifiably signed it.
    pub fn signers(&self) -> &[crate::verify::Signer] {
        &self.signers
    }

    /// What it was granted.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The compiled and linked component.
    pub(crate) fn guest(&self) -> &crate::sandbox::http::HttpGuest {
        &self.guest
    }
}

/// The facts a run would decide on for `reference`, and the decisions `policies` make for
/// `asks`: resolved, verified (a named signer that did not sign refuses) and fetched as
/// [`Broker`] does, with nothing recorded and nothing run (`warrant policy explain`).
#[expect(
    clippy::too_many_arguments,
    reason = "the parts a broker holds, lent by a client that opens no broker"
)]
pub(crate) async fn explain(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    trust: &Trust,
    cache: Option<&VerdictCache>,
    policies: &crate::policy::Policies,
    asks: &Asks,
    progress: &dyn Progress,
) -> Result<(crate::policy::Facts, Vec<Decision>), Error> {
    let (facts, _) = verified_facts(client, store, reference, trust, cache, progress).await?;
    let decisions = policies.decide_all(&facts, &asks.requests());
    Ok((facts, decisions))
}

/// The facts a run would decide on for `reference`, and what its verified bytes import
/// (`warrant policy suggest`): resolved, verified and fetched as [`explain`] does, the bytes
/// checked against the verified digest, nothing recorded and nothing run.
pub(crate) async fn facts_and_uses(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    trust: &Trust,
    cache: Option<&VerdictCache>,
    progress: &dyn Progress,
) -> Result<(crate::policy::Facts, crate::uses::Uses), Error> {
    let (facts, fetched) = verified_facts(client, store, reference, trust, cache, progress).await?;
    let wasm = checked_bytes(&fetched)?;
    let uses = crate::uses::uses(&wasm).map_err(|reason| Error::Malformed {
        reference: fetched.resolved().reference().to_string(),
        reason,
    })?;
    Ok((facts, uses))
}

async fn verified_facts(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    trust: &Trust,
    cache: Option<&VerdictCache>,
    progress: &dyn Progress,
) -> Result<(crate::policy::Facts, Fetched), Error> {
    let resolved = resolve_once(client, store, reference).await?;
    let (verdict, attestations, fetched) =
        crate::pipeline::fetch_verified(client, store, &resolved, trust, cache, progress).await?;
    let facts = crate::pipeline::facts(&fetched, &verdict, &attestations);
    Ok((facts, fetched))
}

/// `reference` resolved to a digest: from the store when it pins a digest whose manifest the
/// store holds (checked against the digest, no registry asked), else by the registry.
async fn resolve_once(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
) -> Result<Resolved, Error> {
    Ok(match Resolved::from_store(store, reference)? {
        Some(resolved) => resolved,
        None => client.resolve(reference).await?,
    })
}

/// A guest's output made safe for a terminal: as UTF-8 (a byte that is not, such as a lone
/// 8-bit `CSI`, becomes U+FFFD), every control character (C0, DEL, C1: escape sequences could
/// rewrite the screen or the title) and bidirectional formatting character replaced by `?`,
/// except newline, tab and carriage return.
pub fn terminal_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| match c {
            '\n' | '\t' | '\r' => c,
            c if registry_client::text::is_unsafe(c) => '?',
            c => c,
        })
        .collect()
}

/// The module's bytes, read from the store and checked to be what was verified.
fn checked_bytes(fetched: &Fetched) -> Result<Vec<u8>, Error> {
    // INVARIANT (digest binding): the bytes handed to the engine are hashed here, in memory,
    // and must equal the layer digest of the manifest that was resolved and verified.
    let path = fetched.module_path().to_owned();
    let wasm = std::fs::read(&path).map_err(|source| Error::Input {
        path: path.clone(),
        source,
    })?;
    let actual = Digest::of(&wasm);
    if actual != fetched.layer().digest {
        return Err(Error::StoreCorrupt {
            path,
            expected: fetched.layer().digest.clone(),
            actual,
        });
    }
    // A `wasi/wasm` image's module is the file its entrypoint names inside that layer, read
    // from these checked bytes (never from an unpacked file system).
    let wasm = match fetched.image() {
        Some(image) => image.extract(&wasm, crate::sandbox::limits::MAX_GUEST_BYTES)?,
        None => wasm,
    };
    // The sandbox runs the bytes as what they are; they must be what was verified.
    let kind = WasmKind::detect(&wasm);
    if kind != Some(fetched.kind()) {
        return Err(Error::KindMismatch {
            reference: fetched.resolved().reference().to_string(),
            published: fetched.kind().as_str(),
            found: kind.map_or("not WebAssembly", WasmKind::as_str),
        });
    }
    Ok(wasm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server shares one broker and one prepared guest across threads.
    #[test]
    fn a_broker_and_a_prepared_guest_are_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Broker>();
        shared::<Prepared>();
    }
}
