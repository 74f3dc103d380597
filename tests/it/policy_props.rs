//! Property tests of the policy evaluation rule: each request is evaluated once per verified
//! signer (once with kind `"none"` when there is none), and it is allowed iff at least one
//! evaluation allows, no evaluation is denied by a `forbid`, and no evaluation errors.
//!
//! Loading and strictly validating a policy set costs far more than deciding, so most
//! properties draw from pools of policy sets loaded once (a generated index picks one), and
//! decide with [`Policies::evaluate`] so that the decision cache cannot hide anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::LazyLock;

use broker::attest::Provenance;
use broker::policy::{Decision, Facts, Policies, Request};
use broker::verify::{Signer, SignerKind};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;
use registry_client::{Digest, WasmKind};

/// Identities and issuers come from small pools, so that signers collide.
const IDENTITIES: &[&str] = &["id-a", "id-b", "id-c"];
const ISSUERS: &[&str] = &["iss-1", "iss-2", "key"];
const PATHS: &[&str] = &[
    "/",
    "/srv",
    "/srv/data",
    "/srv/data/in",
    "/srv/database",
    "/srv//data/",
    "/etc",
    "/etc/ssl",
];
const ENV: &[&str] = &["LOG_LEVEL", "HOME"];
const HOSTS: &[&str] = &["api.example.com:443", "evil.example:80"];
const REPOSITORIES: &[&str] = &["ghcr.io/acme/plugin", "ghcr.io/evil/x"];
/// Interesting limits: 0 and 1 cannot overflow `* i64::MAX`; 2 and more can.
const NUMBERS: &[u64] = &[
    0,
    1,
    2,
    807,
    808,
    59_999,
    60_000,
    1 << 20,
    (1 << 20) + 1,
    1 << 30,
    (1 << 30) + 1,
    i64::MAX as u64,
    u64::MAX,
];

/// Policy bodies (without `@id`) that never mention `principal.signers`: with them, a
/// single-signer evaluation sees exactly what the same signer sees among others.
const TEMPLATES: &[(&str, &str)] = &[
    ("p-all", "permit (principal, action, resource);"),
    (
        "p-key",
        r#"permit (principal, action, resource) when { principal.signer.kind == "key" };"#,
    ),
    (
        "p-keyless-a",
        r#"permit (principal, action, resource)
when { principal.signer.kind == "keyless" && principal.signer.identity == "id-a" };"#,
    ),
    (
        "p-iss-1",
        r#"permit (principal, action, resource) when { principal.signer.issuer == "iss-1" };"#,
    ),
    (
        "p-b-iss-2",
        r#"permit (principal, action, resource)
when { principal.signer.identity == "id-b" && principal.signer.issuer == "iss-2" };"#,
    ),
    (
        "p-srv-read",
        r#"permit (principal, action == Warrant::Action::"fs.read", resource in Warrant::Dir::"/srv");"#,
    ),
    (
        "p-data-write-key",
        r#"permit (principal, action == Warrant::Action::"fs.write", resource in Warrant::Dir::"/srv/data")
when { principal.signer.kind == "key" };"#,
    ),
    (
        "p-small",
        r#"permit (principal, action == Warrant::Action::"instantiate", resource)
when { context.memoryBytes <= 1048576 && context.timeoutMs < 60000 };"#,
    ),
    (
        "p-metered-c",
        r#"permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.signer.identity == "id-c" && context has fuel && context.fuel > 0 };"#,
    ),
    (
        "p-log-level",
        r#"permit (principal, action == Warrant::Action::"env.read", resource == Warrant::EnvVar::"LOG_LEVEL");"#,
    ),
    (
        "p-api",
        r#"permit (
    principal,
    action in [Warrant::Action::"net.connect", Warrant::Action::"http.outgoing"],
    resource == Warrant::Host::"api.example.com:443"
) when { principal.signer.issuer like "iss-*" };"#,
    ),
    (
        "p-acme-small",
        r#"permit (principal in Warrant::Repository::"ghcr.io/acme/plugin", action, resource)
when { principal.sizeBytes < 5000 };"#,
    ),
    (
        "p-builder",
        r#"permit (principal, action, resource)
when { principal has provenance && principal.provenance.builderId == "builder-1"
    && principal.provenance.signer.identity == principal.signer.identity };"#,
    ),
    (
        "p-none-env",
        r#"permit (principal, action == Warrant::Action::"env.read", resource)
when { principal.signer.kind == "none" };"#,
    ),
    (
        "p-overflow",
        r#"permit (principal, action == Warrant::Action::"instantiate", resource)
when { context.memoryBytes * 9223372036854775807 > 0 };"#,
    ),
    (
        "p-b-overflow",
        r#"permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.signer.identity == "id-b" && context.memoryBytes * 9223372036854775807 > 0 };"#,
    ),
    (
        "p-key-size-overflow",
        r#"permit (principal, action in [Warrant::Action::"env.read", Warrant::Action::"net.connect"], resource)
when { principal.signer.kind == "key" && principal.sizeBytes * 9223372036854775807 > 0 };"#,
    ),
    (
        "f-c",
        r#"forbid (principal, action, resource) when { principal.signer.identity == "id-c" };"#,
    ),
    (
        "f-iss-2-write",
        r#"forbid (principal, action == Warrant::Action::"fs.write", resource)
when { principal.signer.issuer == "iss-2" };"#,
    ),
    (
        "f-etc",
        r#"forbid (
    principal,
    action in [Warrant::Action::"fs.read", Warrant::Action::"fs.write"],
    resource in Warrant::Dir::"/etc"
);"#,
    ),
    (
        "f-big",
        r#"forbid (principal, action == Warrant::Action::"instantiate", resource)
when { context.memoryBytes > 1073741824 };"#,
    ),
    (
        "f-net-unless-keyless",
        r#"forbid (principal, action == Warrant::Action::"net.connect", resource)
unless { principal.signer.kind == "keyless" };"#,
    ),
    (
        "f-evil-repo",
        r#"forbid (principal in Warrant::Registry::"ghcr.io", action, resource)
when { principal in Warrant::Repository::"ghcr.io/evil/x" };"#,
    ),
    (
        "f-a-key",
        r#"forbid (principal, action, resource)
when { principal.signer.identity == "id-a" && principal.signer.kind == "key" };"#,
    ),
    (
        "f-iss-2-size-overflow",
        r#"forbid (principal, action == Warrant::Action::"fs.write", resource)
when { principal.signer.issuer == "iss-2" && principal.sizeBytes * 9223372036854775807 > 0 };"#,
    ),
    (
        "f-fuel-overflow",
        r#"forbid (principal, action == Warrant::Action::"instantiate", resource)
when { context has fuel && context.fuel + 9223372036854775000 > 0 };"#,
    ),
];

/// Bodies that read `principal.signers` (k-of-n rules): fine everywhere but in the model check.
const SET_TEMPLATES: &[(&str, &str)] = &[
    (
        "p-two-of",
        r#"permit (principal, action, resource)
when { principal.signers.contains({kind: "keyless", identity: "id-a", issuer: "iss-1"})
    && principal.signers.contains({kind: "key", identity: "id-b", issuer: "key"}) };"#,
    ),
    (
        "f-c-iss-2-anywhere",
        r#"forbid (principal, action, resource)
when { principal.signers.containsAny([{kind: "keyless", identity: "id-c", issuer: "iss-2"}]) };"#,
    ),
];

/// Bodies that only ever permit a signed artifact (`kind` is `"key"` or `"keyless"`), and
/// forbids that never fire for an unsigned one.
const SIGNED_ONLY: &[(&str, &str)] = &[
    (
        "s-key",
        r#"permit (principal, action, resource) when { principal.signer.kind == "key" };"#,
    ),
    (
        "s-keyless",
        r#"permit (principal, action, resource) when { principal.signer.kind == "keyless" };"#,
    ),
    (
        "s-either",
        r#"permit (principal, action, resource)
when { principal.signer.kind == "key" || principal.signer.kind == "keyless" };"#,
    ),
    (
        "s-keyless-read",
        r#"permit (principal, action == Warrant::Action::"fs.read", resource in Warrant::Dir::"/")
when { principal.signer.kind == "keyless" && principal.signer.identity like "*" };"#,
    ),
    (
        "s-key-or-empty-id",
        r#"permit (principal, action, resource)
when { principal.signer.kind == "key" && (principal.signer.identity == "" || principal.signer.issuer == "") };"#,
    ),
    (
        "s-not-none-unless",
        r#"permit (principal, action == Warrant::Action::"instantiate", resource)
unless { principal.signer.kind != "key" };"#,
    ),
    (
        "s-key-overflow",
        r#"permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.signer.kind == "key" && context.memoryBytes * 9223372036854775807 > 0 };"#,
    ),
    (
        "s-forbid-c",
        r#"forbid (principal, action, resource) when { principal.signer.identity == "id-c" };"#,
    ),
    (
        "s-forbid-keyless-etc",
        r#"forbid (principal, action, resource in Warrant::Dir::"/etc")
when { principal.signer.kind == "keyless" };"#,
    ),
];

/// The permit that names an unsigned artifact.
const PERMIT_UNSIGNED: &str =
    r#"permit (principal, action, resource) when { principal.signer.kind == "none" };"#;
/// The permit that allows everything.
const PERMIT_ALL: &str = "permit (principal, action, resource);";
/// A forbid that errors (overflows) on `instantiate` whenever memory is 2 bytes or more.
const FORBID_OVERFLOW: &str = r#"forbid (principal, action == Warrant::Action::"instantiate", resource)
when { context.memoryBytes * 9223372036854775807 > 0 };"#;

/// How many policy sets each pool holds.
const POOL: usize = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn policy(id: &str, body: &str) -> String {
    format!("@id(\"{id}\")\n{body}\n")
}

fn one_file(policies: &[(String, &str)]) -> Policies {
    let text: String = policies.iter().map(|(id, body)| policy(id, body)).collect();
    Policies::from_sources(&[(PathBuf::from("all.cedar"), text)]).unwrap()
}

/// `POOL` subsets of `templates` (up to `max` each), the same on every run.
fn subsets(templates: &'static [(&'static str, &'static str)], max: usize) -> Vec<Vec<usize>> {
    let mut runner = TestRunner::deterministic();
    let strategy = subsequence((0..templates.len()).collect::<Vec<_>>(), 0..=max);
    (0..POOL)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

fn bodies(
    templates: &'static [(&'static str, &'static str)],
    picked: &[usize],
) -> Vec<(String, &'static str)> {
    picked
        .iter()
        .map(|&i| (templates[i].0.to_owned(), templates[i].1))
        .collect()
}

/// Policy sets from [`TEMPLATES`], loaded.
static MODEL_POOL: LazyLock<Vec<Policies>> = LazyLock::new(|| {
    subsets(TEMPLATES, 7)
        .into_iter()
        .map(|picked| one_file(&bodies(TEMPLATES, &picked)))
        .collect()
});

/// Every template, the k-of-n ones too.
fn all_templates() -> &'static [(&'static str, &'static str)] {
    static ALL: LazyLock<Vec<(&str, &str)>> =
        LazyLock::new(|| TEMPLATES.iter().chain(SET_TEMPLATES).copied().collect());
    &ALL
}

/// For [`forbid_trumps_permit_across_signatures`]: a set from every template, plus
/// `permit (principal, action, resource)` and a forbid on identity `IDENTITIES[x]`.
static FORBID_POOL: LazyLock<Vec<(usize, Policies)>> = LazyLock::new(|| {
    subsets(all_templates(), 6)
        .into_iter()
        .enumerate()
        .map(|(n, picked)| {
            let x = n % IDENTITIES.len();
            let forbid = format!(
                "forbid (principal, action, resource) when {{ principal.signer.identity == \"{}\" }};",
                IDENTITIES[x]
            );
            let mut set = bodies(all_templates(), &picked);
            set.push(("all".to_owned(), PERMIT_ALL));
            set.push(("f".to_owned(), &forbid));
            (x, one_file(&set))
        })
        .collect()
});

/// For [`an_erroring_forbid_beside_permit_all_denies`]: a set from every template, plus
/// `permit (principal, action, resource)` and [`FORBID_OVERFLOW`].
static ERROR_POOL: LazyLock<Vec<Policies>> = LazyLock::new(|| {
    subsets(all_templates(), 6)
        .into_iter()
        .map(|picked| {
            let mut set = bodies(all_templates(), &picked);
            set.push(("all".to_owned(), PERMIT_ALL));
            set.push(("overflow".to_owned(), FORBID_OVERFLOW));
            one_file(&set)
        })
        .collect()
});

/// For [`an_unsigned_artifact_needs_a_policy_naming_none`]: sets from [`SIGNED_ONLY`], each
/// alone and with [`PERMIT_UNSIGNED`].
static SIGNED_ONLY_POOL: LazyLock<Vec<(Policies, Policies)>> = LazyLock::new(|| {
    subsets(SIGNED_ONLY, SIGNED_ONLY.len())
        .into_iter()
        .map(|picked| {
            let mut set = bodies(SIGNED_ONLY, &picked);
            let without = one_file(&set);
            set.push(("unsigned".to_owned(), PERMIT_UNSIGNED));
            (without, one_file(&set))
        })
        .collect()
});

/// A policy set from every template, loaded in template order from one file, and the same
/// with one of its policies (the `dup`-th) repeated under the id `dup`.
struct Partitionable {
    picked: Vec<usize>,
    base: Policies,
    doubled: Option<(usize, Policies)>,
}

/// For [`order_partition_and_duplication_do_not_matter`].
static PARTITION_POOL: LazyLock<Vec<Partitionable>> = LazyLock::new(|| {
    subsets(all_templates(), 8)
        .into_iter()
        .enumerate()
        .map(|(n, picked)| {
            let set = bodies(all_templates(), &picked);
            let base = one_file(&set);
            let doubled = (!set.is_empty()).then(|| {
                let dup = n.wrapping_mul(7) % set.len();
                let mut doubled = set.clone();
                doubled.push(("dup".to_owned(), set[dup].1));
                (dup, one_file(&doubled))
            });
            Partitionable {
                picked,
                base,
                doubled,
            }
        })
        .collect()
});

fn signer() -> impl Strategy<Value = Signer> {
    (
        prop_oneof![Just(SignerKind::Key), Just(SignerKind::Keyless)],
        select(IDENTITIES),
        select(ISSUERS),
    )
        .prop_map(|(kind, identity, issuer)| Signer {
            kind,
            identity: identity.to_owned(),
            issuer: issuer.to_owned(),
            claims: BTreeMap::new(),
        })
}

fn signers() -> impl Strategy<Value = Vec<Signer>> {
    proptest::collection::vec(signer(), 0..=4)
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![3 => select(NUMBERS), 1 => any::<u64>()]
}

fn request() -> impl Strategy<Value = Request> {
    let path = || select(PATHS).prop_map(PathBuf::from);
    prop_oneof![
        (number(), number(), proptest::option::of(number())).prop_map(
            |(memory_bytes, timeout_ms, fuel)| {
                Request::Instantiate {
                    memory_bytes,
                    timeout_ms,
                    fuel,
                    runtime: broker::policy::Runtime::Cli,
                }
            }
        ),
        path().prop_map(Request::FsRead),
        path().prop_map(Request::FsWrite),
        select(ENV).prop_map(|n| Request::EnvRead(n.to_owned())),
        select(HOSTS).prop_map(|h| Request::NetConnect(h.to_owned())),
        select(HOSTS).prop_map(|h| Request::HttpOutgoing(h.to_owned())),
    ]
}

/// Everything about an artifact but its signers.
#[derive(Clone, Debug)]
struct Artifact {
    size_bytes: u64,
    repository: &'static str,
    provenance: Option<Provenance>,
}

fn artifact() -> impl Strategy<Value = Artifact> {
    (
        select(&[1000_u64, 4999, 5000, 1 << 20][..]),
        select(REPOSITORIES),
        proptest::option::of((select(&["builder-1", "builder-2"][..]), signer())),
    )
        .prop_map(|(size_bytes, repository, provenance)| Artifact {
            size_bytes,
            repository,
            provenance: provenance.map(|(builder, signer)| Provenance {
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                builder_id: builder.into(),
                source_repository: "https://github.com/acme/plugin".into(),
                source_ref: "refs/tags/v1".into(),
                signer,
            }),
        })
}

fn facts(artifact: &Artifact, signers: Vec<Signer>) -> Facts {
    Facts::new(
        Digest::of(b"artifact"),
        WasmKind::Module,
        artifact.size_bytes,
        "ghcr.io".into(),
        artifact.repository.into(),
        signers,
        artifact.provenance.clone().into_iter().collect(),
    )
}

fn none_signer() -> Signer {
    Signer {
        kind: SignerKind::None,
        identity: String::new(),
        issuer: String::new(),
        claims: BTreeMap::new(),
    }
}

fn ids(decision: &Decision) -> BTreeSet<&str> {
    decision.determining.iter().map(String::as_str).collect()
}

fn sorted(errors: &[String]) -> Vec<&str> {
    let mut errors: Vec<&str> = errors.iter().map(String::as_str).collect();
    errors.sort_unstable();
    errors
}

/// The decision's parts that do not depend on where the policies came from.
fn outcome(decision: &Decision) -> (bool, BTreeSet<&str>, Vec<&str>) {
    (decision.allowed, ids(decision), sorted(&decision.errors))
}

proptest! {
    #![proptest_config(config())]

    /// Property 1: with no policies, every request is denied, citing nothing, without errors.
    #[test]
    fn no_policy_denies_everything(
        artifact in artifact(),
        signers in signers(),
        request in request(),
    ) {
        static EMPTY: LazyLock<Policies> =
            LazyLock::new(|| Policies::from_sources(&[]).unwrap());
        let facts = facts(&artifact, signers);
        for decision in [EMPTY.evaluate(&facts, &request), EMPTY.decide(&facts, &request)] {
            prop_assert!(!decision.allowed, "{decision:?}");
            prop_assert!(decision.determining.is_empty(), "{decision:?}");
            prop_assert!(decision.errors.is_empty(), "{decision:?}");
            prop_assert_eq!(&decision.request, &request);
        }
    }

    /// Property 2: a forbid on identity X denies every request of an artifact one of whose
    /// signers has identity X, whatever else permits (`permit (principal, action, resource)`
    /// included), and is cited; an artifact without such a signer is not forbidden by it.
    #[test]
    fn forbid_trumps_permit_across_signatures(
        set in 0..POOL,
        artifact in artifact(),
        mut signers in signers(),
        extra in signer(),
        at in any::<prop::sample::Index>(),
        request in request(),
    ) {
        let (x, policies) = &FORBID_POOL[set];
        let x = IDENTITIES[*x];
        // Put a signer with identity X somewhere among the others.
        signers.insert(at.index(signers.len() + 1), Signer { identity: x.to_owned(), ..extra });
        let decision = policies.evaluate(&facts(&artifact, signers.clone()), &request);
        prop_assert!(!decision.allowed, "{decision:?}");
        prop_assert!(ids(&decision).contains("f"), "{decision:?}");
        // Without any signer named X, `f` is never cited.
        signers.retain(|s| s.identity != x);
        let decision = policies.evaluate(&facts(&artifact, signers), &request);
        prop_assert!(!ids(&decision).contains("f"), "{decision:?}");
    }

    /// Property 3: a forbid that errors at run time (an overflow, under strict validation),
    /// beside `permit (principal, action, resource)`, denies with the error reported once
    /// (however many signers' evaluations met it); where it does not error or apply it reports
    /// nothing.
    #[test]
    fn an_erroring_forbid_beside_permit_all_denies(
        set in 0..POOL,
        artifact in artifact(),
        signers in signers(),
        memory_bytes in prop_oneof![2..=64_u64, 2..=u64::MAX],
        small in 0..=1_u64,
        timeout_ms in number(),
        fuel in number(),
        other in request(),
    ) {
        let policies = &ERROR_POOL[set];
        let evaluations = signers.len().max(1);
        let facts = facts(&artifact, signers);
        let from_overflow = |d: &Decision| {
            d.errors
                .iter()
                .filter(|e| e.contains("policy `overflow`") && e.contains("overflow while"))
                .count()
        };
        let request = Request::Instantiate { memory_bytes, timeout_ms, fuel: Some(fuel), runtime: broker::policy::Runtime::Cli };
        let decision = policies.evaluate(&facts, &request);
        prop_assert!(!decision.allowed, "{decision:?}");
        // The same error from every signer's evaluation is reported once.
        prop_assert_eq!(from_overflow(&decision), 1, "{:?} ({} evaluations)", decision, evaluations);
        prop_assert!(!ids(&decision).contains("overflow"), "{decision:?}");
        prop_assert!(
            decision.explanation().starts_with("denied: evaluation error"),
            "{}",
            decision.explanation()
        );
        // 0 and 1 times `i64::MAX` do not overflow; other actions do not evaluate it.
        let request = Request::Instantiate { memory_bytes: small, timeout_ms, fuel: Some(fuel), runtime: broker::policy::Runtime::Cli };
        let decision = policies.evaluate(&facts, &request);
        prop_assert_eq!(from_overflow(&decision), 0, "{:?}", decision);
        if !matches!(other, Request::Instantiate { .. }) {
            let decision = policies.evaluate(&facts, &other);
            prop_assert_eq!(from_overflow(&decision), 0, "{:?}", decision);
        }
    }

    /// Property 4: the decision does not depend on how the policies are split into files nor
    /// on their order (nor does the policy hash); duplicating a policy under another id leaves
    /// the allowed bit as it was, and the copy is cited exactly where the original is.
    #[test]
    fn order_partition_and_duplication_do_not_matter(
        set in 0..POOL,
        order in Just((0..8).collect::<Vec<usize>>()).prop_shuffle(),
        files in proptest::collection::vec(0..3_usize, 8),
        artifact in artifact(),
        signers in signers(),
        request in request(),
    ) {
        let pool = &PARTITION_POOL[set];
        let policies = bodies(all_templates(), &pool.picked);
        // Deal the policies, in a shuffled order, into up to three files.
        let mut texts = vec![String::new(); 3];
        for &i in order.iter().filter(|&&i| i < policies.len()) {
            let (id, body) = &policies[i];
            texts[files[i]].push_str(&policy(id, body));
        }
        let sources: Vec<(PathBuf, String)> = texts
            .into_iter()
            .enumerate()
            .filter(|(_, text)| !text.is_empty())
            .map(|(n, text)| (PathBuf::from(format!("{}.cedar", 2 - n)), text))
            .collect();
        let split = Policies::from_sources(&sources).unwrap();
        prop_assert_eq!(split.hash(), pool.base.hash());
        prop_assert_eq!(split.len(), pool.base.len());

        let facts = facts(&artifact, signers);
        let expected = pool.base.evaluate(&facts, &request);
        let got = split.evaluate(&facts, &request);
        prop_assert_eq!(outcome(&got), outcome(&expected));

        if let Some((dup, doubled)) = &pool.doubled {
            let original = policies[*dup].0.as_str();
            let got = doubled.evaluate(&facts, &request);
            prop_assert_eq!(got.allowed, expected.allowed, "{:?} vs {:?}", got, expected);
            let mut cited = ids(&expected);
            if cited.contains(original) {
                cited.insert("dup");
            }
            prop_assert_eq!(ids(&got), cited, "{:?} vs {:?}", got, expected);
        }
    }

    /// Property 5: an unsigned artifact is denied everything by policies that only permit
    /// signers of kind `"key"` or `"keyless"`; adding a permit naming kind `"none"` allows it,
    /// and changes nothing for a signed artifact.
    #[test]
    fn an_unsigned_artifact_needs_a_policy_naming_none(
        set in 0..POOL,
        artifact in artifact(),
        signers in proptest::collection::vec(signer(), 1..=4),
        request in request(),
    ) {
        let (without, with) = &SIGNED_ONLY_POOL[set];
        let unsigned = facts(&artifact, Vec::new());
        let decision = without.evaluate(&unsigned, &request);
        prop_assert!(!decision.allowed, "{decision:?}");
        prop_assert!(decision.determining.is_empty(), "{decision:?}");
        prop_assert!(decision.errors.is_empty(), "{decision:?}");
        let decision = with.evaluate(&unsigned, &request);
        prop_assert!(decision.allowed, "{decision:?}");
        prop_assert_eq!(decision.determining, vec!["unsigned".to_owned()]);

        let signed = facts(&artifact, signers);
        let before = without.evaluate(&signed, &request);
        let after = with.evaluate(&signed, &request);
        prop_assert_eq!(outcome(&after), outcome(&before));
    }

    /// Property 6: the decision is the rule computed by hand from single-signer evaluations
    /// (the generated policies do not read `principal.signers`, the one attribute that
    /// differs): allowed iff no evaluation errors, none is forbidden and one is allowed;
    /// citing the union of the permits (allowed) or of the forbids (denied), and every error.
    /// The cached `decide` agrees with `evaluate`.
    #[test]
    fn the_decision_is_the_rule_over_single_signer_evaluations(
        set in 0..POOL,
        artifact in artifact(),
        signers in signers(),
        request in request(),
    ) {
        let policies = &MODEL_POOL[set];
        let all = facts(&artifact, signers.clone());
        let full = policies.evaluate(&all, &request);
        let each: Vec<Decision> = if signers.is_empty() {
            vec![none_signer()]
        } else {
            signers
        }
        .into_iter()
        .map(|s| policies.evaluate(&facts(&artifact, vec![s]), &request))
        .collect();

        let no_errors = each.iter().all(|d| d.errors.is_empty());
        let forbidden = each.iter().any(|d| !d.allowed && !d.determining.is_empty());
        let allowed = no_errors && !forbidden && each.iter().any(|d| d.allowed);
        prop_assert_eq!(full.allowed, allowed, "{:?} from {:?}", full, each);
        let cited: BTreeSet<&str> = each
            .iter()
            .filter(|d| d.allowed == allowed)
            .flat_map(ids)
            .collect();
        prop_assert_eq!(ids(&full), cited, "{:?} from {:?}", full, each);
        // Every distinct error of any evaluation, each once.
        let mut errors: Vec<String> = each.iter().flat_map(|d| d.errors.clone()).collect();
        errors.sort();
        errors.dedup();
        prop_assert_eq!(sorted(&full.errors), sorted(&errors));
        prop_assert_eq!(&policies.decide(&all, &request), &full);
        prop_assert_eq!(&policies.decide(&all, &request), &full);
    }
}

/// k of n: the signers a group may hold, and the ones that may sign: members, a non-member
/// key, and an impostor (keyless, with member key `a`'s fingerprint as its identity).
mod quorum {
    use super::*;

    fn key(c: char) -> Signer {
        Signer::key(format!("sha256:{}", c.to_string().repeat(64)))
    }

    fn keyless(identity: &str) -> Signer {
        Signer {
            kind: SignerKind::Keyless,
            identity: identity.into(),
            issuer: "https://issuer.example".into(),
            claims: BTreeMap::new(),
        }
    }

    /// A group of `n` holds the first `n` of these.
    fn members() -> Vec<Signer> {
        vec![
            key('a'),
            keyless("https://github.com/acme/plugin/.github/workflows/release.yml@refs/tags/v1"),
            key('b'),
            key('c'),
            key('d'),
        ]
    }

    /// Who may sign: any member, plus two who never count.
    fn pool() -> Vec<Signer> {
        let mut pool = members();
        pool.push(key('e'));
        pool.push(Signer {
            kind: SignerKind::Keyless,
            identity: key('a').identity,
            issuer: "key".into(),
            claims: BTreeMap::new(),
        });
        pool
    }

    fn record(s: &Signer) -> String {
        format!(
            "{{kind: \"{}\", identity: \"{}\", issuer: \"{}\"}}",
            s.kind.as_str(),
            s.identity,
            s.issuer
        )
    }

    /// "At least `k` of the first `n` members", spelled out as every `k`-combination.
    fn enumerated(n: usize, k: usize) -> String {
        fn combinations(from: &[Signer], k: usize) -> Vec<Vec<Signer>> {
            if k == 0 {
                return vec![Vec::new()];
            }
            let mut all = Vec::new();
            for (i, first) in from.iter().enumerate() {
                for mut rest in combinations(&from[i + 1..], k - 1) {
                    rest.insert(0, first.clone());
                    all.push(rest);
                }
            }
            all
        }
        let members = &members()[..n];
        combinations(members, k)
            .iter()
            .map(|c| {
                let all: Vec<String> = c
                    .iter()
                    .map(|s| format!("principal.signers.contains({})", record(s)))
                    .collect();
                format!("({})", all.join(" && "))
            })
            .collect::<Vec<_>>()
            .join(" || ")
    }

    fn grouped(k: usize) -> String {
        format!("principal.approvals.contains({{group: \"release\", atLeast: {k}}})")
    }

    fn groups_file(n: usize) -> String {
        let members: Vec<String> = members()[..n]
            .iter()
            .map(|s| match s.kind {
                SignerKind::Key => format!("{{ kind = \"key\", identity = \"{}\" }}", s.identity),
                _ => format!(
                    "{{ kind = \"keyless\", identity = \"{}\", issuer = \"{}\" }}",
                    s.identity, s.issuer
                ),
            })
            .collect();
        format!(
            "[[group]]\nname = \"release\"\nsigners = [{}]\n",
            members.join(", ")
        )
    }

    /// The permit form and the forbid form (beside a permit of everything) of `condition`,
    /// loaded with the groups of `n`.
    fn sets(n: usize, condition: &str) -> [Policies; 2] {
        let load = |text: String| {
            Policies::from_sources(&[
                (PathBuf::from("q.cedar"), text),
                (PathBuf::from("signer-groups.toml"), groups_file(n)),
            ])
            .unwrap()
        };
        [
            load(format!(
                "@id(\"quorum\")\npermit (principal, action, resource) when {{ {condition} }};\n"
            )),
            load(format!(
                "@id(\"all\")\npermit (principal, action, resource);\n\
                 @id(\"quorum\")\nforbid (principal, action, resource) unless {{ {condition} }};\n"
            )),
        ]
    }

    /// For every `n` from 1 to 5 and `k` from 1 to `n`: (n, k, grouped forms, enumerated forms).
    type Forms = Vec<(usize, usize, [Policies; 2], [Policies; 2])>;
    static FORMS: LazyLock<Forms> = LazyLock::new(|| {
        let mut forms = Vec::new();
        for n in 1..=5 {
            for k in 1..=n {
                forms.push((n, k, sets(n, &grouped(k)), sets(n, &enumerated(n, k))));
            }
        }
        forms
    });

    proptest! {
        #![proptest_config(config())]

        /// `approvals.contains({group, atLeast: k})` decides exactly as the enumerated form,
        /// as a permit and as a forbid, whoever signs (members, twice, non-members,
        /// impostors) and with or without a provenance (more evaluations per request).
        #[test]
        fn k_of_n_by_group_agrees_with_the_enumerated_form(
            form in 0..15_usize,
            signed in proptest::collection::vec(select(pool()), 0..8),
            artifact in artifact(),
            request in request(),
        ) {
            let (n, k, grouped, enumerated) = &FORMS[form];
            let facts = facts(&artifact, signed.clone());
            for (g, e) in grouped.iter().zip(enumerated) {
                let by_group = g.evaluate(&facts, &request);
                let spelled = e.evaluate(&facts, &request);
                prop_assert_eq!(
                    outcome(&by_group),
                    outcome(&spelled),
                    "{} of {}, signed by {:?}",
                    k,
                    n,
                    signed.iter().map(|s| &s.identity).collect::<Vec<_>>()
                );
            }
            // And the count is what it says: a member's signature counts once.
            let distinct = members()[..*n]
                .iter()
                .filter(|m| signed.contains(m))
                .count();
            let instantiate = Request::Instantiate {
                memory_bytes: 1 << 20,
                timeout_ms: 1000,
                fuel: None,
                runtime: broker::policy::Runtime::Cli,
            };
            let allowed = grouped[0].evaluate(&facts, &instantiate).allowed;
            prop_assert_eq!(allowed, distinct >= *k);
        }
    }
}
