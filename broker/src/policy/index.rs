//! The policy set sliced by action and resource, and grouped by what of an evaluation each
//! policy reads.

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{ActionConstraint, Effect, EntityUid, Policy, PolicySet, ResourceConstraint};

use super::Request;
use super::model::{dir_chain, uid};
use super::screen::Screen;

/// The actions of the schema.
const ACTIONS: [&str; 6] = [
    "instantiate",
    "fs.read",
    "fs.write",
    "env.read",
    "net.connect",
    "http.outgoing",
];

/// Policies to evaluate together, by what of an evaluation they read: neither the artifact's
/// `signer` nor its `provenance` (evaluated once per request), only one of them (once per
/// signer, or per provenance), or both (once per pair). Splitting a set into groups and
/// combining their outcomes by the rule gives the outcome of the whole set: the rule is a
/// union of permits and of forbids.
#[derive(Default)]
pub(super) struct Group {
    pub(super) independent: Pass,
    pub(super) by_signer: Pass,
    pub(super) by_provenance: Pass,
    pub(super) by_both: Pass,
}

impl Group {
    fn add(&mut self, member: &Arc<Member>) -> Result<(), String> {
        let pass = match (member.reads_signer, member.reads_provenance) {
            (false, false) => &mut self.independent,
            (true, false) => &mut self.by_signer,
            (false, true) => &mut self.by_provenance,
            (true, true) => &mut self.by_both,
        };
        pass.add(member)
    }
}

/// Policies evaluated together: each with its screen and a set of its own, and all of them as
/// one set (for when the screens settle none of them).
#[derive(Default)]
pub(super) struct Pass {
    pub(super) members: Vec<Arc<Member>>,
    pub(super) all: PolicySet,
}

/// One policy, analysed once at load.
pub(super) struct Member {
    pub(super) id: String,
    pub(super) effect: Effect,
    /// Its condition reads an attribute named `signer` (see [`reads_attribute`]).
    reads_signer: bool,
    /// Its condition reads the artifact's `provenance` (see [`reads_attribute`]).
    reads_provenance: bool,
    /// Its outcome is the same for every request of a run (see `is_invariant`).
    invariant: bool,
    pub(super) screen: Screen,
    /// The policy alone.
    pub(super) alone: PolicySet,
}

impl Member {
    fn new(policy: &Policy) -> Result<Self, String> {
        // The JSON form of the conditions, read by the invariance check and the screen. Cedar
        // makes it by parsing the policy's text again (most of the load time this adds), so
        // only when there are conditions to read.
        let json = if policy.has_non_scope_constraint() {
            policy.to_json().ok()
        } else {
            Some(serde_json::json!({ "conditions": [] }))
        };
        let mut alone = PolicySet::new();
        alone.add(policy.clone()).map_err(|e| e.to_string())?;
        Ok(Self {
            id: policy.id().to_string(),
            effect: policy.effect(),
            reads_signer: reads_attribute(json.as_ref(), "signer"),
            reads_provenance: reads_attribute(json.as_ref(), "provenance"),
            invariant: is_invariant(policy, json.as_ref()),
            screen: Screen::of(policy, json.as_ref()),
            alone,
        })
    }

    fn policy(&self) -> Option<&Policy> {
        self.alone.policies().next()
    }
}

impl Pass {
    fn add(&mut self, member: &Arc<Member>) -> Result<(), String> {
        let policy = member.policy().ok_or("an empty policy set")?;
        self.all.add(policy.clone()).map_err(|e| e.to_string())?;
        self.members.push(Arc::clone(member));
        Ok(())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// One action's policies, grouped by their resource scope.
#[derive(Default)]
pub(super) struct ActionIndex {
    /// Any resource (or a type only).
    pub(super) any: Group,
    /// `resource == X`, by X.
    pub(super) eq: HashMap<EntityUid, Group>,
    /// `resource in X` (or `is T in X`), by X.
    pub(super) within: HashMap<EntityUid, Group>,
}

/// Does any condition of the policy read an attribute named `attribute` (of anything: the
/// artifact's `signer`, and also `provenance.signer`), or test for it with `has`? Read from the
/// policy's JSON form, where every attribute access and test is `{".": {"left": …, "attr":
/// …}}` or `{"has": {…}}` whatever its spelling in the text (`principal.signer`,
/// `principal["signer"]`, `principal["sign\u{65}r"]`); a policy without a JSON form counts as
/// reading it.
fn reads_attribute(json: Option<&serde_json::Value>, attribute: &str) -> bool {
    use serde_json::Value;
    /// Whether an access's `attr` may be `attribute`: the name itself, a path (`has a.b`)
    /// containing it, or anything unexpected (counted as reading it).
    fn names(attr: Option<&Value>, attribute: &str) -> bool {
        match attr {
            Some(Value::String(attr)) => attr == attribute,
            Some(Value::Array(attrs)) => attrs.iter().any(|a| a.as_str() == Some(attribute)),
            _ => true,
        }
    }
    fn reads(value: &Value, attribute: &str) -> bool {
        match value {
            Value::Object(map) => map.iter().any(|(key, inner)| {
                let here = match key.as_str() {
                    "." | "has" => names(inner.get("attr"), attribute),
                    // Tags are not attributes, but reading one is reading the entity.
                    "getTag" | "hasTag" => true,
                    _ => false,
                };
                here || reads(inner, attribute)
            }),
            Value::Array(items) => items.iter().any(|item| reads(item, attribute)),
            _ => false,
        }
    }
    match json {
        Some(json) => json.get("conditions").is_none_or(|c| reads(c, attribute)),
        None => true,
    }
}

/// Does any condition of the policy read `action`, `resource` or `context`? Read from the
/// policy's JSON form, where every use of a variable is `{"Var": "<name>"}`; a policy without
/// a JSON form counts as reading them.
fn reads_request(json: Option<&serde_json::Value>) -> bool {
    fn reads(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => map.iter().any(|(key, value)| {
                (key == "Var" && matches!(value.as_str(), Some("action" | "resource" | "context")))
                    || reads(value)
            }),
            serde_json::Value::Array(items) => items.iter().any(reads),
            _ => false,
        }
    }
    match json {
        Some(json) => json.get("conditions").is_none_or(reads),
        None => true,
    }
}

/// Does the outcome of `policy` depend only on the principal (and so not on the request)?
fn is_invariant(policy: &Policy, json: Option<&serde_json::Value>) -> bool {
    matches!(policy.action_constraint(), ActionConstraint::Any)
        && matches!(policy.resource_constraint(), ResourceConstraint::Any)
        && !reads_request(json)
}

/// The policies that apply to every request and read only the principal, then for each
/// action the other policies whose action scope admits it, indexed by resource scope.
pub(super) fn slice_by_action(
    set: &PolicySet,
) -> Result<(HashMap<&'static str, ActionIndex>, Group), String> {
    let members = set
        .policies()
        .map(|p| Member::new(p).map(|m| (p, Arc::new(m))))
        .collect::<Result<Vec<_>, String>>()?;
    let (invariant_members, others): (Vec<_>, Vec<_>) =
        members.iter().partition(|(_, m)| m.invariant);
    let mut invariant = Group::default();
    for (_, member) in invariant_members {
        invariant.add(member)?;
    }
    let mut slices = HashMap::new();
    for action in ACTIONS {
        let this = uid("Action", action)?;
        let mut index = ActionIndex::default();
        for &(policy, member) in &others {
            let admits = match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => a == this,
                // The schema declares no action groups: `in` is membership of the list.
                ActionConstraint::In(list) => list.contains(&this),
            };
            if !admits {
                continue;
            }
            match policy.resource_constraint() {
                ResourceConstraint::Any | ResourceConstraint::Is(_) => index.any.add(member)?,
                ResourceConstraint::Eq(r) => index.eq.entry(r).or_default().add(member)?,
                ResourceConstraint::In(r) | ResourceConstraint::IsIn(_, r) => {
                    index.within.entry(r).or_default().add(member)?;
                }
            }
        }
        slices.insert(action, index);
    }
    Ok((slices, invariant))
}

/// A request's resource uid followed by its ancestors (a directory's parent chain).
pub(super) fn request_resource(request: &Request) -> Result<Vec<EntityUid>, String> {
    Ok(match request {
        Request::Instantiate { runtime, .. } => std::iter::once(runtime.id())
            .chain(runtime.parent())
            .map(|id| uid("Runtime", id))
            .collect::<Result<_, _>>()?,
        Request::FsRead(path) | Request::FsWrite(path) => dir_chain(path)?
            .iter()
            .map(|d| uid("Dir", d))
            .collect::<Result<_, _>>()?,
        Request::EnvRead(name) => vec![uid("EnvVar", name)?],
        Request::NetConnect(host) | Request::HttpOutgoing(host) => vec![uid("Host", host)?],
    })
}
