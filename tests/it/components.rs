//! WASI 0.2 components in the real sandbox: they run through `wasi:cli/run` with exactly the
//! granted handles, end in a classified outcome, and cannot hoard host resources.

use std::path::PathBuf;
use std::time::Duration;

use broker::policy::{Asks, Facts, Grant, Policies};
use broker::sandbox::{Handles, Limit, Outcome, RunLimits, Sandbox};
use registry_client::{Digest, WasmKind};
use tests::components;

const MIB: u64 = 1 << 20;

fn grant(policy: &str, asks: &Asks) -> Grant {
    let policies =
        Policies::from_sources(&[(PathBuf::from("c.cedar"), policy.to_owned())]).unwrap();
    let facts = Facts::new(
        Digest::of(b"component"),
        WasmKind::Component,
        1,
        "r".into(),
        "r/c".into(),
        vec![],
        None,
    );
    policies.grant(&facts, asks, true).unwrap()
}

fn limits(timeout: Duration) -> RunLimits {
    RunLimits {
        memory_bytes: 16 * MIB,
        timeout,
        ..RunLimits::default()
    }
}

#[test]
fn a_component_runs_through_wasi_cli_run() {
    let sandbox = Sandbox::new().unwrap();
    let f = sandbox
        .run(
            &components::hello(),
            &["hello".into()],
            &limits(Duration::from_secs(10)),
            &Handles::none(),
        )
        .unwrap();
    assert_eq!(f.outcome, Outcome::Exited(0));
    assert_eq!(f.stdout, b"hello from a component\n");
}

#[test]
fn a_component_whose_run_fails_exits_1() {
    let f = Sandbox::new()
        .unwrap()
        .run(
            &components::failing(),
            &[],
            &limits(Duration::from_secs(10)),
            &Handles::none(),
        )
        .unwrap();
    assert_eq!(f.outcome, Outcome::Exited(1));
}

#[test]
fn a_spinning_component_stops_at_its_deadline() {
    let budget = Duration::from_millis(300);
    let f = Sandbox::new()
        .unwrap()
        .run(
            &components::spinning(),
            &[],
            &limits(budget),
            &Handles::none(),
        )
        .unwrap();
    assert!(
        matches!(
            f.outcome,
            Outcome::Limited {
                limit: Limit::Deadline,
                ..
            }
        ),
        "{:?}",
        f.outcome
    );
    assert!(
        f.elapsed < budget * 2 + Duration::from_millis(200),
        "{:?}",
        f.elapsed
    );
}

/// A component sees the granted environment variables and no other.
#[test]
fn a_component_sees_only_granted_env() {
    let asks = Asks {
        memory_bytes: 16 * MIB,
        timeout_ms: 10_000,
        env: vec![
            ("GREETING".into(), "hello".into()),
            ("SECRET_TOKEN".into(), "hunter2".into()),
        ],
        ..Asks::default()
    };
    let policy = r#"@id("run")
permit (principal, action == Warrant::Action::"instantiate", resource);

@id("greeting")
permit (principal, action == Warrant::Action::"env.read", resource == Warrant::EnvVar::"GREETING");
"#;
    let granted = grant(policy, &asks);
    let f = Sandbox::new()
        .unwrap()
        .run(
            &components::env(),
            &[],
            &RunLimits::of(&granted, MIB),
            &Handles::of(&granted),
        )
        .unwrap();
    assert_eq!(f.outcome, Outcome::Exited(0));
    assert_eq!(String::from_utf8_lossy(&f.stdout), "GREETING=hello\n");

    let none = Sandbox::new()
        .unwrap()
        .run(
            &components::env(),
            &[],
            &limits(Duration::from_secs(10)),
            &Handles::none(),
        )
        .unwrap();
    assert_eq!(none.outcome, Outcome::Exited(0));
    assert!(none.stdout.is_empty(), "{:?}", none.stdout);
}

/// A guest that opens resources without closing them is stopped at the handle cap (10,000),
/// promptly, as a trap; below the cap it runs.
#[test]
fn a_component_hoarding_handles_is_stopped_at_the_cap() {
    let sandbox = Sandbox::new().unwrap();
    let run = |count| {
        sandbox
            .run(
                &components::hoard_handles(count),
                &[],
                &limits(Duration::from_secs(10)),
                &Handles::none(),
            )
            .unwrap()
    };
    let few = run(1_000);
    assert_eq!(few.outcome, Outcome::Exited(0));
    let many = run(1_000_000);
    match &many.outcome {
        Outcome::Trapped(reason) => assert!(
            reason.contains("handle") || reason.contains("capacity") || reason.contains("resource"),
            "{reason}"
        ),
        other => panic!("expected a trap at the handle cap, got {other:?}"),
    }
    assert!(many.elapsed < Duration::from_secs(2), "{:?}", many.elapsed);
}

#[test]
fn bytes_that_are_not_wasm_are_a_load_error() {
    let error = Sandbox::new()
        .unwrap()
        .run(
            b"#!/bin/sh\n",
            &[],
            &limits(Duration::from_secs(1)),
            &Handles::none(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("not WebAssembly"), "{error}");
}

/// End to end: a signed component pushed to the registry is verified, decided and run by
/// `warrant run` with the granted environment variable; the same run without a policy that
/// grants it sees nothing.
#[test]
fn a_signed_component_runs_from_the_registry() {
    use broker::keys::SigningKey;
    use registry_client::{ClientOptions, NoProgress, Reference, RegistryClient};

    let registry = tests::registry::TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let reference = registry.reference("components/env", "v1");
    let key = SigningKey::generate().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pushed_kind = runtime.block_on(async {
        let client = RegistryClient::new(ClientOptions::default()).unwrap();
        let r: Reference = reference.parse().unwrap();
        let pushed = client
            .push_wasm(components::env(), None, &r, &NoProgress)
            .await
            .unwrap();
        broker::cosign::sign(&client, &r, &pushed.manifest.digest, &key)
            .await
            .unwrap();
        pushed.kind
    });
    assert_eq!(pushed_kind, WasmKind::Component);
    let key_file = home.path().join("k.pub");
    std::fs::write(&key_file, key.public_key().to_pem()).unwrap();
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("c.cedar"),
        format!(
            r#"@id("run-components")
permit (principal, action == Warrant::Action::"instantiate", resource)
when {{ principal.kind == "component" && principal.signer.identity == "{id}" }};

@id("greeting")
permit (principal, action == Warrant::Action::"env.read", resource == Warrant::EnvVar::"GREETING");
"#,
            id = key.public_key().fingerprint()
        ),
    )
    .unwrap();
    let warrant = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warrant-it"))
            .arg("--policies")
            .arg(&policies)
            .args(args)
            .env("WARRANT_HOME", home.path())
            .env("HOME", home.path())
            .env_remove("WARRANT_CONFIG")
            .env_remove("DOCKER_CONFIG")
            .output()
            .unwrap()
    };
    let key_arg = key_file.to_str().unwrap();
    let out = warrant(&["run", &reference, "--key", key_arg, "--env", "GREETING=hi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "GREETING=hi\n",
        "{stderr}"
    );

    // Not granted: dropped with --drop-denied, so the guest sees nothing.
    let out = warrant(&[
        "run",
        &reference,
        "--key",
        key_arg,
        "--env",
        "OTHER=x",
        "--drop-denied",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
}

/// Runs the `connect` component against `target` with `net` granted (through a permit-all
/// policy); its report.
fn connect(target: &str, net: &[&str]) -> String {
    let asks = Asks {
        memory_bytes: 16 * MIB,
        timeout_ms: 10_000,
        net: net.iter().map(|s| (*s).to_owned()).collect(),
        ..Asks::default()
    };
    let granted = grant(r#"@id("all") permit (principal, action, resource);"#, &asks);
    assert_eq!(granted.net().len(), net.len());
    let f = Sandbox::new()
        .unwrap()
        .run(
            &components::connect(target.parse().unwrap()),
            &[],
            &RunLimits::of(&granted, MIB),
            &Handles::of(&granted),
        )
        .unwrap();
    assert_eq!(f.outcome, Outcome::Exited(0), "{:?}", f.stderr);
    String::from_utf8(f.stdout).unwrap()
}

/// A component reaches exactly the granted `host:port` pairs: nothing without a grant, not
/// another port, and for a granted name only the addresses it resolves to (a guest that
/// resolves it elsewhere, or picks another loopback address, is refused).
#[test]
fn a_component_connects_only_to_granted_addresses() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let here = format!("127.0.0.1:{port}");
    let elsewhere = format!("127.0.0.2:{port}");
    let other_port = format!("127.0.0.1:{}", port.wrapping_add(1).max(1));
    const ALLOWED: &str = "connect: +";
    const DENIED: &str = "connect: B"; // access-denied

    assert_ne!(connect(&here, &[]), ALLOWED, "no grant, no network");
    assert_eq!(connect(&here, &[&here]), ALLOWED);
    assert_eq!(connect(&other_port, &[&here]), DENIED);
    assert_eq!(connect(&elsewhere, &[&here]), DENIED);

    let by_name = format!("localhost:{port}");
    assert_eq!(connect(&here, &[&by_name]), ALLOWED);
    assert_eq!(connect(&elsewhere, &[&by_name]), DENIED);
}
