//! The verify stage: signatures and attestations become **verified facts**, or nothing.
//!
//! This module holds what exists so far: verification of a Sigstore bundle over a plain blob
//! ([`verify_blob`]), keyed (a public key) or keyless (a certificate identity and OIDC issuer,
//! matched exactly) against a Sigstore trusted root — the embedded public-good production root
//! by default, or one given for a private deployment. It never touches the network.
//! Verification itself is `sigstore-verify`, which passes the sigstore-conformance suite.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use registry_client::Digest;
use sha2::{Digest as _, Sha256};
use sigstore_verify::trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT;
/// A parsed Sigstore trusted root.
pub use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::{Artifact, ArtifactDigest, Bundle, DerPublicKey, Sha256Hash};
use sigstore_verify::{
    Policy, PublicKeyVerificationPolicy, VerificationPolicy, VerificationResult, Verifier,
};

/// The verify stage's bounds.
pub mod limits {
    /// Largest Sigstore bundle read.
    pub const MAX_BUNDLE_BYTES: u64 = 1024 * 1024;
    /// Largest trusted root read.
    pub const MAX_TRUSTED_ROOT_BYTES: u64 = 4 * 1024 * 1024;
    /// Largest public key file read.
    pub const MAX_KEY_BYTES: u64 = 64 * 1024;
}

/// What a signature must have been made by.
#[derive(Clone, Debug)]
pub enum SignerRequirement {
    /// A signature by this public key (PEM, SubjectPublicKeyInfo).
    Key(PathBuf),
    /// A keyless signature whose certificate names exactly this identity (SAN) and OIDC issuer.
    Identity {
        /// The certificate's subject alternative name, matched exactly.
        identity: String,
        /// The OIDC issuer, matched exactly.
        issuer: String,
    },
}

/// What was signed: a file's bytes, or only their digest.
#[derive(Clone, Debug)]
pub enum BlobInput {
    /// A file, streamed.
    File(PathBuf),
    /// A `sha256:` digest of the bytes.
    Digest(Digest),
}

impl BlobInput {
    /// `sha256:` + 64 hex that is not an existing path is a digest; anything else a path.
    pub fn parse(text: &str) -> Self {
        match text.parse::<Digest>() {
            Ok(digest) if !Path::new(text).exists() => Self::Digest(digest),
            _ => Self::File(PathBuf::from(text)),
        }
    }
}

/// A signature that verified: who made it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    /// `key` or `keyless`.
    pub kind: &'static str,
    /// Key: `sha256:<hex of SPKI DER>`; keyless: the certificate's SAN.
    pub identity: String,
    /// Key: `key`; keyless: the OIDC issuer.
    pub issuer: String,
}

/// Why verification refused, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An input file could not be read or is too large.
    #[error("cannot read {what} `{path}`: {reason}", path = .path.display())]
    Input {
        /// Which input.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The trusted root or key could not be used (operator configuration).
    #[error("unusable {what} `{path}`: {reason}", path = .path.display())]
    Trust {
        /// Which part of the trust configuration.
        what: &'static str,
        /// Its path (or `embedded`).
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The bundle is not a Sigstore bundle.
    #[error("malformed bundle `{path}`: {reason}", path = .path.display())]
    MalformedBundle {
        /// The bundle file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
    /// The bundle did not verify against the trust and the requirement.
    #[error("verification failed: {0}")]
    Failed(String),
}

impl VerifyError {
    /// True when the operator's input or configuration is at fault (exit 2), not the
    /// signature (exit 122).
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Input { .. } | Self::Trust { .. })
    }
}

/// Load a trusted root from `path`, or the embedded public-good production root.
pub fn load_trusted_root(path: Option<&Path>) -> Result<TrustedRoot, VerifyError> {
    match path {
        None => TrustedRoot::from_json(SIGSTORE_PRODUCTION_TRUSTED_ROOT).map_err(|e| {
            VerifyError::Trust {
                what: "trusted root",
                path: PathBuf::from("embedded"),
                reason: e.to_string(),
            }
        }),
        Some(path) => {
            let text = read_text(path, limits::MAX_TRUSTED_ROOT_BYTES, "trusted root")?;
            TrustedRoot::from_json(&text).map_err(|e| VerifyError::Trust {
                what: "trusted root",
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
    }
}

/// The fingerprint Warrant gives a public key: `sha256:` + hex of its SubjectPublicKeyInfo DER.
pub fn key_fingerprint(spki_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(spki_der)))
}

/// Verify a Sigstore bundle over a blob. Offline; the identity and issuer match exactly.
pub fn verify_blob(
    bundle_path: &Path,
    input: &BlobInput,
    requirement: &SignerRequirement,
    trusted_root: &TrustedRoot,
) -> Result<Signer, VerifyError> {
    let text = read_text(bundle_path, limits::MAX_BUNDLE_BYTES, "bundle")?;
    verify_bundle_text(&text, bundle_path, input, requirement, trusted_root)
}

/// [`verify_blob`] for a bundle already read (at most [`limits::MAX_BUNDLE_BYTES`]);
/// `bundle_path` only names it in errors.
pub fn verify_bundle_text(
    text: &str,
    bundle_path: &Path,
    input: &BlobInput,
    requirement: &SignerRequirement,
    trusted_root: &TrustedRoot,
) -> Result<Signer, VerifyError> {
    if text.len() as u64 > limits::MAX_BUNDLE_BYTES {
        return Err(VerifyError::MalformedBundle {
            path: bundle_path.to_owned(),
            reason: format!("larger than {} bytes", limits::MAX_BUNDLE_BYTES),
        });
    }
    let malformed = |reason: String| VerifyError::MalformedBundle {
        path: bundle_path.to_owned(),
        reason,
    };
    registry_client::json::check_depth(text.as_bytes(), registry_client::limits::MAX_JSON_DEPTH)
        .map_err(malformed)?;
    let bundle = Bundle::from_json(text).map_err(|e| malformed(e.to_string()))?;
    let verifier = Verifier::new(trusted_root).map_err(|e| VerifyError::Trust {
        what: "trusted root",
        path: PathBuf::from("(given)"),
        reason: e.to_string(),
    })?;

    match requirement {
        SignerRequirement::Key(key_path) => {
            let pem = read_text(key_path, limits::MAX_KEY_BYTES, "public key")?;
            let key = DerPublicKey::from_pem(&pem).map_err(|e| VerifyError::Trust {
                what: "public key",
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
            let fingerprint = key_fingerprint(key.as_bytes());
            let policy = PublicKeyVerificationPolicy::new(key);
            check(&verifier, &bundle, input, &policy)?;
            Ok(Signer {
                kind: "key",
                identity: fingerprint,
                issuer: "key".into(),
            })
        }
        SignerRequirement::Identity { identity, issuer } => {
            let policy = VerificationPolicy::new(identity.as_str(), issuer.as_str());
            let result = check(&verifier, &bundle, input, &policy)?;
            Ok(Signer {
                kind: "keyless",
                identity: result
                    .identity()
                    .map_or_else(|| identity.clone(), |san| san.as_str().to_owned()),
                issuer: result.issuer().unwrap_or(issuer).to_owned(),
            })
        }
    }
}

/// Verify `bundle` over the input, a streamed file or a digest, under `policy`.
fn check(
    verifier: &Verifier,
    bundle: &Bundle,
    input: &BlobInput,
    policy: &impl Policy,
) -> Result<VerificationResult, VerifyError> {
    match input {
        BlobInput::File(path) => verifier.verify_reader(open(path)?, bundle, policy),
        BlobInput::Digest(d) => {
            verifier.verify(Artifact::from_digest(sha256_of(d)?), bundle, policy)
        }
    }
    .map_err(|e| VerifyError::Failed(e.to_string()))
}

fn sha256_of(digest: &Digest) -> Result<ArtifactDigest, VerifyError> {
    Sha256Hash::from_hex(digest.hex())
        .map(ArtifactDigest::sha256)
        .map_err(|e| VerifyError::Failed(format!("digest `{digest}`: {e}")))
}

fn open(path: &Path) -> Result<File, VerifyError> {
    File::open(path).map_err(|e| VerifyError::Input {
        what: "artifact",
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, VerifyError> {
    let bad = |reason: String| VerifyError::Input {
        what,
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    file.take(limit.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > limit {
        return Err(bad(format!("larger than {limit} bytes")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_a_digest_unless_such_a_file_exists() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(BlobInput::parse(d), BlobInput::Digest(_)));
        assert!(matches!(BlobInput::parse("a.txt"), BlobInput::File(_)));
        assert!(matches!(
            BlobInput::parse("sha256:nothex"),
            BlobInput::File(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(d);
        std::fs::write(&path, b"x").unwrap();
        let text = path.display().to_string();
        assert!(matches!(BlobInput::parse(&text), BlobInput::File(_)));
    }

    #[test]
    fn key_fingerprints_are_sha256_of_the_spki() {
        assert_eq!(
            key_fingerprint(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_embedded_production_root_loads() {
        load_trusted_root(None).unwrap();
    }

    #[test]
    fn oversized_and_deep_bundles_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let root = load_trusted_root(None).unwrap();
        let requirement = SignerRequirement::Identity {
            identity: "i".into(),
            issuer: "u".into(),
        };
        let input = BlobInput::Digest(Digest::of(b""));

        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; limits::MAX_BUNDLE_BYTES as usize + 1]).unwrap();
        let err = verify_blob(&big, &input, &requirement, &root).unwrap_err();
        assert!(matches!(err, VerifyError::Input { .. }), "{err}");

        let deep = dir.path().join("deep.json");
        std::fs::write(
            &deep,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        )
        .unwrap();
        let err = verify_blob(&deep, &input, &requirement, &root).unwrap_err();
        assert!(matches!(err, VerifyError::MalformedBundle { .. }), "{err}");
        assert!(!err.is_usage());
    }
}
