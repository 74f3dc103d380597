#!/usr/bin/env python3
"""Pull throughput and peak memory of `warrant pull` against curl, same registry, same blob.

Starts Debian's docker-registry on a free loopback port, publishes Wasm modules of several
sizes with `warrant push`, then for each size times:
  - curl -o /dev/null        the layer blob (the network path alone),
  - curl -o FILE             the layer blob written to disk (what a downloader must do),
  - warrant pull             into an empty store (stream, hash, quarantine, fsync, rename),
and reports median throughput and warrant's peak RSS. Usage:
  python3 scripts/bench-pull.py [--runs N] [--sizes-mib 16,64,256] [--warrant PATH]
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def leb128_padded(v):
    out = []
    for i in range(5):
        b = v & 0x7F; v >>= 7
        if i < 4: b |= 0x80
        out.append(b)
    return bytes(out)

def module_of_size(total, seed):
    # The smallest valid module plus one custom section of pseudo-random filler.
    base = b"\0asm\x01\0\0\0"
    name = b"filler"
    payload = total - len(base) - 1 - 5 - 1 - len(name)
    filler = (os.urandom(1 << 20) * (payload // (1 << 20) + 1))[:payload]
    return base + b"\0" + leb128_padded(1 + len(name) + payload) + bytes([len(name)]) + name + filler

def timed(cmd):
    """Wall time and peak RSS (KiB) of `cmd`. The peak is the kernel's VmHWM for the process,
    sampled every millisecond: wait4's ru_maxrss is not used because after vfork+exec it also
    carries the parent's (this script's) high-water mark."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.001)
    elapsed = time.perf_counter() - start
    err = p.stderr.read().decode()
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err}")
    return elapsed, peak

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes-mib", default="16,64,256")
    ap.add_argument("--warrant", default="target/release/warrant")
    args = ap.parse_args()
    warrant = os.path.abspath(args.warrant)
    work = tempfile.mkdtemp(prefix="warrant-bench-")
    port = free_port()
    cfg = os.path.join(work, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n"
                f"storage: {{filesystem: {{rootdirectory: {work}/data}}}}\n"
                f"http: {{addr: 127.0.0.1:{port}}}\n")
    reg = subprocess.Popen(["/usr/bin/docker-registry", "serve", cfg],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); break
            except OSError:
                time.sleep(0.05)
        env = dict(os.environ, HOME=work)
        rows = []
        for mib in [int(x) for x in args.sizes_mib.split(",")]:
            size = mib << 20
            wasm = os.path.join(work, f"m{mib}.wasm")
            with open(wasm, "wb") as f:
                f.write(module_of_size(size, mib))
            ref = f"127.0.0.1:{port}/bench/m{mib}:v1"
            subprocess.run([warrant, "push", wasm, ref], check=True, env=env, stdout=subprocess.DEVNULL)
            info = json.loads(subprocess.run([warrant, "inspect", "--json", ref], check=True, env=env,
                                             capture_output=True).stdout)
            layer = info["manifest"]["layers"][0]["digest"]
            url = f"http://127.0.0.1:{port}/v2/bench/m{mib}/blobs/{layer}"
            out = os.path.join(work, "curl.out")
            curl_null, curl_file, pull, rss = [], [], [], []
            for _ in range(args.runs):
                curl_null.append(timed(["curl", "-sf", "-o", "/dev/null", url])[0])
                curl_file.append(timed(["curl", "-sf", "-o", out, url])[0]); os.remove(out)
                store = os.path.join(work, "store")
                shutil.rmtree(store, ignore_errors=True)
                t, kib = timed([warrant, "--store", store, "pull", ref])
                pull.append(t); rss.append(kib)
            mbps = lambda ts: size / statistics.median(ts) / 1e6
            rows.append((mib, mbps(curl_null), mbps(curl_file), mbps(pull), max(rss) / 1024))
        print(f"runs per figure: {args.runs} (median)")
        print("| size | curl → /dev/null | curl → file | warrant pull | pull / curl→file | pull / curl→null | warrant peak RSS |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for mib, cn, cf, wp, r in rows:
            print(f"| {mib} MiB | {cn:.0f} MB/s | {cf:.0f} MB/s | {wp:.0f} MB/s | {wp/cf:.0%} | {wp/cn:.0%} | {r:.1f} MiB |")
    finally:
        reg.terminate(); reg.wait()
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
