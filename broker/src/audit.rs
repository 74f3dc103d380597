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
//! durable but not yet under a signature. Any failure to write refuses the run.
//!
//! Environment variable values are never recorded, only their names.

use std::path::{Path, PathBuf};

use audits::{AuditLog, SigningKeyMaterial};
use serde_json::{Value, json};

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
}

/// An open audit log for this process.
pub struct Audit {
    log: AuditLog,
    path: PathBuf,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("path", &self.path).finish()
    }
}

/// The checkpoint key at `path` (PKCS#8, Ed25519), created (mode 0600) when absent.
pub fn load_or_create_key(path: &Path) -> Result<SigningKeyMaterial, AuditFailure> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |reason: String| AuditFailure {
        path: path.to_owned(),
        reason,
    };
    if !path.exists() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
        }
        let pkcs8 = SigningKeyMaterial::generate_pkcs8().map_err(|e| fail(e.to_string()))?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => file
                .write_all(&pkcs8)
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?,
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    SigningKeyMaterial::load_pkcs8_file(path).map_err(|e| fail(e.to_string()))
}

impl Audit {
    /// Open (creating) the log in `dir`, signing checkpoints with the key at `key_path`
    /// (created on first use). A torn tail from a crash is repaired and recorded.
    pub fn open(dir: &Path, key_path: &Path) -> Result<Self, AuditFailure> {
        // One writer at a time: another `warrant` holding the log is waited for, up to
        // `LOCK_WAIT`, then refused.
        let started = std::time::Instant::now();
        let (log, recovery) = loop {
            match AuditLog::open(dir, ORIGIN, load_or_create_key(key_path)?) {
                Err(audits::AuditError::Locked) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => {
                    break other.map_err(|e| AuditFailure {
                        path: dir.to_owned(),
                        reason: e.to_string(),
                    })?;
                }
            }
        };
        if recovery.truncated_bytes > 0 || recovery.truncated_checkpoint_bytes > 0 {
            tracing::warn!(
                dropped = recovery.truncated_bytes,
                "the audit log had a torn tail from an interrupted write; it was cut and recorded"
            );
        }
        Ok(Self {
            log,
            path: dir.to_owned(),
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> AuditFailure {
        AuditFailure {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Write a record without syncing it (group commit): it becomes durable with the next
    /// [`Audit::record_before_effect`] or [`Audit::finish`]. Nothing it records may take
    /// effect before then.
    pub fn record(&mut self, kind: &str, body: Value) -> Result<(), AuditFailure> {
        self.log
            .append_deferred(kind, body, std::time::SystemTime::now())
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Write a record and commit it with everything written before it, in one `fdatasync`,
    /// before the effect it records.
    pub fn record_before_effect(&mut self, kind: &str, body: Value) -> Result<(), AuditFailure> {
        self.record(kind, body)?;
        self.commit()
    }

    /// Make every record written so far durable (one `fdatasync` if any is pending).
    pub fn commit(&mut self) -> Result<(), AuditFailure> {
        self.log.commit().map(|_| ()).map_err(|e| self.fail(e))
    }

    /// At the end of a run: commit what is pending and sign a checkpoint of everything so far.
    pub fn finish(&mut self) -> Result<(), AuditFailure> {
        self.log.checkpoint().map(|_| ()).map_err(|e| self.fail(e))
    }

    /// `fdatasync` calls made so far through this log (for tests and benchmarks).
    pub fn syncs(&self) -> u64 {
        self.log.syncs()
    }

    /// Acknowledged (durable) records in the log.
    pub fn size(&self) -> u64 {
        self.log.size()
    }
}

/// The `instantiate` record's body: the grant, limits and engine, env values left out.
pub fn instantiate_body(grant: &crate::policy::Grant, output_bytes: u64) -> Value {
    json!({
        "digest": grant.digest().to_string(),
        "policyHash": grant.policy_hash(),
        "limits": {
            "memoryBytes": grant.memory_bytes(),
            "timeoutMs": u64::try_from(grant.timeout().as_millis()).unwrap_or(u64::MAX),
            "fuel": grant.fuel(),
            "outputBytes": output_bytes,
        },
        "dirs": grant.dirs(),
        "env": grant.env().iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        "net": grant.net(),
        "engine": ENGINE,
    })
}

/// The signed-note verifier key of `key` (`warrant-audit+<key id>+<base64 key>`), which is all
/// a third party needs to check checkpoints.
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
