//! The tamper matrix: every way a keyed cosign signature or a DSSE attestation must fail to
//! count, each through a real registry (or an image layout, for what only a layout can hold),
//! each with its exact reason, beside controls that the untampered material verifies.
//!
//! Each case is a row: a name, a setup that builds the material attached to a freshly published
//! artifact (layers, blobs, the keys to trust), and what verification must say. Every case gets
//! its own repository (or layout), so cases cannot see one another's material. Failures are
//! collected and reported together, each under its case's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use broker::attest::{
    self, ANNOTATION_PREDICATE_TYPE, MEDIA_TYPE_DSSE, PAYLOAD_TYPE_IN_TOTO, SLSA_PROVENANCE_V1,
    SLSA_PROVENANCE_V02, STATEMENT_TYPES, pae,
};
use broker::cosign::{
    self, ANNOTATION_CERTIFICATE, ANNOTATION_SIGNATURE, MEDIA_TYPE_SIMPLE_SIGNING, PAYLOAD_TYPE,
};
use broker::keys::{PublicKey, SigningKey};
use broker::verify::Trust;
use registry_client::attached::{attestation_tag, signature_tag};
use registry_client::manifest::{MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST};
use registry_client::{
    ClientOptions, Descriptor, Digest, ImageIndex, ImageManifest, NoProgress, Reference,
    RegistryClient, Store,
};
use serde_json::{Value, json};
use tests::fixtures::module_of_size;
use tests::registry::TestRegistry;

/// The config media type of an attached manifest.
const MEDIA_TYPE_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A Docker image manifest's media type.
const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// One more byte than a signature payload or an envelope may have.
const OVER_ONE_MIB: u64 = 1024 * 1024 + 1;

/// A fixed Ed25519 test key (there is no Ed25519 signer in the workspace's public API), and
/// signatures made with it, generated with Python's `cryptography`:
/// seed = SHA-256("warrant tamper matrix ed25519 test key")
/// = `a3128599ab4d66b10b448b2462dbb925e9945807a12a6efd0c3640e95495026f`;
/// [`ED25519_SIGNATURE`] signs `cosign::payload("tamper/ed25519", SHA-256(ED25519_SIGNED))`;
/// [`ED25519_DSSE`] signs the PAE of [`ed25519_statement`] as `application/vnd.in-toto+json`.
const ED25519_PUBLIC: &str = "8dd80785fc903004ce70ad6174ca1ad54fb1972f75d7a401cebb83710fde2506";
const ED25519_SIGNED: &[u8] = b"warrant tamper matrix: ed25519 signature control";
const ED25519_SIGNATURE: &str =
    "yWlpEIzeM4re/qgKY0UUIOSWQp7Ff5w02ftv1zapO0BVxPTuFUFE/Rlu+N2AgXQC/yLBFifZnlZYiSAuZoAJBg==";
const ED25519_ATTESTED: &[u8] = b"warrant tamper matrix: ed25519 attestation control";
const ED25519_DSSE: &str =
    "yhTOP78G6ov7XeNFqaLVG4Umvn8Va0KEMsT1cWVSoOSwkCtLYALxQ9d7YAUzw8Z5+4tEpPTvSRZlKFuXQMU3Ag==";
const ED25519_PREDICATE: &str = "https://example.com/ed25519-control";
/// The DER of an Ed25519 SubjectPublicKeyInfo up to its key.
const ED25519_SPKI_PREFIX: &str = "302a300506032b6570032100";

// ---------------------------------------------------------------------------------------------
// The harness.

/// Signatures (`.sig`) or attestations (`.att`).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Signatures,
    Attestations,
}

impl Kind {
    fn tag(self, digest: &Digest) -> String {
        match self {
            Self::Signatures => signature_tag(digest),
            Self::Attestations => attestation_tag(digest),
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::Signatures => "sig",
            Self::Attestations => "att",
        }
    }
}

/// Where a case's artifact and attachments live.
#[derive(Clone)]
enum Backend {
    /// A registry's `127.0.0.1:PORT`; each case gets its own repository.
    Registry(String),
    /// A directory under which each case gets its own image layout.
    Layout(PathBuf),
}

impl Backend {
    fn registry(registry: &TestRegistry) -> Self {
        Self::Registry(registry.host())
    }
}

/// What a setup sees: the artifact just published, and the keys in play.
struct Ctx<'a> {
    /// The artifact's manifest digest: what is verified.
    digest: Digest,
    /// The artifact's manifest descriptor.
    artifact: Descriptor,
    /// Another artifact's digest.
    other: Digest,
    /// The docker-reference a signature of the artifact names.
    docker_reference: String,
    /// The key trusted unless a case says otherwise.
    trusted: &'a SigningKey,
    /// A key nobody trusts.
    untrusted: &'a SigningKey,
    /// The fixed Ed25519 test key.
    ed25519: &'a PublicKey,
}

/// What a case attaches, and how it is verified.
#[derive(Default)]
struct Material {
    /// The attached manifest's layers.
    layers: Vec<Descriptor>,
    /// The blobs pushed with it (a layer may name a blob that is not pushed).
    blobs: Vec<(Descriptor, Vec<u8>)>,
    /// Publish these bytes, of this media type, at the tag instead of a manifest built from
    /// `layers` (the blobs are still pushed).
    raw_manifest: Option<(&'static str, Vec<u8>)>,
    /// The keys trusted; the trusted key when `None`.
    keys: Option<Vec<PublicKey>>,
    /// The digest verified; the artifact's when `None`.
    digest: Option<Digest>,
    /// Layouts only: what to do to the layout after publishing (its root, the first layer).
    on_disk: Option<fn(&Path, &Descriptor)>,
}

impl Material {
    /// Add `layer`, pushing `blob` with it.
    fn layer(mut self, layer: Descriptor, blob: Vec<u8>) -> Self {
        let descriptor = Descriptor::of(&layer.media_type, &blob);
        if !self
            .blobs
            .iter()
            .any(|(d, _)| d.digest == descriptor.digest)
        {
            self.blobs.push((descriptor, blob));
        }
        self.layers.push(layer);
        self
    }

    /// Add `layer` without pushing the blob it names.
    fn layer_without_blob(mut self, layer: Descriptor) -> Self {
        self.layers.push(layer);
        self
    }

    fn keys(mut self, keys: Vec<PublicKey>) -> Self {
        self.keys = Some(keys);
        self
    }

    fn digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }

    fn raw_manifest(mut self, media_type: &'static str, bytes: Vec<u8>) -> Self {
        self.raw_manifest = Some((media_type, bytes));
        self
    }

    fn on_disk(mut self, tamper: fn(&Path, &Descriptor)) -> Self {
        self.on_disk = Some(tamper);
        self
    }

    /// The first layer, for edits to it.
    fn first(&mut self) -> &mut Descriptor {
        &mut self.layers[0]
    }

    fn with_first(mut self, edit: impl FnOnce(&mut Descriptor)) -> Self {
        edit(self.first());
        self
    }
}

/// What verification must say. Reasons are substrings, with `{digest}`, `{hex}`, `{other}`,
/// `{trusted}` and `{ed25519}` standing for the artifact's digest, its hex, the other digest,
/// and the two keys' fingerprints.
#[derive(Debug)]
enum Expect {
    /// Exactly one signer (the first trusted key), nothing rejected.
    Verified,
    /// This many verified (attestations are not deduplicated), each by the first trusted key,
    /// nothing rejected.
    VerifiedEach(usize),
    /// As `Verified`, and the attestation's (signed) predicate type is this.
    VerifiedPredicate(&'static str),
    /// One signer (the first trusted key) beside exactly one rejected layer with this reason.
    VerifiedBeside(&'static str),
    /// Nothing verifies; exactly one layer is rejected, with this reason.
    Rejected(&'static str),
    /// Verification refuses outright, with an error saying this.
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    setup: fn(&Ctx<'_>) -> Material,
    expect: Expect,
}

fn case(name: &'static str, setup: fn(&Ctx<'_>) -> Material, expect: Expect) -> Case {
    Case {
        name,
        setup,
        expect,
    }
}

/// What verification found, the same shape for signatures and attestations.
#[derive(Debug)]
struct Outcome {
    /// (signer identity, predicate type) of what verified.
    verified: Vec<(String, Option<String>)>,
    /// Rejection reasons.
    rejected: Vec<String>,
}

struct Keys {
    trusted: SigningKey,
    untrusted: SigningKey,
    ed25519: PublicKey,
}

impl Keys {
    fn new() -> Self {
        Self {
            trusted: SigningKey::generate().unwrap(),
            untrusted: SigningKey::generate().unwrap(),
            ed25519: ed25519_key(),
        }
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default()).unwrap()
}

/// Cases run at once against one backend (each publishes a handful of blobs).
const CONCURRENT_CASES: usize = 8;

/// Run every case of `kind` on `backend`, several at a time; panic listing every case that
/// failed (or panicked), by name.
async fn run_matrix(backend: Backend, kind: Kind, cases: Vec<Case>) {
    let client = Arc::new(client());
    let keys = Arc::new(Keys::new());
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CASES));
    let total = cases.len();
    let mut names = BTreeMap::new();
    let mut running = tokio::task::JoinSet::new();
    for (index, case) in cases.into_iter().enumerate() {
        let (client, keys, backend) = (client.clone(), keys.clone(), backend.clone());
        let permits = permits.clone();
        let name = case.name;
        let task = running.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            run_case(&client, &backend, kind, index, &case, &keys).await
        });
        names.insert(task.id(), name);
    }
    let mut failures = Vec::new();
    while let Some(joined) = running.join_next_with_id().await {
        let (id, why) = match joined {
            Ok((_, Ok(()))) => continue,
            Ok((id, Err(why))) => (id, why),
            Err(e) => (e.id(), format!("panicked: {e}")),
        };
        failures.push(format!("[{}] {}: {why}", kind.short(), names[&id]));
    }
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {total} {kind:?} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn run_case(
    client: &RegistryClient,
    backend: &Backend,
    kind: Kind,
    index: usize,
    case: &Case,
    keys: &Keys,
) -> Result<(), String> {
    let reference: Reference = match backend {
        Backend::Registry(host) => format!("{host}/tamper-{}/c{index:02}:v1", kind.short()),
        Backend::Layout(root) => {
            let dir = root.join(format!("{}-{index:02}", kind.short()));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            format!("oci-layout:{}:v1", dir.display())
        }
    }
    .parse()
    .map_err(|e| format!("reference: {e}"))?;
    let seed = u8::try_from(index % 200).unwrap_or(0) + 1;
    let pushed = client
        .push_wasm(module_of_size(1_000, seed), None, &reference, &NoProgress)
        .await
        .map_err(|e| format!("publishing the artifact: {e}"))?;
    let ctx = Ctx {
        digest: pushed.manifest.digest.clone(),
        artifact: pushed.manifest.clone(),
        other: Digest::of(b"another artifact"),
        docker_reference: cosign::docker_reference(&reference),
        trusted: &keys.trusted,
        untrusted: &keys.untrusted,
        ed25519: &keys.ed25519,
    };
    let material = (case.setup)(&ctx);
    let digest = material
        .digest
        .clone()
        .unwrap_or_else(|| ctx.digest.clone());
    let tag = kind.tag(&digest);
    publish(client, backend, &reference, &tag, &material).await?;
    if let Some(tamper) = material.on_disk {
        let Backend::Layout(root) = backend else {
            return Err("an on-disk tamper needs a layout".into());
        };
        tamper(
            &root.join(format!("{}-{index:02}", kind.short())),
            &material.layers[0],
        );
    }
    let trusted = material
        .keys
        .clone()
        .unwrap_or_else(|| vec![ctx.trusted.public_key()]);
    let outcome = verify(client, kind, &reference, &digest, &trusted).await;
    check(&case.expect, &outcome, &ctx, trusted.first())
}

/// Publish `material` at `tag` beside `reference`.
async fn publish(
    client: &RegistryClient,
    backend: &Backend,
    reference: &Reference,
    tag: &str,
    material: &Material,
) -> Result<(), String> {
    let config = b"{}".to_vec();
    let config_descriptor = Descriptor::of(MEDIA_TYPE_IMAGE_CONFIG, &config);
    let mut blobs = material.blobs.clone();
    blobs.push((config_descriptor.clone(), config));
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
        artifact_type: None,
        config: config_descriptor,
        layers: material.layers.clone(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let Some((media_type, raw)) = &material.raw_manifest else {
        client
            .put_attached(reference, tag, &manifest, blobs)
            .await
            .map_err(|e| format!("publishing the attachment: {e}"))?;
        return Ok(());
    };
    match (backend, reference) {
        (Backend::Registry(host), Reference::Registry(r)) => {
            // The blobs reach the repository with a manifest at a scratch tag; the raw
            // manifest goes to the real tag by hand, as `put_attached` only writes manifests.
            client
                .put_attached(reference, &format!("{tag}-blobs"), &manifest, blobs)
                .await
                .map_err(|e| format!("publishing the blobs: {e}"))?;
            let status = put_raw_manifest(host, r.repository(), tag, media_type, raw)
                .await
                .map_err(|e| format!("putting the raw manifest: {e}"))?;
            if !status.starts_with("HTTP/1.1 201") {
                return Err(format!("the registry refused the raw manifest: {status}"));
            }
        }
        (Backend::Layout(_), Reference::Layout(l)) => {
            let store = Store::open(l.path()).map_err(|e| e.to_string())?;
            for (descriptor, blob) in &blobs {
                store
                    .put_blob(blob, descriptor, "blob")
                    .map_err(|e| e.to_string())?;
            }
            let descriptor = Descriptor::of(media_type, raw);
            store
                .put_blob(raw, &descriptor, "raw manifest")
                .map_err(|e| e.to_string())?;
            store
                .add_to_index(&descriptor, Some(tag))
                .map_err(|e| e.to_string())?;
        }
        _ => return Err("backend and reference disagree".into()),
    }
    Ok(())
}

/// PUT `body` as the manifest `repository:tag`, by hand; returns the status line.
async fn put_raw_manifest(
    host: &str,
    repository: &str,
    tag: &str,
    media_type: &str,
    body: &[u8],
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let head = format!(
        "PUT /v2/{repository}/manifests/{tag} HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    Ok(response.lines().next().unwrap_or_default().to_owned())
}

async fn verify(
    client: &RegistryClient,
    kind: Kind,
    reference: &Reference,
    digest: &Digest,
    keys: &[PublicKey],
) -> Result<Outcome, String> {
    match kind {
        Kind::Signatures => {
            cosign::verify_signatures(client, reference, digest, &Trust::keys(keys).unwrap())
                .await
                .map(|v| Outcome {
                    verified: v.signers.into_iter().map(|s| (s.identity, None)).collect(),
                    rejected: v.rejected.iter().map(|r| r.reason.to_string()).collect(),
                })
        }
        Kind::Attestations => {
            attest::verify_attestations(client, reference, digest, &Trust::keys(keys).unwrap())
                .await
                .map(|a| Outcome {
                    verified: a
                        .verified
                        .into_iter()
                        .map(|v| (v.signer.identity, Some(v.predicate_type)))
                        .collect(),
                    rejected: a.rejected.iter().map(|r| r.reason.to_string()).collect(),
                })
        }
    }
    .map_err(|e| e.to_string())
}

fn expand(template: &str, ctx: &Ctx<'_>) -> String {
    template
        .replace("{digest}", &ctx.digest.to_string())
        .replace("{hex}", ctx.digest.hex())
        .replace("{other}", &ctx.other.to_string())
        .replace("{trusted}", &ctx.trusted.public_key().fingerprint())
        .replace("{ed25519}", &ctx.ed25519.fingerprint())
}

fn check(
    expect: &Expect,
    outcome: &Result<Outcome, String>,
    ctx: &Ctx<'_>,
    first_key: Option<&PublicKey>,
) -> Result<(), String> {
    let signer = first_key.map(PublicKey::fingerprint).unwrap_or_default();
    let signed_by_first = |o: &Outcome| o.verified.len() == 1 && o.verified[0].0 == signer;
    let ok = match (expect, outcome) {
        (Expect::Verified, Ok(o)) => signed_by_first(o) && o.rejected.is_empty(),
        (Expect::VerifiedEach(n), Ok(o)) => {
            o.verified.len() == *n
                && o.verified.iter().all(|(identity, _)| *identity == signer)
                && o.rejected.is_empty()
        }
        (Expect::VerifiedPredicate(p), Ok(o)) => {
            signed_by_first(o) && o.rejected.is_empty() && o.verified[0].1.as_deref() == Some(*p)
        }
        (Expect::VerifiedBeside(reason), Ok(o)) => {
            signed_by_first(o)
                && o.rejected.len() == 1
                && o.rejected[0].contains(&expand(reason, ctx))
        }
        (Expect::Rejected(reason), Ok(o)) => {
            o.verified.is_empty()
                && o.rejected.len() == 1
                && o.rejected[0].contains(&expand(reason, ctx))
        }
        (Expect::Refused(reason), Err(e)) => e.contains(&expand(reason, ctx)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {expect:?}, got {outcome:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Building material.

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sign_b64(key: &SigningKey, message: &[u8]) -> String {
    b64(&key.sign(message).unwrap())
}

fn ed25519_key() -> PublicKey {
    let der = hex::decode(format!("{ED25519_SPKI_PREFIX}{ED25519_PUBLIC}")).unwrap();
    PublicKey::from_spki_der(&der).unwrap()
}

/// The simple-signing payload cosign signs for the artifact.
fn good_payload(c: &Ctx<'_>) -> Vec<u8> {
    cosign::payload(&c.docker_reference, &c.digest)
}

/// The artifact's payload with `from` replaced by `to` (which must occur).
fn edited_payload(c: &Ctx<'_>, from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(good_payload(c)).unwrap();
    assert!(text.contains(from), "`{from}` is not in the payload");
    text.replacen(from, to, 1).into_bytes()
}

/// A simple-signing layer over `payload` with `signature` in its annotation.
fn signature(payload: Vec<u8>, signature: &str) -> Material {
    let mut layer = Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, &payload);
    layer
        .annotations
        .insert(ANNOTATION_SIGNATURE.into(), signature.into());
    Material::default().layer(layer, payload)
}

/// `payload`, validly signed by the trusted key.
fn signed(c: &Ctx<'_>, payload: Vec<u8>) -> Material {
    let sig = sign_b64(c.trusted, &payload);
    signature(payload, &sig)
}

/// An ASN.1 DER ECDSA signature (`SEQUENCE { INTEGER r, INTEGER s }`, short lengths) as the
/// fixed-width `r || s` form.
fn der_to_fixed(der: &[u8]) -> Vec<u8> {
    let r_len = usize::from(der[3]);
    let r = &der[4..4 + r_len];
    let s_len = usize::from(der[5 + r_len]);
    let s = &der[6 + r_len..6 + r_len + s_len];
    let mut out = Vec::new();
    for int in [r, s] {
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
    }
    out
}

/// `n` layers all over the artifact's payload, all validly signed by the trusted key.
fn many_signatures(c: &Ctx<'_>, n: usize) -> Material {
    let payload = good_payload(c);
    let sig = sign_b64(c.trusted, &payload);
    let mut material = signature(payload.clone(), &sig);
    let layer = material.layers[0].clone();
    for _ in 1..n {
        material = material.layer(layer.clone(), payload.clone());
    }
    material
}

fn slsa_v1_predicate() -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {
                "repository": "https://github.com/acme/plugin", "ref": "refs/tags/v1.2.0"}}
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}
    })
}

fn slsa_v02_predicate() -> Value {
    json!({
        "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator"},
        "invocation": {"configSource": {"uri": "git+https://github.com/acme/plugin@refs/tags/v1"}}
    })
}

/// An in-toto v1 statement of SLSA v1 provenance about the artifact.
fn statement(c: &Ctx<'_>) -> Value {
    json!({
        "_type": STATEMENT_TYPES[0],
        "subject": [{"name": c.docker_reference, "digest": {"sha256": c.digest.hex()}}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": slsa_v1_predicate(),
    })
}

/// `statement` after `edit`.
fn edited_statement(c: &Ctx<'_>, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut s = statement(c);
    edit(&mut s);
    s.to_string().into_bytes()
}

/// A DSSE signature by `key` over the PAE of `payload` as `payload_type`.
fn dsse(key: &SigningKey, payload_type: &str, payload: &[u8]) -> String {
    sign_b64(key, &pae(payload_type, payload))
}

/// A DSSE envelope.
fn envelope(payload_type: &str, payload: &[u8], signatures: &[String]) -> Vec<u8> {
    let signatures: Vec<Value> = signatures
        .iter()
        .map(|sig| json!({"keyid": "", "sig": sig}))
        .collect();
    json!({"payloadType": payload_type, "payload": b64(payload), "signatures": signatures})
        .to_string()
        .into_bytes()
}

/// A DSSE layer holding `envelope`.
fn attestation(envelope: Vec<u8>) -> Material {
    let layer = Descriptor::of(MEDIA_TYPE_DSSE, &envelope);
    Material::default().layer(layer, envelope)
}

/// `payload` as an in-toto envelope validly signed by the trusted key.
fn attested(c: &Ctx<'_>, payload: Vec<u8>) -> Material {
    let sig = dsse(c.trusted, PAYLOAD_TYPE_IN_TOTO, &payload);
    attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &payload, &[sig]))
}

/// The statement [`ED25519_DSSE`] signs: exactly these bytes.
fn ed25519_statement() -> Vec<u8> {
    format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"tamper/ed25519","digest":{{"sha256":"{}"}}}}],"predicateType":"{ED25519_PREDICATE}","predicate":{{}}}}"#,
        Digest::of(ED25519_ATTESTED).hex()
    )
    .into_bytes()
}

/// A JSON document nested 1000 levels deep.
fn nested_1000() -> Vec<u8> {
    format!("{}{}", "[".repeat(1000), "]".repeat(1000)).into_bytes()
}

/// The blob file a descriptor names in a layout.
fn blob_path(root: &Path, descriptor: &Descriptor) -> std::path::PathBuf {
    root.join("blobs")
        .join("sha256")
        .join(descriptor.digest.hex())
}

/// Replace a layout blob file's content.
fn overwrite_blob(root: &Path, descriptor: &Descriptor, content: &[u8]) {
    let path = blob_path(root, descriptor);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, content).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The signature matrix.

fn signature_cases() -> Vec<Case> {
    use Expect::{Refused, Rejected, Verified, VerifiedBeside};
    const NOT_TRUSTED: &str = "the signature does not verify with any trusted key (`{trusted}`)";
    vec![
        case(
            "control: the untampered signature verifies",
            |c| signed(c, good_payload(c)),
            Verified,
        ),
        case(
            "layer media type is not simple-signing",
            |c| {
                signed(c, good_payload(c)).with_first(|l| {
                    l.media_type = "application/vnd.oci.image.layer.v1.tar".into();
                })
            },
            Rejected(
                "media type `application/vnd.oci.image.layer.v1.tar` is not \
                 `application/vnd.dev.cosign.simplesigning.v1+json`",
            ),
        ),
        case(
            "signature annotation missing",
            |c| {
                signed(c, good_payload(c)).with_first(|l| {
                    l.annotations.remove(ANNOTATION_SIGNATURE);
                })
            },
            Rejected("no `dev.cosignproject.cosign/signature` annotation"),
        ),
        case(
            "signature annotation of 4097 characters",
            |c| signature(good_payload(c), &"A".repeat(4097)),
            Rejected("signature annotation longer than 4096 characters"),
        ),
        case(
            "signature annotation of exactly 4096 characters is read, and does not verify",
            |c| signature(good_payload(c), &"A".repeat(4096)),
            Rejected(NOT_TRUSTED),
        ),
        case(
            "signature annotation is base64 garbage",
            |c| signature(good_payload(c), "MEUCIQ*garbage*=="),
            Rejected("signature is not base64: "),
        ),
        case(
            "signature annotation is empty",
            |c| signature(good_payload(c), ""),
            Rejected(NOT_TRUSTED),
        ),
        case(
            "signature by an untrusted key",
            |c| {
                let payload = good_payload(c);
                let sig = sign_b64(c.untrusted, &payload);
                signature(payload, &sig)
            },
            Rejected(NOT_TRUSTED),
        ),
        case(
            "signature over a different payload",
            |c| {
                let other = cosign::payload(&c.docker_reference, &c.other);
                signature(good_payload(c), &sign_b64(c.trusted, &other))
            },
            Rejected(NOT_TRUSTED),
        ),
        case(
            "signature over the payload's SHA-256 rather than the payload",
            |c| {
                let payload = good_payload(c);
                let prehashed = hex::decode(Digest::of(&payload).hex()).unwrap();
                let sig = sign_b64(c.trusted, &prehashed);
                signature(payload, &sig)
            },
            Rejected(NOT_TRUSTED),
        ),
        case(
            "ECDSA signature as fixed-width r||s rather than ASN.1 DER",
            |c| {
                let payload = good_payload(c);
                let fixed = der_to_fixed(&c.trusted.sign(&payload).unwrap());
                signature(payload, &b64(&fixed))
            },
            Rejected(NOT_TRUSTED),
        ),
        case(
            "payload naming another digest, validly signed",
            |c| signed(c, cosign::payload(&c.docker_reference, &c.other)),
            Rejected("payload names `{other}`, not the artifact `{digest}`"),
        ),
        case(
            "payload naming the digest in upper-case hex, validly signed",
            |c| {
                let hex = c.digest.hex();
                signed(c, edited_payload(c, hex, &hex.to_uppercase()))
            },
            Rejected("not the artifact `{digest}`"),
        ),
        case(
            "payload naming the bare hex without `sha256:`, validly signed",
            |c| {
                let hex = c.digest.hex();
                signed(c, edited_payload(c, &format!("sha256:{hex}"), hex))
            },
            Rejected("payload names `{hex}`, not the artifact `{digest}`"),
        ),
        case(
            "payload type with a trailing space, validly signed",
            |c| {
                let quoted = format!("\"{PAYLOAD_TYPE}\"");
                signed(
                    c,
                    edited_payload(c, &quoted, &format!("\"{PAYLOAD_TYPE} \"")),
                )
            },
            Rejected(
                "payload type `cosign container image signature ` is not \
                 `cosign container image signature`",
            ),
        ),
        case(
            "payload with an unknown top-level field, validly signed",
            |c| {
                signed(
                    c,
                    edited_payload(c, r#""optional":null"#, r#""optional":null,"critical2":{}"#),
                )
            },
            Rejected("unknown field `critical2`"),
        ),
        case(
            "payload with an unknown field inside `critical`, validly signed",
            |c| signed(c, edited_payload(c, r#""type":"#, r#""extra":1,"type":"#)),
            Rejected("unknown field `extra`"),
        ),
        case(
            "payload with a second `critical` naming another digest, validly signed",
            |c| {
                let critical = |d: &Digest| {
                    let p: Value =
                        serde_json::from_slice(&cosign::payload(&c.docker_reference, d)).unwrap();
                    p["critical"].to_string()
                };
                let payload = format!(
                    r#"{{"critical":{},"critical":{},"optional":null}}"#,
                    critical(&c.digest),
                    critical(&c.other)
                );
                signed(c, payload.into_bytes())
            },
            Rejected("duplicate field `critical`"),
        ),
        case(
            "payload without `identity`, validly signed",
            |c| {
                let identity = format!(
                    r#""identity":{{"docker-reference":{}}},"#,
                    Value::String(c.docker_reference.clone())
                );
                signed(c, edited_payload(c, &identity, ""))
            },
            Rejected("missing field `identity`"),
        ),
        case(
            "payload not JSON, validly signed",
            |c| signed(c, b"critical: yes\n".to_vec()),
            Rejected("malformed simple-signing payload: "),
        ),
        case(
            "payload nested 1000 levels deep, validly signed",
            |c| signed(c, nested_1000()),
            Rejected("malformed simple-signing payload: JSON nested deeper than 32 levels"),
        ),
        case(
            "payload followed by a second JSON document, validly signed",
            |c| {
                let mut payload = good_payload(c);
                payload.extend_from_slice(b"{}");
                signed(c, payload)
            },
            Rejected("malformed simple-signing payload: trailing characters"),
        ),
        case(
            "descriptor size larger than the blob",
            |c| signed(c, good_payload(c)).with_first(|l| l.size = 4096),
            Rejected("bytes but its descriptor declares 4096"),
        ),
        case(
            "descriptor size smaller than the blob (refused, though not as a size mismatch)",
            |c| signed(c, good_payload(c)).with_first(|l| l.size = 100),
            Rejected("bytes but its descriptor declares 100"),
        ),
        case(
            "descriptor size over 1 MiB",
            |c| signed(c, good_payload(c)).with_first(|l| l.size = OVER_ONE_MIB),
            Rejected("payload of 1048577 bytes exceeds the limit of 1048576 bytes"),
        ),
        case(
            "control: a payload of exactly 1 MiB verifies",
            |c| {
                let mut payload = good_payload(c);
                payload.resize(1024 * 1024, b' ');
                signed(c, payload)
            },
            Verified,
        ),
        case(
            "control: an Ed25519 key's signature verifies",
            |c| {
                let digest = Digest::of(ED25519_SIGNED);
                signature(
                    cosign::payload("tamper/ed25519", &digest),
                    ED25519_SIGNATURE,
                )
                .keys(vec![c.ed25519.clone()])
                .digest(digest)
            },
            Verified,
        ),
        case(
            "Ed25519 signature checked against a P-256 key",
            |_| {
                let digest = Digest::of(ED25519_SIGNED);
                signature(
                    cosign::payload("tamper/ed25519", &digest),
                    ED25519_SIGNATURE,
                )
                .digest(digest)
            },
            Rejected(NOT_TRUSTED),
        ),
        case(
            "P-256 signature checked against an Ed25519 key",
            |c| signed(c, good_payload(c)).keys(vec![c.ed25519.clone()]),
            Rejected("the signature does not verify with any trusted key (`{ed25519}`)"),
        ),
        case(
            "keyless signature (certificate annotation) without its transparency-log entry",
            |c| {
                let payload = good_payload(c);
                let sig = sign_b64(c.untrusted, &payload);
                signature(payload, &sig).with_first(|l| {
                    l.annotations.insert(
                        ANNOTATION_CERTIFICATE.into(),
                        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
                    );
                })
            },
            Rejected("a keyless signature without the `dev.sigstore.cosign/bundle` annotation"),
        ),
        case(
            "a valid signature but no key trusted at all",
            |c| signed(c, good_payload(c)).keys(Vec::new()),
            Rejected("no public key is trusted (give `--key`)"),
        ),
        case(
            "a tampered signature beside a good one: both are seen",
            |c| {
                let good = good_payload(c);
                let sig = sign_b64(c.trusted, &good);
                let mut replayed = signed(c, cosign::payload(&c.docker_reference, &c.other));
                let layer = replayed.layers.remove(0);
                let blob = replayed.blobs.remove(0).1;
                signature(good, &sig).layer(layer, blob)
            },
            VerifiedBeside("payload names `{other}`, not the artifact `{digest}`"),
        ),
        case(
            "the `.sig` tag holds a Docker image manifest (served as it is: Docker types are asked for)",
            docker_manifest_at_tag,
            Refused(
                "unsupported media type `application/vnd.docker.distribution.manifest.v2+json` for manifest",
            ),
        ),
        case(
            "101 signatures, all valid",
            |c| many_signatures(c, 101),
            Refused("holds 101 signatures; at most 100 are considered"),
        ),
        case(
            "control: exactly 100 signatures are read",
            |c| many_signatures(c, 100),
            Verified,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The attestation matrix.

fn attestation_cases() -> Vec<Case> {
    use Expect::{Refused, Rejected, VerifiedBeside, VerifiedEach, VerifiedPredicate};
    const NO_SIGNATURE: &str = "no envelope signature verifies with a trusted key";
    const NOT_THE_ARTIFACT: &str =
        "the statement's subjects do not include the artifact `{digest}`";
    const CUSTOM: &str = "https://example.com/custom-predicate";
    vec![
        case(
            "control: untampered SLSA v1 provenance verifies",
            |c| attested(c, statement(c).to_string().into_bytes()),
            VerifiedPredicate(SLSA_PROVENANCE_V1),
        ),
        case(
            "control: untampered SLSA v0.2 provenance verifies",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| {
                        s["predicateType"] = json!(SLSA_PROVENANCE_V02);
                        s["predicate"] = slsa_v02_predicate();
                    }),
                )
            },
            VerifiedPredicate(SLSA_PROVENANCE_V02),
        ),
        case(
            "control: an in-toto v0.1 statement verifies",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| {
                        s["_type"] = json!(STATEMENT_TYPES[1]);
                        s["predicateType"] = json!(CUSTOM);
                        s["predicate"] = json!({});
                    }),
                )
            },
            VerifiedPredicate(CUSTOM),
        ),
        case(
            "control: the layer's predicateType annotation is not what counts",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| s["predicateType"] = json!(CUSTOM)),
                )
                .with_first(|l| {
                    l.annotations
                        .insert(ANNOTATION_PREDICATE_TYPE.into(), SLSA_PROVENANCE_V1.into());
                })
            },
            VerifiedPredicate(CUSTOM),
        ),
        case(
            "layer media type is not DSSE",
            |c| {
                attested(c, statement(c).to_string().into_bytes())
                    .with_first(|l| l.media_type = PAYLOAD_TYPE_IN_TOTO.into())
            },
            Rejected(
                "media type `application/vnd.in-toto+json` is not \
                 `application/vnd.dsse.envelope.v1+json`",
            ),
        ),
        case(
            "envelope payloadType not in-toto, validly signed",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let sig = dsse(c.trusted, "application/json", &payload);
                attestation(envelope("application/json", &payload, &[sig]))
            },
            Rejected("payload type `application/json` is not `application/vnd.in-toto+json`"),
        ),
        case(
            "envelope signed by an untrusted key",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let sig = dsse(c.untrusted, PAYLOAD_TYPE_IN_TOTO, &payload);
                attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &payload, &[sig]))
            },
            Rejected(NO_SIGNATURE),
        ),
        case(
            "envelope payload modified after signing",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let sig = dsse(c.trusted, PAYLOAD_TYPE_IN_TOTO, &payload);
                let modified = edited_statement(c, |s| {
                    s["predicate"]["runDetails"]["builder"]["id"] = json!("https://evil.example");
                });
                attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &modified, &[sig]))
            },
            Rejected(NO_SIGNATURE),
        ),
        case(
            "envelope signature over the raw payload rather than the PAE",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let sig = sign_b64(c.trusted, &payload);
                attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &payload, &[sig]))
            },
            Rejected(NO_SIGNATURE),
        ),
        case(
            "envelope signature over the PAE of another payload type",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let sig = dsse(c.trusted, "application/json", &payload);
                attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &payload, &[sig]))
            },
            Rejected(NO_SIGNATURE),
        ),
        case(
            "envelope with 17 signatures, all valid",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let sig = dsse(c.trusted, PAYLOAD_TYPE_IN_TOTO, &payload);
                attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &payload, &vec![sig; 17]))
            },
            Rejected("17 envelope signatures; at most 16 are considered"),
        ),
        case(
            "control: an envelope of 16 signatures, only the last valid, verifies",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let mut sigs = vec![dsse(c.untrusted, PAYLOAD_TYPE_IN_TOTO, &payload); 15];
                sigs.push(dsse(c.trusted, PAYLOAD_TYPE_IN_TOTO, &payload));
                attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &payload, &sigs))
            },
            VerifiedPredicate(SLSA_PROVENANCE_V1),
        ),
        case(
            "envelope with an empty signatures list",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &payload, &[]))
            },
            Rejected(NO_SIGNATURE),
        ),
        case(
            "envelope without a signatures field",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let bytes = json!({"payloadType": PAYLOAD_TYPE_IN_TOTO, "payload": b64(&payload)});
                attestation(bytes.to_string().into_bytes())
            },
            Rejected("missing field `signatures`"),
        ),
        case(
            "envelope whose only signature is not base64",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                attestation(envelope(PAYLOAD_TYPE_IN_TOTO, &payload, &["*".into()]))
            },
            Rejected(NO_SIGNATURE),
        ),
        case(
            "envelope not JSON",
            |_| attestation(b"DSSEv1 not an envelope".to_vec()),
            Rejected("malformed DSSE envelope: "),
        ),
        case(
            "envelope nested 1000 levels deep",
            |_| attestation(nested_1000()),
            Rejected("malformed DSSE envelope: JSON nested deeper than 32 levels"),
        ),
        case(
            "envelope with a duplicate payloadType",
            |c| {
                let payload = statement(c).to_string().into_bytes();
                let sig = dsse(c.trusted, PAYLOAD_TYPE_IN_TOTO, &payload);
                let bytes = format!(
                    r#"{{"payloadType":"{PAYLOAD_TYPE_IN_TOTO}","payloadType":"{PAYLOAD_TYPE_IN_TOTO}","payload":"{}","signatures":[{{"keyid":"","sig":"{sig}"}}]}}"#,
                    b64(&payload)
                );
                attestation(bytes.into_bytes())
            },
            Rejected("duplicate field `payloadType`"),
        ),
        case(
            "envelope payload not base64",
            |c| {
                let sig = dsse(c.trusted, PAYLOAD_TYPE_IN_TOTO, b"");
                let bytes = json!({
                    "payloadType": PAYLOAD_TYPE_IN_TOTO,
                    "payload": "{not base64}",
                    "signatures": [{"keyid": "", "sig": sig}],
                });
                attestation(bytes.to_string().into_bytes())
            },
            Rejected("payload is not base64: "),
        ),
        case(
            "statement not JSON, validly signed",
            |c| attested(c, b"_type: in-toto".to_vec()),
            Rejected("malformed in-toto statement: "),
        ),
        case(
            "statement nested 1000 levels deep, validly signed",
            |c| attested(c, nested_1000()),
            Rejected("malformed in-toto statement: JSON nested deeper than 32 levels"),
        ),
        case(
            "statement `_type` not in-toto, validly signed",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| s["_type"] = json!("https://in-toto.io/Statement/v2")),
                )
            },
            Rejected(
                "statement type `https://in-toto.io/Statement/v2` is not an in-toto statement",
            ),
        ),
        case(
            "statement with a second `subject` naming another digest, validly signed",
            |c| {
                let payload = format!(
                    r#"{{"_type":"{}","subject":[{{"digest":{{"sha256":"{}"}}}}],"subject":[{{"digest":{{"sha256":"{}"}}}}],"predicateType":"{CUSTOM}","predicate":{{}}}}"#,
                    STATEMENT_TYPES[0],
                    c.digest.hex(),
                    c.other.hex()
                );
                attested(c, payload.into_bytes())
            },
            Rejected("duplicate field `subject`"),
        ),
        case(
            "statement without `subject`, validly signed",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| {
                        s.as_object_mut().unwrap().remove("subject");
                    }),
                )
            },
            Rejected("missing field `subject`"),
        ),
        case(
            "statement subject for another digest, validly signed",
            |c| {
                let other = c.other.hex().to_owned();
                attested(
                    c,
                    edited_statement(c, |s| s["subject"][0]["digest"] = json!({"sha256": other})),
                )
            },
            Rejected(NOT_THE_ARTIFACT),
        ),
        case(
            "statement subject with only a sha512 digest equal to the hex, validly signed",
            |c| {
                let hex = c.digest.hex().to_owned();
                attested(
                    c,
                    edited_statement(c, |s| s["subject"][0]["digest"] = json!({"sha512": hex})),
                )
            },
            Rejected(NOT_THE_ARTIFACT),
        ),
        case(
            "statement subject digest in upper-case hex, validly signed",
            |c| {
                let upper = c.digest.hex().to_uppercase();
                attested(
                    c,
                    edited_statement(c, |s| s["subject"][0]["digest"] = json!({"sha256": upper})),
                )
            },
            Rejected(NOT_THE_ARTIFACT),
        ),
        case(
            "statement with an empty subject list, validly signed",
            |c| attested(c, edited_statement(c, |s| s["subject"] = json!([]))),
            Rejected(NOT_THE_ARTIFACT),
        ),
        case(
            "SLSA v1 provenance without a builder id, validly signed",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| {
                        s["predicate"].as_object_mut().unwrap().remove("runDetails");
                    }),
                )
            },
            Rejected("`https://slsa.dev/provenance/v1` provenance without a builder id"),
        ),
        case(
            "SLSA v1 provenance with its builder id only where v0.2 keeps it, validly signed",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| {
                        let predicate = s["predicate"].as_object_mut().unwrap();
                        predicate.remove("runDetails");
                        predicate.insert("builder".into(), json!({"id": "https://builder"}));
                    }),
                )
            },
            Rejected("`https://slsa.dev/provenance/v1` provenance without a builder id"),
        ),
        case(
            "SLSA v1 provenance whose builder id is not a string, validly signed",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| {
                        s["predicate"]["runDetails"]["builder"]["id"] = json!(42);
                    }),
                )
            },
            Rejected("`https://slsa.dev/provenance/v1` provenance without a builder id"),
        ),
        case(
            "SLSA v0.2 provenance without a builder id, validly signed",
            |c| {
                attested(
                    c,
                    edited_statement(c, |s| {
                        s["predicateType"] = json!(SLSA_PROVENANCE_V02);
                        s["predicate"] = slsa_v02_predicate();
                        s["predicate"].as_object_mut().unwrap().remove("builder");
                    }),
                )
            },
            Rejected("`https://slsa.dev/provenance/v0.2` provenance without a builder id"),
        ),
        case(
            "envelope descriptor size over 1 MiB",
            |c| {
                attested(c, statement(c).to_string().into_bytes())
                    .with_first(|l| l.size = OVER_ONE_MIB)
            },
            Rejected("envelope of 1048577 bytes exceeds the limit of 1048576 bytes"),
        ),
        case(
            "envelope descriptor size larger than the blob",
            |c| attested(c, statement(c).to_string().into_bytes()).with_first(|l| l.size = 65_536),
            Rejected("bytes but its descriptor declares 65536"),
        ),
        case(
            "envelope descriptor size smaller than the blob (refused, though not as a size \
             mismatch)",
            |c| attested(c, statement(c).to_string().into_bytes()).with_first(|l| l.size = 100),
            Rejected("bytes but its descriptor declares 100"),
        ),
        case(
            "a valid attestation but no key trusted at all",
            |c| attested(c, statement(c).to_string().into_bytes()).keys(Vec::new()),
            Rejected("no public key is trusted (give `--key`)"),
        ),
        case(
            "control: an Ed25519 key's attestation verifies",
            |c| {
                let payload = ed25519_statement();
                attestation(envelope(
                    PAYLOAD_TYPE_IN_TOTO,
                    &payload,
                    &[ED25519_DSSE.into()],
                ))
                .keys(vec![c.ed25519.clone()])
                .digest(Digest::of(ED25519_ATTESTED))
            },
            VerifiedPredicate(ED25519_PREDICATE),
        ),
        case(
            "Ed25519 envelope signature checked against a P-256 key",
            |_| {
                let payload = ed25519_statement();
                attestation(envelope(
                    PAYLOAD_TYPE_IN_TOTO,
                    &payload,
                    &[ED25519_DSSE.into()],
                ))
                .digest(Digest::of(ED25519_ATTESTED))
            },
            Rejected(NO_SIGNATURE),
        ),
        case(
            "a tampered attestation beside a good one: both are seen",
            |c| {
                let other = c.other.hex().to_owned();
                let mut replayed = attested(
                    c,
                    edited_statement(c, |s| s["subject"][0]["digest"] = json!({"sha256": other})),
                );
                let layer = replayed.layers.remove(0);
                let blob = replayed.blobs.remove(0).1;
                attested(c, statement(c).to_string().into_bytes()).layer(layer, blob)
            },
            VerifiedBeside(NOT_THE_ARTIFACT),
        ),
        case(
            "101 attestations, all valid",
            |c| {
                let mut material = attested(c, statement(c).to_string().into_bytes());
                let (layer, blob) = (material.layers[0].clone(), material.blobs[0].1.clone());
                for _ in 0..100 {
                    material = material.layer(layer.clone(), blob.clone());
                }
                material
            },
            Refused("holds 101 attestations; at most 100 are considered"),
        ),
        case(
            "control: exactly 100 attestations are read",
            |c| {
                let mut material = attested(c, statement(c).to_string().into_bytes());
                let (layer, blob) = (material.layers[0].clone(), material.blobs[0].1.clone());
                for _ in 0..99 {
                    material = material.layer(layer.clone(), blob.clone());
                }
                material
            },
            VerifiedEach(100),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// What only a layout can hold (a blob changed, missing or swapped on disk), and the manifests
// a layout serves whatever the client asks for.

/// A signature manifest's layers, as an OCI index pointing at the artifact.
fn index_at_tag(c: &Ctx<'_>) -> Material {
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
        manifests: vec![c.artifact.clone()],
        annotations: BTreeMap::new(),
    };
    signed(c, good_payload(c))
        .raw_manifest(MEDIA_TYPE_OCI_INDEX, serde_json::to_vec(&index).unwrap())
}

/// A signature manifest as a Docker image manifest.
fn docker_manifest_at_tag(c: &Ctx<'_>) -> Material {
    let material = signed(c, good_payload(c));
    let config = Descriptor::of(MEDIA_TYPE_IMAGE_CONFIG, b"{}");
    let docker = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
        "config": config,
        "layers": material.layers,
    });
    material.raw_manifest(MEDIA_TYPE_DOCKER_MANIFEST, docker.to_string().into_bytes())
}

fn layout_signature_cases() -> Vec<Case> {
    use Expect::{Refused, Rejected, Verified};
    vec![
        case(
            "control: the untampered signature verifies in a layout",
            |c| signed(c, good_payload(c)),
            Verified,
        ),
        case(
            "the `.sig` tag holds an OCI image index",
            index_at_tag,
            Refused(
                "unsupported media type `application/vnd.oci.image.index.v1+json` for manifest",
            ),
        ),
        case(
            "the `.sig` tag holds a Docker image manifest",
            docker_manifest_at_tag,
            Refused(
                "unsupported media type `application/vnd.docker.distribution.manifest.v2+json`",
            ),
        ),
        case(
            "payload blob altered on disk after signing",
            |c| {
                signed(c, good_payload(c)).on_disk(|root, layer| {
                    overwrite_blob(
                        root,
                        layer,
                        &vec![b' '; usize::try_from(layer.size).unwrap()],
                    );
                })
            },
            Rejected("payload: digest mismatch for blob `"),
        ),
        case(
            "payload blob missing",
            |c| {
                let payload = good_payload(c);
                let sig = sign_b64(c.trusted, &payload);
                let mut layer = Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, &payload);
                layer.annotations.insert(ANNOTATION_SIGNATURE.into(), sig);
                Material::default().layer_without_blob(layer)
            },
            Rejected("payload: not found: blob `"),
        ),
        case(
            "payload blob is a symlink (to a file with the right content)",
            |c| {
                signed(c, good_payload(c)).on_disk(|root, layer| {
                    let path = blob_path(root, layer);
                    let copy = root.join("copy-of-payload");
                    std::fs::copy(&path, &copy).unwrap();
                    std::fs::remove_file(&path).unwrap();
                    std::os::unix::fs::symlink(&copy, &path).unwrap();
                })
            },
            Rejected("not a regular file"),
        ),
        case(
            "descriptor size smaller than the blob",
            |c| signed(c, good_payload(c)).with_first(|l| l.size = 100),
            Rejected("bytes but its descriptor declares 100"),
        ),
    ]
}

fn layout_attestation_cases() -> Vec<Case> {
    use Expect::{Refused, Rejected};
    vec![
        case(
            "the `.att` tag holds an OCI image index",
            index_at_tag,
            Refused(
                "unsupported media type `application/vnd.oci.image.index.v1+json` for manifest",
            ),
        ),
        case(
            "envelope blob altered on disk after signing",
            |c| {
                attested(c, statement(c).to_string().into_bytes()).on_disk(|root, layer| {
                    overwrite_blob(
                        root,
                        layer,
                        &vec![b' '; usize::try_from(layer.size).unwrap()],
                    );
                })
            },
            Rejected("envelope: digest mismatch for blob `"),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_signatures_through_a_registry_are_rejected_with_their_reason() {
    let registry = TestRegistry::start();
    run_matrix(
        Backend::registry(&registry),
        Kind::Signatures,
        signature_cases(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_attestations_through_a_registry_are_rejected_with_their_reason() {
    let registry = TestRegistry::start();
    run_matrix(
        Backend::registry(&registry),
        Kind::Attestations,
        attestation_cases(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_layouts_are_rejected_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    run_matrix(
        Backend::Layout(dir.path().to_owned()),
        Kind::Signatures,
        layout_signature_cases(),
    )
    .await;
    run_matrix(
        Backend::Layout(dir.path().to_owned()),
        Kind::Attestations,
        layout_attestation_cases(),
    )
    .await;
}

/// A registry answers a GET whose `Accept` lists only the OCI manifest type with 404 when the
/// tag holds an index (distribution: "OCI index found, but accept header does not support OCI
/// indexes"). `fetch_attached` asks for exactly that and maps 404 to "nothing attached", so an
/// index at `.sig`/`.att` reads as *unsigned*, nothing rejected, where a layout refuses the same
/// tag by its media type. Fail-closed, but the verdict hides that the tag exists and is not a
/// manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_at_the_attachment_tags_of_a_registry_is_refused_by_its_media_type() {
    let registry = TestRegistry::start();
    let cases = |what| {
        vec![case(
            what,
            index_at_tag,
            Expect::Refused(
                "unsupported media type `application/vnd.oci.image.index.v1+json` for manifest",
            ),
        )]
    };
    run_matrix(
        Backend::registry(&registry),
        Kind::Signatures,
        cases("the `.sig` tag holds an OCI image index"),
    )
    .await;
    run_matrix(
        Backend::registry(&registry),
        Kind::Attestations,
        cases("the `.att` tag holds an OCI image index"),
    )
    .await;
}

/// A descriptor that declares fewer bytes than the blob is refused through a registry, but as
/// "blob exceeds the limit of <declared> bytes" (the declared size is used as the read limit
/// and the response's length exceeds it), while a layout reports the same tamper as a size
/// mismatch. The reason should name the lie, not a limit the operator never set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_smaller_than_its_blob_is_a_size_mismatch_through_a_registry() {
    let registry = TestRegistry::start();
    let cases = vec![case(
        "signature descriptor size smaller than the blob",
        |c| signed(c, good_payload(c)).with_first(|l| l.size = 100),
        Expect::Rejected("bytes but its descriptor declares 100"),
    )];
    run_matrix(Backend::registry(&registry), Kind::Signatures, cases).await;
    let cases = vec![case(
        "envelope descriptor size smaller than the blob",
        |c| attested(c, statement(c).to_string().into_bytes()).with_first(|l| l.size = 100),
        Expect::Rejected("bytes but its descriptor declares 100"),
    )];
    run_matrix(Backend::registry(&registry), Kind::Attestations, cases).await;
}
