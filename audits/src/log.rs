//! The writer: [`AuditLog`].

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, SigningKeyMaterial, sign_checkpoint, valid_origin};
use crate::record::{RECOVERED_KIND, RecordError, encode};
use crate::sink::{FileSink, Sink};
use crate::state;
use crate::verify::{Anchor, Place, VerifyFailure, read_head, scan};
use crate::{CHECKPOINTS_FILE, HEAD_FILE, HEAD_TMP_FILE, LOCK_FILE, LOG_FILE};

/// The default cadence of kept checkpoints ([`AuditLog::set_keep_every`]): a checkpoint is
/// kept (appended to `checkpoints`) once the tree has grown by at least this many records
/// since the last kept one; the checkpoints in between replace the head.
pub const DEFAULT_KEEP_EVERY: u64 = 1000;

/// Why an operation on the log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading, writing or syncing failed. If it happened in `append` or `checkpoint`, the log
    /// is now poisoned.
    #[error("audit log I/O: {0}")]
    Io(#[from] io::Error),
    /// An earlier write or sync failed; this handle refuses everything. Drop it and `open` the
    /// log again, which recovers it.
    #[error("the audit log handle is poisoned by an earlier I/O failure; reopen the log")]
    Poisoned,
    /// Another handle (in this or another process) holds the log's lock.
    #[error("the audit log is locked by another writer")]
    Locked,
    /// The record was refused before anything was written (the log is not poisoned).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The origin is not a valid note key name.
    #[error("invalid log origin {0:?}: want 1 to 256 printable ASCII bytes, no space or '+'")]
    InvalidOrigin(String),
    /// The log on disk fails verification, beyond a torn tail: `open` changes nothing.
    #[error("the audit log is corrupt: {0}")]
    Corrupt(#[from] VerifyFailure),
}

/// What `open` repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of an incomplete last line cut from `log.jsonl`.
    pub truncated_bytes: u64,
    /// Bytes of an incomplete last entry cut from `checkpoints`. (A `head.tmp` is never read:
    /// it was never the head.)
    pub truncated_checkpoint_bytes: u64,
    /// The index of the `recovered` record appended to say so, if anything was cut.
    pub recovered_index: Option<u64>,
}

/// An open audit log: the only writer of its directory while it lives (it holds an exclusive
/// `flock` on `<dir>/lock`, released when it is dropped or the process dies).
///
/// Every `append`, `commit` and `checkpoint` is durable when it returns `Ok` (for a checkpoint
/// written as the head, see [`AuditLog::checkpoint`] on a crash right after it); a record written
/// with `append_deferred` is acknowledged only by a later `commit` (or `append`, or
/// `checkpoint`), which makes every record written so far durable with one `fdatasync` (group
/// commit). Any write or sync error poisons the handle: it makes a best-effort rollback of the
/// files to their last acknowledged length (dropping every uncommitted record), then refuses
/// every later call with [`AuditError::Poisoned`]. It never retries and carries on, because
/// after a failed `fsync` the kernel may have dropped the data and nothing written afterwards
/// could be trusted to sit on top of it.
pub struct AuditLog {
    dir: PathBuf,
    origin: String,
    key: SigningKeyMaterial,
    log: Box<dyn Sink>,
    checkpoints: Box<dyn Sink>,
    /// Makes the sink each new `head.tmp` is written through.
    make_sink: MakeSink,
    /// The tree of acknowledged (committed) records.
    tree: Frontier,
    /// The tree of every record written, committed or not (`tree` plus the pending ones).
    written: Frontier,
    /// Acknowledged (synced) length of `log.jsonl`.
    log_len: u64,
    /// Length of `log.jsonl` including records written but not yet committed.
    written_len: u64,
    /// `fdatasync` calls made through this handle (both files).
    syncs: u64,
    /// Acknowledged (synced) length of `checkpoints`.
    checkpoints_len: u64,
    /// Acknowledged kept checkpoints.
    checkpoint_count: u64,
    /// The size of the last kept checkpoint (0 if none).
    kept_size: u64,
    /// Records between kept checkpoints.
    keep_every: u64,
    /// The head checkpoint in the directory, as far as this handle knows.
    head: Option<Checkpoint>,
    /// The newest acknowledged checkpoint, kept or head.
    last_checkpoint: Option<Checkpoint>,
    /// Records `open` took from the `state` file's checkpoint without reading them.
    started_from: u64,
    poisoned: bool,
    // Last, so it is released after the sinks are closed.
    _lock: File,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("origin", &self.origin)
            .field("size", &self.tree.size())
            .field("pending", &self.pending())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Which file a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Log,
    Checkpoints,
    /// `head.tmp`, put in place of `head` once synced.
    Head,
}

pub(crate) type MakeSink = Arc<dyn Fn(File, Role) -> Box<dyn Sink> + Send + Sync>;

impl AuditLog {
    /// Opens (creating if needed) the log in `dir`, verifies all of it, and repairs a torn tail
    /// (see [`Recovery`]); the `recovered` record, if any, is stamped with the clock.
    pub fn open(
        dir: &Path,
        origin: &str,
        key: SigningKeyMaterial,
    ) -> Result<(AuditLog, Recovery), AuditError> {
        Self::open_at(dir, origin, key, SystemTime::now())
    }

    /// [`AuditLog::open`], stamping a `recovered` record with `now`.
    pub fn open_at(
        dir: &Path,
        origin: &str,
        key: SigningKeyMaterial,
        now: SystemTime,
    ) -> Result<(AuditLog, Recovery), AuditError> {
        Self::open_with(
            dir,
            origin,
            key,
            now,
            Arc::new(|file, _| Box::new(FileSink::new(file))),
        )
    }

    pub(crate) fn open_with(
        dir: &Path,
        origin: &str,
        key: SigningKeyMaterial,
        now: SystemTime,
        make_sink: MakeSink,
    ) -> Result<(AuditLog, Recovery), AuditError> {
        if !valid_origin(origin) {
            return Err(AuditError::InvalidOrigin(origin.to_owned()));
        }
        let new_dir = !dir.try_exists()?;
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        if new_dir && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the new directory's own entry durable.
            File::open(parent)?.sync_all()?;
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(AuditError::Locked),
            Err(TryLockError::Error(e)) => return Err(AuditError::Io(e)),
        }

        // Under the lock: nobody else writes from here on.
        let log_path = dir.join(LOG_FILE);
        let checkpoints_path = dir.join(CHECKPOINTS_FILE);
        let created = !log_path.try_exists()? || !checkpoints_path.try_exists()?;
        let open_append = |path: &Path| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)
        };
        let log_file = open_append(&log_path)?;
        let checkpoints_file = open_append(&checkpoints_path)?;
        if created {
            // Make the new directory entries durable too.
            File::open(dir)?.sync_all()?;
        }
        // A `head.tmp` (the previous head, exchanged out, or what a crash before a rename
        // left) is never the head: it is not read, and the next head is written over it.

        // The head, authenticated first: a head that is not one checkpoint signed by the key
        // fails the open, as a bad entry of `checkpoints` does.
        let public_key = key.public_key();
        let head = read_head(dir, &public_key, origin)?;

        // A trusted starting point if the `state` file holds one that checks out; else, or if
        // what follows it does not verify, the whole log.
        let mut log_reader = File::open(&log_path)?;
        let mut checkpoints_reader = File::open(&checkpoints_path)?;
        let fast = state::read(
            dir,
            &mut log_reader,
            &mut checkpoints_reader,
            head.as_ref(),
            &public_key,
            origin,
        )
        .and_then(|anchor| {
            let from = anchor.tree.size();
            scan(
                &log_reader,
                &checkpoints_reader,
                head.clone(),
                Some(anchor),
                false,
                &public_key,
                origin,
                &mut |_| {},
            )
            .ok()
            .map(|scanned| (from, scanned))
        });
        let (started_from, scanned) = match fast {
            Some(fast) => fast,
            None => {
                let scanned = scan(
                    File::open(&log_path)?,
                    File::open(&checkpoints_path)?,
                    head,
                    None,
                    false,
                    &public_key,
                    origin,
                    &mut |_| {},
                )?;
                if let Some(anchor) = &scanned.anchor {
                    // Best effort: the next open starts there.
                    let _written = state::write(dir, anchor);
                }
                (0, scanned)
            }
        };

        let mut log = AuditLog {
            dir: dir.to_path_buf(),
            origin: origin.to_owned(),
            key,
            log: make_sink(log_file, Role::Log),
            checkpoints: make_sink(checkpoints_file, Role::Checkpoints),
            make_sink,
            written: scanned.tree.clone(),
            tree: scanned.tree,
            log_len: scanned.log_len,
            written_len: scanned.log_len,
            syncs: 0,
            checkpoints_len: scanned.checkpoints_len,
            checkpoint_count: scanned.checkpoints,
            kept_size: scanned.kept_size,
            keep_every: DEFAULT_KEEP_EVERY,
            head: scanned.head,
            last_checkpoint: scanned.last_checkpoint,
            started_from,
            poisoned: false,
            _lock: lock,
        };
        let mut recovery = Recovery {
            truncated_bytes: scanned.torn_tail_bytes,
            truncated_checkpoint_bytes: scanned.torn_checkpoint_bytes,
            recovered_index: None,
        };
        if recovery.truncated_bytes > 0 {
            let len = log.log_len;
            log.log.truncate(len)?;
            log.syncs += 1;
            log.log.sync()?;
        }
        if recovery.truncated_checkpoint_bytes > 0 {
            let len = log.checkpoints_len;
            log.checkpoints.truncate(len)?;
            log.syncs += 1;
            log.checkpoints.sync()?;
        }
        if recovery.truncated_bytes > 0 || recovery.truncated_checkpoint_bytes > 0 {
            let body = json!({
                "truncated_bytes": recovery.truncated_bytes,
                "truncated_checkpoint_bytes": recovery.truncated_checkpoint_bytes,
            });
            let index = log.write_record(RECOVERED_KIND, body, now)?;
            log.commit()?;
            recovery.recovered_index = Some(index);
        }
        Ok((log, recovery))
    }

    /// Appends a record and returns its index once it is durable (`fdatasync`ed), together
    /// with every record written before it by [`AuditLog::append_deferred`].
    ///
    /// `kind` is 1 to 64 of `[a-z0-9._-]` starting with a letter, and not `recovered`;
    /// `body` must be a JSON object; the canonical record must fit in
    /// [`crate::MAX_RECORD_BYTES`]. Those errors write nothing and do not poison the log.
    pub fn append(&mut self, kind: &str, body: Value, time: SystemTime) -> Result<u64, AuditError> {
        let index = self.append_deferred(kind, body, time)?;
        self.commit()?;
        Ok(index)
    }

    /// [`AuditLog::append`], stamped with the clock.
    pub fn append_now(&mut self, kind: &str, body: Value) -> Result<u64, AuditError> {
        self.append(kind, body, SystemTime::now())
    }

    /// Writes a record (one `write`) without syncing it and returns the index it will have.
    /// It is **not acknowledged**: only a later [`AuditLog::commit`] (or `append`, or
    /// `checkpoint`) that returns `Ok` makes it durable. Until then a crash may or may not
    /// keep it, and a failed write or sync rolls it back with the rest of the uncommitted
    /// records. Act on nothing it records before the commit.
    ///
    /// The same arguments are checked as by [`AuditLog::append`], with the same errors.
    pub fn append_deferred(
        &mut self,
        kind: &str,
        body: Value,
        time: SystemTime,
    ) -> Result<u64, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        if kind == RECOVERED_KIND {
            return Err(RecordError::ReservedKind.into());
        }
        self.write_record(kind, body, time)
    }

    /// Makes every record written so far durable with **one** `fdatasync`, then acknowledges
    /// them: returns the number of acknowledged records ([`AuditLog::size`]). With nothing
    /// pending it syncs nothing. A failed sync poisons the handle and rolls the file back to
    /// the previous commit, so none of the pending records is acknowledged.
    pub fn commit(&mut self) -> Result<u64, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        if self.written.size() == self.tree.size() {
            return Ok(self.tree.size());
        }
        self.syncs += 1;
        if let Err(e) = self.log.sync() {
            return Err(self.poison(e));
        }
        self.tree = self.written.clone();
        self.log_len = self.written_len;
        Ok(self.tree.size())
    }

    /// Writes one record line (not synced).
    fn write_record(
        &mut self,
        kind: &str,
        body: Value,
        time: SystemTime,
    ) -> Result<u64, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        let index = self.written.size();
        let mut line = encode(index, time, kind, body)?;
        let leaf = leaf_hash(&line);
        line.push(b'\n');
        if let Err(e) = self.log.append(&line) {
            return Err(self.poison(e));
        }
        self.written.push(leaf);
        self.written_len += line.len() as u64;
        Ok(index)
    }

    /// Signs the tree head over every record written (committing any pending ones) and
    /// returns it once durable, as a **kept** checkpoint or as the **head**:
    ///
    /// * kept, if the tree has grown by at least [`AuditLog::keep_every`] records since the last
    ///   kept checkpoint (the first kept one once it holds that many): the pending records are
    ///   committed (see [`AuditLog::commit`]), then the checkpoint is appended to
    ///   `checkpoints` with one `write` and one `fdatasync`. A head left from before is then
    ///   removed (best effort: a head that stays behind signs an older size and still matches);
    /// * else the head: written whole to `head.tmp` (the previous head's file, reused),
    ///   `fdatasync`ed, and exchanged with `head` (one `write`, one `fdatasync`, one
    ///   `renameat2`), so `head` is always one whole signed checkpoint, the previous one until
    ///   the exchange. With records pending, the
    ///   log's `fdatasync` (their commit) and `head.tmp`'s run at the same time, and the
    ///   rename waits for both: the head is published only over durable records. The
    ///   directory is not synced: it would cost a second sync per checkpoint, and what a
    ///   crash can undo is only the rename. The data under either name is synced, so after a
    ///   crash `head` is the new checkpoint or the previous one — both signatures over
    ///   durable records; in the second case the records after the previous head are
    ///   reported unproven until the next checkpoint, none is lost, and `head.tmp` is written
    ///   over by the next checkpoint.
    ///
    /// Pending records are acknowledged exactly when the log's sync succeeded: if it did and
    /// the checkpoint's own write, sync or rename failed, the records stay acknowledged
    /// (`size` counts them), the handle is poisoned, and only the checkpoint is rolled back:
    /// `checkpoints` is cut back to its acknowledged length, the previous head stays in place
    /// and `head.tmp` is deleted. A head whose `head.tmp` cannot be created or written
    /// poisons the handle before the log is synced: the pending records are rolled back
    /// unacknowledged, as by a failed commit.
    pub fn checkpoint(&mut self) -> Result<Checkpoint, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        let size = self.written.size();
        let kept = size >= self.kept_size.saturating_add(self.keep_every);
        let cp = sign_checkpoint(&self.key, &self.origin, size, self.written.root());
        let mut entry = Vec::with_capacity(cp.note.len() + 1);
        entry.extend_from_slice(cp.note.as_bytes());
        entry.push(b'\n');
        if kept {
            self.commit()?;
            self.write_kept(&cp, &entry)?;
        } else {
            self.write_head(&cp, &entry)?;
        }
        self.last_checkpoint = Some(cp.clone());
        Ok(cp)
    }

    /// Appends a kept checkpoint's entry to `checkpoints`, durably.
    fn write_kept(&mut self, cp: &Checkpoint, entry: &[u8]) -> Result<(), AuditError> {
        self.syncs += 1;
        if let Err(e) = self
            .checkpoints
            .append(entry)
            .and_then(|()| self.checkpoints.sync())
        {
            return Err(self.poison(e));
        }
        let offset = self.checkpoints_len;
        self.checkpoints_len += entry.len() as u64;
        self.checkpoint_count += 1;
        self.kept_size = cp.size;
        // The head is now stale (it signs at most this size); a stale head that stays (the
        // removal failed, or a crash undid it) still matches, and is accepted as such.
        match std::fs::remove_file(self.dir.join(HEAD_FILE)) {
            Ok(()) => self.head = None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.head = None,
            Err(_) => {}
        }
        // Best effort, after the checkpoint is durable: the next `open` may start here.
        self.write_state(cp, Place::Kept { offset });
        Ok(())
    }

    /// Writes the `state` file anchored at `cp`, just made durable at `place`, best effort
    /// (a failure leaves an older, still valid starting point, or none).
    fn write_state(&self, cp: &Checkpoint, place: Place) {
        let _written = state::write(
            &self.dir,
            &Anchor {
                tree: self.tree.clone(),
                log_len: self.log_len,
                checkpoint: cp.clone(),
                place,
                kept: self.checkpoint_count,
                kept_size: self.kept_size,
                checkpoints_len: self.checkpoints_len,
            },
        );
    }

    /// Replaces the head with `cp`, which signs every record written: `head.tmp` is written
    /// through a sink, synced together with the log (which commits the pending records), and
    /// put in place of `head` ([`crate::sink::publish`]) once both syncs succeeded.
    fn write_head(&mut self, cp: &Checkpoint, entry: &[u8]) -> Result<(), AuditError> {
        let tmp = self.dir.join(HEAD_TMP_FILE);
        let file = open_head_tmp(&tmp, entry.len());
        let mut sink = match file {
            Ok(file) => (self.make_sink)(file, Role::Head),
            Err(e) => return Err(self.poison(e)),
        };
        if let Err(e) = sink.append(entry) {
            drop(sink);
            let _removed = std::fs::remove_file(&tmp);
            return Err(self.poison(e));
        }
        let pending = self.written.size() != self.tree.size();
        let (committed, synced) = if pending {
            self.syncs += 2;
            sync_both(&mut *self.log, &mut *sink)
        } else {
            self.syncs += 1;
            (Ok(()), sink.sync())
        };
        let published = match committed {
            Ok(()) => {
                // The pending records are durable: acknowledged, whatever becomes of the head.
                self.tree = self.written.clone();
                self.log_len = self.written_len;
                synced.and_then(|()| sink.rename(&tmp, &self.dir.join(HEAD_FILE)))
            }
            Err(e) => Err(e),
        };
        drop(sink);
        if let Err(e) = published {
            // The previous head is untouched; the new one was never in place.
            let _removed = std::fs::remove_file(&tmp);
            return Err(self.poison(e));
        }
        self.head = Some(cp.clone());
        // Best effort: the next `open` may start at the head.
        self.write_state(cp, Place::Head);
        Ok(())
    }

    /// Appends a record, then checkpoints the tree that ends with it: the record is then both
    /// durable and covered by a signature. If that checkpoint is kept (with
    /// [`AuditLog::set_keep_every`] at 0 or 1, every one is), `verify` can name the record
    /// exactly if it is altered; under the head, it names the first record after the last kept
    /// checkpoint.
    pub fn append_checkpointed(
        &mut self,
        kind: &str,
        body: Value,
        time: SystemTime,
    ) -> Result<(u64, Checkpoint), AuditError> {
        let index = self.append(kind, body, time)?;
        Ok((index, self.checkpoint()?))
    }

    /// Sets how many records the tree must have grown by since the last kept checkpoint for
    /// [`AuditLog::checkpoint`] to keep the next one (append it to `checkpoints`) rather than
    /// write it as the head. Default [`DEFAULT_KEEP_EVERY`] (1,000). With 0, every checkpoint
    /// is kept and no head is written; with 1, every checkpoint that signs a new record is
    /// kept.
    ///
    /// The cadence bounds what [`crate::verify`] spends on signatures (one per kept
    /// checkpoint, plus the head) and how precisely it locates an edit: to the records between
    /// the last kept checkpoint it matched and the first checkpoint that fails.
    pub fn set_keep_every(&mut self, records: u64) {
        self.keep_every = records;
    }

    /// The cadence of kept checkpoints (see [`AuditLog::set_keep_every`]).
    pub fn keep_every(&self) -> u64 {
        self.keep_every
    }

    /// Poisons the handle and rolls the files back to their acknowledged lengths, best effort:
    /// a failed write may have left part of a line, a failed sync whole unacknowledged ones.
    /// If the rollback fails too, `open` will cut a partial line, but a whole unacknowledged
    /// line that reached the disk stays (see the crate docs).
    fn poison(&mut self, error: io::Error) -> AuditError {
        self.poisoned = true;
        self.written = self.tree.clone();
        self.written_len = self.log_len;
        let (log_len, checkpoints_len) = (self.log_len, self.checkpoints_len);
        self.syncs += 2;
        let _rolled_back = self.log.truncate(log_len).and_then(|()| self.log.sync());
        let _rolled_back = self
            .checkpoints
            .truncate(checkpoints_len)
            .and_then(|()| self.checkpoints.sync());
        AuditError::Io(error)
    }

    /// The number of acknowledged records.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The number of records written by [`AuditLog::append_deferred`] and not yet committed.
    pub fn pending(&self) -> u64 {
        self.written.size().saturating_sub(self.tree.size())
    }

    /// How many `fdatasync` calls this handle has made (on either file, recovery included):
    /// what the group commit saves is counted here.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// The RFC 6962 tree head over the acknowledged records.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The newest acknowledged checkpoint, kept or head (including those found by `open`).
    pub fn last_checkpoint(&self) -> Option<&Checkpoint> {
        self.last_checkpoint.as_ref()
    }

    /// The head checkpoint (the `head` file) as this handle knows it: the one it wrote or
    /// `open` matched; `None` once a kept checkpoint has replaced it (or if `open` started
    /// from a kept checkpoint above it).
    pub fn head(&self) -> Option<&Checkpoint> {
        self.head.as_ref()
    }

    /// How many kept checkpoints `checkpoints` holds (those found by `open` included, unless
    /// a `state` file miscounted them: see [`crate::STATE_FILE`]).
    pub fn kept_checkpoints(&self) -> u64 {
        self.checkpoint_count
    }

    /// The log's origin (also its key's name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The checkpoint key's Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many records `open` took as proven by the `state` file's checkpoint, without
    /// reading them (0: it read and verified the whole log). See the crate docs, "Recovery".
    pub fn started_from(&self) -> u64 {
        self.started_from
    }

    /// Whether an I/O failure has poisoned this handle.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

/// Syncs `first` and `second`: at the same time, on two threads, when both are plain files
/// (two `fdatasync`s then cost about one in wall time); else (the tests' fault-injecting sinks,
/// or no thread to be had) one after the other, `second` only if `first` succeeded.
fn sync_both(first: &mut dyn Sink, second: &mut dyn Sink) -> (io::Result<()>, io::Result<()>) {
    if let (Some(a), Some(b)) = (first.file(), second.file()) {
        let together = std::thread::scope(|scope| {
            let other = std::thread::Builder::new()
                .name("audit-sync".into())
                .spawn_scoped(scope, || b.sync_data())
                .ok()?;
            let here = a.sync_data();
            let there = other
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the sync thread panicked")));
            Some((here, there))
        });
        if let Some(results) = together {
            return results;
        }
    }
    match first.sync() {
        Ok(()) => (Ok(()), second.sync()),
        Err(e) => (
            Err(e),
            Err(io::Error::other("not synced: the first sync failed")),
        ),
    }
}

/// `head.tmp`, ready for a head of `len` bytes to be written from its start: the previous
/// head's file (left there by [`crate::sink::publish`]) reused in place, at `len` bytes, when
/// it is a regular file with no other name; else anything at that name (a symbolic link, a
/// hard link, a directory's worth of surprise) is removed, never written through, and the
/// file is created afresh and exclusively (0600).
fn open_head_tmp(tmp: &Path, len: usize) -> io::Result<File> {
    use std::os::unix::fs::MetadataExt as _;
    let reused = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(tmp);
    if let Ok(file) = reused {
        let meta = file.metadata()?;
        if meta.is_file() && meta.nlink() == 1 {
            // Shrinking or growing within the block it has frees and allocates nothing; the
            // entry is then written over the old bytes from offset 0.
            file.set_len(len as u64)?;
            return Ok(file);
        }
    }
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
}
