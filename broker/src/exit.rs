//! The documented exit codes of `warrant`.

use std::process::ExitCode;

/// Why `warrant` stopped, mapped to its documented exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The command succeeded (for `run`: the guest exited 0).
    Success,
    /// The guest exited with this status (0–120).
    Guest(u8),
    /// Registry, network or store error: 121.
    Registry,
    /// Verification failed: 122.
    Verification,
    /// Policy denied: 123.
    PolicyDenied,
    /// The guest was stopped by a limit (deadline, fuel, memory, output): 124.
    Limit,
    /// The guest trapped: 125.
    Trap,
    /// Usage or configuration error: 2.
    Usage,
}

/// Largest guest exit status passed through; 121–125 are Warrant's own.
pub const MAX_GUEST_STATUS: u8 = 120;

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Guest(status) => status,
            Self::Registry => 121,
            Self::Verification => 122,
            Self::PolicyDenied => 123,
            Self::Limit => 124,
            Self::Trap => 125,
            Self::Usage => 2,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}
