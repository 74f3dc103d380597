//! What `warrant run` writes to the audit log (the `audits` crate stores and proves it).
//!
//! A run appends, in order: `pull` (reference → digest), `verify` (verdict and trust id),
//! `decide` (every request and its decision, the policy-set hash), then either nothing more
//! (denied) or `instantiate` (the grant) and, after the guest, `outcome`.
//!
//! **Audit before effect**, with one `fdatasync` on the critical path: `pull`, `verify` and
//! `decide` are written without syncing ([`Audit::record`], group commit); the `instantiate`
//! record — or a denial's `decide` record — is written and then everything is committed with
//! one `fdatasync` ([`Audit::record_before_effect`]) before the guest starts or the denial is
//! reported. So the grant, and every record it rests on, is durable before it takes effect.
//! A refused verification is likewise committed before it is reported. The signed checkpoint
//! comes at the end of the run ([`Audit::finish`]: after the `outcome` record, or after the
//! refusal has been reported), off the critical path; until then the newest records are
//! durable but not yet under a signature. It is kept (appended to `checkpoints`) once the log
//! has grown by `audit_keep_every` records (default 1,000) since the last kept one, and
//! otherwise replaces the log's head checkpoint (`head`), so that `audit verify` checks about
//! one signature per 1,000 records, not one per run. Any failure to write refuses the run.
//!
//! Environment variable values are never recorded, only their names.

use std::path::{Path, PathBuf};

use audits::{AuditLog, SigningKeyMaterial};
use registry_client::{PrivateDir, Secrecy};
use serde_json::Value;

/// The checkpoint origin (signed-note key name) of Warrant's audit logs.
pub const ORIGIN: &str = "warrant-audit";
/// How long to wait for another process writing the same log.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// The wasmtime release the sandbox embeds, as recorded.
pub const ENGINE: &str = "wasmtime 48.0.8";

/// Why the audit log cannot be used; the run is refused.
#[derive(Debug, thiserror::Error)]
#[error("audit log `{path}`: {reason}", path = .path.display())]
pub struct AuditFailure {
    path: PathBuf,
    reason: String,
    /// A configuration to fix (exit 2): the log's directory or key is not private to the
    /// user, or the key is missing where one was expected.
    configuration: bool,
}

impl AuditFailure {
    pub(crate) fn new(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.to_string(),
            configuration: false,
        }
    }

    fn state(path: &Path, e: registry_client::Error) -> Self {
        let configuration = matches!(e, registry_client::Error::Unsafe { .. });
        Self {
            path: path.to_owned(),
            reason: e.to_string(),
            configuration,
        }
    }

    /// Whether this is a configuration to fix (exit 2: the log's directory or key is not
    /// private to the user, or no key is where one was expected), not a log to repair.
    pub fn is_configuration(&self) -> bool {
        self.configuration
    }
}

/// An open audit log for this process: held from open to drop, or, when shared
/// ([`Audit::open_shared`]), opened only while a record is written.
pub struct Audit {
    log: Option<AuditLog>,
    path: PathBuf,
    /// Set when shared: the key to reopen the log with, and its keep-every setting.
    shared: Option<(Vec<u8>, Option<u64>)>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("path", &self.path).finish()
    }
}

/// Largest key file read (a PKCS#8 Ed25519 key is 83 bytes).
const MAX_KEY_BYTES: u64 = 4096;

/// The key file's private directory and its name in it.
fn key_place(path: &Path, create: bool) -> Result<(PrivateDir, String), AuditFailure> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(AuditFailure::new(path, "not a key file path"));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = if create {
        PrivateDir::create(parent)
    } else {
        PrivateDir::open(parent)
    }
    .map_err(|e| AuditFailure::state(path, e))?;
    Ok((dir, name.to_owned()))
}

/// The checkpoint key at `path` (PKCS#8, Ed25519): a regular file of the user's, readable by
/// nobody else, in a directory only the user can change. Never created: when it is missing,
/// the log it would check cannot have been written here (`audit verify`, `show`, `prove` and
/// `key` say so rather than invent a key).
pub fn load_key(path: &Path) -> Result<SigningKeyMaterial, AuditFailure> {
    let missing = || AuditFailure {
        configuration: true,
        ..AuditFailure::new(
            path,
            "there is no audit key here; it is created by the first `warrant run` that writes this log (to check a log with its verifier key alone, give `--key FILE`)",
        )
    };
    let (dir, name) = match key_place(path, false) {
        Err(AuditFailure {
            configuration: false,
            ..
        }) => return Err(missing()),
        other => other?,
    };
    let der = dir
        .read(&name, MAX_KEY_BYTES, Secrecy::Secret)
        .map_err(|e| AuditFailure::state(path, e))?
        .ok_or_else(missing)?;
    SigningKeyMaterial::from_pkcs8(&der).map_err(|e| AuditFailure::new(path, e))
}

/// The checkpoint key at `path` (see [`load_key`]), created (mode 0600, in a directory made
/// 0700) when absent: what a run that writes the log uses.
#[cfg(any(test, feature = "internals"))]
pub fn load_or_create_key(path: &Path) -> Result<SigningKeyMaterial, AuditFailure> {
    SigningKeyMaterial::from_pkcs8(&key_der_or_create(path)?)
        .map_err(|e| AuditFailure::new(path, e))
}

/// The PKCS#8 bytes of [`load_or_create_key`]'s key.
fn key_der_or_create(path: &Path) -> Result<Vec<u8>, AuditFailure> {
    use rustix::fs::OFlags;
    use std::io::Write as _;
    let (dir, name) = key_place(path, true)?;
    let read = |dir: &PrivateDir| {
        dir.read(&name, MAX_KEY_BYTES, Secrecy::Secret)
            .map_err(|e| AuditFailure::state(path, e))
    };
    if let Some(der) = read(&dir)? {
        return Ok(der);
    }
    let pkcs8 = SigningKeyMaterial::generate_pkcs8().map_err(|e| AuditFailure::new(path, e))?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
    match dir.open_file(&name, flags, 0o600, Secrecy::Secret) {
        Ok(Some(mut file)) => {
            file.write_all(&pkcs8)
                .and_then(|()| file.sync_all())
                .map_err(|e| AuditFailure::new(path, e))?;
            Ok(pkcs8)
        }
        // Another process made it first: use theirs.
        Err(registry_client::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            read(&dir)?.ok_or_else(|| AuditFailure::new(path, "the key vanished"))
        }
        Ok(None) => Err(AuditFailure::new(path, "the key vanished")),
        Err(e) => Err(AuditFailure::state(path, e)),
    }
}

impl Audit {
    /// Open (creating) the log in `dir`, signing checkpoints with the key at `key_path`
    /// (created on first use). A torn tail from a crash is repaired and recorded.
    pub fn open(dir: &Path, key_path: &Path) -> Result<Self, AuditFailure> {
        // INVARIANT (private state): the log's directory is the user's alone (and so is
        // everything in it, which only the user can create), checked before anything in it is
        // read or written; the audits crate then works inside it by path.
        PrivateDir::create(dir).map_err(|e| AuditFailure::state(dir, e))?;
        let der = key_der_or_create(key_path)?;
        let log = open_log(dir, key_path, &der)?;
        Ok(Self {
            log: Some(log),
            path: dir.to_owned(),
            shared: None,
        })
    }

    /// As [`Audit::open`], for a log several processes write (a node's containerd shims, one
    /// per pod, all alive at once): the log is checked (a torn tail repaired) here, then
    /// opened — its lock taken, waited for up to [`LOCK_WAIT`] — only while a record is
    /// written. Every record is then committed and checkpointed as it is written.
    pub fn open_shared(dir: &Path, key_path: &Path) -> Result<Self, AuditFailure> {
        PrivateDir::create(dir).map_err(|e| AuditFailure::state(dir, e))?;
        let der = key_der_or_create(key_path)?;
        drop(open_log(dir, key_path, &der)?);
        Ok(Self {
            log: None,
            path: dir.to_owned(),
            shared: Some((der, None)),
        })
    }

    /// Run `f` on the log: the held one, or (shared) the log opened for it, committed,
    /// checkpointed and closed after.
    fn with_log(
        &mut self,
        f: impl FnOnce(&mut AuditLog) -> Result<(), audits::AuditError>,
    ) -> Result<(), AuditFailure> {
        if let Some(log) = &mut self.log {
            return f(log).map_err(|e| AuditFailure::new(&self.path, e));
        }
        let Some((der, keep_every)) = &self.shared else {
            return Err(self.fail("the log is not open"));
        };
        let mut log = open_log(&self.path, &self.path, der)?;
        if let Some(records) = keep_every {
            log.set_keep_every(*records);
        }
        let fail = |e| AuditFailure::new(&self.path, e);
        f(&mut log).map_err(fail)?;
        log.commit().map_err(fail)?;
        log.checkpoint().map(|_| ()).map_err(fail)
    }

    fn fail(&self, e: impl std::fmt::Display) -> AuditFailure {
        AuditFailure::new(&self.path, e)
    }

    /// Write a record without syncing it (group commit): it becomes durable with the next
    /// [`Audit::record_before_effect`] or [`Audit::finish`]. Nothing it records may take
    /// effect before then.
    pub fn record(&mut self, kind: &str, body: Value) -> Result<(), AuditFailure> {
        self.with_log(|log| {
            log.append_deferred(kind, body, std::time::SystemTime::now())
                .map(|_| ())
        })
    }

    /// Write a record and commit it with everything written before it, in one `fdatasync`,
    /// before the effect it records.
    pub fn record_before_effect(&mut self, kind: &str, body: Value) -> Result<(), AuditFailure> {
        self.record(kind, body)?;
        self.commit()
    }

    /// Make every record written so far durable (one `fdatasync` if any is pending).
    pub fn commit(&mut self) -> Result<(), AuditFailure> {
        match &mut self.log {
            Some(log) => log
                .commit()
                .map(|_| ())
                .map_err(|e| AuditFailure::new(&self.path, e)),
            // Shared: every record was committed as it was written.
            None => Ok(()),
        }
    }

    /// How many records the log grows by between kept checkpoints (see
    /// [`audits::AuditLog::set_keep_every`]; default [`audits::DEFAULT_KEEP_EVERY`]).
    pub fn set_keep_every(&mut self, records: u64) {
        match (&mut self.log, &mut self.shared) {
            (Some(log), _) => log.set_keep_every(records),
            (None, Some((_, keep_every))) => *keep_every = Some(records),
            (None, None) => {}
        }
    }

    /// At the end of a run: commit what is pending and sign a checkpoint of everything so far
    /// (nothing, if no record was written since the last checkpoint): kept, or the new head
    /// (see [`audits::AuditLog::checkpoint`]).
    pub fn finish(&mut self) -> Result<(), AuditFailure> {
        let Some(log) = &mut self.log else {
            // Shared: every record was checkpointed as it was written.
            return Ok(());
        };
        let signed = log.last_checkpoint().map_or(0, |c| c.size);
        if log.pending() == 0 && log.size() == signed {
            return Ok(());
        }
        log.checkpoint()
            .map(|_| ())
            .map_err(|e| AuditFailure::new(&self.path, e))
    }

    /// `fdatasync` calls made so far through this log (for tests and benchmarks).
    #[cfg(any(test, feature = "internals"))]
    pub fn syncs(&self) -> u64 {
        self.log.as_ref().map_or(0, AuditLog::syncs)
    }

    /// Acknowledged (durable) records in the log.
    #[cfg(any(test, feature = "internals"))]
    pub fn size(&self) -> u64 {
        self.log.as_ref().map_or(0, AuditLog::size)
    }
}

/// Open the log in `dir` with the key `der` (read from `key_path`): one writer at a time,
/// another `warrant` holding the log waited for up to [`LOCK_WAIT`], then refused.
fn open_log(dir: &Path, key_path: &Path, der: &[u8]) -> Result<AuditLog, AuditFailure> {
    let started = std::time::Instant::now();
    let (log, recovery) = loop {
        let key =
            SigningKeyMaterial::from_pkcs8(der).map_err(|e| AuditFailure::new(key_path, e))?;
        match AuditLog::open(dir, ORIGIN, key) {
            Err(audits::AuditError::Locked) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => {
                break other.map_err(|e| AuditFailure::new(dir, e))?;
            }
        }
    };
    if recovery.truncated_bytes > 0 || recovery.truncated_checkpoint_bytes > 0 {
        tracing::warn!(
            dropped = recovery.truncated_bytes,
            "the audit log had a torn tail from an interrupted write; it was cut and recorded"
        );
    }
    Ok(log)
}

/// The signed-note verifier key of `key` (`warrant-audit+<key id>+<base64 key>`), which is all
/// a third party needs to check checkpoints.
#[cfg(any(test, feature = "internals"))]
pub fn verifier_key(key: &SigningKeyMaterial) -> String {
    audits::verifier_key(ORIGIN, &key.public_key())
}

/// The public key in a verifier key string, if it is one for [`ORIGIN`].
pub fn parse_verifier_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let text = text.trim();
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(_id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a verifier key (`name+id+key`)".into());
    };
    if name != ORIGIN {
        return Err(format!("a key for `{name}`, not `{ORIGIN}`"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("key is not base64: {e}"))?;
    let (Some(&1), Some(key)) = (bytes.first(), bytes.get(1..)) else {
        return Err("not an Ed25519 verifier key".into());
    };
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| "an Ed25519 key is 32 bytes".to_owned())?;
    if audits::verifier_key(ORIGIN, &key) != text {
        return Err("the key id does not match the key".into());
    }
    Ok(key)
}

// ---- Reading: `warrant audit show`.

/// A recorded value inside a timeline line: control and bidirectional characters (line
/// breaks included) escaped, so that a record can neither move the terminal nor forge a line.
fn clean(text: &str) -> String {
    registry_client::text::one_line(text).into_owned()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} B")
    }
}

/// The record's time, to the millisecond (`2026-11-24T14:40:01.123Z`).
fn short_time(time: &str) -> String {
    match (time.get(..23), time.len()) {
        (Some(head), 30) => format!("{head}Z"),
        _ => time.to_owned(),
    }
}

/// The salient fields of a record's body, in words (see `warrant audit show`).
pub fn summary(kind: &str, body: &Value) -> String {
    let digest = || str_at(body, &["digest"]).unwrap_or("?").to_owned();
    let text = match kind {
        "pull" => format!(
            "{} → {}",
            str_at(body, &["reference"]).unwrap_or("?"),
            digest()
        ),
        "verify" => {
            let verdict = body.get("verdict");
            let signers = verdict
                .and_then(|v| v.get("signers"))
                .and_then(Value::as_array)
                .map(|s| {
                    list(s.iter().map(|signer| {
                        format!(
                            "{} ({})",
                            str_at(signer, &["identity"]).unwrap_or("?"),
                            str_at(signer, &["issuer"]).unwrap_or("?")
                        )
                    }))
                })
                .unwrap_or_else(|| "-".to_owned());
            let rejected = verdict
                .and_then(|v| v.get("rejected"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            format!(
                "{}; signers: {signers}; {rejected} rejected",
                if body.get("verified") == Some(&Value::Bool(true)) {
                    "verified"
                } else {
                    "REFUSED"
                }
            )
        }
        "decide" => {
            let decisions = body
                .get("decisions")
                .and_then(Value::as_array)
                .map(|ds| {
                    list(ds.iter().map(|d| {
                        let request = d.get("request");
                        let action = request
                            .and_then(|r| r.get("action"))
                            .and_then(Value::as_str)
                            .unwrap_or("?");
                        let resource = request
                            .and_then(|r| r.get("resource"))
                            .and_then(Value::as_str)
                            // `instantiate` is asked of the runtime, `cli`: nothing to say.
                            .filter(|r| !r.is_empty() && action != "instantiate")
                            .map(|r| format!(" {r}"))
                            .unwrap_or_default();
                        let ids = d
                            .get("determining")
                            .and_then(Value::as_array)
                            .map(|ids| {
                                list(ids.iter().filter_map(Value::as_str).map(str::to_owned))
                            })
                            .unwrap_or_else(|| "-".to_owned());
                        let allowed = d.get("allowed") == Some(&Value::Bool(true));
                        format!(
                            "{action}{resource} {} [{ids}]",
                            if allowed { "allow" } else { "deny" }
                        )
                    }))
                })
                .unwrap_or_else(|| "-".to_owned());
            format!(
                "{}: {decisions}",
                if body.get("allowed") == Some(&Value::Bool(true)) {
                    "allowed"
                } else {
                    "DENIED"
                }
            )
        }
        "instantiate" => {
            let limit = |name: &str| body.get("limits").and_then(|l| l.get(name));
            let number = |name: &str| limit(name).and_then(Value::as_u64);
            // `null` when unmetered; 0 is a metered run with no fuel.
            let fuel = match number("fuel") {
                None => "unmetered".to_owned(),
                Some(n) => n.to_string(),
            };
            let dirs = body
                .get("dirs")
                .and_then(Value::as_array)
                .map(|ds| {
                    list(ds.iter().map(|d| {
                        format!(
                            "{}::{}{}",
                            str_at(d, &["host"]).unwrap_or("?"),
                            str_at(d, &["guest"]).unwrap_or("?"),
                            if d.get("writable") == Some(&Value::Bool(true)) {
                                ""
                            } else {
                                ":ro"
                            }
                        )
                    }))
                })
                .unwrap_or_else(|| "-".to_owned());
            let names = |field: &str| {
                body.get(field)
                    .and_then(Value::as_array)
                    .map(|xs| list(xs.iter().filter_map(Value::as_str).map(str::to_owned)))
                    .unwrap_or_else(|| "-".to_owned())
            };
            format!(
                "memory {}, timeout {} ms, fuel {fuel}, output {}; dirs {dirs}; env {}; net {}; {}",
                number("memoryBytes").map_or_else(|| "?".to_owned(), bytes),
                number("timeoutMs").map_or_else(|| "?".to_owned(), |n| n.to_string()),
                number("outputBytes").map_or_else(|| "?".to_owned(), bytes),
                names("env"),
                names("net"),
                str_at(body, &["engine"]).unwrap_or("?"),
            )
        }
        "outcome" => {
            let detail = body.get("detail");
            let how = match str_at(body, &["outcome"]) {
                Some("exit") => format!("exit {}", detail.map_or("?".to_owned(), Value::to_string)),
                Some("limit") => format!(
                    "stopped by its {} limit",
                    detail
                        .and_then(|d| d.get("limit"))
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                ),
                Some("trap") => {
                    format!("trapped: {}", detail.and_then(Value::as_str).unwrap_or("?"))
                }
                _ => "?".to_owned(),
            };
            let micros = body.get("elapsedUs").and_then(Value::as_u64).unwrap_or(0);
            format!("{how} after {:.1} ms", micros as f64 / 1000.0)
        }
        audits::RECOVERED_KIND => format!(
            "a torn tail was cut: {} bytes of records, {} of checkpoints",
            body.get("truncated_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            body.get("truncated_checkpoint_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        ),
        _ => body.to_string(),
    };
    clean(&text)
}

/// One line of `warrant audit show`: index, time, kind, then [`summary`].
pub fn timeline_line(record: &audits::Record) -> String {
    let body = Value::Object(record.body.clone());
    format!(
        "{:>6}  {}  {:<11}  {}",
        record.index,
        short_time(&record.time),
        clean(&record.kind),
        summary(&record.kind, &body)
    )
}

/// Whether a record is about `digest`: its body's `digest` equals it, or (for a bare hex
/// prefix of at least 4 characters, with or without `sha256:`) starts with it.
pub fn about_digest(record: &audits::Record, digest: &str) -> bool {
    let Some(Value::String(theirs)) = record.body.get("digest") else {
        return false;
    };
    if theirs == digest {
        return true;
    }
    let want = digest.strip_prefix("sha256:").unwrap_or(digest);
    want.len() >= 4
        && want.bytes().all(|c| c.is_ascii_hexdigit())
        && theirs
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.starts_with(&want.to_ascii_lowercase()))
}

/// `--since`: a duration back from `now` (`90s`, `30m`, `1h`, `7d`, `500ms`) or an RFC 3339
/// time (`2026-11-24T14:00:00Z`, `2026-11-24T15:00:00.5+01:00`).
pub fn parse_since(
    text: &str,
    now: std::time::SystemTime,
) -> Result<std::time::SystemTime, String> {
    let text = text.trim();
    let back = if let Some(days) = text.strip_suffix('d').and_then(|n| n.parse::<u64>().ok()) {
        Some(std::time::Duration::from_secs(days.saturating_mul(86_400)))
    } else if text.bytes().next().is_some_and(|c| c.is_ascii_digit()) && !text.contains('-') {
        Some(crate::config::parse_duration(text).map_err(|e| e.to_string())?)
    } else {
        None
    };
    if let Some(back) = back {
        return now
            .checked_sub(back)
            .ok_or_else(|| format!("`{text}` reaches before 1970"));
    }
    parse_rfc3339(text)
        .ok_or_else(|| format!("`{text}` is neither a duration (30m, 1h, 7d) nor an RFC 3339 time"))
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (`T`/`Z` in either case).
fn parse_rfc3339(text: &str) -> Option<std::time::SystemTime> {
    use std::time::Duration;
    let b = text.as_bytes();
    let (date_time, rest) = (text.get(..19)?, text.get(19..)?);
    if !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    // Validate the calendar fields through the log's own strict parser.
    let base = audits::parse_time(&format!(
        "{}T{}.000000000Z",
        date_time.get(..10)?,
        date_time.get(11..)?
    ))?;
    let (fraction, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let (f, z) = r.split_at(digits);
            (format!("{f:0<9}").parse::<u32>().ok()?, z)
        }
        None => (0, rest),
    };
    let utc = base.checked_add(Duration::from_nanos(u64::from(fraction)))?;
    match zone {
        "Z" | "z" => Some(utc),
        _ => {
            let (sign, hm) = (zone.get(..1)?, zone.get(1..)?);
            let (h, m) = hm.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = Duration::from_secs(h * 3600 + m * 60);
            // Local time = UTC + offset, so UTC = local − offset.
            match sign {
                "+" => utc.checked_sub(offset),
                "-" => utc.checked_add(offset),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn since_takes_durations_and_rfc3339() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ago = |s: u64| Ok(now - Duration::from_secs(s));
        assert_eq!(parse_since("30m", now), ago(1800));
        assert_eq!(parse_since("1h", now), ago(3600));
        assert_eq!(parse_since("7d", now), ago(7 * 86_400));
        assert_eq!(parse_since("45", now), ago(45));
        let t = |s: &str| parse_since(s, now);
        let at = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        assert_eq!(t("2025-11-24T16:00:00Z"), Ok(at));
        assert_eq!(t("2025-11-24t16:00:00z"), Ok(at));
        assert_eq!(t("2025-11-24T17:00:00+01:00"), Ok(at));
        assert_eq!(t("2025-11-24T15:30:00-00:30"), Ok(at));
        assert_eq!(
            t("2025-11-24T16:00:00.25Z"),
            Ok(at + Duration::from_millis(250))
        );
        for bad in [
            "",
            "yesterday",
            "2025-11-24",
            "2025-11-24T16:00:00",
            "2025-11-24T16:00:00+1:00",
            "2025-02-30T16:00:00Z",
            "2025-11-24T16:00:00.Z",
            "2025-11-24T16:00:00.1234567890Z",
            "2025-11-24 16:00:00Z",
            "1h30",
            "-1h",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_filter_takes_a_digest_or_a_hex_prefix() {
        let record = audits::Record {
            index: 0,
            time: "2026-01-01T00:00:00.000000000Z".into(),
            kind: "pull".into(),
            body: json!({"digest": "sha256:abcdef0123"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        for yes in ["sha256:abcdef0123", "abcd", "sha256:ABCDEF", "abcdef0123"] {
            assert!(about_digest(&record, yes), "{yes}");
        }
        for no in ["abc", "sha256:abcdef0124", "bcde", "sha512:abcd", "zzzz"] {
            assert!(!about_digest(&record, no), "{no}");
        }
    }

    #[test]
    fn timeline_lines_escape_control_characters() {
        let line = summary(
            "pull",
            &json!({"reference": "evil\u{1b}[2J", "digest": "sha256:00"}),
        );
        assert_eq!(line, "evil\\u{1b}[2J → sha256:00");
        // Unknown kinds and odd bodies print without panicking.
        assert_eq!(summary("custom", &json!({"a": [1]})), r#"{"a":[1]}"#);
        for kind in ["verify", "decide", "instantiate", "outcome", "recovered"] {
            let _ = summary(kind, &json!({"verdict": 3, "decisions": {}, "limits": []}));
        }
    }
}
