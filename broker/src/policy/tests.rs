//! The policy module's unit tests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cedar_policy::{Authorizer, Entities, Entity, Request as CedarRequest};
use registry_client::{Digest, WasmKind};

use super::eval::*;
use super::load::*;
use super::model::*;
use super::*;
use crate::attest::Provenance;
use crate::verify::{Signer, SignerKind};

const RELEASE: &str = "https://github.com/acme/plugin/.github/workflows/release.yml@refs/tags/v1";
const GITHUB: &str = "https://token.actions.githubusercontent.com";

fn load(files: &[(&str, &str)]) -> Result<Policies, PolicyError> {
    let sources: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(f, t)| (PathBuf::from(f), (*t).to_owned()))
        .collect();
    Policies::from_sources(&sources)
}

fn problems(files: &[(&str, &str)]) -> Vec<Problem> {
    match load(files) {
        Err(PolicyError::Invalid(p)) => p,
        other => panic!("expected problems, got {other:?}"),
    }
}

fn keyless(identity: &str) -> Signer {
    Signer {
        kind: SignerKind::Keyless,
        identity: identity.into(),
        issuer: GITHUB.into(),
        claims: BTreeMap::new(),
    }
}

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

fn instantiate() -> Request {
    Request::Instantiate {
        memory_bytes: 1 << 20,
        timeout_ms: 1000,
        fuel: None,
        runtime: crate::policy::Runtime::Cli,
    }
}

const PERMIT_RELEASE: &str = r#"
@id("release-may-run")
permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.signer.kind == "keyless"
    && principal.signer.issuer == "https://token.actions.githubusercontent.com"
    && principal.signer.identity like "https://github.com/acme/*/.github/workflows/release.yml@refs/tags/*"
    && context.memoryBytes <= 268435456 };
"#;

#[test]
fn the_embedded_schema_parses() {
    schema().unwrap();
}

#[test]
fn no_policy_denies_everything() {
    let policies = load(&[]).unwrap();
    assert!(policies.is_empty());
    let d = policies.decide(&facts(vec![keyless(RELEASE)]), &instantiate());
    assert!(!d.allowed);
    assert!(d.determining.is_empty());
    assert_eq!(d.explanation(), "denied: no policy permits it");
}

#[test]
fn a_permit_allows_and_is_cited() {
    let policies = load(&[("p.cedar", PERMIT_RELEASE)]).unwrap();
    let d = policies.decide(&facts(vec![keyless(RELEASE)]), &instantiate());
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.determining, vec!["release-may-run".to_owned()]);
    assert_eq!(
        policies.source_of("release-may-run"),
        Some((Path::new("p.cedar"), 2))
    );
    // Another identity, or no signature, is denied.
    let d = policies.decide(
        &facts(vec![keyless("https://github.com/evil/x")]),
        &instantiate(),
    );
    assert!(!d.allowed);
    assert!(!policies.decide(&facts(Vec::new()), &instantiate()).allowed);
}

#[test]
fn identity_and_issuer_bind_within_one_signature() {
    // One signature has the identity, another the issuer: neither satisfies the policy.
    let policies = load(&[("p.cedar", PERMIT_RELEASE)]).unwrap();
    let right_identity_wrong_issuer = Signer {
        issuer: "https://accounts.google.com".into(),
        ..keyless(RELEASE)
    };
    let right_issuer_wrong_identity = keyless("https://github.com/evil/x");
    let d = policies.decide(
        &facts(vec![
            right_identity_wrong_issuer,
            right_issuer_wrong_identity,
        ]),
        &instantiate(),
    );
    assert!(!d.allowed, "{d:?}");
}

#[test]
fn a_forbid_for_any_signature_wins() {
    let forbid = r#"
@id("no-evil")
forbid (principal, action, resource) when { principal.signer.identity like "*evil*" };
"#;
    let policies = load(&[("p.cedar", PERMIT_RELEASE), ("f.cedar", forbid)]).unwrap();
    let d = policies.decide(
        &facts(vec![keyless(RELEASE), keyless("https://github.com/evil/x")]),
        &instantiate(),
    );
    assert!(!d.allowed);
    assert_eq!(d.determining, vec!["no-evil".to_owned()]);
    assert_eq!(d.explanation(), "forbidden by `no-evil`");
}

/// Finding (found by the containerd shim's tests): the screen answered `context has pod` as
/// false, so a `forbid` on a pod's name never applied and the pod ran.
#[test]
fn finding_a_forbid_on_context_pod_applies() {
    let policies = r#"
@id("pods")
permit (principal, action == Warrant::Action::"instantiate", resource in Warrant::Runtime::"k8s");
@id("no-forbidden-pod")
forbid (principal, action == Warrant::Action::"instantiate", resource)
when { context has pod && context.pod == "forbidden" };
@id("not-fuel")
forbid (principal, action == Warrant::Action::"instantiate", resource)
when { context has fuel };
"#;
    let policies = load(&[("p.cedar", policies)]).unwrap();
    let pod = |name: &str| Request::Instantiate {
        memory_bytes: 1 << 20,
        timeout_ms: 1000,
        fuel: None,
        runtime: Runtime::pod("team", name).unwrap(),
    };
    let facts = facts(vec![keyless(RELEASE)]);
    let d = policies.decide(&facts, &pod("forbidden"));
    assert!(!d.allowed);
    assert_eq!(d.determining, vec!["no-forbidden-pod".to_owned()]);
    assert!(policies.decide(&facts, &pod("allowed")).allowed);
    // The CLI has no pod: the permit does not cover it, and nothing errs.
    assert!(!policies.decide(&facts, &instantiate()).allowed);
    for name in ["", "a/b", "x\u{1b}[2J", &"n".repeat(254)] {
        assert!(Runtime::pod("team", name).is_err(), "{name:?}");
        assert!(Runtime::pod(name, "p").is_err(), "{name:?}");
    }
}

#[test]
fn an_erroring_forbid_beside_permit_all_denies() {
    let files = [
        (
            "a.cedar",
            "@id(\"all\")\npermit (principal, action, resource);\n",
        ),
        (
            "b.cedar",
            "@id(\"overflow\")\nforbid (principal, action == Warrant::Action::\"instantiate\", resource)\n\
             when { context.memoryBytes * 9223372036854775807 > 0 };\n",
        ),
    ];
    let policies = load(&files).unwrap();
    let d = policies.decide(&facts(vec![keyless(RELEASE)]), &instantiate());
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.errors.len(), 1, "{d:?}");
    assert!(
        d.explanation().starts_with("denied: evaluation error"),
        "{}",
        d.explanation()
    );
}

#[test]
fn directories_are_a_hierarchy() {
    let p = r#"
@id("data")
permit (principal, action == Warrant::Action::"fs.read", resource in Warrant::Dir::"/srv/data");
"#;
    let policies = load(&[("p.cedar", p)]).unwrap();
    let f = facts(vec![keyless(RELEASE)]);
    for (path, allowed) in [
        ("/srv/data", true),
        ("/srv/data/in", true),
        ("/srv/data/in/deep/er", true),
        ("/srv/database", false),
        ("/srv", false),
        ("/", false),
    ] {
        let d = policies.decide(&f, &Request::FsRead(PathBuf::from(path)));
        assert_eq!(d.allowed, allowed, "{path}: {d:?}");
    }
    let d = policies.decide(&f, &Request::FsWrite(PathBuf::from("/srv/data")));
    assert!(!d.allowed);
    // `.` and extra slashes are the same directory; `..` and relative paths are denied
    // with an error, never matched.
    for same in ["/srv/./data", "/srv//data/", "/srv/data/."] {
        assert!(
            policies
                .decide(&f, &Request::FsRead(PathBuf::from(same)))
                .allowed,
            "{same}"
        );
    }
    for bad in ["/srv/data/../etc", "srv/data", "/srv/data/.."] {
        let d = policies.decide(&f, &Request::FsRead(PathBuf::from(bad)));
        assert!(!d.allowed && !d.errors.is_empty(), "{bad}: {d:?}");
    }
}

#[test]
fn non_utf8_paths_are_refused() {
    use std::os::unix::ffi::OsStrExt as _;
    let path = Path::new(std::ffi::OsStr::from_bytes(b"/srv/\xff"));
    assert!(path_text(path).unwrap_err().contains("not UTF-8"));
}

/// Every shape `entities` builds (all request kinds, provenance, no signers, several)
/// conforms to the schema.
#[test]
fn entities_conform_to_the_schema() {
    let mut policies = load(&[("p.cedar", PERMIT_RELEASE)]).unwrap();
    policies.check_entities = true;
    let provenance = Provenance {
        predicate_type: "https://slsa.dev/provenance/v1".into(),
        builder_id: "b".into(),
        source_repository: "r".into(),
        source_ref: "f".into(),
        signer: keyless(RELEASE),
    };
    let requests = vec![
        instantiate(),
        Request::FsRead(PathBuf::from("/srv/data/in")),
        Request::FsWrite(PathBuf::from("/srv/data")),
        Request::EnvRead("LOG_LEVEL".into()),
        Request::NetConnect("api.example:443".into()),
        Request::HttpOutgoing("api.example:443".into()),
    ];
    for signers in [
        Vec::new(),
        vec![keyless(RELEASE), Signer::key("sha256:aa".into())],
    ] {
        let mut f = facts(signers.clone());
        f.provenances = vec![provenance.clone()];
        for signer in signers.iter().chain([&Signer::none()]) {
            policies
                .entities(&f, signer, Some(&provenance), &requests)
                .unwrap();
            policies.entities(&f, signer, None, &requests).unwrap();
        }
    }
}

/// A memo that vouches for the keys it was told, and counts what it was asked.
#[derive(Default)]
struct Memo {
    known: std::sync::Mutex<Vec<[u8; 32]>>,
    vouch_all: bool,
}

impl ValidationMemo for Memo {
    fn vouches(&self, key: &[u8; 32]) -> bool {
        self.vouch_all || self.known.lock().unwrap().contains(key)
    }
    fn remember(&self, key: &[u8; 32]) {
        self.known.lock().unwrap().push(*key);
    }
}

/// Ill-typed (a string compared with a number), but parses and has an id.
const ILL_TYPED: &str =
    "@id(\"bad\")\npermit (principal, action, resource) when { principal.digest > 3 };";

/// Validation is skipped exactly when the memo vouches for the exact sources: a valid set
/// is remembered under its key, an invalid one is refused and never remembered, and a memo
/// that vouches for anything shows what it is trusted with (why it must be authenticated).
#[test]
fn the_validation_memo_is_asked_for_the_exact_sources() {
    let sources = |text: &str| vec![(PathBuf::from("p.cedar"), text.to_owned())];
    let memo = Memo::default();
    let valid = sources(PERMIT_RELEASE);
    Policies::from_sources_with(&valid, Some(&memo)).unwrap();
    assert_eq!(*memo.known.lock().unwrap(), vec![validation_key(&valid)]);
    // Vouched now: loads without validating (and without the schema).
    let again = Policies::from_sources_with(&valid, Some(&memo)).unwrap();
    assert!(again.schema.get().is_none());
    assert_eq!(memo.known.lock().unwrap().len(), 1);
    // Invalid: refused and not remembered.
    let invalid = sources(ILL_TYPED);
    assert!(matches!(
        Policies::from_sources_with(&invalid, Some(&memo)),
        Err(PolicyError::Invalid(_))
    ));
    assert_eq!(memo.known.lock().unwrap().len(), 1);
    // A memo that vouches for everything lets the ill-typed set through: the memo is
    // trusted with exactly that, so the CLI's is authenticated and keyed by content.
    let credulous = Memo {
        vouch_all: true,
        ..Memo::default()
    };
    assert!(Policies::from_sources_with(&invalid, Some(&credulous)).is_ok());
    // Parse errors and ids are checked whatever the memo says.
    assert!(
        Policies::from_sources_with(
            &sources("permit (principal, action, resource);"),
            Some(&credulous)
        )
        .is_err()
    );
    assert!(Policies::from_sources_with(&sources("permit (principal"), Some(&credulous)).is_err());
}

#[derive(Default)]
struct Runs(std::sync::Mutex<HashMap<[u8; 32], String>>);

impl DecisionMemo for Runs {
    fn recall(&self, key: &[u8; 32]) -> Option<String> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn remember(&self, key: &[u8; 32], body: &str) {
        self.0.lock().unwrap().insert(*key, body.to_owned());
    }
}

/// A run whose every request is allowed is remembered, and the grant recalled for exactly
/// the same sources, facts and requests equals the one decided; any other facts, requests
/// or sources recall nothing, and a run with a denial (dropped or not) is not remembered.
#[test]
fn remembered_decisions_give_the_same_grant_for_exactly_the_same_run() {
    let text = format!(
        "{PERMIT_RELEASE}\n@id(\"env\")\npermit (principal, action == Warrant::Action::\"env.read\", resource == Warrant::EnvVar::\"LOG_LEVEL\");"
    );
    let sources = vec![(PathBuf::from("p.cedar"), text)];
    let key = validation_key(&sources);
    let policies = Policies::from_sources(&sources).unwrap();
    let memo = Runs::default();
    let f = facts(vec![keyless(RELEASE)]);
    let asks = |env: &[&str], memory_bytes: u64| Asks {
        memory_bytes,
        timeout_ms: 1000,
        fuel: None,
        dirs: Vec::new(),
        env: env.iter().map(|n| ((*n).to_owned(), "v".into())).collect(),
        net: Vec::new(),
        ..Asks::default()
    };
    let allowed = asks(&["LOG_LEVEL"], 1 << 20);
    assert!(remembered_grant(&memo, &key, &f, &allowed).is_none());
    let decided = policies
        .grant_remembering(&f, &allowed, false, Some((&memo, &key)))
        .unwrap();
    let recalled = remembered_grant(&memo, &key, &f, &allowed).unwrap();
    assert_eq!(recalled, decided);
    assert_eq!(recalled.decisions()[0].determining, vec!["release-may-run"]);
    // Anything else recalls nothing.
    assert!(remembered_grant(&memo, &key, &f, &asks(&["LOG_LEVEL"], 2 << 20)).is_none());
    assert!(remembered_grant(&memo, &key, &f, &asks(&[], 1 << 20)).is_none());
    let other = facts(vec![keyless(RELEASE), Signer::key("sha256:aa".into())]);
    assert!(remembered_grant(&memo, &key, &other, &allowed).is_none());
    assert!(remembered_grant(&memo, &[7; 32], &f, &allowed).is_none());
    // Denied, or allowed only by dropping a denied request: not remembered.
    let denied = asks(&["LOG_LEVEL", "SECRET"], 1 << 20);
    assert!(
        policies
            .grant_remembering(&f, &denied, false, Some((&memo, &key)))
            .is_err()
    );
    let dropped = policies
        .grant_remembering(&f, &denied, true, Some((&memo, &key)))
        .unwrap();
    assert_eq!(dropped.env().len(), 1);
    assert_eq!(memo.0.lock().unwrap().len(), 1);
    assert!(remembered_grant(&memo, &key, &f, &denied).is_none());
    // A remembered body that does not fit the requests is no grant.
    let k = decision_key(&key, &f, &allowed.requests());
    memo.remember(&k, r#"{"policyHash":"h","determining":[["a"]]}"#);
    assert!(remembered_grant(&memo, &key, &f, &allowed).is_none());
}

/// The key changes with any byte of any source, its name, and the order of sources.
#[test]
fn the_validation_key_covers_every_source_byte_and_name() {
    let a = (PathBuf::from("a.cedar"), PERMIT_RELEASE.to_owned());
    let b = (PathBuf::from("b.cedar"), ILL_TYPED.to_owned());
    let base = validation_key(&[a.clone(), b.clone()]);
    assert_ne!(base, validation_key(&[b.clone(), a.clone()]));
    assert_ne!(base, validation_key(std::slice::from_ref(&a)));
    assert_ne!(
        base,
        validation_key(&[(PathBuf::from("c.cedar"), a.1.clone()), b.clone()])
    );
    // Moving a byte from one source to the next is a different key too.
    let (head, tail) = PERMIT_RELEASE.split_at(10);
    assert_ne!(
        validation_key(&[
            (a.0.clone(), head.to_owned()),
            (b.0.clone(), tail.to_owned())
        ]),
        validation_key(&[
            (a.0.clone(), format!("{head}{}", &tail[..1])),
            (b.0.clone(), tail[1..].to_owned())
        ])
    );
    for at in 0..PERMIT_RELEASE.len() {
        let mut bytes = PERMIT_RELEASE.as_bytes().to_vec();
        bytes[at] ^= 1;
        let Ok(flipped) = String::from_utf8(bytes) else {
            continue;
        };
        assert_ne!(
            base,
            validation_key(&[(a.0.clone(), flipped), b.clone()]),
            "byte {at}"
        );
    }
    assert_eq!(base, validation_key(&[a, b]));
}

/// Requests are built without the schema's check (it costs a parse of the schema per
/// process): every kind of request passes that check.
#[test]
fn every_request_conforms_to_the_schema() {
    let policies = load(&[("p.cedar", PERMIT_RELEASE)]).unwrap();
    let schema = schema().unwrap();
    let f = facts(vec![keyless(RELEASE)]);
    for request in [
        instantiate(),
        Request::Instantiate {
            memory_bytes: u64::MAX,
            timeout_ms: u64::MAX,
            fuel: Some(u64::MAX),
            runtime: crate::policy::Runtime::Cli,
        },
        Request::FsRead(PathBuf::from("/srv/data/in")),
        Request::FsWrite(PathBuf::from("/")),
        Request::EnvRead("LOG_LEVEL".into()),
        Request::NetConnect("api.example:443".into()),
        Request::HttpOutgoing("[::1]:443".into()),
    ] {
        let unchecked = policies.cedar_request(&f, &request).unwrap();
        let (Some(principal), Some(action), Some(resource), Some(context)) = (
            unchecked.principal(),
            unchecked.action(),
            unchecked.resource(),
            unchecked.context(),
        ) else {
            panic!("{request}: a part is missing");
        };
        CedarRequest::new(
            principal.clone(),
            action.clone(),
            resource.clone(),
            context.clone(),
            Some(&schema),
        )
        .unwrap_or_else(|e| panic!("{request}: {e}"));
    }
}

/// The stores after the first are copies with the artifact replaced: each equals the
/// store built from scratch for its signer (ancestors included).
#[test]
fn a_copied_store_equals_one_built_from_scratch() {
    let policies = load(&[(
        "p.cedar",
        "@id(\"p\")\npermit (principal, action, resource);",
    )])
    .unwrap();
    let signers = vec![
        keyless(RELEASE),
        Signer::key("sha256:aa".into()),
        keyless("https://github.com/evil/y"),
    ];
    let mut f = facts(signers.clone());
    f.provenances = ["b1", "b2"]
        .into_iter()
        .map(|builder| Provenance {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            builder_id: builder.into(),
            source_repository: "r".into(),
            source_ref: "refs/tags/v1".into(),
            signer: Signer::key("sha256:aa".into()),
        })
        .collect();
    let requests = [
        instantiate(),
        Request::FsRead(PathBuf::from("/srv/data/in")),
        Request::EnvRead("LOG_LEVEL".into()),
        Request::NetConnect("api.example:443".into()),
    ];
    let json = |e: &Entities| {
        let mut all: Vec<String> = e
            .iter()
            .map(|entity| {
                // Parents are a set: compare them in one order.
                let mut json = entity.to_json_value().unwrap();
                if let Some(serde_json::Value::Array(parents)) = json.get_mut("parents") {
                    parents.sort_by_key(ToString::to_string);
                }
                json.to_string()
            })
            .collect();
        all.sort();
        all
    };
    let provenances: Vec<Option<&Provenance>> = f.evaluated_provenances();
    let mut stores = Stores::new(&policies, &f, &signers, &provenances, &requests);
    for (i, signer) in signers.iter().enumerate().rev() {
        for (j, provenance) in provenances.iter().enumerate().rev() {
            let copied = json(stores.get(i, j).as_ref().unwrap());
            let scratch = json(
                &policies
                    .entities(&f, signer, *provenance, &requests)
                    .unwrap(),
            );
            assert_eq!(copied, scratch, "signer {i}, provenance {j}");
            assert!(copied.iter().any(|e| e.contains(&signer.identity)));
            if let Some(p) = provenance {
                assert!(copied.iter().any(|e| e.contains(&p.builder_id)));
            }
        }
    }
}

impl Policies {
    /// The rule applied the plain way: the whole set, once per (signer, provenance) pair,
    /// entities checked.
    pub(super) fn evaluate_naive(&self, facts: &Facts, request: &Request) -> Decision {
        let none = [Signer::none()];
        let signers: &[Signer] = if facts.signers.is_empty() {
            &none
        } else {
            &facts.signers
        };
        let mut tally = Tally::default();
        let cedar_request = match self.cedar_request(facts, request) {
            Ok(r) => r,
            Err(e) => {
                tally.error(e);
                return tally.decision(request);
            }
        };
        let requests = std::slice::from_ref(request);
        for signer in signers {
            for provenance in facts.evaluated_provenances() {
                let entities = Entities::from_entities(
                    self.entities_unchecked(facts, signer, provenance, requests),
                    Some(self.schema.get_or_init(|| schema().unwrap())),
                )
                .unwrap();
                let response =
                    Authorizer::new().is_authorized(&cedar_request, &self.all, &entities);
                tally.add(&self.all, &response);
            }
        }
        tally.decision(request)
    }

    fn entities_unchecked(
        &self,
        facts: &Facts,
        signer: &Signer,
        provenance: Option<&Provenance>,
        requests: &[Request],
    ) -> Vec<Entity> {
        let built = self.entities(facts, signer, provenance, requests).unwrap();
        built.iter().cloned().collect()
    }
}

/// The sliced, grouped, signer-split evaluation equals the plain one on thousands of
/// generated policy sets, artifacts and requests (a fixed-seed generator, so failures
/// reproduce).
#[test]
fn the_indexed_evaluation_equals_the_plain_one() {
    const TEMPLATES: &[&str] = &[
        "permit (principal, action, resource);",
        "permit (principal, action == Warrant::Action::\"instantiate\", resource) when { principal.signer.kind == \"key\" };",
        "permit (principal, action == Warrant::Action::\"instantiate\", resource) when { principal.signer.identity like \"https://github.com/acme/*\" && context.memoryBytes <= 1048576 };",
        "forbid (principal, action, resource) when { principal.signer.identity like \"*evil*\" };",
        "forbid (principal, action, resource) when { principal.sizeBytes > 5000 };",
        "permit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv\");",
        "permit (principal, action in [Warrant::Action::\"fs.read\", Warrant::Action::\"fs.write\"], resource in Warrant::Dir::\"/srv/data\") when { principal.signer.kind == \"keyless\" };",
        "forbid (principal, action == Warrant::Action::\"fs.write\", resource == Warrant::Dir::\"/srv/data\");",
        "permit (principal, action == Warrant::Action::\"fs.write\", resource is Warrant::Dir) when { principal.signers.contains({kind: \"key\", identity: \"sha256:aa\", issuer: \"key\"}) };",
        "permit (principal, action == Warrant::Action::\"env.read\", resource == Warrant::EnvVar::\"LOG_LEVEL\");",
        "permit (principal, action == Warrant::Action::\"env.read\", resource) when { principal.signer.kind != \"none\" };",
        "forbid (principal, action == Warrant::Action::\"env.read\", resource == Warrant::EnvVar::\"SECRET\");",
        "permit (principal, action == Warrant::Action::\"net.connect\", resource == Warrant::Host::\"api.example:443\") when { principal in Warrant::Repository::\"ghcr.io/acme/plugin\" };",
        "permit (principal, action, resource is Warrant::Host) when { principal.signer.issuer == \"https://issuer.example\" };",
        "forbid (principal, action == Warrant::Action::\"instantiate\", resource) when { context.memoryBytes * 9223372036854775807 > 0 && principal.signer.kind == \"keyless\" };",
        "forbid (principal, action in [Warrant::Action::\"net.connect\", Warrant::Action::\"instantiate\"], resource) when { principal.digest == \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" };",
        "permit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv/data/in\") when { principal has provenance && principal.provenance.signer.kind == \"key\" };",
        "permit (principal, action == Warrant::Action::\"instantiate\", resource == Warrant::Runtime::\"cli\") when { principal.signer.kind == \"none\" };",
        "forbid (principal, action, resource) when { principal.sizeBytes * 9223372036854775807 > 0 && principal.signer.kind == \"none\" };",
        "permit (principal, action, resource) when { principal in Warrant::Repository::\"ghcr.io/acme/plugin\" };",
        "forbid (principal, action, resource) when { context has memoryBytes && context.memoryBytes > 1048576 && principal.signer.kind != \"key\" };",
        "permit (principal, action, resource) when { resource is Warrant::EnvVar && principal.signer.kind == \"keyless\" };",
        // Every provenance is seen: a forbid on any of them wins.
        "forbid (principal, action, resource) when { principal has provenance && principal.provenance.sourceRef like \"refs/heads/*\" };",
        "permit (principal, action == Warrant::Action::\"instantiate\", resource) when { principal has provenance && principal.provenance.builderId == \"b1\" };",
        "permit (principal, action == Warrant::Action::\"env.read\", resource) when { principal has provenance && principal.provenance.signer == principal.signer };",
        // Escaped and indexed attribute forms read what the dotted ones read.
        "forbid (principal, action, resource) when { principal[\"sign\\u{65}r\"].identity like \"*evil*\" };",
        "permit (principal, action == Warrant::Action::\"fs.write\", resource) when { principal[\"signer\"][\"kind\"] == \"key\" };",
        "forbid (principal, action == Warrant::Action::\"instantiate\", resource) when { principal has provenance && principal[\"provenance\"][\"build\\u{65}rId\"] == \"b2\" };",
        "permit (principal, action == Warrant::Action::\"net.connect\", resource) when { principal has provenance && principal[\"provenance\"].signer[\"kind\"] == \"key\" && principal[\"signer\"].kind == \"keyless\" };",
        // Fuel only when metered.
        "permit (principal, action == Warrant::Action::\"instantiate\", resource) when { context has fuel && context.fuel <= 1000 };",
        "forbid (principal, action == Warrant::Action::\"instantiate\", resource) unless { context has fuel };",
    ];
    let signer_pool = [
        Signer::key("sha256:aa".into()),
        Signer::key("sha256:bb".into()),
        keyless("https://github.com/acme/plugin/x"),
        keyless("https://github.com/evil/y"),
        Signer {
            issuer: "https://issuer.example".into(),
            ..keyless("https://github.com/acme/z")
        },
    ];
    let requests = super::screen_tests::requests();
    let mut seed: u64 = 0x5eed;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        usize::try_from(seed >> 33).unwrap() % n
    };
    let mut compared = 0;
    for _ in 0..300 {
        let count = 1 + next(8);
        let text: String = (0..count)
            .map(|i| format!("@id(\"p{i}\")\n{}\n", TEMPLATES[next(TEMPLATES.len())]))
            .collect();
        let policies = load(&[("p.cedar", text.as_str())]).unwrap();
        for _ in 0..8 {
            let signers: Vec<Signer> = (0..next(4))
                .map(|_| signer_pool[next(signer_pool.len())].clone())
                .collect();
            let mut f = Facts::new(
                Digest::of(&[u8::try_from(next(3)).unwrap()]),
                WasmKind::Module,
                [1000, 9000][next(2)] as u64,
                "ghcr.io".into(),
                ["ghcr.io/acme/plugin", "ghcr.io/other/x"][next(2)].into(),
                signers,
                Vec::new(),
            );
            // 0–3 provenances, from builders `b1`/`b2`, tags or branches.
            f.provenances = (0..next(4))
                .map(|_| Provenance {
                    predicate_type: "https://slsa.dev/provenance/v1".into(),
                    builder_id: ["b1", "b2"][next(2)].into(),
                    source_repository: "r".into(),
                    source_ref: ["refs/tags/v1", "refs/heads/feature"][next(2)].into(),
                    signer: signer_pool[next(signer_pool.len())].clone(),
                })
                .collect();
            let indexed = policies.evaluate_all(&f, &requests);
            for (request, fast) in requests.iter().zip(indexed) {
                let plain = policies.evaluate_naive(&f, request);
                assert_eq!(fast.allowed, plain.allowed, "{text}\n{f:?}\n{request}");
                assert_eq!(fast.determining, plain.determining, "{text}\n{request}");
                assert_eq!(fast.errors, plain.errors, "{text}\n{request}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 300 * 8 * requests.len());
}

#[test]
fn dir_chains() {
    assert_eq!(
        dir_chain(Path::new("/srv/data/in/")).unwrap(),
        vec!["/srv/data/in", "/srv/data", "/srv", "/"]
    );
    assert_eq!(dir_chain(Path::new("/")).unwrap(), vec!["/"]);
}

#[test]
fn a_comment_quoting_a_policy_is_not_taken_for_it() {
    let text = "// @id(\"a\") permit (principal, action, resource);\n\
                @id(\"a\") permit (principal, action, resource);\n\
                @id(\"a\") permit (principal, action, resource);\n";
    let p = problems(&[("p.cedar", text)]);
    assert_eq!(
        p[0].to_string(),
        "p.cedar:3: policy `a`: duplicate `@id`: also at p.cedar:2"
    );
    let p = problems(&[(
        "p.cedar",
        "// permit (principal, action, resource);\npermit (principal, action, resource);\n",
    )]);
    assert_eq!(p[0].line, Some(2));
    // `//` inside a string is not a comment.
    assert_eq!(blank_comments("\"https://x\" // c"), "\"https://x\"     ");
}

#[test]
fn a_policy_without_an_id_is_refused_with_its_line() {
    let p = problems(&[(
        "p.cedar",
        "@id(\"ok\")\npermit (principal, action, resource);\n\npermit (principal, action, resource);\n",
    )]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, Some(4));
    assert!(p[0].message.contains("no `@id"), "{}", p[0]);
}

#[test]
fn duplicate_ids_are_refused_naming_both_places() {
    let one = "@id(\"x\")\npermit (principal, action, resource);\n";
    let p = problems(&[("a.cedar", one), ("b.cedar", one)]);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].to_string(),
        "b.cedar:1: policy `x`: duplicate `@id`: also at a.cedar:1"
    );
}

#[test]
fn parse_errors_name_file_and_line() {
    let p = problems(&[(
        "p.cedar",
        "@id(\"x\")\npermit (principal, action, resource)\nwhen { 1 + };\n",
    )]);
    assert_eq!(p[0].file, PathBuf::from("p.cedar"));
    assert_eq!(p[0].line, Some(3), "{p:?}");
}

#[test]
fn validation_errors_name_policy_and_line() {
    let p = problems(&[(
        "p.cedar",
        "\n\n@id(\"typo\")\npermit (principal, action, resource)\nwhen { principal.signr.kind == \"key\" };\n",
    )]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].policy.as_deref(), Some("typo"));
    assert_eq!(p[0].line, Some(5), "the line of the bad expression");
    assert!(p[0].message.contains("signr"), "{}", p[0]);
}

/// Fuel used to be `0` for an unmetered run, so `context.fuel <= N` permitted an unmetered
/// run. `fuel` is now in the context only when the run is metered: the bound must be
/// written `context has fuel && …`, which no unmetered run satisfies, and the old form is
/// refused when the policies are loaded.
#[test]
fn finding_fuel_an_unmetered_run_cannot_satisfy_a_fuel_bound() {
    let bounded = "@id(\"bounded\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\nwhen { context has fuel && context.fuel <= 1000000 };\n";
    let policies = load(&[("p.cedar", bounded)]).unwrap();
    let f = facts(vec![Signer::key("sha256:aa".into())]);
    let run = |fuel: Option<u64>| {
        policies
            .evaluate(
                &f,
                &Request::Instantiate {
                    memory_bytes: 1 << 20,
                    timeout_ms: 1000,
                    fuel,
                    runtime: crate::policy::Runtime::Cli,
                },
            )
            .allowed
    };
    assert!(!run(None), "an unmetered run is not within a fuel bound");
    assert!(run(Some(1000)));
    assert!(run(Some(1_000_000)));
    assert!(!run(Some(1_000_001)));
    let old = "@id(\"old\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\nwhen { context.fuel <= 1000000 };\n";
    let p = problems(&[("p.cedar", old)]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].policy.as_deref(), Some("old"));
    assert!(p[0].message.contains("fuel"), "{}", p[0]);
}

/// `tenant-network.cedar` suggests how to grant several hosts in one policy: the form it
/// suggests is Cedar the schema accepts, and the one it used to suggest (a list after
/// `resource in` in the scope) is not.
#[test]
fn the_multi_host_form_the_starter_set_suggests_is_valid() {
    let shipped = include_str!("../../../policies/tenant-network.cedar");
    let suggested =
        r#"[Warrant::Host::"a.example:443", Warrant::Host::"b.example:443"].contains(resource)"#;
    assert!(
        shipped.contains(suggested),
        "the comment changed: update this test"
    );
    let good = format!(
        "@id(\"hosts\")\npermit (principal in Warrant::Repository::\"ghcr.io/acme/plugin\", action == Warrant::Action::\"net.connect\", resource is Warrant::Host)\nwhen {{ {suggested} }};\n"
    );
    let policies = load(&[("p.cedar", good.as_str())]).unwrap();
    let mut f = facts(Vec::new());
    f.repository = "ghcr.io/acme/plugin".into();
    let connect = |host: &str| {
        policies
            .evaluate(&f, &Request::NetConnect(host.into()))
            .allowed
    };
    assert!(connect("a.example:443") && connect("b.example:443"));
    assert!(!connect("c.example:443"));
    let old = "@id(\"old\")\npermit (principal, action == Warrant::Action::\"net.connect\", resource in [Warrant::Host::\"a:443\", Warrant::Host::\"b:443\"]);\n";
    assert!(!problems(&[("p.cedar", old)]).is_empty());
}

/// Finding 6: hosts were decided as text and connected as addresses. Every spelling a
/// resolver reads as an address is either the canonical one or refused.
#[test]
fn finding_6_host_asks_are_decided_in_the_form_connected_to() {
    for (asked, decided) in [
        ("169.254.169.254:80", "169.254.169.254:80"),
        ("LOCALHOST:22", "localhost:22"),
        ("localhost.:22", "localhost:22"),
        ("Api.Example.COM.:443", "api.example.com:443"),
        ("[::1]:22", "[::1]:22"),
        ("[0:0:0:0:0:0:0:1]:22", "[::1]:22"),
        ("[2001:DB8::0:1]:443", "[2001:db8::1]:443"),
        ("[::ffff:169.254.169.254]:80", "169.254.169.254:80"),
        ("[::ffff:a9fe:a9fe]:80", "169.254.169.254:80"),
        ("1st.example:80", "1st.example:80"),
        ("a.0x1g:80", "a.0x1g:80"),
        ("xn--bcher-kva.example:443", "xn--bcher-kva.example:443"),
    ] {
        assert_eq!(
            canonical_host_port(asked).as_deref(),
            Ok(decided),
            "{asked}"
        );
    }
    for refused in [
        "2852039166:80",
        "0xa9fea9fe:80",
        "0XA9FEA9FE:80",
        "0251.0376.0251.0376:80",
        "169.254.43518:80",
        "127.1:22",
        "127.0.0.01:22",
        "1.2.3.04:80",
        "256.0.0.1:80",
        "example.123:80",
        "example.0x:80",
        "[fe80::1%eth0]:80",
        "[::1:80",
        "::1:80",
        "bücher.example:443",
        "under_score.example:80",
        "-lead.example:80",
        "host:0",
        "host:080",
        "host:+80",
        "host:65536",
        "host",
        ":80",
        ".:80",
    ] {
        assert!(canonical_host_port(refused).is_err(), "{refused}");
    }
    assert!(
        canonical_host_port("2852039166:80")
            .unwrap_err()
            .contains("would be read as the IP address `169.254.169.254`")
    );
    // A request for a host in another spelling than its canonical one (an embedder's
    // `Asks`) is an evaluation error: it is never granted.
    let policies = load(&[(
        "p.cedar",
        "@id(\"any\")\npermit (principal, action, resource);\n",
    )])
    .unwrap();
    let f = facts(Vec::new());
    let decision = policies.evaluate(&f, &Request::NetConnect("LOCALHOST:22".into()));
    assert!(!decision.allowed);
    assert!(
        decision.errors[0].contains("ask for `localhost:22`"),
        "{decision:?}"
    );
    assert!(
        policies
            .evaluate(&f, &Request::NetConnect("localhost:22".into()))
            .allowed
    );
}

#[test]
fn the_hash_ignores_file_order_but_not_content() {
    let a = "@id(\"a\")\npermit (principal, action, resource);\n";
    let b = "@id(\"b\")\nforbid (principal, action, resource);\n";
    let one = load(&[("1.cedar", a), ("2.cedar", b)]).unwrap();
    let two = load(&[("1.cedar", b), ("2.cedar", a)]).unwrap();
    assert_eq!(one.hash(), two.hash());
    let three = load(&[("1.cedar", a)]).unwrap();
    assert_ne!(one.hash(), three.hash());
}

fn instantiate_on(runtime: Runtime) -> Request {
    Request::Instantiate {
        memory_bytes: 1 << 20,
        timeout_ms: 1000,
        fuel: None,
        runtime,
    }
}

/// A serve tenant's `instantiate` is asked on `Runtime::"<name>"` in `Runtime::"serve"`: a
/// policy `in Runtime::"serve"` covers every tenant and none of `warrant run`; a policy `==
/// Runtime::"acme"` covers that tenant only; a `forbid` on one tenant leaves the others.
#[test]
fn tenant_runtimes_sit_under_serve_and_policies_scope_them() {
    let policies = load(&[(
        "serve.cedar",
        r#"
        @id("every-tenant")
        permit (principal, action == Warrant::Action::"instantiate", resource in Warrant::Runtime::"serve");
        @id("acme-outbound")
        permit (principal, action == Warrant::Action::"http.outgoing", resource == Warrant::Host::"api.example.com:443")
        ;
        @id("not-evil")
        forbid (principal, action == Warrant::Action::"instantiate", resource == Warrant::Runtime::"evil");
        "#,
    )])
    .unwrap();
    let f = facts(vec![keyless(RELEASE)]);
    let tenant = |name: &str| instantiate_on(Runtime::Tenant(name.into()));
    assert!(policies.decide(&f, &tenant("acme")).allowed);
    assert!(policies.decide(&f, &tenant("other")).allowed);
    assert!(!policies.decide(&f, &tenant("evil")).allowed);
    assert!(!policies.decide(&f, &instantiate_on(Runtime::Cli)).allowed);
    // The indexed evaluation and plain Cedar agree on every one.
    for request in [tenant("acme"), tenant("evil"), instantiate_on(Runtime::Cli)] {
        let screened = policies.decide(&f, &request);
        let plain = policies.evaluate_naive(&f, &request);
        assert_eq!(screened.allowed, plain.allowed, "{request}");
    }
    let only_acme = load(&[(
        "acme.cedar",
        r#"@id("acme") permit (principal, action == Warrant::Action::"instantiate", resource == Warrant::Runtime::"acme");"#,
    )])
    .unwrap();
    assert!(only_acme.decide(&f, &tenant("acme")).allowed);
    assert!(!only_acme.decide(&f, &tenant("acme-2")).allowed);
    assert!(!only_acme.decide(&f, &instantiate_on(Runtime::Cli)).allowed);
}

/// A tenant's asks carry its runtime and its outbound hosts; the grant keeps the allowed
/// outbound hosts only (with `drop_denied`), and the memo's key tells tenants apart.
#[test]
fn a_tenant_grant_keeps_only_the_allowed_outbound_hosts() {
    let policies = load(&[(
        "serve.cedar",
        r#"
        @id("tenants") permit (principal, action == Warrant::Action::"instantiate", resource in Warrant::Runtime::"serve");
        @id("api") permit (principal, action == Warrant::Action::"http.outgoing", resource == Warrant::Host::"api.example.com:443");
        "#,
    )])
    .unwrap();
    let f = facts(vec![keyless(RELEASE)]);
    let asks = Asks {
        memory_bytes: 1 << 20,
        timeout_ms: 1000,
        http: vec!["api.example.com:443".into(), "evil.example:443".into()],
        runtime: Runtime::Tenant("acme".into()),
        ..Asks::default()
    };
    assert!(policies.grant(&f, &asks, false).is_err());
    let grant = policies.grant(&f, &asks, true).unwrap();
    assert_eq!(grant.http(), ["api.example.com:443".to_owned()]);
    let key = |runtime: Runtime| {
        let asks = Asks {
            runtime,
            ..asks.clone()
        };
        decision_key(&[0; 32], &f, &asks.requests())
    };
    assert_ne!(
        key(Runtime::Tenant("acme".into())),
        key(Runtime::Tenant("other".into()))
    );
}

/// `principal.repository like "ghcr.io/acme/*"` covers every repository under that prefix,
/// and only those: the text is the canonical repository, lowercase host.
#[test]
fn the_repository_fact_matches_by_prefix() {
    let policies = load(&[(
        "acme.cedar",
        r#"@id("acme-org")
permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.repository like "ghcr.io/acme/*" };"#,
    )])
    .unwrap();
    let at = |repository: &str| {
        let registry = repository.split('/').next().unwrap_or_default().to_owned();
        Facts::new(
            Digest::of(repository.as_bytes()),
            WasmKind::Module,
            1000,
            registry,
            repository.into(),
            vec![keyless(RELEASE)],
            Vec::new(),
        )
    };
    for (repository, allowed) in [
        ("ghcr.io/acme/plugin", true),
        ("ghcr.io/acme/team/tool", true),
        ("ghcr.io/acme-evil/plugin", false),
        ("ghcr.io/acmeplugin", false),
        ("evil.example/ghcr.io/acme/plugin", false),
    ] {
        let decision = policies.evaluate(&at(repository), &instantiate());
        assert_eq!(decision.allowed, allowed, "{repository}");
    }
}

/// A bad `signer-groups.toml` refuses the whole directory, naming the file; a good one is part
/// of the set's hash (so remembered decisions cannot outlive a change to a group).
#[test]
fn signer_groups_are_validated_and_hashed_with_the_policies() {
    let policy = (
        "q.cedar",
        r#"@id("two")
permit (principal, action, resource)
when { principal.approvals.contains({group: "release", atLeast: 2}) };"#,
    );
    let group = |members: &[char]| {
        let members: Vec<String> = members
            .iter()
            .map(|c| {
                format!(
                    "{{ kind = \"key\", identity = \"sha256:{}\" }}",
                    c.to_string().repeat(64)
                )
            })
            .collect();
        format!(
            "[[group]]\nname = \"release\"\nsigners = [{}]\n",
            members.join(", ")
        )
    };
    let two = load(&[policy, ("signer-groups.toml", &group(&['a', 'b']))]).unwrap();
    let three = load(&[policy, ("signer-groups.toml", &group(&['a', 'b', 'c']))]).unwrap();
    let none = load(&[policy]).unwrap();
    assert_ne!(two.hash(), three.hash());
    assert_ne!(two.hash(), none.hash());
    let key = |c: char| Signer::key(format!("sha256:{}", c.to_string().repeat(64)));
    let signed = facts(vec![key('a'), key('c')]);
    assert!(!two.evaluate(&signed, &instantiate()).allowed);
    assert!(three.evaluate(&signed, &instantiate()).allowed);
    assert!(!none.evaluate(&signed, &instantiate()).allowed);

    let bad = problems(&[
        policy,
        (
            "signer-groups.toml",
            "[[group]]\nname = \"release\"\nsigners = []\n",
        ),
    ]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].file, PathBuf::from("signer-groups.toml"));
    assert!(bad[0].message.contains("give 1 to 64"), "{bad:?}");
}
