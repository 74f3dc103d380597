//! Verification cost in process. Run with `cargo bench -p broker --bench verify`.
//!
//! - keyless Sigstore bundle (the conformance suite's `happy-path-v0.3`, public-good root):
//!   cold (parse the embedded trusted root, read and parse the bundle, verify) and warm (root
//!   already parsed);
//! - keyed cosign signature: one ECDSA P-256 verification plus the payload's digest check;
//! - the verdict cache: a lookup that hits (read, MAC check, parse) and one that misses.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker::cosign;
use broker::keys::SigningKey;
use broker::verify::{BlobInput, SignerRequirement, load_trusted_root, verify_blob};
use registry_client::Digest;

const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

/// Median time per call over `rounds` rounds of `per_round` calls.
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/sigstore-conformance/test/assets/bundle-verify");
    let bundle = assets.join("happy-path-v0.3/bundle.sigstore.json");
    let input = BlobInput::File(assets.join("a.txt"));
    let requirement = SignerRequirement::Identity {
        identity: IDENTITY.into(),
        issuer: ISSUER.into(),
    };

    let root = load_trusted_root(None)?;
    verify_blob(&bundle, &input, &requirement, &root)?;

    let cold = measure(15, 20, || {
        let root = load_trusted_root(None).ok();
        if let Some(root) = root {
            black_box(verify_blob(&bundle, &input, &requirement, &root).ok());
        }
    });
    let warm = measure(15, 50, || {
        black_box(verify_blob(&bundle, &input, &requirement, &root).ok());
    });
    let root_only = measure(15, 20, || {
        black_box(load_trusted_root(None).ok());
    });

    let key = SigningKey::generate()?;
    let public = key.public_key();
    let digest = Digest::of(b"artifact");
    let payload = cosign::payload("registry.example/app", &digest);
    let signature = key.sign(&payload)?;
    let keyed = measure(15, 200, || {
        let ok = public.verify(black_box(&payload), black_box(&signature))
            && cosign::check_payload(&payload, &digest).is_ok();
        black_box(ok);
    });

    let cache_dir = tempfile::tempdir()?;
    let cache = broker::cache::VerdictCache::open(
        &broker::state::State::open(cache_dir.path())?,
        Duration::from_secs(3600),
    )?;
    let trust = broker::verify::Trust::keys(std::slice::from_ref(&public))?;
    let verdict = cosign::Verdict {
        digest: digest.clone(),
        signers: vec![broker::verify::Signer::key(public.fingerprint())],
        rejected: Vec::new(),
    };
    let repo = "registry.example/app";
    cache.put(
        repo,
        &trust,
        &verdict,
        &broker::attest::Attestations::default(),
    )?;
    let hit = measure(15, 200, || {
        black_box(cache.get(repo, black_box(&digest), &trust));
    });
    let other = Digest::of(b"not cached");
    let miss = measure(15, 200, || {
        black_box(cache.get(repo, black_box(&other), &trust));
    });

    println!("| what | median per call |");
    println!("|---|---:|");
    println!("| keyless bundle, cold (parse root + bundle, verify) | {cold:.2?} |");
    println!("| keyless bundle, warm (root parsed once) | {warm:.2?} |");
    println!("| parse the embedded trusted root alone | {root_only:.2?} |");
    println!("| keyed cosign signature (P-256 verify + payload check) | {keyed:.2?} |");
    println!("| cached verdict, hit (read, HMAC check, parse) | {hit:.2?} |");
    println!("| cached verdict, miss | {miss:.2?} |");
    Ok(())
}
