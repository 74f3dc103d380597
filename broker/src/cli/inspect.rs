//! `warrant inspect`: an artifact's manifest, config, layers and referrers.

use registry_client::{Reference, RegistryClient, Resolved};
use serde_json::json;

use super::context::Context;
use super::error::CliError;
use super::render::{print_json, q};
use crate::exit::Exit;

/// `warrant inspect REFERENCE`.
pub(super) fn inspect(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    reference: String,
    json: bool,
) -> Result<Exit, CliError> {
    let reference: Reference = reference.parse()?;
    let client = ctx.client()?;
    runtime.block_on(inspect_artifact(&client, &reference, json))
}

async fn inspect_artifact(
    client: &RegistryClient,
    reference: &Reference,
    json: bool,
) -> Result<Exit, CliError> {
    let resolved: Resolved = client.resolve(reference).await?;
    let config_bytes = client.fetch_config(&resolved).await?;
    let referrers = match reference {
        Reference::Registry(r) => Some(client.referrers(r, resolved.digest()).await?),
        Reference::Layout(_) => None,
    };
    let manifest = resolved.manifest().manifest();
    let config: serde_json::Value =
        serde_json::from_slice(&config_bytes).unwrap_or(serde_json::Value::Null);
    if json {
        let manifest_value: serde_json::Value =
            serde_json::from_slice(resolved.manifest_bytes()).unwrap_or(serde_json::Value::Null);
        print_json(&json!({
            "reference": reference.to_string(),
            "digest": resolved.digest(),
            "format": match resolved.manifest().form() {
                registry_client::Form::Artifact => "wasm artifact",
                registry_client::Form::Image(_) => "wasi/wasm image",
            },
            "index": resolved.index().map(|i| json!({
                "platform": i.platform(),
                "manifest": i.entry().digest,
                "index": serde_json::from_slice::<serde_json::Value>(i.bytes())
                    .unwrap_or(serde_json::Value::Null),
            })),
            "manifest": manifest_value,
            "config": config,
            "referrers": referrers.as_ref().map(|r| &r.manifests),
        }));
        return Ok(Exit::Success);
    }
    outln!("reference  {reference}");
    outln!("digest     {}", resolved.digest());
    if let Some(index) = resolved.index() {
        outln!(
            "index      {} ({} bytes), entry for {}",
            registry_client::manifest::MEDIA_TYPE_OCI_INDEX,
            index.bytes().len(),
            index.platform()
        );
    }
    outln!(
        "manifest   {} {} ({} bytes)",
        registry_client::manifest::MEDIA_TYPE_OCI_MANIFEST,
        resolved.manifest_digest(),
        resolved.manifest_bytes().len()
    );
    outln!(
        "config     {} {} ({} bytes){}",
        q(&manifest.config.media_type),
        manifest.config.digest,
        manifest.config.size,
        match (config.get("os"), config.get("architecture")) {
            (Some(os), Some(arch)) => format!(
                " os={} architecture={}",
                q(os.as_str().unwrap_or("?")),
                q(arch.as_str().unwrap_or("?"))
            ),
            _ => String::new(),
        }
    );
    if let registry_client::Form::Image(_) = resolved.manifest().form() {
        // The entrypoint as the config gives it (checked to be a plain path when run).
        let entrypoint = config
            .pointer("/config/Entrypoint/0")
            .or_else(|| config.pointer("/config/Cmd/0"))
            .and_then(serde_json::Value::as_str);
        outln!(
            "format     wasi/wasm image, entrypoint {}",
            entrypoint.map_or_else(|| "none".to_owned(), |e| q(e).into_owned())
        );
    }
    for layer in &manifest.layers {
        let title = layer
            .annotations
            .get(registry_client::manifest::ANNOTATION_TITLE)
            .map(|t| format!(" {}", q(t)))
            .unwrap_or_default();
        outln!(
            "layer      {} {} ({} bytes){title}",
            q(&layer.media_type),
            layer.digest,
            layer.size
        );
    }
    match referrers {
        Some(r) if r.manifests.is_empty() => outln!("referrers  none ({:?})", r.source),
        Some(r) => {
            for d in &r.manifests {
                outln!(
                    "referrer   {} {} ({:?})",
                    q(d.artifact_type.as_deref().unwrap_or(&d.media_type)),
                    d.digest,
                    r.source
                );
            }
        }
        None => outln!("referrers  not listed for image layouts"),
    }
    Ok(Exit::Success)
}
