//! Tests of the writer: the API, locking, torn tails and recovery, and fault injection.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::log::Role;
use crate::merkle;
use crate::sink::fault::{Fault, FaultySink, Plan};
use crate::sink::{FileSink, Sink};
use crate::*;

pub(crate) const ORIGIN: &str = "warrant.test/audit";

pub(crate) fn time(i: u64) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_767_225_600 + i * 61, (i as u32 * 7_919) % 1_000_000_000)
}

pub(crate) fn new_key() -> Vec<u8> {
    SigningKeyMaterial::generate_pkcs8().unwrap()
}

pub(crate) fn key(der: &[u8]) -> SigningKeyMaterial {
    SigningKeyMaterial::from_pkcs8(der).unwrap()
}

pub(crate) fn public(der: &[u8]) -> [u8; 32] {
    key(der).public_key()
}

pub(crate) fn open_with_plan(
    dir: &Path,
    der: &[u8],
    plan: &Arc<Plan>,
) -> Result<(AuditLog, Recovery), AuditError> {
    let plan = plan.clone();
    AuditLog::open_with(
        dir,
        ORIGIN,
        key(der),
        time(9_999),
        Arc::new(move |file, _role: Role| {
            Box::new(FaultySink {
                inner: FileSink::new(file),
                plan: plan.clone(),
            }) as Box<dyn Sink>
        }),
    )
}

pub(crate) fn body(i: u64) -> Value {
    json!({
        "i": i,
        "allow": !i.is_multiple_of(3),
        "grants": [{"fs": "/data"}],
        "note": "é \"q\" \\ tab\t",
        "ratio": (i as f64) / 7.0,
    })
}

pub(crate) fn kind(i: u64) -> &'static str {
    ["pull", "verify", "decide", "instantiate", "outcome"][(i % 5) as usize]
}

#[test]
fn append_checkpoint_verify_prove_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let der = new_key();
    let (mut log, recovery) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(0)).unwrap();
    assert_eq!(recovery, Recovery::default());
    assert_eq!((log.size(), log.root()), (0, merkle::empty_root()));
    assert_eq!(log.keep_every(), DEFAULT_KEEP_EVERY);
    // Every checkpoint kept (the head has its own tests).
    log.set_keep_every(1);
    for i in 0..5 {
        assert_eq!(log.append(kind(i), body(i), time(i)).unwrap(), i);
    }
    let first = log.checkpoint().unwrap();
    assert_eq!((first.size, first.root), (5, log.root()));
    for i in 5..11 {
        assert_eq!(log.append(kind(i), body(i), time(i)).unwrap(), i);
    }
    let (index, second) = log
        .append_checkpointed("outcome", json!({"exit": 0}), time(11))
        .unwrap();
    assert_eq!((index, second.size), (11, 12));
    assert_eq!(log.last_checkpoint(), Some(&second));
    let root = log.root();
    drop(log);

    let pk = public(&der);
    let read = read_verified(dir.path(), &pk, ORIGIN).unwrap();
    assert_eq!(read.report.size, 12);
    assert_eq!(read.report.root, root);
    assert_eq!(read.report.checkpoints, 2);
    assert_eq!(read.report.unproven_records, 0);
    assert_eq!(merkle::root(&read.leaves), root);
    for (i, r) in read.records.iter().enumerate().take(11) {
        let i = i as u64;
        assert_eq!(
            (r.index, r.kind.as_str(), r.system_time()),
            (i, kind(i), Some(time(i)))
        );
        assert_eq!(Value::Object(r.body.clone()), body(i));
    }
    // The signed checkpoints stand on their own, and prove inclusion and consistency.
    assert_eq!(
        open_checkpoint(&second.note, ORIGIN, &pk),
        Ok(second.clone())
    );
    for i in 0..12 {
        let proof = inclusion_proof(&read.leaves, i, 12).unwrap();
        assert!(verify_inclusion(
            read.leaves[i as usize],
            i,
            12,
            &proof,
            second.root
        ));
    }
    let proof = consistency_proof(&read.leaves, 5, 12).unwrap();
    assert!(verify_consistency(5, 12, first.root, second.root, &proof));
    assert_eq!(
        fs::read_to_string(dir.path().join(CHECKPOINTS_FILE)).unwrap(),
        format!("{}\n{}\n", first.note, second.note)
    );

    // Reopening finds the same tree and carries on.
    let (mut log, recovery) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(12)).unwrap();
    assert_eq!(recovery, Recovery::default());
    assert_eq!(
        (log.size(), log.root(), log.last_checkpoint()),
        (12, root, Some(&second))
    );
    assert_eq!(log.append("pull", json!({}), time(12)).unwrap(), 12);
    drop(log);
    assert_eq!(verify(dir.path(), &pk, ORIGIN).unwrap().unproven_records, 1);

    // Another key or origin cannot open or verify it.
    let other = new_key();
    assert!(matches!(
        AuditLog::open_at(dir.path(), ORIGIN, key(&other), time(13)),
        Err(AuditError::Corrupt(VerifyFailure::Checkpoint {
            ordinal: 0,
            offset: 0,
            problem: CheckpointProblem::UnknownKey { .. }
        }))
    ));
    assert!(matches!(
        verify(dir.path(), &pk, "warrant.test/other"),
        Err(VerifyFailure::Checkpoint {
            ordinal: 0,
            problem: CheckpointProblem::WrongOrigin(_),
            ..
        })
    ));
}

#[test]
fn one_writer_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let der = new_key();
    let (log, _) = AuditLog::open(dir.path(), ORIGIN, key(&der)).unwrap();
    assert!(matches!(
        AuditLog::open(dir.path(), ORIGIN, key(&der)),
        Err(AuditError::Locked)
    ));
    // Readers need no lock.
    assert_eq!(
        verify(dir.path(), &log.public_key(), ORIGIN).unwrap().size,
        0
    );
    drop(log);
    assert!(AuditLog::open(dir.path(), ORIGIN, key(&der)).is_ok());
    assert!(matches!(
        AuditLog::open(dir.path(), "bad origin", key(&der)),
        Err(AuditError::InvalidOrigin(_))
    ));
}

#[test]
fn refused_records_write_nothing_and_do_not_poison() {
    let dir = tempfile::tempdir().unwrap();
    let der = new_key();
    let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(0)).unwrap();
    let refused = [
        log.append(RECOVERED_KIND, json!({}), time(0)),
        log.append("Bad Kind", json!({}), time(0)),
        log.append("pull", json!([1, 2]), time(0)),
        log.append("pull", json!({"x": "y".repeat(MAX_RECORD_BYTES)}), time(0)),
        log.append("pull", json!({}), UNIX_EPOCH - Duration::from_secs(1)),
    ];
    for r in refused {
        assert!(matches!(r, Err(AuditError::Record(_))), "{r:?}");
    }
    assert!(!log.is_poisoned());
    assert_eq!(fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(), 0);
    assert_eq!(log.append("pull", json!({}), time(0)).unwrap(), 0);
}

/// Builds a log of `n` records with a checkpoint after the first `checkpointed` of them, with
/// real fsyncs; returns the directory and the bytes of `log.jsonl` and `checkpoints`.
fn build(der: &[u8], n: u64, checkpointed: u64) -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(der), time(0)).unwrap();
    log.set_keep_every(1);
    for i in 0..n {
        if i == checkpointed {
            log.checkpoint().unwrap();
        }
        log.append(kind(i), body(i), time(i)).unwrap();
    }
    if n == checkpointed {
        log.checkpoint().unwrap();
    }
    drop(log);
    let log = fs::read(dir.path().join(LOG_FILE)).unwrap();
    let checkpoints = fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap();
    (dir, log, checkpoints)
}

fn write_log(dir: &Path, log: &[u8], checkpoints: &[u8]) {
    fs::write(dir.join(LOG_FILE), log).unwrap();
    fs::write(dir.join(CHECKPOINTS_FILE), checkpoints).unwrap();
}

/// Test 3: the last record cut at every byte position: `open` cuts exactly the partial line,
/// appends a `recovered` record saying how many bytes it dropped, the log verifies, and every
/// earlier record is there byte for byte.
#[test]
fn torn_tail_cut_at_every_byte_of_the_last_record() {
    let der = new_key();
    let pk = public(&der);
    let (_base, full, checkpoints) = build(&der, 6, 5);
    let last_start = full[..full.len() - 1]
        .iter()
        .rposition(|&c| c == b'\n')
        .unwrap()
        + 1;
    let last_len = full.len() - last_start; // with its newline
    assert!(last_len > 100, "the record is {last_len} bytes");
    let mut cases = 0;
    for cut in 0..last_len {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), &full[..last_start + cut], &checkpoints);
        if cut > 0 {
            // Before recovery, verify reports the torn tail and fails nothing.
            let report = verify(dir.path(), &pk, ORIGIN).unwrap();
            assert_eq!((report.size, report.torn_tail_bytes), (5, cut as u64));
        }
        let (log, recovery) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(777)).unwrap();
        drop(log);
        let read = read_verified(dir.path(), &pk, ORIGIN).unwrap();
        let on_disk = fs::read(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(
            &on_disk[..last_start],
            &full[..last_start],
            "cut {cut}: earlier records"
        );
        assert_eq!(read.report.torn_tail_bytes, 0);
        if cut == 0 {
            assert_eq!(recovery, Recovery::default());
            assert_eq!(read.records.len(), 5);
        } else {
            assert_eq!(
                recovery,
                Recovery {
                    truncated_bytes: cut as u64,
                    truncated_checkpoint_bytes: 0,
                    recovered_index: Some(5)
                },
                "cut {cut}"
            );
            assert_eq!(read.records.len(), 6);
            let recovered = &read.records[5];
            assert_eq!(recovered.kind, RECOVERED_KIND);
            assert_eq!(recovered.system_time(), Some(time(777)));
            assert_eq!(
                Value::Object(recovered.body.clone()),
                json!({"truncated_bytes": cut, "truncated_checkpoint_bytes": 0})
            );
        }
        for (i, r) in read.records.iter().take(5).enumerate() {
            assert_eq!(Value::Object(r.body.clone()), body(i as u64));
        }
        cases += 1;
    }
    assert_eq!(cases, last_len);
}

/// An incomplete last checkpoint entry, cut at every byte: cut off on open, said so in a
/// `recovered` record; the earlier checkpoint still holds.
#[test]
fn torn_checkpoint_entry_cut_at_every_byte() {
    let der = new_key();
    let pk = public(&der);
    let dir0 = tempfile::tempdir().unwrap();
    let (mut log, _) = AuditLog::open_at(dir0.path(), ORIGIN, key(&der), time(0)).unwrap();
    log.set_keep_every(1);
    log.append("pull", body(0), time(0)).unwrap();
    let first = log.checkpoint().unwrap();
    log.append("verify", body(1), time(1)).unwrap();
    log.checkpoint().unwrap();
    drop(log);
    let records = fs::read(dir0.path().join(LOG_FILE)).unwrap();
    let checkpoints = fs::read(dir0.path().join(CHECKPOINTS_FILE)).unwrap();
    let keep = first.note.len() + 1;
    for cut in 1..checkpoints.len() - keep {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), &records, &checkpoints[..keep + cut]);
        assert_eq!(
            verify(dir.path(), &pk, ORIGIN)
                .unwrap()
                .torn_checkpoint_bytes,
            cut as u64
        );
        let (log, recovery) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(5)).unwrap();
        assert_eq!(
            recovery,
            Recovery {
                truncated_bytes: 0,
                truncated_checkpoint_bytes: cut as u64,
                recovered_index: Some(2)
            }
        );
        assert_eq!(log.last_checkpoint(), Some(&first));
        drop(log);
        let report = verify(dir.path(), &pk, ORIGIN).unwrap();
        assert_eq!(
            (report.size, report.checkpoints, report.unproven_records),
            (3, 1, 2)
        );
        assert_eq!(
            fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap(),
            &checkpoints[..keep]
        );
    }
}

/// A tail longer than any record cannot be a torn append: `open` refuses it and changes
/// nothing. A 10 GiB line (a sparse file) is reported without being read into memory.
#[test]
fn oversized_tail_is_corruption_and_is_never_read_whole() {
    let der = new_key();
    let pk = public(&der);
    let (dir, full, _) = build(&der, 3, 3);
    let path = dir.path().join(LOG_FILE);
    let line2 = full[..full.len() - 1]
        .iter()
        .rposition(|&c| c == b'\n')
        .unwrap() as u64
        + 1;

    let huge = full.len() as u64 + 10 * 1024 * 1024 * 1024;
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(huge)
        .unwrap();
    let want = VerifyFailure::Record {
        index: 3,
        offset: full.len() as u64,
        problem: RecordProblem::Oversize,
    };
    assert_eq!(verify(dir.path(), &pk, ORIGIN), Err(want.clone()));
    match AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(9)) {
        Err(AuditError::Corrupt(f)) => assert_eq!(f, want),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        huge,
        "open must not touch a corrupt log"
    );

    // The same inside the log: an oversized line, then more records.
    let mut bytes = full[..line2 as usize].to_vec();
    bytes.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 1));
    bytes.push(b'\n');
    bytes.extend_from_slice(&full[line2 as usize..]);
    fs::write(&path, &bytes).unwrap();
    assert_eq!(
        verify(dir.path(), &pk, ORIGIN),
        Err(VerifyFailure::Record {
            index: 2,
            offset: line2,
            problem: RecordProblem::Oversize
        })
    );
}

/// The append + checkpoint sequence the fault tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Append(u64),
    Checkpoint,
}

const STEPS: [Step; 8] = [
    Step::Append(0),
    Step::Append(1),
    Step::Checkpoint,
    Step::Append(2),
    Step::Checkpoint,
    Step::Append(3),
    Step::Append(4),
    Step::Checkpoint,
];

/// Whether the fault tests' checkpoints are kept or written as the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cadence {
    /// `keep_every` 1: every checkpoint appended to `checkpoints` (a write and a sync).
    Kept,
    /// The default `keep_every`: every checkpoint of this short sequence is the head (a write
    /// and a sync of `head.tmp`, and its rename).
    Head,
}

impl Cadence {
    fn keep_every(self) -> u64 {
        match self {
            Cadence::Kept => 1,
            Cadence::Head => DEFAULT_KEEP_EVERY,
        }
    }
}

/// One call through the sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Sync,
    Rename,
}

/// The calls the sequence makes, in order (call k is `calls(c)[k - 1]`).
fn calls(cadence: Cadence) -> Vec<(Step, Op)> {
    let mut out = Vec::new();
    for step in STEPS {
        out.extend([(step, Op::Write), (step, Op::Sync)]);
        if step == Step::Checkpoint && cadence == Cadence::Head {
            out.push((step, Op::Rename));
        }
    }
    out
}

/// What a run acknowledged, and the step that failed.
struct Run {
    acked: Vec<u64>,
    acked_checkpoints: u64,
    /// The size of the last acknowledged head.
    acked_head: Option<u64>,
    failed: Option<Step>,
}

fn run_steps(log: &mut AuditLog, cadence: Cadence) -> Run {
    log.set_keep_every(cadence.keep_every());
    let mut run = Run {
        acked: vec![],
        acked_checkpoints: 0,
        acked_head: None,
        failed: None,
    };
    for step in STEPS {
        let result = match step {
            Step::Append(i) => log.append(kind(i), body(i), time(i)).map(|index| {
                assert_eq!(index, run.acked.len() as u64);
                run.acked.push(i);
            }),
            Step::Checkpoint => log.checkpoint().map(|cp| {
                assert_eq!(cp.size, run.acked.len() as u64);
                match cadence {
                    Cadence::Kept => run.acked_checkpoints += 1,
                    Cadence::Head => run.acked_head = Some(cp.size),
                }
            }),
        };
        if let Err(e) = result {
            assert!(matches!(e, AuditError::Io(_)), "{e:?}");
            run.failed = Some(step);
            // Fail closed: everything after is refused, and nothing more is written.
            assert!(log.is_poisoned());
            assert!(matches!(
                log.append("pull", json!({}), time(99)),
                Err(AuditError::Poisoned)
            ));
            assert!(matches!(log.checkpoint(), Err(AuditError::Poisoned)));
            break;
        }
    }
    run
}

/// Each append and each kept checkpoint is exactly one write and one sync; a head is one write,
/// one sync and one rename.
#[test]
fn the_sequence_makes_sixteen_calls_or_nineteen_with_heads() {
    for (cadence, want) in [(Cadence::Kept, 16), (Cadence::Head, 19)] {
        let dir = tempfile::tempdir().unwrap();
        let der = new_key();
        let plan = Plan::counting();
        let (mut log, _) = open_with_plan(dir.path(), &der, &plan).unwrap();
        assert_eq!(
            plan.calls(),
            0,
            "opening a fresh log writes nothing through the sinks"
        );
        let run = run_steps(&mut log, cadence);
        assert!(run.failed.is_none());
        assert_eq!(plan.calls(), want);
        assert_eq!(calls(cadence).len() as u64, want);
        assert_eq!(
            plan.syncs(),
            8,
            "{cadence:?}: one sync per append and checkpoint"
        );
        assert_eq!(
            (log.kept_checkpoints(), log.head().map(|h| h.size)),
            match cadence {
                Cadence::Kept => (3, None),
                Cadence::Head => (0, Some(5)),
            }
        );
    }
}

/// Test 4: the k-th write, sync or rename of the sequence fails, for every k, with EIO, ENOSPC
/// and a short write, with kept checkpoints (48 cases) and with heads (57 cases). The call
/// returns an error, the handle is poisoned, and after a reopen the log verifies and holds
/// exactly the acknowledged records and checkpoints: a failed head leaves the previous head in
/// place, and no `head.tmp`.
#[test]
fn each_failed_write_or_sync_leaves_exactly_the_acknowledged_records() {
    let der = new_key();
    let pk = public(&der);
    let mut cases = 0;
    for cadence in [Cadence::Kept, Cadence::Head] {
        let calls = calls(cadence).len() as u64;
        for fault in [Fault::Eio, Fault::Enospc, Fault::Short] {
            for k in 1..=calls {
                let dir = tempfile::tempdir().unwrap();
                let plan = Plan::new(k, fault, false);
                let (mut log, _) = open_with_plan(dir.path(), &der, &plan).unwrap();
                let run = run_steps(&mut log, cadence);
                let what = format!("{cadence:?}: {fault:?} at call {k}");
                assert!(run.failed.is_some(), "{what} went unnoticed");
                drop(log);
                // `head.tmp` may hold the previous head (exchanged out): it is never read.

                let (log, recovery) =
                    AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(500)).unwrap();
                assert_eq!(
                    recovery,
                    Recovery::default(),
                    "{what}: the rollback left nothing to repair"
                );
                assert_eq!(log.size(), run.acked.len() as u64);
                drop(log);
                let read = read_verified(dir.path(), &pk, ORIGIN).unwrap();
                let bodies: Vec<Value> = read
                    .records
                    .iter()
                    .map(|r| Value::Object(r.body.clone()))
                    .collect();
                let want: Vec<Value> = run.acked.iter().map(|&i| body(i)).collect();
                assert_eq!(bodies, want, "{what}");
                assert_eq!(read.report.checkpoints, run.acked_checkpoints, "{what}");
                assert_eq!(read.report.head.map(|h| h.size), run.acked_head, "{what}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 48 + 57);
}

/// A dead disk: from the k-th call on, every call fails, so the rollback fails too. Nothing
/// acknowledged is lost; the only extra record can be the one whose append failed (a full
/// line whose sync failed can't be told from a durable one), and a partial one is cut with a
/// `recovered` record. A kept checkpoint whose sync failed may stay; a head whose write, sync
/// or rename failed never replaces the previous one.
#[test]
fn dead_disk_never_loses_acknowledged_records() {
    let der = new_key();
    let pk = public(&der);
    for cadence in [Cadence::Kept, Cadence::Head] {
        let table = calls(cadence);
        for fault in [Fault::Eio, Fault::Enospc, Fault::Short] {
            for k in 1..=table.len() as u64 {
                let (step, op) = table[k as usize - 1];
                let what = format!("{cadence:?}: {fault:?} from call {k} ({step:?} {op:?})");
                let dir = tempfile::tempdir().unwrap();
                let plan = Plan::new(k, fault, true);
                let (mut log, _) = open_with_plan(dir.path(), &der, &plan).unwrap();
                let run = run_steps(&mut log, cadence);
                assert_eq!(run.failed, Some(step), "{what}");
                drop(log);

                let (log, recovery) =
                    AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(500)).unwrap();
                drop(log);
                let read = read_verified(dir.path(), &pk, ORIGIN).unwrap();
                let mut bodies: Vec<Value> = read
                    .records
                    .iter()
                    .map(|r| Value::Object(r.body.clone()))
                    .collect();
                if recovery.recovered_index.is_some() {
                    assert_eq!(read.records.last().unwrap().kind, RECOVERED_KIND);
                    bodies.pop();
                }
                let mut want: Vec<Value> = run.acked.iter().map(|&i| body(i)).collect();
                assert_eq!(
                    &bodies[..want.len()],
                    &want[..],
                    "{what}: acknowledged records"
                );
                if bodies.len() > want.len() {
                    // Only the in-flight record, only if its whole line was written.
                    let Step::Append(i) = step else {
                        panic!("{what}: extra record")
                    };
                    want.push(body(i));
                    assert_eq!(bodies, want);
                    assert_eq!(
                        op,
                        Op::Sync,
                        "only a failed sync can leave a whole unacknowledged line"
                    );
                }
                // A short write leaves a partial line or entry, which `open` cuts; a partial
                // `head.tmp` is deleted without a word.
                let partial = fault == Fault::Short
                    && op == Op::Write
                    && (matches!(step, Step::Append(_)) || cadence == Cadence::Kept);
                assert_eq!(
                    recovery.truncated_bytes + recovery.truncated_checkpoint_bytes > 0,
                    partial,
                    "{what}: {recovery:?}"
                );
                let extra_checkpoint = u64::from(
                    step == Step::Checkpoint && cadence == Cadence::Kept && op == Op::Sync,
                );
                assert_eq!(
                    read.report.checkpoints,
                    run.acked_checkpoints + extra_checkpoint,
                    "{what}"
                );
                assert_eq!(read.report.head.map(|h| h.size), run.acked_head, "{what}");
                // `head.tmp` may hold the previous head (exchanged out): it is never read.
            }
        }
    }
}

/// Failures during recovery: `open` fails (and writes no further), a later `open` recovers.
#[test]
fn failed_recovery_fails_open_and_a_later_open_recovers() {
    let der = new_key();
    let pk = public(&der);
    let (_base, full, checkpoints) = build(&der, 4, 3);
    let torn = &full[..full.len() - 10];
    let last_start = full[..full.len() - 1]
        .iter()
        .rposition(|&c| c == b'\n')
        .unwrap()
        + 1;
    let torn_len = (torn.len() - last_start) as u64;
    // Recovery makes 4 calls: truncate, sync, append the recovered record, sync.
    let counting = Plan::counting();
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), torn, &checkpoints);
    drop(open_with_plan(dir.path(), &der, &counting).unwrap());
    assert_eq!(counting.calls(), 4);
    for fault in [Fault::Eio, Fault::Enospc, Fault::Short] {
        for k in 1..=4 {
            let dir = tempfile::tempdir().unwrap();
            write_log(dir.path(), torn, &checkpoints);
            let plan = Plan::new(k, fault, true);
            assert!(matches!(
                open_with_plan(dir.path(), &der, &plan),
                Err(AuditError::Io(_))
            ));
            let (log, recovery) =
                AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(9)).unwrap();
            // If the first open failed before cutting the tail, the second one cuts it and
            // says so. If it failed after (a sync, or the `recovered` record itself), nothing
            // acknowledged is at stake and the `recovered` record may be missing or whole:
            // recording a recovery is best effort once the disk fails during it.
            if k == 1 {
                assert_eq!(
                    recovery.truncated_bytes, torn_len,
                    "{fault:?} {k}: {recovery:?}"
                );
            }
            drop(log);
            let read = read_verified(dir.path(), &pk, ORIGIN).unwrap();
            for (i, r) in read.records.iter().take(3).enumerate() {
                assert_eq!(Value::Object(r.body.clone()), body(i as u64));
            }
            assert!(read.records[3..].iter().all(|r| r.kind == RECOVERED_KIND));
        }
    }
}

// ---- Group commit: `append_deferred` + `commit`.

/// A step of the group-commit sequence.
#[derive(Debug, Clone, Copy)]
enum Group {
    /// `append_deferred` of body `i`.
    Deferred(u64),
    /// `append` of body `i` (write + sync).
    Append(u64),
    Commit,
    Checkpoint,
}

/// Batches of 3 and 2, a checkpoint that must commit a pending record first, a plain append,
/// and a checkpoint with nothing pending: 15 calls with kept checkpoints, 17 with heads (a
/// head's rename is one call more).
const GROUP_STEPS: [Group; 11] = [
    Group::Deferred(0),
    Group::Deferred(1),
    Group::Deferred(2),
    Group::Commit,
    Group::Deferred(3),
    Group::Checkpoint,
    Group::Append(4),
    Group::Deferred(5),
    Group::Deferred(6),
    Group::Commit,
    Group::Checkpoint,
];
fn group_calls(cadence: Cadence) -> u64 {
    match cadence {
        Cadence::Kept => 15,
        Cadence::Head => 17,
    }
}

/// What a group run acknowledged; `in_flight` are the records written (or being written when
/// the failure came) but not acknowledged.
struct GroupRun {
    acked: Vec<u64>,
    acked_checkpoints: u64,
    /// The size of the acknowledged head, with heads.
    acked_head: Option<u64>,
    in_flight: Vec<u64>,
    failed: Option<Group>,
}

fn run_group(log: &mut AuditLog, cadence: Cadence) -> GroupRun {
    log.set_keep_every(cadence.keep_every());
    let mut run = GroupRun {
        acked: vec![],
        acked_checkpoints: 0,
        acked_head: None,
        in_flight: vec![],
        failed: None,
    };
    for step in GROUP_STEPS {
        let result = match step {
            Group::Deferred(i) => {
                run.in_flight.push(i);
                log.append_deferred(kind(i), body(i), time(i)).map(|index| {
                    assert_eq!(index, (run.acked.len() + run.in_flight.len() - 1) as u64);
                    // Written, not acknowledged.
                    assert_eq!(log.size(), run.acked.len() as u64);
                    assert_eq!(log.pending(), run.in_flight.len() as u64);
                })
            }
            Group::Append(i) => {
                run.in_flight.push(i);
                log.append(kind(i), body(i), time(i)).map(|index| {
                    assert_eq!(index, (run.acked.len() + run.in_flight.len() - 1) as u64);
                    run.acked.append(&mut run.in_flight);
                })
            }
            Group::Commit => log.commit().map(|size| {
                run.acked.append(&mut run.in_flight);
                assert_eq!(size, run.acked.len() as u64);
            }),
            Group::Checkpoint => log.checkpoint().map(|cp| {
                run.acked.append(&mut run.in_flight);
                assert_eq!(cp.size, run.acked.len() as u64);
                match cadence {
                    Cadence::Kept => run.acked_checkpoints += 1,
                    Cadence::Head => run.acked_head = Some(cp.size),
                }
            }),
        };
        if result.is_err() && matches!(step, Group::Checkpoint) {
            // The checkpoint's commit may have succeeded before its own write or sync failed:
            // those records are acknowledged (`size` says so), only the checkpoint is not.
            let committed = log.size() as usize - run.acked.len();
            run.acked.extend(run.in_flight.drain(..committed));
        }
        assert_eq!(log.size(), run.acked.len() as u64);
        if let Err(e) = result {
            assert!(matches!(e, AuditError::Io(_)), "{e:?}");
            run.failed = Some(step);
            assert!(log.is_poisoned());
            assert_eq!(log.pending(), 0, "a failure drops every uncommitted record");
            assert!(matches!(
                log.append_deferred("pull", json!({}), time(99)),
                Err(AuditError::Poisoned)
            ));
            assert!(matches!(log.commit(), Err(AuditError::Poisoned)));
            assert!(matches!(log.checkpoint(), Err(AuditError::Poisoned)));
            break;
        }
    }
    run
}

fn bodies_of(read: &VerifiedLog) -> Vec<Value> {
    read.records
        .iter()
        .map(|r| Value::Object(r.body.clone()))
        .collect()
}

/// A batch costs one write per record and one sync for all of them; a checkpoint commits what
/// is pending first.
#[test]
fn group_commit_syncs_once_per_batch() {
    for cadence in [Cadence::Kept, Cadence::Head] {
        let dir = tempfile::tempdir().unwrap();
        let der = new_key();
        let plan = Plan::counting();
        let (mut log, _) = open_with_plan(dir.path(), &der, &plan).unwrap();
        let run = run_group(&mut log, cadence);
        assert!(run.failed.is_none());
        assert_eq!(plan.calls(), group_calls(cadence));
        // Commit, checkpoint (commit + its own), append, commit, checkpoint (its own only).
        assert_eq!(plan.syncs(), 6);
        assert_eq!(log.syncs(), 6);
        // A commit with nothing pending syncs nothing.
        assert_eq!(log.commit().unwrap(), 7);
        assert_eq!(plan.calls(), group_calls(cadence));
        drop(log);
        let read = read_verified(dir.path(), &public(&der), ORIGIN).unwrap();
        assert_eq!(bodies_of(&read), (0..7).map(body).collect::<Vec<_>>());
        match cadence {
            Cadence::Kept => assert_eq!((read.report.checkpoints, read.report.head), (2, None)),
            Cadence::Head => assert_eq!(
                (read.report.checkpoints, read.report.head.map(|h| h.size)),
                (0, Some(7))
            ),
        }
    }
}

/// With real files, a head over pending records is published after both syncs, which run
/// together: the records are acknowledged, the head signs all of them, nothing is left at
/// `head.tmp`, and a reopened log starts from the `state` the head left.
#[test]
fn a_head_over_pending_records_syncs_both_files_then_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let der = new_key();
    let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(0)).unwrap();
    for i in 0..3 {
        log.append_deferred(kind(i), body(i), time(i)).unwrap();
    }
    log.commit().unwrap();
    for i in 3..5 {
        log.append_deferred(kind(i), body(i), time(i)).unwrap();
    }
    let syncs = log.syncs();
    let cp = log.checkpoint().unwrap();
    assert_eq!((cp.size, log.size(), log.pending()), (5, 5, 0));
    assert_eq!(log.syncs() - syncs, 2, "the log's sync and the head's");
    assert_eq!(log.head().map(|h| h.size), Some(5));
    assert!(!dir.path().join(HEAD_TMP_FILE).exists());
    drop(log);
    let read = read_verified(dir.path(), &public(&der), ORIGIN).unwrap();
    assert_eq!(bodies_of(&read), (0..5).map(body).collect::<Vec<_>>());
    assert_eq!(read.report.head.map(|h| h.size), Some(5));
    assert_eq!(read.report.unproven_records, 0);
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(9)).unwrap();
    assert_eq!((log.size(), log.started_from()), (5, 5));
}

/// The shape of one `warrant run`: pull, verify, decide and instantiate written deferred and
/// committed together before the effect (one sync, and it is the only one), then the outcome
/// and the end-of-run checkpoint.
#[test]
fn a_run_shaped_sequence_makes_one_sync_before_the_effect() {
    let dir = tempfile::tempdir().unwrap();
    let der = new_key();
    let plan = Plan::counting();
    let (mut log, _) = open_with_plan(dir.path(), &der, &plan).unwrap();
    for (i, kind) in ["pull", "verify", "decide", "instantiate"]
        .iter()
        .enumerate()
    {
        log.append_deferred(kind, body(i as u64), time(i as u64))
            .unwrap();
    }
    assert_eq!(plan.syncs(), 0);
    assert_eq!(log.commit().unwrap(), 4);
    // The effect may happen now: exactly one sync, and the four records are durable (a reader
    // sees them; the crash tests show that an acknowledged record survives a kill).
    assert_eq!((plan.syncs(), plan.calls()), (1, 5));
    assert_eq!(verify(dir.path(), &public(&der), ORIGIN).unwrap().size, 4);
    log.append_deferred("outcome", body(4), time(4)).unwrap();
    let cp = log.checkpoint().unwrap();
    assert_eq!(cp.size, 5);
    assert_eq!(
        plan.syncs(),
        3,
        "after the effect: commit the outcome, sync the checkpoint"
    );
}

/// The k-th write, sync or rename of the group sequence fails, for every k, with EIO, ENOSPC
/// and a short write, with kept checkpoints (45 cases) and with heads (51 cases): the call
/// errs, the handle is poisoned with nothing pending, and after a reopen the log verifies and
/// holds exactly the acknowledged records, checkpoints and head — none of the records written
/// but not committed, and no `head.tmp`.
#[test]
fn group_commit_each_failure_leaves_exactly_the_acknowledged_records() {
    let der = new_key();
    let pk = public(&der);
    let mut cases = 0;
    for cadence in [Cadence::Kept, Cadence::Head] {
        for fault in [Fault::Eio, Fault::Enospc, Fault::Short] {
            for k in 1..=group_calls(cadence) {
                let what = format!("{cadence:?}: {fault:?} at call {k}");
                let dir = tempfile::tempdir().unwrap();
                let plan = Plan::new(k, fault, false);
                let (mut log, _) = open_with_plan(dir.path(), &der, &plan).unwrap();
                let run = run_group(&mut log, cadence);
                assert!(run.failed.is_some(), "{what} went unnoticed");
                drop(log);
                // `head.tmp` may hold the previous head (exchanged out): it is never read.

                let (log, recovery) =
                    AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(500)).unwrap();
                assert_eq!(recovery, Recovery::default(), "{what}");
                assert_eq!(log.size(), run.acked.len() as u64);
                drop(log);
                let read = read_verified(dir.path(), &pk, ORIGIN).unwrap();
                let want: Vec<Value> = run.acked.iter().map(|&i| body(i)).collect();
                assert_eq!(bodies_of(&read), want, "{what}");
                assert_eq!(read.report.checkpoints, run.acked_checkpoints, "{what}");
                assert_eq!(read.report.head.map(|h| h.size), run.acked_head, "{what}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 45 + 51);
}

/// A dead disk under group commit, with kept checkpoints and with heads: every call from the
/// k-th on fails, so the rollback fails too.
/// Every acknowledged record survives; beyond them there can only be a prefix of the records
/// in flight (written but never acknowledged), a partial one being cut on open.
#[test]
fn group_commit_dead_disk_never_loses_acknowledged_records() {
    let der = new_key();
    let pk = public(&der);
    for (cadence, fault) in [Cadence::Kept, Cadence::Head]
        .into_iter()
        .flat_map(|c| [Fault::Eio, Fault::Enospc, Fault::Short].map(|f| (c, f)))
    {
        for k in 1..=group_calls(cadence) {
            let dir = tempfile::tempdir().unwrap();
            let plan = Plan::new(k, fault, true);
            let (mut log, _) = open_with_plan(dir.path(), &der, &plan).unwrap();
            let run = run_group(&mut log, cadence);
            let failed = run.failed.unwrap();
            drop(log);

            let (log, recovery) =
                AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(500)).unwrap();
            drop(log);
            let read = read_verified(dir.path(), &pk, ORIGIN).unwrap();
            let mut bodies = bodies_of(&read);
            if recovery.recovered_index.is_some() {
                assert_eq!(read.records.last().unwrap().kind, RECOVERED_KIND);
                bodies.pop();
            }
            let want: Vec<Value> = run.acked.iter().map(|&i| body(i)).collect();
            assert_eq!(
                &bodies[..want.len()],
                &want[..],
                "{fault:?} from call {k}: acknowledged records"
            );
            let extra = &bodies[want.len()..];
            let in_flight: Vec<Value> = run.in_flight.iter().map(|&i| body(i)).collect();
            assert!(
                extra.len() <= in_flight.len() && extra == &in_flight[..extra.len()],
                "{fault:?} from call {k}: {extra:?} is not a prefix of the records in flight"
            );
            let extra_checkpoint = u64::from(matches!(failed, Group::Checkpoint));
            assert!(
                read.report.checkpoints == run.acked_checkpoints
                    || read.report.checkpoints == run.acked_checkpoints + extra_checkpoint,
                "{fault:?} from call {k}: {} checkpoints",
                read.report.checkpoints
            );
            // A head whose write, sync or rename failed never replaces the previous one.
            assert_eq!(
                read.report.head.map(|h| h.size),
                run.acked_head,
                "{cadence:?}: {fault:?} from call {k}"
            );
            assert!(!dir.path().join(HEAD_TMP_FILE).exists());
        }
    }
}

// ---- Fast open: the `state` file.

/// 150 records each under its own checkpoint (so `verify` names an edited one exactly), then
/// 50 more committed after the last checkpoint; fsyncs skipped while building.
fn build_checkpointed(der: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open_with_plan(dir.path(), der, &Plan::no_sync()).unwrap();
    log.set_keep_every(1);
    for i in 0..150 {
        log.append_checkpointed(kind(i), body(i), time(i)).unwrap();
    }
    for i in 150..200 {
        log.append_deferred(kind(i), body(i), time(i)).unwrap();
    }
    log.commit().unwrap();
    drop(log);
    dir
}

/// Edits record 3 so that it still parses (only the Merkle tree can tell).
fn edit_record_3(dir: &Path) {
    let path = dir.join(LOG_FILE);
    let text = fs::read_to_string(&path).unwrap();
    let line = text.lines().nth(3).unwrap();
    assert!(line.contains(r#""i":3,"#), "{line}");
    fs::write(&path, text.replacen(r#""i":3,"#, r#""i":9,"#, 1)).unwrap();
}

fn record_3_edited() -> impl Fn(&VerifyFailure) -> bool {
    |f| {
        matches!(
            f,
            VerifyFailure::Record {
                index: 3,
                problem: RecordProblem::RootMismatch {
                    checkpoint_size: 4,
                    ..
                },
                ..
            }
        )
    }
}

/// With an honest `state`, `open` starts at the last checkpoint: it does not read the records
/// before it (an edit there goes unnoticed by `open`), checks the 50 after it, repairs a torn
/// tail, and appends; `verify`, which reads everything, still names the edited record.
#[test]
fn fast_open_starts_at_the_last_checkpoint() {
    let der = new_key();
    let pk = public(&der);
    let dir = build_checkpointed(&der);
    assert!(dir.path().join(STATE_FILE).exists());
    edit_record_3(dir.path());
    // A torn tail after the checkpoint: half a record.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(LOG_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, br#"{"body":{"i":200"#).unwrap();
    drop(f);

    let (mut log, recovery) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(300)).unwrap();
    assert_eq!(log.started_from(), 150);
    assert_eq!(log.size(), 201);
    assert_eq!(
        (recovery.truncated_bytes, recovery.recovered_index),
        (16, Some(200))
    );
    assert_eq!(log.append("pull", body(201), time(301)).unwrap(), 201);
    log.checkpoint().unwrap();
    drop(log);

    let failure = verify(dir.path(), &pk, ORIGIN).unwrap_err();
    assert!(record_3_edited()(&failure), "{failure:?}");
}

/// Without the edit, the fast open and a full scan agree on the tree, and a state written by
/// `open` after a full scan (a log from before the file existed) starts the next open.
#[test]
fn fast_open_agrees_with_a_full_scan() {
    let der = new_key();
    let dir = build_checkpointed(&der);
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(300)).unwrap();
    assert_eq!(log.started_from(), 150);
    let fast = (log.size(), log.root(), log.last_checkpoint().cloned());
    drop(log);
    fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(300)).unwrap();
    assert_eq!(log.started_from(), 0);
    assert_eq!(
        (log.size(), log.root(), log.last_checkpoint().cloned()),
        fast
    );
    drop(log);
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(300)).unwrap();
    assert_eq!(log.started_from(), 150);
}

/// A `state` file that lies in any one respect is ignored: `open` reads the whole log, finds
/// the edited record 3 and refuses the log, changing nothing.
#[test]
fn a_lying_state_file_is_ignored() {
    let der = new_key();
    let dir = build_checkpointed(&der);
    edit_record_3(dir.path());
    let state_path = dir.path().join(STATE_FILE);
    let honest: Value = serde_json::from_slice(&fs::read(&state_path).unwrap()).unwrap();
    let log_bytes = honest["logBytes"].as_u64().unwrap();
    let line_len = {
        let text = fs::read(dir.path().join(LOG_FILE)).unwrap();
        let end = log_bytes as usize - 1;
        (end - text[..end].iter().rposition(|&c| c == b'\n').unwrap()) as u64
    };
    let heads = honest["frontier"].as_array().unwrap().len();
    assert!(heads >= 2, "150 = 0b10010110 has 4 perfect subtrees");
    let mut lies: Vec<(String, Value)> = Vec::new();
    let mut lie = |what: &str, f: &dyn Fn(&mut Value)| {
        let mut v = honest.clone();
        f(&mut v);
        lies.push((what.to_owned(), v));
    };
    for h in 0..heads {
        lie(&format!("frontier head {h}"), &|v| {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut bytes = b64.decode(v["frontier"][h].as_str().unwrap()).unwrap();
            bytes[7] ^= 1;
            v["frontier"][h] = json!(b64.encode(bytes));
        });
    }
    lie("one head too few", &|v| {
        v["frontier"].as_array_mut().unwrap().pop();
    });
    lie("log length one short", &|v| {
        v["logBytes"] = json!(log_bytes - 1)
    });
    lie("log length one record short", &|v| {
        v["logBytes"] = json!(log_bytes - line_len)
    });
    lie("log length past the end", &|v| {
        v["logBytes"] = json!(u64::MAX)
    });
    lie("size", &|v| v["size"] = json!(149));
    lie("an older checkpoint's entry", &|v| {
        let len = v["checkpointEnd"].as_u64().unwrap() - v["checkpointOffset"].as_u64().unwrap();
        v["checkpointOffset"] = json!(v["checkpointOffset"].as_u64().unwrap() - len);
        v["checkpointEnd"] = json!(v["checkpointEnd"].as_u64().unwrap() - len);
    });
    lie("checkpoint end", &|v| {
        v["checkpointEnd"] = json!(v["checkpointEnd"].as_u64().unwrap() + 1)
    });
    lie("version", &|v| v["version"] = json!(2));
    lie("not a number", &|v| v["size"] = json!("150"));
    let mut cases = 0;
    for (what, state) in &lies {
        fs::write(&state_path, state.to_string()).unwrap();
        let before = fs::read(dir.path().join(LOG_FILE)).unwrap();
        match AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(300)) {
            Err(AuditError::Corrupt(f)) => assert!(record_3_edited()(&f), "{what}: {f:?}"),
            other => panic!("{what}: the lie was believed: {other:?}"),
        }
        assert_eq!(
            fs::read(dir.path().join(LOG_FILE)).unwrap(),
            before,
            "{what}"
        );
        cases += 1;
    }
    for garbage in [&b""[..], b"{", b"\xff\xfe", &[b' '; 9000][..]] {
        fs::write(&state_path, garbage).unwrap();
        assert!(matches!(
            AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(300)),
            Err(AuditError::Corrupt(_))
        ));
        cases += 1;
    }
    assert_eq!(cases, heads + 13);
    // The honest state is believed (the edit lies before its checkpoint).
    fs::write(&state_path, honest.to_string()).unwrap();
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(300)).unwrap();
    assert_eq!(log.started_from(), 150);
}

/// The state is rewritten in place only when it is a plain file of its own: a symlink or a
/// hard link planted at `state` is replaced (through a fresh `state.tmp`, where a planted
/// symlink is removed in turn), never written through.
#[test]
fn a_link_planted_at_state_or_state_tmp_is_not_written_through() {
    let der = new_key();
    for plant in ["symlink at state", "hard link at state", "symlinks at both"] {
        let dir = tempfile::tempdir().unwrap();
        let (victim, tmp_victim) = (dir.path().join("victim"), dir.path().join("tmp-victim"));
        fs::write(&victim, b"keep me").unwrap();
        fs::write(&tmp_victim, b"keep me too").unwrap();
        let log_dir = dir.path().join("log");
        let (mut log, _) = AuditLog::open_at(&log_dir, ORIGIN, key(&der), time(0)).unwrap();
        match plant {
            "hard link at state" => fs::hard_link(&victim, log_dir.join("state")).unwrap(),
            _ => std::os::unix::fs::symlink(&victim, log_dir.join("state")).unwrap(),
        }
        if plant == "symlinks at both" {
            std::os::unix::fs::symlink(&tmp_victim, log_dir.join("state.tmp")).unwrap();
        }
        log.append("pull", body(0), time(0)).unwrap();
        log.checkpoint().unwrap();
        drop(log);
        assert_eq!(fs::read(&victim).unwrap(), b"keep me", "{plant}");
        assert_eq!(fs::read(&tmp_victim).unwrap(), b"keep me too", "{plant}");
        let meta = fs::symlink_metadata(log_dir.join("state")).unwrap();
        assert!(meta.is_file(), "{plant}: the state is a file again");
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 1, "{plant}");
        let (log, _) = AuditLog::open_at(&log_dir, ORIGIN, key(&der), time(1)).unwrap();
        assert_eq!(
            log.started_from(),
            1,
            "{plant}: the state written is believed"
        );
    }
}

/// A state rewritten in place over a longer one keeps no stale tail: the next open believes it.
#[test]
fn a_shorter_state_written_in_place_leaves_no_stale_tail() {
    let der = new_key();
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(0)).unwrap();
    // 7 records: a frontier of three heads; 8: one head, a shorter file.
    for i in 0..7 {
        log.append(kind(i), body(i), time(i)).unwrap();
    }
    log.checkpoint().unwrap();
    let longer = fs::metadata(dir.path().join("state")).unwrap().len();
    log.append(kind(7), body(7), time(7)).unwrap();
    log.checkpoint().unwrap();
    let shorter = fs::read(dir.path().join("state")).unwrap();
    assert!(
        (shorter.len() as u64) < longer,
        "{longer} then {}",
        shorter.len()
    );
    assert!(serde_json::from_slice::<Value>(&shorter).is_ok());
    drop(log);
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(9)).unwrap();
    assert_eq!((log.size(), log.started_from()), (8, 8));
}
