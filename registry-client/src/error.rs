//! The registry client's one error type.
//!
//! Messages are lowercase, put the offending input in backticks and name what failed (which
//! digest, which limit, which media type). Errors caused by what a registry or layout sent are
//! kept apart from local I/O failures so a caller can tell an attack from a full disk.

use std::path::PathBuf;
use std::time::Duration;

use crate::digest::Digest;

/// Everything that can go wrong resolving, fetching, storing or pushing an artifact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reference could not be parsed.
    #[error("invalid reference `{input}`: {reason}")]
    InvalidReference {
        /// The reference as given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// A digest string was not `sha256:` and 64 lowercase hex characters.
    #[error("invalid digest `{input}`: {reason}")]
    InvalidDigest {
        /// The digest as given (truncated).
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// Content did not hash to the digest it was fetched under.
    #[error("digest mismatch for {what}: expected `{expected}`, got `{actual}`")]
    DigestMismatch {
        /// What was being fetched.
        what: String,
        /// The digest we asked for (or resolved to).
        expected: Digest,
        /// The digest of the bytes we received.
        actual: Digest,
    },

    /// The registry's `Docker-Content-Digest` header disagreed with the bytes it sent.
    #[error(
        "registry `{registry}` claims {what} has digest `{claimed}`, but its bytes hash to `{actual}`"
    )]
    LyingDigestHeader {
        /// The registry host.
        registry: String,
        /// What was being fetched.
        what: String,
        /// The digest in the header.
        claimed: String,
        /// The digest of the bytes.
        actual: Digest,
    },

    /// Content exceeded a size limit; reading stopped at the limit.
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },

    /// Content ended at a different length than its descriptor declared.
    #[error("{what} is {actual} bytes but its descriptor declares {declared}")]
    SizeMismatch {
        /// What was being read.
        what: String,
        /// The size in the descriptor.
        declared: u64,
        /// The size received.
        actual: u64,
    },

    /// A manifest, config or layer had a media type Warrant does not accept.
    #[error("unsupported media type `{media_type}` for {what}: {expected}")]
    UnsupportedMediaType {
        /// Which part of the artifact.
        what: String,
        /// The media type found.
        media_type: String,
        /// What would have been accepted.
        expected: String,
    },

    /// A document was not the shape its media type promises.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which document.
        what: String,
        /// The parser's or validator's reason.
        reason: String,
    },

    /// The registry or layout has no such tag, manifest or blob.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },

    /// The registry answered with an unexpected HTTP status.
    #[error("registry `{registry}` answered HTTP {status} for {what}{}", detail_suffix(.detail))]
    Status {
        /// The registry host.
        registry: String,
        /// What was requested.
        what: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's error message, if it sent one (truncated).
        detail: String,
    },

    /// The registry refused our credentials, or demanded credentials we do not have.
    #[error("authentication to `{registry}` failed: {reason}")]
    Auth {
        /// The registry host.
        registry: String,
        /// Why.
        reason: String,
    },

    /// An operation, a connection or a read did not finish in time.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What was in progress.
        what: String,
        /// The limit that expired.
        after: Duration,
    },

    /// One command's client would have made more registry requests than its budget allows
    /// ([`crate::RegistryClient::budgeted`]); nothing more was sent.
    #[error("more than {limit} registry requests in one command: refused")]
    TooManyRequests {
        /// The most requests allowed.
        limit: u32,
    },

    /// Another process held the store's lock for longer than Warrant waits.
    #[error(
        "the store lock `{path}` is held by another process; gave up after {waited:?}",
        path = .path.display()
    )]
    StoreLocked {
        /// The lock file.
        path: PathBuf,
        /// How long Warrant waited.
        waited: Duration,
    },

    /// A redirect was refused (to another host for a non-blob request, to plain HTTP, or too
    /// many hops).
    #[error("refused redirect from `{from}`: {reason}")]
    Redirect {
        /// The URL that redirected.
        from: String,
        /// Why the redirect was refused.
        reason: String,
    },

    /// The connection failed or was cut, and retries were exhausted.
    #[error("network error talking to `{registry}` ({what}): {reason}")]
    Network {
        /// The registry host.
        registry: String,
        /// What was in progress.
        what: String,
        /// The transport's reason.
        reason: String,
    },

    /// A local file operation on the store or a layout directory failed.
    #[error("i/o error on `{path}`: {source}", path = .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// A directory or file that must be the running user's alone is not: a symbolic link, not
    /// the kind expected, owned by someone else, or writable (or, for a secret, readable) by
    /// group or others. Also a store directory Warrant writes into (`blobs`, `blobs/sha256`)
    /// that is a symbolic link. Nothing in it was used.
    #[error("refusing `{path}`: {reason}", path = .path.display())]
    Unsafe {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The local credentials file could not be read.
    #[error("cannot use credentials file `{path}`: {reason}", path = .path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the failure is local (disk, permissions) rather than caused by what a
    /// registry or layout sent.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            Self::Io { .. }
                | Self::Credentials { .. }
                | Self::Unsafe { .. }
                | Self::StoreLocked { .. }
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
