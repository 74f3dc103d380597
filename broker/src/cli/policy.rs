//! `warrant policy`: check the policies, explain a decision, run their tests.

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
