//! `warrant policy suggest`: a least-privilege policy for one verified artifact, from what the
//! run asks and what the artifact imports.
//!
//! Each request the run makes becomes one `permit` with its own `@id` and a comment saying why
//! it exists, bound to the artifact's repository and to its verified signer(s); `instantiate`
//! is bounded by the limits asked. An ask the artifact cannot use (a directory for a guest that
//! imports no filesystem) is left out; a capability it imports but the run did not ask for is
//! named in a comment and never granted. Test cases come with the policy, and the policy must
//! pass them before it is returned.

use std::fmt::Write as _;

use serde::Serialize;

use super::diff::needs;
use super::{Facts, Policies, Request};
use crate::uses::{Capability, Uses};
use crate::verify::{Signer, SignerKind};

/// A suggested policy file and its tests.
#[derive(Clone, Debug, Serialize)]
pub struct Suggestion {
    /// The files' stem: `<name>.cedar` and `tests/<name>.toml`; the `@id`s start with it.
    pub name: String,
    /// The Cedar policies.
    pub cedar: String,
    /// The test cases (`policy test` format).
    pub tests: String,
    /// Each permit's `@id` and the request it grants.
    pub granted: Vec<(String, Request)>,
    /// Asked for and left out, with the reason.
    pub left_out: Vec<(Request, String)>,
    /// Imported and not asked for: the capability and the imports that reach it.
    pub unasked: Vec<(Capability, Vec<String>)>,
}

/// Longest generated name (the files' stem and the `@id`s' prefix).
const MAX_NAME_CHARS: usize = 40;

/// The default name for an artifact of `repository`: its last path segment, in `[a-z0-9-]`.
pub fn default_name(repository: &str) -> String {
    let last = repository
        .rsplit(['/', ':'])
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    let mut name = String::new();
    for c in last.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name: String = name
        .trim_matches('-')
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "artifact".into()
    } else {
        name.into()
    }
}

/// Whether `name` can name a suggestion: `[a-z0-9-]+`, not starting or ending with `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot name a suggested policy: use 1 to {MAX_NAME_CHARS} of `a-z`, `0-9` \
             and `-`, not starting or ending with `-`"
        ))
    }
}

/// Suggest a policy for the artifact of `facts`, which imports `uses`, for `requests` (the
/// run's asks, `instantiate` first). `reference` is named in the header comment. Refused when
/// no signature verified: a suggested policy is bound to its signer.
pub fn suggest(
    facts: &Facts,
    uses: &Uses,
    requests: &[Request],
    name: &str,
    reference: &str,
) -> Result<Suggestion, String> {
    check_name(name)?;
    if facts.signers.is_empty() {
        return Err(
            "no signature verified, and a suggested policy is bound to its signer: pass the \
             signer's `--key`, or `--certificate-identity` and `--certificate-oidc-issuer`"
                .into(),
        );
    }
    let mut granted = Vec::new();
    let mut left_out = Vec::new();
    for request in requests {
        match needs(request) {
            Some(capability) if !uses.can(capability) => left_out.push((
                request.clone(),
                format!("the {} imports no {}", facts.kind, capability.noun()),
            )),
            _ => granted.push(request.clone()),
        }
    }
    let unasked: Vec<(Capability, Vec<String>)> = uses
        .capabilities
        .iter()
        .filter(|(c, _)| !requests.iter().any(|r| needs(r) == Some(*c)))
        .cloned()
        .collect();

    let mut ids = Vec::new();
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for request in &granted {
        let action = request.action();
        let id = if matches!(request, Request::Instantiate { .. }) {
            format!("{name}-instantiate")
        } else {
            let n = match counts.iter_mut().find(|(a, _)| *a == action) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((action, 1));
                    1
                }
            };
            format!("{name}-{}-{n}", action.replace('.', "-"))
        };
        ids.push(id);
    }
    let granted: Vec<(String, Request)> = ids.into_iter().zip(granted).collect();

    let cedar = cedar_text(facts, uses, &granted, &left_out, &unasked, reference);
    let tests = tests_text(facts, &granted, name);
    let suggestion = Suggestion {
        name: name.to_owned(),
        cedar,
        tests,
        granted,
        left_out,
        unasked,
    };
    suggestion.self_check()?;
    Ok(suggestion)
}

impl Suggestion {
    /// The policy must load on its own and pass its own tests.
    fn self_check(&self) -> Result<(), String> {
        let file = format!("{}.cedar", self.name);
        let policies = Policies::from_sources(&[(file.into(), self.cedar.clone())])
            .map_err(|e| format!("the suggested policy does not load (a bug): {e}"))?;
        let report = crate::policy_tests::run_text(&policies, &self.name, &self.tests)?;
        match report.results.iter().find(|r| !r.passed) {
            Some(failed) => Err(format!(
                "the suggested policy fails its own test (a bug): {}: {}",
                failed.name, failed.detail
            )),
            None => Ok(()),
        }
    }
}

/// `text` inside a `//` comment: one line, nothing a terminal would act on.
fn comment(text: &str) -> String {
    registry_client::text::for_terminal(text)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A Cedar string literal.
fn cedar_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML string literal.
fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn signer_record(signer: &Signer) -> String {
    format!(
        "{{kind: {}, identity: {}, issuer: {}}}",
        cedar_str(signer.kind.as_str()),
        cedar_str(&signer.identity),
        cedar_str(&signer.issuer)
    )
}

fn describe_signer(signer: &Signer) -> String {
    match signer.kind {
        SignerKind::Key => format!("key {}", signer.identity),
        _ => format!("{} (issuer {})", signer.identity, signer.issuer),
    }
}

/// The condition binding a permit to the verified signer(s): any one of them.
fn signer_condition(signers: &[Signer]) -> String {
    match signers {
        [one] => format!("principal.signer == {}", signer_record(one)),
        many => format!(
            "[{}].contains(principal.signer)",
            many.iter()
                .map(signer_record)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Cedar caps context values at a Long; so does the evaluation (README: "given as
/// 9223372036854775807").
fn long(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn resource_entity(request: &Request) -> String {
    let kind = match request {
        Request::Instantiate { .. } => "Runtime",
        Request::FsRead(_) | Request::FsWrite(_) => "Dir",
        Request::EnvRead(_) => "EnvVar",
        Request::NetConnect(_) | Request::HttpOutgoing(_) => "Host",
    };
    format!("Warrant::{kind}::{}", cedar_str(&request.resource()))
}

fn why(request: &Request, uses: &Uses) -> String {
    let through = |c: Capability| {
        let imports = uses.imports_for(c);
        let first = imports.first().map(String::as_str).unwrap_or_default();
        if imports.len() > 1 {
            format!("{first} and {} more", imports.len() - 1)
        } else {
            first.to_owned()
        }
    };
    match request {
        Request::Instantiate {
            memory_bytes,
            timeout_ms,
            fuel,
            ..
        } => format!(
            "Every run instantiates the artifact: with at most {memory_bytes} bytes of memory \
             and {timeout_ms} ms{}, as asked.",
            fuel.map(|f| format!(" and {f} fuel")).unwrap_or_default()
        ),
        Request::FsRead(p) => format!(
            "It imports a filesystem ({}): read {}, as asked with --dir.",
            through(Capability::Filesystem),
            p.display()
        ),
        Request::FsWrite(p) => format!(
            "It imports a filesystem ({}): write {}, as asked with --dir (not `:ro`).",
            through(Capability::Filesystem),
            p.display()
        ),
        Request::EnvRead(n) => format!(
            "It imports environment variables ({}): read {n}, as asked with --env.",
            through(Capability::Environment)
        ),
        Request::NetConnect(h) => format!(
            "It imports sockets ({}): connect to {h}, as asked with --allow-net.",
            through(Capability::Sockets)
        ),
        Request::HttpOutgoing(h) => format!(
            "It imports outgoing HTTP ({}): requests to {h}, as asked.",
            through(Capability::HttpOutgoing)
        ),
    }
}

fn cedar_text(
    facts: &Facts,
    uses: &Uses,
    granted: &[(String, Request)],
    left_out: &[(Request, String)],
    unasked: &[(Capability, Vec<String>)],
    reference: &str,
) -> String {
    let mut out = String::new();
    let signers: Vec<String> = facts.signers.iter().map(describe_signer).collect();
    let _ = writeln!(
        out,
        "// Suggested by `warrant policy suggest` for {} ({}, {}),",
        comment(reference),
        facts.kind,
        facts.digest
    );
    let _ = writeln!(out, "// signed by {}.", comment(&signers.join(", ")));
    let _ = writeln!(
        out,
        "// Each permit grants one thing the run asked for, to an artifact of {} signed by {}.",
        comment(&facts.repository),
        if facts.signers.len() == 1 {
            "that signer"
        } else {
            "one of those signers"
        }
    );
    let _ = writeln!(out, "// Review it before you deploy it.");
    if !unasked.is_empty() {
        let _ = writeln!(out, "//\n// It imports, and this policy does not grant:");
        for (capability, imports) in unasked {
            let _ = writeln!(
                out,
                "//   - {}: {}",
                capability.describe(),
                comment(&imports.join(", "))
            );
        }
    }
    if !left_out.is_empty() {
        let _ = writeln!(
            out,
            "//\n// Asked for, and left out because it cannot be used:"
        );
        for (request, reason) in left_out {
            let _ = writeln!(out, "//   - {}: {}", comment(&request.to_string()), reason);
        }
    }
    let condition = signer_condition(&facts.signers);
    for (id, request) in granted {
        let _ = writeln!(out);
        let _ = writeln!(out, "// {}", comment(&why(request, uses)));
        let _ = writeln!(out, "@id({})", cedar_str(id));
        let _ = writeln!(out, "permit (");
        let _ = writeln!(
            out,
            "  principal in Warrant::Repository::{},",
            cedar_str(&facts.repository)
        );
        let _ = writeln!(
            out,
            "  action == Warrant::Action::{},",
            cedar_str(request.action())
        );
        let _ = writeln!(out, "  resource == {}", resource_entity(request));
        let _ = writeln!(out, ")");
        let _ = write!(out, "when {{\n  {condition}");
        if let Request::Instantiate {
            memory_bytes,
            timeout_ms,
            fuel,
            ..
        } = request
        {
            let _ = write!(
                out,
                " &&\n  context.memoryBytes <= {} &&\n  context.timeoutMs <= {}",
                long(*memory_bytes),
                long(*timeout_ms)
            );
            if let Some(fuel) = fuel {
                let _ = write!(
                    out,
                    " &&\n  context has fuel && context.fuel <= {}",
                    long(*fuel)
                );
            }
        }
        let _ = writeln!(out, "\n}};");
    }
    out
}

fn toml_request(request: &Request) -> String {
    match request {
        Request::Instantiate {
            memory_bytes,
            timeout_ms,
            fuel,
            runtime,
        } => format!(
            "{{ action = \"instantiate\"{}, memory_bytes = {}, timeout_ms = {}{} }}",
            match runtime {
                crate::policy::Runtime::Cli => String::new(),
                crate::policy::Runtime::Tenant(name) => format!(", resource = {}", toml_str(name)),
                crate::policy::Runtime::Pod { id, pod } =>
                    format!(", resource = {}, pod = {}", toml_str(id), toml_str(pod)),
            },
            long(*memory_bytes),
            long(*timeout_ms),
            fuel.map(|f| format!(", fuel = {}", long(f)))
                .unwrap_or_default()
        ),
        other => format!(
            "{{ action = {}, resource = {} }}",
            toml_str(other.action()),
            toml_str(&other.resource())
        ),
    }
}

fn toml_signer(signer: &Signer) -> String {
    format!(
        "{{ kind = {}, identity = {}, issuer = {} }}",
        toml_str(signer.kind.as_str()),
        toml_str(&signer.identity),
        toml_str(&signer.issuer)
    )
}

/// One test case.
struct Case<'a> {
    name: String,
    expect: &'static str,
    policies: Option<&'a str>,
    request: String,
    repository: &'a str,
    signers: Vec<Signer>,
}

fn tests_text(facts: &Facts, granted: &[(String, Request)], name: &str) -> String {
    let mut cases: Vec<Case<'_>> = Vec::new();
    for (id, request) in granted {
        cases.push(Case {
            name: format!("{request}: allowed by `{id}`"),
            expect: "allow",
            policies: Some(id),
            request: toml_request(request),
            repository: &facts.repository,
            signers: facts.signers.clone(),
        });
    }
    let other_repository = format!("{}-other", facts.repository);
    let stranger = Signer {
        kind: SignerKind::Key,
        identity: format!("sha256:{}", "0".repeat(64)),
        issuer: "key".into(),
        claims: Default::default(),
    };
    for (_, request) in granted {
        cases.push(Case {
            name: format!("{request}: denied when unsigned"),
            expect: "deny",
            policies: None,
            request: toml_request(request),
            repository: &facts.repository,
            signers: Vec::new(),
        });
        if !facts.signers.contains(&stranger) {
            cases.push(Case {
                name: format!("{request}: denied when signed by another key"),
                expect: "deny",
                policies: None,
                request: toml_request(request),
                repository: &facts.repository,
                signers: vec![stranger.clone()],
            });
        }
        cases.push(Case {
            name: format!("{request}: denied from another repository"),
            expect: "deny",
            policies: None,
            request: toml_request(request),
            repository: &other_repository,
            signers: facts.signers.clone(),
        });
        let wider = match request {
            Request::Instantiate {
                memory_bytes,
                timeout_ms,
                fuel,
                runtime,
            } if *memory_bytes < i64::MAX as u64 => Some(Request::Instantiate {
                memory_bytes: memory_bytes + 1,
                timeout_ms: *timeout_ms,
                fuel: *fuel,
                runtime: runtime.clone(),
            }),
            Request::FsRead(p) => Some(Request::FsRead(sibling(p))),
            Request::FsWrite(p) => Some(Request::FsWrite(sibling(p))),
            _ => None,
        };
        if let Some(wider) = wider {
            cases.push(Case {
                name: format!("{wider}: denied, more than was asked"),
                expect: "deny",
                policies: None,
                request: toml_request(&wider),
                repository: &facts.repository,
                signers: facts.signers.clone(),
            });
        }
    }
    let mut out = format!(
        "# Tests of {name}.cedar, written with it by `warrant policy suggest`: what it grants,\n\
         # and that it grants nothing unsigned, signed by another key, from another repository,\n\
         # or beyond what was asked.\n"
    );
    for case in cases {
        let _ = writeln!(out, "\n[[case]]");
        let _ = writeln!(out, "name = {}", toml_str(&comment(&case.name)));
        let _ = writeln!(out, "expect = \"{}\"", case.expect);
        if let Some(id) = case.policies {
            let _ = writeln!(out, "policies = [{}]", toml_str(id));
        }
        let _ = writeln!(out, "request = {}", case.request);
        let _ = writeln!(out, "[case.artifact]");
        let _ = writeln!(out, "digest = {}", toml_str(&facts.digest.to_string()));
        let _ = writeln!(out, "kind = {}", toml_str(&facts.kind));
        let _ = writeln!(out, "repository = {}", toml_str(case.repository));
        let _ = writeln!(
            out,
            "signers = [{}]",
            case.signers
                .iter()
                .map(toml_signer)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

/// A directory beside `path` (`/srv/data` → `/srv/data-other`): not it, not inside it.
fn sibling(path: &std::path::Path) -> std::path::PathBuf {
    let mut text = path.as_os_str().to_owned();
    text.push(if path.as_os_str() == "/" {
        "other"
    } else {
        "-other"
    });
    text.into()
}

#[cfg(test)]
mod tests {
    use registry_client::{Digest, WasmKind};

    use super::*;
    use crate::uses::uses;

    fn facts(signers: Vec<Signer>) -> Facts {
        Facts::new(
            Digest::of(b"artifact"),
            WasmKind::Module,
            1000,
            "ghcr.io".into(),
            "ghcr.io/acme/plugin".into(),
            signers,
            Vec::new(),
        )
    }

    fn keyless(identity: &str) -> Signer {
        Signer {
            kind: SignerKind::Keyless,
            identity: identity.into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            claims: Default::default(),
        }
    }

    fn instantiate() -> Request {
        Request::Instantiate {
            memory_bytes: 1 << 20,
            timeout_ms: 1000,
            fuel: Some(5000),
            runtime: crate::policy::Runtime::Cli,
        }
    }

    fn module_reading_env() -> Uses {
        uses(
            &wat::parse_str(
                r#"(module (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32))))"#,
            )
            .unwrap(),
        )
        .unwrap()
    }

    /// Keyless signers, several of them, with text that needs escaping in Cedar and TOML and
    /// a line break that must not end a comment: the suggestion still loads and passes its
    /// own tests (`suggest` checks both), and grants each signer, nobody else.
    #[test]
    fn keyless_signers_and_hostile_text_are_written_safely() {
        let odd = "https://github.com/acme/\"plugin\"\\x/.github/workflows/r.yml@refs/tags/v1\n@id(\"x\")";
        let facts = facts(vec![keyless(odd), keyless("release@acme.example")]);
        let uses = module_reading_env();
        let requests = [instantiate(), Request::EnvRead("LOG_LEVEL".into())];
        let s = suggest(
            &facts,
            &uses,
            &requests,
            "plugin",
            "ghcr.io/acme/plugin:v1\n@id(\"y\")",
        )
        .unwrap();
        assert_eq!(s.granted.len(), 2);
        assert!(s.cedar.contains("[{kind: \"keyless\""), "{}", s.cedar);
        assert!(s.cedar.contains("context has fuel && context.fuel <= 5000"));
        // Each comment is one line: nothing an attacker wrote starts a policy line.
        assert!(
            !s.cedar
                .lines()
                .any(|l| l.starts_with("@id(\"x\")") || l.starts_with("@id(\"y\")")),
            "{}",
            s.cedar
        );
        let policies = Policies::from_sources(&[("p.cedar".into(), s.cedar.clone())]).unwrap();
        let other = self::facts(vec![keyless("https://github.com/acme/other")]);
        assert!(!policies.evaluate(&other, &instantiate()).allowed);
        for signer in [keyless(odd), keyless("release@acme.example")] {
            let one = self::facts(vec![signer]);
            assert!(policies.evaluate(&one, &instantiate()).allowed);
        }
    }

    #[test]
    fn nothing_unsigned_and_no_bad_name() {
        let uses = module_reading_env();
        let e = suggest(&facts(Vec::new()), &uses, &[instantiate()], "p", "r").unwrap_err();
        assert!(e.contains("no signature verified"), "{e}");
        for bad in ["", "-p", "p-", "P", "p_q", &"p".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(default_name("ghcr.io/acme/My_Plugin"), "my-plugin");
        assert_eq!(default_name("oci-layout:/tmp/x/"), "x");
        assert_eq!(default_name("ghcr.io/acme/___"), "artifact");
    }
}
