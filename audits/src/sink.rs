//! Every write, sync, truncation and rename the log makes goes through [`Sink`], so the tests
//! can make any one of them fail (EIO, ENOSPC, a short write) and check the log fails closed.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// An append-only file as the log uses it.
pub(crate) trait Sink: Send {
    /// Appends all of `bytes` at the end of the file (the file is opened `O_APPEND`).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (`fdatasync`: the data and the file size).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (not synced: call [`Sink::sync`]).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Puts the file this sink writes, at `from`, in place of `to` atomically; the directory is
    /// not synced. Publishes a new `head` ([`publish`]).
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        publish(from, to)
    }
    /// The plain file underneath, when syncing it directly is all [`Sink::sync`] does (so two
    /// sinks can be synced at the same time); `None` for a sink that must see every call.
    fn file(&self) -> Option<&File> {
        None
    }
}

/// The real thing.
pub(crate) struct FileSink {
    file: File,
}

impl FileSink {
    pub(crate) fn new(file: File) -> Self {
        Self { file }
    }
}

impl Sink for FileSink {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        // fdatasync also flushes the metadata needed to read the data back, which includes
        // the file size, so it covers appends and truncations alike.
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn file(&self) -> Option<&File> {
        Some(&self.file)
    }
}

/// Fault injection for the tests: a shared plan counts every call made through every sink
/// built from it and fails the chosen one(s).
/// Puts `from` in place of `to` atomically (the directory is not synced): the two names are
/// exchanged (`renameat2(RENAME_EXCHANGE)`) when both exist, so `from` then holds what `to`
/// held, and nothing is freed; else (no `to` yet, or a file system that cannot exchange)
/// `from` is renamed over `to`.
///
/// Why not always `rename(2)`: replacing `to` frees its inode and block, which on a file system
/// mounted with `discard` costs about as much as the `fdatasync` before it (80 µs of a
/// checkpoint's 330 µs here, and the deletion of the next `head.tmp` as much again).
pub(crate) fn publish(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, from, CWD, to, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
            std::fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
pub(crate) mod fault {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// How the chosen call fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// `EIO`, nothing written.
        Eio,
        /// `ENOSPC`, nothing written.
        Enospc,
        /// Half the bytes are written, then the write fails (`WriteZero`); a sync, a
        /// truncation or a rename chosen for this fault fails with `EIO`.
        Short,
    }

    /// Which calls fail. Calls are numbered from 1 across all sinks sharing the plan.
    #[derive(Debug)]
    pub(crate) struct Plan {
        calls: AtomicU64,
        /// How many of the calls were syncs.
        syncs: AtomicU64,
        /// The first call to fail; 0 never fails.
        fail_at: u64,
        fault: Fault,
        /// Keep failing every call after the first failure (a dead disk), so that even the
        /// log's rollback fails.
        sticky: bool,
        /// Skip the real fsync (for building big logs quickly; durability is not under test).
        skip_sync: bool,
    }

    impl Plan {
        pub(crate) fn new(fail_at: u64, fault: Fault, sticky: bool) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                fail_at,
                fault,
                sticky,
                skip_sync: false,
            })
        }

        /// Counts calls, never fails.
        pub(crate) fn counting() -> Arc<Self> {
            Self::new(0, Fault::Eio, false)
        }

        /// Never fails, never fsyncs.
        pub(crate) fn no_sync() -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                fail_at: 0,
                fault: Fault::Eio,
                sticky: false,
                skip_sync: true,
            })
        }

        pub(crate) fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }

        /// How many sync calls were made (including failed ones).
        pub(crate) fn syncs(&self) -> u64 {
            self.syncs.load(Ordering::SeqCst)
        }

        /// Counts a call and says whether it must fail.
        fn next_fails(&self) -> bool {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.fail_at != 0 && (n == self.fail_at || (self.sticky && n > self.fail_at))
        }

        fn error(&self) -> io::Error {
            match self.fault {
                Fault::Eio | Fault::Short => io::Error::from_raw_os_error(5), // EIO
                Fault::Enospc => io::Error::from_raw_os_error(28),            // ENOSPC
            }
        }
    }

    pub(crate) struct FaultySink {
        pub(crate) inner: FileSink,
        pub(crate) plan: Arc<Plan>,
    }

    impl Sink for FaultySink {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            if self.plan.next_fails() {
                if self.plan.fault == Fault::Short {
                    self.inner.append(&bytes[..bytes.len() / 2])?;
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
                }
                return Err(self.plan.error());
            }
            self.inner.append(bytes)
        }

        fn sync(&mut self) -> io::Result<()> {
            self.plan.syncs.fetch_add(1, Ordering::SeqCst);
            if self.plan.next_fails() {
                return Err(self.plan.error());
            }
            if self.plan.skip_sync {
                Ok(())
            } else {
                self.inner.sync()
            }
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            if self.plan.next_fails() {
                return Err(self.plan.error());
            }
            self.inner.truncate(len)
        }

        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            if self.plan.next_fails() {
                return Err(self.plan.error());
            }
            self.inner.rename(from, to)
        }
    }
}
