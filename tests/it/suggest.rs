//! `warrant policy suggest` end to end, as a new user would: `keygen`, `push` and `sign` a
//! guest to a real registry, suggest a policy from what it imports, and run it with exactly
//! that, and nothing else, granted.

use std::path::{Path, PathBuf};
use std::process::Output;

use tests::registry::TestRegistry;

/// The README's reader guest (`examples/reader/reader.wat`): prints `in.txt` from its first
/// preopened directory and exits 0, or exits with the errno of opening it.
fn reader() -> Vec<u8> {
    wat::parse_file(repo_root().join("examples/reader/reader.wat")).unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    registry: TestRegistry,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let data = root.join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("in.txt"), "contents of in.txt").unwrap();
        std::fs::create_dir(root.join("elsewhere")).unwrap();
        Self {
            _dir: dir,
            root,
            registry: TestRegistry::start(),
        }
    }

    fn warrant(&self, args: &[&str]) -> Output {
        crate::warrant_in(&self.root.join("home"))
            .current_dir(&self.root)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.warrant(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// `warrant keygen`: the public key's path.
    fn keygen(&self, name: &str) -> String {
        self.keygen_with_fingerprint(name).0
    }

    /// `warrant keygen`: the public key's path and the fingerprint it printed.
    fn keygen_with_fingerprint(&self, name: &str) -> (String, String) {
        let out = self.ok(&["keygen", "--out", name]);
        let printed = text(&out.stdout);
        let fingerprint = printed
            .split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("no fingerprint in {printed}"))
            .trim_matches('`')
            .to_owned();
        (format!("{name}.pub"), fingerprint)
    }

    /// `wasm` pushed to the registry as `repo:v1` and signed with `key` (a `.pub`).
    fn publish(&self, repo: &str, wasm: &[u8], key: &str) -> String {
        let file = self.root.join(format!("{}.wasm", repo.replace('/', "-")));
        std::fs::write(&file, wasm).unwrap();
        let reference = self.registry.reference(repo, "v1");
        self.ok(&["push", file.to_str().unwrap(), &reference]);
        self.ok(&["sign", &reference, "--key", &key.replace(".pub", ".key")]);
        reference
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

#[test]
fn a_new_user_runs_a_module_with_a_suggested_policy_and_no_hand_written_cedar() {
    let w = World::new();
    let (key, fingerprint) = w.keygen_with_fingerprint("release");
    let reference = w.publish("acme/reader", &reader(), &key);
    let ro = "data::/data:ro";

    // No policy: denied.
    let out = w.warrant(&["run", &reference, "--key", &key, "--dir", ro]);
    assert_eq!(out.status.code(), Some(123), "{}", text(&out.stderr));

    // Suggest, asking for a directory, a variable and a host: the module imports a
    // filesystem, and neither environment variables nor sockets.
    let out = w.ok(&[
        "policy",
        "suggest",
        &reference,
        "--key",
        &key,
        "--dir",
        ro,
        "--env",
        "GREETING=hi",
        "--allow-net",
        "api.example.com:443",
        "--out",
        "policies",
    ]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        stdout.starts_with("wrote ") && stdout.contains("reader.cedar (2 permits)"),
        "{stdout}"
    );
    assert!(
        stderr
            .contains("left out `env.read GREETING`: the module imports no environment variables"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("left out `net.connect api.example.com:443`: the module imports no sockets"),
        "{stderr}"
    );
    let policies = w.root.join("policies");
    assert_eq!(
        files_in(&policies),
        ["reader.cedar", "tests/reader.toml"],
        "nothing else is written"
    );
    let cedar = std::fs::read_to_string(policies.join("reader.cedar")).unwrap();
    for needle in [
        "@id(\"reader-instantiate\")",
        "@id(\"reader-fs-read-1\")",
        &format!(
            "principal.signer == {{kind: \"key\", identity: \"{fingerprint}\", issuer: \"key\"}}"
        ),
        &format!(
            "principal in Warrant::Repository::\"{}\"",
            reference.trim_end_matches(":v1")
        ),
        &format!("resource == Warrant::Dir::\"{}\"", w.data().display()),
        "context.memoryBytes <= 268435456",
        "// It imports a filesystem (wasi_snapshot_preview1 path_open)",
    ] {
        assert!(cedar.contains(needle), "`{needle}` in:\n{cedar}");
    }
    for never in ["fs.write", "env.read", "net.connect"] {
        assert!(
            !cedar.contains(&format!("Warrant::Action::\"{never}\"")),
            "{never} granted:\n{cedar}"
        );
    }

    // `policy check` and `policy test` accept it as written.
    w.ok(&["--policies", "policies", "policy", "check"]);
    let out = w.ok(&["--policies", "policies", "policy", "test"]);
    let report = text(&out.stdout);
    assert!(report.contains(", 0 failed"), "{report}");
    assert!(!report.contains("FAIL"), "{report}");

    // The run it was suggested for is granted, and runs.
    let out = w.ok(&[
        "--policies",
        "policies",
        "run",
        &reference,
        "--key",
        &key,
        "--dir",
        ro,
    ]);
    assert_eq!(text(&out.stdout), "contents of in.txt");

    // Least privilege: writing, another directory, more memory, another signer — each denied.
    for (args, denied) in [
        (vec!["--dir", "data::/data"], "fs.write"),
        (vec!["--dir", "elsewhere::/data:ro"], "fs.read"),
        (vec!["--dir", ro, "--memory", "512MiB"], "instantiate"),
    ] {
        let mut all = vec!["--policies", "policies", "run", &reference, "--key", &key];
        all.extend(args);
        let out = w.warrant(&all);
        assert_eq!(
            out.status.code(),
            Some(123),
            "{all:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(&format!("{denied} ")),
            "{all:?}: {}",
            text(&out.stderr)
        );
    }
    let other = w.keygen("other");
    w.ok(&["sign", &reference, "--key", "other.key"]);
    let out = w.warrant(&[
        "--policies",
        "policies",
        "run",
        &reference,
        "--key",
        &other,
        "--dir",
        ro,
    ]);
    assert_eq!(out.status.code(), Some(123), "{}", text(&out.stderr));

    // Suggesting again never replaces what is there.
    let before = std::fs::read(policies.join("reader.cedar")).unwrap();
    let out = w.warrant(&[
        "policy", "suggest", &reference, "--key", &key, "--out", "policies",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(policies.join("reader.cedar")).unwrap(),
        before
    );
}

#[test]
fn a_component_gets_a_suggested_read_write_directory_and_what_it_imports_is_reported() {
    let w = World::new();
    let key = w.keygen("release");
    let reference = w.publish("acme/files", &tests::components::files("in.txt"), &key);
    let rw = "data::/data";
    let out = w.ok(&[
        "policy", "suggest", &reference, "--key", &key, "--dir", rw, "--json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let granted: Vec<&str> = json["granted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        granted,
        ["files-instantiate", "files-fs-read-1", "files-fs-write-1"]
    );
    assert!(json["leftOut"].as_array().unwrap().is_empty());
    assert!(
        json["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("wasi:filesystem/preopens")),
        "{json}"
    );
    // Printed, not written: `--json` without `--out` writes nothing.
    assert!(!w.root.join("files.cedar").exists() && json["written"].is_null());

    w.ok(&[
        "policy", "suggest", &reference, "--key", &key, "--dir", rw, "--out", "policies",
    ]);
    w.ok(&["--policies", "policies", "policy", "test"]);
    let out = w.ok(&[
        "--policies",
        "policies",
        "run",
        &reference,
        "--key",
        &key,
        "--dir",
        rw,
    ]);
    assert_eq!(
        text(&out.stdout),
        "/data\ncontents of in.txt\nwrite: +",
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_suggestion_that_does_not_fit_the_directory_leaves_nothing_written() {
    let w = World::new();
    let key = w.keygen("release");
    let reference = w.publish("acme/reader", &reader(), &key);
    let policies = w.root.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("freeze.cedar"),
        "@id(\"change-freeze\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    let out = w.warrant(&[
        "policy", "suggest", &reference, "--key", &key, "--out", "policies",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("does not fit") && stderr.contains("change-freeze"),
        "{stderr}"
    );
    assert_eq!(files_in(&policies), ["freeze.cedar"]);
}

#[test]
fn an_unsigned_artifact_gets_no_suggestion() {
    let w = World::new();
    let file = w.root.join("reader.wasm");
    std::fs::write(&file, reader()).unwrap();
    let reference = w.registry.reference("acme/unsigned", "v1");
    w.ok(&["push", file.to_str().unwrap(), &reference]);
    let out = w.warrant(&["policy", "suggest", &reference, "--out", "policies"]);
    assert_eq!(out.status.code(), Some(122), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no signature verified"),
        "{}",
        text(&out.stderr)
    );
    assert!(!w.root.join("policies").exists());
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The committed `examples/reader/reader.wasm` is `reader.wat`'s encoding
/// (`WARRANT_BLESS=1` writes it).
#[test]
fn the_reader_examples_wasm_is_its_wat() {
    let dir = repo_root().join("examples/reader");
    let wasm = wat::parse_file(dir.join("reader.wat")).unwrap();
    if std::env::var_os("WARRANT_BLESS").is_some() {
        std::fs::write(dir.join("reader.wasm"), &wasm).unwrap();
    }
    assert!(
        std::fs::read(dir.join("reader.wasm")).unwrap() == wasm,
        "examples/reader/reader.wasm is stale: WARRANT_BLESS=1 cargo test -p tests --test it suggest"
    );
}

/// The README's "Your first policy", command for command: every `warrant` line of its block,
/// with `/tmp/demo` in a temporary directory.
#[test]
fn the_readmes_first_policy_runs_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("## Your first policy")
        .nth(1)
        .and_then(|s| s.split("```sh").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README.md has a `Your first policy` section with a sh block");
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().canonicalize().unwrap();
    let demo = demo.to_str().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/in.txt"),
        "hello from a granted directory\n",
    )
    .unwrap();
    let commands: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("warrant "))
        .collect();
    assert_eq!(commands.len(), 6, "{section}");
    let mut last = None;
    for command in commands {
        let command = command.replace("/tmp/demo", demo);
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let out = crate::warrant_in(&dir.path().join("home"))
            .current_dir(&root)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        last = Some(out);
    }
    assert_eq!(
        text(&last.unwrap().stdout),
        "hello from a granted directory\n"
    );
    let cedar = std::fs::read_to_string(dir.path().join("policies/reader.cedar")).unwrap();
    assert_eq!(cedar.matches("\npermit (").count(), 2, "{cedar}");
}

/// `policy diff`: a suggested policy agrees with its run; a broad hand-written one is shown
/// granting what the module cannot use (an environment variable, a socket), a directory the
/// run did not ask for, and `instantiate` without bounds; asking for more than is granted is a
/// denial. Each as a row, and exit 123 unless everything agrees.
#[test]
fn policy_diff_names_denials_and_grants_the_artifact_cannot_use() {
    let w = World::new();
    let (key, fingerprint) = w.keygen_with_fingerprint("release");
    let reference = w.publish("acme/reader", &reader(), &key);
    let ro = "data::/data:ro";
    w.ok(&[
        "policy",
        "suggest",
        &reference,
        "--key",
        &key,
        "--dir",
        ro,
        "--out",
        "suggested",
    ]);
    let out = w.ok(&[
        "--policies",
        "suggested",
        "policy",
        "diff",
        &reference,
        "--key",
        &key,
        "--dir",
        ro,
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["agree"], true, "{json}");
    let findings: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["finding"].as_str().unwrap())
        .collect();
    assert_eq!(findings, ["agrees", "agrees"]);

    let broad = w.root.join("broad");
    std::fs::create_dir(&broad).unwrap();
    std::fs::write(
        broad.join("broad.cedar"),
        format!(
            r#"@id("signed-may-run")
permit (principal, action == Warrant::Action::"instantiate", resource)
when {{ principal.signer.identity == "{fingerprint}" }};

@id("signed-may-read-home")
permit (principal, action == Warrant::Action::"env.read", resource == Warrant::EnvVar::"HOME");

@id("signed-may-read-data")
permit (principal, action == Warrant::Action::"fs.read", resource in Warrant::Dir::"{data}");

@id("signed-may-read-elsewhere")
permit (principal, action == Warrant::Action::"fs.read", resource == Warrant::Dir::"{elsewhere}");

@id("signed-may-connect")
permit (principal, action == Warrant::Action::"net.connect", resource == Warrant::Host::"api.example.com:443");
"#,
            data = w.data().display(),
            elsewhere = w.root.join("elsewhere").display(),
        ),
    )
    .unwrap();
    // Asking to write as well: denied.
    let out = w.warrant(&[
        "--policies",
        "broad",
        "policy",
        "diff",
        &reference,
        "--key",
        &key,
        "--dir",
        "data::/data",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(123), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(String, bool, String)> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{} {}",
                    r["request"]["action"].as_str().unwrap(),
                    r["request"]["resource"].as_str().unwrap()
                ),
                r["asked"].as_bool().unwrap(),
                r["finding"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let data = w.data().display().to_string();
    let elsewhere = w.root.join("elsewhere").display().to_string();
    let expected = [
        ("instantiate cli".to_owned(), true, "agrees"),
        (format!("fs.read {data}"), true, "agrees"),
        (format!("fs.write {data}"), true, "denied"),
        ("instantiate cli".to_owned(), false, "unbounded"),
        ("instantiate cli".to_owned(), false, "unbounded"),
        ("env.read HOME".to_owned(), false, "unusable"),
        (format!("fs.read {elsewhere}"), false, "unasked"),
        (
            "net.connect api.example.com:443".to_owned(),
            false,
            "unusable",
        ),
    ];
    assert_eq!(
        rows,
        expected
            .iter()
            .map(|(r, a, f)| (r.clone(), *a, (*f).to_owned()))
            .collect::<Vec<_>>(),
        "{json}"
    );

    // The table names each finding.
    let out = w.warrant(&[
        "--policies",
        "broad",
        "policy",
        "diff",
        &reference,
        "--key",
        &key,
        "--dir",
        ro,
    ]);
    assert_eq!(out.status.code(), Some(123));
    let table = text(&out.stdout);
    for needle in [
        "granted, and the artifact cannot use it",
        "granted beyond what the run asks",
        "granted with no bound",
        "imports no environment variables",
    ] {
        assert!(table.contains(needle), "{needle}: {table}");
    }
}
