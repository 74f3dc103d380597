//! A plugin host: what a platform that runs its users' WebAssembly plugins embeds.
//!
//! It opens a [`broker::Broker`] once (its state, store, audit log, trust and policies), then
//! loads a signed plugin by reference and runs it with exactly the handles the policies grant,
//! printing its output. Every step is recorded in the audit log by the library itself.
//!
//! ```sh
//! cargo run -p broker --example plugin_host -- REF --key PUB --policies DIR [-- ARGS…]
//! # the embedded example:
//! cargo run -p broker --example plugin_host -- oci-layout:examples/hello/layout \
//!     --key examples/hello/example-signer.pub --policies examples/hello/policies
//! ```
//!
//! The state is Warrant's data directory (`$WARRANT_HOME`, else `~/.local/share/warrant`).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use broker::{Asks, Broker, Config, Outcome, Reference, Trust};

/// Run the host; 2 when it could not load or run the plugin, else the plugin's status.
pub fn main() -> ExitCode {
    match host() {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("plugin_host: {e}");
            ExitCode::from(2)
        }
    }
}

/// The command line: `REF --key PUB --policies DIR [-- ARGS…]`.
struct Args {
    reference: Reference,
    key: PathBuf,
    policies: PathBuf,
    plugin_args: Vec<String>,
}

fn args() -> Result<Args, Box<dyn std::error::Error>> {
    const USAGE: &str = "usage: plugin_host REF --key PUB --policies DIR [-- ARGS…]";
    let (mut reference, mut key, mut policies) = (None, None, None);
    let mut plugin_args = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--key" => key = args.next().map(PathBuf::from),
            "--policies" => policies = args.next().map(PathBuf::from),
            "--" => plugin_args.extend(args.by_ref()),
            _ if reference.is_none() => reference = Some(arg.parse()?),
            _ => return Err(USAGE.into()),
        }
    }
    match (reference, key, policies) {
        (Some(reference), Some(key), Some(policies)) => Ok(Args {
            reference,
            key,
            policies,
            plugin_args,
        }),
        _ => Err(USAGE.into()),
    }
}

fn host() -> Result<u8, Box<dyn std::error::Error>> {
    let args = args()?;

    // Open the broker once; a host keeps it for its lifetime and shares it across threads.
    let trust = Trust::from_key_files(&[args.key])?;
    let mut config = Config::in_data_dir(trust);
    config.policies = Some(args.policies);
    let broker = Broker::open(config)?;

    // Load the plugin: resolve, verify, fetch. Each stage takes the one before it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let artifact = runtime.block_on(async {
        let resolution = broker.resolve(&args.reference).await?;
        let verified = broker.verify(resolution).await?;
        broker.fetch(verified).await
    })?;
    for signer in artifact.signers() {
        eprintln!("plugin_host: signed by {}", signer.identity);
    }

    // Ask the policies for what a plugin gets here: 64 MiB and five seconds, nothing else.
    let asks = Asks {
        memory_bytes: 64 << 20,
        timeout_ms: 5_000,
        ..Asks::default()
    };
    let granted = broker.decide(artifact, &asks, false)?;
    let plugin = broker.prepare(granted)?;

    // Run it (a host would run it once per request, from any thread).
    let finished = plugin.run(&args.plugin_args)?;
    broker.checkpoint()?;
    let mut stdout = std::io::stdout();
    if stdout.is_terminal() {
        stdout.write_all(broker::terminal_text(&finished.stdout).as_bytes())?;
    } else {
        stdout.write_all(&finished.stdout)?;
    }
    eprint!("{}", broker::terminal_text(&finished.stderr));
    Ok(match finished.outcome {
        Outcome::Exited(status) => u8::try_from(status).unwrap_or(1),
        Outcome::Limited { limit, detail } => {
            eprintln!("plugin_host: stopped by its {limit:?} limit: {detail}");
            1
        }
        Outcome::Trapped(reason) => {
            eprintln!("plugin_host: trapped: {reason}");
            1
        }
        // This host never stops a plugin from outside.
        Outcome::Stopped => {
            eprintln!("plugin_host: stopped");
            1
        }
    })
}
