//! The evaluation rule: deciding requests (once per verified signer and provenance, combined
//! by the rule in the module docs), the decision cache and [`Decision`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, EntityUid, Policy,
    PolicySet, Request as CedarRequest, RestrictedExpression, Schema,
};
use serde::Serialize;

use super::explain::quote_ids;
use super::index::{Group, Member, request_resource};
use super::load::{path_text, schema};
use super::model::{Stores, canonical_host, dir_chain, to_long, uid};
use super::screen::{Verdict, View};
use super::{Facts, Policies, Request, limits};
use crate::attest::Provenance;
use crate::verify::Signer;

#[derive(Default)]
pub(super) struct DecisionCache {
    entries: usize,
    by_facts: HashMap<String, HashMap<Request, Decision>>,
}

impl Policies {
    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True when no policy is loaded (everything is denied).
    #[cfg(any(test, feature = "internals"))]
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
    #[cfg(any(test, feature = "internals"))]
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
    pub(super) fn groups(&self, action: &str, resource: &[EntityUid]) -> Vec<&Group> {
        let Some(index) = self.by_action.get(action) else {
            return Vec::new();
        };
        let mut groups = vec![&index.any];
        groups.extend(resource.first().and_then(|r| index.eq.get(r)));
        groups.extend(resource.iter().filter_map(|r| index.within.get(r)));
        groups
    }

    pub(super) fn cedar_request(
        &self,
        facts: &Facts,
        request: &Request,
    ) -> Result<CedarRequest, String> {
        let artifact = uid("Artifact", &facts.digest.to_string())?;
        let (resource, context) = match request {
            Request::Instantiate {
                memory_bytes,
                timeout_ms,
                fuel,
                runtime,
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
                    .chain(metered)
                    .chain(match runtime {
                        // A pod's name, for policies that single one out.
                        super::Runtime::Pod { pod, .. } => Some((
                            "pod".to_owned(),
                            RestrictedExpression::new_string(pod.clone()),
                        )),
                        _ => None,
                    }),
                )
                .map_err(|e| e.to_string())?;
                (uid("Runtime", runtime.id())?, context)
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
    pub(super) fn entity_schema(&self) -> Option<&Schema> {
        if !self.check_entities {
            return None;
        }
        if self.schema.get().is_none() {
            let _ = self.schema.set(schema().ok()?);
        }
        self.schema.get()
    }

    /// The artifact entity as seen by the evaluation for `signer` and `provenance`.
    pub(super) fn artifact(
        &self,
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
                "repository".to_owned(),
                RestrictedExpression::new_string(facts.repository.clone()),
            ),
            (
                "approvals".to_owned(),
                RestrictedExpression::new_set(
                    super::groups::counts(&self.groups, &facts.signers)
                        .into_iter()
                        .flat_map(|(group, n)| (1..=n).map(move |k| (group, k)))
                        .map(|(group, k)| {
                            RestrictedExpression::new_record([
                                (
                                    "group".to_owned(),
                                    RestrictedExpression::new_string(group.to_owned()),
                                ),
                                (
                                    "atLeast".to_owned(),
                                    RestrictedExpression::new_long(to_long(k as u64)),
                                ),
                            ])
                            .map_err(|e| e.to_string())
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            ),
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
    pub(super) fn entities(
        &self,
        facts: &Facts,
        signer: &Signer,
        provenance: Option<&Provenance>,
        requests: &[Request],
    ) -> Result<Entities, String> {
        let registry = uid("Registry", &facts.registry)?;
        let repository = uid("Repository", &facts.repository)?;
        let artifact = self.artifact(facts, signer, provenance)?;
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
                Request::Instantiate { runtime, .. } => {
                    if let Some(parent) = runtime.parent() {
                        let parent = uid("Runtime", parent)?;
                        let this = uid("Runtime", runtime.id())?;
                        entities.insert(
                            parent.clone(),
                            Entity::new_no_attrs(parent.clone(), HashSet::new()),
                        );
                        entities.insert(
                            this.clone(),
                            Entity::new_no_attrs(this, HashSet::from([parent])),
                        );
                    }
                }
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

/// The evaluations of one request, combined by the rule.
#[derive(Default)]
pub(super) struct Tally {
    allowed_once: bool,
    permits: BTreeSet<String>,
    forbids: BTreeSet<String>,
    errors: Vec<String>,
}

impl Tally {
    pub(super) fn error(&mut self, error: String) {
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

    pub(super) fn add(&mut self, set: &PolicySet, response: &cedar_policy::Response) {
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

    pub(super) fn decision(self, request: &Request) -> Decision {
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
