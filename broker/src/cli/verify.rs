//! `warrant verify` and `warrant verify-blob`: check signatures and attestations offline.

use std::path::PathBuf;

use registry_client::Reference;
use serde_json::json;

use super::args::TrustArgs;
use super::context::Context;
use super::error::CliError;
use super::render::{print_json, q};
use crate::exit::Exit;
use crate::verify::{BlobInput, SignerRequirement};

/// `warrant verify REFERENCE`.
pub(super) fn verify(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    reference: String,
    trust: TrustArgs,
    attestation_types: Vec<String>,
    json: bool,
) -> Result<Exit, CliError> {
    let reference: Reference = reference.parse()?;
    let required = attestation_types
        .iter()
        .map(|t| {
            crate::attest::predicate_type(t)
                .map(str::to_owned)
                .ok_or_else(|| CliError::Usage(format!("unknown attestation type `{t}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let trust = trust.load(&ctx.config)?;
    if trust.is_empty() {
        return Err(CliError::Usage(
            "no signer to trust: give `--key PUB`, or `--certificate-identity` with \
             `--certificate-oidc-issuer`, or `[verify] keys` / `certificate_identities` in the \
             config"
                .into(),
        ));
    }
    let client = ctx.client()?;
    let (verdict, attestations) = runtime.block_on(async {
        // INVARIANT (digest binding): the tag is resolved once; signatures and
        // attestations are looked up by, and must name, that digest.
        let resolved = client.resolve(&reference).await?;
        let found = crate::pipeline::verify_artifact(
            &client,
            resolved.reference(),
            resolved.digest(),
            &trust,
        )
        .await?;
        Ok::<_, CliError>(found)
    })?;
    let missing: Vec<&String> = required
        .iter()
        .filter(|t| {
            !attestations
                .verified
                .iter()
                .any(|a| &a.predicate_type == *t)
        })
        .collect();
    let verified = !verdict.signers.is_empty() && missing.is_empty();
    if json {
        print_json(&json!({
            "reference": reference.to_string(),
            "verified": verified,
            "verdict": verdict,
            "attestations": attestations,
        }));
    } else {
        outln!("digest    {}", verdict.digest);
        for s in &verdict.signers {
            if s.kind == crate::verify::SignerKind::Keyless {
                outln!(
                    "verified  keyless signature by `{}` (issuer `{}`)",
                    q(&s.identity),
                    q(&s.issuer)
                );
                for (name, value) in &s.claims {
                    outln!("          {} `{}`", q(name), q(value));
                }
            } else {
                outln!("verified  {} signature by `{}`", s.kind, q(&s.identity));
            }
        }
        for a in &attestations.verified {
            outln!(
                "attested  `{}` by `{}`",
                q(&a.predicate_type),
                q(&a.signer.identity)
            );
            if let Some(p) = &a.provenance {
                outln!(
                    "          builder `{}`, source `{}` at `{}`",
                    q(&p.builder_id),
                    q(&p.source_repository),
                    q(&p.source_ref)
                );
            }
        }
        for r in verdict.rejected.iter().chain(&attestations.rejected) {
            outln!("rejected  {}: {}", q(&r.source), q(&r.reason.to_string()));
        }
    }
    if verdict.signers.is_empty() {
        errln!(
            "warrant: error: verification failed: no signature of `{}` verified ({} rejected)",
            verdict.digest,
            verdict.rejected.len()
        );
        return Ok(Exit::Verification);
    }
    if !missing.is_empty() {
        errln!(
            "warrant: error: verification failed: no verified attestation of `{}` for `{}`",
            missing
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join("`, `"),
            verdict.digest
        );
        return Ok(Exit::Verification);
    }
    Ok(Exit::Success)
}

/// `warrant verify-blob --bundle FILE FILE_OR_DIGEST`.
pub(super) fn verify_blob(
    bundle: PathBuf,
    requirement: SignerRequirement,
    trusted_root: Option<PathBuf>,
    json: bool,
    file_or_digest: String,
) -> Result<Exit, CliError> {
    let root = crate::verify::load_trusted_root(trusted_root.as_deref())?;
    let input = BlobInput::parse(&file_or_digest);
    let signer = crate::verify::verify_blob(&bundle, &input, &requirement, &root)?;
    if json {
        print_json(&json!({ "verified": true, "signer": signer }));
    } else {
        outln!(
            "verified: {} signature by `{}` (issuer `{}`)",
            signer.kind,
            signer.identity,
            signer.issuer
        );
    }
    Ok(Exit::Success)
}
