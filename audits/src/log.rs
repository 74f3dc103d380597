//! The writer: [`AuditLog`].

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, SigningKeyMaterial, sign_checkpoint, valid_origin};
use crate::record::{RECOVERED_KIND, RecordError, encode};
use crate::sink::{FileSink, Sink};
use crate::state;
use crate::verify::{Anchor, VerifyFailure, scan};
use crate::{CHECKPOINTS_FILE, LOCK_FILE, LOG_FILE};

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
    /// Bytes of an incomplete last entry cut from `checkpoints`.
    pub truncated_checkpoint_bytes: u64,
    /// The index of the `recovered` record appended to say so, if anything was cut.
    pub recovered_index: Option<u64>,
}

/// An open audit log: the only writer of its directory while it lives (it holds an exclusive
/// `flock` on `<dir>/lock`, released when it is dropped or the process dies).
///
/// Every `append`, `commit` and `checkpoint` is durable when it returns `Ok`; a record written
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
    /// Acknowledged checkpoints.
    checkpoint_count: u64,
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
}

type MakeSink<'a> = &'a dyn Fn(File, Role) -> Box<dyn Sink>;

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
        Self::open_with(dir, origin, key, now, &|file, _| {
            Box::new(FileSink::new(file))
        })
    }

    pub(crate) fn open_with(
        dir: &Path,
        origin: &str,
        key: SigningKeyMaterial,
        now: SystemTime,
        make_sink: MakeSink<'_>,
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

        // A trusted starting point if the `state` file holds one that checks out; else, or if
        // what follows it does not verify, the whole log.
        let public_key = key.public_key();
        let mut log_reader = File::open(&log_path)?;
        let mut checkpoints_reader = File::open(&checkpoints_path)?;
        let fast = state::read(
            dir,
            &mut log_reader,
            &mut checkpoints_reader,
            &public_key,
            origin,
        )
        .and_then(|anchor| {
            let from = anchor.tree.size();
            scan(
                &log_reader,
                &checkpoints_reader,
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
            written: scanned.tree.clone(),
            tree: scanned.tree,
            log_len: scanned.log_len,
            written_len: scanned.log_len,
            syncs: 0,
            checkpoints_len: scanned.checkpoints_len,
            checkpoint_count: scanned.checkpoints,
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

    /// Commits any pending records (see [`AuditLog::commit`]), then signs the tree head,
    /// appends it to `checkpoints` and returns it once durable. If the commit succeeds and the
    /// checkpoint's own write or sync then fails, the records stay acknowledged (`size` counts
    /// them) and only the checkpoint is rolled back.
    pub fn checkpoint(&mut self) -> Result<Checkpoint, AuditError> {
        self.commit()?;
        let cp = sign_checkpoint(&self.key, &self.origin, self.tree.size(), self.tree.root());
        let mut entry = Vec::with_capacity(cp.note.len() + 1);
        entry.extend_from_slice(cp.note.as_bytes());
        entry.push(b'\n');
        self.syncs += 1;
        if let Err(e) = self
            .checkpoints
            .append(&entry)
            .and_then(|()| self.checkpoints.sync())
        {
            return Err(self.poison(e));
        }
        let offset = self.checkpoints_len;
        self.checkpoints_len += entry.len() as u64;
        self.checkpoint_count += 1;
        self.last_checkpoint = Some(cp.clone());
        // Best effort, after the checkpoint is durable: the next `open` may start here.
        let _written = state::write(
            &self.dir,
            &Anchor {
                tree: self.tree.clone(),
                log_len: self.log_len,
                checkpoint: cp.clone(),
                ordinal: self.checkpoint_count - 1,
                checkpoint_offset: offset,
                checkpoints_len: self.checkpoints_len,
            },
        );
        Ok(cp)
    }

    /// Appends a record, then checkpoints the tree that ends with it: the record is then both
    /// durable and covered by a signature, and `verify` can name it exactly if it is altered.
    pub fn append_checkpointed(
        &mut self,
        kind: &str,
        body: Value,
        time: SystemTime,
    ) -> Result<(u64, Checkpoint), AuditError> {
        let index = self.append(kind, body, time)?;
        Ok((index, self.checkpoint()?))
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

    /// The newest acknowledged checkpoint (including those found by `open`).
    pub fn last_checkpoint(&self) -> Option<&Checkpoint> {
        self.last_checkpoint.as_ref()
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
