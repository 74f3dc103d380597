//! Reading a log back: one streaming pass over `log.jsonl` and `checkpoints` in lockstep, in
//! bounded memory, used both by [`verify`] and by `AuditLog::open` (whose recovery needs the
//! same answers: where the valid data ends, and the tree it holds).
//!
//! Order of checks (this defines which failure is "first"):
//!
//! 1. The next checkpoint is read and authenticated (format, origin, key, signature, size not
//!    below its predecessor) as soon as its predecessor has been matched — before the records
//!    it covers are read.
//! 2. Records are read in order; each must be a canonical record whose `index` is its
//!    position, at most [`MAX_RECORD_BYTES`] long.
//! 3. When the tree reaches a checkpoint's size, the tree head must equal its root.
//! 4. A checkpoint larger than the whole log means records were cut off.
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
use crate::{CHECKPOINTS_FILE, LOG_FILE};

/// The longest line of a checkpoint entry. Real lines are under 400 bytes.
pub const MAX_CHECKPOINT_LINE_BYTES: usize = 1024;
/// The lines of one entry in `checkpoints`: three body lines, a blank line, one signature
/// line, and the blank line that separates entries.
const CHECKPOINT_ENTRY_LINES: usize = 6;

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    /// A file could not be opened or read.
    #[error("{file}: {message}")]
    Io {
        /// `log.jsonl` or `checkpoints`.
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
    /// The first checkpoint that cannot be trusted.
    #[error("checkpoint {ordinal} (byte {offset} of checkpoints): {problem}")]
    Checkpoint {
        /// Its position in `checkpoints`, from 0.
        ordinal: u64,
        /// The byte offset of its entry in `checkpoints`.
        offset: u64,
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
    /// The number of checkpoints, all authenticated and matched.
    pub checkpoints: u64,
    /// The newest checkpoint.
    pub last_checkpoint: Option<Checkpoint>,
    /// Records after the newest checkpoint: well-formed, but no signature covers them yet, so
    /// an edit to them would go unnoticed.
    pub unproven_records: u64,
    /// Bytes of an incomplete final line in `log.jsonl` (an interrupted append), ignored.
    pub torn_tail_bytes: u64,
    /// Bytes of an incomplete final entry in `checkpoints`, ignored.
    pub torn_checkpoint_bytes: u64,
}

/// Verifies the log in `dir` against the checkpoint key and origin, in one streaming pass with
/// bounded memory (no line longer than [`MAX_RECORD_BYTES`] is ever read into memory).
///
/// Safe to run while a writer appends: the `checkpoints` file is measured first and read only
/// up to that length, and every checkpoint is written after the records it covers are durable.
pub fn verify(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
) -> Result<VerifyReport, VerifyFailure> {
    let (log, checkpoints) = open_for_reading(dir)?;
    Ok(scan(
        log,
        checkpoints,
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
    let (log, checkpoints) = open_for_reading(dir)?;
    let mut records = Vec::new();
    let mut leaves = Vec::new();
    let report = scan(
        log,
        checkpoints,
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
/// proven**: when a checkpoint covering it has matched, or, for the records after the newest
/// checkpoint, when the whole log has verified.
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
    let (log, checkpoints) = open_for_reading(dir)?;
    let mut unproven: Vec<(Record, Vec<u8>)> = Vec::new();
    let scanned = scan(
        log,
        checkpoints,
        None,
        true,
        public_key,
        origin,
        &mut |seen| match seen {
            Seen::Record(line, Some(record), _) => unproven.push((record, line.to_vec())),
            Seen::Record(_, None, _) => {}
            Seen::Proven(_) => {
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

pub(crate) fn open_for_reading(dir: &Path) -> Result<(File, io::Take<File>), VerifyFailure> {
    // Checkpoints first: a checkpoint is only written once its records are durable, so every
    // checkpoint in this snapshot is covered by the log as it is opened after it.
    let checkpoints =
        File::open(dir.join(CHECKPOINTS_FILE)).map_err(io_failure(CHECKPOINTS_FILE))?;
    let len = checkpoints
        .metadata()
        .map_err(io_failure(CHECKPOINTS_FILE))?
        .len();
    let log = File::open(dir.join(LOG_FILE)).map_err(io_failure(LOG_FILE))?;
    Ok((log, checkpoints.take(len)))
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
    /// Its ordinal in `checkpoints`, from 0.
    pub(crate) ordinal: u64,
    /// The byte offset of its entry in `checkpoints`.
    pub(crate) checkpoint_offset: u64,
    /// Where the entry after it starts.
    pub(crate) checkpoints_len: u64,
}

/// What a scan shows its caller, in order.
pub(crate) enum Seen<'a> {
    /// A record that passed its own checks (its line, without the newline; the parsed record,
    /// if the scan was asked for records; its leaf hash). A later checkpoint may still show it
    /// was altered.
    Record(&'a [u8], Option<Record>, Hash),
    /// A checkpoint matched the tree: every record seen so far is proven.
    Proven(&'a Checkpoint),
}

/// The result of a scan: the report's facts plus what `open` needs to carry on.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) tree: Frontier,
    /// Bytes of complete records (where a torn tail starts).
    pub(crate) log_len: u64,
    /// Bytes of complete checkpoint entries.
    pub(crate) checkpoints_len: u64,
    pub(crate) checkpoints: u64,
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
/// that passes its own checks and every checkpoint that matches. With an `anchor`, `log` and
/// `checkpoints` must be positioned at its `log_len` and `checkpoints_len`: what lies before
/// is taken as proven by it, unread. Without `records`, records are checked but not parsed
/// into [`Record`]s when the fast check ([`is_canonical_record`]) can decide.
pub(crate) fn scan<L: Read, C: Read>(
    log: L,
    checkpoints: C,
    anchor: Option<Anchor>,
    records: bool,
    public_key: &[u8; 32],
    origin: &str,
    each: &mut dyn FnMut(Seen<'_>),
) -> Result<Scan, VerifyFailure> {
    let mut stream = CheckpointStream {
        lines: LineReader::new(checkpoints),
        buf: Vec::new(),
        ordinal: anchor.as_ref().map_or(0, |a| a.ordinal + 1),
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
    let mut count = anchor.as_ref().map_or(0, |a| a.ordinal + 1);
    let mut last: Option<Checkpoint> = anchor.as_ref().map(|a| a.checkpoint.clone());
    let mut torn_tail_bytes = 0;
    let mut pending = stream.next(tree.size())?;
    let mut anchor = anchor;
    loop {
        // Match every checkpoint that signed the tree as it now stands.
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
            count += 1;
            each(Seen::Proven(&p.checkpoint));
            anchor = Some(Anchor {
                tree: tree.clone(),
                log_len: offset,
                checkpoint: p.checkpoint.clone(),
                ordinal: p.ordinal,
                checkpoint_offset: p.offset,
                checkpoints_len: p.end,
            });
            pending = stream.next(p.checkpoint.size)?;
            last = Some(p.checkpoint);
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
    Ok(Scan {
        tree,
        log_len: offset,
        checkpoints_len: stream.offset,
        checkpoints: count,
        last_checkpoint: last,
        torn_tail_bytes,
        torn_checkpoint_bytes: stream.torn,
        anchor,
    })
}
