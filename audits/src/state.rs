//! The `state` file: a starting point for `open`, so that opening a log costs what was appended
//! since the last checkpoint rather than the whole log.
//!
//! It is one JSON object, rewritten in place after every checkpoint and after a full scan that
//! found one (through a new `state.tmp` renamed over `state` when `state` is not a plain file
//! of its own: a symlink or a hard link planted there is replaced, never written through). It anchors to the checkpoint just written
//! (or the last one the scan matched), which is either a kept checkpoint, an entry of
//! `checkpoints` (version 1):
//!
//! ```text
//! {"anchor":"checkpoints","checkpoint":N,"checkpointEnd":E,"checkpointOffset":O,"frontier":["<base64>",…],"logBytes":L,"size":S,"version":1}
//! ```
//!
//! or the head checkpoint, the `head` file (version 2):
//!
//! ```text
//! {"anchor":"head","checkpointEnd":E,"frontier":["<base64>",…],"kept":K,"keptSize":KS,"logBytes":L,"size":S,"version":2}
//! ```
//!
//! `size` is the checkpoint's tree size, `frontier` the heads of the perfect subtrees of that
//! tree (one per set bit of `size`, largest first: O(log n) hashes), `logBytes` the bytes of
//! `log.jsonl` holding its records. For a kept anchor, `checkpoint` is its ordinal and
//! `checkpointOffset`..`checkpointEnd` its entry in `checkpoints` (a version 1 file without
//! `anchor` is read the same way). For a head anchor, `kept` is the number of kept checkpoints
//! before it, `keptSize` the size of the last of them, and `checkpointEnd` the length of
//! `checkpoints` they fill.
//!
//! Nothing in it is trusted as such. `open` accepts a kept anchor only if the entry at those
//! offsets is a checkpoint signed by the log's key, for this origin, whose size is `size` and
//! whose root is the root recomputed from `frontier`; a head anchor only if the `head` file
//! (authenticated by `open` before) signs `size` and that root, and `checkpointEnd` is the
//! length of `checkpoints` (no kept checkpoint after the head goes unread; a log whose state
//! lags behind a later kept checkpoint is scanned in full). Then, for both, if `logBytes` lies
//! within `log.jsonl` and ends a line, and if the records and checkpoints after it verify.
//! Otherwise (missing, unreadable, stale beyond repair, lying) `open` verifies the whole log,
//! as it did before the file existed. `kept` and `keptSize` of a head anchor are not checked
//! against the file: they only number later entries and time the next kept checkpoint. The
//! file is not synced: losing it costs one full scan.
//!
//! What a fast open does not re-check is everything before the starting point: records edited
//! or checkpoints forged *below* the anchor are [`crate::verify`]'s to find (`warrant audit
//! verify`), which always reads the whole log.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::merkle::{Frontier, Hash};
use crate::note::{Checkpoint, open_checkpoint};
use crate::verify::{Anchor, Entry, LineReader, MAX_CHECKPOINT_LINE_BYTES, Place, read_entry};

/// The state file in a log directory.
pub const STATE_FILE: &str = "state";
const STATE_TMP: &str = "state.tmp";
/// The largest state file read (64 heads of 44 base64 bytes, and some numbers).
const MAX_STATE_BYTES: u64 = 8 * 1024;
/// The longest checkpoint entry read back.
const MAX_ENTRY_BYTES: u64 = 6 * MAX_CHECKPOINT_LINE_BYTES as u64;

/// Writes the state for `anchor`, best effort (a failure leaves the previous state, which is
/// still a valid, older starting point, or none).
pub(crate) fn write(dir: &Path, anchor: &Anchor) -> io::Result<()> {
    let frontier: Vec<String> = anchor.tree.heads().iter().map(|h| B64.encode(h)).collect();
    let text = match anchor.place {
        Place::Kept { offset } => json!({
            "version": 1,
            "anchor": "checkpoints",
            "size": anchor.tree.size(),
            "frontier": frontier,
            "logBytes": anchor.log_len,
            "checkpoint": anchor.kept.saturating_sub(1),
            "checkpointOffset": offset,
            "checkpointEnd": anchor.checkpoints_len,
        }),
        Place::Head => json!({
            "version": 2,
            "anchor": "head",
            "size": anchor.tree.size(),
            "frontier": frontier,
            "logBytes": anchor.log_len,
            "kept": anchor.kept,
            "keptSize": anchor.kept_size,
            "checkpointEnd": anchor.checkpoints_len,
        }),
    }
    .to_string();
    // In place: the file is never synced and is checked before it is trusted, so a torn or
    // stale one only costs the next `open` a full read. A rename over it would cost every
    // checkpoint the old file's deletion and, on ext4, a writeback of the new one: about 20
    // times the write.
    let path = dir.join(STATE_FILE);
    if let Ok(mut file) = OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        let own = file
            .metadata()
            .is_ok_and(|m| m.is_file() && std::os::unix::fs::MetadataExt::nlink(&m) == 1);
        if own {
            // Longer text first, then the length: a shorter state never keeps a stale tail.
            return file
                .write_all(text.as_bytes())
                .and_then(|()| file.set_len(text.len() as u64));
        }
    }
    let tmp = dir.join(STATE_TMP);
    // Created afresh and exclusively: a file or symlink left (or planted) at `state.tmp` is
    // removed, never written through.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    std::fs::rename(&tmp, dir.join(STATE_FILE))
}

/// Which checkpoint the state claims to anchor to.
enum Claimed {
    /// The entry of `checkpoints` with this ordinal, at this offset.
    Kept { ordinal: u64, offset: u64 },
    /// The head, after `kept` kept checkpoints, the last of size `kept_size`.
    Head { kept: u64, kept_size: u64 },
}

/// The state's claims, parsed (not yet checked against the files).
struct Claims {
    size: u64,
    heads: Vec<Hash>,
    log_len: u64,
    anchor: Claimed,
    checkpoints_len: u64,
}

fn parse(bytes: &[u8]) -> Option<Claims> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let num = |name: &str| value.get(name).and_then(Value::as_u64);
    let anchor = value.get("anchor").map(Value::as_str);
    let anchor = match (num("version")?, anchor) {
        (1, None | Some(Some("checkpoints"))) => Claimed::Kept {
            ordinal: num("checkpoint")?,
            offset: num("checkpointOffset")?,
        },
        (2, Some(Some("head"))) => Claimed::Head {
            kept: num("kept")?,
            kept_size: num("keptSize")?,
        },
        _ => return None,
    };
    let heads = value
        .get("frontier")?
        .as_array()?
        .iter()
        .map(|h| {
            let bytes = B64.decode(h.as_str()?).ok()?;
            Hash::try_from(bytes.as_slice()).ok()
        })
        .collect::<Option<Vec<Hash>>>()?;
    Some(Claims {
        size: num("size")?,
        heads,
        log_len: num("logBytes")?,
        anchor,
        checkpoints_len: num("checkpointEnd")?,
    })
}

/// Reads `state` and checks it against the files (see the module docs); `None` if it is absent
/// or fails any check. `head` is the log's head checkpoint, already authenticated.
pub(crate) fn read(
    dir: &Path,
    log: &mut File,
    checkpoints: &mut File,
    head: Option<&Checkpoint>,
    public_key: &[u8; 32],
    origin: &str,
) -> Option<Anchor> {
    let mut bytes = Vec::new();
    File::open(dir.join(STATE_FILE))
        .ok()?
        .take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return None;
    }
    let claims = parse(&bytes)?;
    let tree = Frontier::from_heads(claims.size, claims.heads)?;
    let checkpoints_file_len = checkpoints.metadata().ok()?.len();

    let (checkpoint, place, kept, kept_size) = match claims.anchor {
        Claimed::Kept { ordinal, offset } => {
            // The checkpoint entry: where the state says, signed, for this size and this root.
            let entry_len = claims.checkpoints_len.checked_sub(offset)?;
            if entry_len == 0
                || entry_len > MAX_ENTRY_BYTES
                || claims.checkpoints_len > checkpoints_file_len
            {
                return None;
            }
            checkpoints.seek(SeekFrom::Start(offset)).ok()?;
            let mut lines = LineReader::new(Read::by_ref(checkpoints).take(entry_len));
            let Ok(Entry::Note { text, len }) = read_entry(&mut lines, &mut Vec::new()) else {
                return None;
            };
            if len != entry_len {
                return None;
            }
            let checkpoint =
                open_checkpoint(&String::from_utf8(text).ok()?, origin, public_key).ok()?;
            let size = checkpoint.size;
            (
                checkpoint,
                Place::Kept { offset },
                ordinal.checked_add(1)?,
                size,
            )
        }
        Claimed::Head { kept, kept_size } => {
            // The head: the one in the directory, and no kept checkpoint after it.
            let head = head?;
            if claims.checkpoints_len != checkpoints_file_len || kept_size > claims.size {
                return None;
            }
            (head.clone(), Place::Head, kept, kept_size)
        }
    };
    if checkpoint.size != tree.size() || checkpoint.root != tree.root() {
        return None;
    }

    // The log: the records end exactly at `logBytes`, at the end of a line.
    let log_file_len = log.metadata().ok()?.len();
    if claims.log_len > log_file_len || (claims.log_len == 0) != (claims.size == 0) {
        return None;
    }
    if claims.log_len > 0 {
        log.seek(SeekFrom::Start(claims.log_len - 1)).ok()?;
        let mut last = [0u8; 1];
        log.read_exact(&mut last).ok()?;
        if last != *b"\n" {
            return None;
        }
    }

    log.seek(SeekFrom::Start(claims.log_len)).ok()?;
    checkpoints
        .seek(SeekFrom::Start(claims.checkpoints_len))
        .ok()?;
    Some(Anchor {
        tree,
        log_len: claims.log_len,
        checkpoint,
        place,
        kept,
        kept_size,
        checkpoints_len: claims.checkpoints_len,
    })
}
