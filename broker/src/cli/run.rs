//! `warrant run`: resolve, verify, decide and run an artifact, recording each stage in the
//! audit log.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use registry_client::{Digest, Fetched, Reference, RegistryClient, Resolved, Store};
use serde_json::json;

use super::args::{AskArgs, TrustArgs};
use super::context::Context;
use super::error::CliError;
use crate::exit::{Exit, MAX_GUEST_STATUS};
use crate::policy::Asks;
use crate::progress::TerminalProgress;
use crate::sandbox::{Handles, Outcome, RunLimits, Sandbox};

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
    // The engine depends on nothing but whether fuel is metered: it is built while
    // the artifact is resolved, verified and decided.
    // The state (checked to be the user's alone) is opened first: an unsafe state
    // refuses the run before anything else.
    let engine = EngineStart::spawn(asks.fuel.is_some(), ctx.compile_cache()?);
    std::thread::scope(|scope| {
        // The audit log is opened (and a torn tail repaired) before anything is
        // fetched: a log that cannot be written refuses the run. It is opened on
        // another thread while the trust, the policies and the store are read; the
        // scope waits for it whatever happens.
        let opening = std::thread::Builder::new()
            .name("warrant-audit".into())
            .spawn_scoped(scope, || ctx.audit());
        let trust = trust.load_with(&ctx.config, true)?;
        let mut policies = RunPolicies::open(ctx)?;
        let cache = ctx.verdict_cache()?;
        let client = ctx.client()?;
        let store = ctx.store()?;
        let mut audit = match opening {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(CliError::Usage("opening the audit log panicked".into()))),
            Err(_) => ctx.audit(),
        }?;
        let ran = run_audited(
            ctx,
            runtime,
            &client,
            &store,
            &reference,
            &trust,
            cache.as_ref(),
            &mut policies,
            &asks,
            drop_denied,
            args,
            &mut audit,
            engine,
        );
        // The run's result is reported first (a refusal's records are already
        // durable), then the end-of-run checkpoint is signed.
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
        audit.finish()?;
        Ok(exit)
    })
}

/// A run's policies: the directory's files, checked (strictly validated, or vouched for by
/// the memo) before anything is fetched, and parsed only if the run's decisions are not
/// remembered for exactly these files, facts and requests.
struct RunPolicies {
    sources: Vec<(PathBuf, String)>,
    key: [u8; 32],
    memo: Option<crate::cache::PolicyMemo>,
    loaded: Option<crate::policy::Policies>,
}

impl RunPolicies {
    fn open(ctx: &Context) -> Result<Self, CliError> {
        let Some(dir) = ctx.policy_dir() else {
            // Nothing to remember: everything is denied.
            return Ok(Self {
                sources: Vec::new(),
                key: [0; 32],
                memo: None,
                loaded: Some(ctx.policies()?),
            });
        };
        let sources = crate::policy::read_sources(&dir)?;
        let key = crate::policy::validation_key(&sources);
        let memo = ctx.policy_memo()?;
        let vouched = memo
            .as_ref()
            .is_some_and(|m| crate::policy::ValidationMemo::vouches(m, &key));
        let mut policies = Self {
            sources,
            key,
            memo,
            loaded: None,
        };
        // Not validated before: validated now, so that a bad set refuses the run early.
        if !vouched {
            policies.load()?;
        }
        Ok(policies)
    }

    fn load(&mut self) -> Result<&crate::policy::Policies, CliError> {
        Self::loaded(&mut self.loaded, &self.sources, self.memo.as_ref())
    }

    /// The policies in `slot`, loaded from `sources` first if they are not yet.
    fn loaded<'a>(
        slot: &'a mut Option<crate::policy::Policies>,
        sources: &[(PathBuf, String)],
        memo: Option<&crate::cache::PolicyMemo>,
    ) -> Result<&'a crate::policy::Policies, CliError> {
        let policies = match slot.take() {
            Some(policies) => policies,
            None => crate::policy::Policies::from_sources_with(
                sources,
                memo.map(|m| m as &dyn crate::policy::ValidationMemo),
            )?,
        };
        Ok(slot.insert(policies))
    }

    /// The run's grant or denial, the hash of the policy set that decided it, and whether
    /// the decisions were remembered rather than made now.
    fn grant(
        &mut self,
        facts: &crate::policy::Facts,
        asks: &Asks,
        drop_denied: bool,
    ) -> Result<
        (
            Result<crate::policy::Grant, crate::policy::Denial>,
            String,
            bool,
        ),
        CliError,
    > {
        if let Some(memo) = &self.memo
            && let Some(grant) = crate::policy::remembered_grant(memo, &self.key, facts, asks)
        {
            let hash = grant.policy_hash().to_owned();
            return Ok((Ok(grant), hash, true));
        }
        let memo = self.memo.as_ref();
        let policies = Self::loaded(&mut self.loaded, &self.sources, memo)?;
        let memo = memo.map(|m| (m as &dyn crate::policy::DecisionMemo, &self.key));
        let granted = policies.grant_remembering(facts, asks, drop_denied, memo);
        Ok((granted, policies.hash().to_owned(), false))
    }
}

/// What verification and fetch yield.
type Verified = (crate::cosign::Verdict, crate::attest::Attestations, Fetched);

/// Resolve `reference` once, then verify and fetch that digest; the verification's outcome is
/// returned beside the resolution so that a caller can record a refusal.
pub(super) fn resolve_verified(
    runtime: &tokio::runtime::Runtime,
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    trust: &crate::verify::Trust,
    cache: Option<&crate::cache::VerdictCache>,
) -> Result<(Resolved, Result<Verified, crate::pipeline::PipelineError>), CliError> {
    let progress = TerminalProgress::new();
    runtime.block_on(async {
        // A pinned digest whose manifest is in the store needs no registry to resolve (and,
        // with a cached verdict and its blobs stored, none at all).
        let resolved = match Resolved::from_store(store, reference)? {
            Some(resolved) => resolved,
            None => client.resolve(reference).await?,
        };
        let verified =
            crate::pipeline::fetch_verified(client, store, &resolved, trust, cache, &progress)
                .await;
        Ok((resolved, verified))
    })
}

/// The sandbox of a `warrant run`, built on a thread of its own from the start of the run.
/// Compiled code is kept in the state's compile cache: a second run of a digest does not
/// compile it again.
struct EngineStart {
    fuel: bool,
    building: Option<std::thread::JoinHandle<Result<Sandbox, crate::sandbox::SandboxError>>>,
}

impl EngineStart {
    /// Starts building a sandbox that meters fuel when `fuel` (if no thread can be had, the
    /// sandbox is built when it is needed).
    fn spawn(fuel: bool, cache: Option<crate::compiled::CompileCache>) -> Self {
        let building = std::thread::Builder::new()
            .name("warrant-engine".into())
            .spawn(move || Sandbox::configured(fuel, cache))
            .ok();
        Self { fuel, building }
    }

    /// The sandbox, metering fuel when `fuel`: the one built in the background if it was
    /// started for the same, else one built now.
    fn sandbox(self, fuel: bool, ctx: &Context) -> Result<Sandbox, CliError> {
        let built = match self.building {
            Some(thread) if self.fuel == fuel => thread.join().unwrap_or_else(|_| {
                Err(crate::sandbox::SandboxError::Engine(
                    "building the engine panicked".into(),
                ))
            }),
            _ => Sandbox::configured(fuel, ctx.compile_cache()?),
        };
        Ok(built?)
    }
}

/// The audited part of `run`: resolve, verify, decide and run, recording each stage in
/// `audit`. Records are written deferred (group commit); the grant (or a refusal) is committed
/// with one `fdatasync` before it takes effect.
#[expect(
    clippy::too_many_arguments,
    reason = "the stages' inputs, resolved once by the caller; a struct would only rename them"
)]
fn run_audited(
    ctx: &Context,
    runtime: tokio::runtime::Runtime,
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    trust: &crate::verify::Trust,
    cache: Option<&crate::cache::VerdictCache>,
    policies: &mut RunPolicies,
    asks: &Asks,
    drop_denied: bool,
    args: Vec<String>,
    audit: &mut crate::audit::Audit,
    engine: EngineStart,
) -> Result<Exit, CliError> {
    let (resolved, verified) = resolve_verified(&runtime, client, store, reference, trust, cache)?;
    // The reference as resolved (a layout by its canonical path): the name the policies decide.
    audit.record(
        "pull",
        json!({
            "reference": resolved.reference().to_string(),
            "digest": resolved.digest().to_string(),
        }),
    )?;
    let (verdict, attestations, fetched) = match verified {
        Ok(v) => v,
        Err(crate::pipeline::PipelineError::Unverified(verdict)) => {
            audit.record_before_effect(
                "verify",
                json!({"digest": verdict.digest.to_string(), "trust": trust.id(),
               "verified": false, "verdict": verdict}),
            )?;
            // The refusal is durable before it is reported.
            return Err(CliError::Pipeline(
                crate::pipeline::PipelineError::Unverified(verdict),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    drop(runtime);
    for signer in &verdict.signers {
        tracing::info!(digest = %verdict.digest, signer = %signer.identity, "verified");
    }
    audit.record(
        "verify",
        json!({"digest": verdict.digest.to_string(), "trust": trust.id(),
       "verified": true, "verdict": verdict,
       "attestations": attestations.verified}),
    )?;
    let facts = crate::pipeline::facts(&fetched, &verdict, &attestations);
    let (granted, policy_hash, remembered) = policies.grant(&facts, asks, drop_denied)?;
    let decisions = match &granted {
        Ok(grant) => grant.decisions(),
        Err(denial) => &denial.decisions,
    };
    let decide = json!({
    "digest": facts.digest().to_string(),
    "policyHash": policy_hash,
    "remembered": remembered,
    "allowed": granted.is_ok(),
    "decisions": decisions,
    });
    let grant = match granted {
        Ok(grant) => grant,
        Err(denial) => {
            // The denial is durable before it is reported.
            audit.record_before_effect("decide", decide)?;
            return Err(CliError::Denied(Box::new(denial)));
        }
    };
    audit.record("decide", decide)?;
    for d in grant.decisions().iter().filter(|d| !d.allowed) {
        errln!("warrant: dropped `{}`: {}", d.request, d.explanation());
    }
    let output_bytes = ctx
        .config
        .run
        .output_bytes
        .unwrap_or(crate::sandbox::limits::DEFAULT_OUTPUT_BYTES);
    let wasm = checked_module(&fetched, reference, &grant)?;
    let limits = RunLimits::of(&grant, output_bytes);
    let sandbox = engine.sandbox(limits.fuel.is_some(), ctx)?;
    // INVARIANT (audit before effect): the grant, and every record of this run before it,
    // is committed (one fdatasync) before the guest is instantiated. The module is compiled
    // (or loaded from the compile cache) and linked meanwhile, on another thread: that runs
    // no guest code, and a failed commit drops it unused.
    let preparing = sandbox.start_prepare(wasm)?;
    audit.record_before_effect(
        "instantiate",
        crate::audit::instantiate_body(&grant, output_bytes),
    )?;
    let prepared = preparing.wait()?;
    let mut argv = vec![reference.to_string()];
    argv.extend(args);
    let finished = sandbox.run_prepared(&prepared, &argv, &limits, &Handles::of(&grant))?;
    report_guest(&fetched, finished, audit)
}

/// The module's bytes, read from the store and checked to be what was verified and decided.
fn checked_module(
    fetched: &Fetched,
    reference: &Reference,
    grant: &crate::policy::Grant,
) -> Result<Vec<u8>, CliError> {
    // INVARIANT (grant binding): the grant was decided for this very digest.
    if grant.digest() != fetched.digest() {
        return Err(CliError::Usage(format!(
            "the grant is for `{}`, not `{}`",
            grant.digest(),
            fetched.digest()
        )));
    }
    // INVARIANT (digest binding): the bytes handed to the engine are hashed here, in memory,
    // and must equal the layer digest of the manifest that was resolved.
    let path = fetched.module_path().to_owned();
    let wasm = std::fs::read(&path).map_err(|source| CliError::Input {
        path: path.clone(),
        source,
    })?;
    let actual = Digest::of(&wasm);
    if actual != fetched.layer().digest {
        return Err(CliError::StoreCorrupt {
            path,
            expected: fetched.layer().digest.clone(),
            actual,
        });
    }
    // The sandbox runs the bytes as what they are; they must be what was verified and decided.
    let kind = registry_client::WasmKind::detect(&wasm);
    if kind != Some(fetched.kind()) {
        return Err(CliError::Usage(format!(
            "`{reference}` is published as a {} but its bytes are {}",
            fetched.kind().as_str(),
            kind.map_or("not WebAssembly", registry_client::WasmKind::as_str)
        )));
    }
    Ok(wasm)
}

/// Forward the guest's captured output, record its outcome, and map it to the exit status.
fn report_guest(
    fetched: &Fetched,
    finished: crate::sandbox::Finished,
    audit: &mut crate::audit::Audit,
) -> Result<Exit, CliError> {
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
    let digest = fetched.digest();
    let (how, detail) = match &finished.outcome {
        Outcome::Exited(status) => ("exit", json!(status)),
        Outcome::Limited { limit, detail } => (
            "limit",
            json!({"limit": format!("{limit:?}"), "detail": detail}),
        ),
        Outcome::Trapped(reason) => ("trap", json!(reason)),
    };
    audit.record(
        "outcome",
        json!({
            "digest": digest.to_string(),
            "outcome": how,
            "detail": detail,
            "elapsedUs": u64::try_from(finished.elapsed.as_micros()).unwrap_or(u64::MAX),
            "stdoutBytes": finished.stdout.len(),
            "stderrBytes": finished.stderr.len(),
        }),
    )?;
    Ok(match finished.outcome {
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
    })
}

/// Write guest output; on a terminal, neutralise control characters (C0, DEL, C1: escape
/// sequences could rewrite the screen or the title) and bidirectional formatting, except
/// newline, tab and carriage return.
fn write_guest_output(sink: &mut dyn Write, bytes: &[u8], terminal: bool) {
    if terminal {
        // As UTF-8 (a byte that is not, such as a lone 8-bit `CSI`, becomes U+FFFD), with every
        // control and bidirectional character but newline, tab and carriage return replaced.
        let cleaned: String = String::from_utf8_lossy(bytes)
            .chars()
            .map(|c| match c {
                '\n' | '\t' | '\r' => c,
                c if registry_client::text::is_unsafe(c) => '?',
                c => c,
            })
            .collect();
        let _ = sink.write_all(cleaned.as_bytes());
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
