//! `warrant pull`: fetch an artifact into the store.

use registry_client::{Fetched, Reference};
use serde_json::json;

use super::context::Context;
use super::error::CliError;
use super::render::print_json;
use crate::exit::Exit;
use crate::progress::TerminalProgress;

/// `warrant pull REFERENCE`.
pub(super) fn pull(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    reference: String,
    json: bool,
) -> Result<Exit, CliError> {
    let reference: Reference = reference.parse()?;
    let client = ctx.client()?;
    let store = ctx.store()?;
    let progress = TerminalProgress::new();
    let fetched = runtime.block_on(client.pull(&reference, &store, &progress))?;
    if json {
        print_json(&fetched_json(&fetched));
    } else {
        outln!("{}", fetched.digest());
    }
    Ok(Exit::Success)
}

fn fetched_json(fetched: &Fetched) -> serde_json::Value {
    json!({
        "reference": fetched.resolved().reference().to_string(),
        "digest": fetched.digest(),
        "kind": fetched.kind().as_str(),
        "layer": { "digest": fetched.layer().digest, "size": fetched.layer().size },
        "path": fetched.module_path(),
        "entrypoint": fetched.image().map(|i| &i.entrypoint),
        "index": fetched.resolved().index().map(|i| json!({
            "platform": i.platform(),
            "manifest": i.entry().digest,
        })),
    })
}
