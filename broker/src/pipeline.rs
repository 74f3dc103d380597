//! The stages chained: resolve once, verify that digest, fetch that digest.

use registry_client::{Digest, Fetched, Progress, Reference, RegistryClient, Resolved, Store};

use crate::attest::{Attestations, verify_attestations};
use crate::cache::VerdictCache;
use crate::cosign::{Verdict, verify_signatures};
use crate::policy::Facts;
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
///
/// A signature that cannot be fetched is only rejected; but when the client's command budget
/// ([`RegistryClient::budgeted`]) ran out, that is the command's failure and is returned as
/// such ([`PipelineError::Registry`]), whatever the verification had found.
pub async fn verify_artifact(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    trust: &Trust,
) -> Result<(Verdict, Attestations), PipelineError> {
    let within_budget = || -> Result<(), PipelineError> {
        client
            .budget_spent()
            .map_or(Ok(()), |e| Err(PipelineError::Registry(e)))
    };
    let found = async {
        let mut verdict = verify_signatures(client, reference, digest, trust).await?;
        within_budget()?;
        let mut attestations = verify_attestations(client, reference, digest, trust).await?;
        within_budget()?;
        crate::referrers::verify_bundles(
            client,
            reference,
            digest,
            trust,
            &mut verdict,
            &mut attestations,
        )
        .await?;
        Ok::<_, PipelineError>((verdict, attestations))
    }
    .await;
    within_budget()?;
    found
}

/// [`verify_artifact`], with a valid cached verdict for the same repository, digest and trust
/// standing in for it, and a fresh verdict with a verified signature cached. Nothing is looked
/// up when `trust` trusts nothing.
pub async fn verify_cached(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    trust: &Trust,
    cache: Option<&VerdictCache>,
) -> Result<(Verdict, Attestations), PipelineError> {
    if trust.is_empty() {
        return Ok((
            Verdict {
                digest: digest.clone(),
                signers: Vec::new(),
                rejected: Vec::new(),
            },
            Attestations::default(),
        ));
    }
    let repository = repository(reference);
    if let Some(hit) = cache.and_then(|c| c.get(&repository, digest, trust)) {
        tracing::debug!(%digest, "verdict from the cache");
        return Ok(hit);
    }
    let (verdict, attestations) = verify_artifact(client, reference, digest, trust).await?;
    if let Some(cache) = cache
        && let Err(e) = cache.put(&repository, trust, &verdict, &attestations)
    {
        tracing::warn!("{e}");
    }
    Ok((verdict, attestations))
}

/// Verify `resolved`'s digest against `trust` ([`verify_cached`]), refuse it when the operator
/// named signers and none of them signed, then fetch exactly that digest into `store`.
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
) -> Result<(Verdict, Attestations, Fetched), PipelineError> {
    let (verdict, attestations) = verify_cached(
        client,
        resolved.reference(),
        resolved.digest(),
        trust,
        cache,
    )
    .await?;
    if trust.names_signers() && !verdict.signers.iter().any(|s| trust.is_named(s)) {
        return Err(PipelineError::Unverified(verdict));
    }
    let fetched = client.fetch(resolved, store, progress).await?;
    Ok((verdict, attestations, fetched))
}

/// The facts policies decide on: the fetched artifact, where the operator said it is, who
/// verifiably signed it, and every verified SLSA provenance (each evaluated in turn: the order
/// the registry listed them in changes nothing).
pub fn facts(fetched: &Fetched, verdict: &Verdict, attestations: &Attestations) -> Facts {
    let reference = fetched.resolved().reference();
    let registry = match reference {
        Reference::Registry(r) => r.registry().to_ascii_lowercase(),
        Reference::Layout(_) => "oci-layout".to_owned(),
    };
    let provenances = attestations
        .verified
        .iter()
        .filter_map(|a| a.provenance.clone())
        .collect();
    Facts::new(
        fetched.digest().clone(),
        fetched.kind(),
        fetched.layer().size,
        registry,
        repository(reference),
        verdict.signers.clone(),
        provenances,
    )
}

/// Where signatures of an artifact are looked up: its repository, or its layout.
/// The registry host is lowercased (host names are case-insensitive), so that a policy on
/// `Warrant::Registry::"registry.internal"` cannot be sidestepped by spelling the host
/// `REGISTRY.INTERNAL`; repository paths are lowercase by the reference grammar already. A
/// layout is named by the canonical path its reference was resolved to
/// ([`RegistryClient::resolve`]), so that `./`, `//`, a relative path or a symbolic link do
/// not name another repository.
fn repository(reference: &Reference) -> String {
    match reference {
        Reference::Registry(r) => {
            format!("{}/{}", r.registry().to_ascii_lowercase(), r.repository())
        }
        Reference::Layout(l) => format!("oci-layout:{}", l.path().display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_are_lowercased_for_policies_and_the_cache() {
        let upper: Reference = "REGISTRY.Internal/team/tool:v1".parse().unwrap();
        let lower: Reference = "registry.internal/team/tool:v1".parse().unwrap();
        assert_eq!(repository(&upper), "registry.internal/team/tool");
        assert_eq!(repository(&upper), repository(&lower));
    }
}
