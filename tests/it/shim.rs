//! `containerd-shim-warrant-v1` under a real containerd (Debian's 1.6.20, private to each test)
//! with `ctr`, against a real loopback registry: signed `wasi/wasm` images run and their exit
//! codes come back; an unsigned image, an untrusted signer, a layer changed in containerd's
//! content store after the pull, a denied `instantiate` and a denied environment variable each
//! fail the task with their reason, and each is in the node's audit log; SIGTERM and SIGKILL
//! stop computing and waiting guests, modules and components, within 5 s; two tasks run at
//! once; the node's log verifies.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use tests::components;
use tests::containerd::{RUNTIME, TestContainerd};
use tests::fixtures::{HELLO_OUTPUT, exit_module, hello_module, spin_module};
use tests::registry::TestRegistry;

/// How long a killed guest may take to stop (the issue's bound).
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// The node's policies: pods signed by the node's key may run in any namespace but with at
/// most 64 MiB; they may read `PATH` (containerd sets it) and `GREETING`; the pod named
/// `forbidden` may not run at all.
const POLICIES: &str = r#"
@id("pods-signed-by-the-node-key")
permit (
  principal,
  action == Warrant::Action::"instantiate",
  resource in Warrant::Runtime::"k8s"
)
when { principal.signer.kind == "key" && context.memoryBytes <= 67108864 };

@id("pods-read-path-and-greeting")
permit (
  principal,
  action == Warrant::Action::"env.read",
  resource
)
when { [Warrant::EnvVar::"PATH", Warrant::EnvVar::"GREETING"].contains(resource) };

@id("no-forbidden-pod")
forbid (principal, action == Warrant::Action::"instantiate", resource)
when { context has pod && context.pod == "forbidden" };
"#;

/// A registry, a node (its configuration, key, policies, state and audit log) and a
/// containerd whose Warrant shim uses that node.
struct Node {
    registry: TestRegistry,
    home: tempfile::TempDir,
    containerd: TestContainerd,
}

impl Node {
    fn start() -> Self {
        let registry = TestRegistry::start();
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        for name in ["node", "other"] {
            let out = warrant(dir, &["keygen", "--out", dir.join(name).to_str().unwrap()]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        std::fs::create_dir(dir.join("policies")).unwrap();
        std::fs::write(dir.join("policies/pods.cedar"), POLICIES).unwrap();
        // Relative paths: relative to the file, whatever the shim's working directory.
        std::fs::write(
            dir.join("warrant.toml"),
            "store = \"store\"\n\
             audit_log = \"audit\"\n\
             audit_key = \"audit.key\"\n\
             policies = \"policies\"\n\
             [verify]\n\
             keys = [\"node.pub\"]\n\
             [k8s]\n\
             data_dir = \"state\"\n\
             memory_bytes = \"32MiB\"\n",
        )
        .unwrap();
        let containerd = TestContainerd::start(
            Path::new(env!("CARGO_BIN_EXE_shim-it")),
            &dir.join("warrant.toml"),
        );
        Self {
            registry,
            home,
            containerd,
        }
    }

    fn dir(&self) -> &Path {
        self.home.path()
    }

    /// Push `wasm` as a `wasi/wasm` image (`/NAME`), signed by `key` (`node`, `other`) or
    /// not, and pull it into containerd. Returns its reference.
    fn image(&self, repo: &str, name: &str, wasm: &[u8], key: Option<&str>) -> String {
        let reference = self.registry.reference(repo, "v1");
        let file = self.dir().join(name);
        std::fs::write(&file, wasm).unwrap();
        let out = warrant(
            self.dir(),
            &["push", "--image", file.to_str().unwrap(), &reference],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        if let Some(key) = key {
            let key = self.dir().join(format!("{key}.key"));
            let out = warrant(
                self.dir(),
                &["sign", &reference, "--key", key.to_str().unwrap()],
            );
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let out = self
            .containerd
            .ctr(&["images", "pull", "--plain-http", &reference]);
        assert!(out.status.success(), "ctr pull: {}", stderr(&out));
        reference
    }

    /// Push `wasm` as a multi-platform image — an OCI image index whose `wasi/wasm` entry is
    /// the image — signed by `key` (the index's digest, as `cosign sign TAG` signs it), and pull
    /// it into containerd for platform `wasi/wasm`. Returns its reference and the index's
    /// digest.
    fn index_image(&self, repo: &str, name: &str, wasm: &[u8], key: &str) -> (String, String) {
        let reference = self.registry.reference(repo, "v1");
        let file = self.dir().join(name);
        std::fs::write(&file, wasm).unwrap();
        let out = warrant(
            self.dir(),
            &[
                "push",
                "--image",
                "--index",
                file.to_str().unwrap(),
                &reference,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let digest = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let key = self.dir().join(format!("{key}.key"));
        let out = warrant(
            self.dir(),
            &["sign", &reference, "--key", key.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = self.containerd.ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--platform",
            "wasi/wasm",
            &reference,
        ]);
        assert!(out.status.success(), "ctr pull: {}", stderr(&out));
        (reference, digest)
    }

    /// `ctr run --rm` to the end.
    fn run(&self, reference: &str, id: &str, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--rm", "--runtime", RUNTIME];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[reference, id]);
        let mut command = self.containerd.ctr_command(&args);
        timeout_output(&mut command, Duration::from_secs(60))
    }

    /// `warrant --config NODE …`.
    fn warrant(&self, args: &[&str]) -> Output {
        let config = self.dir().join("warrant.toml");
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        warrant(self.dir(), &all)
    }

    /// The node's audit log, as `audit show --json` prints it.
    fn audit(&self) -> String {
        let out = self.warrant(&["audit", "show", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The status `ctr task ls` shows for `id` (`RUNNING`, `STOPPED`), if it is listed.
    fn task_status(&self, id: &str) -> Option<String> {
        let out = self.containerd.ctr(&["tasks", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(id)).then(|| fields.nth(1).unwrap_or_default().to_owned())
            })
    }

    /// Wait until `id`'s task shows `status`; the time it took.
    fn wait_status(&self, id: &str, status: &str, within: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.task_status(id).as_deref() == Some(status) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "task `{id}` is {:?}, not {status}, after {within:?}\n{}",
            self.task_status(id),
            self.containerd.log()
        );
    }
}

fn warrant(home: &Path, args: &[&str]) -> Output {
    crate::warrant_in(home).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run `command` to its end, killing it after `limit` (`ctr` can wait forever).
fn timeout_output(command: &mut std::process::Command, limit: Duration) -> Output {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if waited.recv_timeout(limit).is_err() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = done.send(());
    out
}

/// The module the `tests/data` sleeper is: 60 s in `poll_oneoff`.
fn sleep_module() -> Vec<u8> {
    wat::parse_str(include_str!("../data/guests/sleep.wat")).unwrap()
}

#[test]
fn a_signed_wasi_image_runs_and_its_exit_code_is_the_task_s() {
    let node = Node::start();
    let hello = node.image("pods/hello", "hello.wasm", &hello_module(), Some("node"));
    let out = node.run(&hello, "hello", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO_OUTPUT);

    let seven = node.image("pods/seven", "seven.wasm", &exit_module(7), Some("node"));
    let out = node.run(&seven, "seven", &[]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    // The environment asked of policy: a permitted variable is given.
    let out = node.run(&hello, "hello-env", &["--env", "GREETING=hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Each ran through the stages under `Runtime::"k8s/<containerd namespace>"`, pod named by
    // the container id, and the node's log verifies.
    let audit = node.audit();
    assert!(audit.contains("k8s/warrant-test"), "{audit}");
    assert!(audit.contains("\"pod\":\"seven\""), "{audit}");
    let out = node.warrant(&["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn every_refusal_fails_the_task_with_its_reason_and_is_in_the_node_s_log() {
    let node = Node::start();
    let unsigned = node.image("pods/unsigned", "u.wasm", &exit_module(3), None);
    let other = node.image("pods/other", "o.wasm", &exit_module(4), Some("other"));
    let hello = node.image("pods/hello", "hello.wasm", &hello_module(), Some("node"));

    let mut cases: Vec<(&str, Output, &str)> = vec![
        (
            "unsigned",
            node.run(&unsigned, "unsigned", &[]),
            "no signature",
        ),
        (
            "untrusted signer",
            node.run(&other, "other", &[]),
            "no signature",
        ),
        (
            "forbidden pod",
            node.run(&hello, "forbidden", &[]),
            "denied",
        ),
        (
            "denied environment variable",
            node.run(&hello, "secret-env", &["--env", "SECRET=x"]),
            "env.read",
        ),
        (
            "memory over the policy's bound",
            node.run(&hello, "big", &["--memory-limit", "1073741824"]),
            "denied",
        ),
    ];

    // A layer changed in containerd's content store after the pull: containerd checked it
    // when it pulled, and would unpack and serve it now; Warrant hashes it again.
    let tampered = node.image("pods/tampered", "t.wasm", &exit_module(5), Some("node"));
    let manifest = node.containerd.ctr(&["images", "ls"]);
    let listing = String::from_utf8_lossy(&manifest.stdout).into_owned();
    let digest = listing
        .lines()
        .find(|l| l.starts_with(&tampered))
        .and_then(|l| l.split_whitespace().find(|f| f.starts_with("sha256:")))
        .unwrap_or_else(|| panic!("{listing}"))
        .to_owned();
    let manifest_bytes = std::fs::read(node.containerd.blob_path(&digest)).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let layer = node
        .containerd
        .blob_path(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1100;
    bytes[last] ^= 0x01;
    set_writable(&layer);
    std::fs::write(&layer, &bytes).unwrap();
    cases.push((
        "layer changed after the pull",
        node.run(&tampered, "tampered", &[]),
        "does not match its digest",
    ));

    for (what, out, reason) in &cases {
        assert_ne!(out.status.code(), Some(0), "{what} ran");
        let err = stderr(out);
        assert!(err.contains("warrant:"), "{what}: {err}");
        assert!(err.contains(reason), "{what}: `{reason}` not in: {err}");
        // Nothing ran: no guest output.
        assert!(
            out.stdout.is_empty(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let audit = node.audit();
    assert!(audit.contains("\"refused\""), "{audit}");
    assert!(audit.contains("\"verified\":false"), "{audit}");
    assert!(audit.contains("no-forbidden-pod"), "{audit}");
    assert!(audit.contains("SECRET"), "{audit}");
    let out = node.warrant(&["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn sigterm_and_sigkill_stop_computing_and_waiting_guests_within_5_s() {
    let node = Node::start();
    let guests = [
        ("spin-module", spin_module()),
        ("sleep-module", sleep_module()),
        ("spin-component", components::spinning()),
        ("sleep-component", components::sleeping()),
    ];
    for (name, wasm) in guests {
        let reference = node.image(
            &format!("pods/{name}"),
            &format!("{name}.wasm"),
            &wasm,
            Some("node"),
        );
        for signal in ["SIGTERM", "SIGKILL"] {
            let id = format!("{name}-{}", signal.to_lowercase());
            let out = node
                .containerd
                .ctr(&["run", "-d", "--runtime", RUNTIME, &reference, &id]);
            assert!(out.status.success(), "{id}: {}", stderr(&out));
            node.wait_status(&id, "RUNNING", Duration::from_secs(30));
            // Still running a moment later: it is not ending on its own.
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(node.task_status(&id).as_deref(), Some("RUNNING"), "{id}");
            let out = node
                .containerd
                .ctr(&["tasks", "kill", "--signal", signal, &id]);
            assert!(out.status.success(), "{id}: {}", stderr(&out));
            let took = node.wait_status(&id, "STOPPED", STOP_WITHIN * 2);
            assert!(took < STOP_WITHIN, "{id} took {took:?} to stop");
            let out = node.containerd.ctr(&["tasks", "delete", &id]);
            assert!(out.status.success(), "{id}: {}", stderr(&out));
            let out = node.containerd.ctr(&["containers", "delete", &id]);
            assert!(out.status.success(), "{id}: {}", stderr(&out));
        }
    }
}

#[test]
fn two_tasks_run_at_once() {
    let node = Node::start();
    let sleeper = node.image("pods/sleeper", "sleep.wasm", &sleep_module(), Some("node"));
    for id in ["first", "second"] {
        let out = node
            .containerd
            .ctr(&["run", "-d", "--runtime", RUNTIME, &sleeper, id]);
        assert!(out.status.success(), "{id}: {}", stderr(&out));
    }
    node.wait_status("first", "RUNNING", Duration::from_secs(30));
    node.wait_status("second", "RUNNING", Duration::from_secs(30));
    for id in ["first", "second"] {
        let out = node
            .containerd
            .ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
        assert!(out.status.success(), "{id}: {}", stderr(&out));
        node.wait_status(id, "STOPPED", STOP_WITHIN);
        let out = node.containerd.ctr(&["tasks", "delete", id]);
        assert!(out.status.success(), "{id}: {}", stderr(&out));
    }
}

/// A multi-platform image (an OCI image index with a `wasi/wasm` entry, as `docker buildx`
/// pushes one) runs: containerd pulls and unpacks the `wasi/wasm` entry, the shim reads the
/// index and that entry's manifest from the content store by digest, re-hashes both, and the
/// signature on the index's digest admits it. The log names the index, the platform and the
/// manifest. So does the same image as a Docker manifest list. The same index with its entry's
/// manifest changed in the content store is refused.
#[test]
fn a_multi_platform_image_runs_its_wasi_wasm_entry() {
    let node = Node::start();
    let (hello, index) = node.index_image("pods/multi", "hello.wasm", &hello_module(), "node");
    let out = node.run(&hello, "multi", &["--platform", "wasi/wasm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO_OUTPUT);

    let audit = node.audit();
    let pull = audit
        .lines()
        .find(|l| l.contains("\"kind\":\"pull\"") && l.contains(&index))
        .unwrap_or_else(|| panic!("no pull record for {index}: {audit}"));
    assert!(pull.contains("\"platform\":\"wasi/wasm\""), "{pull}");
    let index_bytes = std::fs::read(node.containerd.blob_path(&index)).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
    let manifest = parsed["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(pull.contains(&manifest), "{pull}");

    // The same image in Docker's schema 2 (a manifest list of Docker manifests, as skopeo
    // writes it with `--format v2s2`), signed by its own digest, runs the same way.
    let docker = node.registry.reference("pods/multi", "docker");
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--all",
            "--format",
            "v2s2",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{hello}"),
            &format!("docker://{docker}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let key = node.dir().join("node.key");
    let out = warrant(
        node.dir(),
        &["sign", &docker, "--key", key.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = node.containerd.ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--platform",
        "wasi/wasm",
        &docker,
    ]);
    assert!(out.status.success(), "ctr pull: {}", stderr(&out));
    let out = node.run(&docker, "docker-list", &["--platform", "wasi/wasm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO_OUTPUT);

    // The entry's manifest changed in containerd's content store (one byte of its JSON
    // whitespace-free text, so it still parses): refused by its digest, nothing runs. A new
    // node, so the manifest is not already in Warrant's own store.
    drop(node);
    let node = Node::start();
    let (hello, _) = node.index_image("pods/multi", "hello.wasm", &hello_module(), "node");
    let path = node.containerd.blob_path(&manifest);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.iter().position(|b| *b == b'2').unwrap();
    bytes[at] = b'3';
    set_writable(&path);
    std::fs::write(&path, &bytes).unwrap();
    let out = node.run(&hello, "changed", &["--platform", "wasi/wasm"]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(out.stdout.is_empty());
    let audit = node.audit();
    assert!(audit.contains("\"kind\":\"refused\""), "{audit}");
}

/// `warrant policy suggest --pod NAMESPACE/POD` writes what the shim asks: with the node's
/// policies replaced by the suggestion alone, a container in that namespace with the suggested
/// environment variable runs; one asking for another variable, or for more memory than the
/// suggestion bounds, is refused. `policy explain --pod` decides as the shim does, and the
/// suggestion's own tests pass under `policy test`.
#[test]
fn a_policy_suggested_for_a_pod_admits_that_pod_and_no_more() {
    let node = Node::start();
    // A guest that reads its environment (and exits with the number of variables), so the
    // suggestion grants the variables asked for: containerd's `PATH`, and `GREETING`.
    let environ = wat::parse_str(include_str!("../data/guests/environ_dump.wat")).unwrap();
    let hello = node.image("pods/environ", "environ.wasm", &environ, Some("node"));
    // The node's namespace in this containerd; the pod is named by the container id.
    let pod = "warrant-test/suggested";
    let out = node.warrant(&["policy", "explain", "--pod", pod, &hello, "--json"]);
    let explained: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
    assert_eq!(explained["allowed"], true, "{explained}");

    let policies = node.dir().join("policies");
    std::fs::remove_file(policies.join("pods.cedar")).unwrap();
    let out = node.warrant(&[
        "policy",
        "suggest",
        "--pod",
        pod,
        "--env",
        "PATH=/usr/bin",
        "--env",
        "GREETING=hi",
        "--name",
        "hello-pods",
        "--out",
        policies.to_str().unwrap(),
        &hello,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(policies.join("hello-pods.cedar")).unwrap();
    assert!(
        written.contains("resource == Warrant::Runtime::\"k8s/warrant-test\""),
        "{written}"
    );
    let tests = std::fs::read_to_string(policies.join("tests/hello-pods.toml")).unwrap();
    assert!(tests.contains("pod = \"suggested\""), "{tests}");
    let out = node.warrant(&["policy", "test"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = node.run(&hello, "suggested", &["--env", "GREETING=hi"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("GREETING=hi"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (id, extra, says) in [
        ("other-env", vec!["--env", "OTHER=x"], "env.read"),
        (
            "more-memory",
            vec!["--env", "GREETING=hi", "--memory-limit", "1073741824"],
            "denied",
        ),
    ] {
        let out = node.run(&hello, id, &extra);
        assert_ne!(out.status.code(), Some(0), "{id} ran");
        let err = stderr(&out);
        assert!(err.contains(says), "{id}: `{says}` not in: {err}");
    }
}

/// containerd stores blobs read-only.
fn set_writable(path: &PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// The deployment example's node configuration parses and its policies validate against the
/// schema, so the documented set-up starts from files Warrant accepts.
#[test]
fn the_deployment_example_s_configuration_and_policies_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let config = broker::config::Config::load(&root.join("warrant.toml")).unwrap();
    assert_eq!(config.verify.keys.len(), 1);
    assert_eq!(config.identities().unwrap().len(), 1);
    assert!(!config.k8s.drop_denied);
    let home = tempfile::tempdir().unwrap();
    let out = warrant(
        home.path(),
        &[
            "policy",
            "check",
            "--policies",
            root.join("policies").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
