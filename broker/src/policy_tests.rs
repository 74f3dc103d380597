//! Policy test cases kept beside the policies (`tests/*.toml` or `tests/*.json`), so that
//! policies can be unit-tested like code: each case gives an artifact's facts and one request,
//! and says whether it must be allowed (and, optionally, by or against which policies).
//!
//! ```toml
//! [[case]]
//! name = "the release workflow may run"
//! expect = "allow"                      # or "deny", or "error" (denied by an evaluation error)
//! policies = ["release-may-run"]        # optional: exactly the determining policy ids
//! request = { action = "instantiate", memory_bytes = 1048576 }
//! [case.artifact]
//! repository = "ghcr.io/acme/plugin"
//! signers = [{ kind = "keyless", identity = "https://github.com/…", issuer = "https://…" }]
//! # provenances = [{ builder_id = "…", source_ref = "refs/tags/v1", signer = { … } }, …]
//! # (or one: provenance = { … }); each is evaluated, as each verified one is in a run
//! ```

use std::path::Path;

use registry_client::{Digest, WasmKind};
use serde::{Deserialize, Serialize};

use crate::attest::Provenance;
use crate::policy::{Facts, Policies, Request};
use crate::verify::{Signer, SignerKind};

/// Largest test file read.
const MAX_TEST_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    expect: Expect,
    #[serde(default)]
    policies: Option<Vec<String>>,
    request: TestRequest,
    #[serde(default)]
    artifact: TestArtifact,
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
    /// Denied because an evaluation failed (so not by `forbid`, nor for want of a permit).
    Error,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    action: String,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    memory_bytes: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    fuel: Option<u64>,
    /// With `instantiate` on `k8s/NAMESPACE`: the pod's name (`context.pod`).
    #[serde(default)]
    pod: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestArtifact {
    #[serde(default)]
    digest: Option<Digest>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    size_bytes: Option<u64>,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    signers: Vec<TestSigner>,
    /// One provenance (the older form) …
    #[serde(default)]
    provenance: Option<TestProvenance>,
    /// … or several, each evaluated.
    #[serde(default)]
    provenances: Vec<TestProvenance>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSigner {
    kind: String,
    identity: String,
    #[serde(default)]
    issuer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestProvenance {
    #[serde(default = "slsa_v1")]
    predicate_type: String,
    builder_id: String,
    #[serde(default)]
    source_repository: String,
    #[serde(default)]
    source_ref: String,
    signer: TestSigner,
}

fn slsa_v1() -> String {
    crate::attest::SLSA_PROVENANCE_V1.to_owned()
}

/// One case's result.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// `file: name`.
    pub name: String,
    /// Did it pass?
    pub passed: bool,
    /// The decision, or why the case could not be run.
    pub detail: String,
}

/// Every case's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// In file order, then case order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }
    /// Cases that failed (or could not be run).
    pub fn failed(&self) -> usize {
        self.results.len().saturating_sub(self.passed())
    }
}

/// Run every `*.toml` and `*.json` test file in `dir` (sorted by name) against `policies`. A
/// file that cannot be read or parsed is an error naming it.
pub fn run_dir(policies: &Policies, dir: &Path) -> Result<Report, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read policy tests `{}`: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("toml" | "json")
            )
        })
        .collect();
    files.sort();
    let mut report = Report::default();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = read(&path)?;
        let file: File = if path.extension().and_then(|e| e.to_str()) == Some("json") {
            serde_json::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))?
        };
        run_file(policies, &name, file, &mut report);
    }
    Ok(report)
}

fn run_file(policies: &Policies, name: &str, file: File, report: &mut Report) {
    for case in file.case {
        report.results.push(run_case(policies, name, &case));
    }
}

/// Run the cases of one TOML test file's `text`, named `name` in the results.
pub fn run_text(policies: &Policies, name: &str, text: &str) -> Result<Report, String> {
    let file: File = toml::from_str(text).map_err(|e| format!("`{name}`: {e}"))?;
    let mut report = Report::default();
    run_file(policies, name, file, &mut report);
    Ok(report)
}

fn read(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_TEST_FILE_BYTES.saturating_add(1))
                .read_to_string(&mut text)
        })
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if text.len() as u64 > MAX_TEST_FILE_BYTES {
        return Err(format!(
            "`{}` is larger than {MAX_TEST_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(text)
}

fn run_case(policies: &Policies, file: &str, case: &Case) -> CaseResult {
    let name = format!("{file}: {}", case.name);
    let built = facts(&case.name, &case.artifact).and_then(|f| Ok((f, request(&case.request)?)));
    let (facts, request) = match built {
        Ok(built) => built,
        Err(e) => {
            return CaseResult {
                name,
                passed: false,
                detail: format!("invalid case: {e}"),
            };
        }
    };
    let decision = policies.evaluate(&facts, &request);
    let mut passed = match case.expect {
        Expect::Allow => decision.allowed,
        Expect::Deny => !decision.allowed && decision.errors.is_empty(),
        Expect::Error => !decision.allowed && !decision.errors.is_empty(),
    };
    if let Some(expected) = &case.policies {
        let mut want = expected.clone();
        want.sort();
        let mut got = decision.determining.clone();
        got.sort();
        passed &= want == got;
    }
    let expected = match case.expect {
        Expect::Allow => "allow",
        Expect::Deny => "deny",
        Expect::Error => "an evaluation error",
    };
    let detail = if passed {
        format!("{request}: {}", decision.explanation())
    } else {
        format!(
            "{request}: expected {expected}{}, got: {}",
            case.policies
                .as_ref()
                .map(|p| format!(" by {}", p.join(", ")))
                .unwrap_or_default(),
            decision.explanation()
        )
    };
    CaseResult {
        name,
        passed,
        detail,
    }
}

fn signer(s: &TestSigner) -> Result<Signer, String> {
    let kind = match s.kind.as_str() {
        "key" => SignerKind::Key,
        "keyless" => SignerKind::Keyless,
        other => return Err(format!("signer kind `{other}` is not `key` or `keyless`")),
    };
    let issuer = match (kind, &s.issuer) {
        (SignerKind::Key, None) => "key".to_owned(),
        (_, Some(issuer)) => issuer.clone(),
        (_, None) => return Err("a keyless signer needs an `issuer`".into()),
    };
    Ok(Signer {
        kind,
        identity: s.identity.clone(),
        issuer,
        claims: Default::default(),
    })
}

fn facts(name: &str, a: &TestArtifact) -> Result<Facts, String> {
    let repository = a
        .repository
        .clone()
        .unwrap_or_else(|| "registry.example/plugin".into());
    // As a run names them: a layout's registry is `oci-layout`.
    let registry = if repository.starts_with("oci-layout:") {
        "oci-layout".to_owned()
    } else {
        repository
            .split_once('/')
            .map_or(repository.as_str(), |(r, _)| r)
            .to_owned()
    };
    let kind = match a.kind.as_deref().unwrap_or("module") {
        "module" => WasmKind::Module,
        "component" => WasmKind::Component,
        other => return Err(format!("kind `{other}` is not `module` or `component`")),
    };
    if a.provenance.is_some() && !a.provenances.is_empty() {
        return Err("give `provenance` or `provenances`, not both".into());
    }
    let provenances = a
        .provenance
        .iter()
        .chain(&a.provenances)
        .map(|p| {
            Ok(Provenance {
                predicate_type: p.predicate_type.clone(),
                builder_id: p.builder_id.clone(),
                source_repository: p.source_repository.clone(),
                source_ref: p.source_ref.clone(),
                signer: signer(&p.signer)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Facts::new(
        a.digest
            .clone()
            .unwrap_or_else(|| Digest::of(name.as_bytes())),
        kind,
        a.size_bytes.unwrap_or(1000),
        registry,
        repository,
        a.signers.iter().map(signer).collect::<Result<_, _>>()?,
        provenances,
    ))
}

fn request(r: &TestRequest) -> Result<Request, String> {
    let resource = || {
        r.resource
            .clone()
            .ok_or_else(|| format!("`{}` needs a `resource`", r.action))
    };
    let limits_only_for_instantiate = r.action != "instantiate"
        && (r.memory_bytes.is_some() || r.timeout_ms.is_some() || r.fuel.is_some());
    if limits_only_for_instantiate {
        return Err("`memory_bytes`, `timeout_ms` and `fuel` go with `instantiate` only".into());
    }
    let pod_namespace = r
        .resource
        .as_deref()
        .filter(|_| r.action == "instantiate")
        .and_then(|resource| resource.strip_prefix("k8s/"));
    if r.pod.is_some() && pod_namespace.is_none() {
        return Err("`pod` goes with `instantiate` on `k8s/NAMESPACE` only".into());
    }
    Ok(match r.action.as_str() {
        "instantiate" => Request::Instantiate {
            memory_bytes: r
                .memory_bytes
                .unwrap_or(crate::sandbox::limits::DEFAULT_MEMORY_BYTES),
            timeout_ms: r.timeout_ms.unwrap_or(10_000),
            // No `fuel`: unmetered; `fuel = 0` is metered with none.
            fuel: r.fuel,
            // No `resource`, or `cli`: `warrant run`; `k8s/NAMESPACE` (with `pod`): a pod's
            // container under the containerd shim; any other: that `warrant serve` tenant.
            runtime: match (r.resource.as_deref(), pod_namespace) {
                (_, Some(namespace)) => {
                    let pod = r
                        .pod
                        .as_deref()
                        .ok_or("`instantiate` on `k8s/NAMESPACE` needs a `pod`")?;
                    crate::policy::Runtime::pod(namespace, pod)?
                }
                (None | Some("cli"), None) => crate::policy::Runtime::Cli,
                (Some(name), None) => crate::policy::Runtime::Tenant(name.to_owned()),
            },
        },
        "fs.read" => Request::FsRead(resource()?.into()),
        "fs.write" => Request::FsWrite(resource()?.into()),
        "env.read" => Request::EnvRead(resource()?),
        // Hosts as `--allow-net` asks for them: canonical, or refused.
        "net.connect" => Request::NetConnect(crate::policy::canonical_host_port(&resource()?)?),
        "http.outgoing" => Request::HttpOutgoing(crate::policy::canonical_host_port(&resource()?)?),
        other => return Err(format!("unknown action `{other}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
@id("keyed")
permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.signer.kind == "key" && principal.signer.identity == "sha256:aa" };
"#;

    fn run(cases: &str) -> Report {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), cases).unwrap();
        let policies =
            Policies::from_sources(&[(std::path::PathBuf::from("p.cedar"), POLICY.into())])
                .unwrap();
        run_dir(&policies, dir.path()).unwrap()
    }

    #[test]
    fn cases_pass_and_fail_on_the_decision_and_the_cited_policies() {
        let report = run(r#"
[[case]]
name = "signed by the key"
expect = "allow"
policies = ["keyed"]
request = { action = "instantiate" }
artifact = { signers = [{ kind = "key", identity = "sha256:aa" }] }

[[case]]
name = "unsigned"
expect = "deny"
request = { action = "instantiate" }

[[case]]
name = "wrong expectation"
expect = "allow"
request = { action = "fs.read", resource = "/srv" }

[[case]]
name = "wrong policy cited"
expect = "allow"
policies = ["other"]
request = { action = "instantiate" }
artifact = { signers = [{ kind = "key", identity = "sha256:aa" }] }
"#);
        let passed: Vec<bool> = report.results.iter().map(|r| r.passed).collect();
        assert_eq!(passed, vec![true, true, false, false], "{report:?}");
        assert_eq!(report.failed(), 2);
    }

    #[test]
    fn an_evaluation_error_is_its_own_expectation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            r#"
[[case]]
name = "overflow"
expect = "error"
request = { action = "instantiate", memory_bytes = 1048576 }

[[case]]
name = "overflow is not a plain deny"
expect = "deny"
request = { action = "instantiate", memory_bytes = 1048576 }

[[case]]
name = "no overflow at zero"
expect = "error"
request = { action = "instantiate", memory_bytes = 0 }
"#,
        )
        .unwrap();
        let policy = "@id(\"o\")\nforbid (principal, action == Warrant::Action::\"instantiate\", resource)\nwhen { context.memoryBytes * 9223372036854775807 > 0 };\n";
        let policies =
            Policies::from_sources(&[(std::path::PathBuf::from("p.cedar"), policy.into())])
                .unwrap();
        let report = run_dir(&policies, dir.path()).unwrap();
        let passed: Vec<bool> = report.results.iter().map(|r| r.passed).collect();
        assert_eq!(passed, vec![true, false, false], "{report:?}");
    }

    /// Several provenances are each evaluated; the older single `provenance` still reads.
    #[test]
    fn a_case_may_give_several_provenances() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            r#"
[[case]]
name = "a tag build and a branch build: the branch forbids"
expect = "deny"
policies = ["no-branch-builds"]
request = { action = "instantiate" }
[case.artifact]
signers = [{ kind = "key", identity = "sha256:aa" }]
[[case.artifact.provenances]]
builder_id = "b"
source_ref = "refs/tags/v1"
signer = { kind = "key", identity = "sha256:aa" }
[[case.artifact.provenances]]
builder_id = "b"
source_ref = "refs/heads/feature"
signer = { kind = "key", identity = "sha256:aa" }

[[case]]
name = "one tag build"
expect = "allow"
request = { action = "instantiate" }
[case.artifact]
signers = [{ kind = "key", identity = "sha256:aa" }]
provenance = { builder_id = "b", source_ref = "refs/tags/v1", signer = { kind = "key", identity = "sha256:aa" } }

[[case]]
name = "both forms"
expect = "allow"
request = { action = "instantiate" }
[case.artifact]
provenance = { builder_id = "b", signer = { kind = "key", identity = "sha256:aa" } }
provenances = [{ builder_id = "b", signer = { kind = "key", identity = "sha256:aa" } }]
"#,
        )
        .unwrap();
        let policy = format!(
            "{POLICY}\n@id(\"no-branch-builds\")\nforbid (principal, action, resource)\n\
             when {{ principal has provenance && principal.provenance.sourceRef like \"refs/heads/*\" }};\n"
        );
        let policies =
            Policies::from_sources(&[(std::path::PathBuf::from("p.cedar"), policy)]).unwrap();
        let report = run_dir(&policies, dir.path()).unwrap();
        let passed: Vec<bool> = report.results.iter().map(|r| r.passed).collect();
        assert_eq!(passed, vec![true, true, false], "{report:?}");
        assert!(
            report.results[2]
                .detail
                .contains("give `provenance` or `provenances`, not both"),
            "{report:?}"
        );
    }

    /// The shipped starter set (`policies/`) passes every case of `policies/tests`.
    #[test]
    fn the_shipped_policies_pass_their_tests() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let policies = Policies::load(&dir).unwrap();
        let report = run_dir(&policies, &dir.join("tests")).unwrap();
        let failed: Vec<&CaseResult> = report.results.iter().filter(|r| !r.passed).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(report.passed() > 50, "{}", report.passed());
    }

    /// Every policy snippet the shipped policies' comments suggest is in those comments
    /// (joined across lines) and, put where the comment says, loads under strict validation.
    #[test]
    fn the_snippets_the_shipped_policies_suggest_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let comments = |file: &str| {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let lines: Vec<&str> = text
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix("//"))
                .collect();
            lines
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        const INSTANTIATE: &str =
            "permit (principal, action == Warrant::Action::\"instantiate\", resource)";
        const CONNECT: &str = "action == Warrant::Action::\"net.connect\"";
        // (file, snippets, the policy they make: `{0}`, `{1}` stand for the snippets)
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "keyed-signer.cedar",
                &["context has fuel && context.fuel <= 1000000"],
                "INSTANTIATE when { {0} };",
            ),
            (
                "keyed-signer.cedar",
                &["principal in Warrant::Repository::\"ghcr.io/acme/plugin\""],
                "INSTANTIATE when { {0} };",
            ),
            (
                "tenant-network.cedar",
                &["principal in Warrant::Registry::\"ghcr.io\""],
                "permit ({0}, CONNECT, resource);",
            ),
            (
                "tenant-network.cedar",
                &["resource == Warrant::Host::\"host:port\""],
                "permit (principal, CONNECT, {0});",
            ),
            (
                "tenant-network.cedar",
                &[
                    "resource is Warrant::Host",
                    "when { [Warrant::Host::\"a.example:443\", Warrant::Host::\"b.example:443\"].contains(resource) }",
                ],
                "permit (principal, CONNECT, {0}) {1};",
            ),
            (
                "provenance-files.cedar",
                &["principal.provenance.predicateType == \"https://slsa.dev/provenance/v1\""],
                "INSTANTIATE when { principal has provenance && {0} };",
            ),
        ];
        for (file, snippets, template) in cases {
            let comments = comments(file);
            let mut policy = template
                .replace("INSTANTIATE", INSTANTIATE)
                .replace("CONNECT", CONNECT);
            for (i, snippet) in snippets.iter().enumerate() {
                assert!(
                    comments.contains(&format!("`{snippet}`")),
                    "{file} no longer suggests `{snippet}`"
                );
                policy = policy.replace(&format!("{{{i}}}"), snippet);
            }
            let text = format!("@id(\"suggested\")\n{policy}\n");
            if let Err(e) = Policies::from_sources(&[(std::path::PathBuf::from(file), text)]) {
                panic!("{file}: {policy}: {e}");
            }
        }
        // What tenant-network.cedar suggested before: Cedar refuses a list in a scope.
        let list = format!(
            "@id(\"list\")\npermit (principal, {CONNECT}, \
             resource in [Warrant::Host::\"a:443\", Warrant::Host::\"b:443\"]);\n"
        );
        assert!(Policies::from_sources(&[(std::path::PathBuf::from("l.cedar"), list)]).is_err());
    }

    #[test]
    fn an_invalid_case_fails_with_its_reason() {
        let report = run(r#"
[[case]]
name = "keyless without issuer"
expect = "deny"
request = { action = "instantiate" }
artifact = { signers = [{ kind = "keyless", identity = "x" }] }
"#);
        assert!(!report.results[0].passed);
        assert!(report.results[0].detail.contains("needs an `issuer`"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "[[case]]\nname = \"x\"\nexpect = \"deny\"\nrequest = { action = \"instantiate\" }\nexpct = 1\n",
        )
        .unwrap();
        let policies = Policies::from_sources(&[]).unwrap();
        let err = run_dir(&policies, dir.path()).unwrap_err();
        assert!(err.contains("expct"), "{err}");
    }

    /// Finding: a test case could not ask as a pod does. `resource = "k8s/team"` was read as
    /// a `warrant serve` tenant of that name (parent `Runtime::"serve"`, no `context.pod`), so a
    /// pod policy's tests decided a request the shim never makes. It is now the pod's
    /// `Runtime::"k8s/team"` in `Runtime::"k8s"`, with `pod` as `context.pod`.
    #[test]
    fn finding_a_case_asks_as_a_pod_does() {
        let policies = Policies::from_sources(&[(
            std::path::PathBuf::from("pods.cedar"),
            r#"
@id("pods")
permit (principal, action == Warrant::Action::"instantiate", resource in Warrant::Runtime::"k8s");
@id("no-batch-pod")
forbid (principal, action == Warrant::Action::"instantiate", resource)
when { context has pod && context.pod == "batch" };
"#
            .into(),
        )])
        .unwrap();
        let report = run_text(
            &policies,
            "pods.toml",
            r#"
[[case]]
name = "a pod in team"
expect = "allow"
policies = ["pods"]
request = { action = "instantiate", resource = "k8s/team", pod = "web" }

[[case]]
name = "the forbidden pod"
expect = "deny"
policies = ["no-batch-pod"]
request = { action = "instantiate", resource = "k8s/team", pod = "batch" }

[[case]]
name = "the CLI is not a pod"
expect = "deny"
request = { action = "instantiate" }

[[case]]
name = "no pod name"
expect = "allow"
request = { action = "instantiate", resource = "k8s/team" }

[[case]]
name = "a pod name elsewhere"
expect = "deny"
request = { action = "env.read", resource = "HOME", pod = "web" }

[[case]]
name = "a namespace that is not a name"
expect = "allow"
request = { action = "instantiate", resource = "k8s/a/b", pod = "web" }
"#,
        )
        .unwrap();
        let results = &report.results;
        assert!(results[0].passed, "{}", results[0].detail);
        assert!(results[1].passed, "{}", results[1].detail);
        assert!(results[2].passed, "{}", results[2].detail);
        for (result, says) in [
            (&results[3], "needs a `pod`"),
            (&results[4], "`pod` goes with `instantiate`"),
            (&results[5], "namespace"),
        ] {
            assert!(!result.passed);
            assert!(result.detail.contains(says), "{}", result.detail);
        }
    }
}
