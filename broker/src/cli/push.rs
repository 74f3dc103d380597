//! `warrant push`: publish a .wasm file as a Wasm OCI artifact, or as a `wasi/wasm` image.

use std::path::PathBuf;

use registry_client::Reference;
use serde_json::json;

use super::context::Context;
use super::error::CliError;
use super::read_input;
use super::render::print_json;
use crate::exit::Exit;
use crate::progress::TerminalProgress;

/// `warrant push FILE REFERENCE [--image [--index]]`.
pub(super) fn push(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    file: PathBuf,
    reference: String,
    (image, index): (bool, bool),
    json: bool,
) -> Result<Exit, CliError> {
    let target: Reference = reference.parse()?;
    let client = ctx.client()?;
    let wasm = read_input(&file, client.options().max_module_bytes)?;
    let title = file.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let progress = TerminalProgress::new();
    let pushed = if image {
        // The module's name in the layer (and the entrypoint) is the file's, when that is a
        // plain file name.
        let name = title
            .as_deref()
            .filter(|t| registry_client::image_layer::normalise(t).is_ok())
            .unwrap_or("module.wasm");
        runtime.block_on(client.push_wasm_image(&wasm, name, &target, index, &progress))?
    } else {
        runtime.block_on(client.push_wasm(wasm, title.as_deref(), &target, &progress))?
    };
    if json {
        print_json(&json!({
            "reference": target.to_string(),
            "format": match (image, index) {
                (true, true) => "wasi/wasm image index",
                (true, false) => "wasi/wasm image",
                _ => "wasm artifact",
            },
            "digest": pushed.manifest.digest,
            "size": pushed.manifest.size,
            "manifest": pushed.index_entry.as_ref().map(|m| json!({ "digest": m.digest, "size": m.size })),
            "kind": pushed.kind.as_str(),
            "layer": { "digest": pushed.layer.digest, "size": pushed.layer.size },
        }));
    } else {
        outln!("{}", pushed.manifest.digest);
    }
    Ok(Exit::Success)
}
