//! Keyed cosign signatures through a real registry and through image layouts: sign, discover,
//! verify; and every way a signature must fail to count, each with its exact reason.

use std::collections::BTreeMap;
use std::process::Command;

use broker::Rejection;
use broker::cosign::{
    self, ANNOTATION_SIGNATURE, MEDIA_TYPE_SIMPLE_SIGNING, limits as cosign_limits,
};
use broker::keys::{PublicKey, SigningKey};
use broker::verify::Trust;
use registry_client::attached::signature_tag;
use registry_client::{ClientOptions, Descriptor, Digest, NoProgress, Reference, RegistryClient};
use tests::fixtures::{hello_module, module_of_size};
use tests::registry::TestRegistry;

/// Run `warrant` with an empty home (no user config or credentials).
fn warrant(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warrant-it"))
        .args(args)
        .env("HOME", home)
        .env_remove("WARRANT_CONFIG")
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap()
}

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default()).unwrap()
}

/// Push a module and return its reference and manifest digest.
async fn publish(client: &RegistryClient, reference: &str, seed: u8) -> (Reference, Digest) {
    let reference: Reference = reference.parse().unwrap();
    let pushed = client
        .push_wasm(module_of_size(2_000, seed), None, &reference, &NoProgress)
        .await
        .unwrap();
    (reference, pushed.manifest.digest)
}

/// Replace the signature manifest of `digest` with one layer of `payload` signed as `signature`.
async fn put_signature(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    layers: Vec<(Vec<u8>, String)>,
) {
    let mut descriptors = Vec::new();
    let mut blobs = Vec::new();
    for (payload, signature) in layers {
        let mut d = Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, &payload);
        d.annotations.insert(ANNOTATION_SIGNATURE.into(), signature);
        blobs.push((Descriptor::of(MEDIA_TYPE_SIMPLE_SIGNING, &payload), payload));
        descriptors.push(d);
    }
    let config = b"{}".to_vec();
    let config_d = Descriptor::of("application/vnd.oci.image.config.v1+json", &config);
    blobs.push((config_d.clone(), config));
    let manifest = registry_client::ImageManifest {
        schema_version: 2,
        media_type: Some(registry_client::manifest::MEDIA_TYPE_OCI_MANIFEST.into()),
        artifact_type: None,
        config: config_d,
        layers: descriptors,
        subject: None,
        annotations: BTreeMap::new(),
    };
    client
        .put_attached(reference, &signature_tag(digest), &manifest, blobs)
        .await
        .unwrap();
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn verdict(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    keys: &[PublicKey],
) -> cosign::Verdict {
    cosign::verify_signatures(client, reference, digest, &Trust::keys(keys).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_then_verify_through_the_registry() {
    let registry = TestRegistry::start();
    let client = client();
    let (reference, digest) = publish(&client, &registry.reference("sig/app", "v1"), 1).await;
    let key = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    cosign::sign(&client, &reference, &digest, &key)
        .await
        .unwrap();
    // Signing again with a second key appends; with the same key, it does not duplicate.
    cosign::sign(&client, &reference, &digest, &other)
        .await
        .unwrap();
    cosign::sign(&client, &reference, &digest, &key)
        .await
        .unwrap();
    let sig = client
        .fetch_attached(&reference, &signature_tag(&digest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sig.manifest.layers.len(), 2);

    let v = verdict(&client, &reference, &digest, &[key.public_key()]).await;
    assert_eq!(v.signers.len(), 1);
    assert_eq!(v.signers[0].identity, key.public_key().fingerprint());
    assert_eq!(v.signers[0].kind, broker::verify::SignerKind::Key);
    // The other key's signature is found and rejected, not silently ignored.
    assert_eq!(v.rejected.len(), 1);
    assert!(
        matches!(v.rejected[0].reason, Rejection::KeyMismatch { .. }),
        "{:?}",
        v.rejected
    );

    let both = verdict(
        &client,
        &reference,
        &digest,
        &[key.public_key(), other.public_key()],
    )
    .await;
    assert_eq!(both.signers.len(), 2);
    assert!(both.rejected.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghsa_vjxv_45g9_9296_no_signature_is_no_signer() {
    let registry = TestRegistry::start();
    let client = client();
    let (reference, digest) = publish(&client, &registry.reference("sig/none", "v1"), 2).await;
    let key = SigningKey::generate().unwrap();
    let v = verdict(&client, &reference, &digest, &[key.public_key()]).await;
    assert!(v.signers.is_empty());
    assert!(v.rejected.is_empty());
    // And with signatures present but none by a trusted key: still empty.
    cosign::sign(
        &client,
        &reference,
        &digest,
        &SigningKey::generate().unwrap(),
    )
    .await
    .unwrap();
    let v = verdict(&client, &reference, &digest, &[key.public_key()]).await;
    assert!(v.signers.is_empty());
    assert_eq!(v.rejected.len(), 1);
    // No trusted key at all: nothing verifies.
    let v = verdict(&client, &reference, &digest, &[]).await;
    assert!(v.signers.is_empty());
    assert_eq!(
        v.rejected[0].reason,
        Rejection::NoTrustedKey { bundle: false }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghsa_ccxc_vr6p_4858_a_signature_replayed_onto_another_digest_is_rejected() {
    let registry = TestRegistry::start();
    let client = client();
    let (a_ref, a) = publish(&client, &registry.reference("sig/replay", "a"), 3).await;
    let (b_ref, b) = publish(&client, &registry.reference("sig/replay", "b"), 4).await;
    let key = SigningKey::generate().unwrap();
    cosign::sign(&client, &a_ref, &a, &key).await.unwrap();
    // Copy A's signature manifest, valid signature and all, to B's signature tag.
    let sig = client
        .fetch_attached(&a_ref, &signature_tag(&a))
        .await
        .unwrap()
        .unwrap();
    let payload = cosign::payload(&cosign::docker_reference(&a_ref), &a);
    let signature = sig.manifest.layers[0].annotations[ANNOTATION_SIGNATURE].clone();
    put_signature(&client, &b_ref, &b, vec![(payload, signature)]).await;

    let v = verdict(&client, &b_ref, &b, &[key.public_key()]).await;
    assert!(v.signers.is_empty(), "{v:?}");
    assert_eq!(v.rejected.len(), 1);
    assert_eq!(
        v.rejected[0].reason,
        Rejection::WrongDigest {
            named: a.to_string(),
            artifact: b.clone()
        },
        "{:?}",
        v.rejected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_signatures_are_rejected_with_their_reason() {
    let registry = TestRegistry::start();
    let client = client();
    let (reference, digest) = publish(&client, &registry.reference("sig/tamper", "v1"), 5).await;
    let key = SigningKey::generate().unwrap();
    let good_payload = cosign::payload("sig/tamper", &digest);
    let good_sig = key.sign(&good_payload).unwrap();

    let mut modified_payload = good_payload.clone();
    let at = modified_payload.len() - 3;
    modified_payload[at] = b' ';
    let mut flipped = good_sig.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let wrong_type = String::from_utf8(good_payload.clone())
        .unwrap()
        .replace(
            "cosign container image signature",
            "atomic container signature",
        )
        .into_bytes();
    let wrong_type_sig = key.sign(&wrong_type).unwrap();

    /// Whether a rejection is the one a case expects.
    type Expected = fn(&Rejection) -> bool;
    let key_mismatch: Expected = |r| matches!(r, Rejection::KeyMismatch { .. });
    let cases: Vec<(&str, Vec<u8>, String, Expected)> = vec![
        (
            "modified payload",
            modified_payload,
            b64(&good_sig),
            key_mismatch,
        ),
        (
            "modified signature",
            good_payload.clone(),
            b64(&flipped),
            key_mismatch,
        ),
        (
            "signature not base64",
            good_payload.clone(),
            "%%%".into(),
            |r| matches!(r, Rejection::Malformed { what, .. } if what == "signature is not base64"),
        ),
        (
            "payload of another type, validly signed",
            wrong_type,
            b64(&wrong_type_sig),
            |r| matches!(r, Rejection::PayloadType { .. }),
        ),
        (
            "truncated signature",
            good_payload.clone(),
            b64(&good_sig[..20]),
            key_mismatch,
        ),
    ];
    for (name, payload, signature, expected) in cases {
        put_signature(&client, &reference, &digest, vec![(payload, signature)]).await;
        let v = verdict(&client, &reference, &digest, &[key.public_key()]).await;
        assert!(v.signers.is_empty(), "{name}: {v:?}");
        assert_eq!(v.rejected.len(), 1, "{name}");
        assert!(expected(&v.rejected[0].reason), "{name}: {:?}", v.rejected);
    }
    // The control: the untampered pair verifies.
    put_signature(
        &client,
        &reference,
        &digest,
        vec![(good_payload, b64(&good_sig))],
    )
    .await;
    assert_eq!(
        verdict(&client, &reference, &digest, &[key.public_key()])
            .await
            .signers
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_signatures_are_refused_outright() {
    let registry = TestRegistry::start();
    let client = client();
    let (reference, digest) = publish(&client, &registry.reference("sig/many", "v1"), 6).await;
    let key = SigningKey::generate().unwrap();
    let layers: Vec<(Vec<u8>, String)> = (0..=cosign_limits::MAX_SIGNATURES)
        .map(|i| {
            let payload = cosign::payload(&format!("sig/many{i}"), &digest);
            let sig = b64(&key.sign(&payload).unwrap());
            (payload, sig)
        })
        .collect();
    assert_eq!(layers.len(), 101);
    put_signature(&client, &reference, &digest, layers).await;
    let err = cosign::verify_signatures(
        &client,
        &reference,
        &digest,
        &Trust::keys(&[key.public_key()]).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("holds 101 signatures"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mib_signature_payload_is_not_read() {
    let registry = TestRegistry::start();
    let client = client();
    let (reference, digest) = publish(&client, &registry.reference("sig/big", "v1"), 7).await;
    let key = SigningKey::generate().unwrap();
    let mut payload = cosign::payload("sig/big", &digest);
    payload.extend(std::iter::repeat_n(b' ', 2 * 1024 * 1024));
    let sig = b64(&key.sign(&payload).unwrap());
    put_signature(&client, &reference, &digest, vec![(payload, sig)]).await;
    let v = verdict(&client, &reference, &digest, &[key.public_key()]).await;
    assert!(v.signers.is_empty());
    assert!(
        matches!(v.rejected[0].reason, Rejection::TooLarge { .. }),
        "{:?}",
        v.rejected
    );
}

#[tokio::test]
async fn sign_and_verify_an_image_layout() {
    let client = client();
    let dir = tempfile::tempdir().unwrap();
    let reference: Reference = format!("oci-layout:{}:v1", dir.path().display())
        .parse()
        .unwrap();
    let pushed = client
        .push_wasm(hello_module(), None, &reference, &NoProgress)
        .await
        .unwrap();
    let key = SigningKey::generate().unwrap();
    cosign::sign(&client, &reference, &pushed.manifest.digest, &key)
        .await
        .unwrap();
    let v = verdict(
        &client,
        &reference,
        &pushed.manifest.digest,
        &[key.public_key()],
    )
    .await;
    assert_eq!(v.signers.len(), 1);
}

#[test]
fn keygen_sign_verify_through_the_cli() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| warrant(home.path(), args);
    let wasm = home.path().join("m.wasm");
    std::fs::write(&wasm, hello_module()).unwrap();
    let reference = registry.reference("sig/cli", "v1");
    assert!(
        run(&["push", wasm.to_str().unwrap(), &reference])
            .status
            .success()
    );

    let prefix = home.path().join("signer");
    let out = run(&["keygen", "--out", prefix.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fingerprint = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(fingerprint.starts_with("sha256:"), "{fingerprint}");
    // The key pair is never overwritten.
    assert_eq!(
        run(&["keygen", "--out", prefix.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );

    let key = format!("{}.key", prefix.display());
    let public = format!("{}.pub", prefix.display());
    // Unsigned: refused with 122.
    let out = run(&["verify", &reference, "--key", &public]);
    assert_eq!(
        out.status.code(),
        Some(122),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(run(&["sign", &reference, "--key", &key]).status.success());
    let out = run(&["verify", &reference, "--key", &public, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["verdict"]["signers"][0]["identity"], fingerprint.as_str());

    // Another key: refused, and the rejection is reported.
    let other = home.path().join("other");
    assert!(
        run(&["keygen", "--out", other.to_str().unwrap()])
            .status
            .success()
    );
    let out = run(&[
        "verify",
        &reference,
        "--key",
        &format!("{}.pub", other.display()),
    ]);
    assert_eq!(out.status.code(), Some(122));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not verify"));
}

/// `[verify] keys` and `certificate_identities` in `warrant.toml` are trust for every command
/// (paths relative to the file, not the working directory); flags add to them, never replace.
#[test]
fn trust_from_the_config_file_and_flags_add_to_it() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| warrant(home.path(), args);
    let wasm = home.path().join("m.wasm");
    std::fs::write(&wasm, hello_module()).unwrap();
    let reference = registry.reference("sig/config-trust", "v1");
    assert!(
        run(&["push", wasm.to_str().unwrap(), &reference])
            .status
            .success()
    );
    let node = home.path().join("node");
    std::fs::create_dir(&node).unwrap();
    for name in ["signer", "other"] {
        let prefix = node.join(name);
        assert!(
            run(&["keygen", "--out", prefix.to_str().unwrap()])
                .status
                .success()
        );
    }
    let key = node.join("signer.key");
    assert!(
        run(&["sign", &reference, "--key", key.to_str().unwrap()])
            .status
            .success()
    );
    let config = |verify: &str| {
        let path = node.join("warrant.toml");
        std::fs::write(&path, format!("[verify]\n{verify}")).unwrap();
        path.to_str().unwrap().to_owned()
    };

    // The signer's key from the file, named relative to it: verified with no flag at all.
    let cfg = config("keys = [\"signer.pub\"]\n");
    let out = run(&["--config", &cfg, "verify", &reference, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);

    // Another key in the file: refused (122), and a flag naming the signer adds to the file's
    // trust rather than replacing it.
    let cfg = config("keys = [\"other.pub\"]\n");
    let out = run(&["--config", &cfg, "verify", &reference]);
    assert_eq!(
        out.status.code(),
        Some(122),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signer_pub = node.join("signer.pub");
    let out = run(&[
        "--config",
        &cfg,
        "verify",
        &reference,
        "--key",
        signer_pub.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A keyless signer alone does not make a keyed signature count.
    let cfg = config(
        "certificate_identities = [{ identity = \"ops@example.com\", issuer = \"https://accounts.google.com\" }]\n",
    );
    let out = run(&["--config", &cfg, "verify", &reference]);
    assert_eq!(
        out.status.code(),
        Some(122),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A bad entry is refused when the file is read, naming it (exit 2).
    for (verify, names) in [
        (
            "certificate_identities = [{ identity_regexp = '(x', issuer = \"i\" }]\n",
            "certificate_identities[0]",
        ),
        (
            "certificate_identities = [{ identity = \"x\" }]\n",
            "exactly one of `issuer` and `issuer_regexp`",
        ),
        ("keys = \"signer.pub\"\n", "keys"),
        ("key = [\"signer.pub\"]\n", "unknown field `key`"),
    ] {
        let cfg = config(verify);
        let out = run(&["--config", &cfg, "verify", &reference]);
        assert_eq!(out.status.code(), Some(2), "{verify}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(names), "{verify}: {err}");
    }
    // A missing key file is named.
    let cfg = config("keys = [\"missing.pub\"]\n");
    let out = run(&["--config", &cfg, "verify", &reference]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pub"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_between_verify_and_run_does_not_change_what_runs() {
    use broker::pipeline::{PipelineError, fetch_verified};
    let registry = TestRegistry::start();
    let client = client();
    let key = SigningKey::generate().unwrap();
    let tag = registry.reference("sig/moving", "stable");
    let signed = module_of_size(3_000, 8);
    let unsigned = module_of_size(3_000, 9);

    // Signed A is resolved; then the tag moves to unsigned B before the fetch.
    let reference: Reference = tag.parse().unwrap();
    let a = client
        .push_wasm(signed.clone(), None, &reference, &NoProgress)
        .await
        .unwrap();
    cosign::sign(&client, &reference, &a.manifest.digest, &key)
        .await
        .unwrap();
    let resolved = client.resolve(&reference).await.unwrap();
    client
        .push_wasm(unsigned.clone(), None, &reference, &NoProgress)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = registry_client::Store::open(dir.path()).unwrap();
    let cache = broker::cache::VerdictCache::open(
        &broker::state::State::open(&dir.path().join("data")).unwrap(),
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let (verdict, _, fetched) = fetch_verified(
        &client,
        &store,
        &resolved,
        &Trust::keys(&[key.public_key()]).unwrap(),
        Some(&cache),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(verdict.digest, a.manifest.digest);
    assert_eq!(std::fs::read(fetched.module_path()).unwrap(), signed);

    // Unsigned B is resolved; then the tag moves to a signed artifact: B is still refused.
    let resolved_b = client.resolve(&reference).await.unwrap();
    client
        .push_wasm(signed.clone(), None, &reference, &NoProgress)
        .await
        .unwrap();
    let err = fetch_verified(
        &client,
        &store,
        &resolved_b,
        &Trust::keys(&[key.public_key()]).unwrap(),
        Some(&cache),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, PipelineError::Unverified(v) if v.digest == *resolved_b.digest()),
        "{err}"
    );
}

/// The cache stands in for verification only for the digest and trust it was written for: the
/// signature is removed after a verified fetch, and only the same digest under the same key
/// still passes, from the cache; with the cache off, or under another key, it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_verdict_stands_in_only_for_its_digest_and_trust() {
    use broker::cache::VerdictCache;
    use broker::pipeline::{PipelineError, fetch_verified};
    let registry = TestRegistry::start();
    let client = client();
    let key = SigningKey::generate().unwrap();
    let (reference, digest) = publish(&client, &registry.reference("sig/cached", "v1"), 21).await;
    cosign::sign(&client, &reference, &digest, &key)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = registry_client::Store::open(dir.path().join("store")).unwrap();
    let cache = VerdictCache::open(
        &broker::state::State::open(&dir.path().join("data")).unwrap(),
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let trust = Trust::keys(&[key.public_key()]).unwrap();
    let resolved = client.resolve(&reference).await.unwrap();
    fetch_verified(
        &client,
        &store,
        &resolved,
        &trust,
        Some(&cache),
        &NoProgress,
    )
    .await
    .unwrap();

    // The signature goes: an empty signature manifest replaces it.
    put_signature(&client, &reference, &digest, Vec::new()).await;
    let (verdict, _, _) = fetch_verified(
        &client,
        &store,
        &resolved,
        &trust,
        Some(&cache),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(verdict.signers[0].identity, key.public_key().fingerprint());
    let err = fetch_verified(&client, &store, &resolved, &trust, None, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::Unverified(_)), "{err}");
    let other = Trust::keys(&[SigningKey::generate().unwrap().public_key()]).unwrap();
    let err = fetch_verified(
        &client,
        &store,
        &resolved,
        &other,
        Some(&cache),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PipelineError::Unverified(_)), "{err}");
}

#[test]
fn run_with_a_key_runs_only_what_that_key_signed() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| warrant(home.path(), args);
    let wasm = home.path().join("hello.wasm");
    std::fs::write(&wasm, hello_module()).unwrap();
    let signed = registry.reference("sig/run", "signed");
    let unsigned = registry.reference("sig/run2", "unsigned");
    assert!(
        run(&["push", wasm.to_str().unwrap(), &signed])
            .status
            .success()
    );
    assert!(
        run(&["push", wasm.to_str().unwrap(), &unsigned])
            .status
            .success()
    );
    let prefix = home.path().join("k");
    assert!(
        run(&["keygen", "--out", prefix.to_str().unwrap()])
            .status
            .success()
    );
    let other = home.path().join("o");
    assert!(
        run(&["keygen", "--out", other.to_str().unwrap()])
            .status
            .success()
    );
    let key = format!("{}.key", prefix.display());
    let public = format!("{}.pub", prefix.display());
    let other_public = format!("{}.pub", other.display());
    assert!(run(&["sign", &signed, "--key", &key]).status.success());

    let policies = tests::fixtures::permit_all_policies(home.path());
    let out = run(&["run", &signed, "--key", &public, "--policies", &policies]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        tests::fixtures::HELLO_OUTPUT
    );

    for (reference, key) in [(&unsigned, &public), (&signed, &other_public)] {
        let out = run(&["run", reference, "--key", key, "--policies", &policies]);
        assert_eq!(
            out.status.code(),
            Some(122),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "the guest must not run");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no signature of `sha256:"));
    }
}

fn slsa_v1_predicate() -> serde_json::Value {
    serde_json::json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {
                "repository": "https://github.com/acme/plugin", "ref": "refs/tags/v1.2.0",
                "path": ".github/workflows/release.yml"}}
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghsa_8gw7_4j42_w388_an_attestation_for_another_subject_is_rejected() {
    use broker::attest::{SLSA_PROVENANCE_V1, attest, verify_attestations};
    let registry = TestRegistry::start();
    let client = client();
    let (a_ref, a) = publish(&client, &registry.reference("att/replay", "a"), 10).await;
    let (b_ref, b) = publish(&client, &registry.reference("att/replay", "b"), 11).await;
    let key = SigningKey::generate().unwrap();
    attest(
        &client,
        &a_ref,
        &a,
        SLSA_PROVENANCE_V1,
        slsa_v1_predicate(),
        &key,
    )
    .await
    .unwrap();
    let found = verify_attestations(
        &client,
        &a_ref,
        &a,
        &Trust::keys(&[key.public_key()]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(found.verified.len(), 1);
    let provenance = found.verified[0].provenance.clone().unwrap();
    assert_eq!(
        provenance.source_repository,
        "https://github.com/acme/plugin"
    );
    assert_eq!(provenance.source_ref, "refs/tags/v1.2.0");
    assert_eq!(
        provenance.builder_id,
        "https://github.com/actions/runner/github-hosted"
    );
    assert_eq!(provenance.signer.identity, key.public_key().fingerprint());

    // Copy A's attestation, validly signed, to B.
    let att = client
        .fetch_attached(&a_ref, &registry_client::attached::attestation_tag(&a))
        .await
        .unwrap()
        .unwrap();
    let layer = att.manifest.layers[0].clone();
    let envelope = client
        .fetch_attached_blob(&a_ref, &layer, 1 << 20)
        .await
        .unwrap();
    client
        .put_attached(
            &b_ref,
            &registry_client::attached::attestation_tag(&b),
            &att.manifest,
            vec![(layer, envelope)],
        )
        .await
        .unwrap();
    let found = verify_attestations(
        &client,
        &b_ref,
        &b,
        &Trust::keys(&[key.public_key()]).unwrap(),
    )
    .await
    .unwrap();
    assert!(found.verified.is_empty());
    assert_eq!(
        found.rejected[0].reason,
        Rejection::SubjectsMissArtifact {
            artifact: b.clone()
        },
        "{:?}",
        found.rejected
    );
}

#[test]
fn attest_and_require_provenance_through_the_cli() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| warrant(home.path(), args);
    let wasm = home.path().join("m.wasm");
    std::fs::write(&wasm, hello_module()).unwrap();
    let reference = registry.reference("att/cli", "v1");
    let other = registry.reference("att/cli", "sbom-only");
    assert!(
        run(&["push", wasm.to_str().unwrap(), &reference])
            .status
            .success()
    );
    std::fs::write(&wasm, module_of_size(500, 12)).unwrap();
    assert!(
        run(&["push", wasm.to_str().unwrap(), &other])
            .status
            .success()
    );
    let prefix = home.path().join("k");
    assert!(
        run(&["keygen", "--out", prefix.to_str().unwrap()])
            .status
            .success()
    );
    let key = format!("{}.key", prefix.display());
    let public = format!("{}.pub", prefix.display());
    let predicate = home.path().join("provenance.json");
    std::fs::write(&predicate, slsa_v1_predicate().to_string()).unwrap();
    for r in [&reference, &other] {
        assert!(run(&["sign", r, "--key", &key]).status.success());
    }
    let out = run(&[
        "attest",
        &reference,
        "--key",
        &key,
        "--predicate",
        predicate.to_str().unwrap(),
        "--type",
        "slsaprovenance1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "attest",
        &other,
        "--key",
        &key,
        "--predicate",
        predicate.to_str().unwrap(),
        "--type",
        "https://spdx.dev/Document",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&[
        "verify",
        &reference,
        "--key",
        &public,
        "--attestation-type",
        "slsaprovenance1",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let provenance = &v["attestations"]["verified"][0]["provenance"];
    assert_eq!(
        provenance["sourceRepository"],
        "https://github.com/acme/plugin"
    );
    assert_eq!(
        provenance["builderId"],
        "https://github.com/actions/runner/github-hosted"
    );

    // Signed, attested, but not with the required type: empty after filtering, refused.
    let out = run(&[
        "verify",
        &other,
        "--key",
        &public,
        "--attestation-type",
        "slsaprovenance1",
    ]);
    assert_eq!(out.status.code(), Some(122));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no verified attestation of `https://slsa.dev/provenance/v1`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unknown type name is a usage error.
    let out = run(&[
        "attest",
        &reference,
        "--key",
        &key,
        "--predicate",
        predicate.to_str().unwrap(),
        "--type",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// A multi-platform image is signed and verified by what its tag names, the index's digest, as
/// `cosign sign TAG` and `cosign verify TAG` do: a signature on the `wasi/wasm` entry's
/// manifest alone does not count for the index (its subject is another digest), and once the
/// index is signed, `verify` accepts it and `run` runs the entry's module.
#[test]
fn a_multi_platform_image_is_signed_and_run_by_its_index_digest() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| warrant(home.path(), args);
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let wasm = home.path().join("hello.wasm");
    std::fs::write(&wasm, hello_module()).unwrap();
    let reference = registry.reference("sig/multi", "v1");
    let out = run(&[
        "push",
        "--image",
        "--index",
        wasm.to_str().unwrap(),
        &reference,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pushed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["format"], "wasi/wasm image index");
    let index = pushed["digest"].as_str().unwrap().to_owned();
    let entry = pushed["manifest"]["digest"].as_str().unwrap().to_owned();
    assert_ne!(index, entry);
    let pinned_entry = format!("{}/sig/multi@{entry}", registry.host());

    let prefix = home.path().join("signer");
    assert!(
        run(&["keygen", "--out", prefix.to_str().unwrap()])
            .status
            .success()
    );
    let key = format!("{}.key", prefix.display());
    let public = format!("{}.pub", prefix.display());
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("run.cedar"),
        "@id(\"signed\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\n\
         when { principal.signer.kind == \"key\" };\n",
    )
    .unwrap();
    let policies = policies.to_str().unwrap();

    // Only the entry's manifest signed: it verifies by its own digest, not by the tag.
    let out = run(&["sign", &pinned_entry, "--key", &key, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let signed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(signed["digest"], entry.as_str());
    let out = run(&["verify", &pinned_entry, "--key", &public]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&["verify", &reference, "--key", &public]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
    let out = run(&["run", "--key", &public, "--policies", policies, &reference]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // The tag signed: the signature names the index's digest.
    let out = run(&["sign", &reference, "--key", &key, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let signed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(signed["digest"], index.as_str());
    let out = run(&["verify", &reference, "--key", &public, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["verdict"]["digest"], index.as_str());
    let out = run(&["run", "--key", &public, "--policies", policies, &reference]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        tests::fixtures::HELLO_OUTPUT
    );
}
