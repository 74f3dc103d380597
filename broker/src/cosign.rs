//! cosign's keyed signatures in the tag scheme: a manifest at `sha256-<hex>.sig` whose layers are
//! simple-signing payloads, each signed in its `dev.cosignproject.cosign/signature` annotation.
//!
//! Verification binds every signature to the digest being verified: the payload must name
//! exactly that manifest digest and be of type `cosign container image signature`, and the
//! signature must verify with a trusted key. Everything else is rejected with a reason and never
//! becomes a fact. Caps apply before anything is read: at most [`limits::MAX_SIGNATURES`]
//! signatures, at most [`limits::MAX_SIGNATURE_BYTES`] per payload.

use std::collections::BTreeMap;

use base64::Engine as _;
use registry_client::attached::signature_tag;
use registry_client::manifest::MEDIA_TYPE_OCI_MANIFEST;
use registry_client::{Descriptor, Digest, ImageManifest, Reference, RegistryClient};
use serde::{Deserialize, Serialize};

use sha2::{Digest as _, Sha256};
use sigstore_verify::types::Bundle;

use crate::keys::{PublicKey, SigningKey};
use crate::rejection::Rejection;
use crate::verify::{Signer, Subject, Trust, VerifyError};

/// The simple-signing payload's media type.
pub const MEDIA_TYPE_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a layer's base64 signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding a keyless signature's certificate.
pub const ANNOTATION_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding a keyless signature's transparency-log entry and its SET.
pub const ANNOTATION_BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// The payload type every cosign image signature declares.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The config media type of a signature manifest (an image config, as cosign writes it).
const MEDIA_TYPE_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Bounds on what is read while verifying signatures.
pub mod limits {
    /// Most signatures considered for one artifact; more is refused outright.
    pub const MAX_SIGNATURES: usize = 100;
    /// Largest simple-signing payload read.
    pub const MAX_SIGNATURE_BYTES: u64 = 1024 * 1024;
    /// Longest base64 signature annotation accepted.
    pub const MAX_SIGNATURE_ANNOTATION_CHARS: usize = 4096;
    /// Longest certificate or transparency-log annotation accepted.
    pub const MAX_KEYLESS_ANNOTATION_CHARS: usize = 64 * 1024;
}

/// A signature that was found but did not become a fact, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Which signature (tag and layer digest).
    pub source: String,
    /// Why it was rejected.
    pub reason: Rejection,
}

/// The outcome of verifying an artifact's signatures: who verifiably signed this digest, and
/// what was rejected.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdict {
    /// The manifest digest verified.
    pub digest: Digest,
    /// Verified signers (deduplicated). Empty means unsigned, as far as the trust knows.
    pub signers: Vec<Signer>,
    /// Signatures that were found and rejected.
    pub rejected: Vec<Rejected>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    critical: Critical,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "parsed so that any value is accepted; not trusted or used"
    )]
    optional: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[expect(dead_code, reason = "informational; the digest is what binds")]
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    #[expect(dead_code, reason = "informational; the digest is what binds")]
    docker_reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The simple-signing payload cosign signs for `digest`, byte for byte as cosign writes it.
pub fn payload(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{PAYLOAD_TYPE}"}},"optional":null}}"#,
        serde_json::Value::String(docker_reference.to_owned())
    )
    .into_bytes()
}

/// Check that a payload binds to `digest`.
// INVARIANT (digest binding): a signature counts only for the digest its payload names.
pub fn check_payload(bytes: &[u8], digest: &Digest) -> Result<(), Rejection> {
    let payload: Payload = registry_client::json::parse(bytes, "simple-signing payload")
        .map_err(|e| Rejection::json(&e))?;
    if payload.critical.kind != PAYLOAD_TYPE {
        return Err(Rejection::PayloadType {
            what: "payload".into(),
            found: registry_client::text::excerpt(&payload.critical.kind, 80),
            expected: format!("`{PAYLOAD_TYPE}`"),
        });
    }
    let named = &payload.critical.image.docker_manifest_digest;
    if named != &digest.to_string() {
        return Err(Rejection::WrongDigest {
            named: registry_client::text::excerpt(named, 80),
            artifact: digest.clone(),
        });
    }
    Ok(())
}

/// The docker-reference a signature of `reference` names (the repository, without tag).
pub fn docker_reference(reference: &Reference) -> String {
    match reference {
        Reference::Registry(r) => format!("{}/{}", r.registry(), r.repository()),
        Reference::Layout(l) => format!("oci-layout:{}", l.path().display()),
    }
}

/// Sign `digest` (found at `reference`) with `key`: append a simple-signing layer to the
/// signature manifest at `sha256-<hex>.sig`, creating it if absent. Signing twice with the same
/// key changes nothing. Returns the signature manifest's digest.
pub async fn sign(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    key: &SigningKey,
) -> Result<Digest, SignError> {
    let payload = payload(&docker_reference(reference), digest);
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload)?);
    let mut layer = Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, &payload);
    layer
        .annotations
        .insert(ANNOTATION_SIGNATURE.to_owned(), signature);

    let tag = signature_tag(digest);
    let (mut layers, existing_digest) = match client.fetch_attached(reference, &tag).await? {
        Some(existing) => (existing.manifest.layers, Some(existing.digest)),
        None => (Vec::new(), None),
    };
    // ECDSA signatures are randomised: "already signed" means a layer over this very payload
    // whose signature verifies with this key.
    let public = key.public_key();
    let already = layers.iter().any(|l| {
        l.digest == layer.digest
            && l.annotations
                .get(ANNOTATION_SIGNATURE)
                .and_then(|s| {
                    base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .ok()
                })
                .is_some_and(|sig| public.verify(&payload, &sig))
    });
    if already && let Some(existing) = existing_digest {
        return Ok(existing);
    }
    layers.push(layer);
    let payload_descriptor = Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, &payload);
    put_layers(
        client,
        reference,
        &tag,
        layers,
        (payload_descriptor, payload),
    )
    .await
}

/// Publish a manifest of `layers` at `tag` beside `reference`, as cosign lays out signature and
/// attestation manifests (an image config listing the layers), uploading `new_blob` (the one
/// layer not yet in the repository). Returns the manifest's digest.
pub(crate) async fn put_layers(
    client: &RegistryClient,
    reference: &Reference,
    tag: &str,
    layers: Vec<Descriptor>,
    new_blob: (Descriptor, Vec<u8>),
) -> Result<Digest, SignError> {
    let config = signature_config(&layers);
    let config_descriptor = Descriptor::of(MEDIA_TYPE_IMAGE_CONFIG, &config);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: config_descriptor.clone(),
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    Ok(client
        .put_attached(
            reference,
            tag,
            &manifest,
            vec![new_blob, (config_descriptor, config)],
        )
        .await?
        .digest)
}

/// The image config cosign writes for a signature manifest: its `rootfs.diff_ids` list the
/// payload digests.
fn signature_config(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key could not sign.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// The registry or layout refused or failed.
    #[error(transparent)]
    Registry(#[from] registry_client::Error),
}

/// Find the cosign signatures of `digest` beside `reference` and verify each against `trust`:
/// keyed ones with its keys, keyless ones (certificate and transparency-log annotations) as a
/// Sigstore bundle against its root and identities. A registry error reading the signature
/// manifest is an error (fail closed); a bad individual signature is a [`Rejected`] entry.
pub async fn verify_signatures(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    trust: &Trust,
) -> Result<Verdict, VerifyError> {
    let tag = signature_tag(digest);
    let mut verdict = Verdict {
        digest: digest.clone(),
        signers: Vec::new(),
        rejected: Vec::new(),
    };
    let Some(layers) = attached_layers(
        client,
        reference,
        &tag,
        limits::MAX_SIGNATURES,
        "signatures",
    )
    .await?
    else {
        return Ok(verdict);
    };
    for layer in &layers {
        let source = format!("`{tag}` layer `{}`", layer.digest);
        match verify_one(client, reference, digest, layer, trust).await {
            Ok(signer) => {
                if !verdict.signers.contains(&signer) {
                    verdict.signers.push(signer);
                }
            }
            Err(reason) => verdict.rejected.push(Rejected { source, reason }),
        }
    }
    Ok(verdict)
}

/// The layers of the manifest at `tag` beside `reference`, or `None` when there is none. More
/// than `cap` layers refuses the whole verification rather than choosing some; a registry error
/// is an error (fail closed).
pub(crate) async fn attached_layers(
    client: &RegistryClient,
    reference: &Reference,
    tag: &str,
    cap: usize,
    noun: &str,
) -> Result<Option<Vec<Descriptor>>, VerifyError> {
    let Some(found) = client
        .fetch_attached(reference, tag)
        .await
        .map_err(|e| VerifyError::Failed(format!("reading `{tag}`: {e}")))?
    else {
        return Ok(None);
    };
    let count = found.manifest.layers.len();
    if count > cap {
        return Err(VerifyError::Failed(format!(
            "`{tag}` holds {count} {noun}; at most {cap} are considered"
        )));
    }
    Ok(Some(found.manifest.layers))
}

async fn verify_one(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    layer: &Descriptor,
    trust: &Trust,
) -> Result<Signer, Rejection> {
    if layer.media_type != MEDIA_TYPE_SIMPLE_SIGNING {
        return Err(Rejection::MediaType {
            found: registry_client::text::excerpt(&layer.media_type, 80),
            expected: MEDIA_TYPE_SIMPLE_SIGNING.into(),
        });
    }
    let Some(encoded) = layer.annotations.get(ANNOTATION_SIGNATURE) else {
        return Err(Rejection::MissingAnnotation {
            name: ANNOTATION_SIGNATURE.into(),
            keyless: false,
        });
    };
    if encoded.len() > limits::MAX_SIGNATURE_ANNOTATION_CHARS {
        return Err(Rejection::AnnotationTooLong {
            what: "signature annotation".into(),
            limit: limits::MAX_SIGNATURE_ANNOTATION_CHARS,
        });
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| Rejection::malformed("signature is not base64", e))?;
    if layer.size > limits::MAX_SIGNATURE_BYTES {
        return Err(Rejection::TooLarge {
            what: "payload".into(),
            size: layer.size,
            limit: limits::MAX_SIGNATURE_BYTES,
        });
    }
    let payload = client
        .fetch_attached_blob(reference, layer, limits::MAX_SIGNATURE_BYTES)
        .await
        .map_err(|e| Rejection::unfetchable("payload", e))?;
    let signer = if layer.annotations.contains_key(ANNOTATION_CERTIFICATE) {
        let bundle = keyless_bundle(&layer.annotations, &payload, &signature)?;
        trust.verify_bundle(&bundle, Subject::Bytes(&payload))?
    } else {
        let keys = trust.public_keys();
        if keys.is_empty() {
            return Err(Rejection::NoTrustedKey { bundle: false });
        }
        let Some(key) = keys.iter().find(|k| k.verify(&payload, &signature)) else {
            return Err(Rejection::KeyMismatch {
                keys: keys.iter().map(PublicKey::fingerprint).collect(),
            });
        };
        Signer::key(key.fingerprint())
    };
    check_payload(&payload, digest)?;
    Ok(signer)
}

/// The cosign `dev.sigstore.cosign/bundle` annotation: a Rekor entry and its SET.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorAnnotation {
    signed_entry_timestamp: String,
    payload: RekorPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorBody {
    api_version: String,
    kind: String,
}

/// A keyless cosign signature layer restated as the Sigstore bundle (v0.1) it is equivalent to:
/// the certificate, the transparency-log entry with its SET, and the signature over the
/// payload. The bundle verifier then checks all of it — chain, SCT, SET, that the log entry
/// describes this signature, certificate and payload — so nothing here is trusted on its own.
pub fn keyless_bundle(
    annotations: &BTreeMap<String, String>,
    payload: &[u8],
    signature: &[u8],
) -> Result<Bundle, Rejection> {
    let annotation = |name: &str| -> Result<&String, Rejection> {
        let value = annotations
            .get(name)
            .ok_or_else(|| Rejection::MissingAnnotation {
                name: name.to_owned(),
                keyless: true,
            })?;
        if value.len() > limits::MAX_KEYLESS_ANNOTATION_CHARS {
            return Err(Rejection::AnnotationTooLong {
                what: format!("`{name}` annotation"),
                limit: limits::MAX_KEYLESS_ANNOTATION_CHARS,
            });
        }
        Ok(value)
    };
    let certificate = crate::keys::certificate_der(annotation(ANNOTATION_CERTIFICATE)?)
        .map_err(|e| Rejection::malformed(format!("`{ANNOTATION_CERTIFICATE}`"), e))?;
    let rekor: RekorAnnotation =
        registry_client::json::parse(annotation(ANNOTATION_BUNDLE)?.as_bytes(), ANNOTATION_BUNDLE)
            .map_err(|e| Rejection::json(&e))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.decode(rekor.payload.body.trim()).map_err(|e| {
        Rejection::malformed(format!("`{ANNOTATION_BUNDLE}` body is not base64"), e)
    })?;
    let kind: RekorBody = registry_client::json::parse(&body, "transparency-log entry body")
        .map_err(|e| Rejection::json(&e))?;
    if kind.kind != "hashedrekord" {
        return Err(Rejection::UnsupportedLogEntry {
            kind: registry_client::text::excerpt(&kind.kind, 40),
            version: registry_client::text::excerpt(&kind.api_version, 40),
        });
    }
    let log_id = hex::decode(&rekor.payload.log_id)
        .map_err(|e| Rejection::malformed("`logID` is not hex", e))?;
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": { "certificates": [{ "rawBytes": b64.encode(&certificate) }] },
            "tlogEntries": [{
                "logIndex": rekor.payload.log_index.to_string(),
                "logId": { "keyId": b64.encode(&log_id) },
                "kindVersion": { "kind": kind.kind, "version": kind.api_version },
                "integratedTime": rekor.payload.integrated_time.to_string(),
                "inclusionPromise": { "signedEntryTimestamp": rekor.signed_entry_timestamp },
                "canonicalizedBody": b64.encode(&body),
            }],
        },
        "messageSignature": {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": b64.encode(Sha256::digest(payload)),
            },
            "signature": b64.encode(signature),
        },
    });
    Bundle::from_json(&bundle.to_string())
        .map_err(|e| Rejection::malformed("as a Sigstore bundle", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_DIGEST: &str =
        "sha256:f3cfc9d1dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";

    #[test]
    fn payload_is_byte_for_byte_what_cosign_signs() {
        let d: Digest = VECTOR_DIGEST.parse().unwrap();
        assert_eq!(
            String::from_utf8(payload("registry-testing.svc.lan/busybox", &d)).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d1dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#
        );
    }

    #[test]
    fn payloads_bind_to_one_digest_and_one_type() {
        let d: Digest = VECTOR_DIGEST.parse().unwrap();
        let other = Digest::of(b"other");
        assert!(check_payload(&payload("r", &d), &d).is_ok());
        let err = check_payload(&payload("r", &other), &d).unwrap_err();
        assert_eq!(
            err,
            Rejection::WrongDigest {
                named: other.to_string(),
                artifact: d.clone()
            }
        );
        assert_eq!(
            err.to_string(),
            format!("payload names `{other}`, not the artifact `{d}`")
        );
        let wrong_type = String::from_utf8(payload("r", &d))
            .unwrap()
            .replace(PAYLOAD_TYPE, "something else");
        assert!(matches!(
            check_payload(wrong_type.as_bytes(), &d),
            Err(Rejection::PayloadType { found, .. }) if found == "something else"
        ));
        let extra = String::from_utf8(payload("r", &d))
            .unwrap()
            .replace(r#""optional":null"#, r#""optional":null,"critical2":{}"#);
        assert!(matches!(
            check_payload(extra.as_bytes(), &d),
            Err(Rejection::Malformed { .. })
        ));
        assert!(matches!(
            check_payload(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", &d),
            Err(Rejection::Malformed { .. })
        ));
    }

    #[test]
    fn a_docker_reference_with_quotes_is_escaped() {
        let d = Digest::of(b"");
        let p = payload("a\"b", &d);
        assert!(check_payload(&p, &d).is_ok());
    }
}

#[cfg(test)]
mod keyless_vector {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/cosign-vectors/keyless-rekor-set/"
        );
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    /// The vector is a 2021 keyless signature: a `rekord` entry (before `hashedrekord`) and a
    /// certificate without an SCT. Neither is verifiable under today's Sigstore client rules,
    /// so it is refused, naming the entry kind, rather than checked by a weaker legacy path.
    #[test]
    fn a_2021_rekord_signature_is_refused_by_entry_kind() {
        let annotations: BTreeMap<String, String> =
            serde_json::from_slice(&vector("layer-annotations.json")).unwrap();
        let payload = vector("payload.json");
        let sig = base64::engine::general_purpose::STANDARD
            .decode(annotations[ANNOTATION_SIGNATURE].trim())
            .unwrap();
        let err = keyless_bundle(&annotations, &payload, &sig).unwrap_err();
        assert_eq!(
            err,
            Rejection::UnsupportedLogEntry {
                kind: "rekord".into(),
                version: "0.0.1".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "transparency-log entry kind `rekord` 0.0.1 is not supported (only `hashedrekord`, \
             which cosign has written since 2022)"
        );
    }

    #[test]
    fn a_keyless_layer_needs_a_certificate_and_a_log_entry() {
        let annotations: BTreeMap<String, String> =
            serde_json::from_slice(&vector("layer-annotations.json")).unwrap();
        for (missing, _) in [(ANNOTATION_CERTIFICATE, ()), (ANNOTATION_BUNDLE, ())] {
            let mut without = annotations.clone();
            without.remove(missing);
            let err = keyless_bundle(&without, b"p", b"s").unwrap_err();
            assert_eq!(
                err,
                Rejection::MissingAnnotation {
                    name: missing.into(),
                    keyless: true
                }
            );
        }
        let mut long = annotations.clone();
        long.insert(
            ANNOTATION_BUNDLE.into(),
            " ".repeat(limits::MAX_KEYLESS_ANNOTATION_CHARS + 1),
        );
        assert_eq!(
            keyless_bundle(&long, b"p", b"s").unwrap_err(),
            Rejection::AnnotationTooLong {
                what: format!("`{ANNOTATION_BUNDLE}` annotation"),
                limit: limits::MAX_KEYLESS_ANNOTATION_CHARS
            }
        );
    }
}
