//! Loading: reading a policy directory, strict validation against the schema, and building
//! [`Policies`] (with the [`ValidationMemo`] that lets a known-good set skip validation).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Mutex;

use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic as _;
use sha2::{Digest as _, Sha256};

use super::eval::DecisionCache;
use super::groups::GROUPS_FILE;
use super::index::{ActionIndex, Group, slice_by_action};
use super::{SCHEMA, limits};

/// One problem found while loading policies: where, which policy, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The policy's `@id`, when known.
    pub policy: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(policy) = &self.policy {
            write!(f, ": policy `{policy}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The directory or a file could not be read.
    #[error("cannot read policies `{path}`: {reason}", path = .path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Parse or validation problems; nothing was loaded.
    #[error("invalid policies ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A loaded, validated policy set.
pub struct Policies {
    pub(super) by_action: HashMap<&'static str, ActionIndex>,
    /// Policies whose outcome is the same for every request of a run: scoped to any action and
    /// any resource, with conditions that read neither `action`, `resource` nor `context`.
    pub(super) invariant: Group,
    /// The whole set, unsliced (the reference evaluation in tests).
    #[cfg(test)]
    pub(super) all: PolicySet,
    /// Check built entities against the schema (tests).
    pub(super) check_entities: bool,
    /// Parsed when first needed: validation needs it, deciding does not.
    pub(super) schema: std::sync::OnceLock<Schema>,
    pub(super) hash: String,
    pub(super) sources: BTreeMap<String, (PathBuf, usize)>,
    /// The directory's signer groups (`signer-groups.toml`), for `principal.approvals`.
    pub(super) groups: Vec<super::groups::SignerGroup>,
    /// Requests for the resources the permits name in their scopes (`policy diff`).
    pub(super) probes: Vec<super::Request>,
    pub(super) cache: Mutex<DecisionCache>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("count", &self.sources.len())
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Remembers which exact policy sources passed strict validation before, so that loading them
/// again can skip it (and parsing the schema, the larger part of a fresh process's policy
/// work). Implemented by the CLI over an authenticated directory
/// ([`crate::cache::PolicyMemo`]).
pub trait ValidationMemo {
    /// Whether sources with this [`validation_key`] passed strict validation before.
    fn vouches(&self, key: &[u8; 32]) -> bool;
    /// Remember that sources with this key passed.
    fn remember(&self, key: &[u8; 32]);
}

/// What strict validation of `sources` depends on, hashed: this build's Warrant and Cedar
/// versions, the schema, and every source's name and text, in order.
pub fn validation_key(sources: &[(PathBuf, String)]) -> [u8; 32] {
    let cedar = cedar_policy::get_sdk_version().to_string();
    let head: [&[u8]; 4] = [
        b"warrant strict validation 1",
        env!("CARGO_PKG_VERSION").as_bytes(),
        cedar.as_bytes(),
        SCHEMA.as_bytes(),
    ];
    hash_fields(
        head.into_iter().chain(
            sources
                .iter()
                .flat_map(|(path, text)| [path.as_os_str().as_encoded_bytes(), text.as_bytes()]),
        ),
    )
}

/// SHA-256 of `fields`, each prefixed with its length (so no two lists hash alike).
pub(super) fn hash_fields<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for bytes in fields {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().into()
}

pub(super) fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _)| schema)
        .map_err(|e| PolicyError::Read {
            path: PathBuf::from("(embedded schema)"),
            reason: e.to_string(),
        })
}

/// `text` with every `//` comment (outside string literals) replaced by spaces of the same
/// length, so that byte offsets are unchanged.
pub(super) fn blank_comments(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let (mut in_string, mut escaped, mut in_comment) = (false, false, false);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if in_comment {
            if b == b'\n' {
                in_comment = false;
                out.push(b);
            } else {
                out.push(b' ');
            }
        } else if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if b == b'/' && bytes.get(i.saturating_add(1)) == Some(&b'/') {
            in_comment = true;
            out.push(b' ');
        } else {
            out.push(b);
        }
        i = i.saturating_add(1);
    }
    // Only ASCII bytes were replaced, by ASCII spaces, so the result is still UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count().saturating_add(1))
}

impl Policies {
    /// Load and strictly validate every `*.cedar` file in `dir` (sorted by name). A
    /// `warrant.cedarschema` in `dir`, if any, must be the schema Warrant builds entities for.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Self::load_with(dir, None)
    }

    /// As [`Policies::load`], skipping strict validation when `memo` vouches that exactly these
    /// sources passed it before (and remembering them when they pass now).
    pub fn load_with(dir: &Path, memo: Option<&dyn ValidationMemo>) -> Result<Self, PolicyError> {
        Self::from_sources_with(&read_sources(dir)?, memo)
    }
}

/// Every `*.cedar` file in `dir` with its text, sorted by name (what [`Policies::load`] loads).
/// A `warrant.cedarschema` in `dir`, if any, must be the schema Warrant builds entities for.
pub fn read_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, PolicyError> {
    let read_err = |path: &Path, reason: String| PolicyError::Read {
        path: path.to_owned(),
        reason,
    };
    let mut files = Vec::new();
    let mut groups = None;
    let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| read_err(dir, e.to_string()))?;
        let path = entry.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("cedar") => files.push(path),
            _ if path.file_name().and_then(|n| n.to_str()) == Some(GROUPS_FILE) => {
                groups = Some(path);
            }
            Some("cedarschema") => check_schema_file(&path)?,
            _ => {}
        }
    }
    if files.len() > limits::MAX_POLICY_FILES {
        return Err(read_err(
            dir,
            format!(
                "{} policy files; at most {}",
                files.len(),
                limits::MAX_POLICY_FILES
            ),
        ));
    }
    files.sort();
    // The signer groups last, so a policy's position is the same with or without them.
    files.extend(groups);
    let mut texts = Vec::with_capacity(files.len());
    for path in files {
        let text = read_bounded(&path)?;
        texts.push((path, text));
    }
    Ok(texts)
}

impl Policies {
    /// Load policies from (file name, text) pairs, as [`Policies::load`] does from files.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Self, PolicyError> {
        Self::from_sources_with(sources, None)
    }

    /// As [`Policies::from_sources`], with a [`ValidationMemo`] (see [`Policies::load_with`]).
    pub fn from_sources_with(
        sources: &[(PathBuf, String)],
        memo: Option<&dyn ValidationMemo>,
    ) -> Result<Self, PolicyError> {
        let key = memo.map(|_| validation_key(sources));
        let vouched = memo.zip(key.as_ref()).is_some_and(|(m, k)| m.vouches(k));
        let schema_cell = std::sync::OnceLock::new();
        let mut problems = Vec::new();
        let mut set = PolicySet::new();
        let mut where_is: BTreeMap<String, (PathBuf, usize)> = BTreeMap::new();
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        let mut groups = Vec::new();
        let mut groups_text: Option<&str> = None;
        for (file, text) in sources {
            if file.file_name().and_then(|n| n.to_str()) == Some(GROUPS_FILE) {
                match super::groups::parse(text) {
                    Ok(parsed) => groups = parsed,
                    Err(message) => problems.push(Problem {
                        file: file.clone(),
                        line: None,
                        policy: None,
                        message,
                    }),
                }
                groups_text = Some(text);
                continue;
            }
            let parsed = match PolicySet::from_str(text) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    for error in errors.iter() {
                        let line = error
                            .labels()
                            .and_then(|mut labels| labels.next())
                            .map(|label| line_of(text, label.offset()));
                        problems.push(Problem {
                            file: file.clone(),
                            line,
                            policy: None,
                            message: error.to_string(),
                        });
                    }
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(Problem {
                    file: file.clone(),
                    line: None,
                    policy: None,
                    message: "templates (`?principal`, `?resource`) are not supported".into(),
                });
            }
            // Policies in source order (the parser names them `policy0`, `policy1`, …), so
            // that each one's text is found after the previous one's.
            let mut policies: Vec<&Policy> = parsed.policies().collect();
            policies.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            // Comments are blanked (same length) in the file and in each policy's text before
            // searching, so a comment quoting a policy is never taken for it.
            let searchable = blank_comments(text);
            let mut cursor = 0;
            for policy in policies {
                let source = blank_comments(&policy.to_cedar().unwrap_or_default());
                let line = match searchable.get(cursor..).and_then(|rest| rest.find(&source)) {
                    Some(at) => {
                        let start = cursor.saturating_add(at);
                        cursor = start.saturating_add(source.len());
                        line_of(text, start)
                    }
                    None => 0,
                };
                let line_opt = (line > 0).then_some(line);
                let Some(id) = policy.annotation("id") else {
                    problems.push(Problem {
                        file: file.clone(),
                        line: line_opt,
                        policy: None,
                        message: "no `@id(\"…\")` annotation; every policy needs a unique id"
                            .into(),
                    });
                    continue;
                };
                if id.trim().is_empty() {
                    problems.push(Problem {
                        file: file.clone(),
                        line: line_opt,
                        policy: Some(id.to_owned()),
                        message: "an empty `@id`".into(),
                    });
                    continue;
                }
                if let Some((other_file, other_line)) = where_is.get(id) {
                    problems.push(Problem {
                        file: file.clone(),
                        line: line_opt,
                        policy: Some(id.to_owned()),
                        message: format!(
                            "duplicate `@id`: also at {}:{other_line}",
                            other_file.display()
                        ),
                    });
                    continue;
                }
                where_is.insert(id.to_owned(), (file.clone(), line));
                texts.insert(id.to_owned(), source.clone());
                let renamed = policy.new_id(PolicyId::new(id));
                if let Err(e) = set.add(renamed) {
                    problems.push(Problem {
                        file: file.clone(),
                        line: line_opt,
                        policy: Some(id.to_owned()),
                        message: e.to_string(),
                    });
                }
            }
        }
        if problems.is_empty() && !vouched {
            let schema = schema()?;
            let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
            // The line of what is wrong: the diagnostic's own position in the policy's file
            // when it has one, else the policy's first line.
            let locate = |id: &PolicyId, diagnostic: &dyn miette::Diagnostic| {
                let (file, line) = where_is.get(&id.to_string()).cloned().unwrap_or_default();
                let text = sources.iter().find(|(f, _)| *f == file).map(|(_, t)| t);
                let exact = diagnostic
                    .labels()
                    .and_then(|mut labels| labels.next())
                    .zip(text)
                    .map(|(label, text)| line_of(text, label.offset()));
                let line = exact.unwrap_or(line);
                (file, (line > 0).then_some(line))
            };
            let mut found = Vec::new();
            for error in result.validation_errors() {
                let (file, line) = locate(error.policy_id(), error);
                found.push(Problem {
                    file,
                    line,
                    policy: Some(error.policy_id().to_string()),
                    message: error.to_string(),
                });
            }
            for warning in result.validation_warnings() {
                let (file, line) = locate(warning.policy_id(), warning);
                found.push(Problem {
                    file,
                    line,
                    policy: Some(warning.policy_id().to_string()),
                    message: format!("{warning} (validation warnings are refused too)"),
                });
            }
            // Errors before warnings (an unknown type also makes a policy inapplicable; the
            // unknown type is what to fix), each in file order, then line order.
            let file_rank = |f: &PathBuf| sources.iter().position(|(s, _)| s == f);
            found.sort_by_key(|p| {
                (
                    p.message.ends_with("(validation warnings are refused too)"),
                    file_rank(&p.file),
                    p.line,
                )
            });
            problems.extend(found);
            if problems.is_empty() {
                // Validated now: remembered, and the schema kept.
                if let (Some(memo), Some(key)) = (memo, key.as_ref()) {
                    memo.remember(key);
                }
                let _ = schema_cell.set(schema);
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        // The groups are part of what decides, so of the hash (which keys remembered
        // decisions); a set without them hashes as it always did.
        let groups_fields = groups_text
            .map(|text| [GROUPS_FILE.as_bytes(), text.as_bytes()])
            .into_iter()
            .flatten();
        let hash = hash_fields(
            texts
                .iter()
                .flat_map(|(id, text)| [id.as_bytes(), text.as_bytes()])
                .chain(groups_fields),
        );
        let (by_action, invariant) = slice_by_action(&set).map_err(|reason| PolicyError::Read {
            path: PathBuf::from("(policy set)"),
            reason,
        })?;
        Ok(Self {
            by_action,
            invariant,
            #[cfg(test)]
            all: set.clone(),
            check_entities: false,
            schema: schema_cell,
            hash: format!("sha256:{}", hex::encode(hash)),
            sources: where_is,
            groups,
            probes: probes_of(&set),
            cache: Mutex::new(DecisionCache::default()),
        })
    }
}

impl Policies {
    /// A request for each resource a `permit` names in its scope, for each action that goes
    /// with that kind of resource: what `policy diff` asks about beyond a run's own requests.
    pub fn probes(&self) -> Vec<super::Request> {
        self.probes.clone()
    }
}

fn probes_of(set: &PolicySet) -> Vec<super::Request> {
    use super::Request;
    use cedar_policy::{Effect, ResourceConstraint};
    let mut probes: Vec<Request> = Vec::new();
    for policy in set.policies().filter(|p| p.effect() == Effect::Permit) {
        let uid = match policy.resource_constraint() {
            ResourceConstraint::Eq(uid)
            | ResourceConstraint::In(uid)
            | ResourceConstraint::IsIn(_, uid) => uid,
            ResourceConstraint::Any | ResourceConstraint::Is(_) => continue,
        };
        let id = uid.id().unescaped().to_owned();
        let new: Vec<Request> = match uid.type_name().to_string().as_str() {
            "Warrant::Dir" => vec![
                Request::FsRead(PathBuf::from(&id)),
                Request::FsWrite(PathBuf::from(&id)),
            ],
            "Warrant::EnvVar" => vec![Request::EnvRead(id)],
            "Warrant::Host" => vec![Request::NetConnect(id.clone()), Request::HttpOutgoing(id)],
            _ => Vec::new(),
        };
        for probe in new {
            if !probes.contains(&probe) {
                probes.push(probe);
            }
        }
    }
    probes
}

fn check_schema_file(path: &Path) -> Result<(), PolicyError> {
    let text = read_bounded(path)?;
    let normalise = |s: &str| s.replace("\r\n", "\n").trim().to_owned();
    if normalise(&text) != normalise(SCHEMA) {
        return Err(PolicyError::Read {
            path: path.to_owned(),
            reason: "this schema is not the one Warrant builds entities for (remove the file, \
                     or copy `policies/warrant.cedarschema` of this version)"
                .into(),
        });
    }
    Ok(())
}

fn read_bounded(path: &Path) -> Result<String, PolicyError> {
    use std::io::Read as _;
    let bad = |reason: String| PolicyError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    file.take(limits::MAX_POLICY_FILE_BYTES.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > limits::MAX_POLICY_FILE_BYTES {
        return Err(bad(format!(
            "larger than {} bytes",
            limits::MAX_POLICY_FILE_BYTES
        )));
    }
    Ok(text)
}

/// An absolute path as text, rebuilt from its components (so `.` and repeated or trailing
/// slashes vanish, as they do for `Path` equality); `..` and non-UTF-8 names are refused.
pub(super) fn path_text(path: &Path) -> Result<String, String> {
    if !path.is_absolute() {
        return Err(format!("path `{}` is not absolute", path.display()));
    }
    let mut text = String::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                let name = name
                    .to_str()
                    .ok_or_else(|| format!("path `{}` is not UTF-8", path.display()))?;
                text.push('/');
                text.push_str(name);
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("path `{}` contains `..`", path.display()));
            }
        }
    }
    Ok(if text.is_empty() {
        "/".to_owned()
    } else {
        text
    })
}
