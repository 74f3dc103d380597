//! Screens: what can be said about a policy from the facts alone, without Cedar's interpreter.
//!
//! Cedar evaluates a policy as one conjunction, left to right: its principal scope, its action
//! scope, its resource scope, then each `when` body and the negation of each `unless` body, in
//! the order written, with `&&` short-circuiting. A screen is the longest prefix of that
//! conjunction made of *simple tests*: comparisons of the artifact's, the signer's, the
//! provenance's or the context's attributes with literals, `like` patterns, `principal in`
//! an entity literal, `has`, and their negations (the action scope, and a resource scope of
//! `==` or `in`, are already settled by the index that chose the policy). A simple test
//! either evaluates exactly as Cedar would, without an error, or says it cannot tell.
//!
//! So, for one evaluation:
//! - a simple test that is false, after simple tests that were all true, means the policy is
//!   not satisfied and has no error (`&&` never reaches the rest): Cedar is not asked;
//! - when the whole condition is simple and every test is true, the policy is satisfied and
//!   has no error: Cedar is not asked either;
//! - anything else (a test that cannot tell, a condition that goes on past the simple prefix)
//!   is Cedar's to evaluate.
//!
//! The screen is hand-written, so it is checked against Cedar: the policy module's tests
//! compare the screened evaluation with plain Cedar over generated policy sets, facts and
//! requests, including every kind of test, negated, at its boundaries.

use std::collections::BTreeMap;

use cedar_policy::{EntityTypeName, EntityUid, Policy, PrincipalConstraint, ResourceConstraint};
use serde_json::Value;

use super::model::{to_long, type_name, uid};
use super::{Facts, Request};
use crate::attest::Provenance;
use crate::verify::Signer;

/// What a screen says about one evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not satisfied, without an error.
    Refuted,
    /// Satisfied, without an error.
    Holds,
    /// Cedar must evaluate it.
    Ask,
}

/// One evaluation's inputs, as the tests read them.
pub(super) struct View<'a> {
    pub(super) facts: &'a Facts,
    pub(super) digest: &'a str,
    pub(super) signer: &'a Signer,
    /// The provenance of this evaluation (each is evaluated in turn), if the artifact has any.
    pub(super) provenance: Option<&'a Provenance>,
    pub(super) request: &'a Request,
    pub(super) artifact: &'a EntityUid,
    pub(super) repository: &'a EntityUid,
    pub(super) registry: &'a EntityUid,
}

/// The screen of one policy.
#[derive(Clone, Debug, Default)]
pub(super) struct Screen {
    tests: Vec<Test>,
    /// The tests are the whole condition (given the scope the index checked).
    complete: bool,
}

impl Screen {
    /// The screen of `policy`, read from its scope and its JSON form (`json`), for the index
    /// that offers a policy only to requests its action and resource scope admit (a resource
    /// scope of `is` is left to the screen).
    pub(super) fn of(policy: &Policy, json: Option<&Value>) -> Self {
        let mut tests = Vec::new();
        let mut complete = true;
        match policy.principal_constraint() {
            PrincipalConstraint::Any => {}
            PrincipalConstraint::Eq(u) => tests.push(Test::new(Kind::PrincipalEq(u))),
            PrincipalConstraint::In(u) => tests.push(Test::new(Kind::PrincipalIn(u))),
            PrincipalConstraint::Is(t) => tests.push(Test::new(Kind::PrincipalIs(t))),
            PrincipalConstraint::IsIn(t, u) => {
                tests.push(Test::new(Kind::PrincipalIs(t)));
                tests.push(Test::new(Kind::PrincipalIn(u)));
            }
        }
        match policy.resource_constraint() {
            // Settled by the index (`==` and `in` are how it files policies).
            ResourceConstraint::Any | ResourceConstraint::Eq(_) | ResourceConstraint::In(_) => {}
            ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => {
                tests.push(Test::new(Kind::ResourceIs(t)));
            }
        }
        let conditions = match json.and_then(|json| json.get("conditions")) {
            Some(Value::Array(conditions)) => conditions,
            Some(_) | None => {
                return Self {
                    tests,
                    complete: false,
                };
            }
        };
        'conditions: for condition in conditions {
            let body = condition.get("body");
            let leaves = match condition.get("kind").and_then(Value::as_str) {
                Some("when") => {
                    let mut leaves = Vec::new();
                    if let Some(body) = body {
                        conjuncts(body, &mut leaves);
                    }
                    leaves
                        .into_iter()
                        .map(Test::parse)
                        .collect::<Vec<Option<Test>>>()
                }
                // `unless { e }` is `!e`: simple when `e` is one simple test.
                Some("unless") => vec![body.and_then(Test::parse).map(Test::negated)],
                _ => vec![None],
            };
            for leaf in leaves {
                match leaf {
                    Some(test) => tests.push(test),
                    None => {
                        complete = false;
                        break 'conditions;
                    }
                }
            }
        }
        Self { tests, complete }
    }

    /// What the screen says for `view`.
    pub(super) fn check(&self, view: &View<'_>) -> Verdict {
        for test in &self.tests {
            match test.eval(view) {
                Some(true) => {}
                Some(false) => return Verdict::Refuted,
                None => return Verdict::Ask,
            }
        }
        if self.complete {
            Verdict::Holds
        } else {
            Verdict::Ask
        }
    }

    /// How many simple tests lead the condition, and whether they are all of it.
    #[cfg(test)]
    pub(super) fn shape(&self) -> (usize, bool) {
        (self.tests.len(), self.complete)
    }
}

/// The leaves of a left-to-right `&&` chain, in evaluation order.
fn conjuncts<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
    match expr.get("&&") {
        Some(and) => match (and.get("left"), and.get("right")) {
            (Some(left), Some(right)) => {
                conjuncts(left, out);
                conjuncts(right, out);
            }
            _ => out.push(expr),
        },
        None => out.push(expr),
    }
}

/// A simple test, possibly negated.
#[derive(Clone, Debug)]
struct Test {
    kind: Kind,
    negated: bool,
}

#[derive(Clone, Debug)]
enum Kind {
    /// A string attribute compared with a literal.
    TextEq(Text, String),
    /// `[literals].contains(attribute)`, for a string attribute.
    TextIn(Text, Vec<String>),
    /// A signer record compared with a record literal of strings.
    SignerEq(Whose, BTreeMap<String, String>),
    /// A string attribute against a `like` pattern.
    Like(Text, Pattern),
    /// A `Long` attribute compared with a literal.
    Number(Number, Cmp, i64),
    /// `principal == E`.
    PrincipalEq(EntityUid),
    /// `principal in E`.
    PrincipalIn(EntityUid),
    /// `principal is T`.
    PrincipalIs(EntityTypeName),
    /// `resource is T`.
    ResourceIs(EntityTypeName),
    /// `principal has provenance`.
    HasProvenance,
    /// `context has NAME`.
    ContextHas(String),
    /// A `has` that always holds (a required attribute), or a boolean literal.
    Constant(bool),
}

/// The string attributes a simple test reads.
#[derive(Clone, Copy, Debug)]
enum Text {
    Digest,
    Kind,
    Repository,
    SignerKind,
    SignerIdentity,
    SignerIssuer,
    PredicateType,
    BuilderId,
    SourceRepository,
    SourceRef,
    ProvenanceSignerKind,
    ProvenanceSignerIdentity,
    ProvenanceSignerIssuer,
}

/// Whose signer record a test reads.
#[derive(Clone, Copy, Debug)]
enum Whose {
    /// `principal.signer`.
    Artifact,
    /// `principal.provenance.signer`.
    Provenance,
}

/// The `Long` attributes a simple test reads.
#[derive(Clone, Copy, Debug)]
enum Number {
    SizeBytes,
    MemoryBytes,
    TimeoutMs,
    Fuel,
}

#[derive(Clone, Copy, Debug)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A `like` pattern as the literal runs between its wildcards.
#[derive(Clone, Debug)]
struct Pattern {
    /// The runs; a pattern with `n` wildcards has `n + 1` (some possibly empty).
    runs: Vec<String>,
}

impl Pattern {
    fn parse(elements: &[Value]) -> Option<Self> {
        let mut runs = vec![String::new()];
        for element in elements {
            match element {
                Value::String(w) if w == "Wildcard" => runs.push(String::new()),
                Value::Object(map) => {
                    let literal = map.get("Literal").and_then(Value::as_str)?;
                    runs.last_mut()?.push_str(literal);
                }
                _ => return None,
            }
        }
        Some(Self { runs })
    }

    /// Whether the whole of `text` matches: the first run is a prefix, the last a suffix,
    /// and the others appear in order between them (leftmost matches are never worse).
    fn matches(&self, text: &str) -> bool {
        let Some((first, rest)) = self.runs.split_first() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        for run in middle {
            match remaining.find(run.as_str()) {
                Some(at) => match remaining.get(at.saturating_add(run.len())..) {
                    Some(after) => remaining = after,
                    None => return false,
                },
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

impl Test {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            negated: false,
        }
    }

    fn negated(self) -> Self {
        Self {
            negated: !self.negated,
            ..self
        }
    }

    /// A simple test from one leaf of a condition's JSON form, if it is one.
    fn parse(expr: &Value) -> Option<Self> {
        let Value::Object(map) = expr else {
            return None;
        };
        let (op, operands) = map.iter().next().filter(|_| map.len() == 1)?;
        let left = || operands.get("left");
        let right = || operands.get("right");
        let kind = match op.as_str() {
            "!" => return Self::parse(operands.get("arg")?).map(Self::negated),
            "==" | "!=" => {
                let negated = op == "!=";
                if let Some(Value::Object(record)) = right()?.get("Record") {
                    let fields = record
                        .iter()
                        .map(|(k, v)| Some((k.clone(), v.get("Value")?.as_str()?.to_owned())))
                        .collect::<Option<BTreeMap<_, _>>>()?;
                    let test = Self::new(Kind::SignerEq(whose(left()?)?, fields));
                    return Some(if negated { test.negated() } else { test });
                }
                let literal = right()?.get("Value")?;
                let test = match literal {
                    Value::String(s) => Self::new(Kind::TextEq(text(left()?)?, s.clone())),
                    Value::Number(n) => {
                        Self::new(Kind::Number(number(left()?)?, Cmp::Eq, n.as_i64()?))
                    }
                    _ => return None,
                };
                return Some(if negated { test.negated() } else { test });
            }
            "<" | "<=" | ">" | ">=" => {
                let cmp = match op.as_str() {
                    "<" => Cmp::Lt,
                    "<=" => Cmp::Le,
                    ">" => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let literal = right()?.get("Value")?.as_i64()?;
                Kind::Number(number(left()?)?, cmp, literal)
            }
            "contains" => {
                let Value::Array(elements) = left()?.get("Set")? else {
                    return None;
                };
                let literals = elements
                    .iter()
                    .map(|e| e.get("Value")?.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?;
                Kind::TextIn(text(right()?)?, literals)
            }
            "like" => {
                let Value::Array(elements) = operands.get("pattern")? else {
                    return None;
                };
                Kind::Like(text(left()?)?, Pattern::parse(elements)?)
            }
            "in" => {
                if !is_var(left()?, "principal") {
                    return None;
                }
                Kind::PrincipalIn(entity_literal(right()?)?)
            }
            "has" => {
                let attr = operands.get("attr")?.as_str()?;
                let on = left()?;
                if is_var(on, "principal") {
                    match attr {
                        "provenance" => Kind::HasProvenance,
                        "digest" | "kind" | "repository" | "sizeBytes" | "signer" | "signers"
                        | "approvals" => Kind::Constant(true),
                        _ => return None,
                    }
                } else if is_var(on, "context") {
                    Kind::ContextHas(attr.to_owned())
                } else {
                    return None;
                }
            }
            "Value" => Kind::Constant(operands.as_bool()?),
            _ => return None,
        };
        Some(Self::new(kind))
    }

    /// The test's value for `view`, or `None` when it cannot tell without Cedar.
    fn eval(&self, view: &View<'_>) -> Option<bool> {
        let value = match &self.kind {
            Kind::TextEq(attr, literal) => attr.read(view)? == literal,
            Kind::TextIn(attr, literals) => {
                let value = attr.read(view)?;
                literals.iter().any(|l| l == value)
            }
            Kind::SignerEq(whose, fields) => {
                let signer = match whose {
                    Whose::Artifact => view.signer,
                    Whose::Provenance => &view.provenance?.signer,
                };
                // Records are equal when their fields are: the same names, equal values.
                fields.len() == 3
                    && fields.get("kind").map(String::as_str) == Some(signer.kind.as_str())
                    && fields.get("identity") == Some(&signer.identity)
                    && fields.get("issuer") == Some(&signer.issuer)
            }
            Kind::Like(attr, pattern) => pattern.matches(attr.read(view)?),
            Kind::Number(attr, cmp, literal) => {
                let value = attr.read(view)?;
                match cmp {
                    Cmp::Eq => value == *literal,
                    Cmp::Lt => value < *literal,
                    Cmp::Le => value <= *literal,
                    Cmp::Gt => value > *literal,
                    Cmp::Ge => value >= *literal,
                }
            }
            Kind::PrincipalEq(u) => u == view.artifact,
            // The artifact is in its repository, which is in its registry (and nothing else).
            Kind::PrincipalIn(u) => {
                u == view.artifact || u == view.repository || u == view.registry
            }
            Kind::PrincipalIs(t) => view.artifact.type_name() == t,
            Kind::ResourceIs(t) => &resource_type(view.request)? == t,
            Kind::HasProvenance => view.provenance.is_some(),
            Kind::ContextHas(name) => context_has(view.request, name)?,
            Kind::Constant(b) => *b,
        };
        Some(value != self.negated)
    }
}

impl Text {
    fn read<'a>(self, view: &View<'a>) -> Option<&'a str> {
        let provenance = || view.provenance;
        Some(match self {
            Self::Digest => view.digest,
            Self::Kind => &view.facts.kind,
            Self::Repository => &view.facts.repository,
            Self::SignerKind => view.signer.kind.as_str(),
            Self::SignerIdentity => &view.signer.identity,
            Self::SignerIssuer => &view.signer.issuer,
            // Without a provenance, Cedar errors here: it must be the one to say so.
            Self::PredicateType => &provenance()?.predicate_type,
            Self::BuilderId => &provenance()?.builder_id,
            Self::SourceRepository => &provenance()?.source_repository,
            Self::SourceRef => &provenance()?.source_ref,
            Self::ProvenanceSignerKind => provenance()?.signer.kind.as_str(),
            Self::ProvenanceSignerIdentity => &provenance()?.signer.identity,
            Self::ProvenanceSignerIssuer => &provenance()?.signer.issuer,
        })
    }
}

impl Number {
    fn read(self, view: &View<'_>) -> Option<i64> {
        match self {
            Self::SizeBytes => Some(to_long(view.facts.size_bytes)),
            Self::MemoryBytes => context_number(view.request, "memoryBytes"),
            Self::TimeoutMs => context_number(view.request, "timeoutMs"),
            Self::Fuel => context_number(view.request, "fuel"),
        }
    }
}

/// Whether the request's context has `name`; `None` for a name the screen does not know, which
/// Cedar then answers. (Screening `context has pod` as false once made a `forbid` on a pod's
/// name never apply.)
fn context_has(request: &Request, name: &str) -> Option<bool> {
    match request {
        Request::Instantiate { fuel, runtime, .. } => match name {
            "memoryBytes" | "timeoutMs" => Some(true),
            "fuel" => Some(fuel.is_some()),
            "pod" => Some(matches!(runtime, super::Runtime::Pod { .. })),
            _ => None,
        },
        _ => Some(false),
    }
}

/// A `Long` of the request's context (only `instantiate` has one).
fn context_number(request: &Request, name: &str) -> Option<i64> {
    match request {
        Request::Instantiate {
            memory_bytes,
            timeout_ms,
            fuel,
            ..
        } => match name {
            "memoryBytes" => Some(to_long(*memory_bytes)),
            "timeoutMs" => Some(to_long(*timeout_ms)),
            "fuel" => fuel.map(to_long),
            _ => None,
        },
        _ => None,
    }
}

/// The entity type of the request's resource.
fn resource_type(request: &Request) -> Option<EntityTypeName> {
    type_name(match request {
        Request::Instantiate { .. } => "Runtime",
        Request::FsRead(_) | Request::FsWrite(_) => "Dir",
        Request::EnvRead(_) => "EnvVar",
        Request::NetConnect(_) | Request::HttpOutgoing(_) => "Host",
    })
    .ok()
}

fn is_var(expr: &Value, name: &str) -> bool {
    expr.get("Var").and_then(Value::as_str) == Some(name)
}

/// `{".": {"left": L, "attr": A}}` as (L, A).
fn access(expr: &Value) -> Option<(&Value, &str)> {
    let dot = expr.get(".")?;
    Some((dot.get("left")?, dot.get("attr")?.as_str()?))
}

/// The string attribute `expr` reads, if it is one a simple test knows.
fn text(expr: &Value) -> Option<Text> {
    let (on, attr) = access(expr)?;
    if is_var(on, "principal") {
        return match attr {
            "digest" => Some(Text::Digest),
            "kind" => Some(Text::Kind),
            "repository" => Some(Text::Repository),
            _ => None,
        };
    }
    let (inner, record) = access(on)?;
    if is_var(inner, "principal") {
        return match (record, attr) {
            ("signer", "kind") => Some(Text::SignerKind),
            ("signer", "identity") => Some(Text::SignerIdentity),
            ("signer", "issuer") => Some(Text::SignerIssuer),
            ("provenance", "predicateType") => Some(Text::PredicateType),
            ("provenance", "builderId") => Some(Text::BuilderId),
            ("provenance", "sourceRepository") => Some(Text::SourceRepository),
            ("provenance", "sourceRef") => Some(Text::SourceRef),
            _ => None,
        };
    }
    let (principal, provenance) = access(inner)?;
    if !is_var(principal, "principal") || provenance != "provenance" || record != "signer" {
        return None;
    }
    match attr {
        "kind" => Some(Text::ProvenanceSignerKind),
        "identity" => Some(Text::ProvenanceSignerIdentity),
        "issuer" => Some(Text::ProvenanceSignerIssuer),
        _ => None,
    }
}

/// The signer record `expr` reads, if it is one.
fn whose(expr: &Value) -> Option<Whose> {
    let (on, attr) = access(expr)?;
    if attr != "signer" {
        return None;
    }
    if is_var(on, "principal") {
        return Some(Whose::Artifact);
    }
    let (principal, provenance) = access(on)?;
    (is_var(principal, "principal") && provenance == "provenance").then_some(Whose::Provenance)
}

/// The `Long` attribute `expr` reads, if it is one a simple test knows.
fn number(expr: &Value) -> Option<Number> {
    let (on, attr) = access(expr)?;
    if is_var(on, "principal") && attr == "sizeBytes" {
        return Some(Number::SizeBytes);
    }
    if !is_var(on, "context") {
        return None;
    }
    match attr {
        "memoryBytes" => Some(Number::MemoryBytes),
        "timeoutMs" => Some(Number::TimeoutMs),
        "fuel" => Some(Number::Fuel),
        _ => None,
    }
}

/// `{"Value": {"__entity": {"type": T, "id": I}}}` as an entity uid of the schema.
fn entity_literal(expr: &Value) -> Option<EntityUid> {
    let entity = expr.get("Value")?.get("__entity")?;
    let kind = entity.get("type")?.as_str()?.strip_prefix("Warrant::")?;
    uid(kind, entity.get("id")?.as_str()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(runs: &[&str]) -> Pattern {
        Pattern {
            runs: runs.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn patterns_match_the_whole_text() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["abc"], "abc", true),
            (&["abc"], "abcd", false),
            (&["", ""], "", true),
            (&["", ""], "anything", true),
            (&["a", ""], "abc", true),
            (&["a", ""], "bac", false),
            (&["", "c"], "abc", true),
            (&["", "c"], "cab", false),
            (&["a", "a"], "a", false),
            (&["a", "a"], "aa", true),
            (&["ab", "b", "bc"], "abbc", false),
            (&["ab", "b", "bc"], "abbbc", true),
            (&["", "é", ""], "café", true),
            (&["x", "", "y"], "xy", true),
        ];
        for (runs, text, expected) in cases {
            assert_eq!(pattern(runs).matches(text), *expected, "{runs:?} {text}");
        }
    }
}
