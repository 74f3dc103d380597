//! Pods: what a containerd shim (`containerd-shim-warrant-v1`) asks of the library to run a
//! Kubernetes pod's container through every stage.
//!
//! The shim hands over the container's image as containerd knows it — its name and its
//! manifest's descriptor — a way to read blobs from containerd's content store by digest, and
//! the container's spec (arguments, environment, memory limit, namespace, pod). [`Node::admit`]
//! then:
//!
//! 1. reads the manifest, the config and the layer from the content store **by digest**, and
//!    hashes each: a blob that does not match its digest is refused (and the refusal
//!    recorded), whatever containerd unpacked from it. Nothing is read from the container's
//!    root file system;
//! 2. puts them in the node's store and resolves `REPOSITORY@DIGEST` from there, so the
//!    digest verified is the digest containerd pulled;
//! 3. verifies its signatures in the image's registry under the node's trust (`[verify]`),
//!    fetches (the store already holds the blobs), and asks the node's policies for
//!    `instantiate` on `Runtime::"k8s/<namespace>"` (with `context.pod`) and an `env.read`
//!    for each environment variable;
//! 4. compiles the granted guest ([`AdmittedPod`]), which runs with its output on the task's
//!    pipes and stops when the task is killed.
//!
//! Every refusal names what failed; each is in the node's audit log before it is returned.

use std::future::Future;
use std::path::{Path, PathBuf};

use registry_client::limits::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use registry_client::manifest::{ImageIndex, is_index_type, is_manifest_type};
use registry_client::{
    Descriptor, Digest, ImageConfig, ImageManifest, Reference, Selector, WasmManifest,
};

use crate::policy::{Asks, EnvValue, Runtime};
use crate::records;
use crate::sandbox::{Finished, Outcome, Output, Stop};
use crate::stages::{Broker, Error, Prepared};

/// Where a node's configuration is when `$WARRANT_CONFIG` does not say.
pub const NODE_CONFIG: &str = "/etc/warrant/warrant.toml";

/// A node's private state when `[k8s] data_dir` does not say.
pub const NODE_DATA_DIR: &str = "/var/lib/warrant";

/// Memory for a container with no memory limit when the configuration names none: the CLI's
/// default.
pub const DEFAULT_POD_MEMORY_BYTES: u64 = crate::sandbox::limits::DEFAULT_MEMORY_BYTES;

/// The deadline a pod asks for when the node sets none: as long as can be asked, so that a
/// policy bounding `context.timeoutMs` denies it, and one that does not lets it run until it
/// exits or is stopped.
pub const UNBOUNDED_TIMEOUT_MS: u64 = i64::MAX.unsigned_abs();

/// Reads blobs by digest (containerd's content store). What it returns is untrusted: each
/// blob is hashed by [`Node::admit`].
pub trait ContentSource {
    /// The blob `digest`, at most `limit` bytes (an error past that).
    fn read(
        &self,
        digest: &Digest,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
}

/// A container as containerd describes it.
#[derive(Clone, Debug)]
pub struct PodSpec {
    /// The image's name in containerd (`registry.example.com/team/app:v1`).
    pub image: String,
    /// The image's target: its manifest's (or, for a multi-platform image, its index's) media
    /// type and digest.
    pub manifest: Descriptor,
    /// The Kubernetes namespace (else the containerd namespace).
    pub namespace: String,
    /// The pod's name (else the container's id).
    pub pod: String,
    /// The process's arguments, `argv[0]` first (the module's path, as the image names it).
    pub args: Vec<String>,
    /// The process's environment, `NAME=value`.
    pub env: Vec<String>,
    /// The container's memory limit, if it sets one.
    pub memory_limit: Option<u64>,
}

/// Why a pod was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The node's configuration cannot be used.
    #[error("node configuration `{path}`: {reason}", path = .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The container's spec cannot be run as asked.
    #[error("container: {0}")]
    Spec(String),
    /// A blob could not be read from containerd's content store.
    #[error("content store: {0}")]
    Content(String),
    /// The image is refused before any stage could take it (recorded as `refused`).
    #[error("image `{image}`: {reason}")]
    Refused {
        /// The image's name.
        image: String,
        /// Why.
        reason: String,
    },
    /// A stage refused it (verification, policy, compilation), or the log failed.
    #[error(transparent)]
    Stage(#[from] Error),
}

/// A node: its configuration, trust and policies, and a broker with its store and audit log.
pub struct Node {
    broker: Broker,
    k8s: crate::config::K8sConfig,
    default_memory: u64,
}

/// The memory a container without a memory limit is run with: `[k8s] memory_bytes`, else
/// `[run] memory_bytes`, else [`DEFAULT_POD_MEMORY_BYTES`].
pub fn default_pod_memory(config: &crate::config::Config) -> u64 {
    config
        .k8s
        .memory_bytes
        .or(config.run.memory_bytes)
        .map_or(DEFAULT_POD_MEMORY_BYTES, |size| size.0)
}

/// The deadline a pod's `instantiate` asks for: `[k8s] timeout`, else
/// [`UNBOUNDED_TIMEOUT_MS`].
pub fn pod_timeout_ms(k8s: &crate::config::K8sConfig) -> u64 {
    k8s.timeout.map_or(UNBOUNDED_TIMEOUT_MS, |span| {
        u64::try_from(span.0.as_millis()).unwrap_or(UNBOUNDED_TIMEOUT_MS)
    })
}

impl Node {
    /// The node's configuration file: `$WARRANT_CONFIG`, else [`NODE_CONFIG`].
    pub fn config_path() -> PathBuf {
        std::env::var_os("WARRANT_CONFIG").map_or_else(|| PathBuf::from(NODE_CONFIG), PathBuf::from)
    }

    /// Open the node configured by `path`. A node must trust at least one signer (`[verify]
    /// keys` or `certificate_identities`): it never runs an unsigned image.
    pub fn open(path: &Path) -> Result<Self, PodError> {
        let invalid = |reason: String| PodError::Config {
            path: path.to_owned(),
            reason,
        };
        let config = crate::config::Config::load(path).map_err(|e| invalid(e.to_string()))?;
        let keys = config
            .verify
            .keys
            .iter()
            .map(|p| crate::keys::read_public_key(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let identities = config.identities().map_err(invalid)?;
        let root = crate::verify::load_trusted_root(config.verify.trusted_root.as_deref())
            .map_err(|e| invalid(e.to_string()))?;
        let trust = crate::verify::Trust::new(keys, identities, &root)
            .map_err(|e| invalid(e.to_string()))?;
        if trust.is_empty() {
            return Err(invalid(
                "it trusts no signer: set `[verify] keys` or `certificate_identities`".into(),
            ));
        }
        let data_dir = config
            .k8s
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(NODE_DATA_DIR));
        let mut broker_config = crate::stages::Config::new(data_dir, trust);
        broker_config.store = config.store.clone();
        broker_config.policies = config.policies.clone();
        broker_config.audit_log = config.audit_log.clone();
        broker_config.audit_key = config.audit_key.clone();
        broker_config.audit_keep_every = config.audit_keep_every;
        // Each pod's shim writes the node's one log, and several are alive at once.
        broker_config.audit_shared = true;
        broker_config.registry = config
            .client_options()
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(ttl) = config.verify.cache_ttl {
            broker_config.verdict_ttl = ttl.0;
        }
        let broker = Broker::open(broker_config)?;
        let default_memory = default_pod_memory(&config);
        Ok(Self {
            broker,
            k8s: config.k8s,
            default_memory,
        })
    }

    /// The broker the node's pods go through.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Take `spec`'s image through every stage, its blobs read from `content` by digest and
    /// hashed. Returns the compiled, granted guest, or why not (already in the audit log).
    pub async fn admit(
        &self,
        spec: &PodSpec,
        content: &impl ContentSource,
    ) -> Result<AdmittedPod, PodError> {
        let runtime = Runtime::pod(&spec.namespace, &spec.pod).map_err(PodError::Spec)?;
        let reference = self
            .image_blobs(spec, content)
            .await
            .map_err(|reason| self.refused(spec, &runtime, reason))??;
        let resolution = self.broker.resolve(&reference).await?;
        let verified = self.broker.verify(resolution).await?;
        let artifact = self.broker.fetch(verified).await?;
        let (memory_bytes, env) = self.asks_of(spec)?;
        let asks = Asks {
            memory_bytes,
            timeout_ms: pod_timeout_ms(&self.k8s),
            fuel: None,
            dirs: Vec::new(),
            env,
            net: Vec::new(),
            http: Vec::new(),
            runtime,
        };
        let granted = self.broker.decide(artifact, &asks, self.k8s.drop_denied)?;
        let prepared = self.broker.prepare(granted)?;
        Ok(AdmittedPod {
            prepared,
            argv: spec.args.clone(),
        })
    }

    /// Read the image's manifest, config and layer from `content`, hash each against its
    /// digest, and put them in the store. `Err` is a refusal's reason; `Ok(Err)` a failure
    /// of the store itself.
    async fn image_blobs(
        &self,
        spec: &PodSpec,
        content: &impl ContentSource,
    ) -> Result<Result<Reference, PodError>, String> {
        let reference: Reference = spec
            .image
            .parse()
            .map_err(|e| format!("its name is not a registry reference: {e}"))?;
        let Reference::Registry(registry_ref) = reference else {
            return Err("its name is not a registry reference".into());
        };
        // The image's target: a manifest, or (a multi-platform image) an index whose Wasm
        // entry is the manifest run. Each is read by digest and re-hashed.
        let target_type = spec.manifest.media_type.as_str();
        let (index, manifest_descriptor) = match target_type {
            t if is_manifest_type(t) => (None, spec.manifest.clone()),
            t if is_index_type(t) => {
                let bytes = read_checked(
                    content,
                    &spec.manifest.digest,
                    MAX_MANIFEST_BYTES,
                    "image index",
                )
                .await?;
                let what = format!("image index `{}`", spec.manifest.digest);
                let entry = ImageIndex::parse(&bytes, &what)
                    .and_then(|index| index.wasm_entry(&what).cloned())
                    .map_err(|e| e.to_string())?;
                (Some((bytes, target_type.to_owned())), entry)
            }
            other => {
                return Err(format!(
                    "its target is `{}`, not an image manifest or index (OCI, or Docker's \
                     schema 2)",
                    registry_client::text::one_line(other)
                ));
            }
        };
        let manifest_bytes = read_checked(
            content,
            &manifest_descriptor.digest,
            MAX_MANIFEST_BYTES,
            "manifest",
        )
        .await?;
        if index.is_some() && manifest_bytes.len() as u64 != manifest_descriptor.size {
            return Err(format!(
                "manifest `{}` is not the size its index says",
                manifest_descriptor.digest
            ));
        }
        let wasm =
            WasmManifest::new(ImageManifest::parse(&manifest_bytes).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let config = wasm.config().clone();
        let layer = wasm.layer().clone();
        let config_bytes =
            read_checked(content, &config.digest, MAX_CONFIG_BYTES, "config").await?;
        if config_bytes.len() as u64 != config.size {
            return Err(format!(
                "config `{}` is not the size its manifest says",
                config.digest
            ));
        }
        if let registry_client::Form::Image(_) = wasm.form() {
            // The container runs the module the signed image names, or nothing: a command
            // naming another file is refused, not followed into the root file system.
            let (_, entrypoint) =
                ImageConfig::parse_wasm(&config_bytes).map_err(|e| e.to_string())?;
            let wanted =
                registry_client::image_layer::normalise(&entrypoint).map_err(|e| e.to_string())?;
            let command = spec.args.first().map(String::as_str).unwrap_or_default();
            if registry_client::image_layer::normalise(command)
                .ok()
                .as_deref()
                != Some(wanted.as_str())
            {
                return Err(format!(
                    "the container's command `{}` is not the image's entrypoint `{}`: only the module the signed image names is run",
                    registry_client::text::one_line(command),
                    registry_client::text::one_line(&entrypoint)
                ));
            }
        }
        let max_layer = self.broker.registry_options().max_module_bytes;
        let layer_bytes = read_checked(content, &layer.digest, max_layer, "layer").await?;
        if layer_bytes.len() as u64 != layer.size {
            return Err(format!(
                "layer `{}` is not the size its manifest says",
                layer.digest
            ));
        }
        let store = self.broker.store();
        let manifest_descriptor = Descriptor {
            size: manifest_bytes.len() as u64,
            ..manifest_descriptor
        };
        let put = || -> Result<(), registry_client::Error> {
            store.put_blob(&layer_bytes, &layer, "layer")?;
            store.put_blob(&config_bytes, &config, "config")?;
            store.put_blob(&manifest_bytes, &manifest_descriptor, "manifest")?;
            if let Some((index, media_type)) = &index {
                // Last: a stored index's entry is always in the store too.
                store.put_blob(index, &Descriptor::of(media_type, index), "image index")?;
            }
            Ok(())
        };
        Ok(put()
            .map(|()| {
                Reference::Registry(
                    registry_ref.with_selector(Selector::Digest(spec.manifest.digest.clone())),
                )
            })
            .map_err(|e| PodError::Stage(Error::Registry(e))))
    }

    /// Record a refusal and make it the error.
    fn refused(&self, spec: &PodSpec, runtime: &Runtime, reason: String) -> PodError {
        let record = records::Refused {
            runtime: runtime.id(),
            pod: &spec.pod,
            image: &spec.image,
            digest: &spec.manifest.digest,
            reason: &reason,
        };
        if let Err(e) = self.broker.record_refused(&record) {
            return PodError::Stage(e);
        }
        PodError::Refused {
            image: spec.image.clone(),
            reason,
        }
    }

    /// The memory and the environment variables `spec` asks for.
    fn asks_of(&self, spec: &PodSpec) -> Result<(u64, Vec<(String, EnvValue)>), PodError> {
        let env = spec
            .env
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    Ok((name.to_owned(), EnvValue::from(value)))
                }
                _ => Err(PodError::Spec(format!(
                    "environment entry `{}` is not NAME=value",
                    registry_client::text::one_line(pair)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((spec.memory_limit.unwrap_or(self.default_memory), env))
    }
}

/// A pod's container verified, granted and compiled: ready to run.
pub struct AdmittedPod {
    prepared: Prepared,
    argv: Vec<String>,
}

impl AdmittedPod {
    /// What ran through the stages.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// Run the guest with the container's arguments, its output to `output`, until it ends or
    /// `stop` is used. Records `outcome`.
    pub fn run(&self, output: Output, stop: &Stop) -> Result<Finished, Error> {
        self.prepared.run_argv(&self.argv, output, Some(stop))
    }
}

/// The task's exit status for a run that ended as `outcome`, stopped by `signal` if it was:
/// the guest's own status (0–255), 128 + the signal when stopped, 137 when a limit stopped it
/// (as the kernel's out-of-memory kill reads) and 134 when it trapped (as an abort reads).
pub fn exit_status(outcome: &Outcome, signal: Option<u32>) -> u32 {
    match outcome {
        Outcome::Exited(status) => u32::try_from(*status)
            .ok()
            .filter(|s| *s <= 255)
            .unwrap_or(1),
        Outcome::Stopped => 128 + signal.unwrap_or(9),
        Outcome::Limited { .. } => 137,
        Outcome::Trapped(_) => 134,
    }
}

/// Read `digest` from `content` and check the bytes hash to it.
async fn read_checked(
    content: &impl ContentSource,
    digest: &Digest,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, String> {
    let bytes = content
        .read(digest, limit)
        .await
        .map_err(|e| format!("cannot read its {what} `{digest}` from containerd: {e}"))?;
    // INVARIANT (digest binding): the content store is untrusted; what it returns must hash
    // to the digest asked for, or the pod is refused.
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(format!(
            "its {what} in containerd's content store does not match its digest: expected \
             `{digest}`, found `{actual}`"
        ));
    }
    Ok(bytes)
}
