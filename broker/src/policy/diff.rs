//! `warrant policy diff`: where a policy set and an artifact disagree — what the set denies of
//! what the run asks, and what it grants that the artifact cannot use or the run did not ask
//! for.
//!
//! A policy set's grants cannot be listed in general (a condition can permit any path), so
//! they are found by asking: each request the run makes, each resource a `permit` names in its
//! scope (`resource == Warrant::Dir::"/srv"`, `resource in …`) for the actions that resource
//! goes with, and `instantiate` without a memory bound and without a time bound. Resources
//! named only inside conditions are not probed.

use serde::Serialize;

use super::{Decision, Facts, Policies, Request};
use crate::uses::{Capability, Uses};

/// How a request's decision and the artifact's imports compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Asked, allowed, and the artifact can use it.
    Agrees,
    /// Asked, and denied: the run would be refused.
    Denied,
    /// Allowed, and the artifact imports nothing that could use it.
    Unusable,
    /// Allowed, usable, and not asked for by this run.
    Unasked,
    /// `instantiate` allowed with no bound on memory or time.
    Unbounded,
}

impl Finding {
    /// How the finding reads in the table.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Agrees => "ok",
            Self::Denied => "the run asks for it and the policies deny it",
            Self::Unusable => "granted, and the artifact cannot use it",
            Self::Unasked => "granted beyond what the run asks",
            Self::Unbounded => "granted with no bound",
        }
    }
}

/// One row of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The request asked or probed.
    pub request: Request,
    /// Whether the run asks for it.
    pub asked: bool,
    /// The decision.
    pub decision: Decision,
    /// The capability it needs, and whether the artifact imports it (`None`: instantiate).
    pub needs: Option<(Capability, bool)>,
    /// What the comparison found.
    pub finding: Finding,
}

/// The capability a request needs, if any.
pub(super) fn needs(request: &Request) -> Option<Capability> {
    match request {
        Request::Instantiate { .. } => None,
        Request::FsRead(_) | Request::FsWrite(_) => Some(Capability::Filesystem),
        Request::EnvRead(_) => Some(Capability::Environment),
        Request::NetConnect(_) => Some(Capability::Sockets),
        Request::HttpOutgoing(_) => Some(Capability::HttpOutgoing),
    }
}

/// Compare `policies` with the artifact of `facts`, which imports `uses`, for the run's
/// `requests` (`instantiate` first). Every row is returned, agreeing ones included.
pub fn diff(policies: &Policies, facts: &Facts, uses: &Uses, requests: &[Request]) -> Vec<Row> {
    let mut rows = Vec::new();
    for request in requests {
        let decision = policies.evaluate(facts, request);
        let needs = needs(request).map(|c| (c, uses.can(c)));
        let finding = match (decision.allowed, needs) {
            (false, _) => Finding::Denied,
            (true, Some((_, false))) => Finding::Unusable,
            (true, _) => Finding::Agrees,
        };
        rows.push(Row {
            request: request.clone(),
            asked: true,
            decision,
            needs,
            finding,
        });
    }
    // `instantiate` with each limit lifted in turn.
    if let Some(Request::Instantiate {
        memory_bytes,
        timeout_ms,
        fuel,
        runtime,
    }) = requests.first()
    {
        for (memory_bytes, timeout_ms) in [(u64::MAX, *timeout_ms), (*memory_bytes, u64::MAX)] {
            let probe = Request::Instantiate {
                memory_bytes,
                timeout_ms,
                fuel: *fuel,
                runtime: runtime.clone(),
            };
            let decision = policies.evaluate(facts, &probe);
            if decision.allowed {
                rows.push(Row {
                    request: probe,
                    asked: false,
                    decision,
                    needs: None,
                    finding: Finding::Unbounded,
                });
            }
        }
    }
    for probe in policies.probes() {
        if requests.contains(&probe) {
            continue;
        }
        let decision = policies.evaluate(facts, &probe);
        if !decision.allowed {
            continue;
        }
        let needs = needs(&probe).map(|c| (c, uses.can(c)));
        let finding = match needs {
            Some((_, false)) => Finding::Unusable,
            _ => Finding::Unasked,
        };
        rows.push(Row {
            request: probe,
            asked: false,
            decision,
            needs,
            finding,
        });
    }
    rows
}

/// The rows as a table, one line each.
pub fn diff_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.request.to_string(),
                if r.asked { "yes" } else { "no" }.to_owned(),
                if r.decision.allowed { "allow" } else { "deny" }.to_owned(),
                match r.needs {
                    None => "-".to_owned(),
                    Some((c, true)) => format!("imports {}", c.noun()),
                    Some((c, false)) => format!("imports no {}", c.noun()),
                },
                match r.finding {
                    Finding::Denied => {
                        format!("{}: {}", r.finding.describe(), r.decision.explanation())
                    }
                    other => other.describe().to_owned(),
                },
            ]
        })
        .collect();
    let header = ["request", "asked", "decision", "artifact", "finding"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
