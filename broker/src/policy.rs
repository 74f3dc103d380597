//! The decide stage: Cedar policies over an artifact's **verified facts** decide what it may
//! touch, and only this module can turn the decisions into a [`Grant`].
//!
//! Loading ([`Policies::load`]) reads every `*.cedar` file of a directory, requires each policy
//! to carry a unique `@id("…")`, and validates the whole set strictly against the schema Warrant
//! builds entities for ([`SCHEMA`], `policies/warrant.cedarschema`); any parse error, validation
//! error or validation warning refuses the whole set, naming file, line and policy id.
//!
//! The evaluation rule: each request is evaluated once per verified signature (the artifact's
//! `signer` set to it; once with kind `"none"` when there is none). It is **allowed iff at least
//! one evaluation allows, no evaluation is denied by a `forbid`, and no evaluation errors.**

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Mutex;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Request as CedarRequest,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic as _;
use registry_client::{Digest, WasmKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::attest::Provenance;
use crate::verify::Signer;

/// The schema Warrant builds entities for.
pub const SCHEMA: &str = include_str!("../../policies/warrant.cedarschema");

/// Bounds on what is loaded.
pub mod limits {
    /// Largest policy file read.
    pub const MAX_POLICY_FILE_BYTES: u64 = 1024 * 1024;
    /// Most policy files in a directory.
    pub const MAX_POLICY_FILES: usize = 1000;
    /// Most decisions remembered per policy set.
    pub const MAX_CACHED_DECISIONS: usize = 100_000;
}

/// One problem found while loading policies: where, which policy, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The policy's `@id`, when known.
    pub policy: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(policy) = &self.policy {
            write!(f, ": policy `{policy}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The directory or a file could not be read.
    #[error("cannot read policies `{path}`: {reason}", path = .path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Parse or validation problems; nothing was loaded.
    #[error("invalid policies ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A loaded, validated policy set.
pub struct Policies {
    set: PolicySet,
    schema: Schema,
    hash: String,
    sources: BTreeMap<String, (PathBuf, usize)>,
    cache: Mutex<HashMap<(String, Request), Decision>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("count", &self.sources.len())
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _)| schema)
        .map_err(|e| PolicyError::Read {
            path: PathBuf::from("(embedded schema)"),
            reason: e.to_string(),
        })
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count().saturating_add(1))
}

impl Policies {
    /// Load and strictly validate every `*.cedar` file in `dir` (sorted by name). A
    /// `warrant.cedarschema` in `dir`, if any, must be the schema Warrant builds entities for.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let read_err = |path: &Path, reason: String| PolicyError::Read {
            path: path.to_owned(),
            reason,
        };
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| read_err(dir, e.to_string()))?;
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("cedar") => files.push(path),
                Some("cedarschema") => check_schema_file(&path)?,
                _ => {}
            }
        }
        if files.len() > limits::MAX_POLICY_FILES {
            return Err(read_err(
                dir,
                format!(
                    "{} policy files; at most {}",
                    files.len(),
                    limits::MAX_POLICY_FILES
                ),
            ));
        }
        files.sort();
        let mut texts = Vec::with_capacity(files.len());
        for path in files {
            let text = read_bounded(&path)?;
            texts.push((path, text));
        }
        Self::from_sources(&texts)
    }

    /// Load policies from (file name, text) pairs, as [`Policies::load`] does from files.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Self, PolicyError> {
        let schema = schema()?;
        let mut problems = Vec::new();
        let mut set = PolicySet::new();
        let mut where_is: BTreeMap<String, (PathBuf, usize)> = BTreeMap::new();
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in sources {
            let parsed = match PolicySet::from_str(text) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    for error in errors.iter() {
                        let line = error
                            .labels()
                            .and_then(|mut labels| labels.next())
                            .map(|label| line_of(text, label.offset()));
                        problems.push(Problem {
                            file: file.clone(),
                            line,
                            policy: None,
                            message: error.to_string(),
                        });
                    }
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(Problem {
                    file: file.clone(),
                    line: None,
                    policy: None,
                    message: "templates (`?principal`, `?resource`) are not supported".into(),
                });
            }
            // Policies in source order (the parser names them `policy0`, `policy1`, …), so
            // that each one's text is found after the previous one's.
            let mut policies: Vec<&Policy> = parsed.policies().collect();
            policies.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            let mut cursor = 0;
            for policy in policies {
                let source = policy.to_cedar().unwrap_or_default();
                let line = match text.get(cursor..).and_then(|rest| rest.find(&source)) {
                    Some(at) => {
                        let start = cursor.saturating_add(at);
                        cursor = start.saturating_add(source.len());
                        line_of(text, start)
                    }
                    None => 0,
                };
                let line_opt = (line > 0).then_some(line);
                let Some(id) = policy.annotation("id") else {
                    problems.push(Problem {
                        file: file.clone(),
                        line: line_opt,
                        policy: None,
                        message: "no `@id(\"…\")` annotation; every policy needs a unique id"
                            .into(),
                    });
                    continue;
                };
                if id.trim().is_empty() {
                    problems.push(Problem {
                        file: file.clone(),
                        line: line_opt,
                        policy: Some(id.to_owned()),
                        message: "an empty `@id`".into(),
                    });
                    continue;
                }
                if let Some((other_file, other_line)) = where_is.get(id) {
                    problems.push(Problem {
                        file: file.clone(),
                        line: line_opt,
                        policy: Some(id.to_owned()),
                        message: format!(
                            "duplicate `@id`: also at {}:{other_line}",
                            other_file.display()
                        ),
                    });
                    continue;
                }
                where_is.insert(id.to_owned(), (file.clone(), line));
                texts.insert(id.to_owned(), source.clone());
                let renamed = policy.new_id(PolicyId::new(id));
                if let Err(e) = set.add(renamed) {
                    problems.push(Problem {
                        file: file.clone(),
                        line: line_opt,
                        policy: Some(id.to_owned()),
                        message: e.to_string(),
                    });
                }
            }
        }
        if problems.is_empty() {
            let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
            let locate = |id: &PolicyId| where_is.get(&id.to_string()).cloned();
            for error in result.validation_errors() {
                let (file, line) = locate(error.policy_id()).unwrap_or_default();
                problems.push(Problem {
                    file,
                    line: (line > 0).then_some(line),
                    policy: Some(error.policy_id().to_string()),
                    message: error.to_string(),
                });
            }
            for warning in result.validation_warnings() {
                let (file, line) = locate(warning.policy_id()).unwrap_or_default();
                problems.push(Problem {
                    file,
                    line: (line > 0).then_some(line),
                    policy: Some(warning.policy_id().to_string()),
                    message: format!("{warning} (validation warnings are refused too)"),
                });
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let mut hasher = Sha256::new();
        for (id, text) in &texts {
            hasher.update((id.len() as u64).to_be_bytes());
            hasher.update(id.as_bytes());
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        Ok(Self {
            set,
            schema,
            hash: format!("sha256:{}", hex::encode(hasher.finalize())),
            sources: where_is,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True when no policy is loaded (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// `sha256:` over every policy's id and text: equal hashes, equal policies.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Where a policy came from: file and line.
    pub fn source_of(&self, id: &str) -> Option<(&Path, usize)> {
        self.sources.get(id).map(|(f, l)| (f.as_path(), *l))
    }

    /// Decide `request` for the artifact described by `facts`.
    pub fn decide(&self, facts: &Facts, request: &Request) -> Decision {
        let key = (facts.key(), request.clone());
        if let Ok(cache) = self.cache.lock()
            && let Some(hit) = cache.get(&key)
        {
            return hit.clone();
        }
        let decision = self.evaluate(facts, request);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= limits::MAX_CACHED_DECISIONS {
                cache.clear();
            }
            cache.insert(key, decision.clone());
        }
        decision
    }

    /// Decide without the decision cache.
    pub fn evaluate(&self, facts: &Facts, request: &Request) -> Decision {
        let deny = |errors: Vec<String>| Decision {
            request: request.clone(),
            allowed: false,
            determining: Vec::new(),
            errors,
        };
        let none = [Signer::none()];
        let signers: &[Signer] = if facts.signers.is_empty() {
            &none
        } else {
            &facts.signers
        };
        let authorizer = Authorizer::new();
        let mut permits = BTreeSet::new();
        let mut forbids = BTreeSet::new();
        let mut errors = Vec::new();
        let mut allowed_once = false;
        for signer in signers {
            let (entities, cedar_request) = match self.build(facts, signer, request) {
                Ok(built) => built,
                Err(e) => return deny(vec![e]),
            };
            let response = authorizer.is_authorized(&cedar_request, &self.set, &entities);
            for error in response.diagnostics().errors() {
                errors.push(error.to_string());
            }
            let reasons = response.diagnostics().reason();
            match response.decision() {
                CedarDecision::Allow => {
                    allowed_once = true;
                    permits.extend(reasons.map(ToString::to_string));
                }
                CedarDecision::Deny => {
                    for id in reasons {
                        if self.set.policy(id).map(Policy::effect) == Some(Effect::Forbid) {
                            forbids.insert(id.to_string());
                        }
                    }
                }
            }
        }
        let allowed = allowed_once && forbids.is_empty() && errors.is_empty();
        Decision {
            request: request.clone(),
            allowed,
            determining: if allowed {
                permits.into_iter().collect()
            } else {
                forbids.into_iter().collect()
            },
            errors,
        }
    }

    fn build(
        &self,
        facts: &Facts,
        signer: &Signer,
        request: &Request,
    ) -> Result<(Entities, CedarRequest), String> {
        let uid = |kind: &str, id: &str| -> Result<EntityUid, String> {
            let name =
                EntityTypeName::from_str(&format!("Warrant::{kind}")).map_err(|e| e.to_string())?;
            Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
        };
        let signer_record = |s: &Signer| {
            RestrictedExpression::new_record([
                (
                    "kind".to_owned(),
                    RestrictedExpression::new_string(s.kind.as_str().to_owned()),
                ),
                (
                    "identity".to_owned(),
                    RestrictedExpression::new_string(s.identity.clone()),
                ),
                (
                    "issuer".to_owned(),
                    RestrictedExpression::new_string(s.issuer.clone()),
                ),
            ])
            .map_err(|e| e.to_string())
        };
        let registry = uid("Registry", &facts.registry)?;
        let repository = uid("Repository", &facts.repository)?;
        let artifact = uid("Artifact", &facts.digest.to_string())?;
        let mut attrs = HashMap::from([
            (
                "digest".to_owned(),
                RestrictedExpression::new_string(facts.digest.to_string()),
            ),
            (
                "kind".to_owned(),
                RestrictedExpression::new_string(facts.kind.clone()),
            ),
            (
                "sizeBytes".to_owned(),
                RestrictedExpression::new_long(to_long(facts.size_bytes)),
            ),
            ("signer".to_owned(), signer_record(signer)?),
            (
                "signers".to_owned(),
                RestrictedExpression::new_set(
                    facts
                        .signers
                        .iter()
                        .map(signer_record)
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            ),
        ]);
        if let Some(p) = &facts.provenance {
            attrs.insert(
                "provenance".to_owned(),
                RestrictedExpression::new_record([
                    (
                        "predicateType".to_owned(),
                        RestrictedExpression::new_string(p.predicate_type.clone()),
                    ),
                    (
                        "builderId".to_owned(),
                        RestrictedExpression::new_string(p.builder_id.clone()),
                    ),
                    (
                        "sourceRepository".to_owned(),
                        RestrictedExpression::new_string(p.source_repository.clone()),
                    ),
                    (
                        "sourceRef".to_owned(),
                        RestrictedExpression::new_string(p.source_ref.clone()),
                    ),
                    ("signer".to_owned(), signer_record(&p.signer)?),
                ])
                .map_err(|e| e.to_string())?,
            );
        }
        let mut entities = vec![
            Entity::new_no_attrs(registry.clone(), HashSet::new()),
            Entity::new_no_attrs(repository.clone(), HashSet::from([registry])),
            Entity::new(artifact.clone(), attrs, HashSet::from([repository]))
                .map_err(|e| e.to_string())?,
        ];
        let (action, resource, context) = match request {
            Request::Instantiate {
                memory_bytes,
                timeout_ms,
                fuel,
            } => {
                let runtime = uid("Runtime", "cli")?;
                entities.push(Entity::new_no_attrs(runtime.clone(), HashSet::new()));
                let context = Context::from_pairs([
                    (
                        "memoryBytes".to_owned(),
                        RestrictedExpression::new_long(to_long(*memory_bytes)),
                    ),
                    (
                        "timeoutMs".to_owned(),
                        RestrictedExpression::new_long(to_long(*timeout_ms)),
                    ),
                    (
                        "fuel".to_owned(),
                        RestrictedExpression::new_long(to_long(*fuel)),
                    ),
                ])
                .map_err(|e| e.to_string())?;
                ("instantiate", runtime, context)
            }
            Request::FsRead(path) | Request::FsWrite(path) => {
                let chain = dir_chain(path)?;
                let mut parent: Option<EntityUid> = None;
                for dir in chain.iter().rev() {
                    let this = uid("Dir", dir)?;
                    entities.push(Entity::new_no_attrs(
                        this.clone(),
                        parent.iter().cloned().collect(),
                    ));
                    parent = Some(this);
                }
                let resource = uid("Dir", &path_text(path)?)?;
                let action = if matches!(request, Request::FsRead(_)) {
                    "fs.read"
                } else {
                    "fs.write"
                };
                (action, resource, Context::empty())
            }
            Request::EnvRead(name) => {
                let resource = uid("EnvVar", name)?;
                entities.push(Entity::new_no_attrs(resource.clone(), HashSet::new()));
                ("env.read", resource, Context::empty())
            }
            Request::NetConnect(host) | Request::HttpOutgoing(host) => {
                let resource = uid("Host", host)?;
                entities.push(Entity::new_no_attrs(resource.clone(), HashSet::new()));
                let action = if matches!(request, Request::NetConnect(_)) {
                    "net.connect"
                } else {
                    "http.outgoing"
                };
                (action, resource, Context::empty())
            }
        };
        let entities =
            Entities::from_entities(entities, Some(&self.schema)).map_err(|e| e.to_string())?;
        let action = uid("Action", action)?;
        let request = CedarRequest::new(artifact, action, resource, context, Some(&self.schema))
            .map_err(|e| e.to_string())?;
        Ok((entities, request))
    }
}

fn to_long(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn check_schema_file(path: &Path) -> Result<(), PolicyError> {
    let text = read_bounded(path)?;
    let normalise = |s: &str| s.replace("\r\n", "\n").trim().to_owned();
    if normalise(&text) != normalise(SCHEMA) {
        return Err(PolicyError::Read {
            path: path.to_owned(),
            reason: "this schema is not the one Warrant builds entities for (remove the file, \
                     or copy `policies/warrant.cedarschema` of this version)"
                .into(),
        });
    }
    Ok(())
}

fn read_bounded(path: &Path) -> Result<String, PolicyError> {
    use std::io::Read as _;
    let bad = |reason: String| PolicyError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    file.take(limits::MAX_POLICY_FILE_BYTES.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > limits::MAX_POLICY_FILE_BYTES {
        return Err(bad(format!(
            "larger than {} bytes",
            limits::MAX_POLICY_FILE_BYTES
        )));
    }
    Ok(text)
}

/// An absolute path as text, rebuilt from its components (so `.` and repeated or trailing
/// slashes vanish, as they do for `Path` equality); `..` and non-UTF-8 names are refused.
fn path_text(path: &Path) -> Result<String, String> {
    if !path.is_absolute() {
        return Err(format!("path `{}` is not absolute", path.display()));
    }
    let mut text = String::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                let name = name
                    .to_str()
                    .ok_or_else(|| format!("path `{}` is not UTF-8", path.display()))?;
                text.push('/');
                text.push_str(name);
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("path `{}` contains `..`", path.display()));
            }
        }
    }
    Ok(if text.is_empty() {
        "/".to_owned()
    } else {
        text
    })
}

/// `/srv/data/in` → [`/srv/data/in`, `/srv/data`, `/srv`, `/`].
fn dir_chain(path: &Path) -> Result<Vec<String>, String> {
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

/// Everything verified about one artifact: what policies see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The manifest digest.
    pub digest: Digest,
    /// `module` or `component`.
    pub kind: String,
    /// The Wasm layer's size.
    pub size_bytes: u64,
    /// The registry host (`oci-layout` for a layout).
    pub registry: String,
    /// `registry/repository` (`oci-layout:PATH` for a layout).
    pub repository: String,
    /// Every verified signer.
    pub signers: Vec<Signer>,
    /// The first verified SLSA provenance, if any.
    pub provenance: Option<Provenance>,
}

impl Facts {
    /// Facts from a verification's outcome.
    pub fn new(
        digest: Digest,
        kind: WasmKind,
        size_bytes: u64,
        registry: String,
        repository: String,
        signers: Vec<Signer>,
        provenance: Option<Provenance>,
    ) -> Self {
        Self {
            digest,
            kind: kind.as_str().to_owned(),
            size_bytes,
            registry,
            repository,
            signers,
            provenance,
        }
    }

    fn key(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

/// One thing an artifact asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Request {
    /// To be instantiated at all, with these limits.
    Instantiate {
        /// Linear memory, bytes.
        memory_bytes: u64,
        /// Wall clock, milliseconds.
        timeout_ms: u64,
        /// Fuel (0: unmetered).
        fuel: u64,
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

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Instantiate {
                memory_bytes,
                timeout_ms,
                fuel,
            } => write!(
                f,
                "instantiate (memory {memory_bytes} B, timeout {timeout_ms} ms, fuel {fuel})"
            ),
            Self::FsRead(p) => write!(f, "fs.read {}", p.display()),
            Self::FsWrite(p) => write!(f, "fs.write {}", p.display()),
            Self::EnvRead(n) => write!(f, "env.read {n}"),
            Self::NetConnect(h) => write!(f, "net.connect {h}"),
            Self::HttpOutgoing(h) => write!(f, "http.outgoing {h}"),
        }
    }
}

/// The decision on one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What was asked.
    pub request: Request,
    /// Allowed?
    pub allowed: bool,
    /// Allowed: the permitting policies; denied: the forbidding ones (empty: nothing permits).
    pub determining: Vec<String>,
    /// Evaluation errors (any denies).
    pub errors: Vec<String>,
}

impl Decision {
    /// Why, in words.
    pub fn explanation(&self) -> String {
        if self.allowed {
            format!("permitted by {}", quote_ids(&self.determining))
        } else if !self.errors.is_empty() {
            format!("denied: evaluation error: {}", self.errors.join("; "))
        } else if !self.determining.is_empty() {
            format!("forbidden by {}", quote_ids(&self.determining))
        } else {
            "denied: no policy permits it".into()
        }
    }
}

fn quote_ids(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Signer {
    /// The `"none"` signer an unsigned artifact is evaluated with.
    fn none() -> Self {
        Self {
            kind: crate::verify::SignerKind::None,
            identity: String::new(),
            issuer: String::new(),
            claims: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::SignerKind;

    const RELEASE: &str =
        "https://github.com/acme/plugin/.github/workflows/release.yml@refs/tags/v1";
    const GITHUB: &str = "https://token.actions.githubusercontent.com";

    fn load(files: &[(&str, &str)]) -> Result<Policies, PolicyError> {
        let sources: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(f, t)| (PathBuf::from(f), (*t).to_owned()))
            .collect();
        Policies::from_sources(&sources)
    }

    fn problems(files: &[(&str, &str)]) -> Vec<Problem> {
        match load(files) {
            Err(PolicyError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn keyless(identity: &str) -> Signer {
        Signer {
            kind: SignerKind::Keyless,
            identity: identity.into(),
            issuer: GITHUB.into(),
            claims: BTreeMap::new(),
        }
    }

    fn facts(signers: Vec<Signer>) -> Facts {
        Facts::new(
            Digest::of(b"artifact"),
            WasmKind::Module,
            1000,
            "ghcr.io".into(),
            "ghcr.io/acme/plugin".into(),
            signers,
            None,
        )
    }

    fn instantiate() -> Request {
        Request::Instantiate {
            memory_bytes: 1 << 20,
            timeout_ms: 1000,
            fuel: 0,
        }
    }

    const PERMIT_RELEASE: &str = r#"
@id("release-may-run")
permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.signer.kind == "keyless"
    && principal.signer.issuer == "https://token.actions.githubusercontent.com"
    && principal.signer.identity like "https://github.com/acme/*/.github/workflows/release.yml@refs/tags/*"
    && context.memoryBytes <= 268435456 };
"#;

    #[test]
    fn the_embedded_schema_parses() {
        schema().unwrap();
    }

    #[test]
    fn no_policy_denies_everything() {
        let policies = load(&[]).unwrap();
        assert!(policies.is_empty());
        let d = policies.decide(&facts(vec![keyless(RELEASE)]), &instantiate());
        assert!(!d.allowed);
        assert!(d.determining.is_empty());
        assert_eq!(d.explanation(), "denied: no policy permits it");
    }

    #[test]
    fn a_permit_allows_and_is_cited() {
        let policies = load(&[("p.cedar", PERMIT_RELEASE)]).unwrap();
        let d = policies.decide(&facts(vec![keyless(RELEASE)]), &instantiate());
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.determining, vec!["release-may-run".to_owned()]);
        assert_eq!(
            policies.source_of("release-may-run"),
            Some((Path::new("p.cedar"), 2))
        );
        // Another identity, or no signature, is denied.
        let d = policies.decide(
            &facts(vec![keyless("https://github.com/evil/x")]),
            &instantiate(),
        );
        assert!(!d.allowed);
        assert!(!policies.decide(&facts(Vec::new()), &instantiate()).allowed);
    }

    #[test]
    fn identity_and_issuer_bind_within_one_signature() {
        // One signature has the identity, another the issuer: neither satisfies the policy.
        let policies = load(&[("p.cedar", PERMIT_RELEASE)]).unwrap();
        let right_identity_wrong_issuer = Signer {
            issuer: "https://accounts.google.com".into(),
            ..keyless(RELEASE)
        };
        let right_issuer_wrong_identity = keyless("https://github.com/evil/x");
        let d = policies.decide(
            &facts(vec![
                right_identity_wrong_issuer,
                right_issuer_wrong_identity,
            ]),
            &instantiate(),
        );
        assert!(!d.allowed, "{d:?}");
    }

    #[test]
    fn a_forbid_for_any_signature_wins() {
        let forbid = r#"
@id("no-evil")
forbid (principal, action, resource) when { principal.signer.identity like "*evil*" };
"#;
        let policies = load(&[("p.cedar", PERMIT_RELEASE), ("f.cedar", forbid)]).unwrap();
        let d = policies.decide(
            &facts(vec![keyless(RELEASE), keyless("https://github.com/evil/x")]),
            &instantiate(),
        );
        assert!(!d.allowed);
        assert_eq!(d.determining, vec!["no-evil".to_owned()]);
        assert_eq!(d.explanation(), "forbidden by `no-evil`");
    }

    #[test]
    fn an_erroring_forbid_beside_permit_all_denies() {
        let files = [
            (
                "a.cedar",
                "@id(\"all\")\npermit (principal, action, resource);\n",
            ),
            (
                "b.cedar",
                "@id(\"overflow\")\nforbid (principal, action == Warrant::Action::\"instantiate\", resource)\n\
                 when { context.memoryBytes * 9223372036854775807 > 0 };\n",
            ),
        ];
        let policies = load(&files).unwrap();
        let d = policies.decide(&facts(vec![keyless(RELEASE)]), &instantiate());
        assert!(!d.allowed, "{d:?}");
        assert_eq!(d.errors.len(), 1, "{d:?}");
        assert!(
            d.explanation().starts_with("denied: evaluation error"),
            "{}",
            d.explanation()
        );
    }

    #[test]
    fn directories_are_a_hierarchy() {
        let p = r#"
@id("data")
permit (principal, action == Warrant::Action::"fs.read", resource in Warrant::Dir::"/srv/data");
"#;
        let policies = load(&[("p.cedar", p)]).unwrap();
        let f = facts(vec![keyless(RELEASE)]);
        for (path, allowed) in [
            ("/srv/data", true),
            ("/srv/data/in", true),
            ("/srv/data/in/deep/er", true),
            ("/srv/database", false),
            ("/srv", false),
            ("/", false),
        ] {
            let d = policies.decide(&f, &Request::FsRead(PathBuf::from(path)));
            assert_eq!(d.allowed, allowed, "{path}: {d:?}");
        }
        let d = policies.decide(&f, &Request::FsWrite(PathBuf::from("/srv/data")));
        assert!(!d.allowed);
        // `.` and extra slashes are the same directory; `..` and relative paths are denied
        // with an error, never matched.
        for same in ["/srv/./data", "/srv//data/", "/srv/data/."] {
            assert!(
                policies
                    .decide(&f, &Request::FsRead(PathBuf::from(same)))
                    .allowed,
                "{same}"
            );
        }
        for bad in ["/srv/data/../etc", "srv/data", "/srv/data/.."] {
            let d = policies.decide(&f, &Request::FsRead(PathBuf::from(bad)));
            assert!(!d.allowed && !d.errors.is_empty(), "{bad}: {d:?}");
        }
    }

    #[test]
    fn non_utf8_paths_are_refused() {
        use std::os::unix::ffi::OsStrExt as _;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/srv/\xff"));
        assert!(path_text(path).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn dir_chains() {
        assert_eq!(
            dir_chain(Path::new("/srv/data/in/")).unwrap(),
            vec!["/srv/data/in", "/srv/data", "/srv", "/"]
        );
        assert_eq!(dir_chain(Path::new("/")).unwrap(), vec!["/"]);
    }

    #[test]
    fn a_policy_without_an_id_is_refused_with_its_line() {
        let p = problems(&[(
            "p.cedar",
            "@id(\"ok\")\npermit (principal, action, resource);\n\npermit (principal, action, resource);\n",
        )]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, Some(4));
        assert!(p[0].message.contains("no `@id"), "{}", p[0]);
    }

    #[test]
    fn duplicate_ids_are_refused_naming_both_places() {
        let one = "@id(\"x\")\npermit (principal, action, resource);\n";
        let p = problems(&[("a.cedar", one), ("b.cedar", one)]);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].to_string(),
            "b.cedar:1: policy `x`: duplicate `@id`: also at a.cedar:1"
        );
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let p = problems(&[(
            "p.cedar",
            "@id(\"x\")\npermit (principal, action, resource)\nwhen { 1 + };\n",
        )]);
        assert_eq!(p[0].file, PathBuf::from("p.cedar"));
        assert_eq!(p[0].line, Some(3), "{p:?}");
    }

    #[test]
    fn validation_errors_name_policy_and_line() {
        let p = problems(&[(
            "p.cedar",
            "\n\n@id(\"typo\")\npermit (principal, action, resource) when { principal.signr.kind == \"key\" };\n",
        )]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].policy.as_deref(), Some("typo"));
        assert_eq!(p[0].line, Some(3));
        assert!(p[0].message.contains("signr"), "{}", p[0]);
    }

    #[test]
    fn the_hash_ignores_file_order_but_not_content() {
        let a = "@id(\"a\")\npermit (principal, action, resource);\n";
        let b = "@id(\"b\")\nforbid (principal, action, resource);\n";
        let one = load(&[("1.cedar", a), ("2.cedar", b)]).unwrap();
        let two = load(&[("1.cedar", b), ("2.cedar", a)]).unwrap();
        assert_eq!(one.hash(), two.hash());
        let three = load(&[("1.cedar", a)]).unwrap();
        assert_ne!(one.hash(), three.hash());
    }
}
