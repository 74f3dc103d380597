//! Keyed in-toto attestations in cosign's tag scheme: a manifest at `sha256-<hex>.att` whose
//! layers are DSSE envelopes (`application/vnd.dsse.envelope.v1+json`) carrying in-toto
//! statements. An attestation becomes a fact only when an envelope signature verifies with a
//! trusted key over the DSSE pre-authentication encoding and the statement's subjects include
//! the digest being verified. SLSA provenance (v1 and v0.2) is read into [`Provenance`].

use std::collections::BTreeMap;

use base64::Engine as _;
use registry_client::attached::attestation_tag;
use registry_client::{Descriptor, Digest, Reference, RegistryClient};
use serde::{Deserialize, Serialize};

use crate::cosign::{Rejected, SignError, attached_layers, docker_reference, put_layers};
use crate::keys::{PublicKey, SigningKey};
use crate::rejection::Rejection;
use crate::verify::{Signer, Trust, VerifyError};

/// A DSSE envelope's media type.
pub const MEDIA_TYPE_DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// The DSSE payload type of in-toto statements.
pub const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// The annotation cosign puts the predicate type in (informational; the signed statement is
/// what counts).
pub const ANNOTATION_PREDICATE_TYPE: &str = "predicateType";
/// in-toto statement types accepted.
pub const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];
/// SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// SLSA provenance v0.2.
pub const SLSA_PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";

/// Bounds on what is read while verifying attestations.
pub mod limits {
    /// Most attestations considered for one artifact; more is refused outright.
    pub const MAX_ATTESTATIONS: usize = 100;
    /// Largest envelope read.
    pub const MAX_ENVELOPE_BYTES: u64 = 1024 * 1024;
    /// Most signatures considered in one envelope.
    pub const MAX_ENVELOPE_SIGNATURES: usize = 16;
}

/// The predicate type cosign's `--type` names stand for, or the URI itself.
pub fn predicate_type(name: &str) -> Option<&str> {
    match name {
        "slsaprovenance1" => Some(SLSA_PROVENANCE_V1),
        "slsaprovenance" | "slsaprovenance02" => Some(SLSA_PROVENANCE_V02),
        uri if uri.starts_with("https://") => Some(uri),
        _ => None,
    }
}

/// Verified SLSA provenance facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The predicate type.
    pub predicate_type: String,
    /// `runDetails.builder.id` (v1) or `builder.id` (v0.2).
    pub builder_id: String,
    /// The source repository, as the provenance names it.
    pub source_repository: String,
    /// The source ref (branch or tag), as the provenance names it.
    pub source_ref: String,
    /// Who signed the attestation.
    pub signer: Signer,
}

/// An attestation that verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attested {
    /// The statement's predicate type.
    pub predicate_type: String,
    /// Who signed it.
    pub signer: Signer,
    /// SLSA provenance facts, when the predicate is SLSA provenance.
    pub provenance: Option<Provenance>,
}

/// What attestation verification found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Attestations {
    /// Attestations that verified and name the artifact.
    pub verified: Vec<Attested>,
    /// Attestations found and rejected.
    pub rejected: Vec<Rejected>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload_type: String,
    payload: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    predicate_type: String,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

/// DSSE's pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Attest `digest` with `predicate` (JSON) of `predicate_type`, signed by `key`: append a DSSE
/// envelope layer to `sha256-<hex>.att`. Returns the attestation manifest's digest.
pub async fn attest(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    predicate_type: &str,
    predicate: serde_json::Value,
    key: &SigningKey,
) -> Result<Digest, SignError> {
    let statement = serde_json::json!({
        "_type": STATEMENT_TYPES[0],
        "subject": [{"name": docker_reference(reference), "digest": {"sha256": digest.hex()}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    let payload = statement.to_string().into_bytes();
    let signature = key.sign(&pae(PAYLOAD_TYPE_IN_TOTO, &payload))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope = serde_json::to_vec(&Envelope {
        payload_type: PAYLOAD_TYPE_IN_TOTO.into(),
        payload: b64.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: String::new(),
            sig: b64.encode(signature),
        }],
    })
    .map_err(|e| {
        SignError::Registry(registry_client::Error::Malformed {
            what: "envelope".into(),
            reason: e.to_string(),
        })
    })?;
    let mut layer = Descriptor::of(MEDIA_TYPE_DSSE, &envelope);
    layer.annotations.insert(
        ANNOTATION_PREDICATE_TYPE.to_owned(),
        predicate_type.to_owned(),
    );
    let tag = attestation_tag(digest);
    let mut layers = match client.fetch_attached(reference, &tag).await? {
        Some(existing) => existing.manifest.layers,
        None => Vec::new(),
    };
    layers.push(layer);
    let envelope_descriptor = Descriptor::of(MEDIA_TYPE_DSSE, &envelope);
    put_layers(
        client,
        reference,
        &tag,
        layers,
        (envelope_descriptor, envelope),
    )
    .await
}

/// Find the attestations of `digest` beside `reference` and verify each against `trust`'s keys.
pub async fn verify_attestations(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    trust: &Trust,
) -> Result<Attestations, VerifyError> {
    let keys = trust.public_keys();
    let tag = attestation_tag(digest);
    let mut out = Attestations::default();
    let Some(layers) = attached_layers(
        client,
        reference,
        &tag,
        limits::MAX_ATTESTATIONS,
        "attestations",
    )
    .await?
    else {
        return Ok(out);
    };
    for layer in &layers {
        let source = format!("`{tag}` layer `{}`", layer.digest);
        match verify_one(client, reference, digest, layer, keys).await {
            Ok(attested) => out.verified.push(attested),
            Err(reason) => out.rejected.push(Rejected { source, reason }),
        }
    }
    Ok(out)
}

async fn verify_one(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    layer: &Descriptor,
    keys: &[PublicKey],
) -> Result<Attested, Rejection> {
    if layer.media_type != MEDIA_TYPE_DSSE {
        return Err(Rejection::MediaType {
            found: registry_client::text::excerpt(&layer.media_type, 80),
            expected: MEDIA_TYPE_DSSE.into(),
        });
    }
    if layer.size > limits::MAX_ENVELOPE_BYTES {
        return Err(Rejection::TooLarge {
            what: "envelope".into(),
            size: layer.size,
            limit: limits::MAX_ENVELOPE_BYTES,
        });
    }
    let bytes = client
        .fetch_attached_blob(reference, layer, limits::MAX_ENVELOPE_BYTES)
        .await
        .map_err(|e| Rejection::unfetchable("envelope", e))?;
    let (statement, signer) = open_envelope(&bytes, keys)?;
    check_statement(statement, digest, signer)
}

/// Verify a DSSE envelope with `keys`: returns the payload and who signed it.
pub fn open_envelope(bytes: &[u8], keys: &[PublicKey]) -> Result<(Vec<u8>, Signer), Rejection> {
    let envelope: Envelope =
        registry_client::json::parse(bytes, "DSSE envelope").map_err(|e| Rejection::json(&e))?;
    if envelope.payload_type != PAYLOAD_TYPE_IN_TOTO {
        return Err(Rejection::PayloadType {
            what: "payload".into(),
            found: registry_client::text::excerpt(&envelope.payload_type, 80),
            expected: format!("`{PAYLOAD_TYPE_IN_TOTO}`"),
        });
    }
    if envelope.signatures.len() > limits::MAX_ENVELOPE_SIGNATURES {
        return Err(Rejection::TooManySignatures {
            count: envelope.signatures.len(),
            limit: limits::MAX_ENVELOPE_SIGNATURES,
        });
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(envelope.payload.trim())
        .map_err(|e| Rejection::malformed("payload is not base64", e))?;
    if keys.is_empty() {
        return Err(Rejection::NoTrustedKey { bundle: false });
    }
    let signed = pae(&envelope.payload_type, &payload);
    for signature in &envelope.signatures {
        let Ok(sig) = b64.decode(signature.sig.trim()) else {
            continue;
        };
        if let Some(key) = keys.iter().find(|k| k.verify(&signed, &sig)) {
            return Ok((payload, Signer::key(key.fingerprint())));
        }
    }
    Err(Rejection::EnvelopeKeyMismatch)
}

/// Check a verified statement names `digest` and read its facts.
// INVARIANT (digest binding): an attestation counts only for a digest among its subjects.
pub fn check_statement(
    payload: Vec<u8>,
    digest: &Digest,
    signer: Signer,
) -> Result<Attested, Rejection> {
    let statement: Statement = registry_client::json::parse(&payload, "in-toto statement")
        .map_err(|e| Rejection::json(&e))?;
    if !STATEMENT_TYPES.contains(&statement.kind.as_str()) {
        return Err(Rejection::StatementType {
            found: registry_client::text::excerpt(&statement.kind, 80),
        });
    }
    let names_artifact = statement
        .subject
        .iter()
        .any(|s| s.digest.get("sha256").map(String::as_str) == Some(digest.hex()));
    if !names_artifact {
        return Err(Rejection::SubjectsMissArtifact {
            artifact: digest.clone(),
        });
    }
    let provenance = match statement.predicate_type.as_str() {
        SLSA_PROVENANCE_V1 | SLSA_PROVENANCE_V02 => Some(read_provenance(
            &statement.predicate_type,
            &statement.predicate,
            signer.clone(),
        )?),
        _ => None,
    };
    Ok(Attested {
        predicate_type: statement.predicate_type,
        signer,
        provenance,
    })
}

fn read_provenance(
    predicate_type: &str,
    predicate: &serde_json::Value,
    signer: Signer,
) -> Result<Provenance, Rejection> {
    let text = |pointer: &str| {
        predicate
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    // `git+https://host/repo@ref` → (`https://host/repo`, `ref`).
    let split_uri = |uri: String| {
        let uri = uri.strip_prefix("git+").map(str::to_owned).unwrap_or(uri);
        match uri.split_once('@') {
            Some((r, f)) => (r.to_owned(), f.to_owned()),
            None => (uri, String::new()),
        }
    };
    let (builder_id, source_repository, source_ref) = if predicate_type == SLSA_PROVENANCE_V1 {
        let repo = text("/buildDefinition/externalParameters/workflow/repository");
        let (repo, reference) = if repo.is_empty() {
            // Fall back to the first resolved dependency.
            split_uri(text("/buildDefinition/resolvedDependencies/0/uri"))
        } else {
            (
                repo,
                text("/buildDefinition/externalParameters/workflow/ref"),
            )
        };
        (text("/runDetails/builder/id"), repo, reference)
    } else {
        let (repo, reference) = split_uri(text("/invocation/configSource/uri"));
        (text("/builder/id"), repo, reference)
    };
    if builder_id.is_empty() {
        return Err(Rejection::NoBuilderId {
            predicate_type: predicate_type.to_owned(),
        });
    }
    Ok(Provenance {
        predicate_type: predicate_type.to_owned(),
        builder_id,
        source_repository,
        source_ref,
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::key("sha256:k".into())
    }

    #[test]
    fn pae_is_the_dsse_encoding() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn slsa_v1_facts_are_read() {
        let d = Digest::of(b"a");
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "x", "digest": {"sha256": d.hex()}}],
            "predicateType": SLSA_PROVENANCE_V1,
            "predicate": {
                "buildDefinition": {"externalParameters": {"workflow": {
                    "repository": "https://github.com/acme/plugin", "ref": "refs/tags/v1"}}},
                "runDetails": {"builder": {"id": "https://github.com/actions/runner"}}
            }
        });
        let a = check_statement(statement.to_string().into_bytes(), &d, signer()).unwrap();
        let p = a.provenance.unwrap();
        assert_eq!(p.builder_id, "https://github.com/actions/runner");
        assert_eq!(p.source_repository, "https://github.com/acme/plugin");
        assert_eq!(p.source_ref, "refs/tags/v1");
    }

    #[test]
    fn slsa_v02_and_resolved_dependency_fallback() {
        let d = Digest::of(b"a");
        let v02 = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"digest": {"sha256": d.hex()}}],
            "predicateType": SLSA_PROVENANCE_V02,
            "predicate": {"builder": {"id": "b"},
                "invocation": {"configSource": {"uri": "git+https://github.com/acme/p@refs/heads/main"}}}
        });
        let p = check_statement(v02.to_string().into_bytes(), &d, signer())
            .unwrap()
            .provenance
            .unwrap();
        assert_eq!(
            (
                p.builder_id.as_str(),
                p.source_repository.as_str(),
                p.source_ref.as_str()
            ),
            ("b", "https://github.com/acme/p", "refs/heads/main")
        );
        let v1 = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": d.hex()}}],
            "predicateType": SLSA_PROVENANCE_V1,
            "predicate": {"runDetails": {"builder": {"id": "b"}},
                "buildDefinition": {"resolvedDependencies": [{"uri": "git+https://github.com/acme/p@refs/tags/v2"}]}}
        });
        let p = check_statement(v1.to_string().into_bytes(), &d, signer())
            .unwrap()
            .provenance
            .unwrap();
        assert_eq!(
            (p.source_repository.as_str(), p.source_ref.as_str()),
            ("https://github.com/acme/p", "refs/tags/v2")
        );
    }

    #[test]
    fn statements_bind_to_their_subjects() {
        let d = Digest::of(b"a");
        let other = Digest::of(b"b");
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": other.hex()}}, {"digest": {"sha512": d.hex()}}],
            "predicateType": "https://example.com/p", "predicate": {}
        });
        let err = check_statement(statement.to_string().into_bytes(), &d, signer()).unwrap_err();
        assert_eq!(
            err,
            Rejection::SubjectsMissArtifact {
                artifact: d.clone()
            }
        );
        let no_builder = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": d.hex()}}],
            "predicateType": SLSA_PROVENANCE_V1, "predicate": {}
        });
        assert_eq!(
            check_statement(no_builder.to_string().into_bytes(), &d, signer()).unwrap_err(),
            Rejection::NoBuilderId {
                predicate_type: SLSA_PROVENANCE_V1.into()
            }
        );
        let wrong_type = serde_json::json!({
            "_type": "https://example.com/NotAStatement",
            "subject": [{"digest": {"sha256": d.hex()}}], "predicateType": "x"
        });
        assert!(matches!(
            check_statement(wrong_type.to_string().into_bytes(), &d, signer()),
            Err(Rejection::StatementType { found }) if found == "https://example.com/NotAStatement"
        ));
    }

    #[test]
    fn envelopes_verify_only_with_a_trusted_key() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let payload = b"{}".to_vec();
        let b64 = base64::engine::general_purpose::STANDARD;
        let sig = key.sign(&pae(PAYLOAD_TYPE_IN_TOTO, &payload)).unwrap();
        let envelope = |payload_type: &str, sig: &[u8]| {
            serde_json::to_vec(&Envelope {
                payload_type: payload_type.into(),
                payload: b64.encode(&payload),
                signatures: vec![EnvelopeSignature {
                    keyid: String::new(),
                    sig: b64.encode(sig),
                }],
            })
            .unwrap()
        };
        let good = envelope(PAYLOAD_TYPE_IN_TOTO, &sig);
        let (p, s) = open_envelope(&good, &[key.public_key()]).unwrap();
        assert_eq!(p, payload);
        assert_eq!(s.identity, key.public_key().fingerprint());
        assert_eq!(
            open_envelope(&good, &[other.public_key()]).unwrap_err(),
            Rejection::EnvelopeKeyMismatch
        );
        assert_eq!(
            open_envelope(&good, &[]).unwrap_err(),
            Rejection::NoTrustedKey { bundle: false }
        );
        // The payload type is signed (PAE): changing it breaks the signature, and a type other
        // than in-toto is refused by name.
        let retyped = envelope("application/json", &sig);
        assert!(matches!(
            open_envelope(&retyped, &[key.public_key()]),
            Err(Rejection::PayloadType { found, .. }) if found == "application/json"
        ));
    }
}
