//! The verdict cache: a verdict in which at least one signature verified, remembered on disk for
//! one (repository, manifest digest, [`Trust::id`]) triple, so that a later `run` of the same
//! artifact from the same place under the same trust skips signature discovery and
//! verification. The repository is part of the key because signatures are found beside the
//! artifact: the same digest elsewhere may have none, and a hit must never answer differently
//! from fresh verification.
//!
//! The cache lives in Warrant's state (`verdicts/`; see [`crate::state`]): a private directory
//! only the running user can change, which is what makes its entries trustworthy. Each entry
//! is also authenticated with HMAC-SHA256 under the state's MAC key for this cache (defence in
//! depth: an entry Warrant did not write under that name is never acted on). An entry whose
//! MAC does not verify, whose digest or trust is not the one asked for, which is older than the
//! time-to-live, or which is not a regular file of the user's is a miss, never an error, and
//! the artifact is verified afresh (a fresh verdict then replaces it). Only positive verdicts
//! are cached: a rejection is always re-examined. Entries are written whole (temporary file,
//! then rename).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use registry_client::{Digest, PrivateDir, Secrecy};
use ring::hmac;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::attest::Attestations;
use crate::cosign::Verdict;
use crate::state::{State, StateError};
use crate::verify::Trust;

/// Largest entry read.
const MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// Entries dated further in the future than this are misses (clock skew, or forgery).
const MAX_FUTURE: Duration = Duration::from_secs(60);
/// The entry format.
const FORMAT: u32 = 2;
/// The verdict cache's directory in the state, and its MAC key's purpose.
pub const VERDICTS_DIR: &str = "verdicts";
/// The policy memo's directory in the state, and its MAC key's purpose.
pub const POLICY_MEMO_DIR: &str = "policy-memo";

/// Why an entry could not be written.
#[derive(Debug, thiserror::Error)]
#[error("verdict cache `{path}`: {reason}", path = .path.display())]
pub struct CacheError {
    path: PathBuf,
    reason: String,
}

/// Authenticated verdicts in a private directory.
pub struct VerdictCache {
    dir: PrivateDir,
    key: hmac::Key,
    ttl: Duration,
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("dir", &self.dir.path())
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

/// An entry's contents, if it is a regular file of the user's; anything else is a miss (and is
/// replaced when the entry is next written).
fn read_entry(dir: &PrivateDir, name: &str) -> Option<Vec<u8>> {
    match dir.read(name, MAX_ENTRY_BYTES, Secrecy::Owner) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!("{e}; ignored");
            None
        }
    }
}

impl VerdictCache {
    /// Open (creating) the cache in `state`; entries older than `ttl` are misses.
    pub fn open(state: &State, ttl: Duration) -> Result<Self, StateError> {
        Ok(Self {
            dir: state.subdir(VERDICTS_DIR)?,
            key: state.mac_key(VERDICTS_DIR)?,
            ttl,
        })
    }

    fn name(repository: &str, digest: &Digest, trust: &Trust) -> String {
        let key = Sha256::digest(format!("{repository}\n{digest}\n{}", trust.id()).as_bytes());
        hex::encode(key)
    }

    /// Where the entry for `repository`, `digest` and `trust` is (for tests).
    #[cfg(any(test, feature = "internals"))]
    pub fn entry_path(&self, repository: &str, digest: &Digest, trust: &Trust) -> PathBuf {
        self.dir.path().join(Self::name(repository, digest, trust))
    }

    /// The verdict cached for `digest` in `repository` under `trust`, if there is a valid,
    /// fresh one.
    pub fn get(
        &self,
        repository: &str,
        digest: &Digest,
        trust: &Trust,
    ) -> Option<(Verdict, Attestations)> {
        let name = Self::name(repository, digest, trust);
        let bytes = read_entry(&self.dir, &name)?;
        let newline = bytes.iter().position(|&b| b == b'\n')?;
        let (body, rest) = bytes.split_at(newline);
        let mac = hex::decode(rest.get(1..)?.trim_ascii()).ok()?;
        if hmac::verify(&self.key, &[name.as_bytes(), b"\n", body].concat(), &mac).is_err() {
            tracing::warn!(
                path = %self.dir.path().join(&name).display(),
                "verdict cache entry fails its MAC; ignored"
            );
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
        let name = Self::name(repository, &verdict.digest, trust);
        let error = |reason: String| CacheError {
            path: self.dir.path().join(&name),
            reason,
        };
        let mut body = serde_json::to_vec(&entry).map_err(|e| error(e.to_string()))?;
        let tag = hmac::sign(&self.key, &[name.as_bytes(), b"\n", &body].concat());
        body.push(b'\n');
        body.extend_from_slice(hex::encode(tag.as_ref()).as_bytes());
        body.push(b'\n');
        self.dir
            .write_atomically(&name, &body, 0o600, false)
            .map_err(|e| error(e.to_string()))
    }
}

/// What policies concluded before, for exactly the same inputs, so that a later run can skip
/// the work: policy sets that passed strict validation (by
/// [`crate::policy::validation_key`]: `<key>.valid`), and runs whose every request was allowed
/// (by [`crate::policy::decision_key`]: `<key>.run`, the decisions cited). It lives in the
/// state (`policy-memo/`, private to the user: see [`crate::state`]), and each entry carries an
/// HMAC-SHA256, under the state's MAC key for the memo, of a tag for its kind, its key and its
/// body, so an entry copied to another name or kind, or edited, is never acted on; anything
/// wrong is a miss, and the work is done afresh. Entries do not expire: both are functions of
/// their keys' inputs.
pub struct PolicyMemo {
    dir: PrivateDir,
    key: hmac::Key,
}

impl PolicyMemo {
    /// Open (creating) the memo in `state`.
    pub fn open(state: &State) -> Result<Self, StateError> {
        Ok(Self {
            dir: state.subdir(POLICY_MEMO_DIR)?,
            key: state.mac_key(POLICY_MEMO_DIR)?,
        })
    }

    fn name(kind: &str, key: &[u8; 32]) -> String {
        format!("{}.{kind}", hex::encode(key))
    }

    /// Where the `kind` entry for `key` is (for tests).
    #[cfg(any(test, feature = "internals"))]
    pub fn entry_path(&self, kind: &str, key: &[u8; 32]) -> PathBuf {
        self.dir.path().join(Self::name(kind, key))
    }

    /// What an entry's MAC covers: its kind, its key and its body.
    fn signed(kind: &str, key: &[u8; 32], body: &str) -> Vec<u8> {
        [kind.as_bytes(), &[0], key, body.as_bytes()].concat()
    }

    /// The body of the `kind` entry for `key`, if its MAC verifies. An entry is its body's
    /// line, then the MAC's.
    fn read(&self, kind: &str, key: &[u8; 32]) -> Option<String> {
        let bytes = read_entry(&self.dir, &Self::name(kind, key))?;
        let text = String::from_utf8(bytes).ok()?;
        let (body, mac) = text.trim_end_matches('\n').rsplit_once('\n')?;
        let mac = hex::decode(mac).ok()?;
        hmac::verify(&self.key, &Self::signed(kind, key, body), &mac).ok()?;
        Some(body.to_owned())
    }

    fn write(&self, kind: &str, key: &[u8; 32], body: &str) {
        let name = Self::name(kind, key);
        let tag = hmac::sign(&self.key, &Self::signed(kind, key, body));
        let text = format!("{body}\n{}\n", hex::encode(tag.as_ref()));
        // Only a saving: what is not remembered is worked out again next time.
        if let Err(e) = self
            .dir
            .write_atomically(&name, text.as_bytes(), 0o600, false)
        {
            tracing::debug!(error = %e, "not remembered");
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        let memo = PolicyMemo::open(&State::open(dir.path()).unwrap()).unwrap();
        let (a, b) = ([1_u8; 32], [2_u8; 32]);
        assert!(!memo.vouches(&a));
        ValidationMemo::remember(&memo, &a);
        assert!(memo.vouches(&a));
        assert!(!memo.vouches(&b));
        // Copying a's entry to b's name does not make b valid: the MAC covers the key.
        std::fs::copy(memo.entry_path("valid", &a), memo.entry_path("valid", &b)).unwrap();
        assert!(!memo.vouches(&b));
        // An edited entry is not vouched for.
        let entry = std::fs::read_to_string(memo.entry_path("valid", &a)).unwrap();
        let edited = entry.replacen(
            &entry[..1],
            if entry.starts_with('0') { "1" } else { "0" },
            1,
        );
        std::fs::write(memo.entry_path("valid", &a), edited).unwrap();
        assert!(!memo.vouches(&a));
        // An entry made under another secret is not either.
        let other_dir = tempfile::tempdir().unwrap();
        let other = PolicyMemo::open(&State::open(other_dir.path()).unwrap()).unwrap();
        ValidationMemo::remember(&other, &a);
        std::fs::copy(other.entry_path("valid", &a), memo.entry_path("valid", &a)).unwrap();
        assert!(!memo.vouches(&a));
        // A run entry is not a validation entry, nor the other way round.
        let c = [3_u8; 32];
        ValidationMemo::remember(&memo, &c);
        std::fs::copy(memo.entry_path("valid", &c), memo.entry_path("run", &c)).unwrap();
        assert_eq!(memo.recall(&c), None);
        DecisionMemo::remember(&memo, &c, "valid");
        assert_eq!(memo.recall(&c).as_deref(), Some("valid"));
        std::fs::copy(memo.entry_path("run", &c), memo.entry_path("valid", &b)).unwrap();
        assert!(!memo.vouches(&b));
        // A run entry's body is covered too.
        DecisionMemo::remember(&memo, &b, r#"{"determining":[["p"]]}"#);
        let entry = std::fs::read_to_string(memo.entry_path("run", &b)).unwrap();
        std::fs::write(memo.entry_path("run", &b), entry.replace("\"p\"", "\"q\"")).unwrap();
        assert_eq!(memo.recall(&b), None);
        // A verdict entry under a memo entry's name is not a memo entry: the keys differ by
        // purpose.
        let state = State::open(dir.path()).unwrap();
        let verdicts = VerdictCache::open(&state, Duration::from_secs(3600)).unwrap();
        assert_ne!(
            hmac::sign(&verdicts.key, b"x").as_ref(),
            hmac::sign(&memo.key, b"x").as_ref()
        );
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
        let cache =
            VerdictCache::open(&State::open(dir.path()).unwrap(), Duration::from_secs(3600))
                .unwrap();
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
        let again =
            VerdictCache::open(&State::open(dir.path()).unwrap(), Duration::from_secs(3600))
                .unwrap();
        assert!(again.get(REPO, &digest, &trust).is_some());
    }

    #[test]
    fn unsigned_verdicts_are_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache =
            VerdictCache::open(&State::open(dir.path()).unwrap(), Duration::from_secs(3600))
                .unwrap();
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
        let cache =
            VerdictCache::open(&State::open(dir.path()).unwrap(), Duration::from_secs(3600))
                .unwrap();
        let trust = trust();
        let digest = Digest::of(b"artifact");
        cache
            .put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        let path = cache.entry_path(REPO, &digest, &trust);
        let original = std::fs::read_to_string(&path).unwrap();
        // Edit the signer: the MAC no longer verifies.
        std::fs::write(&path, original.replace("sha256:k", "sha256:x")).unwrap();
        assert!(cache.get(REPO, &digest, &trust).is_none());
        // A well-formed entry MACed under another secret (written by someone without the key).
        let forger_dir = tempfile::tempdir().unwrap();
        let forger = VerdictCache::open(
            &State::open(forger_dir.path()).unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
        forger
            .put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        std::fs::copy(forger.entry_path(REPO, &digest, &trust), &path).unwrap();
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
        let cache =
            VerdictCache::open(&State::open(dir.path()).unwrap(), Duration::from_secs(1)).unwrap();
        cache
            .put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        let expired =
            VerdictCache::open(&State::open(dir.path()).unwrap(), Duration::ZERO).unwrap();
        assert!(expired.get(REPO, &digest, &trust).is_none());
        let other_dir = tempfile::tempdir().unwrap();
        let off =
            VerdictCache::open(&State::open(other_dir.path()).unwrap(), Duration::ZERO).unwrap();
        off.put(REPO, &trust, &verdict(&digest), &Attestations::default())
            .unwrap();
        assert!(!off.entry_path(REPO, &digest, &trust).exists());
    }
}
