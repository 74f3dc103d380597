//! Remembered decisions: runs whose every request was allowed, recalled without evaluating.

use serde::Serialize;

use super::grant::grant_from;
use super::load::hash_fields;
#[cfg(doc)]
use super::validation_key;
use super::{Asks, Decision, Facts, Grant, Request};

/// Remembers runs whose every request was allowed, by [`decision_key`]: what the decisions
/// were for exactly those policy files, facts and requests. Implemented by the CLI over an
/// authenticated directory ([`crate::cache::PolicyMemo`]).
pub(crate) trait DecisionMemo {
    /// The body remembered under `key`, if it is authentic.
    fn recall(&self, key: &[u8; 32]) -> Option<String>;
    /// Remember `body` under `key`.
    fn remember(&self, key: &[u8; 32], body: &str);
}

/// What a run's decisions depend on, hashed: the policy files (their [`validation_key`]),
/// every fact policies see, and the requests in order (limits included).
pub(crate) fn decision_key(sources: &[u8; 32], facts: &Facts, requests: &[Request]) -> [u8; 32] {
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
pub(super) struct RememberedRun {
    pub(super) policy_hash: String,
    pub(super) determining: Vec<Vec<String>>,
}

/// The grant for a run whose decisions `memo` remembers for exactly these policy files
/// (`sources`: their [`validation_key`]), facts and requests; `None` when it does not.
pub(crate) fn remembered_grant(
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
