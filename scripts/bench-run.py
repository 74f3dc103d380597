#!/usr/bin/env python3
"""A fresh `warrant run` process of a cached artifact against bare wasmtime, same module.

`warrant run` of the README's example (an OCI image layout): resolve, verify (a cached verdict),
decide (Cedar, in a fresh process), audit (one fsync before the guest, a signed checkpoint
after), run with the compile cache warm. Bare wasmtime (`broker/examples/bare_run.rs`): the
same engine configuration and compile cache, the module file read, instantiated, `_start`
called. Each is run once to warm its caches, then timed; reported: median wall time and median
peak RSS (`/usr/bin/time`), and the ratio. Usage (from the repository root):

  cargo build --release -p broker --bin warrant --example bare_run
  python3 scripts/bench-run.py [--runs 31]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

LAYOUT = "examples/hello/layout"

def timed(cmd, env):
    """Wall time (measured here, around `/usr/bin/time`, the same overhead for both) and peak
    RSS in KiB (`/usr/bin/time`'s, from wait4)."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr.decode()}")
    return wall, int(out.stderr.decode().strip().splitlines()[-1])

def layer_path():
    index = json.load(open(os.path.join(LAYOUT, "index.json")))
    manifest = index["manifests"][0]["digest"].split(":")[1]
    m = json.load(open(os.path.join(LAYOUT, "blobs", "sha256", manifest)))
    return os.path.join(LAYOUT, "blobs", "sha256", m["layers"][0]["digest"].split(":")[1])

def series(cmd, env, runs):
    timed(cmd, env)  # warm the caches
    samples = [timed(cmd, env) for _ in range(runs)]
    return statistics.median(w for w, _ in samples), statistics.median(r for _, r in samples)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=31)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="warrant-bench-run-")
    env = dict(os.environ, WARRANT_HOME=home)
    env.pop("WARRANT_CONFIG", None)
    warrant = ["target/release/warrant", "run", "--key", "examples/hello/example-signer.pub",
               "--policies", "examples/hello/policies", f"oci-layout:{LAYOUT}"]
    bare = ["target/release/examples/bare_run", os.path.join(home, "bare-cache"), layer_path()]
    w_wall, w_rss = series(warrant, env, args.runs)
    b_wall, b_rss = series(bare, env, args.runs)
    print(f"{args.runs} runs each, medians")
    print("| | wall | peak RSS |")
    print("|---|---:|---:|")
    print(f"| bare wasmtime (compile cache warm) | {b_wall * 1000:.0f} ms | {b_rss / 1024:.1f} MiB |")
    print(f"| warrant run (verdict and compile caches warm) | {w_wall * 1000:.0f} ms | {w_rss / 1024:.1f} MiB |")
    print(f"| ratio | {w_wall / b_wall:.2f}× | {w_rss / b_rss:.2f}× |")

if __name__ == "__main__":
    main()
