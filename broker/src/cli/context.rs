//! What every command needs: the configuration, resolved against the flags.

use std::path::PathBuf;

use registry_client::{ClientOptions, Credentials, RegistryClient, Store};

use super::GlobalArgs;
use super::error::{CliError, saving};
use crate::config::{Config, data_dir, parse_duration};

/// What every command needs: the configuration, resolved against the flags.
pub(super) struct Context {
    pub(super) config: Config,
    store_path: PathBuf,
    /// The store is the data directory's own (no `--store`, no `store` in the config).
    store_in_state: bool,
    policies: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    /// The data directory, opened and checked on first use.
    state: std::sync::OnceLock<crate::state::State>,
}

impl Context {
    pub(super) fn new(global: &GlobalArgs) -> Result<Self, CliError> {
        let config = Config::discover(global.config.as_deref())?;
        let configured = global.store.clone().or_else(|| config.store.clone());
        let store_in_state = configured.is_none();
        let store_path = configured.unwrap_or_else(|| data_dir().join("store"));
        Ok(Self {
            config,
            store_path,
            store_in_state,
            policies: global.policies.clone(),
            audit_log: global.audit_log.clone(),
            state: std::sync::OnceLock::new(),
        })
    }

    /// The data directory (`$WARRANT_HOME`, …), created 0700 and checked to be the user's
    /// alone, opened once per process.
    pub(super) fn state(&self) -> Result<&crate::state::State, CliError> {
        if let Some(state) = self.state.get() {
            return Ok(state);
        }
        let opened = crate::state::State::open(&data_dir())?;
        Ok(self.state.get_or_init(|| opened))
    }

    /// The verdict cache, or none when `[verify] cache_ttl` is zero.
    pub(super) fn verdict_cache(&self) -> Result<Option<crate::cache::VerdictCache>, CliError> {
        let ttl = match &self.config.verify.cache_ttl {
            Some(text) => parse_duration(text)?,
            None => std::time::Duration::from_secs(3600),
        };
        if ttl.is_zero() {
            return Ok(None);
        }
        saving(
            "the verdict cache",
            crate::cache::VerdictCache::open(self.state()?, ttl),
        )
    }

    /// The policy memo.
    pub(super) fn policy_memo(&self) -> Result<Option<crate::cache::PolicyMemo>, CliError> {
        saving(
            "the policy memo",
            crate::cache::PolicyMemo::open(self.state()?),
        )
    }

    /// The compile cache.
    pub(super) fn compile_cache(&self) -> Result<Option<crate::compiled::CompileCache>, CliError> {
        saving(
            "the compile cache",
            crate::compiled::CompileCache::open(self.state()?),
        )
    }

    pub(super) fn client(&self) -> Result<RegistryClient, CliError> {
        let r = &self.config.registry;
        let mut options = ClientOptions {
            insecure_registries: r.insecure.clone(),
            credentials: match &r.credentials {
                Some(path) => Credentials::from_file(path)?,
                None => Credentials::from_default_location()?,
            },
            ..ClientOptions::default()
        };
        if let Some(d) = &r.connect_timeout {
            options.connect_timeout = parse_duration(d)?;
        }
        if let Some(d) = &r.read_timeout {
            options.read_timeout = parse_duration(d)?;
        }
        if let Some(d) = &r.operation_deadline {
            options.operation_deadline = parse_duration(d)?;
        }
        if let Some(max) = r.max_module_bytes {
            options.max_module_bytes = max;
        }
        // One command's registry work together (for `run`: resolve, verify and fetch) is
        // bounded by the operation deadline and the request cap, not each operation alone.
        let deadline = options.operation_deadline;
        Ok(RegistryClient::new(options)?
            .budgeted(deadline, registry_client::limits::MAX_REQUESTS_PER_RUN))
    }

    pub(super) fn store(&self) -> Result<Store, CliError> {
        if self.store_in_state {
            // The data directory is made (0700) and checked before the store is made in it.
            self.state()?;
        }
        Ok(Store::open(&self.store_path)?)
    }

    /// The audit log: `--audit-log`, else `audit_log` in the config, else the data directory's
    /// `audit/`; signed with `audit_key` (default: the data directory's `audit.key`, created
    /// on first use).
    pub(super) fn audit(&self) -> Result<crate::audit::Audit, CliError> {
        let (dir, key) = self.audit_paths();
        let mut audit = crate::audit::Audit::open(&dir, &key)?;
        if let Some(records) = self.config.audit_keep_every {
            audit.set_keep_every(records);
        }
        Ok(audit)
    }

    pub(super) fn audit_paths(&self) -> (PathBuf, PathBuf) {
        let dir = self
            .audit_log
            .clone()
            .or_else(|| self.config.audit_log.clone())
            .unwrap_or_else(|| data_dir().join("audit"));
        let key = self
            .config
            .audit_key
            .clone()
            .unwrap_or_else(|| data_dir().join("audit.key"));
        (dir, key)
    }

    pub(super) fn required_policy_dir(&self) -> Result<PathBuf, CliError> {
        self.policy_dir().ok_or_else(|| {
            CliError::Usage(
                "no policy directory: give `--policies DIR` or `policies` in the config".into(),
            )
        })
    }

    pub(super) fn policy_dir(&self) -> Option<PathBuf> {
        self.policies
            .clone()
            .or_else(|| self.config.policies.clone())
    }

    /// The policy directory's policies, strictly validated (or exactly these sources validated
    /// before, as the data directory's authenticated memo vouches); none (everything denied)
    /// when no directory is configured.
    pub(super) fn policies(&self) -> Result<crate::policy::Policies, CliError> {
        match self.policy_dir() {
            Some(dir) => {
                let memo = self.policy_memo()?;
                let memo = memo
                    .as_ref()
                    .map(|m| m as &dyn crate::policy::ValidationMemo);
                Ok(crate::policy::Policies::load_with(&dir, memo)?)
            }
            None => {
                tracing::warn!(
                    "no policy directory (`--policies DIR`): every request will be denied"
                );
                Ok(crate::policy::Policies::from_sources(&[])?)
            }
        }
    }
}
