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
