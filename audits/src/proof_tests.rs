//! Tests of proof files: round trips, every single tampering refused by name, another key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::log_tests::{ORIGIN, body, key, kind, new_key, open_with_plan, public, time};
use crate::proof::{CONSISTENCY_TYPE, INCLUSION_TYPE, MAX_PATH_HASHES};
use crate::sink::fault::Plan;
use crate::*;

/// 22 records; checkpoints at sizes 5, 12 and 20; the last two records under none.
fn build() -> (tempfile::TempDir, Vec<u8>) {
    let der = new_key();
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open_with_plan(dir.path(), &der, &Plan::no_sync()).unwrap();
    log.set_keep_every(1);
    for i in 0..22 {
        log.append(kind(i), body(i), time(i)).unwrap();
        if [4, 11, 19].contains(&i) {
            log.checkpoint().unwrap();
        }
    }
    drop(log);
    (dir, der)
}

fn check(proof: &impl serde::Serialize, pk: &[u8; 32]) -> Result<Proven, ProofFailure> {
    verify_proof(&serde_json::to_vec(proof).unwrap(), ORIGIN, pk)
}

#[test]
fn inclusion_round_trip_for_every_record_against_the_smallest_checkpoint() {
    let (dir, der) = build();
    let pk = public(&der);
    for index in 0..20 {
        let proof = prove_inclusion(dir.path(), &pk, ORIGIN, index).unwrap();
        let covering = [5, 12, 20].into_iter().find(|&s| s > index).unwrap();
        assert_eq!((proof.index, proof.tree_size), (index, covering));
        // Through the file format and back.
        let text = serde_json::to_string_pretty(&proof).unwrap();
        match verify_proof(text.as_bytes(), ORIGIN, &pk).unwrap() {
            Proven::Inclusion { record, checkpoint } => {
                assert_eq!((record.index, record.kind.as_str()), (index, kind(index)));
                assert_eq!(Value::Object(record.body), body(index));
                assert_eq!(checkpoint.size, covering);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn consistency_round_trip_between_checkpoints() {
    let (dir, der) = build();
    let pk = public(&der);
    for (from, to) in [(5, 12), (5, 20), (12, 20), (5, 5), (20, 20)] {
        let proof = prove_consistency(dir.path(), &pk, ORIGIN, from, to).unwrap();
        match check(&proof, &pk).unwrap() {
            Proven::Consistency { old, new } => assert_eq!((old.size, new.size), (from, to)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn what_cannot_be_proven_is_refused_by_name() {
    let (dir, der) = build();
    let pk = public(&der);
    assert_eq!(
        prove_inclusion(dir.path(), &pk, ORIGIN, 22),
        Err(ProveError::NoRecord {
            index: 22,
            size: 22
        })
    );
    assert_eq!(
        prove_inclusion(dir.path(), &pk, ORIGIN, 20),
        Err(ProveError::NotCheckpointed {
            index: 20,
            newest: Some(20)
        })
    );
    let err = prove_consistency(dir.path(), &pk, ORIGIN, 6, 12).unwrap_err();
    assert_eq!(
        err,
        ProveError::NotACheckpoint {
            size: 6,
            below: Some(5),
            above: Some(12)
        }
    );
    assert!(err.to_string().contains("nearest: 5 and 12"), "{err}");
    assert_eq!(
        prove_consistency(dir.path(), &pk, ORIGIN, 5, 21),
        Err(ProveError::NotACheckpoint {
            size: 21,
            below: Some(20),
            above: None
        })
    );
    assert_eq!(
        prove_consistency(dir.path(), &pk, ORIGIN, 12, 5),
        Err(ProveError::Backwards { from: 12, to: 5 })
    );
    // Another key: the log itself does not verify.
    assert!(matches!(
        prove_inclusion(dir.path(), &public(&new_key()), ORIGIN, 0),
        Err(ProveError::Log(VerifyFailure::Checkpoint {
            problem: CheckpointProblem::UnknownKey { .. },
            ..
        }))
    ));
}

/// The expected refusal of a checkpoint note whose signature's base64 was changed.
fn signature_refusal(original: &str, tampered: &str) -> CheckpointProblem {
    let blob = |note: &str| B64.decode(note.trim_end().rsplit(' ').next().unwrap());
    match blob(tampered) {
        Err(_) => CheckpointProblem::Malformed(String::new()),
        Ok(b) if b[..4] != blob(original).unwrap()[..4] => CheckpointProblem::UnknownKey {
            name: String::new(),
            key_id: String::new(),
        },
        Ok(_) => CheckpointProblem::BadSignature,
    }
}

fn same_kind(a: &CheckpointProblem, b: &CheckpointProblem) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Every character of the signature, each replaced by another base64 character.
fn signature_tamperings(note: &str) -> Vec<String> {
    let sig_start = note.trim_end().rfind(' ').unwrap() + 1;
    let sig_end = note.trim_end().len();
    let mut out = Vec::new();
    for pos in sig_start..sig_end {
        let mut bytes = note.as_bytes().to_vec();
        if bytes[pos] == b'=' {
            continue;
        }
        bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
        out.push(String::from_utf8(bytes).unwrap());
    }
    assert!(out.len() > 80);
    out
}

#[test]
fn every_tampering_of_an_inclusion_proof_is_refused() {
    let (dir, der) = build();
    let pk = public(&der);
    let good = prove_inclusion(dir.path(), &pk, ORIGIN, 7).unwrap();
    assert_eq!(good.tree_size, 12);
    assert!(check(&good, &pk).is_ok());
    let mut cases = 0;

    // Each byte of the record, replaced.
    for pos in 0..good.record.len() {
        let mut p = good.clone();
        let mut bytes = p.record.into_bytes();
        if !bytes[pos].is_ascii() {
            continue;
        }
        bytes[pos] = if bytes[pos] == b'x' { b'y' } else { b'x' };
        p.record = String::from_utf8(bytes).unwrap();
        let err = check(&p, &pk).unwrap_err();
        // Either the record is no longer a canonical record at index 7, or it is one and its
        // leaf is not in the tree.
        match crate::record::parse_line(p.record.as_bytes(), 7) {
            Err(problem) => assert_eq!(err, ProofFailure::Record(problem), "byte {pos}"),
            Ok(_) => assert_eq!(err, ProofFailure::NotIncluded, "byte {pos}"),
        }
        cases += 1;
    }
    assert!(cases > 150, "{cases}");

    // The index, alone: the record says otherwise, or the index is outside the tree.
    for index in (0..40).filter(|&i| i != 7) {
        let mut p = good.clone();
        p.index = index;
        let want = if index >= 12 {
            ProofFailure::IndexOutOfRange { index, size: 12 }
        } else {
            ProofFailure::Record(RecordProblem::IndexMismatch {
                expected: index,
                found: 7,
            })
        };
        assert_eq!(check(&p, &pk).unwrap_err(), want);
        cases += 1;
    }
    // The index and the record's own index together: the path no longer fits.
    let mut p = good.clone();
    p.index = 6;
    p.record = p.record.replace("\"index\":7,", "\"index\":6,");
    assert_eq!(check(&p, &pk).unwrap_err(), ProofFailure::NotIncluded);

    // Each bit of each hash of the path; a hash dropped, added or swapped.
    assert_eq!(good.path.len(), 4);
    for h in 0..good.path.len() {
        for bit in 0..256 {
            let mut p = good.clone();
            let mut hash = B64.decode(&p.path[h]).unwrap();
            hash[bit / 8] ^= 1 << (bit % 8);
            p.path[h] = B64.encode(hash);
            assert_eq!(check(&p, &pk).unwrap_err(), ProofFailure::NotIncluded);
            cases += 1;
        }
        let mut p = good.clone();
        p.path.remove(h);
        assert_eq!(check(&p, &pk).unwrap_err(), ProofFailure::NotIncluded);
        let mut p = good.clone();
        p.path.insert(h, good.path[h].clone());
        assert_eq!(check(&p, &pk).unwrap_err(), ProofFailure::NotIncluded);
    }
    let mut p = good.clone();
    p.path.swap(0, 1);
    assert_eq!(check(&p, &pk).unwrap_err(), ProofFailure::NotIncluded);

    // The checkpoint's signature, character by character.
    for note in signature_tamperings(&good.checkpoint) {
        let mut p = good.clone();
        p.checkpoint = note.clone();
        let want = signature_refusal(&good.checkpoint, &note);
        match check(&p, &pk).unwrap_err() {
            ProofFailure::Checkpoint {
                which: "checkpoint",
                problem,
            } => assert!(same_kind(&problem, &want), "{problem:?}, want {want:?}"),
            other => panic!("{other:?}"),
        }
        cases += 1;
    }
    // The signed size or root, edited in the note: the signature fails.
    for (from, to) in [("\n12\n", "\n13\n"), ("\n12\n", "\n11\n")] {
        let mut p = good.clone();
        p.checkpoint = p.checkpoint.replacen(from, to, 1);
        assert_eq!(
            check(&p, &pk).unwrap_err(),
            ProofFailure::Checkpoint {
                which: "checkpoint",
                problem: CheckpointProblem::BadSignature
            }
        );
    }
    let root_line = good.checkpoint.lines().nth(2).unwrap().to_owned();
    let mut root = B64.decode(&root_line).unwrap();
    root[0] ^= 1;
    let mut p = good.clone();
    p.checkpoint = p.checkpoint.replacen(&root_line, &B64.encode(root), 1);
    assert_eq!(
        check(&p, &pk).unwrap_err(),
        ProofFailure::Checkpoint {
            which: "checkpoint",
            problem: CheckpointProblem::BadSignature
        }
    );
    // The stated size.
    for size in [0, 11, 13, 20, u64::MAX] {
        let mut p = good.clone();
        p.tree_size = size;
        assert_eq!(
            check(&p, &pk).unwrap_err(),
            ProofFailure::SizeMismatch {
                which: "treeSize",
                stated: size,
                signed: 12
            }
        );
        cases += 1;
    }
    // A checkpoint from the same log, but of another size: the path does not fit.
    let other = prove_inclusion(dir.path(), &pk, ORIGIN, 15).unwrap();
    let mut p = good.clone();
    p.checkpoint = other.checkpoint.clone();
    p.tree_size = other.tree_size;
    assert_eq!(check(&p, &pk).unwrap_err(), ProofFailure::NotIncluded);
    assert!(cases > 1300, "{cases}");
}

#[test]
fn every_tampering_of_a_consistency_proof_is_refused() {
    let (dir, der) = build();
    let pk = public(&der);
    let good = prove_consistency(dir.path(), &pk, ORIGIN, 5, 20).unwrap();
    assert!(check(&good, &pk).is_ok());
    assert!(!good.path.is_empty());
    for h in 0..good.path.len() {
        for bit in 0..256 {
            let mut p = good.clone();
            let mut hash = B64.decode(&p.path[h]).unwrap();
            hash[bit / 8] ^= 1 << (bit % 8);
            p.path[h] = B64.encode(hash);
            assert_eq!(
                check(&p, &pk).unwrap_err(),
                ProofFailure::NotConsistent { old: 5, new: 20 }
            );
        }
        let mut p = good.clone();
        p.path.remove(h);
        assert_eq!(
            check(&p, &pk).unwrap_err(),
            ProofFailure::NotConsistent { old: 5, new: 20 }
        );
    }
    for (which, note) in [
        ("old checkpoint", &good.old_checkpoint),
        ("new checkpoint", &good.new_checkpoint),
    ] {
        for tampered in signature_tamperings(note) {
            let mut p = good.clone();
            if which == "old checkpoint" {
                p.old_checkpoint = tampered.clone();
            } else {
                p.new_checkpoint = tampered.clone();
            }
            let want = signature_refusal(note, &tampered);
            match check(&p, &pk).unwrap_err() {
                ProofFailure::Checkpoint { which: w, problem } => {
                    assert_eq!(w, which);
                    assert!(same_kind(&problem, &want), "{problem:?}, want {want:?}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let mut p = good.clone();
    p.old_size = 6;
    assert_eq!(
        check(&p, &pk).unwrap_err(),
        ProofFailure::SizeMismatch {
            which: "oldSize",
            stated: 6,
            signed: 5
        }
    );
    let mut p = good.clone();
    p.new_size = 19;
    assert_eq!(
        check(&p, &pk).unwrap_err(),
        ProofFailure::SizeMismatch {
            which: "newSize",
            stated: 19,
            signed: 20
        }
    );
    // Old and new swapped.
    let mut p = good.clone();
    std::mem::swap(&mut p.old_checkpoint, &mut p.new_checkpoint);
    std::mem::swap(&mut p.old_size, &mut p.new_size);
    assert_eq!(
        check(&p, &pk).unwrap_err(),
        ProofFailure::Backwards { old: 20, new: 5 }
    );
    // Another pair of checkpoints of the same log with this path.
    let mut p = good.clone();
    p.old_checkpoint = prove_consistency(dir.path(), &pk, ORIGIN, 12, 20)
        .unwrap()
        .old_checkpoint;
    p.old_size = 12;
    assert_eq!(
        check(&p, &pk).unwrap_err(),
        ProofFailure::NotConsistent { old: 12, new: 20 }
    );
}

#[test]
fn a_proof_is_refused_under_another_logs_key() {
    let (dir, der) = build();
    let pk = public(&der);
    let other = public(&new_key());
    let inclusion = prove_inclusion(dir.path(), &pk, ORIGIN, 3).unwrap();
    assert!(matches!(
        check(&inclusion, &other),
        Err(ProofFailure::Checkpoint {
            which: "checkpoint",
            problem: CheckpointProblem::UnknownKey { .. }
        })
    ));
    let consistency = prove_consistency(dir.path(), &pk, ORIGIN, 5, 12).unwrap();
    assert!(matches!(
        check(&consistency, &other),
        Err(ProofFailure::Checkpoint {
            which: "old checkpoint",
            problem: CheckpointProblem::UnknownKey { .. }
        })
    ));
    // Another origin.
    assert!(matches!(
        verify_proof(
            &serde_json::to_vec(&inclusion).unwrap(),
            "warrant.test/other",
            &pk
        ),
        Err(ProofFailure::Checkpoint {
            problem: CheckpointProblem::WrongOrigin(_),
            ..
        })
    ));
    // A proof from another log signed by another key, checked with this log's key.
    let (dir2, der2) = build();
    let foreign = prove_inclusion(dir2.path(), &public(&der2), ORIGIN, 3).unwrap();
    assert_ne!(key(&der2).public_key(), pk);
    assert!(matches!(
        check(&foreign, &pk),
        Err(ProofFailure::Checkpoint {
            problem: CheckpointProblem::UnknownKey { .. },
            ..
        })
    ));
}

#[test]
fn hostile_proof_files_are_refused_without_panicking() {
    let (dir, der) = build();
    let pk = public(&der);
    let good = serde_json::to_value(prove_inclusion(dir.path(), &pk, ORIGIN, 3).unwrap()).unwrap();
    let malformed = |v: &Value| {
        matches!(
            verify_proof(&serde_json::to_vec(v).unwrap(), ORIGIN, &pk),
            Err(ProofFailure::Malformed(_))
        )
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    assert!(malformed(&with(&|v| v["extra"] = json!(1))));
    assert!(malformed(&with(
        &|v| v["type"] = json!("warrant-audit-inclusion-v2")
    )));
    assert!(malformed(&with(&|v| v["type"] = json!(CONSISTENCY_TYPE))));
    assert!(malformed(&with(&|v| {
        v.as_object_mut().unwrap().remove("type");
    })));
    assert!(malformed(&with(&|v| v["index"] = json!(-1))));
    assert!(malformed(&with(&|v| v["index"] = json!("3"))));
    assert!(malformed(&with(&|v| {
        v.as_object_mut().unwrap().remove("path");
    })));
    assert!(malformed(&with(&|v| v["path"][0] = json!("not base64!"))));
    assert!(malformed(&with(
        &|v| v["path"][0] = json!(B64.encode([0u8; 31]))
    )));
    assert!(malformed(&with(&|v| {
        v["path"] = json!(vec![B64.encode([0u8; 32]); MAX_PATH_HASHES + 1])
    })));
    for bytes in [&b""[..], b"[]", b"null", b"{", b"\xff", &[b'['; 10_000][..]] {
        assert!(matches!(
            verify_proof(bytes, ORIGIN, &pk),
            Err(ProofFailure::Malformed(_))
        ));
    }
    assert_eq!(
        verify_proof(&vec![b' '; proof::MAX_PROOF_BYTES + 1], ORIGIN, &pk),
        Err(ProofFailure::TooLarge)
    );
    assert_eq!(good["type"], INCLUSION_TYPE);
}
