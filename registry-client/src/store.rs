//! The content-addressed local store. It *is* an OCI image-layout directory, so any OCI tool
//! can read it:
//!
//! ```text
//! STORE/oci-layout             {"imageLayoutVersion":"1.0.0"}
//! STORE/index.json             the manifests pulled, named by `org.opencontainers.image.ref.name`
//! STORE/blobs/sha256/<hex>     manifests, configs and layers, each named by its digest
//! STORE/.warrant/lock          serialises `index.json` updates between processes
//! STORE/.warrant/tmp/          quarantine: downloads in progress, never read as content
//! ```
//!
//! A blob enters `blobs/` only by an atomic rename after its size and digest matched, so a
//! file under `blobs/sha256/<hex>` always hashes to `<hex>`. Every write is temp file + fsync +
//! rename + directory fsync. Two processes may pull the same blob at once: each downloads into
//! its own quarantine file and the second rename replaces identical bytes.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tempfile::{NamedTempFile, TempPath};

use crate::digest::CountingHasher;
use crate::error::Error;
use crate::layout::{LAYOUT_MARKER, Layout};
use crate::limits::STALE_QUARANTINE_AGE;
use crate::manifest::{ANNOTATION_REF_NAME, Descriptor, ImageIndex};

/// Size of the write buffer in front of a quarantine file.
const INGEST_BUFFER_BYTES: usize = 1024 * 1024;

/// Warrant's local store.
#[derive(Clone, Debug)]
pub struct Store {
    layout: Layout,
    tmp: PathBuf,
    lock: PathBuf,
}

impl Store {
    /// Open the store at `root`, creating it (and removing stale quarantine files left by a
    /// killed process) as needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        let private = root.join(".warrant");
        let tmp = private.join("tmp");
        for dir in [root.join("blobs").join("sha256"), tmp.clone()] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let store = Self {
            layout: Layout::new_unchecked(root.clone()),
            tmp,
            lock: private.join("lock"),
        };
        let marker = root.join("oci-layout");
        if !marker.exists() {
            store.write_atomically(&marker, LAYOUT_MARKER.as_bytes())?;
        }
        let _guard = store.lock()?;
        if !root.join("index.json").exists() {
            store.write_index(&ImageIndex::empty())?;
        }
        store.remove_stale_quarantine();
        Self::checked(store)
    }

    fn checked(store: Self) -> Result<Self, Error> {
        // Re-open through the reader so a store with a corrupt marker is refused.
        Layout::open(store.layout.root())?;
        Ok(store)
    }

    /// The store as a read-only layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// The quarantine directory (downloads in progress).
    pub fn quarantine_dir(&self) -> &Path {
        &self.tmp
    }

    /// Start writing a blob into quarantine. At most `limit` bytes are accepted.
    pub fn ingest(&self, what: &str, limit: u64) -> Result<Ingest, Error> {
        let tmp = tempfile::Builder::new()
            .prefix("ingest-")
            .tempfile_in(&self.tmp)
            .map_err(|e| Error::io(&self.tmp, e))?;
        let (file, path) = tmp.into_parts();
        Ok(Ingest {
            writer: BufWriter::with_capacity(INGEST_BUFFER_BYTES, file),
            path,
            hasher: CountingHasher::default(),
            limit,
            what: what.to_owned(),
            blobs_dir: self.root().join("blobs").join("sha256"),
        })
    }

    /// Store `bytes` that must hash to `expected`.
    pub fn put_blob(&self, bytes: &[u8], expected: &Descriptor, what: &str) -> Result<(), Error> {
        if self.layout.has_blob(&expected.digest) {
            return Ok(());
        }
        let mut ingest = self.ingest(what, expected.size)?;
        ingest.write(bytes)?;
        ingest.finish(expected)
    }

    /// Record `descriptor` in `index.json`, named `name` when given. A name is held by at most
    /// one entry (a re-pull of a moved tag replaces it); unnamed entries are unique by digest.
    /// Callers add an entry only after every blob it reaches is in the store.
    pub fn add_to_index(&self, descriptor: &Descriptor, name: Option<&str>) -> Result<(), Error> {
        let _guard = self.lock()?;
        let mut index = self.layout.read_index()?;
        let mut entry = descriptor.clone();
        entry.annotations.clear();
        match name {
            Some(name) => {
                index.manifests.retain(|d| {
                    d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(name)
                });
                entry
                    .annotations
                    .insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
            }
            None => {
                if index.manifests.iter().any(|d| {
                    d.digest == entry.digest && !d.annotations.contains_key(ANNOTATION_REF_NAME)
                }) {
                    return Ok(());
                }
            }
        }
        index.manifests.push(entry);
        self.write_index(&index)
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|e| Error::Malformed {
            what: "index.json".into(),
            reason: e.to_string(),
        })?;
        self.write_atomically(&self.root().join("index.json"), &bytes)
    }

    /// Hold the store's inter-process lock until the guard drops.
    fn lock(&self) -> Result<File, Error> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| Error::io(&self.lock, e))?;
        file.lock().map_err(|e| Error::io(&self.lock, e))?;
        Ok(file)
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let mut tmp = NamedTempFile::new_in(&self.tmp).map_err(|e| Error::io(&self.tmp, e))?;
        tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(tmp.path(), e))?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        sync_dir(path.parent().unwrap_or(self.root()))
    }

    fn remove_stale_quarantine(&self) {
        let Ok(entries) = std::fs::read_dir(&self.tmp) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_QUARANTINE_AGE);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// A blob being written into quarantine. Dropped without [`Ingest::finish`], the quarantine
/// file is deleted: nothing unverified ever reaches `blobs/`.
pub struct Ingest {
    writer: BufWriter<File>,
    path: TempPath,
    hasher: CountingHasher,
    limit: u64,
    what: String,
    blobs_dir: PathBuf,
}

impl Ingest {
    /// Append bytes, refusing (before writing) anything past the limit.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let after = self.hasher.len().saturating_add(bytes.len() as u64);
        if after > self.limit {
            return Err(Error::TooLarge {
                what: self.what.clone(),
                limit: self.limit,
            });
        }
        self.hasher.update(bytes);
        self.writer
            .write_all(bytes)
            .map_err(|e| Error::io(&*self.path, e))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.hasher.len() == 0
    }

    /// Check size and digest against `expected` without storing the bytes; the quarantine
    /// file is deleted either way.
    pub fn finish_unstored(self, expected: &Descriptor) -> Result<(), Error> {
        let actual = self.hasher.finish();
        if actual != expected.digest {
            return Err(Error::DigestMismatch {
                what: self.what,
                expected: expected.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Check size and digest against `expected`; only then fsync and rename into the store.
    pub fn finish(self, expected: &Descriptor) -> Result<(), Error> {
        let Self {
            writer,
            path,
            hasher,
            what,
            blobs_dir,
            ..
        } = self;
        let actual_len = hasher.len();
        if actual_len != expected.size {
            return Err(Error::SizeMismatch {
                what,
                declared: expected.size,
                actual: actual_len,
            });
        }
        let actual = hasher.finish();
        if actual != expected.digest {
            return Err(Error::DigestMismatch {
                what,
                expected: expected.digest.clone(),
                actual,
            });
        }
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(&*path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&*path, e))?;
        drop(file);
        // INVARIANT (store integrity): a file reaches `blobs/sha256/<hex>` only here, after
        // its length and digest matched the descriptor.
        let dest = blobs_dir.join(actual.hex());
        path.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        sync_dir(&blobs_dir)
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::MEDIA_TYPE_OCI_MANIFEST;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn creates_a_valid_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let layout = Layout::open(store.root()).unwrap();
        assert!(layout.read_index().unwrap().manifests.is_empty());
        // Opening again is idempotent.
        Store::open(dir.path().join("s")).unwrap();
    }

    #[test]
    fn only_verified_bytes_reach_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = Descriptor::of("application/wasm", b"good bytes");

        let mut ingest = store.ingest("layer", 100).unwrap();
        ingest.write(b"evil bytes").unwrap();
        assert!(matches!(
            ingest.finish(&good),
            Err(Error::DigestMismatch { .. })
        ));

        let mut ingest = store.ingest("layer", 100).unwrap();
        ingest.write(b"good").unwrap();
        assert!(matches!(
            ingest.finish(&good),
            Err(Error::SizeMismatch {
                declared: 10,
                actual: 4,
                ..
            })
        ));

        let mut ingest = store.ingest("layer", 4).unwrap();
        assert!(matches!(
            ingest.write(b"good bytes"),
            Err(Error::TooLarge { limit: 4, .. })
        ));
        drop(ingest);

        assert!(files_in(&store.root().join("blobs/sha256")).is_empty());
        assert!(files_in(store.quarantine_dir()).is_empty());

        let mut ingest = store.ingest("layer", 100).unwrap();
        ingest.write(b"good ").unwrap();
        ingest.write(b"bytes").unwrap();
        ingest.finish(&good).unwrap();
        assert_eq!(
            files_in(&store.root().join("blobs/sha256")),
            vec![good.digest.hex().to_owned()]
        );
        assert!(files_in(store.quarantine_dir()).is_empty());
    }

    #[test]
    fn index_names_are_unique_and_unnamed_entries_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, b"a");
        let b = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, b"b");
        store.add_to_index(&a, Some("r/x:1")).unwrap();
        store.add_to_index(&b, Some("r/x:1")).unwrap();
        store.add_to_index(&a, None).unwrap();
        store.add_to_index(&a, None).unwrap();
        let index = store.layout().read_index().unwrap();
        assert_eq!(index.manifests.len(), 2);
        assert_eq!(
            store
                .layout()
                .find(&crate::reference::Selector::Tag("r/x:1".into()))
                .unwrap()
                .digest,
            b.digest
        );
    }
}
