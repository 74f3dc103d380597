//! Hostile-registry tests: for each way a registry can lie, stall or flood, the client refuses
//! with the precise error, names what failed, returns within a bound, and leaves nothing
//! unverified in the store.

use std::time::{Duration, Instant};

use registry_client::limits::{MAX_JSON_DEPTH, MAX_MANIFEST_BYTES};
use registry_client::{
    ClientOptions, Error, Fetched, NoProgress, Reference, RegistryClient, Store,
};
use tests::hostile::{EXTRA_BLOB_BYTES, HostileRegistry, Scenario};
use tests::store_check::{assert_store_clean, index_digests};

/// Attempts per request the client under test makes.
const MAX_ATTEMPTS: u32 = 3;
/// The client's read timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Every refusal must come within this.
const BOUND: Duration = Duration::from_secs(8);
/// A pull that has not returned by now is hung: fail rather than wait for the harness.
const HANG: Duration = Duration::from_secs(25);

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: READ_TIMEOUT,
        operation_deadline: Duration::from_secs(10),
        max_attempts: MAX_ATTEMPTS,
        retry_base_delay: Duration::from_millis(10),
        ..Default::default()
    })
    .expect("client")
}

/// One pull into a fresh store.
struct Outcome {
    result: Result<Fetched, Error>,
    elapsed: Duration,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Outcome {
    fn err(&self) -> &Error {
        match &self.result {
            Ok(f) => panic!("pull succeeded (manifest `{}`) but must fail", f.digest()),
            Err(e) => e,
        }
    }

    fn message(&self) -> String {
        self.err().to_string()
    }
}

async fn pull(reference: &str) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let reference: Reference = reference.parse().expect("reference");
    let client = client();
    let start = Instant::now();
    let result = tokio::time::timeout(HANG, client.pull(&reference, &store, &NoProgress))
        .await
        .unwrap_or_else(|_| panic!("pull of `{reference}` hung for {HANG:?}"));
    Outcome {
        result,
        elapsed: start.elapsed(),
        store,
        _dir: dir,
    }
}

async fn pull_from(scenario: Scenario) -> (HostileRegistry, Outcome) {
    let registry = HostileRegistry::start(scenario).await;
    let outcome = pull(&registry.reference()).await;
    (registry, outcome)
}

/// The refusal came in time and the store holds nothing: no blob (the layer least of all),
/// nothing in quarantine, no `index.json` entry.
fn assert_refused_cleanly(registry: &HostileRegistry, outcome: &Outcome) {
    let err = outcome.err();
    assert!(
        outcome.elapsed < BOUND,
        "{:?}: refusal took {:?} (bound {BOUND:?}): {err}",
        registry.scenario(),
        outcome.elapsed
    );
    let blobs = assert_store_clean(outcome.store.root());
    assert!(
        !blobs.iter().any(|b| b == registry.layer_digest().hex()),
        "{:?}: the layer reached the store: {blobs:?}",
        registry.scenario()
    );
    assert!(
        blobs.is_empty(),
        "{:?}: blobs stored although the pull failed ({err}): {blobs:?}",
        registry.scenario()
    );
    let index = index_digests(outcome.store.root());
    assert!(
        index.is_empty(),
        "{:?}: index.json lists {index:?} although the pull failed ({err})",
        registry.scenario()
    );
}

fn assert_mentions(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            message.contains(needle),
            "error message `{message}` does not name `{needle}`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_registry_pull_stores_manifest_config_and_layer() {
    let (registry, outcome) = pull_from(Scenario::Honest).await;
    let fetched = match &outcome.result {
        Ok(f) => f,
        Err(e) => panic!("honest pull failed: {e}"),
    };
    assert_eq!(fetched.digest(), registry.manifest_digest());
    assert_eq!(&fetched.layer().digest, registry.layer_digest());
    assert_eq!(
        std::fs::read(fetched.module_path()).expect("stored module"),
        registry.module_bytes()
    );
    let mut expected = vec![
        registry.manifest_digest().hex().to_owned(),
        registry.config_digest().hex().to_owned(),
        registry.layer_digest().hex().to_owned(),
    ];
    expected.sort();
    assert_eq!(assert_store_clean(outcome.store.root()), expected);
    assert_eq!(
        index_digests(outcome.store.root()),
        vec![registry.manifest_digest().to_string()]
    );
    // Manifest, layer, config: nothing asked twice.
    assert_eq!(registry.requests(), 3);
    assert!(
        outcome.elapsed < BOUND,
        "honest pull took {:?}",
        outcome.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_blob_bytes_of_the_right_length_are_refused() {
    let (registry, outcome) = pull_from(Scenario::WrongBlobBytes).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::DigestMismatch { expected, actual, .. }
            if expected == registry.layer_digest() && actual != registry.layer_digest()),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &["layer", &registry.layer_digest().to_string()],
    );
    assert_eq!(registry.requests(), 2);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_longer_than_its_descriptor_is_refused_by_content_length() {
    let (registry, outcome) = pull_from(Scenario::BlobLongerThanDescriptor).await;
    let size = registry.layer_size();
    let longer = size + EXTRA_BLOB_BYTES as u64;
    let err = outcome.err();
    assert!(
        matches!(err, Error::SizeMismatch { declared, actual, .. }
            if *declared == size && *actual == longer),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[
            &registry.layer_digest().to_string(),
            &size.to_string(),
            &longer.to_string(),
        ],
    );
    assert_eq!(registry.requests(), 2);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_blob_longer_than_its_descriptor_is_cut_at_the_descriptor_size() {
    let (registry, outcome) = pull_from(Scenario::BlobLongerChunked).await;
    let size = registry.layer_size();
    let err = outcome.err();
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if *limit == size),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[&registry.layer_digest().to_string(), &size.to_string()],
    );
    assert_eq!(registry.requests(), 2);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_blob_is_cut_at_the_descriptor_size() {
    let (registry, outcome) = pull_from(Scenario::EndlessBlob).await;
    let size = registry.layer_size();
    let err = outcome.err();
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if *limit == size),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[&registry.layer_digest().to_string(), &size.to_string()],
    );
    assert_eq!(registry.requests(), 2);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_manifest_is_refused_by_content_length() {
    let (registry, outcome) = pull_from(Scenario::ManifestTooLarge).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if *limit == MAX_MANIFEST_BYTES),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[
            "manifest",
            &registry.reference(),
            &MAX_MANIFEST_BYTES.to_string(),
        ],
    );
    assert_eq!(registry.requests(), 1);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_chunked_manifest_is_cut_at_the_manifest_limit() {
    let (registry, outcome) = pull_from(Scenario::ManifestEndlessChunked).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if *limit == MAX_MANIFEST_BYTES),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[
            "manifest",
            &registry.reference(),
            &MAX_MANIFEST_BYTES.to_string(),
        ],
    );
    assert_eq!(registry.requests(), 1);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_that_never_answers_times_out() {
    let (registry, outcome) = pull_from(Scenario::StallHeaders).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if *after == READ_TIMEOUT),
        "{err:?}"
    );
    assert_mentions(&outcome.message(), &["timed out", &registry.reference()]);
    // The read timeout fired, not something earlier; a timeout is not retried.
    assert!(outcome.elapsed >= READ_TIMEOUT, "{:?}", outcome.elapsed);
    assert_eq!(registry.requests(), 1);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_that_stalls_midway_times_out() {
    let (registry, outcome) = pull_from(Scenario::StallMidBlob).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if *after == READ_TIMEOUT),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &["timed out", &registry.layer_digest().to_string()],
    );
    assert!(outcome.elapsed >= READ_TIMEOUT, "{:?}", outcome.elapsed);
    assert_eq!(registry.requests(), 2);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_reset_midway_is_retried_a_bounded_number_of_times_then_refused() {
    let (registry, outcome) = pull_from(Scenario::ResetMidBlob).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::Network { registry: host, .. } if *host == registry.host()),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[&registry.host(), &registry.layer_digest().to_string()],
    );
    // One manifest GET, then the layer GET once per attempt.
    assert_eq!(registry.layer_requests(), MAX_ATTEMPTS as usize);
    assert_eq!(registry.requests(), 1 + MAX_ATTEMPTS as usize);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_docker_content_digest_header_is_refused() {
    let (registry, outcome) = pull_from(Scenario::LyingDigestHeader).await;
    let lie = HostileRegistry::lying_digest().to_string();
    let err = outcome.err();
    assert!(
        matches!(err, Error::LyingDigestHeader { claimed, actual, .. }
            if *claimed == lie && actual == registry.manifest_digest()),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[
            &registry.host(),
            &lie,
            &registry.manifest_digest().to_string(),
        ],
    );
    assert_eq!(registry.requests(), 1);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_manifest_for_a_digest_is_refused() {
    let registry = HostileRegistry::start(Scenario::WrongManifestForDigest).await;
    let outcome = pull(&registry.digest_reference()).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::DigestMismatch { expected, actual, .. }
            if expected == registry.manifest_digest()
                && *actual == registry.other_manifest_digest()),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[
            "manifest",
            &registry.manifest_digest().to_string(),
            &registry.other_manifest_digest().to_string(),
        ],
    );
    assert_eq!(registry.requests(), 1);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_is_resolved_once_and_the_manifest_never_fetched_again_by_digest() {
    // This registry lies only when asked for the manifest by digest: a client that re-fetched
    // the manifest after resolving the tag would fail here.
    let (registry, outcome) = pull_from(Scenario::WrongManifestForDigest).await;
    let fetched = match &outcome.result {
        Ok(f) => f,
        Err(e) => panic!("tag pull failed: {e}"),
    };
    assert_eq!(fetched.digest(), registry.manifest_digest());
    assert_eq!(registry.requests(), 3);
    let blobs = assert_store_clean(outcome.store.root());
    assert!(blobs.iter().any(|b| b == registry.manifest_digest().hex()));
    assert!(
        !blobs
            .iter()
            .any(|b| b == registry.other_manifest_digest().hex())
    );
    assert_eq!(
        index_digests(outcome.store.root()),
        vec![registry.manifest_digest().to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_redirect_to_another_origin_is_refused() {
    let (registry, outcome) = pull_from(Scenario::RedirectManifestToOtherHost).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::Redirect { from, .. }
            if from.contains(&registry.host()) && from.contains("/manifests/v1")),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &["redirect", &registry.host(), "/manifests/v1"],
    );
    assert_eq!(registry.requests(), 1);
    assert_eq!(
        registry.redirect_target_requests(),
        0,
        "the client followed the redirect to `{}`",
        registry.redirect_target_host()
    );
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_redirect_to_plain_http_on_another_origin_is_refused() {
    let (registry, outcome) = pull_from(Scenario::RedirectBlobToOtherHost).await;
    let layer = registry.layer_digest().to_string();
    let err = outcome.err();
    assert!(
        matches!(err, Error::Redirect { from, .. }
            if from.contains(&registry.host()) && from.contains(&layer)),
        "{err:?}"
    );
    assert_mentions(&outcome.message(), &["redirect", &registry.host(), &layer]);
    assert_eq!(registry.requests(), 2);
    assert_eq!(
        registry.redirect_target_requests(),
        0,
        "the client followed the redirect to `{}`",
        registry.redirect_target_host()
    );
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_storm_is_retried_a_bounded_number_of_times() {
    let (registry, outcome) = pull_from(Scenario::ServerErrorStorm).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::Status { status: 500, registry: host, .. } if *host == registry.host()),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[
            "HTTP 500",
            &registry.reference(),
            &format!("after {MAX_ATTEMPTS} attempts"),
        ],
    );
    // The manifest GET, exactly max_attempts times, and nothing after it.
    assert_eq!(registry.requests(), MAX_ATTEMPTS as usize);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_manifest_is_refused_before_parsing() {
    let (registry, outcome) = pull_from(Scenario::DeepJson).await;
    let err = outcome.err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert_mentions(
        &outcome.message(),
        &["manifest", "nested", &MAX_JSON_DEPTH.to_string()],
    );
    assert_eq!(registry.requests(), 1);
    assert_refused_cleanly(&registry, &outcome);
}

/// An image index whose one entry names no platform: not a Wasm image, refused saying what
/// platforms it lists, and no entry is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_index_without_a_wasm_entry_is_refused_naming_its_platforms() {
    let (registry, outcome) = pull_from(Scenario::IndexInsteadOfManifest).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::UnsupportedMediaType { media_type, .. } if media_type == "no platform"),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &["image index", "wasi/wasm", &registry.reference()],
    );
    assert_eq!(registry.requests(), 1);
    assert_refused_cleanly(&registry, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_cut_before_and_during_the_body_is_retried_a_bounded_number_of_times() {
    let (registry, outcome) = pull_from(Scenario::ResetBlobAlternately).await;
    let err = outcome.err();
    assert!(
        matches!(err, Error::Network { registry: host, .. } if *host == registry.host()),
        "{err:?}"
    );
    assert_mentions(
        &outcome.message(),
        &[&registry.host(), &registry.layer_digest().to_string()],
    );
    // Request retries and download restarts share one budget: a layer alternately cut before
    // and during its body is requested exactly `max_attempts` times in all.
    let layer_requests = registry.layer_requests();
    assert_eq!(
        layer_requests, MAX_ATTEMPTS as usize,
        "{layer_requests} layer requests"
    );
    assert_eq!(registry.requests(), 1 + layer_requests);
    assert_refused_cleanly(&registry, &outcome);
}
