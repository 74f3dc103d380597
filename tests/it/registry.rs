//! Against a real registry (Debian's `docker-registry` on loopback): push and pull round
//! trips, image layouts, a real OCI tool reading the store, tag moves, referrers.

use std::collections::BTreeMap;
use std::process::Command;

use registry_client::manifest::{
    MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_WASM_LAYER_LEGACY,
};
use registry_client::{
    Attachment, ClientOptions, Descriptor, Digest, Error, NoProgress, Reference, ReferrersSource,
    RegistryClient, Store, WasmKind,
};
use tests::fixtures::{empty_component, hello_module, module_of_size};
use tests::registry::TestRegistry;
use tests::store_check::{assert_store_clean, index_digests};

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default()).unwrap()
}

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_by_tag_and_by_digest_round_trips() {
    let registry = TestRegistry::start();
    let client = client();
    let wasm = module_of_size(300_000, 1);
    let tag = reference(&registry.reference("team/plugin", "1.0.0"));
    let pushed = client
        .push_wasm(wasm.clone(), Some("plugin.wasm"), &tag, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pushed.kind, WasmKind::Module);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let by_tag = client.pull(&tag, &store, &NoProgress).await.unwrap();
    assert_eq!(by_tag.digest(), &pushed.manifest.digest);
    assert_eq!(std::fs::read(by_tag.module_path()).unwrap(), wasm);

    let by_digest = reference(&format!(
        "{}/team/plugin@{}",
        registry.host(),
        pushed.manifest.digest
    ));
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(dir2.path()).unwrap();
    let fetched = client.pull(&by_digest, &store2, &NoProgress).await.unwrap();
    assert_eq!(std::fs::read(fetched.module_path()).unwrap(), wasm);

    // Manifest, config and layer, all verified; the tag pull is named in index.json, the
    // digest pull is listed unnamed.
    assert_eq!(assert_store_clean(store.root()).len(), 3);
    assert_eq!(
        index_digests(store.root()),
        vec![pushed.manifest.digest.to_string()]
    );
    assert_eq!(assert_store_clean(store2.root()).len(), 3);
    assert_eq!(
        index_digests(store2.root()),
        vec![pushed.manifest.digest.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_the_same_bytes_twice_gives_the_same_digest() {
    let registry = TestRegistry::start();
    let client = client();
    let a = client
        .push_wasm(
            hello_module(),
            None,
            &reference(&registry.reference("r/a", "1")),
            &NoProgress,
        )
        .await
        .unwrap();
    let b = client
        .push_wasm(
            hello_module(),
            None,
            &reference(&registry.reference("r/b", "2")),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(a.manifest.digest, b.manifest.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_are_published_as_wasip2() {
    let registry = TestRegistry::start();
    let client = client();
    let target = reference(&registry.reference("r/component", "1"));
    let pushed = client
        .push_wasm(empty_component(), None, &target, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pushed.kind, WasmKind::Component);
    let resolved = client.resolve(&target).await.unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&client.fetch_config(&resolved).await.unwrap()).unwrap();
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["layerDigests"][0], pushed.layer.digest.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_after_resolution_does_not_change_what_is_pulled() {
    let registry = TestRegistry::start();
    let client = client();
    let tag = reference(&registry.reference("team/moving", "stable"));
    let first = module_of_size(5_000, 1);
    let second = module_of_size(5_000, 2);
    client
        .push_wasm(first.clone(), None, &tag, &NoProgress)
        .await
        .unwrap();

    let resolved = client.resolve(&tag).await.unwrap();
    // The tag moves between resolve and fetch (a registry serving one thing to the verifier
    // and another to the runner).
    client
        .push_wasm(second.clone(), None, &tag, &NoProgress)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fetched = client.fetch(&resolved, &store, &NoProgress).await.unwrap();
    assert_eq!(std::fs::read(fetched.module_path()).unwrap(), first);

    // A fresh resolve sees the move.
    let again = client.pull(&tag, &store, &NoProgress).await.unwrap();
    assert_ne!(again.digest(), resolved.digest());
    assert_eq!(std::fs::read(again.module_path()).unwrap(), second);
    // The name now points at the new digest only.
    assert_eq!(
        index_digests(store.root()),
        vec![again.digest().to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_an_oci_layout_directory() {
    let client = client();
    let layout = tempfile::tempdir().unwrap();
    let wasm = module_of_size(70_000, 3);
    let target = reference(&format!("oci-layout:{}:v2", layout.path().display()));
    let pushed = client
        .push_wasm(wasm.clone(), None, &target, &NoProgress)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fetched = client.pull(&target, &store, &NoProgress).await.unwrap();
    assert_eq!(fetched.digest(), &pushed.manifest.digest);
    assert_eq!(std::fs::read(fetched.module_path()).unwrap(), wasm);

    let by_digest = reference(&format!(
        "oci-layout:{}@{}",
        layout.path().display(),
        pushed.manifest.digest
    ));
    let fetched = client.pull(&by_digest, &store, &NoProgress).await.unwrap();
    assert_eq!(fetched.digest(), &pushed.manifest.digest);

    let missing = reference(&format!("oci-layout:{}:nope", layout.path().display()));
    let err = client
        .pull(&missing, &store, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_store_clean(store.root());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_layout_blob_is_refused_and_not_stored() {
    let client = client();
    let layout = tempfile::tempdir().unwrap();
    let target = reference(&format!("oci-layout:{}:v1", layout.path().display()));
    let pushed = client
        .push_wasm(module_of_size(10_000, 4), None, &target, &NoProgress)
        .await
        .unwrap();
    // Flip one byte of the layer in the layout.
    let blob = layout
        .path()
        .join("blobs/sha256")
        .join(pushed.layer.digest.hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[5_000] ^= 1;
    std::fs::write(&blob, bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = client.pull(&target, &store, &NoProgress).await.unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, .. } if *expected == pushed.layer.digest),
        "{err}"
    );
    assert!(err.to_string().contains(&pushed.layer.digest.to_string()));
    assert!(assert_store_clean(store.root()).is_empty());
    assert!(index_digests(store.root()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_layout_blob_is_refused() {
    let client = client();
    let layout = tempfile::tempdir().unwrap();
    let target = reference(&format!("oci-layout:{}:v1", layout.path().display()));
    let pushed = client
        .push_wasm(hello_module(), None, &target, &NoProgress)
        .await
        .unwrap();
    let blob = layout
        .path()
        .join("blobs/sha256")
        .join(pushed.layer.digest.hex());
    let elsewhere = layout.path().join("elsewhere");
    std::fs::rename(&blob, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &blob).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = client.pull(&target, &store, &NoProgress).await.unwrap_err();
    assert!(
        matches!(&err, Error::Malformed { reason, .. } if reason.contains("regular file")),
        "{err}"
    );
    assert!(assert_store_clean(store.root()).is_empty());
}

/// Write a hand-made artifact into a layout: one layer of `layer_type` with the hello bytes.
fn hand_made_layout(config_type: &str, layer_type: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wasm = hello_module();
    let config_bytes = br#"{"architecture":"wasm","os":"wasip1"}"#.to_vec();
    let config = Descriptor::of(config_type, &config_bytes);
    let layer = Descriptor::of(layer_type, &wasm);
    let manifest = registry_client::ImageManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
        artifact_type: None,
        config: config.clone(),
        layers: vec![layer.clone()],
        subject: None,
        annotations: BTreeMap::new(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let md = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, &manifest_bytes);
    store.put_blob(&wasm, &layer, "layer").unwrap();
    store.put_blob(&config_bytes, &config, "config").unwrap();
    store.put_blob(&manifest_bytes, &md, "manifest").unwrap();
    store.add_to_index(&md, Some("v1")).unwrap();
    dir
}

#[tokio::test]
async fn the_legacy_wasm_layer_type_is_accepted() {
    let layout = hand_made_layout(
        "application/vnd.wasm.config.v1+json",
        MEDIA_TYPE_WASM_LAYER_LEGACY,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let target = reference(&format!("oci-layout:{}:v1", layout.path().display()));
    let fetched = client().pull(&target, &store, &NoProgress).await.unwrap();
    assert_eq!(
        std::fs::read(fetched.module_path()).unwrap(),
        hello_module()
    );
}

#[tokio::test]
async fn an_image_config_without_an_entrypoint_is_refused_before_its_layer_is_fetched() {
    // An OCI image config and a tar+gzip layer: a `wasi/wasm` image only if its config names
    // the module; this one names none.
    let layout = hand_made_layout(
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let target = reference(&format!("oci-layout:{}:v1", layout.path().display()));
    let err = client()
        .pull(&target, &store, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Malformed { reason, .. } if reason.contains("no entrypoint")),
        "{err}"
    );
    assert!(assert_store_clean(store.root()).is_empty());
    assert!(!store.layout().has_blob(&Digest::of(&hello_module())));
}

/// A `wasi/wasm` image (as `warrant push --image` makes it) through a registry: pulled, its
/// module read out of its tar layer; a Linux image is refused naming its platform.
#[tokio::test]
async fn a_wasi_wasm_image_pulls_and_a_linux_image_is_refused() {
    let registry = TestRegistry::start();
    let client = client();
    let tag = reference(&registry.reference("images/hello", "v1"));
    let pushed = client
        .push_wasm_image(&hello_module(), "hello.wasm", &tag, false, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pushed.kind, WasmKind::Module);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fetched = client.pull(&tag, &store, &NoProgress).await.unwrap();
    assert_eq!(fetched.kind(), WasmKind::Module);
    let image = fetched.image().expect("an image");
    assert_eq!(image.entrypoint, "/hello.wasm");
    let layer = std::fs::read(fetched.module_path()).unwrap();
    assert_eq!(Digest::of(&layer), fetched.layer().digest);
    assert_eq!(
        image.extract(&layer, 1 << 20).unwrap(),
        hello_module(),
        "the module in the layer is the one pushed"
    );

    // The same shape with a Linux platform.
    let (mut artifact, layer_bytes) =
        registry_client::wasm_image(&hello_module(), "hello.wasm", 1 << 20).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/hello.wasm"]}}"#;
    artifact.manifest.config = Descriptor::of(
        registry_client::manifest::MEDIA_TYPE_OCI_IMAGE_CONFIG,
        config,
    );
    let layout = tempfile::tempdir().unwrap();
    let l = Store::open(layout.path()).unwrap();
    l.put_blob(&layer_bytes, &artifact.layer, "layer").unwrap();
    l.put_blob(config, &artifact.manifest.config, "config")
        .unwrap();
    let manifest_bytes = serde_json::to_vec(&artifact.manifest).unwrap();
    let md = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, &manifest_bytes);
    l.put_blob(&manifest_bytes, &md, "manifest").unwrap();
    l.add_to_index(&md, Some("v1")).unwrap();
    let target = reference(&format!("oci-layout:{}:v1", layout.path().display()));
    let other = tempfile::tempdir().unwrap();
    let store = Store::open(other.path()).unwrap();
    let err = client.pull(&target, &store, &NoProgress).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedMediaType { media_type, .. } if media_type == "linux/amd64"),
        "{err}"
    );
}

/// Run skopeo with `args`, which must succeed; its standard output.
fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A multi-platform image (as `warrant push --image --index` and multi-platform builds
/// publish it): the tag names an OCI image index; resolving it reads the `wasi/wasm` entry's
/// manifest by digest, the index's digest stays the identity, the module comes out of the
/// entry's layer, and the stored index and entry resolve again by the index's digest with no
/// registry. skopeo reads the index as an image index and copies it, whole, into an image
/// layout that Warrant pulls to the same digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_index_resolves_to_its_wasi_wasm_entry_and_skopeo_copies_it() {
    let registry = TestRegistry::start();
    let client = client();
    let tag = reference(&registry.reference("images/multi", "v1"));
    let pushed = client
        .push_wasm_image(&hello_module(), "hello.wasm", &tag, true, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pushed.manifest.media_type, MEDIA_TYPE_OCI_INDEX);
    let entry = pushed.index_entry.clone().expect("an index entry");

    let resolved = client.resolve(&tag).await.unwrap();
    assert_eq!(resolved.digest(), &pushed.manifest.digest);
    assert_eq!(resolved.manifest_digest(), &entry.digest);
    let index = resolved.index().expect("resolved through an index");
    assert_eq!(index.platform(), "wasi/wasm");
    assert_eq!(Digest::of(index.bytes()), pushed.manifest.digest);
    assert_eq!(resolved.descriptor().media_type, MEDIA_TYPE_OCI_INDEX);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fetched = client.fetch(&resolved, &store, &NoProgress).await.unwrap();
    assert_eq!(fetched.digest(), &pushed.manifest.digest);
    let layer = std::fs::read(fetched.module_path()).unwrap();
    let image = fetched.image().expect("an image");
    assert_eq!(image.extract(&layer, 1 << 20).unwrap(), hello_module());
    // The store's `index.json` names the index by the tag, and both documents are stored.
    assert_eq!(
        index_digests(store.root()),
        vec![pushed.manifest.digest.to_string()]
    );
    assert!(store.layout().has_blob(&entry.digest));
    let pinned = reference(&format!(
        "{}/images/multi@{}",
        registry.host(),
        pushed.manifest.digest
    ));
    let again = registry_client::Resolved::from_store(&store, &pinned)
        .unwrap()
        .expect("resolved from the store");
    assert_eq!(again.manifest_digest(), &entry.digest);
    assert!(again.index().is_some());

    // skopeo reads the tag as an image index, byte for byte what was pushed…
    let remote = format!("docker://{}", registry.reference("images/multi", "v1"));
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &remote]);
    assert_eq!(Digest::of(&raw), pushed.manifest.digest);
    // …and copies every platform into an image layout, which pulls to the same digest.
    let copy = |dir: &std::path::Path, preserve: bool| {
        let target = format!("oci:{}:v1", dir.display());
        let mut args = vec!["copy", "--quiet", "--all", "--src-tls-verify=false"];
        if preserve {
            args.push("--preserve-digests");
        }
        args.extend_from_slice(&[&remote, &target]);
        skopeo(&args);
        reference(&format!("oci-layout:{}:v1", dir.display()))
    };
    let preserved = tempfile::tempdir().unwrap();
    let layout = copy(preserved.path(), true);
    let other = tempfile::tempdir().unwrap();
    let store = Store::open(other.path()).unwrap();
    let fetched = client.pull(&layout, &store, &NoProgress).await.unwrap();
    assert_eq!(fetched.digest(), &pushed.manifest.digest);
    assert_eq!(fetched.resolved().manifest_digest(), &entry.digest);

    // Without `--preserve-digests` skopeo compresses the layer, so it writes a manifest and an
    // index of its own: a multi-platform image Warrant did not write, which pulls to the same
    // module.
    let recompressed = tempfile::tempdir().unwrap();
    let layout = copy(recompressed.path(), false);
    let other = tempfile::tempdir().unwrap();
    let store = Store::open(other.path()).unwrap();
    let fetched = client.pull(&layout, &store, &NoProgress).await.unwrap();
    assert_ne!(fetched.digest(), &pushed.manifest.digest);
    assert!(fetched.resolved().index().is_some());
    let image = fetched.image().expect("an image");
    assert_eq!(
        image.compression,
        registry_client::image_layer::Compression::Gzip
    );
    let layer = std::fs::read(fetched.module_path()).unwrap();
    assert_eq!(image.extract(&layer, 1 << 20).unwrap(), hello_module());
}

/// Docker's schema 2, as `docker push` writes it and skopeo does with `--format v2s2`: a
/// single image (Docker manifest, config and uncompressed layer types) and a manifest list of
/// Docker manifests, each converted by skopeo from an image `push --image` published, pull to
/// the same module. The stored index names each document by its own media type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_schema_2_images_and_manifest_lists_skopeo_writes_pull() {
    use registry_client::manifest::{
        MEDIA_TYPE_DOCKER_IMAGE_CONFIG, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    };
    let registry = TestRegistry::start();
    let client = client();
    for (repo, in_index) in [("images/single", false), ("images/multi", true)] {
        let tag = reference(&registry.reference(repo, "v1"));
        let pushed = client
            .push_wasm_image(&hello_module(), "hello.wasm", &tag, in_index, &NoProgress)
            .await
            .unwrap();
        let source = format!("docker://{}", registry.reference(repo, "v1"));
        let target = format!("docker://{}", registry.reference(repo, "docker"));
        let mut args = vec![
            "copy",
            "--quiet",
            "--format",
            "v2s2",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ];
        if in_index {
            args.push("--all");
        }
        args.extend_from_slice(&[&source, &target]);
        skopeo(&args);

        let docker = reference(&registry.reference(repo, "docker"));
        let resolved = client.resolve(&docker).await.unwrap();
        assert_ne!(resolved.digest(), &pushed.manifest.digest, "{repo}");
        let manifest = resolved.manifest().manifest();
        assert_eq!(
            manifest.media_type.as_deref(),
            Some(MEDIA_TYPE_DOCKER_MANIFEST)
        );
        assert_eq!(manifest.config.media_type, MEDIA_TYPE_DOCKER_IMAGE_CONFIG);
        assert_eq!(
            resolved.descriptor().media_type,
            if in_index {
                MEDIA_TYPE_DOCKER_MANIFEST_LIST
            } else {
                MEDIA_TYPE_DOCKER_MANIFEST
            }
        );
        assert_eq!(resolved.index().is_some(), in_index);

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fetched = client.fetch(&resolved, &store, &NoProgress).await.unwrap();
        let layer = std::fs::read(fetched.module_path()).unwrap();
        let image = fetched.image().expect("an image");
        assert_eq!(image.extract(&layer, 1 << 20).unwrap(), hello_module());
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["mediaType"],
            resolved.descriptor().media_type.as_str()
        );
    }
}

/// An index entry to write: the manifest's bytes, its platform (os, architecture) and the
/// media type the index gives it.
type Entry<'a> = (&'a [u8], Option<(&'a str, &'a str)>, &'a str);

/// Write `entries` and an index listing them into a new image layout tagged `v1`; returns the
/// layout and its reference.
fn layout_with_index(entries: &[Entry<'_>]) -> (tempfile::TempDir, Reference) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Store::open(dir.path()).unwrap();
    let mut index = registry_client::ImageIndex::empty();
    for (bytes, platform, media_type) in entries {
        let mut d = Descriptor::of(media_type, bytes);
        layout.put_blob(bytes, &d, "manifest").unwrap();
        d.platform = platform.map(|(os, architecture)| registry_client::Platform {
            architecture: architecture.into(),
            os: os.into(),
        });
        index.manifests.push(d);
    }
    let bytes = serde_json::to_vec(&index).unwrap();
    let d = Descriptor::of(MEDIA_TYPE_OCI_INDEX, &bytes);
    layout.put_blob(&bytes, &d, "index").unwrap();
    layout.add_to_index(&d, Some("v1")).unwrap();
    let r = reference(&format!("oci-layout:{}:v1", dir.path().display()));
    (dir, r)
}

/// Which entry of an index runs, and which indexes are refused, each by its exact kind: the
/// first Wasm entry in the index's order (as containerd's platform matcher picks); an index
/// with no Wasm entry is refused naming the platforms it has; a Wasm entry that is itself an
/// index (not followed) or whose size is not its bytes' is refused.
#[tokio::test]
async fn an_image_index_runs_its_first_wasm_entry_and_refuses_the_rest_by_name() {
    let client = client();
    let image = |wasm: &[u8]| {
        let (artifact, layer) = registry_client::wasm_image(wasm, "app.wasm", 1 << 20).unwrap();
        (artifact, layer)
    };
    let (first, first_layer) = image(&hello_module());
    let (second, _) = image(&module_of_size(2_000, 9));
    let linux = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

    // linux/amd64, then wasip2/wasm, then wasi/wasm: the wasip2 entry.
    let (dir, r) = layout_with_index(&[
        (linux, Some(("linux", "amd64")), MEDIA_TYPE_OCI_MANIFEST),
        (
            &first.manifest_bytes,
            Some(("wasip2", "wasm")),
            MEDIA_TYPE_OCI_MANIFEST,
        ),
        (
            &second.manifest_bytes,
            Some(("wasi", "wasm")),
            MEDIA_TYPE_OCI_MANIFEST,
        ),
    ]);
    let resolved = client.resolve(&r).await.unwrap();
    assert_eq!(
        resolved.manifest_digest(),
        &Digest::of(&first.manifest_bytes)
    );
    assert_eq!(resolved.index().unwrap().platform(), "wasip2/wasm");
    let layout = Store::open(dir.path()).unwrap();
    layout
        .put_blob(&first_layer, &first.layer, "layer")
        .unwrap();
    layout
        .put_blob(&first.config_bytes, &first.manifest.config, "config")
        .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let fetched = client.fetch(&resolved, &store, &NoProgress).await.unwrap();
    assert_eq!(fetched.layer().digest, first.layer.digest);

    // No Wasm entry (a Linux image and a build attestation): refused naming both platforms.
    let (_dir, r) = layout_with_index(&[
        (linux, Some(("linux", "amd64")), MEDIA_TYPE_OCI_MANIFEST),
        (linux, Some(("unknown", "unknown")), MEDIA_TYPE_OCI_MANIFEST),
        (&first.manifest_bytes, None, MEDIA_TYPE_OCI_MANIFEST),
    ]);
    let err = client.resolve(&r).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedMediaType { media_type, .. }
            if media_type == "linux/amd64, unknown/unknown, no platform"),
        "{err}"
    );
    assert!(err.to_string().contains("wasi/wasm"), "{err}");

    // The Wasm entry is an index: not followed.
    let (_dir, r) = layout_with_index(&[(
        &first.manifest_bytes,
        Some(("wasi", "wasm")),
        MEDIA_TYPE_OCI_INDEX,
    )]);
    let err = client.resolve(&r).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedMediaType { media_type, .. } if media_type == MEDIA_TYPE_OCI_INDEX),
        "{err}"
    );

    // The entry's declared size is not its bytes'.
    let dir = tempfile::tempdir().unwrap();
    let layout = Store::open(dir.path()).unwrap();
    let mut entry = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, &first.manifest_bytes);
    layout
        .put_blob(&first.manifest_bytes, &entry, "manifest")
        .unwrap();
    entry.size += 1;
    entry.platform = Some(registry_client::Platform::wasi_wasm());
    let mut index = registry_client::ImageIndex::empty();
    index.manifests.push(entry);
    let bytes = serde_json::to_vec(&index).unwrap();
    let d = Descriptor::of(MEDIA_TYPE_OCI_INDEX, &bytes);
    layout.put_blob(&bytes, &d, "index").unwrap();
    layout.add_to_index(&d, Some("v1")).unwrap();
    let r = reference(&format!("oci-layout:{}:v1", dir.path().display()));
    let err = client.resolve(&r).await.unwrap_err();
    assert!(matches!(&err, Error::SizeMismatch { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_read_back_by_skopeo() {
    assert!(
        std::path::Path::new("/usr/bin/skopeo").exists(),
        "skopeo is missing: `apt-get install -y skopeo` (scripts/test.sh does)"
    );
    let registry = TestRegistry::start();
    let client = client();
    let wasm = module_of_size(123_456, 5);
    let tag = reference(&registry.reference("team/skopeo", "v1"));
    client
        .push_wasm(wasm.clone(), None, &tag, &NoProgress)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fetched = client.pull(&tag, &store, &NoProgress).await.unwrap();

    // skopeo finds the manifest by its ref name and returns our exact bytes…
    let name = format!("oci:{}:{}", dir.path().display(), tag);
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, fetched.resolved().manifest_bytes());

    // …and copies every blob out, checking each digest as it goes.
    let copy = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            &name,
            &format!("dir:{}", copy.path().display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(copy.path().join(fetched.layer().digest.hex())).unwrap(),
        wasm
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_fall_back_to_the_tag_schema_and_list_attachments() {
    let registry = TestRegistry::start();
    let client = client();
    let tag = reference(&registry.reference("team/signed", "v1"));
    let pushed = client
        .push_wasm(hello_module(), None, &tag, &NoProgress)
        .await
        .unwrap();
    let Reference::Registry(repo) = &tag else {
        unreachable!()
    };

    let none = client
        .referrers(repo, &pushed.manifest.digest)
        .await
        .unwrap();
    assert!(none.manifests.is_empty());
    assert_eq!(none.source, ReferrersSource::TagSchema);

    let mut attached = Vec::new();
    for (i, kind) in [
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/spdx+json",
    ]
    .into_iter()
    .enumerate()
    {
        let d = client
            .attach(
                repo,
                &pushed.manifest,
                Attachment {
                    artifact_type: kind.into(),
                    layers: vec![(kind.into(), format!("{{\"n\":{i}}}").into_bytes())],
                    annotations: BTreeMap::from([("n".to_owned(), i.to_string())]),
                },
            )
            .await
            .unwrap();
        attached.push(d);
    }
    let listed = client
        .referrers(repo, &pushed.manifest.digest)
        .await
        .unwrap();
    assert_eq!(listed.source, ReferrersSource::TagSchema);
    assert_eq!(listed.manifests, attached);
    assert_eq!(
        listed.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.dev.sigstore.bundle.v0.3+json")
    );

    // The referrer itself is a manifest with `subject` set to the artifact.
    let at = reference(&format!(
        "{}/team/signed@{}",
        registry.host(),
        attached[0].digest
    ));
    let err = client.resolve(&at).await.unwrap_err();
    // A referrer is not a Wasm artifact: refused by name, not misread.
    assert!(
        matches!(
            err,
            Error::UnsupportedMediaType { .. } | Error::Malformed { .. }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_is_not_found() {
    let registry = TestRegistry::start();
    let err = client()
        .resolve(&reference(&registry.reference("team/none", "v9")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_over_the_limit_is_refused_before_download() {
    let registry = TestRegistry::start();
    let tag = reference(&registry.reference("team/big", "v1"));
    client()
        .push_wasm(module_of_size(200_000, 6), None, &tag, &NoProgress)
        .await
        .unwrap();
    let small = RegistryClient::new(ClientOptions {
        max_module_bytes: 100_000,
        ..ClientOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = small.pull(&tag, &store, &NoProgress).await.unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 100_000, .. }),
        "{err}"
    );
    assert!(assert_store_clean(store.root()).is_empty());
}
