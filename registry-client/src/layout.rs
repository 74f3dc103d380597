//! Reading an OCI image-layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`).
//!
//! A layout handed to Warrant is as untrusted as a registry: every document is size-bounded
//! and digest-checked, blobs must be regular files, and a blob's path is derived only from a
//! validated digest.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::Error;
use crate::limits::{MAX_LAYOUT_MARKER_BYTES, MAX_MANIFEST_BYTES};
use crate::manifest::{ANNOTATION_REF_NAME, Descriptor, ImageIndex};
use crate::reference::Selector;

/// The `oci-layout` marker's contents.
pub(crate) const LAYOUT_MARKER: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// A read-only view of an OCI image-layout directory.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Open an existing layout, checking its `oci-layout` marker.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        let marker_path = root.join("oci-layout");
        let marker = read_file_bounded(&marker_path, MAX_LAYOUT_MARKER_BYTES, "`oci-layout` file")?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Marker {
            image_layout_version: String,
        }
        let m: Marker = crate::json::parse(&marker, "`oci-layout` file")?;
        if m.image_layout_version != "1.0.0" {
            return Err(Error::Malformed {
                what: format!("`{}`", marker_path.display()),
                reason: format!(
                    "unsupported imageLayoutVersion `{}`",
                    m.image_layout_version
                ),
            });
        }
        Ok(Self { root })
    }

    pub(crate) fn new_unchecked(root: PathBuf) -> Self {
        Self { root }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        // INVARIANT (path safety): `Digest` holds exactly 64 lowercase hex characters, so the
        // joined path cannot leave `blobs/sha256`.
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Read and parse `index.json`.
    pub fn read_index(&self) -> Result<ImageIndex, Error> {
        let path = self.root.join("index.json");
        let bytes = read_file_bounded(&path, MAX_MANIFEST_BYTES, "`index.json`")?;
        ImageIndex::parse(&bytes, "`index.json`")
    }

    /// The manifest descriptor a tag or digest selects. A tag matches the
    /// `org.opencontainers.image.ref.name` annotation exactly; when several entries carry the
    /// same name the last one wins (it was written last).
    pub fn find(&self, selector: &Selector) -> Result<Descriptor, Error> {
        let index = self.read_index()?;
        let found = match selector {
            Selector::Tag(tag) => index
                .manifests
                .into_iter()
                .rev()
                .find(|d| d.annotations.get(ANNOTATION_REF_NAME) == Some(tag)),
            Selector::Digest(digest) => index.manifests.into_iter().find(|d| &d.digest == digest),
        };
        found.ok_or_else(|| Error::NotFound {
            what: format!("`{selector}` in layout `{}`", self.root.display()),
        })
    }

    /// Open a blob for streaming. Refuses anything but a regular file (no symlinks, devices
    /// or FIFOs), so a hostile layout cannot point us at `/dev/zero` or a secret.
    pub fn open_blob(&self, digest: &Digest) -> Result<(File, u64), Error> {
        let path = self.blob_path(digest);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    what: format!("blob `{digest}` in layout `{}`", self.root.display()),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        if !meta.file_type().is_file() {
            return Err(Error::Malformed {
                what: format!("blob `{digest}` in layout `{}`", self.root.display()),
                reason: "not a regular file".into(),
            });
        }
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        Ok((file, meta.len()))
    }

    /// Read a whole blob of at most `limit` bytes and check its digest.
    pub fn read_blob(&self, digest: &Digest, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
        let (file, len) = self.open_blob(digest)?;
        if len > limit {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                limit,
            });
        }
        let bytes = read_bounded(file, limit, what, &self.blob_path(digest))?;
        digest.check(&bytes, what)?;
        Ok(bytes)
    }

    /// True when a blob file exists for `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        std::fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.file_type().is_file())
    }
}

/// Read a file of at most `limit` bytes.
pub(crate) fn read_file_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                what: format!("{what} at `{}`", path.display()),
            }
        } else {
            Error::io(path, e)
        }
    })?;
    read_bounded(file, limit, what, path)
}

fn read_bounded(file: File, limit: u64, what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}
