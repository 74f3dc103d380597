//! The embedded example the README runs: `examples/hello/layout` must hold exactly what
//! `examples/hello/hello.wat` compiles to, signed by `examples/hello/example-signer.key`.
//! Regenerate with `WARRANT_BLESS=1 cargo test -p tests --test it example`.

use std::path::PathBuf;

use broker::keys::{read_public_key, read_signing_key};
use registry_client::{ClientOptions, NoProgress, Reference, RegistryClient, Store};

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hello")
}

#[tokio::test]
async fn example_layout_holds_what_hello_wat_compiles_to_signed() {
    let dir = example_dir();
    let wasm = wat::parse_file(dir.join("hello.wat")).unwrap();
    let layout = dir.join("layout");
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let target: Reference = format!("oci-layout:{}:latest", layout.display())
        .parse()
        .unwrap();
    if std::env::var_os("WARRANT_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&layout);
        let pushed = client
            .push_wasm(wasm.clone(), Some("hello.wasm"), &target, &NoProgress)
            .await
            .unwrap();
        let key = read_signing_key(&dir.join("example-signer.key")).unwrap();
        broker::cosign::sign(&client, &target, &pushed.manifest.digest, &key)
            .await
            .unwrap();
        let _ = std::fs::remove_dir_all(layout.join(".warrant"));
    }
    let resolved = client.resolve(&target).await.unwrap();
    assert_eq!(
        resolved.manifest().layer().digest,
        registry_client::Digest::of(&wasm),
        "examples/hello/layout is stale: run with WARRANT_BLESS=1"
    );
    // Signed by the example key, as the README's command requires.
    let public = read_public_key(&dir.join("example-signer.pub")).unwrap();
    let verdict = broker::cosign::verify_signatures(
        &client,
        &target,
        resolved.digest(),
        &broker::verify::Trust::keys(&[public]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(verdict.signers.len(), 1, "{verdict:?}");
    // And it pulls into a store and runs, as the README says.
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let fetched = client.fetch(&resolved, &store, &NoProgress).await.unwrap();
    assert_eq!(std::fs::read(fetched.module_path()).unwrap(), wasm);
}

/// The README's first command, word for word, from the repository root.
#[test]
fn the_readme_first_command_runs_the_example() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run -p broker --bin warrant -- "))
        .expect("the README begins with a `cargo run` command");
    let args: Vec<&str> = line
        .trim_start_matches("cargo run -p broker --bin warrant -- ")
        .split_whitespace()
        .collect();
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrant-it"))
        .args(&args)
        .current_dir(&root)
        .env("WARRANT_HOME", home.path())
        .env("HOME", home.path())
        .env_remove("WARRANT_CONFIG")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        tests::fixtures::HELLO_OUTPUT
    );
}

/// The example's policy tests pass, and its policy explains a denial of anything more.
#[test]
fn the_example_policies_pass_their_tests_and_grant_nothing_else() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let home = tempfile::tempdir().unwrap();
    let warrant = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warrant-it"))
            .args(args)
            .current_dir(&root)
            .env("WARRANT_HOME", home.path())
            .env("HOME", home.path())
            .env_remove("WARRANT_CONFIG")
            .output()
            .unwrap()
    };
    let out = warrant(&["policy", "test", "--policies", "examples/hello/policies"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("policy tests: 5 passed, 0 failed"),
        "{stdout}"
    );

    let out = warrant(&[
        "policy",
        "explain",
        "--key",
        "examples/hello/example-signer.pub",
        "--policies",
        "examples/hello/policies",
        "oci-layout:examples/hello/layout",
        "--env",
        "GREETING=hi",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(123), "{stdout}");
    assert!(
        stdout.contains("allow     permitted by `hello-signed-by-example-key` (examples/hello/policies/hello.cedar:4)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("env.read GREETING")
            && stdout.contains("deny      denied: no policy permits it"),
        "{stdout}"
    );
}

/// `broker/examples/plugin_host.rs`, the embedding example, run as its docs say on the embedded
/// example: it loads the signed plugin through the library and prints its output, and the
/// library wrote every stage to the audit log, which `warrant audit` proves.
#[test]
fn the_plugin_host_example_runs_the_embedded_hello_artifact() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let home = tempfile::tempdir().unwrap();
    let host = |key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_plugin-host"))
            .args([
                "oci-layout:examples/hello/layout",
                "--key",
                key,
                "--policies",
                "examples/hello/policies",
            ])
            .current_dir(&root)
            .env("WARRANT_HOME", home.path())
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let out = host("examples/hello/example-signer.pub");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        tests::fixtures::HELLO_OUTPUT
    );
    let out = crate::warrant_in(home.path())
        .args(["audit", "show"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let kinds: Vec<&str> = shown
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["pull", "verify", "decide", "instantiate", "outcome"],
        "{shown}"
    );

    // Another key: the library refuses before anything runs, and says why.
    let other = tempfile::tempdir().unwrap();
    let key = broker::keys::SigningKey::generate().unwrap();
    let public = other.path().join("other.pub");
    std::fs::write(&public, key.public_key().to_pem()).unwrap();
    let out = host(public.to_str().unwrap());
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no signature of"), "{stderr}");
}

/// One prepared guest, run from several threads at once through the library: each run is its
/// own instance with the same grant, and each is recorded (`outcome`), after the one `pull`,
/// `verify`, `decide` and `instantiate` of its preparation.
#[test]
fn a_prepared_guest_runs_from_many_threads_each_run_recorded() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let home = tempfile::tempdir().unwrap();
    let trust =
        broker::Trust::from_key_files(&[root.join("examples/hello/example-signer.pub")]).unwrap();
    let mut config = broker::Config::new(home.path().join("warrant"), trust);
    config.policies = Some(root.join("examples/hello/policies"));
    let broker = broker::Broker::open(config).unwrap();
    let reference: Reference = format!(
        "oci-layout:{}",
        root.join("examples/hello/layout").display()
    )
    .parse()
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let artifact = runtime
        .block_on(async {
            let resolution = broker.resolve(&reference).await?;
            let verified = broker.verify(resolution).await?;
            broker.fetch(verified).await
        })
        .unwrap();
    let asks = broker::Asks {
        memory_bytes: 16 << 20,
        timeout_ms: 5_000,
        ..broker::Asks::default()
    };
    let guest = broker
        .prepare(broker.decide(artifact, &asks, false).unwrap())
        .unwrap();
    let outputs: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| guest.run(&[]).unwrap()))
            .collect();
        runs.into_iter()
            .map(|run| {
                let finished = run.join().unwrap();
                assert_eq!(finished.outcome, broker::Outcome::Exited(0));
                finished.stdout
            })
            .collect()
    });
    for stdout in outputs {
        assert_eq!(
            String::from_utf8_lossy(&stdout),
            tests::fixtures::HELLO_OUTPUT
        );
    }
    broker.checkpoint().unwrap();
    let log = std::fs::read_to_string(home.path().join("warrant/audit/log.jsonl")).unwrap();
    let kinds: Vec<String> = log
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "pull",
            "verify",
            "decide",
            "instantiate",
            "outcome",
            "outcome",
            "outcome",
            "outcome"
        ]
    );
}
