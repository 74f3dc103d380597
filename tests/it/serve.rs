//! `warrant serve` end to end: the real binary, a real registry on loopback, signed
//! components, a Cedar policy per tenant, and HTTP over real sockets.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use tests::http_guests as guests;
use tests::registry::TestRegistry;
use tests::serve::{Server, request, try_request, write};

/// Generous: a cold debug build compiles a component in well under a second, but CI is slow.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// Permit every tenant to be instantiated and to reach any host its configuration names.
const SERVE_POLICY: &str = r#"
@id("tenants-may-run")
permit (principal, action == Warrant::Action::"instantiate", resource in Warrant::Runtime::"serve")
when { context.memoryBytes <= 268435456 };

@id("configured-outbound")
permit (principal, action == Warrant::Action::"http.outgoing", resource);
"#;

struct Fixture {
    registry: TestRegistry,
    home: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            registry: TestRegistry::start(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn warrant(&self, args: &[&str]) -> Output {
        crate::warrant_in(self.home.path())
            .args(args)
            .output()
            .unwrap()
    }

    /// `warrant keygen`: (private, public).
    fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        let prefix = self.path(&format!("keys/{name}"));
        std::fs::create_dir_all(prefix.parent().unwrap()).unwrap();
        let out = self.warrant(&["keygen", "--out", prefix.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (prefix.with_extension("key"), prefix.with_extension("pub"))
    }

    /// Push `wasm` to `repo:tag` and sign it with `key` (none: unsigned); its digest.
    fn publish(&self, repo: &str, tag: &str, wasm: &[u8], key: Option<&Path>) -> String {
        let file = self.path(&format!("{repo}-{tag}.wasm").replace('/', "-"));
        std::fs::write(&file, wasm).unwrap();
        let reference = self.registry.reference(repo, tag);
        let out = self.warrant(&["push", file.to_str().unwrap(), &reference]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        if let Some(key) = key {
            let out = self.warrant(&["sign", &reference, "--key", key.to_str().unwrap()]);
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        text(&out.stdout).trim().to_owned()
    }

    fn policies(&self, name: &str, cedar: &str) -> PathBuf {
        let dir = self.path(&format!("policies/{name}"));
        write(&dir.join("serve.cedar"), cedar);
        dir
    }

    /// Write `warrant.toml` (a `[serve]` section and its tenants).
    fn config(&self, toml: &str) -> PathBuf {
        let path = self.path("etc/warrant.toml");
        write(&path, toml);
        path
    }

    fn serve_command(&self, config: &Path, extra: &[&str]) -> std::process::Command {
        let mut command = crate::warrant_in(self.home.path());
        command
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(extra);
        command
    }

    fn serve(&self, config: &Path) -> Server {
        Server::start(self.serve_command(config, &[]), READY_WITHIN)
    }

    /// The audit log's records, as `audit show --json` prints them.
    fn records(&self, config: &Path) -> Vec<serde_json::Value> {
        let out = self.warrant(&[
            "--config",
            config.to_str().unwrap(),
            "audit",
            "show",
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn audit_verifies(&self, config: &Path) {
        let out = self.warrant(&["--config", config.to_str().unwrap(), "audit", "verify"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kind(record: &serde_json::Value) -> &str {
    record["kind"].as_str().unwrap_or("")
}

fn body(record: &serde_json::Value) -> &serde_json::Value {
    &record["body"]
}

/// A tenant section.
fn tenant(
    name: &str,
    route: &str,
    reference: &str,
    key: &Path,
    policies: &Path,
    extra: &str,
) -> String {
    format!(
        "[[serve.tenant]]\nname = \"{name}\"\nroute = \"{route}\"\nreference = \"{reference}\"\nkeys = [\"{}\"]\npolicies = \"{}\"\ntimeout = \"2s\"\n{extra}\n",
        key.display(),
        policies.display()
    )
}

const LISTEN: &str = "[serve]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";

/// Two tenants serve the same signed component; one trusts the key that signed it and is
/// served, the other trusts another key and is not (503, never a shorter route), although
/// that key is trusted by its neighbour. Routes match whole segments; the guest sees the
/// full path; each tenant's load and every request are in the audit log, which verifies.
#[test]
fn tenants_are_verified_against_their_own_keys_and_routed_by_whole_segments() {
    let f = Fixture::new();
    let (acme_key, acme_pub) = f.keygen("acme");
    let (_, other_pub) = f.keygen("other");
    f.publish("acme/hello", "v1", &guests::hello(), Some(&acme_key));
    let policies = f.policies("all", SERVE_POLICY);
    let reference = f.registry.reference("acme/hello", "v1");
    let config = f.config(&format!(
        "{LISTEN}{}{}{}",
        tenant("acme", "/acme", &reference, &acme_pub, &policies, ""),
        tenant(
            "other",
            "/acme/other",
            &reference,
            &other_pub,
            &policies,
            ""
        ),
        tenant("root", "/", &reference, &acme_pub, &policies, ""),
    ));
    let server = f.serve(&config);
    assert!(
        server.log().contains("ready: 2 of 3 tenants served"),
        "{}",
        server.log()
    );

    let hello = server.get("/acme/deep/path?x=1");
    assert_eq!(hello.status, 200, "{}", hello.text());
    assert_eq!(
        hello.text(),
        format!("{}/acme/deep/path?x=1\n", guests::HELLO_BODY_PREFIX)
    );
    // Another key's tenant: 503 on its route and below it, not acme's answer.
    for path in ["/acme/other", "/acme/other/x"] {
        let refused = server.get(path);
        assert_eq!(refused.status, 503, "{path}: {}", refused.text());
        assert!(!refused.text().contains(guests::HELLO_BODY_PREFIX));
        assert!(
            !refused.text().contains("sha256"),
            "names nothing internal: {}",
            refused.text()
        );
    }
    // `/acme-x` is not under `/acme`: the root tenant answers it.
    let root = server.get("/acme-x");
    assert_eq!(root.status, 200);
    assert!(root.text().ends_with("/acme-x\n"), "{}", root.text());
    let admin = server.admin.unwrap();
    let metrics = request(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .contains("warrant_requests_total{tenant=\"acme\",status=\"200\"} 1"),
        "{}",
        metrics.text()
    );
    assert!(
        metrics
            .text()
            .contains("warrant_tenant_served{tenant=\"other\"} 0")
    );
    let ready = request(
        admin,
        "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(ready.status, 200);
    server.stop();

    let records = f.records(&config);
    let loads: Vec<&str> = records
        .iter()
        .filter(|r| kind(r) == "load")
        .map(|r| body(r)["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(loads.len(), 2, "{loads:?}");
    assert!(loads.contains(&"acme") && loads.contains(&"root"));
    let unserved: Vec<&serde_json::Value> =
        records.iter().filter(|r| kind(r) == "unserved").collect();
    assert_eq!(unserved.len(), 1);
    assert_eq!(body(unserved[0])["tenant"], "other");
    assert!(
        body(unserved[0])["reason"]
            .as_str()
            .unwrap()
            .contains("no signature"),
        "{:?}",
        unserved[0]
    );
    let requests: Vec<&serde_json::Value> =
        records.iter().filter(|r| kind(r) == "request").collect();
    let acme = requests
        .iter()
        .find(|r| body(r)["tenant"] == "acme")
        .expect("acme's request record");
    assert_eq!(body(acme)["status"], 200);
    assert_eq!(
        body(acme)["path"],
        "/acme/deep/path",
        "the query is not recorded"
    );
    assert_eq!(body(acme)["method"], "GET");
    assert!(
        requests
            .iter()
            .filter(|r| body(r)["tenant"] == "other")
            .all(|r| body(r)["status"] == 503)
    );
    f.audit_verifies(&config);
}

/// `serve --check` loads every tenant as serving would, without listening, and exits with
/// the first failure's documented code: 122 for a tenant whose signer is not trusted, 123 for
/// one a `forbid` denies, 0 when every tenant would be served.
#[test]
fn serve_check_reports_each_tenant_and_exits_with_the_first_failure() {
    let f = Fixture::new();
    let (acme_key, acme_pub) = f.keygen("acme");
    let (_, other_pub) = f.keygen("other");
    f.publish("acme/hello", "v1", &guests::hello(), Some(&acme_key));
    let policies = f.policies("all", SERVE_POLICY);
    let denying = f.policies(
        "deny-b",
        &format!("{SERVE_POLICY}\n@id(\"not-b\")\nforbid (principal, action == Warrant::Action::\"instantiate\", resource == Warrant::Runtime::\"b\");\n"),
    );
    let reference = f.registry.reference("acme/hello", "v1");
    let check = |tenants: &str| {
        let config = f.config(&format!("{LISTEN}{tenants}"));
        f.warrant(&[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--check",
            "--json",
        ])
    };
    let good = tenant(
        "a",
        "/a",
        &reference,
        &acme_pub,
        &policies,
        "outbound = [\"api.example.com:443\"]",
    );
    let out = check(&good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(report["served"], 1);
    assert_eq!(
        report["tenants"][0]["grant"]["outbound"][0],
        "api.example.com:443"
    );
    assert!(
        report["tenants"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let untrusted = tenant("b", "/b", &reference, &other_pub, &policies, "");
    let out = check(&format!("{good}{untrusted}"));
    assert_eq!(out.status.code(), Some(122), "{}", text(&out.stdout));
    let report: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(report["tenants"][1]["served"], false);
    assert_eq!(report["tenants"][1]["exit"], 122);

    let denied = tenant("b", "/b", &reference, &acme_pub, &denying, "");
    let out = check(&format!("{good}{denied}"));
    assert_eq!(out.status.code(), Some(123), "{}", text(&out.stdout));
    let report: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert!(
        report["tenants"][1]["error"]
            .as_str()
            .unwrap()
            .contains("not-b"),
        "{report}"
    );
    // Nothing was listened on: no address line.
    assert!(
        !text(&out.stderr).contains("serving on"),
        "{}",
        text(&out.stderr)
    );
}

/// Hostile guests are each contained — a deadline (504), unbounded memory (500), a flood of
/// response body (cut off: the client sees an incomplete body), thousands of resources (500),
/// a request body over the cap (413) — and the other tenant still answers at once.
#[test]
fn hostile_guests_are_contained_and_the_other_tenants_keep_answering() {
    let f = Fixture::new();
    let (key, public) = f.keygen("t");
    let policies = f.policies("all", SERVE_POLICY);
    let mut tenants = String::new();
    for (name, wasm) in [
        ("hello", guests::hello()),
        ("loop", guests::looping()),
        ("memory", guests::memory_hog()),
        ("flood", guests::flood(1 << 30)),
        ("handles", guests::resource_hog()),
    ] {
        f.publish(&format!("t/{name}"), "v1", &wasm, Some(&key));
        let reference = f.registry.reference(&format!("t/{name}"), "v1");
        tenants.push_str(&tenant(
            name,
            &format!("/{name}"),
            &reference,
            &public,
            &policies,
            "memory_bytes = \"32MiB\"",
        ));
    }
    let config = f.config(&format!(
        "{LISTEN}max_request_bytes = \"1MiB\"\nmax_response_bytes = \"4MiB\"\n{tenants}"
    ));
    let server = f.serve(&config);
    assert!(
        server.log().contains("ready: 5 of 5 tenants served"),
        "{}",
        server.log()
    );

    let started = Instant::now();
    let looped = server.get("/loop");
    assert_eq!(looped.status, 504, "{}", looped.text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.get("/memory").status, 500);
    assert_eq!(server.get("/handles").status, 500);
    let flood = server.get("/flood");
    assert_eq!(flood.status, 200);
    assert!(!flood.complete, "a cut-off body must not read as whole");
    assert!(flood.body.len() <= 4 << 20, "{}", flood.body.len());
    let big = request(
        server.addr,
        &format!(
            "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            1u64 << 30
        ),
    );
    assert_eq!(big.status, 413);
    // While a guest loops, another tenant answers at once.
    let looping = std::thread::spawn({
        let addr = server.addr;
        move || {
            request(
                addr,
                "GET /loop HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .status
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(server.get("/hello").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(looping.join().unwrap(), 504);
    server.stop();

    let records = f.records(&config);
    let limit_of = |tenant: &str| {
        records
            .iter()
            .filter(|r| kind(r) == "request" && body(r)["tenant"] == tenant)
            .map(|r| {
                (
                    body(r)["status"].as_u64().unwrap(),
                    body(r)["limit"].as_str().unwrap_or("").to_owned(),
                    body(r)["trap"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(
        limit_of("loop")
            .iter()
            .all(|(s, l, _)| *s == 504 && l.starts_with("deadline")),
        "{:?}",
        limit_of("loop")
    );
    assert!(
        limit_of("memory")
            .iter()
            .all(|(s, l, _)| *s == 500 && l.starts_with("memory")),
        "{:?}",
        limit_of("memory")
    );
    assert!(
        limit_of("flood")
            .iter()
            .all(|(_, l, _)| l.starts_with("response-body")),
        "{:?}",
        limit_of("flood")
    );
    assert!(
        limit_of("handles")
            .iter()
            .all(|(s, _, t)| *s == 500 && !t.is_empty()),
        "{:?}",
        limit_of("handles")
    );
    f.audit_verifies(&config);
}

/// A plain HTTP server on loopback that counts the connections it gets and answers 200.
struct Canary {
    addr: std::net::SocketAddr,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Canary {
    fn start() -> Self {
        Self::answering(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ncanary")
    }

    /// A canary that answers every request with `response`.
    fn answering(response: &'static [u8]) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 4096];
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(response);
                });
            }
        });
        Self { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Outbound HTTP reaches only a granted `host:port`, as the guest wrote it: the granted IP
/// literal gets through; an ungranted host, a granted name that resolves to loopback, a
/// request without authority (under `Host: 127.0.0.1:<canary>`: CVE-2024-32980), the legacy
/// numeric spellings of the granted address and `user@host` are each refused, and not one
/// byte reaches the canary from them.
#[test]
fn cve_2024_32980_outbound_reaches_only_granted_destinations_as_written() {
    let f = Fixture::new();
    let canary = Canary::start();
    let port = canary.addr.port();
    let (key, public) = f.keygen("t");
    let policies = f.policies("all", SERVE_POLICY);
    let cases: Vec<(&str, Option<String>, String)> = vec![
        (
            "granted",
            Some(format!("127.0.0.1:{port}")),
            format!("127.0.0.1:{port}"),
        ),
        (
            "ungranted",
            Some(format!("127.0.0.1:{}", port.wrapping_add(1).max(1))),
            format!("127.0.0.1:{port}"),
        ),
        (
            "localhost",
            Some(format!("localhost:{port}")),
            format!("localhost:{port}"),
        ),
        ("no-authority", None, format!("127.0.0.1:{port}")),
        (
            "decimal",
            Some(format!("2130706433:{port}")),
            format!("127.0.0.1:{port}"),
        ),
        (
            "hex",
            Some(format!("0x7f000001:{port}")),
            format!("127.0.0.1:{port}"),
        ),
        (
            "octal",
            Some(format!("0177.1:{port}")),
            format!("127.0.0.1:{port}"),
        ),
        (
            "userinfo",
            Some(format!("user@127.0.0.1:{port}")),
            format!("127.0.0.1:{port}"),
        ),
    ];
    let mut tenants = String::new();
    for (name, authority, grant) in &cases {
        let wasm = guests::fetch(Some("http"), authority.as_deref(), "/probe");
        f.publish(&format!("out/{name}"), "v1", &wasm, Some(&key));
        let reference = f.registry.reference(&format!("out/{name}"), "v1");
        tenants.push_str(&tenant(
            name,
            &format!("/{name}"),
            &reference,
            &public,
            &policies,
            &format!("outbound = [\"{grant}\"]"),
        ));
    }
    let config = f.config(&format!("{LISTEN}{tenants}"));
    let server = f.serve(&config);
    assert!(
        server.log().contains(&format!(
            "ready: {n} of {n} tenants served",
            n = cases.len()
        )),
        "{}",
        server.log()
    );

    let granted = server.get("/granted");
    assert_eq!(
        (granted.status, granted.text()),
        (200, "upstream 200\n".to_owned())
    );
    assert_eq!(canary.hits(), 1);
    for (name, _, _) in cases.iter().skip(1) {
        let raw =
            format!("GET /{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let refused = request(server.addr, &raw);
        assert_eq!(refused.status, 502, "{name}: {}", refused.text());
        assert!(
            refused.text().starts_with("refused "),
            "{name}: {}",
            refused.text()
        );
    }
    assert_eq!(canary.hits(), 1, "a refused request reached the canary");
    server.stop();
    let records = f.records(&config);
    for (name, _, _) in &cases {
        let record = records
            .iter()
            .find(|r| kind(r) == "request" && body(r)["tenant"] == *name)
            .unwrap();
        let (allowed, denied) = (
            body(record)["outboundAllowed"].as_u64(),
            body(record)["outboundDenied"].as_u64(),
        );
        if *name == "granted" {
            assert_eq!((allowed, denied), (Some(1), Some(0)));
        } else {
            // A request without authority never reaches the gate (wasi:http refuses it first);
            // every other one is counted as denied.
            assert_eq!(allowed, Some(0), "{name}");
        }
    }
}

/// SIGHUP: a tenant added is served; a tenant whose tag moved to an unsigned digest keeps
/// serving the old version; a policy that now denies a tenant stops it at once; each is
/// audited. SIGTERM drains and exits 0 with a log that verifies.
#[test]
fn reload_switches_only_verified_versions_and_revokes_at_once() {
    let f = Fixture::new();
    let (key, public) = f.keygen("t");
    let policies = f.policies("all", SERVE_POLICY);
    let strict = f.path("policies/strict");
    let first = f.publish("r/a", "v1", &guests::hello(), Some(&key));
    f.publish("r/b", "v1", &guests::hello(), Some(&key));
    f.publish("r/c", "v1", &guests::hello(), Some(&key));
    let reference = |repo: &str| f.registry.reference(repo, "v1");
    let a = tenant("a", "/a", &reference("r/a"), &public, &policies, "");
    let b = tenant("b", "/b", &reference("r/b"), &public, &strict, "");
    write(&strict.join("serve.cedar"), SERVE_POLICY);
    let config = f.config(&format!("{LISTEN}{a}{b}"));
    let mut server = f.serve(&config);
    assert_eq!(server.get("/a/x").status, 200);
    assert_eq!(server.get("/b/x").status, 200);
    assert_eq!(server.get("/c/x").status, 404);

    // a's tag moves to an unsigned artifact; b's policy now forbids it; c is added.
    let unsigned = f.publish("r/a", "v1", &guests::imports_everything(), None);
    assert_ne!(unsigned, first);
    write(
        &strict.join("serve.cedar"),
        &format!(
            "{SERVE_POLICY}\n@id(\"stop-b\")\nforbid (principal, action == Warrant::Action::\"instantiate\", resource == Warrant::Runtime::\"b\");\n"
        ),
    );
    let c = tenant("c", "/c", &reference("r/c"), &public, &policies, "");
    f.config(&format!("{LISTEN}{a}{b}{c}"));
    server.signal(1);
    assert!(
        server.wait_for("reloaded:", READY_WITHIN),
        "{}",
        server.log()
    );
    let a_now = server.get("/a/x");
    assert_eq!(a_now.status, 200, "the old version keeps serving");
    assert!(
        a_now.text().starts_with(guests::HELLO_BODY_PREFIX),
        "{}",
        a_now.text()
    );
    assert_eq!(server.get("/b/x").status, 503, "revoked at once");
    assert_eq!(server.get("/c/x").status, 200, "added");
    assert!(
        server
            .log()
            .contains("tenant `a`: the new version is refused"),
        "{}",
        server.log()
    );

    server.signal(15);
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        server.log()
    );
    let records = f.records(&config);
    let unserved: Vec<(String, bool)> = records
        .iter()
        .filter(|r| kind(r) == "unserved")
        .map(|r| {
            (
                body(r)["tenant"].as_str().unwrap().to_owned(),
                !body(r)["kept"].is_null(),
            )
        })
        .collect();
    assert!(unserved.contains(&("a".into(), true)), "{unserved:?}");
    assert!(unserved.contains(&("b".into(), false)), "{unserved:?}");
    assert!(
        records
            .iter()
            .any(|r| kind(r) == "load" && body(r)["tenant"] == "c")
    );
    f.audit_verifies(&config);
}

/// Components from real toolchains import filesystem, terminal, environment, exit and
/// sockets interfaces beyond the proxy world: they link, and find them present and empty.
#[test]
fn a_component_importing_more_of_wasi_links_and_gets_nothing() {
    let f = Fixture::new();
    let (key, public) = f.keygen("t");
    let policies = f.policies("all", SERVE_POLICY);
    f.publish("t/wasi", "v1", &guests::imports_everything(), Some(&key));
    let config = f.config(&format!(
        "{LISTEN}{}",
        tenant(
            "wasi",
            "/wasi",
            &f.registry.reference("t/wasi", "v1"),
            &public,
            &policies,
            ""
        )
    ));
    let server = Server::start(
        {
            let mut c = f.serve_command(&config, &[]);
            c.env("SECRET_FROM_THE_HOST", "hunter2");
            c
        },
        READY_WITHIN,
    );
    let answer = server.get("/wasi");
    assert_eq!(
        (answer.status, answer.text()),
        (200, "env=0 dirs=0 terminal=0\n".to_owned())
    );
}

/// Slow and abusive clients: a client sending its head one byte at a time is dropped at the
/// header-read timeout; connections past the cap are closed at once; a request past the
/// tenant's `max_concurrency` is refused (503) at once, not queued. Meanwhile the server
/// answers other requests as usual.
#[test]
fn slow_clients_and_floods_of_connections_and_requests_are_refused_at_once() {
    use std::io::{Read, Write};
    let f = Fixture::new();
    let (key, public) = f.keygen("t");
    let policies = f.policies("all", SERVE_POLICY);
    f.publish("t/hello", "v1", &guests::hello(), Some(&key));
    f.publish("t/loop", "v1", &guests::looping(), Some(&key));
    let config = f.config(&format!(
        "{LISTEN}max_connections = 32\n{}{}",
        tenant(
            "hello",
            "/hello",
            &f.registry.reference("t/hello", "v1"),
            &public,
            &policies,
            ""
        ),
        tenant(
            "loop",
            "/loop",
            &f.registry.reference("t/loop", "v1"),
            &public,
            &policies,
            "max_concurrency = 1"
        ),
    ));
    let server = f.serve(&config);

    // One byte a second: dropped at the header-read timeout (5 s), long before its head ends.
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let head = b"GET /hello HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for byte in head {
        if slow.write_all(&[*byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        if started.elapsed() > Duration::from_secs(5) {
            // The server has closed it, or answers 408: either way no request reached a guest.
            let mut buf = [0u8; 256];
            slow.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            match slow.read(&mut buf) {
                Ok(0) | Err(_) => {}
                Ok(n) => assert!(
                    String::from_utf8_lossy(&buf[..n]).contains("408"),
                    "{:?}",
                    String::from_utf8_lossy(&buf[..n])
                ),
            }
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the slow client was never dropped");
    assert!(closed_after < Duration::from_secs(10), "{closed_after:?}");

    // Past `max_concurrency`: 503 at once while the first request loops.
    let looping = std::thread::spawn({
        let addr = server.addr;
        move || {
            request(
                addr,
                "GET /loop HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .status
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let refused = server.get("/loop");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(looping.join().unwrap(), 504);

    // 200 idle connections against a cap of 32: the rest are closed at once, and a request
    // still gets through once the idle ones go.
    let idle: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(server.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut closed = 0;
    for mut c in idle.iter().map(|c| c.try_clone().unwrap()) {
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 1];
        if matches!(c.read(&mut buf), Ok(0)) {
            closed += 1;
        }
    }
    assert!(
        closed >= 200 - 32,
        "only {closed} of 200 connections were closed"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.get("/hello").status, 200);
    let admin = server.admin.unwrap();
    let metrics = request(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .text();
    assert!(
        metrics.contains("warrant_limits_total{tenant=\"loop\",limit=\"concurrency\"} 1"),
        "{metrics}"
    );
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warrant_connections_refused_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 200 - 32, "{refused}");
}

/// SIGKILL while requests are in flight leaves a log `audit verify` accepts, holding every
/// tenant's `load` record (committed before the tenant took traffic) and the request records
/// of all but the last batch window; SIGTERM, by contrast, lets an in-flight request finish
/// and loses nothing.
#[test]
fn sigkill_under_load_leaves_a_verifiable_log_and_sigterm_drains() {
    let f = Fixture::new();
    let (key, public) = f.keygen("t");
    let policies = f.policies("all", SERVE_POLICY);
    f.publish("t/hello", "v1", &guests::hello(), Some(&key));
    let config = f.config(&format!(
        "{LISTEN}{}{}",
        tenant(
            "a",
            "/a",
            &f.registry.reference("t/hello", "v1"),
            &public,
            &policies,
            ""
        ),
        tenant(
            "b",
            "/b",
            &f.registry.reference("t/hello", "v1"),
            &public,
            &policies,
            ""
        ),
    ));
    let mut server = f.serve(&config);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, answered) = (server.addr, stop.clone(), answered.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer = try_request(
                        addr,
                        "GET /a/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    );
                    if answer.is_some_and(|a| a.status == 200 && a.complete) {
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.signal(9);
    server.wait_exit(Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let answered = answered.load(std::sync::atomic::Ordering::Relaxed);
    assert!(answered > 10, "{answered}");
    f.audit_verifies(&config);
    let records = f.records(&config);
    let loads = records.iter().filter(|r| kind(r) == "load").count();
    assert_eq!(loads, 2);
    let recorded = records.iter().filter(|r| kind(r) == "request").count();
    // Answered requests whose records were still in the last batch may be lost, no more.
    assert!(
        recorded <= answered + 4,
        "{recorded} records for {answered} answers"
    );
    assert!(
        recorded * 10 >= answered * 8,
        "{recorded} records for {answered} answers"
    );

    // SIGTERM with a request in flight: it finishes, the server exits 0, nothing is lost.
    let looping_key = f.path("keys/t.key");
    f.publish("t/loop", "v1", &guests::looping(), Some(&looping_key));
    let config = f.config(&format!(
        "{LISTEN}shutdown_grace = \"5s\"\n{}{}",
        tenant(
            "a",
            "/a",
            &f.registry.reference("t/hello", "v1"),
            &public,
            &policies,
            ""
        ),
        tenant(
            "loop",
            "/loop",
            &f.registry.reference("t/loop", "v1"),
            &public,
            &policies,
            ""
        ),
    ));
    let mut server = f.serve(&config);
    let before = f.records(&config).len();
    let in_flight = std::thread::spawn({
        let addr = server.addr;
        move || {
            request(
                addr,
                "GET /loop HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .status
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.get("/a/y").status, 200);
    server.signal(15);
    // The looping request ends at its 2 s deadline, inside the grace: answered, then exit 0.
    assert_eq!(in_flight.join().unwrap(), 504);
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        server.log()
    );
    let records = f.records(&config);
    let new: Vec<&serde_json::Value> = records[before..]
        .iter()
        .filter(|r| kind(r) == "request")
        .collect();
    assert_eq!(new.len(), 2, "{new:?}");
    f.audit_verifies(&config);
}

/// `openssl` makes a CA and a server certificate for `127.0.0.1` signed by it, in `dir`:
/// (CA certificate, server certificate, server key).
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let file = |ext: &str| dir.join(format!("{name}-{ext}"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            text(&out.stderr)
        );
    };
    let (ca_key, ca, key, csr, cert, ext) = (
        file("ca.key"),
        file("ca.pem"),
        file("server.key"),
        file("server.csr"),
        file("server.pem"),
        file("ext.cnf"),
    );
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-out",
        &s(&cert),
        "-days",
        "2",
        "-extfile",
        &s(&ext),
    ]);
    (ca, cert, key)
}

/// An HTTPS server (Python's, on loopback) with `cert` and `key`, answering 200 `tls`.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(cert: &Path, key: &Path) -> Self {
        let port = tests::registry::free_port();
        let script = format!(
            r#"
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"tls")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", {port}), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain("{cert}", "{key}")
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#,
            cert = cert.display(),
            key = key.display()
        );
        let child = std::process::Command::new("python3")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "the HTTPS server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Outgoing HTTPS is verified by rustls against the webpki roots and the operator's
/// `outbound_roots`: a server certified by that CA answers; one certified by another CA is
/// refused. No redirect is followed: the guest gets the 302 itself, and the place it points
/// to gets nothing.
#[test]
fn outbound_https_is_verified_and_redirects_are_not_followed() {
    let f = Fixture::new();
    let (ca, cert, key) = certificates(f.home.path(), "trusted");
    let (_, other_cert, other_key) = certificates(f.home.path(), "other");
    let trusted = TlsServer::start(&cert, &key);
    let untrusted = TlsServer::start(&other_cert, &other_key);
    let target = Canary::start();
    let redirect: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            target.addr
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let redirecting = Canary::answering(redirect);
    let (signing, public) = f.keygen("t");
    let policies = f.policies("all", SERVE_POLICY);
    let mut tenants = String::new();
    for (name, scheme, authority) in [
        ("trusted", "https", format!("127.0.0.1:{}", trusted.port)),
        (
            "untrusted",
            "https",
            format!("127.0.0.1:{}", untrusted.port),
        ),
        ("redirect", "http", redirecting.addr.to_string()),
    ] {
        f.publish(
            &format!("tls/{name}"),
            "v1",
            &guests::fetch(Some(scheme), Some(&authority), "/"),
            Some(&signing),
        );
        let reference = f.registry.reference(&format!("tls/{name}"), "v1");
        tenants.push_str(&tenant(
            name,
            &format!("/{name}"),
            &reference,
            &public,
            &policies,
            &format!("outbound = [\"{authority}\"]"),
        ));
    }
    let config = f.config(&format!(
        "{LISTEN}outbound_roots = \"{}\"\n{tenants}",
        ca.display()
    ));
    let server = f.serve(&config);
    let ok = server.get("/trusted");
    assert_eq!((ok.status, ok.text()), (200, "upstream 200\n".to_owned()));
    let refused = server.get("/untrusted");
    assert_eq!(refused.status, 502, "{}", refused.text());
    let moved = server.get("/redirect");
    assert_eq!(
        (moved.status, moved.text()),
        (200, "upstream 302\n".to_owned())
    );
    assert_eq!(redirecting.hits(), 1);
    assert_eq!(target.hits(), 0, "a redirect was followed");
}

/// Components built by real toolchains — Python by componentize-py, JavaScript by jco and
/// componentize-js — are verified, granted and served like any other: they link (they import
/// filesystem, terminal, environment, exit and socket interfaces beyond the proxy world), see
/// the full path and method, and read the request body.
#[test]
fn components_from_real_toolchains_are_served() {
    let f = Fixture::new();
    let (key, public) = f.keygen("t");
    let policies = f.policies("all", SERVE_POLICY);
    let mut tenants = String::new();
    for (name, wasm) in [
        ("python", tests::toolchain::python_http_guest()),
        ("js", tests::toolchain::js_http_guest()),
    ] {
        f.publish(&format!("toolchain/{name}"), "v1", &wasm, Some(&key));
        let reference = f.registry.reference(&format!("toolchain/{name}"), "v1");
        tenants.push_str(&tenant(
            name,
            &format!("/{name}"),
            &reference,
            &public,
            &policies,
            "memory_bytes = \"128MiB\"\ntimeout = \"10s\"",
        ));
    }
    // Their own timeout instead of the 2 s `tenant` writes (TOML refuses a key given twice).
    let tenants = tenants.replace("timeout = \"2s\"\n", "");
    let config = f.config(&format!("{LISTEN}{tenants}"));
    let server = Server::start(f.serve_command(&config, &[]), Duration::from_secs(600));
    assert!(
        server.log().contains("ready: 2 of 2 tenants served"),
        "{}",
        server.log()
    );
    for name in ["python", "js"] {
        let hello = server.get(&format!("/{name}/a/b?c=1"));
        assert_eq!(
            (hello.status, hello.text()),
            (200, format!("hello from {name}: GET /{name}/a/b?c=1\n")),
            "{}",
            server.log()
        );
        let echo = request(
            server.addr,
            &format!(
                "POST /{name}/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbody bytes!"
            ),
        );
        assert_eq!(
            (echo.status, echo.text()),
            (200, "body bytes!".to_owned()),
            "{name}"
        );
    }
}
