//! Registry credentials end to end: the bearer-token flow against the in-process registry's
//! token service ([`Scenario::BearerAuth`]), and HTTP basic against Debian's real
//! `docker-registry` with an htpasswd file, through the library, a Docker `config.json` and
//! the CLI.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use registry_client::{
    ClientOptions, Credential, Credentials, Error, Fetched, NoProgress, Reference, RegistryClient,
    Store,
};
use tests::fixtures::hello_module;
use tests::hostile::{
    AUTH_PASSWORD, AUTH_SERVICE, AUTH_USERNAME, BEARER_TOKEN, BasicAuth, HostileRegistry,
    REPOSITORY, Scenario, TokenRequest,
};
use tests::registry::TestRegistry;
use tests::store_check::{assert_store_clean, index_digests};

const BIN: &str = env!("CARGO_BIN_EXE_warrant-it");

/// A pull that has not returned by now is hung.
const HANG: Duration = Duration::from_secs(15);

/// The user and password of the htpasswd registry.
const USER: &str = "bob";
const PASSWORD: &str = "correct horse:battery";

fn basic(username: &str, password: &str) -> Credential {
    Credential::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

fn credentials_for(host: &str, credential: Credential) -> Credentials {
    let mut c = Credentials::none();
    c.insert(host, credential);
    c
}

fn client(credentials: Credentials) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        operation_deadline: Duration::from_secs(10),
        max_attempts: 2,
        retry_base_delay: Duration::from_millis(10),
        credentials,
        ..Default::default()
    })
    .expect("client")
}

fn reference(s: &str) -> Reference {
    s.parse().expect("reference")
}

/// One pull into a fresh store.
struct Pulled {
    result: Result<Fetched, Error>,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Pulled {
    fn fetched(&self) -> &Fetched {
        match &self.result {
            Ok(f) => f,
            Err(e) => panic!("pull failed but must succeed: {e} ({e:?})"),
        }
    }

    /// The pull failed with `Error::Auth` naming `host`, and left nothing in the store.
    fn assert_auth_refused(&self, host: &str) -> String {
        let err = match &self.result {
            Ok(f) => panic!("pull succeeded (manifest `{}`) but must fail", f.digest()),
            Err(e) => e,
        };
        assert!(
            matches!(err, Error::Auth { registry, .. } if registry == host),
            "expected Error::Auth for `{host}`, got {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(host),
            "message `{message}` does not name `{host}`"
        );
        assert_eq!(
            assert_store_clean(self.store.root()),
            Vec::<String>::new(),
            "blobs stored although the pull failed ({message})"
        );
        assert_eq!(
            index_digests(self.store.root()),
            Vec::<String>::new(),
            "index.json lists manifests although the pull failed ({message})"
        );
        message
    }
}

async fn pull(client: &RegistryClient, reference_text: &str) -> Pulled {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let r = reference(reference_text);
    let result = tokio::time::timeout(HANG, client.pull(&r, &store, &NoProgress))
        .await
        .unwrap_or_else(|_| panic!("pull of `{reference_text}` hung for {HANG:?}"));
    Pulled {
        result,
        store,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens, against the in-process registry and its token service.

/// The pull brought the hostile registry's artifact, whole and verified, into the store.
fn assert_pulled_hostile_artifact(registry: &HostileRegistry, pulled: &Pulled) {
    let fetched = pulled.fetched();
    assert_eq!(fetched.digest(), registry.manifest_digest());
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
    assert_eq!(assert_store_clean(pulled.store.root()), expected);
    assert_eq!(
        index_digests(pulled.store.root()),
        vec![registry.manifest_digest().to_string()]
    );
    // Manifest, config and layer each fetched once, with the token.
    assert_eq!(registry.authorized_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_flow_with_basic_credentials_pulls_with_a_pull_scoped_token() {
    let registry = HostileRegistry::start(Scenario::BearerAuth).await;
    let client = client(credentials_for(
        &registry.host(),
        basic(AUTH_USERNAME, AUTH_PASSWORD),
    ));
    let pulled = pull(&client, &registry.reference()).await;
    assert_pulled_hostile_artifact(&registry, &pulled);
    // One token, asked for with the challenge's service and the pull scope of the repository,
    // with the right basic credentials; reused for all three fetches.
    assert_eq!(
        registry.token_requests(),
        vec![TokenRequest {
            scope: Some(format!("repository:{REPOSITORY}:pull")),
            service: Some(AUTH_SERVICE.to_owned()),
            basic: BasicAuth::Right,
        }]
    );
    // The registry did challenge (the pull was not anonymous by accident).
    assert!(registry.challenged_requests() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_flow_with_a_wrong_password_is_an_auth_error_and_stores_nothing() {
    let registry = HostileRegistry::start(Scenario::BearerAuth).await;
    let wrong = "not-the-password";
    let client = client(credentials_for(
        &registry.host(),
        basic(AUTH_USERNAME, wrong),
    ));
    let pulled = pull(&client, &registry.reference()).await;
    let message = pulled.assert_auth_refused(&registry.host());
    assert!(
        !message.contains(wrong),
        "the password leaked into `{message}`"
    );
    let requests = registry.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].basic, BasicAuth::Wrong);
    assert_eq!(registry.authorized_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_flow_without_credentials_is_an_auth_error() {
    let registry = HostileRegistry::start(Scenario::BearerAuth).await;
    let pulled = pull(&client(Credentials::none()), &registry.reference()).await;
    pulled.assert_auth_refused(&registry.host());
    // An anonymous token request, refused.
    let requests = registry.token_requests();
    assert!(
        requests.iter().all(|r| r.basic == BasicAuth::Missing),
        "{requests:?}"
    );
    assert_eq!(registry.authorized_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_for_another_registry_are_not_sent() {
    let registry = HostileRegistry::start(Scenario::BearerAuth).await;
    // The right user and password, filed under another port of the same host.
    let client = client(credentials_for(
        &registry.redirect_target_host(),
        basic(AUTH_USERNAME, AUTH_PASSWORD),
    ));
    let pulled = pull(&client, &registry.reference()).await;
    pulled.assert_auth_refused(&registry.host());
    let requests = registry.token_requests();
    assert!(
        requests.iter().all(|r| r.basic == BasicAuth::Missing),
        "credentials for another registry reached the token service: {requests:?}"
    );
    assert_eq!(registry.redirect_target_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_token_credential_is_sent_as_is() {
    let registry = HostileRegistry::start(Scenario::BearerAuth).await;
    let client = client(credentials_for(
        &registry.host(),
        Credential::Bearer(BEARER_TOKEN.to_owned()),
    ));
    let pulled = pull(&client, &registry.reference()).await;
    assert_pulled_hostile_artifact(&registry, &pulled);
    assert_eq!(
        registry.token_requests(),
        vec![],
        "a registry token must be used as is, not exchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_registry_token_is_an_auth_error() {
    let registry = HostileRegistry::start(Scenario::BearerAuth).await;
    let client = client(credentials_for(
        &registry.host(),
        Credential::Bearer("not-the-token".to_owned()),
    ));
    let pulled = pull(&client, &registry.reference()).await;
    let message = pulled.assert_auth_refused(&registry.host());
    assert!(message.contains("401"), "{message}");
    assert_eq!(registry.token_requests(), vec![]);
    assert_eq!(registry.authorized_requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// HTTP basic, against the real registry with an htpasswd file.

/// A registry demanding `USER` / `PASSWORD`, with the hello module pushed as `auth/hello:v1`
/// (with the right credentials). Returns the registry, the reference and the manifest digest.
async fn htpasswd_registry_with_hello() -> (TestRegistry, String, String) {
    let registry = TestRegistry::start_with_htpasswd(USER, PASSWORD);
    let reference_text = registry.reference("auth/hello", "v1");
    let pushed = client(credentials_for(&registry.host(), basic(USER, PASSWORD)))
        .push_wasm(
            hello_module(),
            None,
            &reference(&reference_text),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("push with the right credentials failed: {e} ({e:?})"));
    (registry, reference_text, pushed.manifest.digest.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_push_and_pull_with_the_right_credentials() {
    let (registry, reference_text, digest) = htpasswd_registry_with_hello().await;
    let client = client(credentials_for(&registry.host(), basic(USER, PASSWORD)));
    let pulled = pull(&client, &reference_text).await;
    let fetched = pulled.fetched();
    assert_eq!(fetched.digest().to_string(), digest);
    assert_eq!(
        std::fs::read(fetched.module_path()).expect("stored module"),
        hello_module()
    );
    assert_eq!(assert_store_clean(pulled.store.root()).len(), 3);
    assert_eq!(index_digests(pulled.store.root()), vec![digest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_refuses_anonymous_and_wrong_password_pulls_and_pushes() {
    let (registry, reference_text, _) = htpasswd_registry_with_hello().await;
    let host = registry.host();

    let anonymous = client(Credentials::none());
    pull(&anonymous, &reference_text)
        .await
        .assert_auth_refused(&host);

    let wrong = client(credentials_for(&host, basic(USER, "wrong password")));
    let message = pull(&wrong, &reference_text)
        .await
        .assert_auth_refused(&host);
    assert!(!message.contains("wrong password"), "{message}");

    // The registry is not open for writing either.
    for (who, c) in [("anonymous", &anonymous), ("wrong password", &wrong)] {
        let err = c
            .push_wasm(
                hello_module(),
                None,
                &reference(&registry.reference("auth/other", "v1")),
                &NoProgress,
            )
            .await
            .map(|p| p.manifest.digest.to_string())
            .expect_err("push must be refused");
        assert!(
            matches!(&err, Error::Auth { registry, .. } if *registry == host),
            "{who}: {err:?}"
        );
    }
}

/// A Docker `config.json` with `{"auths":{HOST:{"auth":base64(user:password)}}}` in `dir`.
fn write_docker_config(dir: &Path, host: &str, user: &str, password: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("config dir");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&serde_json::json!({ "auths": { host: { "auth": auth } } }))
            .expect("config JSON"),
    )
    .expect("write config.json");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_a_docker_config_file() {
    let (registry, reference_text, digest) = htpasswd_registry_with_hello().await;
    let dir = tempfile::tempdir().expect("temp dir");

    let path = write_docker_config(dir.path(), &registry.host(), USER, PASSWORD);
    let credentials = Credentials::from_file(&path).expect("read config.json");
    let pulled = pull(&client(credentials), &reference_text).await;
    assert_eq!(pulled.fetched().digest().to_string(), digest);
    assert_eq!(index_digests(pulled.store.root()), vec![digest]);

    // The same file with a wrong password: the file is what is used.
    let path = write_docker_config(&dir.path().join("wrong"), &registry.host(), USER, "nope");
    let credentials = Credentials::from_file(&path).expect("read config.json");
    pull(&client(credentials), &reference_text)
        .await
        .assert_auth_refused(&registry.host());
}

/// `warrant` with an empty home and no `DOCKER_CONFIG`, as in the CLI tests.
fn warrant(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("HOME", home)
        .env_remove("WARRANT_CONFIG")
        .env_remove("WARRANT_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("DOCKER_CONFIG")
        .env_remove("RUST_LOG");
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pull_uses_docker_config_credentials() {
    let (registry, reference_text, digest) = htpasswd_registry_with_hello().await;
    let home = tempfile::tempdir().expect("temp dir");
    let docker = home.path().join("docker-config");
    write_docker_config(&docker, &registry.host(), USER, PASSWORD);

    // Without credentials: a registry error (121) that says authentication failed.
    let anonymous_store = home.path().join("anonymous-store");
    let out = warrant(home.path())
        .args([
            "pull",
            &reference_text,
            "--store",
            anonymous_store.to_str().expect("utf-8 path"),
        ])
        .output()
        .expect("start warrant");
    assert_eq!(out.status.code(), Some(121), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("authentication") && stderr(&out).contains(&registry.host()),
        "{}",
        stderr(&out)
    );
    assert_eq!(assert_store_clean(&anonymous_store), Vec::<String>::new());

    // With DOCKER_CONFIG pointing at the config.json.
    let store = home.path().join("store");
    let out = warrant(home.path())
        .env("DOCKER_CONFIG", &docker)
        .args([
            "pull",
            &reference_text,
            "--store",
            store.to_str().expect("utf-8 path"),
        ])
        .output()
        .expect("start warrant");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        digest,
        "{}",
        stderr(&out)
    );
    assert_eq!(assert_store_clean(&store).len(), 3);
    assert_eq!(index_digests(&store), vec![digest]);
}
