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
//!
//! The store is opened once and used through directory handles, never through paths:
//!
//! - `.warrant` is the store's control directory: a [`PrivateDir`] (created 0700; refused,
//!   naming it, if it is a symbolic link, another user's, or writable by group or others, or
//!   if a directory above it is). `.warrant/tmp` is one too, and `.warrant/lock` a private file
//!   (0600; refused if others may open it, since whoever can open it can hold it). The store
//!   directory is the one that holds that `.warrant`.
//! - `blobs` and `blobs/sha256` are opened relative to the store without following symbolic
//!   links (a link there is refused, naming it); `oci-layout` and `index.json` are read as in
//!   any [`Layout`].
//! - Quarantine files are created in the `tmp` handle and renamed into the `blobs/sha256`
//!   handle; `index.json` is written in `tmp` and renamed into the store's handle; the stale
//!   sweep lists and removes regular files through the `tmp` handle only.
//!
//! The lock is waited for at most [`STORE_LOCK_WAIT`], then refused as held by another process.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::digest::{CountingHasher, Digest};
use crate::error::Error;
use crate::layout::{LAYOUT_MARKER, Layout};
use crate::limits::{STALE_QUARANTINE_AGE, STORE_LOCK_WAIT};
use crate::manifest::{ANNOTATION_REF_NAME, Descriptor, ImageIndex};
use crate::private_dir::{PrivateDir, Secrecy, TYPE_FILE, TYPE_MASK, io, kind_of};

/// Size of the write buffer in front of a quarantine file.
const INGEST_BUFFER_BYTES: usize = 1024 * 1024;

/// The store's control directory.
const CONTROL_DIR: &str = ".warrant";

/// How often a held lock is tried again while waiting for it: short against
/// [`STORE_LOCK_WAIT`], long enough not to spin.
const LOCK_POLL: Duration = Duration::from_millis(25);

/// Mode of files the store writes (as before handles: the temporary files' 0600).
const FILE_MODE: u32 = 0o600;

/// Mode of the store's content directories (`blobs`, `blobs/sha256`), as the umask allows.
const DIR_MODE: u32 = 0o755;

/// Warrant's local store, held open.
#[derive(Clone, Debug)]
pub struct Store {
    layout: Layout,
    dirs: Arc<Dirs>,
}

/// The store's directory handles.
#[derive(Debug)]
struct Dirs {
    /// `.warrant`.
    control: PrivateDir,
    /// `.warrant/tmp`: the quarantine.
    tmp: PrivateDir,
    /// `blobs/sha256`.
    blobs: Arc<OwnedFd>,
    /// Its path, for messages.
    blobs_path: PathBuf,
}

/// The store's content directory `name` in `parent`, created if missing, never a symbolic link.
fn content_dir(parent: BorrowedFd<'_>, parent_path: &Path, name: &str) -> Result<OwnedFd, Error> {
    let path = parent_path.join(name);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let opened = match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Err(Errno::NOENT) => {
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io(&path, e)),
            }
            rustix::fs::openat(parent, name, flags, Mode::empty())
        }
        opened => opened,
    };
    opened.map_err(
        |e| match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if matches!(e, Errno::LOOP | Errno::NOTDIR) => Error::Unsafe {
                reason: match kind_of(stat.st_mode) {
                    link @ "a symbolic link" => format!("it is {link}"),
                    other => format!("it is {other}, not a directory"),
                },
                path,
            },
            _ => io(&path, e),
        },
    )
}

impl Store {
    /// Open the store at `root`, creating it (and removing stale quarantine files left by a
    /// killed process) as needed. The store directory may be reached through a symbolic link
    /// (the operator named it); nothing inside it is.
    ///
    /// INVARIANT (store by handles): every directory and file below the root is opened here
    /// or later relative to a handle opened here, without following links; no write, rename
    /// or unlink goes by path.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&root)
                .map_err(|e| Error::io(&root, e))?;
        }
        let control = PrivateDir::create(&root.join(CONTROL_DIR))?;
        // The store is the directory holding the `.warrant` just checked, as it is now.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::openat(control.as_fd(), "..", flags, Mode::empty())
            .map_err(|e| io(&root, e))?;
        let tmp = control.subdir("tmp")?;
        let blobs_parent = content_dir(dir.as_fd(), &root, "blobs")?;
        let blobs_path = root.join("blobs").join("sha256");
        let blobs = Arc::new(content_dir(
            blobs_parent.as_fd(),
            &root.join("blobs"),
            "sha256",
        )?);
        let store = Self {
            layout: Layout::from_handles(root, Arc::new(dir), blobs.clone()),
            dirs: Arc::new(Dirs {
                control,
                tmp,
                blobs,
                blobs_path,
            }),
        };
        if !store.exists("oci-layout")? {
            store.write_atomically("oci-layout", LAYOUT_MARKER.as_bytes())?;
        }
        {
            let _guard = store.lock()?;
            if !store.exists("index.json")? {
                store.write_index(&ImageIndex::empty())?;
            }
            store.remove_stale_quarantine();
        }
        // A store with a corrupt marker is refused, as any layout.
        store.layout.check_marker()?;
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
        self.dirs.tmp.path()
    }

    /// Start writing a blob into quarantine. At most `limit` bytes are accepted.
    pub fn ingest(&self, what: &str, limit: u64) -> Result<Ingest, Error> {
        let (file, name) = self.dirs.tmp.create_temp("ingest-", FILE_MODE)?;
        Ok(Ingest {
            writer: BufWriter::with_capacity(INGEST_BUFFER_BYTES, file),
            quarantined: Quarantined {
                path: self.dirs.tmp.path().join(&name),
                name,
                dirs: self.dirs.clone(),
                kept: false,
            },
            hasher: CountingHasher::default(),
            limit,
            what: what.to_owned(),
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

    /// Remove the blob named `digest` (a stored file that no longer matches it), through the
    /// `blobs/sha256` handle.
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), Error> {
        match rustix::fs::unlinkat(&*self.dirs.blobs, digest.hex(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io(&self.layout.blob_path(digest), e)),
        }
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
        self.write_atomically("index.json", &bytes)
    }

    /// True when the store directory has an entry `name` (of any kind; a link not followed).
    fn exists(&self, name: &str) -> Result<bool, Error> {
        match rustix::fs::statat(self.layout.dir(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io(&self.root().join(name), e)),
        }
    }

    /// Hold the store's inter-process lock until the returned file drops. The lock file is
    /// private (0600 in the 0700 `.warrant`); a holder that does not let go within
    /// [`STORE_LOCK_WAIT`] is refused rather than waited for.
    fn lock(&self) -> Result<File, Error> {
        let control = &self.dirs.control;
        let path = control.path().join("lock");
        let flags = OFlags::RDWR | OFlags::CREATE;
        let file = control
            .open_file("lock", flags, FILE_MODE, Secrecy::Secret)?
            .ok_or_else(|| io(&path, Errno::NOENT))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < STORE_LOCK_WAIT => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::StoreLocked {
                        path,
                        waited: STORE_LOCK_WAIT,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
    }

    /// Replace the store's file `name` with `bytes`: written and synced in quarantine, renamed
    /// into the store directory's handle (a link planted at `name` is replaced, never written
    /// through), the directory synced.
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let tmp = &self.dirs.tmp;
        let (mut file, temp) = tmp.create_temp(&format!(".{name}."), FILE_MODE)?;
        let temp_path = tmp.path().join(&temp);
        let dest = self.root().join(name);
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&temp_path, e))
            .and_then(|()| {
                rustix::fs::renameat(tmp.as_fd(), temp.as_str(), self.layout.dir(), name)
                    .map_err(|e| io(&dest, e))
            });
        if written.is_err() {
            let _ = tmp.remove(&temp);
        }
        written?;
        rustix::fs::fsync(self.layout.dir()).map_err(|e| io(self.root(), e))
    }

    /// Remove quarantine files older than [`STALE_QUARANTINE_AGE`]: regular files in the
    /// quarantine's own handle, nothing else, never through a link.
    fn remove_stale_quarantine(&self) {
        let tmp = &self.dirs.tmp;
        let Ok(names) = tmp.names() else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for name in names {
            let Ok(Some(stat)) = tmp.stat(&name) else {
                continue;
            };
            let modified = u64::try_from(stat.st_mtime).unwrap_or(u64::MAX);
            let regular = stat.st_mode & TYPE_MASK == TYPE_FILE;
            if regular && now.saturating_sub(modified) > STALE_QUARANTINE_AGE.as_secs() {
                let _ = tmp.remove(&name);
            }
        }
    }
}

/// A file in quarantine, removed when dropped unless it was renamed into the store.
struct Quarantined {
    name: String,
    path: PathBuf,
    dirs: Arc<Dirs>,
    kept: bool,
}

impl Quarantined {
    /// Rename the file into `blobs/sha256/<hex>` and make the rename durable.
    fn commit(mut self, digest: &Digest) -> Result<(), Error> {
        let dirs = self.dirs.clone();
        let dest = dirs.blobs_path.join(digest.hex());
        rustix::fs::renameat(
            dirs.tmp.as_fd(),
            self.name.as_str(),
            &*dirs.blobs,
            digest.hex(),
        )
        .map_err(|e| io(&dest, e))?;
        self.kept = true;
        rustix::fs::fsync(&*dirs.blobs).map_err(|e| io(&dirs.blobs_path, e))
    }
}

impl Drop for Quarantined {
    fn drop(&mut self) {
        if !self.kept {
            let _ = self.dirs.tmp.remove(&self.name);
        }
    }
}

/// A blob being written into quarantine. Dropped without [`Ingest::finish`], the quarantine
/// file is deleted: nothing unverified ever reaches `blobs/`.
pub struct Ingest {
    writer: BufWriter<File>,
    quarantined: Quarantined,
    hasher: CountingHasher,
    limit: u64,
    what: String,
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
            .map_err(|e| Error::io(&self.quarantined.path, e))
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
            quarantined,
            hasher,
            what,
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
            .map_err(|e| Error::io(&quarantined.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(&quarantined.path, e))?;
        drop(file);
        // INVARIANT (store integrity): a file reaches `blobs/sha256/<hex>` only here, after
        // its length and digest matched the descriptor.
        quarantined.commit(&actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::MEDIA_TYPE_OCI_MANIFEST;
    use std::os::unix::fs::PermissionsExt as _;

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

    fn unsafe_refusal(result: Result<Store, Error>) -> (PathBuf, String) {
        match result {
            Err(Error::Unsafe { path, reason }) => (path, reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn set_age(path: &Path, age: Duration) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    #[test]
    fn control_files_are_private() {
        let top = tempfile::tempdir().unwrap();
        let store = Store::open(top.path().join("s")).unwrap();
        store
            .add_to_index(&Descriptor::of("x", b"x"), None)
            .unwrap();
        let mode = |p: &str| {
            std::fs::symlink_metadata(store.root().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(".warrant"), 0o700);
        assert_eq!(mode(".warrant/tmp"), 0o700);
        assert_eq!(mode(".warrant/lock"), 0o600);
    }

    #[test]
    fn links_in_place_of_store_directories_are_refused() {
        let top = tempfile::tempdir().unwrap();
        let outside = top.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        for (plant, parent) in [
            (".warrant/tmp", ".warrant"),
            (".warrant", ""),
            ("blobs/sha256", "blobs"),
            ("blobs", ""),
        ] {
            let root = top.path().join(plant.replace('/', "-"));
            std::fs::create_dir_all(root.join(parent)).unwrap();
            std::fs::set_permissions(root.join(parent), std::fs::Permissions::from_mode(0o700))
                .unwrap();
            std::os::unix::fs::symlink(&outside, root.join(plant)).unwrap();
            let (path, reason) = unsafe_refusal(Store::open(&root));
            assert!(path.ends_with(plant), "{plant}: {}", path.display());
            assert_eq!(reason, "it is a symbolic link", "{plant}");
            assert!(
                std::fs::read_dir(&outside).unwrap().next().is_none(),
                "{plant}: written through"
            );
        }
    }

    #[test]
    fn the_stale_sweep_removes_only_old_regular_files_in_the_quarantine() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("s");
        let store = Store::open(&root).unwrap();
        let tmp = store.quarantine_dir().to_owned();
        let old = STALE_QUARANTINE_AGE + Duration::from_secs(60);
        // An old regular file: a left-over of a killed download.
        std::fs::write(tmp.join("ingest-old"), b"x").unwrap();
        set_age(&tmp.join("ingest-old"), old);
        // A fresh one: a live download.
        std::fs::write(tmp.join("ingest-new"), b"x").unwrap();
        // An old file elsewhere, linked from the quarantine: neither it nor the link's target
        // is touched through the link.
        let victim = top.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        set_age(&victim, old);
        std::os::unix::fs::symlink(&victim, tmp.join("link")).unwrap();
        // An old directory.
        std::fs::create_dir(tmp.join("dir")).unwrap();
        drop(store);
        Store::open(&root).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["dir", "ingest-new", "link"]);
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn a_lock_file_others_may_open_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("s");
        Store::open(&root).unwrap();
        let lock = root.join(".warrant/lock");
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (path, reason) = unsafe_refusal(Store::open(&root));
        assert!(path.ends_with(".warrant/lock"), "{}", path.display());
        assert!(reason.contains("accessible to group or others"), "{reason}");
    }

    #[test]
    fn a_corrupt_blob_is_removed_through_the_handle() {
        let top = tempfile::tempdir().unwrap();
        let store = Store::open(top.path().join("s")).unwrap();
        let blob = Descriptor::of("x", b"bytes");
        store.put_blob(b"bytes", &blob, "blob").unwrap();
        assert!(store.layout().has_blob(&blob.digest));
        store.remove_blob(&blob.digest).unwrap();
        assert!(!store.layout().has_blob(&blob.digest));
        store.remove_blob(&blob.digest).unwrap();
    }
}
