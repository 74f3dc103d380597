//! Talking to an OCI distribution registry.
//!
//! Reads (manifests, blobs, referrers) go through Warrant's own HTTP path so that every one is
//! bounded: a size cap before and while reading, connect and read timeouts, a total deadline
//! per operation, bounded retries with backoff on 429/5xx and dropped connections, and a
//! redirect policy that never leaves the registry's origin except for blob downloads over
//! HTTPS (whose bytes are digest-checked anyway). `oci-client` negotiates bearer tokens and
//! performs uploads, where Warrant supplies the bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use oci_client::RegistryOperation;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url, redirect};

use crate::auth::{Credential, Credentials};
use crate::budget::Budget;
use crate::digest::{Digest, truncate_for_message};
use crate::error::Error;
use crate::limits;
use crate::pull::Progress;

/// Size of one chunk of a blob upload (the size `oci-client` uploads per request).
const PUSH_CHUNK_BYTES: usize = 4 * 1024 * 1024;
use crate::reference::{RegistryRef, Selector};

/// The `User-Agent` Warrant sends.
pub const USER_AGENT: &str = concat!("warrant/", env!("CARGO_PKG_VERSION"));

/// How a [`RegistryClient`] behaves. `Default` gives the documented production values.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Longest silence allowed while reading.
    pub read_timeout: Duration,
    /// Total time for one operation, retries included.
    pub operation_deadline: Duration,
    /// Attempts per request on 429/5xx or a dropped connection (at least 1).
    pub max_attempts: u32,
    /// Base delay of the exponential backoff.
    pub retry_base_delay: Duration,
    /// Largest Wasm layer accepted.
    pub max_module_bytes: u64,
    /// Registries (`host[:port]`) reached over plain HTTP although not loopback.
    pub insecure_registries: Vec<String>,
    /// Credentials by registry.
    pub credentials: Credentials,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: limits::DEFAULT_CONNECT_TIMEOUT,
            read_timeout: limits::DEFAULT_READ_TIMEOUT,
            operation_deadline: limits::DEFAULT_OPERATION_DEADLINE,
            max_attempts: limits::DEFAULT_MAX_ATTEMPTS,
            retry_base_delay: limits::RETRY_BASE_DELAY,
            max_module_bytes: limits::DEFAULT_MAX_MODULE_BYTES,
            insecure_registries: Vec::new(),
            credentials: Credentials::none(),
        }
    }
}

/// A client for OCI registries and image-layout directories.
pub struct RegistryClient {
    pub(crate) options: ClientOptions,
    connections: Arc<Connections>,
    /// The command's budget, when the client is [`RegistryClient::budgeted`].
    budget: Option<Arc<Budget>>,
}

/// What clients made from one another share: connection pools, upload clients, tokens.
#[derive(Default)]
struct Connections {
    /// Built on first use: building it loads the system's TLS roots (about 150 files here),
    /// which an image-layout reference never needs.
    http: std::sync::OnceLock<reqwest::Client>,
    oci: Mutex<HashMap<String, Arc<oci_client::Client>>>,
    auth_headers: Mutex<HashMap<(String, String, bool), HeaderValue>>,
}

tokio::task_local! {
    /// The budget of the request being sent, for the redirect policy to count each hop.
    static SENDING: Arc<Budget>;
}

impl RegistryClient {
    /// A client with `options`.
    pub fn new(options: ClientOptions) -> Result<Self, Error> {
        Ok(Self {
            options,
            connections: Arc::new(Connections::default()),
            budget: None,
        })
    }

    /// A client sharing this one's connections and tokens whose registry operations, however
    /// many, must together finish within `deadline` (the clock starts at the first) and send at
    /// most `max_requests` HTTP requests: every attempt, retry, redirect hop and token request
    /// counts. Each operation keeps its own deadline too; the earlier governs. Past either, an
    /// operation is refused ([`Error::Timeout`] naming the command's deadline, or
    /// [`Error::TooManyRequests`]) and [`Self::budget_spent`] says so.
    ///
    /// Uploads of blobs and manifests (`push`, `sign`, `attest`) are made by the upload client;
    /// their requests are bounded by the deadline, not counted.
    ///
    /// INVARIANT (one budget): the clones made from this one share its deadline and count.
    pub fn budgeted(&self, deadline: Duration, max_requests: u32) -> Self {
        Self {
            options: self.options.clone(),
            connections: self.connections.clone(),
            budget: Some(Arc::new(Budget::new(deadline, max_requests))),
        }
    }

    /// Why this client's budget is spent, if it is: its deadline passed or a request was
    /// refused by its cap. A caller that tolerates failed operations (a signature that cannot
    /// be fetched is only rejected) checks this, so that a spent budget is reported as itself.
    pub fn budget_spent(&self) -> Option<Error> {
        self.budget.as_ref().and_then(|b| b.spent())
    }

    /// Count one HTTP request against the budget.
    fn take_request(&self) -> Result<(), Error> {
        self.budget.as_ref().map_or(Ok(()), |b| b.take())
    }

    /// The HTTP client, built on first use.
    fn http(&self) -> Result<&reqwest::Client, Error> {
        let http = &self.connections.http;
        if let Some(http) = http.get() {
            return Ok(http);
        }
        let built = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(self.options.connect_timeout)
            .read_timeout(self.options.read_timeout)
            .redirect(redirect_policy())
            .no_proxy()
            .build()
            .map_err(|e| Error::Network {
                registry: String::new(),
                what: "building the HTTP client".into(),
                reason: error_chain(&e),
            })?;
        Ok(http.get_or_init(|| built))
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Run `fut` under the per-operation deadline, or the command's if that comes first.
    pub(crate) async fn with_deadline<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let own = self.options.operation_deadline;
        let budget = self
            .budget
            .as_ref()
            .map(|b| (b, b.remaining()))
            .filter(|(_, remaining)| *remaining <= own);
        let limit = budget.map_or(own, |(_, remaining)| remaining);
        if let Some((budget, _)) = budget
            && limit.is_zero()
        {
            return Err(budget.expired(what));
        }
        match tokio::time::timeout(limit, fut).await {
            Ok(result) => result,
            Err(_) => Err(match budget {
                Some((budget, _)) => budget.expired(what),
                None => Error::Timeout {
                    what: what.to_owned(),
                    after: own,
                },
            }),
        }
    }

    fn plain_http_allowed(&self, r: &RegistryRef) -> bool {
        r.is_loopback()
            || self
                .options
                .insecure_registries
                .iter()
                .any(|i| i.eq_ignore_ascii_case(r.registry()))
    }

    fn base_url(&self, r: &RegistryRef) -> String {
        let scheme = if self.plain_http_allowed(r) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}", r.resolve_registry(), r.repository())
    }

    fn oci_for(&self, r: &RegistryRef) -> Result<Arc<oci_client::Client>, Error> {
        let key = r.resolve_registry().to_owned();
        let mut cache = self.connections.oci.lock().map_err(|_| poisoned())?;
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let config = ClientConfig {
            protocol: if self.plain_http_allowed(r) {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(self.options.connect_timeout),
            read_timeout: Some(self.options.read_timeout),
            platform_resolver: None,
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| Error::Network {
            registry: key.clone(),
            what: "building the upload client".into(),
            reason: e.to_string(),
        })?;
        let client = Arc::new(client);
        cache.insert(key, client.clone());
        Ok(client)
    }

    pub(crate) fn registry_auth(&self, r: &RegistryRef) -> RegistryAuth {
        match credential_for(&self.options.credentials, r) {
            None => RegistryAuth::Anonymous,
            Some(Credential::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(Credential::Bearer(token)) => RegistryAuth::Bearer(token.clone()),
        }
    }

    fn auth_key(r: &RegistryRef, push: bool) -> (String, String, bool) {
        (
            r.resolve_registry().to_owned(),
            r.repository().to_owned(),
            push,
        )
    }

    /// Answer a 401: obtain a token (or use basic credentials) and cache the header.
    /// `challenge` is the 401's `WWW-Authenticate` header: a bearer realm that would take the
    /// credentials from an HTTPS registry to plain HTTP is refused before anything is sent.
    async fn authenticate(
        &self,
        r: &RegistryRef,
        push: bool,
        challenge: Option<&str>,
    ) -> Result<(), Error> {
        let registry = r.registry().to_owned();
        let auth = self.registry_auth(r);
        if !self.plain_http_allowed(r)
            && let Some(realm) = challenge.and_then(bearer_realm)
            && !realm.to_ascii_lowercase().starts_with("https://")
        {
            return Err(Error::Auth {
                registry,
                reason: format!(
                    "the token service `{}` is not HTTPS; credentials are not sent",
                    sanitise(&realm)
                ),
            });
        }
        let oci = self.oci_for(r)?;
        // The token request counts against the budget like any other.
        self.take_request()?;
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let token = oci
            .auth(&r.to_oci(), &auth, op)
            .await
            .map_err(|e| Error::Auth {
                registry: registry.clone(),
                reason: match auth {
                    RegistryAuth::Anonymous => format!(
                        "the registry demands credentials and none are configured for it ({})",
                        sanitise(&e.to_string())
                    ),
                    _ => sanitise(&e.to_string()),
                },
            })?;
        let value = match (token, &auth) {
            (Some(token), _) => format!("Bearer {token}"),
            (None, RegistryAuth::Basic(user, pass)) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            ),
            (None, _) => {
                return Err(Error::Auth {
                    registry,
                    reason: "the registry demands credentials and none are configured".into(),
                });
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| Error::Auth {
            registry,
            reason: "the token is not a valid header value".into(),
        })?;
        header.set_sensitive(true);
        self.connections
            .auth_headers
            .lock()
            .map_err(|_| poisoned())?
            .insert(Self::auth_key(r, push), header);
        Ok(())
    }

    /// Send a request built by `build`, authenticating once on 401 and retrying 429/5xx and
    /// dropped connections with backoff. Returns any other response for the caller to judge.
    pub(crate) async fn send(
        &self,
        r: &RegistryRef,
        push: bool,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, Error> {
        self.send_counted(r, push, what, build, &mut 0).await
    }

    /// [`Self::send`], counting attempts in `attempt` so that a caller who retries a whole
    /// operation (a blob download cut mid-body) shares one budget with the request retries.
    pub(crate) async fn send_counted(
        &self,
        r: &RegistryRef,
        push: bool,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        attempt: &mut u32,
    ) -> Result<Response, Error> {
        let mut authenticated = false;
        loop {
            *attempt += 1;
            let attempt_now = *attempt;
            self.take_request()?;
            let mut request = build(self.http()?);
            let cached = self
                .connections
                .auth_headers
                .lock()
                .map_err(|_| poisoned())?
                .get(&Self::auth_key(r, push))
                .cloned();
            if let Some(header) = cached {
                request = request.header(AUTHORIZATION, header);
            }
            let sent = match &self.budget {
                Some(budget) => SENDING.scope(budget.clone(), request.send()).await,
                None => request.send().await,
            };
            match sent {
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && !authenticated {
                        authenticated = true;
                        *attempt -= 1;
                        let challenge = response
                            .headers()
                            .get(WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        self.authenticate(r, push, challenge.as_deref()).await?;
                        continue;
                    }
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(Error::Auth {
                            registry: r.registry().to_owned(),
                            reason: format!(
                                "HTTP {} for {what}{}",
                                status.as_u16(),
                                detail_suffix(&error_detail(response).await)
                            ),
                        });
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        if attempt_now >= self.options.max_attempts.max(1) {
                            return Err(Error::Status {
                                registry: r.registry().to_owned(),
                                what: format!("{what} (after {attempt_now} attempts)"),
                                status: status.as_u16(),
                                detail: error_detail(response).await,
                            });
                        }
                        let delay = self.backoff(attempt_now, retry_after(&response));
                        tracing::debug!(%status, attempt = attempt_now, ?delay, what, "retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok(response);
                }
                Err(e) => {
                    // A redirect hop refused by the budget's cap is reported as the cap.
                    if let Some(budget) = &self.budget
                        && budget.over_cap()
                        && let Some(spent) = budget.spent()
                    {
                        return Err(spent);
                    }
                    let err = self.map_transport(&e, r, what);
                    if matches!(err, Error::Network { .. })
                        && attempt_now < self.options.max_attempts.max(1)
                    {
                        let delay = self.backoff(attempt_now, None);
                        tracing::debug!(error = %err, attempt = attempt_now, ?delay, "retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }

    pub(crate) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .options
            .retry_base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        retry_after.unwrap_or(exp).min(limits::RETRY_MAX_DELAY)
    }

    /// Turn a transport error into a typed one.
    pub(crate) fn map_transport(&self, e: &reqwest::Error, r: &RegistryRef, what: &str) -> Error {
        if e.is_redirect() {
            return Error::Redirect {
                from: e.url().map(|u| u.to_string()).unwrap_or_default(),
                reason: innermost(e),
            };
        }
        if e.is_timeout() {
            let after = if e.is_connect() {
                self.options.connect_timeout
            } else {
                self.options.read_timeout
            };
            return Error::Timeout {
                what: format!("{what} from `{}`", r.registry()),
                after,
            };
        }
        Error::Network {
            registry: r.registry().to_owned(),
            what: what.to_owned(),
            reason: error_chain(e),
        }
    }

    /// GET a manifest (or index) by tag or digest, bounded, and return its bytes and digest.
    /// The digest is computed here from the bytes; a digest selector must match it, and so must
    /// the registry's `Docker-Content-Digest` header if it sent one.
    pub(crate) async fn get_manifest_bytes(
        &self,
        r: &RegistryRef,
        accept: &'static str,
    ) -> Result<(Vec<u8>, Digest, Option<String>), Error> {
        let reference = match r.selector() {
            Selector::Tag(t) => t.clone(),
            Selector::Digest(d) => d.to_string(),
        };
        let what = format!("manifest `{r}`");
        let url = format!("{}/manifests/{reference}", self.base_url(r));
        let response = self
            .send(r, false, &what, |c| c.get(&url).header(ACCEPT, accept))
            .await?;
        let response = self.expect_success(response, r, &what).await?;
        let claimed = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = self
            .read_body(response, limits::MAX_MANIFEST_BYTES, &what, r)
            .await?;
        if let Selector::Digest(expected) = r.selector() {
            expected.check(&bytes, &what)?;
        }
        let actual = Digest::of(&bytes);
        if let Some(claimed) = claimed
            && claimed.starts_with("sha256:")
            && claimed != actual.to_string()
        {
            return Err(Error::LyingDigestHeader {
                registry: r.registry().to_owned(),
                what,
                claimed: sanitise(&claimed),
                actual,
            });
        }
        Ok((bytes, actual, content_type))
    }

    /// GET a small blob (a config) into memory, bounded and digest-checked.
    pub(crate) async fn get_small_blob(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        size: u64,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        if size > limit {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                limit,
            });
        }
        let url = format!("{}/blobs/{digest}", self.base_url(r));
        let response = self.send(r, false, what, |c| c.get(&url)).await?;
        let response = self.expect_success(response, r, what).await?;
        // Read up to the cap, not the declared size, so that a descriptor that understates its
        // blob is reported as the size mismatch it is.
        let bytes = self.read_body(response, limit, what, r).await?;
        if bytes.len() as u64 != size {
            return Err(Error::SizeMismatch {
                what: what.to_owned(),
                declared: size,
                actual: bytes.len() as u64,
            });
        }
        digest.check(&bytes, what)?;
        Ok(bytes)
    }

    /// Start a blob GET; the caller streams the body. `attempt` is the caller's budget.
    pub(crate) async fn get_blob_response(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        what: &str,
        attempt: &mut u32,
    ) -> Result<Response, Error> {
        let url = format!("{}/blobs/{digest}", self.base_url(r));
        let response = self
            .send_counted(r, false, what, |c| c.get(&url), attempt)
            .await?;
        self.expect_success(response, r, what).await
    }

    /// Map 404 to `NotFound` and any other non-2xx to `Status`.
    pub(crate) async fn expect_success(
        &self,
        response: Response,
        r: &RegistryRef,
        what: &str,
    ) -> Result<Response, Error> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(Error::NotFound {
                what: format!("{what} in `{}`", r.registry()),
            });
        }
        Err(Error::Status {
            registry: r.registry().to_owned(),
            what: what.to_owned(),
            status: status.as_u16(),
            detail: error_detail(response).await,
        })
    }

    /// Read a whole body of at most `limit` bytes.
    pub(crate) async fn read_body(
        &self,
        mut response: Response,
        limit: u64,
        what: &str,
        r: &RegistryRef,
    ) -> Result<Vec<u8>, Error> {
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                limit,
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.map_transport(&e, r, what))?
        {
            if (bytes.len() as u64).saturating_add(chunk.len() as u64) > limit {
                return Err(Error::TooLarge {
                    what: what.to_owned(),
                    limit,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// True when a blob is already in the repository.
    pub(crate) async fn blob_exists(
        &self,
        r: &RegistryRef,
        digest: &Digest,
    ) -> Result<bool, Error> {
        let url = format!("{}/blobs/{digest}", self.base_url(r));
        let what = format!("blob `{digest}`");
        let response = self
            .send(r, true, &what, |c| c.request(Method::HEAD, &url))
            .await?;
        Ok(response.status().is_success())
    }

    /// Upload a blob unless the registry has it, reporting progress as chunks are handed to
    /// the uploader. Chunked upload first; a registry that violates the chunked protocol gets
    /// one monolithic upload.
    pub(crate) async fn push_blob(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        bytes: Vec<u8>,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        if self.blob_exists(r, digest).await? {
            return Ok(());
        }
        let oci = self.oci_for(r)?;
        oci.store_auth_if_needed(r.resolve_registry(), &self.registry_auth(r))
            .await;
        let bytes = bytes::Bytes::from(bytes);
        let size = bytes.len() as u64;
        let (tx, rx) = tokio::sync::mpsc::channel::<oci_client::errors::Result<bytes::Bytes>>(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let feed = async {
            progress.begin(what, size);
            let mut rest = bytes.clone();
            while !rest.is_empty() {
                let chunk = rest.split_to(PUSH_CHUNK_BYTES.min(rest.len()));
                let len = chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
                progress.advance(len);
            }
            drop(tx);
        };
        let oci_ref = r.to_oci();
        let digest_text = digest.to_string();
        let upload = oci.push_blob_stream(&oci_ref, stream, &digest_text, Some(size));
        let ((), result) = tokio::join!(feed, upload);
        progress.end();
        match result {
            Ok(_) => Ok(()),
            Err(OciDistributionError::SpecViolationError(violation)) => {
                tracing::warn!(%violation, "chunked upload refused; uploading in one request");
                oci.push_blob(&oci_ref, bytes, &digest_text)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.map_oci(e, r, what))
            }
            Err(e) => Err(self.map_oci(e, r, what)),
        }
    }

    /// Upload a manifest under `r` (a tag or its digest).
    pub(crate) async fn push_manifest(
        &self,
        r: &RegistryRef,
        bytes: Vec<u8>,
        media_type: &str,
        what: &str,
    ) -> Result<(), Error> {
        let oci = self.oci_for(r)?;
        oci.store_auth_if_needed(r.resolve_registry(), &self.registry_auth(r))
            .await;
        let content_type = HeaderValue::from_str(media_type).map_err(|_| Error::Malformed {
            what: what.to_owned(),
            reason: format!("media type `{media_type}` is not a header value"),
        })?;
        oci.push_manifest_raw(&r.to_oci(), bytes, content_type)
            .await
            .map(|_| ())
            .map_err(|e| self.map_oci(e, r, what))
    }

    /// GET the referrers API; `None` when the registry does not implement it (404).
    pub(crate) async fn get_referrers_api(
        &self,
        r: &RegistryRef,
        subject: &Digest,
    ) -> Result<Option<Vec<u8>>, Error> {
        let url = format!("{}/referrers/{subject}", self.base_url(r));
        let what = format!("referrers of `{subject}`");
        let response = self
            .send(r, false, &what, |c| {
                c.get(&url)
                    .header(ACCEPT, crate::manifest::MEDIA_TYPE_OCI_INDEX)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.expect_success(response, r, &what).await?;
        self.read_body(response, limits::MAX_MANIFEST_BYTES, &what, r)
            .await
            .map(Some)
    }

    fn map_oci(&self, e: OciDistributionError, r: &RegistryRef, what: &str) -> Error {
        match e {
            OciDistributionError::RequestError(e) => self.map_transport(&e, r, what),
            OciDistributionError::AuthenticationFailure(reason)
            | OciDistributionError::UnauthorizedError { url: reason } => Error::Auth {
                registry: r.registry().to_owned(),
                reason: sanitise(&reason),
            },
            OciDistributionError::ServerError { code, message, .. } => Error::Status {
                registry: r.registry().to_owned(),
                what: what.to_owned(),
                status: code,
                detail: sanitise(&message),
            },
            other => Error::Network {
                registry: r.registry().to_owned(),
                what: what.to_owned(),
                reason: sanitise(&other.to_string()),
            },
        }
    }
}

fn credential_for<'a>(creds: &'a Credentials, r: &RegistryRef) -> Option<&'a Credential> {
    creds
        .get(r.resolve_registry())
        .or_else(|| creds.get(r.registry()))
}

fn poisoned() -> Error {
    Error::Network {
        registry: String::new(),
        what: "client state".into(),
        reason: "a previous operation panicked".into(),
    }
}

/// Follow redirects only within the registry's origin, except that a blob download may move
/// to another HTTPS host (registries serve blobs from storage services; the bytes are
/// digest-checked). Never downgrade HTTPS to HTTP. Credentials are not forwarded across hosts
/// (the HTTP client strips `Authorization` on a cross-host hop).
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first().cloned() else {
            return attempt.stop();
        };
        let last = attempt.previous().last().cloned().unwrap_or(first.clone());
        let to: Url = attempt.url().clone();
        if attempt.previous().len() > limits::MAX_REDIRECTS {
            return attempt.error(format!("more than {} redirects", limits::MAX_REDIRECTS));
        }
        if last.scheme() == "https" && to.scheme() != "https" {
            return attempt.error(format!("redirect from HTTPS to `{}`", to.scheme()));
        }
        let same_origin = to.scheme() == first.scheme()
            && to.host_str() == first.host_str()
            && to.port_or_known_default() == first.port_or_known_default();
        let follows = same_origin || (is_blob_path(first.path()) && to.scheme() == "https");
        if follows {
            // Each hop is a request of the command's budget.
            return match SENDING.try_with(|budget| budget.take()) {
                Ok(Err(refused)) => attempt.error(refused.to_string()),
                Ok(Ok(())) | Err(_) => attempt.follow(),
            };
        }
        attempt.error(format!(
            "redirect to another origin `{}` is only followed for blob downloads over HTTPS",
            to.origin().ascii_serialization()
        ))
    })
}

/// True for `/v2/<name>/blobs/<digest>`: the segment before the last is `blobs` and the last is a
/// digest. (A repository may itself have a path component called `blobs`.)
fn is_blob_path(path: &str) -> bool {
    let mut segments = path.rsplit('/');
    let last = segments.next().unwrap_or_default();
    segments.next() == Some("blobs") && last.starts_with("sha256:")
}

/// The `realm` of a `Bearer` challenge, if the header is one.
fn bearer_realm(header: &str) -> Option<String> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    params.split(',').find_map(|param| {
        let (key, value) = param.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("realm")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The registry's error message, from an OCI error envelope or the raw body (first 4 KiB).
async fn error_detail(mut response: Response) -> String {
    const MAX: usize = 4096;
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX {
            body.truncate(MAX);
            break;
        }
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<EnvelopeError>,
    }
    #[derive(serde::Deserialize)]
    struct EnvelopeError {
        code: Option<String>,
        message: Option<String>,
    }
    let text = match crate::json::parse::<Envelope>(&body, "error") {
        Ok(envelope) => envelope
            .errors
            .into_iter()
            .map(|e| match (e.code, e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(s), None) | (None, Some(s)) => s,
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    sanitise(text.trim())
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// Registry-supplied text made safe to print ([`crate::text::one_line`]), length capped.
pub(crate) fn sanitise(s: &str) -> String {
    truncate_for_message(&crate::text::one_line(s))
}

/// The root cause first, then the context around it, so a cut message keeps the cause.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    let root = parts.pop().unwrap_or_default();
    let context = parts.join(": ");
    let text = if context.is_empty() {
        root
    } else {
        format!("{root} (while: {context})")
    };
    crate::text::one_line(&text)
        .chars()
        .take(MAX_TRANSPORT_MESSAGE_CHARS)
        .collect()
}

/// Longest transport error message kept.
const MAX_TRANSPORT_MESSAGE_CHARS: usize = 400;

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(s) = current.source() {
        current = s;
    }
    sanitise(&current.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blob_paths_count_as_blob_downloads() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(is_blob_path(&format!("/v2/team/app/blobs/{d}")));
        assert!(is_blob_path(&format!("/v2/blobs/blobs/{d}")));
        assert!(!is_blob_path("/v2/team/blobs/app/manifests/v1"));
        assert!(!is_blob_path(&format!("/v2/team/blobs/app/referrers/{d}")));
        assert!(!is_blob_path("/v2/team/app/blobs/uploads/"));
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let client = RegistryClient::new(ClientOptions {
            insecure_registries: vec!["registry.internal:5000".into()],
            ..ClientOptions::default()
        })
        .unwrap();
        let url = |r: &str| client.base_url(&r.parse().unwrap());
        assert_eq!(url("ghcr.io/acme/p:v1"), "https://ghcr.io/v2/acme/p");
        assert_eq!(url("10.0.0.1:5000/p:v1"), "https://10.0.0.1:5000/v2/p");
        assert_eq!(
            url("registry.internal:5001/p:v1"),
            "https://registry.internal:5001/v2/p"
        );
        assert_eq!(
            url("registry.internal:5000/p:v1"),
            "http://registry.internal:5000/v2/p"
        );
        assert_eq!(url("localhost:5000/p:v1"), "http://localhost:5000/v2/p");
        assert_eq!(url("127.0.0.1:5000/p:v1"), "http://127.0.0.1:5000/v2/p");
        assert_eq!(
            url("docker.io/library/p:v1"),
            "https://index.docker.io/v2/library/p"
        );
    }

    #[test]
    fn bearer_realms_are_read_from_challenges() {
        assert_eq!(
            bearer_realm(r#"Bearer realm="https://auth.example/token",service="r",scope="x""#),
            Some("https://auth.example/token".into())
        );
        assert_eq!(
            bearer_realm(r#"bearer service="r", realm="http://evil/token""#),
            Some("http://evil/token".into())
        );
        assert_eq!(bearer_realm(r#"Basic realm="registry""#), None);
        assert_eq!(bearer_realm("Bearer"), None);
    }

    /// A registry on loopback that answers every request with a same-origin redirect to the
    /// next hop, counting the requests it read.
    async fn redirecting_registry() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let count = Arc::new(AtomicUsize::new(0));
        let (counted, location) = (count.clone(), host.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{location}/v2/p/manifests/hop{n}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (host, count)
    }

    #[tokio::test]
    async fn every_redirect_hop_counts_against_the_command_budget() {
        use std::sync::atomic::Ordering;
        let (host, count) = redirecting_registry().await;
        let reference: crate::Reference = format!("{host}/p:v1").parse().unwrap();
        let client = RegistryClient::new(ClientOptions {
            max_attempts: 1,
            ..ClientOptions::default()
        })
        .unwrap();
        // Unbudgeted: the redirect limit stops it.
        let err = client.resolve(&reference).await.unwrap_err();
        assert!(matches!(err, Error::Redirect { .. }), "{err:?}");
        assert_eq!(count.load(Ordering::SeqCst), limits::MAX_REDIRECTS + 1);

        // Budgeted at three requests: the first and two hops, then refused.
        count.store(0, Ordering::SeqCst);
        let budgeted = client.budgeted(Duration::from_secs(60), 3);
        let err = budgeted.resolve(&reference).await.unwrap_err();
        assert!(
            matches!(err, Error::TooManyRequests { limit: 3 }),
            "{err:?}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert!(matches!(
            budgeted.budget_spent(),
            Some(Error::TooManyRequests { limit: 3 })
        ));
        // Nothing more is sent.
        let err = budgeted.resolve(&reference).await.unwrap_err();
        assert!(matches!(err, Error::TooManyRequests { .. }), "{err:?}");
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_command_deadline_bounds_operations_together() {
        // Nothing answers: each operation waits for its own deadline, or the command's.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let reference: crate::Reference = format!("{host}/p:v1").parse().unwrap();
        let client = RegistryClient::new(ClientOptions {
            operation_deadline: Duration::from_millis(300),
            ..ClientOptions::default()
        })
        .unwrap()
        .budgeted(Duration::from_millis(500), 100);
        let start = std::time::Instant::now();
        let first = client.resolve(&reference).await.unwrap_err();
        assert!(
            matches!(&first, Error::Timeout { after, .. } if *after == Duration::from_millis(300)),
            "{first:?}"
        );
        assert!(client.budget_spent().is_none());
        let second = client.resolve(&reference).await.unwrap_err();
        assert!(
            matches!(&second, Error::Timeout { what, after }
                if *after == Duration::from_millis(500)
                    && what.starts_with("the command's registry deadline")),
            "{second:?}"
        );
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_millis(700), "{elapsed:?}");
        // Spent: the next operation is refused at once.
        let third = client.resolve(&reference).await.unwrap_err();
        assert!(matches!(third, Error::Timeout { .. }), "{third:?}");
        assert!(start.elapsed() < Duration::from_millis(800));
        assert!(matches!(client.budget_spent(), Some(Error::Timeout { .. })));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let client = RegistryClient::new(ClientOptions::default()).unwrap();
        assert_eq!(client.backoff(1, None), limits::RETRY_BASE_DELAY);
        assert_eq!(client.backoff(2, None), limits::RETRY_BASE_DELAY * 2);
        assert_eq!(client.backoff(30, None), limits::RETRY_MAX_DELAY);
        assert_eq!(
            client.backoff(1, Some(Duration::from_secs(3600))),
            limits::RETRY_MAX_DELAY
        );
    }
}
