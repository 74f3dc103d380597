//! `warrant attest`: a signed in-toto statement about an artifact.

use std::path::PathBuf;

use registry_client::Reference;
use serde_json::json;

use super::context::Context;
use super::error::CliError;
use super::read_input;
use super::render::print_json;
use crate::exit::Exit;

/// `warrant attest REFERENCE --key KEY --predicate FILE --type TYPE`.
pub(super) fn attest(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    reference: String,
    key: PathBuf,
    predicate: PathBuf,
    predicate_type: String,
    json: bool,
) -> Result<Exit, CliError> {
    let reference: Reference = reference.parse()?;
    let Some(predicate_type) = crate::attest::predicate_type(&predicate_type) else {
        return Err(CliError::Usage(format!(
            "unknown predicate type `{predicate_type}`: use `slsaprovenance1`, `slsaprovenance`, or a URI"
        )));
    };
    let key = crate::keys::read_signing_key(&key)?;
    let predicate = read_input(&predicate, crate::attest::limits::MAX_ENVELOPE_BYTES / 2)?;
    registry_client::json::check_depth(&predicate, registry_client::limits::MAX_JSON_DEPTH)
        .map_err(CliError::Usage)?;
    let predicate: serde_json::Value = serde_json::from_slice(&predicate)
        .map_err(|e| CliError::Usage(format!("the predicate is not JSON: {e}")))?;
    let client = ctx.client()?;
    let (digest, attestation) = runtime.block_on(async {
        let resolved = client.resolve(&reference).await?;
        let attestation = crate::attest::attest(
            &client,
            &reference,
            resolved.digest(),
            predicate_type,
            predicate,
            &key,
        )
        .await?;
        Ok::<_, CliError>((resolved.digest().clone(), attestation))
    })?;
    if json {
        print_json(&json!({
            "digest": digest,
            "attestation": {
                "tag": registry_client::attached::attestation_tag(&digest),
                "manifest": attestation,
                "predicateType": predicate_type,
            },
            "key": key.public_key().fingerprint(),
        }));
    } else {
        outln!("{attestation}");
    }
    Ok(Exit::Success)
}
