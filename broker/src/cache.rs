//! The verdict cache: a verdict in which at least one signature verified, remembered on disk for
//! one (repository, manifest digest, [`Trust::id`]) triple, so that a later `run` of the same
//! artifact from the same place under the same trust skips signature discovery and
//! verification. The repository is part of the key because signatures are found beside the
//! artifact: the same digest elsewhere may have none, and a hit must never answer differently
//! from fresh verification.
//!
//! A cache on disk is only as trustworthy as whoever can write it. Each entry is therefore
//! authenticated with HMAC-SHA256 under a 32-byte secret created on first use (`key`, mode
//! 0600, beside the entries); an entry whose MAC does not verify, whose digest or trust is not
//! the one asked for, or which is older than the time-to-live is a miss, never an error, and
//! the artifact is verified afresh. Only positive verdicts are cached: a rejection is always
//! re-examined. Entries are written whole (temporary file, then rename).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use registry_client::Digest;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::attest::Attestations;
use crate::cosign::Verdict;
use crate::verify::Trust;

/// Largest entry read.
const MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// Entries dated further in the future than this are misses (clock skew, or forgery).
const MAX_FUTURE: Duration = Duration::from_secs(60);
/// The entry format.
const FORMAT: u32 = 1;

/// Why the cache could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("verdict cache `{path}`: {reason}", path = .path.display())]
pub struct CacheError {
    path: PathBuf,
    reason: String,
}

fn error(path: &Path, reason: impl std::fmt::Display) -> CacheError {
    CacheError {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Authenticated verdicts in a directory.
pub struct VerdictCache {
    dir: PathBuf,
    key: hmac::Key,
    ttl: Duration,
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("dir", &self.dir)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A cached verdict, as stored.
#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    repository: String,
    digest: Digest,
    trust: String,
    verified_at: u64,
    verdict: Verdict,
    attestations: Attestations,
}

impl VerdictCache {
    /// Open (creating) the cache in `dir`; entries older than `ttl` are misses.
    pub fn open(dir: &Path, ttl: Duration) -> Result<Self, CacheError> {
        Ok(Self {
            dir: dir.to_owned(),
            key: open_keyed(dir)?,
            ttl,
        })
    }

    fn path(&self, repository: &str, digest: &Digest, trust: &Trust) -> PathBuf {
        let key = Sha256::digest(format!("{repository}\n{digest}\n{}", trust.id()).as_bytes());
        self.dir.join(hex::encode(key))
    }

    /// The verdict cached for `digest` in `repository` under `trust`, if there is a valid,
    /// fresh one.
    pub fn get(
        &self,
        repository: &str,
        digest: &Digest,
        trust: &Trust,
    ) -> Option<(Verdict, Attestations)> {
        let path = self.path(repository, digest, trust);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .ok()?
            .take(MAX_ENTRY_BYTES.saturating_add(1))
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return None;
        }
        let newline = bytes.iter().position(|&b| b == b'\n')?;
        let (body, rest) = bytes.split_at(newline);
        let mac = hex::decode(rest.get(1..)?.trim_ascii()).ok()?;
        if hmac::verify(&self.key, body, &mac).is_err() {
            tracing::warn!(path = %path.display(), "verdict cache entry fails its MAC; ignored");
            return None;
        }
        let entry: Entry = serde_json::from_slice(body).ok()?;
        let now = unix_now();
        let fresh = entry.verified_at <= now.saturating_add(MAX_FUTURE.as_secs())
            && now.saturating_sub(entry.verified_at) < self.ttl.as_secs();
        let same = entry.format == FORMAT
            && entry.repository == repository
            && &entry.digest == digest
            && entry.trust == trust.id()
            && entry.verdict.digest == *digest
            && !entry.verdict.signers.is_empty();
        (fresh && same).then_some((entry.verdict, entry.attestations))
    }

    /// Remember a verdict for `repository` with at least one signer (others are not cached).
    pub fn put(
        &self,
        repository: &str,
        trust: &Trust,
        verdict: &Verdict,
        attestations: &Attestations,
    ) -> Result<(), CacheError> {
        if verdict.signers.is_empty() || self.ttl.is_zero() {
            return Ok(());
        }
        let entry = Entry {
            format: FORMAT,
            repository: repository.to_owned(),
            digest: verdict.digest.clone(),
            trust: trust.id().to_owned(),
            verified_at: unix_now(),
            verdict: verdict.clone(),
            attestations: attestations.clone(),
        };
        let path = self.path(repository, &verdict.digest, trust);
        let mut body = serde_json::to_vec(&entry).map_err(|e| error(&path, e))?;
        let tag = hmac::sign(&self.key, &body);
        body.push(b'\n');
        body.extend_from_slice(hex::encode(tag.as_ref()).as_bytes());
        body.push(b'\n');
        let mut temp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| error(&path, e))?;
        temp.write_all(&body).map_err(|e| error(&path, e))?;
        temp.persist(&path).map_err(|e| error(&path, e.error))?;
        Ok(())
    }
}

/// What policies concluded before, for exactly the same inputs, so that a later run can skip
/// the work: policy sets that passed strict validation (by
/// [`crate::policy::validation_key`]: `<key>.valid`), and runs whose every request was allowed
/// (by [`crate::policy::decision_key`]: `<key>.run`, the decisions cited). Authenticated like
/// verdicts, under a secret of its own (`key`, 0600): each entry carries an HMAC-SHA256 of a
/// tag for its kind, its key and its body, so write access to the directory can neither make
/// an unvalidated set pass nor grant a run anything; anything wrong is a miss, and the work is
/// done afresh. Entries do not expire: both are functions of their keys' inputs.
pub struct PolicyMemo {
    dir: PathBuf,
    key: hmac::Key,
}

impl PolicyMemo {
    /// Open (creating) the memo in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        Ok(Self {
            dir: dir.to_owned(),
            key: open_keyed(dir)?,
        })
    }

    fn path(&self, kind: &str, key: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.{kind}", hex::encode(key)))
    }

    /// What an entry's MAC covers: its kind, its key and its body.
    fn signed(kind: &str, key: &[u8; 32], body: &str) -> Vec<u8> {
        [kind.as_bytes(), &[0], key, body.as_bytes()].concat()
    }

    /// The body of the `kind` entry for `key`, if its MAC verifies. An entry is its body's
    /// line, then the MAC's.
    fn read(&self, kind: &str, key: &[u8; 32]) -> Option<String> {
        let mut text = String::new();
        std::fs::File::open(self.path(kind, key))
            .ok()?
            .take(MAX_ENTRY_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        let (body, mac) = text.trim_end_matches('\n').rsplit_once('\n')?;
        let mac = hex::decode(mac).ok()?;
        hmac::verify(&self.key, &Self::signed(kind, key, body), &mac).ok()?;
        Some(body.to_owned())
    }

    fn write(&self, kind: &str, key: &[u8; 32], body: &str) {
        let path = self.path(kind, key);
        let tag = hmac::sign(&self.key, &Self::signed(kind, key, body));
        let written = tempfile::NamedTempFile::new_in(&self.dir).and_then(|mut temp| {
            temp.write_all(format!("{body}\n{}\n", hex::encode(tag.as_ref())).as_bytes())?;
            temp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        });
        // Only a saving: what is not remembered is worked out again next time.
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), error = %e, "not remembered");
        }
    }
}

impl crate::policy::ValidationMemo for PolicyMemo {
    fn vouches(&self, key: &[u8; 32]) -> bool {
        self.read("valid", key).is_some_and(|body| body == "valid")
    }

    fn remember(&self, key: &[u8; 32]) {
        self.write("valid", key, "valid");
    }
}

impl crate::policy::DecisionMemo for PolicyMemo {
    fn recall(&self, key: &[u8; 32]) -> Option<String> {
        self.read("run", key)
    }

    fn remember(&self, key: &[u8; 32], body: &str) {
        // One line per entry: a body with a newline is not remembered.
        if !body.contains('\n') {
            self.write("run", key, body);
        }
    }
}

/// Creates `dir` (0700) if needed, and its MAC key `dir/key` (32 random bytes, 0600).
fn open_keyed(dir: &Path) -> Result<hmac::Key, CacheError> {
    create_private_dir(dir)?;
    let key_path = dir.join("key");
    let secret = match read_key(&key_path)? {
        Some(secret) => secret,
        None => create_key(&key_path)?,
    };
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &secret))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn create_private_dir(dir: &Path) -> Result<(), CacheError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| error(dir, e))
}

fn read_key(path: &Path) -> Result<Option<Vec<u8>>, CacheError> {
    match std::fs::read(path) {
        Ok(secret) if secret.len() == 32 => Ok(Some(secret)),
        Ok(secret) => Err(error(
            path,
            format!("the key is {} bytes, expected 32", secret.len()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(error(path, e)),
    }
}

fn create_key(path: &Path) -> Result<Vec<u8>, CacheError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut secret = vec![0_u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| error(path, "no randomness for the key"))?;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            file.write_all(&secret)
                .and_then(|()| file.sync_all())
                .map_err(|e| error(path, e))?;
            Ok(secret)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(path)?.ok_or_else(|| error(path, "the key vanished"))
        }
        Err(e) => Err(error(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Signer, Trust};

    /// A remembered key is vouched for; a key never remembered, an entry copied to another
    /// key's name, an edited entry, and an entry made under another secret are not.
    #[test]
    fn validated_policies_vouch_only_for_what_they_remembered() {
        use crate::policy::{DecisionMemo, ValidationMemo};
        let dir = tempfile::tempdir().unwrap();
        let memo = PolicyMemo::open(dir.path()).unwrap();
        let (a, b) = ([1_u8; 32], [2_u8; 32]);
        assert!(!memo.vouches(&a));
        ValidationMemo::remember(&memo, &a);
        assert!(memo.vouches(&a));
        assert!(!memo.vouches(&b));
        // Copying a's entry to b's name does not make b valid: the MAC covers the key.
        std::fs::copy(memo.path("valid", &a), memo.path("valid", &b)).unwrap();
        assert!(!memo.vouches(&b));
        // An edited entry is not vouched for.
        let entry = std::fs::read_to_string(memo.path("valid", &a)).unwrap();
        let edited = entry.replacen(
            &entry[..1],
            if entry.starts_with('0') { "1" } else { "0" },
            1,
        );
        std::fs::write(memo.path("valid", &a), edited).unwrap();
        assert!(!memo.vouches(&a));
        // An entry made under another secret is not either.
        let other_dir = tempfile::tempdir().unwrap();
        let other = PolicyMemo::open(other_dir.path()).unwrap();
        ValidationMemo::remember(&other, &a);
        std::fs::copy(other.path("valid", &a), memo.path("valid", &a)).unwrap();
        assert!(!memo.vouches(&a));
        // A run entry is not a validation entry, nor the other way round.
        let c = [3_u8; 32];
        ValidationMemo::remember(&memo, &c);
        std::fs::copy(memo.path("valid", &c), memo.path("run", &c)).unwrap();
        assert_eq!(memo.recall(&c), None);
        DecisionMemo::remember(&memo, &c, "valid");
        assert_eq!(memo.recall(&c).as_deref(), Some("valid"));
        std::fs::copy(memo.path("run", &c), memo.path("valid", &b)).unwrap();
        assert!(!memo.vouches(&b));
        // A run entry's body is covered too.
        DecisionMemo::remember(&memo, &b, r#"{"determining":[["p"]]}"#);
        let entry = std::fs::read_to_string(memo.path("run", &b)).unwrap();
        std::fs::write(memo.path("run", &b), entry.replace("\"p\"", "\"q\"")).unwrap();
        assert_eq!(memo.recall(&b), None);
        // The secret is private.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    const REPO: &str = "registry.example/plugins/a";

    fn verdict(digest: &Digest) -> Verdict {
        Verdict {
            digest: digest.clone(),
            signers: vec![Signer::key("sha256:k".into())],
            rejected: Vec::new(),
        }
    }

    fn trust() -> Trust {
        let key = crate::keys::SigningKey::generate().unwrap().public_key();
        Trust::keys(&[key]).unwrap()
    }

    #[test]
    fn a_put_verdict_is_got_back_for_the_same_digest_and_trust_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = VerdictCache::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let (trust, other_trust) = (trust(), trust());
        let digest = Digest::of(b"artifact");
        assert!(cache.get(REPO, &digest, &trust).is_none());
        cache
            .put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        let (got, _) = cache.get(REPO, &digest, &trust).unwrap();
        assert_eq!(got.signers, verdict(&digest).signers);
        assert!(cache.get(REPO, &Digest::of(b"other"), &trust).is_none());
        assert!(cache.get(REPO, &digest, &other_trust).is_none());
        assert!(
            cache
                .get("registry.example/plugins/b", &digest, &trust)
                .is_none()
        );
        // The key persists: a second handle reads the first one's entries.
        let again = VerdictCache::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert!(again.get(REPO, &digest, &trust).is_some());
    }

    #[test]
    fn unsigned_verdicts_are_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = VerdictCache::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let trust = trust();
        let digest = Digest::of(b"artifact");
        let mut unsigned = verdict(&digest);
        unsigned.signers.clear();
        cache
            .put(REPO, &trust, &unsigned, &Attestations::default())
            .unwrap();
        assert!(cache.get(REPO, &digest, &trust).is_none());
    }

    #[test]
    fn a_forged_or_edited_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = VerdictCache::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let trust = trust();
        let digest = Digest::of(b"artifact");
        cache
            .put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        let path = cache.path(REPO, &digest, &trust);
        let original = std::fs::read_to_string(&path).unwrap();
        // Edit the signer: the MAC no longer verifies.
        std::fs::write(&path, original.replace("sha256:k", "sha256:x")).unwrap();
        assert!(cache.get(REPO, &digest, &trust).is_none());
        // A well-formed entry MACed under another secret (written by someone without the key).
        let forger_dir = tempfile::tempdir().unwrap();
        let forger = VerdictCache::open(forger_dir.path(), Duration::from_secs(3600)).unwrap();
        forger
            .put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        std::fs::copy(forger.path(REPO, &digest, &trust), &path).unwrap();
        assert!(cache.get(REPO, &digest, &trust).is_none());
        // Every single-byte flip of a genuine entry is a miss.
        std::fs::write(&path, &original).unwrap();
        assert!(cache.get(REPO, &digest, &trust).is_some());
        let bytes = original.as_bytes();
        for i in 0..bytes.len() {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= 0x01;
            std::fs::write(&path, &flipped).unwrap();
            assert!(
                cache.get(REPO, &digest, &trust).is_none(),
                "flip at byte {i}"
            );
        }
    }

    #[test]
    fn an_expired_entry_is_a_miss_and_a_zero_ttl_caches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let trust = trust();
        let digest = Digest::of(b"artifact");
        let cache = VerdictCache::open(dir.path(), Duration::from_secs(1)).unwrap();
        cache
            .put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        let expired = VerdictCache::open(dir.path(), Duration::ZERO).unwrap();
        assert!(expired.get(REPO, &digest, &trust).is_none());
        let other_dir = tempfile::tempdir().unwrap();
        let off = VerdictCache::open(other_dir.path(), Duration::ZERO).unwrap();
        off.put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        assert!(!off.path(REPO, &digest, &trust).exists());
    }

    #[test]
    fn the_key_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        VerdictCache::open(&dir.path().join("c"), Duration::from_secs(60)).unwrap();
        let mode = std::fs::metadata(dir.path().join("c/key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
