//! Reading an OCI image-layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`).
//!
//! A layout handed to Warrant is as untrusted as a registry: every document is size-bounded
//! and digest-checked, and a blob's name is derived only from a validated digest. The
//! directory is opened once and everything in it is opened relative to that handle:
//!
//! - `blobs` and `blobs/sha256` without following a symbolic link;
//! - every file (`oci-layout`, `index.json`, each blob) without following a symbolic link
//!   (`O_NOFOLLOW`) and without blocking (`O_NONBLOCK`: a FIFO planted there cannot hang the
//!   open, and a file that would make a read wait fails it instead), and only if it is a
//!   regular file: a FIFO, socket or device is refused at once, by name.
//!
//! Owners and modes are not checked: a layout is content, re-verified by digest, and may
//! belong to anyone. (The store's own control files are; see [`crate::store`].)

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::digest::Digest;
use crate::error::Error;
use crate::limits::{MAX_LAYOUT_MARKER_BYTES, MAX_MANIFEST_BYTES};
use crate::manifest::{ANNOTATION_REF_NAME, Descriptor, ImageIndex};
use crate::private_dir::{TYPE_FILE, TYPE_MASK, io, kind_of};
use crate::reference::Selector;

/// The `oci-layout` marker's contents.
pub(crate) const LAYOUT_MARKER: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// A read-only view of an OCI image-layout directory, held open.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    dir: Arc<OwnedFd>,
    /// `blobs/sha256`; `None` when the layout has no blobs directory (it holds no blob).
    blobs: Option<Arc<OwnedFd>>,
}

impl Layout {
    /// Open an existing layout, checking its `oci-layout` marker.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::open(&root, flags, Mode::empty()).map_err(|e| match e {
            Errno::NOENT => Error::NotFound {
                what: format!("layout directory `{}`", root.display()),
            },
            e => io(&root, e),
        })?;
        let blobs = match open_dir(dir.as_fd(), &root, "blobs")? {
            Some(blobs) => open_dir(blobs.as_fd(), &root.join("blobs"), "sha256")?,
            None => None,
        };
        let layout = Self {
            root,
            dir: Arc::new(dir),
            blobs: blobs.map(Arc::new),
        };
        layout.check_marker()?;
        Ok(layout)
    }

    /// A layout from handles the caller opened and checked (the store's own).
    pub(crate) fn from_handles(root: PathBuf, dir: Arc<OwnedFd>, blobs: Arc<OwnedFd>) -> Self {
        Self {
            root,
            dir,
            blobs: Some(blobs),
        }
    }

    /// Refuse a layout whose `oci-layout` marker is missing, malformed or of another version.
    pub(crate) fn check_marker(&self) -> Result<(), Error> {
        let marker = self.read_file("oci-layout", MAX_LAYOUT_MARKER_BYTES, "`oci-layout` file")?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Marker {
            image_layout_version: String,
        }
        let m: Marker = crate::json::parse(&marker, "`oci-layout` file")?;
        if m.image_layout_version != "1.0.0" {
            return Err(Error::Malformed {
                what: format!("`{}`", self.root.join("oci-layout").display()),
                reason: format!(
                    "unsupported imageLayoutVersion `{}`",
                    m.image_layout_version
                ),
            });
        }
        Ok(())
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory's handle.
    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Where the blob with `digest` lives (whether or not it exists), for messages and for
    /// readers that take paths.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        // INVARIANT (path safety): `Digest` holds exactly 64 lowercase hex characters, so the
        // joined path cannot leave `blobs/sha256`.
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Read and parse `index.json`.
    pub fn read_index(&self) -> Result<ImageIndex, Error> {
        let bytes = self.read_file("index.json", MAX_MANIFEST_BYTES, "`index.json`")?;
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

    /// Open a blob for streaming, with its length. Refuses anything but a regular file (no
    /// symlinks, devices, sockets or FIFOs), so a hostile layout cannot point us at
    /// `/dev/zero` or a secret, or hang us on a pipe.
    pub fn open_blob(&self, digest: &Digest) -> Result<(File, u64), Error> {
        let not_found = || Error::NotFound {
            what: format!("blob `{digest}` in layout `{}`", self.root.display()),
        };
        let blobs = self.blobs.as_ref().ok_or_else(not_found)?;
        let path = self.blob_path(digest);
        open_regular(blobs.as_fd(), digest.hex(), &path)?.ok_or_else(not_found)
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

    /// True when a blob file (a regular file, not a link to one) exists for `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.as_ref().is_some_and(|blobs| {
            rustix::fs::statat(blobs.as_fd(), digest.hex(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| stat.st_mode & TYPE_MASK == TYPE_FILE)
        })
    }

    /// The file `name` in the layout directory, at most `limit` bytes.
    fn read_file(&self, name: &str, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
        let path = self.root.join(name);
        let (file, _) = open_regular(self.dir(), name, &path)?.ok_or_else(|| Error::NotFound {
            what: format!("{what} at `{}`", path.display()),
        })?;
        read_bounded(file, limit, what, &path)
    }
}

fn malformed(path: &Path, reason: String) -> Error {
    Error::Malformed {
        what: format!("`{}`", path.display()),
        reason,
    }
}

/// The directory `name` in `parent` (at `parent_path`), not following a symbolic link; `None`
/// if there is none.
fn open_dir(
    parent: BorrowedFd<'_>,
    parent_path: &Path,
    name: &str,
) -> Result<Option<OwnedFd>, Error> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(refusal(parent, parent_path, name, e, "a directory")),
    }
}

/// Why opening `name` in `dir` failed with `errno`: what it is, if it is not what was wanted.
fn refusal(dir: BorrowedFd<'_>, dir_path: &Path, name: &str, errno: Errno, wanted: &str) -> Error {
    let path = dir_path.join(name);
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if matches!(errno, Errno::LOOP | Errno::NOTDIR | Errno::NXIO) => malformed(
            &path,
            format!("it is {}, not {wanted}", kind_of(stat.st_mode)),
        ),
        _ => io(&path, errno),
    }
}

/// Open the regular file `name` in `dir` for reading, with its length: not following a final
/// symbolic link, not blocking, refusing anything that is not a regular file. `None` if it does
/// not exist.
///
/// The descriptor stays non-blocking: a read of a regular file never waits for a writer, and
/// one that would (a special file dressed as regular) fails instead of hanging.
pub(crate) fn open_regular(
    dir: BorrowedFd<'_>,
    name: &str,
    path: &Path,
) -> Result<Option<(File, u64)>, Error> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => {
            return Err(refusal(
                dir,
                path.parent().unwrap_or(path),
                name,
                e,
                "a regular file",
            ));
        }
    };
    regular(fd, path).map(Some)
}

/// Read a file of at most `limit` bytes named by the operator (links followed), without
/// blocking on a FIFO and only if it is a regular file.
pub(crate) fn read_file_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
        Errno::NOENT => Error::NotFound {
            what: format!("{what} at `{}`", path.display()),
        },
        e => io(path, e),
    })?;
    let (file, _) = regular(fd, path)?;
    read_bounded(file, limit, what, path)
}

/// The open `fd` (of `path`) as a file with its length, if `fstat` says it is a regular file;
/// anything else is refused, naming what it is.
fn regular(fd: OwnedFd, path: &Path) -> Result<(File, u64), Error> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| io(path, e))?;
    if stat.st_mode & TYPE_MASK != TYPE_FILE {
        return Err(malformed(
            path,
            format!("it is {}, not a regular file", kind_of(stat.st_mode)),
        ));
    }
    let len = u64::try_from(stat.st_size).unwrap_or_default();
    Ok((File::from(fd), len))
}

/// Read at most `limit` bytes of `file`; more is refused.
pub(crate) fn read_bounded(
    file: File,
    limit: u64,
    what: &str,
    path: &Path,
) -> Result<Vec<u8>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn mkfifo(path: &Path) {
        assert!(
            std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    }

    fn malformed_reason(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
        match result {
            Err(Error::Malformed { what, reason }) => (what, reason),
            other => panic!("expected a malformed layout, got {other:?}"),
        }
    }

    #[test]
    fn special_files_and_links_in_a_layout_are_refused_by_name() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("layout");
        let store = Store::open(&root).unwrap();
        let blob = Descriptor::of("application/octet-stream", b"bytes");
        store.put_blob(b"bytes", &blob, "blob").unwrap();
        let layout = Layout::open(&root).unwrap();
        assert_eq!(
            layout.read_blob(&blob.digest, 10, "blob").unwrap(),
            b"bytes"
        );

        // A FIFO in place of the blob: not waited on, refused.
        let path = layout.blob_path(&blob.digest);
        std::fs::remove_file(&path).unwrap();
        mkfifo(&path);
        assert!(!layout.has_blob(&blob.digest));
        let (what, reason) = malformed_reason(layout.open_blob(&blob.digest));
        assert_eq!(what, format!("`{}`", path.display()));
        assert_eq!(reason, "it is a FIFO, not a regular file");

        // A link to a regular file: not followed.
        std::fs::remove_file(&path).unwrap();
        let secret = top.path().join("secret");
        std::fs::write(&secret, b"bytes").unwrap();
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        assert!(!layout.has_blob(&blob.digest));
        let (_, reason) = malformed_reason(layout.open_blob(&blob.digest));
        assert_eq!(reason, "it is a symbolic link, not a regular file");

        // A FIFO in place of `index.json` and of the marker.
        std::fs::remove_file(root.join("index.json")).unwrap();
        mkfifo(&root.join("index.json"));
        let (_, reason) = malformed_reason(layout.read_index());
        assert_eq!(reason, "it is a FIFO, not a regular file");
        std::fs::remove_file(root.join("oci-layout")).unwrap();
        mkfifo(&root.join("oci-layout"));
        let (what, reason) = malformed_reason(Layout::open(&root));
        assert_eq!(what, format!("`{}`", root.join("oci-layout").display()));
        assert_eq!(reason, "it is a FIFO, not a regular file");
    }

    #[test]
    fn a_symlinked_blob_directory_in_a_layout_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("layout");
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        std::fs::write(root.join("oci-layout"), LAYOUT_MARKER).unwrap();
        let elsewhere = top.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("blobs/sha256")).unwrap();
        let (what, reason) = malformed_reason(Layout::open(&root));
        assert_eq!(what, format!("`{}`", root.join("blobs/sha256").display()));
        assert_eq!(reason, "it is a symbolic link, not a directory");
    }

    #[test]
    fn a_layout_without_blobs_holds_none() {
        let top = tempfile::tempdir().unwrap();
        std::fs::write(top.path().join("oci-layout"), LAYOUT_MARKER).unwrap();
        let layout = Layout::open(top.path()).unwrap();
        let digest = Digest::of(b"x");
        assert!(!layout.has_blob(&digest));
        assert!(matches!(
            layout.open_blob(&digest),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            Layout::open(top.path().join("missing")),
            Err(Error::NotFound { .. })
        ));
    }
}
