//! The stages chained: resolve once, verify that digest, fetch that digest.

use registry_client::{Digest, Fetched, Progress, Reference, RegistryClient, Resolved, Store};

use crate::attest::{Attestations, verify_attestations};
use crate::cache::VerdictCache;
use crate::cosign::{Verdict, verify_signatures};
use crate::verify::{Trust, VerifyError};

/// Why a verified fetch stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// No signature of the resolved digest verified.
    #[error("no signature of `{}` verified{}", .0.digest, rejected_suffix(.0))]
    Unverified(Verdict),
    /// Verification could not be carried out (fail closed).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The registry or store failed.
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
}

fn rejected_suffix(verdict: &Verdict) -> String {
    if verdict.rejected.is_empty() {
        String::new()
    } else {
        format!(
            "; rejected: {}",
            verdict
                .rejected
                .iter()
                .map(|r| format!("{}: {}", r.source, r.reason))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// Everything verifiable about `digest` beside `reference`, checked against `trust`: cosign
/// signatures (`.sig`), keyed attestations (`.att`), and Sigstore bundle referrers.
///
/// INVARIANT (digest binding): everything is looked up by `digest` and must name it.
pub async fn verify_artifact(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    trust: &Trust,
) -> Result<(Verdict, Attestations), VerifyError> {
    let mut verdict = verify_signatures(client, reference, digest, trust).await?;
    let mut attestations = verify_attestations(client, reference, digest, trust).await?;
    crate::referrers::verify_bundles(
        client,
        reference,
        digest,
        trust,
        &mut verdict,
        &mut attestations,
    )
    .await?;
    Ok((verdict, attestations))
}

/// Verify the signatures of `resolved`'s digest against `trust` (skipped when it trusts
/// nothing: no trust was configured), then fetch exactly that digest into `store`. A valid
/// cached verdict for the digest under the same trust stands in for verification; a fresh
/// positive verdict is cached.
///
/// INVARIANT (digest binding): verification and fetch both use `resolved.digest()`; nothing
/// here looks the tag up again, so a tag moved after resolution changes neither.
pub async fn fetch_verified(
    client: &RegistryClient,
    store: &Store,
    resolved: &Resolved,
    trust: &Trust,
    cache: Option<&VerdictCache>,
    progress: &dyn Progress,
) -> Result<(Option<Verdict>, Fetched), PipelineError> {
    let verdict = if trust.is_empty() {
        None
    } else if let Some((verdict, _)) =
        cache.and_then(|c| c.get(&repository(resolved.reference()), resolved.digest(), trust))
    {
        tracing::debug!(digest = %resolved.digest(), "verdict from the cache");
        Some(verdict)
    } else {
        let (verdict, attestations) =
            verify_artifact(client, resolved.reference(), resolved.digest(), trust).await?;
        if verdict.signers.is_empty() {
            return Err(PipelineError::Unverified(verdict));
        }
        if let Some(cache) = cache
            && let Err(e) = cache.put(
                &repository(resolved.reference()),
                trust,
                &verdict,
                &attestations,
            )
        {
            tracing::warn!("{e}");
        }
        Some(verdict)
    };
    let fetched = client.fetch(resolved, store, progress).await?;
    Ok((verdict, fetched))
}

/// Where signatures of an artifact are looked up: its repository, or its layout.
fn repository(reference: &Reference) -> String {
    match reference {
        Reference::Registry(r) => format!("{}/{}", r.registry(), r.repository()),
        Reference::Layout(l) => format!("oci-layout:{}", l.path().display()),
    }
}
