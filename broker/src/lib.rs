//! Warrant: no capability without a warrant.
//!
//! A [`Broker`] is the one path from a reference to a running WebAssembly guest: it resolves
//! the reference to a digest, verifies that digest's signatures against a [`Trust`], fetches
//! exactly that digest, asks Cedar policies for what the run needs, and prepares the guest
//! with exactly the granted handles, recording every step in a tamper-evident audit log.
//! Each stage takes the previous stage's output, which only the stage can make.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use broker::{Asks, Broker, Config, Outcome, Trust};
//!
//! # let data = tempfile::tempdir()?;
//! # let data_dir = data.path().join("warrant");
//! let trust = Trust::from_key_files(&["../examples/hello/example-signer.pub"])?;
//! let mut config = Config::new(data_dir, trust);
//! config.policies = Some("../examples/hello/policies".into());
//! let broker = Broker::open(config)?;
//!
//! let reference = "oci-layout:../examples/hello/layout".parse()?;
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let artifact = runtime.block_on(async {
//!     let resolution = broker.resolve(&reference).await?;
//!     let verified = broker.verify(resolution).await?;
//!     broker.fetch(verified).await
//! })?;
//! let asks = Asks { memory_bytes: 64 << 20, timeout_ms: 5_000, ..Asks::default() };
//! let plugin = broker.prepare(broker.decide(artifact, &asks, false)?)?;
//!
//! let finished = plugin.run(&[])?;
//! assert_eq!(finished.outcome, Outcome::Exited(0));
//! assert_eq!(finished.stdout, b"hello from a warrant guest\n");
//! broker.checkpoint()?;
//! # Ok(())
//! # }
//! ```
//!
//! Outside the library no one can make a stage's output without the stage before it:
//!
//! ```compile_fail,E0451
//! // verified facts (from a resolution that was never verified),
//! fn forge(resolution: broker::Resolution) -> broker::Verified {
//!     broker::Verified { resolution }
//! }
//! ```
//!
//! ```compile_fail,E0451
//! // a grant,
//! fn forge(digest: broker::Digest) -> broker::Grant {
//!     broker::Grant { digest, policy_hash: String::new(), memory_bytes: 1 << 20,
//!         timeout_ms: 1000, fuel: None, dirs: Vec::new(), env: Vec::new(),
//!         net: Vec::new(), decisions: Vec::new() }
//! }
//! ```
//!
//! ```compile_fail,E0308
//! // or a prepared guest from an artifact no policy decided on.
//! fn skip(broker: &broker::Broker, artifact: broker::Artifact) {
//!     let _ = broker.prepare(artifact);
//! }
//! ```
//!
//! What widens authority or skips a check is under [`danger`]. The `warrant` command line is
//! one client of this library. See `ARCHITECTURE.md` for the code map and invariants.

// The crate's modules: private, unless the `internals` feature (this workspace's tests,
// benchmarks and fuzzers; never the shipped binary) makes them public. Declared twice, not by a
// macro, so that rustfmt reaches every file.
#[cfg(feature = "internals")]
pub mod attest;
#[cfg(not(feature = "internals"))]
mod attest;
#[cfg(feature = "internals")]
pub mod audit;
#[cfg(not(feature = "internals"))]
mod audit;
#[cfg(feature = "internals")]
pub mod cache;
#[cfg(not(feature = "internals"))]
mod cache;
#[cfg(feature = "internals")]
pub mod cli;
#[cfg(not(feature = "internals"))]
mod cli;
#[cfg(feature = "internals")]
pub mod compiled;
#[cfg(not(feature = "internals"))]
mod compiled;
#[cfg(feature = "internals")]
pub mod config;
#[cfg(not(feature = "internals"))]
mod config;
#[cfg(feature = "internals")]
pub mod cosign;
#[cfg(not(feature = "internals"))]
mod cosign;
#[cfg(feature = "internals")]
pub mod exit;
#[cfg(not(feature = "internals"))]
mod exit;
#[cfg(feature = "internals")]
pub mod keys;
#[cfg(not(feature = "internals"))]
mod keys;
#[cfg(feature = "internals")]
pub mod pipeline;
#[cfg(not(feature = "internals"))]
mod pipeline;
#[cfg(feature = "internals")]
pub mod pod;
#[cfg(not(feature = "internals"))]
mod pod;
#[cfg(feature = "internals")]
pub mod policy;
#[cfg(not(feature = "internals"))]
mod policy;
#[cfg(feature = "internals")]
pub mod policy_tests;
#[cfg(not(feature = "internals"))]
mod policy_tests;
#[cfg(feature = "internals")]
pub mod progress;
#[cfg(not(feature = "internals"))]
mod progress;
#[cfg(feature = "internals")]
pub mod records;
#[cfg(not(feature = "internals"))]
mod records;
#[cfg(feature = "internals")]
pub mod referrers;
#[cfg(not(feature = "internals"))]
mod referrers;
#[cfg(feature = "internals")]
pub mod rejection;
#[cfg(not(feature = "internals"))]
mod rejection;
#[cfg(feature = "internals")]
pub mod sandbox;
#[cfg(not(feature = "internals"))]
mod sandbox;
#[cfg(feature = "internals")]
pub mod serve;
#[cfg(not(feature = "internals"))]
mod serve;
#[cfg(feature = "internals")]
pub mod stages;
#[cfg(not(feature = "internals"))]
mod stages;
#[cfg(feature = "internals")]
pub mod state;
#[cfg(not(feature = "internals"))]
mod state;
#[cfg(feature = "internals")]
pub mod uses;
#[cfg(not(feature = "internals"))]
mod uses;
#[cfg(feature = "internals")]
pub mod verify;
#[cfg(not(feature = "internals"))]
mod verify;

pub use cli::main as cli_main;
pub use exit::Exit;
pub use pod::{AdmittedPod, ContentSource, Node, PodError, PodSpec, exit_status};
pub use policy::{Asks, Decision, Denial, DirAsk, EnvValue, Grant, Request, Runtime};
pub use registry_client::{ClientOptions, Digest, NoProgress, Progress, Reference, WasmKind};
pub use rejection::Rejection;
pub use sandbox::{Finished, Limit, Outcome, Output, RunLimits, Stop};
pub use stages::{
    Artifact, Broker, Config, Error, Granted, Prepared, PreparedHttp, Resolution, Verified, limits,
    terminal_text,
};
pub use verify::{Identity, Signer, SignerKind, Trust};

/// What widens authority or skips a check: use only where the check is made otherwise.
pub mod danger {
    /// Runs WebAssembly bytes as given, with the handles given: no verification, no policy, no
    /// audit record. For guests the host itself built and trusts (and for this workspace's
    /// tests and benchmarks); a [`crate::Broker`] is the path for anything else.
    pub use crate::sandbox::{Handles, Sandbox, SandboxError};
}
