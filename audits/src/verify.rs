//! Reading a log back: one streaming pass over `log.jsonl` and `checkpoints` in lockstep, in
//! bounded memory, used both by [`verify`] and by `AuditLog::open` (whose recovery needs the
//! same answers: where the valid data ends, and the tree it holds).
//!
//! Order of checks (this defines which failure is "first"):
//!
//! 1. The head checkpoint (the `head` file), if there is one, is read and authenticated
//!    (format: exactly one entry; origin, key, signature) before anything else.
//! 2. The next kept checkpoint is read and authenticated (format, origin, key, signature, size
//!    not below its predecessor) as soon as its predecessor has been matched — before the
//!    records it covers are read.
//! 3. Records are read in order; each must be a canonical record whose `index` is its
//!    position, at most [`MAX_RECORD_BYTES`] long.
//! 4. When the tree reaches a checkpoint's size, the tree head must equal its root: first
//!    every kept checkpoint of that size, then the head if it has that size. The head is
//!    matched wherever its size falls, also below the last kept checkpoint (a stale head, left
//!    by a crash before it was removed): it is accepted only if it matches.
//! 5. A kept checkpoint, then the head, larger than the whole log means records were cut off.
//!
//! A final line without its newline is a torn tail (an interrupted append): `verify` reports
//! its length rather than failing (it was never acknowledged, and a running writer may be in
//! the middle of it); `AuditLog::open` cuts it off. The same goes for an incomplete final
//! checkpoint entry.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, CheckpointProblem, open_checkpoint};
use crate::record::{MAX_RECORD_BYTES, Record, RecordProblem, is_canonical_record, parse_line};
use crate::{CHECKPOINTS_FILE, HEAD_FILE, LOG_FILE};

/// The longest line of a checkpoint entry. Real lines are under 400 bytes.
pub const MAX_CHECKPOINT_LINE_BYTES: usize = 1024;
/// The lines of one entry in `checkpoints`: three body lines, a blank line, one signature
/// line, and the blank line that separates entries.
const CHECKPOINT_ENTRY_LINES: usize = 6;
/// The largest `head` file read: one entry of at most six lines.
pub(crate) const MAX_HEAD_BYTES: u64 =
    (CHECKPOINT_ENTRY_LINES * (MAX_CHECKPOINT_LINE_BYTES + 1)) as u64;

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    /// A file could not be opened or read.
    #[error("{file}: {message}")]
    Io {
        /// `log.jsonl`, `checkpoints` or `head`.
        file: &'static str,
        /// The I/O error.
        message: String,
    },
    /// The first record that cannot be trusted.
    #[error("record {index} (byte {offset} of log.jsonl): {problem}")]
    Record {
        /// Its position in the log.
        index: u64,
        /// The byte offset of its line in `log.jsonl` (for `Missing`, the end of the log).
        offset: u64,
        /// What is wrong.
        problem: RecordProblem,
    },
    /// The first kept checkpoint that cannot be trusted.
    #[error("checkpoint {ordinal} (byte {offset} of checkpoints): {problem}")]
    Checkpoint {
        /// Its position in `checkpoints`, from 0.
        ordinal: u64,
        /// The byte offset of its entry in `checkpoints`.
        offset: u64,
        /// What is wrong.
        problem: CheckpointProblem,
    },
    /// The head checkpoint (the `head` file) cannot be trusted: malformed (not exactly one
    /// entry), for another origin, another key, a bad signature, or a root that contradicts a
    /// kept checkpoint of the same size. (A head whose root does not match the records is
    /// reported at the records, [`RecordProblem::HeadRootMismatch`]; one larger than the log,
    /// [`RecordProblem::HeadMissing`].)
    #[error("the head checkpoint (file `head`): {problem}")]
    Head {
        /// What is wrong.
        problem: CheckpointProblem,
    },
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The number of complete records.
    pub size: u64,
    /// The tree head over them.
    pub root: Hash,
    /// The number of kept checkpoints (entries of `checkpoints`), all authenticated and
    /// matched.
    pub checkpoints: u64,
    /// The head checkpoint (the `head` file), authenticated and matched; `None` if there is
    /// none.
    pub head: Option<Checkpoint>,
    /// The newest checkpoint, kept or head (the kept one when both sign the same size).
    pub last_checkpoint: Option<Checkpoint>,
    /// Records after the newest checkpoint (kept or head): well-formed, but no signature
    /// covers them yet, so an edit to them would go unnoticed.
    pub unproven_records: u64,
    /// Bytes of an incomplete final line in `log.jsonl` (an interrupted append), ignored.
    pub torn_tail_bytes: u64,
    /// Bytes of an incomplete final entry in `checkpoints`, ignored.
    pub torn_checkpoint_bytes: u64,
}

/// Verifies the log in `dir` against the checkpoint key and origin, in one streaming pass with
/// bounded memory (no line longer than [`MAX_RECORD_BYTES`] is ever read into memory): every
/// record, every kept checkpoint in `checkpoints`, and the head checkpoint (`head`) if there
/// is one.
///
/// Safe to run while a writer appends: the `checkpoints` file is measured first and read only
/// up to that length, the head is read whole next (it is replaced by a rename, so it is never
/// seen half written), the log last; every checkpoint is written after the records it covers
/// are durable.
pub fn verify(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
) -> Result<VerifyReport, VerifyFailure> {
    let (log, checkpoints, head) = open_for_reading(dir, public_key, origin)?;
    Ok(scan(
        log,
        checkpoints,
        head,
        None,
        false,
        public_key,
        origin,
        &mut |_| {},
    )?
    .report())
}

/// A verified log, read whole into memory (records and leaf hashes, for display and proofs).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedLog {
    /// Every complete record, in order.
    pub records: Vec<Record>,
    /// Their leaf hashes, for [`crate::inclusion_proof`] and [`crate::consistency_proof`].
    pub leaves: Vec<Hash>,
    /// The verification's result.
    pub report: VerifyReport,
}

/// Like [`verify`], and also returns every record and leaf hash (memory grows with the log).
pub fn read_verified(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
) -> Result<VerifiedLog, VerifyFailure> {
    let (log, checkpoints, head) = open_for_reading(dir, public_key, origin)?;
    let mut records = Vec::new();
    let mut leaves = Vec::new();
    let report = scan(
        log,
        checkpoints,
        head,
        None,
        true,
        public_key,
        origin,
        &mut |seen| {
            if let Seen::Record(_, Some(r), h) = seen {
                records.push(r);
                leaves.push(h);
            }
        },
    )?
    .report();
    Ok(VerifiedLog {
        records,
        leaves,
        report,
    })
}

/// Reads the log in `dir`, verifying it as [`verify`] does (one streaming pass), and hands
/// `each` every record (parsed, and its line without the newline) in order **once it is
/// proven**: when a checkpoint (kept or the head) covering it has matched, or, for the records
/// after the newest checkpoint, when the whole log has verified.
///
/// On a failure, `each` has seen exactly the records proven by the checkpoints before it, and
/// nothing after: no record that a later check could still show to be altered. Memory holds the
/// records between two checkpoints (all of them if the log has none).
pub fn read_proven(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
    each: &mut dyn FnMut(Record, &[u8]),
) -> Result<VerifyReport, VerifyFailure> {
    let (log, checkpoints, head) = open_for_reading(dir, public_key, origin)?;
    let mut unproven: Vec<(Record, Vec<u8>)> = Vec::new();
    let scanned = scan(
        log,
        checkpoints,
        head,
        None,
        true,
        public_key,
        origin,
        &mut |seen| match seen {
            Seen::Record(line, Some(record), _) => unproven.push((record, line.to_vec())),
            Seen::Record(_, None, _) => {}
            Seen::Proven { .. } => {
                for (record, line) in unproven.drain(..) {
                    each(record, &line);
                }
            }
        },
    )?;
    for (record, line) in unproven.drain(..) {
        each(record, &line);
    }
    Ok(scanned.report())
}

pub(crate) fn io_failure(file: &'static str) -> impl Fn(io::Error) -> VerifyFailure {
    move |e| VerifyFailure::Io {
        file,
        message: e.to_string(),
    }
}

/// Opens a log for reading: `checkpoints` (measured), the head (read and authenticated), then
/// `log.jsonl`.
pub(crate) fn open_for_reading(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
) -> Result<(File, io::Take<File>, Option<Checkpoint>), VerifyFailure> {
    // Checkpoints first: a checkpoint is only written once its records are durable, so every
    // checkpoint in this snapshot, and the head read next, is covered by the log as it is
    // opened after them.
    let checkpoints =
        File::open(dir.join(CHECKPOINTS_FILE)).map_err(io_failure(CHECKPOINTS_FILE))?;
    let len = checkpoints
        .metadata()
        .map_err(io_failure(CHECKPOINTS_FILE))?
        .len();
    let head = read_head(dir, public_key, origin)?;
    let log = File::open(dir.join(LOG_FILE)).map_err(io_failure(LOG_FILE))?;
    Ok((log, checkpoints.take(len), head))
}

/// Reads and authenticates the head checkpoint of the log in `dir`: `None` if there is no
/// `head` file; a [`VerifyFailure::Head`] if it is not exactly one checkpoint entry signed by
/// the key for this origin (a `head` is never torn: it is written whole and renamed into
/// place, so a partial one was not written by the log).
pub(crate) fn read_head(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
) -> Result<Option<Checkpoint>, VerifyFailure> {
    let file = match File::open(dir.join(HEAD_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failure(HEAD_FILE)(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_HEAD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_failure(HEAD_FILE))?;
    parse_head(&bytes, public_key, origin).map(Some)
}

/// Parses and authenticates the bytes of a `head` file: one checkpoint entry (the note and
/// the blank line after it), nothing more.
pub(crate) fn parse_head(
    bytes: &[u8],
    public_key: &[u8; 32],
    origin: &str,
) -> Result<Checkpoint, VerifyFailure> {
    let fail = |problem| VerifyFailure::Head { problem };
    let malformed = |why: &str| fail(CheckpointProblem::Malformed(why.to_owned()));
    if bytes.len() as u64 > MAX_HEAD_BYTES {
        return Err(malformed("larger than a checkpoint entry"));
    }
    let mut lines = LineReader::new(bytes);
    let (text, len) = match read_entry(&mut lines, &mut Vec::new())
        .map_err(|why| fail(CheckpointProblem::Malformed(why)))?
    {
        Entry::Note { text, len } => (text, len),
        Entry::Torn(_) | Entry::End => return Err(malformed("not a whole checkpoint entry")),
    };
    if len != bytes.len() as u64 {
        return Err(malformed("more than one checkpoint entry"));
    }
    let text = String::from_utf8(text).map_err(|_| malformed("not UTF-8"))?;
    open_checkpoint(&text, origin, public_key).map_err(fail)
}

/// A trusted starting point: the tree, log length and checkpoint position at a checkpoint that
/// matched (found by a scan, or read back from the `state` file and checked by `open`).
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    /// The tree of the first `checkpoint.size` records.
    pub(crate) tree: Frontier,
    /// The bytes of `log.jsonl` holding those records.
    pub(crate) log_len: u64,
    /// The checkpoint that signed that tree.
    pub(crate) checkpoint: Checkpoint,
    /// Where that checkpoint is.
    pub(crate) place: Place,
    /// The kept checkpoints up to it (it included, if it is one): how many.
    pub(crate) kept: u64,
    /// The size of the last of them (0 if none).
    pub(crate) kept_size: u64,
    /// Where the kept checkpoint after them starts in `checkpoints`.
    pub(crate) checkpoints_len: u64,
}

/// Where an anchor's checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// The entry at this byte offset of `checkpoints` (its ordinal is the anchor's `kept - 1`,
    /// and it ends at the anchor's `checkpoints_len`).
    Kept { offset: u64 },
    /// The `head` file.
    Head,
}

/// What a scan shows its caller, in order.
pub(crate) enum Seen<'a> {
    /// A record that passed its own checks (its line, without the newline; the parsed record,
    /// if the scan was asked for records; its leaf hash). A later checkpoint may still show it
    /// was altered.
    Record(&'a [u8], Option<Record>, Hash),
    /// A checkpoint matched the tree: every record seen so far is proven. `head` says it was
    /// the head checkpoint rather than a kept one.
    Proven {
        checkpoint: &'a Checkpoint,
        head: bool,
    },
}

/// The result of a scan: the report's facts plus what `open` needs to carry on.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) tree: Frontier,
    /// Bytes of complete records (where a torn tail starts).
    pub(crate) log_len: u64,
    /// Bytes of complete checkpoint entries.
    pub(crate) checkpoints_len: u64,
    /// Kept checkpoints matched.
    pub(crate) checkpoints: u64,
    /// The size of the last kept checkpoint (0 if none).
    pub(crate) kept_size: u64,
    /// The head, if it was matched (or is the anchor the scan started from).
    pub(crate) head: Option<Checkpoint>,
    /// The newest checkpoint matched, kept or head.
    pub(crate) last_checkpoint: Option<Checkpoint>,
    pub(crate) torn_tail_bytes: u64,
    pub(crate) torn_checkpoint_bytes: u64,
    /// The last checkpoint that matched, as a starting point for a later `open`.
    pub(crate) anchor: Option<Anchor>,
}

impl Scan {
    pub(crate) fn report(&self) -> VerifyReport {
        let proven = self.last_checkpoint.as_ref().map_or(0, |c| c.size);
        VerifyReport {
            size: self.tree.size(),
            root: self.tree.root(),
            checkpoints: self.checkpoints,
            head: self.head.clone(),
            last_checkpoint: self.last_checkpoint.clone(),
            unproven_records: self.tree.size().saturating_sub(proven),
            torn_tail_bytes: self.torn_tail_bytes,
            torn_checkpoint_bytes: self.torn_checkpoint_bytes,
        }
    }
}

/// One line read with a length bound.
enum Line {
    /// A whole line (its newline consumed, not kept).
    Complete,
    /// Bytes at the end of the input with no newline.
    Partial,
    /// The line runs past the bound; reading stopped there.
    Oversize,
    /// The end of the input.
    Eof,
}

pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
}

impl<R: Read> LineReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
        }
    }

    /// Reads the next line into `buf` (without its newline), never buffering more than `max`
    /// bytes of it.
    fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
        buf.clear();
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(if buf.is_empty() {
                    Line::Eof
                } else {
                    Line::Partial
                });
            }
            let (chunk, consumed, done) = match available.iter().position(|&c| c == b'\n') {
                Some(i) => (available.get(..i).unwrap_or_default(), i + 1, true),
                None => (available, available.len(), false),
            };
            if buf.len() + chunk.len() > max {
                return Ok(Line::Oversize);
            }
            buf.extend_from_slice(chunk);
            self.inner.consume(consumed);
            if done {
                return Ok(Line::Complete);
            }
        }
    }
}

/// One entry of `checkpoints`.
pub(crate) enum Entry {
    /// A complete entry: the note (without the separating blank line) and its length in the
    /// file (with it).
    Note { text: Vec<u8>, len: u64 },
    /// The file ends inside an entry, after this many bytes of it.
    Torn(u64),
    /// The file ends between entries.
    End,
}

pub(crate) fn read_entry<R: Read>(
    lines: &mut LineReader<R>,
    buf: &mut Vec<u8>,
) -> Result<Entry, String> {
    let mut text = Vec::new();
    let mut len = 0u64;
    for i in 0..CHECKPOINT_ENTRY_LINES {
        match lines
            .read(buf, MAX_CHECKPOINT_LINE_BYTES)
            .map_err(|e| e.to_string())?
        {
            Line::Complete => {
                len += buf.len() as u64 + 1;
                if i + 1 == CHECKPOINT_ENTRY_LINES {
                    if !buf.is_empty() {
                        return Err("entry not followed by a blank line".to_owned());
                    }
                } else {
                    text.extend_from_slice(buf);
                    text.push(b'\n');
                }
            }
            Line::Partial => return Ok(Entry::Torn(len + buf.len() as u64)),
            Line::Eof if i == 0 => return Ok(Entry::End),
            Line::Eof => return Ok(Entry::Torn(len)),
            Line::Oversize => {
                return Err(format!(
                    "line longer than {MAX_CHECKPOINT_LINE_BYTES} bytes"
                ));
            }
        }
    }
    Ok(Entry::Note { text, len })
}

/// A checkpoint that has been authenticated and awaits the tree reaching its size.
struct Pending {
    ordinal: u64,
    offset: u64,
    /// Where its entry ends.
    end: u64,
    checkpoint: Checkpoint,
}

/// Reads `checkpoints` one entry at a time.
struct CheckpointStream<'a, R> {
    lines: LineReader<R>,
    buf: Vec<u8>,
    ordinal: u64,
    offset: u64,
    torn: u64,
    origin: &'a str,
    public_key: &'a [u8; 32],
}

impl<R: Read> CheckpointStream<'_, R> {
    /// The next authenticated checkpoint, whose size must be at least `previous`.
    fn next(&mut self, previous: u64) -> Result<Option<Pending>, VerifyFailure> {
        let (ordinal, offset) = (self.ordinal, self.offset);
        let fail = |problem| VerifyFailure::Checkpoint {
            ordinal,
            offset,
            problem,
        };
        let entry = read_entry(&mut self.lines, &mut self.buf)
            .map_err(|why| fail(CheckpointProblem::Malformed(why)))?;
        let (text, len) = match entry {
            Entry::Note { text, len } => (text, len),
            Entry::Torn(bytes) => {
                self.torn = bytes;
                return Ok(None);
            }
            Entry::End => return Ok(None),
        };
        let text = String::from_utf8(text)
            .map_err(|_| fail(CheckpointProblem::Malformed("not UTF-8".to_owned())))?;
        let checkpoint = open_checkpoint(&text, self.origin, self.public_key).map_err(fail)?;
        if checkpoint.size < previous {
            return Err(fail(CheckpointProblem::SizeDecreased {
                size: checkpoint.size,
                previous,
            }));
        }
        self.ordinal += 1;
        self.offset += len;
        Ok(Some(Pending {
            ordinal,
            offset,
            end: self.offset,
            checkpoint,
        }))
    }
}

/// The streaming check shared by `verify`, `open` and the readers; `each` sees every record
/// that passes its own checks and every checkpoint that matches. `head` is the head
/// checkpoint, already authenticated ([`read_head`]), if there is one. With an `anchor`, `log`
/// and `checkpoints` must be positioned at its `log_len` and `checkpoints_len`: what lies
/// before is taken as proven by it, unread (a head at or below a kept anchor is checked only
/// if it has the anchor's size; a head anchor is the head, and `head` is then not read).
/// Without `records`, records are checked but not parsed into [`Record`]s when the fast check
/// ([`is_canonical_record`]) can decide.
#[expect(
    clippy::too_many_arguments,
    reason = "one internal function behind verify, open and the readers"
)]
pub(crate) fn scan<L: Read, C: Read>(
    log: L,
    checkpoints: C,
    head: Option<Checkpoint>,
    anchor: Option<Anchor>,
    records: bool,
    public_key: &[u8; 32],
    origin: &str,
    each: &mut dyn FnMut(Seen<'_>),
) -> Result<Scan, VerifyFailure> {
    let mut stream = CheckpointStream {
        lines: LineReader::new(checkpoints),
        buf: Vec::new(),
        ordinal: anchor.as_ref().map_or(0, |a| a.kept),
        offset: anchor.as_ref().map_or(0, |a| a.checkpoints_len),
        torn: 0,
        origin,
        public_key,
    };
    let mut lines = LineReader::new(log);
    let mut buf = Vec::new();
    let mut tree = anchor
        .as_ref()
        .map_or_else(Frontier::default, |a| a.tree.clone());
    let mut offset = anchor.as_ref().map_or(0, |a| a.log_len); // where the next record starts
    // (size, offset) proven by the last matched checkpoint
    let mut proven = (tree.size(), offset);
    let mut kept = anchor.as_ref().map_or(0, |a| a.kept);
    let mut kept_size = anchor.as_ref().map_or(0, |a| a.kept_size);
    // Where the entry after the last matched kept checkpoint starts.
    let mut kept_end = stream.offset;
    let mut last: Option<Checkpoint> = anchor.as_ref().map(|a| a.checkpoint.clone());
    // The head: matched (or the anchor), or waiting for the tree to reach its size.
    let mut matched_head: Option<Checkpoint> = None;
    let mut pending_head: Option<Checkpoint> = None;
    match (&anchor, head) {
        (Some(a), _) if a.place == Place::Head => matched_head = Some(a.checkpoint.clone()),
        (Some(a), Some(h)) if h.size <= a.checkpoint.size => {
            if h.size == a.checkpoint.size {
                if h.root != a.checkpoint.root {
                    return Err(VerifyFailure::Head {
                        problem: CheckpointProblem::Conflicting { size: h.size },
                    });
                }
                matched_head = Some(h);
            }
            // Below the anchor: like everything there, not re-checked.
        }
        (_, h) => pending_head = h,
    }
    let mut torn_tail_bytes = 0;
    let mut pending = stream.next(tree.size())?;
    let mut anchor = anchor;
    loop {
        // Match every kept checkpoint that signed the tree as it now stands.
        while let Some(p) = pending.take_if(|p| p.checkpoint.size == tree.size()) {
            if p.checkpoint.root != tree.root() {
                return Err(if p.checkpoint.size == proven.0 {
                    // No record lies between: the checkpoint contradicts proven history.
                    VerifyFailure::Checkpoint {
                        ordinal: p.ordinal,
                        offset: p.offset,
                        problem: CheckpointProblem::Conflicting {
                            size: p.checkpoint.size,
                        },
                    }
                } else {
                    VerifyFailure::Record {
                        index: proven.0,
                        offset: proven.1,
                        problem: RecordProblem::RootMismatch {
                            checkpoint: p.ordinal,
                            checkpoint_offset: p.offset,
                            checkpoint_size: p.checkpoint.size,
                        },
                    }
                });
            }
            proven = (p.checkpoint.size, offset);
            kept += 1;
            kept_size = p.checkpoint.size;
            kept_end = p.end;
            each(Seen::Proven {
                checkpoint: &p.checkpoint,
                head: false,
            });
            anchor = Some(Anchor {
                tree: tree.clone(),
                log_len: offset,
                checkpoint: p.checkpoint.clone(),
                place: Place::Kept { offset: p.offset },
                kept,
                kept_size,
                checkpoints_len: p.end,
            });
            pending = stream.next(p.checkpoint.size)?;
            last = Some(p.checkpoint);
        }
        // Then the head, if it signed this size.
        if let Some(h) = pending_head.take_if(|h| h.size == tree.size()) {
            if h.root != tree.root() {
                return Err(if h.size == proven.0 {
                    VerifyFailure::Head {
                        problem: CheckpointProblem::Conflicting { size: h.size },
                    }
                } else {
                    VerifyFailure::Record {
                        index: proven.0,
                        offset: proven.1,
                        problem: RecordProblem::HeadRootMismatch { head_size: h.size },
                    }
                });
            }
            proven = (h.size, offset);
            each(Seen::Proven {
                checkpoint: &h,
                head: true,
            });
            anchor = Some(Anchor {
                tree: tree.clone(),
                log_len: offset,
                checkpoint: h.clone(),
                place: Place::Head,
                kept,
                kept_size,
                checkpoints_len: kept_end,
            });
            if last.as_ref().is_none_or(|l| l.size < h.size) {
                last = Some(h.clone());
            }
            matched_head = Some(h);
        }
        let index = tree.size();
        let record_failure = |problem| VerifyFailure::Record {
            index,
            offset,
            problem,
        };
        match lines
            .read(&mut buf, MAX_RECORD_BYTES)
            .map_err(io_failure(LOG_FILE))?
        {
            Line::Complete => {
                let record = if !records && is_canonical_record(&buf, index) {
                    None
                } else {
                    Some(parse_line(&buf, index).map_err(record_failure)?)
                };
                let leaf = leaf_hash(&buf);
                tree.push(leaf);
                each(Seen::Record(&buf, record, leaf));
                offset += buf.len() as u64 + 1;
            }
            Line::Partial => {
                torn_tail_bytes = buf.len() as u64;
                break;
            }
            Line::Oversize => return Err(record_failure(RecordProblem::Oversize)),
            Line::Eof => break,
        }
    }
    if let Some(p) = pending {
        return Err(VerifyFailure::Record {
            index: tree.size(),
            offset,
            problem: RecordProblem::Missing {
                checkpoint: p.ordinal,
                checkpoint_offset: p.offset,
                checkpoint_size: p.checkpoint.size,
            },
        });
    }
    if let Some(h) = pending_head {
        return Err(VerifyFailure::Record {
            index: tree.size(),
            offset,
            problem: RecordProblem::HeadMissing { head_size: h.size },
        });
    }
    Ok(Scan {
        tree,
        log_len: offset,
        checkpoints_len: stream.offset,
        checkpoints: kept,
        kept_size,
        head: matched_head,
        last_checkpoint: last,
        torn_tail_bytes,
        torn_checkpoint_bytes: stream.torn,
        anchor,
    })
}
