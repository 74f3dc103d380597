//! What every command needs: the configuration, resolved against the flags.

use std::path::PathBuf;

use registry_client::{ClientOptions, RegistryClient, Store};

use super::GlobalArgs;
use super::error::{CliError, saving};
use crate::config::{Config, data_dir};

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
        let ttl = self.verdict_ttl();
        if ttl.is_zero() {
            return Ok(None);
        }
        saving(
            "the verdict cache",
            crate::cache::VerdictCache::open(self.state()?, ttl),
        )
    }

    fn verdict_ttl(&self) -> std::time::Duration {
        self.config
            .verify
            .cache_ttl
            .map_or(crate::stages::limits::VERDICT_TTL, |span| span.0)
    }

    /// The policy memo.
    pub(super) fn policy_memo(&self) -> Result<Option<crate::cache::PolicyMemo>, CliError> {
        saving(
            "the policy memo",
            crate::cache::PolicyMemo::open(self.state()?),
        )
    }

    /// How the registry is reached: `[registry]` in the config.
    fn client_options(&self) -> Result<ClientOptions, CliError> {
        Ok(self.config.client_options()?)
    }

    pub(super) fn client(&self) -> Result<RegistryClient, CliError> {
        let options = self.client_options()?;
        // One command's registry work together is bounded by the operation deadline and the
        // request cap, not each operation alone.
        let deadline = options.operation_deadline;
        Ok(RegistryClient::new(options)?
            .budgeted(deadline, registry_client::limits::MAX_REQUESTS_PER_RUN))
    }

    /// What a [`crate::Broker`] for `warrant run` is opened with: the configuration and the
    /// flags, and `trust`; the engine built ahead meters fuel when `metered`.
    pub(super) fn broker_config(
        &self,
        trust: crate::verify::Trust,
        metered: bool,
    ) -> Result<crate::Config, CliError> {
        let mut config = crate::Config::new(data_dir(), trust);
        config.store = Some(self.store_path.clone());
        config.policies = self.policy_dir();
        let (audit_log, audit_key) = self.audit_paths();
        config.audit_log = Some(audit_log);
        config.audit_key = Some(audit_key);
        config.audit_keep_every = self.config.audit_keep_every;
        config.registry = self.client_options()?;
        config.verdict_ttl = self.verdict_ttl();
        if let Some(size) = self.config.run.output_bytes {
            config.output_bytes = size.0;
        }
        config.metered = metered;
        config.progress = Box::new(crate::progress::TerminalProgress::new());
        Ok(config)
    }

    pub(super) fn store(&self) -> Result<Store, CliError> {
        if self.store_in_state {
            // The data directory is made (0700) and checked before the store is made in it.
            self.state()?;
        }
        Ok(Store::open(&self.store_path)?)
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
