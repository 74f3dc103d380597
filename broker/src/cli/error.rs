//! Everything that makes `warrant` stop early, and the exit code each maps to.

use std::path::PathBuf;

use registry_client::Digest;

use crate::config::ConfigError;
use crate::exit::Exit;
use crate::sandbox::SandboxError;
use crate::verify::VerifyError;

/// Everything that makes `warrant` stop early, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub(super) enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
    #[error("cannot read `{path}`: {source}", path = .path.display())]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("stored module `{path}` hashes to `{actual}`, not `{expected}`; the store is corrupt", path = .path.display())]
    StoreCorrupt {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("signing failed: {0}")]
    Sign(#[from] crate::cosign::SignError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("{0}")]
    Denied(Box<crate::policy::Denial>),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditFailure),
    #[error("warrant's state: {0}")]
    State(#[from] crate::state::StateError),
}

impl CliError {
    pub(super) fn exit(&self) -> Exit {
        match self {
            Self::Config(_) | Self::Input { .. } | Self::Usage(_) | Self::Runtime(_) => Exit::Usage,
            Self::Registry(
                registry_client::Error::InvalidReference { .. }
                | registry_client::Error::InvalidDigest { .. }
                | registry_client::Error::Unsafe { .. },
            ) => Exit::Usage,
            Self::Registry(_) | Self::StoreCorrupt { .. } => Exit::Registry,
            Self::Sandbox(SandboxError::Load(_)) => Exit::Trap,
            Self::Sandbox(SandboxError::CompileDeadline(_)) => Exit::Limit,
            Self::Verify(e) if e.is_usage() => Exit::Usage,
            Self::Verify(_) => Exit::Verification,
            Self::Key(_) => Exit::Usage,
            Self::Pipeline(crate::pipeline::PipelineError::Registry(_)) => Exit::Registry,
            Self::Pipeline(_) => Exit::Verification,
            Self::Sign(crate::cosign::SignError::Key(_)) => Exit::Usage,
            Self::Sign(crate::cosign::SignError::Registry(_)) => Exit::Registry,
            Self::Sandbox(SandboxError::Engine(_)) => Exit::Usage,
            Self::Policy(_) => Exit::Usage,
            Self::Denied(_) => Exit::PolicyDenied,
            Self::Audit(e) if e.is_configuration() => Exit::Usage,
            Self::Audit(_) => Exit::Registry,
            Self::State(e) if state_unsafe(e) => Exit::Usage,
            Self::State(_) => Exit::Registry,
        }
    }
}

/// Whether the state is not private to the user (a configuration to fix, exit 2) rather than
/// unwritable.
fn state_unsafe(e: &crate::state::StateError) -> bool {
    use crate::state::StateError;
    matches!(
        e,
        StateError::Path(registry_client::Error::Unsafe { .. }) | StateError::BadKey { .. }
    )
}

/// A part of the state that only saves work: used when it opens, refused when it is not
/// private to the user, and done without (with a warning) when it merely cannot be used.
pub(super) fn saving<T>(
    what: &str,
    opened: Result<T, crate::state::StateError>,
) -> Result<Option<T>, CliError> {
    match opened {
        Ok(part) => Ok(Some(part)),
        Err(e) if state_unsafe(&e) => Err(CliError::State(e)),
        Err(e) => {
            tracing::warn!("{what} unavailable, working without it: {e}");
            Ok(None)
        }
    }
}
