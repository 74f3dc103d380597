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

mod diff;
mod eval;
mod explain;
mod grant;
mod groups;
mod host;
mod index;
mod load;
mod memo;
mod model;
mod screen;
#[cfg(test)]
mod screen_tests;
mod suggest;
#[cfg(test)]
mod tests;

pub use diff::{Finding, diff, diff_table};
pub use eval::Decision;
pub use explain::explain_table;
pub use grant::{Asks, Denial, DirAsk, EnvValue, Grant, HostDir, check_env_name, parse_dir_ask};
pub use host::canonical_host_port;
pub use load::{Policies, PolicyError, ValidationMemo, read_sources, validation_key};
pub(crate) use memo::{DecisionMemo, decision_key, remembered_grant};
pub use model::{Facts, Request, Runtime};
pub use suggest::{Suggestion, check_name as check_suggestion_name, default_name, suggest};
#[allow(
    unused_imports,
    reason = "named only outside this crate, through the `internals` feature (tests, fuzzers)"
)]
pub use {grant::DirGrant, load::Problem};

/// The schema Warrant builds entities for.
pub const SCHEMA: &str = include_str!("../../../policies/warrant.cedarschema");

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
