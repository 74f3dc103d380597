//! The OCI documents Warrant reads and writes, and what makes a manifest a Wasm artifact.
//!
//! These are Warrant's own types rather than a dependency's, so that sizes are unsigned,
//! digests are validated while parsing, and unknown shapes fail closed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;

/// OCI image manifest.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's image manifest (schema 2), which `docker push` and Docker-format copies write: the
/// OCI image manifest's shape under another name.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list: the OCI image index's shape under another name.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image config: the OCI image config's shape under another name.
pub const MEDIA_TYPE_DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's uncompressed layer (written by Docker-format copies of an uncompressed OCI layer).
pub const MEDIA_TYPE_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker's gzip-compressed layer.
pub const MEDIA_TYPE_DOCKER_LAYER_TAR_GZIP: &str =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Whether `media_type` names an image manifest Warrant reads: OCI, or Docker schema 2.
pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

/// Whether `media_type` names an image index Warrant reads: OCI, or a Docker manifest list.
pub fn is_index_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}
/// The Wasm artifact config (CNCF TAG-Runtime "Wasm OCI artifact" layout).
pub const MEDIA_TYPE_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The Wasm artifact layer.
pub const MEDIA_TYPE_WASM_LAYER: &str = "application/wasm";
/// The older Wasm layer type, still written by several tools.
pub const MEDIA_TYPE_WASM_LAYER_LEGACY: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// An OCI image config: with os `wasi`/`wasip1`/`wasip2` and architecture `wasm`, the config of
/// a `wasi/wasm` image (the format Docker and containerd shims run), whose one layer is a tar
/// holding the module its entrypoint names.
pub const MEDIA_TYPE_OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed OCI image layer.
pub const MEDIA_TYPE_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed OCI image layer.
pub const MEDIA_TYPE_OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The empty descriptor's media type, used as config by referrer artifacts.
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The annotation naming a manifest inside an image-layout `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation giving a layer's file name.
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// The annotation giving a creation time.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its exact length in bytes.
    pub size: u64,
    /// The artifact type, for manifests listed in a referrers index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform a manifest listed in an image index runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor of `bytes` with `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// The platform of an image index entry (only the fields Warrant reads; others are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The CPU architecture: `wasm` for a Wasm image.
    pub architecture: String,
    /// The operating system: `wasi`, `wasip1` or `wasip2` for a Wasm image.
    pub os: String,
}

impl Platform {
    /// `wasi/wasm`, the platform [`wasm_image`](crate::pull::wasm_image) publishes.
    pub fn wasi_wasm() -> Self {
        Self {
            architecture: "wasm".into(),
            os: "wasi".into(),
        }
    }

    /// Whether this is a Wasm platform Warrant runs: architecture `wasm`, os one of
    /// [`WASM_IMAGE_OS`].
    pub fn is_wasm(&self) -> bool {
        self.architecture == "wasm" && WASM_IMAGE_OS.contains(&self.os.as_str())
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            crate::text::one_line(&self.os),
            crate::text::one_line(&self.architecture)
        )
    }
}

/// An OCI image manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_TYPE_OCI_MANIFEST`] (optional in the spec, always written by Warrant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for artifacts whose config is the empty descriptor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index (also the referrers list and an image layout's `index.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_TYPE_OCI_INDEX`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests listed.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// An empty index.
    pub fn empty() -> Self {
        Self {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// Parse and check an index; `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, Error> {
        let index: Self = crate::json::parse(bytes, what)?;
        if index.schema_version != 2 {
            return Err(Error::Malformed {
                what: what.to_owned(),
                reason: format!("schemaVersion {} is not 2", index.schema_version),
            });
        }
        if let Some(mt) = &index.media_type
            && !is_index_type(mt)
        {
            return Err(Error::UnsupportedMediaType {
                what: what.to_owned(),
                media_type: crate::text::one_line(mt).into_owned(),
                expected: format!(
                    "`{MEDIA_TYPE_OCI_INDEX}` or `{MEDIA_TYPE_DOCKER_MANIFEST_LIST}`"
                ),
            });
        }
        if index.manifests.len() > crate::limits::MAX_INDEX_ENTRIES {
            return Err(Error::TooLarge {
                what: format!("{what} entry count"),
                limit: crate::limits::MAX_INDEX_ENTRIES as u64,
            });
        }
        Ok(index)
    }

    /// The entry a multi-platform image runs as: the first, in the index's order, whose
    /// platform is Wasm ([`Platform::is_wasm`]) — the rule containerd's platform matcher
    /// follows, so the shim and containerd's unpacking agree. The index's bytes (signed when
    /// its digest is) fix the order, so the choice is a function of the digest. Nested indexes
    /// are not followed. `what` names the index in errors.
    pub fn wasm_entry(&self, what: &str) -> Result<&Descriptor, Error> {
        let Some(entry) = self
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(Platform::is_wasm))
        else {
            let mut listed: Vec<String> = self
                .manifests
                .iter()
                .take(MAX_PLATFORMS_NAMED)
                .map(|d| {
                    d.platform
                        .as_ref()
                        .map_or_else(|| "no platform".to_owned(), Platform::to_string)
                })
                .collect();
            listed.dedup();
            if self.manifests.len() > MAX_PLATFORMS_NAMED {
                listed.push("…".into());
            }
            return Err(Error::UnsupportedMediaType {
                what: what.to_owned(),
                media_type: if listed.is_empty() {
                    "no entries".to_owned()
                } else {
                    listed.join(", ")
                },
                expected: "a Wasm image index lists a manifest for platform `wasi/wasm` (or \
                           `wasip1`, `wasip2`)"
                    .into(),
            });
        };
        if !is_manifest_type(&entry.media_type) {
            return Err(Error::UnsupportedMediaType {
                what: format!("{what} entry `{}`", entry.digest),
                media_type: crate::text::one_line(&entry.media_type).into_owned(),
                expected: format!("`{MEDIA_TYPE_OCI_MANIFEST}` or `{MEDIA_TYPE_DOCKER_MANIFEST}`"),
            });
        }
        if entry.size > crate::limits::MAX_MANIFEST_BYTES {
            return Err(Error::TooLarge {
                what: format!("{what} entry `{}`", entry.digest),
                limit: crate::limits::MAX_MANIFEST_BYTES,
            });
        }
        Ok(entry)
    }
}

/// How many platforms a refused index's error lists: enough to recognise it, few enough to
/// keep a hostile index's refusal one short line.
const MAX_PLATFORMS_NAMED: usize = 8;

/// What a manifest digest names: an image manifest, or an image index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopLevel {
    /// An OCI image manifest (or a document without a media type, read as one).
    Manifest,
    /// An OCI image index.
    Index,
}

impl TopLevel {
    /// Which of the two `bytes` declare themselves to be, by their `mediaType` field; a
    /// document without one is read as a manifest (and refused there if it is not one).
    pub fn of(bytes: &[u8]) -> Result<Self, Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Peek {
            media_type: Option<String>,
        }
        let peek: Peek = crate::json::parse(bytes, "manifest")?;
        Ok(match peek.media_type.as_deref() {
            Some(mt) if is_index_type(mt) => Self::Index,
            _ => Self::Manifest,
        })
    }
}

impl ImageManifest {
    /// Parse and check the generic shape of an image manifest.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        // Peek at the media type first so an index or a Docker manifest is refused by name,
        // not with a confusing "missing field".
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Peek {
            media_type: Option<String>,
        }
        let peek: Peek = crate::json::parse(bytes, "manifest")?;
        if let Some(mt) = peek.media_type.as_deref()
            && !is_manifest_type(mt)
        {
            return Err(Error::UnsupportedMediaType {
                what: "manifest".into(),
                media_type: mt.to_owned(),
                expected: format!("`{MEDIA_TYPE_OCI_MANIFEST}` or `{MEDIA_TYPE_DOCKER_MANIFEST}`"),
            });
        }
        let manifest: Self = crate::json::parse(bytes, "manifest")?;
        if manifest.schema_version != 2 {
            return Err(Error::Malformed {
                what: "manifest".into(),
                reason: format!("schemaVersion {} is not 2", manifest.schema_version),
            });
        }
        Ok(manifest)
    }
}

/// Whether a Wasm binary is a core module or a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WasmKind {
    /// A core WebAssembly module (WASI preview 1).
    Module,
    /// A component (WASI 0.2).
    Component,
}

impl WasmKind {
    /// Read the kind from the 8-byte preamble; `None` when it is not Wasm at all.
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        match bytes.get(..8)? {
            [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00] => Some(Self::Module),
            [0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00] => Some(Self::Component),
            _ => None,
        }
    }

    /// The `os` field of the Wasm config v0: `wasip1` for modules, `wasip2` for components.
    pub fn wasi_os(self) -> &'static str {
        match self {
            Self::Module => "wasip1",
            Self::Component => "wasip2",
        }
    }

    /// `module` or `component`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Component => "component",
        }
    }
}

/// The Wasm config v0 (`application/vnd.wasm.config.v0+json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip1` or `wasip2`.
    pub os: String,
    /// The digests of the layers, in order.
    #[serde(default)]
    pub layer_digests: Vec<Digest>,
}

/// The two shapes of a runnable Wasm manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The CNCF Wasm artifact (or the legacy single-layer form): the layer is the module.
    Artifact,
    /// A `wasi/wasm` image: the layer is a tar (compressed as given) holding the module its
    /// config's entrypoint names.
    Image(crate::image_layer::Compression),
}

/// The parts of an OCI image config a `wasi/wasm` image is run by.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageConfig {
    /// `wasm`.
    pub architecture: String,
    /// `wasi`, `wasip1` or `wasip2`.
    pub os: String,
    /// The run configuration.
    #[serde(default)]
    pub config: Option<ImageRunConfig>,
}

/// `config` of an OCI image config.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageRunConfig {
    /// The entrypoint: its first element names the module.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// The default arguments; the module when there is no entrypoint.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
}

/// The operating systems a `wasi/wasm` image may name.
pub const WASM_IMAGE_OS: [&str; 3] = ["wasi", "wasip1", "wasip2"];

impl ImageConfig {
    /// Parse an image config and check that it is a `wasi/wasm` image with an entrypoint;
    /// returns it with the path of its module (the entrypoint's first element, else `Cmd`'s).
    pub fn parse_wasm(bytes: &[u8]) -> Result<(Self, String), Error> {
        let config: Self = crate::json::parse(bytes, "image config")?;
        if config.architecture != "wasm" || !WASM_IMAGE_OS.contains(&config.os.as_str()) {
            return Err(Error::UnsupportedMediaType {
                what: "image".into(),
                media_type: crate::text::one_line(&format!(
                    "{}/{}",
                    config.os, config.architecture
                ))
                .into_owned(),
                expected: "a Wasm image's platform is `wasi/wasm` (or `wasip1`, `wasip2`)".into(),
            });
        }
        let run = config.config.clone().unwrap_or_default();
        let module = run
            .entrypoint
            .as_ref()
            .filter(|e| !e.is_empty())
            .or(run.cmd.as_ref())
            .and_then(|e| e.first())
            .cloned()
            .ok_or_else(|| Error::Malformed {
                what: "image config".into(),
                reason: "no entrypoint (`config.Entrypoint` or `config.Cmd`) names the module"
                    .into(),
            })?;
        crate::image_layer::normalise(&module)?;
        Ok((config, module))
    }
}

/// A manifest checked to be runnable Wasm: a CNCF Wasm artifact (one Wasm layer and a config)
/// or a `wasi/wasm` image (an image config and one tar layer).
#[derive(Clone, Debug)]
pub struct WasmManifest {
    manifest: ImageManifest,
    form: Form,
}

impl WasmManifest {
    /// Check that `manifest` is a Wasm artifact Warrant accepts:
    ///
    /// - config `application/vnd.wasm.config.v0+json` with exactly one `application/wasm`
    ///   layer (the CNCF layout), or
    /// - exactly one legacy `application/vnd.wasm.content.layer.v1+wasm` layer.
    ///
    /// - config `application/vnd.oci.image.config.v1+json` with exactly one tar layer
    ///   (`application/vnd.oci.image.layer.v1.tar`, `+gzip`), or Docker's config and gzip
    ///   layer: a `wasi/wasm` image, whose platform and entrypoint are checked when its config
    ///   is read.
    ///
    /// Anything else is refused, naming the media type that was not accepted.
    pub fn new(manifest: ImageManifest) -> Result<Self, Error> {
        let config_type = manifest.config.media_type.as_str();
        if config_type == MEDIA_TYPE_OCI_IMAGE_CONFIG
            || config_type == MEDIA_TYPE_DOCKER_IMAGE_CONFIG
        {
            return Self::image(manifest);
        }
        let accepted_layers: &[&str] = if config_type == MEDIA_TYPE_WASM_CONFIG {
            &[MEDIA_TYPE_WASM_LAYER]
        } else {
            &[MEDIA_TYPE_WASM_LAYER_LEGACY]
        };
        for layer in &manifest.layers {
            if !accepted_layers.contains(&layer.media_type.as_str()) {
                let expected = if config_type == MEDIA_TYPE_WASM_CONFIG {
                    format!(
                        "a `{MEDIA_TYPE_WASM_CONFIG}` artifact has one `{MEDIA_TYPE_WASM_LAYER}` layer"
                    )
                } else {
                    format!(
                        "a Wasm artifact has config `{MEDIA_TYPE_WASM_CONFIG}` and one `{MEDIA_TYPE_WASM_LAYER}` layer, or one `{MEDIA_TYPE_WASM_LAYER_LEGACY}` layer"
                    )
                };
                return Err(Error::UnsupportedMediaType {
                    what: format!("layer `{}`", layer.digest),
                    media_type: layer.media_type.clone(),
                    expected,
                });
            }
        }
        if manifest.layers.len() != 1 {
            return Err(Error::Malformed {
                what: "wasm artifact manifest".into(),
                reason: format!(
                    "expected exactly one Wasm layer, found {}",
                    manifest.layers.len()
                ),
            });
        }
        if manifest.config.size > crate::limits::MAX_CONFIG_BYTES {
            return Err(Error::TooLarge {
                what: format!("config `{}`", manifest.config.digest),
                limit: crate::limits::MAX_CONFIG_BYTES,
            });
        }
        Ok(Self {
            manifest,
            form: Form::Artifact,
        })
    }

    fn image(manifest: ImageManifest) -> Result<Self, Error> {
        // A module is one file: an image of several layers would need their union (and its
        // whiteouts) to say which bytes it is, so it is refused rather than merged.
        let [layer] = manifest.layers.as_slice() else {
            return Err(Error::Malformed {
                what: "wasi/wasm image manifest".into(),
                reason: format!(
                    "expected exactly one layer holding the module, found {}",
                    manifest.layers.len()
                ),
            });
        };
        let Some(compression) = crate::image_layer::Compression::from_media_type(&layer.media_type)
        else {
            return Err(Error::UnsupportedMediaType {
                what: format!("layer `{}`", layer.digest),
                media_type: layer.media_type.clone(),
                expected: format!(
                    "a `{MEDIA_TYPE_OCI_IMAGE_CONFIG}` image has one `{MEDIA_TYPE_OCI_LAYER_TAR}` or `{MEDIA_TYPE_OCI_LAYER_TAR_GZIP}` layer"
                ),
            });
        };
        if manifest.config.size > crate::limits::MAX_CONFIG_BYTES {
            return Err(Error::TooLarge {
                what: format!("config `{}`", manifest.config.digest),
                limit: crate::limits::MAX_CONFIG_BYTES,
            });
        }
        Ok(Self {
            manifest,
            form: Form::Image(compression),
        })
    }

    /// A Wasm artifact, or a `wasi/wasm` image.
    pub fn form(&self) -> Form {
        self.form
    }

    /// The Wasm layer.
    pub fn layer(&self) -> &Descriptor {
        // INVARIANT (one layer): `new` refused any manifest without exactly one layer.
        #[expect(
            clippy::indexing_slicing,
            reason = "checked in `new`: exactly one layer"
        )]
        &self.manifest.layers[0]
    }

    /// The config descriptor.
    pub fn config(&self) -> &Descriptor {
        &self.manifest.config
    }

    /// The whole manifest.
    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config_type: &str, layer_types: &[&str]) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::of(config_type, b"{}"),
            layers: layer_types
                .iter()
                .map(|t| Descriptor::of(t, b"\0asm\x01\0\0\0"))
                .collect(),
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn accepts_the_cncf_layout_and_the_legacy_layer() {
        assert!(
            WasmManifest::new(manifest(MEDIA_TYPE_WASM_CONFIG, &[MEDIA_TYPE_WASM_LAYER])).is_ok()
        );
        assert!(
            WasmManifest::new(manifest(
                "application/vnd.wasm.config.v1+json",
                &[MEDIA_TYPE_WASM_LAYER_LEGACY]
            ))
            .is_ok()
        );
    }

    #[test]
    fn refuses_other_layers_naming_the_media_type() {
        let err = WasmManifest::new(manifest(
            MEDIA_TYPE_WASM_CONFIG,
            &["application/vnd.oci.image.layer.v1.tar+gzip"],
        ))
        .unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedMediaType { media_type, .. }
            if media_type == "application/vnd.oci.image.layer.v1.tar+gzip")
        );
        assert!(
            err.to_string()
                .contains("`application/vnd.oci.image.layer.v1.tar+gzip`")
        );

        let err = WasmManifest::new(manifest(
            "application/vnd.oci.image.config.v1+json",
            &[MEDIA_TYPE_WASM_LAYER],
        ))
        .unwrap_err();
        assert!(matches!(err, Error::UnsupportedMediaType { .. }));
    }

    #[test]
    fn refuses_two_layers_and_none() {
        let two = manifest(
            MEDIA_TYPE_WASM_CONFIG,
            &[MEDIA_TYPE_WASM_LAYER, MEDIA_TYPE_WASM_LAYER],
        );
        assert!(matches!(
            WasmManifest::new(two),
            Err(Error::Malformed { .. })
        ));
        let none = manifest(MEDIA_TYPE_WASM_CONFIG, &[]);
        assert!(matches!(
            WasmManifest::new(none),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn manifest_parse_refuses_an_index_by_name() {
        let index = serde_json::to_vec(&ImageIndex::empty()).unwrap();
        let err = ImageManifest::parse(&index).unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedMediaType { media_type, .. } if media_type == MEDIA_TYPE_OCI_INDEX)
        );
    }

    #[test]
    fn manifest_parse_refuses_negative_sizes_and_bad_digests() {
        let bad_size = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":-1},"layers":[]}"#;
        assert!(matches!(
            ImageManifest::parse(bad_size),
            Err(Error::Malformed { .. })
        ));
        let bad_digest = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:../x","size":1},"layers":[]}"#;
        assert!(matches!(
            ImageManifest::parse(bad_digest),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn detects_kind() {
        assert_eq!(WasmKind::detect(b"\0asm\x01\0\0\0"), Some(WasmKind::Module));
        assert_eq!(
            WasmKind::detect(b"\0asm\x0d\0\x01\0"),
            Some(WasmKind::Component)
        );
        assert_eq!(WasmKind::detect(b"\0asm\x01\0"), None);
        assert_eq!(WasmKind::detect(b"\x7fELF\x02\x01\x01\0"), None);
    }

    fn entry(os: &str, architecture: &str, seed: u8) -> Descriptor {
        let mut d = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, &[seed]);
        d.platform = Some(Platform {
            architecture: architecture.into(),
            os: os.into(),
        });
        d
    }

    #[test]
    fn an_index_s_first_wasm_entry_is_chosen() {
        let mut index = ImageIndex::empty();
        index.manifests = vec![
            entry("linux", "amd64", 1),
            entry("wasi", "arm64", 2),
            entry("wasip1", "wasm", 3),
            entry("wasi", "wasm", 4),
        ];
        assert_eq!(index.wasm_entry("index").unwrap().digest, Digest::of(&[3]));
    }

    #[test]
    fn a_refused_index_names_few_platforms_and_no_control_characters() {
        let mut index = ImageIndex::empty();
        index.manifests = (0..20)
            .map(|i| entry("\u{1b}[2Jlinux", &format!("arch{i}"), i))
            .collect();
        let err = index.wasm_entry("index").unwrap_err();
        let Error::UnsupportedMediaType { media_type, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(media_type.matches('/').count(), MAX_PLATFORMS_NAMED);
        assert!(media_type.ends_with('…'), "{media_type}");
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }
}
