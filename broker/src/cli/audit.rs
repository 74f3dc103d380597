//! `warrant audit`: verify the audit log, show it, prove records, print its verifier key.

use std::io::{IsTerminal, Write};
use std::path::Path;

use serde_json::json;

use super::AuditCommand;
use super::context::Context;
use super::error::CliError;
use super::read_input;
use super::render::print_json;
use crate::exit::Exit;

/// `warrant audit verify|key|show|prove|verify-proof`.
pub(super) fn audit(ctx: &Context, command: AuditCommand) -> Result<Exit, CliError> {
    let (dir, key_path) = ctx.audit_paths();
    let public = match &command {
        AuditCommand::Verify {
            key: Some(path), ..
        }
        | AuditCommand::Show {
            key: Some(path), ..
        }
        | AuditCommand::VerifyProof { key: path, .. } => read_verifier_key(path)?,
        _ => crate::audit::load_key(&key_path)?.public_key(),
    };
    match command {
        AuditCommand::Show {
            digest,
            since,
            json,
            ..
        } => audit_show(&dir, &public, digest.as_deref(), since.as_deref(), json),
        AuditCommand::Prove {
            index,
            from,
            from_checkpoint,
            to,
            out,
        } => {
            let what = match (index, from, from_checkpoint) {
                (Some(index), ..) => Ok(ProofAsked::Inclusion(index)),
                (None, Some(from), None) => to
                    .map(|to| ProofAsked::Between(from, to))
                    .ok_or_else(|| CliError::Usage("`--from M` needs `--to N`".into())),
                (None, None, Some(file)) => {
                    saved_checkpoint(&file).map(|note| ProofAsked::Since(note, to))
                }
                _ => Err(CliError::Usage(
                    "give `--index N`, `--from M --to N`, or `--from-checkpoint FILE`".into(),
                )),
            }?;
            audit_prove(&dir, &public, what, out.as_deref())
        }
        AuditCommand::VerifyProof { file, json, .. } => audit_verify_proof(&file, &public, json),
        AuditCommand::Key => {
            outln!("{}", audits::verifier_key(crate::audit::ORIGIN, &public));
            Ok(Exit::Success)
        }
        AuditCommand::Verify { json, .. } => {
            match audits::verify(&dir, &public, crate::audit::ORIGIN) {
                Ok(report) => {
                    if json {
                        print_json(&json!({
                            "log": dir.display().to_string(),
                            "intact": true,
                            "records": report.size,
                            "checkpoints": report.checkpoints,
                            "headSize": report.head.as_ref().map(|h| h.size),
                            "root": hex::encode(report.root),
                            "unprovenRecords": report.unproven_records,
                        }));
                    } else {
                        outln!(
                            "{}: intact: {} records, {} kept checkpoints{}, root {}{}",
                            dir.display(),
                            report.size,
                            report.checkpoints,
                            report.head.as_ref().map_or_else(String::new, |h| format!(
                                " and the head checkpoint at size {}",
                                h.size
                            )),
                            hex::encode(report.root),
                            if report.unproven_records > 0 {
                                format!(
                                    " ({} records after the last checkpoint)",
                                    report.unproven_records
                                )
                            } else {
                                String::new()
                            }
                        );
                    }
                    Ok(Exit::Success)
                }
                Err(failure) => {
                    if json {
                        print_json(&json!({
                            "log": dir.display().to_string(),
                            "intact": false,
                            "failure": failure.to_string(),
                        }));
                    }
                    errln!(
                        "warrant: error: audit log `{}` fails verification: {failure}",
                        dir.display()
                    );
                    Ok(Exit::Verification)
                }
            }
        }
    }
}

/// A verifier key file, as `warrant audit key` prints it.
fn read_verifier_key(path: &Path) -> Result<[u8; 32], CliError> {
    use std::io::Read as _;
    let input = |source| CliError::Input {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(input)?
        .take(4096)
        .read_to_string(&mut text)
        .map_err(input)?;
    crate::audit::parse_verifier_key(&text)
        .map_err(|e| CliError::Usage(format!("`{}`: {e}", path.display())))
}

/// `warrant audit show`: the proven records, filtered, as a timeline or as JSON lines.
fn audit_show(
    dir: &Path,
    public: &[u8; 32],
    digest: Option<&str>,
    since: Option<&str>,
    json: bool,
) -> Result<Exit, CliError> {
    let since = since
        .map(|text| crate::audit::parse_since(text, std::time::SystemTime::now()))
        .transpose()
        .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
    let terminal = std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout().lock();
    let mut closed = false;
    let result = audits::read_proven(dir, public, crate::audit::ORIGIN, &mut |record, line| {
        if closed
            || digest.is_some_and(|d| !crate::audit::about_digest(&record, d))
            || since.is_some_and(|t| record.system_time().is_none_or(|rt| rt < t))
        {
            return;
        }
        let written = if json && terminal {
            // The record's value, with any control or bidirectional character in it escaped.
            let text = String::from_utf8_lossy(line);
            writeln!(stdout, "{}", registry_client::text::json(&text))
        } else if json {
            // The records themselves, byte for byte, for a program to read.
            stdout
                .write_all(line)
                .and_then(|()| stdout.write_all(b"\n"))
        } else {
            let line = crate::audit::timeline_line(&record);
            writeln!(stdout, "{}", registry_client::text::for_terminal(&line))
        };
        // A closed pipe (`| head`) ends the output, not the check.
        closed = written.is_err();
    });
    let _ = stdout.flush();
    match result {
        Ok(_) => Ok(Exit::Success),
        Err(failure) => {
            errln!(
                "warrant: error: audit log `{}` fails verification: {failure}; only the records proven before it were shown",
                dir.display()
            );
            Ok(Exit::Verification)
        }
    }
}

/// `warrant audit prove`: an inclusion or a consistency proof, as JSON.
/// What `warrant audit prove` is asked to prove.
enum ProofAsked {
    /// Record N is in the log.
    Inclusion(u64),
    /// The log at checkpoint size N extends the log at checkpoint size M.
    Between(u64, u64),
    /// The log (at checkpoint size N, or its newest) extends a checkpoint kept elsewhere.
    Since(String, Option<u64>),
}

/// A checkpoint note from `file`: the note itself, or the newest checkpoint of a proof file
/// (`newCheckpoint` of a consistency proof, `checkpoint` of an inclusion proof).
fn saved_checkpoint(file: &Path) -> Result<String, CliError> {
    let bytes = read_input(file, audits::proof::MAX_PROOF_BYTES as u64)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("`{}` is not UTF-8 text", file.display())))?;
    let from_proof = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            ["newCheckpoint", "checkpoint"].iter().find_map(|k| {
                v.get(*k)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            })
        });
    Ok(from_proof.unwrap_or_else(|| text.strip_suffix('\n').unwrap_or(&text).to_owned()))
}

fn audit_prove(
    dir: &Path,
    public: &[u8; 32],
    asked: ProofAsked,
    out: Option<&Path>,
) -> Result<Exit, CliError> {
    let origin = crate::audit::ORIGIN;
    let made = match asked {
        ProofAsked::Inclusion(index) => {
            audits::prove_inclusion(dir, public, origin, index).map(|p| {
                let what = format!(
                    "inclusion proof of record {index} against the checkpoint of size {}",
                    p.tree_size
                );
                (serde_json::to_value(p), what)
            })
        }
        ProofAsked::Between(from, to) => audits::prove_consistency(dir, public, origin, from, to)
            .map(|p| {
                let what = format!("consistency proof from size {from} to size {to}");
                (serde_json::to_value(p), what)
            }),
        ProofAsked::Since(note, to) => {
            audits::prove_consistency_from(dir, public, origin, &note, to).map(|p| {
                let what = format!(
                    "consistency proof from the checkpoint given (size {}) to size {}",
                    p.old_size, p.new_size
                );
                (serde_json::to_value(p), what)
            })
        }
    };
    let (value, what) = match made {
        Ok((Ok(value), what)) => (value, what),
        Ok((Err(e), _)) => {
            return Err(CliError::Usage(format!("cannot write the proof: {e}")));
        }
        Err(audits::ProveError::Log(failure)) => {
            errln!(
                "warrant: error: audit log `{}` fails verification: {failure}",
                dir.display()
            );
            return Ok(Exit::Verification);
        }
        Err(e @ (audits::ProveError::Rewritten { .. } | audits::ProveError::BeyondLog { .. })) => {
            errln!("warrant: error: audit log `{}`: {e}", dir.display());
            return Ok(Exit::Verification);
        }
        Err(e) => return Err(CliError::Usage(e.to_string())),
    };
    let mut text = serde_json::to_string_pretty(&value)
        .map_err(|e| CliError::Usage(format!("cannot write the proof: {e}")))?;
    text.push('\n');
    match out {
        Some(path) => {
            std::fs::write(path, text).map_err(|source| CliError::Input {
                path: path.to_owned(),
                source,
            })?;
            errln!("wrote the {what} to `{}`", path.display());
        }
        // The same JSON, with any control or bidirectional character escaped.
        None => print!("{}", registry_client::text::json(&text)),
    }
    Ok(Exit::Success)
}

/// `warrant audit verify-proof`: check a proof with the verifier key alone.
fn audit_verify_proof(file: &Path, public: &[u8; 32], json: bool) -> Result<Exit, CliError> {
    let input = |source| CliError::Input {
        path: file.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(file).map_err(input)?,
            audits::proof::MAX_PROOF_BYTES as u64 + 1,
        ),
        &mut bytes,
    )
    .map_err(input)?;
    let key_id = hex::encode(audits::key_id(crate::audit::ORIGIN, public));
    match audits::verify_proof(&bytes, crate::audit::ORIGIN, public) {
        Ok(audits::Proven::Inclusion { record, checkpoint }) => {
            if json {
                print_json(&json!({
                    "verified": true,
                    "type": "inclusion",
                    "index": record.index,
                    "treeSize": checkpoint.size,
                    "root": hex::encode(checkpoint.root),
                    "keyId": key_id,
                    "record": {
                        "index": record.index, "time": record.time, "kind": record.kind,
                        "body": record.body,
                    },
                }));
            } else {
                outln!(
                    "verified: record {} is in the log `{}` of {} records, root {}, checkpoint signed by key {key_id}",
                    record.index,
                    checkpoint.origin,
                    checkpoint.size,
                    hex::encode(checkpoint.root)
                );
                outln!("{}", crate::audit::timeline_line(&record));
            }
            Ok(Exit::Success)
        }
        Ok(audits::Proven::Consistency { old, new }) => {
            if json {
                print_json(&json!({
                    "verified": true,
                    "type": "consistency",
                    "oldSize": old.size,
                    "oldRoot": hex::encode(old.root),
                    "newSize": new.size,
                    "newRoot": hex::encode(new.root),
                    "keyId": key_id,
                }));
            } else {
                outln!(
                    "verified: the log `{}` of {} records (root {}) extends its log of {} records (root {}); both checkpoints signed by key {key_id}",
                    new.origin,
                    new.size,
                    hex::encode(new.root),
                    old.size,
                    hex::encode(old.root)
                );
            }
            Ok(Exit::Success)
        }
        Err(failure) => {
            if json {
                print_json(&json!({"verified": false, "failure": failure.to_string()}));
            }
            errln!(
                "warrant: error: proof `{}` refused: {failure}",
                file.display()
            );
            Ok(Exit::Verification)
        }
    }
}
