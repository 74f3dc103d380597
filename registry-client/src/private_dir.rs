//! Directories that only the running user can change, opened once and then used through their
//! handle.
//!
//! Warrant's trusted local state (caches, compiled code, the audit log and its key) and the
//! store's own control files (its lock and quarantine directory) live in such directories. The
//! rules, enforced every time one is opened, as ssh enforces them for `~/.ssh`:
//!
//! - the directory is not a symbolic link, is a directory, is owned by the running user, and is
//!   not writable by group or others;
//! - every directory above it (after the path's own symbolic links are resolved) is owned by
//!   root or by the running user, and is not writable by group or others unless it is sticky
//!   (as `/tmp` is: there, nobody but an entry's owner may rename or remove it), so nobody else
//!   can swap it for another;
//! - a file opened in it is opened relative to the directory's handle without following a
//!   symbolic link (`O_NOFOLLOW`) and without blocking (`O_NONBLOCK`: a FIFO planted there
//!   cannot hang the open), and must be a regular file owned by the running user and not
//!   writable by group or others; a secret also not readable by them.
//!
//! Every refusal is [`Error::Unsafe`], naming the path and what is wrong with it. Something of
//! another kind in a directory's or a file's place (a regular file where a directory should
//! be, a FIFO where a file should be) is an [`Error::Io`]: unusable, but nobody else could have
//! put it there.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::error::Error;

/// Mode bits that let group or others write.
const GROUP_OTHER_WRITE: u32 = 0o022;
/// Mode bits that give group or others any access.
const GROUP_OTHER_ANY: u32 = 0o077;
/// The sticky bit.
const STICKY: u32 = 0o1000;
/// The file-type bits of a mode, and the two types accepted.
pub(crate) const TYPE_MASK: u32 = 0o170_000;
const TYPE_DIR: u32 = 0o040_000;
pub(crate) const TYPE_FILE: u32 = 0o100_000;
const TYPE_LINK: u32 = 0o120_000;

/// How private a file in a [`PrivateDir`] must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrecy {
    /// Nobody but its owner may write it (group and others may read it).
    Owner,
    /// Nobody but its owner may read or write it: keys.
    Secret,
}

/// A directory only the running user can change, held open (see the module docs).
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The running user.
fn euid() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| rustix::process::geteuid().as_raw())
}

fn unsafe_path(path: &Path, reason: impl Into<String>) -> Error {
    Error::Unsafe {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// An OS error on `path`, as the crate reports I/O errors.
pub(crate) fn io(path: &Path, errno: Errno) -> Error {
    Error::io(path, std::io::Error::from(errno))
}

/// What a mode's type bits say, for a refusal.
pub(crate) fn kind_of(mode: u32) -> &'static str {
    match mode & TYPE_MASK {
        TYPE_DIR => "a directory",
        TYPE_FILE => "a regular file",
        TYPE_LINK => "a symbolic link",
        0o010_000 => "a FIFO",
        0o140_000 => "a socket",
        0o020_000 => "a character device",
        0o060_000 => "a block device",
        _ => "of an unknown type",
    }
}

/// Something other than what was expected where a directory or file of the state should be:
/// unusable (an I/O error), not a trust violation — nobody else could have put it there.
fn wrong_kind(path: &Path, mode: u32, expected: &str) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {}, not {expected}", kind_of(mode)),
        ),
    )
}

/// The owner and write rules for the private directory or file `path` described by `meta`.
fn check_owned(path: &Path, meta: &Stat, secrecy: Secrecy) -> Result<(), Error> {
    let (owner, me) = (meta.st_uid, euid());
    if owner != me {
        return Err(unsafe_path(
            path,
            format!("it is owned by uid {owner}, not by the user running warrant (uid {me})"),
        ));
    }
    let mode = meta.st_mode;
    let forbidden = match secrecy {
        Secrecy::Owner => GROUP_OTHER_WRITE,
        Secrecy::Secret => GROUP_OTHER_ANY,
    };
    if mode & forbidden != 0 {
        let what = match secrecy {
            Secrecy::Owner => "writable by group or others",
            Secrecy::Secret => "accessible to group or others",
        };
        return Err(unsafe_path(
            path,
            format!(
                "it is {what} (mode {:04o}); only its owner may {}",
                mode & 0o7777,
                match secrecy {
                    Secrecy::Owner => "change it",
                    Secrecy::Secret => "read or change it",
                }
            ),
        ));
    }
    Ok(())
}

/// The rule for a directory above a private one: nobody but root or the running user can
/// replace what is beneath it.
fn check_ancestor(path: &Path, meta: &Stat) -> Result<(), Error> {
    let (owner, me) = (meta.st_uid, euid());
    if owner != 0 && owner != me {
        return Err(unsafe_path(
            path,
            format!(
                "a directory above warrant's state is owned by uid {owner}, neither root nor the user running warrant (uid {me}): its owner could replace what is beneath it"
            ),
        ));
    }
    let mode = meta.st_mode;
    if mode & GROUP_OTHER_WRITE != 0 && mode & STICKY == 0 {
        return Err(unsafe_path(
            path,
            format!(
                "a directory above warrant's state is writable by group or others and not sticky (mode {:04o}): they could replace what is beneath it",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// A single name inside a directory: no separator, not `.` or `..`, not empty.
fn check_name(dir: &Path, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
    if ok {
        Ok(())
    } else {
        Err(unsafe_path(
            &dir.join(name),
            "not a plain name inside the directory",
        ))
    }
}

/// A name for a temporary file no other process of this user picks at the same moment.
fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{}-{}-{nanos:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The metadata of an open descriptor.
fn metadata(fd: &OwnedFd, path: &Path) -> Result<Stat, Error> {
    rustix::fs::fstat(fd).map_err(|e| io(path, e))
}

impl PrivateDir {
    /// Open the private directory at `path`, creating it (mode 0700, and any missing parent,
    /// 0700 too) if it does not exist.
    pub fn create(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, true)
    }

    /// Open the existing private directory at `path` ([`Error::NotFound`] if there is none).
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Self, Error> {
        let absolute = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io(path, e))?
                .join(path)
        };
        let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
            return Err(unsafe_path(path, "not a directory warrant can own"));
        };
        if create {
            // Parents made here are the user's and private; existing ones are checked below.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| Error::io(parent, e))?;
        }
        let parent = std::fs::canonicalize(parent).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    what: format!("directory `{}`", path.display()),
                }
            } else {
                Error::io(parent, e)
            }
        })?;
        let parent_fd = Self::walk(&parent)?;
        let dir = Self {
            fd: parent_fd,
            path: parent.clone(),
        };
        let name = name
            .to_str()
            .ok_or_else(|| unsafe_path(path, "not UTF-8"))?;
        let opened = if create {
            dir.subdir(name)
        } else {
            dir.existing_subdir(name)?.ok_or_else(|| Error::NotFound {
                what: format!("directory `{}`", path.display()),
            })
        };
        // Name the directory as the caller did in refusals.
        opened.map_err(|e| match e {
            Error::Unsafe { path: p, reason } if p == parent.join(name) => Error::Unsafe {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Opens the canonical directory `canonical` component by component from `/`, never
    /// following a symbolic link, checking each with [`check_ancestor`].
    fn walk(canonical: &Path) -> Result<OwnedFd, Error> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let root = Path::new("/");
        let mut fd = rustix::fs::openat(rustix::fs::CWD, root, flags, Mode::empty())
            .map_err(|e| io(root, e))?;
        check_ancestor(root, &metadata(&fd, root)?)?;
        let mut here = PathBuf::from("/");
        for component in canonical.components() {
            let name = match component {
                Component::RootDir => continue,
                Component::Normal(name) => name,
                _ => return Err(unsafe_path(canonical, "not a canonical path")),
            };
            here.push(name);
            fd = rustix::fs::openat(&fd, name, flags, Mode::empty()).map_err(|e| match e {
                Errno::LOOP | Errno::NOTDIR => unsafe_path(
                    &here,
                    "it changed while it was being opened (it is no longer a directory)",
                ),
                e => io(&here, e),
            })?;
            check_ancestor(&here, &metadata(&fd, &here)?)?;
        }
        Ok(fd)
    }

    /// The directory's path (its parent canonical), for messages and for libraries that take
    /// paths.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's handle.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Why opening `name` failed: a symbolic link, another kind of file, or the OS error.
    fn refusal(&self, name: &str, errno: Errno) -> Error {
        let path = self.path.join(name);
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if (stat.st_mode & TYPE_MASK) == TYPE_LINK => {
                unsafe_path(&path, "it is a symbolic link")
            }
            Ok(stat) if matches!(errno, Errno::NOTDIR | Errno::LOOP | Errno::NXIO) => {
                wrong_kind(&path, stat.st_mode, "a directory")
            }
            _ => io(&path, errno),
        }
    }

    /// The private subdirectory `name`, created (0700) if it does not exist.
    pub fn subdir(&self, name: &str) -> Result<Self, Error> {
        if let Some(dir) = self.existing_subdir(name)? {
            return Ok(dir);
        }
        match rustix::fs::mkdirat(&self.fd, name, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io(&self.path.join(name), e)),
        }
        self.existing_subdir(name)?.ok_or_else(|| Error::NotFound {
            what: format!("directory `{}`", self.path.join(name).display()),
        })
    }

    /// The private subdirectory `name`, if it exists.
    pub fn existing_subdir(&self, name: &str) -> Result<Option<Self>, Error> {
        check_name(&self.path, name)?;
        let path = self.path.join(name);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.refusal(name, e)),
        };
        check_owned(&path, &metadata(&fd, &path)?, Secrecy::Owner)?;
        Ok(Some(Self { fd, path }))
    }

    /// Open the file `name` with `flags` (`O_NOFOLLOW`, `O_NONBLOCK` and `O_CLOEXEC` added),
    /// creating it with `mode` if `flags` say so; `None` if it does not exist and was not to
    /// be created. Refused unless a regular file private as `secrecy` says.
    pub fn open_file(
        &self,
        name: &str,
        flags: OFlags,
        mode: u32,
        secrecy: Secrecy,
    ) -> Result<Option<File>, Error> {
        check_name(&self.path, name)?;
        let path = self.path.join(name);
        let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode)) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::EXIST) if flags.contains(OFlags::EXCL) => {
                return Err(Error::io(
                    &path,
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                ));
            }
            Err(e) => return Err(self.refusal(name, e)),
        };
        let meta = metadata(&fd, &path)?;
        if meta.st_mode & TYPE_MASK != TYPE_FILE {
            return Err(wrong_kind(&path, meta.st_mode, "a regular file"));
        }
        check_owned(&path, &meta, secrecy)?;
        Ok(Some(File::from(fd)))
    }

    /// The whole of the file `name`, at most `limit` bytes; `None` if it does not exist.
    pub fn read(&self, name: &str, limit: u64, secrecy: Secrecy) -> Result<Option<Vec<u8>>, Error> {
        let Some(file) = self.open_file(name, OFlags::RDONLY, 0, secrecy)? else {
            return Ok(None);
        };
        let path = self.path.join(name);
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: format!("`{}`", path.display()),
                limit,
            });
        }
        Ok(Some(bytes))
    }

    /// A new file (mode `mode`) under a fresh name starting with `prefix`, opened for reading
    /// and writing; its name is returned beside it.
    pub fn create_temp(&self, prefix: &str, mode: u32) -> Result<(File, String), Error> {
        loop {
            let name = unique_name(prefix);
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL;
            match self.open_file(&name, flags, mode, Secrecy::Owner) {
                Ok(Some(file)) => return Ok((file, name)),
                Ok(None) => {}
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Replace the file `name` with `bytes` (mode `mode`) whole: a new file written (and
    /// synced when `sync`), then renamed over it. A link planted at `name` is replaced, never
    /// written through.
    pub fn write_atomically(
        &self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        sync: bool,
    ) -> Result<(), Error> {
        check_name(&self.path, name)?;
        let (mut file, temp) = self.create_temp(&format!(".{name}."), mode)?;
        let path = self.path.join(&temp);
        let written = file
            .write_all(bytes)
            .and_then(|()| if sync { file.sync_all() } else { Ok(()) })
            .map_err(|e| Error::io(&path, e))
            .and_then(|()| self.rename(&temp, self, name));
        if written.is_err() {
            let _ = self.remove(&temp);
        }
        written
    }

    /// Rename `from` in this directory to `to` in `target`, replacing what is there.
    pub fn rename(&self, from: &str, target: &PrivateDir, to: &str) -> Result<(), Error> {
        check_name(&self.path, from)?;
        check_name(&target.path, to)?;
        rustix::fs::renameat(&self.fd, from, &target.fd, to)
            .map_err(|e| io(&target.path.join(to), e))
    }

    /// Remove the file `name` (not a directory); nothing if it does not exist.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        check_name(&self.path, name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io(&self.path.join(name), e)),
        }
    }

    /// The names in the directory (not `.` and `..`).
    pub fn names(&self) -> Result<Vec<String>, Error> {
        let dir = rustix::fs::Dir::read_from(&self.fd).map_err(|e| io(&self.path, e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| io(&self.path, e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if let Some(name) = name.to_str()
                && name != "."
                && name != ".."
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// The metadata of `name` itself (a link is not followed); `None` if it does not exist.
    pub fn stat(&self, name: &str) -> Result<Option<rustix::fs::Stat>, Error> {
        check_name(&self.path, name)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io(&self.path.join(name), e)),
        }
    }

    /// Make the directory's entries durable (after a rename into it).
    pub fn sync(&self) -> Result<(), Error> {
        rustix::fs::fsync(&self.fd).map_err(|e| io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn refusal(result: Result<impl std::fmt::Debug, Error>) -> (PathBuf, String) {
        match result {
            Err(Error::Unsafe { path, reason }) => (path, reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_new_directory_and_its_parents_are_private() {
        let top = tempfile::tempdir().unwrap();
        let path = top.path().join("a/b/state");
        let dir = PrivateDir::create(&path).unwrap();
        for p in [top.path().join("a"), top.path().join("a/b"), path.clone()] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", p.display());
        }
        assert_eq!(
            dir.path(),
            std::fs::canonicalize(&path).unwrap(),
            "the path is canonical"
        );
        // Opening again finds it.
        PrivateDir::open(&path).unwrap();
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let elsewhere = top.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        chmod(&elsewhere, 0o700);
        let link = top.path().join("state");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let (path, reason) = refusal(PrivateDir::create(&link));
        assert_eq!(path, link);
        assert_eq!(reason, "it is a symbolic link");
        let (_, reason) = refusal(PrivateDir::open(&link));
        assert_eq!(reason, "it is a symbolic link");
    }

    #[test]
    fn a_directory_writable_by_group_or_others_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let path = top.path().join("state");
        PrivateDir::create(&path).unwrap();
        for mode in [0o770, 0o702, 0o777] {
            chmod(&path, mode);
            let (p, reason) = refusal(PrivateDir::open(&path));
            assert_eq!(p, path);
            assert!(reason.contains("writable by group or others"), "{reason}");
        }
        chmod(&path, 0o755);
        PrivateDir::open(&path).unwrap();
    }

    #[test]
    fn a_directory_owned_by_another_user_is_refused() {
        if euid() != 0 {
            return; // Only root can give a directory away.
        }
        let top = tempfile::tempdir().unwrap();
        let path = top.path().join("state");
        PrivateDir::create(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let (_, reason) = refusal(PrivateDir::open(&path));
        assert!(reason.contains("owned by uid 65534"), "{reason}");
    }

    #[test]
    fn an_ancestor_others_can_write_is_refused_unless_sticky() {
        let top = tempfile::tempdir().unwrap();
        let open = top.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let (path, reason) = refusal(PrivateDir::create(&open.join("state")));
        assert_eq!(path, std::fs::canonicalize(&open).unwrap());
        assert!(reason.contains("not sticky"), "{reason}");
        chmod(&open, 0o1777);
        PrivateDir::create(&open.join("state")).unwrap();
    }

    #[test]
    fn files_are_opened_without_following_links_or_blocking() {
        let top = tempfile::tempdir().unwrap();
        let dir = PrivateDir::create(&top.path().join("state")).unwrap();
        let secret = top.path().join("secret");
        std::fs::write(&secret, b"not yours").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("key")).unwrap();
        let (_, reason) = refusal(dir.read("key", 100, Secrecy::Secret));
        assert_eq!(reason, "it is a symbolic link");

        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let unusable = |result: Result<Option<Vec<u8>>, Error>| match result {
            Err(Error::Io { source, .. }) => source.to_string(),
            other => panic!("expected an i/o error, got {other:?}"),
        };
        let reason = unusable(dir.read("fifo", 100, Secrecy::Owner));
        assert_eq!(reason, "it is a FIFO, not a regular file");

        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let reason = unusable(dir.read("sub", 100, Secrecy::Owner));
        assert_eq!(reason, "it is a directory, not a regular file");
        assert!(dir.read("missing", 100, Secrecy::Owner).unwrap().is_none());
    }

    #[test]
    fn secrets_must_be_unreadable_to_others() {
        let top = tempfile::tempdir().unwrap();
        let dir = PrivateDir::create(&top.path().join("state")).unwrap();
        dir.write_atomically("key", b"k", 0o600, false).unwrap();
        assert_eq!(dir.read("key", 10, Secrecy::Secret).unwrap().unwrap(), b"k");
        chmod(&dir.path().join("key"), 0o640);
        let (_, reason) = refusal(dir.read("key", 10, Secrecy::Secret));
        assert!(reason.contains("accessible to group or others"), "{reason}");
        dir.read("key", 10, Secrecy::Owner).unwrap();
        chmod(&dir.path().join("key"), 0o620);
        refusal(dir.read("key", 10, Secrecy::Owner));
    }

    #[test]
    fn writing_atomically_replaces_a_planted_link() {
        let top = tempfile::tempdir().unwrap();
        let dir = PrivateDir::create(&top.path().join("state")).unwrap();
        let victim = top.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("entry")).unwrap();
        dir.write_atomically("entry", b"new", 0o600, true).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(
            dir.read("entry", 10, Secrecy::Owner).unwrap().unwrap(),
            b"new"
        );
        let names = dir.names().unwrap();
        assert_eq!(names, vec!["entry".to_owned()], "no temporary file left");
    }

    #[test]
    fn names_with_separators_are_refused() {
        let top = tempfile::tempdir().unwrap();
        let dir = PrivateDir::create(&top.path().join("state")).unwrap();
        for bad in ["", ".", "..", "a/b", "../x"] {
            refusal(dir.read(bad, 10, Secrecy::Owner));
            refusal(dir.subdir(bad));
        }
    }
}
