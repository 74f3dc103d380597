//! `warrant policy`: check the policies, explain a decision, suggest a policy, compare them
//! with an artifact, run their tests.

use registry_client::Reference;
use serde_json::json;

use super::PolicyCommand;
use super::context::Context;
use super::error::CliError;
use super::render::print_json;
use crate::exit::Exit;

/// `warrant policy check|explain|test`.
pub(super) fn policy(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    command: PolicyCommand,
) -> Result<Exit, CliError> {
    match command {
        PolicyCommand::Check { json } => {
            let dir = ctx.required_policy_dir()?;
            let policies = crate::policy::Policies::load(&dir)?;
            if json {
                print_json(&json!({
                    "directory": dir.display().to_string(),
                    "policies": policies.len(),
                    "hash": policies.hash(),
                }));
            } else {
                outln!(
                    "{}: {} polic{} valid, {}",
                    dir.display(),
                    policies.len(),
                    if policies.len() == 1 { "y" } else { "ies" },
                    policies.hash()
                );
            }
            Ok(Exit::Success)
        }
        PolicyCommand::Explain {
            reference,
            trust,
            asks,
            json,
        } => {
            let reference: Reference = reference.parse()?;
            let trust = trust.load_with(&ctx.config, true)?;
            let asks = asks.asks(&ctx.config)?;
            let policies = ctx.policies()?;
            let cache = ctx.verdict_cache()?;
            let client = ctx.client()?;
            let store = ctx.store()?;
            let progress = crate::progress::TerminalProgress::new();
            let (facts, decisions) = runtime.block_on(crate::stages::explain(
                &client,
                &store,
                &reference,
                &trust,
                cache.as_ref(),
                &policies,
                &asks,
                &progress,
            ))?;
            let all = decisions.iter().all(|d| d.allowed);
            if json {
                print_json(&json!({
                    "reference": reference.to_string(),
                    "policyHash": policies.hash(),
                    "facts": facts,
                    "decisions": decisions,
                    "allowed": all,
                }));
            } else {
                out!(
                    "{}",
                    crate::policy::explain_table(&facts, &policies, &decisions)
                );
            }
            Ok(if all {
                Exit::Success
            } else {
                Exit::PolicyDenied
            })
        }
        PolicyCommand::Suggest {
            reference,
            trust,
            asks,
            out,
            name,
            json,
        } => {
            let reference: Reference = reference.parse()?;
            let trust = trust.load_with(&ctx.config, true)?;
            let asks = asks.asks(&ctx.config)?;
            let (facts, uses) = facts_and_uses(ctx, runtime, &reference, &trust)?;
            if facts.signers().is_empty() {
                return Err(CliError::Integrity(
                    "no signature verified, and a suggested policy is bound to its signer: \
                     pass the signer's `--key`, or `--certificate-identity` and \
                     `--certificate-oidc-issuer`"
                        .into(),
                ));
            }
            let name = match name {
                Some(name) => name,
                None => crate::policy::default_name(facts.repository()),
            };
            crate::policy::check_suggestion_name(&name).map_err(CliError::Usage)?;
            let suggestion = crate::policy::suggest(
                &facts,
                &uses,
                &asks.requests(),
                &name,
                &reference.to_string(),
            )
            .map_err(CliError::Internal)?;
            let written = match &out {
                Some(dir) => Some(write_suggestion(dir, &suggestion)?),
                None => None,
            };
            if json {
                print_json(&json!({
                    "reference": reference.to_string(),
                    "digest": facts.digest().to_string(),
                    "name": suggestion.name,
                    "policy": suggestion.cedar,
                    "tests": suggestion.tests,
                    "granted": suggestion.granted.iter()
                        .map(|(id, r)| json!({"id": id, "request": r}))
                        .collect::<Vec<_>>(),
                    "leftOut": suggestion.left_out.iter()
                        .map(|(r, why)| json!({"request": r, "reason": why}))
                        .collect::<Vec<_>>(),
                    "importedNotGranted": suggestion.unasked.iter()
                        .map(|(c, imports)| json!({"capability": c, "imports": imports}))
                        .collect::<Vec<_>>(),
                    "imports": uses.imports,
                    "written": written.as_ref().map(|(p, t, _)| json!({
                        "policy": p.display().to_string(),
                        "tests": t.display().to_string(),
                    })),
                }));
            } else {
                match &written {
                    Some((policy, tests, cases)) => {
                        outln!(
                            "wrote {} ({} permit{}) and {} ({cases} passing test case{})",
                            policy.display(),
                            suggestion.granted.len(),
                            if suggestion.granted.len() == 1 {
                                ""
                            } else {
                                "s"
                            },
                            tests.display(),
                            if *cases == 1 { "" } else { "s" },
                        );
                    }
                    None => out!("{}", suggestion.cedar),
                }
                for (request, why) in &suggestion.left_out {
                    errln!("warrant: left out `{request}`: {why}");
                }
                for (capability, imports) in &suggestion.unasked {
                    errln!(
                        "warrant: imports {} ({}), not asked for: not granted",
                        capability.describe(),
                        imports.join(", ")
                    );
                }
            }
            Ok(Exit::Success)
        }
        PolicyCommand::Diff {
            reference,
            trust,
            asks,
            json,
        } => {
            let reference: Reference = reference.parse()?;
            let trust = trust.load_with(&ctx.config, true)?;
            let asks = asks.asks(&ctx.config)?;
            let policies = ctx.policies()?;
            let (facts, uses) = facts_and_uses(ctx, runtime, &reference, &trust)?;
            let rows = crate::policy::diff(&policies, &facts, &uses, &asks.requests());
            let agree = rows
                .iter()
                .all(|r| r.finding == crate::policy::Finding::Agrees);
            if json {
                print_json(&json!({
                    "reference": reference.to_string(),
                    "digest": facts.digest().to_string(),
                    "policyHash": policies.hash(),
                    "imports": uses.imports,
                    "rows": rows,
                    "agree": agree,
                }));
            } else {
                out!("{}", crate::policy::diff_table(&rows));
            }
            Ok(if agree {
                Exit::Success
            } else {
                Exit::PolicyDenied
            })
        }
        PolicyCommand::Test { json } => {
            let dir = ctx.required_policy_dir()?;
            let policies = crate::policy::Policies::load(&dir)?;
            let report = crate::policy_tests::run_dir(&policies, &dir.join("tests"))
                .map_err(CliError::Usage)?;
            if json {
                print_json(&serde_json::to_value(&report).unwrap_or_default());
            } else {
                for r in &report.results {
                    outln!(
                        "{}  {}: {}",
                        if r.passed { "pass" } else { "FAIL" },
                        r.name,
                        r.detail
                    );
                }
                outln!(
                    "policy tests: {} passed, {} failed",
                    report.passed(),
                    report.failed()
                );
            }
            Ok(if report.failed() == 0 && !report.results.is_empty() {
                Exit::Success
            } else {
                Exit::PolicyDenied
            })
        }
    }
}

/// The verified facts of `reference` and what its verified bytes import, with the context's
/// store, cache and registry client (`policy suggest`, `policy diff`).
fn facts_and_uses(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    reference: &Reference,
    trust: &crate::verify::Trust,
) -> Result<(crate::policy::Facts, crate::uses::Uses), CliError> {
    let cache = ctx.verdict_cache()?;
    let client = ctx.client()?;
    let store = ctx.store()?;
    let progress = crate::progress::TerminalProgress::new();
    Ok(runtime.block_on(crate::stages::facts_and_uses(
        &client,
        &store,
        reference,
        trust,
        cache.as_ref(),
        &progress,
    ))?)
}

/// Write `suggestion` into the policy directory `dir` as `NAME.cedar` and `tests/NAME.toml`,
/// never replacing a file, then load the whole directory and run the new tests against it:
/// when the directory's other policies make them fail (an `@id` taken, a `forbid` that denies,
/// another permit that also allows), both files are removed again and the reason returned.
/// Returns the two paths and the number of test cases.
fn write_suggestion(
    dir: &std::path::Path,
    suggestion: &crate::policy::Suggestion,
) -> Result<(std::path::PathBuf, std::path::PathBuf, usize), CliError> {
    let io = |path: &std::path::Path, e: std::io::Error| {
        CliError::Usage(format!("cannot write `{}`: {e}", path.display()))
    };
    let tests_dir = dir.join("tests");
    std::fs::create_dir_all(&tests_dir).map_err(|e| io(&tests_dir, e))?;
    let policy = dir.join(format!("{}.cedar", suggestion.name));
    let tests = tests_dir.join(format!("{}.toml", suggestion.name));
    for path in [&policy, &tests] {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(CliError::Usage(format!(
                "`{}` already exists: remove it, or choose another `--name`",
                path.display()
            )));
        }
    }
    // Each file appears whole or not at all, and never over another.
    let place = |path: &std::path::Path, text: &str| -> Result<(), CliError> {
        use std::io::Write as _;
        let parent = path.parent().unwrap_or(dir);
        let mut file = tempfile::Builder::new()
            .prefix(".suggest-")
            .tempfile_in(parent)
            .map_err(|e| io(path, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| io(path, e))?;
        file.persist_noclobber(path)
            .map_err(|e| io(path, e.error))?;
        Ok(())
    };
    place(&tests, &suggestion.tests)?;
    if let Err(e) = place(&policy, &suggestion.cedar) {
        let _ = std::fs::remove_file(&tests);
        return Err(e);
    }
    let undo = |why: String| {
        let _ = std::fs::remove_file(&policy);
        let _ = std::fs::remove_file(&tests);
        CliError::Usage(format!(
            "the suggestion does not fit `{}`, so nothing was written: {why}",
            dir.display()
        ))
    };
    let policies = crate::policy::Policies::load(dir).map_err(|e| undo(e.to_string()))?;
    let report = crate::policy_tests::run_text(
        &policies,
        &format!("{}.toml", suggestion.name),
        &suggestion.tests,
    )
    .map_err(&undo)?;
    if let Some(failed) = report.results.iter().find(|r| !r.passed) {
        return Err(undo(format!(
            "with the directory's other policies, {}: {}",
            failed.name, failed.detail
        )));
    }
    Ok((policy, tests, report.results.len()))
}
