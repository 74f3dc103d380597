#!/usr/bin/env python3
"""A fresh `warrant run` process of a cached artifact against wasmtime, same module.

`warrant run` of the README's example (an OCI image layout): resolve, verify (a cached verdict),
decide (the policy memo: validation vouched for, the run's decisions remembered), audit (one
fsync before the guest, the outcome and a signed head checkpoint after), run with the compile
cache warm. Against `broker/examples/bare_run.rs`, a minimal embedding of wasmtime with the same
engine configuration and compile cache (the module file read, instantiated, `_start` called),
and, with `--wasmtime PATH` (a `wasmtime` 48 CLI, e.g. from `cargo install wasmtime-cli
--version 48.0.8 --locked`), `wasmtime run` of the same module with its own compile cache warm.

Each command is run twice to warm its caches; then the commands are alternated run by run, each
round in a shuffled order (so a change in the machine's load, or the writeback of a previous
run's writes, falls on all of them alike) and the wall time around each process
is taken here. Reported: median and 10th percentile wall time, median peak RSS (from
`/usr/bin/time`, in separate runs), and the ratios. Usage (from the repository root):

  cargo build --release -p broker --bin warrant --example bare_run
  python3 scripts/bench-run.py [--runs 151] [--wasmtime PATH] [--earlier-warrant PATH] [--reference REF]

`--earlier-warrant PATH` adds another build of `warrant` (an earlier commit, built the same way),
run the same way with a home of its own, to report what a change costs. `--reference REF` runs
another reference to the same module instead of the layout, e.g. `127.0.0.1:PORT/bench/hello@sha256:…`
after `warrant push` of the layout's module there and `warrant sign` with the example key.
"""
import argparse, json, os, random, statistics, subprocess, sys, tempfile, time

LAYOUT = "examples/hello/layout"

def wall(cmd, env):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr.decode()}")
    return elapsed

def peak_rss_kib(cmd, env):
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return int(out.stderr.decode().strip().splitlines()[-1])

def layer_path():
    index = json.load(open(os.path.join(LAYOUT, "index.json")))
    manifest = index["manifests"][0]["digest"].split(":")[1]
    m = json.load(open(os.path.join(LAYOUT, "blobs", "sha256", manifest)))
    return os.path.join(LAYOUT, "blobs", "sha256", m["layers"][0]["digest"].split(":")[1])

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=151)
    ap.add_argument("--wasmtime", help="a wasmtime CLI, to time `wasmtime run` of the same module")
    ap.add_argument("--earlier-warrant", help="another `warrant` build, to time the same run")
    ap.add_argument("--reference", default=f"oci-layout:{LAYOUT}",
                    help="what `warrant run` runs (default: the README's layout); e.g. a "
                         "digest-pinned registry reference to the same module, signed by the "
                         "example key")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="warrant-bench-run-")
    env = dict(os.environ, WARRANT_HOME=home, HOME=home)
    env.pop("WARRANT_CONFIG", None)
    commands = [
        ("bare wasmtime embedding (compile cache warm)",
         ["target/release/examples/bare_run", os.path.join(home, "bare-cache"), layer_path()]),
    ]
    if args.wasmtime:
        commands.append(("`wasmtime run` (its compile cache warm)",
                         [args.wasmtime, "run", layer_path()]))
    run_args = ["run", "--key", "examples/hello/example-signer.pub",
                "--policies", "examples/hello/policies", args.reference]
    envs = [env] * len(commands)
    if args.earlier_warrant:
        earlier_home = tempfile.mkdtemp(prefix="warrant-bench-run-earlier-")
        commands.append(("earlier `warrant run` (every cache warm)",
                         [args.earlier_warrant] + run_args))
        envs.append(dict(env, WARRANT_HOME=earlier_home, HOME=earlier_home))
    envs.append(env)
    commands.append(("`warrant run` (every cache warm)",
                     ["target/release/warrant"] + run_args))
    for (_, cmd), e in zip(commands, envs):
        wall(cmd, e)  # warm the caches (twice: the second `warrant run` remembers its decisions)
        wall(cmd, e)
    samples = [[] for _ in commands]
    # Each round runs every command once, in a shuffled order: a `warrant run` leaves its
    # audit writes to the kernel's writeback, which would otherwise always fall on the command
    # after it.
    order = random.Random(1)
    for _ in range(args.runs):
        round_ = list(range(len(commands)))
        order.shuffle(round_)
        for i in round_:
            samples[i].append(wall(commands[i][1], envs[i]))
    rss = [statistics.median(peak_rss_kib(cmd, e) for _ in range(5))
           for (_, cmd), e in zip(commands, envs)]
    medians = [statistics.median(s) for s in samples]
    p10 = [sorted(s)[len(s) // 10] for s in samples]
    print(f"{args.runs} runs each, alternated")
    print("| | wall, median | p10 | peak RSS |")
    print("|---|---:|---:|---:|")
    for (name, _), m, p, r in zip(commands, medians, p10, rss):
        print(f"| {name} | {m * 1000:.1f} ms | {p * 1000:.1f} ms | {r / 1024:.1f} MiB |")
    warrant = len(commands) - 1
    for i, (name, _) in enumerate(commands[:-1]):
        print(f"| ratio to {name.split(' (')[0]} | {medians[warrant] / medians[i]:.2f}× | "
              f"{p10[warrant] / p10[i]:.2f}× | {rss[warrant] / rss[i]:.2f}× |")

if __name__ == "__main__":
    main()
