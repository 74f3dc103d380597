//! A digest-pinned registry reference (`REGISTRY/REPO@sha256:…`) whose artifact is already in
//! the store, with its verdict cached, runs without asking the registry: the store is
//! content-addressed, so the manifest read from it is the one the digest names. A tag is still
//! looked up, every time.

use std::path::PathBuf;

use tests::fixtures::hello_module;
use tests::registry::TestRegistry;

/// A file of the README's example.
fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/hello")
        .join(name)
        .display()
        .to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_pinned_digest_in_the_store_runs_with_the_registry_gone() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let warrant = |args: &[&str]| crate::warrant_in(home.path()).args(args).output().unwrap();
    let module = home.path().join("hello.wasm");
    std::fs::write(&module, hello_module()).unwrap();
    let tagged = registry.reference("pinned/app", "v1");
    let out = warrant(&["push", module.to_str().unwrap(), &tagged]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let digest = text(&out.stdout).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let key = example("example-signer.key");
    let out = warrant(&["sign", &tagged, "--key", &key]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let pinned = format!("{}/pinned/app@{digest}", registry.host());
    let public = example("example-signer.pub");
    let policies = example("policies");
    let run =
        |reference: &str| warrant(&["run", "--key", &public, "--policies", &policies, reference]);
    let first = run(&pinned);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(!first.stdout.is_empty());

    drop(registry);
    // The registry is gone: the pinned digest runs from the store, as verified before.
    let again = run(&pinned);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(again.stdout, first.stdout);
    // A tag is looked up in its registry, which is not there: a network error (121).
    let tag = run(&tagged);
    assert_eq!(tag.status.code(), Some(121), "{}", text(&tag.stderr));
    // The audit log recorded both pinned runs in full.
    let out = warrant(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
