//! The records a run writes to the audit log, one type each (the `audits` crate serialises
//! them canonically: keys sorted, one line each). Only names of environment variables appear,
//! never values: a grant's values cannot be serialised at all.

use registry_client::Digest;
use serde::Serialize;

use crate::attest::Attested;
use crate::cosign::Verdict;
use crate::policy::{Decision, DirGrant, Grant};
use crate::sandbox::{Finished, Outcome};

/// A record of one kind.
pub(crate) trait Record: Serialize {
    /// The record's `kind` in the log.
    const KIND: &'static str;
}

/// `pull`: the reference as resolved (a layout by its canonical path), and its digest; for an
/// image index, the platform chosen and the manifest it names.
#[derive(Serialize)]
pub(crate) struct Pull<'a> {
    pub(crate) reference: String,
    pub(crate) digest: &'a Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) manifest: Option<&'a Digest>,
}

impl Record for Pull<'_> {
    const KIND: &'static str = "pull";
}

/// `verify`: the verdict under a trust, and, when verified, the verified attestations.
#[derive(Serialize)]
pub(crate) struct Verify<'a> {
    pub(crate) digest: &'a Digest,
    pub(crate) trust: &'a str,
    pub(crate) verified: bool,
    pub(crate) verdict: &'a Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attestations: Option<&'a [Attested]>,
}

impl Record for Verify<'_> {
    const KIND: &'static str = "verify";
}

/// `decide`: every request's decision, the policy set that made them, and whether they were
/// remembered rather than made now.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Decide<'a> {
    pub(crate) digest: &'a Digest,
    pub(crate) policy_hash: &'a str,
    pub(crate) remembered: bool,
    pub(crate) allowed: bool,
    pub(crate) decisions: &'a [Decision],
}

impl Record for Decide<'_> {
    const KIND: &'static str = "decide";
}

/// `instantiate`: the grant, its limits and the engine; environment variables by name only.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Instantiate<'a> {
    digest: &'a Digest,
    policy_hash: &'a str,
    limits: Limits,
    dirs: &'a [DirGrant],
    env: Vec<&'a str>,
    net: &'a [String],
    engine: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Limits {
    memory_bytes: u64,
    timeout_ms: u64,
    fuel: Option<u64>,
    output_bytes: u64,
}

impl<'a> Instantiate<'a> {
    pub(crate) fn of(grant: &'a Grant, output_bytes: u64) -> Self {
        Self {
            digest: grant.digest(),
            policy_hash: grant.policy_hash(),
            limits: Limits {
                memory_bytes: grant.memory_bytes(),
                timeout_ms: u64::try_from(grant.timeout().as_millis()).unwrap_or(u64::MAX),
                fuel: grant.fuel(),
                output_bytes,
            },
            dirs: grant.dirs(),
            env: grant.env().iter().map(|(name, _)| name.as_str()).collect(),
            net: grant.net(),
            engine: crate::audit::ENGINE,
        }
    }
}

/// The `instantiate` record's body for `grant`, for benchmarks that write it as a run does.
#[cfg(feature = "internals")]
pub fn instantiate_body(grant: &Grant, output_bytes: u64) -> serde_json::Value {
    serde_json::to_value(Instantiate::of(grant, output_bytes)).unwrap_or_default()
}

impl Record for Instantiate<'_> {
    const KIND: &'static str = "instantiate";
}

/// `outcome`: how a run ended, how long it took and how much it wrote.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutcomeRecord<'a> {
    digest: &'a Digest,
    outcome: &'static str,
    detail: Detail<'a>,
    elapsed_us: u64,
    stdout_bytes: usize,
    stderr_bytes: usize,
}

/// What ended a run: an exit status, a limit and what happened, or a trap's message.
#[derive(Serialize)]
#[serde(untagged)]
enum Detail<'a> {
    Status(i32),
    Limit { limit: String, detail: &'a str },
    Trap(&'a str),
}

impl<'a> OutcomeRecord<'a> {
    pub(crate) fn of(digest: &'a Digest, finished: &'a Finished) -> Self {
        let (outcome, detail) = match &finished.outcome {
            Outcome::Exited(status) => ("exit", Detail::Status(*status)),
            Outcome::Limited { limit, detail } => (
                "limit",
                Detail::Limit {
                    limit: format!("{limit:?}"),
                    detail,
                },
            ),
            Outcome::Trapped(reason) => ("trap", Detail::Trap(reason)),
            Outcome::Stopped => ("stopped", Detail::Trap("stopped from outside while it ran")),
        };
        Self {
            digest,
            outcome,
            detail,
            elapsed_us: u64::try_from(finished.elapsed.as_micros()).unwrap_or(u64::MAX),
            stdout_bytes: finished.stdout.len(),
            stderr_bytes: finished.stderr.len(),
        }
    }
}

impl Record for OutcomeRecord<'_> {
    const KIND: &'static str = "outcome";
}

/// `load`: a `warrant serve` tenant verified, granted and compiled, about to take traffic.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Load<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) route: &'a str,
    pub(crate) reference: &'a str,
    pub(crate) digest: &'a Digest,
    pub(crate) outbound: &'a [String],
}

impl Record for Load<'_> {
    const KIND: &'static str = "load";
}

/// `unserved`: a tenant not served (or no longer served), and why.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Unserved<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) reference: &'a str,
    /// The digest still served instead, if any (a new version refused, the old one kept).
    pub(crate) kept: Option<&'a Digest>,
    pub(crate) reason: &'a str,
}

impl Record for Unserved<'_> {
    const KIND: &'static str = "unserved";
}

/// `refused`: a pod's image refused before the stages could take it (its content in
/// containerd's store did not match its digest, or it is not a runnable Wasm image).
#[derive(Serialize)]
pub(crate) struct Refused<'a> {
    pub(crate) runtime: &'a str,
    pub(crate) pod: &'a str,
    pub(crate) image: &'a str,
    pub(crate) digest: &'a Digest,
    pub(crate) reason: &'a str,
}

impl Record for Refused<'_> {
    const KIND: &'static str = "refused";
}

/// `request`: one request a tenant served (or refused), written with group commit.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Request<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) digest: Option<&'a Digest>,
    pub(crate) method: &'a str,
    /// The path, without the query.
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) elapsed_us: u64,
    pub(crate) limit: Option<&'a str>,
    pub(crate) trap: Option<&'a str>,
    pub(crate) response_bytes: u64,
    pub(crate) outbound_allowed: u32,
    pub(crate) outbound_denied: u32,
}

impl Record for Request<'_> {
    const KIND: &'static str = "request";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body is what the log has always held for an outcome (the timeline and tests read
    /// these names).
    #[test]
    fn an_outcome_record_has_the_log_s_field_names() {
        let digest = Digest::of(b"guest");
        let finished = Finished {
            outcome: Outcome::Limited {
                limit: crate::sandbox::Limit::Deadline,
                detail: "10s".into(),
            },
            stdout: b"out".to_vec(),
            stderr: Vec::new(),
            elapsed: std::time::Duration::from_micros(1500),
        };
        let body = serde_json::to_value(OutcomeRecord::of(&digest, &finished)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "digest": digest.to_string(),
                "outcome": "limit",
                "detail": {"limit": "Deadline", "detail": "10s"},
                "elapsedUs": 1500,
                "stdoutBytes": 3,
                "stderrBytes": 0,
            })
        );
        let exited = Finished {
            outcome: Outcome::Exited(7),
            ..finished
        };
        let body = serde_json::to_value(OutcomeRecord::of(&digest, &exited)).unwrap();
        assert_eq!(body["detail"], 7);
        assert_eq!(body["outcome"], "exit");
    }
}
