//! Keys for keyed signing: an ECDSA P-256 signing key (what cosign's keyed signing uses) and the
//! public keys whose signatures Warrant accepts (ECDSA P-256 with SHA-256, and Ed25519).
//!
//! Encodings are deliberately narrow. A private key is an unencrypted PKCS#8 `PRIVATE KEY` PEM
//! block; encrypted keys (cosign's `ENCRYPTED SIGSTORE PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`) and
//! SEC1 `EC PRIVATE KEY` blocks are refused with a reason. A public key is a `PUBLIC KEY`
//! (SubjectPublicKeyInfo) PEM block in exactly one of two DER encodings, compared byte for byte
//! (see [`PublicKey::from_spki_der`]). The PEM and DER work is done here by hand, so nothing
//! else is accepted by accident.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};

use crate::verify::limits::MAX_KEY_BYTES;

/// The DER of a P-256 SubjectPublicKeyInfo up to its key: SEQUENCE { SEQUENCE { id-ecPublicKey,
/// prime256v1 }, BIT STRING (66 bytes, no unused bits) }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// Length of an uncompressed P-256 point: `04 || X || Y`.
const P256_POINT_LEN: usize = 65;
/// The first byte of an uncompressed SEC1 point.
const SEC1_UNCOMPRESSED: u8 = 0x04;

/// The DER of an Ed25519 SubjectPublicKeyInfo up to its key: SEQUENCE { SEQUENCE { id-Ed25519 },
/// BIT STRING (33 bytes, no unused bits) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// Length of an Ed25519 public key.
const ED25519_KEY_LEN: usize = 32;

/// DER of the OID id-ecPublicKey (1.2.840.10045.2.1); used only to explain a refusal.
const OID_EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of the OID prime256v1 (1.2.840.10045.3.1.7); used only to explain a refusal.
const OID_PRIME256V1: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the OID rsaEncryption (1.2.840.113549.1.1.1); used only to explain a refusal.
const OID_RSA_ENCRYPTION: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// DER of the OID id-Ed25519 (1.3.101.112); used only to explain a refusal.
const OID_ED25519: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// PEM label of an unencrypted PKCS#8 private key.
const LABEL_PRIVATE_KEY: &str = "PRIVATE KEY";
/// PEM label of a SubjectPublicKeyInfo.
const LABEL_PUBLIC_KEY: &str = "PUBLIC KEY";
/// Characters of base64 per PEM line (RFC 7468).
const PEM_LINE_LEN: usize = 64;

/// What a key could not be read, parsed, written or used for.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The input is not a well-formed key of its kind.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed (`public key`, `private key`, with the file when there is one).
        what: String,
        /// Why it is malformed.
        reason: String,
    },
    /// The input is a key, or a PEM block, that Warrant does not accept.
    #[error("unsupported {what}: {reason}")]
    Unsupported {
        /// What was being parsed (`public key`, `private key`, with the file when there is one).
        what: String,
        /// Why it is not accepted.
        reason: String,
    },
    /// The cryptographic library failed (random number generation, signing).
    #[error("key operation failed: {0}")]
    Crypto(String),
    /// A key file could not be read or written.
    #[error("key file `{path}`: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A key file is larger than [`MAX_KEY_BYTES`].
    #[error("key file `{path}` is larger than {limit} bytes", path = .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        limit: u64,
    },
}

impl KeyError {
    fn malformed(what: &str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            what: what.to_owned(),
            reason: reason.into(),
        }
    }

    fn unsupported(what: &str, reason: impl Into<String>) -> Self {
        Self::Unsupported {
            what: what.to_owned(),
            reason: reason.into(),
        }
    }

    /// Name the file a parse error came from.
    fn in_file(self, path: &Path) -> Self {
        match self {
            Self::Malformed { what, reason } => Self::Malformed {
                what: format!("{what} `{}`", path.display()),
                reason,
            },
            Self::Unsupported { what, reason } => Self::Unsupported {
                what: format!("{what} `{}`", path.display()),
                reason,
            },
            other => other,
        }
    }
}

/// The algorithm of a [`PublicKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA over NIST P-256 with SHA-256; ASN.1 DER signatures.
    EcdsaP256Sha256,
    /// Ed25519 (RFC 8032); 64-byte signatures.
    Ed25519,
}

/// ECDSA P-256 (SHA-256) signing key, as cosign's keyed signing uses.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    /// Shows the public key's fingerprint only: the private key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generate a new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| KeyError::Crypto("cannot generate a P-256 key".into()))?;
        Self::from_pkcs8(pkcs8.as_ref(), "private key")
    }

    /// Parse an unencrypted PKCS#8 `PRIVATE KEY` PEM block holding a P-256 key.
    ///
    /// Encrypted blocks (any label containing `ENCRYPTED`, such as cosign's
    /// `ENCRYPTED SIGSTORE PRIVATE KEY`) and SEC1 `EC PRIVATE KEY` blocks are refused as
    /// [`KeyError::Unsupported`], naming the label.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let what = "private key";
        let block = pem_block(text, what)?;
        if block.label != LABEL_PRIVATE_KEY {
            let label = &block.label;
            let reason = if label.contains("ENCRYPTED") {
                format!(
                    "PEM label `{label}`: encrypted keys are not supported; \
                     give an unencrypted PKCS#8 `{LABEL_PRIVATE_KEY}`"
                )
            } else if label == "EC PRIVATE KEY" {
                format!(
                    "PEM label `{label}`: SEC1 keys are not supported; convert to PKCS#8 \
                     (`openssl pkcs8 -topk8 -nocrypt`)"
                )
            } else {
                format!("PEM label `{label}`: expected `{LABEL_PRIVATE_KEY}`")
            };
            return Err(KeyError::unsupported(what, reason));
        }
        let der = block.decode(what)?;
        Self::from_pkcs8(&der, what)
    }

    fn from_pkcs8(der: &[u8], what: &str) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
            .map_err(|e| match e.to_string().as_str() {
                "WrongAlgorithm" => KeyError::unsupported(
                    what,
                    "not an ECDSA P-256 key (only P-256 signing keys are supported)",
                ),
                "PublicKeyIsMissing" => {
                    KeyError::unsupported(what, "the PKCS#8 key does not carry its public key")
                }
                "RNG failed" => KeyError::Crypto("random number generator failed".into()),
                other => KeyError::malformed(what, format!("not a usable PKCS#8 key (`{other}`)")),
            })?;
        Ok(Self {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// The key as an unencrypted PKCS#8 `PRIVATE KEY` PEM block, 64 characters a line.
    pub fn to_pem(&self) -> String {
        pem_encode(LABEL_PRIVATE_KEY, &self.pkcs8)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let raw = self.pair.public_key().as_ref().to_vec();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&raw);
        PublicKey {
            algorithm: KeyAlgorithm::EcdsaP256Sha256,
            spki,
            raw,
        }
    }

    /// Sign `message`: an ASN.1 DER ECDSA signature over SHA-256(`message`).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        self.pair
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Crypto("cannot sign with the P-256 key".into()))
    }
}

/// A public key whose signatures Warrant accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: KeyAlgorithm,
    /// The SubjectPublicKeyInfo DER, exactly as accepted or built.
    spki: Vec<u8>,
    /// The key itself: the uncompressed P-256 point, or the 32 Ed25519 bytes.
    raw: Vec<u8>,
}

impl PublicKey {
    /// Parse a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM block; see [`Self::from_spki_der`].
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let what = "public key";
        let block = pem_block(text, what)?;
        if block.label != LABEL_PUBLIC_KEY {
            return Err(KeyError::unsupported(
                what,
                format!("PEM label `{}`: expected `{LABEL_PUBLIC_KEY}`", block.label),
            ));
        }
        Self::from_spki_der(&block.decode(what)?)
    }

    /// Parse a SubjectPublicKeyInfo DER.
    ///
    /// Only these two encodings are accepted, compared byte for byte:
    ///
    /// - ECDSA P-256: `3059301306072a8648ce3d020106082a8648ce3d030107034200` followed by the
    ///   65-byte uncompressed point (`04 || X || Y`), which must lie on the curve;
    /// - Ed25519: `302a300506032b6570032100` followed by the 32-byte key.
    ///
    /// Anything else — RSA, other curves, compressed points, explicit curve parameters,
    /// non-minimal DER, trailing data — is [`KeyError::Unsupported`] or
    /// [`KeyError::Malformed`].
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let what = "public key";
        if let Some(point) = der.strip_prefix(&P256_SPKI_PREFIX) {
            if point.len() != P256_POINT_LEN {
                return Err(KeyError::malformed(
                    what,
                    format!(
                        "P-256 key of {} bytes, expected {P256_POINT_LEN}",
                        point.len()
                    ),
                ));
            }
            if point.first() != Some(&SEC1_UNCOMPRESSED) {
                return Err(KeyError::unsupported(
                    what,
                    "P-256 point is not in uncompressed form",
                ));
            }
            check_p256_point(point, what)?;
            return Ok(Self {
                algorithm: KeyAlgorithm::EcdsaP256Sha256,
                spki: der.to_vec(),
                raw: point.to_vec(),
            });
        }
        if let Some(key) = der.strip_prefix(&ED25519_SPKI_PREFIX) {
            if key.len() != ED25519_KEY_LEN {
                return Err(KeyError::malformed(
                    what,
                    format!(
                        "Ed25519 key of {} bytes, expected {ED25519_KEY_LEN}",
                        key.len()
                    ),
                ));
            }
            return Ok(Self {
                algorithm: KeyAlgorithm::Ed25519,
                spki: der.to_vec(),
                raw: key.to_vec(),
            });
        }
        // Refused. The OID search below only picks the message; it never accepts anything.
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        Err(if has(&OID_RSA_ENCRYPTION) {
            KeyError::unsupported(
                what,
                "RSA keys are not supported (only ECDSA P-256 and Ed25519)",
            )
        } else if has(&OID_EC_PUBLIC_KEY) && has(&OID_PRIME256V1) {
            KeyError::unsupported(
                what,
                "P-256 key in an encoding other than an uncompressed point \
                 in a minimal SubjectPublicKeyInfo (compressed point?)",
            )
        } else if has(&OID_EC_PUBLIC_KEY) {
            KeyError::unsupported(
                what,
                "elliptic curve other than P-256 (only ECDSA P-256 and Ed25519)",
            )
        } else if has(&OID_ED25519) {
            KeyError::malformed(what, "Ed25519 SubjectPublicKeyInfo of the wrong shape")
        } else {
            KeyError::unsupported(what, "not an ECDSA P-256 or Ed25519 SubjectPublicKeyInfo")
        })
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The key as a `PUBLIC KEY` PEM block, 64 characters a line.
    pub fn to_pem(&self) -> String {
        pem_encode(LABEL_PUBLIC_KEY, &self.spki)
    }

    /// `sha256:` + lowercase hex of SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> String {
        crate::verify::key_fingerprint(&self.spki)
    }

    /// True if `signature` is this key's signature over `message`: for P-256 an ASN.1 DER
    /// ECDSA signature over SHA-256(`message`), for Ed25519 a 64-byte signature. Never panics.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &'static dyn signature::VerificationAlgorithm = match self.algorithm {
            KeyAlgorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
            KeyAlgorithm::Ed25519 => &signature::ED25519,
        };
        UnparsedPublicKey::new(algorithm, &self.raw)
            .verify(message, signature)
            .is_ok()
    }
}

/// Refuse a P-256 point that is not on the curve, so a corrupt key fails when loaded rather
/// than at every verification. ring validates a peer's ECDH public key fully (on the curve, not
/// the identity), so an ephemeral agreement with the point is the check.
fn check_p256_point(point: &[u8], what: &str) -> Result<(), KeyError> {
    use ring::agreement;
    let rng = SystemRandom::new();
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| KeyError::Crypto("random number generator failed".into()))?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point);
    agreement::agree_ephemeral(ephemeral, &peer, |_| ())
        .map_err(|_| KeyError::malformed(what, "P-256 point is not on the curve"))
}

/// Write `PREFIX.key` (the PKCS#8 PEM, created with mode 0600 and `create_new` so an existing
/// key is never overwritten) and `PREFIX.pub` (SPKI PEM, also `create_new`); return the public
/// key. If either file exists, or writing fails, nothing is left behind that was not there
/// before.
pub fn write_key_pair(prefix: &Path, key: &SigningKey) -> Result<PublicKey, KeyError> {
    let key_path = with_suffix(prefix, ".key");
    let pub_path = with_suffix(prefix, ".pub");
    let public = key.public_key();

    let mut key_file = create_new(&key_path, true)?;
    let mut pub_file = match create_new(&pub_path, false) {
        Ok(file) => file,
        Err(e) => {
            drop(key_file);
            // Best effort: the file is empty and ours; the error that matters is `e`.
            let _ = std::fs::remove_file(&key_path);
            return Err(e);
        }
    };
    let written = write_all(&mut key_file, &key_path, key.to_pem().as_bytes())
        .and_then(|()| write_all(&mut pub_file, &pub_path, public.to_pem().as_bytes()));
    if let Err(e) = written {
        drop(key_file);
        drop(pub_file);
        // Best effort: both files are ours and incomplete; the error that matters is `e`.
        let _ = std::fs::remove_file(&key_path);
        let _ = std::fs::remove_file(&pub_path);
        return Err(e);
    }
    Ok(public)
}

/// Read a public key file (bounded to 64 KiB: [`MAX_KEY_BYTES`]).
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let text = read_key_file(path, "public key")?;
    PublicKey::from_pem(&text).map_err(|e| e.in_file(path))
}

/// Read a private key file (bounded to 64 KiB: [`MAX_KEY_BYTES`]).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = read_key_file(path, "private key")?;
    SigningKey::from_pem(&text).map_err(|e| e.in_file(path))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn create_new(path: &Path, private: bool) -> Result<File, KeyError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    options.open(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_all(file: &mut File, path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })
}

fn read_key_file(path: &Path, what: &str) -> Result<String, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_BYTES {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
            limit: MAX_KEY_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|_| KeyError::malformed(what, "not UTF-8 text").in_file(path))
}

/// One PEM block: its label and its base64 body, lines joined.
struct PemBlock {
    label: String,
    body: String,
}

impl PemBlock {
    fn decode(&self, what: &str) -> Result<Vec<u8>, KeyError> {
        STANDARD.decode(&self.body).map_err(|e| {
            KeyError::malformed(
                what,
                format!("invalid base64 in the `{}` block: {e}", self.label),
            )
        })
    }
}

/// The DER of the one `CERTIFICATE` PEM block in `text` (a keyless signature's certificate).
pub fn certificate_der(text: &str) -> Result<Vec<u8>, KeyError> {
    let what = "certificate";
    let block = pem_block(text, what)?;
    if block.label != "CERTIFICATE" {
        return Err(KeyError::malformed(
            what,
            format!("a `{}` PEM block, expected `CERTIFICATE`", block.label),
        ));
    }
    block.decode(what)
}

/// Split `text` into exactly one PEM block. Lines may end in CRLF and carry surrounding
/// whitespace; blank lines may surround the block; anything else outside it is refused. Errors
/// name line numbers, never the text, so that no key material reaches a message.
fn pem_block(text: &str, what: &str) -> Result<PemBlock, KeyError> {
    let mut lines = text.lines().map(str::trim).enumerate();
    let (begin_no, begin) = loop {
        match lines.next() {
            None => return Err(KeyError::malformed(what, "no PEM block")),
            Some((_, "")) => {}
            Some((no, line)) => break (no, line),
        }
    };
    let Some(label) = begin
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.strip_suffix("-----"))
    else {
        return Err(KeyError::malformed(
            what,
            format!(
                "line {} is outside a PEM block (expected `-----BEGIN ...-----`)",
                begin_no.saturating_add(1)
            ),
        ));
    };
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut closed = false;
    for (no, line) in lines.by_ref() {
        if line == end {
            closed = true;
            break;
        }
        if line.starts_with("-----") {
            return Err(KeyError::malformed(
                what,
                format!(
                    "line {} of the `{label}` block is a boundary, expected base64 or `{end}`",
                    no.saturating_add(1)
                ),
            ));
        }
        body.push_str(line);
    }
    if !closed {
        return Err(KeyError::malformed(what, format!("no `{end}` line")));
    }
    for (no, line) in lines {
        if line.starts_with("-----BEGIN ") {
            return Err(KeyError::malformed(
                what,
                format!(
                    "more than one PEM block (another begins on line {})",
                    no.saturating_add(1)
                ),
            ));
        }
        if !line.is_empty() {
            return Err(KeyError::malformed(
                what,
                format!(
                    "line {} is outside the `{label}` block",
                    no.saturating_add(1)
                ),
            ));
        }
    }
    Ok(PemBlock {
        label: label.to_owned(),
        body,
    })
}

/// A PEM block of `der` under `label`, base64 in lines of 64 characters, ending in a newline.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % PEM_LINE_LEN == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    if !encoded.is_empty() {
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sigstore-rs `cosign-vectors/key-signed/cosign.pub` (Apache-2.0; see
    /// `tests/data/cosign-vectors/key-signed/`).
    const COSIGN_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----
";
    /// sigstore-rs `cosign-vectors/key-signed/wrong-key.pub`.
    const WRONG_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETJP9cqpUQsn2ggmJniWGjHdlsHzD
JsB89BPhZYch0U0hKANx5TY+ncrm0s8bfJxxHoenAEFhwhuXeb4PqIrtoQ==
-----END PUBLIC KEY-----
";
    /// sigstore-rs `cosign-vectors/key-signed/signature.b64`.
    const COSIGN_SIGNATURE: &str = "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";
    /// sigstore-rs `cosign-vectors/key-signed/payload.json`: the signed payload (no newline).
    const SIGNED_PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#;
    /// sigstore-rs `cosign-vectors/key-signed/payload-other-digest.json`: one digit differs.
    const OTHER_PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d1dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#;

    fn flip(bytes: &[u8], index: usize) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[index] ^= 0x01;
        out
    }

    fn spki_pem(der: &[u8]) -> String {
        pem_encode(LABEL_PUBLIC_KEY, der)
    }

    #[test]
    fn generated_keys_round_trip_sign_and_verify() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(again.to_pem(), pem);
        assert!(!format!("{key:?}").contains(&pem[30..60]));

        let public = key.public_key();
        assert_eq!(public.algorithm(), KeyAlgorithm::EcdsaP256Sha256);
        assert_eq!(public.spki_der().len(), 91);
        assert_eq!(PublicKey::from_pem(&public.to_pem()).unwrap(), public);
        assert_eq!(PublicKey::from_spki_der(public.spki_der()).unwrap(), public);
        assert_eq!(
            public.fingerprint(),
            crate::verify::key_fingerprint(public.spki_der())
        );

        let message = b"a message";
        let signature = key.sign(message).unwrap();
        assert!(public.verify(message, &signature));
        assert!(again.public_key().verify(message, &signature));
        assert!(!public.verify(&flip(message, 3), &signature));
        let last = signature.len() - 1;
        assert!(!public.verify(message, &flip(&signature, last)));
        assert!(!public.verify(message, &flip(&signature, 10)));
        assert!(!public.verify(message, &[]));
        assert!(!public.verify(message, &signature[..last]));

        let other = SigningKey::generate().unwrap();
        assert_ne!(other.public_key(), public);
        assert!(!other.public_key().verify(message, &signature));
    }

    #[test]
    fn cosign_known_answer() {
        let key = PublicKey::from_pem(COSIGN_PUB).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256Sha256);
        assert_eq!(key.to_pem(), COSIGN_PUB);
        // `openssl pkey -pubin -in cosign.pub -outform DER | sha256sum`
        assert_eq!(
            key.fingerprint(),
            "sha256:622601a9e498c09004d82cfb8879122e780c0813a0ba350edd3eefa73097605a"
        );
        let signature = STANDARD.decode(COSIGN_SIGNATURE).unwrap();
        assert!(key.verify(SIGNED_PAYLOAD.as_bytes(), &signature));
        assert!(!key.verify(OTHER_PAYLOAD.as_bytes(), &signature));
        let wrong = PublicKey::from_pem(WRONG_PUB).unwrap();
        assert!(!wrong.verify(SIGNED_PAYLOAD.as_bytes(), &signature));
    }

    #[test]
    fn the_vendored_vectors_match_the_embedded_ones() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/cosign-vectors/key-signed");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(read("cosign.pub"), COSIGN_PUB);
        assert_eq!(read("wrong-key.pub"), WRONG_PUB);
        assert_eq!(read("signature.b64").trim_end(), COSIGN_SIGNATURE);
        assert_eq!(read("payload.json"), SIGNED_PAYLOAD);
        assert_eq!(read("payload-other-digest.json"), OTHER_PAYLOAD);
        let key = read_public_key(&dir.join("cosign.pub")).unwrap();
        assert_eq!(key, PublicKey::from_pem(COSIGN_PUB).unwrap());
    }

    #[test]
    fn pem_tolerates_crlf_and_surrounding_whitespace() {
        let crlf = format!("\r\n  \n{}\r\n\r\n", COSIGN_PUB.replace('\n', " \r\n"));
        assert_eq!(
            PublicKey::from_pem(&crlf).unwrap(),
            PublicKey::from_pem(COSIGN_PUB).unwrap()
        );
        let key = SigningKey::generate().unwrap();
        let crlf = key.to_pem().replace('\n', "\r\n");
        assert_eq!(
            SigningKey::from_pem(&crlf).unwrap().public_key(),
            key.public_key()
        );
    }

    #[test]
    fn ed25519_keys_verify_their_own_signatures() {
        let rng = SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(pair.public_key().as_ref());
        let pem = spki_pem(&der);
        let key = PublicKey::from_pem(&pem).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(key.spki_der(), der.as_slice());
        assert_eq!(key.to_pem(), pem);

        let message = b"an ed25519 message";
        let signature = pair.sign(message);
        assert!(key.verify(message, signature.as_ref()));
        assert!(!key.verify(&flip(message, 0), signature.as_ref()));
        assert!(!key.verify(message, &flip(signature.as_ref(), 5)));
        assert!(!key.verify(message, &[0; 3]));
        assert!(
            !PublicKey::from_pem(COSIGN_PUB)
                .unwrap()
                .verify(message, signature.as_ref())
        );

        // An Ed25519 PKCS#8 is not a signing key here.
        let pem = pem_encode(LABEL_PRIVATE_KEY, pkcs8.as_ref());
        let err = SigningKey::from_pem(&pem).unwrap_err();
        assert!(matches!(err, KeyError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn write_key_pair_creates_private_files_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("my.signer");
        let key = SigningKey::generate().unwrap();
        let public = write_key_pair(&prefix, &key).unwrap();
        assert_eq!(public, key.public_key());

        let key_path = dir.path().join("my.signer.key");
        let pub_path = dir.path().join("my.signer.pub");
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key_text = std::fs::read_to_string(&key_path).unwrap();
        let pub_text = std::fs::read_to_string(&pub_path).unwrap();
        assert_eq!(key_text, key.to_pem());
        assert_eq!(pub_text, public.to_pem());

        assert_eq!(read_public_key(&pub_path).unwrap(), public);
        assert_eq!(read_signing_key(&key_path).unwrap().public_key(), public);

        let second = SigningKey::generate().unwrap();
        let err = write_key_pair(&prefix, &second).unwrap_err();
        assert!(
            matches!(&err, KeyError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert!(err.to_string().contains("my.signer.key"), "{err}");
        assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key_text);
        assert_eq!(std::fs::read_to_string(&pub_path).unwrap(), pub_text);

        // Only the .pub exists: the refusal leaves no .key behind.
        let other = dir.path().join("other");
        std::fs::write(dir.path().join("other.pub"), "mine").unwrap();
        let err = write_key_pair(&other, &second).unwrap_err();
        assert!(err.to_string().contains("other.pub"), "{err}");
        assert!(!dir.path().join("other.key").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("other.pub")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn key_files_are_bounded_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pub");
        let mut text = COSIGN_PUB.to_owned();
        text.push_str(&" ".repeat(MAX_KEY_BYTES as usize));
        std::fs::write(&big, &text).unwrap();
        let err = read_public_key(&big).unwrap_err();
        assert!(matches!(err, KeyError::TooLarge { .. }), "{err}");
        let err = read_signing_key(&big).unwrap_err();
        assert!(matches!(err, KeyError::TooLarge { .. }), "{err}");

        // Exactly at the bound is read.
        let at = dir.path().join("at.pub");
        let pad = MAX_KEY_BYTES as usize - COSIGN_PUB.len();
        std::fs::write(&at, format!("{COSIGN_PUB}{}", "\n".repeat(pad))).unwrap();
        read_public_key(&at).unwrap();

        let missing = dir.path().join("missing.pub");
        let err = read_public_key(&missing).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }), "{err}");

        let wrong = dir.path().join("wrong.key");
        std::fs::write(&wrong, COSIGN_PUB).unwrap();
        let err = read_signing_key(&wrong).unwrap_err();
        assert!(matches!(err, KeyError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("wrong.key"), "{err}");
        assert!(err.to_string().contains("`PUBLIC KEY`"), "{err}");

        let binary = dir.path().join("binary.pub");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let err = read_public_key(&binary).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
    }

    #[test]
    fn encrypted_and_sec1_private_keys_are_unsupported() {
        for label in [
            "ENCRYPTED SIGSTORE PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "EC PRIVATE KEY",
            "RSA PRIVATE KEY",
        ] {
            let pem = format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
            let err = SigningKey::from_pem(&pem).unwrap_err();
            assert!(
                matches!(err, KeyError::Unsupported { .. }),
                "{label}: {err}"
            );
            assert!(err.to_string().contains(&format!("`{label}`")), "{err}");
        }
        // A legacy encrypted SEC1 block has headers; the label refuses it first.
        let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n\
                      -----END EC PRIVATE KEY-----\n";
        let err = SigningKey::from_pem(legacy).unwrap_err();
        assert!(matches!(err, KeyError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn malformed_pem_is_refused() {
        let key = SigningKey::generate().unwrap().to_pem();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("\n \r\n".into(), "blank"),
            (format!("{COSIGN_PUB}{COSIGN_PUB}"), "two blocks"),
            (format!("{COSIGN_PUB}\n{WRONG_PUB}"), "two blocks"),
            (format!("junk\n{COSIGN_PUB}"), "text before"),
            (format!("{COSIGN_PUB}junk\n"), "text after"),
            (
                COSIGN_PUB.replace("-----END PUBLIC KEY-----\n", ""),
                "no end",
            ),
            (
                COSIGN_PUB.replace("-----END PUBLIC KEY-----", "-----END PRIVATE KEY-----"),
                "mismatched end",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nnot*base64!\n-----END PUBLIC KEY-----\n".into(),
                "garbage base64",
            ),
            (
                COSIGN_PUB.replace("MFkw", "MFk"),
                "base64 of the wrong length",
            ),
            (COSIGN_PUB.replace("8xw==", "8xw"), "missing padding"),
            (
                "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".into(),
                "empty body",
            ),
        ];
        for (text, why) in &cases {
            let err = PublicKey::from_pem(text).unwrap_err();
            assert!(
                matches!(
                    err,
                    KeyError::Malformed { .. } | KeyError::Unsupported { .. }
                ),
                "{why}: {err}"
            );
        }
        assert!(matches!(
            PublicKey::from_pem(&format!("{COSIGN_PUB}{COSIGN_PUB}")).unwrap_err(),
            KeyError::Malformed { reason, .. } if reason.contains("more than one PEM block")
        ));
        assert!(matches!(
            SigningKey::from_pem(&format!("{key}{key}")).unwrap_err(),
            KeyError::Malformed { .. }
        ));
        // Errors name lines, never the key's text.
        let err = SigningKey::from_pem(&format!("{key}MIGHAgEAMBMGByqGSM49")).unwrap_err();
        assert!(!err.to_string().contains("MIGH"), "{err}");
        let garbage = key.replace("\n-----END", "*\n-----END");
        assert!(matches!(
            SigningKey::from_pem(&garbage).unwrap_err(),
            KeyError::Malformed { .. }
        ));
        // A private key is not a public key, and the other way round.
        assert!(matches!(
            PublicKey::from_pem(&key).unwrap_err(),
            KeyError::Unsupported { .. }
        ));
        assert!(matches!(
            SigningKey::from_pem(COSIGN_PUB).unwrap_err(),
            KeyError::Unsupported { .. }
        ));
    }

    #[test]
    fn only_the_two_exact_spki_encodings_are_accepted() {
        let unsupported = |der: &[u8]| {
            let err = PublicKey::from_pem(&spki_pem(der)).unwrap_err();
            assert!(matches!(err, KeyError::Unsupported { .. }), "{err}");
            err.to_string()
        };
        let malformed = |der: &[u8]| {
            let err = PublicKey::from_spki_der(der).unwrap_err();
            assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
        };

        // RSA 512 (`openssl genpkey -algorithm RSA ... | openssl pkey -pubout -outform DER`).
        let rsa = hex::decode(
            "305c300d06092a864886f70d0101010500034b0030480241009a33f1c955f42ba94b5ab0937d1a22\
             3cb10b9e100eebd80f630ab805e3ec3e62d878580bbaa1d28a372ad2561e7062fe9c56db1fb8cfac\
             532f436306dae39e470203010001",
        )
        .unwrap();
        assert!(unsupported(&rsa).contains("RSA"));

        // The cosign key with a compressed point (`openssl pkey ... -ec_conv_form compressed`).
        let compressed = hex::decode(
            "3039301306072a8648ce3d020106082a8648ce3d03010703220003369b5d63f9779c1d32aa45cb05\
             6919590c28ebe72e392592d57f6f3dabe98903",
        )
        .unwrap();
        assert!(unsupported(&compressed).contains("compressed"));

        let cosign = PublicKey::from_pem(COSIGN_PUB).unwrap();
        let spki = cosign.spki_der().to_vec();

        // The right length but a compressed-point tag, or a hybrid one.
        let mut tagged = spki.clone();
        tagged[26] = 0x02;
        unsupported(&tagged);
        tagged[26] = 0x06;
        unsupported(&tagged);

        // A point off the curve.
        let mut off = spki.clone();
        off[90] ^= 0x01;
        malformed(&off);
        // The point at infinity, zero-padded.
        let mut zero = P256_SPKI_PREFIX.to_vec();
        zero.push(0x04);
        zero.extend_from_slice(&[0; 64]);
        malformed(&zero);

        // Trailing data, and a truncated key.
        let mut trailing = spki.clone();
        trailing.push(0);
        malformed(&trailing);
        malformed(&spki[..90]);

        // P-384: id-ecPublicKey + secp384r1.
        let mut p384 = hex::decode("3076301006072a8648ce3d020106052b81040022036200").unwrap();
        p384.push(0x04);
        p384.extend_from_slice(&[0x11; 96]);
        assert!(unsupported(&p384).contains("P-256"));

        // Ed448 (1.3.101.113).
        let mut ed448 = hex::decode("3043300506032b6571033a00").unwrap();
        ed448.extend_from_slice(&[0x22; 57]);
        unsupported(&ed448);

        // Ed25519 with a short key or trailing data.
        let mut ed = ED25519_SPKI_PREFIX.to_vec();
        ed.extend_from_slice(&[0x33; 31]);
        malformed(&ed);
        ed.extend_from_slice(&[0x33; 2]);
        malformed(&ed);

        unsupported(&[]);
        unsupported(&[0x30, 0x00]);
    }
}
