//! Test 2: tamper detection on a 1,000-record log with a checkpoint after every append.
//! Every case must be caught, and reported at the right record (index and byte offset) or the
//! right checkpoint (ordinal and byte offset).

use std::collections::BTreeMap;
use std::fs;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::log_tests::{ORIGIN, body, key, kind, new_key, open_with_plan, time};
use crate::note::sign_checkpoint;
use crate::record::{encode, write_canonical};
use crate::sink::fault::Plan;
use crate::verify::scan;
use crate::*;

const RECORDS: u64 = 1000;

struct Base {
    der: Vec<u8>,
    pk: [u8; 32],
    log: Vec<u8>,
    checkpoints: Vec<u8>,
    /// Byte offset of every record's line, plus the end of the log.
    line: Vec<usize>,
    /// Byte offset of every checkpoint entry, plus the end of the file.
    entry: Vec<usize>,
    /// The tree head after each size (roots[n] for n records).
    roots: Vec<Hash>,
}

fn offsets(bytes: &[u8], lines_per_item: usize) -> Vec<usize> {
    let mut out = vec![0];
    let mut lines = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if c == b'\n' {
            lines += 1;
            if lines % lines_per_item == 0 {
                out.push(i + 1);
            }
        }
    }
    out
}

/// The log, built once (without fsyncs: durability is not under test here).
fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let der = new_key();
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open_with_plan(dir.path(), &der, &Plan::no_sync()).unwrap();
        // Every checkpoint kept, so that every record is signed on its own (the head's
        // tamper cases are in `head_tests`).
        log.set_keep_every(1);
        let mut roots = vec![log.root()];
        for i in 0..RECORDS {
            let (index, cp) = log.append_checkpointed(kind(i), body(i), time(i)).unwrap();
            assert_eq!((index, cp.size), (i, i + 1));
            roots.push(cp.root);
        }
        drop(log);
        let log = fs::read(dir.path().join(LOG_FILE)).unwrap();
        let checkpoints = fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap();
        let line = offsets(&log, 1);
        let entry = offsets(&checkpoints, 6);
        assert_eq!(
            (line.len(), entry.len()),
            (RECORDS as usize + 1, RECORDS as usize + 1)
        );
        Base {
            pk: key(&der).public_key(),
            der,
            log,
            checkpoints,
            line,
            entry,
            roots,
        }
    })
}

/// Verifies in memory (the same streaming code `verify` runs on the files).
fn check(log: &[u8], checkpoints: &[u8]) -> Result<VerifyReport, VerifyFailure> {
    scan(
        log,
        checkpoints,
        None,
        None,
        false,
        &base().pk,
        ORIGIN,
        &mut |_| {},
    )
    .map(|s| s.report())
}

/// Verifies through the files, with `verify`, and checks `open` refuses the log unchanged.
fn check_files(log: &[u8], checkpoints: &[u8]) -> Result<VerifyReport, VerifyFailure> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(LOG_FILE), log).unwrap();
    fs::write(dir.path().join(CHECKPOINTS_FILE), checkpoints).unwrap();
    let result = verify(dir.path(), &base().pk, ORIGIN);
    if let Err(failure) = &result {
        match AuditLog::open_at(dir.path(), ORIGIN, key(&base().der), time(0)) {
            Err(AuditError::Corrupt(f)) => assert_eq!(&f, failure),
            other => panic!("open accepted a tampered log: {other:?}"),
        }
        assert_eq!(fs::read(dir.path().join(LOG_FILE)).unwrap(), log);
        assert_eq!(
            fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap(),
            checkpoints
        );
    }
    result
}

/// A failure at record `index`, at the start of its line.
fn at_record(result: Result<VerifyReport, VerifyFailure>, index: usize) -> RecordProblem {
    match result {
        Err(VerifyFailure::Record {
            index: i,
            offset,
            problem,
        }) => {
            assert_eq!(
                (i, offset),
                (index as u64, base().line[index] as u64),
                "wrong place for {problem:?}"
            );
            problem
        }
        other => panic!("record {index}: not caught: {other:?}"),
    }
}

/// A failure at checkpoint `ordinal`, at the start of its entry (`at`).
fn at_checkpoint(
    result: Result<VerifyReport, VerifyFailure>,
    ordinal: usize,
    at: usize,
) -> CheckpointProblem {
    match result {
        Err(VerifyFailure::Checkpoint {
            ordinal: o,
            offset,
            problem,
        }) => {
            assert_eq!(
                (o, offset),
                (ordinal as u64, at as u64),
                "wrong place for {problem:?}"
            );
            problem
        }
        other => panic!("checkpoint {ordinal}: not caught: {other:?}"),
    }
}

/// A small fixed-seed PRNG (xorshift64*), so the sample is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn problem_name(p: &RecordProblem) -> &'static str {
    match p {
        RecordProblem::Oversize => "oversize",
        RecordProblem::BadJson(_) => "bad JSON",
        RecordProblem::NotCanonical => "not canonical",
        RecordProblem::Malformed(_) => "malformed",
        RecordProblem::IndexMismatch { .. } => "index mismatch",
        RecordProblem::RootMismatch { .. } => "root mismatch",
        RecordProblem::Missing { .. } => "missing",
        RecordProblem::HeadRootMismatch { .. } => "head root mismatch",
        RecordProblem::HeadMissing { .. } => "head missing",
    }
}

#[test]
fn the_untouched_log_verifies() {
    let b = base();
    let report = check_files(&b.log, &b.checkpoints).unwrap();
    assert_eq!(
        (report.size, report.checkpoints, report.unproven_records),
        (RECORDS, RECORDS, 0)
    );
    assert_eq!(report.root, b.roots[RECORDS as usize]);
    assert_eq!(
        (report.torn_tail_bytes, report.torn_checkpoint_bytes),
        (0, 0)
    );
}

/// Single-byte flips of `log.jsonl`, each verified on its own (in memory, by the same
/// streaming code `verify` runs on the files):
///
/// * every byte of the first 20 records (2,400-odd bytes, newlines included), XOR 0x01;
/// * the last record's first byte, closing brace and final newline (the end of the file is a
///   special case: a flipped final newline turns the last record into a torn tail);
/// * a sample of flips at positions drawn uniformly from the rest of the file (records 20 to
///   999), each XORed with a random non-zero byte; xorshift64* with the fixed seed 0x5eed.
///   700 by default, to keep the crate's tests near a minute in a debug build; set
///   `AUDITS_FLIP_SAMPLES=2000` (or more) for a longer run. The cost is inherent: a flip in
///   record i is only found after verifying records 0..=i and their i + 1 checkpoints, and
///   one Ed25519 verification alone takes ~65 µs in a debug build (~38 ms per sampled flip).
///
/// Every flip must be caught at the record that holds the byte (its newline included), at the
/// byte offset where that record's line starts: 100% detection, 100% precise location.
#[test]
fn every_single_byte_flip_is_caught_at_its_record() {
    let b = base();
    let samples: usize = std::env::var("AUDITS_FLIP_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(700);
    let mut flips: Vec<(usize, u8)> = (0..b.line[20]).map(|p| (p, 0x01)).collect();
    let end = b.log.len();
    flips.extend([(b.line[999], 0x01), (end - 2, 0x01), (end - 1, 0x01)]);
    let systematic = flips.len();
    let mut rng = Rng(0x5eed);
    let rest = b.line[20]..end;
    for _ in 0..samples {
        let pos = rest.start + rng.below(rest.len());
        let mask = 1 + rng.below(255) as u8;
        flips.push((pos, mask));
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let tallies: Vec<BTreeMap<&str, usize>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let flips = &flips;
                scope.spawn(move || {
                    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
                    let mut log = b.log.clone();
                    for &(pos, mask) in flips.iter().skip(t).step_by(threads) {
                        log[pos] ^= mask;
                        let record = b.line.partition_point(|&start| start <= pos) - 1;
                        let problem = at_record(check(&log, &b.checkpoints), record);
                        *tally.entry(problem_name(&problem)).or_default() += 1;
                        log[pos] ^= mask;
                    }
                    tally
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tallies {
        for (k, v) in t {
            *tally.entry(k).or_default() += v;
        }
    }
    let caught: usize = tally.values().sum();
    assert_eq!(caught, flips.len(), "100% detection");
    assert!(systematic > 2000, "{systematic}");
    eprintln!(
        "{} flips ({systematic} systematic, {samples} sampled), all caught where made: {tally:?}",
        flips.len()
    );
}

#[test]
fn deleting_any_of_50_records_is_caught() {
    let b = base();
    let mut rng = Rng(50);
    let mut victims: Vec<usize> = (0..10).chain(990..1000).collect();
    while victims.len() < 50 {
        let v = 10 + rng.below(980);
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    for &i in &victims {
        let mut log = b.log[..b.line[i]].to_vec();
        log.extend_from_slice(&b.log[b.line[i + 1]..]);
        let result = if i % 10 == 0 {
            check_files(&log, &b.checkpoints)
        } else {
            check(&log, &b.checkpoints)
        };
        let problem = at_record(result, i);
        if i + 1 < RECORDS as usize {
            assert_eq!(
                problem,
                RecordProblem::IndexMismatch {
                    expected: i as u64,
                    found: i as u64 + 1
                }
            );
        } else {
            // The last record: the log now ends below the last checkpoint.
            assert_eq!(
                problem,
                RecordProblem::Missing {
                    checkpoint: 999,
                    checkpoint_offset: b.entry[999] as u64,
                    checkpoint_size: 1000
                }
            );
        }
    }
    assert_eq!(victims.len(), 50);
}

#[test]
fn swapping_adjacent_records_is_caught() {
    let b = base();
    let mut rng = Rng(2);
    let positions: Vec<usize> = [0, 1, 998]
        .into_iter()
        .chain((0..47).map(|_| rng.below(999)))
        .collect();
    for &i in &positions {
        let mut log = b.log[..b.line[i]].to_vec();
        log.extend_from_slice(&b.log[b.line[i + 1]..b.line[i + 2]]);
        log.extend_from_slice(&b.log[b.line[i]..b.line[i + 1]]);
        log.extend_from_slice(&b.log[b.line[i + 2]..]);
        let problem = at_record(check(&log, &b.checkpoints), i);
        assert_eq!(
            problem,
            RecordProblem::IndexMismatch {
                expected: i as u64,
                found: i as u64 + 1
            }
        );
    }
}

/// Re-numbers records so an insertion or deletion looks seamless, as a careful forger would.
fn renumber(lines: &[u8], first: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, line) in lines
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let mut v: Value = serde_json::from_slice(line).unwrap();
        v["index"] = json!(first + n as u64);
        write_canonical(&v, &mut out, 0).unwrap();
        out.push(b'\n');
    }
    out
}

#[test]
fn inserting_a_forged_record_is_caught() {
    let b = base();
    for i in [0usize, 1, 2, 500, 998, 999] {
        let mut forged = encode(
            i as u64,
            time(i as u64),
            "decide",
            json!({"allow": true, "forged": 1}),
        )
        .unwrap();
        forged.push(b'\n');
        let want = RecordProblem::RootMismatch {
            checkpoint: i as u64,
            checkpoint_offset: b.entry[i] as u64,
            checkpoint_size: i as u64 + 1,
        };
        // Inserted as is: every line still parses, the index sequence breaks one record later,
        // but the checkpoint that signed record i already disagrees.
        let mut log = b.log[..b.line[i]].to_vec();
        log.extend_from_slice(&forged);
        log.extend_from_slice(&b.log[b.line[i]..]);
        assert_eq!(
            at_record(check_files(&log, &b.checkpoints), i),
            want,
            "insert at {i}"
        );
        // Inserted with every later record renumbered: only the signed roots can tell.
        let mut log = b.log[..b.line[i]].to_vec();
        log.extend_from_slice(&forged);
        log.extend(renumber(&b.log[b.line[i]..], i as u64 + 1));
        assert_eq!(
            at_record(check(&log, &b.checkpoints), i),
            want,
            "seamless insert at {i}"
        );
        // Replacing record i instead of inserting: the same.
        let mut log = b.log[..b.line[i]].to_vec();
        log.extend_from_slice(&forged);
        log.extend_from_slice(&b.log[b.line[i + 1]..]);
        assert_eq!(
            at_record(check(&log, &b.checkpoints), i),
            want,
            "replace {i}"
        );
    }
    // A seamless deletion (later records renumbered) is caught where it happened.
    let mut log = b.log[..b.line[400]].to_vec();
    log.extend(renumber(&b.log[b.line[401]..], 400));
    assert!(matches!(
        at_record(check(&log, &b.checkpoints), 400),
        RecordProblem::RootMismatch {
            checkpoint: 400,
            ..
        }
    ));
    // Appended after the last checkpoint, a record is well-formed and not yet signed: verify
    // passes but says one record is unproven (the documented limit of local checking).
    let mut log = b.log.clone();
    let mut forged = encode(RECORDS, time(RECORDS), "decide", json!({"allow": true})).unwrap();
    forged.push(b'\n');
    log.extend_from_slice(&forged);
    assert_eq!(check(&log, &b.checkpoints).unwrap().unproven_records, 1);
}

#[test]
fn truncation_below_the_last_checkpoint_is_caught() {
    let b = base();
    for k in [0usize, 1, 2, 500, 998, 999] {
        let want = RecordProblem::Missing {
            checkpoint: k as u64,
            checkpoint_offset: b.entry[k] as u64,
            checkpoint_size: k as u64 + 1,
        };
        assert_eq!(
            at_record(check_files(&b.log[..b.line[k]], &b.checkpoints), k),
            want,
            "cut to {k}"
        );
        // Cut inside record k: the torn rest is no excuse.
        assert_eq!(
            at_record(check(&b.log[..b.line[k] + 7], &b.checkpoints), k),
            want,
            "cut in {k}"
        );
    }
}

/// The entry of checkpoint `j`, re-signed by `signer` with `root` (and its own size).
fn resigned(signer: &SigningKeyMaterial, j: usize, root: Hash) -> Vec<u8> {
    let mut entry = sign_checkpoint(signer, ORIGIN, j as u64 + 1, root)
        .note
        .into_bytes();
    entry.push(b'\n');
    entry
}

/// `checkpoints` with entry `j` replaced by `entry`.
fn replace_entry(j: usize, entry: &[u8]) -> Vec<u8> {
    let b = base();
    let mut out = b.checkpoints[..b.entry[j]].to_vec();
    out.extend_from_slice(entry);
    out.extend_from_slice(&b.checkpoints[b.entry[j + 1]..]);
    out
}

#[test]
fn checkpoint_signed_with_the_wrong_key_is_caught() {
    let b = base();
    let other = key(&new_key());
    for j in [0usize, 500, 999] {
        let entry = resigned(&other, j, b.roots[j + 1]);
        let problem = at_checkpoint(
            check_files(&b.log, &replace_entry(j, &entry)),
            j,
            b.entry[j],
        );
        assert!(
            matches!(problem, CheckpointProblem::UnknownKey { .. }),
            "{problem:?}"
        );

        // The log's key id on the line, another key's signature.
        let honest = &b.checkpoints[b.entry[j]..b.entry[j + 1]];
        let blob_of = |entry: &[u8]| {
            // The base64 blob (92 characters for 4 + 64 bytes) ends the signature line.
            let at = entry.len() - 2 - 92;
            (at, B64.decode(&entry[at..entry.len() - 2]).unwrap())
        };
        let (sig_at, honest_blob) = blob_of(honest);
        let (_, other_blob) = blob_of(&entry);
        let mut blob = honest_blob[..4].to_vec();
        blob.extend_from_slice(&other_blob[4..]);
        let mut spliced = honest[..sig_at].to_vec();
        spliced.extend_from_slice(B64.encode(&blob).as_bytes());
        spliced.extend_from_slice(b"\n\n");
        let problem = at_checkpoint(check(&b.log, &replace_entry(j, &spliced)), j, b.entry[j]);
        assert_eq!(problem, CheckpointProblem::BadSignature);
    }
    // A wrong-key checkpoint appended after the last one.
    let mut checkpoints = b.checkpoints.clone();
    checkpoints.extend_from_slice(&resigned(&other, 999, b.roots[1000]));
    let problem = at_checkpoint(check(&b.log, &checkpoints), 1000, b.checkpoints.len());
    assert!(
        matches!(problem, CheckpointProblem::UnknownKey { .. }),
        "{problem:?}"
    );
}

#[test]
fn checkpoint_with_an_edited_root_or_size_is_caught() {
    let b = base();
    let b64 = |h: &Hash| B64.encode(h);
    for j in [0usize, 300, 999] {
        let honest = String::from_utf8(b.checkpoints[b.entry[j]..b.entry[j + 1]].to_vec()).unwrap();
        // The root swapped for another real root: the signature no longer matches.
        let edited = honest.replacen(&b64(&b.roots[j + 1]), &b64(&b.roots[j]), 1);
        assert_ne!(edited, honest);
        let problem = at_checkpoint(
            check_files(&b.log, &replace_entry(j, edited.as_bytes())),
            j,
            b.entry[j],
        );
        assert_eq!(problem, CheckpointProblem::BadSignature);
        // One base64 character of the root changed.
        let mut bytes = honest.clone().into_bytes();
        let root_at = honest.find(&b64(&b.roots[j + 1])).unwrap();
        bytes[root_at + 3] = if bytes[root_at + 3] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let problem = at_checkpoint(check(&b.log, &replace_entry(j, &bytes)), j, b.entry[j]);
        assert_eq!(problem, CheckpointProblem::BadSignature);
        // The size edited.
        let size_line = format!("\n{}\n", j + 1);
        let edited = honest.replacen(&size_line, &format!("\n{}\n", j + 2), 1);
        let problem = at_checkpoint(
            check(&b.log, &replace_entry(j, edited.as_bytes())),
            j,
            b.entry[j],
        );
        assert_eq!(problem, CheckpointProblem::BadSignature);
    }

    // Signed by the log's own key but over a wrong root (a forked history): the records it
    // covers are reported, from the first one no earlier checkpoint proves.
    let me = key(&b.der);
    let j = 300;
    let problem = at_record(
        check(&b.log, &replace_entry(j, &resigned(&me, j, [0x42; 32]))),
        j,
    );
    assert_eq!(
        problem,
        RecordProblem::RootMismatch {
            checkpoint: j as u64,
            checkpoint_offset: b.entry[j] as u64,
            checkpoint_size: j as u64 + 1
        }
    );
    // A second, contradicting checkpoint for a size already proven.
    let mut checkpoints = b.checkpoints[..b.entry[j + 1]].to_vec();
    checkpoints.extend_from_slice(&resigned(&me, j, [0x42; 32]));
    checkpoints.extend_from_slice(&b.checkpoints[b.entry[j + 1]..]);
    let problem = at_checkpoint(check(&b.log, &checkpoints), j + 1, b.entry[j + 1]);
    assert_eq!(
        problem,
        CheckpointProblem::Conflicting { size: j as u64 + 1 }
    );
    // Two checkpoints swapped: the size goes backwards.
    let mut checkpoints = b.checkpoints[..b.entry[10]].to_vec();
    checkpoints.extend_from_slice(&b.checkpoints[b.entry[11]..b.entry[12]]);
    checkpoints.extend_from_slice(&b.checkpoints[b.entry[10]..b.entry[11]]);
    checkpoints.extend_from_slice(&b.checkpoints[b.entry[12]..]);
    let problem = at_checkpoint(check(&b.log, &checkpoints), 11, b.entry[11]);
    assert_eq!(
        problem,
        CheckpointProblem::SizeDecreased {
            size: 11,
            previous: 12
        }
    );
}

/// Without a checkpoint after every append, an edit is located to the records between the
/// last matching checkpoint and the first failing one: the reported record is the first
/// unproven one, and the edited record lies in [index, checkpoint_size).
#[test]
fn sparse_checkpoints_bound_the_edit() {
    let der = new_key();
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open_with_plan(dir.path(), &der, &Plan::no_sync()).unwrap();
    log.set_keep_every(10);
    for i in 0..100 {
        log.append(kind(i), body(i), time(i)).unwrap();
        if i % 10 == 9 {
            log.checkpoint().unwrap();
        }
    }
    drop(log);
    let mut bytes = fs::read(dir.path().join(LOG_FILE)).unwrap();
    let line = offsets(&bytes, 1);
    let pk = key(&der).public_key();
    for edited in [0usize, 5, 9, 10, 37, 99] {
        // Flip a letter inside the "note" string: still a valid, canonical record.
        let pos = line[edited]
            + bytes[line[edited]..]
                .windows(3)
                .position(|w| w == b"tab")
                .unwrap();
        bytes[pos] ^= 0x20; // "tab" -> "Tab"
        let result = scan(
            &bytes[..],
            &fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap()[..],
            None,
            None,
            false,
            &pk,
            ORIGIN,
            &mut |_| {},
        );
        let first_unproven = edited / 10 * 10;
        match result {
            Err(VerifyFailure::Record {
                index,
                offset,
                problem:
                    RecordProblem::RootMismatch {
                        checkpoint,
                        checkpoint_size,
                        ..
                    },
            }) => {
                assert_eq!(
                    (index, offset),
                    (first_unproven as u64, line[first_unproven] as u64)
                );
                assert_eq!(
                    (checkpoint, checkpoint_size),
                    (edited as u64 / 10, first_unproven as u64 + 10)
                );
                assert!((index..checkpoint_size).contains(&(edited as u64)));
            }
            other => panic!("edit of {edited}: {other:?}"),
        }
        bytes[pos] ^= 0x20;
    }
}
