//! `warrant sign`: sign an artifact's manifest digest with a key.

use std::path::PathBuf;

use registry_client::Reference;
use serde_json::json;

use super::context::Context;
use super::error::CliError;
use super::render::print_json;
use crate::exit::Exit;

/// `warrant sign REFERENCE --key KEY`.
pub(super) fn sign(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    reference: String,
    key: PathBuf,
    json: bool,
) -> Result<Exit, CliError> {
    let reference: Reference = reference.parse()?;
    let key = crate::keys::read_signing_key(&key)?;
    let client = ctx.client()?;
    let signature = runtime.block_on(async {
        let resolved = client.resolve(&reference).await?;
        let signature = crate::cosign::sign(&client, &reference, resolved.digest(), &key).await?;
        Ok::<_, CliError>((resolved.digest().clone(), signature))
    })?;
    let (digest, signature) = signature;
    if json {
        print_json(&json!({
            "digest": digest,
            "signature": {
                "tag": registry_client::attached::signature_tag(&digest),
                "manifest": signature,
            },
            "key": key.public_key().fingerprint(),
        }));
    } else {
        outln!("{signature}");
    }
    Ok(Exit::Success)
}
