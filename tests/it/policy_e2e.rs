//! Policies end to end: a signed artifact in a real registry is explained and run with exactly
//! the handles its policies grant, and nothing else.

use std::process::Output;

use broker::keys::SigningKey;
use registry_client::{ClientOptions, NoProgress, Reference, RegistryClient};
use tests::registry::TestRegistry;

/// Prints its environment (`NAME=VALUE\0…`), then the contents of `in.txt` in its first
/// preopened directory (fd 3); then tries to create `out.txt` there and exits with the errno
/// of that attempt (0: created).
const PROBE_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "in.txt")
  (data (i32.const 120) "out.txt")
  (func (export "_start") (local $err i32)
    (drop (call $env_sizes (i32.const 0) (i32.const 4)))
    (drop (call $env_get (i32.const 1000) (i32.const 2000)))
    (i32.store (i32.const 300) (i32.const 2000))
    (i32.store (i32.const 304) (i32.load (i32.const 4)))
    (drop (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 6)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
    (if (i32.eqz (local.get $err)) (then
      (i32.store (i32.const 300) (i32.const 8000))
      (i32.store (i32.const 304) (i32.const 4096))
      (drop (call $fd_read (i32.load (i32.const 200)) (i32.const 300) (i32.const 1) (i32.const 400)))
      (i32.store (i32.const 304) (i32.load (i32.const 400)))
      (drop (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))))
    (call $exit (call $path_open (i32.const 3) (i32.const 0) (i32.const 120) (i32.const 7)
      (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200)))))"#;

struct World {
    _registry: TestRegistry,
    home: tempfile::TempDir,
    reference: String,
    other_reference: String,
    key_a: String,
    key_b: String,
    data: std::path::PathBuf,
    policies: std::path::PathBuf,
}

fn world() -> World {
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let reference = registry.reference("policy/probe", "v1");
    let other_reference = registry.reference("policy/probe-b", "v1");
    let wasm = wat::parse_str(PROBE_WAT).unwrap();
    let (a, b) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = RegistryClient::new(ClientOptions::default()).unwrap();
        for (r, key) in [(&reference, &a), (&other_reference, &b)] {
            let r: Reference = r.parse().unwrap();
            let pushed = client
                .push_wasm(wasm.clone(), None, &r, &NoProgress)
                .await
                .unwrap();
            broker::cosign::sign(&client, &r, &pushed.manifest.digest, key)
                .await
                .unwrap();
        }
    });
    let key_a = home.path().join("a.pub");
    let key_b = home.path().join("b.pub");
    std::fs::write(&key_a, a.public_key().to_pem()).unwrap();
    std::fs::write(&key_b, b.public_key().to_pem()).unwrap();
    let data = home.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "contents of in.txt").unwrap();
    let data = std::fs::canonicalize(&data).unwrap();
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("probe.cedar"),
        format!(
            r#"@id("key-a-may-run")
permit (principal, action == Warrant::Action::"instantiate", resource)
when {{ principal.signer.kind == "key" && principal.signer.identity == "{a}" }};

@id("key-a-reads-data")
permit (principal, action == Warrant::Action::"fs.read", resource in Warrant::Dir::"{data}")
when {{ principal.signer.identity == "{a}" }};

@id("greeting")
permit (principal, action == Warrant::Action::"env.read", resource == Warrant::EnvVar::"GREETING");
"#,
            a = a.public_key().fingerprint(),
            data = data.display(),
        ),
    )
    .unwrap();
    World {
        _registry: registry,
        reference,
        other_reference,
        key_a: key_a.to_str().unwrap().to_owned(),
        key_b: key_b.to_str().unwrap().to_owned(),
        data,
        policies,
        home,
    }
}

impl World {
    fn warrant(&self, args: &[&str]) -> Output {
        crate::warrant_in(self.home.path())
            .arg("--policies")
            .arg(&self.policies)
            .args(args)
            .output()
            .unwrap()
    }

    fn dir(&self, suffix: &str) -> String {
        format!("{}::/data{suffix}", self.data.display())
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_run_gets_exactly_the_granted_handles() {
    let w = world();
    let ro = w.dir(":ro");

    // Explain: everything asked is allowed, each row naming its policy.
    let out = w.warrant(&[
        "policy",
        "explain",
        &w.reference,
        "--key",
        &w.key_a,
        "--dir",
        &ro,
        "--env",
        "GREETING=hello",
    ]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    for (row, policy) in [
        ("instantiate", "key-a-may-run"),
        ("fs.read", "key-a-reads-data"),
        ("env.read GREETING", "greeting"),
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_default();
        assert!(
            line.contains("allow") && line.contains(&format!("`{policy}`")),
            "{row}: {table}"
        );
    }

    // Run read-only: the guest sees GREETING and in.txt, nothing else, and cannot write.
    let out = w.warrant(&[
        "run",
        &w.reference,
        "--key",
        &w.key_a,
        "--dir",
        &ro,
        "--env",
        "GREETING=hello",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout,
        "GREETING=hello\0contents of in.txt",
        "{}",
        text(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "the create must be refused");
    assert!(!w.data.join("out.txt").exists());

    // Asking to write is denied by default, and the run refused (123), naming the request.
    let rw = w.dir("");
    let out = w.warrant(&["run", &w.reference, "--key", &w.key_a, "--dir", &rw]);
    assert_eq!(out.status.code(), Some(123), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "fs.write {}: denied: no policy permits it",
            w.data.display()
        )),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    // With --drop-denied the run goes ahead without what was denied: the directory read-only,
    // no SECRET.
    let out = w.warrant(&[
        "run",
        &w.reference,
        "--key",
        &w.key_a,
        "--dir",
        &rw,
        "--env",
        "GREETING=hi",
        "--env",
        "SECRET=x",
        "--drop-denied",
    ]);
    assert_eq!(
        text(&out.stdout),
        "GREETING=hi\0contents of in.txt",
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("dropped `env.read SECRET`"));
    assert!(text(&out.stderr).contains("dropped `fs.write"));
    assert!(!w.data.join("out.txt").exists());

    // No directory asked: fd 3 does not exist, so nothing is read (and the create fails).
    let out = w.warrant(&["run", &w.reference, "--key", &w.key_a]);
    assert_eq!(text(&out.stdout), "", "{}", text(&out.stderr));
}

#[test]
fn the_same_artifact_signed_by_another_key_is_denied_instantiate() {
    let w = world();
    // Both keys are trusted, so B's signature verifies; only the policy tells them apart.
    let out = w.warrant(&[
        "run",
        &w.other_reference,
        "--key",
        &w.key_a,
        "--key",
        &w.key_b,
    ]);
    assert_eq!(out.status.code(), Some(123), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("instantiate (memory")
            && text(&out.stderr).contains("denied: no policy permits it"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let out = w.warrant(&[
        "policy",
        "explain",
        &w.other_reference,
        "--key",
        &w.key_a,
        "--key",
        &w.key_b,
    ]);
    assert_eq!(out.status.code(), Some(123));
    assert!(text(&out.stdout).contains("deny"));
}

#[test]
fn directory_asks_are_canonical_or_refused() {
    let w = world();
    let run = |dir: &str| w.warrant(&["run", &w.reference, "--key", &w.key_a, "--dir", dir]);

    // `..` is refused outright (usage), even when it would lead back inside.
    let dotdot = format!("{}/../data::/data:ro", w.data.display());
    let out = run(&dotdot);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("`..` is not accepted"));

    // A trailing slash is the same directory.
    let out = run(&format!("{}/::/data:ro", w.data.display()));
    assert_eq!(
        text(&out.stdout),
        "contents of in.txt",
        "{}",
        text(&out.stderr)
    );

    // A symlink inside the permitted directory pointing out of it is decided on its target.
    let outside = w.home.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, w.data.join("escape")).unwrap();
    let out = run(&format!("{}/escape::/data:ro", w.data.display()));
    assert_eq!(out.status.code(), Some(123), "{}", text(&out.stderr));
    let canonical_outside = std::fs::canonicalize(&outside).unwrap();
    assert!(
        text(&out.stderr).contains(&format!("fs.read {}", canonical_outside.display())),
        "{}",
        text(&out.stderr)
    );

    // A non-UTF-8 name cannot be a policy resource: refused as usage.
    use std::os::unix::ffi::OsStrExt as _;
    let odd = w.data.join(std::ffi::OsStr::from_bytes(b"odd-\xff"));
    std::fs::create_dir(&odd).unwrap();
    let mut arg = odd.as_os_str().to_owned();
    arg.push("::/odd:ro");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrant-it"))
        .arg("--policies")
        .arg(&w.policies)
        .args(["run", &w.reference, "--key", &w.key_a, "--dir"])
        .arg(&arg)
        .env("WARRANT_HOME", w.home.path())
        .env("HOME", w.home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A file, or a missing path, is not a directory.
    for bad in [
        format!("{}/in.txt::/f", w.data.display()),
        format!("{}/missing::/m", w.data.display()),
    ] {
        assert_eq!(run(&bad).status.code(), Some(2), "{bad}");
    }
}

/// The README's example (`examples/hello`).
fn example() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hello")
}

/// `warrant run` of the example's layout with its key, under `policies`.
fn run_example(home: &std::path::Path, policies: &std::path::Path) -> Output {
    crate::warrant_in(home)
        .arg("run")
        .arg("--key")
        .arg(example().join("example-signer.pub"))
        .arg("--policies")
        .arg(policies)
        .arg(format!("oci-layout:{}", example().join("layout").display()))
        .output()
        .unwrap()
}

/// A policy set validated once is remembered under a MAC over its exact files: a second run
/// skips validation, but a changed set is validated again, and an entry copied to the changed
/// set's name (someone with write access to the data directory) does not let it load.
#[test]
fn a_forged_validation_memo_does_not_let_an_invalid_policy_set_load() {
    let home = tempfile::tempdir().unwrap();
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let hello = std::fs::read_to_string(example().join("policies/hello.cedar")).unwrap();
    std::fs::write(policies.join("hello.cedar"), &hello).unwrap();
    let run = || run_example(home.path(), &policies);
    let memo = home.path().join("policy-memo");
    let entries = || {
        let mut names: Vec<String> = std::fs::read_dir(&memo)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".valid"))
            .collect();
        names.sort();
        names
    };
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = |files: &[(&str, &str)]| {
        let sources: Vec<(std::path::PathBuf, String)> = files
            .iter()
            .map(|(name, body)| (policies.join(name), (*body).to_owned()))
            .collect();
        format!(
            "{}.valid",
            hex::encode(broker::policy::validation_key(&sources))
        )
    };
    assert_eq!(entries(), vec![key(&[("hello.cedar", &hello)])]);
    // The same files again: still one entry, still runs.
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(entries().len(), 1);
    // An ill-typed policy beside it, with the valid set's entry copied to the new set's name.
    let bad = "@id(\"bad\")\npermit (principal, action, resource) when { principal.digest > 3 };\n";
    std::fs::write(policies.join("bad.cedar"), bad).unwrap();
    let forged = key(&[("bad.cedar", bad), ("hello.cedar", &hello)]);
    std::fs::copy(memo.join(&entries()[0]), memo.join(&forged)).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("bad.cedar:2: policy `bad`"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // Removed again: the remembered set runs without validating.
    std::fs::remove_file(policies.join("bad.cedar")).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// A run whose every request was allowed is remembered under a MAC over its key and body: the
/// next identical run is granted from the memo (an entry re-signed with the memo's own secret
/// is what the run cites), while an entry edited without the secret is ignored and the run
/// decided afresh.
#[test]
fn a_remembered_run_is_granted_from_its_entry_only_when_the_mac_holds() {
    let home = tempfile::tempdir().unwrap();
    let run = || run_example(home.path(), &example().join("policies"));
    // What the newest `decide` record in the audit log cites.
    let cited = || {
        let log = std::fs::read_to_string(home.path().join("audit/log.jsonl")).unwrap();
        let decide = log
            .lines()
            .rev()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["kind"] == "decide")
            .unwrap();
        (
            decide["body"]["decisions"][0]["determining"].clone(),
            decide["body"]["remembered"].clone(),
        )
    };
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let real = serde_json::json!(["hello-signed-by-example-key"]);
    assert_eq!(cited(), (real.clone(), serde_json::json!(false)));
    // The same run again: granted from the memo, and the audit says so.
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(cited(), (real.clone(), serde_json::json!(true)));
    let memo = home.path().join("policy-memo");
    let entries: Vec<std::path::PathBuf> = std::fs::read_dir(&memo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "run"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let original = std::fs::read_to_string(entry).unwrap();
    let (body, _mac) = original.trim_end().split_once('\n').unwrap();
    let forged_body = body.replace("hello-signed-by-example-key", "forged");
    assert_ne!(forged_body, body);
    // Edited without the secret: ignored; decided afresh, and remembered right again.
    std::fs::write(entry, format!("{forged_body}\n{}\n", _mac)).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(cited(), (real, serde_json::json!(false)));
    assert_eq!(std::fs::read_to_string(entry).unwrap(), original);
    // Re-signed with the memo's MAC key (derived from the state's secret, which only
    // Warrant's user can read): used as is. The MAC is defence in depth behind the state's
    // privacy; whoever holds the secret is that user.
    let master = std::fs::read(home.path().join("mac.key")).unwrap();
    let secret = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &master),
        b"warrant mac key: policy-memo",
    );
    let name = entry.file_stem().unwrap().to_str().unwrap();
    let key: [u8; 32] = hex::decode(name).unwrap().try_into().unwrap();
    let signed = [b"run".as_slice(), &[0], &key, forged_body.as_bytes()].concat();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_ref()),
        &signed,
    );
    std::fs::write(
        entry,
        format!("{forged_body}\n{}\n", hex::encode(tag.as_ref())),
    )
    .unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        cited(),
        (serde_json::json!(["forged"]), serde_json::json!(true))
    );
}
