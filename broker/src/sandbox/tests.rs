//! The sandbox's unit tests.

use super::*;

fn run(wat: &str, limits: &RunLimits) -> Finished {
    let wasm = wat::parse_str(wat).unwrap();
    Sandbox::new()
        .unwrap()
        .run_module(&wasm, &["guest".into()], limits, &Handles::none())
        .unwrap()
}

const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[test]
fn captures_stdout_and_exits_zero() {
    let f = run(HELLO, &RunLimits::default());
    assert_eq!(f.outcome, Outcome::Exited(0));
    assert_eq!(f.stdout, b"hi\n");
}

#[test]
fn proc_exit_status_is_reported() {
    let f = run(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
           (memory (export "memory") 1)
           (func (export "_start") (call $e (i32.const 42))))"#,
        &RunLimits::default(),
    );
    assert_eq!(f.outcome, Outcome::Exited(42));
}

#[test]
fn an_infinite_loop_stops_at_the_deadline() {
    let limits = RunLimits {
        timeout: Duration::from_millis(200),
        ..RunLimits::default()
    };
    let f = run(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#,
        &limits,
    );
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
    assert!(f.elapsed < Duration::from_secs(5), "{:?}", f.elapsed);
}

#[test]
fn memory_growth_past_the_limit_is_a_limit() {
    let limits = RunLimits {
        memory_bytes: 1 << 20,
        ..RunLimits::default()
    };
    let f = run(
        r#"(module (memory (export "memory") 1)
           (func (export "_start") (loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))))"#,
        &limits,
    );
    assert!(
        matches!(
            f.outcome,
            Outcome::Limited {
                limit: Limit::Memory,
                ..
            }
        ),
        "{:?}",
        f.outcome
    );
}

#[test]
fn initial_memory_over_the_limit_is_a_limit() {
    let limits = RunLimits {
        memory_bytes: 1 << 20,
        ..RunLimits::default()
    };
    let f = run(
        r#"(module (memory (export "memory") 100) (func (export "_start")))"#,
        &limits,
    );
    assert!(
        matches!(
            f.outcome,
            Outcome::Limited {
                limit: Limit::Memory,
                ..
            }
        ),
        "{:?}",
        f.outcome
    );
}

#[test]
fn output_past_the_cap_is_a_limit() {
    let limits = RunLimits {
        output_bytes: 10,
        ..RunLimits::default()
    };
    let f = run(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 64))
            (loop (br_if 0 (i32.eqz (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))))"#,
        &limits,
    );
    assert!(
        matches!(
            f.outcome,
            Outcome::Limited {
                limit: Limit::Output,
                ..
            }
        ),
        "{:?}",
        f.outcome
    );
    assert!(f.stdout.len() <= 10);
}

#[test]
fn unreachable_is_a_trap() {
    let f = run(
        r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
        &RunLimits::default(),
    );
    assert!(matches!(f.outcome, Outcome::Trapped(_)), "{:?}", f.outcome);
}

#[test]
fn unbounded_recursion_traps_without_killing_the_host() {
    let f = run(
        r#"(module (memory (export "memory") 1) (func $f (export "_start") (call $f)))"#,
        &RunLimits::default(),
    );
    assert!(
        matches!(&f.outcome, Outcome::Trapped(m) if m.contains("stack")),
        "{:?}",
        f.outcome
    );
}

#[test]
fn the_guest_sees_no_environment() {
    // environ_sizes_get writes the count of env vars at address 0.
    let f = run(
        r#"(module
          (import "wasi_snapshot_preview1" "environ_sizes_get" (func $s (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (drop (call $s (i32.const 0) (i32.const 4)))
            (call $e (i32.load (i32.const 0)))))"#,
        &RunLimits::default(),
    );
    assert_eq!(f.outcome, Outcome::Exited(0));
}

#[test]
fn invalid_bytes_are_a_load_error() {
    let err = Sandbox::new()
        .unwrap()
        .run_module(
            b"\0asm\x01\0\0\0\xff",
            &[],
            &RunLimits::default(),
            &Handles::none(),
        )
        .unwrap_err();
    assert!(matches!(err, SandboxError::Load(_)));
}
/// A second engine with the same compile cache finds the guest compiled: the second run of
/// the same bytes does not compile again. Other bytes are compiled. An entry that is not
/// exactly what was written under its name — another guest's code copied over it, one
/// byte changed, cut short, or written under another state's key — is compiled afresh,
/// and the guest runs as itself.
#[test]
fn a_second_run_of_the_same_guest_is_not_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let state = crate::state::State::open(&dir.path().join("data")).unwrap();
    let wasm = wat::parse_str(HELLO).unwrap();
    let run_in = |state: &crate::state::State, wasm: &[u8]| {
        let cache = CompileCache::open(state).unwrap();
        let sandbox = Sandbox::configured(false, Some(Arc::new(cache))).unwrap();
        let f = sandbox
            .run(
                wasm,
                &["guest".into()],
                &RunLimits::default(),
                &Handles::none(),
            )
            .unwrap();
        assert_eq!(f.outcome, Outcome::Exited(0));
        (sandbox.compile_cache_hits().unwrap(), f.stdout)
    };
    let run = |wasm: &[u8]| run_in(&state, wasm);
    assert_eq!(run(&wasm), (0, b"hi\n".to_vec()), "first run: compiled");
    assert_eq!(
        run(&wasm),
        (1, b"hi\n".to_vec()),
        "second run: from the cache"
    );
    let other = wat::parse_str(HELLO.replace("hi\\n", "ho\\n")).unwrap();
    assert_ne!(other, wasm);
    let entries = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("data/compiled"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
    };
    let before = entries();
    assert_eq!(run(&other), (0, b"ho\n".to_vec()), "other bytes: compiled");
    let (mine, theirs) = {
        let after = entries();
        let theirs = after.iter().find(|p| !before.contains(p)).unwrap().clone();
        (before[0].clone(), theirs)
    };
    let genuine = std::fs::read(&mine).unwrap();
    // The other guest's code copied over this guest's entry.
    std::fs::copy(&theirs, &mine).unwrap();
    assert_eq!(
        run(&wasm),
        (0, b"hi\n".to_vec()),
        "swapped: compiled afresh"
    );
    assert_eq!(
        std::fs::read(&mine).unwrap(),
        genuine,
        "and the entry replaced"
    );
    // One byte of the code changed, the entry cut short, the MAC removed.
    let mut patched = genuine.clone();
    let middle = patched.len() / 2;
    patched[middle] ^= 0x40;
    for bad in [
        patched,
        genuine[..genuine.len() - 1].to_vec(),
        genuine[..31].to_vec(),
    ] {
        std::fs::write(&mine, bad).unwrap();
        assert_eq!(run(&wasm), (0, b"hi\n".to_vec()));
    }
    // The same guest's entry from another data directory (another MAC key).
    let elsewhere = crate::state::State::open(&dir.path().join("elsewhere")).unwrap();
    assert_eq!(run_in(&elsewhere, &wasm).0, 0);
    let foreign = dir
        .path()
        .join("elsewhere/compiled")
        .join(mine.file_name().unwrap());
    std::fs::copy(&foreign, &mine).unwrap();
    assert_eq!(
        run(&wasm),
        (0, b"hi\n".to_vec()),
        "another key: compiled afresh"
    );
    assert_eq!(run(&wasm), (1, b"hi\n".to_vec()));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("data/compiled"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn guests_over_the_size_limit_are_refused_before_compiling() {
    let big = vec![0u8; usize::try_from(limits::MAX_GUEST_BYTES).unwrap() + 1];
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.extend_from_slice(&big);
    let err = Sandbox::new()
        .unwrap()
        .run(&wasm, &[], &RunLimits::default(), &Handles::none())
        .unwrap_err();
    assert!(err.to_string().contains("the limit is"), "{err}");
}

/// An instance held idle past its deadline still gets its whole budget when started, and
/// runs exactly like `run`.
#[test]
fn an_idle_instance_starts_with_its_full_deadline() {
    let sandbox = Sandbox::new().unwrap();
    let prepared = sandbox.prepare(&wat::parse_str(HELLO).unwrap()).unwrap();
    let limits = RunLimits {
        timeout: Duration::from_millis(50),
        ..RunLimits::default()
    };
    let live = sandbox
        .instantiate(&prepared, &["guest".into()], &limits, &Handles::none())
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let f = live.start();
    assert_eq!(f.outcome, Outcome::Exited(0));
    assert_eq!(f.stdout, b"hi\n");
}

/// An instance outlives the sandbox that made it, and its deadline still comes: the epoch
/// goes on advancing as long as an instance lives.
#[test]
fn an_instance_started_after_its_sandbox_is_dropped_still_stops_at_its_deadline() {
    let sandbox = Sandbox::new().unwrap();
    let looping = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#,
    )
    .unwrap();
    let prepared = sandbox.prepare(&looping).unwrap();
    let limits = RunLimits {
        timeout: Duration::from_millis(100),
        ..RunLimits::default()
    };
    let live = sandbox
        .instantiate(&prepared, &[], &limits, &Handles::none())
        .unwrap();
    drop(prepared);
    drop(sandbox);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(live.start().outcome);
    });
    let outcome = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the loop never stopped: no deadline without the sandbox");
    assert!(
        matches!(
            outcome,
            Outcome::Limited {
                limit: Limit::Deadline,
                ..
            }
        ),
        "{outcome:?}"
    );
}

/// Only a module whose imports are all prompt calls is called directly; one importing
/// `poll_oneoff`, `path_open` or any call not on the list runs as a future under the
/// deadline's timeout.
#[test]
fn only_modules_importing_prompt_calls_skip_the_future() {
    let prompt = |imports: &[&str]| {
        let imports: String = imports
            .iter()
            .map(|name| format!(r#"(import "wasi_snapshot_preview1" "{name}" (func))"#))
            .collect();
        let wasm = wat::parse_str(format!("(module {imports})")).unwrap();
        let module = Module::new(&Sandbox::new().unwrap().engine, wasm).unwrap();
        imports_only_prompt_calls(&module)
    };
    assert!(prompt(&[]));
    assert!(prompt(&PROMPT_CALLS));
    for waits in [
        "poll_oneoff",
        "path_open",
        "fd_read",
        "fd_sync",
        "sock_recv",
    ] {
        assert!(!prompt(&["fd_write", waits]), "{waits}");
    }
    let hello = Sandbox::new()
        .unwrap()
        .prepare(&wat::parse_str(HELLO).unwrap());
    assert!(matches!(
        hello.map(|p| p.guest),
        Ok(PreparedGuest::Module { prompt: true, .. })
    ));
}

/// A guest whose compilation outlasts the compile deadline is refused with that reason;
/// with the default deadline the same bytes compile and run.
#[test]
fn a_compilation_past_the_compile_deadline_refuses_the_guest() {
    let functions: String = (0..2_000)
        .map(|i| format!("(func (param i32) (result i32) (i32.mul (local.get 0) (i32.const {i})))"))
        .collect();
    let wasm = wat::parse_str(format!(
        r#"(module {functions} (memory (export "memory") 1) (func (export "_start")))"#
    ))
    .unwrap();
    let mut sandbox = Sandbox::new().unwrap();
    sandbox.set_compile_deadline(Duration::ZERO);
    let refused = sandbox.prepare(&wasm).err();
    assert!(
        matches!(refused, Some(SandboxError::CompileDeadline(d)) if d == Duration::ZERO),
        "{refused:?}"
    );
    sandbox.set_compile_deadline(limits::COMPILE_DEADLINE);
    let f = sandbox
        .run(&wasm, &[], &RunLimits::default(), &Handles::none())
        .unwrap();
    assert_eq!(f.outcome, Outcome::Exited(0));
}
