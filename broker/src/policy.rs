//! The decide stage: Cedar policies over an artifact's **verified facts** decide what it may
//! touch, and only this module can turn the decisions into a [`Grant`].
//!
//! Loading ([`Policies::load`]) reads every `*.cedar` file of a directory, requires each policy
//! to carry a unique `@id("…")`, and validates the whole set strictly against the schema Warrant
//! builds entities for ([`SCHEMA`], `policies/warrant.cedarschema`); any parse error, validation
//! error or validation warning refuses the whole set, naming file, line and policy id.
//!
//! The evaluation rule: each request is evaluated once per verified signature and verified
//! provenance — for every pair of them: the artifact's `signer` set to the signature's signer
//! (kind `"none"` when there is none), its `provenance` to the provenance (absent when there is
//! none). It is **allowed iff at least one evaluation allows, no evaluation is denied by a
//! `forbid`, and no evaluation errors.** So a `forbid` on any signer or on any provenance wins,
//! whatever order the registry listed them in.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity,
    EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Request as CedarRequest,
    ResourceConstraint, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic as _;
use registry_client::{Digest, WasmKind};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::attest::Provenance;
use crate::verify::Signer;

mod host;
mod screen;
#[cfg(test)]
mod screen_tests;

pub use host::canonical_host_port;

use screen::{Screen, Verdict, View};

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
    /// Most (signer, provenance) pairs one request is evaluated for. Legitimate artifacts
    /// carry a signature or three and a provenance or two; an artifact with more verified
    /// pairs than this (many keyless signatures and attestations, which anyone can make) is
    /// denied with that reason rather than evaluated for minutes.
    pub const MAX_EVALUATIONS: usize = 1024;
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
    by_action: HashMap<&'static str, ActionIndex>,
    /// Policies whose outcome is the same for every request of a run: scoped to any action and
    /// any resource, with conditions that read neither `action`, `resource` nor `context`.
    invariant: Group,
    /// The whole set, unsliced (the reference evaluation in tests).
    #[cfg(test)]
    all: PolicySet,
    /// Check built entities against the schema (tests).
    check_entities: bool,
    /// Parsed when first needed: validation needs it, deciding does not.
    schema: std::sync::OnceLock<Schema>,
    hash: String,
    sources: BTreeMap<String, (PathBuf, usize)>,
    cache: Mutex<DecisionCache>,
}

#[derive(Default)]
struct DecisionCache {
    entries: usize,
    by_facts: HashMap<String, HashMap<Request, Decision>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("count", &self.sources.len())
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Remembers which exact policy sources passed strict validation before, so that loading them
/// again can skip it (and parsing the schema, the larger part of a fresh process's policy
/// work). Implemented by the CLI over an authenticated directory
/// ([`crate::cache::PolicyMemo`]).
pub trait ValidationMemo {
    /// Whether sources with this [`validation_key`] passed strict validation before.
    fn vouches(&self, key: &[u8; 32]) -> bool;
    /// Remember that sources with this key passed.
    fn remember(&self, key: &[u8; 32]);
}

/// What strict validation of `sources` depends on, hashed: this build's Warrant and Cedar
/// versions, the schema, and every source's name and text, in order.
pub fn validation_key(sources: &[(PathBuf, String)]) -> [u8; 32] {
    let cedar = cedar_policy::get_sdk_version().to_string();
    let head: [&[u8]; 4] = [
        b"warrant strict validation 1",
        env!("CARGO_PKG_VERSION").as_bytes(),
        cedar.as_bytes(),
        SCHEMA.as_bytes(),
    ];
    hash_fields(
        head.into_iter().chain(
            sources
                .iter()
                .flat_map(|(path, text)| [path.as_os_str().as_encoded_bytes(), text.as_bytes()]),
        ),
    )
}

/// SHA-256 of `fields`, each prefixed with its length (so no two lists hash alike).
fn hash_fields<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for bytes in fields {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().into()
}

fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _)| schema)
        .map_err(|e| PolicyError::Read {
            path: PathBuf::from("(embedded schema)"),
            reason: e.to_string(),
        })
}

/// `text` with every `//` comment (outside string literals) replaced by spaces of the same
/// length, so that byte offsets are unchanged.
fn blank_comments(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let (mut in_string, mut escaped, mut in_comment) = (false, false, false);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if in_comment {
            if b == b'\n' {
                in_comment = false;
                out.push(b);
            } else {
                out.push(b' ');
            }
        } else if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if b == b'/' && bytes.get(i.saturating_add(1)) == Some(&b'/') {
            in_comment = true;
            out.push(b' ');
        } else {
            out.push(b);
        }
        i = i.saturating_add(1);
    }
    // Only ASCII bytes were replaced, by ASCII spaces, so the result is still UTF-8.
    String::from_utf8(out).unwrap_or_default()
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
        Self::load_with(dir, None)
    }

    /// As [`Policies::load`], skipping strict validation when `memo` vouches that exactly these
    /// sources passed it before (and remembering them when they pass now).
    pub fn load_with(dir: &Path, memo: Option<&dyn ValidationMemo>) -> Result<Self, PolicyError> {
        Self::from_sources_with(&read_sources(dir)?, memo)
    }
}

/// Every `*.cedar` file in `dir` with its text, sorted by name (what [`Policies::load`] loads).
/// A `warrant.cedarschema` in `dir`, if any, must be the schema Warrant builds entities for.
pub fn read_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, PolicyError> {
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
    Ok(texts)
}

impl Policies {
    /// Load policies from (file name, text) pairs, as [`Policies::load`] does from files.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Self, PolicyError> {
        Self::from_sources_with(sources, None)
    }

    /// As [`Policies::from_sources`], with a [`ValidationMemo`] (see [`Policies::load_with`]).
    pub fn from_sources_with(
        sources: &[(PathBuf, String)],
        memo: Option<&dyn ValidationMemo>,
    ) -> Result<Self, PolicyError> {
        let key = memo.map(|_| validation_key(sources));
        let vouched = memo.zip(key.as_ref()).is_some_and(|(m, k)| m.vouches(k));
        let schema_cell = std::sync::OnceLock::new();
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
            // Comments are blanked (same length) in the file and in each policy's text before
            // searching, so a comment quoting a policy is never taken for it.
            let searchable = blank_comments(text);
            let mut cursor = 0;
            for policy in policies {
                let source = blank_comments(&policy.to_cedar().unwrap_or_default());
                let line = match searchable.get(cursor..).and_then(|rest| rest.find(&source)) {
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
        if problems.is_empty() && !vouched {
            let schema = schema()?;
            let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
            // The line of what is wrong: the diagnostic's own position in the policy's file
            // when it has one, else the policy's first line.
            let locate = |id: &PolicyId, diagnostic: &dyn miette::Diagnostic| {
                let (file, line) = where_is.get(&id.to_string()).cloned().unwrap_or_default();
                let text = sources.iter().find(|(f, _)| *f == file).map(|(_, t)| t);
                let exact = diagnostic
                    .labels()
                    .and_then(|mut labels| labels.next())
                    .zip(text)
                    .map(|(label, text)| line_of(text, label.offset()));
                let line = exact.unwrap_or(line);
                (file, (line > 0).then_some(line))
            };
            let mut found = Vec::new();
            for error in result.validation_errors() {
                let (file, line) = locate(error.policy_id(), error);
                found.push(Problem {
                    file,
                    line,
                    policy: Some(error.policy_id().to_string()),
                    message: error.to_string(),
                });
            }
            for warning in result.validation_warnings() {
                let (file, line) = locate(warning.policy_id(), warning);
                found.push(Problem {
                    file,
                    line,
                    policy: Some(warning.policy_id().to_string()),
                    message: format!("{warning} (validation warnings are refused too)"),
                });
            }
            // Errors before warnings (an unknown type also makes a policy inapplicable; the
            // unknown type is what to fix), each in file order, then line order.
            let file_rank = |f: &PathBuf| sources.iter().position(|(s, _)| s == f);
            found.sort_by_key(|p| {
                (
                    p.message.ends_with("(validation warnings are refused too)"),
                    file_rank(&p.file),
                    p.line,
                )
            });
            problems.extend(found);
            if problems.is_empty() {
                // Validated now: remembered, and the schema kept.
                if let (Some(memo), Some(key)) = (memo, key.as_ref()) {
                    memo.remember(key);
                }
                let _ = schema_cell.set(schema);
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let hash = hash_fields(
            texts
                .iter()
                .flat_map(|(id, text)| [id.as_bytes(), text.as_bytes()]),
        );
        let (by_action, invariant) = slice_by_action(&set).map_err(|reason| PolicyError::Read {
            path: PathBuf::from("(policy set)"),
            reason,
        })?;
        Ok(Self {
            by_action,
            invariant,
            #[cfg(test)]
            all: set.clone(),
            check_entities: false,
            schema: schema_cell,
            hash: format!("sha256:{}", hex::encode(hash)),
            sources: where_is,
            cache: Mutex::new(DecisionCache::default()),
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
        self.decide_all(facts, std::slice::from_ref(request))
            .pop()
            .unwrap_or_else(|| Decision::error(request, "no decision".into()))
    }

    /// Decide every request, remembering decisions per (facts, request) for this policy set.
    pub fn decide_all(&self, facts: &Facts, requests: &[Request]) -> Vec<Decision> {
        let mut found: Vec<Option<Decision>> = match self.cache.lock() {
            Ok(cache) => {
                let known = cache.by_facts.get(&facts.key);
                requests
                    .iter()
                    .map(|r| known.and_then(|m| m.get(r)).cloned())
                    .collect()
            }
            Err(_) => vec![None; requests.len()],
        };
        let missing: Vec<Request> = requests
            .iter()
            .zip(&found)
            .filter(|(_, d)| d.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        if missing.is_empty() {
            return found.into_iter().flatten().collect();
        }
        let mut fresh = self.evaluate_all(facts, &missing).into_iter();
        if let Ok(mut cache) = self.cache.lock() {
            for slot in found.iter_mut().filter(|d| d.is_none()) {
                let Some(decision) = fresh.next() else { break };
                if cache.entries >= limits::MAX_CACHED_DECISIONS {
                    *cache = DecisionCache::default();
                }
                cache.entries = cache.entries.saturating_add(1);
                cache
                    .by_facts
                    .entry(facts.key.clone())
                    .or_default()
                    .insert(decision.request.clone(), decision.clone());
                *slot = Some(decision);
            }
        } else {
            for slot in found.iter_mut().filter(|d| d.is_none()) {
                *slot = fresh.next();
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Decide without the decision cache.
    pub fn evaluate(&self, facts: &Facts, request: &Request) -> Decision {
        self.evaluate_all(facts, std::slice::from_ref(request))
            .pop()
            .unwrap_or_else(|| Decision::error(request, "no decision".into()))
    }

    /// Decide every request without the cache.
    ///
    /// Each request is evaluated only against the policies whose scope can admit it (its
    /// action, and its resource or an ancestor); a policy scoped elsewhere can neither be
    /// satisfied nor fail for it. Policies that never mention the artifact's `signer` give
    /// the same result for every signer, so they are evaluated once; the others once per
    /// signer; and the entities are built once per signer for all requests. Policies that
    /// apply to every action and resource and read only the principal give the same result
    /// for every request, so they are evaluated once per run, not once per request. The
    /// outcome is exactly that of evaluating the whole set once per signer (see the module
    /// docs).
    pub fn evaluate_all(&self, facts: &Facts, requests: &[Request]) -> Vec<Decision> {
        let none = [Signer::none()];
        let signers: &[Signer] = if facts.signers.is_empty() {
            &none
        } else {
            &facts.signers
        };
        let provenances = facts.evaluated_provenances();
        if signers.len().saturating_mul(provenances.len()) > limits::MAX_EVALUATIONS {
            let error = format!(
                "{} verified signers and {} verified provenances make more than {} evaluations; refused",
                facts.signers.len(),
                facts.provenances.len(),
                limits::MAX_EVALUATIONS
            );
            return requests
                .iter()
                .map(|r| Decision::error(r, error.clone()))
                .collect();
        }
        let digest = facts.digest.to_string();
        let principal = match (
            uid("Artifact", &digest),
            uid("Repository", &facts.repository),
            uid("Registry", &facts.registry),
        ) {
            (Ok(artifact), Ok(repository), Ok(registry)) => (artifact, repository, registry),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return requests
                    .iter()
                    .map(|r| Decision::error(r, e.clone()))
                    .collect();
            }
        };
        let authorizer = Authorizer::new();
        let mut entities = Stores::new(self, facts, signers, &provenances, requests);
        let mut invariant: Option<Tally> = None;
        let mut decisions = Vec::with_capacity(requests.len());
        for request in requests {
            let mut tally = Tally::default();
            let cedar_request = self.cedar_request(facts, request);
            let resource = request_resource(request);
            let groups = match (&cedar_request, &resource) {
                (Ok(_), Ok(resource)) => self.groups(request.action(), resource),
                (Err(e), _) | (_, Err(e)) => {
                    tally.errors.push(e.clone());
                    decisions.push(tally.decision(request));
                    continue;
                }
            };
            let Ok(cedar_request) = &cedar_request else {
                continue;
            };
            let mut evaluate = |group: &Group, tally: &mut Tally| {
                // Each pass is evaluated for every signer and provenance it reads, with the
                // first of the others (it gives the same outcome for all of them).
                let (each_signer, each_provenance) = (signers.len(), provenances.len());
                let passes = [
                    (&group.independent, 1, 1),
                    (&group.by_signer, each_signer, 1),
                    (&group.by_provenance, 1, each_provenance),
                    (&group.by_both, each_signer, each_provenance),
                ];
                for (pass, signer_count, provenance_count) in passes {
                    if pass.is_empty() {
                        continue;
                    }
                    let pairs = signers.iter().enumerate().take(signer_count).flat_map(|s| {
                        provenances
                            .iter()
                            .enumerate()
                            .take(provenance_count)
                            .map(move |p| (s, p))
                    });
                    for ((signer_index, signer), (provenance_index, provenance)) in pairs {
                        let view = View {
                            facts,
                            digest: &digest,
                            signer,
                            provenance: *provenance,
                            request,
                            artifact: &principal.0,
                            repository: &principal.1,
                            registry: &principal.2,
                        };
                        let mut ask = Vec::new();
                        for member in &pass.members {
                            match member.screen.check(&view) {
                                Verdict::Refuted => {}
                                Verdict::Holds => tally.holds(member),
                                Verdict::Ask => ask.push(member),
                            }
                        }
                        if ask.is_empty() {
                            continue;
                        }
                        let built = match entities.get(signer_index, provenance_index) {
                            Ok(built) => built,
                            Err(e) => {
                                tally.error(e.clone());
                                continue;
                            }
                        };
                        if ask.len() == pass.members.len() {
                            let response =
                                authorizer.is_authorized(cedar_request, &pass.all, built);
                            tally.add(&pass.all, &response);
                        } else {
                            for member in ask {
                                let response =
                                    authorizer.is_authorized(cedar_request, &member.alone, built);
                                tally.add(&member.alone, &response);
                            }
                        }
                    }
                }
            };
            // Any request gives the invariant policies the same principal and entities, and
            // they read nothing else: the first request's outcome is every request's.
            let invariant = invariant.get_or_insert_with(|| {
                let mut once = Tally::default();
                evaluate(&self.invariant, &mut once);
                once
            });
            tally.merge(invariant);
            for group in groups {
                evaluate(group, &mut tally);
            }
            decisions.push(tally.decision(request));
        }
        decisions
    }

    /// The groups of policies that can apply to `action` on `resource` (its uid, then its
    /// ancestors): those scoped to any resource, to this one, or to one it is in.
    fn groups(&self, action: &str, resource: &[EntityUid]) -> Vec<&Group> {
        let Some(index) = self.by_action.get(action) else {
            return Vec::new();
        };
        let mut groups = vec![&index.any];
        groups.extend(resource.first().and_then(|r| index.eq.get(r)));
        groups.extend(resource.iter().filter_map(|r| index.within.get(r)));
        groups
    }

    fn cedar_request(&self, facts: &Facts, request: &Request) -> Result<CedarRequest, String> {
        let artifact = uid("Artifact", &facts.digest.to_string())?;
        let (resource, context) = match request {
            Request::Instantiate {
                memory_bytes,
                timeout_ms,
                fuel,
            } => {
                // `fuel` only when the run is metered: an unmetered run has no fuel bound to
                // compare, and a policy must say `context has fuel` to ask for one.
                let metered = fuel.map(|fuel| {
                    (
                        "fuel".to_owned(),
                        RestrictedExpression::new_long(to_long(fuel)),
                    )
                });
                let context = Context::from_pairs(
                    [
                        (
                            "memoryBytes".to_owned(),
                            RestrictedExpression::new_long(to_long(*memory_bytes)),
                        ),
                        (
                            "timeoutMs".to_owned(),
                            RestrictedExpression::new_long(to_long(*timeout_ms)),
                        ),
                    ]
                    .into_iter()
                    .chain(metered),
                )
                .map_err(|e| e.to_string())?;
                (uid("Runtime", "cli")?, context)
            }
            Request::FsRead(path) | Request::FsWrite(path) => {
                (uid("Dir", &path_text(path)?)?, Context::empty())
            }
            Request::EnvRead(name) => (uid("EnvVar", name)?, Context::empty()),
            Request::NetConnect(host) | Request::HttpOutgoing(host) => {
                (uid("Host", canonical_host(host)?)?, Context::empty())
            }
        };
        let action = uid("Action", request.action())?;
        // Not checked against the schema: the shapes are fixed by this function, and
        // `every_request_conforms_to_the_schema` checks each one.
        CedarRequest::new(artifact, action, resource, context, None).map_err(|e| e.to_string())
    }

    /// The schema to check built entities against: none at run time (see `entities`).
    fn entity_schema(&self) -> Option<&Schema> {
        if !self.check_entities {
            return None;
        }
        if self.schema.get().is_none() {
            let _ = self.schema.set(schema().ok()?);
        }
        self.schema.get()
    }

    /// The artifact entity as seen by the evaluation for `signer` and `provenance`.
    fn artifact(
        facts: &Facts,
        signer: &Signer,
        provenance: Option<&Provenance>,
    ) -> Result<Entity, String> {
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
        if let Some(p) = provenance {
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
        Entity::new(artifact, attrs, HashSet::from([repository])).map_err(|e| e.to_string())
    }

    /// The entities for one evaluation: the artifact (with `signer` and `provenance`), its
    /// repository and registry, the runtime, and every requested resource with its ancestors.
    fn entities(
        &self,
        facts: &Facts,
        signer: &Signer,
        provenance: Option<&Provenance>,
        requests: &[Request],
    ) -> Result<Entities, String> {
        let registry = uid("Registry", &facts.registry)?;
        let repository = uid("Repository", &facts.repository)?;
        let artifact = Self::artifact(facts, signer, provenance)?;
        let mut entities: HashMap<EntityUid, Entity> = HashMap::new();
        entities.insert(
            registry.clone(),
            Entity::new_no_attrs(registry.clone(), HashSet::new()),
        );
        entities.insert(
            repository.clone(),
            Entity::new_no_attrs(repository, HashSet::from([registry])),
        );
        entities.insert(artifact.uid(), artifact);
        let runtime = uid("Runtime", "cli")?;
        entities.insert(
            runtime.clone(),
            Entity::new_no_attrs(runtime, HashSet::new()),
        );
        for request in requests {
            match request {
                Request::Instantiate { .. } => {}
                Request::FsRead(path) | Request::FsWrite(path) => {
                    // An unusable path is that request's error (see `cedar_request`).
                    let Ok(chain) = dir_chain(path) else { continue };
                    // Each directory's parents are all its ancestors, already closed.
                    let mut ancestors: HashSet<EntityUid> = HashSet::new();
                    for dir in chain.iter().rev() {
                        let this = uid("Dir", dir)?;
                        entities.entry(this.clone()).or_insert_with(|| {
                            Entity::new_no_attrs(this.clone(), ancestors.clone())
                        });
                        ancestors.insert(this);
                    }
                }
                Request::EnvRead(name) => {
                    let this = uid("EnvVar", name)?;
                    entities.insert(this.clone(), Entity::new_no_attrs(this, HashSet::new()));
                }
                Request::NetConnect(host) | Request::HttpOutgoing(host) => {
                    let this = uid("Host", host)?;
                    entities.insert(this.clone(), Entity::new_no_attrs(this, HashSet::new()));
                }
            }
        }
        // Not checked against the schema here (a third of the cost of a decision): the shapes
        // are fixed by this function, and `entities_conform_to_the_schema` checks them. A
        // mismatch could only make a validated policy error at run time, which denies.
        Entities::from_entities(entities.into_values(), self.entity_schema())
            .map_err(|e| e.to_string())
    }
}

/// The entity stores of one run's evaluations, one per (signer, provenance) pair, built when
/// first needed: the first from scratch, the others as a copy of it with only the artifact
/// replaced (it has no descendants, so nothing else's ancestors change).
struct Stores<'a> {
    policies: &'a Policies,
    facts: &'a Facts,
    signers: &'a [Signer],
    provenances: &'a [Option<&'a Provenance>],
    requests: &'a [Request],
    built: Vec<Option<Result<Entities, String>>>,
}

impl<'a> Stores<'a> {
    fn new(
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
    fn get(&mut self, signer: usize, provenance: usize) -> &Result<Entities, String> {
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
                (Some(Some(Ok(first))), Some(s), Some(p)) => Policies::artifact(self.facts, s, *p)
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
fn canonical_host(host: &str) -> Result<&str, String> {
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
fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    Ok(EntityUid::from_type_name_and_id(
        type_name(kind)?,
        EntityId::new(id),
    ))
}

/// The schema's entity types, parsed once (parsing a name runs Cedar's parser).
fn type_name(kind: &str) -> Result<EntityTypeName, String> {
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

/// The actions of the schema.
const ACTIONS: [&str; 6] = [
    "instantiate",
    "fs.read",
    "fs.write",
    "env.read",
    "net.connect",
    "http.outgoing",
];

/// Policies to evaluate together, by what of an evaluation they read: neither the artifact's
/// `signer` nor its `provenance` (evaluated once per request), only one of them (once per
/// signer, or per provenance), or both (once per pair). Splitting a set into groups and
/// combining their outcomes by the rule gives the outcome of the whole set: the rule is a
/// union of permits and of forbids.
#[derive(Default)]
struct Group {
    independent: Pass,
    by_signer: Pass,
    by_provenance: Pass,
    by_both: Pass,
}

impl Group {
    fn add(&mut self, member: &Arc<Member>) -> Result<(), String> {
        let pass = match (member.reads_signer, member.reads_provenance) {
            (false, false) => &mut self.independent,
            (true, false) => &mut self.by_signer,
            (false, true) => &mut self.by_provenance,
            (true, true) => &mut self.by_both,
        };
        pass.add(member)
    }
}

/// Policies evaluated together: each with its screen and a set of its own, and all of them as
/// one set (for when the screens settle none of them).
#[derive(Default)]
struct Pass {
    members: Vec<Arc<Member>>,
    all: PolicySet,
}

/// One policy, analysed once at load.
struct Member {
    id: String,
    effect: Effect,
    /// Its condition reads an attribute named `signer` (see [`reads_attribute`]).
    reads_signer: bool,
    /// Its condition reads the artifact's `provenance` (see [`reads_attribute`]).
    reads_provenance: bool,
    /// Its outcome is the same for every request of a run (see `is_invariant`).
    invariant: bool,
    screen: Screen,
    /// The policy alone.
    alone: PolicySet,
}

impl Member {
    fn new(policy: &Policy) -> Result<Self, String> {
        // The JSON form of the conditions, read by the invariance check and the screen. Cedar
        // makes it by parsing the policy's text again (most of the load time this adds), so
        // only when there are conditions to read.
        let json = if policy.has_non_scope_constraint() {
            policy.to_json().ok()
        } else {
            Some(serde_json::json!({ "conditions": [] }))
        };
        let mut alone = PolicySet::new();
        alone.add(policy.clone()).map_err(|e| e.to_string())?;
        Ok(Self {
            id: policy.id().to_string(),
            effect: policy.effect(),
            reads_signer: reads_attribute(json.as_ref(), "signer"),
            reads_provenance: reads_attribute(json.as_ref(), "provenance"),
            invariant: is_invariant(policy, json.as_ref()),
            screen: Screen::of(policy, json.as_ref()),
            alone,
        })
    }

    fn policy(&self) -> Option<&Policy> {
        self.alone.policies().next()
    }
}

impl Pass {
    fn add(&mut self, member: &Arc<Member>) -> Result<(), String> {
        let policy = member.policy().ok_or("an empty policy set")?;
        self.all.add(policy.clone()).map_err(|e| e.to_string())?;
        self.members.push(Arc::clone(member));
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// One action's policies, grouped by their resource scope.
#[derive(Default)]
struct ActionIndex {
    /// Any resource (or a type only).
    any: Group,
    /// `resource == X`, by X.
    eq: HashMap<EntityUid, Group>,
    /// `resource in X` (or `is T in X`), by X.
    within: HashMap<EntityUid, Group>,
}

/// Does any condition of the policy read an attribute named `attribute` (of anything: the
/// artifact's `signer`, and also `provenance.signer`), or test for it with `has`? Read from the
/// policy's JSON form, where every attribute access and test is `{".": {"left": …, "attr":
/// …}}` or `{"has": {…}}` whatever its spelling in the text (`principal.signer`,
/// `principal["signer"]`, `principal["sign\u{65}r"]`); a policy without a JSON form counts as
/// reading it.
fn reads_attribute(json: Option<&serde_json::Value>, attribute: &str) -> bool {
    use serde_json::Value;
    /// Whether an access's `attr` may be `attribute`: the name itself, a path (`has a.b`)
    /// containing it, or anything unexpected (counted as reading it).
    fn names(attr: Option<&Value>, attribute: &str) -> bool {
        match attr {
            Some(Value::String(attr)) => attr == attribute,
            Some(Value::Array(attrs)) => attrs.iter().any(|a| a.as_str() == Some(attribute)),
            _ => true,
        }
    }
    fn reads(value: &Value, attribute: &str) -> bool {
        match value {
            Value::Object(map) => map.iter().any(|(key, inner)| {
                let here = match key.as_str() {
                    "." | "has" => names(inner.get("attr"), attribute),
                    // Tags are not attributes, but reading one is reading the entity.
                    "getTag" | "hasTag" => true,
                    _ => false,
                };
                here || reads(inner, attribute)
            }),
            Value::Array(items) => items.iter().any(|item| reads(item, attribute)),
            _ => false,
        }
    }
    match json {
        Some(json) => json.get("conditions").is_none_or(|c| reads(c, attribute)),
        None => true,
    }
}

/// Does any condition of the policy read `action`, `resource` or `context`? Read from the
/// policy's JSON form, where every use of a variable is `{"Var": "<name>"}`; a policy without
/// a JSON form counts as reading them.
fn reads_request(json: Option<&serde_json::Value>) -> bool {
    fn reads(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => map.iter().any(|(key, value)| {
                (key == "Var" && matches!(value.as_str(), Some("action" | "resource" | "context")))
                    || reads(value)
            }),
            serde_json::Value::Array(items) => items.iter().any(reads),
            _ => false,
        }
    }
    match json {
        Some(json) => json.get("conditions").is_none_or(reads),
        None => true,
    }
}

/// Does the outcome of `policy` depend only on the principal (and so not on the request)?
fn is_invariant(policy: &Policy, json: Option<&serde_json::Value>) -> bool {
    matches!(policy.action_constraint(), ActionConstraint::Any)
        && matches!(policy.resource_constraint(), ResourceConstraint::Any)
        && !reads_request(json)
}

/// The policies that apply to every request and read only the principal, then for each
/// action the other policies whose action scope admits it, indexed by resource scope.
fn slice_by_action(set: &PolicySet) -> Result<(HashMap<&'static str, ActionIndex>, Group), String> {
    let members = set
        .policies()
        .map(|p| Member::new(p).map(|m| (p, Arc::new(m))))
        .collect::<Result<Vec<_>, String>>()?;
    let (invariant_members, others): (Vec<_>, Vec<_>) =
        members.iter().partition(|(_, m)| m.invariant);
    let mut invariant = Group::default();
    for (_, member) in invariant_members {
        invariant.add(member)?;
    }
    let mut slices = HashMap::new();
    for action in ACTIONS {
        let this = uid("Action", action)?;
        let mut index = ActionIndex::default();
        for &(policy, member) in &others {
            let admits = match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => a == this,
                // The schema declares no action groups: `in` is membership of the list.
                ActionConstraint::In(list) => list.contains(&this),
            };
            if !admits {
                continue;
            }
            match policy.resource_constraint() {
                ResourceConstraint::Any | ResourceConstraint::Is(_) => index.any.add(member)?,
                ResourceConstraint::Eq(r) => index.eq.entry(r).or_default().add(member)?,
                ResourceConstraint::In(r) | ResourceConstraint::IsIn(_, r) => {
                    index.within.entry(r).or_default().add(member)?;
                }
            }
        }
        slices.insert(action, index);
    }
    Ok((slices, invariant))
}

/// A request's resource uid followed by its ancestors (a directory's parent chain).
fn request_resource(request: &Request) -> Result<Vec<EntityUid>, String> {
    Ok(match request {
        Request::Instantiate { .. } => vec![uid("Runtime", "cli")?],
        Request::FsRead(path) | Request::FsWrite(path) => dir_chain(path)?
            .iter()
            .map(|d| uid("Dir", d))
            .collect::<Result<_, _>>()?,
        Request::EnvRead(name) => vec![uid("EnvVar", name)?],
        Request::NetConnect(host) | Request::HttpOutgoing(host) => vec![uid("Host", host)?],
    })
}

/// The evaluations of one request, combined by the rule.
#[derive(Default)]
struct Tally {
    allowed_once: bool,
    permits: BTreeSet<String>,
    forbids: BTreeSet<String>,
    errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, error: String) {
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// Adds the evaluations `other` combined.
    fn merge(&mut self, other: &Tally) {
        self.allowed_once |= other.allowed_once;
        self.permits.extend(other.permits.iter().cloned());
        self.forbids.extend(other.forbids.iter().cloned());
        for error in &other.errors {
            self.error(error.clone());
        }
    }

    /// A policy its screen found satisfied, as Cedar would have reported it.
    fn holds(&mut self, member: &Member) {
        match member.effect {
            Effect::Permit => {
                self.allowed_once = true;
                self.permits.insert(member.id.clone());
            }
            Effect::Forbid => {
                self.forbids.insert(member.id.clone());
            }
        }
    }

    fn add(&mut self, set: &PolicySet, response: &cedar_policy::Response) {
        for error in response.diagnostics().errors() {
            self.error(error.to_string());
        }
        let reasons = response.diagnostics().reason();
        match response.decision() {
            CedarDecision::Allow => {
                self.allowed_once = true;
                self.permits.extend(reasons.map(ToString::to_string));
            }
            CedarDecision::Deny => {
                for id in reasons {
                    if set.policy(id).map(Policy::effect) == Some(Effect::Forbid) {
                        self.forbids.insert(id.to_string());
                    }
                }
            }
        }
    }

    fn decision(self, request: &Request) -> Decision {
        let allowed = self.allowed_once && self.forbids.is_empty() && self.errors.is_empty();
        Decision {
            request: request.clone(),
            allowed,
            determining: if allowed {
                self.permits.into_iter().collect()
            } else {
                self.forbids.into_iter().collect()
            },
            errors: {
                let mut errors = self.errors;
                errors.sort();
                errors
            },
        }
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

/// Everything verified about one artifact: what policies see. Built once, then read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    digest: Digest,
    kind: String,
    size_bytes: u64,
    registry: String,
    repository: String,
    signers: Vec<Signer>,
    provenances: Vec<Provenance>,
    #[serde(skip)]
    key: String,
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
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// The Wasm layer's size.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    /// The registry host (`oci-layout` for a layout).
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
    pub fn provenances(&self) -> &[Provenance] {
        &self.provenances
    }

    /// What each evaluation sees as the artifact's `provenance`: each verified one in turn,
    /// or none (one evaluation) when there is none.
    fn evaluated_provenances(&self) -> Vec<Option<&Provenance>> {
        if self.provenances.is_empty() {
            vec![None]
        } else {
            self.provenances.iter().map(Some).collect()
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

    /// The resource's id (`cli` for `instantiate`).
    pub fn resource(&self) -> String {
        match self {
            Self::Instantiate { .. } => "cli".into(),
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
        } = self
        {
            let mut context = serde_json::json!({
                "memoryBytes": memory_bytes, "timeoutMs": timeout_ms,
            });
            if let (Some(fuel), Some(map)) = (fuel, context.as_object_mut()) {
                map.insert("fuel".into(), (*fuel).into());
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
            } => match fuel {
                Some(fuel) => write!(
                    f,
                    "instantiate (memory {memory_bytes} B, timeout {timeout_ms} ms, fuel {fuel})"
                ),
                None => write!(
                    f,
                    "instantiate (memory {memory_bytes} B, timeout {timeout_ms} ms, unmetered)"
                ),
            },
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
    fn error(request: &Request, error: String) -> Self {
        Self {
            request: request.clone(),
            allowed: false,
            determining: Vec::new(),
            errors: vec![error],
        }
    }

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
            Vec::new(),
        )
    }

    fn instantiate() -> Request {
        Request::Instantiate {
            memory_bytes: 1 << 20,
            timeout_ms: 1000,
            fuel: None,
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

    /// Every shape `entities` builds (all request kinds, provenance, no signers, several)
    /// conforms to the schema.
    #[test]
    fn entities_conform_to_the_schema() {
        let mut policies = load(&[("p.cedar", PERMIT_RELEASE)]).unwrap();
        policies.check_entities = true;
        let provenance = Provenance {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            builder_id: "b".into(),
            source_repository: "r".into(),
            source_ref: "f".into(),
            signer: keyless(RELEASE),
        };
        let requests = vec![
            instantiate(),
            Request::FsRead(PathBuf::from("/srv/data/in")),
            Request::FsWrite(PathBuf::from("/srv/data")),
            Request::EnvRead("LOG_LEVEL".into()),
            Request::NetConnect("api.example:443".into()),
            Request::HttpOutgoing("api.example:443".into()),
        ];
        for signers in [
            Vec::new(),
            vec![keyless(RELEASE), Signer::key("sha256:aa".into())],
        ] {
            let mut f = facts(signers.clone());
            f.provenances = vec![provenance.clone()];
            for signer in signers.iter().chain([&Signer::none()]) {
                policies
                    .entities(&f, signer, Some(&provenance), &requests)
                    .unwrap();
                policies.entities(&f, signer, None, &requests).unwrap();
            }
        }
    }

    /// A memo that vouches for the keys it was told, and counts what it was asked.
    #[derive(Default)]
    struct Memo {
        known: std::sync::Mutex<Vec<[u8; 32]>>,
        vouch_all: bool,
    }

    impl ValidationMemo for Memo {
        fn vouches(&self, key: &[u8; 32]) -> bool {
            self.vouch_all || self.known.lock().unwrap().contains(key)
        }
        fn remember(&self, key: &[u8; 32]) {
            self.known.lock().unwrap().push(*key);
        }
    }

    /// Ill-typed (a string compared with a number), but parses and has an id.
    const ILL_TYPED: &str =
        "@id(\"bad\")\npermit (principal, action, resource) when { principal.digest > 3 };";

    /// Validation is skipped exactly when the memo vouches for the exact sources: a valid set
    /// is remembered under its key, an invalid one is refused and never remembered, and a memo
    /// that vouches for anything shows what it is trusted with (why it must be authenticated).
    #[test]
    fn the_validation_memo_is_asked_for_the_exact_sources() {
        let sources = |text: &str| vec![(PathBuf::from("p.cedar"), text.to_owned())];
        let memo = Memo::default();
        let valid = sources(PERMIT_RELEASE);
        Policies::from_sources_with(&valid, Some(&memo)).unwrap();
        assert_eq!(*memo.known.lock().unwrap(), vec![validation_key(&valid)]);
        // Vouched now: loads without validating (and without the schema).
        let again = Policies::from_sources_with(&valid, Some(&memo)).unwrap();
        assert!(again.schema.get().is_none());
        assert_eq!(memo.known.lock().unwrap().len(), 1);
        // Invalid: refused and not remembered.
        let invalid = sources(ILL_TYPED);
        assert!(matches!(
            Policies::from_sources_with(&invalid, Some(&memo)),
            Err(PolicyError::Invalid(_))
        ));
        assert_eq!(memo.known.lock().unwrap().len(), 1);
        // A memo that vouches for everything lets the ill-typed set through: the memo is
        // trusted with exactly that, so the CLI's is authenticated and keyed by content.
        let credulous = Memo {
            vouch_all: true,
            ..Memo::default()
        };
        assert!(Policies::from_sources_with(&invalid, Some(&credulous)).is_ok());
        // Parse errors and ids are checked whatever the memo says.
        assert!(
            Policies::from_sources_with(
                &sources("permit (principal, action, resource);"),
                Some(&credulous)
            )
            .is_err()
        );
        assert!(
            Policies::from_sources_with(&sources("permit (principal"), Some(&credulous)).is_err()
        );
    }

    #[derive(Default)]
    struct Runs(std::sync::Mutex<HashMap<[u8; 32], String>>);

    impl DecisionMemo for Runs {
        fn recall(&self, key: &[u8; 32]) -> Option<String> {
            self.0.lock().unwrap().get(key).cloned()
        }
        fn remember(&self, key: &[u8; 32], body: &str) {
            self.0.lock().unwrap().insert(*key, body.to_owned());
        }
    }

    /// A run whose every request is allowed is remembered, and the grant recalled for exactly
    /// the same sources, facts and requests equals the one decided; any other facts, requests
    /// or sources recall nothing, and a run with a denial (dropped or not) is not remembered.
    #[test]
    fn remembered_decisions_give_the_same_grant_for_exactly_the_same_run() {
        let text = format!(
            "{PERMIT_RELEASE}\n@id(\"env\")\npermit (principal, action == Warrant::Action::\"env.read\", resource == Warrant::EnvVar::\"LOG_LEVEL\");"
        );
        let sources = vec![(PathBuf::from("p.cedar"), text)];
        let key = validation_key(&sources);
        let policies = Policies::from_sources(&sources).unwrap();
        let memo = Runs::default();
        let f = facts(vec![keyless(RELEASE)]);
        let asks = |env: &[&str], memory_bytes: u64| Asks {
            memory_bytes,
            timeout_ms: 1000,
            fuel: None,
            dirs: Vec::new(),
            env: env
                .iter()
                .map(|n| ((*n).to_owned(), "v".to_owned()))
                .collect(),
            net: Vec::new(),
        };
        let allowed = asks(&["LOG_LEVEL"], 1 << 20);
        assert!(remembered_grant(&memo, &key, &f, &allowed).is_none());
        let decided = policies
            .grant_remembering(&f, &allowed, false, Some((&memo, &key)))
            .unwrap();
        let recalled = remembered_grant(&memo, &key, &f, &allowed).unwrap();
        let json = |g: &Grant| serde_json::to_string(g).unwrap();
        assert_eq!(json(&recalled), json(&decided));
        assert_eq!(recalled.decisions()[0].determining, vec!["release-may-run"]);
        // Anything else recalls nothing.
        assert!(remembered_grant(&memo, &key, &f, &asks(&["LOG_LEVEL"], 2 << 20)).is_none());
        assert!(remembered_grant(&memo, &key, &f, &asks(&[], 1 << 20)).is_none());
        let other = facts(vec![keyless(RELEASE), Signer::key("sha256:aa".into())]);
        assert!(remembered_grant(&memo, &key, &other, &allowed).is_none());
        assert!(remembered_grant(&memo, &[7; 32], &f, &allowed).is_none());
        // Denied, or allowed only by dropping a denied request: not remembered.
        let denied = asks(&["LOG_LEVEL", "SECRET"], 1 << 20);
        assert!(
            policies
                .grant_remembering(&f, &denied, false, Some((&memo, &key)))
                .is_err()
        );
        let dropped = policies
            .grant_remembering(&f, &denied, true, Some((&memo, &key)))
            .unwrap();
        assert_eq!(dropped.env().len(), 1);
        assert_eq!(memo.0.lock().unwrap().len(), 1);
        assert!(remembered_grant(&memo, &key, &f, &denied).is_none());
        // A remembered body that does not fit the requests is no grant.
        let k = decision_key(&key, &f, &allowed.requests());
        memo.remember(&k, r#"{"policyHash":"h","determining":[["a"]]}"#);
        assert!(remembered_grant(&memo, &key, &f, &allowed).is_none());
    }

    /// The key changes with any byte of any source, its name, and the order of sources.
    #[test]
    fn the_validation_key_covers_every_source_byte_and_name() {
        let a = (PathBuf::from("a.cedar"), PERMIT_RELEASE.to_owned());
        let b = (PathBuf::from("b.cedar"), ILL_TYPED.to_owned());
        let base = validation_key(&[a.clone(), b.clone()]);
        assert_ne!(base, validation_key(&[b.clone(), a.clone()]));
        assert_ne!(base, validation_key(std::slice::from_ref(&a)));
        assert_ne!(
            base,
            validation_key(&[(PathBuf::from("c.cedar"), a.1.clone()), b.clone()])
        );
        // Moving a byte from one source to the next is a different key too.
        let (head, tail) = PERMIT_RELEASE.split_at(10);
        assert_ne!(
            validation_key(&[
                (a.0.clone(), head.to_owned()),
                (b.0.clone(), tail.to_owned())
            ]),
            validation_key(&[
                (a.0.clone(), format!("{head}{}", &tail[..1])),
                (b.0.clone(), tail[1..].to_owned())
            ])
        );
        for at in 0..PERMIT_RELEASE.len() {
            let mut bytes = PERMIT_RELEASE.as_bytes().to_vec();
            bytes[at] ^= 1;
            let Ok(flipped) = String::from_utf8(bytes) else {
                continue;
            };
            assert_ne!(
                base,
                validation_key(&[(a.0.clone(), flipped), b.clone()]),
                "byte {at}"
            );
        }
        assert_eq!(base, validation_key(&[a, b]));
    }

    /// Requests are built without the schema's check (it costs a parse of the schema per
    /// process): every kind of request passes that check.
    #[test]
    fn every_request_conforms_to_the_schema() {
        let policies = load(&[("p.cedar", PERMIT_RELEASE)]).unwrap();
        let schema = schema().unwrap();
        let f = facts(vec![keyless(RELEASE)]);
        for request in [
            instantiate(),
            Request::Instantiate {
                memory_bytes: u64::MAX,
                timeout_ms: u64::MAX,
                fuel: Some(u64::MAX),
            },
            Request::FsRead(PathBuf::from("/srv/data/in")),
            Request::FsWrite(PathBuf::from("/")),
            Request::EnvRead("LOG_LEVEL".into()),
            Request::NetConnect("api.example:443".into()),
            Request::HttpOutgoing("[::1]:443".into()),
        ] {
            let unchecked = policies.cedar_request(&f, &request).unwrap();
            let (Some(principal), Some(action), Some(resource), Some(context)) = (
                unchecked.principal(),
                unchecked.action(),
                unchecked.resource(),
                unchecked.context(),
            ) else {
                panic!("{request}: a part is missing");
            };
            CedarRequest::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                context.clone(),
                Some(&schema),
            )
            .unwrap_or_else(|e| panic!("{request}: {e}"));
        }
    }

    /// The stores after the first are copies with the artifact replaced: each equals the
    /// store built from scratch for its signer (ancestors included).
    #[test]
    fn a_copied_store_equals_one_built_from_scratch() {
        let policies = load(&[(
            "p.cedar",
            "@id(\"p\")\npermit (principal, action, resource);",
        )])
        .unwrap();
        let signers = vec![
            keyless(RELEASE),
            Signer::key("sha256:aa".into()),
            keyless("https://github.com/evil/y"),
        ];
        let mut f = facts(signers.clone());
        f.provenances = ["b1", "b2"]
            .into_iter()
            .map(|builder| Provenance {
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                builder_id: builder.into(),
                source_repository: "r".into(),
                source_ref: "refs/tags/v1".into(),
                signer: Signer::key("sha256:aa".into()),
            })
            .collect();
        let requests = [
            instantiate(),
            Request::FsRead(PathBuf::from("/srv/data/in")),
            Request::EnvRead("LOG_LEVEL".into()),
            Request::NetConnect("api.example:443".into()),
        ];
        let json = |e: &Entities| {
            let mut all: Vec<String> = e
                .iter()
                .map(|entity| {
                    // Parents are a set: compare them in one order.
                    let mut json = entity.to_json_value().unwrap();
                    if let Some(serde_json::Value::Array(parents)) = json.get_mut("parents") {
                        parents.sort_by_key(ToString::to_string);
                    }
                    json.to_string()
                })
                .collect();
            all.sort();
            all
        };
        let provenances: Vec<Option<&Provenance>> = f.evaluated_provenances();
        let mut stores = Stores::new(&policies, &f, &signers, &provenances, &requests);
        for (i, signer) in signers.iter().enumerate().rev() {
            for (j, provenance) in provenances.iter().enumerate().rev() {
                let copied = json(stores.get(i, j).as_ref().unwrap());
                let scratch = json(
                    &policies
                        .entities(&f, signer, *provenance, &requests)
                        .unwrap(),
                );
                assert_eq!(copied, scratch, "signer {i}, provenance {j}");
                assert!(copied.iter().any(|e| e.contains(&signer.identity)));
                if let Some(p) = provenance {
                    assert!(copied.iter().any(|e| e.contains(&p.builder_id)));
                }
            }
        }
    }

    impl Policies {
        /// The rule applied the plain way: the whole set, once per (signer, provenance) pair,
        /// entities checked.
        pub(super) fn evaluate_naive(&self, facts: &Facts, request: &Request) -> Decision {
            let none = [Signer::none()];
            let signers: &[Signer] = if facts.signers.is_empty() {
                &none
            } else {
                &facts.signers
            };
            let mut tally = Tally::default();
            let cedar_request = match self.cedar_request(facts, request) {
                Ok(r) => r,
                Err(e) => {
                    tally.error(e);
                    return tally.decision(request);
                }
            };
            let requests = std::slice::from_ref(request);
            for signer in signers {
                for provenance in facts.evaluated_provenances() {
                    let entities = Entities::from_entities(
                        self.entities_unchecked(facts, signer, provenance, requests),
                        Some(self.schema.get_or_init(|| schema().unwrap())),
                    )
                    .unwrap();
                    let response =
                        Authorizer::new().is_authorized(&cedar_request, &self.all, &entities);
                    tally.add(&self.all, &response);
                }
            }
            tally.decision(request)
        }

        fn entities_unchecked(
            &self,
            facts: &Facts,
            signer: &Signer,
            provenance: Option<&Provenance>,
            requests: &[Request],
        ) -> Vec<Entity> {
            let built = self.entities(facts, signer, provenance, requests).unwrap();
            built.iter().cloned().collect()
        }
    }

    /// The sliced, grouped, signer-split evaluation equals the plain one on thousands of
    /// generated policy sets, artifacts and requests (a fixed-seed generator, so failures
    /// reproduce).
    #[test]
    fn the_indexed_evaluation_equals_the_plain_one() {
        const TEMPLATES: &[&str] = &[
            "permit (principal, action, resource);",
            "permit (principal, action == Warrant::Action::\"instantiate\", resource) when { principal.signer.kind == \"key\" };",
            "permit (principal, action == Warrant::Action::\"instantiate\", resource) when { principal.signer.identity like \"https://github.com/acme/*\" && context.memoryBytes <= 1048576 };",
            "forbid (principal, action, resource) when { principal.signer.identity like \"*evil*\" };",
            "forbid (principal, action, resource) when { principal.sizeBytes > 5000 };",
            "permit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv\");",
            "permit (principal, action in [Warrant::Action::\"fs.read\", Warrant::Action::\"fs.write\"], resource in Warrant::Dir::\"/srv/data\") when { principal.signer.kind == \"keyless\" };",
            "forbid (principal, action == Warrant::Action::\"fs.write\", resource == Warrant::Dir::\"/srv/data\");",
            "permit (principal, action == Warrant::Action::\"fs.write\", resource is Warrant::Dir) when { principal.signers.contains({kind: \"key\", identity: \"sha256:aa\", issuer: \"key\"}) };",
            "permit (principal, action == Warrant::Action::\"env.read\", resource == Warrant::EnvVar::\"LOG_LEVEL\");",
            "permit (principal, action == Warrant::Action::\"env.read\", resource) when { principal.signer.kind != \"none\" };",
            "forbid (principal, action == Warrant::Action::\"env.read\", resource == Warrant::EnvVar::\"SECRET\");",
            "permit (principal, action == Warrant::Action::\"net.connect\", resource == Warrant::Host::\"api.example:443\") when { principal in Warrant::Repository::\"ghcr.io/acme/plugin\" };",
            "permit (principal, action, resource is Warrant::Host) when { principal.signer.issuer == \"https://issuer.example\" };",
            "forbid (principal, action == Warrant::Action::\"instantiate\", resource) when { context.memoryBytes * 9223372036854775807 > 0 && principal.signer.kind == \"keyless\" };",
            "forbid (principal, action in [Warrant::Action::\"net.connect\", Warrant::Action::\"instantiate\"], resource) when { principal.digest == \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" };",
            "permit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv/data/in\") when { principal has provenance && principal.provenance.signer.kind == \"key\" };",
            "permit (principal, action == Warrant::Action::\"instantiate\", resource == Warrant::Runtime::\"cli\") when { principal.signer.kind == \"none\" };",
            "forbid (principal, action, resource) when { principal.sizeBytes * 9223372036854775807 > 0 && principal.signer.kind == \"none\" };",
            "permit (principal, action, resource) when { principal in Warrant::Repository::\"ghcr.io/acme/plugin\" };",
            "forbid (principal, action, resource) when { context has memoryBytes && context.memoryBytes > 1048576 && principal.signer.kind != \"key\" };",
            "permit (principal, action, resource) when { resource is Warrant::EnvVar && principal.signer.kind == \"keyless\" };",
            // Every provenance is seen: a forbid on any of them wins.
            "forbid (principal, action, resource) when { principal has provenance && principal.provenance.sourceRef like \"refs/heads/*\" };",
            "permit (principal, action == Warrant::Action::\"instantiate\", resource) when { principal has provenance && principal.provenance.builderId == \"b1\" };",
            "permit (principal, action == Warrant::Action::\"env.read\", resource) when { principal has provenance && principal.provenance.signer == principal.signer };",
            // Escaped and indexed attribute forms read what the dotted ones read.
            "forbid (principal, action, resource) when { principal[\"sign\\u{65}r\"].identity like \"*evil*\" };",
            "permit (principal, action == Warrant::Action::\"fs.write\", resource) when { principal[\"signer\"][\"kind\"] == \"key\" };",
            "forbid (principal, action == Warrant::Action::\"instantiate\", resource) when { principal has provenance && principal[\"provenance\"][\"build\\u{65}rId\"] == \"b2\" };",
            "permit (principal, action == Warrant::Action::\"net.connect\", resource) when { principal has provenance && principal[\"provenance\"].signer[\"kind\"] == \"key\" && principal[\"signer\"].kind == \"keyless\" };",
            // Fuel only when metered.
            "permit (principal, action == Warrant::Action::\"instantiate\", resource) when { context has fuel && context.fuel <= 1000 };",
            "forbid (principal, action == Warrant::Action::\"instantiate\", resource) unless { context has fuel };",
        ];
        let signer_pool = [
            Signer::key("sha256:aa".into()),
            Signer::key("sha256:bb".into()),
            keyless("https://github.com/acme/plugin/x"),
            keyless("https://github.com/evil/y"),
            Signer {
                issuer: "https://issuer.example".into(),
                ..keyless("https://github.com/acme/z")
            },
        ];
        let requests = super::screen_tests::requests();
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            usize::try_from(seed >> 33).unwrap() % n
        };
        let mut compared = 0;
        for _ in 0..300 {
            let count = 1 + next(8);
            let text: String = (0..count)
                .map(|i| format!("@id(\"p{i}\")\n{}\n", TEMPLATES[next(TEMPLATES.len())]))
                .collect();
            let policies = load(&[("p.cedar", text.as_str())]).unwrap();
            for _ in 0..8 {
                let signers: Vec<Signer> = (0..next(4))
                    .map(|_| signer_pool[next(signer_pool.len())].clone())
                    .collect();
                let mut f = Facts::new(
                    Digest::of(&[u8::try_from(next(3)).unwrap()]),
                    WasmKind::Module,
                    [1000, 9000][next(2)] as u64,
                    "ghcr.io".into(),
                    ["ghcr.io/acme/plugin", "ghcr.io/other/x"][next(2)].into(),
                    signers,
                    Vec::new(),
                );
                // 0–3 provenances, from builders `b1`/`b2`, tags or branches.
                f.provenances = (0..next(4))
                    .map(|_| Provenance {
                        predicate_type: "https://slsa.dev/provenance/v1".into(),
                        builder_id: ["b1", "b2"][next(2)].into(),
                        source_repository: "r".into(),
                        source_ref: ["refs/tags/v1", "refs/heads/feature"][next(2)].into(),
                        signer: signer_pool[next(signer_pool.len())].clone(),
                    })
                    .collect();
                let indexed = policies.evaluate_all(&f, &requests);
                for (request, fast) in requests.iter().zip(indexed) {
                    let plain = policies.evaluate_naive(&f, request);
                    assert_eq!(fast.allowed, plain.allowed, "{text}\n{f:?}\n{request}");
                    assert_eq!(fast.determining, plain.determining, "{text}\n{request}");
                    assert_eq!(fast.errors, plain.errors, "{text}\n{request}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 300 * 8 * requests.len());
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
    fn a_comment_quoting_a_policy_is_not_taken_for_it() {
        let text = "// @id(\"a\") permit (principal, action, resource);\n\
                    @id(\"a\") permit (principal, action, resource);\n\
                    @id(\"a\") permit (principal, action, resource);\n";
        let p = problems(&[("p.cedar", text)]);
        assert_eq!(
            p[0].to_string(),
            "p.cedar:3: policy `a`: duplicate `@id`: also at p.cedar:2"
        );
        let p = problems(&[(
            "p.cedar",
            "// permit (principal, action, resource);\npermit (principal, action, resource);\n",
        )]);
        assert_eq!(p[0].line, Some(2));
        // `//` inside a string is not a comment.
        assert_eq!(blank_comments("\"https://x\" // c"), "\"https://x\"     ");
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
            "\n\n@id(\"typo\")\npermit (principal, action, resource)\nwhen { principal.signr.kind == \"key\" };\n",
        )]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].policy.as_deref(), Some("typo"));
        assert_eq!(p[0].line, Some(5), "the line of the bad expression");
        assert!(p[0].message.contains("signr"), "{}", p[0]);
    }

    /// Fuel used to be `0` for an unmetered run, so `context.fuel <= N` permitted an unmetered
    /// run. `fuel` is now in the context only when the run is metered: the bound must be
    /// written `context has fuel && …`, which no unmetered run satisfies, and the old form is
    /// refused when the policies are loaded.
    #[test]
    fn finding_fuel_an_unmetered_run_cannot_satisfy_a_fuel_bound() {
        let bounded = "@id(\"bounded\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\nwhen { context has fuel && context.fuel <= 1000000 };\n";
        let policies = load(&[("p.cedar", bounded)]).unwrap();
        let f = facts(vec![Signer::key("sha256:aa".into())]);
        let run = |fuel: Option<u64>| {
            policies
                .evaluate(
                    &f,
                    &Request::Instantiate {
                        memory_bytes: 1 << 20,
                        timeout_ms: 1000,
                        fuel,
                    },
                )
                .allowed
        };
        assert!(!run(None), "an unmetered run is not within a fuel bound");
        assert!(run(Some(1000)));
        assert!(run(Some(1_000_000)));
        assert!(!run(Some(1_000_001)));
        let old = "@id(\"old\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\nwhen { context.fuel <= 1000000 };\n";
        let p = problems(&[("p.cedar", old)]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].policy.as_deref(), Some("old"));
        assert!(p[0].message.contains("fuel"), "{}", p[0]);
    }

    /// `tenant-network.cedar` suggests how to grant several hosts in one policy: the form it
    /// suggests is Cedar the schema accepts, and the one it used to suggest (a list after
    /// `resource in` in the scope) is not.
    #[test]
    fn the_multi_host_form_the_starter_set_suggests_is_valid() {
        let shipped = include_str!("../../policies/tenant-network.cedar");
        let suggested = r#"[Warrant::Host::"a.example:443", Warrant::Host::"b.example:443"].contains(resource)"#;
        assert!(
            shipped.contains(suggested),
            "the comment changed: update this test"
        );
        let good = format!(
            "@id(\"hosts\")\npermit (principal in Warrant::Repository::\"ghcr.io/acme/plugin\", action == Warrant::Action::\"net.connect\", resource is Warrant::Host)\nwhen {{ {suggested} }};\n"
        );
        let policies = load(&[("p.cedar", good.as_str())]).unwrap();
        let mut f = facts(Vec::new());
        f.repository = "ghcr.io/acme/plugin".into();
        let connect = |host: &str| {
            policies
                .evaluate(&f, &Request::NetConnect(host.into()))
                .allowed
        };
        assert!(connect("a.example:443") && connect("b.example:443"));
        assert!(!connect("c.example:443"));
        let old = "@id(\"old\")\npermit (principal, action == Warrant::Action::\"net.connect\", resource in [Warrant::Host::\"a:443\", Warrant::Host::\"b:443\"]);\n";
        assert!(!problems(&[("p.cedar", old)]).is_empty());
    }

    /// Finding 6: hosts were decided as text and connected as addresses. Every spelling a
    /// resolver reads as an address is either the canonical one or refused.
    #[test]
    fn finding_6_host_asks_are_decided_in_the_form_connected_to() {
        for (asked, decided) in [
            ("169.254.169.254:80", "169.254.169.254:80"),
            ("LOCALHOST:22", "localhost:22"),
            ("localhost.:22", "localhost:22"),
            ("Api.Example.COM.:443", "api.example.com:443"),
            ("[::1]:22", "[::1]:22"),
            ("[0:0:0:0:0:0:0:1]:22", "[::1]:22"),
            ("[2001:DB8::0:1]:443", "[2001:db8::1]:443"),
            ("[::ffff:169.254.169.254]:80", "169.254.169.254:80"),
            ("[::ffff:a9fe:a9fe]:80", "169.254.169.254:80"),
            ("1st.example:80", "1st.example:80"),
            ("a.0x1g:80", "a.0x1g:80"),
            ("xn--bcher-kva.example:443", "xn--bcher-kva.example:443"),
        ] {
            assert_eq!(
                canonical_host_port(asked).as_deref(),
                Ok(decided),
                "{asked}"
            );
        }
        for refused in [
            "2852039166:80",
            "0xa9fea9fe:80",
            "0XA9FEA9FE:80",
            "0251.0376.0251.0376:80",
            "169.254.43518:80",
            "127.1:22",
            "127.0.0.01:22",
            "1.2.3.04:80",
            "256.0.0.1:80",
            "example.123:80",
            "example.0x:80",
            "[fe80::1%eth0]:80",
            "[::1:80",
            "::1:80",
            "bücher.example:443",
            "under_score.example:80",
            "-lead.example:80",
            "host:0",
            "host:080",
            "host:+80",
            "host:65536",
            "host",
            ":80",
            ".:80",
        ] {
            assert!(canonical_host_port(refused).is_err(), "{refused}");
        }
        assert!(
            canonical_host_port("2852039166:80")
                .unwrap_err()
                .contains("would be read as the IP address `169.254.169.254`")
        );
        // A request for a host in another spelling than its canonical one (an embedder's
        // `Asks`) is an evaluation error: it is never granted.
        let policies = load(&[(
            "p.cedar",
            "@id(\"any\")\npermit (principal, action, resource);\n",
        )])
        .unwrap();
        let f = facts(Vec::new());
        let decision = policies.evaluate(&f, &Request::NetConnect("LOCALHOST:22".into()));
        assert!(!decision.allowed);
        assert!(
            decision.errors[0].contains("ask for `localhost:22`"),
            "{decision:?}"
        );
        assert!(
            policies
                .evaluate(&f, &Request::NetConnect("localhost:22".into()))
                .allowed
        );
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

/// A host directory held open from the moment it was asked for, so that the directory a
/// policy decides on and the one the guest is given are the same object: the guest gets this
/// handle, never a path looked up again.
///
/// INVARIANT (one object): the path a `--dir` is decided by is the canonical path of this
/// very directory, checked (device and inode) after it was opened.
#[derive(Clone)]
pub struct HostDir {
    fd: Arc<std::os::fd::OwnedFd>,
    dev: u64,
    ino: u64,
}

impl std::fmt::Debug for HostDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::fd::AsRawFd as _;
        f.debug_struct("HostDir")
            .field("fd", &self.fd.as_raw_fd())
            .field("dev", &self.dev)
            .field("ino", &self.ino)
            .finish()
    }
}

impl PartialEq for HostDir {
    fn eq(&self, other: &Self) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

impl Eq for HostDir {}

impl HostDir {
    /// Open the directory `path` names (symbolic links in it followed, as the operator wrote
    /// it), and find its canonical path: the path of the object held, checked to be so after
    /// the open. A directory swapped while this runs is refused, never decided by one path and
    /// opened by another.
    pub fn open(path: &Path) -> Result<(Self, PathBuf), String> {
        use rustix::fs::{Mode, OFlags};
        use std::os::unix::fs::MetadataExt as _;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(rustix::fs::CWD, path, flags, Mode::empty()).map_err(|e| {
            if e == rustix::io::Errno::NOTDIR {
                format!("`{}` is not a directory", path.display())
            } else {
                format!("`{}`: {}", path.display(), std::io::Error::from(e))
            }
        })?;
        let held = rustix::fs::fstat(&fd)
            .map_err(|e| format!("`{}`: {}", path.display(), std::io::Error::from(e)))?;
        let canonical =
            std::fs::canonicalize(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
        let named =
            std::fs::metadata(&canonical).map_err(|e| format!("`{}`: {e}", canonical.display()))?;
        if (named.dev(), named.ino()) != (held.st_dev, held.st_ino) {
            return Err(format!(
                "`{}` changed while it was being opened; refused",
                path.display()
            ));
        }
        Ok((
            Self {
                fd: Arc::new(fd),
                dev: held.st_dev,
                ino: held.st_ino,
            },
            canonical,
        ))
    }

    /// A path that opens exactly this directory, whatever has happened to its name since:
    /// its descriptor in `/proc/self/fd` (which the kernel resolves to the open directory
    /// itself, not by name). Where there is no `/proc`, opening it fails, and the guest is
    /// refused rather than given a directory by name.
    pub fn descriptor_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd as _;
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// A directory the operator asks to give the guest, held open since it was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirAsk {
    /// The host directory: absolute, canonical (symlinks resolved), UTF-8; the path of `dir`.
    host: PathBuf,
    /// The directory itself.
    dir: HostDir,
    /// Where the guest sees it.
    guest: String,
    /// Only `fs.read` is asked.
    read_only: bool,
}

impl DirAsk {
    /// Ask for the directory at `host` (opened now: see [`HostDir::open`]; no `..`, UTF-8)
    /// as `guest`, read-only when `read_only`.
    pub fn open(host: &Path, guest: &str, read_only: bool) -> Result<Self, String> {
        if host.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!(
                "`..` is not accepted in the host path `{}`",
                host.display()
            ));
        }
        let (dir, canonical) = HostDir::open(host)?;
        path_text(&canonical)?;
        Ok(Self {
            host: canonical,
            dir,
            guest: guest.to_owned(),
            read_only,
        })
    }

    /// The canonical host path asked for.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Where the guest sees it.
    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// Only `fs.read` is asked.
    pub fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Everything the operator asks for one run: limits and handles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asks {
    /// Linear-memory limit, bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit, milliseconds.
    pub timeout_ms: u64,
    /// Fuel; `None`: unmetered (asked without `fuel` in the context).
    pub fuel: Option<u64>,
    /// Directories.
    pub dirs: Vec<DirAsk>,
    /// Environment variables: name and value.
    pub env: Vec<(String, String)>,
    /// `host:port` pairs to connect to.
    pub net: Vec<String>,
}

impl Asks {
    /// The requests these asks make, `instantiate` first.
    pub fn requests(&self) -> Vec<Request> {
        let mut requests = vec![Request::Instantiate {
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
            fuel: self.fuel,
        }];
        for dir in &self.dirs {
            requests.push(Request::FsRead(dir.host.clone()));
            if !dir.read_only {
                requests.push(Request::FsWrite(dir.host.clone()));
            }
        }
        requests.extend(self.env.iter().map(|(n, _)| Request::EnvRead(n.clone())));
        requests.extend(self.net.iter().cloned().map(Request::NetConnect));
        requests
    }
}

/// A directory granted to the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirGrant {
    /// The host directory's canonical path, as decided.
    pub host: PathBuf,
    /// The directory itself, held open since it was asked for: what the guest is given.
    #[serde(skip)]
    pub dir: HostDir,
    /// Where the guest sees it.
    pub guest: String,
    /// `fs.write` was granted too.
    pub writable: bool,
}

/// What a run may have. Only [`Policies::grant`] makes one, from allowed decisions; the
/// sandbox builds the guest's handles from it and from nothing else.
#[derive(Clone, Debug, Serialize)]
pub struct Grant {
    digest: Digest,
    policy_hash: String,
    memory_bytes: u64,
    timeout_ms: u64,
    fuel: Option<u64>,
    dirs: Vec<DirGrant>,
    env: Vec<(String, String)>,
    net: Vec<String>,
    decisions: Vec<Decision>,
}

impl Grant {
    /// The artifact granted.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// The policy set that decided.
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }
    /// Linear-memory limit, bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
    /// Wall-clock limit.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
    /// Fuel, when metered.
    pub fn fuel(&self) -> Option<u64> {
        self.fuel
    }
    /// Granted directories.
    pub fn dirs(&self) -> &[DirGrant] {
        &self.dirs
    }
    /// Granted environment variables.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
    /// Granted `host:port` pairs.
    pub fn net(&self) -> &[String] {
        &self.net
    }
    /// Every decision made for this run.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }
}

/// A run refused by policy: every decision, and which were denied.
#[derive(Clone, Debug, Serialize)]
pub struct Denial {
    /// The artifact.
    pub digest: Digest,
    /// Every decision made.
    pub decisions: Vec<Decision>,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "policy denied `{}`:", self.digest)?;
        for d in self.decisions.iter().filter(|d| !d.allowed) {
            write!(f, " {}: {};", d.request, d.explanation())?;
        }
        Ok(())
    }
}

impl std::error::Error for Denial {}

impl Policies {
    /// Decide every request `asks` makes and build the [`Grant`]. `instantiate` must be
    /// allowed. Any other denied request refuses the run, unless `drop_denied`: then the run
    /// goes ahead without that handle (a directory whose `fs.write` is denied is given
    /// read-only).
    pub fn grant(&self, facts: &Facts, asks: &Asks, drop_denied: bool) -> Result<Grant, Denial> {
        let decisions = self.decide_all(facts, &asks.requests());
        grant_from(facts, asks, drop_denied, decisions, &self.hash)
    }

    /// As [`Policies::grant`], and when every request is allowed, remember the decisions in
    /// `memo` for exactly these sources (their [`validation_key`], which must be that of the
    /// sources these policies were loaded from), facts and requests.
    pub fn grant_remembering(
        &self,
        facts: &Facts,
        asks: &Asks,
        drop_denied: bool,
        memo: Option<(&dyn DecisionMemo, &[u8; 32])>,
    ) -> Result<Grant, Denial> {
        let grant = self.grant(facts, asks, drop_denied)?;
        let all_allowed = grant
            .decisions
            .iter()
            .all(|d| d.allowed && d.errors.is_empty());
        if let (Some((memo, sources)), true) = (memo, all_allowed) {
            let requests = asks.requests();
            let run = RememberedRun {
                policy_hash: self.hash.clone(),
                determining: grant
                    .decisions
                    .iter()
                    .map(|d| d.determining.clone())
                    .collect(),
            };
            if let Ok(body) = serde_json::to_string(&run) {
                memo.remember(&decision_key(sources, facts, &requests), &body);
            }
        }
        Ok(grant)
    }
}

/// Remembers runs whose every request was allowed, by [`decision_key`]: what the decisions
/// were for exactly those policy files, facts and requests. Implemented by the CLI over an
/// authenticated directory ([`crate::cache::PolicyMemo`]).
pub trait DecisionMemo {
    /// The body remembered under `key`, if it is authentic.
    fn recall(&self, key: &[u8; 32]) -> Option<String>;
    /// Remember `body` under `key`.
    fn remember(&self, key: &[u8; 32], body: &str);
}

/// What a run's decisions depend on, hashed: the policy files (their [`validation_key`]),
/// every fact policies see, and the requests in order (limits included).
pub fn decision_key(sources: &[u8; 32], facts: &Facts, requests: &[Request]) -> [u8; 32] {
    let facts = serde_json::to_vec(facts).unwrap_or_default();
    let requests = serde_json::to_vec(requests).unwrap_or_default();
    hash_fields([
        b"warrant decisions 2".as_slice(),
        sources,
        &facts,
        &requests,
    ])
}

/// A run's decisions as remembered: all allowed, without errors, citing these policies.
#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RememberedRun {
    policy_hash: String,
    determining: Vec<Vec<String>>,
}

/// The grant for a run whose decisions `memo` remembers for exactly these policy files
/// (`sources`: their [`validation_key`]), facts and requests; `None` when it does not.
pub fn remembered_grant(
    memo: &dyn DecisionMemo,
    sources: &[u8; 32],
    facts: &Facts,
    asks: &Asks,
) -> Option<Grant> {
    let requests = asks.requests();
    let body = memo.recall(&decision_key(sources, facts, &requests))?;
    let run: RememberedRun = serde_json::from_str(&body).ok()?;
    if run.determining.len() != requests.len() {
        return None;
    }
    let decisions = requests
        .into_iter()
        .zip(run.determining)
        .map(|(request, determining)| Decision {
            request,
            allowed: true,
            determining,
            errors: Vec::new(),
        })
        .collect();
    grant_from(facts, asks, false, decisions, &run.policy_hash).ok()
}

/// The grant `decisions` (one per `asks.requests()`, in order) make, or the denial.
fn grant_from(
    facts: &Facts,
    asks: &Asks,
    drop_denied: bool,
    decisions: Vec<Decision>,
    policy_hash: &str,
) -> Result<Grant, Denial> {
    let allowed = |request: &Request| decisions.iter().any(|d| &d.request == request && d.allowed);
    let denial = || Denial {
        digest: facts.digest.clone(),
        decisions: decisions.clone(),
    };
    let instantiate = decisions.first().is_some_and(|d| d.allowed);
    if !instantiate || (!drop_denied && decisions.iter().any(|d| !d.allowed)) {
        return Err(denial());
    }
    let dirs = asks
        .dirs
        .iter()
        .filter(|d| allowed(&Request::FsRead(d.host.clone())))
        .map(|d| DirGrant {
            host: d.host.clone(),
            dir: d.dir.clone(),
            guest: d.guest.clone(),
            writable: !d.read_only && allowed(&Request::FsWrite(d.host.clone())),
        })
        .collect();
    let env = asks
        .env
        .iter()
        .filter(|(name, _)| allowed(&Request::EnvRead(name.clone())))
        .cloned()
        .collect();
    let net = asks
        .net
        .iter()
        .filter(|host| allowed(&Request::NetConnect((*host).clone())))
        .cloned()
        .collect();
    Ok(Grant {
        digest: facts.digest.clone(),
        policy_hash: policy_hash.to_owned(),
        memory_bytes: asks.memory_bytes,
        timeout_ms: asks.timeout_ms,
        fuel: asks.fuel,
        dirs,
        env,
        net,
        decisions,
    })
}

/// Parse `--dir HOST::GUEST[:ro]`: the host path must be a directory, contain no `..`, and be
/// UTF-8; it is opened now, and its canonical path (symlinks resolved) is what is asked for;
/// if granted, the guest gets the directory opened here ([`HostDir`]).
pub fn parse_dir_ask(text: &str) -> Result<DirAsk, String> {
    let Some((host, guest)) = text.split_once("::") else {
        return Err(format!(
            "`--dir {text}`: expected `HOST::GUEST` or `HOST::GUEST:ro`"
        ));
    };
    let (guest, read_only) = match guest.strip_suffix(":ro") {
        Some(g) => (g, true),
        None => (guest, false),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!(
            "`--dir {text}`: both the host and the guest path are needed"
        ));
    }
    DirAsk::open(Path::new(host), guest, read_only).map_err(|e| format!("`--dir {text}`: {e}"))
}

/// An environment variable name: ASCII letters, digits and `_`, not starting with a digit.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an environment variable name (letters, digits, `_`)"
        ))
    }
}

/// The `policy explain` table: the facts, then one row per request.
pub fn explain_table(facts: &Facts, policies: &Policies, decisions: &[Decision]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "artifact  {} ({}, {} bytes)",
        facts.digest, facts.kind, facts.size_bytes
    );
    let _ = writeln!(out, "from      {}", facts.repository);
    if facts.signers.is_empty() {
        let _ = writeln!(out, "signer    none verified");
    }
    for s in &facts.signers {
        let _ = writeln!(
            out,
            "signer    {} `{}` (issuer `{}`)",
            s.kind, s.identity, s.issuer
        );
    }
    for p in &facts.provenances {
        let _ = writeln!(
            out,
            "built by  `{}` from `{}` at `{}`",
            p.builder_id, p.source_repository, p.source_ref
        );
    }
    let _ = writeln!(
        out,
        "policies  {} loaded, {}",
        policies.len(),
        policies.hash()
    );
    let _ = writeln!(out);
    let width = decisions
        .iter()
        .map(|d| d.request.to_string().len())
        .max()
        .unwrap_or(7)
        .max(7);
    let _ = writeln!(out, "{:<width$}  {:<8}  why", "request", "decision");
    for d in decisions {
        let verdict = if d.allowed { "allow" } else { "deny" };
        let cite = |verb: &str| {
            let ids: Vec<String> = d
                .determining
                .iter()
                .map(|id| match policies.source_of(id) {
                    Some((file, line)) => format!("`{id}` ({}:{line})", file.display()),
                    None => format!("`{id}`"),
                })
                .collect();
            format!("{verb} {}", ids.join(", "))
        };
        let why = if d.allowed {
            cite("permitted by")
        } else if d.errors.is_empty() && !d.determining.is_empty() {
            cite("forbidden by")
        } else {
            d.explanation()
        };
        let _ = writeln!(
            out,
            "{:<width$}  {verdict:<8}  {why}",
            d.request.to_string()
        );
    }
    out
}
