//! The stages chained: resolve once, verify that digest, fetch that digest.

use registry_client::{Fetched, Progress, RegistryClient, Resolved, Store};

use crate::cosign::{Verdict, verify_signatures};
use crate::keys::PublicKey;
use crate::verify::VerifyError;

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

/// Verify the signatures of `resolved`'s digest against `keys` (skipped when `keys` is empty:
/// no trust was configured), then fetch exactly that digest into `store`.
///
/// INVARIANT (digest binding): verification and fetch both use `resolved.digest()`; nothing
/// here looks the tag up again, so a tag moved after resolution changes neither.
pub async fn fetch_verified(
    client: &RegistryClient,
    store: &Store,
    resolved: &Resolved,
    keys: &[PublicKey],
    progress: &dyn Progress,
) -> Result<(Option<Verdict>, Fetched), PipelineError> {
    let verdict = if keys.is_empty() {
        None
    } else {
        let verdict =
            verify_signatures(client, resolved.reference(), resolved.digest(), keys).await?;
        if verdict.signers.is_empty() {
            return Err(PipelineError::Unverified(verdict));
        }
        Some(verdict)
    };
    let fetched = client.fetch(resolved, store, progress).await?;
    Ok((verdict, fetched))
}
