//! The `warrant` command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use registry_client::{
    ClientOptions, Credentials, Digest, Fetched, Reference, RegistryClient, Resolved, Store,
};
use serde_json::json;

use crate::config::{Config, ConfigError, data_dir, parse_duration};
use crate::exit::{Exit, MAX_GUEST_STATUS};
use crate::keys::SigningKey;
use crate::policy::Asks;
use crate::progress::TerminalProgress;
use crate::sandbox::{Handles, Outcome, RunLimits, Sandbox, SandboxError};
use crate::verify::{BlobInput, SignerRequirement, VerifyError};

/// `println!` for Warrant's own output: whatever untrusted text it carries is escaped
/// ([`registry_client::text::for_terminal`]) so that it cannot move or rewrite the terminal.
macro_rules! outln {
    ($($arg:tt)*) => {
        println!("{}", registry_client::text::for_terminal(&format!($($arg)*)))
    };
}

/// `print!`, escaped as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        print!("{}", registry_client::text::for_terminal(&format!($($arg)*)))
    };
}

/// `eprintln!`, escaped as [`outln!`].
macro_rules! errln {
    ($($arg:tt)*) => {
        eprintln!("{}", registry_client::text::for_terminal(&format!($($arg)*)))
    };
}

/// No capability without a warrant: verify signed WebAssembly, decide what it may touch, and
/// run it with exactly that.
#[derive(Debug, Parser)]
#[command(
    name = "warrant",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags accepted before or after any subcommand; each overrides `warrant.toml`.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// The configuration file (default: $WARRANT_CONFIG, else ~/.config/warrant/warrant.toml
    /// if it exists)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The local store, an OCI image-layout directory (default: ~/.local/share/warrant/store)
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The audit log directory (default: `audit_log` in the config, else
    /// ~/.local/share/warrant/audit)
    #[arg(long, global = true, value_name = "DIR")]
    audit_log: Option<PathBuf>,
    /// The policy directory
    #[arg(long, global = true, value_name = "DIR")]
    policies: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a .wasm file as a Wasm OCI artifact (to a registry, or to an `oci-layout:DIR:TAG`)
    Push {
        /// The module or component to publish
        file: PathBuf,
        /// Where: `registry/repo:tag` or `oci-layout:DIR[:tag]`
        reference: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Resolve a reference once, fetch the artifact into the store, print its digest
    Pull {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show an artifact's manifest, config, layers and referrers without storing anything
    Inspect {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Generate an ECDSA P-256 key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub
    Keygen {
        /// Path prefix of the two files (neither may exist)
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Sign an artifact's manifest digest with a key (cosign-compatible `sha256-<hex>.sig`)
    Sign {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// The private key (PKCS#8 PEM, as `warrant keygen` writes)
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Attest an artifact: a signed in-toto statement (e.g. SLSA provenance) in `sha256-<hex>.att`
    Attest {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// The private key (PKCS#8 PEM)
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The predicate (JSON)
        #[arg(long, value_name = "FILE")]
        predicate: PathBuf,
        /// `slsaprovenance1`, `slsaprovenance` (v0.2), or a predicate type URI
        #[arg(long = "type", value_name = "TYPE")]
        predicate_type: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify an artifact's signatures and attestations offline and print the verified facts
    /// (exit 0 when at least one signature verified, and an attestation of every required type,
    /// 122 otherwise)
    Verify {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Require a verified attestation of this type (`slsaprovenance1`, `slsaprovenance`,
        /// or a URI); repeatable
        #[arg(long = "attestation-type", value_name = "TYPE")]
        attestation_types: Vec<String>,
        /// Print the verdict as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify a Sigstore bundle over a file or a digest, offline (exit 0 verified, 122 not)
    #[command(alias = "verify-bundle")]
    VerifyBlob {
        /// The Sigstore bundle (`.sigstore.json`)
        #[arg(long, value_name = "FILE")]
        bundle: PathBuf,
        /// A public key (PEM) that must have made the signature
        #[arg(long, value_name = "PUB", conflicts_with_all = ["certificate_identity", "certificate_oidc_issuer"])]
        key: Option<PathBuf>,
        /// The signing certificate's identity (SAN), matched exactly
        #[arg(long, value_name = "IDENTITY", requires = "certificate_oidc_issuer")]
        certificate_identity: Option<String>,
        /// The signing certificate's OIDC issuer, matched exactly
        #[arg(long, value_name = "URL", requires = "certificate_identity")]
        certificate_oidc_issuer: Option<String>,
        /// A Sigstore trusted root (default: the embedded public-good production root)
        #[arg(long, value_name = "FILE")]
        trusted_root: Option<PathBuf>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
        /// The signed file, or `sha256:<hex>` of it (a digest unless such a file exists)
        file_or_digest: String,
    },
    /// Pull an artifact and run it (WASI preview 1 command modules) with no capabilities
    Run {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        /// Run only if a signature by one of these verifies
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        asks: AskArgs,
        /// Run without the handles policy denied instead of refusing the run (`instantiate`
        /// must still be allowed; a directory whose `fs.write` is denied is given read-only)
        #[arg(long)]
        drop_denied: bool,
        /// Arguments passed to the guest
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Cedar policies: check them, explain a decision, run their tests
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log: verify it, show it, prove records to a third party, print its verifier key
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the log's Merkle tree, check the signature and root of every kept checkpoint
    /// and of the head checkpoint, and name the first bad record or checkpoint (exit 0 intact,
    /// 122 not)
    Verify {
        /// A verifier key file (`warrant-audit+<id>+<key>`, as `audit key` prints); default:
        /// the public half of the log's own key
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the verifier key that checks this log's checkpoints
    Key,
    /// Print the log as a timeline, one line per record (only records the log proves: on a
    /// log that fails verification, the proven records before the failure, then the failure;
    /// exit 122)
    Show {
        /// Only the records about this artifact (`sha256:<hex>`, or a prefix of the hex of at
        /// least 4 characters)
        #[arg(long, value_name = "DIGEST")]
        digest: Option<String>,
        /// Only records from this time on: RFC 3339 (`2026-11-24T14:00:00Z`) or a duration
        /// back from now (`30m`, `1h`, `7d`)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// A verifier key file; default: the public half of the log's own key
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print the records themselves, one canonical JSON record per line
        #[arg(long)]
        json: bool,
    },
    /// Write a self-contained proof: that record N is in the log (`--index N`, against the
    /// smallest kept checkpoint covering it, else the head checkpoint), that the log at
    /// checkpoint size N extends the log at checkpoint size M (`--from M --to N`; kept
    /// checkpoint sizes or the head's), or that it extends a checkpoint kept elsewhere
    /// (`--from-checkpoint FILE [--to N]`, exit 122 if the log no longer does)
    Prove {
        /// The record to prove
        #[arg(long, value_name = "N", required_unless_present_any = ["from", "from_checkpoint"], conflicts_with_all = ["from", "to", "from_checkpoint"])]
        index: Option<u64>,
        /// The earlier checkpoint size
        #[arg(
            long,
            value_name = "M",
            requires = "to",
            conflicts_with = "from_checkpoint"
        )]
        from: Option<u64>,
        /// A checkpoint of this log kept elsewhere (say a head since replaced): its note, or
        /// a proof file whose newest checkpoint is taken
        #[arg(long, value_name = "FILE")]
        from_checkpoint: Option<PathBuf>,
        /// The later checkpoint size (with `--from-checkpoint`, default: the newest)
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Write the proof here (default: standard output)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a proof written by `audit prove` with nothing but the log's verifier key (exit 0
    /// valid, 122 refused, naming what failed)
    VerifyProof {
        /// The proof file
        file: PathBuf,
        /// The verifier key file (`warrant-audit+<id>+<key>`, as `audit key` prints)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only obscure the clap definitions"
)]
enum PolicyCommand {
    /// Load and strictly validate the policy directory (`--policies` or `policies` in the
    /// config); exit 0 when valid, 2 naming file, line and policy id otherwise
    Check {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify an artifact, then show what each request would be decided and why (exit 0 when
    /// everything asked is allowed, 123 otherwise)
    Explain {
        /// `registry/repo:tag`, `registry/repo@sha256:…`, or `oci-layout:DIR[:tag|@digest]`
        reference: String,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        asks: AskArgs,
        /// Print the facts and decisions as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run the test cases in the policy directory's `tests/*.toml` (exit 0 when all pass)
    Test {
        /// Print the results as JSON
        #[arg(long)]
        json: bool,
    },
}

/// What a run asks for: limits, and the handles policies must grant.
#[derive(Debug, clap::Args)]
struct AskArgs {
    /// A host directory for the guest, `HOST::GUEST` (asks `fs.read` and `fs.write` on the
    /// canonical host path) or `HOST::GUEST:ro` (asks `fs.read`); repeatable
    #[arg(long = "dir", value_name = "HOST::GUEST[:ro]")]
    dirs: Vec<String>,
    /// An environment variable for the guest, its value from `NAME=VALUE` or else from
    /// warrant's own environment (asks `env.read`); repeatable
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Let the guest connect to `HOST:PORT` (asks `net.connect`); repeatable
    #[arg(long = "allow-net", value_name = "HOST:PORT")]
    net: Vec<String>,
    /// Linear-memory limit in bytes (default `[run] memory_bytes`, else 268435456)
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Wall-clock limit, e.g. `500ms`, `10s` (default `[run] timeout`, else 10s)
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Fuel: meter the guest and stop it after about this many instructions (default `[run]
    /// fuel`, else unmetered)
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
}

impl AskArgs {
    fn asks(&self, config: &Config) -> Result<Asks, CliError> {
        let mut limits = RunLimits::default();
        if let Some(m) = self.memory.or(config.run.memory_bytes) {
            limits.memory_bytes = m;
        }
        if let Some(t) = self.timeout.as_deref().or(config.run.timeout.as_deref()) {
            limits.timeout = parse_duration(t)?;
        }
        let mut asks = Asks {
            memory_bytes: limits.memory_bytes,
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            fuel: self.fuel.or(config.run.fuel),
            ..Asks::default()
        };
        for text in &self.dirs {
            asks.dirs
                .push(crate::policy::parse_dir_ask(text).map_err(CliError::Usage)?);
        }
        for text in &self.env {
            let (name, value) = match text.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = std::env::var(text).map_err(|_| {
                        CliError::Usage(format!(
                            "`--env {text}`: `{text}` is not set here; give `--env {text}=VALUE`"
                        ))
                    })?;
                    (text.clone(), value)
                }
            };
            crate::policy::check_env_name(&name).map_err(CliError::Usage)?;
            asks.env.push((name, value));
        }
        for text in &self.net {
            // INVARIANT (one form): the host is asked, decided, recorded and connected to in
            // its canonical form.
            let canonical = crate::policy::canonical_host_port(text).map_err(CliError::Usage)?;
            asks.net.push(canonical);
        }
        Ok(asks)
    }
}

/// Who an artifact's signatures may come from.
#[derive(Debug, clap::Args)]
struct TrustArgs {
    /// A public key (PEM) whose signatures count; repeatable
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A keyless signer: the certificate's identity (SAN), matched exactly; repeatable, each
    /// paired with the `--certificate-oidc-issuer` in the same position
    #[arg(long = "certificate-identity", value_name = "IDENTITY")]
    identities: Vec<String>,
    /// The OIDC issuer of the `--certificate-identity` in the same position, matched exactly
    #[arg(long = "certificate-oidc-issuer", value_name = "URL")]
    issuers: Vec<String>,
    /// A Sigstore `trusted_root.json` for keyless signatures (default: `[verify]
    /// trusted_root` in the config, else the embedded public-good production root)
    #[arg(long, value_name = "FILE")]
    trusted_root: Option<PathBuf>,
}

impl TrustArgs {
    fn load(&self, config: &Config) -> Result<crate::verify::Trust, CliError> {
        self.load_with(config, false)
    }

    /// As `load`; with `any_identity` and no identity given, keyless signatures by any
    /// identity the root certifies become facts for policies.
    fn load_with(
        &self,
        config: &Config,
        any_identity: bool,
    ) -> Result<crate::verify::Trust, CliError> {
        if self.identities.len() != self.issuers.len() {
            return Err(CliError::Usage(format!(
                "{} `--certificate-identity` but {} `--certificate-oidc-issuer`: give them in pairs",
                self.identities.len(),
                self.issuers.len()
            )));
        }
        let keys = self
            .keys
            .iter()
            .map(|path| crate::keys::read_public_key(path))
            .collect::<Result<Vec<_>, _>>()?;
        let identities = self
            .identities
            .iter()
            .zip(&self.issuers)
            .map(|(identity, issuer)| crate::verify::Identity {
                identity: identity.clone(),
                issuer: issuer.clone(),
            })
            .collect();
        let root_path = self
            .trusted_root
            .as_deref()
            .or(config.verify.trusted_root.as_deref());
        let root = crate::verify::load_trusted_root(root_path)?;
        let trust = crate::verify::Trust::new(keys, identities, &root)?;
        Ok(if any_identity {
            trust.accepting_any_identity()
        } else {
            trust
        })
    }
}

/// Everything that makes `warrant` stop early, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
    #[error("cannot read `{path}`: {source}", path = .path.display())]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("stored module `{path}` hashes to `{actual}`, not `{expected}`; the store is corrupt", path = .path.display())]
    StoreCorrupt {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("signing failed: {0}")]
    Sign(#[from] crate::cosign::SignError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("{0}")]
    Denied(Box<crate::policy::Denial>),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditFailure),
    #[error("warrant's state: {0}")]
    State(#[from] crate::state::StateError),
}

impl CliError {
    fn exit(&self) -> Exit {
        match self {
            Self::Config(_) | Self::Input { .. } | Self::Usage(_) | Self::Runtime(_) => Exit::Usage,
            Self::Registry(
                registry_client::Error::InvalidReference { .. }
                | registry_client::Error::InvalidDigest { .. }
                | registry_client::Error::Unsafe { .. },
            ) => Exit::Usage,
            Self::Registry(_) | Self::StoreCorrupt { .. } => Exit::Registry,
            Self::Sandbox(SandboxError::Load(_)) => Exit::Trap,
            Self::Sandbox(SandboxError::CompileDeadline(_)) => Exit::Limit,
            Self::Verify(e) if e.is_usage() => Exit::Usage,
            Self::Verify(_) => Exit::Verification,
            Self::Key(_) => Exit::Usage,
            Self::Pipeline(crate::pipeline::PipelineError::Registry(_)) => Exit::Registry,
            Self::Pipeline(_) => Exit::Verification,
            Self::Sign(crate::cosign::SignError::Key(_)) => Exit::Usage,
            Self::Sign(crate::cosign::SignError::Registry(_)) => Exit::Registry,
            Self::Sandbox(SandboxError::Engine(_)) => Exit::Usage,
            Self::Policy(_) => Exit::Usage,
            Self::Denied(_) => Exit::PolicyDenied,
            Self::Audit(e) if e.is_configuration() => Exit::Usage,
            Self::Audit(_) => Exit::Registry,
            Self::State(e) if state_unsafe(e) => Exit::Usage,
            Self::State(_) => Exit::Registry,
        }
    }
}

/// Whether the state is not private to the user (a configuration to fix, exit 2) rather than
/// unwritable.
fn state_unsafe(e: &crate::state::StateError) -> bool {
    use crate::state::StateError;
    matches!(
        e,
        StateError::Path(registry_client::Error::Unsafe { .. }) | StateError::BadKey { .. }
    )
}

/// A part of the state that only saves work: used when it opens, refused when it is not
/// private to the user, and done without (with a warning) when it merely cannot be used.
fn saving<T>(
    what: &str,
    opened: Result<T, crate::state::StateError>,
) -> Result<Option<T>, CliError> {
    match opened {
        Ok(part) => Ok(Some(part)),
        Err(e) if state_unsafe(&e) => Err(CliError::State(e)),
        Err(e) => {
            tracing::warn!("{what} unavailable, working without it: {e}");
            Ok(None)
        }
    }
}

/// Parse the command line, run it, and return the documented exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            }
            .into();
        }
    };
    init_tracing();
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            errln!("warrant: error: {e}");
            e.exit().into()
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // No colour codes, and whatever untrusted text a log line carries escaped on its way out.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| SafeStderr)
        .try_init();
}

/// Standard error for log lines, each escaped ([`registry_client::text::for_terminal`]).
struct SafeStderr;

impl Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr()
            .lock()
            .write_all(registry_client::text::for_terminal(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// What every command needs: the configuration, resolved against the flags.
struct Context {
    config: Config,
    store_path: PathBuf,
    /// The store is the data directory's own (no `--store`, no `store` in the config).
    store_in_state: bool,
    policies: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    /// The data directory, opened and checked on first use.
    state: std::sync::OnceLock<crate::state::State>,
}

impl Context {
    fn new(global: &GlobalArgs) -> Result<Self, CliError> {
        let config = Config::discover(global.config.as_deref())?;
        let configured = global.store.clone().or_else(|| config.store.clone());
        let store_in_state = configured.is_none();
        let store_path = configured.unwrap_or_else(|| data_dir().join("store"));
        Ok(Self {
            config,
            store_path,
            store_in_state,
            policies: global.policies.clone(),
            audit_log: global.audit_log.clone(),
            state: std::sync::OnceLock::new(),
        })
    }

    /// The data directory (`$WARRANT_HOME`, …), created 0700 and checked to be the user's
    /// alone, opened once per process.
    fn state(&self) -> Result<&crate::state::State, CliError> {
        if let Some(state) = self.state.get() {
            return Ok(state);
        }
        let opened = crate::state::State::open(&data_dir())?;
        Ok(self.state.get_or_init(|| opened))
    }

    /// The verdict cache, or none when `[verify] cache_ttl` is zero.
    fn verdict_cache(&self) -> Result<Option<crate::cache::VerdictCache>, CliError> {
        let ttl = match &self.config.verify.cache_ttl {
            Some(text) => parse_duration(text)?,
            None => std::time::Duration::from_secs(3600),
        };
        if ttl.is_zero() {
            return Ok(None);
        }
        saving(
            "the verdict cache",
            crate::cache::VerdictCache::open(self.state()?, ttl),
        )
    }

    /// The policy memo.
    fn policy_memo(&self) -> Result<Option<crate::cache::PolicyMemo>, CliError> {
        saving(
            "the policy memo",
            crate::cache::PolicyMemo::open(self.state()?),
        )
    }

    /// The compile cache.
    fn compile_cache(&self) -> Result<Option<crate::compiled::CompileCache>, CliError> {
        saving(
            "the compile cache",
            crate::compiled::CompileCache::open(self.state()?),
        )
    }

    fn client(&self) -> Result<RegistryClient, CliError> {
        let r = &self.config.registry;
        let mut options = ClientOptions {
            insecure_registries: r.insecure.clone(),
            credentials: match &r.credentials {
                Some(path) => Credentials::from_file(path)?,
                None => Credentials::from_default_location()?,
            },
            ..ClientOptions::default()
        };
        if let Some(d) = &r.connect_timeout {
            options.connect_timeout = parse_duration(d)?;
        }
        if let Some(d) = &r.read_timeout {
            options.read_timeout = parse_duration(d)?;
        }
        if let Some(d) = &r.operation_deadline {
            options.operation_deadline = parse_duration(d)?;
        }
        if let Some(max) = r.max_module_bytes {
            options.max_module_bytes = max;
        }
        // One command's registry work together (for `run`: resolve, verify and fetch) is
        // bounded by the operation deadline and the request cap, not each operation alone.
        let deadline = options.operation_deadline;
        Ok(RegistryClient::new(options)?
            .budgeted(deadline, registry_client::limits::MAX_REQUESTS_PER_RUN))
    }

    fn store(&self) -> Result<Store, CliError> {
        if self.store_in_state {
            // The data directory is made (0700) and checked before the store is made in it.
            self.state()?;
        }
        Ok(Store::open(&self.store_path)?)
    }

    /// The audit log: `--audit-log`, else `audit_log` in the config, else the data directory's
    /// `audit/`; signed with `audit_key` (default: the data directory's `audit.key`, created
    /// on first use).
    fn audit(&self) -> Result<crate::audit::Audit, CliError> {
        let (dir, key) = self.audit_paths();
        let mut audit = crate::audit::Audit::open(&dir, &key)?;
        if let Some(records) = self.config.audit_keep_every {
            audit.set_keep_every(records);
        }
        Ok(audit)
    }

    fn audit_paths(&self) -> (PathBuf, PathBuf) {
        let dir = self
            .audit_log
            .clone()
            .or_else(|| self.config.audit_log.clone())
            .unwrap_or_else(|| data_dir().join("audit"));
        let key = self
            .config
            .audit_key
            .clone()
            .unwrap_or_else(|| data_dir().join("audit.key"));
        (dir, key)
    }

    fn required_policy_dir(&self) -> Result<PathBuf, CliError> {
        self.policy_dir().ok_or_else(|| {
            CliError::Usage(
                "no policy directory: give `--policies DIR` or `policies` in the config".into(),
            )
        })
    }

    fn policy_dir(&self) -> Option<PathBuf> {
        self.policies
            .clone()
            .or_else(|| self.config.policies.clone())
    }

    /// The policy directory's policies, strictly validated (or exactly these sources validated
    /// before, as the data directory's authenticated memo vouches); none (everything denied)
    /// when no directory is configured.
    fn policies(&self) -> Result<crate::policy::Policies, CliError> {
        match self.policy_dir() {
            Some(dir) => {
                let memo = self.policy_memo()?;
                let memo = memo
                    .as_ref()
                    .map(|m| m as &dyn crate::policy::ValidationMemo);
                Ok(crate::policy::Policies::load_with(&dir, memo)?)
            }
            None => {
                tracing::warn!(
                    "no policy directory (`--policies DIR`): every request will be denied"
                );
                Ok(crate::policy::Policies::from_sources(&[])?)
            }
        }
    }
}

/// A run's policies: the directory's files, checked (strictly validated, or vouched for by
/// the memo) before anything is fetched, and parsed only if the run's decisions are not
/// remembered for exactly these files, facts and requests.
struct RunPolicies {
    sources: Vec<(PathBuf, String)>,
    key: [u8; 32],
    memo: Option<crate::cache::PolicyMemo>,
    loaded: Option<crate::policy::Policies>,
}

impl RunPolicies {
    fn open(ctx: &Context) -> Result<Self, CliError> {
        let Some(dir) = ctx.policy_dir() else {
            // Nothing to remember: everything is denied.
            return Ok(Self {
                sources: Vec::new(),
                key: [0; 32],
                memo: None,
                loaded: Some(ctx.policies()?),
            });
        };
        let sources = crate::policy::read_sources(&dir)?;
        let key = crate::policy::validation_key(&sources);
        let memo = ctx.policy_memo()?;
        let vouched = memo
            .as_ref()
            .is_some_and(|m| crate::policy::ValidationMemo::vouches(m, &key));
        let mut policies = Self {
            sources,
            key,
            memo,
            loaded: None,
        };
        // Not validated before: validated now, so that a bad set refuses the run early.
        if !vouched {
            policies.load()?;
        }
        Ok(policies)
    }

    fn load(&mut self) -> Result<&crate::policy::Policies, CliError> {
        Self::loaded(&mut self.loaded, &self.sources, self.memo.as_ref())
    }

    /// The policies in `slot`, loaded from `sources` first if they are not yet.
    fn loaded<'a>(
        slot: &'a mut Option<crate::policy::Policies>,
        sources: &[(PathBuf, String)],
        memo: Option<&crate::cache::PolicyMemo>,
    ) -> Result<&'a crate::policy::Policies, CliError> {
        let policies = match slot.take() {
            Some(policies) => policies,
            None => crate::policy::Policies::from_sources_with(
                sources,
                memo.map(|m| m as &dyn crate::policy::ValidationMemo),
            )?,
        };
        Ok(slot.insert(policies))
    }

    /// The run's grant or denial, the hash of the policy set that decided it, and whether
    /// the decisions were remembered rather than made now.
    fn grant(
        &mut self,
        facts: &crate::policy::Facts,
        asks: &Asks,
        drop_denied: bool,
    ) -> Result<
        (
            Result<crate::policy::Grant, crate::policy::Denial>,
            String,
            bool,
        ),
        CliError,
    > {
        if let Some(memo) = &self.memo
            && let Some(grant) = crate::policy::remembered_grant(memo, &self.key, facts, asks)
        {
            let hash = grant.policy_hash().to_owned();
            return Ok((Ok(grant), hash, true));
        }
        let memo = self.memo.as_ref();
        let policies = Self::loaded(&mut self.loaded, &self.sources, memo)?;
        let memo = memo.map(|m| (m as &dyn crate::policy::DecisionMemo, &self.key));
        let granted = policies.grant_remembering(facts, asks, drop_denied, memo);
        Ok((granted, policies.hash().to_owned(), false))
    }
}

fn run(cli: Cli) -> Result<Exit, CliError> {
    let ctx = Context::new(&cli.global)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    match cli.command {
        Command::Push {
            file,
            reference,
            json,
        } => {
            let target: Reference = reference.parse()?;
            let client = ctx.client()?;
            let wasm = read_input(&file, client.options().max_module_bytes)?;
            let title = file.file_name().and_then(|n| n.to_str()).map(str::to_owned);
            let progress = TerminalProgress::new();
            let pushed =
                runtime.block_on(client.push_wasm(wasm, title.as_deref(), &target, &progress))?;
            if json {
                print_json(&json!({
                    "reference": target.to_string(),
                    "digest": pushed.manifest.digest,
                    "size": pushed.manifest.size,
                    "kind": pushed.kind.as_str(),
                    "layer": { "digest": pushed.layer.digest, "size": pushed.layer.size },
                }));
            } else {
                outln!("{}", pushed.manifest.digest);
            }
            Ok(Exit::Success)
        }
        Command::Pull { reference, json } => {
            let reference: Reference = reference.parse()?;
            let client = ctx.client()?;
            let store = ctx.store()?;
            let progress = TerminalProgress::new();
            let fetched = runtime.block_on(client.pull(&reference, &store, &progress))?;
            if json {
                print_json(&fetched_json(&fetched));
            } else {
                outln!("{}", fetched.digest());
            }
            Ok(Exit::Success)
        }
        Command::Inspect { reference, json } => {
            let reference: Reference = reference.parse()?;
            let client = ctx.client()?;
            runtime.block_on(inspect(&client, &reference, json))
        }
        Command::Keygen { out } => {
            let key = SigningKey::generate()?;
            let public = crate::keys::write_key_pair(&out, &key)?;
            outln!("{}", public.fingerprint());
            Ok(Exit::Success)
        }
        Command::Sign {
            reference,
            key,
            json,
        } => {
            let reference: Reference = reference.parse()?;
            let key = crate::keys::read_signing_key(&key)?;
            let client = ctx.client()?;
            let signature = runtime.block_on(async {
                let resolved = client.resolve(&reference).await?;
                let signature =
                    crate::cosign::sign(&client, &reference, resolved.digest(), &key).await?;
                Ok::<_, CliError>((resolved.digest().clone(), signature))
            })?;
            let (digest, signature) = signature;
            if json {
                print_json(&json!({
                    "digest": digest,
                    "signature": {
                        "tag": registry_client::attached::signature_tag(&digest),
                        "manifest": signature,
                    },
                    "key": key.public_key().fingerprint(),
                }));
            } else {
                outln!("{signature}");
            }
            Ok(Exit::Success)
        }
        Command::Attest {
            reference,
            key,
            predicate,
            predicate_type,
            json,
        } => {
            let reference: Reference = reference.parse()?;
            let Some(predicate_type) = crate::attest::predicate_type(&predicate_type) else {
                return Err(CliError::Usage(format!(
                    "unknown predicate type `{predicate_type}`: use `slsaprovenance1`, `slsaprovenance`, or a URI"
                )));
            };
            let key = crate::keys::read_signing_key(&key)?;
            let predicate = read_input(&predicate, crate::attest::limits::MAX_ENVELOPE_BYTES / 2)?;
            registry_client::json::check_depth(&predicate, registry_client::limits::MAX_JSON_DEPTH)
                .map_err(CliError::Usage)?;
            let predicate: serde_json::Value = serde_json::from_slice(&predicate)
                .map_err(|e| CliError::Usage(format!("the predicate is not JSON: {e}")))?;
            let client = ctx.client()?;
            let (digest, attestation) = runtime.block_on(async {
                let resolved = client.resolve(&reference).await?;
                let attestation = crate::attest::attest(
                    &client,
                    &reference,
                    resolved.digest(),
                    predicate_type,
                    predicate,
                    &key,
                )
                .await?;
                Ok::<_, CliError>((resolved.digest().clone(), attestation))
            })?;
            if json {
                print_json(&json!({
                    "digest": digest,
                    "attestation": {
                        "tag": registry_client::attached::attestation_tag(&digest),
                        "manifest": attestation,
                        "predicateType": predicate_type,
                    },
                    "key": key.public_key().fingerprint(),
                }));
            } else {
                outln!("{attestation}");
            }
            Ok(Exit::Success)
        }
        Command::Verify {
            reference,
            trust,
            attestation_types,
            json,
        } => {
            let reference: Reference = reference.parse()?;
            let required = attestation_types
                .iter()
                .map(|t| {
                    crate::attest::predicate_type(t)
                        .map(str::to_owned)
                        .ok_or_else(|| CliError::Usage(format!("unknown attestation type `{t}`")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let trust = trust.load(&ctx.config)?;
            if trust.is_empty() {
                return Err(CliError::Usage(
                    "give `--key PUB`, or `--certificate-identity` with `--certificate-oidc-issuer`"
                        .into(),
                ));
            }
            let client = ctx.client()?;
            let (verdict, attestations) = runtime.block_on(async {
                // INVARIANT (digest binding): the tag is resolved once; signatures and
                // attestations are looked up by, and must name, that digest.
                let resolved = client.resolve(&reference).await?;
                let found = crate::pipeline::verify_artifact(
                    &client,
                    resolved.reference(),
                    resolved.digest(),
                    &trust,
                )
                .await?;
                Ok::<_, CliError>(found)
            })?;
            let missing: Vec<&String> = required
                .iter()
                .filter(|t| {
                    !attestations
                        .verified
                        .iter()
                        .any(|a| &a.predicate_type == *t)
                })
                .collect();
            let verified = !verdict.signers.is_empty() && missing.is_empty();
            if json {
                print_json(&json!({
                    "reference": reference.to_string(),
                    "verified": verified,
                    "verdict": verdict,
                    "attestations": attestations,
                }));
            } else {
                outln!("digest    {}", verdict.digest);
                for s in &verdict.signers {
                    if s.kind == crate::verify::SignerKind::Keyless {
                        outln!(
                            "verified  keyless signature by `{}` (issuer `{}`)",
                            q(&s.identity),
                            q(&s.issuer)
                        );
                        for (name, value) in &s.claims {
                            outln!("          {} `{}`", q(name), q(value));
                        }
                    } else {
                        outln!("verified  {} signature by `{}`", s.kind, q(&s.identity));
                    }
                }
                for a in &attestations.verified {
                    outln!(
                        "attested  `{}` by `{}`",
                        q(&a.predicate_type),
                        q(&a.signer.identity)
                    );
                    if let Some(p) = &a.provenance {
                        outln!(
                            "          builder `{}`, source `{}` at `{}`",
                            q(&p.builder_id),
                            q(&p.source_repository),
                            q(&p.source_ref)
                        );
                    }
                }
                for r in verdict.rejected.iter().chain(&attestations.rejected) {
                    outln!("rejected  {}: {}", q(&r.source), q(&r.reason));
                }
            }
            if verdict.signers.is_empty() {
                errln!(
                    "warrant: error: verification failed: no signature of `{}` verified ({} rejected)",
                    verdict.digest,
                    verdict.rejected.len()
                );
                return Ok(Exit::Verification);
            }
            if !missing.is_empty() {
                errln!(
                    "warrant: error: verification failed: no verified attestation of `{}` for `{}`",
                    missing
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join("`, `"),
                    verdict.digest
                );
                return Ok(Exit::Verification);
            }
            Ok(Exit::Success)
        }
        Command::VerifyBlob {
            bundle,
            key,
            certificate_identity,
            certificate_oidc_issuer,
            trusted_root,
            json,
            file_or_digest,
        } => {
            let requirement = match (key, certificate_identity, certificate_oidc_issuer) {
                (Some(key), None, None) => SignerRequirement::Key(key),
                (None, Some(identity), Some(issuer)) => {
                    SignerRequirement::Identity { identity, issuer }
                }
                _ => {
                    return Err(CliError::Usage(
                        "give `--key PUB`, or `--certificate-identity` with `--certificate-oidc-issuer`"
                            .into(),
                    ));
                }
            };
            let root = crate::verify::load_trusted_root(trusted_root.as_deref())?;
            let input = BlobInput::parse(&file_or_digest);
            let signer = crate::verify::verify_blob(&bundle, &input, &requirement, &root)?;
            if json {
                print_json(&json!({ "verified": true, "signer": signer }));
            } else {
                outln!(
                    "verified: {} signature by `{}` (issuer `{}`)",
                    signer.kind,
                    signer.identity,
                    signer.issuer
                );
            }
            Ok(Exit::Success)
        }
        Command::Run {
            reference,
            trust,
            asks,
            drop_denied,
            args,
        } => {
            let reference: Reference = reference.parse()?;
            let asks = asks.asks(&ctx.config)?;
            // The engine depends on nothing but whether fuel is metered: it is built while
            // the artifact is resolved, verified and decided.
            // The state (checked to be the user's alone) is opened first: an unsafe state
            // refuses the run before anything else.
            let engine = EngineStart::spawn(asks.fuel.is_some(), ctx.compile_cache()?);
            std::thread::scope(|scope| {
                // The audit log is opened (and a torn tail repaired) before anything is
                // fetched: a log that cannot be written refuses the run. It is opened on
                // another thread while the trust, the policies and the store are read; the
                // scope waits for it whatever happens.
                let opening = std::thread::Builder::new()
                    .name("warrant-audit".into())
                    .spawn_scoped(scope, || ctx.audit());
                let trust = trust.load_with(&ctx.config, true)?;
                let mut policies = RunPolicies::open(&ctx)?;
                let cache = ctx.verdict_cache()?;
                let client = ctx.client()?;
                let store = ctx.store()?;
                let mut audit = match opening {
                    Ok(thread) => thread.join().unwrap_or_else(|_| {
                        Err(CliError::Usage("opening the audit log panicked".into()))
                    }),
                    Err(_) => ctx.audit(),
                }?;
                let ran = run_audited(
                    &ctx,
                    runtime,
                    &client,
                    &store,
                    &reference,
                    &trust,
                    cache.as_ref(),
                    &mut policies,
                    &asks,
                    drop_denied,
                    args,
                    &mut audit,
                    engine,
                );
                // The run's result is reported first (a refusal's records are already
                // durable), then the end-of-run checkpoint is signed.
                let exit = match ran {
                    Ok(exit) => exit,
                    Err(e) => {
                        errln!("warrant: error: {e}");
                        if matches!(e, CliError::Audit(_)) {
                            // The log refused a write: it is poisoned, there is nothing to sign.
                            return Ok(e.exit());
                        }
                        e.exit()
                    }
                };
                audit.finish()?;
                Ok(exit)
            })
        }
        Command::Audit { command } => {
            let (dir, key_path) = ctx.audit_paths();
            let public = match &command {
                AuditCommand::Verify {
                    key: Some(path), ..
                }
                | AuditCommand::Show {
                    key: Some(path), ..
                }
                | AuditCommand::VerifyProof { key: path, .. } => read_verifier_key(path)?,
                _ => crate::audit::load_key(&key_path)?.public_key(),
            };
            match command {
                AuditCommand::Show {
                    digest,
                    since,
                    json,
                    ..
                } => audit_show(&dir, &public, digest.as_deref(), since.as_deref(), json),
                AuditCommand::Prove {
                    index,
                    from,
                    from_checkpoint,
                    to,
                    out,
                } => {
                    let what = match (index, from, from_checkpoint) {
                        (Some(index), ..) => Ok(ProofAsked::Inclusion(index)),
                        (None, Some(from), None) => to
                            .map(|to| ProofAsked::Between(from, to))
                            .ok_or_else(|| CliError::Usage("`--from M` needs `--to N`".into())),
                        (None, None, Some(file)) => {
                            saved_checkpoint(&file).map(|note| ProofAsked::Since(note, to))
                        }
                        _ => Err(CliError::Usage(
                            "give `--index N`, `--from M --to N`, or `--from-checkpoint FILE`"
                                .into(),
                        )),
                    }?;
                    audit_prove(&dir, &public, what, out.as_deref())
                }
                AuditCommand::VerifyProof { file, json, .. } => {
                    audit_verify_proof(&file, &public, json)
                }
                AuditCommand::Key => {
                    outln!("{}", audits::verifier_key(crate::audit::ORIGIN, &public));
                    Ok(Exit::Success)
                }
                AuditCommand::Verify { json, .. } => {
                    match audits::verify(&dir, &public, crate::audit::ORIGIN) {
                        Ok(report) => {
                            if json {
                                print_json(&json!({
                                    "log": dir.display().to_string(),
                                    "intact": true,
                                    "records": report.size,
                                    "checkpoints": report.checkpoints,
                                    "headSize": report.head.as_ref().map(|h| h.size),
                                    "root": hex::encode(report.root),
                                    "unprovenRecords": report.unproven_records,
                                }));
                            } else {
                                outln!(
                                    "{}: intact: {} records, {} kept checkpoints{}, root {}{}",
                                    dir.display(),
                                    report.size,
                                    report.checkpoints,
                                    report.head.as_ref().map_or_else(String::new, |h| format!(
                                        " and the head checkpoint at size {}",
                                        h.size
                                    )),
                                    hex::encode(report.root),
                                    if report.unproven_records > 0 {
                                        format!(
                                            " ({} records after the last checkpoint)",
                                            report.unproven_records
                                        )
                                    } else {
                                        String::new()
                                    }
                                );
                            }
                            Ok(Exit::Success)
                        }
                        Err(failure) => {
                            if json {
                                print_json(&json!({
                                    "log": dir.display().to_string(),
                                    "intact": false,
                                    "failure": failure.to_string(),
                                }));
                            }
                            errln!(
                                "warrant: error: audit log `{}` fails verification: {failure}",
                                dir.display()
                            );
                            Ok(Exit::Verification)
                        }
                    }
                }
            }
        }
        Command::Policy { command } => match command {
            PolicyCommand::Check { json } => {
                let dir = ctx.required_policy_dir()?;
                let policies = crate::policy::Policies::load(&dir)?;
                if json {
                    print_json(&json!({
                        "directory": dir.display().to_string(),
                        "policies": policies.len(),
                        "hash": policies.hash(),
                    }));
                } else {
                    outln!(
                        "{}: {} polic{} valid, {}",
                        dir.display(),
                        policies.len(),
                        if policies.len() == 1 { "y" } else { "ies" },
                        policies.hash()
                    );
                }
                Ok(Exit::Success)
            }
            PolicyCommand::Explain {
                reference,
                trust,
                asks,
                json,
            } => {
                let reference: Reference = reference.parse()?;
                let trust = trust.load_with(&ctx.config, true)?;
                let asks = asks.asks(&ctx.config)?;
                let policies = ctx.policies()?;
                let cache = ctx.verdict_cache()?;
                let client = ctx.client()?;
                let store = ctx.store()?;
                let (_, verified) = resolve_verified(
                    &runtime,
                    &client,
                    &store,
                    &reference,
                    &trust,
                    cache.as_ref(),
                )?;
                let (verdict, attestations, fetched) = verified?;
                let facts = crate::pipeline::facts(&fetched, &verdict, &attestations);
                let decisions = policies.decide_all(&facts, &asks.requests());
                let all = decisions.iter().all(|d| d.allowed);
                if json {
                    print_json(&json!({
                        "reference": reference.to_string(),
                        "policyHash": policies.hash(),
                        "facts": facts,
                        "decisions": decisions,
                        "allowed": all,
                    }));
                } else {
                    out!(
                        "{}",
                        crate::policy::explain_table(&facts, &policies, &decisions)
                    );
                }
                Ok(if all {
                    Exit::Success
                } else {
                    Exit::PolicyDenied
                })
            }
            PolicyCommand::Test { json } => {
                let dir = ctx.required_policy_dir()?;
                let policies = crate::policy::Policies::load(&dir)?;
                let report = crate::policy_tests::run_dir(&policies, &dir.join("tests"))
                    .map_err(CliError::Usage)?;
                if json {
                    print_json(&serde_json::to_value(&report).unwrap_or_default());
                } else {
                    for r in &report.results {
                        outln!(
                            "{}  {}: {}",
                            if r.passed { "pass" } else { "FAIL" },
                            r.name,
                            r.detail
                        );
                    }
                    outln!(
                        "policy tests: {} passed, {} failed",
                        report.passed(),
                        report.failed()
                    );
                }
                Ok(if report.failed() == 0 && !report.results.is_empty() {
                    Exit::Success
                } else {
                    Exit::PolicyDenied
                })
            }
        },
    }
}

/// What verification and fetch yield.
type Verified = (crate::cosign::Verdict, crate::attest::Attestations, Fetched);

/// Resolve `reference` once, then verify and fetch that digest; the verification's outcome is
/// returned beside the resolution so that a caller can record a refusal.
fn resolve_verified(
    runtime: &tokio::runtime::Runtime,
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    trust: &crate::verify::Trust,
    cache: Option<&crate::cache::VerdictCache>,
) -> Result<(Resolved, Result<Verified, crate::pipeline::PipelineError>), CliError> {
    let progress = TerminalProgress::new();
    runtime.block_on(async {
        // A pinned digest whose manifest is in the store needs no registry to resolve (and,
        // with a cached verdict and its blobs stored, none at all).
        let resolved = match Resolved::from_store(store, reference)? {
            Some(resolved) => resolved,
            None => client.resolve(reference).await?,
        };
        let verified =
            crate::pipeline::fetch_verified(client, store, &resolved, trust, cache, &progress)
                .await;
        Ok((resolved, verified))
    })
}

/// The sandbox of a `warrant run`, built on a thread of its own from the start of the run.
/// Compiled code is kept in the state's compile cache: a second run of a digest does not
/// compile it again.
struct EngineStart {
    fuel: bool,
    building: Option<std::thread::JoinHandle<Result<Sandbox, crate::sandbox::SandboxError>>>,
}

impl EngineStart {
    /// Starts building a sandbox that meters fuel when `fuel` (if no thread can be had, the
    /// sandbox is built when it is needed).
    fn spawn(fuel: bool, cache: Option<crate::compiled::CompileCache>) -> Self {
        let building = std::thread::Builder::new()
            .name("warrant-engine".into())
            .spawn(move || Sandbox::configured(fuel, cache))
            .ok();
        Self { fuel, building }
    }

    /// The sandbox, metering fuel when `fuel`: the one built in the background if it was
    /// started for the same, else one built now.
    fn sandbox(self, fuel: bool, ctx: &Context) -> Result<Sandbox, CliError> {
        let built = match self.building {
            Some(thread) if self.fuel == fuel => thread.join().unwrap_or_else(|_| {
                Err(crate::sandbox::SandboxError::Engine(
                    "building the engine panicked".into(),
                ))
            }),
            _ => Sandbox::configured(fuel, ctx.compile_cache()?),
        };
        Ok(built?)
    }
}

/// The audited part of `run`: resolve, verify, decide and run, recording each stage in
/// `audit`. Records are written deferred (group commit); the grant (or a refusal) is committed
/// with one `fdatasync` before it takes effect.
#[expect(
    clippy::too_many_arguments,
    reason = "the stages' inputs, resolved once by the caller; a struct would only rename them"
)]
fn run_audited(
    ctx: &Context,
    runtime: tokio::runtime::Runtime,
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    trust: &crate::verify::Trust,
    cache: Option<&crate::cache::VerdictCache>,
    policies: &mut RunPolicies,
    asks: &Asks,
    drop_denied: bool,
    args: Vec<String>,
    audit: &mut crate::audit::Audit,
    engine: EngineStart,
) -> Result<Exit, CliError> {
    let (resolved, verified) = resolve_verified(&runtime, client, store, reference, trust, cache)?;
    // The reference as resolved (a layout by its canonical path): the name the policies decide.
    audit.record(
        "pull",
        json!({
            "reference": resolved.reference().to_string(),
            "digest": resolved.digest().to_string(),
        }),
    )?;
    let (verdict, attestations, fetched) = match verified {
        Ok(v) => v,
        Err(crate::pipeline::PipelineError::Unverified(verdict)) => {
            audit.record_before_effect(
                "verify",
                json!({"digest": verdict.digest.to_string(), "trust": trust.id(),
               "verified": false, "verdict": verdict}),
            )?;
            // The refusal is durable before it is reported.
            return Err(CliError::Pipeline(
                crate::pipeline::PipelineError::Unverified(verdict),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    drop(runtime);
    for signer in &verdict.signers {
        tracing::info!(digest = %verdict.digest, signer = %signer.identity, "verified");
    }
    audit.record(
        "verify",
        json!({"digest": verdict.digest.to_string(), "trust": trust.id(),
       "verified": true, "verdict": verdict,
       "attestations": attestations.verified}),
    )?;
    let facts = crate::pipeline::facts(&fetched, &verdict, &attestations);
    let (granted, policy_hash, remembered) = policies.grant(&facts, asks, drop_denied)?;
    let decisions = match &granted {
        Ok(grant) => grant.decisions(),
        Err(denial) => &denial.decisions,
    };
    let decide = json!({
    "digest": facts.digest().to_string(),
    "policyHash": policy_hash,
    "remembered": remembered,
    "allowed": granted.is_ok(),
    "decisions": decisions,
    });
    let grant = match granted {
        Ok(grant) => grant,
        Err(denial) => {
            // The denial is durable before it is reported.
            audit.record_before_effect("decide", decide)?;
            return Err(CliError::Denied(Box::new(denial)));
        }
    };
    audit.record("decide", decide)?;
    for d in grant.decisions().iter().filter(|d| !d.allowed) {
        errln!("warrant: dropped `{}`: {}", d.request, d.explanation());
    }
    let output_bytes = ctx
        .config
        .run
        .output_bytes
        .unwrap_or(crate::sandbox::limits::DEFAULT_OUTPUT_BYTES);
    let wasm = checked_module(&fetched, reference, &grant)?;
    let limits = RunLimits::of(&grant, output_bytes);
    let sandbox = engine.sandbox(limits.fuel.is_some(), ctx)?;
    // INVARIANT (audit before effect): the grant, and every record of this run before it,
    // is committed (one fdatasync) before the guest is instantiated. The module is compiled
    // (or loaded from the compile cache) and linked meanwhile, on another thread: that runs
    // no guest code, and a failed commit drops it unused.
    let preparing = sandbox.start_prepare(wasm)?;
    audit.record_before_effect(
        "instantiate",
        crate::audit::instantiate_body(&grant, output_bytes),
    )?;
    let prepared = preparing.wait()?;
    let mut argv = vec![reference.to_string()];
    argv.extend(args);
    let finished = sandbox.run_prepared(&prepared, &argv, &limits, &Handles::of(&grant))?;
    report_guest(&fetched, finished, audit)
}

/// A verifier key file, as `warrant audit key` prints it.
fn read_verifier_key(path: &Path) -> Result<[u8; 32], CliError> {
    use std::io::Read as _;
    let input = |source| CliError::Input {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(input)?
        .take(4096)
        .read_to_string(&mut text)
        .map_err(input)?;
    crate::audit::parse_verifier_key(&text)
        .map_err(|e| CliError::Usage(format!("`{}`: {e}", path.display())))
}

/// `warrant audit show`: the proven records, filtered, as a timeline or as JSON lines.
fn audit_show(
    dir: &Path,
    public: &[u8; 32],
    digest: Option<&str>,
    since: Option<&str>,
    json: bool,
) -> Result<Exit, CliError> {
    let since = since
        .map(|text| crate::audit::parse_since(text, std::time::SystemTime::now()))
        .transpose()
        .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
    let terminal = std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout().lock();
    let mut closed = false;
    let result = audits::read_proven(dir, public, crate::audit::ORIGIN, &mut |record, line| {
        if closed
            || digest.is_some_and(|d| !crate::audit::about_digest(&record, d))
            || since.is_some_and(|t| record.system_time().is_none_or(|rt| rt < t))
        {
            return;
        }
        let written = if json && terminal {
            // The record's value, with any control or bidirectional character in it escaped.
            let text = String::from_utf8_lossy(line);
            writeln!(stdout, "{}", registry_client::text::json(&text))
        } else if json {
            // The records themselves, byte for byte, for a program to read.
            stdout
                .write_all(line)
                .and_then(|()| stdout.write_all(b"\n"))
        } else {
            let line = crate::audit::timeline_line(&record);
            writeln!(stdout, "{}", registry_client::text::for_terminal(&line))
        };
        // A closed pipe (`| head`) ends the output, not the check.
        closed = written.is_err();
    });
    let _ = stdout.flush();
    match result {
        Ok(_) => Ok(Exit::Success),
        Err(failure) => {
            errln!(
                "warrant: error: audit log `{}` fails verification: {failure}; only the records proven before it were shown",
                dir.display()
            );
            Ok(Exit::Verification)
        }
    }
}

/// `warrant audit prove`: an inclusion or a consistency proof, as JSON.
/// What `warrant audit prove` is asked to prove.
enum ProofAsked {
    /// Record N is in the log.
    Inclusion(u64),
    /// The log at checkpoint size N extends the log at checkpoint size M.
    Between(u64, u64),
    /// The log (at checkpoint size N, or its newest) extends a checkpoint kept elsewhere.
    Since(String, Option<u64>),
}

/// A checkpoint note from `file`: the note itself, or the newest checkpoint of a proof file
/// (`newCheckpoint` of a consistency proof, `checkpoint` of an inclusion proof).
fn saved_checkpoint(file: &Path) -> Result<String, CliError> {
    let bytes = read_input(file, audits::proof::MAX_PROOF_BYTES as u64)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("`{}` is not UTF-8 text", file.display())))?;
    let from_proof = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            ["newCheckpoint", "checkpoint"].iter().find_map(|k| {
                v.get(*k)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            })
        });
    Ok(from_proof.unwrap_or_else(|| text.strip_suffix('\n').unwrap_or(&text).to_owned()))
}

fn audit_prove(
    dir: &Path,
    public: &[u8; 32],
    asked: ProofAsked,
    out: Option<&Path>,
) -> Result<Exit, CliError> {
    let origin = crate::audit::ORIGIN;
    let made = match asked {
        ProofAsked::Inclusion(index) => {
            audits::prove_inclusion(dir, public, origin, index).map(|p| {
                let what = format!(
                    "inclusion proof of record {index} against the checkpoint of size {}",
                    p.tree_size
                );
                (serde_json::to_value(p), what)
            })
        }
        ProofAsked::Between(from, to) => audits::prove_consistency(dir, public, origin, from, to)
            .map(|p| {
                let what = format!("consistency proof from size {from} to size {to}");
                (serde_json::to_value(p), what)
            }),
        ProofAsked::Since(note, to) => {
            audits::prove_consistency_from(dir, public, origin, &note, to).map(|p| {
                let what = format!(
                    "consistency proof from the checkpoint given (size {}) to size {}",
                    p.old_size, p.new_size
                );
                (serde_json::to_value(p), what)
            })
        }
    };
    let (value, what) = match made {
        Ok((Ok(value), what)) => (value, what),
        Ok((Err(e), _)) => {
            return Err(CliError::Usage(format!("cannot write the proof: {e}")));
        }
        Err(audits::ProveError::Log(failure)) => {
            errln!(
                "warrant: error: audit log `{}` fails verification: {failure}",
                dir.display()
            );
            return Ok(Exit::Verification);
        }
        Err(e @ (audits::ProveError::Rewritten { .. } | audits::ProveError::BeyondLog { .. })) => {
            errln!("warrant: error: audit log `{}`: {e}", dir.display());
            return Ok(Exit::Verification);
        }
        Err(e) => return Err(CliError::Usage(e.to_string())),
    };
    let mut text = serde_json::to_string_pretty(&value)
        .map_err(|e| CliError::Usage(format!("cannot write the proof: {e}")))?;
    text.push('\n');
    match out {
        Some(path) => {
            std::fs::write(path, text).map_err(|source| CliError::Input {
                path: path.to_owned(),
                source,
            })?;
            errln!("wrote the {what} to `{}`", path.display());
        }
        // The same JSON, with any control or bidirectional character escaped.
        None => print!("{}", registry_client::text::json(&text)),
    }
    Ok(Exit::Success)
}

/// `warrant audit verify-proof`: check a proof with the verifier key alone.
fn audit_verify_proof(file: &Path, public: &[u8; 32], json: bool) -> Result<Exit, CliError> {
    let input = |source| CliError::Input {
        path: file.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(file).map_err(input)?,
            audits::proof::MAX_PROOF_BYTES as u64 + 1,
        ),
        &mut bytes,
    )
    .map_err(input)?;
    let key_id = hex::encode(audits::key_id(crate::audit::ORIGIN, public));
    match audits::verify_proof(&bytes, crate::audit::ORIGIN, public) {
        Ok(audits::Proven::Inclusion { record, checkpoint }) => {
            if json {
                print_json(&json!({
                    "verified": true,
                    "type": "inclusion",
                    "index": record.index,
                    "treeSize": checkpoint.size,
                    "root": hex::encode(checkpoint.root),
                    "keyId": key_id,
                    "record": {
                        "index": record.index, "time": record.time, "kind": record.kind,
                        "body": record.body,
                    },
                }));
            } else {
                outln!(
                    "verified: record {} is in the log `{}` of {} records, root {}, checkpoint signed by key {key_id}",
                    record.index,
                    checkpoint.origin,
                    checkpoint.size,
                    hex::encode(checkpoint.root)
                );
                outln!("{}", crate::audit::timeline_line(&record));
            }
            Ok(Exit::Success)
        }
        Ok(audits::Proven::Consistency { old, new }) => {
            if json {
                print_json(&json!({
                    "verified": true,
                    "type": "consistency",
                    "oldSize": old.size,
                    "oldRoot": hex::encode(old.root),
                    "newSize": new.size,
                    "newRoot": hex::encode(new.root),
                    "keyId": key_id,
                }));
            } else {
                outln!(
                    "verified: the log `{}` of {} records (root {}) extends its log of {} records (root {}); both checkpoints signed by key {key_id}",
                    new.origin,
                    new.size,
                    hex::encode(new.root),
                    old.size,
                    hex::encode(old.root)
                );
            }
            Ok(Exit::Success)
        }
        Err(failure) => {
            if json {
                print_json(&json!({"verified": false, "failure": failure.to_string()}));
            }
            errln!(
                "warrant: error: proof `{}` refused: {failure}",
                file.display()
            );
            Ok(Exit::Verification)
        }
    }
}

/// The module's bytes, read from the store and checked to be what was verified and decided.
fn checked_module(
    fetched: &Fetched,
    reference: &Reference,
    grant: &crate::policy::Grant,
) -> Result<Vec<u8>, CliError> {
    // INVARIANT (grant binding): the grant was decided for this very digest.
    if grant.digest() != fetched.digest() {
        return Err(CliError::Usage(format!(
            "the grant is for `{}`, not `{}`",
            grant.digest(),
            fetched.digest()
        )));
    }
    // INVARIANT (digest binding): the bytes handed to the engine are hashed here, in memory,
    // and must equal the layer digest of the manifest that was resolved.
    let path = fetched.module_path().to_owned();
    let wasm = std::fs::read(&path).map_err(|source| CliError::Input {
        path: path.clone(),
        source,
    })?;
    let actual = Digest::of(&wasm);
    if actual != fetched.layer().digest {
        return Err(CliError::StoreCorrupt {
            path,
            expected: fetched.layer().digest.clone(),
            actual,
        });
    }
    // The sandbox runs the bytes as what they are; they must be what was verified and decided.
    let kind = registry_client::WasmKind::detect(&wasm);
    if kind != Some(fetched.kind()) {
        return Err(CliError::Usage(format!(
            "`{reference}` is published as a {} but its bytes are {}",
            fetched.kind().as_str(),
            kind.map_or("not WebAssembly", registry_client::WasmKind::as_str)
        )));
    }
    Ok(wasm)
}

/// Forward the guest's captured output, record its outcome, and map it to the exit status.
fn report_guest(
    fetched: &Fetched,
    finished: crate::sandbox::Finished,
    audit: &mut crate::audit::Audit,
) -> Result<Exit, CliError> {
    write_guest_output(
        &mut std::io::stdout(),
        &finished.stdout,
        std::io::stdout().is_terminal(),
    );
    write_guest_output(
        &mut std::io::stderr(),
        &finished.stderr,
        std::io::stderr().is_terminal(),
    );
    let digest = fetched.digest();
    let (how, detail) = match &finished.outcome {
        Outcome::Exited(status) => ("exit", json!(status)),
        Outcome::Limited { limit, detail } => (
            "limit",
            json!({"limit": format!("{limit:?}"), "detail": detail}),
        ),
        Outcome::Trapped(reason) => ("trap", json!(reason)),
    };
    audit.record(
        "outcome",
        json!({
            "digest": digest.to_string(),
            "outcome": how,
            "detail": detail,
            "elapsedUs": u64::try_from(finished.elapsed.as_micros()).unwrap_or(u64::MAX),
            "stdoutBytes": finished.stdout.len(),
            "stderrBytes": finished.stderr.len(),
        }),
    )?;
    Ok(match finished.outcome {
        Outcome::Exited(status) => match u8::try_from(status) {
            Ok(s) if s <= MAX_GUEST_STATUS => Exit::Guest(s),
            _ => {
                errln!(
                    "warrant: guest `{digest}` exited with status {status}, outside 0–{MAX_GUEST_STATUS} (121–125 are warrant's own)"
                );
                Exit::Trap
            }
        },
        Outcome::Limited { limit, detail } => {
            errln!(
                "warrant: guest `{digest}` stopped by its {limit:?} limit after {:?}: {detail}",
                finished.elapsed
            );
            Exit::Limit
        }
        Outcome::Trapped(reason) => {
            errln!("warrant: guest `{digest}` trapped: {reason}");
            Exit::Trap
        }
    })
}

/// Write guest output; on a terminal, neutralise control characters (C0, DEL, C1: escape
/// sequences could rewrite the screen or the title) and bidirectional formatting, except
/// newline, tab and carriage return.
fn write_guest_output(sink: &mut dyn Write, bytes: &[u8], terminal: bool) {
    if terminal {
        // As UTF-8 (a byte that is not, such as a lone 8-bit `CSI`, becomes U+FFFD), with every
        // control and bidirectional character but newline, tab and carriage return replaced.
        let cleaned: String = String::from_utf8_lossy(bytes)
            .chars()
            .map(|c| match c {
                '\n' | '\t' | '\r' => c,
                c if registry_client::text::is_unsafe(c) => '?',
                c => c,
            })
            .collect();
        let _ = sink.write_all(cleaned.as_bytes());
    } else {
        let _ = sink.write_all(bytes);
    }
    let _ = sink.flush();
}

fn read_input(path: &Path, limit: u64) -> Result<Vec<u8>, CliError> {
    let meta = std::fs::metadata(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })?;
    if meta.len() > limit {
        return Err(CliError::Usage(format!(
            "`{}` is {} bytes; the module limit is {limit}",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|source| CliError::Input {
        path: path.to_owned(),
        source,
    })
}

fn fetched_json(fetched: &Fetched) -> serde_json::Value {
    json!({
        "reference": fetched.resolved().reference().to_string(),
        "digest": fetched.digest(),
        "kind": fetched.kind().as_str(),
        "layer": { "digest": fetched.layer().digest, "size": fetched.layer().size },
        "path": fetched.module_path(),
    })
}

async fn inspect(
    client: &RegistryClient,
    reference: &Reference,
    json: bool,
) -> Result<Exit, CliError> {
    let resolved: Resolved = client.resolve(reference).await?;
    let config_bytes = client.fetch_config(&resolved).await?;
    let referrers = match reference {
        Reference::Registry(r) => Some(client.referrers(r, resolved.digest()).await?),
        Reference::Layout(_) => None,
    };
    let manifest = resolved.manifest().manifest();
    let config: serde_json::Value =
        serde_json::from_slice(&config_bytes).unwrap_or(serde_json::Value::Null);
    if json {
        let manifest_value: serde_json::Value =
            serde_json::from_slice(resolved.manifest_bytes()).unwrap_or(serde_json::Value::Null);
        print_json(&json!({
            "reference": reference.to_string(),
            "digest": resolved.digest(),
            "manifest": manifest_value,
            "config": config,
            "referrers": referrers.as_ref().map(|r| &r.manifests),
        }));
        return Ok(Exit::Success);
    }
    outln!("reference  {reference}");
    outln!("digest     {}", resolved.digest());
    outln!(
        "manifest   {} ({} bytes)",
        registry_client::manifest::MEDIA_TYPE_OCI_MANIFEST,
        resolved.manifest_bytes().len()
    );
    outln!(
        "config     {} {} ({} bytes){}",
        q(&manifest.config.media_type),
        manifest.config.digest,
        manifest.config.size,
        match (config.get("os"), config.get("architecture")) {
            (Some(os), Some(arch)) => format!(
                " os={} architecture={}",
                q(os.as_str().unwrap_or("?")),
                q(arch.as_str().unwrap_or("?"))
            ),
            _ => String::new(),
        }
    );
    for layer in &manifest.layers {
        let title = layer
            .annotations
            .get(registry_client::manifest::ANNOTATION_TITLE)
            .map(|t| format!(" {}", q(t)))
            .unwrap_or_default();
        outln!(
            "layer      {} {} ({} bytes){title}",
            q(&layer.media_type),
            layer.digest,
            layer.size
        );
    }
    match referrers {
        Some(r) if r.manifests.is_empty() => outln!("referrers  none ({:?})", r.source),
        Some(r) => {
            for d in &r.manifests {
                outln!(
                    "referrer   {} {} ({:?})",
                    q(d.artifact_type.as_deref().unwrap_or(&d.media_type)),
                    d.digest,
                    r.source
                );
            }
        }
        None => outln!("referrers  not listed for image layouts"),
    }
    Ok(Exit::Success)
}

/// An untrusted value inside a line of output: control and bidirectional characters, line
/// breaks included, escaped.
fn q(text: &str) -> std::borrow::Cow<'_, str> {
    registry_client::text::one_line(text)
}

fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        // The same JSON value, with any control or bidirectional character in its strings
        // written as an escape.
        Ok(s) => println!("{}", registry_client::text::json(&s)),
        Err(e) => errln!("warrant: error: cannot print JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_are_accepted_before_and_after_the_subcommand() {
        let before = Cli::try_parse_from(["warrant", "--store", "/s", "pull", "x/y:z"]).unwrap();
        let after = Cli::try_parse_from(["warrant", "pull", "x/y:z", "--store", "/s"]).unwrap();
        assert_eq!(before.global.store, after.global.store);
        assert_eq!(after.global.store.as_deref(), Some(Path::new("/s")));
    }

    #[test]
    fn guest_output_is_neutralised_on_a_terminal_only() {
        let mut out = Vec::new();
        write_guest_output(&mut out, b"a\x1b]0;pwned\x07b\n", true);
        assert_eq!(out, b"a?]0;pwned?b\n");
        let mut out = Vec::new();
        write_guest_output(&mut out, b"a\x1bb", false);
        assert_eq!(out, b"a\x1bb");
        // C1 controls, as UTF-8 or as a lone 8-bit byte, and bidirectional overrides.
        let mut out = Vec::new();
        write_guest_output(&mut out, "c1\u{9b}2J \u{202e}txt\n".as_bytes(), true);
        assert_eq!(out, "c1?2J ?txt\n".as_bytes());
        let mut out = Vec::new();
        write_guest_output(&mut out, b"raw\x9b2J", true);
        assert_eq!(out, "raw\u{fffd}2J".as_bytes());
    }
}
