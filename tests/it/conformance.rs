//! The sigstore-conformance bundle-verification suite, offline, through `warrant verify-blob`
//! (by its protocol name `verify-bundle`): 70 cases, each by path and by digest.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_warrant-it");

/// The identity and issuer the suite signs its keyless cases with, unless a case says otherwise.
const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sigstore-conformance/test/assets")
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The argument list the suite's client protocol prescribes for one case.
fn protocol_args(case: &Path, by_digest: bool) -> Vec<String> {
    let mut args = vec![
        "verify-bundle".to_owned(),
        "--bundle".to_owned(),
        case.join("bundle.sigstore.json").display().to_string(),
    ];
    if case.join("key.pub").exists() {
        args.push("--key".into());
        args.push(case.join("key.pub").display().to_string());
    } else {
        args.push("--certificate-identity".into());
        args.push(read_trimmed(&case.join("identity")).unwrap_or_else(|| DEFAULT_IDENTITY.into()));
        args.push("--certificate-oidc-issuer".into());
        args.push(read_trimmed(&case.join("issuer")).unwrap_or_else(|| DEFAULT_ISSUER.into()));
    }
    if case.join("trusted_root.json").exists() {
        args.push("--trusted-root".into());
        args.push(case.join("trusted_root.json").display().to_string());
    }
    let artifact = if case.join("artifact").exists() {
        case.join("artifact")
    } else {
        assets().join("bundle-verify/a.txt")
    };
    if by_digest {
        let bytes = std::fs::read(&artifact).unwrap();
        args.push(format!("sha256:{}", hex::encode(Sha256::digest(bytes))));
    } else {
        args.push(artifact.display().to_string());
    }
    args
}

#[test]
fn sigstore_conformance_bundle_suite_passes_offline() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(assets().join("bundle-verify"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 70, "the vendored suite has 70 cases");

    let home = tempfile::tempdir().unwrap();
    let mut checks = 0;
    let mut mismatches = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expect_fail = name.ends_with("_fail");
        for by_digest in [false, true] {
            let out = Command::new(BIN)
                .args(protocol_args(case, by_digest))
                // The suite's relative paths resolve from the assets directory.
                .current_dir(assets())
                .env("HOME", home.path())
                .env_remove("WARRANT_CONFIG")
                .output()
                .unwrap();
            checks += 1;
            let code = out.status.code();
            let stderr = String::from_utf8_lossy(&out.stderr);
            // A refusal is a verification refusal (122), or, when the case's trusted root or
            // key is itself malformed, a configuration error (2) that says so. Never success,
            // never a crash.
            let ok = if expect_fail {
                code == Some(122)
                    || (code == Some(2)
                        && (stderr.contains("unusable trusted root")
                            || stderr.contains("unusable public key")))
            } else {
                code == Some(0)
            };
            if !ok {
                mismatches.push(format!(
                    "{name} ({}): exit {code:?}: {}",
                    if by_digest { "digest" } else { "path" },
                    stderr.trim()
                ));
            }
        }
    }
    assert_eq!(checks, 140);
    assert!(
        mismatches.is_empty(),
        "{} of 140 conformance checks failed:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// `text` as a regular expression matching exactly it.
fn escaped(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// `verify-blob` takes identity patterns too, anchored: on every keyless case the suite
/// expects to verify, the whole identity as a pattern (with the issuer as a pattern) verifies,
/// and a pattern for all but its last character does not — an unanchored search would accept
/// it.
#[test]
fn verify_blob_identity_patterns_match_the_whole_identity() {
    let home = tempfile::tempdir().unwrap();
    let mut tried = 0;
    for entry in std::fs::read_dir(assets().join("bundle-verify")).unwrap() {
        let case = entry.unwrap().path();
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if !case.is_dir() || name.ends_with("_fail") || case.join("key.pub").exists() {
            continue;
        }
        let identity =
            read_trimmed(&case.join("identity")).unwrap_or_else(|| DEFAULT_IDENTITY.into());
        let issuer = read_trimmed(&case.join("issuer")).unwrap_or_else(|| DEFAULT_ISSUER.into());
        let mut exact = protocol_args(&case, true);
        let at = exact
            .iter()
            .position(|a| a == "--certificate-identity")
            .unwrap();
        // Drop the four exact identity and issuer arguments.
        exact.drain(at..at + 4);
        let shortened = &identity[..identity.len() - 1];
        for (pattern, code) in [(escaped(&identity), 0), (escaped(shortened), 122)] {
            let mut args = exact.clone();
            args.extend([
                "--certificate-identity-regexp".to_owned(),
                pattern,
                "--certificate-oidc-issuer-regexp".to_owned(),
                escaped(&issuer),
            ]);
            let out = Command::new(BIN)
                .args(&args)
                .current_dir(assets())
                .env("HOME", home.path())
                .env_remove("WARRANT_CONFIG")
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(code),
                "{name}: {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tried += 1;
    }
    assert!(tried >= 5, "only {tried} keyless cases");
}
