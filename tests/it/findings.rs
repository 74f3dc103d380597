//! Attacks on the promise that nothing runs, and no handle is given, unless a trusted signer
//! signed the digest and a policy granted it, each tried through the real binary: forged cache
//! entries, another guest's compiled code, a directory swapped after it was decided, terminal
//! escapes in what artifacts carry, a state directory someone else can change, hosts spelled
//! as other addresses, provenances the registry reorders, and a policy that reads the signer
//! under another spelling. Each regression test is named after the finding it closes.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use sha2::{Digest as _, Sha256};
use tests::fixtures::{HELLO_OUTPUT, exit_module, hello_module, permit_all_policies};

const READ_PATH_WAT: &str = include_str!("../data/guests/read_path.wat");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A scratch directory (canonical) holding a data directory `home/` for `WARRANT_HOME`.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        Self { _dir: dir, root }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn warrant(&self, args: &[&str]) -> Output {
        crate::warrant_in(&self.home()).args(args).output().unwrap()
    }

    /// A new key pair `name.key` / `name.pub`; the public key's path.
    fn keygen(&self, name: &str) -> String {
        let prefix = self.root.join(name);
        let out = self.warrant(&["keygen", "--out", prefix.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        format!("{}.pub", prefix.display())
    }

    /// `wasm` pushed to a new layout `name`, signed with `key` (a `.pub` path) when given;
    /// its reference and manifest digest.
    fn layout(&self, name: &str, wasm: &[u8], key: Option<&str>) -> (String, String) {
        let file = self.root.join(format!("{name}.wasm"));
        std::fs::write(&file, wasm).unwrap();
        let reference = format!("oci-layout:{}:v1", self.root.join(name).display());
        let out = self.warrant(&["push", file.to_str().unwrap(), &reference]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let digest = text(&out.stdout).trim().to_owned();
        if let Some(key) = key {
            let private = key.replace(".pub", ".key");
            let out = self.warrant(&["sign", &reference, "--key", &private]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        }
        (reference, digest)
    }

    fn policies(&self) -> String {
        permit_all_policies(&self.root)
    }

    /// A policy directory `name` holding `text`; its path.
    fn policy_dir(&self, name: &str, text: &str) -> String {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.cedar"), text).unwrap();
        dir.to_str().unwrap().to_owned()
    }

    /// The fingerprint of the public key at `key`.
    fn fingerprint(&self, key: &str) -> String {
        let public = broker::keys::read_public_key(Path::new(key)).unwrap();
        public.fingerprint()
    }

    /// The files under the compile cache, recursively (what a compile cache keeps per guest;
    /// bookkeeping files left out).
    fn compiled_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    walk(&path, out);
                } else if !name.ends_with(".stats") && !name.starts_with('.') {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.home().join("compiled"), &mut files);
        files.sort();
        files
    }
}

/// The exact refusal of a state path: exit 2, naming the path and what is wrong.
fn assert_refused(out: &Output, path: &Path, what: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("refusing `{}`", path.display())) && stderr.contains(what),
        "expected `{}` refused for `{what}`: {stderr}",
        path.display()
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// Finding 1: with write access to `verdicts/` (its key included) an attacker planted a key
/// of their own and a verdict signed with it, and an unsigned module ran under `--key`. The
/// state is now the user's alone: a verdict cache anyone else can write, or that someone else
/// owns, refuses the run before anything is read from it. Behind that boundary, the forged
/// entry (MACed under a key that is not the state's) is ignored and the module is refused as
/// unsigned.
#[test]
fn finding_1_a_verdict_forged_in_a_cache_others_can_write_does_not_run_an_unsigned_module() {
    let world = World::new();
    let key = world.keygen("signer");
    let policies = world.policies();
    let (signed, _) = world.layout("signed", &hello_module(), Some(&key));
    let (unsigned, unsigned_digest) = world.layout("unsigned", &exit_module(42), None);
    let run = |reference: &str| {
        world.warrant(&["run", "--key", &key, "--policies", &policies, reference])
    };
    let out = run(&signed);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), HELLO_OUTPUT);

    // The attacker's forgery: the genuine entry's verdict, restated for the unsigned artifact,
    // under an entry name computed as the cache computes it, MACed with a key they chose.
    let verdicts = world.home().join("verdicts");
    let genuine = std::fs::read_dir(&verdicts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().len() == 64)
        .unwrap();
    let entry = std::fs::read_to_string(&genuine).unwrap();
    let mut body: serde_json::Value = serde_json::from_str(entry.lines().next().unwrap()).unwrap();
    let repository = format!(
        "oci-layout:{}",
        unsigned
            .strip_prefix("oci-layout:")
            .unwrap()
            .strip_suffix(":v1")
            .unwrap()
    );
    body["repository"] = repository.clone().into();
    body["digest"] = unsigned_digest.clone().into();
    body["verdict"]["digest"] = unsigned_digest.clone().into();
    let trust = body["trust"].as_str().unwrap().to_owned();
    let body = serde_json::to_string(&body).unwrap();
    let attacker_key = [7_u8; 32];
    let name = hex::encode(Sha256::digest(
        format!("{repository}\n{unsigned_digest}\n{trust}").as_bytes(),
    ));
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &attacker_key),
        body.as_bytes(),
    );
    chmod(&verdicts, 0o777);
    std::fs::write(verdicts.join("key"), attacker_key).unwrap();
    std::fs::write(
        verdicts.join(&name),
        format!("{body}\n{}\n", hex::encode(mac.as_ref())),
    )
    .unwrap();

    let out = run(&unsigned);
    assert_refused(&out, &verdicts, "writable by group or others (mode 0777)");

    // Owned by someone else, however private its mode.
    chmod(&verdicts, 0o700);
    if let Some(owner) = crate::give_away(&verdicts) {
        assert_refused(&run(&unsigned), &verdicts, "owned by uid 65534");
        crate::take_back(&verdicts, owner);
    }

    // The user's own again: the forged entry fails the state's MAC and is ignored.
    let out = run(&unsigned);
    assert_eq!(out.status.code(), Some(122), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no signature of"),
        "{}",
        text(&out.stderr)
    );
}

/// Finding 1, the policy memo: a memo others can write (where a forged `.run` entry granted a
/// directory every policy denied) refuses the run; so does one owned by someone else, or a
/// symbolic link in its place.
#[test]
fn finding_1_a_policy_memo_others_can_write_or_own_refuses_the_run() {
    let world = World::new();
    let policies = world.policies();
    let (reference, _) = world.layout("guest", &hello_module(), None);
    let run = || world.warrant(&["run", "--policies", &policies, &reference]);
    assert_eq!(run().status.code(), Some(0));
    let memo = world.home().join("policy-memo");
    chmod(&memo, 0o770);
    assert_refused(&run(), &memo, "writable by group or others (mode 0770)");
    chmod(&memo, 0o700);
    if crate::give_away(&memo).is_some() {
        assert_refused(&run(), &memo, "owned by uid 65534");
    }
    std::fs::remove_dir_all(&memo).unwrap();
    let elsewhere = world.root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    chmod(&elsewhere, 0o700);
    std::os::unix::fs::symlink(&elsewhere, &memo).unwrap();
    assert_refused(&run(), &memo, "it is a symbolic link");
    std::fs::remove_file(&memo).unwrap();
    assert_eq!(run().status.code(), Some(0));
}

/// Finding 2: copying another module's compiled-cache entry over a signed digest's entry ran
/// the attacker's code under the signed digest. The compile cache is Warrant's own: an entry
/// is named by the guest's bytes and MACed with its name, so another guest's code under this
/// guest's name is compiled afresh, and the signed guest runs as itself, with its outcome
/// recorded.
#[test]
fn finding_2_another_guests_compiled_code_copied_over_a_signed_guests_entry_never_runs() {
    let world = World::new();
    let key = world.keygen("signer");
    let policies = world.policies();
    let (signed, _) = world.layout("signed", &hello_module(), Some(&key));
    let (other, _) = world.layout("other", &exit_module(42), None);
    let out = world.warrant(&["run", "--key", &key, "--policies", &policies, &signed]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mine = world.compiled_files();
    assert!(!mine.is_empty(), "the signed guest's code was kept");
    let out = world.warrant(&["run", "--policies", &policies, &other]);
    assert_eq!(out.status.code(), Some(42), "{}", text(&out.stderr));
    let theirs: Vec<PathBuf> = world
        .compiled_files()
        .into_iter()
        .filter(|p| !mine.contains(p))
        .collect();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    for entry in &mine {
        std::fs::copy(&theirs[0], entry).unwrap();
    }
    let out = world.warrant(&["run", "--key", &key, "--policies", &policies, &signed]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), HELLO_OUTPUT);
    let log = std::fs::read_to_string(world.home().join("audit/log.jsonl")).unwrap();
    let last = log
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "outcome")
        .unwrap();
    assert_eq!(last["body"]["outcome"], "exit");
    assert_eq!(last["body"]["detail"], 0);
}

/// Finding 4: the `--dir` host path was canonicalised when the arguments were read and opened
/// by name much later; a path component swapped for a symlink in between gave the guest a
/// directory the policy never saw, while the audit log named the approved one. The directory
/// is now opened once, when it is asked for, and the guest is given that very directory.
/// (The window is held open deterministically: the test holds the audit log's lock, which the
/// run waits for after reading its arguments.)
#[test]
fn finding_4_a_dir_swapped_for_a_symlink_after_it_was_decided_is_not_what_the_guest_gets() {
    let world = World::new();
    let approved = world.root.join("approved");
    let secret = world.root.join("secret");
    for (dir, contents) in [
        (&approved, "approved contents"),
        (&secret, "secret contents"),
    ] {
        std::fs::create_dir(dir).unwrap();
        std::fs::write(dir.join("in.txt"), contents).unwrap();
    }
    let policies = world.root.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.cedar"),
        format!(
            "@id(\"run\") permit (principal, action == Warrant::Action::\"instantiate\", resource);\n\
             @id(\"approved\") permit (principal, action == Warrant::Action::\"fs.read\", resource == Warrant::Dir::\"{}\");\n",
            approved.display()
        ),
    )
    .unwrap();
    let (reference, _) = world.layout("reader", &wat::parse_str(READ_PATH_WAT).unwrap(), None);
    let dir_arg = format!("{}::/data:ro", approved.display());
    let args = [
        "run",
        "--policies",
        policies.to_str().unwrap(),
        "--dir",
        &dir_arg,
        &reference,
        "--",
        "in.txt",
    ];
    // Unswapped: the approved directory.
    let out = world.warrant(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "approved contents");

    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(world.home().join("audit/lock"))
        .unwrap();
    lock.lock().unwrap();
    let child = crate::warrant_in(&world.home())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The run has read its arguments and waits for the lock; the directory is swapped.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::rename(&approved, world.root.join("approved.orig")).unwrap();
    std::os::unix::fs::symlink(&secret, &approved).unwrap();
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "approved contents",
        "the guest must get the directory that was decided"
    );
    let log = std::fs::read_to_string(world.home().join("audit/log.jsonl")).unwrap();
    let granted = log
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "instantiate")
        .unwrap();
    assert_eq!(
        granted["body"]["dirs"][0]["host"],
        approved.display().to_string()
    );
}

/// Finding 9: text an artifact or layout carries was printed raw. A layer title (the pushed
/// file's name) with an OSC title sequence, a C1 `CSI` and a right-to-left override, and a
/// layout marker with an escape sequence, reach the terminal escaped.
#[test]
fn finding_9_escape_sequences_in_artifact_and_layout_text_are_escaped_before_printing() {
    let world = World::new();
    let name = "evil\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}txt.wasm";
    let file = world.root.join(name);
    std::fs::write(&file, hello_module()).unwrap();
    let reference = format!("oci-layout:{}:v1", world.root.join("layout").display());
    let out = world.warrant(&["push", file.to_str().unwrap(), &reference]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let forbidden = ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'];
    for json in [false, true] {
        let mut args = vec!["inspect", reference.as_str()];
        if json {
            args.push("--json");
        }
        let out = world.warrant(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert!(
            !shown.contains(forbidden),
            "raw control characters printed: {shown:?}"
        );
        if json {
            // The same value, escaped.
            let value: serde_json::Value = serde_json::from_str(&shown).unwrap();
            let title =
                &value["manifest"]["layers"][0]["annotations"]["org.opencontainers.image.title"];
            assert_eq!(title, name);
        } else {
            assert!(
                shown.contains("evil\\u{1b}]0;pwned\\u{7}\\u{9b}2J\\u{202e}txt.wasm"),
                "{shown}"
            );
        }
    }
    // A layout whose marker carries an escape sequence: the refusal quotes it escaped.
    let hostile = world.root.join("hostile");
    std::fs::create_dir(&hostile).unwrap();
    std::fs::write(
        hostile.join("oci-layout"),
        r#"{"imageLayoutVersion":"\u001b[2J\u009b1;1H"}"#,
    )
    .unwrap();
    let out = world.warrant(&["pull", &format!("oci-layout:{}", hostile.display())]);
    assert_eq!(out.status.code(), Some(121), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains(forbidden), "{stderr:?}");
    assert!(stderr.contains("\\u{1b}[2J\\u{9b}1;1H"), "{stderr}");
}

/// `audit verify`, `audit show` and `audit key` never create an audit key: where none is,
/// they say so (exit 2) and leave the state as it was.
#[test]
fn audit_commands_never_create_a_key_where_one_was_expected() {
    let world = World::new();
    std::fs::create_dir(world.home()).unwrap();
    chmod(&world.home(), 0o700);
    for args in [
        &["audit", "key"][..],
        &["audit", "verify"],
        &["audit", "show"],
    ] {
        let out = world.warrant(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("there is no audit key here"),
            "{args:?}: {stderr}"
        );
        assert!(!world.home().join("audit.key").exists(), "{args:?}");
    }
    // After a run made the log and its key, the key is used, not replaced.
    let policies = world.policies();
    let (reference, _) = world.layout("guest", &hello_module(), None);
    assert_eq!(
        world
            .warrant(&["run", "--policies", &policies, &reference])
            .status
            .code(),
        Some(0)
    );
    let key = std::fs::read(world.home().join("audit.key")).unwrap();
    assert_eq!(world.warrant(&["audit", "verify"]).status.code(), Some(0));
    assert_eq!(std::fs::read(world.home().join("audit.key")).unwrap(), key);
}

/// The state directory itself: a symbolic link, another user's, writable by group or others,
/// or below a directory others can write, is refused (exit 2, naming it) before anything is
/// read from it or run; a compile cache or an audit key planted as a symbolic link likewise.
#[test]
fn state_directories_and_keys_that_are_not_the_users_alone_are_refused() {
    let world = World::new();
    let policies = world.policies();
    let (reference, _) = world.layout("guest", &hello_module(), None);
    let run = || world.warrant(&["run", "--policies", &policies, &reference]);
    assert_eq!(run().status.code(), Some(0));
    let home = world.home();

    chmod(&home, 0o775);
    assert_refused(&run(), &home, "writable by group or others (mode 0775)");
    chmod(&home, 0o700);

    if let Some(owner) = crate::give_away(&home) {
        assert_refused(&run(), &home, "owned by uid 65534");
        crate::take_back(&home, owner);
    }

    let compiled = home.join("compiled");
    std::fs::remove_dir_all(&compiled).unwrap();
    let elsewhere = world.root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    chmod(&elsewhere, 0o700);
    std::os::unix::fs::symlink(&elsewhere, &compiled).unwrap();
    assert_refused(&run(), &compiled, "it is a symbolic link");
    std::fs::remove_file(&compiled).unwrap();

    let key = home.join("audit.key");
    let real_key = world.root.join("real.key");
    std::fs::rename(&key, &real_key).unwrap();
    std::os::unix::fs::symlink(&real_key, &key).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("it is a symbolic link"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_file(&key).unwrap();
    std::fs::rename(&real_key, &key).unwrap();

    // The data directory as a symbolic link, and under a directory anyone can write.
    let moved = world.root.join("moved-home");
    std::fs::rename(&home, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &home).unwrap();
    assert_refused(&run(), &home, "it is a symbolic link");
    std::fs::remove_file(&home).unwrap();
    std::fs::rename(&moved, &home).unwrap();
    assert_eq!(run().status.code(), Some(0));
    chmod(&world.root, 0o777);
    let out = run();
    chmod(&world.root, 0o700);
    assert_refused(
        &out,
        &world.root,
        "writable by group or others and not sticky",
    );
    assert_eq!(run().status.code(), Some(0));
}

/// The denial of a run or an explanation: exit 123, naming the policy that forbade it.
fn assert_forbidden(out: &Output, policy: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(123),
        "{stderr}{}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(&format!("forbidden by `{policy}`"))
            || text(&out.stdout).contains(&format!("forbidden by `{policy}`")),
        "expected `{policy}` to forbid: {stderr}{}",
        text(&out.stdout)
    );
}

/// Finding 6: `2852039166:80` and `0xa9fea9fe:80` passed a `forbid` written for
/// `169.254.169.254:80`, and resolved to exactly that address; `LOCALHOST:22` was not
/// `localhost:22`. Host asks are now canonical before they are decided: the legacy numeric
/// spellings are refused (exit 2), an IPv4-mapped IPv6 address is decided as the IPv4 address
/// it reaches, and a name is lowercased without its trailing dot.
#[test]
fn finding_6_a_host_spelled_as_another_address_is_decided_as_that_address_or_refused() {
    let world = World::new();
    let (reference, _) = world.layout("guest", &hello_module(), None);
    let policies = world.policy_dir(
        "hosts",
        "@id(\"run\") permit (principal, action == Warrant::Action::\"instantiate\", resource);\n\
         @id(\"any-host\") permit (principal, action == Warrant::Action::\"net.connect\", resource);\n\
         @id(\"no-metadata\") forbid (principal, action == Warrant::Action::\"net.connect\", resource == Warrant::Host::\"169.254.169.254:80\");\n\
         @id(\"no-local-ssh\") forbid (principal, action == Warrant::Action::\"net.connect\", resource == Warrant::Host::\"localhost:22\");\n",
    );
    let explain = |host: &str| {
        world.warrant(&[
            "policy",
            "explain",
            "--policies",
            &policies,
            &reference,
            "--allow-net",
            host,
        ])
    };
    for legacy in [
        "2852039166:80",
        "0xa9fea9fe:80",
        "0251.0376.0251.0376:80",
        "169.254.43518:80",
    ] {
        let out = explain(legacy);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{legacy}: {stderr}");
        assert!(
            stderr.contains(&format!("`{legacy}` is not `HOST:PORT`"))
                && stderr.contains("would be read as the IP address `169.254.169.254`"),
            "{legacy}: {stderr}"
        );
    }
    for (asked, decided, policy) in [
        (
            "[::ffff:169.254.169.254]:80",
            "169.254.169.254:80",
            "no-metadata",
        ),
        ("[::ffff:a9fe:a9fe]:80", "169.254.169.254:80", "no-metadata"),
        ("LOCALHOST.:22", "localhost:22", "no-local-ssh"),
    ] {
        let out = explain(asked);
        assert_forbidden(&out, policy);
        assert!(
            text(&out.stdout).contains(&format!("net.connect {decided}")),
            "{asked}: {}",
            text(&out.stdout)
        );
    }
    // And a run refuses the same way, naming the canonical host.
    let out = world.warrant(&[
        "run",
        "--policies",
        &policies,
        &reference,
        "--allow-net",
        "[::FFFF:169.254.169.254]:80",
    ]);
    assert_forbidden(&out, "no-metadata");
    assert!(out.stdout.is_empty());
}

/// The SLSA v1 provenance of a build of `acme/plugin` at `source_ref`.
fn provenance_predicate(source_ref: &str) -> String {
    serde_json::json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {
                "repository": "https://github.com/acme/plugin", "ref": source_ref}}
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}
    })
    .to_string()
}

/// Finding 7: only the first verified provenance, in the order the registry listed them,
/// became `principal.provenance`; an attacker who could add or reorder `.att` layers chose
/// which one a "no branch builds" `forbid` saw. Every verified provenance is now evaluated, so
/// the `forbid` on any of them wins.
#[test]
fn finding_7_a_forbid_on_any_verified_provenance_wins_whatever_their_order() {
    let world = World::new();
    let key = world.keygen("builder");
    let (reference, _) = world.layout("built", &hello_module(), Some(&key));
    for source_ref in ["refs/tags/v1", "refs/heads/feature"] {
        let predicate = world.root.join("predicate.json");
        std::fs::write(&predicate, provenance_predicate(source_ref)).unwrap();
        let out = world.warrant(&[
            "attest",
            &reference,
            "--key",
            &key.replace(".pub", ".key"),
            "--predicate",
            predicate.to_str().unwrap(),
            "--type",
            "slsaprovenance1",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let fingerprint = world.fingerprint(&key);
    let policies = world.policy_dir(
        "provenance",
        &format!(
            "@id(\"signed-may-run\") permit (principal, action == Warrant::Action::\"instantiate\", resource)\n\
             when {{ principal.signer.kind == \"key\" && principal.signer.identity == \"{fingerprint}\" }};\n\
             @id(\"no-branch-builds\") forbid (principal, action, resource)\n\
             when {{ principal has provenance && principal.provenance.sourceRef like \"refs/heads/*\" }};\n"
        ),
    );
    let out = world.warrant(&[
        "policy",
        "explain",
        "--key",
        &key,
        "--policies",
        &policies,
        &reference,
    ]);
    assert_forbidden(&out, "no-branch-builds");
    let shown = text(&out.stdout);
    assert!(
        shown.contains("at `refs/tags/v1`") && shown.contains("at `refs/heads/feature`"),
        "both provenances are facts: {shown}"
    );
    let out = world.warrant(&["run", "--key", &key, "--policies", &policies, &reference]);
    assert_forbidden(&out, "no-branch-builds");
    assert!(out.stdout.is_empty(), "the guest must not run");
}

/// Finding 11: whether a policy read `signer` was decided by searching its text, so a policy
/// reading `principal["sign\u{65}r"]` was evaluated for the first signer only, and a `forbid`
/// on a revoked key signing second was bypassed. It is now read from the parsed policy.
#[test]
fn finding_11_an_escaped_signer_attribute_is_evaluated_for_every_signer() {
    let world = World::new();
    let good = world.keygen("good");
    let revoked = world.keygen("revoked");
    // The good key signs first, the revoked one second.
    let (reference, _) = world.layout("signed-twice", &hello_module(), Some(&good));
    let out = world.warrant(&[
        "sign",
        &reference,
        "--key",
        &revoked.replace(".pub", ".key"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let revoked_fingerprint = world.fingerprint(&revoked);
    for spelling in [
        "principal[\"sign\\u{65}r\"].identity",
        "principal[\"signer\"][\"identity\"]",
        "principal[\"\\u{73}igner\"][\"ident\\u{69}ty\"]",
    ] {
        let policies = world.policy_dir(
            "revocation",
            &format!(
                "@id(\"keys-may-run\") permit (principal, action == Warrant::Action::\"instantiate\", resource)\n\
                 when {{ principal.signer.kind == \"key\" }};\n\
                 @id(\"revoked-key\") forbid (principal, action, resource)\n\
                 when {{ {spelling} == \"{revoked_fingerprint}\" }};\n"
            ),
        );
        let out = world.warrant(&[
            "run",
            "--key",
            &good,
            "--key",
            &revoked,
            "--policies",
            &policies,
            &reference,
        ]);
        assert_forbidden(&out, "revoked-key");
        assert!(out.stdout.is_empty(), "{spelling}: the guest must not run");
    }
}
