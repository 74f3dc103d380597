//! A deliberately hostile OCI registry, in process, on a loopback port.
//!
//! It serves one Wasm artifact (repository [`REPOSITORY`], tag [`TAG`]) the way a real
//! registry would — `GET /v2/`, `GET|HEAD` of manifests by tag or digest and of blobs by
//! digest, with `Content-Type`, `Content-Length` and `Docker-Content-Digest` — except for the
//! one misbehaviour named by the [`Scenario`] it was started with.
//!
//! The server is a raw HTTP/1.1 loop on a [`TcpListener`]: read the request head (at most
//! 16 KiB), answer, close the connection. Every request head it reads is counted
//! ([`HostileRegistry::requests`]). A second, honest listener on another port is the target
//! of the redirect scenarios; it counts its requests separately
//! ([`HostileRegistry::redirect_target_requests`]), so a test can prove the client never went
//! there. Dropping the [`HostileRegistry`] aborts both accept loops and, with them, every
//! connection still open (stalled ones included).
//!
//! [`Scenario::BearerAuth`] is not a misbehaviour but a registry that demands credentials the
//! way Docker Hub or GHCR do: a bearer challenge on every `/v2/` request, and a token service
//! on the same port ([`TOKEN_PATH`]) that hands out [`BEARER_TOKEN`] for HTTP basic
//! [`AUTH_USERNAME`] / [`AUTH_PASSWORD`] only. What the token service received is recorded
//! ([`HostileRegistry::token_requests`]).
//!
//! [`Scenario::TrickleSignatures`] and [`Scenario::RequestFlood`] add what a verifier looks up
//! beside the artifact: cosign's `sha256-<hex>.sig` (and `.att`) manifests and, for the flood,
//! an OCI 1.1 referrers list. The signatures never verify; what they cost is the point.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use registry_client::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The repository the hostile registry serves.
pub const REPOSITORY: &str = "hostile/app";

/// The one tag it serves.
pub const TAG: &str = "v1";

/// Size of the served Wasm module, in bytes (large enough that "half the layer" is many
/// TCP segments).
pub const MODULE_BYTES: usize = 64 * 1024;

/// Size of the manifest served in [`Scenario::ManifestTooLarge`]: 5 MiB, over the client's
/// 4 MiB manifest limit.
pub const OVERSIZED_MANIFEST_BYTES: usize = 5 * 1024 * 1024;

/// Extra bytes appended to the layer in the "longer than its descriptor" scenarios.
pub const EXTRA_BLOB_BYTES: usize = 4096;

/// Nesting depth of the [`Scenario::DeepJson`] manifest.
pub const DEEP_JSON_DEPTH: usize = 100_000;

/// Largest request head read before the connection is dropped.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Size of each chunk of an endless chunked body.
const ENDLESS_CHUNK_BYTES: usize = 64 * 1024;

/// How long [`Scenario::ResetMidBlob`] waits after sending half the layer before the reset,
/// so the client has read the headers and the first half (and the failure is a cut body,
/// not a failed request).
const PAUSE_BEFORE_RESET: Duration = Duration::from_millis(100);

/// The user [`Scenario::BearerAuth`]'s token service accepts.
pub const AUTH_USERNAME: &str = "alice";

/// [`AUTH_USERNAME`]'s password.
pub const AUTH_PASSWORD: &str = "s3cret";

/// The bearer token [`Scenario::BearerAuth`]'s token service issues, and the only
/// `Authorization: Bearer` its `/v2/` endpoints accept.
pub const BEARER_TOKEN: &str = "hostile-bearer-token-4b1d";

/// The `service` of [`Scenario::BearerAuth`]'s challenge.
pub const AUTH_SERVICE: &str = "hostile";

/// The path of [`Scenario::BearerAuth`]'s token service (the challenge's realm is
/// `http://127.0.0.1:PORT/token`).
pub const TOKEN_PATH: &str = "/token";

/// Signatures [`Scenario::TrickleSignatures`] lists.
pub const TRICKLED_SIGNATURES: usize = 8;

/// Bytes of each signature payload [`Scenario::TrickleSignatures`] trickles.
pub const TRICKLED_PAYLOAD_BYTES: usize = 4;

/// The silence before each byte of a trickled payload: a payload takes 2.8 s, just under an
/// operation deadline of 3 s, and no silence reaches a read timeout of 1 s.
pub const TRICKLE_INTERVAL: Duration = Duration::from_millis(700);

/// Signatures, attestations and Sigstore bundle referrers [`Scenario::RequestFlood`] lists,
/// each: the most a verifier considers of each.
pub const FLOOD_ENTRIES: usize = 100;

const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_TYPE_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const MEDIA_TYPE_DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const MEDIA_TYPE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_TYPE_BLOB: &str = "application/octet-stream";

/// The one way the registry misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Everything correct: the control, which must pull successfully.
    Honest,
    /// The layer blob is different bytes of exactly the right length (the last byte flipped;
    /// the Wasm preamble is intact, so only the digest can catch it).
    WrongBlobBytes,
    /// The layer blob is the right bytes plus [`EXTRA_BLOB_BYTES`] more, with an honest
    /// (larger) `Content-Length`.
    BlobLongerThanDescriptor,
    /// As [`Scenario::BlobLongerThanDescriptor`], sent `Transfer-Encoding: chunked` with no
    /// `Content-Length`.
    BlobLongerChunked,
    /// The manifest is [`OVERSIZED_MANIFEST_BYTES`] (a valid manifest padded with spaces),
    /// with `Content-Length`.
    ManifestTooLarge,
    /// The manifest is a chunked body that never ends.
    ManifestEndlessChunked,
    /// The layer blob is a chunked body that never ends (the right bytes, then zeros).
    EndlessBlob,
    /// Every connection is accepted and its request read, and then nothing is ever sent.
    StallHeaders,
    /// The layer's headers and half its bytes are sent, then silence without closing.
    StallMidBlob,
    /// The layer's headers and half its bytes are sent, then the connection is reset (RST).
    ResetMidBlob,
    /// Layer requests alternate: the first is reset (RST) before any response, the next gets
    /// headers and half the layer and is then reset, and so on.
    ResetBlobAlternately,
    /// The manifest bytes are right but `Docker-Content-Digest` names another digest.
    LyingDigestHeader,
    /// A GET of the manifest by its digest returns a different valid manifest (with a
    /// `Docker-Content-Digest` that repeats the digest asked for). By tag, it is honest.
    WrongManifestForDigest,
    /// Manifest requests are answered `307` to the same path on another loopback port over
    /// plain HTTP (which would serve the honest bytes).
    RedirectManifestToOtherHost,
    /// Layer requests are answered `307` to the same path on another loopback port over
    /// plain HTTP (which would serve the honest bytes).
    RedirectBlobToOtherHost,
    /// Every request under `/v2/hostile/` is answered `500`.
    ServerErrorStorm,
    /// The manifest is [`DEEP_JSON_DEPTH`] nested `[` followed by as many `]`.
    DeepJson,
    /// The manifest is an OCI image index (served as `application/vnd.oci.image.index.v1+json`)
    /// listing the real manifest.
    IndexInsteadOfManifest,
    /// Honest, but it demands credentials. Every `/v2/` request without
    /// `Authorization: Bearer` [`BEARER_TOKEN`] is answered `401` with
    /// `WWW-Authenticate: Bearer realm="http://127.0.0.1:PORT/token",service="hostile",
    /// scope="repository:hostile/app:pull"`. `GET /token?scope=…&service=…` answers
    /// `{"token":"<BEARER_TOKEN>"}` when it carries HTTP basic [`AUTH_USERNAME`] /
    /// [`AUTH_PASSWORD`], and `401` otherwise; each such request is recorded as a
    /// [`TokenRequest`].
    BearerAuth,
    /// Honest, and the artifact has [`TRICKLED_SIGNATURES`] cosign signatures (`.sig`) whose
    /// payload blobs each arrive one byte per [`TRICKLE_INTERVAL`]
    /// ([`TRICKLED_PAYLOAD_BYTES`] bytes). The signatures do not verify.
    TrickleSignatures,
    /// Honest, and the artifact has [`FLOOD_ENTRIES`] signatures (`.sig`), as many
    /// attestations (`.att`) and as many Sigstore bundle referrers (referrers API); every
    /// request for one of their blobs or referrer manifests is answered `503` with
    /// `Retry-After: 0`, so a client retries each at once.
    RequestFlood,
}

/// The HTTP basic credentials a token request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasicAuth {
    /// No `Authorization: Basic` header.
    Missing,
    /// A basic header, but not [`AUTH_USERNAME`] / [`AUTH_PASSWORD`] (or not decodable).
    Wrong,
    /// Exactly [`AUTH_USERNAME`] / [`AUTH_PASSWORD`].
    Right,
}

/// One request to [`Scenario::BearerAuth`]'s token service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `scope` query parameter, percent-decoded (the last one, if repeated).
    pub scope: Option<String>,
    /// The `service` query parameter, percent-decoded.
    pub service: Option<String>,
    /// The basic credentials it carried.
    pub basic: BasicAuth,
}

/// Everything the registry serves, prepared once.
struct Artifact {
    module: Vec<u8>,
    manifest: Vec<u8>,
    manifest_digest: Digest,
    config: Vec<u8>,
    config_digest: Digest,
    layer_digest: Digest,
    /// Another valid Wasm manifest, for [`Scenario::WrongManifestForDigest`].
    other_manifest: Vec<u8>,
    /// [`Scenario::TrickleSignatures`]: the `.sig` manifest and its payloads by digest.
    trickled_sig: Vec<u8>,
    trickled_payloads: Vec<(Digest, Vec<u8>)>,
    /// [`Scenario::RequestFlood`]: the `.sig` and `.att` manifests and the referrers list.
    flood_sig: Vec<u8>,
    flood_att: Vec<u8>,
    flood_referrers: Vec<u8>,
}

impl Artifact {
    fn new() -> Self {
        let module = crate::fixtures::module_of_size(MODULE_BYTES, 1);
        let artifact =
            registry_client::wasm_artifact(&module, None, u64::MAX).expect("wasm artifact");
        let other_module = crate::fixtures::module_of_size(MODULE_BYTES, 2);
        let other = registry_client::wasm_artifact(&other_module, None, u64::MAX)
            .expect("other wasm artifact");
        let trickled_payloads: Vec<(Digest, Vec<u8>)> = (0..TRICKLED_SIGNATURES)
            .map(|i| {
                let mut payload = format!("p{i}").into_bytes();
                payload.resize(TRICKLED_PAYLOAD_BYTES, b'.');
                (Digest::of(&payload), payload)
            })
            .collect();
        let trickled_layers: Vec<serde_json::Value> = trickled_payloads
            .iter()
            .map(|(digest, payload)| {
                attached_layer(MEDIA_TYPE_SIMPLE_SIGNING, digest, payload.len())
            })
            .collect();
        let flood_layers = |media_type: &str, kind: &str| -> Vec<serde_json::Value> {
            (0..FLOOD_ENTRIES)
                .map(|i| {
                    let bytes = format!("{kind} {i}");
                    attached_layer(media_type, &Digest::of(bytes.as_bytes()), bytes.len())
                })
                .collect()
        };
        let referrers: Vec<serde_json::Value> = (0..FLOOD_ENTRIES)
            .map(|i| {
                let bytes = format!("referrer {i}");
                serde_json::json!({
                    "mediaType": MEDIA_TYPE_MANIFEST,
                    "artifactType": MEDIA_TYPE_BUNDLE,
                    "digest": Digest::of(bytes.as_bytes()).to_string(),
                    "size": bytes.len(),
                })
            })
            .collect();
        let flood_referrers = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": referrers,
        }))
        .expect("referrers JSON");
        Self {
            manifest_digest: Digest::of(&artifact.manifest_bytes),
            config_digest: Digest::of(&artifact.config_bytes),
            layer_digest: artifact.layer.digest.clone(),
            manifest: artifact.manifest_bytes,
            config: artifact.config_bytes,
            other_manifest: other.manifest_bytes,
            module,
            trickled_sig: attached_manifest(trickled_layers),
            trickled_payloads,
            flood_sig: attached_manifest(flood_layers(MEDIA_TYPE_SIMPLE_SIGNING, "signature")),
            flood_att: attached_manifest(flood_layers(MEDIA_TYPE_DSSE, "attestation")),
            flood_referrers,
        }
    }
}

/// A layer of a cosign `.sig` or `.att` manifest; a signature layer carries a (bogus)
/// signature annotation, so that a verifier fetches its payload.
fn attached_layer(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": digest.to_string(),
        "size": size,
        "annotations": {"dev.cosignproject.cosign/signature": "AAAA"},
    })
}

/// A cosign-style manifest of `layers`.
fn attached_manifest(layers: Vec<serde_json::Value>) -> Vec<u8> {
    let config = b"{}";
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::of(config).to_string(),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .expect("attached manifest JSON")
}

/// What one listener needs.
struct Shared {
    scenario: Scenario,
    artifact: Arc<Artifact>,
    requests: AtomicUsize,
    /// Layer GETs and HEADs among them.
    layer_requests: AtomicUsize,
    /// Where the redirect scenarios send the client.
    redirect_target: SocketAddr,
    /// This listener's own address (the realm of [`Scenario::BearerAuth`]'s challenge).
    addr: SocketAddr,
    /// [`Scenario::BearerAuth`]: requests to the token service, in order.
    token_requests: Mutex<Vec<TokenRequest>>,
    /// [`Scenario::BearerAuth`]: `/v2/` requests answered `401` with a challenge.
    challenged: AtomicUsize,
    /// [`Scenario::BearerAuth`]: `/v2/` requests that carried the right bearer token.
    authorized: AtomicUsize,
}

impl Shared {
    fn new(
        scenario: Scenario,
        artifact: Arc<Artifact>,
        addr: SocketAddr,
        target: SocketAddr,
    ) -> Self {
        Self {
            scenario,
            artifact,
            requests: AtomicUsize::new(0),
            layer_requests: AtomicUsize::new(0),
            redirect_target: target,
            addr,
            token_requests: Mutex::new(Vec::new()),
            challenged: AtomicUsize::new(0),
            authorized: AtomicUsize::new(0),
        }
    }
}

/// A running hostile registry. Dropping it stops it.
pub struct HostileRegistry {
    addr: SocketAddr,
    main: Arc<Shared>,
    target: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl HostileRegistry {
    /// Start a registry misbehaving as `scenario` (and its honest redirect target) on two
    /// free loopback ports.
    pub async fn start(scenario: Scenario) -> Self {
        let artifact = Arc::new(Artifact::new());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hostile registry");
        let target_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind redirect target");
        let addr = listener.local_addr().expect("local addr");
        let target_addr = target_listener.local_addr().expect("local addr");
        let main = Arc::new(Shared::new(scenario, artifact.clone(), addr, target_addr));
        let target = Arc::new(Shared::new(
            Scenario::Honest,
            artifact,
            target_addr,
            target_addr,
        ));
        let tasks = vec![
            tokio::spawn(accept_loop(listener, main.clone())),
            tokio::spawn(accept_loop(target_listener, target.clone())),
        ];
        Self {
            addr,
            main,
            target,
            tasks,
        }
    }

    /// The scenario it was started with.
    pub fn scenario(&self) -> Scenario {
        self.main.scenario
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:PORT` of the honest server the redirect scenarios point at.
    pub fn redirect_target_host(&self) -> String {
        self.main.redirect_target.to_string()
    }

    /// `127.0.0.1:PORT/hostile/app:v1`.
    pub fn reference(&self) -> String {
        format!("{}/{REPOSITORY}:{TAG}", self.host())
    }

    /// `127.0.0.1:PORT/hostile/app@<manifest digest>`.
    pub fn digest_reference(&self) -> String {
        format!("{}/{REPOSITORY}@{}", self.host(), self.manifest_digest())
    }

    /// Request heads read so far by the hostile server (the redirect target not included).
    pub fn requests(&self) -> usize {
        self.main.requests.load(Ordering::SeqCst)
    }

    /// Requests for the layer blob among [`Self::requests`].
    pub fn layer_requests(&self) -> usize {
        self.main.layer_requests.load(Ordering::SeqCst)
    }

    /// [`Scenario::BearerAuth`]: what the token service received, in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.main
            .token_requests
            .lock()
            .expect("token requests lock")
            .clone()
    }

    /// [`Scenario::BearerAuth`]: `/v2/` requests answered `401` with a bearer challenge.
    pub fn challenged_requests(&self) -> usize {
        self.main.challenged.load(Ordering::SeqCst)
    }

    /// [`Scenario::BearerAuth`]: `/v2/` requests that carried [`BEARER_TOKEN`] (and were
    /// served honestly).
    pub fn authorized_requests(&self) -> usize {
        self.main.authorized.load(Ordering::SeqCst)
    }

    /// Request heads read so far by the redirect target.
    pub fn redirect_target_requests(&self) -> usize {
        self.target.requests.load(Ordering::SeqCst)
    }

    /// The Wasm module the honest artifact carries.
    pub fn module_bytes(&self) -> &[u8] {
        &self.main.artifact.module
    }

    /// The honest manifest's exact bytes.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.main.artifact.manifest
    }

    /// The honest manifest's digest.
    pub fn manifest_digest(&self) -> &Digest {
        &self.main.artifact.manifest_digest
    }

    /// The config blob's digest.
    pub fn config_digest(&self) -> &Digest {
        &self.main.artifact.config_digest
    }

    /// The Wasm layer's digest.
    pub fn layer_digest(&self) -> &Digest {
        &self.main.artifact.layer_digest
    }

    /// The Wasm layer's size.
    pub fn layer_size(&self) -> u64 {
        self.main.artifact.module.len() as u64
    }

    /// The digest of the other manifest [`Scenario::WrongManifestForDigest`] serves.
    pub fn other_manifest_digest(&self) -> Digest {
        Digest::of(&self.main.artifact.other_manifest)
    }

    /// The digest [`Scenario::LyingDigestHeader`] claims for the manifest.
    pub fn lying_digest() -> Digest {
        Digest::of(b"not the manifest you are looking for")
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Accept connections until aborted. The connection tasks live in a `JoinSet` owned by this
/// future, so aborting it aborts them too (stalled connections included).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve_connection(stream, shared.clone()));
            }
            // Out of file descriptors or similar: do not spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let Some((method, path)) = parse_request_line(&head) else {
        let _ = write_fixed(&mut stream, false, 400, &[], b"bad request").await;
        return;
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    // Write errors only mean the client hung up, which several scenarios provoke.
    if shared.scenario == Scenario::BearerAuth {
        let _ = respond_bearer_auth(stream, &shared, &head, &method, &path).await;
    } else {
        let _ = respond(stream, &shared, &method, &path).await;
    }
}

/// [`Scenario::BearerAuth`]: the token service, the challenge, or (with the right token) the
/// honest registry.
async fn respond_bearer_auth(
    mut stream: TcpStream,
    shared: &Shared,
    head: &[u8],
    method: &str,
    path: &str,
) -> std::io::Result<()> {
    let authorization = header_value(head, "authorization");
    if path == TOKEN_PATH {
        let query = request_target(head)
            .and_then(|t| t.split_once('?'))
            .map(|(_, q)| q)
            .unwrap_or_default();
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(k, _)| percent_decode(k) == name)
                .map(|(_, v)| percent_decode(v))
                .next_back()
        };
        let basic = classify_basic(authorization.as_deref());
        shared
            .token_requests
            .lock()
            .expect("token requests lock")
            .push(TokenRequest {
                scope: param("scope"),
                service: param("service"),
                basic,
            });
        if method != "GET" {
            return write_error(&mut stream, false, 405, "UNSUPPORTED", "method").await;
        }
        if basic != BasicAuth::Right {
            return write_fixed(
                &mut stream,
                false,
                401,
                &[
                    ("Content-Type", "application/json".into()),
                    ("WWW-Authenticate", "Basic realm=\"hostile\"".into()),
                ],
                br#"{"details":"hostile token service: wrong or missing credentials"}"#,
            )
            .await;
        }
        let body =
            serde_json::to_vec(&serde_json::json!({ "token": BEARER_TOKEN })).expect("token JSON");
        return write_fixed(
            &mut stream,
            false,
            200,
            &[("Content-Type", "application/json".into())],
            &body,
        )
        .await;
    }
    let expected = format!("Bearer {BEARER_TOKEN}");
    if path.starts_with("/v2") && authorization.as_deref() != Some(expected.as_str()) {
        shared.challenged.fetch_add(1, Ordering::SeqCst);
        let challenge = format!(
            "Bearer realm=\"http://{addr}{TOKEN_PATH}\",service=\"{AUTH_SERVICE}\",scope=\"repository:{REPOSITORY}:pull\"",
            addr = shared.addr
        );
        let body = serde_json::to_vec(&serde_json::json!({
            "errors": [{"code": "UNAUTHORIZED", "message": "hostile registry: authentication required"}],
        }))
        .expect("error JSON");
        return write_fixed(
            &mut stream,
            method == "HEAD",
            401,
            &[
                ("Content-Type", "application/json".into()),
                ("WWW-Authenticate", challenge),
            ],
            &body,
        )
        .await;
    }
    if path.starts_with("/v2") {
        shared.authorized.fetch_add(1, Ordering::SeqCst);
    }
    respond(stream, shared, method, path).await
}

/// Whether `authorization` is HTTP basic [`AUTH_USERNAME`] / [`AUTH_PASSWORD`].
fn classify_basic(authorization: Option<&str>) -> BasicAuth {
    let Some(value) = authorization else {
        return BasicAuth::Missing;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return BasicAuth::Wrong;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return BasicAuth::Missing;
    }
    let right = format!("{AUTH_USERNAME}:{AUTH_PASSWORD}");
    match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
        Ok(decoded) if decoded == right.as_bytes() => BasicAuth::Right,
        _ => BasicAuth::Wrong,
    }
}

/// The request target (path and query) from the request line.
fn request_target(head: &[u8]) -> Option<&str> {
    std::str::from_utf8(head)
        .ok()?
        .lines()
        .next()?
        .split(' ')
        .nth(1)
}

/// The value of the first header called `name` (case-insensitive), trimmed.
fn header_value(head: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; a malformed
/// escape is kept as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (b, escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Read up to the end of the request head; `None` on EOF, error or a head over 16 KiB.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Some(head);
        }
        if head.len() > MAX_REQUEST_HEAD {
            return None;
        }
    }
}

/// `(method, path)` from the request line, the query string dropped.
fn parse_request_line(head: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target).to_owned();
    Some((method, path))
}

enum Route {
    Ping,
    Manifest(String),
    Blob(String),
    Referrers,
    Unknown,
}

fn route(path: &str) -> Route {
    let repo = format!("/v2/{REPOSITORY}/");
    if path == "/v2/" || path == "/v2" {
        Route::Ping
    } else if let Some(rest) = path.strip_prefix(&repo) {
        if let Some(reference) = rest.strip_prefix("manifests/") {
            Route::Manifest(reference.to_owned())
        } else if let Some(digest) = rest.strip_prefix("blobs/") {
            Route::Blob(digest.to_owned())
        } else if rest.starts_with("referrers/") {
            Route::Referrers
        } else {
            Route::Unknown
        }
    } else {
        Route::Unknown
    }
}

async fn respond(
    mut stream: TcpStream,
    shared: &Shared,
    method: &str,
    path: &str,
) -> std::io::Result<()> {
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return write_error(&mut stream, false, 405, "UNSUPPORTED", "method").await,
    };
    let a = &shared.artifact;
    let scenario = shared.scenario;
    if scenario == Scenario::StallHeaders {
        return stall(stream).await;
    }
    match route(path) {
        Route::Ping => {
            write_fixed(
                &mut stream,
                head_only,
                200,
                &[("Content-Type", "application/json".into())],
                b"{}",
            )
            .await
        }
        Route::Unknown => write_error(&mut stream, head_only, 404, "NAME_UNKNOWN", path).await,
        Route::Referrers if scenario == Scenario::RequestFlood => {
            write_document(
                &mut stream,
                head_only,
                MEDIA_TYPE_INDEX,
                &a.flood_referrers,
                None,
            )
            .await
        }
        Route::Referrers => write_error(&mut stream, head_only, 404, "NAME_UNKNOWN", path).await,
        Route::Manifest(_) | Route::Blob(_) if scenario == Scenario::ServerErrorStorm => {
            write_error(&mut stream, head_only, 500, "UNKNOWN", "storm").await
        }
        Route::Manifest(reference) if attached(scenario, a, &reference).is_some() => {
            let body = attached(scenario, a, &reference).unwrap_or_default();
            write_document(&mut stream, head_only, MEDIA_TYPE_MANIFEST, body, None).await
        }
        Route::Manifest(reference)
            if scenario == Scenario::RequestFlood
                && reference != TAG
                && reference != a.manifest_digest.to_string() =>
        {
            // A referrer's manifest: a failure to retry at once.
            retry_at_once(&mut stream, head_only).await
        }
        Route::Manifest(reference) => {
            let by_digest = reference == a.manifest_digest.to_string();
            if reference != TAG && !by_digest {
                return write_error(&mut stream, head_only, 404, "MANIFEST_UNKNOWN", &reference)
                    .await;
            }
            match scenario {
                Scenario::ManifestTooLarge => {
                    let mut body = a.manifest.clone();
                    body.resize(OVERSIZED_MANIFEST_BYTES, b' ');
                    write_document(&mut stream, head_only, MEDIA_TYPE_MANIFEST, &body, None).await
                }
                Scenario::ManifestEndlessChunked => {
                    write_chunked_head(&mut stream, MEDIA_TYPE_MANIFEST).await?;
                    if head_only {
                        return Ok(());
                    }
                    write_chunk(&mut stream, &a.manifest).await?;
                    let spaces = vec![b' '; ENDLESS_CHUNK_BYTES];
                    loop {
                        write_chunk(&mut stream, &spaces).await?;
                    }
                }
                Scenario::LyingDigestHeader => {
                    let lie = HostileRegistry::lying_digest();
                    write_document(
                        &mut stream,
                        head_only,
                        MEDIA_TYPE_MANIFEST,
                        &a.manifest,
                        Some(&lie),
                    )
                    .await
                }
                Scenario::WrongManifestForDigest if by_digest => {
                    // The header repeats the digest asked for: a consistent liar.
                    write_document(
                        &mut stream,
                        head_only,
                        MEDIA_TYPE_MANIFEST,
                        &a.other_manifest,
                        Some(&a.manifest_digest),
                    )
                    .await
                }
                Scenario::RedirectManifestToOtherHost => {
                    write_redirect(&mut stream, shared.redirect_target, path).await
                }
                Scenario::DeepJson => {
                    let mut body = vec![b'['; DEEP_JSON_DEPTH];
                    body.resize(2 * DEEP_JSON_DEPTH, b']');
                    write_document(&mut stream, head_only, MEDIA_TYPE_MANIFEST, &body, None).await
                }
                Scenario::IndexInsteadOfManifest => {
                    let body = serde_json::to_vec(&serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": MEDIA_TYPE_INDEX,
                        "manifests": [{
                            "mediaType": MEDIA_TYPE_MANIFEST,
                            "digest": a.manifest_digest.to_string(),
                            "size": a.manifest.len(),
                        }],
                    }))
                    .expect("index JSON");
                    write_document(&mut stream, head_only, MEDIA_TYPE_INDEX, &body, None).await
                }
                _ => {
                    write_document(
                        &mut stream,
                        head_only,
                        MEDIA_TYPE_MANIFEST,
                        &a.manifest,
                        None,
                    )
                    .await
                }
            }
        }
        Route::Blob(digest) if digest == a.config_digest.to_string() => {
            write_document(
                &mut stream,
                head_only,
                "application/vnd.wasm.config.v0+json",
                &a.config,
                None,
            )
            .await
        }
        Route::Blob(digest) if digest == a.layer_digest.to_string() => {
            serve_layer(stream, shared, head_only, path).await
        }
        Route::Blob(_) if scenario == Scenario::RequestFlood => {
            // Every other blob (a signature's or an attestation's): a failure to retry at once.
            retry_at_once(&mut stream, head_only).await
        }
        Route::Blob(digest) if scenario == Scenario::TrickleSignatures => {
            match a
                .trickled_payloads
                .iter()
                .find(|(d, _)| d.to_string() == digest)
            {
                Some((d, payload)) => trickle(&mut stream, head_only, payload, d).await,
                None => write_error(&mut stream, head_only, 404, "BLOB_UNKNOWN", &digest).await,
            }
        }
        Route::Blob(digest) => {
            write_error(&mut stream, head_only, 404, "BLOB_UNKNOWN", &digest).await
        }
    }
}

/// The `.sig` or `.att` manifest `scenario` serves at the tag `reference`, if any.
fn attached<'a>(scenario: Scenario, a: &'a Artifact, reference: &str) -> Option<&'a [u8]> {
    let signatures = format!("sha256-{}.sig", a.manifest_digest.hex());
    let attestations = format!("sha256-{}.att", a.manifest_digest.hex());
    match scenario {
        Scenario::TrickleSignatures if reference == signatures => Some(&a.trickled_sig),
        Scenario::RequestFlood if reference == signatures => Some(&a.flood_sig),
        Scenario::RequestFlood if reference == attestations => Some(&a.flood_att),
        _ => None,
    }
}

/// `503 Service Unavailable` with `Retry-After: 0`.
async fn retry_at_once(stream: &mut TcpStream, head_only: bool) -> std::io::Result<()> {
    write_fixed(stream, head_only, 503, &[("Retry-After", "0".into())], b"").await
}

/// `body` with honest headers, one byte per [`TRICKLE_INTERVAL`].
async fn trickle(
    stream: &mut TcpStream,
    head_only: bool,
    body: &[u8],
    digest: &Digest,
) -> std::io::Result<()> {
    write_head(
        stream,
        200,
        &document_headers(MEDIA_TYPE_BLOB, body.len(), digest),
    )
    .await?;
    stream.flush().await?;
    if head_only {
        return Ok(());
    }
    for byte in body {
        tokio::time::sleep(TRICKLE_INTERVAL).await;
        stream.write_all(&[*byte]).await?;
        stream.flush().await?;
    }
    Ok(())
}

async fn serve_layer(
    mut stream: TcpStream,
    shared: &Shared,
    head_only: bool,
    path: &str,
) -> std::io::Result<()> {
    let a = &shared.artifact;
    let module = &a.module;
    let digest = Some(&a.layer_digest);
    let half = module.len() / 2;
    let nth = shared.layer_requests.fetch_add(1, Ordering::SeqCst) + 1;
    match shared.scenario {
        Scenario::ResetBlobAlternately if nth % 2 == 1 => reset(stream),
        Scenario::WrongBlobBytes => {
            let mut wrong = module.clone();
            if let Some(last) = wrong.last_mut() {
                *last ^= 0xff;
            }
            write_document(&mut stream, head_only, MEDIA_TYPE_BLOB, &wrong, digest).await
        }
        Scenario::BlobLongerThanDescriptor => {
            let mut longer = module.clone();
            longer.resize(module.len() + EXTRA_BLOB_BYTES, 0);
            write_document(&mut stream, head_only, MEDIA_TYPE_BLOB, &longer, digest).await
        }
        Scenario::BlobLongerChunked => {
            write_chunked_head(&mut stream, MEDIA_TYPE_BLOB).await?;
            if head_only {
                return Ok(());
            }
            write_chunk(&mut stream, module).await?;
            write_chunk(&mut stream, &[0u8; EXTRA_BLOB_BYTES]).await?;
            stream.write_all(b"0\r\n\r\n").await?;
            stream.flush().await
        }
        Scenario::EndlessBlob => {
            write_chunked_head(&mut stream, MEDIA_TYPE_BLOB).await?;
            if head_only {
                return Ok(());
            }
            write_chunk(&mut stream, module).await?;
            let zeros = vec![0u8; ENDLESS_CHUNK_BYTES];
            loop {
                write_chunk(&mut stream, &zeros).await?;
            }
        }
        Scenario::StallMidBlob | Scenario::ResetMidBlob | Scenario::ResetBlobAlternately => {
            write_head(
                &mut stream,
                200,
                &document_headers(MEDIA_TYPE_BLOB, module.len(), &a.layer_digest),
            )
            .await?;
            if head_only {
                return Ok(());
            }
            stream.write_all(&module[..half]).await?;
            stream.flush().await?;
            if shared.scenario == Scenario::StallMidBlob {
                return stall(stream).await;
            }
            tokio::time::sleep(PAUSE_BEFORE_RESET).await;
            reset(stream)
        }
        Scenario::RedirectBlobToOtherHost => {
            write_redirect(&mut stream, shared.redirect_target, path).await
        }
        _ => write_document(&mut stream, head_only, MEDIA_TYPE_BLOB, module, digest).await,
    }
}

/// Close with an RST instead of a FIN (a zero linger).
fn reset(stream: TcpStream) -> std::io::Result<()> {
    stream.set_zero_linger()?;
    drop(stream);
    Ok(())
}

/// Hold the connection open and say nothing until the registry is dropped.
async fn stall(stream: TcpStream) -> std::io::Result<()> {
    std::future::pending::<()>().await;
    drop(stream);
    Ok(())
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

async fn write_head(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Docker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await
}

/// Headers of a document: type, length and `Docker-Content-Digest`.
fn document_headers(media_type: &str, len: usize, digest: &Digest) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", media_type.to_owned()),
        ("Content-Length", len.to_string()),
        ("Docker-Content-Digest", digest.to_string()),
    ]
}

/// A whole document with `Content-Length`; `digest` overrides the `Docker-Content-Digest`
/// header (by default the digest of `body`).
async fn write_document(
    stream: &mut TcpStream,
    head_only: bool,
    media_type: &str,
    body: &[u8],
    digest: Option<&Digest>,
) -> std::io::Result<()> {
    let own = Digest::of(body);
    let headers = document_headers(media_type, body.len(), digest.unwrap_or(&own));
    write_head(stream, 200, &headers).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.flush().await
}

async fn write_fixed(
    stream: &mut TcpStream,
    head_only: bool,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut all = headers.to_vec();
    all.push(("Content-Length", body.len().to_string()));
    write_head(stream, status, &all).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.flush().await
}

/// An OCI error envelope.
async fn write_error(
    stream: &mut TcpStream,
    head_only: bool,
    status: u16,
    code: &str,
    detail: &str,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({
        "errors": [{"code": code, "message": format!("hostile registry: {detail}")}],
    }))
    .expect("error JSON");
    write_fixed(
        stream,
        head_only,
        status,
        &[("Content-Type", "application/json".into())],
        &body,
    )
    .await
}

async fn write_redirect(
    stream: &mut TcpStream,
    target: SocketAddr,
    path: &str,
) -> std::io::Result<()> {
    write_fixed(
        stream,
        true,
        307,
        &[("Location", format!("http://{target}{path}"))],
        b"",
    )
    .await
}

async fn write_chunked_head(stream: &mut TcpStream, media_type: &str) -> std::io::Result<()> {
    write_head(
        stream,
        200,
        &[
            ("Content-Type", media_type.to_owned()),
            ("Transfer-Encoding", "chunked".to_owned()),
        ],
    )
    .await
}

async fn write_chunk(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    stream.write_all(data).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}
