//! Self-contained proofs: show one record, or that a log only grew, to someone who has the
//! log's verifier key and nothing else.
//!
//! An **inclusion proof** (JSON):
//!
//! ```text
//! {
//!   "type": "warrant-audit-inclusion-v1",
//!   "index": 3,                        // the record's position
//!   "record": "{\"body\":{…},…}",      // its line in log.jsonl, without the newline
//!   "treeSize": 5,                     // the size the checkpoint signs
//!   "checkpoint": "<origin>\n5\n<base64 root>\n\n— <origin> <base64 signature>\n",
//!   "path": ["<base64 hash>", …]       // RFC 9162 §2.1.3 inclusion path, leaf side first
//! }
//! ```
//!
//! The checkpoint is the **smallest kept** checkpoint in the log that covers the record (the
//! first kept signed statement that includes it), or, for a record after the last kept
//! checkpoint, the head. A kept checkpoint is fixed once written, so proving such a record
//! twice gives the same proof; a proof against the head stays valid after the head moves on
//! (it carries its checkpoint, and checking it needs only the key), but proving the record
//! again later gives a proof against a later checkpoint. To tie a proof to a later checkpoint,
//! add a consistency proof from that size.
//!
//! A **consistency proof**:
//!
//! ```text
//! {
//!   "type": "warrant-audit-consistency-v1",
//!   "oldSize": 5, "oldCheckpoint": "…",   // two signed checkpoints of the log
//!   "newSize": 10, "newCheckpoint": "…",
//!   "path": ["<base64 hash>", …]           // RFC 9162 §2.1.4 consistency path
//! }
//! ```
//!
//! Either checkpoint of a consistency proof may be the head (as the new one; as the old one
//! only if it has the same size as the new one, since the head is the newest checkpoint).
//!
//! [`verify_proof`] checks, in this order: size ([`MAX_PROOF_BYTES`]) and form (strict JSON,
//! no unknown fields, at most [`MAX_PATH_HASHES`] 32-byte hashes), each checkpoint's signature
//! (origin, key, signature), that the stated sizes are the signed ones, then — for inclusion —
//! that the record is a canonical record whose `index` is the proof's, and that the path leads
//! from its leaf hash to the signed root; for consistency, that the path leads from the old
//! signed root to the new one. The first failure is returned as a [`ProofFailure`].

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::merkle::{
    Hash, consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
};
use crate::note::{Checkpoint, CheckpointProblem, open_checkpoint};
use crate::record::{Record, RecordProblem, parse_line};
use crate::verify::{Seen, VerifyFailure, open_for_reading, scan};

/// The `type` of an inclusion proof.
pub const INCLUSION_TYPE: &str = "warrant-audit-inclusion-v1";
/// The `type` of a consistency proof.
pub const CONSISTENCY_TYPE: &str = "warrant-audit-consistency-v1";
/// The largest proof file read: a record, two checkpoints and a path fit in far less.
pub const MAX_PROOF_BYTES: usize = 256 * 1024;
/// The longest path: a tree of 2^64 leaves needs 64 hashes for inclusion, at most 2·64 for
/// consistency.
pub const MAX_PATH_HASHES: usize = 128;

/// A proof that one record is in the log, as written to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InclusionProof {
    /// Always [`INCLUSION_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The record's position in the log.
    pub index: u64,
    /// The record's line, without its newline.
    pub record: String,
    /// The tree size the checkpoint signs.
    pub tree_size: u64,
    /// The signed checkpoint (note text).
    pub checkpoint: String,
    /// The inclusion path, base64 hashes, leaf side first.
    pub path: Vec<String>,
}

/// A proof that the log at one checkpoint extends the log at an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsistencyProof {
    /// Always [`CONSISTENCY_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The earlier tree size.
    pub old_size: u64,
    /// The earlier signed checkpoint.
    pub old_checkpoint: String,
    /// The later tree size.
    pub new_size: u64,
    /// The later signed checkpoint.
    pub new_checkpoint: String,
    /// The consistency path, base64 hashes.
    pub path: Vec<String>,
}

/// Why a proof cannot be made from a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError {
    /// The log does not verify.
    #[error("the audit log fails verification: {0}")]
    Log(#[from] VerifyFailure),
    /// No such record.
    #[error("no record {index}: the log holds {size} records")]
    NoRecord {
        /// The record asked for.
        index: u64,
        /// The log's size.
        size: u64,
    },
    /// The record lies after the newest checkpoint: no signature covers it yet.
    #[error(
        "record {index} is not covered by a checkpoint yet (the newest signs {} records)",
        newest.map_or_else(|| "no".to_owned(), |n| n.to_string())
    )]
    NotCheckpointed {
        /// The record asked for.
        index: u64,
        /// The newest checkpoint's size.
        newest: Option<u64>,
    },
    /// A consistency proof was asked between sizes that are not both checkpoints (kept, or
    /// the head).
    #[error("no checkpoint of size {size}; nearest: {}", nearest(*below, *above))]
    NotACheckpoint {
        /// The size asked for.
        size: u64,
        /// The largest checkpoint size below it (kept or the head).
        below: Option<u64>,
        /// The smallest checkpoint size above it (kept or the head).
        above: Option<u64>,
    },
    /// A checkpoint brought from elsewhere does not authenticate (malformed, another origin,
    /// another key, a bad signature).
    #[error("the checkpoint given is not one of this log's: {0}")]
    ForeignCheckpoint(CheckpointProblem),
    /// A checkpoint this log's key signed, whose root is not the root of this log at its
    /// size: the log was rewritten (or forked) after that checkpoint was signed.
    #[error(
        "the log does not extend the checkpoint given: at size {size} its root is {}, the checkpoint signs {}",
        B64.encode(log_root),
        B64.encode(signed_root)
    )]
    Rewritten {
        /// The checkpoint's size.
        size: u64,
        /// The root of this log's first `size` records.
        log_root: Hash,
        /// The root the checkpoint signs.
        signed_root: Hash,
    },
    /// A checkpoint brought from elsewhere is larger than the log: records it signs were
    /// cut off (or it was signed for another log under this key).
    #[error("the checkpoint given signs {size} records; the log holds only {log_size}")]
    BeyondLog {
        /// The checkpoint's size.
        size: u64,
        /// The log's size.
        log_size: u64,
    },
    /// `from` is larger than `to`.
    #[error("a consistency proof goes from a smaller size to a larger one, not {from} to {to}")]
    Backwards {
        /// The first size.
        from: u64,
        /// The second size.
        to: u64,
    },
}

fn nearest(below: Option<u64>, above: Option<u64>) -> String {
    match (below, above) {
        (Some(b), Some(a)) => format!("{b} and {a}"),
        (Some(b), None) => format!("{b} (the newest)"),
        (None, Some(a)) => format!("{a} (the oldest)"),
        (None, None) => "none: the log has no checkpoint".to_owned(),
    }
}

/// Why a proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofFailure {
    /// Larger than [`MAX_PROOF_BYTES`].
    #[error("proof larger than {MAX_PROOF_BYTES} bytes")]
    TooLarge,
    /// Not a proof in this format (JSON, fields, types, base64, hash lengths, path length).
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// A checkpoint fails: not in the format, another origin or key, or a bad signature.
    #[error("{which}: {problem}")]
    Checkpoint {
        /// `checkpoint`, `old checkpoint` or `new checkpoint`.
        which: &'static str,
        /// What is wrong.
        problem: CheckpointProblem,
    },
    /// A stated size is not the size its checkpoint signs.
    #[error("{which} says size {stated}, but its checkpoint signs {signed}")]
    SizeMismatch {
        /// `treeSize`, `oldSize` or `newSize`.
        which: &'static str,
        /// The size in the proof.
        stated: u64,
        /// The size in the signed checkpoint.
        signed: u64,
    },
    /// The record's index is not below the signed tree size.
    #[error("index {index} is not below the signed tree size {size}")]
    IndexOutOfRange {
        /// The proof's index.
        index: u64,
        /// The signed size.
        size: u64,
    },
    /// The record line is not a canonical record at the proof's index.
    #[error("the record: {0}")]
    Record(RecordProblem),
    /// The path does not lead from the record's leaf hash to the signed root.
    #[error(
        "the inclusion path does not lead from the record to the signed root: the record, its \
         index or the path was altered"
    )]
    NotIncluded,
    /// The old checkpoint is larger than the new one.
    #[error("old size {old} is larger than new size {new}")]
    Backwards {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// The path does not show the new tree extends the old one.
    #[error(
        "the consistency path does not show that the tree of size {new} extends the tree of \
         size {old}"
    )]
    NotConsistent {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
    },
}

/// What a valid proof proves.
#[derive(Debug, Clone, PartialEq)]
pub enum Proven {
    /// The record is entry `index` of the log whose tree of `checkpoint.size` records has the
    /// signed root `checkpoint.root`.
    Inclusion {
        /// The record.
        record: Record,
        /// The checkpoint that covers it.
        checkpoint: Checkpoint,
    },
    /// The log at `new` extends the log at `old`: the first `old.size` records are the same.
    Consistency {
        /// The earlier checkpoint.
        old: Checkpoint,
        /// The later checkpoint.
        new: Checkpoint,
    },
}

/// What a proof is built from: the leaves, the checkpoints, and the one line asked for.
struct Read {
    leaves: Vec<Hash>,
    /// The kept checkpoints, one per size, in order.
    checkpoints: Vec<Checkpoint>,
    /// The head, if the log has one.
    head: Option<Checkpoint>,
    line: Option<Vec<u8>>,
}

impl Read {
    /// Every checkpoint size, kept or head, in order, without repeats.
    fn sizes(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self.checkpoints.iter().map(|c| c.size).collect();
        sizes.extend(self.head.as_ref().map(|h| h.size));
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    /// The checkpoint of this size: a kept one if there is one, else the head.
    fn at(&self, size: u64) -> Option<&Checkpoint> {
        self.checkpoints
            .iter()
            .find(|c| c.size == size)
            .or(self.head.as_ref().filter(|h| h.size == size))
    }
}

/// Verifies the whole log (as [`crate::verify`]) keeping the leaf hashes, every checkpoint, and
/// the line of record `want`.
fn read_log(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
    want: Option<u64>,
) -> Result<Read, VerifyFailure> {
    let (log, checkpoints, head) = open_for_reading(dir, public_key, origin)?;
    let mut read = Read {
        leaves: Vec::new(),
        checkpoints: Vec::new(),
        head: None,
        line: None,
    };
    scan(
        log,
        checkpoints,
        head,
        None,
        false,
        public_key,
        origin,
        &mut |seen| match seen {
            Seen::Record(line, _, leaf) => {
                if Some(read.leaves.len() as u64) == want {
                    read.line = Some(line.to_vec());
                }
                read.leaves.push(leaf);
            }
            Seen::Proven {
                checkpoint,
                head: true,
            } => read.head = Some(checkpoint.clone()),
            Seen::Proven {
                checkpoint,
                head: false,
            } => {
                // Equal sizes are the same tree (the scan checked the roots): keep the first.
                if read
                    .checkpoints
                    .last()
                    .is_none_or(|last| last.size < checkpoint.size)
                {
                    read.checkpoints.push(checkpoint.clone());
                }
            }
        },
    )?;
    Ok(read)
}

fn encode_path(path: &[Hash]) -> Vec<String> {
    path.iter().map(|h| B64.encode(h)).collect()
}

/// Builds the inclusion proof of record `index` of the log in `dir`, against the smallest kept
/// checkpoint that covers it, or the head if no kept one does. The whole log is verified
/// first.
pub fn prove_inclusion(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
    index: u64,
) -> Result<InclusionProof, ProveError> {
    let read = read_log(dir, public_key, origin, Some(index))?;
    let size = read.leaves.len() as u64;
    let Some(line) = read.line.clone() else {
        return Err(ProveError::NoRecord { index, size });
    };
    let covering = read
        .checkpoints
        .iter()
        .find(|c| c.size > index)
        .or(read.head.as_ref().filter(|h| h.size > index));
    let Some(cp) = covering else {
        return Err(ProveError::NotCheckpointed {
            index,
            newest: read.sizes().last().copied(),
        });
    };
    // The scan matched every checkpoint against these leaves, so the sizes are in range.
    let path = inclusion_proof(&read.leaves, index, cp.size)
        .map_err(|_| ProveError::NoRecord { index, size })?;
    Ok(InclusionProof {
        kind: INCLUSION_TYPE.to_owned(),
        index,
        record: String::from_utf8_lossy(&line).into_owned(),
        tree_size: cp.size,
        checkpoint: cp.note.clone(),
        path: encode_path(&path),
    })
}

/// Builds the consistency proof between the checkpoints of sizes `from` and `to` of the log in
/// `dir` (both must be checkpoint sizes, kept or the head's). The whole log is verified first.
pub fn prove_consistency(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, ProveError> {
    if from > to {
        return Err(ProveError::Backwards { from, to });
    }
    let read = read_log(dir, public_key, origin, None)?;
    let sizes = read.sizes();
    let find = |size: u64| {
        read.at(size).ok_or_else(|| ProveError::NotACheckpoint {
            size,
            below: sizes.iter().rev().find(|&&s| s < size).copied(),
            above: sizes.iter().find(|&&s| s > size).copied(),
        })
    };
    let (old, new) = (find(from)?, find(to)?);
    let path = consistency_proof(&read.leaves, from, to)
        .map_err(|_| ProveError::Backwards { from, to })?;
    Ok(ConsistencyProof {
        kind: CONSISTENCY_TYPE.to_owned(),
        old_size: from,
        old_checkpoint: old.note.clone(),
        new_size: to,
        new_checkpoint: new.note.clone(),
        path: encode_path(&path),
    })
}

/// Builds the consistency proof from a checkpoint kept elsewhere (`old_note`: a note this
/// log's key signed, say the head a third party saved before it was replaced) to this log's
/// checkpoint of size `to`, or its newest one. Any size works, not only those the log still
/// holds a checkpoint for, and the proof carries `old_note` itself, so it checks as any other
/// ([`verify_proof`]). The whole log is verified first, then the note is checked against it:
/// a root that differs from the log's at that size means the log was rewritten since
/// ([`ProveError::Rewritten`]).
pub fn prove_consistency_from(
    dir: &Path,
    public_key: &[u8; 32],
    origin: &str,
    old_note: &str,
    to: Option<u64>,
) -> Result<ConsistencyProof, ProveError> {
    let old =
        open_checkpoint(old_note, origin, public_key).map_err(ProveError::ForeignCheckpoint)?;
    let read = read_log(dir, public_key, origin, None)?;
    let log_size = read.leaves.len() as u64;
    let within = usize::try_from(old.size)
        .ok()
        .and_then(|n| read.leaves.get(..n))
        .ok_or(ProveError::BeyondLog {
            size: old.size,
            log_size,
        })?;
    let log_root = crate::merkle::root(within);
    if log_root != old.root {
        return Err(ProveError::Rewritten {
            size: old.size,
            log_root,
            signed_root: old.root,
        });
    }
    let sizes = read.sizes();
    let to = match to.or_else(|| sizes.last().copied()) {
        Some(to) => to,
        None => {
            return Err(ProveError::NotACheckpoint {
                size: old.size,
                below: None,
                above: None,
            });
        }
    };
    if old.size > to {
        return Err(ProveError::Backwards { from: old.size, to });
    }
    let new = read.at(to).ok_or_else(|| ProveError::NotACheckpoint {
        size: to,
        below: sizes.iter().rev().find(|&&s| s < to).copied(),
        above: sizes.iter().find(|&&s| s > to).copied(),
    })?;
    let path = consistency_proof(&read.leaves, old.size, to)
        .map_err(|_| ProveError::Backwards { from: old.size, to })?;
    Ok(ConsistencyProof {
        kind: CONSISTENCY_TYPE.to_owned(),
        old_size: old.size,
        old_checkpoint: old_note.to_owned(),
        new_size: to,
        new_checkpoint: new.note.clone(),
        path: encode_path(&path),
    })
}

fn decode_path(path: &[String]) -> Result<Vec<Hash>, ProofFailure> {
    if path.len() > MAX_PATH_HASHES {
        return Err(ProofFailure::Malformed(format!(
            "a path of {} hashes (at most {MAX_PATH_HASHES})",
            path.len()
        )));
    }
    path.iter()
        .enumerate()
        .map(|(i, h)| {
            let bytes = B64
                .decode(h)
                .map_err(|e| ProofFailure::Malformed(format!("path[{i}] is not base64: {e}")))?;
            Hash::try_from(bytes.as_slice()).map_err(|_| {
                ProofFailure::Malformed(format!("path[{i}] is {} bytes, not 32", bytes.len()))
            })
        })
        .collect()
}

fn checkpoint(
    which: &'static str,
    note: &str,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Checkpoint, ProofFailure> {
    open_checkpoint(note, origin, public_key)
        .map_err(|problem| ProofFailure::Checkpoint { which, problem })
}

fn same_size(which: &'static str, stated: u64, signed: u64) -> Result<(), ProofFailure> {
    if stated == signed {
        Ok(())
    } else {
        Err(ProofFailure::SizeMismatch {
            which,
            stated,
            signed,
        })
    }
}

/// Checks a proof file's bytes against the log's origin and checkpoint key, with no access to
/// the log (see the module docs for the order of checks).
pub fn verify_proof(
    bytes: &[u8],
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Proven, ProofFailure> {
    if bytes.len() > MAX_PROOF_BYTES {
        return Err(ProofFailure::TooLarge);
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ProofFailure::Malformed(e.to_string()))?;
    let malformed = |e: serde_json::Error| ProofFailure::Malformed(e.to_string());
    match value.get("type").and_then(Value::as_str) {
        Some(INCLUSION_TYPE) => {
            let proof: InclusionProof = serde_json::from_value(value).map_err(malformed)?;
            verify_inclusion_proof(&proof, origin, public_key)
        }
        Some(CONSISTENCY_TYPE) => {
            let proof: ConsistencyProof = serde_json::from_value(value).map_err(malformed)?;
            verify_consistency_proof(&proof, origin, public_key)
        }
        Some(other) => Err(ProofFailure::Malformed(format!(
            "unknown proof type `{other}`"
        ))),
        None => Err(ProofFailure::Malformed("no proof `type`".to_owned())),
    }
}

/// Checks an inclusion proof (see [`verify_proof`]).
pub fn verify_inclusion_proof(
    proof: &InclusionProof,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Proven, ProofFailure> {
    if proof.kind != INCLUSION_TYPE {
        return Err(ProofFailure::Malformed(format!(
            "type `{}`, not `{INCLUSION_TYPE}`",
            proof.kind
        )));
    }
    let path = decode_path(&proof.path)?;
    let cp = checkpoint("checkpoint", &proof.checkpoint, origin, public_key)?;
    same_size("treeSize", proof.tree_size, cp.size)?;
    if proof.index >= cp.size {
        return Err(ProofFailure::IndexOutOfRange {
            index: proof.index,
            size: cp.size,
        });
    }
    let line = proof.record.as_bytes();
    let record = parse_line(line, proof.index).map_err(ProofFailure::Record)?;
    if !verify_inclusion(leaf_hash(line), proof.index, cp.size, &path, cp.root) {
        return Err(ProofFailure::NotIncluded);
    }
    Ok(Proven::Inclusion {
        record,
        checkpoint: cp,
    })
}

/// Checks a consistency proof (see [`verify_proof`]).
pub fn verify_consistency_proof(
    proof: &ConsistencyProof,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Proven, ProofFailure> {
    if proof.kind != CONSISTENCY_TYPE {
        return Err(ProofFailure::Malformed(format!(
            "type `{}`, not `{CONSISTENCY_TYPE}`",
            proof.kind
        )));
    }
    let path = decode_path(&proof.path)?;
    let old = checkpoint("old checkpoint", &proof.old_checkpoint, origin, public_key)?;
    let new = checkpoint("new checkpoint", &proof.new_checkpoint, origin, public_key)?;
    same_size("oldSize", proof.old_size, old.size)?;
    same_size("newSize", proof.new_size, new.size)?;
    if old.size > new.size {
        return Err(ProofFailure::Backwards {
            old: old.size,
            new: new.size,
        });
    }
    if !verify_consistency(old.size, new.size, old.root, new.root, &path) {
        return Err(ProofFailure::NotConsistent {
            old: old.size,
            new: new.size,
        });
    }
    Ok(Proven::Consistency { old, new })
}
