//! The screens against Cedar: generated policies made of every kind of simple test (negated,
//! at their boundaries, in `when` and `unless`, behind every principal and resource scope),
//! mixed with tests the screens cannot read, including ones that error; each decision of the
//! screened evaluation must equal plain Cedar's over the whole set, once per signer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr as _;

use cedar_policy::Policy;
use registry_client::{Digest, WasmKind};

use super::index::request_resource;
use super::model::uid;
use super::screen::{Screen, Verdict, View};
use super::*;
use crate::attest::Provenance;
use crate::verify::{Signer, SignerKind};

/// A fixed-seed generator, so that a failure reproduces.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        usize::try_from(self.0 >> 33).unwrap_or(0) % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn digest(n: u8) -> String {
    Digest::of(&[n]).to_string()
}

const IDENTITIES: &[&str] = &[
    "https://github.com/acme/plugin/x",
    "https://github.com/evil/y",
    "https://github.com/acme/z",
    "sha256:aa",
    "*",
    "café*",
    "",
];

const PATTERNS: &[&str] = &[
    "https://github.com/acme/*",
    "*evil*",
    "*",
    "",
    "sha256:a*",
    "https://github.com/acme/z",
    "*/z",
    "\\*",
    "*\\**",
    "h*t*p*s*",
    "*a*a*",
    "caf\u{e9}*",
    "*\u{e9}\\*",
    "https://github.com/acme/**",
];

/// One test the screens can read, in Cedar syntax, for a policy that may read `context`.
fn simple(dice: &mut Dice, with_context: bool) -> String {
    let eq = |dice: &mut Dice| *dice.pick(&["==", "!="]);
    let cmp = |dice: &mut Dice| *dice.pick(&["==", "!=", "<", "<=", ">", ">="]);
    let kinds = if with_context { 16 } else { 14 };
    let test = match dice.below(kinds) {
        0 => format!(
            "principal.digest {} \"{}\"",
            eq(dice),
            digest(u8::try_from(dice.below(4)).unwrap_or(0))
        ),
        1 => format!(
            "principal.kind {} \"{}\"",
            eq(dice),
            dice.pick(&["module", "component"])
        ),
        2 => format!(
            "principal.signer.kind {} \"{}\"",
            eq(dice),
            dice.pick(&["key", "keyless", "none"])
        ),
        3 => {
            let attr = dice.pick(&["identity", "issuer"]);
            if dice.below(2) == 0 {
                format!("principal.signer.{attr} like \"{}\"", dice.pick(PATTERNS))
            } else {
                let value = if *attr == "identity" {
                    dice.pick(IDENTITIES)
                } else {
                    dice.pick(&[
                        "https://issuer.example",
                        "key",
                        "https://token.actions.githubusercontent.com",
                        "",
                    ])
                };
                format!("principal.signer.{attr} {} \"{value}\"", eq(dice))
            }
        }
        4 => format!(
            "principal.sizeBytes {} {}",
            cmp(dice),
            dice.pick(&["999", "1000", "1001", "9000", "-1", "9223372036854775807"])
        ),
        5 => format!(
            "principal in Warrant::{}",
            dice.pick(&[
                "Repository::\"ghcr.io/acme/plugin\"".to_owned(),
                "Repository::\"ghcr.io/other/x\"".to_owned(),
                "Registry::\"ghcr.io\"".to_owned(),
                "Registry::\"docker.io\"".to_owned(),
                format!("Artifact::\"{}\"", digest(0)),
            ])
        ),
        6 => "principal has provenance".to_owned(),
        7 => format!(
            "principal has provenance && principal.provenance.{} {} \"{}\"",
            dice.pick(&[
                "sourceRepository",
                "sourceRef",
                "builderId",
                "predicateType"
            ]),
            eq(dice),
            dice.pick(&["r", "f", "b", "https://slsa.dev/provenance/v1"])
        ),
        8 => format!(
            "principal has provenance && principal.provenance.signer.{}",
            dice.pick(&[
                "kind == \"key\"",
                "kind != \"keyless\"",
                "identity like \"https://github.com/acme/*\"",
                "issuer == \"key\"",
            ])
        ),
        9 => format!(
            "principal has {}",
            dice.pick(&[
                "digest",
                "signer",
                "signers",
                "sizeBytes",
                "repository",
                "approvals"
            ])
        ),
        10 => dice.pick(&["true", "false"]).to_string(),
        12 => {
            let set: Vec<String> = (0..1 + dice.below(3))
                .map(|_| format!("\"{}\"", digest(u8::try_from(dice.below(4)).unwrap_or(0))))
                .collect();
            if dice.below(3) == 0 {
                format!(
                    "[{}].contains(principal.signer.{})",
                    ["\"key\"", "\"sha256:aa\"", "\"https://issuer.example\""][..1 + dice.below(3)]
                        .join(", "),
                    dice.pick(&["kind", "identity", "issuer"])
                )
            } else {
                format!("[{}].contains(principal.digest)", set.join(", "))
            }
        }
        13 => {
            let record = dice.pick(&[
                "{kind: \"key\", identity: \"sha256:aa\", issuer: \"key\"}",
                "{issuer: \"key\", identity: \"sha256:bb\", kind: \"key\"}",
                "{kind: \"keyless\", identity: \"https://github.com/acme/z\", issuer: \"https://issuer.example\"}",
                "{kind: \"key\", identity: \"sha256:aa\", issuer: \"keyless\"}",
                "{kind: \"none\", identity: \"\", issuer: \"\"}",
            ]);
            if dice.below(2) == 0 {
                format!("principal.signer {} {record}", eq(dice))
            } else {
                format!(
                    "principal has provenance && principal.provenance.signer {} {record}",
                    eq(dice)
                )
            }
        }
        // Any action's policy may ask `context has` (only `instantiate` has a context).
        11 if dice.below(2) == 0 => format!("context has {}", dice.pick(&["memoryBytes", "fuel"])),
        11 => format!(
            "context has {} && context.{} {} {}",
            dice.pick(&["memoryBytes", "fuel"]),
            dice.pick(&["memoryBytes", "fuel"]),
            cmp(dice),
            dice.pick(&["0", "1000", "1048576"])
        ),
        14 => format!(
            "{} {} {}",
            // `fuel` is there only when metered: the validator wants it tested first.
            dice.pick(&[
                "context.memoryBytes",
                "context.timeoutMs",
                "context has fuel && context.fuel"
            ]),
            cmp(dice),
            dice.pick(&["0", "1", "1000", "1048576", "1073741824"])
        ),
        _ => format!(
            "context has {}",
            dice.pick(&["memoryBytes", "fuel", "timeoutMs"])
        ),
    };
    if dice.below(4) == 0 {
        format!("!({test})")
    } else {
        test
    }
}

/// One test the screens cannot read; some error (overflow).
fn opaque(dice: &mut Dice, with_context: bool) -> String {
    let count = if with_context { 6 } else { 5 };
    match dice.below(count) {
        0 => "principal.sizeBytes + 1 > 1000".to_owned(),
        1 => "principal.signers.contains(principal.signer)".to_owned(),
        2 => "(principal.signer.kind == \"key\" || principal.sizeBytes > 5000)".to_owned(),
        3 => "principal.sizeBytes * 9223372036854775807 > 0".to_owned(),
        4 => "principal.signer.identity == principal.signer.issuer".to_owned(),
        _ => "context.memoryBytes * 9223372036854775807 > 0".to_owned(),
    }
}

fn condition(dice: &mut Dice, with_context: bool) -> String {
    let leaves = 1 + dice.below(3);
    (0..leaves)
        .map(|_| {
            if dice.below(5) == 0 {
                opaque(dice, with_context)
            } else {
                simple(dice, with_context)
            }
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

fn policy(dice: &mut Dice, id: usize) -> String {
    let effect = if dice.below(3) == 0 {
        "forbid"
    } else {
        "permit"
    };
    let principal = dice
        .pick(&[
            "principal".to_owned(),
            "principal".to_owned(),
            "principal in Warrant::Repository::\"ghcr.io/acme/plugin\"".to_owned(),
            "principal is Warrant::Artifact".to_owned(),
            format!("principal == Warrant::Artifact::\"{}\"", digest(0)),
            "principal is Warrant::Artifact in Warrant::Registry::\"ghcr.io\"".to_owned(),
        ])
        .clone();
    let (action, resource, with_context) = match dice.below(6) {
        0 => (
            "action",
            *dice.pick(&[
                "resource",
                "resource is Warrant::Dir",
                "resource is Warrant::Host",
                "resource in Warrant::Dir::\"/srv\"",
                "resource is Warrant::Dir in Warrant::Dir::\"/srv/data\"",
            ]),
            false,
        ),
        1 => (
            "action == Warrant::Action::\"instantiate\"",
            *dice.pick(&[
                "resource",
                "resource == Warrant::Runtime::\"cli\"",
                "resource is Warrant::Runtime",
            ]),
            true,
        ),
        2 => (
            "action in [Warrant::Action::\"fs.read\", Warrant::Action::\"fs.write\"]",
            *dice.pick(&[
                "resource",
                "resource in Warrant::Dir::\"/srv/data\"",
                "resource == Warrant::Dir::\"/srv/data\"",
            ]),
            false,
        ),
        3 => (
            "action == Warrant::Action::\"env.read\"",
            *dice.pick(&["resource", "resource == Warrant::EnvVar::\"LOG_LEVEL\""]),
            false,
        ),
        4 => (
            "action in [Warrant::Action::\"net.connect\", Warrant::Action::\"http.outgoing\"]",
            *dice.pick(&["resource", "resource == Warrant::Host::\"api.example:443\""]),
            false,
        ),
        _ => (
            "action == Warrant::Action::\"fs.read\"",
            "resource is Warrant::Dir",
            false,
        ),
    };
    let mut text = format!("@id(\"p{id}\")\n{effect} ({principal}, {action}, {resource})");
    match dice.below(4) {
        0 => {}
        1 => {
            let body = condition(dice, with_context);
            text.push_str(&format!("\nwhen {{ {body} }}"));
        }
        2 => {
            let body = if dice.below(5) == 0 {
                opaque(dice, with_context)
            } else {
                simple(dice, with_context)
            };
            text.push_str(&format!("\nunless {{ {body} }}"));
        }
        _ => {
            let when = condition(dice, with_context);
            let unless = simple(dice, with_context);
            let again = condition(dice, with_context);
            text.push_str(&format!(
                "\nwhen {{ {when} }}\nunless {{ {unless} }}\nwhen {{ {again} }}"
            ));
        }
    }
    text.push_str(";\n");
    text
}

fn signer_pool() -> Vec<Signer> {
    let keyless = |identity: &str, issuer: &str| Signer {
        kind: SignerKind::Keyless,
        identity: identity.into(),
        issuer: issuer.into(),
        claims: BTreeMap::new(),
    };
    vec![
        Signer::key("sha256:aa".into()),
        Signer::key("sha256:bb".into()),
        keyless(
            "https://github.com/acme/plugin/x",
            "https://token.actions.githubusercontent.com",
        ),
        keyless(
            "https://github.com/evil/y",
            "https://token.actions.githubusercontent.com",
        ),
        keyless("https://github.com/acme/z", "https://issuer.example"),
        keyless("*", "https://issuer.example"),
        keyless("café*", ""),
    ]
}

/// Every kind of request, at the boundaries the generated policies test.
pub(super) fn requests() -> Vec<Request> {
    vec![
        Request::Instantiate {
            memory_bytes: 1 << 20,
            timeout_ms: 1000,
            fuel: None,
            runtime: crate::policy::Runtime::Cli,
        },
        Request::Instantiate {
            memory_bytes: 1 << 30,
            timeout_ms: 1,
            fuel: Some(1000),
            runtime: crate::policy::Runtime::Cli,
        },
        Request::Instantiate {
            memory_bytes: 1 << 20,
            timeout_ms: 1000,
            fuel: Some(0),
            runtime: crate::policy::Runtime::Cli,
        },
        Request::FsRead(PathBuf::from("/srv/data/in/x")),
        Request::FsRead(PathBuf::from("/etc")),
        Request::FsWrite(PathBuf::from("/srv/data")),
        Request::FsWrite(PathBuf::from("/srv/data/out")),
        Request::EnvRead("LOG_LEVEL".into()),
        Request::EnvRead("SECRET".into()),
        Request::NetConnect("api.example:443".into()),
        Request::NetConnect("other.example:443".into()),
        Request::HttpOutgoing("api.example:443".into()),
    ]
}

fn random_facts(dice: &mut Dice, pool: &[Signer]) -> Facts {
    let signers: Vec<Signer> = (0..dice.below(4))
        .map(|_| dice.pick(pool).clone())
        .collect();
    // 0–3 provenances (half the time none).
    let count = if dice.below(2) == 0 {
        0
    } else {
        1 + dice.below(3)
    };
    let provenances = (0..count)
        .map(|_| Provenance {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            builder_id: dice.pick(&["b", "c"]).to_string(),
            source_repository: dice.pick(&["r", "s"]).to_string(),
            source_ref: "f".into(),
            signer: dice.pick(pool).clone(),
        })
        .collect();
    Facts::new(
        Digest::of(&[u8::try_from(dice.below(3)).unwrap_or(0)]),
        *dice.pick(&[WasmKind::Module, WasmKind::Component]),
        *dice.pick(&[999, 1000, 1001, 9000]),
        "ghcr.io".into(),
        dice.pick(&["ghcr.io/acme/plugin", "ghcr.io/other/x"])
            .to_string(),
        signers,
        provenances,
    )
}

/// ≥ 10,000 decisions compared, and the screens must have settled most evaluations both ways
/// (so the comparison is not won by asking Cedar everything).
#[test]
fn the_screened_evaluation_equals_plain_cedar() {
    let mut dice = Dice(0x5c4ee2);
    let pool = signer_pool();
    let requests = requests();
    let (mut compared, mut sets, mut refused) = (0, 0, 0);
    let mut verdicts = [0usize; 3];
    while compared < 12_000 && sets + refused < 10_000 {
        let count = 1 + dice.below(6);
        let text: String = (0..count).map(|i| policy(&mut dice, i)).collect();
        let policies = match Policies::from_sources(&[(PathBuf::from("p.cedar"), text.clone())]) {
            Ok(p) => p,
            Err(_) => {
                // A combination the strict validator refuses (an impossible scope, say).
                refused += 1;
                continue;
            }
        };
        sets += 1;
        for _ in 0..4 {
            let facts = random_facts(&mut dice, &pool);
            let screened = policies.evaluate_all(&facts, &requests);
            for (request, fast) in requests.iter().zip(screened) {
                let plain = policies.evaluate_naive(&facts, request);
                assert_eq!(
                    (&fast.allowed, &fast.determining, &fast.errors),
                    (&plain.allowed, &plain.determining, &plain.errors),
                    "\n{text}\n{facts:?}\n{request}"
                );
                compared += 1;
                tally_verdicts(&policies, &facts, request, &mut verdicts);
            }
        }
    }
    let [refuted, holds, ask] = verdicts;
    assert!(
        compared >= 12_000 && refused < sets,
        "{compared} compared; {sets} sets, {refused} refused"
    );
    assert!(
        refuted > ask / 4 && holds > ask / 4,
        "refuted {refuted}, holds {holds}, ask {ask}"
    );
}

/// Counts what the screens said for every policy offered to `request`, per signer.
fn tally_verdicts(policies: &Policies, facts: &Facts, request: &Request, counts: &mut [usize; 3]) {
    let none = [Signer::none()];
    let signers = if facts.signers.is_empty() {
        &none[..]
    } else {
        &facts.signers[..]
    };
    let digest = facts.digest.to_string();
    let (Ok(artifact), Ok(repository), Ok(registry), Ok(resource)) = (
        uid("Artifact", &digest),
        uid("Repository", &facts.repository),
        uid("Registry", &facts.registry),
        request_resource(request),
    ) else {
        return;
    };
    let mut groups = policies.groups(request.action(), &resource);
    groups.push(&policies.invariant);
    for group in groups {
        for pass in [
            &group.independent,
            &group.by_signer,
            &group.by_provenance,
            &group.by_both,
        ] {
            for member in &pass.members {
                for signer in signers {
                    for provenance in facts.evaluated_provenances() {
                        let view = View {
                            facts,
                            digest: &digest,
                            signer,
                            provenance,
                            request,
                            artifact: &artifact,
                            repository: &repository,
                            registry: &registry,
                        };
                        let slot = match member.screen.check(&view) {
                            Verdict::Refuted => 0,
                            Verdict::Holds => 1,
                            Verdict::Ask => 2,
                        };
                        counts[slot] += 1;
                    }
                }
            }
        }
    }
}

/// Every simple test the screens read, alone and negated, for every signer of the pool with
/// and without a provenance: the screen and Cedar agree on each.
#[test]
fn every_simple_test_alone_agrees_with_cedar() {
    let pool = signer_pool();
    let text_attrs = [
        "principal.signer.kind",
        "principal.signer.identity",
        "principal.signer.issuer",
        "principal.kind",
        "principal.repository",
    ];
    let strings: Vec<String> = IDENTITIES
        .iter()
        .chain(&[
            "key",
            "keyless",
            "none",
            "module",
            "component",
            "https://issuer.example",
        ])
        .map(|s| (*s).to_owned())
        .collect();
    let mut leaves = Vec::new();
    for attr in text_attrs {
        for value in &strings {
            leaves.push(format!("{attr} == \"{value}\""));
        }
        for pattern in PATTERNS {
            leaves.push(format!("{attr} like \"{pattern}\""));
        }
        leaves.push(format!(
            "[\"key\", \"sha256:aa\", \"module\", \"*\"].contains({attr})"
        ));
    }
    for n in 0..4 {
        leaves.push(format!("principal.digest == \"{}\"", digest(n)));
        leaves.push(format!(
            "[\"{}\", \"{}\"].contains(principal.digest)",
            digest(n),
            digest(3)
        ));
    }
    for cmp in ["==", "!=", "<", "<=", ">", ">="] {
        for value in [
            "999",
            "1000",
            "1001",
            "-9223372036854775808",
            "9223372036854775807",
        ] {
            leaves.push(format!("principal.sizeBytes {cmp} {value}"));
            leaves.push(format!("context.memoryBytes {cmp} {value}"));
            leaves.push(format!("context has fuel && context.fuel {cmp} {value}"));
            leaves.push(format!("context.timeoutMs {cmp} {value}"));
        }
    }
    for entity in [
        "Repository::\"ghcr.io/acme/plugin\"",
        "Repository::\"ghcr.io/other/x\"",
        "Registry::\"ghcr.io\"",
        "Registry::\"ghcr.io/acme/plugin\"",
    ] {
        leaves.push(format!("principal in Warrant::{entity}"));
    }
    leaves.push(format!("principal in Warrant::Artifact::\"{}\"", digest(1)));
    for signer in &pool {
        for whose in ["principal.signer", "principal.provenance.signer"] {
            // The signer's own record, and ones that differ from it in a single field.
            for (kind, identity, issuer) in [
                (
                    signer.kind.as_str(),
                    signer.identity.as_str(),
                    signer.issuer.as_str(),
                ),
                ("keyless", signer.identity.as_str(), signer.issuer.as_str()),
                (signer.kind.as_str(), "sha256:aa", signer.issuer.as_str()),
                (signer.kind.as_str(), signer.identity.as_str(), "key"),
            ] {
                let record =
                    format!("{{kind: \"{kind}\", identity: \"{identity}\", issuer: \"{issuer}\"}}");
                leaves.push(format!("principal has provenance && {whose} == {record}"));
            }
        }
    }
    for attr in [
        "sourceRepository",
        "sourceRef",
        "builderId",
        "predicateType",
    ] {
        leaves.push(format!(
            "principal has provenance && principal.provenance.{attr} == \"r\""
        ));
        leaves.push(format!(
            "principal has provenance && principal.provenance.{attr} like \"*\""
        ));
    }
    leaves.push(
        "principal has provenance && principal.provenance.signer.identity like \"sha256:*\"".into(),
    );
    leaves.push("principal has provenance".into());
    leaves.push("principal.repository like \"ghcr.io/acme/*\"".into());
    leaves.push("principal.repository == \"ghcr.io/acme/plugin\"".into());
    leaves.push("principal.approvals.contains({group: \"g\", atLeast: 1})".into());
    leaves.push("principal.approvals.isEmpty()".into());
    leaves.push("context has memoryBytes".into());
    // Fuel is in the context only when metered.
    leaves.push("context has fuel".into());
    leaves.push("context has fuel && context.fuel <= 1000".into());
    leaves.push("context has fuel && context.fuel > 999".into());
    // Escaped and indexed attribute forms: the same attributes as the dotted ones.
    leaves.push("principal[\"sign\\u{65}r\"].kind == \"key\"".into());
    leaves.push("principal[\"signer\"][\"identity\"] like \"sha256:*\"".into());
    leaves.push("principal[\"\\u{73}igner\"].issuer == \"key\"".into());
    leaves.push(
        "principal has provenance && principal[\"provenance\"][\"sourceRef\"] == \"f\"".into(),
    );
    leaves.push(
        "principal has provenance && principal[\"pr\\u{6f}venance\"].signer[\"kind\"] == \"key\""
            .into(),
    );
    leaves.push("context has nothing".into());
    let requests = [
        Request::Instantiate {
            memory_bytes: 1000,
            timeout_ms: 999,
            fuel: None,
            runtime: crate::policy::Runtime::Cli,
        },
        Request::Instantiate {
            memory_bytes: u64::MAX,
            timeout_ms: 1001,
            fuel: Some(1000),
            runtime: crate::policy::Runtime::Cli,
        },
    ];
    let (mut compared, mut refused) = (0, 0);
    for (i, leaf) in leaves.iter().enumerate() {
        for negated in [false, true] {
            let body = if negated {
                format!("!({leaf})")
            } else {
                leaf.clone()
            };
            let text = format!(
                "@id(\"leaf\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource) when {{ {body} }};"
            );
            // The strict validator refuses a test that is always true or always false (`!(context
            // has memoryBytes)` for `instantiate`, say): nothing to compare.
            let Ok(policies) = Policies::from_sources(&[(PathBuf::from("p.cedar"), text.clone())])
            else {
                refused += 1;
                continue;
            };
            for (j, signer) in pool.iter().enumerate() {
                for with_provenance in [false, true] {
                    let k = i.wrapping_add(j);
                    let facts = Facts::new(
                        Digest::of(&[u8::try_from(k % 3).unwrap_or(0)]),
                        [WasmKind::Module, WasmKind::Component][k % 2],
                        [999, 1000, 1001, 9000][k % 4],
                        "ghcr.io".into(),
                        ["ghcr.io/acme/plugin", "ghcr.io/other/x"][k % 2].into(),
                        vec![signer.clone()],
                        with_provenance
                            .then(|| Provenance {
                                predicate_type: "https://slsa.dev/provenance/v1".into(),
                                builder_id: "b".into(),
                                source_repository: "r".into(),
                                source_ref: "f".into(),
                                signer: pool[(j + k) % pool.len()].clone(),
                            })
                            .into_iter()
                            .collect(),
                    );
                    for (request, fast) in requests
                        .iter()
                        .zip(policies.evaluate_all(&facts, &requests))
                    {
                        let plain = policies.evaluate_naive(&facts, request);
                        assert_eq!(
                            (&fast.allowed, &fast.errors),
                            (&plain.allowed, &plain.errors),
                            "\n{text}\n{facts:?}\n{request}"
                        );
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(
        compared >= 10_000 && refused < 10,
        "{compared} compared, {refused} refused"
    );
}

/// The shapes the screens read whole, and where they stop.
#[test]
fn screens_read_the_simple_prefix() {
    let cases = [
        ("permit (principal, action, resource);", (0, true)),
        (
            "permit (principal, action, resource) when { principal.signer.kind == \"keyless\" && principal.signer.identity like \"https://github.com/acme/*\" };",
            (2, true),
        ),
        (
            "permit (principal in Warrant::Repository::\"ghcr.io/acme/plugin\", action == Warrant::Action::\"instantiate\", resource) when { context.memoryBytes <= 1048576 } unless { principal.sizeBytes > 10 };",
            (3, true),
        ),
        (
            "forbid (principal, action, resource) when { principal.digest == \"sha256:00\" && principal.signers.contains(principal.signer) && principal.kind == \"module\" };",
            (1, false),
        ),
        (
            "permit (principal, action, resource is Warrant::Dir) unless { principal.kind == \"module\" && principal.sizeBytes > 1 };",
            (1, false),
        ),
        (
            "permit (principal, action, resource) when { principal.sizeBytes + 1 > 0 && principal.kind == \"module\" };",
            (0, false),
        ),
    ];
    for (text, shape) in cases {
        let policy = Policy::from_str(text).unwrap();
        let json = policy.to_json().ok();
        assert_eq!(Screen::of(&policy, json.as_ref()).shape(), shape, "{text}");
    }
}
