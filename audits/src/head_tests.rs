//! Tests of the head checkpoint: the cadence of kept checkpoints, the `head` file replaced
//! whole, verified like a kept checkpoint and named when it fails, its leftovers after a
//! crash, the fast open from it, and proofs against it.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::log_tests::{ORIGIN, body, key, kind, new_key, open_with_plan, public, time};
use crate::note::sign_checkpoint;
use crate::sink::fault::Plan;
use crate::*;

/// 25 records, each checkpointed, with a kept checkpoint every 10 records: kept at 10 and 20,
/// the head at 25 (records 20..25 are under the head only). Every head written on the way is
/// kept here by size, to plant older heads.
struct Fixture {
    der: Vec<u8>,
    pk: [u8; 32],
    log: Vec<u8>,
    checkpoints: Vec<u8>,
    head: Vec<u8>,
    heads: BTreeMap<u64, Vec<u8>>,
    /// Byte offset of every record's line, plus the end of the log.
    line: Vec<usize>,
    /// The tree head after each size.
    roots: Vec<Hash>,
}

fn fixture() -> Fixture {
    let der = new_key();
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open_with_plan(dir.path(), &der, &Plan::no_sync()).unwrap();
    log.set_keep_every(10);
    let mut heads = BTreeMap::new();
    let mut roots = vec![log.root()];
    for i in 0..25 {
        let (_, cp) = log.append_checkpointed(kind(i), body(i), time(i)).unwrap();
        roots.push(cp.root);
        let kept = (i + 1) % 10 == 0;
        assert_eq!(log.head().is_none(), kept, "record {i}");
        if !kept {
            let bytes = fs::read(dir.path().join(HEAD_FILE)).unwrap();
            assert_eq!(bytes, format!("{}\n", cp.note).into_bytes());
            heads.insert(cp.size, bytes);
        } else {
            assert!(
                !dir.path().join(HEAD_FILE).exists(),
                "a stale head is removed"
            );
        }
    }
    assert_eq!(log.kept_checkpoints(), 2);
    drop(log);
    let log = fs::read(dir.path().join(LOG_FILE)).unwrap();
    let mut line = vec![0];
    line.extend(
        log.iter()
            .enumerate()
            .filter(|&(_, &c)| c == b'\n')
            .map(|(i, _)| i + 1),
    );
    Fixture {
        pk: public(&der),
        der,
        log,
        checkpoints: fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap(),
        head: fs::read(dir.path().join(HEAD_FILE)).unwrap(),
        heads,
        line,
        roots,
    }
}

fn write_files(dir: &Path, log: &[u8], checkpoints: &[u8], head: Option<&[u8]>) {
    fs::write(dir.join(LOG_FILE), log).unwrap();
    fs::write(dir.join(CHECKPOINTS_FILE), checkpoints).unwrap();
    if let Some(head) = head {
        fs::write(dir.join(HEAD_FILE), head).unwrap();
    }
}

impl Fixture {
    /// Verifies these files with `verify`; on a failure, checks that `open` refuses them with
    /// the same failure and changes nothing.
    fn check(
        &self,
        log: &[u8],
        checkpoints: &[u8],
        head: Option<&[u8]>,
    ) -> Result<VerifyReport, VerifyFailure> {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), log, checkpoints, head);
        let result = verify(dir.path(), &self.pk, ORIGIN);
        if let Err(failure) = &result {
            match AuditLog::open_at(dir.path(), ORIGIN, key(&self.der), time(0)) {
                Err(AuditError::Corrupt(f)) => assert_eq!(&f, failure),
                other => panic!("open accepted a tampered log: {other:?}"),
            }
            assert_eq!(fs::read(dir.path().join(LOG_FILE)).unwrap(), log);
            assert_eq!(
                fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap(),
                checkpoints
            );
            assert_eq!(fs::read(dir.path().join(HEAD_FILE)).ok().as_deref(), head);
        }
        result
    }

    /// A head entry signed by `signer` for `size` and `root`.
    fn head_entry(&self, signer: &SigningKeyMaterial, size: u64, root: Hash) -> Vec<u8> {
        format!("{}\n", sign_checkpoint(signer, ORIGIN, size, root).note).into_bytes()
    }
}

fn head_failure(result: Result<VerifyReport, VerifyFailure>) -> CheckpointProblem {
    match result {
        Err(VerifyFailure::Head { problem }) => problem,
        other => panic!("the head was not named: {other:?}"),
    }
}

#[test]
fn the_head_is_replaced_whole_and_verified() {
    let der = new_key();
    let pk = public(&der);
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(0)).unwrap();
    for i in 0..3 {
        log.append(kind(i), body(i), time(i)).unwrap();
    }
    let syncs = log.syncs();
    let first = log.checkpoint().unwrap();
    assert_eq!(log.syncs(), syncs + 1, "one fdatasync for the head");
    assert_eq!(
        (log.head(), log.last_checkpoint()),
        (Some(&first), Some(&first))
    );
    assert_eq!(log.kept_checkpoints(), 0);
    assert_eq!(fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap(), b"");
    assert_eq!(
        fs::read_to_string(dir.path().join(HEAD_FILE)).unwrap(),
        format!("{}\n", first.note)
    );
    let report = verify(dir.path(), &pk, ORIGIN).unwrap();
    assert_eq!(
        (report.size, report.checkpoints, report.unproven_records),
        (3, 0, 0)
    );
    assert_eq!(report.head.as_ref(), Some(&first));
    assert_eq!(report.last_checkpoint.as_ref(), Some(&first));

    for i in 3..5 {
        log.append(kind(i), body(i), time(i)).unwrap();
    }
    let second = log.checkpoint().unwrap();
    assert_eq!(second.size, 5);
    assert_eq!(
        fs::read_to_string(dir.path().join(HEAD_FILE)).unwrap(),
        format!("{}\n", second.note),
        "replaced, not appended to"
    );
    // The first head, exchanged out: never read, written over by the next head.
    assert_eq!(
        fs::read_to_string(dir.path().join(HEAD_TMP_FILE)).unwrap(),
        format!("{}\n", first.note)
    );
    log.append(kind(5), body(5), time(5)).unwrap();
    drop(log);
    let report = verify(dir.path(), &pk, ORIGIN).unwrap();
    assert_eq!(report.head.as_ref(), Some(&second));
    assert_eq!(report.unproven_records, 1);

    // Reopened: from the state file anchored at the head, and by a full scan, the same.
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(6)).unwrap();
    assert_eq!(log.started_from(), 5);
    let fast = (log.size(), log.root(), log.last_checkpoint().cloned());
    assert_eq!(log.head(), Some(&second));
    drop(log);
    fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&der), time(6)).unwrap();
    assert_eq!(log.started_from(), 0);
    assert_eq!(
        (log.size(), log.root(), log.last_checkpoint().cloned()),
        fast
    );
    assert_eq!(fast.2, Some(second));
}

/// The cadence: 5,000 appends each checkpointed, a kept checkpoint every 1,000 records.
#[test]
fn five_thousand_checkpoints_keep_five() {
    let der = new_key();
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open_with_plan(dir.path(), &der, &Plan::no_sync()).unwrap();
    assert_eq!(log.keep_every(), 1000);
    for i in 0..5000 {
        log.append_checkpointed(kind(i), json!({"i": i}), time(i))
            .unwrap();
    }
    // Kept at 1,000, 2,000, …, 5,000; the head written at 4,999 was removed with the last.
    assert_eq!((log.kept_checkpoints(), log.head()), (5, None));
    // Each entry is six lines, the second the size.
    let kept: Vec<u64> = fs::read_to_string(dir.path().join(CHECKPOINTS_FILE))
        .unwrap()
        .lines()
        .skip(1)
        .step_by(6)
        .map(|size| size.parse().unwrap())
        .collect();
    assert_eq!(kept, [1000, 2000, 3000, 4000, 5000]);
    assert!(!dir.path().join(HEAD_FILE).exists());
    // Five more: the head.
    for i in 5000..5005 {
        log.append_checkpointed(kind(i), json!({"i": i}), time(i))
            .unwrap();
    }
    assert_eq!(log.kept_checkpoints(), 5);
    assert_eq!(log.head().map(|h| h.size), Some(5005));
    drop(log);
    let report = verify(dir.path(), &public(&der), ORIGIN).unwrap();
    assert_eq!(
        (report.size, report.checkpoints, report.unproven_records),
        (5005, 5, 0)
    );
    assert_eq!(report.head.map(|h| h.size), Some(5005));
    // Reopened, the cadence carries on from the last kept checkpoint (5,000): the next kept one
    // is at 6,000, from the state file (anchored at the head) and from a full scan alike.
    for fast in [true, false] {
        if !fast {
            fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
        }
        let (mut log, _) = open_with_plan(dir.path(), &der, &Plan::no_sync()).unwrap();
        assert_eq!(log.started_from(), if fast { 5005 } else { 0 });
        assert_eq!(log.kept_checkpoints(), 5);
        let end = if fast { 5999 } else { 6000 };
        for i in log.size()..end {
            log.append(kind(i), json!({"i": i}), time(i)).unwrap();
        }
        log.checkpoint().unwrap();
        assert_eq!(
            log.kept_checkpoints(),
            if fast { 5 } else { 6 },
            "fast {fast}"
        );
    }

    // keep_every 0: every checkpoint kept, even one with nothing new.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open_with_plan(dir.path(), &der, &Plan::no_sync()).unwrap();
    log.set_keep_every(0);
    log.append("pull", body(0), time(0)).unwrap();
    log.checkpoint().unwrap();
    log.checkpoint().unwrap();
    assert_eq!((log.kept_checkpoints(), log.head()), (2, None));
}

#[test]
fn a_forged_or_malformed_head_is_named() {
    let f = fixture();
    let other = key(&new_key());
    let me = key(&f.der);
    // Another key.
    let forged = f.head_entry(&other, 25, f.roots[25]);
    let problem = head_failure(f.check(&f.log, &f.checkpoints, Some(&forged)));
    assert!(
        matches!(problem, CheckpointProblem::UnknownKey { .. }),
        "{problem:?}"
    );
    let text = VerifyFailure::Head { problem }.to_string();
    assert!(
        text.starts_with("the head checkpoint (file `head`): "),
        "{text}"
    );
    // Another origin.
    let mut foreign = String::from_utf8(f.head.clone()).unwrap();
    foreign = foreign.replacen(ORIGIN, "warrant.test/other", 1);
    assert!(matches!(
        head_failure(f.check(&f.log, &f.checkpoints, Some(foreign.as_bytes()))),
        CheckpointProblem::WrongOrigin(_)
    ));
    // The signed size or root edited.
    let text = String::from_utf8(f.head.clone()).unwrap();
    for edited in [
        text.replacen("\n25\n", "\n24\n", 1),
        text.replacen(&base64_of(&f.roots[25]), &base64_of(&f.roots[24]), 1),
    ] {
        assert_ne!(edited, text);
        assert_eq!(
            head_failure(f.check(&f.log, &f.checkpoints, Some(edited.as_bytes()))),
            CheckpointProblem::BadSignature
        );
    }
    // Not exactly one whole entry.
    let mut two = f.head.clone();
    two.extend_from_slice(&f.head);
    let mut trailing = f.head.clone();
    trailing.push(b'x');
    for bad in [
        &b""[..],
        &f.head[..f.head.len() - 1],
        &f.head[..f.head.len() / 2],
        &two,
        &trailing,
        &[b'x'; 10_000][..],
        b"\xff\xfe\n\n\n\n\n\n",
    ] {
        assert!(
            matches!(
                head_failure(f.check(&f.log, &f.checkpoints, Some(bad))),
                CheckpointProblem::Malformed(_)
            ),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Signed by the log's key, but contradicting the kept checkpoint of the same size.
    let conflicting = f.head_entry(&me, 20, [0x42; 32]);
    assert_eq!(
        head_failure(f.check(&f.log, &f.checkpoints, Some(&conflicting))),
        CheckpointProblem::Conflicting { size: 20 }
    );
}

fn base64_of(hash: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// A failure at record `index`, at the start of its line.
fn at_record(
    f: &Fixture,
    result: Result<VerifyReport, VerifyFailure>,
    index: usize,
) -> RecordProblem {
    match result {
        Err(VerifyFailure::Record {
            index: i,
            offset,
            problem,
        }) => {
            assert_eq!(
                (i, offset),
                (index as u64, f.line[index] as u64),
                "{problem:?}"
            );
            problem
        }
        other => panic!("record {index}: not caught: {other:?}"),
    }
}

#[test]
fn records_under_the_head_are_proven_by_it() {
    let f = fixture();
    let report = f.check(&f.log, &f.checkpoints, Some(&f.head)).unwrap();
    assert_eq!(
        (report.size, report.checkpoints, report.unproven_records),
        (25, 2, 0)
    );
    assert_eq!(report.head.map(|h| h.size), Some(25));

    // A record after the last kept checkpoint edited so that it still parses: the head's root
    // no longer matches, and the failure names the first record it alone proves.
    let at = f.line[22]
        + f.log[f.line[22]..]
            .windows(3)
            .position(|w| w == b"tab")
            .unwrap();
    let mut log = f.log.clone();
    log[at] ^= 0x20;
    assert_eq!(
        at_record(&f, f.check(&log, &f.checkpoints, Some(&f.head)), 20),
        RecordProblem::HeadRootMismatch { head_size: 25 }
    );
    // Without the head, the same edit goes unnoticed: the records are unproven.
    let report = f.check(&log, &f.checkpoints, None).unwrap();
    assert_eq!((report.unproven_records, report.head), (5, None));

    // Every single-byte flip of records 20..25 is caught: at its own record if it no longer
    // parses as the record at that position, else at record 20, by the head.
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for pos in f.line[20]..f.line[25] {
        let mut log = f.log.clone();
        log[pos] ^= 0x01;
        let record = f.line.partition_point(|&start| start <= pos) - 1;
        let result = scan_in_memory(&f, &log);
        let name = match result {
            Err(VerifyFailure::Record {
                index: 20,
                problem: RecordProblem::HeadRootMismatch { head_size: 25 },
                ..
            }) => "head root mismatch",
            Err(VerifyFailure::Record { index, .. }) if index == record as u64 => "its record",
            other => panic!("flip at {pos} (record {record}): {other:?}"),
        };
        *tally.entry(name).or_default() += 1;
    }
    assert_eq!(tally.values().sum::<usize>(), f.line[25] - f.line[20]);
    assert!(tally.contains_key("head root mismatch"), "{tally:?}");

    // The head signed by the log's key over another root: the records are reported.
    let me = key(&f.der);
    assert_eq!(
        at_record(
            &f,
            f.check(
                &f.log,
                &f.checkpoints,
                Some(&f.head_entry(&me, 25, [7; 32]))
            ),
            20
        ),
        RecordProblem::HeadRootMismatch { head_size: 25 }
    );
}

/// Verifies in memory, as `verify` does on the files (the head already authenticated).
fn scan_in_memory(f: &Fixture, log: &[u8]) -> Result<VerifyReport, VerifyFailure> {
    let head = crate::verify::parse_head(&f.head, &f.pk, ORIGIN)?;
    crate::verify::scan(
        log,
        &f.checkpoints[..],
        Some(head),
        None,
        false,
        &f.pk,
        ORIGIN,
        &mut |_| {},
    )
    .map(|s| s.report())
}

#[test]
fn truncation_below_the_head_is_caught() {
    let f = fixture();
    for cut in [21usize, 23, 24] {
        assert_eq!(
            at_record(
                &f,
                f.check(&f.log[..f.line[cut]], &f.checkpoints, Some(&f.head)),
                cut
            ),
            RecordProblem::HeadMissing { head_size: 25 },
            "cut to {cut}"
        );
        // Cut inside a record: the torn rest is no excuse.
        assert_eq!(
            at_record(
                &f,
                f.check(&f.log[..f.line[cut] + 5], &f.checkpoints, Some(&f.head)),
                cut
            ),
            RecordProblem::HeadMissing { head_size: 25 },
        );
    }
    // Below a kept checkpoint too: the kept one is reported first.
    assert!(matches!(
        at_record(
            &f,
            f.check(&f.log[..f.line[15]], &f.checkpoints, Some(&f.head)),
            15
        ),
        RecordProblem::Missing {
            checkpoint: 1,
            checkpoint_size: 20,
            ..
        }
    ));
    assert!(
        f.check(&f.log[..f.line[15]], &f.checkpoints, Some(&f.head))
            .unwrap_err()
            .to_string()
            .contains("checkpoint 1 signed 20 records")
    );
    let text = f
        .check(&f.log[..f.line[23]], &f.checkpoints, Some(&f.head))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("the head checkpoint (file `head`) signed 25 records"),
        "{text}"
    );
}

/// A head older than the last kept checkpoint (a crash undid its removal, or a copy of an
/// older directory): accepted if it matches the tree at its size, a failure if not.
#[test]
fn a_stale_head_is_accepted_only_if_it_matches() {
    let f = fixture();
    let checkpoints_to_20 = &f.checkpoints[..];
    let log_to_20 = &f.log[..f.line[20]];
    for stale in [15u64, 19] {
        let head = &f.heads[&stale];
        let report = f.check(log_to_20, checkpoints_to_20, Some(head)).unwrap();
        assert_eq!(report.head.map(|h| h.size), Some(stale));
        assert_eq!(report.last_checkpoint.map(|c| c.size), Some(20));
        assert_eq!((report.checkpoints, report.unproven_records), (2, 0));
        // The full log, the stale head and no later one: the last five are unproven.
        let report = f.check(&f.log, &f.checkpoints, Some(head)).unwrap();
        assert_eq!(report.unproven_records, 5);
        // Open takes it too, and then writes the next checkpoint as the head.
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &f.log, &f.checkpoints, Some(head));
        let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&f.der), time(0)).unwrap();
        log.set_keep_every(10);
        assert_eq!(log.last_checkpoint().map(|c| c.size), Some(20));
        assert_eq!(log.checkpoint().unwrap().size, 25);
        assert_eq!(log.head().map(|h| h.size), Some(25));
    }
    // Signed by the log's key but not matching the records at its size: reported at the
    // first record it alone proves (after the kept checkpoint at 10).
    let me = key(&f.der);
    let inconsistent = f.head_entry(&me, 15, f.roots[14]);
    assert_eq!(
        at_record(&f, f.check(&f.log, &f.checkpoints, Some(&inconsistent)), 10),
        RecordProblem::HeadRootMismatch { head_size: 15 }
    );
    // Or with a record under it edited.
    let mut log = f.log.clone();
    let at = f.line[12]
        + f.log[f.line[12]..]
            .windows(3)
            .position(|w| w == b"tab")
            .unwrap();
    log[at] ^= 0x20;
    assert_eq!(
        at_record(&f, f.check(&log, &f.checkpoints, Some(&f.heads[&15])), 10),
        RecordProblem::HeadRootMismatch { head_size: 15 }
    );
}

/// A `head.tmp` from a crash before the rename (complete, partial or garbage) is ignored by
/// `verify` and `open`, and changes nothing; the next head is written over it. One planted as
/// a symlink, or as another name of a file, is replaced, not written through.
#[test]
fn a_leftover_head_tmp_is_harmless() {
    let f = fixture();
    let newer = f.head_entry(&key(&f.der), 25, f.roots[25]);
    for leftover in [&newer[..], &newer[..40], b"garbage", b""] {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &f.log, &f.checkpoints, Some(&f.heads[&24]));
        fs::write(dir.path().join(HEAD_TMP_FILE), leftover).unwrap();
        let report = verify(dir.path(), &f.pk, ORIGIN).unwrap();
        assert_eq!(
            (report.head.map(|h| h.size), report.unproven_records),
            (Some(24), 1)
        );
        let (log, recovery) = AuditLog::open_at(dir.path(), ORIGIN, key(&f.der), time(0)).unwrap();
        assert_eq!(recovery, Recovery::default());
        assert_eq!(log.last_checkpoint().map(|c| c.size), Some(24));
        drop(log);
        assert_eq!(fs::read(dir.path().join(HEAD_TMP_FILE)).unwrap(), leftover);
        assert_eq!(fs::read(dir.path().join(HEAD_FILE)).unwrap(), f.heads[&24]);
        // The next head is written over the leftover, whatever it held.
        let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&f.der), time(0)).unwrap();
        let cp = log.checkpoint().unwrap();
        drop(log);
        assert_eq!(
            fs::read_to_string(dir.path().join(HEAD_FILE)).unwrap(),
            format!("{}\n", cp.note)
        );
        assert_eq!(verify(dir.path(), &f.pk, ORIGIN).unwrap().head, Some(cp));
    }
    // A symlink at `head.tmp` planted while the writer runs: replaced, not written through.
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"keep me").unwrap();
    let log_dir = dir.path().join("log");
    let (mut log, _) = AuditLog::open_at(&log_dir, ORIGIN, key(&f.der), time(0)).unwrap();
    std::os::unix::fs::symlink(&victim, log_dir.join(HEAD_TMP_FILE)).unwrap();
    log.append("pull", body(0), time(0)).unwrap();
    let cp = log.checkpoint().unwrap();
    drop(log);
    assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    assert_eq!(
        fs::read_to_string(log_dir.join(HEAD_FILE)).unwrap(),
        format!("{}\n", cp.note)
    );
    // A hard link at `head.tmp` (another name of a file): replaced, not written through.
    let (mut log, _) = AuditLog::open_at(&log_dir, ORIGIN, key(&f.der), time(0)).unwrap();
    let _ = fs::remove_file(log_dir.join(HEAD_TMP_FILE));
    fs::hard_link(&victim, log_dir.join(HEAD_TMP_FILE)).unwrap();
    log.append("pull", body(1), time(1)).unwrap();
    let cp = log.checkpoint().unwrap();
    drop(log);
    assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    assert_eq!(
        fs::read_to_string(log_dir.join(HEAD_FILE)).unwrap(),
        format!("{}\n", cp.note)
    );
}

/// `open` starts from a state anchored at the head only if the head in the directory is the
/// one it names and no kept checkpoint follows; else it scans the whole log (and fails closed
/// on a head that does not verify).
#[test]
fn fast_open_from_the_head_checks_it() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &f.log, &f.checkpoints, Some(&f.head));
    // A state as the writer leaves it after the head at 25.
    let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&f.der), time(0)).unwrap();
    assert_eq!(log.started_from(), 0);
    log.set_keep_every(10);
    drop(log);
    let state: Value =
        serde_json::from_slice(&fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(
        (
            state["version"].as_u64(),
            state["anchor"].as_str(),
            state["size"].as_u64(),
            state["kept"].as_u64(),
            state["keptSize"].as_u64(),
            state["checkpointEnd"].as_u64()
        ),
        (
            Some(2),
            Some("head"),
            Some(25),
            Some(2),
            Some(20),
            Some(f.checkpoints.len() as u64)
        )
    );
    let opened = |dir: &Path| {
        let (log, _) = AuditLog::open_at(dir, ORIGIN, key(&f.der), time(0)).unwrap();
        (log.started_from(), log.kept_checkpoints(), log.size())
    };
    assert_eq!(opened(dir.path()), (25, 2, 25));
    // The head replaced by an older one: the state no longer fits it; a full scan.
    let state_bytes = fs::read(dir.path().join(STATE_FILE)).unwrap();
    fs::write(dir.path().join(HEAD_FILE), &f.heads[&23]).unwrap();
    assert_eq!(opened(dir.path()).0, 0);
    // Lies in the state, each on its own: a full scan.
    fs::write(dir.path().join(HEAD_FILE), &f.head).unwrap();
    for (what, lie) in [
        ("size", json!(24)),
        ("checkpointEnd", json!(0)),
        ("keptSize", json!(26)),
        ("anchor", json!("checkpoints")),
        ("version", json!(1)),
    ] {
        let mut lying = state.clone();
        lying[what] = lie;
        fs::write(dir.path().join(STATE_FILE), lying.to_string()).unwrap();
        assert_eq!(opened(dir.path()).0, 0, "{what}");
    }
    // The head gone: the state is refused, the log opens from a full scan, unproven at the end.
    fs::write(dir.path().join(STATE_FILE), &state_bytes).unwrap();
    fs::remove_file(dir.path().join(HEAD_FILE)).unwrap();
    let (log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&f.der), time(0)).unwrap();
    assert_eq!(log.started_from(), 0);
    assert_eq!(log.last_checkpoint().map(|c| c.size), Some(20));
    drop(log);
    // A forged head fails the open whatever the state says, and nothing is changed.
    fs::write(dir.path().join(STATE_FILE), &state_bytes).unwrap();
    let forged = f.head_entry(&key(&new_key()), 25, f.roots[25]);
    fs::write(dir.path().join(HEAD_FILE), &forged).unwrap();
    assert!(matches!(
        AuditLog::open_at(dir.path(), ORIGIN, key(&f.der), time(0)),
        Err(AuditError::Corrupt(VerifyFailure::Head {
            problem: CheckpointProblem::UnknownKey { .. }
        }))
    ));
    assert_eq!(fs::read(dir.path().join(LOG_FILE)).unwrap(), f.log);
    assert_eq!(fs::read(dir.path().join(HEAD_FILE)).unwrap(), forged);
}

#[test]
fn proofs_use_the_head_for_records_no_kept_checkpoint_covers() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &f.log, &f.checkpoints, Some(&f.head));
    let check = |bytes: Vec<u8>| verify_proof(&bytes, ORIGIN, &f.pk);

    // Under a kept checkpoint: the smallest kept one.
    assert_eq!(
        prove_inclusion(dir.path(), &f.pk, ORIGIN, 5)
            .unwrap()
            .tree_size,
        10
    );
    assert_eq!(
        prove_inclusion(dir.path(), &f.pk, ORIGIN, 19)
            .unwrap()
            .tree_size,
        20
    );
    // After the last kept checkpoint: the head.
    let under_head = prove_inclusion(dir.path(), &f.pk, ORIGIN, 22).unwrap();
    assert_eq!(under_head.tree_size, 25);
    assert_eq!(
        under_head.checkpoint.as_bytes(),
        &f.head[..f.head.len() - 1]
    );
    assert!(matches!(
        check(file(&under_head)),
        Ok(Proven::Inclusion { checkpoint, .. }) if checkpoint.size == 25
    ));
    // Consistency to the head, and from a kept checkpoint of the same log.
    for (from, to) in [(10, 25), (20, 25), (25, 25)] {
        let p = prove_consistency(dir.path(), &f.pk, ORIGIN, from, to).unwrap();
        assert!(
            matches!(check(file(&p)), Ok(Proven::Consistency { old, new }) if (old.size, new.size) == (from, to)),
            "{from} to {to}"
        );
    }
    assert_eq!(
        prove_consistency(dir.path(), &f.pk, ORIGIN, 22, 25),
        Err(ProveError::NotACheckpoint {
            size: 22,
            below: Some(20),
            above: Some(25)
        })
    );
    assert_eq!(
        prove_consistency(dir.path(), &f.pk, ORIGIN, 20, 26),
        Err(ProveError::NotACheckpoint {
            size: 26,
            below: Some(25),
            above: None
        })
    );

    // The head moves on: the old proofs still verify with the key alone, and record 22 is now
    // proven against the new head; a record after it against none.
    let (mut log, _) = AuditLog::open_at(dir.path(), ORIGIN, key(&f.der), time(0)).unwrap();
    log.set_keep_every(10);
    log.append(kind(25), body(25), time(25)).unwrap();
    log.checkpoint().unwrap();
    log.append(kind(26), body(26), time(26)).unwrap();
    drop(log);
    assert!(check(file(&under_head)).is_ok());
    assert_eq!(
        prove_inclusion(dir.path(), &f.pk, ORIGIN, 22)
            .unwrap()
            .tree_size,
        26
    );
    assert_eq!(
        prove_inclusion(dir.path(), &f.pk, ORIGIN, 26),
        Err(ProveError::NotCheckpointed {
            index: 26,
            newest: Some(26)
        })
    );
    assert!(matches!(
        prove_consistency(dir.path(), &f.pk, ORIGIN, 20, 25),
        Err(ProveError::NotACheckpoint { size: 25, .. })
    ));
}

/// A head someone saved (the note of size 22, long replaced) still gets a consistency proof
/// to the newest checkpoint; one this log never signed at that root (a rewritten log), one
/// beyond the log, and one under another key are refused, each with its reason.
#[test]
fn a_saved_head_gets_a_consistency_proof_after_it_is_replaced() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &f.log, &f.checkpoints, Some(&f.head));
    let note = |bytes: &[u8]| String::from_utf8(bytes[..bytes.len() - 1].to_vec()).unwrap();
    let saved = note(&f.heads[&22]);
    // No checkpoint of size 22 is left in the log.
    assert!(matches!(
        prove_consistency(dir.path(), &f.pk, ORIGIN, 22, 25),
        Err(ProveError::NotACheckpoint { size: 22, .. })
    ));
    for to in [None, Some(25)] {
        let p = prove_consistency_from(dir.path(), &f.pk, ORIGIN, &saved, to).unwrap();
        assert_eq!((p.old_size, p.new_size), (22, 25));
        assert_eq!(p.old_checkpoint, saved);
        assert!(matches!(
            verify_proof(&file(&p), ORIGIN, &f.pk),
            Ok(Proven::Consistency { old, new }) if (old.size, new.size) == (22, 25)
        ));
    }
    // To a kept checkpoint below it: backwards.
    assert_eq!(
        prove_consistency_from(dir.path(), &f.pk, ORIGIN, &saved, Some(20)),
        Err(ProveError::Backwards { from: 22, to: 20 })
    );

    let signer = key(&f.der);
    // The same key signed another root at 22: this log is not the one that note saw.
    let forked = sign_checkpoint(&signer, ORIGIN, 22, f.roots[21]).note;
    assert_eq!(
        prove_consistency_from(dir.path(), &f.pk, ORIGIN, &forked, None),
        Err(ProveError::Rewritten {
            size: 22,
            log_root: f.roots[22],
            signed_root: f.roots[21]
        })
    );
    let beyond = sign_checkpoint(&signer, ORIGIN, 30, f.roots[25]).note;
    assert_eq!(
        prove_consistency_from(dir.path(), &f.pk, ORIGIN, &beyond, None),
        Err(ProveError::BeyondLog {
            size: 30,
            log_size: 25
        })
    );
    let other = key(&new_key());
    let foreign = sign_checkpoint(&other, ORIGIN, 22, f.roots[22]).note;
    assert!(matches!(
        prove_consistency_from(dir.path(), &f.pk, ORIGIN, &foreign, None),
        Err(ProveError::ForeignCheckpoint(_))
    ));
}

/// A proof as its file's bytes.
fn file<T: serde::Serialize>(proof: &T) -> Vec<u8> {
    serde_json::to_vec(proof).unwrap()
}
