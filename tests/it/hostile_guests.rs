//! Hostile guests: for each way a guest can spin, grow, recurse, flood, or reach for what it was
//! not given, the real sandbox (in this process) ends it with the right classified outcome
//! within twice its budget, nothing escapes to stdout or the host's files, and this process
//! carries on. The guests are WAT files in `tests/data/guests/`.
//!
//! The tests here take one lock, so they run one at a time: elapsed times and the peak-RSS
//! measurement are not disturbed by each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use broker::policy::{Asks, DirAsk, Facts, Grant, Policies};
use broker::sandbox::{Finished, Handles, Limit, Outcome, RunLimits, Sandbox, SandboxError};
use registry_client::{Digest, WasmKind};

/// The guests.
mod guest {
    pub const INFINITE_LOOP: &str = include_str!("../data/guests/infinite_loop.wat");
    pub const MEMORY_GROW_LOOP: &str = include_str!("../data/guests/memory_grow_loop.wat");
    pub const MEMORY_INITIAL_HUGE: &str = include_str!("../data/guests/memory_initial_huge.wat");
    pub const TABLE_GROW_LOOP: &str = include_str!("../data/guests/table_grow_loop.wat");
    pub const UNBOUNDED_RECURSION: &str = include_str!("../data/guests/unbounded_recursion.wat");
    pub const MEMORY_FILL_OOB: &str = include_str!("../data/guests/memory_fill_oob.wat");
    pub const STDOUT_FLOOD: &str = include_str!("../data/guests/stdout_flood.wat");
    pub const READ_PATH: &str = include_str!("../data/guests/read_path.wat");
    pub const READONLY_MUTATIONS: &str = include_str!("../data/guests/readonly_mutations.wat");
    pub const ENVIRON_DUMP: &str = include_str!("../data/guests/environ_dump.wat");
    pub const RANDOM_HUGE: &str = include_str!("../data/guests/random_huge.wat");
    pub const RANDOM_GET_TINY: &str = include_str!("../data/guests/random_get_tiny.wat");
    pub const RENUMBER: &str = include_str!("../data/guests/renumber.wat");
    pub const HELLO: &str = include_str!("../data/guests/hello.wat");
    pub const SLEEP: &str = include_str!("../data/guests/sleep.wat");
    pub const SLEEP_AT_INSTANTIATION: &str =
        include_str!("../data/guests/sleep_at_instantiation.wat");
}

const MIB: u64 = 1 << 20;
/// Allowance on top of twice a budget, for a slow CI machine.
const SLACK: Duration = Duration::from_millis(200);
/// The deadline given to guests that a limit other than the clock must stop: long, so a limit
/// that is not enforced shows up as `Deadline` rather than passing.
const LONG: Duration = Duration::from_secs(10);
/// Guests stopped by something other than the clock must end within this.
const PROMPT: Duration = Duration::from_secs(1);
/// A run that has not ended by now is hung: fail rather than wait for the harness.
const HANG: Duration = Duration::from_secs(60);
/// In the file the read-only and escape cases try to reach.
const SECRET: &str = "TOP-SECRET-7f3a9c: this must never reach a guest";
const DATA: &str = "data.txt: the bytes a read-only guest must not change\n";
const IN_TXT: &str = "contents of in.txt";

const PERMIT_ALL: &str = r#"@id("all") permit (principal, action, resource);"#;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One engine for unmetered guests and one that meters fuel: an engine that meters fuel gives a
/// run without `RunLimits::fuel` zero fuel (it ends at once, as `Limited { Fuel }`), so the fuel
/// guest gets an engine of its own.
struct Sandboxes {
    plain: Arc<Sandbox>,
    metered: Arc<Sandbox>,
}

impl Sandboxes {
    fn new() -> Self {
        Self {
            plain: Arc::new(Sandbox::new().unwrap()),
            metered: Arc::new(Sandbox::with_fuel(true).unwrap()),
        }
    }
}

/// One run, for the report.
struct Ran {
    case: String,
    outcome: Outcome,
    elapsed: Duration,
}

fn ran(case: impl Into<String>, f: &Finished) -> Ran {
    Ran {
        case: case.into(),
        outcome: f.outcome.clone(),
        elapsed: f.elapsed,
    }
}

fn show(runs: &[Ran]) {
    for r in runs {
        eprintln!("{:<44} {:>9.1?}  {:?}", r.case, r.elapsed, r.outcome);
    }
}

/// Run `wat` with argv `["guest", arg?]` on a thread of its own (with the 8 MiB stack of a
/// main thread), failing if it hangs or the sandbox panics.
fn run_raw(
    sandbox: &Arc<Sandbox>,
    wat: &str,
    arg: Option<&str>,
    limits: &RunLimits,
    handles: &Handles,
) -> Result<Finished, SandboxError> {
    let wasm = wat::parse_str(wat).unwrap();
    let mut args = vec!["guest".to_owned()];
    args.extend(arg.map(str::to_owned));
    let (sandbox, limits, handles) = (Arc::clone(sandbox), limits.clone(), handles.clone());
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("guest".into())
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(sandbox.run_module(&wasm, &args, &limits, &handles));
        })
        .unwrap();
    match rx.recv_timeout(HANG) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => panic!("the sandbox hung: no outcome after {HANG:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("the sandbox panicked"),
    }
}

fn run(
    sandbox: &Arc<Sandbox>,
    wat: &str,
    arg: Option<&str>,
    limits: &RunLimits,
    handles: &Handles,
) -> Finished {
    run_raw(sandbox, wat, arg, limits, handles).unwrap()
}

fn limits(memory_bytes: u64, timeout: Duration) -> RunLimits {
    RunLimits {
        memory_bytes,
        timeout,
        ..RunLimits::default()
    }
}

/// The detail of a `Limited { limit: want }` outcome.
fn limited(f: &Finished, want: Limit) -> String {
    match &f.outcome {
        Outcome::Limited { limit, detail } if *limit == want => detail.clone(),
        other => panic!(
            "expected Limited {{ {want:?} }}, got {other:?} after {:?}",
            f.elapsed
        ),
    }
}

/// It ended within twice `budget` (and a little slack).
fn within(f: &Finished, budget: Duration) {
    let bound = budget * 2 + SLACK;
    assert!(
        f.elapsed < bound,
        "ran {:?}, past {bound:?} (budget {budget:?}): {:?}",
        f.elapsed,
        f.outcome
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- Grants and a host tree to attack.

fn grant(policy: &str, asks: &Asks) -> Grant {
    let policies =
        Policies::from_sources(&[(PathBuf::from("hostile.cedar"), policy.to_owned())]).unwrap();
    let facts = Facts::new(
        Digest::of(b"x"),
        WasmKind::Module,
        1,
        "r".into(),
        "r/x".into(),
        vec![],
        vec![],
    );
    policies.grant(&facts, asks, true).unwrap()
}

/// `dir` preopened read-only at fd 3 (as `--dir DIR::/data:ro`), through a permit-all policy.
fn read_only(dir: &Path, timeout: Duration) -> (Handles, RunLimits) {
    let asks = Asks {
        memory_bytes: 16 * MIB,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap(),
        dirs: vec![DirAsk::open(dir, "/data", true).unwrap()],
        ..Asks::default()
    };
    let grant = grant(PERMIT_ALL, &asks);
    assert_eq!(grant.dirs().len(), 1);
    assert!(!grant.dirs()[0].writable, "{:?}", grant.dirs());
    (Handles::of(&grant), RunLimits::of(&grant, MIB))
}

/// `root/secret.txt` outside the preopen; `root/pre/` is what the guest is given, holding
/// `in.txt`, `data.txt`, an empty `sub/`, and symlinks planted to lead out:
/// `link_rel -> ../secret.txt`, `link_abs -> ROOT/secret.txt`, `link_up -> ..`,
/// `sub/link_deep -> ../../secret.txt`.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pre: PathBuf,
}

fn tree() -> Tree {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let pre = root.join("pre");
    std::fs::write(root.join("secret.txt"), SECRET).unwrap();
    std::fs::create_dir(&pre).unwrap();
    std::fs::create_dir(pre.join("sub")).unwrap();
    std::fs::write(pre.join("in.txt"), IN_TXT).unwrap();
    std::fs::write(pre.join("data.txt"), DATA).unwrap();
    symlink("../secret.txt", pre.join("link_rel")).unwrap();
    symlink(root.join("secret.txt"), pre.join("link_abs")).unwrap();
    symlink("..", pre.join("link_up")).unwrap();
    symlink("../../secret.txt", pre.join("sub").join("link_deep")).unwrap();
    Tree {
        _dir: dir,
        root,
        pre,
    }
}

/// What is at a path, without following symlinks.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File {
        bytes: Vec<u8>,
        modified: SystemTime,
    },
    Dir,
    Link(PathBuf),
}

/// Everything under `root`, recursively.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Entry>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if meta.file_type().is_symlink() {
                into.insert(rel, Entry::Link(std::fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                into.insert(rel, Entry::Dir);
                walk(root, &path, into);
            } else {
                let entry = Entry::File {
                    bytes: std::fs::read(&path).unwrap(),
                    modified: meta.modified().unwrap(),
                };
                into.insert(rel, entry);
            }
        }
    }
    let mut entries = BTreeMap::new();
    walk(root, root, &mut entries);
    entries
}

// ---- The cases. Each runs its guest(s), asserts, and returns what ran.

/// Case 1: a loop that never calls the host ends at the deadline, not before, and within 2x.
fn infinite_loop(s: &Sandboxes) -> Vec<Ran> {
    let budget = Duration::from_millis(300);
    let f = run(
        &s.plain,
        guest::INFINITE_LOOP,
        None,
        &limits(16 * MIB, budget),
        &Handles::none(),
    );
    limited(&f, Limit::Deadline);
    within(&f, budget);
    assert!(f.elapsed >= budget * 9 / 10, "ended early: {:?}", f.elapsed);
    vec![ran("1 infinite loop, 300 ms deadline", &f)]
}

/// Case 2: the same loop, metered, runs out of fuel long before its 10 s deadline.
fn infinite_loop_fuel(s: &Sandboxes) -> Vec<Ran> {
    let limits = RunLimits {
        fuel: Some(1_000_000),
        ..limits(16 * MIB, LONG)
    };
    let f = run(
        &s.metered,
        guest::INFINITE_LOOP,
        None,
        &limits,
        &Handles::none(),
    );
    let detail = limited(&f, Limit::Fuel);
    assert!(detail.contains("1000000"), "{detail}");
    assert!(f.elapsed < PROMPT, "{:?}", f.elapsed);
    vec![ran("2 infinite loop, 1e6 fuel", &f)]
}

/// Case 3: growing memory a page at a time stops at the 16 MiB limit: the guest got exactly the
/// pages the limit allows (one `.` per successful grow), and it did not spin on to the
/// deadline.
fn memory_grow_loop(s: &Sandboxes) -> Vec<Ran> {
    let limit = 16 * MIB;
    let f = run(
        &s.plain,
        guest::MEMORY_GROW_LOOP,
        None,
        &limits(limit, LONG),
        &Handles::none(),
    );
    let detail = limited(&f, Limit::Memory);
    assert!(detail.contains(&limit.to_string()), "{detail}");
    let pages = 1 + f.stdout.len() as u64;
    assert_eq!(pages * 65536, limit, "pages the guest got: {pages}");
    assert!(f.stdout.iter().all(|&b| b == b'.'));
    assert!(f.elapsed < PROMPT, "{:?}", f.elapsed);
    vec![ran("3 memory.grow loop, 16 MiB", &f)]
}

/// Case 4: 1000 initial pages (62.5 MiB) against a 16 MiB limit: instantiation is refused, and
/// the refusal is classified as the memory limit (not a load error, not a panic).
fn memory_initial_huge(s: &Sandboxes) -> Vec<Ran> {
    let result = run_raw(
        &s.plain,
        guest::MEMORY_INITIAL_HUGE,
        None,
        &limits(16 * MIB, LONG),
        &Handles::none(),
    );
    let f = match result {
        Ok(f) => f,
        Err(e) => panic!("expected a classified outcome, got a sandbox error: {e}"),
    };
    let detail = limited(&f, Limit::Memory);
    assert!(detail.contains(&(1000 * 65536).to_string()), "{detail}");
    assert!(f.elapsed < PROMPT, "{:?}", f.elapsed);
    vec![ran("4 initial memory 62.5 MiB, 16 MiB limit", &f)]
}

/// Case 5: growing a table an element at a time stops at the table limit.
fn table_grow_loop(s: &Sandboxes) -> Vec<Ran> {
    let f = run(
        &s.plain,
        guest::TABLE_GROW_LOOP,
        None,
        &limits(16 * MIB, LONG),
        &Handles::none(),
    );
    let detail = limited(&f, Limit::Table);
    let max = broker::sandbox::limits::MAX_TABLE_ELEMENTS.to_string();
    assert!(detail.contains(&max), "{detail}");
    assert!(f.elapsed < PROMPT, "{:?}", f.elapsed);
    vec![ran("5 table.grow loop", &f)]
}

/// Case 6: unbounded recursion traps on the Wasm stack limit; the host thread survives.
fn unbounded_recursion(s: &Sandboxes) -> Vec<Ran> {
    let f = run(
        &s.plain,
        guest::UNBOUNDED_RECURSION,
        None,
        &limits(16 * MIB, LONG),
        &Handles::none(),
    );
    match &f.outcome {
        Outcome::Trapped(message) => assert!(message.contains("stack"), "{message}"),
        other => panic!("expected a stack-overflow trap, got {other:?}"),
    }
    assert!(f.elapsed < PROMPT, "{:?}", f.elapsed);
    vec![ran("6 unbounded recursion", &f)]
}

/// Case 7: a 1 GiB `memory.fill` in 64 MiB of memory traps out of bounds, at once.
fn memory_fill_oob(s: &Sandboxes) -> Vec<Ran> {
    let f = run(
        &s.plain,
        guest::MEMORY_FILL_OOB,
        None,
        &limits(64 * MIB, LONG),
        &Handles::none(),
    );
    match &f.outcome {
        Outcome::Trapped(message) => assert!(message.contains("out of bounds"), "{message}"),
        other => panic!("expected an out-of-bounds trap, got {other:?}"),
    }
    assert!(f.elapsed < Duration::from_millis(500), "{:?}", f.elapsed);
    vec![ran("7 1 GiB memory.fill, 64 MiB memory", &f)]
}

/// Case 8: 100 MiB written to stdout against a 1 MiB cap: the output limit, and at most 1 MiB
/// kept.
fn stdout_flood(s: &Sandboxes) -> Vec<Ran> {
    let limits = RunLimits {
        output_bytes: MIB,
        ..limits(16 * MIB, LONG)
    };
    let f = run(
        &s.plain,
        guest::STDOUT_FLOOD,
        None,
        &limits,
        &Handles::none(),
    );
    limited(&f, Limit::Output);
    assert!(
        f.stdout.len() as u64 <= MIB,
        "{} bytes kept",
        f.stdout.len()
    );
    assert!(f.stdout.iter().all(|&b| b == b'A'));
    assert!(f.stderr.is_empty());
    assert!(f.elapsed < PROMPT, "{:?}", f.elapsed);
    vec![ran("8 100 MiB to stdout, 1 MiB cap", &f)]
}

/// Case 9: paths out of a read-only preopen, by `..`, by absolute path and through symlinks
/// planted inside it, all fail with an errno the guest exits with; the secret never reaches
/// stdout. Reads that stay inside (the controls) work.
fn escape_by_path(s: &Sandboxes) -> Vec<Ran> {
    let t = tree();
    let (handles, limits) = read_only(&t.pre, LONG);
    let before = snapshot(&t.root);
    let mut runs = Vec::new();

    for (path, expected) in [("in.txt", IN_TXT), ("sub/../in.txt", IN_TXT)] {
        let f = run(&s.plain, guest::READ_PATH, Some(path), &limits, &handles);
        assert_eq!(f.outcome, Outcome::Exited(0), "control `{path}`");
        assert_eq!(text(&f.stdout), expected, "control `{path}`");
        runs.push(ran(format!("9 control: read {path}"), &f));
    }

    let absolute = t.root.join("secret.txt");
    let hostile = [
        "../secret.txt",
        "./../secret.txt",
        "sub/../../secret.txt",
        "../pre/../secret.txt",
        absolute.to_str().unwrap(),
        "/secret.txt",
        "link_rel",
        "link_abs",
        "link_up/secret.txt",
        "link_up/pre/in.txt",
        "sub/link_deep",
    ];
    for path in hostile {
        let f = run(&s.plain, guest::READ_PATH, Some(path), &limits, &handles);
        match f.outcome {
            Outcome::Exited(errno) => assert_ne!(errno, 0, "`{path}` was opened and read"),
            ref other => panic!("`{path}`: expected an errno exit, got {other:?}"),
        }
        assert!(f.stdout.is_empty(), "`{path}`: {}", text(&f.stdout));
        assert!(!text(&f.stderr).contains(SECRET));
        assert!(f.elapsed < PROMPT, "`{path}`: {:?}", f.elapsed);
        runs.push(ran(format!("9 read {path}"), &f));
    }
    assert_eq!(snapshot(&t.root), before);
    runs
}

/// Case 10: every mutation of a read-only preopen fails with an errno, and the host's bytes,
/// times and listing are unchanged.
fn readonly_mutations(s: &Sandboxes) -> Vec<Ran> {
    const ATTEMPTS: [&str; 12] = [
        "write",
        "append",
        "O_TRUNC",
        "create",
        "rename",
        "link",
        "unlink",
        "mkdir",
        "rmdir",
        "symlink",
        "set_size",
        "set_times",
    ];
    let t = tree();
    let (handles, limits) = read_only(&t.pre, LONG);
    let before = snapshot(&t.root);
    let f = run(&s.plain, guest::READONLY_MUTATIONS, None, &limits, &handles);
    assert_eq!(f.stdout.len(), ATTEMPTS.len(), "{:?}", f.outcome);
    let errnos: Vec<String> = ATTEMPTS
        .iter()
        .zip(&f.stdout)
        .map(|(name, errno)| format!("{name}={errno}"))
        .collect();
    let succeeded: Vec<&str> = ATTEMPTS
        .iter()
        .zip(&f.stdout)
        .filter(|(_, errno)| **errno == 0)
        .map(|(name, _)| *name)
        .collect();
    assert!(succeeded.is_empty(), "succeeded: {succeeded:?}");
    assert_eq!(f.outcome, Outcome::Exited(0), "{errnos:?}");
    assert_eq!(
        std::fs::read_to_string(t.pre.join("data.txt")).unwrap(),
        DATA
    );
    assert_eq!(snapshot(&t.root), before);
    assert!(f.elapsed < PROMPT, "{:?}", f.elapsed);
    vec![ran(
        format!("10 mutate read-only dir ({})", errnos.join(" ")),
        &f,
    )]
}

/// Case 11: environment variables not granted are not seen: with no handles (while this process
/// has plenty), and with a policy that denies the one asked (dropped). One granted variable is
/// seen, alone: the probe works.
fn environment(s: &Sandboxes) -> Vec<Ran> {
    assert!(std::env::vars_os().count() > 0);
    let mut runs = Vec::new();
    let f = run(
        &s.plain,
        guest::ENVIRON_DUMP,
        None,
        &limits(16 * MIB, LONG),
        &Handles::none(),
    );
    assert_eq!(f.outcome, Outcome::Exited(0), "{}", text(&f.stdout));
    assert!(f.stdout.is_empty(), "{}", text(&f.stdout));
    runs.push(ran("11 environ, no handles", &f));

    let asks = Asks {
        memory_bytes: 16 * MIB,
        timeout_ms: 10_000,
        env: vec![
            ("GREETING".into(), "hello".into()),
            ("SECRET_TOKEN".into(), "hunter2".into()),
        ],
        ..Asks::default()
    };
    let greeting_only = r#"@id("run")
permit (principal, action == Warrant::Action::"instantiate", resource);

@id("greeting")
permit (principal, action == Warrant::Action::"env.read", resource == Warrant::EnvVar::"GREETING");
"#;
    let only_run = r#"@id("run")
permit (principal, action == Warrant::Action::"instantiate", resource);
"#;
    for (policy, count, expected) in [(only_run, 0, ""), (greeting_only, 1, "GREETING=hello\0")] {
        let grant = grant(policy, &asks);
        let f = run(
            &s.plain,
            guest::ENVIRON_DUMP,
            None,
            &RunLimits::of(&grant, MIB),
            &Handles::of(&grant),
        );
        assert_eq!(f.outcome, Outcome::Exited(count), "{}", text(&f.stdout));
        assert_eq!(text(&f.stdout), expected);
        assert!(!text(&f.stdout).contains("hunter2"));
        runs.push(ran(format!("11 environ, {count} of 2 asked granted"), &f));
    }
    runs
}

/// Case 12: `random_get` asked for more than the guest's memory, or more than 4 GiB - 1, or for
/// its whole memory forever, or for 64 MiB (the host's cap) into 64 MiB forever: an errno or a
/// trap, or the deadline; never a hang. The host fills its own buffer of the size asked before
/// it checks the guest's memory, so a single call costs host time and memory up to that cap
/// (the one-shot 64 MiB case shows how long), and the deadline waits for the call to return.
fn random_huge(s: &Sandboxes) -> Vec<Ran> {
    let mut runs = Vec::new();
    for (mode, case) in [
        ("1", "12 random_get 64 MiB once, 16 MiB memory"),
        ("2", "12 random_get 4 GiB - 1 once"),
    ] {
        let f = run(
            &s.plain,
            guest::RANDOM_HUGE,
            Some(mode),
            &limits(16 * MIB, LONG),
            &Handles::none(),
        );
        match &f.outcome {
            Outcome::Exited(errno) => assert_ne!(*errno, 0, "{case}: it succeeded"),
            Outcome::Trapped(_) => {}
            other => panic!("{case}: expected an errno or a trap, got {other:?}"),
        }
        assert!(f.elapsed < PROMPT, "{case}: {:?}", f.elapsed);
        runs.push(ran(case, &f));
    }
    // Asking for more than the sandbox's `random_get` cap (1 MiB) traps at once, before the
    // host allocates anything: looping on it cannot keep the host busy.
    let budget = Duration::from_millis(500);
    for (mode, case) in [
        ("3", "12 random_get whole memory (16 MiB) forever"),
        ("4", "12 random_get 64 MiB into 64 MiB forever"),
    ] {
        let f = run(
            &s.plain,
            guest::RANDOM_HUGE,
            Some(mode),
            &limits(64 * MIB, budget),
            &Handles::none(),
        );
        match &f.outcome {
            Outcome::Trapped(why) => {
                assert!(why.contains("exceeds limit 1048576"), "{case}: {why}")
            }
            other => panic!("{case}: expected the random_get cap, got {other:?}"),
        }
        assert!(f.elapsed < PROMPT, "{case}: {:?}", f.elapsed);
        runs.push(ran(case, &f));
    }
    runs
}

/// Case 13: `fd_renumber` cannot turn stdout into a directory or the preopen into stdout: opens
/// through the moved stdout fail, writes to the moved preopen fail, nothing is read from
/// outside, and the host's files are unchanged.
fn renumber(s: &Sandboxes) -> Vec<Ran> {
    let t = tree();
    let (handles, limits) = read_only(&t.pre, LONG);
    let before = snapshot(&t.root);
    let mut runs = Vec::new();
    for (mode, stdout) in [("a", "moved\n"), ("b", "")] {
        let f = run(&s.plain, guest::RENUMBER, Some(mode), &limits, &handles);
        let steps = f.stderr.clone();
        assert_eq!(
            f.outcome,
            Outcome::Exited(0),
            "mode {mode}: steps {steps:?}"
        );
        assert_eq!(steps.len(), 4, "mode {mode}");
        assert_eq!(steps[0], 0, "mode {mode}: the renumber itself failed");
        assert_ne!(steps[1], 0, "mode {mode}");
        assert_ne!(steps[2], 0, "mode {mode}");
        assert_eq!(steps[3], 0, "mode {mode}: the control failed");
        assert_eq!(text(&f.stdout), stdout, "mode {mode}");
        assert!(f.elapsed < PROMPT, "{:?}", f.elapsed);
        runs.push(ran(
            format!("13 fd_renumber mode {mode} (steps {steps:?})"),
            &f,
        ));
    }
    assert_eq!(snapshot(&t.root), before);
    runs
}

/// Case 14: a guest asleep in the host (`poll_oneoff` on a 60 s clock), from `_start` and
/// from its start function during instantiation, ends at its deadline: no Wasm runs while the
/// host waits, so the epoch alone would let it sleep the whole minute.
fn sleep_past_deadline(s: &Sandboxes) -> Vec<Ran> {
    let budget = Duration::from_millis(300);
    let mut runs = Vec::new();
    for (name, wat) in [
        ("in _start", guest::SLEEP),
        ("during instantiation", guest::SLEEP_AT_INSTANTIATION),
    ] {
        for sandbox in [&s.plain, &s.metered] {
            let f = run(
                sandbox,
                wat,
                None,
                &limits(16 * MIB, budget),
                &Handles::none(),
            );
            let detail = limited(&f, Limit::Deadline);
            assert!(detail.contains("waiting in a host call"), "{detail}");
            within(&f, budget);
            assert!(f.elapsed >= budget * 9 / 10, "ended early: {:?}", f.elapsed);
            runs.push(ran(format!("14 60 s sleep {name}, 300 ms deadline"), &f));
        }
    }
    runs
}

/// Case 15: a named pipe planted in the preopen. Opening it blocks the host until a writer
/// comes, and none does: the run ends at its deadline, and the sandbox is then dropped
/// promptly although the host thread stuck in `open` never returns by itself.
fn fifo_in_preopen(_s: &Sandboxes) -> Vec<Ran> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let t = tree();
    let fifo = t.pre.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let budget = Duration::from_millis(300);
    let (handles, limits) = read_only(&t.pre, budget);
    // A sandbox of its own, dropped below.
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let f = run(&sandbox, guest::READ_PATH, Some("fifo"), &limits, &handles);
    let detail = limited(&f, Limit::Deadline);
    assert!(detail.contains("waiting in a host call"), "{detail}");
    within(&f, budget);
    assert!(f.stdout.is_empty());

    // The guest's thread lets go of its reference as it ends.
    let waited = std::time::Instant::now();
    while Arc::strong_count(&sandbox) > 1 && waited.elapsed() < HANG {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(sandbox);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(5)).is_ok(),
        "dropping the sandbox waited for the host thread stuck opening the pipe"
    );
    // Let the stuck `open` return (a writer that does not wait: O_NONBLOCK).
    let _writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(0o4000)
        .open(&fifo);
    vec![ran(
        "15 open a named pipe in the preopen, 300 ms deadline",
        &f,
    )]
}

type Case = fn(&Sandboxes) -> Vec<Ran>;

const CASES: [(&str, Case); 15] = [
    ("infinite_loop", infinite_loop),
    ("infinite_loop_fuel", infinite_loop_fuel),
    ("memory_grow_loop", memory_grow_loop),
    ("memory_initial_huge", memory_initial_huge),
    ("table_grow_loop", table_grow_loop),
    ("unbounded_recursion", unbounded_recursion),
    ("memory_fill_oob", memory_fill_oob),
    ("stdout_flood", stdout_flood),
    ("escape_by_path", escape_by_path),
    ("readonly_mutations", readonly_mutations),
    ("environment", environment),
    ("random_huge", random_huge),
    ("renumber", renumber),
    ("sleep_past_deadline", sleep_past_deadline),
    ("fifo_in_preopen", fifo_in_preopen),
];

fn one(case: Case) {
    let _serial = serial();
    show(&case(&Sandboxes::new()));
}

#[test]
fn an_infinite_loop_ends_at_the_deadline() {
    one(infinite_loop);
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    one(infinite_loop_fuel);
}

#[test]
fn a_memory_grow_loop_stops_at_the_memory_limit() {
    one(memory_grow_loop);
}

#[test]
fn initial_memory_over_the_limit_is_the_memory_limit() {
    one(memory_initial_huge);
}

#[test]
fn a_table_grow_loop_stops_at_the_table_limit() {
    one(table_grow_loop);
}

#[test]
fn unbounded_recursion_traps_on_the_stack_limit() {
    one(unbounded_recursion);
}

#[test]
fn a_huge_memory_fill_traps_out_of_bounds_at_once() {
    one(memory_fill_oob);
}

#[test]
fn a_stdout_flood_stops_at_the_output_cap() {
    one(stdout_flood);
}

#[test]
fn paths_and_symlinks_out_of_the_preopen_fail() {
    one(escape_by_path);
}

#[test]
fn a_read_only_preopen_cannot_be_changed() {
    one(readonly_mutations);
}

#[test]
fn ungranted_environment_variables_are_not_seen() {
    one(environment);
}

#[test]
fn huge_random_get_requests_end_classified() {
    one(random_huge);
}

#[test]
fn a_guest_asleep_in_the_host_ends_at_its_deadline() {
    one(sleep_past_deadline);
}

#[test]
fn opening_a_named_pipe_in_the_preopen_ends_at_the_deadline() {
    one(fifo_in_preopen);
}

#[test]
fn fd_renumber_reaches_nothing_new() {
    one(renumber);
}

/// A field of `/proc/self/status`: its first number (KiB for memory fields).
fn status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Reset this process's peak RSS (VmHWM) to its current RSS; false where not allowed.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// How much this process's peak RSS rose above its current RSS while `f` ran, in bytes; `None`
/// where the peak cannot be reset or read.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let reset = reset_peak();
    let rss = status("VmRSS");
    let value = f();
    let growth = match (reset, rss, status("VmHWM")) {
        (true, Some(rss), Some(peak)) => Some(peak.saturating_sub(rss) * 1024),
        _ => None,
    };
    (value, growth)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// What a guest makes the host hold is bounded by the guest's memory limit. wasmtime-wasi
/// allocates and fills a host buffer of the size asked before checking that the guest's memory
/// can hold it, up to `max_random_size` (64 MiB by default); the sandbox lowers that to
/// `min(1 MiB, memory limit)`. Regression test: a guest with 64 KiB of memory and a 1 MiB limit
/// asking for 64 MiB made the host allocate and fill 64 MiB before it trapped.
#[test]
fn random_get_host_memory_is_bounded_by_the_guest_memory_limit() {
    let _serial = serial();
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let limit = MIB;
    // Warm up: the first run in a process maps code and data of its own.
    run(
        &sandbox,
        guest::HELLO,
        None,
        &RunLimits::default(),
        &Handles::none(),
    );
    let (f, growth) = peak_growth(|| {
        run(
            &sandbox,
            guest::RANDOM_GET_TINY,
            None,
            &limits(limit, LONG),
            &Handles::none(),
        )
    });
    eprintln!(
        "random_get 64 MiB, 64 KiB memory, 1 MiB limit: {:?} after {:?}; peak RSS +{:?} MiB",
        f.outcome,
        f.elapsed,
        growth.map(|g| g / MIB)
    );
    assert!(
        matches!(f.outcome, Outcome::Trapped(_) | Outcome::Exited(1..)),
        "{:?}",
        f.outcome
    );
    let growth = growth.unwrap();
    let bound = limit + 16 * MIB;
    assert!(
        growth < bound,
        "a guest limited to {} MiB raised the host's peak RSS by {} MiB",
        limit / MIB,
        growth / MIB
    );
}

/// Every case back to back on one pair of engines; then a well-behaved guest still runs, no
/// descriptor or thread was left behind, this process's RSS is back near where it started, and
/// its peak RSS rose by less than the largest guest memory limit (64 MiB), plus 64 MiB (kept
/// from before `random_get` was bounded, see
/// `random_get_host_memory_is_bounded_by_the_guest_memory_limit`), plus 64 MiB (compiled guests, thread stacks, what the allocator keeps of freed host buffers,
/// and other tests of this binary running at the same time).
#[test]
fn every_hostile_guest_back_to_back_leaves_the_host_unaffected() {
    let _serial = serial();
    let sandboxes = Sandboxes::new();
    let hello = |sandboxes: &Sandboxes| {
        let f = run(
            &sandboxes.plain,
            guest::HELLO,
            None,
            &RunLimits::default(),
            &Handles::none(),
        );
        assert_eq!(f.outcome, Outcome::Exited(0));
        assert_eq!(f.stdout, b"hi\n");
        f
    };
    // Warm up, so what the first run in a process sets up once is not counted.
    hello(&sandboxes);
    let (fds_before, threads_before) = (open_fds(), status("Threads"));
    let rss_before = status("VmRSS");

    let mut runs = Vec::new();
    // Per case: how far the peak rose above the RSS at its start, and that peak (KiB).
    let mut peaks: Vec<(&str, Option<u64>, Option<u64>)> = Vec::new();
    let started = std::time::Instant::now();
    for (name, case) in CASES {
        let (ran, growth) = peak_growth(|| case(&sandboxes));
        runs.extend(ran);
        peaks.push((name, growth.map(|g| g / MIB), status("VmHWM")));
    }
    let total = started.elapsed();
    let f = hello(&sandboxes);
    runs.push(ran("control: hello", &f));
    show(&runs);

    // Let the guest threads that just sent their outcomes finish exiting.
    std::thread::sleep(Duration::from_millis(100));
    let (fds_after, threads_after) = (open_fds(), status("Threads"));
    let rss_after = status("VmRSS");
    let peak = peaks.iter().filter_map(|(_, _, peak)| *peak).max();
    let kib_to_mib = |kib: Option<u64>| kib.map(|k| k / 1024);
    eprintln!(
        "{} runs in {total:?}; RSS {:?} -> {:?} MiB, peak {:?} MiB; peak rise per case (MiB): \
         {:?}; open fds {fds_before} -> {fds_after}; threads {threads_before:?} -> \
         {threads_after:?}",
        runs.len(),
        kib_to_mib(rss_before),
        kib_to_mib(rss_after),
        kib_to_mib(peak),
        peaks
            .iter()
            .map(|(name, growth, _)| (*name, *growth))
            .collect::<Vec<_>>(),
    );
    // A descriptor or thread left per run would show up as dozens; allow a few for other
    // tests of this binary running at the same time.
    assert!(fds_after <= fds_before + 8, "{fds_before} -> {fds_after}");
    if let (Some(before), Some(after)) = (threads_before, threads_after) {
        assert!(after <= before + 8, "threads {before} -> {after}");
    }
    if let (Some(before), Some(after), Some(peak)) = (rss_before, rss_after, peak) {
        let (kept, rose) = (
            after.saturating_sub(before) * 1024,
            peak.saturating_sub(before) * 1024,
        );
        assert!(
            kept < 64 * MIB,
            "RSS kept {} MiB after the runs",
            kept / MIB
        );
        let bound = 64 * MIB + 64 * MIB + 64 * MIB;
        assert!(
            rose < bound,
            "peak RSS rose by {} MiB, past {} MiB",
            rose / MIB,
            bound / MIB
        );
    }
}
