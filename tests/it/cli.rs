//! The `warrant` command as a user runs it: flags, output, exit codes, two processes at once.

use std::path::Path;
use std::process::{Command, Output};

use registry_client::{ClientOptions, NoProgress, Reference, RegistryClient};
use tests::fixtures::{
    HELLO_OUTPUT, exit_module, hello_module, module_of_size, spin_module, trap_module,
};
use tests::registry::TestRegistry;
use tests::store_check::{assert_store_clean, index_digests};

const BIN: &str = env!("CARGO_BIN_EXE_warrant-it");

/// `warrant` with an empty home, so no user config or credentials leak in.
fn warrant(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("HOME", home)
        .env_remove("WARRANT_CONFIG")
        .env_remove("WARRANT_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("DOCKER_CONFIG")
        .env_remove("RUST_LOG");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("start warrant")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Publish `wasm` into a fresh layout and return its `oci-layout:` reference.
async fn layout_with(dir: &Path, wasm: Vec<u8>) -> String {
    let target = format!("oci-layout:{}:v1", dir.display());
    RegistryClient::new(ClientOptions::default())
        .unwrap()
        .push_wasm(
            wasm,
            None,
            &target.parse::<Reference>().unwrap(),
            &NoProgress,
        )
        .await
        .unwrap();
    target
}

#[test]
fn every_subcommand_has_help() {
    let home = tempfile::tempdir().unwrap();
    for sub in [
        &["--help"][..],
        &["push", "--help"],
        &["pull", "--help"],
        &["inspect", "--help"],
        &["run", "--help"],
    ] {
        let out = run(warrant(home.path()).args(sub));
        assert_eq!(code(&out), 0, "{sub:?}: {}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{sub:?}"
        );
    }
}

/// `run --help` says what `run` does today; completions and the manual page come from the
/// same definitions (so they name every subcommand, `policy suggest` included), and need no
/// configuration: a broken one does not stop them.
#[test]
fn help_completions_and_the_manual_page_come_from_the_definitions() {
    let home = tempfile::tempdir().unwrap();
    let out = run(warrant(home.path()).args(["run", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        help.contains("WASI 0.2 command component") && !help.contains("no capabilities"),
        "{help}"
    );

    let config = home.path().join("broken.toml");
    std::fs::write(&config, "[run\n").unwrap();
    let config = config.to_str().unwrap();
    for (shell, marker) in [
        ("bash", "_warrant()"),
        ("zsh", "#compdef warrant"),
        ("fish", "complete -c warrant"),
    ] {
        let out = run(warrant(home.path()).args(["--config", config, "completions", shell]));
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("suggest"), "{shell}");
        assert!(script.contains("certificate-identity-regexp"), "{shell}");
    }
    let out = run(warrant(home.path()).args(["completions", "tcsh"]));
    assert_eq!(code(&out), 2, "an unknown shell is a usage error");

    let out = run(warrant(home.path()).args(["--config", config, "man"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH warrant 1"), "{page}");
    for sub in ["run", "policy", "serve", "completions"] {
        assert!(
            page.contains(&format!("warrant\\-{sub}(1)")),
            "{sub}: {page}"
        );
    }
    // A subcommand's page, and every page written to a directory.
    let out = run(warrant(home.path()).args(["man", "policy", "suggest"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH warrant-policy-suggest 1"), "{page}");
    assert!(page.contains("\\-\\-out"), "{page}");
    let out = run(warrant(home.path()).args(["man", "policy", "nope"]));
    assert_eq!(code(&out), 2);
    let pages = home.path().join("man1");
    let out = run(warrant(home.path()).args(["man", "--out", pages.to_str().unwrap()]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for file in [
        "warrant.1",
        "warrant-run.1",
        "warrant-policy-suggest.1",
        "warrant-audit-verify.1",
    ] {
        assert!(pages.join(file).is_file(), "{file}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let out = run(warrant(home.path()).args(["pull", "https://ghcr.io/x:y"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid reference"),
        "{}",
        stderr(&out)
    );

    let out = run(warrant(home.path()).args(["pull", "--no-such-flag", "x/y:z"]));
    assert_eq!(code(&out), 2);

    let config = home.path().join("warrant.toml");
    std::fs::write(&config, "[run]\nmemory = 5\n").unwrap();
    let out =
        run(warrant(home.path()).args(["--config", config.to_str().unwrap(), "pull", "x/y:z"]));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("warrant.toml"), "{}", stderr(&out));
}

#[test]
fn push_pull_inspect_and_run_through_a_real_registry() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let file = home.path().join("hello.wasm");
    std::fs::write(&file, hello_module()).unwrap();
    let reference = registry.reference("cli/hello", "v1");

    let out = run(warrant(home.path()).args(["push", file.to_str().unwrap(), &reference]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // Global flags after the subcommand.
    let out =
        run(warrant(home.path()).args(["pull", &reference, "--store", store.to_str().unwrap()]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), digest);

    let out = run(warrant(home.path()).args([
        "--store",
        store.to_str().unwrap(),
        "pull",
        "--json",
        &reference,
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["kind"], "module");

    let out = run(warrant(home.path()).args(["inspect", &reference]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&digest) && text.contains("application/wasm") && text.contains("os=wasip1"),
        "{text}"
    );

    let out = run(warrant(home.path()).args(["inspect", "--json", &reference]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["manifest"]["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(v["config"]["os"], "wasip1");
    assert_eq!(v["referrers"], serde_json::json!([]));

    let policies = tests::fixtures::permit_all_policies(home.path());
    let out = run(warrant(home.path()).args([
        "--store",
        store.to_str().unwrap(),
        "--policies",
        &policies,
        "run",
        &reference,
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), HELLO_OUTPUT);
}

#[test]
fn registry_errors_exit_121_and_name_what_failed() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let reference = registry.reference("cli/missing", "v1");
    let out = run(warrant(home.path()).args(["pull", &reference]));
    assert_eq!(code(&out), 121);
    assert!(
        stderr(&out).contains("not found") && stderr(&out).contains("cli/missing"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn guest_outcomes_map_to_the_documented_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let cases: [(Vec<u8>, &[&str], i32, &str); 5] = [
        (exit_module(0), &[], 0, ""),
        (exit_module(7), &[], 7, ""),
        (exit_module(121), &[], 125, "outside 0–120"),
        (spin_module(), &["--timeout", "300ms"], 124, "Deadline"),
        (trap_module(), &[], 125, "trapped"),
    ];
    let policies = tests::fixtures::permit_all_policies(home.path());
    for (i, (wasm, flags, expected, message)) in cases.into_iter().enumerate() {
        let layout = home.path().join(format!("layout{i}"));
        let reference = layout_with(&layout, wasm).await;
        let out = run(warrant(home.path())
            .args(["--store", store.to_str().unwrap(), "--policies", &policies])
            .args(["run", &reference])
            .args(flags));
        assert_eq!(code(&out), expected, "case {i}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "case {i}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn guest_arguments_come_after_a_double_dash() {
    // The guest exits with argc: the reference as argv[0] plus two operator arguments.
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "args_sizes_get" (func $s (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (drop (call $s (i32.const 0) (i32.const 4)))
            (call $e (i32.load (i32.const 0)))))"#,
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let reference = layout_with(&home.path().join("layout"), wasm).await;
    let store = home.path().join("store");
    let policies = tests::fixtures::permit_all_policies(home.path());
    let out = run(warrant(home.path()).args([
        "--store",
        store.to_str().unwrap(),
        "--policies",
        &policies,
        "run",
        &reference,
        "--",
        "a",
        "--b",
    ]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn two_processes_pulling_at_once_leave_one_correct_blob() {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("big.wasm");
    std::fs::write(&file, module_of_size(16 * 1024 * 1024, 9)).unwrap();
    let reference = registry.reference("cli/big", "v1");
    let out = run(warrant(home.path()).args(["push", file.to_str().unwrap(), &reference]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let store = home.path().join("store");
    for round in 0..3 {
        let _ = std::fs::remove_dir_all(&store);
        let children: Vec<_> = (0..2)
            .map(|_| {
                warrant(home.path())
                    .args(["--store", store.to_str().unwrap(), "pull", &reference])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(code(&out), 0, "round {round}: {}", stderr(&out));
            assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), digest);
        }
        // Manifest, config, layer: each once, each hashing to its name; one index entry.
        assert_eq!(assert_store_clean(&store).len(), 3, "round {round}");
        assert_eq!(index_digests(&store), vec![digest.clone()], "round {round}");
    }
}

#[test]
fn verify_blob_needs_exactly_one_kind_of_signer() {
    let home = tempfile::tempdir().unwrap();
    let bundle = home.path().join("b.json");
    std::fs::write(&bundle, "{}").unwrap();
    let b = bundle.to_str().unwrap();
    let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    // Neither a key nor an identity.
    let out = run(warrant(home.path()).args(["verify-blob", "--bundle", b, digest]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // Both.
    let out = run(warrant(home.path()).args([
        "verify-blob",
        "--bundle",
        b,
        "--key",
        b,
        "--certificate-identity",
        "i",
        "--certificate-oidc-issuer",
        "u",
        digest,
    ]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // An identity without its issuer.
    let out = run(warrant(home.path()).args([
        "verify-blob",
        "--bundle",
        b,
        "--certificate-identity",
        "i",
        digest,
    ]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // A well-formed request with a bundle that is not a bundle: a verification refusal.
    let out = run(warrant(home.path()).args([
        "verify-bundle",
        "--bundle",
        b,
        "--certificate-identity",
        "i",
        "--certificate-oidc-issuer",
        "u",
        digest,
    ]));
    assert_eq!(code(&out), 122, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("malformed bundle"),
        "{}",
        stderr(&out)
    );
}

/// Sizes take units on the command line and in the config, and reach the policies and the
/// audit log as bytes; a bad size or duration is refused at start, naming the flag or the key.
#[tokio::test]
async fn sizes_take_units_and_bad_values_are_refused_at_start() {
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let policies = tests::fixtures::permit_all_policies(home.path());
    let reference = layout_with(&home.path().join("layout"), hello_module()).await;
    let log = home.path().join(".local/share/warrant/audit/log.jsonl");
    let granted_memory = || {
        let text = std::fs::read_to_string(&log).unwrap();
        let last = text
            .lines()
            .rfind(|l| l.contains("\"kind\":\"instantiate\""))
            .unwrap()
            .to_owned();
        let record: serde_json::Value = serde_json::from_str(&last).unwrap();
        record["body"]["limits"]["memoryBytes"].as_u64().unwrap()
    };
    let base = |cmd: &mut Command| {
        cmd.args(["--store", store.to_str().unwrap(), "--policies", &policies]);
    };

    let mut cmd = warrant(home.path());
    base(&mut cmd);
    let out = run(cmd.args(["run", "--memory", "64MiB", &reference]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO_OUTPUT);
    assert_eq!(granted_memory(), 64 << 20);

    let config = home.path().join("warrant.toml");
    std::fs::write(&config, "[run]\nmemory_bytes = \"1GiB\"\n").unwrap();
    let mut cmd = warrant(home.path());
    base(&mut cmd);
    let out = run(cmd.args(["--config", config.to_str().unwrap(), "run", &reference]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(granted_memory(), 1 << 30);

    let mut cmd = warrant(home.path());
    base(&mut cmd);
    let out = run(cmd.args(["run", "--memory", "64megs", &reference]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid size `64megs`"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&config, "[run]\ntimeout = \"soon\"\n").unwrap();
    let mut cmd = warrant(home.path());
    base(&mut cmd);
    let out = run(cmd.args(["--config", config.to_str().unwrap(), "run", &reference]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

/// `--pod` asks as the containerd shim does, so what a pod is never given cannot be asked with
/// it, and a pod is named `NAMESPACE/POD` with plain names: each is refused before anything is
/// fetched (exit 2, saying why).
#[test]
fn policy_commands_refuse_what_a_pod_cannot_ask() {
    let home = tempfile::tempdir().unwrap();
    let prefix = home.path().join("signer");
    let out = run(warrant(home.path()).args(["keygen", "--out", prefix.to_str().unwrap()]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let key = format!("{}.pub", prefix.display());
    let reference = "oci-layout:/nonexistent/layout:v1";
    for (command, extra, says) in [
        ("explain", vec!["--pod", "team"], "NAMESPACE/POD"),
        ("suggest", vec!["--pod", "team/a/b"], "pod name"),
        ("diff", vec!["--pod", "te am/web"], "namespace"),
        (
            "explain",
            vec!["--pod", "team/web", "--dir", "/tmp::/tmp"],
            "no directory",
        ),
        (
            "suggest",
            vec!["--pod", "team/web", "--allow-net", "example.com:443"],
            "no network",
        ),
        ("diff", vec!["--pod", "team/web", "--fuel", "10"], "no fuel"),
        (
            "explain",
            vec!["--pod", "team/web", "--timeout", "1s"],
            "`[k8s] timeout`",
        ),
    ] {
        let mut args = vec!["policy", command, reference, "--key", key.as_str()];
        args.extend_from_slice(&extra);
        let out = run(warrant(home.path()).args(&args));
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{command} {extra:?}: {err}");
        assert!(
            err.contains(says),
            "{command} {extra:?}: `{says}` not in {err}"
        );
        assert!(!err.contains("/nonexistent/layout"), "fetched: {err}");
    }
}
