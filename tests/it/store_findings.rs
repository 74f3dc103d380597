//! Regression tests for findings of a security review of the store, layouts and the registry
//! client, each run the way the attack ran: through the `warrant` binary, against a real
//! registry (or the hostile one), with real symbolic links, FIFOs and a lock held by another
//! open file description. Each asserts the exact refusal: exit code and the decisive words.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use registry_client::limits::{MAX_REQUESTS_PER_RUN, STORE_LOCK_WAIT};
use registry_client::{ClientOptions, NoProgress, Reference, RegistryClient, Store};
use tests::fixtures::hello_module;
use tests::hostile::{HostileRegistry, Scenario};
use tests::registry::TestRegistry;

/// A `warrant` still running after this is hung: it is killed and the test fails.
const HANG: Duration = Duration::from_secs(60);

/// How a `warrant` process ended, and how long it took.
struct Finished {
    output: Output,
    elapsed: Duration,
}

impl Finished {
    fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The exit code is `code` and the error says each of `needles`.
    fn assert_refused(&self, code: i32, needles: &[&str]) {
        let stderr = self.stderr();
        assert_eq!(self.code(), Some(code), "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
        }
    }
}

/// Run `command` to its end, or kill it after `hang` and fail.
fn finish(mut command: Command, hang: Duration) -> Finished {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = command.spawn().expect("start warrant");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(hang) {
        Ok(output) => Finished {
            output: output.expect("warrant's output"),
            elapsed: start.elapsed(),
        },
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("warrant hung for {hang:?} and was killed: {command:?}");
        }
    }
}

/// `warrant` with its own home and `--store store`.
fn warrant(home: &Path, store: &Path) -> Command {
    let mut command = crate::warrant_in(home);
    command.arg("--store").arg(store);
    command
}

/// A real registry holding the hello module at `findings/app:v1`.
fn registry_with_module() -> (TestRegistry, String) {
    let registry = TestRegistry::start();
    let reference = registry.reference("findings/app", "v1");
    let target: Reference = reference.parse().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(
            RegistryClient::new(ClientOptions::default())
                .unwrap()
                .push_wasm(hello_module(), None, &target, &NoProgress),
        )
        .unwrap();
    (registry, reference)
}

/// A file whose last modification was two days ago: what the stale-quarantine sweep removes.
fn old_file(path: &Path) {
    std::fs::write(path, b"the audit log's signing key").unwrap();
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 24 * 3600))
        .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    assert!(
        Command::new("mkfifo").arg(path).status().unwrap().success(),
        "mkfifo {}",
        path.display()
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A store directory whose `.warrant` exists, private, as Warrant makes it.
fn store_with_private_dir(home: &Path) -> PathBuf {
    let store = home.join("store");
    std::fs::create_dir_all(store.join(".warrant")).unwrap();
    chmod(&store.join(".warrant"), 0o700);
    store
}

/// Finding 3: a symbolic link planted at `STORE/.warrant/tmp` aimed the stale-quarantine sweep
/// at another directory, where every file older than six hours was deleted (the audit key, in
/// the review). The pull is now refused before anything is swept, naming the link.
#[test]
fn finding_3a_a_symlinked_quarantine_is_refused_and_nothing_is_swept() {
    let (_registry, reference) = registry_with_module();
    let home = tempfile::tempdir().unwrap();
    let victim = home.path().join("data");
    std::fs::create_dir(&victim).unwrap();
    old_file(&victim.join("audit.key"));
    let store = store_with_private_dir(home.path());
    std::os::unix::fs::symlink(&victim, store.join(".warrant/tmp")).unwrap();

    let pull = finish(
        {
            let mut c = warrant(home.path(), &store);
            c.arg("pull").arg(&reference);
            c
        },
        HANG,
    );
    let tmp = std::fs::canonicalize(&store).unwrap().join(".warrant/tmp");
    pull.assert_refused(
        2,
        &[&format!(
            "refusing `{}`: it is a symbolic link",
            tmp.display()
        )],
    );
    assert!(
        victim.join("audit.key").exists(),
        "the sweep followed the link"
    );
    assert_eq!(names_in(&victim), ["audit.key"]);
}

/// Finding 3: a symbolic link planted at `STORE/blobs/sha256` made a pull write the registry's
/// bytes, named by their digests, into any directory. Refused now, naming the link; nothing is
/// written there.
#[test]
fn finding_3b_a_symlinked_blob_directory_is_refused_and_nothing_is_written_through_it() {
    let (_registry, reference) = registry_with_module();
    let home = tempfile::tempdir().unwrap();
    let outside = home.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let store = home.path().join("store");
    std::fs::create_dir_all(store.join("blobs")).unwrap();
    std::os::unix::fs::symlink(&outside, store.join("blobs/sha256")).unwrap();

    let pull = finish(
        {
            let mut c = warrant(home.path(), &store);
            c.arg("pull").arg(&reference);
            c
        },
        HANG,
    );
    pull.assert_refused(
        2,
        &[&format!(
            "refusing `{}`: it is a symbolic link",
            store.join("blobs/sha256").display()
        )],
    );
    assert!(names_in(&outside).is_empty(), "{:?}", names_in(&outside));
}

/// Finding 3: `push`, `sign` and `attest` into an `oci-layout:` directory write through the
/// store, so links planted in the layout aimed them too. Refused the same way.
#[test]
fn finding_3c_a_push_into_a_layout_with_planted_links_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let module = home.path().join("hello.wasm");
    std::fs::write(&module, hello_module()).unwrap();
    for plant in ["blobs/sha256", ".warrant/tmp"] {
        let layout = home
            .path()
            .join(format!("layout-{}", plant.replace('/', "-")));
        let outside = home
            .path()
            .join(format!("outside-{}", plant.replace('/', "-")));
        std::fs::create_dir_all(&outside).unwrap();
        old_file(&outside.join("keep"));
        let parent = layout.join(plant).parent().unwrap().to_owned();
        std::fs::create_dir_all(&parent).unwrap();
        chmod(&parent, 0o700);
        std::os::unix::fs::symlink(&outside, layout.join(plant)).unwrap();

        let push = finish(
            {
                let mut c = crate::warrant_in(home.path());
                c.arg("push")
                    .arg(&module)
                    .arg(format!("oci-layout:{}:v1", layout.display()));
                c
            },
            HANG,
        );
        let named = if plant == ".warrant/tmp" {
            std::fs::canonicalize(&layout).unwrap().join(plant)
        } else {
            layout.join(plant)
        };
        push.assert_refused(
            2,
            &[&format!(
                "refusing `{}`: it is a symbolic link",
                named.display()
            )],
        );
        assert_eq!(names_in(&outside), ["keep"], "{plant}");
    }
}

/// A layout directory with a FIFO at `name` (and a valid marker unless the FIFO is the
/// marker).
fn layout_with_fifo(home: &Path, name: &str) -> PathBuf {
    let layout = home.join(format!("fifo-{name}"));
    std::fs::create_dir(&layout).unwrap();
    if name != "oci-layout" {
        std::fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
    }
    mkfifo(&layout.join(name));
    layout
}

/// Every refusal of a FIFO comes within this (the bug: never).
const FIFO_BOUND: Duration = Duration::from_secs(10);

/// Finding 5: a FIFO in place of a layout's `oci-layout` or `index.json` blocked `open()`
/// forever. Now it is refused at once, naming it; a malformed layout is a store error (121).
#[test]
fn finding_5_a_fifo_in_a_layout_is_refused_at_once_by_pull() {
    let home = tempfile::tempdir().unwrap();
    for name in ["oci-layout", "index.json"] {
        let layout = layout_with_fifo(home.path(), name);
        let pull = finish(
            {
                let mut c = warrant(home.path(), &home.path().join("store"));
                c.arg("pull")
                    .arg(format!("oci-layout:{}:v1", layout.display()));
                c
            },
            Duration::from_secs(20),
        );
        let path = std::fs::canonicalize(&layout).unwrap().join(name);
        pull.assert_refused(
            121,
            &[&format!(
                "malformed `{}`: it is a FIFO, not a regular file",
                path.display()
            )],
        );
        assert!(pull.elapsed < FIFO_BOUND, "{name}: {:?}", pull.elapsed);
    }
}

/// The README example's key and policies directory.
fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hello")
}

/// Finding 5, through `run`: the hang held the audit log's lock, so every other run failed
/// too. Refused at once, like `pull`.
#[test]
fn finding_5_a_fifo_in_a_layout_is_refused_at_once_by_run() {
    let home = tempfile::tempdir().unwrap();
    for name in ["oci-layout", "index.json"] {
        let layout = layout_with_fifo(home.path(), name);
        let run = finish(
            {
                let mut c = warrant(home.path(), &home.path().join("store"));
                c.arg("run")
                    .arg("--key")
                    .arg(example().join("example-signer.pub"))
                    .arg("--policies")
                    .arg(example().join("policies"))
                    .arg(format!("oci-layout:{}:v1", layout.display()));
                c
            },
            Duration::from_secs(20),
        );
        let path = std::fs::canonicalize(&layout).unwrap().join(name);
        run.assert_refused(
            121,
            &[&format!(
                "malformed `{}`: it is a FIFO, not a regular file",
                path.display()
            )],
        );
        assert!(run.elapsed < FIFO_BOUND, "{name}: {:?}", run.elapsed);
    }
}

/// Finding 8: the store's lock was waited on without a bound, so whoever could open it (any
/// local user: it was 0644 in a 0755 directory, and `flock` works on a read-only descriptor)
/// hung every pull. The wait is bounded now, and the refusal names the lock.
#[test]
fn finding_8_a_held_store_lock_is_waited_on_for_a_bounded_time() {
    let (_registry, reference) = registry_with_module();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    Store::open(&store).unwrap();
    let lock_path = store.join(".warrant/lock");
    // Another open file description, read-only, holds the lock.
    let held = File::open(&lock_path).unwrap();
    held.lock().unwrap();

    let pull = finish(
        {
            let mut c = warrant(home.path(), &store);
            c.arg("pull").arg(&reference);
            c
        },
        STORE_LOCK_WAIT + HANG,
    );
    let lock = std::fs::canonicalize(&store).unwrap().join(".warrant/lock");
    pull.assert_refused(
        121,
        &[
            &format!("store lock `{}`", lock.display()),
            "held by another process",
        ],
    );
    assert!(
        pull.elapsed >= STORE_LOCK_WAIT && pull.elapsed < STORE_LOCK_WAIT + Duration::from_secs(10),
        "{:?}",
        pull.elapsed
    );
    drop(held);
    let again = finish(
        {
            let mut c = warrant(home.path(), &store);
            c.arg("pull").arg(&reference);
            c
        },
        HANG,
    );
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
}

/// Finding 8: a lock file others can open (0644), or that another user owns, is refused
/// (exit 2), naming it.
#[test]
fn finding_8_a_lock_file_others_could_open_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    Store::open(&store).unwrap();
    let lock_path = store.join(".warrant/lock");
    let lock = std::fs::canonicalize(&lock_path).unwrap();
    let pull = || {
        finish(
            {
                let mut c = warrant(home.path(), &store);
                // Nothing listens there: the store is opened, and refused, first.
                c.arg("pull").arg("127.0.0.1:1/findings/app:v1");
                c
            },
            HANG,
        )
    };
    chmod(&lock_path, 0o644);
    pull().assert_refused(
        2,
        &[&format!(
            "refusing `{}`: it is accessible to group or others (mode 0644)",
            lock.display()
        )],
    );
    chmod(&lock_path, 0o600);
    if crate::give_away(&lock_path).is_none() {
        return;
    }
    pull().assert_refused(
        2,
        &[&format!(
            "refusing `{}`: it is owned by uid 65534",
            lock.display()
        )],
    );
}

/// `warrant.toml` with an operation deadline of 3 s and a read timeout of 1 s, and a public
/// key (signing nothing the registries serve).
fn deadline_config(home: &Path) -> (PathBuf, PathBuf) {
    let config = home.join("warrant.toml");
    std::fs::write(
        &config,
        "[registry]\noperation_deadline = \"3s\"\nread_timeout = \"1s\"\n",
    )
    .unwrap();
    let key = home.join("signer.pub");
    let signer = broker::keys::SigningKey::generate().unwrap();
    std::fs::write(&key, signer.public_key().to_pem()).unwrap();
    (config, key)
}

/// The configured operation deadline.
const DEADLINE: Duration = Duration::from_secs(3);

/// Finding 10: the operation deadline bounded each registry operation, not the command: eight
/// signatures whose payloads trickle just under the deadline held `verify` (and `run`, with the
/// audit log locked) for about 24 s under a 3 s deadline. The deadline now bounds resolve,
/// verify and fetch together.
#[test]
fn finding_10_the_operation_deadline_bounds_the_whole_command() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = runtime.block_on(HostileRegistry::start(Scenario::TrickleSignatures));
    let home = tempfile::tempdir().unwrap();
    let (config, key) = deadline_config(home.path());
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for command in ["verify", "run"] {
        let mut c = warrant(home.path(), &home.path().join("store"));
        c.arg("--config").arg(&config).arg(command);
        if command == "run" {
            c.arg("--policies").arg(&policies);
        }
        c.arg("--key").arg(&key).arg(registry.reference());
        let finished = finish(c, HANG);
        finished.assert_refused(
            121,
            &["timed out after 3s: the command's registry deadline"],
        );
        assert!(
            finished.elapsed >= DEADLINE && finished.elapsed < DEADLINE + Duration::from_secs(4),
            "`{command}` took {:?}",
            finished.elapsed
        );
    }
}

/// Finding 10: nothing bounded how many requests one command makes. A registry listing 100
/// signatures, 100 attestations and 100 bundle referrers, and answering each of their fetches
/// `503 Retry-After: 0`, drew about 1,200 requests out of one `verify`. The command is stopped
/// at the cap.
#[test]
fn finding_10_one_command_makes_at_most_the_capped_number_of_requests() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = runtime.block_on(HostileRegistry::start(Scenario::RequestFlood));
    let home = tempfile::tempdir().unwrap();
    let (_, key) = deadline_config(home.path());
    let mut c = warrant(home.path(), &home.path().join("store"));
    c.arg("verify")
        .arg("--key")
        .arg(&key)
        .arg(registry.reference());
    let finished = finish(c, HANG);
    finished.assert_refused(
        121,
        &[&format!(
            "more than {MAX_REQUESTS_PER_RUN} registry requests in one command"
        )],
    );
    let made = registry.requests();
    assert!(
        made <= MAX_REQUESTS_PER_RUN as usize,
        "the registry received {made} requests"
    );
}

/// A policy on a layout's repository (`Warrant::Repository::"oci-layout:<dir>"`) could be
/// sidestepped by naming the directory another way. Every spelling is now the canonical path,
/// for reading and for the facts policies see.
#[test]
fn finding_layout_paths_are_canonical_for_policies() {
    let home = tempfile::tempdir().unwrap();
    let layouts = home.path().join("layouts");
    std::fs::create_dir(&layouts).unwrap();
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(example().join("layout"))
            .arg(layouts.join("evil"))
            .status()
            .unwrap()
            .success()
    );
    let canonical = std::fs::canonicalize(layouts.join("evil")).unwrap();
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(
        example().join("policies/hello.cedar"),
        policies.join("hello.cedar"),
    )
    .unwrap();
    std::fs::write(
        policies.join("forbid.cedar"),
        format!(
            "@id(\"no-evil\")\nforbid (principal, action, resource)\nwhen {{ principal in Warrant::Repository::\"oci-layout:{}\" }};\n",
            canonical.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(&canonical, home.path().join("link")).unwrap();
    let dir = home.path().display().to_string();
    for spelling in [
        canonical.display().to_string(),
        format!("{dir}/layouts/./evil"),
        format!("{dir}//layouts//evil"),
        format!("{dir}/layouts/../layouts/evil"),
        "layouts/evil".to_owned(),
        "./layouts/evil/".to_owned(),
        format!("{dir}/link"),
    ] {
        let mut c = warrant(home.path(), &home.path().join("store"));
        c.current_dir(home.path())
            .arg("run")
            .arg("--key")
            .arg(example().join("example-signer.pub"))
            .arg("--policies")
            .arg(&policies)
            .arg(format!("oci-layout:{spelling}"));
        let run = finish(c, HANG);
        run.assert_refused(123, &["no-evil"]);
    }
    // The audit log names what was decided: the canonical path, whatever the spelling.
    let log = std::fs::read_to_string(home.path().join("audit/log.jsonl")).unwrap();
    let pulls: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["kind"] == "pull")
        .collect();
    assert_eq!(pulls.len(), 7);
    for pull in pulls {
        assert_eq!(
            pull["body"]["reference"],
            format!("oci-layout:{}:latest", canonical.display()),
            "{pull}"
        );
    }
    // A directory that does not exist is a store error (121), named.
    let mut c = warrant(home.path(), &home.path().join("store"));
    c.arg("pull")
        .arg(format!("oci-layout:{dir}/layouts/missing"));
    finish(c, HANG).assert_refused(121, &["not found", "layouts/missing"]);
}
