//! Sigstore bundles attached as OCI 1.1 referrers (cosign's newer format): a manifest whose
//! `subject` is the artifact, whose `artifactType` is a Sigstore bundle media type, and whose
//! one layer is the bundle.
//!
//! A bundle is verified over the artifact's manifest digest by [`Trust::verify_bundle`] — a
//! message signature must sign exactly that digest, a DSSE statement must name it as a subject
//! — and is then sorted by what it says: a message signature, or a statement of cosign's
//! signing predicate, is a **signature**; any other statement is an **attestation** (SLSA
//! provenance facts are read). Referrers are found through the referrers API, then the tag
//! schema; an OCI layout has no referrers list and contributes none.

use registry_client::{Descriptor, Digest, Reference, RegistryClient};
use sigstore_verify::types::Bundle;
use sigstore_verify::types::bundle::SignatureContent;

use crate::attest::{Attestations, Attested, check_statement};
use crate::cosign::{Rejected, Verdict};
use crate::rejection::Rejection;
use crate::verify::{Signer, Subject, Trust, VerifyError};

/// Sigstore bundle media types, as an `artifactType` or a layer media type.
pub const BUNDLE_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];
/// The predicate type of a cosign signature made as a DSSE statement.
pub const PREDICATE_COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";

/// Bounds on what is read while verifying referrers.
pub mod limits {
    /// Most bundle referrers considered for one artifact; more is refused outright.
    pub const MAX_BUNDLES: usize = 100;
    /// Largest bundle read.
    pub const MAX_BUNDLE_BYTES: u64 = 1024 * 1024;
}

/// Find the Sigstore bundles referring to `digest` beside `reference`, verify each against
/// `trust`, and add the signatures to `verdict` and the attestations to `attestations`. A
/// registry error listing referrers is an error (fail closed); a bad bundle is rejected.
pub async fn verify_bundles(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    trust: &Trust,
    verdict: &mut Verdict,
    attestations: &mut Attestations,
) -> Result<(), VerifyError> {
    let Some(referrers) = client
        .referrers_of(reference, digest)
        .await
        .map_err(|e| VerifyError::Failed(format!("listing referrers of `{digest}`: {e}")))?
    else {
        return Ok(());
    };
    let bundles: Vec<&Descriptor> = referrers
        .manifests
        .iter()
        .filter(|d| d.artifact_type.as_deref().is_some_and(is_bundle_type))
        .collect();
    if bundles.len() > limits::MAX_BUNDLES {
        return Err(VerifyError::Failed(format!(
            "`{digest}` has {} Sigstore bundle referrers; at most {} are considered",
            bundles.len(),
            limits::MAX_BUNDLES
        )));
    }
    for descriptor in bundles {
        let source = format!("referrer `{}`", descriptor.digest);
        match verify_one(client, reference, digest, descriptor, trust).await {
            Ok(Found::Signature(signer)) => {
                if !verdict.signers.contains(&signer) {
                    verdict.signers.push(signer);
                }
            }
            Ok(Found::Attestation(attested)) => attestations.verified.push(*attested),
            Err(reason) => {
                // Not knowing what a rejected bundle claimed to be, report it as a signature.
                verdict.rejected.push(Rejected { source, reason });
            }
        }
    }
    Ok(())
}

fn is_bundle_type(media_type: &str) -> bool {
    BUNDLE_MEDIA_TYPES.contains(&media_type)
}

enum Found {
    Signature(Signer),
    Attestation(Box<Attested>),
}

async fn verify_one(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    descriptor: &Descriptor,
    trust: &Trust,
) -> Result<Found, Rejection> {
    let referrer = client
        .fetch_referrer(reference, &descriptor.digest)
        .await
        .map_err(|e| Rejection::unfetchable("manifest", e))?
        .ok_or_else(|| Rejection::unfetchable("manifest", "listed but not found"))?
        .manifest;
    // INVARIANT (digest binding): the listing is the registry's word; the referrer's own
    // subject, and then the signed content, must name the artifact.
    if referrer.subject.as_ref().map(|s| &s.digest) != Some(digest) {
        return Err(Rejection::SubjectNotArtifact {
            artifact: digest.clone(),
        });
    }
    let layer = match referrer.layers.as_slice() {
        [layer] if is_bundle_type(&layer.media_type) => layer,
        [layer] => {
            return Err(Rejection::NotABundle {
                media_type: registry_client::text::excerpt(&layer.media_type, 80),
            });
        }
        layers => {
            return Err(Rejection::LayerCount {
                count: layers.len(),
            });
        }
    };
    if layer.size > limits::MAX_BUNDLE_BYTES {
        return Err(Rejection::TooLarge {
            what: "bundle".into(),
            size: layer.size,
            limit: limits::MAX_BUNDLE_BYTES,
        });
    }
    let bytes = client
        .fetch_attached_blob(reference, layer, limits::MAX_BUNDLE_BYTES)
        .await
        .map_err(|e| Rejection::unfetchable("bundle", e))?;
    registry_client::json::check_depth(&bytes, registry_client::limits::MAX_JSON_DEPTH)
        .map_err(|e| Rejection::malformed("malformed bundle", e))?;
    let text =
        std::str::from_utf8(&bytes).map_err(|e| Rejection::malformed("bundle is not UTF-8", e))?;
    let bundle =
        Bundle::from_json(text).map_err(|e| Rejection::malformed("malformed bundle", e))?;
    let signer = trust.verify_bundle(&bundle, Subject::Digest(digest))?;
    match &bundle.content {
        SignatureContent::MessageSignature(_) => Ok(Found::Signature(signer)),
        SignatureContent::DsseEnvelope(envelope) => {
            if envelope.payload_type != crate::attest::PAYLOAD_TYPE_IN_TOTO {
                return Err(Rejection::PayloadType {
                    what: "DSSE payload".into(),
                    found: registry_client::text::excerpt(&envelope.payload_type, 80),
                    expected: "an in-toto statement".into(),
                });
            }
            let attested = check_statement(envelope.payload.as_bytes().to_vec(), digest, signer)?;
            if attested.predicate_type == PREDICATE_COSIGN_SIGN {
                Ok(Found::Signature(attested.signer))
            } else {
                Ok(Found::Attestation(Box::new(attested)))
            }
        }
        _ => Err(Rejection::UnsupportedContent),
    }
}
