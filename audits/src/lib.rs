//! The audit log: an append-only, tamper-evident record of every decision Warrant takes.
//!
//! This crate stores and proves records; the broker decides what goes into them. It knows
//! nothing of Cedar or wasmtime.
//!
//! # On disk
//!
//! A log is a directory holding these files:
//!
//! * `log.jsonl` — one record per line, each a canonical JSON object of at most
//!   [`MAX_RECORD_BYTES`] (64 KiB) plus its `\n`:
//!
//!   ```text
//!   {"body":{…},"index":0,"kind":"pull","time":"2026-05-01T12:00:00.000000000Z"}
//!   ```
//!
//!   `index` is the record's position (from 0), `time` is RFC 3339 UTC with nanoseconds
//!   (given by the caller, or the clock), `kind` is 1–64 of `[a-z0-9._-]` starting with a
//!   letter (`pull`, `verify`, `decide`, `instantiate`, `outcome`, …; `recovered` is reserved
//!   for the log itself) and `body` is any JSON object. Canonical means compact serde_json
//!   output with the keys of every object sorted by their UTF-8 bytes; `verify` re-serializes
//!   every line and refuses any that differ, so a record has exactly one byte form.
//! * `checkpoints` — the **kept** checkpoints: signed tree heads, appended one entry at a time,
//!   never rewritten; an entry is a signed note followed by a blank line:
//!
//!   ```text
//!   <origin>
//!   <tree size>
//!   <base64 root hash>
//!
//!   — <origin> <base64(4-byte key id || Ed25519 signature of the three lines above)>
//!
//!   ```
//!
//!   This is the C2SP `tlog-checkpoint` / `signed-note` format of Go's
//!   `golang.org/x/mod/sumdb/note` (key name = origin, key id = first 4 bytes of
//!   `SHA-256(name || 0x0A || 0x01 || public key)`), so a checkpoint can be handed to
//!   transparency tooling and witnesses; [`verifier_key`] gives the matching verifier key.
//! * `head` — the **head** checkpoint: one entry in the same format, the signed tree head of
//!   the newest checkpoint that was not kept; replaced whole (written to `head.tmp`, synced,
//!   then exchanged with `head`, so `head.tmp` keeps the previous head's file to be written
//!   over next time) by every such checkpoint, removed after a kept one. Absent until the
//!   first checkpoint that is not kept. `head.tmp` is never read.
//! * `state` — a starting point for [`AuditLog::open`]: the Merkle frontier (the O(log n)
//!   heads of the perfect subtrees) of the tree at the last checkpoint, kept or head, the
//!   length of `log.jsonl` at that size and which checkpoint it is (an entry of `checkpoints`,
//!   or the head); rewritten in place after every checkpoint (a link planted at `state` is
//!   replaced through `state.tmp` instead), not synced, trusted only once checked (see
//!   "Recovery" and [`STATE_FILE`]).
//! * `lock` — empty; the writer holds an exclusive `flock` on it.
//!
//! The signing key (Ed25519, PKCS#8, [`SigningKeyMaterial`]) is supplied by the caller; the
//! log never stores it.
//!
//! # Kept checkpoints and the head
//!
//! A writer that checkpoints often (`warrant run` signs one at the end of every run, about
//! five records) would make [`verify`] check one Ed25519 signature per checkpoint, which costs
//! more than the records themselves. So [`AuditLog::checkpoint`] keeps a checkpoint (appends
//! it to `checkpoints`) only once the tree has grown by [`AuditLog::keep_every`] records since
//! the last kept one ([`DEFAULT_KEEP_EVERY`], 1,000; [`AuditLog::set_keep_every`]; 0 keeps
//! every checkpoint); every other checkpoint replaces the head. `verify` then checks one
//! signature per 1,000 records plus the head. It still checks every checkpoint the log holds;
//! a replaced head is no longer one of them, and what it signed is covered by the head that
//! replaced it (or by the kept checkpoint that made it stale). What the cadence costs is
//! precision: an edit is located to the records between the last
//! checkpoint that matches and the first that fails, so with the default to at most 1,000
//! records (and to a single record with a kept checkpoint after every append).
//!
//! # Tamper evidence
//!
//! Records are the leaves of an RFC 6962 / RFC 9162 Merkle tree ([`merkle`]): the leaf is the
//! record's bytes without the newline. A checkpoint signs the root at a size. [`verify`]
//! recomputes every leaf and the tree in one streaming pass and checks the signature of every
//! kept checkpoint and of the head, and that each root is the tree's root at its size. It
//! reports the *first* problem precisely ([`VerifyFailure`]: record index and byte offset, or
//! checkpoint ordinal and byte offset, or [`VerifyFailure::Head`], and what is wrong):
//!
//! * a line that is not JSON, not canonical, not a record, too long, or whose `index` is not
//!   its position (deleted, swapped, duplicated records);
//! * a signed root that does not match (an edited record that still parses, an inserted
//!   record): the failure names the first record no earlier checkpoint proves, and the
//!   checkpoint ([`RecordProblem::RootMismatch`], or [`RecordProblem::HeadRootMismatch`] for
//!   the head). How precisely that locates an edit depends on the cadence of checkpoints: with
//!   a kept checkpoint after every append ([`AuditLog::append_checkpointed`] with
//!   `keep_every` 1) it is exactly the edited record;
//! * a checkpoint larger than the log (records cut off below a kept checkpoint or the head);
//! * a checkpoint that is malformed, for another origin, signed by another key, whose
//!   signature fails (edited size or root), whose size goes backwards (kept ones), or which
//!   contradicts an earlier checkpoint for the same size. A `head` must hold exactly one
//!   entry; a head older than the last kept checkpoint (a crash between a kept checkpoint and
//!   the removal of the head it replaces) is accepted only if it matches the tree at its size.
//!
//! What the files alone cannot show: edits to records after the newest checkpoint
//! ([`VerifyReport::unproven_records`] counts them), and the removal of the newest checkpoints
//! — the head, or kept ones — together with the records after the remaining ones (a rollback
//! to an earlier, consistent state). Both need the newest checkpoint kept somewhere the host's attacker cannot rewrite
//! (printed, shipped to a witness or a remote store); [`consistency_proof`] and
//! [`verify_consistency`] then show a later log extends it.
//!
//! # Durability and failure
//!
//! [`AuditLog::append`] writes the whole line with one `write` and returns only after
//! `fdatasync`; [`AuditLog::checkpoint`] likewise (a kept checkpoint: one `write` and one
//! `fdatasync` of `checkpoints`; the head: one `write` and one `fdatasync` of
//! `head.tmp`, then an atomic exchange with `head`, or a `rename` over it). An `Ok` is the acknowledgement. A checkpoint is
//! only ever published for records already durable, so a crash cannot leave a checkpoint
//! beyond the log: a kept one is appended after the records' commit; a head over records still
//! pending is written to `head.tmp` and synced *together* with the log (two threads, so the
//! two `fdatasync`s cost about one in wall time), and put in place of `head` only once both
//! syncs succeeded. The directory is not synced after the head's exchange (it would double the syncs of
//! a checkpoint): a crash right after it may leave the previous head in place — a valid
//! signature over fewer durable records, whose newer records are then reported unproven until
//! the next checkpoint — but never a partial head, since the data under either name was
//! synced before the exchange.
//!
//! **Group commit.** [`AuditLog::append_deferred`] writes a record's line (one `write`) but does
//! not sync it and acknowledges nothing; [`AuditLog::commit`] then makes every record written
//! so far durable with one `fdatasync` and only then acknowledges them (`size` moves). A
//! caller that must act on several records pays one sync for all of them: `warrant run` writes
//! `pull`, `verify` and `decide` deferred and commits them with the `instantiate` record (or a
//! denial's `decide`) in one sync, before the guest starts. [`AuditLog::checkpoint`] signs
//! every record written and commits whatever is pending with it (for a head, the commit's
//! sync and the head's overlap; the `outcome` record of a run and its end-of-run checkpoint
//! cost one sync's time). Until its commit returns, a deferred record may or may
//! not survive a crash: nothing it records may be acted on before then.
//!
//! Any write, sync or rename error poisons the handle ([`AuditError::Poisoned`] for every later
//! call): it fails closed rather than retrying, since after a failed `fsync` the kernel may
//! already have dropped the data. It first tries to cut both files back to their acknowledged
//! length (the last commit; every uncommitted record is dropped) and deletes `head.tmp` (the
//! previous head stays in place), so a reopened log holds exactly the acknowledged records and
//! checkpoints. If that rollback fails as well (a dead disk), a partial line is cut on
//! the next open, but complete, unacknowledged lines that did reach the disk cannot be told
//! from acknowledged ones and stay: callers must treat a failed append or commit as "may or may
//! not be logged" — and not act on it.
//!
//! # Recovery
//!
//! [`AuditLog::open`] ignores `head.tmp` (the previous head, or what a crash before the
//! exchange left: never the head) and reads and authenticates `head`; a head that is not one checkpoint signed by the
//! key fails the open ([`AuditError::Corrupt`]). It then verifies the log with the key's
//! public key, starting from the `state` file when it checks out: the checkpoint it points at
//! (an entry of `checkpoints`, or the head) must be signed by the key, for this origin, for the
//! state's size, and its root must equal the root recomputed from the state's frontier; the
//! state's log length must lie within `log.jsonl` and end a line. Then only the records and
//! checkpoints after that point are read and verified, so opening costs what was appended
//! since the last checkpoint, not the size of the log ([`AuditLog::started_from`] says where
//! it started). If the state is missing or fails any
//! check, or what follows it does not verify, `open` verifies the whole log as [`verify`] does.
//! A fast open therefore does **not** notice records edited (or checkpoints forged) before
//! the last checkpoint: finding those is [`verify`]'s job (`warrant audit verify`), which always
//! reads everything. A last line without
//! its newline (an interrupted append; at most one record long) is cut off, as is an
//! incomplete last checkpoint entry, and a `recovered` record with body
//! `{"truncated_bytes": N, "truncated_checkpoint_bytes": M}` is appended (see [`Recovery`]).
//! Anything else wrong makes `open` fail with [`AuditError::Corrupt`] and change nothing: a
//! log that fails verification must be looked at, not written to.
//!
//! # Concurrency
//!
//! One writer per directory: `open` takes a non-blocking exclusive `flock` on `<dir>/lock`
//! (std's `File::try_lock`) and fails with [`AuditError::Locked`] if another handle, in this
//! process or another, holds it. The kernel drops the lock when the process dies, so a crash
//! never leaves a stale lock. Readers take no lock: [`verify`] reads a consistent prefix
//! while a writer appends (it measures `checkpoints` first, then reads the head whole, which a
//! rename replaces atomically; see [`verify`]).
//!
//! # Bounds
//!
//! A record is at most [`MAX_RECORD_BYTES`]; lines are read with that bound, so a huge line is
//! reported as oversize without being read into memory; a checkpoint line is at most
//! [`MAX_CHECKPOINT_LINE_BYTES`] and a `head` file six such lines; origins at most [`MAX_ORIGIN_BYTES`]; key files 4 KiB; body
//! nesting [`MAX_BODY_DEPTH`]. `open` and `verify` keep O(log n) hashes in memory (a compact
//! tree), whatever the size of the log; only [`read_verified`] holds every record.
//!
//! # API
//!
//! * Writing: [`AuditLog::open`] / [`AuditLog::open_at`] (→ [`Recovery`]),
//!   [`AuditLog::append`] / [`AuditLog::append_now`], [`AuditLog::append_deferred`] +
//!   [`AuditLog::commit`] (group commit), [`AuditLog::checkpoint`],
//!   [`AuditLog::append_checkpointed`], [`AuditLog::set_keep_every`] /
//!   [`AuditLog::keep_every`] ([`DEFAULT_KEEP_EVERY`]), [`AuditLog::size`],
//!   [`AuditLog::pending`], [`AuditLog::root`], [`AuditLog::syncs`],
//!   [`AuditLog::last_checkpoint`], [`AuditLog::head`], [`AuditLog::kept_checkpoints`].
//! * Reading: [`verify`] (→ [`VerifyReport`] or [`VerifyFailure`]), [`read_verified`],
//!   [`read_proven`] (streaming, only proven records).
//! * Keys and checkpoints: [`SigningKeyMaterial`], [`open_checkpoint`], [`verifier_key`],
//!   [`key_id`].
//! * Proofs (RFC 9162 §2.1.3–2.1.4): [`inclusion_proof`], [`verify_inclusion`],
//!   [`consistency_proof`], [`verify_consistency`], [`leaf_hash`], [`merkle::root`]; and
//!   self-contained proof files for third parties ([`proof`]): [`prove_inclusion`] (against
//!   the smallest kept checkpoint covering the record, else the head), [`prove_consistency`]
//!   (between kept checkpoint sizes or the head's), [`verify_proof`] (→ [`Proven`] or
//!   [`ProofFailure`]).
#![forbid(unsafe_code)]

mod log;
pub mod merkle;
mod note;
pub mod proof;
mod record;
mod sink;
mod state;
mod verify;

#[cfg(test)]
mod head_tests;
#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod proof_tests;
#[cfg(test)]
mod tamper_tests;

pub use log::{AuditError, AuditLog, DEFAULT_KEEP_EVERY, Recovery};
pub use merkle::{
    Hash, ProofError, consistency_proof, inclusion_proof, leaf_hash, verify_consistency,
    verify_inclusion,
};
pub use note::{
    Checkpoint, CheckpointProblem, KeyError, MAX_ORIGIN_BYTES, SigningKeyMaterial, key_id,
    open_checkpoint, valid_origin, verifier_key,
};
pub use proof::{
    ConsistencyProof, InclusionProof, ProofFailure, ProveError, Proven, prove_consistency,
    prove_consistency_from, prove_inclusion, verify_proof,
};
pub use record::{
    MAX_BODY_DEPTH, MAX_KIND_BYTES, MAX_RECORD_BYTES, RECOVERED_KIND, Record, RecordError,
    RecordProblem, format_time, parse_time,
};
pub use state::STATE_FILE;
pub use verify::{
    MAX_CHECKPOINT_LINE_BYTES, VerifiedLog, VerifyFailure, VerifyReport, read_proven,
    read_verified, verify,
};

/// The records file in a log directory.
pub const LOG_FILE: &str = "log.jsonl";
/// The kept checkpoints file in a log directory.
pub const CHECKPOINTS_FILE: &str = "checkpoints";
/// The head checkpoint file in a log directory (replaced whole at every checkpoint that is not
/// kept).
pub const HEAD_FILE: &str = "head";
/// Where the head is written before it is renamed over [`HEAD_FILE`].
pub const HEAD_TMP_FILE: &str = "head.tmp";
/// The lock file in a log directory.
pub const LOCK_FILE: &str = "lock";
