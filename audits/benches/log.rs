//! The audit log's costs. Run with `cargo bench -p audits --bench log`.
//!
//! * `appends`: appends per second on the real disk: an `fdatasync` per record (`append`), and
//!   group commit (`append_deferred` + one `commit`) in batches of 1, 5 and 64; one run's
//!   record sequence in process (pull, verify, decide, instantiate deferred and committed
//!   once, then outcome and the end-of-run checkpoint) on a fresh log.
//! * `verify`: `audits::verify` of a log of `AUDIT_BENCH_RECORDS` records (default 1,000,000)
//!   written as `warrant run` writes it: realistic run records of about 300–600 bytes, a
//!   checkpoint after every run of five with the default cadence of kept checkpoints (one kept
//!   every 1,000 records, the others replacing the head). Also what one checkpoint costs
//!   `verify` (its Ed25519 signature), and `verify` of the same records with a checkpoint
//!   every 1,000 records and no head (the record scan alone, nearly).
//! * `every-kept`: `verify` of the same records with every run's checkpoint kept
//!   (`keep_every` 0: one signature per run, as the log was written before the head).
//! * `open`: `AuditLog::open` of the big log, from the `state` file (fast start) and by a full
//!   scan; one run on it, opened as `warrant run` opens it.
//!
//! `AUDIT_BENCH_ONLY=verify,every-kept` (a comma-separated list of those groups) runs only
//! some of them; all by default.
//!
//! The big logs are built on `/dev/shm` when it exists (building one through the real API
//! costs 400,000 fsyncs on a disk; `AUDIT_BENCH_DIR` names another directory) and kept there
//! between runs, then copied to the disk for the figures that involve syncs.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use audits::{AuditLog, DEFAULT_KEEP_EVERY, SigningKeyMaterial};
use serde_json::{Value, json};

const ORIGIN: &str = "warrant-audit";

/// The median time of `f` over `rounds` rounds of `per_round` calls; the first error stops it.
fn measure(rounds: usize, per_round: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            f()?;
        }
        samples.push(start.elapsed() / u32::try_from(per_round).unwrap_or(1));
    }
    samples.sort();
    Ok(samples.get(samples.len() / 2).copied().unwrap_or_default())
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn key(der: &[u8]) -> Result<SigningKeyMaterial> {
    Ok(SigningKeyMaterial::from_pkcs8(der)?)
}

fn digest(run: u64) -> String {
    format!("sha256:{:064x}", run.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The five records of run `run`, shaped as `warrant run` writes them.
fn run_records(run: u64) -> [(&'static str, Value); 5] {
    let d = digest(run);
    [
        (
            "pull",
            json!({"reference": format!("ghcr.io/acme/plugin-{}:v1.{}", run % 97, run % 13), "digest": d}),
        ),
        (
            "verify",
            json!({"digest": d, "trust": "sha256:5a4b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b",
                   "verified": true, "attestations": [],
                   "verdict": {"digest": d, "rejected": [], "signers": [
                       {"identity": "https://github.com/acme/plugin/.github/workflows/release.yml@refs/tags/v1",
                        "issuer": "https://token.actions.githubusercontent.com", "kind": "keyless"}]}}),
        ),
        (
            "decide",
            json!({"digest": d, "allowed": true, "policyHash": "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
                   "decisions": [
                       {"request": {"action": "instantiate", "resource": "",
                                    "context": {"memoryBytes": 67_108_864, "timeoutMs": 10_000, "fuel": 0}},
                        "allowed": true, "determining": ["acme-plugins-run"], "errors": []},
                       {"request": {"action": "fs.read", "resource": "/srv/data"},
                        "allowed": true, "determining": ["acme-read-data"], "errors": []}]}),
        ),
        (
            "instantiate",
            json!({"digest": d, "policyHash": "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
                   "limits": {"memoryBytes": 67_108_864, "timeoutMs": 10_000, "fuel": null, "outputBytes": 1_048_576},
                   "dirs": [{"host": "/srv/data", "guest": "/data", "writable": false}],
                   "env": ["LANG"], "net": [], "engine": "wasmtime 48.0.8"}),
        ),
        (
            "outcome",
            json!({"digest": d, "outcome": "exit", "detail": 0, "elapsedUs": 1_200 + run % 1_000,
                   "stdoutBytes": 13, "stderrBytes": 0}),
        ),
    ]
}

/// One run as the broker writes it: four records committed with one sync before the effect,
/// then the outcome and the end-of-run checkpoint.
fn write_run(log: &mut AuditLog, run: u64) -> Result<()> {
    let now = SystemTime::now();
    let [pull, verify, decide, instantiate, outcome] = run_records(run);
    for (kind, body) in [pull, verify, decide, instantiate] {
        log.append_deferred(kind, body, now)?;
    }
    log.commit()?;
    log.append_deferred(outcome.0, outcome.1, now)?;
    log.checkpoint()?;
    Ok(())
}

/// Record `n` of the stream of runs.
fn nth_record(n: u64) -> (&'static str, Value) {
    let [a, b, c, d, e] = run_records(n / 5);
    match n % 5 {
        0 => a,
        1 => b,
        2 => c,
        3 => d,
        _ => e,
    }
}

fn scratch(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn copy_log(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to)?;
    for file in [
        audits::LOG_FILE,
        audits::CHECKPOINTS_FILE,
        audits::HEAD_FILE,
        audits::STATE_FILE,
    ] {
        if from.join(file).exists() {
            std::fs::copy(from.join(file), to.join(file))?;
        }
    }
    // Make the copy durable, so that its write-back does not land in the timed syncs.
    for file in [audits::LOG_FILE, audits::CHECKPOINTS_FILE] {
        std::fs::File::open(to.join(file))?.sync_all()?;
    }
    Ok(())
}

/// A log of `records` records written run by run as `warrant run` writes them, with this
/// cadence of kept checkpoints, in `dir`, and one run more (so that with the default cadence,
/// it ends with the head, as such a log usually does): kept between bench runs (with its key)
/// when it was built with the same size and cadence. Returns the key it is signed with.
fn big_log(dir: &Path, records: u64, keep_every: u64, der: &[u8]) -> Result<Vec<u8>> {
    let layout = format!("{records} records and a run, keep_every {keep_every}\n");
    let have = std::fs::read_to_string(dir.join("layout")).ok();
    if let (Some(have), Ok(kept)) = (have, std::fs::read(dir.join("key")))
        && have == layout
    {
        return Ok(kept);
    }
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(dir);
    let (mut log, _) = AuditLog::open(dir, ORIGIN, key(der)?)?;
    log.set_keep_every(keep_every);
    for r in 0..=records / 5 {
        write_run(&mut log, r)?;
    }
    drop(log);
    std::fs::write(dir.join("key"), der)?;
    std::fs::write(dir.join("layout"), layout)?;
    eprintln!(
        "built a log of {records} records and a run (keep_every {keep_every}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(der.to_vec())
}

/// Verifies `dir` 3 times; prints the median with what was checked.
fn verify_row(dir: &Path, public: &[u8; 32], what: &str) -> Result<()> {
    let mut report = None;
    let t = measure(3, 1, || {
        report = Some(black_box(audits::verify(dir, public, ORIGIN)?));
        Ok(())
    })?;
    let report = report.ok_or("verify did not run")?;
    let head = report.head.map_or_else(
        || "no head".to_owned(),
        |h| format!("the head at {}", h.size),
    );
    println!(
        "| `audits::verify`, {} records, {what}: {} kept checkpoints and {head} | {:.2} s | {:.0} records/s |",
        report.size,
        report.checkpoints,
        t.as_secs_f64(),
        report.size as f64 / t.as_secs_f64().max(1e-12)
    );
    Ok(())
}

fn main() -> Result<()> {
    let records: u64 = std::env::var("AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("AUDIT_BENCH_ONLY").ok();
    let group = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|g| g.trim() == name))
    };
    let der = SigningKeyMaterial::generate_pkcs8()?;
    // The disk: beside the build's target directory.
    let disk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/audit-bench");
    let memory = if let Some(dir) = std::env::var_os("AUDIT_BENCH_DIR") {
        PathBuf::from(dir)
    } else if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm/warrant-audit-bench")
    } else {
        disk.clone()
    };
    for dir in [&disk, &memory] {
        std::fs::create_dir_all(dir)?;
    }

    println!("| what | median | |");
    println!("|---|---:|---:|");
    let rate = |what: &str, t: Duration, count: u64| {
        let per = t / u32::try_from(count).unwrap_or(1);
        println!(
            "| {what} | {:.1} µs per record | {:.0} records/s |",
            per.as_secs_f64() * 1e6,
            1.0 / per.as_secs_f64().max(1e-12)
        );
    };

    if group("appends") {
        // Appends with an fsync each, and group commit.
        let dir = scratch(&disk, "appends");
        let (mut log, _) = AuditLog::open(&dir, ORIGIN, key(&der)?)?;
        let mut n = 0u64;
        let per_record = measure(9, 1, || {
            for _ in 0..64 {
                let (kind, body) = nth_record(n);
                log.append(kind, body, SystemTime::now())?;
                n += 1;
            }
            Ok(())
        })?;
        rate("`append`: one fdatasync per record", per_record, 64);
        for batch in [1u64, 5, 64] {
            let commits = (64 / batch).max(1) * 4;
            let t = measure(9, 1, || {
                for _ in 0..commits {
                    for _ in 0..batch {
                        let (kind, body) = nth_record(n);
                        log.append_deferred(kind, body, SystemTime::now())?;
                        n += 1;
                    }
                    log.commit()?;
                }
                Ok(())
            })?;
            rate(
                &format!("group commit (`append_deferred` + `commit`), batches of {batch}"),
                t,
                commits * batch,
            );
        }
        drop(log);

        // One run's records, the log opened as `warrant run` opens it.
        let dir = scratch(&disk, "fresh");
        let mut run = 0u64;
        let fresh = measure(15, 1, || {
            let (mut log, _) = AuditLog::open(&dir, ORIGIN, key(&der)?)?;
            write_run(&mut log, run)?;
            run += 1;
            Ok(())
        })?;
        println!(
            "| one run: `open`, 5 records, 1 commit, checkpoint (a fresh log) | {:.2} ms | |",
            fresh.as_secs_f64() * 1e3
        );
        let (mut log, _) = AuditLog::open(&dir, ORIGIN, key(&der)?)?;
        let mut syncs_before_effect = 0;
        let critical = measure(15, 1, || {
            let before = log.syncs();
            let now = SystemTime::now();
            let [pull, verify, decide, instantiate, _] = run_records(run);
            for (kind, body) in [pull, verify, decide, instantiate] {
                log.append_deferred(kind, body, now)?;
            }
            log.commit()?;
            syncs_before_effect = log.syncs() - before;
            run += 1;
            Ok(())
        })?;
        println!(
            "| one run's critical path: 4 records, {syncs_before_effect} fdatasync | {:.2} ms | |",
            critical.as_secs_f64() * 1e3
        );
        drop(log);
    }

    if !(group("verify") || group("every-kept") || group("open")) {
        return Ok(());
    }
    // The big log, as `warrant run` writes it: a checkpoint per run, the default cadence.
    let big = memory.join("big");
    let der = big_log(&big, records, DEFAULT_KEEP_EVERY, &der)?;
    let public = key(&der)?.public_key();
    let big_records = (records / 5 + 1) * 5;
    let log_bytes = std::fs::metadata(big.join(audits::LOG_FILE))?.len();
    println!(
        "| (the log: {big_records} records, {:.0} MB, {} B/record; in the page cache) | | |",
        log_bytes as f64 / 1e6,
        log_bytes / big_records,
    );

    if group("verify") {
        verify_row(
            &big,
            &public,
            "a checkpoint per run of five (keep_every 1,000)",
        )?;

        // What verify spends per checkpoint: the Ed25519 signature.
        // The first entry: three body lines, a blank line, the signature line.
        let note: String = std::fs::read_to_string(big.join(audits::CHECKPOINTS_FILE))?
            .lines()
            .take(5)
            .map(|l| format!("{l}\n"))
            .collect();
        let per_checkpoint = measure(9, 2_000, || {
            black_box(audits::open_checkpoint(&note, ORIGIN, &public)?);
            Ok(())
        })?;
        println!(
            "| one checkpoint authenticated (`open_checkpoint`: parse, Ed25519 verify) | {:.1} µs | |",
            per_checkpoint.as_secs_f64() * 1e6
        );

        // The same records with a checkpoint every 1,000 records and no head: what the record
        // scan costs.
        let sparse = memory.join("sparse");
        let _ = std::fs::remove_dir_all(&sparse);
        let (mut log, _) = AuditLog::open(&sparse, ORIGIN, key(&der)?)?;
        let now = SystemTime::now();
        for n in 0..records {
            let (kind, body) = nth_record(n);
            log.append_deferred(kind, body, now)?;
            if n % 1_000 == 999 {
                log.checkpoint()?;
            }
        }
        log.commit()?;
        drop(log);
        verify_row(&sparse, &public, "a checkpoint every 1,000")?;
        let _ = std::fs::remove_dir_all(&sparse);
    }

    if group("every-kept") {
        // The same runs with every checkpoint kept: one signature per run for verify.
        let every = memory.join("every-kept");
        let der = big_log(&every, records, 0, &der)?;
        verify_row(
            &every,
            &key(&der)?.public_key(),
            "a checkpoint per run of five, every one kept (keep_every 0)",
        )?;
    }

    if !group("open") {
        return Ok(());
    }
    let fast = measure(9, 1, || {
        let (log, _) = AuditLog::open(&big, ORIGIN, key(&der)?)?;
        if log.started_from() == 0 {
            return Err("the state file was not used".into());
        }
        black_box(log.size());
        Ok(())
    })?;
    println!(
        "| `AuditLog::open`, {big_records} records, from the `state` file | {:.3} ms | |",
        fast.as_secs_f64() * 1e3
    );
    let state = std::fs::read(big.join(audits::STATE_FILE))?;
    let full = measure(3, 1, || {
        // A full scan writes the state again: remove it each time.
        std::fs::remove_file(big.join(audits::STATE_FILE))?;
        let (log, _) = AuditLog::open(&big, ORIGIN, key(&der)?)?;
        black_box(log.size());
        Ok(())
    })?;
    std::fs::write(big.join(audits::STATE_FILE), state)?;
    println!(
        "| `AuditLog::open`, {big_records} records, full scan (no `state` file) | {:.2} s | |",
        full.as_secs_f64()
    );

    // One run on the big log, on the disk.
    let on_disk = disk.join("big");
    copy_log(&big, &on_disk)?;
    let mut r = records / 5 + 1;
    let big_run = measure(15, 1, || {
        let (mut log, _) = AuditLog::open(&on_disk, ORIGIN, key(&der)?)?;
        if log.started_from() == 0 {
            return Err("the state file was not used".into());
        }
        write_run(&mut log, r)?;
        r += 1;
        Ok(())
    })?;
    println!(
        "| one run: `open`, 5 records, 1 commit, checkpoint (a log of {big_records} records) | {:.2} ms | |",
        big_run.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&on_disk);
    Ok(())
}
