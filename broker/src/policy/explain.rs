//! The `policy explain` table.

use super::{Decision, Facts, Policies};

pub(super) fn quote_ids(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `policy explain` table: the facts, then one row per request.
pub fn explain_table(facts: &Facts, policies: &Policies, decisions: &[Decision]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "artifact  {} ({}, {} bytes)",
        facts.digest, facts.kind, facts.size_bytes
    );
    let _ = writeln!(out, "from      {}", facts.repository);
    if facts.signers.is_empty() {
        let _ = writeln!(out, "signer    none verified");
    }
    for s in &facts.signers {
        let _ = writeln!(
            out,
            "signer    {} `{}` (issuer `{}`)",
            s.kind, s.identity, s.issuer
        );
    }
    for p in &facts.provenances {
        let _ = writeln!(
            out,
            "built by  `{}` from `{}` at `{}`",
            p.builder_id, p.source_repository, p.source_ref
        );
    }
    let _ = writeln!(
        out,
        "policies  {} loaded, {}",
        policies.len(),
        policies.hash()
    );
    let _ = writeln!(out);
    let width = decisions
        .iter()
        .map(|d| d.request.to_string().len())
        .max()
        .unwrap_or(7)
        .max(7);
    let _ = writeln!(out, "{:<width$}  {:<8}  why", "request", "decision");
    for d in decisions {
        let verdict = if d.allowed { "allow" } else { "deny" };
        let cite = |verb: &str| {
            let ids: Vec<String> = d
                .determining
                .iter()
                .map(|id| match policies.source_of(id) {
                    Some((file, line)) => format!("`{id}` ({}:{line})", file.display()),
                    None => format!("`{id}`"),
                })
                .collect();
            format!("{verb} {}", ids.join(", "))
        };
        let why = if d.allowed {
            cite("permitted by")
        } else if d.errors.is_empty() && !d.determining.is_empty() {
            cite("forbidden by")
        } else {
            d.explanation()
        };
        let _ = writeln!(
            out,
            "{:<width$}  {verdict:<8}  {why}",
            d.request.to_string()
        );
    }
    out
}
