//! Signing keys and signed checkpoints in the signed-note format (C2SP `signed-note` and
//! `tlog-checkpoint`, as implemented by Go's `golang.org/x/mod/sumdb/note`).
//!
//! A checkpoint is the note
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <base64 of the 32-byte root hash>\n
//! \n
//! — <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>\n
//! ```
//!
//! where `—` is U+2014 (bytes `e2 80 94`), the signed message is the body (the first three
//! lines, with their newlines), the key name is the log's origin, and the key id is the first
//! four bytes of `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)` (`0x01` is the
//! note package's Ed25519 algorithm byte). The tests check the signer against the Go package's
//! published `PeterNeumann` example byte for byte.
//!
//! This log writes exactly one signature line per checkpoint and accepts nothing else: no
//! extension lines, no cosignatures (a witness's cosignature belongs in the witness's copy).

use std::fmt;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature-line prefix: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// The note package's algorithm byte for Ed25519 keys.
const ALG_ED25519: u8 = 0x01;
/// The longest origin (and key name) accepted, in bytes.
pub const MAX_ORIGIN_BYTES: usize = 256;
/// The largest PKCS#8 key file read.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why a key cannot be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading the key file failed.
    #[error("reading the signing key: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not an Ed25519 PKCS#8 document.
    #[error("not an Ed25519 PKCS#8 key: {0}")]
    Rejected(String),
    /// The key file is larger than any PKCS#8 Ed25519 key.
    #[error("key file larger than {MAX_KEY_FILE_BYTES} bytes")]
    TooLarge,
    /// The system random number generator failed.
    #[error("generating a key: {0}")]
    Generate(String),
}

/// The Ed25519 key that signs a log's checkpoints. Its secret never appears in `Debug`.
pub struct SigningKeyMaterial {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SigningKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyMaterial")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl SigningKeyMaterial {
    /// Generates a new key and returns it as a PKCS#8 v2 document (to be stored by the caller,
    /// e.g. in a mode-0600 file, and loaded with [`SigningKeyMaterial::from_pkcs8`]).
    pub fn generate_pkcs8() -> Result<Vec<u8>, KeyError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(doc.as_ref().to_vec())
    }

    /// Loads a PKCS#8 Ed25519 key: v2 (with the public key, which is checked against the
    /// secret) or v1 (secret only, as OpenSSL writes them).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        // v2 documents are parsed exactly as by `from_pkcs8` (public key checked); v1 ones,
        // which carry no public key, have it computed from the secret.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self { pair })
    }

    /// Reads a DER PKCS#8 key file (at most 4 KiB) and loads it.
    pub fn load_pkcs8_file(path: &Path) -> Result<Self, KeyError> {
        let mut der = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut der)?;
        if der.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge);
        }
        Self::from_pkcs8(&der)
    }

    /// A key from a raw 32-byte Ed25519 seed (as in a Go note `PRIVATE+KEY+…` string).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self { pair })
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Signs `text` as a note by the key named `name`: `text`, a blank line, one signature line.
    pub(crate) fn sign_note(&self, name: &str, text: &str) -> String {
        let sig = self.pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&key_id(name, &self.public_key()));
        blob.extend_from_slice(sig.as_ref());
        format!("{text}\n{SIG_PREFIX}{name} {}\n", B64.encode(blob))
    }
}

/// The note key id: the first 4 bytes of `SHA-256(name || "\n" || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public_key);
    let digest: [u8; 32] = h.finalize().into();
    let mut id = [0u8; 4];
    id.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    id
}

/// The verifier key string Go's note package (and witnesses) take:
/// `<name>+<8 hex digits of the key id>+<base64(0x01 || public key)>`.
pub fn verifier_key(name: &str, public_key: &[u8; 32]) -> String {
    let mut data = Vec::with_capacity(33);
    data.push(ALG_ED25519);
    data.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, public_key)),
        B64.encode(data)
    )
}

/// Checks an origin (also the key name): 1 to 256 bytes of printable ASCII other than space
/// and `+` (the note package forbids spaces and `+` in key names; we also keep to ASCII).
pub fn valid_origin(origin: &str) -> bool {
    !origin.is_empty()
        && origin.len() <= MAX_ORIGIN_BYTES
        && origin.bytes().all(|c| c.is_ascii_graphic() && c != b'+')
}

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (also the signing key's name).
    pub origin: String,
    /// How many records the tree holds.
    pub size: u64,
    /// The RFC 6962 root over those records.
    pub root: Hash,
    /// The whole signed note, as written (ends with the signature line's newline).
    pub note: String,
}

impl Checkpoint {
    /// The signed body: `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        body(&self.origin, self.size, &self.root)
    }
}

fn body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// Signs the tree head (`origin` must be valid).
pub(crate) fn sign_checkpoint(
    key: &SigningKeyMaterial,
    origin: &str,
    size: u64,
    root: Hash,
) -> Checkpoint {
    let note = key.sign_note(origin, &body(origin, size, &root));
    Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        note,
    }
}

/// What is wrong with one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointProblem {
    /// Not a checkpoint note in this log's strict format.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The origin line is not the log's origin.
    #[error("checkpoint for origin {0:?}")]
    WrongOrigin(String),
    /// The signature line names another key (another name, or another key id).
    #[error("checkpoint not signed by the log's key (signer {name:?}, key id {key_id})")]
    UnknownKey {
        /// The signer's name.
        name: String,
        /// The key id, hex.
        key_id: String,
    },
    /// The signature line names the log's key but the signature does not verify.
    #[error("checkpoint signature does not verify")]
    BadSignature,
    /// Its size is below the previous checkpoint's: the log cannot shrink.
    #[error("checkpoint size {size} is below the previous checkpoint's {previous}")]
    SizeDecreased {
        /// This checkpoint's size.
        size: u64,
        /// The previous checkpoint's size.
        previous: u64,
    },
    /// A second correctly signed checkpoint for an already proven size, with another root:
    /// the log's key signed two different histories.
    #[error("checkpoint root for size {size} contradicts an earlier checkpoint")]
    Conflicting {
        /// The size both checkpoints claim.
        size: u64,
    },
}

/// Parses and authenticates one checkpoint note (the note only: no trailing blank line).
pub fn open_checkpoint(
    note: &str,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Checkpoint, CheckpointProblem> {
    let malformed = |why: &str| CheckpointProblem::Malformed(why.to_owned());
    let (head, sigs) = note
        .split_once("\n\n")
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let mut lines = head.split('\n');
    let (Some(origin_line), Some(size_line), Some(root_line), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(malformed("want exactly three body lines"));
    };
    let sig_line = sigs
        .strip_suffix('\n')
        .filter(|l| !l.contains('\n'))
        .ok_or_else(|| malformed("want exactly one signature line"))?;
    if origin_line != origin {
        return Err(CheckpointProblem::WrongOrigin(origin_line.to_owned()));
    }
    let size: u64 = size_line
        .parse()
        .ok()
        .filter(|s: &u64| s.to_string() == size_line)
        .ok_or_else(|| malformed("size is not a canonical decimal"))?;
    let root: Hash = B64
        .decode(root_line)
        .ok()
        .and_then(|r| r.try_into().ok())
        .filter(|r: &Hash| B64.encode(r) == root_line)
        .ok_or_else(|| malformed("root is not the base64 of 32 bytes"))?;
    let (name, blob) = sig_line
        .strip_prefix(SIG_PREFIX)
        .and_then(|rest| rest.split_once(' '))
        .ok_or_else(|| malformed("signature line is not \"— <name> <base64>\""))?;
    let blob = B64
        .decode(blob)
        .map_err(|_| malformed("signature is not base64"))?;
    let (id, sig) = blob
        .split_first_chunk::<4>()
        .filter(|(_, sig)| sig.len() == 64)
        .ok_or_else(|| malformed("signature is not 4 + 64 bytes"))?;
    if name != origin || *id != key_id(origin, public_key) {
        return Err(CheckpointProblem::UnknownKey {
            name: name.to_owned(),
            key_id: hex::encode(id),
        });
    }
    let text = body(origin_line, size, &root);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(text.as_bytes(), sig)
        .map_err(|_| CheckpointProblem::BadSignature)?;
    // Holds by construction (every field was checked canonical); keeps the signed bytes and
    // the parsed fields provably the same.
    if note.get(..text.len()) != Some(text.as_str()) {
        return Err(malformed("body is not canonical"));
    }
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        note: note.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// golang.org/x/mod/sumdb/note's documented example: the key
    /// `PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz` signs the
    /// two-line text to exactly this note (Ed25519 is deterministic).
    #[test]
    fn go_note_example_byte_for_byte() {
        let skey = B64
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        assert_eq!(skey[0], ALG_ED25519);
        let key = SigningKeyMaterial::from_seed(&skey[1..].try_into().unwrap()).unwrap();
        assert_eq!(
            verifier_key("PeterNeumann", &key.public_key()),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        assert_eq!(
            key.sign_note("PeterNeumann", text),
            format!(
                "{text}\n\u{2014} PeterNeumann \
                 x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            )
        );
    }

    /// A PKCS#8 v1 document (as `openssl genpkey -algorithm ED25519` writes) holding the Go
    /// example's seed loads, and yields the Go example's public key.
    #[test]
    fn pkcs8_v1_keys_load() {
        let seed = B64
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed[1..]);
        let key = SigningKeyMaterial::from_pkcs8(&der).unwrap();
        assert_eq!(
            verifier_key("PeterNeumann", &key.public_key()),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
    }

    fn key() -> SigningKeyMaterial {
        SigningKeyMaterial::from_pkcs8(&SigningKeyMaterial::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn checkpoint_round_trip_and_rejections() {
        let k = key();
        let pk = k.public_key();
        let origin = "warrant.example/audit";
        let cp = sign_checkpoint(&k, origin, 42, [7u8; 32]);
        assert!(cp.note.starts_with(&cp.body()));
        assert_eq!(open_checkpoint(&cp.note, origin, &pk), Ok(cp.clone()));

        assert_eq!(
            open_checkpoint(&cp.note, "other", &pk),
            Err(CheckpointProblem::WrongOrigin(origin.to_owned()))
        );
        let other = key();
        assert!(matches!(
            open_checkpoint(&cp.note, origin, &other.public_key()),
            Err(CheckpointProblem::UnknownKey { .. })
        ));
        // Same name and key id, but another key's signature.
        let forged = sign_checkpoint(&other, origin, 42, [7u8; 32]);
        let sig_of = |n: &str| {
            let line = n.lines().last().unwrap().to_owned();
            B64.decode(line.rsplit_once(' ').unwrap().1).unwrap()
        };
        let mut blob = sig_of(&cp.note);
        blob[4..].copy_from_slice(&sig_of(&forged.note)[4..]);
        let spliced = format!(
            "{}\n{SIG_PREFIX}{origin} {}\n",
            cp.body(),
            B64.encode(&blob)
        );
        assert_eq!(
            open_checkpoint(&spliced, origin, &pk),
            Err(CheckpointProblem::BadSignature)
        );
        // Edited size and root under the original signature.
        let edited = cp.note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            open_checkpoint(&edited, origin, &pk),
            Err(CheckpointProblem::BadSignature)
        );
        let edited = cp
            .note
            .replacen(&B64.encode([7u8; 32]), &B64.encode([8u8; 32]), 1);
        assert_eq!(
            open_checkpoint(&edited, origin, &pk),
            Err(CheckpointProblem::BadSignature)
        );
        // Every single-byte change is rejected, one way or another.
        let bytes = cp.note.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x01;
            if let Ok(s) = String::from_utf8(b) {
                assert!(open_checkpoint(&s, origin, &pk).is_err(), "byte {i}");
            }
        }
        for bad in [
            String::new(),
            format!("{}\n", cp.note),
            cp.note.replacen("\n42\n", "\n042\n", 1),
            cp.note.replacen("\n42\n", "\n+42\n", 1),
            cp.note.replacen("\n\n", "\nextension\n\n", 1),
            format!("{}{}", cp.note, cp.note.lines().last().unwrap()),
            cp.note.replacen("\u{2014} ", "-- ", 1),
        ] {
            assert!(
                matches!(
                    open_checkpoint(&bad, origin, &pk),
                    Err(CheckpointProblem::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_load_and_hide_their_secret() {
        let der = SigningKeyMaterial::generate_pkcs8().unwrap();
        let a = SigningKeyMaterial::from_pkcs8(&der).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.p8");
        std::fs::write(&path, &der).unwrap();
        let b = SigningKeyMaterial::load_pkcs8_file(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let shown = format!("{a:?}");
        assert!(shown.contains(&hex::encode(a.public_key())));
        assert!(SigningKeyMaterial::from_pkcs8(b"not a key").is_err());
        std::fs::write(&path, vec![0u8; 5000]).unwrap();
        assert!(matches!(
            SigningKeyMaterial::load_pkcs8_file(&path),
            Err(KeyError::TooLarge)
        ));
        assert!(valid_origin("warrant.example/audit"));
        for bad in ["", "a b", "a+b", "ü", "a\nb", &"o".repeat(257)] {
            assert!(!valid_origin(bad), "{bad:?}");
        }
    }
}
