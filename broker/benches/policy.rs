//! Decision cost in process. Run with `cargo bench -p broker --bench policy`.
//!
//! For policy sets of 10, 100 and 1,000 policies (permits and forbids over signer identities,
//! directories, hosts and limits, as users write them): the uncached decisions of one run that
//! asks `instantiate` and 5 capabilities (2 directories, 2 environment variables, 1 host), for an
//! artifact with two verified signers; and one cached decision.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// `n` policies; the ones that match the benchmark's artifact are among the last.
fn policy_set(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let policy = match i % 5 {
            0 => format!(
                "@id(\"run-{i}\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\n\
                 when {{ principal.signer.kind == \"keyless\" && principal.signer.issuer == \"https://issuer.example\" \
                 && principal.signer.identity like \"https://github.com/org{i}/*\" && context.memoryBytes <= 268435456 }};\n"
            ),
            1 => format!(
                "@id(\"read-{i}\")\npermit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv/t{i}\")\n\
                 when {{ principal has provenance && principal.provenance.sourceRepository == \"https://github.com/org{i}/p\" }};\n"
            ),
            2 => format!(
                "@id(\"env-{i}\")\npermit (principal, action == Warrant::Action::\"env.read\", resource == Warrant::EnvVar::\"VAR_{i}\")\n\
                 when {{ principal.signer.identity == \"sha256:{i:064x}\" }};\n"
            ),
            3 => format!(
                "@id(\"net-{i}\")\npermit (principal, action == Warrant::Action::\"net.connect\", resource == Warrant::Host::\"h{i}.example:443\")\n\
                 when {{ principal in Warrant::Repository::\"ghcr.io/org{i}/p\" }};\n"
            ),
            _ => format!(
                "@id(\"block-{i}\")\nforbid (principal, action, resource) when {{ principal.digest == \"sha256:{i:064x}\" }};\n"
            ),
        };
        text.push_str(&policy);
    }
    text.push_str(
        "@id(\"bench-run\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\n\
         when { principal.signer.identity like \"https://github.com/acme/*\" && context.memoryBytes <= 268435456 };\n\
         @id(\"bench-read\")\npermit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Dir::\"/srv/data\");\n\
         @id(\"bench-env\")\npermit (principal, action == Warrant::Action::\"env.read\", resource);\n\
         @id(\"bench-net\")\npermit (principal, action == Warrant::Action::\"net.connect\", resource == Warrant::Host::\"api.acme.example:443\");\n",
    );
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
        None,
    );
    let requests = vec![
        Request::Instantiate {
            memory_bytes: 64 << 20,
            timeout_ms: 1000,
            fuel: 0,
        },
        Request::FsRead(PathBuf::from("/srv/data/in")),
        Request::FsRead(PathBuf::from("/srv/data/more/deeply/nested")),
        Request::EnvRead("LOG_LEVEL".into()),
        Request::EnvRead("REGION".into()),
        Request::NetConnect("api.acme.example:443".into()),
    ];
    // `WARRANT_BENCH_PROFILE=N`: only the uncached decisions with N policies, for 10 s, to
    // run under a profiler (`perf record -g target/release/deps/policy-* --bench`).
    if let Some(n) = std::env::var("WARRANT_BENCH_PROFILE")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let policies = Policies::from_sources(&[(PathBuf::from("bench.cedar"), policy_set(n))])?;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            black_box(policies.evaluate_all(&facts, black_box(&requests)));
        }
        return Ok(());
    }
    println!(
        "| policies | load + validate | 6 decisions, uncached | per decision | 1 cached decision |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for n in [10, 100, 1000] {
        let text = policy_set(n);
        let sources = vec![(PathBuf::from("bench.cedar"), text)];
        let load_rounds = if n >= 1000 { 3 } else { 10 };
        let load = measure(load_rounds, 1, || {
            black_box(Policies::from_sources(&sources).ok());
        });
        let policies = Policies::from_sources(&sources)?;
        for r in &requests {
            assert!(policies.evaluate(&facts, r).allowed, "{r}");
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
            "| {} | {load:.2?} | {uncached:.2?} | {:.2?} | {cached:.2?} |",
            n + 4,
            uncached / 6
        );
    }
    Ok(())
}
