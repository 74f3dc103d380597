//! `warrant serve`: the multi-tenant `wasi:http` host ([`crate::serve`]), and `--check`, which
//! loads every tenant as serving would and reports each verdict and grant without listening.

use serde::Serialize;

use super::context::Context;
use super::error::CliError;
use crate::exit::Exit;
use crate::serve::{Loaded, Reloading};

/// `warrant serve [--listen ADDR] [--admin-listen ADDR] [--check [--json]]`.
pub(super) fn serve(
    ctx: &Context,
    listen: Option<String>,
    admin_listen: Option<String>,
    check: bool,
    json: bool,
) -> Result<Exit, CliError> {
    let file = ctx.config.source.clone();
    let global_policies = ctx.policy_dir();
    let settings = crate::serve::config::settings(
        &ctx.config.serve,
        &crate::serve::tenants_base(file.as_deref()),
        global_policies.as_deref(),
        listen.as_deref(),
        admin_listen.as_deref(),
    )
    .map_err(|e| CliError::Usage(format!("[serve]: {e}")))?;
    if settings.tenants.is_empty() {
        return Err(CliError::Usage(
            "no tenants: add `[[serve.tenant]]` sections to the configuration".into(),
        ));
    }
    let root = crate::verify::load_trusted_root(ctx.config.verify.trusted_root.as_deref())?;
    // The base broker verifies nothing itself: each tenant is given its own trust.
    let trust = crate::verify::Trust::new(Vec::new(), Vec::new(), &root)?;
    let mut config = ctx.broker_config(trust, false)?;
    config.progress = Box::new(registry_client::NoProgress);
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let broker = crate::Broker::open(config)?;
    let loader = crate::serve::loader(
        broker.clone(),
        broker.compile_cache(),
        root,
        settings.outbound_roots.as_deref(),
    )
    .map_err(CliError::Usage)?;
    if check {
        let loaded = runtime.block_on(crate::serve::load_all(&loader, &settings.tenants, None));
        let exit = report_check(&loaded, json);
        broker.checkpoint()?;
        return Ok(exit);
    }
    let reloading = Reloading {
        file,
        global_policies,
        listen,
        admin_listen,
    };
    let result = runtime.block_on(crate::serve::serve(loader, settings, reloading, |line| {
        errln!("warrant: {line}")
    }));
    // Guests still running past the grace are not waited for.
    runtime.shutdown_background();
    result.map_err(CliError::Usage)?;
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct TenantReport<'a> {
    name: &'a str,
    route: &'a str,
    reference: &'a str,
    served: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant: Option<GrantReport<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantReport<'a> {
    memory_bytes: u64,
    timeout_ms: u128,
    max_concurrency: u32,
    outbound: &'a [String],
    dropped: Vec<String>,
}

/// Print each tenant's verdict and grant; the exit code of the first failure, else 0.
fn report_check(loaded: &[Loaded], json: bool) -> Exit {
    let mut first_failure = None;
    let mut reports = Vec::with_capacity(loaded.len());
    for l in loaded {
        let spec = &l.spec;
        let report = match &l.result {
            Ok(serving) => {
                let grant = serving.prepared.grant();
                TenantReport {
                    name: &spec.name,
                    route: &spec.route,
                    reference: &spec.reference,
                    served: true,
                    digest: Some(serving.prepared.digest().to_string()),
                    signers: Some(
                        serving
                            .prepared
                            .signers()
                            .iter()
                            .map(|s| s.identity.clone())
                            .collect(),
                    ),
                    grant: Some(GrantReport {
                        memory_bytes: grant.memory_bytes(),
                        timeout_ms: grant.timeout().as_millis(),
                        max_concurrency: spec.max_concurrency,
                        outbound: grant.http(),
                        dropped: grant
                            .decisions()
                            .iter()
                            .filter(|d| !d.allowed)
                            .map(|d| d.request.to_string())
                            .collect(),
                    }),
                    error: None,
                    exit: None,
                }
            }
            Err(e) => {
                let exit = exit_of(e);
                first_failure.get_or_insert(exit);
                TenantReport {
                    name: &spec.name,
                    route: &spec.route,
                    reference: &spec.reference,
                    served: false,
                    digest: None,
                    signers: None,
                    grant: None,
                    error: Some(crate::serve::failure_reason(e)),
                    exit: Some(exit.code()),
                }
            }
        };
        reports.push(report);
    }
    if json {
        let served = reports.iter().filter(|r| r.served).count();
        outln!(
            "{}",
            serde_json::json!({
                "served": served,
                "tenants": reports,
            })
        );
    } else {
        for r in &reports {
            match (&r.digest, &r.grant, &r.error) {
                (Some(digest), Some(grant), _) => {
                    outln!(
                        "{}  {}  served  {digest}  signed by {}",
                        r.name,
                        r.route,
                        r.signers.as_deref().unwrap_or_default().join(", ")
                    );
                    outln!(
                        "    memory {} B, timeout {} ms, {} in flight, outbound: {}",
                        grant.memory_bytes,
                        grant.timeout_ms,
                        grant.max_concurrency,
                        if grant.outbound.is_empty() {
                            "none".to_owned()
                        } else {
                            grant.outbound.join(", ")
                        }
                    );
                    for dropped in &grant.dropped {
                        outln!("    dropped: {dropped}");
                    }
                }
                (_, _, error) => outln!(
                    "{}  {}  NOT SERVED  {}",
                    r.name,
                    r.route,
                    error.as_deref().unwrap_or("")
                ),
            }
        }
    }
    first_failure.unwrap_or(Exit::Success)
}

/// The documented exit code of a tenant's failure, as `warrant run` would exit for it.
fn exit_of(e: &crate::stages::Error) -> Exit {
    use crate::pipeline::PipelineError;
    use crate::sandbox::SandboxError;
    use crate::stages::Error;
    match e {
        Error::Registry(
            registry_client::Error::InvalidReference { .. }
            | registry_client::Error::InvalidDigest { .. }
            | registry_client::Error::Unsafe { .. },
        ) => Exit::Usage,
        Error::Registry(_) | Error::StoreCorrupt { .. } | Error::Poisoned(_) => Exit::Registry,
        Error::Verification(PipelineError::Registry(_)) => Exit::Registry,
        Error::Verification(PipelineError::Verify(v)) if v.is_usage() => Exit::Usage,
        Error::Verification(_) | Error::KindMismatch { .. } | Error::Malformed { .. } => {
            Exit::Verification
        }
        Error::Input { .. } | Error::Key(_) | Error::Policy(_) => Exit::Usage,
        Error::Denied(_) => Exit::PolicyDenied,
        Error::Sandbox(SandboxError::CompileDeadline(_)) => Exit::Limit,
        Error::Sandbox(SandboxError::Engine(_)) => Exit::Usage,
        Error::Sandbox(_) => Exit::Trap,
        Error::Audit(a) if a.is_configuration() => Exit::Usage,
        Error::Audit(_) => Exit::Registry,
        Error::State(s) if crate::stages::state_unsafe(s) => Exit::Usage,
        Error::State(_) => Exit::Registry,
    }
}
