//! `warrant run`: open a broker, take the artifact through every stage, forward the guest's
//! output and map its outcome to the exit status. The stages, and the audit records, are the
//! library's ([`crate::Broker`]).

use std::io::{IsTerminal, Write};

use registry_client::Reference;

use super::args::{AskArgs, TrustArgs};
use super::context::Context;
use super::error::CliError;
use crate::exit::{Exit, MAX_GUEST_STATUS};
use crate::policy::Asks;
use crate::sandbox::{Finished, Outcome};
use crate::stages::Broker;

/// `warrant run REFERENCE [-- ARGS]`.
pub(super) fn run(
    ctx: &Context,
    runtime: tokio::runtime::Runtime,
    reference: String,
    trust: TrustArgs,
    asks: AskArgs,
    drop_denied: bool,
    args: Vec<String>,
) -> Result<Exit, CliError> {
    let reference: Reference = reference.parse()?;
    let asks = asks.asks(&ctx.config)?;
    let trust = trust.load_with(&ctx.config, true)?;
    // Everything is opened, and checked, before anything is fetched: an unsafe state, a log
    // that cannot be written or a bad policy set refuses the run here. The engine (which
    // depends on nothing but whether fuel is metered) is built meanwhile.
    let broker = Broker::open(ctx.broker_config(trust, asks.fuel.is_some())?)?;
    let ran = run_stages(&broker, runtime, &reference, &asks, drop_denied, &args);
    // The run's result is reported first (a refusal's records are already durable), then the
    // end-of-run checkpoint is signed.
    let exit = match ran {
        Ok(exit) => exit,
        Err(e) => {
            errln!("warrant: error: {e}");
            if matches!(e, CliError::Audit(_)) {
                // The log refused a write: it is poisoned, there is nothing to sign.
                return Ok(e.exit());
            }
            e.exit()
        }
    };
    broker.checkpoint()?;
    Ok(exit)
}

/// Resolve, verify, fetch, decide, prepare and run, each stage taking the one before it.
fn run_stages(
    broker: &Broker,
    runtime: tokio::runtime::Runtime,
    reference: &Reference,
    asks: &Asks,
    drop_denied: bool,
    args: &[String],
) -> Result<Exit, CliError> {
    let artifact = runtime.block_on(async {
        let resolution = broker.resolve(reference).await?;
        let verified = broker.verify(resolution).await?;
        broker.fetch(verified).await
    })?;
    drop(runtime);
    let granted = broker.decide(artifact, asks, drop_denied)?;
    for d in granted.decisions().iter().filter(|d| !d.allowed) {
        errln!("warrant: dropped `{}`: {}", d.request, d.explanation());
    }
    let guest = broker.prepare(granted)?;
    let finished = guest.run(args)?;
    Ok(report_guest(guest.digest(), finished))
}

/// Forward the guest's captured output and map its outcome to the exit status.
fn report_guest(digest: &registry_client::Digest, finished: Finished) -> Exit {
    write_guest_output(
        &mut std::io::stdout(),
        &finished.stdout,
        std::io::stdout().is_terminal(),
    );
    write_guest_output(
        &mut std::io::stderr(),
        &finished.stderr,
        std::io::stderr().is_terminal(),
    );
    match finished.outcome {
        Outcome::Exited(status) => match u8::try_from(status) {
            Ok(s) if s <= MAX_GUEST_STATUS => Exit::Guest(s),
            _ => {
                errln!(
                    "warrant: guest `{digest}` exited with status {status}, outside 0–{MAX_GUEST_STATUS} (121–125 are warrant's own)"
                );
                Exit::Trap
            }
        },
        Outcome::Limited { limit, detail } => {
            errln!(
                "warrant: guest `{digest}` stopped by its {limit:?} limit after {:?}: {detail}",
                finished.elapsed
            );
            Exit::Limit
        }
        Outcome::Trapped(reason) => {
            errln!("warrant: guest `{digest}` trapped: {reason}");
            Exit::Trap
        }
        // `warrant run` never stops a guest from outside; a signal ends the process instead.
        Outcome::Stopped => {
            errln!("warrant: guest `{digest}` was stopped");
            Exit::Trap
        }
    }
}

/// Write guest output; on a terminal, made safe ([`crate::terminal_text`]).
fn write_guest_output(sink: &mut dyn Write, bytes: &[u8], terminal: bool) {
    if terminal {
        let _ = sink.write_all(crate::stages::terminal_text(bytes).as_bytes());
    } else {
        let _ = sink.write_all(bytes);
    }
    let _ = sink.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_output_is_neutralised_on_a_terminal_only() {
        let mut out = Vec::new();
        write_guest_output(&mut out, b"a\x1b]0;pwned\x07b\n", true);
        assert_eq!(out, b"a?]0;pwned?b\n");
        let mut out = Vec::new();
        write_guest_output(&mut out, b"a\x1bb", false);
        assert_eq!(out, b"a\x1bb");
        // C1 controls, as UTF-8 or as a lone 8-bit byte, and bidirectional overrides.
        let mut out = Vec::new();
        write_guest_output(&mut out, "c1\u{9b}2J \u{202e}txt\n".as_bytes(), true);
        assert_eq!(out, "c1?2J ?txt\n".as_bytes());
        let mut out = Vec::new();
        write_guest_output(&mut out, b"raw\x9b2J", true);
        assert_eq!(out, "raw\u{fffd}2J".as_bytes());
    }
}
