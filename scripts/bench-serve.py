#!/usr/bin/env python3
"""`warrant serve` against `wasmtime serve` 48, side by side in one run.

Both serve the same `wasi:http` hello component (`write-guest hello`, built by the tests crate),
each with a fresh instance per request from the pooling allocator (`wasmtime serve -O
pooling-allocator=y --max-instance-reuse-count 1`; Warrant always does so). Warrant serves it
as a tenant: pushed to a real registry on loopback, signed, verified against the tenant's key,
granted by a Cedar policy, every request recorded in the audit log with group commit.

Modes (from the repository root, after building the binaries):

  cargo build --release -p broker --bin warrant
  cargo build -p tests --bin write-guest      # makes the guests; its speed does not matter
  python3 scripts/bench-serve.py throughput --wasmtime PATH [--rounds 6] [--seconds 10] [--guest hello|python|js]
  python3 scripts/bench-serve.py rss --wasmtime PATH [--requests 1000000]
  python3 scripts/bench-serve.py density [--tenants 1000]
  python3 scripts/bench-serve.py coldstart [--samples 10]
  python3 scripts/bench-serve.py connections [--connections 10000]

`throughput`: `wrk -t1 -c16 --latency` against each server in turn, alternating, `--rounds`
rounds of `--seconds` each after a warm-up; requests per second and p50/p99 latency per round,
their medians and the ratios Warrant/wasmtime. `rss`: each server's resident set before and
after `--requests` requests. `density`: `--tenants` tenants, each a distinct signed artifact;
start-up time with the compile cache cold and then warm, RSS per tenant, and that each answers.
`coldstart`: a tenant added by SIGHUP whose compiled code is cached: from the signal to its
first 200, `--samples` times. `connections`: `--connections` idle connections held open, and the
latency of requests on fresh connections meanwhile against before.
"""
import argparse, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARRANT = os.path.join(ROOT, "target/release/warrant")
WRITE_GUEST = os.path.join(ROOT, "target/debug/write-guest")
REGISTRY = "/usr/bin/docker-registry"

POLICY = """
@id("tenants-may-run")
permit (principal, action == Warrant::Action::"instantiate", resource in Warrant::Runtime::"serve")
when { context.memoryBytes <= 268435456 };
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, within=60):
    until = time.time() + within
    while time.time() < until:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except Exception:
            time.sleep(0.05)
    sys.exit(f"{url} did not answer")


class Registry:
    def __init__(self, work):
        self.port = free_port()
        cfg = os.path.join(work, "registry.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {work}/registry-data}}}}\n"
                    f"http: {{addr: 127.0.0.1:{self.port}}}\nlog: {{level: error}}\n")
        self.proc = subprocess.Popen([REGISTRY, "serve", cfg], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/v2/")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Warrant:
    """A home, a key, a policy directory, and `warrant` commands run in them."""

    def __init__(self, work):
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, exist_ok=True)
        self.env = dict(os.environ, WARRANT_HOME=self.home, HOME=self.home)
        self.env.pop("WARRANT_CONFIG", None)
        self.key = os.path.join(work, "tenant")
        self.run("keygen", "--out", self.key)
        self.policies = os.path.join(work, "policies")
        os.makedirs(self.policies, exist_ok=True)
        with open(os.path.join(self.policies, "serve.cedar"), "w") as f:
            f.write(POLICY)

    def run(self, *args):
        out = subprocess.run([WARRANT, *args], env=self.env, capture_output=True)
        if out.returncode != 0:
            sys.exit(f"warrant {' '.join(args)} failed:\n{out.stderr.decode()}")
        return out.stdout.decode()

    def publish(self, wasm, reference):
        digest = self.run("push", wasm, reference).strip()
        self.run("sign", reference, "--key", self.key + ".key")
        return digest


def tenant_toml(name, route, reference, key, policies):
    return (f'[[serve.tenant]]\nname = "{name}"\nroute = "{route}"\nreference = "{reference}"\n'
            f'keys = ["{key}.pub"]\npolicies = "{policies}"\nmemory_bytes = "128MiB"\ntimeout = "10s"\n'
            f'max_concurrency = 1000\n\n')


def start_warrant(w, config):
    proc = subprocess.Popen([WARRANT, "serve", "--config", config], env=w.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    addr = None
    started = time.perf_counter()
    for line in proc.stderr:
        lines.append(line.rstrip())
        m = re.match(r"warrant: serving on http://(\S+)", line)
        if m:
            addr = m.group(1)
        if line.startswith("warrant: ready:"):
            ready = time.perf_counter() - started
            break
    else:
        sys.exit("warrant serve stopped:\n" + "\n".join(lines))
    # Keep draining stderr so the server never blocks on it.
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, addr, ready, lines


def start_wasmtime(wasmtime, wasm, cli=False):
    port = free_port()
    proc = subprocess.Popen([wasmtime, "serve", "-O", "pooling-allocator=y",
                             "--max-instance-reuse-count", "1", *(["-S", "cli"] if cli else []),
                             "--addr", f"127.0.0.1:{port}", wasm],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/", within=300)
    return proc, f"127.0.0.1:{port}"


def wrk(addr, seconds, path="/"):
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", f"http://{addr}{path}"],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"{addr}: {errors.group(1)} non-2xx responses\n{out}")
    return rps, to_ms(lat["50"]), to_ms(lat["99"])


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def guest(work, which):
    """The component to serve: the tests' hello guest, or a real toolchain's (python, js)."""
    if which == "hello":
        wasm = os.path.join(work, "hello.wasm")
        subprocess.run([WRITE_GUEST, "hello", wasm], check=True)
        return wasm
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts/build-toolchain-guests.sh")],
                         check=True, capture_output=True, text=True).stdout
    return dict(l.split("=", 1) for l in out.splitlines())[which]


def setup_one(work, w, registry, route="/", which="hello"):
    wasm = guest(work, which)
    reference = f"127.0.0.1:{registry.port}/bench/hello:v1"
    w.publish(wasm, reference)
    config = os.path.join(work, "warrant.toml")
    with open(config, "w") as f:
        f.write('[serve]\nlisten = "127.0.0.1:0"\n\n' + tenant_toml("hello", route, reference, w.key, w.policies))
    return wasm, config


def throughput(args, work, w, registry):
    wasm, config = setup_one(work, w, registry, which=args.guest)
    wproc, waddr, _, _ = start_warrant(w, config)
    # Real toolchains' guests import WASI beyond the proxy world: `wasmtime serve` needs `-S
    # cli` for them, which grants them more than Warrant does (not like for like).
    tproc, taddr = start_wasmtime(args.wasmtime, wasm, cli=args.guest != "hello")
    try:
        for addr in (waddr, taddr):
            wrk(addr, 3)  # warm-up
        rows = {"warrant": [], "wasmtime": []}
        for round_ in range(args.rounds):
            order = [("warrant", waddr), ("wasmtime", taddr)]
            if round_ % 2:
                order.reverse()
            for name, addr in order:
                rows[name].append(wrk(addr, args.seconds))
                print(f"round {round_ + 1} {name}: {rows[name][-1][0]:.0f} req/s, "
                      f"p50 {rows[name][-1][1]:.3f} ms, p99 {rows[name][-1][2]:.3f} ms", flush=True)
        med = {n: [statistics.median(r[i] for r in rows[n]) for i in range(3)] for n in rows}
        print(f"\nmedian of {args.rounds} rounds of {args.seconds} s, wrk -t1 -c16:")
        for n in ("warrant", "wasmtime"):
            print(f"  {n:9} {med[n][0]:9.0f} req/s  p50 {med[n][1]:.3f} ms  p99 {med[n][2]:.3f} ms")
        print(f"  ratio     {med['warrant'][0] / med['wasmtime'][0]:.2f}x req/s, "
              f"p99 {med['warrant'][2] / med['wasmtime'][2]:.2f}x")
        ratios = [a[0] / b[0] for a, b in zip(rows["warrant"], rows["wasmtime"])]
        print(f"  per-round req/s ratios: {', '.join(f'{r:.2f}' for r in ratios)}")
        audit = subprocess.run([WARRANT, "audit", "verify"], env=w.env, capture_output=True, text=True)
        print(f"  audit verify after the run: exit {audit.returncode}")
    finally:
        for p in (wproc, tproc):
            p.send_signal(signal.SIGTERM)
            p.wait()


def rss(args, work, w, registry):
    wasm, config = setup_one(work, w, registry)
    wproc, waddr, _, _ = start_warrant(w, config)
    tproc, taddr = start_wasmtime(args.wasmtime, wasm)
    try:
        for name, proc, addr in (("warrant", wproc, waddr), ("wasmtime", tproc, taddr)):
            wrk(addr, 2)
            before = rss_kib(proc.pid)
            done = 0
            while done < args.requests:
                rps, _, _ = wrk(addr, 10)
                done += int(rps * 10)
            after = rss_kib(proc.pid)
            print(f"{name}: RSS {before / 1024:.1f} MiB after warm-up, {after / 1024:.1f} MiB after "
                  f"~{done} requests ({(after - before) / before * 100:+.1f}%)", flush=True)
    finally:
        for p in (wproc, tproc):
            p.send_signal(signal.SIGTERM)
            p.wait()


def density(args, work, w, registry):
    tenants = []
    for n in range(args.tenants):
        wasm = os.path.join(work, f"hello-{n}.wasm")
        subprocess.run([WRITE_GUEST, f"hello-{n}", wasm], check=True)
        reference = f"127.0.0.1:{registry.port}/bench/t{n}:v1"
        w.publish(wasm, reference)
        tenants.append(tenant_toml(f"t{n}", f"/t{n}", reference, w.key, w.policies))
        if (n + 1) % 100 == 0:
            print(f"published {n + 1}", flush=True)
    config = os.path.join(work, "warrant.toml")
    with open(config, "w") as f:
        f.write('[serve]\nlisten = "127.0.0.1:0"\n\n' + "".join(tenants))
    for label in ("compile cache cold", "compile cache warm"):
        proc, addr, ready, lines = start_warrant(w, config)
        rss = rss_kib(proc.pid)
        ok = sum(1 for n in range(args.tenants)
                 if wait_http(f"http://{addr}/t{n}/x") == 200)
        print(f"{label}: {lines[-1]}; to ready {ready:.2f} s; RSS {rss / 1024:.0f} MiB "
              f"({rss / args.tenants:.0f} KiB per tenant); {ok}/{args.tenants} answered 200", flush=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def coldstart(args, work, w, registry):
    # Not at `/`: the added tenants' routes must not fall under the first one's.
    wasm, config = setup_one(work, w, registry, route="/hello")
    proc, addr, _, _ = start_warrant(w, config)
    base = open(config).read()
    try:
        timings = []
        for i in range(args.samples):
            name = f"added{i}"
            wasm_i = os.path.join(work, f"{name}.wasm")
            subprocess.run([WRITE_GUEST, "hello", wasm_i], check=True)
            reference = f"127.0.0.1:{registry.port}/bench/hello:v1"
            with open(config, "a") as f:
                f.write(tenant_toml(name, f"/{name}", reference, w.key, w.policies))
            started = time.perf_counter()
            proc.send_signal(signal.SIGHUP)
            while True:
                try:
                    with urllib.request.urlopen(f"http://{addr}/{name}/", timeout=2) as r:
                        if r.status == 200:
                            break
                except Exception:
                    pass
            timings.append((time.perf_counter() - started) * 1000)
        print(f"SIGHUP to the added tenant's first 200 (compiled code cached), {args.samples} samples: "
              f"median {statistics.median(timings):.1f} ms, min {min(timings):.1f}, max {max(timings):.1f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        open(config, "w").write(base)


def connections(args, work, w, registry):
    """`--connections` idle connections held open (each sending nothing), and meanwhile the
    latency of requests on fresh connections, against the same requests before the flood."""
    wasm, config = setup_one(work, w, registry)
    proc, addr, _, _ = start_warrant(w, config)
    host, port = addr.rsplit(":", 1)

    def latencies(n):
        out = []
        for _ in range(n):
            started = time.perf_counter()
            with urllib.request.urlopen(f"http://{addr}/x", timeout=10) as r:
                r.read()
                assert r.status == 200
            out.append((time.perf_counter() - started) * 1000)
        return out

    try:
        before = latencies(200)
        idle = []
        for _ in range(args.connections):
            s = socket.socket()
            s.connect((host, int(port)))
            idle.append(s)
        time.sleep(0.5)
        during = latencies(200)
        rss = rss_kib(proc.pid)
        alive = proc.poll() is None
        print(f"{args.connections} idle connections held open: server alive {alive}, RSS {rss / 1024:.0f} MiB; "
              f"request latency before p50 {statistics.median(before):.2f} ms / max {max(before):.2f}, "
              f"during p50 {statistics.median(during):.2f} ms / max {max(during):.2f}")
        for s in idle:
            s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["throughput", "rss", "density", "coldstart", "connections"])
    ap.add_argument("--wasmtime", help="a wasmtime 48 CLI")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--guest", choices=["hello", "python", "js"], default="hello",
                    help="throughput: the component served (python, js: built by real toolchains)")
    args = ap.parse_args()
    if args.mode in ("throughput", "rss") and not args.wasmtime:
        sys.exit("--wasmtime PATH is needed for this mode")
    work = tempfile.mkdtemp(prefix="warrant-bench-serve-")
    registry = Registry(work)
    try:
        w = Warrant(work)
        {"throughput": throughput, "rss": rss, "density": density, "coldstart": coldstart,
         "connections": connections}[args.mode](
            args, work, w, registry)
    finally:
        registry.stop()


if __name__ == "__main__":
    main()
