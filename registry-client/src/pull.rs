//! The pipeline's first two stages: **resolve** a reference to a manifest digest (once), then
//! **fetch** exactly what that manifest names into the store.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::Error;
use crate::layout::Layout;
use crate::limits::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::manifest::{
    ANNOTATION_TITLE, Descriptor, Form, ImageConfig, ImageIndex, ImageManifest, MEDIA_TYPE_EMPTY,
    MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_WASM_CONFIG, MEDIA_TYPE_WASM_LAYER,
    Platform, TopLevel, WasmConfig, WasmKind, WasmManifest, is_index_type, is_manifest_type,
};
use crate::reference::{Reference, RegistryRef, Selector};
use crate::remote::RegistryClient;
use crate::store::{Ingest, Store};

/// Size of the read buffer when copying a blob out of a layout.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// Reports progress of a long transfer. Every method has a no-op default.
pub trait Progress: Sync {
    /// A transfer of `total` bytes begins.
    fn begin(&self, _what: &str, _total: u64) {}
    /// `bytes` more arrived.
    fn advance(&self, _bytes: u64) {}
    /// The transfer ended (successfully or not).
    fn end(&self) {}
}

/// Progress that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// A reference resolved to one digest. Only [`RegistryClient::resolve`] and
/// [`Resolved::from_store`] make one, and every later step takes its digests from here: the tag
/// is never looked up again.
///
/// The digest is what the reference named: an image manifest's, or an image index's when the
/// reference names a multi-platform image. That digest is the artifact's identity from here
/// on — what signatures and attestations must name, what policies see and the audit log
/// records — and it pins everything below it: the index's bytes hash to it, and they name the
/// Wasm platform's manifest by digest ([`ImageIndex::wasm_entry`]).
#[derive(Clone, Debug)]
pub struct Resolved {
    reference: Reference,
    digest: Digest,
    index: Option<ResolvedIndex>,
    manifest_digest: Digest,
    manifest_bytes: Vec<u8>,
    wasm: WasmManifest,
}

/// The image index a reference named, and the entry chosen from it.
#[derive(Clone, Debug)]
pub struct ResolvedIndex {
    bytes: Vec<u8>,
    media_type: String,
    entry: Descriptor,
}

impl ResolvedIndex {
    /// The index's exact bytes (they hash to [`Resolved::digest`]).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The entry chosen: the first whose platform is Wasm.
    pub fn entry(&self) -> &Descriptor {
        &self.entry
    }

    /// The chosen entry's platform (`wasi/wasm`).
    pub fn platform(&self) -> String {
        self.entry
            .platform
            .as_ref()
            .map_or_else(String::new, ToString::to_string)
    }
}

impl ResolvedIndex {
    /// The chosen entry's manifest, read from `layout` (named `place` in errors) and checked
    /// against the entry's digest and size.
    fn read_entry(&self, layout: &Layout, place: &str) -> Result<Vec<u8>, Error> {
        let what = format!("manifest `{}` in {place}", self.entry.digest);
        let bytes = layout.read_blob(&self.entry.digest, MAX_MANIFEST_BYTES, &what)?;
        check_entry(&bytes, &self.entry, &what)?;
        Ok(bytes)
    }
}

/// A top-level document read: a manifest, or an index and the entry it names.
enum Top {
    Manifest(Vec<u8>),
    Index(ResolvedIndex),
}

impl Top {
    /// Read `bytes` (which the caller checked hash to their digest). `what` names them.
    fn read(bytes: Vec<u8>, what: &str) -> Result<Self, Error> {
        Ok(match TopLevel::of(&bytes)? {
            TopLevel::Manifest => Self::Manifest(bytes),
            TopLevel::Index => {
                let index = ImageIndex::parse(&bytes, what)?;
                let entry = index.wasm_entry(what)?.clone();
                let media_type = index
                    .media_type
                    .unwrap_or_else(|| MEDIA_TYPE_OCI_INDEX.to_owned());
                Self::Index(ResolvedIndex {
                    bytes,
                    media_type,
                    entry,
                })
            }
        })
    }
}

/// Check that `bytes`, read for `entry` of an index, are that entry: its size and digest.
fn check_entry(bytes: &[u8], entry: &Descriptor, what: &str) -> Result<(), Error> {
    entry.digest.check(bytes, what)?;
    if entry.size != bytes.len() as u64 {
        return Err(Error::SizeMismatch {
            what: what.to_owned(),
            declared: entry.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(())
}

impl Resolved {
    /// Put the pieces together once the manifest's bytes are read and checked.
    fn assemble(
        reference: Reference,
        digest: Digest,
        index: Option<ResolvedIndex>,
        manifest_bytes: Vec<u8>,
    ) -> Result<Self, Error> {
        let wasm = WasmManifest::new(ImageManifest::parse(&manifest_bytes)?)?;
        let manifest_digest = match &index {
            Some(index) => index.entry.digest.clone(),
            None => digest.clone(),
        };
        Ok(Self {
            reference,
            digest,
            index,
            manifest_digest,
            manifest_bytes,
            wasm,
        })
    }

    /// `reference` resolved from `store` alone, with no registry asked, when it pins a digest
    /// (`REGISTRY/REPO@sha256:…`) whose manifest (and, for an index, whose chosen entry's
    /// manifest) the store holds: the store is content-addressed and the bytes read are
    /// checked against the pinned digest, so they are the bytes the registry would serve for
    /// it. `None` for a tag (looked up in its registry, once), a layout, or a digest the store
    /// does not hold.
    pub fn from_store(store: &Store, reference: &Reference) -> Result<Option<Self>, Error> {
        let Reference::Registry(r) = reference else {
            return Ok(None);
        };
        let Selector::Digest(digest) = r.selector() else {
            return Ok(None);
        };
        if !store.layout().has_blob(digest) {
            return Ok(None);
        }
        let what = format!("stored manifest `{digest}`");
        let bytes = store
            .layout()
            .read_blob(digest, MAX_MANIFEST_BYTES, &what)?;
        let (index, manifest_bytes) = match Top::read(bytes, &what)? {
            Top::Manifest(bytes) => (None, bytes),
            Top::Index(index) => {
                if !store.layout().has_blob(&index.entry.digest) {
                    return Ok(None);
                }
                let bytes = index.read_entry(store.layout(), "the store")?;
                (Some(index), bytes)
            }
        };
        Self::assemble(reference.clone(), digest.clone(), index, manifest_bytes).map(Some)
    }

    /// The reference resolved: as given, but an `oci-layout:` directory by its canonical path.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The digest the reference named (an index's for a multi-platform image): the identity
    /// of the artifact from here on.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The image index the reference named, if it named one.
    pub fn index(&self) -> Option<&ResolvedIndex> {
        self.index.as_ref()
    }

    /// The Wasm manifest's digest: [`Self::digest`], or the chosen entry's for an index.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The manifest's exact bytes (they hash to [`Self::manifest_digest`]).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The checked Wasm manifest.
    pub fn manifest(&self) -> &WasmManifest {
        &self.wasm
    }

    /// A descriptor of what the reference named (the subject signatures refer to): the
    /// manifest, or the index.
    pub fn descriptor(&self) -> Descriptor {
        match &self.index {
            Some(index) => Descriptor::of(&index.media_type, &index.bytes),
            None => self.manifest_descriptor(),
        }
    }

    /// A descriptor of the Wasm manifest (OCI, or Docker's schema 2, as it says it is).
    pub fn manifest_descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self
                .wasm
                .manifest()
                .media_type
                .clone()
                .unwrap_or_else(|| MEDIA_TYPE_OCI_MANIFEST.to_owned()),
            digest: self.manifest_digest.clone(),
            size: self.manifest_bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// An artifact whose manifest, config and Wasm layer are in the store, each digest-checked.
#[derive(Clone, Debug)]
pub struct Fetched {
    resolved: Resolved,
    kind: WasmKind,
    module_path: PathBuf,
    image: Option<ImageModule>,
}

/// Where a `wasi/wasm` image's module is: the file its config's entrypoint names, inside its
/// one tar layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageModule {
    /// The entrypoint as the config gives it (`/app.wasm`).
    pub entrypoint: String,
    /// The layer's compression.
    pub compression: crate::image_layer::Compression,
}

impl ImageModule {
    /// The module's bytes, extracted from `layer` — the layer blob's bytes, which the caller
    /// has checked against the layer digest — with the bounded, traversal-proof reader.
    pub fn extract(&self, layer: &[u8], max_module_bytes: u64) -> Result<Vec<u8>, Error> {
        crate::image_layer::extract(
            layer,
            self.compression,
            &self.entrypoint,
            crate::image_layer::Limits {
                max_file_bytes: max_module_bytes,
                max_layer_bytes: crate::image_layer::MAX_UNPACKED_LAYER_BYTES,
            },
        )
    }
}

impl Fetched {
    /// What was resolved.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// The digest resolved ([`Resolved::digest`]: the index's for a multi-platform image).
    pub fn digest(&self) -> &Digest {
        &self.resolved.digest
    }

    /// The Wasm layer's descriptor.
    pub fn layer(&self) -> &Descriptor {
        self.resolved.wasm.layer()
    }

    /// Module or component, read from the layer's bytes.
    pub fn kind(&self) -> WasmKind {
        self.kind
    }

    /// Where the layer's bytes are in the store (for an image, the tar holding the module).
    pub fn module_path(&self) -> &std::path::Path {
        &self.module_path
    }

    /// For a `wasi/wasm` image, where in its layer the module is; `None` for a Wasm artifact,
    /// whose layer is the module.
    pub fn image(&self) -> Option<&ImageModule> {
        self.image.as_ref()
    }
}

/// A Wasm artifact that was published.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// The descriptor of what the tag names: the manifest, or the image index.
    pub manifest: Descriptor,
    /// When the tag names an image index, its one entry: the image manifest.
    pub index_entry: Option<Descriptor>,
    /// The layer's descriptor.
    pub layer: Descriptor,
    /// Module or component.
    pub kind: WasmKind,
}

/// Where a referrers list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferrersSource {
    /// The OCI 1.1 referrers API.
    Api,
    /// The referrers tag schema (`sha256-<hex>` index), for registries without the API.
    TagSchema,
}

/// The manifests that declare a digest as their subject.
#[derive(Clone, Debug)]
pub struct Referrers {
    /// The descriptors listed.
    pub manifests: Vec<Descriptor>,
    /// How they were found.
    pub source: ReferrersSource,
}

impl RegistryClient {
    /// Resolve `reference` to one digest and check that what it names is a Wasm artifact, a
    /// `wasi/wasm` image, or an image index listing one (whose Wasm entry's manifest is read
    /// by digest here). A tag is looked up here and never again.
    ///
    /// An `oci-layout:` reference's directory is resolved here, once, to its canonical path:
    /// the [`Resolved`] names the layout by it, so everything after (reading, the repository
    /// policies see, cache keys) uses one name whatever the spelling.
    pub async fn resolve(&self, reference: &Reference) -> Result<Resolved, Error> {
        let canonical;
        let reference = match reference {
            Reference::Layout(l) => {
                canonical = Reference::Layout(l.canonical()?);
                &canonical
            }
            Reference::Registry(_) => reference,
        };
        let (index, manifest_bytes, digest) = match reference {
            Reference::Registry(r) => {
                let what = format!("resolving `{r}`");
                let (bytes, digest) = self
                    .with_deadline(&what, self.get_top(r, &format!("manifest `{r}`")))
                    .await?;
                match Top::read(bytes, &format!("image index `{r}`"))? {
                    Top::Manifest(bytes) => (None, bytes, digest),
                    Top::Index(index) => {
                        let at = r.with_selector(Selector::Digest(index.entry.digest.clone()));
                        let what = format!("manifest `{at}`");
                        let (bytes, _) = self
                            .with_deadline(&format!("resolving `{at}`"), self.get_top(&at, &what))
                            .await?;
                        check_entry(&bytes, &index.entry, &what)?;
                        (Some(index), bytes, digest)
                    }
                }
            }
            Reference::Layout(l) => {
                let layout = Layout::open(l.path())?;
                let descriptor = match l.selector() {
                    Selector::Tag(_) => layout.find(l.selector())?,
                    Selector::Digest(d) => layout.find(l.selector()).unwrap_or(Descriptor {
                        media_type: MEDIA_TYPE_OCI_MANIFEST.to_owned(),
                        digest: d.clone(),
                        size: 0,
                        artifact_type: None,
                        annotations: BTreeMap::new(),
                        platform: None,
                    }),
                };
                if !is_manifest_type(&descriptor.media_type)
                    && !is_index_type(&descriptor.media_type)
                {
                    return Err(Error::UnsupportedMediaType {
                        what: format!("manifest `{}` in `{l}`", descriptor.digest),
                        media_type: descriptor.media_type,
                        expected: format!("`{MEDIA_TYPE_OCI_MANIFEST}`"),
                    });
                }
                let what = format!("manifest `{}`", descriptor.digest);
                let bytes = layout.read_blob(&descriptor.digest, MAX_MANIFEST_BYTES, &what)?;
                if descriptor.size != 0 && descriptor.size != bytes.len() as u64 {
                    return Err(Error::SizeMismatch {
                        what,
                        declared: descriptor.size,
                        actual: bytes.len() as u64,
                    });
                }
                match Top::read(
                    bytes,
                    &format!("image index `{}` in `{l}`", descriptor.digest),
                )? {
                    Top::Manifest(bytes) => (None, bytes, descriptor.digest),
                    Top::Index(index) => {
                        let bytes = index.read_entry(&layout, &format!("`{l}`"))?;
                        (Some(index), bytes, descriptor.digest)
                    }
                }
            }
        };
        Resolved::assemble(reference.clone(), digest, index, manifest_bytes)
    }

    /// GET the manifest or index at `r`, checked against its digest when `r` pins one, and
    /// refused by media type when the registry declares anything else.
    async fn get_top(&self, r: &RegistryRef, what: &str) -> Result<(Vec<u8>, Digest), Error> {
        let (bytes, digest, content_type) = self.get_manifest_bytes(r, ACCEPT_MANIFESTS).await?;
        if let Some(ct) = content_type.as_deref()
            && !is_manifest_type(ct)
            && !is_index_type(ct)
            && ct != "application/json"
        {
            return Err(Error::UnsupportedMediaType {
                what: what.to_owned(),
                media_type: crate::remote::sanitise(ct),
                expected: format!("`{MEDIA_TYPE_OCI_MANIFEST}` or `{MEDIA_TYPE_OCI_INDEX}`"),
            });
        }
        Ok((bytes, digest))
    }

    /// Fetch what `resolved` names into `store`: the Wasm layer (streamed into quarantine,
    /// bounded by its descriptor and the client's module limit, renamed into the store only
    /// after its digest matched), the config, then the manifest, then the `index.json` entry.
    pub async fn fetch(
        &self,
        resolved: &Resolved,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<Fetched, Error> {
        // INVARIANT (digest binding): everything fetched here is named by a digest taken from
        // `resolved`, whose manifest bytes hash to `resolved.manifest_digest` (which is
        // `resolved.digest`, or named by the index whose bytes hash to it).
        let layer = resolved.wasm.layer();
        let what = format!("layer `{}`", layer.digest);
        if layer.size > self.options.max_module_bytes {
            return Err(Error::TooLarge {
                what,
                limit: self.options.max_module_bytes,
            });
        }
        let form = resolved.wasm.form();
        // An image's config says what it is (platform, entrypoint): read and checked before
        // its layer is fetched, so a Linux image costs no layer download.
        let config = resolved.wasm.config();
        let image_config = match form {
            Form::Image(compression) => {
                let bytes = self.fetch_config(resolved).await?;
                let (_, entrypoint) = ImageConfig::parse_wasm(&bytes)?;
                Some((
                    bytes,
                    ImageModule {
                        entrypoint,
                        compression,
                    },
                ))
            }
            Form::Artifact => None,
        };
        let kind = match cached_kind(store, layer, form)? {
            Some(kind) => kind,
            None => {
                self.with_deadline(
                    &format!("fetching {what}"),
                    self.fetch_layer(resolved, store, progress),
                )
                .await?
            }
        };

        let config_bytes = match &image_config {
            Some((bytes, _)) => Some(bytes.clone()),
            None if !store.layout().has_blob(&config.digest) => {
                Some(self.fetch_config(resolved).await?)
            }
            None => None,
        };
        if let Some(bytes) = config_bytes
            && !store.layout().has_blob(&config.digest)
        {
            store.put_blob(&bytes, config, &format!("config `{}`", config.digest))?;
        }
        let (kind, image) = match (image_config, kind) {
            (None, LayerKind::Wasm(kind)) => (kind, None),
            (Some((_, image)), LayerKind::Tar) => {
                // The layer is read back from the store checked against its digest; the
                // module is the file the (digest-checked) config's entrypoint names in it.
                let layer_bytes = store.layout().read_blob(
                    &layer.digest,
                    self.options.max_module_bytes,
                    &format!("layer `{}`", layer.digest),
                )?;
                let module = image.extract(&layer_bytes, self.options.max_module_bytes)?;
                let kind = WasmKind::detect(&module).ok_or_else(|| Error::Malformed {
                    what: format!("`{}` in layer `{}`", image.entrypoint, layer.digest),
                    reason: "not a WebAssembly binary (bad preamble)".into(),
                })?;
                (kind, Some(image))
            }
            (None, LayerKind::Tar) | (Some(_), LayerKind::Wasm(_)) => {
                return Err(Error::Malformed {
                    what,
                    reason: "the layer is not of the kind its manifest says".into(),
                });
            }
        };

        store.put_blob(
            &resolved.manifest_bytes,
            &resolved.manifest_descriptor(),
            &format!("manifest `{}`", resolved.manifest_digest),
        )?;
        // The index goes in last: a stored index's entry is always in the store too.
        let descriptor = resolved.descriptor();
        if let Some(index) = &resolved.index {
            store.put_blob(
                &index.bytes,
                &descriptor,
                &format!("image index `{}`", resolved.digest),
            )?;
        }
        let name = match &resolved.reference {
            Reference::Registry(r) if matches!(r.selector(), Selector::Tag(_)) => {
                Some(r.to_string())
            }
            _ => None,
        };
        store.add_to_index(&descriptor, name.as_deref())?;
        Ok(Fetched {
            resolved: resolved.clone(),
            kind,
            module_path: store.layout().blob_path(&layer.digest),
            image,
        })
    }

    /// Resolve, then fetch.
    pub async fn pull(
        &self,
        reference: &Reference,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<Fetched, Error> {
        let resolved = self.resolve(reference).await?;
        self.fetch(&resolved, store, progress).await
    }

    async fn fetch_layer(
        &self,
        resolved: &Resolved,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<LayerKind, Error> {
        let layer = resolved.wasm.layer();
        let form = resolved.wasm.form();
        let what = format!("layer `{}`", layer.digest);
        progress.begin(&what, layer.size);
        let result = match &resolved.reference {
            Reference::Registry(r) => {
                self.fetch_remote_layer(r, layer, form, store, progress, &what)
                    .await
            }
            Reference::Layout(l) => copy_layout_layer(
                &Layout::open(l.path())?,
                layer,
                form,
                store,
                progress,
                &what,
            ),
        };
        progress.end();
        result
    }

    async fn fetch_remote_layer(
        &self,
        r: &RegistryRef,
        layer: &Descriptor,
        form: Form,
        store: &Store,
        progress: &dyn Progress,
        what: &str,
    ) -> Result<LayerKind, Error> {
        // One attempt budget for the whole download: request retries inside `send` and
        // restarts after a cut body draw from the same count.
        let mut attempt = 0u32;
        loop {
            let mut response = self
                .get_blob_response(r, &layer.digest, what, &mut attempt)
                .await?;
            if let Some(len) = response.content_length()
                && len != layer.size
            {
                return Err(Error::SizeMismatch {
                    what: what.to_owned(),
                    declared: layer.size,
                    actual: len,
                });
            }
            let ingest = store.ingest(what, layer.size)?;
            // Receive on this task; hash and write on a blocking thread. The bounded channel
            // keeps memory constant and lets hashing overlap with the network.
            let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(PIPELINE_CHUNKS);
            let writer = tokio::task::spawn_blocking(move || write_chunks(ingest, rx));
            let received = loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let len = chunk.len() as u64;
                        if tx.send(chunk).await.is_err() {
                            // The writer stopped early: its error is the one to report.
                            break Ok(());
                        }
                        progress.advance(len);
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(self.map_transport(&e, r, what)),
                }
            };
            drop(tx);
            let (ingest, prefix) = writer.await.map_err(|e| Error::Io {
                path: store.quarantine_dir().to_owned(),
                source: std::io::Error::other(e),
            })??;
            match received {
                Ok(()) => {
                    let (layer, what) = (layer.clone(), what.to_owned());
                    return tokio::task::spawn_blocking(move || {
                        finish_layer(ingest, &prefix, &layer, form, &what)
                    })
                    .await
                    .map_err(|e| Error::Io {
                        path: store.quarantine_dir().to_owned(),
                        source: std::io::Error::other(e),
                    })?;
                }
                Err(err @ Error::Network { .. }) if attempt < self.options.max_attempts.max(1) => {
                    tracing::debug!(error = %err, attempt, "blob download cut; retrying");
                    drop(ingest);
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                    // Restart the bar: the bytes received so far were discarded.
                    progress.end();
                    progress.begin(what, layer.size);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Fetch the config of a resolved artifact (bounded, digest-checked), without storing it.
    pub async fn fetch_config(&self, resolved: &Resolved) -> Result<Vec<u8>, Error> {
        let config = resolved.wasm.config();
        let what = format!("config `{}`", config.digest);
        match &resolved.reference {
            Reference::Registry(r) => {
                self.with_deadline(
                    &format!("fetching {what}"),
                    self.get_small_blob(r, &config.digest, config.size, MAX_CONFIG_BYTES, &what),
                )
                .await
            }
            Reference::Layout(l) => {
                Layout::open(l.path())?.read_blob(&config.digest, MAX_CONFIG_BYTES, &what)
            }
        }
    }

    /// Publish `wasm` as a Wasm OCI artifact at `target`: config
    /// `application/vnd.wasm.config.v0+json` (`os` is `wasip1` for a core module, `wasip2`
    /// for a component, read from the bytes) and one `application/wasm` layer. No timestamp
    /// is written, so the same bytes always publish to the same digest. `target` may be a
    /// registry tag or an OCI image-layout directory (created if absent) and tag.
    pub async fn push_wasm(
        &self,
        wasm: Vec<u8>,
        title: Option<&str>,
        target: &Reference,
        progress: &dyn Progress,
    ) -> Result<Pushed, Error> {
        let artifact = wasm_artifact(&wasm, title, self.options.max_module_bytes)?;
        self.push_built(wasm, artifact, target, progress).await
    }

    /// Publish `wasm` as a `wasi/wasm` image at `target`, the format containerd shims and
    /// Docker run: an OCI image config with platform `wasi/wasm` and entrypoint `/NAME`, and
    /// one uncompressed tar layer holding the module as `NAME` ([`wasm_image`]). With
    /// `in_index`, the tag names an OCI image index listing that manifest for platform
    /// `wasi/wasm`, as multi-platform builds publish it ([`wasm_image_index`]). Reproducible as
    /// [`Self::push_wasm`] is.
    pub async fn push_wasm_image(
        &self,
        wasm: &[u8],
        name: &str,
        target: &Reference,
        in_index: bool,
        progress: &dyn Progress,
    ) -> Result<Pushed, Error> {
        let (mut artifact, layer) = wasm_image(wasm, name, self.options.max_module_bytes)?;
        if in_index {
            artifact.index_bytes = Some(wasm_image_index(&artifact.manifest_bytes)?);
        }
        self.push_built(layer, artifact, target, progress).await
    }

    async fn push_built(
        &self,
        wasm: Vec<u8>,
        artifact: WasmArtifact,
        target: &Reference,
        progress: &dyn Progress,
    ) -> Result<Pushed, Error> {
        let manifest = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, &artifact.manifest_bytes);
        let index = artifact
            .index_bytes
            .as_ref()
            .map(|bytes| Descriptor::of(MEDIA_TYPE_OCI_INDEX, bytes));
        let pushed = Pushed {
            manifest: index.clone().unwrap_or_else(|| manifest.clone()),
            index_entry: index.as_ref().map(|_| manifest.clone()),
            layer: artifact.layer.clone(),
            kind: artifact.kind,
        };
        let tag = match target.selector() {
            Selector::Tag(tag) => tag.clone(),
            Selector::Digest(_) => {
                return Err(Error::InvalidReference {
                    input: target.to_string(),
                    reason: "push to a tag; the digest is computed from the content".into(),
                });
            }
        };
        match target {
            Reference::Layout(l) => {
                let store = Store::open(l.path())?;
                store.put_blob(&wasm, &artifact.layer, "layer")?;
                store.put_blob(&artifact.config_bytes, &artifact.manifest.config, "config")?;
                store.put_blob(&artifact.manifest_bytes, &manifest, "manifest")?;
                match (&index, &artifact.index_bytes) {
                    (Some(index), Some(bytes)) => {
                        store.put_blob(bytes, index, "image index")?;
                        store.add_to_index(index, Some(&tag))?;
                    }
                    _ => store.add_to_index(&manifest, Some(&tag))?,
                }
            }
            Reference::Registry(r) => {
                let what = format!("pushing `{r}`");
                let WasmArtifact {
                    manifest: image_manifest,
                    manifest_bytes,
                    config_bytes,
                    layer,
                    index_bytes,
                    ..
                } = artifact;
                self.with_deadline(&what, async {
                    self.push_blob(
                        r,
                        &layer.digest,
                        wasm,
                        &format!("layer `{}`", layer.digest),
                        progress,
                    )
                    .await?;
                    self.push_blob(
                        r,
                        &image_manifest.config.digest,
                        config_bytes,
                        &format!("config `{}`", image_manifest.config.digest),
                        &NoProgress,
                    )
                    .await?;
                    match index_bytes {
                        Some(index_bytes) => {
                            // The entry first, by digest, so the tag never names an index
                            // whose entry is missing.
                            let at = r.with_selector(Selector::Digest(manifest.digest.clone()));
                            self.push_manifest(
                                &at,
                                manifest_bytes,
                                MEDIA_TYPE_OCI_MANIFEST,
                                &format!("manifest `{at}`"),
                            )
                            .await?;
                            self.push_manifest(
                                r,
                                index_bytes,
                                MEDIA_TYPE_OCI_INDEX,
                                &format!("image index for `{r}`"),
                            )
                            .await
                        }
                        None => {
                            self.push_manifest(
                                r,
                                manifest_bytes,
                                MEDIA_TYPE_OCI_MANIFEST,
                                &format!("manifest for `{r}`"),
                            )
                            .await
                        }
                    }
                })
                .await?;
            }
        }
        Ok(pushed)
    }

    /// The manifests in `repo` whose subject is `subject`: the OCI 1.1 referrers API, falling
    /// back to the referrers tag schema when the registry does not implement it.
    pub async fn referrers(
        &self,
        repo: &RegistryRef,
        subject: &Digest,
    ) -> Result<Referrers, Error> {
        let what = format!("listing referrers of `{subject}`");
        self.with_deadline(&what, async {
            if let Some(bytes) = self.get_referrers_api(repo, subject).await? {
                let index = ImageIndex::parse(&bytes, "referrers index")?;
                return Ok(Referrers {
                    manifests: index.manifests,
                    source: ReferrersSource::Api,
                });
            }
            let index = self.tag_schema_index(repo, subject).await?;
            Ok(Referrers {
                manifests: index.map(|i| i.manifests).unwrap_or_default(),
                source: ReferrersSource::TagSchema,
            })
        })
        .await
    }

    async fn tag_schema_index(
        &self,
        repo: &RegistryRef,
        subject: &Digest,
    ) -> Result<Option<ImageIndex>, Error> {
        let at = repo.with_selector(Selector::Tag(subject.tag_schema_tag()));
        match self.get_manifest_bytes(&at, MEDIA_TYPE_OCI_INDEX).await {
            Ok((bytes, _, _)) => ImageIndex::parse(&bytes, "referrers tag-schema index").map(Some),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Attach an artifact to `subject` in `repo`: push its blobs and a manifest with
    /// `subject` set, then, when the registry has no referrers API, add it to the tag-schema
    /// index at `sha256-<hex>`. Returns the referrer's descriptor as a referrers list shows it.
    pub async fn attach(
        &self,
        repo: &RegistryRef,
        subject: &Descriptor,
        artifact: Attachment,
    ) -> Result<Descriptor, Error> {
        let what = format!("attaching to `{}`", subject.digest);
        self.with_deadline(&what, async {
            let Attachment {
                artifact_type,
                layers,
                annotations,
            } = artifact;
            let config = Descriptor::of(MEDIA_TYPE_EMPTY, b"{}");
            self.push_blob(
                repo,
                &config.digest,
                b"{}".to_vec(),
                "empty config",
                &NoProgress,
            )
            .await?;
            let mut layer_descriptors = Vec::with_capacity(layers.len());
            for (media_type, bytes) in layers {
                let d = Descriptor::of(&media_type, &bytes);
                self.push_blob(
                    repo,
                    &d.digest,
                    bytes,
                    &format!("blob `{}`", d.digest),
                    &NoProgress,
                )
                .await?;
                layer_descriptors.push(d);
            }
            let manifest = ImageManifest {
                schema_version: 2,
                media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
                artifact_type: Some(artifact_type.clone()),
                config,
                layers: layer_descriptors,
                subject: Some(Descriptor {
                    annotations: BTreeMap::new(),
                    artifact_type: None,
                    ..subject.clone()
                }),
                annotations: annotations.clone(),
            };
            let bytes = to_json(&manifest, "referrer manifest")?;
            let mut descriptor = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, &bytes);
            descriptor.artifact_type = Some(artifact_type);
            descriptor.annotations = annotations;
            let at = repo.with_selector(Selector::Digest(descriptor.digest.clone()));
            self.push_manifest(&at, bytes, MEDIA_TYPE_OCI_MANIFEST, "referrer manifest")
                .await?;

            if self
                .get_referrers_api(repo, &subject.digest)
                .await?
                .is_none()
            {
                // No referrers API: maintain the tag-schema index. Read-modify-write; two
                // concurrent attachers can race, as with every tag-schema client.
                let mut index = self
                    .tag_schema_index(repo, &subject.digest)
                    .await?
                    .unwrap_or_else(ImageIndex::empty);
                if !index
                    .manifests
                    .iter()
                    .any(|d| d.digest == descriptor.digest)
                {
                    index.manifests.push(descriptor.clone());
                    let tag = repo.with_selector(Selector::Tag(subject.digest.tag_schema_tag()));
                    self.push_manifest(
                        &tag,
                        to_json(&index, "referrers index")?,
                        MEDIA_TYPE_OCI_INDEX,
                        "referrers tag-schema index",
                    )
                    .await?;
                }
            }
            Ok(descriptor)
        })
        .await
    }
}

/// An artifact to attach to a subject (a signature, an attestation, an SBOM).
#[derive(Clone, Debug)]
pub struct Attachment {
    /// The manifest's `artifactType`.
    pub artifact_type: String,
    /// Layers as (media type, bytes).
    pub layers: Vec<(String, Vec<u8>)>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Accept header for manifests: an index is asked for too (a multi-platform image's tag names
/// one).
/// Docker's schema 2 types are asked for too: a registry asked for neither may convert a Docker
/// manifest to schema 1 (another document, another digest) rather than serve it.
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The documents that publish one Wasm binary as a Wasm OCI artifact.
#[derive(Clone, Debug)]
pub struct WasmArtifact {
    /// The manifest.
    pub manifest: ImageManifest,
    /// The manifest's exact bytes, as pushed.
    pub manifest_bytes: Vec<u8>,
    /// The config's exact bytes, as pushed.
    pub config_bytes: Vec<u8>,
    /// The Wasm layer's descriptor.
    pub layer: Descriptor,
    /// Module or component.
    pub kind: WasmKind,
    /// The image index naming the manifest, when it is published under one.
    pub index_bytes: Option<Vec<u8>>,
}

/// Build the Wasm OCI artifact for `wasm`: config `application/vnd.wasm.config.v0+json` with
/// `os` read from the bytes, one `application/wasm` layer, no timestamp (reproducible).
pub fn wasm_artifact(
    wasm: &[u8],
    title: Option<&str>,
    max_module_bytes: u64,
) -> Result<WasmArtifact, Error> {
    let kind = publishable(wasm, max_module_bytes)?;
    let mut layer = Descriptor::of(MEDIA_TYPE_WASM_LAYER, wasm);
    if let Some(title) = title {
        layer
            .annotations
            .insert(ANNOTATION_TITLE.to_owned(), title.to_owned());
    }
    let config = WasmConfig {
        created: None,
        author: None,
        architecture: "wasm".into(),
        os: kind.wasi_os().into(),
        layer_digests: vec![layer.digest.clone()],
    };
    let config_bytes = to_json(&config, "config")?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: Descriptor::of(MEDIA_TYPE_WASM_CONFIG, &config_bytes),
        layers: vec![layer.clone()],
        subject: None,
        annotations: BTreeMap::new(),
    };
    let manifest_bytes = to_json(&manifest, "manifest")?;
    Ok(WasmArtifact {
        manifest,
        manifest_bytes,
        config_bytes,
        layer,
        kind,
        index_bytes: None,
    })
}

/// Build a `wasi/wasm` image for `wasm`: one uncompressed tar layer holding it as `name` (mode
/// 0644, owner 0, time 0: reproducible), and an OCI image config with platform `wasi/wasm`,
/// entrypoint `/NAME` and the layer's diff id. Returns the documents and the layer's bytes.
pub fn wasm_image(
    wasm: &[u8],
    name: &str,
    max_module_bytes: u64,
) -> Result<(WasmArtifact, Vec<u8>), Error> {
    let kind = publishable(wasm, max_module_bytes)?;
    let path = crate::image_layer::normalise(name)?;
    let tar_error = |e: std::io::Error| Error::Malformed {
        what: format!("image layer for `{}`", crate::text::one_line(&path)),
        reason: e.to_string(),
    };
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, &path, wasm)
        .map_err(tar_error)?;
    let layer_bytes = builder.into_inner().map_err(tar_error)?;
    let layer = Descriptor::of(crate::manifest::MEDIA_TYPE_OCI_LAYER_TAR, &layer_bytes);
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasi",
        "config": { "Entrypoint": [format!("/{path}")] },
        "rootfs": { "type": "layers", "diff_ids": [layer.digest.to_string()] },
    });
    let config_bytes = to_json(&config, "image config")?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: Descriptor::of(crate::manifest::MEDIA_TYPE_OCI_IMAGE_CONFIG, &config_bytes),
        layers: vec![layer.clone()],
        subject: None,
        annotations: BTreeMap::new(),
    };
    let manifest_bytes = to_json(&manifest, "manifest")?;
    Ok((
        WasmArtifact {
            manifest,
            manifest_bytes,
            config_bytes,
            layer,
            kind,
            index_bytes: None,
        },
        layer_bytes,
    ))
}

/// Build the OCI image index a multi-platform build publishes for a `wasi/wasm` image: one
/// entry, the image manifest `manifest_bytes`, with platform `wasi/wasm`.
pub fn wasm_image_index(manifest_bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut entry = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, manifest_bytes);
    entry.platform = Some(Platform::wasi_wasm());
    let mut index = ImageIndex::empty();
    index.manifests.push(entry);
    to_json(&index, "image index")
}

/// The kind of `wasm`, which is to be published: refused when it is not Wasm or is over
/// `max_module_bytes`.
fn publishable(wasm: &[u8], max_module_bytes: u64) -> Result<WasmKind, Error> {
    let kind = WasmKind::detect(wasm).ok_or_else(|| Error::Malformed {
        what: "module".into(),
        reason: "not a WebAssembly binary (bad preamble)".into(),
    })?;
    if wasm.len() as u64 > max_module_bytes {
        return Err(Error::TooLarge {
            what: "module".into(),
            limit: max_module_bytes,
        });
    }
    Ok(kind)
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Malformed {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// Chunks in flight between the network and the writer thread (hyper's chunks are at most a
/// few hundred KiB, so this bounds the pipeline to a few MiB).
const PIPELINE_CHUNKS: usize = 16;

/// The writer thread: hash and write every chunk until the sender is dropped, keeping the
/// first bytes to identify the binary.
fn write_chunks(
    mut ingest: Ingest,
    mut rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> Result<(Ingest, Vec<u8>), Error> {
    let mut prefix = Vec::with_capacity(8);
    while let Some(chunk) = rx.blocking_recv() {
        take_prefix(&mut prefix, &chunk);
        ingest.write(&chunk)?;
    }
    Ok((ingest, prefix))
}

fn take_prefix(prefix: &mut Vec<u8>, chunk: &[u8]) {
    let want = 8usize.saturating_sub(prefix.len());
    prefix.extend(chunk.iter().take(want));
}

/// What a stored layer is: the module itself, or (a `wasi/wasm` image's) a tar holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LayerKind {
    Wasm(WasmKind),
    Tar,
}

/// Check the layer is Wasm (a Wasm artifact's), then let the ingest check size and digest and
/// commit. An image's tar layer is committed on its digest alone: its module is checked when
/// it is extracted.
fn finish_layer(
    ingest: Ingest,
    prefix: &[u8],
    layer: &Descriptor,
    form: Form,
    what: &str,
) -> Result<LayerKind, Error> {
    // Size and digest first: a mismatch is the more precise refusal.
    if ingest.len() != layer.size {
        return Err(Error::SizeMismatch {
            what: what.to_owned(),
            declared: layer.size,
            actual: ingest.len(),
        });
    }
    if let Form::Image(_) = form {
        ingest.finish(layer)?;
        return Ok(LayerKind::Tar);
    }
    let kind = WasmKind::detect(prefix);
    match kind {
        Some(kind) => {
            ingest.finish(layer)?;
            Ok(LayerKind::Wasm(kind))
        }
        None => {
            // Check the digest before blaming the content, then refuse it either way.
            ingest.finish_unstored(layer)?;
            Err(Error::Malformed {
                what: what.to_owned(),
                reason: "not a WebAssembly binary (bad preamble)".into(),
            })
        }
    }
}

fn copy_layout_layer(
    layout: &Layout,
    layer: &Descriptor,
    form: Form,
    store: &Store,
    progress: &dyn Progress,
    what: &str,
) -> Result<LayerKind, Error> {
    let (mut file, len) = layout.open_blob(&layer.digest)?;
    if len != layer.size {
        return Err(Error::SizeMismatch {
            what: what.to_owned(),
            declared: layer.size,
            actual: len,
        });
    }
    let mut ingest = store.ingest(what, layer.size)?;
    let mut prefix = Vec::with_capacity(8);
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let path = layout.blob_path(&layer.digest);
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        take_prefix(&mut prefix, chunk);
        ingest.write(chunk)?;
        progress.advance(n as u64);
    }
    finish_layer(ingest, &prefix, layer, form, what)
}

/// When the layer is already in the store, re-hash it (a store is a cache, not a trust root)
/// and read its kind. A corrupt file is removed so it is fetched again.
fn cached_kind(store: &Store, layer: &Descriptor, form: Form) -> Result<Option<LayerKind>, Error> {
    if !store.layout().has_blob(&layer.digest) {
        return Ok(None);
    }
    let path = store.layout().blob_path(&layer.digest);
    let (mut file, len) = store.layout().open_blob(&layer.digest)?;
    let mut hasher = crate::digest::CountingHasher::default();
    let mut prefix = Vec::with_capacity(8);
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    if len == layer.size {
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            take_prefix(&mut prefix, chunk);
            hasher.update(chunk);
        }
        if hasher.finish() == layer.digest {
            if let Form::Image(_) = form {
                return Ok(Some(LayerKind::Tar));
            }
            if let Some(kind) = WasmKind::detect(&prefix) {
                return Ok(Some(LayerKind::Wasm(kind)));
            }
        }
    }
    tracing::warn!(path = %path.display(), "stored blob does not match its digest; fetching again");
    store.remove_blob(&layer.digest)?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal module: the magic and version of a core module.
    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn only_a_pinned_digest_the_store_holds_is_resolved_from_it_and_checked() {
        let top = tempfile::tempdir().unwrap();
        let store = Store::open(top.path().join("store")).unwrap();
        let artifact = wasm_artifact(MODULE, None, u64::MAX).unwrap();
        let manifest = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, &artifact.manifest_bytes);
        let pinned: Reference = format!("registry.example/app@{}", manifest.digest)
            .parse()
            .unwrap();
        let tagged: Reference = "registry.example/app:v1".parse().unwrap();
        assert!(Resolved::from_store(&store, &pinned).unwrap().is_none());

        store
            .put_blob(&artifact.manifest_bytes, &manifest, "manifest")
            .unwrap();
        let resolved = Resolved::from_store(&store, &pinned).unwrap().unwrap();
        assert_eq!(resolved.digest(), &manifest.digest);
        assert_eq!(
            resolved.manifest_bytes(),
            artifact.manifest_bytes.as_slice()
        );
        assert_eq!(resolved.reference(), &pinned);
        // A tag is never resolved from the store.
        assert!(Resolved::from_store(&store, &tagged).unwrap().is_none());

        // Bytes that do not hash to the pinned digest are refused, not used.
        let path = store.layout().blob_path(&manifest.digest);
        let mut tampered = artifact.manifest_bytes.clone();
        tampered[10] ^= 1;
        std::fs::write(&path, &tampered).unwrap();
        assert!(matches!(
            Resolved::from_store(&store, &pinned),
            Err(Error::DigestMismatch { .. })
        ));
    }
}
