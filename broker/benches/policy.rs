//! Decision cost in process. Run with `cargo bench -p broker --bench policy`.
//!
//! For policy sets of 10, 100 and 1,000 policies (permits and forbids over signer identities,
//! directories, hosts and limits, as users write them): the uncached decisions of one run that
//! asks `instantiate` and 5 capabilities (2 directories, 2 environment variables, 1 host), for an
//! artifact with two verified signers; and one cached decision. Then the same run for artifacts
//! with more signers and provenances, up to the bound on their pairs
//! (`policy::limits::MAX_EVALUATIONS`), with a policy that reads both.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker::attest::Provenance;
use broker::policy::{Facts, Policies, Request};
use broker::verify::{Signer, SignerKind};
use registry_client::{Digest, WasmKind};

fn measure(rounds: usize, per_round: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                f();
            }
            start.elapsed() / u32::try_from(per_round).unwrap_or(1)
        })
        .collect();
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// `n` policies; the ones that match the benchmark's artifact are among the last. `opaque`:
/// every condition starts with a test the screens cannot read (arithmetic, always true here),
/// so that every policy offered to a request is evaluated by Cedar's interpreter.
fn policy_set(n: usize, opaque: bool) -> String {
    let lead = if opaque {
        "principal.sizeBytes + 0 >= 0 && "
    } else {
        ""
    };
    let always = if opaque {
        " when { principal.sizeBytes + 0 >= 0 }"
    } else {
        ""
    };
    let mut text = String::new();
    for i in 0..n {
        let policy = match i % 5 {
            0 => format!(
                "@id(\"run-{i}\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\n\
                 when {{ {lead}principal.signer.kind == \"keyless\" && principal.signer.issuer == \"https://issuer.example\" \
                 && principal.signer.identity like \"https://github.com/org{i}/*\" && context.memoryBytes <= 268435456 }};\n"
            ),
            1 => format!(
                "@id(\"read-{i}\")\npermit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv/t{i}\")\n\
                 when {{ {lead}principal has provenance && principal.provenance.sourceRepository == \"https://github.com/org{i}/p\" }};\n"
            ),
            2 => format!(
                "@id(\"env-{i}\")\npermit (principal, action == Warrant::Action::\"env.read\", resource == Warrant::EnvVar::\"VAR_{i}\")\n\
                 when {{ {lead}principal.signer.identity == \"sha256:{i:064x}\" }};\n"
            ),
            3 => format!(
                "@id(\"net-{i}\")\npermit (principal, action == Warrant::Action::\"net.connect\", resource == Warrant::Host::\"h{i}.example:443\")\n\
                 when {{ {lead}principal in Warrant::Repository::\"ghcr.io/org{i}/p\" }};\n"
            ),
            _ => format!(
                "@id(\"block-{i}\")\nforbid (principal, action, resource) when {{ {lead}principal.digest == \"sha256:{i:064x}\" }};\n"
            ),
        };
        text.push_str(&policy);
    }
    text.push_str(&format!(
        "@id(\"bench-run\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\n\
         when {{ {lead}principal.signer.identity like \"https://github.com/acme/*\" && context.memoryBytes <= 268435456 }};\n\
         @id(\"bench-read\")\npermit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv/data\"){always};\n\
         @id(\"bench-env\")\npermit (principal, action == Warrant::Action::\"env.read\", resource){always};\n\
         @id(\"bench-net\")\npermit (principal, action == Warrant::Action::\"net.connect\", resource == Warrant::Host::\"api.acme.example:443\"){always};\n",
    ));
    text
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let signer = |identity: &str| Signer {
        kind: SignerKind::Keyless,
        identity: identity.into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        claims: Default::default(),
    };
    let facts = Facts::new(
        Digest::of(b"bench artifact"),
        WasmKind::Module,
        100_000,
        "ghcr.io".into(),
        "ghcr.io/acme/plugin".into(),
        vec![
            signer("https://github.com/acme/plugin/.github/workflows/release.yml@refs/tags/v1"),
            signer("https://github.com/acme/plugin/.github/workflows/nightly.yml@refs/heads/main"),
        ],
        Vec::new(),
    );
    let requests = vec![
        Request::Instantiate {
            memory_bytes: 64 << 20,
            timeout_ms: 1000,
            fuel: None,
            runtime: broker::Runtime::Cli,
        },
        Request::FsRead(PathBuf::from("/srv/data/in")),
        Request::FsRead(PathBuf::from("/srv/data/more/deeply/nested")),
        Request::EnvRead("LOG_LEVEL".into()),
        Request::EnvRead("REGION".into()),
        Request::NetConnect("api.acme.example:443".into()),
    ];
    // `WARRANT_BENCH_PROFILE=N`: only the uncached decisions with N policies, for 10 s, to
    // run under a profiler (`perf record -g target/release/deps/policy-* --bench`);
    // `WARRANT_BENCH_OPAQUE=1` for the set the screens cannot read.
    if let Some(n) = std::env::var("WARRANT_BENCH_PROFILE")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let opaque = std::env::var_os("WARRANT_BENCH_OPAQUE").is_some();
        let policies =
            Policies::from_sources(&[(PathBuf::from("bench.cedar"), policy_set(n, opaque))])?;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            black_box(policies.evaluate_all(&facts, black_box(&requests)));
        }
        return Ok(());
    }
    println!(
        "| policies | conditions | load + validate | 6 decisions, uncached | per decision | 1 cached decision |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    for (n, opaque) in [10, 100, 1000]
        .into_iter()
        .flat_map(|n| [(n, false), (n, true)])
    {
        let text = policy_set(n, opaque);
        let sources = vec![(PathBuf::from("bench.cedar"), text)];
        let load_rounds = if n >= 1000 { 3 } else { 10 };
        let load = measure(load_rounds, 1, || {
            black_box(Policies::from_sources(&sources).ok());
        });
        let policies = Policies::from_sources(&sources)?;
        for r in &requests {
            let decision = policies.evaluate(&facts, r);
            assert!(decision.allowed, "{r}");
            assert!(decision.errors.is_empty(), "{r}");
        }
        let per_round = if n >= 1000 { 5 } else { 50 };
        let uncached = measure(15, per_round, || {
            black_box(policies.evaluate_all(&facts, black_box(&requests)));
        });
        let first = requests.first().ok_or("no request")?;
        let cached = measure(15, 10_000, || {
            black_box(policies.decide(&facts, black_box(first)));
        });
        println!(
            "| {} | {} | {load:.2?} | {uncached:.2?} | {:.2?} | {cached:.2?} |",
            n + 4,
            if opaque {
                "each led by arithmetic: Cedar evaluates all"
            } else {
                "as written: screened"
            },
            uncached / 6
        );
    }
    // Evaluations per (signer, provenance) pair: the screened set of 104, and one policy that
    // reads both (Cedar's, for every pair: two attributes compared).
    let mut text = policy_set(100, false);
    text.push_str(
        "@id(\"bench-both\")\npermit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv\")\n\
         when { principal has provenance && principal.provenance.signer == principal.signer };\n",
    );
    let policies = Policies::from_sources(&[(PathBuf::from("bench.cedar"), text)])?;
    println!();
    println!("| signers × provenances | 6 decisions, uncached | per decision |");
    println!("|---:|---:|---:|");
    for (signers, provenances) in [(2, 0), (2, 3), (8, 8), (32, 32)] {
        let signed: Vec<Signer> = (0..signers)
            .map(|i| {
                signer(&format!(
                    "https://github.com/acme/plugin/.github/workflows/w{i}.yml@refs/tags/v1"
                ))
            })
            .collect();
        let built: Vec<Provenance> = (0..provenances)
            .zip(signed.iter().cycle())
            .map(|(j, attester)| Provenance {
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                builder_id: "https://github.com/actions/runner/github-hosted".into(),
                source_repository: "https://github.com/acme/plugin".into(),
                source_ref: format!("refs/tags/v{j}"),
                signer: attester.clone(),
            })
            .collect();
        let facts = Facts::new(
            Digest::of(b"bench artifact"),
            WasmKind::Module,
            100_000,
            "ghcr.io".into(),
            "ghcr.io/acme/plugin".into(),
            signed,
            built,
        );
        for decision in policies.evaluate_all(&facts, &requests) {
            assert!(decision.allowed, "{decision:?}");
        }
        let (rounds, per_round) = if signers * provenances > 100 {
            (5, 1)
        } else {
            (15, 50)
        };
        let uncached = measure(rounds, per_round, || {
            black_box(policies.evaluate_all(&facts, black_box(&requests)));
        });
        println!(
            "| {signers} × {provenances} | {uncached:.2?} | {:.2?} |",
            uncached / 6
        );
    }
    Ok(())
}
