#!/usr/bin/env python3
"""Start-up cost of a Wasm task through containerd-shim-warrant-v1 against the same module
through `warrant run`, same node configuration, same signed image, alternated in one run.

Starts Debian's docker-registry on a free loopback port and a private containerd (its own
root, state, sockets and config; CRI off) with the shim on its PATH, pushes a signed
`wasi/wasm` image of a hello module, pulls it into containerd, then alternates:
  - ctr run --rm --runtime io.containerd.warrant.v1 IMAGE ID   (create: read blobs by digest,
    verify, decide, compile or load compiled, audit; start; wait; delete)
  - warrant run IMAGE@DIGEST                                    (the same stages in one process)
  - ctr run --rm IMAGE ID with runc and a static Linux binary that prints one line
                                                                (containerd's own floor for a
                                                                task: no Wasm, no Warrant)
and reports min/median/max wall time of each and the ratios of the medians. Needs root, and gcc
and skopeo for the floor (skipped without them).
Usage:
  python3 scripts/bench-shim.py [--runs N] [--profile release|debug]
(build first: cargo build --release --bin warrant --bin containerd-shim-warrant-v1)
"""
import argparse, os, shutil, socket, statistics, subprocess, sys, tempfile, time


POLICY = """
@id("bench-pods") permit (principal, action == Warrant::Action::"instantiate", resource)
when { principal.signer.kind == "key" };
@id("bench-path") permit (principal, action == Warrant::Action::"env.read", resource == Warrant::EnvVar::"PATH");
"""

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def hello_module():
    # The README's signed example guest, read from its OCI layout (index -> manifest -> layer).
    import json
    layout = os.path.join(os.path.dirname(__file__), "..", "examples", "hello", "layout")
    blob = lambda d: open(os.path.join(layout, "blobs", "sha256", d.split(":")[1]), "rb").read()
    index = json.load(open(os.path.join(layout, "index.json")))
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    return blob(manifest["layers"][0]["digest"])

def floor_image(d, ref):
    """A one-layer linux/amd64 image of a static binary printing one line, pushed to `ref`
    with skopeo from an image layout written here. False when gcc or skopeo is missing."""
    import hashlib, io, json, tarfile
    if not shutil.which("gcc") or not shutil.which("skopeo"):
        return False
    with open(f"{d}/floor.c", "w") as f:
        f.write('#include <unistd.h>\nint main(void){write(1,"hello from runc\\n",16);return 0;}\n')
    run(["gcc", "-static", "-O2", "-o", f"{d}/floor", f"{d}/floor.c"])
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = t.gettarinfo(f"{d}/floor", arcname="floor"); info.uid = info.gid = 0; info.mtime = 0
        with open(f"{d}/floor", "rb") as f: t.addfile(info, f)
    layer = layer.getvalue()
    os.makedirs(f"{d}/floor-layout/blobs/sha256")
    def put(b):
        h = hashlib.sha256(b).hexdigest()
        with open(f"{d}/floor-layout/blobs/sha256/{h}", "wb") as f: f.write(b)
        return {"digest": f"sha256:{h}", "size": len(b)}
    lay = put(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/floor"]},
                         "rootfs": {"type": "layers", "diff_ids": [lay["digest"]]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": dict(put(config), mediaType="application/vnd.oci.image.config.v1+json"),
                           "layers": [dict(lay, mediaType="application/vnd.oci.image.layer.v1.tar")]}).encode()
    m = put(manifest)
    with open(f"{d}/floor-layout/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [dict(m, mediaType="application/vnd.oci.image.manifest.v1+json",
                   annotations={"org.opencontainers.image.ref.name": "v1"})]}, f)
    with open(f"{d}/floor-layout/oci-layout", "w") as f: f.write('{"imageLayoutVersion":"1.0.0"}')
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{d}/floor-layout:v1", f"docker://{ref}"])
    return True

def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profile", default="release")
    a = ap.parse_args()
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    warrant = os.path.join(root, "target", a.profile, "warrant")
    shim = os.path.join(root, "target", a.profile, "containerd-shim-warrant-v1")
    for b in (warrant, shim):
        if not os.path.exists(b):
            sys.exit(f"{b} is missing: cargo build --{a.profile} --bin warrant --bin containerd-shim-warrant-v1")
    d = tempfile.mkdtemp(prefix="wb", dir="/tmp")
    procs = []
    try:
        port = free_port()
        with open(f"{d}/registry.yml", "w") as f:
            f.write(f"version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n"
                    f"storage: {{filesystem: {{rootdirectory: {d}/reg}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n")
        procs.append(subprocess.Popen(["/usr/bin/docker-registry", "serve", f"{d}/registry.yml"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        os.makedirs(f"{d}/bin"); shutil.copy(shim, f"{d}/bin/containerd-shim-warrant-v1")
        os.makedirs(f"{d}/node/policies")
        with open(f"{d}/node/policies/bench.cedar", "w") as f: f.write(POLICY)
        env = dict(os.environ, HOME=f"{d}/home", WARRANT_HOME=f"{d}/home")
        run([warrant, "keygen", "--out", f"{d}/node/signer"], env=env)
        with open(f"{d}/node/warrant.toml", "w") as f:
            f.write('store = "store"\naudit_log = "audit"\naudit_key = "audit.key"\npolicies = "policies"\n'
                    '[verify]\nkeys = ["signer.pub"]\n[k8s]\ndata_dir = "state"\nmemory_bytes = "64MiB"\n'
                    '[run]\nmemory_bytes = "64MiB"\n')
        cfg = f"{d}/node/warrant.toml"
        with open(f"{d}/ctrd.toml", "w") as f:
            f.write(f'version = 2\nroot = "{d}/croot"\nstate = "{d}/cstate"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{d}/c.sock"\n'
                    f'[ttrpc]\n  address = "{d}/c.sock.ttrpc"\n')
        cenv = dict(os.environ, PATH=f"{d}/bin:" + os.environ.get("PATH", ""), WARRANT_CONFIG=cfg)
        procs.append(subprocess.Popen(["/usr/bin/containerd", "--config", f"{d}/ctrd.toml"], env=cenv,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ctr = ["/usr/bin/ctr", "--address", f"{d}/c.sock", "--namespace", "bench"]
        for _ in range(200):
            if subprocess.run(ctr + ["version"], capture_output=True).returncode == 0: break
            time.sleep(0.05)
        with open(f"{d}/hello.wasm", "wb") as f: f.write(hello_module())
        ref = f"127.0.0.1:{port}/bench/hello:v1"
        for _ in range(100):
            try:
                digest = run([warrant, "--config", cfg, "push", "--image", f"{d}/hello.wasm", ref], env=env).stdout.decode().strip(); break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        run([warrant, "--config", cfg, "sign", ref, "--key", f"{d}/node/signer.key"], env=env)
        run(ctr + ["images", "pull", "--plain-http", ref])
        pinned = f"127.0.0.1:{port}/bench/hello@{digest}"
        floor_ref = f"127.0.0.1:{port}/bench/floor:v1"
        floor = floor_image(d, floor_ref)
        if floor:
            run(ctr + ["images", "pull", "--plain-http", floor_ref])
            run(ctr + ["run", "--rm", floor_ref, "floor-warm"])
        shim_t, run_t, floor_t = [], [], []
        # One of each first, unmeasured: the compile cache and the verdict cache warm.
        run(ctr + ["run", "--rm", "--runtime", "io.containerd.warrant.v1", ref, "warm"])
        run([warrant, "--config", cfg, "run", pinned], env=env)
        for i in range(a.runs):
            t = time.perf_counter(); run(ctr + ["run", "--rm", "--runtime", "io.containerd.warrant.v1", ref, f"b{i}"])
            shim_t.append(time.perf_counter() - t)
            t = time.perf_counter(); run([warrant, "--config", cfg, "run", pinned], env=env)
            run_t.append(time.perf_counter() - t)
            if floor:
                t = time.perf_counter(); run(ctr + ["run", "--rm", floor_ref, f"f{i}"])
                floor_t.append(time.perf_counter() - t)
        def line(name, xs):
            return f"{name:<34} min {min(xs)*1e3:7.1f} ms  median {statistics.median(xs)*1e3:7.1f} ms  max {max(xs)*1e3:7.1f} ms"
        print(f"{a.runs} runs each, alternated, {a.profile} build")
        print(line("ctr run (containerd-shim-warrant)", shim_t))
        print(line("warrant run", run_t))
        if floor:
            print(line("ctr run (runc, static binary)", floor_t))
        print(f"ratio of medians (shim / warrant run): {statistics.median(shim_t)/statistics.median(run_t):.2f}")
        if floor:
            print(f"ratio of medians (shim / runc floor): {statistics.median(shim_t)/statistics.median(floor_t):.2f}")
            print(f"shim minus floor (medians): {(statistics.median(shim_t)-statistics.median(floor_t))*1e3:.1f} ms")
    finally:
        subprocess.run(["/usr/bin/ctr", "--address", f"{d}/c.sock", "--namespace", "bench", "tasks", "ls"], capture_output=True)
        for p in procs:
            p.kill(); p.wait()
        subprocess.run(["umount", "-R", "-l", f"{d}/croot"], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)

if __name__ == "__main__":
    main()
