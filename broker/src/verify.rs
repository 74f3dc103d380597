//! The verify stage: signatures and attestations become **verified facts**, or nothing.
//!
//! [`Trust`] is what the operator trusts: public keys, keyless identities (certificate SAN and
//! OIDC issuer, matched exactly) and a Sigstore trusted root — the embedded public-good
//! production root by default, or one given for a private deployment. [`Trust::verify_bundle`]
//! checks one Sigstore bundle against it; [`verify_blob`] does so for a plain blob. Nothing here
//! touches the network. Bundle verification itself is `sigstore-verify`, which passes the
//! sigstore-conformance suite.

use std::collections::BTreeMap;
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

use crate::keys::PublicKey;
use crate::pipeline::PipelineError;
use crate::rejection::Rejection;

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
    /// A keyless signature whose certificate names this identity (SAN) and OIDC issuer.
    Identity {
        /// The certificate's subject alternative name: exactly, or by an anchored pattern.
        identity: Match,
        /// The OIDC issuer: exactly, or by an anchored pattern.
        issuer: Match,
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

/// How a signature was made.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SignerKind {
    /// With a key the operator trusts.
    Key,
    /// With a short-lived certificate naming an identity (Sigstore keyless).
    Keyless,
    /// Not signed: what policies see for an artifact without a verified signature.
    None,
}

impl SignerKind {
    /// `key` or `keyless`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Keyless => "keyless",
            Self::None => "none",
        }
    }
}

impl std::fmt::Display for SignerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signature that verified: who made it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signer {
    /// Key or keyless.
    pub kind: SignerKind,
    /// Key: `sha256:<hex of SPKI DER>`; keyless: the certificate's SAN.
    pub identity: String,
    /// Key: `key`; keyless: the OIDC issuer.
    pub issuer: String,
    /// Keyless only: the CI claims the certificate carries (Fulcio's extensions, such as
    /// `sourceRepositoryUri` and `buildSignerUri` for GitHub Actions), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

impl Signer {
    /// A signature by the key with this fingerprint.
    pub fn key(fingerprint: String) -> Self {
        Self {
            kind: SignerKind::Key,
            identity: fingerprint,
            issuer: "key".into(),
            claims: BTreeMap::new(),
        }
    }
}

/// A keyless signer the operator trusts: the certificate's identity and its issuer must both
/// match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The certificate's subject alternative name (an email address or a URI).
    pub identity: Match,
    /// The OIDC issuer recorded in the certificate.
    pub issuer: Match,
}

impl Identity {
    /// Whether a certificate naming `identity` from `issuer` is this signer.
    pub fn matches(&self, identity: &str, issuer: &str) -> bool {
        self.identity.matches(identity) && self.issuer.matches(issuer)
    }
}

/// Longest identity or issuer pattern accepted, in bytes: a real one is a URL with a wildcard
/// or two.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Most memory one compiled pattern may take (the `regex` crate's compiled-program limit): far
/// above any real identity pattern, far below what a hostile one could ask for.
pub const MAX_PATTERN_PROGRAM_BYTES: usize = 1 << 20;

/// How one part of a keyless identity is matched: exactly, or by a regular expression that
/// must match the **whole** text — anchored at both ends whatever the pattern says, so
/// `https://github.com/acme/.*` does not match `https://github.com/acme-evil/…`'s prefix
/// trick, and nothing may follow what the pattern names. Patterns run on the `regex` crate's
/// finite automata: matching takes time linear in the text, whatever the pattern.
#[derive(Clone, Debug)]
pub enum Match {
    /// Equal, byte for byte.
    Exact(String),
    /// Matched whole by the pattern (as written, for messages and the trust id).
    Pattern {
        /// The pattern as the operator wrote it.
        source: String,
        /// `\A(?:source)\z`, compiled.
        regex: regex::Regex,
    },
}

impl Match {
    /// A pattern matched against the whole text; refused when it does not compile, is longer
    /// than [`MAX_PATTERN_BYTES`] or compiles larger than [`MAX_PATTERN_PROGRAM_BYTES`].
    pub fn pattern(source: &str) -> Result<Self, String> {
        if source.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "pattern is {} bytes, more than {MAX_PATTERN_BYTES}",
                source.len()
            ));
        }
        // INVARIANT (anchored patterns): a pattern matches the whole identity or nothing.
        let regex = regex::RegexBuilder::new(&format!(r"\A(?:{source})\z"))
            .size_limit(MAX_PATTERN_PROGRAM_BYTES)
            .dfa_size_limit(MAX_PATTERN_PROGRAM_BYTES)
            .build()
            .map_err(|e| format!("pattern `{source}` is not a valid regular expression: {e}"))?;
        Ok(Self::Pattern {
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == text,
            Self::Pattern { regex, .. } => regex.is_match(text),
        }
    }

    /// The exact text, or `/pattern/`.
    pub fn describe(&self) -> String {
        match self {
            Self::Exact(exact) => exact.clone(),
            Self::Pattern { source, .. } => format!("/{source}/"),
        }
    }
}

impl PartialEq for Match {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Pattern { source: a, .. }, Self::Pattern { source: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Match {}

impl From<String> for Match {
    fn from(exact: String) -> Self {
        Self::Exact(exact)
    }
}

impl From<&str> for Match {
    fn from(exact: &str) -> Self {
        Self::Exact(exact.to_owned())
    }
}

/// What a bundle is checked over.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A file, streamed.
    File(&'a Path),
    /// Bytes in memory (a cosign simple-signing payload).
    Bytes(&'a [u8]),
    /// Only a `sha256:` digest (an OCI manifest).
    Digest(&'a Digest),
}

impl<'a> From<&'a BlobInput> for Subject<'a> {
    fn from(input: &'a BlobInput) -> Self {
        match input {
            BlobInput::File(path) => Self::File(path),
            BlobInput::Digest(digest) => Self::Digest(digest),
        }
    }
}

/// Everything a signature can be trusted by: keys, keyless identities, and the Sigstore trusted
/// root that keyless certificates and transparency-log entries must chain to.
pub struct Trust {
    keys: Vec<PublicKey>,
    bundle_keys: Vec<(DerPublicKey, String)>,
    identities: Vec<Identity>,
    any_identity: bool,
    verifier: Verifier,
    /// `sha256:` of the trusted root's JSON, for [`Trust::id`].
    root_digest: String,
    id: String,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field(
                "keys",
                &self.bundle_keys.iter().map(|k| &k.1).collect::<Vec<_>>(),
            )
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

impl Trust {
    /// Trust `keys` and `identities`, with keyless signatures chaining to `root`.
    pub fn new(
        keys: Vec<PublicKey>,
        identities: Vec<Identity>,
        root: &TrustedRoot,
    ) -> Result<Self, VerifyError> {
        let bundle_keys: Vec<(DerPublicKey, String)> = keys
            .iter()
            .map(|k| (DerPublicKey::new(k.spki_der().to_vec()), k.fingerprint()))
            .collect();
        let root_digest = root_digest(root)?;
        let id = trust_id(&root_digest, &bundle_keys, &identities, false);
        Ok(Self {
            keys,
            bundle_keys,
            identities,
            any_identity: false,
            verifier: verifier(root)?,
            root_digest,
            id,
        })
    }

    /// When no identity is given, accept a keyless signature by **any** identity the trusted
    /// root certifies, as a fact for policies to judge (`warrant run`). Given identities still
    /// restrict keyless signatures to themselves.
    pub fn accepting_any_identity(mut self) -> Self {
        self.any_identity = self.identities.is_empty();
        self.id = trust_id(
            &self.root_digest,
            &self.bundle_keys,
            &self.identities,
            self.any_identity,
        );
        self
    }

    /// True when the operator named a signer (a key or an identity): then at least one
    /// [`Trust::is_named`] signature is required.
    pub fn names_signers(&self) -> bool {
        !self.bundle_keys.is_empty() || !self.identities.is_empty()
    }

    /// True when `signer` is one the operator named: by a trusted key, or a keyless signature
    /// matching a given identity (not one accepted only as a fact for policies).
    pub fn is_named(&self, signer: &Signer) -> bool {
        match signer.kind {
            SignerKind::Key => true,
            SignerKind::Keyless => !self.identities.is_empty(),
            SignerKind::None => false,
        }
    }

    /// A digest of everything trusted (root, keys, identities): equal ids, equal trust.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Trust `keys` only, with the embedded production root for anything keyless.
    pub fn keys(keys: &[PublicKey]) -> Result<Self, VerifyError> {
        Self::new(keys.to_vec(), Vec::new(), &load_trusted_root(None)?)
    }

    /// Trust the public keys (PEM) in `paths` only, with the embedded production root for
    /// anything keyless: what `--key PUB` means.
    pub fn from_key_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, crate::Error> {
        let keys = paths
            .iter()
            .map(|path| crate::keys::read_public_key(path.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::keys(&keys).map_err(|e| PipelineError::Verify(e).into())
    }

    /// Nothing is trusted: no key, no identity, and keyless signatures are not accepted as
    /// facts either.
    pub fn is_empty(&self) -> bool {
        self.bundle_keys.is_empty() && self.identities.is_empty() && !self.any_identity
    }

    /// The trusted public keys (for cosign signatures and DSSE envelopes).
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The trusted keyless identities.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// Verify `bundle` over `subject`: with a certificate, the certificate must chain to the
    /// trusted root, carry a valid SCT, be logged, and name a trusted identity; without one, it
    /// must verify with a trusted key. Offline. The error is the reason, for a verdict.
    pub fn verify_bundle(
        &self,
        bundle: &Bundle,
        subject: Subject<'_>,
    ) -> Result<Signer, Rejection> {
        if bundle.signing_certificate().is_some() {
            return self.verify_keyless(bundle, subject);
        }
        if self.bundle_keys.is_empty() {
            return Err(Rejection::NoTrustedKey { bundle: true });
        }
        let mut reasons = Vec::new();
        for (key, fingerprint) in &self.bundle_keys {
            let policy = PublicKeyVerificationPolicy::new(key.clone());
            match check(&self.verifier, bundle, subject, &policy) {
                Ok(_) => return Ok(Signer::key(fingerprint.clone())),
                Err(e) => reasons.push((fingerprint.clone(), e)),
            }
        }
        Err(Rejection::BundleKeyMismatch { reasons })
    }

    fn verify_keyless(&self, bundle: &Bundle, subject: Subject<'_>) -> Result<Signer, Rejection> {
        if self.identities.is_empty() && !self.any_identity {
            return Err(Rejection::NoTrustedIdentity);
        }
        // Cryptography first (chain, SCT, log, signature); then the identity, matched exactly
        // against each trusted pair here, so that a mismatch names what the certificate says.
        let result = check(
            &self.verifier,
            bundle,
            subject,
            &VerificationPolicy::any_identity(),
        )
        .map_err(|detail| Rejection::BundleInvalid { detail })?;
        let Some(info) = result.certificate() else {
            return Err(Rejection::NoCertificate);
        };
        let identity = info.identity.as_ref().map(|san| san.as_str()).unwrap_or("");
        let issuer = info.issuer.as_deref().unwrap_or("");
        if !self.any_identity && !self.identities.iter().any(|t| t.matches(identity, issuer)) {
            return Err(Rejection::UntrustedIdentity {
                identity: identity.to_owned(),
                issuer: issuer.to_owned(),
            });
        }
        Ok(Signer {
            kind: SignerKind::Keyless,
            identity: identity.to_owned(),
            issuer: issuer.to_owned(),
            claims: ci_claims(&info.ci_claims),
        })
    }
}

/// The CI claims worth a fact, by the names Fulcio's documentation gives them.
fn ci_claims(claims: &sigstore_verify::crypto::FulcioCiClaims) -> BTreeMap<String, String> {
    [
        ("buildSignerUri", &claims.build_signer_uri),
        ("buildSignerDigest", &claims.build_signer_digest),
        ("runnerEnvironment", &claims.runner_environment),
        ("sourceRepositoryUri", &claims.source_repository_uri),
        ("sourceRepositoryDigest", &claims.source_repository_digest),
        ("sourceRepositoryRef", &claims.source_repository_ref),
        (
            "sourceRepositoryOwnerUri",
            &claims.source_repository_owner_uri,
        ),
        ("buildConfigUri", &claims.build_config_uri),
        ("buildConfigDigest", &claims.build_config_digest),
        ("buildTrigger", &claims.build_trigger),
        ("runInvocationUri", &claims.run_invocation_uri),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.clone().map(|v| (name.to_owned(), v)))
    .collect()
}

/// `sha256:` over a canonical statement of the trust: the root's JSON, the sorted key
/// fingerprints, the sorted identity pairs, whether any identity is accepted.
fn trust_id(
    root_digest: &str,
    keys: &[(DerPublicKey, String)],
    identities: &[Identity],
    any_identity: bool,
) -> String {
    let mut keys: Vec<&str> = keys.iter().map(|(_, f)| f.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    // Exact pairs as they always were (so an id made before patterns existed is unchanged);
    // a pair with a pattern in it goes in a list of its own, each part tagged.
    let mut exact: Vec<(&str, &str)> = Vec::new();
    let mut patterns: Vec<(String, String)> = Vec::new();
    for i in identities {
        match (&i.identity, &i.issuer) {
            (Match::Exact(identity), Match::Exact(issuer)) => exact.push((identity, issuer)),
            (identity, issuer) => patterns.push((tagged(identity), tagged(issuer))),
        }
    }
    exact.sort_unstable();
    exact.dedup();
    patterns.sort_unstable();
    patterns.dedup();
    let mut statement = serde_json::json!({
        "v": 1,
        "root": root_digest,
        "keys": keys,
        "identities": exact,
        "anyIdentity": any_identity,
    });
    if let (false, Some(map)) = (patterns.is_empty(), statement.as_object_mut()) {
        map.insert("identityPatterns".into(), serde_json::json!(patterns));
    }
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(statement.to_string().as_bytes()))
    )
}

/// `exact:TEXT` or `pattern:SOURCE`, for the trust id.
fn tagged(part: &Match) -> String {
    match part {
        Match::Exact(exact) => format!("exact:{exact}"),
        Match::Pattern { source, .. } => format!("pattern:{source}"),
    }
}

/// Hex SHA-256 of the trusted root's JSON (as serialized again from its parsed form).
fn root_digest(root: &TrustedRoot) -> Result<String, VerifyError> {
    let root = serde_json::to_vec(root).map_err(|e| VerifyError::Trust {
        what: "trusted root",
        path: PathBuf::from("(given)"),
        reason: e.to_string(),
    })?;
    Ok(hex::encode(Sha256::digest(&root)))
}

fn verifier(root: &TrustedRoot) -> Result<Verifier, VerifyError> {
    Verifier::new(root).map_err(|e| VerifyError::Trust {
        what: "trusted root",
        path: PathBuf::from("(given)"),
        reason: e.to_string(),
    })
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
    let trust = match requirement {
        SignerRequirement::Key(key_path) => {
            // Any key type sigstore-verify accepts (RSA too), not only the two Warrant signs with.
            let pem = read_text(key_path, limits::MAX_KEY_BYTES, "public key")?;
            let key = DerPublicKey::from_pem(&pem).map_err(|e| VerifyError::Trust {
                what: "public key",
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
            let fingerprint = key_fingerprint(key.as_bytes());
            let bundle_keys = vec![(key, fingerprint)];
            let root_digest = root_digest(trusted_root)?;
            Trust {
                id: trust_id(&root_digest, &bundle_keys, &[], false),
                keys: Vec::new(),
                bundle_keys,
                identities: Vec::new(),
                any_identity: false,
                verifier: verifier(trusted_root)?,
                root_digest,
            }
        }
        SignerRequirement::Identity { identity, issuer } => Trust::new(
            Vec::new(),
            vec![Identity {
                identity: identity.clone(),
                issuer: issuer.clone(),
            }],
            trusted_root,
        )?,
    };
    if let Subject::File(path) = Subject::from(input) {
        // An unreadable artifact is the operator's problem (exit 2), not a failed signature.
        open(path)?;
    }
    trust
        .verify_bundle(&bundle, input.into())
        .map_err(|r| VerifyError::Failed(r.to_string()))
}

/// Verify `bundle` over `subject` under `policy`.
fn check(
    verifier: &Verifier,
    bundle: &Bundle,
    subject: Subject<'_>,
    policy: &impl Policy,
) -> Result<VerificationResult, String> {
    match subject {
        Subject::File(path) => {
            let file = File::open(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
            verifier.verify_reader(file, bundle, policy)
        }
        Subject::Bytes(bytes) => verifier.verify(bytes, bundle, policy),
        Subject::Digest(d) => verifier.verify(Artifact::from_digest(sha256_of(d)?), bundle, policy),
    }
    .map_err(|e| e.to_string())
}

fn sha256_of(digest: &Digest) -> Result<ArtifactDigest, String> {
    Sha256Hash::from_hex(digest.hex())
        .map(ArtifactDigest::sha256)
        .map_err(|e| format!("digest `{digest}`: {e}"))
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

#[cfg(test)]
mod pattern_tests {
    use super::{Identity, MAX_PATTERN_BYTES, Match};

    const RELEASE: &str =
        "https://github.com/acme/plugin/.github/workflows/release.yml@refs/tags/v1.2.0";
    const GITHUB: &str = "https://token.actions.githubusercontent.com";

    /// Cosign's `--certificate-identity-regexp 'https://github.com/acme/.*'` is unanchored at
    /// the start and the end: a repository of `acme-evil`, an identity with a suffix after the
    /// tag, an issuer with a trailing path all pass it. Warrant's patterns match whole texts.
    #[test]
    fn patterns_match_the_whole_identity_regression_unanchored_cosign_regexp() {
        let acme = Match::pattern("https://github.com/acme/.*").unwrap();
        assert!(acme.matches(RELEASE));
        assert!(!acme.matches(
            "https://github.com/acme-evil/plugin/.github/workflows/release.yml@refs/tags/v1"
        ));
        assert!(!acme.matches(&format!("https://evil.example/?{RELEASE}")));

        let tagged = Match::pattern(
            r"https://github\.com/acme/plugin/\.github/workflows/release\.yml@refs/tags/v[0-9.]+",
        )
        .unwrap();
        assert!(tagged.matches(RELEASE));
        assert!(!tagged.matches(&format!("{RELEASE}-evil")));
        assert!(!tagged.matches(&format!("{RELEASE}\n")));
        assert!(
            !tagged.matches(
                "https://github.com/acme/plugin/.github/workflows/release.yml@refs/heads/v1"
            )
        );

        // An alternation is anchored as a whole, not just its first and last branch.
        let either = Match::pattern("https://a.example|https://b.example").unwrap();
        assert!(either.matches("https://b.example"));
        assert!(!either.matches("https://b.example.evil"));
        assert!(!either.matches("https://evil/https://a.example"));

        let issuer = Identity {
            identity: acme,
            issuer: Match::pattern(r"https://token\.actions\.githubusercontent\.com").unwrap(),
        };
        assert!(issuer.matches(RELEASE, GITHUB));
        assert!(!issuer.matches(RELEASE, &format!("{GITHUB}/evil")));
        assert!(!issuer.matches(RELEASE, &format!("{GITHUB}.evil.example")));
    }

    #[test]
    fn exact_forms_stay_exact() {
        let exact = Identity {
            identity: RELEASE.into(),
            issuer: GITHUB.into(),
        };
        assert!(exact.matches(RELEASE, GITHUB));
        // A dot in an exact identity is a dot, not "any character".
        assert!(!exact.matches(&RELEASE.replace(".yml", "Xyml"), GITHUB));
        assert!(!exact.matches(RELEASE, &GITHUB.to_uppercase()));
    }

    /// A pattern that makes a backtracking engine take exponential time matches in linear
    /// time here; a pattern that would compile huge, or is too long, is refused.
    #[test]
    fn a_pathological_pattern_stays_bounded() {
        let evil = Match::pattern("(a*)*b|(a|aa)*c").unwrap();
        let text = "a".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(!evil.matches(&text));
        // Generous: linear matching of 100 kB takes milliseconds; backtracking would take
        // longer than the age of the universe.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));

        let huge = Match::pattern(r"\w{1000}{1000}").unwrap_err();
        assert!(huge.contains("not a valid regular expression"), "{huge}");
        let long = Match::pattern(&"a".repeat(MAX_PATTERN_BYTES + 1)).unwrap_err();
        assert!(long.contains("more than"), "{long}");
        assert!(Match::pattern("(unclosed").is_err());
    }
}
