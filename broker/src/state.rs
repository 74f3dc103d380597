//! Warrant's trusted local state.
//!
//! Two kinds of local data, trusted differently (SECURITY.md, "Threat model"):
//!
//! - the **store** holds artifacts: content-addressed, re-verified by digest on every read,
//!   possibly shared or filled by other tools. Nothing read from it is trusted for where it is.
//! - the **state** is trusted: the verdict cache and the policy memo (which stand in for
//!   verification and for policy decisions), the compile cache (native code that is executed),
//!   the audit log and its signing key, and the MAC key. Warrant creates each of its
//!   directories 0700 for the running user and, on every open, refuses (exit 2, naming the
//!   path and what is wrong) one that is a symbolic link, is owned by someone else, or is
//!   writable by group or others — or sits below a directory someone other than root or the
//!   user could change ([`registry_client::PrivateDir`]). Whoever can write the state is, by
//!   this rule, the user Warrant runs as.
//!
//! **The state directory is the boundary; the MACs are defence in depth.** The verdict cache,
//! the policy memo and the compile cache authenticate each entry with HMAC-SHA256 under keys
//! derived from one 32-byte secret, `mac.key` (0600) in the data directory. The key lives in
//! the same private directory as the entries, so a MAC does not stop the user's own processes;
//! it stops an entry that Warrant did not write for that name — a torn or corrupted write, a
//! file copied from elsewhere or from another name, an entry of an older format — from being
//! acted on.

use std::path::Path;

use registry_client::{PrivateDir, Secrecy};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// The MAC secret's file name in the data directory.
pub const MAC_KEY_FILE: &str = "mac.key";
/// The MAC secret's length.
const MAC_KEY_BYTES: usize = 32;

/// Why the state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A directory or file of the state is not private, or cannot be read or written.
    #[error(transparent)]
    Path(#[from] registry_client::Error),
    /// The MAC secret is malformed.
    #[error("the MAC key `{path}` is {len} bytes, expected {MAC_KEY_BYTES}; remove it to make a new one", path = .path.display())]
    BadKey {
        /// The key file.
        path: std::path::PathBuf,
        /// Its length.
        len: usize,
    },
    /// No randomness for a new key.
    #[error("no randomness for a new key")]
    Random,
}

/// The data directory, opened and checked (see the module docs).
#[derive(Debug)]
pub struct State {
    dir: PrivateDir,
    /// `mac.key`, once read (or made).
    secret: std::sync::OnceLock<Vec<u8>>,
}

impl State {
    /// Open the data directory at `path`, creating it (0700) if it does not exist.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        Ok(Self {
            dir: PrivateDir::create(path)?,
            secret: std::sync::OnceLock::new(),
        })
    }

    /// The directory itself.
    pub fn dir(&self) -> &PrivateDir {
        &self.dir
    }

    /// Its private subdirectory `name`, created (0700) if absent.
    pub fn subdir(&self, name: &str) -> Result<PrivateDir, StateError> {
        Ok(self.dir.subdir(name)?)
    }

    /// The MAC key for `purpose`: HMAC-SHA256 of the purpose under the secret `mac.key`
    /// (created, 32 random bytes, mode 0600, on first use), so that an entry of one cache is
    /// never valid in another.
    pub fn mac_key(&self, purpose: &str) -> Result<hmac::Key, StateError> {
        let secret = match self.secret.get() {
            Some(secret) => secret,
            None => {
                let secret = match self.read_secret()? {
                    Some(secret) => secret,
                    None => self.create_secret()?,
                };
                self.secret.get_or_init(|| secret)
            }
        };
        let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&master, format!("warrant mac key: {purpose}").as_bytes());
        Ok(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    fn read_secret(&self) -> Result<Option<Vec<u8>>, StateError> {
        let limit = MAC_KEY_BYTES as u64;
        let secret = match self.dir.read(MAC_KEY_FILE, limit, Secrecy::Secret) {
            Ok(secret) => secret,
            Err(registry_client::Error::TooLarge { .. }) => {
                return Err(StateError::BadKey {
                    path: self.dir.path().join(MAC_KEY_FILE),
                    len: MAC_KEY_BYTES + 1,
                });
            }
            Err(e) => return Err(e.into()),
        };
        match secret {
            Some(secret) if secret.len() != MAC_KEY_BYTES => Err(StateError::BadKey {
                path: self.dir.path().join(MAC_KEY_FILE),
                len: secret.len(),
            }),
            other => Ok(other),
        }
    }

    fn create_secret(&self) -> Result<Vec<u8>, StateError> {
        use rustix::fs::OFlags;
        use std::io::Write as _;
        let mut secret = vec![0_u8; MAC_KEY_BYTES];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| StateError::Random)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        match self
            .dir
            .open_file(MAC_KEY_FILE, flags, 0o600, Secrecy::Secret)
        {
            Ok(Some(mut file)) => {
                let path = self.dir.path().join(MAC_KEY_FILE);
                file.write_all(&secret)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| {
                        StateError::Path(registry_client::Error::Io { path, source: e })
                    })?;
                Ok(secret)
            }
            // Another process made it first: use theirs.
            Err(registry_client::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                self.read_secret()?.ok_or_else(|| StateError::BadKey {
                    path: self.dir.path().join(MAC_KEY_FILE),
                    len: 0,
                })
            }
            Ok(None) => Err(StateError::BadKey {
                path: self.dir.path().join(MAC_KEY_FILE),
                len: 0,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn mac_keys_differ_by_purpose_and_persist() {
        let top = tempfile::tempdir().unwrap();
        let state = State::open(&top.path().join("data")).unwrap();
        let tag = |key: &hmac::Key| hmac::sign(key, b"entry").as_ref().to_vec();
        let a = tag(&state.mac_key("verdicts").unwrap());
        let b = tag(&state.mac_key("policy-memo").unwrap());
        assert_ne!(a, b);
        let again = State::open(&top.path().join("data")).unwrap();
        assert_eq!(tag(&again.mac_key("verdicts").unwrap()), a);
        let mode = std::fs::metadata(top.path().join("data").join(MAC_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_key_others_can_read_or_a_short_key_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let state = State::open(&top.path().join("data")).unwrap();
        state.mac_key("x").unwrap();
        let key = top.path().join("data").join(MAC_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let state = State::open(&top.path().join("data")).unwrap();
        assert!(matches!(
            state.mac_key("x"),
            Err(StateError::Path(registry_client::Error::Unsafe { .. }))
        ));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&key, b"short").unwrap();
        let state = State::open(&top.path().join("data")).unwrap();
        assert!(matches!(
            state.mac_key("x"),
            Err(StateError::BadKey { len: 5, .. })
        ));
    }
}
