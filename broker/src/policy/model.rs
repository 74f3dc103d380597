//! What policies see: [`Facts`], [`Request`], the entity stores of an evaluation and the
//! helpers that name entities.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use cedar_policy::{Entities, EntityId, EntityTypeName, EntityUid};
use registry_client::{Digest, WasmKind};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::load::path_text;
use super::{Policies, canonical_host_port};
use crate::attest::Provenance;
use crate::verify::Signer;

/// The entity stores of one run's evaluations, one per (signer, provenance) pair, built when
/// first needed: the first from scratch, the others as a copy of it with only the artifact
/// replaced (it has no descendants, so nothing else's ancestors change).
pub(super) struct Stores<'a> {
    policies: &'a Policies,
    facts: &'a Facts,
    signers: &'a [Signer],
    provenances: &'a [Option<&'a Provenance>],
    requests: &'a [Request],
    built: Vec<Option<Result<Entities, String>>>,
}

impl<'a> Stores<'a> {
    pub(super) fn new(
        policies: &'a Policies,
        facts: &'a Facts,
        signers: &'a [Signer],
        provenances: &'a [Option<&'a Provenance>],
        requests: &'a [Request],
    ) -> Self {
        Self {
            policies,
            facts,
            signers,
            provenances,
            requests,
            built: (0..signers.len().saturating_mul(provenances.len()))
                .map(|_| None)
                .collect(),
        }
    }

    /// The store for the `signer`th signer and the `provenance`th provenance.
    pub(super) fn get(&mut self, signer: usize, provenance: usize) -> &Result<Entities, String> {
        let index = signer
            .saturating_mul(self.provenances.len())
            .saturating_add(provenance);
        let missing = |built: &[Option<Result<Entities, String>>], i: usize| {
            built.get(i).is_some_and(Option::is_none)
        };
        let first_provenance = self.provenances.first().copied().flatten();
        if missing(&self.built, 0) {
            let first = match self.signers.first() {
                Some(s) => self
                    .policies
                    .entities(self.facts, s, first_provenance, self.requests),
                None => Err("no signer to evaluate for".into()),
            };
            if let Some(slot) = self.built.get_mut(0) {
                *slot = Some(first);
            }
        }
        if index > 0 && missing(&self.built, index) {
            let store = match (
                self.built.first(),
                self.signers.get(signer),
                self.provenances.get(provenance),
            ) {
                (Some(Some(Ok(first))), Some(s), Some(p)) => self
                    .policies
                    .artifact(self.facts, s, *p)
                    .and_then(|artifact| {
                        first
                            .clone()
                            .upsert_entities([artifact], self.policies.entity_schema())
                            .map_err(|e| e.to_string())
                    }),
                (Some(Some(Err(e))), _, _) => Err(e.clone()),
                _ => Err("no signer to evaluate for".into()),
            };
            if let Some(slot) = self.built.get_mut(index) {
                *slot = Some(store);
            }
        }
        const UNBUILT: &Result<Entities, String> = &Err(String::new());
        match self.built.get(index) {
            Some(Some(store)) => store,
            _ => UNBUILT,
        }
    }
}

/// `host` if it is a canonical `HOST:PORT` ([`canonical_host_port`]): a host asked for in any
/// other spelling is an evaluation error, so it is never granted (the CLI asks in canonical
/// form; an embedder's `Asks` must too).
pub(super) fn canonical_host(host: &str) -> Result<&str, String> {
    let canonical = canonical_host_port(host)?;
    if canonical == host {
        Ok(host)
    } else {
        Err(format!(
            "`{host}` is not the canonical spelling of that host: ask for `{canonical}`"
        ))
    }
}

/// `Warrant::<kind>::"<id>"`.
pub(super) fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    Ok(EntityUid::from_type_name_and_id(
        type_name(kind)?,
        EntityId::new(id),
    ))
}

/// The schema's entity types, parsed once (parsing a name runs Cedar's parser).
pub(super) fn type_name(kind: &str) -> Result<EntityTypeName, String> {
    static NAMES: std::sync::OnceLock<HashMap<&'static str, EntityTypeName>> =
        std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        [
            "Registry",
            "Repository",
            "Artifact",
            "Runtime",
            "Dir",
            "Host",
            "EnvVar",
            "Action",
        ]
        .into_iter()
        .filter_map(|k| {
            EntityTypeName::from_str(&format!("Warrant::{k}"))
                .ok()
                .map(|n| (k, n))
        })
        .collect()
    });
    names
        .get(kind)
        .cloned()
        .ok_or_else(|| format!("no entity type `Warrant::{kind}`"))
}

pub(super) fn to_long(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `/srv/data/in` → [`/srv/data/in`, `/srv/data`, `/srv`, `/`].
pub(super) fn dir_chain(path: &Path) -> Result<Vec<String>, String> {
    let text = path_text(path)?;
    let mut chain = vec![text.clone()];
    let mut current = text.as_str();
    while current != "/" {
        current = match current.rfind('/') {
            Some(0) | None => "/",
            Some(at) => current.get(..at).unwrap_or("/"),
        };
        chain.push(current.to_owned());
    }
    Ok(chain)
}

/// Everything verified about one artifact: what policies see. Built once, then read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub(super) digest: Digest,
    pub(super) kind: String,
    pub(super) size_bytes: u64,
    pub(super) registry: String,
    pub(super) repository: String,
    pub(super) signers: Vec<Signer>,
    pub(super) provenances: Vec<Provenance>,
    #[serde(skip)]
    pub(super) key: String,
}

impl Facts {
    /// Facts from a verification's outcome: the artifact, where it came from (the operator's
    /// reference), its verified signers and every verified SLSA provenance (a provenance
    /// verified twice counts once).
    pub fn new(
        digest: Digest,
        kind: WasmKind,
        size_bytes: u64,
        registry: String,
        repository: String,
        signers: Vec<Signer>,
        provenances: Vec<Provenance>,
    ) -> Self {
        let mut distinct: Vec<Provenance> = Vec::with_capacity(provenances.len());
        for p in provenances {
            if !distinct.contains(&p) {
                distinct.push(p);
            }
        }
        let provenances = distinct;
        let mut facts = Self {
            digest,
            kind: kind.as_str().to_owned(),
            size_bytes,
            registry,
            repository,
            signers,
            provenances,
            key: String::new(),
        };
        let json = serde_json::to_vec(&facts).unwrap_or_default();
        facts.key = hex::encode(Sha256::digest(&json));
        facts
    }

    /// The manifest digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// `module` or `component`.
    #[cfg(any(test, feature = "internals"))]
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// The Wasm layer's size.
    #[cfg(any(test, feature = "internals"))]
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    /// The registry host (`oci-layout` for a layout).
    #[cfg(any(test, feature = "internals"))]
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// `registry/repository` (`oci-layout:PATH` for a layout).
    pub fn repository(&self) -> &str {
        &self.repository
    }
    /// Every verified signer.
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }
    /// Every verified SLSA provenance.
    #[cfg(any(test, feature = "internals"))]
    pub fn provenances(&self) -> &[Provenance] {
        &self.provenances
    }

    /// What each evaluation sees as the artifact's `provenance`: each verified one in turn,
    /// or none (one evaluation) when there is none.
    pub(super) fn evaluated_provenances(&self) -> Vec<Option<&Provenance>> {
        if self.provenances.is_empty() {
            vec![None]
        } else {
            self.provenances.iter().map(Some).collect()
        }
    }
}

/// Where an artifact is instantiated: the resource `instantiate` is asked on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    /// `warrant run`: `Runtime::"cli"`.
    #[default]
    Cli,
    /// A `warrant serve` tenant: `Runtime::"<name>"`, whose parent is `Runtime::"serve"`, so
    /// that one policy can cover every tenant and another a single one. The name is checked
    /// by the server (`[a-z0-9-]+`, and none of [`Runtime::RESERVED`]).
    Tenant(String),
    /// A Kubernetes pod's container run by `containerd-shim-warrant-v1`:
    /// `Runtime::"k8s/<namespace>"`, whose parent is `Runtime::"k8s"`; the pod's name is the
    /// request's `context.pod`. Made by [`Runtime::pod`].
    Pod {
        /// `k8s/<namespace>`.
        id: String,
        /// The pod's name.
        pod: String,
    },
}

impl Runtime {
    /// Longest namespace or pod name accepted (Kubernetes names are at most 253 bytes).
    pub const MAX_POD_NAME_BYTES: usize = 253;

    /// A pod's container in `namespace`, named `pod`: both must be Kubernetes (or containerd)
    /// names — letters, digits, `.`, `_` and `-`, at most [`Self::MAX_POD_NAME_BYTES`] — so
    /// that no namespace can spell another entity's id (`k8s/a/b`) or carry terminal text.
    pub fn pod(namespace: &str, pod: &str) -> Result<Self, String> {
        for (what, name) in [("namespace", namespace), ("pod name", pod)] {
            let valid = !name.is_empty()
                && name.len() <= Self::MAX_POD_NAME_BYTES
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                return Err(format!(
                    "{what} `{}` is not a Kubernetes name (letters, digits, `.`, `_`, `-`; at \
                     most {} bytes)",
                    registry_client::text::one_line(name),
                    Self::MAX_POD_NAME_BYTES
                ));
            }
        }
        Ok(Self::Pod {
            id: format!("k8s/{namespace}"),
            pod: pod.to_owned(),
        })
    }

    /// The runtime ids that are not tenants' names: a tenant named `cli` would be granted
    /// what policies grant `warrant run`, and one named `serve` would be its own parent.
    pub const RESERVED: [&str; 3] = ["cli", "serve", "k8s"];

    /// The entity id.
    pub fn id(&self) -> &str {
        match self {
            Self::Cli => "cli",
            Self::Tenant(name) => name,
            Self::Pod { id, .. } => id,
        }
    }

    /// The parent entity's id, if any.
    pub fn parent(&self) -> Option<&'static str> {
        match self {
            Self::Cli => None,
            Self::Tenant(_) => Some("serve"),
            Self::Pod { .. } => Some("k8s"),
        }
    }
}

/// One thing an artifact asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Request {
    /// To be instantiated at all, with these limits.
    Instantiate {
        /// Linear memory, bytes.
        memory_bytes: u64,
        /// Wall clock, milliseconds.
        timeout_ms: u64,
        /// Fuel; `None`: unmetered (the context has no `fuel`).
        fuel: Option<u64>,
        /// Where (the resource).
        runtime: Runtime,
    },
    /// Read a host directory (canonical path).
    FsRead(PathBuf),
    /// Write a host directory (canonical path).
    FsWrite(PathBuf),
    /// Read an environment variable.
    EnvRead(String),
    /// Open a socket to `host:port`.
    NetConnect(String),
    /// Make HTTP requests to `host:port`.
    HttpOutgoing(String),
}

impl Request {
    /// The Cedar action's name.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Instantiate { .. } => "instantiate",
            Self::FsRead(_) => "fs.read",
            Self::FsWrite(_) => "fs.write",
            Self::EnvRead(_) => "env.read",
            Self::NetConnect(_) => "net.connect",
            Self::HttpOutgoing(_) => "http.outgoing",
        }
    }

    /// The resource's id (`cli`, or the tenant's name, for `instantiate`).
    pub fn resource(&self) -> String {
        match self {
            Self::Instantiate { runtime, .. } => runtime.id().into(),
            Self::FsRead(p) | Self::FsWrite(p) => p.display().to_string(),
            Self::EnvRead(n) => n.clone(),
            Self::NetConnect(h) | Self::HttpOutgoing(h) => h.clone(),
        }
    }
}

impl Serialize for Request {
    /// `{"action": "fs.read", "resource": "/srv/data"}`; `instantiate` adds its context.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("action", self.action())?;
        map.serialize_entry("resource", &self.resource())?;
        if let Self::Instantiate {
            memory_bytes,
            timeout_ms,
            fuel,
            runtime,
        } = self
        {
            let mut context = serde_json::json!({
                "memoryBytes": memory_bytes, "timeoutMs": timeout_ms,
            });
            if let (Some(fuel), Some(map)) = (fuel, context.as_object_mut()) {
                map.insert("fuel".into(), (*fuel).into());
            }
            if let (Runtime::Pod { pod, .. }, Some(map)) = (runtime, context.as_object_mut()) {
                map.insert("pod".into(), pod.clone().into());
            }
            map.serialize_entry("context", &context)?;
        }
        map.end()
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Instantiate {
                memory_bytes,
                timeout_ms,
                fuel,
                runtime,
            } => {
                match runtime {
                    Runtime::Tenant(name) => write!(f, "instantiate {name} ")?,
                    Runtime::Pod { id, pod } => write!(f, "instantiate {id} pod {pod} ")?,
                    Runtime::Cli => write!(f, "instantiate ")?,
                }
                match fuel {
                    Some(fuel) => write!(
                        f,
                        "(memory {memory_bytes} B, timeout {timeout_ms} ms, fuel {fuel})"
                    ),
                    None => write!(
                        f,
                        "(memory {memory_bytes} B, timeout {timeout_ms} ms, unmetered)"
                    ),
                }
            }
            Self::FsRead(p) => write!(f, "fs.read {}", p.display()),
            Self::FsWrite(p) => write!(f, "fs.write {}", p.display()),
            Self::EnvRead(n) => write!(f, "env.read {n}"),
            Self::NetConnect(h) => write!(f, "net.connect {h}"),
            Self::HttpOutgoing(h) => write!(f, "http.outgoing {h}"),
        }
    }
}

impl Signer {
    /// The `"none"` signer an unsigned artifact is evaluated with.
    pub(super) fn none() -> Self {
        Self {
            kind: crate::verify::SignerKind::None,
            identity: String::new(),
            issuer: String::new(),
            claims: BTreeMap::new(),
        }
    }
}
