//! WASI 0.2 components in the real sandbox: they run through `wasi:cli/run` with exactly the
//! granted handles, end in a classified outcome, and cannot hoard host resources.

use std::path::PathBuf;
use std::time::Duration;

use broker::policy::{Asks, DirAsk, Facts, Grant, Policies};
use broker::sandbox::{Finished, Handles, Limit, Outcome, RunLimits, Sandbox};
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
        vec![],
    );
    policies.grant(&facts, asks, true).unwrap()
}

/// Runs `component` with what `granted` allows; it must exit 0. Its stdout.
fn granted_run(component: &[u8], granted: &Grant) -> String {
    let f = Sandbox::new()
        .unwrap()
        .run(
            component,
            &[],
            &RunLimits::of(granted, MIB),
            &Handles::of(granted),
        )
        .unwrap();
    assert_eq!(f.outcome, Outcome::Exited(0), "{:?}", f.stderr);
    String::from_utf8(f.stdout).unwrap()
}

/// Runs `component` with no handles and a 10 s deadline.
fn run_ungranted(component: &[u8]) -> Finished {
    Sandbox::new()
        .unwrap()
        .run(
            component,
            &[],
            &limits(Duration::from_secs(10)),
            &Handles::none(),
        )
        .unwrap()
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
    let f = run_ungranted(&components::failing());
    assert_eq!(f.outcome, Outcome::Exited(1));
}

/// Runs `component` with a 300 ms deadline: it must end at that deadline (not before, and
/// within twice it and some slack); the limit's detail.
fn stopped_at_the_deadline(component: &[u8]) -> String {
    let budget = Duration::from_millis(300);
    let f = Sandbox::new()
        .unwrap()
        .run(component, &[], &limits(budget), &Handles::none())
        .unwrap();
    let detail = match f.outcome {
        Outcome::Limited {
            limit: Limit::Deadline,
            detail,
        } => detail,
        other => panic!("{other:?} after {:?}", f.elapsed),
    };
    assert!(f.elapsed >= budget * 9 / 10, "ended early: {:?}", f.elapsed);
    assert!(
        f.elapsed < budget * 2 + Duration::from_millis(200),
        "{:?}",
        f.elapsed
    );
    detail
}

#[test]
fn a_spinning_component_stops_at_its_deadline() {
    let detail = stopped_at_the_deadline(&components::spinning());
    assert!(detail.contains("ran past"), "{detail}");
}

/// A component waiting in the host (a 60 s clock pollable, `block`) is cancelled at its
/// deadline: no Wasm runs while it waits, so the epoch alone could not stop it.
#[test]
fn a_component_asleep_in_the_host_ends_at_its_deadline() {
    let detail = stopped_at_the_deadline(&components::sleeping());
    assert!(detail.contains("waiting in a host call"), "{detail}");
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

    let none = run_ungranted(&components::env());
    assert_eq!(none.outcome, Outcome::Exited(0));
    assert!(none.stdout.is_empty(), "{:?}", none.stdout);
}

/// What the `files` component reports when `/data` holds `contents` and opening the file for
/// writing fails with `not-permitted` (a read-only preopen).
fn read_not_written(contents: &str) -> String {
    format!("/data\n{contents}\nwrite: `")
}

/// A component reads a file in a preopen granted `fs.read`, cannot open it for writing there
/// (the host file is unchanged), writes it when `fs.write` is granted too, and has no preopen
/// without a grant.
#[test]
fn a_component_gets_exactly_the_granted_preopens() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().canonicalize().unwrap();
    let file = host.join("in.txt");
    std::fs::write(&file, "contents of in.txt").unwrap();
    let run = |read_only: bool, policy: &str| {
        let asks = Asks {
            memory_bytes: 16 * MIB,
            timeout_ms: 10_000,
            dirs: vec![DirAsk::open(&host, "/data", read_only).unwrap()],
            ..Asks::default()
        };
        let granted = grant(policy, &asks);
        granted_run(&components::files("in.txt"), &granted)
    };
    let read_only = format!(
        r#"@id("run") permit (principal, action == Warrant::Action::"instantiate", resource);
@id("read") permit (principal, action == Warrant::Action::"fs.read", resource in Warrant::Dir::"{}");"#,
        host.display()
    );
    // Asked read-write, granted only `fs.read` (the write ask dropped): read-only.
    assert_eq!(
        run(false, &read_only),
        read_not_written("contents of in.txt")
    );
    assert_eq!(
        run(true, &read_only),
        read_not_written("contents of in.txt")
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "contents of in.txt"
    );

    let all = r#"@id("all") permit (principal, action, resource);"#;
    assert_eq!(run(false, all), "/data\ncontents of in.txt\nwrite: +");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "pwnednts of in.txt"
    );

    let none = run_ungranted(&components::files("in.txt"));
    assert_eq!(none.outcome, Outcome::Exited(0));
    assert_eq!(String::from_utf8_lossy(&none.stdout), "preopen: none");
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
/// A real registry holding components signed by one key, a policy directory, and a home for
/// the `warrant` CLI.
struct Published {
    registry: tests::registry::TestRegistry,
    home: tempfile::TempDir,
    key: broker::keys::SigningKey,
    key_file: PathBuf,
    policies: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Published {
    /// `policy` is given the key's identity (`sha256:<hex>`).
    fn new(policy: impl FnOnce(&str) -> String) -> Self {
        let key = broker::keys::SigningKey::generate().unwrap();
        let home = tempfile::tempdir().unwrap();
        let key_file = home.path().join("k.pub");
        std::fs::write(&key_file, key.public_key().to_pem()).unwrap();
        let policies = home.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(
            policies.join("c.cedar"),
            policy(&key.public_key().fingerprint()),
        )
        .unwrap();
        Self {
            registry: tests::registry::TestRegistry::start(),
            home,
            key,
            key_file,
            policies,
            runtime: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// Pushes `wasm` as `name:v1` and signs it; its reference.
    fn push(&self, name: &str, wasm: Vec<u8>) -> String {
        use registry_client::{ClientOptions, NoProgress, Reference, RegistryClient};
        let reference = self.registry.reference(name, "v1");
        let kind = self.runtime.block_on(async {
            let client = RegistryClient::new(ClientOptions::default()).unwrap();
            let r: Reference = reference.parse().unwrap();
            let pushed = client.push_wasm(wasm, None, &r, &NoProgress).await.unwrap();
            broker::cosign::sign(&client, &r, &pushed.manifest.digest, &self.key)
                .await
                .unwrap();
            pushed.kind
        });
        assert_eq!(kind, WasmKind::Component);
        reference
    }

    /// `warrant run REFERENCE --key K ARGS…`: exit code, stdout, stderr.
    fn run(&self, reference: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let out = crate::warrant_in(self.home.path())
            .arg("--policies")
            .arg(&self.policies)
            .args(["run", reference, "--key"])
            .arg(&self.key_file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn a_signed_component_runs_from_the_registry() {
    let published = Published::new(|id| {
        format!(
            r#"@id("run-components")
permit (principal, action == Warrant::Action::"instantiate", resource)
when {{ principal.kind == "component" && principal.signer.identity == "{id}" }};

@id("greeting")
permit (principal, action == Warrant::Action::"env.read", resource == Warrant::EnvVar::"GREETING");
"#
        )
    });
    let reference = published.push("components/env", components::env());
    let (code, stdout, stderr) = published.run(&reference, &["--env", "GREETING=hi"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "GREETING=hi\n", "{stderr}");

    // Not granted: dropped with --drop-denied, so the guest sees nothing.
    let (code, stdout, stderr) = published.run(&reference, &["--env", "OTHER=x", "--drop-denied"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.is_empty(), "{stdout:?}");
}

/// Through the CLI, from the registry: a component gets the preopen its policy grants
/// (read-only when only `fs.read` is), and connects to a `--allow-net` pair only when a policy
/// grants it.
#[test]
fn a_signed_component_gets_granted_dirs_and_network_through_the_cli() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let here = listener.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let host = data.path().canonicalize().unwrap();
    std::fs::write(host.join("in.txt"), "contents of in.txt").unwrap();
    let published = Published::new(|id| {
        format!(
            r#"@id("run-components")
permit (principal, action == Warrant::Action::"instantiate", resource)
when {{ principal.kind == "component" && principal.signer.identity == "{id}" }};

@id("read-data")
permit (principal, action == Warrant::Action::"fs.read", resource in Warrant::Dir::"{dir}");

@id("reach-service")
permit (principal, action == Warrant::Action::"net.connect", resource == Warrant::Host::"{here}");
"#,
            dir = host.display()
        )
    });
    let files = published.push("components/files", components::files("in.txt"));
    let dir = format!("{}::/data:ro", host.display());
    let (code, stdout, stderr) = published.run(&files, &["--dir", &dir]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, read_not_written("contents of in.txt"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(host.join("in.txt")).unwrap(),
        "contents of in.txt"
    );
    // Asked read-write: `fs.write` is denied, so the run is refused (exit 123).
    let (code, _, stderr) =
        published.run(&files, &["--dir", &format!("{}::/data", host.display())]);
    assert_eq!(code, Some(123), "{stderr}");
    assert!(stderr.contains("fs.write"), "{stderr}");

    let connect = published.push(
        "components/connect",
        components::connect(here.parse().unwrap()),
    );
    let (code, stdout, stderr) = published.run(&connect, &["--allow-net", &here]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "connect: +", "{stderr}");
    // Without the flag the component has no network at all.
    let (code, stdout, stderr) = published.run(&connect, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_ne!(stdout, "connect: +", "{stderr}");
    assert!(stdout.starts_with("connect: "), "{stdout:?} {stderr}");
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
    granted_run(&components::connect(target.parse().unwrap()), &granted)
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
