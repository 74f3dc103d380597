//! The audit log end to end: what `warrant run` records, in what order, and that `warrant
//! audit verify` notices an edit.

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn warrant(home: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warrant-it"))
        .args(args)
        .current_dir(root())
        .env("WARRANT_HOME", home)
        .env("HOME", home)
        .env_remove("WARRANT_CONFIG")
        .output()
        .unwrap()
}

/// `warrant audit prove ARGS… --out FILE` in `home`.
fn prove_into(home: &Path, args: &[&str], file: &Path) -> Output {
    let mut all = vec!["audit", "prove"];
    all.extend_from_slice(args);
    all.extend(["--out", file.to_str().unwrap()]);
    warrant(home, &all)
}

/// `warrant audit verify-proof FILE --key KEY` in `home` (a third party's).
fn verify_proof(home: &Path, file: &Path, key: &str) -> Output {
    warrant(
        home,
        &[
            "audit",
            "verify-proof",
            file.to_str().unwrap(),
            "--key",
            key,
        ],
    )
}

const RUN_EXAMPLE: &[&str] = &[
    "run",
    "--key",
    "examples/hello/example-signer.pub",
    "--policies",
    "examples/hello/policies",
    "oci-layout:examples/hello/layout",
];

/// `warrant` with a configuration that keeps an audit checkpoint every `keep_every` records
/// (`audit_keep_every`; 0 keeps every run's checkpoint).
fn warrant_keeping(home: &Path, keep_every: u64, args: &[&str]) -> Output {
    let config = home.join("keep.toml");
    std::fs::write(&config, format!("audit_keep_every = {keep_every}\n")).unwrap();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    warrant(home, &all)
}

fn records(home: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(home.join("audit/log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kinds(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_run_records_pull_verify_decide_instantiate_outcome_in_order() {
    let home = tempfile::tempdir().unwrap();
    let out = warrant(home.path(), RUN_EXAMPLE);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = records(home.path());
    assert_eq!(
        kinds(&log),
        ["pull", "verify", "decide", "instantiate", "outcome"]
    );
    let digest = log[0]["body"]["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"));
    assert_eq!(log[1]["body"]["verified"], true);
    assert_eq!(log[2]["body"]["allowed"], true);
    assert_eq!(
        log[2]["body"]["decisions"][0]["determining"][0],
        "hello-signed-by-example-key"
    );
    assert_eq!(log[3]["body"]["digest"], digest.as_str());
    assert_eq!(log[3]["body"]["engine"], broker::audit::ENGINE);
    assert_eq!(log[4]["body"]["outcome"], "exit");
    assert_eq!(log[4]["body"]["detail"], 0);

    let out = warrant(home.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The run's checkpoint is the head: a kept one comes every 1,000 records.
    assert!(
        text(&out.stdout)
            .contains("intact: 5 records, 0 kept checkpoints and the head checkpoint at size 5,"),
        "{}",
        text(&out.stdout)
    );
    let out = warrant(home.path(), &["audit", "verify", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            report["records"].as_u64(),
            report["checkpoints"].as_u64(),
            report["headSize"].as_u64(),
            report["unprovenRecords"].as_u64()
        ),
        (Some(5), Some(0), Some(5), Some(0))
    );

    // A third party needs only the verifier key.
    let out = warrant(home.path(), &["audit", "key"]);
    let key = text(&out.stdout);
    assert!(key.starts_with("warrant-audit+"), "{key}");
    let key_file = home.path().join("verifier.txt");
    std::fs::write(&key_file, &key).unwrap();
    let out = warrant(
        home.path(),
        &["audit", "verify", "--key", key_file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A second run appends to the same log.
    let out = warrant(home.path(), RUN_EXAMPLE);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(records(home.path()).len(), 10);
}

#[test]
fn a_denied_run_records_the_denial_and_no_instantiate() {
    let home = tempfile::tempdir().unwrap();
    // No policy directory: everything is denied.
    let out = warrant(
        home.path(),
        &[
            "run",
            "--key",
            "examples/hello/example-signer.pub",
            "oci-layout:examples/hello/layout",
        ],
    );
    assert_eq!(out.status.code(), Some(123), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let log = records(home.path());
    assert_eq!(kinds(&log), ["pull", "verify", "decide"]);
    assert_eq!(log[2]["body"]["allowed"], false);
    assert_eq!(log[2]["body"]["decisions"][0]["allowed"], false);
    let out = warrant(home.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Turns the last recorded exit status 0 into 1.
fn edit_last_exit_status(home: &Path) {
    let path = home.join("audit/log.jsonl");
    let original = std::fs::read_to_string(&path).unwrap();
    let at = original.rfind("\"detail\":0").unwrap();
    let edited = format!("{}\"detail\":1{}", &original[..at], &original[at + 10..]);
    assert_ne!(edited, original);
    std::fs::write(&path, edited).unwrap();
}

#[test]
fn an_edited_record_fails_audit_verify_naming_it() {
    // With every run's checkpoint kept, the failure names the run: its first record (5) and
    // the kept checkpoint that signed its end (size 10).
    let kept = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        assert_eq!(
            warrant_keeping(kept.path(), 0, RUN_EXAMPLE).status.code(),
            Some(0)
        );
    }
    edit_last_exit_status(kept.path());
    let out = warrant(kept.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(122), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    assert!(
        said.contains("record 5 ")
            && said.contains("up to size 10 do not match the root signed by checkpoint 1"),
        "{said}"
    );

    // By default the runs' checkpoints replace the head until 1,000 records are reached: the
    // head names the records since the last kept checkpoint (here, none: from record 0).
    let home = tempfile::tempdir().unwrap();
    assert_eq!(warrant(home.path(), RUN_EXAMPLE).status.code(), Some(0));
    assert_eq!(warrant(home.path(), RUN_EXAMPLE).status.code(), Some(0));
    edit_last_exit_status(home.path());
    let out = warrant(home.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(122), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    assert!(
        said.contains("record 0 (byte 0 of log.jsonl)")
            && said.contains("up to size 10 do not match the root signed by the head checkpoint"),
        "{said}"
    );
    // The broker opens the log from its last checkpoint (the `state` file), so an edit below
    // it is `audit verify`'s to find: the next run goes ahead, and verify still names it.
    let out = warrant(home.path(), RUN_EXAMPLE);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = warrant(home.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(122));
    assert!(
        text(&out.stderr).contains("record 0 ") && text(&out.stderr).contains("up to size 15"),
        "{}",
        text(&out.stderr)
    );
    // Without the state file, opening reads everything and refuses the log.
    std::fs::remove_file(home.path().join("audit/state")).unwrap();
    let out = warrant(home.path(), RUN_EXAMPLE);
    assert_eq!(out.status.code(), Some(121), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the guest must not run");
}

#[test]
fn a_log_whose_tail_fails_verification_refuses_the_run() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(warrant(home.path(), RUN_EXAMPLE).status.code(), Some(0));
    // A complete line after the last checkpoint that is not the next record.
    let path = home.path().join("audit/log.jsonl");
    let mut log = std::fs::read_to_string(&path).unwrap();
    let first = log.lines().next().unwrap().to_owned();
    log.push_str(&first);
    log.push('\n');
    std::fs::write(&path, log).unwrap();
    let out = warrant(home.path(), RUN_EXAMPLE);
    assert_eq!(out.status.code(), Some(121), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("record 5 (byte"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the guest must not run");
}

#[test]
fn an_unusable_audit_log_refuses_the_run() {
    let home = tempfile::tempdir().unwrap();
    let blocker = home.path().join("not-a-directory");
    std::fs::write(&blocker, b"x").unwrap();
    let mut args = vec!["--audit-log", blocker.to_str().unwrap()];
    args.extend_from_slice(RUN_EXAMPLE);
    let out = warrant(home.path(), &args);
    assert_eq!(out.status.code(), Some(121), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("audit log"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the guest must not run");
}

/// The broker's record sequence for a run: pull, verify and decide cost no sync; the
/// `instantiate` record commits all four with exactly one `fdatasync`, after which they are
/// durable (a reader sees them) — and that is the only sync before the guest would start. A
/// denial likewise costs one sync before it is reported. The checkpoint comes at the end.
#[test]
fn a_run_makes_exactly_one_sync_before_the_effect() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("audit");
    let key = home.path().join("audit.key");
    let public = broker::audit::load_or_create_key(&key)
        .unwrap()
        .public_key();
    let mut audit = broker::audit::Audit::open(&dir, &key).unwrap();
    let opened = audit.syncs();
    for kind in ["pull", "verify", "decide"] {
        audit
            .record(kind, serde_json::json!({"digest": "sha256:00"}))
            .unwrap();
    }
    assert_eq!(
        audit.syncs(),
        opened,
        "pull, verify and decide are not synced one by one"
    );
    assert_eq!(audit.size(), 0, "nor acknowledged");
    audit
        .record_before_effect("instantiate", serde_json::json!({"digest": "sha256:00"}))
        .unwrap();
    assert_eq!(audit.syncs(), opened + 1, "one sync before the effect");
    assert_eq!(audit.size(), 4);
    let report = audits::verify(&dir, &public, broker::audit::ORIGIN).unwrap();
    assert_eq!((report.size, report.checkpoints), (4, 0));

    audit
        .record("outcome", serde_json::json!({"digest": "sha256:00"}))
        .unwrap();
    audit.finish().unwrap();
    assert_eq!(
        audit.syncs(),
        opened + 3,
        "after the effect: the outcome, the checkpoint"
    );

    // A denial: one sync before it is reported.
    let before = audit.syncs();
    for kind in ["pull", "verify"] {
        audit.record(kind, serde_json::json!({})).unwrap();
    }
    audit
        .record_before_effect("decide", serde_json::json!({"allowed": false}))
        .unwrap();
    assert_eq!((audit.syncs(), audit.size()), (before + 1, 8));
    audit.finish().unwrap();
    // A run that recorded nothing (it failed before its first record) signs nothing.
    let before = audit.syncs();
    audit.finish().unwrap();
    assert_eq!(audit.syncs(), before);
    drop(audit);
    let report = audits::verify(&dir, &public, broker::audit::ORIGIN).unwrap();
    // Both runs' checkpoints were written as the head, the second replacing the first.
    assert_eq!(
        (report.size, report.checkpoints, report.unproven_records),
        (8, 0, 0)
    );
    assert_eq!(report.head.map(|h| h.size), Some(8));
    // The first run's head, exchanged out: the file the next head is written over.
    let old_head = std::fs::read(dir.join(audits::HEAD_TMP_FILE)).unwrap();
    assert!(old_head.starts_with(b"warrant-audit\n5\n"), "{old_head:?}");
    assert!(
        std::fs::read(dir.join(audits::HEAD_FILE))
            .unwrap()
            .starts_with(b"warrant-audit\n8\n")
    );
}

/// How many times the writer is killed in `cargo test` (`scripts/audit-crash.sh` runs more).
fn crash_rounds() -> usize {
    std::env::var("WARRANT_AUDIT_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// A child appends as fast as it can and is SIGKILLed at a random moment, again and again on
/// the same log: after every kill the log opens (repairing a torn tail), verifies, and holds
/// every record whose append was acknowledged; at most one torn tail is dropped per kill.
#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record() {
    use std::io::{BufRead as _, BufReader};
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("audit.key");
    let mut seed: u64 = 0xdead_beef;
    let mut acknowledged_total = 0_usize;
    let rounds = crash_rounds();
    for round in 0..rounds {
        // A fresh log every 25 kills, so that the full `audits::verify` after each kill stays
        // quick; each log still goes through 25 crash-and-recover cycles.
        let dir = home.path().join(format!("audit-{}", round / 25));
        let before = if dir.join("log.jsonl").exists() {
            records_in(&dir).len()
        } else {
            0
        };
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_audit-writer"))
            .arg(&dir)
            .arg(&key)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Let it write for 0–20 ms (after it acknowledged at least one record), then kill.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = std::time::Duration::from_micros((seed >> 33) % 20_000);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next();
        assert!(
            matches!(first, Some(Ok(_))),
            "round {round}: the writer acknowledged nothing"
        );
        std::thread::sleep(wait);
        child.kill().unwrap();
        child.wait().unwrap();
        let acknowledged = 1 + lines.map_while(Result::ok).count();
        acknowledged_total += acknowledged;

        // Reopen (as the next writer would): repairs a torn tail, then it must verify.
        let audit = broker::audit::Audit::open(&dir, &key);
        assert!(audit.is_ok(), "round {round}: {:?}", audit.err());
        drop(audit);
        let public = broker::audit::load_or_create_key(&key)
            .unwrap()
            .public_key();
        let report = audits::verify(&dir, &public, broker::audit::ORIGIN);
        assert!(report.is_ok(), "round {round}: {:?}", report.err());
        let after = records_in(&dir);
        let written = after.len() - before;
        // Every acknowledged record is there (plus possibly some of the batch of three written
        // but not yet committed, and a `recovered` record for a repaired tail).
        let test_records = after[before..]
            .iter()
            .filter(|r| r["kind"] == "test")
            .count();
        assert!(
            test_records >= acknowledged && test_records <= acknowledged + 3,
            "round {round}: {acknowledged} acknowledged, {test_records} present"
        );
        let recovered = after[before..]
            .iter()
            .filter(|r| r["kind"] == "recovered")
            .count();
        assert!(recovered <= 1, "round {round}: {recovered} recoveries");
        assert!(written >= acknowledged);
    }
    assert!(acknowledged_total >= rounds);
}

fn records_in(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const RUN_DENIED: &[&str] = &[
    "run",
    "--key",
    "examples/hello/example-signer.pub",
    "oci-layout:examples/hello/layout",
];

fn lines(bytes: &[u8]) -> Vec<String> {
    text(bytes).lines().map(str::to_owned).collect()
}

#[test]
fn audit_show_prints_a_timeline_filters_it_and_stops_at_a_failure() {
    let home = tempfile::tempdir().unwrap();
    // A kept checkpoint every 5 records: the first run's is kept, the denied run's is the head.
    assert_eq!(
        warrant_keeping(home.path(), 5, RUN_EXAMPLE).status.code(),
        Some(0)
    );
    assert_eq!(
        warrant_keeping(home.path(), 5, RUN_DENIED).status.code(),
        Some(123)
    );
    let digest = records(home.path())[0]["body"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = warrant(home.path(), &["audit", "show"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = lines(&out.stdout);
    assert_eq!(shown.len(), 8, "{shown:#?}");
    let kinds: Vec<&str> = shown
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "pull",
            "verify",
            "decide",
            "instantiate",
            "outcome",
            "pull",
            "verify",
            "decide"
        ]
    );
    assert!(shown[0].starts_with("     0  20"), "{}", shown[0]);
    assert!(
        shown[0].ends_with(&format!(
            "oci-layout:{}:latest → {digest}",
            std::fs::canonicalize(root().join("examples/hello/layout"))
                .unwrap()
                .display()
        )),
        "{}",
        shown[0]
    );
    assert!(
        shown[1].contains("verified; signers: sha256:"),
        "{}",
        shown[1]
    );
    assert!(
        shown[2].contains("allowed: instantiate allow [hello-signed-by-example-key]"),
        "{}",
        shown[2]
    );
    assert!(shown[3].contains(broker::audit::ENGINE), "{}", shown[3]);
    assert!(shown[4].contains("exit 0 after"), "{}", shown[4]);
    assert!(
        shown[7].contains("DENIED: instantiate deny"),
        "{}",
        shown[7]
    );

    // JSON lines: the records themselves.
    let out = warrant(home.path(), &["audit", "show", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let on_disk = std::fs::read_to_string(home.path().join("audit/log.jsonl")).unwrap();
    assert_eq!(text(&out.stdout), on_disk);

    // Filters.
    let count = |args: &[&str]| {
        let mut all = vec!["audit", "show"];
        all.extend_from_slice(args);
        let out = warrant(home.path(), &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        lines(&out.stdout).len()
    };
    assert_eq!(count(&["--digest", &digest]), 8);
    assert_eq!(count(&["--digest", &digest[7..15]]), 8);
    assert_eq!(count(&["--digest", "sha256:0000"]), 0);
    assert_eq!(count(&["--since", "1h"]), 8);
    assert_eq!(count(&["--since", "2999-01-01T00:00:00Z"]), 0);
    assert_eq!(
        count(&["--since", "2000-01-01T00:00:00+02:00", "--json"]),
        8
    );
    let out = warrant(home.path(), &["audit", "show", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // The denied run's records are edited: only the first run, which its kept checkpoint
    // proves, is shown; then the failure, at the head, exit 122.
    let path = home.path().join("audit/log.jsonl");
    let edited = on_disk.replace("\"allowed\":false", "\"allowed\":true");
    assert_ne!(edited, on_disk);
    std::fs::write(&path, edited).unwrap();
    let out = warrant(home.path(), &["audit", "show"]);
    assert_eq!(out.status.code(), Some(122));
    assert_eq!(lines(&out.stdout).len(), 5);
    assert!(
        text(&out.stderr).contains("record 5 ") && text(&out.stderr).contains("head checkpoint"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn audit_prove_and_verify_proof_with_only_the_verifier_key() {
    let home = tempfile::tempdir().unwrap();
    // Every run's checkpoint kept: sizes 5 and 10.
    for _ in 0..2 {
        assert_eq!(
            warrant_keeping(home.path(), 0, RUN_EXAMPLE).status.code(),
            Some(0)
        );
    }
    let key = home.path().join("verifier.txt");
    std::fs::write(&key, warrant(home.path(), &["audit", "key"]).stdout).unwrap();
    let key = key.to_str().unwrap();
    // The third party has no log and no signing key: a separate home.
    let third = tempfile::tempdir().unwrap();

    // Inclusion: record 7 (the second run's decide), against the checkpoint of size 10.
    let proof = home.path().join("proof.json");
    let out = prove_into(home.path(), &["--index", "7"], &proof);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    assert_eq!(
        (
            value["type"].as_str(),
            value["index"].as_u64(),
            value["treeSize"].as_u64()
        ),
        (Some("warrant-audit-inclusion-v1"), Some(7), Some(10))
    );
    let out = verify_proof(third.path(), &proof, key);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("verified: record 7 is in the log `warrant-audit` of 10 records"),
        "{said}"
    );
    assert!(said.contains("decide"), "{said}");
    assert!(!third.path().join("audit").exists(), "no log was needed");

    // A tampered proof is refused, naming what failed.
    let tampered = home.path().join("tampered.json");
    let mut edited = value.clone();
    edited["record"] = serde_json::json!(
        value["record"]
            .as_str()
            .unwrap()
            .replace("\"allowed\":true", "\"allowed\":false")
    );
    std::fs::write(&tampered, edited.to_string()).unwrap();
    let out = verify_proof(third.path(), &tampered, key);
    assert_eq!(out.status.code(), Some(122));
    assert!(
        text(&out.stderr).contains("the inclusion path does not lead from the record"),
        "{}",
        text(&out.stderr)
    );

    // Consistency between the two runs' checkpoints (sizes 5 and 10), to standard output.
    let out = warrant(
        home.path(),
        &["audit", "prove", "--from", "5", "--to", "10"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let consistency = home.path().join("consistency.json");
    std::fs::write(&consistency, &out.stdout).unwrap();
    let out = warrant(
        third.path(),
        &[
            "audit",
            "verify-proof",
            consistency.to_str().unwrap(),
            "--key",
            key,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            said["verified"].as_bool(),
            said["oldSize"].as_u64(),
            said["newSize"].as_u64()
        ),
        (Some(true), Some(5), Some(10))
    );

    // Sizes that are not checkpoints, and records no checkpoint covers, are refused (2).
    let out = warrant(
        home.path(),
        &["audit", "prove", "--from", "4", "--to", "10"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no checkpoint of size 4; nearest: 5 (the oldest)"),
        "{}",
        text(&out.stderr)
    );
    let out = warrant(home.path(), &["audit", "prove", "--index", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no record 10"),
        "{}",
        text(&out.stderr)
    );

    // Another log's key refuses the proof.
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("verifier.txt");
    let other_signer = broker::audit::load_or_create_key(&other.path().join("audit.key")).unwrap();
    std::fs::write(&other_key, broker::audit::verifier_key(&other_signer)).unwrap();
    let out = verify_proof(third.path(), &proof, other_key.to_str().unwrap());
    assert_eq!(out.status.code(), Some(122));
    assert!(
        text(&out.stderr).contains("checkpoint not signed by the log's key"),
        "{}",
        text(&out.stderr)
    );
}

/// By default a run's checkpoint is the head: a proof of a record under it names it, and stays
/// valid, with the key alone, after the next run has replaced it; the replaced head's size is
/// no longer a checkpoint of the log.
#[test]
fn a_proof_against_the_head_outlives_it() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(warrant(home.path(), RUN_EXAMPLE).status.code(), Some(0));
    let key = home.path().join("verifier.txt");
    std::fs::write(&key, warrant(home.path(), &["audit", "key"]).stdout).unwrap();
    let key = key.to_str().unwrap();
    let proof = home.path().join("proof.json");
    let out = prove_into(home.path(), &["--index", "3"], &proof);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("against the checkpoint of size 5"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(warrant(home.path(), RUN_EXAMPLE).status.code(), Some(0));
    let third = tempfile::tempdir().unwrap();
    let out = verify_proof(third.path(), &proof, key);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .starts_with("verified: record 3 is in the log `warrant-audit` of 5 records"),
        "{}",
        text(&out.stdout)
    );
    // Now the head is at 10, and 5 is no checkpoint.
    let out = warrant(home.path(), &["audit", "prove", "--index", "3"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["treeSize"].as_u64(), Some(10));
    let out = warrant(
        home.path(),
        &["audit", "prove", "--from", "5", "--to", "10"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no checkpoint of size 5; nearest: 10 (the oldest)"),
        "{}",
        text(&out.stderr)
    );
    // But whoever kept the head of size 5 (here from the proof file) gets a consistency
    // proof from it to the newest checkpoint, which checks with the key alone.
    let since = home.path().join("since.json");
    let out = prove_into(
        home.path(),
        &["--from-checkpoint", proof.to_str().unwrap()],
        &since,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = verify_proof(third.path(), &since, key);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("of 10 records") && text(&out.stdout).contains("of 5 records"),
        "{}",
        text(&out.stdout)
    );
    // A head signed by another key is named by `audit verify`, and refuses the next run.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(warrant(other.path(), RUN_EXAMPLE).status.code(), Some(0));
    std::fs::copy(
        other.path().join("audit/head"),
        home.path().join("audit/head"),
    )
    .unwrap();
    let out = warrant(home.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(122));
    assert!(
        text(&out.stderr)
            .contains("the head checkpoint (file `head`): checkpoint not signed by the log's key"),
        "{}",
        text(&out.stderr)
    );
    let out = warrant(home.path(), RUN_EXAMPLE);
    assert_eq!(out.status.code(), Some(121), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the guest must not run");
}
