//! Keyless signatures end to end, offline: a private Sigstore instance of the tests' own (a CA
//! issuing Fulcio-style certificates, a CT log key for their SCTs, a transparency log with SETs,
//! inclusion proofs and signed checkpoints, and its `trusted_root.json`) signs Wasm artifacts
//! pushed to a real registry, as cosign `.sig` layers and as Sigstore bundle referrers.
//!
//! The matrix gives each case its own repository; each case says exactly why verification
//! must refuse, beside controls that the untampered material verifies.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine as _;
use broker::cosign::{
    self, ANNOTATION_BUNDLE, ANNOTATION_CERTIFICATE, ANNOTATION_SIGNATURE,
    MEDIA_TYPE_SIMPLE_SIGNING,
};
use broker::pipeline::verify_artifact;
use broker::referrers::PREDICATE_COSIGN_SIGN;
use broker::verify::{Identity, Match, Trust, TrustedRoot, load_trusted_root};
use registry_client::attached::signature_tag;
use registry_client::manifest::MEDIA_TYPE_OCI_MANIFEST;
use registry_client::{
    Attachment, ClientOptions, Descriptor, Digest, ImageManifest, NoProgress, Reference,
    RegistryClient,
};
use serde_json::{Value, json};
use tests::fixtures::{HELLO_OUTPUT, hello_module, module_of_size};
use tests::registry::TestRegistry;
use tests::sigstore::{CertSpec, Keyless, PrivateSigstore};

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const IDENTITY: &str =
    "https://github.com/acme/plugin/.github/workflows/release.yml@refs/tags/v1.0.0";
const SOURCE_REPOSITORY: &str = "https://github.com/acme/plugin";
/// Fulcio's `SourceRepositoryURI` extension.
const OID_SOURCE_REPOSITORY_URI: &str = "1.3.6.1.4.1.57264.1.12";
const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
const SLSA_V1: &str = "https://slsa.dev/provenance/v1";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn spec() -> CertSpec {
    let mut spec = CertSpec::new(IDENTITY, ISSUER);
    spec.extra_extensions
        .push((OID_SOURCE_REPOSITORY_URI.into(), SOURCE_REPOSITORY.into()));
    spec
}

fn trusted_identity() -> Vec<Identity> {
    vec![Identity {
        identity: IDENTITY.into(),
        issuer: ISSUER.into(),
    }]
}

fn statement(digest: &Digest, predicate_type: &str, predicate: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": "artifact", "digest": { "sha256": digest.hex() } }],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .unwrap()
}

fn slsa_predicate() -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": { "workflow": {
                "repository": SOURCE_REPOSITORY, "ref": "refs/tags/v1.0.0",
                "path": ".github/workflows/release.yml" } },
        },
        "runDetails": { "builder": { "id": "https://github.com/actions/runner" } },
    })
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// What a setup sees.
struct Ctx<'a> {
    /// The artifact's manifest digest: what is verified.
    digest: Digest,
    /// The artifact's manifest bytes: what a message-signature bundle signs.
    manifest: Vec<u8>,
    /// Another artifact's digest and manifest bytes, in the same repository.
    other: Digest,
    other_manifest: Vec<u8>,
    docker_reference: String,
    /// The instance whose root is trusted.
    sigstore: &'a mut PrivateSigstore,
    /// An instance nobody trusts.
    untrusted: &'a mut PrivateSigstore,
}

impl Ctx<'_> {
    /// The trusted instance's root with its `section` (`certificateAuthorities`, `ctlogs`,
    /// `tlogs`) taken from the untrusted instance's root.
    fn root_with(&self, section: &str) -> String {
        let mut root: Value = serde_json::from_str(&self.sigstore.trusted_root_json()).unwrap();
        let foreign: Value = serde_json::from_str(&self.untrusted.trusted_root_json()).unwrap();
        root[section] = foreign[section].clone();
        root.to_string()
    }

    /// The simple-signing payload for `digest`.
    fn payload(&self, digest: &Digest) -> Vec<u8> {
        cosign::payload(&self.docker_reference, digest)
    }

    /// A keyless `.sig` layer over this artifact's payload, signed by the trusted instance.
    fn signed_layer(&mut self) -> (Descriptor, Vec<u8>) {
        let payload = self.payload(&self.digest.clone());
        let signed = self.sigstore.sign_message(&payload, &spec());
        sig_layer(payload, &signed)
    }

    /// A message-signature bundle over this artifact's manifest.
    fn message_bundle(&mut self) -> Keyless {
        let manifest = self.manifest.clone();
        self.sigstore.sign_message(&manifest, &spec())
    }

    /// A DSSE bundle of an in-toto statement about `digest`.
    fn dsse_bundle(&mut self, digest: &Digest, predicate_type: &str, predicate: Value) -> Keyless {
        let statement = statement(digest, predicate_type, predicate);
        self.sigstore
            .sign_dsse(PAYLOAD_TYPE_IN_TOTO, &statement, &spec())
    }
}

/// A `.sig` layer as cosign writes a keyless signature.
fn sig_layer(payload: Vec<u8>, signed: &Keyless) -> (Descriptor, Vec<u8>) {
    let mut layer = Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, &payload);
    layer
        .annotations
        .insert(ANNOTATION_SIGNATURE.into(), b64(&signed.signature));
    layer
        .annotations
        .insert(ANNOTATION_CERTIFICATE.into(), signed.cert_pem.clone());
    layer.annotations.insert(
        ANNOTATION_BUNDLE.into(),
        signed.cosign_bundle_annotation.clone(),
    );
    (layer, payload)
}

/// A bundle referrer: (artifact type, layer media type, bundle bytes), and extra layers.
struct Referrer {
    artifact_type: String,
    layers: Vec<(String, Vec<u8>)>,
}

fn referrer(bundle: &Value) -> Referrer {
    Referrer {
        artifact_type: BUNDLE_V03.into(),
        layers: vec![(BUNDLE_V03.into(), serde_json::to_vec(bundle).unwrap())],
    }
}

/// What a case attaches, and what is trusted.
#[derive(Default)]
struct Material {
    /// `.sig` layers with their payloads.
    sig: Vec<(Descriptor, Vec<u8>)>,
    /// Sigstore bundle referrers.
    referrers: Vec<Referrer>,
    /// The identities trusted; [`trusted_identity`] when `None`.
    identities: Option<Vec<Identity>>,
    /// Trust the production root instead of the private instance's.
    production_root: bool,
    /// Trust this root (JSON) instead of the private instance's.
    root: Option<String>,
}

impl Material {
    fn sig(layer: (Descriptor, Vec<u8>)) -> Self {
        Self {
            sig: vec![layer],
            ..Self::default()
        }
    }

    fn referrer(referrer: Referrer) -> Self {
        Self {
            referrers: vec![referrer],
            ..Self::default()
        }
    }

    fn identities(mut self, identities: Vec<Identity>) -> Self {
        self.identities = Some(identities);
        self
    }
}

#[derive(Debug)]
enum Expect {
    /// One keyless signer, [`IDENTITY`] from [`ISSUER`], with its source-repository claim;
    /// nothing rejected.
    Signed,
    /// One verified attestation of this predicate type by [`IDENTITY`]; no signer, nothing
    /// rejected.
    Attested(&'static str),
    /// Nothing verifies; exactly one rejection, whose reason contains this.
    Rejected(&'static str),
    /// Verification refuses outright, with an error containing this.
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    setup: fn(&mut Ctx<'_>) -> Material,
    expect: Expect,
}

fn case(name: &'static str, setup: fn(&mut Ctx<'_>) -> Material, expect: Expect) -> Case {
    Case {
        name,
        setup,
        expect,
    }
}

struct World {
    client: RegistryClient,
    sigstore: Mutex<PrivateSigstore>,
    untrusted: Mutex<PrivateSigstore>,
    root: TrustedRoot,
}

impl World {
    fn new() -> Self {
        let sigstore = PrivateSigstore::new();
        let root = TrustedRoot::from_json(&sigstore.trusted_root_json()).unwrap();
        Self {
            client: RegistryClient::new(ClientOptions::default()).unwrap(),
            sigstore: Mutex::new(sigstore),
            untrusted: Mutex::new(PrivateSigstore::new()),
            root,
        }
    }
}

async fn run_case(world: &World, host: &str, index: usize, case: &Case) -> Result<(), String> {
    let client = &world.client;
    let reference: Reference = format!("{host}/keyless/c{index:02}:v1").parse().unwrap();
    let other_reference: Reference = format!("{host}/keyless/c{index:02}:other").parse().unwrap();
    let seed = u8::try_from(index % 200).unwrap() + 1;
    client
        .push_wasm(module_of_size(1_000, seed), None, &reference, &NoProgress)
        .await
        .map_err(|e| format!("publishing the artifact: {e}"))?;
    client
        .push_wasm(
            module_of_size(1_001, seed),
            None,
            &other_reference,
            &NoProgress,
        )
        .await
        .map_err(|e| format!("publishing the other artifact: {e}"))?;
    let resolved = client
        .resolve(&reference)
        .await
        .map_err(|e| e.to_string())?;
    let other = client
        .resolve(&other_reference)
        .await
        .map_err(|e| e.to_string())?;

    let material = {
        let mut sigstore = world.sigstore.lock().unwrap();
        let mut untrusted = world.untrusted.lock().unwrap();
        let mut ctx = Ctx {
            digest: resolved.digest().clone(),
            manifest: resolved.manifest_bytes().to_vec(),
            other: other.digest().clone(),
            other_manifest: other.manifest_bytes().to_vec(),
            docker_reference: cosign::docker_reference(&reference),
            sigstore: &mut sigstore,
            untrusted: &mut untrusted,
        };
        (case.setup)(&mut ctx)
    };
    publish(client, &reference, &resolved.descriptor(), &material).await?;

    let root = if material.production_root {
        load_trusted_root(None).unwrap()
    } else if let Some(json) = &material.root {
        TrustedRoot::from_json(json).unwrap()
    } else {
        world.root.clone()
    };
    let identities = material.identities.clone().unwrap_or_else(trusted_identity);
    let trust = Trust::new(Vec::new(), identities, &root).map_err(|e| e.to_string())?;
    let found = verify_artifact(client, &reference, resolved.digest(), &trust).await;
    check(&case.expect, found)
}

async fn publish(
    client: &RegistryClient,
    reference: &Reference,
    subject: &Descriptor,
    material: &Material,
) -> Result<(), String> {
    if !material.sig.is_empty() {
        let config = b"{}".to_vec();
        let config_descriptor = Descriptor::of("application/vnd.oci.image.config.v1+json", &config);
        let mut blobs: Vec<(Descriptor, Vec<u8>)> = material
            .sig
            .iter()
            .map(|(layer, payload)| (Descriptor::of(&layer.media_type, payload), payload.clone()))
            .collect();
        blobs.push((config_descriptor.clone(), config));
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
            artifact_type: None,
            config: config_descriptor,
            layers: material.sig.iter().map(|(l, _)| l.clone()).collect(),
            subject: None,
            annotations: BTreeMap::new(),
        };
        client
            .put_attached(reference, &signature_tag(&subject.digest), &manifest, blobs)
            .await
            .map_err(|e| format!("publishing the signature: {e}"))?;
    }
    let Reference::Registry(repo) = reference else {
        return Err("referrers need a registry".into());
    };
    for r in &material.referrers {
        client
            .attach(
                repo,
                subject,
                Attachment {
                    artifact_type: r.artifact_type.clone(),
                    layers: r.layers.clone(),
                    annotations: BTreeMap::new(),
                },
            )
            .await
            .map_err(|e| format!("attaching a bundle: {e}"))?;
    }
    Ok(())
}

fn check(
    expect: &Expect,
    found: Result<(cosign::Verdict, broker::attest::Attestations), broker::pipeline::PipelineError>,
) -> Result<(), String> {
    let (verdict, attestations) = match (expect, found) {
        (Expect::Refused(want), Err(e)) => {
            let e = e.to_string();
            return if e.contains(want) {
                Ok(())
            } else {
                Err(format!("expected a refusal saying `{want}`, got `{e}`"))
            };
        }
        (_, Err(e)) => return Err(format!("expected {expect:?}, got the error `{e}`")),
        (_, Ok(found)) => found,
    };
    // The rendered reasons: these cases pin what the operator is told.
    let rejected: Vec<String> = verdict
        .rejected
        .iter()
        .chain(&attestations.rejected)
        .map(|r| r.reason.to_string())
        .collect();
    let summary = || {
        format!(
            "signers {:?}, attested {:?}, rejected {rejected:?}",
            verdict
                .signers
                .iter()
                .map(|s| (&s.identity, &s.issuer))
                .collect::<Vec<_>>(),
            attestations
                .verified
                .iter()
                .map(|a| &a.predicate_type)
                .collect::<Vec<_>>()
        )
    };
    let ok = match expect {
        Expect::Signed => {
            verdict.signers.len() == 1
                && verdict.signers[0].kind == broker::verify::SignerKind::Keyless
                && verdict.signers[0].identity == IDENTITY
                && verdict.signers[0].issuer == ISSUER
                && verdict.signers[0].claims.get("sourceRepositoryUri")
                    == Some(&SOURCE_REPOSITORY.to_owned())
                && rejected.is_empty()
        }
        Expect::Attested(predicate) => {
            verdict.signers.is_empty()
                && attestations.verified.len() == 1
                && attestations.verified[0].predicate_type == *predicate
                && attestations.verified[0].signer.identity == IDENTITY
                && rejected.is_empty()
        }
        Expect::Rejected(want) => {
            verdict.signers.is_empty()
                && attestations.verified.is_empty()
                && rejected.len() == 1
                && rejected[0].contains(want)
        }
        Expect::Refused(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {expect:?}, got {}", summary()))
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

fn with_bundle(keyless: &Keyless, edit: impl FnOnce(&mut Value)) -> Referrer {
    let mut bundle = keyless.bundle.clone();
    edit(&mut bundle);
    referrer(&bundle)
}

fn flip_b64(text: &str) -> String {
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    b64(&bytes)
}

fn cases() -> Vec<Case> {
    vec![
        // Controls.
        case(
            "keyless `.sig` layer",
            |c| Material::sig(c.signed_layer()),
            Expect::Signed,
        ),
        case(
            "message-signature bundle referrer over the manifest",
            |c| Material::referrer(referrer(&c.message_bundle().bundle)),
            Expect::Signed,
        ),
        case(
            "DSSE bundle referrer with cosign's signing predicate",
            |c| {
                let digest = c.digest.clone();
                let signed = c.dsse_bundle(&digest, PREDICATE_COSIGN_SIGN, json!({}));
                Material::referrer(referrer(&signed.bundle))
            },
            Expect::Signed,
        ),
        case(
            "DSSE bundle referrer with SLSA provenance is an attestation",
            |c| {
                let digest = c.digest.clone();
                let signed = c.dsse_bundle(&digest, SLSA_V1, slsa_predicate());
                Material::referrer(referrer(&signed.bundle))
            },
            Expect::Attested(SLSA_V1),
        ),
        case(
            "a bundle under the older media type",
            |c| {
                let mut r = referrer(&c.message_bundle().bundle);
                let old = "application/vnd.dev.sigstore.bundle+json;version=0.3".to_owned();
                r.artifact_type = old.clone();
                r.layers[0].0 = old;
                Material::referrer(r)
            },
            Expect::Signed,
        ),
        // Identity.
        case(
            "`.sig`: another identity is trusted",
            |c| {
                Material::sig(c.signed_layer()).identities(vec![Identity {
                    identity: "https://github.com/acme/other/.github/workflows/release.yml@refs/tags/v1.0.0".into(),
                    issuer: ISSUER.into(),
                }])
            },
            Expect::Rejected("is not trusted"),
        ),
        case(
            "`.sig`: the right identity from another issuer is trusted",
            |c| {
                Material::sig(c.signed_layer()).identities(vec![Identity {
                    identity: IDENTITY.into(),
                    issuer: "https://accounts.google.com".into(),
                }])
            },
            Expect::Rejected(
                "certificate identity `https://github.com/acme/plugin/.github/workflows/release.yml@refs/tags/v1.0.0` from issuer `https://token.actions.githubusercontent.com` is not trusted",
            ),
        ),
        case(
            "SAN prefix attack: `…/acme-evil` is not `…/acme`",
            |c| {
                let payload = c.payload(&c.digest.clone());
                let evil = CertSpec::new("https://github.com/acme-evil", ISSUER);
                let signed = c.sigstore.sign_message(&payload, &evil);
                Material::sig(sig_layer(payload, &signed)).identities(vec![Identity {
                    identity: "https://github.com/acme".into(),
                    issuer: ISSUER.into(),
                }])
            },
            Expect::Rejected(
                "certificate identity `https://github.com/acme-evil` from issuer `https://token.actions.githubusercontent.com` is not trusted",
            ),
        ),
        case(
            "identity prefix the other way: `…/acme` is not `…/acme-evil`",
            |c| {
                let payload = c.payload(&c.digest.clone());
                let short = CertSpec::new("https://github.com/acme", ISSUER);
                let signed = c.sigstore.sign_message(&payload, &short);
                Material::sig(sig_layer(payload, &signed)).identities(vec![Identity {
                    identity: "https://github.com/acme-evil".into(),
                    issuer: ISSUER.into(),
                }])
            },
            Expect::Rejected("certificate identity `https://github.com/acme` from issuer"),
        ),
        // Identity patterns: anchored at both ends, unlike cosign's `--certificate-identity-regexp`.
        case(
            "a pattern matching the whole identity, with an exact issuer, is trusted",
            |c| {
                Material::sig(c.signed_layer()).identities(vec![Identity {
                    identity: Match::pattern(r"https://github\.com/acme/plugin/\.github/workflows/release\.yml@refs/tags/v[0-9.]+").unwrap(),
                    issuer: ISSUER.into(),
                }])
            },
            Expect::Signed,
        ),
        case(
            "pattern anchoring: `https://github.com/acme/.*` does not match `…/acme-evil/…`",
            |c| {
                let payload = c.payload(&c.digest.clone());
                let evil = CertSpec::new(
                    "https://github.com/acme-evil/plugin/.github/workflows/release.yml@refs/tags/v1.0.0",
                    ISSUER,
                );
                let signed = c.sigstore.sign_message(&payload, &evil);
                Material::sig(sig_layer(payload, &signed)).identities(vec![Identity {
                    identity: Match::pattern("https://github.com/acme/.*").unwrap(),
                    issuer: ISSUER.into(),
                }])
            },
            Expect::Rejected("certificate identity `https://github.com/acme-evil/plugin/"),
        ),
        case(
            "pattern anchoring: nothing may follow the tag a pattern names",
            |c| {
                let payload = c.payload(&c.digest.clone());
                let suffixed = CertSpec::new(&format!("{IDENTITY}-evil"), ISSUER);
                let signed = c.sigstore.sign_message(&payload, &suffixed);
                Material::sig(sig_layer(payload, &signed)).identities(vec![Identity {
                    identity: Match::pattern(r"https://github\.com/acme/plugin/\.github/workflows/release\.yml@refs/tags/v[0-9.]+").unwrap(),
                    issuer: ISSUER.into(),
                }])
            },
            Expect::Rejected("-evil` from issuer"),
        ),
        case(
            "pattern anchoring: an issuer with a trailing path is another issuer",
            |c| {
                let payload = c.payload(&c.digest.clone());
                let trailing = CertSpec::new(IDENTITY, &format!("{ISSUER}/evil"));
                let signed = c.sigstore.sign_message(&payload, &trailing);
                Material::sig(sig_layer(payload, &signed)).identities(vec![Identity {
                    identity: IDENTITY.into(),
                    issuer: Match::pattern(r"https://token\.actions\.githubusercontent\.com")
                        .unwrap(),
                }])
            },
            Expect::Rejected("githubusercontent.com/evil` is not trusted"),
        ),
        case(
            "email identity differing only in case",
            |c| {
                let payload = c.payload(&c.digest.clone());
                let email = CertSpec::new("Release@acme.example", "https://accounts.google.com");
                let signed = c.sigstore.sign_message(&payload, &email);
                Material::sig(sig_layer(payload, &signed)).identities(vec![Identity {
                    identity: "release@acme.example".into(),
                    issuer: "https://accounts.google.com".into(),
                }])
            },
            Expect::Rejected("certificate identity `Release@acme.example`"),
        ),
        case(
            "no identity trusted at all",
            |c| Material::sig(c.signed_layer()).identities(Vec::new()),
            Expect::Rejected("a keyless signature, and no certificate identity is trusted"),
        ),
        // Trust root and certificate.
        case(
            "`.sig`: certificate from a CA the root does not list",
            |c| Material {
                root: Some(c.root_with("certificateAuthorities")),
                ..Material::sig(c.signed_layer())
            },
            Expect::Rejected("certificate chain is invalid: certificate chain validation failed"),
        ),
        case(
            "`.sig`: SCT from a CT log the root does not list",
            |c| Material {
                root: Some(c.root_with("ctlogs")),
                ..Material::sig(c.signed_layer())
            },
            Expect::Rejected(
                "invalid signed certificate timestamp: SCT signature verification failed",
            ),
        ),
        case(
            "`.sig`: signed entirely by another Sigstore instance",
            |c| {
                let payload = c.payload(&c.digest.clone());
                let signed = c.untrusted.sign_message(&payload, &spec());
                Material::sig(sig_layer(payload, &signed))
            },
            Expect::Rejected("invalid inclusion promise: No log key valid at integrated time"),
        ),
        case(
            "`.sig`: verified against the production root",
            |c| Material {
                production_root: true,
                ..Material::sig(c.signed_layer())
            },
            Expect::Rejected("invalid inclusion promise: No log key valid at integrated time"),
        ),
        case(
            "`.sig`: certificate expired at signing time",
            |c| {
                let payload = c.payload(&c.digest.clone());
                let mut expired = spec();
                expired.not_before -= 3600;
                expired.not_after = expired.not_before + 1800;
                let signed = c.sigstore.sign_message(&payload, &expired);
                Material::sig(sig_layer(payload, &signed))
            },
            Expect::Rejected("certificate chain validation failed: CertExpired"),
        ),
        case(
            "`.sig`: certificate of another signature",
            |c| {
                let (mut layer, payload) = c.signed_layer();
                let other = c.sigstore.sign_message(b"something else", &spec());
                layer
                    .annotations
                    .insert(ANNOTATION_CERTIFICATE.into(), other.cert_pem);
                Material::sig((layer, payload))
            },
            Expect::Rejected("invalid signature: signature verification failed"),
        ),
        case(
            "`.sig`: certificate annotation is not PEM",
            |c| {
                let (mut layer, payload) = c.signed_layer();
                layer
                    .annotations
                    .insert(ANNOTATION_CERTIFICATE.into(), "MIIB".into());
                Material::sig((layer, payload))
            },
            Expect::Rejected("`dev.sigstore.cosign/certificate`:"),
        ),
        // Binding to the digest.
        case(
            "GHSA-ccxc-vr6p-4858 class: `.sig` replayed from another artifact",
            |c| {
                let payload = c.payload(&c.other.clone());
                let signed = c.sigstore.sign_message(&payload, &spec());
                Material::sig(sig_layer(payload, &signed))
            },
            Expect::Rejected("not the artifact"),
        ),
        case(
            "`.sig`: payload modified after signing",
            |c| {
                let (layer, payload) = c.signed_layer();
                let mut modified = payload.clone();
                modified.push(b' ');
                let mut layer2 = Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, &modified);
                layer2.annotations = layer.annotations;
                Material::sig((layer2, modified))
            },
            Expect::Rejected("invalid signature: signature verification failed"),
        ),
        case(
            "`.sig`: signature modified",
            |c| {
                let (mut layer, payload) = c.signed_layer();
                let sig = layer.annotations[ANNOTATION_SIGNATURE].clone();
                layer
                    .annotations
                    .insert(ANNOTATION_SIGNATURE.into(), flip_b64(&sig));
                Material::sig((layer, payload))
            },
            Expect::Rejected("invalid signature: signature verification failed"),
        ),
        // The transparency log.
        case(
            "`.sig`: without its transparency-log entry",
            |c| {
                let (mut layer, payload) = c.signed_layer();
                layer.annotations.remove(ANNOTATION_BUNDLE);
                Material::sig((layer, payload))
            },
            Expect::Rejected(
                "a keyless signature without the `dev.sigstore.cosign/bundle` annotation",
            ),
        ),
        case(
            "`.sig`: the SET and entry of another signature",
            |c| {
                let (mut layer, payload) = c.signed_layer();
                let other = c.sigstore.sign_message(b"something else", &spec());
                layer
                    .annotations
                    .insert(ANNOTATION_BUNDLE.into(), other.cosign_bundle_annotation);
                Material::sig((layer, payload))
            },
            Expect::Rejected("artifact mismatch: artifact hash mismatch for hashedrekord entry"),
        ),
        case(
            "`.sig`: the SET's integrated time moved",
            |c| {
                let (mut layer, payload) = c.signed_layer();
                let mut entry: Value =
                    serde_json::from_str(&layer.annotations[ANNOTATION_BUNDLE]).unwrap();
                let t = entry["Payload"]["integratedTime"].as_i64().unwrap();
                entry["Payload"]["integratedTime"] = json!(t - 60);
                layer
                    .annotations
                    .insert(ANNOTATION_BUNDLE.into(), entry.to_string());
                Material::sig((layer, payload))
            },
            Expect::Rejected("invalid inclusion promise: SET verification failed"),
        ),
        case(
            "`.sig`: the SET signature modified",
            |c| {
                let (mut layer, payload) = c.signed_layer();
                let mut entry: Value =
                    serde_json::from_str(&layer.annotations[ANNOTATION_BUNDLE]).unwrap();
                let set = entry["SignedEntryTimestamp"].as_str().unwrap().to_owned();
                entry["SignedEntryTimestamp"] = json!(flip_b64(&set));
                layer
                    .annotations
                    .insert(ANNOTATION_BUNDLE.into(), entry.to_string());
                Material::sig((layer, payload))
            },
            Expect::Rejected("invalid inclusion promise: SET verification failed"),
        ),
        case(
            "bundle: inclusion proof of another entry",
            |c| {
                let signed = c.message_bundle();
                let other = c.sigstore.sign_message(b"something else", &spec());
                Material::referrer(with_bundle(&signed, |b| {
                    b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"] =
                        other.tlog_entry["inclusionProof"].clone();
                }))
            },
            Expect::Rejected(
                "invalid inclusion proof: inclusion proof verification failed: root hash mismatch",
            ),
        ),
        case(
            "bundle: log entry of another signature",
            |c| {
                let signed = c.message_bundle();
                let other = c.sigstore.sign_message(b"something else", &spec());
                Material::referrer(with_bundle(&signed, |b| {
                    b["verificationMaterial"]["tlogEntries"][0] = other.tlog_entry.clone();
                }))
            },
            Expect::Rejected("artifact mismatch: artifact hash mismatch for hashedrekord entry"),
        ),
        case(
            "bundle: checkpoint and proof from an untrusted log",
            |c| {
                let manifest = c.manifest.clone();
                let signed = c.message_bundle();
                let foreign = c.untrusted.sign_message(&manifest, &spec());
                Material::referrer(with_bundle(&signed, |b| {
                    b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"] =
                        foreign.tlog_entry["inclusionProof"].clone();
                }))
            },
            Expect::Rejected(
                "invalid inclusion proof: inclusion proof verification failed: root hash mismatch",
            ),
        ),
        // Bundles bound to the digest.
        case(
            "bundle copied from another artifact",
            |c| {
                let other = c.other_manifest.clone();
                let signed = c.sigstore.sign_message(&other, &spec());
                Material::referrer(referrer(&signed.bundle))
            },
            Expect::Rejected(
                "artifact mismatch: message digest in bundle does not match artifact hash",
            ),
        ),
        case(
            "GHSA-8gw7-4j42-w388 class: attestation whose subject is another digest",
            |c| {
                let other = c.other.clone();
                let signed = c.dsse_bundle(&other, SLSA_V1, slsa_predicate());
                Material::referrer(referrer(&signed.bundle))
            },
            Expect::Rejected(
                "artifact mismatch: artifact hash does not match any subject in attestation",
            ),
        ),
        case(
            "bundle: message signature modified",
            |c| {
                let signed = c.message_bundle();
                Material::referrer(with_bundle(&signed, |b| {
                    let sig = b["messageSignature"]["signature"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    b["messageSignature"]["signature"] = json!(flip_b64(&sig));
                }))
            },
            Expect::Rejected("invalid signature: signature verification failed"),
        ),
        case(
            "bundle: certificate from a CA the root does not list",
            |c| Material {
                root: Some(c.root_with("certificateAuthorities")),
                ..Material::referrer(referrer(&c.message_bundle().bundle))
            },
            Expect::Rejected("certificate chain is invalid: certificate chain validation failed"),
        ),
        case(
            "bundle: signed entirely by another Sigstore instance",
            |c| {
                let manifest = c.manifest.clone();
                let signed = c.untrusted.sign_message(&manifest, &spec());
                Material::referrer(referrer(&signed.bundle))
            },
            Expect::Rejected("invalid inclusion promise: No log key valid at integrated time"),
        ),
        case(
            "bundle: DSSE payload that is not an in-toto statement",
            |c| {
                let signed = c
                    .sigstore
                    .sign_dsse("text/plain", b"not a statement", &spec());
                Material::referrer(referrer(&signed.bundle))
            },
            Expect::Rejected("unsupported DSSE payload type \"text/plain\""),
        ),
        case(
            "bundle: truncated",
            |c| {
                let signed = c.message_bundle();
                let mut bytes = serde_json::to_vec(&signed.bundle).unwrap();
                bytes.truncate(bytes.len() / 2);
                Material::referrer(Referrer {
                    artifact_type: BUNDLE_V03.into(),
                    layers: vec![(BUNDLE_V03.into(), bytes)],
                })
            },
            Expect::Rejected("malformed bundle"),
        ),
        case(
            "bundle: a 2 MiB layer is not read",
            |_| {
                Material::referrer(Referrer {
                    artifact_type: BUNDLE_V03.into(),
                    layers: vec![(BUNDLE_V03.into(), vec![b' '; 2 * 1024 * 1024])],
                })
            },
            Expect::Rejected("exceeds the limit of 1048576 bytes"),
        ),
        case(
            "bundle referrer with two layers",
            |c| {
                let mut r = referrer(&c.message_bundle().bundle);
                r.layers.push((BUNDLE_V03.into(), b"{}".to_vec()));
                Material::referrer(r)
            },
            Expect::Rejected("2 layers, expected one bundle"),
        ),
        case(
            "bundle referrer whose layer is not a bundle",
            |c| {
                let mut r = referrer(&c.message_bundle().bundle);
                r.layers[0].0 = "application/json".into();
                Material::referrer(r)
            },
            Expect::Rejected("layer media type `application/json` is not a Sigstore bundle"),
        ),
        case(
            "101 bundle referrers",
            |c| {
                let signed = c.message_bundle();
                let mut material = Material::default();
                for i in 0..101 {
                    let mut bundle = signed.bundle.clone();
                    bundle["padding"] = json!(i);
                    material.referrers.push(referrer(&bundle));
                }
                material
            },
            Expect::Refused("101 Sigstore bundle referrers; at most 100 are considered"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_tamper_matrix_through_a_registry() {
    let registry = TestRegistry::start();
    let world = World::new();
    let cases = cases();
    let total = cases.len();
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        if let Err(why) = run_case(&world, &registry.host(), index, case).await {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} keyless cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The command line.

fn warrant(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warrant-it"))
        .args(args)
        .env("HOME", home)
        .env("WARRANT_HOME", home)
        .env_remove("WARRANT_CONFIG")
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap()
}

/// Push the hello guest, sign it keylessly (a `.sig` layer and an SLSA provenance bundle
/// referrer), and return its reference and the trusted root's path.
fn signed_hello(registry: &TestRegistry, dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut sigstore = PrivateSigstore::new();
    let root = dir.join("trusted_root.json");
    std::fs::write(&root, sigstore.trusted_root_json()).unwrap();
    let reference = registry.reference("keyless-cli/hello", "v1");
    runtime.block_on(async {
        let client = RegistryClient::new(ClientOptions::default()).unwrap();
        let parsed: Reference = reference.parse().unwrap();
        client
            .push_wasm(hello_module(), None, &parsed, &NoProgress)
            .await
            .unwrap();
        let resolved = client.resolve(&parsed).await.unwrap();
        let payload = cosign::payload(&cosign::docker_reference(&parsed), resolved.digest());
        let signed = sigstore.sign_message(&payload, &spec());
        let provenance = sigstore.sign_dsse(
            PAYLOAD_TYPE_IN_TOTO,
            &statement(resolved.digest(), SLSA_V1, slsa_predicate()),
            &spec(),
        );
        let material = Material {
            sig: vec![sig_layer(payload, &signed)],
            referrers: vec![referrer(&provenance.bundle)],
            ..Material::default()
        };
        publish(&client, &parsed, &resolved.descriptor(), &material)
            .await
            .unwrap();
    });
    (reference, root)
}

#[test]
fn keyless_verify_and_run_through_the_cli() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let (reference, root) = signed_hello(&registry, dir.path());
    let root = root.to_str().unwrap();
    let identity = [
        "--certificate-identity",
        IDENTITY,
        "--certificate-oidc-issuer",
        ISSUER,
    ];

    let mut args = vec!["verify", &reference, "--trusted-root", root];
    args.extend(identity);
    args.extend(["--attestation-type", "slsaprovenance1"]);
    let out = warrant(dir.path(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "verified  keyless signature by `{IDENTITY}` (issuer `{ISSUER}`)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("sourceRepositoryUri `{SOURCE_REPOSITORY}`")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("attested  `{SLSA_V1}` by `{IDENTITY}`")),
        "{stdout}"
    );

    // The same signatures against the public-good production root: nothing verifies.
    let mut args = vec!["verify", &reference];
    args.extend(identity);
    let out = warrant(dir.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(122),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no signature of `sha256:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The root from the config file instead of the flag.
    let config = dir.path().join("warrant.toml");
    std::fs::write(&config, format!("[verify]\ntrusted_root = {root:?}\n")).unwrap();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "verify",
        &reference,
        "--json",
    ];
    args.extend(identity);
    let out = warrant(dir.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["verdict"]["signers"][0]["kind"], "keyless");
    assert_eq!(verdict["verdict"]["signers"][0]["issuer"], ISSUER);

    // Another identity: 122. An unpaired identity flag: usage (2).
    let out = warrant(
        dir.path(),
        &[
            "verify",
            &reference,
            "--trusted-root",
            root,
            "--certificate-identity",
            "https://github.com/acme-evil/plugin",
            "--certificate-oidc-issuer",
            ISSUER,
        ],
    );
    assert_eq!(out.status.code(), Some(122));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not trusted"));
    let out = warrant(
        dir.path(),
        &[
            "verify",
            &reference,
            "--trusted-root",
            root,
            "--certificate-identity",
            IDENTITY,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Identity patterns on the command line: anchored at both ends. The whole identity by
    // pattern with an exact issuer verifies; a pattern naming only a prefix of it does not
    // (cosign's would); an issuer pattern with an exact identity verifies; a pattern without
    // its pair, or one that does not compile, is a usage error.
    let acme =
        r"https://github\.com/acme/plugin/\.github/workflows/release\.yml@refs/tags/v[0-9.]+";
    let github = r"https://token\.actions\.githubusercontent\.com";
    for (flags, code, said) in [
        (
            vec![
                "--certificate-identity-regexp",
                acme,
                "--certificate-oidc-issuer",
                ISSUER,
            ],
            0,
            "verified  keyless signature",
        ),
        (
            vec![
                "--certificate-identity",
                IDENTITY,
                "--certificate-oidc-issuer-regexp",
                github,
            ],
            0,
            "verified  keyless signature",
        ),
        (
            vec![
                "--certificate-identity-regexp",
                "https://github.com/acme/plugin",
                "--certificate-oidc-issuer",
                ISSUER,
            ],
            122,
            "is not trusted",
        ),
        (
            vec![
                "--certificate-identity-regexp",
                acme,
                "--certificate-oidc-issuer-regexp",
                "https://token",
            ],
            122,
            "is not trusted",
        ),
        (
            vec!["--certificate-identity-regexp", acme],
            2,
            "give them in pairs",
        ),
        (
            vec![
                "--certificate-identity-regexp",
                "(unclosed",
                "--certificate-oidc-issuer",
                ISSUER,
            ],
            2,
            "`--certificate-identity-regexp`: pattern `(unclosed` is not a valid regular expression",
        ),
    ] {
        let mut args = vec!["verify", &reference, "--trusted-root", root];
        args.extend(&flags);
        let out = warrant(dir.path(), &args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{flags:?}: {all}");
        assert!(all.contains(said), "{flags:?}: {all}");
    }

    // Run: the keyless signature lets the guest run; against the production root it does not.
    let policies = tests::fixtures::permit_all_policies(dir.path());
    let mut args = vec![
        "run",
        &reference,
        "--trusted-root",
        root,
        "--policies",
        &policies,
    ];
    args.extend(identity);
    let out = warrant(dir.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO_OUTPUT);
    let mut args = vec!["run", &reference, "--policies", &policies];
    args.extend(identity);
    let out = warrant(dir.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(122),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}
