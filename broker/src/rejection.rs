//! Why a signature, attestation or Sigstore bundle found beside an artifact did not become a
//! fact: a closed set of reasons, each with its details as data, rendered in one place.
//! Untrusted text in a reason (a media type, a payload's digest, an identity) is cut to an
//! excerpt when the reason is made, and escaped wherever it is shown.

use registry_client::Digest;
use serde::{Deserialize, Serialize};

/// Why something found beside an artifact was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "rejection",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Rejection {
    /// A layer's media type is not the one expected there.
    MediaType {
        /// The layer's media type.
        found: String,
        /// The one expected.
        expected: String,
    },
    /// A referrer's one layer is not a Sigstore bundle.
    NotABundle {
        /// The layer's media type.
        media_type: String,
    },
    /// A referrer holds other than exactly one layer.
    LayerCount {
        /// How many it holds.
        count: usize,
    },
    /// A referrer's subject is not the artifact.
    SubjectNotArtifact {
        /// The artifact.
        artifact: Digest,
    },
    /// A required annotation is missing.
    MissingAnnotation {
        /// The annotation.
        name: String,
        /// Missing from a keyless signature (which needs more of them).
        keyless: bool,
    },
    /// An annotation is longer than accepted.
    AnnotationTooLong {
        /// Which (`signature annotation`, or the annotation's name).
        what: String,
        /// The limit, in characters.
        limit: usize,
    },
    /// A signed document is larger than accepted.
    TooLarge {
        /// Which (`payload`, `envelope`, `bundle`).
        what: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A part of it could not be fetched, or was listed and is not there.
    Unfetchable {
        /// Which part.
        what: String,
        /// Why.
        detail: String,
    },
    /// A part of it is not well-formed (encoding, JSON, certificate, bundle).
    Malformed {
        /// Which part, as the message begins.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A signed payload is not of the type a signature of an artifact has.
    PayloadType {
        /// Where: `payload`, or `DSSE payload`.
        what: String,
        /// The payload's type.
        found: String,
        /// The one expected, as the message says it.
        expected: String,
    },
    /// An envelope holds more signatures than are considered.
    TooManySignatures {
        /// How many it holds.
        count: usize,
        /// How many are considered.
        limit: usize,
    },
    /// No public key is trusted, so a keyed signature cannot verify.
    NoTrustedKey {
        /// It was a keyed Sigstore bundle.
        bundle: bool,
    },
    /// No keyless identity is trusted, so a keyless signature cannot verify.
    NoTrustedIdentity,
    /// The signature verifies with none of the trusted keys.
    KeyMismatch {
        /// The trusted keys' fingerprints.
        keys: Vec<String>,
    },
    /// No signature of a DSSE envelope verifies with a trusted key.
    EnvelopeKeyMismatch,
    /// A keyed bundle verifies with none of the trusted keys.
    BundleKeyMismatch {
        /// Each key's fingerprint and the verifier's reason.
        reasons: Vec<(String, String)>,
    },
    /// The Sigstore verifier refused the bundle (chain, SCT, log entry, signature).
    BundleInvalid {
        /// The verifier's reason.
        detail: String,
    },
    /// A keyless bundle verified without a certificate.
    NoCertificate,
    /// The certificate's identity is not a trusted one.
    UntrustedIdentity {
        /// The certificate's subject alternative name.
        identity: String,
        /// Its OIDC issuer.
        issuer: String,
    },
    /// The signed payload names another digest than the artifact's.
    WrongDigest {
        /// What the payload names.
        named: String,
        /// The artifact.
        artifact: Digest,
    },
    /// A statement's type is not an in-toto statement's.
    StatementType {
        /// The type.
        found: String,
    },
    /// A statement's subjects do not include the artifact.
    SubjectsMissArtifact {
        /// The artifact.
        artifact: Digest,
    },
    /// A transparency-log entry of a kind that cannot be verified under current rules.
    UnsupportedLogEntry {
        /// The entry's kind.
        kind: String,
        /// Its API version.
        version: String,
    },
    /// A SLSA provenance without a builder id.
    NoBuilderId {
        /// The predicate type.
        predicate_type: String,
    },
    /// A bundle's content is neither a message signature nor a DSSE envelope.
    UnsupportedContent,
}

impl Rejection {
    /// [`Rejection::Malformed`].
    pub(crate) fn malformed(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// [`Rejection::Unfetchable`].
    pub(crate) fn unfetchable(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Unfetchable {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// A JSON document that did not parse (the parser's message names the document).
    pub(crate) fn json(e: &registry_client::Error) -> Self {
        match e {
            registry_client::Error::Malformed { what, reason } => {
                Self::malformed(format!("malformed {what}"), reason)
            }
            other => Self::malformed("JSON", other),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MediaType { found, expected } => {
                write!(f, "media type `{found}` is not `{expected}`")
            }
            Self::NotABundle { media_type } => {
                write!(
                    f,
                    "layer media type `{media_type}` is not a Sigstore bundle"
                )
            }
            Self::LayerCount { count } => write!(f, "{count} layers, expected one bundle"),
            Self::SubjectNotArtifact { artifact } => write!(f, "its subject is not `{artifact}`"),
            Self::MissingAnnotation {
                name,
                keyless: true,
            } => write!(f, "a keyless signature without the `{name}` annotation"),
            Self::MissingAnnotation {
                name,
                keyless: false,
            } => write!(f, "no `{name}` annotation"),
            Self::AnnotationTooLong { what, limit } => {
                write!(f, "{what} longer than {limit} characters")
            }
            Self::TooLarge { what, size, limit } => {
                write!(
                    f,
                    "{what} of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            Self::Unfetchable { what, detail } | Self::Malformed { what, detail } => {
                write!(f, "{what}: {detail}")
            }
            Self::PayloadType {
                what,
                found,
                expected,
            } => write!(f, "{what} type `{found}` is not {expected}"),
            Self::TooManySignatures { count, limit } => write!(
                f,
                "{count} envelope signatures; at most {limit} are considered"
            ),
            Self::NoTrustedKey { bundle: false } => {
                f.write_str("no public key is trusted (give `--key`)")
            }
            Self::NoTrustedKey { bundle: true } => {
                f.write_str("a keyed bundle, and no public key is trusted (give `--key`)")
            }
            Self::NoTrustedIdentity => f.write_str(
                "a keyless signature, and no certificate identity is trusted (give \
                 `--certificate-identity` with `--certificate-oidc-issuer`)",
            ),
            Self::KeyMismatch { keys } => write!(
                f,
                "the signature does not verify with any trusted key ({})",
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::EnvelopeKeyMismatch => {
                f.write_str("no envelope signature verifies with a trusted key")
            }
            Self::BundleKeyMismatch { reasons } => write!(
                f,
                "does not verify with any trusted key ({})",
                reasons
                    .iter()
                    .map(|(key, reason)| format!("`{key}`: {reason}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Self::BundleInvalid { detail } => f.write_str(detail),
            Self::NoCertificate => f.write_str("verified without a certificate"),
            Self::UntrustedIdentity { identity, issuer } => write!(
                f,
                "certificate identity `{identity}` from issuer `{issuer}` is not trusted"
            ),
            Self::WrongDigest { named, artifact } => {
                write!(f, "payload names `{named}`, not the artifact `{artifact}`")
            }
            Self::StatementType { found } => {
                write!(f, "statement type `{found}` is not an in-toto statement")
            }
            Self::SubjectsMissArtifact { artifact } => write!(
                f,
                "the statement's subjects do not include the artifact `{artifact}`"
            ),
            Self::UnsupportedLogEntry { kind, version } => write!(
                f,
                "transparency-log entry kind `{kind}` {version} is not supported (only \
                 `hashedrekord`, which cosign has written since 2022)"
            ),
            Self::NoBuilderId { predicate_type } => {
                write!(f, "`{predicate_type}` provenance without a builder id")
            }
            Self::UnsupportedContent => f.write_str("unsupported bundle content"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rejection is recorded (the `verify` audit record, the verdict cache) as its kind and
    /// its details, and read back as the same variant.
    #[test]
    fn a_rejection_is_recorded_as_its_kind_and_details() {
        let artifact = Digest::of(b"artifact");
        let rejection = Rejection::WrongDigest {
            named: "sha256:00".into(),
            artifact: artifact.clone(),
        };
        let json = serde_json::to_value(&rejection).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "rejection": "wrongDigest",
                "named": "sha256:00",
                "artifact": artifact.to_string(),
            })
        );
        assert_eq!(
            serde_json::from_value::<Rejection>(json).unwrap(),
            rejection
        );
        let keys = Rejection::KeyMismatch {
            keys: vec!["sha256:aa".into(), "sha256:bb".into()],
        };
        assert_eq!(
            keys.to_string(),
            "the signature does not verify with any trusted key (`sha256:aa`, `sha256:bb`)"
        );
        let unknown = serde_json::json!({"rejection": "somethingElse"});
        assert!(serde_json::from_value::<Rejection>(unknown).is_err());
    }
}
