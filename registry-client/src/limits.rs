//! Every bound the registry client enforces, in one place, each with its reason.
//!
//! Tests and fuzzers import these rather than repeating the numbers.
//!
//! INVARIANT (bounded): every size, count, depth and time the client accepts from a registry
//! or a layout is one of these, checked before and while reading.

use std::time::Duration;

/// Largest manifest (or referrers index, or `index.json`) read, in bytes. Manifests are small
/// JSON documents; the cap stops a registry from making us buffer an endless body.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Largest image or artifact config blob read into memory, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Default largest Wasm module or component accepted, in bytes. Configurable per client.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;

/// Deepest JSON nesting accepted in any document read from a registry or layout. OCI
/// documents nest four or five levels; a deeper one is an attack on the parser.
pub const MAX_JSON_DEPTH: usize = 32;

/// Most descriptors accepted in one index (referrers or `index.json`).
pub const MAX_INDEX_ENTRIES: usize = 10_000;

/// Largest `oci-layout` marker file read, in bytes.
pub const MAX_LAYOUT_MARKER_BYTES: u64 = 4096;

/// Default time allowed to establish a TCP (and TLS) connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default longest silence allowed while reading a response.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default total time allowed for one operation (a resolve, a blob fetch, a push), retries
/// included.
pub const DEFAULT_OPERATION_DEADLINE: Duration = Duration::from_secs(300);

/// Default number of attempts for a request answered with 429 or 5xx, or dropped before any
/// body arrived (the first attempt included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;

/// Base delay of the exponential backoff between attempts.
pub const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);

/// Longest single backoff, whatever `Retry-After` asks for.
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);

/// Most HTTP requests one command's client makes (each attempt, retry, redirect hop and token
/// request counts). A verified run's legitimate worst case is about 410: resolve, fetch
/// (config and layer), the `.sig` and `.att` manifests and up to 100 signature and 100
/// attestation blobs, the referrers list and up to 100 bundle referrers with a manifest and a
/// bundle each. Registries that serve blobs from a storage host add one redirect per blob
/// (about 710). The rest is margin for retries; a registry that makes Warrant ask more is
/// refused rather than served until the deadline.
pub const MAX_REQUESTS_PER_RUN: u32 = 1_000;

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;

/// Quarantine files older than this are left-overs of a killed process and are removed when a
/// store is opened. Far longer than any operation deadline, so a live download is never removed.
pub const STALE_QUARANTINE_AGE: Duration = Duration::from_secs(6 * 3600);

/// Longest wait for the store's lock (`.warrant/lock`) before giving up. The lock is held only
/// for one `index.json` read-modify-write (at most 4 MiB and two fsyncs, milliseconds on any
/// disk) or the sweep of the quarantine when a store is opened; a holder past this is stuck or
/// hostile, and waiting for it would hang every pull.
pub const STORE_LOCK_WAIT: Duration = Duration::from_secs(10);
