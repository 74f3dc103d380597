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
    /// The artifact is not what its verified manifest says.
    #[error("{0}")]
    Integrity(String),
    #[error("{0}")]
    Internal(String),
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
            Self::State(e) if crate::stages::state_unsafe(e) => Exit::Usage,
            Self::State(_) | Self::Internal(_) => Exit::Registry,
            Self::Integrity(_) => Exit::Verification,
        }
    }
}

/// A part of the state that only saves work ([`crate::stages::saving`]).
pub(super) fn saving<T>(
    what: &str,
    opened: Result<T, crate::state::StateError>,
) -> Result<Option<T>, CliError> {
    Ok(crate::stages::saving(what, opened)?)
}

/// The broker's refusals and failures, each as the kind the command line maps to its exit code.
impl From<crate::Error> for CliError {
    fn from(e: crate::Error) -> Self {
        use crate::Error;
        match e {
            Error::Registry(e) => Self::Registry(e),
            Error::Verification(e) => Self::Pipeline(e),
            Error::StoreCorrupt {
                path,
                expected,
                actual,
            } => Self::StoreCorrupt {
                path,
                expected,
                actual,
            },
            e @ (Error::KindMismatch { .. } | Error::Malformed { .. }) => {
                Self::Integrity(e.to_string())
            }
            Error::Input { path, source } => Self::Input { path, source },
            Error::Key(e) => Self::Key(e),
            Error::Policy(e) => Self::Policy(e),
            Error::Denied(denial) => Self::Denied(denial),
            Error::Sandbox(e) => Self::Sandbox(e),
            Error::Audit(e) => Self::Audit(e),
            Error::State(e) => Self::State(e),
            e @ Error::Poisoned(_) => Self::Internal(e.to_string()),
        }
    }
}
